#!/usr/bin/env python3
"""References for the demo model, from transformers 5.17 (float32 compute, eager) on the exported
BF16 checkpoint: greedy continuations of 10 chat prompts (chosen among held-out chats for a clear
top-1 margin at every step) and the perplexity of a held-out text file with glint perplexity's exact
windowing (windows of 512 tokens from the start, each predicted from its own start).

    python3 tools/demo/make_references.py --model models/demo --data DATA_DIR --out FILE.json
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from jinja2.sandbox import ImmutableSandboxedEnvironment
from transformers import GlmMoeDsaForCausalLM, PreTrainedTokenizerFast

PPL_WINDOW = 512
N_PROMPTS = 10
GREEDY = 32
MARGIN = 1e-3


def template(model_dir):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    return env.from_string(open(os.path.join(model_dir, "chat_template.jinja")).read())


@torch.no_grad()
def greedy(model, ids, n):
    seq, margins = list(ids), []
    for _ in range(n):
        logits = model(torch.tensor([seq]), use_cache=False).logits[0, -1].float()
        top2 = logits.topk(2)
        margins.append((top2.values[0] - top2.values[1]).item())
        seq.append(int(top2.indices[0]))
    return seq[len(ids):], min(margins)


@torch.no_grad()
def perplexity(model, ids):
    nll, count = 0.0, 0
    for start in range(0, len(ids), PPL_WINDOW):
        window = ids[start: start + PPL_WINDOW]
        if len(window) < 2:
            continue
        logits = model(torch.tensor([window]), use_cache=False).logits[0].float()
        nll += F.cross_entropy(logits[:-1], torch.tensor(window[1:]), reduction="sum").item()
        count += len(window) - 1
    return math.exp(nll / count), count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = GlmMoeDsaForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager").eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(args.model, "tokenizer.json"))
    tmpl = template(args.model)
    prompts = []
    for line in open(os.path.join(args.data, "heldout_conversations.jsonl")):
        chat = json.loads(line)
        user_turn = next(i for i, m in enumerate(chat["messages"]) if m["role"] == "user")
        kwargs = {} if chat["think"] else {"enable_thinking": False}
        text = tmpl.render(messages=chat["messages"][: user_turn + 1], tools=chat["tools"],
                           add_generation_prompt=True, **kwargs)
        ids = tok.encode(text, add_special_tokens=False)
        cont, margin = greedy(model, ids, GREEDY)
        if margin >= MARGIN:
            prompts.append(dict(request=dict(messages=chat["messages"][: user_turn + 1], tools=chat["tools"],
                                             add_generation_prompt=True,
                                             chat_template_kwargs=kwargs), prompt=text, prompt_ids=ids,
                                greedy_ids=cont, greedy_text=tok.decode(cont), min_margin=margin))
            print(f"prompt {len(prompts)}: margin {margin:.2e}: {tok.decode(cont)!r}", file=sys.stderr)
        if len(prompts) == N_PROMPTS:
            break
    text = open(os.path.join(args.data, "heldout.txt"), encoding="utf-8").read()
    ppl_ids = tok.encode(text, add_special_tokens=True)
    ppl, predicted = perplexity(model, ppl_ids)
    print(f"perplexity {ppl:.4f} over {predicted} predicted tokens", file=sys.stderr)
    json.dump(dict(oracle="transformers 5.17 float32 eager on the BF16 checkpoint", prompts=prompts,
                   perplexity=dict(file="heldout.txt", window=PPL_WINDOW, tokens=len(ppl_ids),
                                   predicted=predicted, value=ppl)),
              open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
