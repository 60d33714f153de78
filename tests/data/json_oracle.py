"""quarry's JSON parser against Python's json module on thousands of mutated JSONL lines: both
must accept and refuse the same lines. Python is made strict where RFC 8259 is: NaN/Infinity
refused, lone surrogates refused, invalid UTF-8 refused. Usage: json_oracle.py QUARRY_BIN TMPDIR"""
import json, random, re, subprocess, sys

quarry, tmp = sys.argv[1], sys.argv[2]
rng = random.Random(20261126)
base = [
    b'{"prompt": "What is 2+2?", "completion": "4"}',
    b'{"input": "caf\xc3\xa9 \\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ \\/ \\b\\f\\n\\r\\t"}',
    b'{"system": "s", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}',
    b'{"a": [1, -0.5e+3, 0, 1E9, true, false, null, {}, []], "b": {"c": "\xe6\x9d\xb1"}}',
    b'{"n": -12.5e-3, "m": 0.0, "x": [[], [{}], "\xf0\x9f\x98\x80"]}',
]
pieces = [b'"', b'\\', b',', b':', b'{', b'}', b'[', b']', b'0', b'-', b'.', b'e', b'+', b' ', b'\t', b'\x01',
          b'\x7f', b'\xc3', b'\xa9', b'\xff', b'\xed\xa0\x80', b'\\u', b'\\ud800', b'\\udc00', b'NaN', b'tru', b'null',
          b'1', b'x', b'/', b'\\x', b'\r']

def mutate(s):
    s = bytearray(s)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(4)
        i = rng.randrange(len(s) + 1)
        if op == 0 and len(s) > 1:
            del s[min(i, len(s) - 1)]
        elif op == 1:
            s[i:i] = rng.choice(pieces)
        elif op == 2 and len(s) > 2:
            j = rng.randrange(len(s))
            s[i:i] = s[j:j + rng.randint(1, 4)]
        else:
            k = min(i, len(s) - 1)
            s[k:k + 1] = rng.choice(pieces)
    return bytes(s).replace(b'\n', b' ')

def strict_ok(line):
    try:
        text = line.decode('utf-8')
    except UnicodeDecodeError:
        return False
    def bad_const(x):
        raise ValueError(x)
    try:
        v = json.loads(text, parse_constant=bad_const)
    except (ValueError, RecursionError):
        return False
    def walk(o):
        if isinstance(o, str):
            o.encode('utf-8')          # lone surrogates raise
        elif isinstance(o, list):
            for x in o: walk(x)
        elif isinstance(o, dict):
            for k, x in o.items(): walk(k); walk(x)
    try:
        walk(v)
    except UnicodeEncodeError:
        return False
    return True

lines = []
for i in range(4000):
    b = rng.choice(base)
    lines.append(b if i % 10 == 0 else mutate(b))
# no blank lines (quarry reports those as empty lines, not as JSON) and no leading BOM
lines = [l if l.strip(b' \t\r') else b'{}' for l in lines]
path = f"{tmp}/oracle.jsonl"
with open(path, 'wb') as f:
    f.write(b'\n'.join(lines) + b'\n')
r = subprocess.run([quarry, 'validate', path, '--format', 'continued-pretraining', '--scan', 'off',
                    '--max-errors', '1000000'], capture_output=True)
pat = re.compile(rb'^.*oracle\.jsonl:(\d+):\d+: error: invalid JSON', re.M)
refused = {int(m.group(1)) for m in pat.finditer(r.stderr)}
bad = 0
for n, line in enumerate(lines, 1):
    want = not strict_ok(line.rstrip(b'\r'))
    got = n in refused
    if want != got:
        bad += 1
        if bad <= 10:
            print(f"FAIL line {n}: python {'refuses' if want else 'accepts'}, quarry {'refuses' if got else 'accepts'}: {line[:120]!r}")
accepted = len(lines) - len(refused)
print(f"json oracle: {len(lines)} lines, {len(refused)} refused, {accepted} accepted, {bad} disagreements")
sys.exit(1 if bad else 0)
