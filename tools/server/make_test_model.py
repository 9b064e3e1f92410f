#!/usr/bin/env python3
"""Writes a tiny random GlmMoeDsaForCausalLM checkpoint for the server tests (standard library only).

Shapes and tensor names come from tests/fixtures/models/tiny-fsf-f32 (4 layers, hidden 64, FSFS
indexer pattern); embeddings and lm_head are resized to the GLM-5-style test tokenizer's vocabulary
(tests/fixtures/tokenizer/glm5-style), whose tokenizer files are copied beside the weights together
with a GLM chat template. The weights are random: the model emits gibberish, which is enough to test
HTTP shapes, batching and exactness.

usage: make_test_model.py REPO_ROOT OUT_DIR [--context 2048] [--chain "ID ID ID ..."]

--chain makes a scripted model instead: every layer's output projections are zero, so the hidden
state is the current token's embedding, and lm_head is built so that each chain token is followed
by the next one (greedy). A prompt ending in the first chain token then yields the rest of the
chain exactly, e.g. a reasoning block and a glm47 tool call, through the real forward pass.
"""
import array
import json
import os
import random
import shutil
import struct
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    root, out = sys.argv[1], sys.argv[2]
    args = sys.argv[3:]
    context, chain = 2048, None
    while args:
        if args[0] == "--context":
            context = int(args[1])
        elif args[0] == "--chain":
            chain = [int(x) for x in args[1].split()]
        else:
            sys.exit("unknown option " + args[0])
        args = args[2:]
    if chain is not None and len(set(chain[:-1])) != len(chain) - 1:
        sys.exit("--chain: a token may appear only once before the last position: %s" % chain)
    base = os.path.join(root, "tests/fixtures/models/tiny-fsf-f32")
    tok_dir = os.path.join(root, "tests/fixtures/tokenizer/glm5-style")
    template = os.path.join(root, "tests/fixtures/chat/templates/glm-4.7.jinja")

    tok = json.load(open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8"))
    ids = list(tok["model"]["vocab"].values()) + [t["id"] for t in tok["added_tokens"]]
    vocab = max(ids) + 1
    special = {t["content"]: t["id"] for t in tok["added_tokens"]}
    eos = [special["<|endoftext|>"], special["<|user|>"], special["<|observation|>"]]

    config = json.load(open(os.path.join(base, "config.json")))
    config.update(vocab_size=vocab, eos_token_id=eos, pad_token_id=eos[0], bos_token_id=None,
                  max_position_embeddings=context)
    with open(os.path.join(base, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)

    rng = random.Random(1234)
    names = sorted(header)
    tensors = []
    for name in names:
        shape = list(header[name]["shape"])
        if name in ("lm_head.weight", "model.embed_tokens.weight"):
            shape[0] = vocab
        count = 1
        for d in shape:
            count *= d
        if chain is not None and (name.endswith("o_proj.weight") or name.endswith("down_proj.weight")):
            values = array.array("f", [0.0]) * count  # layers add nothing: h = embedding
        elif chain is not None and name == "lm_head.weight":
            values = array.array("f", (rng.gauss(0.0, 0.01) for _ in range(count)))
            deferred_head = (len(tensors), shape)
        elif name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            values = array.array("f", [1.0]) * count
        elif name.endswith(".bias"):
            values = array.array("f", [0.0]) * count
        else:
            # Larger scale on the head so greedy decisions have clear margins.
            scale = 0.5 if name == "lm_head.weight" else (0.3 if "embed" in name else 0.08)
            if chain is not None and "embed" in name:
                scale = 1.0
            values = array.array("f", (rng.gauss(0.0, scale) for _ in range(count)))
        tensors.append((name, shape, values))
    if chain is not None:
        # lm_head[next] = 0.2 * embed[token]: the logit of `next` is large exactly after `token`.
        embed = next(v for n, _, v in tensors if n == "model.embed_tokens.weight")
        index, shape = deferred_head
        head = tensors[index][2]
        D = shape[1]
        for token, following in zip(chain, chain[1:]):
            for d in range(D):
                head[following * D + d] += 0.2 * embed[token * D + d]
    for _, _, v in tensors:
        if sys.byteorder != "little":
            v.byteswap()
    tensors = [(n, sh, v.tobytes()) for n, sh, v in tensors]

    os.makedirs(out, exist_ok=True)
    meta, offset = {}, 0
    for name, shape, data in tensors:
        meta[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    head = json.dumps(meta).encode()
    head += b" " * (-len(head) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for _, _, data in tensors:
            f.write(data)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": eos, "pad_token_id": eos[0], "temperature": 1.0, "top_p": 0.95}, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, name), os.path.join(out, name))
    shutil.copy(template, os.path.join(out, "chat_template.jinja"))


if __name__ == "__main__":
    main()
