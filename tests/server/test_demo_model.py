"""glint serve with the trained demo model (models/demo, GLM-5 layout, taught to call a `lookup`
tool): a real tool-call round trip through the openai SDK, streamed and not, reasoning on and off,
and 8 concurrent streams identical to the same requests alone. Then MTP speculative decoding
(--speculative-algorithm EAGLE, as in the sglang launch line): the same answers as without it, greedy
and seeded sampling, alone, concurrent and in a small pool where requests wait for pages, with drafts
accepted (from /metrics); and the same with the model split over 2 tensor-parallel ranks (--tp 2).
Retraction with speculation: tests/demo/test_spec_engine.c.

usage: test_demo_model.py GLINT REPO_ROOT
"""
import json
import os
import sys
import threading

import openai

from common import Server, check, finish, metrics, run_jobs

GLINT, ROOT = sys.argv[1], sys.argv[2]
MODEL = os.path.join(ROOT, "models", "demo")
LOOKUP = {"type": "function", "function": {
    "name": "lookup", "description": "Look up a word in a dictionary and return its entry.",
    "parameters": {"type": "object", "properties": {
        "word": {"type": "string", "description": "the word to look up"},
        "source": {"type": "string", "enum": ["gcide", "jargon", "devil"]},
        "max_senses": {"type": "integer", "description": "how many senses to return"}},
        "required": ["word"]}}}


