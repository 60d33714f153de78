// model/mxfp4_load.c — NAME_blocks + NAME_scales read as NAME (see mxfp4_load.h).
#include "mxfp4_load.h"
#include "../data/fileio.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mxfp4_checkpoint(const char *path) {
    char file[4096], err[256];
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json")) snprintf(file, sizeof file, "%s", path);
    else snprintf(file, sizeof file, "%s/config.json", path);
    char *text = NULL;
    size_t len = 0;
    if (fileio_read_all(file, &text, &len, err, sizeof err) != 0) return 0;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
    int yes = cJSON_IsString(m) && !strcmp(m->valuestring, "mxfp4");
    cJSON_Delete(root);
    return yes;
}

int mxfp4_pair_part(const char *name, char *stem, size_t stemlen) {
    size_t n = strlen(name);
    if (n <= 7 || (strcmp(name + n - 7, "_blocks") && strcmp(name + n - 7, "_scales"))) return 0;
    snprintf(stem, stemlen, "%.*s", (int)(n - 7), name);
    return 1;
}

int mxfp4_pair_find(const st_set *s, const char *name, mxfp4_pair *p, const char *source, char *err,
                    size_t errlen) {
    if (st_find(s, name)) return 0;
    char bn[512], sn[512];
    snprintf(bn, sizeof bn, "%s_blocks", name);
    snprintf(sn, sizeof sn, "%s_scales", name);
    const st_tensor *b = st_find(s, bn), *sc = st_find(s, sn);
    if (!b && !sc) return 0;
    if (!b || !sc) {
        snprintf(err, errlen, "%s: tensor \"%s\" is MXFP4-packed but \"%s\" is missing; a packed tensor needs both _blocks and _scales",
                 source, name, b ? sn : bn);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        const st_tensor *t = i ? sc : b;
        if (strcmp(t->dtype_name, "U8")) {
            snprintf(err, errlen, "%s: tensor \"%s\" has dtype %s; MXFP4 blocks and scales are U8", source, t->name,
                     t->dtype_name);
            return -1;
        }
    }
    char why[400];
    if (mxfp4_shape_of(&p->shape, name, b->ndim, b->shape, sc->ndim, sc->shape, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", source, why);
        return -1;
    }
    size_t nblk = (size_t)(p->shape.e * p->shape.r * p->shape.g);
    if (b->nbytes != nblk * (size_t)p->shape.b || sc->nbytes != nblk) {
        snprintf(err, errlen, "%s: tensors \"%s\"/\"%s\" hold %zu/%zu bytes; their shapes need %zu/%zu", source, bn, sn,
                 b->nbytes, sc->nbytes, nblk * (size_t)p->shape.b, nblk);
        return -1;
    }
    p->blocks = b;
    p->scales = sc;
    p->ndim = 3;
    p->dq_shape[0] = p->shape.e;
    p->dq_shape[1] = p->shape.g * p->shape.b * 2;
    p->dq_shape[2] = p->shape.r;
    return 1;
}

int mxfp4_read_tensor_f32(const st_set *s, const char *name, int mxfp4, float *dst, size_t n,
                          const char *source, char *err, size_t errlen) {
    const st_tensor *t = st_find(s, name);
    if (t || !mxfp4) {
        if (!t || st_read_f32(t, dst) != 0) {
            snprintf(err, errlen, "%s: cannot read tensor %s as float32", source, name);
            return -1;
        }
        return 0;
    }
    mxfp4_pair p;
    int r = mxfp4_pair_find(s, name, &p, source, err, errlen);
    if (r < 0) return -1;
    if (r == 0) {
        snprintf(err, errlen, "%s: tensor %s is missing (neither it nor %s_blocks/%s_scales is stored)", source, name,
                 name, name);
        return -1;
    }
    if (mxfp4_numel(&p.shape) != n) {
        snprintf(err, errlen, "%s: tensor %s dequantised from MXFP4 has %zu values; the model expects %zu", source,
                 name, mxfp4_numel(&p.shape), n);
        return -1;
    }
    char why[256];
    if (mxfp4_dequantize_host(dst, DTYPE_F32, p.blocks->data, p.scales->data, &p.shape, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s: %s", source, name, why);
        return -1;
    }
    return 0;
}
