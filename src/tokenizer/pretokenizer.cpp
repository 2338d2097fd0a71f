#include "mote/tokenizer/pretokenizer.h"

#include <unicode/uregex.h>
#include <unicode/utext.h>

#include <nlohmann/json.hpp>

#include <mutex>
#include <vector>

#include "mote/util/error.h"

namespace mote {

// GPT-2's pattern, which a ByteLevel pre-tokenizer with use_regex applies.
static constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class SplitBehavior { Isolated, Removed, MergedWithPrevious, MergedWithNext };

// Split patterns run on ICU's regular expressions: tokenizers' own engine
// (Oniguruma) classifies characters by a recent Unicode, and ICU's tables
// (ICU 72: Unicode 15.0) are the newest a Debian library carries; PCRE2
// 10.42 stops at Unicode 14.
class RegexSplitter {
  static constexpr int32_t kTimeLimit = 20000;  // ICU's steps of its match loop

 public:
  RegexSplitter(std::string_view pattern, const std::string& where) : where_(where) {
    UParseError parse_error{};
    UErrorCode status = U_ZERO_ERROR;
    UText* source = utext_openUTF8(nullptr, pattern.data(), static_cast<int64_t>(pattern.size()), &status);
    regex_ = uregex_openUText(source, 0, &parse_error, &status);
    utext_close(source);
    if (U_FAILURE(status)) {
      fail("{}: pre-tokenizer regex does not compile at line {} offset {}: {}", where, parse_error.line,
           parse_error.offset, u_errorName(status));
    }
    // Bounds backtracking so that a hostile pattern or input fails instead of hanging.
    uregex_setTimeLimit(regex_, kTimeLimit, &status);
  }
  ~RegexSplitter() {
    for (URegularExpression* r : spare_) uregex_close(r);
    uregex_close(regex_);
  }
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Appends (begin, end, is_match) segments covering `text` (valid UTF-8).
  // Safe to call from several threads at once (a server's connections):
  // each call matches with a matcher of its own, cloned from the compiled
  // pattern once and then reused.
  void segments(std::string_view text, std::vector<std::tuple<size_t, size_t, bool>>& out) const {
    UErrorCode status = U_ZERO_ERROR;
    URegularExpression* regex = take_matcher(status);
    if (U_FAILURE(status)) fail("pre-tokenizer regex cannot be cloned: {}", u_errorName(status));
    struct Return {
      const RegexSplitter& owner;
      URegularExpression* regex;
      ~Return() { owner.give_back(regex); }
    } give_back_at_exit{*this, regex};
    UText* ut = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
    uregex_setUText(regex, ut, &status);
    size_t last = 0;
    while (U_SUCCESS(status) && uregex_findNext(regex, &status)) {
      const auto begin = static_cast<size_t>(uregex_start64(regex, 0, &status));
      const auto end = static_cast<size_t>(uregex_end64(regex, 0, &status));
      if (end == begin) continue;  // an empty match splits nothing
      if (begin > last) out.emplace_back(last, begin, false);
      out.emplace_back(begin, end, true);
      last = end;
    }
    UErrorCode detach = U_ZERO_ERROR;
    uregex_setText(regex, u"", 0, &detach);  // the matcher outlives `ut`
    utext_close(ut);
    if (status == U_REGEX_TIME_OUT || status == U_REGEX_STACK_OVERFLOW) {
      throw TokenizerBroken(
          fmt::format("{}: a pre-tokenizer Split regex ran past its time or stack limit on a text of {} bytes ({}): "
                      "the pattern backtracks badly, so the tokenizer is refused",
                      where_, text.size(), u_errorName(status)));
    }
    if (U_FAILURE(status)) fail("pre-tokenizer regex failed: {}", u_errorName(status));
    if (last < text.size()) out.emplace_back(last, text.size(), false);
  }

 private:
  URegularExpression* take_matcher(UErrorCode& status) const {
    {
      std::lock_guard lock(spare_mutex_);
      if (!spare_.empty()) {
        URegularExpression* r = spare_.back();
        spare_.pop_back();
        return r;
      }
    }
    URegularExpression* r = uregex_clone(regex_, &status);
    uregex_setTimeLimit(r, kTimeLimit, &status);  // a matcher setting, not the pattern's
    return r;
  }
  void give_back(URegularExpression* r) const {
    if (r == nullptr) return;
    std::lock_guard lock(spare_mutex_);
    spare_.push_back(r);
  }

  URegularExpression* regex_ = nullptr;  // the compiled pattern; matching uses clones
  mutable std::mutex spare_mutex_;
  mutable std::vector<URegularExpression*> spare_;
  std::string where_;
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
  fail(
      "{}: pre-tokenizer Split behavior '{}' is not supported (supported: Isolated, Removed, "
      "MergedWithPrevious, MergedWithNext)",
      where, name);
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
      if (pattern == item->end() || !pattern->is_object())
        fail("{}: Split pre-tokenizer needs a 'pattern' object", where);
      std::string regex;
      if (pattern->contains("Regex") && (*pattern)["Regex"].is_string()) {
        regex = (*pattern)["Regex"].get<std::string>();
      } else if (pattern->contains("String") && (*pattern)["String"].is_string()) {
        // A literal string pattern, quoted.
        regex = "\\Q" + (*pattern)["String"].get<std::string>() + "\\E";
      } else {
        fail("{}: Split pattern needs 'Regex' or 'String'", where);
      }
      Step step;
      step.regex = std::make_unique<RegexSplitter>(regex, where);
      const auto behavior = item->find("behavior");
      step.behavior =
          parse_behavior(behavior != item->end() && behavior->is_string() ? behavior->get<std::string>() : "", where);
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
      size_t pending_begin = SIZE_MAX;            // start of a piece still to be closed (MergedWithNext)
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
