#!/usr/bin/env python3
"""Trains glint's embedded demo model on the GPU machine (torch + transformers 5.17), then exports it
and the references the tests compare against.

    python3 tools/demo/train.py --data DATA_DIR --out OUT_DIR [--seconds 180] [--smoke]

DATA_DIR is what tools/demo/build_data.py wrote (token ids, tokenizer). The model is a real
GlmMoeDsaForCausalLM (MLA, DSA indexer with index_topk 32 and an IndexCache FSFS pattern, MoE with a
shared expert, one dense layer) plus an MTP layer (spec/GLM5.md §2.10) trained jointly:

  MTP at position p: m = eh_proj([enorm(embed(token[p+1])), hnorm(h[p])]), h = the main model's
  final-norm output (the lm_head input); m -> decoder block (own MLA+DSA+MoE, causal over the MTP
  positions) -> shared_head.norm -> lm_head predicts token[p+2].

The DSA indexer is trained with the DeepSeek-V3.2 auxiliary objective: KL from the main attention
distribution (summed over heads, renormalized) to the indexer's softmax over keys, on inputs detached
from the main model. Stage A (dense warm-up, index_topk >= sequence length) trains everything with
dense attention; stage B turns on the sparse top-32 selection and restricts the KL to the selected
keys. Experts are balanced with the auxiliary-loss-free bias update (DeepSeek-V3).
"""
import argparse
import copy
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import GlmMoeDsaConfig, GlmMoeDsaForCausalLM, PreTrainedTokenizerFast
from transformers.models.glm_moe_dsa import modeling_glm_moe_dsa as glm

SEQ = 512
BATCH = 32
TOPK = 32
MTP_WEIGHT = 0.3
SPECIAL = {"eot": "<|endoftext|>", "user": "<|user|>", "observation": "<|observation|>"}


def make_config(tok):
    eos = [tok.convert_tokens_to_ids(SPECIAL[k]) for k in ("eot", "user", "observation")]
    return GlmMoeDsaConfig(
        vocab_size=4096, hidden_size=256, intermediate_size=768, moe_intermediate_size=256,
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8,
        num_experts_per_tok=2, n_shared_experts=1, q_lora_rank=128, kv_lora_rank=64, qk_nope_head_dim=32,
        qk_rope_head_dim=16, v_head_dim=32, index_n_heads=8, index_head_dim=32, index_topk=TOPK,
        first_k_dense_replace=1, max_position_embeddings=4096, index_topk_pattern="FSFS",
        rope_parameters={"rope_theta": 10000.0, "rope_type": "default"}, routed_scaling_factor=2.5,
        n_group=1, topk_group=1, norm_topk_prob=True, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=eos, pad_token_id=eos[0])


class MTP(torch.nn.Module):
    """The NextN layer (stored as layer index num_hidden_layers, like GLM-5's layer 78)."""

    def __init__(self, cfg):
        super().__init__()
        d = cfg.hidden_size
        self.index = cfg.num_hidden_layers
        mcfg = copy.deepcopy(cfg)
        mcfg.num_hidden_layers = cfg.num_hidden_layers + 1
        mcfg.indexer_types = list(cfg.indexer_types) + ["full"]
        mcfg.mlp_layer_types = list(cfg.mlp_layer_types) + ["sparse"]
        mcfg.layer_types = list(cfg.layer_types) + ["deepseek_sparse_attention"]
        mcfg._attn_implementation = "eager"
        self.enorm = glm.GlmMoeDsaRMSNorm(d, cfg.rms_norm_eps)
        self.hnorm = glm.GlmMoeDsaRMSNorm(d, cfg.rms_norm_eps)
        self.eh_proj = torch.nn.Linear(2 * d, d, bias=False)
        self.block = glm.GlmMoeDsaDecoderLayer(mcfg, self.index)
        self.shared_head_norm = glm.GlmMoeDsaRMSNorm(d, cfg.rms_norm_eps)

    def forward(self, hidden, next_embeds, position_embeddings, mask, position_ids):
        m = self.eh_proj(torch.cat([self.enorm(next_embeds), self.hnorm(hidden)], dim=-1))
        m, _ = self.block(m, attention_mask=mask, position_embeddings=position_embeddings, position_ids=position_ids)
        return self.shared_head_norm(m)

    def export(self):
        """Tensors under the checkpoint names of layer `index` (per-expert, as HF saves experts)."""
        p = f"model.layers.{self.index}."
        out = {p + "enorm.weight": self.enorm.weight, p + "hnorm.weight": self.hnorm.weight,
               p + "eh_proj.weight": self.eh_proj.weight, p + "shared_head.norm.weight": self.shared_head_norm.weight}
        for name, t in self.block.state_dict().items():
            if name == "mlp.experts.gate_up_proj":
                for e in range(t.shape[0]):
                    gate, up = t[e].chunk(2, dim=0)
                    out[p + f"mlp.experts.{e}.gate_proj.weight"] = gate
                    out[p + f"mlp.experts.{e}.up_proj.weight"] = up
            elif name == "mlp.experts.down_proj":
                for e in range(t.shape[0]):
                    out[p + f"mlp.experts.{e}.down_proj.weight"] = t[e]
            else:
                out[p + name] = t
        return {k: v.detach().float().cpu().contiguous() for k, v in out.items()}


