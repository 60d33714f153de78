#!/usr/bin/env python3
"""Compare `quarry validate --base-model ID` with the dataset validators AWS publishes (issue 22).

AWS's three scripts live in aws-samples/amazon-bedrock-samples (MIT-0), read here at a pinned
commit; they are never committed to quarry. Give them as either
  --aws-git DIR    a git directory of that repository (e.g. a mirror; `git show COMMIT:PATH`), or
  --aws-cache DIR  a folder that already holds the files (what --aws-git writes into --cache).
The files are copied into --cache (default ~/.cache/quarry/aws-validators/COMMIT) and checked
against the sha256 sums below, so the run needs no network.

Cases: the repository's own JSONL (examples/data, ../shared/testdata/bedrock when present) and
generated variants of one good record per format (each variant written 100 times, so the
per-model record-count rules do not decide the verdict; file-level cases test those). Each case
is judged for every base model both tools know: AWS's script for the family (in-process) and
`quarry validate FILE --base-model ID` (exit 0 accepts, 1 rejects). The table prints one line
per case and model group; every disagreement must have an entry in EXPLAINED_ROWS citing the rule that
makes quarry differ, else it is listed as UNEXPLAINED and the script exits 1.

Needs: python >= 3.11 (the Llama script uses enum.StrEnum), pydantic 2, jsonschema (the
project's .venv has both). Reference script, not run in CI.
    .venv/bin/python scripts/reference/compare_aws_validators.py --aws-git /path/to/mirror --quarry build/quarry
"""
import argparse
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile

COMMIT = "85fba9d9c404ae120c0ceee5e67befed35004fdc"
BASE = "custom-models/bedrock-fine-tuning/"
FILES = {  # path at COMMIT -> sha256
    "claude-haiku/DataValidation/data_validation.py": "489af99e79e46c6ef315163960397b01138b6fd6aac17f605b2acd13fe4dde74",
    "meta-llama/dataset_validation/dataset_validation.py": "22565b4f727919aec40cd15b89ac0db607f25463862b00597318897cd568dc18",
    "meta-llama/dataset_validation/utils/constants.py": "4aedcb3afa08d1bd44574e144a6527b15d700628f1e83a97cc7caac9f879bec9",
    "meta-llama/dataset_validation/utils/exceptions/invalid_row_exception.py": "9dc11f27852e831b058fd75ab10a16261bdec19ae23cd3db13d8a8fb2eeb6b11",
    "meta-llama/dataset_validation/utils/model_config/input_type.py": "70ccd38753e4a73c7a94fc6d05db5e67b9c9835406e62ccfe592daf7f45fbb7b",
    "meta-llama/dataset_validation/utils/model_config/model.py": "eb085337cea54cd96abbf2869d3cc3972b3ff283eb26599146d719aa95e3441e",
    "meta-llama/dataset_validation/utils/model_config/model_type.py": "63a3923c2e119f2f470526c8dfea484276b5007b8cb33592f2aed6cd092bf053",
    "meta-llama/dataset_validation/utils/model_config/models_registry.py": "976001f00fd37007b5cb38fdd9370ac5ee08415c7a8a2da7f86f00be9ba91fb7",
    "meta-llama/dataset_validation/utils/schema.py": "a22e0f2514f99df969ea9c5c012498206e8c7f4cddd714655dcbb5f39de65bc5",
    "nova/understanding/dataset_validation/nova_ft_dataset_validator.py": "9be04af1694bb1a9580545b9f660d6eae14cf2f976d155e18eeba7a61668287c",
}

