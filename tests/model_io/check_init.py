"""`quarry init`: the checkpoint loads with the safetensors library, holds exactly the tensors
transformers' Llama/Qwen2/Qwen3 modules have (names and shapes derived here from the config), initialised
as transformers does (normal(0, initializer_range), RMSNorm ones, biases zero, pad row zero),
deterministic in the seed, bf16 = fp32 rounded to nearest even; config.json loads with
transformers with torch_dtype set; sharding and the index; refusals leave nothing behind.

Usage: check_init.py QUARRY TOOL"""
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import transformers
    from safetensors import deserialize
    from safetensors.numpy import load_file
except ImportError as e:
    print("SKIP: python oracle missing:", e)
    sys.exit(77)

QUARRY, TOOL = sys.argv[1], sys.argv[2]
failures = 0
checks = 0


def check(cond, msg):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL", msg)


def run(*args):
    return subprocess.run([QUARRY, "init", *args], capture_output=True, text=True)


def expected_tensors(c):
    """Names and shapes from the config, as LlamaForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM define them."""
    C, V, F = c["hidden_size"], c["vocab_size"], c["intermediate_size"]
    H = c["num_attention_heads"]
    KV = c.get("num_key_value_heads", H)
    qwen3 = c["architectures"][0] == "Qwen3ForCausalLM"
    hd = c.get("head_dim") or (128 if qwen3 else C // H)
    bias = c.get("attention_bias", False) or c["architectures"][0] == "Qwen2ForCausalLM"
    t = {"model.embed_tokens.weight": (V, C), "model.norm.weight": (C,)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t.update({p + "input_layernorm.weight": (C,), p + "post_attention_layernorm.weight": (C,),
                  p + "self_attn.q_proj.weight": (H * hd, C), p + "self_attn.k_proj.weight": (KV * hd, C),
                  p + "self_attn.v_proj.weight": (KV * hd, C), p + "self_attn.o_proj.weight": (C, H * hd),
                  p + "mlp.gate_proj.weight": (F, C), p + "mlp.up_proj.weight": (F, C),
                  p + "mlp.down_proj.weight": (C, F)})
        if qwen3:
            t.update({p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,)})
        if bias:
            t.update({p + "self_attn.q_proj.bias": (H * hd,), p + "self_attn.k_proj.bias": (KV * hd,),
                      p + "self_attn.v_proj.bias": (KV * hd,)})
    if not c.get("tie_word_embeddings", False):
        t["lm_head.weight"] = (V, C)
    return t


def load_any(path):
    """All tensors of a file as float32 (BF16 decoded by hand: numpy has no bfloat16)."""
    out = {}
    for name, spec in deserialize(open(path, "rb").read()):
        raw = bytes(spec["data"])
        shape = tuple(spec["shape"])
        if spec["dtype"] in ("bfloat16", "BF16"):
            out[name] = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
        elif spec["dtype"] in ("float32", "F32"):
            out[name] = np.frombuffer(raw, np.float32).reshape(shape)
        else:
            raise ValueError(spec["dtype"])
    return out


def rne_bf16(x):
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32) << 16
    return r.astype(np.uint32).view(np.float32)


llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 1000, "hidden_size": 128,
         "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "attention_bias": True, "tie_word_embeddings": False, "pad_token_id": 7, "initializer_range": 0.02,
         "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "bos_token_id": 1, "eos_token_id": [2, 3],
         "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 64},
         "max_position_embeddings": 512, "torch_dtype": "float16", "custom_key": {"kept": [1, 2.5, None]}}
qwen = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 500, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 1,
        "tie_word_embeddings": True, "initializer_range": 0.05, "use_sliding_window": False}
qwen3 = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 500, "hidden_size": 64,
         "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 24, "tie_word_embeddings": True, "attention_bias": False, "use_sliding_window": False}

