#include "mote/server/server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
#include <random>

#include "connection_pool.h"
#include "mote/model/expert_counters.h"
#include "mote/model/mask_file.h"
#include "mote/runtime/prompt_encoding.h"
#include "mote/server/api.h"
#include "mote/tokenizer/chat_template.h"
#include "mote/tokenizer/tokenizer.h"
#include "mote/util/error.h"
#include "mote/util/stop_signal.h"

namespace mote {

using json = nlohmann::ordered_json;
using api::ApiError;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  res.set_content(dump(e.body()), "application/json");
  if (e.status() == 401) res.set_header("WWW-Authenticate", "Bearer");
}

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{}-{:016x}", prefix, rng());
}

// The longest end of `text` that is the start of a stop string: held back
// while streaming, as the next token may complete the stop string.
size_t stop_prefix_at_end(std::string_view text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const auto& s : stops) {
    for (size_t k = std::min(s.size() - 1, text.size()); k > hold; --k) {
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

// The socket of a request's connection, found by its two ends among this
// process's descriptors (cpp-httplib 0.11 does not hand it to handlers),
// or -1. The handler's thread owns the connection while it runs, so the
// descriptor stays this connection's until the handler returns.
int connection_socket(const httplib::Request& req) {
  DIR* fds = opendir("/proc/self/fd");
  if (fds == nullptr) return -1;
  int found = -1;
  while (const dirent* entry = readdir(fds)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0') continue;
    sockaddr_storage peer{}, local{};
    socklen_t peer_len = sizeof peer, local_len = sizeof local;
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0 ||
        getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &local_len) != 0)
      continue;
    const auto port_and_address = [](const sockaddr_storage& a) -> std::pair<int, std::string> {
      char text[INET6_ADDRSTRLEN] = {};
      if (a.ss_family == AF_INET) {
        const auto& v4 = reinterpret_cast<const sockaddr_in&>(a);
        inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text);
        return {ntohs(v4.sin_port), text};
      }
      if (a.ss_family == AF_INET6) {
        const auto& v6 = reinterpret_cast<const sockaddr_in6&>(a);
        inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text);
        return {ntohs(v6.sin6_port), text};
      }
      return {-1, ""};
    };
    if (port_and_address(peer) == std::make_pair(req.remote_port, req.remote_addr) &&
        port_and_address(local).first == req.local_port) {
      found = static_cast<int>(fd);
      break;
    }
  }
  closedir(fds);
  return found;
}

