"""PyTorch CPU side of scripts/bench/train_step_cpu.sh: the training step dev/bench_train_step.c
times in quarry, on the same checkpoint (`quarry init` output loaded with transformers, fp32,
sdpa attention): forward + backward over B rows x T tokens (every next token trained, labels =
input_ids), clip_grad_norm_(1.0), AdamW (fused where torch has it on the CPU). LoRA through PEFT
(all-linear, rank/alpha/dropout as given). Prints one line per step and a summary line:
  RESULT wall_ms=... cpu_ms=... fwd_ms=... bwd_ms=... opt_ms=... loss0=... threads=... trained=...
Usage: python train_step_torch.py MODEL_DIR full|lora [--batch B] [--seq T] [--steps S]
       [--warmup W] [--threads N] [--lora-r R] [--lora-alpha A] [--lora-dropout P]
Needs torch, transformers (and peft for lora); exits 2 naming what is missing.
"""
import argparse
import os
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("method", choices=["full", "lora"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lora-alpha", type=float, default=32)
    ap.add_argument("--lora-dropout", type=float, default=0.05)
    a = ap.parse_args()

    try:
        import torch
        import transformers
    except ImportError as e:
        sys.exit(f"error: {e.name} is not installed in {sys.executable}; point QUARRY_TORCH_PYTHON at a "
                 "python with torch and transformers (pip install -r scripts/requirements-reference.txt)")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=torch.float32,
                                                              attn_implementation="sdpa")
    if a.method == "lora":
        try:
            import peft
        except ImportError:
            sys.exit(f"error: peft is not installed in {sys.executable} (pip install peft)")
        cfg = peft.LoraConfig(r=a.lora_r, lora_alpha=a.lora_alpha, lora_dropout=a.lora_dropout,
                              target_modules="all-linear", task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, fused=True)
        adamw = "fused"
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
        adamw = "default"

    V = model.config.vocab_size
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, V, (a.batch, a.seq), generator=g)

    wall, cpu, fw, bw, op = [], [], [], [], []
    loss0 = float("nan")
    for step in range(a.warmup + a.steps):
        w0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=ids, use_cache=False)
        w1 = time.perf_counter()
        out.loss.backward()
        w2 = time.perf_counter()
        gnorm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        w3, c3 = time.perf_counter(), time.process_time()
        loss = out.loss.item()
        if step == 0:
            loss0 = loss
        warm = step < a.warmup
        print(f"step {step + 1}{' (warm-up)' if warm else ''} wall_ms={1e3 * (w3 - w0):.1f} "
              f"cpu_ms={1e3 * (c3 - c0):.1f} fwd_ms={1e3 * (w1 - w0):.1f} bwd_ms={1e3 * (w2 - w1):.1f} "
              f"opt_ms={1e3 * (w3 - w2):.1f} loss={loss:.5f} gnorm={float(gnorm):.4f}", flush=True)
        if not warm:
            wall.append(w3 - w0); cpu.append(c3 - c0); fw.append(w1 - w0); bw.append(w2 - w1); op.append(w3 - w2)
    med = lambda v: 1e3 * statistics.median(v)
    print(f"RESULT wall_ms={med(wall):.1f} cpu_ms={med(cpu):.1f} fwd_ms={med(fw):.1f} bwd_ms={med(bw):.1f} "
          f"opt_ms={med(op):.1f} loss0={loss0:.5f} threads={torch.get_num_threads()} trained={len(params)} "
          f"torch={torch.__version__} adamw={adamw}")


if __name__ == "__main__":
    main()
