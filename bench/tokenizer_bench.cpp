// Tokenizer throughput on 1 MB of mixed text (the reference strings of
// tests/data/tokenizers/<name>/public.jsonl, repeated): encode and decode
// MB/s, single thread, median of repeated runs. Prints one JSON line per
// tokenizer directory given (default: the bundled model's and DeepSeek-V3's).
//   tokenizer_bench [DIR ...]
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "mote/tokenizer/tokenizer.h"
#include "mote/util/error.h"

int main(int argc, char** argv) {
  const std::string data = MOTE_TEST_DATA_DIR;
  std::vector<std::string> dirs(argv + 1, argv + argc);
  if (dirs.empty()) dirs = {MOTE_DEFAULT_MODEL_DIR, data + "/tokenizers/deepseek_v3"};
  // 1 MB of mixed text from the reference strings.
  std::vector<std::string> texts;
  std::ifstream in(data + "/tokenizers/deepseek_v3/public.jsonl");
  for (std::string line; std::getline(in, line);)
    texts.push_back(nlohmann::json::parse(line)["text"].get<std::string>());
  std::vector<std::string> corpus;
  size_t bytes = 0;
  for (size_t i = 0; bytes < (1u << 20); ++i) {
    corpus.push_back(texts[i % texts.size()]);
    bytes += corpus.back().size();
  }
  for (const auto& dir : dirs) {
    try {
      const auto t = mote::Tokenizer::load(dir);
      size_t tokens = 0;
      std::vector<std::vector<int32_t>> ids(corpus.size());
      const double encode = mote::bench::median_seconds(5, [&] {
        tokens = 0;
        for (size_t i = 0; i < corpus.size(); ++i) {
          ids[i] = t.encode(corpus[i], false);
          tokens += ids[i].size();
        }
      });
      const double decode = mote::bench::median_seconds(5, [&] {
        for (const auto& v : ids) (void)t.decode(v);
      });
      std::printf(
          "{\"bench\": \"tokenizer\", \"tokenizer\": \"%s\", \"bytes\": %zu, \"tokens\": %zu, \"encode_mb_per_s\": "
          "%.2f, "
          "\"decode_mb_per_s\": %.2f, \"encode_tokens_per_s\": %.0f}\n",
          dir.c_str(), bytes, tokens, static_cast<double>(bytes) / encode / 1e6,
          static_cast<double>(bytes) / decode / 1e6, static_cast<double>(tokens) / encode);
    } catch (const mote::Error& e) {
      std::printf("{\"bench\": \"tokenizer\", \"tokenizer\": \"%s\", \"error\": %s}\n", dir.c_str(),
                  nlohmann::json(e.what()).dump().c_str());
    }
  }
}
