#!/usr/bin/env bash
# The golden prompts at world sizes 1-4 with contiguous placement and one
# coordinator, and with round-robin placement and every rank coordinating
# (the default), and a coordinator without experts, a placement file, bf16
# on the wire: tokens, logits, routing and counters must be bit-identical
# to the single-process run, which must match the golden reference.
source "$(dirname "$0")/lib.sh"
set -e
model=$root/models/tiny-deepseek-v3-mote
/usr/bin/python3 "$root/tests/jobs/golden_prompts.py" "$model" "$work/golden.jsonl"
common=(--prompts "$work/golden.jsonl" --max-new-tokens 32 --ignore-eos --save-logits --trace --log-level warn)

"$MOTE_BIN" generate "${common[@]}" --out "$work/single.h5" > /dev/null
/usr/bin/python3 "$root/tests/jobs/check_golden.py" "$model" "$work/single.h5" base


for n in 1 2 3 4; do
  for layout in "contiguous 1" "round-robin all"; do
    set -- $layout
    "$run" -n "$n" --oversubscribe generate "${common[@]}" --placement "$1" --coordinators "$2" --out "$work/$n-$1.h5" > /dev/null
    same "$work/single.h5" "$work/$n-$1.h5"
    echo "world size $n, $1 placement, coordinators $2: bit-identical"
  done
done

"$run" -n 3 --oversubscribe generate "${common[@]}" --coordinators 1 --coordinator-experts false --out "$work/no-coord.h5" > /dev/null
same "$work/single.h5" "$work/no-coord.h5"
echo "world size 3, coordinator without experts: bit-identical"

/usr/bin/python3 - "$work/placement.json" <<'PY'
import json, sys
# Experts scattered over 4 ranks by a hash-like rule, different per layer.
json.dump({"owner": [[(7 * e + 3 * l) % 4 for e in range(32)] for l in range(5)]}, open(sys.argv[1], "w"))
PY
"$run" -n 4 --oversubscribe generate "${common[@]}" --placement-file "$work/placement.json" --out "$work/file.h5" > /dev/null
same "$work/single.h5" "$work/file.h5"
echo "world size 4, placement file: bit-identical"

"$run" -n 3 --oversubscribe generate "${common[@]}" --weights copy --out "$work/copy.h5" > /dev/null
same "$work/single.h5" "$work/copy.h5"
echo "world size 3, weights copied into each rank: bit-identical"

# Without --save-logits the last layer's experts run only for the rows
# that are sampled; every row is still routed and counted there.
lean=(--prompts "$work/golden.jsonl" --max-new-tokens 32 --ignore-eos --trace --log-level warn)
"$run" -n 3 --oversubscribe generate "${lean[@]}" --out "$work/lean.h5" > /dev/null
for object in /counts /gate_sum /tokens; do
  h5diff -q "$work/single.h5" "$work/lean.h5" "$object" "$object" || { echo "FAIL: $object differs without --save-logits"; exit 1; }
done
/usr/bin/python3 - "$work/single.h5" "$work/lean.h5" <<'PY'
import sys, h5py, numpy as np
full, lean = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
for name in full["requests"]:
    a, b = full["requests"][name], lean["requests"][name]
    for d in ("generated_tokens", "routing/experts", "routing/weights", "expert_counts", "expert_gate_sum"):
        assert np.array_equal(a[d][()], b[d][()]), f"request {name}: {d} differs without --save-logits"
    assert "logits" not in b
print("without --save-logits (skipping the last layer's unread rows): tokens, routing and counters bit-identical")
PY

"$MOTE_BIN" generate "${common[@]}" --wire-dtype bf16 --out "$work/bf16-1.h5" > /dev/null
"$run" -n 4 --oversubscribe generate "${common[@]}" --wire-dtype bf16 --placement round-robin --out "$work/bf16-4.h5" > /dev/null
same "$work/bf16-1.h5" "$work/bf16-4.h5"
echo "bf16 on the wire: world size 4 bit-identical to world size 1"
