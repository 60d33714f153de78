#!/usr/bin/env python3
"""`quarry generate` through the CLI against outside references.

- stories260K (llama2.c, converted by scripts/reference/convert_stories260k.py): greedy from BOS
  (`--raw --prompt ""`) prints the text of stories260K.md's temperature-0 sample.
- The tiny transformers fixtures (tests/fixtures/*): greedy continuation of the recorded prompt
  equals transformers' generate(do_sample=False) (ids in reference.json). The fixtures have no
  tokenizer; each gets a byte-level one written here with HF tokenizers (id i = byte i, no
  merges), so text in = ids in and text out = ids out.
- Sampling: a seed reproduces its tokens, other seeds differ, top-k 1 equals greedy.
- Stops at EOS: with eos_token_id set to the k-th greedy token, only the first k−1 come out.
- A run directory: a LoRA adapter with B = 0 generates as the base; a random adapter generates
  otherwise, and exactly as a full fine-tune run holding the merged weights W + s·B·A.
- --print-prompt: the template's rendering with add_generation_prompt=True equals jinja2's
  (transformers' renderer) on the official templates of ../shared/testdata.
- Bad flags exit 2; a bad --messages file exits 1 naming the file and line.

usage: check_generate.py QUARRY SOURCE_DIR TESTDATA WORK_DIR
"""
import json
import os
import shutil
import subprocess
import sys

FAILS = []


def fail(msg):
    FAILS.append(msg)
    print("FAIL", msg)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, **kw)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def byte_tokenizer(path, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    bu = bytes_to_unicode()
    vocab = {bu[b]: b for b in range(vocab_size)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(path)
    return tok


def gen(q, model, *args, prompt=None, raw=True):
    cmd = [q, "generate", "--model", model, "--device", "cpu"]
    if prompt is not None:
        cmd += ["--prompt", prompt]
    if raw:
        cmd += ["--raw"]
    return run(cmd + list(args))


def check_stories(q, src, testdata, work):
    md_path = os.path.join(testdata, "models", "stories260K", "stories260K.md")
    out = os.path.join(work, "stories260K-hf")
    if not os.path.exists(os.path.join(out, "tokenizer.json")):
        r = run([sys.executable, os.path.join(src, "scripts", "reference", "convert_stories260k.py"), out,
                 os.path.join(testdata, "models", "stories260K")])
        if r.returncode != 0:
            fail(f"convert stories260K: {r.stderr.decode()[-500:]}")
            return None
    md = open(md_path, encoding="utf-8").read()
    s = md.index("-t 0.0\n") + len("-t 0.0\n")
    want = md[s:md.index("```", s)].rstrip()
    # run.c samples 256 tokens (positions 0..255) after BOS.
    r = gen(q, out, "--temperature", "0", "--max-new-tokens", "256", prompt="")
    got = r.stdout.decode("utf-8", "replace").rstrip()
    if r.returncode != 0 or got != want:
        k = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))
        fail(f"stories260K greedy (exit {r.returncode}) differs at character {k}:\n  quarry:   {got[k:k + 80]!r}\n"
             f"  llama2.c: {want[k:k + 80]!r}\n  stderr: {r.stderr.decode()[-300:]}")
    else:
        print(f"stories260K: greedy text equals stories260K.md ({len(want)} characters)")
    # Sampling on a real vocabulary: reproducible per seed, different across seeds, top-k 1 = greedy.
    samp = ["--temperature", "0.9", "--top-p", "0.9", "--max-new-tokens", "40"]
    a = gen(q, out, *samp, "--seed", "1", prompt="Once upon a time")
    b = gen(q, out, *samp, "--seed", "1", prompt="Once upon a time")
    c = gen(q, out, *samp, "--seed", "2", prompt="Once upon a time")
    if a.returncode or b.returncode or c.returncode or a.stdout != b.stdout or a.stdout == c.stdout:
        fail(f"stories260K sampling: seed 1 twice {a.stdout!r} / {b.stdout!r}, seed 2 {c.stdout!r}")
    else:
        print(f"stories260K: top-p 0.9 seed 1 reproducible, seed 2 differs ({a.stdout.decode()[:40]!r}...)")
    g = gen(q, out, "--temperature", "0", "--max-new-tokens", "40", prompt="Once upon a time")
    k1 = gen(q, out, "--temperature", "1.5", "--top-k", "1", "--seed", "7", "--max-new-tokens", "40",
             prompt="Once upon a time")
    if g.returncode or k1.returncode or g.stdout != k1.stdout:
        fail(f"stories260K: top-k 1 {k1.stdout!r} is not greedy {g.stdout!r}")
    return out


