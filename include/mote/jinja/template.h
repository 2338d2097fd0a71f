// A Jinja template engine for chat templates: the subset of Jinja2 that the
// published templates of the supported model families use, rendered exactly
// as transformers' apply_chat_template renders them (sandboxed Jinja2 with
// trim_blocks, lstrip_blocks, loop controls, `raise_exception`,
// `strftime_now` and a `tojson` without HTML escaping).
//
// Supported: text, {{ }}, {# #}, whitespace control; if/elif/else, for (with
// `if` filter, else, unpacking, loop.*), set (also ns.attr and block set),
// macro, break/continue, generation; literals, arithmetic, comparisons,
// and/or/not, `in`, conditional expressions, attribute/item/slice access,
// filters, tests, Python string/dict methods, namespace(), range(), dict().
// Anything else is an error naming the template line at parse time (unknown
// statements, filters and tests) or at render time (an unsupported method).
// Rendering is bounded in output size, steps and macro recursion.
#pragma once

#include <ctime>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "mote/jinja/value.h"
#include "mote/util/error.h"

namespace mote::jinja {

// An error in a template or while rendering it: "NAME:LINE: what".
class TemplateError : public Error {
 public:
  using Error::Error;
};

// The template called raise_exception(message): the conversation is one the
// template refuses. what() is located; message() is the template's own text.
class RaisedError : public TemplateError {
 public:
  RaisedError(const std::string& located, std::string message) : TemplateError(located), message_(std::move(message)) {}
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

struct RenderOptions {
  // The local time strftime_now() reports; the clock when absent.
  std::optional<std::tm> now;
  size_t max_output_bytes = size_t{64} << 20;
  uint64_t max_steps = 5'000'000;
  int max_call_depth = 64;
};

class Template {
 public:
  // Parses `source`; `name` prefixes every error ("chat_template.jinja:12: ...").
  static Template parse(std::string_view source, std::string name);

  std::string render(const Dict& variables, const RenderOptions& options = {}) const;
  const std::string& name() const { return name_; }
  // Whether the template reads a variable of this name anywhere.
  bool reads(const std::string& variable) const { return names_.count(variable) > 0; }

 private:
  struct Body;
  std::shared_ptr<const Body> body_;
  std::string name_;
  std::set<std::string> names_;
};

}  // namespace mote::jinja
