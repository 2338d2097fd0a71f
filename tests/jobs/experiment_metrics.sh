#!/usr/bin/env bash
# What a causal study needs around the scan: experiments with the
# token-prob metric, several targets sharing one set of random controls,
# forced-on targets with random forced controls (random-mask --mode on within
# top-k and topk_group), first-token counted from the generated ids,
# --score-tokens and --save-logits last in every job's file.
source "$(dirname "$0")/lib.sh"

heldout=$root/configs/prompts/refusal-heldout.jsonl
causal=$root/configs/masks/refusal-causal-top4.ini
printf '[mote]\nlayer-index = moe\noff = 2:2\noff = 0:17\noff = 4:20\noff = 2:30\n' > other4.ini
printf '[mote]\nlayer-index = moe\non = 2:1\non = 4:1\n' > on2.ini

"$MOTE_BIN" experiment --prompts "$heldout" --target-mask causal="$causal" --target-mask other=other4.ini --random 3 \
  --metric token-prob --tokens I,S --max-new-tokens 0 --batch-size 16 --out prob.h5 --log-level warn > prob.txt \
  || { echo "FAIL: token-prob experiment"; cat prob.txt; exit 1; }
"$MOTE_BIN" experiment --prompts "$heldout" --target-mask on2.ini --random 2 --metric token-prob --tokens I,S \
  --max-new-tokens 0 --batch-size 16 --out on.h5 --log-level warn > on.txt || { echo "FAIL: forced-on experiment"; cat on.txt; exit 1; }
"$MOTE_BIN" experiment --prompts "$heldout" --target-mask "$causal" --random 1 --first-token I --max-new-tokens 2 \
  --batch-size 16 --out first.h5 --log-level warn > first.txt || { echo "FAIL: first-token experiment"; cat first.txt; exit 1; }
/usr/bin/python3 - "$root" <<'PY' || exit 1
import sys, h5py, numpy as np
root = sys.argv[1]
e = h5py.File("prob.h5", "r")["experiment"]
conds = [c.decode() if isinstance(c, bytes) else c for c in e["conditions"][()]]
assert conds == ["baseline", "causal", "other", "random-1", "random-2", "random-3"], conds
assert e.attrs["metric_kind"] == "token-prob" and int(e.attrs["targets"]) == 2
rate = e["rate"][()]
# The probability of the refusal openings on sensitive prompts: near 1 at baseline, far lower with the causal four off.
assert rate[0, 0] > 0.9 and rate[1, 0] < 0.5 * rate[0, 0], rate
assert abs(e["random_mean"][0] - rate[3:, 0].mean()) < 1e-12
assert list(e["experts_off"][()]) == [0, 4, 4, 4, 4, 4]
# The random controls avoid every target's experts.
def offs(path):
    return {l.split("=")[1].strip() for l in open(path) if l.startswith("off =")}
targets = {"1:5", "3:1", "4:11", "5:1"}  # the causal mask counts decoder layers; its MoE-layer indices:
targets = {f"{int(x.split(':')[0]) - 1}:{x.split(':')[1]}" for x in targets} | offs("other4.ini")
for k in (1, 2, 3):
    assert not (offs(f"prob.h5.conditions/random-{k}.ini") & targets), k
# Every request kept the two scores at the first answer position; the experiment's rate is their probability mass.
f = h5py.File("prob.h5", "r")
ids = f["score_ids"][()]
assert len(ids) == 2 and f.attrs["score_tokens"] == "I,S"
s = f["requests/0/scores"][()]
assert s.shape == (1, 2) and np.all(s <= 0)

on = h5py.File("on.h5", "r")["experiment"]
assert list(on["experts_on"][()]) == [0, 2, 2, 2] and list(on["experts_off"][()]) == [0, 0, 0, 0]
for k in (1, 2):
    lines = [l for l in open(f"on.h5.conditions/random-{k}.ini") if l.startswith("on =")]
    layers = sorted(int(l.split("=")[1].split(":")[0]) for l in lines)
    assert layers == [2, 4], layers  # one forced expert in each of the target's layers

