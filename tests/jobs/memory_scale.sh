#!/usr/bin/env bash
# Memory that grows with what runs, not with the size of the inputs:
# - 50,000 prompts read and encoded cost less than 20 MB more than 1,000
#   (a job keeps a few bytes per request and reads each prompt again when
#   it runs; it kept them all, 1.1 KB each, before);
# - 2000 prompts in 2000 classes peak within 40 MB of the same prompts in
#   one class (the ranks' own routing records do not grow with the classes;
#   only the class totals written to the file do, 10 KB per class here).
source "$(dirname "$0")/lib.sh"
peak_when_running() {  # peak_when_running FILE: rank 0's peak RSS (KB) once the job has read its requests
  "$mote" generate --prompts "$1" --max-new-tokens 0 --log-level info > /dev/null 2> "$1.log" &
  local pid=$! hwm=""
  for _ in $(seq 1 600); do
    if grep -q "requests in" "$1.log"; then hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status"); break; fi
    sleep 0.1
  done
  kill -TERM "$pid" 2> /dev/null; wait "$pid" 2> /dev/null
  [ -n "$hwm" ] || { echo "FAIL: $1: the job never started running"; cat "$1.log"; exit 1; }
  echo "$hwm"
}
for i in $(seq 1 50000); do echo "The secret of a happy life is number $i"; done > many.txt
head -n 1000 many.txt > few.txt
few=$(peak_when_running few.txt) || exit 1
many=$(peak_when_running many.txt) || exit 1
echo "peak RSS once running: $((few / 1024)) MB with 1,000 prompts, $((many / 1024)) MB with 50,000"
[ $(( (many - few) / 1024 )) -lt 20 ] || { echo "FAIL: 49,000 more prompts cost $(( (many - few) / 1024 )) MB"; exit 1; }

/usr/bin/python3 - <<'PY'
import json
with open("classes.jsonl", "w") as many, open("one.jsonl", "w") as one:
    for i in range(2000):
        many.write(json.dumps({"id": f"q{i}", "class": f"c{i}", "prompt": f"Fact {i}:"}) + "\n")
        one.write(json.dumps({"id": f"q{i}", "class": "one", "prompt": f"Fact {i}:"}) + "\n")
PY
for f in one classes; do
  "$mote" generate --prompts "$f.jsonl" --max-new-tokens 0 --batch-size 64 --log-level warn --out "$f.h5" > /dev/null \
    || { echo "FAIL: $f"; exit 1; }
done
/usr/bin/python3 - <<'PY' || exit 1
import h5py
one, many = (h5py.File(f"{f}.h5", "r") for f in ("one", "classes"))
assert many["counts"].shape[0] == 2000 and one["counts"].shape[0] == 1
assert (many["counts"][()].sum(axis=0) == one["counts"][0]).all()
a, b = one["ranks/peak_rss_bytes"][0] / 1e6, many["ranks/peak_rss_bytes"][0] / 1e6
print(f"peak RSS: {a:.1f} MB in one class, {b:.1f} MB in 2000 classes")
assert b - a < 40, f"2000 classes cost {b - a:.1f} MB more than one"
PY
# A prompt is read again when it runs: one that reads differently (the file
# rewritten under the job) stops the job, naming its line.
for i in $(seq 1 400); do echo "Prompt number $i about the sea"; done > change.txt
"$mote" generate --prompts change.txt --max-new-tokens 40 --ignore-eos --batch-size 1 --log-level warn > change.out 2> change.err &
pid=$!
wait_for_output change.out 1
sed -i 's/the sea/the sky/' change.txt
wait "$pid" && { echo "FAIL: the job ran on with its prompt file rewritten"; exit 1; }
grep -q "change.txt:[0-9]*: the prompt changed while the job ran" change.err || { echo "FAIL: no message"; cat change.err; exit 1; }
echo "PASS"
