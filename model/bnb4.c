// model/bnb4.c — see bnb4.h.
#include "bnb4.h"
#include "names.h"
#include "../data/fileio.h"
#include "../kernels/nf4_format.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bnb4_detect(const char *dir, int *double_quant, char *err, size_t errlen) {
    char path[4200], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (fileio_read_all(path, &text, &len, err, errlen)) return -1;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "quantization_config");
    int rc = 0;
    *double_quant = 0;
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
    // Other methods are other readers' (mxfp4: model/mxfp4_load) or refused by them.
    if (q && cJSON_IsString(method) && !strcmp(method->valuestring, "bitsandbytes")) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(q, "bnb_4bit_quant_type");
        int four = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(q, "load_in_4bit"));
        if (!four || !cJSON_IsString(type) || strcmp(type->valuestring, "nf4")) {
            snprintf(err, errlen, "%s: quantization_config is bitsandbytes %s; quarry reads bitsandbytes 4-bit NF4 "
                     "checkpoints only\nhint: use the 16-bit checkpoint (quarry train --quantize nf4 quantises it at "
                     "load)", path, !four ? "8-bit" : cJSON_IsString(type) ? type->valuestring : "4-bit without a type");
            rc = -1;
        } else {
            *double_quant = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(q, "bnb_4bit_use_double_quant"));
            rc = 1;
        }
    }
    cJSON_Delete(j);
    return rc;
}

// Tensor `name` + suffix, checked for dtype and element count; NULL with a message.
static const st_tensor *part(const st_set *s, const char *source, const char *name, const char *suffix,
                             const char *want, size_t n, char *err, size_t errlen) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", name, suffix);
    const st_tensor *t = st_find(s, full);
    if (!t) {
        char where[300];
        if (*suffix) snprintf(where, sizeof where, "stores it beside \"%s\"", name);
        else snprintf(where, sizeof where, "stores each quantised linear's NF4 codes under its weight's name");
        snprintf(err, errlen, "%s: tensor \"%s\" is missing; a bitsandbytes 4-bit checkpoint %s\n"
                 "hint: the checkpoint is incomplete: save it again with transformers' save_pretrained, or use the "
                 "16-bit checkpoint with --quantize nf4", source, full, where);
        return NULL;
    }
    size_t count = 1;
    for (int d = 0; d < t->ndim; d++) count *= (size_t)t->shape[d];
    if (strcmp(t->dtype_name, want) || count != n) {
        snprintf(err, errlen, "%s: tensor \"%s\" is %s with %zu elements; the config's shape for \"%s\" needs %s with "
                 "%zu", source, full, t->dtype_name, count, name, want, n);
        return NULL;
    }
    return t;
}

int bnb4_tensor(const st_set *s, const char *source, const char *name, int64_t out, int64_t in, int double_quant,
                nf4_tensor *t, char *err, size_t errlen) {
    size_t n = (size_t)out * (size_t)in;
    memset(t, 0, sizeof *t);
    const st_tensor *w = part(s, source, name, "", "U8", nf4_packed_bytes(n), err, errlen);
    const st_tensor *qm = w ? part(s, source, name, ".quant_map", "F32", 16, err, errlen) : NULL;
    const st_tensor *am = qm ? part(s, source, name, ".absmax", double_quant ? "U8" : "F32", nf4_n_blocks(n), err,
                                    errlen) : NULL;
    if (!am) return -1;
    char full[256];   // the quant state: JSON bytes of any length
    snprintf(full, sizeof full, "%s.quant_state.bitsandbytes__nf4", name);
    const st_tensor *st = st_find(s, full);
    if (!st || strcmp(st->dtype_name, "U8")) {
        snprintf(err, errlen, "%s: tensor \"%s\" (U8, bitsandbytes' quant state as JSON) is missing", source, full);
        return -1;
    }
    // Tensor data in a safetensors file need not be 4-byte aligned (U8 tensors come before):
    // f32 values are read with memcpy.
    float map[16];
    memcpy(map, qm->data, sizeof map);
    for (int i = 0; i < 16; i++)
        if (map[i] != nf4_code(i)) {
            snprintf(err, errlen, "%s: \"%s.quant_map\" is not NF4's code (value %d is %g, NF4's %g): FP4 or another "
                     "4-bit type, which quarry does not read", source, name, i, (double)map[i], (double)nf4_code(i));
            return -1;
        }
    cJSON *js = cJSON_ParseWithLength(st->data, st->nbytes);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(js, "quant_type");
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(js, "blocksize");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(js, "shape");
    const cJSON *nbs = cJSON_GetObjectItemCaseSensitive(js, "nested_blocksize");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(js, "nested_offset");
    int ok = cJSON_IsString(type) && !strcmp(type->valuestring, "nf4") && cJSON_IsNumber(bs) &&
             bs->valuedouble == NF4_BLOCK && cJSON_GetArraySize(shape) == 2 &&
             cJSON_GetArrayItem(shape, 0)->valuedouble == (double)out &&
             cJSON_GetArrayItem(shape, 1)->valuedouble == (double)in &&
             (!double_quant || (cJSON_IsNumber(nbs) && nbs->valuedouble == NF4_NESTED_BLOCK && cJSON_IsNumber(off)));
    float offset = ok && double_quant ? (float)off->valuedouble : 0.0f;
    cJSON_Delete(js);
    if (!ok) {
        snprintf(err, errlen, "%s: \"%s.quant_state.bitsandbytes__nf4\" does not describe NF4 in blocks of %d%s of shape "
                 "[%lld, %lld] (the config's)", source, name, NF4_BLOCK, double_quant ? " with nested blocks of 256" : "",
                 (long long)out, (long long)in);
        return -1;
    }
    t->packed = (uint8_t *)w->data;
    t->packed_bytes = nf4_packed_bytes(n);
    if (!double_quant) {
        t->absmax = (float *)am->data;
        t->n_absmax = nf4_n_blocks(n);
        return 0;
    }
    const st_tensor *na = part(s, source, name, ".nested_absmax", "F32", nf4_n_nested(n), err, errlen);
    const st_tensor *nm = na ? part(s, source, name, ".nested_quant_map", "F32", 256, err, errlen) : NULL;
    if (!nm) return -1;
    float dyn[256];
    memcpy(dyn, nm->data, sizeof dyn);
    for (int i = 0; i < 256; i++)
        if (dyn[i] != nf4_dynamic_code(i)) {
            snprintf(err, errlen, "%s: \"%s.nested_quant_map\" is not bitsandbytes' dynamic map (value %d)", source, name, i);
            return -1;
        }
    t->qabsmax = (uint8_t *)am->data;
    t->n_qabsmax = nf4_n_blocks(n);
    t->nested_absmax = (float *)na->data;
    t->n_nested = nf4_n_nested(n);
    t->offset = offset;
    return 0;
}

