#!/usr/bin/env python3
"""Reference logits of the demo model's MTP layer (layer 4), computed by the training code's MTP
module (tools/demo/train.py, transformers' GlmMoeDsaDecoderLayer inside) on the shipped BF16
checkpoint in float32:

    python3 tools/demo/make_mtp_reference.py --model models/demo --out tests/fixtures/demo

For the first reference chat (prompt + its greedy continuation, S tokens) it writes
mtp_reference.json (the ids, the argmax of each MTP row and its top-1 margin) and mtp_logits.f32
(float32 little-endian [S-1, vocab]): row p is the MTP prediction of token p+2 from the main
model's final-norm hidden state at p and the embedding of token p+1.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import MTP, causal_mask  # noqa: E402
from transformers import GlmMoeDsaForCausalLM  # noqa: E402


def load_mtp(model_dir, cfg):
    mtp = MTP(cfg)
    index = json.load(open(os.path.join(model_dir, "model.safetensors.index.json")))
    tensors = {}
    for f in sorted(set(index["weight_map"].values())):
        tensors.update(load_file(os.path.join(model_dir, f)))
    p = f"model.layers.{cfg.num_hidden_layers}."
    state = {"enorm.weight": tensors[p + "enorm.weight"], "hnorm.weight": tensors[p + "hnorm.weight"],
             "eh_proj.weight": tensors[p + "eh_proj.weight"],
             "shared_head_norm.weight": tensors[p + "shared_head.norm.weight"]}
    E = cfg.n_routed_experts
    gate_up, down = [], []
    for e in range(E):
        gate_up.append(torch.cat([tensors[p + f"mlp.experts.{e}.gate_proj.weight"],
                                  tensors[p + f"mlp.experts.{e}.up_proj.weight"]], dim=0))
        down.append(tensors[p + f"mlp.experts.{e}.down_proj.weight"])
    state["block.mlp.experts.gate_up_proj"] = torch.stack(gate_up)
    state["block.mlp.experts.down_proj"] = torch.stack(down)
    for name, t in tensors.items():
        if name.startswith(p) and ".mlp.experts." not in name and not any(
                name == p + k for k in ("enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight")):
            state["block." + name[len(p):]] = t
    missing, unexpected = mtp.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return mtp.float().eval()


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    model = GlmMoeDsaForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager").eval()
    cfg = model.config
    mtp = load_mtp(args.model, cfg)
    ref = json.load(open(os.path.join(args.out, "reference.json")))
    first = ref["prompts"][0]
    ids = torch.tensor([first["prompt_ids"] + first["greedy_ids"]])
    hidden = model.model(ids, use_cache=False).last_hidden_state  # final-norm output, [1, S, D]
    s = ids.shape[1] - 1
    pos = torch.arange(s)[None]
    out = mtp(hidden[:, :s], model.model.embed_tokens(ids[:, 1:]), model.model.rotary_emb(hidden, pos),
              causal_mask(s, "cpu"), pos)
    logits = model.lm_head(out)[0].float()  # [S-1, V]
    top2 = logits.topk(2, dim=-1)
    logits.numpy().astype("<f4").tofile(os.path.join(args.out, "mtp_logits.f32"))
    json.dump(dict(oracle="tools/demo/train.py MTP module (transformers 5.17 decoder layer), float32, on models/demo",
                   ids=ids[0].tolist(), vocab=logits.shape[1], argmax=top2.indices[:, 0].tolist(),
                   min_margin=float((top2.values[:, 0] - top2.values[:, 1]).min())),
              open(os.path.join(args.out, "mtp_reference.json"), "w"))
    print(f"MTP reference: {s} rows, min top-1 margin {float((top2.values[:, 0] - top2.values[:, 1]).min()):.3e}")


if __name__ == "__main__":
    main()
