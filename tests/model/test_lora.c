// tests/model/test_lora.c — LoRA settings: target lists, scaling, PEFT's initialisation bound.
#include "test.h"
#include "model/lora.h"

int main(void) {
    char err[256], buf[64];
    unsigned mask = 0;
    CHECK(lora_targets_parse("all-linear", &mask, err, sizeof err) == 0 && mask == LORA_ALL_LINEAR,
          "all-linear → %#x", mask);
    CHECK(lora_targets_parse("q,v", &mask, err, sizeof err) == 0 &&
          mask == ((1u << LORA_Q) | (1u << LORA_V)), "q,v → %#x", mask);
    CHECK(lora_targets_parse("q_proj, down_proj ,gate", &mask, err, sizeof err) == 0 &&
          mask == ((1u << LORA_Q) | (1u << LORA_DOWN) | (1u << LORA_GATE)), "HF names → %#x", mask);
    CHECK(strcmp(lora_targets_format(mask, buf, sizeof buf), "q,gate,down") == 0, "format: %s", buf);
    CHECK(strcmp(lora_targets_format(LORA_ALL_LINEAR, buf, sizeof buf), "all-linear") == 0, "%s", buf);
    CHECK(lora_targets_parse("q,lm_head", &mask, err, sizeof err) == -1 && strstr(err, "lm_head"),
          "unknown target named: %s", err);
    CHECK(lora_targets_parse("", &mask, err, sizeof err) == -1, "empty list refused");
    CHECK(lora_targets_parse(",", &mask, err, sizeof err) == -1, "no target refused");

    lora_config c = lora_config_default();
    CHECK(c.rank == 8 && c.alpha == 16.0f && c.targets == LORA_ALL_LINEAR, "defaults");
    CHECK(fabsf(lora_scale(&c) - 2.0f) < 1e-7f, "alpha/r = %g", (double)lora_scale(&c));
    c.rslora = 1;
    CHECK(fabsf(lora_scale(&c) - 16.0f / sqrtf(8.0f)) < 1e-6f, "rsLoRA alpha/sqrt(r) = %g",
          (double)lora_scale(&c));
    CHECK(lora_config_check(&c, err, sizeof err) == 0, "default valid: %s", err);
    c.rank = 0;
    CHECK(lora_config_check(&c, err, sizeof err) == -1, "rank 0 refused");
    c.rank = 8;
    c.dropout = 1.0f;
    CHECK(lora_config_check(&c, err, sizeof err) == -1, "dropout 1 refused");

    // A ~ U(−1/sqrt(in), 1/sqrt(in)): every draw inside the bound, variance bound²/3, and the
    // draw depends on the stream id.
    int r = 16, in = 256;
    float *a = malloc((size_t)r * in * 4), *b = malloc((size_t)r * in * 4);
    lora_init_a(a, r, in, 42, 3);
    lora_init_a(b, r, in, 42, 4);
    double bound = 1.0 / sqrt((double)in), s2 = 0, mean = 0;
    int inside = 1, differ = 0;
    for (int i = 0; i < r * in; i++) {
        inside &= fabs(a[i]) <= bound;
        s2 += (double)a[i] * a[i];
        mean += a[i];
        differ |= a[i] != b[i];
    }
    s2 /= r * in;
    mean /= r * in;
    CHECK(inside, "draws within ±%g", bound);
    CHECK(fabs(s2 / (bound * bound / 3.0) - 1.0) < 0.05, "variance %g, want %g", s2, bound * bound / 3.0);
    CHECK(fabs(mean) < 0.05 * bound, "mean %g", mean);
    CHECK(differ, "streams differ");
    free(a);
    free(b);
    return test_finish("test_lora");
}
