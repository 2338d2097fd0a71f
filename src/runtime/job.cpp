// The steps of a job, as every rank takes them:
//
//   1. open the output (rank 0): an unwritable path fails before any work
//   2. load the model: coordinators hold the non-expert weights, every rank its experts
//   3. read the mask sets (rank 0) and send them to every rank
//   4. read and encode the requests, open the checkpoint (rank 0)
//   5. run: coordinators generate (rank 0 hands out the requests and
//      collects the results), every rank serves its experts in the
//      exchange's rounds until all coordinators are done
//   6. check the expert counters: what the experts processed, summed over
//      ranks, equals what each coordinator's router decided, to the bit
//   7. write the result (rank 0), or keep a checkpoint if stopped
#include "mote/runtime/job.h"

#include <omp.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>

#include "job_steps.h"
#include "mote/expert_parallel/expert_exchange.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/model/moe_transformer.h"
#include "mote/runtime/request_queue.h"
#include "mote/util/error.h"
#include "mote/util/memory.h"
#include "mote/util/parallel.h"
#include "mote/util/stop_signal.h"

namespace mote {

std::string JobOptions::summary() const {
  return fmt::format(
      "{} job: model {}, prompts {}{}, out {}\n"
      "  max_new_tokens {}, temperature {}, top_p {}, seed {}, stop at EOS {}, save logits {}, trace {}\n"
      "  batch size {}, max step tokens {}, threads per rank {}\n"
      "  coordinators {}, placement {}, coordinators hold experts {}, wire dtype {}",
      profile ? "profile" : "generate", model_dir, prompts.empty() ? "-" : prompts,
      class_prompts.empty() ? "" : fmt::format(" + {} class files", class_prompts.size()), out.empty() ? "(none)" : out,
      gen.max_new_tokens, gen.sampling.temperature, gen.sampling.top_p, gen.seed, gen.stop_at_eos, gen.save_logits, gen.trace,
      gen.batch_size, gen.max_step_tokens, threads, coordinators, placement_file.empty() ? placement : "file " + placement_file,
      coordinator_experts, wire_dtype);
}

void validate(const JobOptions& job) {
  const auto& g = job.gen;
  if (job.prompts.empty() && job.class_prompts.empty()) fail("give --prompts FILE or --class-prompts CLASS=FILE");
  if (g.max_new_tokens < 0) fail("--max-new-tokens {} must not be negative", g.max_new_tokens);
  if (!std::isfinite(g.sampling.temperature) || g.sampling.temperature < 0) fail("--temperature {} must be 0 or positive", g.sampling.temperature);
  if (!(g.sampling.top_p > 0.0f && g.sampling.top_p <= 1.0f)) fail("--top-p {} must be in (0, 1]", g.sampling.top_p);
  if (g.batch_size < 1) fail("--batch-size {} must be at least 1", g.batch_size);
  if (g.max_step_tokens < 1) fail("--max-step-tokens {} must be at least 1", g.max_step_tokens);
  if (job.threads < 0) fail("--threads {} must not be negative", job.threads);
  if (job.coordinators < 1) fail("--coordinators {} must be at least 1", job.coordinators);
  if (job.checkpoint_every < 0) fail("--checkpoint-every {} must not be negative", job.checkpoint_every);
  if ((job.checkpoint_every > 0 || job.resume || !job.resume_from.empty()) && job.out.empty()) {
    fail("--checkpoint-every, --resume and --resume-from need --out");
  }
}

namespace {

void set_threads(JobOptions& job, const MpiSession& mpi) {
  if (job.threads == 0 && std::getenv("OMP_NUM_THREADS") == nullptr && mpi.local_ranks() > 1) {
    // Several ranks on this host and nobody said how many threads: share
    // the host's cores between them rather than each taking all.
    job.threads = std::max(1, omp_get_num_procs() / mpi.local_ranks());
  }
  if (job.threads > 0) {
    const int cores = omp_get_num_procs();
    if (job.threads > cores) {
      spdlog::warn("--threads {} is more than the {} cores this rank can use; using {}", job.threads, cores, cores);
      job.threads = cores;
    }
    omp_set_num_threads(job.threads);  // loading's loops
    set_parallel_threads(job.threads);
  }
  job.threads = parallel_threads();
}

// What one coordinator's generator did, gathered on rank 0 for the summary.
struct CoordinatorStats {
  double prompt_tokens = 0, generated_tokens = 0, prefill_seconds = 0, decode_seconds = 0, weight_bytes = 0, wait_seconds = 0;
};

void log_throughput(const std::vector<CoordinatorStats>& stats, double wall_seconds) {
  CoordinatorStats sum;
  double prefill = 0, decode = 0;
  for (const auto& s : stats) {
    sum.prompt_tokens += s.prompt_tokens;
    sum.generated_tokens += s.generated_tokens;
    sum.weight_bytes += s.weight_bytes;
    // Coordinators run at the same time: the job took as long as the longest.
    prefill = std::max(prefill, s.prefill_seconds);
    decode = std::max(decode, s.decode_seconds);
  }
  const auto rate = [](double amount, double seconds) { return seconds > 0 ? amount / seconds : 0.0; };
  spdlog::info("prefill: {} tokens in {:.3f} s ({:.1f} tokens/s); decode: {} tokens in {:.3f} s ({:.1f} tokens/s)",
               static_cast<int64_t>(sum.prompt_tokens), prefill, rate(sum.prompt_tokens, prefill),
               static_cast<int64_t>(sum.generated_tokens), decode, rate(sum.generated_tokens, decode));
  spdlog::info("job: {} prompt and {} generated tokens in {:.3f} s ({:.1f} prompt tokens/s, {:.1f} tokens/s in all) on {} coordinator{}",
               static_cast<int64_t>(sum.prompt_tokens), static_cast<int64_t>(sum.generated_tokens), wall_seconds,
               rate(sum.prompt_tokens, wall_seconds), rate(sum.prompt_tokens + sum.generated_tokens, wall_seconds), stats.size(),
               stats.size() == 1 ? "" : "s");
  const double gigabytes = stats[0].weight_bytes / 1e9, compute = stats[0].prefill_seconds + stats[0].decode_seconds;
  spdlog::info("weights streamed on rank 0: {:.2f} GB in {:.3f} s of compute ({:.2f} GB/s)", gigabytes, compute, rate(gigabytes, compute));
  if (stats.size() > 1) {
    for (size_t c = 0; c < stats.size(); ++c) {
      spdlog::info("coordinator {}: {} prompt and {} generated tokens; {:.3f} s waiting in exchanges", c,
                   static_cast<int64_t>(stats[c].prompt_tokens), static_cast<int64_t>(stats[c].generated_tokens), stats[c].wait_seconds);
    }
  }
}

}  // namespace

int run_job(JobOptions& job, MpiSession& mpi, const JobFinish& finish) {
  validate(job);
  set_threads(job, mpi);
  const int rank = mpi.rank(), world = mpi.size(), coordinators = job.coordinators;
  if (coordinators > world) fail("--coordinators {} is more than the job's {} ranks", coordinators, world);
  const bool reader = rank == 0, coordinator = rank < coordinators;

  // 1. The output. It must not be one of the job's inputs (checked again
  // once the mask files' includes are known).
  std::optional<OutputFile> out;
  std::vector<std::filesystem::path> inputs{job.prompts, job.config_file, job.placement_file, job.chat_template};
  for (const std::string& cp : job.class_prompts) inputs.push_back(cp.substr(cp.find('=') + 1));
  if (reader && !job.out.empty()) {
    out.emplace(job.out);
    out->refuse_inputs(inputs, job.model_dir);
  }

  // 2. The model.
  JobModel model = load_job_model(job, rank, world);
  const ModelConfig& config = model.config;
  const Placement& placement = *model.placement;
  const int moe_layers = model.moe_layers(), experts = config.n_routed_experts;
  if (reader) {
    spdlog::info("{}", job.summary());
    spdlog::info("model {}", config.summary());
    std::string list;
    for (int r = 0; r < world; ++r) list += (r ? ", " : "") + std::to_string(placement.count_on(r));
    spdlog::info("{} ranks, {} coordinator{}; routed experts per rank: {}", world, coordinators, coordinators == 1 ? "" : "s", list);
  }
  mpi.job_started = true;

  // 3. Mask sets.
  const MaskSets masks = read_mask_sets(job, config, reader, inputs);
  if (out) out->refuse_inputs(inputs, job.model_dir);

  // 4. Requests and the checkpoint.
  JobRequests requests;
  std::optional<Checkpoint> checkpoint;
  FinishedRequests finished;
  if (reader) {
    requests = read_requests(job, model, masks);
    open_checkpoint(job, model, requests, masks, checkpoint, finished);
  }
  int n_classes = static_cast<int>(requests.classes.size());
  MPI_Bcast(&n_classes, 1, MPI_INT, 0, MPI_COMM_WORLD);

  // 5. Run. Expert counters are kept per coordinator that sent the tokens.
  const WireFormat wire{config.hidden_size, config.num_experts_per_tok, parse_wire_dtype(job.wire_dtype)};
  std::vector<ExpertCounters> processed(static_cast<size_t>(coordinators), ExpertCounters(n_classes, moe_layers, experts));
  ExpertWorker worker(model.files->weights, config, placement, rank, wire, &processed, &masks.sets);
  ExpertExchange exchange(MPI_COMM_WORLD, placement, wire, worker);
  // The coordinators' own communicator, for handing out requests.
  MPI_Comm coordinators_comm = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, coordinator ? 0 : MPI_UNDEFINED, rank, &coordinators_comm);
  ExpertCounters routed(n_classes, moe_layers, experts);  // this coordinator's routing decisions
  GenerationOptions gen = job.gen;
  gen.routing_counts = &routed;
  if (coordinator) gen.sample_vocab = model.files->tokenizer.vocab_size();

