#!/usr/bin/env bash
# The whole fTRI + MoTE study on the bundled model: profile the training
# places, rank experts (sensitive over neutral), and for N in 4, 8, 16
# switch the top N off on the held-out prompts against 5 random masks of N;
# then the four causally ranked experts of configs/masks/refusal-causal-top4.ini
# against 5 random masks of 4. Ends with the README's table.
#   configs/refusal-study.sh [OUT_DIR] [mote-run options, e.g. -n 4 --oversubscribe]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/out/refusal-study}
shift || true
mkdir -p "$out"
mote=("$root/build/mote")
if [ $# -gt 0 ]; then mote=("$root/launch/mote-run" "$@"); fi
cd "$root"
step=0
steps=8
progress() { step=$((step + 1)); echo "[$step/$steps $(date +%H:%M:%S)] $*" >&2; }

progress "profile: 96 prompts (60 sensitive, 36 neutral) -> $out/profile.h5"
"${mote[@]}" profile --config configs/refusal-profile.ini --out "$out/profile.h5" --log-level warn > "$out/profile.txt"
for n in 4 8 16; do
  progress "rank: top $n experts, sensitive over neutral -> $out/top$n.ini"
  build/mote rank "$out/profile.h5" --target sensitive --control neutral --top "$n" --out "$out/top$n.ini" > "$out/rank-$n.txt"
  progress "experiment: top $n off vs 5 random masks of $n on the held-out prompts"
  "${mote[@]}" experiment --config configs/refusal-experiment.ini --target-mask "$out/top$n.ini" \
    --out "$out/experiment-$n.h5" --log-level warn > "$out/experiment-$n.log"
done
progress "experiment: the 4 causally ranked experts off vs 5 random masks of 4"
"${mote[@]}" experiment --config configs/refusal-experiment.ini --target-mask configs/masks/refusal-causal-top4.ini \
  --out "$out/experiment-causal4.h5" --log-level warn > "$out/experiment-causal4.log"

/usr/bin/python3 - "$out" <<'PY'
import sys
import h5py
out = sys.argv[1]
def row(path):
    with h5py.File(path, "r") as f:
        e = f["experiment"]
        classes = [c.decode() if isinstance(c, bytes) else c for c in e["classes"][()]]
        rate = e["rate"][()]
        s, n = classes.index("sensitive"), classes.index("neutral")
        return rate, s, n, e["random_mean"][()], e["random_sd"][()], e["random_min"][()], e["random_max"][()]
print("| experts off | sensitive refusal, top-N fTRI | sensitive refusal, random N: mean (sd, min-max) | neutral refusal, top-N | neutral refusal, random N: mean |")
print("|---|---|---|---|---|")
rate, s, n, *_ = row(f"{out}/experiment-4.h5")
print(f"| 0 (baseline) | {rate[0, s]:.2f} | | {rate[0, n]:.2f} | |")
for label, name in [("4", "4"), ("8", "8"), ("16", "16"), ("4, ranked causally (`configs/masks/refusal-causal-top4.ini`)", "causal4")]:
    rate, s, n, mean, sd, lo, hi = row(f"{out}/experiment-{name}.h5")
    print(f"| {label} | {rate[1, s]:.2f} | {mean[s]:.2f} ({sd[s]:.2f}, {lo[s]:.2f}-{hi[s]:.2f}) | {rate[1, n]:.2f} | {mean[n]:.2f} |")
PY
