#!/usr/bin/env python3
"""glint quantize vs the reference quantizer (tools/quant/reference.py, output committed by
tools/fixtures/make_quant_fixtures.py): every tensor bit-identical, for both scopes. Then the
quantizer's error paths, and the loader's errors on corrupt quantized checkpoints.

usage: test_quant.py GLINT QUANT_FIXTURES MODEL_FIXTURES
"""
import json
import os
import shutil
import struct
import sys
import tempfile

from clitest import CliTest, copy_model, read_safetensors, rewrite_header, write_safetensors

GLINT, QUANT, MODELS = sys.argv[1:4]
BASE = os.path.join(QUANT, "q-base-f32")
t = CliTest(GLINT)
run, report, expect_error = t.run, t.report, t.expect_error


def read_checkpoint(d):
    tensors = {}
    index = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else [
        "model.safetensors"]
    for f in files:
        tensors.update(read_safetensors(os.path.join(d, f)))
    return tensors


def poke(path, tensor, byte_value):
    """Overwrites the first byte of a tensor's data."""
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        f.seek(8 + n + header[tensor]["data_offsets"][0])
        f.write(bytes([byte_value]))


tmp = tempfile.mkdtemp(prefix="glint-quant-out-")
for scope in ("experts", "all-linear"):
    out = os.path.join(tmp, scope)
    rc, _, err = run("quantize", "-m", BASE, "-o", out, "--format", "nvfp4", "--scope", scope,
                     "--max-shard-size", "200000")
    if rc != 0:
        report(f"quantize --scope {scope}", False, err)
        continue
    got = read_checkpoint(out)
    want = read_safetensors(os.path.join(QUANT, f"quantizer-{scope}.safetensors"))
    diff = [k for k in want if k not in got or got[k][0] != want[k][0] or got[k][1] != want[k][1]
            or got[k][2] != want[k][2]]
    extra = sorted(set(got) - set(want))
    nvfp4 = sum(1 for k in want if k.endswith(".weight_scale_2"))
    report(f"quantize --scope {scope}: {len(want)} tensors ({nvfp4} NVFP4) bit-identical to the reference",
           not diff and not extra, f"differ: {diff[:5]} extra: {extra[:5]}")
    shards = [f for f in os.listdir(out) if f.endswith(".safetensors")]
    hf = json.load(open(os.path.join(out, "hf_quant_config.json")))
    cfg = json.load(open(os.path.join(out, "config.json")))
    report(f"{scope}: shards + index + hf_quant_config.json + quantization_config",
           len(shards) > 1 and hf["quantization"]["group_size"] == 16
           and cfg["quantization_config"]["quant_method"] == "modelopt", f"{shards} {hf} {cfg.get('quantization_config')}")
    rc, out_text, err = run("info", "-m", out)
    report(f"{scope}: output loads (format cross-check passes)", rc == 0 and "NVFP4" in out_text, err)
    rc, out_text, err = run("generate", "-m", out, "--ids", "5 6 7 8 9 10 11 12 13 14", "-n", "4",
                            "--temperature", "0")
    report(f"{scope}: output generates", rc == 0 and len(out_text.split()) == 4, err)
    report(f"{scope}: no partial directory left", not any(".partial-" in f for f in os.listdir(tmp)))

# --- quantizer errors
expect_error("output exists", ["quantize", "-m", BASE, "-o", tmp, "--format", "nvfp4"], "already exists")
expect_error("input already quantized",
             ["quantize", "-m", os.path.join(QUANT, "q-nvfp4-ct"), "-o", os.path.join(tmp, "x"), "--format", "nvfp4"],
             "already quantized")
expect_error("K not a multiple of 16",
             ["quantize", "-m", os.path.join(MODELS, "tiny-fsf-f32"), "-o", os.path.join(tmp, "y"), "--format", "nvfp4"],
             "down_proj.weight", "multiple of 16")
expect_error("unknown format", ["quantize", "-m", BASE, "-o", os.path.join(tmp, "z"), "--format", "int3"], "int3",
             status=2)
