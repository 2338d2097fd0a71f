// Latency and bandwidth between ranks 0 and 1, the figures mote's cluster
// model takes (mote plan --latency-us, --network-gbs). Run under MPI with
// two ranks (shared memory, or the namespace cluster for TCP):
//   MOTE_BIN=build/bench/net_bench launch/mote-run -n 2 run
// Latency: half a round trip of an 8-byte message; bandwidth: one way, a
// message as large as a prefill step's hidden states. Prints one JSON object.
#include <mpi.h>

#include <cstdio>
#include <vector>

#include "bench_util.h"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world < 2) {
    if (rank == 0) std::fprintf(stderr, "net_bench needs two ranks\n");
    MPI_Finalize();
    return 1;
  }
  const auto ping_pong = [&](size_t bytes, int reps) {
    std::vector<char> buffer(bytes + 1);
    const int n = static_cast<int>(bytes);
    return mote::bench::median_seconds(
               reps,
               [&] {
                 if (rank == 0) {
                   MPI_Send(buffer.data(), n, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
                   MPI_Recv(buffer.data(), n, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                 } else if (rank == 1) {
                   MPI_Recv(buffer.data(), n, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                   MPI_Send(buffer.data(), n, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
                 }
               }) /
           2;
  };
  const double latency = ping_pong(8, 201);
  const size_t big = size_t{32} << 20;
  const double transfer = ping_pong(big, 11);
  if (rank == 0) {
    std::printf(
        "{\"bench\": \"net\", \"ranks\": %d, \"latency_us\": %.2f, \"network_gbs\": %.3f, \"message_bytes\": %zu}\n",
        world, latency * 1e6, static_cast<double>(big) / (transfer - latency) / 1e9, big);
  }
  MPI_Finalize();
  return 0;
}