def causal_mask(s, device, dtype=torch.float32):
    return torch.full((s, s), torch.finfo(dtype).min, device=device).triu(1)[None, None]


class IndexerLoss:
    """Captures, for every attention module that runs an indexer, its inputs and its attention
    probabilities (eager attention returns them), and computes the indexer's KL loss."""

    def __init__(self, attention_modules):
        self.inputs, self.probs = {}, {}
        self.modules = [a for a in attention_modules if a.indexer is not None]
        for attn in self.modules:
            attn.register_forward_pre_hook(self._pre(attn), with_kwargs=True)
            attn.register_forward_hook(self._post(attn))

    def _pre(self, attn):
        def hook(module, args, kwargs):
            self.inputs[id(attn)] = (kwargs["hidden_states"], kwargs["position_embeddings"])
        return hook

    def _post(self, attn):
        def hook(module, args, output):
            self.probs[id(attn)] = output[1]
        return hook

    @staticmethod
    def scores(attn, x, position_embeddings):
        """Indexer scores [B, S, T] with gradients into the indexer only (spec §2.5)."""
        idx = attn.indexer
        b, s, _ = x.shape
        x = x.detach()
        q_resid = attn.q_a_layernorm(attn.q_a_proj(x)).detach()
        cos, sin = position_embeddings
        q = idx.wq_b(q_resid).view(b, s, idx.n_heads, idx.head_dim)
        q_rot, q_pass = torch.split(q, [idx.qk_rope_head_dim, idx.head_dim - idx.qk_rope_head_dim], dim=-1)
        k = idx.k_norm(idx.wk(x)).unsqueeze(2)
        k_rot, k_pass = torch.split(k, [idx.qk_rope_head_dim, idx.head_dim - idx.qk_rope_head_dim], dim=-1)
        q_rot, k_rot = glm.apply_rotary_pos_emb_interleave(q_rot, k_rot, cos, sin, unsqueeze_dim=2)
        q = torch.cat([q_rot, q_pass], dim=-1).float()
        k = torch.cat([k_rot, k_pass], dim=-1).squeeze(2).float()
        sc = F.relu(torch.einsum("bshd,btd->bsht", q, k) * idx.softmax_scale)
        w = idx.weights_proj(x).float() * idx.n_heads ** -0.5
        return torch.einsum("bsh,bsht->bst", w, sc)

    def loss(self, sparse):
        total, count = 0.0, 0
        for attn in self.modules:
            if id(attn) not in self.inputs:
                continue
            x, pe = self.inputs[id(attn)]
            scores = self.scores(attn, x, pe)
            s = scores.shape[1]
            causal = torch.ones(s, s, dtype=torch.bool, device=scores.device).tril()
            target = self.probs[id(attn)].float().sum(1).detach()  # [B, S, T], summed over heads
            keep = causal[None].expand_as(scores)
            if sparse:  # only the selected keys (the model attends to the indexer's own top-k)
                masked = scores.detach().masked_fill(~keep, float("-inf"))
                sel = torch.zeros_like(keep).scatter_(-1, masked.topk(min(TOPK, s), dim=-1).indices, True)
                keep = keep & sel
            target = target.masked_fill(~keep, 0)
            target = target / target.sum(-1, keepdim=True).clamp_min(1e-9)
            logp = torch.log_softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
            kl = (target * (torch.log(target.clamp_min(1e-9)) - logp.masked_fill(~keep, 0))).sum(-1)
            total = total + kl.mean()
            count += 1
        self.inputs.clear()
        self.probs.clear()
        return total / max(count, 1)


