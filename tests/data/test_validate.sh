#!/usr/bin/env bash
# quarry validate: every Bedrock rule with a passing and a failing record (exit code, line,
# message), the real AWS sample files, the summary checked against Python's json module,
# --json, --max-errors, --max-record-bytes, --base-model limits, the scan modes.
set -u
Q=${QUARRY_BIN:?}
PY=${QUARRY_PYTHON:-python3}
[ -x "$PY" ] || PY=python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
n=0

# expect NAME RC PATTERN FILE [ARGS...]: runs validate on FILE, checks the exit code and that
# stderr+stdout contain PATTERN (an extended regex; "" = no check).
expect() {
  local name=$1 rc=$2 pat=$3 file=$4; shift 4
  local out got
  out=$("$Q" validate "$file" "$@" 2>&1); got=$?
  n=$((n + 1))
  if [ "$got" != "$rc" ]; then echo "FAIL $name: exit $got, want $rc"; echo "$out" | head -5 | sed 's/^/    /'; fail=1; return; fi
  if [ -n "$pat" ] && ! grep -Eq -- "$pat" <<<"$out"; then
    echo "FAIL $name: output lacks /$pat/"; echo "$out" | head -5 | sed 's/^/    /'; fail=1
  fi
}
# rec NAME RC PATTERN JSONL-TEXT [ARGS...]: the same with a file made from printf-style text.
rec() {
  local name=$1 rc=$2 pat=$3 text=$4; shift 4
  printf "$text" > "$T/$name.jsonl"
  expect "$name" "$rc" "$pat" "$T/$name.jsonl" "$@"
}
MODE=${1:-rules}
if [ "$MODE" = rules ]; then

PC='{"prompt": "What is 2+2?", "completion": "4"}'
MS='{"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}'
CV='{"schemaVersion": "bedrock-conversation-2024", "system": [{"text": "Be brief."}], "messages": [{"role": "user", "content": [{"text": "Hi"}]}, {"role": "assistant", "content": [{"text": "Hel"}, {"text": "lo"}]}]}'
CP='{"input": "Some domain text."}'

# formats
rec pc_ok 0 "prompt-completion: 1 records" "$PC\n"
rec messages_ok 0 "messages: 1 records" "$MS\n"
rec converse_ok 0 "converse: 1 records" "$CV\n"
rec cpt_ok 0 "continued-pretraining: 1 records" "$CP\n"
rec multiturn_ok 0 "2 user, 2 assistant" '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}\n'
rec mixed_bad 1 "mixed_bad.jsonl:3: error: this record is messages, but the file's records are prompt-completion \(since line 1\)" "$PC\n$PC\n$MS\n$PC\n"
rec force_format_ok 0 "" "$PC\n" --format prompt-completion
rec force_format_bad 1 "force_format_bad.jsonl:1: error: the record looks like prompt-completion, not messages" "$PC\n" --format messages
rec no_format_bad 1 ":1: error: no Bedrock format: .*the record's keys: \"text\"" '{"text": "x"}\n'

