#!/usr/bin/env python3
"""Writes the tokenizer benchmark corpus: JSONL, one document (~2-3 KB) per line, MB total
(default 50): mostly English prose, then code, other scripts, numbers and whitespace runs
(the test corpus's fragments). Deterministic.   usage: tokenizer_corpus.py OUT.jsonl [MB]"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "tokenizer"))
import hf_oracle  # noqa: E402

WORDS = ("the of and to in a is that for it as was with be by on not he I this are or his from at which but "
         "have an they you were her she there one all we their been has would more when if will its who so no "
         "model training data token language learning fine-tune weights gradient loss batch sequence "
         "company customer report quarter revenue growth market product service team year time people "
         "don't can't it's we're they'll I've she'd").split()


def prose(rng):
    out = []
    for _ in range(rng.randint(3, 8)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 24))]
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + rng.choice([".", ".", ".", "?", "!", ":"]))
    return " ".join(out)


def doc(rng):
    parts = []
    while sum(len(p) for p in parts) < 2500:
        r = rng.random()
        parts.append(prose(rng) if r < 0.7 else hf_oracle.fragment(rng))
        parts.append(rng.choice(["\n\n", "\n", " ", " "]))
    return "".join(parts)


def main():
    out = sys.argv[1]
    mb = float(sys.argv[2]) if len(sys.argv) > 2 else 50
    rng = random.Random(7)
    total = 0
    with open(out, "w", encoding="utf-8") as f:
        while total < mb * 1e6:
            d = doc(rng)
            total += len(d.encode("utf-8"))
            f.write(json.dumps(d, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
