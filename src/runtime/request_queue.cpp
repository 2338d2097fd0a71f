#include "mote/runtime/request_queue.h"

#include <cereal/archives/binary.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/vector.hpp>

#include <chrono>
#include <sstream>

#include "mote/expert_parallel/mpi_calls.h"
#include "mote/util/error.h"
#include "mote/util/stop_signal.h"

namespace mote {

template <class Archive>
void serialize(Archive& ar, GenerationResult& r) {
  int32_t stop = static_cast<int32_t>(r.stop);
  ar(r.generated, stop, r.positions, r.logits, r.route_experts, r.route_weights, r.expert_counts, r.expert_gate_sum,
     r.prompt_positions, r.generated_positions, r.error);
  r.stop = static_cast<StopReason>(stop);
}

namespace {

// What a coordinator reports at a block start.
enum Report { kFreeSlots, kFinished, kSignal, kResultBytes, kReportSize };
// What rank 0 answers, before the requests: {stop signal, exhausted, all done, count}.
enum Answer { kStop, kExhausted, kAllDone, kCount, kAnswerHead };

constexpr const char* kRemedy = "lower --batch-size or drop --save-logits";

int to_count(size_t bytes, const char* what) { return mpi_count(bytes, what, kRemedy); }

}  // namespace

RequestQueue::RequestQueue(MPI_Comm comm, ExpertExchange& exchange, int moe_layers, const std::vector<ExpertMask>& masks,
                           std::vector<std::pair<size_t, GenerationRequest>> todo, ResultHandler on_done)
    : comm_(comm),
      exchange_(exchange),
      moe_layers_(moe_layers),
      masks_(masks),
      pending_(std::make_move_iterator(todo.begin()), std::make_move_iterator(todo.end())),
      on_done_(std::move(on_done)) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &coordinators_);
  coordinator_done_.assign(static_cast<size_t>(coordinators_), 0);
  ran_by_.assign(static_cast<size_t>(coordinators_), 0);
  in_flight_.assign(static_cast<size_t>(coordinators_), 0);
}

size_t RequestQueue::share(int c) const {
  // Each block lasts as long as the largest step in it, so every
  // coordinator should run about as many requests as the others: its fair
  // part of what is queued and running, less what it runs already.
  size_t open = 0, running = 0;
  for (int i = 0; i < coordinators_; ++i) {
    open += coordinator_done_[i] == 0;
    running += in_flight_[i];
  }
  open = std::max<size_t>(open, 1);
  const size_t fair = (pending_.size() + running + open - 1) / open;
  return std::max<size_t>(fair > in_flight_[c] ? fair - in_flight_[c] : 0, in_flight_[c] == 0 ? 1 : 0);
}

void RequestQueue::serve_rest_of_block() {
  if (block_rounds_ < 0) return;
  while (exchange_.rounds() - block_rounds_ < moe_layers_) exchange_.serve(false);
}

