#!/usr/bin/env bash
# mote scan on the bundled model: the full knockout scan of the sensitive
# training prompts with tokens I,S ranks the four experts of
# configs/masks/refusal-causal-top4.ini as its top 4; the same file at world
# sizes 1 and 3, with 2 coordinators and round-robin placement, and without
# prefix reuse; the block search finds the same four with fewer requests;
# greedy selection, rank --by effect and the written mask; a stopped scan
# leaves the earlier file alone and resumes; bad inputs refused by name
# before any work.
source "$(dirname "$0")/lib.sh"

prompts=$root/configs/prompts/refusal-profile.jsonl
common=(--prompts "$prompts" --class sensitive --tokens I,S --batch-size 16 --log-level warn)
same_scan() {  # same_scan A B: the scan's results are bit-identical
  for object in /scan/baseline /scan/candidates /scan/per_prompt /scan/effect /scan/effect_sd; do
    if ! h5diff -q "$1" "$2" "$object" "$object"; then
      echo "FAIL: $2 differs from $1 in $object"; h5diff -r "$1" "$2" "$object" "$object" | head -10; exit 1
    fi
  done
}
attr() {  # attr FILE NAME: an integer attribute of /scan
  /usr/bin/python3 -c "import h5py, sys; print(int(h5py.File(sys.argv[1], 'r')['scan'].attrs[sys.argv[2]]))" "$1" "$2"
}
# The causal mask's experts as MoE-layer indices (its file counts decoder layers, the first being dense).
expected=$(grep '^off *=' "$root/configs/masks/refusal-causal-top4.ini" | awk -F'[ =:]+' '{print $2-1 ":" $3}' | sort)

"$MOTE_BIN" scan "${common[@]}" --top 4 --mask-out top4.ini --out full.h5 > full.txt 2> full.err \
  || { echo "FAIL: full scan"; cat full.err; exit 1; }
got=$(grep '^off *=' top4.ini | awk -F'[ =]+' '{print $2}' | sort)
[ "$got" = "$expected" ] || { echo "FAIL: the scan's top 4 are $got, expected $expected"; cat full.txt; exit 1; }
echo "full scan: top 4 = the causal mask's experts (MoE layer:expert $(echo $got))"
[ "$(attr full.h5 requests)" = 9660 ] || { echo "FAIL: the full scan ran $(attr full.h5 requests) requests, expected 60 + 160 x 60"; exit 1; }
/usr/bin/python3 - full.h5 <<'PY' || exit 1
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
s = f["scan"]
assert s["per_prompt"].shape == (60, 5, 32), s["per_prompt"].shape
assert s["effect"].shape == (5, 32) and not np.isnan(s["effect"][()]).any()
# The effect is the per-prompt change averaged; the change is the baseline minus the knockout.
assert np.allclose(s["per_prompt"][()].mean(axis=0), s["effect"][()], rtol=0, atol=1e-12)
assert np.allclose(s["per_prompt"][()].std(axis=0, ddof=1), s["effect_sd"][()], rtol=0, atol=1e-12)
assert 0.9 < s["baseline"][()].mean() <= 1.0, s["baseline"][()].mean()
assert s.attrs["metric"] == "token-prob" and s.attrs["tokens"] == "I,S"
assert f.attrs["job"] == "scan"
print("file: per_prompt [60, 5, 32], effect = its mean, baseline refusal-opening probability", round(float(s["baseline"][()].mean()), 4))
PY

"$run" -n 3 --oversubscribe scan "${common[@]}" --out world3.h5 > /dev/null 2> err.txt || { echo "FAIL: world size 3"; cat err.txt; exit 1; }
same_scan full.h5 world3.h5
echo "world size 3: bit-identical"

# A smaller candidate list for the other configurations.
"$MOTE_BIN" rank --by effect full.h5 --top 12 --out top12.ini > rank.txt || { echo "FAIL: rank --by effect"; exit 1; }
diff <(grep '^off *=' top4.ini | sort) <(head -4 < <(grep '^off *=' top12.ini) | sort) > /dev/null \
  || { echo "FAIL: rank --by effect disagrees with the scan's own top 4"; exit 1; }
"$MOTE_BIN" scan "${common[@]}" --candidates top12.ini --out cand.h5 > /dev/null || { echo "FAIL: candidate scan"; exit 1; }
"$run" -n 3 --oversubscribe scan "${common[@]}" --candidates top12.ini --coordinators 2 --placement round-robin --out cand_k2.h5 \
  > /dev/null 2> err.txt || { echo "FAIL: 2 coordinators"; cat err.txt; exit 1; }
