#include "mote/runtime/request_queue.h"

#include <cereal/archives/binary.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/vector.hpp>

#include <algorithm>
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
     r.scores, r.moe_inputs, r.token_logprobs, r.top_ids, r.top_logprobs, r.prompt_positions, r.generated_positions,
     r.error);
  r.stop = static_cast<StopReason>(stop);
}

namespace {

// A request as it travels: its mask set by id, or its own mask whole.
struct SentRequest {
  uint64_t id = 0;
  GenerationRequest request;
  int32_t mask = 0;
  ExpertMask own;  // mask == kOwnMaskId
  template <class Archive>
  void serialize(Archive& ar) {
    auto& r = request;
    ar(id, r.prompt, mask, r.stream, r.cls, r.score_from, r.capture, r.resume_moe_layer, r.resume_h, r.max_new_tokens,
       r.temperature, r.top_p, r.own_seed, r.seed, r.logprobs_from, r.top_logprobs);
    if (mask == kOwnMaskId) ar(own);
  }
};

// Rank 0's answer to one coordinator at a block start.
struct Answer {
  int32_t stop = 0;
  bool exhausted = false, all_done = false;
  std::vector<SentRequest> requests;
  std::vector<uint64_t> cancel;  // running requests of this coordinator to end now
  template <class Archive>
  void serialize(Archive& ar) {
    ar(stop, exhausted, all_done, requests, cancel);
  }
};

template <class T>
std::string to_bytes(const T& value) {
  std::ostringstream os;
  {
    cereal::BinaryOutputArchive archive(os);
    archive(value);
  }
  return std::move(os).str();
}

}  // namespace

namespace {

// What a coordinator reports at a block start.
enum Report { kFreeSlots, kFinished, kSignal, kResultBytes, kReportSize };

constexpr const char* kRemedy = "lower --batch-size or drop --save-logits";

int to_count(size_t bytes, const char* what) { return mpi_count(bytes, what, kRemedy); }

}  // namespace

