#!/usr/bin/env python3
"""Makes the tokenizer parity fixtures under tests/fixtures/tokenizer/ with Hugging Face `tokenizers`.

For every fixture tokenizer it writes reference.json: for each corpus string the ids of
encode(add_special_tokens=False) and (=True), and decode() of the latter with and without
skip_special_tokens. The C test (tests/text/test_tokenizer_parity.c) must reproduce them exactly.

Real tokenizer.json files come from PyPI wheels (see SOURCES.md); the large ones are committed
as tokenizer.tar.xz (CMake unpacks them into the build tree). Feature variants (normalizers,
added-token flags, Split behaviours, Metaspace, byte_fallback) are derived here from the
GLM-5-style fixture and written as plain tokenizer.json files.

Usage: python3 tools/tokenizer/make_references.py   (from the repository root)
"""
import copy
import io
import json
import os
import sys
import tarfile

import tokenizers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, decoders, trainers
from tokenizers.decoders import DecodeStream

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus import CORPUS, PASSAGES, random_strings  # noqa: E402
from train_glm5_style import training_texts  # noqa: E402

REQUIRED_TOKENIZERS = "0.23.3"
FIXTURES = "tests/fixtures/tokenizer"


def load_tokenizer_json_text(name):
    d = os.path.join(FIXTURES, name)
    plain = os.path.join(d, "tokenizer.json")
    if os.path.exists(plain):
        with open(plain, encoding="utf-8") as f:
            return f.read()
    with tarfile.open(os.path.join(d, "tokenizer.tar.xz")) as tar:
        return tar.extractfile("tokenizer.json").read().decode("utf-8")


def added_token(content, id_, special, lstrip=False, rstrip=False, single_word=False, normalized=False):
    return {"id": id_, "content": content, "single_word": single_word, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": normalized, "special": special}


def make_feature_variants():
    """Variants of the GLM-5-style tokenizer that exercise the options real files rarely use."""
    base = json.loads(load_tokenizer_json_text("glm5-style"))
    next_id = max(t["id"] for t in base["added_tokens"]) + 1
    regex = base["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]

    # A: NFKC + Lowercase + Replace(string) + Prepend; Digits + ByteLevel(prefix space, regex);
    #    added tokens with lstrip / rstrip / single_word / normalized; Strip decoder.
    a = copy.deepcopy(base)
    a["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Lowercase"},
        {"type": "Replace", "pattern": {"String": "``"}, "content": "\""},
        {"type": "Prepend", "prepend": "~"}]}
    a["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}]}
    a["added_tokens"] += [
        added_token("<mask>", next_id, True, lstrip=True),
        added_token("[flag]", next_id + 1, False, rstrip=True),
        added_token("word", next_id + 2, False, single_word=True),
        added_token("hello", next_id + 3, False, normalized=True),
        added_token("<both>", next_id + 4, True, lstrip=True, rstrip=True),
    ]
    a["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    a["model"]["ignore_merges"] = True

    # B: NFD + Strip + Replace(regex); Split behaviours and invert; ByteLevel without regex.
    b = copy.deepcopy(base)
    b["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFD"}, {"type": "Strip", "strip_left": True, "strip_right": True},
        {"type": "Replace", "pattern": {"Regex": "\\s{2,}"}, "content": " "}]}
    b["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "-"}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[,.;:!?]"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"Regex": "\\d+"}, "behavior": "Contiguous", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[\\p{L}\\p{M}]+"}, "behavior": "Removed", "invert": True},
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    b["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    b["post_processor"] = None
    # C: NFC + left Strip + Replace; Digits(contiguous), Metaspace(always, no split) before ByteLevel,
    #    a Split with MergedWithPrevious; RobertaProcessing; Sequence[ByteLevel, Replace, Fuse] decoder.
    c = copy.deepcopy(base)
    c["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFC"}, {"type": "Strip", "strip_left": True, "strip_right": False},
        {"type": "Replace", "pattern": {"Regex": "[0-9]{4}"}, "content": "####"}]}
    c["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": False},
        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": False},
        {"type": "Split", "pattern": {"Regex": "▁"}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    c["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "Fuse"}]}  # (HF's Strip with stop > 0 panics on an empty string, so not here)
    c["post_processor"] = {"type": "RobertaProcessing", "sep": ["<|endoftext|>", 6000], "cls": ["[gMASK]", 6002],
                           "trim_offsets": True, "add_prefix_space": False}
    # D: ByteLevel first (mapping bytes to characters), then a Split on the mapped text ("Ġ" is the
    #    mapped space), so BPE works on characters; byte-level decoder.
    d = copy.deepcopy(base)
    d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": False},
        {"type": "Split", "pattern": {"Regex": "Ġ"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"String": "Ċ"}, "behavior": "Isolated", "invert": False}]}
    d["post_processor"] = None
    return {"glm5-features-a": a, "glm5-features-b": b, "glm5-features-c": c, "glm5-features-d": d}