# (quarry base model id, family, the AWS script's model argument). Llama 3.3 70B has no entry
# in AWS's models_registry.py, so it is not compared.
MODELS = [
    ("amazon.nova-micro-v1:0", "nova", "micro"),
    ("amazon.nova-lite-v1:0", "nova", "lite"),
    ("amazon.nova-pro-v1:0", "nova", "pro"),
    ("meta.llama3-1-8b-instruct-v1:0", "llama31", "llama3-1-8b"),
    ("meta.llama3-1-70b-instruct-v1:0", "llama31", "llama3-1-70b"),
    ("meta.llama3-2-1b-instruct-v1:0", "llama32", "llama3-2-1b"),
    ("meta.llama3-2-3b-instruct-v1:0", "llama32", "llama3-2-3b"),
    ("meta.llama3-2-11b-instruct-v1:0", "llama32v", "llama3-2-11b"),
    ("meta.llama3-2-90b-instruct-v1:0", "llama32v", "llama3-2-90b"),
    ("anthropic.claude-3-haiku-20240307-v1:0", "haiku", None),
]

# Sources cited below.
SOURCES = [
    "[1] Bedrock, 'Prepare data for fine-tuning your models', "
    "https://docs.aws.amazon.com/bedrock/latest/userguide/model-customization-prepare.html "
    "(read via crowecawcaw/aws-docs-history @076aa4d3)",
    "[2] Amazon Nova user guide, 'Preparing data for fine-tuning Understanding models', "
    "https://docs.aws.amazon.com/nova/latest/userguide/fine-tune-prepare-data-understanding.html",
    f"[3] AWS's validator scripts, aws-samples/amazon-bedrock-samples @{COMMIT[:8]} {BASE}",
]
PREP = "Bedrock's page [1]"
NOVA_GUIDE = "the Nova guide [2]"
RFC = "RFC 8259 (JSON has no NaN) / RFC 3629 (UTF-8 has no lone surrogates)"

