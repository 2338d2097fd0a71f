// A knockout scan, as every rank runs it:
//
//   1. open the output (rank 0)
//   2. load the model, read the base mask, the prompts of the class, the
//      metric and the candidates (rank 0), and send every rank what it needs
//   3. phases (each a job-wide run of requests, src/runtime/job_run.cpp):
//      the reference, then knockouts (whole blocks first with --search
//      blocks), then --greedy rounds of reference and knockouts
//   4. check the expert counters, write /scan and --mask-out (rank 0)
#include "mote/runtime/scan.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>

#include <fmt/ranges.h>

#include "job_steps.h"
#include "mote/expert_parallel/mpi_calls.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/io/file_guard.h"
#include "mote/io/text_output.h"
#include "mote/model/mask_file.h"
#include "mote/results/mask_output.h"
#include "mote/results/scan_file.h"
#include "mote/runtime/scan_metric.h"
#include "mote/util/error.h"
#include "mote/util/hash.h"
#include "mote/util/statistics.h"
#include "mote/util/stop_signal.h"
#include "scan_checkpoint.h"

namespace mote {

std::string ScanOptions::summary() const {
  return fmt::format("scan: metric {} {}, class {}, candidates {}, off-policy {}, search {}{}, prefix reuse {}", metric,
                     metric == "token-prob" ? "of " + tokens : "of '" + continuation + "'", cls.empty() ? "(all)" : cls,
                     candidates, policy, search,
                     greedy > 0 ? fmt::format(", greedy {} rounds over the best {}", greedy, greedy_pool) : "",
                     prefix_reuse);
}

void validate(const ScanOptions& s) {
  validate(s.job);
  if (s.metric != "token-prob" && s.metric != "continuation-logprob")
    fail("--metric '{}' is not one of token-prob, continuation-logprob", s.metric);
  if (!parse_off_policy(s.policy)) fail("--policy '{}' is not one of reroute, drop, zero", s.policy);
  if (s.search != "full" && s.search != "blocks" && s.search != "both")
    fail("--search '{}' is not one of full, blocks, both", s.search);
  if (s.block_size < 0) fail("--block-size {} must not be negative", s.block_size);
  if (s.top_blocks < 0) fail("--top-blocks {} must not be negative", s.top_blocks);
  if (s.greedy < 0) fail("--greedy {} must not be negative", s.greedy);
  if (s.greedy_pool < 1) fail("--greedy-pool {} must be at least 1", s.greedy_pool);
  if (s.top < 0) fail("--top {} must not be negative", s.top);
  if (!s.mask_out.empty() && s.top == 0) fail("--mask-out needs --top N: how many experts to write");
  if (s.candidates.empty()) fail("--candidates is empty: give 'all' or a mask file");
  if (s.job.gen.max_new_tokens != 0) fail("a scan generates nothing: --max-new-tokens must be 0");
  if (s.job.gen.save_logits || s.job.gen.trace)
    fail("--save-logits and --trace do not apply to a scan (it keeps the metric only)");
  if (!s.job.resume_from.empty())
    fail("--resume-from does not apply to a scan; copy OUT.checkpoint beside --out and use --resume");
  if (!s.mask_out.empty() && !s.job.out.empty() && s.mask_out == s.job.out)
    fail("--mask-out and --out name the same file");
}

namespace {

using Expert = std::pair<int, int>;  // (MoE layer, expert)

// The experts a condition switches off beyond the base mask, and the MoE
// layer its requests resume at (the earliest of them) with prefix reuse.
struct Knockout {
  std::vector<Expert> off;
  int resume = -1;
};

Knockout knockout(std::vector<Expert> off, const std::vector<Expert>& also_off = {}) {
  Knockout c;
  c.resume = off.empty() ? -1 : std::min_element(off.begin(), off.end())->first;
  c.off = std::move(off);
  c.off.insert(c.off.end(), also_off.begin(), also_off.end());
  return c;
}

// A phase was stopped by a signal: every rank unwinds to the exit.
struct ScanStopped {
  int signal;
};

// Rank 0's view of the scan and every rank's part in its phases.
class Scan {
 public:
  Scan(ScanOptions& options, MpiSession& mpi, JobModel& model)
      : o_(options), mpi_(mpi), model_(model), policy_(*parse_off_policy(options.policy)) {}

