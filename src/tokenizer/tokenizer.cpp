#include "mote/tokenizer/tokenizer.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "mote/io/json_file.h"
#include "mote/tokenizer/byte_level.h"
#include "mote/util/error.h"
#include "mote/util/utf8.h"

namespace mote {
namespace {

using nlohmann::json;

// The byte of a "<0xNN>" token, or -1.
int byte_token_value(std::string_view tok) {
  if (tok.size() != 6 || !tok.starts_with("<0x") || tok.back() != '>') return -1;
  int value = 0;
  for (const char c : tok.substr(3, 2)) {
    const int digit = c >= '0' && c <= '9'   ? c - '0'
                      : c >= 'A' && c <= 'F' ? c - 'A' + 10
                      : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                             : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

bool is_space_byte(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// The content of a bos/eos entry of tokenizer_config.json: a string, or an
// AddedToken object with "content".
std::string token_content(const json& entry) {
  if (entry.is_string()) return entry.get<std::string>();
  if (entry.is_object() && entry.contains("content") && entry["content"].is_string())
    return entry["content"].get<std::string>();
  return {};
}

}  // namespace

Tokenizer Tokenizer::load(const std::filesystem::path& dir) {
  const auto path = dir / "tokenizer.json";
  Tokenizer t = from_json_text(read_text_file(path), path.string());
  const auto config = dir / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::exists(config, ec)) t.apply_config(config);
  return t;
}

Tokenizer Tokenizer::from_json_text(std::string_view text, const std::string& where) {
  // Any structural surprise (a key of the wrong type, say) is an error in
  // the file, named as such, whichever access met it.
  try {
    return from_json(parse_json(text, where), where);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unexpected structure: {}", where, e.what());
  }
}

Tokenizer Tokenizer::from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) fail("{}: expected a JSON object", where);
  Tokenizer t;

  t.normalizer_ = Normalizer(j.contains("normalizer") ? j["normalizer"] : json(), where);
  if (!j.contains("model") || !j["model"].is_object()) fail("{}: missing object 'model'", where);
  const json& model = j["model"];
  if (model.value("type", "") != "BPE")
    fail("{}: model type '{}' is not supported (supported: BPE)", where, model.value("type", ""));
  // Two kinds of BPE: byte-level (GPT-2 style: every byte is a symbol) and
  // SentencePiece style (characters are symbols; a character outside the
  // vocabulary falls back to its bytes as <0xNN> tokens).
  t.byte_fallback_ =
      model.contains("byte_fallback") && model["byte_fallback"].is_boolean() && model["byte_fallback"].get<bool>();
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail("{}: missing object 'model.vocab'", where);
  if (model.contains("ignore_merges") && model["ignore_merges"].is_boolean())
    t.ignore_merges_ = model["ignore_merges"].get<bool>();

  // Vocabulary: ids must be dense so that every id decodes.
  const json& vocab = model["vocab"];
  std::vector<std::pair<int64_t, std::string>> entries;
  for (const auto& [tok, id] : vocab.items()) {
    if (!id.is_number_integer()) fail("{}: model.vocab['{}'] is not an integer id", where, tok);
    entries.emplace_back(id.get<int64_t>(), tok);
  }
  int64_t max_id = -1;
  for (const auto& [id, tok] : entries) {
    if (id < 0 || id > (1 << 24)) fail("{}: model.vocab['{}'] = {} is out of range", where, tok, id);
    max_id = std::max(max_id, id);
  }

  // Added tokens may extend the vocabulary past model.vocab.
  std::vector<AddedToken> added;
  if (j.contains("added_tokens")) {
    if (!j["added_tokens"].is_array()) fail("{}: 'added_tokens' must be an array", where);
    for (const auto& a : j["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
          !a["content"].is_string()) {
        fail("{}: every added_tokens entry needs an integer 'id' and a string 'content'", where);
      }
      AddedToken at;
      const int64_t id = a["id"].get<int64_t>();
      if (id < 0 || id > (1 << 24)) fail("{}: added token id {} is out of range", where, id);
      at.id = static_cast<int32_t>(id);
      at.content = a["content"].get<std::string>();
      if (at.content.empty()) fail("{}: added token {} has empty content", where, id);
      at.special = a.value("special", false);
      at.lstrip = a.value("lstrip", false);
      at.rstrip = a.value("rstrip", false);
      if (a.value("single_word", false))
        fail("{}: added token '{}' uses single_word, which is not supported", where, at.content);
      max_id = std::max(max_id, id);
      added.push_back(std::move(at));
    }
  }

