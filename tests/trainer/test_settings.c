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

    // run.json's settings read back give the same settings (every key settings_to_json writes).
    settings_defaults(&s);
    s.model_dir = "/m"; s.data_path = "/d.jsonl"; s.out_dir = "runs/x"; s.template_name = "llama3";
    s.lora_r = 4; s.lora_alpha = 8; s.lora_dropout = 0.1; s.lora_targets = "q,v"; s.rslora = 1;
    s.epochs = 3; s.batch_size = 6; s.micro_batch = 2; s.lr = 2e-3; s.warmup_steps = 7; s.schedule = SCHEDULE_COSINE;
    s.weight_decay = 0.01; s.max_steps = 11; s.max_seq_len = 96; s.on_long_error = 1; s.train_on_prompt = 1;
    s.validation_split = 0.2; s.seed = 1234567; s.eval_every = 3; s.save_every = 2; s.keep_checkpoints = 5;
    s.early_stopping_patience = 2; s.recompute = MODEL_RECOMPUTE_NONE; s.truncate_left = 1; s.allow_extra_keys = 1;
    CHECK(settings_check(&s, err, sizeof err) == 0, "%s", err);
    j = settings_to_json(&s);
    train_settings back;
    CHECK(settings_from_json(j, &back, err, sizeof err) == 0, "%s", err);
    cJSON *j2 = settings_to_json(&back);
    char *a = cJSON_PrintUnformatted(j), *b = cJSON_PrintUnformatted(j2);
    CHECK(!strcmp(a, b), "round trip\n  wrote: %s\n  read:  %s", a, b);
    free(a); free(b); cJSON_Delete(j2);
    CHECK(back.validation_path == NULL && back.template_date == NULL, "absent paths read back as none");
    cJSON_ReplaceItemInObject(j, "seed", cJSON_CreateString("x"));
    CHECK(settings_from_json(j, &back, err, sizeof err) == -1 && strstr(err, "seed"), "bad value named: %s", err);
    cJSON_Delete(j);

    // Flags over the record: unset fields keep the record's values.
    train_settings given, now = s;
    settings_unset(&given);
    given.max_steps = 20; given.eval_every = 3; given.lr = 1e-3;
    settings_overlay(&now, &given);
    CHECK(now.max_steps == 20 && now.lr == 1e-3 && now.seed == s.seed && now.batch_size == 6 && now.lora_r == 4, "overlay");

    // A resume may extend --max-steps (recorded as a change); each trajectory change is named.
    cJSON *ch = NULL;
    CHECK(settings_resume_changes(&s, &now, &ch, err, sizeof err) == -1, "--lr is refused");
    CHECK(strstr(err, "--lr") && !strstr(err, "--max-steps") && !strstr(err, "--eval-every"), "names --lr only: %s", err);
    now.lr = s.lr; now.seed = 7; now.lora_r = 8;
    CHECK(settings_resume_changes(&s, &now, &ch, err, sizeof err) == -1 && strstr(err, "--seed: the run has 1234567, given 7") &&
          strstr(err, "--lora-r: the run has 4, given 8"), "names each difference: %s", err);
    now.seed = s.seed; now.lora_r = s.lora_r; now.device = "cuda";
    CHECK(settings_resume_changes(&s, &now, &ch, err, sizeof err) == 0, "%s", err);
    const cJSON *ms = cJSON_GetObjectItem(ch, "max_steps");
    CHECK(ms && cJSON_GetObjectItem(ms, "from")->valuedouble == 11 && cJSON_GetObjectItem(ms, "to")->valuedouble == 20 &&
          cJSON_GetObjectItem(ch, "device") && !cJSON_GetObjectItem(ch, "eval_every"), "changes recorded");
    cJSON_Delete(ch);
    // The micro-batch numbers the dropout streams: it may change only without dropout.
    now.micro_batch = 3; now.batch_size = 6;
    CHECK(settings_resume_changes(&s, &now, &ch, err, sizeof err) == -1 && strstr(err, "--micro-batch"), "dropout: %s", err);
    s.lora_dropout = now.lora_dropout = 0;
    CHECK(settings_resume_changes(&s, &now, &ch, err, sizeof err) == 0, "no dropout: %s", err);
    cJSON_Delete(ch);

    // transformers: warmup is linear from 0 (lr 0 at the first step), cosine reaches 0 at the end.
    CHECK(schedule_lr(SCHEDULE_COSINE, 1.0, 0, 10, 110, 0) == 0.0, "first warmup step");
    CHECK(fabs(schedule_lr(SCHEDULE_COSINE, 1.0, 5, 10, 110, 0) - 0.5) < 1e-12, "mid warmup");
    CHECK(fabs(schedule_lr(SCHEDULE_COSINE, 1.0, 60, 10, 110, 0) - 0.5) < 1e-12, "cosine midpoint");
    CHECK(fabs(schedule_lr(SCHEDULE_COSINE, 1.0, 110, 10, 110, 0)) < 1e-12, "cosine end");
    CHECK(fabs(schedule_lr(SCHEDULE_LINEAR, 1.0, 35, 10, 110, 0) - 0.75) < 1e-12, "linear quarter");
    CHECK(schedule_lr(SCHEDULE_CONSTANT, 2.0, 100, 10, 110, 0) == 2.0, "constant");
    return test_finish("test_settings");
}
