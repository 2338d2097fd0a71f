// The HTTP side of `mote serve` on rank 0: cpp-httplib's threads answer
// clients, turn their requests into GenerationRequests for the job's
// request queue (this is its front end), and wait for the tokens and
// results that the thread running rank 0's generator hands back. The serve
// job (runtime/serve.h) owns the model and the ranks.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "mote/runtime/serve.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace mote {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;            // empty: none asked
  std::string served_model_name;  // the "model" clients name
  int max_queue = 256;            // requests waiting for a slot before 429
  size_t max_body_bytes = 8u << 20;
  int timeout_seconds = 60;      // reading a request, writing a response
  int max_connections = 128;     // held at once, a thread each; more wait in the listen backlog
  double shutdown_seconds = 30;  // after SIGTERM: running requests get this long to finish
  // A stream writes at most this often: the tokens of the steps between
  // gather into one write (each write wakes a thread and a client).
  int stream_interval_ms = 50;
};

// Refuses options that cannot make a server, naming the option.
void validate(const ServerOptions& options);

class Server : public ServeFrontEnd {
 public:
  explicit Server(ServerOptions options);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port (an Error naming them if it cannot) and starts
  // answering: /health says 503 until ready().
  void listen() override;
  void ready(ServedModel model) override;
  // Lets open streams send their last events, then stops listening and
  // waits for every connection to end.
  void stop() override;

  // From the thread that runs rank 0's generator (the job's queue):
  void handed_out(size_t id) override;
  ServedRequest describe(size_t id) override;
  void finished(size_t id, GenerationResult&& result) override;
  bool collect(std::deque<std::pair<size_t, GenerationRequest>>& arrived, std::vector<size_t>& cancel) override;
  void wait_for_work(std::chrono::milliseconds timeout) override;
  void shut_down(int signal) override;
  void progress(TokenProgress&& token) override;
  void step_time(double seconds) override;
  void fail_running(const std::string& why) override;

 private:
  struct Call;
  struct Choice;
  void route();
  void handle_generation(const httplib::Request& req, httplib::Response& res, bool chat);
  void handle_tokenize(const httplib::Request& req, httplib::Response& res);
  void handle_detokenize(const httplib::Request& req, httplib::Response& res);
  void handle_metrics(httplib::Response& res);
  bool authorized(const httplib::Request& req, httplib::Response& res);
  void submit(const std::shared_ptr<Call>& call);
  void cancel_locked(const Call& call);
  bool has_news_locked(const Call& call) const;
  void update_text_locked(Call& call, Choice& choice, bool final);
  std::string stream_events_locked(Call& call, bool final);
  std::string stopped_message_locked() const;
  // Requests in flight get no result: wake every waiting handler.
  void abandon_locked();
  // When a stream holding its tokens writes next; none if it holds nothing.
  std::optional<std::chrono::steady_clock::time_point> next_write_locked(const Call& call) const;

  ServerOptions options_;
  ServedModel model_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  // Set when the server stops: httplib's accept loop no longer waits for a free thread.
  std::shared_ptr<std::atomic<bool>> stopping_ = std::make_shared<std::atomic<bool>>(false);
  bool ready_ = false, abandoned_ = false;
  std::string failure_;  // why the job cannot finish what it took (fail_running)

  std::mutex mutex_;
  std::condition_variable arrivals_, streams_closed_;
  size_t open_streams_ = 0;
  std::deque<std::pair<size_t, GenerationRequest>> arrived_;
  std::vector<size_t> to_cancel_;
  std::unordered_map<size_t, std::pair<std::shared_ptr<Call>, size_t>> live_;  // request -> call, choice
  size_t next_id_ = 0;
  size_t waiting_ = 0;  // submitted, not yet handed out
  bool closing_ = false, deadline_passed_ = false;
  std::chrono::steady_clock::time_point deadline_;

  // /metrics
  std::map<int, uint64_t> responses_;  // by status
  uint64_t prompt_tokens_ = 0, generated_tokens_ = 0;
  double ttft_seconds_ = 0, request_seconds_ = 0, step_seconds_ = 0;
  uint64_t ttft_count_ = 0, request_count_ = 0, step_count_ = 0;
  std::map<std::string, std::vector<uint64_t>> expert_tokens_;  // mask set -> [moe_layer, expert]
  void count_response(int status);
};

}  // namespace mote
