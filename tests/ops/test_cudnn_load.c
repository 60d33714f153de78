// tests/ops/test_cudnn_load.c — cuDNN opened at run time (kernels/cudnn_load.h) and --attention's
// choice, on a machine without a GPU: the fallback and its messages when cuDNN is absent or
// broken, the load of a real cuDNN when this machine has one, the shapes cuDNN's path takes, and
// backend_set_attention on the cpu backend.
#include "../../kernels/backend.h"
#include "../../kernels/cudnn_load.h"
#include "test.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void make_dir(const char *path) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot create %s\n", path);
        exit(1);
    }
}

int main(void) {
    char tmp[] = "/tmp/quarry-cudnn-XXXXXX";
    if (!mkdtemp(tmp)) SKIP("no temporary directory");
    char err[2048];
    cudnn_lib lib;

    // CUDNN_PATH without the library: not found, every place tried named, nothing else tried
    // (an explicit CUDNN_PATH is never replaced by a system cuDNN).
    setenv("CUDNN_PATH", tmp, 1);
    CHECK(!cudnn_load(&lib, err, sizeof err), "loaded %s from an empty CUDNN_PATH", lib.path);
    CHECK(strstr(err, "cuDNN not found under $CUDNN_PATH") != NULL, "message: %s", err);
    char want[600];
    snprintf(want, sizeof want, "%s/lib/libcudnn.so.9 (no such file)", tmp);
    CHECK(strstr(err, want) != NULL, "message lacks '%s': %s", want, err);
    snprintf(want, sizeof want, "%s/libcudnn.so.9 (no such file)", tmp);
    CHECK(strstr(err, want) != NULL, "message lacks '%s': %s", want, err);
    CHECK(strstr(err, "/usr/local/cuda") == NULL, "looked outside CUDNN_PATH: %s", err);
    CHECK(lib.dl == NULL && lib.Create == NULL, "table filled after a failure");

    // A file that is not a shared library: dlopen's reason is passed on.
    char libdir[600], bad[700];
    snprintf(libdir, sizeof libdir, "%s/lib", tmp);
    make_dir(libdir);
    snprintf(bad, sizeof bad, "%s/libcudnn.so.9", libdir);
    FILE *f = fopen(bad, "w");
    CHECK(f != NULL, "cannot write %s", bad);
    if (f) {
        fputs("not an ELF file\n", f);
        fclose(f);
    }
    CHECK(!cudnn_load(&lib, err, sizeof err), "loaded a text file");
    const char *at = strstr(err, bad);
    CHECK(at && strncmp(at + strlen(bad), " (no such file)", 15) != 0, "message does not say why %s failed: %s", bad,
          err);

    // A real cuDNN where this machine has one (CI's CUDA images; none: that part skipped).
    const char *dirs[] = {"/usr/local/cuda/lib64", "/usr/local/cuda/lib"};
    int real = 0;
    for (size_t i = 0; i < 2 && !real; i++) {
        char so[600];
        snprintf(so, sizeof so, "%s/libcudnn.so.9", dirs[i]);
        if (access(so, R_OK) != 0) continue;
        real = 1;
        char parent[600];
        snprintf(parent, sizeof parent, "%s", dirs[i]);
        setenv("CUDNN_PATH", parent, 1);
        int ok = cudnn_load(&lib, err, sizeof err);
        CHECK(ok, "cuDNN at %s did not load: %s", parent, err);
        if (ok) {
            CHECK(lib.version >= CUDNN_MIN_VERSION, "version %zu", lib.version);
            CHECK(lib.Create && lib.Destroy && lib.SetStream && lib.GetErrorString, "table incomplete");
            CHECK(strcmp(lib.GetErrorString(0), "CUDNN_STATUS_SUCCESS") == 0, "status 0 is '%s'",
                  lib.GetErrorString(0));
            printf("loaded cuDNN %zu from %s\n", lib.version, lib.path);
            cudnn_unload(&lib);
        }
    }
    if (!real) printf("no cuDNN on this machine: the real load is not checked\n");
    unsetenv("CUDNN_PATH");

    // --attention's values.
    attention_mode m;
    CHECK(attention_mode_parse(NULL, &m) && m == ATTENTION_AUTO, "NULL is auto");
    CHECK(attention_mode_parse("auto", &m) && m == ATTENTION_AUTO, "auto");
    CHECK(attention_mode_parse("cudnn", &m) && m == ATTENTION_CUDNN, "cudnn");
    CHECK(attention_mode_parse("quarry", &m) && m == ATTENTION_QUARRY, "quarry");
    CHECK(!attention_mode_parse("flash", &m), "flash accepted");
    CHECK(!attention_mode_parse("CUDNN", &m), "case-insensitive");

    // Which calls cuDNN's path takes: Llama shapes yes; gpt-oss' sinks and windows, KV caches,
    // odd head dims no, each with its reason.
    char why[128] = "";
    CHECK(attention_cudnn_supports(2048, 2048, 32, 8, 128, 0, 0, 0, why, sizeof why), "8B shape: %s", why);
    CHECK(attention_cudnn_supports(8192, 8192, 32, 8, 64, 0, 0, 0, why, sizeof why), "1B shape: %s", why);
    CHECK(!attention_cudnn_supports(2048, 2048, 64, 8, 64, 0, 1, 0, why, sizeof why) && strstr(why, "sinks"), "sinks: %s",
          why);
    CHECK(!attention_cudnn_supports(2048, 2048, 64, 8, 64, 128, 0, 0, why, sizeof why) && strstr(why, "window"),
          "window: %s", why);
    CHECK(!attention_cudnn_supports(1, 300, 32, 8, 128, 0, 0, 0, why, sizeof why) && strstr(why, "KV cache"), "cache: %s",
          why);
    CHECK(!attention_cudnn_supports(64, 64, 4, 2, 256, 0, 0, 0, why, sizeof why) && strstr(why, "head dim 256"),
          "hd 256: %s", why);
    CHECK(!attention_cudnn_supports(64, 64, 4, 2, 20, 0, 0, 0, why, sizeof why) && strstr(why, "head dim 20"), "hd 20: %s",
          why);
    CHECK(!attention_cudnn_supports(64, 64, 6, 4, 64, 0, 0, 0, why, sizeof why) && strstr(why, "multiple"), "gqa: %s", why);
    // Packed rows are the caller's host-known fact (the op's packed argument), not a device read:
    // the same Llama shape is declined when packed, taken when not.
    CHECK(!attention_cudnn_supports(2048, 2048, 32, 8, 128, 0, 0, 1, why, sizeof why) && strstr(why, "several documents"),
          "packed: %s", why);
    // QUARRY_ATTN_KERNEL: quarry's forward kernel version (kernels/cuda/attention_fa2.h).
    int version = -1;
    CHECK(attention_kernel_parse(NULL, &version) && version == 0, "unset: %d", version);
    CHECK(attention_kernel_parse("", &version) && version == 0, "empty: %d", version);
    CHECK(attention_kernel_parse("v1", &version) && version == 1, "v1: %d", version);
    CHECK(attention_kernel_parse("v3", &version) && version == 3, "v3: %d", version);
    CHECK(attention_kernel_parse("v4", &version) && version == 4, "v4: %d", version);
    CHECK(!attention_kernel_parse("v2", &version), "v2 (lab only) accepted");
    CHECK(!attention_kernel_parse("3", &version), "a bare number accepted");
    int32_t one_doc[6] = {0, 0, 0, 0, 0, 0}, two_docs[6] = {0, 0, 0, 3, 3, 3};
    CHECK(!attention_rows_packed(one_doc, 6), "one document per row called packed");
    CHECK(attention_rows_packed(two_docs, 6), "two documents in a row not called packed");
    CHECK(!attention_rows_packed(two_docs, 3), "the first document alone called packed");

    // The cpu backend has quarry's kernel only: auto and quarry say so, cudnn is an error
    // naming the fix, a misspelling is an error.
    backend *be = backend_cpu(1);
    CHECK(backend_set_attention(be, NULL, err, sizeof err) && !strcmp(be->attention_impl, "quarry"), "auto on cpu: %s",
          be->attention_impl);
    CHECK(backend_set_attention(be, "quarry", err, sizeof err) && !strcmp(be->attention_impl, "quarry"), "quarry");
    CHECK(!backend_set_attention(be, "cudnn", err, sizeof err) && strstr(err, "needs a CUDA device") &&
              strstr(err, "--attention auto"),
          "cudnn on cpu: %s", err);
    CHECK(!backend_set_attention(be, "fast", err, sizeof err) && strstr(err, "'fast'"), "bad mode: %s", err);
    be->destroy(be);

    snprintf(bad, sizeof bad, "rm -rf '%s'", tmp);
    if (system(bad) != 0) fprintf(stderr, "cannot remove %s\n", tmp);
    return test_finish("test_cudnn_load");
}
