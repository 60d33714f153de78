// tests/dist/test_zero_plan.c — ZeRO's memory plan on the published Llama-3.1-8B config (no
// weights: tests/config_llama31_8b.h), bf16 activations as on a GPU, 8 ranks:
//   - the elements each rank owns partition every trained tensor exactly once, and each
//     segment's shard is dist_shard's (what the collectives reduce and gather);
//   - ZeRO-1 keeps 1/8 of the f32 masters and AdamW moments, ZeRO-2 also of the gradients, but
//     for the last segment (embeddings, lm_head) whole and two layers' staging;
//   - LoRA shards its adapters the same way and has no last segment.
#include "test.h"
#include "config_llama31_8b.h"
#include "trainer/dist.h"

#define WORLD 8

static size_t round64(size_t b) { return (b + 63) & ~(size_t)63; }

// Every rank's plan for the options; checks ownership and returns rank 0's plan.
static model_memory plan_ranks(model *m, model_options o, int zero, const char *what) {
    char err[512];
    model_memory p0 = {0};
    int ntr = 0;
    size_t (*own)[WORLD][2] = NULL;   // per trained tensor and rank: [begin, len) owned
    for (int r = 0; r < WORLD; r++) {
        o.shard_world = zero ? WORLD : 0;
        o.shard_rank = r;
        o.shard_grads = zero == 2;
        model_memory p;
        CHECK(model_plan(m, &o, &p, err, sizeof err) == 0, "%s rank %d: %s", what, r, err);
        if (r == 0) {
            p0 = p;
            ntr = model_trained_count(m);
            own = calloc((size_t)ntr, sizeof *own);
        }
        for (int s = 0; s < model_segment_count(m); s++) {
            const model_segment *sg = model_segment_at(m, s);
            size_t off = 0, len = sg->n;
            if (zero) dist_shard(sg->n, WORLD, r, &off, &len);
            CHECK(sg->own_off == off && sg->own_len == len, "%s rank %d segment %d: owns [%zu, +%zu), dist_shard says "
                  "[%zu, +%zu)", what, r, s, sg->own_off, sg->own_len, off, len);
        }
        for (int i = 0; i < ntr; i++) {
            model_param *t = model_trained_at(m, i);
            CHECK(t->own_begin + t->own_len <= t->n, "%s: %s owns past its end", what, t->name);
            own[i][r][0] = t->own_begin;
            own[i][r][1] = t->own_len;
        }
        // ZeRO-2's gradients: the last segment whole, two layer slots, every segment's shard.
        if (zero == 2) {
            size_t want = 0, layer_n = 0;
            int L = model_segment_count(m) - 1;
            for (int s = 0; s < L; s++) layer_n = model_segment_at(m, s)->n > layer_n ? model_segment_at(m, s)->n : layer_n;
            if (layer_n) want += 2 * round64(layer_n * 4);
            for (int s = 0; s <= L; s++) {
                const model_segment *sg = model_segment_at(m, s);
                if (!sg->n) continue;
                if (s == L) want += round64(sg->n * 4);
                want += round64(sg->own_len * 4);
            }
            CHECK(p.grads == want, "%s rank %d: gradients %zu bytes, want %zu", what, r, p.grads, want);
        }
    }
    // Sharded: the ranks' parts tile [0, n) in rank order (owned parts of a segment are
    // contiguous); unsharded: every rank owns all of it.
    int bad = 0;
    for (int i = 0; i < ntr; i++) {
        size_t n = model_trained_at(m, i)->n, next = 0;
        for (int r = 0; r < WORLD; r++) {
            if (!zero) { bad += own[i][r][0] != 0 || own[i][r][1] != n; continue; }
            if (!own[i][r][1]) continue;
            bad += own[i][r][0] != next;
            next = own[i][r][0] + own[i][r][1];
        }
        if (zero) bad += next != n;
    }
    free(own);
    CHECK(bad == 0, "%s: %d tensors not owned exactly once over the ranks", what, bad);
    return p0;
}

static void print_plan(const char *what, const model_memory *p) {
    printf("%-22s masters %6.2f GiB  grads %6.2f GiB  AdamW %6.2f GiB  total %6.2f GiB\n", what, p->masters / 1073741824.0,
           p->grads / 1073741824.0, p->moments / 1073741824.0, p->total / 1073741824.0);
}

int main(void) {
    char err[512];
    model *m = open_llama31_8b();
    if (!m) return test_finish("test_zero_plan");
    const model_config *cfg = model_get_config(m);
    model_options o = {.batch_size = 1, .seq_len = 2048, .train = MODEL_TRAIN_FULL, .checkpoint = 1};
    model_memory z0 = plan_ranks(m, o, 0, "full ZeRO-0");
    model_memory z1 = plan_ranks(m, o, 1, "full ZeRO-1");
    model_memory z2 = plan_ranks(m, o, 2, "full ZeRO-2");
    print_plan("8B full, one rank", &z0);
    print_plan("8B full, ZeRO-1 of 8", &z1);
    print_plan("8B full, ZeRO-2 of 8", &z2);
    int L = cfg->num_layers;
    size_t slack = (size_t)WORLD * (L + 1) * 64;   // alignment of each segment's shard
    CHECK(z1.masters * WORLD >= z0.masters - slack && z1.masters * WORLD <= z0.masters + slack,
          "ZeRO-1 masters %zu ≈ %zu / %d", z1.masters, z0.masters, WORLD);
    CHECK(z1.moments * WORLD >= z0.moments - 2 * slack && z1.moments * WORLD <= z0.moments + 2 * slack,
          "ZeRO-1 moments %zu ≈ %zu / %d", z1.moments, z0.moments, WORLD);
    CHECK(z1.grads == z0.grads && z1.weights == z0.weights, "ZeRO-1 keeps gradients and bf16 weights whole");
    CHECK(z2.grads < z0.grads / 3, "ZeRO-2 gradients %zu vs %zu whole", z2.grads, z0.grads);
    CHECK(z2.total < z1.total && z1.total < z0.total, "totals shrink: %zu, %zu, %zu", z0.total, z1.total, z2.total);

    lora_config lc = lora_config_default();
    lc.rank = 16;
    CHECK(model_enable_lora(m, &lc, err, sizeof err) == 0, "enable LoRA: %s", err);
    o.train = MODEL_TRAIN_LORA;
    model_memory l0 = plan_ranks(m, o, 0, "LoRA ZeRO-0");
    model_memory l2 = plan_ranks(m, o, 2, "LoRA ZeRO-2");
    CHECK(model_segment_at(m, L)->n == 0, "LoRA trains nothing outside the layers");
    CHECK(l2.moments * WORLD <= l0.moments + 2 * slack && l2.moments * WORLD >= l0.moments - 2 * slack,
          "LoRA ZeRO-2 moments %zu ≈ %zu / %d", l2.moments, l0.moments, WORLD);
    print_plan("8B LoRA r16, one rank", &l0);
    print_plan("8B LoRA, ZeRO-2 of 8", &l2);

    o.shard_world = 2;
    o.shard_rank = 2;
    CHECK(model_plan(m, &o, NULL, err, sizeof err) == -1 && strstr(err, "outside"), "rank 2 of 2 refused: %s", err);
    model_free(m);
    return test_finish("test_zero_plan");
}