  t.id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  std::vector<bool> seen(static_cast<size_t>(max_id + 1), false);
  for (auto& [id, tok] : entries) {
    if (seen[id]) fail("{}: id {} is used by two vocabulary entries", where, id);
    seen[id] = true;
    t.token_to_id_.emplace(tok, static_cast<int32_t>(id));
    t.id_to_token_[id] = std::move(tok);
  }
  t.is_added_.assign(t.id_to_token_.size(), false);
  for (const auto& a : added) {
    if (seen[a.id] && t.id_to_token_[a.id] != a.content) {
      fail("{}: added token {} '{}' conflicts with vocabulary entry '{}'", where, a.id, a.content,
           t.id_to_token_[a.id]);
    }
    seen[a.id] = true;
    t.id_to_token_[a.id] = a.content;
    t.is_added_[a.id] = true;
  }
  for (size_t id = 0; id < seen.size(); ++id) {
    if (!seen[id]) fail("{}: id {} has no token (vocabulary ids must be contiguous)", where, id);
  }
  t.added_ = std::move(added);
  t.trie_.assign(1, TrieNode{});
  for (size_t i = 0; i < t.added_.size(); ++i) {
    int32_t node = 0;
    for (const char c : t.added_[i].content) {
      const auto byte = static_cast<uint8_t>(c);
      auto& next = t.trie_[static_cast<size_t>(node)].next;
      const auto it =
          std::lower_bound(next.begin(), next.end(), byte, [](const auto& e, uint8_t b) { return e.first < b; });
      if (it != next.end() && it->first == byte) {
        node = it->second;
      } else {
        const auto child = static_cast<int32_t>(t.trie_.size());
        next.insert(it, {byte, child});
        t.trie_.emplace_back();
        node = child;
      }
    }
    if (t.trie_[static_cast<size_t>(node)].added < 0)
      t.trie_[static_cast<size_t>(node)].added = static_cast<int32_t>(i);
  }

  for (int b = 0; b < 256; ++b) {
    std::string ch;
    if (t.byte_fallback_) {
      ch = fmt::format("<0x{:02X}>", b);
    } else {
      append_utf8(ch, byte_to_char(static_cast<uint8_t>(b)));
    }
    const auto it = t.token_to_id_.find(ch);
    if (it == t.token_to_id_.end()) {
      fail("{}: {} vocabulary lacks the token '{}' for byte 0x{:02x}", where,
           t.byte_fallback_ ? "byte-fallback" : "byte-level", ch, b);
    }
    t.byte_ids_[b] = it->second;
  }
  // Every byte has a token, so the unknown token is never needed; it must
  // still be one if named.
  if (model.contains("unk_token") && model["unk_token"].is_string() &&
      t.token_to_id_.count(model["unk_token"].get<std::string>()) == 0) {
    fail("{}: model.unk_token '{}' is not in the vocabulary", where, model["unk_token"].get<std::string>());
  }

