// tests/model_io/test_safetensors.c — safetensors without the Python oracle: what quarry writes
// it reads back equal (single file and sharded), conversions invert exactly, headers are checked.
// (check_safetensors.py compares against the safetensors library itself.)
#include "model/safetensors.h"
#include "test.h"
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static void check_roundtrip(const char *dir) {
    char path[512], err[1024];
    float a[6] = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-30f};
    uint16_t b[4], h[3];
    for (int i = 0; i < 4; i++) b[i] = f32_to_bf16((float)i * 0.5f - 1.0f);
    for (int i = 0; i < 3; i++) h[i] = f32_to_f16((float)i * 100.0f + 0.5f);
    int64_t sa[2] = {2, 3}, sb[1] = {4}, sh[3] = {1, 3, 1};
    st_writer *w = st_writer_begin();
    CHECK(w != NULL, "writer");
    CHECK(st_writer_add(w, "z.a", ST_F32, 2, sa, a, sizeof a) == 0, "add a");
    CHECK(st_writer_add(w, "b", ST_BF16, 1, sb, b, sizeof b) == 0, "add b");
    CHECK(st_writer_add(w, "h", ST_F16, 3, sh, h, sizeof h) == 0, "add h");
    CHECK(st_writer_add(w, "h", ST_F16, 3, sh, h, sizeof h) == -1, "a repeated name is refused");
    CHECK(st_writer_add(w, "bad", ST_F32, 1, sb, a, 12) == -1, "nbytes ≠ shape × size is refused");
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    const char *k[1] = {"quarry"}, *v[1] = {"x\"y"};
    CHECK(st_writer_finish(w, path, k, v, 1, err, sizeof err) == 0, "finish: %s", err);
    st_writer_free(w);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0, "the temporary file is gone after the rename");
    FILE *f = fopen(path, "rb");
    unsigned char len8[8] = {0};
    CHECK(f && fread(len8, 1, 8, f) == 8, "read length");
    if (f) fclose(f);
    CHECK(len8[0] % 8 == 0, "header length %d is a multiple of 8", len8[0]);

    st_set *s = st_open(path, err, sizeof err);
    CHECK(s != NULL, "open: %s", err);
    if (!s) return;
    CHECK(st_count(s) == 3, "count %d", st_count(s));
    CHECK(st_metadata(s, "format") && !strcmp(st_metadata(s, "format"), "pt"), "format metadata");
    CHECK(st_metadata(s, "quarry") && !strcmp(st_metadata(s, "quarry"), "x\"y"), "extra metadata");
    CHECK(st_find(s, "nope") == NULL, "absent tensor");
    const st_tensor *t = st_find(s, "z.a");
    float out[6];
    CHECK(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3, "z.a header");
    if (t) {
        CHECK(st_read_f32(t, out) == 0 && !memcmp(out, a, sizeof a), "z.a data");
    }
    t = st_find(s, "b");
    CHECK(t && t->dtype == ST_BF16 && !strcmp(t->dtype_name, "BF16"), "b header");
    if (t) {
        CHECK(st_read_f32(t, out) == 0, "read b");
        for (int i = 0; i < 4; i++) CHECK(out[i] == (float)i * 0.5f - 1.0f, "b[%d] = %g", i, out[i]);
    }
    t = st_find(s, "h");
    if (t) {
        CHECK(st_read_f32(t, out) == 0, "read h");
        for (int i = 0; i < 3; i++) CHECK(out[i] == (float)i * 100.0f + 0.5f, "h[%d] = %g", i, out[i]);
    }
    // The file's tensors are ordered F32, BF16, F16 (the library's order), each aligned.
    CHECK(st_find(s, "z.a")->data < st_find(s, "b")->data && st_find(s, "b")->data < st_find(s, "h")->data,
          "dtype order in the data section");
    st_close(s);

    // Sharded: two files and an index.
    char d2[512];
    snprintf(d2, sizeof d2, "%s/sh", dir);
    mkdir(d2, 0755);
    for (int i = 0; i < 2; i++) {
        st_writer *ws = st_writer_begin();
        char name[32], p[600];
        snprintf(name, sizeof name, "t%d", i);
        st_writer_add(ws, name, ST_F32, 2, sa, a, sizeof a);
        snprintf(p, sizeof p, "%s/model-%05d-of-00002.safetensors", d2, i + 1);
        CHECK(st_writer_finish(ws, p, NULL, NULL, 0, err, sizeof err) == 0, "shard %d: %s", i, err);
        st_writer_free(ws);
    }
    char ip[600];
    snprintf(ip, sizeof ip, "%s/model.safetensors.index.json", d2);
    f = fopen(ip, "w");
    if (f) {
        fputs("{\"metadata\":{\"total_size\":48},\"weight_map\":{\"t0\":\"model-00001-of-00002.safetensors\","
              "\"t1\":\"model-00002-of-00002.safetensors\"}}", f);
        fclose(f);
    }
    s = st_open(d2, err, sizeof err);
    CHECK(s && st_count(s) == 2 && st_find(s, "t1") && st_find(s, "t1")->file_index == 1, "sharded open: %s", err);
    st_close(s);
}

