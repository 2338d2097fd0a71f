#!/usr/bin/python3
"""Checks a `mote generate --save-logits --trace --ignore-eos --max-new-tokens 32`
file of the golden prompts against the model's golden reference outputs."""
import json
import sys

import h5py
import numpy as np

model_dir, path, run = sys.argv[1], sys.argv[2], sys.argv[3]
prompts = json.load(open(f"{model_dir}/golden/prompts.json", encoding="utf-8"))["prompts"]
worst = 0.0
with h5py.File(path, "r") as f:
    for i, p in enumerate(prompts):
        g = json.load(open(f"{model_dir}/golden/{run}/{p['name']}.json", encoding="utf-8"))
        r = f[f"requests/{i}"]
        n = len(g["input_ids"])
        assert list(r["prompt_tokens"][()]) == g["input_ids"], p["name"]
        assert list(r["generated_tokens"][()]) == g["greedy"]["new_ids"], p["name"]
        diff = np.max(np.abs(r["logits"][n - 1] - np.array(g["last_logits"], dtype=np.float32)))
        worst = max(worst, float(diff))
        assert diff <= 1e-4, (p["name"], diff)
        experts = r["routing/experts"][()]
        for m, layer in enumerate(g["routing"]):
            for t in range(n):
                assert sorted(experts[t, m]) == layer["experts"][t], (p["name"], m, t)
print(f"{path}: golden {run} run matches; max |last logit diff| {worst:.3g}")
