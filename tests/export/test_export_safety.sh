#!/usr/bin/env bash
# Exports never destroy what they came from, and only an export leaves the building:
#  1. export refuses an --out that is, contains or lies inside the run, its final/ or its base
#     (symlinks resolved), even with --force, and leaves them byte for byte as they were;
#  2. generate, eval and export of a run refuse a base whose weights or config are not the ones
#     run.json records (e.g. a base replaced by the run's own merged export);
#  3. upload refuses (before credentials or the network) a run, a checkpoint, a directory without
#     quarry-export.json, files the export does not list and a package that fails preflight,
#     unless --force; a DIR that is no directory is a usage error (exit 2);
#  4. the package carries no local path of the run, the base or the data (data by hash only);
#  5. a path under a regular file is named as such ("FILE is a file, not a directory").
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
W=$(mktemp -d /tmp/quarry-exportsafe.XXXXXX); trap 'rm -rf "$W"' EXIT
W=$(cd "$W" && pwd -P)
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# expect NAME RC NEEDLE CMD...: exit status RC and NEEDLE in stderr.
expect() {
  local name=$1 want=$2 needle=$3; shift 3
  "$@" >"$W/out" 2>"$W/err"; local rc=$?
  [ $rc -eq "$want" ] || { bad "$name: exit $rc, want $want"; head -3 "$W/err"; return; }
  [ -z "$needle" ] || grep -qF -- "$needle" "$W/err" || { bad "$name: stderr lacks '$needle'"; head -3 "$W/err"; }
}
# A fingerprint of every file under a directory (names and bytes).
tree_sum() { (cd "$1" && find . -type f | LC_ALL=C sort | xargs -d '\n' sha256sum); }

mkdir -p "$W/secret-data"
DATA="$W/secret-data/private-train.jsonl"
cp "$SRC/examples/data/company_qa_train.jsonl" "$DATA"
# make_run DIR: DIR/base and the LoRA run DIR/runs/run trained on it (a second one for the part
# that main destroys, so that the later parts show their own failures).
make_run() {
  mkdir -p "$1"
  "$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$1/base" \
    --seed 3 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
  "$Q" train --model "$1/base" --data "$DATA" --out "$1/runs/run" --method lora --lora-r 4 --max-steps 2 \
    --batch-size 2 --max-seq-len 64 --device cpu --quiet >/dev/null 2>"$W/train.log" ||
    { echo "FAIL: train"; cat "$W/train.log"; exit 1; }
}
make_run "$W"
RUN="$W/runs/run"

# 1. --out on what the package is made from.
V="$W/victim"
make_run "$V"
VR="$V/runs/run"
run_sum=$(tree_sum "$VR"); base_sum=$(tree_sum "$V/base")
ln -s "$VR" "$V/run-link"
touch "$V/runs/other-file"
expect out_is_run 1 "is the run directory" "$Q" export "$VR" --out "$VR" --force --quiet
expect out_is_run_slash 1 "is the run directory" "$Q" export "$VR" --out "$VR/" --force --quiet
expect out_is_final 1 "final" "$Q" export "$VR" --out "$VR/final" --force --quiet
expect out_in_run 1 "lies inside the run directory" "$Q" export "$VR" --out "$VR/pkg" --quiet
expect out_holds_run 1 "contains the run directory" "$Q" export "$VR" --out "$V/runs" --force --quiet
expect out_is_link 1 "is the run directory" "$Q" export "$VR" --out "$V/run-link" --force --quiet
expect out_is_base 1 "is the run's base model" "$Q" export "$VR" --out "$V/base" --force --quiet
expect out_is_base_dots 1 "base model" "$Q" export "$VR" --out "$V/runs/../base" --force --quiet
expect out_in_ckpt 1 "lies inside the checkpoint" "$Q" export --model "$V/base" --out "$V/base/pkg" --quiet
[ "$(tree_sum "$VR" 2>/dev/null)" = "$run_sum" ] || bad "a refused export changed the run"
[ "$(tree_sum "$V/base" 2>/dev/null)" = "$base_sum" ] || bad "a refused export changed the base"
[ -f "$V/runs/other-file" ] || bad "a refused export removed a file beside the run"
expect export_ok 0 "" "$Q" export "$RUN" --out "$W/pkg" --quiet
expect export_peft_ok 0 "" "$Q" export "$RUN" --out "$W/pkg-peft" --format peft --quiet

