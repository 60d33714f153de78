// trainer/run_record.c — see run_record.h.
#include "run_record.h"
#include "../data/fileio.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cJSON *run_record_read(const char *run_dir, char *err, size_t errlen) {
    char path[4200], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/run.json", run_dir);
    if (fileio_read_all(path, &text, &len, err, errlen)) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(err, errlen, "%s: not a JSON object; is this a run directory written by `quarry train`?", path);
        return NULL;
    }
    return j;
}

static int add_hash(cJSON *o, const char *key, const char *path, char *err, size_t errlen) {
    char hex[65];
    if (fileio_sha256_file(path, hex, err, errlen)) return -1;
    return cJSON_AddStringToObject(o, key, hex) ? 0 : -1;
}

// The weight files of a checkpoint: model.safetensors, or the index and the shards it names.
// Calls fn(name, path) for each; stops at the first non-zero return.
typedef int (*weight_file_fn)(void *ctx, const char *name, const char *path, char *err, size_t errlen);
static int for_each_weight_file(const char *dir, weight_file_fn fn, void *ctx, char *err, size_t errlen) {
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (fileio_exists(path)) return fn(ctx, "model.safetensors", path, err, errlen);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    char *text;
    size_t len;
    if (fileio_read_all(path, &text, &len, err, errlen)) return -1;
    cJSON *idx = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(idx);
        snprintf(err, errlen, "%s: no \"weight_map\" object", path);
        return -1;
    }
    int rc = fn(ctx, "model.safetensors.index.json", path, err, errlen);
    // Each shard once, in the order the index first names it.
    cJSON *seen = cJSON_CreateObject();
    for (const cJSON *t = map->child; t && !rc; t = t->next) {
        if (!cJSON_IsString(t) || strchr(t->valuestring, '/') || cJSON_GetObjectItemCaseSensitive(seen, t->valuestring))
            continue;
        cJSON_AddTrueToObject(seen, t->valuestring);
        char shard[4400];
        snprintf(shard, sizeof shard, "%s/%s", dir, t->valuestring);
        rc = fn(ctx, t->valuestring, shard, err, errlen);
    }
    cJSON_Delete(seen);
    cJSON_Delete(idx);
    return rc;
}

static int hash_weight_file(void *ctx, const char *name, const char *path, char *err, size_t errlen) {
    return add_hash(ctx, name, path, err, errlen);
}

cJSON *run_record_inputs(const char *model_dir, const char *data_path, const char *validation_path, char *err,
                         size_t errlen) {
    cJSON *h = cJSON_CreateObject();
    char path[4200];
    int rc = !h || add_hash(h, "data_sha256", data_path, err, errlen);
    if (!rc && validation_path) rc = add_hash(h, "validation_sha256", validation_path, err, errlen);
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    if (!rc) rc = add_hash(h, "model_config_sha256", path, err, errlen);
    snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
    if (!rc) rc = add_hash(h, "tokenizer_sha256", path, err, errlen);
    cJSON *files = rc ? NULL : cJSON_AddObjectToObject(h, "model_weight_files");
    if (!rc) rc = !files || for_each_weight_file(model_dir, hash_weight_file, files, err, errlen);
    if (!rc) {
        const cJSON *first = files->child;   // model.safetensors or the index, as before
        rc = !first || !cJSON_AddStringToObject(h, "model_weights_sha256", first->valuestring);
    }
    if (rc) {
        cJSON_Delete(h);
        return NULL;
    }
    return h;
}

// path's hash against inputs[key] (absent: nothing to check). 0 same, -1 differs or unreadable.
static int check_hash(const cJSON *inputs, const char *key, const char *path, const char *what, const char *fix,
                      char *err, size_t errlen) {
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(inputs, key);
    if (!cJSON_IsString(want)) return 0;
    char hex[65];
    if (fileio_sha256_file(path, hex, err, errlen)) return -1;
    if (strcmp(hex, want->valuestring)) {
        snprintf(err, errlen, "%s is not the %s this run was made from (run.json records sha256 %.12s…, the file has "
                 "%.12s…)\nhint: %s", path, what, want->valuestring, hex, fix);
        return -1;
    }
    return 0;
}

typedef struct { const cJSON *files; const char *fix; int missing; } weight_check;

static int check_weight_file(void *ctx, const char *name, const char *path, char *err, size_t errlen) {
    weight_check *c = ctx;
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(c->files, name);
    if (!cJSON_IsString(want)) {
        snprintf(err, errlen, "%s is not a weight file of the base this run was trained on\nhint: %s", path, c->fix);
        return -1;
    }
    c->missing--;
    char hex[65];
    if (fileio_sha256_file(path, hex, err, errlen)) return -1;
    if (strcmp(hex, want->valuestring)) {
        snprintf(err, errlen, "%s is not the base weight file this run was trained on (run.json records sha256 %.12s…, "
                 "the file has %.12s…)\nhint: %s", path, want->valuestring, hex, c->fix);
        return -1;
    }
    return 0;
}

int run_record_check_base(const cJSON *run, const char *base_dir, char *err, size_t errlen) {
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(run, "inputs");
    if (!cJSON_IsObject(in)) return 0;
    const char *fix = "the run's adapter or weights belong to the base it was trained on; restore that checkpoint, "
                      "or name it with --model/--base";
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", base_dir);
    if (check_hash(in, "model_config_sha256", path, "base config.json", fix, err, errlen)) return -1;
    snprintf(path, sizeof path, "%s/tokenizer.json", base_dir);
    if (check_hash(in, "tokenizer_sha256", path, "base tokenizer.json", fix, err, errlen)) return -1;
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(in, "model_weight_files");
    if (cJSON_IsObject(files)) {
        weight_check c = {files, fix, cJSON_GetArraySize(files)};
        if (for_each_weight_file(base_dir, check_weight_file, &c, err, errlen)) return -1;
        if (c.missing) {
            snprintf(err, errlen, "%s has %d weight file%s fewer than the base this run was trained on\nhint: %s", base_dir,
                     c.missing, c.missing == 1 ? "" : "s", fix);
            return -1;
        }
        return 0;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", base_dir);
    if (!fileio_exists(path)) snprintf(path, sizeof path, "%s/model.safetensors.index.json", base_dir);
    return check_hash(in, "model_weights_sha256", path, "base weight file", fix, err, errlen);
}

int run_record_check_data(const cJSON *run, const char *data_path, const char *validation_path, char *err,
                          size_t errlen) {
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(run, "inputs");
    if (!cJSON_IsObject(in)) return 0;
    const char *fix = "a run continues on the data it started with; restore that file, or start a new run with --out";
    if (check_hash(in, "data_sha256", data_path, "training data", fix, err, errlen)) return -1;
    if (validation_path && check_hash(in, "validation_sha256", validation_path, "validation data", fix, err, errlen))
        return -1;
    return 0;
}