# JSON and UTF-8
rec json_bad 1 "json_bad.jsonl:2:16: error: invalid JSON: expected ',' or '}'" "$PC\n{\"prompt\": \"a\" \"completion\": \"b\"}\n"
rec json_col_utf8 1 ":1:17: error: invalid JSON" '{"prompt": "éé" x}\n'
rec trailing_comma_bad 1 ":1:35: error: invalid JSON: trailing comma" '{"prompt": "a", "completion": "b",}\n'
rec utf8_ok 0 "" '{"prompt": "caf\xc3\xa9 \\u00e9 \\ud83d\\ude00", "completion": "\xe6\x9d\xb1"}\n'
rec utf8_bad 1 ":1:13: error: invalid JSON: invalid UTF-8 \(byte 0xFF\)" '{"prompt": "\xff", "completion": "b"}\n'
rec surrogate_bad 1 "lone UTF-16 high surrogate" '{"prompt": "\\ud83d", "completion": "b"}\n'
rec not_object_bad 1 ":1: error: the record is an array; each line must be a JSON object" '[1, 2]\n'
rec dup_same_warn 0 ":1: warning: duplicate key \"prompt\" in the record \(same value\)" '{"prompt": "a", "prompt": "a", "completion": "b"}\n'
rec dup_diff_bad 1 ":1: error: duplicate key \"prompt\" in the record with a different value" '{"prompt": "a", "prompt": "z", "completion": "b"}\n'
rec extra_key_bad 1 ":1: error: unknown key \"id\" in the record; no Bedrock format has it" '{"id": 7, "prompt": "a", "completion": "b"}\n'
rec extra_key_allowed 0 ":1: warning: unknown key \"id\" in the record \(ignored: --allow-extra-keys\)" '{"id": 7, "prompt": "a", "completion": "b"}\n' --allow-extra-keys
rec extra_turn_key_bad 1 ":1: error: unknown key \"name\" in messages\[0\]" '{"messages": [{"role": "user", "content": "a", "name": "x"}, {"role": "assistant", "content": "b"}]}\n'

# lines
rec empty_line_bad 1 "empty_line_bad.jsonl:2: error: empty line" "$PC\n\n$PC\n"
rec blank_line_bad 1 "blank_line_bad.jsonl:2: error: whitespace-only line" "$PC\n   \t\n$PC\n"
rec trailing_newline_ok 0 "1 valid, 0 invalid" "$PC\n"
rec no_final_newline_ok 0 "2 valid, 0 invalid" "$PC\n$PC"
rec two_final_newlines_bad 1 ":2: error: empty line" "$PC\n\n"
rec crlf_ok 0 "2 valid, 0 invalid" "$PC\r\n$PC\r\n"
rec bom_warn 0 "bom_warn.jsonl:1: warning: the file starts with a UTF-8 byte order mark; quarry ignores it, but AWS's own dataset validators reject the file .*save it as UTF-8 without BOM" "\xef\xbb\xbf$PC\n"
# UTF-16/32 (Windows tools export JSONL so) is named, once, instead of a JSON error per line.
for enc in utf-16-le utf-16 utf-16-be utf-32; do
  "$PY" -c 'import sys; open(sys.argv[1], "wb").write((sys.argv[3] + "\n" + sys.argv[3] + "\n").encode(sys.argv[2]))' \
    "$T/wide_$enc.jsonl" "$enc" "$PC"
done
expect utf16le_bad 2 "wide_utf-16-le.jsonl: error: the file looks like UTF-16 \(LE\); save it as UTF-8" "$T/wide_utf-16-le.jsonl"
expect utf16bom_bad 2 "wide_utf-16.jsonl: error: the file looks like UTF-16 \(LE\); save it as UTF-8" "$T/wide_utf-16.jsonl"
expect utf16be_bad 2 "wide_utf-16-be.jsonl: error: the file looks like UTF-16 \(BE\)" "$T/wide_utf-16-be.jsonl"
expect utf32_bad 2 "error: the file looks like UTF-32 \(LE\)" "$T/wide_utf-32.jsonl"
rec empty_file_bad 1 "error: the file has no records" ""
rec oversized_bad 1 "oversized_bad.jsonl:2: error: the record is 1[0-9]{3} bytes, over the 200-byte limit" "$PC\n{\"prompt\": \"$(printf 'x%.0s' $(seq 1000))\", \"completion\": \"b\"}\n$PC\n" --max-record-bytes 200
expect oversized_continues 1 "2 valid, 1 invalid" "$T/oversized_bad.jsonl" --max-record-bytes 200

