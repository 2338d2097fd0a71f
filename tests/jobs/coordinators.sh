#!/usr/bin/env bash
# Several coordinators (--coordinators K): the golden prompts and a profile
# job at K = 2 and 3 over world sizes 2-4 must give files bit-identical to
# one process; a job stopped at one K resumes at another K and world size to
# the uninterrupted run's file; a stop signal to a coordinator other than
# rank 0, and a coordinator killed outright, end the job as for K = 1;
# without --coordinators every rank coordinates; bad values are refused by
# name.
source "$(dirname "$0")/lib.sh"
on_exit() { pkill -9 -f "$MOTE_BIN profile --prompts $work" 2>/dev/null; }

/usr/bin/python3 "$root/tests/jobs/golden_prompts.py" "$root/models/tiny-deepseek-v3-mote" golden.jsonl
golden=(--prompts "$work/golden.jsonl" --max-new-tokens 32 --ignore-eos --save-logits --trace --log-level warn)
"$MOTE_BIN" generate "${golden[@]}" --out single.h5 > /dev/null || { echo "FAIL: single-process run"; exit 1; }
for nk in "2 2" "3 2" "3 3" "4 2" "4 3"; do
  set -- $nk
  for placement in contiguous round-robin; do
    timeout 300 "$run" -n "$1" --oversubscribe generate "${golden[@]}" --coordinators "$2" --placement "$placement" --out "g-$1-$2.h5" \
      > /dev/null || { echo "FAIL: world size $1, $2 coordinators"; exit 1; }
    same single.h5 "g-$1-$2.h5"
    rm "g-$1-$2.h5"
  done
  echo "golden prompts, world size $1, $2 coordinators, both placements: bit-identical to one process"
done
timeout 300 "$run" -n 4 --oversubscribe generate "${golden[@]}" --coordinators 2 --coordinator-experts false --out g-noexp.h5 > /dev/null \
  || { echo "FAIL: coordinators without experts"; exit 1; }
same single.h5 g-noexp.h5
echo "golden prompts, world size 4, 2 coordinators holding no experts: bit-identical"

# A profile job: more requests than slots, so coordinators take several turns.
for _ in 1 2; do cat "$root/configs/prompts/refusal-profile.jsonl"; done | awk '{ sub(/"id": *"[^"]*"/, "\"id\": \"r" NR "\""); print }' > p.jsonl
total=$(wc -l < p.jsonl)
profile=(--prompts "$work/p.jsonl" --max-new-tokens 40 --ignore-eos --batch-size 4 --log-level warn)
"$MOTE_BIN" profile "${profile[@]}" --out full.h5 > /dev/null || { echo "FAIL: uninterrupted profile"; exit 1; }
same_profile() {
  same full.h5 "$1"
  h5diff -q full.h5 "$1" /tokens /tokens || { echo "FAIL: $1 differs in /tokens"; exit 1; }
}
for nk in "2 2" "3 3" "4 3"; do
  set -- $nk
  timeout 300 "$run" -n "$1" --oversubscribe profile "${profile[@]}" --coordinators "$2" --out "p-$1-$2.h5" > "p-$1-$2.out" \
    || { echo "FAIL: profile at world size $1, $2 coordinators"; exit 1; }
  same_profile "p-$1-$2.h5"
  # Printed in prompt-file order whoever ran each request.
  "$MOTE_BIN" profile "${profile[@]}" > one.out 2> /dev/null
  cmp -s one.out "p-$1-$2.out" || { echo "FAIL: printed output differs at world size $1, $2 coordinators"; exit 1; }
  echo "profile job ($total requests), world size $1, $2 coordinators: bit-identical file, same printed output"
done

