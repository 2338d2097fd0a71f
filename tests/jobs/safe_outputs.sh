#!/usr/bin/env bash
# Outputs that survive what users do to them: the text piped into `head`
# (SIGPIPE) stops the job with a checkpoint that --resume finishes; a
# checkpoint moved to another disk finishes there with --resume-from; a
# model changed in place refuses the resume; two jobs on one --out cannot
# both write it.
source "$(dirname "$0")/lib.sh"
set -e
for i in $(seq 1 24); do echo "Prompt number $i about the world and its many places"; done > prompts.txt
common=(--prompts prompts.txt --max-new-tokens 6 --ignore-eos --batch-size 2 --log-level warn)
"$mote" generate "${common[@]}" --out full.h5 > /dev/null

same() {
  for object in /requests /counts /gate_sum; do
    h5diff -q "$1" "$2" "$object" "$object" || { echo "FAIL: $2 differs from $1 in $object"; exit 1; }
  done
}

# 1. The reader of the text output goes away.
set +o pipefail
"$mote" generate "${common[@]}" --out piped.h5 2> piped.err | head -n 2 > /dev/null
status=${PIPESTATUS[0]}
set -o pipefail
[ "$status" -eq 141 ] || { echo "FAIL: SIGPIPE exit status $status"; cat piped.err; exit 1; }
grep -q "standard output: write failed (Broken pipe); stopping the job" piped.err || { echo "FAIL: no message"; cat piped.err; exit 1; }
[ -d piped.h5.checkpoint ] && [ ! -e piped.h5 ] || { echo "FAIL: no checkpoint after SIGPIPE"; exit 1; }
if ls piped.h5.tmp.* 2> /dev/null; then echo "FAIL: tmp file left"; exit 1; fi
# A part damaged since it was written never reaches libhdf5.
cp -r piped.h5.checkpoint damaged.h5.checkpoint
part=$(ls damaged.h5.checkpoint/part-*.h5 | head -n 1)
printf 'garbage' | dd of="$part" bs=1 seek=100 conv=notrunc 2> /dev/null
if "$mote" generate "${common[@]}" --out damaged.h5 --resume > /dev/null 2> damaged.err; then echo "FAIL: damaged part accepted"; exit 1; fi
grep -q "part-000000.h5: does not match part-000000.h5.sum (cut short or damaged since it was written)" damaged.err \
  || { echo "FAIL: damaged part message"; cat damaged.err; exit 1; }
"$mote" generate "${common[@]}" --out piped.h5 --resume > /dev/null
same full.h5 piped.h5
echo "SIGPIPE: clean stop (141), checkpoint kept, --resume gives the uninterrupted file"

# 2. The checkpoint on one disk, the result on another.
set +o pipefail
"$mote" generate "${common[@]}" --out first.h5 2> /dev/null | head -n 2 > /dev/null
set -o pipefail
mkdir other
"$mote" generate "${common[@]}" --out other/moved.h5 --resume-from first.h5.checkpoint > /dev/null
same full.h5 other/moved.h5
[ ! -d other/moved.h5.checkpoint ] || { echo "FAIL: the new checkpoint was not removed"; exit 1; }
echo "--resume-from: a checkpoint from elsewhere finishes beside the new output"

# 3. The model changed in place between the stop and the resume.
cp -r "$root/models/tiny-deepseek-v3-mote" model
set +o pipefail
"$mote" generate "${common[@]}" --model model --out changed.h5 2> /dev/null | head -n 2 > /dev/null
set -o pipefail
# The directory now holds the FP8 twin: same path, another model.
cp "$root/models/tiny-deepseek-v3-mote-fp8/config.json" "$root/models/tiny-deepseek-v3-mote-fp8/model.safetensors" model/
if "$mote" generate "${common[@]}" --model model --out changed.h5 --resume > /dev/null 2> changed.err; then
  echo "FAIL: resumed with a changed model"; exit 1
fi
grep -q "the checkpoint belongs to a different job" changed.err || { echo "FAIL: wrong message"; cat changed.err; exit 1; }
# The same header, other weights: bytes of a tensor rewritten in place.
rm -rf model changed.h5.checkpoint
cp -r "$root/models/tiny-deepseek-v3-mote" model
set +o pipefail
"$mote" generate "${common[@]}" --model model --out rewritten.h5 2> /dev/null | head -n 2 > /dev/null
set -o pipefail
/usr/bin/python3 - model/model.safetensors <<'PY'
import json, struct, sys
with open(sys.argv[1], "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    # The middle of the embedding: finite values (bf16 1.0) over what was there.
    begin, end = header["model.embed_tokens.weight"]["data_offsets"]
    f.seek(8 + n + (begin + end) // 2 // 2 * 2)
    f.write(b"\x80\x3f" * 32)
PY
if "$mote" generate "${common[@]}" --model model --out rewritten.h5 --resume > /dev/null 2> rewritten.err; then
  echo "FAIL: resumed with weights rewritten in place"; exit 1
fi
grep -q "the checkpoint belongs to a different job" rewritten.err || { echo "FAIL: wrong message"; cat rewritten.err; exit 1; }
echo "--resume refuses a model changed in place (another model, or the same header with other weights)"

# 4. Two jobs, one output: the second is refused while the first runs, which completes.
"$mote" generate "${common[@]}" --out shared.h5 > /dev/null 2> first.err &
first=$!
for _ in $(seq 1 200); do [ -e shared.h5.lock ] && break; sleep 0.05; done
kill -STOP "$first"  # held mid-job while the second one tries
if "$mote" generate "${common[@]}" --out shared.h5 > /dev/null 2> second.err; then echo "FAIL: two jobs wrote one output"; exit 1; fi
kill -CONT "$first"
grep -q "another mote job is writing this output (pid $first on host" second.err || { echo "FAIL: lock message"; cat second.err; exit 1; }
wait "$first"
/usr/bin/python3 - shared.h5 <<'PY'
import sys
import h5py
with h5py.File(sys.argv[1], "r") as f:
    assert len(f["requests"]) == f.attrs["request_count"] == 24, len(f["requests"])
PY
echo "one output, one job: the second job is refused naming the first, whose file is complete"

# 5. Resubmitted after it finished (a batch system's requeue): --resume
# finds this job's complete result and no checkpoint, and does nothing.
before=$(stat -c '%Y %s' full.h5)
"$mote" generate "${common[@]}" --out full.h5 --resume > again.out 2> again.err || { echo "FAIL: resume of a finished job"; cat again.err; exit 1; }
grep -q "full.h5: this job already finished (its result is complete and no checkpoint is left); nothing to resume" again.err \
  || { echo "FAIL: no message for a finished job"; cat again.err; exit 1; }
[ ! -s again.out ] || { echo "FAIL: the finished job ran again"; exit 1; }
[ "$(stat -c '%Y %s' full.h5)" = "$before" ] || { echo "FAIL: the finished result was rewritten"; exit 1; }
# Another job on the same output is no finished run of it: it runs.
"$mote" generate "${common[@]}" --seed 7 --temperature 0.5 --out full.h5 --resume > /dev/null 2> other.err || { echo "FAIL: other job"; cat other.err; exit 1; }
grep -q "holds no checkpoint; starting from the beginning" other.err || { echo "FAIL: the other job did not run"; cat other.err; exit 1; }
echo "--resume of a finished job does nothing; of another job, runs it"
