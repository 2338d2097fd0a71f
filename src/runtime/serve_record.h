// A server's --record: every request served, appended to a profile in the
// layout of docs/hdf5-format.md as it finishes. Requests go into the
// checkpoint parts of "<out>.checkpoint/" (a part closes into place after
// 64 requests or 2 seconds, so a crash loses at most the last 2 seconds);
// at shutdown the parts become "<out>", written aside and renamed as a
// job's result is. A server that died leaves its parts; --resume continues
// the record after them. Rank 0 only; private to the runtime.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "job_steps.h"
#include "mote/runtime/serve.h"

namespace mote {

class ServeRecord {
 public:
  // Opens the output before the model loads: an unwritable path fails first.
  explicit ServeRecord(const JobOptions& options);
  ~ServeRecord();
  ServeRecord(const ServeRecord&) = delete;
  ServeRecord& operator=(const ServeRecord&) = delete;

  // The model and mask sets are known: opens the checkpoint (refusing one of
  // another server unless --resume continues it).
  void start(const JobModel& model, const MaskSets& masks);
  // A request finished; one cancelled before it ran is not recorded. Safe
  // to call from any one thread at a time.
  void add(const ServedRequest& request, const GenerationResult& result);
  // The expert counts of the requests this run recorded, summed: equal to
  // the ranks' counters once every request has finished.
  const ExpertCounters& run_totals() const { return run_totals_; }
  // Shutdown: writes the profile and moves it into place.
  void finish(const MaskSets& masks, const std::vector<uint64_t>& rank_memory, int world_size);

 private:
  void flush_when_due();  // the background flusher's loop
  void stop_flusher();

  const JobOptions& options_;
  const JobModel* model_ = nullptr;
  std::string fingerprint_;
  std::optional<OutputFile> out_;
  std::optional<Checkpoint> checkpoint_;
  size_t count_ = 0;                    // requests recorded, earlier runs included
  ExpertCounters totals_, run_totals_;  // all recorded requests; this run's
  std::vector<uint64_t> tokens_;        // [phase]
  size_t failed_ = 0;
  bool stopping_ = false;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::thread flusher_;
};

}  // namespace mote
