// Expert-parallel dispatch over MPI. Per MoE layer and step, every rank
// takes part in exactly three collectives:
//
//   MPI_Alltoall   control: {command, MoE layer, records} per rank pair
//   MPI_Alltoallv  payload: one record per (token, destination rank)
//   MPI_Alltoallv  results: one hidden vector per (record, expert)
//
// A record carries the token's hidden state once, however many of its top-k
// experts the destination owns, with their ids and gate weights and the
// token's class and phase (for the counters). Any rank can send tokens and
// any rank can own experts, so several coordinators fit the same protocol.
// The coordinator combines results in top-k slot order, never in arrival
// order, so results are bit-identical for any world size and placement.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "mote/expert_parallel/expert_counters.h"
#include "mote/expert_parallel/placement.h"
#include "mote/model/config.h"
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

// Runs this rank's routed experts over the records it received, one GEMM
// per projection per expert over all of its tokens, and counts them.
class ExpertWorker {
 public:
  // `masks`: the job's mask sets by id (id 0 may be unused); a token for an
  // expert its request's set switches off is a protocol error.
  ExpertWorker(const ModelWeights& weights, const ModelConfig& config, const Placement& placement, int rank, WireFormat wire,
               ExpertCounters* counters, const std::vector<ExpertMask>* masks = nullptr);
  // recv holds records from each source rank (recv_records[src] of them, in
  // source order); writes the results for each source into `results`
  // (result_counts[src] bytes each, in source order).
  void process(int moe_layer, const std::vector<char>& recv, const std::vector<int>& recv_records, std::vector<char>& results,
               std::vector<int>& result_counts);
  // Seconds spent in expert GEMMs so far (for benchmarks).
  double compute_seconds() const { return compute_seconds_; }

 private:
  double compute_seconds_ = 0;
  const ModelWeights& weights_;
  const ModelConfig& config_;
  const Placement& placement_;
  int rank_;
  WireFormat wire_;
  ExpertCounters* counters_;
  const std::vector<ExpertMask>* masks_;
  Ffn ffn_;
  std::vector<int> offsets_, order_, cursor_;
  std::vector<size_t> result_offset_;
  std::vector<std::pair<int, int>> entry_pos_;
  std::vector<float> gathered_, computed_;
  std::vector<FfnJob> jobs_;
};

// The coordinator's side: an ExpertExecutor that ships tokens to the ranks
// owning their experts (itself included) and waits for the results.
class MpiExpertExecutor : public ExpertExecutor {
 public:
  // With `overlap`, the payload exchange is left in flight while the caller
  // computes the shared expert; without, begin() waits for it.
  MpiExpertExecutor(MPI_Comm comm, const Placement& placement, WireFormat wire, ExpertWorker& worker, bool overlap = true);
  void begin(const ExpertBatch& batch) override;
  void finish(float* out) override;
  // Tells every other rank that the job is over.
  void shutdown();
  // A stop signal (SIGTERM, SIGINT) that reached a shard rank, reported in
  // the control exchange so the coordinator stops the job; 0 if none.
  int peer_stop_signal() const { return peer_stop_signal_; }

 private:
  void exchange_control(int command, int moe_layer);

  MPI_Comm comm_;
  const Placement& placement_;
  WireFormat wire_;
  ExpertWorker& worker_;
  bool overlap_;
  int world_;
  int peer_stop_signal_ = 0;
  ExpertBatch batch_;
  MPI_Request payload_request_ = MPI_REQUEST_NULL;
  std::vector<int> send_records_, recv_records_, send_bytes_, recv_bytes_, send_displs_, recv_displs_;
  std::vector<char> send_buf_, recv_buf_, results_, returned_;
  std::vector<int> result_counts_, returned_counts_, result_displs_, returned_displs_;
  std::vector<uint8_t> has_dest_;
  std::vector<size_t> fill_;
  // For each destination, in record order, the (row * top_k + slot) of each expert entry.
  std::vector<std::vector<int32_t>> entries_;
};

// A rank without a prompt queue: serves its experts until the coordinator
// says the job is over.
class ShardServer {
 public:
  ShardServer(MPI_Comm comm, WireFormat wire, ExpertWorker& worker);
  // Returns the number of MoE-layer exchanges served.
  int64_t run();

 private:
  MPI_Comm comm_;
  WireFormat wire_;
  ExpertWorker& worker_;
};

}  // namespace mote
