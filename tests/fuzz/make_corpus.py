#!/usr/bin/python3
"""Writes the seed corpus of every fuzz harness into tests/fuzz/corpus/<harness>/: small
valid inputs of each format (and the project's own example files)."""
import json
import shutil
import struct
from pathlib import Path

import h5py
import numpy as np

here = Path(__file__).resolve().parent
root = here.parent.parent
model = root / "models" / "tiny-deepseek-v3-mote"
corpus = here / "corpus"


def put(harness, name, data):
    d = corpus / harness
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors):
    header, blob = {"__metadata__": {"format": "pt"}}, b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob


put("safetensors", "two.safetensors", safetensors({"a": ("F32", [2, 2], bytes(16)), "b": ("BF16", [3], bytes(6))}))
put("safetensors", "empty.safetensors", safetensors({}))
put("safetensors", "index.json", json.dumps({"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors"}}))

put("config", "bundled.json", (model / "config.json").read_text())
cfg = json.loads((model / "config.json").read_text())
cfg["rope_scaling"] = {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "mscale": 1.0, "mscale_all_dim": 1.0}
cfg["q_lora_rank"] = None
put("config", "yarn.json", json.dumps(cfg))

# A tokenizer.json small enough to mutate: the byte alphabet, the added tokens, a few merges.
tok = json.loads((model / "tokenizer.json").read_text())
vocab = {t: i for t, i in tok["model"]["vocab"].items() if i < 300}
merges = [m for m in tok["model"]["merges"] if all(p in vocab for p in m.split(" ")) and m.replace(" ", "") in vocab][:20]
tok["model"]["vocab"], tok["model"]["merges"] = vocab, merges
put("tokenizer_json", "small.json", json.dumps(tok, ensure_ascii=False))

for i, p in enumerate(json.loads((model / "golden" / "prompts.json").read_text())["prompts"]):
    put("tokenizer_text", f"golden-{i}.txt", p["text"])
put("tokenizer_text", "mixed.txt", "Straße 😀 中文 'll  \t\n<｜User｜>x")

for f in (root / "configs" / "masks").glob("*.ini"):
    put("mask_file", f.name, f.read_text())
put("mask_file", "all-keys.ini", "[mote]\nlayer-index = moe\noff-policy = drop\non-policy = max\nshared-gain = 0.5\n"
    "off = 0:1\non = 1:2\ngain = 2:3:1.5\n")

put("prompt_file", "demo.jsonl", (root / "configs" / "prompts" / "demo.jsonl").read_text())
put("prompt_file", "plain.txt", "The secret of a happy life is\nEin Mann geht\n")
put("prompt_file", "options.jsonl", '{"id": 7, "class": "c", "prompt": "<｜begin▁of▁sentence｜>x", "add_special_tokens": false, "mask": "m"}\n')

# A checkpoint part / profile file in mote's layout.
d = corpus / "checkpoint"
d.mkdir(parents=True, exist_ok=True)
with h5py.File(d / "part.h5", "w") as f:
    g = f.create_group("requests/0")
    g.attrs["stop_reason"] = "eos"
    g.attrs["stop_code"] = np.int64(0)
    g["prompt_tokens"] = np.array([0, 486, 471], dtype=np.int32)
    g["generated_tokens"] = np.array([265, 1], dtype=np.int32)
    g["expert_counts"] = np.ones((2, 2, 4), dtype=np.uint32)
    g["expert_gate_sum"] = np.ones((2, 2, 4), dtype=np.float64)
    g.attrs["class"] = "a"
    g["routing/experts"] = np.array([[[0, 1], [2, 3]]] * 4, dtype=np.int32)
    g["routing/weights"] = np.full((4, 2, 2), 0.5, dtype=np.float32)
    g["scores"] = np.array([[-0.5, -2.0]])
    f["counts"] = np.ones((1, 2, 2, 4), dtype=np.uint64)
    f["gate_sum"] = np.ones((1, 2, 2, 4), dtype=np.float64)
    f["tokens"] = np.ones((1, 2), dtype=np.uint64)
    f["classes"] = np.array([b"a"], dtype="S1")
    f["moe_layer_decoder_index"] = np.array([1, 2], dtype=np.int32)
# A scan file's /scan group ('mote rank --by effect').
with h5py.File(d / "scan.h5", "w") as f:
    f["moe_layer_decoder_index"] = np.array([1, 2], dtype=np.int32)
    s = f.create_group("scan")
    s.attrs["metric"] = "token-prob"
    s.attrs["tokens"] = "I,S"
    s["effect"] = np.array([[0.1, np.nan, 0.0, -0.2], [0.3, 0.0, 0.0, 0.0]])
    s["effect_sd"] = np.zeros((2, 4))
print("seed corpora written to", corpus)
