#!/usr/bin/env python3
"""Oracle for tests/chat: renders generated conversations with the official chat templates through
transformers' own jinja2 rendering (render_jinja_template: ImmutableSandboxedEnvironment with
trim_blocks, lstrip_blocks, raise_exception, strftime_now) and writes them for the C test.

usage: gen_chat_cases.py TESTDATA SOURCE_DIR OUT_DIR [N]
OUT_DIR/cases/NAME.jsonl: a header line {"name", "template_file", "bos", "eos", "family"}, then
one case per line {"system": str|null, "turns": [[role, text], ...], "date": str|null,
"now": int|null, "text": str|null, "error": str|null}.
OUT_DIR/models/*: model directories for the template loader (tokenizer_config.json etc.).
Exit 77 when jinja2/transformers or the test data are missing.
"""
import datetime as _dt
import json
import os
import random
import sys
import zlib


def main():
    testdata, source, out = sys.argv[1], sys.argv[2], sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    ct = os.path.join(testdata, "chat_templates")
    if not os.path.isdir(ct):
        print("SKIP: ../shared/testdata/chat_templates not found")
        return 77
    try:
        import transformers.utils.chat_template_utils as ctu
    except Exception as e:  # noqa: BLE001 - any import failure means no oracle
        print(f"SKIP: transformers/jinja2 not importable: {e}")
        return 77

    # strftime_now reads the module's datetime.now(): pin it per case.
    pinned = {"ts": 0}

    class PinnedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return _dt.datetime.fromtimestamp(pinned["ts"], tz)

    ctu.datetime = PinnedDatetime

    ref = os.path.join(source, "scripts", "reference", "chat_templates")
    mis = os.path.join(ct, "mistral")
    L3 = ("<|begin_of_text|>", "<|eot_id|>")
    S = ("<s>", "</s>")
    phi3_cfg = json.load(open(os.path.join(testdata, "tokenizers", "phi3", "tokenizer_config.json")))
    qwen_cfg = json.load(open(os.path.join(ct, "qwen2.5-tokenizer_config.json")))
    templates = [
        ("llama3.1", os.path.join(ct, "meta-llama-Llama-3.1-8B-Instruct.jinja"), L3, "llama3.1"),
        ("llama3.2", os.path.join(ct, "meta-llama-Llama-3.2-3B-Instruct.jinja"), L3, "llama3.2"),
        ("llama3.3", os.path.join(ct, "meta-llama-Llama-3.3-70B-Instruct.jinja"), L3, "llama3.1"),
        ("llama3.0", os.path.join(ref, "meta-llama-Meta-Llama-3-8B-Instruct.jinja"), L3, "llama3"),
        ("llama2", os.path.join(ref, "meta-llama-Llama-2-7b-chat-hf.jinja"), S, "llama2"),
        ("qwen2.5", os.path.join(ct, "Qwen-Qwen2.5-7B-Instruct.jinja"), ("", "<|im_end|>"), "chatml"),
        ("qwen2", os.path.join(ref, "Qwen-Qwen2-7B-Instruct.jinja"), ("", "<|im_end|>"), "chatml"),
        ("qwen3", os.path.join(ct, "Qwen-Qwen3-0.6B.jinja"), ("", "<|im_end|>"), "qwen3"),
        ("phi3.5", os.path.join(ct, "microsoft-Phi-3.5-mini-instruct.jinja"), ("<s>", "<|endoftext|>"), "phi3.5"),
        ("phi3", None, ("<s>", "<|endoftext|>"), "phi3"),
        ("mistral-v1", os.path.join(mis, "v1.jinja"), S, "mistral-v1"),
        ("mistral-v1-spm", os.path.join(mis, "v1_spm.jinja"), S, "mistral-v1-spm"),
        ("mistral-v2-spm", os.path.join(mis, "v2_spm.jinja"), S, "mistral-v3-spm"),
        ("mistral-v3", os.path.join(mis, "v3.jinja"), S, "mistral-v3"),
        ("mistral-v3-spm", os.path.join(mis, "v3_spm.jinja"), S, "mistral-v3-spm"),
        ("mistral-nemo", os.path.join(ct, "mistralai-Mistral-Nemo-Instruct-2407.jinja"), S, "mistral-nemo"),
        ("mistral-hf", os.path.join(ref, "mistralai-Mistral-7B-Instruct-v0.3.jinja"), S, "mistral-hf"),
        ("mistral-hf-lastuser", None, S, "mistral-hf-lastuser"),
        ("mistral-legacy", os.path.join(ref, "mistralai-Mixtral-8x7B-Instruct-v0.1.jinja"), S, "mistral-legacy"),
        ("harmony", os.path.join(ct, "openai-gpt-oss-120b.jinja"), ("<|startoftext|>", "<|return|>"), "harmony"),
    ]
    os.makedirs(os.path.join(out, "cases"), exist_ok=True)
    for name, path, (bos, eos), family in templates:
        if path is None:
            if name == "phi3":   # Phi-3-mini's template lives in its tokenizer_config.json
                text = phi3_cfg["chat_template"]
            else:   # the later Mistral v0.3 revision: system in user turns equal to the last one
                with open(os.path.join(ref, "mistralai-Mistral-7B-Instruct-v0.3.jinja"), encoding="utf-8") as f:
                    text = f.read()
                old = "{%- if loop.last and system_message is defined %}"
                assert old in text
                text = text.replace(old, "{%- if (message == user_messages[-1]) and system_message is defined %}")
            path = os.path.join(out, "cases", name + ".jinja")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        with open(path, encoding="utf-8") as f:
            tpl = f.read()
        rng = random.Random(zlib.crc32(name.encode()))
        with open(os.path.join(out, "cases", name + ".jsonl"), "w", encoding="utf-8") as f:
            f.write(json.dumps({"name": name, "template_file": path, "bos": bos, "eos": eos,
                                "family": family}) + "\n")
            for _ in range(n):
                system, turns = conversation(rng)
                if family == "qwen3":
                    thinking(rng, turns)
                if family == "harmony":
                    channel_tags(rng, turns)
                date = rng.choice([None, None, "02 Feb 2025", " 7 Oct 2031"])
                pinned["ts"] = rng.randrange(0, 4_000_000_000)
                if family == "harmony":
                    # The template has no date variable, only strftime_now("%Y-%m-%d"): quarry's
                    # pinned date (--template-date) is given here as the same day of the clock.
                    local = _dt.datetime.fromtimestamp(pinned["ts"]).strftime("%Y-%m-%d")
                    date = rng.choice([None, local])
                msgs = ([{"role": "system", "content": system}] if system is not None else [])
                msgs += [{"role": r, "content": t} for r, t in turns]
                kw = {"bos_token": bos, "eos_token": eos, "unk_token": "<unk>"}
                if date is not None:
                    kw["date_string"] = date
                text, error = None, None
                try:
                    rendered, _ = ctu.render_jinja_template(conversations=[msgs], chat_template=tpl,
                                                            add_generation_prompt=False, **kw)
                    text = rendered[0]
                except Exception as e:  # noqa: BLE001 - the template's raise_exception
                    error = f"{type(e).__name__}: {e}"
                f.write(json.dumps({"system": system, "turns": turns, "date": date, "now": pinned["ts"],
                                    "text": text, "error": error}, ensure_ascii=False) + "\n")

    # Model directories for chat_template_load.
    def model(d, files):
        p = os.path.join(out, "models", d)
        os.makedirs(p, exist_ok=True)
        for k in os.listdir(p):
            os.remove(os.path.join(p, k))
        for fn, content in files.items():
            with open(os.path.join(p, fn), "w", encoding="utf-8") as f:
                f.write(content if isinstance(content, str) else json.dumps(content))

    model("qwen", {"tokenizer_config.json": qwen_cfg})
    model("phi3", {"tokenizer_config.json": phi3_cfg})
    with open(os.path.join(ct, "meta-llama-Llama-3.1-8B-Instruct.jinja"), encoding="utf-8") as f:
        l31 = f.read()
    model("llama31-two-sources", {"chat_template.jinja": l31,
                                  "tokenizer_config.json": {"bos_token": "<|begin_of_text|>",
                                                            "eos_token": "<|eot_id|>",
                                                            "chat_template": "{{ 'ChatML?' }}<|im_start|><|im_end|>"}})
    model("list", {"tokenizer_config.json": {"bos_token": {"content": "<s>", "lstrip": False}, "eos_token": "</s>",
                                             "chat_template": [{"name": "tool_use", "template": "x"},
                                                               {"name": "default",
                                                                "template": open(os.path.join(mis, "v3.jinja")).read()}]}})
    model("json", {"chat_template.json": {"chat_template": open(os.path.join(ref, "meta-llama-Llama-2-7b-chat-hf.jinja")).read()},
                   "tokenizer_config.json": {"bos_token": "<s>", "eos_token": "</s>"}})
    model("base", {"tokenizer_config.json": {"bos_token": "<s>", "eos_token": "</s>"}})
    with open(os.path.join(ct, "Qwen-Qwen3-0.6B.jinja"), encoding="utf-8") as f:
        q3 = f.read()
    model("qwen3", {"tokenizer_config.json": {"bos_token": None, "eos_token": "<|im_end|>", "chat_template": q3}})
    # Qwen3-*-Thinking-2507's generation prompt always opens <think>: not the qwen3 family.
    gen = "{{- '<|im_start|>assistant\\n' }}\n    {%- if enable_thinking is defined and enable_thinking is false %}"
    assert gen in q3
    model("qwen3-thinking", {"tokenizer_config.json": {"eos_token": "<|im_end|>", "chat_template": q3.replace(
        gen, "{{- '<|im_start|>assistant\\n<think>\\n' }}\n    {%- if false %}")}})
    # Mixtral-8x7B-v0.1 (a base model): its real tokenizer_config.json has no template.
    with open(os.path.join(testdata, "tokenizers", "mixtral", "tokenizer_config.json"), encoding="utf-8") as f:
        model("mixtral", {"tokenizer_config.json": f.read()})
    model("unknown", {"tokenizer_config.json": {"eos_token": "</s>",
                                                "chat_template": "{% for m in messages %}### {{ m.role }}: {{ m.content }}\n{% endfor %}"}})
    print(f"wrote {len(templates)} x {n} cases to {out}")
    return 0