  // Step 2 on rank 0 (prompts, metric, candidates), then what every rank needs.
  void read_inputs(const MaskSets& masks);
  void run();
  void write(OutputFile* out, const MaskSets& masks);
  // A stopped scan keeps what finished; returns false without --out.
  bool save_checkpoint() {
    if (!checkpoint_) return false;
    const size_t saved = checkpoint_->flush();
    if (saved == 0) {
      // Nothing to resume from: a checkpoint would only make --resume necessary.
      checkpoint_->remove();
      spdlog::warn("no request had finished; nothing was saved");
      return true;
    }
    spdlog::warn("{} finished requests saved in {}; run the same command with --resume to finish", saved,
                 checkpoint_->dir().string());
    return true;
  }
  // Every rank: the expert counters checked, the throughput reported.
  void finish() {
    job_run_->check_counters();
    job_run_->report_throughput();
  }

 private:
  // One phase: every prompt under every condition. Rank 0 returns the
  // metric [condition][prompt]; with `reference`, the residuals too.
  std::vector<std::vector<double>> run_phase(const std::vector<Knockout>& conditions, bool reference, const char* what);
  void build_masks(const std::vector<Knockout>& conditions);
  std::vector<Expert> ranked(const std::vector<Expert>& among) const;
  double effect(const std::vector<double>& metric, std::vector<double>* per_prompt = nullptr) const;
  void block_phase(std::vector<Expert>& singles);
  void greedy();

  ScanOptions& o_;
  MpiSession& mpi_;
  JobModel& model_;
  OffPolicy policy_;  // --policy
  bool root() const { return mpi_.rank() == 0; }
  int moe_layers() const { return model_.moe_layers(); }
  int experts() const { return model_.config.n_routed_experts; }

