// Recursive descent over the lexed pieces, with Jinja2's grammar and
// operator precedence. Statements and syntax outside the supported subset are
// refused here, by name and line, before anything renders.
#include <set>

#include "mote/util/error.h"
#include "syntax.h"

namespace mote::jinja::detail {
namespace {

constexpr int kMaxNesting = 128;

class ExprParser {
 public:
  ExprParser(const std::vector<Token>& tokens, const std::string& name) : t_(tokens), name_(name) {}

  const Token& peek(size_t ahead = 0) const { return t_[std::min(i_ + ahead, t_.size() - 1)]; }
  bool at_op(std::string_view op, size_t ahead = 0) const {
    return peek(ahead).type == Token::Type::Operator && peek(ahead).text == op;
  }
  bool at_name(std::string_view n, size_t ahead = 0) const {
    return peek(ahead).type == Token::Type::Name && peek(ahead).text == n;
  }
  bool at_end() const { return peek().type == Token::Type::End; }
  const Token& next() { return t_[std::min(i_++, t_.size() - 1)]; }
  [[noreturn]] void error(const std::string& message) const { syntax_error(name_, peek().line, message); }
  std::string describe(const Token& t) const {
    switch (t.type) {
      case Token::Type::End:
        return "the end of the tag";
      case Token::Type::String:
        return "a string";
      default:
        return "'" + t.text + "'";
    }
  }
  void expect_op(std::string_view op) {
    if (!at_op(op)) error(fmt::format("expected '{}', found {}", op, describe(peek())));
    ++i_;
  }
  std::string expect_name(const char* what) {
    if (peek().type != Token::Type::Name) error(fmt::format("expected {}, found {}", what, describe(peek())));
    return next().text;
  }
  void expect_end() {
    if (!at_end()) error(fmt::format("unexpected {}", describe(peek())));
  }

  ExprPtr node(ExprKind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  struct Depth {
    ExprParser& p;
    explicit Depth(ExprParser& parser) : p(parser) {
      if (++p.depth_ > kMaxNesting) p.error(fmt::format("the expression nests more than {} deep", kMaxNesting));
    }
    ~Depth() { --p.depth_; }
  };

  // A bare tuple (`a, b`) where Jinja2 allows one: set values, for iterables.
  ExprPtr tuple(bool with_conditional) {
    const int line = peek().line;
    ExprPtr first = with_conditional ? expression() : or_expr();
    if (!at_op(",")) return first;
    auto t = node(ExprKind::Tuple, line);
    t->args.push_back(std::move(first));
    while (at_op(",")) {
      ++i_;
      if (at_end() || at_name("if")) break;
      t->args.push_back(with_conditional ? expression() : or_expr());
    }
    return t;
  }

  ExprPtr expression() {
    Depth d(*this);
    ExprPtr e = or_expr();
    while (at_name("if")) {
      const int line = next().line;
      auto c = node(ExprKind::Conditional, line);
      ExprPtr cond = or_expr();
      ExprPtr otherwise;
      if (at_name("else")) {
        ++i_;
        otherwise = expression();
      }
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(cond));
      c->args.push_back(std::move(otherwise));
      e = std::move(c);
    }
    return e;
  }

  ExprPtr or_expr() {
    ExprPtr e = and_expr();
    while (at_name("or")) {
      auto n = node(ExprKind::Or, next().line);
      n->args.push_back(std::move(e));
      n->args.push_back(and_expr());
      e = std::move(n);
    }
    return e;
  }

  ExprPtr and_expr() {
    ExprPtr e = not_expr();
    while (at_name("and")) {
      auto n = node(ExprKind::And, next().line);
      n->args.push_back(std::move(e));
      n->args.push_back(not_expr());
      e = std::move(n);
    }
    return e;
  }

  ExprPtr not_expr() {
    if (at_name("not")) {
      Depth d(*this);
      auto n = node(ExprKind::Not, next().line);
      n->args.push_back(not_expr());
      return n;
    }
    return compare();
  }