def check_fixtures(q, src, work):
    import numpy as np
    from safetensors.numpy import load_file, save_file
    fixtures = os.path.join(src, "tests", "fixtures")
    for name in sorted(os.listdir(fixtures)):
        fdir = os.path.join(fixtures, name)
        if not os.path.isfile(os.path.join(fdir, "model.safetensors")):
            continue   # the LoRA-only fixtures (*_lora_experts) reuse a base fixture's model
        rpath = os.path.join(fdir, "reference.json")
        ref = json.load(open(rpath)).get("greedy") if os.path.isfile(rpath) else None
        if ref is None:
            continue   # a fixture of another test (qlora_llama*: the QLoRA step, no continuation)
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        for f in ("config.json", "generation_config.json", "model.safetensors"):
            shutil.copy(os.path.join(fdir, f), d)
        cfg = json.load(open(os.path.join(d, "config.json")))
        tok = byte_tokenizer(os.path.join(d, "tokenizer.json"), cfg["vocab_size"])
        prompt = bytes(ref["prompt"]).decode("ascii")
        if tok.encode(prompt).ids != ref["prompt"]:
            fail(f"{name}: the byte tokenizer does not encode the prompt to its ids")
            continue
        want = bytes(ref["new_tokens"])
        r = gen(q, d, "--temperature", "0", "--max-new-tokens", str(len(want)), prompt=prompt)
        if r.returncode != 0 or r.stdout != want:
            fail(f"{name}: greedy {list(r.stdout)} != transformers {list(want)} (exit {r.returncode}) "
                 f"{r.stderr.decode()[-300:]}")
            continue
        print(f"{name}: greedy continuation equals transformers' generate ({len(want)} tokens)")

        # EOS: the k-th greedy token made the EOS; generation stops before it.
        k = next((i for i in range(1, len(want)) if want[i] not in want[:i]), None)
        if k is not None:
            e = os.path.join(work, name + "-eos")
            shutil.copytree(d, e, dirs_exist_ok=True)
            gc = json.load(open(os.path.join(e, "generation_config.json")))
            gc["eos_token_id"] = [2, want[k]]
            json.dump(gc, open(os.path.join(e, "generation_config.json"), "w"))
            r = gen(q, e, "--temperature", "0", "--max-new-tokens", "20", prompt=prompt)
            if r.returncode != 0 or r.stdout != want[:k] or b"stopped at end-of-turn/EOS" not in r.stderr:
                fail(f"{name}: EOS {want[k]} at token {k}: got {list(r.stdout)}, stderr {r.stderr.decode()[-200:]}")
            else:
                print(f"{name}: stops before EOS {want[k]} (token {k + 1} of the greedy continuation)")

        # Runs: LoRA with B = 0 (the base), random LoRA, and the same merged as a full fine-tune.
        w = load_file(os.path.join(d, "model.safetensors"))
        rng = np.random.default_rng(5)
        rank, alpha = 4, 8.0
        adapters, merged = {}, {}
        zero = {}
        cfg = json.load(open(os.path.join(d, "config.json")))
        moe = cfg.get("num_experts") or cfg.get("num_local_experts")
        for key, t in w.items():
            if not key.endswith("proj.weight") or ".layers." not in key:
                continue
            if moe and ".self_attn." not in key:
                continue   # quarry adapts the attention of MoE models only (README: LoRA on MoE)
            mod = key[:-len(".weight")]
            out_f, in_f = t.shape
            A = rng.normal(0, 0.15, (rank, in_f)).astype(np.float32)
            B = rng.normal(0, 0.15, (out_f, rank)).astype(np.float32)
            adapters[f"base_model.model.{mod}.lora_A.weight"] = A
            adapters[f"base_model.model.{mod}.lora_B.weight"] = B
            zero[f"base_model.model.{mod}.lora_A.weight"] = A
            zero[f"base_model.model.{mod}.lora_B.weight"] = np.zeros_like(B)
            merged[key] = (t.astype(np.float64) + alpha / rank * (B.astype(np.float64) @ A.astype(np.float64))).astype(
                np.float32)
        acfg = {"peft_type": "LORA", "r": rank, "lora_alpha": alpha, "lora_dropout": 0.05, "use_rslora": False,
                "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
        outs = {}
        for kind, tensors in (("lora0", zero), ("lora", adapters), ("full", merged)):
            rd = os.path.join(work, f"{name}-run-{kind}")
            os.makedirs(os.path.join(rd, "final"), exist_ok=True)
            json.dump({"base_model": os.path.abspath(d), "template": "raw"}, open(os.path.join(rd, "run.json"), "w"))
            for f in ("adapter_model.safetensors", "adapter_config.json", "model.safetensors"):
                if os.path.exists(os.path.join(rd, "final", f)):
                    os.remove(os.path.join(rd, "final", f))
            if kind == "full":
                save_file(tensors, os.path.join(rd, "final", "model.safetensors"))
            else:
                save_file(tensors, os.path.join(rd, "final", "adapter_model.safetensors"))
                json.dump(acfg, open(os.path.join(rd, "final", "adapter_config.json"), "w"))
            r = gen(q, rd, "--temperature", "0", "--max-new-tokens", "8", prompt=prompt)
            if r.returncode != 0:
                fail(f"{name} run {kind}: exit {r.returncode}: {r.stderr.decode()[-300:]}")
            outs[kind] = r.stdout
        if outs.get("lora0") != want:
            fail(f"{name}: a zero LoRA adapter changed the output: {list(outs.get('lora0') or b'')} vs {list(want)}")
        if not outs.get("lora"):
            fail(f"{name}: the LoRA run generated nothing (EOS first): a weak comparison")
        if outs.get("lora") == want:
            fail(f"{name}: a random LoRA adapter generated exactly the base's tokens")
        if outs.get("lora") != outs.get("full"):
            fail(f"{name}: LoRA unmerged {list(outs.get('lora') or b'')} != merged {list(outs.get('full') or b'')}")
        else:
            print(f"{name}: run with LoRA generates {list(outs['lora'])} (base {list(want)}), as the merged weights do")
    return os.path.join(work, "llama3_gqa")


def check_templates(q, testdata, src, tokdir, work):
    try:
        import transformers.utils.chat_template_utils as ctu
    except Exception as e:  # noqa: BLE001
        print(f"SKIP templates: transformers/jinja2 not importable: {e}")
        return
    sys.path.insert(0, os.path.join(src, "tests", "chat"))
    from official_templates import official_templates
    models = official_templates(testdata, src, ["llama3.1", "llama3.0", "llama2", "qwen2.5", "qwen2", "mistral-v3-spm",
                                                "mistral-v1", "mistral-hf", "mistral-nemo", "phi3.5"])
    convs = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "a"},
         {"role": "assistant", "content": "b"}, {"role": "user", "content": "  c d  "}],
    ]
    n = 0
    for name, (tpl_path, (bos, eos)) in models.items():
        if not os.path.exists(tpl_path):
            print(f"SKIP template {name}: {tpl_path} not found")
            continue
        tpl = open(tpl_path, encoding="utf-8").read()
        d = os.path.join(work, "tpl-" + name)
        os.makedirs(d, exist_ok=True)
        shutil.copy(os.path.join(tokdir, "tokenizer.json"), d)
        json.dump({"bos_token": bos, "eos_token": eos, "chat_template": tpl},
                  open(os.path.join(d, "tokenizer_config.json"), "w"))
        for i, conv in enumerate(convs):
            rec = {"messages": [m for m in conv if m["role"] != "system"]}
            if conv[0]["role"] == "system":
                rec["system"] = conv[0]["content"]
            mf = os.path.join(d, f"conv{i}.jsonl")
            open(mf, "w").write(json.dumps(rec) + "\n")
            r = run([q, "generate", "--model", d, "--messages", mf, "--print-prompt"])
            want = ctu.render_jinja_template(conversations=[conv], chat_template=tpl, add_generation_prompt=True,
                                             bos_token=bos, eos_token=eos)[0][0]
            got = r.stdout.decode("utf-8")
            n += 1
            if r.returncode != 0 or got != want:
                fail(f"template {name} conversation {i}: exit {r.returncode} {r.stderr.decode()[-200:]}\n"
                     f"  quarry: {got!r}\n  jinja2: {want!r}")
    print(f"templates: {n} generation prompts compared with jinja2 (add_generation_prompt=True)")


