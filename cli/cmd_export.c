// cli/cmd_export.c — `quarry export RUN|--model DIR --out DIR [--dtype auto|bf16|fp16|fp32]
// [--format merged|peft] [--shard-size 5GB] [--check-data FILE] [--check-records N] [--force]`:
// the package that leaves the building. Before writing a run's merged package it measures how much
// of the fine-tuning survives the rounding to the package dtype (cli/export_check.h).
// Built in OUT.tmp-XXXXXX beside --out (every file fsynced, then quarry-export.json with the
// sha256 of each file), renamed into place, then checked with the CMI preflight (export/cmi.h).
#include "args.h"
#include "commands.h"
#include "diag.h"
#include "export_check.h"
#include "leakcheck_gate.h"
#include "version.h"
#include "../data/fileio.h"
#include "../export/cmi.h"
#include "../export/hf_export.h"
#include "../export/merge.h"
#include "../model/bnb4.h"
#include "../trainer/run_record.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SHARD_BYTES (5ll * 1000 * 1000 * 1000)   // transformers' "5GB"

typedef struct {
    char run[PATH_MAX];          // "" when exporting --model alone
    char base[PATH_MAX];
    char base_name[256];         // the base as the package names it: a hub id or the directory's name
    char method[16];             // "lora", "full" or "none"
    int quant;                   // run.json's settings.quantize (QLoRA): an HF_NF4_*, 0 none
    int into_dequantized;        // --merge-into dequantized: the adapter folded into the NF4 base
    char final_dir[PATH_MAX + 8];
    cJSON *run_json;             // RUN/run.json, or NULL
    cJSON *leakcheck;            // the leak check's entry for quarry-export.json (counts only), or NULL
    cJSON *retention;            // what the package keeps of the fine-tuning (export_check), or NULL
} export_source;

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

// RUN/run.json → base model, method and the final weights.
static int read_run(export_source *s, const char *run, const char *model_override, char *err, size_t errlen) {
    char path[PATH_MAX + 16], *text = NULL;
    size_t len = 0;
    if (!realpath(run, s->run)) {
        snprintf(err, errlen, "%s: %s", run, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/run.json", s->run);
    if (!fileio_exists(path)) {
        snprintf(err, errlen,
                 "%s is not a run directory (no run.json)\nhint: to package a Hugging Face checkpoint, use --model %s",
                 run, run);
        return -1;
    }
    if (fileio_read_all(path, &text, &len, err, errlen)) return -1;
    s->run_json = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(s->run_json)) {
        snprintf(err, errlen, "%s: not valid JSON", path);
        return -1;
    }
    const cJSON *bm = cJSON_GetObjectItemCaseSensitive(s->run_json, "base_model");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(s->run_json, "settings");
    const cJSON *m = cJSON_IsObject(st) ? cJSON_GetObjectItemCaseSensitive(st, "method") : NULL;
    const char *base = model_override ? model_override : cJSON_IsString(bm) ? bm->valuestring : NULL;
    if (!base) {
        snprintf(err, errlen, "%s: no \"base_model\"\nhint: name the base checkpoint with --model DIR", path);
        return -1;
    }
    if (!realpath(base, s->base) || !is_dir(s->base)) {
        snprintf(err, errlen, "%s: the base model %s is not a readable directory\nhint: name it with --model DIR", path,
                 base);
        return -1;
    }
    if (!cJSON_IsString(m) || (strcmp(m->valuestring, "lora") && strcmp(m->valuestring, "full"))) {
        snprintf(err, errlen, "%s: settings.method must be \"lora\" or \"full\"", path);
        return -1;
    }
    snprintf(s->method, sizeof s->method, "%s", m->valuestring);
    const cJSON *qz = cJSON_GetObjectItemCaseSensitive(st, "quantize");
    if (cJSON_IsString(qz) && qz->valuestring[0]) {
        if (strcmp(qz->valuestring, "nf4")) {
            snprintf(err, errlen, "%s: settings.quantize is \"%s\"; this quarry knows nf4", path, qz->valuestring);
            return -1;
        }
        s->quant = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "no_double_quant")) ? HF_NF4_PLAIN
                                                                                          : HF_NF4_DOUBLE_QUANT;
    }
    snprintf(s->final_dir, sizeof s->final_dir, "%s/final", s->run);
    if (!is_dir(s->final_dir)) {
        snprintf(err, errlen, "%s: no final/ directory: the run has not finished\nhint: wait for `quarry train` to end",
                 s->run);
        return -1;
    }
    return 0;
}

