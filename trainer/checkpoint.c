// trainer/checkpoint.c — see checkpoint.h.
#include "checkpoint.h"
#include "../data/fileio.h"
#include "../model/safetensors.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int checkpoint_test_kill_midway = 0;

// Host copies of one f32 field of every trained tensor; one allocation for all of them.
typedef enum { FIELD_MASTER, FIELD_M, FIELD_V } field;

static float *gather(model *m, backend *be, field f, char *err, size_t errlen) {
    size_t total = 0;
    int n = model_trained_count(m);
    for (int i = 0; i < n; i++) total += model_trained_at(m, i)->n;
    float *host = malloc(sizeof(float) * (total ? total : 1));
    if (!host) { snprintf(err, errlen, "out of host memory for a checkpoint (%.2f GiB)", total * 4.0 / 1073741824.0); return NULL; }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        model_param *p = model_trained_at(m, i);
        if (f == FIELD_MASTER) {
            if (model_param_read(m, p, host + off)) { snprintf(err, errlen, "cannot read %s", p->name); free(host); return NULL; }
        } else {
            be->copy_to_host(be, host + off, f == FIELD_M ? p->m : p->v, sizeof(float) * p->n);
        }
        off += p->n;
    }
    return host;
}

static int write_tensors(const char *path, model *m, const float *host, const char *suffix, char *err, size_t errlen) {
    st_writer *w = st_writer_begin();
    if (!w) { snprintf(err, errlen, "out of memory"); return -1; }
    int n = model_trained_count(m);
    size_t off = 0;
    char (*names)[192] = malloc(sizeof *names * (n ? n : 1));
    if (!names) { st_writer_free(w); snprintf(err, errlen, "out of memory"); return -1; }
    for (int i = 0; i < n; i++) {
        model_param *p = model_trained_at(m, i);
        snprintf(names[i], sizeof names[i], "%s%s", p->name, suffix);
        if (st_writer_add(w, names[i], ST_F32, p->ndim, p->shape, host + off, sizeof(float) * p->n)) {
            snprintf(err, errlen, "%s: cannot add tensor %s", path, names[i]);
            st_writer_free(w);
            free(names);
            return -1;
        }
        off += p->n;
    }
    int rc = st_writer_finish(w, path, NULL, NULL, 0, err, errlen);
    st_writer_free(w);
    free(names);
    return rc;
}

int checkpoint_write_trained(const char *path, model *m, char *err, size_t errlen) {
    float *host = gather(m, NULL, FIELD_MASTER, err, errlen);
    if (!host) return -1;
    int rc = write_tensors(path, m, host, "", err, errlen);
    free(host);
    return rc;
}

static int write_state(const char *path, const train_state *st, char *err, size_t errlen) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", st->step);
    cJSON_AddNumberToObject(o, "epoch", st->epoch);
    cJSON_AddNumberToObject(o, "next_row", st->next_row);
    cJSON_AddNumberToObject(o, "adam_step", st->adam_step);
    cJSON_AddNumberToObject(o, "nan_streak", st->nan_streak);
    cJSON_AddNumberToObject(o, "nan_skipped", st->nan_skipped);
    cJSON_AddNumberToObject(o, "evals_without_improvement", st->evals_without_improvement);
    // JSON has no infinity: store the loss as text so every bit survives.
    char best[64];
    snprintf(best, sizeof best, "%a", st->best_val_loss);
    cJSON_AddStringToObject(o, "best_val_loss", best);
    cJSON_AddNumberToObject(o, "tokens_seen", (double)st->tokens_seen);
    cJSON_AddNumberToObject(o, "train_seconds", st->train_seconds);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) { snprintf(err, errlen, "out of memory"); return -1; }
    int rc = fileio_write_atomic(path, text, strlen(text), err, errlen);
    free(text);
    return rc;
}

static int step_of(const char *name) {
    if (strncmp(name, "step-", 5)) return -1;
    char *end;
    long v = strtol(name + 5, &end, 10);
    return *end || v < 0 || v > 1000000000 ? -1 : (int)v;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

int checkpoint_save(const char *run_dir, model *m, backend *be, const train_state *st, int keep, char *err, size_t errlen) {
    char dir[4096], tmp[4200], final_dir[4200], path[4400];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    snprintf(tmp, sizeof tmp, "%s/.step-%d.tmp", dir, st->step);
    snprintf(final_dir, sizeof final_dir, "%s/step-%d", dir, st->step);
    if (fileio_mkdir_p(dir, err, errlen) || fileio_remove_tree(tmp, err, errlen) || fileio_mkdir_p(tmp, err, errlen))
        return -1;
    static const struct { field f; const char *file; } parts[] = {
        {FIELD_MASTER, "trained.safetensors"}, {FIELD_M, "adam_m.safetensors"}, {FIELD_V, "adam_v.safetensors"},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        float *host = gather(m, be, parts[i].f, err, errlen);
        if (!host) goto fail;
        snprintf(path, sizeof path, "%s/%s", tmp, parts[i].file);
        int rc = write_tensors(path, m, host, "", err, errlen);
        free(host);
        if (rc) goto fail;
    }
    if (checkpoint_test_kill_midway) raise(SIGKILL);
    snprintf(path, sizeof path, "%s/trainer_state.json", tmp);
    if (write_state(path, st, err, errlen) || fileio_fsync_path(tmp, err, errlen)) goto fail;
    if (fileio_remove_tree(final_dir, err, errlen)) goto fail;  // a stale one from a run resumed before it
    if (rename(tmp, final_dir) != 0) { snprintf(err, errlen, "%s: cannot rename to %s", tmp, final_dir); goto fail; }
    if (fileio_fsync_path(dir, err, errlen)) return -1;

    // Keep the newest `keep` complete checkpoints.
    DIR *d = opendir(dir);
    if (!d) return 0;
    int steps[4096], n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        int s = step_of(e->d_name);
        if (s >= 0) steps[n++] = s;
    }
    closedir(d);
    qsort(steps, n, sizeof(int), cmp_int);
    for (int i = 0; i + keep < n; i++) {
        char old[4300], ignore[256];
        snprintf(old, sizeof old, "%s/step-%d", dir, steps[i]);
        fileio_remove_tree(old, ignore, sizeof ignore);
    }
    return 0;
fail: {
        char ignore[256];
        fileio_remove_tree(tmp, ignore, sizeof ignore);
        return -1;
    }
}

