// cli/cmd_train.c — `quarry train`: fine-tune a Hugging Face checkpoint on Bedrock data.
#include "args.h"
#include "commands.h"
#include "progress.h"
#include "version.h"
#include "../data/fileio.h"
#include "../kernels/backend.h"
#include "../model/llama.h"
#include "../trainer/examples.h"
#include "../trainer/schedule.h"
#include "../trainer/train.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// Dense bf16 tensor-core peak of known cards (datasheet figures), for MFU; 0 = unknown.
static double gpu_peak_flops(const char *name) {
    if (strstr(name, "H100") || strstr(name, "H200") || strstr(name, "H800") || strstr(name, "GH200")) return 989e12;
    if (strstr(name, "A100") || strstr(name, "A800")) return 312e12;
    if (strstr(name, "L40S")) return 362e12;
    return 0;
}

static cJSON *peft_adapter_config(const lora_config *lc, const char *base) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "base_model_name_or_path", base);
    cJSON_AddStringToObject(o, "bias", "none");
    cJSON_AddBoolToObject(o, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(o, "inference_mode", 1);
    cJSON_AddBoolToObject(o, "init_lora_weights", 1);
    cJSON_AddNumberToObject(o, "lora_alpha", lc->alpha);
    cJSON_AddNumberToObject(o, "lora_dropout", lc->dropout);
    cJSON_AddStringToObject(o, "peft_type", "LORA");
    cJSON_AddNumberToObject(o, "r", lc->rank);
    cJSON *t = cJSON_AddArrayToObject(o, "target_modules");
    for (int i = 0; i < LORA_NUM_TARGETS; i++)
        if (lc->targets & (1u << i)) cJSON_AddItemToArray(t, cJSON_CreateString(lora_target_name((lora_target)i)));
    cJSON_AddStringToObject(o, "task_type", "CAUSAL_LM");
    cJSON_AddBoolToObject(o, "use_rslora", lc->rslora);
    cJSON_AddBoolToObject(o, "use_dora", 0);
    return o;
}

static int write_json(const char *path, cJSON *o, char *err, size_t errlen) {
    char *text = cJSON_Print(o);
    if (!text) { snprintf(err, errlen, "out of memory"); return -1; }
    int rc = fileio_write_atomic(path, text, strlen(text), err, errlen);
    free(text);
    return rc;
}

static int hash_into(cJSON *o, const char *key, const char *path) {
    char hex[65], err[256];
    if (fileio_sha256_file(path, hex, err, sizeof err)) return -1;
    cJSON_AddStringToObject(o, key, hex);
    return 0;
}

// Hashes of what the run was made from, so a run can be traced to its inputs.
static cJSON *input_hashes(const train_settings *s) {
    cJSON *h = cJSON_CreateObject();
    char path[4200];
    hash_into(h, "data_sha256", s->data_path);
    if (s->validation_path) hash_into(h, "validation_sha256", s->validation_path);
    snprintf(path, sizeof path, "%s/config.json", s->model_dir);
    hash_into(h, "model_config_sha256", path);
    snprintf(path, sizeof path, "%s/tokenizer.json", s->model_dir);
    hash_into(h, "tokenizer_sha256", path);
    snprintf(path, sizeof path, "%s/model.safetensors", s->model_dir);
    if (!fileio_exists(path)) snprintf(path, sizeof path, "%s/model.safetensors.index.json", s->model_dir);
    hash_into(h, "model_weights_sha256", path);
    return h;
}

typedef struct {
    const char *hp, *method, *schedule, *on_long;
    double lr, lora_alpha, lora_dropout, weight_decay, max_grad_norm, validation_split;
    int epochs, batch_size, micro_batch, grad_accum, warmup, lora_r, seed, max_seq_len;
} flag_values;

