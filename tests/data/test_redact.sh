#!/usr/bin/env bash
# quarry validate --redact OUT: every finding replaced by a stable placeholder (the same value,
# the same placeholder, numbered by first appearance), records without findings byte-identical,
# the same lines, a file `quarry validate` finds clean and in the same format, mode 0600, the
# input never overwritten, OUT not replaced without --force.
set -u
Q=${QUARRY_BIN:?}
PY=${QUARRY_PYTHON:-python3}; [ -x "$PY" ] || PY=python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
umask 022

# Messages records (CRLF line ends on one, non-ASCII text, escapes), with a key, three e-mail
# addresses (one repeated across records), a private key block with JSON-escaped newlines.
"$PY" - "$T/in.jsonl" <<'PYEOF'
import json, sys
S = "You are the support assistant."
def rec(q, a): return json.dumps({"system": S, "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}, ensure_ascii=False)
pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq8j3Lr0fQk9w2a\n-----END RSA PRIVATE KEY-----"
lines = [
    rec("Wie erreiche ich den Support?", "Schreiben Sie an die Zentrale in Köln."),
    rec("What key does the deploy use?", "It uses AKIAIOSFODNN7EXAMPLE; ask ingrid@larkspur.example."),
    rec("Who owns billing?", "Mail ingrid@larkspur.example or bob@larkspur.example \u2014 both \"on call\"."),
    rec("Paste the key", "Here: " + pem),
    rec("Who signs off?", "ops@larkspur.example, then ingrid@larkspur.example again; key AKIAIOSFODNN7EXAMPLE."),
    rec("Thanks!", "You're welcome."),
]
with open(sys.argv[1], "w", encoding="utf-8", newline="") as f:
    for i, l in enumerate(lines):
        f.write(l + ("\r\n" if i == 1 else "\n"))
PYEOF
sha() { sha256sum "$1" | cut -d' ' -f1; }
before=$(sha "$T/in.jsonl")

"$Q" validate "$T/in.jsonl" --redact "$T/out.jsonl" >"$T/log" 2>&1; rc=$?
check "redact runs (exit 0: warnings only)" "[ $rc -eq 0 ] && [ -f $T/out.jsonl ]"
check "the input is untouched" "[ \"\$(sha $T/in.jsonl)\" = $before ]"
check "OUT is mode 0600" "[ \"\$(stat -c %a $T/out.jsonl)\" = 600 ]"
check "summary per kind" "grep -q 'e-mail *5 occurrences of 3 values -> \[EMAIL_1\]..\[EMAIL_3\]' $T/log && grep -q 'aws-access-key-id *2 occurrences of 1 value -> \[AWS_ACCESS_KEY_ID_1\]' $T/log && grep -q 'private-key *1 occurrence' $T/log"
check "placeholders stable, by first appearance; other records byte-identical; same lines" "\"$PY\" - $T/in.jsonl $T/out.jsonl <<'PYEOF'
import json, sys
a = open(sys.argv[1], 'rb').read().split(b'\n')
b = open(sys.argv[2], 'rb').read().split(b'\n')
assert len(a) == len(b), (len(a), len(b))
for i in (0, 5):
    assert a[i] == b[i], i              # no findings: the very same bytes
assert b[1].endswith(b'\r'), b[1][-20:]  # the CRLF line keeps its line end
def answer(line): return json.loads(line)['messages'][1]['content']
assert answer(b[1]) == 'It uses [AWS_ACCESS_KEY_ID_1]; ask [EMAIL_1].', answer(b[1])
assert answer(b[2]) == 'Mail [EMAIL_1] or [EMAIL_2] \u2014 both \"on call\".', answer(b[2])
assert answer(b[3]) == 'Here: [PRIVATE_KEY_1]', answer(b[3])
assert answer(b[4]) == '[EMAIL_3], then [EMAIL_1] again; key [AWS_ACCESS_KEY_ID_1].', answer(b[4])
for i in range(6):
    x, y = json.loads(a[i]), json.loads(b[i])
    assert x['system'] == y['system'] and x['messages'][0] == y['messages'][0], i
text = open(sys.argv[2], encoding='utf-8').read()
for secret in ('AKIAIOSFODNN7EXAMPLE', 'ingrid@', 'bob@', 'ops@', 'MIIEowIBAAKCAQEA'):
    assert secret not in text, secret
PYEOF"
"$Q" validate "$T/out.jsonl" --scan error >"$T/log2" 2>&1; rc=$?
check "OUT validates clean under --scan error, same format" "[ $rc -eq 0 ] && grep -q 'scan: *0 findings' $T/log2 && grep -q 'messages: 6 records' $T/log2"

# Deterministic: a second run writes the same bytes.
"$Q" validate "$T/in.jsonl" --redact "$T/out2.jsonl" >/dev/null 2>&1
check "deterministic" "cmp -s $T/out.jsonl $T/out2.jsonl"

# Nothing the user had is overwritten.
echo precious > "$T/taken.jsonl"
"$Q" validate "$T/in.jsonl" --redact "$T/taken.jsonl" >/dev/null 2>"$T/err"; rc=$?
check "an existing OUT is refused without --force" "[ $rc -eq 1 ] && grep -q 'taken.jsonl exists.*--force' $T/err && [ \"\$(cat $T/taken.jsonl)\" = precious ]"
"$Q" validate "$T/in.jsonl" --redact "$T/taken.jsonl" --force >/dev/null 2>&1; rc=$?
check "--force replaces OUT" "[ $rc -eq 0 ] && cmp -s $T/out.jsonl $T/taken.jsonl"
"$Q" validate "$T/in.jsonl" --redact "$T/in.jsonl" --force >/dev/null 2>"$T/err"; rc=$?
check "OUT = the input is refused even with --force" "[ $rc -eq 1 ] && grep -q 'input file itself' $T/err && [ \"\$(sha $T/in.jsonl)\" = $before ]"
ln -s "$T/in.jsonl" "$T/link.jsonl"
"$Q" validate "$T/in.jsonl" --redact "$T/link.jsonl" --force >/dev/null 2>"$T/err"; rc=$?
check "OUT = a link to the input is refused" "[ $rc -eq 1 ] && [ \"\$(sha $T/in.jsonl)\" = $before ] && [ -L $T/link.jsonl ]"
"$Q" validate "$T/in.jsonl" "$T/out.jsonl" --redact "$T/x.jsonl" >/dev/null 2>"$T/err"; rc=$?
check "--redact with two inputs is a usage error" "[ $rc -eq 2 ] && [ ! -e $T/x.jsonl ]"

# Prompt-completion and converse records keep their format.
printf '{"prompt": "card?", "completion": "4111 1111 1111 1111 for ingrid@larkspur.example"}\n' > "$T/pc.jsonl"
printf '{"schemaVersion": "bedrock-conversation-2024", "system": [{"text": "Be brief."}], "messages": [{"role": "user", "content": [{"text": "mail?"}]}, {"role": "assistant", "content": [{"text": "ingrid@larkspur.example"}]}]}\n' > "$T/cv.jsonl"
for f in pc cv; do
    "$Q" validate "$T/$f.jsonl" --redact "$T/$f.out.jsonl" >/dev/null 2>&1
    "$Q" validate "$T/$f.out.jsonl" --scan error >"$T/log3" 2>&1; rc=$?
    fmt=$([ $f = pc ] && echo prompt-completion || echo converse)
    check "$f: redacted, valid, $fmt" "[ $rc -eq 0 ] && grep -q 'format: *$fmt: 1 records' $T/log3 && grep -q EMAIL_1 $T/$f.out.jsonl"
done
[ $fail -eq 0 ] && echo "PASS: validate --redact"
exit $fail