nan_in = copy_model(BASE)
with open(os.path.join(nan_in, "model.safetensors"), "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    f.seek(8 + n + json.loads(f.read(n))["model.layers.1.mlp.experts.2.gate_proj.weight"]["data_offsets"][0] + 20)
    f.write(struct.pack("<f", float("nan")))
expect_error("NaN in a weight to quantize (was written as zeros)",
             ["quantize", "-m", nan_in, "-o", os.path.join(tmp, "n"), "--format", "nvfp4"],
             "model.layers.1.mlp.experts.2.gate_proj.weight", "NaN at element 5")
check_gone = not os.path.exists(os.path.join(tmp, "n"))
report("a failed quantize leaves no output", check_gone, os.path.join(tmp, "n"))
shutil.rmtree(nan_in)
broken = copy_model(os.path.join(QUANT, "q-fp8-block"))
rewrite_header(os.path.join(broken, "model.safetensors"),
               lambda h: h.pop("model.layers.2.mlp.experts.3.up_proj.weight_scale_inv"))
expect_error("failure mid-write (FP8 scale missing)",
             ["quantize", "-m", broken, "-o", os.path.join(tmp, "w"), "--format", "nvfp4"], "weight_scale_inv")
report("failure mid-write leaves no output and no partial directory",
       not os.path.exists(os.path.join(tmp, "w")) and not any(".partial-" in f for f in os.listdir(tmp)),
       str(os.listdir(tmp)))
shutil.rmtree(broken)

# --- loader errors on corrupt quantized checkpoints
EXPERT = "model.layers.1.mlp.experts.2.gate_proj"
d = copy_model(os.path.join(QUANT, "q-nvfp4-modelopt-experts"))
st = os.path.join(d, "model.safetensors")
rewrite_header(st, lambda h: h.pop(EXPERT + ".weight_scale"))
expect_error("NVFP4 scale missing", ["info", "-m", d], EXPERT + ".weight_scale", "missing")
shutil.rmtree(d)
d = copy_model(os.path.join(QUANT, "q-nvfp4-modelopt-experts"))
st = os.path.join(d, "model.safetensors")
rewrite_header(st, lambda h: h[EXPERT + ".weight_scale"].update(
    shape=[16, 8], data_offsets=[h[EXPERT + ".weight_scale"]["data_offsets"][0],
                                 h[EXPERT + ".weight_scale"]["data_offsets"][0] + 128]))
expect_error("NVFP4 scale of the wrong shape", ["info", "-m", d], EXPERT + ".weight_scale", "[16, 8]", "[32, 4]")
shutil.rmtree(d)
d = copy_model(os.path.join(QUANT, "q-nvfp4-modelopt-experts"))
poke(os.path.join(d, "model.safetensors"), EXPERT + ".weight_scale", 0x7F)
expect_error("NaN block scale", ["info", "-m", d], EXPERT, "NaN")
poke(os.path.join(d, "model.safetensors"), EXPERT + ".weight_scale", 0xB8)  # E4M3 -1.0
expect_error("negative block scale (was taken: the block's signs flipped)", ["info", "-m", d], EXPERT, "negative")
shutil.rmtree(d)
d = copy_model(os.path.join(QUANT, "q-nvfp4-modelopt-experts"))
with open(os.path.join(d, "model.safetensors"), "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    f.seek(8 + n + json.loads(f.read(n))[EXPERT + ".weight_scale_2"]["data_offsets"][0])
    f.write(struct.pack("<f", -1.0))
expect_error("negative global scale (was taken)", ["info", "-m", d], EXPERT, "weight_scale_2", "not a finite number >= 0")
shutil.rmtree(d)
# tiny-fsf-f32 has moe_intermediate_size 24: store one expert's down_proj [64, 24] as NVFP4
d = copy_model(os.path.join(MODELS, "tiny-fsf-f32"))
tensors = read_safetensors(os.path.join(d, "model.safetensors"))
down = "model.layers.1.mlp.experts.0.down_proj"
del tensors[down + ".weight"]
tensors[down + ".weight"] = ("U8", [64, 12], bytes(64 * 12))
tensors[down + ".weight_scale"] = ("F8_E4M3", [64, 1], bytes([0x38]) * 64)
tensors[down + ".weight_scale_2"] = ("F32", [], struct.pack("<f", 1.0))
write_safetensors(os.path.join(d, "model.safetensors"), tensors)
json.dump({"quantization": {"quant_algo": "NVFP4", "group_size": 16, "exclude_modules": [
    "lm_head", "model.layers.*.self_attn*", "model.layers.0.mlp*", "model.layers.*.mlp.shared_experts*",
    "model.layers.*.mlp.experts.[1-9]*", "model.layers.[23].*", "model.layers.1.mlp.experts.0.gate_proj",
    "model.layers.1.mlp.experts.0.up_proj"]}}, open(os.path.join(d, "hf_quant_config.json"), "w"))
expect_error("K not a multiple of 16 (loader)", ["info", "-m", d], down, "24", "not a multiple of 16")
shutil.rmtree(d)


def expect_json_edit_error(name, model, filename, edit, *needles):
    """A copy of `model` whose `filename` (JSON) went through edit() must be refused naming needles."""
    d = copy_model(os.path.join(QUANT, model))
    path = os.path.join(d, filename)
    doc = json.load(open(path))
    edit(doc)
    json.dump(doc, open(path, "w"))
    expect_error(name, ["info", "-m", d], *needles)
    shutil.rmtree(d)


expect_json_edit_error("format disagrees with the exclude list", "q-nvfp4-modelopt-experts", "hf_quant_config.json",
                       lambda h: h["quantization"]["exclude_modules"].append("model.layers.1.mlp.experts*"),
                       "model.layers.1.mlp.experts.0", "NVFP4", "hf_quant_config.json")
for edit, needles in [(lambda q: q.update(quant_algo="BOGUS"), ["quant_algo", "BOGUS", "not supported"]),
                      (lambda q: q.update(group_size=32), ["NVFP4 group_size is 16", "32"]),
                      (lambda q: q.update(group_size="sixteen"), ["group_size", "must be an integer"])]:
    expect_json_edit_error("hf_quant_config.json " + " ".join(needles[:2]) + " (was taken)",
                           "q-nvfp4-modelopt-experts", "hf_quant_config.json", lambda h: edit(h["quantization"]),
                           "hf_quant_config.json", *needles)
expect_json_edit_error("AWQ inside MIXED_PRECISION (its activation scales are not applied)", "q-nvfp4-modelopt-experts",
                       "hf_quant_config.json", lambda h: h["quantization"].update(
                           quant_algo="MIXED_PRECISION", quantized_layers={"model.layers.1.mlp.experts.0.gate_proj": {
                               "quant_algo": "NVFP4_AWQ", "group_size": 16}}),
                       "model.layers.1.mlp.experts.0.gate_proj", "NVFP4_AWQ", "not supported")
expect_json_edit_error("an ignore pattern that is no regex (was: matches nothing)", "q-nvfp4-ct", "config.json",
                       lambda c: c["quantization_config"]["ignore"].append("re:((("), "re:(((",
                       "not a regular expression")
for bad in ([0, 0], "32", [-1, -1], [32], [2 ** 31, 2 ** 31]):
    expect_json_edit_error("FP8 weight_block_size %s (was a confusing shape error)" % json.dumps(bad), "q-fp8-block",
                           "config.json", lambda c: c["quantization_config"].update(weight_block_size=bad),
                           "weight_block_size must be [B, B]")
expect_json_edit_error("GPTQ bits \"8\" (was taken as 4)", "q-gptq", "config.json",
                       lambda c: c["quantization_config"].update(bits="8"), "\"bits\" must be an integer")
d = copy_model(os.path.join(QUANT, "q-gptq"))
rewrite_header(os.path.join(d, "model.safetensors"), lambda h: h.pop("model.layers.2.mlp.experts.0.down_proj.qzeros"))
expect_error("GPTQ zeros missing", ["info", "-m", d], "qzeros", "missing")
shutil.rmtree(d)
d = copy_model(os.path.join(QUANT, "q-fp8-block"))
with open(os.path.join(d, "model.safetensors"), "r+b") as f:  # a whole float of 0xff bytes is NaN
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    f.seek(8 + n + header["model.layers.0.self_attn.o_proj.weight_scale_inv"]["data_offsets"][0])
    f.write(b"\xff\xff\xff\xff")
expect_error("FP8 NaN block scale", ["info", "-m", d], "o_proj.weight_scale_inv", "NaN")
with open(os.path.join(d, "model.safetensors"), "r+b") as f:
    f.seek(8 + n + header["model.layers.0.self_attn.o_proj.weight_scale_inv"]["data_offsets"][0])
    f.write(struct.pack("<f", -0.5))
expect_error("FP8 negative block scale (was taken)", ["info", "-m", d], "o_proj.weight_scale_inv", "negative")
shutil.rmtree(d)

shutil.rmtree(tmp)
sys.exit(t.finish())