  ExprPtr compare() {
    const int line = peek().line;
    ExprPtr first = math1();
    std::unique_ptr<Expr> c;
    while (true) {
      std::string op;
      if (peek().type == Token::Type::Operator && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                                   peek().text == "<=" || peek().text == ">" || peek().text == ">=")) {
        op = next().text;
      } else if (at_name("in")) {
        ++i_;
        op = "in";
      } else if (at_name("not") && at_name("in", 1)) {
        i_ += 2;
        op = "not in";
      } else {
        break;
      }
      if (!c) {
        c = node(ExprKind::Compare, line);
        c->args.push_back(std::move(first));
      }
      c->ops.push_back(op);
      c->args.push_back(math1());
    }
    return c ? std::move(c) : std::move(first);
  }

  ExprPtr binary_chain(const std::set<std::string>& ops, ExprPtr (ExprParser::*operand)()) {
    ExprPtr e = (this->*operand)();
    while (peek().type == Token::Type::Operator && ops.count(peek().text)) {
      auto n = node(ExprKind::Binary, peek().line);
      n->name = next().text;
      n->args.push_back(std::move(e));
      n->args.push_back((this->*operand)());
      e = std::move(n);
    }
    return e;
  }
  ExprPtr math1() { return binary_chain({"+", "-"}, &ExprParser::concat); }
  ExprPtr concat() { return binary_chain({"~"}, &ExprParser::math2); }
  ExprPtr math2() { return binary_chain({"*", "/", "//", "%"}, &ExprParser::power); }
  ExprPtr power() { return binary_chain({"**"}, &ExprParser::unary_filtered); }
  ExprPtr unary_filtered() { return unary(true); }

  ExprPtr unary(bool with_filter) {
    Depth d(*this);
    ExprPtr e;
    if (at_op("-") || at_op("+")) {
      const Token& t = next();
      e = node(t.text == "-" ? ExprKind::Negate : ExprKind::Plus, t.line);
      e->args.push_back(unary(false));
    } else {
      e = primary();
    }
    e = postfix(std::move(e));
    if (with_filter) e = filters(std::move(e));
    return e;
  }

  ExprPtr primary() {
    const Token& t = peek();
    switch (t.type) {
      case Token::Type::Name: {
        ++i_;
        static const std::set<std::string> kTrue{"true", "True"}, kFalse{"false", "False"}, kNone{"none", "None"};
        auto e = node(ExprKind::Literal, t.line);
        if (kTrue.count(t.text))
          e->value = Value::from(true);
        else if (kFalse.count(t.text))
          e->value = Value::from(false);
        else if (kNone.count(t.text))
          e->value = Value::none();
        else {
          e->kind = ExprKind::Name;
          e->name = t.text;
        }
        return e;
      }
      case Token::Type::String: {
        auto e = node(ExprKind::Literal, t.line);
        std::string s;
        while (peek().type == Token::Type::String) s += next().text;  // adjacent literals join
        e->value = Value::from(std::move(s));
        return e;
      }
      case Token::Type::Integer:
      case Token::Type::Float: {
        auto e = node(ExprKind::Literal, t.line);
        e->value = next().value;
        return e;
      }
      case Token::Type::Operator:
        if (t.text == "(") {
          ++i_;
          if (at_op(")")) {
            ++i_;
            return node(ExprKind::Tuple, t.line);
          }
          ExprPtr e = expression();
          if (at_op(",")) {
            auto tup = node(ExprKind::Tuple, t.line);
            tup->args.push_back(std::move(e));
            while (at_op(",")) {
              ++i_;
              if (at_op(")")) break;
              tup->args.push_back(expression());
            }
            e = std::move(tup);
          }
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          ++i_;
          auto e = node(ExprKind::List, t.line);
          while (!at_op("]")) {
            e->args.push_back(expression());
            if (!at_op(",")) break;
            ++i_;
          }
          expect_op("]");
          return e;
        }
        if (t.text == "{") {
          ++i_;
          auto e = node(ExprKind::Dict, t.line);
          while (!at_op("}")) {
            e->args.push_back(expression());
            expect_op(":");
            e->args.push_back(expression());
            if (!at_op(",")) break;
            ++i_;
          }
          expect_op("}");
          return e;
        }
        break;
      default:
        break;
    }
    error(fmt::format("expected an expression, found {}", describe(t)));
  }

