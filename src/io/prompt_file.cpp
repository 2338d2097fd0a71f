#include "mote/io/prompt_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <unordered_map>

#include <nlohmann/json.hpp>

#include "mote/io/json_file.h"
#include "mote/util/error.h"
#include "mote/util/hash.h"
#include "mote/util/stop_signal.h"
#include "mote/util/utf8.h"

namespace mote {
namespace {

using json = nlohmann::ordered_json;

std::string json_string(const json& obj, const char* key, const std::string& where) {
  const auto& v = obj[key];
  if (!v.is_string()) fail("{}: '{}' must be a string", where, key);
  return v.get<std::string>();
}

PromptSpec parse_json_line(std::string_view line, const std::string& where, const std::filesystem::path& dir) {
  const json j = parse_ordered_json(line, where);
  if (!j.is_object()) fail("{}: expected a JSON object", where);
  PromptSpec spec;
  for (const auto& [key, value] : j.items()) {
    if (key == "id") {
      if (value.is_string()) {
        spec.id = value.get<std::string>();
      } else if (value.is_number_integer()) {
        spec.id = std::to_string(value.get<int64_t>());
      } else {
        fail("{}: 'id' must be a string or an integer", where);
      }
      if (spec.id.empty()) fail("{}: 'id' is empty", where);
      if (spec.id.find('\0') != std::string::npos) fail("{}: 'id' contains a NUL character", where);
    } else if (key == "class") {
      spec.cls = json_string(j, "class", where);
      if (spec.cls.empty()) fail("{}: 'class' is empty", where);
      if (spec.cls.find('\0') != std::string::npos) fail("{}: 'class' contains a NUL character", where);
    } else if (key == "prompt") {
      spec.prompt = json_string(j, "prompt", where);
    } else if (key == "messages") {
      if (!value.is_array() || value.empty()) fail("{}: 'messages' must be a non-empty array", where);
      for (const auto& m : value) {
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
          fail("{}: each message needs a string 'role'", where);
      }
      if (!spec.chat) spec.chat = json::object();
      (*spec.chat)["messages"] = value;
    } else if (key == "add_special_tokens") {
      if (!value.is_boolean()) fail("{}: 'add_special_tokens' must be true or false", where);
      spec.add_special_tokens = value.get<bool>();
    } else if (key == "mask") {
      spec.mask = json_string(j, "mask", where);
    } else if (key == "chat_template") {
      const std::string file = json_string(j, "chat_template", where);
      if (file.empty()) fail("{}: 'chat_template' is empty", where);
      spec.chat_template = (dir / file).lexically_normal().string();
    } else {
      // Template variables: checked against what the template reads once
      // it is known (a misspelt key must not pass silently).
      if (!spec.chat) spec.chat = json::object();
      (*spec.chat)[key] = value;
    }
  }
  if (spec.chat && !spec.chat->contains("messages")) {
    if (spec.prompt) {
      fail(
          "{}: unknown key '{}' (known: id, class, prompt, messages, add_special_tokens, mask; a conversation may also "
          "carry its chat template's variables)",
          where, spec.chat->begin().key());
    }
    fail("{}: give exactly one of 'prompt' and 'messages'", where);
  }
  if (spec.chat && spec.chat->contains("add_generation_prompt") &&
      !(*spec.chat)["add_generation_prompt"].is_boolean()) {
    fail("{}: 'add_generation_prompt' must be true or false", where);
  }
  if (spec.chat) {
    // "messages" first, as the template's variables are listed.
    json ordered = json::object();
    ordered["messages"] = (*spec.chat)["messages"];
    for (const auto& [k, v] : spec.chat->items()) {
      if (k != "messages") ordered[k] = v;
    }
    spec.chat = std::move(ordered);
  }
  if (!spec.chat_template.empty() && !spec.chat)
    fail("{}: 'chat_template' applies to conversations ('messages') only", where);
  if (spec.prompt.has_value() == spec.chat.has_value()) fail("{}: give exactly one of 'prompt' and 'messages'", where);
  if (spec.prompt && spec.prompt->empty()) spec.error = "the prompt is empty";
  if (spec.chat && j.contains("add_special_tokens")) {
    fail("{}: 'add_special_tokens' applies to raw prompts only; the chat template writes its own BOS", where);
  }
  return spec;
}

bool looks_like_jsonl(const std::filesystem::path& path, std::string_view text) {
  if (path.extension() == ".jsonl") return true;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    return c == '{';
  }
  return false;
}

// One line as a prompt; `line` without its line ending.
PromptSpec parse_prompt_line(std::string_view line, const std::filesystem::path& path, int line_no, bool jsonl) {
  const std::string where = fmt::format("{}:{}", path.string(), line_no);
  // A line that is not UTF-8 becomes a failed request, not a failed job:
  // the rest of the line (its id above all) is read from a repaired copy.
  std::string error, repaired;
  if (const auto bad = find_invalid_utf8(line)) {
    error = fmt::format("invalid UTF-8 at byte {} of line {}", *bad + 1, line_no);
    repaired = repair_utf8(line);
    line = repaired;
  }
  PromptSpec spec;
  if (jsonl) {
    try {
      spec = parse_json_line(line, where, path.parent_path());
    } catch (const nlohmann::json::exception& e) {
      fail("{}: unexpected structure: {}", where, e.what());
    }
  } else {
    spec.prompt = std::string(line);
  }
  // The default id is the line number in both forms, as messages cite it.
  if (spec.id.empty()) spec.id = std::to_string(line_no);
  spec.file = path.string();
  spec.line = line_no;
  if (!error.empty()) spec.error = std::move(error);
  return spec;
}

}  // namespace

