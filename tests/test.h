// tests/test.h — a few macros for C tests: state the property, fail with the evidence.
// Exit codes: 0 passed, 1 failed, 77 skipped (ctest SKIP_RETURN_CODE).
#pragma once
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures = 0;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                              \
            test_failures++;                                                    \
        }                                                                       \
    } while (0)

#define SKIP(...)                                 \
    do {                                                \
        printf("SKIP: " __VA_ARGS__);                   \
        printf("\n");                                   \
        exit(77);                                       \
    } while (0)

static inline int test_finish(const char *name) {
    if (test_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, test_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

static inline const char *test_env(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

// ‖a − b‖ / ‖b‖ in double.
static inline double rel_error(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
