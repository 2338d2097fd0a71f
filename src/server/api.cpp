#include "mote/server/api.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <set>

namespace mote::api {

using json = nlohmann::ordered_json;
using ordered_json = nlohmann::ordered_json;

json ApiError::body() const {
  json error = {{"message", what()}, {"type", type_}, {"param", nullptr}, {"code", nullptr}};
  if (!param_.empty()) error["param"] = param_;
  return {{"error", error}};
}

void bad_request(const std::string& param, const std::string& message) {
  throw ApiError(400, "invalid_request_error", message, param);
}

namespace {

// Nesting deeper than any request needs is refused before parsing, so that
// nothing downstream (templates, printing) recurses through it.
constexpr int kMaxDepth = 64;

ordered_json parse_body(std::string_view body) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : body) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) bad_request("", fmt::format("the body nests deeper than {} levels", kMaxDepth));
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  ordered_json j = ordered_json::parse(body, nullptr, false);
  if (j.is_discarded()) bad_request("", "the body is not valid JSON (UTF-8)");
  if (!j.is_object()) bad_request("", "the body must be a JSON object");
  return j;
}

const char* kind(const ordered_json& v) {
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

bool get_bool(const ordered_json& v, const std::string& key) {
  if (!v.is_boolean()) bad_request(key, fmt::format("'{}' must be true or false, not {}", key, kind(v)));
  return v.get<bool>();
}

std::string get_string(const ordered_json& v, const std::string& key) {
  if (!v.is_string()) bad_request(key, fmt::format("'{}' must be a string, not {}", key, kind(v)));
  return v.get<std::string>();
}

int64_t get_int(const ordered_json& v, const std::string& key, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) bad_request(key, fmt::format("'{}' must be an integer, not {}", key, kind(v)));
  const int64_t x =
      v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : v.get<int64_t>();
  if (x < lo || x > hi) bad_request(key, fmt::format("'{}' is {}; it must be from {} to {}", key, x, lo, hi));
  return x;
}

double get_number(const ordered_json& v, const std::string& key) {
  if (!v.is_number()) bad_request(key, fmt::format("'{}' must be a number, not {}", key, kind(v)));
  const double x = v.get<double>();
  if (!std::isfinite(x)) bad_request(key, fmt::format("'{}' must be finite", key));
  return x;
}

// A message's content as the chat template reads it: a string, or the
// text parts of an array joined by newlines (as OpenAI clients may send).
ordered_json message_content(const ordered_json& content, size_t i) {
  const std::string key = fmt::format("messages[{}].content", i);
  if (content.is_string() || content.is_null()) return content;
  if (!content.is_array()) bad_request(key, fmt::format("'{}' must be a string or an array of text parts", key));
  std::string text;
  for (size_t p = 0; p < content.size(); ++p) {
    const auto& part = content[p];
    if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      bad_request(key, fmt::format("'{}[{}]' must be a text part {{\"type\": \"text\", \"text\": ...}}", key, p));
    }
    if (p > 0) text += '\n';
    text += part["text"].get<std::string>();
  }
  return text;
}

