// `mote serve`: a job whose requests come from clients while it runs,
// instead of from a prompt file. Every rank loads its part of the model as
// a job does; rank 0's front end (the HTTP server, server/server.h) feeds
// the coordinators' shared queue, which runs the requests with continuous
// batching until a signal shuts the front end down.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mote/model/expert_mask.h"
#include "mote/runtime/job.h"
#include "mote/runtime/request_queue.h"

namespace mote {

class Tokenizer;
class ChatTemplate;
struct ModelConfig;

// What a front end needs of the loaded model (rank 0 holds it).
struct ServedModel {
  const ModelConfig* config = nullptr;  // for masks written in requests
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat = nullptr;  // null: the model has no chat template
  int context = 0;                     // max_position_embeddings
  int vocab = 0;                       // ids a prompt may hold
  int default_max_tokens = 64;
  std::vector<int32_t> eos_ids;                    // ending a completion (not its text); empty with --ignore-eos
  const std::vector<ExpertMask>* masks = nullptr;  // id 0 is "none"
  const ExpertMask* default_mask = nullptr;
  std::vector<int> moe_layers;  // decoder layer of each MoE layer
  int experts = 0;
};

// What the record (--record) keeps of a served request besides its result.
struct ServedRequest {
  std::string id;        // the API's id, and the choice: "chatcmpl-.../0"
  std::string mask;      // the mask set's name ("inline": the request's own); empty: unsteered
  std::string mask_ini;  // the request's own mask, in mask-file syntax
  std::string prompt_text;
  std::vector<int32_t> prompt;
};

// Rank 0's side of a serve job: where requests come from (RequestInbox)
// and where their tokens and results go.
class ServeFrontEnd : public RequestInbox {
 public:
  // Before the model loads: starts taking connections (and fails early if it cannot).
  virtual void listen() = 0;
  // The model is loaded: requests can run.
  virtual void ready(ServedModel model) = 0;
  // A request leaves the queue for a coordinator's slot.
  virtual void handed_out(size_t id) = 0;
  // What the record keeps of a request, asked just before finished().
  virtual ServedRequest describe(size_t id) = 0;
  virtual void finished(size_t id, GenerationResult&& result) = 0;
  // The job has ended (every request it took has finished): stop taking connections.
  virtual void stop() = 0;
  // The job cannot finish what it took (a rank died): every request in
  // flight fails now, saying why, and no more are taken. From any thread.
  virtual void fail_running(const std::string& why) = 0;
};

// Every rank calls it; rank 0 passes its front end. Returns 0 once a signal
// has drained the front end and the counters have been checked.
int run_serve(JobOptions& job, MpiSession& mpi, ServeFrontEnd* front);

}  // namespace mote
