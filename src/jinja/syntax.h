// The template after lexing (pieces of text and tag tokens, whitespace
// control applied) and after parsing (statement and expression trees).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mote/jinja/value.h"

namespace mote::jinja::detail {

struct Token {
  enum class Type { Name, Integer, Float, String, Operator, End } type = Type::End;
  std::string text;  // name, operator, or the string literal's value
  Value value;       // numbers
  int line = 0;
};

struct Piece {
  enum class Kind { Text, Output, Statement } kind = Kind::Text;
  std::string text;           // Text
  std::vector<Token> tokens;  // Output and Statement, ending in an End token
  int line = 0;
};

// Splits the source as Jinja2 does with trim_blocks and lstrip_blocks, the
// settings transformers renders chat templates with.
std::vector<Piece> lex(std::string_view source, const std::string& name);

enum class ExprKind {
  Literal,
  Name,
  List,
  Tuple,
  Dict,
  Attr,
  Item,
  Slice,
  Call,
  Filter,
  Test,
  Negate,
  Plus,
  Not,
  Binary,
  Compare,
  And,
  Or,
  Conditional
};

struct Expr {
  ExprKind kind = ExprKind::Literal;
  int line = 0;
  Value value;                              // Literal
  std::string name;                         // Name, Attr, Filter, Test, Binary operator
  std::vector<std::unique_ptr<Expr>> args;  // operands; null marks an absent slice bound or else branch
  std::vector<std::string> keywords;        // Call/Filter/Test: names of the last keywords.size() args
  std::vector<std::string> ops;             // Compare: one operator per operand after the first
  bool negated = false;                     // Test: `is not`
};
using ExprPtr = std::unique_ptr<Expr>;

enum class NodeKind { Text, Output, If, For, Set, SetBlock, Macro, Break, Continue, Generation };

struct Node {
  NodeKind kind = NodeKind::Text;
  int line = 0;
  std::string text;                       // Text; Macro name
  ExprPtr expr;                           // Output, Set value, For iterable
  ExprPtr condition;                      // For's `if` filter
  std::vector<std::string> targets;       // Set/For/SetBlock names; Macro parameters
  std::string attribute;                  // Set ns.attribute
  std::vector<ExprPtr> conditions;        // If: one per branch
  std::vector<std::vector<Node>> bodies;  // If: one per branch; others: bodies[0]
  std::vector<Node> else_body;            // If and For
  std::vector<ExprPtr> defaults;          // Macro: one per parameter, null if none
};

std::vector<Node> parse(std::vector<Piece> pieces, const std::string& name);

// A template error at `line`: "NAME:LINE: message".
[[noreturn]] void syntax_error(const std::string& name, int line, const std::string& message);

}  // namespace mote::jinja::detail
