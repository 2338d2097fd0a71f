// The steps of a serve job, as every rank takes them:
//
//   1. rank 0's front end listens and the record (--record) opens: a taken
//      port or an unwritable path fails before any work
//   2. load the model and read the mask sets, as a job does
//   3. run: the coordinators generate what the front end hands in, every
//      rank serves its experts, until a signal closes the front end and
//      what it took has finished (or its shutdown deadline cancels it);
//      each finished request goes into the record; a rank that dies fails
//      the requests in flight at once
//   4. check the expert counters, as a job does, and write the record
#include "mote/runtime/serve.h"

#include <spdlog/spdlog.h>

#include "job_steps.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/util/error.h"
#include "peer_watch.h"
#include "serve_record.h"

namespace mote {

int run_serve(JobOptions& job, MpiSession& mpi, ServeFrontEnd* front) {
  job.serving = true;
  set_threads(job, mpi);
  job.coordinators = coordinator_count(job.coordinators, mpi.size());
  const int rank = mpi.rank(), world = mpi.size();
  const bool root = rank == 0;

  // 1. Listen, and open the record.
  std::optional<ServeRecord> record;
  if (root) {
    front->listen();
    if (!job.out.empty()) record.emplace(job);
  }

  // 2. The model and the mask sets.
  JobModel model = load_job_model(job, rank, world);
  const ModelConfig& config = model.config;
  if (root) log_job_start(job, model, world);
  mpi.job_started = true;
  const MaskSets masks = read_mask_sets(job, config, root);
  if (record) record->start(model, masks);
  if (root) {
    ServedModel served;
    served.config = &config;
    served.tokenizer = &model.loaded->tokenizer;
    const auto& chat = model.chat_templates[""];
    served.chat = chat ? &*chat : nullptr;
    served.context = config.max_position_embeddings;
    served.vocab = std::min(model.loaded->tokenizer.vocab_size(), config.vocab_size);
    served.default_max_tokens = job.gen.max_new_tokens;
    if (job.gen.stop_at_eos) served.eos_ids = model.loaded->eos_ids;
    served.masks = &masks.sets;
    served.default_mask = masks.default_mask;
    served.moe_layers = config.moe_layers();
    served.experts = config.n_routed_experts;
    front->ready(std::move(served));
  }

  // 3. Run until shut down. A rank that dies stops the others in MPI
  // until mpirun kills them; rank 0 sees it and fails its requests first.
  PeerWatch peers(mpi, [front](const std::string& why) { front->fail_running(why); });
  JobRun job_run(job, mpi, model, masks.sets);
  const ResultHandler on_done = [&](size_t id, GenerationResult&& result) {
    if (record) record->add(front->describe(id), result);
    front->finished(id, std::move(result));
  };
  const RequestFiller fill = [&](size_t id, GenerationRequest&) { front->handed_out(id); };
  job_run.run({}, root ? on_done : ResultHandler(), root ? fill : RequestFiller(), root ? front : nullptr);
  peers.stop();
  if (root) front->stop();

  // 4. Counters, and the record: the requests it holds add up to what the
  // ranks' experts processed, to the bit.
  const ExpertCounters routed = job_run.check_counters();
  const std::vector<uint64_t> rank_memory = gather_rank_memory(model, world);
  job_run.report_throughput();
  if (root) {
    log_rank_memory(rank_memory);
    if (record) {
      if (const auto diff = routed.first_difference(record->run_totals(), kGateSumOrderTolerance))
        fail("the recorded requests' expert counts do not add up to the ranks' counters: {}", *diff);
      record->finish(masks, rank_memory, world);
    }
    spdlog::info("the server has shut down");
  }
  return 0;
}

}  // namespace mote
