"""Helpers shared by the export tests: reading safetensors files of any float dtype through the
`safetensors` library (numpy has no bfloat16: BF16 data is read as raw uint16 at the offsets the
library reports), round-to-nearest-even to bf16/fp16 in numpy, and synthetic run directories."""
import json
import os
import struct
import subprocess
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(77)


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def load(path):
    """{name: (dtype_name, array)} with F32 as float32, F16 as float16, BF16 as raw uint16. The
    library opens the file and reports names, dtypes, shapes and metadata; it must agree with
    the bytes read."""
    out = {}
    hdr, base = header(path)
    with safe_open(path, "np") as f:
        meta = f.metadata()
        assert meta == {"format": "pt"}, f"{path}: metadata {meta}, want {{'format': 'pt'}}"
        keys = list(f.keys())
        for k in keys:
            sl = f.get_slice(k)
            dt, shape = sl.get_dtype(), sl.get_shape()
            if dt in ("F32", "F16"):
                arr = f.get_tensor(k)
            else:
                assert dt == "BF16", f"{path}: {k} has dtype {dt}"
                b, e = hdr[k]["data_offsets"]
                with open(path, "rb") as g:
                    g.seek(base + b)
                    arr = np.frombuffer(g.read(e - b), dtype="<u2").reshape(shape).copy()
            assert list(arr.shape) == list(shape), f"{path}: {k} shape {arr.shape} vs {shape}"
            out[k] = (dt, arr)
    assert sorted(out) == sorted(k for k in hdr if k != "__metadata__")
    return out


def to_f32(dt, arr):
    if dt == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32)


def bf16_rne(x):
    """float32 array → bf16 bits (uint16), round to nearest even, NaN kept NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def load_dir(d):
    """Every tensor of a package directory (single file or shards), as {name: (dtype, array)}."""
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for fn in files:
        for k, v in load(os.path.join(d, fn)).items():
            assert k not in out, f"{d}: {k} appears in two shards"
            out[k] = v
    return out


def run(cmd, expect=0, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if "Sanitizer" in p.stderr:   # under ASan/UBSan a report is a failure whatever the exit code
        print(f"FAIL: {' '.join(cmd)}: sanitizer report\n{p.stderr[-6000:]}")
        sys.exit(1)
    if expect is not None and p.returncode != expect:
        print(f"FAIL: {' '.join(cmd)} exited {p.returncode}, want {expect}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        sys.exit(1)
    return p


LINEAR = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def make_lora_run(run_dir, base_dir, r, alpha, rslora, seed, targets=LINEAR):
    """A finished LoRA run as `quarry train` leaves it: run.json + final/adapter_* in PEFT's
    format, with random (non-zero) A and B so that the merge is visible in every element."""
    rng = np.random.default_rng(seed)
    base = load_dir(base_dir)
    cfg = json.load(open(os.path.join(base_dir, "config.json")))
    os.makedirs(os.path.join(run_dir, "final"))
    if cfg.get("num_experts") or cfg.get("num_local_experts"):
        # The synthetic MoE adapters cover the attention; expert adapters come from real runs
        # (check_export_torch.py's run-real, check_export_peft451.py).
        targets = [t for t in targets if t.startswith("self_attn.")]
    tensors = {}
    adapted = set()
    for layer in range(cfg["num_hidden_layers"]):
        for t in targets:
            if f"model.layers.{layer}.{t}.weight" not in base:
                continue   # a sparse MoE layer has no dense MLP
            adapted.add(t)
            w = base[f"model.layers.{layer}.{t}.weight"][1]
            out_f, in_f = w.shape
            p = f"base_model.model.model.layers.{layer}.{t}"
            tensors[p + ".lora_A.weight"] = (rng.uniform(-1, 1, (r, in_f)) / np.sqrt(in_f)).astype(np.float32)
            tensors[p + ".lora_B.weight"] = rng.normal(0, 0.02, (out_f, r)).astype(np.float32)
    save_file(tensors, os.path.join(run_dir, "final", "adapter_model.safetensors"), metadata={"format": "pt"})
    modules = sorted({t.split(".")[1] for t in adapted})
    acfg = {"alpha_pattern": {}, "base_model_name_or_path": os.path.abspath(base_dir), "bias": "none",
            "fan_in_fan_out": False, "inference_mode": False, "init_lora_weights": True, "lora_alpha": alpha,
            "lora_dropout": 0.0, "modules_to_save": None, "peft_type": "LORA", "r": r, "rank_pattern": {},
            "target_modules": modules, "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": rslora}
    json.dump(acfg, open(os.path.join(run_dir, "final", "adapter_config.json"), "w"), indent=2)
    json.dump({"base_model": os.path.abspath(base_dir),
               "settings": {"method": "lora", "lora_r": r, "lora_alpha": alpha, "rslora": rslora,
                            "lora_targets": "all-linear"}},
              open(os.path.join(run_dir, "run.json"), "w"), indent=2)


def make_full_run(run_dir, base_dir, seed):
    """A finished full fine-tune: final/model.safetensors, f32, every tensor (base + noise)."""
    rng = np.random.default_rng(seed)
    base = load_dir(base_dir)
    os.makedirs(os.path.join(run_dir, "final"))
    t = {k: (to_f32(*v) + rng.normal(0, 1e-3, v[1].shape)).astype(np.float32) for k, v in base.items()}
    save_file(t, os.path.join(run_dir, "final", "model.safetensors"), metadata={"format": "pt"})
    json.dump({"base_model": os.path.abspath(base_dir), "settings": {"method": "full"}},
              open(os.path.join(run_dir, "run.json"), "w"), indent=2)


def merged_reference(base_dir, run_dir):
    """{name: float64 W + scale·B·A} from the base and the run's PEFT adapter, in numpy."""
    base = load_dir(base_dir)
    acfg = json.load(open(os.path.join(run_dir, "final", "adapter_config.json")))
    ad = load(os.path.join(run_dir, "final", "adapter_model.safetensors"))
    r, alpha = acfg["r"], acfg["lora_alpha"]
    scale = alpha / np.sqrt(r) if acfg.get("use_rslora") else alpha / r
    ref = {}
    for k, v in base.items():
        w = to_f32(*v).astype(np.float64)
        p = "base_model.model." + k[: -len(".weight")]
        if p + ".lora_A.weight" in ad:
            a = to_f32(*ad[p + ".lora_A.weight"]).astype(np.float64)
            b = to_f32(*ad[p + ".lora_B.weight"]).astype(np.float64)
            w = w + scale * (b @ a)
        ref[k] = w
    return ref
