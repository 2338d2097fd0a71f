#!/usr/bin/env python3
"""A bounded load test of `mote serve` on the bundled model (loopback only).

  bench/serve_load.py [--clients 64] [--seconds 60] [--rounds 3] [--threads 2] [--batch-size 16] [--max-tokens 32]

In each round CLIENTS clients send streamed chat requests one after another
for SECONDS seconds, each on a connection it keeps, as the OpenAI clients'
connection pools do (--close: a new connection per request); then the same requests run as one `mote generate` job
with the same threads and batch size while the server idles. Prints one
JSON object: requests, errors and lost requests (sent but never answered),
time to first token (p50, p99), tokens/s of the server and of the job and
their ratio (serve_vs_generate_ratio, the median over rounds), and the CPU
an idle server uses. The clients run on the same cores as the server: the
cores they take (serve_client_cpu_cores) are missing from the server's, so
the output also compares tokens per CPU-second of the server process with
those of the job process (serve_vs_generate_per_cpu_ratio; the job's CPU
includes loading and encoding its prompts, a few percent).
"""
import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOTE = os.path.join(ROOT, "build", "mote")
MODEL = os.path.join(ROOT, "models", "tiny-deepseek-v3-mote")


CONTENT = re.compile(rb'"content":"[^"]')  # an event that carries text


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
    p.add_argument("--rounds", type=int, default=3, help="rounds of load, each followed by the same requests as a job")
    p.add_argument("--stream-interval", type=int, default=None, help="the server's --stream-interval (ms)")
    p.add_argument("--unstreamed", action="store_true",
                   help="unstreamed requests, as evaluation harnesses send them (no time to first token then)")
    p.add_argument("--client-nice", type=int, default=0,
                   help="niceness of the load generator (the server keeps its own): 19 lets the clients take the "
                        "cores only when the server leaves them, as clients on other machines would")
    p.add_argument("--close", action="store_true",
                   help="one connection per request (default: each client keeps its connection, as the OpenAI "
                        "clients' connection pools do)")
    args = p.parse_args()
    texts = questions()
    work = tempfile.mkdtemp(prefix="mote-serve-load-")
    log = open(os.path.join(work, "serve.log"), "w+")
    common = ["--threads", str(args.threads), "--batch-size", str(args.batch_size), "--log-level", "info"]
    interval = [] if args.stream_interval is None else ["--stream-interval", str(args.stream_interval)]
    server = subprocess.Popen([MOTE, "serve", "--port", "0", "--max-queue", str(4 * args.clients)] + interval + common,
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
    if args.client_nice:
        # This process only (the server started before); the jobs below inherit it, which changes nothing
        # for a process that runs alone.
        os.nice(args.client_nice)

    def load_round():
        """CLIENTS clients for SECONDS seconds: (completed (prompt, usage, end), errors, ttft, sent, seconds).
        The clients are asyncio tasks on raw HTTP/1.1 connections: the load generator shares the server's cores,
        so it must cost little."""
        done, errors, ttft, sent = [], [], [], [0]
        next_prompt = [0]

        async def one(k, conn):
            """One request on the client's connection conn = [reader, writer] (opened when None), kept open for
            the next request as the OpenAI clients' connection pools do (--close: one connection per request)."""
            request = {"messages": [{"role": "user", "content": texts[k]}], "max_tokens": args.max_tokens,
                       "temperature": 0}
            if not args.unstreamed:
                request.update({"stream": True, "stream_options": {"include_usage": True}})
            body = json.dumps(request).encode()
            message = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                       (b"Connection: close\r\n" if args.close else b"") +
                       b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" +
                       body)
            for _ in range(2):
                reused = conn[0] is not None
                if not reused:
                    conn[:] = await asyncio.open_connection("127.0.0.1", port)
                reader, writer = conn
                start = time.time()
                writer.write(message)
                data, first, complete = await response(reader)
                if data or not reused:
                    break
                # The server closed the idle connection before this request: once more on a new one.
                writer.close()
                conn[:] = [None, None]
            head = data.split(b"\r\n\r\n", 1)[0].lower()
            if args.close or not complete or b"connection: close" in head:
                conn[1].close()
                conn[:] = [None, None]
            if not data.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(data.split(b"\r\n", 1)[0].decode(errors="replace") or "no response")
            usage = None
            if args.unstreamed:
                usage = json.loads(data.split(b"\r\n\r\n", 1)[1])["usage"]
            else:
                for line in data.split(b"\n"):
                    if line.startswith(b"data: {") and b'"usage"' in line:
                        usage = json.loads(line[6:])["usage"]
            if not complete or usage is None:
                raise RuntimeError("the response ended early" + ("" if args.unstreamed else " (no [DONE] and usage)"))
            done.append((k, usage, time.time()))
            if first is not None:
                ttft.append(first - start)

        async def response(reader):
            """(bytes, time of the first text, complete): whole reads, not lines, since the clients share the
            server's cores and each wakeup of theirs is CPU the server does not get."""
            data, first, end = b"", None, None  # end: where an unstreamed body ends
            while True:
                chunk = await reader.read(1 << 16)
                if not chunk:
                    return data, first, False
                if first is None and not args.unstreamed and CONTENT.search(chunk):
                    first = time.time()
                data += chunk
                if args.unstreamed:
                    head = data.find(b"\r\n\r\n")
                    if end is None and head >= 0:
                        m = re.search(rb"\r\ncontent-length: *(\d+)", data[:head], re.I)
                        end = head + 4 + int(m.group(1)) if m else -1
                    if end is not None and 0 <= end <= len(data):
                        return data, first, True
                # Chunked: the last chunk (size 0) ends the response, after [DONE].
                elif data.endswith(b"\r\n0\r\n\r\n") and b"data: [DONE]" in data:
                    return data, first, True

        async def client(deadline):
            conn = [None, None]
            while time.time() < deadline:
                k = next_prompt[0] % len(texts)
                next_prompt[0] += 1
                sent[0] += 1
                try:
                    await one(k, conn)
                except Exception as exc:  # noqa: BLE001 - counted
                    errors.append(str(exc))
                    if conn[1] is not None:
                        conn[1].close()
                    conn[:] = [None, None]
            if conn[1] is not None:
                conn[1].close()

        async def all_clients():
            deadline = time.time() + args.seconds
            await asyncio.gather(*(client(deadline) for _ in range(args.clients)))

        t0 = time.time()
        asyncio.run(all_clients())
        return done, errors, ttft, sent[0], max(d[2] for d in done) - t0

    def own_cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def children_cpu():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def job_rate(done, n):
        """The same requests as one generate job: tokens/s of its run."""
        prompts = os.path.join(work, f"prompts-{n}.jsonl")
        with open(prompts, "w", encoding="utf-8") as f:
            for i, (k, _, _) in enumerate(done):
                line = {"id": str(i), "messages": [{"role": "user", "content": texts[k]}]}
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        job = subprocess.run([MOTE, "generate", "--prompts", prompts, "--max-new-tokens", str(args.max_tokens)] + common,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
        m = re.search(r"job: (\d+) prompt and (\d+) generated tokens in ([\d.]+) s", job.stderr)
        return int(m.group(1)) + int(m.group(2)), float(m.group(3))

    # Rounds of load and the same requests as a job, interleaved (the
    # server idles while the job runs): the ratio of each round, medians.
    ratios, serve_rates, job_rates, all_ttft, client_cores, cpu_ratios = [], [], [], [], [], []
    requests = errors = lost = 0
    seconds = 0.0
    for n in range(args.rounds):
        client0, server0 = own_cpu(), cpu_ticks(server.pid)
        done, errs, ttft, sent, took = load_round()
        client_cpu = own_cpu() - client0
        server_cpu = (cpu_ticks(server.pid) - server0) / os.sysconf("SC_CLK_TCK")
        tokens = sum(d[1]["prompt_tokens"] + d[1]["completion_tokens"] for d in done)
        rate = tokens / took
        job0 = children_cpu()
        job_tokens, job_seconds = job_rate(done, n)
        job = job_tokens / job_seconds
        # Tokens per CPU-second: the server's (HTTP, JSON and tokenizing included) against the whole job
        # process's (its loading and encoding included, which favours the server a little).
        cpu_ratios.append((tokens / server_cpu) / (job_tokens / (children_cpu() - job0)))
        client_cores.append(client_cpu / took)
        ratios.append(rate / job)
        serve_rates.append(rate)
        job_rates.append(job)
        all_ttft += ttft
        requests += len(done)
        errors += len(errs)
        lost += sent - len(done) - len(errs)
        seconds += took
        if errs:
            print(json.dumps({"serve_first_errors": errs[:3]}), file=sys.stderr)

    # An idle server: CPU over a quiet while.
    time.sleep(1)
    before = cpu_ticks(server.pid)
    time.sleep(args.idle_seconds)
    idle = (cpu_ticks(server.pid) - before) / os.sysconf("SC_CLK_TCK") / args.idle_seconds
    server.terminate()
    server.wait(timeout=60)
    print(json.dumps({
        "serve_clients": args.clients,
        "serve_rounds": args.rounds,
        "serve_seconds": round(seconds, 1),
        "serve_requests": requests,
        "serve_errors": errors,
        "serve_lost_requests": lost,
        "serve_exit_status": server.returncode,
        "serve_ttft_p50_ms": round(1000 * percentile(all_ttft, 0.5), 1) if all_ttft else None,
        "serve_ttft_p99_ms": round(1000 * percentile(all_ttft, 0.99), 1) if all_ttft else None,
        "serve_tokens_per_s": round(statistics.median(serve_rates), 1),
        "serve_generate_tokens_per_s": round(statistics.median(job_rates), 1),
        "serve_vs_generate_ratio": round(statistics.median(ratios), 3),
        "serve_vs_generate_ratios": [round(r, 3) for r in ratios],
        "serve_client_cpu_cores": round(statistics.median(client_cores), 3),
        "serve_vs_generate_per_cpu_ratio": round(statistics.median(cpu_ratios), 3),
        "serve_idle_cpu_fraction": round(idle, 4),
    }))


if __name__ == "__main__":
    main()
