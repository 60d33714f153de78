#!/usr/bin/env python3
"""Build real tokenizer.json files from the official models in ../shared/testdata/tokenizers/
with transformers' own converters, into OUT_DIR (a cache under the build dir; never committed).

  llama2.json    Llama 2 SentencePiece .model through LlamaConverter's legacy pipeline, as the
                 published file has it (Prepend + Replace normalizer, merges ranked by score)
  mistral1.json  Mistral v1 .model via LlamaTokenizer (Metaspace prepend_scheme=always)
  mistral3.json  Mistral v3 .model, non-legacy (Metaspace prepend_scheme=first, control tokens)
  llama3.json    Llama 3 tiktoken .model via TikTokenConverter + Meta's 256 special tokens
  gpt2.json      GPT-2 vocab.json + merges.txt via GPT2Converter (+ <|endoftext|>)
  qwen2.json     Qwen2Converter's pipeline (NFC, Qwen regex) over the GPT-2 vocabulary
  qwen3.json     the same pipeline with Qwen3's 26 added tokens (QWEN3_ADDED: <think>, </think>,
                 <tool_call>, <tool_response> ... with their special flags; the published
                 Qwen3 tokenizer.json is not available here, only its vocabulary's pipeline)
  gptoss.json    gpt-oss's o200k_harmony pipeline (the published file is not available here):
                 TikTokenConverter with o200k's pattern over the Llama 3 ranks, padded with
                 unreachable ranks to o200k's 199998 so that harmony's 21 special tokens get
                 their ids 199998..200018, as transformers' GptOssConverter adds them
  mixtral.json   the real Mixtral-8x7B-v0.1 tokenizer.json as is
  phi3.json      the real Phi-3 tokenizer.json as is (written last: the cache is complete)

usage: make_tokenizers.py TESTDATA OUT_DIR
"""
import json
import os
import shutil
import sys
import types

from tokenizers import AddedToken, processors

# sentencepiece's bundled sentencepiece_model_pb2 was generated for a newer protobuf than the
# pinned runtime and refuses to import; transformers ships the same proto generated for this
# runtime, so let the converters find that one under sentencepiece's name.
try:
    from sentencepiece import sentencepiece_model_pb2  # noqa: F401
except Exception:
    from transformers.utils import sentencepiece_model_pb2_new
    sys.modules["sentencepiece.sentencepiece_model_pb2"] = sentencepiece_model_pb2_new
from transformers.convert_slow_tokenizer import (GPT2Converter, LlamaConverter, Qwen2Converter,
                                                 TikTokenConverter)


class Gpt2Shim:
    def __init__(self, vocab_path, merges_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(l.split()) for l in lines[1:] if l and not l.startswith("#version")]
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.add_prefix_space = False


# Qwen3's added tokens in id order (151643..151668) with their "special" flag, as the
# added_tokens_decoder of Qwen3's tokenizer_config.json lists them (every Qwen3 checkpoint has
# the same 26; copied from a public quote of it, akougkas/warpio-cli
# warpio-docs/ai-docs/model_cards/qwen3:4b.md). All are normalized false, no lstrip/rstrip.
QWEN3_ADDED = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
               ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
               ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
               ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
               ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
               ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
               ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
               ("<|file_sep|>", False), ("<tool_response>", False), ("</tool_response>", False),
               ("<think>", False), ("</think>", False)]


def bos_template(tok, bos):
    """TemplateProcessing as LlamaTokenizerFast.update_post_processor builds it (BOS only)."""
    return processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                         special_tokens=[(bos, tok.token_to_id(bos))])


def spm(path, legacy, tmp):
    """transformers' own slow->fast path: LlamaTokenizer.from_pretrained on a folder holding the
    SentencePiece tokenizer.model (SentencePieceExtractor + LlamaTokenizer's Metaspace pipeline).
    legacy: "always" (Metaspace prepend_scheme always) or "first". As the published Llama 2 /
    Mistral tokenizer.json files have them: unk_token <unk> and a BOS template (transformers adds
    BOS in Python; the json carries it in TemplateProcessing)."""
    from transformers import LlamaTokenizer
    d = os.path.join(tmp, os.path.basename(path).replace(".", "_"))
    os.makedirs(d, exist_ok=True)
    shutil.copyfile(path, os.path.join(d, "tokenizer.model"))
    tok = LlamaTokenizer.from_pretrained(d, legacy=legacy != "first").backend_tokenizer
    tok.model.unk_token = "<unk>"
    tok.post_processor = bos_template(tok, "<s>")
    return tok


