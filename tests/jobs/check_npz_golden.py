#!/usr/bin/python3
"""Checks a `mote generate --save-logits --trace --ignore-eos` file of a
model's golden prompts against reference outputs saved as .npz (golden.json
plus <prompt>.npz per prompt): prompt tokens, greedy tokens, logits at every
prompt position and greedy step, and routed experts per token and layer.

    check_npz_golden.py GOLDEN_DIR FILE.h5 NAME [--tolerance ABS | --relative R] [--route-margin M]

--relative R: the logit tolerance is R times the prompt's largest |logit|;
--route-margin M: routing is compared only where the reference's k-th and
(k+1)-th router logits are more than M apart (0: everywhere)."""
import argparse
import json

import h5py
import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("golden_dir")
parser.add_argument("path")
parser.add_argument("name")
parser.add_argument("--tolerance", type=float)
parser.add_argument("--relative", type=float)
parser.add_argument("--route-margin", type=float, default=0.0)
args = parser.parse_args()

golden = json.load(open(f"{args.golden_dir}/golden.json", encoding="utf-8"))["prompts"]
worst = 0.0
with h5py.File(args.path, "r") as f:
    for i, p in enumerate(golden):
        ref = np.load(f"{args.golden_dir}/{p['name']}.npz")
        r = f[f"requests/{i}"]
        n = len(p["input_ids"])
        assert list(r["prompt_tokens"][()]) == p["input_ids"], p["name"]
        gen = len(ref["gen_ids"])
        assert list(r["generated_tokens"][()]) == list(ref["gen_ids"]), p["name"]
        tolerance = args.tolerance if args.relative is None else args.relative * float(np.max(np.abs(ref["logits"])))
        diff = float(np.max(np.abs(r["logits"][:n] - ref["logits"])))
        diff = max(diff, float(np.max(np.abs(r["logits"][n - 1:n - 1 + gen] - ref["gen_logits"][:gen]))))
        worst = max(worst, diff / tolerance)
        assert diff <= tolerance, (p["name"], diff, tolerance)
        experts = r["routing/experts"][()]
        k = ref["experts"].shape[2]
        for m in range(ref["experts"].shape[0]):
            for t in range(n):
                if args.route_margin > 0:
                    # The reference's own margin where it gives one (among the
                    # experts a mask leaves selectable), else from its logits.
                    if "route_margin" in ref:
                        margin = float(ref["route_margin"][m, t])
                    else:
                        u = np.sort(ref["router_logits"][m, t])[::-1]
                        margin = u[k - 1] - u[k] if k < len(u) else np.inf
                    if margin <= args.route_margin:
                        continue
                assert sorted(experts[t, m]) == sorted(ref["experts"][m, t]), (p["name"], m, t)
print(f"{args.name}: golden prompts match the reference (worst logit diff {worst:.3g} of the tolerance)")