# messages rules
rec one_turn_bad 1 ":1: error: \"messages\" has 1 turn; a record needs at least" '{"messages": [{"role": "user", "content": "a"}]}\n'
rec first_assistant_bad 1 ":1: error: messages\[0\].role is \"assistant\"; the first turn must be \"user\"" '{"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]}\n'
rec last_user_bad 1 ":1: error: the last turn, messages\[2\], is \"user\"" '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}\n'
rec alternate_bad 1 ":1: error: messages\[1\].role is \"user\" after \"user\"; roles must alternate" '{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]}\n'
rec role_bad 1 ":1: error: messages\[0\].role is \"system\"; only \"user\" and \"assistant\"" '{"messages": [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]}\n'
rec empty_content_bad 1 ":1: error: messages\[1\].content is empty or only whitespace" '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": " \\n\\t\\u3000"}]}\n'
rec empty_system_bad 1 ":1: error: \"system\" is empty or only whitespace" '{"system": "  ", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
rec system_type_bad 1 ":1: error: \"system\" is a number; in this format it must be a string" '{"system": 5, "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n' --format messages
rec content_type_bad 1 ":1: error: messages\[1\].content is a number" '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": 5}]}\n'

# converse rules
rec schema_any_string_ok 0 "converse: 1 records" '{"schemaVersion": "tooluse-dataset-2024", "messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "assistant", "content": [{"text": "b"}]}]}\n'
rec schema_type_bad 1 ":1: error: \"schemaVersion\" is a number; it must be a string" '{"schemaVersion": 2024, "messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "assistant", "content": [{"text": "b"}]}]}\n'
rec image_block_bad 1 ":1: error: messages\[0\].content\[1\] is an image block; quarry trains text-only models" '{"messages": [{"role": "user", "content": [{"text": "a"}, {"image": {"format": "png"}}]}, {"role": "assistant", "content": [{"text": "b"}]}]}\n'
rec tool_block_bad 1 "is a toolUse block; quarry trains text-only models" '{"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "assistant", "content": [{"toolUse": {}}]}]}\n'
rec empty_blocks_bad 1 ":1: error: messages\[1\].content is empty or only whitespace" '{"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "assistant", "content": [{"text": " "}, {"text": ""}]}]}\n'
rec block_no_text_bad 1 ":1: error: messages\[1\].content\[0\] has no \"text\"" '{"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "assistant", "content": [{}]}]}\n'
rec conv_system_bad 1 ":1: error: system is a string; in this format it must be an array" '{"schemaVersion": "x", "system": "s", "messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "assistant", "content": [{"text": "b"}]}]}\n'

# prompt-completion and CPT rules
rec pc_missing_bad 1 ":1: error: the record has no \"completion\"" '{"prompt": "a"}\n'
rec pc_empty_bad 1 ":1: error: \"completion\" in the record is empty or only whitespace" '{"prompt": "a", "completion": "  "}\n'
rec pc_type_bad 1 ":1: error: \"prompt\" in the record is a number; it must be a string" '{"prompt": 1, "completion": "b"}\n'
rec cpt_empty_bad 1 ":1: error: \"input\" in the record is empty" '{"input": ""}\n'
rec cpt_type_bad 1 ":1: error: \"input\" in the record is null" '{"input": null}\n'