// run.json's LoRA settings must be the adapter's (a mismatch means the wrong final/ or run.json).
static int check_run_lora(const export_source *s, const merge_adapter *a, char *err, size_t errlen) {
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(s->run_json, "settings");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(st, "lora_r");
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(st, "lora_alpha");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(st, "rslora");
    if ((cJSON_IsNumber(r) && r->valuedouble != a->r) || (cJSON_IsNumber(al) && al->valuedouble != a->alpha) ||
        (cJSON_IsBool(rs) && cJSON_IsTrue(rs) != a->rslora)) {
        snprintf(err, errlen,
                 "%.1000s/run.json and %.1000s/adapter_config.json disagree on r / lora_alpha / rslora (run: %g / %g / %s; "
                 "adapter: %d / %g / %s)",
                 s->run, a->dir, cJSON_IsNumber(r) ? r->valuedouble : -1, cJSON_IsNumber(al) ? al->valuedouble : -1,
                 cJSON_IsTrue(rs) ? "true" : "false", a->r, a->alpha, a->rslora ? "true" : "false");
        return -1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// The names of the files in dir, sorted (malloc'd; *n set).
static char **list_files(const char *dir, int *n, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return NULL;
    }
    char **names = NULL;
    int cap = 0;
    *n = 0;
    struct dirent *e;
    int oom = 0;
    while (!oom && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 32;
            char **nn = realloc(names, sizeof *nn * (size_t)cap);
            if (!nn) {
                oom = 1;
                break;
            }
            names = nn;
        }
        if (!(names[*n] = strdup(e->d_name))) oom = 1;
        else (*n)++;
    }
    closedir(d);
    if (oom) {
        for (int i = 0; i < *n; i++) free(names[i]);
        free(names);
        snprintf(err, errlen, "out of memory listing %s", dir);
        return NULL;
    }
    if (*n) qsort(names, (size_t)*n, sizeof *names, cmp_str);
    if (!names) names = calloc(1, sizeof *names);
    return names;
}

// --out must not be, contain or lie inside what the package is made from: with --force,
// put_in_place moves --out aside and deletes it (the run's checkpoints and run.json, its final/
// weights, the base every other run of it needs). Compared as resolved paths (symlinks followed).
static int check_out_spares_source(const char *out, const export_source *s, char *err, size_t errlen) {
    char o[PATH_MAX], p[PATH_MAX];
    if (fileio_resolve_path(out, o, sizeof o, err, errlen)) return -1;
    const char *what[3], *dirs[3];
    int n = 0;
    if (s->run[0]) {
        what[n] = "the run's final weights", dirs[n++] = s->final_dir;   // before the run: the closer name
        what[n] = "the run directory", dirs[n++] = s->run;
        what[n] = "the run's base model", dirs[n++] = s->base;
    } else {
        what[n] = "the checkpoint being packaged", dirs[n++] = s->base;
    }
    for (int i = 0; i < n; i++) {
        if (fileio_resolve_path(dirs[i], p, sizeof p, err, errlen)) return -1;
        // final/ is named when --out is it or lies inside it; an --out holding it holds the run.
        const char *how = !strcmp(o, p)                                ? "is"
                          : fileio_path_within(o, p)                 ? "lies inside"
                          : dirs[i] != s->final_dir && fileio_path_within(p, o) ? "contains"
                                                                       : NULL;
        if (how) {
            snprintf(err, errlen,
                     "--out %.1000s %s %s %.1000s; exporting there would destroy it (--force does not change this)\n"
                     "hint: choose an --out outside %s",
                     out, how, what[i], dirs[i], s->run[0] ? "the run and its base model" : "the checkpoint");
            return -1;
        }
    }
    return 0;
}

// A name for the base that means something off this machine: config.json's _name_or_path when
// it is a hub id ("org/model"), else the directory's own name, never a local path.
static void base_identifier(const char *base, char *name, size_t n) {
    char path[PATH_MAX + 16], *text = NULL, e[256];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", base);
    cJSON *c = fileio_read_all(path, &text, &len, e, sizeof e) ? NULL : cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *np = cJSON_GetObjectItemCaseSensitive(c, "_name_or_path");
    const char *id = cJSON_IsString(np) ? np->valuestring : "";
    int hub = id[0] && id[0] != '.' && id[0] != '/' && id[0] != '~' && strlen(id) < n && !strstr(id, "..");
    for (const char *q = id, *slash = NULL; hub && *q; q++) {
        if (*q == '/') {
            hub = !slash && q[1];   // at most one '/', not trailing
            slash = q;
        } else if (!(*q == '-' || *q == '_' || *q == '.' || (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'z') ||
                     (*q >= 'A' && *q <= 'Z'))) {
            hub = 0;
        }
    }
    if (hub) {
        snprintf(name, n, "%s", id);
    } else {
        const char *slash = strrchr(base, '/');
        snprintf(name, n, "%.255s", slash && slash[1] ? slash + 1 : base);
    }
    cJSON_Delete(c);
}