ordered_json read_messages(const ordered_json& v) {
  if (!v.is_array() || v.empty()) bad_request("messages", "'messages' must be a non-empty array");
  ordered_json messages = ordered_json::array();
  for (size_t i = 0; i < v.size(); ++i) {
    const auto& m = v[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      bad_request("messages", fmt::format("'messages[{}]' must be an object with a string 'role'", i));
    ordered_json copy = m;
    if (m.contains("content")) copy["content"] = message_content(m["content"], i);
    messages.push_back(std::move(copy));
  }
  return messages;
}

std::vector<int32_t> read_ids(const ordered_json& v, const std::string& key) {
  std::vector<int32_t> ids;
  for (const auto& id : v) ids.push_back(static_cast<int32_t>(get_int(id, key, 0, INT32_MAX)));
  return ids;
}

std::vector<ApiPrompt> read_prompts(const ordered_json& v) {
  const auto one = [](const ordered_json& p) {
    ApiPrompt prompt;
    if (p.is_string()) {
      prompt.text = p.get<std::string>();
      if (prompt.text->empty()) bad_request("prompt", "'prompt' is empty");
    } else if (p.is_array() && !p.empty() && p[0].is_number()) {
      prompt.ids = read_ids(p, "prompt");
    } else {
      bad_request("prompt", "each prompt must be a non-empty string or a non-empty array of token ids");
    }
    return prompt;
  };
  if (v.is_string()) return {one(v)};
  if (!v.is_array() || v.empty())
    bad_request("prompt", "'prompt' must be a string, an array of strings, token ids or arrays of token ids");
  if (v[0].is_number()) return {one(v)};
  if (v.size() > static_cast<size_t>(kMaxPrompts))
    bad_request("prompt", fmt::format("'prompt' holds {} prompts; at most {}", v.size(), kMaxPrompts));
  std::vector<ApiPrompt> prompts;
  for (const auto& p : v) prompts.push_back(one(p));
  return prompts;
}

void read_stop(const ordered_json& v, std::vector<std::string>& stop) {
  if (v.is_string()) {
    stop.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    if (v.size() > static_cast<size_t>(kMaxStops))
      bad_request("stop", fmt::format("'stop' holds {} strings; at most {}", v.size(), kMaxStops));
    for (const auto& s : v) stop.push_back(get_string(s, "stop"));
  } else {
    bad_request("stop", "'stop' must be a string or an array of strings");
  }
  for (const auto& s : stop)
    if (s.empty()) bad_request("stop", "a stop string is empty");
}

// Fields every OpenAI client may send that change nothing here at their
// default values; other values are refused rather than ignored.
void check_neutral(const std::string& key, const ordered_json& v) {
  if (key == "frequency_penalty" || key == "presence_penalty") {
    if (get_number(v, key) != 0) bad_request(key, fmt::format("'{}' other than 0 is not supported", key));
  } else if (key == "best_of") {
    if (get_int(v, key, 1, 1) != 1) bad_request(key, "'best_of' other than 1 is not supported");
  } else if (key == "user") {
    get_string(v, key);
  } else if (key == "logit_bias") {
    if (!v.is_object() || !v.empty()) bad_request(key, "'logit_bias' is not supported");
  }
}

const std::set<std::string> kNeutral = {"frequency_penalty", "presence_penalty", "best_of", "user", "logit_bias"};

}  // namespace