  // Merges: "left right" strings or [left, right] pairs, in rank order.
  if (!model.contains("merges") || !model["merges"].is_array()) fail("{}: missing array 'model.merges'", where);
  int32_t rank = 0;
  for (const auto& m : model["merges"]) {
    std::string left, right;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == s.size()) {
        fail("{}: merge #{} '{}' is not two tokens separated by a space", where, rank, s);
      }
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      fail("{}: merge #{} must be a string or a pair of strings", where, rank);
    }
    const auto l = t.token_to_id_.find(left);
    const auto r = t.token_to_id_.find(right);
    const auto merged = t.token_to_id_.find(left + right);
    if (l == t.token_to_id_.end())
      fail("{}: merge #{} '{} {}': '{}' is not in the vocabulary", where, rank, left, right, left);
    if (r == t.token_to_id_.end())
      fail("{}: merge #{} '{} {}': '{}' is not in the vocabulary", where, rank, left, right, right);
    if (merged == t.token_to_id_.end()) {
      fail("{}: merge #{} '{} {}': the merged token '{}' is not in the vocabulary", where, rank, left, right,
           left + right);
    }
    t.merges_.add(l->second, r->second, merged->second, rank);  // a repeated pair keeps its first (lowest) rank
    ++rank;
  }

  t.pre_tokenizer_ = PreTokenizer(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json(), where);

  if (j.contains("decoder") && !j["decoder"].is_null()) {
    const json& d = j["decoder"];
    const std::string type = d.value("type", "");
    if (t.byte_fallback_) {
      // SentencePiece's decoder chain: Replace ▁ by a space, ByteFallback,
      // Fuse, and Strip of leading spaces; nothing else is read.
      if (type != "Sequence" || !d.contains("decoders") || !d["decoders"].is_array()) {
        fail(
            "{}: decoder '{}' is not supported for a byte-fallback BPE (supported: a Sequence of Replace, "
            "ByteFallback, Fuse, Strip)",
            where, type);
      }
      for (const auto& step : d["decoders"]) {
        const std::string kind = step.is_object() ? step.value("type", "") : "";
        if (kind == "Replace") {
          const auto& pattern = step["pattern"];
          if (!pattern.is_object() || !pattern.contains("String") || !pattern["String"].is_string() ||
              !step["content"].is_string()) {
            fail("{}: decoder Replace is supported with a literal 'String' pattern only", where);
          }
          if (pattern["String"].get<std::string>().empty()) fail("{}: decoder Replace with an empty pattern", where);
          t.decode_replace_.emplace_back(pattern["String"].get<std::string>(), step["content"].get<std::string>());
        } else if (kind == "Strip") {
          if (step.value("content", "") != " " || step.value("stop", 0) != 0)
            fail("{}: decoder Strip is supported for leading spaces only", where);
          t.decode_strip_ = step.value("start", 0);
        } else if (kind != "ByteFallback" && kind != "Fuse") {
          fail("{}: decoder '{}' is not supported (supported: Replace, ByteFallback, Fuse, Strip)", where, kind);
        }
      }
    } else if (type != "ByteLevel") {
      fail("{}: decoder type '{}' is not supported (supported: ByteLevel)", where, type);
    }
  }

  if (j.contains("post_processor") && !j["post_processor"].is_null()) {
    const json& pp = j["post_processor"];
    const std::string type = pp.value("type", "");
    if (type == "TemplateProcessing") {
      if (!pp.contains("single") || !pp["single"].is_array())
        fail("{}: TemplateProcessing needs an array 'single'", where);
      bool seen_sequence = false;
      for (const auto& item : pp["single"]) {
        if (item.contains("Sequence")) {
          seen_sequence = true;
        } else if (item.contains("SpecialToken") && item["SpecialToken"].contains("id")) {
          const std::string name = item["SpecialToken"]["id"].get<std::string>();
          const json* special = nullptr;
          if (pp.contains("special_tokens") && pp["special_tokens"].contains(name))
            special = &pp["special_tokens"][name];
          if (special == nullptr || !special->contains("ids") || !(*special)["ids"].is_array()) {
            fail("{}: post_processor special token '{}' is not defined in special_tokens", where, name);
          }
          for (const auto& id : (*special)["ids"]) {
            if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > max_id) {
              fail("{}: post_processor special token '{}' has an id outside the vocabulary", where, name);
            }
            (seen_sequence ? t.template_suffix_ : t.template_prefix_).push_back(id.get<int32_t>());
          }
        } else {
          fail("{}: post_processor template item is neither Sequence nor SpecialToken", where);
        }
      }
    } else if (type != "ByteLevel") {
      fail("{}: post_processor type '{}' is not supported (supported: TemplateProcessing, ByteLevel)", where, type);
    }
  }
  if (!t.template_prefix_.empty()) t.bos_id_ = t.template_prefix_.front();
  return t;
}

