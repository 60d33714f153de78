#!/usr/bin/env python3
"""The oracle for tests/tokenizer: generates the test corpus (N short strings + 300 long ones) and writes what HF `tokenizers`
makes of it, for the C test to compare against.

usage: hf_oracle.py corpus OUT.jsonl [N]        write N (default 20000) generated strings
       hf_oracle.py expect TOKENIZER.json CORPUS.jsonl OUT.jsonl
           one JSON line per string: [ids, ids_with_special, offsets (bytes, flat), decode(ids),
           decode(ids_with_special, skip_special_tokens=True)]
       hf_oracle.py vectors TOKENIZER.json INP OUT.jsonl   the same for a ggml .inp file
"""
import json
import random
import sys

FRAGMENTS = [
    # scripts
    "日本語の文章です。", "中文测试，你好世界！", "한국어 텍스트입니다", "\u1100\u1161\u11a8 \u1112\u1161\u11ab",
    "مرحبا بالعالم", "שָׁלוֹם עוֹלָם", "नमस्ते दुनिया", "क्षत्रिय", "สวัสดีครับ", "Привет, мир!", "Γειά σου Κόσμε",
    "Äpfel über Straße", "ﬁancé naïve café", "e\u0301 a\u0308\u0323 o\u0302\u0300", "\u0b47\u0b3e \u0d46\u0d3e",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334a\u0317l\u0335g\u0321o\u0360",
    # emoji
    "👨‍👩‍👧‍👦", "🏳️‍🌈", "👍🏽", "🇯🇵🇺🇸", "🦙.cpp", "❤️‍🔥", "🧑🏿‍🚀", "😀😃😄😁",
    # code
    "def f(x):\n    return x**2  # square\n", "int main(void) { printf(\"%d\\n\", 42); }",
    '{"key": [1, 2.5, null], "b": true}', "<div class=\"a\">&amp;</div>", "for (i=0;i<n;++i){a[i]+=b[i];}",
    "SELECT * FROM t WHERE x >= 10;", "x = y if a else b", "```python\nimport os\n```", "$ ls -la ~/",
    # contractions
    "don't", "DON'T", "Don'T", "I'M", "i'm", "we'Ve", "WE'VE", "they'LL", "they'll", "it's", "IT'S",
    "she'd", "SHE'D", "you're", "YOU'RE", "'s", "''", "'t'", "O'Neil", "rock'n'roll",
    # special-token text, in and out of words
    "<|eot_id|>", "abc<|eot_id|>def", "<s>", "</s>", "x<s>y", "a</s>b", "[INST]", "[/INST]",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>",
    "<think>\n\n</think>\n\n", "a<think>b</think>c", "<tool_call>\n{}", "<tool_response>x</tool_response>", "<|fim_pad|>",
    "<|begin_of_text|>", "<|start_header_id|>user<|end_header_id|>", "<|eot_id", "<<s>>", "<unk>",
    "▁", "▁▁hello", "<0x41>", "<|reserved_special_token_5|>", " <|end|> ", "[control_8]",
    # harmony (gpt-oss) tokens, and what o200k's pattern treats apart: case-insensitive
    # contractions (with Unicode case folding: long s, Kelvin sign), title-case and modifier
    # letters, upper runs before lower, "/" after punctuation
    "<|start|>assistant<|channel|>final<|message|>Hi<|return|>", "<|start|>user<|message|>x<|end|>",
    "<|call|>", "<|constrain|>json", "<|endofprompt|>", "<|reserved_200000|>", "<|startoftext|>",
    "DOESN'T IT'S", "WE'RE'VE", "it'ſ", "x'K", "ǅemal ǈubav ǲ", "ʰʲʷ mod",
    "HTTPServer XMLHttpRequest", "a/b//c", "!!/\n//", "x.../\r\n", "İstanbul ı", "ΣΑΣ σας",
    # added-token flags (tests' variants): single_word, lstrip/rstrip, normalized
    "hello", "sayhello", "hello_x", "hello!", " <mask> ", "a  <mask>b", "x\t[SEP] y", "world", "worldwide",
    "don't stop", "idon't", "<|im_end|>\n\n", "12345678 and 1234",
    # misc
    "Hello world", " Hello World!", "3.14159", "1,000,000", "$5.99", "100%", "e-mail@example.com",
    "https://example.com/a?b=c&d=e", "¡Hola!", "½ ¼ ¾", "№ ™ © ®", "\u00a0nbsp\u00a0", "\u3000全角",
    "tab\tseparated\tvalues", "\u200b\u200c\u200d", "\ufeffbom", "\u2028\u2029", "\x07\x1b[0m",
]

