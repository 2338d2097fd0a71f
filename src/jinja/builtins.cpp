// Filters, tests, globals and methods, each with the semantics of Jinja2
// 3.1 and Python 3 that chat templates rely on. Names Jinja2 or Python know
// but this engine does not implement fail by name instead of misrendering.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <map>
#include <set>

#include "mote/jinja/pystr.h"
#include "mote/util/utf8.h"
#include "renderer.h"

namespace mote::jinja::builtins {

Value raise_exception(Renderer&, CallArgs& a);  // render.cpp: unwinds the render

const Value& arg(const CallArgs& args, size_t index, const char* name, const Value& fallback) {
  for (const auto& [k, v] : args.keyword) {
    if (k == name) return v;
  }
  return index < args.positional.size() ? args.positional[index] : fallback;
}

void check_arity(const CallArgs& args, const std::string& what, size_t max_positional,
                 std::initializer_list<const char*> keywords) {
  if (args.positional.size() > max_positional) {
    fail("{}() takes at most {} positional argument{} ({} given)", what, max_positional, max_positional == 1 ? "" : "s",
         args.positional.size());
  }
  for (const auto& kv : args.keyword) {
    if (std::none_of(keywords.begin(), keywords.end(), [&](const char* n) { return kv.first == n; })) {
      fail("{}() got an unexpected keyword argument '{}'", what, kv.first);
    }
  }
}

namespace {

const Value kNone = Value::none();
const Value kFalse = Value::from(false);

std::string need_string(const Value& v, const char* what) {
  if (v.kind != Value::Kind::String) fail("{} must be a string, not {}", what, type_name(v));
  return v.text;
}

int64_t need_int(const Value& v, const char* what) {
  if (v.kind == Value::Kind::Bool) return v.boolean;
  if (v.kind != Value::Kind::Int) fail("{} must be an integer, not {}", what, type_name(v));
  return v.integer;
}

std::optional<std::string> optional_string(const Value& v, const char* what) {
  if (v.kind == Value::Kind::None || v.kind == Value::Kind::Undefined) return std::nullopt;
  return need_string(v, what);
}

Value string_list(const std::vector<std::string>& parts) {
  List l;
  for (const auto& p : parts) l.push_back(Value::from(p));
  return Value::from(std::move(l));
}

// A dotted attribute path as Jinja2's filters take it ("function.name", "0").
Value attribute_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t begin = 0;
  while (true) {
    const size_t dot = path.find('.', begin);
    const std::string part = path.substr(begin, dot == std::string::npos ? std::string::npos : dot - begin);
    const bool digits =
        !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    cur = item(cur, digits ? Value::from(static_cast<int64_t>(std::stoll(part))) : Value::from(part));
    if (dot == std::string::npos) return cur;
    begin = dot + 1;
  }
}

Value lowered(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.kind == Value::Kind::String) return Value::from(pystr::lower(v.text));
  return v;
}

[[noreturn]] void outside_subset(const std::string& what) {
  fail("{} is outside the template subset mote supports", what);
}

Value bound(const std::string& name, std::function<Value(CallArgs&)> f) {
  return Value::make_function(name, [f = std::move(f)](Renderer&, CallArgs& a) { return f(a); });
}

bool has_prefix(const std::string& s, const Value& prefix, bool suffix, const char* what) {
  const auto one = [&](const Value& p) {
    const std::string t = need_string(p, what);
    return suffix ? s.ends_with(t) : s.starts_with(t);
  };
  if (prefix.kind == Value::Kind::Array) return std::any_of(prefix.list->begin(), prefix.list->end(), one);
  return one(prefix);
}

