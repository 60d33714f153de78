#!/usr/bin/env python3
"""Reference fixture for QLoRA: a tiny random Llama checkpoint (fp32) loaded by transformers with
bitsandbytes' 4-bit NF4 (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
bnb_4bit_use_double_quant=True), compute dtype fp32 so that the CPU comparison measures compute
order, not bf16), LoRA r 8 all-linear by PEFT on top: logits, loss, LoRA gradients, 10 AdamW steps.
Written to tests/fixtures/qlora_llama/; and the same model as transformers' save_pretrained writes
it once loaded in 4 bits (bitsandbytes' layout: U8 codes, .absmax, .quant_map, .nested_absmax,
.nested_quant_map, .quant_state.bitsandbytes__nf4; config.json's quantization_config) to
tests/fixtures/qlora_llama_bnb4/ (config.json and model.safetensors only).
With --moe: tests/fixtures/qlora_qwen3_moe/ only, a tiny Qwen3-MoE whose attention transformers
quantises and whose experts are quantised per expert as transformers 4.x's Linear4bit does
(quantize_experts), LoRA r 8 on q, k, v, o.

Needs bitsandbytes >= 0.48 (NF4 on the CPU), torch, transformers, peft, e.g.
    python3 -m venv /tmp/bnbvenv && /tmp/bnbvenv/bin/pip install bitsandbytes==0.50.2 \\
        transformers peft torch --index-url ...
    /tmp/bnbvenv/bin/python scripts/reference/make_qlora_fixtures.py [--out tests/fixtures]

The directory holds (the batch layout and the optimizer are make_fixtures.py's):
  config.json, model.safetensors   save_pretrained in float32 (the 16-bit-or-better base)
  reference.json                   batches, loss, LoRA losses of the 10 steps, versions, settings
  reference.safetensors            logits (B*T, V) of batch 0; dequant/<name> every quantised
                                   weight as bitsandbytes' dequantize_4bit gives it (f32);
                                   lora_init/<name> (PEFT names: A as PEFT draws it, B random, so
                                   that A's gradients are not zero), grad/<name> the LoRA
                                   gradients on batch 0, lora_final/<name> after 10 steps
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import transformers
import peft
import bitsandbytes
import bitsandbytes.functional as BF
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (batches, loss, AdamW and the training loop)

NAME = "qlora_llama"
SEED = 1919


def config():
    # intermediate 320: gate/up/down hold 320 blocks of 64, so their double-quantised absmax
    # spans two nested blocks of 256 (the second partial).
    return transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=320, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
        max_position_embeddings=256, initializer_range=0.08, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def load_4bit(d):
    q = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                        bnb_4bit_use_double_quant=True,
                                        bnb_4bit_compute_dtype=torch.float32)
    m = transformers.AutoModelForCausalLM.from_pretrained(
        d, quantization_config=q, dtype=torch.float32, device_map="cpu", attn_implementation="eager")
    m.train()
    return m


def moe_config():
    # Every layer sparse, 4 experts top-2, no aux loss: what differs from qlora_llama is the
    # experts' NF4 weights. moe_intermediate 64: each expert matrix holds 64 blocks of 64, rows of
    # whole blocks. (bitsandbytes 0.50.2's CPU dequantize_4bit kernel scales every row by the
    # absmax of row·(n // 64) + col // 64 when a row's length n is not a multiple of 64, e.g. a
    # (64, 48) down_proj, unlike its quantize_4bit, its default backend and its CUDA kernel, which
    # all block the flat tensor; real models' rows are whole blocks.)
    return transformers.Qwen3MoeConfig(
        vocab_size=128, hidden_size=64, intermediate_size=96, moe_intermediate_size=64, num_experts=4,
        num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
        max_position_embeddings=256, initializer_range=0.08, bos_token_id=1, eos_token_id=2,
        output_router_logits=False, router_aux_loss_coef=0.0, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def quantize_experts(model, tensors):
    """transformers 5 keeps the experts fused (experts.gate_up_proj (E, 2I, C), down_proj (E, C, I))
    and BitsAndBytesConfig leaves them in the compute dtype; transformers 4.x holds one nn.Linear
    per expert projection, which it quantises as any linear. Each expert's gate, up and down are
    quantised here as that Linear4bit would (quantize_4bit, blocks of 64, double quant) and the
    fused tensors set to the dequantised weights: the weights its training route multiplies by."""
    for l, layer in enumerate(model.model.layers):
        ex = layer.mlp.experts
        I = ex.down_proj.shape[2]
        with torch.no_grad():
            for e in range(ex.gate_up_proj.shape[0]):
                for proj, t in (("gate_proj", ex.gate_up_proj[e, :I]), ("up_proj", ex.gate_up_proj[e, I:]),
                                ("down_proj", ex.down_proj[e])):
                    q, st = BF.quantize_4bit(t.contiguous(), blocksize=64, quant_type="nf4",
                                             compress_statistics=True)
                    dq = BF.dequantize_4bit(q, st).float()
                    tensors[f"dequant/model.layers.{l}.mlp.experts.{e}.{proj}.weight"] = dq.contiguous()
                    t.copy_(dq)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "fixtures"))
    ap.add_argument("--moe", action="store_true",
                    help="write only qlora_qwen3_moe (NF4 experts; LoRA on attention)")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    moe = args.moe
    name = "qlora_qwen3_moe" if moe else NAME
    d = os.path.join(args.out, name)
    os.makedirs(d, exist_ok=True)
    cfg = moe_config() if moe else config()
    torch.manual_seed(SEED)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.add_(0.2 * torch.randn_like(p))
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    model.save_pretrained(d, safe_serialization=True)

    gen = np.random.default_rng(SEED)
    batches = [mf.make_batch(gen, cfg.vocab_size), mf.make_batch(gen, cfg.vocab_size)]
    tensors = {}

    model = load_4bit(d)
    if not moe:
        bnb_dir = os.path.join(args.out, NAME + "_bnb4")
        os.makedirs(bnb_dir, exist_ok=True)
        model.save_pretrained(bnb_dir, safe_serialization=True)
        for f in os.listdir(bnb_dir):
            if f not in ("config.json", "model.safetensors"):
                os.remove(os.path.join(bnb_dir, f))
    for n, mod in model.named_modules():
        if isinstance(mod, bitsandbytes.nn.Linear4bit):
            qs = mod.weight.quant_state
            assert qs.nested and qs.quant_type == "nf4" and qs.blocksize == 64, n
            tensors["dequant/" + n + ".weight"] = BF.dequantize_4bit(mod.weight.data, qs).float().contiguous()
    per_layer = 4 + 3 * cfg.num_experts if moe else 7
    if moe:
        quantize_experts(model, tensors)
    assert len([k for k in tensors if k.startswith("dequant/")]) == per_layer * cfg.num_hidden_layers
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"] if moe else "all-linear"
    lcfg = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets,
                           bias="none", task_type="CAUSAL_LM")
    pm = peft.get_peft_model(model, lcfg)
    trainable = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for n, p in trainable:
            if "lora_B" in n:
                p.copy_(0.2 * (2 * torch.rand(p.shape, generator=g) - 1))
    for n, p in trainable:
        tensors["lora_init/" + mf.peft_name(n)] = p.detach().clone().contiguous()

    logits = mf.forward(pm, batches[0])
    loss = mf.loss_of(logits, batches[0])
    loss.backward()
    tensors["logits"] = logits.detach().reshape(mf.B * mf.T, cfg.vocab_size).contiguous()
    for n, p in trainable:
        tensors["grad/" + mf.peft_name(n)] = p.grad.detach().clone().contiguous()
        p.grad = None
    losses = mf.train(pm, trainable, batches, cfg)
    for n, p in trainable:
        tensors["lora_final/" + mf.peft_name(n)] = p.detach().clone().contiguous()

    save_file(tensors, os.path.join(d, "reference.safetensors"), metadata={"format": "pt"})
    ref = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__, "bitsandbytes": bitsandbytes.__version__,
                     "python": sys.version.split()[0]},
        "B": mf.B, "T": mf.T,
        "batches": [{k: v.reshape(-1).tolist() for k, v in b.items()} for b in batches],
        "loss": loss.item(),
        "quantization": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                         "bnb_4bit_compute_dtype": "float32", "blocksize": 64},
        "optimizer": {"name": "AdamW", "lr": mf.LR, "betas": [0.9, 0.999], "eps": 1e-8,
                      "weight_decay": mf.WD, "no_decay": "tensors with ndim < 2", "steps": mf.STEPS,
                      "batch_of_step": "step % 2"},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "targets": targets, "rslora": False,
                 "init": "A as PEFT draws it, B uniform in [-0.2, 0.2)"},
        "lora_losses": losses,
    }
    if moe:
        ref["quantization"]["experts"] = ("each expert's gate, up, down quantised as transformers 4.x's per-expert "
                                          "Linear4bit; the router stays float32 (transformers 5's leaves the experts "
                                          "and the router unquantised)")
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
    print(f"{name}: loss {loss.item():.6f}, lora {losses[0]:.4f}->{losses[-1]:.4f}, {size // 1024} KiB")


if __name__ == "__main__":
    main()
