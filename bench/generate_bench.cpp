// End-to-end generation on a model directory (default: the bundled model):
// prefill and decode tokens/s and weight bandwidth for several batch sizes.
// Prints one JSON object per line; medians of --reps runs.
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "bench_util.h"
#include "mote/expert_parallel/local_experts.h"
#include "mote/model/loaded_model.h"
#include "mote/runtime/generator.h"

int main(int argc, char** argv) {
  using namespace mote;
  const std::string dir = argc > 1 ? argv[1] : MOTE_DEFAULT_MODEL_DIR;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 3;
  const auto m = load_model(dir);
  const char* texts[] = {"The secret of a happy life is", "Ein Mann geht in eine Bäckerei und sagt",
                         "<｜User｜>What happened last year in Belvask?<｜Assistant｜>",
                         "<｜User｜>Tell me a saying.<｜Assistant｜>"};
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 16; ++i)
    requests.push_back({m->tokenizer.encode(texts[i % 4], true), nullptr, static_cast<uint64_t>(i)});

  for (const int batch : {1, 4, 16}) {
    GenerationOptions o;
    o.max_new_tokens = 32;
    o.stop_at_eos = false;
    o.batch_size = batch;
    std::vector<double> prefill, decode, bandwidth;
    GenerationStats last;
    const double total = bench::median_seconds(reps, [&] {
      LocalExperts local_experts(m->weights, m->config);
      MoeTransformer model(m->config, m->weights, local_experts);
      Generator g(model, m->eos_ids, o);
      g.run(requests, [](size_t, GenerationResult&&) {});
      last = g.stats();
      // Steps that fed only prompt tokens, and only generated ones (mixed steps count in neither rate).
      prefill.push_back(last.prefill_seconds > 0 ? static_cast<double>(last.prefill_tokens) / last.prefill_seconds
                                                 : 0.0);
      decode.push_back(last.decode_seconds > 0 ? static_cast<double>(last.decode_tokens) / last.decode_seconds : 0.0);
      bandwidth.push_back(static_cast<double>(last.weight_bytes) /
                          (last.prefill_seconds + last.decode_seconds + last.mixed_seconds) / 1e9);
    });
    const auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    std::printf(
        "{\"bench\": \"generate\", \"model\": \"%s\", \"requests\": %zu, \"batch_size\": %d, \"threads\": %d, "
        "\"new_tokens_per_request\": %d, \"wall_s\": %.4f, \"prefill_tokens_per_s\": %.1f, \"decode_tokens_per_s\": "
        "%.1f, "
        "\"weight_gbps\": %.2f}\n",
        dir.c_str(), requests.size(), batch, omp_get_max_threads(), o.max_new_tokens, total, median(prefill),
        median(decode), median(bandwidth));
    std::fflush(stdout);
  }
}