Value string_method(const std::string& s, const std::string& name) {
  static const std::set<std::string> kOther{"casefold",   "center",  "encode",       "expandtabs", "format",
                                            "format_map", "isascii", "isidentifier", "isnumeric",  "isprintable",
                                            "istitle",    "ljust",   "maketrans",    "rjust",      "swapcase",
                                            "translate",  "zfill"};
  const std::string what = "str." + name;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    return bound(what, [s, name, what](CallArgs& a) {
      check_arity(a, what, 1, {});
      const auto chars = optional_string(arg(a, 0, "", kNone), "the characters to strip");
      return Value::from(pystr::strip(s, chars, name != "rstrip", name != "lstrip"));
    });
  }
  if (name == "split" || name == "rsplit") {
    return bound(what, [s, name, what](CallArgs& a) {
      check_arity(a, what, 2, {"sep", "maxsplit"});
      const auto sep = optional_string(arg(a, 0, "sep", kNone), "the separator");
      const int64_t maxsplit = need_int(arg(a, 1, "maxsplit", Value::from(-1)), "maxsplit");
      return string_list(pystr::split(s, sep, maxsplit, name == "rsplit"));
    });
  }
  if (name == "splitlines") {
    return bound(what, [s, what](CallArgs& a) {
      check_arity(a, what, 1, {"keepends"});
      return string_list(pystr::splitlines(s, truthy(arg(a, 0, "keepends", kFalse))));
    });
  }
  if (name == "startswith" || name == "endswith") {
    return bound(what, [s, name, what](CallArgs& a) {
      check_arity(a, what, 1, {});
      if (a.positional.empty()) fail("{}() takes one argument", what);
      return Value::from(has_prefix(s, a.positional[0], name == "endswith", "the prefix"));
    });
  }
  if (name == "replace") {
    return bound(what, [s, what](CallArgs& a) {
      check_arity(a, what, 3, {"count"});
      if (a.positional.size() < 2) fail("str.replace() takes two strings");
      const int64_t count = need_int(arg(a, 2, "count", Value::from(-1)), "count");
      return Value::from(pystr::replace(s, need_string(a.positional[0], "old"), need_string(a.positional[1], "new"),
                                        count, size_t{64} << 20));
    });
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    return bound(what, [s, name, what](CallArgs& a) {
      check_arity(a, what, 1, {});
      if (a.positional.empty()) fail("{}() takes one argument", what);
      const std::string sub = need_string(a.positional[0], "the substring");
      if (name == "count") return Value::from(pystr::count(s, sub));
      const int64_t at = pystr::find(s, sub, name[0] == 'r');
      if (at < 0 && name.find("index") != std::string::npos) fail("substring not found");
      return Value::from(at);
    });
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    return bound(what, [s, name, what](CallArgs& a) {
      check_arity(a, what, 0, {});
      if (name == "upper") return Value::from(pystr::upper(s));
      if (name == "lower") return Value::from(pystr::lower(s));
      if (name == "title") return Value::from(pystr::title(s));
      return Value::from(pystr::capitalize(s));
    });
  }
  if (name == "isalpha" || name == "isdigit" || name == "isdecimal" || name == "isalnum" || name == "isspace" ||
      name == "islower" || name == "isupper") {
    return bound(what, [s, name, what](CallArgs& a) {
      check_arity(a, what, 0, {});
      return Value::from(pystr::test_chars(s, name));
    });
  }
  if (name == "join") {
    return bound(what, [s, what](CallArgs& a) {
      check_arity(a, what, 1, {});
      if (a.positional.empty()) fail("str.join() takes one argument");
      std::string out;
      size_t i = 0;
      for (const Value& v : iterate(a.positional[0])) {
        if (v.kind != Value::Kind::String) fail("sequence item {}: expected str instance, {} found", i, type_name(v));
        if (i++ > 0) out += s;
        out += v.text;
      }
      return Value::from(std::move(out));
    });
  }
  if (name == "removeprefix" || name == "removesuffix") {
    return bound(what, [s, name, what](CallArgs& a) {
      check_arity(a, what, 1, {});
      if (a.positional.empty()) fail("{}() takes one argument", what);
      const std::string affix = need_string(a.positional[0], "the affix");
      if (name == "removeprefix") return Value::from(s.starts_with(affix) ? s.substr(affix.size()) : s);
      return Value::from(s.ends_with(affix) ? s.substr(0, s.size() - affix.size()) : s);
    });
  }
  if (name == "partition" || name == "rpartition") {
    return bound(what, [s, name, what](CallArgs& a) {
      check_arity(a, what, 1, {});
      if (a.positional.empty()) fail("{}() takes one argument", what);
      const std::string sep = need_string(a.positional[0], "the separator");
      if (sep.empty()) fail("empty separator");
      const size_t at = name == "partition" ? s.find(sep) : s.rfind(sep);
      if (at == std::string::npos) {
        Value parts = name == "partition" ? string_list({s, "", ""}) : string_list({"", "", s});
        parts.tuple = true;
        return parts;
      }
      Value parts = string_list({s.substr(0, at), sep, s.substr(at + sep.size())});
      parts.tuple = true;
      return parts;
    });
  }
  if (kOther.count(name)) {
    return bound(what, [what](CallArgs&) -> Value { outside_subset(what + "()"); });
  }
  return Value::undefined(fmt::format("'str object' has no attribute '{}'", name));
}

Value dict_method(const Value& d, const std::string& name) {
  const std::string what = "dict." + name;
  if (name == "items" || name == "keys" || name == "values") {
    return bound(what, [d, name, what](CallArgs& a) {
      check_arity(a, what, 0, {});
      List l;
      for (const auto& [k, v] : *d.dict) {
        if (name == "items")
          l.push_back(Value::make_tuple(List{Value::from(k), v}));
        else
          l.push_back(name == "keys" ? Value::from(k) : v);
      }
      return Value::from(std::move(l));
    });
  }
  if (name == "get") {
    return bound(what, [d, what](CallArgs& a) {
      check_arity(a, what, 2, {});
      if (a.positional.empty()) fail("dict.get() takes a key");
      const Value& key = a.positional[0];
      if (key.kind == Value::Kind::String) {
        if (const Value* v = d.find(key.text)) return *v;
      }
      return a.positional.size() > 1 ? a.positional[1] : kNone;
    });
  }
  return Value();
}

}  // namespace