def set_topk(model, mtp, k):
    for layer in list(model.model.layers) + [mtp.block]:
        if layer.self_attn.indexer is not None:
            layer.self_attn.indexer.index_topk = k


def train_step_losses(model, mtp, indexer_loss, ids, sparse):
    inputs = ids[:, :-2]
    out = model.model(inputs, use_cache=False, return_dict=True)
    hidden = out.last_hidden_state  # after the final norm: the lm_head input
    logits = model.lm_head(hidden)
    main = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:-1].reshape(-1))
    # MTP over positions 0..S-1: hidden[p] + embed(token[p+1]) -> token[p+2]
    s = inputs.shape[1]
    pos = torch.arange(s, device=ids.device)[None]
    pe = model.model.rotary_emb(hidden, pos)
    mtp_hidden = mtp(hidden, model.model.embed_tokens(ids[:, 1:-1]), pe, causal_mask(s, ids.device), pos)
    mtp_logits = model.lm_head(mtp_hidden)
    mtp_loss = F.cross_entropy(mtp_logits.float().reshape(-1, mtp_logits.shape[-1]), ids[:, 2:].reshape(-1))
    kl = indexer_loss.loss(sparse)  # main layers and the MTP block
    return main, mtp_loss, kl


class Balancer:
    """Auxiliary-loss-free load balancing: nudge each router's selection bias toward equal load."""

    def __init__(self, layers, rate=1e-3):
        self.rate, self.routers, self.loads = rate, [], {}
        for layer in layers:
            if hasattr(layer.mlp, "gate"):
                self.routers.append(layer.mlp.gate)
                layer.mlp.gate.register_forward_hook(self._hook(layer.mlp.gate))

    def _hook(self, router):
        def hook(module, args, out):
            _, _, idx = out
            self.loads[id(router)] = torch.bincount(idx.reshape(-1), minlength=router.num_experts).float()
        return hook

    @torch.no_grad()
    def update(self):
        for r in self.routers:
            load = self.loads.get(id(r))
            if load is not None:
                r.e_score_correction_bias += self.rate * torch.sign(load.mean() - load)


def batches(tokens, gen, device):
    n = tokens.shape[0] - SEQ - 3
    while True:
        starts = torch.randint(0, n, (BATCH,), generator=gen)
        yield torch.stack([tokens[s: s + SEQ + 2] for s in starts.tolist()]).to(device, non_blocking=True)


def export(model, mtp, cfg, tok, data_dir, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tensors = {}
    for f in sorted(os.listdir(tmp)):
        if f.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(tmp, f)))
    tensors.update(mtp.export())
    # BF16 weights; the router correction bias stays FP32 as in GLM-5 checkpoints
    tensors = {k: (v.float() if k.endswith("e_score_correction_bias") else v.to(torch.bfloat16)).contiguous()
               for k, v in tensors.items()}
    names = sorted(tensors)
    shards, current, size = [], {}, 0
    for n in names:
        nbytes = tensors[n].numel() * tensors[n].element_size()
        if current and size + nbytes > 12_000_000:
            shards.append(current)
            current, size = {}, 0
        current[n] = tensors[n]
        size += nbytes
    shards.append(current)
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(out_dir, fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              open(os.path.join(out_dir, "model.safetensors.index.json"), "w"), indent=2)
    config = json.load(open(os.path.join(tmp, "config.json")))
    config.update(num_nextn_predict_layers=1, dtype="bfloat16")
    json.dump(config, open(os.path.join(out_dir, "config.json"), "w"), indent=2)
    json.dump({"eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id, "do_sample": True,
               "temperature": 0.7, "top_p": 0.9, "transformers_version": "5.17.0"},
              open(os.path.join(out_dir, "generation_config.json"), "w"), indent=2)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(data_dir, f), out_dir)
    shutil.rmtree(tmp)
    return total


