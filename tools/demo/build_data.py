#!/usr/bin/env python3
"""Builds the demo model's training data, its tokenizer, and the held-out text (see DATA.md).

Runs on the dev machine (Debian): installs dict-gcide, dict-jargon, dict-devil and fortunes-min if
missing, turns their entries into GLM-5 chat conversations (plain answers, answers with <think>
reasoning, and `lookup` tool calls with a tool result turn), renders them with
models/demo/chat_template.jinja (jinja2 configured as transformers does), trains a GLM-5-style
byte-level BPE tokenizer on the rendered text, and writes token ids for training.

    python3 tools/demo/build_data.py OUT_DIR

OUT_DIR gets: tokenizer.json, tokenizer_config.json, train.u16 / heldout.u16 (token ids),
heldout_conversations.jsonl, heldout.txt (plain text for perplexity), stats.json.
"""
import gzip
import json
import os
import random
import re
import subprocess
import sys

import numpy as np
import tokenizers
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tokenizer"))
from train_glm5_style import GLM_SPECIAL_TOKENS, GLM_SPLIT_REGEX  # noqa: E402  (one definition of both)

REQUIRED_TOKENIZERS = "0.23.3"
BPE_VOCAB = 4000
MODEL_VOCAB = 4096  # BPE + 36 specials, padded (GLM-5 pads 154856 ids to 154880)
SEED = 1234
HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "..", "..", "models", "demo", "chat_template.jinja")
PACKAGES = ["dict-gcide", "dict-jargon", "dict-devil", "fortunes-min"]
LOOKUP_TOOL = {"type": "function", "function": {
    "name": "lookup", "description": "Look up a word in a dictionary and return its entry.",
    "parameters": {"type": "object", "properties": {
        "word": {"type": "string", "description": "the word to look up"},
        "source": {"type": "string", "enum": ["gcide", "jargon", "devil"]},
        "max_senses": {"type": "integer", "description": "how many senses to return"}},
        "required": ["word"]}}}
POS_NAMES = {"n.": "noun", "v.": "verb", "v. t.": "transitive verb", "v. i.": "intransitive verb",
             "a.": "adjective", "adj.": "adjective", "adv.": "adverb", "prep.": "preposition",
             "conj.": "conjunction", "interj.": "interjection", "pron.": "pronoun"}


