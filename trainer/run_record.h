// trainer/run_record.h — run.json read back: what a run was made from (the hashes of its base
// checkpoint and data) checked against the files now on disk, so that a resume, generate, eval
// or export never pairs a run with another base or other data without saying so.
//
// "inputs" in run.json: data_sha256, validation_sha256, model_config_sha256, tokenizer_sha256,
// model_weights_sha256 (model.safetensors, or the index of a sharded checkpoint) and
// model_weight_files {file name: sha256} (every weight file; runs written before it lack it).
#pragma once
#include <cjson/cJSON.h>
#include <stddef.h>

// RUN/run.json parsed. NULL with a message naming the file.
cJSON *run_record_read(const char *run_dir, char *err, size_t errlen);
// The "inputs" object for run.json: hashes of the data files (validation may be NULL) and of
// the base checkpoint's config, tokenizer and weight files. NULL with a message.
cJSON *run_record_inputs(const char *model_dir, const char *data_path, const char *validation_path, char *err,
                         size_t errlen);
// The base checkpoint base_dir against the hashes run.json records: 0 when config, tokenizer
// and every weight file are the ones the run was trained on; -1 with a message naming the first
// file that differs and the fix. A run.json without hashes (older runs) passes.
int run_record_check_base(const cJSON *run, const char *base_dir, char *err, size_t errlen);
// The data files against the hashes run.json records (validation_path may be NULL): 0 or -1.
int run_record_check_data(const cJSON *run, const char *data_path, const char *validation_path, char *err,
                          size_t errlen);
