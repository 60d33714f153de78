#!/usr/bin/env python3
"""Reference fixtures for quarry's sparse MoE block (model/moe/): transformers' own
Qwen3MoeSparseMoeBlock and MixtralSparseMoeBlock with random fp32 weights, and what they compute
(output, router logits, load-balancing loss, every gradient), written to tests/fixtures/moe_*/.

Needs torch and transformers (scripts/requirements-reference.txt), not the test .venv:
    .venv-ref/bin/python scripts/reference/make_moe_fixtures.py [--out tests/fixtures]

Each fixture directory holds one reference.safetensors (metadata: E, k, C, I, N, L, renorm,
aux_coef, the class and the versions) with, per layer l (L independent blocks, each with its
own input: L = 2 makes the load-balancing loss mix the layers' statistics as transformers'
load_balancing_loss_func does over a model's layers):
  l<l>/x (N, C), l<l>/dy (N, C)                  input and upstream gradient
  l<l>/router (E, C), l<l>/gate, l<l>/up (E, I, C), l<l>/down (E, C, I)
                                                  weights in quarry's layout (expert-major)
  l<l>/y (N, C), l<l>/logits (N, E)               block output and router logits
  l<l>/grad/{x,router,gate,up,down}               ∂loss/∂· with loss = Σ_l Σ y_l·dy_l + coef·aux
and mask (N) (1 = real row, 0 = padding, excluded from the aux loss as transformers'
attention_mask variant does), aux (1).
"""
import argparse
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

N_ROWS = (2, 20)       # batch 2 × seq 20 = N 40 rows
PAD = (3, 0)           # the last 3 rows of batch row 0 are padding
C, I = 32, 48
AUX_COEF = 0.37        # not the config default: a coefficient error shows


def fixtures():
    q = dict(hidden_size=C, moe_intermediate_size=I, num_experts=8, num_experts_per_tok=2,
             router_aux_loss_coef=AUX_COEF)
    from transformers.models.qwen3_moe import modeling_qwen3_moe as mq
    from transformers.models.mixtral import modeling_mixtral as mm
    return {
        "moe_qwen3_norm": (mq.Qwen3MoeSparseMoeBlock, mq.load_balancing_loss_func,
                           transformers.Qwen3MoeConfig(**q, norm_topk_prob=True), 1),
        "moe_qwen3_nonorm": (mq.Qwen3MoeSparseMoeBlock, mq.load_balancing_loss_func,
                             transformers.Qwen3MoeConfig(**q, norm_topk_prob=False), 1),
        "moe_mixtral": (mm.MixtralSparseMoeBlock, mm.load_balancing_loss_func,
                        transformers.MixtralConfig(hidden_size=C, intermediate_size=I,
                                                   num_local_experts=4, num_experts_per_tok=2,
                                                   router_aux_loss_coef=AUX_COEF,
                                                   router_jitter_noise=0.0), 2),
    }


def build(name, cls, lb_loss, cfg, L, out_dir, seed):
    torch.manual_seed(seed)
    E = cfg.num_experts if hasattr(cfg, "num_experts") else cfg.num_local_experts
    k = cfg.num_experts_per_tok
    renorm = int(getattr(cfg, "norm_topk_prob", True))
    B, T = N_ROWS
    N = B * T
    mask = torch.ones(B, T)
    mask[0, T - PAD[0]:] = 0
    blocks, xs, dys, ys, logits = [], [], [], [], []
    for _ in range(L):
        blk = cls(cfg).float()
        with torch.no_grad():
            for p in blk.parameters():
                p.copy_(0.2 * torch.randn_like(p))
        blk.train()
        x = torch.randn(B, T, C, requires_grad=True)
        dy = torch.randn(B, T, C)
        y = blk(x)
        lg = blk.gate(x.reshape(N, C))[0]   # the router's logits (what output_router_logits records)
        blocks.append(blk), xs.append(x), dys.append(dy), ys.append(y), logits.append(lg)
    aux = lb_loss(tuple(logits), E, k, mask)
    loss = sum((y * dy).sum() for y, dy in zip(ys, dys)) + AUX_COEF * aux
    loss.backward()

    t = {"mask": mask.reshape(N).contiguous(), "aux": aux.detach().reshape(1)}
    for l, (blk, x, dy, y, lg) in enumerate(zip(blocks, xs, dys, ys, logits)):
        ex = blk.experts
        gu, dn = ex.gate_up_proj, ex.down_proj
        p = f"l{l}/"
        t[p + "x"] = x.detach().reshape(N, C)
        t[p + "dy"] = dy.reshape(N, C)
        t[p + "y"] = y.detach().reshape(N, C)
        t[p + "logits"] = lg.detach()
        t[p + "router"] = blk.gate.weight.detach()
        t[p + "gate"], t[p + "up"] = gu.detach()[:, :I], gu.detach()[:, I:]
        t[p + "down"] = dn.detach()
        t[p + "grad/x"] = x.grad.reshape(N, C)
        t[p + "grad/router"] = blk.gate.weight.grad
        t[p + "grad/gate"], t[p + "grad/up"] = gu.grad[:, :I], gu.grad[:, I:]
        t[p + "grad/down"] = dn.grad
    t = {n: v.detach().float().contiguous().clone() for n, v in t.items()}
    meta = {"format": "pt", "class": cls.__name__, "E": str(E), "k": str(k), "C": str(C),
            "I": str(I), "N": str(N), "L": str(L), "renorm": str(renorm),
            "aux_coef": repr(AUX_COEF), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": sys.version.split()[0]}
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "reference.safetensors")
    save_file(t, path, metadata=meta)
    print(f"{name}: {cls.__name__} E {E} k {k} renorm {renorm} L {L}: aux {aux.item():.6f}, "
          f"{os.path.getsize(path) // 1024} KiB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "fixtures"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for i, (name, (cls, lb, cfg, L)) in enumerate(fixtures().items()):
        build(name, cls, lb, cfg, L, os.path.abspath(args.out), seed=4321 + i)


if __name__ == "__main__":
    main()
