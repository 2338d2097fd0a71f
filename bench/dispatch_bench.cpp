// Time of one MoE layer's dispatch + combine through mote's exchange,
// against raw MPI collectives moving the same bytes, per hidden size and
// tokens per step. Run under MPI:
//   MOTE_BIN=build/bench/dispatch_bench launch/mote-run -n 4 --oversubscribe run
// Experts are synthetic with a tiny FFN width (8); their work on the busiest
// rank (gathering the entries, the FFNs) is measured in each layer without
// the shared expert and subtracted from it to give the exchange's time,
// which is timed in turn with the raw collectives.
// Rank 0 also times a shared-expert-sized FFN between begin() and finish(), with and without leaving the payload in
// flight meanwhile (overlap). Prints one JSON object per configuration.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "bench_util.h"
#include "mote/expert_parallel/expert_exchange.h"
#include "mote/io/json_file.h"
#include "mote/model/loaded_model.h"
#include "mote/model/synthetic_model.h"

namespace {

using namespace mote;

// Raw MPI: the same control Alltoall and two Alltoallv with the byte counts
// of one layer's records and results, no packing, no compute. With
// `remote_only`, a rank's own share is left out as mote's exchange leaves
// it out (it reads its own tokens in place); without, every byte goes
// through MPI, as in an exchange that sends a rank's tokens to itself.
class RawExchange {
 public:
  RawExchange(int world, int rank, const std::vector<int>& records_to, size_t record_bytes,
              const std::vector<int>& entries_to, size_t result_bytes, bool remote_only)
      : world_(world),
        rank_(rank),
        remote_only_(remote_only),
        records_to_(records_to),
        entries_to_(entries_to),
        record_bytes_(record_bytes),
        result_bytes_(result_bytes),
        send_(static_cast<size_t>(world) * 2),
        recv_(send_.size()),
        sb_(world),
        rb_(world),
        sd_(world),
        rd_(world),
        qb_(world),
        pb_(world),
        qd_(world),
        pd_(world) {}

  // Seconds of one exchange.
  double once() {
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < world_; ++r) {
      const bool sends = rank_ == 0 && !(remote_only_ && r == rank_);
      send_[2 * r] = sends ? records_to_[r] : 0;
      send_[2 * r + 1] = sends ? entries_to_[r] : 0;
    }
    MPI_Alltoall(send_.data(), 2, MPI_INT, recv_.data(), 2, MPI_INT, MPI_COMM_WORLD);
    size_t st = 0, rt = 0, qt = 0, pt = 0;
    for (int r = 0; r < world_; ++r) {
      sb_[r] = static_cast<int>(send_[2 * r] * record_bytes_);
      rb_[r] = static_cast<int>(recv_[2 * r] * record_bytes_);
      qb_[r] = static_cast<int>(recv_[2 * r + 1] * result_bytes_);  // results go back to the sender
      pb_[r] = static_cast<int>(send_[2 * r + 1] * result_bytes_);
      sd_[r] = static_cast<int>(st), rd_[r] = static_cast<int>(rt), qd_[r] = static_cast<int>(qt),
      pd_[r] = static_cast<int>(pt);
      st += sb_[r], rt += rb_[r], qt += qb_[r], pt += pb_[r];
    }
    sbuf_.resize(st + 1), rbuf_.resize(rt + 1), qbuf_.resize(qt + 1), pbuf_.resize(pt + 1);
    MPI_Alltoallv(sbuf_.data(), sb_.data(), sd_.data(), MPI_BYTE, rbuf_.data(), rb_.data(), rd_.data(), MPI_BYTE,
                  MPI_COMM_WORLD);
    MPI_Alltoallv(qbuf_.data(), qb_.data(), qd_.data(), MPI_BYTE, pbuf_.data(), pb_.data(), pd_.data(), MPI_BYTE,
                  MPI_COMM_WORLD);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