  std::optional<ResultCollector> collector;
  size_t todo_count = 0;
  GenerationStats stats;
  int stop_decided = 0;
  const auto run_start = std::chrono::steady_clock::now();
  if (coordinator) {
    std::vector<std::pair<size_t, GenerationRequest>> todo;
    if (reader) {
      std::vector<size_t> todo_index;
      for (size_t i = 0; i < requests.size(); ++i) {
        if (finished.count(i) == 0 && requests.errors[i].empty()) {
          todo.emplace_back(i, requests.requests[i]);
          todo_index.push_back(i);
        }
      }
      todo_count = todo.size();
      collector.emplace(job, model, requests, out ? &*out : nullptr, checkpoint ? &*checkpoint : nullptr, std::move(finished), todo_index);
    }
    RequestQueue queue(coordinators_comm, exchange, moe_layers, masks.sets, std::move(todo),
                       reader ? ResultHandler(std::ref(*collector)) : ResultHandler());
    gen.stop_requested = [&] { return queue.stopped(); };
    MoeTransformer transformer(config, model.files->weights, &exchange);
    Generator generator(transformer, model.files->eos_ids, gen);
    generator.run(queue, [&](size_t id, GenerationResult&& result) { queue.done(id, std::move(result)); });
    stats = generator.stats();
    queue.finish();
    stop_decided = queue.stop_signal();
    spdlog::debug("rank {}: {:.3f} s in the coordinators' block starts", rank, queue.block_seconds());
    if (reader && coordinators > 1) {
      std::string shares;
      for (int c = 0; c < coordinators; ++c) shares += (c ? ", " : "") + std::to_string(queue.ran_by()[static_cast<size_t>(c)]);
      spdlog::info("requests run per coordinator: {}", shares);
    }
    MPI_Comm_free(&coordinators_comm);
  }
  while (exchange.serve(true)) {
  }
  const double wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  spdlog::debug("rank {}: {} exchange rounds, {:.3f} s waiting in them, {:.3f} s computing experts, {:.3f} s in all", rank,
                exchange.rounds(), exchange.wait_seconds(), worker.compute_seconds(), wall_seconds);