void RequestQueue::block_start(int free_slots, bool finished, std::vector<std::pair<size_t, GenerationRequest>>& out) {
  const auto start = std::chrono::steady_clock::now();
  if (block_rounds_ >= 0 && exchange_.rounds() - block_rounds_ != moe_layers_) {
    fail("internal error: a block of {} exchange rounds where the model has {} MoE layers", exchange_.rounds() - block_rounds_, moe_layers_);
  }
  std::string results;
  {
    std::ostringstream os;
    {
      cereal::BinaryOutputArchive archive(os);
      archive(finished_);
    }
    results = std::move(os).str();
  }
  finished_.clear();
  const int64_t report[kReportSize] = {free_slots, finished ? 1 : 0, mote::stop_signal(), static_cast<int64_t>(results.size())};
  std::vector<int64_t> reports(rank_ == 0 ? static_cast<size_t>(coordinators_) * kReportSize : 0);
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Igather(report, kReportSize, MPI_INT64_T, reports.data(), kReportSize, MPI_INT64_T, 0, comm_, &request), "Igather");
  wait_for(request, "Igather (request queue)");
  std::vector<int> result_counts(static_cast<size_t>(coordinators_), 0), result_displs;
  std::vector<char> all_results;
  if (rank_ == 0) {
    for (int c = 0; c < coordinators_; ++c) result_counts[c] = to_count(static_cast<size_t>(reports[c * kReportSize + kResultBytes]), "results");
    mpi_displacements(result_counts, result_displs, "the requests' results", kRemedy);
    all_results.resize(static_cast<size_t>(result_displs.back()) + static_cast<size_t>(result_counts.back()) + 1);
  }
  check_mpi(MPI_Igatherv(results.data(), to_count(results.size(), "results"), MPI_BYTE, all_results.data(), result_counts.data(),
                     rank_ == 0 ? result_displs.data() : nullptr, MPI_BYTE, 0, comm_, &request),
        "Igatherv");
  wait_for(request, "Igatherv (request queue)");

  std::vector<int64_t> answers;
  std::vector<int> answer_counts(static_cast<size_t>(coordinators_), 0), answer_displs;
  if (rank_ == 0) {
    // Every coordinator's results, in coordinator order.
    for (int c = 0; c < coordinators_; ++c) {
      std::vector<std::pair<size_t, GenerationResult>> theirs;
      std::istringstream is(std::string(all_results.data() + result_displs[c], static_cast<size_t>(result_counts[c])));
      cereal::BinaryInputArchive archive(is);
      archive(theirs);
      for (auto& [id, result] : theirs) {
        if (in_flight_[c] == 0) fail("protocol error: coordinator {} returned request {}, which it was not given", c, id);
        --in_flight_[c];
        on_done_(id, std::move(result));
      }
    }
    // The stop decision: a signal to this rank, to any rank in the
    // exchange's rounds, or to any coordinator.
    if (stop_signal_ == 0) stop_signal_ = mote::stop_signal();
    if (stop_signal_ == 0) stop_signal_ = exchange_.stop_signal();
    for (int c = 0; c < coordinators_ && stop_signal_ == 0; ++c) stop_signal_ = static_cast<int>(reports[c * kReportSize + kSignal]);
    bool all_done = true;
    for (int c = 0; c < coordinators_; ++c) {
      coordinator_done_[c] = reports[c * kReportSize + kFinished] != 0;
      all_done &= coordinator_done_[c] != 0;
    }
    std::vector<std::vector<int64_t>> each(static_cast<size_t>(coordinators_));
    for (int c = 0; c < coordinators_; ++c) {
      const int64_t free = std::max<int64_t>(reports[c * kReportSize + kFreeSlots], 0);
      const size_t n = coordinator_done_[c] || stop_signal_ != 0 ? 0 : std::min({static_cast<size_t>(free), share(c), pending_.size()});
      auto& a = each[static_cast<size_t>(c)];
      a = {stop_signal_, 0, all_done ? 1 : 0, static_cast<int64_t>(n)};
      for (size_t i = 0; i < n; ++i) {
        auto& [id, req] = pending_.front();
        a.insert(a.end(), {static_cast<int64_t>(id), static_cast<int64_t>(req.stream), req.cls, req.mask != nullptr ? req.mask->id : 0,
                           static_cast<int64_t>(req.prompt.size())});
        a.insert(a.end(), req.prompt.begin(), req.prompt.end());
        pending_.pop_front();
      }
      ran_by_[c] += n;
      in_flight_[c] += n;
    }
    for (int c = 0; c < coordinators_; ++c) {
      each[static_cast<size_t>(c)][kExhausted] = pending_.empty() ? 1 : 0;
      answer_counts[c] = to_count(each[static_cast<size_t>(c)].size(), "a batch of requests");
      answers.insert(answers.end(), each[static_cast<size_t>(c)].begin(), each[static_cast<size_t>(c)].end());
    }
    mpi_displacements(answer_counts, answer_displs, "a batch of requests", kRemedy);
  }
  int mine = 0;
  check_mpi(MPI_Iscatter(answer_counts.data(), 1, MPI_INT, &mine, 1, MPI_INT, 0, comm_, &request), "Iscatter");
  wait_for(request, "Iscatter (request queue)");
  if (mine < kAnswerHead) fail("protocol error: a malformed answer from rank 0");
  std::vector<int64_t> answer(static_cast<size_t>(mine));
  check_mpi(MPI_Iscatterv(answers.data(), answer_counts.data(), rank_ == 0 ? answer_displs.data() : nullptr, MPI_INT64_T, answer.data(), mine,
                      MPI_INT64_T, 0, comm_, &request),
        "Iscatterv");
  wait_for(request, "Iscatterv (request queue)");
  stop_signal_ = static_cast<int>(answer[kStop]);
  exhausted_ = answer[kExhausted] != 0;
  all_done_ = answer[kAllDone] != 0;
  size_t at = kAnswerHead;
  for (int64_t i = 0; i < answer[kCount]; ++i) {
    if (at + 5 > answer.size()) fail("protocol error: a truncated batch of requests from rank 0");
    GenerationRequest req;
    const auto id = static_cast<size_t>(answer[at]);
    req.stream = static_cast<uint64_t>(answer[at + 1]);
    req.cls = static_cast<int16_t>(answer[at + 2]);
    const int64_t mask = answer[at + 3], length = answer[at + 4];
    at += 5;
    if (mask < 0 || static_cast<size_t>(mask) >= masks_.size() || length < 0 || at + static_cast<size_t>(length) > answer.size()) {
      fail("protocol error: a malformed request {} from rank 0", id);
    }
    req.mask = mask == 0 ? nullptr : &masks_[static_cast<size_t>(mask)];
    req.prompt.assign(answer.begin() + static_cast<std::ptrdiff_t>(at), answer.begin() + static_cast<std::ptrdiff_t>(at + length));
    at += static_cast<size_t>(length);
    out.emplace_back(id, std::move(req));
  }
  block_rounds_ = exchange_.rounds();
  block_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void RequestQueue::take(int free_slots, std::vector<std::pair<size_t, GenerationRequest>>& out) { block_start(free_slots, false, out); }

void RequestQueue::wait() { serve_rest_of_block(); }

void RequestQueue::done(size_t id, GenerationResult&& result) { finished_.emplace_back(id, std::move(result)); }

void RequestQueue::finish() {
  std::vector<std::pair<size_t, GenerationRequest>> none;
  while (!all_done_) {
    serve_rest_of_block();
    block_start(0, true, none);
    if (!none.empty()) fail("protocol error: requests given to a coordinator that has finished");
  }
}

}  // namespace mote