// Whether the client has closed its end: a read would find the end of the
// stream (a pipelined next request is data, not an end).
bool client_closed(int fd) {
  if (fd < 0) return false;
  char byte = 0;
  const ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

const char* finish_reason(StopReason stop) {
  switch (stop) {
    case StopReason::Eos:
      return "stop";
    case StopReason::MaxTokens:
    case StopReason::ContextFull:
      return "length";
    default:
      return nullptr;
  }
}

// Characters of valid UTF-8 (OpenAI's text offsets count characters, as Python's len does).
size_t code_points(std::string_view s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

json bytes_of(const std::string& s) {
  json b = json::array();
  for (const unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// One entry of a chat completion's logprobs.content: a token, its
// log-probability and its `top` alternatives.
json chat_logprob(const Tokenizer& tokenizer, int32_t id, float logprob, const int32_t* top_ids,
                  const float* top_logprobs, size_t top) {
  const std::string text = tokenizer.decode(std::span(&id, 1));
  json alternatives = json::array();
  for (size_t t = 0; t < top; ++t) {
    const std::string alt = tokenizer.decode(std::span(&top_ids[t], 1));
    alternatives.push_back({{"token", alt}, {"logprob", top_logprobs[t]}, {"bytes", bytes_of(alt)}});
  }
  return {{"token", text}, {"logprob", logprob}, {"bytes", bytes_of(text)}, {"top_logprobs", alternatives}};
}

}  // namespace

// One choice of a call: one GenerationRequest.
struct Server::Choice {
  size_t id = 0;      // the queue's id
  size_t prompt = 0;  // index into Call::prompts
  bool handed = false, done = false, stopped_by_string = false;
  std::vector<int32_t> tokens;  // generated so far, without a final EOS
  std::vector<float> logprobs;  // of the generated tokens, with top_ids / top_logprobs
  std::vector<int32_t> top_ids;
  std::vector<float> top_logprobs;
  GenerationResult result;             // once done
  std::optional<TextStream> decoder;   // of `tokens`
  size_t searched = 0;                 // bytes of text searched for stop strings
  std::string text;                    // decoded, cut at a stop string
  size_t stable = 0;                   // bytes of text that cannot change any more
  size_t sent = 0, logprobs_sent = 0;  // streamed so far
  bool finish_sent = false;
};

// One HTTP request: its prompts and choices.
struct Server::Call {
  api::ApiRequest request;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> prompt_texts;
  std::vector<Choice> choices;
  std::string mask_name = "none";
  std::string mask_description;  // of a mask of its own
  size_t open = 0;               // choices not done
  bool role_sent = false, done_sent = false;
  std::string id;
  int64_t created = 0;
  std::chrono::steady_clock::time_point start;
  bool first_token = false;
  std::condition_variable changed;
  std::optional<std::chrono::steady_clock::time_point> last_text_write;  // of a stream, once it sent text

  // OpenAI's usage object, once every choice is done.
  json usage() const {
    int64_t prompt_tokens = 0, completion_tokens = 0;
    for (const auto& p : prompts) prompt_tokens += static_cast<int64_t>(p.size());
    for (const Choice& c : choices) completion_tokens += static_cast<int64_t>(c.result.generated.size());
    return {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}};
  }
};

void validate(const ServerOptions& s) {
  if (s.port < 0 || s.port > 65535) fail("--port {} is not a TCP port (0 picks a free one)", s.port);
  if (s.max_queue < 0) fail("--max-queue {} must not be negative", s.max_queue);
  if (s.max_connections < 1) fail("--max-connections {} must be at least 1", s.max_connections);
  if (s.timeout_seconds < 1) fail("--timeout {} must be at least 1 second", s.timeout_seconds);
  if (s.max_body_bytes < 1024) fail("--max-body {} must be at least 1024 bytes", s.max_body_bytes);
  if (!(s.shutdown_seconds >= 0)) fail("--shutdown-timeout {} must not be negative", s.shutdown_seconds);
  if (s.served_model_name.empty()) fail("--served-model-name is empty");
  if (s.stream_interval_ms < 0 || s.stream_interval_ms > 10000)
    fail("--stream-interval {} must be between 0 and 10000 ms", s.stream_interval_ms);
}

Server::Server(ServerOptions options) : options_(std::move(options)), http_(std::make_unique<httplib::Server>()) {}

Server::~Server() { stop(); }

void Server::listen() {
  auto& h = *http_;
  const size_t threads = static_cast<size_t>(std::max(options_.max_connections, 1));
  h.new_task_queue = [this, threads] { return new ConnectionPool(threads, stopping_); };
  h.set_payload_max_length(options_.max_body_bytes);
  h.set_read_timeout(options_.timeout_seconds, 0);
  h.set_write_timeout(options_.timeout_seconds, 0);
  h.set_keep_alive_timeout(5);
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a
  // second server on the same port would start and silently share it.
  h.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  route();
  const int port = options_.port == 0 ? h.bind_to_any_port(options_.host) : options_.port;
  if (port < 0 || (options_.port != 0 && !h.bind_to_port(options_.host, options_.port))) {
    fail("cannot listen on {}:{}: the address is not local or the port is taken (--host, --port)", options_.host,
         options_.port);
  }
  options_.port = port;
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  spdlog::info(
      "listening on http://{}:{} (the model is loading; /health says 503 until it is ready): queue {}, connections "
      "{}, body limit {} bytes, timeout {} s, shutdown timeout {} s{}",
      options_.host, port, options_.max_queue, options_.max_connections, options_.max_body_bytes,
      options_.timeout_seconds, options_.shutdown_seconds, options_.api_key.empty() ? "" : ", API key required");
}

void Server::ready(ServedModel model) {
  std::lock_guard lock(mutex_);
  model_ = std::move(model);
  ready_ = true;
  spdlog::info("ready: http://{}:{}/v1 serves model '{}'", options_.host, options_.port, options_.served_model_name);
}

void Server::stop() {
  {
    // Requests still open will get no result (the job failed): their
    // clients get an error instead of waiting. Streams of finished
    // requests get the time to send their last events (stopping the HTTP
    // server cuts them).
    std::unique_lock lock(mutex_);
    abandon_locked();
    streams_closed_.wait_for(lock, std::chrono::seconds(options_.timeout_seconds), [&] { return open_streams_ == 0; });
  }
  stopping_->store(true);
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

void Server::count_response(int status) {
  std::lock_guard lock(mutex_);
  ++responses_[status];
}

bool Server::authorized(const httplib::Request& req, httplib::Response& res) {
  if (options_.api_key.empty()) return true;
  const std::string header = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  const bool ok = header.size() > prefix.size() && header.compare(0, prefix.size(), prefix) == 0 &&
                  api::same_secret(std::string_view(header).substr(prefix.size()), options_.api_key);
  if (!ok) {
    send_error(res, ApiError(401, "invalid_request_error",
                             header.empty() ? "no API key given (Authorization: Bearer KEY)" : "the API key is wrong"));
  }
  return ok;
}

void Server::route() {
  auto& h = *http_;
  h.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const int status = res.status;
    if (status == 413) {
      send_error(res, ApiError(413, "invalid_request_error", "the request body is larger than the server accepts"));
    } else if (status == 404) {
      send_error(res, ApiError(404, "invalid_request_error", fmt::format("no route {} {}", req.method, req.path)));
    } else {
      send_error(res, ApiError(status, "invalid_request_error", fmt::format("HTTP status {}", status)));
    }
    res.status = status;
    return httplib::Server::HandlerResponse::Handled;
  }));
  h.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("server: {}", what);
    send_error(res, ApiError(500, "server_error", what));
  });
  h.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    count_response(res.status);
    spdlog::debug("{} {} {}", req.method, req.path, res.status);
  });
  h.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    std::lock_guard lock(mutex_);
    if (closing_) return send_json(res, 503, {{"status", "shutting down"}});
    send_json(res, ready_ ? 200 : 503, {{"status", ready_ ? "ok" : "loading"}});
  });
  h.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    json model = {
        {"id", options_.served_model_name}, {"object", "model"}, {"created", unix_seconds()}, {"owned_by", "mote"}};
    {
      std::lock_guard lock(mutex_);
      if (ready_) model["max_model_len"] = model_.context;
    }
    send_json(res, 200, {{"object", "list"}, {"data", json::array({model})}});
  });
  const auto guarded = [this](auto&& handle) {
    return [this, handle](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req, res)) return;
      try {
        {
          std::lock_guard lock(mutex_);
          if (!ready_) throw ApiError(503, "server_error", "the model is still loading");
        }
        handle(req, res);
      } catch (const ApiError& e) {
        send_error(res, e);
      }
    };
  };
  h.Post("/v1/chat/completions",
         guarded([this](const httplib::Request& req, httplib::Response& res) { handle_generation(req, res, true); }));
  h.Post("/v1/completions",
         guarded([this](const httplib::Request& req, httplib::Response& res) { handle_generation(req, res, false); }));
  h.Post("/tokenize",
         guarded([this](const httplib::Request& req, httplib::Response& res) { handle_tokenize(req, res); }));
  h.Post("/detokenize",
         guarded([this](const httplib::Request& req, httplib::Response& res) { handle_detokenize(req, res); }));
  h.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
    if (authorized(req, res)) handle_metrics(res);
  });
}

