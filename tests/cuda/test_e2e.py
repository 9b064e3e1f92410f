#!/usr/bin/env python3
"""End to end on the GPU: `glint logits` and greedy `glint generate` with --backend cuda against
--backend cpu on every fixture model and the demo model. Logits within 2e-3 of max|cpu| (relative),
greedy continuations identical.   usage: test_e2e.py GLINT [MODEL_DIR ...]"""
import glob
import json
import os
import subprocess
import sys
import tempfile
from array import array

TOLERANCE = 2e-3
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def model_dirs():
    dirs = sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/models/*")))
    dirs += sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/quant/q-*")))
    dirs.append(os.path.join(ROOT, "models/demo"))
    return [d for d in dirs if os.path.isfile(os.path.join(d, "config.json"))]


def prompt_and_args(d):
    ref = os.path.join(d, "reference.json")
    if os.path.isfile(ref):
        r = json.load(open(ref))
        return r["prompt_ids"], r.get("glint_args", [])
    cfg = json.load(open(os.path.join(d, "config.json")))
    n = max(48, cfg.get("index_topk", 32) + 16)  # longer than index_topk: sparse attention is exercised
    return [(i * 7919 + 13) % cfg["vocab_size"] for i in range(n)], []


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p.stdout


def logits(glint, d, ids, args, backend):
    with tempfile.NamedTemporaryFile(suffix=".f32") as f:
        run([glint, "logits", "-m", d, "--ids", " ".join(map(str, ids)), "-o", f.name, "--backend", backend] + args)
        a = array("f")
        a.frombytes(open(f.name, "rb").read())
        return a


def main():
    glint = sys.argv[1]
    dirs = sys.argv[2:] or model_dirs()
    failures = 0
    for d in dirs:
        name = os.path.relpath(d, ROOT)
        ids, args = prompt_and_args(d)
        try:
            cpu, gpu = logits(glint, d, ids, args, "cpu"), logits(glint, d, ids, args, "cuda")
            max_ref = max(abs(x) for x in cpu)
            diff = max(abs(a - b) if a == a and b == b else float("inf") for a, b in zip(cpu, gpu))
            err = diff / max_ref if len(cpu) == len(gpu) else float("inf")
            ok_logits = err <= TOLERANCE
            gen = ["generate", "-m", d, "--ids", " ".join(map(str, ids)), "-n", "24", "--temperature", "0",
                   "--print-ids", "--ignore-eos"] + args
            out_cpu = run([glint] + gen + ["--backend", "cpu"]).split()
            out_gpu = run([glint] + gen + ["--backend", "cuda"]).split()
            ok_gen = out_cpu == out_gpu and len(out_cpu) > 0
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"{name}: FAIL: {e}")
            failures += 1
            continue
        print(f"{name}: {len(ids)} prompt tokens; logits max|Δ|/max|cpu| = {err:.2e} {'ok' if ok_logits else 'FAIL'}; "
              f"greedy 24 {'identical ok' if ok_gen else 'DIFFER FAIL'}")
        if not ok_gen:
            print(f"  cpu:  {' '.join(out_cpu)}\n  cuda: {' '.join(out_gpu)}")
        failures += (not ok_logits) + (not ok_gen)
    print(f"{failures} failures over {len(dirs)} models")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