int cmd_train(int argc, char **argv) {
    train_settings s;
    settings_defaults(&s);
    // Flags start at sentinels so that only the ones given override the hyperparameters file.
    flag_values f = {NULL, NULL, NULL, NULL, NAN, NAN, NAN, NAN, NAN, NAN, -1, -1, -1, -1, -1, -1, -1, -1};
    int rslora = 0, full_flag = 0;
    const arg_spec specs[] = {
        {"model", ARG_STRING, &s.model_dir, "DIR", "Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json)"},
        {"data", ARG_STRING, &s.data_path, "FILE", "training data, Bedrock JSONL (any of the four formats)"},
        {"out", ARG_STRING, &s.out_dir, "RUN", "run directory to create (must be new or empty)"},
        {"resume", ARG_STRING, &s.resume_dir, "RUN", "continue a run from its newest checkpoint"},
        {"validation", ARG_STRING, &s.validation_path, "FILE", "validation data (Bedrock JSONL)"},
        {"validation-split", ARG_FLOAT, &f.validation_split, "F", "hold out this share of --data for validation (e.g. 0.05)"},
        {"hyperparameters", ARG_STRING, &f.hp, "FILE", "Bedrock hyperparameters JSON (epochCount, batchSize, learningRate, learningRateWarmupSteps)"},
        {"epochs", ARG_INT, &f.epochs, "N", "passes over the data (default 1)"},
        {"batch-size", ARG_INT, &f.batch_size, "N", "sequences per optimizer step (default 8)"},
        {"micro-batch", ARG_INT, &f.micro_batch, "N", "sequences per forward pass (default: the batch size)"},
        {"grad-accum", ARG_INT, &f.grad_accum, "N", "micro-batches per step (sets --micro-batch = batch/N)"},
        {"lr", ARG_FLOAT, &f.lr, "LR", "peak learning rate (default 1e-4)"},
        {"warmup-steps", ARG_INT, &f.warmup, "N", "linear warmup steps (default 0)"},
        {"schedule", ARG_STRING, &f.schedule, "NAME", "cosine | linear | constant (default linear)"},
        {"weight-decay", ARG_FLOAT, &f.weight_decay, "WD", "AdamW weight decay, not on norms and biases (default 0)"},
        {"max-grad-norm", ARG_FLOAT, &f.max_grad_norm, "N", "clip the global gradient norm (default 1; 0 = off)"},
        {"max-steps", ARG_INT, &s.max_steps, "N", "stop after N optimizer steps"},
        {"method", ARG_STRING, &f.method, "lora|full", "LoRA adapters (default) or all weights"},
        {"full", ARG_FLAG, &full_flag, NULL, "same as --method full"},
        {"lora-r", ARG_INT, &f.lora_r, "R", "LoRA rank (default 16)"},
        {"lora-alpha", ARG_FLOAT, &f.lora_alpha, "A", "LoRA alpha (default 32)"},
        {"lora-dropout", ARG_FLOAT, &f.lora_dropout, "P", "dropout on the adapters' input (default 0)"},
        {"lora-targets", ARG_STRING, &s.lora_targets, "LIST", "all-linear (default) or q,k,v,o,gate,up,down"},
        {"rslora", ARG_FLAG, &rslora, NULL, "scale adapters by alpha/sqrt(r) (rsLoRA)"},
        {"max-seq-len", ARG_INT, &f.max_seq_len, "T", "packed sequence length (default 2048)"},
        {"on-long", ARG_STRING, &f.on_long, "truncate|error", "records longer than --max-seq-len (default truncate)"},
        {"train-on-prompt", ARG_FLAG, &s.train_on_prompt, NULL, "train on every token, not only the answers"},
        {"template", ARG_STRING, &s.template_name, "NAME", "chat template family (default: detected)"},
        {"template-date", ARG_STRING, &s.template_date, "DATE", "pin the Llama 3.1+ date line, e.g. \"26 Jul 2024\""},
        {"seed", ARG_INT, &f.seed, "S", "seed for shuffling, LoRA init and dropout (default 42)"},
        {"eval-every", ARG_INT, &s.eval_every, "N", "evaluate every N steps (default: each epoch)"},
        {"save-every", ARG_INT, &s.save_every, "N", "checkpoint every N steps (default: each epoch)"},
        {"keep-checkpoints", ARG_INT, &s.keep_checkpoints, "K", "keep the newest K checkpoints (default 2)"},
        {"early-stopping-patience", ARG_INT, &s.early_stopping_patience, "N", "stop after N evaluations without improvement"},
        {"grad-checkpoint", ARG_FLAG, &s.grad_checkpoint, NULL, "recompute each layer in the backward (less memory)"},
        {"device", ARG_STRING, &s.device, "DEV", "cpu | cuda | cuda:N | auto (default: cuda when a GPU is present)"},
        {"quiet", ARG_FLAG, &s.quiet, NULL, "no progress display"},
    };
    const arg_parser p = {"train", "quarry train --model DIR --data FILE --out RUN [options]",
                          "Fine-tunes a Hugging Face Llama-family checkpoint (LoRA or all weights) on Bedrock\n"
                          "JSONL data and writes RUN/: run.json, step_wise_training_metrics.csv,\n"
                          "validation_metrics.csv, loss.svg, checkpoints/step-N/ and final/.\n"
                          "Flags override --hyperparameters. SIGINT/SIGTERM save a checkpoint and exit 130.",
                          specs, (int)(sizeof specs / sizeof specs[0]), 0, 0};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;

    char err[1024];
    if (s.resume_dir && !s.out_dir) s.out_dir = s.resume_dir;
    if (!s.model_dir || !s.data_path || !s.out_dir) {
        fprintf(stderr, "quarry train: error: --model, --data and --out are required\nusage: %s\n", p.usage);
        return 2;
    }
    if (f.hp && settings_load_hyperparameters(&s, f.hp, err, sizeof err)) {
        fprintf(stderr, "quarry train: error: %s\n", err);
        return 2;
    }
    if (f.epochs >= 0) s.epochs = f.epochs;
    if (f.batch_size >= 0) s.batch_size = f.batch_size;
    if (f.micro_batch >= 0) s.micro_batch = f.micro_batch;
    if (f.grad_accum > 0) {
        if (s.batch_size % f.grad_accum) {
            fprintf(stderr, "quarry train: error: --batch-size %d is not a multiple of --grad-accum %d\n", s.batch_size, f.grad_accum);
            return 2;
        }
        s.micro_batch = s.batch_size / f.grad_accum;
    }
    if (!isnan(f.lr)) s.lr = f.lr;
    if (f.warmup >= 0) s.warmup_steps = f.warmup;
    if (f.schedule) {
        int k = schedule_parse(f.schedule);
        if (k < 0) { fprintf(stderr, "quarry train: error: --schedule must be cosine, linear or constant\n"); return 2; }
        s.schedule = k;
    }
    if (!isnan(f.weight_decay)) s.weight_decay = f.weight_decay;
    if (!isnan(f.max_grad_norm)) s.max_grad_norm = f.max_grad_norm;
    if (!isnan(f.validation_split)) s.validation_split = f.validation_split;
    if (f.method) {
        if (!strcmp(f.method, "full")) s.full = 1;
        else if (!strcmp(f.method, "lora")) s.full = 0;
        else { fprintf(stderr, "quarry train: error: --method must be lora or full\n"); return 2; }
    }
    if (full_flag) s.full = 1;
    if (f.lora_r >= 0) s.lora_r = f.lora_r;
    if (!isnan(f.lora_alpha)) s.lora_alpha = f.lora_alpha;
    if (!isnan(f.lora_dropout)) s.lora_dropout = f.lora_dropout;
    s.rslora = rslora;
    if (f.max_seq_len >= 0) s.max_seq_len = f.max_seq_len;
    if (f.on_long) {
        if (!strcmp(f.on_long, "error")) s.on_long_error = 1;
        else if (strcmp(f.on_long, "truncate")) { fprintf(stderr, "quarry train: error: --on-long must be truncate or error\n"); return 2; }
    }
    if (f.seed >= 0) s.seed = (unsigned long long)f.seed;
    if (s.validation_path && s.validation_split > 0) {
        fprintf(stderr, "quarry train: error: give --validation FILE or --validation-split, not both\n");
        return 2;
    }
    if (settings_check(&s, err, sizeof err)) { fprintf(stderr, "quarry train: error: %s\n", err); return 2; }

    // A run directory is never overwritten: it must be new or empty, unless resumed.
    char resume_ckpt[4300] = "";
    if (s.resume_dir) {
        if (!checkpoint_find_latest(s.resume_dir, resume_ckpt, sizeof resume_ckpt)) {
            fprintf(stderr, "quarry train: error: %s has no complete checkpoint to resume from\n", s.resume_dir);
            return 1;
        }
    } else if (!fileio_is_empty_or_absent(s.out_dir)) {
        fprintf(stderr, "quarry train: error: %s exists and is not empty; choose a new --out, or --resume %s to continue it\n",
                s.out_dir, s.out_dir);
        return 1;
    }
    if (fileio_mkdir_p(s.out_dir, err, sizeof err)) { fprintf(stderr, "quarry train: error: %s\n", err); return 1; }

    backend *be = backend_open(s.device, err, sizeof err);
    if (!be) { fprintf(stderr, "quarry train: error: %s\n", err); return 1; }
    double peak = 0;
    char device_name[256] = "cpu";
    if (be->device_index >= 0) {
        cuda_report r;
        cuda_query(&r);
        snprintf(device_name, sizeof device_name, "%s", r.devices[be->device_index].name);
        peak = gpu_peak_flops(device_name);
    }

    int status = 1;
    tokenizer *tok = NULL;
    chat_template *tmpl = NULL;
    model *m = NULL;
    example_set train = {0}, val = {0};
    int have_val = 0;
    double t_start = now_seconds();

    tok = tokenizer_load(s.model_dir, err, sizeof err);
    if (!tok) goto fail;
    tmpl = chat_template_load(s.model_dir, s.template_name, err, sizeof err);
    if (!tmpl) goto fail;
    if (tmpl->note) fprintf(stderr, "quarry train: note: %s\n", tmpl->note);
    examples_source src = {s.data_path, tok, tmpl, {s.template_date, 0, s.train_on_prompt}, s.quiet};
    example *ex;
    int nex;
    if (examples_load(&src, &ex, &nex, err, sizeof err)) goto fail;
    if (example_set_init(&train, ex, nex, s.max_seq_len, s.on_long_error ? ON_LONG_ERROR : ON_LONG_TRUNCATE,
                         s.data_path, err, sizeof err))
        goto fail;
    if (s.validation_path) {
        src.path = s.validation_path;
        if (examples_load(&src, &ex, &nex, err, sizeof err) ||
            example_set_init(&val, ex, nex, s.max_seq_len, s.on_long_error ? ON_LONG_ERROR : ON_LONG_TRUNCATE,
                             s.validation_path, err, sizeof err))
            goto fail;
        have_val = 1;
    } else if (s.validation_split > 0) {
        if (example_set_split(&train, &val, s.validation_split, s.seed, err, sizeof err)) goto fail;
        have_val = 1;
    }
    fprintf(stderr, "quarry train: %d training examples (%ld tokens, %ld trained)%s", train.n, train.total_tokens,
            train.trained_tokens, have_val ? "" : "\n");
    if (have_val) fprintf(stderr, ", %d validation examples\n", val.n);
    if (train.truncated) fprintf(stderr, "quarry train: warning: %d records truncated to %d tokens (--on-long error refuses them)\n",
                                 train.truncated, s.max_seq_len);

    m = model_open(s.model_dir, be, err, sizeof err);
    if (!m) goto fail;
    const model_config *cfg = model_get_config(m);
    if (cfg->sliding_window > 0 && s.max_seq_len > cfg->sliding_window) {
        snprintf(err, sizeof err, "this model's sliding_window is %d, shorter than --max-seq-len %d; quarry implements full "
                 "attention only, so use --max-seq-len %d or less", cfg->sliding_window, s.max_seq_len, cfg->sliding_window);
        goto fail;
    }
    lora_config lc = lora_config_default();
    if (!s.full) {
        lc.rank = s.lora_r;
        lc.alpha = (float)s.lora_alpha;
        lc.dropout = (float)s.lora_dropout;
        lc.rslora = s.rslora;
        lc.seed = s.seed;
        if (lora_targets_parse(s.lora_targets, &lc.targets, err, sizeof err) || model_enable_lora(m, &lc, err, sizeof err))
            goto fail;
    }
    model_options mo = {s.micro_batch, s.max_seq_len, s.full ? MODEL_TRAIN_FULL : MODEL_TRAIN_LORA, s.grad_checkpoint};
    model_memory plan;
    if (model_plan(m, &mo, &plan, err, sizeof err)) goto fail;
    if (!s.quiet) model_memory_print(&plan, stderr);
    if (model_allocate(m, err, sizeof err)) goto fail;

    // run.json first, so even an interrupted run says what it was.
    char path[4400];
    cJSON *run = cJSON_CreateObject();
    cJSON_AddStringToObject(run, "quarry_version", QUARRY_VERSION);
    cJSON_AddStringToObject(run, "quarry_commit", QUARRY_GIT_COMMIT);
    cJSON_AddStringToObject(run, "device", be->name);
    cJSON_AddStringToObject(run, "device_name", device_name);
    char abs_model[4096];
    if (!realpath(s.model_dir, abs_model)) snprintf(abs_model, sizeof abs_model, "%s", s.model_dir);
    cJSON_AddStringToObject(run, "base_model", abs_model);
    cJSON_AddItemToObject(run, "settings", settings_to_json(&s));
    cJSON_AddItemToObject(run, "inputs", input_hashes(&s));
    cJSON_AddStringToObject(run, "template", tmpl->name);
    cJSON *mem = cJSON_AddObjectToObject(run, "memory_plan_bytes");
    cJSON_AddNumberToObject(mem, "weights", (double)plan.weights);
    cJSON_AddNumberToObject(mem, "masters", (double)plan.masters);
    cJSON_AddNumberToObject(mem, "grads", (double)plan.grads);
    cJSON_AddNumberToObject(mem, "optimizer", (double)plan.moments);
    cJSON_AddNumberToObject(mem, "activations", (double)plan.activations);
    cJSON_AddNumberToObject(mem, "total", (double)plan.total);
    cJSON_AddNumberToObject(run, "params_total", (double)plan.params_total);
    cJSON_AddNumberToObject(run, "params_trained", (double)plan.params_trained);
    cJSON_AddNumberToObject(run, "train_examples", train.n);
    cJSON_AddNumberToObject(run, "validation_examples", have_val ? val.n : 0);
    cJSON_AddNumberToObject(run, "truncated_examples", train.truncated);
    snprintf(path, sizeof path, "%s/run.json", s.out_dir);
    if (!s.resume_dir && write_json(path, run, err, sizeof err)) { cJSON_Delete(run); goto fail; }

    train_install_signal_handlers();
    train_result res;
    int trc = train_run(&s, be, m, &train, have_val ? &val : NULL, s.out_dir, resume_ckpt[0] ? resume_ckpt : NULL, peak,
                        &res, err, sizeof err);
    double wall = now_seconds() - t_start;
    cJSON *out = cJSON_AddObjectToObject(run, "result");
    cJSON_AddNumberToObject(out, "steps", res.steps_done);
    cJSON_AddNumberToObject(out, "tokens_trained", (double)res.tokens_seen);
    cJSON_AddNumberToObject(out, "train_seconds", res.train_seconds);
    cJSON_AddNumberToObject(out, "wall_seconds", wall);
    cJSON_AddNumberToObject(out, "tokens_per_second", res.tokens_per_second);
    cJSON_AddNumberToObject(out, "mfu", res.mfu);
    cJSON_AddNumberToObject(out, "gpus", be->device_index >= 0 ? 1 : 0);
    cJSON_AddNumberToObject(out, "gpu_hours", be->device_index >= 0 ? res.train_seconds / 3600.0 : 0);
    if (isfinite(res.last_train_loss)) cJSON_AddNumberToObject(out, "final_training_loss", res.last_train_loss);
    if (isfinite(res.first_val_loss)) cJSON_AddNumberToObject(out, "initial_validation_loss", res.first_val_loss);
    if (isfinite(res.last_val_loss)) cJSON_AddNumberToObject(out, "final_validation_loss", res.last_val_loss);
    cJSON_AddBoolToObject(out, "stopped_early", res.stopped_early);
    cJSON_AddBoolToObject(out, "interrupted", res.interrupted);
    if (trc == 0 && !res.interrupted) {
        char final_dir[4300];
        snprintf(final_dir, sizeof final_dir, "%s/final", s.out_dir);
        if (fileio_mkdir_p(final_dir, err, sizeof err)) { cJSON_Delete(run); goto fail; }
        snprintf(path, sizeof path, "%s/%s", final_dir, s.full ? "model.safetensors" : "adapter_model.safetensors");
        if (checkpoint_write_trained(path, m, err, sizeof err)) { cJSON_Delete(run); goto fail; }
        if (!s.full) {
            cJSON *ac = peft_adapter_config(&lc, abs_model);
            snprintf(path, sizeof path, "%s/adapter_config.json", final_dir);
            int wrc = write_json(path, ac, err, sizeof err);
            cJSON_Delete(ac);
            if (wrc) { cJSON_Delete(run); goto fail; }
        }
    }
    snprintf(path, sizeof path, "%s/run.json", s.out_dir);
    if (write_json(path, run, err, sizeof err)) fprintf(stderr, "quarry train: warning: %s\n", err);
    cJSON_Delete(run);
    if (trc) goto fail;
    if (res.interrupted) {
        fprintf(stderr, "quarry train: interrupted at step %d; checkpoint written. Continue with --resume %s\n",
                res.steps_done, s.out_dir);
        status = 130;
    } else {
        fprintf(stderr, "quarry train: done: %d steps, %lld tokens in %.1f s (%.0f tok/s)", res.steps_done,
                res.tokens_seen, res.train_seconds, res.tokens_per_second);
        if (isfinite(res.last_val_loss)) fprintf(stderr, ", validation loss %.4f → %.4f", res.first_val_loss, res.last_val_loss);
        fprintf(stderr, "\nquarry train: wrote %s/final\n", s.out_dir);
        status = 0;
    }
    goto cleanup;
fail:
    fprintf(stderr, "quarry train: error: %s\n", err);
    status = 1;
cleanup:
    model_free(m);
    example_set_free(&train);
    if (have_val) example_set_free(&val);
    chat_template_free(tmpl);
    tokenizer_free(tok);
    be->destroy(be);
    return status;
}