def check_errors(q, model, work):
    bad = [
        ["--model", model],                                            # no prompt
        ["--model", model, "--prompt", "a", "--chat"],                 # two sources
        ["--model", model, "--prompt", "a", "--temperature", "-1"],
        ["--model", model, "--prompt", "a", "--top-p", "0"],
        ["--model", model, "--prompt", "a", "--top-p", "1.5"],
        ["--model", model, "--prompt", "a", "--top-k", "-3"],
        ["--model", model, "--prompt", "a", "--max-new-tokens", "-1"],
        ["--model", model, "--prompt", "a", "--max-new-tokens", "x"],
        ["--model", model, "--prompt", "a", "--no-such-flag"],
        ["--prompt", "a"],                                              # no model
    ]
    for args in bad:
        r = run([q, "generate"] + args)
        if r.returncode != 2:
            fail(f"generate {' '.join(args[2:])}: exit {r.returncode}, want 2; {r.stderr.decode()[-200:]}")
    mf = os.path.join(work, "bad.jsonl")
    open(mf, "w").write("\n{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n")
    r = run([q, "generate", "--model", model, "--messages", mf, "--template", "llama3"])
    if r.returncode != 1 or f"{mf}:2: error:" not in r.stderr.decode():
        fail(f"bad --messages: exit {r.returncode}, stderr {r.stderr.decode()!r}")
    r = run([q, "generate", "--model", os.path.join(work, "nonexistent"), "--prompt", "a"])
    if r.returncode != 1 or "nonexistent" not in r.stderr.decode():
        fail(f"missing model: exit {r.returncode}, stderr {r.stderr.decode()!r}")
    print(f"errors: {len(bad)} bad command lines exit 2; a bad record and a missing model exit 1")


def main():
    q, src, testdata, work = sys.argv[1:5]
    os.makedirs(work, exist_ok=True)
    have_td = os.path.isdir(os.path.join(testdata, "models", "stories260K"))
    if have_td:
        check_stories(q, src, testdata, work)
    else:
        print(f"SKIP: {testdata} not found (stories260K and template checks skipped; fixture checks run)")
    fx = check_fixtures(q, src, work)
    if have_td:
        check_templates(q, testdata, src, fx, work)
    check_errors(q, fx, work)
    print(f"generate: {len(FAILS)} failure(s)")
    if FAILS:
        return 1
    return 0 if have_td else 77


if __name__ == "__main__":
    sys.exit(main())
