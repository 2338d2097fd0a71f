#!/usr/bin/python3
"""Writes the golden prompts as a JSONL prompt file (their text already holds BOS)."""
import json
import sys

model_dir, out = sys.argv[1], sys.argv[2]
prompts = json.load(open(f"{model_dir}/golden/prompts.json", encoding="utf-8"))["prompts"]
with open(out, "w", encoding="utf-8") as f:
    for p in prompts:
        cls = "chat" if p["name"].startswith("chat") else "text"
        f.write(json.dumps({"id": p["name"], "class": cls, "prompt": p["text"], "add_special_tokens": False}, ensure_ascii=False) + "\n")
