// Bedrock hyperparameter files as a Bedrock job takes them, their misuse, and schedules.
#include "trainer/schedule.h"
#include "trainer/settings.h"
#include "model/llama.h"
#include "test.h"
#include <unistd.h>

static const char *write_tmp(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/quarry-hp-%d.json", (int)getpid());
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

int main(void) {
    char err[512];
    train_settings s;
    settings_defaults(&s);
    const char *p = write_tmp("{\"epochCount\": \"3\", \"batchSize\": \"4\", \"learningRate\": \"0.00002\", \"learningRateWarmupSteps\": \"5\"}");
    CHECK(settings_load_hyperparameters(&s, p, err, sizeof err) == 0, "%s", err);
    CHECK(s.epochs == 3 && s.batch_size == 4 && fabs(s.lr - 2e-5) < 1e-15 && s.warmup_steps == 5, "values");

    settings_defaults(&s);
    CHECK(settings_load_hyperparameters(&s, write_tmp("{\"epochCount\": \"two\"}"), err, sizeof err) == -1, "bad value");
    CHECK(strstr(err, "epochCount"), "message names the key: %s", err);
    CHECK(settings_load_hyperparameters(&s, write_tmp("{\"epochs\": \"2\"}"), err, sizeof err) == -1, "unknown key");
    CHECK(strstr(err, "epochs") && strstr(err, "epochCount"), "message names the key and the right ones: %s", err);
    CHECK(settings_load_hyperparameters(&s, write_tmp("{\"batchSize\": \"1.5\"}"), err, sizeof err) == -1, "fractional batch");
    CHECK(settings_load_hyperparameters(&s, write_tmp("[1]"), err, sizeof err) == -1, "not an object");
    unlink(p);

    settings_defaults(&s);
    s.batch_size = 8;
    s.micro_batch = 3;
    CHECK(settings_check(&s, err, sizeof err) == -1, "8 is not a multiple of 3");
    s.micro_batch = 2;
    CHECK(settings_check(&s, err, sizeof err) == 0 && s.grad_accum == 4, "grad_accum %d", s.grad_accum);

    // Selective recomputation by default (same results, less memory), recorded by name.
    settings_defaults(&s);
    CHECK(s.recompute == MODEL_RECOMPUTE_SELECTIVE && !s.micro_batch_auto, "defaults: recompute %d", s.recompute);
    s.recompute = MODEL_RECOMPUTE_FULL;
    s.micro_batch_auto = 1;
    cJSON *j = settings_to_json(&s);
    const cJSON *r = cJSON_GetObjectItem(j, "recompute");
    CHECK(cJSON_IsString(r) && !strcmp(r->valuestring, "full"), "run.json names the mode");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "micro_batch_auto")), "run.json says the micro-batch was picked");
    cJSON_Delete(j);


    // transformers: warmup is linear from 0 (lr 0 at the first step), cosine reaches 0 at the end.
    CHECK(schedule_lr(SCHEDULE_COSINE, 1.0, 0, 10, 110, 0) == 0.0, "first warmup step");
    CHECK(fabs(schedule_lr(SCHEDULE_COSINE, 1.0, 5, 10, 110, 0) - 0.5) < 1e-12, "mid warmup");
    CHECK(fabs(schedule_lr(SCHEDULE_COSINE, 1.0, 60, 10, 110, 0) - 0.5) < 1e-12, "cosine midpoint");
    CHECK(fabs(schedule_lr(SCHEDULE_COSINE, 1.0, 110, 10, 110, 0)) < 1e-12, "cosine end");
    CHECK(fabs(schedule_lr(SCHEDULE_LINEAR, 1.0, 35, 10, 110, 0) - 0.75) < 1e-12, "linear quarter");
    CHECK(schedule_lr(SCHEDULE_CONSTANT, 2.0, 100, 10, 110, 0) == 2.0, "constant");
    return test_finish("test_settings");
}
