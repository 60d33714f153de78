#!/usr/bin/env python3
"""`quarry render` on AWS's sample Bedrock files (every format) equals transformers' rendering of
the same records with the official templates; also its errors for bad input.

usage: check_render.py QUARRY TESTDATA SOURCE_DIR WORK_DIR
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from official_templates import official_templates  # noqa: E402


def main():
    quarry, testdata, source, work = sys.argv[1:5]
    try:
        import transformers.utils.chat_template_utils as ctu
    except Exception as e:  # noqa: BLE001
        print(f"SKIP: transformers/jinja2 not importable: {e}")
        return 77
    models = official_templates(testdata, source, ["llama3.1", "llama3.0", "llama2", "qwen2.5", "qwen3",
                                                   "mistral-v3-spm", "mistral-v1", "mistral-hf", "mistral-nemo",
                                                   "phi3.5"])
    files = ["tooluse_test_system_messages.jsonl", "tooluse_test_content_blocks.jsonl",
             "uber10k_prompt_completion.jsonl", "tooluse_train_system_messages.jsonl"]
    fails = 0
    total = 0
    for name, (tpl_path, (bos, eos)) in models.items():
        tpl = open(tpl_path, encoding="utf-8").read()
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump({"bos_token": bos, "eos_token": eos, "chat_template": tpl}, f)
        for fn in files:
            path = os.path.join(testdata, "bedrock", fn)
            p = subprocess.run([quarry, "render", "--model", d, "--template-date", "05 Mar 2025", path],
                               capture_output=True)
            if p.returncode != 0:
                print(f"FAIL render {name} {fn}: exit {p.returncode}: {p.stderr.decode()[:500]}")
                fails += 1
                continue
            got = p.stdout.decode("utf-8").splitlines()
            want = []
            for line in open(path, encoding="utf-8"):
                if not line.strip():
                    continue
                want.append(ctu.render_jinja_template(conversations=[messages(json.loads(line))], chat_template=tpl,
                                                      add_generation_prompt=False, bos_token=bos, eos_token=eos,
                                                      date_string="05 Mar 2025")[0][0])
            total += len(want)
            if len(got) != len(want):
                print(f"FAIL render {name} {fn}: {len(got)} lines out, {len(want)} records in")
                fails += 1
                continue
            for i, (g, w) in enumerate(zip(got, want)):
                g = json.loads(g)
                if g != w:
                    k = next((j for j in range(min(len(g), len(w))) if g[j] != w[j]), min(len(g), len(w)))
                    print(f"FAIL render {name} {fn}:{i + 1}: first difference at character {k}\n"
                          f"  quarry: {g[max(0, k - 40):k + 80]!r}\n  jinja2: {w[max(0, k - 40):k + 80]!r}")
                    fails += 1
                    break

    # Bad input: a clear error with the line, a non-zero exit; an unknown template names --template.
    d = os.path.join(work, "llama3.1")
    p = subprocess.run([quarry, "render", "--model", d], input=b'{"prompt": "a", "completion": "b"}\n{"oops": 1}\n',
                       capture_output=True)
    err = p.stderr.decode()
    if p.returncode != 1 or "stdin:2: error:" not in err or p.stdout.decode().count("\n") != 1:
        print(f"FAIL render bad record: exit {p.returncode}, stderr {err!r}")
        fails += 1
    u = os.path.join(work, "unknown")
    os.makedirs(u, exist_ok=True)
    with open(os.path.join(u, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "</s>", "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}, f)
    p = subprocess.run([quarry, "render", "--model", u], input=b'{"prompt": "a", "completion": "b"}\n',
                       capture_output=True)
    if p.returncode != 1 or "--template NAME" not in p.stderr.decode():
        print(f"FAIL render unknown template: exit {p.returncode}, stderr {p.stderr.decode()!r}")
        fails += 1
    for rec, want in [(b'{"prompt": "a", "completion": "b"}\n', "ab</s>"), (b'{"input": "doc"}\n', "doc</s>"),
                      (b'{"system": "s", "messages": [{"role": "user", "content": "u"}, '
                       b'{"role": "assistant", "content": "a"}]}\n', "s\nu\na</s>")]:
        p = subprocess.run([quarry, "render", "--model", u, "--template", "raw"], input=rec, capture_output=True)
        if p.returncode != 0 or [json.loads(x) for x in p.stdout.decode().splitlines()] != [want]:
            print(f"FAIL render --template raw {rec!r}: exit {p.returncode}, out {p.stdout.decode()!r}")
            fails += 1
    # Mixed formats in one file are refused, as Bedrock does.
    p = subprocess.run([quarry, "render", "--model", u, "--template", "raw"],
                       input=b'{"prompt": "a", "completion": "b"}\n{"input": "doc"}\n', capture_output=True)
    if p.returncode != 1 or "stdin:2: error:" not in p.stderr.decode():
        print(f"FAIL render mixed formats: exit {p.returncode}, stderr {p.stderr.decode()!r}")
        fails += 1
    # --mask on a real model directory (Phi-3-mini: tokenizer.json + tokenizer_config.json with its
    # template): ids as HF tokenizes the jinja2 rendering; the mask trains each assistant turn's
    # <|end|> and the final <|endoftext|>, never a role tag.
    phi = os.path.join(testdata, "tokenizers", "phi3")
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(phi, "tokenizer.json"))
    cfg = json.load(open(os.path.join(phi, "tokenizer_config.json"), encoding="utf-8"))
    path = os.path.join(testdata, "bedrock", "tooluse_test_system_messages.jsonl")
    p = subprocess.run([quarry, "render", "--model", phi, "--mask", path], capture_output=True)
    got = [json.loads(x) for x in p.stdout.decode().splitlines()]
    recs = [json.loads(x) for x in open(path, encoding="utf-8") if x.strip()]
    special = {n: tok.token_to_id(n) for n in ["<|end|>", "<|endoftext|>", "<|user|>", "<|system|>", "<|assistant|>"]}
    if p.returncode != 0 or len(got) != len(recs):
        print(f"FAIL render --mask: exit {p.returncode}, {len(got)} lines for {len(recs)} records: {p.stderr.decode()[:300]}")
        fails += 1
    else:
        for i, (g, rec) in enumerate(zip(got, recs)):
            msgs = messages(rec)
            text = ctu.render_jinja_template(conversations=[msgs], chat_template=cfg["chat_template"],
                                             bos_token=cfg["bos_token"], eos_token=cfg["eos_token"])[0][0]
            want = tok.encode(text, add_special_tokens=False).ids
            trained = [t for t, m in zip(g["ids"], g["mask"]) if m]
            nassist = sum(m["role"] == "assistant" for m in msgs)
            problem = None
            if g["ids"] != want:
                problem = "ids differ from HF"
            elif len(g["mask"]) != len(g["ids"]) or set(g["mask"]) - {0, 1}:
                problem = "mask is not one 0/1 per id"
            elif trained.count(special["<|end|>"]) != nassist or trained.count(special["<|endoftext|>"]) != 1:
                problem = "trained <|end|>/<|endoftext|> counts are wrong"
            elif any(trained.count(special[k]) for k in ["<|user|>", "<|system|>", "<|assistant|>"]):
                problem = "a role tag is trained"
            if problem:
                print(f"FAIL render --mask phi3 {os.path.basename(path)}:{i + 1}: {problem}")
                fails += 1
                break
        total += len(got)
    # An answer with a leading blank: Phi-3's <|assistant|> (rstrip) swallows it and stays masked.
    p = subprocess.run([quarry, "render", "--model", phi, "--mask"],
                       input=b'{"prompt": "2+2=", "completion": " 4"}\n', capture_output=True)
    g = json.loads(p.stdout.decode() or "{}")
    trained = [t for t, m in zip(g.get("ids", []), g.get("mask", [])) if m]
    if p.returncode != 0 or special["<|assistant|>"] in trained or special["<|end|>"] not in trained:
        print(f"FAIL render --mask phi3 leading blank: exit {p.returncode}, {g}")
        fails += 1
    h_fails, h_total = check_harmony(quarry, testdata, work, files, ctu)
    fails += h_fails
    total += h_total
    print(f"render: {total} Bedrock records compared with jinja2, {fails} failure(s)")
    return 1 if fails else 0


def check_harmony(quarry, testdata, work, files, ctu):
    """gpt-oss: `--template-date 2025-03-05` equals jinja2 with strftime_now on that day (the
    template has no date variable); with the o200k_harmony pipeline built by
    scripts/reference/make_tokenizers.py (when the tokenizer cache has it), `--mask` gives HF's ids
    and trains exactly each answer's text and its <|end|>/<|return|>: never a header, <|channel|>
    or <|message|>."""
    import datetime as dt
    tpl = open(os.path.join(testdata, "chat_templates", "openai-gpt-oss-120b.jinja"), encoding="utf-8").read()

    class Day(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2025, 3, 5, 12, 0, 0, tzinfo=tz)

    saved, ctu.datetime = ctu.datetime, Day
    d = os.path.join(work, "harmony")
    os.makedirs(d, exist_ok=True)
    cfg = {"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "chat_template": tpl}
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    fails = total = 0
    recs_of = {}
    try:
        for fn in files:
            path = os.path.join(testdata, "bedrock", fn)
            p = subprocess.run([quarry, "render", "--model", d, "--template-date", "2025-03-05", path],
                               capture_output=True)
            recs = [json.loads(x) for x in open(path, encoding="utf-8") if x.strip()]
            recs_of[path] = recs
            want = [ctu.render_jinja_template(conversations=[messages(r)], chat_template=tpl,
                                              add_generation_prompt=False)[0][0] for r in recs]
            got = [json.loads(x) for x in p.stdout.decode("utf-8").splitlines()]
            total += len(want)
            if p.returncode != 0 or got != want:
                i = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
                print(f"FAIL render harmony {fn}: exit {p.returncode}, first difference in record {i + 1}: "
                      f"{p.stderr.decode()[:300]}")
                fails += 1
        cache = os.environ.get("QUARRY_TOKENIZER_CACHE", "")
        tj = os.path.join(cache, "gptoss.json")
        if not os.path.exists(tj):
            print(f"note: {tj} not built (tests/tokenizer builds it); harmony --mask not checked")
            return fails, total
        import shutil
        from tokenizers import Tokenizer
        shutil.copyfile(tj, os.path.join(d, "tokenizer.json"))
        tok = Tokenizer.from_file(tj)
        end, ret = tok.token_to_id("<|end|>"), tok.token_to_id("<|return|>")
        never = {tok.token_to_id(t) for t in ("<|start|>", "<|channel|>", "<|message|>")}
        path = os.path.join(testdata, "bedrock", "tooluse_test_system_messages.jsonl")
        p = subprocess.run([quarry, "render", "--model", d, "--template-date", "2025-03-05", "--mask", path],
                           capture_output=True)
        got = [json.loads(x) for x in p.stdout.decode().splitlines()]
        if p.returncode != 0 or len(got) != len(recs_of[path]):
            print(f"FAIL render --mask harmony: exit {p.returncode}: {p.stderr.decode()[:300]}")
            return fails + 1, total
        for i, (g, rec) in enumerate(zip(got, recs_of[path])):
            msgs = messages(rec)
            text = ctu.render_jinja_template(conversations=[msgs], chat_template=tpl)[0][0]
            ids = tok.encode(text, add_special_tokens=False).ids
            # What must be trained: each answer's text tokens and its end token, from HF's own
            # encoding of the pieces between "final<|message|>" and the end token.
            want_trained = []
            answers = [m["content"] for m in msgs if m["role"] == "assistant"]
            for k, a in enumerate(answers):
                want_trained += tok.encode(a, add_special_tokens=False).ids
                want_trained.append(ret if k == len(answers) - 1 else end)
            trained = [t for t, m in zip(g["ids"], g["mask"]) if m]
            problem = None
            if g["ids"] != ids:
                problem = "ids differ from HF"
            elif trained != want_trained:
                problem = f"trained tokens {trained[:20]} are not the answers' and their end tokens {want_trained[:20]}"
            elif never & set(trained):
                problem = "a header token is trained"
            if problem:
                print(f"FAIL render --mask harmony {os.path.basename(path)}:{i + 1}: {problem}")
                return fails + 1, total
        total += len(got)
    finally:
        ctu.datetime = saved
    return fails, total


def messages(rec):
    """A Bedrock record as transformers' messages (content blocks joined as quarry joins them)."""
    def text(v):
        return v if isinstance(v, str) else "".join(b["text"] for b in v)
    if "prompt" in rec:
        return [{"role": "user", "content": rec["prompt"]}, {"role": "assistant", "content": rec["completion"]}]
    out = []
    if rec.get("system") is not None:
        out.append({"role": "system", "content": text(rec["system"])})
    out += [{"role": m["role"], "content": text(m["content"])} for m in rec["messages"]]
    return out


if __name__ == "__main__":
    sys.exit(main())
