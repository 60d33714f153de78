#!/usr/bin/env python3
"""Reference fixture for quarry's NF4 format (kernels/nf4_format.{h,c}): bitsandbytes'
quantize_4bit / dequantize_4bit on the CPU, NF4, blocks of 64, with and without double
quantisation, written to tests/fixtures/nf4/reference.safetensors so CI needs no bitsandbytes.

Needs torch and bitsandbytes >= 0.48 (NF4 on the CPU); e.g. a throwaway venv:
    python -m venv /tmp/bnb && /tmp/bnb/bin/pip install torch bitsandbytes==0.50.2 safetensors
    /tmp/bnb/bin/python scripts/reference/make_nf4_fixtures.py [--out tests/fixtures/nf4]

Tensors: code (16) and dynamic_code (256), the two maps bitsandbytes used; per case c<i>/:
  x        the input, (rows, cols), F32 or BF16
  packed   U8 ((n+1)/2)       two codes a byte, as quantize_4bit returns them
  absmax   F32 (blocks)       plain case: the scale per block of 64
  qabsmax  U8 (blocks), nested_absmax F32 (ceil(blocks/256)), offset F32 (1)   double-quant case
  dq_f32, dq_bf16             dequantize_4bit to f32 and to bf16, (rows, cols); where the
                              AVX-512 kernel of bitsandbytes' CPU backend gets it wrong (rows a
                              multiple of 16 but not of 64), its reference path's result instead
Metadata: cases, and per case c<i>.name, c<i>.double (0/1), c<i>.bnb_avx512_row_bug (when
the above applied); versions and torch's CPU capability (the offset is torch's f32 mean, whose
summation order depends on the vector width).
"""
import argparse
import os

import torch
import bitsandbytes
import bitsandbytes.functional as F
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
from safetensors.torch import save_file


def inputs():
    g = torch.Generator().manual_seed(19)
    rnd = lambda r, c: torch.randn(r, c, generator=g)
    big = rnd(131, 131) * torch.logspace(-3, 1, 131).view(-1, 1)   # absmax over 4 decades
    zero = rnd(65, 67)
    zero.view(-1)[128:192] = 0.0                                    # a block of zeros
    # Ties: every value sits on a midpoint of two NF4 codes once scaled (absmax 1 per block).
    code = F.get_4bit_type("nf4", device="cpu")
    mids = (code[:-1] + code[1:]) / 2
    row = torch.cat([torch.tensor([1.0]), mids, -mids, mids, -mids, torch.tensor([1.0, -1.0, 0.5])])
    ties = row.view(1, 64) * torch.pow(2.0, torch.arange(-4, 4.0)).view(8, 1)   # (8, 64): exact
    return [  # (name, tensor, dtype, double quant)
        ("odd_small", rnd(3, 37), torch.float32, False),
        ("odd_small_dq", rnd(3, 37), torch.bfloat16, True),
        ("zero_block_dq", zero, torch.float32, True),
        ("ragged_bf16", rnd(65, 67), torch.bfloat16, False),
        ("two_nested_dq", big, torch.float32, True),
        ("two_nested_bf16_dq", big * 3.0, torch.bfloat16, True),
        ("even_bf16_dq", rnd(64, 96), torch.bfloat16, True),
        ("even_f32", rnd(48, 64) * 0.02, torch.float32, False),
        ("ties", ties, torch.float32, False),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "../../tests/fixtures/nf4"))
    ap.add_argument("--random", type=int, default=0,
                    help="add N cases of random shapes and scales (a wider check, not committed)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t = {"code": F.get_4bit_type("nf4", device="cpu").float().contiguous(),
         "dynamic_code": F.create_dynamic_map().float().contiguous()}
    meta = {"bitsandbytes": bitsandbytes.__version__, "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    cases = inputs()
    g = torch.Generator().manual_seed(1919)
    for j in range(args.random):
        r, c = (int(v) for v in torch.randint(1, 300, (2,), generator=g))
        x = torch.randn(r, c, generator=g) * torch.exp(torch.randn(r, 1, generator=g) * 2)
        cases.append((f"random{j}", x, (torch.float32, torch.bfloat16)[j % 2], j % 3 != 0))
    for i, (name, x, dt, dq) in enumerate(cases):
        x = x.to(dt).contiguous()
        packed, st = F.quantize_4bit(x, blocksize=64, compress_statistics=dq, quant_type="nf4")
        assert torch.equal(st.code, t["code"])
        p = f"c{i}/"
        t[p + "x"] = x
        t[p + "packed"] = packed.reshape(-1).contiguous()
        if dq:
            assert torch.equal(st.state2.code, t["dynamic_code"]) and st.state2.blocksize == 256
            t[p + "qabsmax"] = st.absmax.contiguous()
            t[p + "nested_absmax"] = st.state2.absmax.float().contiguous()
            t[p + "offset"] = st.offset.float().reshape(1).contiguous()
        else:
            t[p + "absmax"] = st.absmax.float().contiguous()
        for odt, key in ((torch.float32, "dq_f32"), (torch.bfloat16, "dq_bf16")):
            st.dtype = odt
            t[p + key] = F.dequantize_4bit(packed, st).contiguous()
            assert t[p + key].dtype == odt and t[p + key].shape == x.shape
            # bitsandbytes' reference path (flat blocks of 64, the format CUDA and the scalar CPU
            # kernel use).  Its AVX-512 CPU kernel indexes absmax per row, wrong when a row is a
            # multiple of 16 but not of 64 (e.g. 96): there the fixture keeps the reference.
            absmax = st.absmax
            if dq:
                absmax = F.dequantize_blockwise(st.absmax, st.state2) + st.offset
            ref = _dequantize_4bit_compute(packed.reshape(-1), absmax.float(), st.code, 64, x.shape, odt)
            if not torch.equal(ref, t[p + key]):
                meta[f"c{i}.bnb_avx512_row_bug"] = "1"
                t[p + key] = ref.contiguous()
        meta[f"c{i}.double"] = str(int(dq))
        meta[f"c{i}.name"] = name
    meta["cases"] = str(len(cases))
    save_file(t, os.path.join(args.out, "reference.safetensors"), metadata=meta)
    print(f"wrote {len(cases)} cases to {args.out}/reference.safetensors")


if __name__ == "__main__":
    main()