def make_sentencepiece_style():
    """Llama-2-like BPE with byte_fallback and ▁ for spaces, trained here (two front ends)."""
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    # Trained with a Metaspace pre-tokenizer (whole-document words would make training slow); the
    # Llama-2 front end (normalizer instead of pre-tokenizer) is put in place afterwards.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=3000, min_frequency=2, show_progress=False,
                                  limit_alphabet=300, special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator([t[:20000] for t in list(training_texts())[:300]], trainer=trainer)
    spm = json.loads(tok.to_str())
    spm["pre_tokenizer"] = None
    spm["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    vocab = spm["model"]["vocab"]
    for byte in range(256):  # byte-fallback tokens live in the model vocabulary, as in Llama 2
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    spm["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    spm["post_processor"] = {"type": "TemplateProcessing",
                             "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                             "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                      {"Sequence": {"id": "B", "type_id": 1}}],
                             "special_tokens": {"<s>": {"id": "<s>", "ids": [vocab["<s>"]], "tokens": ["<s>"]}}}
    meta = copy.deepcopy(spm)
    meta["normalizer"] = None
    meta["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True}
    meta["decoder"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True}
    # NFKD + Lowercase in front, Metaspace "always" without splitting, no decoder (tokens joined by spaces).
    always = copy.deepcopy(meta)
    always["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "Lowercase"}]}
    always["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": False}
    always["decoder"] = None
    return {"spm-style": spm, "metaspace": meta, "metaspace-always": always}


def stream_pieces(tok, ids, skip_special_tokens):
    """What HF's DecodeStream returns for each id ("" where it returns None)."""
    stream = DecodeStream(skip_special_tokens=skip_special_tokens)
    return [stream.step(tok, i) or "" for i in ids]


def main():
    if tokenizers.__version__ != REQUIRED_TOKENIZERS:
        sys.exit(f"need tokenizers=={REQUIRED_TOKENIZERS} (pip install tokenizers=={REQUIRED_TOKENIZERS}),"
                 f" found {tokenizers.__version__}")
    assert len(CORPUS) >= 100, len(CORPUS)
    generated = {}
    generated.update(make_feature_variants())
    generated.update(make_sentencepiece_style())
    for name, obj in generated.items():
        os.makedirs(os.path.join(FIXTURES, name), exist_ok=True)
        with open(os.path.join(FIXTURES, name, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False)

    names = sorted(n for n in os.listdir(FIXTURES)
                   if any(os.path.exists(os.path.join(FIXTURES, n, f)) for f in ("tokenizer.json", "tokenizer.tar.xz")))
    for name in names:
        tok = Tokenizer.from_str(load_tokenizer_json_text(name))
        cases = []
        for text in CORPUS + PASSAGES + random_strings():
            ids = tok.encode(text, add_special_tokens=False).ids
            ids_special = tok.encode(text, add_special_tokens=True).ids
            cases.append({"text": text, "ids": ids, "ids_with_special": ids_special,
                          "decoded": tok.decode(ids_special, skip_special_tokens=False),
                          "decoded_skip_special": tok.decode(ids_special, skip_special_tokens=True),
                          "stream": stream_pieces(tok, ids_special, False),
                          "stream_skip_special": stream_pieces(tok, ids_special, True)})
        # One case per line: compact, and diffs stay readable.
        with open(os.path.join(FIXTURES, name, "reference.json"), "w", encoding="utf-8") as f:
            f.write('{"tokenizers_version": "%s", "cases": [\n' % tokenizers.__version__)
            f.write(",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases))
            f.write("\n]}\n")
        print(f"{name}: {len(cases)} cases, vocab {tok.get_vocab_size()}")

    # Files for the command-line test (tests/text/cli_test.sh): stdin text and the expected outputs.
    cli_dir = os.path.join(FIXTURES, "cli")
    os.makedirs(cli_dir, exist_ok=True)
    glm = Tokenizer.from_str(load_tokenizer_json_text("glm5-style"))
    text = "[gMASK]<sop><|user|>Hi 你好 👩🏽‍💻\n  x = 42;<|assistant|><think>ok</think>done"
    special = glm.encode(text, add_special_tokens=True).ids
    outputs = {
        "input.txt": text,
        "ids.txt": " ".join(map(str, glm.encode(text, add_special_tokens=False).ids)) + "\n",
        "ids_special.txt": " ".join(map(str, special)) + "\n",
        "decoded_skip.txt": glm.decode(special, skip_special_tokens=True),
        "decoded.txt": glm.decode(special, skip_special_tokens=False),
    }
    for fname, content in outputs.items():
        with open(os.path.join(cli_dir, fname), "w", encoding="utf-8", newline="") as f:
            f.write(content)


if __name__ == "__main__":
    main()
