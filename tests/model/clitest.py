"""Helpers shared by the Python tests that drive the glint binary."""
import json
import shutil
import struct
import subprocess
import tempfile


class CliTest:
    def __init__(self, glint):
        self.glint = glint
        self.failures = 0

    def run(self, *args, stdin=None, timeout=300):
        p = subprocess.run([self.glint, *args], input=stdin, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")

    def report(self, name, ok, detail=""):
        print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + detail}")
        self.failures += not ok

    def expect_error(self, name, args, *needles, status=1):
        """The command must fail with `status`, one clear message containing every needle, no crash."""
        rc, out, err = self.run(*args)
        crashed = rc < 0 or rc >= 128 or "Sanitizer" in err or "runtime error" in err
        lines = [l for l in err.strip().splitlines() if l]
        ok = rc == status and not crashed and len(lines) >= 1 and all(n in err for n in needles)
        self.report(name, ok, f"status {rc}, stderr {err.strip()!r}, wanted {needles}")

    def finish(self):
        print(f"{self.failures} failed" if self.failures else "all ok")
        return 1 if self.failures else 0


def copy_model(src):
    dst = tempfile.mkdtemp(prefix="glint-test-")
    shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def read_safetensors(path):
    """name -> (dtype, shape, raw bytes)"""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    return {k: (v["dtype"], v["shape"], data[base + v["data_offsets"][0]: base + v["data_offsets"][1]])
            for k, v in header.items()}


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, blob) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def rewrite_header(path, edit):
    """Applies edit(header_dict) to a safetensors header, keeping the data section."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
