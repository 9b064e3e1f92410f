#!/usr/bin/env python3
"""Trains the small GLM-5-style tokenizer committed under tests/fixtures/tokenizer/glm5-style/.

Same shape as GLM-5.x's tokenizer.json (spec/SERVING.md §4.1): byte-level BPE, pre-tokenizer
Sequence[Split(GLM-4/Llama-3 regex, Isolated), ByteLevel(use_regex=false)], ByteLevel decoder,
no normalizer, and the 36 GLM special tokens appended after the BPE vocabulary in GLM order.
Training text: license and copyright files from Debian packages on this machine, Python's
standard library source, and the multilingual passages of corpus.py.

Usage: python3 tools/tokenizer/train_glm5_style.py [OUT_DIR]
"""
import glob
import json
import os
import sys

import tokenizers  # pinned: see REQUIRED_TOKENIZERS
from tokenizers import Tokenizer, Regex, models, pre_tokenizers, decoders, processors, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus import CORPUS, PASSAGES  # noqa: E402

REQUIRED_TOKENIZERS = "0.23.3"
VOCAB_SIZE = 6000  # BPE tokens (256 bytes + merges); the 36 specials come after

GLM_SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                   r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# GLM-5.x added tokens in id order (spec/SERVING.md §4.1: 154820..154855).
GLM_SPECIAL_TOKENS = [
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>",
    "<|begin_of_video|>", "<|end_of_video|>", "<|begin_of_audio|>", "<|end_of_audio|>",
    "<|begin_of_transcription|>", "<|end_of_transcription|>", "<|code_prefix|>",
    "<|code_middle|>", "<|code_suffix|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
    "<tool_response>", "</tool_response>", "<arg_key>", "</arg_key>", "<arg_value>",
    "</arg_value>", "/nothink", "<|begin_of_box|>", "<|end_of_box|>", "<|image|>", "<|video|>",
]


def training_texts():
    files = sorted(glob.glob("/usr/share/common-licenses/*"))
    files += sorted(glob.glob("/usr/share/doc/*/copyright"))[:400]
    stdlib = os.path.dirname(os.__file__)
    files += sorted(glob.glob(os.path.join(stdlib, "*.py")))[:150]
    for path in files:
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                yield f.read()
    for _ in range(20):
        yield from PASSAGES
    yield from CORPUS


def main():
    if tokenizers.__version__ != REQUIRED_TOKENIZERS:
        sys.exit(f"need tokenizers=={REQUIRED_TOKENIZERS}, found {tokenizers.__version__}")
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tokenizer/glm5-style"
    os.makedirs(out_dir, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GLM_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_texts(), trainer=trainer)
    # Appended after training so they take the ids after the BPE vocabulary, as in GLM-5.
    tok.add_special_tokens(GLM_SPECIAL_TOKENS)
    # add_special_tokens=True prepends the chat prefix "[gMASK]<sop>" (GLM-4 HF tokenizers do this).
    tok.post_processor = processors.TemplateProcessing(
        single="[gMASK] <sop> $A", pair="[gMASK] <sop> $A $B",
        special_tokens=[("[gMASK]", tok.token_to_id("[gMASK]")), ("<sop>", tok.token_to_id("<sop>"))])
    tok.save(os.path.join(out_dir, "tokenizer.json"))

    added = {str(tok.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False,
                                       "rstrip": False, "single_word": False, "special": True}
             for t in GLM_SPECIAL_TOKENS}
    config = {
        "added_tokens_decoder": added,
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "do_lower_case": False,
        "eos_token": "<|endoftext|>",
        "extra_special_tokens": GLM_SPECIAL_TOKENS,
        "model_max_length": 202752,
        "pad_token": "<|endoftext|>",
        "padding_side": "left",
        "remove_space": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
        f.write("\n")
    print(f"wrote {out_dir}: {tok.get_vocab_size()} ids")


if __name__ == "__main__":
    main()
