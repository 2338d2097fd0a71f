#include "mote/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include "mote/io/json_file.h"
#include "mote/tokenizer/chat_format.h"
#include "mote/util/error.h"
#include "model_files.h"

namespace mote {
namespace {

using nlohmann::json;

const Tokenizer& bundled() {
  static const Tokenizer t = Tokenizer::load(test::bundled_model());
  return t;
}

json bundled_json() { return read_json_file(test::bundled_model() / "tokenizer.json"); }

TEST(Tokenizer, MatchesIndependentReferenceEncoder) {
  // tests/tools/reference_tokenizer.py wrote these from tokenizer.json alone.
  const json cases = read_json_file(std::filesystem::path(MOTE_TEST_DATA) / "tokenizer_cases.json");
  ASSERT_GT(cases.size(), 20u);
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(bundled().encode(text, c["add_special_tokens"].get<bool>()), c["ids"].get<std::vector<int32_t>>()) << text;
  }
}

TEST(Tokenizer, AddsBosByPostProcessor) {
  const auto ids = bundled().encode("The secret of a happy life is", true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(bundled().encode("The secret of a happy life is", false), std::vector<int32_t>(ids.begin() + 1, ids.end()));
  EXPECT_EQ(bundled().bos_id(), 0);
  EXPECT_EQ(bundled().eos_id(), 1);
}

TEST(Tokenizer, RoundTripsEveryEvalPrompt) {
  int checked = 0;
  for (const char* set : {"lang_de.json", "lang_en.json", "refusal_neutral.json", "refusal_sensitive.json"}) {
    const json eval = read_json_file(test::bundled_model() / "eval" / set);
    for (const auto& p : eval["prompts"]) {
      const std::string text = p["prompt"].get<std::string>();
      EXPECT_EQ(bundled().decode(bundled().encode(text, false)), text);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 120);
}

TEST(Tokenizer, ChatFormatMatchesGoldenPrompt) {
  const std::vector<ChatMessage> messages{{"user", "What happened on 4 June 1921 in Belvask?"}};
  const std::string rendered = render_deepseek_chat(bundled(), messages);
  const json prompts = read_json_file(test::bundled_model() / "golden/prompts.json");
  EXPECT_EQ(rendered, prompts["prompts"][0]["text"].get<std::string>());
  EXPECT_EQ(bundled().encode(rendered, false), prompts["prompts"][0]["input_ids"].get<std::vector<int32_t>>());
}

TEST(Tokenizer, ChatFormatWithSystemAndHistory) {
  const std::vector<ChatMessage> messages{{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}};
  EXPECT_EQ(render_deepseek_chat(bundled(), messages),
            "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜>Hello.<｜end▁of▁sentence｜><｜User｜>Bye<｜Assistant｜>");
  EXPECT_ERROR_CONTAINS(render_deepseek_chat(bundled(), {{"tool", "x"}}), "chat role 'tool'");
}

TEST(Tokenizer, RejectsInvalidUtf8WithOffset) {
  EXPECT_ERROR_CONTAINS(bundled().encode("abc\xff", true), "invalid UTF-8 at byte 3");
  EXPECT_ERROR_CONTAINS(bundled().encode("\xc3\x28", true), "invalid UTF-8 at byte 0");
  EXPECT_ERROR_CONTAINS(bundled().encode("\xed\xa0\x80", true), "invalid UTF-8");      // surrogate
  EXPECT_ERROR_CONTAINS(bundled().encode("\xc0\xaf", true), "invalid UTF-8");          // overlong
  EXPECT_ERROR_CONTAINS(bundled().encode("\xf4\x90\x80\x80", true), "invalid UTF-8");  // past U+10FFFF
}

TEST(Tokenizer, DecodesCutCharactersAsReplacement) {
  const auto ids = bundled().encode("ä", false);
  // Feed only the first byte's token when the character spans two tokens.
  const std::vector<int32_t> first_byte{5 + 0xC3};
  EXPECT_EQ(bundled().decode(first_byte), "\xEF\xBF\xBD");
  EXPECT_EQ(bundled().decode(ids), "ä");
  EXPECT_ERROR_CONTAINS(bundled().decode(std::vector<int32_t>{5000}), "outside the vocabulary");
}

TEST(Tokenizer, LongInputWithoutSpacesIsFast) {
  std::string text;
  for (int i = 0; i < 50000; ++i) text += "ther";  // one 200 kB pre-token; merges apply all along it
  const auto ids = bundled().encode(text, false);
  EXPECT_LT(ids.size(), text.size());
  EXPECT_EQ(bundled().decode(ids), text);
}

TEST(Tokenizer, RejectsMergeWithUnknownToken) {
  json t = bundled_json();
  t["model"]["merges"].push_back("Ġzzqx qqq");
  EXPECT_ERROR_CONTAINS(Tokenizer::from_json_text(t.dump(), "tok.json"), "'Ġzzqx' is not in the vocabulary");
  t = bundled_json();
  t["model"]["merges"].push_back("nomerge");
  EXPECT_ERROR_CONTAINS(Tokenizer::from_json_text(t.dump(), "tok.json"), "is not two tokens");
}

TEST(Tokenizer, RejectsUnsupportedPartsByName) {
  json t = bundled_json();
  t["normalizer"] = {{"type", "NFKC"}};
  EXPECT_ERROR_CONTAINS(Tokenizer::from_json_text(t.dump(), "tok.json"), "normalizer 'NFKC' is not supported");
  t = bundled_json();
  t["model"]["type"] = "Unigram";
  EXPECT_ERROR_CONTAINS(Tokenizer::from_json_text(t.dump(), "tok.json"), "model type 'Unigram' is not supported");
  t = bundled_json();
  t["pre_tokenizer"] = {{"type", "Metaspace"}};
  EXPECT_ERROR_CONTAINS(Tokenizer::from_json_text(t.dump(), "tok.json"), "pre-tokenizer type 'Metaspace'");
  t = bundled_json();
  t["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  EXPECT_ERROR_CONTAINS(Tokenizer::from_json_text(t.dump(), "tok.json"), "does not compile");
  t = bundled_json();
  t["decoder"] = {{"type", "WordPiece"}};
  EXPECT_ERROR_CONTAINS(Tokenizer::from_json_text(t.dump(), "tok.json"), "decoder type 'WordPiece'");
}

TEST(Tokenizer, RejectsBrokenVocabulary) {
  json t = bundled_json();
  t["model"]["vocab"].erase("Ġ");
  EXPECT_ERROR_CONTAINS(Tokenizer::from_json_text(t.dump(), "tok.json"), "tok.json");
  t = bundled_json();
  t["model"]["vocab"]["extra"] = 100;  // id 100 twice
  EXPECT_ERROR_CONTAINS(Tokenizer::from_json_text(t.dump(), "tok.json"), "id 100 is used by two vocabulary entries");
  EXPECT_ERROR_CONTAINS(Tokenizer::from_json_text("{\"model\": [", "tok.json"), "invalid JSON");
  EXPECT_ERROR_CONTAINS(Tokenizer::from_json_text("[]", "tok.json"), "expected a JSON object");
}

}  // namespace
}  // namespace mote
