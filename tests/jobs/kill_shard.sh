#!/usr/bin/env bash
# Kills one expert rank with SIGKILL in the middle of a generation job: the
# job must end with a non-zero exit, name the dead rank, and do so within
# 30 seconds (never hang).
source "$(dirname "$0")/lib.sh"
on_exit() { [ -n "${job:-}" ] && kill -9 "$job" 2>/dev/null; }
for i in $(seq 1 400); do echo "The secret of a happy life is number $i"; done > "$work/prompts.txt"

"$root/launch/mote-run" -n 3 --oversubscribe generate --prompts "$work/prompts.txt" --coordinators 1 --max-new-tokens 200 --ignore-eos \
  --batch-size 4 --out "$work/out.h5" > "$work/stdout.txt" 2> "$work/stderr.txt" &
job=$!

# Wait until text is coming out, then find rank 1 by its MPI environment.
for _ in $(seq 1 300); do
  grep -q '^###' "$work/stdout.txt" 2>/dev/null && break
  sleep 0.1
done
grep -q '^###' "$work/stdout.txt" || { echo "FAIL: the job produced no text"; cat "$work/stderr.txt"; exit 1; }
source "$root/tests/jobs/same_results.sh"
victim=$(rank_pids 1 "$MOTE_BIN generate" | tail -n 1)
[ -n "$victim" ] || { echo "FAIL: rank 1 not found"; exit 1; }
kill -9 "$victim"
start=$(date +%s%N)

status=0
for _ in $(seq 1 300); do
  if ! kill -0 "$job" 2>/dev/null; then break; fi
  sleep 0.1
done
if kill -0 "$job" 2>/dev/null; then echo "FAIL: the job still runs 30 s after rank 1 was killed"; exit 1; fi
wait "$job"; status=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
job=""
echo "exit status $status after ${elapsed_ms} ms"
[ "$status" -ne 0 ] || { echo "FAIL: exit status 0"; exit 1; }
grep -Eq 'process rank 1 |on rank 1:' "$work/stderr.txt" || { echo "FAIL: the message does not name rank 1:"; cat "$work/stderr.txt"; exit 1; }
grep -E 'process rank 1 |on rank 1:' "$work/stderr.txt" | head -2
[ ! -e "$work/out.h5" ] || { echo "FAIL: a result file appeared for a failed job"; exit 1; }
echo "killed rank 1: job ended with status $status in ${elapsed_ms} ms and named the rank"
