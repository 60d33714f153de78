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

usage: check_export_peft_nf4.py QUARRY_BIN EXPORT_LOGITS TINY_MODEL_DIR TRAIN_JSONL WORKDIR [TARGETS]
The oracle Python: $QUARRY_BNB_PYTHON, else <source>/.venv-bnb/bin/python (torch, transformers,
peft, bitsandbytes ≥ 0.48 for NF4 on the CPU); SKIP (77) when neither has them.
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
src = os.environ.get("QUARRY_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
ref = os.environ.get("QUARRY_BNB_PYTHON") or os.path.join(src, ".venv-bnb", "bin", "python")
probe = "import torch, peft, transformers, bitsandbytes"
if not os.path.exists(ref) or subprocess.run([ref, "-c", probe], capture_output=True).returncode != 0:
    skip("no Python with torch, peft, transformers and bitsandbytes (set QUARRY_BNB_PYTHON or make .venv-bnb)")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
base, rd, ad = (os.path.join(work, d) for d in ("base", "run", "peft"))
run([quarry, "init", "--config", os.path.join(tiny, "config.json"), "--tokenizer", tiny, "--dtype", "fp32",
     "--seed", "7", "--out", base])
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
q = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32)
m = transformers.AutoModelForCausalLM.from_pretrained(base, quantization_config=q, dtype=torch.float32,
                                                      device_map="cpu", attn_implementation="eager")
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


e, e0, ei = rel(got, want), rel(plain, want), rel(inf, want)
print(f"PEFT adapter on the 4-bit base vs quarry's QLoRA forward: rel {e:.3e} (bound {TOL:g}); "
      f"the base without the adapter: rel {e0:.3e}; bitsandbytes' inference route: rel {ei:.3e} (bound {TOL_INF:g})")
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