static int is_linear(tensor_role r) {
    return r == TENSOR_Q || r == TENSOR_K || r == TENSOR_V || r == TENSOR_O || r == TENSOR_GATE || r == TENSOR_UP ||
           r == TENSOR_DOWN;
}

static const char *const companions[] = {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map",
                                         ".quant_state.bitsandbytes__nf4"};

int bnb4_check(const model_config *cfg, const st_set *s, const char *source, int double_quant, char *err,
               size_t errlen) {
    int n = model_tensor_count(cfg);
    model_tensor_info *list = malloc(sizeof *list * (size_t)n);
    if (!list) {
        snprintf(err, errlen, "%s: out of memory", source);
        return -1;
    }
    model_tensor_list(cfg, list);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (list[i].role >= TENSOR_ROUTER) {
            snprintf(err, errlen, "%s: a bitsandbytes 4-bit checkpoint of a mixture-of-experts model (%s): quarry reads "
                     "4-bit dense models only\nhint: use the 16-bit checkpoint", source, cfg->architecture);
            rc = -1;
        } else if (is_linear(list[i].role)) {
            nf4_tensor t;
            rc = bnb4_tensor(s, source, list[i].name, list[i].shape[0], list[i].shape[1], double_quant, &t, err, errlen);
        } else {
            const st_tensor *t = st_find(s, list[i].name);
            int same = t && t->ndim == list[i].ndim && t->dtype != ST_OTHER;
            for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == list[i].shape[d];
            if (!same) {
                snprintf(err, errlen, "%s: tensor \"%s\" is %s; the config implies a float tensor of %lld%s%lld", source,
                         list[i].name, t ? "of another shape or dtype" : "missing", (long long)list[i].shape[0],
                         list[i].ndim == 2 ? " × " : "", list[i].ndim == 2 ? (long long)list[i].shape[1] : 1LL);
                rc = -1;
            }
        }
    }
    // Nothing unexpected: a tensor of the list, or a companion of a linear weight in it.
    for (int i = 0; i < st_count(s) && !rc; i++) {
        const char *name = st_get(s, i)->name;
        char base[256];
        snprintf(base, sizeof base, "%s", name);
        for (size_t c = 0; c < sizeof companions / sizeof companions[0]; c++) {
            size_t lb = strlen(base), lc = strlen(companions[c]);
            if (lb > lc && !strcmp(base + lb - lc, companions[c])) base[lb - lc] = 0;
        }
        int found = strstr(name, ".rotary_emb.inv_freq") != NULL ||
                    (cfg->tie_word_embeddings && !strcmp(name, "lm_head.weight"));
        int companion = strcmp(base, name) != 0;   // then only of a linear weight
        for (int k = 0; k < n && !found; k++) found = !strcmp(list[k].name, base) && (!companion || is_linear(list[k].role));
        if (!found) {
            snprintf(err, errlen, "%s: unexpected tensor \"%s\" for %s with %d layers", source, name, cfg->architecture,
                     cfg->num_layers);
            rc = -1;
        }
    }
    free(list);
    return rc;
}
