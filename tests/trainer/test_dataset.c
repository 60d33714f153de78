// Packing: every example lands exactly once per epoch, in one row, with positions restarting at
// its start, doc_start pointing at its start, and targets = the next token where it is trained.
// The same (seed, epoch) gives the same rows; another epoch another order; splits partition.
// Every record's fate at max_seq_len is counted (whole, truncated with answer tokens kept,
// dropped and why); the default right truncation refuses to drop records silently; left
// truncation keeps BOS and the last T−1 tokens (token-level expectations).
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

// One example of len tokens, ids 100*line + t, trained from answer_from on (len: no answer);
// keep_head 1 (a BOS) when bos.
static example one(long line, int len, int answer_from, int bos) {
    example e = {malloc(sizeof(int32_t) * (len ? len : 1)), malloc(len ? len : 1), len, line, bos};
    for (int t = 0; t < len; t++) {
        e.ids[t] = (int32_t)(100 * line + t);
        e.mask[t] = t >= answer_from;
    }
    return e;
}

// Five records at T = 12: 1 fits; 2 has its 4 answer tokens past 12; 3 keeps 2 of 4 answer
// tokens on the right; 4 is one token; 5 has no answer.
static example *five(int bos) {
    example *ex = malloc(sizeof *ex * 5);
    ex[0] = one(1, 10, 6, bos);
    ex[1] = one(2, 20, 16, bos);
    ex[2] = one(3, 14, 10, bos);
    ex[3] = one(4, 1, 0, bos);
    ex[4] = one(5, 5, 5, bos);
    return ex;
}

// The i-th kept document as trained, through the mapping.
static int32_t vid[64];
static uint8_t vmask[64];
static const int32_t *view_ids(const example_set *s, int i) {
    example_set_view(s, i, vid, vmask);
    return vid;
}

