#!/usr/bin/env bash
# SIGTERM and SIGINT end a command in every phase before its job runs, not
# only once requests are running: loading the model, reading and tokenizing
# prompts, planning a scan or a placement. MOTE_PAUSE_AT holds the command at
# the start of a phase until a signal arrives; the phase's own later stop
# points must then end it, at once, with 128 + the signal, a message naming
# the phase, and nothing written.
source "$(dirname "$0")/lib.sh"
for i in $(seq 1 50); do echo "{\"id\": \"p$i\", \"class\": \"c$((i % 2))\", \"prompt\": \"Prompt number $i\"}"; done > prompts.jsonl
"$mote" generate --prompts prompts.jsonl --max-new-tokens 1 --log-level warn --out profile.h5 > /dev/null || { echo "FAIL: profile"; exit 1; }
failures=0

stops_in() {  # stops_in PHASE SIGNAL STATUS COMMAND...   (the message names SIGNAL, or the ranks' SIGUSR2 under launch/mote-run)
  local phase=$1 signal=$2 status=$3
  shift 3
  rm -rf out && mkdir out
  MOTE_PAUSE_AT=$phase "$@" > /dev/null 2> err.txt &
  local pid=$!
  for _ in $(seq 1 600); do grep -q "paused while $phase" err.txt && break; sleep 0.05; done
  grep -q "paused while $phase" err.txt || { echo "FAIL: $phase: never paused"; cat err.txt; kill -9 $pid; failures=$((failures + 1)); return; }
  kill "-$signal" $pid
  local waited=0
  while kill -0 $pid 2> /dev/null && [ $waited -lt 200 ]; do sleep 0.05; waited=$((waited + 1)); done
  if kill -0 $pid 2> /dev/null; then echo "FAIL: $phase: still running 10 s after $signal"; kill -9 $pid; failures=$((failures + 1)); return; fi
  wait $pid
  local got=$?
  if [ $got -ne "$status" ] || ! grep -Eq "stopped by ($signal|SIGUSR2) while $phase; nothing was written" err.txt; then
    echo "FAIL: $phase: status $got (expected $status) or no message naming the phase"; cat err.txt; failures=$((failures + 1)); return
  fi
  if [ -n "$(ls -A out)" ]; then echo "FAIL: $phase: wrote $(ls -A out)"; failures=$((failures + 1)); return; fi
  echo "$phase: $signal ended it with status $got, nothing written"
}

job=(--prompts prompts.jsonl --max-new-tokens 1 --log-level warn)
stops_in "loading the model" SIGTERM 143 "$mote" generate "${job[@]}" --out out/g.h5
stops_in "reading prompts" SIGINT 130 "$mote" generate "${job[@]}" --out out/g.h5
stops_in "tokenizing prompts" SIGTERM 143 "$mote" profile "${job[@]}" --out out/g.h5
stops_in "tokenizing prompts" SIGTERM 143 "$mote" tokenize --input prompts.jsonl
stops_in "planning the scan" SIGTERM 143 "$mote" scan --prompts prompts.jsonl --tokens I --log-level warn --out out/s.h5
stops_in "planning the placement" SIGTERM 143 "$mote" place --profile profile.h5 -n 2 --out out/placement.json
# Two ranks under the launcher, which hands them SIGUSR2: the whole job ends.
if command -v mpirun > /dev/null; then
  stops_in "loading the model" SIGTERM 143 env MOTE_BIN="$mote" "$root/launch/mote-run" -n 2 --oversubscribe generate "${job[@]}" --out out/g.h5
fi
[ "$failures" -eq 0 ] || { echo "$failures failures"; exit 1; }
