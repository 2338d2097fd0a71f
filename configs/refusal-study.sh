#!/usr/bin/env bash
# The whole fTRI + MoTE study on the bundled model: profile the training
# places, rank experts (sensitive over neutral), and for N in 4, 8, 16
# switch the top N off on the held-out prompts against 5 random masks of N;
# then a causal scan of the training places' sensitive prompts, and its top
# 4 against 5 random masks of 4. For every mask, the change of
# language-model loss on the model's fortune openings. Ends with the
# README's table.
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
steps=9
progress() { step=$((step + 1)); echo "[$step/$steps $(date +%H:%M:%S)] $*" >&2; }

# lm_loss NAME TARGET_MASK: language-model loss of the fortune openings under
# no mask, the target and the experiment's random masks -> $out/lm-NAME.json
lm_loss() {
  local name=$1 target=$2 conditions=$out/experiment-$1.h5.conditions
  local masks=(--mask "target=$target")
  for f in "$conditions"/random-*.ini; do masks+=(--mask "$(basename "$f" .ini)=$f"); done
  /usr/bin/python3 - "$conditions" configs/prompts/lm-eval.jsonl > "$out/lm-$name.jsonl" <<'PY'
import glob, json, os, sys
names = ["none", "target"] + sorted(os.path.basename(f)[:-4] for f in glob.glob(sys.argv[1] + "/random-*.ini"))
for line in open(sys.argv[2], encoding="utf-8"):
    r = json.loads(line)
    for n in names:
        print(json.dumps(dict(r, id=f"{n}/{r['id']}", mask=n), ensure_ascii=False))
PY
  "${mote[@]}" generate --prompts "$out/lm-$name.jsonl" "${masks[@]}" --max-new-tokens 0 --save-logits --batch-size 16 \
    --out "$out/lm-$name.h5" --log-level warn > /dev/null
  /usr/bin/python3 - "$out/lm-$name.h5" > "$out/lm-$name.json" <<'PY'
import json, sys
import h5py, numpy as np
loss, count = {}, {}
with h5py.File(sys.argv[1], "r") as f:
    for r in f["requests"].values():
        mask = r.attrs["mask"] or "none"
        tokens, logits = r["prompt_tokens"][()], r["logits"][()].astype(np.float64)
        top = logits.max(axis=1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
        # Row p predicts the token at p + 1.
        loss[mask] = loss.get(mask, 0.0) - logp[np.arange(len(tokens) - 1), tokens[1:]].sum()
        count[mask] = count.get(mask, 0) + len(tokens) - 1
print(json.dumps({m: loss[m] / count[m] for m in loss}))
PY
  rm -f "$out/lm-$name.h5"
}

progress "profile: 96 prompts (60 sensitive, 36 neutral) -> $out/profile.h5"
"${mote[@]}" profile --config configs/refusal-profile.ini --out "$out/profile.h5" --log-level warn > "$out/profile.txt"
for n in 4 8 16; do
  progress "rank: top $n experts by activation frequency, sensitive over neutral -> $out/top$n.ini"
  build/mote rank "$out/profile.h5" --target sensitive --control neutral --top "$n" --out "$out/top$n.ini" > "$out/rank-$n.txt"
  progress "experiment: top $n off vs 5 random masks of $n on the held-out prompts; language-model loss"
  "${mote[@]}" experiment --config configs/refusal-experiment.ini --target-mask "$out/top$n.ini" \
    --out "$out/experiment-$n.h5" --log-level warn > "$out/experiment-$n.log"
  lm_loss "$n" "$out/top$n.ini"
done
progress "scan: the 60 sensitive training prompts, each of the 160 experts off alone; probability of I,S -> $out/scan.h5"
"${mote[@]}" scan --prompts configs/prompts/refusal-profile.jsonl --class sensitive --tokens I,S --batch-size 16 \
  --top 4 --mask-out "$out/scan-top4.ini" --out "$out/scan.h5" --log-level warn > "$out/scan.txt"
progress "experiment: the scan's top 4 off vs 5 random masks of 4; language-model loss"
"${mote[@]}" experiment --config configs/refusal-experiment.ini --target-mask "$out/scan-top4.ini" \
  --out "$out/experiment-scan4.h5" --log-level warn > "$out/experiment-scan4.log"
lm_loss scan4 "$out/scan-top4.ini"

/usr/bin/python3 - "$out" <<'PY'
import json, sys
import h5py
out = sys.argv[1]
def row(name):
    with h5py.File(f"{out}/experiment-{name}.h5", "r") as f:
        e = f["experiment"]
        classes = [c.decode() if isinstance(c, bytes) else c for c in e["classes"][()]]
        rate = e["rate"][()]
        s, n = classes.index("sensitive"), classes.index("neutral")
        lm = json.load(open(f"{out}/lm-{name}.json"))
        randoms = [v - lm["none"] for k, v in lm.items() if k.startswith("random-")]
        return (rate, s, n, e["random_mean"][()], e["random_sd"][()], e["random_min"][()], e["random_max"][()],
                lm["none"], lm["target"] - lm["none"], sum(randoms) / len(randoms))
print("| experts off | sensitive refusal, target | sensitive refusal, random N: mean (sd, min-max) | neutral refusal, target | "
      "neutral refusal, random N: mean | LM loss change, target | LM loss change, random N: mean |")
print("|---|---|---|---|---|---|---|")
rate, s, n, *_, base_lm, _, _ = row("4")
print(f"| 0 (baseline) | {rate[0, s]:.2f} | | {rate[0, n]:.2f} | | {base_lm:.3f} (loss) | |")
for label, name in [("4, ranked by frequency", "4"), ("8, ranked by frequency", "8"), ("16, ranked by frequency", "16"),
                    ("4, ranked by `mote scan`", "scan4")]:
    rate, s, n, mean, sd, lo, hi, _, lm_target, lm_random = row(name)
    print(f"| {label} | {rate[1, s]:.2f} | {mean[s]:.2f} ({sd[s]:.2f}, {lo[s]:.2f}-{hi[s]:.2f}) | {rate[1, n]:.2f} | {mean[n]:.2f} "
          f"| {lm_target:+.3f} | {lm_random:+.3f} |")
PY