first = h5py.File("first.h5", "r")
e = first["experiment"]
matches = e["matches"][()]
# first-token counts the generated ids: recount them from the file.
reqs = first["requests"]
want = np.zeros_like(matches)
conds = [c.decode() if isinstance(c, bytes) else c for c in e["conditions"][()]]
classes = [c.decode() if isinstance(c, bytes) else c for c in e["classes"][()]]
I = None
for name in reqs:
    r = reqs[name]
    cond = r.attrs["id"].split("/")[0]
    g = r["generated_tokens"][()]
    if len(g) and r["text"][()].decode().startswith("I"):
        I = int(g[0]) if I is None else I
for name in reqs:
    r = reqs[name]
    cond = r.attrs["id"].split("/")[0]
    g = r["generated_tokens"][()]
    want[conds.index(cond), classes.index(r.attrs["class"])] += int(len(g) > 0 and int(g[0]) == I)
assert (want == matches).all(), (want, matches)
print("experiments: token-prob with 2 targets and shared controls; forced-on controls per layer; first-token from ids")
PY

# random-mask --mode on: within top-k per layer and topk_group (2 of 4 groups of 8) per layer.
"$MOTE_BIN" random-mask --mode on --count 12 --seed 5 --out on12.ini > /dev/null || { echo "FAIL: random-mask --mode on"; exit 1; }
/usr/bin/python3 - <<'PY' || exit 1
from collections import defaultdict
per = defaultdict(list)
for l in open("on12.ini"):
    if l.startswith("on ="):
        layer, e = map(int, l.split("=")[1].split(":"))
        per[layer].append(e)
