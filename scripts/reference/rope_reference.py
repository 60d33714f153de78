"""RoPE inverse frequencies exactly as transformers computes them (float32 on the CPU).

With torch installed this is transformers itself: the model's RotaryEmbedding built from the
config. Without torch (the test machines), the same float32 operations are replayed in numpy in
the order torch runs them:
  default  inv = reciprocal(pow(f32(theta), arange(0, dim, 2).f32 / dim)) * 1.0
  linear   inv / f32(factor)
  llama3   wavelen = reciprocal(inv) * f32(2*pi); the smoothing formula of
           transformers.modeling_rope_utils._compute_llama3_parameters, every Python scalar cast
           to float32 where it meets the tensor.
  yarn     _compute_yarn_parameters: the correction range in Python floats, the ramp
           (arange − low) / (high − low) clamped to [0, 1] and the blend
           (1/(factor·pos))·(1 − (1 − ramp)) + (1/pos)·(1 − ramp) in float32; the attention factor
           (0.1·ln(factor) + 1 unless given) multiplies cos and sin.
The one step numpy cannot replay is torch's float32 pow (SLEEF, within 1 ulp): here it is the
double-precision pow rounded once to float32, which is what quarry does too.

Usage as a module: inv_freq(config_dict) -> (np.ndarray float32, "torch" | "numpy").
"""
import math

import numpy as np

CONFIG_CLASSES = {
    "LlamaForCausalLM": ("transformers.models.llama", "LlamaConfig", "modeling_llama", "LlamaRotaryEmbedding"),
    "MistralForCausalLM": ("transformers.models.mistral", "MistralConfig", "modeling_mistral", "MistralRotaryEmbedding"),
    "Qwen2ForCausalLM": ("transformers.models.qwen2", "Qwen2Config", "modeling_qwen2", "Qwen2RotaryEmbedding"),
    "Qwen3ForCausalLM": ("transformers.models.qwen3", "Qwen3Config", "modeling_qwen3", "Qwen3RotaryEmbedding"),
    "Qwen3MoeForCausalLM": ("transformers.models.qwen3_moe", "Qwen3MoeConfig", "modeling_qwen3_moe",
                            "Qwen3MoeRotaryEmbedding"),
    "MixtralForCausalLM": ("transformers.models.mixtral", "MixtralConfig", "modeling_mixtral", "MixtralRotaryEmbedding"),
    "GptOssForCausalLM": ("transformers.models.gpt_oss", "GptOssConfig", "modeling_gpt_oss", "GptOssRotaryEmbedding"),
}


def hf_config(d):
    """The transformers config object for a config.json dict (no torch needed)."""
    import importlib

    arch = d.get("architectures", ["LlamaForCausalLM"])[0]
    pkg, cls, _, _ = CONFIG_CLASSES[arch]
    return getattr(importlib.import_module(pkg), cls)(**d)


def _torch_inv_freq(d):
    import importlib

    import torch  # noqa: F401  (ImportError → numpy path)

    arch = d.get("architectures", ["LlamaForCausalLM"])[0]
    pkg, _, mod, emb = CONFIG_CLASSES[arch]
    cfg = hf_config(d)
    rot = getattr(importlib.import_module(pkg + "." + mod), emb)(config=cfg)
    return rot.inv_freq.detach().cpu().numpy().astype(np.float32)


def _numpy_inv_freq(d):
    cfg = hf_config(d)
    rp = cfg.rope_parameters
    f32 = np.float32
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    base = f32(rp["rope_theta"])
    expo = np.arange(0, dim, 2, dtype=np.int64).astype(f32) / f32(dim)
    powed = np.power(np.float64(base), expo.astype(np.float64)).astype(f32)
    inv = (f32(1.0) / powed).astype(f32) * f32(1.0)
    rt = rp.get("rope_type", "default")
    if rt == "default":
        return inv
    if rt == "yarn":
        factor, omp = rp["factor"], rp["original_max_position_embeddings"]
        theta = rp["rope_theta"]

        def corr(rot):
            return (dim * math.log(omp / (rot * 2 * math.pi))) / (2 * math.log(theta))

        low, high = corr(rp.get("beta_fast") or 32), corr(rp.get("beta_slow") or 1)
        if rp.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(dim // 2, dtype=f32) - f32(low)) / f32(high - low), f32(0), f32(1)).astype(f32)
        ext = (f32(1.0) - ramp).astype(f32)
        inv_ext = (f32(1.0) / powed).astype(f32)
        inv_int = (f32(1.0) / (f32(factor) * powed)).astype(f32)
        return (inv_int * (f32(1.0) - ext) + inv_ext * ext).astype(f32)
    if rt == "linear":
        return (inv / f32(rp["factor"])).astype(f32)
    if rt != "llama3":
        raise ValueError("no reference for rope_type " + rt)
    factor = rp["factor"]
    lo, hi = rp["low_freq_factor"], rp["high_freq_factor"]
    old = rp["original_max_position_embeddings"]
    low_wl = old / lo
    high_wl = old / hi
    wavelen = (f32(1.0) / inv) * f32(2 * math.pi)
    inv_llama = np.where(wavelen > f32(low_wl), inv / f32(factor), inv).astype(f32)
    smooth = ((f32(1.0) / wavelen) * f32(old) - f32(lo)) / f32(hi - lo)
    smoothed = ((f32(1.0) - smooth) * inv_llama) / f32(factor) + smooth * inv_llama
    medium = ~(wavelen < f32(high_wl)) & ~(wavelen > f32(low_wl))
    return np.where(medium, smoothed, inv_llama).astype(f32)


def attention_factor(d):
    """The factor transformers multiplies cos and sin by (1.0 but for yarn)."""
    rp = hf_config(d).rope_parameters
    if rp.get("rope_type") != "yarn":
        return 1.0
    if rp.get("attention_factor") is not None:
        return float(rp["attention_factor"])
    f = rp["factor"]
    return 1.0 if f <= 1 else 0.1 * math.log(f) + 1.0


def inv_freq(d):
    try:
        return _torch_inv_freq(d), "torch"
    except ImportError:
        return _numpy_inv_freq(d), "numpy"
