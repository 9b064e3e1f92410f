#!/usr/bin/env python3
"""The embedded demo model against transformers (tests/fixtures/demo/reference.json, made by
tools/demo/make_references.py): for 10 held-out chat prompts glint renders the same prompt text,
tokenizes it to the same ids and continues it greedily with the same 32 tokens; glint perplexity
equals the PyTorch evaluation to 3 significant digits. Then the NVFP4 variant and glint run.

usage: test_demo.py GLINT REPO_ROOT
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))
from clitest import CliTest  # noqa: E402

GLINT, ROOT = sys.argv[1], sys.argv[2]
DEMO = os.path.join(ROOT, "models", "demo")
NVFP4 = os.path.join(ROOT, "models", "demo-nvfp4")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "demo")
t = CliTest(GLINT)
run, report = t.run, t.report


ref = json.load(open(os.path.join(FIXTURES, "reference.json")))
report("10 reference prompts", len(ref["prompts"]) == 10, str(len(ref["prompts"])))
for i, p in enumerate(ref["prompts"]):
    rc, text, err = run("render-chat", "-m", DEMO, stdin=json.dumps(p["request"]).encode())
    report(f"prompt {i}: render-chat == jinja2", rc == 0 and text == p["prompt"], f"{rc} {err} {text!r}")
    rc, ids, err = run("tokenize", "-m", DEMO, stdin=p["prompt"].encode())
    report(f"prompt {i}: tokenize == HF tokenizers", rc == 0 and ids.split() == [str(x) for x in p["prompt_ids"]], err)
    rc, out, err = run("generate", "-m", DEMO, "--ids", " ".join(map(str, p["prompt_ids"])), "-n",
                       str(len(p["greedy_ids"])), "--temperature", "0", "--ignore-eos", "--print-ids")
    report(f"prompt {i}: greedy == transformers ({p['greedy_text'][:40]!r})",
           rc == 0 and out.split() == [str(x) for x in p["greedy_ids"]], f"{rc} {err} {out!r}")
    rc, out, err = run("generate", "-m", DEMO, "--ids", " ".join(map(str, p["prompt_ids"])), "-n",
                       str(len(p["greedy_ids"])), "--temperature", "0", "--ignore-eos", "--print-ids", "--speculative")
    accepted = [l for l in err.splitlines() if l.startswith("speculative")]
    report(f"prompt {i}: MTP speculative greedy == transformers greedy ({accepted[0] if accepted else err!r})",
           rc == 0 and out.split() == [str(x) for x in p["greedy_ids"]] and accepted, f"{rc} {err} {out!r}")


def perplexity(model):
    rc, out, err = run("perplexity", "-m", model, os.path.join(FIXTURES, "heldout.txt"))
    if rc != 0 or not out.startswith("perplexity "):
        return None, err
    return float(out.split()[1]), out


want = ref["perplexity"]["value"]
got, detail = perplexity(DEMO)
report(f"perplexity {got} == PyTorch {want:.4f} to 3 significant digits",
       got is not None and f"{got:.3g}" == f"{want:.3g}", str(detail))
got4, detail = perplexity(NVFP4)
print(f"NVFP4 variant perplexity: {got4} (BF16: {got})")
report("NVFP4 variant runs, perplexity within 10% of BF16",
       got4 is not None and got is not None and abs(got4 - got) / got < 0.10, str(detail))

t.expect_error("--speculative needs greedy", ["generate", "-m", DEMO, "--ids", "4002 4004 7", "--speculative",
                                              "--temperature", "0.7"], "--temperature 0")
t.expect_error("--speculative needs an MTP layer",
               ["generate", "-m", os.path.join(ROOT, "tests", "fixtures", "models", "tiny-fsf-f32"), "--ids", "5 6 7",
                "--speculative", "--temperature", "0"], "MTP")
# glint bench's speculative step: a line per draft count after each context's plain decode row
rc, out, err = run("bench", "-m", DEMO, "--ctx", "16,40", "--speculative-num-steps", "3", "--decode-tokens", "2")
lines = [l for l in out.splitlines() if "speculative step with" in l]
report("bench --speculative-num-steps 3: the step with 1, 2 and 3 drafts per context",
       rc == 0 and len(lines) == 6 and all("x a plain step" in l for l in lines), f"{rc} {err} {out!r}")
t.expect_error("bench --speculative-num-steps needs an MTP layer",
               ["bench", "-m", os.path.join(ROOT, "tests", "fixtures", "models", "tiny-fsf-f32"), "--ctx", "8",
                "--speculative-num-steps", "2"], "no MTP layer", status=2)
t.expect_error("bench --speculative-num-steps past 4", ["bench", "-m", DEMO, "--speculative-num-steps", "5"],
               "1 to 4", status=2)
rc, out, err = run("run", "-m", DEMO, "-p", "What does \"river\" mean?", "--temperature", "0", "-n", "48")
report("glint run -p answers once and exits", rc == 0 and len(out.strip()) > 0, f"{rc} {err}")
rc, out, err = run("perplexity", "-m", DEMO, "/dev/stdin", stdin=b"A river is a stream of water.")
report("glint perplexity reads a pipe (only a checkpoint's files must be regular files)",
       rc == 0 and out.startswith("perplexity "), f"{rc} {err} {out!r}")
t.expect_error("glint perplexity of an empty file (was 1.0000: the special tokens alone)",
               ["perplexity", "-m", DEMO, "/dev/null"], "the file is empty")
t.expect_error("glint run -p refuses a question that is not UTF-8 (was answered as an empty turn)",
               ["run", "-m", DEMO, "-p", b"What does river mean? \xff"], "not taken", "byte offset 22")
script = "Define stone.\n/think off\nWhat is a kludge in hacker slang?\n/reset\n/bogus\nTell me a fortune.\n/quit\n"
rc, out, err = run("run", "-m", DEMO, "--temperature", "0", "-n", "48", stdin=script.encode())
report("glint run REPL: commands and answers",
       rc == 0 and "(reasoning off)" in out and "(conversation reset)" in out and "unknown command /bogus" in out
       and out.count("\n") >= 6, f"{rc} {err} {out!r}")

sys.exit(t.finish())
