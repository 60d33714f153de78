#!/usr/bin/env python3
"""Oracle for tests/chat/test_chat_mask: token ids of rendered conversations as Hugging Face makes
them (the official template rendered by transformers, then the tokenizer.json built by
scripts/reference/make_tokenizers.py encoding the whole text once, template tokens as special
tokens, the post-processor's BOS only where the template emitted none).

usage: gen_mask_cases.py TESTDATA SOURCE_DIR OUT_DIR [N]
OUT_DIR/NAME.jsonl: a header {"name", "template_file", "bos", "eos", "family", "tokenizer"}, then
cases {"system", "turns", "ids"}. User turns are Cyrillic, system Hebrew, assistant Greek, so the C
test can tell from the bytes under each token which side of the mask it belongs to.
Exit 77 when the oracle cannot run.
"""
import json
import os
import random
import subprocess
import sys
import zlib


def main():
    testdata, source, out = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    maker = os.path.join(source, "scripts", "reference", "make_tokenizers.py")
    if not os.path.isfile(maker):
        print("SKIP: scripts/reference/make_tokenizers.py not found")
        return 77
    try:
        from tokenizers import Tokenizer
        import transformers.utils.chat_template_utils as ctu
    except Exception as e:  # noqa: BLE001
        print(f"SKIP: tokenizers/transformers not importable: {e}")
        return 77
    toks = os.environ.get("QUARRY_TOKENIZER_CACHE") or os.path.join(out, "tokenizers")
    ct = os.path.join(testdata, "chat_templates")
    ref = os.path.join(source, "scripts", "reference", "chat_templates")
    L3 = ("<|begin_of_text|>", "<|eot_id|>")
    S = ("<s>", "</s>")
    combos = [
        ("llama3.1", os.path.join(ct, "meta-llama-Llama-3.1-8B-Instruct.jinja"), L3, "llama3.1", "llama3"),
        ("llama3.0", os.path.join(ref, "meta-llama-Meta-Llama-3-8B-Instruct.jinja"), L3, "llama3", "llama3"),
        ("llama2", os.path.join(ref, "meta-llama-Llama-2-7b-chat-hf.jinja"), S, "llama2", "llama2"),
        ("qwen2.5", os.path.join(ct, "Qwen-Qwen2.5-7B-Instruct.jinja"), ("", "<|im_end|>"), "chatml", "qwen2"),
        ("mistral-v1-spm", os.path.join(ct, "mistral", "v1_spm.jinja"), S, "mistral-v1-spm", "mistral1"),
        ("mistral-v3-spm", os.path.join(ct, "mistral", "v3_spm.jinja"), S, "mistral-v3-spm", "mistral3"),
        ("mistral-hf", os.path.join(ref, "mistralai-Mistral-7B-Instruct-v0.3.jinja"), S, "mistral-hf", "mistral3"),
        ("phi3.5", os.path.join(ct, "microsoft-Phi-3.5-mini-instruct.jinja"), ("<s>", "<|endoftext|>"), "phi3.5",
         "phi3"),
        ("qwen3", os.path.join(ct, "Qwen-Qwen3-0.6B.jinja"), ("", "<|im_end|>"), "qwen3", "qwen3"),
    ]
    # make_tokenizers.py rebuilds a cache older than itself; a cache missing a file is rebuilt too.
    done = os.path.join(toks, "phi3.json")
    if (not os.path.isfile(done) or os.path.getmtime(done) < os.path.getmtime(maker) or
            any(not os.path.isfile(os.path.join(toks, c[4] + ".json")) for c in combos)):
        rc = subprocess.run([sys.executable, maker, testdata, toks]).returncode
        if rc:
            return rc
    os.makedirs(out, exist_ok=True)
    for name, path, (bos, eos), family, tokname in combos:
        tpl = open(path, encoding="utf-8").read()
        tokpath = os.path.join(toks, tokname + ".json")
        tok = Tokenizer.from_file(tokpath)
        probe_with = tok.encode("a", add_special_tokens=True).ids
        probe_without = tok.encode("a", add_special_tokens=False).ids
        bos_id = probe_with[0] if len(probe_with) == len(probe_without) + 1 else None
        rng = random.Random(zlib.crc32(name.encode()))
        with open(os.path.join(out, name + ".jsonl"), "w", encoding="utf-8") as f:
            f.write(json.dumps({"name": name, "template_file": path, "bos": bos, "eos": eos, "family": family,
                                "tokenizer": tokpath}) + "\n")
            written = 0
            while written < n:
                system, turns = conversation(rng)
                msgs = ([{"role": "system", "content": system}] if system is not None else [])
                msgs += [{"role": r, "content": t} for r, t in turns]
                try:
                    text = ctu.render_jinja_template(conversations=[msgs], chat_template=tpl, bos_token=bos,
                                                     eos_token=eos, add_generation_prompt=False)[0][0]
                except Exception:  # noqa: BLE001 - the template refuses: not a mask case
                    continue
                ids = tok.encode(text, add_special_tokens=False).ids
                if bos_id is not None and not (bos and text.startswith(bos)):
                    ids = [bos_id] + ids
                f.write(json.dumps({"system": system, "turns": turns, "ids": ids}, ensure_ascii=False) + "\n")
                written += 1
    print(f"wrote {len(combos)} x {n} mask cases to {out}")
    return 0


USER = ["привет", "мир", "как", "дела", "ёж", "Щука"]
SYSTEM = ["שלום", "עולם", "מערכת"]
ASSISTANT = ["αλφα", "βήτα", "γάμμα", "Ωμέγα", "δ"]
SPACES = [" ", " ", " ", "\n", "  ", "\n\n", "\t"]


def words(rng, pool):
    s = "".join(rng.choice(pool) + rng.choice(SPACES) for _ in range(rng.randint(1, 10)))
    s = s.rstrip() if rng.random() < 0.7 else s
    return (rng.choice(SPACES) + s) if rng.random() < 0.2 else s


def conversation(rng):
    system = words(rng, SYSTEM) if rng.random() < 0.5 else None
    n = rng.randint(1, 4) * 2   # records end with an assistant turn
    return system, [["user", words(rng, USER)] if i % 2 == 0 else ["assistant", words(rng, ASSISTANT)]
                    for i in range(n)]


if __name__ == "__main__":
    sys.exit(main())
