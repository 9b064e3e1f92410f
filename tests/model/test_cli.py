#!/usr/bin/env python3
"""CLI tests of glint logits / generate / info against the transformers fixtures, and of every
loader error: each bad input must give exit status 1 (2 for usage errors) and one clear line on
stderr naming what and where, never a crash.

usage: test_cli.py GLINT FIXTURES_DIR
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

from clitest import CliTest, copy_model, rewrite_header

GLINT, MODELS = sys.argv[1], sys.argv[2]
FSF = os.path.join(MODELS, "tiny-fsf-f32")
SHARDED = os.path.join(MODELS, "tiny-nonorm-yarn-sharded")
t = CliTest(GLINT)
run, report, expect_error = t.run, t.report, t.expect_error


def edit_config(path, edit):
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    edit(cfg)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)


ref = json.load(open(os.path.join(FSF, "reference.json")))
prompt = " ".join(map(str, ref["prompt_ids"]))
vocab = len(ref["logits"][0])

# --- logits: every position, float32 little-endian [n, vocab], equal to the oracle within 1e-4
with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "logits.f32")
    rc, _, err = run("logits", "-m", FSF, "--ids", prompt, "-o", out)
    ok = rc == 0 and os.path.getsize(out) == 4 * vocab * len(ref["prompt_ids"])
    if ok:
        with open(out, "rb") as f:
            got = struct.unpack(f"<{vocab * len(ref['prompt_ids'])}f", f.read())
        want = [v for row in ref["logits"] for v in row]
        scale = max(abs(v) for v in want)
        worst = max(abs(a - b) for a, b in zip(got, want)) / scale
        ok = worst <= 1e-4
        err = f"max rel error {worst:.3e}"
    report("logits file matches transformers", ok, err)

# --- generate: greedy continuation equals the oracle's
rc, out, err = run("generate", "-m", FSF, "--ids", prompt, "-n", "24", "--temperature", "0")
report("generate greedy == transformers", rc == 0 and out.split() == [str(i) for i in ref["greedy_ids"]],
       f"{rc} {out!r} {err!r}")
# --- bench on a checkpoint: a decode row per context (greedy steps, the argmax where the logits are),
# each with its rate and its % of the bandwidth measured in the same run; bad contexts refused
rc, out, err = run("bench", "-m", FSF, "--ctx", "8,40")
rows = [l.split() for l in out.splitlines() if l.split()[:1] in (["8"], ["40"])]
ok = rc == 0 and len(rows) == 2 and all(float(r[1]) > 0 and r[5].endswith("%") and float(r[5][:-1]) > 0 for r in rows)
report("bench: a decode row per context", ok, f"{rc} {out!r} {err!r}")
expect_error("bench: context 0 refused", ("bench", "-m", FSF, "--ctx", "0"), "bad --ctx entry at '0'", status=2)
expect_error("bench: an empty context list (gave no rows, status 0)", ("bench", "-m", FSF, "--ctx", ""), "bad --ctx",
             status=2)
expect_error("bench: --layers with a checkpoint (was ignored)", ("bench", "-m", FSF, "--layers", "2"),
             "--layers is for --synthetic", status=2)
expect_error("bench: a non-number context refused", ("bench", "-m", FSF, "--ctx", "8,abc"), "bad --ctx entry at 'abc'",
             status=2)
# --- bench --synthetic with fewer layers than the model (GLM-5.1's layout, small widths): the plain row's
# extrapolation to 78 layers, and the speculative step's ratio for them: the verify forward's ratio plus
# the drafts once, so between the verify's ratio and the short model's step ratio
small = {"n_routed_experts": 8, "vocab_size": 4096, "eos_token_id": 2, "pad_token_id": 0, "bos_token_id": 1,
         "hidden_size": 512, "intermediate_size": 1024, "moe_intermediate_size": 256, "num_attention_heads": 4,
         "q_lora_rank": 256, "kv_lora_rank": 128, "index_n_heads": 4}
rc, out, err = run("bench", "--synthetic", "glm-5.1-bf16", "--layers", "1", "--json-model-override-args",
                   json.dumps(small), "--ctx", "64", "--decode-tokens", "2", "--speculative-num-steps", "1",
                   "--backend", "cpu")
spec = [l for l in out.splitlines() if "speculative step with 1 draft" in l]
ok = rc == 0 and "(78 layers at this GB/s" in out and len(spec) == 1 and "78 layers: about" in spec[0]
if ok:
    step = float(spec[0].split("draft: ")[1].split("x")[0])
    full = float(spec[0].split("78 layers: about ")[1].split("x")[0])
    verify = float(spec[0].split("(verify ")[1].split("x")[0])
    ok = 0 < verify <= full <= step
report("bench --synthetic --speculative-num-steps: the ratio extrapolated to 78 layers", ok, f"{rc} {out!r} {err!r}")
# sampling with a seed is reproducible
a = run("generate", "-m", FSF, "--ids", prompt, "-n", "12", "--temperature", "0.8", "--top-p", "0.9", "--seed", "7")
b = run("generate", "-m", FSF, "--ids", prompt, "-n", "12", "--temperature", "0.8", "--top-p", "0.9", "--seed", "7")
report("seeded sampling reproducible", a[0] == 0 and a[1] == b[1] and len(a[1].split()) >= 1, f"{a} {b}")

# --- tensor parallelism (CPU ranks): the same greedy continuation; configs and cuts that do not split
rc, out, err = run("generate", "-m", FSF, "--ids", prompt, "-n", "24", "--temperature", "0", "--tp", "2")
report("generate --tp 2 greedy == transformers", rc == 0 and out.split() == [str(i) for i in ref["greedy_ids"]],
       f"{rc} {out!r} {err!r}")
# --backend auto (the default) takes the CPU on a machine without a CUDA device, as CI's
rc, out, err = run("generate", "-m", FSF, "--ids", prompt, "-n", "24", "--temperature", "0", "--backend", "auto")
report("--backend auto", rc == 0 and out.split() == [str(i) for i in ref["greedy_ids"]], f"{rc} {out!r} {err!r}")
expect_error("--backend bogus", ["generate", "-m", FSF, "--ids", prompt, "--backend", "bogus"], "bogus", status=2)
expect_error("--tp 3 on 4 heads", ["generate", "-m", FSF, "--ids", prompt, "-n", "1", "--tp", "3"],
             "num_attention_heads = 4 is not a multiple of 3")
expect_error("--tp 9", ["generate", "-m", FSF, "--ids", prompt, "--tp", "9"], "--tp-size", status=2)
QUANT = os.path.join(os.path.dirname(MODELS), "quant")
expect_error("--tp 2 cut inside FP8 blocks", ["generate", "-m", os.path.join(QUANT, "q-fp8-block"), "--ids", prompt,
             "--tp", "2"], "q_b_proj", "block edge")

# --- the weight-upload progress line: GLINT_PROGRESS=1 forces it; by default only device backends on a
# terminal show it (here: the CPU, stderr a pipe)
p = subprocess.run([GLINT, "generate", "-m", FSF, "--ids", prompt, "-n", "1"], capture_output=True,
                   env=dict(os.environ, GLINT_PROGRESS="1"))
err = p.stderr.decode("utf-8", "replace")
report("progress line with GLINT_PROGRESS=1", p.returncode == 0 and "loading weights:" in err and "(100%)" in err
       and err.count("\n") >= 1, repr(err))
rc, out, err = run("generate", "-m", FSF, "--ids", prompt, "-n", "1")
report("no progress line by default here", rc == 0 and "loading weights" not in err, repr(err))

# --- info
rc, out, err = run("info", "-m", FSF)
report("info", rc == 0 and "FSFS" in out and "DMMM" in out and "F32" in out, out + err)
rc, out, err = run("info", "-m", SHARDED)
report("info sharded + yarn", rc == 0 and "yarn" in out and "24 files" in out, out + err)

# --- loader errors
expect_error("missing directory", ["info", "-m", "/nonexistent/model"], "/nonexistent/model", "does not exist")
expect_error("-m naming a file (was said not to exist)", ["info", "-m", os.path.join(FSF, "config.json")],
             "config.json: not a directory")
with tempfile.TemporaryDirectory() as empty:
    expect_error("no config.json", ["info", "-m", empty], "config.json")
    shutil.copy(os.path.join(FSF, "config.json"), empty)
    expect_error("no safetensors", ["info", "-m", empty], "model.safetensors")

d = copy_model(FSF)
st = os.path.join(d, "model.safetensors")
size = os.path.getsize(st)
with open(st, "r+b") as f:
    f.truncate(size - 1000)
expect_error("truncated safetensors", ["info", "-m", d], "model.safetensors", "truncated")
with open(st, "r+b") as f:
    f.truncate(5)
expect_error("file shorter than its header length", ["info", "-m", d], "truncated")
with open(st, "wb") as f:
    f.write(struct.pack("<Q", 11) + b'{"a": [1,2,')
expect_error("header not JSON", ["info", "-m", d], "model.safetensors", "not valid JSON", "line")
shutil.rmtree(d)

d = copy_model(FSF)
rewrite_header(os.path.join(d, "model.safetensors"),
               lambda h: h.pop("model.layers.2.self_attn.kv_b_proj.weight"))
expect_error("tensor missing", ["info", "-m", d], "model.layers.2.self_attn.kv_b_proj.weight", "missing", "[128, 32]")
shutil.rmtree(d)

d = copy_model(FSF)
rewrite_header(os.path.join(d, "model.safetensors"),
               lambda h: h["model.layers.1.mlp.gate.weight"].update(dtype="I32"))
expect_error("wrong dtype", ["info", "-m", d], "model.layers.1.mlp.gate.weight", "I32")
shutil.rmtree(d)

d = copy_model(FSF)
st = os.path.join(d, "model.safetensors")
rewrite_header(st, lambda h: h["lm_head.weight"].update(data_offsets=h["model.embed_tokens.weight"]["data_offsets"]))
expect_error("two tensors on the same bytes", ["info", "-m", d], "model.safetensors", "overlap", "lm_head.weight")
shutil.rmtree(d)
d = copy_model(FSF)
rewrite_header(os.path.join(d, "model.safetensors"),
               lambda h: h.update(extra={"dtype": "F32", "shape": [2 ** 40] * 4, "data_offsets": [0, 0]}))
expect_error("a shape past 2^64 elements (was wrapped around to 0 bytes)", ["info", "-m", d], "'extra'", "2^64")
shutil.rmtree(d)

d = copy_model(FSF)
edit_config(d, lambda c: c.update(q_lora_rank=48))
expect_error("shape differs from config", ["info", "-m", d], "q_a_proj.weight", "[32, 64]", "[48, 64]")
edit_config(d, lambda c: c.update(q_lora_rank=32, n_shared_experts=1000000000))
expect_error("a size product past 2^31 (was an integer overflow)", ["info", "-m", d],
             "moe_intermediate_size x n_shared_experts", "too large")
edit_config(d, lambda c: c.update(n_shared_experts=1, architectures=["LlamaForCausalLM"], model_type="llama"))
expect_error("unsupported architecture", ["info", "-m", d], "unsupported architecture", "LlamaForCausalLM")
with open(os.path.join(d, "config.json"), "w") as f:
    f.write('{"vocab_size": 256,\n "hidden_size": }')
expect_error("config.json not JSON", ["info", "-m", d], "config.json", "line 2")
shutil.rmtree(d)

d = copy_model(FSF)
with open(os.path.join(d, "model.safetensors"), "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    f.seek(8 + n + json.loads(f.read(n))["model.layers.0.input_layernorm.weight"]["data_offsets"][0] + 12)
    f.write(struct.pack("<f", float("nan")))
expect_error("NaN in a norm weight (the answer was token 0, again and again)", ["info", "-m", d],
             "model.layers.0.input_layernorm.weight", "NaN at [3]")
shutil.rmtree(d)

# Numbers that would turn every logit into NaN (the answer was token 0, again and again, with status 0).
for field, value, needle in [("rms_norm_eps", -1, "rms_norm_eps"), ("routed_scaling_factor", 1e300, "routed_scaling"),
                             ("rope_theta", 0, "rope_theta"), ("max_position_embeddings", 0, "max_position_embeddings")]:
    d = copy_model(FSF)
    edit_config(d, lambda c: (c.pop("rope_parameters", None), c.update({field: value})))
    expect_error("config %s %r" % (field, value), ["info", "-m", d], "config.json", needle)
    shutil.rmtree(d)
d = copy_model(FSF)
edit_config(d, lambda c: (c.pop("mlp_layer_types", None), c.update(first_k_dense_replace=-1)))
expect_error("first_k_dense_replace -1 (the error named a missing tensor)", ["info", "-m", d],
             "\"first_k_dense_replace\" must be an integer")
shutil.rmtree(d)
d = copy_model(SHARDED)
edit_config(d, lambda c: c["rope_parameters"].update(factor=-4))
expect_error("yarn factor -4 (was replaced by a derived one)", ["info", "-m", d], "yarn factor", "positive")
edit_config(d, lambda c: c["rope_parameters"].update(factor="4"))
expect_error("yarn factor \"4\" (was replaced by a derived one)", ["info", "-m", d], "\"factor\" must be a number")
shutil.rmtree(d)

d = copy_model(FSF)
edit_config(d, lambda c: c.update(eos_token_id=2 ** 40))
expect_error("eos_token_id outside the vocabulary (was cut to token 0)", ["info", "-m", d], "eos_token_id",
             "not a token id (0..255)")
edit_config(d, lambda c: c.update(eos_token_id=[1, "2"]))
expect_error("eos_token_id holding a string (was ignored)", ["info", "-m", d], "eos_token_id must be an integer")
edit_config(d, lambda c: c.update(eos_token_id=1))
for bad, needle in [({"temperature": -1}, "temperature"), ({"top_p": 2}, "top_p"), ({"top_k": -7}, "top_k"),
                    ({"eos_token_id": 4096}, "eos_token_id")]:
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump(bad, f)
    expect_error("generation_config.json " + json.dumps(bad) + " (was taken)", ["generate", "-m", d, "--ids", "1 2",
                 "-n", "2"], "generation_config.json", needle)
shutil.rmtree(d)

d = copy_model(SHARDED)
os.remove(os.path.join(d, "model-00007-of-00024.safetensors"))
expect_error("shard missing", ["info", "-m", d], "model-00007-of-00024.safetensors", "missing")
shutil.rmtree(d)

d = copy_model(SHARDED)
index = os.path.join(d, "model.safetensors.index.json")
with open(index) as f:
    idx = json.load(f)
shards = list(idx["weight_map"].values())
moved = next(k for k, v in sorted(idx["weight_map"].items()) if shards.count(v) > 1)  # its shard stays listed
others = sorted(set(shards) - {idx["weight_map"][moved]})
idx["weight_map"][moved] = others[0]
with open(index, "w") as f:
    json.dump(idx, f)
expect_error("index naming the wrong shard (was accepted)", ["info", "-m", d], moved, "is listed in " + others[0],
             "but stored in")
shutil.rmtree(d)

d = copy_model(FSF)
os.remove(os.path.join(d, "model.safetensors"))
os.symlink(os.path.join(d, "gone.safetensors"), os.path.join(d, "model.safetensors"))
expect_error("a dangling link (was: no model.safetensors)", ["info", "-m", d], "model.safetensors",
             "symbolic link to a missing file")
shutil.rmtree(d)
d = copy_model(SHARDED)
index = os.path.join(d, "model.safetensors.index.json")
text = open(index).read()
name = next(iter(json.loads(text)["weight_map"]))
at = text.index('"weight_map": {') + len('"weight_map": {')
open(index, "w").write(text[:at] + '"%s": "x.safetensors", ' % name + text[at:])
expect_error("a tensor listed twice in the index (the last one was taken)", ["info", "-m", d],
             "model.safetensors.index.json", "duplicate")
shutil.rmtree(d)
d = copy_model(FSF)
rewrite_header(os.path.join(d, "model.safetensors"), lambda h: h.update(__metadata__=[1, 2]))
expect_error("__metadata__ that is not an object (was taken)", ["info", "-m", d], "__metadata__ must be an object")
shutil.rmtree(d)
d = copy_model(FSF)
edit_config(d, lambda c: c.update(architectures=["LlamaForCausalLM"]))  # model_type still glm_moe_dsa
expect_error("another architecture with GLM's model_type (was taken)", ["info", "-m", d], "unsupported architecture",
             "LlamaForCausalLM")
edit_config(d, lambda c: c.update(architectures=["GlmMoeDsaForCausalLM"], quantization_config="nvfp4"))
expect_error("quantization_config that is not an object (was ignored)", ["info", "-m", d],
             "quantization_config must be an object")
shutil.rmtree(d)

d = copy_model(FSF)
os.remove(os.path.join(d, "generation_config.json"))
os.symlink(os.path.join(d, "gone.json"), os.path.join(d, "generation_config.json"))
expect_error("an optional file linked to nothing (was taken as absent)", ["generate", "-m", d, "--ids", "1 2", "-n", "2"],
             "generation_config.json", "symbolic link to a missing file")
shutil.rmtree(d)

# A FIFO or directory where a file belongs is refused, not opened (a FIFO would block the reader).
for name in ["model.safetensors", "config.json", "generation_config.json"]:
    d = copy_model(FSF)
    path = os.path.join(d, name)
    if os.path.exists(path):
        os.remove(path)
    os.mkfifo(path)
    expect_error(name + " is a FIFO", ["info", "-m", d], name, "not a regular file (a FIFO)")
    shutil.rmtree(d)
d = copy_model(SHARDED)
index = os.path.join(d, "model.safetensors.index.json")
os.remove(index)
os.mkdir(index)
expect_error("index is a directory", ["info", "-m", d], "model.safetensors.index.json", "a directory")
shutil.rmtree(d)

# --- option errors
expect_error("pattern wrong length", ["info", "-m", FSF, "--index-topk-pattern", "FSF"], "index_topk_pattern", "4 layers")
expect_error("pattern bad letter", ["info", "-m", FSF, "--index-topk-pattern", "FSXS"], "'X'")
expect_error("pattern starting with S", ["info", "-m", FSF, "--index-topk-pattern", "SFFF"], "layer 0")
expect_error("override not JSON", ["info", "-m", FSF, "--json-model-override-args", "{bad"],
             "--json-model-override-args")
expect_error("id outside vocab", ["generate", "-m", FSF, "--ids", "1 2 999"], "999", "0..255")
expect_error("prompt longer than context", ["generate", "-m", FSF, "--ids", prompt, "--context-length", "16"],
             "context length 16")
expect_error("unknown option", ["generate", "-m", FSF, "--bogus", "1"], "--bogus", status=2)
expect_error("a stray argument (was ignored)", ["info", "-m", FSF, "extra"], "unexpected argument 'extra'", status=2)
expect_error("-n past the limit (was an integer overflow)", ["generate", "-m", FSF, "--ids", "1 2", "-n",
             "9223372036854775807"], "bad -n", "at most 1073741824", status=2)
expect_error("a temperature no float holds", ["generate", "-m", FSF, "--ids", "1 2", "--temperature", "1e39"],
             "--temperature", status=2)

# an override that changes the schedule replaces the stored indexer_types
ALLF = os.path.join(MODELS, "tiny-allf-override")
rc, out, err = run("info", "-m", ALLF, "--json-model-override-args", '{"index_topk_pattern": "FSFSF"}')
report("override merges into config", rc == 0 and "FSFSF" in out, out + err)
# an F layer needs indexer weights: this checkpoint has none on its S layers
expect_error("F layer without indexer weights", ["info", "-m", FSF, "--index-topk-pattern", "FFFF"],
             "model.layers.1.self_attn.indexer.wq_b.weight", "missing")

sys.exit(t.finish())
