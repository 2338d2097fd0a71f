// Prefill and decode speed of one model at the thread count of the run
// (OMP_NUM_THREADS), as llama-bench measures it:
//   model_bench MODEL_DIR [--prompt P] [--gen G] [--reps R] [--batch B] [--bandwidth-pairs N] [--weights map|copy]
//               [--full-last-layer]
// pp: one P-token prompt; tg_d0: G tokens decoded from a 1-token prompt;
// tg_dP: G tokens decoded after the P-token prompt (its cost against tg_d0
// from steps taken in turn, with the same experts and with the model's
// routing, and from the two runs); and, with --batch B,
// B sequences of P/4 tokens prefilled together, then G tokens each decoded together. Prints one JSON
// object: medians over R runs, the bytes of weights and KV cache each
// decode step reads, and the peak RSS (after the single-sequence runs, and
// after the batch). With --bandwidth-pairs N, N more decode runs from an
// empty context, each next to a read pass over 1 GiB in this process: the
// read bandwidth and the decode's share of it (decode_bandwidth_ratio).
// --full-last-layer runs the last layer's feed-forward for every prompt
// row, not only for the one whose logits are used (what a job does).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>

#include "bench_util.h"
#include "mote/expert_parallel/local_experts.h"
#include "mote/model/expert_mask.h"
#include "mote/model/kv_cache.h"
#include "mote/model/loaded_model.h"
#include "mote/ops/matmul.h"
#include "mote/runtime/generator.h"
#include "mote/util/memory.h"
#include "mote/util/parallel.h"

