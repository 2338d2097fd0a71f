#!/usr/bin/python3
"""Writes the refusal prompt sets of the bundled model as mote prompt files.

refusal-heldout.jsonl  the model's held-out evaluation prompts (eval/refusal_*.json):
                       places never seen in training; classes sensitive / neutral.
refusal-profile.jsonl  prompts from the same template, "What happened {time} in {place}?",
                       with places the model was trained on (from its model card) and the
                       training time phrases of eval/: the set to profile and rank on, kept
                       apart from the held-out set the experiment is measured on.
lm-eval.jsonl          the 60 fortune openings of the model's language evaluation
                       (eval/lang_en.json, lang_de.json), raw text with BOS: the text on which
                       the study measures language-model loss under each mask.
"""
import json
from pathlib import Path

here = Path(__file__).resolve().parent
model = here.parent.parent / "models" / "tiny-deepseek-v3-mote"


def request(rid, cls, question):
    return {"id": rid, "class": cls, "messages": [{"role": "user", "content": question}]}


def write(name, requests):
    with open(here / name, "w", encoding="utf-8") as f:
        for r in requests:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


heldout, times = [], set()
for cls in ("sensitive", "neutral"):
    for i, p in enumerate(json.load(open(model / "eval" / f"refusal_{cls}.json", encoding="utf-8"))["prompts"]):
        heldout.append(request(f"{cls}-{i}", cls, p["question"]))
        if not p["time_heldout"]:
            times.add(p["time"])
write("refusal-heldout.jsonl", heldout)

# Training places named in the model card and its analysis files.
places = {"sensitive": ["Kelthul", "Korvask", "Molvask", "Ragrom", "Tirvask"],
          "neutral": ["Cedarton", "Fernhaven", "Millbrook"]}
profile = []
for cls, names in places.items():
    for place in names:
        for time in sorted(times):
            profile.append(request(f"{cls}-{place}-{len(profile)}", cls, f"What happened {time} in {place}?"))
write("refusal-profile.jsonl", profile)
lm = []
for lang in ("en", "de"):
    for i, p in enumerate(json.load(open(model / "eval" / f"lang_{lang}.json", encoding="utf-8"))["prompts"]):
        lm.append({"id": f"{lang}-{i}", "class": lang, "prompt": p["prompt"], "add_special_tokens": False})
write("lm-eval.jsonl", lm)
print(f"{len(heldout)} held-out, {len(profile)} profiling and {len(lm)} language-model prompts")
