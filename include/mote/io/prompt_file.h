// Prompt files: JSONL with one request per line, or plain text with one
// prompt per line.
//
//   {"id": "q1", "class": "sensitive", "prompt": "raw text"}
//   {"id": "q2", "class": "neutral", "messages": [{"role": "user", "content": "..."}]}
//
// Optional keys: "add_special_tokens" (raw prompts only; default true, the
// Hugging Face convention) and "mask" (name of a mask set). A conversation
// is rendered with the model's chat template; it may also carry
// "add_generation_prompt" (default true), "chat_template" (a template file,
// relative to the prompt file) and any variable its template reads
// ("enable_thinking", "reasoning_effort", "current_date", ...). Plain-text files
// give ids "1", "2", ... (line numbers) and class "default"; blank lines are
// skipped. A file is read as JSONL when its name ends in .jsonl or its first
// non-blank character is '{'.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mote {

struct PromptSpec {
  std::string id;
  std::string cls = "default";
  std::optional<std::string> prompt;  // raw text, or
  // a conversation: the chat template's variables, "messages" first
  std::optional<nlohmann::ordered_json> chat;
  std::string chat_template;  // the line's own template file, resolved; empty: the job's
  bool add_special_tokens = true;
  std::string mask;  // mask-set name, empty = unsteered
  std::string file;  // the prompt file, and
  int line = 0;      // 1-based line in it, for errors
  // Why this request cannot run (invalid UTF-8, empty prompt); the job
  // records it as failed and runs the others.
  std::string error;
};

// Where a prompt is in its file, to read it again with read_prompt_at().
struct PromptPlace {
  uint64_t offset = 0;  // of the line
  uint32_t length = 0;  // of the line, without its line ending
  int line = 0;
  bool jsonl = false;
};

// Reads and validates the whole file as read_prompt_file() does, handing
// each prompt and its place to `each`, in order, instead of keeping them
// (a job keeps a few bytes per prompt, not the prompts).
void for_each_prompt(const std::filesystem::path& path, const std::function<void(PromptSpec&&, const PromptPlace&)>& each);

// The prompt at `place` again, as for_each_prompt() gave it.
PromptSpec read_prompt_at(const std::filesystem::path& path, const PromptPlace& place);

// Reads and validates the whole file. What is wrong with one prompt's text
// (invalid UTF-8, an empty prompt) marks that request failed; what makes the
// file itself unreadable (bad JSON, unknown keys, duplicate ids, no prompts)
// is an Error naming the file and line.
std::vector<PromptSpec> read_prompt_file(const std::filesystem::path& path);

}  // namespace mote