# base-model limits
for i in $(seq 100); do echo "$PC"; done > "$T/hundred.jsonl"
expect llama_count_ok 0 "base model: meta.llama3-1-8b-instruct-v1:0" "$T/hundred.jsonl" --base-model meta.llama3-1-8b-instruct-v1:0
head -99 "$T/hundred.jsonl" > "$T/ninetynine.jsonl"
expect llama_count_bad 1 "ninetynine.jsonl: error: 99 valid records; Meta Llama 3.1 8B Instruct needs at least 100" "$T/ninetynine.jsonl" --base-model meta.llama3-1-8b-instruct-v1:0:128k
expect count_not_enforced 0 "99 valid" "$T/ninetynine.jsonl"
for i in $(seq 31); do echo "$MS"; done > "$T/haiku31.jsonl"
expect haiku_count_bad 1 "31 valid records; Anthropic Claude 3 Haiku needs at least 32" "$T/haiku31.jsonl" --base-model anthropic.claude-3-haiku-20240307-v1:0
echo "$MS" >> "$T/haiku31.jsonl"
expect haiku_count_ok 0 "" "$T/haiku31.jsonl" --base-model anthropic.claude-3-haiku-20240307-v1:0
for i in $(seq 8); do echo "$CV"; done > "$T/nova.jsonl"
expect nova_ok 0 "" "$T/nova.jsonl" --base-model amazon.nova-lite-v1:0
{ for i in $(seq 7); do echo "$CV"; done; echo '{"schemaVersion": "bedrock-conversation-2024", "messages": [{"role": "user", "content": [{"text": "User: hi"}]}, {"role": "assistant", "content": [{"text": "Bot: hello"}]}]}'; } > "$T/nova_reserved.jsonl"
expect nova_reserved_bad 1 "nova_reserved.jsonl:8: error: messages\[0\].content contains \"User:\", a reserved word for Amazon Nova Lite" "$T/nova_reserved.jsonl" --base-model amazon.nova-lite-v1:0
{ for i in $(seq 7); do echo "$CV"; done; echo '{"schemaVersion": "bedrock-conversation-2024", "messages": [{"role": "user", "content": [{"text": "hi"}]}, {"role": "assistant", "content": [{"text": "Bot: hello"}]}]}'; } > "$T/nova_assistant.jsonl"
expect nova_reserved_assistant_ok 0 "8 valid" "$T/nova_assistant.jsonl" --base-model amazon.nova-lite-v1:0
expect reserved_not_enforced 0 "" "$T/nova_reserved.jsonl"
# Formats per base model (issue 22): Bedrock's "Prepare data" page lists Llama 3.1 as
# prompt-completion, Llama 3.2/3.3 as converse, Claude 3 Haiku as its messages format; Nova takes
# converse. Any other format is an error under --base-model (Bedrock refuses the job).
for i in $(seq 100); do echo "$MS"; done > "$T/f_messages.jsonl"
for i in $(seq 100); do echo "$CV"; done > "$T/f_converse.jsonl"
for i in $(seq 100); do echo "$CP"; done > "$T/f_cpt.jsonl"
cp "$T/hundred.jsonl" "$T/f_pc.jsonl"
for row in "meta.llama3-1-8b-instruct-v1:0 pc" "meta.llama3-1-70b-instruct-v1:0 pc" \
           "meta.llama3-2-1b-instruct-v1:0 converse" "meta.llama3-2-3b-instruct-v1:0 converse" \
           "meta.llama3-2-11b-instruct-v1:0 converse" "meta.llama3-2-90b-instruct-v1:0 converse" \
           "meta.llama3-3-70b-instruct-v1:0 converse" "anthropic.claude-3-haiku-20240307-v1:0 messages" \
           "amazon.nova-micro-v1:0 converse" "amazon.nova-lite-v1:0 converse" "amazon.nova-pro-v1:0 converse"; do
  set -- $row
  for f in pc messages converse cpt; do
    if [ "$f" = "$2" ]; then expect "format_${1}_$f" 0 "" "$T/f_$f.jsonl" --base-model "$1"
    else expect "format_${1}_$f" 1 "f_$f.jsonl: error: the file is .* records, but Bedrock's .* jobs take only .*Bedrock would refuse the job" "$T/f_$f.jsonl" --base-model "$1"; fi
  done
