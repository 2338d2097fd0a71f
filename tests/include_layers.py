#!/usr/bin/env python3
"""Fails when a source file includes a header of a folder its own folder may
not include. The layers are the table in docs/architecture.md (between its
'layers' comment and the next blank line), so the map and the code agree.

  tests/include_layers.py SOURCE_DIR
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
doc = open(os.path.join(root, "docs", "architecture.md"), encoding="utf-8").read()
table = doc[doc.index("<!-- layers"):].split("\n\n")[0].splitlines()
allowed = {}
for row in table:
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    m = re.fullmatch(r"`([a-z_]+)/`", cells[0]) if len(cells) == 3 else None
    if m:
        allowed[m.group(1)] = set() if cells[2] == "(nothing)" else {c.strip() for c in cells[2].split(",")}
if len(allowed) < 5:
    sys.exit(f"docs/architecture.md: no table of layers found after '<!-- layers' ({len(allowed)} rows)")

problems = []
folders_seen = set()
for base in ("src", os.path.join("include", "mote")):
    for d, _, files in os.walk(os.path.join(root, base)):
        for f in sorted(files):
            if not f.endswith((".h", ".cpp")):
                continue
            path = os.path.join(d, f)
            rel = os.path.relpath(path, os.path.join(root, base))
            if os.sep not in rel:
                continue  # the entry point, above every layer
            folder = rel.split(os.sep)[0]
            folders_seen.add(folder)
            if folder not in allowed:
                problems.append(f"{os.path.relpath(path, root)}: folder '{folder}/' is not in the table of layers in docs/architecture.md")
                continue
            for n, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
                m = re.match(r'\s*#\s*include\s*"mote/([a-z_]+)/', line)
                if m and m.group(1) != folder and m.group(1) not in allowed[folder]:
                    problems.append(f"{os.path.relpath(path, root)}:{n}: {folder}/ may not include {m.group(1)}/ ({line.strip()})")
for p in problems:
    print(p)
print(f"{len(folders_seen)} folders, {len(problems)} includes out of their layer")
sys.exit(1 if problems else 0)
