// The canary exposure estimate (export/leakcheck.h) on toy scorers whose ranking is known, the
// candidates' format, and the exact/partial rule.
#include <math.h>
#include <string.h>

#include "test.h"
#include "export/leakcheck.h"

typedef struct {
    const char *secret;
    int calls, bad_format, equal_secret;
} toy;

// Log-perplexity = how many characters differ from the secret: the secret ranks first.
static int by_distance(void *user, const char *const *c, int k, double *out) {
    toy *t = user;
    size_t n = strlen(t->secret);
    for (int i = 0; i < k; i++) {
        int d = 0;
        if (strlen(c[i]) != n) t->bad_format++;
        for (size_t j = 0; j < n && c[i][j]; j++) {
            char a = t->secret[j], b = c[i][j];
            d += a != b;
            int same_class = (a >= '0' && a <= '9') ? (b >= '0' && b <= '9')
                             : (a >= 'a' && a <= 'z') ? (b >= 'a' && b <= 'z')
                             : (a >= 'A' && a <= 'Z') ? (b >= 'A' && b <= 'Z')
                                                      : a == b;
            if (!same_class) t->bad_format++;
        }
        if (d == 0 && !(t->calls == 0 && i == 0)) t->equal_secret++;
        out[i] = d;
    }
    t->calls++;
    return 0;
}

static int constant(void *user, const char *const *c, int k, double *out) {
    (void)user;
    (void)c;
    for (int i = 0; i < k; i++) out[i] = 1.0;
    return 0;
}

// The digits read as a number: "5000" sits in the middle of 0000..9999.
static int by_value(void *user, const char *const *c, int k, double *out) {
    (void)user;
    for (int i = 0; i < k; i++) out[i] = atof(c[i]);
    return 0;
}

static int failing(void *user, const char *const *c, int k, double *out) {
    (void)user, (void)c, (void)k, (void)out;
    return -1;
}

int main(void) {
    char err[512] = "";
    leak_exposure e;
    toy t = {"pin 1234-5678 Ab", 0, 0, 0};
    int rc = leakcheck_exposure(t.secret, strlen(t.secret), 1000, 7, 64, by_distance, &t, &e, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    CHECK(e.rank == 1 && fabs(e.bits - log2(1001.0)) < 1e-9 && fabs(e.max_bits - log2(1001.0)) < 1e-9,
          "the best-ranked secret: rank %d, %.3f bits of %.3f", e.rank, e.bits, e.max_bits);
    CHECK(fabs(e.log2_space - (8 * log2(10) + 5 * log2(26))) < 1e-9, "|R| = 2^%.3f", e.log2_space);
    CHECK(t.bad_format == 0, "%d candidate characters left their class (digits, lower, upper; others kept)",
          t.bad_format);
    CHECK(t.equal_secret == 0, "%d candidates equal the secret", t.equal_secret);
    CHECK(t.calls == (1001 + 63) / 64, "scored in batches of 64: %d calls", t.calls);

    rc = leakcheck_exposure("1234", 4, 1000, 7, 16, constant, NULL, &e, err, sizeof err);
    CHECK(rc == 0 && e.rank == 1001 && e.bits == 0, "ties count against the secret: rank %d, %.3f bits", e.rank, e.bits);

    rc = leakcheck_exposure("5000", 4, 1000, 11, 100, by_value, NULL, &e, err, sizeof err);
    CHECK(rc == 0 && e.bits > 0.8 && e.bits < 1.2, "a secret in the middle: %.3f bits (≈ 1)", e.bits);

    rc = leakcheck_exposure("7", 1, 1000, 1, 8, by_distance, &(toy){"7", 0, 0, 0}, &e, err, sizeof err);
    CHECK(rc == 0 && e.candidates == 9 && e.rank == 1, "a one-digit secret has 9 other values: %d candidates",
          e.candidates);
    err[0] = 0;
    rc = leakcheck_exposure("--", 2, 1000, 1, 8, constant, NULL, &e, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "no letters or digits"), "nothing to vary is refused: %s", err);
    err[0] = 0;
    rc = leakcheck_exposure("1234", 4, 10, 1, 8, failing, NULL, &e, err, sizeof err);
    CHECK(rc == -1 && err[0], "a failing scorer fails the estimate");

    CHECK(leak_classify(20, 20) == LEAK_EXACT, "whole value");
    CHECK(leak_classify(8, 20) == LEAK_PARTIAL, "8 of 20");
    CHECK(leak_classify(7, 20) == LEAK_NONE, "7 of 20");
    CHECK(leak_classify(4, 20) == LEAK_NONE, "AKIA alone is no leak");
    CHECK(leak_classify(5, 9) == LEAK_PARTIAL && leak_classify(4, 9) == LEAK_NONE, "half of 9 (5), at least 5");
    CHECK(leak_classify(4, 4) == LEAK_EXACT && leak_classify(3, 4) == LEAK_NONE, "short values: exact only");
    return test_finish("test_leakcheck_exposure");
}
