#!/usr/bin/env bash
# Resident weights per rank on an FP8 synthetic model with DeepSeek-R1's
# layer shapes (hidden 7168, MLA as R1, one MoE layer of 16 experts of
# 2048, one shared expert), at world sizes 1 and 3, against what
# 'mote plan' predicts from the headers. Loading checks every FP8 byte, so
# a rank's FP8 weights are resident once loaded; bf16 embedding rows are
# read only for the tokens used, so the plan is compared with and without
# the input embedding. Prints one JSON object per world size.
#   bench/fp8_memory_bench.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 - "$root/bench/configs/deepseek-r1.json" "$work/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update({"num_hidden_layers": 1, "first_k_dense_replace": 0, "num_nextn_predict_layers": 0, "n_routed_experts": 16,
          "n_group": 8, "topk_group": 4, "vocab_size": 4096})
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
"$build/bench/make_synthetic_model" "$work/model" "$work/config.json" 1 > /dev/null
echo "Prompt about the world and its many places" > "$work/prompt.txt"
for n in 1 3; do
  MOTE_BIN=$build/mote "$root/launch/mote-run" -n "$n" --oversubscribe generate --model "$work/model" --prompts "$work/prompt.txt" \
    --max-new-tokens 2 --out "$work/out-$n.h5" --log-level warn > /dev/null
  "$build/mote" plan --model "$work/model" -n "$n" --json > "$work/plan-$n.json"
  /usr/bin/python3 - "$work/out-$n.h5" "$work/plan-$n.json" <<'PY'
import json, sys
import h5py
with h5py.File(sys.argv[1], "r") as f:
    resident = [int(x) for x in f["ranks/weights_resident_bytes"][()]]
plan = json.load(open(sys.argv[2]))
predicted = [r["weights_bytes"] for r in plan["ranks"]]
embed = 4096 * 7168 * 2  # model.embed_tokens, read row by row
without = [p - (embed if i == 0 else 0) for i, p in enumerate(predicted)]
print(json.dumps({"bench": "fp8_memory", "world_size": len(resident),
                  "resident_mb_per_rank": [round(r / 1e6, 1) for r in resident],
                  "planned_mb_per_rank": [round(p / 1e6, 1) for p in predicted],
                  "resident_over_planned": [round(r / p, 3) for r, p in zip(resident, predicted)],
                  "resident_over_planned_without_input_embedding": [round(r / p, 3) for r, p in zip(resident, without)],
                  "routed_mb_per_rank": [round(r["routed_bytes"] / 1e6, 1) for r in plan["ranks"]]}))
PY
done
