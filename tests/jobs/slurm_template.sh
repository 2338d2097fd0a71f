#!/usr/bin/env bash
# cluster/slurm/mote.sbatch outside Slurm: a stand-in for srun that runs
# the command it is given. The template copies every input file the job
# file and the arguments name into the run directory, writes the result
# there, and a resubmission of the finished run does nothing.
source "$(dirname "$0")/lib.sh"
fail() { echo "FAIL: $*"; exit 1; }
mkdir -p bin build
printf '#!/bin/sh\nwhile [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"\n' > bin/srun  # drops srun's own options
chmod +x bin/srun
ln -s "$mote" build/mote
ln -s "$root/models" models
echo '{"id": "a", "class": "x", "prompt": "Hello"}' > p.jsonl
echo 'Another prompt' > cp.txt
printf '[mote]\nlayer-index = moe\noff = 0:1\n' > m.ini
printf 'prompts = p.jsonl\nmask = m.ini\nmax-new-tokens = 2\nlog-level = warn\n' > job.ini
export PATH=$work/bin:$PATH SLURM_SUBMIT_DIR=$work SLURM_JOB_NAME=demo SLURM_JOB_ID=1 SLURM_NTASKS=1 SLURM_JOB_NUM_NODES=1 SLURM_CPUS_PER_TASK=1
bash "$root/cluster/slurm/mote.sbatch" job.ini --class-prompts c=cp.txt > first.log 2>&1 || { cat first.log; fail "first submission"; }
for f in job.ini p.jsonl m.ini cp.txt; do [ -f "runs/demo/inputs/$f" ] || { ls runs/demo/inputs; fail "$f was not copied"; }; done
[ -f runs/demo/result.h5 ] || fail "no result"
before=$(stat -c '%Y %s' runs/demo/result.h5)
bash "$root/cluster/slurm/mote.sbatch" job.ini --class-prompts c=cp.txt > second.log 2>&1 || { cat second.log; fail "resubmission"; }
grep -q "this job already finished" second.log || { cat second.log; fail "the resubmission did not say the run had finished"; }
[ "$(stat -c '%Y %s' runs/demo/result.h5)" = "$before" ] || fail "the resubmission rewrote the result"
echo "Slurm template: every input copied, the result in the run directory, a finished run's resubmission does nothing"
