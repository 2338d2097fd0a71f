#!/usr/bin/env bash
# Resident weights per rank on a quantized synthetic model at world sizes 1
# and 3, against what 'mote plan' predicts from the headers:
#   fp8:   DeepSeek-R1's layer shapes (hidden 7168, MLA as R1, one MoE layer
#          of 16 experts of 2048, one shared expert), FP8 with block scales;
#   mxfp4: gpt-oss-20b's layer shapes (hidden 2880, two layers, one sliding
#          and one full, 12 experts of 2880 stored stacked in MXFP4).
# Loading checks every FP8 byte and every MXFP4 scale and reads the blocks
# of the experts a rank holds, so its quantized weights are resident once
# loaded; bf16 embedding rows are read only for the tokens used, so the
# plan is compared with and without the input embedding. Prints one JSON
# object per world size.
#   bench/quantized_memory_bench.sh [BUILD_DIR] [fp8|mxfp4]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
format=${2:-fp8}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 - "$root/bench/configs" "$format" "$work/config.json" <<'PY'
import json, sys
configs, fmt, out = sys.argv[1:4]
if fmt == "fp8":
    c = json.load(open(f"{configs}/deepseek-r1.json"))
    c.update({"num_hidden_layers": 1, "first_k_dense_replace": 0, "num_nextn_predict_layers": 0, "n_routed_experts": 16,
              "n_group": 8, "topk_group": 4, "vocab_size": 4096})
elif fmt == "mxfp4":
    c = json.load(open(f"{configs}/gpt-oss-20b.json"))
    c.update({"num_hidden_layers": 2, "layer_types": ["sliding_attention", "full_attention"], "num_local_experts": 12,
              "vocab_size": 4096, "eos_token_id": 1, "pad_token_id": 0})  # the bundled model's tokenizer
else:
    sys.exit(f"format '{fmt}' is not fp8 or mxfp4")
json.dump(c, open(out, "w"), indent=2)
PY
"$build/bench/make_synthetic_model" "$work/model" "$work/config.json" 1 > /dev/null
echo "Prompt about the world and its many places" > "$work/prompt.txt"
for n in 1 3; do
  MOTE_BIN=$build/mote "$root/launch/mote-run" -n "$n" --oversubscribe generate --model "$work/model" --prompts "$work/prompt.txt" \
    --max-new-tokens 2 --out "$work/out-$n.h5" --log-level warn > /dev/null
  "$build/mote" plan --model "$work/model" -n "$n" --json > "$work/plan-$n.json"
  /usr/bin/python3 - "$work/out-$n.h5" "$work/plan-$n.json" "$work/config.json" "$format" <<'PY'
import json, sys
import h5py
with h5py.File(sys.argv[1], "r") as f:
    resident = [int(x) for x in f["ranks/weights_resident_bytes"][()]]
plan = json.load(open(sys.argv[2]))
config = json.load(open(sys.argv[3]))
predicted = [r["weights_bytes"] for r in plan["ranks"]]
embed = config["vocab_size"] * config["hidden_size"] * 2  # model.embed_tokens, read row by row
without = [p - (embed if i == 0 else 0) for i, p in enumerate(predicted)]
print(json.dumps({"bench": f"{sys.argv[4]}_memory", "world_size": len(resident),
                  "resident_mb_per_rank": [round(r / 1e6, 1) for r in resident],
                  "planned_mb_per_rank": [round(p / 1e6, 1) for p in predicted],
                  "resident_over_planned": [round(r / p, 3) for r, p in zip(resident, predicted)],
                  "resident_over_planned_without_input_embedding": [round(r / p, 3) for r, p in zip(resident, without)],
                  "routed_mb_per_rank": [round(r["routed_bytes"] / 1e6, 1) for r in plan["ranks"]]}))
PY
done
