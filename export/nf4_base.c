// export/nf4_base.c — see nf4_base.h.
#include "nf4_base.h"
#include "../kernels/nf4_format.h"
#include "../model/bnb4.h"
#include <stdio.h>
#include <stdlib.h>

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
    char why[256];
    if (nf4_dequantize_host(w, DTYPE_F32, &t, (size_t)out * (size_t)in, why, sizeof why)) {
        snprintf(err, errlen, "%s: %s: %s", source, name, why);
        return -1;
    }
    return 0;
}