done
expect format_mismatch_hint 1 "hint: rewrite the records as messages, or drop --base-model" "$T/hundred.jsonl" --base-model anthropic.claude-3-haiku-20240307-v1:0
# Media (issue 22): valid user-turn images for Nova Lite/Pro and Llama 3.2 11B/90B Vision, videos
# for Nova Lite/Pro; refused for the text models; `quarry train` refuses them (text-only models).
IM='{"schemaVersion": "bedrock-conversation-2024", "messages": [{"role": "user", "content": [{"text": "Describe it."}, {"image": {"format": "png", "source": {"s3Location": {"uri": "s3://my-bucket/img/cat.png"}}}}]}, {"role": "assistant", "content": [{"text": "A cat."}]}]}'
VI='{"messages": [{"role": "user", "content": [{"text": "Describe it."}, {"video": {"format": "mp4", "source": {"s3Location": {"uri": "s3://my-bucket/vid/clip.mp4"}}}}]}, {"role": "assistant", "content": [{"text": "A clip."}]}]}'
for i in $(seq 100); do echo "$IM"; done > "$T/media_image.jsonl"
for i in $(seq 100); do echo "$VI"; done > "$T/media_video.jsonl"
for m in amazon.nova-lite-v1:0 amazon.nova-pro-v1:0 meta.llama3-2-11b-instruct-v1:0 meta.llama3-2-90b-instruct-v1:0; do
  expect "media_image_$m" 0 "warning: 100 records hold images or videos: valid for Bedrock's .* job, but .quarry train. refuses them \(the open models quarry trains are text-only\)" "$T/media_image.jsonl" --base-model "$m"
done
for m in amazon.nova-lite-v1:0 amazon.nova-pro-v1:0; do expect "media_video_$m" 0 "100 records hold images or videos" "$T/media_video.jsonl" --base-model "$m"; done
expect media_video_llama 1 ":1: error: messages\[0\].content\[1\] is a video block, which Meta Llama 3.2 11B Instruct's jobs do not take" "$T/media_video.jsonl" --base-model meta.llama3-2-11b-instruct-v1:0
for m in amazon.nova-micro-v1:0 meta.llama3-2-1b-instruct-v1:0 meta.llama3-2-3b-instruct-v1:0 meta.llama3-3-70b-instruct-v1:0; do
  expect "media_text_model_$m" 1 ":1: error: messages\[0\].content\[1\] is an image block, which .* jobs do not take" "$T/media_image.jsonl" --base-model "$m"
done
expect media_no_base 1 ":1: error: messages\[0\].content\[1\] is an image block; quarry trains text-only models" "$T/media_image.jsonl"
if "$Q" init --config "$QUARRY_SOURCE_DIR/examples/tiny-model/config.json" --tokenizer "$QUARRY_SOURCE_DIR/examples/tiny-model" --out "$T/tiny" --seed 1 --dtype fp32 >/dev/null 2>&1; then
  out=$("$Q" train --model "$T/tiny" --data "$T/media_image.jsonl" --out "$T/run_media" --device cpu --quiet --max-seq-len 64 2>&1); r=$?
  n=$((n + 1))
  if [ $r = 0 ] || ! grep -q "media_image.jsonl:1: error: .*is an image block; quarry trains text-only models" <<<"$out"; then
    echo "FAIL media_train: exit $r"; echo "$out" | head -3 | sed 's/^/    /'; fail=1; fi
