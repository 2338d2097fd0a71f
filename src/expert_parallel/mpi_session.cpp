#include "mote/expert_parallel/mpi_session.h"

#include <mpi.h>

#include <unistd.h>

#include <cstdlib>
#include <vector>

namespace mote {

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  // Only the main thread calls MPI; OpenMP threads compute between calls.
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm local = MPI_COMM_NULL;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local) == MPI_SUCCESS &&
      local != MPI_COMM_NULL) {
    MPI_Comm_size(local, &local_ranks_);
    const int mine[2] = {rank_, static_cast<int>(::getpid())};
    std::vector<int> all(2 * static_cast<size_t>(local_ranks_));
    MPI_Allgather(mine, 2, MPI_INT, all.data(), 2, MPI_INT, local);
    for (size_t i = 0; i + 1 < all.size(); i += 2)
      if (all[i] != rank_) local_peers_.push_back({all[i], all[i + 1]});
    MPI_Comm_free(&local);
  }
}

MpiSession::~MpiSession() { MPI_Finalize(); }

void MpiSession::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace mote
