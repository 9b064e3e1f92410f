"""Shared helpers of the server tests: start/stop `glint serve` on 127.0.0.1, raw HTTP, checks."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

FAILURES = []
CHECKS = [0]


def check(cond, what):
    CHECKS[0] += 1
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, flush=True)
    return cond


def finish(name):
    if FAILURES:
        print("%s: %d failure(s)" % (name, len(FAILURES)))
        sys.exit(1)
    print("%s: all %d checks pass" % (name, CHECKS[0]))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fixtures_dir():
    return os.environ["GLINT_SERVER_FIXTURES"]


class Server:
    """glint serve in the background; stop() checks it exits cleanly (ASan/UBSan builds included)."""

    def __init__(self, glint, model, *flags, wait=True):
        self.port = free_port()
        self.log_path = os.path.join(fixtures_dir(), "server-%d.log" % self.port)
        self.log = open(self.log_path, "wb")
        self.cmd = [glint, "serve", "-m", model, "--port", str(self.port)] + list(flags)
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.base = "http://127.0.0.1:%d" % self.port
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with %s:\n%s" % (self.proc.returncode, self.read_log()))
            try:
                status, _, _ = request("GET", self.base + "/health", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become healthy:\n" + self.read_log())

    def read_log(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                check(False, "server did not stop within 120 s of SIGTERM")
        log = self.read_log()
        check(self.proc.returncode == 0, "server exit status %s (log follows)\n%s" % (self.proc.returncode, log[-4000:]))
        check("AddressSanitizer" not in log and "runtime error" not in log and "LeakSanitizer" not in log,
              "sanitizer report in the server log:\n" + log[-6000:])
        self.log.close()


def run_jobs(jobs, fn, concurrent):
    """fn(*job) for every job, one after another or all at once in threads."""
    if not concurrent:
        for job in jobs:
            fn(*job)
        return
    threads = [threading.Thread(target=fn, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def metrics(base):
    """GET /metrics as {name: value}, label sets summed."""
    _, _, text = request("GET", base + "/metrics")
    values = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name.split("{")[0]] = values.get(name.split("{")[0], 0) + float(value)
    return values


def request(method, url, body=None, headers=None, timeout=120):
    """One HTTP request on a fresh connection: (status, headers dict, body bytes)."""
    from urllib.parse import urlsplit
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    conn.request(method, u.path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), data


def post_json(base, path, body, headers=None, timeout=120):
    status, h, data = request("POST", base + path, body, headers, timeout)
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data


def sse_events(base, path, body, timeout=120):
    """POST a streaming request; returns the list of decoded JSON events and whether [DONE] came last."""
    from urllib.parse import urlsplit
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    if r.status != 200:
        return r.status, json.loads(r.read()), False
    events, done = [], False
    buf = b""
    while True:
        chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            assert event.startswith(b"data: "), event
            payload = event[6:]
            if payload == b"[DONE]":
                done = True
            else:
                check(not done, "event after [DONE]")
                events.append(json.loads(payload))
    conn.close()
    return 200, events, done


def metric(base, name):
    _, _, data = request("GET", base + "/metrics")
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None
