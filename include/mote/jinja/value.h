// Values of the template language, with Python's semantics where a chat
// template can see them: str() and repr(), truthiness, ==, ordering, and
// json.dumps as transformers' `tojson` calls it. Strings are UTF-8; lists and
// dicts are shared and never modified once built, except a namespace's.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mote::jinja {

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, as Python's dict

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

class Renderer;
struct Function {
  std::string name;
  std::function<Value(Renderer&, CallArgs&)> call;
};

struct Value {
  enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, Array, Map, Namespace, Function };
  Kind kind = Kind::Undefined;
  bool boolean = false;
  bool tuple = false;  // an Array that Python would hold as a tuple (repr and == differ)
  int64_t integer = 0;
  double real = 0;
  std::string text;                    // String; for Undefined, why it is undefined
  std::shared_ptr<List> list;          // List
  std::shared_ptr<Dict> dict;          // Dict and Namespace
  std::shared_ptr<Function> function;  // Function

  static Value undefined(std::string why) {
    Value v;
    v.text = std::move(why);
    return v;
  }
  static Value none() {
    Value v;
    v.kind = Kind::None;
    return v;
  }
  static Value from(bool b) {
    Value v;
    v.kind = Kind::Bool;
    v.boolean = b;
    return v;
  }
  static Value from(int64_t i) {
    Value v;
    v.kind = Kind::Int;
    v.integer = i;
    return v;
  }
  static Value from(int i) { return from(static_cast<int64_t>(i)); }
  static Value from(double d) {
    Value v;
    v.kind = Kind::Float;
    v.real = d;
    return v;
  }
  static Value from(std::string s) {
    Value v;
    v.kind = Kind::String;
    v.text = std::move(s);
    return v;
  }
  static Value from(const char* s) { return from(std::string(s)); }
  static Value from(List l) {
    Value v;
    v.kind = Kind::Array;
    v.list = std::make_shared<List>(std::move(l));
    return v;
  }
  static Value from(Dict d) {
    Value v;
    v.kind = Kind::Map;
    v.dict = std::make_shared<Dict>(std::move(d));
    return v;
  }
  static Value make_tuple(List l) {
    Value v = from(std::move(l));
    v.tuple = true;
    return v;
  }
  static Value make_namespace(Dict d) {
    Value v = from(std::move(d));
    v.kind = Kind::Namespace;
    return v;
  }
  static Value make_function(std::string name, std::function<Value(Renderer&, CallArgs&)> call) {
    Value v;
    v.kind = Kind::Function;
    v.function = std::make_shared<Function>(Function{std::move(name), std::move(call)});
    return v;
  }
  static Value from_json(const nlohmann::ordered_json& j);

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  // A dict key's value, or null.
  const Value* find(std::string_view key) const;
};

// Python's type name, for error messages ("str", "NoneType", ...).
std::string type_name(const Value& v);
bool truthy(const Value& v);
std::string to_str(const Value& v);  // str(v); Undefined prints as ''
std::string repr(const Value& v);    // repr(v)
bool equals(const Value& a, const Value& b);
// <0, 0, >0 as Python orders numbers, strings and lists; anything else is an
// Error ("'<' not supported between instances of 'str' and 'int'").
int compare(const Value& a, const Value& b, std::string_view op);
// json.dumps(v, ensure_ascii=False, indent=indent, sort_keys=sort_keys)
// with Python's default separators.
std::string to_json(const Value& v, int indent, bool sort_keys);
// Python's repr of a float ("1.0", "0.1", "1e+16", "inf").
std::string float_repr(double d);

}  // namespace mote::jinja
