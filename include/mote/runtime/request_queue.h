// Hands a job's requests to its coordinators as they free up, so long and
// short prompts balance over them. Rank 0 holds the queue and runs requests
// itself (RequestQueue); coordinators 1..K-1 ask it for requests and send
// their results back (RemoteRequests). The messages travel point to point
// on a communicator of their own, beside the exchange's rounds; neither
// side ever blocks on them while another rank may be waiting for it in a
// round, so the two cannot deadlock.
#pragma once

#include <mpi.h>

#include <deque>
#include <functional>
#include <utility>
#include <vector>

#include "mote/expert_parallel/expert_exchange.h"
#include "mote/model/expert_mask.h"
#include "mote/runtime/generator.h"

namespace mote {

using ResultHandler = std::function<void(size_t, GenerationResult&&)>;

// Rank 0's side.
class RequestQueue : public RequestSource {
 public:
  // `todo`: the requests to run, with the ids results are reported under;
  // `masks`: the job's mask sets, which every rank holds (requests travel
  // with their set's id); `on_done` takes every result, rank 0's own and
  // those sent back; once `stopped` returns true, nothing more is handed out.
  RequestQueue(MPI_Comm comm, int coordinators, std::vector<std::pair<size_t, GenerationRequest>> todo,
               const std::vector<ExpertMask>& masks, ResultHandler on_done, std::function<bool()> stopped);
  void take(int free_slots, std::vector<std::pair<size_t, GenerationRequest>>& out) override;
  bool exhausted() const override;
  // Answers the other coordinators and takes in their results, without
  // waiting; called before every round and every step.
  void serve();
  // After the job's last round: waits for everything the other
  // coordinators still send, until each has said it has finished.
  void drain();
  // Requests run by each coordinator, for the summary.
  const std::vector<size_t>& ran_by() const { return ran_by_; }

 private:
  size_t share() const;  // the most one coordinator may take now
  void receive(const MPI_Status& status);
  void complete_sends();

  MPI_Comm comm_;
  int coordinators_;
  std::deque<std::pair<size_t, GenerationRequest>> pending_;
  const std::vector<ExpertMask>& masks_;
  ResultHandler on_done_;
  std::function<bool()> stopped_;
  std::vector<uint8_t> told_exhausted_, finished_;
  std::vector<size_t> ran_by_;
  std::deque<std::pair<MPI_Request, std::vector<int64_t>>> sends_;
};

// The side of coordinators 1..K-1.
class RemoteRequests : public RequestSource {
 public:
  RemoteRequests(MPI_Comm comm, const std::vector<ExpertMask>& masks, ExpertExchange& exchange);
  void take(int free_slots, std::vector<std::pair<size_t, GenerationRequest>>& out) override;
  bool exhausted() const override { return exhausted_ && given_.empty(); }
  // One round serving the other ranks' tokens, then a look for an answer.
  void wait() override;
  // The result of a request this coordinator ran, sent to rank 0.
  void send_result(size_t id, GenerationResult&& result);
  // When this coordinator's generator has returned: serves rounds until its
  // questions are answered and its results delivered, then tells rank 0 it
  // has finished.
  void finish();

 private:
  void poll();

  MPI_Comm comm_;
  const std::vector<ExpertMask>& masks_;
  ExpertExchange& exchange_;
  bool asked_ = false, exhausted_ = false;
  int64_t results_sent_ = 0;
  std::deque<std::pair<size_t, GenerationRequest>> given_;
  std::deque<std::pair<MPI_Request, std::vector<char>>> sends_;
  MPI_Request finished_request_ = MPI_REQUEST_NULL;
};

}  // namespace mote
