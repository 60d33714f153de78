// cli/train_resume.h — `quarry train --resume RUN`: the run, not the command line, says what
// to train. RUN is a run directory or one of its checkpoints (RUN/checkpoints/step-N); its
// run.json gives every setting; flags may change only what does not alter the trajectory
// (trainer/settings.h: settings_resume_changes); the data and base must be the ones recorded.
// Nothing in the run is written until all of that, and the checkpoint, have been verified.
#pragma once
#include "../trainer/settings.h"
#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct {
    char run_dir[4096];
    char ckpt[4200];          // the checkpoint the user named; "" = the newest that verifies
    cJSON *record;            // run.json
    train_settings recorded;  // its "settings" (strings point into record)
    cJSON *changed;           // accepted changes, for the resume event (train_resume_check)
    int finished;             // final/ exists
    int steps_done;           // run.json result.steps of a finished run (-1 unknown)
} train_resume;

// Resolves target and reads run.json. 0, or -1 with a message.
int train_resume_open(train_resume *r, const char *target, char *err, size_t errlen);
// A finished run: says so on stderr and returns the exit code (0 nothing to do; 1 when
// max_steps, the --max-steps given or SETTINGS_UNSET_INT, asks for more steps than it did).
int train_resume_finished(const train_resume *r, int max_steps);
// now (the recorded settings with the given flags over them) against the record: 0 (r->changed
// holds what was accepted), or -1 with every difference that a resume may not make.
int train_resume_check_settings(train_resume *r, const train_settings *now, char *err, size_t errlen);
// The data and base against the hashes run.json records: 0, or -1 with the first that differs.
int train_resume_check_inputs(const train_resume *r, const train_settings *now, char *err, size_t errlen);
// run.json for the resumed run: the record with settings `used` and a resume event
// {"at_step", "time", "device", "world_size", "changed"} appended to "resumes". Caller frees.
cJSON *train_resume_record(const train_resume *r, cJSON *used_settings, int at_step, const char *device, int world);
void train_resume_close(train_resume *r);
