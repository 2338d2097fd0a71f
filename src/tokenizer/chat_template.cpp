#include "mote/tokenizer/chat_template.h"

#include <ctime>

#include "mote/io/json_file.h"
#include "mote/util/error.h"

namespace mote {
namespace {

constexpr uint64_t kMaxTemplateBytes = 1 << 20;

// bos_token/eos_token: a string, or an AddedToken written as {"content": ...}.
std::optional<std::string> special_token(const nlohmann::json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const auto& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

std::tm parse_date(const std::string& text) {
  std::tm tm{};
  int y = 0, m = 0, d = 0;
  char tail = 0;
  if (text.size() != 10 || std::sscanf(text.c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || m < 1 || m > 12 ||
      d < 1 || d > 31) {
    fail("'current_date' must be a date written YYYY-MM-DD, not '{}'", text);
  }
  tm.tm_year = y - 1900;
  tm.tm_mon = m - 1;
  tm.tm_mday = d;
  tm.tm_isdst = -1;
  std::tm check = tm;
  timegm(&check);  // normalises, and fills in the weekday and day of the year
  if (check.tm_mday != d) fail("'current_date' {} is not a calendar date", text);
  return check;
}

}  // namespace

ChatTemplate ChatTemplate::from_source(std::string_view source, const std::string& name,
                                       std::optional<std::string> bos_token, std::optional<std::string> eos_token) {
  ChatTemplate t(jinja::Template::parse(source, name));
  t.bos_token_ = std::move(bos_token);
  t.eos_token_ = std::move(eos_token);
  return t;
}

std::optional<ChatTemplate> ChatTemplate::load(const std::filesystem::path& dir,
                                               const std::optional<std::filesystem::path>& file) {
  nlohmann::json config = nlohmann::json::object();
  const auto config_path = dir / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::exists(config_path, ec)) config = read_json_file(config_path);
  const auto bos = special_token(config, "bos_token"), eos = special_token(config, "eos_token");
  if (file) return from_source(read_input_file(*file, "chat template", kMaxTemplateBytes), file->string(), bos, eos);
  const auto jinja_path = dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja_path, ec)) {
    return from_source(read_input_file(jinja_path, "chat template", kMaxTemplateBytes), jinja_path.string(), bos, eos);
  }
  if (!config.contains("chat_template") || config["chat_template"].is_null()) return std::nullopt;
  const auto& ct = config["chat_template"];
  const std::string name = config_path.string() + " chat_template";
  if (ct.is_string()) return from_source(ct.get<std::string>(), name, bos, eos);
  // Several named templates: the one called "default" is the chat template.
  if (ct.is_array()) {
    for (const auto& entry : ct) {
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string()) {
        return from_source(entry["template"].get<std::string>(), name + " 'default'", bos, eos);
      }
    }
    fail("{}: 'chat_template' lists named templates but none called 'default'", config_path.string());
  }
  fail("{}: 'chat_template' must be a string or a list of named templates", config_path.string());
}

std::string ChatTemplate::render(const nlohmann::ordered_json& request) const {
  if (!request.is_object() || !request.contains("messages") || !request["messages"].is_array()) {
    fail("a chat request needs 'messages', a list");
  }
  jinja::Dict vars;
  const auto set = [&](const std::string& key, jinja::Value v) {
    for (auto& [k, old] : vars) {
      if (k == key) {
        old = std::move(v);
        return;
      }
    }
    vars.emplace_back(key, std::move(v));
  };
  set("add_generation_prompt", jinja::Value::from(true));
  set("tools", jinja::Value::none());
  set("documents", jinja::Value::none());
  if (bos_token_) set("bos_token", jinja::Value::from(*bos_token_));
  if (eos_token_) set("eos_token", jinja::Value::from(*eos_token_));
  jinja::RenderOptions options;
  for (const auto& [key, value] : request.items()) {
    if (key == "add_generation_prompt" && !value.is_boolean()) fail("'add_generation_prompt' must be true or false");
    if (key == "current_date") {
      if (!value.is_string()) fail("'current_date' must be a string YYYY-MM-DD");
      options.now = parse_date(value.get<std::string>());
    }
    set(key, jinja::Value::from_json(value));
  }
  return template_.render(vars, options);
}

}  // namespace mote
