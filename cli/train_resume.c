// cli/train_resume.c — see train_resume.h.
#include "train_resume.h"
#include "../data/fileio.h"
#include "../trainer/run_record.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// RUN/checkpoints/step-N names one checkpoint of RUN: split it, else target is the run.
static int split_target(train_resume *r, const char *target, char *err, size_t errlen) {
    char buf[4096], state[4300];
    snprintf(buf, sizeof buf, "%s", target);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;
    char *slash = strrchr(buf, '/');
    const char *base = slash ? slash + 1 : buf;
    if (strncmp(base, "step-", 5) && strncmp(base, ".step-", 6)) {
        snprintf(r->run_dir, sizeof r->run_dir, "%s", buf);
        return 0;
    }
    snprintf(state, sizeof state, "%s/trainer_state.json", buf);
    if (!fileio_exists(state) || base[0] == '.') {
        snprintf(err, errlen, "%s is not a complete checkpoint (no trainer_state.json)\nhint: --resume the run directory "
                 "to start from its newest complete checkpoint", target);
        return -1;
    }
    snprintf(r->ckpt, sizeof r->ckpt, "%s", buf);
    // RUN/checkpoints/step-N: the run is two levels up.
    char up[4200];
    snprintf(up, sizeof up, "%s/../..", buf);
    if (!realpath(up, r->run_dir)) {
        snprintf(err, errlen, "%s: cannot find the run directory above it", target);
        return -1;
    }
    return 0;
}

int train_resume_open(train_resume *r, const char *target, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    r->steps_done = -1;
    if (split_target(r, target, err, errlen)) return -1;
    char e2[900];
    r->record = run_record_read(r->run_dir, e2, sizeof e2);
    if (!r->record) {
        snprintf(err, errlen, "%s\nhint: --resume takes a run directory that `quarry train --out` wrote", e2);
        return -1;
    }
    if (settings_from_json(cJSON_GetObjectItemCaseSensitive(r->record, "settings"), &r->recorded, e2, sizeof e2)) {
        snprintf(err, errlen, "%s/run.json: %s; cannot tell what the run was", r->run_dir, e2);
        return -1;
    }
    // The micro-batch that --micro-batch auto picked is the one the run went on with.
    r->recorded.micro_batch_auto = 0;
    char fin[4200];
    snprintf(fin, sizeof fin, "%s/final", r->run_dir);
    r->finished = fileio_exists(fin);
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r->record, "result"), "steps");
    if (cJSON_IsNumber(steps)) r->steps_done = steps->valueint;
    return 0;
}

int train_resume_finished(const train_resume *r, int max_steps) {
    char done[64] = "";
    if (r->steps_done >= 0) snprintf(done, sizeof done, " after %d steps", r->steps_done);
    if (max_steps != SETTINGS_UNSET_INT && max_steps != r->recorded.max_steps && (max_steps == 0 || max_steps > r->steps_done)) {
        // Training on would rewrite final/, which exports and evaluations may already stand on.
        fprintf(stderr, "quarry train: error: %s is finished%s (final/ is written); --max-steps %d cannot extend it\n"
                "hint: train on from the result in a new run: `quarry export %s --out DIR`, then `quarry train --model DIR "
                "--out NEW ...`\n", r->run_dir, done, max_steps, r->run_dir);
        return 1;
    }
    fprintf(stderr, "quarry train: %s is finished%s: final/ is written; nothing to do\n", r->run_dir, done);
    return 0;
}

int train_resume_check_settings(train_resume *r, const train_settings *now, char *err, size_t errlen) {
    char why[3000];
    if (settings_resume_changes(&r->recorded, now, &r->changed, why, sizeof why)) {
        snprintf(err, errlen, "--resume continues %s as its run.json records it; these flags would change it: %s\n"
                 "hint: drop them (`quarry train --resume %s` alone continues the run), or start a new run with --out",
                 r->run_dir, why, r->run_dir);
        return -1;
    }
    return 0;
}

int train_resume_check_inputs(const train_resume *r, const train_settings *now, char *err, size_t errlen) {
    if (run_record_check_data(r->record, now->data_path, now->validation_path, err, errlen) ||
        run_record_check_base(r->record, now->model_dir, err, errlen))
        return -1;
    return 0;
}

cJSON *train_resume_record(const train_resume *r, cJSON *used_settings, int at_step, const char *device, int world) {
    cJSON *run = cJSON_Duplicate(r->record, 1);
    if (!run) { cJSON_Delete(used_settings); return NULL; }
    cJSON_DeleteItemFromObjectCaseSensitive(run, "result");   // the end of this session writes it anew
    cJSON_ReplaceItemInObjectCaseSensitive(run, "settings", used_settings);
    cJSON *events = cJSON_GetObjectItemCaseSensitive(run, "resumes");
    if (!cJSON_IsArray(events)) {
        cJSON_DeleteItemFromObjectCaseSensitive(run, "resumes");
        events = cJSON_AddArrayToObject(run, "resumes");
    }
    cJSON *ev = cJSON_CreateObject();
    char when[32];
    time_t t = time(NULL);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm)) snprintf(when, sizeof when, "unknown");
    cJSON_AddNumberToObject(ev, "at_step", at_step);
    cJSON_AddStringToObject(ev, "time", when);
    cJSON_AddStringToObject(ev, "device", device);
    cJSON_AddNumberToObject(ev, "world_size", world);
    cJSON_AddItemToObject(ev, "changed", r->changed ? cJSON_Duplicate(r->changed, 1) : cJSON_CreateObject());
    cJSON_AddItemToArray(events, ev);
    return run;
}

void train_resume_close(train_resume *r) {
    cJSON_Delete(r->record);
    cJSON_Delete(r->changed);
    r->record = r->changed = NULL;
}
