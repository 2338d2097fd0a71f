// Rendering: statements write to a string, expressions evaluate to Values
// with Python's semantics. Scopes follow Jinja2: a for loop's body and a
// macro call get their own frame (assignments in them do not leak), `if`
// does not; namespaces are the way to carry values out of a loop.
#include <cmath>

#include "renderer.h"

namespace mote::jinja {

using detail::Expr;
using detail::ExprKind;
using detail::Node;
using detail::NodeKind;

struct Template::Body {
  std::vector<Node> nodes;
};

namespace {

// raise_exception() unwinds to Renderer::run, which adds the location.
struct Raised {
  std::string message;
};

void collect(const Expr* e, std::set<std::string>& names, const std::string& tname) {
  if (!e) return;
  if (e->kind == ExprKind::Name) names.insert(e->name);
  if (e->kind == ExprKind::Filter && !builtins::has_filter(e->name)) {
    if (builtins::known_unsupported_filter(e->name)) {
      detail::syntax_error(tname, e->line,
                           fmt::format("the filter '{}' is outside the template subset mote supports", e->name));
    }
    detail::syntax_error(tname, e->line, fmt::format("no filter named '{}'", e->name));
  }
  if (e->kind == ExprKind::Test && !builtins::has_test(e->name)) {
    detail::syntax_error(tname, e->line, fmt::format("no test named '{}'", e->name));
  }
  for (const auto& a : e->args) collect(a.get(), names, tname);
}

void collect(const std::vector<Node>& body, std::set<std::string>& names, const std::string& tname) {
  for (const Node& n : body) {
    collect(n.expr.get(), names, tname);
    collect(n.condition.get(), names, tname);
    for (const auto& c : n.conditions) collect(c.get(), names, tname);
    for (const auto& d : n.defaults) collect(d.get(), names, tname);
    for (const auto& b : n.bodies) collect(b, names, tname);
    collect(n.else_body, names, tname);
  }
}

int64_t as_int(const Value& v) { return v.kind == Value::Kind::Bool ? v.boolean : v.integer; }
double as_real(const Value& v) { return v.kind == Value::Kind::Float ? v.real : static_cast<double>(as_int(v)); }

[[noreturn]] void undefined_error(const Value& v) { fail("{}", v.text.empty() ? "a value is undefined" : v.text); }

}  // namespace

Template Template::parse(std::string_view source, std::string name) {
  Template t;
  t.name_ = std::move(name);
  auto body = std::make_shared<Body>();
  body->nodes = detail::parse(detail::lex(source, t.name_), t.name_);
  collect(body->nodes, t.names_, t.name_);
  t.body_ = std::move(body);
  return t;
}

std::string Template::render(const Dict& variables, const RenderOptions& options) const {
  Renderer r(name_, options);
  return r.run(body_->nodes, variables);
}

Value* Renderer::Frame::lookup(const std::string& name) {
  for (Frame* f = this; f; f = f->parent) {
    for (auto& [k, v] : f->vars) {
      if (k == name) return &v;
    }
  }
  return nullptr;
}

void Renderer::Frame::set(const std::string& name, Value v) {
  for (auto& [k, old] : vars) {
    if (k == name) {
      old = std::move(v);
      return;
    }
  }
  vars.emplace_back(name, std::move(v));
}

std::string Renderer::run(const std::vector<Node>& body, const Dict& variables) {
  Frame globals{builtins::globals(), nullptr};
  Frame top{variables, &globals};
  root_ = &top;
  std::string out;
  try {
    exec(body, top, out);
  } catch (const Raised& r) {
    throw RaisedError(fmt::format("{}:{}: the template raised an exception: {}", name_, line, r.message), r.message);
  } catch (const TemplateError&) {
    throw;
  } catch (const Error& e) {
    throw TemplateError(fmt::format("{}:{}: {}", name_, line, e.what()));
  }
  return out;
}

void Renderer::check_size(size_t bytes) const {
  if (bytes > options_.max_output_bytes) {
    fail("the template builds a string of more than {} bytes", options_.max_output_bytes);
  }
}

void Renderer::emit(std::string& out, std::string_view text) {
  produced_ += text.size();
  if (produced_ > options_.max_output_bytes) fail("the template renders more than {} bytes", options_.max_output_bytes);
  out += text;
}

void Renderer::step() {
  if (++steps_ > options_.max_steps)
    fail("the template runs for more than {} steps (a loop without end?)", options_.max_steps);
}

Renderer::Flow Renderer::exec(const std::vector<Node>& body, Frame& frame, std::string& out) {
  for (const Node& n : body) {
    step();
    line = n.line;
    switch (n.kind) {
      case NodeKind::Text:
        emit(out, n.text);
        break;
      case NodeKind::Output:
        emit(out, to_str(eval(*n.expr, frame)));
        break;
      case NodeKind::If: {
        bool done = false;
        for (size_t i = 0; i < n.conditions.size() && !done; ++i) {
          if (truthy(eval(*n.conditions[i], frame))) {
            done = true;
            if (const Flow f = exec(n.bodies[i], frame, out); f != Flow::Normal) return f;
          }
        }
        if (!done) {
          if (const Flow f = exec(n.else_body, frame, out); f != Flow::Normal) return f;
        }
        break;
      }
      case NodeKind::For:
        exec_for(n, frame, out);
        break;
      case NodeKind::Set:
        assign(n, frame, eval(*n.expr, frame));
        break;
      case NodeKind::SetBlock: {
        std::string captured;
        exec(n.bodies[0], frame, captured);
        frame.set(n.targets[0], Value::from(std::move(captured)));
        break;
      }
      case NodeKind::Macro:
        frame.set(n.text, make_macro(n));
        break;
      case NodeKind::Break:
        return Flow::Break;
      case NodeKind::Continue:
        return Flow::Continue;
      case NodeKind::Generation:
        if (const Flow f = exec(n.bodies[0], frame, out); f != Flow::Normal) return f;
        break;
    }
  }
  return Flow::Normal;
}

void Renderer::assign(const Node& n, Frame& frame, Value v) {
  if (!n.attribute.empty()) {
    Value* ns = frame.lookup(n.targets[0]);
    if (!ns || ns->kind != Value::Kind::Namespace) {
      fail("cannot assign attribute '{}' of '{}': only namespace() objects take attributes", n.attribute, n.targets[0]);
    }
    for (auto& [k, old] : *ns->dict) {
      if (k == n.attribute) {
        old = std::move(v);
        return;
      }
    }
    ns->dict->emplace_back(n.attribute, std::move(v));
    return;
  }
  if (n.targets.size() == 1) {
    frame.set(n.targets[0], std::move(v));
    return;
  }
  const List items = builtins::iterate(v);
  if (items.size() != n.targets.size()) {
    fail("cannot unpack {} values into {} names", items.size(), n.targets.size());
  }
  for (size_t i = 0; i < items.size(); ++i) frame.set(n.targets[i], items[i]);
}

Renderer::Flow Renderer::exec_for(const Node& n, Frame& frame, std::string& out) {
  const Value iterable = eval(*n.expr, frame);
  List items = builtins::iterate(iterable);
  const auto bind = [&](Frame& f, const Value& item) {
    if (n.targets.size() == 1) {
      f.set(n.targets[0], item);
      return;
    }
    const List parts = builtins::iterate(item);
    if (parts.size() != n.targets.size())
      fail("cannot unpack {} values into {} loop variables", parts.size(), n.targets.size());
    for (size_t i = 0; i < parts.size(); ++i) f.set(n.targets[i], parts[i]);
  };
  if (n.condition) {
    List kept;
    for (const Value& item : items) {
      step();
      Frame f{{}, &frame};
      bind(f, item);
      if (truthy(eval(*n.condition, f))) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    exec(n.else_body, frame, out);
    return Flow::Normal;
  }
  const auto count = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < count; ++i) {
    step();
    Frame f{{}, &frame};
    bind(f, items[static_cast<size_t>(i)]);
    Dict loop{
        {"index", Value::from(i + 1)},
        {"index0", Value::from(i)},
        {"revindex", Value::from(count - i)},
        {"revindex0", Value::from(count - i - 1)},
        {"first", Value::from(i == 0)},
        {"last", Value::from(i == count - 1)},
        {"length", Value::from(count)},
        {"depth", Value::from(1)},
        {"depth0", Value::from(0)},
        {"previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value::undefined("there is no previous item")},
        {"nextitem", i + 1 < count ? items[static_cast<size_t>(i + 1)] : Value::undefined("there is no next item")}};
    loop.emplace_back("cycle", Value::make_function("loop.cycle", [i](Renderer&, CallArgs& a) {
                        if (a.positional.empty()) fail("loop.cycle() needs at least one value");
                        return a.positional[static_cast<size_t>(i) % a.positional.size()];
                      }));
    f.set("loop", Value::from(std::move(loop)));
    if (exec(n.bodies[0], f, out) == Flow::Break) break;
  }
  return Flow::Normal;
}

Value Renderer::make_macro(const Node& n) {
  const Node* node = &n;
  return Value::make_function(n.text, [node](Renderer& r, CallArgs& a) {
    if (r.call_depth_ >= r.options_.max_call_depth) {
      fail("macro calls nest more than {} deep (recursion without end?)", r.options_.max_call_depth);
    }
    if (a.positional.size() > node->targets.size()) {
      fail("macro '{}' takes {} arguments, {} given", node->text, node->targets.size(), a.positional.size());
    }
    Frame f{{}, r.root_};
    for (size_t i = 0; i < node->targets.size(); ++i) {
      const Value* given = i < a.positional.size() ? &a.positional[i] : nullptr;
      for (const auto& [k, v] : a.keyword) {
        if (k == node->targets[i]) {
          if (given) fail("macro '{}' got two values for '{}'", node->text, k);
          given = &v;
        }
      }
      if (given)
        f.set(node->targets[i], *given);
      else if (node->defaults[i])
        f.set(node->targets[i], r.eval(*node->defaults[i], f));
      else
        f.set(node->targets[i], Value::undefined(fmt::format("'{}' is undefined", node->targets[i])));
    }
    for (const auto& [k, v] : a.keyword) {
      if (std::find(node->targets.begin(), node->targets.end(), k) == node->targets.end()) {
        fail("macro '{}' has no parameter '{}'", node->text, k);
      }
    }
    ++r.call_depth_;
    std::string out;
    const int saved_line = r.line;
    r.exec(node->bodies[0], f, out);
    r.line = saved_line;
    --r.call_depth_;
    return Value::from(std::move(out));
  });
}

Value Renderer::call(const Value& function, CallArgs& args) {
  if (function.kind == Value::Kind::Undefined) undefined_error(function);
  if (function.kind != Value::Kind::Function) fail("'{}' object is not callable", type_name(function));
  return function.function->call(*this, args);
}

CallArgs Renderer::arguments(const Expr& e, Frame& frame, size_t first) {
  CallArgs a;
  const size_t keyword_start = e.args.size() - e.keywords.size();
  for (size_t i = first; i < keyword_start; ++i) a.positional.push_back(eval(*e.args[i], frame));
  for (size_t i = 0; i < e.keywords.size(); ++i)
    a.keyword.emplace_back(e.keywords[i], eval(*e.args[keyword_start + i], frame));
  return a;
}

bool Renderer::contains(const Value& container, const Value& item) {
  switch (container.kind) {
    case Value::Kind::String:
      if (item.kind != Value::Kind::String)
        fail("'in <string>' requires a string as left operand, not {}", type_name(item));
      return container.text.find(item.text) != std::string::npos;
    case Value::Kind::Array:
      for (const Value& v : *container.list) {
        if (equals(v, item)) return true;
      }
      return false;
    case Value::Kind::Map:
      return item.kind == Value::Kind::String && container.find(item.text) != nullptr;
    case Value::Kind::Undefined:
      return false;
    default:
      fail("argument of type '{}' is not iterable", type_name(container));
  }
}

Value Renderer::binary(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string s = to_str(a) + to_str(b);
    check_size(s.size());
    return Value::from(std::move(s));
  }
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  const auto unsupported = [&]() -> Value {
    fail("unsupported operand types for {}: '{}' and '{}'", op, type_name(a), type_name(b));
  };
  if (a.is_number() && b.is_number()) {
    const bool real = a.kind == Value::Kind::Float || b.kind == Value::Kind::Float;
    const int64_t x = as_int(a), y = as_int(b);
    int64_t r = 0;
    if (op == "+" || op == "-" || op == "*") {
      if (real) {
        const double p = as_real(a), q = as_real(b);
        return Value::from(op == "+" ? p + q : op == "-" ? p - q : p * q);
      }
      const bool overflow = op == "+"   ? __builtin_add_overflow(x, y, &r)
                            : op == "-" ? __builtin_sub_overflow(x, y, &r)
                                        : __builtin_mul_overflow(x, y, &r);
      if (overflow) fail("integer overflow in {} {} {}", x, op, y);
      return Value::from(r);
    }
    if (op == "/") {
      if (as_real(b) == 0) fail("division by zero");
      return Value::from(as_real(a) / as_real(b));
    }
    if (op == "//" || op == "%") {
      if (real) {
        const double p = as_real(a), q = as_real(b);
        if (q == 0) fail("float division by zero");
        double m = std::fmod(p, q);
        if (m != 0 && ((m < 0) != (q < 0))) m += q;
        return Value::from(op == "%" ? m : std::floor((p - m) / q + 0.5));
      }
      if (y == 0) fail("integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) fail("integer overflow in {} {} {}", x, op, y);
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        --q;
        m += y;
      }
      return Value::from(op == "%" ? m : q);
    }
    if (op == "**") {
      if (real || y < 0) return Value::from(std::pow(as_real(a), as_real(b)));
      int64_t result = 1;
      for (int64_t i = 0; i < y; ++i) {
        if (__builtin_mul_overflow(result, x, &result)) fail("integer overflow in {} ** {}", x, y);
        if (result == 0 || result == 1) break;
      }
      return Value::from(result);
    }
    return unsupported();
  }
  if (op == "+") {
    if (a.kind == Value::Kind::String && b.kind == Value::Kind::String) {
      check_size(a.text.size() + b.text.size());
      return Value::from(a.text + b.text);
    }
    if (a.kind == Value::Kind::Array && b.kind == Value::Kind::Array) {
      List l = *a.list;
      l.insert(l.end(), b.list->begin(), b.list->end());
      return Value::from(std::move(l));
    }
    if (a.kind == Value::Kind::String) fail("can only concatenate str (not \"{}\") to str", type_name(b));
    return unsupported();
  }
  if (op == "*") {
    const Value* seq = a.kind == Value::Kind::Int ? &b : &a;
    const Value* times = a.kind == Value::Kind::Int ? &a : &b;
    if (times->kind == Value::Kind::Int && (seq->kind == Value::Kind::String || seq->kind == Value::Kind::Array)) {
      const int64_t n = std::max<int64_t>(0, times->integer);
      const size_t unit = seq->kind == Value::Kind::String ? seq->text.size() : seq->list->size() * 64;
      if (unit > 0 && static_cast<uint64_t>(n) > options_.max_output_bytes / unit)
        check_size(options_.max_output_bytes + 1);
      if (seq->kind == Value::Kind::String) {
        std::string s;
        for (int64_t i = 0; i < n; ++i) s += seq->text;
        return Value::from(std::move(s));
      }
      List l;
      for (int64_t i = 0; i < n; ++i) l.insert(l.end(), seq->list->begin(), seq->list->end());
      return Value::from(std::move(l));
    }
    return unsupported();
  }
  if (op == "%" && a.kind == Value::Kind::String)
    fail("printf-style string formatting ('...' % x) is outside the template subset mote supports");
  return unsupported();
}

Value Renderer::eval(const Expr& e, Frame& frame) {
  step();
  line = e.line;
  switch (e.kind) {
    case ExprKind::Literal:
      return e.value;
    case ExprKind::Name: {
      if (Value* v = frame.lookup(e.name)) return *v;
      return Value::undefined(fmt::format("'{}' is undefined", e.name));
    }
    case ExprKind::List:
    case ExprKind::Tuple: {
      List l;
      for (const auto& a : e.args) l.push_back(eval(*a, frame));
      return e.kind == ExprKind::Tuple ? Value::make_tuple(std::move(l)) : Value::from(std::move(l));
    }
    case ExprKind::Dict: {
      Dict d;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        const Value k = eval(*e.args[i], frame);
        if (k.kind != Value::Kind::String) fail("dict keys must be strings here, not {}", type_name(k));
        Value v = eval(*e.args[i + 1], frame);
        bool replaced = false;
        for (auto& [key, old] : d) {
          if (key == k.text) {
            old = v;
            replaced = true;
          }
        }
        if (!replaced) d.emplace_back(k.text, std::move(v));
      }
      return Value::from(std::move(d));
    }
    case ExprKind::Attr: {
      const Value obj = eval(*e.args[0], frame);
      if (obj.is_undefined()) undefined_error(obj);
      line = e.line;
      return builtins::attribute(obj, e.name);
    }
    case ExprKind::Item: {
      const Value obj = eval(*e.args[0], frame);
      const Value key = eval(*e.args[1], frame);
      if (obj.is_undefined()) undefined_error(obj);
      line = e.line;
      return builtins::item(obj, key);
    }
    case ExprKind::Slice: {
      const Value obj = eval(*e.args[0], frame);
      const auto bound = [&](size_t i) { return e.args[i] ? eval(*e.args[i], frame) : Value::none(); };
      const Value start = bound(1), stop = bound(2), stride = bound(3);
      if (obj.is_undefined()) undefined_error(obj);
      line = e.line;
      return builtins::slice(obj, start, stop, stride);
    }
    case ExprKind::Call: {
      const Value f = eval(*e.args[0], frame);
      CallArgs a = arguments(e, frame, 1);
      line = e.line;
      return call(f, a);
    }
    case ExprKind::Filter: {
      const Value input = eval(*e.args[0], frame);
      CallArgs a = arguments(e, frame, 1);
      line = e.line;
      return builtins::filter(*this, e.name, input, a);
    }
    case ExprKind::Test: {
      const Value input = eval(*e.args[0], frame);
      CallArgs a = arguments(e, frame, 1);
      line = e.line;
      return Value::from(builtins::test(*this, e.name, input, a) != e.negated);
    }
    case ExprKind::Negate:
    case ExprKind::Plus: {
      const Value v = eval(*e.args[0], frame);
      if (v.is_undefined()) undefined_error(v);
      if (!v.is_number())
        fail("bad operand type for unary {}: '{}'", e.kind == ExprKind::Negate ? '-' : '+', type_name(v));
      if (e.kind == ExprKind::Plus) return v.kind == Value::Kind::Bool ? Value::from(as_int(v)) : v;
      if (v.kind == Value::Kind::Float) return Value::from(-v.real);
      if (as_int(v) == INT64_MIN) fail("integer overflow");
      return Value::from(-as_int(v));
    }
    case ExprKind::Not:
      return Value::from(!truthy(eval(*e.args[0], frame)));
    case ExprKind::And: {
      Value a = eval(*e.args[0], frame);
      return truthy(a) ? eval(*e.args[1], frame) : a;
    }
    case ExprKind::Or: {
      Value a = eval(*e.args[0], frame);
      return truthy(a) ? a : eval(*e.args[1], frame);
    }
    case ExprKind::Binary: {
      const Value a = eval(*e.args[0], frame);
      const Value b = eval(*e.args[1], frame);
      line = e.line;
      return binary(e.name, a, b);
    }
    case ExprKind::Compare: {
      Value left = eval(*e.args[0], frame);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value right = eval(*e.args[i + 1], frame);
        const std::string& op = e.ops[i];
        bool ok = false;
        if (op == "==")
          ok = equals(left, right);
        else if (op == "!=")
          ok = !equals(left, right);
        else if (op == "in")
          ok = contains(right, left);
        else if (op == "not in")
          ok = !contains(right, left);
        else {
          if (left.is_undefined()) undefined_error(left);
          if (right.is_undefined()) undefined_error(right);
          const int c = compare(left, right, op);
          ok = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
        }
        if (!ok) return Value::from(false);
        left = std::move(right);
      }
      return Value::from(true);
    }
    case ExprKind::Conditional: {
      if (truthy(eval(*e.args[1], frame))) return eval(*e.args[0], frame);
      if (e.args[2]) return eval(*e.args[2], frame);
      return Value::undefined("the conditional expression has no else branch");
    }
  }
  return Value::none();
}

namespace builtins {

Value raise_exception(Renderer&, CallArgs& a) {
  check_arity(a, "raise_exception", 1, {});
  throw Raised{a.positional.empty() ? std::string() : to_str(a.positional[0])};
}

}  // namespace builtins
}  // namespace mote::jinja
