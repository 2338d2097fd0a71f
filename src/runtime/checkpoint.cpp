#include "mote/runtime/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <vector>

#include <fmt/format.h>

#include "mote/io/json_file.h"
#include "mote/util/error.h"
#include "mote/util/hash.h"

namespace mote {
namespace {

std::vector<std::filesystem::path> parts_in(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> parts;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return parts;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("part-") && name.ends_with(".h5")) parts.push_back(entry.path());
  }
  std::sort(parts.begin(), parts.end());
  return parts;
}

template <typename T>
std::vector<T> read_vector(hid_t group, const char* name, hid_t mem_type, const std::string& where) {
  H5Handle ds(H5Dopen2(group, name, H5P_DEFAULT), H5Dclose);
  if (ds.id() < 0) fail("{}: missing dataset '{}'", where, name);
  H5Handle space(H5Dget_space(ds.id()), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space.id());
  if (n < 0 || n > (hssize_t{1} << 28)) fail("{}: dataset '{}' has an implausible size", where, name);
  std::vector<T> out(static_cast<size_t>(std::max<hssize_t>(n, 0)));
  if (n > 0 && H5Dread(ds.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    fail("{}: cannot read '{}'", where, name);
  return out;
}

// Size and FNV-1a hash of a part, recorded beside it when it is complete
// and checked before libhdf5 is let near it: a part cut short or damaged
// since (or any file that was never a part) is refused by name.
std::string part_summary(const std::filesystem::path& part) {
  std::ifstream in(part, std::ios::binary);
  if (!in) fail("{}: cannot read checkpoint part", part.string());
  uint64_t h = kFnv1aBasis, size = 0;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<size_t>(in.gcount());
    h = fnv1a(h, std::string_view(buffer.data(), got));
    size += got;
  }
  return fmt::format("mote-checkpoint-part {} {:016x}\n", size, h);
}

std::filesystem::path summary_path(const std::filesystem::path& part) {
  auto p = part;
  p += ".sum";
  return p;
}

void write_summary(const std::filesystem::path& temp_part, const std::filesystem::path& final_part) {
  const auto path = summary_path(final_part);
  std::ofstream out(path);
  out << part_summary(temp_part);
  out.close();
  if (!out) fail("{}: cannot write (disk full?)", path.string());
}

constexpr uint64_t kMaxPartBytes = 64ull << 30;

void verify_part(const std::filesystem::path& part) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(part, ec);
  if (ec || size > kMaxPartBytes) fail("{}: not a readable checkpoint part of at most 64 GiB", part.string());
  std::string expected;
  try {
    expected = read_input_file(summary_path(part), "checkpoint summary", 256);
  } catch (const Error&) {
    fail("{}: has no readable {} beside it, so it was not completed by mote; remove it to run its requests again",
         part.string(), summary_path(part).filename().string());
  }
  if (part_summary(part) != expected) {
    fail("{}: does not match {} (cut short or damaged since it was written); remove both to run its requests again",
         part.string(), summary_path(part).filename().string());
  }
}

}  // namespace

Checkpoint::Checkpoint(std::filesystem::path dir, std::string fingerprint, int every)
    : dir_(std::move(dir)), fingerprint_(std::move(fingerprint)), every_(every) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir_, ec)) return;  // created with the first part
  const auto fp_path = dir_ / "job-fingerprint.txt";
  if (std::filesystem::exists(fp_path, ec)) {
    const std::string existing = read_text_file(fp_path);
    if (existing != fingerprint_) {
      fail(
          "{}: the checkpoint belongs to a different job (prompts, model or options changed); remove it to start this "
          "job over",
          dir_.string());
    }
  }
  // Parts left half-written by a crash are discarded; complete ones are kept.
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    if (entry.path().filename().string().find(".tmp") != std::string::npos) std::filesystem::remove(entry.path(), ec);
  }
  next_part_ = static_cast<int>(parts_in(dir_).size());
}

void Checkpoint::ensure_dir() {
  const auto fp_path = dir_ / "job-fingerprint.txt";
  std::error_code ec;
  if (std::filesystem::exists(fp_path, ec)) return;
  std::filesystem::create_directories(dir_, ec);
  if (ec) fail("{}: cannot create the checkpoint directory: {}", dir_.string(), ec.message());
  std::ofstream out(fp_path);
  out << fingerprint_;
  out.close();
  if (!out) fail("{}: cannot write", fp_path.string());
}

std::filesystem::path Checkpoint::next_part_path() const { return dir_ / fmt::format("part-{:06d}.h5", next_part_); }

void Checkpoint::adopt(OutputFile& file) {
  ensure_dir();
  const auto part = next_part_path();
  file.hand_over(part);
  write_summary(part, part);
  ++next_part_;
}

Checkpoint::~Checkpoint() {
  part_requests_.reset();
  part_.reset();
  std::error_code ec;
  if (!part_temp_.empty()) std::filesystem::remove(part_temp_, ec);
}

