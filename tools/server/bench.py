#!/usr/bin/env python3
"""Server overhead and throughput benchmark (standard library only).

1. Added latency per token: `glint generate` decode time per token vs, on one /v1/completions
   stream of the same prompt ids (temperature 0, ignore_eos) read by curl (a light client, so the
   client does not compete for the cores), the engine's inter-token time from /metrics and the
   time per token curl observes (after its first byte).
2. Throughput at 1, 4 and 16 concurrent streams (generated tokens per second of wall time).

usage: bench.py GLINT MODEL_DIR [--tokens 256] [--repeat 3] [--threads N (default: cores - 1, as serve)]
                [--backend cpu|cuda]
                [--speculative]   (serve with --speculative-algorithm EAGLE: the MTP layer drafts)
"""
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

PROMPT = [6002, 6004, 6007, 100, 200, 300, 400, 6008]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


THREADS = []


def generate_per_token(glint, model, n):
    r = subprocess.run([glint, "generate", "-m", model, "--ids", " ".join(map(str, PROMPT)), "-n", str(n),
                        "--temperature", "0"] + THREADS, capture_output=True, check=True)
    m = re.search(rb"generated: (\d+) tokens in ([0-9.]+) s", r.stderr)
    tokens, seconds = int(m.group(1)), float(m.group(2))
    return seconds / max(tokens - 1, 1), tokens


def stream(port, n, times):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"prompt": PROMPT, "max_tokens": n, "temperature": 0, "ignore_eos": True, "stream": True}
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    buf = b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            if event != b"data: [DONE]" and b'"text":"' in event and b'"finish_reason":null' in event:
                times.append(time.perf_counter())
    conn.close()


def itl_metrics(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    values = dict(line.split() for line in text.splitlines() if line.startswith("sglang:inter_token_latency_seconds_")
                  and "{" not in line)
    return float(values["sglang:inter_token_latency_seconds_sum"]), float(values["sglang:inter_token_latency_seconds_count"])


def main():
    glint, model = sys.argv[1], sys.argv[2]
    with open(os.path.join(model, "config.json")) as f:  # prompt ids valid for any vocabulary
        vocab = json.load(f)["vocab_size"]
    PROMPT[:] = [i % vocab for i in PROMPT]
    n = int(sys.argv[sys.argv.index("--tokens") + 1]) if "--tokens" in sys.argv else 256
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 3
    for flag in ("--threads", "--backend"):  # passed to both glint generate and glint serve
        if flag in sys.argv:
            THREADS.extend([flag, sys.argv[sys.argv.index(flag) + 1]])
    if "--threads" not in sys.argv:  # serve's default on the CPU: a core left for HTTP; compare alike
        THREADS.extend(["--threads", str(max(1, (os.cpu_count() or 2) - 1))])
    gen = min(generate_per_token(glint, model, n)[0] for _ in range(repeat))
    port = free_port()
    spec = ["--speculative-algorithm", "EAGLE"] if "--speculative" in sys.argv else []
    proc = subprocess.Popen([glint, "serve", "-m", model, "--port", str(port), "--max-running-requests", "16"] + THREADS +
                            spec, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        best = engine = None
        body = json.dumps({"prompt": PROMPT, "max_tokens": n, "temperature": 0, "ignore_eos": True, "stream": True})
        for _ in range(repeat):
            s0, c0 = itl_metrics(port)
            r = subprocess.run(["curl", "-sN", "-o", "/dev/null", "-w", "%{time_starttransfer} %{time_total}",
                                "http://127.0.0.1:%d/v1/completions" % port, "-H", "Content-Type: application/json",
                                "-d", body], capture_output=True, check=True)
            s1, c1 = itl_metrics(port)
            first, total = map(float, r.stdout.split())
            per = (total - first) / (n - 1)
            best = per if best is None else min(best, per)
            eng = (s1 - s0) / (c1 - c0)
            engine = eng if engine is None else min(engine, eng)
        print("decode per token: glint generate %.1f us; glint serve: engine %.1f us (%+.1f%%), "
              "seen by curl %.1f us (%+.1f%%)"
              % (gen * 1e6, engine * 1e6, (engine / gen - 1) * 100, best * 1e6, (best / gen - 1) * 100))
        for streams in (1, 4, 16):
            all_times = [[] for _ in range(streams)]
            threads = [threading.Thread(target=stream, args=(port, n, all_times[i])) for i in range(streams)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            total = sum(len(t) for t in all_times)
            print("%2d concurrent streams: %d tokens in %.2f s = %.0f tokens/s" % (streams, total, wall, total / wall))
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
