// Request bodies of `mote serve` (server/api.h): every field read with its
// OpenAI meaning, every bad one a 400 naming it.
#include "mote/server/api.h"

#include <gtest/gtest.h>

namespace mote::api {
namespace {

const auto kNoVariables = [](const std::string&) { return false; };

ApiRequest chat(const std::string& body, const std::function<bool(const std::string&)>& reads = kNoVariables) {
  return parse_request(Endpoint::Chat, body, reads);
}
ApiRequest completions(const std::string& body) { return parse_request(Endpoint::Completions, body, kNoVariables); }

// The field a 400 names, or "" when the body is accepted.
std::string refused(Endpoint endpoint, const std::string& body) {
  try {
    (void)parse_request(endpoint, body, kNoVariables);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400) << body;
    EXPECT_EQ(e.type(), "invalid_request_error");
    return e.param().empty() ? "(body)" : e.param();
  }
  return "";
}

TEST(ApiRequest, ReadsEveryChatField) {
  const ApiRequest r = chat(
      R"({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 7,
          "temperature": 0.5, "top_p": 0.9, "seed": -3, "stop": ["a", "b"], "n": 2, "stream": true,
          "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 3, "mask": "off",
          "record": true, "user": "u", "frequency_penalty": 0, "reasoning_effort": "high"})",
      [](const std::string& key) { return key == "reasoning_effort"; });
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(*r.temperature, 0.5f);
  EXPECT_FLOAT_EQ(*r.top_p, 0.9f);
  EXPECT_EQ(*r.seed, static_cast<uint64_t>(-3));
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.n, 2);
  EXPECT_TRUE(r.stream && r.include_usage && r.logprobs && r.record);
  EXPECT_EQ(r.top_logprobs, 3);
  EXPECT_EQ(*r.mask, "off");
  // The conversation as a prompt file holds it: messages first, then the template's variables.
  EXPECT_EQ(r.chat->dump(), R"({"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"high"})");
}

TEST(ApiRequest, JoinsTextPartsAndTakesNullAsNotGiven) {
  const ApiRequest r = chat(
      R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
               "max_tokens": null, "temperature": null})");
  EXPECT_EQ((*r.chat)["messages"][0]["content"], "a\nb");
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_FALSE(r.temperature.has_value());
}

