#!/usr/bin/env python3
"""Encode throughput of glint's tokenizer vs Hugging Face `tokenizers`, single-threaded.

Builds a ~10 MB mixed corpus (Python source, English docs from Debian packages, CJK / Cyrillic /
Arabic / Devanagari passages, emoji, numbers, whitespace runs) as NUL-separated documents,
encodes every document with HF (RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false) and with
glint's tokenizer_bench (build it first: cmake --build build), checks that both produce the same
ids (count + checksum) and prints the throughput ratio and the load time of each tokenizer.json.

Usage: python3 tools/tokenizer/bench.py [--build build] [--mb 10] [--tokenizers llama3,glm5-style,claude-v1]
"""
import argparse
import glob
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus import CORPUS, PASSAGES  # noqa: E402

REQUIRED_TOKENIZERS = "0.23.3"
FIXTURES = "tests/fixtures/tokenizer"


def build_corpus(target_bytes):
    rng = random.Random(1234)
    sources = []
    stdlib = os.path.dirname(os.__file__)
    for path in sorted(glob.glob(os.path.join(stdlib, "*.py")))[:200]:
        sources.append(open(path, encoding="utf-8", errors="replace").read())
    for path in sorted(glob.glob("/usr/share/doc/*/copyright"))[:600]:
        sources.append(open(path, encoding="utf-8", errors="replace").read())
    docs, total = [], 0
    while total < target_bytes:
        kind = rng.random()
        if kind < 0.55:  # a slice of code or English prose
            src = rng.choice(sources)
            start = rng.randrange(0, max(1, len(src) - 4000))
            doc = src[start:start + rng.randrange(500, 4000)]
        elif kind < 0.85:  # multilingual passages with noise
            doc = " ".join(rng.choice(PASSAGES) for _ in range(rng.randrange(1, 4)))
        else:  # the parity corpus strings: emoji, numbers, whitespace runs, special tokens
            doc = "\n".join(rng.choice(CORPUS) for _ in range(rng.randrange(5, 30)))
        doc = doc.replace("\0", " ")
        docs.append(doc)
        total += len(doc.encode("utf-8"))
    return docs


def tokenizer_path(name, tmp):
    d = os.path.join(FIXTURES, name)
    if os.path.exists(os.path.join(d, "tokenizer.json")):
        return os.path.join(d, "tokenizer.json")
    with tarfile.open(os.path.join(d, "tokenizer.tar.xz")) as tar:
        tar.extract("tokenizer.json", os.path.join(tmp, name))
    return os.path.join(tmp, name, "tokenizer.json")


def load_only(bench_bin, path, tmp):
    one = os.path.join(tmp, "one.txt")
    with open(one, "w") as f:
        f.write("x")
    out = subprocess.run([bench_bin, path, one, "1"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["load_s"]


def hf_run(path, docs, repeats):
    load_s = 1e30
    for _ in range(3):
        t0 = time.perf_counter()
        tok = Tokenizer.from_file(path)
        load_s = min(load_s, time.perf_counter() - t0)
    best_loop = best_batch = 1e30
    for _ in range(repeats):
        t0 = time.perf_counter()
        encodings = [tok.encode(d, add_special_tokens=False) for d in docs]
        best_loop = min(best_loop, time.perf_counter() - t0)
        t0 = time.perf_counter()
        tok.encode_batch(docs, add_special_tokens=False)
        best_batch = min(best_batch, time.perf_counter() - t0)
    checksum, n_ids = 1469598103934665603, 0
    for e in encodings:
        for i in e.ids:
            checksum = ((checksum ^ i) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
        n_ids += len(e.ids)
    return {"load_s": load_s, "encode_s": min(best_loop, best_batch), "loop_s": best_loop,
            "batch_s": best_batch, "ids": n_ids, "checksum": checksum}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--mb", type=float, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokenizers", default="llama3,glm5-style,claude-v1")
    args = ap.parse_args()
    if tokenizers.__version__ != REQUIRED_TOKENIZERS:
        sys.exit(f"need tokenizers=={REQUIRED_TOKENIZERS}, found {tokenizers.__version__}")
    bench_bin = os.path.join(args.build, "tests", "tokenizer_bench")
    if not os.path.exists(bench_bin):
        sys.exit(f"{bench_bin} not found: build first (cmake --build {args.build})")
    docs = build_corpus(int(args.mb * 1e6))
    # (load times: best of three runs, as the machine is shared)
    with tempfile.TemporaryDirectory() as tmp:
        corpus_file = os.path.join(tmp, "corpus.bin")
        with open(corpus_file, "wb") as f:
            f.write(b"\0".join(d.encode("utf-8") for d in docs))
        size = os.path.getsize(corpus_file)
        print(f"corpus: {size / 1e6:.1f} MB in {len(docs)} documents; tokenizers {tokenizers.__version__}, "
              f"single-threaded")
        ok = True
        for name in args.tokenizers.split(","):
            path = tokenizer_path(name, tmp)
            hf = hf_run(path, docs, args.repeats)
            out = subprocess.run([bench_bin, path, corpus_file, str(args.repeats)], check=True,
                                 capture_output=True, text=True).stdout
            glint = json.loads(out)
            glint["load_s"] = min([glint["load_s"]] + [load_only(bench_bin, path, tmp) for _ in range(2)])
            same = glint["ids"] == hf["ids"] and glint["checksum"] == hf["checksum"]
            ok = ok and same
            mb = size / 1e6
            print(f"{name:12s} tokenizer.json {os.path.getsize(path) / 1e6:5.2f} MB | "
                  f"HF {mb / hf['encode_s']:6.2f} MB/s (loop {hf['loop_s']:.2f}s, batch {hf['batch_s']:.2f}s), "
                  f"load {hf['load_s']:.3f}s | glint {mb / glint['encode_s']:6.2f} MB/s, load {glint['load_s']:.3f}s | "
                  f"ratio {hf['encode_s'] / glint['encode_s']:.2f}x | ids {'identical' if same else 'DIFFER'} "
                  f"({glint['ids']} ids)")
        # Load time of a tokenizer.json as Hugging Face saves it (pretty-printed, like GLM-5's own file).
        pretty = os.path.join(tmp, "pretty.json")
        Tokenizer.from_file(tokenizer_path("llama3", tmp)).save(pretty)
        glint_load = min(load_only(bench_bin, pretty, tmp) for _ in range(3))
        hf_load = 1e30
        for _ in range(3):
            t0 = time.perf_counter()
            Tokenizer.from_file(pretty)
            hf_load = min(hf_load, time.perf_counter() - t0)
        print(f"load of llama3 re-saved by HF (pretty JSON, {os.path.getsize(pretty) / 1e6:.1f} MB): "
              f"glint {glint_load:.3f}s, HF {hf_load:.3f}s")
        if not ok:
            sys.exit("ids differ from Hugging Face")


if __name__ == "__main__":
    main()
