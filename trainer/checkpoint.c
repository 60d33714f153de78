// trainer/checkpoint.c — see checkpoint.h.
#include "checkpoint.h"
#include "../data/fileio.h"
#include "../model/safetensors.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int checkpoint_test_kill_midway = 0;

static const char *field_file[] = {"trained.safetensors", "adam_m.safetensors", "adam_v.safetensors"};

size_t checkpoint_field_elements(model *m) {
    size_t total = 0;
    for (int i = 0; i < model_trained_count(m); i++) total += model_trained_at(m, i)->n;
    return total;
}

static float *field_alloc(model *m, char *err, size_t errlen) {
    size_t total = checkpoint_field_elements(m);
    float *host = malloc(sizeof(float) * (total ? total : 1));
    if (!host) snprintf(err, errlen, "out of host memory for a checkpoint (%.2f GiB)", total * 4.0 / 1073741824.0);
    return host;
}

int checkpoint_write_tensors(const char *path, model *m, const float *host, char *err, size_t errlen) {
    st_writer *w = st_writer_begin();
    if (!w) { snprintf(err, errlen, "out of memory"); return -1; }
    size_t off = 0;
    for (int i = 0; i < model_trained_count(m); i++) {
        model_param *p = model_trained_at(m, i);
        if (st_writer_add(w, p->name, ST_F32, p->ndim, p->shape, host + off, sizeof(float) * p->n)) {
            snprintf(err, errlen, "%s: cannot add tensor %s", path, p->name);
            st_writer_free(w);
            return -1;
        }
        off += p->n;
    }
    int rc = st_writer_finish(w, path, NULL, NULL, 0, err, errlen);
    st_writer_free(w);
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

int checkpoint_save(const char *run_dir, model *m, checkpoint_gather_fn gather, void *ctx, const train_state *st,
                    int keep, char *err, size_t errlen) {
    char dir[4096], tmp[4200], final_dir[4200], path[4400];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    snprintf(tmp, sizeof tmp, "%s/.step-%d.tmp", dir, st->step);
    snprintf(final_dir, sizeof final_dir, "%s/step-%d", dir, st->step);
    if (fileio_mkdir_p(dir, err, errlen) || fileio_remove_tree(tmp, err, errlen) || fileio_mkdir_p(tmp, err, errlen))
        return -1;
    float *host = field_alloc(m, err, errlen);
    if (!host) goto fail;
    for (int f = CHECKPOINT_MASTER; f <= CHECKPOINT_V; f++) {
        snprintf(path, sizeof path, "%s/%s", tmp, field_file[f]);
        if (gather(ctx, (checkpoint_field)f, host, err, errlen) || checkpoint_write_tensors(path, m, host, err, errlen)) {
            free(host);
            goto fail;
        }
    }
    free(host);
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
        int full = errno == ENOSPC || strstr(err, strerror(ENOSPC));
        char ignore[256];
        fileio_remove_tree(tmp, ignore, sizeof ignore);
        if (full) {
            char prev[4300], note[9000];
            int have = checkpoint_find_latest(run_dir, prev, sizeof prev);
            snprintf(note, sizeof note, "\nhint: the disk is full; step %d was not saved, %s%s is intact. Free space, or keep "
                     "fewer checkpoints (--keep-checkpoints 1), and continue with --resume %s", st->step,
                     have ? prev : "no earlier checkpoint", have ? "" : " exists, the run directory", run_dir);
            size_t used = strlen(err);
            if (used < errlen) snprintf(err + used, errlen - used, "%s", note);
        }
        return -1;
    }
}

// Steps of the complete checkpoints of run_dir, newest first. Their count (at most max).
static int list_steps(const char *run_dir, int *steps, int max) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        int s = step_of(e->d_name);
        char state[4400];
        snprintf(state, sizeof state, "%s/%s/trainer_state.json", dir, e->d_name);
        if (s >= 0 && fileio_exists(state)) steps[n++] = s;
    }
    closedir(d);
    qsort(steps, n, sizeof(int), cmp_int);
    for (int i = 0; i < n / 2; i++) { int t = steps[i]; steps[i] = steps[n - 1 - i]; steps[n - 1 - i] = t; }
    return n;
}

int checkpoint_pick(const char *run_dir, const char *ckpt_dir, model *m, train_state *st, char *path, size_t pathlen,
                    char *err, size_t errlen) {
    if (ckpt_dir) {
        snprintf(path, pathlen, "%s", ckpt_dir);
        return checkpoint_open(ckpt_dir, m, st, err, errlen);
    }
    int steps[4096], n = list_steps(run_dir, steps, 4096);
    for (int i = 0; i < n; i++) {
        snprintf(path, pathlen, "%s/checkpoints/step-%d", run_dir, steps[i]);
        if (checkpoint_open(path, m, st, err, errlen) == 0) return 0;
        fprintf(stderr, "quarry train: warning: checkpoint step-%d is damaged: %s; %s\n", steps[i], err,
                i + 1 < n ? "trying the one before it" : "no older one");
    }
    if (n) snprintf(err, errlen, "no checkpoint of %s could be read (all %d damaged)", run_dir, n);
    else snprintf(err, errlen, "%s has no complete checkpoint to resume from", run_dir);
    return -1;
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

// Checks a field's file against the model's trained tensors; with host != NULL reads them too.
static int load_field(const char *path, model *m, float *host, char *err, size_t errlen) {
    st_set *s = st_open(path, err, errlen);
    if (!s) return -1;
    int n = model_trained_count(m), rc = 0;
    size_t off = 0;
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
        if (host && st_read_f32(t, host + off)) { snprintf(err, errlen, "%s: cannot read %s", path, p->name); rc = -1; }
        off += p->n;
    }
    if (!rc && st_count(s) != n) {
        snprintf(err, errlen, "%s: holds %d tensors, the model trains %d; resume with the same settings", path, st_count(s), n);
        rc = -1;
    }
    st_close(s);
    return rc;
}

int checkpoint_read_field(const char *ckpt_dir, model *m, checkpoint_field f, float *host, char *err, size_t errlen) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", ckpt_dir, field_file[f]);
    return load_field(path, m, host, err, errlen);
}

static int json_int(const cJSON *o, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) return -1;
    *out = v->valueint;
    return 0;
}

int checkpoint_open(const char *ckpt_dir, model *m, train_state *st, char *err, size_t errlen) {
    char path[4400];
    for (int f = CHECKPOINT_MASTER; f <= CHECKPOINT_V; f++)
        if (checkpoint_read_field(ckpt_dir, m, (checkpoint_field)f, NULL, err, errlen)) return -1;
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