  ExprPtr postfix(ExprPtr e) {
    while (true) {
      if (at_op(".")) {
        const int line = next().line;
        auto a = node(ExprKind::Attr, line);
        if (peek().type == Token::Type::Integer) {
          // `x.0` is Jinja2's spelling of x[0].
          a->kind = ExprKind::Item;
          a->args.push_back(std::move(e));
          auto idx = node(ExprKind::Literal, line);
          idx->value = next().value;
          a->args.push_back(std::move(idx));
        } else {
          a->name = expect_name("an attribute name");
          a->args.push_back(std::move(e));
        }
        e = std::move(a);
      } else if (at_op("[")) {
        e = subscript(std::move(e));
      } else if (at_op("(")) {
        e = call(std::move(e), ExprKind::Call);
      } else {
        return e;
      }
    }
  }

  ExprPtr subscript(ExprPtr target) {
    const int line = next().line;
    ExprPtr start, stop, step;
    if (!at_op(":")) start = expression();
    if (!at_op(":")) {
      expect_op("]");
      auto item = node(ExprKind::Item, line);
      item->args.push_back(std::move(target));
      item->args.push_back(std::move(start));
      return item;
    }
    ++i_;
    if (!at_op(":") && !at_op("]")) stop = expression();
    if (at_op(":")) {
      ++i_;
      if (!at_op("]")) step = expression();
    }
    expect_op("]");
    auto s = node(ExprKind::Slice, line);
    s->args.push_back(std::move(target));
    s->args.push_back(std::move(start));
    s->args.push_back(std::move(stop));
    s->args.push_back(std::move(step));
    return s;
  }

  // Arguments in parentheses: positional, then name=value.
  void arguments(Expr& e) {
    expect_op("(");
    while (!at_op(")")) {
      if (at_op("*") || at_op("**")) error("*args and **kwargs in calls are not supported");
      if (peek().type == Token::Type::Name && at_op("=", 1)) {
        e.keywords.push_back(next().text);
        ++i_;
        e.args.push_back(expression());
      } else {
        if (!e.keywords.empty()) error("a positional argument follows a keyword argument");
        e.args.push_back(expression());
      }
      if (!at_op(",")) break;
      ++i_;
    }
    expect_op(")");
  }

  ExprPtr call(ExprPtr callee, ExprKind kind) {
    auto c = node(kind, peek().line);
    c->args.push_back(std::move(callee));
    arguments(*c);
    return c;
  }

  ExprPtr filters(ExprPtr e) {
    while (true) {
      if (at_op("|")) {
        const int line = next().line;
        auto f = node(ExprKind::Filter, line);
        f->name = expect_name("a filter name");
        f->args.push_back(std::move(e));
        if (at_op("(")) arguments(*f);
        e = std::move(f);
      } else if (at_name("is")) {
        const int line = next().line;
        auto t = node(ExprKind::Test, line);
        if (at_name("not")) {
          ++i_;
          t->negated = true;
        }
        t->name = expect_name("a test name");
        t->args.push_back(std::move(e));
        if (at_op("(")) {
          arguments(*t);
        } else if ((peek().type == Token::Type::Name || peek().type == Token::Type::String ||
                    peek().type == Token::Type::Integer || peek().type == Token::Type::Float || at_op("(") ||
                    at_op("[") || at_op("{")) &&
                   !at_name("else") && !at_name("or") && !at_name("and")) {
          if (at_name("is")) error("tests cannot be chained with 'is'");
          t->args.push_back(postfix(primary()));
        }
        e = std::move(t);
      } else if (at_op("(")) {
        e = call(std::move(e), ExprKind::Call);
      } else {
        return e;
      }
    }
  }