  // How the job ended, decided by rank 0: 0 complete, else the stop signal
  // that ended it early. Every rank exits with the same code.
  int stopped_by = 0;
  if (reader && collector->finished_now() < todo_count) {
    stopped_by = stop_decided;
    if (stopped_by == 0) fail("the job ended with {} of {} requests unfinished and no stop signal", collector->finished_now(), todo_count);
  }
  MPI_Bcast(&stopped_by, 1, MPI_INT, 0, MPI_COMM_WORLD);
  const auto exit_code = [&] { return stopped_by == 0 ? 0 : 128 + stopped_by; };

  // 6. Counters, per coordinator: what the experts processed (on whichever
  // ranks own them) against what that coordinator's router decided.
  // Each entry has one nonzero contributor (the expert's owner, or the
  // coordinator), so the sums are exact.
  const auto sum_into_rank0 = [&](const ExpertCounters& mine, ExpertCounters& total) {
    const int count = static_cast<int>(mine.tokens.size());
    MPI_Reduce(mine.tokens.data(), total.tokens.data(), count, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(mine.gate_sum.data(), total.gate_sum.data(), count, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  };
  const ExpertCounters none(n_classes, moe_layers, experts);
  ExpertCounters run_routed(n_classes, moe_layers, experts), done(none), decided(none);
  for (int c = 0; c < coordinators; ++c) {
    sum_into_rank0(processed[static_cast<size_t>(c)], done);
    sum_into_rank0(rank == c ? routed : none, decided);
    if (!reader) continue;
    if (const auto diff = done.first_difference(decided)) {
      fail("expert counters reduced from the ranks disagree with coordinator {}'s routing record: {}", c, *diff);
    }
    for (size_t i = 0; i < run_routed.tokens.size(); ++i) {
      run_routed.tokens[i] += decided.tokens[i];
      run_routed.gate_sum[i] += decided.gate_sum[i];
    }
  }
  std::vector<uint64_t> rank_memory(2 * static_cast<size_t>(world));
  {
    // Per-rank memory: peak RSS and the resident part of the weight files
    // (falls as 1/N for expert weights).
    const uint64_t mine[2] = {peak_rss_bytes(), mapped_rss_bytes(model.files->store.paths())};
    MPI_Gather(mine, 2, MPI_UINT64_T, rank_memory.data(), 2, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  }
  std::vector<CoordinatorStats> all_stats(static_cast<size_t>(coordinators));
  {
    const CoordinatorStats mine{static_cast<double>(stats.prompt_tokens),   static_cast<double>(stats.generated_tokens),
                                stats.prefill_seconds,                      stats.decode_seconds,
                                static_cast<double>(stats.weight_bytes),    exchange.wait_seconds()};
    std::vector<CoordinatorStats> every(static_cast<size_t>(world));
    MPI_Gather(&mine, sizeof mine, MPI_BYTE, every.data(), sizeof mine, MPI_BYTE, 0, MPI_COMM_WORLD);
    std::copy(every.begin(), every.begin() + coordinators, all_stats.begin());
  }
  if (!reader) return exit_code();

  // 7. The result.
  if (stopped_by != 0) {
    // Stopped: keep what finished (in-flight requests run again on resume).
    const size_t saved = collector->finished_before() + collector->finished_now();
    if (!collector->save_checkpoint()) {
      spdlog::warn("{}: stopped after {} of {} requests; nothing was saved (no --out)", signal_name(stopped_by), saved, requests.size());
      return exit_code();
    }
    spdlog::warn("{}: stopped after {} of {} requests, saved in {}; run the same command with --resume to finish", signal_name(stopped_by),
                 saved, requests.size(), checkpoint->dir().string());
    return exit_code();
  }
  // The per-request counts add up to the same totals: token counts exactly,
  // gate sums up to summation order.
  collector->print_ready();
  const ExpertCounters& per_request = collector->run_totals();
  for (size_t i = 0; i < run_routed.tokens.size(); ++i) {
    const double a = run_routed.gate_sum[i], b = per_request.gate_sum[i];
    if (run_routed.tokens[i] != per_request.tokens[i] || std::abs(a - b) > 1e-9 * std::max(1.0, std::abs(a))) {
      fail("per-request expert counts do not add up to the ranks' counters at entry {}: {} / {} vs {} / {}", i, per_request.tokens[i], b,
           run_routed.tokens[i], a);
    }
  }
  log_throughput(all_stats, wall_seconds);
  collector->write_result(mpi, masks, rank_memory, finish);
  return 0;
}

}  // namespace mote