LLAMA = ("llama31", "llama32", "llama32v")
LLAMA_CV = ("llama32", "llama32v")
# (cases, families, why quarry's verdict differs from the script's, with the rule's source).
# A case name matches with or without its _pc/_ms/_cv suffix; family "*" = every family. Only
# disagreements listed here count as explained.
EXPLAINED_ROWS = [
    (("json_nan", "json_lone_surrogate"), "*",
     f"quarry refuses invalid JSON that Python's json.loads accepts: {RFC} (issue 22: stays)"),
    (("dup_keys_differ",), "*",
     "quarry refuses duplicate keys with different values (RFC 8259 section 4: names SHOULD be unique, readers "
     "disagree which one wins); Python silently keeps the last"),
    (("bom",), "*",
     "AWS's scripts fail line 1 (json.loads refuses U+FEFF); quarry reads the file and warns that AWS's own "
     "validators reject it, with the fix (issue 22: keep the warning)"),
    (("count_7", "count_31", "count_99"), LLAMA,
     f"Llama needs at least 100 records: {PREP}, Llama tables, 'Sum of training and validation records' "
     "minimum 100; AWS's Llama script checks only the maxima"),
    (("cv_last_user",), LLAMA_CV,
     f"a record ends with the assistant turn it trains on ({PREP}: assistant messages hold the response; Nova "
     "guide: 'The last turn is the bot's response'); AWS's Llama schema [3] checks only role names (issue 22: stays)"),
    (("cv_first_assistant", "cv_not_alternating"), LLAMA_CV,
     f"{PREP}: 'a sequence of messages with alternating roles', user first; AWS's Llama schema [3] checks only "
     "role names, not their order"),
    (("cv_empty_text",), LLAMA_CV,
     "quarry refuses a turn without text (nothing to train on); AWS's Nova script [3] refuses it too ('empty text "
     "content'), its Llama schema does not check"),
    (("cv_block_no_text", "cv_block_other_key"), LLAMA_CV,
     "a content block with neither text nor media is refused (issue 22: keep refusing it; AWS's Nova script [3]: "
     "'at least one of text, image, video must be provided'); AWS's Llama schema [3] requires no key in a block"),
    (("pc_empty_completion",), ("llama31",),
     "quarry refuses an empty completion (nothing to train on); AWS's Llama schema [3] checks only the type"),
    (("cv_system_empty_array",), ("nova",),
     "quarry refuses \"system\": [] (AWS's Llama schema [3]: system minItems 1; drop the key instead); AWS's Nova "
     "script accepts an empty list"),
    (("cv_reserved_user",), ("nova",),
     f"Nova's reserved words in user and system text: {NOVA_GUIDE}; AWS's Nova script [3] does not check them"),
    (("cv_image_user", "cv_image_jpeg_upper", "cv_ten_images", "cv_eleven_images", "cv_image_bad_format",
      "cv_image_uri_chars", "cv_image_and_video", "cv_video_user", "cv_video_bad_format", "cv_two_videos"), ("llama32",),
     f"Llama 3.2 1B/3B take text only: {PREP} names image input for 11B/90B Vision only; AWS's Llama schema [3] "
     "accepts image and video blocks for every model"),
    (("cv_video_user", "cv_video_bad_format", "cv_two_videos", "cv_image_and_video"), ("llama32v",),
     f"Llama 3.2 Vision takes images, not videos ({PREP}: 'Supported image formats'); AWS's Llama schema [3] accepts "
     "video blocks"),
    (("cv_image_bad_format",), ("llama32v",),
     f"{PREP}: 'Supported image formats for Meta Llama-3.2 11B Vision Instruct and Meta Llama-3.2 90B Vision "
     "Instruct include: gif, jpeg, png, and webp'; AWS's Llama schema [3] takes any format string"),
    (("cv_image_uri_chars", "cv_eleven_images"), ("llama32v",),
     "quarry applies the Nova media rules (uri characters ^[\\w\\-/.]+$, at most 10 images) to Llama's "
     "images too (issue 22); AWS's Llama schema [3] checks only the s3:// prefix"),
    (("haiku_extra_top",), ("haiku",),
     f"Claude 3 Haiku's format has only 'system' and 'messages' ({PREP}); quarry keeps refusing other keys "
     "(issue 22); AWS's Haiku script [3] (pydantic, extra fields ignored) accepts them"),
]


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def fetch(args):
    """The pinned files in a cache folder, checked; returns that folder."""
    cache = args.aws_cache or args.cache or os.path.expanduser(f"~/.cache/quarry/aws-validators/{COMMIT}")
    for rel, want in FILES.items():
        dst = os.path.join(cache, rel)
        if not os.path.exists(dst):
            if not args.aws_git:
                sys.exit(f"error: {dst} missing; give --aws-git DIR (a git dir of aws-samples/amazon-bedrock-samples)")
            blob = subprocess.run(["git", "--git-dir", args.aws_git, "show", f"{COMMIT}:{BASE}{rel}"],
                                  check=True, capture_output=True).stdout
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as f:
                f.write(blob)
        with open(dst, "rb") as f:
            got = sha256(f.read())
        if got != want:
            sys.exit(f"error: {dst}: sha256 {got}, want {want} (commit {COMMIT})")
    return cache


def load(name, path, extra_path=None):
    if extra_path:
        sys.path.insert(0, extra_path)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Aws:
    """AWS's scripts, imported once and run in-process on a file: (accepts, first message)."""

    def __init__(self, cache):
        self.nova = load("aws_nova", os.path.join(cache, "nova/understanding/dataset_validation/nova_ft_dataset_validator.py"))
        d = os.path.join(cache, "meta-llama/dataset_validation")
        self.llama = load("aws_llama", os.path.join(d, "dataset_validation.py"), d)
        self.haiku = load("aws_haiku", os.path.join(cache, "claude-haiku/DataValidation/data_validation.py"))

    def judge(self, family, arg, path):
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                if family == "nova":
                    self.nova.validate_converse_dataset(argparse.Namespace(input_file=path, model_name=arg))
                elif family == "haiku":
                    errors, _ = self.haiku.validate_file(path)
                    if errors:
                        return False, errors[0]
                else:
                    saved = sys.argv
                    sys.argv = ["dataset_validation.py", "-d", "train", "-f", path, "-m", arg]
                    try:
                        self.llama.main()
                    finally:
                        sys.argv = saved
            return True, ""
        except SystemExit as e:
            return False, f"exit {e.code}"
        except Exception as e:  # the scripts report by raising; some crash (KeyError) on odd input
            return False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def quarry(binary, path, model):
    r = subprocess.run([binary, "validate", path, "--base-model", model, "--scan", "off", "--max-errors", "2"],
                       capture_output=True, text=True)
    if r.returncode not in (0, 1):
        return None, r.stderr.strip().splitlines()[0] if r.stderr.strip() else f"exit {r.returncode}"
    first = next((l for l in r.stderr.splitlines() if ": error: " in l), "")
    return r.returncode == 0, first.split(": error: ", 1)[-1]


