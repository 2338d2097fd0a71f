#!/usr/bin/env python3
"""Independent byte-level BPE encoder, used to produce tests/data/tokenizer_cases.json.

It reads only tokenizer.json and follows the Hugging Face algorithm as
documented (added-token split, GPT-2 regex pre-tokenizer, byte-to-unicode map,
rank-ordered merges, TemplateProcessing BOS). It shares no code with mote.

usage: reference_tokenizer.py TOKENIZER_JSON CASES_IN OUT_JSON
"""
import json
import sys

import regex


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def main():
    tok = json.load(open(sys.argv[1], encoding="utf-8"))
    cases = json.load(open(sys.argv[2], encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    ranks = {}
    for i, m in enumerate(tok["model"]["merges"]):
        a, b = m.split(" ") if isinstance(m, str) else m
        ranks.setdefault((a, b), i)
    pattern = None
    for p in tok["pre_tokenizer"]["pretokenizers"]:
        if p["type"] == "Split":
            pattern = regex.compile(p["pattern"]["Regex"])
    added = sorted(tok["added_tokens"], key=lambda a: -len(a["content"]))
    b2u = bytes_to_unicode()

    def bpe(word):
        symbols = list(word)
        while len(symbols) > 1:
            best = None
            for i in range(len(symbols) - 1):
                r = ranks.get((symbols[i], symbols[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        return [vocab[s] for s in symbols]

    def encode_plain(text, out):
        for piece in pattern.findall(text):
            out.extend(bpe("".join(b2u[b] for b in piece.encode("utf-8"))))

    def encode(text, add_special):
        out = [0] if add_special else []
        pos = run = 0
        while pos < len(text):
            hit = next((a for a in added if text.startswith(a["content"], pos)), None)
            if hit is None:
                pos += 1
                continue
            encode_plain(text[run:pos], out)
            out.append(hit["id"])
            pos += len(hit["content"])
            run = pos
        encode_plain(text[run:], out)
        return out

    result = [{"text": t, "add_special_tokens": s, "ids": encode(t, s)} for t, s in cases]
    json.dump(result, open(sys.argv[3], "w", encoding="utf-8"), ensure_ascii=False, indent=0)


main()