WHITESPACE = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", "\r\n\r\n", " \n ", "\n ", " \t ",
              "\u00a0", "\u3000", "          ", "\n\n\n\n", " \r\n\t"]

BLOCKS = [(0x20, 0x7e), (0xa0, 0x24f), (0x300, 0x36f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff),
          (0x900, 0x97f), (0xe00, 0xe7f), (0x1100, 0x11ff), (0x2000, 0x206f), (0x3040, 0x30ff),
          (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0xe000, 0xe0ff), (0xfe00, 0xfe0f), (0xff00, 0xffef),
          (0x1f300, 0x1f6ff), (0x1f900, 0x1f9ff), (0x10000, 0x1007f), (0x1, 0x1f)]


def number(rng):
    n = rng.randint(1, 40)
    s = "".join(rng.choice("0123456789") for _ in range(n))
    r = rng.random()
    if r < 0.1:
        s = "-" + s
    elif r < 0.2 and n > 2:
        k = rng.randint(1, n - 1)
        s = s[:k] + "." + s[k:]
    elif r < 0.3:
        s = f"{int(s):,}"
    return s


def random_chars(rng):
    lo, hi = rng.choice(BLOCKS)
    return "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 12)))


def word(rng):
    w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 12)))
    r = rng.random()
    return w.upper() if r < 0.15 else w.capitalize() if r < 0.4 else w


def fragment(rng):
    r = rng.random()
    if r < 0.35:
        return rng.choice(FRAGMENTS)
    if r < 0.5:
        return number(rng)
    if r < 0.65:
        return random_chars(rng)
    if r < 0.9:
        return " ".join(word(rng) for _ in range(rng.randint(1, 6)))
    return rng.choice(WHITESPACE)


def make_corpus(n):
    rng = random.Random(20240601)
    out = ["", " ", "  ", "\n", "\t", "a", "Hello", " Hello", "Hello ", "<s>", "</s>", "<|eot_id|>"]
    while len(out) < n:
        parts = []
        for _ in range(rng.randint(1, 8)):
            parts.append(fragment(rng))
            if rng.random() < 0.6:
                parts.append(rng.choice(WHITESPACE) if rng.random() < 0.4 else " ")
        s = "".join(parts)
        r = rng.random()
        if r < 0.1:
            s = " " + s
        elif r < 0.2:
            s = s + " "
        # Special-token text glued into a word
        if rng.random() < 0.05:
            k = rng.randint(0, len(s))
            s = s[:k] + rng.choice(["<s>", "</s>", "<|eot_id|>", "<|im_end|>", "<|endoftext|>", "[INST]", "<|end|>"]) + s[k:]
        out.append(s)
    out = out[:n]
    # Long documents (SentencePiece-style pipelines give BPE whole paragraphs as one word).
    for _ in range(300):
        out.append("".join(fragment(rng) + rng.choice(WHITESPACE + [" "] * 10) for _ in range(rng.randint(20, 60))))
    return out


def byte_offsets(s, offsets):
    pos = [0]
    for ch in s:
        pos.append(pos[-1] + len(ch.encode("utf-8")))
    flat = []
    for a, b in offsets:
        flat += [pos[a], pos[b]]
    return flat


def expect(tok_path, texts, out_path):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tok_path)
    plain = tok.encode_batch(texts, add_special_tokens=False)
    special = tok.encode_batch(texts, add_special_tokens=True)
    dec = tok.decode_batch([e.ids for e in plain], skip_special_tokens=False)
    dec_skip = tok.decode_batch([e.ids for e in special], skip_special_tokens=True)
    with open(out_path, "w", encoding="utf-8") as f:
        for s, p, sp, d, ds in zip(texts, plain, special, dec, dec_skip):
            row = [p.ids, sp.ids, byte_offsets(s, p.offsets), d, ds]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "corpus":
        n = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
        with open(sys.argv[2], "w", encoding="utf-8") as f:
            for s in make_corpus(n):
                f.write(json.dumps(s, ensure_ascii=False) + "\n")
    elif cmd == "expect":
        with open(sys.argv[3], encoding="utf-8") as f:
            texts = [json.loads(l) for l in f]
        expect(sys.argv[2], texts, sys.argv[4])
    elif cmd == "vectors":
        with open(sys.argv[3], encoding="utf-8") as f:
            texts = f.read().split("\n__ggml_vocab_test__\n")[:-1]
        expect(sys.argv[2], texts, sys.argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
