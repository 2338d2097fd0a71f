#!/usr/bin/env bash
# Memory that grows with what runs, not with the size of the inputs: a job
# of 2000 prompts in 2000 classes peaks within 40 MB of the same prompts in
# one class (the ranks' own routing records do not grow with the classes;
# only the class totals written to the file do, 10 KB per class here).
source "$(dirname "$0")/lib.sh"
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
echo "PASS"
