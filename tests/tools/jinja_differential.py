#!/usr/bin/env python3
"""Renders chat templates with Python's Jinja2, set up as transformers'
apply_chat_template sets it up, and with `mote tokenize`, and compares the
texts (or, where a template raises, the messages) for a set of
conversations.

    jinja_differential.py MOTE_BINARY TOKENIZER_DIR TEMPLATE...
"""
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime

from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

CONVERSATIONS = [
    {"messages": [{"role": "user", "content": "Hi"}], "current_date": "2026-02-28"},
    {"messages": [{"role": "system", "content": " Be brief.\n"}, {"role": "user", "content": "Hi <think>\nx</think>\n ünï ΣΑΣ ß"},
                  {"role": "assistant", "content": "Hello.", "reasoning_content": "r"}, {"role": "user", "content": "Bye\t"}],
     "current_date": "2026-11-29"},
    {"messages": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>\nR\n</think>\n\nA1"},
                  {"role": "user", "content": "Q2\r\nmore"}], "add_generation_prompt": False, "enable_thinking": False,
     "current_date": "2024-12-31"},
    {"messages": [{"role": "system", "content": ""}, {"role": "user", "content": "  \u00a0x\u3000 "},
                  {"role": "assistant", "content": "Sure: 1/2 = 0.5", "thinking": "t"}], "add_generation_prompt": False,
     "current_date": "2025-01-05"},
    {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "developer", "content": "d"}],
     "current_date": "2026-11-29"},
]


class Raised(Exception):
    pass


def render_jinja2(source, request):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])

    def raise_exception(message):
        raise Raised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    # Every conversation pins the date: a render must not depend on the day the test runs.
    date = datetime.strptime(request["current_date"], "%Y-%m-%d")
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: date.strftime(fmt)
    variables = {"add_generation_prompt": True, "tools": None, "documents": None,
                 "bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}
    variables.update(request)
    try:
        return {"text": env.from_string(source).render(**variables)}
    except Raised as e:
        return {"raised": str(e)}
    except Exception as e:  # any other failure: mote must fail too
        return {"failed": f"{type(e).__name__}: {e}"}


def render_mote(binary, tokenizer, template):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "in.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for c in CONVERSATIONS:
                f.write(json.dumps(c, ensure_ascii=False) + "\n")
        run = subprocess.run([binary, "tokenize", "--tokenizer", tokenizer, "--chat-template", template, "--input", path],
                             capture_output=True, text=True)
    if run.returncode != 0:
        return [{"failed": run.stderr.strip()}] * len(CONVERSATIONS)
    out = []
    for line in run.stdout.splitlines():
        j = json.loads(line)
        out.append({"text": j["text"]} if "text" in j else {"error": j["error"]})
    return out


def main():
    binary, tokenizer, templates = sys.argv[1], sys.argv[2], sys.argv[3:]
    bad = compared = 0
    for template in templates:
        # Jinja2 reads template files with universal newlines, as transformers does.
        source = open(template, encoding="utf-8").read()
        ours = render_mote(binary, tokenizer, template)
        for i, (request, got) in enumerate(zip(CONVERSATIONS, ours)):
            want = render_jinja2(source, request)
            compared += 1
            if "text" in want:
                ok = got.get("text") == want["text"]
            elif "raised" in want:
                ok = got.get("error") == want["raised"]
            else:
                ok = "text" not in got
            if not ok:
                bad += 1
                print(f"DIFFERS: {template} conversation {i}\n  Jinja2: {want!r}\n  mote:   {got!r}")
    print(f"{compared - bad} of {compared} renderings equal Jinja2's ({len(templates)} templates x {len(CONVERSATIONS)} conversations)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