void for_each_prompt(const std::filesystem::path& path, const std::function<void(PromptSpec&&, const PromptPlace&)>& each) {
  const std::string text = read_input_file(path, "prompt file", 4ull << 30);
  check_line_endings(text, path, "prompt file");
  const bool jsonl = looks_like_jsonl(path, text);
  // Places count the file's bytes, with the byte-order mark read_input_file() drops.
  uint64_t bom = 0;
  {
    char head[3] = {};
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0 && ::pread(fd, head, 3, 0) == 3 && std::string_view(head, 3) == "\xEF\xBB\xBF") bom = 3;
    if (fd >= 0) ::close(fd);
  }
  // Ids by a 64-bit hash, with the line of each: a match is confirmed on
  // the text, so the set costs 16 bytes per prompt, not a copy of every id.
  std::unordered_map<uint64_t, int> line_of_id;
  std::vector<std::pair<size_t, size_t>> line_spans{{0, 0}};  // [line] -> (begin, end) of lines with an id
  size_t begin = 0, prompts = 0;
  int line_no = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + begin, end - begin);
    const size_t line_begin = begin;
    begin = end + 1;
    ++line_no;
    stop_point("reading prompts");
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    line_spans.emplace_back(line_begin, line_begin + line.size());
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    PromptSpec spec = parse_prompt_line(line, path, line_no, jsonl);
    const auto [it, inserted] = line_of_id.emplace(fnv1a(kFnv1aBasis, spec.id), line_no);
    if (!inserted) {
      const auto [b, e] = line_spans[static_cast<size_t>(it->second)];
      if (parse_prompt_line(std::string_view(text.data() + b, e - b), path, it->second, jsonl).id == spec.id) {
        fail("{}:{}: duplicate id '{}' (first used on line {})", path.string(), line_no, spec.id, it->second);
      }
    }
    ++prompts;
    stop_point("reading prompts");  // before `each` moves on to other phases
    each(std::move(spec), PromptPlace{bom + line_begin, static_cast<uint32_t>(line.size()), line_no, jsonl});
  }
  if (prompts == 0) fail("{}: no prompts in the file", path.string());
}

PromptSpec read_prompt_at(const std::filesystem::path& path, const PromptPlace& place) {
  std::string line(place.length, '\0');
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  const ssize_t got = fd < 0 ? -1 : ::pread(fd, line.data(), line.size(), static_cast<off_t>(place.offset));
  if (fd >= 0) ::close(fd);
  if (got != static_cast<ssize_t>(line.size())) fail("{}:{}: cannot read the prompt again (was the file changed or removed?)", path.string(), place.line);
  return parse_prompt_line(line, path, place.line, place.jsonl);
}

std::vector<PromptSpec> read_prompt_file(const std::filesystem::path& path) {
  std::vector<PromptSpec> specs;
  for_each_prompt(path, [&](PromptSpec&& spec, const PromptPlace&) { specs.push_back(std::move(spec)); });
  return specs;
}

}  // namespace mote
