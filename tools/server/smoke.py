#!/usr/bin/env python3
"""Smoke test of a running `glint serve` with the demo model (standard library only, for machines
without the openai SDK, e.g. the GPU machine): a lookup tool call (plain and streamed), and 8
concurrent greedy streams that must equal the same requests run alone. Exit status 1 on a failure.

usage: smoke.py PORT
"""
import http.client
import json
import sys
import threading
import time

PORT = int(sys.argv[1])
LOOKUP = {"type": "function", "function": {"name": "lookup", "description": "Look up a word in a dictionary.",
          "parameters": {"type": "object", "properties": {"word": {"type": "string"},
                                                          "max_senses": {"type": "integer"}}, "required": ["word"]}}}
failures = []


def post(body, stream=False):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=300)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    if not stream:
        return json.loads(r.read())
    events = []
    for block in r.read().decode().split("\n\n"):
        if block.startswith("data: ") and block != "data: [DONE]":
            events.append(json.loads(block[6:]))
    return events


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


ask = {"messages": [{"role": "user", "content": "Look up zebra."}], "tools": [LOOKUP], "temperature": 0,
       "max_tokens": 100}
r = post(ask)
calls = r["choices"][0]["message"]["tool_calls"] or []
check(r["choices"][0]["finish_reason"] == "tool_calls" and calls and calls[0]["function"]["name"] == "lookup" and
      json.loads(calls[0]["function"]["arguments"]).get("word") == "zebra", "tool call: %s" % calls)
events = post(dict(ask, stream=True), stream=True)
args = "".join(tc["function"]["arguments"] or "" for e in events for ch in e["choices"]
               for tc in (ch["delta"].get("tool_calls") or []))
check(calls and args == calls[0]["function"]["arguments"], "streamed arguments %s" % args)

words = ["apple", "river", "stone", "light", "house", "bread", "cloud", "horse"]
def body(w, stream=False):
    return {"messages": [{"role": "user", "content": "What does the word %s mean?" % w}], "temperature": 0,
            "max_tokens": 64, "ignore_eos": True, "stream": stream}
alone = {}
t0 = time.time()
for w in words:
    m = post(body(w))["choices"][0]["message"]
    alone[w] = (m["reasoning_content"] or "") + "|" + m["content"]
t_alone = time.time() - t0
got = {}
def run(w):
    text = {"r": "", "c": ""}
    for e in post(body(w, True), stream=True):
        for ch in e["choices"]:
            text["r"] += ch["delta"].get("reasoning_content") or ""
            text["c"] += ch["delta"].get("content") or ""
    got[w] = text["r"] + "|" + text["c"]
t0 = time.time()
threads = [threading.Thread(target=run, args=(w,)) for w in words]
for t in threads:
    t.start()
for t in threads:
    t.join()
t_together = time.time() - t0
for w in words:
    check(got[w] == alone[w], "concurrent == alone for %s" % w)
print("8 x 64 tokens: %.2f s one after another, %.2f s concurrently" % (t_alone, t_together))
sys.exit(1 if failures else 0)
