"""QLoRA's `--format peft` adapter loads onto the 4-bit base: a short `quarry train --quantize nf4`
on the tiny model, `quarry export --format peft`, then under transformers + PEFT + bitsandbytes
the fp32 base loaded with BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=float32) and PeftModel.from_pretrained
(the export) gives the logits of quarry's QLoRA forward on the run (the export_logits tool).

Bound: 1e-5 relative (‖a−b‖/‖b‖ over all positions). Both sides dequantise to the same fp32
weights (bit-exact, tests/model/test_qlora.c) and compute in fp32; they differ only in summation
order, as test_qlora's logits do; on bitsandbytes' training route (MatMul4Bit), which
make_qlora_fixtures.py takes too. Its inference route (model.eval(), no grad) on a CPU with
AVX512-BF16 repacks the weight for a bf16 kernel: 3e-2, test_qlora's bf16 bound (measured 1.6e-2).
The adapter must matter: the base alone is ≥ 100× further off.

With `moe` (NF4 experts): a tiny Qwen3-MoE, LoRA TARGETS (attention and per-expert adapters), the
oracle transformers 4.x, whose experts are per-expert nn.Linear that bitsandbytes quantises as
quarry does (transformers 5 fuses them and leaves them unquantised); the router stays float32 on
both sides (llm_int8_skip_modules=["gate", "lm_head"]). Its inference route is not run (4.51.3
with bitsandbytes 0.50.2 dies of SIGFPE in it on the CPU).

usage: check_export_peft_nf4.py QUARRY_BIN EXPORT_LOGITS TINY_MODEL_DIR TRAIN_JSONL WORKDIR [TARGETS [moe]]
The oracle Python: $QUARRY_BNB_PYTHON, else <source>/.venv-bnb/bin/python (torch, transformers,
peft, bitsandbytes ≥ 0.48 for NF4 on the CPU); with moe $QUARRY_BNB451_PYTHON, else
<source>/.venv-bnb451/bin/python (the same with transformers 4.x); SKIP (77) when neither has them.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_common import run, skip  # noqa: E402

TOL = 1e-5
TOL_INF = 3e-2
quarry, tool, tiny, train_data, work = sys.argv[1:6]
targets = sys.argv[6] if len(sys.argv) > 6 else "all-linear"
moe = len(sys.argv) > 7 and sys.argv[7] == "moe"
src = os.environ.get("QUARRY_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
if moe:   # per-expert Linear4bit: transformers 4.x (5 fuses the experts and leaves them unquantised)
    ref = os.environ.get("QUARRY_BNB451_PYTHON") or os.path.join(src, ".venv-bnb451", "bin", "python")
    probe = "import torch, peft, transformers, bitsandbytes; assert transformers.__version__.startswith('4.')"
else:
    ref = os.environ.get("QUARRY_BNB_PYTHON") or os.path.join(src, ".venv-bnb", "bin", "python")
    probe = "import torch, peft, transformers, bitsandbytes"
if not os.path.exists(ref) or subprocess.run([ref, "-c", probe], capture_output=True).returncode != 0:
    skip("no Python with torch, peft, transformers%s and bitsandbytes (set %s or make %s)" %
         ((" 4.x", "QUARRY_BNB451_PYTHON", ".venv-bnb451") if moe else ("", "QUARRY_BNB_PYTHON", ".venv-bnb")))
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
base, rd, ad = (os.path.join(work, d) for d in ("base", "run", "peft"))
config = os.path.join(tiny, "config.json")
if moe:
    # A Qwen3-MoE whose rows are whole blocks of 64 (bitsandbytes 0.50.2's CPU dequantize_4bit
    # misreads the absmax of rows that are not: scripts/reference/make_qlora_fixtures.py), one
    # dense layer among the sparse ones.
    config = os.path.join(work, "qwen3-moe.json")
    with open(config, "w") as f:
        json.dump({"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "vocab_size": 881,
                   "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 64, "num_experts": 4,
                   "num_experts_per_tok": 2, "norm_topk_prob": True, "decoder_sparse_step": 1,
                   "mlp_only_layers": [1], "output_router_logits": False, "router_aux_loss_coef": 0.0,
                   "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
                   "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                   "rope_scaling": None, "tie_word_embeddings": False, "attention_bias": False,
                   "use_sliding_window": False, "sliding_window": None, "max_window_layers": 3,
                   "hidden_act": "silu", "initializer_range": 0.02, "bos_token_id": 876,
                   "eos_token_id": [880, 877], "torch_dtype": "float32", "use_cache": True}, f)
run([quarry, "init", "--config", config, "--tokenizer", tiny, "--dtype", "fp32", "--seed", "7", "--out", base])
run([quarry, "train", "--model", base, "--data", train_data, "--max-seq-len", "96", "--max-steps", "3",
     "--batch-size", "4", "--lr", "2e-2", "--device", "cpu", "--quantize", "nf4", "--lora-targets", targets,
     "--out", rd])
run([quarry, "export", rd, "--format", "peft", "--out", ad, "--dtype", "fp32", "--skip-leakcheck"])
ids = [1, 17, 230, 44, 512, 9, 77, 300, 12, 640, 5, 88, 123, 456, 789, 3]
vocab = json.load(open(os.path.join(base, "config.json")))["vocab_size"]
qf = os.path.join(work, "quarry.f32")
run([tool, rd, qf] + [str(i) for i in ids])
want = np.fromfile(qf, np.float32).reshape(len(ids), vocab)

oracle = r"""
import sys, numpy as np, torch, transformers, peft, bitsandbytes as bnb
base, ad, out = sys.argv[1:4]
ids = [int(x) for x in sys.argv[4:]]
if transformers.__version__.startswith("4."):
    # transformers 4.x accepts bitsandbytes on the CPU only through intel_extension_for_pytorch;
    # bitsandbytes >= 0.48 runs NF4 on the CPU itself: its environment check is skipped.
    from transformers.quantizers.quantizer_bnb_4bit import Bnb4BitHfQuantizer
    Bnb4BitHfQuantizer.validate_environment = lambda self, *a, **k: None
