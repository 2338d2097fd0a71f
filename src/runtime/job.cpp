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
#include "mote/expert_parallel/mpi_calls.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/io/file_guard.h"
#include "mote/model/moe_transformer.h"
#include "mote/runtime/request_queue.h"
#include "mote/runtime/scan_metric.h"
#include "mote/util/error.h"
#include "mote/util/parallel.h"
#include "mote/util/stop_signal.h"

namespace mote {

std::string JobOptions::summary() const {
  return fmt::format(
      "{} job: model {}, prompts {}{}, out {}\n"
      "  max_new_tokens {}, temperature {}, top_p {}, seed {}, stop at EOS {}, save logits {}, trace {}\n"
      "  batch size {}, max step tokens {}, threads per rank {}\n"
      "  coordinators {}, placement {}, coordinators hold experts {}, wire dtype {}, weights {}",
      serving   ? "serve"
      : profile ? "profile"
                : "generate",
      model_dir, prompts.empty() ? "-" : prompts,
      class_prompts.empty() ? "" : fmt::format(" + {} class files", class_prompts.size()), out.empty() ? "(none)" : out,
      gen.max_new_tokens, gen.sampling.temperature, gen.sampling.top_p, gen.seed, gen.stop_at_eos, gen.save_logits,
      gen.trace, gen.batch_size, gen.max_step_tokens, threads, coordinators,
      placement_file.empty() ? placement : "file " + placement_file, coordinator_experts, wire_dtype, weights);
}

void validate(const JobOptions& job) {
  if (job.prompts.empty() && job.class_prompts.empty()) fail("give --prompts FILE or --class-prompts CLASS=FILE");
  validate_generation(job);
  if (job.checkpoint_every < 0) fail("--checkpoint-every {} must not be negative", job.checkpoint_every);
  if (job.save_logits != "none" && job.save_logits != "all" && job.save_logits != "last" && job.save_logits != "true" &&
      job.save_logits != "false") {
    fail("--save-logits '{}' is not one of all, last (or none)", job.save_logits);
  }
  if (!job.request_counts && (job.checkpoint_every > 0 || job.resume || !job.resume_from.empty())) {
    fail(
        "--no-request-counts cannot go with --checkpoint-every, --resume or --resume-from: a resumed job needs every "
        "request's counts");
  }
  if ((job.checkpoint_every > 0 || job.resume || !job.resume_from.empty()) && job.out.empty()) {
    fail("--checkpoint-every, --resume and --resume-from need --out");
  }
}

void validate_generation(const JobOptions& job) {
  const auto& g = job.gen;
  if (g.max_new_tokens < 0) fail("--max-new-tokens {} must not be negative", g.max_new_tokens);
  if (!std::isfinite(g.sampling.temperature) || g.sampling.temperature < 0)
    fail("--temperature {} must be 0 or positive", g.sampling.temperature);
  if (!(g.sampling.top_p > 0.0f && g.sampling.top_p <= 1.0f)) fail("--top-p {} must be in (0, 1]", g.sampling.top_p);
  if (g.batch_size < 1) fail("--batch-size {} must be at least 1", g.batch_size);
  if (g.max_step_tokens < 1) fail("--max-step-tokens {} must be at least 1", g.max_step_tokens);
  if (job.threads < 0) fail("--threads {} must not be negative", job.threads);
  if (job.coordinators < 0) fail("--coordinators {} must be at least 1", job.coordinators);
}

void set_threads(JobOptions& job, const MpiSession& mpi) {
  if (job.threads == 0 && std::getenv("OMP_NUM_THREADS") == nullptr && mpi.local_ranks() > 1) {
    // Several ranks on this host and nobody said how many threads: share
    // the host's cores between them rather than each taking all.
    job.threads = std::max(1, omp_get_num_procs() / mpi.local_ranks());
  }
  if (job.threads == 0 && std::getenv("OMP_NUM_THREADS") != nullptr) {
    // OMP_NUM_THREADS as --threads would be: capped at the cores, with a word.
    const int asked = omp_get_max_threads(), cores = omp_get_num_procs();
    if (asked > cores) {
      spdlog::warn("OMP_NUM_THREADS={} is more than the {} cores this rank can use; using {}", asked, cores, cores);
      job.threads = cores;
    }
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

int run_job(JobOptions& job, MpiSession& mpi, const JobFinish& finish) {
  validate(job);
  job.gen.save_logits = job.save_logits == "all" || job.save_logits == "true";
  job.gen.save_last_logits = job.save_logits == "last";
  set_threads(job, mpi);
  job.coordinators = coordinator_count(job.coordinators, mpi.size());
  const int rank = mpi.rank(), world = mpi.size();
  const bool root = rank == 0;

  // 1. The output. It must not be one of the job's inputs (checked again
  // once the mask files' includes are known).
  std::optional<OutputFile> out;
  if (root && !job.out.empty()) out.emplace(job.out);

  // 2. The model.
  JobModel model = load_job_model(job, rank, world);
  const ModelConfig& config = model.config;
  if (root) log_job_start(job, model, world);
  mpi.job_started = true;

  // 3. Mask sets.
  const MaskSets masks = read_mask_sets(job, config, root);
  if (root) check_claimed_outputs();

  // Ids whose log-probabilities every request keeps, named on rank 0.
  if (!job.score_tokens.empty()) {
    std::vector<int32_t> ids;
    if (root) {
      const auto& tokenizer = model.loaded->tokenizer;
      ids = make_scan_metric("token-prob", job.score_tokens, "", tokenizer,
                             std::min(tokenizer.vocab_size(), config.vocab_size))
                .score_ids;
    }
    broadcast(ids, "the --score-tokens ids");
    job.gen.score_ids = std::move(ids);
  }

  // 4. Requests and the checkpoint.
  JobRequests requests;
  std::optional<Checkpoint> checkpoint;
  FinishedRequests finished;
  if (root) {
    requests = JobRequests(job, model, masks);
    open_checkpoint(job, model, requests, masks, checkpoint, finished);
  }
  int already_finished = job.already_finished ? 1 : 0;
  MPI_Bcast(&already_finished, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (already_finished != 0) {
    if (root)
      spdlog::warn(
          "{}: this job already finished (its result is complete and no checkpoint is left); nothing to resume",
          job.out);
    return 0;
  }

  // 5. Run.
  JobRun job_run(job, mpi, model, masks.sets);
  std::optional<ResultCollector> collector;
  size_t todo_count = 0;
  std::vector<std::pair<size_t, GenerationRequest>> todo;
  if (root) {
    std::vector<size_t> todo_index;
    for (size_t i = 0; i < requests.size(); ++i) {
      if (finished.count(i) == 0 && !requests.failed(i)) {
        todo.emplace_back(i, requests.request(i));
        todo_index.push_back(i);
      }
    }
    todo_count = todo.size();
    collector.emplace(job, model, requests, out ? &*out : nullptr, checkpoint ? &*checkpoint : nullptr,
                      std::move(finished), todo_index, static_cast<bool>(finish));
  }
  // A request's prompt is read and encoded as it is handed out, and kept
  // until its result is written and printed.
  const RequestFiller fill = [&](size_t i, GenerationRequest& req) {
    PreparedPrompt prompt = requests.prepare(i);
    req.prompt = prompt.encoded.tokens;
    if (!job.gen.score_ids.empty()) req.score_from = static_cast<int32_t>(req.prompt.size()) - 1;
    collector->handed_out(i, std::move(prompt));
  };
  const int stop_decided = job_run.run(std::move(todo), root ? ResultHandler(std::ref(*collector)) : ResultHandler(),
                                       root ? fill : RequestFiller());

  // How the job ended, decided by rank 0: 0 complete, else the stop signal
  // that ended it early. Every rank exits with the same code.
  int stopped_by = 0;
  if (root && collector->finished_now() < todo_count) {
    stopped_by = stop_decided;
    if (stopped_by == 0)
      fail("the job ended with {} of {} requests unfinished and no stop signal", collector->finished_now(), todo_count);
  }
  MPI_Bcast(&stopped_by, 1, MPI_INT, 0, MPI_COMM_WORLD);
  const auto exit_code = [&] { return stopped_by == 0 ? 0 : 128 + stopped_by; };

  // 6. Counters, per coordinator: what the experts processed against
  // what that coordinator's router decided.
  const ExpertCounters run_routed = job_run.check_counters();
  const std::vector<uint64_t> rank_memory = gather_rank_memory(model, world);
  job_run.report_throughput();
  if (!root) return exit_code();

  // 7. The result.
  if (stopped_by != 0) {
    // Stopped: keep what finished (in-flight requests run again on resume).
    const size_t saved = collector->finished_before() + collector->finished_now();
    if (!collector->save_checkpoint()) {
      spdlog::warn("{}: stopped after {} of {} requests; nothing was saved ({})", signal_name(stopped_by), saved,
                   requests.size(), job.out.empty() ? "no --out" : "--no-request-counts");
      return exit_code();
    }
    if (saved == 0) {
      // Nothing to resume from: a checkpoint would only make --resume necessary.
      checkpoint->remove();
      spdlog::warn("{}: stopped before any of the {} requests finished; nothing was saved", signal_name(stopped_by),
                   requests.size());
      return exit_code();
    }
    spdlog::warn("{}: stopped after {} of {} requests, saved in {}; run the same command with --resume to finish",
                 signal_name(stopped_by), saved, requests.size(), checkpoint->dir().string());
    return exit_code();
  }
  // The per-request counts add up to the same totals: token counts exactly,
  // gate sums up to summation order.
  collector->print_ready();
  if (const auto diff = run_routed.first_difference(collector->run_totals(), kGateSumOrderTolerance))
    fail("per-request expert counts do not add up to the ranks' counters: {}", *diff);
  collector->write_result(mpi, masks, rank_memory, finish);
  return 0;
}

}  // namespace mote