static void test_accounting(void) {
    char err[512];
    const int T = 12;
    example_set s;
    truncation right = {T, TRUNCATE_RIGHT, 0, ON_LONG_TRUNCATE};
    CHECK(example_set_init(&s, five(1), 5, &right, "d.jsonl", err, sizeof err) == -1,
          "the default right truncation must refuse to drop record 2");
    CHECK(strstr(err, "d.jsonl: 1 of 5 records would be dropped") && strstr(err, "line 2)") &&
          strstr(err, "--truncate left") && strstr(err, "--truncate right") && strstr(err, "raise --max-seq-len"),
          "refusal counts, names the line and the three ways out: %s", err);

    right.side_explicit = 1;
    CHECK(example_set_init(&s, five(1), 5, &right, "d.jsonl", err, sizeof err) == 0, "%s", err);
    const example_report *r = &s.report;
    CHECK(s.n == 2 && example_set_line(&s, 0) == 1 && example_set_line(&s, 1) == 3, "kept records 1 and 3 (n %d)", s.n);
    CHECK(r->records == 5 && r->whole == 1 && r->truncated == 1 && r->dropped == 3, "counts %ld/%ld/%ld/%ld", r->records,
          r->whole, r->truncated, r->dropped);
    CHECK(r->by_fate[FATE_DROPPED_CUT] == 1 && r->by_fate[FATE_DROPPED_EMPTY] == 1 && r->by_fate[FATE_DROPPED_NO_ANSWER] == 1,
          "reasons cut %ld empty %ld no-answer %ld", r->by_fate[FATE_DROPPED_CUT], r->by_fate[FATE_DROPPED_EMPTY],
          r->by_fate[FATE_DROPPED_NO_ANSWER]);
    CHECK(r->answer_tokens == 4 + 4 + 4 && r->kept_answer_tokens == 4 + 2, "answer tokens %lld kept %lld", r->answer_tokens,
          r->kept_answer_tokens);
    CHECK(s.trained_tokens == 6 && s.truncated == 1, "trained %ld truncated %d", s.trained_tokens, s.truncated);
    CHECK(r->nnotes == 4 && r->notes[0].line == 2 && r->notes[0].fate == FATE_DROPPED_CUT && r->notes[1].line == 3 &&
          r->notes[1].kept_answer == 2 && r->notes[1].answer == 4 && r->notes[1].kept_tokens == 12 && r->notes[1].tokens == 14,
          "notes in file order with tokens and answer tokens");
    for (int t = 0; t < 12; t++) CHECK(view_ids(&s, 1)[t] == 300 + t, "right keeps the start: t %d id %d", t, vid[t]);
    cJSON *j = example_report_to_json(r, 1);
    cJSON *dl = cJSON_GetObjectItem(j, "dropped_records");
    CHECK(cJSON_GetArraySize(dl) == 1 && cJSON_GetObjectItem(cJSON_GetArrayItem(dl, 0), "line")->valueint == 2 &&
          !strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(dl, 0), "reason")->valuestring, "answer_cut") &&
          cJSON_GetObjectItem(j, "dropped_records_not_listed")->valueint == 2 &&
          cJSON_GetObjectItem(j, "dropped")->valueint == 3 &&
          cJSON_GetObjectItem(cJSON_GetObjectItem(j, "dropped_by_reason"), "empty")->valueint == 1,
          "JSON: counts, reasons, listing bounded by max_listed");
    cJSON_Delete(j);
    example_set val;
    CHECK(example_set_split(&s, &val, 0.1, 1, err, sizeof err) == -1 && strstr(err, "3 of the 5 records were dropped"),
          "an empty split names the drops: %s", err);
    example_set_free(&s);

    // Left: BOS, then the last T−1 tokens; every answer kept.
    truncation left = {T, TRUNCATE_LEFT, 1, ON_LONG_TRUNCATE};
    CHECK(example_set_init(&s, five(1), 5, &left, "d.jsonl", err, sizeof err) == 0, "%s", err);
    CHECK(s.n == 3 && s.report.truncated == 2 && s.report.dropped == 2 && s.report.kept_answer_tokens == 12,
          "left: 3 kept, 2 truncated, all 12 answer tokens (n %d, kept %lld)", s.n, s.report.kept_answer_tokens);
    int blen = example_set_view(&s, 1, vid, vmask);
    CHECK(example_set_line(&s, 1) == 2 && blen == 12 && vid[0] == 200 && vmask[0] == 0, "record 2 keeps its BOS");
    for (int t = 1; t < 12; t++)
        CHECK(vid[t] == 200 + 8 + t && vmask[t] == (8 + t >= 16), "left: t %d id %d mask %d, want id %d mask %d", t,
              vid[t], vmask[t], 208 + t, 8 + t >= 16);
    CHECK(view_ids(&s, 2)[0] == 300 && vid[1] == 303 && vid[11] == 313, "record 3: BOS, 303..313");
    example_set_free(&s);

    // Left without a BOS: the last T tokens.
    CHECK(example_set_init(&s, five(0), 5, &left, "d.jsonl", err, sizeof err) == 0, "%s", err);
    for (int t = 0; t < 12; t++) CHECK(view_ids(&s, 1)[t] == 208 + t, "no BOS: t %d id %d", t, vid[t]);
    example_set_free(&s);

    // Nothing left: an error with the reasons, even when dropping was chosen.
    example *two = malloc(sizeof *two * 2);
    two[0] = one(7, 20, 16, 1);
    two[1] = one(8, 1, 0, 1);
    CHECK(example_set_init(&s, two, 2, &right, "v.jsonl", err, sizeof err) == -1 &&
          strstr(err, "v.jsonl: no record left to train on: all 2 were dropped") && strstr(err, "1 empty") &&
          strstr(err, "1 with every answer token cut"), "all dropped: %s", err);
}

// Every row of e, as fill_batch gives them: (nrows, 4, T) ids, targets, pos, doc_start.
static int32_t *all_rows(const packed_epoch *e) {
    int T = e->seq_len;
    int32_t *out = malloc(sizeof(int32_t) * 4 * (size_t)T * (e->nrows ? e->nrows : 1));
    for (int r = 0; r < e->nrows; r++) {
        int32_t *b = out + (size_t)4 * T * r;
        dataset_fill_batch(e, r, 1, b, b + T, b + 2 * T, b + 3 * T);
    }
    return out;
}

