#!/usr/bin/env bash
# fTRI end to end: profile at world sizes 1, 2 and 4 (identical files whose
# class counters equal the per-request counts summed), rank, and an
# experiment with random controls.
set -euo pipefail
root=$1
export MOTE_BIN=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
head -n 12 "$root/configs/prompts/refusal-profile.jsonl" > prompts.jsonl
tail -n 12 "$root/configs/prompts/refusal-profile.jsonl" >> prompts.jsonl
common=(--prompts prompts.jsonl --max-new-tokens 10 --log-level warn)
"$MOTE_BIN" profile "${common[@]}" --out p1.h5 > /dev/null
for n in 2 4; do
  "$root/launch/mote-run" -n "$n" --oversubscribe profile "${common[@]}" --placement round-robin --out "p$n.h5" > /dev/null
  for object in /requests /counts /gate_sum /tokens /classes; do
    h5diff -q p1.h5 "p$n.h5" "$object" "$object" || { echo "FAIL: world size $n differs in $object"; exit 1; }
  done
done
/usr/bin/python3 - p1.h5 <<'PY'
import sys
import h5py
import numpy as np
f = h5py.File(sys.argv[1], "r")
assert f.attrs["job"] == "profile"
classes = [c.decode() if isinstance(c, bytes) else c for c in f["classes"][()]]
assert classes == ["sensitive", "neutral"], classes
counts, gate, tokens = f["counts"][()], f["gate_sum"][()], f["tokens"][()]
summed = np.zeros_like(counts)
gsum = np.zeros_like(gate)
tok = np.zeros_like(tokens)
for i in range(len(f["requests"])):
    r = f[f"requests/{i}"]
    c = classes.index(r.attrs["class"])
    summed[c] += r["expert_counts"][()]
    gsum[c] += r["expert_gate_sum"][()]
    n = len(r["prompt_tokens"])
    tok[c] += np.array([n, len(r["generated_tokens"]) - 1], dtype=np.uint64)
assert (summed == counts).all()
assert np.allclose(gsum, gate, rtol=1e-12, atol=0)
assert (tok == tokens).all()
# Every token position is routed to top_k = 4 experts in each of the 5 MoE layers.
assert (counts.sum(axis=3) == 4 * tokens[:, :, None]).all()
print("profile: counters = per-request counts summed; 4 experts per token and layer; world sizes 1, 2, 4 identical")
PY
"$MOTE_BIN" rank p1.h5 --target sensitive --control neutral --top 3 --out top3.ini > rank.txt
grep -q "^   1 " rank.txt && grep -c "^off = " top3.ini | grep -qx 3 || { echo "FAIL: rank output"; cat rank.txt top3.ini; exit 1; }
"$MOTE_BIN" rank p1.h5 --target sensitive --control neutral --top 2 --per-layer --score log-odds --phase prompt > /dev/null
if "$MOTE_BIN" rank p1.h5 --target refusal --control neutral 2> err.txt; then echo "FAIL: unknown class accepted"; exit 1; fi
grep -q "class 'refusal' is not in the profile (classes: sensitive, neutral)" err.txt
echo "rank: table, mask file of the top 3, per-layer log-odds; unknown class refused"

"$MOTE_BIN" generate --prompts prompts.jsonl --mask top3.ini --max-new-tokens 4 --log-level warn > /dev/null
"$MOTE_BIN" experiment --prompts prompts.jsonl --target-mask top3.ini --random 2 --mask-seed 3 --max-new-tokens 10 --out exp.h5 --log-level warn > exp.txt
grep -q "random masks, sensitive: mean" exp.txt
/usr/bin/python3 - exp.h5 exp.csv <<'PY'
import csv, sys
import h5py
f = h5py.File(sys.argv[1], "r")
e = f["experiment"]
conds = [c.decode() if isinstance(c, bytes) else c for c in e["conditions"][()]]
assert conds == ["baseline", "target", "random-1", "random-2"], conds
assert e["rate"].shape == (4, 2) and (e["requests"][()] == 12).all()
assert list(e["experts_off"][()]) == [0, 3, 3, 3]
assert len(f["requests"]) == 4 * 24
rows = list(csv.DictReader(open(sys.argv[2])))
assert len(rows) == 8 and rows[0]["condition"] == "baseline"
print("experiment: 4 conditions x 2 classes in HDF5 and CSV")
PY
