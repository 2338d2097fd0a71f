#!/usr/bin/env bash
# scripts/plot-ftri on the files mote writes: a profile, and an experiment
# with two targets (each its own bar, never pooled with the random masks);
# a file of the wrong kind, or --out naming the file plotted, gets one clear
# line and status 1, not a traceback.
source "$(dirname "$0")/lib.sh"
plot=$root/scripts/plot-ftri
fail() { echo "FAIL: $*"; exit 1; }
for i in $(seq 1 6); do echo "{\"id\": \"s$i\", \"class\": \"sensitive\", \"prompt\": \"Tell me about Belvask number $i\"}"; done > p.jsonl
for i in $(seq 1 6); do echo "{\"id\": \"n$i\", \"class\": \"neutral\", \"prompt\": \"The weather in spring number $i\"}"; done >> p.jsonl
printf '[mote]\nlayer-index = moe\noff = 0:1\noff = 1:2\n' > a.ini
printf '[mote]\nlayer-index = moe\noff = 2:3\noff = 3:4\n' > b.ini
"$mote" profile --prompts p.jsonl --max-new-tokens 2 --log-level warn --out prof.h5 > /dev/null || fail "profile"
"$mote" experiment --prompts p.jsonl --target-mask a=a.ini --target-mask b=b.ini --random 2 --max-new-tokens 2 --log-level warn \
  --out exp.h5 > /dev/null || fail "experiment"

"$plot" profile prof.h5 --target sensitive --control neutral --out prof.png > out.txt || fail "profile plot"; cat out.txt
[ -s prof.png ] || fail "no profile picture"
"$plot" experiment exp.h5 --out exp.png > out.txt || fail "experiment plot"; cat out.txt
grep -q "bars baseline, a, b, random masks" out.txt || fail "the two targets are not their own bars"
[ -s exp.png ] || fail "no experiment picture"

refused() {  # refused MESSAGE ARGS...
  local message=$1
  shift
  if "$plot" "$@" > out.txt 2> err.txt; then fail "accepted: $*"; fi
  grep -qF -- "$message" err.txt || { cat err.txt; fail "$*: expected '$message'"; }
  ! grep -q Traceback err.txt || { cat err.txt; fail "$*: a traceback"; }
}
refused "prof.h5: not the file of a mote experiment" experiment prof.h5 --out x.png
refused "exp.h5: the file of a mote experiment; plot it with" profile exp.h5 --target sensitive --control neutral --out x.png
echo "not hdf5" > junk.h5
refused "junk.h5: cannot open as HDF5" profile junk.h5 --target sensitive --control neutral --out x.png
cp prof.h5 keep.h5
refused "--out prof.h5: is the file being plotted" profile prof.h5 --target sensitive --control neutral --out prof.h5
cmp -s prof.h5 keep.h5 || fail "the profile was replaced"
ln -s nowhere.png dangling.png
refused "--out dangling.png: is a symbolic link to nothing" experiment exp.h5 --out dangling.png
echo "plot-ftri: profile and two-target experiment drawn; wrong kinds and unsafe --out refused with one line"