// The packer before the token store: examples fitted and copied, shuffled, packed greedily, rows
// written from the copies. Same rng streams as dataset.c.
static void same_as_copying_packer(int n, int T, truncate_side side, uint64_t seed, int epoch, int shuffle) {
    char err[512];
    truncation tr = {T, side, 1, ON_LONG_TRUNCATE};
    example *ex = make_examples(n, 3 * T / 2, 11);
    for (int i = 0; i < n; i++) ex[i].keep_head = i % 3 == 0;   // some with a BOS to keep
    int kept = 0;
    for (int i = 0; i < n; i++) {
        example_note note;
        example_fate f = example_fit(&ex[i], &tr, &note);
        if (f == FATE_WHOLE || f == FATE_TRUNCATED) ex[kept++] = ex[i];
        else { free(ex[i].ids); free(ex[i].mask); }
    }
    int *order = malloc(sizeof(int) * kept);
    for (int i = 0; i < kept; i++) order[i] = i;
    if (shuffle) {
        rng_state r = {rng_mix64(seed + 0x9E3779B97F4A7C15ull * (uint64_t)(epoch + 1)), 0};
        for (int i = kept - 1; i > 0; i--) {
            int j = (int)(rng_next_u64(&r) % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }
    int32_t *want = calloc((size_t)4 * T * kept, sizeof(int32_t));
    int nrows = 0, used = T;
    for (int k = 0; k < kept; k++) {
        const example *e = &ex[order[k]];
        if (used + e->len > T) {
            int32_t *row = want + (size_t)4 * T * nrows++;
            for (int t = 0; t < T; t++) { row[T + t] = -1; row[3 * T + t] = t; }
            used = 0;
        }
        int32_t *row = want + (size_t)4 * T * (nrows - 1);
        for (int t = 0; t < e->len; t++) {
            row[used + t] = e->ids[t];
            row[T + used + t] = t + 1 < e->len && e->mask[t + 1] ? e->ids[t + 1] : -1;
            row[2 * T + used + t] = t;
            row[3 * T + used + t] = used;
        }
        used += e->len;
    }
    for (int i = 0; i < kept; i++) { free(ex[i].ids); free(ex[i].mask); }
    free(ex);
    example_set s;
    example *again = make_examples(n, 3 * T / 2, 11);
    for (int i = 0; i < n; i++) again[i].keep_head = i % 3 == 0;
    CHECK(example_set_init(&s, again, n, &tr, "gen", err, sizeof err) == 0, "%s", err);
    packed_epoch e;
    CHECK(dataset_pack_epoch(&s, seed, epoch, shuffle, &e, err, sizeof err) == 0, "%s", err);
    int32_t *got = all_rows(&e);
    CHECK(e.nrows == nrows && !memcmp(got, want, sizeof(int32_t) * 4 * T * (size_t)nrows),
          "side %s epoch %d shuffle %d: the mapped rows (%d) differ from the copying packer's (%d)",
          truncate_side_name(side), epoch, shuffle, e.nrows, nrows);
    free(got);
    free(want);
    free(order);
    packed_epoch_free(&e);
    example_set_free(&s);
}

int main(void) {
    char err[512];
    const int T = 64, N = 200;
    test_accounting();
    example_set s;
    truncation tr = {T, TRUNCATE_RIGHT, 0, ON_LONG_TRUNCATE};
    int ex_len[200];
    example *gen = make_examples(N, 80, 7);
    for (int i = 0; i < N; i++) ex_len[i] = gen[i].len;
    CHECK(example_set_init(&s, gen, N, &tr, "gen", err, sizeof err) == 0, "%s", err);
    CHECK(s.n == N, "kept %d of %d", s.n, N);
    CHECK(s.truncated > 0, "some examples longer than T must be truncated (got %d)", s.truncated);

    example_set refuse;
    truncation refuse_long = {T, TRUNCATE_RIGHT, 0, ON_LONG_ERROR};
    CHECK(example_set_init(&refuse, make_examples(N, 80, 7), N, &refuse_long, "gen.jsonl", err, sizeof err) == -1,
          "--on-long error must refuse");
    CHECK(strstr(err, "gen.jsonl:") && strstr(err, "--max-seq-len"), "message names file and flag: %s", err);

    packed_epoch e0, e0b, e1;
    CHECK(dataset_pack_epoch(&s, 42, 0, 1, &e0, err, sizeof err) == 0, "%s", err);
    CHECK(dataset_pack_epoch(&s, 42, 0, 1, &e0b, err, sizeof err) == 0, "%s", err);
    CHECK(dataset_pack_epoch(&s, 42, 1, 1, &e1, err, sizeof err) == 0, "%s", err);
    int32_t *a0 = all_rows(&e0), *a0b = all_rows(&e0b), *a1 = all_rows(&e1);
    CHECK(e0.nrows == e0b.nrows && !memcmp(a0, a0b, sizeof(int32_t) * 4 * T * e0.nrows),
          "same seed and epoch must give identical rows");
    CHECK(e0.nrows != e1.nrows || memcmp(a0, a1, sizeof(int32_t) * 4 * T * e0.nrows), "another epoch must reorder");

    int *seen = calloc(N + 1, sizeof(int));
    long trained = 0;
    for (int r = 0; r < e0.nrows; r++) {
        const int32_t *ids = a0 + (size_t)4 * T * r, *tg = ids + T, *pos = tg + T, *ds = pos + T;
        int used = dataset_row_used(&e0, r);
        for (int t = 0; t < T; t++) {
            int id = ids[t];
            trained += tg[t] >= 0;
            if (ds[t] == t && pos[t] == 0 && id == 0) {   // padding
                CHECK(t >= used, "row %d: padding at %d inside the %d used positions", r, t, used);
                continue;
            }
            int ex = id / 1000, p = id % 1000;
            CHECK(ex >= 1 && ex <= N, "row %d pos %d: id %d", r, t, id);
            CHECK(pos[t] == p, "row %d t %d: pos %d, want %d", r, t, pos[t], p);
            CHECK(ds[t] == t - p, "row %d t %d: doc_start %d, want %d", r, t, ds[t], t - p);
            if (p == 0) seen[ex]++;
            int len = ex_len[ex - 1] < T ? ex_len[ex - 1] : T;   // right truncation keeps the start
            int want = p + 1 < len && p + 1 >= ex_len[ex - 1] / 2 ? id + 1 : -1;
            CHECK(tg[t] == want, "row %d t %d: target %d want %d", r, t, tg[t], want);
        }
    }
    for (int i = 1; i <= N; i++) CHECK(seen[i] == 1, "example %d packed %d times", i, seen[i]);
    CHECK(trained == s.trained_tokens, "trained tokens %ld vs %ld", trained, s.trained_tokens);
    CHECK(e0.nrows < N, "packing must put several examples in a row (%d rows for %d examples)", e0.nrows, N);

    int32_t *ids = malloc(sizeof(int32_t) * 4 * T * 3), *tg = ids + 3 * T, *pos = tg + 3 * T, *ds = pos + 3 * T;
    long bt = dataset_fill_batch(&e0, e0.nrows - 1, 3, ids, tg, pos, ds);
    long last = 0;
    for (int t = 0; t < T; t++) last += a0[(size_t)4 * T * (e0.nrows - 1) + T + t] >= 0;
    CHECK(bt == last, "batch past the end counts only real rows");
    CHECK(tg[2 * T] == -1 && ds[2 * T + 5] == 5, "rows past the end are padding");

    // The mapped path packs exactly as the copying packer did (the old dataset.c, kept below as
    // the oracle): right and left truncation, with and without shuffling, two epochs.
    for (int side = 0; side < 2; side++)
        for (int ep = 0; ep < 2; ep++) same_as_copying_packer(N, T, (truncate_side)side, 99, ep, ep);

    example_set val;
    int before = s.n;
    CHECK(example_set_split(&s, &val, 0.1, 3, err, sizeof err) == 0, "%s", err);
    CHECK(val.n == 20 && s.n == before - 20, "split %d/%d", s.n, val.n);
    CHECK(example_set_split(&val, &refuse, 0.001, 3, err, sizeof err) == -1, "an empty side must be refused");

    free(ids);
    free(seen);
    free(a0);
    free(a0b);
    free(a1);
    packed_epoch_free(&e0);
    packed_epoch_free(&e0b);
    packed_epoch_free(&e1);
    example_set_free(&s);
    example_set_free(&val);
    return test_finish("test_dataset");
}
