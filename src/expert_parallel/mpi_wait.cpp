#include "mote/expert_parallel/mpi_wait.h"

#include <chrono>
#include <string>
#include <thread>

#include "mote/util/error.h"

namespace mote {

void wait_for(MPI_Request& request, const char* what) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto nap = std::chrono::microseconds(20);
  for (;;) {
    int done = 0;
    const int rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      char text[MPI_MAX_ERROR_STRING];
      int len = 0;
      MPI_Error_string(rc, text, &len);
      fail("MPI {} failed: {}", what, std::string(text, static_cast<size_t>(len)));
    }
    if (done) return;
    if (clock::now() - start < std::chrono::microseconds(100)) continue;
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(200));
  }
}

}  // namespace mote
