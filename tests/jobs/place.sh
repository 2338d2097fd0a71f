#!/usr/bin/env bash
# mote place: from the bundled model's refusal profile, a placement for 4
# expert ranks that lowers the busiest rank's expected tokens below the
# contiguous rule's in every MoE layer; the same file every time; the placed
# job (also with 2 coordinators) bit-identical to the contiguous one; memory
# limits respected; bad inputs refused by name.
source "$(dirname "$0")/lib.sh"

common=(--prompts "$root/configs/prompts/refusal-profile.jsonl" --max-new-tokens 16 --ignore-eos --log-level warn)
"$MOTE_BIN" profile "${common[@]}" --out profile.h5 > /dev/null || { echo "FAIL: profile"; exit 1; }
"$MOTE_BIN" place --profile profile.h5 -n 4 --coordinators 1 --out placement.json > place.txt || { echo "FAIL: place"; cat place.txt; exit 1; }
cat place.txt
/usr/bin/python3 - placement.json <<'PY' || exit 1
import json, sys
p = json.load(open(sys.argv[1]))
owner, before, after = p["owner"], p["max_over_mean_tokens_contiguous"], p["max_over_mean_tokens"]
assert len(owner) == 5 and all(len(row) == 32 for row in owner), "shape"
for l, row in enumerate(owner):
    counts = [row.count(r) for r in range(4)]
    assert counts == [8, 8, 8, 8], f"layer {l}: experts per rank {counts}, expected 8 each (even memory)"
    assert after[l] < before[l], f"layer {l}: placed {after[l]} not below contiguous {before[l]}"
    assert after[l] < 1.05, f"layer {l}: placed load {after[l]} is not balanced"
print("placement: 8 experts per rank per layer; busiest/mean lower than contiguous in every layer")
PY
"$MOTE_BIN" place --profile profile.h5 -n 4 --coordinators 1 --out again.json > /dev/null
cmp -s placement.json again.json || { echo "FAIL: two runs wrote different placements"; exit 1; }
echo "deterministic: the same file twice"

"$run" -n 4 --oversubscribe profile "${common[@]}" --coordinators 1 --out contiguous.h5 > /dev/null || { echo "FAIL: contiguous run"; exit 1; }
"$run" -n 4 --oversubscribe profile "${common[@]}" --coordinators 1 --placement-file placement.json --out placed.h5 > /dev/null \
  || { echo "FAIL: placed run"; exit 1; }
same contiguous.h5 placed.h5
same profile.h5 placed.h5
"$MOTE_BIN" place --profile profile.h5 -n 4 --coordinators 2 --out placement-k2.json > /dev/null || { echo "FAIL: place K=2"; exit 1; }
"$run" -n 4 --oversubscribe profile "${common[@]}" --coordinators 2 --placement-file placement-k2.json --out placed-k2.h5 > /dev/null \
  || { echo "FAIL: placed run with 2 coordinators"; exit 1; }
same profile.h5 placed-k2.h5
echo "placed runs (1 and 2 coordinators, 4 ranks): bit-identical to the contiguous and single-process runs"

# Memory: coordinators hold the rest of the model, so with a limit that
# leaves them no room every expert goes to ranks 2 and 3.
"$MOTE_BIN" place --profile profile.h5 -n 4 --coordinators 2 --mem-per-rank 100M --out tight.json > tight.txt || { cat tight.txt; exit 1; }
/usr/bin/python3 -c "
import json; o = json.load(open('tight.json'))['owner']
assert all(set(row) <= {2, 3} for row in o), 'an expert on a rank without room'
print('--mem-per-rank: experts only on the ranks with room')" || exit 1
"$run" -n 4 --oversubscribe profile "${common[@]}" --coordinators 2 --placement-file tight.json --out tight.h5 > /dev/null || exit 1
same profile.h5 tight.h5

expect_error "do not fit" "$MOTE_BIN" place --profile profile.h5 -n 4 --mem-per-rank 20M --out x.json
# Room is for the job placed: 70 MB per rank holds no full step of 2048
# tokens, but does hold a job of 64-token steps and a batch of 4 (such a
# job over 2 ranks peaks at about 67 MB on rank 0).
expect_error "do not fit" "$MOTE_BIN" place --profile profile.h5 -n 2 --mem-per-rank 70M --out x.json
"$MOTE_BIN" place --profile profile.h5 -n 2 --mem-per-rank 70M --max-step-tokens 64 --batch-size 4 --context 256 --out small.json > /dev/null \
  || { echo "FAIL: --mem-per-rank 70M for a job of short steps"; exit 1; }
expect_error "--out profile.h5: is the file --profile names" "$MOTE_BIN" place --profile profile.h5 -n 4 --out profile.h5
expect_error "no class 'nope'" "$MOTE_BIN" place --profile profile.h5 -n 4 --class nope --out x.json
expect_error "--phase 'first'" "$MOTE_BIN" place --profile profile.h5 -n 4 --phase first --out x.json
expect_error "--coordinators 5 is more than the job's 4 ranks" "$MOTE_BIN" place --profile profile.h5 -n 4 --coordinators 5 --out x.json
expect_error "not an HDF5 file\|cannot open\|No such file" "$MOTE_BIN" place --profile missing.h5 -n 4 --out x.json
[ ! -e x.json ] || { echo "FAIL: a refused run wrote its output"; exit 1; }
h5diff -q profile.h5 profile.h5 || { echo "FAIL: the profile was touched"; exit 1; }
echo "bad inputs refused by name; nothing written"