Value attribute(const Value& obj, const std::string& name) {
  if (name.starts_with("_")) fail("access to attribute '{}' of a '{}' object is unsafe", name, type_name(obj));
  static const std::set<std::string> kMutators{"append", "extend", "insert", "pop",        "remove",
                                               "sort",   "clear",  "update", "setdefault", "popitem"};
  switch (obj.kind) {
    case Value::Kind::String:
      return string_method(obj.text, name);
    case Value::Kind::Map: {
      if (Value m = dict_method(obj, name); m.kind == Value::Kind::Function) return m;
      if (kMutators.count(name))
        fail("access to attribute '{}' of a 'dict' object is unsafe: templates cannot modify values", name);
      if (const Value* v = obj.find(name)) return *v;
      return Value::undefined(fmt::format("'dict object' has no attribute '{}'", name));
    }
    case Value::Kind::Namespace: {
      if (const Value* v = obj.find(name)) return *v;
      return Value::undefined(fmt::format("'Namespace object' has no attribute '{}'", name));
    }
    case Value::Kind::Array:
      if (kMutators.count(name))
        fail("access to attribute '{}' of a 'list' object is unsafe: templates cannot modify values", name);
      if (name == "index" || name == "count" || name == "copy") outside_subset("list." + name + "()");
      return Value::undefined(fmt::format("'list object' has no attribute '{}'", name));
    default:
      return Value::undefined(fmt::format("'{}' has no attribute '{}'", repr(obj), name));
  }
}

Value item(const Value& obj, const Value& key) {
  if ((obj.kind == Value::Kind::Array || obj.kind == Value::Kind::String) &&
      (key.kind == Value::Kind::Int || key.kind == Value::Kind::Bool)) {
    int64_t i = key.kind == Value::Kind::Bool ? key.boolean : key.integer;
    if (obj.kind == Value::Kind::Array) {
      const auto n = static_cast<int64_t>(obj.list->size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undefined(fmt::format("'list object' has no element {}", key.integer));
      return (*obj.list)[static_cast<size_t>(i)];
    }
    const std::vector<char32_t> cps = pystr::code_points(obj.text);
    const auto n = static_cast<int64_t>(cps.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::undefined(fmt::format("'str object' has no element {}", key.integer));
    return Value::from(pystr::from_code_points(cps, static_cast<size_t>(i), static_cast<size_t>(i) + 1));
  }
  if (obj.kind == Value::Kind::Map && key.kind == Value::Kind::String) {
    if (const Value* v = obj.find(key.text)) return *v;
  }
  if (key.kind == Value::Kind::String) return attribute(obj, key.text);
  return Value::undefined(fmt::format("'{}' object has no element {}", type_name(obj), repr(key)));
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  const auto opt = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.kind == Value::Kind::None) return std::nullopt;
    return need_int(v, what);
  };
  const int64_t s = opt(step, "a slice step").value_or(1);
  if (s == 0) fail("slice step cannot be zero");
  std::vector<char32_t> cps;
  int64_t n = 0;
  if (obj.kind == Value::Kind::Array) {
    n = static_cast<int64_t>(obj.list->size());
  } else if (obj.kind == Value::Kind::String) {
    cps = pystr::code_points(obj.text);
    n = static_cast<int64_t>(cps.size());
  } else {
    fail("'{}' object is not subscriptable", type_name(obj));
  }
  // Python's slice index adjustment.
  const auto adjust = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t i = *v;
    if (i < 0) {
      i += n;
      if (i < 0) i = s < 0 ? -1 : 0;
    } else if (i >= n) {
      i = s < 0 ? n - 1 : n;
    }
    return i;
  };
  const int64_t b = adjust(opt(start, "a slice start"), s < 0 ? n - 1 : 0);
  const int64_t e = adjust(opt(stop, "a slice stop"), s < 0 ? -1 : n);
  List out;
  std::string text;
  for (int64_t i = b; s > 0 ? i < e : i > e; i += s) {
    if (obj.kind == Value::Kind::Array)
      out.push_back((*obj.list)[static_cast<size_t>(i)]);
    else
      append_utf8(text, cps[static_cast<size_t>(i)]);
  }
  return obj.kind == Value::Kind::Array ? Value::from(std::move(out)) : Value::from(std::move(text));
}

List iterate(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Array:
      return *v.list;
    case Value::Kind::Map: {
      List keys;
      for (const auto& [k, e] : *v.dict) keys.push_back(Value::from(k));
      return keys;
    }
    case Value::Kind::String: {
      List chars;
      for (size_t pos = 0; pos < v.text.size();) {
        const size_t start = pos;
        next_code_point(v.text, pos);
        chars.push_back(Value::from(v.text.substr(start, pos - start)));
      }
      return chars;
    }
    case Value::Kind::Undefined:
      return {};
    default:
      fail("'{}' object is not iterable", type_name(v));
  }
}

size_t length(const Value& v) {
  switch (v.kind) {
    case Value::Kind::String:
      return pystr::length(v.text);
    case Value::Kind::Array:
      return v.list->size();
    case Value::Kind::Map:
    case Value::Kind::Namespace:
      return v.dict->size();
    case Value::Kind::Undefined:
      return 0;
    default:
      fail("object of type '{}' has no len()", type_name(v));
  }
}

