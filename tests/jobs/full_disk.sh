#!/usr/bin/env bash
# No room for the result: a profile job whose final file cannot be written
# (a file-size limit here, which fails writes the way a full disk does;
# with root, also a real full tmpfs) fails with an error naming the file,
# leaves no partial file, keeps its checkpoint, and --resume with room
# finishes it with the same file as an uninterrupted run.
source "$(dirname "$0")/lib.sh"
on_exit() { umount "$work/small" "$work/tiny" "$work/full" 2>/dev/null; }
{ head -n 30 "$root/configs/prompts/refusal-profile.jsonl"; tail -n 18 "$root/configs/prompts/refusal-profile.jsonl"; } > p.jsonl
common=(--prompts "$work/p.jsonl" --max-new-tokens 40 --ignore-eos --batch-size 4 --log-level warn)
"$MOTE_BIN" profile "${common[@]}" --out full.h5 > /dev/null || { echo "FAIL: uninterrupted run"; exit 1; }
full_kb=$(( $(stat -c %s full.h5) / 1024 ))

check_kept() {  # check_kept DIR STATUS: the failed job's traces, then resume
  local dir=$1 status=$2
  [ "$status" -ne 0 ] || { echo "FAIL: $dir: the job succeeded without room"; exit 1; }
  grep -q "out.h5.tmp.[0-9]*: cannot write HDF5 file (disk full?)" "$dir/err" || { echo "FAIL: $dir: unexpected error"; cat "$dir/err"; exit 1; }
  [ ! -e "$dir/out.h5" ] || { echo "FAIL: $dir: a result file appeared"; exit 1; }
  ls "$dir"/out.h5.tmp.* > /dev/null 2>&1 && { echo "FAIL: $dir: partial file left behind"; exit 1; }
  local parts
  parts=$(ls "$dir"/out.h5.checkpoint/part-*.h5 2> /dev/null | wc -l)
  [ "$parts" -eq 12 ] || { echo "FAIL: $dir: $parts checkpoint parts kept, expected 12"; exit 1; }
  mkdir -p roomy && cp -r "$dir/out.h5.checkpoint" roomy/
  "$MOTE_BIN" profile "${common[@]}" --checkpoint-every 4 --resume --out roomy/out.h5 > /dev/null 2> roomy.err || { cat roomy.err; exit 1; }
  for object in /requests /counts /gate_sum /tokens /classes; do
    h5diff -q full.h5 roomy/out.h5 "$object" "$object" || { echo "FAIL: $dir: resumed file differs in $object"; exit 1; }
  done
  rm -rf roomy
  echo "$dir: final file failed cleanly ($(grep -o 'cannot write.*' "$dir/err")); 12 checkpoint parts kept; resume equals the uninterrupted run"
}

# Files may grow to a third of the result: every checkpoint part fits, the
# result does not. The limit is set once the job runs (MPI's start-up needs
# its shared-memory files at full size).
mkdir limited
"$MOTE_BIN" profile "${common[@]}" --checkpoint-every 4 --out limited/out.h5 > /dev/null 2> limited/err &
job=$!
for _ in $(seq 1 200); do [ -e limited/out.h5.checkpoint/part-000000.h5 ] && break; sleep 0.02; done
prlimit --pid "$job" --fsize=$(( full_kb / 3 * 1024 )) || { echo "FAIL: prlimit"; exit 1; }
wait "$job"
check_kept limited $?

# A real full file system, where mounting one is allowed.
mkdir small
if mount -t tmpfs -o size=$(( full_kb * 3 / 2 ))k tmpfs small 2> /dev/null; then
  "$MOTE_BIN" profile "${common[@]}" --checkpoint-every 4 --out small/out.h5 > /dev/null 2> small/err
  check_kept small $?
else
  echo "skipped the tmpfs case: cannot mount here (not root)"
fi

# The disk fills while the result itself is written (no checkpoints): the
# error, status 1, no crash at exit, nothing left behind.
mkdir tiny
if mount -t tmpfs -o size=$(( full_kb / 2 ))k tmpfs tiny 2> /dev/null; then
  "$MOTE_BIN" profile "${common[@]}" --save-logits --out tiny/out.h5 > /dev/null 2> tiny/err
  status=$?
  [ "$status" -eq 1 ] || { echo "FAIL: a write failing mid-job ended with status $status"; cat tiny/err; exit 1; }
  grep -q "out.h5.tmp.[0-9]*: cannot write HDF5 file (disk full?)" tiny/err || { echo "FAIL: unexpected error"; cat tiny/err; exit 1; }
  grep -q "Segmentation fault" tiny/err && { echo "FAIL: crashed"; exit 1; }
  echo "tiny: a write failing mid-job ends with the error and status 1, no crash"
else
  echo "skipped the mid-job tmpfs case: cannot mount here (not root)"
fi

# A disk already full when a scan starts: with room for nothing but the lock
# (then also the result's first bytes), the scan fails saying "disk full"
# and leaves nothing behind that neither a rerun nor --resume would accept.
mkdir full
if mount -t tmpfs -o size=12k tmpfs full 2> /dev/null; then
  printf '[mote]\nlayer-index = moe\noff = 0:1\noff = 1:1\n' > candidates.ini
  scan=(scan --prompts "$work/p.jsonl" --class sensitive --tokens I --candidates candidates.ini --checkpoint-every 1 --log-level warn --out full/s.h5)
  for free_pages in 1 2; do
    rm -f full/filler
    dd if=/dev/zero of=full/filler bs=4k count=$((3 - free_pages)) 2> /dev/null
    "$MOTE_BIN" "${scan[@]}" > /dev/null 2> full.err
    status=$?
    [ "$status" -eq 1 ] || { echo "FAIL: a scan on a full disk ended with status $status"; cat full.err; exit 1; }
    grep -q "disk full?" full.err || { echo "FAIL: no 'disk full' in the message"; cat full.err; exit 1; }
    [ "$(ls -A full)" = filler ] || { echo "FAIL: a scan on a full disk left $(ls -A full)"; exit 1; }
  done
  rm -f full/filler
  mount -o remount,size=16m full || { echo "FAIL: remount"; exit 1; }
  "$MOTE_BIN" "${scan[@]}" > /dev/null 2> full.err || { echo "FAIL: the rerun with room"; cat full.err; exit 1; }
  echo "full disk at a scan's start: 'disk full', nothing left behind, the rerun with room runs"
else
  echo "skipped the full-at-start case: cannot mount here (not root)"
fi
