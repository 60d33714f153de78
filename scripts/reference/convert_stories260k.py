"""Convert llama2.c's stories260K (../shared/testdata/models/stories260K/) into a Hugging Face
Llama directory: config.json, generation_config.json, model.safetensors (float32),
tokenizer.json, tokenizer_config.json, special_tokens_map.json and tokenizer.model.

Usage: python scripts/reference/convert_stories260k.py OUT_DIR [SRC_DIR]
(SRC_DIR defaults to $QUARRY_TESTDATA/models/stories260K, else ../shared/testdata/models/stories260K.)

Weights (llama2.c legacy format, version 0): a header of 7 int32 (dim, hidden_dim, n_layers,
n_heads, n_kv_heads, vocab_size (negative: an untied classifier follows), seq_len), then float32
tensors as PyTorch lays them out ([out, in] for linears): token_embedding [V, C], rms_att [L, C],
wq [L, H*hs, C], wk [L, KV*hs, C], wv [L, KV*hs, C], wo [L, C, H*hs], rms_ffn [L, C],
w1 [L, F, C], w2 [L, C, F], w3 [L, F, C], rms_final [C], freq_cis_real and freq_cis_imag
[seq_len * hs / 2] each (skipped: HF computes RoPE itself), classifier [V, C] when untied.
w1 is gate_proj, w3 up_proj, w2 down_proj (llama2.c: w2(silu(w1 x) * w3 x)).

RoPE: llama2.c rotates interleaved pairs (x[2i], x[2i+1]); transformers rotates halves
(x[i], x[i + hs/2]). As transformers' convert_llama_weights_to_hf.py does for Meta's
checkpoints, the rows of wq and wk are permuted within each head so that the HF layout computes
the same attention: w.view(heads, hs/2, 2, C).transpose(1, 2).reshape(heads*hs, C).

Tokenizer (tok512.bin, written by llama2.c's tokenizer.py): a uint32 max_token_length, then per
id a float32 score, a uint32 length and the piece's UTF-8 bytes, with "▁" written as " " and
ids 1, 2 written as "\\n<s>\\n", "\\n</s>\\n". It was trained as a SentencePiece BPE model with
byte_fallback, identity normalisation and a dummy prefix. tokenizer.json is laid out as the
published Llama 2 one (the LlamaConverter's legacy form): normalizer Prepend("▁") +
Replace(" ", "▁"), BPE with byte_fallback and merges ranked by the merged piece's score (as
transformers generates them from a SentencePiece vocabulary), decoder Replace/ByteFallback/Fuse/
Strip, and a post-processor that adds <s>. tokenizer.model is the equivalent SentencePiece model
rebuilt from tok512.bin (the original tok512.model is not in testdata).
"""
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def read_model(path):
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", data[:28])
    tied = vocab > 0
    vocab = abs(vocab)
    hs = dim // n_heads
    arr = np.frombuffer(data, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        if pos + n > arr.size:
            raise ValueError(f"{path}: truncated: needs {pos + n} floats, has {arr.size}")
        t = arr[pos:pos + n].reshape(shape).astype(np.float32)
        pos += n
        return t

    w = {"embed": take(vocab, dim), "rms_att": take(n_layers, dim), "wq": take(n_layers, n_heads * hs, dim),
         "wk": take(n_layers, n_kv * hs, dim), "wv": take(n_layers, n_kv * hs, dim),
         "wo": take(n_layers, dim, n_heads * hs), "rms_ffn": take(n_layers, dim), "w1": take(n_layers, hidden, dim),
         "w2": take(n_layers, dim, hidden), "w3": take(n_layers, hidden, dim), "rms_final": take(dim)}
    take(seq_len * hs // 2)
    take(seq_len * hs // 2)
    if not tied:
        w["cls"] = take(vocab, dim)
    if pos != arr.size:
        raise ValueError(f"{path}: {arr.size - pos} floats left over; not the layout this script reads")
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, vocab=vocab,
               seq_len=seq_len, tied=tied)
    return cfg, w


def interleaved_to_halves(w, heads):
    """Rows of one projection [heads*hs, C] from llama2.c's interleaved RoPE to HF's rotate-half."""
    rows, cols = w.shape
    hs = rows // heads
    return w.reshape(heads, hs // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def read_tokenizer(path, vocab_size):
    with open(path, "rb") as f:
        data = f.read()
    off = 4
    pieces = []
    for i in range(vocab_size):
        score, n = struct.unpack("<fI", data[off:off + 8])
        off += 8
        pieces.append((data[off:off + n].decode("utf-8"), score))
        off += n
    if off != len(data):
        raise ValueError(f"{path}: {len(data) - off} bytes left over after {vocab_size} pieces")
    return pieces


def hf_pieces(pieces):
    """(piece, score, sentencepiece type) in HF/SentencePiece spelling."""
    out = []
    for i, (p, s) in enumerate(pieces):
        if i == 0:
            out.append(("<unk>", s, 2))
        elif i in (1, 2):
            out.append(("<s>" if i == 1 else "</s>", s, 3))
        elif len(p) == 6 and p.startswith("<0x") and p.endswith(">"):
            out.append((p, s, 6))
        else:
            out.append((p.replace(" ", "\u2581"), s, 1))
    return out


def tokenizer_json(pieces):
    vocab = {p: i for i, (p, _, _) in enumerate(pieces)}
    normal = {p: (s, i) for i, (p, s, t) in enumerate(pieces) if t == 1}
    ranked = []
    for tok, (score, i) in normal.items():
        for k in range(1, len(tok)):
            left, right = tok[:k], tok[k:]
            if left in normal and right in normal:
                ranked.append((-score, i, left, right))
    merges = [[left, right] for _, _, left, right in sorted(ranked)]
    special = lambda i, c: {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,  # noqa: E731
                            "normalized": False, "special": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def sentencepiece_model(pieces):
    """The equivalent SentencePiece ModelProto (serialised), or None without protobuf."""
    try:
        from transformers.utils import sentencepiece_model_pb2_new as pb
    except Exception:
        return None
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.vocab_size = len(pieces)
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.split_digits = True
    m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id, m.trainer_spec.pad_id = 0, 1, 2, -1
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = True
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    for p, s, t in pieces:
        sp = m.pieces.add()
        sp.piece, sp.score, sp.type = p, s, t
    return m.SerializeToString()


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
    out = sys.argv[1]
    testdata = os.environ.get("QUARRY_TESTDATA") or os.path.join(HERE, "..", "..", "..", "shared", "testdata")
    src = sys.argv[2] if len(sys.argv) == 3 else os.path.join(testdata, "models", "stories260K")
    from safetensors.numpy import save_file

    cfg, w = read_model(os.path.join(src, "stories260K.bin"))
    L = cfg["n_layers"]
    t = {"model.embed_tokens.weight": w["embed"], "model.norm.weight": w["rms_final"]}
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = w["rms_att"][i]
        t[p + "self_attn.q_proj.weight"] = interleaved_to_halves(w["wq"][i], cfg["n_heads"])
        t[p + "self_attn.k_proj.weight"] = interleaved_to_halves(w["wk"][i], cfg["n_kv"])
        t[p + "self_attn.v_proj.weight"] = w["wv"][i]
        t[p + "self_attn.o_proj.weight"] = w["wo"][i]
        t[p + "post_attention_layernorm.weight"] = w["rms_ffn"][i]
        t[p + "mlp.gate_proj.weight"] = w["w1"][i]
        t[p + "mlp.up_proj.weight"] = w["w3"][i]
        t[p + "mlp.down_proj.weight"] = w["w2"][i]
    if not cfg["tied"]:
        t["lm_head.weight"] = w["cls"]
    t = {k: np.ascontiguousarray(v) for k, v in t.items()}

    config = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": cfg["dim"],
        "initializer_range": 0.02,
        "intermediate_size": cfg["hidden"],
        "max_position_embeddings": cfg["seq_len"],
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": cfg["n_heads"],
        "num_hidden_layers": L,
        "num_key_value_heads": cfg["n_kv"],
        "rms_norm_eps": 1e-05,        # llama2.c's rmsnorm
        "rope_scaling": None,
        "rope_theta": 10000.0,        # llama2.c's RoPE base
        "tie_word_embeddings": cfg["tied"],
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": cfg["vocab"],
    }
    pieces = hf_pieces(read_tokenizer(os.path.join(src, "tok512.bin"), cfg["vocab"]))
    os.makedirs(out, exist_ok=True)
    save_file(t, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})

    def dump(name, obj):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")

    dump("config.json", config)
    dump("generation_config.json", {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2})
    dump("tokenizer.json", tokenizer_json(pieces))
    dump("tokenizer_config.json", {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": None, "clean_up_tokenization_spaces": False, "legacy": True,
        "model_max_length": cfg["seq_len"], "tokenizer_class": "LlamaTokenizer"})
    dump("special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    spm = sentencepiece_model(pieces)
    if spm is not None:
        with open(os.path.join(out, "tokenizer.model"), "wb") as f:
            f.write(spm)
    print(f"wrote {out}: {sum(v.size for v in t.values())} parameters, {len(t)} tensors, vocab {cfg['vocab']}")


if __name__ == "__main__":
    main()