namespace {

using namespace mote;

struct Run {
  double prefill_tps = 0, decode_tps = 0;
  double bytes_per_step = 0;  // weights streamed per fed position
};

// Deterministic prompt ids inside the tokenizer's range, away from the specials.
std::vector<int32_t> prompt_ids(int n, int salt, int vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    ids[static_cast<size_t>(i)] = 16 + static_cast<int32_t>((i * 7919 + salt * 104729) % (vocab - 32));
  return ids;
}

bool g_full_last_layer = false;

Run run_once(const LoadedModel& m, const std::vector<GenerationRequest>& requests, int gen, int batch) {
  GenerationOptions o;
  o.last_ffn_logit_rows_only = !g_full_last_layer;
  o.max_new_tokens = gen;
  o.stop_at_eos = false;
  o.batch_size = batch;
  o.max_step_tokens = 1 << 20;
  LocalExperts local_experts(m.weights, m.config);
  MoeTransformer model(m.config, m.weights, local_experts);
  Generator g(model, m.eos_ids, o);
  const uint64_t before = weight_bytes_streamed();
  g.run(requests, [](size_t, GenerationResult&&) {});
  const GenerationStats& s = g.stats();
  Run r;
  r.prefill_tps = s.prefill_seconds > 0 ? static_cast<double>(s.prefill_tokens) / s.prefill_seconds : 0;
  // Every step after the prompt's feeds one generated token per sequence.
  const double steps =
      s.generated_tokens > 0 ? static_cast<double>(s.generated_tokens - static_cast<int64_t>(requests.size())) : 0;
  r.decode_tps = s.decode_seconds > 0 ? steps / s.decode_seconds : 0;
  r.bytes_per_step = static_cast<double>(weight_bytes_streamed() - before);
  return r;
}

using bench::median;

// Decode from an empty context against decode after a P-token prompt,
// step by step in turn (A B B A ...), so that both see the same machine:
// on a shared node the speed drifts by tens of percent within seconds,
// more than the difference measured. Both sequences are fed the same
// pseudo-random tokens, as llama-bench's tg does. Returns the median over
// groups of four steps of (seconds at depth 0) / (seconds at depth P).
//
// With `same_experts`, step g of both sequences routes to the same experts,
// drawn at random per step and forced on: each pair then reads the same
// weights and differs by depth alone. Without it, routing follows the
// model, and on the synthetic model a sequence near its start picks
// experts it used a step or two before more often (about one in six of its
// picks, against one in eight at depth 512), which are then partly still in
// the last-level cache: a difference of routing, not of depth.
double interleaved_depth_ratio(const LoadedModel& m, int prompt, int gen, bool same_experts) {
  const ModelConfig& c = m.config;
  LocalExperts local_experts(m.weights, c);
  MoeTransformer model(c, m.weights, local_experts);
  KvCache cache(c, 2);
  cache.reset(0, gen + 1);
  cache.reset(1, prompt + gen);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  const int vocab = static_cast<int>(m.tokenizer.vocab_size());
  const std::vector<int32_t> ids = prompt_ids(prompt, 1, vocab), fed = prompt_ids(gen, 5, vocab);
  std::vector<ExpertMask> masks;
  if (same_experts) {
    std::mt19937 rng(17);
    for (int g = 0; g < gen; ++g) {
      ExpertMask mask(model.moe_layer_count(), c.n_routed_experts);
      for (int l = 0; l < model.moe_layer_count(); ++l) {
        std::vector<int> experts(static_cast<size_t>(c.n_routed_experts));
        std::iota(experts.begin(), experts.end(), 0);
        std::shuffle(experts.begin(), experts.end(), rng);
        for (int k = 0; k < c.num_experts_per_tok; ++k) mask.set_on(l, experts[static_cast<size_t>(k)]);
      }
      masks.push_back(std::move(mask));
    }
  }
  std::vector<StepRow> rows;
  for (int i = 0; i < prompt; ++i) rows.push_back({1, i, ids[static_cast<size_t>(i)]});
  const std::vector<int32_t> last_prompt_row{prompt - 1}, one_row{0};
  model.forward(rows, cache, last_prompt_row, logits.data());
  const auto step = [&](int slot, int pos, int g) {
    const StepRow row{slot, pos, fed[static_cast<size_t>(g)], same_experts ? &masks[static_cast<size_t>(g)] : nullptr};
    const auto start = std::chrono::steady_clock::now();
    model.forward({&row, 1}, cache, one_row, logits.data());
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  // Each group of four steps runs one sequence first, then the other first:
  // a step right after one that read the same weights finds some of them
  // in cache.
  std::vector<double> ratios;
  for (int g = 0; g + 1 < gen; g += 2) {
    double t0 = step(0, g, g);
    double tp = step(1, prompt + g, g);
    tp += step(1, prompt + g + 1, g + 1);
    t0 += step(0, g + 1, g + 1);
    ratios.push_back(t0 / tp);
  }
  return median(ratios);
}

// Read bandwidth in this process, with the threads that decode: the median
// seconds of passes over `buffer`, which is larger than the caches, each
// thread summing chunks of 16 MiB as it claims them.
double read_pass_seconds(const std::vector<float>& buffer, int passes) {
  constexpr size_t kChunk = size_t{1} << 22;
  const int chunks = static_cast<int>(buffer.size() / kChunk);
  std::vector<double> times;
  std::vector<float> sums(static_cast<size_t>(parallel_threads()));
  for (int p = 0; p < passes; ++p) {
    const auto start = std::chrono::steady_clock::now();
    parallel_for(chunks, [&](int chunk, int thread) {
      sums[static_cast<size_t>(thread)] +=
          bench::sum_floats(buffer.data() + static_cast<size_t>(chunk) * kChunk, kChunk);
    });
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  volatile float sink = sums[0];
  (void)sink;
  return median(times);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = MOTE_DEFAULT_MODEL_DIR;
  int prompt = 512, gen = 128, reps = 3, batch = 0, bandwidth_pairs = 0;
  WeightMemory memory = WeightMemory::Map;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&] { return i + 1 < argc ? std::atoi(argv[++i]) : 0; };
    if (a == "--prompt")
      prompt = next();
    else if (a == "--gen")
      gen = next();
    else if (a == "--reps")
      reps = next();
    else if (a == "--batch")
      batch = next();
    else if (a == "--bandwidth-pairs")
      bandwidth_pairs = next();
    else if (a == "--weights" && i + 1 < argc)
      memory = parse_weight_memory(argv[++i]);
    else if (a == "--full-last-layer")
      g_full_last_layer = true;
    else
      dir = a;
  }
  if (prompt < 4 || gen < 2 || reps < 1) {
    std::fprintf(stderr,
                 "usage: model_bench MODEL_DIR [--prompt P>=4] [--gen G>=2] [--reps R>=1] [--batch B] "
                 "[--bandwidth-pairs N] [--weights map|copy] [--full-last-layer]\n");
    return 2;
  }
  const auto m = load_model(dir, {}, true, memory);
  const int vocab = static_cast<int>(m->tokenizer.vocab_size());
  const std::vector<GenerationRequest> long_prompt{{prompt_ids(prompt, 1, vocab), nullptr, 0}};
  const std::vector<GenerationRequest> one_token{{prompt_ids(1, 2, vocab), nullptr, 0}};
  std::vector<GenerationRequest> many;
  for (int b = 0; b < batch; ++b)
    many.push_back({prompt_ids(prompt / 4, 3 + b, vocab), nullptr, static_cast<uint64_t>(b)});

  std::vector<double> pp, tg0, tgp, ppb, tgb, depth_ratio, natural_ratio, runs_ratio;
  double bytes_per_step = 0;
  uint64_t rss_single = 0;
  for (int r = 0; r < reps + 1; ++r) {  // the first run warms the page cache and is dropped
    const Run d0 = run_once(*m, one_token, gen, 1);
    const Run dp = run_once(*m, long_prompt, gen, 1);
    if (r == 0) rss_single = peak_rss_bytes();  // before the batch's larger step buffers
    Run bt;
    if (batch > 0) bt = run_once(*m, many, gen, batch);
    if (r == 0) continue;
    tg0.push_back(d0.decode_tps);
    pp.push_back(dp.prefill_tps);
    tgp.push_back(dp.decode_tps);
    runs_ratio.push_back(dp.decode_tps / d0.decode_tps);
    depth_ratio.push_back(interleaved_depth_ratio(*m, prompt, gen, true));
    natural_ratio.push_back(interleaved_depth_ratio(*m, prompt, gen, false));
    ppb.push_back(bt.prefill_tps);
    tgb.push_back(bt.decode_tps);  // already summed over the batch's sequences
    // The 1-token prompt is one more step reading the same weights as a decode step.
    bytes_per_step = d0.bytes_per_step / gen;
  }
  const ModelConfig& c = m->config;
  // Positions read from the cache per step, averaged over the G steps.
  const double kv_entry_bytes = static_cast<double>(c.num_hidden_layers) * KvCache(c, 1).entry_size() * sizeof(float);
  const double kv_d0 = kv_entry_bytes * gen / 2, kv_dp = kv_entry_bytes * (prompt + gen / 2.0);
  const uint64_t rss_end = peak_rss_bytes();  // before the bandwidth buffer below
  // Decode from an empty context and a read pass over 1 GiB in turn
  // (A B B A ...): this machine's speed drifts by a third within minutes,
  // so a bandwidth measured at another time says little about this decode.
  std::vector<double> bandwidth, bandwidth_ratio;
  if (bandwidth_pairs > 0) {
    std::vector<float> buffer((size_t{1} << 30) / sizeof(float));
    parallel_for(static_cast<int>(buffer.size() >> 22), [&](int chunk, int) {
      std::fill_n(buffer.data() + (static_cast<size_t>(chunk) << 22), size_t{1} << 22, static_cast<float>(chunk & 7));
    });
    const double bytes_d0 = bytes_per_step + kv_d0;
    const auto read_gbs = [&] {
      return static_cast<double>(buffer.size() * sizeof(float)) / read_pass_seconds(buffer, 3) / 1e9;
    };
    for (int i = 0; i < bandwidth_pairs; ++i) {
      double gbs = i % 2 == 0 ? read_gbs() : 0;
      const double tps = run_once(*m, one_token, gen, 1).decode_tps;
      if (i % 2 == 1) gbs = read_gbs();
      bandwidth.push_back(gbs);
      bandwidth_ratio.push_back(bytes_d0 * tps / 1e9 / gbs);
    }
  }
  double weights = 0;  // bytes of the weight files, all mapped and read
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") weights += static_cast<double>(e.file_size());
  std::printf(
      "{\"bench\": \"model\", \"model\": \"%s\", \"weights\": \"%s\", \"last_layer_ffn\": \"%s\", \"threads\": %d, "
      "\"prompt_tokens\": %d, \"decode_tokens\": %d, \"reps\": %d, "
      "\"prefill_tokens_per_s\": %.2f, \"decode_tokens_per_s\": %.2f, \"decode_d%d_tokens_per_s\": %.2f, "
      "\"decode_d%d_vs_d0_ratio\": %.3f, \"decode_d%d_vs_d0_natural_ratio\": %.3f, \"decode_d%d_vs_d0_runs_ratio\": "
      "%.3f, \"decode_bytes_per_token\": %.0f, \"decode_effective_gbs\": %.2f, "
      "\"decode_effective_gbs_d%d\": %.2f",
      dir.c_str(), weight_memory_name(memory), g_full_last_layer ? "all_rows" : "logit_rows", omp_get_max_threads(),
      prompt, gen, reps, median(pp), median(tg0), prompt, median(tgp), prompt, median(depth_ratio), prompt,
      median(natural_ratio), prompt, median(runs_ratio), bytes_per_step + kv_d0,
      (bytes_per_step + kv_d0) * median(tg0) / 1e9, prompt, (bytes_per_step + kv_dp) * median(tgp) / 1e9);
  if (bandwidth_pairs > 0)
    std::printf(", \"read_bandwidth_gbs\": %.2f, \"decode_bandwidth_ratio\": %.3f", median(bandwidth),
                median(bandwidth_ratio));
  if (batch > 0)
    std::printf(", \"batch\": %d, \"batch_prefill_tokens_per_s\": %.2f, \"batch_decode_tokens_per_s\": %.2f", batch,
                median(ppb), median(tgb));
  // Peak RSS of the single-sequence runs (one P-token step's buffers) and of the whole run.
  std::printf(
      ", \"weights_bytes\": %.0f, \"kv_cache_bytes\": %.0f, \"peak_rss_single_bytes\": %llu, \"peak_rss_bytes\": "
      "%llu}\n",
      weights, kv_entry_bytes * (prompt + gen), static_cast<unsigned long long>(rss_single),
      static_cast<unsigned long long>(rss_end));
}