// The run's settings minus what names a local file (the base, the data, the run itself): the
// package leaves the building, paths stay. The inputs are recorded by hash instead.
static cJSON *portable_settings(const cJSON *settings) {
    cJSON *d = cJSON_Duplicate(settings, 1);
    for (cJSON *it = d ? d->child : NULL, *next; it; it = next) {
        next = it->next;
        if (!strcmp(it->string, "model") || !strcmp(it->string, "data") || !strcmp(it->string, "validation") ||
            !strcmp(it->string, "out") || (cJSON_IsString(it) && strchr(it->valuestring, '/')))
            cJSON_Delete(cJSON_DetachItemViaPointer(d, it));
    }
    return d;
}

// source.base_model_sha256 and source.data from run.json: what the run was made from, by hash
// and count only.
static int add_source_inputs(cJSON *src, const cJSON *run) {
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(run, "inputs");
    if (!cJSON_IsObject(in)) return 1;
    cJSON *b = cJSON_AddObjectToObject(src, "base_model_sha256"), *d = cJSON_AddObjectToObject(src, "data");
    if (!b || !d) return 0;
    static const char *const base_keys[] = {"model_config_sha256", "tokenizer_sha256", "model_weight_files",
                                            "model_weights_sha256"};
    for (size_t i = 0; i < sizeof base_keys / sizeof *base_keys; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, base_keys[i]);
        if (v && !cJSON_AddItemToObject(b, base_keys[i], cJSON_Duplicate(v, 1))) return 0;
    }
    static const char *const data_keys[][2] = {{"data_sha256", "sha256"}, {"validation_sha256", "validation_sha256"}};
    for (size_t i = 0; i < sizeof data_keys / sizeof *data_keys; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, data_keys[i][0]);
        if (cJSON_IsString(v) && !cJSON_AddStringToObject(d, data_keys[i][1], v->valuestring)) return 0;
    }
    static const char *const counts[] = {"train_examples", "validation_examples", "truncated_examples"};
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(run, counts[i]);
        if (cJSON_IsNumber(v) && !cJSON_AddNumberToObject(d, counts[i], v->valuedouble)) return 0;
    }
    // run.json "records": {"data": {"records": N, ...}, "validation": {...}}: the counts only,
    // not the per-record lists (line numbers of the data stay here).
    const cJSON *recs = cJSON_GetObjectItemCaseSensitive(run, "records");
    static const char *const rec_keys[][2] = {{"data", "records"}, {"validation", "validation_records"}};
    for (size_t i = 0; i < sizeof rec_keys / sizeof *rec_keys; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(recs, rec_keys[i][0]), "records");
        if (cJSON_IsNumber(v) && !cJSON_AddNumberToObject(d, rec_keys[i][1], v->valuedouble)) return 0;
    }
    return 1;
}