same_scan cand.h5 cand_k2.h5
"$MOTE_BIN" scan "${common[@]}" --candidates top12.ini --no-prefix-reuse --out noreuse.h5 > /dev/null || { echo "FAIL: no prefix reuse"; exit 1; }
same_scan cand.h5 noreuse.h5
/usr/bin/python3 - full.h5 cand.h5 noreuse.h5 <<'PY' || exit 1
import sys, h5py, numpy as np
full, cand, noreuse = (h5py.File(p, "r")["scan"] for p in sys.argv[1:])
assert cand["per_prompt"].shape == (60, 12), cand["per_prompt"].shape
for i, (l, e) in enumerate(cand["candidates"][()]):
    assert np.array_equal(cand["per_prompt"][:, i], full["per_prompt"][:, l, e]), (l, e)
assert noreuse.attrs["layer_tokens"] == noreuse.attrs["layer_tokens_without_reuse"]
assert cand.attrs["layer_tokens"] < cand.attrs["layer_tokens_without_reuse"]
print("candidate list: the same per-prompt effects as the full scan; prefix reuse skips",
      f'{1 - cand.attrs["layer_tokens"] / cand.attrs["layer_tokens_without_reuse"]:.0%} of token-layers')
PY
echo "2 coordinators, round-robin, and without prefix reuse: bit-identical"

"$MOTE_BIN" scan "${common[@]}" --search both --top 4 --mask-out blocks4.ini --out both.h5 > /dev/null 2> both.err \
  || { echo "FAIL: search both"; cat both.err; exit 1; }
[ "$(/usr/bin/python3 -c "import h5py; print(h5py.File('both.h5', 'r')['scan/blocks'].attrs['agrees_with_full_scan'])")" = 1 ] \
  || { echo "FAIL: the block search and the full scan disagree"; cat both.err; exit 1; }
"$MOTE_BIN" scan "${common[@]}" --search blocks --top 4 --mask-out blocks4.ini --out blocks.h5 > /dev/null || { echo "FAIL: block search"; exit 1; }
diff <(grep '^off *=' blocks4.ini) <(grep '^off *=' top4.ini) > /dev/null || { echo "FAIL: the block search's top 4 differ"; exit 1; }
requests=$(attr blocks.h5 requests)
[ "$requests" -lt 9660 ] || { echo "FAIL: the block search ran $requests requests, no fewer than the full scan"; exit 1; }
echo "block search: the same top 4 with $requests requests (full scan: 9660)"

"$MOTE_BIN" scan "${common[@]}" --candidates top12.ini --greedy 2 --greedy-pool 6 --out greedy.h5 > /dev/null 2> greedy.err \
  || { echo "FAIL: greedy"; cat greedy.err; exit 1; }
/usr/bin/python3 - greedy.h5 <<'PY' || exit 1
import sys, h5py
g = h5py.File(sys.argv[1], "r")["scan/greedy"]
experts, metric = g["experts"][()], g["metric"][()]
assert experts.shape == (2, 2) and list(experts[0]) == [2, 1], experts
assert metric[1] < metric[0], metric
print("greedy: rounds", [tuple(int(x) for x in e) for e in experts], "metric", [round(float(m), 4) for m in metric])
PY

# A base mask: the scan runs on top of it.
"$MOTE_BIN" scan "${common[@]}" --candidates top12.ini --mask top4.ini --out based.h5 > /dev/null 2> err.txt \
  && { echo "FAIL: a base mask switching candidates off was accepted"; exit 1; }
grep -q "already off in the base mask" err.txt || { echo "FAIL: wrong error for a candidate off in the base mask"; cat err.txt; exit 1; }
"$MOTE_BIN" generate --prompts "$prompts" --mask top4.ini --max-new-tokens 4 --log-level warn --out gen.h5 > /dev/null \
  || { echo "FAIL: generate takes the mask"; exit 1; }

# Stopped by SIGINT: exit 130, the earlier file untouched, the finished
# requests kept; --resume finishes with the same file as an uninterrupted scan.
cp full.h5 keep.h5
"$MOTE_BIN" scan "${common[@]}" --checkpoint-every 200 --out full.h5 > /dev/null 2> stop.err &
pid=$!
for _ in $(seq 1 300); do
  [ "$(wc -l 2> /dev/null < full.h5.checkpoint/scan-results.txt || echo 0)" -ge 400 ] && break
  sleep 0.05