namespace {

// A conversation or text to ids, as `mote generate` encodes a prompt-file line.
EncodedPrompt encode(const ServedModel& m, const std::optional<nlohmann::ordered_json>& chat,
                     const std::optional<std::string>& text, bool add_special_tokens) {
  PromptSpec spec;
  if (chat) {
    if (m.chat == nullptr) throw ApiError(400, "invalid_request_error", "the model has no chat template");
    spec.chat = *chat;
  } else {
    spec.prompt = *text;
    spec.add_special_tokens = add_special_tokens;
  }
  try {
    return encode_prompt(*m.tokenizer, m.chat, spec);
  } catch (const jinja::RaisedError& e) {
    throw ApiError(400, "invalid_request_error",
                   fmt::format("the chat template refuses the conversation: {}", e.message()), "messages");
  } catch (const Error& e) {
    throw ApiError(400, "invalid_request_error", e.what());
  }
}

}  // namespace

void Server::handle_generation(const httplib::Request& req, httplib::Response& res, bool chat) {
  const auto reads = [this](const std::string& key) { return model_.chat != nullptr && model_.chat->reads(key); };
  auto call = std::make_shared<Call>();
  call->request = api::parse_request(chat ? api::Endpoint::Chat : api::Endpoint::Completions, req.body, reads);
  api::ApiRequest& r = call->request;
  if (!r.model.empty() && r.model != options_.served_model_name) {
    throw ApiError(
        404, "invalid_request_error",
        fmt::format("the model '{}' does not exist; this server serves '{}'", r.model, options_.served_model_name),
        "model");
  }
  // The prompts, as ids.
  if (chat) {
    EncodedPrompt e = encode(model_, r.chat, std::nullopt, false);
    call->prompts.push_back(std::move(e.tokens));
    call->prompt_texts.push_back(std::move(e.text));
  } else {
    for (const auto& p : r.prompts) {
      if (p.text) {
        EncodedPrompt e = encode(model_, std::nullopt, p.text, true);
        call->prompts.push_back(std::move(e.tokens));
        call->prompt_texts.push_back(std::move(e.text));
      } else {
        for (const int32_t id : p.ids) {
          if (id >= model_.vocab)
            api::bad_request("prompt", fmt::format("token id {} is past the vocabulary ({} ids)", id, model_.vocab));
        }
        call->prompts.push_back(p.ids);
        call->prompt_texts.push_back(model_.tokenizer->decode(p.ids));
      }
    }
  }
  if (static_cast<size_t>(r.n) * call->prompts.size() > static_cast<size_t>(api::kMaxPrompts))
    api::bad_request("n", "'n' times the prompts is more than the server takes at once");
  // Each prompt and its completion within the context.
  for (const auto& p : call->prompts) {
    const int len = static_cast<int>(p.size());
    if (len == 0) api::bad_request(chat ? "messages" : "prompt", "the prompt has no tokens");
    const int max_tokens = r.max_tokens.value_or(std::min(model_.default_max_tokens, model_.context - len));
    if (static_cast<int64_t>(len) + max_tokens > model_.context) {
      api::bad_request(r.max_tokens ? "max_tokens" : (chat ? "messages" : "prompt"),
                       fmt::format("this model's maximum context length is {} tokens; the request asks for {} ({} in "
                                   "the prompt, {} for the completion)",
                                   model_.context, static_cast<int64_t>(len) + max_tokens, len, max_tokens));
    }
  }
  // The mask set, or the request's own mask.
  const ExpertMask* mask = model_.default_mask;
  std::shared_ptr<ExpertMask> own;
  if (r.mask_ini) {
    try {
      own = std::make_shared<ExpertMask>(parse_mask_text(*r.mask_ini, *model_.config, "inline", "mask_ini"));
    } catch (const Error& e) {
      api::bad_request("mask_ini", e.what());
    }
    own->id = kOwnMaskId;
    mask = own.get();
  } else if (r.mask) {
    mask = nullptr;
    if (*r.mask != "none") {
      std::string names = "none";
      for (size_t i = 1; i < model_.masks->size(); ++i) {
        if ((*model_.masks)[i].name == *r.mask) mask = &(*model_.masks)[i];
        names += ", " + (*model_.masks)[i].name;
      }
      if (mask == nullptr)
        api::bad_request("mask", fmt::format("no mask set '{}' (this server has: {})", *r.mask, names));
    }
  }
  if (mask != nullptr) call->mask_name = mask->name;
  if (own) call->mask_description = own->description;
  call->id = random_id(chat ? "chatcmpl" : "cmpl");
  call->created = unix_seconds();
  call->start = std::chrono::steady_clock::now();
  for (size_t p = 0; p < call->prompts.size(); ++p) {
    for (int k = 0; k < r.n; ++k) {
      Choice c;
      c.prompt = p;
      c.decoder.emplace(*model_.tokenizer);
      call->choices.push_back(std::move(c));
    }
  }
  call->open = call->choices.size();
  // Hand the requests to the queue.
  {
    std::lock_guard lock(mutex_);
    if (closing_) throw ApiError(503, "server_error", "the server is shutting down");
    if (waiting_ + call->choices.size() > static_cast<size_t>(options_.max_queue)) {
      throw ApiError(
          429, "rate_limit_error",
          fmt::format("{} requests wait already (--max-queue {}); retry later", waiting_, options_.max_queue));
    }
    for (size_t i = 0; i < call->choices.size(); ++i) {
      Choice& c = call->choices[i];
      c.id = next_id_++;
      const auto& prompt = call->prompts[c.prompt];
      const int len = static_cast<int>(prompt.size());
      GenerationRequest g(prompt, mask, r.seed ? i : c.id);
      g.own_mask = own;
      g.max_new_tokens = r.max_tokens.value_or(std::min(model_.default_max_tokens, model_.context - len));
      if (r.temperature) g.temperature = *r.temperature;
      if (r.top_p) g.top_p = *r.top_p;
      if (r.seed) {
        g.own_seed = true;
        g.seed = *r.seed;
      }
      if (r.logprobs) {
        g.logprobs_from = r.echo ? 0 : len - 1;
        g.top_logprobs = r.top_logprobs;
      }
      arrived_.emplace_back(c.id, std::move(g));
      live_[c.id] = {call, i};
      prompt_tokens_ += static_cast<uint64_t>(len);
    }
    waiting_ += call->choices.size();
  }
  arrivals_.notify_all();

  if (!r.stream) {
    // A client that leaves cancels what it asked, as a stream's does.
    const int fd = connection_socket(req);
    std::unique_lock lock(mutex_);
    bool left = false;
    while (
        !call->changed.wait_for(lock, std::chrono::milliseconds(100), [&] { return call->open == 0 || abandoned_; })) {
      if (!left && client_closed(fd)) {
        left = true;
        cancel_locked(*call);
        arrivals_.notify_all();
      }
    }
    if (left) throw ApiError(499, "invalid_request_error", "the client closed the connection");
    if (call->open != 0) throw ApiError(500, "server_error", stopped_message_locked());
    bool cancelled = false;
    for (const Choice& c : call->choices) {
      if (!c.result.error.empty())
        throw ApiError(500, "server_error", fmt::format("the request failed while it ran: {}", c.result.error));
      cancelled |= c.result.stop == StopReason::Cancelled && !c.stopped_by_string;
    }
    if (cancelled) throw ApiError(503, "server_error", "the server shut down before the request finished");
    json choices = json::array();
    json mote = json::object();
    if (r.record) {
      mote["mask"] = call->mask_name;
      mote["phases"] = {"prompt", "generated"};
      mote["moe_layers"] = model_.moe_layers;
      mote["expert_counts"] = json::array();
      mote["token_ids"] = json::array();
    }
    for (size_t i = 0; i < call->choices.size(); ++i) {
      const Choice& c = call->choices[i];
      const char* reason = c.stopped_by_string ? "stop" : finish_reason(c.result.stop);
      json choice = {{"index", i}};
      const auto& tokenizer = *model_.tokenizer;
      // The generated tokens the text holds (a stop string may cut it).
      const size_t shown = [&] {
        if (!c.stopped_by_string) return c.tokens.size();
        TextStream prefix(tokenizer);
        while (prefix.size() < c.tokens.size() && prefix.decoded_size() < c.text.size())
          prefix.push(c.tokens[prefix.size()]);
        return prefix.size();
      }();
      json logprobs = nullptr;
      if (r.logprobs) {
        const size_t prompt_len = call->prompts[c.prompt].size();
        const size_t from = r.echo ? 0 : prompt_len - 1;  // the first position a log-probability follows
        const size_t top = static_cast<size_t>(r.top_logprobs);
        const auto token_at = [&](size_t position) {  // the token after `position` (the prompt's, then generated)
          return position + 1 < prompt_len ? call->prompts[c.prompt][position + 1]
                                           : c.result.generated[position + 1 - prompt_len];
        };
        const size_t entries = (r.echo ? prompt_len - 1 : 0) + shown;
        if (chat) {
          json content = json::array();
          for (size_t e = 0; e < entries; ++e) {
            content.push_back(chat_logprob(tokenizer, c.result.generated[e], c.result.token_logprobs[e],
                                           c.result.top_ids.data() + e * top, c.result.top_logprobs.data() + e * top,
                                           top));
          }
          logprobs = {{"content", content}, {"refusal", nullptr}};
        } else {
          json tokens = json::array(), values = json::array(), tops = json::array(), offsets = json::array();
          TextStream sequence(tokenizer);
          // Offsets into the prompt and completion, as OpenAI gives them.
          const size_t offset_base = r.echo ? 0 : code_points(call->prompt_texts[c.prompt]);
          size_t counted = 0, characters = 0;  // of sequence.text()
          const auto offset = [&] {
            characters += code_points(std::string_view(sequence.text()).substr(counted));
            counted = sequence.text().size();
            // A character still cut decodes as one U+FFFD per byte.
            return offset_base + characters + (sequence.decoded_size() - counted) / 3;
          };
          if (r.echo) {
            // The prompt's first token has no log-probability.
            const int32_t first = call->prompts[c.prompt][0];
            const std::string text = tokenizer.decode(std::span(&first, 1));
            tokens.push_back(text);
            values.push_back(nullptr);
            tops.push_back(nullptr);
            offsets.push_back(0);
            sequence.push(first);
          }
          for (size_t e = 0; e < entries; ++e) {
            const int32_t id = token_at(from + e);
            offsets.push_back(offset());
            sequence.push(id);
            tokens.push_back(tokenizer.decode(std::span(&id, 1)));
            values.push_back(c.result.token_logprobs[e]);
            json alternatives = json::object();
            for (size_t t = 0; t < top; ++t) {
              const int32_t alt = c.result.top_ids[e * top + t];
              alternatives[tokenizer.decode(std::span(&alt, 1))] = c.result.top_logprobs[e * top + t];
            }
            tops.push_back(top > 0 ? alternatives : json(nullptr));
          }
          logprobs = {{"tokens", tokens}, {"token_logprobs", values}, {"top_logprobs", tops}, {"text_offset", offsets}};
        }
      }
      if (chat) {
        choice["message"] = {{"role", "assistant"}, {"content", c.text}};
      } else {
        choice["text"] = r.echo ? call->prompt_texts[c.prompt] + c.text : c.text;
      }
      choice["logprobs"] = logprobs;
      choice["finish_reason"] = reason;
      choices.push_back(std::move(choice));
      if (r.record) {
        const size_t layers = model_.moe_layers.size(), experts = static_cast<size_t>(model_.experts);
        json phases = json::array();
        for (size_t ph = 0; ph < static_cast<size_t>(kPhaseCount); ++ph) {
          json rows = json::array();
          for (size_t l = 0; l < layers; ++l) {
            const auto* row = &c.result.expert_counts[(ph * layers + l) * experts];
            rows.push_back(std::vector<uint32_t>(row, row + experts));
          }
          phases.push_back(std::move(rows));
        }
        mote["expert_counts"].push_back(std::move(phases));
        mote["token_ids"].push_back(c.result.generated);
      }
    }
    json body = {{"id", call->id},           {"object", chat ? "chat.completion" : "text_completion"},
                 {"created", call->created}, {"model", options_.served_model_name},
                 {"choices", choices},       {"usage", call->usage()}};
    if (r.record) body["mote"] = mote;
    lock.unlock();
    send_json(res, 200, body);
    return;
  }

  // Streamed: server-sent events as tokens come; a client that leaves
  // cancels what it asked.
  res.set_header("Cache-Control", "no-cache");
  {
    std::lock_guard lock(mutex_);
    ++open_streams_;
  }
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, call](size_t, httplib::DataSink& sink) {
        std::string events;
        bool finished = false;
        {
          std::unique_lock lock(mutex_);
          // Tokens that come soon after a write wait for the next one (progress() does not wake a stream
          // then), unless the call ends first.
          if (const auto due = next_write_locked(*call))
            call->changed.wait_until(lock, *due, [&] { return call->open == 0 || abandoned_; });
          call->changed.wait_for(lock, std::chrono::seconds(10), [&] { return has_news_locked(*call) || abandoned_; });
          if (abandoned_ && call->open != 0) {
            events = "data: " + dump(ApiError(500, "server_error", stopped_message_locked()).body()) + "\n\n";
            sink.write(events.data(), events.size());
            return false;
          }
          events = stream_events_locked(*call, call->open == 0);
          finished = call->done_sent;
          if (call->first_token) call->last_text_write = std::chrono::steady_clock::now();
        }
        if (events.empty()) events = ": waiting\n\n";  // keeps the connection from timing out
        if (!sink.write(events.data(), events.size())) return false;
        if (finished) sink.done();
        return true;
      },
      [this, call](bool success) {
        std::lock_guard lock(mutex_);
        if (!success) {
          cancel_locked(*call);
          arrivals_.notify_all();
        }
        --open_streams_;
        streams_closed_.notify_all();
      });
}