// quarry-export.json: what was exported from what, with which settings, and each file's sha256.
static int write_record(const char *tmp, const export_source *s, const char *format, st_dtype dtype,
                        long long shard_bytes, const merge_adapter *a, char *err, size_t errlen) {
    int n = 0;
    char **names = list_files(tmp, &n, err, errlen);
    if (!names) return -1;
    cJSON *o = cJSON_CreateObject(), *files = cJSON_CreateObject(), *src = cJSON_CreateObject();
    int ok = o && files && src;
    char when[32] = "";
    time_t now = time(NULL);
    struct tm tmv;
    if (gmtime_r(&now, &tmv)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    ok = ok && cJSON_AddStringToObject(o, "quarry_version", QUARRY_VERSION) &&
         cJSON_AddStringToObject(o, "quarry_commit", QUARRY_GIT_COMMIT) && cJSON_AddStringToObject(o, "created", when) &&
         cJSON_AddStringToObject(o, "format", format) &&
         cJSON_AddStringToObject(o, "dtype", st_dtype_torch_name(dtype)) &&
         (strcmp(format, "merged") || cJSON_AddNumberToObject(o, "shard_size", (double)shard_bytes));
    if (ok) {
        const char *run_name = strrchr(s->run, '/');
        ok = (s->run[0] ? cJSON_AddStringToObject(src, "run", run_name ? run_name + 1 : s->run) != NULL
                        : cJSON_AddNullToObject(src, "run") != NULL) &&
             cJSON_AddStringToObject(src, "base_model", s->base_name) && cJSON_AddStringToObject(src, "method", s->method) &&
             (!s->quant || cJSON_AddStringToObject(src, "merged_into", s->into_dequantized ? "dequantized nf4 base"
                                                                                             : "original base") != NULL) &&
             (!s->run_json || add_source_inputs(src, s->run_json));
        if (ok) ok = cJSON_AddItemToObject(o, "source", src);
        else cJSON_Delete(src);
        src = NULL;
    }
    const cJSON *settings = s->run_json ? cJSON_GetObjectItemCaseSensitive(s->run_json, "settings") : NULL;
    if (ok) {
        cJSON *d = settings ? portable_settings(settings) : cJSON_CreateNull();
        ok = d && cJSON_AddItemToObject(o, "settings", d);
    }
    if (ok && s->leakcheck) ok = cJSON_AddItemReferenceToObject(o, "leakcheck", s->leakcheck);
    if (ok && s->retention) ok = cJSON_AddItemReferenceToObject(o, "retention", s->retention);
    if (ok && a) {
        cJSON *l = cJSON_CreateObject();
        ok = l && cJSON_AddNumberToObject(l, "r", a->r) && cJSON_AddNumberToObject(l, "lora_alpha", a->alpha) &&
             cJSON_AddBoolToObject(l, "use_rslora", a->rslora) && cJSON_AddNumberToObject(l, "scale", a->scale) &&
             cJSON_AddItemToObject(o, "lora", l);
        if (!ok && l) cJSON_Delete(l);
    }
    for (int i = 0; ok && i < n; i++) {
        char path[PATH_MAX + 300], hex[65];
        snprintf(path, sizeof path, "%s/%s", tmp, names[i]);
        struct stat st;
        if (stat(path, &st) != 0 || fileio_sha256_file(path, hex, err, errlen)) {
            if (!err[0]) snprintf(err, errlen, "%s: %s", path, strerror(errno));
            ok = -1;
            break;
        }
        cJSON *f = cJSON_CreateObject();
        ok = f && cJSON_AddNumberToObject(f, "bytes", (double)st.st_size) && cJSON_AddStringToObject(f, "sha256", hex) &&
             cJSON_AddItemToObject(files, names[i], f);
        if (!ok && f) cJSON_Delete(f);
    }
    if (ok == 1) {
        ok = cJSON_AddItemToObject(o, "files", files);
        files = NULL;
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    char *text = ok == 1 ? cJSON_Print(o) : NULL;
    cJSON_Delete(files);
    cJSON_Delete(src);
    cJSON_Delete(o);
    if (!text) {
        if (ok != -1) snprintf(err, errlen, "out of memory writing quarry-export.json");
        return -1;
    }
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/quarry-export.json", tmp);
    size_t len = strlen(text);
    text[len] = 0;
    char *withnl = realloc(text, len + 2);
    if (!withnl) {
        free(text);
        snprintf(err, errlen, "out of memory writing quarry-export.json");
        return -1;
    }
    withnl[len] = '\n';
    withnl[len + 1] = 0;
    int rc = fileio_write_atomic(path, withnl, len + 1, err, errlen);
    free(withnl);
    return rc;
}

// tmp → out. An existing non-empty out (allowed by --force) is moved aside first and removed
// only after the new package is in place.
static int put_in_place(const char *tmp, const char *out, char *err, size_t errlen) {
    char old[PATH_MAX + 64] = "";
    struct stat st;
    if (stat(out, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a directory; refusing to replace it", out);
            return -1;
        }
        if (fileio_is_empty_or_absent(out)) {
            if (rmdir(out) != 0) {
                snprintf(err, errlen, "cannot replace the empty directory %s: %s", out, strerror(errno));
                return -1;
            }
        } else {
            snprintf(old, sizeof old, "%s.old-%ld", out, (long)getpid());
            if (rename(out, old) != 0) {
                snprintf(err, errlen, "cannot move %s aside to %s: %s", out, old, strerror(errno));
                return -1;
            }
        }
    }
    if (rename(tmp, out) != 0) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
        if (old[0] && rename(old, out) != 0)
            fprintf(stderr, "quarry export: warning: the previous %s is at %s\n", out, old);
        return -1;
    }
    char parent[PATH_MAX + 8];
    snprintf(parent, sizeof parent, "%s", out);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) *slash = 0;
    else snprintf(parent, sizeof parent, slash ? "/" : ".");
    if (fileio_fsync_path(parent, err, errlen)) return -1;
    if (old[0] && fileio_remove_tree(old, err, errlen))
        fprintf(stderr, "quarry export: warning: could not remove the previous package %s: %s\n", old, err);
    return 0;
}

