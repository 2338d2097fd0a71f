#!/usr/bin/env bash
# The whole fTRI + MoTE study on the bundled model: profile the training
# places, rank experts (sensitive over neutral), and for N in 4, 8, 16
# switch the top N off on the held-out prompts against 5 random masks of N.
#   configs/refusal-study.sh [OUT_DIR] [mote-run options, e.g. -n 4 --oversubscribe]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/out/refusal-study}
shift || true
mkdir -p "$out"
mote=("$root/build/mote")
if [ $# -gt 0 ]; then mote=("$root/launch/mote-run" "$@"); fi
cd "$root"
"${mote[@]}" profile --config configs/refusal-profile.ini --out "$out/profile.h5" --log-level warn > "$out/profile.txt"
for n in 4 8 16; do
  build/mote rank "$out/profile.h5" --target sensitive --control neutral --top "$n" --out "$out/top$n.ini" > "$out/rank-$n.txt"
  "${mote[@]}" experiment --config configs/refusal-experiment.ini --target-mask "$out/top$n.ini" \
    --out "$out/experiment-$n.h5" --log-level warn > "$out/experiment-$n.log"
  echo "== top $n fTRI experts off =="
  sed -n '/^behaviour:/,$p' "$out/experiment-$n.log"
done
