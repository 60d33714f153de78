// tests/ops/test_mxfp4_op.c — the CPU backend's mxfp4_dequantize (gpt-oss's experts kept in
// MXFP4 on the device) bit for bit against the host decoder kernels/mxfp4_format.c (itself
// bit-exact with transformers, tests/model_io/test_mxfp4): random codes under every E8M0 scale
// 0..255 (255: 2^128, inf for codes ≥ 1; 0: subnormal results), the op's (OC, IC) being the
// host's (E, IC, OC) result transposed; and the transformers fixture's cases of 16-byte blocks
// (tests/fixtures/mxfp4, make_mxfp4_fixtures.py) expert by expert against its dq_f32.
#include "kernels/backend.h"
#include "kernels/mxfp4_format.h"
#include "kernels/rng.h"
#include "model/safetensors.h"
#include "test.h"
#include <stdint.h>

// out (OC, IC) f32 from the CPU op against want (IC, OC) f32 (transposed), bit for bit.
static void check_transposed(const char *what, const float *out, const float *want, int OC, int IC) {
    size_t bad = 0, first = 0;
    for (int o = 0; o < OC; o++)
        for (int k = 0; k < IC; k++)
            if (memcmp(&out[(size_t)o * IC + k], &want[(size_t)k * OC + o], 4) && !bad++) first = (size_t)o * IC + k;
    CHECK(bad == 0, "%s: %zu of %zu values differ, first (row %zu, col %zu): op %.9g, host %.9g", what, bad,
          (size_t)OC * IC, first / (size_t)IC, first % (size_t)IC, out[first],
          want[(first % (size_t)IC) * (size_t)OC + first / (size_t)IC]);
}

static void test_random(backend *cpu, int OC, int IC, uint64_t seed) {
    rng_state r = {seed, 0};
    size_t n = (size_t)OC * IC, nb = mxfp4_block_bytes(n), ns = mxfp4_scale_bytes(n);
    uint8_t *blocks = malloc(nb), *scales = malloc(ns);
    float *host = malloc(n * 4), *out = malloc(n * 4);
    for (size_t i = 0; i < nb; i++) blocks[i] = (uint8_t)rng_next_u64(&r);
    for (size_t i = 0; i < ns; i++) scales[i] = (uint8_t)(i < 256 ? i : rng_next_u64(&r));   // every scale
    mxfp4_shape s = {1, OC, IC / MXFP4_BLOCK, MXFP4_BLOCK / 2};
    char err[256];
    CHECK(mxfp4_dequantize_host(host, DTYPE_F32, blocks, scales, &s, err, sizeof err) == 0, "%s", err);
    mxfp4_tensor w = {blocks, scales};   // the CPU backend's device memory is host memory
    cpu->mxfp4_dequantize(cpu, out, &w, OC, IC);
    char what[96];
    snprintf(what, sizeof what, "mxfp4_dequantize (%d, %d) vs mxfp4_dequantize_host", OC, IC);
    check_transposed(what, out, host, OC, IC);
    size_t inf = 0, sub = 0;
    for (size_t i = 0; i < n; i++) inf += isinf(out[i]) != 0, sub += out[i] != 0 && fabsf(out[i]) < 1.17549435e-38f;
    CHECK(ns < 256 || (inf > 0 && sub > 0), "%s: scales 0..255 give infinities (%zu) and subnormals (%zu)", what, inf,
          sub);
    free(blocks), free(scales), free(host), free(out);
}

static void test_fixture(backend *cpu) {
    char path[1024], err[256] = "", k[64];
    snprintf(path, sizeof path, "%s/tests/fixtures/mxfp4/reference.safetensors", test_env("QUARRY_SOURCE_DIR", "."));
    st_set *s = st_open(path, err, sizeof err);
    CHECK(s != NULL, "%s", err);
    if (!s) return;
    const char *cases = st_metadata(s, "cases");
    int nc = cases ? atoi(cases) : 0, done = 0;
    for (int c = 0; c < nc; c++) {
        snprintf(k, sizeof k, "c%d.blocks", c);
        const st_tensor *b = st_find(s, k);
        snprintf(k, sizeof k, "c%d.scales", c);
        const st_tensor *sc = st_find(s, k);
        snprintf(k, sizeof k, "c%d.dq_f32", c);
        const st_tensor *dq = st_find(s, k);
        CHECK(b && sc && dq, "fixture case %d incomplete", c);
        if (!b || !sc || !dq || b->shape[3] != MXFP4_BLOCK / 2) continue;   // the op takes 32-value blocks only
        int E = (int)b->shape[0], OC = (int)b->shape[1], IC = (int)(b->shape[2] * MXFP4_BLOCK);
        float *out = malloc((size_t)OC * IC * 4);
        for (int e = 0; e < E; e++) {
            mxfp4_tensor w = {(uint8_t *)b->data + (size_t)e * OC * IC / 2, (uint8_t *)sc->data + (size_t)e * OC * IC / 32};
            cpu->mxfp4_dequantize(cpu, out, &w, OC, IC);
            snprintf(k, sizeof k, "fixture case %d expert %d vs transformers", c, e);
            check_transposed(k, out, (const float *)dq->data + (size_t)e * OC * IC, OC, IC);
        }
        free(out);
        done++;
    }
    CHECK(done >= 3, "the fixture has %d cases of 16-byte blocks; expected 3", done);
    st_close(s);
}

int main(void) {
    backend *cpu = backend_cpu(0);
    test_random(cpu, 24, 352, 11);   // 264 blocks: every scale once, then random ones
    test_random(cpu, 7, 64, 12);
    test_random(cpu, 300, 96, 13);   // rows split over OpenMP threads
    test_fixture(cpu);
    cpu->destroy(cpu);
    return test_finish("test_mxfp4_op");
}