RequestQueue::RequestQueue(MPI_Comm comm, ExpertExchange& exchange, int moe_layers,
                           const std::vector<ExpertMask>& masks, std::vector<std::pair<size_t, GenerationRequest>> todo,
                           ResultHandler on_done, RequestFiller fill, bool serving, RequestInbox* inbox)
    : comm_(comm),
      exchange_(exchange),
      moe_layers_(moe_layers),
      masks_(masks),
      pending_(std::make_move_iterator(todo.begin()), std::make_move_iterator(todo.end())),
      on_done_(std::move(on_done)),
      fill_(std::move(fill)),
      serving_(serving),
      inbox_(inbox) {
  MPI_Comm_rank(comm_, &rank_);
  if (serving_ && rank_ == 0 && inbox_ == nullptr) fail("internal error: a serving queue without an inbox");
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

void RequestQueue::collect_arrivals() {
  if (!inbox_ || !inbox_open_) return;
  std::vector<size_t> cancel;
  inbox_open_ = inbox_->collect(pending_, cancel);
  for (const size_t id : cancel) {
    if (running_on_.count(id) != 0) {
      cancel_.push_back(id);
      continue;
    }
    const auto queued = std::find_if(pending_.begin(), pending_.end(), [&](const auto& p) { return p.first == id; });
    if (queued == pending_.end()) continue;  // finished already
    pending_.erase(queued);
    GenerationResult none;
    none.stop = StopReason::Cancelled;
    on_done_(id, std::move(none));
  }
}

void RequestQueue::block_start(int free_slots, bool finished, std::vector<std::pair<size_t, GenerationRequest>>& out) {
  if (rank_ == 0 && serving_) {
    const auto now = std::chrono::steady_clock::now();
    if (last_block_ran_) inbox_->step_time(std::chrono::duration<double>(now - last_block_).count());
    collect_arrivals();
    // Nothing queued or running anywhere: sleep until a request arrives
    // (an idle server costs next to nothing; the other ranks nap in their
    // waits meanwhile), waking each second for signals.
    const bool idle = std::all_of(in_flight_.begin(), in_flight_.end(), [](size_t n) { return n == 0; });
    if (idle && pending_.empty() && finished_.empty() && inbox_open_ && mote::stop_signal() == 0 &&
        exchange_.stop_signal() == 0) {
      inbox_->wait_for_work(std::chrono::milliseconds(1000));
      collect_arrivals();
    }
  }
  const auto start = std::chrono::steady_clock::now();
  if (block_rounds_ >= 0 && exchange_.rounds() - block_rounds_ != moe_layers_) {
    fail("internal error: a block of {} exchange rounds where the model has {} MoE layers",
         exchange_.rounds() - block_rounds_, moe_layers_);
  }
  const std::string results = to_bytes(std::make_pair(finished_, progress_));
  finished_.clear();
  progress_.clear();
  const int64_t report[kReportSize] = {free_slots, finished ? 1 : 0, mote::stop_signal(),
                                       static_cast<int64_t>(results.size())};
  std::vector<int64_t> reports(rank_ == 0 ? static_cast<size_t>(coordinators_) * kReportSize : 0);
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Igather(report, kReportSize, MPI_INT64_T, reports.data(), kReportSize, MPI_INT64_T, 0, comm_, &request),
            "Igather");
  wait_for(request, "Igather (request queue)");
  std::vector<int> result_counts(static_cast<size_t>(coordinators_), 0), result_displs;
  std::vector<char> all_results;
  if (rank_ == 0) {
    for (int c = 0; c < coordinators_; ++c)
      result_counts[c] = to_count(static_cast<size_t>(reports[c * kReportSize + kResultBytes]), "results");
    mpi_displacements(result_counts, result_displs, "the requests' results", kRemedy);
    all_results.resize(static_cast<size_t>(result_displs.back()) + static_cast<size_t>(result_counts.back()) + 1);
  }
  check_mpi(
      MPI_Igatherv(results.data(), to_count(results.size(), "results"), MPI_BYTE, all_results.data(),
                   result_counts.data(), rank_ == 0 ? result_displs.data() : nullptr, MPI_BYTE, 0, comm_, &request),
      "Igatherv");
  wait_for(request, "Igatherv (request queue)");

  std::vector<char> answers;
  std::vector<int> answer_counts(static_cast<size_t>(coordinators_), 0), answer_displs;
  if (rank_ == 0) {
    // Every coordinator's results, in coordinator order.
    for (int c = 0; c < coordinators_; ++c) {
      std::pair<std::vector<std::pair<size_t, GenerationResult>>, std::vector<TokenProgress>> theirs;
      std::istringstream is(std::string(all_results.data() + result_displs[c], static_cast<size_t>(result_counts[c])));
      cereal::BinaryInputArchive archive(is);
      archive(theirs);
      // A request's tokens before its result.
      for (TokenProgress& token : theirs.second) {
        if (inbox_) inbox_->progress(std::move(token));
      }
      for (auto& [id, result] : theirs.first) {
        if (in_flight_[c] == 0)
          fail("protocol error: coordinator {} returned request {}, which it was not given", c, id);
        --in_flight_[c];
        running_on_.erase(id);
        on_done_(id, std::move(result));
      }
    }
    // The stop decision: a signal to this rank, to any rank in the
    // exchange's rounds, or to any coordinator. A server shuts its inbox
    // instead and runs on until what it took is done.
    int signal = mote::stop_signal();
    if (signal == 0) signal = exchange_.stop_signal();
    for (int c = 0; c < coordinators_ && signal == 0; ++c)
      signal = static_cast<int>(reports[c * kReportSize + kSignal]);
    if (serving_) {
      if (signal != 0 && inbox_open_) inbox_->shut_down(signal);
    } else if (stop_signal_ == 0) {
      stop_signal_ = signal;
    }
    bool all_done = true;
    for (int c = 0; c < coordinators_; ++c) {
      coordinator_done_[c] = reports[c * kReportSize + kFinished] != 0;
      all_done &= coordinator_done_[c] != 0;
    }
    std::vector<Answer> each(static_cast<size_t>(coordinators_));
    for (int c = 0; c < coordinators_; ++c) {
      const int64_t free = std::max<int64_t>(reports[c * kReportSize + kFreeSlots], 0);
      const size_t n = coordinator_done_[c] || stop_signal_ != 0
                           ? 0
                           : std::min({static_cast<size_t>(free), share(c), pending_.size()});
      Answer& a = each[static_cast<size_t>(c)];
      a.stop = stop_signal_;
      a.all_done = all_done;
      for (size_t i = 0; i < n; ++i) {
        auto& [id, req] = pending_.front();
        if (fill_) fill_(id, req);
        if (serving_) running_on_[id] = c;
        const int32_t mask = req.mask != nullptr ? req.mask->id : 0;
        ExpertMask own = mask == kOwnMaskId ? *req.own_mask : ExpertMask();
        req.own_mask.reset();
        a.requests.push_back({static_cast<uint64_t>(id), std::move(req), mask, std::move(own)});
        pending_.pop_front();
      }
      ran_by_[c] += n;
      in_flight_[c] += n;
    }
    for (const size_t id : cancel_) {
      const auto on = running_on_.find(id);
      if (on != running_on_.end()) each[static_cast<size_t>(on->second)].cancel.push_back(id);
    }
    cancel_.clear();
    for (int c = 0; c < coordinators_; ++c) {
      each[static_cast<size_t>(c)].exhausted = pending_.empty() && (!serving_ || !inbox_open_);
      const std::string bytes = to_bytes(each[static_cast<size_t>(c)]);
      answer_counts[c] = to_count(bytes.size(), "a batch of requests");
      answers.insert(answers.end(), bytes.begin(), bytes.end());
    }
    mpi_displacements(answer_counts, answer_displs, "a batch of requests", kRemedy);
  }
  int mine = 0;
  check_mpi(MPI_Iscatter(answer_counts.data(), 1, MPI_INT, &mine, 1, MPI_INT, 0, comm_, &request), "Iscatter");
  wait_for(request, "Iscatter (request queue)");
  std::vector<char> answer(static_cast<size_t>(mine) + 1);
  check_mpi(MPI_Iscatterv(answers.data(), answer_counts.data(), rank_ == 0 ? answer_displs.data() : nullptr, MPI_BYTE,
                          answer.data(), mine, MPI_BYTE, 0, comm_, &request),
            "Iscatterv");
  wait_for(request, "Iscatterv (request queue)");
  Answer got;
  {
    std::istringstream is(std::string(answer.data(), static_cast<size_t>(mine)));
    cereal::BinaryInputArchive archive(is);
    archive(got);
  }
  stop_signal_ = got.stop;
  exhausted_ = got.exhausted;
  all_done_ = got.all_done;
  for (SentRequest& sent : got.requests) {
    if (sent.mask == kOwnMaskId) {
      if (!sent.own.well_formed() || sent.own.moe_layers != moe_layers_ || sent.own.id != kOwnMaskId)
        fail("protocol error: request {} has a mask of its own of another shape", sent.id);
      sent.request.own_mask = std::make_shared<const ExpertMask>(std::move(sent.own));
      sent.request.mask = sent.request.own_mask.get();
      out.emplace_back(static_cast<size_t>(sent.id), std::move(sent.request));
      continue;
    }
    if (sent.mask < 0 || static_cast<size_t>(sent.mask) >= masks_.size())
      fail("protocol error: request {} under unknown mask set {}", sent.id, sent.mask);
    sent.request.mask = sent.mask == 0 ? nullptr : &masks_[static_cast<size_t>(sent.mask)];
    out.emplace_back(static_cast<size_t>(sent.id), std::move(sent.request));
  }
  cancel_.assign(got.cancel.begin(), got.cancel.end());
  if (rank_ == 0 && serving_) {
    last_block_ = std::chrono::steady_clock::now();
    last_block_ran_ = std::any_of(in_flight_.begin(), in_flight_.end(), [](size_t n) { return n != 0; });
  }
  block_rounds_ = exchange_.rounds();
  block_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void RequestQueue::take(int free_slots, std::vector<std::pair<size_t, GenerationRequest>>& out) {
  block_start(free_slots, false, out);
}

void RequestQueue::wait() { serve_rest_of_block(); }

void RequestQueue::cancelled(std::vector<size_t>& ids) {
  ids.insert(ids.end(), cancel_.begin(), cancel_.end());
  cancel_.clear();
}

void RequestQueue::done(size_t id, GenerationResult&& result) { finished_.emplace_back(id, std::move(result)); }

void RequestQueue::sampled(size_t id, const GenerationResult& so_far) {
  TokenProgress token;
  token.id = id;
  token.token = so_far.generated.back();
  if (!so_far.token_logprobs.empty()) {
    token.logprob = so_far.token_logprobs.back();
    const size_t top = so_far.top_ids.size() / so_far.token_logprobs.size();
    token.top_ids.assign(so_far.top_ids.end() - static_cast<std::ptrdiff_t>(top), so_far.top_ids.end());
    token.top_logprobs.assign(so_far.top_logprobs.end() - static_cast<std::ptrdiff_t>(top), so_far.top_logprobs.end());
  }
  progress_.push_back(std::move(token));
}

void RequestQueue::finish() {
  std::vector<std::pair<size_t, GenerationRequest>> none;
  while (!all_done_) {
    serve_rest_of_block();
    block_start(0, true, none);
    if (!none.empty()) fail("protocol error: requests given to a coordinator that has finished");
  }
}

}  // namespace mote