done
kill -INT $pid
wait $pid
status=$?
[ $status -eq 130 ] || { echo "FAIL: a stopped scan exited with $status, expected 130"; cat stop.err; exit 1; }
cmp -s full.h5 keep.h5 || { echo "FAIL: a stopped scan changed the earlier file"; exit 1; }
ls full.h5.tmp.* 2> /dev/null && { echo "FAIL: a temporary file was left"; exit 1; }
saved=$(wc -l < full.h5.checkpoint/scan-results.txt)
[ "$saved" -ge 400 ] && [ "$saved" -lt 9600 ] || { echo "FAIL: the checkpoint holds $saved results"; cat stop.err; exit 1; }
expect_error "holds a checkpoint of an earlier scan" "$MOTE_BIN" scan "${common[@]}" --out full.h5
expect_error "the checkpoint is of another scan" "$MOTE_BIN" scan --prompts "$prompts" --class sensitive --tokens I --out full.h5 --resume
"$run" -n 2 --oversubscribe scan "${common[@]}" --out full.h5 --resume > /dev/null 2> resume.err || { echo "FAIL: resume"; cat resume.err; exit 1; }
same_scan keep.h5 full.h5
[ ! -e full.h5.checkpoint ] || { echo "FAIL: the checkpoint was left after the scan finished"; exit 1; }
[ "$(attr full.h5 requests)" = $((9660 - saved)) ] || { echo "FAIL: the resumed scan ran $(attr full.h5 requests) requests, expected $((9660 - saved))"; exit 1; }
echo "SIGINT: exit 130, earlier file untouched, $saved requests kept; resumed at world size 2: the same file"

# Bad inputs: clear errors, no output written.
printf '[mote]\nlayer-index = moe\n' > empty.ini
printf '[mote]\nlayer-index = moe\noff = 2:40\n' > no_expert.ini
printf '[mote]\nlayer-index = moe\non = 2:4\n' > on.ini
expect_error "'Zzzq' is not a token of the model's vocabulary" "$MOTE_BIN" scan --prompts "$prompts" --tokens I,Zzzq --out bad.h5
expect_error "id 99999 is outside the vocabulary" "$MOTE_BIN" scan --prompts "$prompts" --tokens '#99999' --out bad.h5
expect_error "an empty item" "$MOTE_BIN" scan --prompts "$prompts" --tokens 'I,' --out bad.h5
expect_error "no prompt of .* has that class (its classes: sensitive, neutral)" "$MOTE_BIN" scan --prompts "$prompts" --class refusal --tokens I --out bad.h5
expect_error "the file switches no expert off, so there is nothing to scan" "$MOTE_BIN" scan --prompts "$prompts" --tokens I --candidates empty.ini --out bad.h5
expect_error "no_expert.ini:3: off = 2:40: expert 40 does not exist" "$MOTE_BIN" scan --prompts "$prompts" --tokens I --candidates no_expert.ini --out bad.h5
expect_error "candidates are the file's 'off' entries" "$MOTE_BIN" scan --prompts "$prompts" --tokens I --candidates on.ini --out bad.h5
expect_error "needs --tokens LIST" "$MOTE_BIN" scan --prompts "$prompts" --out bad.h5
expect_error "needs --continuation TEXT" "$MOTE_BIN" scan --prompts "$prompts" --metric continuation-logprob --out bad.h5
expect_error "--max-new-tokens does not apply to a scan" "$MOTE_BIN" scan --prompts "$prompts" --tokens I --max-new-tokens 3 --out bad.h5
expect_error "--mask-out needs --top N" "$MOTE_BIN" scan --prompts "$prompts" --tokens I --mask-out m.ini --out bad.h5
expect_error "--mask-out /dev/null: is a character device" "$MOTE_BIN" scan --prompts "$prompts" --tokens I --top 2 --mask-out /dev/null --out bad.h5
expect_error "--mask-out top12.ini: is the file --candidates names" "$MOTE_BIN" scan --prompts "$prompts" --tokens I --candidates top12.ini --top 2 --mask-out top12.ini
expect_error "--search 'deep' is not one of full, blocks, both" "$MOTE_BIN" scan --prompts "$prompts" --tokens I --search deep
expect_error "not named mask sets" "$MOTE_BIN" scan --prompts "$prompts" --tokens I --mask x=top4.ini
expect_error "no /scan group" "$MOTE_BIN" rank --by effect gen.h5
[ ! -e bad.h5 ] || { echo "FAIL: a refused scan wrote its output"; exit 1; }
grep -q '^off' top12.ini || { echo "FAIL: a refused --mask-out replaced an input"; exit 1; }
echo "bad inputs: refused by name, nothing written"
echo "PASS"