WORDS = ["hello", "world", "the", "quick", "brown", "fox", "Bedrock", "fine-tune", "x", "42", "3.14",
         "naïve", "café", "Ünïcödé", "日本語", "中文字符", "한국어", "العربية", "हिन्दी", "🙂", "👩‍👩‍👧",
         "e\u0301", "[INST]", "<s>", "</s>", "<|eot_id|>", "{{ x }}", "{% if %}", "'quote'", '"dq"', "\\n",
         "back\\slash", "tab\tin", "Ω≈ç√∫", "ℌ𝔢𝔩𝔩𝔬"]
SPACES = [" ", "  ", "\n", "\n\n", "\t", "\r\n", "\u00a0", "\u3000", "\u2028", "\u2009", "\x1f", "\x85",
          "\u200b", "\ufeff", " \n ", "\u202f"]


def content(rng):
    k = rng.random()
    if k < 0.04:
        return ""
    if k < 0.07:
        return "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 3)))
    words = []
    for _ in range(rng.randint(1, 14)):
        words.append(rng.choice(WORDS))
        words.append(rng.choice([" ", " ", " ", "\n", ", ", rng.choice(SPACES)]))
    s = "".join(words[:-1])
    if rng.random() < 0.3:
        s = "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 3))) + s
    if rng.random() < 0.3:
        s = s + "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 3)))
    return s


