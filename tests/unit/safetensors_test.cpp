#include "mote/io/safetensors.h"

#include <gtest/gtest.h>

#include "mote/util/error.h"
#include "test_files.h"

namespace mote {
namespace {

using nlohmann::json;
using test::safetensors_bytes;
using test::ScratchDir;
using test::write_file;

// Expects opening `bytes` as a safetensors file to fail with a message
// containing `needle` and the file's path.
void expect_rejected(const std::string& bytes, const std::string& needle) {
  ScratchDir dir;
  const auto path = dir / "model.safetensors";
  write_file(path, bytes);
  try {
    SafetensorsFile file(path);
    FAIL() << "accepted; expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
}

json tensor(const char* dtype, std::vector<int64_t> shape, uint64_t begin, uint64_t end) {
  return {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, end}}};
}

TEST(Safetensors, ReadsValidFile) {
  ScratchDir dir;
  const json header = {
      {"__metadata__", {{"format", "pt"}}}, {"a", tensor("F32", {2, 2}, 0, 16)}, {"b", tensor("BF16", {3}, 16, 22)}};
  write_file(dir / "model.safetensors",
             safetensors_bytes(header, test::as_bytes({1, 2, 3, 4}) + std::string(6, '\x3f')));
  SafetensorsFile file(dir / "model.safetensors");
  ASSERT_EQ(file.tensors().size(), 2u);
  const TensorView& a = file.tensors().at("a");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(a.nbytes, 16u);
  float third;
  std::memcpy(&third, a.data + 8, 4);
  EXPECT_EQ(third, 3.0f);
  EXPECT_EQ(file.tensors().at("b").dtype, DType::BF16);
}

TEST(Safetensors, RejectsTruncatedFile) { expect_rejected("abc", "truncated"); }

TEST(Safetensors, RejectsHeaderLengthPastEnd) {
  std::string bytes = safetensors_bytes(json::object(), "");
  bytes[0] = static_cast<char>(0xFF);  // header length now far past the end
  expect_rejected(bytes, "runs past the end of the file");
}

TEST(Safetensors, RejectsHugeHeaderLength) {
  std::string bytes(16, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(0xFF);
  expect_rejected(bytes, "runs past the end of the file");
}

TEST(Safetensors, RejectsInvalidJson) {
  std::string bytes(8, '\0');
  const std::string h = "{\"a\": [1, 2";
  bytes[0] = static_cast<char>(h.size());
  expect_rejected(bytes + h, "invalid JSON");
}

TEST(Safetensors, RejectsNonObjectHeader) {
  expect_rejected(safetensors_bytes(json::array({1, 2}), ""), "not a JSON object");
}

TEST(Safetensors, RejectsOffsetsOutOfRange) {
  expect_rejected(safetensors_bytes({{"a", tensor("F32", {4}, 0, 16)}}, std::string(8, '\0')),
                  "run past the end of the data");
}

TEST(Safetensors, RejectsOffsetsThatEndBeforeTheyBegin) {
  expect_rejected(safetensors_bytes({{"a", tensor("F32", {0}, 8, 4)}}, std::string(8, '\0')), "end before they begin");
}

TEST(Safetensors, RejectsOverlappingTensors) {
  const json header = {{"a", tensor("F32", {2}, 0, 8)}, {"b", tensor("F32", {2}, 4, 12)}};
  expect_rejected(safetensors_bytes(header, std::string(12, '\0')), "overlap");
}

TEST(Safetensors, RejectsLengthThatDisagreesWithShape) {
  expect_rejected(safetensors_bytes({{"a", tensor("BF16", {3}, 0, 8)}}, std::string(8, '\0')), "needs 6");
}

TEST(Safetensors, RejectsShapeThatOverflows) {
  const json header = {{"a", tensor("F32", {1LL << 40, 1LL << 40}, 0, 8)}};
  expect_rejected(safetensors_bytes(header, std::string(8, '\0')), "overflows");
}

TEST(Safetensors, RejectsUnknownDtype) {
  expect_rejected(safetensors_bytes({{"a", tensor("Q4_K", {2}, 0, 2)}}, std::string(2, '\0')), "unknown dtype 'Q4_K'");
}

TEST(Safetensors, RejectsMalformedEntries) {
  expect_rejected(safetensors_bytes({{"a", {{"dtype", "F32"}, {"shape", {1}}}}}, ""), "data_offsets");
  expect_rejected(safetensors_bytes({{"a", {{"dtype", "F32"}, {"shape", {-1}}, {"data_offsets", {0, 0}}}}}, ""),
                  "non-negative");
  expect_rejected(safetensors_bytes({{"a", 5}}, ""), "not an object");
}

TEST(WeightStore, MissingTensorIsNamed) {
  ScratchDir dir;
  write_file(dir / "model.safetensors", safetensors_bytes({{"a", tensor("F32", {1}, 0, 4)}}, std::string(4, '\0')));
  const WeightStore store = WeightStore::open_model_dir(dir.path());
  EXPECT_NE(store.find("a"), nullptr);
  try {
    store.get("model.norm.weight");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor 'model.norm.weight'"), std::string::npos) << e.what();
  }
}

TEST(WeightStore, ReadsShardsThroughIndex) {
  ScratchDir dir;
  write_file(dir / "model-00001-of-00002.safetensors",
             safetensors_bytes({{"a", tensor("F32", {1}, 0, 4)}}, std::string(4, '\0')));
  write_file(dir / "model-00002-of-00002.safetensors",
             safetensors_bytes({{"b", tensor("F32", {1}, 0, 4)}}, std::string(4, '\0')));
  const json index = {
      {"metadata", json::object()},
      {"weight_map", {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}}}};
  write_file(dir / "model.safetensors.index.json", index.dump());
  const WeightStore store = WeightStore::open_model_dir(dir.path());
  EXPECT_NE(store.find("a"), nullptr);
  EXPECT_NE(store.find("b"), nullptr);
  EXPECT_NE(store.describe().find("2 shards"), std::string::npos);
}

TEST(WeightStore, RejectsIndexThatDisagreesWithShards) {
  ScratchDir dir;
  write_file(dir / "s1.safetensors", safetensors_bytes({{"a", tensor("F32", {1}, 0, 4)}}, std::string(4, '\0')));
  write_file(dir / "model.safetensors.index.json", json{{"weight_map", {{"b", "s1.safetensors"}}}}.dump());
  EXPECT_THROW(
      {
        try {
          WeightStore::open_model_dir(dir.path());
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("tensor 'b' is mapped to s1.safetensors but that file does not hold it"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      Error);
}

TEST(WeightStore, RejectsShardOutsideModelDirectory) {
  ScratchDir dir;
  write_file(dir / "model.safetensors.index.json", json{{"weight_map", {{"a", "../elsewhere.safetensors"}}}}.dump());
  EXPECT_THROW(WeightStore::open_model_dir(dir.path()), Error);
}

TEST(WeightStore, RejectsMissingShardAndMissingWeights) {
  ScratchDir dir;
  EXPECT_THROW(WeightStore::open_model_dir(dir.path()), Error);
  write_file(dir / "model.safetensors.index.json", json{{"weight_map", {{"a", "absent.safetensors"}}}}.dump());
  EXPECT_THROW(WeightStore::open_model_dir(dir.path()), Error);
}

TEST(WeightStore, RejectsTensorInTwoShards) {
  ScratchDir dir;
  write_file(dir / "s1.safetensors", safetensors_bytes({{"a", tensor("F32", {1}, 0, 4)}}, std::string(4, '\0')));
  write_file(dir / "s2.safetensors", safetensors_bytes({{"a", tensor("F32", {1}, 0, 4)}}, std::string(4, '\0')));
  EXPECT_THROW(WeightStore::open_files({dir / "s1.safetensors", dir / "s2.safetensors"}), Error);
}

}  // namespace
}  // namespace mote
