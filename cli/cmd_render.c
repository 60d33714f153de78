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
#include "data/chat.h"
#include "data/tokenizer.h"

// A minimal reader of the four Bedrock formats, until data/bedrock lands: enough structure to
// render; Bedrock's own limits and rules are `quarry validate`'s business.
static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

// A string, or a list of {"text": str} blocks joined (Converse form).
static char *text_of(const cJSON *v, size_t *len, const char *what, char *err, size_t errlen) {
    if (cJSON_IsString(v)) {
        *len = strlen(v->valuestring);
        return dup_n(v->valuestring, *len);
    }
    if (cJSON_IsArray(v)) {
        size_t total = 0;
        const cJSON *b;
        cJSON_ArrayForEach(b, v) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "text");
            if (!cJSON_IsString(t)) {
                snprintf(err, errlen, "%s: every content block needs a \"text\" string", what);
                return NULL;
            }
            total += strlen(t->valuestring);
        }
        char *out = malloc(total + 1);
        if (!out) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        size_t k = 0;
        cJSON_ArrayForEach(b, v) {
            const char *t = cJSON_GetObjectItemCaseSensitive(b, "text")->valuestring;
            size_t n = strlen(t);
            memcpy(out + k, t, n);
            k += n;
        }
        out[k] = 0;
        *len = k;
        return out;
    }
    snprintf(err, errlen, "%s must be a string or a list of {\"text\": ...} blocks", what);
    return NULL;
}

static void free_record_local(record *r) {
    free(r->system);
    for (int i = 0; i < r->nturns; i++)
        free(r->turns[i].text);
    free(r->turns);
    free(r->text);
    memset(r, 0, sizeof *r);
}

static int parse_record(const char *line, long lineno, record *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    r->line = lineno;
    cJSON *j = cJSON_Parse(line);
    if (!j || !cJSON_IsObject(j)) {
        snprintf(err, errlen, "not a JSON object");
        cJSON_Delete(j);
        return -1;
    }
    int rc = -1;
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    const cJSON *completion = cJSON_GetObjectItemCaseSensitive(j, "completion");
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(j, "messages");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(j, "input");
    const cJSON *system = cJSON_GetObjectItemCaseSensitive(j, "system");
    if (cJSON_IsString(prompt) && cJSON_IsString(completion)) {
        r->format = FORMAT_PROMPT_COMPLETION;
        r->turns = calloc(2, sizeof *r->turns);
        if (!r->turns)
            goto out;
        r->nturns = 2;
        r->turns[0] = (record_turn){ROLE_USER, dup_n(prompt->valuestring, strlen(prompt->valuestring)),
                                    strlen(prompt->valuestring)};
        r->turns[1] = (record_turn){ROLE_ASSISTANT, dup_n(completion->valuestring, strlen(completion->valuestring)),
                                    strlen(completion->valuestring)};
        if (!r->turns[0].text || !r->turns[1].text)
            goto out;
    } else if (cJSON_IsArray(messages)) {
        int n = cJSON_GetArraySize(messages);
        r->turns = calloc((size_t)(n > 0 ? n : 1), sizeof *r->turns);
        if (!r->turns)
            goto out;
        int converse = cJSON_IsArray(system) || cJSON_GetObjectItemCaseSensitive(j, "schemaVersion") != NULL;
        const cJSON *m;
        int i = 0;
        cJSON_ArrayForEach(m, messages) {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
            if (!cJSON_IsString(role) || (strcmp(role->valuestring, "user") && strcmp(role->valuestring, "assistant"))) {
                snprintf(err, errlen, "messages[%d].role must be \"user\" or \"assistant\"", i);
                goto out;
            }
            char what[64];
            snprintf(what, sizeof what, "messages[%d].content", i);
            record_turn *t = &r->turns[r->nturns];
            t->role = strcmp(role->valuestring, "assistant") == 0 ? ROLE_ASSISTANT : ROLE_USER;
            t->text = text_of(content, &t->len, what, err, errlen);
            if (!t->text)
                goto out;
            if (cJSON_IsArray(content))
                converse = 1;
            r->nturns++;
            i++;
        }
        r->format = converse ? FORMAT_CONVERSE : FORMAT_MESSAGES;
        if (system && !cJSON_IsNull(system)) {
            r->system = text_of(system, &r->system_len, "system", err, errlen);
            if (!r->system)
                goto out;
        }
        if (r->nturns == 0) {
            snprintf(err, errlen, "\"messages\" is empty");
            goto out;
        }
    } else if (cJSON_IsString(input)) {
        r->format = FORMAT_CPT;
        r->text_len = strlen(input->valuestring);
        r->text = dup_n(input->valuestring, r->text_len);
        if (!r->text)
            goto out;
    } else {
        snprintf(err, errlen,
                 "not a Bedrock record: expected {\"prompt\", \"completion\"}, {\"messages\": [...]} or {\"input\"}");
        goto out;
    }
    rc = 0;
out:
    if (rc != 0) {
        if (!err[0])
            snprintf(err, errlen, "out of memory");
        free_record_local(r);
    }
    cJSON_Delete(j);
    return rc;
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
        {"template-date", ARG_STRING, &date, "DATE", "Llama 3.1+ date line, e.g. \"26 Jul 2024\" (default: the template's)"},
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
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    const char *shown = in == stdin ? "stdin" : path;
    if (!in) {
        perror(path);
        tokenizer_free(tok);
        chat_template_free(t);
        return 1;
    }
    chat_options o = {date, 0, train_on_prompt};
    o.now = time(NULL);   // one clock for the whole run: every record gets the same Llama 3.2 date
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long lineno = 0;
    int status = 0;
    while ((got = getline(&line, &cap, in)) >= 0) {
        lineno++;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = 0;
        if (got == 0)
            continue;
        record r;
        err[0] = 0;
        if (parse_record(line, lineno, &r, err, sizeof err) != 0) {
            fprintf(stderr, "%s:%ld: error: %s\nhint: run `quarry validate` on the file for Bedrock's rules\n", shown,
                    lineno, err);
            status = 1;
            break;
        }
        if (want_mask) {
            int32_t *ids;
            int8_t *mask;
            int n = chat_encode(t, tok, &r, &o, &ids, &mask, err, sizeof err);
            if (n >= 0) {
                if (print_ids_mask(ids, mask, n) != 0)
                    status = 1;
                free(ids);
                free(mask);
            } else {
                status = 1;
            }
        } else {
            chat_rendered c;
            if (chat_render(t, &r, &o, &c, err, sizeof err) == 0) {
                cJSON *s = cJSON_CreateString(c.text);
                char *js = s ? cJSON_PrintUnformatted(s) : NULL;
                if (!js || puts(js) < 0) {
                    snprintf(err, sizeof err, "cannot write the output");
                    status = 1;
                }
                free(js);
                cJSON_Delete(s);
                chat_rendered_free(&c);
            } else {
                status = 1;
            }
        }
        free_record_local(&r);
        if (status) {
            fprintf(stderr, "%s:%ld: error: %s\nhint: fix the record, or pick another family with --template NAME\n",
                    shown, lineno, err);
            break;
        }
    }
    free(line);
    if (in != stdin)
        fclose(in);
    if (fflush(stdout) != 0) {
        perror("stdout");
        status = 1;
    }
    tokenizer_free(tok);
    chat_template_free(t);
    return status;
}