# The router ("gate", an nn.Linear in transformers 4.x) stays float32 as quarry keeps it.
q = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32,
                                    llm_int8_skip_modules=["gate", "lm_head"])
key = "dtype" if tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (4, 56) else "torch_dtype"
m = transformers.AutoModelForCausalLM.from_pretrained(base, quantization_config=q, device_map="cpu",
                                                      attn_implementation="eager", **{key: torch.float32})
x = torch.tensor([ids])


def logits(m):
    # bitsandbytes' training route (MatMul4Bit: dequantize_4bit, then an fp32 linear), as
    # make_qlora_fixtures.py's; dropout is 0 everywhere.
    m.train()
    with torch.enable_grad():
        return m(x).logits[0].detach().float().numpy()


plain = logits(m)
m = peft.PeftModel.from_pretrained(m, ad)
lin = [mod for mod in m.modules() if isinstance(mod, bnb.nn.Linear4bit)]
nl = sum(isinstance(getattr(mod, "base_layer", None), bnb.nn.Linear4bit) for mod in m.modules())
got = logits(m)
inf = np.full_like(got, np.nan)
if not transformers.__version__.startswith("4."):   # 4.51.3 + bitsandbytes 0.50.2: SIGFPE in it
    m.eval()   # its inference route (a bf16 kernel on CPUs with AVX512-BF16), for the record
    with torch.no_grad():
        inf = m(x).logits[0].float().numpy()
np.stack([plain, got, inf]).astype(np.float32).tofile(out)
print(f"bnb: {len(lin)} Linear4bit modules, {nl} of them with LoRA")
"""
of = os.path.join(work, "oracle.f32")
p = subprocess.run([ref, "-c", oracle, base, ad, of] + [str(i) for i in ids], capture_output=True, text=True)
print(p.stdout.strip())
if p.returncode != 0:
    print(p.stderr[-4000:])
    print("FAIL: transformers + PEFT + bitsandbytes could not load the adapter onto the 4-bit base")
    sys.exit(1)
plain, got, inf = np.fromfile(of, np.float32).reshape(3, len(ids), vocab)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


e, e0 = rel(got, want), rel(plain, want)
ei = rel(inf, want) if not np.isnan(inf).any() else 0.0
print(f"PEFT adapter on the 4-bit base vs quarry's QLoRA forward: rel {e:.3e} (bound {TOL:g}); "
      f"the base without the adapter: rel {e0:.3e}; bitsandbytes' inference route: " +
      (f"rel {ei:.3e} (bound {TOL_INF:g})" if not np.isnan(inf).any() else "not run on transformers 4.x"))
fail = 0
if not e <= TOL:
    print("FAIL: PEFT on the NF4 base does not give quarry's QLoRA logits")
    fail = 1
if not ei <= TOL_INF:
    print("FAIL: bitsandbytes' inference route (model.eval()) does not give quarry's QLoRA logits")
    fail = 1
if not e0 >= 100 * max(e, 1e-9):
    print("FAIL: the adapter does not move the logits: the check would not see a wrong one")
    fail = 1
if " 0 of them with LoRA" in p.stdout:
    print("FAIL: no Linear4bit module carries the adapter")
    fail = 1
sys.exit(fail)