// After a PEFT export: the adapter reads back, its shapes fit the base, every value is finite.
static int check_peft(const char *out, const char *base, char *err, size_t errlen) {
    merge_adapter a;
    if (merge_adapter_open(&a, out, err, errlen)) return -1;
    st_set *b = st_open(base, err, errlen);
    int rc = b ? 0 : -1;
    for (int i = 0; !rc && i < st_count(b); i++) {
        const st_tensor *t = st_get(b, i), *A, *B;
        if (t->ndim == 2 && merge_adapter_find(&a, t->name, t->shape[0], t->shape[1], &A, &B, err, errlen) < 0) rc = -1;
    }
    for (int i = 0; !rc && i < st_count(a.weights); i++) {
        const st_tensor *t = st_get(a.weights, i);
        size_t n = (size_t)t->shape[0] * (size_t)t->shape[1];
        float *v = malloc(n * sizeof(float) + 4);
        if (!v || st_read_f32(t, v)) {
            snprintf(err, errlen, "%s: cannot read %s", out, t->name);
            rc = -1;
        }
        for (size_t k = 0; !rc && k < n; k++)
            if (v[k] != v[k] || v[k] - v[k] != 0.0f) {
                snprintf(err, errlen, "%s: %s has a NaN or Inf at element %zu", out, t->name, k);
                rc = -1;
            }
        free(v);
    }
    if (b) st_close(b);
    merge_adapter_close(&a);
    return rc;
}