namespace {

using FilterFn = std::function<Value(Renderer&, const Value&, CallArgs&)>;
using TestFn = std::function<bool(Renderer&, const Value&, CallArgs&)>;

std::string html_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Jinja2's title filter: each word starts upper case after -, whitespace or an opening bracket.
std::string jinja_title(const std::string& s) {
  std::string out;
  bool start = true;
  for (size_t pos = 0; pos < s.size();) {
    const size_t begin = pos;
    const char32_t c = next_code_point(s, pos);
    const std::string one = s.substr(begin, pos - begin);
    const bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || pystr::is_space(c);
    if (sep) {
      out += one;
      start = true;
    } else {
      out += start ? pystr::upper(one) : pystr::lower(one);
      start = false;
    }
  }
  return out;
}

void sort_values(List& l, bool reverse, bool case_sensitive, const std::optional<std::string>& attr) {
  const auto key = [&](const Value& v) { return lowered(attr ? attribute_path(v, *attr) : v, case_sensitive); };
  std::stable_sort(l.begin(), l.end(), [&](const Value& a, const Value& b) {
    const int c = compare(key(a), key(b), "<");
    return reverse ? c > 0 : c < 0;
  });
}

Value select_like(Renderer& r, const Value& input, CallArgs& a, bool by_attribute, bool keep) {
  List out;
  size_t first = 0;
  std::optional<std::string> attr;
  if (by_attribute) {
    if (a.positional.empty()) fail("selectattr/rejectattr need an attribute name");
    attr = need_string(a.positional[0], "the attribute name");
    first = 1;
  }
  std::optional<std::string> test_name;
  if (a.positional.size() > first) test_name = need_string(a.positional[first], "the test name");
  CallArgs test_args;
  for (size_t i = first + 1; i < a.positional.size(); ++i) test_args.positional.push_back(a.positional[i]);
  for (const Value& v : iterate(input)) {
    const Value subject = attr ? attribute_path(v, *attr) : v;
    bool ok = test_name ? test(r, *test_name, subject, test_args) : truthy(subject);
    if (ok == keep) out.push_back(v);
  }
  return Value::from(std::move(out));
}

const std::map<std::string, FilterFn>& filters() {
  static const std::map<std::string, FilterFn> table = [] {
    std::map<std::string, FilterFn> f;
    f["abs"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "abs", 0, {});
      if (v.kind == Value::Kind::Float) return Value::from(std::fabs(v.real));
      const int64_t i = need_int(v, "abs()'s operand");
      if (i == INT64_MIN) fail("integer overflow");
      return Value::from(i < 0 ? -i : i);
    };
    f["attr"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "attr", 1, {});
      return attribute(v, need_string(arg(a, 0, "name", kNone), "the attribute name"));
    };
    f["capitalize"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "capitalize", 0, {});
      return Value::from(pystr::capitalize(to_str(v)));
    };
    f["length"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "length", 0, {});
      return Value::from(static_cast<int64_t>(length(v)));
    };
    f["count"] = f["length"];
    f["default"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "default", 2, {"default_value", "boolean"});
      const Value fallback = arg(a, 0, "default_value", Value::from(""));
      const bool boolean = truthy(arg(a, 1, "boolean", kFalse));
      return v.is_undefined() || (boolean && !truthy(v)) ? fallback : v;
    };
    f["d"] = f["default"];
    f["dictsort"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "dictsort", 3, {"case_sensitive", "by", "reverse"});
      if (v.kind != Value::Kind::Map) fail("dictsort needs a dict, not {}", type_name(v));
      const bool cs = truthy(arg(a, 0, "case_sensitive", kFalse));
      const std::string by = need_string(arg(a, 1, "by", Value::from("key")), "by");
      if (by != "key" && by != "value") fail("dictsort: 'by' must be 'key' or 'value'");
      List items;
      for (const auto& [k, e] : *v.dict) items.push_back(Value::make_tuple(List{Value::from(k), e}));
      const size_t pos = by == "key" ? 0 : 1;
      const bool reverse = truthy(arg(a, 2, "reverse", kFalse));
      std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
        const int c = compare(lowered((*x.list)[pos], cs), lowered((*y.list)[pos], cs), "<");
        return reverse ? c > 0 : c < 0;
      });
      return Value::from(std::move(items));
    };
    f["escape"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "escape", 0, {});
      return Value::from(html_escape(to_str(v)));
    };
    f["e"] = f["escape"];
    f["first"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "first", 0, {});
      const List l = iterate(v);
      return l.empty() ? Value::undefined("first: the sequence is empty") : l.front();
    };
    f["last"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "last", 0, {});
      const List l = iterate(v);
      return l.empty() ? Value::undefined("last: the sequence is empty") : l.back();
    };
    f["float"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "float", 1, {"default"});
      if (v.is_number())
        return Value::from(v.kind == Value::Kind::Float
                               ? v.real
                               : static_cast<double>(v.kind == Value::Kind::Bool ? v.boolean : v.integer));
      if (v.kind == Value::Kind::String) {
        const std::string t = pystr::strip(v.text, std::nullopt, true, true);
        char* end = nullptr;
        const double d = std::strtod(t.c_str(), &end);
        if (!t.empty() && end == t.c_str() + t.size()) return Value::from(d);
      }
      return arg(a, 0, "default", Value::from(0.0));
    };
    f["int"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "int", 2, {"default", "base"});
      if (v.kind == Value::Kind::Int || v.kind == Value::Kind::Bool)
        return Value::from(v.kind == Value::Kind::Bool ? int64_t{v.boolean} : v.integer);
      if (v.kind == Value::Kind::Float && std::isfinite(v.real) && std::fabs(v.real) < 9.2e18) {
        return Value::from(static_cast<int64_t>(v.real));
      }
      if (v.kind == Value::Kind::String) {
        const std::string t = pystr::strip(v.text, std::nullopt, true, true);
        const int64_t base = need_int(arg(a, 1, "base", Value::from(10)), "base");
        char* end = nullptr;
        errno = 0;
        const long long i = std::strtoll(t.c_str(), &end, static_cast<int>(base));
        if (!t.empty() && end == t.c_str() + t.size() && errno == 0) return Value::from(static_cast<int64_t>(i));
        const double d = std::strtod(t.c_str(), &end);
        if (!t.empty() && end == t.c_str() + t.size() && std::isfinite(d) && std::fabs(d) < 9.2e18) {
          return Value::from(static_cast<int64_t>(d));
        }
      }
      return arg(a, 0, "default", Value::from(0));
    };
    f["indent"] = [](Renderer& r, const Value& v, CallArgs& a) {
      check_arity(a, "indent", 3, {"width", "first", "blank"});
      const Value w = arg(a, 0, "width", Value::from(4));
      std::string pad;
      if (w.kind == Value::Kind::String) {
        pad = w.text;
      } else {
        const int64_t n = need_int(w, "the indent width");
        r.check_size(static_cast<size_t>(std::max<int64_t>(0, n)));
        pad.assign(static_cast<size_t>(std::max<int64_t>(0, n)), ' ');
      }
      const bool first = truthy(arg(a, 1, "first", kFalse)), blank = truthy(arg(a, 2, "blank", kFalse));
      const std::vector<std::string> lines = pystr::splitlines(to_str(v) + "\n", false);
      std::string out;
      for (size_t i = 0; i < lines.size(); ++i) {
        if (i > 0) out += "\n";
        if ((i > 0 || first) && (blank || !lines[i].empty())) out += pad;
        out += lines[i];
        r.check_size(out.size());
      }
      return Value::from(std::move(out));
    };
    f["items"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "items", 0, {});
      if (v.is_undefined()) return Value::from(List{});
      if (v.kind != Value::Kind::Map) fail("items needs a dict, not {}", type_name(v));
      List l;
      for (const auto& [k, e] : *v.dict) l.push_back(Value::make_tuple(List{Value::from(k), e}));
      return Value::from(std::move(l));
    };
    f["join"] = [](Renderer& r, const Value& v, CallArgs& a) {
      check_arity(a, "join", 2, {"d", "attribute"});
      const std::string sep = to_str(arg(a, 0, "d", Value::from("")));
      const auto attr = optional_string(arg(a, 1, "attribute", kNone), "the attribute");
      std::string out;
      bool first = true;
      for (const Value& e : iterate(v)) {
        if (!first) out += sep;
        first = false;
        out += to_str(attr ? attribute_path(e, *attr) : e);
        r.check_size(out.size());
      }
      return Value::from(std::move(out));
    };
    f["list"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "list", 0, {});
      return Value::from(iterate(v));
    };
    f["lower"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "lower", 0, {});
      return Value::from(pystr::lower(to_str(v)));
    };
    f["upper"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "upper", 0, {});
      return Value::from(pystr::upper(to_str(v)));
    };
    f["title"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "title", 0, {});
      return Value::from(jinja_title(to_str(v)));
    };
    f["map"] = [](Renderer& r, const Value& v, CallArgs& a) {
      List out;
      const Value* attr = nullptr;
      for (const auto& [k, e] : a.keyword) {
        if (k == "attribute")
          attr = &e;
        else if (k != "default")
          fail("map() got an unexpected keyword argument '{}'", k);
      }
      if (attr) {
        const std::string path = need_string(*attr, "the attribute");
        const Value fallback = arg(a, 99, "default", Value::undefined(""));
        for (const Value& e : iterate(v)) {
          Value x = attribute_path(e, path);
          out.push_back(x.is_undefined() && !fallback.is_undefined() ? fallback : x);
        }
        return Value::from(std::move(out));
      }
      if (a.positional.empty()) fail("map() needs a filter name or attribute=");
      const std::string name = need_string(a.positional[0], "the filter name");
      CallArgs rest;
      rest.positional.assign(a.positional.begin() + 1, a.positional.end());
      for (const Value& e : iterate(v)) out.push_back(filter(r, name, e, rest));
      return Value::from(std::move(out));
    };
    const auto extreme = [](bool max) {
      return [max](Renderer&, const Value& v, CallArgs& a) {
        check_arity(a, max ? "max" : "min", 2, {"case_sensitive", "attribute"});
        const bool cs = truthy(arg(a, 0, "case_sensitive", kFalse));
        const auto attr = optional_string(arg(a, 1, "attribute", kNone), "the attribute");
        const List l = iterate(v);
        if (l.empty()) return Value::undefined(fmt::format("{}: the sequence is empty", max ? "max" : "min"));
        const Value* best = &l[0];
        const auto key = [&](const Value& x) { return lowered(attr ? attribute_path(x, *attr) : x, cs); };
        for (const Value& x : l) {
          const int c = compare(key(x), key(*best), "<");
          if (max ? c > 0 : c < 0) best = &x;
        }
        return *best;
      };
    };
    f["max"] = extreme(true);
    f["min"] = extreme(false);
    f["select"] = [](Renderer& r, const Value& v, CallArgs& a) { return select_like(r, v, a, false, true); };
    f["reject"] = [](Renderer& r, const Value& v, CallArgs& a) { return select_like(r, v, a, false, false); };
    f["selectattr"] = [](Renderer& r, const Value& v, CallArgs& a) { return select_like(r, v, a, true, true); };
    f["rejectattr"] = [](Renderer& r, const Value& v, CallArgs& a) { return select_like(r, v, a, true, false); };
    f["replace"] = [](Renderer& r, const Value& v, CallArgs& a) {
      check_arity(a, "replace", 3, {"old", "new", "count"});
      const Value count = arg(a, 2, "count", kNone);
      return Value::from(pystr::replace(to_str(v), to_str(arg(a, 0, "old", kNone)), to_str(arg(a, 1, "new", kNone)),
                                        count.kind == Value::Kind::None ? -1 : need_int(count, "count"),
                                        r.options().max_output_bytes));
    };
    f["reverse"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "reverse", 0, {});
      List l = iterate(v);
      std::reverse(l.begin(), l.end());
      if (v.kind != Value::Kind::String) return Value::from(std::move(l));
      std::string s;
      for (const Value& c : l) s += c.text;
      return Value::from(std::move(s));
    };
    f["round"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "round", 2, {"precision", "method"});
      const int64_t precision = need_int(arg(a, 0, "precision", Value::from(0)), "precision");
      const std::string method = need_string(arg(a, 1, "method", Value::from("common")), "method");
      if (!v.is_number()) fail("round needs a number, not {}", type_name(v));
      const double x = v.kind == Value::Kind::Float
                           ? v.real
                           : static_cast<double>(v.kind == Value::Kind::Bool ? v.boolean : v.integer);
      const double scale = std::pow(10.0, static_cast<double>(precision));
      double r = 0;
      if (method == "common")
        r = std::nearbyint(x * scale) / scale;  // Python's round(): ties to even
      else if (method == "ceil")
        r = std::ceil(x * scale) / scale;
      else if (method == "floor")
        r = std::floor(x * scale) / scale;
      else
        fail("round: method must be 'common', 'ceil' or 'floor'");
      return Value::from(r);
    };
    f["safe"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "safe", 0, {});
      return v;
    };
    f["sort"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "sort", 3, {"reverse", "case_sensitive", "attribute"});
      List l = iterate(v);
      sort_values(l, truthy(arg(a, 0, "reverse", kFalse)), truthy(arg(a, 1, "case_sensitive", kFalse)),
                  optional_string(arg(a, 2, "attribute", kNone), "the attribute"));
      return Value::from(std::move(l));
    };
    f["string"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "string", 0, {});
      return Value::from(to_str(v));
    };
    f["sum"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "sum", 2, {"attribute", "start"});
      const auto attr = optional_string(arg(a, 0, "attribute", kNone), "the attribute");
      Value total = arg(a, 1, "start", Value::from(0));
      for (const Value& e : iterate(v)) {
        const Value x = attr ? attribute_path(e, *attr) : e;
        if (!x.is_number() || !total.is_number())
          fail("sum: unsupported operand types '{}' and '{}'", type_name(total), type_name(x));
        if (x.kind == Value::Kind::Float || total.kind == Value::Kind::Float) {
          const auto d = [](const Value& y) {
            return y.kind == Value::Kind::Float
                       ? y.real
                       : static_cast<double>(y.kind == Value::Kind::Bool ? y.boolean : y.integer);
          };
          total = Value::from(d(total) + d(x));
        } else {
          int64_t s = 0;
          if (__builtin_add_overflow(total.kind == Value::Kind::Bool ? total.boolean : total.integer,
                                     x.kind == Value::Kind::Bool ? x.boolean : x.integer, &s)) {
            fail("integer overflow in sum");
          }
          total = Value::from(s);
        }
      }
      return total;
    };
    f["tojson"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "tojson", 4, {"ensure_ascii", "indent", "separators", "sort_keys"});
      if (truthy(arg(a, 0, "ensure_ascii", kFalse))) outside_subset("tojson(ensure_ascii=True)");
      const Value indent = arg(a, 1, "indent", kNone);
      if (arg(a, 2, "separators", kNone).kind != Value::Kind::None) outside_subset("tojson(separators=...)");
      const int width = indent.kind == Value::Kind::None
                            ? -1
                            : static_cast<int>(std::clamp<int64_t>(need_int(indent, "indent"), 0, 64));
      return Value::from(to_json(v, width, truthy(arg(a, 3, "sort_keys", kFalse))));
    };
    f["trim"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "trim", 1, {"chars"});
      return Value::from(
          pystr::strip(to_str(v), optional_string(arg(a, 0, "chars", kNone), "the characters"), true, true));
    };
    f["unique"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "unique", 2, {"case_sensitive", "attribute"});
      const bool cs = truthy(arg(a, 0, "case_sensitive", kFalse));
      const auto attr = optional_string(arg(a, 1, "attribute", kNone), "the attribute");
      List out, seen;
      for (const Value& e : iterate(v)) {
        const Value key = lowered(attr ? attribute_path(e, *attr) : e, cs);
        if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) {
          seen.push_back(key);
          out.push_back(e);
        }
      }
      return Value::from(std::move(out));
    };
    f["wordcount"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "wordcount", 0, {});
      return Value::from(static_cast<int64_t>(pystr::split(to_str(v), std::nullopt, -1, false).size()));
    };
    return f;
  }();
  return table;
}