static void check_headers(void) {
    char err[512];
    const char *ok = "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    CHECK(st_parse_header(ok, strlen(ok), 8, "f", err, sizeof err) == 0, "valid header: %s", err);
    CHECK(st_parse_header(ok, strlen(ok), 9, "f", err, sizeof err) == -1 && strstr(err, "cover 8 bytes"), "leftover: %s", err);
    CHECK(st_parse_header(ok, strlen(ok), 4, "f", err, sizeof err) == -1 && strstr(err, "\"w\""), "past the end: %s", err);
    CHECK(st_parse_header(ok, 10, 8, "f", err, sizeof err) == -1 && strstr(err, "invalid JSON"), "cut JSON: %s", err);
    const char *bf = "{\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,8]}}";
    CHECK(st_parse_header(bf, strlen(bf), 8, "f.safetensors", err, sizeof err) == -1 &&
              strstr(err, "f.safetensors: tensor \"w\": shape × dtype is 6 bytes"), "size: %s", err);
}

static void check_conversions(void) {
    // Every half and every bfloat16 survives f → f32 → f exactly (NaNs stay NaN).
    int bad16 = 0, badbf = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        float x = f16_to_f32((uint16_t)i);
        if (isnan(x) ? !isnan(f16_to_f32(f32_to_f16(x))) : f32_to_f16(x) != i) bad16++;
        float y = bf16_to_f32((uint16_t)i);
        if (isnan(y) ? !isnan(bf16_to_f32(f32_to_bf16(y))) : f32_to_bf16(y) != i) badbf++;
    }
    CHECK(bad16 == 0, "%d halves do not round-trip", bad16);
    CHECK(badbf == 0, "%d bfloat16 values do not round-trip", badbf);
    CHECK(f32_to_bf16(1.00390625f) == 0x3f80, "tie to even (down): %#x", f32_to_bf16(1.00390625f));
    CHECK(f32_to_bf16(1.01171875f) == 0x3f82, "tie to even (up): %#x", f32_to_bf16(1.01171875f));
    CHECK(f32_to_f16(65520.0f) == 0x7c00 && f32_to_f16(65519.0f) == 0x7bff, "fp16 overflow boundary");
    CHECK(f32_to_f16(5.9604645e-08f) == 0x0001 && f32_to_f16(2.9802322e-08f) == 0x0000, "fp16 smallest subnormal");
    CHECK(f16_to_f32(0x3c00) == 1.0f && f16_to_f32(0xc000) == -2.0f, "fp16 decode");
}

int main(void) {
    char dir[] = "/tmp/quarry_st_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    check_roundtrip(dir);
    check_headers();
    check_conversions();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    return test_finish("test_safetensors");
}