  std::optional<ExpertMask> base_;  // --mask, on every rank
  std::vector<ExpertMask> masks_;   // the current phase's, on every rank ([0] unused)
  std::unique_ptr<JobRun> job_run_;
  ScanMetric metric_;
  std::vector<GenerationRequest> prompts_;  // rank 0: set up for scoring
  std::vector<Expert> candidates_;
  std::vector<std::vector<float>> residuals_;  // rank 0: the reference's, per prompt
  std::vector<Expert> selected_;               // chosen by greedy rounds so far
  std::optional<ScanCheckpoint> checkpoint_;   // rank 0, with --out
  int phase_ = 0;                              // phases run so far (the same on every rank)
  ScanData data_;
  std::chrono::steady_clock::time_point start_;
};

void Scan::read_inputs(const MaskSets& masks) {
  const ModelConfig& config = model_.config;
  for (const auto& m : masks.sets) {
    if (m.id != 0 && m.name != "default")
      fail("--mask {}=FILE: a scan takes one base mask (--mask FILE), not named mask sets", m.name);
  }
  if (masks.default_mask != nullptr) base_ = *masks.default_mask;
  std::vector<int32_t> score_ids;
  if (root()) {
    const JobRequests requests(o_.job, model_, masks);
    const std::vector<std::string>& classes = requests.classes();
    for (size_t i = 0; i < requests.size(); ++i) {
      if (!o_.cls.empty() && classes[static_cast<size_t>(requests.cls(i))] != o_.cls) continue;
      const PreparedPrompt prompt = requests.prepare(i);
      const PromptSpec& spec = prompt.spec;
      if (requests.failed(i))
        fail("{}:{}: prompt '{}' cannot run: {}", spec.file, spec.line, spec.id, requests.error(i));
      if (!spec.mask.empty())
        fail("{}:{}: prompt '{}' names mask set '{}'; a scan's prompts run under the base mask only", spec.file,
             spec.line, spec.id, spec.mask);
      GenerationRequest& r = prompts_.emplace_back(prompt.encoded.tokens);
      r.stream = prompts_.size() - 1;
      data_.prompt_ids.push_back(spec.id.empty() ? std::to_string(i) : spec.id);
    }
    if (prompts_.empty()) {
      std::string names;
      for (const auto& c : classes) names += (names.empty() ? "" : ", ") + c;
      fail("--class '{}': no prompt of {} has that class (its classes: {})", o_.cls,
           o_.job.prompts.empty() ? "the prompt files" : o_.job.prompts, names);
    }
    const auto& tokenizer = model_.loaded->tokenizer;
    metric_ = make_scan_metric(o_.metric, o_.tokens, o_.continuation, tokenizer,
                               std::min(tokenizer.vocab_size(), config.vocab_size));
    for (auto& p : prompts_) {
      metric_.prepare(p);
      if (p.prompt.size() > static_cast<size_t>(config.max_position_embeddings)) {
        fail("a prompt with its continuation has {} tokens, more than the model's {} positions", p.prompt.size(),
             config.max_position_embeddings);
      }
    }
    score_ids = metric_.score_ids;

    if (o_.candidates == "all") {
      for (int l = 0; l < moe_layers(); ++l)
        for (int e = 0; e < experts(); ++e) candidates_.emplace_back(l, e);
    } else {
      const ExpertMask listed = read_mask_file(o_.candidates, config, "candidates");
      for (int l = 0; l < moe_layers(); ++l) {
        for (int e = 0; e < experts(); ++e) {
          if (listed.is_on(l, e) || listed.gain(l, e) != 1.0f) {
            fail(
                "--candidates {}: lists expert {} of MoE layer {} with 'on' or 'gain'; candidates are the file's 'off' "
                "entries",
                o_.candidates, e, l);
          }
          if (listed.is_off(l, e)) candidates_.emplace_back(l, e);
        }
      }
      if (candidates_.empty())
        fail("--candidates {}: the file switches no expert off, so there is nothing to scan", o_.candidates);
    }
    if (base_) {
      if (base_->count_off() > 0 && base_->off_policy != policy_) {
        fail("the base mask switches experts off with policy {}, the scan with --policy {}; make them the same",
             off_policy_name(base_->off_policy), o_.policy);
      }
      for (const auto& [l, e] : candidates_) {
        if (base_->is_off(l, e)) fail("candidate expert {} of MoE layer {} is already off in the base mask", e, l);
      }
    }
    spdlog::info("{}", o_.summary());
    spdlog::info("{} prompts, {} candidate experts, {} ids scored", prompts_.size(), candidates_.size(),
                 score_ids.size());
    if (!o_.job.out.empty()) {
      // What the results depend on; world size, coordinators, placement and
      // prefix reuse do not change them.
      uint64_t h = fnv1a(kFnv1aBasis, model_fingerprint(o_.job.model_dir, model_.loaded->store));
      for (const auto& p : prompts_) h = fnv1a(h, fmt::format("{}|{}\n", fmt::join(p.prompt, ","), p.score_from));
      for (const auto& [l, e] : candidates_) h = fnv1a(h, fmt::format("{}:{},", l, e));
      h = fnv1a(h, fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}", o_.metric, metric_.spec,
                               fmt::join(score_ids, ","), o_.policy, o_.search, o_.block_size, o_.top_blocks, o_.top,
                               o_.greedy, o_.greedy_pool, o_.job.wire_dtype,
                               base_ ? base_->description + off_policy_name(base_->off_policy) : std::string("-")));
      checkpoint_.emplace(o_.job.out + ".checkpoint", fmt::format("{:016x}\n", h), o_.job.resume,
                          o_.job.checkpoint_every);
    }
  }
  // Every coordinator scores the same ids.
  broadcast(score_ids, "the metric's token ids");
  o_.job.gen.score_ids = score_ids;
  o_.job.gen.max_new_tokens = 0;
  job_run_ = std::make_unique<JobRun>(o_.job, mpi_, model_, masks_);
}

void Scan::build_masks(const std::vector<Knockout>& conditions) {
  masks_.assign(1, ExpertMask());
  for (const Knockout& c : conditions) {
    stop_point("planning the scan");
    ExpertMask m = base_ ? *base_ : ExpertMask(moe_layers(), experts());
    m.id = static_cast<int32_t>(masks_.size());
    m.name = fmt::format("scan{}", m.id);
    if (!c.off.empty()) m.off_policy = policy_;
    for (const auto& [l, e] : c.off) m.set_off(l, e);
    stop_point("planning the scan");
    // Thousands of conditions: gains kept only where some differ from 1.
    if (std::all_of(m.gains.begin(), m.gains.end(), [](float g) { return g == 1.0f; }))
      std::vector<float>().swap(m.gains);
    m.description.clear();
    masks_.push_back(std::move(m));
  }
}

