"""End-to-end API tests of glint serve with real clients: the openai Python SDK and curl.

usage: test_api.py GLINT   (GLINT_SERVER_FIXTURES names the directory setup_fixtures.py filled)
"""
import json
import os
import subprocess
import sys

import openai

from common import Server, check, finish, fixtures_dir, metric, post_json, request

GLINT = sys.argv[1]
FIX = fixtures_dir()
RANDOM = os.path.join(FIX, "model-random")
SCRIPT = os.path.join(FIX, "model-script")
LAUNCH = ["--reasoning-parser", "glm45", "--tool-call-parser", "glm47", "--served-model-name", "glm-test"]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
USER = [{"role": "user", "content": "Tell me something."}]


def greedy_ids(prompt_ids, n):
    """What `glint generate` produces for these ids at temperature 0 (the engine's reference)."""
    r = subprocess.run([GLINT, "generate", "-m", RANDOM, "--ids", " ".join(map(str, prompt_ids)), "-n", str(n),
                        "--temperature", "0"], capture_output=True, check=True)
    return [int(x) for x in r.stdout.split()]


def test_random_model(client, srv):
    models = client.models.list()
    check([m.id for m in models.data] == ["glm-test"], "models list: %s" % models)

    # Non-stream, thinking on: everything is reasoning (no </think> from a random model).
    r = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=12, temperature=0)
    msg = r.choices[0].message
    check(r.object == "chat.completion" and r.id.startswith("chatcmpl-"), "chat id/object")
    check(r.choices[0].finish_reason == "length", "finish length: %s" % r.choices[0].finish_reason)
    check(r.usage.completion_tokens == 12 and r.usage.total_tokens == r.usage.prompt_tokens + 12, "usage %s" % r.usage)
    check(msg.content == "" and msg.reasoning_content, "thinking on: reasoning only (%r, %r)" % (msg.content, msg.reasoning_content))
    status, tok = post_json(srv.base, "/v1/tokenize", {"messages": USER})
    check(status == 200 and tok["count"] == r.usage.prompt_tokens, "prompt_tokens equals /v1/tokenize count")

    # The server's greedy tokens equal glint generate's on the same prompt ids.
    reference = greedy_ids(tok["tokens"], 12)
    status, detok = post_json(srv.base, "/v1/detokenize", {"tokens": reference})
    check(detok["text"] == msg.reasoning_content, "server output == glint generate output (%r vs %r)" % (detok["text"], msg.reasoning_content))

    # Stream: same text, deltas in order, role chunk first, finish chunk, usage chunk, [DONE].
    stream = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=12, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    check(chunks[0].choices[0].delta.role == "assistant", "first chunk carries the role")
    text = "".join((getattr(c.choices[0].delta, "reasoning_content", None) or "") for c in chunks if c.choices)
    check(text == msg.reasoning_content, "stream reasoning == non-stream (%r vs %r)" % (text, msg.reasoning_content))
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    check(len(finals) == 1 and finals[0].choices[0].finish_reason == "length", "one finish chunk")
    check(chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12 and
          chunks[-1].usage.prompt_tokens == r.usage.prompt_tokens, "usage chunk last: %s" % chunks[-1])

    # Thinking off: plain content, no reasoning.
    off = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=8, temperature=0,
                                         extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    check(off.choices[0].message.reasoning_content is None and off.choices[0].message.content,
          "thinking off: content only (%r)" % off.choices[0].message)
    # separate_reasoning false: the reasoning text stays in content.
    joined = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=12, temperature=0,
                                            extra_body={"separate_reasoning": False})
    check(joined.choices[0].message.content == msg.reasoning_content and joined.choices[0].message.reasoning_content is None,
          "separate_reasoning=false keeps reasoning in content")

    # Stop string: cut where it first appears, finish "stop", matched_stop is the string.
    base = off.choices[0].message.content
    stop = base[len(base) // 2: len(base) // 2 + 3]
    if check(len(stop) == 3, "output long enough for a stop string: %r" % base):
        s = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=8, temperature=0, stop=[stop],
                                           extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        check(s.choices[0].message.content == base[:base.index(stop)], "stop string cut: %r" % s.choices[0].message.content)
        check(s.choices[0].finish_reason == "stop", "stop string finish reason")
        check(s.model_extra.get("choices") is None and s.choices[0].model_extra.get("matched_stop") == stop,
              "matched_stop is the stop string: %s" % s.choices[0].model_extra)
        st = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=8, temperature=0, stop=stop,
                                            stream=True, extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        streamed = "".join(c.choices[0].delta.content or "" for c in st if c.choices)
        check(streamed == base[:base.index(stop)], "streamed stop string cut: %r" % streamed)
        check(metric(srv.base, "sglang:num_aborted_requests_total") == 0, "a stop string is not an abort")

    # stop_token_ids through /v1/completions on token ids.
    ids = tok["tokens"]
    ref = greedy_ids(ids, 10)
    c = client.completions.create(model="glm-test", prompt=ids, max_tokens=10, temperature=0)
    status, d = post_json(srv.base, "/v1/detokenize", {"tokens": ref})
    check(c.choices[0].text == d["text"], "completions on ids == glint generate")
    if ref[3] not in ref[:3]:
        c = client.completions.create(model="glm-test", prompt=ids, max_tokens=10, temperature=0,
                                      extra_body={"stop_token_ids": [ref[3]]})
        check(c.usage.completion_tokens == 4 and c.choices[0].finish_reason == "stop" and
              c.choices[0].model_extra.get("matched_stop") == ref[3], "stop_token_ids: %s" % c)
    # A long answer: the sequence's cache grows several times on the way (256 -> 512 -> ...).
    ref = greedy_ids(ids, 700)
    while ref and ref[-1] in (6000, 6007, 6009):
        ref = ref[:-1]
    c = client.completions.create(model="glm-test", prompt=ids, max_tokens=700, temperature=0,
                                  extra_body={"skip_special_tokens": False})
    status, d = post_json(srv.base, "/v1/detokenize", {"tokens": ref, "skip_special_tokens": False})
    check(c.choices[0].text == d["text"] and c.usage.completion_tokens >= len(ref), "700-token answer == glint generate")
    c = client.completions.create(model="glm-test", prompt="Hello", max_tokens=5, temperature=0, echo=True, logprobs=2)
    check(c.choices[0].text.startswith("Hello") and len(c.choices[0].logprobs.tokens) == 5 and
          all(len(t) == 2 for t in c.choices[0].logprobs.top_logprobs), "completions echo + logprobs: %s" % c)

    streamed = "".join(x.choices[0].text for x in client.completions.create(
        model="glm-test", prompt="Hello", max_tokens=5, temperature=0, echo=True, stream=True))
    check(streamed == c.choices[0].text, "streamed echo completion: %r" % streamed)

    # Logprobs: greedy token is the top alternative; values are log-probabilities.
    lp = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=6, temperature=0, logprobs=True,
                                        top_logprobs=3)
    entries = lp.choices[0].logprobs.content
    check(len(entries) == 6, "one logprobs entry per token")
    for e in entries:
        check(e.logprob <= 0 and len(e.top_logprobs) == 3 and abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6 and
              e.top_logprobs[0].token == e.token and
              e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob >= e.top_logprobs[2].logprob, "logprob entry %s" % e)
        check(bytes(e.bytes) == e.token.encode(), "bytes match the token text")
    lps = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=6, temperature=0, logprobs=True,
                                         top_logprobs=2, stream=True)
    streamed_lp = [x for c in lps if c.choices and c.choices[0].logprobs for x in c.choices[0].logprobs.content]
    check([x.token for x in streamed_lp] == [e.token for e in entries], "streamed logprobs cover every token once")

    # Seeds: same seed, same sample; n choices.
    a = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=10, temperature=1.0, seed=7)
    b = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=10, temperature=1.0, seed=7)
    c = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=10, temperature=1.0, seed=8)
    check(a.choices[0].message.reasoning_content == b.choices[0].message.reasoning_content, "seed reproducible")
    check(a.choices[0].message.reasoning_content != c.choices[0].message.reasoning_content, "other seed differs")
    n3 = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=4, temperature=0, n=3)
    check(len(n3.choices) == 3 and [ch.index for ch in n3.choices] == [0, 1, 2] and n3.usage.completion_tokens == 12 and
          n3.usage.prompt_tokens == r.usage.prompt_tokens, "n=3: %s" % n3.usage)
    # Penalties and the other sampling fields are accepted.
    p = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=4, temperature=0.7, top_p=0.9,
                                       frequency_penalty=0.5, presence_penalty=0.5, seed=1,
                                       extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1})
    check(p.usage.completion_tokens == 4, "sampling fields accepted")
    # logit_bias pushes a token to the top; min_tokens holds off EOS (ignored here: random model).
    target = tok["tokens"][3]
    lb = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=3, temperature=0,
                                        logit_bias={str(target): 100.0}, logprobs=True)
    status, want = post_json(srv.base, "/v1/detokenize", {"tokens": [target] * 3})
    check("".join(e.token for e in lb.choices[0].logprobs.content) == want["text"], "logit_bias forces the token")
    mt = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=6, temperature=0,
                                        extra_body={"min_tokens": 6, "reasoning_effort": "high"})
    check(mt.usage.completion_tokens == 6, "min_tokens + reasoning_effort accepted")
    # continue_final_message: the prompt is the rendered history plus the assistant's text so far.
    partial = [{"role": "user", "content": "Tell me something."}, {"role": "assistant", "content": "Once upon"}]
    status, t_user = post_json(srv.base, "/v1/tokenize", {"messages": USER})
    cf = client.chat.completions.create(model="glm-test", messages=partial, max_tokens=2, temperature=0,
                                        extra_body={"continue_final_message": True})
    status, piece = post_json(srv.base, "/v1/tokenize", {"prompt": "Once upon", "add_special_tokens": False})
    check(cf.usage.prompt_tokens == t_user["count"] + piece["count"], "continue_final_message prompt: %s" % cf.usage)
    status, _, card = request("GET", srv.base + "/v1/models/glm-test")
    check(status == 200 and json.loads(card)["id"] == "glm-test", "model card")
    # max_completion_tokens wins over max_tokens.
    m = client.chat.completions.create(model="glm-test", messages=USER, max_tokens=9, max_completion_tokens=3, temperature=0)
    check(m.usage.completion_tokens == 3, "max_completion_tokens used")

    # curl, raw: headers and the SSE framing.
    out = subprocess.run(["curl", "-sS", "-N", "-D", "-", srv.base + "/v1/chat/completions", "-H",
                          "Content-Type: application/json", "-d",
                          json.dumps({"messages": USER, "max_tokens": 3, "temperature": 0, "stream": True})],
                         capture_output=True, check=True).stdout.decode()
    # role chunk, 1-3 content chunks (tokens that arrive together share a chunk), finish, [DONE]
    check("text/event-stream" in out and out.rstrip().endswith("data: [DONE]") and 4 <= out.count("data: ") <= 6,
          "curl SSE framing:\n" + out)
    out = subprocess.run(["curl", "-sS", srv.base + "/v1/models"], capture_output=True, check=True).stdout
    check(json.loads(out)["data"][0]["max_model_len"] == 2048, "curl /v1/models")
    status, _, body = request("GET", srv.base + "/health_generate")
    check(status == 200, "health_generate")
    status, _, body = request("GET", srv.base + "/metrics")
    text = body.decode()
    for name in ("sglang:prompt_tokens_total", "sglang:generation_tokens_total", "sglang:num_queue_reqs",
                 "sglang:time_to_first_token_seconds_count", "sglang:inter_token_latency_seconds_bucket",
                 "sglang:http_requests_total"):
        check(name in text, "metric %s present" % name)