else echo "FAIL media_train: quarry init"; fail=1; fi
expect unknown_model 2 "unknown --base-model 'gpt-4'" "$T/hundred.jsonl" --base-model gpt-4
# Families Bedrock does not fine-tune but CMI imports: told so by name, with the way to go.
expect qwen3_no_customization 2 "--base-model 'qwen.qwen3-32b-v1:0': Bedrock has no fine-tuning for Qwen3 models" "$T/hundred.jsonl" --base-model qwen.qwen3-32b-v1:0
expect qwen3moe_no_customization 2 "Bedrock has no fine-tuning for Qwen3-MoE models" "$T/hundred.jsonl" --base-model Qwen/Qwen3-30B-A3B
expect mixtral_no_customization 2 "hint: Mixtral is trained with .quarry train. and imported with Custom Model Import" "$T/hundred.jsonl" --base-model mistral.mixtral-8x7b-instruct-v0:1
expect cost_unknown 0 "cost: .*price per 1K training tokens is not published.*--price-per-1k-tokens" "$T/hundred.jsonl" --base-model meta.llama3-1-8b-instruct-v1:0
# The CMI preview: AWS's pricing page lists 2 CMUs for Llama 3.1 8B at 0.0785 USD per CMU-minute,
# 1.95 USD per CMU-month (../shared/reference/bedrock_prices.md): 9.42 USD an active hour, 3.90 a month.
expect cost_cmi 0 "CMI serving 2 CMUs x \\\$0.0785 per CMU-minute = \\\$9.42 per active hour, storage \\\$3.90 per month \(AWS .*2025-03-06; CMUs as AWS lists them\)" "$T/hundred.jsonl" --base-model meta.llama3-1-8b-instruct-v1:0
expect cost_cmi_estimate 0 "CMI serving 1 CMU x .*an estimate from the parameter count" "$T/f_converse.jsonl" --base-model meta.llama3-2-1b-instruct-v1:0
expect cost_needs_model 0 "cost: +pass --base-model ID" "$T/hundred.jsonl"

# scan
rec scan_warn 0 ":1: warning: possible e-mail in prompt: joh\*\*\*com \(17 chars\)" '{"prompt": "mail john.doe@acme.com now", "completion": "ok"}\n'
rec scan_error 1 ":1: error: possible card-number in completion" '{"prompt": "card?", "completion": "4111 1111 1111 1111"}\n' --scan error
rec scan_off 0 "scan: +off" '{"prompt": "card?", "completion": "4111 1111 1111 1111"}\n' --scan off
rec scan_counts 0 "scan: +3 findings \(aws-access-key-id 1, e-mail 1, us-ssn 1\)" '{"prompt": "AKIAIOSFODNN7EXAMPLE and 123-45-6789", "completion": "a@b.org"}\n'
if grep -q "AKIAIOSFODNN7EXAMPLE\|john.doe@acme.com" <<<"$("$Q" validate "$T/scan_warn.jsonl" "$T/scan_counts.jsonl" 2>&1)"; then
  echo "FAIL scan_masked: a full value was printed"; fail=1; fi
n=$((n + 1))

# max-errors
for i in $(seq 60); do echo '{"prompt": ""}'; done > "$T/many.jsonl"
expect max_errors_default 1 "many.jsonl: 70 more diagnostics not shown \(--max-errors 50\)" "$T/many.jsonl"
out=$("$Q" validate "$T/many.jsonl" --max-errors 3 2>&1 >/dev/null)
n=$((n + 1))
[ "$(grep -c ': error: ' <<<"$out")" = 3 ] || { echo "FAIL max_errors_3: $(grep -c ': error: ' <<<"$out") errors printed"; fail=1; }

# --json on an invalid file: one document, diagnostics with line and column
printf '%s\n{"prompt": 1}\n{"prompt" "x"}\n' "$PC" > "$T/j.jsonl"
"$Q" validate "$T/j.jsonl" "$T/missing.jsonl" --json > "$T/j.json" 2>/dev/null; r=$?
n=$((n + 1))
[ $r = 2 ] || { echo "FAIL json exit: $r, want 2 (a missing file)"; fail=1; }
if ! "$PY" - "$T/j.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["valid"] is False
f, m = d["files"]
assert f["valid"] is False and f["records"] == {"valid": 1, "invalid": 2, "by_format": {"prompt-completion": 1, "messages": 0, "converse": 0, "continued-pretraining": 0}}, f["records"]
ds = f["diagnostics"]
assert [(x["line"], x["column"], x["severity"]) for x in ds] == [(2, None, "error"), (2, None, "error"), (3, 11, "error")], ds
assert "is a number" in ds[0]["message"] and "expected ':'" in ds[2]["message"]
assert m["valid"] is False and "cannot open" in m["error"]
PY
then echo "FAIL json document"; fail=1; fi

