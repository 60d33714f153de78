// cli/leakcheck_gate.h — the leak check (export/leakcheck.h) run on a training run directory:
// `quarry leakcheck`'s work, and the gate `quarry export` passes before weights are packaged.
#pragma once
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    const char *run;            // the run directory
    const char *data;           // NULL: run.json's settings.data (its sha256 must match run.json)
    const char *canary;         // NULL: no canaries
    const char *device;         // backend spec ("auto", "cpu", "cuda:0")
    const char *out;            // the report; NULL: RUN/leakcheck.json
    int max_new;                // 0: automatic
    int candidates;             // 0: LEAK_CANDIDATES
    int quiet;
    FILE *table;                // where the table goes (NULL: nowhere)
} leakcheck_request;

// Runs the check and writes the report. *reproduced: findings and canaries reproduced.
// 0 ok; -1 + message (err).
int leakcheck_run_dir(const leakcheck_request *rq, int *reproduced, char *err, size_t errlen);

// Before `quarry export` packages RUN: reads RUN/leakcheck.json when it is current (made from
// this run.json and these final weights), else runs the check. *entry (for quarry-export.json:
// {"status": "passed"|"accepted"|"skipped"|"no-data", "counts": {...}}: counts only, no values,
// no paths; "no-data": run.json names no training data, a run not written by `quarry train`).
// 0: export may go on; -1 + message: refused (reproductions without accept, or no check possible).
int leakcheck_gate_export(const char *run, int accept_leaks, int skip, cJSON **entry, char *err, size_t errlen);