def spm_published(path):
    """The Llama 2 tokenizer.json as Meta/HF published it (and as llama.cpp's llama-spm vectors
    were made): LlamaConverter's vocab, legacy normalizer (Prepend + Replace, no pre-tokenizer)
    and decoder, with merges ranked by piece score (generate_merges with scores, as the
    converter's SentencePieceExtractor did). transformers 5's own .model path ranks merges by
    id instead, which is not what SentencePiece does for Llama 2's scored-down "▁▁" pieces."""
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import SentencePieceExtractor
    from transformers.tokenization_utils_base import generate_merges
    proto = SentencePieceExtractor(path).proto
    scores = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)] + [(p.piece, p.score) for p in proto.pieces[3:]]
    vocab = {piece: i for i, (piece, _) in enumerate(scores)}
    merges = generate_merges(vocab, scores)
    tok = Tokenizer(BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True, dropout=None))
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ("<unk>", "<s>", "</s>")])
    conv = LlamaConverter.__new__(LlamaConverter)
    conv.original_tokenizer = types.SimpleNamespace(legacy=True, add_prefix_space=True)
    tok.normalizer = conv.normalizer(proto)
    tok.decoder = conv.decoder("▁", True)
    tok.post_processor = bos_template(tok, "<s>")
    return tok


def llama3_special_tokens():
    # As Meta's llama3 model code (tokenizer.py) defines them: 256 in total, ids 128000..128255.
    n = 256
    toks = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
            "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
            "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|reserved_special_token_4|>", "<|eot_id|>"]
    toks += [f"<|reserved_special_token_{i}|>" for i in range(5, n - 5)]
    assert len(toks) == n
    return toks


def llama3(path):
    tok = TikTokenConverter(vocab_file=path, pattern=(
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"), extra_special_tokens=llama3_special_tokens()).converted()
    assert tok.token_to_id("<|begin_of_text|>") == 128000, tok.token_to_id("<|begin_of_text|>")
    assert tok.token_to_id("<|eot_id|>") == 128009
    # The published Llama 3 tokenizer.json: ByteLevel then a BOS template.
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|>:0 $A:0",
                                      pair="<|begin_of_text|>:0 $A:0 <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", 128000)])])
    return tok


# o200k_base's pre-tokenizer pattern (tiktoken_ext/openai_public.py, o200k_base's pat_str; the
# o200k_harmony encoding of gpt-oss reuses it): case-insensitive contractions glued to the word,
# upper/title/modifier/other letters and marks as separate classes, "/" kept after punctuation.
O200K_PATTERN = "|".join([
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"\p{N}{1,3}",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"\s*[\r\n]+",
    r"\s+(?!\S)",
    r"\s+",
])

# harmony's special tokens in HF's gpt-oss tokenizer (transformers'
# convert_gpt_oss_weights_to_hf.py GptOssConverter; ids from tiktoken's o200k_harmony): the named
# ones, and <|reserved_N|> for every other id in 199999..200017.
HARMONY_SPECIAL = {"<|startoftext|>": 199998, "<|endoftext|>": 199999, "<|return|>": 200002,
                   "<|constrain|>": 200003, "<|channel|>": 200005, "<|start|>": 200006, "<|end|>": 200007,
                   "<|message|>": 200008, "<|call|>": 200012, "<|endofprompt|>": 200018}
O200K_RANKS = 199998   # o200k_base's mergeable ranks: 0..199997


def gptoss(path, tmp):
    """o200k_harmony's pipeline over the Llama 3 ranks. Ranks 128000..199997 are filled with
    6-byte tokens \\xf8\\xf9\\xfa + 3 bytes: no split of one into two vocabulary tokens exists, so
    the converter derives no merge for them and BPE never produces them (and no UTF-8 text holds
    \\xf8); they only move the special tokens to harmony's ids."""
    import base64
    specials = dict(HARMONY_SPECIAL)
    for k in range(199999, 200018):
        if k not in specials.values():
            specials[f"<|reserved_{k}|>"] = k
    names = [t for t, _ in sorted(specials.items(), key=lambda x: x[1])]
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    n = len(lines)
    for r in range(n, O200K_RANKS):
        filler = b"\xf8\xf9\xfa" + r.to_bytes(3, "big")
        lines.append(base64.b64encode(filler) + b" " + str(r).encode())
    os.makedirs(tmp, exist_ok=True)
    ranks = os.path.join(tmp, "o200k_padded.tiktoken")
    with open(ranks, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    tok = TikTokenConverter(vocab_file=ranks, pattern=O200K_PATTERN, extra_special_tokens=names).converted()
    for t, i in specials.items():
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t), i)
    return tok


