#include "mote/expert_parallel/expert_exchange.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "mote/io/safetensors_writer.h"
#include "mote/util/error.h"
#include "mote/util/stop_signal.h"

namespace mote {
namespace {

enum Command : int32_t { kIdle = 0, kLayer = 1, kStop = 2 };
constexpr int kControlInts = 3;  // {command, moe_layer, records}

void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    fail("MPI {} failed: {}", what, std::string(text, static_cast<size_t>(len)));
  }
}

int to_count(size_t bytes) {
  if (bytes > static_cast<size_t>(std::numeric_limits<int>::max())) {
    fail("one exchange would move {} bytes to a rank, more than MPI counts allow; lower --max-step-tokens", bytes);
  }
  return static_cast<int>(bytes);
}

void displacements(const std::vector<int>& counts, std::vector<int>& displs) {
  displs.assign(counts.size(), 0);
  size_t total = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    displs[i] = to_count(total);
    total += static_cast<size_t>(counts[i]);
  }
  to_count(total);
}

// Values travel as fp32 or bf16; both ends of every path (the local one
// included) round the same way, so the world size never changes the bits.
void put_values(char* dst, const float* src, int n, WireDType dtype) {
  if (dtype == WireDType::F32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * 4);
    return;
  }
  for (int i = 0; i < n; ++i) {
    const uint16_t b = float_to_bf16(src[i]);
    std::memcpy(dst + 2 * i, &b, 2);
  }
}

void get_values(float* dst, const char* src, int n, WireDType dtype) {
  if (dtype == WireDType::F32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * 4);
    return;
  }
  for (int i = 0; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, src + 2 * i, 2);
    const uint32_t wide = static_cast<uint32_t>(b) << 16;
    std::memcpy(dst + i, &wide, 4);
  }
}

int32_t read_i32(const char* p, int index) {
  int32_t v;
  std::memcpy(&v, p + 4 * index, 4);
  return v;
}

}  // namespace

WireDType parse_wire_dtype(const std::string& name) {
  if (name == "f32") return WireDType::F32;
  if (name == "bf16") return WireDType::BF16;
  fail("--wire-dtype '{}' is not one of f32, bf16", name);
}

ExpertWorker::ExpertWorker(const ModelWeights& weights, const ModelConfig& config, const Placement& placement, int rank,
                           WireFormat wire, ExpertCounters* counters, const std::vector<ExpertMask>* masks)
    : weights_(weights), config_(config), placement_(placement), rank_(rank), wire_(wire), counters_(counters), masks_(masks) {}