void Tokenizer::apply_config(const std::filesystem::path& config_path) try {
  const json c = read_json_file(config_path);
  if (!c.is_object()) fail("{}: expected a JSON object", config_path.string());
  // bos/eos may be vocabulary entries or added tokens only (Qwen3's
  // <|im_end|>, gpt-oss's <|startoftext|>).
  const auto lookup = [&](const char* key) -> int32_t {
    if (!c.contains(key) || c[key].is_null()) return -1;
    const std::string content = token_content(c[key]);
    if (content.empty())
      fail("{}: '{}' must be a token's text or an AddedToken object with 'content'", config_path.string(), key);
    if (const int32_t added = added_token_id(content); added >= 0) return added;
    const auto it = token_to_id_.find(content);
    if (it == token_to_id_.end()) {
      fail("{}: {} '{}' is neither in the vocabulary nor an added token of tokenizer.json", config_path.string(), key,
           content);
    }
    return it->second;
  };
  if (const int32_t bos = lookup("bos_token"); bos >= 0) bos_id_ = bos;
  if (const int32_t eos = lookup("eos_token"); eos >= 0) eos_id_ = eos;
  // transformers' Llama-style tokenizers (DeepSeek's) add BOS and EOS by
  // these flags when the post-processor does not already.
  const auto flag = [&](const char* key) { return c.contains(key) && c[key].is_boolean() && c[key].get<bool>(); };
  if (flag("add_bos_token") && template_prefix_.empty()) {
    if (bos_id_ < 0) fail("{}: add_bos_token is true but there is no bos_token", config_path.string());
    template_prefix_.push_back(bos_id_);
  }
  if (flag("add_eos_token") && template_suffix_.empty()) {
    if (eos_id_ < 0) fail("{}: add_eos_token is true but there is no eos_token", config_path.string());
    template_suffix_.push_back(eos_id_);
  }
} catch (const nlohmann::json::exception& e) {
  fail("{}: unexpected structure: {}", config_path.string(), e.what());
}

const AddedToken* Tokenizer::match_added(std::string_view text, size_t pos) const {
  const AddedToken* best = nullptr;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto& next = trie_[static_cast<size_t>(node)].next;
    const auto byte = static_cast<uint8_t>(text[i]);
    const auto it =
        std::lower_bound(next.begin(), next.end(), byte, [](const auto& e, uint8_t b) { return e.first < b; });
    if (it == next.end() || it->first != byte) break;
    node = it->second;
    if (const int32_t a = trie_[static_cast<size_t>(node)].added; a >= 0) best = &added_[static_cast<size_t>(a)];
  }
  return best;
}

int32_t Tokenizer::added_token_id(std::string_view content) const {
  const AddedToken* match = match_added(content, 0);
  return match != nullptr && match->content.size() == content.size() ? match->id : -1;
}

int32_t Tokenizer::token_id(std::string_view content) const {
  if (const int32_t added = added_token_id(content); added >= 0) return added;
  const auto it = token_to_id_.find(std::string(content));
  return it == token_to_id_.end() ? -1 : it->second;
}

