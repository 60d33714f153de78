#!/usr/bin/env python3
"""Reference fixtures for quarry's model: tiny random Llama-family checkpoints and what
transformers + PEFT compute on them (logits, loss, gradients, 10 AdamW steps of LoRA and of
full fine-tuning, greedy continuation), written to tests/fixtures/<name>/.

Needs torch, transformers and peft (scripts/requirements-reference.txt), not the test .venv:
    python3 -m venv .venv-ref && .venv-ref/bin/pip install -r scripts/requirements-reference.txt
    .venv-ref/bin/python scripts/reference/make_fixtures.py [--out tests/fixtures] [--only NAME ...]
(--only regenerates the named fixtures alone; each keeps its seed.)

Each fixture directory holds:
  config.json, model.safetensors   save_pretrained in float32
  reference.json                   batches, losses, greedy ids, versions, settings
  reference.safetensors            logits (B*T, V) of batch 0; grad/<name> for every parameter
                                   (full fine-tuning, batch 0); full/<name> after 10 steps;
                                   lora_init/<name> and lora_final/<name> (PEFT names)

Batches are packed: 2 rows × 32 tokens, several documents per row. targets[i] is the token
row i predicts (the next token of its document), −1 where not trained (the last token of a
document, and each document's first tokens as a "prompt"). The documents are kept apart by a
4D additive attention mask and position_ids that restart per document; the script checks
that packing gives the same logits as running each document alone.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import transformers
import peft
from safetensors.torch import save_file

B, T = 2, 32
STEPS = 10
LR, WD = 1e-3, 0.01
DOCS = [[10, 14, 8], [20, 12]]   # document lengths per row (sum = T)
PROMPT = 3                       # first tokens of each document not trained
# Seeds other than 1234 + index: mixtral's default draw has a routing near-tie that fp32 rounding
# flips during the 10 full fine-tuning steps (final weights 8.9e-5 off, the bound being 1e-4).
SEEDS = {"mixtral": 4242}


def configs():
    common = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, rms_norm_eps=1e-5, max_position_embeddings=256,
                  initializer_range=0.08, bos_token_id=1, eos_token_id=2)
    out = {}
    out["llama3_gqa"] = transformers.LlamaConfig(
        **common, num_key_value_heads=2, tie_word_embeddings=False,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 4.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64})
    out["llama32_tied"] = transformers.LlamaConfig(
        **common, num_key_value_heads=1, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64})
    # head_dim 24 ≠ hidden/heads (as Mistral NeMo's 128 ≠ 5120/32): q and o are not square.
    out["mistral"] = transformers.MistralConfig(
        **common, num_key_value_heads=2, head_dim=24, tie_word_embeddings=False, sliding_window=None,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    out["qwen2"] = transformers.Qwen2Config(
        **common, num_key_value_heads=2, tie_word_embeddings=False, use_sliding_window=False,
        # θ 1e4, not Qwen2's 1e6: at 1e6 the slowest pairs barely rotate over 32 positions, the
        # k bias's gradient there is rounding noise, and AdamW's sign of it is arbitrary.
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    # Qwen3: q_norm/k_norm per head before RoPE, head_dim 24 ≠ hidden/heads, tied, θ 1e6.
    out["qwen3"] = transformers.Qwen3Config(
        **common, num_key_value_heads=2, head_dim=24, tie_word_embeddings=True, attention_bias=False,
        use_sliding_window=False, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    # Qwen3-MoE: 8 experts, top-2 renormalised, layer 1 of 3 dense (mlp_only_layers), the
    # load-balancing loss in the objective (coef 0.01 with output_router_logits, as transformers
    # adds it). Mixtral: 4 experts, top-2, no aux loss (its default output_router_logits false).
    moe_common = dict(common, num_hidden_layers=3)
    out["qwen3_moe"] = transformers.Qwen3MoeConfig(
        **moe_common, num_key_value_heads=2, head_dim=24, tie_word_embeddings=False, attention_bias=False,
        use_sliding_window=False, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        num_experts=8, num_experts_per_tok=2, moe_intermediate_size=16, norm_topk_prob=True,
        decoder_sparse_step=1, mlp_only_layers=[1], router_aux_loss_coef=0.01, output_router_logits=True)
    out["mixtral"] = transformers.MixtralConfig(
        **dict(common, intermediate_size=32), num_key_value_heads=2, tie_word_embeddings=False,
        sliding_window=None, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        num_local_experts=4, num_experts_per_tok=2, router_aux_loss_coef=0.02, output_router_logits=False,
        router_jitter_noise=0.0)
    # gpt-oss: learned sinks, alternating sliding (window 6, shorter than every document) and full
    # layers, q/k/v/o biases, YaRN (factor 32 over 4096: head_dim 16 puts the ramp mid-head), 4
    # experts top-2 with router and expert biases, the clamped SwiGLU at a limit the random
    # activations cross (0.5), the aux loss in the objective.
    out["gpt_oss"] = transformers.GptOssConfig(
        **dict(common, intermediate_size=32), num_key_value_heads=2, head_dim=16, tie_word_embeddings=False,
        sliding_window=6, layer_types=["sliding_attention", "full_attention"], attention_bias=True,
        rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0, "beta_fast": 32.0,
                         "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 4096},
        num_local_experts=4, num_experts_per_tok=2, swiglu_limit=0.5, router_aux_loss_coef=0.02,
        output_router_logits=True)
    return out


def make_batch(gen, V):
    ids = np.zeros((B, T), np.int64)
    targets = np.full((B, T), -1, np.int64)
    pos = np.zeros((B, T), np.int64)
    doc_start = np.zeros((B, T), np.int64)
    for b, lens in enumerate(DOCS):
        assert sum(lens) == T
        s = 0
        for n in lens:
            doc = gen.integers(3, V, size=n)
            ids[b, s:s + n] = doc
            pos[b, s:s + n] = np.arange(n)
            doc_start[b, s:s + n] = s
            for i in range(PROMPT, n - 1):
                targets[b, s + i] = doc[i + 1]
            s += n
    return dict(ids=ids, targets=targets, pos=pos, doc_start=doc_start)


def mask4d(batch, dtype, window=None):
    # allowed[b, i, j] = doc_start[b, i] <= j <= i (and i − j < window: sliding_window_overlay)
    ds = torch.tensor(batch["doc_start"])
    i = torch.arange(T).view(1, T, 1)
    j = torch.arange(T).view(1, 1, T)
    allowed = (j <= i) & (j >= ds.view(B, T, 1))
    if window:
        allowed = allowed & (j > i - window)
    m = torch.zeros(B, 1, T, T, dtype=dtype)
    m.masked_fill_(~allowed.unsqueeze(1), torch.finfo(dtype).min)
    return m


ROUTER_LOGITS = []   # filled by the MoE routers' forward hooks during one forward
ROUTER_HOOKED = False


def is_router(mod):
    return type(mod).__name__ in ("Qwen3MoeTopKRouter", "MixtralTopKRouter", "GptOssTopKRouter")


def hook_routers(model):
    global ROUTER_HOOKED
    for mod in model.modules():
        if is_router(mod):
            mod.register_forward_hook(lambda m, i, o: ROUTER_LOGITS.append(o[0]))
            ROUTER_HOOKED = True


def aux_coef(cfg):
    # transformers adds coef·aux to the loss only when output_router_logits is true.
    return getattr(cfg, "router_aux_loss_coef", 0.0) if getattr(cfg, "output_router_logits", False) else 0.0


def forward(model, batch):
    # The 4D document mask cannot go to load_balancing_loss_func (it wants the 2D padding mask):
    # the router logits are caught by hooks and the aux loss computed over every row (no padding
    # in these batches), as transformers' forward does without an attention_mask.
    ROUTER_LOGITS.clear()
    mask = mask4d(batch, torch.float32)
    cfg = model.config
    if getattr(cfg, "layer_types", None) and "sliding_attention" in cfg.layer_types:
        # Per layer type, as GptOssModel builds its causal_mask_mapping.
        mask = {"full_attention": mask, "sliding_attention": mask4d(batch, torch.float32, cfg.sliding_window)}
    out = model(input_ids=torch.tensor(batch["ids"]), attention_mask=mask,
                position_ids=torch.tensor(batch["pos"]), use_cache=False,
                **({"output_router_logits": False} if ROUTER_HOOKED else {}))
    return out.logits


def aux_of(cfg):
    if not ROUTER_LOGITS:
        return None
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func
    E = getattr(cfg, "num_experts", None) or cfg.num_local_experts
    return load_balancing_loss_func(tuple(ROUTER_LOGITS), E, cfg.num_experts_per_tok, None)


def loss_of(logits, batch, cfg=None):
    t = torch.tensor(batch["targets"]).view(-1)
    n = int((t != -1).sum())
    loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]).float(), t,
                                             ignore_index=-1, reduction="sum") / n
    if cfg is not None and aux_coef(cfg) > 0:
        loss = loss + aux_coef(cfg) * aux_of(cfg)
    return loss


def published(name, t, cfg):
    """transformers 5 keeps experts fused (experts.gate_up_proj (E, 2I, C), experts.down_proj
    (E, C, I)) under .mlp.; checkpoints (and CMI's transformers 4.51.3) name each expert's
    matrices: yield the published (name, tensor) pairs."""
    if cfg.model_type == "gpt_oss":
        yield from published_gpt_oss(name, t)
        return
    mixtral = cfg.model_type == "mixtral"
    if mixtral:
        name = name.replace(".mlp.gate.", ".block_sparse_moe.gate.").replace(".mlp.experts.", ".block_sparse_moe.experts.")
    g, u, d = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
    if name.endswith(".experts.gate_up_proj"):
        pre = name[:-len("gate_up_proj")]
        I = t.shape[1] // 2
        for e in range(t.shape[0]):
            yield f"{pre}{e}.{g}.weight", t[e, :I].contiguous()
            yield f"{pre}{e}.{u}.weight", t[e, I:].contiguous()
    elif name.endswith(".experts.down_proj"):
        pre = name[:-len("down_proj")]
        for e in range(t.shape[0]):
            yield f"{pre}{e}.{d}.weight", t[e].contiguous()
    else:
        yield name, t


def published_gpt_oss(name, t):
    """gpt-oss checkpoints keep transformers' fused experts; quarry's decoder holds them expert-major:
    expert e's gate/up (I, C) = gate_up_proj[e, :, 0::2]ᵀ / [e, :, 1::2]ᵀ, down (C, I) = down_proj[e]ᵀ,
    and the bias stacks gate_bias/up_bias (E, I), down_bias (E, C) (model/names.h)."""
    pre = name.rsplit(".", 1)[0] + "."
    if name.endswith(".experts.gate_up_proj"):
        for e in range(t.shape[0]):
            yield f"{pre}{e}.gate_proj.weight", t[e, :, 0::2].t().contiguous()
            yield f"{pre}{e}.up_proj.weight", t[e, :, 1::2].t().contiguous()
    elif name.endswith(".experts.down_proj"):
        for e in range(t.shape[0]):
            yield f"{pre}{e}.down_proj.weight", t[e].t().contiguous()
    elif name.endswith(".experts.gate_up_proj_bias"):
        yield pre + "gate_bias", t[:, 0::2].contiguous()
        yield pre + "up_bias", t[:, 1::2].contiguous()
    elif name.endswith(".experts.down_proj_bias"):
        yield pre + "down_bias", t
    else:
        yield name, t


def load(cls, d):
    m = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    m.train()   # dropout is 0 everywhere; train() only matters for PEFT's dropout modules
    return m


def check_packing(model, batch, logits):
    # Each document alone must give the same logits as the packed rows.
    with torch.no_grad():
        for b, lens in enumerate(DOCS):
            s = 0
            for n in lens:
                ids = torch.tensor(batch["ids"][b:b + 1, s:s + n])
                alone = model(input_ids=ids, use_cache=False).logits[0]
                err = (alone - logits[b, s:s + n]).abs().max().item()
                assert err < 1e-5, f"packed vs alone differ by {err}"
                s += n


def adamw(params_named):
    decay = [p for n, p in params_named if p.ndim >= 2]
    no_decay = [p for n, p in params_named if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=LR, betas=(0.9, 0.999), eps=1e-8)


def train(model, named, batches, cfg):
    opt = adamw(named)
    losses = []
    for step in range(STEPS):
        batch = batches[step % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss = loss_of(forward(model, batch), batch, cfg)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def peft_name(n):
    # PEFT's state dict carries the adapter name; its saved adapters do not.
    return n.replace(".default.weight", ".weight")


def build(name, cfg, out_dir, seed):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(seed)
    cls = transformers.AutoModelForCausalLM
    model = cls.from_config(cfg, dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        # Norms start at 1 and biases at 0: perturb them so their gradients are tested.
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.add_(0.2 * torch.randn_like(p))
            elif n.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif n.endswith(".sinks"):
                p.copy_(torch.randn_like(p))
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    model.save_pretrained(d, safe_serialization=True)
    moe = getattr(cfg, "num_experts", None) or getattr(cfg, "num_local_experts", None)
    if moe and cfg.model_type != "gpt_oss":   # gpt-oss publishes its experts fused
        # The published per-expert names, whatever this transformers' save_pretrained writes.
        sd = {}
        for n, p in model.state_dict().items():
            sd.update(published(n, p.detach(), cfg))
        for f in os.listdir(d):
            if f.endswith(".safetensors") or f.endswith(".index.json"):
                os.remove(os.path.join(d, f))
        save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})

    gen = np.random.default_rng(seed)
    V = cfg.vocab_size
    batches = [make_batch(gen, V), make_batch(gen, V)]
    tensors = {}

    # Logits, loss and every gradient on batch 0.
    model = load(cls, d)
    hook_routers(model)
    logits = forward(model, batches[0])
    aux = aux_of(cfg)
    check_packing(model, batches[0], logits.detach())
    logits = forward(model, batches[0])
    loss = loss_of(logits, batches[0], cfg)
    loss.backward()
    tensors["logits"] = logits.detach().reshape(B * T, V).contiguous()
    for n, p in model.named_parameters():
        for pn, pt in published(n, p.grad.detach().clone(), cfg):
            tensors["grad/" + pn] = pt.contiguous()

    # Greedy continuation of a prompt (the first 5 tokens of batch 0's first document).
    prompt = [int(x) for x in batches[0]["ids"][0, :5]]
    with torch.no_grad():
        g = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=8,
                           min_new_tokens=8, eos_token_id=None, pad_token_id=0)
    greedy = [int(x) for x in g[0, len(prompt):]]

    # Full fine-tuning: 10 AdamW steps, batches alternating.
    model = load(cls, d)
    hook_routers(model)
    full_losses = train(model, list(model.named_parameters()), batches, cfg)
    for n, p in model.named_parameters():
        for pn, pt in published(n, p.detach().clone(), cfg):
            tensors["full/" + pn] = pt.contiguous()

    # LoRA r=8, alpha=16, all-linear, no dropout.
    model = load(cls, d)
    hook_routers(model)
    # MoE: PEFT's all-linear also adapts the fused expert parameters and the router (see
    # all_linear_adapts in reference.json), which quarry does not: the MoE fixtures adapt the
    # attention projections, quarry's --lora-targets attention.
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"] if moe else "all-linear"
    all_linear = None
    if moe and cfg.model_type != "gpt_oss":
        probe = peft.get_peft_model(load(cls, d), peft.LoraConfig(r=8, target_modules="all-linear",
                                                                   task_type="CAUSAL_LM"))
        all_linear = sorted({n.split(".lora_")[0].replace("base_model.model.", "")
                             for n, p in probe.named_parameters() if p.requires_grad and ".layers.0." in n})
    lcfg = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets,
                           bias="none", task_type="CAUSAL_LM")
    pm = peft.get_peft_model(model, lcfg)
    trainable = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    for n, p in trainable:
        tensors["lora_init/" + peft_name(n)] = p.detach().clone().contiguous()
    lora_losses = train(pm, trainable, batches, cfg)
    for n, p in trainable:
        tensors["lora_final/" + peft_name(n)] = p.detach().clone().contiguous()

    save_file(tensors, os.path.join(d, "reference.safetensors"), metadata={"format": "pt"})
    ref = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__, "python": sys.version.split()[0]},
        "B": B, "T": T,
        "batches": [{k: v.reshape(-1).tolist() for k, v in b.items()} for b in batches],
        "loss": loss.item(),
        "aux_loss": None if aux is None else aux.item(),
        "aux_coef": aux_coef(cfg),
        "all_linear_adapts": all_linear,
        "optimizer": {"name": "AdamW", "lr": LR, "betas": [0.9, 0.999], "eps": 1e-8,
                      "weight_decay": WD, "no_decay": "tensors with ndim < 2 (norms, biases)",
                      "steps": STEPS, "batch_of_step": "step % 2"},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "targets": "q,k,v,o" if moe else "all-linear",
                 "rslora": False},
        "full_losses": full_losses,
        "lora_losses": lora_losses,
        "greedy": {"prompt": prompt, "new_tokens": greedy},
    }
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
    print(f"{name}: loss {loss.item():.6f}, full {full_losses[0]:.4f}->{full_losses[-1]:.4f}, "
          f"lora {lora_losses[0]:.4f}->{lora_losses[-1]:.4f}, greedy {greedy}, {size // 1024} KiB")


# LoRA on the experts (and the router), checked against transformers 4.x + PEFT, where each
# expert is an nn.Linear module under its published name (transformers 5 fuses them). These
# fixtures need transformers 4.51.3 (the version CMI names) and peft 0.15.2:
#     /tmp/v451/bin/python scripts/reference/make_fixtures.py --only qwen3_moe_lora_experts mixtral_lora_experts
# They reuse a base fixture's config.json and model.safetensors (reference.json "base") and hold
# reference.json + reference.safetensors: logits and loss (with the aux loss) of batch 0 under
# the adapters' initial values, grad/<name> of every LoRA tensor, lora_init/ and lora_final/
# after 10 AdamW steps. B starts random (small), not PEFT's zero, so that A's gradients are
# tested too. "targets" is quarry's --lora-targets; "peft_targets" the regex PEFT is given.
LORA_FIXTURES = {
    # all-linear: attention, the experts, the dense MLP of mlp_only layer 1; not the router.
    "qwen3_moe_lora_experts": dict(
        base="qwen3_moe", seed=77, targets="all-linear",
        peft_targets=r".*\.(self_attn\.(q|k|v|o)_proj|mlp\.experts\.\d+\.(gate|up|down)_proj|mlp\.(gate|up|down)_proj)"),
    # attention, the experts and the router (Mixtral's block_sparse_moe.gate).
    "mixtral_lora_experts": dict(
        base="mixtral", seed=78, targets="attention,experts,router",
        peft_targets=r".*\.(self_attn\.(q|k|v|o)_proj|block_sparse_moe\.experts\.\d+\.w[123]|block_sparse_moe\.gate)"),
}


# gpt-oss keeps its experts fused in transformers 5 as in its checkpoints: PEFT adapts them as
# parameters (target_parameters: a ParamWrapper on mlp.experts.gate_up_proj and .down_proj, and on
# mlp.router.weight), with transformers 5.24 + peft 0.21.2 (scripts/requirements-reference.txt):
#     .venv-ref/bin/python scripts/reference/make_fixtures.py --only gpt_oss_lora_experts
# Same contents as the fixtures above; the tensors keep PEFT's names and fused layout (model/lora_peft.h
# maps them to quarry's per-expert adapters).
PARAM_FIXTURES = {
    # all-linear (attention; experts as target_parameters) and the router.
    "gpt_oss_lora_experts": dict(
        base="gpt_oss", seed=79, targets="all-linear,router",
        peft_targets=["q_proj", "k_proj", "v_proj", "o_proj"],
        peft_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj", "mlp.router.weight"]),
}


def build_param_lora(name, spec, out_dir):
    assert transformers.__version__.startswith("5."), "target_parameters on gpt-oss's fused experts needs transformers 5"
    d = os.path.join(out_dir, name)
    base_dir = os.path.join(out_dir, spec["base"])
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(spec["seed"])
    cls = transformers.AutoModelForCausalLM
    model = load(cls, base_dir)
    cfg = model.config
    hook_routers(model)   # on the routers themselves: a ParamWrapper calls them with the adapted weight
    ref = __import__("safetensors.torch", fromlist=["load_file"]).load_file(os.path.join(base_dir, "reference.safetensors"))
    with open(os.path.join(base_dir, "reference.json")) as f:
        base_ref = json.load(f)
    b0 = {k: np.array(v).reshape(B, T) for k, v in base_ref["batches"][0].items()}
    with torch.no_grad():
        err = (forward(model, b0).reshape(B * T, -1) - ref["logits"]).abs().max().item()
    assert err < 1e-5, f"the base fixture's logits moved: {err}"
    lcfg = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=spec["peft_targets"],
                           target_parameters=spec["peft_parameters"], bias="none", task_type="CAUSAL_LM")
    pm = peft.get_peft_model(model, lcfg)
    trainable = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    with torch.no_grad():
        for n, p in trainable:
            if "lora_B" in n:
                p.copy_(0.05 * torch.randn_like(p))
    tensors = {}
    for n, p in trainable:
        tensors["lora_init/" + peft_name(n)] = p.detach().clone().contiguous()
    gen = np.random.default_rng(spec["seed"])
    batches = [make_batch(gen, cfg.vocab_size), make_batch(gen, cfg.vocab_size)]
    logits = forward(pm, batches[0])
    aux = aux_of(cfg)
    loss = loss_of(logits, batches[0], cfg)
    loss.backward()
    tensors["logits"] = logits.detach().reshape(B * T, -1).contiguous()
    for n, p in trainable:
        tensors["grad/" + peft_name(n)] = p.grad.detach().clone().contiguous()
    first = (loss.item(), aux.item())
    losses = train(pm, trainable, batches, cfg)
    for n, p in trainable:
        tensors["lora_final/" + peft_name(n)] = p.detach().clone().contiguous()
    save_file(tensors, os.path.join(d, "reference.safetensors"), metadata={"format": "pt"})
    out = {
        "base": spec["base"],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__, "python": sys.version.split()[0]},
        "B": B, "T": T,
        "batches": [{k: v.reshape(-1).tolist() for k, v in b.items()} for b in batches],
        "loss": first[0], "aux_loss": first[1], "aux_coef": aux_coef(cfg),
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "targets": spec["targets"],
                 "peft_targets": spec["peft_targets"], "peft_target_parameters": spec["peft_parameters"],
                 "rslora": False, "B_init": "0.05 * randn"},
        "lora_losses": losses,
        "trainable": len(trainable),
    }
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"{name}: {len(trainable)} LoRA tensors, loss {first[0]:.6f} (aux {first[1]:.6f}), "
          f"lora {losses[0]:.4f}->{losses[-1]:.4f}")


def load_v4(base_dir):
    """The base fixture (written by transformers 5) in transformers 4.x terms."""
    with open(os.path.join(base_dir, "config.json")) as f:
        c = json.load(f)
    c["rope_theta"] = c.get("rope_parameters", {}).get("rope_theta", 10000.0)
    if c["model_type"] == "qwen3_moe":
        c["num_experts"] = c.get("num_local_experts", c.get("num_experts"))
    c["torch_dtype"] = "float32"
    cfg = transformers.AutoConfig.for_model(**{k: v for k, v in c.items() if k not in ("rope_parameters", "dtype")})
    cfg._attn_implementation = "eager"
    m = transformers.AutoModelForCausalLM.from_pretrained(base_dir, config=cfg, torch_dtype=torch.float32,
                                                         attn_implementation="eager")
    m.train()
    return m, cfg


def hook_gates(model):
    # The router linear (a PEFT wrapper when adapted): its output is the router logits.
    for n, mod in model.named_modules():
        if n.endswith("mlp.gate") or n.endswith("block_sparse_moe.gate"):
            mod.register_forward_hook(lambda m, i, o: ROUTER_LOGITS.append(o))


def aux_of_v4(cfg):
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func
    E = getattr(cfg, "num_experts", None) if cfg.model_type == "qwen3_moe" else cfg.num_local_experts
    return load_balancing_loss_func(tuple(ROUTER_LOGITS), E, cfg.num_experts_per_tok, None)


def loss_v4(model, batch, cfg):
    ROUTER_LOGITS.clear()
    logits = model(input_ids=torch.tensor(batch["ids"]), attention_mask=mask4d(batch, torch.float32),
                   position_ids=torch.tensor(batch["pos"]), use_cache=False, output_router_logits=False).logits
    loss = loss_of(logits, batch)
    aux = aux_of_v4(cfg)
    if aux_coef(cfg) > 0:
        loss = loss + aux_coef(cfg) * aux
    return logits, loss, aux


def build_lora_experts(name, spec, out_dir):
    assert transformers.__version__.startswith("4."), "the expert LoRA fixtures need transformers 4.x (per-expert nn.Linear)"
    d = os.path.join(out_dir, name)
    base_dir = os.path.join(out_dir, spec["base"])
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(spec["seed"])
    model, cfg = load_v4(base_dir)
    # The base fixture's logits under transformers 4.x: the two versions must agree.
    ref = __import__("safetensors.torch", fromlist=["load_file"]).load_file(os.path.join(base_dir, "reference.safetensors"))
    with open(os.path.join(base_dir, "reference.json")) as f:
        base_ref = json.load(f)
    b0 = {k: np.array(v).reshape(B, T) for k, v in base_ref["batches"][0].items()}
    with torch.no_grad():
        ROUTER_LOGITS.clear()
        lg = model(input_ids=torch.tensor(b0["ids"]), attention_mask=mask4d(b0, torch.float32),
                   position_ids=torch.tensor(b0["pos"]), use_cache=False, output_router_logits=False).logits
    err = (lg.reshape(B * T, -1) - ref["logits"]).abs().max().item()
    assert err < 1e-5, f"transformers {transformers.__version__} vs the base fixture's logits: {err}"
    lcfg = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=spec["peft_targets"],
                           bias="none", task_type="CAUSAL_LM")
    pm = peft.get_peft_model(model, lcfg)
    hook_gates(pm)
    trainable = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    with torch.no_grad():
        for n, p in trainable:
            if "lora_B" in n:
                p.copy_(0.05 * torch.randn_like(p))
    tensors = {}
    for n, p in trainable:
        tensors["lora_init/" + peft_name(n)] = p.detach().clone().contiguous()
    gen = np.random.default_rng(spec["seed"])
    batches = [make_batch(gen, cfg.vocab_size), make_batch(gen, cfg.vocab_size)]
    logits, loss, aux = loss_v4(pm, batches[0], cfg)
    loss.backward()
    tensors["logits"] = logits.detach().reshape(B * T, -1).contiguous()
    for n, p in trainable:
        tensors["grad/" + peft_name(n)] = p.grad.detach().clone().contiguous()
    first = (loss.item(), aux.item())
    opt = adamw(trainable)
    losses = []
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        _, l, _ = loss_v4(pm, batches[step % 2], cfg)
        l.backward()
        opt.step()
        losses.append(l.item())
    for n, p in trainable:
        tensors["lora_final/" + peft_name(n)] = p.detach().clone().contiguous()
    save_file(tensors, os.path.join(d, "reference.safetensors"), metadata={"format": "pt"})
    out = {
        "base": spec["base"],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__, "python": sys.version.split()[0]},
        "B": B, "T": T,
        "batches": [{k: v.reshape(-1).tolist() for k, v in b.items()} for b in batches],
        "loss": first[0], "aux_loss": first[1], "aux_coef": aux_coef(cfg),
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "targets": spec["targets"],
                 "peft_targets": spec["peft_targets"], "rslora": False, "B_init": "0.05 * randn"},
        "lora_losses": losses,
        "trainable": len(trainable),
    }
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"{name}: {len(trainable)} LoRA tensors, loss {first[0]:.6f} (aux {first[1]:.6f}), "
          f"lora {losses[0]:.4f}->{losses[-1]:.4f}, base logits vs transformers 5: {err:.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "fixtures"))
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these fixtures")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for name, spec in LORA_FIXTURES.items():
        if args.only and name in args.only:
            build_lora_experts(name, spec, os.path.abspath(args.out))
    for name, spec in PARAM_FIXTURES.items():
        if args.only and name in args.only:
            build_param_lora(name, spec, os.path.abspath(args.out))
    if args.only and set(args.only) <= set(LORA_FIXTURES) | set(PARAM_FIXTURES):
        return
    all_cfgs = configs()
    unknown = set(args.only or []) - set(all_cfgs) - set(LORA_FIXTURES) - set(PARAM_FIXTURES)
    if unknown:
        ap.error(f"unknown fixture(s) {sorted(unknown)}; known: {list(all_cfgs) + list(LORA_FIXTURES) + list(PARAM_FIXTURES)}")
    for i, (name, cfg) in enumerate(all_cfgs.items()):
        if args.only and name not in args.only:
            continue
        build(name, cfg, os.path.abspath(args.out), seed=SEEDS.get(name, 1234 + i))


if __name__ == "__main__":
    main()
