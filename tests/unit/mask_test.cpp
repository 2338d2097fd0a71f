// Mask files (every bad input named by file, line and entry), the router's
// off/on/gain semantics, and the random-mask control.
#include <gtest/gtest.h>

#include <chrono>
#include <set>

#include <fmt/format.h>

#include "model_files.h"
#include "mote/model/mask_file.h"
#include "mote/model/router.h"
#include "mote/runtime/random_mask.h"

namespace mote {
namespace {

const ModelConfig& bundled_config() {
  static const ModelConfig c = load_model_config(test::bundled_model() / "config.json");
  return c;
}

class MaskFile : public testing::Test {
 protected:
  std::filesystem::path write(const std::string& name, const std::string& text) {
    test::write_file(dir_ / name, text);
    return dir_ / name;
  }
  ExpertMask read(const std::string& text) { return read_mask_file(write("m.ini", text), bundled_config(), "m"); }
  void expect_error(const std::string& text, int line, const std::string& needle) {
    const auto path = write("bad.ini", text);
    const std::string where = line > 0 ? path.string() + ":" + std::to_string(line) + ":" : path.string() + ":";
    EXPECT_ERROR_CONTAINS(read_mask_file(path, bundled_config(), "m"), where);
    EXPECT_ERROR_CONTAINS(read_mask_file(path, bundled_config(), "m"), needle);
  }
  test::ScratchDir dir_;
};

TEST_F(MaskFile, ReadsEntriesInBothLayerNumberings) {
  const ExpertMask d = read("[mote]\nlayer-index = decoder\noff = 1:5\non = 3:2\ngain = 5:7:0.5\n");
  EXPECT_TRUE(d.is_off(0, 5));
  EXPECT_TRUE(d.is_on(2, 2));
  EXPECT_FLOAT_EQ(d.gain(4, 7), 0.5f);
  EXPECT_EQ(d.count_off(), 1);
  const ExpertMask m =
      read("# comment\n[mote]\nlayer-index = moe\noff = 0:5\noff-policy = drop\non-policy = max\nshared-gain = 0\n");
  EXPECT_TRUE(m.is_off(0, 5));
  EXPECT_EQ(m.off_policy, OffPolicy::Drop);
  EXPECT_EQ(m.on_policy, OnPolicy::Max);
  EXPECT_EQ(m.shared_gain, 0.0f);
  // The description is itself a valid mask file describing the same mask.
  const ExpertMask again = read(m.description);
  EXPECT_EQ(again.off_bits, m.off_bits);
  EXPECT_EQ(again.off_policy, m.off_policy);
}

TEST_F(MaskFile, IncludesOtherFiles) {
  write("base.ini", "[mote]\nlayer-index = moe\noff = 1:1\n");
  const ExpertMask m =
      read("[mote]\nlayer-index = decoder\noff = 1:2\ninclude = " + (dir_ / "base.ini").string() + "\n");
  EXPECT_TRUE(m.is_off(0, 2));
  EXPECT_TRUE(m.is_off(1, 1));
  write("loop.ini", "[mote]\ninclude = " + (dir_ / "loop.ini").string() + "\n");
  EXPECT_ERROR_CONTAINS(read_mask_file(dir_ / "loop.ini", bundled_config(), "m"), "includes itself");
  EXPECT_ERROR_CONTAINS(read("[mote]\ninclude = " + (dir_ / "absent.ini").string() + "\n"), "cannot open mask file");
}

TEST_F(MaskFile, IncludesFanningOutAreReadOnceAndBounded) {
  // Nine levels of ten includes each of the next level: 10^9 paths through
  // nine small files. Each file is read once, so this takes milliseconds.
  write("level9.ini", "[mote]\nlayer-index = moe\noff = 4:9\n");
  for (int level = 8; level >= 0; --level) {
    std::string text = fmt::format("[mote]\nlayer-index = moe\noff = {}:{}\n", level % 5, level);
    for (int i = 0; i < 10; ++i) text += fmt::format("include = level{}.ini\n", level + 1);
    write(fmt::format("level{}.ini", level), text);
  }
  const auto start = std::chrono::steady_clock::now();
  const ExpertMask m = read_mask_file(dir_ / "level0.ini", bundled_config(), "m");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
  EXPECT_EQ(m.count_off(), 10);
  EXPECT_TRUE(m.is_off(4, 9));
  // More distinct files than a mask may include.
  for (int i = 0; i < 1100; ++i)
    write(fmt::format("many{}.ini", i), fmt::format("[mote]\nlayer-index = moe\ngain = 0:0:1\n"));
  std::string many = "[mote]\n";
  for (int i = 0; i < 1100; ++i) many += fmt::format("include = many{}.ini\n", i);
  EXPECT_ERROR_CONTAINS(read(many), "the mask includes more than 1024 files in all");
  // More bytes in all than a mask may hold: 80 includes of a 1 MiB file each, all different.
  std::string big = "[mote]\nlayer-index = moe\n";
  while (big.size() < (1u << 20) - 200) big += "# padding padding padding padding padding padding padding padding\n";
  std::string fat = "[mote]\n";
  for (int i = 0; i < 80; ++i) {
    write(fmt::format("big{}.ini", i), big + "gain = 0:0:1\n");
    fat += fmt::format("include = big{}.ini\n", i);
  }
  EXPECT_ERROR_CONTAINS(read(fat), "hold more than 64 MiB in all");
}

TEST_F(MaskFile, BadEntriesNameFileLineAndEntry) {
  expect_error("[mote]\nlayer-index = moe\noff = 5:1\n", 3, "off = 5:1: MoE layer 5 does not exist (the model has 5)");
  expect_error("[mote]\nlayer-index = decoder\n\noff = 0:1\n", 4, "off = 0:1: decoder layer 0 is a dense layer");
  expect_error("[mote]\nlayer-index = decoder\noff = 6:1\n", 3, "decoder layer 6 does not exist");
  expect_error("[mote]\nlayer-index = moe\non = 1:32\n", 3,
               "on = 1:32: expert 32 does not exist (the model has 32 routed experts)");
  expect_error("[mote]\nlayer-index = moe\noff = 1-2\n", 3, "off = 1-2: expected LAYER:EXPERT");
  expect_error("[mote]\nlayer-index = moe\noff = 1:-2\n", 3, "expected LAYER:EXPERT");
  expect_error("[mote]\nlayer-index = moe\ngain = 1:2\n", 3, "expected LAYER:EXPERT:GAIN");
  expect_error("[mote]\nlayer-index = moe\ngain = 1:2:-1\n", 3, "expected a finite gain >= 0");
  expect_error("[mote]\nlayer-index = moe\ngain = 1:2:nan\n", 3, "expected a finite gain >= 0");
  expect_error("[mote]\nlayer-index = moe\noff = 1:2\non = 1:2\n", 4, "on = 1:2 conflicts with an earlier 'off'");
  expect_error("[mote]\nlayer-index = moe\noff = 1:2\ngain = 1:2:2\n", 4,
               "gain = 1:2:2 is for an expert that is switched off");
  expect_error("[mote]\nlayer-index = moe\ngain = 1:2:2\ngain = 1:2:3\n", 4, "conflicts with an earlier gain");
  expect_error("[mote]\noff = 1:2\n", 0, "does not say how it numbers layers");
  expect_error("[mote]\nlayer-index = hf\noff = 1:2\n", 2, "layer-index = hf: not one of moe, decoder");
  expect_error("[mote]\noff-policy = remove\n", 2, "off-policy = remove: not one of reroute, drop, zero");
  expect_error("[mote]\non-policy = strong\n", 2, "on-policy = strong: not one of natural, max");
  expect_error("[mote]\nshared-gain = -2\n", 2, "shared-gain = -2");
  expect_error("[mote]\nlayer-index = moe\nturn-off = 1:2\n", 3, "key 'mote.turn-off'");
  expect_error("[other]\nx = 1\n", 2, "key 'other.x'");
}

// A mask written in a server's request: what the same file gives, the same
// messages (named by where it came from), and no include.
TEST_F(MaskFile, TextMasksReadAsFilesButIncludeNothing) {
  const std::string text = "[mote]\nlayer-index = moe\noff = 0:24\non = 2:3\ngain = 4:1:0.5\noff-policy = drop\n";
  const ExpertMask file = read(text);
  const ExpertMask inline_mask = parse_mask_text(text, bundled_config(), "m", "mask_ini");
  EXPECT_EQ(inline_mask.off_bits, file.off_bits);
  EXPECT_EQ(inline_mask.on_bits, file.on_bits);
  EXPECT_EQ(inline_mask.gains, file.gains);
  EXPECT_EQ(inline_mask.description, file.description);
  EXPECT_TRUE(inline_mask.well_formed());
  EXPECT_ERROR_CONTAINS(parse_mask_text("[mote]\nlayer-index = moe\noff = 5:0\n", bundled_config(), "m", "mask_ini"),
                        "mask_ini:3: off = 5:0: MoE layer 5 does not exist");
  EXPECT_ERROR_CONTAINS(parse_mask_text("[mote]\ninclude = " + write("other.ini", text).string() + "\n",
                                        bundled_config(), "m", "mask_ini"),
                        "mask_ini:2: include");
  EXPECT_ERROR_CONTAINS(parse_mask_text("[mote]\n", bundled_config(), "m", "mask_ini"), "no [mote] entries");
  EXPECT_ERROR_CONTAINS(parse_mask_text("[mote]\nbogus = 1\n", bundled_config(), "m", "mask_ini"), "mask_ini:2");
  EXPECT_ERROR_CONTAINS(parse_mask_text("[mote]\r\noff = 0:1\r\n", bundled_config(), "m", "mask_ini"), "mask_ini");
}

TEST_F(MaskFile, TooManyForcedExpertsAreRefused) {
  // top_k 4 per token; 5 forced in one layer.
  expect_error("[mote]\nlayer-index = moe\non = 0:0\non = 0:1\non = 0:2\non = 0:3\non = 0:4\n", 7,
               "5 experts forced on in MoE layer 0, more than the 4 a token takes");
  // topk_group 2 of 4 groups of 8: forced experts in groups 0, 1 and 2.
  expect_error("[mote]\nlayer-index = moe\non = 2:0\non = 2:8\non = 2:16\n", 5,
               "span 3 groups, more than topk_group 2");
}

// Router semantics on hand-made scores: groups of 8, keep 2 groups, top-4.
class RouterSemantics : public testing::Test {
 protected:
  void SetUp() override {
    logits_.assign(32, -3.0f);
    // Group 0 is strongest (0 > 1 > 2 > 3), group 1 next (8, 9).
    const float strong[] = {3.0f, 2.5f, 2.0f, 1.5f};
    for (int i = 0; i < 4; ++i) logits_[i] = strong[i];
    logits_[8] = 1.0f;
    logits_[9] = 0.5f;
    logits_[20] = 0.8f;
    bias_.assign(32, 0.0f);
  }
  struct Routed {
    std::vector<int32_t> experts;
    std::vector<float> weights;
    std::vector<uint8_t> dispatch;
  };
  Routed route(const ExpertMask* mask) {
    const Router router(bundled_config());
    Routed r{std::vector<int32_t>(4), std::vector<float>(4), std::vector<uint8_t>(4)};
    std::vector<float> scratch(router.scratch_size());
    router.route(logits_.data(), bias_.data(), 0, mask, r.experts.data(), r.weights.data(), r.dispatch.data(),
                 scratch.data());
    return r;
  }
  ExpertMask mask() const { return ExpertMask(5, 32); }
  std::vector<float> logits_, bias_;
};

TEST_F(RouterSemantics, RerouteDropZeroOnAndGain) {
  const Routed base = route(nullptr);
  EXPECT_EQ(base.experts, (std::vector<int32_t>{0, 1, 2, 3}));
  float sum = 0;
  for (float w : base.weights) sum += w;
  EXPECT_NEAR(sum, 2.5f, 1e-5f);

  ExpertMask off = mask();
  off.set_off(0, 1);
  const Routed reroute = route(&off);
  EXPECT_EQ(reroute.experts, (std::vector<int32_t>{0, 2, 3, 8}));  // next best takes the slot
  for (uint8_t d : reroute.dispatch) EXPECT_TRUE(d);

  off.off_policy = OffPolicy::Drop;
  const Routed drop = route(&off);
  EXPECT_EQ(drop.experts, (std::vector<int32_t>{0, 2, 3, -1}));                   // no replacement
  EXPECT_NEAR(drop.weights[0] + drop.weights[1] + drop.weights[2], 2.5f, 1e-5f);  // renormalised over the rest
  EXPECT_FALSE(drop.dispatch[3]);

  off.off_policy = OffPolicy::Zero;
  const Routed zero = route(&off);
  EXPECT_EQ(zero.experts, base.experts);  // routing unchanged
  EXPECT_EQ(zero.weights, base.weights);
  EXPECT_EQ(zero.dispatch, (std::vector<uint8_t>{1, 0, 1, 1}));  // but expert 1 is not sent the token

  ExpertMask on = mask();
  on.set_on(0, 20);  // weak expert in a group that would not be kept
  const Routed natural = route(&on);
  EXPECT_EQ(natural.experts[0], 20);
  EXPECT_TRUE(std::find(natural.experts.begin(), natural.experts.end(), 0) != natural.experts.end());
  EXPECT_LT(natural.weights[0], natural.weights[1]);  // its own (small) score
  on.on_policy = OnPolicy::Max;
  const Routed max = route(&on);
  EXPECT_EQ(max.experts, natural.experts);
  EXPECT_FLOAT_EQ(max.weights[0], *std::max_element(natural.weights.begin(), natural.weights.end()));

  ExpertMask gain = mask();
  gain.gains[gain.index(0, 2)] = 3.0f;
  const Routed scaled = route(&gain);
  EXPECT_EQ(scaled.experts, base.experts);
  EXPECT_FLOAT_EQ(scaled.weights[2], base.weights[2] * 3.0f);
  EXPECT_EQ(scaled.weights[0], base.weights[0]);
}

TEST(RandomMask, SeededExcludingAndLayerMatched) {
  const ModelConfig& c = bundled_config();
  ExpertMask target(5, 32);
  target.set_off(0, 5);
  target.set_off(2, 1);
  target.set_off(2, 7);
  const ExpertMask a = random_mask(c, {10, 42, &target, nullptr, OffPolicy::Reroute}, "r");
  const ExpertMask b = random_mask(c, {10, 42, &target, nullptr, OffPolicy::Reroute}, "r");
  const ExpertMask other = random_mask(c, {10, 43, &target, nullptr, OffPolicy::Reroute}, "r");
  EXPECT_EQ(a.off_bits, b.off_bits);
  EXPECT_NE(a.off_bits, other.off_bits);
  EXPECT_EQ(a.count_off(), 10);
  for (int l = 0; l < 5; ++l) {
    for (int e = 0; e < 32; ++e) {
      if (target.is_off(l, e)) {
        EXPECT_FALSE(a.is_off(l, e));
      }
    }
  }
  const ExpertMask like = random_mask(c, {0, 7, &target, &target, OffPolicy::Reroute}, "r");
  const int want[5] = {1, 0, 2, 0, 0};
  for (int l = 0; l < 5; ++l) {
    int n = 0;
    for (int e = 0; e < 32; ++e) n += like.is_off(l, e);
    EXPECT_EQ(n, want[l]) << "layer " << l;
  }
  EXPECT_ERROR_CONTAINS(random_mask(c, {200, 1, nullptr, nullptr, OffPolicy::Reroute}, "r"),
                        "200 random experts wanted but 160");
}

// Forced sets the router can honour: at most top-k (4) per MoE layer, within
// topk_group (2) of the 4 groups of 8; seeded; never an excluded expert.
TEST(RandomMask, ForcedOnSetsRespectTopKAndGroups) {
  const ModelConfig& c = bundled_config();
  ExpertMask target(5, 32);
  target.set_on(1, 3);
  target.set_on(1, 30);
  target.set_on(4, 9);
  RandomMaskSpec spec{15, 11, &target, nullptr, OffPolicy::Reroute, true, OnPolicy::Max};
  for (uint64_t seed = 11; seed < 31; ++seed) {
    spec.seed = seed;
    const ExpertMask m = random_mask(c, spec, "r");
    EXPECT_EQ(m.on_policy, OnPolicy::Max);
    EXPECT_EQ(m.count_off(), 0);
    int total = 0;
    for (int l = 0; l < 5; ++l) {
      std::set<int> groups;
      for (int e = 0; e < 32; ++e) {
        if (!m.is_on(l, e)) continue;
        EXPECT_FALSE(target.is_on(l, e));
        groups.insert(e / 8);
      }
      EXPECT_LE(m.count_on(l), 4);
      EXPECT_LE(groups.size(), 2u);
      total += m.count_on(l);
    }
    EXPECT_EQ(total, 15);
  }
  spec.seed = 5;
  EXPECT_EQ(random_mask(c, spec, "a").on_bits, random_mask(c, spec, "b").on_bits);
  // Layer-matched: as many on per layer as the target.
  spec.like = &target;
  const ExpertMask like = random_mask(c, spec, "r");
  const int want[5] = {0, 2, 0, 0, 1};
  for (int l = 0; l < 5; ++l) EXPECT_EQ(like.count_on(l), want[l]) << "layer " << l;
  spec.like = nullptr;
  spec.count = 21;
  EXPECT_ERROR_CONTAINS(random_mask(c, spec, "r"), "at most 20 fit (top-k 4 per layer, within 2 groups)");
  ExpertMask five(5, 32);
  for (int e = 0; e < 5; ++e) five.set_on(0, e);
  spec.like = &five;
  spec.exclude = nullptr;
  EXPECT_ERROR_CONTAINS(random_mask(c, spec, "r"), "more than the router's top-k");
}

}  // namespace
}  // namespace mote

namespace mote {
namespace {

TEST(ExpertMask, AddSwitchesIsTheUnionOfOffAndOn) {
  ExpertMask a(2, 70), b(2, 70);
  a.set_off(0, 3);
  b.set_off(1, 69);
  b.set_on(0, 64);
  a.add_switches(b);
  EXPECT_TRUE(a.is_off(0, 3));
  EXPECT_TRUE(a.is_off(1, 69));
  EXPECT_TRUE(a.is_on(0, 64));
  EXPECT_EQ(a.count_off(), 2);
  EXPECT_EQ(a.count_on(), 1);
  EXPECT_ERROR_CONTAINS(a.add_switches(ExpertMask(3, 70)), "is for 3 MoE layers x 70 experts, not 2 x 70");
}

}  // namespace
}  // namespace mote