ApiRequest parse_request(Endpoint endpoint, std::string_view body,
                         const std::function<bool(const std::string&)>& template_reads) {
  const ordered_json j = parse_body(body);
  ApiRequest r;
  r.endpoint = endpoint;
  const bool chat = endpoint == Endpoint::Chat;
  ordered_json variables = ordered_json::object();
  bool has_input = false;
  for (const auto& [key, v] : j.items()) {
    if (v.is_null() && key != "messages" && key != "prompt") continue;  // OpenAI's "not given"
    if (key == "model") {
      r.model = get_string(v, key);
    } else if (chat && key == "messages") {
      r.chat = ordered_json::object();
      (*r.chat)["messages"] = read_messages(v);
      has_input = true;
    } else if (!chat && key == "prompt") {
      r.prompts = read_prompts(v);
      has_input = true;
    } else if (key == "max_tokens" || (chat && key == "max_completion_tokens")) {
      r.max_tokens = static_cast<int>(get_int(v, key, 0, INT32_MAX));
    } else if (key == "temperature") {
      const double t = get_number(v, key);
      if (t < 0 || t > 2) bad_request(key, fmt::format("'temperature' is {}; it must be from 0 to 2", t));
      r.temperature = static_cast<float>(t);
    } else if (key == "top_p") {
      const double p = get_number(v, key);
      if (!(p > 0 && p <= 1)) bad_request(key, fmt::format("'top_p' is {}; it must be in (0, 1]", p));
      r.top_p = static_cast<float>(p);
    } else if (key == "seed") {
      r.seed = static_cast<uint64_t>(get_int(v, key, INT64_MIN, INT64_MAX));
    } else if (key == "n") {
      r.n = static_cast<int>(get_int(v, key, 1, kMaxChoices));
    } else if (key == "stop") {
      read_stop(v, r.stop);
    } else if (key == "stream") {
      r.stream = get_bool(v, key);
    } else if (key == "stream_options") {
      if (!v.is_object()) bad_request(key, "'stream_options' must be an object");
      for (const auto& [k, x] : v.items()) {
        if (k != "include_usage") bad_request(key, fmt::format("unknown field 'stream_options.{}'", k));
        r.include_usage = get_bool(x, "stream_options.include_usage");
      }
    } else if (chat && key == "logprobs") {
      r.logprobs = get_bool(v, key);
    } else if (chat && key == "top_logprobs") {
      r.top_logprobs = static_cast<int>(get_int(v, key, 0, 20));
    } else if (!chat && key == "logprobs") {
      r.logprobs = true;
      r.top_logprobs = static_cast<int>(get_int(v, key, 0, 20));
    } else if (!chat && key == "echo") {
      r.echo = get_bool(v, key);
    } else if (key == "mask") {
      r.mask = get_string(v, key);
      if (r.mask->empty()) bad_request(key, "'mask' is empty (\"none\" runs unsteered)");
    } else if (key == "mask_ini") {
      r.mask_ini = get_string(v, key);
      if (r.mask_ini->empty()) bad_request(key, "'mask_ini' is empty");
    } else if (key == "record") {
      r.record = get_bool(v, key);
    } else if (kNeutral.count(key) != 0) {
      check_neutral(key, v);
    } else if (chat && key != "add_generation_prompt" && template_reads(key)) {
      variables[key] = v;
    } else if (chat && key == "add_generation_prompt") {
      variables[key] = get_bool(v, key);
    } else {
      bad_request(key, chat ? fmt::format("unknown field '{}': neither an OpenAI chat field, one of mote's (mask, "
                                          "record) nor a variable the model's chat template reads",
                                          key)
                            : fmt::format("unknown field '{}'", key));
    }
  }
  if (!has_input) bad_request(chat ? "messages" : "prompt", chat ? "'messages' is required" : "'prompt' is required");
  if (chat && r.top_logprobs > 0 && !r.logprobs) bad_request("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  if (r.echo && r.stream) bad_request("echo", "'echo' cannot go with 'stream'");
  if (r.mask && r.mask_ini)
    bad_request("mask_ini",
                "give 'mask' (a set the server was started with) or 'mask_ini' (a mask of its own), not both");
  if (r.include_usage && !r.stream) bad_request("stream_options", "'stream_options' needs 'stream': true");
  if (chat) {
    for (const auto& [key, v] : variables.items()) (*r.chat)[key] = v;
  }
  return r;
}

TokenizeRequest parse_tokenize(std::string_view body, const std::function<bool(const std::string&)>& template_reads) {
  const ordered_json j = parse_body(body);
  TokenizeRequest r;
  ordered_json variables = ordered_json::object();
  for (const auto& [key, v] : j.items()) {
    if (key == "prompt" || key == "content") {
      if (r.text) bad_request(key, "give one of 'prompt' and 'content'");
      r.text = get_string(v, key);
    } else if (key == "messages") {
      r.chat = ordered_json::object();
      (*r.chat)["messages"] = read_messages(v);
    } else if (key == "add_special_tokens") {
      r.add_special_tokens = get_bool(v, key);
    } else if (key == "model") {
      get_string(v, key);
    } else if (key == "add_generation_prompt") {
      variables[key] = get_bool(v, key);
    } else if (template_reads(key)) {
      variables[key] = v;
    } else {
      bad_request(key, fmt::format("unknown field '{}'", key));
    }
  }
  if (r.text.has_value() == r.chat.has_value()) bad_request("prompt", "give one of 'prompt' and 'messages'");
  if (!variables.empty() && !r.chat) bad_request(variables.begin().key(), "template variables need 'messages'");
  if (r.chat) {
    for (const auto& [key, v] : variables.items()) (*r.chat)[key] = v;
  }
  return r;
}

std::vector<int32_t> parse_detokenize(std::string_view body) {
  const ordered_json j = parse_body(body);
  std::optional<std::vector<int32_t>> ids;
  for (const auto& [key, v] : j.items()) {
    if (key == "tokens") {
      if (!v.is_array()) bad_request(key, "'tokens' must be an array of token ids");
      ids = read_ids(v, key);
    } else if (key != "model") {
      bad_request(key, fmt::format("unknown field '{}'", key));
    }
  }
  if (!ids) bad_request("tokens", "'tokens' is required");
  return *ids;
}

bool same_secret(std::string_view given, std::string_view expected) {
  // Every byte of the longer is read whatever the others are.
  const size_t n = std::max(given.size(), expected.size());
  unsigned diff = given.size() == expected.size() ? 0u : 1u;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char a = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    const unsigned char b = i < expected.size() ? static_cast<unsigned char>(expected[i]) : 0;
    diff |= static_cast<unsigned>(a ^ b);
  }
  return diff == 0;
}

}  // namespace mote::api
