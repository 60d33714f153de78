#!/usr/bin/env python3
"""Reference fixture for quarry's attention op with learned sinks and sliding windows (gpt-oss),
computed by transformers' own code: modeling_gpt_oss.eager_attention_forward (sinks joined to the
scores, the max over both, softmax, the sink column dropped) under a mask built from
masking_utils' mask functions (causal or sliding_window_causal, and packed_sequence for the
documents of a packed row, offset for a query block at the end of a KV cache), in float64;
gradients of sum(out * R) by torch autograd. Written to tests/fixtures/attention_sinks/ so CI
needs no torch (tests/ops/test_attention_sinks.c reads it).

    .venv-ref/bin/python scripts/reference/make_attention_fixtures.py [--out DIR]

Tensors per case c<i>/ (F32 unless said; quarry's layouts):
  q (B*Tq, H, hd)   k, v (B*Tk, KVH, hd)   sinks (H)   R (B*Tq, H, hd) the loss weights
  doc_start I32 (B*Tk)   the position where each key's document begins
  out (B*Tq, H, hd)   lse (B, H, Tq) logsumexp over the visible scores and the sink
  dq, dk, dv, dsinks   ∂ sum(out * R) / ∂ each
Metadata: cases, c<i>.shape "B Tq Tk H KVH hd window" (window 0 = full attention), versions.
"""
import argparse
import os
import types

import torch
import transformers
from safetensors.torch import save_file
from transformers import masking_utils as mu
from transformers.models.gpt_oss import modeling_gpt_oss

CASES = [  # (B, Tq, Tk, H, KVH, hd, window, documents per row)
    (2, 24, 24, 4, 2, 8, 5, 3),      # window shorter than the documents, GQA 2
    (1, 7, 20, 4, 1, 16, 6, 2),      # Tq < Tk: the last 7 queries of a KV cache, GQA 4
    (2, 70, 70, 2, 1, 8, 37, 2),     # windows crossing the CPU op's key tiles
    (1, 16, 16, 4, 4, 8, 0, 1),      # full attention with sinks (gpt-oss' other layer type)
    (1, 9, 9, 2, 2, 8, 1, 1),        # window 1: each query sees itself only
]


def mask_for(B, Tq, Tk, window, seq_ids):
    """Additive mask (B, 1, Tq, Tk) as transformers' eager_mask makes it: 0 or finfo.min."""
    base = mu.sliding_window_causal_mask_function(window) if window > 0 else mu.causal_mask_function
    fn = mu.and_masks(base, mu.packed_sequence_mask_function(seq_ids))
    fn = mu.add_offsets_to_mask_function(fn, Tk - Tq, 0)   # query row i sits at position i + Tk - Tq
    allowed = fn(torch.arange(B).view(B, 1, 1, 1), torch.arange(1).view(1, 1, 1, 1),
                 torch.arange(Tq).view(1, 1, Tq, 1), torch.arange(Tk).view(1, 1, 1, Tk))
    allowed = allowed.expand(B, 1, Tq, Tk)
    zero = torch.zeros((), dtype=torch.float64)
    return torch.where(allowed, zero, torch.finfo(torch.float64).min)


def make_case(g, B, Tq, Tk, H, KVH, hd, window, docs):
    # Document boundaries: docs − 1 distinct cut points per row.
    seq_ids = torch.zeros(B, Tk, dtype=torch.long)
    doc_start = torch.zeros(B, Tk, dtype=torch.int32)
    for b in range(B):
        cuts = sorted(torch.randperm(Tk - 1, generator=g)[:docs - 1].add(1).tolist())
        for c in cuts:
            seq_ids[b, c:] += 1
        start = 0
        for t in range(Tk):
            if t in cuts:
                start = t
            doc_start[b, t] = start
    q = (torch.rand(B, Tq, H, hd, generator=g, dtype=torch.float64) * 4 - 2)
    k = (torch.rand(B, Tk, KVH, hd, generator=g, dtype=torch.float64) * 4 - 2)
    v = (torch.rand(B, Tk, KVH, hd, generator=g, dtype=torch.float64) * 2 - 1)
    sinks = torch.rand(H, generator=g, dtype=torch.float64) * 3 - 1
    R = torch.rand(B, Tq, H, hd, generator=g, dtype=torch.float64) * 2 - 1
    # Round the inputs to f32 first: quarry's op sees the f32 values.
    q, k, v, sinks, R = (x.float().double() for x in (q, k, v, sinks, R))
    q.requires_grad_(); k.requires_grad_(); v.requires_grad_(); sinks.requires_grad_()
    module = types.SimpleNamespace(num_key_value_groups=H // KVH, sinks=sinks, training=False)
    mask = mask_for(B, Tq, Tk, window, seq_ids)
    scale = hd ** -0.5
    out, _ = modeling_gpt_oss.eager_attention_forward(
        module, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, scale)
    # out: (B, Tq, H, hd).  lse over the same combined logits the oracle softmaxes.
    with torch.no_grad():
        kr = modeling_gpt_oss.repeat_kv(k.transpose(1, 2), H // KVH)
        scores = torch.matmul(q.transpose(1, 2), kr.transpose(2, 3)) * scale + mask
        combined = torch.cat([scores, sinks.view(1, H, 1, 1).expand(B, H, Tq, 1)], dim=-1)
        lse = torch.logsumexp(combined, dim=-1)   # (B, H, Tq)
    (out * R).sum().backward()
    f = lambda x: x.detach().float().contiguous()
    return {
        "q": f(q).view(B * Tq, H, hd), "k": f(k).view(B * Tk, KVH, hd), "v": f(v).view(B * Tk, KVH, hd),
        "sinks": f(sinks), "R": f(R).view(B * Tq, H, hd), "doc_start": doc_start.view(-1).contiguous(),
        "out": f(out).view(B * Tq, H, hd), "lse": f(lse),
        "dq": f(q.grad).view(B * Tq, H, hd), "dk": f(k.grad).view(B * Tk, KVH, hd),
        "dv": f(v.grad).view(B * Tk, KVH, hd), "dsinks": f(sinks.grad),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "../../tests/fixtures/attention_sinks"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1818)
    tensors, meta = {}, {"cases": str(len(CASES)), "torch": torch.__version__,
                         "transformers": transformers.__version__}
    for i, (B, Tq, Tk, H, KVH, hd, window, docs) in enumerate(CASES):
        for name, t in make_case(g, B, Tq, Tk, H, KVH, hd, window, docs).items():
            tensors[f"c{i}/{name}"] = t
        meta[f"c{i}.shape"] = f"{B} {Tq} {Tk} {H} {KVH} {hd} {window}"
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "reference.safetensors")
    save_file(tensors, path, metadata=meta)
    print(f"wrote {path}: {len(CASES)} cases")


if __name__ == "__main__":
    main()