def main():
    srv = Server(GLINT, MODEL, "--reasoning-parser", "glm45", "--tool-call-parser", "glm47", "--served-model-name", "demo")
    try:
        client = openai.OpenAI(base_url=srv.base + "/v1", api_key="unused", max_retries=0)
        ask = [{"role": "user", "content": "Look up zebra."}]
        r = client.chat.completions.create(model="demo", messages=ask, tools=[LOOKUP], temperature=0, max_tokens=100)
        ch = r.choices[0]
        calls = ch.message.tool_calls or []
        check(ch.finish_reason == "tool_calls" and len(calls) == 1, "the demo model calls the tool: %s" % ch)
        args = json.loads(calls[0].function.arguments) if calls else {}
        check(calls and calls[0].function.name == "lookup" and args.get("word") == "zebra", "lookup(word=zebra): %s" % args)
        check(all(not isinstance(v, str) or k != "max_senses" for k, v in args.items()), "max_senses typed as integer")
        chunks = list(client.chat.completions.create(model="demo", messages=ask, tools=[LOOKUP], temperature=0,
                                                     max_tokens=100, stream=True))
        deltas = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
        check(deltas and deltas[0].function.name == "lookup" and
              "".join(d.function.arguments or "" for d in deltas) == (calls[0].function.arguments if calls else None),
              "streamed call == non-stream call")
        reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
        check(reasoning == (ch.message.reasoning_content or ""), "streamed reasoning == non-stream reasoning")
        # Round trip: the call and the tool's answer go back; the model answers from the result.
        history = ask + [{"role": "assistant", "content": "", "tool_calls": [
            {"id": calls[0].id if calls else "call_0", "type": "function",
             "function": {"name": "lookup", "arguments": calls[0].function.arguments if calls else "{}"}}]},
            {"role": "tool", "tool_call_id": calls[0].id if calls else "call_0",
             "content": "zebra: A striped African wild horse."}]
        final = client.chat.completions.create(model="demo", messages=history, tools=[LOOKUP], temperature=0, max_tokens=100)
        check(final.choices[0].finish_reason == "stop" and not final.choices[0].message.tool_calls and
              "zebra" in final.choices[0].message.content, "answer from the tool result: %s" % final.choices[0].message)
        # tool_choice: a question the model would answer in prose must still produce a call when the
        # call is required or named (thinking on and off); "none" keeps it prose.
        fortune = [{"role": "user", "content": "Tell me a fortune."}]
        auto = client.chat.completions.create(model="demo", messages=fortune, tools=[LOOKUP], temperature=0, max_tokens=60)
        check(not auto.choices[0].message.tool_calls, "tool_choice auto: a fortune needs no call: %s" % auto.choices[0])
        for kwargs in ({}, {"chat_template_kwargs": {"enable_thinking": False}}):
            for choice in ("required", {"type": "function", "function": {"name": "lookup"}}):
                forced = client.chat.completions.create(model="demo", messages=fortune, tools=[LOOKUP], temperature=0,
                                                        max_tokens=60, tool_choice=choice, extra_body=kwargs)
                fc = forced.choices[0]
                check(fc.finish_reason == "tool_calls" and fc.message.tool_calls and
                      fc.message.tool_calls[0].function.name == "lookup",
                      "tool_choice %s %s forces a lookup call: %s" % (choice if isinstance(choice, str) else "named",
                                                                     kwargs, fc))
        none = client.chat.completions.create(model="demo", messages=ask, tools=[LOOKUP], temperature=0, max_tokens=60,
                                              tool_choice="none")
        check(not none.choices[0].message.tool_calls, "tool_choice none: no call: %s" % none.choices[0])
        # Reasoning on / off on a plain question.
        q = [{"role": "user", "content": "What does the word apple mean?"}]
        on = client.chat.completions.create(model="demo", messages=q, temperature=0, max_tokens=80)
        off = client.chat.completions.create(model="demo", messages=q, temperature=0, max_tokens=80,
                                             extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        check(on.choices[0].message.reasoning_content and on.choices[0].message.content and
              "</think>" not in on.choices[0].message.content, "thinking on: reasoning and answer split")
        check(off.choices[0].message.reasoning_content is None and off.choices[0].message.content, "thinking off")
        # 8 concurrent streams == alone.
        questions = ["What does the word %s mean?" % w for w in
                     ("apple", "river", "stone", "light", "house", "bread", "cloud", "horse")]
        alone = [client.chat.completions.create(model="demo", messages=[{"role": "user", "content": x}], temperature=0,
                                                max_tokens=60).choices[0].message for x in questions]
        got = [None] * len(questions)

        def run(i):
            text = {"r": "", "c": ""}
            for c in client.chat.completions.create(model="demo", messages=[{"role": "user", "content": questions[i]}],
                                                    temperature=0, max_tokens=60, stream=True):
                if c.choices:
                    text["r"] += getattr(c.choices[0].delta, "reasoning_content", None) or ""
                    text["c"] += c.choices[0].delta.content or ""
            got[i] = text

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(questions))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, m in enumerate(alone):
            check(got[i] == {"r": m.reasoning_content or "", "c": m.content}, "concurrent %d == alone" % i)
        plain = answers(client, questions)
        forced_plain = client.chat.completions.create(model="demo", messages=fortune, tools=[LOOKUP], temperature=0,
                                                      max_tokens=60, tool_choice="required").choices[0].message
    finally:
        srv.stop()
    spec_flags = ("--speculative-algorithm", "EAGLE", "--speculative-num-steps", "3", "--speculative-eagle-topk", "1",
                  "--speculative-num-draft-tokens", "4")
    # the last: the model split over 2 tensor-parallel ranks (CPU backend instances), same answers
    for extra in ((), ("--max-total-tokens", "320", "--page-size", "16"), ("--tp", "2")):
        srv = Server(GLINT, MODEL, "--reasoning-parser", "glm45", "--tool-call-parser", "glm47", "--served-model-name",
                     "demo", *spec_flags, *extra)
        try:
            client = openai.OpenAI(base_url=srv.base + "/v1", api_key="unused", max_retries=0)
            what = "speculative%s" % ("" if not extra else " (2 ranks)" if "--tp" in extra else " (small pool)")
            check("speculative decoding MTP" in srv.read_log(), "%s: announced at start" % what)
            check("--tp" not in extra or "tensor parallel over 2 ranks" in srv.read_log(), "%s: ranks announced" % what)
            got = answers(client, questions, concurrent=True)
            for key in plain:
                check(got[key] == plain[key], "%s: %s identical to plain decoding" % (what, key))
            if not extra or "--tp" in extra:
                alone_spec = answers(client, questions)
                check(alone_spec == plain, "%s: alone identical to plain decoding" % what)
                forced = client.chat.completions.create(model="demo", messages=fortune, tools=[LOOKUP], temperature=0,
                                                        max_tokens=60, tool_choice="required").choices[0].message
                check(forced.tool_calls and forced_plain.tool_calls and
                      forced.tool_calls[0].function.arguments == forced_plain.tool_calls[0].function.arguments,
                      "%s: forced tool call identical" % what)
            mt = metrics(srv.base)
            drafted, accepted = mt.get("glint:spec_draft_tokens_total", 0), mt.get("glint:spec_accepted_tokens_total", 0)
            check(drafted > 50 and 0 < accepted <= drafted, "%s: drafts verified %d, accepted %d" % (what, drafted, accepted))
            print("  %s: %d of %d drafts accepted (%.0f%%)" % (what, accepted, drafted, 100.0 * accepted / max(drafted, 1)))
        finally:
            srv.stop()
    finish("server with the demo model")


def answers(client, questions, concurrent=False):
    """Greedy and seeded-sampling answers (reasoning + content) per question, alone or all at once."""
    jobs = [("greedy %d" % i, q, {"temperature": 0}) for i, q in enumerate(questions)]
    jobs += [("sampled %d" % i, q, {"temperature": 0.9, "top_p": 0.95, "seed": 1000 + i})
             for i, q in enumerate(questions[:4])]
    out = {}

    def run(key, question, kw):
        m = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": question}],
                                           max_tokens=60, **kw).choices[0].message
        out[key] = (m.reasoning_content or "", m.content or "")

    run_jobs(jobs, run, concurrent)
    return out


if __name__ == "__main__":
    main()