def test_prefix_cache(srv):
    system = {"role": "system", "content": "You are a careful assistant. " * 20}
    first = [system, {"role": "user", "content": "First question?"}]
    status, r1 = post_json(srv.base, "/v1/chat/completions", {"messages": first, "max_tokens": 4, "temperature": 0})
    before = metric(srv.base, "sglang:cached_tokens_total")
    second = [system, {"role": "user", "content": "Second question?"}]
    status, r2 = post_json(srv.base, "/v1/chat/completions", {"messages": second, "max_tokens": 4, "temperature": 0})
    after = metric(srv.base, "sglang:cached_tokens_total")
    check(status == 200 and after - before >= 100, "repeated system prompt served from the prefix cache (%s -> %s)" % (before, after))
    # The cached prefix does not change the answer.
    fresh = Server(GLINT, RANDOM, "--disable-radix-cache", *LAUNCH)
    try:
        status, r3 = post_json(fresh.base, "/v1/chat/completions", {"messages": second, "max_tokens": 4, "temperature": 0})
        check(r3["choices"][0]["message"] == r2["choices"][0]["message"], "prefix-cached answer == uncached answer")
    finally:
        fresh.stop()


def test_tools(client):
    # Scripted model: reasoning, then <tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>.
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    r = client.chat.completions.create(model="glm-test", messages=ask, tools=TOOLS, temperature=0)
    ch = r.choices[0]
    check(ch.finish_reason == "tool_calls", "finish_reason tool_calls: %s" % ch.finish_reason)
    check(ch.message.reasoning_content == "I will look it up." and ch.message.content == "", "reasoning + empty content: %s" % ch.message)
    calls = ch.message.tool_calls or []
    if check(len(calls) == 1, "one tool call: %s" % calls):
        call = calls[0]
        check(call.id.startswith("call_") and len(call.id) == 29 and call.type == "function", "call id %s" % call.id)
        check(call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"} and
              call.function.arguments == '{"city": "Paris"}', "call %s" % call.function)
    # Streamed: name first (with id), then argument deltas that concatenate to the same JSON.
    chunks = list(client.chat.completions.create(model="glm-test", messages=ask, tools=TOOLS, temperature=0, stream=True))
    deltas = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    check(deltas and deltas[0].function.name == "get_weather" and deltas[0].id and deltas[0].function.arguments == "",
          "first tool delta has id and name")
    check(all(d.id is None and d.function.name is None for d in deltas[1:]), "later deltas carry arguments only")
    check("".join(d.function.arguments for d in deltas) == '{"city": "Paris"}', "streamed arguments")
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(reasons == ["tool_calls"], "stream finish tool_calls: %s" % reasons)
    reasoning = "".join(c.choices[0].delta.reasoning_content or "" for c in chunks if c.choices and
                        getattr(c.choices[0].delta, "reasoning_content", None))
    check(reasoning == "I will look it up.", "streamed reasoning %r" % reasoning)
    # Thinking off: the call alone.
    r = client.chat.completions.create(model="glm-test", messages=ask, tools=TOOLS, temperature=0,
                                       extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    check(r.choices[0].message.tool_calls and r.choices[0].message.reasoning_content is None, "thinking off + tool call")
    # tool_choice none: no parsing, the markup stays text.
    r = client.chat.completions.create(model="glm-test", messages=ask, tools=TOOLS, tool_choice="none", temperature=0,
                                       extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    check(not r.choices[0].message.tool_calls and r.choices[0].finish_reason == "stop", "tool_choice none")
    # Round trip: the assistant's call (arguments as a JSON string) and the tool's result go back in.
    history = ask + [{"role": "assistant", "content": "", "tool_calls": [
        {"id": calls[0].id if calls else "call_x", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": calls[0].id if calls else "call_x", "content": "22 C and sunny"}]
    r2 = client.chat.completions.create(model="glm-test", messages=history, tools=TOOLS, temperature=0)
    check(r2.choices[0].finish_reason == "tool_calls", "round trip answered")
    http = client._client  # the SDK's own httpx client, for the tokenize extension route
    tok = http.post(str(client.base_url).rstrip("/").rsplit("/v1", 1)[0] + "/v1/tokenize",
                    json={"messages": history, "tools": TOOLS}).json()
    det = http.post(str(client.base_url).rstrip("/").rsplit("/v1", 1)[0] + "/v1/detokenize",
                    json={"tokens": tok["tokens"], "skip_special_tokens": False}).json()["text"]
    check("<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>" in det and
          "<tool_response>22 C and sunny</tool_response>" in det and '"name": "get_weather"' in det,
          "templated round trip:\n" + det)
    # tool_choice errors.
    try:
        client.chat.completions.create(model="glm-test", messages=ask, tools=TOOLS,
                                       tool_choice={"type": "function", "function": {"name": "nope"}})
        check(False, "unknown named tool accepted")
    except openai.BadRequestError as e:
        check("not found" in str(e), "named tool error: %s" % e)


def main():
    srv = Server(GLINT, RANDOM, *LAUNCH)
    try:
        client = openai.OpenAI(base_url=srv.base + "/v1", api_key="unused", max_retries=0)
        test_random_model(client, srv)
        test_prefix_cache(srv)
    finally:
        srv.stop()
    script = Server(GLINT, SCRIPT, *LAUNCH)
    try:
        test_tools(openai.OpenAI(base_url=script.base + "/v1", api_key="unused", max_retries=0))
    finally:
        script.stop()
    finish("server API")


if __name__ == "__main__":
    main()
