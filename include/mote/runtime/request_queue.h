// Hands a job's requests to its coordinators as they free up, so long and
// short prompts balance over them, and brings every result back to rank 0.
//
// Coordinators advance in blocks: a step of one coordinator's generator
// passes every MoE layer once, so it is exactly one exchange round per MoE
// layer, and a coordinator with nothing to run serves the same number of
// rounds. Every block starts with a collective among the coordinators, in
// which each reports its free slots, its finished results and any stop
// signal it received, and rank 0 answers with new requests, the job's stop
// decision and whether every coordinator is done. Blocks thus stay aligned:
// the coordinators' MoE layers meet in the same rounds, and a coordinator
// waits only for a larger step of another, never for a question to be
// answered.
#pragma once

#include <mpi.h>

#include <chrono>
#include <deque>
#include <functional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mote/expert_parallel/expert_exchange.h"
#include "mote/model/expert_mask.h"
#include "mote/runtime/generator.h"

namespace mote {

using ResultHandler = std::function<void(size_t, GenerationResult&&)>;
// Completes a request on rank 0 just before it is handed out (a scan's
// residuals, too large to hold for every queued request at once).
using RequestFiller = std::function<void(size_t, GenerationRequest&)>;

// A token a running request sampled (a server streams it).
struct TokenProgress {
  uint64_t id = 0;
  int32_t token = 0;
  float logprob = 0;  // with GenerationRequest::logprobs_from
  std::vector<int32_t> top_ids;
  std::vector<float> top_logprobs;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(id, token, logprob, top_ids, top_logprobs);
  }
};

// Requests that arrive while the job runs (a server's), on rank 0. The
// queue calls it at every block start, from the thread that runs rank 0's
// generator; the other side (the server's connections) is its own.
class RequestInbox {
 public:
  virtual ~RequestInbox() = default;
  // Moves the requests that arrived into `arrived`, with their ids, and
  // appends the ids of requests to end (queued or running) to `cancel`.
  // Returns false once no more will arrive.
  virtual bool collect(std::deque<std::pair<size_t, GenerationRequest>>& arrived, std::vector<size_t>& cancel) = 0;
  // Nothing is queued or running: returns when a request arrives, the
  // inbox closes, or `timeout` has passed.
  virtual void wait_for_work(std::chrono::milliseconds timeout) = 0;
  // A signal reached a rank: stop taking requests and let the running
  // ones finish (or cancel them once a deadline passes).
  virtual void shut_down(int signal) = 0;
  // Tokens of running requests, in the order each coordinator sampled them.
  virtual void progress(TokenProgress&& token) = 0;
  // A step that ran requests took this long (block start to block start).
  virtual void step_time(double /*seconds*/) {}
};

class RequestQueue : public RequestSource {
 public:
  // On every coordinator, with `comm` holding exactly the coordinators
  // (rank 0 of the job first). Rank 0's `todo` holds the requests to run,
  // with the ids results are reported under, and its `on_done` takes every
  // result; other coordinators pass none. `masks`: the job's mask sets,
  // which every rank holds (requests travel with their set's id).
  // `serving`: requests come from rank 0's `inbox` while the job runs (it
  // ends when the inbox closes); every coordinator reports each token
  // sampled; a signal shuts the inbox down instead of stopping the job.
  RequestQueue(MPI_Comm comm, ExpertExchange& exchange, int moe_layers, const std::vector<ExpertMask>& masks,
               std::vector<std::pair<size_t, GenerationRequest>> todo = {}, ResultHandler on_done = {},
               RequestFiller fill = {}, bool serving = false, RequestInbox* inbox = nullptr);
  // A block starts: reports and receives (a collective among coordinators).
  void take(int free_slots, std::vector<std::pair<size_t, GenerationRequest>>& out) override;
  bool exhausted() const override { return exhausted_ || stop_signal_ != 0; }
  // A block with nothing to run: one round per MoE layer, serving the others.
  void wait() override;
  // The job's stop decision, the same on every coordinator after the same
  // block start: the signal that stopped it, 0 while it runs.
  bool stopped() const { return stop_signal_ != 0; }
  int stop_signal() const { return stop_signal_; }
  void cancelled(std::vector<size_t>& ids) override;
  // A result of this coordinator's generator.
  void done(size_t id, GenerationResult&& result);
  // A token this coordinator's generator sampled (when serving).
  void sampled(size_t id, const GenerationResult& so_far);
  bool serving() const { return serving_; }
  // Once this coordinator's generator has returned: completes its block,
  // then takes part in block starts, serving rounds, until every
  // coordinator is done; its last results reach rank 0 on the way.
  void finish();
  // Seconds in block starts: waiting for the other coordinators, and on
  // rank 0 taking in the results.
  double block_seconds() const { return block_seconds_; }
  // Requests run by each coordinator (rank 0 only), for the summary.
  const std::vector<size_t>& ran_by() const { return ran_by_; }

 private:
  void block_start(int free_slots, bool finished, std::vector<std::pair<size_t, GenerationRequest>>& out);
  void serve_rest_of_block();
  size_t share(int c) const;

  MPI_Comm comm_;
  int rank_ = 0, coordinators_ = 1;
  ExpertExchange& exchange_;
  int moe_layers_;
  const std::vector<ExpertMask>& masks_;
  std::deque<std::pair<size_t, GenerationRequest>> pending_;  // rank 0
  ResultHandler on_done_;
  RequestFiller fill_;
  void collect_arrivals();
  std::vector<std::pair<size_t, GenerationResult>> finished_;  // since the last block start
  std::vector<TokenProgress> progress_;                        // since the last block start
  std::vector<size_t> cancel_;                                 // received at the last block start
  bool serving_ = false;
  RequestInbox* inbox_ = nullptr;
  bool inbox_open_ = true;
  std::unordered_map<size_t, int> running_on_;  // serving, rank 0: request -> coordinator
  std::chrono::steady_clock::time_point last_block_;
  bool last_block_ran_ = false;  // serving, rank 0: a request was running in the last block
  std::vector<uint8_t> coordinator_done_;
  std::vector<size_t> ran_by_, in_flight_;
  bool exhausted_ = false, all_done_ = false;
  int stop_signal_ = 0;
  double block_seconds_ = 0;
  int64_t block_rounds_ = -1;  // exchange rounds when the current block started; -1 before the first
};

}  // namespace mote