# 2. A base that is not the one the run was trained on.
expect generate_ok 0 "" "$Q" generate --model "$RUN" --prompt hi --max-new-tokens 2 --device cpu
cp -a "$W/base" "$W/base.orig"
cp "$W/pkg/model.safetensors" "$W/base/model.safetensors"   # what `export --out BASE` used to leave
expect generate_merged_base 1 "not the base weight file" "$Q" generate --model "$RUN" --prompt hi --max-new-tokens 2 --device cpu
expect eval_merged_base 1 "not the base weight file" "$Q" eval --model "$RUN" --data "$DATA" --device cpu
expect export_merged_base 1 "not the base weight file" "$Q" export "$RUN" --out "$W/pkg-x" --quiet
[ ! -e "$W/pkg-x" ] || bad "an export of a mismatched base created --out"
rm -rf "$W/base" && cp -a "$W/base.orig" "$W/base"
printf ' ' >> "$W/base/config.json"
expect generate_config_changed 1 "config.json" "$Q" generate --model "$RUN" --prompt hi --max-new-tokens 2 --device cpu
rm -rf "$W/base" && cp -a "$W/base.orig" "$W/base"
expect generate_restored 0 "" "$Q" generate --model "$RUN" --prompt hi --max-new-tokens 2 --device cpu

# 3. upload: only a passing export, checked before credentials (none are given here).
up() { env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE HOME="$W/home" \
  "$Q" upload "$@"; }
mkdir -p "$W/home"
ckpt=$(ls -d "$RUN"/checkpoints/step-* | head -1)
cp -a "$W/pkg" "$W/pkg-extra" && echo notes > "$W/pkg-extra/notes.txt"
# refused NAME RC NEEDLE ARGS...: upload refuses without having looked for credentials.
refused() {
  local name=$1 rc=$2 needle=$3; shift 3
  expect "$name" "$rc" "$needle" up "$@"
  if grep -q credentials "$W/err"; then bad "$name: upload looked for credentials before refusing"; fi
}
refused upload_run 1 "is a training run or checkpoint, not an export" "$RUN" s3://quarry-bkt/x/
refused upload_ckpt 1 "not an export" "$ckpt" s3://quarry-bkt/x/
refused upload_plain 1 "no quarry-export.json" "$W/base" s3://quarry-bkt/x/
refused upload_peft 1 "fails the CMI preflight" "$W/pkg-peft" s3://quarry-bkt/x/
refused upload_extra 1 "notes.txt is not part of the export" "$W/pkg-extra" s3://quarry-bkt/x/
refused upload_missing 2 "No such file" "$W/nowhere" s3://quarry-bkt/x/
refused upload_file 2 "not a directory" "$DATA" s3://quarry-bkt/x/
expect upload_export 1 "no AWS credentials" up "$W/pkg" s3://quarry-bkt/x/   # passes the check: on to credentials
expect upload_run_forced 1 "no AWS credentials" up "$RUN" s3://quarry-bkt/x/ --force
grep -qF "warning: uploading because of --force" "$W/err" || bad "upload --force of a run gives no warning"

# 4. No local path in the package; the data by hash.
for p in "$W" "$RUN" "$W/base" "$DATA" "secret-data" "private-train"; do
  hits=$(grep -rlF -- "$p" "$W/pkg" "$W/pkg-peft")
  [ -z "$hits" ] || bad "the package carries '$p' in: $hits"
done
grep -qF "$(sha256sum "$DATA" | cut -c1-64)" "$W/pkg/quarry-export.json" || bad "quarry-export.json lacks the data's sha256"
grep -qF '"base_model_name_or_path": "base"' "$W/pkg-peft/adapter_config.json" ||
  bad "adapter_config.json does not name the base by its directory name"
grep -qF "$W/base" "$RUN/final/adapter_config.json" || bad "the run's own adapter_config.json changed"

# 5. A path under a file.
expect out_under_file 1 "private-train.jsonl is a file, not a directory" "$Q" export "$RUN" --out "$DATA/sub" --quiet
expect train_under_file 1 "private-train.jsonl is a file, not a directory" "$Q" train --model "$W/base" --data "$DATA" \
  --out "$DATA/run" --max-steps 1 --device cpu --quiet

[ $fail -eq 0 ] && echo "test_export_safety: all checks passed"
exit $fail