void Tokenizer::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  std::string normalized;
  if (!normalizer_.empty()) {
    normalized = normalizer_.apply(text);
    text = normalized;
  }
  std::string prefixed;
  if (pre_tokenizer_.add_prefix_space() && !text.empty() && text.front() != ' ') {
    prefixed.reserve(text.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(text);
    text = prefixed;
  }
  std::vector<int32_t> symbols;
  for (std::string_view piece : pre_tokenizer_.split(text)) {
    if (ignore_merges_) {
      // A piece that is a token as a whole is that token (o200k, gpt-oss).
      if (const auto it = token_to_id_.find(bytes_to_byte_level(piece));
          it != token_to_id_.end() && !is_added_[it->second]) {
        out.push_back(it->second);
        continue;
      }
    }
    symbols.clear();
    if (byte_fallback_) {
      // One symbol per character when it is a token, else its bytes.
      for (size_t pos = 0; pos < piece.size();) {
        const size_t start = pos;
        next_code_point(piece, pos);
        const auto it = token_to_id_.find(std::string(piece.substr(start, pos - start)));
        if (it != token_to_id_.end()) {
          symbols.push_back(it->second);
        } else {
          for (size_t b = start; b < pos; ++b) symbols.push_back(byte_ids_[static_cast<uint8_t>(piece[b])]);
        }
      }
    } else {
      for (char c : piece) symbols.push_back(byte_ids_[static_cast<uint8_t>(c)]);
    }
    merges_.apply(symbols);
    out.insert(out.end(), symbols.begin(), symbols.end());
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (const auto bad = find_invalid_utf8(text)) fail("invalid UTF-8 at byte {} of the text to tokenize", *bad);
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = template_prefix_;

  // Split on added tokens (longest match at the earliest position), then
  // encode the plain runs between them.
  size_t pos = 0;
  size_t run_begin = 0;
  while (pos < text.size()) {
    const AddedToken* match = match_added(text, pos);
    if (match == nullptr) {
      ++pos;
      continue;
    }
    size_t run_end = pos;
    if (match->lstrip) {
      while (run_end > run_begin && is_space_byte(text[run_end - 1])) --run_end;
    }
    encode_plain(text.substr(run_begin, run_end - run_begin), ids);
    ids.push_back(match->id);
    pos += match->content.size();
    if (match->rstrip) {
      while (pos < text.size() && is_space_byte(text[pos])) ++pos;
    }
    run_begin = pos;
  }
  encode_plain(text.substr(run_begin), ids);

  if (add_special_tokens) ids.insert(ids.end(), template_suffix_.begin(), template_suffix_.end());
  return ids;
}

void Tokenizer::append_bytes(int32_t id, std::string& bytes) const {
  if (id < 0 || id >= vocab_size()) fail("token id {} is outside the vocabulary (size {})", id, vocab_size());
  const std::string& tok = id_to_token_[id];
  if (is_added_[id]) {
    bytes += tok;
    return;
  }
  if (byte_fallback_) {
    if (const int byte = byte_token_value(tok); byte >= 0 && byte_ids_[static_cast<size_t>(byte)] == id) {
      bytes += static_cast<char>(byte);
      return;
    }
    std::string piece = tok;
    for (const auto& [from, to] : decode_replace_) piece = replace_all(piece, from, to);
    bytes += piece;
    return;
  }
  size_t pos = 0;
  while (pos < tok.size()) {
    const size_t start = pos;
    const char32_t cp = next_code_point(tok, pos);
    if (const auto b = char_to_byte(cp)) {
      bytes += static_cast<char>(*b);
    } else {
      bytes.append(tok, start, pos - start);  // not a byte-level character: keep it as written
    }
  }
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string bytes;
  for (const int32_t id : ids) append_bytes(id, bytes);
  size_t strip = 0;
  while (strip < static_cast<size_t>(leading_spaces_stripped()) && strip < bytes.size() && bytes[strip] == ' ') ++strip;
  return repair_utf8(std::string_view(bytes).substr(strip));
}

void TextStream::push(int32_t id) {
  tokenizer_->append_bytes(id, bytes_);
  ++ids_;
  if (leading_) {
    // decode() strips leading spaces of the whole text, as many as the tokenizer's decoder says.
    const auto strip = static_cast<size_t>(tokenizer_->leading_spaces_stripped());
    while (stripped_ < strip && used_ < bytes_.size() && bytes_[used_] == ' ') {
      ++used_;
      ++stripped_;
    }
    leading_ = stripped_ < strip && used_ == bytes_.size();  // only spaces so far: more may come
  }
  used_ += repair_utf8_prefix(std::string_view(bytes_).substr(used_), text_);
  // Only the cut character's bytes need keeping.
  if (used_ > 64 && used_ * 2 > bytes_.size()) {
    bytes_.erase(0, used_);
    used_ = 0;
  }
}

std::string TextStream::decoded() const {
  // The bytes held are the start of a cut character: one U+FFFD each, as decode() shows them.
  return text_ + repair_utf8(std::string_view(bytes_).substr(used_));
}

}  // namespace mote
