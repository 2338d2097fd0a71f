#!/usr/bin/env bash
# Crash and resume: a profile job with one coordinator, checkpointing every
# 4 requests, is killed (a shard, then in a second run the coordinator)
# once checkpoints exist;
# --resume (at another world size) must end with a file equal to an
# uninterrupted run's: requests, counts, gate sums, token totals.
source "$(dirname "$0")/lib.sh"
on_exit() { pkill -9 -f "$MOTE_BIN profile --prompts $work" 2>/dev/null; }
{ head -n 30 "$root/configs/prompts/refusal-profile.jsonl"; tail -n 18 "$root/configs/prompts/refusal-profile.jsonl"; } > p.jsonl
base=(--ignore-eos --batch-size 4 --log-level warn)
common=(--prompts "$work/p.jsonl" --max-new-tokens 40 "${base[@]}")
"$MOTE_BIN" profile "${common[@]}" --out full.h5 > /dev/null || { echo "FAIL: uninterrupted run"; exit 1; }

crash_and_resume() {  # crash_and_resume RANK_TO_KILL NAME
  local victim_rank=$1 name=$2
  "$root/launch/mote-run" -n 3 --oversubscribe profile "${common[@]}" --coordinators 1 --checkpoint-every 4 --out "$name.h5" > /dev/null 2>&1 &
  local job=$!
  for _ in $(seq 1 300); do
    [ "$(ls "$name.h5.checkpoint"/part-*.h5 2>/dev/null | wc -l)" -ge 2 ] && break
    sleep 0.1
  done
  local killed=""
  for pid in $(rank_pids "$victim_rank" "$MOTE_BIN profile --prompts $work"); do kill -9 "$pid"; killed=$pid; done
  wait "$job" 2> /dev/null
  local status=$?
  [ -n "$killed" ] || { echo "FAIL: rank $victim_rank not found (the job ended before two checkpoints?)"; exit 1; }
  [ "$status" -ne 0 ] || { echo "FAIL: the killed job exited 0"; exit 1; }
  [ ! -e "$name.h5" ] || { echo "FAIL: a result file appeared for the killed job"; exit 1; }
  local parts
  parts=$(ls "$name.h5.checkpoint"/part-*.h5 | wc -l)
  "$root/launch/mote-run" -n 2 --oversubscribe profile "${common[@]}" --checkpoint-every 4 --resume --out "$name.h5" > /dev/null \
    || { echo "FAIL: resume"; exit 1; }
  for object in /requests /counts /gate_sum /tokens /classes; do
    h5diff -q full.h5 "$name.h5" "$object" "$object" || { echo "FAIL: resumed file differs in $object"; exit 1; }
  done
  [ ! -e "$name.h5.checkpoint" ] || { echo "FAIL: checkpoint left after success"; exit 1; }
  echo "rank $victim_rank killed after $parts checkpoints; resumed at world size 2: file equals the uninterrupted run's"
}
crash_and_resume 1 shard
crash_and_resume 0 coordinator

# A checkpoint is never mixed with another job, nor silently overwritten.
"$root/launch/mote-run" -n 2 --oversubscribe profile "${common[@]}" --checkpoint-every 4 --out other.h5 > /dev/null 2>&1 &
job=$!
for _ in $(seq 1 300); do [ -e other.h5.checkpoint/part-000000.h5 ] && break; sleep 0.1; done
pkill -9 -f "$MOTE_BIN profile --prompts $work"; wait "$job" 2> /dev/null
if "$MOTE_BIN" profile "${common[@]}" --checkpoint-every 4 --out other.h5 2> err.txt > /dev/null; then echo "FAIL: checkpoint overwritten"; exit 1; fi
grep -q "holds a checkpoint of an earlier run: continue it with --resume" err.txt || { cat err.txt; exit 1; }
if "$MOTE_BIN" profile --prompts "$work/p.jsonl" --max-new-tokens 7 "${base[@]}" --checkpoint-every 4 --resume --out other.h5 2> err.txt > /dev/null; then
  echo "FAIL: resumed a different job"; exit 1
fi
grep -q "the checkpoint belongs to a different job" err.txt || { cat err.txt; exit 1; }
echo "a checkpoint of another job is refused; one without --resume is not overwritten"
