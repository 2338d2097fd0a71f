#include "mote/runtime/request_queue.h"

#include <cereal/archives/binary.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include <limits>
#include <sstream>

#include "mote/util/error.h"

namespace mote {

template <class Archive>
void serialize(Archive& ar, GenerationResult& r) {
  int32_t stop = static_cast<int32_t>(r.stop);
  ar(r.generated, stop, r.positions, r.logits, r.route_experts, r.route_weights, r.expert_counts, r.expert_gate_sum,
     r.prompt_positions, r.generated_positions, r.error);
  r.stop = static_cast<StopReason>(stop);
}

namespace {

enum Tag : int {
  kAsk = 1,       // coordinator -> 0: int32 free slots
  kGive = 2,      // 0 -> coordinator: int64 {count, then per request: id, stream, class, mask id, length, tokens...}
  kResult = 3,    // coordinator -> 0: a result, cereal-encoded, after its int64 id
  kFinished = 4,  // coordinator -> 0: int64 results sent in all
};

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) fail("MPI {} failed (request queue)", what);
}

int to_count(size_t n, const char* what) {
  if (n > static_cast<size_t>(std::numeric_limits<int>::max())) {
    fail("{} of {} bytes is more than one MPI message carries; lower --batch-size or drop --save-logits", what, n);
  }
  return static_cast<int>(n);
}

}  // namespace

RequestQueue::RequestQueue(MPI_Comm comm, int coordinators, std::vector<std::pair<size_t, GenerationRequest>> todo,
                           const std::vector<ExpertMask>& masks, ResultHandler on_done, std::function<bool()> stopped)
    : comm_(comm),
      coordinators_(coordinators),
      pending_(std::make_move_iterator(todo.begin()), std::make_move_iterator(todo.end())),
      masks_(masks),
      on_done_(std::move(on_done)),
      stopped_(std::move(stopped)),
      told_exhausted_(static_cast<size_t>(coordinators), 0),
      finished_(static_cast<size_t>(coordinators), 0),
      ran_by_(static_cast<size_t>(coordinators), 0) {}

size_t RequestQueue::share() const {
  // A coordinator takes no more than its fair part of what is left, so a
  // small job still spreads over every coordinator.
  size_t open = 0;
  for (int c = 0; c < coordinators_; ++c) open += told_exhausted_[c] == 0;
  open = std::max<size_t>(open, 1);
  return std::max<size_t>(1, (pending_.size() + open - 1) / open);
}

bool RequestQueue::exhausted() const { return pending_.empty() || (stopped_ && stopped_()); }

void RequestQueue::take(int free_slots, std::vector<std::pair<size_t, GenerationRequest>>& out) {
  serve();
  if (exhausted()) return;
  const size_t n = std::min({static_cast<size_t>(free_slots), share(), pending_.size()});
  for (size_t i = 0; i < n; ++i) {
    out.push_back(std::move(pending_.front()));
    pending_.pop_front();
  }
  ran_by_[0] += n;
}

void RequestQueue::complete_sends() {
  while (!sends_.empty()) {
    int done = 0;
    check(MPI_Test(&sends_.front().first, &done, MPI_STATUS_IGNORE), "Test");
    if (!done) return;
    sends_.pop_front();
  }
}

void RequestQueue::receive(const MPI_Status& status) {
  const int src = status.MPI_SOURCE;
  if (src <= 0 || src >= coordinators_) fail("protocol error: rank {} sent a request-queue message but is not a coordinator", src);
  int bytes = 0;
  MPI_Get_count(&status, MPI_BYTE, &bytes);
  std::vector<char> message(static_cast<size_t>(bytes) + 1);
  check(MPI_Recv(message.data(), bytes, MPI_BYTE, src, status.MPI_TAG, comm_, MPI_STATUS_IGNORE), "Recv");
  if (status.MPI_TAG == kAsk) {
    int32_t free_slots = 0;
    if (bytes != 4) fail("protocol error: a malformed request from rank {}", src);
    std::memcpy(&free_slots, message.data(), 4);
    std::vector<int64_t> give{0};
    if (!exhausted()) {
      const size_t n = std::min({static_cast<size_t>(std::max(free_slots, 0)), share(), pending_.size()});
      for (size_t i = 0; i < n; ++i) {
        auto& [id, req] = pending_.front();
        give.insert(give.end(), {static_cast<int64_t>(id), static_cast<int64_t>(req.stream), req.cls,
                                 req.mask != nullptr ? req.mask->id : 0, static_cast<int64_t>(req.prompt.size())});
        give.insert(give.end(), req.prompt.begin(), req.prompt.end());
        pending_.pop_front();
      }
      give[0] = static_cast<int64_t>(n);
      ran_by_[static_cast<size_t>(src)] += n;
    }
    // None given means none will come: the coordinator finishes.
    if (give[0] == 0) told_exhausted_[static_cast<size_t>(src)] = 1;
    sends_.emplace_back(MPI_REQUEST_NULL, std::move(give));
    auto& [request, data] = sends_.back();
    check(MPI_Isend(data.data(), to_count(data.size() * 8, "a batch of requests"), MPI_BYTE, src, kGive, comm_, &request), "Isend");
  } else if (status.MPI_TAG == kResult) {
    if (bytes < 8) fail("protocol error: a malformed result from rank {}", src);
    int64_t id = 0;
    std::memcpy(&id, message.data(), 8);
    GenerationResult result;
    std::istringstream is(std::string(message.data() + 8, static_cast<size_t>(bytes) - 8));
    cereal::BinaryInputArchive archive(is);
    archive(result);
    on_done_(static_cast<size_t>(id), std::move(result));
  } else if (status.MPI_TAG == kFinished) {
    finished_[static_cast<size_t>(src)] = 1;
  } else {
    fail("protocol error: unknown request-queue message {} from rank {}", status.MPI_TAG, src);
  }
}

