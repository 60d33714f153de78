// Packing: every example lands exactly once per epoch, in one row, with positions restarting at
// its start, doc_start pointing at its start, and targets = the next token where it is trained.
// The same (seed, epoch) gives the same rows; another epoch another order; splits partition.
#include "data/dataset.h"
#include "kernels/rng.h"
#include "test.h"

static example *make_examples(int n, int maxlen, uint64_t seed) {
    example *ex = calloc(n, sizeof *ex);
    rng_state r = {seed, 0};
    for (int i = 0; i < n; i++) {
        int len = 2 + (int)(rng_next_u64(&r) % (uint64_t)(maxlen - 1));
        ex[i].len = len;
        ex[i].line = i + 1;
        ex[i].ids = malloc(sizeof(int32_t) * len);
        ex[i].mask = malloc(len);
        for (int t = 0; t < len; t++) {
            ex[i].ids[t] = 1000 * (i + 1) + t;           // encodes (example, position)
            ex[i].mask[t] = t >= len / 2;                 // second half trained, like a completion
        }
    }
    return ex;
}

int main(void) {
    char err[512];
    const int T = 64, N = 200;
    example_set s;
    CHECK(example_set_init(&s, make_examples(N, 80, 7), N, T, ON_LONG_TRUNCATE, "gen", err, sizeof err) == 0, "%s", err);
    CHECK(s.n == N, "kept %d of %d", s.n, N);
    CHECK(s.truncated > 0, "some examples longer than T must be truncated (got %d)", s.truncated);

    example_set refuse;
    CHECK(example_set_init(&refuse, make_examples(N, 80, 7), N, T, ON_LONG_ERROR, "gen.jsonl", err, sizeof err) == -1,
          "--on-long error must refuse");
    CHECK(strstr(err, "gen.jsonl:") && strstr(err, "--max-seq-len"), "message names file and flag: %s", err);

    packed_epoch e0, e0b, e1;
    CHECK(dataset_pack_epoch(&s, 42, 0, 1, &e0, err, sizeof err) == 0, "%s", err);
    CHECK(dataset_pack_epoch(&s, 42, 0, 1, &e0b, err, sizeof err) == 0, "%s", err);
    CHECK(dataset_pack_epoch(&s, 42, 1, 1, &e1, err, sizeof err) == 0, "%s", err);
    CHECK(e0.nrows == e0b.nrows && !memcmp(e0.storage, e0b.storage, sizeof(int32_t) * 4 * T * e0.nrows),
          "same seed and epoch must give identical rows");
    CHECK(e0.nrows != e1.nrows || memcmp(e0.storage, e1.storage, sizeof(int32_t) * 4 * T * e0.nrows),
          "another epoch must reorder");

    int *seen = calloc(N + 1, sizeof(int));
    long trained = 0;
    for (int r = 0; r < e0.nrows; r++) {
        const packed_row *row = &e0.rows[r];
        trained += row->trained;
        for (int t = 0; t < T; t++) {
            int id = row->ids[t];
            if (row->doc_start[t] == t && row->pos[t] == 0 && id == 0) continue;  // padding
            int ex = id / 1000, p = id % 1000;
            CHECK(ex >= 1 && ex <= N, "row %d pos %d: id %d", r, t, id);
            CHECK(row->pos[t] == p, "row %d t %d: pos %d, want %d", r, t, row->pos[t], p);
            CHECK(row->doc_start[t] == t - p, "row %d t %d: doc_start %d, want %d", r, t, row->doc_start[t], t - p);
            if (p == 0) seen[ex]++;
            const example *src = &s.examples[ex - 1];
            int want = p + 1 < src->len && src->mask[p + 1] ? src->ids[p + 1] : -1;
            CHECK(row->targets[t] == want, "row %d t %d: target %d want %d", r, t, row->targets[t], want);
        }
    }
    for (int i = 1; i <= N; i++) CHECK(seen[i] == 1, "example %d packed %d times", i, seen[i]);
    CHECK(trained == s.trained_tokens, "trained tokens %ld vs %ld", trained, s.trained_tokens);
    CHECK(e0.nrows < N, "packing must put several examples in a row (%d rows for %d examples)", e0.nrows, N);

    int32_t *ids = malloc(sizeof(int32_t) * 4 * T * 3), *tg = ids + 3 * T, *pos = tg + 3 * T, *ds = pos + 3 * T;
    long bt = dataset_fill_batch(&e0, e0.nrows - 1, 3, ids, tg, pos, ds);
    CHECK(bt == e0.rows[e0.nrows - 1].trained, "batch past the end counts only real rows");
    CHECK(tg[2 * T] == -1 && ds[2 * T + 5] == 5, "rows past the end are padding");

    example_set val;
    int before = s.n;
    CHECK(example_set_split(&s, &val, 0.1, 3, err, sizeof err) == 0, "%s", err);
    CHECK(val.n == 20 && s.n == before - 20, "split %d/%d", s.n, val.n);
    CHECK(example_set_split(&val, &refuse, 0.001, 3, err, sizeof err) == -1, "an empty side must be refused");

    free(ids);
    free(seen);
    packed_epoch_free(&e0);
    packed_epoch_free(&e0b);
    packed_epoch_free(&e1);
    example_set_free(&s);
    example_set_free(&val);
    return test_finish("test_dataset");
}
