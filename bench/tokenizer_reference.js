// The reference library's encode throughput on the same 1 MB of mixed text
// as tokenizer_bench (tests/data/tokenizers/deepseek_v3/public.jsonl,
// repeated), one string at a time, median of 5 runs; one JSON line per
// tokenizer directory. It needs the Node binding of Hugging Face
// `tokenizers` that made the reference ids, installed by hand:
//   npm install --prefix /tmp/reftok @anush008/tokenizers@0.6.0
//   NODE_PATH=/tmp/reftok/node_modules node bench/tokenizer_reference.js tests/data/tokenizers/*/
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('@anush008/tokenizers');

const data = path.join(__dirname, '..', 'tests', 'data', 'tokenizers');
const texts = fs.readFileSync(path.join(data, 'deepseek_v3', 'public.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).text);
const corpus = [];
let bytes = 0;
for (let i = 0; bytes < (1 << 20); ++i) {
  corpus.push(texts[i % texts.length]);
  bytes += Buffer.byteLength(corpus[corpus.length - 1], 'utf8');
}

(async () => {
  for (const dir of process.argv.slice(2)) {
    const tokenizer = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
    const times = [];
    let tokens = 0;
    for (let run = 0; run < 5; ++run) {
      tokens = 0;
      const start = process.hrtime.bigint();
      for (const text of corpus) {
        const encoding = await tokenizer.encode(text, null, { addSpecialTokens: false });
        tokens += encoding.getIds().length;
      }
      times.push(Number(process.hrtime.bigint() - start) / 1e9);
    }
    times.sort((a, b) => a - b);
    const seconds = times[2];
    console.log(JSON.stringify({ bench: 'tokenizer_reference', tokenizer: dir, bytes, tokens, encode_mb_per_s: +(bytes / seconds / 1e6).toFixed(2) }));
  }
})();