std::vector<std::vector<double>> Scan::run_phase(const std::vector<Knockout>& conditions, bool reference,
                                                 const char* what) {
  const int phase = phase_++;
  // Every rank builds the same masks from the conditions rank 0 sends.
  std::vector<int32_t> wire;
  if (root()) {
    for (const Knockout& c : conditions) {
      wire.push_back(static_cast<int32_t>(c.off.size()));
      wire.push_back(c.resume);
      for (const auto& [l, e] : c.off) wire.insert(wire.end(), {l, e});
    }
  }
  broadcast(wire, "the scan's conditions");
  std::vector<Knockout> conds;
  for (size_t at = 0; at < wire.size();) {
    Knockout c;
    const int32_t count = wire[at];
    c.resume = wire[at + 1];
    at += 2;
    for (int32_t i = 0; i < count; ++i, at += 2) c.off.emplace_back(wire[at], wire[at + 1]);
    conds.push_back(std::move(c));
  }
  build_masks(conds);

  const size_t P = prompts_.size();
  std::vector<std::vector<double>> metric;
  std::vector<std::pair<size_t, GenerationRequest>> todo;
  const int layers = model_.config.num_hidden_layers;
  const std::vector<int> decoder = model_.config.moe_layers();
  if (root()) {
    spdlog::info("scan: {}: {} condition{} x {} prompts = {} requests", what, conds.size(),
                 conds.size() == 1 ? "" : "s", P, conds.size() * P);
    metric.assign(conds.size(), std::vector<double>(P, std::nan("")));
    if (reference) residuals_.assign(P, {});
    for (size_t c = 0; c < conds.size(); ++c) {
      const bool unmasked = !base_ && conds[c].off.empty();
      const bool resume = o_.prefix_reuse && !reference && conds[c].resume >= 0;
      for (size_t p = 0; p < P; ++p) {
        // Finished before a resume (the reference always runs again: the knockouts need its residuals).
        if (const double* known = checkpoint_ && !reference ? checkpoint_->find(phase, c * P + p) : nullptr) {
          metric[c][p] = *known;
          continue;
        }
        GenerationRequest r = prompts_[p];
        r.mask = unmasked ? nullptr : &masks_[c + 1];
        r.capture = reference && o_.prefix_reuse;
        if (resume) r.resume_moe_layer = conds[c].resume;  // its residual is filled in as it is handed out
        todo.emplace_back(c * P + p, std::move(r));
        const auto len = static_cast<int64_t>(prompts_[p].prompt.size());
        ++data_.requests;
        data_.tokens += len;
        data_.layer_tokens += len * (layers - (resume ? decoder[static_cast<size_t>(conds[c].resume)] : 0));
        data_.layer_tokens_without_reuse += len * layers;
      }
    }
  }
  const int hidden = model_.config.hidden_size, n_moe = moe_layers();
  // The residual travels with a request only from the moment it is handed
  // out: a scan of thousands of conditions never holds them all at once.
  const RequestFiller fill = [&](size_t id, GenerationRequest& r) {
    if (r.resume_moe_layer < 0) return;
    const auto& from = residuals_[id % P];
    const size_t len = r.prompt.size();
    r.resume_h.resize(len * static_cast<size_t>(hidden));
    for (size_t pos = 0; pos < len; ++pos) {
      std::copy_n(&from[(pos * static_cast<size_t>(n_moe) + static_cast<size_t>(r.resume_moe_layer)) *
                        static_cast<size_t>(hidden)],
                  hidden, &r.resume_h[pos * static_cast<size_t>(hidden)]);
    }
  };
  std::optional<Progress> progress;
  if (root()) progress.emplace(todo.size(), 30.0, "prompt tokens");
  const ResultHandler done = [&](size_t id, GenerationResult&& result) {
    const size_t c = id / P, p = id % P;
    progress->request_done(static_cast<size_t>(result.prompt_positions));
    if (!result.error.empty()) fail("prompt '{}' under scan condition {}: {}", data_.prompt_ids[p], c, result.error);
    metric[c][p] = metric_.value(result.scores);
    if (reference) residuals_[p] = std::move(result.moe_inputs);
    if (checkpoint_ && !reference) checkpoint_->add(phase, id, metric[c][p]);
  };
  int stopped = job_run_->run(std::move(todo), root() ? done : ResultHandler(), root() ? fill : RequestFiller());
  if (progress) progress->finish();
  MPI_Bcast(&stopped, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (stopped != 0) throw ScanStopped{stopped};
  if (root()) {
    for (size_t c = 0; c < conds.size(); ++c) {
      for (size_t p = 0; p < P; ++p) {
        if (std::isnan(metric[c][p])) fail("internal error: no result for prompt {} under scan condition {}", p, c);
      }
    }
  }
  return metric;
}

double Scan::effect(const std::vector<double>& metric, std::vector<double>* per_prompt) const {
  std::vector<double> change(metric.size());
  for (size_t p = 0; p < metric.size(); ++p) change[p] = data_.baseline[p] - metric[p];
  if (per_prompt != nullptr) per_prompt->insert(per_prompt->end(), change.begin(), change.end());
  return spread(change).mean;
}

std::vector<Expert> Scan::ranked(const std::vector<Expert>& among) const {
  std::vector<Expert> out;
  for (const auto& x : among) {
    if (!std::isnan(data_.effect[static_cast<size_t>(x.first) * experts() + x.second])) out.push_back(x);
  }
  // Best first; ties go to the lower (layer, expert).
  std::stable_sort(out.begin(), out.end(), [&](const Expert& a, const Expert& b) {
    return data_.effect[static_cast<size_t>(a.first) * experts() + a.second] >
           data_.effect[static_cast<size_t>(b.first) * experts() + b.second];
  });
  return out;
}

void Scan::block_phase(std::vector<Expert>& singles) {
  const ModelConfig& c = model_.config;
  const int width = o_.block_size > 0 ? o_.block_size : c.n_group > 1 ? experts() / c.n_group : 8;
  std::vector<Knockout> blocks;
  if (root()) {
    data_.block_width = width;
    for (int l = 0; l < moe_layers(); ++l) {
      for (int first = 0; first < experts(); first += width) {
        std::vector<Expert> members;
        for (const auto& x : candidates_) {
          if (x.first == l && x.second >= first && x.second < first + width) members.push_back(x);
        }
        if (members.empty()) continue;
        data_.block_layer.push_back(l);
        for (int i = 0; i < width; ++i)
          data_.block_experts.push_back(i < static_cast<int>(members.size()) ? members[static_cast<size_t>(i)].second
                                                                             : -1);
        blocks.push_back(knockout(members));
      }
    }
  }
  const auto metric = run_phase(blocks, false, "blocks");
  if (!root()) return;
  std::vector<size_t> order(blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    std::vector<double> change;
    effect(metric[b], &change);
    const Spread s = spread(change);
    data_.block_effect.push_back(s.mean);
    data_.block_effect_sd.push_back(s.sd);
    order[b] = b;
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return data_.block_effect[a] > data_.block_effect[b]; });
  const size_t top =
      std::min(order.size(), static_cast<size_t>(o_.top_blocks > 0 ? o_.top_blocks : 2 * std::max(o_.top, 4)));
  data_.block_chosen.assign(blocks.size(), 0);
  for (size_t i = 0; i < top; ++i) {
    data_.block_chosen[order[i]] = 1;
    for (const auto& x : blocks[order[i]].off) singles.push_back(x);
  }
  std::sort(singles.begin(), singles.end());
  spdlog::info(
      "scan: the best {} of {} blocks hold {} candidates; best block: MoE layer {} from expert {} (effect {:.4g})", top,
      blocks.size(), singles.size(), data_.block_layer[order[0]],
      data_.block_experts[order[0] * static_cast<size_t>(width)], data_.block_effect[order[0]]);
}