// The check records: --check-data, else the run's validation file, else a sample of its training
// data (settings.validation / settings.data of run.json).
static const char *check_data_path(const export_source *s, const char *flag, const char **kind) {
    if (flag) {
        *kind = "check-data";
        return flag;
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(s->run_json, "settings");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(st, "validation"), *d = cJSON_GetObjectItemCaseSensitive(st, "data");
    if (cJSON_IsString(v) && v->valuestring[0]) {
        *kind = "validation";
        return v->valuestring;
    }
    *kind = "training-sample";
    return cJSON_IsString(d) ? d->valuestring : NULL;
}

// What the merged package keeps of the run (export_check): measured for *dtype, or for fp16 and
// bf16 with auto (which then sets *dtype). A check that cannot run is an error only when
// --check-data named its file; else a warning, and auto keeps the base's dtype. 0 ok; -1 + message.
static int check_retention(export_source *s, const hf_export_options *ho, const char *flag, int records, int is_auto,
                           st_dtype *dtype, int quiet, char *err, size_t errlen) {
    const char *kind, *data = check_data_path(s, flag, &kind);
    st_dtype both[2] = {ST_F16, ST_BF16};
    export_check_options co = {s->run, ho, data, kind, records, is_auto ? both : dtype, is_auto ? 2 : 1, quiet};
    export_check r;
    char e[4096] = "";
    if (!quiet) fprintf(stderr, "quarry export: measuring what the package keeps over %d records of %s\n", records,
                        data ? data : "(none)");
    if (!data) snprintf(e, sizeof e, "run.json names no data file");
    if (e[0] || export_check_measure(&co, &r, e, sizeof e)) {
        if (flag) {
            snprintf(err, errlen, "--check-data %s: %s", flag, e);
            return -1;
        }
        fprintf(stderr, "quarry export: warning: cannot measure what the package keeps of the run: %s\n"
                        "hint: name the check records with --check-data FILE%s\n", e,
                is_auto ? "; --dtype auto keeps the base's dtype" : "");
        s->retention = cJSON_CreateObject();
        if (s->retention && (!cJSON_AddBoolToObject(s->retention, "measured", 0) ||
                             !cJSON_AddStringToObject(s->retention, "reason", "the check records could not be read"))) {
            cJSON_Delete(s->retention);
            s->retention = NULL;
        }
        return 0;
    }
    if (is_auto) {
        char why[256];
        *dtype = export_check_choose(&r, why, sizeof why);
        printf("dtype       %s (--dtype auto: %s)\n", st_dtype_torch_name(*dtype), why);
    }
    export_check_print(&r, *dtype, is_auto, stdout);
    fflush(stdout);   // before the warnings and progress lines on stderr
    if (!(s->retention = export_check_to_json(&r, *dtype, is_auto))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int cmd_export(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *dtype_s = NULL, *format = "merged", *check_data = NULL;
    long long shard = DEFAULT_SHARD_BYTES;
    int check_records = EXPORT_CHECK_DEFAULT_RECORDS;
    int force = 0, quiet = 0, accept_leaks = 0, skip_leakcheck = 0;
    const char *merge_into = NULL;
    const arg_spec specs[] = {
        {"model", ARG_STRING, &model, "DIR",
         "the base Hugging Face checkpoint (default: run.json's base_model); alone, package DIR itself"},
        {"out", ARG_STRING, &out, "DIR", "the package directory to create (must be absent or empty without --force)"},
        {"dtype", ARG_STRING, &dtype_s, "auto|bf16|fp16|fp32",
         "weight dtype (default: auto for a run on a bf16 base, else the base's; a PEFT adapter keeps its own). "
         "auto: fp16 where it measured safe, else bf16"},
        {"format", ARG_STRING, &format, "merged|peft",
         "merged: full weights with the LoRA folded in (what Bedrock imports); peft: the adapter alone"},
        {"merge-into", ARG_STRING, &merge_into, "original|dequantized",
         "a QLoRA run (--quantize nf4): fold the adapter into the base's original 16-bit weights (default), or into "
         "the NF4-dequantised weights it was trained against"},
        {"shard-size", ARG_BYTES, &shard, "SIZE", "largest safetensors shard (default 5GB)"},
        {"check-data", ARG_STRING, &check_data, "FILE",
         "Bedrock JSONL over which the package's loss is compared with the run's (default: the run's validation "
         "file, else its training data)"},
        {"check-records", ARG_INT, &check_records, "N",
         "records of the check data, evenly spaced (default 4; 0: no check)"},
        {"force", ARG_FLAG, &force, NULL, "replace a non-empty --out (never the run, its final/ or its base)"},
        {"quiet", ARG_FLAG, &quiet, NULL, "no progress lines"},
        {"accept-leaks", ARG_FLAG, &accept_leaks, NULL, "package a run whose leak check found reproduced secrets"},
        {"skip-leakcheck", ARG_FLAG, &skip_leakcheck, NULL, "no leak check (recorded in the package; not recommended)"},
    };
    const arg_parser p = {
        "export",
        "quarry export RUN|--model DIR --out DIR [--dtype auto|bf16|fp16|fp32] [--format merged|peft] [--shard-size 5GB] "
        "[--check-data FILE] [--check-records N] [--force]",
        "Packages a finished run (or a Hugging Face checkpoint) for Amazon Bedrock Custom Model Import.\n"
        "merged: LoRA folded into the base weights in fp32 and rounded once to --dtype; safetensors\n"
        "shards with model.safetensors.index.json, config.json (only torch_dtype changed),\n"
        "generation_config.json and the base's tokenizer files. peft: adapter_config.json +\n"
        "adapter_model.safetensors as PEFT writes them. The package is built beside --out, fsynced\n"
        "and renamed into place; quarry-export.json records the source, settings and each file's\n"
        "sha256. A merged package is then checked with `quarry preflight` (exit 1 if it fails).\n"
        "A run's merged package is first measured: the loss of the run, of the base and of the package as\n"
        "written (fp32 compute on the CPU) over a few check records, and the share of the run's improvement\n"
        "over the base the package retains, per dtype (printed, and recorded in quarry-export.json).\n"
        "A run is first leak-checked (`quarry leakcheck`: its current report is read, or the check runs):\n"
        "weights that give back secrets of the training data are refused without --accept-leaks.",
        specs, (int)(sizeof specs / sizeof specs[0]), 0, 1};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;
    if (!out || (!npos && !model)) {
        fprintf(stderr, "quarry export: error: give a RUN directory or --model DIR, and --out DIR\nusage: %s\n", p.usage);
        return 2;
    }
    int peft = !strcmp(format, "peft");
    if (!peft && strcmp(format, "merged")) {
        fprintf(stderr, "quarry export: error: --format must be merged or peft, got '%s'\n", format);
        return 2;
    }
    if (merge_into && strcmp(merge_into, "original") && strcmp(merge_into, "dequantized")) {
        fprintf(stderr, "quarry export: error: --merge-into must be original or dequantized, got '%s'\n", merge_into);
        return 2;
    }
    int into_dequantized = merge_into && !strcmp(merge_into, "dequantized");
    st_dtype dtype = ST_OTHER;
    int dtype_auto = dtype_s && !strcmp(dtype_s, "auto");
    if (dtype_s && !dtype_auto && hf_dtype_parse(dtype_s, &dtype)) {
        fprintf(stderr,
                "quarry export: error: --dtype must be auto, bf16, fp16 or fp32 (CMI accepts nothing else), got '%s'\n",
                dtype_s);
        return 2;
    }
    if (check_records < 0 || (check_data && check_records == 0)) {
        fprintf(stderr, "quarry export: error: --check-records must be ≥ 1 (or 0, no check, without --check-data)\n");
        return 2;
    }
    if (shard < 1) {
        fprintf(stderr, "quarry export: error: --shard-size must be positive\n");
        return 2;
    }
    // "out/" would put the temporary directory inside out: work on the name without the slash.
    char out_buf[PATH_MAX];
    snprintf(out_buf, sizeof out_buf, "%s", out);
    for (size_t l = strlen(out_buf); l > 1 && out_buf[l - 1] == '/'; l--) out_buf[l - 1] = 0;
    out = out_buf;

    char err[8192] = "";
    export_source src;
    memset(&src, 0, sizeof src);
    merge_adapter adapter;
    int have_adapter = 0;
    char tmp[PATH_MAX + 32] = "";
    rc = 1;
    if (npos) {
        if (read_run(&src, pos[0], model, err, sizeof err)) goto fail;
    } else {
        if (!realpath(model, src.base) || !is_dir(src.base)) {
            snprintf(err, sizeof err, "%s: not a readable directory", model);
            goto fail;
        }
        snprintf(src.method, sizeof src.method, "none");
    }
    base_identifier(src.base, src.base_name, sizeof src.base_name);
    if (check_out_spares_source(out, &src, err, sizeof err) || fileio_check_dir_path(out, err, sizeof err)) goto fail;
    if (!fileio_is_empty_or_absent(out) && !force) {
        snprintf(err, sizeof err, "%s exists and is not empty; refusing to overwrite it\n"
                 "hint: choose a new --out, or add --force to replace it", out);
        goto fail;
    }
    // Last of the checks: it reads every base weight file (once per process).
    if (src.run_json && run_record_check_base(src.run_json, src.base, err, sizeof err)) goto fail;
    // Before weights leave: the run's leak check (its current report, or the check itself).
    if (src.run[0] && leakcheck_gate_export(src.run, accept_leaks, skip_leakcheck, &src.leakcheck, err, sizeof err))
        goto fail;
    src.into_dequantized = into_dequantized;
    int dq = 0;   // a base only in bitsandbytes' 4-bit layout is exported dequantised either way
    if (into_dequantized && !src.quant && bnb4_detect(src.base, &dq, err, sizeof err) == 1)
        src.quant = dq ? HF_NF4_DOUBLE_QUANT : HF_NF4_PLAIN;
    if (into_dequantized && (!src.quant || peft)) {
        snprintf(err, sizeof err, "--merge-into dequantized applies to a merged export of a QLoRA run (trained with "
                 "--quantize nf4); %s %s", src.run[0] ? src.run : src.base,
                 peft ? "is exported as an adapter (--format peft)" : "has a 16-bit base");
        goto fail;
    }
    if (!strcmp(src.method, "lora")) {
        if (merge_adapter_open(&adapter, src.final_dir, err, sizeof err)) goto fail;
        have_adapter = 1;
        if (check_run_lora(&src, &adapter, err, sizeof err)) goto fail;
    } else if (peft) {
        snprintf(err, sizeof err, "--format peft needs a LoRA run (%s has no adapter)",
                 src.run[0] ? src.run : src.base);
        goto fail;
    }
    if (dtype == ST_OTHER) {
        if (peft) {
            dtype = st_get(adapter.weights, 0)->dtype;
        } else if (hf_base_dtype(src.base, &dtype, err, sizeof err)) {
            goto fail;
        }
        // A run on a bf16 base: fp16 keeps 3 more mantissa bits of the update where it fits.
        if (!dtype_s && dtype == ST_BF16 && !peft && strcmp(src.method, "none")) dtype_auto = 1;
    }
    int fine_tuned = strcmp(src.method, "none") != 0;
    if (!peft && fine_tuned && check_records > 0) {
        // The package as it will be written: a QLoRA run's --merge-into included.
        hf_export_options ho = {src.base, have_adapter ? &adapter : NULL, !strcmp(src.method, "full") ? src.final_dir : NULL,
                                dtype, (size_t)shard, quiet, into_dequantized ? src.quant : 0};
        if (check_retention(&src, &ho, check_data, check_records, dtype_auto, &dtype, quiet, err, sizeof err)) goto fail;
    } else if (peft) {
        // The adapter stays apart from the base: nothing of the update is rounded into it.
        int own = dtype == st_get(adapter.weights, 0)->dtype;
        src.retention = cJSON_CreateObject();
        if (!src.retention || !cJSON_AddBoolToObject(src.retention, "measured", 0) ||
            !(own ? cJSON_AddNumberToObject(src.retention, "retained", 1.0)
                  : cJSON_AddNullToObject(src.retention, "retained")) ||
            !cJSON_AddStringToObject(src.retention, "why",
                                     own ? "by construction: the adapter is kept apart from the base, in its own dtype"
                                         : "the adapter was rounded to another dtype than its own; not measured")) {
            snprintf(err, sizeof err, "out of memory");
            goto fail;
        }
        printf("retention   %s\n", own ? "100% by construction (the adapter stays apart from the base, in its own dtype)"
                                       : "not measured: --dtype rounds the adapter to another dtype than its own");
    } else if (check_data) {
        snprintf(err, sizeof err, "--check-data needs a run: %s is a checkpoint with no fine-tuning to measure",
                 src.base);
        goto fail;
    }

    snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", out);
    if (!mkdtemp(tmp)) {
        snprintf(err, sizeof err, "cannot create a directory beside %s: %s", out, strerror(errno));
        tmp[0] = 0;
        goto fail;
    }
    mode_t mask = umask(0);   // mkdtemp makes 0700; the package gets the usual permissions
    umask(mask);
    if (chmod(tmp, 0777 & ~mask) != 0) {
        snprintf(err, sizeof err, "chmod %s: %s", tmp, strerror(errno));
        goto fail;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!quiet)
        fprintf(stderr, "quarry export: %s %s of %s (%s) in %s\n", peft ? "PEFT adapter" : "merged weights",
                src.run[0] ? src.run : src.base, src.base, src.method, st_dtype_torch_name(dtype));
    if (peft) {
        if (hf_export_peft(&adapter, src.base_name, dtype, tmp, err, sizeof err)) goto fail;
    } else {
        char weights[PATH_MAX + 32];
        snprintf(weights, sizeof weights, "%s", src.final_dir);
        hf_export_options o = {src.base, have_adapter ? &adapter : NULL, !strcmp(src.method, "full") ? weights : NULL,
                               dtype, (size_t)shard, quiet, into_dequantized ? src.quant : 0};
        if (hf_export_merged(&o, tmp, err, sizeof err)) goto fail;
    }
    if (write_record(tmp, &src, peft ? "peft" : "merged", dtype, shard, have_adapter ? &adapter : NULL, err,
                     sizeof err) ||
        fileio_fsync_path(tmp, err, sizeof err) || put_in_place(tmp, out, err, sizeof err))
        goto fail;
    tmp[0] = 0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "quarry export: wrote %s in %.1f s\n", out,
            (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));

    if (peft) {
        if (check_peft(out, src.base, err, sizeof err)) {
            fprintf(stderr, "quarry export: error: the written adapter does not check: %s\n", err);
            rc = 1;
        } else {
            printf("PASS  adapter        %s reads back, fits %s, all values finite\n"
                   "preflight: not run (Bedrock CMI imports merged weights; use --format merged for it)\n",
                   out, src.base);
            rc = 0;
        }
    } else {
        cmi_report r;
        if (cmi_preflight(out, &r)) {
            fprintf(stderr, "quarry export: error: out of memory in preflight\n");
            rc = 1;
        } else {
            cmi_report_print(&r, out, stdout);
            rc = r.failed ? 1 : 0;
            if (r.failed)
                fprintf(stderr, "quarry export: error: %s was written but fails the CMI preflight (see above)\n", out);
        }
        cmi_report_free(&r);
    }
    if (have_adapter) merge_adapter_close(&adapter);
    cJSON_Delete(src.run_json);
    cJSON_Delete(src.leakcheck);
    cJSON_Delete(src.retention);
    return rc;
fail:
    cli_error("export", "%s", err);
    if (tmp[0]) {
        char e2[512];
        if (fileio_remove_tree(tmp, e2, sizeof e2)) fprintf(stderr, "quarry export: warning: %s\n", e2);
    }
    if (have_adapter) merge_adapter_close(&adapter);
    cJSON_Delete(src.run_json);
    cJSON_Delete(src.leakcheck);
    cJSON_Delete(src.retention);
    return 1;
}
