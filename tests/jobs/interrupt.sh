#!/usr/bin/env bash
# SIGTERM and SIGINT stop a profile job cleanly: it saves the requests it
# finished as a checkpoint, exits with 128 + the signal number, and a
# --resume ends with a file equal to an uninterrupted run's. Covered: one
# process without --checkpoint-every (the unfinished result file becomes the
# checkpoint), SIGTERM to mpirun (forwarded to every rank), and SIGINT to
# one shard rank only (reported to the coordinator in the next exchange).
source "$(dirname "$0")/lib.sh"
on_exit() { pkill -9 -f "$MOTE_BIN profile --prompts $work" 2>/dev/null; }
for _ in 1 2; do cat "$root/configs/prompts/refusal-profile.jsonl"; done | awk '{ sub(/"id": *"[^"]*"/, "\"id\": \"r" NR "\""); print }' > p.jsonl
base=(--ignore-eos --batch-size 4 --log-level warn)
common=(--prompts "$work/p.jsonl" --max-new-tokens 40 "${base[@]}")
total=$(wc -l < p.jsonl)
"$MOTE_BIN" profile "${common[@]}" --out full.h5 > /dev/null || { echo "FAIL: uninterrupted run"; exit 1; }

check_stopped() {  # check_stopped NAME STATUS EXPECTED_STATUS
  local name=$1 status=$2 expected=$3
  [ "$status" -eq "$expected" ] || { echo "FAIL: $name: exit status $status, expected $expected"; cat "$name.err"; exit 1; }
  grep -q "stopped after .* requests, saved in $name.h5.checkpoint; run the same command with --resume" "$name.err" \
    || { echo "FAIL: $name: no stop message"; cat "$name.err"; exit 1; }
  [ ! -e "$name.h5" ] || { echo "FAIL: $name: a result file appeared for a stopped job"; exit 1; }
  ls "$name".h5.tmp.* > /dev/null 2>&1 && { echo "FAIL: $name: temporary file left behind"; exit 1; }
  local printed
  printed=$(grep -c '^### ' "$name.out")
  [ "$printed" -lt "$total" ] || { echo "FAIL: $name: the job finished before the signal (make it longer)"; exit 1; }
  "$root/launch/mote-run" -n 2 --oversubscribe profile "${common[@]}" "${@:4}" --resume --out "$name.h5" > /dev/null 2> "$name.resume.err" \
    || { echo "FAIL: $name: resume"; cat "$name.resume.err"; exit 1; }
  for object in /requests /counts /gate_sum /tokens /classes; do
    h5diff -q full.h5 "$name.h5" "$object" "$object" || { echo "FAIL: $name: resumed file differs in $object"; exit 1; }
  done
  [ ! -e "$name.h5.checkpoint" ] || { echo "FAIL: $name: checkpoint left after success"; exit 1; }
  echo "$name: stopped with status $status after $printed of $total requests printed; resumed: file equals the uninterrupted run's"
}

# One process, no --checkpoint-every: SIGTERM.
"$MOTE_BIN" profile "${common[@]}" --out single.h5 > single.out 2> single.err &
job=$!
wait_for_output single.out 3
kill -TERM "$job"
wait "$job"
check_stopped single $? 143

# mpirun with 3 ranks, checkpoints every 4: SIGTERM to mpirun.
"$root/launch/mote-run" -n 3 --oversubscribe profile "${common[@]}" --checkpoint-every 4 --out mpi.h5 > mpi.out 2> mpi.err &
job=$!
wait_for_output mpi.out 10
kill -TERM "$job"
wait "$job"
check_stopped mpi $? 143 --checkpoint-every 4

# SIGINT to rank 2 alone, an expert rank of a job with one coordinator:
# the coordinator hears of it and stops the job.
"$root/launch/mote-run" -n 3 --oversubscribe profile "${common[@]}" --coordinators 1 --checkpoint-every 4 --out shard.h5 > shard.out 2> shard.err &
job=$!
wait_for_output shard.out 6
for pid in $(rank_pids 2 "$MOTE_BIN profile --prompts $work"); do kill -INT "$pid"; done
wait "$job"
check_stopped shard $? 130 --checkpoint-every 4
