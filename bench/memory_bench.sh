#!/usr/bin/env bash
# Resident weight memory per rank at world sizes 1, 2 and 4 on a synthetic
# model with ~300 MB of routed experts. Each rank maps the weight files but
# touches only its own experts (rank 0 also the non-expert weights).
# Prints one JSON object per world size.
#   bench/memory_bench.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$build/bench/make_synthetic_model" "$work/model" > /dev/null
for i in $(seq 1 48); do echo "Prompt number $i about the world and its many places"; done > "$work/prompts.txt"
for n in 1 2 4; do
  MOTE_BIN=$build/mote "$root/launch/mote-run" -n "$n" --oversubscribe generate --model "$work/model" \
    --prompts "$work/prompts.txt" --max-new-tokens 8 --ignore-eos --placement round-robin \
    --coordinator-experts "$([ "$n" -eq 1 ] && echo true || echo false)" --out "$work/out-$n.h5" --log-level warn > /dev/null
  /usr/bin/python3 - "$work/out-$n.h5" "$work/model" <<'PY'
import json, sys
import h5py
from pathlib import Path
with h5py.File(sys.argv[1], "r") as f:
    resident = [int(x) for x in f["ranks/weights_resident_bytes"][()]]
    peak = [int(x) for x in f["ranks/peak_rss_bytes"][()]]
    experts = [int(x) for x in f["ranks/routed_experts"][()]]
    used = int((f["counts"][()].sum(axis=(0, 1)) > 0).sum())
    total = int(f["counts"][()].shape[2] * f["counts"][()].shape[3])
cfg = json.load(open(Path(sys.argv[2]) / "config.json"))
expert_bytes = 3 * cfg["hidden_size"] * cfg["moe_intermediate_size"] * 2
print(json.dumps({"bench": "memory", "world_size": len(resident), "routed_experts_per_rank": experts,
                  "experts_used": f"{used}/{total}",
                  "expert_weight_mb_per_rank": [round(e * expert_bytes / 1e6, 1) for e in experts],
                  "weights_resident_mb_per_rank": [round(r / 1e6, 1) for r in resident],
                  "peak_rss_mb_per_rank": [round(p / 1e6, 1) for p in peak]}))
PY
done