void RequestQueue::serve() {
  complete_sends();
  for (;;) {
    int flag = 0;
    MPI_Status status;
    check(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, &status), "Iprobe");
    if (!flag) break;
    receive(status);
  }
}

void RequestQueue::drain() {
  for (int c = 1; c < coordinators_; ++c) {
    while (!finished_[static_cast<size_t>(c)]) {
      MPI_Status status;
      check(MPI_Probe(c, MPI_ANY_TAG, comm_, &status), "Probe");
      receive(status);
    }
  }
  while (!sends_.empty()) {
    check(MPI_Wait(&sends_.front().first, MPI_STATUS_IGNORE), "Wait");
    sends_.pop_front();
  }
}

RemoteRequests::RemoteRequests(MPI_Comm comm, const std::vector<ExpertMask>& masks, ExpertExchange& exchange)
    : comm_(comm), masks_(masks), exchange_(exchange) {}

void RemoteRequests::poll() {
  while (!sends_.empty()) {
    int done = 0;
    check(MPI_Test(&sends_.front().first, &done, MPI_STATUS_IGNORE), "Test");
    if (!done) break;
    sends_.pop_front();
  }
  if (!asked_) return;
  int flag = 0;
  MPI_Status status;
  check(MPI_Iprobe(0, kGive, comm_, &flag, &status), "Iprobe");
  if (!flag) return;
  int bytes = 0;
  MPI_Get_count(&status, MPI_BYTE, &bytes);
  if (bytes < 8 || bytes % 8 != 0) fail("protocol error: a malformed batch of requests from rank 0");
  std::vector<int64_t> give(static_cast<size_t>(bytes) / 8);
  check(MPI_Recv(give.data(), bytes, MPI_BYTE, 0, kGive, comm_, MPI_STATUS_IGNORE), "Recv");
  asked_ = false;
  if (give[0] == 0) exhausted_ = true;
  size_t at = 1;
  for (int64_t i = 0; i < give[0]; ++i) {
    if (at + 5 > give.size()) fail("protocol error: a truncated batch of requests from rank 0");
    GenerationRequest req;
    const auto id = static_cast<size_t>(give[at]);
    req.stream = static_cast<uint64_t>(give[at + 1]);
    req.cls = static_cast<int16_t>(give[at + 2]);
    const int64_t mask = give[at + 3], length = give[at + 4];
    at += 5;
    if (mask < 0 || static_cast<size_t>(mask) >= masks_.size() || length < 0 || at + static_cast<size_t>(length) > give.size()) {
      fail("protocol error: a malformed request {} from rank 0", id);
    }
    req.mask = mask == 0 ? nullptr : &masks_[static_cast<size_t>(mask)];
    req.prompt.assign(give.begin() + static_cast<std::ptrdiff_t>(at), give.begin() + static_cast<std::ptrdiff_t>(at + length));
    at += static_cast<size_t>(length);
    given_.emplace_back(id, std::move(req));
  }
}

void RemoteRequests::take(int free_slots, std::vector<std::pair<size_t, GenerationRequest>>& out) {
  poll();
  if (given_.empty() && !asked_ && !exhausted_ && free_slots > 0) {
    static thread_local int32_t ask = 0;  // must outlive the send; one ask is in flight at a time
    ask = free_slots;
    MPI_Request request;
    check(MPI_Isend(&ask, 4, MPI_BYTE, 0, kAsk, comm_, &request), "Isend");
    check(MPI_Request_free(&request), "Request_free");
    asked_ = true;
    poll();
  }
  for (; free_slots > 0 && !given_.empty(); --free_slots) {
    out.push_back(std::move(given_.front()));
    given_.pop_front();
  }
}

void RemoteRequests::wait() {
  exchange_.serve(false);
  poll();
}

void RemoteRequests::send_result(size_t id, GenerationResult&& result) {
  std::ostringstream os;
  const int64_t id64 = static_cast<int64_t>(id);
  os.write(reinterpret_cast<const char*>(&id64), 8);
  {
    cereal::BinaryOutputArchive archive(os);
    archive(result);
  }
  const std::string bytes = std::move(os).str();
  sends_.emplace_back(MPI_REQUEST_NULL, std::vector<char>(bytes.begin(), bytes.end()));
  auto& [request, data] = sends_.back();
  check(MPI_Isend(data.data(), to_count(data.size(), "a request's result"), MPI_BYTE, 0, kResult, comm_, &request), "Isend");
  ++results_sent_;
}

void RemoteRequests::finish() {
  // An unanswered question (a stop came while asking) and results not yet
  // taken in: keep serving rounds, in which rank 0 answers and receives.
  for (poll(); asked_ || !sends_.empty(); poll()) exchange_.serve(false);
  static thread_local int64_t sent = 0;
  sent = results_sent_;
  check(MPI_Isend(&sent, 8, MPI_BYTE, 0, kFinished, comm_, &finished_request_), "Isend");
  check(MPI_Request_free(&finished_request_), "Request_free");
}

}  // namespace mote