# Stopped at K = 2 over 3 ranks (SIGTERM to mpirun), resumed at K = 1 over
# 2 ranks; stopped at K = 1, resumed at K = 3.
stop_and_resume() {  # stop_and_resume NAME RANKS K RESUME_RANKS RESUME_K
  local name=$1
  "$run" -n "$2" --oversubscribe profile "${profile[@]}" --coordinators "$3" --checkpoint-every 4 --out "$name.h5" > "$name.out" 2> "$name.err" &
  local job=$!
  wait_for_output "$name.out" 8
  kill -TERM "$job"
  wait "$job"
  local status=$?
  [ "$status" -eq 143 ] || { echo "FAIL: $name: exit status $status, expected 143"; cat "$name.err"; exit 1; }
  grep -q "saved in $name.h5.checkpoint" "$name.err" || { echo "FAIL: $name: no stop message"; cat "$name.err"; exit 1; }
  local printed
  printed=$(grep -c '^### ' "$name.out")
  [ "$printed" -lt "$total" ] || { echo "FAIL: $name: the job finished before the signal"; exit 1; }
  "$run" -n "$4" --oversubscribe profile "${profile[@]}" --coordinators "$5" --checkpoint-every 4 --resume --out "$name.h5" > /dev/null \
    2> "$name.resume.err" || { echo "FAIL: $name: resume"; cat "$name.resume.err"; exit 1; }
  same_profile "$name.h5"
  echo "$name: stopped at world size $2 with $3 coordinators after $printed of $total requests printed; resumed at world size $4" \
    "with $5: file equals the uninterrupted run's"
}
stop_and_resume k2-to-k1 3 2 2 1
stop_and_resume k1-to-k3 2 1 3 3

# SIGINT to coordinator 1 alone: reported in the next round, the job stops
# with a checkpoint as for a signal to mpirun.
"$run" -n 3 --oversubscribe profile "${profile[@]}" --coordinators 2 --checkpoint-every 4 --out int.h5 > int.out 2> int.err &
job=$!
wait_for_output int.out 8
for pid in $(rank_pids 1 "$MOTE_BIN profile --prompts $work"); do kill -INT "$pid"; done
wait "$job"
status=$?
[ "$status" -eq 130 ] || { echo "FAIL: SIGINT to coordinator 1: exit status $status, expected 130"; cat int.err; exit 1; }
grep -q "saved in int.h5.checkpoint" int.err || { echo "FAIL: SIGINT to coordinator 1: no stop message"; cat int.err; exit 1; }
"$MOTE_BIN" profile "${profile[@]}" --checkpoint-every 4 --resume --out int.h5 > /dev/null 2> int.resume.err \
  || { echo "FAIL: resume after SIGINT"; cat int.resume.err; exit 1; }
same_profile int.h5
echo "SIGINT to coordinator 1 only: stopped with status 130; resumed in one process: file equals the uninterrupted run's"

# A coordinator killed outright: mpirun ends the job, non-zero, no result file.
"$run" -n 3 --oversubscribe profile "${profile[@]}" --coordinators 3 --out kill.h5 > kill.out 2> kill.err &
job=$!
wait_for_output kill.out 4
start=$(date +%s)
for pid in $(rank_pids 2 "$MOTE_BIN profile --prompts $work"); do kill -9 "$pid"; done
wait "$job"
status=$?
[ "$status" -ne 0 ] || { echo "FAIL: the job with a killed coordinator exited 0"; exit 1; }
[ ! -e kill.h5 ] || { echo "FAIL: a result file appeared for the killed job"; exit 1; }
echo "coordinator 2 killed: mpirun ended the job with status $status after $(( $(date +%s) - start )) s, no result file"

# Without --coordinators every rank coordinates.
"$run" -n 3 --oversubscribe generate "${golden[@]}" --out default.h5 > /dev/null || { echo "FAIL: default coordinators"; exit 1; }
same single.h5 default.h5
k=$(/usr/bin/python3 -c "import h5py, sys; print(int(h5py.File(sys.argv[1], 'r').attrs['coordinators']))" default.h5)
[ "$k" = 3 ] || { echo "FAIL: a job of 3 ranks without --coordinators ran with $k coordinators, expected 3"; exit 1; }
echo "world size 3 without --coordinators: 3 coordinators, bit-identical"

# Bad values, named.
expect_error "--coordinators 0 must be at least 1" "$MOTE_BIN" generate "${golden[@]}" --coordinators 0
expect_error "--coordinators 'some' is neither a number of ranks nor all" "$MOTE_BIN" generate "${golden[@]}" --coordinators some
expect_error "give --coordinators K below the world size" "$run" -n 2 --oversubscribe generate "${golden[@]}" --coordinator-experts false
expect_error "--coordinators 3 is more than the job's 2 ranks" "$run" -n 2 --oversubscribe generate "${golden[@]}" --coordinators 3
expect_error "every rank is a coordinator and coordinators hold no experts" \
  "$run" -n 2 --oversubscribe generate "${golden[@]}" --coordinators 2 --coordinator-experts false
echo "bad --coordinators values are refused by name"