int checkpoint_find_latest(const char *run_dir, char *path, size_t pathlen) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        int s = step_of(e->d_name);
        if (s > best) {
            char state[4400];
            snprintf(state, sizeof state, "%s/%s/trainer_state.json", dir, e->d_name);
            if (fileio_exists(state)) best = s;
        }
    }
    closedir(d);
    if (best < 0) return 0;
    snprintf(path, pathlen, "%s/step-%d", dir, best);
    return 1;
}

static int load_field(const char *path, model *m, backend *be, field f, char *err, size_t errlen) {
    st_set *s = st_open(path, err, errlen);
    if (!s) return -1;
    int n = model_trained_count(m), rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        model_param *p = model_trained_at(m, i);
        const st_tensor *t = st_find(s, p->name);
        if (!t || t->nbytes != sizeof(float) * p->n || t->dtype != ST_F32) {
            snprintf(err, errlen, "%s: tensor %s is %s; this checkpoint was written for other settings "
                     "(resume with the same --method, --lora-r and --lora-targets)", path, p->name,
                     t ? "of another shape" : "missing");
            rc = -1;
            break;
        }
        float *host = malloc(t->nbytes);
        if (!host || st_read_f32(t, host)) { snprintf(err, errlen, "%s: cannot read %s", path, p->name); free(host); rc = -1; break; }
        if (f == FIELD_MASTER) rc = model_param_write(m, p, host);
        else be->copy_to_device(be, f == FIELD_M ? p->m : p->v, host, t->nbytes);
        free(host);
        if (rc) snprintf(err, errlen, "%s: cannot restore %s", path, p->name);
    }
    if (!rc && st_count(s) != n) {
        snprintf(err, errlen, "%s: holds %d tensors, the model trains %d; resume with the same settings", path, st_count(s), n);
        rc = -1;
    }
    st_close(s);
    return rc;
}

static int json_int(const cJSON *o, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) return -1;
    *out = v->valueint;
    return 0;
}

int checkpoint_load(const char *ckpt_dir, model *m, backend *be, train_state *st, char *err, size_t errlen) {
    char path[4400];
    static const struct { field f; const char *file; } parts[] = {
        {FIELD_MASTER, "trained.safetensors"}, {FIELD_M, "adam_m.safetensors"}, {FIELD_V, "adam_v.safetensors"},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", ckpt_dir, parts[i].file);
        if (load_field(path, m, be, parts[i].f, err, errlen)) return -1;
    }
    snprintf(path, sizeof path, "%s/trainer_state.json", ckpt_dir);
    char *text;
    size_t len;
    if (fileio_read_all(path, &text, &len, err, errlen)) return -1;
    cJSON *o = cJSON_ParseWithLength(text, len);
    free(text);
    memset(st, 0, sizeof *st);
    const cJSON *best = cJSON_GetObjectItemCaseSensitive(o, "best_val_loss");
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(o, "tokens_seen");
    const cJSON *secs = cJSON_GetObjectItemCaseSensitive(o, "train_seconds");
    if (!o || json_int(o, "step", &st->step) || json_int(o, "epoch", &st->epoch) || json_int(o, "next_row", &st->next_row) ||
        json_int(o, "adam_step", &st->adam_step) || json_int(o, "nan_streak", &st->nan_streak) ||
        json_int(o, "nan_skipped", &st->nan_skipped) ||
        json_int(o, "evals_without_improvement", &st->evals_without_improvement) || !cJSON_IsString(best) ||
        !cJSON_IsNumber(tokens) || !cJSON_IsNumber(secs)) {
        snprintf(err, errlen, "%s: malformed trainer state; the checkpoint is damaged (use an older one in %s/..)", path, ckpt_dir);
        cJSON_Delete(o);
        return -1;
    }
    st->best_val_loss = strtod(best->valuestring, NULL);
    st->tokens_seen = (long long)tokens->valuedouble;
    st->train_seconds = secs->valuedouble;
    cJSON_Delete(o);
    return 0;
}