with tempfile.TemporaryDirectory() as tmp:
    P = lambda *a: os.path.join(tmp, *a)  # noqa: E731
    for name, c in (("llama", llama), ("qwen", qwen), ("qwen3", qwen3)):
        with open(P(name + ".json"), "w") as f:
            json.dump(c, f)
    # fp32 and bf16 of the same seed; a second fp32 run; another seed.
    for out, extra in (("l32", ["--dtype", "fp32", "--seed", "11"]), ("l32b", ["--dtype", "fp32", "--seed", "11"]),
                       ("l16", ["--dtype", "bf16", "--seed", "11"]), ("lseed", ["--dtype", "fp32", "--seed", "12"]),
                       ("q", ["--seed", "5"]), ("q3", ["--dtype", "fp32", "--seed", "5"])):
        cfg = {"q": "qwen.json", "q3": "qwen3.json"}.get(out, "llama.json")
        r = run("--config", P(cfg), "--out", P(out), *extra)
        check(r.returncode == 0, f"init {out}: {r.stderr}")
    t32 = load_file(P("l32", "model.safetensors"))
    exp = expected_tensors(llama)
    check(sorted(t32) == sorted(exp), f"tensor names {sorted(set(t32) ^ set(exp))}")
    for n, shp in exp.items():
        if n in t32:
            check(t32[n].shape == shp and t32[n].dtype == np.float32, f"{n}: shape {t32[n].shape} want {shp}")
    std = llama["initializer_range"]
    for n, v in t32.items():
        if n.endswith("norm.weight"):
            check(np.all(v == 1.0), f"{n} is not all ones")
        elif n.endswith(".bias"):
            check(np.all(v == 0.0), f"{n} is not all zeros")
        else:
            w = v.astype(np.float64)
            if n == "model.embed_tokens.weight":
                check(np.all(w[7] == 0.0), "pad_token_id row of the embedding is not zero")
                w = np.delete(w, 7, axis=0)
            w = w.ravel()
            m, s = w.mean(), w.std()
            check(abs(m) < 5 * std / np.sqrt(w.size), f"{n}: mean {m:.3g} not ≈ 0 ({w.size} values)")
            check(abs(s / std - 1) < 5 / np.sqrt(2 * w.size) + 1e-3, f"{n}: std {s:.5g} not ≈ {std}")
    # Normal shape, and the Box–Muller pairs uncorrelated (over all weights together).
    allw = np.concatenate([v.ravel() for n, v in t32.items() if n.endswith("proj.weight")]).astype(np.float64) / std
    frac1 = np.mean(np.abs(allw) < 1)
    frac2 = np.mean(np.abs(allw) < 2)
    check(abs(frac1 - 0.682689) < 0.005 and abs(frac2 - 0.954500) < 0.003,
          f"not normal: P(|z|<1) = {frac1:.4f}, P(|z|<2) = {frac2:.4f}")
    kurt = np.mean(allw ** 4) / np.mean(allw ** 2) ** 2
    check(abs(kurt - 3) < 0.05, f"kurtosis {kurt:.3f}, normal has 3")
    pairs = allw[: allw.size // 2 * 2].reshape(-1, 2)
    corr = np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]
    check(abs(corr) < 5 / np.sqrt(pairs.shape[0]), f"pair correlation {corr:.4f}")
    # Determinism and seeds.
    same = open(P("l32", "model.safetensors"), "rb").read() == open(P("l32b", "model.safetensors"), "rb").read()
    check(same, "the same seed gave different bytes")
    tseed = load_file(P("lseed", "model.safetensors"))
    check(not np.array_equal(tseed["model.layers.0.mlp.up_proj.weight"], t32["model.layers.0.mlp.up_proj.weight"]),
          "another seed gave the same weights")
    check(not np.array_equal(t32["model.layers.0.mlp.up_proj.weight"], t32["model.layers.1.mlp.up_proj.weight"]),
          "two layers got the same weights")
    # bf16 is the fp32 draw rounded to nearest even.
    t16 = load_any(P("l16", "model.safetensors"))
    check(all(np.array_equal(t16[n], rne_bf16(t32[n])) for n in t32), "bf16 init is not fp32 init rounded to nearest even")
    # config.json: as given, torch_dtype set, every other key kept; transformers reads it.
    cj = json.load(open(P("l16", "config.json")))
    check(cj["torch_dtype"] == "bfloat16", f"torch_dtype {cj.get('torch_dtype')}")
    check({k: v for k, v in cj.items() if k != "torch_dtype"} == {k: v for k, v in llama.items() if k != "torch_dtype"},
          "config.json changed beyond torch_dtype")
    check(open(P("l16", "config.json")).read() == json.dumps(dict(llama, torch_dtype="bfloat16")) + "\n",
          "config.json is not the input with only torch_dtype's value changed")
    check(json.load(open(P("l32", "config.json")))["torch_dtype"] == "float32", "fp32 torch_dtype")
    hc = transformers.AutoConfig.from_pretrained(P("l16"))
    check(type(hc).__name__ == "LlamaConfig" and hc.num_key_value_heads == 2, f"transformers reads {type(hc).__name__}")
    gj = json.load(open(P("l16", "generation_config.json")))
    check(gj.get("eos_token_id") == [2, 3] and gj.get("bos_token_id") == 1 and gj.get("pad_token_id") == 7,
          f"generation_config {gj}")
    # Qwen2, tied: q/k/v biases, no lm_head; bf16 by default.
    tq = load_any(P("q", "model.safetensors"))
    check(sorted(tq) == sorted(expected_tensors(qwen)), f"qwen names {sorted(set(tq) ^ set(expected_tensors(qwen)))}")
    check("lm_head.weight" not in tq, "tied model has lm_head.weight")
    qj = json.load(open(P("q", "config.json")))
    check(qj == dict(qwen, torch_dtype="bfloat16"), f"qwen config.json: {qj}")
    e = tq["model.embed_tokens.weight"].astype(np.float64)
    check(abs(e.std() / 0.05 - 1) < 0.02, f"qwen embedding std {e.std():.4f}, initializer_range 0.05")

    # Qwen3: q_norm/k_norm [head_dim] of ones, head_dim 24 ≠ 64/4; transformers reads it as Qwen3Config.
    t3 = load_file(P("q3", "model.safetensors"))
    e3 = expected_tensors(qwen3)
    check(sorted(t3) == sorted(e3) and all(t3[n].shape == e3[n] for n in e3), f"qwen3 names {sorted(set(t3) ^ set(e3))}")
    check(all(np.all(t3[f"model.layers.{i}.self_attn.{k}_norm.weight"] == 1.0) for i in range(2) for k in "qk"),
          "qwen3 q_norm/k_norm are not all ones")
    h3 = transformers.AutoConfig.from_pretrained(P("q3"))
    check(type(h3).__name__ == "Qwen3Config" and h3.head_dim == 24, f"transformers reads {type(h3).__name__}")

    # Sharding: shards ≤ --shard-size, an index covering each tensor once, same values.
    r = run("--config", P("llama.json"), "--out", P("sh"), "--dtype", "fp32", "--seed", "11", "--shard-size", "400KB")
    check(r.returncode == 0, f"sharded init: {r.stderr}")
    idx = json.load(open(P("sh", "model.safetensors.index.json")))
    files = sorted(set(idx["weight_map"].values()))
    check(len(files) > 1 and all(f == f"model-{i + 1:05d}-of-{len(files):05d}.safetensors" for i, f in enumerate(files)),
          f"shard names {files}")
    got = {}
    for f in files:
        part = load_file(P("sh", f))
        check(all(idx["weight_map"][n] == f for n in part), f"index disagrees with {f}")
        check(os.path.getsize(P("sh", f)) <= 400000 + 8192 or len(part) == 1, f"{f} is over the shard size")
        got.update(part)
    check(sorted(got) == sorted(t32) and all(np.array_equal(got[n], t32[n]) for n in t32), "sharded values differ")
    check(idx["metadata"]["total_size"] == sum(v.nbytes for v in t32.values()), "index total_size")
    r2 = subprocess.run([TOOL, "check", P("sh")], capture_output=True, text=True)
    check(r2.returncode == 0 and r2.stdout.strip() == f"ok {len(t32)}", f"quarry reads its shards: {r2.stdout}")

    # Tokenizer files are copied as they are; a tokenizer larger than the vocabulary is refused.
    os.mkdir(P("tok"))
    tokj = {"version": "1.0", "added_tokens": [{"id": 999, "content": "<pad>", "special": True}],
            "model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}}
    json.dump(tokj, open(P("tok", "tokenizer.json"), "w"))
    open(P("tok", "tokenizer_config.json"), "w").write('{"chat_template": "{{ x }}"}')
    r = run("--config", P("llama.json"), "--out", P("withtok"), "--tokenizer", P("tok"))
    check(r.returncode == 0, f"init with tokenizer: {r.stderr}")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        check(os.path.exists(P("withtok", f)) and open(P("withtok", f), "rb").read() == open(P("tok", f), "rb").read(),
              f"{f} not copied as is")
    tokj["added_tokens"][0]["id"] = 1000
    json.dump(tokj, open(P("tok", "tokenizer.json"), "w"))
    r = run("--config", P("llama.json"), "--out", P("badtok"), "--tokenizer", P("tok"))
    check(r.returncode == 1 and "token ids up to 1000" in r.stderr and not os.path.exists(P("badtok")),
          f"tokenizer beyond the vocabulary: rc {r.returncode} {r.stderr}")

    # Refusals: a non-empty --out is untouched; an unsupported config writes nothing.
    before = sorted(os.listdir(P("l32")))
    r = run("--config", P("llama.json"), "--out", P("l32"))
    check(r.returncode == 1 and "is not empty; refusing to overwrite" in r.stderr and sorted(os.listdir(P("l32"))) == before,
          f"non-empty --out: rc {r.returncode} {r.stderr}")
    os.mkdir(P("emptyout"))
    r = run("--config", P("qwen.json"), "--out", P("emptyout"))
    check(r.returncode == 0 and os.path.exists(P("emptyout", "model.safetensors")), f"empty --out: {r.stderr}")
    json.dump(dict(llama, rope_scaling={"rope_type": "longrope", "factor": 4.0}), open(P("longrope.json"), "w"))
    r = run("--config", P("longrope.json"), "--out", P("longrope"))
    check(r.returncode == 1 and "longrope" in r.stderr and not os.path.exists(P("longrope")), f"longrope: {r.stderr}")
    r = run("--config", P("llama.json"))
    check(r.returncode == 2, "missing --out is a usage error")
    check(not [f for f in os.listdir(tmp) if ".tmp-" in f], f"temporary directories left: {os.listdir(tmp)}")

print(f"check_init: {checks} checks, {failures} failed")
sys.exit(1 if failures else 0)