  size_t i_ = 0;
  int depth_ = 0;

 private:
  const std::vector<Token>& t_;
  const std::string& name_;
};

class Parser {
 public:
  Parser(std::vector<Piece> pieces, const std::string& name) : pieces_(std::move(pieces)), name_(name) {}

  std::vector<Node> run() {
    std::vector<Node> body = block({});
    if (i_ < pieces_.size()) {
      const Piece& p = pieces_[i_];
      syntax_error(name_, p.line, fmt::format("unexpected '{{% {} %}}'", p.tokens[0].text));
    }
    return body;
  }

 private:
  static std::string keyword(const Piece& p) {
    return p.tokens.empty() || p.tokens[0].type != Token::Type::Name ? "" : p.tokens[0].text;
  }

  // Nodes up to (not including) a statement whose keyword is in `until`.
  std::vector<Node> block(const std::set<std::string>& until) {
    if (++depth_ > kMaxNesting)
      syntax_error(name_, pieces_[i_ - 1].line, fmt::format("blocks nest more than {} deep", kMaxNesting));
    std::vector<Node> out;
    while (i_ < pieces_.size()) {
      const Piece& p = pieces_[i_];
      if (p.kind == Piece::Kind::Text) {
        Node n;
        n.kind = NodeKind::Text;
        n.line = p.line;
        n.text = p.text;
        out.push_back(std::move(n));
        ++i_;
        continue;
      }
      if (p.kind == Piece::Kind::Output) {
        ExprParser e(p.tokens, name_);
        Node n;
        n.kind = NodeKind::Output;
        n.line = p.line;
        n.expr = e.tuple(true);
        e.expect_end();
        out.push_back(std::move(n));
        ++i_;
        continue;
      }
      const std::string kw = keyword(p);
      if (until.count(kw)) break;
      out.push_back(statement(kw));
    }
    --depth_;
    return out;
  }

  const Piece& expect_closing(const std::string& opener, int line, const std::set<std::string>& expected) {
    if (i_ >= pieces_.size()) {
      std::string names;
      for (const auto& e : expected) names += (names.empty() ? "" : " or ") + fmt::format("'{{% {} %}}'", e);
      syntax_error(name_, line, fmt::format("'{{% {} %}}' is not closed: {} missing", opener, names));
    }
    return pieces_[i_];
  }

  // Consumes a closing statement ({% endif %}, {% else %}, ...), which takes no arguments.
  void simple_end() {
    const Piece& p = pieces_[i_];
    ExprParser e(p.tokens, name_);
    ++e.i_;
    e.expect_end();
    ++i_;
  }

