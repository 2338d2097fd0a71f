#include "scan_checkpoint.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "mote/io/json_file.h"
#include "mote/util/error.h"

namespace mote {
namespace {

constexpr const char* kFingerprint = "scan-fingerprint.txt";
constexpr const char* kResults = "scan-results.txt";

}  // namespace

ScanCheckpoint::ScanCheckpoint(std::filesystem::path dir, const std::string& fingerprint, bool resume, int every)
    : dir_(std::move(dir)), fingerprint_(fingerprint), every_(every) {
  std::error_code ec;
  const bool exists = std::filesystem::exists(dir_, ec);
  if (exists && !resume)
    fail("{} holds a checkpoint of an earlier scan: continue it with --resume, or remove it", dir_.string());
  if (exists) {
    if (!std::filesystem::is_regular_file(dir_ / kFingerprint, ec))
      fail("{}: not a scan's checkpoint (no {})", dir_.string(), kFingerprint);
    if (read_input_file(dir_ / kFingerprint, "scan fingerprint", 4096) != fingerprint_) {
      fail(
          "{}: the checkpoint is of another scan (prompts, metric, candidates, search, masks or model differ); remove "
          "it to start over",
          dir_.string());
    }
    if (std::filesystem::is_regular_file(dir_ / kResults, ec)) {
      // One line per result: phase, request id, the metric as a hexadecimal
      // float (exact). A line cut by a crash (no newline) is dropped.
      const std::string text = read_text_file(dir_ / kResults);
      size_t at = 0, line = 0;
      while (at < text.size()) {
        const size_t end = text.find('\n', at);
        if (end == std::string::npos) break;
        ++line;
        std::istringstream in(text.substr(at, end - at));
        int phase = -1;
        uint64_t id = 0;
        std::string value;
        if (!(in >> phase >> id >> value) || phase < 0)
          fail("{}:{}: not a scan result line", (dir_ / kResults).string(), line);
        char* stop = nullptr;
        const double metric = std::strtod(value.c_str(), &stop);
        if (stop == value.c_str() || *stop != '\0')
          fail("{}:{}: not a number: '{}'", (dir_ / kResults).string(), line, value.substr(0, 32));
        done_[{phase, id}] = metric;
        at = end + 1;
      }
      written_ = done_.size();
    }
    spdlog::info("resuming the scan: {} requests finished before", done_.size());
  } else if (resume) {
    spdlog::warn("--resume: {} holds no checkpoint; starting from the beginning", dir_.string());
  }
}

ScanCheckpoint::~ScanCheckpoint() {
  if (file_ != nullptr) std::fclose(file_);
}

const double* ScanCheckpoint::find(int phase, uint64_t id) const {
  const auto it = done_.find({phase, id});
  return it == done_.end() ? nullptr : &it->second;
}

void ScanCheckpoint::add(int phase, uint64_t id, double metric) {
  pending_ += fmt::format("{} {} {:a}\n", phase, id, metric);
  ++pending_count_;
  if (every_ > 0 && pending_count_ >= static_cast<size_t>(every_)) flush();
}

size_t ScanCheckpoint::flush() {
  if (pending_count_ == 0) return written_;
  if (file_ == nullptr) {
    std::error_code ec;
    const bool created = !std::filesystem::exists(dir_, ec);
    std::filesystem::create_directories(dir_, ec);
    if (ec) fail("{}: cannot create the checkpoint directory: {}", dir_.string(), ec.message());
    if (!std::filesystem::exists(dir_ / kFingerprint, ec)) {
      // Written aside and renamed: a full disk leaves no fingerprint that is
      // not this scan's (which --resume would call another scan's), and a
      // directory created for it goes again.
      const auto temp = dir_ / (std::string(kFingerprint) + ".tmp");
      std::FILE* f = std::fopen(temp.c_str(), "w");
      const bool written = f != nullptr && std::fputs(fingerprint_.c_str(), f) >= 0;
      const bool closed = f != nullptr && std::fclose(f) == 0;
      if (!written || !closed || std::rename(temp.c_str(), (dir_ / kFingerprint).c_str()) != 0) {
        if (created) {
          std::filesystem::remove_all(dir_, ec);
        } else {
          std::filesystem::remove(temp, ec);
        }
        fail("{}: cannot write the scan's checkpoint (disk full?); nothing of it is left", dir_.string());
      }
    }
    file_ = std::fopen((dir_ / kResults).c_str(), "a");
    if (file_ == nullptr) fail("{}: cannot open {}: {}", dir_.string(), kResults, std::strerror(errno));
  }
  // Whole lines only: a write cut short leaves a line without its newline,
  // which a resume drops.
  if (std::fwrite(pending_.data(), 1, pending_.size(), file_) != pending_.size() || std::fflush(file_) != 0) {
    fail("{}: cannot write the scan's checkpoint (disk full?)", (dir_ / kResults).string());
  }
  written_ += pending_count_;
  pending_.clear();
  pending_count_ = 0;
  return written_;
}

void ScanCheckpoint::remove() {
  if (file_ != nullptr) std::fclose(file_);
  file_ = nullptr;
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace mote
