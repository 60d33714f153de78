"""quarry's config.json parsing against transformers' config classes, and its RoPE inv_freq
against transformers' computation bit for bit (scripts/reference/rope_reference.py).

Usage: check_config.py TOOL SOURCE_DIR"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import transformers  # noqa: F401
except ImportError as e:
    print("SKIP: python oracle missing:", e)
    sys.exit(77)

tool, src = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(src, "scripts", "reference"))
import rope_reference  # noqa: E402

configs = []
cdir = os.path.join(src, "examples", "configs")
for f in sorted(os.listdir(cdir)):
    if f.endswith(".json"):
        with open(os.path.join(cdir, f)) as fh:
            configs.append((f, json.load(fh)))
base = {"architectures": ["LlamaForCausalLM"], "vocab_size": 64, "hidden_size": 256, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 4096}
# rope variants over head dims and thetas (llama3 with other factors, linear, transformers-5 spelling)
for hd in (32, 64, 80, 128, 256):
    for theta in (10000.0, 500000.0, 1000000.0, 12345.5):
        configs.append((f"default hd{hd} theta{theta}", dict(base, head_dim=hd, rope_theta=theta)))
        configs.append((f"linear hd{hd} theta{theta}", dict(base, head_dim=hd, rope_theta=theta,
                                                           rope_scaling={"type": "linear", "factor": 2.5})))
        for factor, lo, hi, old in ((8.0, 1.0, 4.0, 8192), (32.0, 1.0, 4.0, 8192), (16.0, 2.0, 8.0, 4096)):
            configs.append((f"llama3 hd{hd} theta{theta} f{factor}", dict(
                base, head_dim=hd, rope_theta=theta,
                rope_scaling={"rope_type": "llama3", "factor": factor, "low_freq_factor": lo,
                              "high_freq_factor": hi, "original_max_position_embeddings": old})))
# Qwen3: head_dim given (≠ hidden/heads), and absent (Qwen3Config's default is 128, not hidden/heads).
qwen3 = {"architectures": ["Qwen3ForCausalLM"], "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072,
         "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
         "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000, "tie_word_embeddings": True,
         "attention_bias": False, "use_sliding_window": False, "sliding_window": None, "max_window_layers": 28}
configs.append(("Qwen3-0.6B-like", qwen3))
configs.append(("Qwen3 without head_dim", {k: v for k, v in qwen3.items() if k not in ("head_dim", "rms_norm_eps")}))
configs.append(("rope_parameters spelling", dict(base, rope_parameters={
    "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192})))

# Sparse MoE: the published configs (examples/configs) and variants: dense layers by
# mlp_only_layers / decoder_sparse_step, transformers 5's num_local_experts spelling for Qwen3-MoE.
qmoe = dict(qwen3, architectures=["Qwen3MoeForCausalLM"], num_hidden_layers=6, num_experts=16,
            num_experts_per_tok=4, moe_intermediate_size=256, norm_topk_prob=False, decoder_sparse_step=2,
            mlp_only_layers=[3], output_router_logits=True, router_aux_loss_coef=0.02)
configs.append(("Qwen3-MoE sparse step 2, mlp_only [3]", qmoe))
configs.append(("Qwen3-MoE num_local_experts", dict({k: v for k, v in qmoe.items() if k != "num_experts"},
                                                     num_local_experts=16, decoder_sparse_step=1)))
configs.append(("Mixtral defaults", {"architectures": ["MixtralForCausalLM"], "vocab_size": 256, "hidden_size": 128,
                                     "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                                     "num_key_value_heads": 2, "max_position_embeddings": 4096}))

# gpt-oss: YaRN over head dims, thetas, factors and truncation (examples/configs has the published
# ones), layer_types given and defaulted.
goss = {"architectures": ["GptOssForCausalLM"], "vocab_size": 256, "hidden_size": 128, "intermediate_size": 64,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "num_local_experts": 4,
        "num_experts_per_tok": 2, "max_position_embeddings": 131072}
configs.append(("gpt-oss defaults", goss))
for hd in (16, 64, 128):
    for theta, factor, omp, trunc, bf in ((150000.0, 32.0, 4096, False, 32.0), (10000.0, 4.0, 2048, True, 16.0),
                                          (1000000.0, 8.0, 8192, False, 64.0)):
        configs.append((f"yarn hd{hd} theta{theta} f{factor} truncate {trunc}", dict(
            goss, head_dim=hd, sliding_window=64, layer_types=["full_attention", "sliding_attention"] * 2,
            rope_scaling={"rope_type": "yarn", "rope_theta": theta, "factor": factor, "beta_fast": bf,
                          "beta_slow": 1.0, "truncate": trunc, "original_max_position_embeddings": omp})))
configs.append(("yarn on Llama, attention_factor given", dict(base, head_dim=64, rope_scaling={
    "rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 1024, "attention_factor": 0.75})))

# Bad MoE settings: refused, naming the file and the key.
BAD = [
    ("top-k above the experts", dict(qmoe, num_experts_per_tok=17), "num_experts_per_tok"),
    ("unknown mlp_only_layers index", dict(qmoe, mlp_only_layers=[6]), "mlp_only_layers"),
    ("gpt-oss layer_types too short", dict(goss, layer_types=["full_attention"]), "layer_types"),
    ("gpt-oss unknown layer type", dict(goss, layer_types=["full_attention", "chunked_attention"] * 2), "layer_types"),
    ("Mixtral router jitter", {"architectures": ["MixtralForCausalLM"], "vocab_size": 256, "hidden_size": 128,
                               "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                               "num_key_value_heads": 2, "router_jitter_noise": 0.1}, "router_jitter_noise"),
]
failures = 0
how = set()
with tempfile.TemporaryDirectory() as tmp:
    for name, d in configs:
        path = os.path.join(tmp, "config.json")
        with open(path, "w") as fh:
            json.dump(d, fh)
        r = subprocess.run([tool, "config", path], capture_output=True, text=True)
        if r.returncode:
            print(f"FAIL {name}: quarry refused it: {r.stderr.strip()}")
            failures += 1
            continue
        q = json.loads(r.stdout)
        hf = rope_reference.hf_config(d)
        rp = hf.rope_parameters
        want = {
            "vocab_size": hf.vocab_size, "hidden_size": hf.hidden_size, "intermediate_size": hf.intermediate_size,
            "num_hidden_layers": hf.num_hidden_layers, "num_attention_heads": hf.num_attention_heads,
            "num_key_value_heads": hf.num_key_value_heads, "head_dim": getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads,
            "max_position_embeddings": hf.max_position_embeddings,
            "tie_word_embeddings": int(bool(hf.tie_word_embeddings)),
        }
        for k, v in want.items():
            if q[k] != v:
                print(f"FAIL {name}: {k} quarry {q[k]} transformers {v}")
                failures += 1
        if np.float32(q["rope_theta"]) != np.float32(rp["rope_theta"]):
            print(f"FAIL {name}: rope_theta quarry {q['rope_theta']} transformers {rp['rope_theta']}")
            failures += 1
        if abs(q["rms_norm_eps"] - hf.rms_norm_eps) > 1e-12:
            print(f"FAIL {name}: rms_norm_eps quarry {q['rms_norm_eps']} transformers {hf.rms_norm_eps}")
            failures += 1
        ref, via = rope_reference.inv_freq(d)
        how.add(via)
        got = np.array(q["inv_freq"], dtype=np.uint32).view(np.float32)
        if got.shape != ref.shape or not np.array_equal(got.view(np.uint32), ref.view(np.uint32)):
            bad = np.nonzero(got.view(np.uint32) != ref.view(np.uint32))[0] if got.shape == ref.shape else []
            print(f"FAIL {name}: inv_freq differs from transformers ({via}) at {list(bad[:8])}:")
            for i in list(bad[:4]):
                print(f"  [{i}] quarry {got[i]!r} ({got.view(np.uint32)[i]:#010x}) reference {ref[i]!r} "
                      f"({ref.view(np.uint32)[i]:#010x})")
            failures += 1
        af = rope_reference.attention_factor(d)
        if abs(q["rope_attention_factor"] - af) > 1e-6 * af:
            print(f"FAIL {name}: rope attention factor quarry {q['rope_attention_factor']} transformers {af}")
            failures += 1
        if getattr(hf, "layer_types", None) and "sliding_attention" in hf.layer_types:
            wins = [hf.sliding_window if t == "sliding_attention" else 0 for t in hf.layer_types]
            if q["layer_windows"] != wins:
                print(f"FAIL {name}: layer windows quarry {q['layer_windows']} transformers {wins}")
                failures += 1
        if getattr(hf, "num_experts_per_tok", None):
            E = getattr(hf, "num_experts", None) or hf.num_local_experts
            sparse = [l for l in range(hf.num_hidden_layers)
                      if l not in (getattr(hf, "mlp_only_layers", None) or [])
                      and (l + 1) % getattr(hf, "decoder_sparse_step", 1) == 0]
            moe_want = {"num_experts": E, "num_experts_per_tok": hf.num_experts_per_tok,
                        "moe_intermediate_size": getattr(hf, "moe_intermediate_size", hf.intermediate_size),
                        "norm_topk_prob": int(bool(getattr(hf, "norm_topk_prob", True))),
                        "output_router_logits": int(bool(hf.output_router_logits)), "moe_layers": sparse}
            for k, v in moe_want.items():
                if q[k] != v:
                    print(f"FAIL {name}: {k} quarry {q[k]} transformers {v}")
                    failures += 1
            if abs(q["router_aux_loss_coef"] - hf.router_aux_loss_coef) > 1e-7:
                print(f"FAIL {name}: router_aux_loss_coef quarry {q['router_aux_loss_coef']} transformers "
                      f"{hf.router_aux_loss_coef}")
                failures += 1
    for name, d, key in BAD:
        path = os.path.join(tmp, "config.json")
        with open(path, "w") as fh:
            json.dump(d, fh)
        r = subprocess.run([tool, "config", path], capture_output=True, text=True)
        if r.returncode == 0 or key not in r.stderr or path not in r.stderr:
            print(f"FAIL {name}: must be refused naming {path} and {key}: {r.stderr.strip()}")
            failures += 1
print(f"check_config: {len(configs)} configs, inv_freq reference via {'/'.join(sorted(how))}")
if failures:
    print(f"check_config: {failures} failure(s)")
    sys.exit(1)
print("check_config: all checks passed")
