// export/nf4_base.c — see nf4_base.h.
#include "nf4_base.h"
#include "../kernels/nf4_format.h"
#include "../model/bnb4.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int nf4_base_round_trip(float *w, size_t n, int double_quant, const char *name, char *err, size_t errlen) {
    nf4_tensor q = {0};
    q.packed_bytes = nf4_packed_bytes(n);
    q.packed = malloc(q.packed_bytes);
    if (double_quant) {
        q.n_qabsmax = nf4_n_blocks(n);
        q.qabsmax = malloc(q.n_qabsmax);
        q.n_nested = nf4_n_nested(n);
        q.nested_absmax = malloc(q.n_nested * sizeof(float));
    } else {
        q.n_absmax = nf4_n_blocks(n);
        q.absmax = malloc(q.n_absmax * sizeof(float));
    }
    char why[256];
    int rc = 0;
    if (!q.packed || (double_quant ? !q.qabsmax || !q.nested_absmax : !q.absmax)) {
        snprintf(err, errlen, "out of memory quantising %s", name);
        rc = -1;
    } else if (nf4_quantize(&q, w, DTYPE_F32, n, why, sizeof why) ||
               nf4_dequantize_host(w, DTYPE_F32, &q, n, why, sizeof why)) {
        snprintf(err, errlen, "%s: NF4 round trip: %s", name, why);
        rc = -1;
    }
    free(q.packed);
    free(q.absmax);
    free(q.qabsmax);
    free(q.nested_absmax);
    return rc;
}

int nf4_base_dequantize(const st_set *s, const char *source, const char *name, int64_t out, int64_t in,
                        int double_quant, float *w, char *err, size_t errlen) {
    nf4_tensor t;
    if (bnb4_tensor(s, source, name, out, in, double_quant, &t, err, errlen)) return -1;
    // The f32 scales point into the file's mapping, where they need not be aligned: aligned copies.
    float *absmax = NULL, *nested = NULL;
    if (t.absmax && !(absmax = malloc(t.n_absmax * sizeof(float)))) goto oom;
    if (t.nested_absmax && !(nested = malloc(t.n_nested * sizeof(float)))) goto oom;
    if (absmax) t.absmax = memcpy(absmax, t.absmax, t.n_absmax * sizeof(float));
    if (nested) t.nested_absmax = memcpy(nested, t.nested_absmax, t.n_nested * sizeof(float));
    char why[256];
    int rc = nf4_dequantize_host(w, DTYPE_F32, &t, (size_t)out * (size_t)in, why, sizeof why);
    if (rc) snprintf(err, errlen, "%s: %s: %s", source, name, why);
    free(absmax);
    free(nested);
    return rc ? -1 : 0;
oom:
    free(absmax);
    snprintf(err, errlen, "%s: %s: out of memory for its scales", source, name);
    return -1;
}
