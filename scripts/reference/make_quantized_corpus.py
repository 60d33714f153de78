#!/usr/bin/env python3
"""Seed inputs of tests/fuzz_safetensors/fuzz_quantized.c: real bitsandbytes 4-bit tensors (what
transformers' save_pretrained writes for a Linear4bit: QuantState.as_dict(packed=True)) and
gpt-oss-shaped MXFP4 pairs, each as 3 bytes (out - 1, in - 1, double quant) + a .safetensors file.

Needs torch, bitsandbytes >= 0.48 and safetensors (the venv of make_nf4_fixtures.py):
    /tmp/bnb/bin/python scripts/reference/make_quantized_corpus.py [--out tests/fuzz_safetensors/corpus_quantized]
"""
import argparse
import os

import torch
import bitsandbytes.functional as F
from safetensors.torch import save


def bnb4(out, inp, double_quant, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=g)
    packed, qs = F.quantize_4bit(w, blocksize=64, compress_statistics=double_quant, quant_type="nf4",
                                 quant_storage=torch.uint8)
    tensors = {"w.weight": packed}
    tensors.update({"w.weight." + k: v for k, v in qs.as_dict(packed=True).items()})
    return bytes([out - 1, inp - 1, int(double_quant)]) + save(tensors)


def mxfp4(e, r, g, seed, drop=None):
    gen = torch.Generator().manual_seed(seed)
    tensors = {"e_blocks": torch.randint(0, 256, (e, r, g, 16), generator=gen, dtype=torch.uint8),
               "e_scales": torch.randint(120, 134, (e, r, g), generator=gen, dtype=torch.uint8)}
    if drop:
        del tensors[drop]
    return bytes([0, 0, 0]) + save(tensors)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "../../tests/fuzz_safetensors/corpus_quantized"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    seeds = {
        "bnb4_3x37": bnb4(3, 37, False, 1),
        "bnb4_3x37_dq": bnb4(3, 37, True, 2),
        "bnb4_64x96_dq": bnb4(64, 96, True, 3),   # 96 blocks of 64
        "bnb4_17x5": bnb4(17, 5, False, 4),        # odd count: the last low nibble is padding
        "mxfp4_2x4x2": mxfp4(2, 4, 2, 5),
        "mxfp4_no_scales": mxfp4(1, 2, 1, 6, drop="e_scales"),
    }
    for name, data in seeds.items():
        with open(os.path.join(a.out, name), "wb") as f:
            f.write(data)
    print(f"{len(seeds)} seeds in {a.out}")


if __name__ == "__main__":
    main()
