"""Load: 32 concurrent streaming clients at temperature 0 must each get exactly the answer the same
request gets alone (same text, same token sequence: nothing lost or duplicated), then 200 requests
from 16 clients (streaming and not) must all succeed with the same answers.

usage: test_load.py GLINT   (GLINT_SERVER_FIXTURES names the fixture directory)
"""
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from common import Server, check, finish, fixtures_dir, metric, post_json, sse_events

GLINT = sys.argv[1]
MODEL = os.path.join(fixtures_dir(), "model-random")
MAX_TOKENS = 16


def body(i, stream):
    return {"messages": [{"role": "user", "content": "Client %d asks question %d about %s." % (i, i * 7, "x" * (i % 5))}],
            "max_tokens": MAX_TOKENS, "temperature": 0, "logprobs": True, "stream": stream,
            "stream_options": {"include_usage": True} if stream else None}


def run_plain(base, i):
    status, r = post_json(base, "/v1/chat/completions", body(i, False))
    if status != 200:
        return status, None, None
    ch = r["choices"][0]
    return status, (ch["message"]["reasoning_content"] or "") + ch["message"]["content"], \
        [e["token"] for e in ch["logprobs"]["content"]]


def run_stream(base, i):
    status, events, done = sse_events(base, "/v1/chat/completions", body(i, True))
    if status != 200 or not done:
        return status if status != 200 else 599, None, None
    text, tokens, usage = "", [], None
    for e in events:
        if e.get("usage"):
            usage = e["usage"]
        for ch in e["choices"]:
            d = ch["delta"]
            text += (d.get("reasoning_content") or "") + (d.get("content") or "")
            if ch.get("logprobs"):
                tokens += [x["token"] for x in ch["logprobs"]["content"]]
    if not usage or usage["completion_tokens"] != len(tokens):
        return 598, text, tokens
    return 200, text, tokens


def main():
    srv = Server(GLINT, MODEL, "--reasoning-parser", "glm45", "--max-running-requests", "32", "--chunked-prefill-size", "64")
    try:
        # Each request alone, one after another.
        alone = {}
        for i in range(32):
            status, text, tokens = run_plain(srv.base, i)
            check(status == 200 and len(tokens) == MAX_TOKENS, "alone %d: status %s" % (i, status))
            alone[i] = (text, tokens)
        # 32 streaming clients at once, released together.
        results = [None] * 32
        gate = threading.Barrier(32)

        def client(i):
            gate.wait()
            results[i] = run_stream(srv.base, i)

        t0 = time.time()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - t0
        for i, (status, text, tokens) in enumerate(results):
            check(status == 200, "concurrent %d: status %s" % (i, status))
            check(tokens == alone[i][1], "concurrent %d: token sequence differs from alone\n%s\n%s" % (i, tokens, alone[i][1]))
            check(text == alone[i][0], "concurrent %d: text differs from alone" % i)
        print("32 concurrent streams x %d tokens in %.2f s" % (MAX_TOKENS, elapsed))

        # 200 requests from 16 clients, mixed streaming and plain.
        def job(k):
            i = (k * 13) % 32
            status, text, tokens = (run_stream if k % 2 else run_plain)(srv.base, i)
            return k, i, status, text, tokens

        t0 = time.time()
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(job, range(200)))
        elapsed = time.time() - t0
        bad = [(k, s) for k, i, s, text, tokens in outcomes if s != 200 or (text, tokens) != alone[i]]
        check(not bad, "200 requests from 16 clients: %d wrong: %s" % (len(bad), bad[:10]))
        print("200 requests from 16 clients in %.2f s (%.1f tokens/s)" % (elapsed, 200 * MAX_TOKENS / elapsed))
        check(metric(srv.base, "sglang:num_running_reqs") == 0 and metric(srv.base, "sglang:num_queue_reqs") == 0,
              "engine idle after the load")
        check(metric(srv.base, "sglang:num_aborted_requests_total") == 0, "nothing aborted")
    finally:
        srv.stop()
    retraction()
    finish("server load")


def retraction():
    """A KV pool too small for 4 long answers at once: sequences are retracted and resumed, and
    every answer still equals the same request run alone."""
    srv = Server(GLINT, MODEL, "--max-total-tokens", "1200", "--max-running-requests", "4")
    try:
        def long_body(i, stream):
            return {"prompt": "Story %d:" % i, "max_tokens": 600, "ignore_eos": True, "temperature": 0,
                    "logprobs": 0, "stream": stream}

        alone = []
        for i in range(4):
            status, r = post_json(srv.base, "/v1/completions", long_body(i, False))
            check(status == 200, "alone long %d: %s" % (i, status))
            alone.append(r["choices"][0]["logprobs"]["tokens"] if status == 200 else None)
        results = [None] * 4

        def client(i):
            status, events, done = sse_events(srv.base, "/v1/completions", long_body(i, True))
            results[i] = [t for e in events for ch in e["choices"] if ch.get("logprobs")
                          for t in ch["logprobs"]["tokens"]] if status == 200 and done else status

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(4):
            check(results[i] == alone[i], "retraction run %d: tokens differ from alone (%s)" % (
                i, results[i] if not isinstance(results[i], list) else len(results[i])))
        check(metric(srv.base, "sglang:num_retractions_total") > 0, "the small pool made the engine retract")
        check(metric(srv.base, "sglang:num_aborted_requests_total") == 0, "nothing aborted")
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
