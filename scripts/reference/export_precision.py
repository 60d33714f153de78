#!/usr/bin/env python3
"""transformers' loss of the packages `quarry export` writes, against the losses quarry records
(issue 23: what the package keeps of the fine-tuning). Builds the scenario of
tests/export/test_export_precision.sh (tiny bf16 base, seed 7; a LoRA run at lr 3e-5 for 2 steps
where bf16 loses a share and fp16 keeps it; one at lr 5e-3 for 20 steps where both keep it), exports
each run as fp16 (--dtype auto) and bf16, and loads every written package with transformers in
fp32 (the rounded weights upcast exactly) to compute the mean loss per trained token over the
check records, with the ids and loss mask of `quarry render --mask`. Also the run (the adapter
unmerged, PEFT over the base) and the base.

    .venv-ref/bin/python scripts/reference/export_precision.py build/quarry \\
        > tests/fixtures/export_precision/transformers.txt
"""
import json, os, subprocess, sys, tempfile

import torch
from transformers import AutoModelForCausalLM

torch.manual_seed(0)
torch.set_num_threads(1)
Q = os.path.abspath(sys.argv[1])
SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
D = os.path.join(SRC, "examples", "data")
env = dict(os.environ, OMP_NUM_THREADS="2", OMP_WAIT_POLICY="PASSIVE")


def q(*args):
    subprocess.run([Q, *args], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def records(model_dir, check):
    out = subprocess.run([Q, "render", "--mask", "--model", model_dir, check], check=True, env=env,
                         capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def hf_loss(model, recs):
    total, n = 0.0, 0
    with torch.no_grad():
        for r in recs:
            ids = torch.tensor([r["ids"]])
            logits = model(ids).logits[0].double()
            lp = torch.log_softmax(logits, -1)
            for t in range(1, len(r["ids"])):
                if r["mask"][t]:
                    total -= lp[t - 1, r["ids"][t]].item()
                    n += 1
    return total / n, n


def load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


with tempfile.TemporaryDirectory() as w:
    check = os.path.join(w, "check.jsonl")
    with open(os.path.join(D, "company_qa_validation.jsonl")) as f, open(check, "w") as g:
        g.writelines(f.readlines()[:4])
    base = os.path.join(w, "base")
    q("init", "--config", os.path.join(SRC, "examples/tiny-model/config.json"), "--tokenizer",
      os.path.join(SRC, "examples/tiny-model"), "--out", base, "--seed", "7", "--dtype", "bf16")
    recs = records(base, check)
    print(f"torch {torch.__version__}, transformers {__import__('transformers').__version__}, "
          f"peft {__import__('peft').__version__}; {len(recs)} check records")
    base_loss, ntok = hf_loss(load(base), recs)
    for name, lr, steps in (("low", "3e-5", "2"), ("high", "5e-3", "20")):
        run = os.path.join(w, name)
        q("train", "--model", base, "--data", os.path.join(D, "company_qa_train.jsonl"), "--validation", check,
          "--out", run, "--method", "lora", "--lora-r", "8", "--lora-alpha", "16", "--max-steps", steps,
          "--batch-size", "2", "--max-seq-len", "128", "--lr", lr, "--device", "cpu", "--quiet")
        from peft import PeftModel
        run_loss, _ = hf_loss(PeftModel.from_pretrained(load(base), os.path.join(run, "final")).eval(), recs)
        rec = None
        print(f"\nrun {name} (lr {lr}, {steps} steps), {ntok} trained tokens")
        print(f"  {'':9} {'transformers':>14} {'quarry':>14} {'retained (tf)':>14} {'retained (quarry)':>18}")
        for dt in ("fp16", "bf16"):
            pkg = os.path.join(w, f"{name}-{dt}")
            q("export", run, "--out", pkg, "--dtype", "auto" if dt == "fp16" else dt, "--skip-leakcheck")
            r = json.load(open(os.path.join(pkg, "quarry-export.json")))["retention"]
            if dt == "fp16":
                rec = r
                assert r["dtype"] == "float16", r["dtype"]
            torch_name = {"fp16": "float16", "bf16": "bfloat16"}[dt]
            loss, _ = hf_loss(load(pkg), recs)
            if dt == "fp16":
                print(f"  {'run':9} {run_loss:14.8f} {rec['loss_run']:14.8f}")
                print(f"  {'base':9} {base_loss:14.8f} {rec['loss_base']:14.8f}")
            print(f"  {torch_name:9} {loss:14.8f} {rec['dtypes'][torch_name]['loss']:14.8f} "
                  f"{(base_loss - loss) / (base_loss - run_loss):14.4f} {rec['dtypes'][torch_name]['retained']:18.4f}")
        print(f"  fp16 range: {rec['fp16_range']}")
