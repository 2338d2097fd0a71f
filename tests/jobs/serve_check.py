#!/usr/bin/python3
"""Checks a running `mote serve` against `mote generate` (tests/jobs/serve.sh).

  serve_check.py same PORT PROMPTS.jsonl GENERATE.h5 MAX_TOKENS [--concurrent]
      every line of the prompt file, sent as a chat or completions request
      with its mask, "record": true and greedy decoding, gives exactly the
      generated ids, text and expert counts the job wrote for that line
  serve_check.py stream PORT PROMPTS.jsonl MAX_TOKENS
      the streamed text and finish reason of every line equal the unstreamed
  serve_check.py echo PORT SCORED.h5
      "echo" + "logprobs" with max_tokens 0 give, for the last prompt token,
      the log-probability `mote generate --score-tokens` wrote for it
  serve_check.py connections PORT PID LIMIT
      idle clients past --max-connections LIMIT wait in the listen backlog
      (the server holds at most LIMIT + 1 of them), the server closes an
      idle one after its keep-alive timeout, and once they leave a request
      is answered at once
  serve_check.py expected PORT PROMPTS.jsonl GENERATE.h5 MAX_TOKENS OUT.json
      writes what the job gave for every line (ids, and text through the
      server's /detokenize), for tests/clients/openai_client.mjs
"""
import json
import os
import socket
import sys
import threading
import time
import urllib.request

import h5py
import numpy as np


def post(port, path, body, stream=False):
    headers = {"Content-Type": "application/json"}
    if os.environ.get("MOTE_API_KEY"):
        headers["Authorization"] = "Bearer " + os.environ["MOTE_API_KEY"]
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                     headers=headers)
    with urllib.request.urlopen(request, timeout=120) as response:
        data = response.read().decode()
    if not stream:
        return json.loads(data)
    events = []
    for block in data.split("\n\n"):
        if block.startswith("data: "):
            events.append(block[len("data: "):])
    assert events[-1] == "[DONE]", events[-1]
    return [json.loads(e) for e in events[:-1]]


INLINE = {}  # mask set name -> mask file text, sent as "mask_ini" instead of "mask" (--inline NAME=FILE)


def request_body(line, max_tokens):
    body = {"max_tokens": max_tokens, "temperature": 0, "record": True}
    if line.get("mask") in INLINE:
        with open(INLINE[line["mask"]], encoding="utf-8") as f:
            body["mask_ini"] = f.read()
    elif "mask" in line:
        body["mask"] = line["mask"]
    if "messages" in line:
        body["messages"] = line["messages"]
        return "/v1/chat/completions", body
    body["prompt"] = line["prompt"]
    return "/v1/completions", body


def text_of(path, choice):
    return choice["message"]["content"] if path.endswith("chat/completions") else choice["text"]


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def same(port, prompts, h5, max_tokens, concurrent):
    lines = read_lines(prompts)
    results = [None] * len(lines)

    def one(i):
        path, body = request_body(lines[i], max_tokens)
        results[i] = (path, post(port, path, body))

    if concurrent:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(lines))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for i in range(len(lines)):
            one(i)
    failures = 0
    with h5py.File(h5, "r") as f:
        groups = {f["requests"][k].attrs["id"]: f["requests"][k] for k in f["requests"]}
        for line, (path, response) in zip(lines, results):
            g = groups[line["id"]]
            choice = response["choices"][0]
            want = [int(x) for x in g["generated_tokens"][()]]
            got = response["mote"]["token_ids"][0]
            counts = np.array(response["mote"]["expert_counts"][0], dtype=np.uint32)
            if got != want:
                print(f"FAIL {line['id']}: ids {got} != the job's {want}")
                failures += 1
                continue
            if not np.array_equal(counts, g["expert_counts"][()]):
                print(f"FAIL {line['id']}: expert counts differ from the job's")
                failures += 1
            shown = want[:-1] if want and g.attrs["stop_reason"] == "eos" else want
            text = post(port, "/detokenize", {"tokens": shown})["prompt"]
            if text_of(path, choice) != text:
                print(f"FAIL {line['id']}: text {text_of(path, choice)!r} != {text!r}")
                failures += 1
            reason = {"eos": "stop", "max_new_tokens": "length", "context_full": "length"}[g.attrs["stop_reason"]]
            if choice["finish_reason"] != reason:
                print(f"FAIL {line['id']}: finish_reason {choice['finish_reason']} != {reason}")
                failures += 1
            usage = response["usage"]
            if usage["completion_tokens"] != len(want) or usage["prompt_tokens"] != len(g["prompt_tokens"][()]):
                print(f"FAIL {line['id']}: usage {usage}")
                failures += 1
    print(f"{len(lines)} requests {'at once' if concurrent else 'one by one'}"
          f"{' (masks ' + ', '.join(INLINE) + ' inline)' if INLINE else ''}: {len(lines) - failures} as the job gave them")
    return failures