FinishedRequests Checkpoint::load() const {
  FinishedRequests done;
  for (const auto& path : parts_in(dir_)) {
    const std::string where = path.string();
    verify_part(path);
    H5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    if (file.id() < 0) fail("{}: cannot open checkpoint part", where);
    H5Handle requests(H5Gopen2(file.id(), "requests", H5P_DEFAULT), H5Gclose);
    if (requests.id() < 0) fail("{}: no /requests group", where);
    H5G_info_t info{};
    H5Gget_info(requests.id(), &info);
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      char name[32] = {};
      const ssize_t len =
          H5Lget_name_by_idx(requests.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
      const std::string_view sv(name);
      if (len <= 0 || len > 12 || sv.find_first_not_of("0123456789") != std::string_view::npos) {
        fail("{}: /requests holds an entry that is not a request index", where);
      }
      H5Handle g(H5Gopen2(requests.id(), name, H5P_DEFAULT), H5Gclose);
      const std::string at = where + ":/requests/" + name;
      if (g.id() < 0) fail("{}: not a group", at);
      GenerationResult r;
      r.generated = read_vector<int32_t>(g.id(), "generated_tokens", H5T_NATIVE_INT32, at);
      if (H5Lexists(g.id(), "expert_counts", H5P_DEFAULT) <= 0) {
        fail(
            "{}: no 'expert_counts': the job ran with --no-request-counts, so a stopped run cannot be resumed (the "
            "class totals "
            "need every request's counts); run it again without --resume",
            at);
      }
      r.expert_counts = read_vector<uint32_t>(g.id(), "expert_counts", H5T_NATIVE_UINT32, at);
      r.expert_gate_sum = read_vector<double>(g.id(), "expert_gate_sum", H5T_NATIVE_DOUBLE, at);
      const auto prompt = read_vector<int32_t>(g.id(), "prompt_tokens", H5T_NATIVE_INT32, at);
      if (H5Lexists(g.id(), "scores", H5P_DEFAULT) > 0)
        r.scores = read_vector<double>(g.id(), "scores", H5T_NATIVE_DOUBLE, at);
      int64_t stop = -1;
      if (!h5_read_int_attr(g.id(), "stop_code", stop) || stop < 0 || stop > 4)
        fail("{}: missing or bad 'stop_code'", at);
      r.stop = static_cast<StopReason>(stop);
      if (r.stop == StopReason::Error)
        r.error = "the request failed before the resume (its 'error' attribute says why)";
      r.prompt_positions = static_cast<int>(prompt.size());
      r.generated_positions = std::max(static_cast<int>(r.generated.size()) - 1, 0);
      r.positions = r.prompt_positions + r.generated_positions;
      done.emplace(static_cast<size_t>(std::stoull(std::string(sv))), std::move(r));
    }
  }
  return done;
}

hid_t Checkpoint::requests_group() {
  if (part_.id() < 0) {
    ensure_dir();
    part_final_ = next_part_path();
    part_temp_ = part_final_;
    part_temp_ += ".tmp";
    const hid_t id = H5Fcreate(part_temp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (id < 0) fail("{}: cannot create checkpoint part", part_temp_.string());
    part_ = H5Handle(id, H5Fclose);
    part_requests_ = h5_create_group(part_.id(), "requests");
    opened_ = std::chrono::steady_clock::now();
  }
  return part_requests_.id();
}

void Checkpoint::request_written() {
  if (++in_part_ >= every_) flush();
}

void Checkpoint::flush() {
  if (part_.id() < 0) return;
  part_requests_.reset();
  if (H5Fflush(part_.id(), H5F_SCOPE_GLOBAL) < 0 || !part_.close())
    fail("{}: cannot write checkpoint part (disk full?)", part_temp_.string());
  write_summary(part_temp_, part_final_);
  if (std::rename(part_temp_.c_str(), part_final_.c_str()) != 0)
    fail("{}: cannot move checkpoint part into place", part_final_.string());
  part_temp_.clear();
  ++next_part_;
  in_part_ = 0;
}

void Checkpoint::copy_into(hid_t requests_group) const {
  for (const auto& path : parts_in(dir_)) {
    verify_part(path);
    H5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    H5Handle requests(H5Gopen2(file.id(), "requests", H5P_DEFAULT), H5Gclose);
    H5G_info_t info{};
    H5Gget_info(requests.id(), &info);
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      char name[64] = {};
      H5Lget_name_by_idx(requests.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
      if (H5Ocopy(requests.id(), name, requests_group, name, H5P_DEFAULT, H5P_DEFAULT) < 0) {
        fail("{}: cannot copy request {} into the result", path.string(), name);
      }
    }
  }
}

uint64_t Checkpoint::bytes() const {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& path : parts_in(dir_)) {
    const auto size = std::filesystem::file_size(path, ec);
    if (!ec) total += size;
  }
  return total;
}

void Checkpoint::remove() const {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace mote
