// cli/cmd_train.c — `quarry train`: fine-tune a Hugging Face checkpoint on Bedrock data.
#include "args.h"
#include "commands.h"
#include "diag.h"
#include "../data/progress.h"
#include "version.h"
#include "train_resume.h"
#include "../data/fileio.h"
#include "../data/scan_data.h"
#include "../kernels/backend.h"
#include "../kernels/cudnn_load.h"
#include "../model/llama.h"
#include "../model/mxfp4_load.h"
#include "../model/plan_fit.h"
#include "../trainer/dist.h"
#include "../trainer/example_store.h"
#include "../trainer/launch.h"
#include "../trainer/run_lock.h"
#include "../trainer/run_record.h"
#include "../trainer/schedule.h"
#include "../trainer/train.h"
#include "../trainer/zero.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// Dense bf16 tensor-core peak of known cards (datasheet figures), for MFU; 0 = unknown.
static double gpu_peak_flops(const char *name) {
    if (strstr(name, "H100") || strstr(name, "H200") || strstr(name, "H800") || strstr(name, "GH200")) return 989e12;
    if (strstr(name, "A100") || strstr(name, "A800")) return 312e12;
    if (strstr(name, "L40S")) return 362e12;
    return 0;
}

// target_modules: the modules the model's adapters are on (lora_peft_target_modules: their last
// names, or a regex where those names would also select a module quarry did not adapt).
// gpt-oss: its experts and router are parameters, not nn.Linear modules; PEFT adapts them as
// target_parameters (model/lora_peft.h), and refuses lora_dropout ≠ 0 there (ParamWrapper has no
// input to drop), so the config says 0: dropout changes training only, never the adapter's
// function (the run's own dropout is in run.json).
static cJSON *peft_adapter_config(model *m, const char *base) {
    const lora_config *lc = model_get_lora(m);
    const model_config *mc = model_get_config(m);
    int params = mc->experts_fused && (lc->targets & (LORA_EXPERTS_BIT | LORA_ROUTER_BIT));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "base_model_name_or_path", base);
    cJSON_AddStringToObject(o, "bias", "none");
    cJSON_AddBoolToObject(o, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(o, "inference_mode", 1);
    cJSON_AddBoolToObject(o, "init_lora_weights", 1);
    cJSON_AddNumberToObject(o, "lora_alpha", lc->alpha);
    cJSON_AddNumberToObject(o, "lora_dropout", params ? 0.0 : lc->dropout);
    cJSON_AddStringToObject(o, "peft_type", "LORA");
    cJSON_AddNumberToObject(o, "r", lc->rank);
    int n = model_param_count(m), na = 0, nl = 0;
    char (*paths)[128] = calloc((size_t)n, sizeof *paths);
    const char **adapted = calloc((size_t)n, sizeof *adapted), **linear = calloc((size_t)n, sizeof *linear);
    for (int i = 0; paths && adapted && linear && i < n; i++) {
        const model_param *p = model_param_at(m, i);
        const char *end = strstr(p->name, ".lora_A.");
        size_t len = strlen(p->name);
        if (params && end && (strstr(p->name, ".mlp.experts.") || strstr(p->name, ".mlp.router."))) continue;
        if (!strncmp(p->name, "base_model.model.", 17) && end) {
            snprintf(paths[i], sizeof paths[i], "%.*s", (int)(end - p->name - 17), p->name + 17);
            adapted[na++] = paths[i];
        } else if (strncmp(p->name, "base_model.", 11) && p->ndim == 2 && len > 7 &&
                   !strcmp(p->name + len - 7, ".weight")) {
            snprintf(paths[i], sizeof paths[i], "%.*s", (int)(len - 7), p->name);
            linear[nl++] = paths[i];
        }
    }
    cJSON *t = paths && adapted && linear ? lora_peft_target_modules(adapted, na, linear, nl) : NULL;
    free(paths);
    free(adapted);
    free(linear);
    if (!t) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddItemToObject(o, "target_modules", t);
    if (params) {
        cJSON *tp = cJSON_AddArrayToObject(o, "target_parameters");
        if (lc->targets & LORA_EXPERTS_BIT) {
            cJSON_AddItemToArray(tp, cJSON_CreateString("mlp.experts.gate_up_proj"));
            cJSON_AddItemToArray(tp, cJSON_CreateString("mlp.experts.down_proj"));
        }
        if (lc->targets & LORA_ROUTER_BIT) cJSON_AddItemToArray(tp, cJSON_CreateString("mlp.router.weight"));
    }
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

typedef struct {
    const char *hp, *method, *schedule, *on_long, *truncate;
    double lr, lora_alpha, lora_dropout, weight_decay, max_grad_norm, validation_split, router_aux;
    int epochs, batch_size, micro_batch, grad_accum, warmup, lora_r, seed, max_seq_len;
} flag_values;

typedef struct { int gpus, ranks, zero; double timeout_s; } dp_flags;

// What every rank of a run shares (read-only once training starts).
typedef struct {
    train_settings *s;
    lora_config lc;
    const example_set *train, *val;
    const char *template_name;
    train_resume *resume;         // rank 0's; NULL when starting
    int zero, world;
    const char *dist_kind;
    double t_start;
    dist_group *group;            // --ranks: the threads' group
    int omp_threads;              // --ranks: OpenMP threads of each rank
    const char *attention;        // --attention auto|cudnn|quarry (NULL: auto)
    const char *offload;          // --offload-activations auto|on|off (NULL: auto)
} run_ctx;

static int train_rank(const run_ctx *c, int rank, backend *be, dist *d);

// What the model's config.json allows, read before anything costly: the architecture, and
// --max-seq-len within its context (default: min(2048, max_position_embeddings)) and, with a
// sliding window, within the window (quarry implements full attention only). 0 or -1.
// seq_len: 0 default, 1 given, 2 recorded by a resumed run (kept as it trained).
static int train_check_model(train_settings *s, int seq_len, char *err, size_t errlen) {
    model_config cfg;
    if (model_config_load(&cfg, s->model_dir, err, errlen)) return -1;
    int ctx = cfg.max_position_embeddings;
    if (seq_len == 0 && ctx > 0 && ctx < s->max_seq_len) s->max_seq_len = ctx;
    if (seq_len == 1 && ctx > 0 && s->max_seq_len > ctx) {
        snprintf(err, errlen, "--max-seq-len %d is longer than this model's context (max_position_embeddings %d in "
                 "%s/config.json); positions past it were never trained\nhint: use --max-seq-len %d or less", s->max_seq_len,
                 ctx, s->model_dir, ctx);
        return -1;
    }
    // Per-layer windows (gpt-oss's layer_types) are masked by the attention op: no limit.
    if (cfg.sliding_window > 0 && cfg.n_layer_types == 0 && s->max_seq_len > cfg.sliding_window) {
        snprintf(err, errlen, "this model's sliding_window is %d, shorter than --max-seq-len %d; quarry implements full "
                 "attention only, so use --max-seq-len %d or less", cfg.sliding_window, s->max_seq_len, cfg.sliding_window);
        return -1;
    }
    return 0;
}

// Flags that cannot all hold: -1 with a message naming them. recorded_full: a resumed run's
// method (-1 when starting), which LoRA flags contradict as --full does.
static int train_flags_contradict(const train_settings *given, const flag_values *f, int full_flag, int rslora,
                                  int recorded_full, char *err, size_t errlen) {
    if (f->method && full_flag && strcmp(f->method, "full")) {
        snprintf(err, errlen, "--method %s and --full contradict each other; give one", f->method);
        return -1;
    }
    int full = full_flag || (f->method ? !strcmp(f->method, "full") : recorded_full == 1);
    const char *lora_flag = f->lora_r >= 0 ? "--lora-r" : !isnan(f->lora_alpha) ? "--lora-alpha"
                          : !isnan(f->lora_dropout) ? "--lora-dropout" : given->lora_targets ? "--lora-targets"
                          : rslora ? "--rslora" : NULL;
    if (full && lora_flag) {
        snprintf(err, errlen, "%s shapes LoRA adapters, but %s trains all weights; drop %s or use --method lora", lora_flag,
                 f->method || full_flag ? "--method full" : "this run (method full)", lora_flag);
        return -1;
    }
    return 0;
}

typedef struct {
    const run_ctx *c;
    int rank, status;
} rank_thread;

static void *rank_thread_main(void *arg) {
    rank_thread *t = arg;
    backend *be = backend_cpu(t->c->omp_threads);
    dist *d = be ? dist_group_join(t->c->group, t->rank, be) : NULL;
    if (!be || !d) {
        fprintf(stderr, "quarry train: error: rank %d: out of memory\n", t->rank);
        t->status = 1;
        if (be) be->destroy(be);
        return NULL;
    }
    t->status = train_rank(t->c, t->rank, be, d);
    dist_close(d);
    be->destroy(be);
    return NULL;
}

int cmd_train(int argc, char **argv) {
    // Flags land in s with every field unset; the run's settings are then the defaults (or the
    // resumed run's record) with the given flags over them.
    train_settings s;
    settings_unset(&s);
    // Flags start at sentinels so that only the ones given override the hyperparameters file.
    flag_values f = {NULL, NULL, NULL, NULL, NULL, NAN, NAN, NAN, NAN, NAN, NAN, NAN, -1, -1, -1, -1, -1, -1, -1, -1};
    int rslora = 0, full_flag = 0, grad_ckpt = 0;
    const char *micro_arg = NULL, *recompute_arg = NULL, *scan_arg = NULL, *attention_arg = NULL, *offload_arg = NULL;
    int data_threads = 0;   // not a setting: the tokens are the same at any count (not in run.json)
    dp_flags dp = {0, 0, 0, 600.0};
    const arg_spec specs[] = {
        {"model", ARG_STRING, &s.model_dir, "DIR", "Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json)"},
        {"data", ARG_STRING, &s.data_path, "FILE", "training data, Bedrock JSONL (any of the four formats)"},
        {"out", ARG_STRING, &s.out_dir, "RUN", "run directory to create (must be new or empty)"},
        {"resume", ARG_STRING, &s.resume_dir, "RUN", "continue RUN (or from RUN/checkpoints/step-N) with the settings of its "
         "run.json; flags may change only --max-steps, --eval-every, --save-every, --keep-checkpoints, the device and "
         "the ranks"},
        {"validation", ARG_STRING, &s.validation_path, "FILE", "validation data (Bedrock JSONL)"},
        {"validation-split", ARG_FLOAT, &f.validation_split, "F", "hold out this share of --data for validation (e.g. 0.05)"},
        {"hyperparameters", ARG_STRING, &f.hp, "FILE", "Bedrock hyperparameters JSON (epochCount, batchSize, learningRate, learningRateWarmupSteps)"},
        {"epochs", ARG_INT, &f.epochs, "N", "passes over the data (default 1)"},
        {"batch-size", ARG_INT, &f.batch_size, "N", "sequences per optimizer step (default 8)"},
        {"micro-batch", ARG_STRING, &micro_arg, "N|auto", "sequences per forward pass (default: the batch size); auto: the "
         "largest whose memory plan fits the device"},
        {"grad-accum", ARG_INT, &f.grad_accum, "N", "micro-batches per step (sets --micro-batch = batch/N)"},
        {"lr", ARG_FLOAT, &f.lr, "LR", "peak learning rate (default 1e-4)"},
        {"warmup-steps", ARG_INT, &f.warmup, "N", "linear warmup steps (default 0)"},
        {"schedule", ARG_STRING, &f.schedule, "cosine|linear|constant", "learning-rate schedule after warmup (default linear)"},
        {"weight-decay", ARG_FLOAT, &f.weight_decay, "WD", "AdamW weight decay, not on norms and biases (default 0)"},
        {"max-grad-norm", ARG_FLOAT, &f.max_grad_norm, "N", "clip the global gradient norm (default 1; 0 = off)"},
        {"router-aux-loss-coef", ARG_FLOAT, &f.router_aux, "C",
         "MoE models: weight of the router load-balancing loss (default: the config's when output_router_logits, else 0)"},
        {"max-steps", ARG_INT, &s.max_steps, "N", "stop after N optimizer steps"},
        {"method", ARG_STRING, &f.method, "lora|full", "LoRA adapters (default) or all weights"},
        {"full", ARG_FLAG, &full_flag, NULL, "same as --method full"},
        {"lora-r", ARG_INT, &f.lora_r, "R", "LoRA rank (default 16)"},
        {"lora-alpha", ARG_FLOAT, &f.lora_alpha, "A", "LoRA alpha (default 32)"},
        {"lora-dropout", ARG_FLOAT, &f.lora_dropout, "P", "dropout on the adapters' input (default 0)"},
        {"lora-targets", ARG_STRING, &s.lora_targets, "LIST",
         "all-linear (default), attention, experts, or q,k,v,o,gate,up,down,experts,router (gpt-oss: all-linear "
         "= attention + the fused experts as PEFT's target_parameters)"},
        {"rslora", ARG_FLAG, &rslora, NULL, "scale adapters by alpha/sqrt(r) (rsLoRA)"},
        {"quantize", ARG_STRING, &s.quantize, "nf4", "QLoRA: the base's decoder linears frozen in 4-bit NF4, quantised at "
         "load as bitsandbytes does (double quant); LoRA only"},
        {"no-double-quant", ARG_FLAG, &s.no_double_quant, NULL, "with --quantize nf4: plain f32 absmax per 64 weights"},
        {"experts-dtype", ARG_STRING, &s.experts_dtype, "mxfp4|bf16", "gpt-oss: its MXFP4 experts kept packed on the "
         "device (4.25 bits a weight, frozen) or dequantised at load (default: mxfp4 for LoRA on an MXFP4 checkpoint, "
         "else bf16; full fine-tuning needs bf16)"},
        {"max-seq-len", ARG_INT, &f.max_seq_len, "T", "packed sequence length (default: min(2048, the model's max_position_embeddings))"},
        {"on-long", ARG_STRING, &f.on_long, "truncate|error", "records longer than --max-seq-len (default truncate)"},
        {"truncate", ARG_STRING, &f.truncate, "right|left", "which end of a long record goes: right keeps the start, left "
         "keeps the answer (default right, refused when it would drop records)"},
        {"allow-extra-keys", ARG_FLAG, &s.allow_extra_keys, NULL, "unknown keys in the data are warnings, not errors"},
        {"train-on-prompt", ARG_FLAG, &s.train_on_prompt, NULL, "train on every token, not only the answers"},
        {"template", ARG_STRING, &s.template_name, "NAME", "chat template family (default: detected)"},
        {"template-date", ARG_STRING, &s.template_date, "DATE", "pin the Llama 3.1+ date line, e.g. \"26 Jul 2024\" (gpt-oss: \"2025-08-05\"; default: the run's day)"},
        {"seed", ARG_INT, &f.seed, "S", "seed for shuffling, LoRA init and dropout (default 42)"},
        {"eval-every", ARG_INT, &s.eval_every, "N", "evaluate every N steps (default: each epoch)"},
        {"save-every", ARG_INT, &s.save_every, "N", "checkpoint every N steps (default: each epoch)"},
        {"keep-checkpoints", ARG_INT, &s.keep_checkpoints, "K", "keep the newest K checkpoints (default 2)"},
        {"early-stopping-patience", ARG_INT, &s.early_stopping_patience, "N", "stop after N evaluations without improvement"},
        {"recompute", ARG_STRING, &recompute_arg, "none|selective|full", "activations the backward recomputes: none, selective (the "
         "default: norms and SwiGLU, same results) or full (whole layers, least memory)"},
        {"grad-checkpoint", ARG_FLAG, &grad_ckpt, NULL, "same as --recompute full"},
        {"device", ARG_STRING, &s.device, "cpu|cuda|cuda:N|auto", "the device (default: cuda when a GPU is present)"},
        {"attention", ARG_STRING, &attention_arg, "auto|cudnn|quarry", "attention implementation on cuda: cuDNN's fused "
         "SDPA when found (auto, the default) or required (cudnn), or quarry's own kernel"},
        {"offload-activations", ARG_STRING, &offload_arg, "auto|on|off", "long context: each layer's saved activations in "
         "pinned host memory between its forward and backward (copies beside the compute); auto (the default) turns it "
         "on, after the MLP in sequence chunks, only when the memory plan does not fit otherwise"},
        {"gpus", ARG_INT, &dp.gpus, "N", "data parallel over N GPUs of this server: starts N worker processes (NCCL)"},
        {"ranks", ARG_INT, &dp.ranks, "N", "data parallel over N threads of this process (--device cpu; for trying sharding)"},
        {"zero", ARG_INT, &dp.zero, "0|1|2", "data parallel: 0 all-reduce, 1 shard AdamW state and f32 masters, 2 also gradients"},
        {"dist-timeout", ARG_FLOAT, &dp.timeout_s, "SEC", "fail when another rank is silent this long (default 600)"},
        {"scan", ARG_STRING, &scan_arg, "off|warn|error", "scan the data for secrets and personal data (default warn)"},
        {"data-threads", ARG_INT, &data_threads, "N", "threads tokenizing the data (default: $QUARRY_DATA_THREADS, else "
         "every core; the tokens are the same at any count)"},
        {"quiet", ARG_FLAG, &s.quiet, NULL, "no progress display"},
    };
    const arg_parser p = {"train", "quarry train --model DIR --data FILE --out RUN [options] | --resume RUN [options]",
                          "Fine-tunes a Hugging Face Llama-family checkpoint (LoRA or all weights) on Bedrock\n"
                          "JSONL data and writes RUN/: run.json, step_wise_training_metrics.csv,\n"
                          "validation_metrics.csv, loss.svg, TensorBoard's events.out.tfevents.*,\n"
                          "checkpoints/step-N/ and final/.\n"
                          "Flags override --hyperparameters. SIGINT/SIGTERM save a checkpoint and exit 130.\n"
                          "Data parallel: --gpus N (one process per GPU), or under torchrun, srun or mpirun\n"
                          "(their environment names the ranks); --device cpu --ranks N runs N ranks as threads.",
                          specs, (int)(sizeof specs / sizeof specs[0]), 0, 0};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;

    char err[4096];
    train_settings given = s;
    train_resume rs_store, *rs = NULL;
    int status = 1, lock_fd = -1;
    if (given.resume_dir) {
        rs = &rs_store;
        if (train_resume_open(rs, given.resume_dir, err, sizeof err)) {
            fprintf(stderr, "quarry train: error: %s\n", err);
            train_resume_close(rs);
            return 1;
        }
        if (rs->finished) {
            status = train_resume_finished(rs, given.max_steps);
            train_resume_close(rs);
            return status;
        }
        if (given.out_dir && strcmp(given.out_dir, rs->run_dir) && strcmp(given.out_dir, given.resume_dir)) {
            fprintf(stderr, "quarry train: error: --resume %s continues that run in place; drop --out %s\n", given.resume_dir,
                    given.out_dir);
            train_resume_close(rs);
            return 2;
        }
        s = rs->recorded;
    } else {
        settings_defaults(&s);
    }
    settings_overlay(&s, &given);
    if (rs) s.out_dir = rs->run_dir;
    if (train_flags_contradict(&given, &f, full_flag, rslora, rs ? rs->recorded.full : -1, err, sizeof err)) {
        fprintf(stderr, "quarry train: error: %s\n", err);
        goto usage_fail;
    }
    if (!s.model_dir || !s.data_path || !s.out_dir) {
        fprintf(stderr, "quarry train: error: --model, --data and --out are required\nusage: %s\n", p.usage);
        goto usage_fail;
    }
    if (f.hp && settings_load_hyperparameters(&s, f.hp, err, sizeof err)) {
        fprintf(stderr, "quarry train: error: %s\n", err);
        goto usage_fail;
    }
    if (f.epochs >= 0) s.epochs = f.epochs;
    if (f.batch_size >= 0) s.batch_size = f.batch_size;
    if (micro_arg && !strcmp(micro_arg, "auto")) {
        s.micro_batch_auto = 1;
        s.micro_batch = 0;
    } else if (micro_arg) {
        char *end;
        long v = strtol(micro_arg, &end, 10);
        if (end == micro_arg || *end || v < 1 || v > 1 << 20) {
            fprintf(stderr, "quarry train: error: --micro-batch must be a positive whole number or auto (got '%s')\n", micro_arg);
            goto usage_fail;
        }
        s.micro_batch = (int)v;
    }
    if (data_threads < 0 || data_threads > 1024) {
        fprintf(stderr, "quarry train: error: --data-threads must be 1..1024 (got %d)\n", data_threads);
        goto usage_fail;
    }
    attention_mode attention_parsed;
    if (!attention_mode_parse(attention_arg, &attention_parsed)) {
        fprintf(stderr, "quarry train: error: --attention must be auto, cudnn or quarry (got '%s')\n", attention_arg);
        goto usage_fail;
    }
    plan_offload offload_parsed;
    if (plan_offload_parse(offload_arg, &offload_parsed)) {
        fprintf(stderr, "quarry train: error: --offload-activations must be auto, on or off (got '%s')\n", offload_arg);
        goto usage_fail;
    }
    if (recompute_arg) {
        model_recompute r;
        if (model_recompute_parse(recompute_arg, &r)) {
            fprintf(stderr, "quarry train: error: --recompute must be none, selective or full (got '%s')\n", recompute_arg);
            goto usage_fail;
        }
        if (grad_ckpt && r != MODEL_RECOMPUTE_FULL) {
            fprintf(stderr, "quarry train: error: --grad-checkpoint means --recompute full; give one of them\n");
            goto usage_fail;
        }
        s.recompute = r;
    }
    if (grad_ckpt) s.recompute = MODEL_RECOMPUTE_FULL;
    if (s.micro_batch_auto && f.grad_accum > 0) {
        fprintf(stderr, "quarry train: error: --micro-batch auto picks the micro-batch; drop --grad-accum\n");
        goto usage_fail;
    }
    if (f.grad_accum > 0) {
        if (s.batch_size % f.grad_accum) {
            fprintf(stderr, "quarry train: error: --batch-size %d is not a multiple of --grad-accum %d\n", s.batch_size, f.grad_accum);
            goto usage_fail;
        }
        if (micro_arg && s.micro_batch != s.batch_size / f.grad_accum) {
            fprintf(stderr, "quarry train: error: --micro-batch %d and --grad-accum %d contradict each other (--batch-size %d "
                    "is micro-batch × grad-accum); give one of them\n", s.micro_batch, f.grad_accum, s.batch_size);
            goto usage_fail;
        }
        s.micro_batch = s.batch_size / f.grad_accum;
    }
    if (!isnan(f.lr)) s.lr = f.lr;
    if (f.warmup >= 0) s.warmup_steps = f.warmup;
    if (f.schedule) {
        int k = schedule_parse(f.schedule);
        if (k < 0) { fprintf(stderr, "quarry train: error: --schedule must be cosine, linear or constant\n"); goto usage_fail; }
        s.schedule = k;
    }
    if (!isnan(f.weight_decay)) s.weight_decay = f.weight_decay;
    if (!isnan(f.max_grad_norm)) s.max_grad_norm = f.max_grad_norm;
    if (!isnan(f.router_aux)) s.router_aux_loss_coef = f.router_aux;
    if (!isnan(f.validation_split)) s.validation_split = f.validation_split;
    if (f.method) {
        if (!strcmp(f.method, "full")) s.full = 1;
        else if (!strcmp(f.method, "lora")) s.full = 0;
        else { fprintf(stderr, "quarry train: error: --method must be lora or full\n"); goto usage_fail; }
    }
    if (full_flag) s.full = 1;
    if (f.lora_r >= 0) s.lora_r = f.lora_r;
    if (!isnan(f.lora_alpha)) s.lora_alpha = f.lora_alpha;
    if (!isnan(f.lora_dropout)) s.lora_dropout = f.lora_dropout;
    if (rslora) s.rslora = 1;
    if (f.max_seq_len >= 0) s.max_seq_len = f.max_seq_len;
    if (f.on_long) {
        if (!strcmp(f.on_long, "error")) s.on_long_error = 1;
        else if (!strcmp(f.on_long, "truncate")) s.on_long_error = 0;
        else { fprintf(stderr, "quarry train: error: --on-long must be truncate or error\n"); goto usage_fail; }
    }
    if (f.truncate) {
        int side = truncate_side_parse(f.truncate);
        if (side < 0) { fprintf(stderr, "quarry train: error: --truncate must be right or left (got '%s')\n", f.truncate); goto usage_fail; }
        s.truncate_left = side == TRUNCATE_LEFT;
        s.truncate_explicit = 1;
    }
    if (f.seed >= 0) s.seed = (unsigned long long)f.seed;
    if (s.validation_path && s.validation_split > 0) {
        fprintf(stderr, "quarry train: error: give --validation FILE or --validation-split, not both\n");
        goto usage_fail;
    }
    if (settings_check(&s, err, sizeof err)) { fprintf(stderr, "quarry train: error: %s\n", err); goto usage_fail; }
    if (rs) {
        if (train_resume_check_settings(rs, &s, err, sizeof err)) {
            fprintf(stderr, "quarry train: error: %s\n", err);
            goto usage_fail;
        }
    }
    settings_resolve_experts_dtype(&s, mxfp4_checkpoint(s.model_dir), rs != NULL);

    if (dp.zero < 0 || dp.zero > 2) { fprintf(stderr, "quarry train: error: --zero must be 0, 1 or 2\n"); goto usage_fail; }
    if (!(dp.timeout_s > 0)) { fprintf(stderr, "quarry train: error: --dist-timeout must be a positive number of seconds\n"); goto usage_fail; }
    if (dp.gpus < 0 || dp.ranks < 0 || (dp.gpus && dp.ranks)) {
        fprintf(stderr, "quarry train: error: give --gpus N (processes) or --ranks N (threads, --device cpu), not both\n");
        goto usage_fail;
    }
    dist_env env;
    if (dist_env_detect(&env, err, sizeof err)) { fprintf(stderr, "quarry train: error: %s\n", err); goto usage_fail; }
    int worker = strcmp(env.source, "single") != 0;
    if (dp.gpus > 0 && !worker) {
        // The launcher: this process only starts, watches and stops the workers.
        const char *dev = s.device ? s.device : "auto";
        if (strcmp(dev, "cpu") && strcmp(dev, "auto") && strcmp(dev, "cuda")) {
            fprintf(stderr, "quarry train: error: --gpus N uses GPUs 0..N-1 (cuda:LOCAL_RANK); drop --device %s or use "
                    "CUDA_VISIBLE_DEVICES\n", dev);
            goto usage_fail;
        }
        if (strcmp(dev, "cpu")) {
            cuda_report cr;
            cuda_query(&cr);
            if (cr.device_count < dp.gpus) {
                char fix[96];
                if (cr.device_count > 0) snprintf(fix, sizeof fix, "use --gpus %d or fewer", cr.device_count);
                else snprintf(fix, sizeof fix, "without GPUs, --device cpu --ranks N tries data parallel on threads");
                fprintf(stderr, "quarry train: error: --gpus %d, but %d GPU%s visible%s%s%s; %s\n", dp.gpus, cr.device_count,
                        cr.device_count == 1 ? " is" : "s are", cr.message[0] ? " (" : "", cr.message, cr.message[0] ? ")" : "", fix);
                goto usage_fail;
            }
        }
        // The launcher holds the run's lock for its workers; they know it by its PID.
        lock_fd = run_lock_acquire(s.out_dir, err, sizeof err);
        if (lock_fd < 0) { fprintf(stderr, "quarry train: error: %s\n", err); goto done_early; }
        char holder[32];
        snprintf(holder, sizeof holder, "%ld", (long)getpid());
        if (setenv("QUARRY_RUN_LOCK_HOLDER", holder, 1)) goto done_early;
        char **wargv = calloc((size_t)argc + 3, sizeof *wargv);   // NULL-terminated
        if (!wargv) goto done_early;
        wargv[0] = "quarry";
        wargv[1] = "train";
        for (int i = 0; i < argc; i++) wargv[i + 2] = argv[i];
        int wrc = launch_workers(dp.gpus, wargv, 30.0);
        free(wargv);
        status = wrc;
        goto done_early;
    }
    if (dp.ranks > 0 && worker) {
        fprintf(stderr, "quarry train: error: --ranks runs threads in one process, but this process is rank %d of %d (%s "
                "environment); drop --ranks\n", env.rank, env.world, env.source);
        goto usage_fail;
    }
    int world = worker ? env.world : dp.ranks > 0 ? dp.ranks : 1;
    int rank = worker ? env.rank : 0;
    if (dp.ranks > 0 && s.device && strcmp(s.device, "cpu")) {
        fprintf(stderr, "quarry train: error: --ranks runs CPU threads; with GPUs use --gpus N\n");
        goto usage_fail;
    }
    if (dp.ranks > 0) s.device = "cpu";
    if (dp.zero && world == 1 && !worker && dp.ranks == 0) {
        fprintf(stderr, "quarry train: note: --zero %d has no effect on one rank\n", dp.zero);
    }

    // Checks that cost nothing, before the data is tokenized or the inputs hashed: the
    // architecture, --max-seq-len against the model's context, the LoRA targets and (one
    // process) the device.
    lora_config lc = lora_config_default();
    backend *be_single = NULL;
    if (train_check_model(&s, rs ? 2 : f.max_seq_len >= 0, err, sizeof err)) goto early_fail_msg;
    if (!s.full) {
        lc.rank = s.lora_r;
        lc.alpha = (float)s.lora_alpha;
        lc.dropout = (float)s.lora_dropout;
        lc.rslora = s.rslora;
        lc.seed = s.seed;
        if (lora_targets_parse(s.lora_targets, &lc.targets, err, sizeof err)) goto early_fail_msg;
    }
    if (!worker && dp.ranks == 0) {
        be_single = backend_open(s.device, err, sizeof err);
        if (!be_single) goto early_fail_msg;
        // --attention cudnn where cuDNN cannot run fails here, before the run directory is made.
        if (!backend_set_attention(be_single, attention_arg, err, sizeof err)) goto early_fail_msg;
    }

    // The scan reads the data: after the checks above, before anything is written.
    const char *scanned[] = {s.data_path, s.validation_path};
    if (rank == 0 && (status = scan_data_check("train", scan_arg, scanned, 2))) goto early_fail;
    status = 1;

    // One process per run directory (its lock, taken before anything is written), which is
    // never overwritten: it must be new or empty, unless resumed. Rank 0 alone locks, checks and
    // creates it; under --gpus N the launcher holds the lock.
    if (rank == 0) {
        const char *holder = getenv("QUARRY_RUN_LOCK_HOLDER");
        if (!holder || atol(holder) != (long)getppid()) {
            lock_fd = run_lock_acquire(s.out_dir, err, sizeof err);
            if (lock_fd < 0) goto early_fail_msg;
        }
        if (rs) {
            char ckpt[4300];
            if (!rs->ckpt[0] && !checkpoint_find_latest(rs->run_dir, ckpt, sizeof ckpt)) {
                fprintf(stderr, "quarry train: error: %s has no complete checkpoint to resume from\n", rs->run_dir);
                goto early_fail;
            }
            if (train_resume_check_inputs(rs, &s, err, sizeof err)) goto early_fail_msg;
        } else if (!run_lock_dir_is_fresh(s.out_dir)) {
            fprintf(stderr, "quarry train: error: %s exists and is not empty; choose a new --out, or --resume %s to continue it\n",
                    s.out_dir, s.out_dir);
            goto early_fail;
        }
    }

    tokenizer *tok = NULL;
    chat_template *tmpl = NULL;
    example_set train = {0}, val = {0};
    int have_val = 0;
    double t_start = now_seconds();

    tok = tokenizer_load(s.model_dir, err, sizeof err);
    if (!tok) goto fail;
    tmpl = chat_template_load(s.model_dir, s.template_name, err, sizeof err);
    if (!tmpl) goto fail;
    int quiet_rank = s.quiet || rank != 0;
    if (tmpl->note && !quiet_rank) fprintf(stderr, "quarry train: note: %s\n", tmpl->note);
    // gpt-oss's system message carries strftime_now's date: pinned to the run's first day, so
    // run.json records it and a resume, eval or leakcheck renders the same tokens.
    static char run_date[16];
    if (!s.template_date && tmpl->family == CHAT_HARMONY) {
        time_t now = time(NULL);
        struct tm tm;
        if (localtime_r(&now, &tm) && strftime(run_date, sizeof run_date, "%Y-%m-%d", &tm)) s.template_date = run_date;
    }
    examples_source src = {.path = s.data_path, .tok = tok, .tmpl = tmpl, .chat = {s.template_date, 0, s.train_on_prompt},
                           .quiet = quiet_rank, .model_dir = s.model_dir, .allow_extra_keys = s.allow_extra_keys,
                           .threads = data_threads};
    truncation trunc = {s.max_seq_len, s.truncate_left ? TRUNCATE_LEFT : TRUNCATE_RIGHT, s.truncate_explicit,
                        s.on_long_error ? ON_LONG_ERROR : ON_LONG_TRUNCATE};
    token_store *store = example_store_open(&src, err, sizeof err);
    int bad = !store || example_set_open(&train, store, NULL, 0, &trunc, s.data_path, err, sizeof err);
    token_store_release(store);   // the set holds its own reference
    if (bad) goto fail;
    if (rank == 0) example_report_print(&train.report, s.data_path, "quarry train", 5, stderr);
    if (s.validation_path) {
        src.path = s.validation_path;
        store = example_store_open(&src, err, sizeof err);
        bad = !store || example_set_open(&val, store, NULL, 0, &trunc, s.validation_path, err, sizeof err);
        token_store_release(store);
        if (bad) goto fail;
        have_val = 1;
        if (rank == 0) example_report_print(&val.report, s.validation_path, "quarry train", 5, stderr);
    } else if (s.validation_split > 0) {
        if (example_set_split(&train, &val, s.validation_split, s.seed, err, sizeof err)) goto fail;
        have_val = 1;
    }
    if (rank == 0) {
        fprintf(stderr, "quarry train: %d training examples (%ld tokens, %ld trained)%s", train.n, train.total_tokens,
                train.trained_tokens, have_val ? "" : "\n");
        if (have_val) fprintf(stderr, ", %d validation examples\n", val.n);
    }

    run_ctx c = {&s, lc, &train, have_val ? &val : NULL, tmpl->name, rs, dp.zero, world, "single", t_start, NULL, 0,
                 attention_arg, offload_arg};
    train_install_signal_handlers();
    if (dp.ranks > 0) {
        c.dist_kind = "threads";
        c.group = dist_group_create(world, dp.timeout_s);
        int omp = omp_get_max_threads() / world;
        c.omp_threads = omp > 0 ? omp : 1;
        rank_thread *th = calloc((size_t)world, sizeof *th);
        pthread_t *tid = calloc((size_t)world, sizeof *tid);
        if (!c.group || !th || !tid) {
            free(th);
            free(tid);
            dist_group_free(c.group);
            snprintf(err, sizeof err, "out of memory for %d ranks", world);
            goto fail;
        }
        int started = 0;
        for (int r = 0; r < world; r++) {
            th[r] = (rank_thread){&c, r, 1};
            if (pthread_create(&tid[r], NULL, rank_thread_main, &th[r])) {
                fprintf(stderr, "quarry train: error: cannot start the thread of rank %d\n", r);
                break;
            }
            started++;
        }
        if (started < world) {
            // The started ranks wait for the missing ones until --dist-timeout; stop them now.
            dist *d0 = dist_group_join(c.group, world - 1, NULL);
            if (d0) { dist_abort(d0, "its thread could not start"); dist_close(d0); }
        }
        status = started < world ? 1 : 0;
        for (int r = 0; r < started; r++) {
            pthread_join(tid[r], NULL);
            if (th[r].status && (status == 0 || status == 130)) status = th[r].status;
        }
        free(th);
        free(tid);
        dist_group_free(c.group);
    } else {
        backend *be = NULL;
        dist *d = NULL;
        if (worker) {
            // One process per rank: GPU LOCAL_RANK over NCCL, or the CPU over TCP.
            char dev[32];
            int cpu = s.device && !strcmp(s.device, "cpu");
            if (!cpu) {
                // LOCAL_RANK picks the GPU; when the launcher already narrowed CUDA_VISIBLE_DEVICES
                // (e.g. Slurm's --gpus-per-task=1) fewer devices are visible than local ranks.
                cuda_report cr;
                cuda_query(&cr);
                int count = cr.device_count > 0 ? cr.device_count : 1;
                snprintf(dev, sizeof dev, "cuda:%d", env.local_rank % count);
            }
            be = backend_open(cpu ? "cpu" : dev, err, sizeof err);
            if (!be) goto fail;
            c.dist_kind = cpu ? "tcp" : "nccl";
            d = cpu ? dist_open_tcp(&env, be, dp.timeout_s, err, sizeof err)
                    : dist_open_nccl(&env, be, dp.timeout_s, err, sizeof err);
            if (!d) { be->destroy(be); goto fail; }
        } else {
            be = be_single;
            be_single = NULL;
        }
        status = train_rank(&c, rank, be, d);
        dist_close(d);
        be->destroy(be);
    }
    goto cleanup;
fail:
    cli_error("train", "%s", err);
    status = 1;
cleanup:
    example_set_free(&train);
    if (have_val) example_set_free(&val);
    chat_template_free(tmpl);
    tokenizer_free(tok);
    if (be_single) be_single->destroy(be_single);
    run_lock_release(lock_fd);
    if (rs) train_resume_close(rs);
    return status;
early_fail_msg:
    cli_error("train", "%s", err);
early_fail:
    if (be_single) be_single->destroy(be_single);
    run_lock_release(lock_fd);
    if (rs) train_resume_close(rs);
    return status;
usage_fail:
    status = 2;
done_early:
    run_lock_release(lock_fd);
    if (rs) train_resume_close(rs);
    return status;
}

// --micro-batch auto: the largest micro-batch whose memory plan fits this rank's device
// (model/plan_fit.h), the smallest over the ranks (they split batches alike: the dropout streams
// follow the split). Sets mo->batch_size, s->micro_batch and s->grad_accum. Every rank takes
// part in the agreement even when nothing fits it, so none waits for a missing one.
static int pick_micro_batch(model *m, backend *be, dist *d, int rank, int world, model_options *mo, train_settings *s,
                            int say, char *err, size_t errlen) {
    size_t free_b = 0, total_b = 0;
    be->memory_info(be, &free_b, &total_b);
    int gpu = be->device_index >= 0, sharing = gpu ? 1 : world;   // CPU ranks share the host
    int per_rank = mo->batch_size;
    plan_fit f;
    int rc = plan_fit_micro_batch(m, mo, per_rank, plan_fit_budget(free_b, total_b, gpu, sharing), &f, err, errlen);
    int least = rc ? 0 : f.micro_batch, who = rank;
    if (d) {
        double *v = calloc((size_t)world, sizeof *v);
        if (!v) { snprintf(err, errlen, "out of memory"); return -1; }
        v[rank] = least;
        if (dist_all_reduce_host(d, v, world)) {
            snprintf(err, errlen, "agreeing on the micro-batch: %s", dist_error(d));
            free(v);
            return -1;
        }
        for (int r = 0; r < world; r++)
            if ((int)v[r] < least) { least = (int)v[r]; who = r; }
        free(v);
    }
    if (rc) return -1;
    if (least < 1) {
        snprintf(err, errlen, "--micro-batch auto: rank %d cannot fit even micro-batch 1 (its message says what to change)", who);
        return -1;
    }
    mo->batch_size = least;
    s->micro_batch = least;
    s->grad_accum = (per_rank + least - 1) / least;
    if (say) {
        char line[320], from[160];
        plan_fit_describe(&f, line, sizeof line);
        if (gpu) snprintf(from, sizeof from, "%.2f GiB free on %s, less 5%% + 256 MiB", free_b / 1073741824.0, be->name);
        else snprintf(from, sizeof from, "the host's %.2f GiB in all%s", total_b / 1073741824.0, sharing > 1 ? ", shared by the ranks" : "");
        fprintf(stderr, "quarry train: --micro-batch auto: %s (%s)\n", line, from);
        if (least < f.micro_batch) fprintf(stderr, "quarry train: --micro-batch auto: rank %d fits only %d: every rank uses %d\n", who, least, least);
    }
    return 0;
}

// settings_to_json with the input paths made absolute, so that `--resume RUN` alone finds them
// from any working directory.
static cJSON *settings_record(const train_settings *s) {
    cJSON *o = settings_to_json(s);
    const char *keys[] = {"model", "data", "validation"};
    const char *paths[] = {s->model_dir, s->data_path, s->validation_path};
    for (int i = 0; i < 3; i++) {
        char abs[4096];
        if (paths[i] && realpath(paths[i], abs)) cJSON_ReplaceItemInObjectCaseSensitive(o, keys[i], cJSON_CreateString(abs));
    }
    return o;
}

// One rank: its model replica, training, and (rank 0) run.json and final/. Returns the exit code.
static int train_rank(const run_ctx *c, int rank, backend *be, dist *d) {
    train_settings local = *c->s;   // this rank's own: --micro-batch auto settles micro_batch here
    const train_settings *sp = &local;
    char err[1024];
    char who[32] = "";
    if (c->world > 1) snprintf(who, sizeof who, "rank %d: ", rank);
    int lead = rank == 0, status = 1, in_training = 0;
    double peak = 0;
    char device_name[256] = "cpu";
    if (be->device_index >= 0) {
        cuda_report r;
        cuda_query(&r);
        snprintf(device_name, sizeof device_name, "%s", r.devices[be->device_index].name);
        peak = gpu_peak_flops(device_name);
    }
    cJSON *run = NULL;
    model *m = model_open(sp->model_dir, be, err, sizeof err);
    if (!m) goto fail;
    if (!backend_set_attention(be, c->attention, err, sizeof err)) goto fail;
    if (lead && !sp->quiet) fprintf(stderr, "  attention: %s\n", be->attention_impl);
    if (!sp->full && model_enable_lora(m, &c->lc, err, sizeof err)) goto fail;
    if (sp->router_aux_loss_coef >= 0 && model_set_aux_coef(m, sp->router_aux_loss_coef, err, sizeof err)) goto fail;
    model_options mo = {.batch_size = train_rank_micro_batch(sp, c->world), .seq_len = sp->max_seq_len,
                        .train = sp->full ? MODEL_TRAIN_FULL : MODEL_TRAIN_LORA,
                        .checkpoint = (model_recompute)sp->recompute, .quant = (model_quant)settings_quant(sp),
                        .experts_mxfp4 = settings_experts_mxfp4(sp)};
    // --micro-batch auto plans what this rank allocates: its ZeRO shard.
    model_options whole_mo = mo;
    zero_model_options(&mo, d, c->zero);
    // Long context: MLP chunks, then (--offload-activations auto) offload, when the plan does not
    // fit otherwise; judged at micro-batch 1 when --micro-batch auto searches the rest.
    plan_offload off_mode = PLAN_OFFLOAD_AUTO;
    plan_offload_parse(c->offload, &off_mode);
    char off_why[320] = "";
    {
        size_t free_b = 0, total_b = 0;
        be->memory_info(be, &free_b, &total_b);
        int gpu = be->device_index >= 0;
        model_options probe = mo;
        if (sp->micro_batch_auto) probe.batch_size = 1;
        if (plan_fit_memory(m, &probe, off_mode, plan_fit_budget(free_b, total_b, gpu, gpu ? 1 : c->world), off_why,
                            sizeof off_why, err, sizeof err))
            goto fail;
        mo.offload = whole_mo.offload = probe.offload;
        mo.mlp_chunk = whole_mo.mlp_chunk = probe.mlp_chunk;
        if (lead && !sp->quiet && (off_why[0] || probe.offload))
            fprintf(stderr, "quarry train: memory (--offload-activations %s): %s\n", plan_offload_name(off_mode),
                    off_why[0] ? off_why : "activations offloaded to pinned host memory");
    }
    if (sp->micro_batch_auto &&
        pick_micro_batch(m, be, d, rank, c->world, &mo, &local, lead && !sp->quiet, err, sizeof err))
        goto fail;
    whole_mo.batch_size = mo.batch_size;
    // The plan without sharding, for comparison, then this rank's.
    model_memory whole, plan;
    if (model_plan(m, &whole_mo, &whole, err, sizeof err)) goto fail;
    if (model_plan(m, &mo, &plan, err, sizeof err)) goto fail;
    if (!sp->quiet && lead) {
        model_memory_print(&plan, stderr);
        if (d)
            fprintf(stderr, "  data parallel: %d rank%s (%s), ZeRO-%d: each rank holds %.2f of %.2f MiB of masters, "
                    "gradients and AdamW state\n", c->world, c->world > 1 ? "s" : "", c->dist_kind, c->zero,
                    (plan.masters + plan.grads + plan.moments) / 1048576.0,
                    (whole.masters + whole.grads + whole.moments) / 1048576.0);
    }
    if (model_allocate(m, err, sizeof err)) goto fail;

    // run.json first, so even an interrupted run says what it was.
    char path[4400], resume_ckpt[4300] = "";
    char abs_model[4096];
    if (!realpath(sp->model_dir, abs_model)) snprintf(abs_model, sizeof abs_model, "%s", sp->model_dir);
    if (lead && c->resume) {
        // The checkpoint is verified before anything in the run is written.
        train_state st;
        if (checkpoint_pick(c->resume->run_dir, c->resume->ckpt[0] ? c->resume->ckpt : NULL, m, &st, resume_ckpt,
                            sizeof resume_ckpt, err, sizeof err))
            goto fail;
        if (sp->max_steps > 0 && sp->max_steps <= st.step) {
            snprintf(err, sizeof err, "--max-steps %d: the run is already at step %d (%s); give a larger --max-steps, or "
                     "none", sp->max_steps, st.step, resume_ckpt);
            goto fail;
        }
        run = train_resume_record(c->resume, settings_record(sp), st.step, be->name, c->world);
        snprintf(path, sizeof path, "%s/run.json", sp->out_dir);
        if (!run || write_json(path, run, err, sizeof err)) goto fail;
    } else if (lead) {
        run = cJSON_CreateObject();
        cJSON_AddStringToObject(run, "quarry_version", QUARRY_VERSION);
        cJSON_AddStringToObject(run, "quarry_commit", QUARRY_GIT_COMMIT);
        cJSON_AddStringToObject(run, "device", be->name);
        cJSON_AddStringToObject(run, "device_name", device_name);
        cJSON_AddStringToObject(run, "attention", be->attention_impl);
        cJSON_AddStringToObject(run, "base_model", abs_model);
        cJSON_AddItemToObject(run, "settings", settings_record(sp));
        cJSON *inputs = run_record_inputs(sp->model_dir, sp->data_path, sp->validation_path, err, sizeof err);
        if (!inputs) goto fail;
        cJSON_AddItemToObject(run, "inputs", inputs);
        cJSON_AddStringToObject(run, "template", c->template_name);
        cJSON *mem = cJSON_AddObjectToObject(run, "memory_plan_bytes");
        cJSON_AddNumberToObject(mem, "weights", (double)plan.weights);
        cJSON_AddNumberToObject(mem, "masters", (double)plan.masters);
        cJSON_AddNumberToObject(mem, "grads", (double)plan.grads);
        cJSON_AddNumberToObject(mem, "optimizer", (double)plan.moments);
        cJSON_AddNumberToObject(mem, "activations", (double)plan.activations);
        if (plan.quant != MODEL_QUANT_NONE) {   // parts of weights and activations (QLoRA)
            cJSON_AddNumberToObject(mem, "nf4", (double)plan.nf4);
            cJSON_AddNumberToObject(mem, "nf4_workspace", (double)plan.nf4_workspace);
        }
        if (plan.experts_mxfp4) {   // parts of weights and activations (MXFP4 experts)
            cJSON_AddNumberToObject(mem, "mxfp4", (double)plan.mxfp4);
            cJSON_AddNumberToObject(mem, "mxfp4_workspace", (double)plan.mxfp4_workspace);
        }
        cJSON_AddNumberToObject(mem, "total", (double)plan.total);
        if (plan.offload) cJSON_AddNumberToObject(mem, "host_pinned", (double)plan.host_pinned);
        cJSON *lc = cJSON_AddObjectToObject(run, "long_context");
        cJSON_AddStringToObject(lc, "offload_activations", plan_offload_name(off_mode));
        cJSON_AddBoolToObject(lc, "offload", plan.offload);
        cJSON_AddNumberToObject(lc, "mlp_chunk", plan.mlp_chunk);
        cJSON_AddStringToObject(lc, "why", off_why);
        cJSON *dpj = cJSON_AddObjectToObject(run, "data_parallel");
        cJSON_AddNumberToObject(dpj, "world_size", c->world);
        cJSON_AddStringToObject(dpj, "communicator", c->dist_kind);
        cJSON_AddNumberToObject(dpj, "zero", d ? c->zero : 0);
        cJSON_AddNumberToObject(dpj, "micro_batch_per_rank", mo.batch_size);
        // memory_plan_bytes is this rank's; what one rank would hold without sharding:
        cJSON *pr = cJSON_AddObjectToObject(dpj, "unsharded_bytes");
        cJSON_AddNumberToObject(pr, "masters", (double)whole.masters);
        cJSON_AddNumberToObject(pr, "grads", (double)whole.grads);
        cJSON_AddNumberToObject(pr, "optimizer", (double)whole.moments);
        cJSON_AddNumberToObject(pr, "total", (double)whole.total);
        cJSON_AddNumberToObject(run, "params_total", (double)plan.params_total);
        cJSON_AddNumberToObject(run, "params_trained", (double)plan.params_trained);
        cJSON_AddNumberToObject(run, "train_examples", c->train->n);
        cJSON_AddNumberToObject(run, "validation_examples", c->val ? c->val->n : 0);
        cJSON_AddNumberToObject(run, "truncated_examples", c->train->truncated);
        // What happened to every record at --max-seq-len (dropped ones by line, at most 100 listed).
        cJSON *recs = cJSON_AddObjectToObject(run, "records");
        cJSON_AddItemToObject(recs, "data", example_report_to_json(&c->train->report, 100));
        if (c->val && c->val->report.records)
            cJSON_AddItemToObject(recs, "validation", example_report_to_json(&c->val->report, 100));
        snprintf(path, sizeof path, "%s/run.json", sp->out_dir);
        if (write_json(path, run, err, sizeof err)) goto fail;
    }

    train_result res;
    in_training = 1;   // from here the trainer tells the other ranks itself
    int trc = train_run_dist(sp, be, m, c->train, c->val, sp->out_dir, resume_ckpt[0] ? resume_ckpt : NULL, peak, d, c->zero,
                             &res, err, sizeof err);
    if (!lead) {
        if (trc) goto fail;
        status = res.interrupted ? 130 : 0;
        goto cleanup;
    }
    double wall = now_seconds() - c->t_start;
    cJSON *out = cJSON_AddObjectToObject(run, "result");
    int gpus = be->device_index >= 0 ? c->world : 0;
    cJSON_AddNumberToObject(out, "steps", res.steps_done);
    cJSON_AddNumberToObject(out, "tokens_trained", (double)res.tokens_seen);
    cJSON_AddNumberToObject(out, "train_seconds", res.train_seconds);
    cJSON_AddNumberToObject(out, "wall_seconds", wall);
    cJSON_AddNumberToObject(out, "tokens_per_second", res.tokens_per_second);
    cJSON_AddNumberToObject(out, "mfu", res.mfu);
    cJSON_AddNumberToObject(out, "gpus", gpus);
    cJSON_AddNumberToObject(out, "gpu_hours", gpus * res.train_seconds / 3600.0);
    // Measured over this session: a resumed run's earlier sessions are not in it, so it would
    // undercount the run (`quarry cost` then uses --gpu-watts × GPU-hours).
    if (res.energy_joules >= 0 && !c->resume) {
        cJSON_AddNumberToObject(out, "energy_joules", res.energy_joules);
        cJSON_AddStringToObject(out, "energy_source", "nvml");
    } else if (res.energy_joules >= 0) {
        fprintf(stderr, "quarry train: note: this session used %.0f J on the GPUs; run.json records no energy for a "
                "resumed run (earlier sessions were not metered together): `quarry cost` will use --gpu-watts\n",
                res.energy_joules);
    }
    if (isfinite(res.last_train_loss)) cJSON_AddNumberToObject(out, "final_training_loss", res.last_train_loss);
    if (isfinite(res.first_val_loss)) cJSON_AddNumberToObject(out, "initial_validation_loss", res.first_val_loss);
    if (isfinite(res.last_val_loss)) cJSON_AddNumberToObject(out, "final_validation_loss", res.last_val_loss);
    cJSON_AddBoolToObject(out, "stopped_early", res.stopped_early);
    cJSON_AddBoolToObject(out, "interrupted", res.interrupted);
    if (trc == 0 && !res.interrupted) {
        char final_dir[4300];
        snprintf(final_dir, sizeof final_dir, "%s/final", sp->out_dir);
        if (fileio_mkdir_p(final_dir, err, sizeof err)) goto fail;
        if (!sp->full) {   // the trainer wrote the tensors
            cJSON *ac = peft_adapter_config(m, abs_model);
            snprintf(path, sizeof path, "%s/adapter_config.json", final_dir);
            int wrc = write_json(path, ac, err, sizeof err);
            cJSON_Delete(ac);
            if (wrc) goto fail;
        }
    }
    snprintf(path, sizeof path, "%s/run.json", sp->out_dir);
    if (write_json(path, run, err, sizeof err)) fprintf(stderr, "quarry train: warning: %s\n", err);
    if (trc) goto fail;
    if (res.interrupted) {
        fprintf(stderr, "quarry train: interrupted at step %d; checkpoint written. Continue with --resume %s\n",
                res.steps_done, sp->out_dir);
        status = 130;
    } else {
        fprintf(stderr, "quarry train: done: %d steps, %lld tokens in %.1f s (%.0f tok/s)", res.steps_done,
                res.tokens_seen, res.train_seconds, res.tokens_per_second);
        if (isfinite(res.first_val_loss) && isfinite(res.last_val_loss))
            fprintf(stderr, ", validation loss %.4f → %.4f", res.first_val_loss, res.last_val_loss);
        else if (isfinite(res.last_val_loss)) fprintf(stderr, ", validation loss %.4f", res.last_val_loss);
        fprintf(stderr, "\nquarry train: wrote %s/final\n", sp->out_dir);
        status = 0;
    }
    goto cleanup;
fail:
    // Errors from the communicator already name their rank.
    cli_error("train", "%s%s", strncmp(err, "rank ", 5) == 0 ? "" : who, err);
    if (!in_training) dist_abort(d, err);
    status = 1;
cleanup:
    cJSON_Delete(run);
    model_free(m);
    return status;
}