# usage and unreadable files
expect missing_file 2 "nope.jsonl: error: cannot open" "$T/nope.jsonl"
expect bad_scan_mode 2 "--scan takes off, warn or error" "$T/hundred.jsonl" --scan maybe
expect bad_format_name 2 "unknown --format 'xml'" "$T/hundred.jsonl" --format xml
expect model_missing 2 "quarry validate: error: .*tokenizer" "$T/hundred.jsonl" --model "$T"
printf '%s\n' "$PC" | "$Q" validate - >/dev/null 2>&1; r=$?; n=$((n + 1))
[ $r = 0 ] || { echo "FAIL stdin: exit $r"; fail=1; }

fi

# The real AWS sample files, and the summary against Python's own reading of them.
if [ "$MODE" = samples ]; then
TD=${QUARRY_TESTDATA:-}
if [ -z "$TD" ] || [ ! -d "$TD/bedrock" ]; then echo "SKIP: ../shared/testdata not found"; exit 77; fi
for f in "$TD"/bedrock/*.jsonl; do
  expect "sample $(basename "$f")" 0 ": valid" "$f"
done
# content blocks with schemaVersion "tooluse-dataset-2024": Bedrock's documentation says
# schemaVersion may be any string, so this file is valid converse data.
expect sample_schema_version 0 "converse: 120 records" "$TD/bedrock/tooluse_test_content_blocks.jsonl"
# ... but AWS's Llama schema takes only "bedrock-conversation-2024": the same file fails for Llama 3.2.
expect sample_schema_llama 1 ":1: error: \"schemaVersion\" is \"tooluse-dataset-2024\"; Meta Llama 3.2 1B Instruct takes only \"bedrock-conversation-2024\"" "$TD/bedrock/tooluse_test_content_blocks.jsonl" --base-model meta.llama3-2-1b-instruct-v1:0
"$Q" validate "$TD"/bedrock/*.jsonl --json > "$T/all.json" 2>/dev/null; r=$?
n=$((n + 1))
[ $r = 0 ] || { echo "FAIL samples --json: exit $r"; fail=1; }
if ! "$PY" - "$T/all.json" "$TD"/bedrock/*.jsonl <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["valid"] is True, doc["valid"]
assert [f["path"] for f in doc["files"]] == sys.argv[2:]
for f, path in zip(doc["files"], sys.argv[2:]):
    chars = users = assistants = systems = 0
    recs = 0
    for line in open(path, encoding="utf-8"):
        d = json.loads(line)
        recs += 1
        texts = []
        if "prompt" in d:
            texts = [d["prompt"], d["completion"]]; users += 1; assistants += 1
        else:
            s = d.get("system")
            if s is not None:
                systems += 1
                texts.append(s if isinstance(s, str) else "".join(b["text"] for b in s))
            for m in d["messages"]:
                c = m["content"]
                texts.append(c if isinstance(c, str) else "".join(b["text"] for b in c))
                if m["role"] == "user": users += 1
                else: assistants += 1
        chars += sum(len(t) for t in texts)
    got = (f["records"]["valid"], f["characters"]["total"], f["turns"]["user"], f["turns"]["assistant"], f["system_prompts"])
    want = (recs, chars, users, assistants, systems)
    assert got == want, f"{path}: quarry {got} python {want}"
    assert f["errors"] == 0 and f["records"]["invalid"] == 0
    for key in ("lines", "bytes", "format", "tokens", "scan", "base_model", "cost", "diagnostics", "diagnostics_not_shown"):
        assert key in f, key
print("json summary matches python for", len(doc["files"]), "files")
PY
then echo "FAIL samples: summary differs from Python's json"; fail=1; fi
fi

[ $fail = 0 ] && echo "test_validate $MODE: all $n checks passed"
exit $fail