void ExpertWorker::process(int moe_layer, const std::vector<char>& recv, const std::vector<int>& recv_records,
                           std::vector<char>& results, std::vector<int>& result_counts) {
  const int sources = static_cast<int>(recv_records.size());
  const int n_experts = config_.n_routed_experts;
  const int k = wire_.top_k;
  const size_t rec = wire_.record_bytes();
  const int layer = config_.moe_layers()[static_cast<size_t>(moe_layer)];
  const LayerWeights& lw = weights_.layers[static_cast<size_t>(layer)];

  // Validate every record and lay out the results: per source, per record,
  // one hidden vector per expert entry, in entry order.
  int total_records = 0;
  for (int c : recv_records) total_records += c;
  result_counts.assign(static_cast<size_t>(sources), 0);
  result_offset_.clear();  // byte offset of each (record, entry) result
  offsets_.assign(static_cast<size_t>(n_experts) + 1, 0);
  size_t result_total = 0;
  for (int src = 0, r = 0; src < sources; ++src) {
    for (int i = 0; i < recv_records[src]; ++i, ++r) {
      const char* record = recv.data() + static_cast<size_t>(r) * rec;
      const int32_t entries = read_i32(record, 0);
      if (entries < 1 || entries > k) fail("protocol error: rank {} received a record with {} experts from rank {}", rank_, entries, src);
      const int32_t mask_id = read_i32(record, 3);
      const ExpertMask* mask = nullptr;
      if (mask_id != 0) {
        if (masks_ == nullptr || mask_id < 0 || static_cast<size_t>(mask_id) >= masks_->size()) {
          fail("protocol error: rank {} received a token under unknown mask set {} from rank {}", rank_, mask_id, src);
        }
        mask = &(*masks_)[static_cast<size_t>(mask_id)];
      }
      for (int j = 0; j < entries; ++j) {
        const int32_t e = read_i32(record, WireFormat::kMeta + j);
        if (e < 0 || e >= n_experts || placement_.owner(moe_layer, e) != rank_) {
          fail("protocol error: rank {} received a token for expert {} of MoE layer {} from rank {}, which it does not own", rank_, e,
               moe_layer, src);
        }
        if (mask != nullptr && mask->is_off(moe_layer, e)) {
          fail("protocol error: rank {} received a token for expert {} of MoE layer {}, which mask set '{}' switches off", rank_, e,
               moe_layer, mask->name);
        }
        ++offsets_[static_cast<size_t>(e) + 1];
        result_offset_.push_back(result_total);
        result_total += wire_.result_bytes();
      }
      result_counts[src] += to_count(static_cast<size_t>(entries) * wire_.result_bytes());
    }
  }
  results.resize(result_total);

  // Counting sort of the entries by expert, keeping arrival order within an
  // expert (source rank, then record order): that order is the same for any
  // placement, so are the counters' sums.
  for (int e = 0; e < n_experts; ++e) offsets_[e + 1] += offsets_[e];
  order_.resize(result_offset_.size());
  cursor_.assign(offsets_.begin(), offsets_.end() - 1);
  auto& cursor = cursor_;
  entry_pos_.resize(result_offset_.size());  // (record, j) of each entry
  auto& entry_pos = entry_pos_;
  for (int r = 0, entry = 0; r < total_records; ++r) {
    const char* record = recv.data() + static_cast<size_t>(r) * rec;
    const int32_t entries = read_i32(record, 0);
    for (int j = 0; j < entries; ++j, ++entry) {
      order_[cursor[read_i32(record, WireFormat::kMeta + j)]++] = entry;
      entry_pos[entry] = {r, j};
    }
  }

  const size_t h = static_cast<size_t>(wire_.hidden);
  const auto start = std::chrono::steady_clock::now();
  const size_t entries = order_.size();
  gathered_.resize(entries * h);
  computed_.resize(entries * h);
  jobs_.clear();
  for (int e = 0; e < n_experts; ++e) {
    const int begin = offsets_[e];
    const int count = offsets_[e + 1] - begin;
    if (count == 0) continue;
    for (int i = begin; i < begin + count; ++i) {
      const auto [r, j] = entry_pos[order_[i]];
      const char* record = recv.data() + static_cast<size_t>(r) * rec;
      get_values(gathered_.data() + i * h, record + wire_.header_bytes(), wire_.hidden, wire_.dtype);
      if (counters_ != nullptr) {
        float weight;
        std::memcpy(&weight, record + 4 * (WireFormat::kMeta + k + j), 4);
        counters_->add(read_i32(record, 1), read_i32(record, 2), moe_layer, e, weight);
      }
    }
    jobs_.push_back({&lw.experts[e], gathered_.data() + begin * h, count, computed_.data() + begin * h});
  }
  ffn_.forward_many(jobs_);
  for (size_t i = 0; i < entries; ++i) {
    put_values(results.data() + result_offset_[order_[i]], computed_.data() + i * h, wire_.hidden, wire_.dtype);
  }
  compute_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

MpiExpertExecutor::MpiExpertExecutor(MPI_Comm comm, const Placement& placement, WireFormat wire, ExpertWorker& worker, bool overlap)
    : comm_(comm), placement_(placement), wire_(wire), worker_(worker), overlap_(overlap) {
  MPI_Comm_size(comm_, &world_);
}

void MpiExpertExecutor::exchange_control(int command, int moe_layer) {
  std::vector<int32_t> send(static_cast<size_t>(world_) * kControlInts), recv(send.size());
  for (int r = 0; r < world_; ++r) {
    send[r * kControlInts] = command;
    send[r * kControlInts + 1] = moe_layer;
    send[r * kControlInts + 2] = command == kLayer ? send_records_[r] : 0;
  }
  check_mpi(MPI_Alltoall(send.data(), kControlInts, MPI_INT32_T, recv.data(), kControlInts, MPI_INT32_T, comm_), "Alltoall (control)");
  recv_records_.assign(static_cast<size_t>(world_), 0);
  for (int r = 0; r < world_; ++r) recv_records_[r] = recv[r * kControlInts + 2];
  for (int r = 1; r < world_ && peer_stop_signal_ == 0; ++r) peer_stop_signal_ = recv[r * kControlInts];
}

void MpiExpertExecutor::begin(const ExpertBatch& b) {
  batch_ = b;
  const int k = b.top_k;
  const size_t rec = wire_.record_bytes();
  send_records_.assign(static_cast<size_t>(world_), 0);
  entries_.resize(static_cast<size_t>(world_));
  for (auto& e : entries_) e.clear();  // keeps capacity: no allocation per layer once warm

  // Records per destination: count first, then fill in place.
  has_dest_.resize(static_cast<size_t>(world_));
  auto& has_dest = has_dest_;
  for (int row = 0; row < b.n; ++row) {
    std::fill(has_dest.begin(), has_dest.end(), 0);
    for (int s = 0; s < k; ++s) {
      const int32_t e = b.experts[row * k + s];
      if (e >= 0) has_dest[placement_.owner(b.moe_layer, e)] = 1;
    }
    for (int d = 0; d < world_; ++d) send_records_[d] += has_dest[d];
  }
  send_bytes_.resize(static_cast<size_t>(world_));
  for (int d = 0; d < world_; ++d) send_bytes_[d] = to_count(static_cast<size_t>(send_records_[d]) * rec);
  displacements(send_bytes_, send_displs_);
  send_buf_.resize(static_cast<size_t>(send_displs_.back()) + static_cast<size_t>(send_bytes_.back()));

  fill_.assign(send_displs_.begin(), send_displs_.end());
  auto& fill = fill_;
  for (int row = 0; row < b.n; ++row) {
    for (int d = 0; d < world_; ++d) {
      char* record = nullptr;
      int32_t entries = 0;
      for (int s = 0; s < k; ++s) {
        const int32_t e = b.experts[row * k + s];
        if (e < 0 || placement_.owner(b.moe_layer, e) != d) continue;
        if (record == nullptr) {
          record = send_buf_.data() + fill[d];
          fill[d] += rec;
          std::memset(record, 0, wire_.header_bytes());
          const int32_t meta[3] = {b.rows[row].cls, b.rows[row].phase, b.rows[row].mask != nullptr ? b.rows[row].mask->id : 0};
          std::memcpy(record + 4, meta, sizeof meta);
          put_values(record + wire_.header_bytes(), b.x + static_cast<size_t>(row) * wire_.hidden, wire_.hidden, wire_.dtype);
        }
        std::memcpy(record + 4 * (WireFormat::kMeta + entries), &e, 4);
        std::memcpy(record + 4 * (WireFormat::kMeta + k + entries), &b.weights[row * k + s], 4);
        ++entries;
        entries_[d].push_back(row * k + s);
      }
      if (record != nullptr) std::memcpy(record, &entries, 4);
    }
  }

  exchange_control(kLayer, b.moe_layer);
  recv_bytes_.resize(static_cast<size_t>(world_));
  for (int s = 0; s < world_; ++s) recv_bytes_[s] = to_count(static_cast<size_t>(recv_records_[s]) * rec);
  displacements(recv_bytes_, recv_displs_);
  recv_buf_.resize(static_cast<size_t>(recv_displs_.back()) + static_cast<size_t>(recv_bytes_.back()));
  check_mpi(MPI_Ialltoallv(send_buf_.data(), send_bytes_.data(), send_displs_.data(), MPI_BYTE, recv_buf_.data(), recv_bytes_.data(),
                           recv_displs_.data(), MPI_BYTE, comm_, &payload_request_),
            "Ialltoallv (payload)");
  if (!overlap_) check_mpi(MPI_Wait(&payload_request_, MPI_STATUS_IGNORE), "Wait (payload)");
}

void MpiExpertExecutor::finish(float* out) {
  check_mpi(MPI_Wait(&payload_request_, MPI_STATUS_IGNORE), "Wait (payload)");
  worker_.process(batch_.moe_layer, recv_buf_, recv_records_, results_, result_counts_);
  displacements(result_counts_, result_displs_);

  // What comes back from each destination: one vector per entry sent there.
  returned_counts_.resize(static_cast<size_t>(world_));
  for (int d = 0; d < world_; ++d) returned_counts_[d] = to_count(entries_[d].size() * wire_.result_bytes());
  displacements(returned_counts_, returned_displs_);
  returned_.resize(static_cast<size_t>(returned_displs_.back()) + static_cast<size_t>(returned_counts_.back()));
  check_mpi(MPI_Alltoallv(results_.data(), result_counts_.data(), result_displs_.data(), MPI_BYTE, returned_.data(),
                          returned_counts_.data(), returned_displs_.data(), MPI_BYTE, comm_),
            "Alltoallv (results)");

  const size_t h = static_cast<size_t>(wire_.hidden);
  for (int d = 0; d < world_; ++d) {
    const char* src = returned_.data() + returned_displs_[d];
    for (const int32_t entry : entries_[d]) {
      get_values(out + static_cast<size_t>(entry) * h, src, wire_.hidden, wire_.dtype);
      src += wire_.result_bytes();
    }
  }
}

void MpiExpertExecutor::shutdown() {
  send_records_.assign(static_cast<size_t>(world_), 0);
  exchange_control(kStop, 0);
}

ShardServer::ShardServer(MPI_Comm comm, WireFormat wire, ExpertWorker& worker) : comm_(comm), wire_(wire), worker_(worker) {}

int64_t ShardServer::run() {
  int world = 0;
  MPI_Comm_size(comm_, &world);
  std::vector<int32_t> send(static_cast<size_t>(world) * kControlInts, 0), control(send.size());
  std::vector<int> zeros(static_cast<size_t>(world), 0), recv_records(static_cast<size_t>(world)), recv_bytes(static_cast<size_t>(world)),
      recv_displs, result_counts, result_displs;
  std::vector<char> recv, results;
  char empty = 0;
  int64_t served = 0;
  for (;;) {
    send[0] = stop_signal();  // to the coordinator, which decides when to stop
    check_mpi(MPI_Alltoall(send.data(), kControlInts, MPI_INT32_T, control.data(), kControlInts, MPI_INT32_T, comm_), "Alltoall (control)");
    // Rank 0 is the coordinator; it decides whether there is a layer or the end.
    const int32_t command = control[0];
    if (command == kStop) return served;
    if (command != kLayer) fail("protocol error: unknown command {} from the coordinator", command);
    const int moe_layer = control[1];
    for (int s = 0; s < world; ++s) {
      recv_records[s] = control[s * kControlInts + 2];
      recv_bytes[s] = to_count(static_cast<size_t>(recv_records[s]) * wire_.record_bytes());
    }
    displacements(recv_bytes, recv_displs);
    recv.resize(static_cast<size_t>(recv_displs.back()) + static_cast<size_t>(recv_bytes.back()));
    // The coordinator posts the payload as a non-blocking collective, which
    // only a non-blocking one may match.
    MPI_Request request = MPI_REQUEST_NULL;
    check_mpi(MPI_Ialltoallv(&empty, zeros.data(), zeros.data(), MPI_BYTE, recv.data(), recv_bytes.data(), recv_displs.data(), MPI_BYTE,
                             comm_, &request),
              "Ialltoallv (payload)");
    check_mpi(MPI_Wait(&request, MPI_STATUS_IGNORE), "Wait (payload)");
    worker_.process(moe_layer, recv, recv_records, results, result_counts);
    displacements(result_counts, result_displs);
    check_mpi(MPI_Alltoallv(results.data(), result_counts.data(), result_displs.data(), MPI_BYTE, &empty, zeros.data(), zeros.data(),
                            MPI_BYTE, comm_),
              "Alltoallv (results)");
    ++served;
  }
}

}  // namespace mote
