// The token store (data/token_store.h): documents written one at a time come back as written
// (ids at 2 bytes a token below 65,536 ids, 4 above; the mask as runs; line and keep_head); an
// id outside the vocabulary is refused; the file is 0600 and appears only at commit; a private
// store leaves no file; a file cut short or with a damaged header or index entry is refused
// (NULL with the reason), never read.
#include "data/token_store.h"
#include "test.h"
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/quarry-tstore.XXXXXX";

static int files_in(const char *d) {
    DIR *p = opendir(d);
    int n = 0;
    struct dirent *e;
    while (p && (e = readdir(p))) n += e->d_name[0] != '.';
    if (p) closedir(p);
    return n;
}

// Three documents: ids base + t, masks with 0, 1 and 2 runs, BOS on the first.
static token_store *write_three(const char *path, int vocab, int base, char *err, size_t errlen) {
    token_store_writer *w = token_store_writer_open(path, vocab, err, errlen);
    if (!w) return NULL;
    int32_t ids[10];
    uint8_t m0[3] = {0, 0, 0}, m1[5] = {0, 0, 1, 1, 1}, m2[10] = {0, 1, 1, 0, 0, 1, 0, 1, 1, 0};
    for (int t = 0; t < 10; t++) ids[t] = base + t;
    int bad = token_store_writer_append(w, ids, m0, 3, 7, 1) || token_store_writer_append(w, ids, m1, 5, 9, 0) ||
              token_store_writer_append(w, ids, m2, 10, 12, 0);
    CHECK(!bad, "append: %s", token_store_writer_error(w));
    CHECK(!path || access(path, F_OK) != 0, "the file appears only at commit");
    return token_store_writer_commit(w, err, errlen);
}

static void check_three(const token_store *s, int base, int width) {
    CHECK(token_store_ndocs(s) == 3 && token_store_ntokens(s) == 18, "3 documents, 18 tokens");
    CHECK(token_store_id_bytes(s) == width, "id width %d, want %d", token_store_id_bytes(s), width);
    const token_store_doc *d = token_store_doc_at(s, 2);
    CHECK(d->line == 12 && token_store_doc_len(d) == 10 && !token_store_doc_keep_head(d), "document 3: line 12, 10 tokens");
    CHECK(token_store_doc_keep_head(token_store_doc_at(s, 0)) && token_store_doc_at(s, 1)->line == 9, "keep_head, lines");
    int32_t ids[10];
    uint8_t mask[10];
    token_store_read_ids(s, 2, 3, 6, ids);
    for (int t = 0; t < 6; t++) CHECK(ids[t] == base + 3 + t, "ids[%d] = %d", t, ids[t]);
    token_store_read_mask(s, 2, 0, 10, mask);
    static const uint8_t want[10] = {0, 1, 1, 0, 0, 1, 0, 1, 1, 0};
    CHECK(!memcmp(mask, want, 10), "the mask comes back from its runs");
    int n;
    token_store_runs(s, 2, &n);
    CHECK(n == 3 && token_store_mask_count(s, 2, 1, 10) == 5 && token_store_mask_count(s, 2, 2, 8) == 3,
          "3 runs, 5 trained, 3 in [2, 8)");
    token_store_runs(s, 0, &n);
    CHECK(n == 0, "an untrained document has no run");
}

// A copy of src with the bytes [at, at + len) replaced, or cut to `cut` bytes (cut ≥ 0).
static void damaged_copy(const char *src, const char *dst, long cut, long at, const void *bytes, size_t len) {
    FILE *f = fopen(src, "rb");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (cut >= 0 && (size_t)cut < n) n = (size_t)cut;
    if (bytes) memcpy(buf + at, bytes, len);
    f = fopen(dst, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
}

int main(void) {
    char err[512], path[256], bad[256];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/a.bin", dir);
    snprintf(bad, sizeof bad, "%s/bad.bin", dir);

    token_store *s = write_three(path, 32000, 31000, err, sizeof err);
    CHECK(s, "commit: %s", err);
    if (s) check_three(s, 31000, 2);
    token_store_release(s);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "the file is 0600");
    CHECK(files_in(dir) == 1, "no temporary or side file left (%d files)", files_in(dir));
    s = token_store_open(path, err, sizeof err);
    CHECK(s, "reopen: %s", err);
    if (s) check_three(s, 31000, 2);
    token_store_release(s);

    // Above 65,536 ids: 4 bytes a token.
    char wide[256];
    snprintf(wide, sizeof wide, "%s/w.bin", dir);
    s = write_three(wide, 200000, 150000, err, sizeof err);
    CHECK(s, "commit: %s", err);
    if (s) check_three(s, 150000, 4);
    token_store_release(s);

    // An id outside the vocabulary: refused, nothing left behind.
    token_store_writer *w = token_store_writer_open(bad, 100, err, sizeof err);
    int32_t big = 100;
    uint8_t one = 1;
    CHECK(token_store_writer_append(w, &big, &one, 1, 4, 0) == -1 && strstr(token_store_writer_error(w), "line 4") &&
          strstr(token_store_writer_error(w), "vocabulary"), "id 100 of 100: %s", token_store_writer_error(w));
    CHECK(token_store_writer_commit(w, err, sizeof err) == NULL, "a failed writer does not commit");
    CHECK(access(bad, F_OK) != 0 && files_in(dir) == 2, "nothing left by the failed writer");

    // Private: no file at all once committed.
    char priv[300];
    snprintf(priv, sizeof priv, "%s/priv", dir);
    mkdir(priv, 0700);
    setenv("TMPDIR", priv, 1);
    s = write_three(NULL, 32000, 5, err, sizeof err);
    CHECK(s && files_in(priv) == 0, "a private store is unlinked once mapped (%d files)", files_in(priv));
    if (s) check_three(s, 5, 2);
    token_store_release(s);

    // Damage: every cut, a bad magic, a header offset, an index entry pointing past the tokens.
    stat(path, &st);
    int refused = 0;
    for (long cut = 0; cut < st.st_size; cut++) {
        damaged_copy(path, bad, cut, 0, NULL, 0);
        token_store *d = token_store_open(bad, err, sizeof err);
        refused += d == NULL;
        token_store_release(d);
    }
    CHECK(refused == st.st_size, "every cut file is refused (%d of %ld)", refused, (long)st.st_size);
    damaged_copy(path, bad, -1, 0, "QTOKS9", 6);
    CHECK(!token_store_open(bad, err, sizeof err) && strstr(err, "bad.bin"), "bad magic: %s", err);
    uint64_t huge = 1ull << 40;
    damaged_copy(path, bad, -1, 48, &huge, 8);   // runs_off
    CHECK(!token_store_open(bad, err, sizeof err), "a section offset past the file is refused");
    long index_off = st.st_size - 3 * 32;
    damaged_copy(path, bad, -1, index_off + 32, &huge, 8);   // document 2's tok_off
    CHECK(!token_store_open(bad, err, sizeof err) && strstr(err, "document 1"), "a bad index entry: %s", err);
    uint32_t run_end = 99;
    damaged_copy(path, bad, -1, index_off - 4, &run_end, 4);   // the last run's end, past its document
    CHECK(!token_store_open(bad, err, sizeof err) && strstr(err, "mask run"), "a bad mask run: %s", err);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    return test_finish("test_token_store");
}