void Scan::greedy() {
  // Round 1 is the single scan's best; each later round resumes from a
  // reference run with the experts chosen so far off.
  std::vector<Expert> pool;
  if (root()) {
    pool = ranked(candidates_);
    if (pool.size() > static_cast<size_t>(o_.greedy_pool)) pool.resize(static_cast<size_t>(o_.greedy_pool));
    const Expert best = pool[0];
    selected_.push_back(best);
    data_.greedy.push_back(best);
    data_.greedy_metric.push_back(spread(data_.baseline).mean -
                                  data_.effect[static_cast<size_t>(best.first) * experts() + best.second]);
  }
  int rounds = root() ? std::min(o_.greedy, static_cast<int>(pool.size())) : 0;
  MPI_Bcast(&rounds, 1, MPI_INT, 0, MPI_COMM_WORLD);
  for (int round = 1; round < rounds; ++round) {
    run_phase({knockout({}, selected_)}, true, "greedy reference");
    std::vector<Knockout> conds;
    std::vector<Expert> tried;
    if (root()) {
      for (const auto& x : pool) {
        if (std::find(selected_.begin(), selected_.end(), x) != selected_.end()) continue;
        tried.push_back(x);
        conds.push_back(knockout({x}, selected_));
      }
    }
    const auto metric = run_phase(conds, false, "greedy knockouts");
    if (!root()) continue;
    size_t best = 0;
    double best_mean = 0;
    for (size_t c = 0; c < conds.size(); ++c) {
      const double mean = spread(metric[c]).mean;
      if (c == 0 || mean < best_mean) {
        best = c;
        best_mean = mean;
      }
    }
    selected_.push_back(tried[best]);
    data_.greedy.push_back(tried[best]);
    data_.greedy_metric.push_back(best_mean);
  }
  if (root()) {
    for (size_t i = 0; i < data_.greedy.size(); ++i) {
      spdlog::info("scan: greedy round {}: MoE layer {} expert {} off, mean {} {:.4g}", i + 1, data_.greedy[i].first,
                   data_.greedy[i].second, o_.metric, data_.greedy_metric[i]);
    }
  }
}

