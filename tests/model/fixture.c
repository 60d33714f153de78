// tests/model/fixture.c — see fixture.h.
#include "fixture.h"
#include "model/lora_peft.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *fixture_read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return NULL; }
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
    if (s) s[n] = '\0';
    fclose(f);
    return s;
}

int fixture_read_ints(const cJSON *arr, int32_t *out, int n) {
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n) return -1;
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) out[i++] = (int32_t)x->valuedouble;
    return 0;
}

int fixture_read_doubles(const cJSON *arr, double *out, int n) {
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n) return -1;
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) out[i++] = x->valuedouble;
    return 0;
}

int fixture_read_batch(const cJSON *root, int b, fixture_batch *fb) {
    memset(fb, 0, sizeof *fb);
    const cJSON *B = cJSON_GetObjectItem(root, "B"), *T = cJSON_GetObjectItem(root, "T");
    const cJSON *bj = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "batches"), b);
    if (!cJSON_IsNumber(B) || !cJSON_IsNumber(T) || !bj || B->valueint < 1 || T->valueint < 1) return -1;
    fb->B = B->valueint;
    fb->T = T->valueint;
    int N = fb->B * fb->T;
    fb->ids = malloc((size_t)N * 4 * sizeof(int32_t));
    if (!fb->ids) return -1;
    fb->targets = fb->ids + N;
    fb->pos = fb->ids + 2 * N;
    fb->doc = fb->ids + 3 * N;
    if (fixture_read_ints(cJSON_GetObjectItem(bj, "ids"), fb->ids, N) ||
        fixture_read_ints(cJSON_GetObjectItem(bj, "targets"), fb->targets, N) ||
        fixture_read_ints(cJSON_GetObjectItem(bj, "pos"), fb->pos, N) ||
        fixture_read_ints(cJSON_GetObjectItem(bj, "doc_start"), fb->doc, N)) {
        fixture_batch_free(fb);
        return -1;
    }
    return 0;
}

void fixture_batch_free(fixture_batch *fb) {
    free(fb->ids);
    memset(fb, 0, sizeof *fb);
}

model_batch fixture_model_batch(const fixture_batch *fb) {
    model_batch mb = {.B = fb->B, .T = fb->T, .ids = fb->ids, .targets = fb->targets, .pos = fb->pos,
                      .doc_start = fb->doc, .dropout_seed = 7};
    return mb;
}

int64_t fixture_trained_tokens(const fixture_batch *fb) {
    int64_t n = 0;
    for (int i = 0; i < fb->B * fb->T; i++) n += fb->targets[i] != -1;
    return n;
}

float *fixture_ref_tensor(const st_set *ref, const char *name, size_t n) {
    const st_tensor *t = st_find(ref, name);
    if (!t) { fprintf(stderr, "FAIL reference tensor %s missing\n", name); return NULL; }
    size_t count = 1;
    for (int d = 0; d < t->ndim; d++) count *= (size_t)t->shape[d];
    if (count != n) { fprintf(stderr, "FAIL reference %s has %zu elements, want %zu\n", name, count, n); return NULL; }
    float *x = malloc(n * 4);
    if (x && st_read_f32(t, x) != 0) { free(x); x = NULL; }
    return x;
}

float *fixture_ref_trained(model *m, const st_set *ref, const char *prefix, const model_param *p) {
    char key[320];
    lora_peft_part part;
    if (!lora_peft_part_of(m, p, &part)) {
        snprintf(key, sizeof key, "%s/%s", prefix, p->name);
        return fixture_ref_tensor(ref, key, p->n);
    }
    snprintf(key, sizeof key, "%s/%s", prefix, part.name);
    float *fused = fixture_ref_tensor(ref, key, lora_peft_fused_numel(&part)), *x = malloc(p->n * 4);
    if (fused && x) lora_peft_unpack(&part, fused, x);
    free(fused);
    if (!fused) {
        free(x);
        return NULL;
    }
    return x;
}

int fixture_write_lora_init(model *m, const st_set *ref, int *refs) {
    int count = 0;
    for (int i = 0; i < model_trained_count(m); i++) {
        model_param *p = model_trained_at(m, i);
        float *x = fixture_ref_trained(m, ref, "lora_init", p);
        if (x && model_param_write(m, p, x) == 0) count++;
        free(x);
    }
    // A fused expert tensor of PEFT's (model/lora_peft.h) holds one quarry tensor per expert.
    *refs = 0;
    for (int i = 0; i < st_count(ref); i++) {
        const char *name = st_get(ref, i)->name;
        if (strncmp(name, "lora_init/", 10) == 0)
            *refs += lora_peft_is_fused_name(name) ? model_get_config(m)->n_experts : 1;
    }
    return count;
}
