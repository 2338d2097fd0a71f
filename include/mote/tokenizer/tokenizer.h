// The model's tokenizer, read from tokenizer.json (byte-level BPE, its
// pre-tokenizer, added tokens and post-processor) and tokenizer_config.json
// (bos/eos). Encoding follows Hugging Face: added tokens written in the text
// are recognised as such, and the post-processor adds special tokens when
// asked to.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mote/tokenizer/bpe.h"
#include "mote/tokenizer/normalizer.h"
#include "mote/tokenizer/pretokenizer.h"

namespace mote {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
};

class Tokenizer {
 public:
  // Reads `dir/tokenizer.json` and, when present, `dir/tokenizer_config.json`.
  static Tokenizer load(const std::filesystem::path& dir);
  // Reads a tokenizer.json given as text (`where` names it in errors).
  static Tokenizer from_json_text(std::string_view text, const std::string& where);

  // Encodes UTF-8 `text` (invalid UTF-8 is an Error naming the byte offset).
  // With `add_special_tokens`, the post-processor's template is applied
  // (for DeepSeek models: BOS prepended).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;
  // Decodes ids to text, special tokens kept; byte sequences that are not
  // valid UTF-8 (a character cut between tokens) become U+FFFD.
  std::string decode(std::span<const int32_t> ids) const;
  // The bytes decode() joins for one id, before the repair of UTF-8 and the
  // strip of leading spaces (TextStream decodes with them).
  void append_bytes(int32_t id, std::string& bytes) const;
  // How many leading spaces of the joined bytes decode() strips at most.
  int leading_spaces_stripped() const { return byte_fallback_ ? decode_strip_ : 0; }

  int32_t vocab_size() const { return static_cast<int32_t>(id_to_token_.size()); }
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  const std::string& token(int32_t id) const { return id_to_token_.at(static_cast<size_t>(id)); }
  // Returns the id of an added token by its exact content, or -1.
  int32_t added_token_id(std::string_view content) const;
  // Returns the id of a vocabulary entry or added token spelled exactly
  // `content` (in the vocabulary's own spelling, "Ġ" for a byte-level
  // space), or -1.
  int32_t token_id(std::string_view content) const;

 private:
  static Tokenizer from_json(const nlohmann::json& j, const std::string& where);
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;
  void apply_config(const std::filesystem::path& config_path);

  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, int32_t> token_to_id_;
  std::vector<AddedToken> added_;
  // Byte trie of the added tokens' contents: every text position is tried
  // once against all of them (DeepSeek has 818), longest match first.
  struct TrieNode {
    std::vector<std::pair<uint8_t, int32_t>> next;  // sorted by byte
    int32_t added = -1;                             // index into added_ of a token ending here
  };
  std::vector<TrieNode> trie_;
  // The longest added token starting at text[pos], or null.
  const AddedToken* match_added(std::string_view text, size_t pos) const;
  std::vector<bool> is_added_;           // by id
  std::array<int32_t, 256> byte_ids_{};  // id of each byte's token (byte-level character, or <0xNN>)
  BpeMerges merges_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  std::vector<int32_t> template_prefix_, template_suffix_;
  bool ignore_merges_ = false;  // a pre-tokenized piece that is a vocabulary entry skips the merges
  bool byte_fallback_ = false;  // SentencePiece-style BPE: characters, bytes as <0xNN> tokens
  std::vector<std::pair<std::string, std::string>> decode_replace_;  // its decoder's Replace steps
  int decode_strip_ = 0;                                             // leading spaces its decoder strips
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
};

// decode() for ids that come one at a time, each in time proportional to
// its own bytes. text() only grows: a character still cut between tokens
// waits for its last byte (decode() would show it as U+FFFD).
class TextStream {
 public:
  explicit TextStream(const Tokenizer& tokenizer) : tokenizer_(&tokenizer) {}
  void push(int32_t id);
  size_t size() const { return ids_; }  // ids pushed
  // The complete characters so far.
  const std::string& text() const { return text_; }
  // decode() of the ids so far, and its length in bytes.
  std::string decoded() const;
  size_t decoded_size() const { return text_.size() + 3 * (bytes_.size() - used_); }

 private:
  const Tokenizer* tokenizer_;
  std::string bytes_, text_;
  size_t used_ = 0;      // bytes_ repaired into text_ (or stripped)
  size_t stripped_ = 0;  // leading spaces stripped
  bool leading_ = true;  // nothing but stripped spaces has come
  size_t ids_ = 0;
};

}  // namespace mote
