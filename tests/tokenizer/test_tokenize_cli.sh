#!/usr/bin/env bash
# `quarry tokenize`: JSON strings in, id arrays out (and back with --decode); a bad line is an
# error that names the line; a tokenizer.json with an unsupported component is refused by name.
set -u
Q=${QUARRY_BIN:?QUARRY_BIN not set}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# A byte-level BPE small enough to check by hand: "hi" and " hi" merge, the rest is bytes.
python_free_json() {
cat <<'JSON'
{"version":"1.0","truncation":null,"padding":null,
 "added_tokens":[{"id":0,"content":"<|bos|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
 "normalizer":null,
 "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},
 "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|bos|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"pair":[],
   "special_tokens":{"<|bos|>":{"id":"<|bos|>","ids":[0],"tokens":["<|bos|>"]}}},
 "decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},
 "model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"","fuse_unk":false,"byte_fallback":false,"ignore_merges":false,
   "vocab":{"<|bos|>":0,"h":1,"i":2,"Ġ":3,"hi":4,"Ġhi":5,"Ċ":6,"!":7,"Ã":8,"©":9},
   "merges":["h i",["Ġ","hi"]]}}
JSON
}
python_free_json > "$D/tokenizer.json"

out=$(printf '%s\n' '"hi hi"' '"hi\n!"' '"hi<|bos|>"' '"é"' | "$Q" tokenize --tokenizer "$D/tokenizer.json")
want=$'[4, 5]\n[4, 6, 7]\n[4, 0]\n[8, 9]'
[ "$out" = "$want" ] || fail "encode: got [$out] want [$want]"

out=$(printf '"hi"\n' | "$Q" tokenize --model "$D" --add-special)
[ "$out" = "[0, 4]" ] || fail "--model DIR --add-special: got [$out]"

out=$(printf '"hi hi"\n' | "$Q" tokenize --tokenizer "$D/tokenizer.json" --offsets)
[ "$out" = '{"ids": [4, 5], "offsets": [[0, 2], [2, 5]]}' ] || fail "--offsets: got [$out]"

out=$(printf '[4, 5]\n[4, 6, 7]\n[0, 8, 9]\n' | "$Q" tokenize --tokenizer "$D/tokenizer.json" --decode)
want=$'"hi hi"\n"hi\\n!"\n"<|bos|>é"'
[ "$out" = "$want" ] || fail "decode: got [$out] want [$want]"
out=$(printf '[0, 4]\n' | "$Q" tokenize --tokenizer "$D/tokenizer.json" --decode --skip-special)
[ "$out" = '"hi"' ] || fail "decode --skip-special: got [$out]"

# Round trip through the CLI.
printf '%s\n' '"hi hi\nhi!"' '" hi "' '""' > "$D/in.jsonl"
"$Q" tokenize --tokenizer "$D/tokenizer.json" < "$D/in.jsonl" | "$Q" tokenize --tokenizer "$D/tokenizer.json" --decode > "$D/rt.jsonl"
cmp -s "$D/in.jsonl" "$D/rt.jsonl" || fail "decode(encode(x)) != x: $(cat "$D/rt.jsonl")"

# Bad lines name their line; exit status 1.
err=$(printf '"hi"\nhi\n' | "$Q" tokenize --tokenizer "$D/tokenizer.json" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && [[ "$err" == *"stdin:2:"* ]] || fail "non-JSON line: rc=$rc err=[$err]"
err=$(printf '"\\ud800"\n' | "$Q" tokenize --tokenizer "$D/tokenizer.json" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && [[ "$err" == *"stdin:1:"*"surrogate"* ]] || fail "lone surrogate: rc=$rc err=[$err]"
err=$(printf '"\xff"\n' | "$Q" tokenize --tokenizer "$D/tokenizer.json" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && [[ "$err" == *"stdin:1:"*"UTF-8"* ]] || fail "invalid UTF-8: rc=$rc err=[$err]"
err=$(printf '[4]\n[4, 99]\n' | "$Q" tokenize --tokenizer "$D/tokenizer.json" --decode 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && [[ "$err" == *"stdin:2:"* ]] || fail "unknown id: rc=$rc err=[$err]"
err=$(printf '[4, "x"]\n' | "$Q" tokenize --tokenizer "$D/tokenizer.json" --decode 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && [[ "$err" == *"stdin:1:"* ]] || fail "non-integer id: rc=$rc err=[$err]"

# Usage and refusals.
"$Q" tokenize < /dev/null > /dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "no --model/--tokenizer: rc=$rc, want 2"
sed 's/"type":"ByteLevel","add_prefix_space":false/"type":"BertPreTokenizer","add_prefix_space":false/' "$D/tokenizer.json" > "$D/bert.json"
err=$(printf '"hi"\n' | "$Q" tokenize --tokenizer "$D/bert.json" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && [[ "$err" == *"BertPreTokenizer"* ]] || fail "unsupported pre_tokenizer: rc=$rc err=[$err]"

if [ $fails -ne 0 ]; then echo "test_tokenize_cli: $fails failure(s)" >&2; exit 1; fi
echo "test_tokenize_cli: all checks passed"
