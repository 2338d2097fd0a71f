#!/usr/bin/env bash
# The FP8 twin of the bundled model (DeepSeek-R1's weight format) at world
# sizes 1 and 3: the golden prompts match the reference (tokens, logits,
# routing, greedy continuation) and the files are bit-identical; with the
# bundled model's causal refusal mask, 1 and 3 ranks are bit-identical too.
source "$(dirname "$0")/lib.sh"
set -e
model=$root/models/tiny-deepseek-v3-mote-fp8

/usr/bin/python3 - "$model" "$work/golden.jsonl" <<'PY'
import json, sys
golden = json.load(open(f"{sys.argv[1]}/golden/golden.json", encoding="utf-8"))
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for p in golden["prompts"]:
        raw = p["kind"] == "raw"
        f.write(json.dumps({"id": p["name"], "class": p["kind"], "prompt": p["text"] if raw else p["rendered"],
                            "add_special_tokens": raw}, ensure_ascii=False) + "\n")
PY
common=(--model "$model" --prompts "$work/golden.jsonl" --max-new-tokens 32 --ignore-eos --save-logits --trace --log-level warn)

source "$root/tests/jobs/same_results.sh"

"$MOTE_BIN" generate "${common[@]}" --out "$work/1.h5" > /dev/null
/usr/bin/python3 "$root/tests/jobs/check_npz_golden.py" "$model/golden" "$work/1.h5" "FP8, world size 1" --tolerance 1e-4
"$run" -n 3 --oversubscribe generate "${common[@]}" --placement round-robin --out "$work/3.h5" > /dev/null
same "$work/1.h5" "$work/3.h5"
echo "FP8, world size 3: bit-identical to world size 1"

mask=$root/configs/masks/refusal-causal-top4.ini
"$MOTE_BIN" generate "${common[@]}" --mask "$mask" --out "$work/mask-1.h5" > /dev/null
"$run" -n 3 --oversubscribe generate "${common[@]}" --mask "$mask" --out "$work/mask-3.h5" > /dev/null
same "$work/mask-1.h5" "$work/mask-3.h5"
if h5diff -q "$work/1.h5" "$work/mask-1.h5" /requests/0/routing/experts /requests/0/routing/experts; then
  echo "FAIL: the causal mask changed no routing"; exit 1
fi
echo "FP8 with the causal refusal mask: world size 3 bit-identical to world size 1"