bool number_kind(const Value& v) {
  return v.kind == Value::Kind::Int || v.kind == Value::Kind::Float || v.kind == Value::Kind::Bool;
}

const std::map<std::string, TestFn>& tests() {
  static const std::map<std::string, TestFn> table = [] {
    std::map<std::string, TestFn> t;
    const auto unary = [](std::function<bool(const Value&)> f, const char* name) {
      return [f, name](Renderer&, const Value& v, CallArgs& a) {
        check_arity(a, name, 0, {});
        return f(v);
      };
    };
    t["defined"] = unary([](const Value& v) { return !v.is_undefined(); }, "defined");
    t["undefined"] = unary([](const Value& v) { return v.is_undefined(); }, "undefined");
    t["none"] = unary([](const Value& v) { return v.kind == Value::Kind::None; }, "none");
    t["boolean"] = unary([](const Value& v) { return v.kind == Value::Kind::Bool; }, "boolean");
    t["true"] = unary([](const Value& v) { return v.kind == Value::Kind::Bool && v.boolean; }, "true");
    t["false"] = unary([](const Value& v) { return v.kind == Value::Kind::Bool && !v.boolean; }, "false");
    t["integer"] = unary([](const Value& v) { return v.kind == Value::Kind::Int; }, "integer");
    t["float"] = unary([](const Value& v) { return v.kind == Value::Kind::Float; }, "float");
    t["number"] = unary(number_kind, "number");
    t["string"] = unary([](const Value& v) { return v.kind == Value::Kind::String; }, "string");
    t["mapping"] = unary([](const Value& v) { return v.kind == Value::Kind::Map; }, "mapping");
    t["iterable"] = unary(
        [](const Value& v) {
          return v.kind == Value::Kind::Array || v.kind == Value::Kind::Map || v.kind == Value::Kind::String ||
                 v.is_undefined();
        },
        "iterable");
    t["sequence"] = unary(
        [](const Value& v) {
          return v.kind == Value::Kind::Array || v.kind == Value::Kind::Map || v.kind == Value::Kind::String ||
                 v.is_undefined();
        },
        "sequence");
    t["callable"] = unary([](const Value& v) { return v.kind == Value::Kind::Function; }, "callable");
    t["escaped"] = unary([](const Value&) { return false; }, "escaped");
    t["lower"] = unary(
        [](const Value& v) { return v.kind == Value::Kind::String && pystr::test_chars(v.text, "islower"); }, "lower");
    t["upper"] = unary(
        [](const Value& v) { return v.kind == Value::Kind::String && pystr::test_chars(v.text, "isupper"); }, "upper");
    t["even"] = unary([](const Value& v) { return need_int(v, "'even' operand") % 2 == 0; }, "even");
    t["odd"] = unary([](const Value& v) { return need_int(v, "'odd' operand") % 2 != 0; }, "odd");
    t["divisibleby"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "divisibleby", 1, {"num"});
      const int64_t d = need_int(arg(a, 0, "num", kNone), "the divisor");
      if (d == 0) fail("integer division or modulo by zero");
      return need_int(v, "'divisibleby' operand") % d == 0;
    };
    const auto binary = [](std::function<bool(const Value&, const Value&)> f, const char* name) {
      return [f, name](Renderer&, const Value& v, CallArgs& a) {
        check_arity(a, name, 1, {"other"});
        const Value other = arg(a, 0, "other", kNone);
        return f(v, other);
      };
    };
    t["eq"] = binary([](const Value& x, const Value& y) { return equals(x, y); }, "eq");
    t["equalto"] = t["=="] = t["eq"];
    t["ne"] = binary([](const Value& x, const Value& y) { return !equals(x, y); }, "ne");
    t["!="] = t["ne"];
    t["lt"] = binary([](const Value& x, const Value& y) { return compare(x, y, "<") < 0; }, "lt");
    t["lessthan"] = t["<"] = t["lt"];
    t["le"] = binary([](const Value& x, const Value& y) { return compare(x, y, "<=") <= 0; }, "le");
    t["<="] = t["le"];
    t["gt"] = binary([](const Value& x, const Value& y) { return compare(x, y, ">") > 0; }, "gt");
    t["greaterthan"] = t[">"] = t["gt"];
    t["ge"] = binary([](const Value& x, const Value& y) { return compare(x, y, ">=") >= 0; }, "ge");
    t[">="] = t["ge"];
    t["sameas"] = binary(
        [](const Value& x, const Value& y) {
          if (x.kind != y.kind) return false;
          switch (x.kind) {
            case Value::Kind::None:
            case Value::Kind::Undefined:
              return true;
            case Value::Kind::Bool:
              return x.boolean == y.boolean;
            case Value::Kind::Array:
              return x.list == y.list;
            case Value::Kind::Map:
            case Value::Kind::Namespace:
              return x.dict == y.dict;
            case Value::Kind::Function:
              return x.function == y.function;
            default:
              return equals(x, y);
          }
        },
        "sameas");
    t["in"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "in", 1, {"seq"});
      const Value seq = arg(a, 0, "seq", kNone);
      if (seq.kind == Value::Kind::String)
        return v.kind == Value::Kind::String && seq.text.find(v.text) != std::string::npos;
      if (seq.kind == Value::Kind::Map) return v.kind == Value::Kind::String && seq.find(v.text) != nullptr;
      const List l = iterate(seq);
      return std::any_of(l.begin(), l.end(), [&](const Value& x) { return equals(x, v); });
    };
    t["filter"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "filter", 0, {});
      return v.kind == Value::Kind::String && has_filter(v.text);
    };
    t["test"] = [](Renderer&, const Value& v, CallArgs& a) {
      check_arity(a, "test", 0, {});
      return v.kind == Value::Kind::String && has_test(v.text);
    };
    return t;
  }();
  return table;
}

