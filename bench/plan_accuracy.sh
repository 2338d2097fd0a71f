#!/usr/bin/env bash
# How close 'mote plan' comes to what a job really uses, for every fixture in
# models/: the plan's total per rank against the peak resident memory of a
# job that fills what the plan sizes for (a full batch of prompts on every
# coordinator, each as long as the model's positions allow, fed in steps of
# --max-step-tokens).
# Prints one JSON object per fixture and world size.
#   bench/plan_accuracy.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for model in "$root"/models/*/; do
  model=${model%/}
  [ -f "$model/config.json" ] || continue
  name=$(basename "$model")
  # Prompts of about the longest length the model takes, with room for the generated tokens.
  /usr/bin/python3 - "$build/mote" "$model" "$work/prompts.jsonl" <<'PY'
import json, subprocess, sys, tempfile
mote, model, out = sys.argv[1:4]  # 16 prompts: a batch of 8 for each of up to 2 coordinators
cfg = json.load(open(f"{model}/config.json"))
limit = min(cfg["max_position_embeddings"], 2048) - 16
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as f:
    f.write(json.dumps({"text": " ".join(words * 20)}) + "\n")
    f.flush()
    ids = json.loads(subprocess.run([mote, "tokenize", "--tokenizer", model, "--input", f.name], capture_output=True, text=True,
                                    check=True).stdout)["ids"]
n_words = int(len(words) * 20 * limit / len(ids) * 0.95)
with open(out, "w") as f:
    for i in range(16):
        f.write(json.dumps({"id": str(i), "prompt": " ".join(words[(i + j) % len(words)] for j in range(n_words))}) + "\n")
PY
  for n in 1 2; do
    "$build/mote" plan --model "$model" -n "$n" --coordinators all --json > "$work/plan.json"
    MOTE_BIN=$build/mote "$root/launch/mote-run" -n "$n" generate --model "$model" --prompts "$work/prompts.jsonl" \
      --max-new-tokens 8 --ignore-eos --out "$work/out.h5" --log-level warn > /dev/null
    /usr/bin/python3 - "$work/plan.json" "$work/out.h5" "$name" <<'PY'
import json, sys
import h5py
plan = json.load(open(sys.argv[1]))
with h5py.File(sys.argv[2], "r") as f:
    peak = [int(x) for x in f["ranks/peak_rss_bytes"][()]]
planned = [r["total_bytes"] for r in plan["ranks"]]
print(json.dumps({"bench": "plan_accuracy", "model": sys.argv[3], "world_size": len(peak),
                  "planned_mb_per_rank": [round(p / 1e6, 1) for p in planned],
                  "peak_rss_mb_per_rank": [round(p / 1e6, 1) for p in peak],
                  "planned_over_peak": [round(p / q, 3) for p, q in zip(planned, peak)]}))
PY
    rm -f "$work/out.h5"
  done
done
