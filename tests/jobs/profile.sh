#!/usr/bin/env bash
# fTRI end to end: profile at world sizes 1, 2 and 4 (identical files whose
# class counters equal the per-request counts summed), rank, and an
# experiment with random controls.
source "$(dirname "$0")/lib.sh"
set -e
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
# Gate-weight sums, and the last prompt token from the routing traces.
"$MOTE_BIN" profile "${common[@]}" --trace --out traced.h5 > /dev/null
"$MOTE_BIN" rank traced.h5 --target sensitive --control neutral --top 160 --score gate-diff --phase prompt > gate.txt
"$MOTE_BIN" rank traced.h5 --target sensitive --control neutral --top 160 --phase last-prompt > last.txt
/usr/bin/python3 - traced.h5 gate.txt last.txt <<'PY'
import sys
import h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
classes = [c.decode() for c in f["classes"][()]]
# gate-diff over prompt tokens: gate weight per prompt token, target minus control.
g, t = f["gate_sum"][()], f["tokens"][()]
gate = g[:, 0] / t[:, 0, None, None]
want = gate[0] - gate[1]
rows = [l.split() for l in open(sys.argv[2]).read().splitlines()[1:]]
assert len(rows) == 160
for r in rows[:10]:
    assert abs(float(r[4]) - want[int(r[1]), int(r[3])]) < 1e-5, r
assert float(rows[0][4]) >= float(rows[-1][4])
# last-prompt: frequency at each request's last prompt position, recounted from the traces.
counts = np.zeros((2, 5, 32)); n = np.zeros(2)
for r in f["requests"].values():
    c = classes.index(r.attrs["class"])
    last = len(r["prompt_tokens"][()]) - 1
    n[c] += 1
    for layer, experts in enumerate(r["routing/experts"][last]):
        for e in experts:
            counts[c, layer, e] += 1
freq = counts / n[:, None, None]
rows = [l.split() for l in open(sys.argv[3]).read().splitlines()[1:]]
for r in rows[:10]:
    assert abs(float(r[4]) - (freq[0] - freq[1])[int(r[1]), int(r[3])]) < 1e-5, r
print("rank: gate-diff over prompt tokens and frequency at the last prompt token match the file's counts and traces")
PY
if "$MOTE_BIN" rank p1.h5 --target sensitive --control neutral --phase last-prompt 2> err.txt; then echo "FAIL: last-prompt without traces"; exit 1; fi
grep -q "profile with --trace" err.txt
echo "rank: table, mask file of the top 3, per-layer log-odds; gate-diff; last prompt token; unknown class refused"

# --no-request-counts: the same class totals, no per-request counts; no checkpoint to resume from.
"$MOTE_BIN" profile "${common[@]}" --no-request-counts --out nocounts.h5 > /dev/null
for object in /counts /gate_sum /tokens; do
  h5diff -q p1.h5 nocounts.h5 "$object" "$object" || { echo "FAIL: --no-request-counts changed $object"; exit 1; }
done
if h5ls -r nocounts.h5 | grep -q expert_counts; then echo "FAIL: --no-request-counts kept per-request counts"; exit 1; fi
if "$MOTE_BIN" profile "${common[@]}" --no-request-counts --checkpoint-every 4 --out x.h5 2> err.txt; then echo "FAIL: accepted"; exit 1; fi
grep -q "cannot go with --checkpoint-every" err.txt
echo "--no-request-counts: totals identical, per-request counts left out, checkpoints refused"

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