@torch.no_grad()
def evaluate(model, mtp, indexer_loss, heldout, device):
    """Held-out loss, MTP acceptance (greedy draft == greedy target) and top-k attention coverage."""
    model.eval()
    mtp.eval()
    n = (heldout.shape[0] - 2) // (SEQ + 2)
    ids = heldout[: n * (SEQ + 2)].view(n, SEQ + 2)[:16].to(device)
    hidden = model.model(ids[:, :-2], use_cache=False, return_dict=True).last_hidden_state
    logits = model.lm_head(hidden)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:-1].reshape(-1)).item()
    s = hidden.shape[1]
    pos = torch.arange(s, device=device)[None]
    mtp_logits = model.lm_head(mtp(hidden, model.model.embed_tokens(ids[:, 1:-1]),
                                   model.model.rotary_emb(hidden, pos), causal_mask(s, device), pos))
    draft = mtp_logits[:, :-1].argmax(-1)   # prediction of token p+2 from position p
    target = logits[:, 1:].argmax(-1)       # the main model's prediction of token p+2 at p+1
    acceptance = (draft == target).float().mean().item()
    # coverage: share of the dense attention mass (summed over heads) on the indexer's top-k keys,
    # over query rows that see more than k keys, main-model F layers
    set_topk(model, mtp, 1 << 20)
    indexer_loss.inputs.clear(), indexer_loss.probs.clear()
    model.model(ids[:, :-2], use_cache=False)
    cover, rows = 0.0, 0
    causal = torch.ones(s, s, dtype=torch.bool, device=device).tril()
    for attn in indexer_loss.modules:
        if id(attn) not in indexer_loss.inputs:
            continue
        x, pe = indexer_loss.inputs[id(attn)]
        scores = IndexerLoss.scores(attn, x, pe).masked_fill(~causal, float("-inf"))
        sel = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, scores.topk(TOPK, dim=-1).indices, True)
        mass = indexer_loss.probs[id(attn)].float().sum(1)
        mass = mass / mass.sum(-1, keepdim=True)
        covered = (mass * sel).sum(-1)[:, TOPK:]
        cover += covered.sum().item()
        rows += covered.numel()
    indexer_loss.inputs.clear(), indexer_loss.probs.clear()
    set_topk(model, mtp, TOPK)
    model.train()
    mtp.train()
    return dict(heldout_loss=loss, heldout_ppl=math.exp(loss), mtp_acceptance=acceptance,
                topk_attention_coverage=cover / max(rows, 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    device = "cuda"
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(args.data, "tokenizer.json"))
    cfg = make_config(tok)
    cfg._attn_implementation = "eager"
    model = GlmMoeDsaForCausalLM(cfg).to(device)
    mtp = MTP(cfg).to(device)
    params = list(model.parameters()) + list(mtp.parameters())
    n_params = sum(p.numel() for p in params)
    print(f"parameters: {n_params / 1e6:.2f} M (main {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M)")
    train = torch.from_numpy(np.fromfile(os.path.join(args.data, "train.u16"), dtype=np.uint16).astype(np.int64))
    heldout = torch.from_numpy(np.fromfile(os.path.join(args.data, "heldout.u16"), dtype=np.uint16).astype(np.int64))
    opt = torch.optim.AdamW(params, lr=3e-3, betas=(0.9, 0.95), weight_decay=0.01)
    indexer_loss = IndexerLoss([layer.self_attn for layer in model.model.layers] + [mtp.block.self_attn])
    balancer = Balancer(list(model.model.layers) + [mtp.block])
    seconds = 10 if args.smoke else args.seconds
    dense_until = 0.6 * seconds
    set_topk(model, mtp, 1 << 20)
    start, step, sparse = time.time(), 0, False
    data = batches(train, gen, device)
    while time.time() - start < seconds:
        elapsed = time.time() - start
        if not sparse and elapsed > dense_until:
            sparse = True
            set_topk(model, mtp, TOPK)
            print(f"step {step}: sparse attention (top-{TOPK}) from here on")
        lr = 3e-3 * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / seconds))))
        for g in opt.param_groups:
            g["lr"] = lr
        ids = next(data)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            main_loss, mtp_loss, kl = train_step_losses(model, mtp, indexer_loss, ids, sparse)
        loss = main_loss + MTP_WEIGHT * mtp_loss + kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        balancer.update()
        if step % 100 == 0:
            print(f"step {step} t={elapsed:.0f}s lr={lr:.2e} loss {main_loss.item():.3f} mtp {mtp_loss.item():.3f} "
                  f"indexer-kl {kl.item():.3f}", flush=True)
        step += 1
    print(f"trained {step} steps, {step * BATCH * SEQ / 1e6:.1f} M tokens in {time.time() - start:.0f} s")
    metrics = evaluate(model, mtp, indexer_loss, heldout, device)
    metrics.update(steps=step, tokens=step * BATCH * SEQ, parameters=n_params)
    print(json.dumps(metrics))
    if args.smoke:
        return
    total = export(model, mtp, cfg, tok, args.data, args.out)
    metrics["checkpoint_bytes"] = total
    json.dump(metrics, open(os.path.join(args.out, "training_metrics.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
