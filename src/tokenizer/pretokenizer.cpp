#include "mote/tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#include "mote/util/error.h"

namespace mote {

// GPT-2's pattern, which a ByteLevel pre-tokenizer with use_regex applies.
static constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class SplitBehavior { Isolated, Removed, MergedWithPrevious, MergedWithNext };

class RegexSplitter {
 public:
  RegexSplitter(std::string_view pattern, const std::string& where) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                          &error_code, &error_offset, nullptr);
    if (code_ == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof(message));
      fail("{}: pre-tokenizer regex does not compile at offset {}: {}", where, error_offset,
           reinterpret_cast<const char*>(message));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
    context_ = pcre2_match_context_create(nullptr);
    // Bounds backtracking so that a hostile pattern or input fails instead of hanging.
    pcre2_set_match_limit(context_, 10'000'000);
  }
  ~RegexSplitter() {
    pcre2_match_context_free(context_);
    pcre2_code_free(code_);
  }
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Appends (begin, end, is_match) segments covering `text`.
  void segments(std::string_view text, std::vector<std::tuple<size_t, size_t, bool>>& out) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    size_t pos = 0;
    size_t last = 0;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    while (pos <= text.size()) {
      // The text was validated as UTF-8 once, up front.
      const int rc = pcre2_match(code_, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md, context_);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        pcre2_match_data_free(md);
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(rc, message, sizeof(message));
        fail("pre-tokenizer regex failed: {}", reinterpret_cast<const char*>(message));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t begin = ov[0];
      const size_t end = ov[1];
      if (end == begin) {
        // An empty match splits nothing; step over one whole character.
        if (begin >= text.size()) break;
        pos = begin + 1;
        while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
        continue;
      }
      if (begin > last) out.emplace_back(last, begin, false);
      out.emplace_back(begin, end, true);
      last = pos = end;
    }
    if (last < text.size()) out.emplace_back(last, text.size(), false);
    pcre2_match_data_free(md);
  }

 private:
  pcre2_code* code_ = nullptr;
  pcre2_match_context* context_ = nullptr;
};

struct PreTokenizer::Step {
  std::unique_ptr<RegexSplitter> regex;
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
};

namespace {

SplitBehavior parse_behavior(const std::string& name, const std::string& where) {
  if (name == "Isolated") return SplitBehavior::Isolated;
  if (name == "Removed") return SplitBehavior::Removed;
  if (name == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::MergedWithNext;
  fail("{}: pre-tokenizer Split behavior '{}' is not supported (supported: Isolated, Removed, "
       "MergedWithPrevious, MergedWithNext)", where, name);
}

}  // namespace

PreTokenizer::PreTokenizer(const nlohmann::json& spec, const std::string& where) {
  if (spec.is_null()) return;
  std::vector<const nlohmann::json*> items;
  if (!spec.is_object()) fail("{}: pre_tokenizer must be an object or null", where);
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    const auto it = spec.find("pretokenizers");
    if (it == spec.end() || !it->is_array()) fail("{}: Sequence pre_tokenizer needs an array 'pretokenizers'", where);
    for (const auto& item : *it) items.push_back(&item);
  } else {
    items.push_back(&spec);
  }
  for (const auto* item : items) {
    if (!item->is_object()) fail("{}: pre-tokenizer entry must be an object", where);
    const std::string kind = item->value("type", "");
    if (kind == "Split") {
      const auto pattern = item->find("pattern");
      if (pattern == item->end() || !pattern->is_object()) fail("{}: Split pre-tokenizer needs a 'pattern' object", where);
      std::string regex;
      if (pattern->contains("Regex") && (*pattern)["Regex"].is_string()) {
        regex = (*pattern)["Regex"].get<std::string>();
      } else if (pattern->contains("String") && (*pattern)["String"].is_string()) {
        // A literal string pattern: escape it for PCRE2.
        regex = "\\Q" + (*pattern)["String"].get<std::string>() + "\\E";
      } else {
        fail("{}: Split pattern needs 'Regex' or 'String'", where);
      }
      Step step;
      step.regex = std::make_unique<RegexSplitter>(regex, where);
      const auto behavior = item->find("behavior");
      step.behavior = parse_behavior(behavior != item->end() && behavior->is_string() ? behavior->get<std::string>() : "", where);
      const auto invert = item->find("invert");
      step.invert = invert != item->end() && invert->is_boolean() && invert->get<bool>();
      steps_.push_back(std::move(step));
    } else if (kind == "ByteLevel") {
      // The byte mapping itself happens before BPE; here only the optional
      // GPT-2 split and prefix space matter.
      if (item->value("add_prefix_space", false)) add_prefix_space_ = true;
      if (item->value("use_regex", true)) {
        Step step;
        step.regex = std::make_unique<RegexSplitter>(kGpt2Pattern, where);
        steps_.push_back(std::move(step));
      }
    } else {
      fail("{}: pre-tokenizer type '{}' is not supported (supported: Split, ByteLevel, Sequence)", where, kind);
    }
  }
}

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  if (!text.empty()) pieces.push_back(text);
  std::vector<std::tuple<size_t, size_t, bool>> segs;
  for (const Step& step : steps_) {
    std::vector<std::string_view> next;
    for (std::string_view piece : pieces) {
      segs.clear();
      step.regex->segments(piece, segs);
      const size_t first_of_piece = next.size();  // merging never crosses into an earlier piece
      size_t pending_begin = SIZE_MAX;             // start of a piece still to be closed (MergedWithNext)
      for (auto [b, e, is_match] : segs) {
        const bool delimiter = is_match != step.invert;
        switch (step.behavior) {
          case SplitBehavior::Isolated:
            next.push_back(piece.substr(b, e - b));
            break;
          case SplitBehavior::Removed:
            if (!delimiter) next.push_back(piece.substr(b, e - b));
            break;
          case SplitBehavior::MergedWithPrevious:
            if (delimiter && next.size() > first_of_piece) {
              next.back() = std::string_view(next.back().data(), next.back().size() + (e - b));
            } else {
              next.push_back(piece.substr(b, e - b));
            }
            break;
          case SplitBehavior::MergedWithNext:
            if (delimiter) {
              if (pending_begin == SIZE_MAX) pending_begin = b;
            } else {
              const size_t start = pending_begin == SIZE_MAX ? b : pending_begin;
              next.push_back(piece.substr(start, e - start));
              pending_begin = SIZE_MAX;
            }
            break;
        }
      }
      if (pending_begin != SIZE_MAX) next.push_back(piece.substr(pending_begin));
    }
    pieces = std::move(next);
  }
  return pieces;
}

}  // namespace mote
