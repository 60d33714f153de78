#!/usr/bin/env python3
"""`quarry eval` equals the validation losses `quarry train` logged for the same data.

A tiny model from examples/tiny-model (quarry init, fp32) is trained briefly, LoRA and full, with
--validation; validation_metrics.csv's first row (before training) must equal `quarry eval` of
the base checkpoint and its last row `quarry eval` of the run, within 1e-5. The per-record sums
of --json add up to the total; bad flags exit 2.

usage: check_eval.py QUARRY SOURCE_DIR WORK_DIR
"""
import csv
import json
import math
import os
import shutil
import subprocess
import sys

FAILS = []


def fail(msg):
    FAILS.append(msg)
    print("FAIL", msg)


def run(args):
    return subprocess.run(args, capture_output=True)


def eval_json(q, model, data, *extra):
    r = run([q, "eval", "--model", model, "--data", data, "--json", "--device", "cpu"] + list(extra))
    if r.returncode != 0:
        fail(f"eval {model}: exit {r.returncode}: {r.stderr.decode()[-400:]}")
        return None
    try:
        return json.loads(r.stdout)
    except ValueError as e:
        fail(f"eval {model}: --json output does not parse: {e}: {r.stdout[:200]!r}")
        return None


def main():
    q, src, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    ex = os.path.join(src, "examples")
    train = os.path.join(ex, "data", "company_qa_train.jsonl")
    val = os.path.join(ex, "data", "company_qa_validation.jsonl")
    base = os.path.join(work, "tiny")
    r = run([q, "init", "--config", os.path.join(ex, "tiny-model", "config.json"), "--tokenizer",
             os.path.join(ex, "tiny-model"), "--dtype", "fp32", "--out", base])
    if r.returncode != 0:
        fail(f"init: {r.stderr.decode()[-400:]}")
        return 1
    for method in ("lora", "full"):
        rd = os.path.join(work, "run-" + method)
        r = run([q, "train", "--model", base, "--data", train, "--validation", val, "--out", rd, "--method", method,
                 "--max-steps", "4", "--batch-size", "4", "--max-seq-len", "128", "--lr", "2e-3", "--quiet",
                 "--device", "cpu"])
        if r.returncode != 0:
            fail(f"train {method}: exit {r.returncode}: {r.stderr.decode()[-400:]}")
            continue
        rows = list(csv.DictReader(open(os.path.join(rd, "validation_metrics.csv"))))
        first, last = float(rows[0]["validation_loss"]), float(rows[-1]["validation_loss"])
        b = eval_json(q, base, val, "--max-seq-len", "128")
        e = eval_json(q, rd, val)   # the run's max_seq_len and template are its defaults
        if not b or not e:
            continue
        for name, want, got in (("base", first, b), (method + " run", last, e)):
            if abs(got["loss"] - want) > 1e-5 or abs(got["perplexity"] - math.exp(want)) > 1e-5 * math.exp(want):
                fail(f"{name}: eval loss {got['loss']:.8f} != validation_metrics.csv {want:.6f}")
            else:
                print(f"{method}: {name} eval loss {got['loss']:.6f} = logged validation loss {want:.6f}")
            s = sum(p["loss_sum"] for p in got["per_record"])
            t = sum(p["tokens"] for p in got["per_record"])
            lines = [p["line"] for p in got["per_record"]]
            if abs(s - got["loss_sum"]) > 1e-6 * abs(s) or t != got["trained_tokens"] or lines != sorted(lines):
                fail(f"{name}: per-record sums {s}/{t} vs total {got['loss_sum']}/{got['trained_tokens']}, lines {lines}")
        if abs(first - last) < 1e-4:
            fail(f"{method}: training did not move the validation loss ({first} → {last}); the check is weak")
    # `quarry generate` on the runs quarry train wrote: --chat keeps the conversation (KV cache reused
    # across turns) and answers exactly as --messages does for the same conversation.
    rd = os.path.join(work, "run-lora")
    if os.path.isdir(os.path.join(rd, "final")):
        q1, q2 = "Who runs Larkspur Tidal Instruments?", "Where is it?"
        # Sampled (the briefly trained model's greedy answer is one repeated token); each turn
        # draws from the seed's stream afresh.
        g = ["--temperature", "1", "--seed", "5", "--max-new-tokens", "12", "--device", "cpu"]
        r = subprocess.run([q, "generate", "--model", rd, "--chat"] + g, input=f"{q1}\n{q2}\n".encode(),
                           capture_output=True)
        answers = []
        conv = []
        for user in (q1, q2):
            conv.append({"role": "user", "content": user})
            mf = os.path.join(work, "conv.jsonl")
            open(mf, "w").write(json.dumps({"messages": conv}) + "\n")
            m = run([q, "generate", "--model", rd, "--messages", mf] + g)
            if m.returncode != 0:
                fail(f"generate --messages on a trained run: exit {m.returncode}: {m.stderr.decode()[-300:]}")
            a = m.stdout.decode("utf-8")
            answers.append(a)
            conv.append({"role": "assistant", "content": a})
        want = "".join(a + "\n" for a in answers)
        if r.returncode != 0 or r.stdout.decode("utf-8") != want:
            fail(f"generate --chat: exit {r.returncode}\n  chat:     {r.stdout!r}\n  messages: {want!r}\n"
                 f"  {r.stderr.decode()[-300:]}")
        else:
            print(f"generate --chat on a trained LoRA run: two turns equal --messages ({answers!r})")
    # Plain output and exit codes.
    r = run([q, "eval", "--model", base, "--data", val, "--max-seq-len", "128", "--device", "cpu"])
    if r.returncode != 0 or b"perplexity" not in r.stdout:
        fail(f"eval text output: exit {r.returncode}: {r.stdout!r}")
    for args in (["--data", val], ["--model", base], ["--model", base, "--data", val, "--max-seq-len", "-4"],
                 ["--model", base, "--data", val, "--bogus"], ["--model", base, "--data", val, "--micro-batch", "0"]):
        r = run([q, "eval"] + args)
        if r.returncode != 2:
            fail(f"eval {args}: exit {r.returncode}, want 2")
    bad = os.path.join(work, "bad.jsonl")
    open(bad, "w").write('{"prompt": "a", "completion": "b"}\n{"nope": 1}\n')
    r = run([q, "eval", "--model", base, "--data", bad, "--device", "cpu"])
    if r.returncode != 1 or "bad.jsonl:2" not in r.stderr.decode():
        fail(f"eval of a bad file: exit {r.returncode}, stderr {r.stderr.decode()[-300:]!r}")
    print(f"eval: {len(FAILS)} failure(s)")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