def stream(port, prompts, max_tokens):
    failures = 0
    lines = read_lines(prompts)
    for line in lines:
        path, body = request_body(line, max_tokens)
        body.pop("record")
        whole = post(port, path, body)["choices"][0]
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        chunks = post(port, path, body, stream=True)
        text, reason, usage = "", None, None
        for c in chunks:
            if c.get("usage"):
                usage = c["usage"]
            for choice in c["choices"]:
                text += choice.get("delta", {}).get("content", "") if "delta" in choice else choice["text"]
                reason = choice["finish_reason"] or reason
        if text != text_of(path, whole) or reason != whole["finish_reason"] or usage is None:
            print(f"FAIL {line['id']}: streamed {text!r} ({reason}) != {text_of(path, whole)!r} "
                  f"({whole['finish_reason']}), usage {usage}")
            failures += 1
        # A stop string from the middle of the text cuts it at its first place, streamed or not.
        full = text_of(path, whole)
        if len(full) >= 12:
            stop = full[len(full) // 2:len(full) // 2 + 3]
            want = full[:full.find(stop)]
            body.pop("stream_options")
            for streamed in (False, True):
                body.update({"stream": streamed, "stop": ["\u0000never", stop]})
                if streamed:
                    got, reason = "", None
                    for c in post(port, path, body, stream=True):
                        for choice in c["choices"]:
                            got += choice["delta"].get("content", "") if "delta" in choice else choice["text"]
                            reason = choice["finish_reason"] or reason
                else:
                    choice = post(port, path, body)["choices"][0]
                    got, reason = text_of(path, choice), choice["finish_reason"]
                if got != want or reason != "stop":
                    print(f"FAIL {line['id']}: stop {stop!r}{' streamed' if streamed else ''}: {got!r} ({reason}), "
                          f"expected {want!r}")
                    failures += 1
            body.pop("stop")
    print(f"{len(lines)} streamed requests: {len(lines) - failures} equal to the unstreamed")
    return failures


def echo(port, h5):  # the server started with the job's masks
    failures = 0
    with h5py.File(h5, "r") as f:
        ids = [int(x) for x in f["score_ids"][()]]
        for k in f["requests"]:
            g = f["requests"][k]
            prompt = [int(x) for x in g["prompt_tokens"][()]]
            scores = g["scores"][()][0]
            for j, token in enumerate(ids):
                mask = g.attrs["mask"] or "none"
                r = post(port, "/v1/completions",
                         {"prompt": prompt + [token], "max_tokens": 0, "echo": True, "logprobs": 0, "mask": mask})
                lp = r["choices"][0]["logprobs"]["token_logprobs"]
                if len(lp) != len(prompt) + 1 or lp[0] is not None:
                    print(f"FAIL {k}: {len(lp)} log-probabilities for {len(prompt) + 1} tokens")
                    failures += 1
                elif np.float32(lp[-1]) != np.float32(scores[j]):
                    print(f"FAIL {k}: log-probability of {token}: {lp[-1]} != the job's {scores[j]}")
                    failures += 1
                if j == 0:
                    # Text offsets: characters before each token, as the decoded prefix has them.
                    full = prompt + [token]
                    text = post(port, "/detokenize", {"tokens": full})["prompt"]
                    offsets = r["choices"][0]["logprobs"]["text_offset"]
                    want = [len(post(port, "/detokenize", {"tokens": full[:i]})["prompt"]) for i in range(len(full))]
                    if r["choices"][0]["text"] != text or offsets != want:
                        print(f"FAIL {k}: echoed text or text offsets {offsets} != {want}")
                        failures += 1
    print(f"echo + logprobs: {'equal' if failures == 0 else 'NOT equal'} to --score-tokens")
    return failures


def expected(port, prompts, h5, max_tokens, out):
    lines = read_lines(prompts)
    result = []
    with h5py.File(h5, "r") as f:
        groups = {f["requests"][k].attrs["id"]: f["requests"][k] for k in f["requests"]}
        for line in lines:
            g = groups[line["id"]]
            ids = [int(x) for x in g["generated_tokens"][()]]
            shown = ids[:-1] if ids and g.attrs["stop_reason"] == "eos" else ids
            e = {"id": line["id"], "mask": line.get("mask", "none"), "max_tokens": max_tokens, "ids": ids,
                 "text": post(port, "/detokenize", {"tokens": shown})["prompt"]}
            e["messages" if "messages" in line else "prompt"] = line.get("messages", line.get("prompt"))
            result.append(e)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False)
    return 0


