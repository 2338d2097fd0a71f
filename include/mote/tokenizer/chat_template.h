// The model's own chat template, rendered as Hugging Face's
// apply_chat_template renders it. The template comes from --chat-template
// FILE, else `chat_template.jinja` in the model (or tokenizer) directory,
// else `chat_template` in tokenizer_config.json. Its variables: `messages`,
// `add_generation_prompt`, `bos_token`/`eos_token` as tokenizer_config.json
// names them, `tools` and `documents` (None), and every extra key of the
// request. A request's `current_date` ("YYYY-MM-DD") also pins the date
// strftime_now() reports, so a rendering can be reproduced.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "mote/jinja/template.h"

namespace mote {

class ChatTemplate {
 public:
  // The template of a model or tokenizer directory, or of `file` when given.
  // Nullopt when neither the directory nor the file provides one.
  static std::optional<ChatTemplate> load(const std::filesystem::path& dir,
                                          const std::optional<std::filesystem::path>& file);
  // A template from text; `name` prefixes its errors.
  static ChatTemplate from_source(std::string_view source, const std::string& name,
                                  std::optional<std::string> bos_token, std::optional<std::string> eos_token);

  // Renders a request: {"messages": [...], "add_generation_prompt": bool
  // (default true), other keys...}. A template's raise_exception() is a
  // jinja::RaisedError; anything else wrong a jinja::TemplateError or Error.
  std::string render(const nlohmann::ordered_json& request) const;
  // Whether the template reads the variable `name`.
  bool reads(const std::string& name) const { return template_.reads(name); }
  const std::string& name() const { return template_.name(); }

 private:
  explicit ChatTemplate(jinja::Template t) : template_(std::move(t)) {}
  jinja::Template template_;
  std::optional<std::string> bos_token_, eos_token_;
};

}  // namespace mote