def variants(out):
    """Test-only variants of the real files above, so that every component and flag quarry
    implements runs against HF on the same corpus (HF loads each one; the C test compares)."""
    def load(name):
        with open(os.path.join(out, name + ".json"), encoding="utf-8") as f:
            return json.load(f)

    def save(d, name):
        with open(os.path.join(out, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(d, f, ensure_ascii=False)

    def added(i, content, **flags):
        t = {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": False}
        t.update(flags)
        return t

    # Added-token flags, normalizers, ByteLevel with a prefix space, trim_offsets, BOS+EOS.
    d = load("gpt2")
    n = max(d["model"]["vocab"].values()) + 1
    eot = d["model"]["vocab"]["<|endoftext|>"]
    d["added_tokens"] += [
        added(n, "hello", single_word=True),
        added(n + 1, "<mask>", lstrip=True, rstrip=True, special=True),
        added(n + 2, "[SEP]", lstrip=True, special=True),
        added(n + 3, "world", normalized=True),
        added(n + 4, "don't", normalized=True, single_word=True),
        added(n + 5, "<|im_end|>", rstrip=True, special=True),
    ]
    d["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFC"},
        {"type": "Replace", "pattern": {"String": "\r\n"}, "content": "\n"},
        {"type": "Replace", "pattern": {"Regex": "[0-9]{5,}"}, "content": "#####"}]}
    d["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    d["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
         "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [eot], "tokens": ["<|endoftext|>"]}}}]}
    save(d, "gpt2-flags")

    # Split behaviours and invert, Digits, ByteLevel without its regex, merges as "a b" strings.
    d = load("gpt2")
    d["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in d["model"]["merges"]]
    d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[,.;:!?]"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[A-Z]+"}, "behavior": "Contiguous", "invert": True},
        {"type": "Split", "pattern": {"Regex": "\\p{Han}"}, "behavior": "Isolated", "invert": False},
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    save(d, "gpt2-split")

    # Metaspace with split, Digits grouped, unk without byte fallback and unfused, BOS+EOS,
    # Metaspace / Strip / Replace(Regex) decoders.
    d = load("mistral1")
    d["model"]["byte_fallback"] = False
    d["model"]["fuse_unk"] = False
    d["normalizer"] = {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}
    d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": False},
        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}]}
    d["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"Regex": "<unk>"}, "content": "?"},
        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        # per token, before Fuse (HF's Strip with stop > 0 panics on an empty string)
        {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        {"type": "Fuse"}]}
    d["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                                              "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}
    save(d, "mistral1-split")
    from tokenizers import Tokenizer
    for name in ("gpt2-flags", "gpt2-split", "mistral1-split"):
        Tokenizer.from_file(os.path.join(out, name + ".json"))   # HF must accept it as is


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    td = os.path.join(sys.argv[1], "tokenizers")
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    # Tests running side by side share this cache: one builds it while the others wait, and
    # phi3.json, written last, says it is complete.
    import fcntl
    lock = open(os.path.join(out, ".lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    done = os.path.join(out, "phi3.json")
    if os.path.exists(done) and os.path.getmtime(done) >= os.path.getmtime(os.path.abspath(__file__)):
        return
    tmp = os.path.join(out, "spm")
    built = {
        "llama2": lambda: spm_published(os.path.join(td, "llama2/tokenizer.model")),
        "mistral1": lambda: spm(os.path.join(td, "mistral/tokenizer.model.v1"), "always", tmp),
        "mistral3": lambda: spm(os.path.join(td, "mistral/tokenizer.model.v3"), "first", tmp),
        "llama3": lambda: llama3(os.path.join(td, "llama3/tokenizer.model")),
    }
    for name, make in built.items():
        make().save(os.path.join(out, name + ".json"))
    g = Gpt2Shim(os.path.join(td, "gpt2/vocab.json"), os.path.join(td, "gpt2/merges.txt"))
    for name, conv in (("gpt2", GPT2Converter), ("qwen2", Qwen2Converter)):
        tok = conv(g).converted()
        tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
        if name == "qwen2":
            tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                    for t in ("<|im_start|>", "<|im_end|>")])
        tok.save(os.path.join(out, name + ".json"))
    tok = Qwen2Converter(g).converted()
    tok.add_tokens([AddedToken(t, special=sp, normalized=False) for t, sp in QWEN3_ADDED])
    assert [tok.id_to_token(tok.token_to_id("<|endoftext|>") + i) for i in range(26)] == [t for t, _ in QWEN3_ADDED]
    tok.save(os.path.join(out, "qwen3.json"))
    gptoss(os.path.join(td, "llama3/tokenizer.model"), tmp).save(os.path.join(out, "gptoss.json"))
    shutil.copyfile(os.path.join(td, "mixtral/tokenizer.json"), os.path.join(out, "mixtral.json"))
    variants(out)
    shutil.copyfile(os.path.join(td, "phi3/tokenizer.json"), os.path.join(out, "phi3.json"))


if __name__ == "__main__":
    main()
