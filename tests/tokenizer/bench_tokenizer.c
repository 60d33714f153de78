// tests/tokenizer/bench_tokenizer.c — encoding speed of data/tokenizer on a JSONL corpus (one JSON
// string per line): MB/s on one thread, then on all OpenMP threads. Used by
// scripts/bench/tokenizer.sh; not a test.
#include <cjson/cJSON.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER.json CORPUS.jsonl [--threads]\n");
        return 2;
    }
    char err[512];
    tokenizer *t = tokenizer_load(argv[1], err, sizeof err);
    if (!t) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0, ndocs = 0, dcap = 0, bytes = 0;
    char **docs = NULL;
    size_t *lens = NULL;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        cJSON *s = cJSON_Parse(line);
        if (!cJSON_IsString(s)) {
            fprintf(stderr, "%s:%zu: not a JSON string\n", argv[2], ndocs + 1);
            return 1;
        }
        if (ndocs == dcap) {
            dcap = dcap ? dcap * 2 : 1024;
            docs = realloc(docs, dcap * sizeof *docs);
            lens = realloc(lens, dcap * sizeof *lens);
            if (!docs || !lens) return 1;
        }
        docs[ndocs] = strdup(s->valuestring);
        lens[ndocs] = strlen(docs[ndocs]);
        bytes += lens[ndocs];
        ndocs++;
        cJSON_Delete(s);
    }
    free(line);
    fclose(f);
    long total = 0;
    double t0 = now();
    for (size_t i = 0; i < ndocs; i++) {
        int32_t *ids;
        int k = tokenizer_encode(t, docs[i], lens[i], 0, &ids, NULL, err, sizeof err);
        if (k < 0) {
            fprintf(stderr, "doc %zu: %s\n", i, err);
            return 1;
        }
        total += k;
        free(ids);
    }
    double t1 = now();
    printf("quarry 1 thread: %.1f MB in %.2f s = %.2f MB/s, %ld tokens (%.0f tokens/s)\n", bytes / 1e6, t1 - t0,
           bytes / 1e6 / (t1 - t0), total, total / (t1 - t0));
    if (argc > 3 && !strcmp(argv[3], "--threads")) {
        long total2 = 0;
        int bad = 0;
        double t2 = now();
#pragma omp parallel for schedule(dynamic, 64) reduction(+ : total2, bad)
        for (long i = 0; i < (long)ndocs; i++) {
            int32_t *ids;
            char e2[256];
            int k = tokenizer_encode(t, docs[i], lens[i], 0, &ids, NULL, e2, sizeof e2);
            if (k < 0) {
                bad++;
                continue;
            }
            total2 += k;
            free(ids);
        }
        double t3 = now();
        printf("quarry %d threads: %.2f MB/s (%s)\n", omp_get_max_threads(), bytes / 1e6 / (t3 - t2),
               !bad && total2 == total ? "same token count" : "MISMATCH");
        if (bad || total2 != total) return 1;
    }
    for (size_t i = 0; i < ndocs; i++) free(docs[i]);
    free(docs);
    free(lens);
    tokenizer_free(t);
    return 0;
}