 private:
  int world_, rank_;
  bool remote_only_;
  std::vector<int> records_to_, entries_to_;
  size_t record_bytes_, result_bytes_;
  std::vector<int> send_, recv_, sb_, rb_, sd_, rd_, qb_, pb_, qd_, pd_;
  std::vector<char> sbuf_, rbuf_, qbuf_, pbuf_;
};

using bench::median;

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const std::filesystem::path bundled = MOTE_DEFAULT_MODEL_DIR;
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("mote-dispatch-bench-" + std::to_string(getppid()));
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
        // With the shared expert between begin() and finish(): 0 without
        // overlap, 1 with.
        double mote_s[2] = {0, 0};
        for (const int mode : {0, 1}) {
          ExpertExchange exchange(MPI_COMM_WORLD, placement, wire, worker, mode == 1);
          if (rank == 0) {
            Ffn ffn;
            mote_s[mode] = bench::median_seconds(reps, [&] {
              exchange.begin({1, 0, x.data(), tokens, experts.data(), weights.data(), 8, rows});
              ffn.forward(shared, x.data(), tokens, sh.data());
              exchange.finish(results);
            });
          }
          while (exchange.serve(true)) {
          }
        }
        // The byte counts mote moves, for the raw comparison.
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
        // The exchange and the experts alone against the raw collectives,
        // in turn (this machine's speed drifts within seconds): one layer
        // through mote's exchange, less the experts' work on the busiest
        // rank (gathering the entries, the FFNs, writing the results), over
        // the raw collectives' time right after it; the median of the pairs.
        RawExchange raw(world, rank, records_to, wire.record_bytes(), entries_to, wire.result_bytes(), false);
        RawExchange raw_remote(world, rank, records_to, wire.record_bytes(), entries_to, wire.result_bytes(), true);
        ExpertExchange exchange(MPI_COMM_WORLD, placement, wire, worker, true);
        std::vector<double> layer_s, compute_s, raw_s, raw_remote_s, ratios, remote_ratios;
        const int pairs = 41;                     // each pair's ratio varies by a third
        for (int rep = -1; rep < pairs; ++rep) {  // the first pair warms up
          MPI_Barrier(MPI_COMM_WORLD);
          const double compute_before = worker.compute_seconds();
          const auto start = std::chrono::steady_clock::now();
          if (rank == 0) {
            exchange.begin({1, 0, x.data(), tokens, experts.data(), weights.data(), 8, rows});
            exchange.finish(results);
          } else {
            exchange.serve(false);
          }
          const double layer = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          const double mine = worker.compute_seconds() - compute_before;
          double busiest = 0;
          MPI_Allreduce(&mine, &busiest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
          MPI_Barrier(MPI_COMM_WORLD);
          const double r = raw.once();
          MPI_Barrier(MPI_COMM_WORLD);
          const double rr = raw_remote.once();
          if (rep < 0) continue;
          layer_s.push_back(layer), compute_s.push_back(busiest), raw_s.push_back(r), raw_remote_s.push_back(rr);
          ratios.push_back((layer - busiest) / r);
          remote_ratios.push_back((layer - busiest) / rr);
        }
        while (exchange.serve(true)) {
        }
        Ffn ffn;
        const double shared_s =
            rank == 0 ? bench::median_seconds(reps, [&] { ffn.forward(shared, x.data(), tokens, sh.data()); }) : 0;
        if (rank == 0) {
          size_t bytes = 0;
          for (int d = 0; d < world; ++d)
            bytes += records_to[d] * wire.record_bytes() + entries_to[d] * wire.result_bytes();
          std::printf(
              "{\"bench\": \"dispatch\", \"world_size\": %d, \"hidden\": %d, \"tokens\": %d, \"top_k\": 8, "
              "\"bytes_moved\": %zu, "
              "\"mote_layer_s\": %.3e, \"mote_layer_no_overlap_s\": %.3e, \"shared_expert_s\": %.3e, "
              "\"expert_compute_s\": %.3e, "
              "\"mote_exchange_and_experts_s\": %.3e, \"raw_mpi_s\": %.3e, \"mote_exchange_over_raw\": %.3f, "
              "\"raw_mpi_remote_s\": %.3e, \"mote_exchange_over_raw_remote\": %.3f, \"overlap_gain\": %.3f}\n",
              world, hidden, tokens, bytes, mote_s[1], mote_s[0], shared_s, median(compute_s), median(layer_s),
              median(raw_s), median(ratios), median(raw_remote_s), median(remote_ratios), mote_s[0] / mote_s[1]);
          std::fflush(stdout);
        }
      }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) std::filesystem::remove_all(dir);
  }
  MPI_Finalize();
}
