// What every MPI call of the exchange and the request queue needs: errors
// named, byte counts within MPI's int, displacements, and waiting without
// holding a core.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace mote {

// Fails naming `what` and MPI's own message unless `rc` is MPI_SUCCESS.
void check_mpi(int rc, const char* what);

// `bytes` as an MPI count; more than an int holds fails naming `what` and
// what to do about it (`remedy`).
int mpi_count(size_t bytes, const char* what, const char* remedy);

// displs[i] = the sum of counts before i, every sum within an MPI count.
void mpi_displacements(const std::vector<int>& counts, std::vector<int>& displs, const char* what, const char* remedy);

// Completes `request` without holding a core: tests it for 100 us, then
// sleeps between tests (20 us, doubling up to 200 us). A rank that waits
// for another's compute (an expert rank during a coordinator's attention,
// a coordinator during another's larger step) would otherwise spin in
// MPI's progress loop; where cores share execution units (SMT siblings, or
// virtual CPUs placed on them) that spinning slows the very rank it waits
// for. Measured on the 2-vCPU development machine: a profile job over 2
// ranks with one coordinator ran slower than 1 rank alone until waits slept.
void wait_for(MPI_Request& request, const char* what);

// Gives every rank rank 0's `data`: its size, then its bytes (every rank of
// a job runs the same build, so the bytes mean the same everywhere).
void broadcast_bytes(void* data, size_t bytes, const char* what);
template <typename Container>
void broadcast(Container& data, const char* what) {
  static_assert(std::is_trivially_copyable_v<typename Container::value_type>);
  uint64_t n = data.size();
  check_mpi(MPI_Bcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD), what);
  data.resize(n);
  broadcast_bytes(data.data(), n * sizeof(typename Container::value_type), what);
}

}  // namespace mote
