// The tree-walking renderer and the built-in filters, tests, methods and
// globals it calls.
#pragma once

#include <string>
#include <vector>

#include "mote/jinja/template.h"
#include "syntax.h"

namespace mote::jinja {

class Renderer {
 public:
  Renderer(const std::string& name, const RenderOptions& options) : name_(name), options_(options) {}

  std::string run(const std::vector<detail::Node>& body, const Dict& variables);

  // For built-ins: a string of `bytes` is about to be built.
  void check_size(size_t bytes) const;
  Value call(const Value& function, CallArgs& args);
  const RenderOptions& options() const { return options_; }

 private:
  struct Frame {
    Dict vars;
    Frame* parent = nullptr;
    Value* lookup(const std::string& name);
    void set(const std::string& name, Value v);
  };
  enum class Flow { Normal, Break, Continue };

  Flow exec(const std::vector<detail::Node>& body, Frame& frame, std::string& out);
  Flow exec_for(const detail::Node& n, Frame& frame, std::string& out);
  void assign(const detail::Node& n, Frame& frame, Value v);
  Value eval(const detail::Expr& e, Frame& frame);
  Value binary(const std::string& op, const Value& a, const Value& b);
  bool contains(const Value& container, const Value& item);
  CallArgs arguments(const detail::Expr& e, Frame& frame, size_t first);
  // A macro's body, callable; it runs in a frame of its own over the template's top level.
  Value make_macro(const detail::Node& n);
  void emit(std::string& out, std::string_view text);
  void step();

  const std::string& name_;
  RenderOptions options_;
  Frame* root_ = nullptr;
  size_t produced_ = 0;
  uint64_t steps_ = 0;
  int call_depth_ = 0;

 public:
  int line = 0;  // of the node or expression being rendered, for errors
};

namespace builtins {

Dict globals();
bool has_filter(const std::string& name);
bool has_test(const std::string& name);
// Names of Jinja2 filters and tests the engine does not implement, refused
// at parse time with a clearer message than "no filter named".
bool known_unsupported_filter(const std::string& name);
Value filter(Renderer& r, const std::string& name, const Value& input, CallArgs& args);
bool test(Renderer& r, const std::string& name, const Value& input, CallArgs& args);
// obj.name as Jinja2 resolves it: Python attributes (methods) first, then items.
Value attribute(const Value& obj, const std::string& name);
// obj[key]: items first, then attributes.
Value item(const Value& obj, const Value& key);
// Python's slice of a list or string.
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
// The values a for loop visits.
List iterate(const Value& v);
size_t length(const Value& v);

// The named argument, or positional `index`, or `fallback`.
const Value& arg(const CallArgs& args, size_t index, const char* name, const Value& fallback);
void check_arity(const CallArgs& args, const std::string& what, size_t max_positional,
                 std::initializer_list<const char*> keywords);

}  // namespace builtins
}  // namespace mote::jinja
