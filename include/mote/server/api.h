// The OpenAI-compatible HTTP API of `mote serve`, without the HTTP: request
// bodies read into plain structs (every field checked, unknown ones
// refused), and the error object a client gets. Nothing here reads or
// writes a file, so a body from the network can only be refused.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mote::api {

// What a client did wrong (or what the server cannot do now): an HTTP
// status and OpenAI's error object {"error": {message, type, param, code}}.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string type, const std::string& message, std::string param = "")
      : std::runtime_error(message), status_(status), type_(std::move(type)), param_(std::move(param)) {}
  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }
  nlohmann::ordered_json body() const;

 private:
  int status_;
  std::string type_, param_;
};

// A 400 naming the field.
[[noreturn]] void bad_request(const std::string& param, const std::string& message);

enum class Endpoint { Chat, Completions };

// One prompt of a completions request: text, or token ids as given.
struct ApiPrompt {
  std::optional<std::string> text;
  std::vector<int32_t> ids;
};

// Limits a request is held to (besides the model's context).
inline constexpr int kMaxChoices = 16;    // n
inline constexpr int kMaxStops = 4;       // stop strings
inline constexpr int kMaxPrompts = 1024;  // prompts of one completions request

struct ApiRequest {
  Endpoint endpoint = Endpoint::Chat;
  std::string model;  // empty: not given
  // Chat: "messages" (contents as strings), then the chat template's
  // variables the request set, as a prompt file's conversation holds them.
  std::optional<nlohmann::ordered_json> chat;
  std::vector<ApiPrompt> prompts;  // completions
  std::optional<int> max_tokens;
  std::optional<float> temperature, top_p;
  std::optional<uint64_t> seed;
  int n = 1;
  std::vector<std::string> stop;
  bool stream = false, include_usage = false;
  // Chat: "logprobs": true and "top_logprobs"; completions: "logprobs": N
  // (the top N alternatives).
  bool logprobs = false;
  int top_logprobs = 0;
  bool echo = false;  // completions: the prompt before the completion (and its log-probabilities)
  // mote's extensions: the mask set by name ("none": unsteered), and the
  // request's expert counts in the response.
  std::optional<std::string> mask;
  std::optional<std::string> mask_ini;  // a mask in mask-file syntax, without include
  bool record = false;
};

// Reads a request body. `template_reads(key)` says whether the chat
// template reads the variable `key` (a chat request's extra fields must
// be such variables). Throws ApiError (400) naming the first bad field.
ApiRequest parse_request(Endpoint endpoint, std::string_view body,
                         const std::function<bool(const std::string&)>& template_reads);

// POST /tokenize: {"prompt" (or "content"): TEXT, "add_special_tokens": bool}
// or {"messages": [...], template variables}.
struct TokenizeRequest {
  std::optional<std::string> text;
  std::optional<nlohmann::ordered_json> chat;
  bool add_special_tokens = true;
};
TokenizeRequest parse_tokenize(std::string_view body, const std::function<bool(const std::string&)>& template_reads);

// POST /detokenize: {"tokens": [ids]}.
std::vector<int32_t> parse_detokenize(std::string_view body);

// Whether `given` equals `expected`, in time that does not depend on where
// they differ (an API key).
bool same_secret(std::string_view given, std::string_view expected);

}  // namespace mote::api