bool Server::has_news_locked(const Call& call) const {
  if (call.done_sent) return false;
  if (call.open == 0 || (call.request.endpoint == api::Endpoint::Chat && !call.role_sent)) return true;
  for (const Choice& c : call.choices) {
    if ((c.done && !c.finish_sent) || c.stable > c.sent ||
        (!c.stopped_by_string && c.logprobs.size() > c.logprobs_sent))
      return true;
  }
  return false;
}

void Server::cancel_locked(const Call& call) {
  for (const Choice& c : call.choices) {
    if (!c.done) to_cancel_.push_back(c.id);
  }
}

// The choice's text from its tokens: cut at the first stop string (which
// cancels the request), and how much of it can no longer change. Each
// token costs its own bytes, not the text's.
void Server::update_text_locked(Call& call, Choice& c, bool final) {
  if (c.stopped_by_string) return;
  TextStream& decoder = *c.decoder;
  if (decoder.size() > c.tokens.size()) decoder = TextStream(*model_.tokenizer);
  while (decoder.size() < c.tokens.size()) decoder.push(c.tokens[decoder.size()]);
  // Final: a character still cut shows as decode() shows it (U+FFFD).
  if (final) {
    c.text = decoder.decoded();
  } else {
    c.text.append(decoder.text(), c.text.size());
  }
  // A stop string not found before ends past what was searched.
  const auto& stops = call.request.stop;
  size_t longest = 0;
  for (const auto& s : stops) longest = std::max(longest, s.size());
  const size_t from = c.searched >= longest ? c.searched - longest + 1 : 0;
  size_t cut = std::string::npos;
  for (const auto& s : stops) cut = std::min(cut, c.text.find(s, from));
  if (cut != std::string::npos) {
    c.text.resize(cut);
    c.stopped_by_string = true;
    if (!c.done) to_cancel_.push_back(c.id);
    arrivals_.notify_all();
    final = true;
  }
  c.searched = c.text.size();
  size_t stable = c.text.size();
  if (!final) stable -= stop_prefix_at_end(c.text, stops);
  c.stable = std::min(std::max(c.stable, stable), c.text.size());
}

