#!/usr/bin/env python3
"""A bounded load test of `mote serve` on the bundled model (loopback only).

  bench/serve_load.py [--clients 64] [--seconds 60] [--threads 2] [--batch-size 16] [--max-tokens 32]

CLIENTS clients each send streamed chat requests one after another for
SECONDS seconds; then the same requests run as one `mote generate` job with
the same threads and batch size. Prints one JSON object: requests, errors
and lost requests (sent but never answered), time to first token (p50,
p99), tokens/s of the server and of the job and their ratio
(serve_vs_generate_ratio), and the CPU an idle server uses.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOTE = os.path.join(ROOT, "build", "mote")
MODEL = os.path.join(ROOT, "models", "tiny-deepseek-v3-mote")


def questions():
    out = []
    for name in sorted(os.listdir(os.path.join(MODEL, "eval"))):
        with open(os.path.join(MODEL, "eval", name), encoding="utf-8") as f:
            out += [p["prompt"] for p in json.load(f)["prompts"]]
    return out


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--idle-seconds", type=float, default=10)
    args = p.parse_args()
    texts = questions()
    work = tempfile.mkdtemp(prefix="mote-serve-load-")
    log = open(os.path.join(work, "serve.log"), "w+")
    common = ["--threads", str(args.threads), "--batch-size", str(args.batch_size), "--log-level", "info"]
    server = subprocess.Popen([MOTE, "serve", "--port", "0", "--max-queue", str(4 * args.clients)] + common,
                              stdout=subprocess.DEVNULL, stderr=log)
    port = None
    for _ in range(1200):
        log.seek(0)
        m = re.search(r"ready: http://127\.0\.0\.1:(\d+)/v1", log.read())
        if m:
            port = int(m.group(1))
            break
        time.sleep(0.05)
    if port is None:
        server.kill()
        raise SystemExit("the server did not start")

    lock = threading.Lock()
    done, errors, ttft, sent = [], [], [], [0]
    next_prompt = [0]
    deadline = time.time() + args.seconds

    def client():
        while time.time() < deadline:
            with lock:
                k = next_prompt[0] % len(texts)
                next_prompt[0] += 1
                sent[0] += 1
            body = {"messages": [{"role": "user", "content": texts[k]}], "max_tokens": args.max_tokens,
                    "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode())
            start = time.time()
            first = None
            usage = None
            try:
                with urllib.request.urlopen(req, timeout=300) as r:
                    for line in r:
                        line = line.decode().strip()
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        chunk = json.loads(line[6:])
                        if chunk.get("usage"):
                            usage = chunk["usage"]
                        for c in chunk["choices"]:
                            if first is None and c.get("delta", {}).get("content"):
                                first = time.time()
                if usage is None:
                    raise RuntimeError("no usage chunk")
                with lock:
                    done.append((k, usage, time.time()))
                    if first is not None:
                        ttft.append(first - start)
            except Exception as exc:  # noqa: BLE001 - counted
                with lock:
                    errors.append(str(exc))

    t0 = time.time()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    served_seconds = max(d[2] for d in done) - t0
    served_tokens = sum(d[1]["prompt_tokens"] + d[1]["completion_tokens"] for d in done)

    # An idle server: CPU over a quiet while.
    time.sleep(1)
    before = cpu_ticks(server.pid)
    time.sleep(args.idle_seconds)
    idle = (cpu_ticks(server.pid) - before) / os.sysconf("SC_CLK_TCK") / args.idle_seconds
    server.terminate()
    server.wait(timeout=60)

    # The same requests as one job.
    prompts = os.path.join(work, "prompts.jsonl")
    with open(prompts, "w", encoding="utf-8") as f:
        for i, (k, _, _) in enumerate(done):
            f.write(json.dumps({"id": str(i), "messages": [{"role": "user", "content": texts[k]}]}, ensure_ascii=False) + "\n")
    job = subprocess.run([MOTE, "generate", "--prompts", prompts, "--max-new-tokens", str(args.max_tokens)] + common,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    m = re.search(r"job: (\d+) prompt and (\d+) generated tokens in ([\d.]+) s", job.stderr)
    job_rate = (int(m.group(1)) + int(m.group(2))) / float(m.group(3))
    serve_rate = served_tokens / served_seconds
    print(json.dumps({
        "serve_clients": args.clients,
        "serve_seconds": round(served_seconds, 1),
        "serve_requests": len(done),
        "serve_errors": len(errors),
        "serve_lost_requests": sent[0] - len(done) - len(errors),
        "serve_ttft_p50_ms": round(1000 * percentile(ttft, 0.5), 1),
        "serve_ttft_p99_ms": round(1000 * percentile(ttft, 0.99), 1),
        "serve_tokens_per_s": round(serve_rate, 1),
        "serve_generate_tokens_per_s": round(job_rate, 1),
        "serve_vs_generate_ratio": round(serve_rate / job_rate, 3),
        "serve_idle_cpu_fraction": round(idle, 4),
    }))
    if errors:
        print(json.dumps({"serve_first_errors": errors[:3]}))


if __name__ == "__main__":
    main()