Value strftime_now(Renderer& r, CallArgs& a) {
  check_arity(a, "strftime_now", 1, {});
  if (a.positional.empty()) fail("strftime_now() takes a format");
  const std::string format = need_string(a.positional[0], "the strftime_now format");
  std::tm tm{};
  if (r.options().now) {
    tm = *r.options().now;
  } else {
    const std::time_t t = std::time(nullptr);
    localtime_r(&t, &tm);
  }
  if (format.empty()) return Value::from("");
  std::string out(256 + format.size() * 16, '\0');
  const size_t n = std::strftime(out.data(), out.size(), format.c_str(), &tm);
  if (n == 0) fail("strftime_now: the format '{}' gives no text", format);
  out.resize(n);
  return Value::from(std::move(out));
}

Value range(Renderer& r, CallArgs& a) {
  check_arity(a, "range", 3, {});
  if (a.positional.empty()) fail("range() takes 1 to 3 integers");
  int64_t start = 0, stop = 0, step = 1;
  if (a.positional.size() == 1) {
    stop = need_int(a.positional[0], "range()'s stop");
  } else {
    start = need_int(a.positional[0], "range()'s start");
    stop = need_int(a.positional[1], "range()'s stop");
    if (a.positional.size() == 3) step = need_int(a.positional[2], "range()'s step");
  }
  if (step == 0) fail("range() step must not be zero");
  const long double count = std::max<long double>(0, std::ceil((static_cast<long double>(stop) - start) / step));
  if (count > static_cast<long double>(std::min<uint64_t>(r.options().max_steps, 10'000'000))) {
    fail("range() of {} numbers is larger than a template may build", static_cast<double>(count));
  }
  List l;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) l.push_back(Value::from(i));
  return Value::from(std::move(l));
}