std::string Server::stream_events_locked(Call& call, bool final) {
  const bool chat = call.request.endpoint == api::Endpoint::Chat;
  std::string out;
  const auto event = [&](json choices, const json* usage = nullptr) {
    json chunk = {{"id", call.id},
                  {"object", chat ? "chat.completion.chunk" : "text_completion"},
                  {"created", call.created},
                  {"model", options_.served_model_name},
                  {"choices", std::move(choices)}};
    if (usage) chunk["usage"] = *usage;
    out += "data: " + dump(chunk) + "\n\n";
  };
  if (chat && !call.role_sent) {
    json choices = json::array();
    for (size_t i = 0; i < call.choices.size(); ++i)
      choices.push_back({{"index", i},
                         {"delta", {{"role", "assistant"}, {"content", ""}}},
                         {"logprobs", nullptr},
                         {"finish_reason", nullptr}});
    event(choices);
    call.role_sent = true;
  }
  bool cancelled = false;
  for (size_t i = 0; i < call.choices.size(); ++i) {
    Choice& c = call.choices[i];
    if (c.finish_sent) continue;
    const size_t upto = c.done || c.stopped_by_string ? c.text.size() : c.stable;
    json logprobs = nullptr;
    if (call.request.logprobs) {
      const size_t top = static_cast<size_t>(call.request.top_logprobs);
      const size_t have = c.stopped_by_string ? c.logprobs_sent : c.logprobs.size();
      json content = json::array();
      for (size_t e = c.logprobs_sent; e < have; ++e) {
        content.push_back(chat_logprob(*model_.tokenizer, c.tokens[e], c.logprobs[e], c.top_ids.data() + e * top,
                                       c.top_logprobs.data() + e * top, top));
      }
      c.logprobs_sent = have;
      if (!content.empty()) logprobs = {{"content", content}};
    }
    if (upto > c.sent || !logprobs.is_null()) {
      const std::string delta = c.text.substr(c.sent, upto - c.sent);
      c.sent = upto;
      json choice = {{"index", i}};
      if (chat) {
        choice["delta"] = {{"content", delta}};
      } else {
        choice["text"] = delta;
      }
      choice["logprobs"] = logprobs;
      choice["finish_reason"] = nullptr;
      event(json::array({choice}));
    }
    if (c.done) {
      cancelled |= c.result.stop == StopReason::Cancelled && !c.stopped_by_string;
      const char* reason = c.stopped_by_string ? "stop" : finish_reason(c.result.stop);
      if (reason != nullptr) {
        json choice = {{"index", i}};
        if (chat) {
          choice["delta"] = json::object();
        } else {
          choice["text"] = "";
        }
        choice["logprobs"] = nullptr;
        choice["finish_reason"] = reason;
        event(json::array({choice}));
      } else if (!c.result.error.empty()) {
        out += "data: " + dump(ApiError(500, "server_error", c.result.error).body()) + "\n\n";
      }
      c.finish_sent = true;
    }
  }
  if (final && !call.done_sent) {
    if (cancelled) {
      out += "data: " + dump(ApiError(503, "server_error", "the server shut down before the request finished").body()) +
             "\n\n";
    }
    if (call.request.include_usage) {
      const json usage = call.usage();
      event(json::array(), &usage);
    }
    out += "data: [DONE]\n\n";
    call.done_sent = true;
  }
  return out;
}