def record(path, h5, at_least):
    """The record of a server: every request the job also ran gives the job's
    tokens and counts; the totals add up; ids are unique."""
    failures = 0
    with h5py.File(h5, "r") as f:
        # A request's own mask (mask "inline") is the job's mask set of the same text.
        set_of_text = {f["masks"][m].attrs["description"]: m for m in f["masks"]}
        job = {}
        for k in f["requests"]:
            g = f["requests"][k]
            key = (g.attrs["mask"], tuple(int(x) for x in g["prompt_tokens"][()]))
            job[key] = ([int(x) for x in g["generated_tokens"][()]], g["expert_counts"][()])
    with h5py.File(path, "r") as f:
        requests = f["requests"]
        n = len(requests)
        if f.attrs["job"] != "serve" or f.attrs["request_count"] != n or list(requests) != [str(i) for i in range(n)]:
            print(f"FAIL {path}: job {f.attrs['job']}, request_count {f.attrs['request_count']}, groups {list(requests)}")
            failures += 1
        ids = [requests[str(i)].attrs["id"] for i in range(n)]
        if len(set(ids)) != n:
            print(f"FAIL {path}: request ids repeat")
            failures += 1
        matched, inline, counts, tokens = 0, 0, np.zeros_like(f["counts"][()]), np.zeros_like(f["tokens"][()])
        for i in range(n):
            g = requests[str(i)]
            c = g["expert_counts"][()]
            if "error" not in g.attrs:
                counts[0] += c.astype(np.uint64)
                prompt = len(g["prompt_tokens"][()])
                tokens[0] += np.array([prompt, max(len(g["generated_tokens"][()]) - 1, 0)], dtype=np.uint64)
            mask = g.attrs["mask"]
            if mask == "inline":
                if "mask_ini" not in g.attrs or g.attrs["mask_ini"] not in set_of_text:
                    print(f"FAIL {path}: request {i} has its own mask, but not the text of one of the job's")
                    failures += 1
                    continue
                mask = set_of_text[g.attrs["mask_ini"]]
                inline += 1
            key = (mask, tuple(int(x) for x in g["prompt_tokens"][()]))
            if key in job and g.attrs["stop_reason"] in ("eos", "max_new_tokens"):
                want_ids, want_counts = job[key]
                got_ids = [int(x) for x in g["generated_tokens"][()]]
                if got_ids != want_ids or not np.array_equal(c, want_counts):
                    print(f"FAIL {path}: request {i} ({ids[i]}) differs from the job's: {got_ids} vs {want_ids}")
                    failures += 1
                matched += 1
        if not np.array_equal(counts, f["counts"][()]) or not np.array_equal(tokens, f["tokens"][()]):
            print(f"FAIL {path}: the totals are not the sum of the requests")
            failures += 1
        if matched < at_least:
            print(f"FAIL {path}: {matched} requests like the job's, expected at least {at_least}")
            failures += 1
    print(f"record {path}: {n} requests ({inline} with their own mask), {matched} equal to the job's, totals add up"
          if failures == 0 else
          f"record {path}: {failures} failures")
    return failures


def open_sockets(pid):
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def connections(port, pid, limit):
    failures = 0
    before = open_sockets(pid)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4 * limit)]
    time.sleep(1)
    held = open_sockets(pid) - before
    if held > limit + 1:
        print(f"FAIL: {len(idle)} idle clients hold {held} sockets of the server (--max-connections {limit})")
        failures += 1
    # The connections held are closed after the keep-alive timeout (5 s).
    closed_by_server = 0
    deadline = time.time() + 10
    while closed_by_server == 0 and time.time() < deadline:
        time.sleep(0.2)
        for s in idle:
            s.setblocking(False)
            try:
                closed_by_server += s.recv(1) == b""
            except BlockingIOError:
                pass
    if closed_by_server == 0:
        print("FAIL: the server did not close an idle connection within 10 s")
        failures += 1
    for s in idle:
        s.close()
    start = time.time()
    reply = post(port, "/v1/completions", {"prompt": "Hello", "max_tokens": 2})
    waited = time.time() - start
    if waited > 3 or not reply["choices"]:
        print(f"FAIL: after the idle clients left, a request took {waited:.1f} s")
        failures += 1
    print(f"connections: {len(idle)} idle clients held {held} sockets (limit {limit}); "
          f"the server closed idle ones; then a request took {waited:.2f} s")
    return failures


def main():
    for arg in sys.argv:
        if arg.startswith("--inline="):
            name, path = arg[len("--inline="):].split("=", 1)
            INLINE[name] = path
    what = sys.argv[1]
    port = int(sys.argv[2]) if what != "record" else 0
    if what == "same":
        failures = same(port, sys.argv[3], sys.argv[4], int(sys.argv[5]), "--concurrent" in sys.argv)
    elif what == "stream":
        failures = stream(port, sys.argv[3], int(sys.argv[4]))
    elif what == "echo":
        failures = echo(port, sys.argv[3])
    elif what == "record":
        failures = record(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif what == "connections":
        failures = connections(port, int(sys.argv[3]), int(sys.argv[4]))
    elif what == "expected":
        failures = expected(port, sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
    else:
        raise SystemExit(f"unknown check {what}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