void Scan::run() {
  start_ = std::chrono::steady_clock::now();
  const auto reference = run_phase({Knockout{}}, true, "reference");
  if (root()) data_.baseline = reference[0];

  std::vector<Expert> singles;
  if (o_.search == "full") {
    singles = candidates_;
  } else {
    block_phase(singles);
    if (o_.search == "both") singles = candidates_;
  }
  std::vector<Knockout> conds;
  if (root()) {
    for (const auto& x : singles) conds.push_back(knockout({x}));
  }
  const auto metric = run_phase(conds, false, "knockouts");
  if (root()) {
    const size_t P = prompts_.size();
    data_.effect.assign(static_cast<size_t>(moe_layers()) * experts(), std::nan(""));
    data_.effect_sd = data_.effect;
    data_.candidates = singles;
    std::vector<double> per_candidate;  // [candidate, prompt]
    for (size_t c = 0; c < singles.size(); ++c) {
      std::vector<double> change;
      effect(metric[c], &change);
      const Spread s = spread(change);
      const size_t at = static_cast<size_t>(singles[c].first) * experts() + singles[c].second;
      data_.effect[at] = s.mean;
      data_.effect_sd[at] = s.sd;
      per_candidate.insert(per_candidate.end(), change.begin(), change.end());
    }
    data_.per_prompt.resize(per_candidate.size());
    for (size_t c = 0; c < singles.size(); ++c) {
      for (size_t p = 0; p < P; ++p) data_.per_prompt[p * singles.size() + c] = per_candidate[c * P + p];
    }
    if (o_.search == "both") {
      // What the block search alone would have ranked first, against the full scan.
      std::vector<Expert> in_blocks;
      for (size_t b = 0; b < data_.block_chosen.size(); ++b) {
        if (!data_.block_chosen[b]) continue;
        for (int i = 0; i < data_.block_width; ++i) {
          const int e = data_.block_experts[b * static_cast<size_t>(data_.block_width) + static_cast<size_t>(i)];
          if (e >= 0) in_blocks.emplace_back(data_.block_layer[b], e);
        }
      }
      const size_t n = static_cast<size_t>(std::max(o_.top, 4));
      auto full = ranked(candidates_), blocks = ranked(in_blocks);
      full.resize(std::min(n, full.size()));
      blocks.resize(std::min(n, blocks.size()));
      data_.blocks_agree = full == blocks ? 1 : 0;
      if (full == blocks) {
        spdlog::info("scan: the block search and the full scan agree on the top {}", n);
      } else {
        spdlog::warn(
            "scan: the block search and the full scan disagree on the top {}: the blocks' top misses some of the full "
            "scan's",
            n);
      }
    }
  }
  if (o_.greedy > 0) greedy();
  data_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Scan::write(OutputFile* out, const MaskSets& masks) {
  if (!root()) return;
  const auto top = ranked(candidates_);
  const double base_mean = spread(data_.baseline).mean;
  std::cout << fmt::format("baseline {} of {}: {:.6g} (mean over {} prompts)\n", o_.metric, metric_.spec, base_mean,
                           data_.baseline.size());
  std::cout << fmt::format("{:>4}  {:>9}  {:>13}  {:>6}  {:>12}  {:>12}\n", "rank", "moe_layer", "decoder_layer",
                           "expert", "effect", "effect_sd");
  const size_t shown = std::min(top.size(), static_cast<size_t>(std::max(o_.top, 10)));
  const std::vector<int> decoder = model_.config.moe_layers();
  for (size_t i = 0; i < shown; ++i) {
    const auto [l, e] = top[i];
    const size_t at = static_cast<size_t>(l) * experts() + e;
    std::cout << fmt::format("{:>4}  {:>9}  {:>13}  {:>6}  {:>12.6f}  {:>12.6f}\n", i + 1, l,
                             decoder[static_cast<size_t>(l)], e, data_.effect[at], data_.effect_sd[at]);
  }
  const double saving =
      1.0 - static_cast<double>(data_.layer_tokens) / static_cast<double>(data_.layer_tokens_without_reuse);
  const auto rate = [&](double amount) { return data_.seconds > 0 ? amount / data_.seconds : 0.0; };
  spdlog::info("scan: {} requests, {} prompt tokens in {:.3f} s ({:.1f} requests/s, {:.1f} tokens/s); prefix reuse {}",
               data_.requests, data_.tokens, data_.seconds, rate(static_cast<double>(data_.requests)),
               rate(static_cast<double>(data_.tokens)),
               o_.prefix_reuse ? fmt::format("skipped {:.1f}% of the token-layers", 100 * saving) : std::string("off"));

  if (!o_.mask_out.empty()) {
    ExpertMask mask = base_ ? *base_ : ExpertMask(moe_layers(), experts());
    mask.off_policy = policy_;
    const size_t n = std::min(top.size(), static_cast<size_t>(o_.top));
    for (size_t i = 0; i < n; ++i) mask.set_off(top[i].first, top[i].second);
    const std::string header =
        fmt::format("the {} experts whose knockout most lowers {} of {}{} (mote scan)\n{}", n, o_.metric, metric_.spec,
                    base_ ? ", on top of the base mask" : "", o_.job.command_line);
    write_text_output(o_.mask_out, format_mask_file(mask, header), "--mask-out");
    std::cout << "wrote " << o_.mask_out << "\n";
  }
  if (out == nullptr) return;
  data_.metric = o_.metric;
  data_.metric_spec = metric_.spec;
  data_.policy = o_.policy;
  data_.search = o_.search;
  data_.moe_layers = moe_layers();
  data_.experts = experts();
  data_.decoder_index.assign(decoder.begin(), decoder.end());
  data_.prefix_reuse = o_.prefix_reuse;
  write_job_attributes(out->root(), o_.job, model_.config, *model_.placement, mpi_.size(), "scan");
  write_scan(out->root(), data_);
  write_masks(out->root(), masks.sets);  // the base mask, if any
  out->commit();
  if (checkpoint_) checkpoint_->remove();
  spdlog::info("wrote {}", o_.job.out);
}

}  // namespace

