// trainer/settings.h — every setting of a training run, resolved from defaults, Bedrock's
// hyperparameters file (`--hyperparameters hp.json`, string values as a Bedrock job takes them:
// epochCount, batchSize, learningRate, learningRateWarmupSteps) and flags, in that order; or,
// for a resumed run, read back from its run.json, with only the changes a resume may make.
#pragma once
#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct {
    // inputs and outputs
    const char *model_dir, *data_path, *validation_path, *out_dir, *resume_dir;
    const char *template_name, *template_date, *device;
    // method
    int full;                  // 0 = LoRA, 1 = all weights
    int lora_r;
    double lora_alpha, lora_dropout;
    const char *lora_targets;  // "all-linear" or q,k,v,o,gate,up,down (model/lora.h parses it)
    int rslora;
    const char *quantize;      // NULL, or "nf4": the frozen base's linears in 4-bit (QLoRA)
    int no_double_quant;       // --no-double-quant: NF4 with plain f32 absmax
    // gpt-oss's experts on the device: "mxfp4" (kept as the checkpoint packs them, frozen) or
    // "bf16" (dequantised at load to the act dtype); NULL until settings_resolve_experts_dtype.
    const char *experts_dtype;
    // optimisation
    int epochs, batch_size, micro_batch, grad_accum;   // batch_size = sequences per optimizer step
    double lr, min_lr_ratio, weight_decay, beta1, beta2, eps, max_grad_norm;
    int warmup_steps, schedule, max_steps;
    double router_aux_loss_coef;   // MoE: the load-balancing loss's weight; < 0: the model config's
    // data
    int max_seq_len, on_long_error, train_on_prompt;
    int truncate_left;         // --truncate left: long records lose the prompt's start, not the answer
    int truncate_explicit;     // --truncate was given: records it leaves without an answer may be dropped
    int allow_extra_keys;      // --allow-extra-keys: unknown keys in the data are warnings
    double validation_split;
    unsigned long long seed;
    // run control
    int eval_every, save_every, keep_checkpoints, early_stopping_patience, quiet;
    // memory
    int recompute;             // a model_recompute (model/llama.h): selective by default
    int micro_batch_auto;      // --micro-batch auto: the planner picks micro_batch per rank (cli/cmd_train.c)
} train_settings;

void settings_defaults(train_settings *s);
// Applies a Bedrock hyperparameters JSON file. 0, or -1 with a message naming the key.
int settings_load_hyperparameters(train_settings *s, const char *path, char *err, size_t errlen);
// Checks ranges and derives grad_accum. 0, or -1 with a message naming the flag.
int settings_check(train_settings *s, char *err, size_t errlen);
// The model_quant (model/llama.h) the settings ask for.
int settings_quant(const train_settings *s);
// --experts-dtype left out: "mxfp4" when the checkpoint's experts are MXFP4 (checkpoint_mxfp4)
// and they stay frozen (LoRA, no --quantize), else "bf16"; a resumed run whose record predates
// the setting trained on experts dequantised at load: "bf16".
void settings_resolve_experts_dtype(train_settings *s, int checkpoint_mxfp4, int resumed);
// 1 when the experts are kept in MXFP4 (model_options.experts_mxfp4).
int settings_experts_mxfp4(const train_settings *s);
// Every resolved setting as a JSON object (for run.json).
cJSON *settings_to_json(const train_settings *s);
// The inverse: o (a "settings" object of run.json) over the defaults. Strings point into o,
// which must outlive s. 0, or -1 with a message naming the key.
int settings_from_json(const cJSON *o, train_settings *s, char *err, size_t errlen);

// Flags land in a train_settings whose every field starts "unset" (NULL, SETTINGS_UNSET_INT,
// NAN, or 0 for on/off flags), so that the caller knows which the user gave; overlay copies the
// given ones onto resolved settings (defaults, or a resumed run's record).
#define SETTINGS_UNSET_INT (-2147483647 - 1)
void settings_unset(train_settings *s);
void settings_overlay(train_settings *s, const train_settings *given);

// What a resume may change. Every setting that differs between the run's record and now is
// either safe (run control: --max-steps, --eval-every, --save-every, --keep-checkpoints,
// --device, --recompute; --micro-batch when no dropout stream depends on it; a data or model
// path whose recorded file is gone, its content being verified by hash) and listed in
// *changed as {"key": {"from": recorded, "to": now}}, or it changes the trajectory and is
// refused: -1 with a message naming every such difference, recorded value against given.
int settings_resume_changes(const train_settings *recorded, const train_settings *now, cJSON **changed, char *err,
                            size_t errlen);
