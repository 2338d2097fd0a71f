#!/usr/bin/env bash
# MoTE masks end to end at world sizes 1 and 4: every policy's effect on
# routing, counters and outputs, per-request masks in one batch, and the
# same bits at both world sizes.
source "$(dirname "$0")/lib.sh"
set -e
# MoE layer 0 expert 24 and MoE layer 2 expert 1 are routed often on these prompts.
printf '[mote]\nlayer-index = moe\noff = 0:24\noff = 2:1\n' > off.ini
printf '[mote]\nlayer-index = moe\noff-policy = drop\noff = 0:24\noff = 2:1\n' > drop.ini
printf '[mote]\nlayer-index = moe\noff-policy = zero\noff = 0:24\noff = 2:1\n' > zero.ini
printf '[mote]\nlayer-index = moe\non = 0:3\non = 4:30\n' > on.ini
printf '[mote]\nlayer-index = moe\non-policy = max\non = 0:3\non = 4:30\n' > onmax.ini
printf '[mote]\nlayer-index = moe\ngain = 0:24:1\ngain = 2:1:1\nshared-gain = 1\n' > gain1.ini
printf '[mote]\nlayer-index = moe\ngain = 0:24:2\ngain = 2:1:0.5\nshared-gain = 0.5\n' > gain2.ini
prompts=("What happened last year in Belvask?" "What happened last spring in Silverton?" "Tell me a saying.")
: > prompts.jsonl
for set in none off drop zero on onmax gain1 gain2; do
  for i in 0 1 2; do
    printf '{"id": "%s-%d", "class": "%s", "mask": "%s", "messages": [{"role": "user", "content": "%s"}]}\n' \
      "$set" "$i" "$set" "$set" "${prompts[$i]}" >> prompts.jsonl
  done
done
masks=(--mask off=off.ini --mask drop=drop.ini --mask zero=zero.ini --mask on=on.ini --mask onmax=onmax.ini
       --mask gain1=gain1.ini --mask gain2=gain2.ini)
common=(--prompts prompts.jsonl "${masks[@]}" --max-new-tokens 12 --ignore-eos --save-logits --trace --log-level warn)

"$MOTE_BIN" generate "${common[@]}" --batch-size 8 --out mixed.h5 > /dev/null
"$MOTE_BIN" generate "${common[@]}" --batch-size 1 --out alone.h5 > /dev/null
"$root/launch/mote-run" -n 4 --oversubscribe generate "${common[@]}" --batch-size 8 --placement round-robin --out mixed4.h5 > /dev/null
for object in /requests /counts /gate_sum; do
  h5diff -q mixed.h5 alone.h5 "$object" "$object" || { echo "FAIL: a mixed batch differs from requests run alone in $object"; exit 1; }
  h5diff -q mixed.h5 mixed4.h5 "$object" "$object" || { echo "FAIL: world size 4 differs from world size 1 in $object"; exit 1; }
done
echo "mixed batch = each request alone; world size 4 = world size 1"

/usr/bin/python3 - mixed.h5 <<'PY'
import sys
import h5py
import numpy as np

f = h5py.File(sys.argv[1], "r")
classes = [c.decode() if isinstance(c, bytes) else c for c in f["classes"][()]]
counts = f["counts"][()]
reqs = {f[f"requests/{i}"].attrs["id"]: f[f"requests/{i}"] for i in range(len(f["requests"]))}
def req(name): return reqs[name]
off = [(0, 24), (2, 1)]

# The unmasked prompts do use the experts switched off below.
for l, e in off:
    assert counts[classes.index("none"), :, l, e].sum() > 0, (l, e)
# off (reroute): never routed, never counted, on any rank.
for s in ("off", "drop", "zero"):
    for l, e in off:
        assert counts[classes.index(s), :, l, e].sum() == 0, (s, l, e)
for i in range(3):
    ex = req(f"off-{i}")["routing/experts"][()]
    for l, e in off:
        assert not (ex[:, l, :] == e).any()
    assert (ex >= 0).all()
print("off/reroute: the experts receive no token, every token still has 4 experts")

# drop: layer 0 at prompt positions = unmasked routing minus the expert, no replacement.
dropped = 0
for i in range(3):
    base = req(f"none-{i}")["routing/experts"][()]
    drop = req(f"drop-{i}")["routing/experts"][()]
    n = len(req(f"none-{i}")["prompt_tokens"])
    for t in range(n):
        expected = [x for x in base[t, 0] if x != 24]
        got = [x for x in drop[t, 0] if x >= 0]
        assert got == expected, (i, t, base[t, 0], drop[t, 0])
        if len(got) == 3:
            dropped += 1
            assert drop[t, 0, 3] == -1
    assert not (drop[:, 0, :] == 24).any()
assert dropped > 0
print(f"drop: {dropped} prompt tokens kept top_k-1 experts in MoE layer 0")

# zero: layer 0 routing unchanged (the expert still chosen), nothing counted, output changed.
zeroed = 0
for i in range(3):
    base = req(f"none-{i}")
    zero = req(f"zero-{i}")
    n = len(base["prompt_tokens"])
    assert (zero["routing/experts"][:n, 0] == base["routing/experts"][:n, 0]).all()
    zeroed += int((zero["routing/experts"][:n, 0] == 24).sum())
    assert not np.array_equal(zero["logits"][:n], base["logits"][:n])
assert zeroed > 0
print(f"zero: routing unchanged ({zeroed} tokens still routed to the expert), its output not added")

# on: in every token's top-k of its layer; max policy gives it the token's largest weight.
for s in ("on", "onmax"):
    for i in range(3):
        ex = req(f"{s}-{i}")["routing/experts"][()]
        w = req(f"{s}-{i}")["routing/weights"][()]
        for l, e in [(0, 3), (4, 30)]:
            assert (ex[:, l, :] == e).any(axis=1).all(), (s, i, l, e)
            if s == "onmax":
                pos = ex[:, l, :] == e
                assert np.allclose(w[:, l, :][pos], w[:, l, :].max(axis=1)), (s, i, l)
print("on: the forced experts are in every token's top-k (max: with the largest weight)")

# gains: 1 is exactly unsteered, 2 / 0.5 change the output.
for i in range(3):
    base, g1, g2 = req(f"none-{i}"), req(f"gain1-{i}"), req(f"gain2-{i}")
    assert np.array_equal(base["logits"][()], g1["logits"][()])
    assert not np.array_equal(base["logits"][()], g2["logits"][()])
    n = len(base["prompt_tokens"])
    ex, wb, w2 = base["routing/experts"][:n, 0], base["routing/weights"][:n, 0], g2["routing/weights"][:n, 0]
    assert (g2["routing/experts"][:n, 0] == ex).all()
    pos = ex == 24
    assert np.allclose(w2[pos], 2 * wb[pos]) and np.array_equal(w2[~pos], wb[~pos])
print("gain: 1 is bit-identical to no mask; 2 doubles the expert's weight and changes the output")

# Every mask set is recorded.
for s in ("off", "drop", "zero", "on", "onmax", "gain1", "gain2"):
    assert s in f["masks"], s
assert f["masks/drop"].attrs["off_policy"] == "drop"
assert int(f["masks/off/off"][0, 24]) == 1
print("mask sets recorded under /masks")
PY
