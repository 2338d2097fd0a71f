#!/usr/bin/env bash
# The model families' fixtures through `mote generate` at world sizes 1 and
# 3: the golden prompts (chat ones rendered by each fixture's own chat
# template) match the reference (tokens, logits within 1e-3 of
# the prompt's largest logit, routed experts where the routing margin
# exceeds 1e-3, greedy continuation), 1 and 3 ranks (with 1 or 2
# coordinators) are bit-identical, a fixture's masked reference matches, and
# with a mask (each off policy, an expert forced on, a gain) 1 and 3 ranks
# are bit-identical and a switched-off expert is never sent a token.
source "$(dirname "$0")/lib.sh"
set -e


check() {  # check NAME MODEL_DIR GOLDEN_DIR
  local name=$1 model=$2 golden=$3 n_gen
  n_gen=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['n_gen'])" "$golden/golden.json")
  /usr/bin/python3 - "$golden" "$work/$name.jsonl" <<'PY'
import json, sys
golden = json.load(open(f"{sys.argv[1]}/golden.json", encoding="utf-8"))
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for p in golden["prompts"]:
        # Chat prompts go in as conversations: the fixture's own chat template renders them.
        line = {"id": p["name"], "class": p["kind"]}
        line.update({"prompt": p["text"]} if p["kind"] == "raw" else {"messages": p["messages"]})
        if "current_date" in p:
            line["current_date"] = p["current_date"]  # the date the reference rendered the template with
        f.write(json.dumps(line, ensure_ascii=False) + "\n")
PY
  local common=(--model "$model" --prompts "$work/$name.jsonl" --max-new-tokens "$n_gen" --ignore-eos --save-logits --trace --log-level warn)
  "$MOTE_BIN" generate "${common[@]}" --out "$work/$name-1.h5" > /dev/null
  /usr/bin/python3 "$root/tests/jobs/check_npz_golden.py" "$golden" "$work/$name-1.h5" "$name, world size 1" --relative 1e-3 --route-margin 1e-3
  "$run" -n 3 --oversubscribe generate "${common[@]}" --placement round-robin --out "$work/$name-3.h5" > /dev/null
  same "$work/$name-1.h5" "$work/$name-3.h5"
  "$run" -n 3 --oversubscribe generate "${common[@]}" --coordinators 2 --out "$work/$name-3c2.h5" > /dev/null
  same "$work/$name-1.h5" "$work/$name-3c2.h5"
  if [ -f "$golden/masked/mask.ini" ]; then
    # The reference's own masked run, in mote's mask-file syntax.
    "$MOTE_BIN" generate "${common[@]}" --mask "$golden/masked/mask.ini" --out "$work/$name-g1.h5" > /dev/null
    /usr/bin/python3 "$root/tests/jobs/check_npz_golden.py" "$golden/masked" "$work/$name-g1.h5" "$name masked, world size 1" --relative 1e-3 --route-margin 1e-3
    "$run" -n 3 --oversubscribe generate "${common[@]}" --placement round-robin --mask "$golden/masked/mask.ini" --out "$work/$name-g3.h5" > /dev/null
    same "$work/$name-g1.h5" "$work/$name-g3.h5"
  fi
  for policy in reroute drop zero; do
    printf '[mote]\nlayer-index = moe\noff-policy = %s\noff = 0:1\noff = 1:0\non = 2:3\ngain = 1:2:1.5\n' "$policy" > "$work/mask.ini"
    "$MOTE_BIN" generate "${common[@]}" --mask "$work/mask.ini" --out "$work/$name-m1.h5" > /dev/null
    "$run" -n 3 --oversubscribe generate "${common[@]}" --mask "$work/mask.ini" --out "$work/$name-m3.h5" > /dev/null
    same "$work/$name-m1.h5" "$work/$name-m3.h5"
    /usr/bin/python3 - "$work/$name-m1.h5" "$work/$name-1.h5" "$policy" <<'PY'
import sys
import h5py
import numpy as np
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "r") as base:
    counts = f["counts"][()]
    assert counts[..., 0, 1].sum() == 0 and counts[..., 1, 0].sum() == 0, "a switched-off expert was sent tokens"
    assert counts[..., 2, 3].sum() == f["tokens"][()].sum(), "the forced expert missed tokens"
    assert not np.array_equal(counts, base["counts"][()]), "the mask changed nothing"
PY
  done
  echo "$name: world size 3 (1 and 2 coordinators) bit-identical to 1, unmasked and with reroute, drop and zero masks"
}

check qwen3-moe "$root/models/tiny-qwen3-moe" "$root/models/tiny-qwen3-moe/golden"
check mixtral "$root/models/tiny-mixtral" "$root/models/tiny-mixtral/golden"
check olmoe "$root/models/tiny-olmoe" "$root/models/tiny-olmoe/golden"
check deepseek-v2-lite "$root/models/tiny-deepseek-v2-lite" "$root/models/tiny-deepseek-v2-lite/golden"
check gpt-oss "$root/models/tiny-gpt-oss" "$root/models/tiny-gpt-oss/golden"
# DeepSeek-V2's group-limited routing: the same weights under config_override.json.
v2=$root/models/tiny-deepseek-v2-lite
mkdir "$work/v2-group-limited"
for f in "$v2"/*; do [ -f "$f" ] && [ "$(basename "$f")" != config.json ] && ln -s "$f" "$work/v2-group-limited/"; done
/usr/bin/python3 -c "
import json, sys
c = json.load(open(sys.argv[1])); c.update(json.load(open(sys.argv[2])))
json.dump(c, open(sys.argv[3], 'w'), indent=2)" "$v2/config.json" "$v2/golden/group_limited/config_override.json" "$work/v2-group-limited/config.json"
check deepseek-v2-group-limited "$work/v2-group-limited" "$v2/golden/group_limited"