TEST(ApiRequest, ReadsEveryFormOfCompletionsPrompt) {
  EXPECT_EQ(*completions(R"({"prompt": "x"})").prompts.at(0).text, "x");
  const auto ids = completions(R"({"prompt": [1, 2, 3], "echo": true, "logprobs": 0})");
  EXPECT_EQ(ids.prompts.at(0).ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_TRUE(ids.echo && ids.logprobs);
  EXPECT_EQ(ids.top_logprobs, 0);
  const auto lists = completions(R"({"prompt": [[1], [2, 3]], "logprobs": 5})");
  ASSERT_EQ(lists.prompts.size(), 2u);
  EXPECT_EQ(lists.prompts[1].ids, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(lists.top_logprobs, 5);
  EXPECT_EQ(completions(R"({"prompt": ["a", "b"]})").prompts.size(), 2u);
}

TEST(ApiRequest, RefusesEachBadFieldByName) {
  const auto c = Endpoint::Chat, t = Endpoint::Completions;
  EXPECT_EQ(refused(c, "{"), "(body)");
  EXPECT_EQ(refused(c, "[1]"), "(body)");
  EXPECT_EQ(refused(c, "\"\xff\""), "(body)");
  EXPECT_EQ(refused(c, std::string(100, '[') + std::string(100, ']')), "(body)");
  EXPECT_EQ(refused(c, R"({})"), "messages");
  EXPECT_EQ(refused(c, R"({"messages": []})"), "messages");
  EXPECT_EQ(refused(c, R"({"messages": [{"content": "x"}]})"), "messages");
  EXPECT_EQ(refused(c, R"({"messages": [{"role": "user", "content": 5}]})"), "messages[0].content");
  const std::string m = R"("messages": [{"role": "user", "content": "x"}])";
  EXPECT_EQ(refused(c, "{" + m + R"(, "max_tokens": -1})"), "max_tokens");
  EXPECT_EQ(refused(c, "{" + m + R"(, "max_tokens": 1.5})"), "max_tokens");
  EXPECT_EQ(refused(c, "{" + m + R"(, "temperature": 3})"), "temperature");
  EXPECT_EQ(refused(c, "{" + m + R"(, "temperature": "hot"})"), "temperature");
  EXPECT_EQ(refused(c, "{" + m + R"(, "top_p": 0})"), "top_p");
  EXPECT_EQ(refused(c, "{" + m + R"(, "n": 17})"), "n");
  EXPECT_EQ(refused(c, "{" + m + R"(, "stop": ["a", "b", "c", "d", "e"]})"), "stop");
  EXPECT_EQ(refused(c, "{" + m + R"(, "stop": [""]})"), "stop");
  EXPECT_EQ(refused(c, "{" + m + R"(, "top_logprobs": 2})"), "top_logprobs");
  EXPECT_EQ(refused(c, "{" + m + R"(, "logprobs": true, "top_logprobs": 21})"), "top_logprobs");
  EXPECT_EQ(refused(c, "{" + m + R"(, "stream_options": {"include_usage": true}})"), "stream_options");
  EXPECT_EQ(refused(c, "{" + m + R"(, "presence_penalty": 0.5})"), "presence_penalty");
  EXPECT_EQ(refused(c, "{" + m + R"(, "mask": ""})"), "mask");
  EXPECT_EQ(refused(c, "{" + m + R"(, "mask_ini": ""})"), "mask_ini");
  EXPECT_EQ(refused(c, "{" + m + R"(, "mask_ini": 7})"), "mask_ini");
  EXPECT_EQ(refused(c, "{" + m + R"(, "mask": "a", "mask_ini": "[mote]"})"), "mask_ini");
  EXPECT_EQ(refused(c, "{" + m + R"(, "reasoning_effort": "high"})"), "reasoning_effort");  // not the template's
  EXPECT_EQ(refused(c, "{" + m + R"(, "echo": true})"), "echo");                            // completions only
  EXPECT_EQ(refused(t, R"({"prompt": ""})"), "prompt");
  EXPECT_EQ(refused(t, R"({"prompt": []})"), "prompt");
  EXPECT_EQ(refused(t, R"({"prompt": [1, -2]})"), "prompt");
  EXPECT_EQ(refused(t, R"({"prompt": [[1], 2]})"), "prompt");
  EXPECT_EQ(refused(t, R"({"prompt": "x", "echo": true, "stream": true})"), "echo");
  EXPECT_EQ(refused(t, R"({"prompt": "x", "messages": []})"), "messages");
  EXPECT_EQ(refused(t, R"({"prompt": "x"})"), "");
}

TEST(ApiRequest, TokenizeAndDetokenize) {
  const auto reads = [](const std::string& key) { return key == "enable_thinking"; };
  EXPECT_EQ(*parse_tokenize(R"({"content": "hi"})", reads).text, "hi");
  const auto t = parse_tokenize(R"({"messages": [{"role": "user", "content": "x"}], "enable_thinking": false})", reads);
  EXPECT_EQ(t.chat->dump(), R"({"messages":[{"role":"user","content":"x"}],"enable_thinking":false})");
  EXPECT_THROW(parse_tokenize(R"({"prompt": "a", "content": "b"})", reads), ApiError);
  EXPECT_THROW(parse_tokenize(R"({"prompt": "a", "enable_thinking": true})", reads), ApiError);
  EXPECT_EQ(parse_detokenize(R"({"tokens": [0, 5]})"), (std::vector<int32_t>{0, 5}));
  EXPECT_THROW(parse_detokenize(R"({"tokens": "x"})"), ApiError);
  EXPECT_THROW(parse_detokenize(R"({})"), ApiError);
}

TEST(ApiRequest, ErrorObjectsHaveOpenAIsShape) {
  const ApiError e(429, "rate_limit_error", "wait", "");
  EXPECT_EQ(e.body().dump(), R"({"error":{"message":"wait","type":"rate_limit_error","param":null,"code":null}})");
}

TEST(ApiRequest, SecretsCompareWhole) {
  EXPECT_TRUE(same_secret("abc", "abc"));
  EXPECT_FALSE(same_secret("abd", "abc"));
  EXPECT_FALSE(same_secret("ab", "abc"));
  EXPECT_FALSE(same_secret("abcd", "abc"));
  EXPECT_FALSE(same_secret("", "abc"));
}

}  // namespace
}  // namespace mote::api
