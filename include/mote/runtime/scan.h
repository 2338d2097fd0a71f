// A knockout scan (`mote scan`): which routed experts, switched off one at
// a time, change a behaviour metric (runtime/scan_metric.h) on a class of
// prompts. A distributed job like every other: the requests are (prompt,
// condition) pairs, each under its own mask, many in one batch, handed to
// the coordinators and run over the expert ranks; results are bit-identical
// for any world size, coordinators and placement.
//
// A run is a sequence of phases, each one job-wide run of requests:
//
//   reference   every prompt under the base condition (--mask, and the
//               experts a greedy selection has chosen), recording the
//               residual stream before every MoE layer
//   knockouts   every prompt under each condition; a knockout at MoE layer m
//               resumes from the reference's residual at m (prefix reuse)
//
// --search full: one reference and one knockout phase over the candidates.
// --search blocks: knockouts of whole blocks (router groups, or blocks of
// --block-size experts) first, then single experts inside the top blocks.
// --greedy N: N rounds, each adding the expert whose removal lowers the
// metric most given those already off.
#pragma once

#include <string>

#include "mote/runtime/job.h"

namespace mote {

struct ScanOptions {
  JobOptions job;   // model, prompts, base mask, placement, batch size ...
  std::string cls;  // scan only the prompts of this class ("" all)
  std::string metric = "token-prob";
  std::string tokens;              // token-prob: vocabulary tokens or #ID, comma-separated
  std::string continuation;        // continuation-logprob: text
  std::string candidates = "all";  // or a mask file whose 'off' entries are the candidates
  std::string policy = "reroute";  // what "off" means for the knockouts
  std::string search = "full";     // full, blocks, or both (blocks checked against the full scan)
  int block_size = 0;              // 0: the router's groups, or 8 experts where it has none
  int top_blocks = 0;              // blocks searched expert by expert; 0: 2 x max(top, 4)
  int greedy = 0;                  // rounds of greedy selection
  int greedy_pool = 16;            // the best experts of the single scan it chooses from
  int top = 0;                     // experts written to --mask-out
  std::string mask_out;
  bool prefix_reuse = true;

  std::string summary() const;
};

// Refuses options that cannot make a scan, naming the option.
void validate(const ScanOptions& options);

// Runs the scan on this rank; every rank of the world calls it. Returns
// the process exit code (0 done, 128 + N stopped by signal N).
int run_scan(ScanOptions& options, MpiSession& mpi);

}  // namespace mote
