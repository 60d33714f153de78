#!/usr/bin/env python3
"""dev/cuda/emu/gptoss_bf16.py — why the gpt_oss fixture's bf16 gradients leave the fp32 ones, in
transformers fp32 (run with .venv-ref: torch, transformers 5.24), batch 0 of tests/fixtures/gpt_oss
exactly as scripts/reference/make_fixtures.py computes it. Two measurements (dev/cuda/README.md,
"gpt-oss under bf16"):

1. Clamped SwiGLU near its limit: the gradients with everything fp32 except the clamps' pass/stop
   decisions, taken on gate_up computed from bf16 operands and rounded to bf16 (as the CUDA path
   holds it) — the part of the bf16 error that comes from elements crossing the limit alone.
2. Attention sinks: dsinks[h] = −Σ_rows p_sink·(dO·O); the cancellation Σ|terms| / |Σ terms| per
   head, and the error of dsinks and of o_proj's weight gradient when their inputs (O, dO; O, dY)
   are rounded to bf16 — the sensitivity of each to the op's own input rounding.
"""
import json
import os
import sys

import torch
from transformers import GptOssForCausalLM
from transformers.models.gpt_oss import modeling_gpt_oss as mg

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
sys.path.insert(0, os.path.join(ROOT, "scripts", "reference"))
import make_fixtures as mf  # noqa: E402

FIX = os.path.join(ROOT, "tests", "fixtures", "gpt_oss")


def bf(x):
    return x.to(torch.bfloat16).float()


def main():
    ref = json.load(open(os.path.join(FIX, "reference.json")))
    m = GptOssForCausalLM.from_pretrained(FIX, dtype=torch.float32, attn_implementation="eager")
    mf.hook_routers(m)
    lim, alpha = m.config.swiglu_limit, m.config.swiglu_alpha
    mode = {"m": "exact"}

    class Gate(torch.autograd.Function):
        # GptOssExperts._apply_gate with the clamps' gradient masks taken from `ms`.
        @staticmethod
        def forward(ctx, gu, ms):
            ctx.save_for_backward(gu, ms)
            g, u = gu[..., ::2].clamp(max=lim), gu[..., 1::2].clamp(-lim, lim)
            return (u + 1) * g * torch.sigmoid(g * alpha)

        @staticmethod
        def backward(ctx, dout):
            gu, ms = ctx.saved_tensors
            g, u = gu[..., ::2].clamp(max=lim), gu[..., 1::2].clamp(-lim, lim)
            s = torch.sigmoid(g * alpha)
            d = torch.empty_like(gu)
            d[..., ::2] = dout * (u + 1) * (s + alpha * g * s * (1 - s)) * (ms[..., ::2] <= lim)
            d[..., 1::2] = dout * g * s * ((ms[..., 1::2] >= -lim) & (ms[..., 1::2] <= lim))
            return d, None

    def experts_forward(self, x, router_indices=None, routing_weights=None):
        out = torch.zeros_like(x)
        for e in range(self.num_experts):
            tok, pos = torch.where(router_indices == e)
            if tok.numel() == 0:
                continue
            xe = x[tok]
            gu = xe @ self.gate_up_proj[e] + self.gate_up_proj_bias[e]
            if mode["m"] == "exact":
                ms = gu.detach()
            else:   # bf16 operands, fp32 accumulation, bf16 result
                ms = bf(bf(xe.detach()) @ bf(self.gate_up_proj[e].detach()) + bf(self.gate_up_proj_bias[e].detach()))
            h = Gate.apply(gu, ms)
            out.index_add_(0, tok, (h @ self.down_proj[e] + self.down_proj_bias[e]) * routing_weights[tok, pos, None])
        return out

    mg.GptOssExperts.forward = experts_forward
    cap = {}
    for li, layer in enumerate(m.model.layers):
        def pre(mod, args, li=li):
            args[0].retain_grad()
            cap[li] = args[0]
        layer.self_attn.o_proj.register_forward_pre_hook(pre)

        def post(mod, args, kwargs, out, li=li):
            cap["A", li] = out[1].detach()
        layer.self_attn.register_forward_hook(post, with_kwargs=True)
    batch = {k: torch.tensor(v).view(mf.B, mf.T).tolist() for k, v in ref["batches"][0].items()}

    def grads(which):
        mode["m"] = which
        m.zero_grad()
        loss = mf.loss_of(mf.forward(m, batch), batch, m.config)
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in m.named_parameters()}

    loss_b, B = grads("bf16 clamps")
    loss_a, A = grads("exact")
    print(f"loss {loss_a:.9g} (fixture {ref['loss']:.9g})")
    print("1. clamp decisions from bf16 gate_up only — relative L2 error per quarry tensor, worst first:")
    rows = []
    for n in A:
        if "gate_up_proj" in n:   # quarry splits gate (even columns) and up (odd ones) per expert
            for k, half in ((0, "gate"), (1, "up")):
                if n.endswith("_bias"):
                    a, b = A[n][:, k::2], B[n][:, k::2]
                    rows.append((((b - a).norm() / a.norm()).item(), f"{n[:-len('gate_up_proj_bias')]}{half}_bias"))
                else:
                    for e in range(A[n].shape[0]):
                        a, b = A[n][e][:, k::2], B[n][e][:, k::2]
                        rows.append((((b - a).norm() / a.norm()).item(), f"{n[:-len('gate_up_proj')]}{e}.{half}"))
        else:
            rows.append((((B[n] - A[n]).norm() / A[n].norm()).item(), n))
    rows = [r for r in rows if r[0] == r[0]]   # an expert no row reached has no gradient (0/0)
    for e, n in sorted(rows, reverse=True)[:10]:
        print(f"   {e:.3g}  {n}")
    H, D = m.config.num_attention_heads, m.config.head_dim
    print("2. sinks:")
    for li in range(len(m.model.layers)):
        O = cap[li].detach().view(mf.B, mf.T, H, D)
        dO = cap[li].grad.view(mf.B, mf.T, H, D)
        psink = (1 - cap["A", li].sum(-1)).permute(0, 2, 1)   # the mass the sink took, (B, T, H)
        terms = -psink * (dO * O).sum(-1)
        ds = terms.sum((0, 1))
        assert torch.allclose(ds, m.model.layers[li].self_attn.sinks.grad, rtol=1e-4, atol=1e-9)
        dsr = (-psink * (bf(dO) * bf(O)).sum(-1)).sum((0, 1))
        W = m.model.layers[li].self_attn.o_proj.weight
        dY = torch.linalg.lstsq(W.T, cap[li].grad.flatten(0, 1).T).solution.T   # dO = dY·W
        Of = O.flatten(0, 1).flatten(1)
        dW = dY.T @ Of
        print(f"   layer {li}: cancellation per head {[round(v, 1) for v in (terms.abs().sum((0, 1)) / ds.abs()).tolist()]}; "
              f"O, dO rounded to bf16: dsinks {((dsr - ds).norm() / ds.norm()).item():.3g}, "
              f"o_proj dW (O, dY rounded) {((bf(dY).T @ bf(Of) - dW).norm() / dW.norm()).item():.3g}")


if __name__ == "__main__":
    main()