  Node statement(const std::string& kw) {
    const Piece& p = pieces_[i_];
    Node n;
    n.line = p.line;
    ExprParser e(p.tokens, name_);
    ++e.i_;
    if (kw == "if") {
      n.kind = NodeKind::If;
      n.conditions.push_back(e.tuple(false));
      e.expect_end();
      ++i_;
      while (true) {
        n.bodies.push_back(block({"elif", "else", "endif"}));
        const Piece& q = expect_closing("if", n.line, {"endif"});
        const std::string k = keyword(q);
        ExprParser c(q.tokens, name_);
        ++c.i_;
        ++i_;
        if (k == "elif") {
          n.conditions.push_back(c.tuple(false));
          c.expect_end();
          continue;
        }
        c.expect_end();
        if (k == "else") {
          n.else_body = block({"endif"});
          expect_closing("if", n.line, {"endif"});
          simple_end();
        }
        break;
      }
    } else if (kw == "for") {
      n.kind = NodeKind::For;
      do {
        n.targets.push_back(e.expect_name("a loop variable"));
      } while (e.at_op(",") && (++e.i_, true));
      if (!e.at_name("in")) e.error(fmt::format("expected 'in', found {}", e.describe(e.peek())));
      ++e.i_;
      n.expr = e.tuple(false);
      if (e.at_name("if")) {
        ++e.i_;
        n.condition = e.expression();
      }
      if (e.at_name("recursive")) e.error("recursive loops are not supported");
      e.expect_end();
      ++i_;
      ++loop_depth_;
      n.bodies.push_back(block({"else", "endfor"}));
      --loop_depth_;
      const Piece& q = expect_closing("for", n.line, {"endfor"});
      if (keyword(q) == "else") {
        simple_end();
        n.else_body = block({"endfor"});
        expect_closing("for", n.line, {"endfor"});
      }
      simple_end();
    } else if (kw == "set") {
      n.targets.push_back(e.expect_name("a variable name"));
      if (e.at_op(".")) {
        ++e.i_;
        n.attribute = e.expect_name("an attribute name");
      } else {
        while (e.at_op(",")) {
          ++e.i_;
          n.targets.push_back(e.expect_name("a variable name"));
        }
      }
      if (e.at_op("=")) {
        ++e.i_;
        n.kind = NodeKind::Set;
        n.expr = e.tuple(true);
        e.expect_end();
        ++i_;
      } else {
        if (e.at_op("|")) e.error("filters on a block set are not supported");
        e.expect_end();
        if (n.targets.size() != 1 || !n.attribute.empty()) e.error("a block set assigns one name");
        n.kind = NodeKind::SetBlock;
        ++i_;
        n.bodies.push_back(block({"endset"}));
        expect_closing("set", n.line, {"endset"});
        simple_end();
      }
    } else if (kw == "macro") {
      n.kind = NodeKind::Macro;
      n.text = e.expect_name("a macro name");
      e.expect_op("(");
      while (!e.at_op(")")) {
        n.targets.push_back(e.expect_name("a parameter name"));
        if (e.at_op("=")) {
          ++e.i_;
          n.defaults.push_back(e.expression());
        } else {
          if (!n.defaults.empty() && n.defaults.back())
            e.error("a parameter without default follows one with a default");
          n.defaults.push_back(nullptr);
        }
        if (!e.at_op(",")) break;
        ++e.i_;
      }
      e.expect_op(")");
      e.expect_end();
      ++i_;
      n.bodies.push_back(block({"endmacro"}));
      expect_closing("macro", n.line, {"endmacro"});
      simple_end();
    } else if (kw == "break" || kw == "continue") {
      if (loop_depth_ == 0) e.error(fmt::format("'{}' outside a loop", kw));
      n.kind = kw == "break" ? NodeKind::Break : NodeKind::Continue;
      e.expect_end();
      ++i_;
    } else if (kw == "generation") {
      // transformers' marker of assistant text; it renders its body unchanged.
      n.kind = NodeKind::Generation;
      e.expect_end();
      ++i_;
      n.bodies.push_back(block({"endgeneration"}));
      expect_closing("generation", n.line, {"endgeneration"});
      simple_end();
    } else if (kw.empty()) {
      syntax_error(name_, p.line, "expected a statement name after '{%'");
    } else {
      static const std::set<std::string> kKnown{"include",    "import", "from",     "extends", "block",
                                                "call",       "filter", "with",     "do",      "raw",
                                                "autoescape", "trans",  "pluralize"};
      if (kKnown.count(kw)) {
        syntax_error(name_, p.line, fmt::format("'{{% {} %}}' is outside the template subset mote supports", kw));
      }
      syntax_error(name_, p.line, fmt::format("unexpected '{{% {} %}}'", kw));
    }
    return n;
  }

  std::vector<Piece> pieces_;
  const std::string& name_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

std::vector<Node> parse(std::vector<Piece> pieces, const std::string& name) {
  return Parser(std::move(pieces), name).run();
}

}  // namespace mote::jinja::detail
