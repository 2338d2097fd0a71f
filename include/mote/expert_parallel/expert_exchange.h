// Expert-parallel dispatch over MPI. The job proceeds in rounds; in each
// round every rank takes part in exactly three collectives (non-blocking,
// completed by wait_for in mpi_calls.h):
//
//   MPI_Ialltoall   control: {state, MoE layer, records, stop signal} per rank pair
//   MPI_Ialltoallv  payload: one record per (token, destination rank)
//   MPI_Ialltoallv  results: one hidden vector per (record, expert)
//
// A coordinator's MoE layer is one round in which it sends its tokens; a
// rank with no tokens to send (an expert shard, or a coordinator waiting
// for requests or finished) still takes part, serving the tokens others
// send to its experts. Coordinators need not be at the same MoE layer in
// the same round: each source's records carry their layer in its control
// message. The round in which every rank reports that it will send nothing
// again is the job's last.
//
// A record carries the token's hidden state once, however many of its top-k
// experts the destination owns, with their ids and gate weights and the
// token's class, phase and mask set (for the counters and the mask check).
// A coordinator's tokens for its own experts go into no record: its worker
// reads them in place and the combine reads their results where the
// worker left them.
// A coordinator combines results in top-k slot order, never in arrival
// order, so results are bit-identical for any world size, number of
// coordinators and placement.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "mote/expert_parallel/placement.h"
#include "mote/model/config.h"
#include "mote/model/expert_counters.h"
#include "mote/model/expert_mask.h"
#include "mote/model/experts.h"
#include "mote/model/ffn.h"
#include "mote/model/weights.h"

namespace mote {

enum class WireDType { F32, BF16 };
WireDType parse_wire_dtype(const std::string& name);

// Shape of the messages, the same on every rank of a job.
struct WireFormat {
  int hidden = 0;
  int top_k = 0;
  WireDType dtype = WireDType::F32;

  size_t value_bytes() const { return dtype == WireDType::F32 ? 4 : 2; }
  // int32 {entries, class, phase, mask set}, int32 experts[top_k], float weights[top_k]
  static constexpr int kMeta = 4;
  size_t header_bytes() const { return 4 * (kMeta + 2 * static_cast<size_t>(top_k)); }
  size_t record_bytes() const { return header_bytes() + hidden * value_bytes(); }
  size_t result_bytes() const { return hidden * value_bytes(); }
};

// A coordinator's own tokens for its own experts. They are read where they
// are instead of being packed and sent to the rank itself, rounded as the
// wire rounds them, so the bits are those of any other path.
struct LocalTokens {
  const ExpertBatch* batch = nullptr;  // null: none this round
  std::span<const int32_t> entries;    // (row * top_k + slot) of each, in row order
};

// Runs this rank's routed experts over the records it received, one GEMM
// per projection per expert over all of its tokens, and counts them.
class ExpertWorker {
 public:
  // `counters[src]` counts the tokens that source rank `src` sent (a token
  // from a rank beyond them is a protocol error); null counts nothing.
  // Kept per source so that each coordinator's counts can be checked
  // against its own routing record to the last bit. `masks`: the job's
  // mask sets by id (id 0 may be unused); a token for an expert its
  // request's set switches off is a protocol error.
  ExpertWorker(const ModelWeights& weights, const ModelConfig& config, const Placement& placement, int rank,
               WireFormat wire, std::vector<ExpertCounters>* counters, const std::vector<ExpertMask>* masks = nullptr);
  // recv holds records from each source rank (recv_records[src] of them, in
  // source order, for MoE layer recv_layers[src]); writes the results for
  // each source into `results` (result_counts[src] bytes each, in source order).
  // `local`: this rank's own tokens, processed with them as from source `rank`.
  void process(const std::vector<char>& recv, const std::vector<int>& recv_records, const std::vector<int>& recv_layers,
               std::vector<char>& results, std::vector<int>& result_counts, const LocalTokens& local = {});
  // The result of local entry i of the last process(), rounded as the wire
  // rounds; valid until the next process().
  const float* local_result(size_t i) const {
    return computed_.data() + local_row_[i] * static_cast<size_t>(wire_.hidden);
  }
  // Seconds spent in expert GEMMs so far (for benchmarks).
  double compute_seconds() const { return compute_seconds_; }

