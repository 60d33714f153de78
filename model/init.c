// model/init.c — see init.h.
#include "init.h"
#include "../kernels/rng.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// FNV-1a of the tensor name: the tensor's stream does not depend on its position in the list.
static uint64_t name_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

// Uniform in (0, 1] with 53 bits.
static double uniform53(uint64_t stream, uint64_t i) {
    return (double)((rng_mix64(stream ^ rng_mix64(i)) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

void model_init_fill(const model_tensor_info *t, uint64_t seed, float std, int pad_row, size_t start, size_t count,
                     float *dst) {
    if (t->init != TENSOR_INIT_NORMAL) {
        float v = t->init == TENSOR_INIT_ONES ? 1.0f : 0.0f;
        for (size_t i = 0; i < count; i++) dst[i] = v;
        return;
    }
    const uint64_t stream = rng_mix64(seed ^ rng_mix64(name_hash(t->name)));
    const size_t cols = t->ndim > 1 ? (size_t)t->shape[1] : 1;
    // Box–Muller on pair j = i/2: element 2j takes the cosine, 2j+1 the sine.
    const long long p0 = (long long)(start >> 1), p1 = (long long)((start + count + 1) >> 1);
#pragma omp parallel for schedule(static)
    for (long long pj = p0; pj < p1; pj++) {
        uint64_t pair = (uint64_t)pj;
        double r = sqrt(-2.0 * log(uniform53(stream, 2 * pair)));
        double a = 6.283185307179586 * uniform53(stream, 2 * pair + 1);
        double z[2] = {r * cos(a), r * sin(a)};
        for (int h = 0; h < 2; h++) {
            size_t i = 2 * (size_t)pair + (size_t)h;
            if (i < start || i >= start + count) continue;
            float v = (float)(z[h] * (double)std);
            if (t->role == TENSOR_EMBED && pad_row >= 0 && i / cols == (size_t)pad_row) v = 0.0f;
            dst[i - start] = v;
        }
    }
}

static size_t numel(const model_tensor_info *t) {
    return (size_t)t->shape[0] * (t->ndim > 1 ? (size_t)t->shape[1] : 1) * (t->ndim > 2 ? (size_t)t->shape[2] : 1);
}

static int esize(st_dtype d) { return d == ST_F32 ? 4 : 2; }

// One tensor's data in dtype, in a fresh buffer (NULL when out of memory).
static void *make_tensor(const model_tensor_info *t, uint64_t seed, float std, int pad_row, st_dtype dtype) {
    size_t n = numel(t);
    void *buf = malloc(n * (size_t)esize(dtype) + 4);
    if (!buf) return NULL;
    if (dtype == ST_F32) {
        model_init_fill(t, seed, std, pad_row, 0, n, buf);
        return buf;
    }
    enum { CHUNK = 1 << 20 };
    float *tmp = malloc(sizeof(float) * CHUNK);
    if (!tmp) {
        free(buf);
        return NULL;
    }
    uint16_t *h = buf;
    for (size_t s = 0; s < n; s += CHUNK) {
        size_t c = n - s < CHUNK ? n - s : CHUNK;
        model_init_fill(t, seed, std, pad_row, s, c, tmp);
        for (size_t k = 0; k < c; k++) h[s + k] = dtype == ST_BF16 ? f32_to_bf16(tmp[k]) : f32_to_f16(tmp[k]);
    }
    free(tmp);
    return buf;
}

static void print_json(FILE *f, const cJSON *v, int depth, int *bad) {
    if ((cJSON_IsObject(v) || cJSON_IsArray(v)) && v->child) {
        int obj = cJSON_IsObject(v);
        fputc(obj ? '{' : '[', f);
        for (const cJSON *c = v->child; c; c = c->next) {
            fprintf(f, "\n%*s", 2 * (depth + 1), "");
            if (obj) {
                cJSON *key = cJSON_CreateString(c->string);
                char *k = key ? cJSON_PrintUnformatted(key) : NULL;
                if (!k) *bad = 1;
                else fprintf(f, "%s: ", k);
                free(k);
                cJSON_Delete(key);
            }
            print_json(f, c, depth + 1, bad);
            if (c->next) fputc(',', f);
        }
        fprintf(f, "\n%*s%c", 2 * depth, "", obj ? '}' : ']');
        return;
    }
    char *s = cJSON_PrintUnformatted(v);
    if (!s) *bad = 1;
    else fputs(s, f);
    free(s);
}

int model_write_json(const char *path, const cJSON *v, char *err, size_t errlen) {
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    int bad = 0;
    print_json(f, v, 0, &bad);
    if (fputc('\n', f) == EOF || fflush(f) != 0 || fsync(fileno(f)) != 0) bad = 1;
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int model_write_index(const char *dir, const model_tensor_info *list, const int *shard_of, int n, int nshards,
                      size_t total, char *err, size_t errlen) {
    // As transformers writes it: {"metadata": {"total_size": N}, "weight_map": {sorted names}}.
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = root ? cJSON_AddObjectToObject(root, "metadata") : NULL;
    cJSON *wm = root ? cJSON_AddObjectToObject(root, "weight_map") : NULL;
    int ok = root && meta && wm && cJSON_AddNumberToObject(meta, "total_size", (double)total);
    // Sorted names: insertion sort of indices (a few thousand tensors at most).
    int *ord = malloc(sizeof(int) * (size_t)(n + 1));
    ok = ok && ord;
    for (int i = 0; ok && i < n; i++) {
        int j = i;
        while (j > 0 && strcmp(list[ord[j - 1]].name, list[i].name) > 0) {
            ord[j] = ord[j - 1];
            j--;
        }
        ord[j] = i;
    }
    for (int i = 0; ok && i < n; i++) {
        char fn[64];
        snprintf(fn, sizeof fn, "model-%05d-of-%05d.safetensors", shard_of[ord[i]] + 1, nshards);
        ok = cJSON_AddStringToObject(wm, list[ord[i]].name, fn) != NULL;
    }
    free(ord);
    if (!ok) {
        cJSON_Delete(root);
        snprintf(err, errlen, "%s: out of memory writing the index", dir);
        return -1;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    int rc = model_write_json(path, root, err, errlen);
    cJSON_Delete(root);
    return rc;
}

int model_init_write(const model_config *cfg, const char *dir, uint64_t seed, st_dtype dtype, int pad_token_id,
                     size_t shard_bytes, char *err, size_t errlen) {
    if (dtype != ST_F32 && dtype != ST_BF16 && dtype != ST_F16) {
        snprintf(err, errlen, "%s: unsupported dtype for init", dir);
        return -1;
    }
    int n = model_tensor_count(cfg);
    model_tensor_info *list = malloc(sizeof *list * (size_t)n);
    int *shard_of = malloc(sizeof(int) * (size_t)n);
    void **bufs = calloc((size_t)n, sizeof *bufs);
    int rc = -1;
    if (!list || !shard_of || !bufs) {
        snprintf(err, errlen, "%s: out of memory", dir);
        goto done;
    }
    model_tensor_list(cfg, list);
    // transformers uses 0.02 when initializer_range is 0 or absent.
    const float std = cfg->initializer_range > 0 ? cfg->initializer_range : 0.02f;
    const int pad_row = pad_token_id >= 0 && pad_token_id < cfg->vocab_size ? pad_token_id : -1;

    // Shards in model order, each up to shard_bytes (a larger tensor gets a shard of its own).
    int nshards = 0;
    size_t in_shard = 0, total = 0;
    for (int i = 0; i < n; i++) {
        size_t b = numel(&list[i]) * (size_t)esize(dtype);
        if (nshards == 0 || (in_shard > 0 && in_shard + b > shard_bytes)) {
            nshards++;
            in_shard = 0;
        }
        shard_of[i] = nshards - 1;
        in_shard += b;
        total += b;
    }
    for (int s = 0; s < nshards; s++) {
        st_writer *w = st_writer_begin();
        if (!w) {
            snprintf(err, errlen, "%s: out of memory", dir);
            goto done;
        }
        for (int i = 0; i < n; i++) {
            if (shard_of[i] != s) continue;
            bufs[i] = make_tensor(&list[i], seed, std, pad_row, dtype);
            if (!bufs[i]) {
                snprintf(err, errlen, "%s: out of memory generating %s (%zu bytes)", dir, list[i].name,
                         numel(&list[i]) * (size_t)esize(dtype));
                st_writer_free(w);
                goto done;
            }
            if (st_writer_add(w, list[i].name, dtype, list[i].ndim, list[i].shape, bufs[i],
                              numel(&list[i]) * (size_t)esize(dtype))) {
                snprintf(err, errlen, "%s: cannot add %s", dir, list[i].name);
                st_writer_free(w);
                goto done;
            }
        }
        char path[4200];
        if (nshards == 1) snprintf(path, sizeof path, "%s/model.safetensors", dir);
        else snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, s + 1, nshards);
        int frc = st_writer_finish(w, path, NULL, NULL, 0, err, errlen);
        st_writer_free(w);
        for (int i = 0; i < n; i++)
            if (shard_of[i] == s) {
                free(bufs[i]);
                bufs[i] = NULL;
            }
        if (frc) goto done;
    }
    if (nshards > 1 && model_write_index(dir, list, shard_of, n, nshards, total, err, errlen)) goto done;
    rc = 0;
done:
    if (bufs)
        for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(shard_of);
    free(list);
    return rc;
}

// Skips a JSON string starting at s[0] == '"'; returns the index after its closing quote.
static size_t skip_string(const char *s, size_t i) {
    for (i++; s[i] && s[i] != '"'; i++)
        if (s[i] == '\\' && s[i + 1]) i++;
    return s[i] ? i + 1 : i;
}

// The end of the value starting at i (a string, or a scalar/container at any depth).
static size_t skip_value(const char *s, size_t i) {
    if (s[i] == '"') return skip_string(s, i);
    int depth = 0;
    for (; s[i]; i++) {
        if (s[i] == '"') {
            i = skip_string(s, i) - 1;
        } else if (s[i] == '{' || s[i] == '[') {
            depth++;
        } else if (s[i] == '}' || s[i] == ']') {
            if (depth == 0) break;
            if (--depth == 0) return i + 1;
        } else if (s[i] == ',' && depth == 0) {
            break;
        }
    }
    while (i > 0 && (s[i - 1] == ' ' || s[i - 1] == '\n' || s[i - 1] == '\r' || s[i - 1] == '\t')) i--;
    return i;
}

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = (*cap ? *cap : 256);
        while (nc < *len + n + 1) nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb) return -1;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
}

char *model_config_text_set_dtype(const char *json, const char *dtype) {
    char value[32];
    snprintf(value, sizeof value, "\"%s\"", dtype);
    size_t i = 0;
    while (json[i] == ' ' || json[i] == '\n' || json[i] == '\r' || json[i] == '\t') i++;
    if (json[i] != '{') return NULL;
    char *out = NULL;
    size_t len = 0, cap = 0, copied = 0, last_end = 0;
    int have_torch_dtype = 0;
    i++;
    // Walk the top-level members: key, colon, value, comma.
    for (;;) {
        while (json[i] && json[i] != '"' && json[i] != '}') i++;
        if (json[i] != '"') break;
        size_t k0 = i + 1, k1 = skip_string(json, i) - 1;
        i = k1 + 1;
        while (json[i] && json[i] != ':') i++;
        if (!json[i]) break;
        i++;
        while (json[i] == ' ' || json[i] == '\n' || json[i] == '\r' || json[i] == '\t') i++;
        size_t v0 = i, v1 = skip_value(json, i);
        int is_td = k1 - k0 == 11 && !strncmp(json + k0, "torch_dtype", 11);
        int is_d = k1 - k0 == 5 && !strncmp(json + k0, "dtype", 5);
        if (is_td || is_d) {
            have_torch_dtype |= is_td;
            if (append(&out, &len, &cap, json + copied, v0 - copied) || append(&out, &len, &cap, value, strlen(value))) {
                free(out);
                return NULL;
            }
            copied = v1;
        }
        last_end = v1;
        i = v1;
        while (json[i] && json[i] != ',' && json[i] != '}') i++;
        if (json[i] != ',') break;
        i++;
    }
    if (json[i] != '}') {
        free(out);
        return NULL;
    }
    if (!have_torch_dtype) {
        // After the last member (or inside an empty object), in the file's two-space style.
        size_t at = last_end ? last_end : i;
        char add[64];
        snprintf(add, sizeof add, "%s\n  \"torch_dtype\": %s%s", last_end ? "," : "", value, last_end ? "" : "\n");
        if (append(&out, &len, &cap, json + copied, at - copied) || append(&out, &len, &cap, add, strlen(add))) {
            free(out);
            return NULL;
        }
        copied = at;
    }
    if (append(&out, &len, &cap, json + copied, strlen(json + copied))) {
        free(out);
        return NULL;
    }
    return out;
}