void Server::handle_tokenize(const httplib::Request& req, httplib::Response& res) {
  const auto reads = [this](const std::string& key) { return model_.chat != nullptr && model_.chat->reads(key); };
  const api::TokenizeRequest r = api::parse_tokenize(req.body, reads);
  const EncodedPrompt e = encode(model_, r.chat, r.text, r.add_special_tokens);
  send_json(res, 200, {{"tokens", e.tokens}, {"count", e.tokens.size()}, {"max_model_len", model_.context}});
}

void Server::handle_detokenize(const httplib::Request& req, httplib::Response& res) {
  const std::vector<int32_t> ids = api::parse_detokenize(req.body);
  for (const int32_t id : ids) {
    if (id >= model_.tokenizer->vocab_size())
      api::bad_request("tokens",
                       fmt::format("token id {} is past the vocabulary ({} ids)", id, model_.tokenizer->vocab_size()));
  }
  const std::string text = model_.tokenizer->decode(ids);
  send_json(res, 200, {{"prompt", text}, {"content", text}});
}

void Server::handle_metrics(httplib::Response& res) {
  std::lock_guard lock(mutex_);
  std::string out;
  const auto metric = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  metric("mote_http_responses_total", "counter", "HTTP responses by status");
  for (const auto& [status, n] : responses_)
    out += fmt::format("mote_http_responses_total{{status=\"{}\"}} {}\n", status, n);
  metric("mote_prompt_tokens_total", "counter", "prompt tokens of the requests taken");
  out += fmt::format("mote_prompt_tokens_total {}\n", prompt_tokens_);
  metric("mote_generation_tokens_total", "counter", "tokens generated");
  out += fmt::format("mote_generation_tokens_total {}\n", generated_tokens_);
  metric("mote_queue_depth", "gauge", "requests waiting for a slot");
  out += fmt::format("mote_queue_depth {}\n", waiting_);
  metric("mote_running_requests", "gauge", "requests holding a slot");
  out += fmt::format("mote_running_requests {}\n", live_.size() - std::min(live_.size(), waiting_));
  metric("mote_time_to_first_token_seconds", "summary", "from a request's arrival to its first token");
  out += fmt::format("mote_time_to_first_token_seconds_sum {}\nmote_time_to_first_token_seconds_count {}\n",
                     ttft_seconds_, ttft_count_);
  metric("mote_request_seconds", "summary", "from a request's arrival to its last token");
  out += fmt::format("mote_request_seconds_sum {}\nmote_request_seconds_count {}\n", request_seconds_, request_count_);
  metric("mote_step_seconds", "summary", "steps of the model that ran requests (every MoE layer once)");
  out += fmt::format("mote_step_seconds_sum {}\nmote_step_seconds_count {}\n", step_seconds_, step_count_);
  metric("mote_expert_tokens_total", "counter",
         "tokens each routed expert processed, per mask set and MoE layer (a live fTRI profile)");
  const size_t experts = static_cast<size_t>(model_.experts);
  for (const auto& [mask, counts] : expert_tokens_) {
    for (size_t l = 0; l < model_.moe_layers.size(); ++l) {
      for (size_t e = 0; e < experts; ++e) {
        const uint64_t n = counts[l * experts + e];
        if (n != 0)
          out += fmt::format("mote_expert_tokens_total{{mask=\"{}\",layer=\"{}\",expert=\"{}\"}} {}\n", mask,
                             model_.moe_layers[l], e, n);
      }
    }
  }
  res.set_content(out, "text/plain; version=0.0.4");
}