# --- cases ---------------------------------------------------------------------------------

def turn(role, text):
    return {"role": role, "content": [{"text": text}]}


def cv(messages=None, **top):
    rec = {"schemaVersion": "bedrock-conversation-2024", "system": [{"text": "Be brief."}]}
    rec.update(top)
    rec["messages"] = messages or [turn("user", "Hi"), turn("assistant", "Hello")]
    return {k: v for k, v in rec.items() if v is not None}


def ms(messages=None, **top):
    rec = {"system": "Be brief."}
    rec.update(top)
    rec["messages"] = messages or [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    return {k: v for k, v in rec.items() if v is not None}


def img(fmt="png", uri="s3://my-bucket/images/cat.png"):
    return {"image": {"format": fmt, "source": {"s3Location": {"uri": uri}}}}


def vid(fmt="mp4", uri="s3://my-bucket/videos/clip.mp4"):
    return {"video": {"format": fmt, "source": {"s3Location": {"uri": uri}}}}


def user_with(*blocks):
    return {"role": "user", "content": [{"text": "Describe it."}, *blocks]}


PC = {"prompt": "What is 2+2?", "completion": "4"}
A = turn("assistant", "Hello")
GENERATED = {
    "pc_ok": PC,
    "pc_extra": {**PC, "id": 7},
    "pc_empty_completion": {"prompt": "a", "completion": ""},
    "cpt_ok": {"input": "Some domain text."},
    "ms_ok": ms(),
    "ms_multi_turn": ms([{"role": r, "content": t} for r, t in
                         [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")]]),
    "haiku_extra_top": ms(id=7),
    "ms_last_user": ms([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "c"}]),
    "ms_human_marker": ms([{"role": "user", "content": "a\n\nHuman: b"}, {"role": "assistant", "content": "c"}]),
    "ms_assistant_marker_system": ms(system="x\nAssistant: y"),
    "cv_ok": cv(),
    "cv_no_schema": cv(schemaVersion=None),
    "cv_no_system": cv(system=None),
    "cv_schema_other": cv(schemaVersion="tooluse-dataset-2024"),
    "cv_schema_number": cv(schemaVersion=2024),
    "cv_two_system": cv(system=[{"text": "a"}, {"text": "b"}]),
    "cv_system_empty_array": cv(system=[]),
    "cv_multi_turn": cv([turn("user", "a"), turn("assistant", "b"), turn("user", "c"), turn("assistant", "d")]),
    "cv_extra_top": cv(id=7),
    "cv_extra_turn": cv([{**turn("user", "Hi"), "name": "x"}, A]),
    "cv_extra_block": cv([{"role": "user", "content": [{"text": "Hi", "cachePoint": 1}]}, A]),
    "cv_block_no_text": cv([{"role": "user", "content": [{}]}, A]),
    "cv_block_other_key": cv([{"role": "user", "content": [{"note": "x"}]}, A]),
    "cv_empty_text": cv([turn("user", ""), A]),
    "cv_one_turn": cv([turn("user", "Hi")]),
    "cv_first_assistant": cv([turn("assistant", "a"), turn("user", "b"), turn("assistant", "c")]),
    "cv_last_user": cv([turn("user", "a"), turn("assistant", "b"), turn("user", "c")]),
    "cv_not_alternating": cv([turn("user", "a"), turn("user", "b"), turn("assistant", "c")]),
    "cv_role_system": cv([turn("system", "a"), turn("user", "b"), turn("assistant", "c")]),
    "cv_reserved_user": cv([turn("user", "User: hi"), A]),
    "cv_reserved_assistant": cv([turn("user", "hi"), turn("assistant", "Bot: hello")]),
    "cv_image_user": cv([user_with(img()), A]),
    "cv_image_jpeg_upper": cv([user_with(img("JPEG", "s3://my-bucket/images/cat.jpg")), A]),
    "cv_image_assistant": cv([turn("user", "Hi"), {"role": "assistant", "content": [{"text": "x"}, img()]}]),
    "cv_image_bad_format": cv([user_with(img("bmp", "s3://my-bucket/images/cat.bmp")), A]),
    "cv_image_not_s3": cv([user_with(img("png", "https://example.com/cat.png")), A]),
    "cv_image_uri_chars": cv([user_with(img("png", "s3://my-bucket/my cat.png")), A]),
    "cv_image_no_source": cv([user_with({"image": {"format": "png"}}), A]),
    "cv_ten_images": cv([user_with(*[img(uri=f"s3://my-bucket/i{k}.png") for k in range(10)]), A]),
    "cv_eleven_images": cv([user_with(*[img(uri=f"s3://my-bucket/i{k}.png") for k in range(11)]), A]),
    "cv_video_user": cv([user_with(vid()), A]),
    "cv_video_bad_format": cv([user_with(vid("avi", "s3://my-bucket/v.avi")), A]),
    "cv_two_videos": cv([user_with(vid(), vid(uri="s3://my-bucket/v2.mp4")), A]),
    "cv_image_and_video": cv([user_with(img(), vid()), A]),
}
RAW = {  # lines no JSON library writes
    "json_nan": '{"prompt": NaN, "completion": "4"}',
    "json_nan_cv": '{"schemaVersion": "bedrock-conversation-2024", "messages": [{"role": "user", "content": '
                   '[{"text": "a"}]}, {"role": "assistant", "content": [{"text": "b"}]}], "score": NaN}',
    "json_lone_surrogate": '{"system": "s", "messages": [{"role": "user", "content": "\\ud83d"}, '
                           '{"role": "assistant", "content": "b"}]}',
    "json_lone_surrogate_cv": '{"messages": [{"role": "user", "content": [{"text": "\\ud83d"}]}, '
                              '{"role": "assistant", "content": [{"text": "b"}]}]}',
    "dup_keys_differ": '{"prompt": "a", "prompt": "z", "completion": "b"}',
    "dup_keys_differ_cv": '{"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "assistant", '
                          '"content": [{"text": "b"}]}], "messages": [{"role": "user", "content": [{"text": "c"}]}, '
                          '{"role": "assistant", "content": [{"text": "d"}]}]}',
    "trailing_comma": '{"prompt": "a", "completion": "b",}',
}


def cases(src_root, testdata):
    """(name, bytes of the file)."""
    out = []
    for name, rec in GENERATED.items():
        out.append((name, (json.dumps(rec) + "\n").encode() * 100))
    for name, line in RAW.items():
        out.append((name, (line + "\n").encode() * 100))
    good = {"pc": json.dumps(PC), "ms": json.dumps(ms()), "cv": json.dumps(cv())}
    for f, line in good.items():
        out.append((f"bom_{f}", b"\xef\xbb\xbf" + (line + "\n").encode() * 100))
        for n in (7, 31, 99):
            out.append((f"count_{n}_{f}", (line + "\n").encode() * n))
    for d in (os.path.join(src_root, "examples/data"), os.path.join(testdata, "bedrock") if testdata else None):
        if d and os.path.isdir(d):
            for f in sorted(os.listdir(d)):
                if f.endswith(".jsonl"):
                    with open(os.path.join(d, f), "rb") as fh:
                        out.append((f"file:{f}", fh.read()))
    return out


def explanation(name, family):
    base = name[:-3] if name.endswith(("_cv", "_ms", "_pc")) else name
    for cases_, families, why in EXPLAINED_ROWS:
        if (name in cases_ or base in cases_) and (families == "*" or family in families):
            return why
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aws-git", help="git dir of aws-samples/amazon-bedrock-samples (has commit %s)" % COMMIT[:8])
    ap.add_argument("--aws-cache", help="folder already holding the pinned files")
    ap.add_argument("--cache", help="where --aws-git's files are written (default ~/.cache/quarry/aws-validators/COMMIT)")
    ap.add_argument("--quarry", default="build/quarry")
    ap.add_argument("--testdata", default=os.path.join(os.path.dirname(__file__), "../../../shared/testdata"))
    ap.add_argument("--show-all", action="store_true", help="print agreeing cases too")
    args = ap.parse_args()
    aws = Aws(fetch(args))
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
    testdata = os.path.abspath(args.testdata) if os.path.isdir(args.testdata) else None
    rows, agree, total, unexplained = [], 0, 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in cases(root, testdata):
            path = os.path.join(tmp, name.replace(":", "_") + ("" if name.endswith(".jsonl") else ".jsonl"))
            with open(path, "wb") as f:
                f.write(data)
            seen = {}
            for model, family, arg in MODELS:
                script = "llama" if family.startswith("llama") else family
                # The Llama script reads only the registry's input_type (3.1: prompt-completion,
                # 3.2: converse); the Nova script treats lite and pro alike ("micro" in the name).
                key = (script, {"llama31": "3.1", "llama32": "3.2", "llama32v": "3.2"}.get(family, arg == "micro"))
                if key not in seen:
                    seen[key] = aws.judge(script, arg, path)
                a_ok, a_msg = seen[key]
                q_ok, q_msg = quarry(args.quarry, path, model)
                total += 1
                same = a_ok == q_ok
                agree += same
                why = None if same else explanation(name, family)
                if not same and not why:
                    unexplained.append((name, model))
                rows.append((name, model, a_ok, q_ok, why, a_msg, q_msg))
    print(f"AWS validators @ {COMMIT[:8]} vs quarry validate --base-model: {agree}/{total} verdicts agree "
          f"({100 * agree / total:.1f}%), {total - agree} differ, {len(unexplained)} unexplained\n")
    verdict = lambda ok: "accept" if ok else ("reject" if ok is False else "ERROR")
    short = lambda m: m.replace("-instruct-v1:0", "").replace("-v1:0", "").split(".", 1)[1].replace(
        "claude-3-haiku-20240307", "claude-3-haiku")
    # One line per case and verdict pair, with the models it holds for.
    groups = {}
    for name, model, a_ok, q_ok, why, a_msg, q_msg in rows:
        if a_ok == q_ok and not args.show_all:
            continue
        g = groups.setdefault((name, a_ok, q_ok, why), [[], why, a_msg, q_msg])
        g[0].append(short(model))
    w = max([len(k[0]) for k in groups] + [4])
    print(f"{'case':<{w}}  AWS     quarry  base models")
    for (name, a_ok, q_ok, _), (models, why, a_msg, q_msg) in groups.items():
        print(f"{name:<{w}}  {verdict(a_ok):<7} {verdict(q_ok):<7} {' '.join(models)}")
        if a_ok != q_ok:
            print(f"{'':<{w}}    why: {why or 'UNEXPLAINED'}")
            print(f"{'':<{w}}    quarry: {q_msg[:160]}" if q_msg else f"{'':<{w}}    AWS: {a_msg[:160]}")
    # Agreement per family, for the closing note.
    print("\nper family:")
    for fam in ("nova", "llama31", "llama32", "llama32v", "haiku"):
        fr = [r for r in rows if dict((m, f) for m, f, _ in MODELS)[r[1]] == fam]
        print(f"  {fam:<9} {sum(r[2] == r[3] for r in fr)}/{len(fr)} agree")
    print("\n" + "\n".join(SOURCES))
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
