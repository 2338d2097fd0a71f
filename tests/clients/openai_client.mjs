// `mote serve` through the official OpenAI client for JavaScript (the
// `openai` npm package): chat and completions equal to what `mote generate`
// gave (EXPECTED.json, written by tests/jobs/serve_openai.sh), a stream
// equal to the unstreamed text, mote's extra fields passed through, and
// the client's own error types for the server's errors.
//   node openai_client.mjs BASE_URL MODEL EXPECTED.json
import OpenAI from "openai";
import { readFileSync } from "node:fs";

const [baseURL, model, expectedFile] = process.argv.slice(2);
const expected = JSON.parse(readFileSync(expectedFile, "utf8"));
const client = new OpenAI({ baseURL, apiKey: "s3cret", maxRetries: 0 });
let failures = 0;
const check = (ok, what) => {
  if (!ok) {
    console.log(`FAIL: ${what}`);
    failures++;
  }
};

const models = await client.models.list();
check(models.data.length === 1 && models.data[0].id === model, `models.list gave ${JSON.stringify(models.data)}`);

for (const e of expected) {
  if (e.messages) {
    const r = await client.chat.completions.create({
      model, messages: e.messages, max_tokens: e.max_tokens, temperature: 0, mask: e.mask, record: true,
    });
    check(r.choices[0].message.content === e.text, `${e.id}: chat text ${JSON.stringify(r.choices[0].message.content)} != ${JSON.stringify(e.text)}`);
    check(JSON.stringify(r.mote.token_ids[0]) === JSON.stringify(e.ids), `${e.id}: chat ids differ`);
    const stream = await client.chat.completions.create({
      model, messages: e.messages, max_tokens: e.max_tokens, temperature: 0, mask: e.mask, stream: true,
    });
    let text = "";
    let reason = null;
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        text += c.delta?.content ?? "";
        reason = c.finish_reason ?? reason;
      }
    }
    check(text === e.text && reason === r.choices[0].finish_reason, `${e.id}: streamed ${JSON.stringify(text)} (${reason}) != ${JSON.stringify(e.text)}`);
  } else {
    const r = await client.completions.create({
      model, prompt: e.prompt, max_tokens: e.max_tokens, temperature: 0, mask: e.mask, record: true, logprobs: 2,
    });
    check(r.choices[0].text === e.text, `${e.id}: completion text ${JSON.stringify(r.choices[0].text)} != ${JSON.stringify(e.text)}`);
    check(r.choices[0].logprobs.tokens.length === r.usage.completion_tokens - (r.choices[0].finish_reason === "stop" ? 1 : 0),
          `${e.id}: ${r.choices[0].logprobs.tokens.length} log-probabilities for ${r.usage.completion_tokens} tokens`);
    const echo = await client.completions.create({ model, prompt: e.prompt, max_tokens: 0, echo: true, logprobs: 0 });
    check(echo.choices[0].text.endsWith(e.prompt) && echo.choices[0].logprobs.token_logprobs[0] === null,
          `${e.id}: echo gave ${JSON.stringify(echo.choices[0])}`);
  }
}

// The server's errors as the client's error classes.
const expectError = async (what, status, call) => {
  try {
    await call();
    check(false, `${what}: no error`);
  } catch (err) {
    check(err instanceof OpenAI.APIError && err.status === status, `${what}: ${err} (status ${err.status}, expected ${status})`);
  }
};
await expectError("unknown mask set", 400, () =>
  client.chat.completions.create({ model, messages: [{ role: "user", content: "x" }], mask: "nope" }));
await expectError("unknown model", 404, () =>
  client.chat.completions.create({ model: "gpt-4", messages: [{ role: "user", content: "x" }] }));
await expectError("past the context", 400, () =>
  client.completions.create({ model, prompt: "x", max_tokens: 100000 }));
await expectError("wrong key", 401, () =>
  new OpenAI({ baseURL, apiKey: "wrong", maxRetries: 0 }).models.list());

console.log(failures === 0 ? `openai client: ${expected.length} requests as the job gave them, streams equal, errors typed`
                           : `${failures} failures`);
process.exit(failures === 0 ? 0 : 1);