def ensure_packages():
    missing = [p for p in PACKAGES if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def dictd_entries(name):
    """(headword, raw entry text) from /usr/share/dictd/NAME.{index,dict.dz}."""
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    num = lambda s: sum(b64.index(c) * 64 ** i for i, c in enumerate(reversed(s)))
    data = gzip.open(f"/usr/share/dictd/{name}.dict.dz").read()
    for line in open(f"/usr/share/dictd/{name}.index", encoding="utf-8", errors="replace"):
        word, off, length = line.rstrip("\n").split("\t")[:3]
        if word.startswith("00") or word.startswith("00-"):
            continue
        yield word, data[num(off): num(off) + num(length)].decode("utf-8", "replace")


def clean(text):
    text = re.sub(r"\[[^\]]*\]", "", text)  # [WordNet 1.5], [Obs.], [sic]
    text = text.replace("{", "").replace("}", "").replace('"', "").replace("*", "")
    return re.sub(r"\s+", " ", text).strip()


def first_sentences(text, limit=220):
    out = ""
    for sentence in re.split(r"(?<=[.;!?])\s+", text):
        if out and len(out) + len(sentence) > limit:
            break
        out = (out + " " + sentence).strip()
    return out[:limit].rstrip(" ;,") + ("" if out.endswith((".", "!", "?")) else ".")


GCIDE_POS = re.compile(r"\b(v\. t|v\. i|n|v|a|adj|adv|prep|conj|interj|pron)\.")


def gcide_definitions():
    """(word, part of speech, first sense) for single-word GCIDE entries whose headword is the word."""
    seen = set()
    for word, raw in dictd_entries("gcide"):
        w = word.strip().lower()
        head = re.match(r"([^\\\n]+?)\s*\\[^\\]*\\(.*)", raw)
        if not re.fullmatch(r"[a-z]{3,16}", w) or w in seen or not head or head.group(1).strip().lower() != w:
            continue
        after_pron = re.sub(r"\[[^\]]*\]", "", raw.split("\\", 2)[2], flags=re.S)  # etymologies span lines
        first_line, _, body = after_pron.partition("\n")
        pos_match = GCIDE_POS.search(first_line)
        pos = POS_NAMES.get(pos_match.group(0), "") if pos_match else ""
        first = re.split(r"\n\s*\n|\n\s*2\.\s", body)[0]
        first = re.sub(r"^\s*1\.\s*", "", first.strip())
        first = re.sub(r"--\s*[A-Z][\w. ]*\.?", "", first)  # citations
        first = re.sub(r"\([A-Z][a-z]+\.(\s*[A-Z][a-z]+\.)*\)", "", first)  # (Mus.), (Law)
        sense = clean(first)
        if (len(sense) < 15 or not sense[0].isalpha() or sense.startswith(("Syn", "See", "Same as")) or
                "Etym" in sense):
            continue
        seen.add(w)
        yield w, pos, first_sentences(sense)


def jargon_definitions():
    for word, raw in dictd_entries("jargon"):
        parts = raw.split("\n\n")
        body = clean(" ".join(p for p in parts[1:3]))
        if word and len(body) > 20:
            yield word, first_sentences(body, 260)


def devil_definitions():
    for word, raw in dictd_entries("devil"):
        text = clean(raw.split("\n\n")[0])
        text = re.sub(r"^[A-Z' -]+,\s*([a-z. ]+\.)?\s*", "", text)
        if len(text) > 10:
            yield word.lower(), first_sentences(text, 260)


def fortunes():
    for name in ["fortunes", "literature", "riddles"]:
        path = f"/usr/share/games/fortunes/{name}"
        if os.path.exists(path):
            for f in open(path, encoding="utf-8", errors="replace").read().split("\n%\n"):
                f = f.strip()
                if 10 < len(f) < 400:
                    yield f


DEFINE_QUESTIONS = ["What does \"{w}\" mean?", "Define {w}.", "What is the meaning of {w}?",
                    "What does the word {w} mean?", "Can you explain the word \"{w}\"?", "{w}: what does it mean?",
                    "Tell me what {w} means.", "Meaning of {w}?"]
JARGON_QUESTIONS = ["What is {w} in hacker slang?", "What does \"{w}\" mean in the Jargon File?",
                    "Explain the hacker term {w}."]
DEVIL_QUESTIONS = ["How does the Devil's Dictionary define {w}?", "What is {w}, according to Ambrose Bierce?",
                   "Give me the cynic's definition of {w}."]
FORTUNE_QUESTIONS = ["Tell me a fortune.", "Give me a quote.", "Say something wise.", "Fortune cookie, please.",
                     "Tell me something to think about."]
SYSTEMS = ["You are a concise dictionary assistant.", "Answer briefly.", "You are glint's demo model.",
           "You explain words in one or two sentences."]


def conversation(rng, kind, item):
    msgs, tools = [], None
    think = rng.random() < 0.4
    if rng.random() < 0.25:
        msgs.append({"role": "system", "content": rng.choice(SYSTEMS)})
    if kind == "define":
        w, pos, d = item
        q = rng.choice(DEFINE_QUESTIONS).format(w=w)
        answer = f"\"{w.capitalize()}\"{' (' + pos + ')' if pos else ''} means: {d}"
        reasoning = (f"The user asks about the word \"{w}\". "
                     f"{'It is a ' + pos + '. ' if pos else ''}I will give its main sense in one sentence.")
    elif kind == "jargon":
        w, d = item
        q, answer = rng.choice(JARGON_QUESTIONS).format(w=w), f"In hacker jargon, {w} is: {d}"
        reasoning = f"\"{w}\" is a hacker term from the Jargon File. I will explain it briefly."
    elif kind == "devil":
        w, d = item
        q, answer = rng.choice(DEVIL_QUESTIONS).format(w=w), f"Bierce defines {w.upper()} as: {d}"
        reasoning = f"The Devil's Dictionary has a satirical entry for \"{w}\". I will quote its sense."
    elif kind == "fortune":
        q, answer = rng.choice(FORTUNE_QUESTIONS), item
        reasoning = "The user wants a fortune. I will offer one."
    msgs.append({"role": "user", "content": q})
    msgs.append({"role": "assistant", "content": answer, **({"reasoning_content": reasoning} if think else {})})
    return msgs, tools, think


def tool_conversation(rng, kind, item):
    w, d = item[0], item[-1]
    source = {"define": "gcide", "jargon": "jargon", "devil": "devil"}[kind]
    args = {"word": w}
    if rng.random() < 0.3:
        args["source"] = source
    if rng.random() < 0.2:
        args["max_senses"] = rng.choice([1, 2])
    think = rng.random() < 0.5
    ask = rng.choice(["Look up {w}.", "Please look up \"{w}\" in the dictionary.", "Use the dictionary: {w}",
                      "Find {w} in the {s} dictionary.", "What does the dictionary say about {w}?"])
    msgs = [{"role": "user", "content": ask.format(w=w, s=source)},
            {"role": "assistant", "content": "",
             **({"reasoning_content": f"I should call lookup for \"{w}\"."} if think else {}),
             "tool_calls": [{"type": "function", "function": {"name": "lookup", "arguments": args}}]},
            {"role": "tool", "content": f"{w}: {d}"},
            {"role": "assistant", "content": f"The dictionary says that {w} means: {d}"}]
    return msgs, [LOOKUP_TOOL], think


def template_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    return env.from_string(open(TEMPLATE).read())


def render(template, msgs, tools, think):
    kwargs = {} if think else {"enable_thinking": False}
    text = template.render(messages=msgs, tools=tools, add_generation_prompt=False, **kwargs)
    # the model ends its turn by emitting the next role token, as GLM-5 does
    return text + "<|user|>"


def train_tokenizer(texts, out_dir):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GLM_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    # chat markup is made of special tokens: train on the text between them
    pieces = (p for t in texts for p in re.split("|".join(map(re.escape, GLM_SPECIAL_TOKENS)), t) if p)
    tok.train_from_iterator(pieces, trainer=trainer)
    tok.add_special_tokens(GLM_SPECIAL_TOKENS)
    # add_special_tokens=True prepends the chat prefix, as GLM tokenizers do
    tok.post_processor = processors.TemplateProcessing(
        single="[gMASK] <sop> $A", pair="[gMASK] <sop> $A $B",
        special_tokens=[(t, tok.token_to_id(t)) for t in ("[gMASK]", "<sop>")])
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    added = {str(tok.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                       "single_word": False, "special": True} for t in GLM_SPECIAL_TOKENS}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
              "do_lower_case": False, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
              "model_max_length": 4096, "padding_side": "left", "remove_space": False,
              "added_tokens_decoder": added,
              "extra_special_tokens": GLM_SPECIAL_TOKENS}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
    return tok


