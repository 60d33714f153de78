// tests/ops/test_cuda_libs.c — the search behind cuBLAS/cuBLASLt/NCCL's dlopen (kernels/cuda_libs.h),
// in every build and without a GPU: $QUARRY_CUDA_LIBS is the only place looked at when set, the
// order otherwise, dlopen's reason for a broken file, and a message that names every place tried
// and what to install.  The CUDA binary's behaviour without the libraries: tests/cli/test_cuda_libs.sh.
#include "../../kernels/cuda_libs.h"
#include "test.h"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const cuda_lib_spec fake = {"libquarry-absent.so.7", "Absent 7", "/quarry-build-dir/lib64", "QUARRY_TEST_ROOT",
                                   "the absent-7 package"};

int main(void) {
    char tmp[] = "/tmp/quarry-cudalibs-XXXXXX";
    if (!mkdtemp(tmp)) SKIP("no temporary directory");
    char err[4096], path[640], want[800];

    // $QUARRY_CUDA_LIBS: its folders, in order, and nothing else (not the loader's path, not the
    // build's folder): an explicit choice is never replaced by a copy found elsewhere.
    snprintf(want, sizeof want, "/nonexistent-a::%s", tmp);
    setenv("QUARRY_CUDA_LIBS", want, 1);
    setenv("CUDA_HOME", "/quarry-cuda-home", 1);
    void *h = cuda_lib_open(&fake, path, sizeof path, err, sizeof err);
    CHECK(h == NULL, "opened %s", path);
    CHECK(strstr(err, "Absent 7 (libquarry-absent.so.7) not found in $QUARRY_CUDA_LIBS: tried "
                      "/nonexistent-a/libquarry-absent.so.7 (no such file); ") != NULL, "message: %s", err);
    snprintf(want, sizeof want, "%s/libquarry-absent.so.7 (no such file)\nhint: ", tmp);
    CHECK(strstr(err, want) != NULL, "message lacks '%s': %s", want, err);
    CHECK(strstr(err, "loader's path") == NULL && strstr(err, "/quarry-build-dir") == NULL &&
              strstr(err, "/quarry-cuda-home") == NULL, "looked outside QUARRY_CUDA_LIBS: %s", err);
    CHECK(strstr(err, "--device cpu") != NULL, "the hint does not point at the CPU: %s", err);

    // A file that is not a shared library: dlopen's reason, not "not found".
    char bad[700];
    snprintf(bad, sizeof bad, "%s/libquarry-absent.so.7", tmp);
    FILE *f = fopen(bad, "w");
    CHECK(f != NULL, "cannot write %s", bad);
    if (f) {
        fputs("not an ELF file\n", f);
        fclose(f);
    }
    setenv("QUARRY_CUDA_LIBS", tmp, 1);
    CHECK(cuda_lib_open(&fake, path, sizeof path, err, sizeof err) == NULL, "loaded a text file");
    CHECK(strstr(err, bad) != NULL && strstr(err, "(no such file)") == NULL, "dlopen's reason lost: %s", err);
    unlink(bad);

    // The system search: the loader's path, the build's folder, $CUDA_HOME, then $root_env; the
    // hint names the package.
    unsetenv("QUARRY_CUDA_LIBS");
    setenv("QUARRY_TEST_ROOT", "/quarry-test-root", 1);
    CHECK(cuda_lib_open(&fake, path, sizeof path, err, sizeof err) == NULL, "opened %s", path);
    const char *order[] = {"libquarry-absent.so.7 on the loader's path",
                           "/quarry-build-dir/lib64/libquarry-absent.so.7 (no such file)",
                           "/quarry-cuda-home/lib64/libquarry-absent.so.7 (no such file)",
                           "/quarry-cuda-home/lib/libquarry-absent.so.7 (no such file)",
                           "/quarry-test-root/lib64/libquarry-absent.so.7 (no such file)",
                           "/quarry-test-root/lib/libquarry-absent.so.7 (no such file)",
                           ("hint: install the absent-7 package, or add the folder holding libquarry-absent.so.7 to "
                            "LD_LIBRARY_PATH")};
    const char *at = err;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *p = strstr(at, order[i]);
        CHECK(p != NULL, "'%s' missing or out of order in: %s", order[i], err);
        if (p) at = p;
    }
    CHECK(strstr(err, "Absent 7 (libquarry-absent.so.7) not found: tried ") == err, "message: %s", err);

    // Found on the loader's path: the handle, and the file it resolved to (not the bare soname).
    cuda_lib_spec libm = {"libm.so.6", "libm", NULL, NULL, "libc6"};
    h = cuda_lib_open(&libm, path, sizeof path, err, sizeof err);
    CHECK(h != NULL, "libm.so.6 not opened: %s", err);
    CHECK(path[0] == '/', "path of the opened file: '%s'", path);
    if (h) dlclose(h);

    // Found in a folder of $QUARRY_CUDA_LIBS.
    snprintf(want, sizeof want, "%s/libm.so.6", tmp);
    CHECK(symlink(path, want) == 0, "cannot link %s", want);
    setenv("QUARRY_CUDA_LIBS", tmp, 1);
    h = cuda_lib_open(&libm, path, sizeof path, err, sizeof err);
    CHECK(h != NULL, "libm.so.6 not opened from QUARRY_CUDA_LIBS: %s", err);
    if (h) dlclose(h);
    unlink(want);
    rmdir(tmp);
    return test_finish("test_cuda_libs");
}
