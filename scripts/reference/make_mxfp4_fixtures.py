#!/usr/bin/env python3
"""Reference fixture for quarry's MXFP4 format (kernels/mxfp4_format.{h,c}): transformers'
convert_moe_packed_tensors (integrations/mxfp4.py, the dequantisation gpt-oss checkpoints go
through when loaded without the triton kernels) on tiny packed tensors, written to
tests/fixtures/mxfp4/reference.safetensors so CI needs no torch.

    .venv-ref/bin/python scripts/reference/make_mxfp4_fixtures.py [--out tests/fixtures/mxfp4]

Per case c<i>: blocks U8 (E, R, G, B) and scales U8 (E, R, G) as a checkpoint stores
`*_blocks`/`*_scales`; dq_bf16 and dq_f32 the dequantised (E, G·B·2, R) result (transformers
transposes the last two axes: (E, in, out), the layout of GptOssExperts' parameters), as
bf16 bits (U16 view) and f32.  Scales cover every exponent 0..255 in the wide case (0 and 255
included: E8M0 255 is NaN in the OCP spec, transformers makes it 2^128 = inf).
"""
import argparse
import os

import torch
import transformers
from transformers.integrations.mxfp4 import convert_moe_packed_tensors
from safetensors.torch import save_file


def cases():
    g = torch.Generator().manual_seed(7)
    u8 = lambda *s, lo=0, hi=256: torch.randint(lo, hi, s, generator=g, dtype=torch.uint8)
    every = torch.arange(256, dtype=torch.uint8).view(4, 8, 8)      # every exponent once
    return [  # (name, blocks, scales)
        ("gate_up_like", u8(2, 6, 2, 16), u8(2, 6, 2, lo=118, hi=130)),
        ("down_like", u8(3, 4, 1, 16), u8(3, 4, 1, lo=110, hi=135)),
        ("every_byte", torch.arange(256, dtype=torch.uint8).repeat(4 * 8 * 8 * 16 // 256).view(4, 8, 8, 16), every),
        ("narrow_blocks", u8(1, 3, 5, 3), u8(1, 3, 5, lo=120, hi=134)),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "../../tests/fixtures/mxfp4"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    t, meta = {}, {"cases": "", "transformers": transformers.__version__, "torch": torch.__version__}
    names = []
    for i, (name, blocks, scales) in enumerate(cases()):
        p = f"c{i}."
        t[p + "blocks"] = blocks.contiguous()
        t[p + "scales"] = scales.contiguous()
        t[p + "dq_bf16"] = convert_moe_packed_tensors(blocks, scales, dtype=torch.bfloat16).contiguous().view(torch.int16)
        t[p + "dq_f32"] = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32).contiguous()
        meta[p + "name"] = name
        names.append(name)
    meta["cases"] = str(len(names))
    save_file(t, os.path.join(a.out, "reference.safetensors"), metadata=meta)
    print("wrote", len(names), "cases to", os.path.join(a.out, "reference.safetensors"))


if __name__ == "__main__":
    main()