// The queue's side.

bool Server::collect(std::deque<std::pair<size_t, GenerationRequest>>& arrived, std::vector<size_t>& cancel) {
  std::lock_guard lock(mutex_);
  for (auto& a : arrived_) arrived.push_back(std::move(a));
  arrived_.clear();
  cancel.insert(cancel.end(), to_cancel_.begin(), to_cancel_.end());
  to_cancel_.clear();
  if (closing_ && !deadline_passed_ && std::chrono::steady_clock::now() >= deadline_) {
    deadline_passed_ = true;
    if (!live_.empty())
      spdlog::warn("shutting down: cancelling the {} requests still running after {} s", live_.size(),
                   options_.shutdown_seconds);
    for (const auto& [id, where] : live_) cancel.push_back(id);
  }
  return !closing_;
}

void Server::wait_for_work(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  arrivals_.wait_for(lock, timeout, [&] { return !arrived_.empty() || !to_cancel_.empty() || closing_; });
}

void Server::shut_down(int signal) {
  {
    std::lock_guard lock(mutex_);
    if (closing_) return;
    closing_ = true;
    deadline_ = std::chrono::steady_clock::now() +
                std::chrono::milliseconds(static_cast<int64_t>(options_.shutdown_seconds * 1000));
    spdlog::warn("{}: taking no more requests; the {} running get up to {} s to finish", signal_name(signal),
                 live_.size(), options_.shutdown_seconds);
  }
  arrivals_.notify_all();
}

