// Time of one MoE layer's dispatch + combine through mote's exchange,
// against raw MPI collectives moving the same bytes, per hidden size and
// tokens per step. Run under MPI:
//   MOTE_BIN=build/bench/dispatch_bench launch/mote-run -n 4 --oversubscribe run
// Experts are synthetic with a tiny FFN width (8); their work on the busiest
// rank (gathering the entries, the FFNs) is measured in the runs without
// the shared expert and subtracted from them to give the exchange's time.
// Rank 0 also times a shared-expert-sized FFN between begin() and finish(), with and without leaving the payload in
// flight meanwhile (overlap). Prints one JSON object per configuration.
#include <mpi.h>

#include <cstdio>
#include <random>

#include "bench_util.h"
#include "mote/expert_parallel/expert_exchange.h"
#include "mote/io/json_file.h"
#include "mote/model/loaded_model.h"
#include "mote/model/synthetic_model.h"

namespace {

using namespace mote;

// Raw MPI: the same control Alltoall and two Alltoallv with the same byte
// counts as mote's exchange, no packing, no compute.
double raw_exchange(int reps, int world, int rank, const std::vector<int>& records_to, size_t record_bytes,
                    const std::vector<int>& entries_to, size_t result_bytes) {
  std::vector<int> send(static_cast<size_t>(world) * 2), recv(send.size());
  std::vector<int> sb(world), rb(world), sd(world), rd(world), qb(world), pb(world), qd(world), pd(world);
  std::vector<char> sbuf, rbuf, qbuf, pbuf;
  return bench::median_seconds(reps, [&] {
    for (int r = 0; r < world; ++r) {
      send[2 * r] = rank == 0 ? records_to[r] : 0;
      send[2 * r + 1] = rank == 0 ? entries_to[r] : 0;
    }
    MPI_Alltoall(send.data(), 2, MPI_INT, recv.data(), 2, MPI_INT, MPI_COMM_WORLD);
    size_t st = 0, rt = 0, qt = 0, pt = 0;
    for (int r = 0; r < world; ++r) {
      sb[r] = static_cast<int>(send[2 * r] * record_bytes);
      rb[r] = static_cast<int>(recv[2 * r] * record_bytes);
      qb[r] = static_cast<int>(recv[2 * r + 1] * result_bytes);  // results go back to the sender
      pb[r] = static_cast<int>(send[2 * r + 1] * result_bytes);
      sd[r] = static_cast<int>(st), rd[r] = static_cast<int>(rt), qd[r] = static_cast<int>(qt), pd[r] = static_cast<int>(pt);
      st += sb[r], rt += rb[r], qt += qb[r], pt += pb[r];
    }
    sbuf.resize(st + 1), rbuf.resize(rt + 1), qbuf.resize(qt + 1), pbuf.resize(pt + 1);
    MPI_Alltoallv(sbuf.data(), sb.data(), sd.data(), MPI_BYTE, rbuf.data(), rb.data(), rd.data(), MPI_BYTE, MPI_COMM_WORLD);
    MPI_Alltoallv(qbuf.data(), qb.data(), qd.data(), MPI_BYTE, pbuf.data(), pb.data(), pd.data(), MPI_BYTE, MPI_COMM_WORLD);
  });
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const std::filesystem::path bundled = MOTE_DEFAULT_MODEL_DIR;
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("mote-dispatch-bench-" + std::to_string(getppid()));
  const int reps = 15;

  for (const int hidden : {256, 2048, 7168}) {
    if (rank == 0) {
      auto config = read_json_file(bundled / "config.json");
      config["hidden_size"] = hidden;
      config["num_hidden_layers"] = 2;
      config["n_routed_experts"] = 64;
      config["n_group"] = 8;
      config["topk_group"] = 4;
      config["num_experts_per_tok"] = 8;
      config["moe_intermediate_size"] = 8;
      config["intermediate_size"] = 16;
      write_synthetic_model(dir, config, 3, bundled);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    {
      const auto m = load_model(dir);
      const ModelConfig& c = m->config;
      const Placement placement = Placement::by_rule("round-robin", 1, c.n_routed_experts, world, true);
      const WireFormat wire{hidden, c.num_experts_per_tok, WireDType::F32};
      ExpertWorker worker(m->weights, c, placement, rank, wire, nullptr);  // counts nothing
      // A shared expert of DeepSeek-V3's proportions for this hidden size.
      FfnWeights shared = m->weights.layers[1].shared;
      std::vector<uint16_t> shared_storage;

      for (const int tokens : {1, 16, 256}) {
        std::vector<float> x(static_cast<size_t>(tokens) * hidden, 0.25f), sh(x.size());
        std::vector<const float*> results;
        std::vector<int32_t> experts(static_cast<size_t>(tokens) * 8);
        std::vector<float> weights(experts.size(), 0.125f);
        std::vector<StepRow> rows(static_cast<size_t>(tokens));
        std::mt19937 gen(tokens);
        for (int t = 0; t < tokens; ++t) {
          std::vector<int32_t> pool(64);
          for (int e = 0; e < 64; ++e) pool[e] = e;
          std::shuffle(pool.begin(), pool.end(), gen);
          for (int s = 0; s < 8; ++s) experts[t * 8 + s] = pool[s];
        }
        // Modes: 0 no overlap, 1 overlap (both with the shared expert
        // between begin and finish), 2 the exchange and the experts alone.
        double mote_s[3] = {0, 0, 0};
        double mode_compute = 0;  // this rank's expert compute in mode 2
        for (const int mode : {0, 1, 2}) {
          const bool overlap = mode == 1;
          const double compute_before = worker.compute_seconds();
          ExpertExchange exchange(MPI_COMM_WORLD, placement, wire, worker, overlap);
          if (rank == 0) {
            Ffn ffn;
            mote_s[mode] = bench::median_seconds(reps, [&] {
              exchange.begin({1, 0, x.data(), tokens, experts.data(), weights.data(), 8, rows});
              if (mode != 2) ffn.forward(shared, x.data(), tokens, sh.data());
              exchange.finish(results);
            });
          }
          while (exchange.serve(true)) {
          }
          if (mode == 2) mode_compute = worker.compute_seconds() - compute_before;
        }
        // Mean expert compute per layer (gathering the entries, the experts'
        // FFNs) on the busiest rank, in the runs without the shared expert.
        const double my_compute = mode_compute / (reps + 1);
        double compute_s = 0;
        MPI_Reduce(&my_compute, &compute_s, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        // The byte counts mote moved, for the raw comparison.
        std::vector<int> records_to(world, 0), entries_to(world, 0);
        for (int t = 0; t < tokens; ++t) {
          std::vector<int> hit(world, 0);
          for (int s = 0; s < 8; ++s) {
            const int d = placement.owner(0, experts[t * 8 + s]);
            ++entries_to[d];
            hit[d] = 1;
          }
          for (int d = 0; d < world; ++d) records_to[d] += hit[d];
        }
        Ffn ffn;
        const double shared_s = rank == 0 ? bench::median_seconds(reps, [&] { ffn.forward(shared, x.data(), tokens, sh.data()); }) : 0;
        const double raw = raw_exchange(reps, world, rank, records_to, wire.record_bytes(), entries_to, wire.result_bytes());
        if (rank == 0) {
          size_t bytes = 0;
          for (int d = 0; d < world; ++d) bytes += records_to[d] * wire.record_bytes() + entries_to[d] * wire.result_bytes();
          std::printf(
              "{\"bench\": \"dispatch\", \"world_size\": %d, \"hidden\": %d, \"tokens\": %d, \"top_k\": 8, \"bytes_moved\": %zu, "
              "\"mote_layer_s\": %.3e, \"mote_layer_no_overlap_s\": %.3e, \"shared_expert_s\": %.3e, \"expert_compute_s\": %.3e, "
              "\"mote_exchange_and_experts_s\": %.3e, \"raw_mpi_s\": %.3e, \"mote_exchange_over_raw\": %.2f, "
              "\"overlap_gain\": %.3f}\n",
              world, hidden, tokens, bytes, mote_s[1], mote_s[0], shared_s, compute_s, mote_s[2], raw,
              // The exchange: the layer without the shared expert, less the experts' work.
              (mote_s[2] - compute_s) / raw, mote_s[0] / mote_s[1]);
          std::fflush(stdout);
        }
      }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) std::filesystem::remove_all(dir);
  }
  MPI_Finalize();
}