def conversation(rng):
    r = rng.random()
    system = None if r < 0.45 else ("" if r < 0.52 else content(rng))
    nturns = rng.randint(1, 8)
    roles = [("user", "assistant")[i % 2] for i in range(nturns)]
    if rng.random() < 0.06:   # not alternating: templates merge, raise or render as is
        i = rng.randrange(nturns)
        roles[i] = "assistant" if roles[i] == "user" else "user"
    turns = [[role, content(rng)] for role in roles]
    users = [t for t in turns if t[0] == "user"]
    if len(users) > 1 and rng.random() < 0.1:   # a repeated user turn
        rng.choice(users[:-1])[1] = users[-1][1]
    return system, turns


def channel_tags(rng, turns):
    """gpt-oss's template raises when an assistant turn carries harmony channel tags."""
    for t in turns:
        if rng.random() < 0.02:
            t[1] += rng.choice(["<|channel|>final<|message|>", "<|channel|>analysis<|message|>", "<|channel|>"])


def thinking(rng, turns):
    """Qwen3's template splits assistant content at <think>/</think> and skips user turns that are
    <tool_response>s when it looks for the last query: put those shapes into some turns."""
    nl = ["", "", "\n", "\n\n", " ", "\n \n"]
    for t in turns:
        k = rng.random()
        if t[0] == "user":
            if k < 0.12:
                t[1] = "<tool_response>" + rng.choice(nl) + t[1] + rng.choice(nl) + "</tool_response>"
            elif k < 0.16:
                t[1] = "<tool_response>" + t[1]
            continue
        if k < 0.3:
            t[1] = rng.choice(["<think>", "", "x<think>"]) + rng.choice(nl) + content(rng) + rng.choice(nl) + \
                "</think>" + rng.choice(nl) + t[1]
        elif k < 0.38:
            t[1] = "<think>" + rng.choice(nl) + "</think>" + rng.choice(nl) + t[1]
        elif k < 0.45:
            t[1] = t[1] + rng.choice(["</think>", "<think>a</think>b</think>\n", "<think>\n\n<think>\nr\n</think>"]) + \
                rng.choice(nl) + content(rng)


if __name__ == "__main__":
    sys.exit(main())