def main():
    if tokenizers.__version__ != REQUIRED_TOKENIZERS:
        sys.exit(f"need tokenizers=={REQUIRED_TOKENIZERS}, found {tokenizers.__version__}")
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    ensure_packages()
    rng = random.Random(SEED)
    gcide = list(gcide_definitions())
    jargon, devil, fort = list(jargon_definitions()), list(devil_definitions()), list(fortunes())
    rng.shuffle(gcide)
    gcide = gcide[:30000]
    items = [("define", x) for x in gcide] + [("jargon", x) for x in jargon] * 3 + \
            [("devil", x) for x in devil] * 4 + [("fortune", x) for x in fort] * 3
    rng.shuffle(items)
    template = template_env()
    convs = []
    for kind, item in items:
        if kind != "fortune" and rng.random() < 0.2:
            convs.append(tool_conversation(rng, kind, item))
        else:
            convs.append(conversation(rng, kind, item))
        if rng.random() < 0.15 and len(convs) > 1 and convs[-2][1] is None and convs[-1][1] is None:
            a, b = convs.pop(), convs.pop()  # a two-question chat
            convs.append((b[0] + [m for m in a[0] if m["role"] != "system"], None, a[2]))
    heldout, train = convs[:600], convs[600:]
    texts = [render(template, *c) for c in train]
    held_texts = [render(template, *c) for c in heldout]
    tok = train_tokenizer(texts, out_dir)
    assert tok.get_vocab_size() <= MODEL_VOCAB
    for name, batch in (("train", texts), ("heldout", held_texts)):
        ids = [i for enc in tok.encode_batch(batch, add_special_tokens=False) for i in enc.ids]
        np.asarray(ids, dtype=np.uint16).tofile(os.path.join(out_dir, f"{name}.u16"))
    with open(os.path.join(out_dir, "heldout_conversations.jsonl"), "w") as f:
        for msgs, tools, think in heldout:
            f.write(json.dumps({"messages": msgs, "tools": tools, "think": think}, ensure_ascii=False) + "\n")
    # plain text for `glint perplexity`: the held-out answers, one per line
    with open(os.path.join(out_dir, "heldout.txt"), "w") as f:
        for msgs, _, _ in heldout[:300]:
            f.write(msgs[-1]["content"] + "\n")
    stats = dict(conversations=len(convs), train_tokens=int(os.path.getsize(os.path.join(out_dir, "train.u16")) // 2),
                 heldout_tokens=int(os.path.getsize(os.path.join(out_dir, "heldout.u16")) // 2),
                 vocab=tok.get_vocab_size(), gcide=len(gcide), jargon=len(jargon), devil=len(devil),
                 fortunes=len(fort), tool_conversations=sum(1 for c in convs if c[1]),
                 thinking=sum(1 for c in convs if c[2]))
    json.dump(stats, open(os.path.join(out_dir, "stats.json"), "w"), indent=2)
    print(json.dumps(stats))
    print(held_texts[0][:400])


if __name__ == "__main__":
    main()