void Server::fail_running(const std::string& why) {
  std::lock_guard lock(mutex_);
  if (abandoned_) return;
  spdlog::error("{}: the {} requests in flight fail with status 500", why, live_.size());
  closing_ = true;
  failure_ = why;
  abandon_locked();
}

void Server::abandon_locked() {
  abandoned_ = true;
  for (const auto& [id, where] : live_) where.first->changed.notify_all();
}

std::optional<std::chrono::steady_clock::time_point> Server::next_write_locked(const Call& call) const {
  if (!call.last_text_write || options_.stream_interval_ms == 0) return std::nullopt;
  return *call.last_text_write + std::chrono::milliseconds(options_.stream_interval_ms);
}

std::string Server::stopped_message_locked() const {
  if (failure_.empty()) return "the server stopped before the request finished";
  return fmt::format("the server failed before the request finished: {}", failure_);
}

void Server::step_time(double seconds) {
  std::lock_guard lock(mutex_);
  step_seconds_ += seconds;
  ++step_count_;
}

void Server::handed_out(size_t id) {
  std::lock_guard lock(mutex_);
  const auto it = live_.find(id);
  if (it == live_.end()) return;
  Choice& c = it->second.first->choices[it->second.second];
  if (!c.handed) {
    c.handed = true;
    --waiting_;
  }
}

void Server::progress(TokenProgress&& token) {
  std::lock_guard lock(mutex_);
  const auto it = live_.find(token.id);
  if (it == live_.end()) return;
  Call& call = *it->second.first;
  Choice& c = call.choices[it->second.second];
  if (!call.first_token) {
    call.first_token = true;
    ttft_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - call.start).count();
    ++ttft_count_;
  }
  if (std::find(model_.eos_ids.begin(), model_.eos_ids.end(), token.token) != model_.eos_ids.end()) return;
  c.tokens.push_back(token.token);
  if (call.request.logprobs) {
    c.logprobs.push_back(token.logprob);
    c.top_ids.insert(c.top_ids.end(), token.top_ids.begin(), token.top_ids.end());
    c.top_logprobs.insert(c.top_logprobs.end(), token.top_logprobs.begin(), token.top_logprobs.end());
  }
  update_text_locked(call, c, false);
  // A stream holding its tokens until its next write wakes by itself then;
  // waking it at every token would cost what the hold saves.
  const auto due = next_write_locked(call);
  const bool holding = due && std::chrono::steady_clock::now() < *due;
  if (!holding || c.stopped_by_string) call.changed.notify_all();
}

ServedRequest Server::describe(size_t id) {
  std::lock_guard lock(mutex_);
  ServedRequest r;
  const auto it = live_.find(id);
  if (it == live_.end()) return r;
  const Call& call = *it->second.first;
  const size_t choice = it->second.second;
  const size_t prompt = call.choices[choice].prompt;
  r.id = fmt::format("{}/{}", call.id, choice);
  r.mask = call.mask_name == "none" ? "" : call.mask_name;
  if (call.request.mask_ini) r.mask_ini = call.mask_description;
  r.prompt_text = call.prompt_texts[prompt];
  r.prompt = call.prompts[prompt];
  return r;
}

void Server::finished(size_t id, GenerationResult&& result) {
  std::lock_guard lock(mutex_);
  const auto it = live_.find(id);
  if (it == live_.end()) return;
  const auto call = it->second.first;
  Choice& c = call->choices[it->second.second];
  live_.erase(it);
  if (!c.handed) --waiting_;
  c.done = true;
  c.result = std::move(result);
  c.tokens = c.result.generated;
  if (c.result.stop == StopReason::Eos && !c.tokens.empty()) c.tokens.pop_back();
  update_text_locked(*call, c, true);
  generated_tokens_ += c.result.generated.size();
  // The live profile: tokens per expert of both phases, by mask set.
  const size_t cells = model_.moe_layers.size() * static_cast<size_t>(model_.experts);
  if (c.result.expert_counts.size() == kPhaseCount * cells) {
    auto& totals = expert_tokens_[call->mask_name];
    totals.resize(cells);
    for (size_t ph = 0; ph < static_cast<size_t>(kPhaseCount); ++ph)
      for (size_t i = 0; i < cells; ++i) totals[i] += c.result.expert_counts[ph * cells + i];
  }
  if (--call->open == 0) {
    request_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - call->start).count();
    ++request_count_;
  }
  call->changed.notify_all();
}

}  // namespace mote
