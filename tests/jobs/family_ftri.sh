#!/usr/bin/env bash
# fTRI end to end on other families (OLMoE, Qwen3-MoE and gpt-oss fixtures):
# profile at world sizes 1 and 2 (identical files; every token routed to
# top_k experts per MoE layer), rank into a mask file, an experiment with
# that mask and random controls, and a knockout scan of the ranked experts
# at world sizes 1 and 2 (identical files).
source "$(dirname "$0")/lib.sh"
set -e
head -n 8 "$root/configs/prompts/refusal-profile.jsonl" > prompts.jsonl
tail -n 8 "$root/configs/prompts/refusal-profile.jsonl" >> prompts.jsonl
for family in olmoe qwen3-moe gpt-oss; do
  model=$root/models/tiny-$family
  common=(--model "$model" --prompts prompts.jsonl --max-new-tokens 6 --log-level warn)
  "$MOTE_BIN" profile "${common[@]}" --out "$family-1.h5" > /dev/null
  "$root/launch/mote-run" -n 2 --oversubscribe profile "${common[@]}" --out "$family-2.h5" > /dev/null
  for object in /requests /counts /gate_sum /tokens /classes; do
    h5diff -q "$family-1.h5" "$family-2.h5" "$object" "$object" || { echo "FAIL: $family world size 2 differs in $object"; exit 1; }
  done
  /usr/bin/python3 - "$family-1.h5" "$model/config.json" <<'PY'
import json, sys
import h5py
f = h5py.File(sys.argv[1], "r")
config = json.load(open(sys.argv[2]))
k = config["num_experts_per_tok"]
counts, tokens = f["counts"][()], f["tokens"][()]
experts = config.get("num_experts", config.get("num_local_experts"))
assert counts.shape[2] == config["num_hidden_layers"] and counts.shape[3] == experts, counts.shape
assert (counts.sum(axis=3) == k * tokens[:, :, None]).all()
print(f"{config['model_type']}: every token routed to {k} experts in each MoE layer")
PY
  "$MOTE_BIN" rank "$family-1.h5" --target sensitive --control neutral --top 3 --out "$family-top3.ini" > /dev/null
  grep -c "^off = " "$family-top3.ini" | grep -qx 3 || { echo "FAIL: $family rank"; cat "$family-top3.ini"; exit 1; }
  "$MOTE_BIN" experiment "${common[@]}" --target-mask "$family-top3.ini" --random 2 --mask-seed 3 --out "$family-exp.h5" > "$family-exp.txt"
  grep -q "random masks, sensitive: mean" "$family-exp.txt"
  /usr/bin/python3 - "$family-exp.h5" <<'PY'
import sys
import h5py
e = h5py.File(sys.argv[1], "r")["experiment"]
assert list(e["experts_off"][()]) == [0, 3, 3, 3]
assert (e["requests"][()] == 8).all()
PY
  scan=(--model "$model" --prompts prompts.jsonl --class sensitive --metric token-prob --tokens "#0,#1" --candidates "$family-top3.ini" --log-level warn)
  "$MOTE_BIN" scan "${scan[@]}" --out "$family-scan-1.h5" > /dev/null
  "$root/launch/mote-run" -n 2 --oversubscribe scan "${scan[@]}" --out "$family-scan-2.h5" > /dev/null
  for object in /scan/baseline /scan/candidates /scan/per_prompt /scan/effect; do
    h5diff -q "$family-scan-1.h5" "$family-scan-2.h5" "$object" "$object" || { echo "FAIL: $family scan at world size 2 differs in $object"; exit 1; }
  done
  echo "$family: profile and scan (world sizes 1 and 2 identical), rank and experiment"
done