 private:
  double compute_seconds_ = 0;
  const ModelWeights& weights_;
  const ModelConfig& config_;
  const Placement& placement_;
  int rank_;
  WireFormat wire_;
  std::vector<ExpertCounters>* counters_;
  const std::vector<ExpertMask>* masks_;
  // One (token, expert) pair to compute, in arrival order: by source rank,
  // then in the source's row order.
  struct Entry {
    int key;  // moe_layer * n_routed_experts + expert
    int source;
    int32_t cls, phase;
    float weight;
    const char* wire;    // the token's values as received, or
    const float* local;  // this rank's own token, in place
    size_t out;          // byte offset of the result in `results`, or index among local entries
  };
  Ffn ffn_;
  std::vector<Entry> entries_;
  std::vector<int> offsets_, order_, cursor_;
  std::vector<size_t> local_row_;  // row of computed_ holding each local entry's result
  std::vector<float> gathered_, computed_;
  std::vector<FfnJob> jobs_;
};

// Every rank's side of the rounds. A coordinator's model runs its MoE
// layers through begin()/finish() (an ExpertExecutor); between its own
// steps, and after its last, it calls serve().
class ExpertExchange : public ExpertExecutor {
 public:
  // With `overlap`, the payload exchange is left in flight while the caller
  // computes the shared expert; without, begin() waits for it.
  ExpertExchange(MPI_Comm comm, const Placement& placement, WireFormat wire, ExpertWorker& worker, bool overlap = true);
  // A round that sends this rank's tokens of one MoE layer.
  void begin(const ExpertBatch& batch) override;
  void finish(std::vector<const float*>& rows) override;
  // A round without tokens of this rank's own, serving the others'.
  // `done`: this rank will send no tokens again. Returns false when every
  // rank reported done: that round was the job's last, and none follows.
  bool serve(bool done);
  // The first stop signal (SIGTERM, SIGINT ...) any rank reported, in rank
  // order, 0 if none: the same on every rank after the same round.
  int stop_signal() const { return stop_signal_; }
  int64_t rounds() const { return rounds_; }
  // Seconds spent waiting in collectives (the exchange and other ranks).
  double wait_seconds() const { return wait_seconds_; }

 private:
  // Completes `request`, counting the time in wait_seconds().
  void wait(MPI_Request& request, const char* what);
  // Returns false when every rank reported done.
  bool exchange_control(int state, int moe_layer);
  void post_payload();
  void exchange_results();

  MPI_Comm comm_;
  const Placement& placement_;
  WireFormat wire_;
  ExpertWorker& worker_;
  bool overlap_;
  int world_, rank_;
  int stop_signal_ = 0;
  int64_t rounds_ = 0;
  double wait_seconds_ = 0;
  ExpertBatch batch_;
  MPI_Request payload_request_ = MPI_REQUEST_NULL;
  std::vector<int32_t> control_send_, control_recv_;
  std::vector<int> send_records_, recv_records_, recv_layers_, send_bytes_, recv_bytes_, send_displs_, recv_displs_;
  std::vector<char> send_buf_, recv_buf_, results_, returned_;
  std::vector<float> widened_;  // returned values widened from bf16
  std::vector<int> result_counts_, returned_counts_, result_displs_, returned_displs_;
  std::vector<uint8_t> has_dest_;
  std::vector<size_t> fill_;
  // For each destination, in record order, the (row * top_k + slot) of each
  // expert entry; this rank's own entries are LocalTokens, never sent.
  std::vector<std::vector<int32_t>> entries_;
};

}  // namespace mote
