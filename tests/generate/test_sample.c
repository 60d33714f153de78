// tests/generate/test_sample.c — model/sample.h draws from the distribution transformers'
// processors leave (temperature → top-k → top-p), computed here the way transformers writes it
// (TopKLogitsWarper: remove scores < the k-th largest; TopPLogitsWarper: sort ascending, remove
// where the cumulative softmax ≤ 1 − top_p, keep the last). Checked over many draws: every draw
// is a kept token, frequencies match the renormalised probabilities, seeds reproduce.
#include "test.h"
#include "model/sample.h"

enum { V = 12, DRAWS = 60000 };

// The kept set and its probabilities, by the textbook route (O(V²) sorts, double precision).
static void reference(const float *logits, double t, int k, double p, double *prob) {
    double s[V];
    int keep[V];
    for (int i = 0; i < V; i++) {
        s[i] = (double)(logits[i] / (float)t);
        keep[i] = 1;
    }
    if (k > 0 && k < V) {
        double sorted[V];
        memcpy(sorted, s, sizeof sorted);
        for (int i = 0; i < V; i++)   // descending selection sort
            for (int j = i + 1; j < V; j++)
                if (sorted[j] > sorted[i]) {
                    double x = sorted[i];
                    sorted[i] = sorted[j];
                    sorted[j] = x;
                }
        for (int i = 0; i < V; i++)
            if (s[i] < sorted[k - 1]) keep[i] = 0;
    }
    double mx = -1e300, z = 0;
    for (int i = 0; i < V; i++)
        if (keep[i] && s[i] > mx) mx = s[i];
    for (int i = 0; i < V; i++)
        if (keep[i]) z += exp(s[i] - mx);
    if (p < 1) {
        int idx[V], n = 0;
        for (int i = 0; i < V; i++)
            if (keep[i]) idx[n++] = i;
        for (int i = 0; i < n; i++)   // ascending
            for (int j = i + 1; j < n; j++)
                if (s[idx[j]] < s[idx[i]]) {
                    int x = idx[i];
                    idx[i] = idx[j];
                    idx[j] = x;
                }
        double cum = 0;
        for (int r = 0; r < n - 1; r++) {   // the last (most probable) always stays
            cum += exp(s[idx[r]] - mx) / z;
            if (cum <= 1 - p) keep[idx[r]] = 0;
        }
    }
    z = 0;
    for (int i = 0; i < V; i++)
        if (keep[i]) z += exp(s[i] - mx);
    for (int i = 0; i < V; i++) prob[i] = keep[i] ? exp(s[i] - mx) / z : 0;
}

static void check_case(const float *logits, double t, int k, double p, const char *what) {
    double prob[V];
    reference(logits, t, k, p, prob);
    sample_params sp = {t, k, p, 1234};
    sampler *s = sampler_new(&sp, V);
    int count[V] = {0};
    for (int d = 0; d < DRAWS; d++) {
        int id = sampler_next(s, logits);
        CHECK(id >= 0 && id < V, "%s: id %d", what, id);
        if (id >= 0 && id < V) count[id]++;
    }
    sampler_free(s);
    double worst = 0;
    for (int i = 0; i < V; i++) {
        double f = (double)count[i] / DRAWS;
        if (prob[i] == 0) {
            CHECK(count[i] == 0, "%s: token %d drawn %d times but removed by the processors", what, i, count[i]);
            continue;
        }
        // 5 standard deviations of a binomial frequency.
        double sd = sqrt(prob[i] * (1 - prob[i]) / DRAWS);
        double z = fabs(f - prob[i]) / (sd > 0 ? sd : 1);
        if (z > worst) worst = z;
        CHECK(z < 5, "%s: token %d frequency %.4f, probability %.4f (%.1f sd)", what, i, f, prob[i], z);
    }
    printf("%s: %d draws match the processed distribution (worst %.2f sd)\n", what, DRAWS, worst);
}

int main(void) {
    // Two tied scores at 1.5 to exercise ties at the top-k threshold.
    const float logits[V] = {0.3f, 2.0f, -1.0f, 1.5f, 1.5f, 0.0f, -3.0f, 2.5f, 0.9f, -0.5f, 1.1f, 0.2f};
    check_case(logits, 1.0, 0, 1.0, "plain softmax");
    check_case(logits, 0.7, 0, 1.0, "temperature 0.7");
    check_case(logits, 1.0, 4, 1.0, "top-k 4 (a tie at the threshold keeps 5)");
    check_case(logits, 1.0, 0, 0.8, "top-p 0.8");
    check_case(logits, 1.3, 6, 0.9, "temperature 1.3, top-k 6, top-p 0.9");
    check_case(logits, 0.5, 0, 0.05, "top-p 0.05 (the top token alone)");

    // Greedy: temperature 0 and top-k 1 give the argmax (first maximum).
    const float tie[V] = {0, 3, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0};
    sample_params g = {0, 0, 1, 1}, k1 = {2.0, 1, 1, 99};
    sampler *sg = sampler_new(&g, V), *sk = sampler_new(&k1, V);
    for (int i = 0; i < 100; i++) {
        CHECK(sampler_next(sg, logits) == 7, "greedy");
        CHECK(sampler_next(sk, logits) == 7, "top-k 1");
        CHECK(sampler_next(sg, tie) == 1, "greedy takes the first maximum");
    }
    sampler_free(sg);
    sampler_free(sk);

    // Seeds: the same seed the same stream; another seed another.
    sample_params a = {1.0, 0, 1.0, 5}, b = {1.0, 0, 1.0, 6};
    sampler *s1 = sampler_new(&a, V), *s2 = sampler_new(&a, V), *s3 = sampler_new(&b, V);
    int same = 1, differ = 0;
    for (int i = 0; i < 200; i++) {
        int x = sampler_next(s1, logits), y = sampler_next(s2, logits), z = sampler_next(s3, logits);
        same &= x == y;
        differ |= x != z;
    }
    CHECK(same, "seed 5 twice gave different tokens");
    CHECK(differ, "seeds 5 and 6 gave the same 200 tokens");
    sampler_free(s1);
    sampler_free(s2);
    sampler_free(s3);

    // Non-finite logits are never drawn.
    float masked[V];
    memcpy(masked, logits, sizeof masked);
    masked[7] = -INFINITY;
    masked[1] = NAN;
    sampler *sm = sampler_new(&a, V);
    for (int i = 0; i < 2000; i++) {
        int id = sampler_next(sm, masked);
        CHECK(id != 7 && id != 1, "drew a -inf/NaN token %d", id);
    }
    sampler_free(sm);

    char err[256];
    sample_params bad[] = {{-1, 0, 1, 0}, {NAN, 0, 1, 0}, {1, -2, 1, 0}, {1, 0, 0, 0}, {1, 0, 1.5, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(sample_params_check(&bad[i], err, sizeof err) != 0, "bad params %zu accepted", i);
    CHECK(sample_params_check(&a, err, sizeof err) == 0, "%s", err);
    return test_finish("test_sample");
}
