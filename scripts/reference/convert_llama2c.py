#!/usr/bin/env python3
"""Convert a llama2.c checkpoint (e.g. ../shared/testdata/models/stories260K/stories260K.bin)
into a Hugging Face Llama directory: config.json + model.safetensors (float32).

llama2.c's file: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size — negative
when the classifier is not shared with the embedding —, seq_len), then float32 tensors in the
order of its legacy export, each stored as PyTorch's (out, in) row-major. llama2.c rotates
interleaved pairs (2i, 2i+1); Hugging Face rotates halves (i, i + head_dim/2), so q and k rows
are permuted as transformers' convert_llama_weights_to_hf does. Needs numpy and safetensors only.

    python scripts/reference/convert_llama2c.py stories260K.bin OUT_DIR
"""
import json
import os
import struct
import sys

import numpy as np
from safetensors.numpy import save_file


def permute(w, n_heads):
    # HF: w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)
    dim1, dim2 = w.shape
    return w.reshape(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(0, 2, 1, 3).reshape(dim1, dim2)


def convert(path, out):
    with open(path, "rb") as f:
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("7i", f.read(28))
        data = np.frombuffer(f.read(), dtype="<f4")
    shared = vocab > 0
    vocab = abs(vocab)
    hd = dim // n_heads
    kv_dim = n_kv * hd
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        if off + n > data.size:
            sys.exit(f"{path}: file ends inside the weights; is it a llama2.c checkpoint?")
        t = data[off:off + n].reshape(shape).copy()
        off += n
        return t

    emb = take(vocab, dim)
    rms_att = take(n_layers, dim)
    wq = take(n_layers, dim, dim)
    wk = take(n_layers, kv_dim, dim)
    wv = take(n_layers, kv_dim, dim)
    wo = take(n_layers, dim, dim)
    rms_ffn = take(n_layers, dim)
    w1 = take(n_layers, hidden, dim)
    w2 = take(n_layers, dim, hidden)
    w3 = take(n_layers, hidden, dim)
    rms_final = take(dim)
    take(seq_len, hd // 2)   # freq_cis_real: recomputed from rope_theta
    take(seq_len, hd // 2)   # freq_cis_imag
    wcls = None if shared else take(vocab, dim)
    if off != data.size:
        sys.exit(f"{path}: {data.size - off} floats left after the weights; header and data disagree")

    t = {"model.embed_tokens.weight": emb, "model.norm.weight": rms_final}
    for l in range(n_layers):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = rms_att[l]
        t[p + "self_attn.q_proj.weight"] = permute(wq[l], n_heads)
        t[p + "self_attn.k_proj.weight"] = permute(wk[l], n_kv)
        t[p + "self_attn.v_proj.weight"] = wv[l]
        t[p + "self_attn.o_proj.weight"] = wo[l]
        t[p + "post_attention_layernorm.weight"] = rms_ffn[l]
        t[p + "mlp.gate_proj.weight"] = w1[l]
        t[p + "mlp.down_proj.weight"] = w2[l]
        t[p + "mlp.up_proj.weight"] = w3[l]
    if wcls is not None:
        t["lm_head.weight"] = wcls
    os.makedirs(out, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()},
              os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": dim, "intermediate_size": hidden, "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads, "num_key_value_heads": n_kv, "vocab_size": vocab,
        "max_position_embeddings": seq_len, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": shared, "attention_bias": False,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
        "initializer_range": 0.02,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert(sys.argv[1], sys.argv[2])
