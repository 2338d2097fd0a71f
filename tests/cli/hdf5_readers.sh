#!/usr/bin/env bash
# Writes a generate file and reads it back with h5dump and with h5py, which
# know nothing of mote.
set -euo pipefail
mote=$1
root=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$mote" generate --prompts "$root/configs/prompts/demo.jsonl" --max-new-tokens 6 --trace --save-logits \
  --out "$work/out.h5" --log-level warn > /dev/null
h5dump -A "$work/out.h5" > "$work/dump.txt"
grep -q 'ATTRIBUTE "format_version"' "$work/dump.txt"
h5dump -d /requests/0/generated_tokens "$work/out.h5" > /dev/null
# Debian's interpreter: python3-h5py is installed for it, whatever else is on PATH.
/usr/bin/python3 - "$work/out.h5" <<'PY'
import sys
import h5py
with h5py.File(sys.argv[1], "r") as f:
    assert f.attrs["format"] == "mote", f.attrs["format"]
    assert int(f.attrs["format_version"]) == 1
    n = int(f.attrs["request_count"])
    assert len(f["requests"]) == n == 6
    for i in range(n):
        r = f["requests"][str(i)]
        positions = len(r["prompt_tokens"]) + len(r["generated_tokens"]) - 1
        assert r["logits"].shape == (positions, 4096), r["logits"].shape
        assert r["routing/experts"].shape == (positions, 5, 4)
        assert r["routing/weights"].dtype.name == "float32"
        text = r["text"][()]
        assert isinstance(text.decode("utf-8") if isinstance(text, bytes) else text, str)
    # Iterating /requests follows the prompt file; every multi-dimensional dataset names its axes.
    assert list(f["requests"]) == [str(i) for i in range(n)], list(f["requests"])
    assert f["counts"].attrs["axes"] == "class,phase,moe_layer,expert"
    assert f["gate_sum"].attrs["axes"] == "class,phase,moe_layer,expert"
    assert f["tokens"].attrs["axes"] == "class,phase"
    assert f["requests/0/logits"].attrs["axes"] == "position,vocab"
    assert f["requests/0/routing/experts"].attrs["axes"] == "position,moe_layer,top_k_slot"
    assert f["requests/0/expert_counts"].attrs["axes"] == "phase,moe_layer,expert"
    assert "decoder-layer index" in f.attrs["axes_note"]
    print("h5py read", n, "requests")
PY