Dict keyword_dict(CallArgs& a, const char* what) {
  if (a.positional.size() > 1) fail("{}() takes at most one positional argument", what);
  Dict d;
  if (!a.positional.empty()) {
    if (a.positional[0].kind != Value::Kind::Map) fail("{}() takes a dict or keyword arguments", what);
    d = *a.positional[0].dict;
  }
  for (const auto& kw : a.keyword) {
    auto it = std::find_if(d.begin(), d.end(), [&](const auto& kv) { return kv.first == kw.first; });
    if (it != d.end())
      it->second = kw.second;
    else
      d.emplace_back(kw.first, kw.second);
  }
  return d;
}

}  // namespace

Dict globals() {
  return Dict{
      {"range", Value::make_function("range", range)},
      {"dict",
       Value::make_function("dict", [](Renderer&, CallArgs& a) { return Value::from(keyword_dict(a, "dict")); })},
      {"namespace",
       Value::make_function(
           "namespace", [](Renderer&, CallArgs& a) { return Value::make_namespace(keyword_dict(a, "namespace")); })},
      {"raise_exception", Value::make_function("raise_exception", raise_exception)},
      {"strftime_now", Value::make_function("strftime_now", strftime_now)},
  };
}

bool has_filter(const std::string& name) { return filters().count(name) > 0; }
bool has_test(const std::string& name) { return tests().count(name) > 0; }

bool known_unsupported_filter(const std::string& name) {
  static const std::set<std::string> kNames{"batch",    "center",    "filesizeformat", "format",   "forceescape",
                                            "groupby",  "pprint",    "random",         "slice",    "striptags",
                                            "truncate", "urlencode", "urlize",         "wordwrap", "xmlattr"};
  return kNames.count(name) > 0;
}

Value filter(Renderer& r, const std::string& name, const Value& input, CallArgs& args) {
  const auto it = filters().find(name);
  if (it == filters().end()) fail("no filter named '{}'", name);
  return it->second(r, input, args);
}

bool test(Renderer& r, const std::string& name, const Value& input, CallArgs& args) {
  const auto it = tests().find(name);
  if (it == tests().end()) fail("no test named '{}'", name);
  return it->second(r, input, args);
}

}  // namespace mote::jinja::builtins
