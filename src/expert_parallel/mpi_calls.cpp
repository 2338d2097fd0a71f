#include "mote/expert_parallel/mpi_calls.h"

#include <chrono>
#include <limits>
#include <string>
#include <thread>

#include "mote/util/error.h"

namespace mote {

void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    fail("MPI {} failed: {}", what, std::string(text, static_cast<size_t>(len)));
  }
}

int mpi_count(size_t bytes, const char* what, const char* remedy) {
  if (bytes > static_cast<size_t>(std::numeric_limits<int>::max())) {
    fail("{} of {} bytes is more than one MPI message carries; {}", what, bytes, remedy);
  }
  return static_cast<int>(bytes);
}

void broadcast_bytes(void* data, size_t bytes, const char* what) {
  const int count = mpi_count(bytes, what, "rank 0 cannot send it to the other ranks at once");
  if (count > 0) check_mpi(MPI_Bcast(data, count, MPI_BYTE, 0, MPI_COMM_WORLD), what);
}

void mpi_displacements(const std::vector<int>& counts, std::vector<int>& displs, const char* what, const char* remedy) {
  displs.assign(counts.size(), 0);
  size_t total = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    displs[i] = mpi_count(total, what, remedy);
    total += static_cast<size_t>(counts[i]);
  }
  mpi_count(total, what, remedy);
}

void wait_for(MPI_Request& request, const char* what) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto nap = std::chrono::microseconds(20);
  for (;;) {
    int done = 0;
    check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    const auto waited = clock::now() - start;
    if (waited < std::chrono::microseconds(100)) continue;
    std::this_thread::sleep_for(nap);
    // Short naps while a peer computes a step; longer ones once it is
    // clearly idle (a server with no requests), so that waiting costs
    // next to no CPU.
    const auto longest = waited < std::chrono::milliseconds(10)    ? std::chrono::microseconds(200)
                         : waited < std::chrono::milliseconds(200) ? std::chrono::microseconds(1000)
                                                                   : std::chrono::microseconds(5000);
    nap = std::min(nap * 2, longest);
  }
}

}  // namespace mote
