// cli/cmd_render.c — `quarry render`: Bedrock records (one JSON per line) through the model's chat
// template: the rendered text as a JSON string per line, or with --mask {"ids": [...], "mask": [...]}.
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "commands.h"
#include "data/bedrock.h"
#include "data/chat.h"
#include "data/tokenizer.h"

typedef struct {
    const char *path;
    int errors;
} render_input;

// Bedrock's diagnostics as `quarry validate` prints them; an invalid record stops the run (the
// output must stay one line per record).
static void on_diag(void *user, long line, int col, bedrock_severity sev, const char *msg) {
    render_input *in = user;
    char where[64] = "";
    if (line > 0 && col > 0)
        snprintf(where, sizeof where, "%ld:%d:", line, col);
    else if (line > 0)
        snprintf(where, sizeof where, "%ld:", line);
    fprintf(stderr, "%s:%s %s: %s\n", in->path, where, sev == BEDROCK_ERROR ? "error" : "warning", msg);
    if (sev == BEDROCK_ERROR)
        in->errors++;
}

static int print_ids_mask(const int32_t *ids, const int8_t *mask, int n) {
    // {"ids": [...], "mask": [...]} by hand: a long record would make cJSON build a large tree.
    fputs("{\"ids\": [", stdout);
    for (int i = 0; i < n; i++)
        printf(i ? ", %d" : "%d", ids[i]);
    fputs("], \"mask\": [", stdout);
    for (int i = 0; i < n; i++)
        printf(i ? ", %d" : "%d", mask[i]);
    return puts("]}") < 0 ? -1 : 0;
}

int cmd_render(int argc, char **argv) {
    const char *model = NULL, *name = NULL, *date = NULL;
    int want_mask = 0, train_on_prompt = 0;
    const arg_spec specs[] = {
        {"model", ARG_STRING, &model, "DIR", "model directory (tokenizer_config.json, chat_template.jinja, tokenizer.json)"},
        {"template", ARG_STRING, &name, "NAME", "force the template family (listed above) instead of detecting it"},
        {"template-date", ARG_STRING, &date, "DATE", "Llama 3.1+ date line, e.g. \"26 Jul 2024\"; gpt-oss: \"2025-08-05\" (default: the template's, today for Llama 3.2 and gpt-oss)"},
        {"mask", ARG_FLAG, &want_mask, NULL, "write {\"ids\": [...], \"mask\": [...]} (1 = trained) instead of text"},
        {"train-on-prompt", ARG_FLAG, &train_on_prompt, NULL, "train on every token, not only the assistant's"},
    };
    char summary[1024];
    snprintf(summary, sizeof summary,
             "Reads Bedrock records (prompt/completion, messages, Converse or continued-pretraining input), one\n"
             "JSON object per line from FILE or stdin, and renders each with the model's chat template exactly as\n"
             "transformers would. Writes one JSON string per line, or with --mask the token ids and the loss mask.\n"
             "Template families: %s.",
             chat_family_names());
    const arg_parser p = {"render", "quarry render --model DIR [--template NAME] [--template-date D] [--mask] "
                                    "[--train-on-prompt] [FILE]",
                          summary, specs, (int)(sizeof specs / sizeof specs[0]), 0, 1};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!model) {
        fprintf(stderr, "quarry render: error: --model DIR is required\nusage: %s\n", p.usage);
        return 2;
    }
    char err[1024] = "";
    chat_template *t = chat_template_load(model, name, err, sizeof err);
    if (!t) {
        fprintf(stderr, "quarry render: error: %s\n", err);
        return 1;
    }
    if (t->note)
        fprintf(stderr, "quarry render: note: %s\n", t->note);
    tokenizer *tok = NULL;
    if (want_mask) {
        tok = tokenizer_load(model, err, sizeof err);
        if (!tok) {
            fprintf(stderr, "quarry render: error: %s\n", err);
            chat_template_free(t);
            return 1;
        }
    }
    const char *path = npos ? pos[0] : "-";
    render_input in = {strcmp(path, "-") == 0 ? "stdin" : path, 0};
    bedrock_options bo = {FORMAT_UNKNOWN, 1, NULL, 0, on_diag, &in};
    bedrock_stream *s = bedrock_open(path, &bo, err, sizeof err);
    if (!s) {
        fprintf(stderr, "quarry render: error: %s\n", err);
        tokenizer_free(tok);
        chat_template_free(t);
        return 1;
    }
    chat_options o = {date, 0, train_on_prompt};
    o.now = time(NULL);   // one clock for the whole run: every record gets the same Llama 3.2 date
    int status = 0, got;
    record r;
    while ((got = bedrock_next(s, &r)) == 1) {
        if (in.errors) {
            record_free(&r);
            break;
        }
        err[0] = 0;
        if (want_mask) {
            int32_t *ids;
            int8_t *mask;
            int n = chat_encode(t, tok, &r, &o, &ids, &mask, err, sizeof err);
            if (n >= 0) {
                if (print_ids_mask(ids, mask, n) != 0) {
                    snprintf(err, sizeof err, "cannot write the output");
                    status = 1;
                }
                free(ids);
                free(mask);
            } else {
                status = 1;
            }
        } else {
            chat_rendered c;
            if (chat_render(t, &r, &o, &c, err, sizeof err) == 0) {
                cJSON *js = cJSON_CreateString(c.text);
                char *text = js ? cJSON_PrintUnformatted(js) : NULL;
                if (!text || puts(text) < 0) {
                    snprintf(err, sizeof err, "cannot write the output");
                    status = 1;
                }
                free(text);
                cJSON_Delete(js);
                chat_rendered_free(&c);
            } else {
                status = 1;
            }
        }
        long line = r.line;
        record_free(&r);
        if (status) {
            fprintf(stderr, "%s:%ld: error: %s\nhint: fix the record, or pick another family with --template NAME\n",
                    in.path, line, err);
            break;
        }
    }
    if (got < 0) {
        fprintf(stderr, "%s: error: %s\n", in.path, bedrock_error(s));
        status = 1;
    }
    if (in.errors) {
        fprintf(stderr, "hint: run `quarry validate %s` for every problem in the file\n", npos ? path : "FILE");
        status = 1;
    }
    bedrock_close(s);
    if (fflush(stdout) != 0) {
        perror("stdout");
        status = 1;
    }
    tokenizer_free(tok);
    chat_template_free(t);
    return status;
}