int run_scan(ScanOptions& options, MpiSession& mpi) {
  validate(options);
  JobOptions& job = options.job;
  set_threads(job, mpi);
  const int rank = mpi.rank(), world = mpi.size();
  job.coordinators = coordinator_count(job.coordinators, world);
  const bool root = rank == 0;

  // 1. The output, which must be none of the inputs.
  std::optional<OutputFile> out;
  if (root && !job.out.empty()) out.emplace(job.out);
  if (root && !options.mask_out.empty()) check_text_output(options.mask_out, "--mask-out");

  // 2. The model and the inputs.
  JobModel model = load_job_model(job, rank, world);
  if (root) spdlog::info("model {}", model.config.summary());
  mpi.job_started = true;
  const MaskSets masks = read_mask_sets(job, model.config, root);
  Scan scan(options, mpi, model);
  scan.read_inputs(masks);
  if (root) check_claimed_outputs();  // against the masks' includes, read only now

  // 3. The phases.
  try {
    scan.run();
  } catch (const ScanStopped& stopped) {
    if (root) {
      spdlog::warn("{}: the scan stopped", signal_name(stopped.signal));
      if (!scan.save_checkpoint()) spdlog::warn("nothing was saved (no --out)");
    }
    return 128 + stopped.signal;
  }

  // 4. Counters and the result.
  scan.finish();
  scan.write(out ? &*out : nullptr, masks);
  return 0;
}

}  // namespace mote
