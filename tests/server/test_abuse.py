"""Abuse: every malformed input gets sglang's flat error body with the right status, clients that
vanish free their slots, the queue answers 503 when full, auth is enforced, the sglang launch line
is accepted and an unknown flag is named - and the server stays up and keeps serving.

usage: test_abuse.py GLINT   (GLINT_SERVER_FIXTURES names the fixture directory)
"""
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

from common import Server, check, finish, fixtures_dir, metric, post_json, request

GLINT = sys.argv[1]
FIX = fixtures_dir()
MODEL = os.path.join(FIX, "model-random")
OK = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "temperature": 0}
CHAT = "/v1/chat/completions"


def is_flat_error(body, status):
    return (isinstance(body, dict) and body.get("object") == "error" and isinstance(body.get("message"), str) and
            body.get("code") == status and "param" in body)


def expect_error(base, path, payload, status, contains="", raw=None, headers=None):
    if raw is not None:
        st, _, data = request("POST", base + path, raw, headers or {"Content-Type": "application/json"})
        try:
            body = json.loads(data)
        except ValueError:
            body = data
    else:
        st, body = post_json(base, path, payload, headers)
    check(st == status and is_flat_error(body, status) and contains in body.get("message", ""),
          "%s %s -> %s %s (want %d '%s')" % (path, (raw if raw is not None else json.dumps(payload))[:80], st,
                                             body if not isinstance(body, bytes) else body[:200], status, contains))


