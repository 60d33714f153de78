// cli/cmd_eval.c — `quarry eval`: loss and perplexity of a checkpoint or a trained run over the
// trained tokens of a Bedrock file, through the path training takes (trainer/examples: the same
// rendering, masks and truncation; dataset packing without shuffle; forward only: cli/eval_loss.h),
// so that a run's validation file gives the validation loss `quarry train` logged.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "diag.h"
#include "eval_loss.h"
#include "model_ref.h"

int cmd_eval(int argc, char **argv) {
    const char *model_arg = NULL, *data = NULL, *device = "auto", *tmpl_name = NULL, *date = NULL, *side_arg = NULL;
    const char *attention = NULL;
    int json = 0, max_seq_len = 0, micro = 1, train_on_prompt = 0, allow_extra = 0, data_threads = 0;
    const arg_spec specs[] = {
        {"model", ARG_STRING, &model_arg, "DIR|RUN", "a Hugging Face checkpoint directory, or a run written by quarry train"},
        {"data", ARG_STRING, &data, "FILE", "Bedrock JSONL data (any of the four formats)"},
        {"json", ARG_FLAG, &json, NULL, "write a JSON document with per-record losses"},
        {"max-seq-len", ARG_INT, &max_seq_len, "T", "sequence length; longer records are truncated (default: the run's, else 2048)"},
        {"truncate", ARG_STRING, &side_arg, "right|left", "which end of a long record goes (default: the run's, else right; "
         "refused when right would drop records)"},
        {"allow-extra-keys", ARG_FLAG, &allow_extra, NULL, "unknown keys in the data are warnings (default: the run's)"},
        {"micro-batch", ARG_INT, &micro, "B", "packed rows per forward (default 1)"},
        {"data-threads", ARG_INT, &data_threads, "N", "threads tokenizing the data (default: $QUARRY_DATA_THREADS, else "
         "every core)"},
        {"template", ARG_STRING, &tmpl_name, "NAME", "chat template family (default: the run's, else detected)"},
        {"template-date", ARG_STRING, &date, "DATE", "pin the Llama 3.1+ date line (default: the run's)"},
        {"train-on-prompt", ARG_FLAG, &train_on_prompt, NULL, "score every token, not only the answers (default: the run's)"},
        {"device", ARG_STRING, &device, "cpu|cuda|cuda:N|auto", "the device (default auto)"},
        {"attention", ARG_STRING, &attention, "auto|cudnn|quarry", "attention on cuda: cuDNN when found (auto), cuDNN "
         "required, or quarry's kernel"},
    };
    const arg_parser p = {
        "eval",
        "quarry eval --model DIR|RUN --data FILE [--json] [--max-seq-len T] [--micro-batch B] [--device DEV]",
        "Loss (mean −log p per trained token) and perplexity over the trained tokens of a Bedrock file,\n"
        "rendered, masked and truncated as `quarry train` does; for a run, with the run's settings. On a\n"
        "run's validation file it gives the validation loss the run logged. --json adds each record's loss.",
        specs, (int)(sizeof specs / sizeof specs[0]), 0, 0};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;
    const char *usage_err = NULL;
    if (!model_arg) usage_err = "--model DIR|RUN is required";
    else if (!data) usage_err = "--data FILE is required";
    else if (max_seq_len < 0 || max_seq_len == 1) usage_err = "--max-seq-len must be ≥ 2";
    else if (micro < 1) usage_err = "--micro-batch must be ≥ 1";
    else if (data_threads < 0 || data_threads > 1024) usage_err = "--data-threads must be 1..1024";
    else if (side_arg && truncate_side_parse(side_arg) < 0) usage_err = "--truncate must be right or left";
    if (usage_err) {
        fprintf(stderr, "quarry eval: error: %s\nusage: %s\n", usage_err, p.usage);
        return 2;
    }

    char err[2048] = "";
    int status = 1;
    model_ref ref;
    backend *be = NULL;
    model *m = NULL;
    eval_data d = {0};
    eval_record_loss *per = NULL;
    if (model_ref_resolve(model_arg, &ref, err, sizeof err) != 0) goto fail;
    eval_data_options eo = {.data = data, .template_name = tmpl_name, .date = date, .max_seq_len = max_seq_len,
                            .train_on_prompt = train_on_prompt, .allow_extra = allow_extra, .side = side_arg,
                            .report_as = "quarry eval", .data_threads = data_threads};
    if (eval_data_load(&d, &ref, &eo, err, sizeof err) != 0) goto fail;
    max_seq_len = d.max_seq_len;
    const example_set *set = &d.set;
    per = calloc((size_t)set->n, sizeof *per);
    if (!per) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    be = backend_open(device, err, sizeof err);
    if (!be) goto fail;
    if (!backend_set_attention(be, attention, err, sizeof err)) goto fail;
    model_options mo = {.batch_size = micro, .seq_len = max_seq_len, .train = MODEL_TRAIN_NONE};
    m = model_ref_load(&ref, be, &mo, err, sizeof err);
    if (!m) goto fail;
    double sum = 0;
    long long tokens = 0;
    if (eval_loss(m, set, micro, per, &sum, &tokens, err, sizeof err) != 0) goto fail;
    double loss = tokens ? sum / (double)tokens : NAN;
    char desc[8400];
    model_ref_describe(&ref, desc, sizeof desc);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", desc);
        cJSON_AddStringToObject(o, "data", data);
        cJSON_AddStringToObject(o, "template", d.tmpl->name);
        cJSON_AddNumberToObject(o, "max_seq_len", max_seq_len);
        cJSON_AddNumberToObject(o, "records", set->n);
        cJSON_AddNumberToObject(o, "truncated_records", set->truncated);
        cJSON_AddItemToObject(o, "records_report", example_report_to_json(&set->report, 100));
        cJSON_AddNumberToObject(o, "trained_tokens", (double)tokens);
        cJSON_AddNumberToObject(o, "loss_sum", sum);
        if (tokens) {
            cJSON_AddNumberToObject(o, "loss", loss);
            cJSON_AddNumberToObject(o, "perplexity", exp(loss));
        } else {
            cJSON_AddNullToObject(o, "loss");
            cJSON_AddNullToObject(o, "perplexity");
        }
        cJSON *arr = cJSON_AddArrayToObject(o, "per_record");
        for (int i = 0; arr && i < set->n; i++) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddNumberToObject(r, "line", (double)example_set_line(set, i));
            cJSON_AddNumberToObject(r, "tokens", (double)per[i].tokens);
            cJSON_AddNumberToObject(r, "loss_sum", per[i].sum);
            if (per[i].tokens)
                cJSON_AddNumberToObject(r, "loss", per[i].sum / (double)per[i].tokens);
            else
                cJSON_AddNullToObject(r, "loss");
            cJSON_AddItemToArray(arr, r);
        }
        char *text = cJSON_Print(o);
        cJSON_Delete(o);
        if (!text || puts(text) < 0) {
            free(text);
            snprintf(err, sizeof err, "cannot write the JSON output");
            goto fail;
        }
        free(text);
    } else {
        printf("model       %s\n", desc);
        printf("data        %s: %d records, %lld trained tokens", data, set->n, tokens);
        if (set->truncated || set->report.dropped)
            printf(" (%d records truncated, %ld dropped at %d tokens, --truncate %s)", set->truncated, set->report.dropped,
                   max_seq_len, truncate_side_name(d.trunc.side));
        printf("\nloss        %.6f\nperplexity  %.4f\n", loss, exp(loss));
    }
    status = 0;
    goto done;
fail:
    cli_error("eval", "%s", err);
done:
    free(per);
    model_free(m);
    if (be) be->destroy(be);
    eval_data_free(&d);
    return status;
}