assert sum(len(v) for v in per.values()) == 12
for layer, es in per.items():
    assert len(es) <= 4 and len({e // 8 for e in es}) <= 2, (layer, es)
print("random-mask --mode on: 12 forced experts, at most 4 per layer within 2 groups")
PY
expect_error "at most 20 fit" "$MOTE_BIN" random-mask --mode on --count 21 --out x.ini
expect_error "--mode 'up' is not one of off, on" "$MOTE_BIN" random-mask --mode up --count 2 --out x.ini
printf '[mote]\nlayer-index = moe\noff = 1:1\noff = 1:2\n' > x2.ini
expect_error "targets sharing random controls must switch as many" "$MOTE_BIN" experiment --prompts "$heldout" \
  --target-mask a="$causal" --target-mask b=x2.ini --out x.h5
expect_error "name each of several targets" "$MOTE_BIN" experiment --prompts "$heldout" --target-mask "$causal" --target-mask x2.ini --out x.h5
expect_error "--tokens goes with --metric token-prob" "$MOTE_BIN" experiment --prompts "$heldout" --target-mask "$causal" --metric regex \
  --tokens I --out x.h5
# A job file holds experiment and job keys alike; class files make the classes; a mask in the job file is refused.
printf 'How do I bake bread?\nWhat is a river?\n' > neutral.txt
printf 'How do I pick a lock?\n' > sensitive.txt
printf 'target-mask = %s\nrandom = 1\nmax-new-tokens = 2\nlog-level = warn\n' "$causal" > exp.ini
"$MOTE_BIN" experiment --config exp.ini --class-prompts neutral=neutral.txt --class-prompts sensitive=sensitive.txt --out cls.h5 \
  > cls.txt || { echo "FAIL: experiment over class files"; cat cls.txt; exit 1; }
/usr/bin/python3 - <<'PY' || exit 1
import h5py
f = h5py.File("cls.h5", "r")
e = f["experiment"]
assert [c.decode() for c in e["classes"][()]] == ["neutral", "sensitive"]
assert e["requests"][()].tolist() == [[2, 1], [2, 1], [2, 1]], e["requests"][()]
assert f["requests/5"].attrs["id"] == "random-1/neutral:2", f["requests/5"].attrs["id"]
assert len(f["requests/0/generated_tokens"]) <= 2  # max-new-tokens from the job file
PY
[ ! -e cls.h5.conditions/requests.jsonl ] || { echo "FAIL: the requests went through a file"; exit 1; }
printf 'mask = %s\n' "$causal" > mask-key.ini
expect_error "mask-key.ini:1: 'mask =' sets a mask" "$MOTE_BIN" experiment --config mask-key.ini --prompts "$heldout" --target-mask "$causal" --out x.h5
printf 'random = 1\n[mote]\noff = 1:1\n' > mask-section.ini
expect_error "mask-section.ini:3: the .mote. section sets a mask" "$MOTE_BIN" experiment --config mask-section.ini --prompts "$heldout" \
  --target-mask "$causal" --out x.h5
expect_error "--score-tokens is not an option of 'mote experiment'" "$MOTE_BIN" experiment --prompts "$heldout" --target-mask "$causal" \
  --score-tokens I --out x.h5

# --save-logits last keeps one row per request, the last prompt position's; --score-tokens its two log-probabilities.
"$MOTE_BIN" generate --prompts "$heldout" --max-new-tokens 3 --save-logits last --score-tokens I,S --out last.h5 --log-level warn > /dev/null \
  || { echo "FAIL: --save-logits last"; exit 1; }
"$MOTE_BIN" generate --prompts "$heldout" --max-new-tokens 3 --save-logits --out all.h5 --log-level warn > /dev/null || { echo "FAIL: --save-logits"; exit 1; }
/usr/bin/python3 - <<'PY' || exit 1
import h5py, numpy as np
last, full = h5py.File("last.h5", "r"), h5py.File("all.h5", "r")
ids = last["score_ids"][()]
for name in ("0", "7", "59"):
    a, b = last["requests"][name], full["requests"][name]
    n = len(b["prompt_tokens"][()])
    assert a["logits"].shape == (1, 4096), a["logits"].shape
    assert np.array_equal(a["logits"][0], b["logits"][n - 1])
    row = b["logits"][n - 1].astype(np.float64)
    lse = row.max() + np.log(np.exp(row - row.max()).sum())
    assert np.allclose(a["scores"][0], row[ids] - lse, atol=1e-9)
    assert np.array_equal(a["generated_tokens"][()], b["generated_tokens"][()])
print("--save-logits last: the last prompt row of --save-logits; --score-tokens: its log-softmax at the ids")
PY
# A job of many mask sets stores them sparsely: 70 sets, each one expert off (and one with a gain).
/usr/bin/python3 - "$heldout" <<'PY'
import json, sys
prompt = json.loads(open(sys.argv[1]).readline())
with open("many.jsonl", "w") as f:
    for k in range(70):
        with open(f"m{k}.ini", "w") as m:
            m.write(f"[mote]\nlayer-index = moe\noff = {k % 5}:{k % 32}\n" + ("gain = 1:2:0.5\n" if k == 3 else ""))
        f.write(json.dumps(dict(prompt, id=f"m{k}", mask=f"m{k}")) + "\n")
PY
masks=()
for k in $(seq 0 69); do masks+=(--mask "m$k=m$k.ini"); done
"$MOTE_BIN" generate --prompts many.jsonl "${masks[@]}" --max-new-tokens 0 --out many.h5 --log-level warn > /dev/null || { echo "FAIL: 70 mask sets"; exit 1; }
/usr/bin/python3 - <<'PY' || exit 1
import h5py
f = h5py.File("many.h5", "r")
assert len(f["masks"]) == 70
for k in (0, 3, 69):
    m = f[f"masks/m{k}"]
    assert m.attrs["storage"] == "sparse"
    assert m["off"][()].tolist() == [[k % 5, k % 32]], m["off"][()]
    assert m["on"].shape == (0, 2)
gains = f["masks/m3"]
assert gains["gain_experts"][()].tolist() == [[1, 2]] and gains["gain"][()].tolist() == [0.5]
assert f["masks/m0/gain"].shape == (0,)
print("70 mask sets: stored sparsely, one (layer, expert) list per set")
PY
echo "PASS"
