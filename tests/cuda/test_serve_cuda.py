#!/usr/bin/env python3
"""glint serve --backend cuda with the demo model (standard library only: the GPU machine has no
network for the openai SDK): chat completions with reasoning and a tool call, 8 concurrent requests
identical to the same requests alone (batched decode on the GPU), and MTP speculative decoding
(--speculative-algorithm EAGLE) giving the same answers, greedy and seeded sampling, with drafts
accepted (/metrics).

usage: test_serve_cuda.py GLINT REPO_ROOT   (GLINT_SERVE_EXTRA: more serve flags, e.g. "--tp 2")
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
os.environ.setdefault("GLINT_SERVER_FIXTURES", tempfile.mkdtemp(prefix="glint-serve-cuda-"))
from common import Server, check, finish, metrics, post_json, run_jobs  # noqa: E402

GLINT, ROOT = sys.argv[1], sys.argv[2]
MODEL = os.path.join(ROOT, "models", "demo")
LOOKUP = {"type": "function", "function": {
    "name": "lookup", "description": "Look up a word in a dictionary and return its entry.",
    "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}}
QUESTIONS = ["What does the word %s mean?" % w for w in ("apple", "river", "stone", "light", "house", "bread", "cloud",
                                                         "horse")]


def chat(base, question, **kw):
    status, body = post_json(base, "/v1/chat/completions", dict(
        model="demo", messages=[{"role": "user", "content": question}], max_tokens=60, **kw))
    if not check(status == 200, "HTTP %s: %s" % (status, body)):
        return None
    m = body["choices"][0]["message"]
    return (m.get("reasoning_content") or "", m.get("content") or "",
            json.dumps(m.get("tool_calls") and [c["function"] for c in m["tool_calls"]]))


def answers(base, concurrent):
    jobs = [("greedy %d" % i, q, {"temperature": 0}) for i, q in enumerate(QUESTIONS)]
    jobs += [("sampled %d" % i, q, {"temperature": 0.9, "top_p": 0.95, "seed": 1000 + i})
             for i, q in enumerate(QUESTIONS[:4])]
    jobs.append(("tool call", "Look up zebra.", {"temperature": 0, "tools": [LOOKUP]}))
    out = {}

    def run(key, q, kw):
        out[key] = chat(base, q, **kw)

    run_jobs(jobs, run, concurrent)
    return out


def main():
    flags = ("--backend", "cuda", "--reasoning-parser", "glm45", "--tool-call-parser", "glm47", "--served-model-name",
             "demo", "--mem-fraction-static", "0.5") + tuple(os.environ.get("GLINT_SERVE_EXTRA", "").split())
    srv = Server(GLINT, MODEL, *flags)
    try:
        check("GPU memory" in srv.read_log(), "the KV pool plan is reported")
        if "--tp" in flags:
            ranks = flags[flags.index("--tp") + 1]
            check("tensor parallel over %s ranks" % ranks in srv.read_log(), "the ranks are announced")
        alone = answers(srv.base, False)
        check(alone["tool call"] and "zebra" in alone["tool call"][2], "the demo model calls lookup: %s" % (alone["tool call"],))
        check(all(alone[k] and alone[k][0] and alone[k][1] for k in alone if k.startswith("greedy")),
              "reasoning and answers")
        together = answers(srv.base, True)
        for k in alone:
            check(together[k] == alone[k], "cuda: %s concurrent == alone" % k)
    finally:
        srv.stop()
    srv = Server(GLINT, MODEL, *flags, "--speculative-algorithm", "EAGLE", "--speculative-num-steps", "3")
    try:
        spec_alone, spec_together = answers(srv.base, False), answers(srv.base, True)
        for k in alone:
            check(spec_alone[k] == alone[k], "cuda speculative: %s alone == plain decoding" % k)
            check(spec_together[k] == alone[k], "cuda speculative: %s concurrent == plain decoding" % k)
        mt = metrics(srv.base)
        drafted, accepted = mt.get("glint:spec_draft_tokens_total", 0), mt.get("glint:spec_accepted_tokens_total", 0)
        check(drafted > 50 and 0 < accepted <= drafted, "drafts %d, accepted %d" % (drafted, accepted))
        print("cuda speculative: %d of %d drafts accepted" % (accepted, drafted))
    finally:
        srv.stop()
    finish("serve on CUDA")


if __name__ == "__main__":
    main()