def malformed(base):
    expect_error(base, CHAT, None, 400, "Invalid JSON", raw=b'{"messages": [')
    expect_error(base, CHAT, None, 400, "", raw=b"[1, 2]")
    expect_error(base, CHAT, None, 400, "", raw=b"")
    expect_error(base, CHAT, None, 400, "", raw=b'{"a": 1, "a": 2}')
    expect_error(base, CHAT, None, 400, "strings may not contain \\u0000",
                 raw=b'{"messages": [{"role": "user", "content": "a\\u0000b"}]}')
    expect_error(base, CHAT, None, 400, "UTF", raw=b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}')
    expect_error(base, CHAT, None, 400, "Unsupported Media Type", raw=json.dumps(OK).encode(),
                 headers={"Content-Type": "text/plain"})
    wrong_types = [("messages", "hi"), ("messages", [5]), ("messages", [{"role": 5, "content": "x"}]),
                   ("messages", [{"role": "hacker", "content": "x"}]), ("messages", [{"role": "user", "content": 5}]),
                   ("temperature", "hot"), ("temperature", -1), ("top_p", 0), ("top_p", 2), ("top_k", 0),
                   ("min_p", 1.5), ("max_tokens", "5"), ("max_tokens", -3), ("max_completion_tokens", 2.5),
                   ("n", 0), ("n", 1000), ("stream", "yes"), ("stop", 5), ("stop", [1]), ("stop_token_ids", ["a"]),
                   ("stop_token_ids", [10 ** 9]), ("seed", "x"), ("logprobs", "x"), ("top_logprobs", 50),
                   ("frequency_penalty", 3), ("presence_penalty", -3), ("repetition_penalty", 0),
                   ("tools", "x"), ("tools", [{"type": "function"}]), ("tool_choice", "sometimes"),
                   ("tool_choice", "required"), ("chat_template_kwargs", 3), ("stream_options", 1),
                   ("separate_reasoning", "no"), ("skip_special_tokens", 1), ("model", 3)]
    for key, value in wrong_types:
        body = dict(OK)
        body[key] = value
        expect_error(base, CHAT, body, 400)
    expect_error(base, CHAT, {"messages": []}, 400, "Messages cannot be empty.")
    expect_error(base, CHAT, {"max_tokens": 3}, 400)
    expect_error(base, CHAT, dict(OK, model="gpt-4"), 404, "does not exist")
    expect_error(base, CHAT, {"messages": [{"role": "user", "content": "word " * 3000}]}, 400, "context length")
    expect_error(base, CHAT, dict(OK, max_tokens=100000), 400, "max_completion_tokens is too large")
    expect_error(base, CHAT, {"messages": [{"role": "user", "content": "x" * 70000}]}, 413)
    expect_error(base, "/v1/completions", {"prompt": [1, 2, -5]}, 400)
    expect_error(base, "/v1/completions", {"prompt": []}, 400)
    expect_error(base, "/v1/completions", {"prompt": 5}, 400)
    expect_error(base, "/v1/completions", {"prompt": "hi", "max_tokens": 100000}, 400, "too large")
    expect_error(base, "/v1/tokenize", {}, 400)
    expect_error(base, "/v1/detokenize", {"tokens": [1, "x"]}, 400)
    expect_error(base, "/v1/detokenize", {"tokens": [99999999]}, 400)
    expect_error(base, CHAT, dict(OK, response_format={"type": "json_object"}), 400, "not supported")
    expect_error(base, CHAT, dict(OK, logit_bias={"abc": 1}), 400)
    expect_error(base, CHAT, dict(OK, logit_bias={"5": 1e39}), 400, "beyond a 32-bit float")
    expect_error(base, CHAT, dict(OK, logit_bias={str(i): 1 for i in range(1025)}), 400, "at most 1024")
    # Content parts: text only, each well formed (nothing is dropped silently).
    user = lambda content: dict(OK, messages=[{"role": "user", "content": content}])
    expect_error(base, CHAT, user([1, 2]), 400, "messages[0].content[0] must be an object")
    expect_error(base, CHAT, user([{"type": "foo"}]), 400, "type 'foo' are not supported")
    expect_error(base, CHAT, user([{"type": "text"}]), 400, "needs a string 'text'")
    expect_error(base, CHAT, user([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}]),
                 400, "content[1]: content parts of type 'image_url'")
    st, _ = post_json(base, CHAT, user([{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}]))
    check(st == 200, "text parts are taken: %s" % st)
    # A tool result's text parts are joined with spaces, as sglang's normalize_tool_content does; a
    # tool_reference part (a tool's schema, rendered by the GLM-5.1 template) keeps the list as it is.
    tool_turn = lambda content: {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "",
                                              "tool_calls": [{"id": "c", "type": "function",
                                                              "function": {"name": "f", "arguments": "{}"}}]},
                                             {"role": "tool", "tool_call_id": "c", "content": content}]}
    st1, a = post_json(base, "/v1/tokenize", tool_turn([{"type": "text", "text": "22 C"}, {"type": "text", "text": "sunny"}]))
    st2, b = post_json(base, "/v1/tokenize", tool_turn("22 C sunny"))
    check(st1 == st2 == 200 and a["tokens"] == b["tokens"], "tool text parts joined with a space: %s %s" % (st1, st2))
    st, _ = post_json(base, CHAT, dict(OK, **tool_turn([{"type": "tool_reference", "name": "f"}])))
    check(st == 200, "a tool_reference part in a tool result is taken: %s" % st)
    expect_error(base, CHAT, dict(OK, **tool_turn([{"type": "tool_reference"}])), 400, "needs a string 'name'")
    expect_error(base, CHAT, dict(OK, **user([{"type": "tool_reference", "name": "f"}])), 400,
                 "type 'tool_reference' are not supported")
    # An assistant turn's tool calls are checked before the template sees them.
    turns = lambda calls: dict(OK, messages=[{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "", "tool_calls": calls},
                                             {"role": "user", "content": "and?"}])
    expect_error(base, CHAT, turns("x"), 400, "messages[1].tool_calls must be a list")
    expect_error(base, CHAT, turns([1]), 400, "messages[1].tool_calls[0] must be")
    expect_error(base, CHAT, turns([{"id": "c"}]), 400, "messages[1].tool_calls[0] must be")
    expect_error(base, CHAT, turns([{"function": {"name": "f", "arguments": 5}}]), 400, "tool_calls[0] must be")
    st, _ = post_json(base, CHAT, turns([{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]))
    check(st == 200, "a well-formed tool call in the history is taken: %s" % st)
    # Tool names go into the prompt and are parsed back: no markup, spaces or control characters.
    tool = lambda name: {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
    for name in ["", "a<b", "get weather", "x\ny"]:
        expect_error(base, CHAT, dict(OK, tools=[tool(name)]), 400, "function name")
        expect_error(base, CHAT, dict(OK, tools=[tool(name)], tool_choice={"type": "function", "function": {"name": name}}),
                     400, "function name")
    st, _ = post_json(base, CHAT, dict(OK, tools=[tool("mcp.server:get-weather_2")]))
    check(st == 200, "dots, colons and dashes in tool names are taken: %s" % st)
    expect_error(base, CHAT, dict(OK, reasoning_effort="ultra"), 400, "'reasoning_effort' must be")
    expect_error(base, CHAT, dict(OK, parallel_tool_calls="x"), 400, "'parallel_tool_calls' must be a boolean")
    expect_error(base, CHAT, dict(OK, response_format={}), 400, "'response_format' must be an object whose 'type'")
    expect_error(base, CHAT, dict(OK, response_format="json"), 400, "'response_format' must be an object whose 'type'")
    expect_error(base, CHAT, dict(OK, regex="a+"), 400, "Constrained decoding (regex) is not supported")
    for effort in ["high", 0.5]:
        st, _ = post_json(base, CHAT, dict(OK, reasoning_effort=effort))
        check(st == 200, "reasoning_effort %r is taken: %s" % (effort, st))
    st, r = post_json(base, CHAT, dict(OK, max_tokens=2.0, top_k=40.0))  # pydantic (lax) takes integral reals
    check(st == 200 and r["usage"]["completion_tokens"] == 2, "max_tokens 2.0 is 2: %s %s" % (st, r))
    st, _ = post_json(base, CHAT, dict(OK, top_k=2 ** 31))  # past the vocabulary: no cut, as sglang
    check(st == 200, "a top_k past the vocabulary is taken: %s" % st)
    expect_error(base, CHAT, dict(OK, min_tokens=50), 400)
    st, _, data = request("GET", base + "/v1/models/other")
    check(st == 404 and json.loads(data)["error"]["code"] == "model_not_found", "unknown model card 404")
    st, _, data = request("GET", base + "/v1/nothing")
    check(st == 404 and is_flat_error(json.loads(data), 404), "unknown route 404")
    st, _, data = request("GET", base + CHAT)
    check(st == 405, "GET on a POST route: %s" % st)
    st, _, data = request("HEAD", base + "/health")
    check(st == 200 and not data, "HEAD /health answers as GET, without a body: %s %r" % (st, data))
    # Content is data, never template code; paths in content are never read.
    st, r = post_json(base, CHAT, {"messages": [{"role": "user", "content": "{{ ''.__class__ }} {% include '/etc/passwd' %}"}],
                                   "max_tokens": 2})
    check(st == 200, "template syntax in content is just text")
    st, r = post_json(base, CHAT, dict(OK, chat_template_kwargs={"messages": []}))
    check(st == 400, "chat_template_kwargs cannot replace messages")


def fuzz(base):
    rng = random.Random(5)
    seed = json.dumps({"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
        {"role": "tool", "content": "r"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "max_tokens": 2, "temperature": 0.5, "stop": ["x"], "n": 2}).encode()
    statuses = {}
    for k in range(300):
        b = bytearray(seed)
        for _ in range(rng.randint(1, 6)):
            op = rng.random()
            pos = rng.randrange(len(b))
            if op < 0.4:
                b[pos] = rng.randrange(256)
            elif op < 0.7:
                del b[pos:pos + rng.randint(1, 8)]
            else:
                b[pos:pos] = rng.choice([b"{", b"}", b"[", b"]", b'"', b"\\", b"null", b"-1", b"1e999", b"\xc3", b","])
        st, _, _ = request("POST", base + CHAT, bytes(b))
        statuses[st] = statuses.get(st, 0) + 1
        if st >= 500:
            check(False, "fuzzed body gave %d: %r" % (st, bytes(b)[:300]))
    print("fuzz statuses:", statuses)


def type_fuzz(base):
    """Every value of a rich request, replaced in turn by values of every JSON type: 200 or 4xx."""
    rich = {"model": "default", "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": None, "reasoning_content": "r", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "res"}]}],
        "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                                                    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}],
        "tool_choice": "auto", "max_tokens": 2, "temperature": 0.5, "top_p": 0.9, "top_k": 5, "min_p": 0.1, "n": 2,
        "stop": ["zz"], "stop_token_ids": [5], "seed": 3, "logprobs": True, "top_logprobs": 2,
        "chat_template_kwargs": {"enable_thinking": False, "clear_thinking": True}, "stream": False,
        "logit_bias": {"5": 1.0}, "min_tokens": 1, "frequency_penalty": 0.1, "presence_penalty": 0.1,
        "repetition_penalty": 1.1, "separate_reasoning": True, "skip_special_tokens": True}
    values = [None, 5, -1, 1e308, "s", "", [], [1], {}, {"x": 1}, True]

    def paths(node, prefix=()):
        yield prefix
        if isinstance(node, dict):
            for k, v in node.items():
                yield from paths(v, prefix + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from paths(v, prefix + (i,))

    import copy
    st, reply = post_json(base, CHAT, rich)
    check(st == 200 and len(reply["choices"]) == 2, "the rich request itself is served: %s %s" % (st, reply))
    count = 0
    for path in list(paths(rich))[1:]:
        for value in values:
            body = copy.deepcopy(rich)
            node = body
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            st, reply = post_json(base, CHAT, body)
            count += 1
            if not (st == 200 or 400 <= st < 500):
                check(False, "type fuzz %s = %r -> %s %s" % (path, value, st, reply))
    print("type fuzz: %d requests" % count)


def disconnects(srv):
    before = metric(srv.base, "sglang:num_aborted_requests_total")
    port = srv.port
    for k in range(6):
        s = socket.create_connection(("127.0.0.1", port))
        payload = json.dumps({"messages": [{"role": "user", "content": "long %d" % k}], "max_tokens": 2000, "n": 16,
                              "temperature": 0, "ignore_eos": True, "stream": k % 2 == 0}).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
        if k % 2 == 0:
            s.recv(300)  # mid-stream
        else:
            time.sleep(0.1)  # non-stream, while generating
        s.close()
    deadline = time.time() + 10
    while time.time() < deadline and metric(srv.base, "sglang:num_running_reqs") != 0:
        time.sleep(0.05)
    check(metric(srv.base, "sglang:num_running_reqs") == 0, "disconnected clients freed their slots")
    after = metric(srv.base, "sglang:num_aborted_requests_total")
    check(after - before == 6 * 16, "6 disconnects x 16 choices aborted (%s -> %s)" % (before, after))


def listens_on_loopback_only(port):
    """The default --host is 127.0.0.1: the listening socket's local address is loopback."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, hexport = fields[1].rsplit(":", 1)
            if int(hexport, 16) == port and fields[3] == "0A":  # LISTEN
                found.append(addr)
    check(found == ["0100007F"], "listening addresses for port %d: %s (want 127.0.0.1 only)" % (port, found))


def queue_full():
    srv = Server(GLINT, MODEL, "--max-running-requests", "1", "--max-queued-requests", "2")
    try:
        results = []

        def one(i):
            results.append(post_json(srv.base, CHAT, {"messages": [{"role": "user", "content": "q%d" % i}],
                                                      "max_tokens": 150, "ignore_eos": True, "temperature": 0}))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(st for st, _ in results)
        check(len(results) == 8, "every request answered")
        check(codes.count(503) >= 1 and codes.count(200) >= 2 and set(codes) <= {200, 503}, "queue full answers 503: %s" % codes)
        check(all(is_flat_error(b, 503) for st, b in results if st == 503), "503 body is the flat error")
        check(all(b["usage"]["completion_tokens"] == 150 for st, b in results if st == 200), "admitted ones ran to completion")
    finally:
        srv.stop()


def auth():
    srv = Server(GLINT, MODEL, "--api-key", "s3cret")
    try:
        st, _, _ = request("GET", srv.base + "/v1/models")
        check(st == 401, "no key: %s" % st)
        st, _, _ = request("GET", srv.base + "/v1/models", headers={"Authorization": "Bearer wrong"})
        check(st == 401, "wrong key: %s" % st)
        st, _ = post_json(srv.base, CHAT, OK, headers={"Authorization": "Bearer s3cre"})
        check(st == 401, "prefix of the key: %s" % st)
        st, _ = post_json(srv.base, CHAT, OK, headers={"Authorization": "Bearer s3cret"})
        check(st == 200, "right key: %s" % st)
        st, _, _ = request("GET", srv.base + "/health")
        check(st == 200, "health needs no key")
    finally:
        srv.stop()


def launch_line():
    port = str(__import__("common").free_port())
    template = os.path.join(MODEL, "chat_template.jinja")
    cmd = [GLINT, "serve", "--model-path", MODEL, "--served-model-name", "glm-5.1", "--host", "127.0.0.1", "--port", port,
           "--trust-remote-code", "--tensor-parallel-size", "4", "--pipeline-parallel-size", "1", "--context-length", "1024",
           "--max-running-requests", "8", "--mem-fraction-static", "0.5", "--chunked-prefill-size", "512", "--page-size", "64",
           "--quantization", "modelopt_fp4", "--kv-cache-dtype", "fp8_e4m3", "--triton-attention-num-kv-splits", "16",
           "--moe-runner-backend", "flashinfer_cutlass", "--fp4-gemm-backend", "flashinfer_cutlass",
           "--attention-backend", "triton", "--cuda-graph-max-bs", "8", "--pre-warm-nccl", "--tool-call-parser", "glm47",
           "--reasoning-parser", "glm45", "--chat-template", template, "--model-loader-extra-config",
           '{"enable_multithread_load": true}', "--watchdog-timeout", "1200", "--json-model-override-args", "{}",
           "--api-key", "k", "--speculative-algorithm", "EAGLE", "--speculative-num-steps", "3",
           "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", "4", "--speculative-attention-mode",
           "decode", "--speculative-moe-runner-backend", "triton"]
    log = open(os.path.join(FIX, "launch-line.log"), "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = "http://127.0.0.1:" + port
    try:
        ok = False
        for _ in range(600):
            if proc.poll() is not None:
                break
            try:
                if request("GET", base + "/health", timeout=2)[0] == 200:
                    ok = True
                    break
            except OSError:
                time.sleep(0.1)
        check(ok, "the sglang launch line starts the server")
        if ok:
            st, body = post_json(base, "/v1/chat/completions", dict(OK, model="glm-5.1"), headers={"Authorization": "Bearer k"})
            check(st == 200 and body["model"] == "glm-5.1", "launch-line server answers")
            st, _, data = request("GET", base + "/v1/models", headers={"Authorization": "Bearer k"})
            check(json.loads(data)["data"][0]["max_model_len"] == 1024, "--context-length applied")
    finally:
        proc.terminate()
        proc.wait(120)
        log.close()
    text = open(os.path.join(FIX, "launch-line.log"), encoding="utf-8", errors="replace").read()
    check(proc.returncode == 0, "launch-line server exit status %s" % proc.returncode)
    for flag in ("--kv-cache-dtype", "--attention-backend", "--speculative", "--pre-warm-nccl",
                 "--triton-attention-num-kv-splits"):  # the last: it applies to the CUDA backend only
        check(flag in text, "one-line notice for %s" % flag)
    check("tensor parallel over 4 ranks" in text, "--tensor-parallel-size 4 splits the model over 4 ranks")
    r = subprocess.run([GLINT, "serve", "-m", MODEL, "--enable-magic", "1"], capture_output=True)
    check(r.returncode == 2 and b"--enable-magic" in r.stderr, "unknown flag is named: %r" % r.stderr)
    r = subprocess.run([GLINT, "serve", "-m", MODEL, "--triton-attention-num-kv-splits", "0"], capture_output=True)
    check(r.returncode == 2 and b"--triton-attention-num-kv-splits" in r.stderr, "bad split count refused: %r" % r.stderr)
    r = subprocess.run([GLINT, "serve", "-m", MODEL, "--tool-call-parser", "qwen25"], capture_output=True)
    check(r.returncode == 2 and b"glm47" in r.stderr, "unsupported parser refused: %r" % r.stderr)


def shutdown_while_busy():
    srv = Server(GLINT, MODEL)
    got = []
    t = threading.Thread(target=lambda: got.append(post_json(srv.base, CHAT, {
        "messages": [{"role": "user", "content": "busy"}], "max_tokens": 2000, "n": 16, "ignore_eos": True})))
    t.start()
    time.sleep(0.3)
    t0 = time.time()
    srv.stop()  # checks exit status 0 and a clean sanitizer log
    t.join(30)
    check(time.time() - t0 < 30 and got, "SIGTERM with work in flight: the client got an answer and the server exited")


def idle_connections():
    """Connections that send nothing are closed after --timeout-keep-alive: ~1,100 of them used to lock
    every client out for 600 s (thread per connection, 1,024 at most). A long answer, streamed or
    not, is not idleness, and a kept-alive connection is reused within the limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    srv = Server(GLINT, MODEL, "--timeout-keep-alive", "1")
    socks = []
    try:
        for _ in range(1100):
            try:
                socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
            except OSError:
                break
        st, deadline = None, time.time() + 15  # ~1 s plus closing 1,100 connections on a busy machine
        while st != 200 and time.time() < deadline:
            time.sleep(0.5)
            try:
                st, _, _ = request("GET", srv.base + "/health", timeout=5)
            except OSError as e:
                st = type(e).__name__
        check(st == 200, "%d idle connections dropped after the limit: a new client is served (%s)" % (len(socks), st))
        import select
        dropped, waiting, deadline = 0, list(socks), time.time() + 20
        while waiting and time.time() < deadline:  # each closed one reads as EOF
            ready = select.poll()
            for s in waiting:
                ready.register(s, select.POLLIN | select.POLLHUP)
            done = {fd for fd, _ in ready.poll(1000)}
            still = []
            for s in waiting:
                if s.fileno() in done:
                    try:
                        dropped += s.recv(1) == b""
                    except OSError:  # reset: closed too
                        dropped += 1
                else:
                    still.append(s)
            waiting = still
        check(dropped == len(socks), "every idle connection was closed by the server: %d of %d" % (dropped, len(socks)))
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
        for stream in (False, True):  # 16 x 400 tokens: 1.5 s on the 2-core CI machine, past the limit
            t0 = time.time()
            body = {"prompt": "busy", "max_tokens": 400, "n": 16, "ignore_eos": True, "stream": stream}
            c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            c.request("GET", "/health")
            r2 = c.getresponse()
            r2.read()
            check(r.status == 200 and (b"[DONE]" in data if stream else b"usage" in data) and r2.status == 200,
                  "%s answer of %.1f s, then the connection reused: %s %s" % ("streamed" if stream else "whole",
                                                                           time.time() - t0, r.status, r2.status))
        time.sleep(2.5)
        try:
            c.request("GET", "/health")
            c.getresponse().read()
            check(False, "a kept-alive connection idle past the limit was not closed")
        except (http.client.HTTPException, OSError):
            pass
    finally:
        for s in socks:
            s.close()
        srv.stop()


def main():
    srv = Server(GLINT, MODEL, "--reasoning-parser", "glm45", "--tool-call-parser", "glm47", "--max-request-bytes", "65536")
    try:
        listens_on_loopback_only(srv.port)
        malformed(srv.base)
        fuzz(srv.base)
        type_fuzz(srv.base)
        disconnects(srv)
        check(srv.alive(), "server survived")
        st, _, _ = request("GET", srv.base + "/health")
        st2, body = post_json(srv.base, CHAT, OK)
        check(st == 200 and st2 == 200 and body["usage"]["completion_tokens"] == 2, "serves the next request")
    finally:
        srv.stop()
    queue_full()
    idle_connections()
    shutdown_while_busy()
    auth()
    launch_line()
    finish("server abuse")


if __name__ == "__main__":
    main()
