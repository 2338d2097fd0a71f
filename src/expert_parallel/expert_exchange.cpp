#include "mote/expert_parallel/expert_exchange.h"

#include <algorithm>
#include <cstring>

#include "mote/expert_parallel/mpi_calls.h"
#include "mote/util/dtype.h"
#include "mote/util/error.h"
#include "mote/util/stop_signal.h"

namespace mote {
namespace {

// What a rank tells the others at the start of a round.
enum State : int32_t {
  kWork = 1,  // it sends tokens of one MoE layer in this round
  kIdle = 2,  // it sends none now, but may later
  kDone = 3,  // it will send none again
};
constexpr int kControlInts = 4;  // {state, moe_layer, records, stop signal}

constexpr const char* kExchange = "one exchange to a rank";
constexpr const char* kRemedy = "lower --max-step-tokens";

int to_count(size_t bytes) { return mpi_count(bytes, kExchange, kRemedy); }

void displacements(const std::vector<int>& counts, std::vector<int>& displs) {
  mpi_displacements(counts, displs, kExchange, kRemedy);
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

// What put_values then get_values make of the values, without the bytes
// between: a rank's own tokens and results take this path. `dst` may be `src`.
void round_values(float* dst, const float* src, int n, WireDType dtype) {
  if (dtype == WireDType::F32) {
    if (dst != src) std::memcpy(dst, src, static_cast<size_t>(n) * 4);
    return;
  }
  for (int i = 0; i < n; ++i) {
    const uint32_t wide = static_cast<uint32_t>(float_to_bf16(src[i])) << 16;
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
                           WireFormat wire, std::vector<ExpertCounters>* counters, const std::vector<ExpertMask>* masks)
    : weights_(weights),
      config_(config),
      placement_(placement),
      rank_(rank),
      wire_(wire),
      counters_(counters),
      masks_(masks) {}

void ExpertWorker::process(const std::vector<char>& recv, const std::vector<int>& recv_records,
                           const std::vector<int>& recv_layers, std::vector<char>& results,
                           std::vector<int>& result_counts, const LocalTokens& local) {
  const int sources = static_cast<int>(recv_records.size());
  const int n_experts = config_.n_routed_experts;
  const int moe_layers = placement_.moe_layers();
  const int k = wire_.top_k;
  const size_t rec = wire_.record_bytes();

  // Validate every record and lay out the results: per source, per record,
  // one hidden vector per expert entry, in entry order. Entries are keyed
  // by (MoE layer, expert): sources may be at different layers.
  const auto check_source = [&](int src) {
    if (counters_ != nullptr && src >= static_cast<int>(counters_->size())) {
      fail("protocol error: rank {} received tokens from rank {}, which is not a coordinator", rank_, src);
    }
  };
  const auto check_expert = [&](int32_t e, int moe_layer, const ExpertMask* mask, int src) {
    if (e < 0 || e >= n_experts || placement_.owner(moe_layer, e) != rank_) {
      fail("protocol error: rank {} received a token for expert {} of MoE layer {} from rank {}, which it does not own",
           rank_, e, moe_layer, src);
    }
    if (mask != nullptr && mask->is_off(moe_layer, e)) {
      fail("protocol error: rank {} received a token for expert {} of MoE layer {}, which mask set '{}' switches off",
           rank_, e, moe_layer, mask->name);
    }
  };
  result_counts.assign(static_cast<size_t>(sources), 0);
  entries_.clear();
  local_row_.assign(local.entries.size(), 0);
  offsets_.assign(static_cast<size_t>(moe_layers) * n_experts + 1, 0);
  size_t result_total = 0;
  const char* record = recv.data();
  for (int src = 0; src < sources; ++src) {
    const int moe_layer = recv_layers[src];
    if (recv_records[src] > 0) {
      if (moe_layer < 0 || moe_layer >= moe_layers)
        fail("protocol error: rank {} received tokens for MoE layer {} from rank {}", rank_, moe_layer, src);
      check_source(src);
    }
    for (int i = 0; i < recv_records[src]; ++i, record += rec) {
      const int32_t entries = read_i32(record, 0);
      if (entries < 1 || entries > k)
        fail("protocol error: rank {} received a record with {} experts from rank {}", rank_, entries, src);
      const int32_t mask_id = read_i32(record, 3);
      const ExpertMask* mask = nullptr;
      if (mask_id != 0 && mask_id != kOwnMaskId) {
        if (masks_ == nullptr || mask_id < 0 || static_cast<size_t>(mask_id) >= masks_->size()) {
          fail("protocol error: rank {} received a token under unknown mask set {} from rank {}", rank_, mask_id, src);
        }
        mask = &(*masks_)[static_cast<size_t>(mask_id)];
      }
      for (int j = 0; j < entries; ++j) {
        const int32_t e = read_i32(record, WireFormat::kMeta + j);
        check_expert(e, moe_layer, mask, src);
        float weight;
        std::memcpy(&weight, record + 4 * (WireFormat::kMeta + k + j), 4);
        entries_.push_back({moe_layer * n_experts + e, src, read_i32(record, 1), read_i32(record, 2), weight,
                            record + wire_.header_bytes(), nullptr, result_total});
        ++offsets_[static_cast<size_t>(entries_.back().key) + 1];
        result_total += wire_.result_bytes();
      }
      result_counts[src] += to_count(static_cast<size_t>(entries) * wire_.result_bytes());
    }
    if (src != rank_ || local.batch == nullptr || local.entries.empty()) continue;
    const ExpertBatch& b = *local.batch;
    if (b.moe_layer < 0 || b.moe_layer >= moe_layers)
      fail("protocol error: rank {} has its own tokens for MoE layer {}", rank_, b.moe_layer);
    check_source(src);
    for (size_t i = 0; i < local.entries.size(); ++i) {
      const int32_t entry = local.entries[i], row = entry / b.top_k;
      const StepRow& r = b.rows[static_cast<size_t>(row)];
      check_expert(b.experts[entry], b.moe_layer, r.mask, src);
      entries_.push_back({b.moe_layer * n_experts + b.experts[entry], src, r.cls, r.phase, b.weights[entry], nullptr,
                          b.x + static_cast<size_t>(row) * wire_.hidden, i});
      ++offsets_[static_cast<size_t>(entries_.back().key) + 1];
    }
  }
  results.resize(result_total);

  // Counting sort of the entries by (layer, expert), keeping arrival order
  // within an expert (source rank, then the source's row order), whatever
  // the placement.
  const int keys = moe_layers * n_experts;
  for (int key = 0; key < keys; ++key) offsets_[key + 1] += offsets_[key];
  order_.resize(entries_.size());
  cursor_.assign(offsets_.begin(), offsets_.end() - 1);
  for (size_t entry = 0; entry < entries_.size(); ++entry)
    order_[cursor_[entries_[entry].key]++] = static_cast<int>(entry);

  const size_t h = static_cast<size_t>(wire_.hidden);
  const auto start = std::chrono::steady_clock::now();
  const size_t n = order_.size();
  gathered_.resize(n * h);
  computed_.resize(n * h);
  jobs_.clear();
  for (int key = 0; key < keys; ++key) {
    const int begin = offsets_[key];
    const int count = offsets_[key + 1] - begin;
    if (count == 0) continue;
    const int moe_layer = key / n_experts, e = key % n_experts;
    for (int i = begin; i < begin + count; ++i) {
      const Entry& en = entries_[static_cast<size_t>(order_[i])];
      if (en.wire != nullptr) {
        get_values(gathered_.data() + i * h, en.wire, wire_.hidden, wire_.dtype);
      } else {
        round_values(gathered_.data() + i * h, en.local, wire_.hidden, wire_.dtype);
      }
      if (counters_ != nullptr)
        (*counters_)[static_cast<size_t>(en.source)].add(en.cls, en.phase, moe_layer, e, en.weight);
    }
    const LayerWeights& lw = weights_.layers[static_cast<size_t>(config_.moe_layers()[static_cast<size_t>(moe_layer)])];
    jobs_.push_back({&lw.experts[e], gathered_.data() + begin * h, count, computed_.data() + begin * h});
  }
  ffn_.forward_many(jobs_);
  for (size_t i = 0; i < n; ++i) {
    const Entry& en = entries_[static_cast<size_t>(order_[i])];
    float* out = computed_.data() + i * h;
    if (en.wire != nullptr) {
      put_values(results.data() + en.out, out, wire_.hidden, wire_.dtype);
    } else {
      round_values(out, out, wire_.hidden, wire_.dtype);
      local_row_[en.out] = i;
    }
  }
  compute_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

ExpertExchange::ExpertExchange(MPI_Comm comm, const Placement& placement, WireFormat wire, ExpertWorker& worker,
                               bool overlap)
    : comm_(comm), placement_(placement), wire_(wire), worker_(worker), overlap_(overlap) {
  MPI_Comm_size(comm_, &world_);
  MPI_Comm_rank(comm_, &rank_);
  entries_.resize(static_cast<size_t>(world_));
  send_records_.assign(static_cast<size_t>(world_), 0);
}

void ExpertExchange::wait(MPI_Request& request, const char* what) {
  const auto start = std::chrono::steady_clock::now();
  wait_for(request, what);
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

bool ExpertExchange::exchange_control(int state, int moe_layer) {
  ++rounds_;
  control_send_.resize(static_cast<size_t>(world_) * kControlInts);
  control_recv_.resize(control_send_.size());
  const int signal = mote::stop_signal();
  for (int r = 0; r < world_; ++r) {
    int32_t* c = &control_send_[static_cast<size_t>(r) * kControlInts];
    c[0] = state;
    c[1] = moe_layer;
    c[2] = state == kWork ? send_records_[r] : 0;
    c[3] = signal;
  }
  MPI_Request control = MPI_REQUEST_NULL;
  check_mpi(MPI_Ialltoall(control_send_.data(), kControlInts, MPI_INT32_T, control_recv_.data(), kControlInts,
                          MPI_INT32_T, comm_, &control),
            "Ialltoall (control)");
  wait(control, "Ialltoall (control)");
  recv_records_.assign(static_cast<size_t>(world_), 0);
  recv_layers_.assign(static_cast<size_t>(world_), -1);
  bool all_done = true;
  for (int r = 0; r < world_; ++r) {
    const int32_t* c = &control_recv_[static_cast<size_t>(r) * kControlInts];
    if (c[0] != kWork && c[0] != kIdle && c[0] != kDone) fail("protocol error: unknown state {} from rank {}", c[0], r);
    if (c[2] < 0 || (c[0] != kWork && c[2] != 0))
      fail("protocol error: rank {} announced {} records in state {}", r, c[2], c[0]);
    all_done &= c[0] == kDone;
    recv_records_[r] = c[2];
    recv_layers_[r] = c[1];
    if (stop_signal_ == 0 && c[3] != 0) stop_signal_ = c[3];
  }
  return !all_done;
}

void ExpertExchange::post_payload() {
  const size_t rec = wire_.record_bytes();
  recv_bytes_.resize(static_cast<size_t>(world_));
  for (int s = 0; s < world_; ++s) recv_bytes_[s] = to_count(static_cast<size_t>(recv_records_[s]) * rec);
  displacements(recv_bytes_, recv_displs_);
  recv_buf_.resize(static_cast<size_t>(recv_displs_.back()) + static_cast<size_t>(recv_bytes_.back()) + 1);
  send_bytes_.resize(static_cast<size_t>(world_));
  for (int d = 0; d < world_; ++d) send_bytes_[d] = to_count(static_cast<size_t>(send_records_[d]) * rec);
  displacements(send_bytes_, send_displs_);
  if (send_buf_.empty()) send_buf_.resize(1);
  check_mpi(MPI_Ialltoallv(send_buf_.data(), send_bytes_.data(), send_displs_.data(), MPI_BYTE, recv_buf_.data(),
                           recv_bytes_.data(), recv_displs_.data(), MPI_BYTE, comm_, &payload_request_),
            "Ialltoallv (payload)");
}

// Runs this rank's experts over what it received and sends the results
// back; what comes back to this rank lands in returned_.
void ExpertExchange::exchange_results() {
  wait(payload_request_, "Ialltoallv (payload)");
  // This rank's own entries: none in a round without tokens of its own (serve() clears them).
  worker_.process(recv_buf_, recv_records_, recv_layers_, results_, result_counts_,
                  {&batch_, entries_[static_cast<size_t>(rank_)]});
  displacements(result_counts_, result_displs_);
  returned_counts_.resize(static_cast<size_t>(world_));
  for (int d = 0; d < world_; ++d)
    returned_counts_[d] = d == rank_ ? 0 : to_count(entries_[d].size() * wire_.result_bytes());
  displacements(returned_counts_, returned_displs_);
  returned_.resize(static_cast<size_t>(returned_displs_.back()) + static_cast<size_t>(returned_counts_.back()) + 1);
  if (results_.empty()) results_.resize(1);
  MPI_Request results = MPI_REQUEST_NULL;
  check_mpi(MPI_Ialltoallv(results_.data(), result_counts_.data(), result_displs_.data(), MPI_BYTE, returned_.data(),
                           returned_counts_.data(), returned_displs_.data(), MPI_BYTE, comm_, &results),
            "Ialltoallv (results)");
  wait(results, "Ialltoallv (results)");
}

void ExpertExchange::begin(const ExpertBatch& b) {
  batch_ = b;
  const int k = b.top_k;
  const size_t rec = wire_.record_bytes();
  send_records_.assign(static_cast<size_t>(world_), 0);
  for (auto& e : entries_) e.clear();  // keeps capacity: no allocation per layer once warm

  // Records per destination: count first, then fill in place.
  has_dest_.resize(static_cast<size_t>(world_));
  for (int row = 0; row < b.n; ++row) {
    std::fill(has_dest_.begin(), has_dest_.end(), 0);
    for (int s = 0; s < k; ++s) {
      const int32_t e = b.experts[row * k + s];
      if (e >= 0) has_dest_[placement_.owner(b.moe_layer, e)] = 1;
    }
    for (int d = 0; d < world_; ++d) send_records_[d] += d != rank_ && has_dest_[d];
  }
  size_t total = 0;
  fill_.resize(static_cast<size_t>(world_));
  for (int d = 0; d < world_; ++d) {
    fill_[d] = total;
    total += static_cast<size_t>(send_records_[d]) * rec;
  }
  send_buf_.resize(total + 1);
  for (int row = 0; row < b.n; ++row) {
    for (int d = 0; d < world_; ++d) {
      char* record = nullptr;
      int32_t entries = 0;
      for (int s = 0; s < k; ++s) {
        const int32_t e = b.experts[row * k + s];
        if (e < 0 || placement_.owner(b.moe_layer, e) != d) continue;
        const ExpertMask* own = b.rows[row].mask;
        if (own != nullptr && own->id == kOwnMaskId && own->is_off(b.moe_layer, e)) {
          fail(
              "internal error: rank {} routed a token to expert {} of MoE layer {}, which its request's own mask "
              "switches off",
              rank_, e, b.moe_layer);
        }
        if (d == rank_) {
          entries_[d].push_back(row * k + s);
          continue;
        }
        if (record == nullptr) {
          record = send_buf_.data() + fill_[d];
          fill_[d] += rec;
          std::memset(record, 0, wire_.header_bytes());
          const int32_t meta[3] = {b.rows[row].cls, b.rows[row].phase,
                                   b.rows[row].mask != nullptr ? b.rows[row].mask->id : 0};
          std::memcpy(record + 4, meta, sizeof meta);
          put_values(record + wire_.header_bytes(), b.x + static_cast<size_t>(row) * wire_.hidden, wire_.hidden,
                     wire_.dtype);
        }
        std::memcpy(record + 4 * (WireFormat::kMeta + entries), &e, 4);
        std::memcpy(record + 4 * (WireFormat::kMeta + k + entries), &b.weights[row * k + s], 4);
        ++entries;
        entries_[d].push_back(row * k + s);
      }
      if (record != nullptr) std::memcpy(record, &entries, 4);
    }
  }

  exchange_control(kWork, b.moe_layer);
  post_payload();
  if (!overlap_) wait(payload_request_, "Ialltoallv (payload)");
}

void ExpertExchange::finish(std::vector<const float*>& rows) {
  exchange_results();
  const size_t h = static_cast<size_t>(wire_.hidden);
  rows.assign(static_cast<size_t>(batch_.n) * batch_.top_k, nullptr);
  // fp32 results are read where they arrived (result_bytes is a multiple
  // of 4 and the buffer's start is aligned for floats); bf16 ones widened once.
  size_t entries = 0;
  for (int d = 0; d < world_; ++d) entries += d == rank_ ? 0 : entries_[d].size();
  if (wire_.dtype != WireDType::F32) widened_.resize(entries * h);
  size_t next = 0;
  for (int d = 0; d < world_; ++d) {
    if (d == rank_) {
      const auto& mine = entries_[d];
      for (size_t i = 0; i < mine.size(); ++i) rows[static_cast<size_t>(mine[i])] = worker_.local_result(i);
      continue;
    }
    const char* src = returned_.data() + returned_displs_[d];
    for (const int32_t entry : entries_[d]) {
      if (wire_.dtype == WireDType::F32) {
        rows[static_cast<size_t>(entry)] = reinterpret_cast<const float*>(src);
      } else {
        float* dst = widened_.data() + next++ * h;
        get_values(dst, src, wire_.hidden, wire_.dtype);
        rows[static_cast<size_t>(entry)] = dst;
      }
      src += wire_.result_bytes();
    }
  }
}

bool ExpertExchange::serve(bool done) {
  send_records_.assign(static_cast<size_t>(world_), 0);
  for (auto& e : entries_) e.clear();
  if (!exchange_control(done ? kDone : kIdle, -1)) return false;
  post_payload();
  exchange_results();
  return true;
}

}  // namespace mote
