// cli/cmd_generate.c — `quarry generate`: talk to a checkpoint or a trained run. The prompt goes
// through the model's chat template (or as raw text), tokens are sampled (cli/generator:
// model/sample.h with a KV cache) and streamed to stdout as soon as they decode to whole characters;
// everything else (settings, timing) goes to stderr.
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "diag.h"
#include "generator.h"
#include "model_ref.h"
#include "data/chat.h"
#include "data/fileio.h"
#include "data/record.h"
#include "data/tokenizer.h"
#include "model/sample.h"

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static int add_turn(record *r, record_role role, const char *text, size_t len) {
    record_turn *nt = realloc(r->turns, (size_t)(r->nturns + 1) * sizeof *nt);
    if (!nt) return -1;
    r->turns = nt;
    char *t = dup_n(text, len);
    if (!t) return -1;
    r->turns[r->nturns++] = (record_turn){role, t, len};
    return 0;
}

// A content value: a string, or Converse's [{"text": ...}, ...] joined.
static char *content_text(const cJSON *v) {
    if (cJSON_IsString(v)) return dup_n(v->valuestring, strlen(v->valuestring));
    if (!cJSON_IsArray(v)) return NULL;
    size_t len = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "text");
        if (!cJSON_IsString(t)) return NULL;
        len += strlen(t->valuestring);
    }
    char *s = malloc(len + 1), *p = s;
    if (!s) return NULL;
    cJSON_ArrayForEach(it, v) {
        const char *t = cJSON_GetObjectItemCaseSensitive(it, "text")->valuestring;
        size_t l = strlen(t);
        memcpy(p, t, l);
        p += l;
    }
    *p = 0;
    return s;
}

// --messages FILE: the first non-empty line, a Bedrock record (prompt, messages, Converse or
// CPT input). A final assistant turn (a training record) is dropped: the model writes its own.
static int read_messages(const char *path, record *r, char *err, size_t errlen) {
    char *text = NULL;
    size_t len = 0;
    if (fileio_read_all(path, &text, &len, err, errlen) != 0) return -1;
    size_t s = 0;
    long line = 1;
    while (s < len) {
        size_t e = s;
        while (e < len && text[e] != '\n') e++;
        size_t k = s;
        while (k < e && (text[k] == ' ' || text[k] == '\t' || text[k] == '\r')) k++;
        if (k < e) break;
        s = e + 1;
        line++;
    }
    size_t e = s;
    while (e < len && text[e] != '\n') e++;
    if (s >= len) {
        free(text);
        snprintf(err, errlen, "%s: no record (the file is empty)", path);
        return -1;
    }
    cJSON *j = cJSON_ParseWithLength(text + s, e - s);
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(err, errlen, "%s:%ld: error: not a JSON object\nhint: one Bedrock record per line, e.g. "
                 "{\"messages\": [{\"role\": \"user\", \"content\": \"...\"}]}", path, line);
        return -1;
    }
    memset(r, 0, sizeof *r);
    r->line = line;
    int rc = -1;
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(j, "input");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    const cJSON *sys = cJSON_GetObjectItemCaseSensitive(j, "system");
    if (cJSON_IsString(prompt)) {
        r->format = FORMAT_PROMPT_COMPLETION;
        if (add_turn(r, ROLE_USER, prompt->valuestring, strlen(prompt->valuestring)) != 0) goto oom;
    } else if (cJSON_IsString(input)) {
        r->format = FORMAT_CPT;
        r->text = dup_n(input->valuestring, strlen(input->valuestring));
        if (!r->text) goto oom;
        r->text_len = strlen(r->text);
    } else if (cJSON_IsArray(msgs)) {
        r->format = FORMAT_MESSAGES;
        if (sys && !cJSON_IsNull(sys)) {
            r->system = content_text(sys);
            if (!r->system) {
                snprintf(err, errlen, "%s:%ld: error: \"system\" must be a string or a list of {\"text\"}", path, line);
                goto out;
            }
            r->system_len = strlen(r->system);
        }
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, msgs) {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
            char *c = content_text(cJSON_GetObjectItemCaseSensitive(it, "content"));
            int user = cJSON_IsString(role) && strcmp(role->valuestring, "user") == 0;
            int asst = cJSON_IsString(role) && strcmp(role->valuestring, "assistant") == 0;
            if (!c || (!user && !asst)) {
                free(c);
                snprintf(err, errlen, "%s:%ld: error: messages[%d] needs \"role\" user or assistant and a \"content\" "
                         "string (or list of {\"text\"})", path, line, i);
                goto out;
            }
            int arc = add_turn(r, user ? ROLE_USER : ROLE_ASSISTANT, c, strlen(c));
            free(c);
            if (arc != 0) goto oom;
            i++;
        }
        if (r->nturns > 0 && r->turns[r->nturns - 1].role == ROLE_ASSISTANT) {
            fprintf(stderr, "quarry generate: %s:%ld: the last turn is the assistant's; generating it anew\n", path,
                    line);
            free(r->turns[--r->nturns].text);
        }
        if (r->nturns == 0) {
            snprintf(err, errlen, "%s:%ld: error: no user turn to answer", path, line);
            goto out;
        }
    } else {
        snprintf(err, errlen, "%s:%ld: error: not a Bedrock record: expected \"messages\", \"prompt\" or \"input\"",
                 path, line);
        goto out;
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
out:
    cJSON_Delete(j);
    if (rc != 0) record_free(r);
    return rc;
}

static char *read_line(FILE *f) {
    size_t cap = 256, n = 0;
    char *s = malloc(cap);
    int c;
    while (s && (c = fgetc(f)) != EOF && c != '\n') {
        if (n + 2 > cap) {
            char *ns = realloc(s, cap *= 2);
            if (!ns) {
                free(s);
                return NULL;
            }
            s = ns;
        }
        s[n++] = (char)c;
    }
    if (!s || (n == 0 && c == EOF)) {
        free(s);
        return NULL;
    }
    if (n && s[n - 1] == '\r') n--;
    s[n] = 0;
    return s;
}

// The last line names what ended the answer: a stop token, --max-new-tokens, or the context
// (prompt + answer filled the ctx planned positions), so a cut answer is not mistaken for a whole one.
static void report(const answer *a, int nprompt, int max_new, int ctx) {
    char why[160];
    if (a->stopped) snprintf(why, sizeof why, "stopped at end-of-turn/EOS");
    else if (a->ntok >= max_new) snprintf(why, sizeof why, "stopped at --max-new-tokens %d", max_new);
    else snprintf(why, sizeof why, "stopped at the context length (%d positions; --context raises it up to the model's)", ctx);
    fprintf(stderr, "\nquarry generate: %d prompt tokens, %d generated in %.2f s (%.1f tokens/s); %s\n", nprompt,
            a->ntok, a->seconds, a->seconds > 0 ? a->ntok / a->seconds : 0.0, why);
}

int cmd_generate(int argc, char **argv) {
    const char *model_arg = NULL, *prompt = NULL, *messages = NULL, *device = "auto", *tmpl_name = NULL;
    const char *attention = NULL;
    const char *system = NULL;
    int chat = 0, raw = 0, max_new = 256, top_k = INT_MIN, seed = 0, ctx_flag = 0, print_prompt = 0;
    double temperature = NAN, top_p = NAN;
    const arg_spec specs[] = {
        {"model", ARG_STRING, &model_arg, "DIR|RUN", "a Hugging Face checkpoint directory, or a run written by quarry train"},
        {"prompt", ARG_STRING, &prompt, "TEXT", "one user message (or, with --raw, text to continue)"},
        {"messages", ARG_STRING, &messages, "FILE", "a Bedrock record (first line of FILE) whose last turn is the user's"},
        {"chat", ARG_FLAG, &chat, NULL, "interactive: read user messages from stdin, one per line, keep the conversation"},
        {"system", ARG_STRING, &system, "TEXT", "system prompt for --prompt and --chat"},
        {"raw", ARG_FLAG, &raw, NULL, "no chat template: encode the prompt as the tokenizer does (BOS when it adds one)"},
        {"template", ARG_STRING, &tmpl_name, "NAME", "force the chat template family (see quarry render --help)"},
        {"max-new-tokens", ARG_INT, &max_new, "N", "at most N generated tokens (default 256)"},
        {"temperature", ARG_FLOAT, &temperature, "T", "0 = greedy (default: generation_config.json's, else greedy)"},
        {"top-k", ARG_INT, &top_k, "K", "keep the K most likely tokens; 0 = off (default: generation_config.json's, else 50)"},
        {"top-p", ARG_FLOAT, &top_p, "P", "nucleus: keep the most likely tokens up to mass P (default: generation_config.json's, else 1)"},
        {"seed", ARG_INT, &seed, "S", "sampling seed (default 0)"},
        {"context", ARG_INT, &ctx_flag, "N", "positions to plan (default: prompt + max-new-tokens; --chat: 4096), at most the model's"},
        {"device", ARG_STRING, &device, "cpu|cuda|cuda:N|auto", "the device (default auto)"},
        {"attention", ARG_STRING, &attention, "auto|cudnn|quarry", "attention on cuda: cuDNN when found (auto), cuDNN "
         "required, or quarry's kernel"},
        {"print-prompt", ARG_FLAG, &print_prompt, NULL, "print the rendered prompt and exit (no weights are read)"},
    };
    const arg_parser p = {
        "generate",
        "quarry generate --model DIR|RUN (--prompt TEXT | --messages FILE | --chat) [--raw] [--max-new-tokens N] "
        "[--temperature T] [--top-k K] [--top-p P] [--seed S] [--template NAME] [--device DEV]",
        "Generates text with a checkpoint or a trained run (base + LoRA adapter, not merged). The prompt goes\n"
        "through the model's chat template (unless --raw or the model has none); generation stops at the\n"
        "template's end-of-turn or EOS token. stdout carries only the generated text, streamed as it comes;\n"
        "settings and timing go to stderr. Sampling: temperature, then top-k, then top-p, as transformers.",
        specs, (int)(sizeof specs / sizeof specs[0]), 0, 0};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;
    const char *usage_err = NULL;
    if (!model_arg) usage_err = "--model DIR|RUN is required";
    else if ((prompt != NULL) + (messages != NULL) + chat != 1) usage_err = "give exactly one of --prompt, --messages, --chat";
    else if (max_new < 0) usage_err = "--max-new-tokens must be ≥ 0";
    else if (ctx_flag < 0) usage_err = "--context must be ≥ 1";
    else if (raw && (messages || chat)) usage_err = "--raw takes --prompt only";
    else if (raw && tmpl_name) usage_err = "--raw and --template exclude each other";
    if (usage_err) {
        fprintf(stderr, "quarry generate: error: %s\nusage: %s\n", usage_err, p.usage);
        return 2;
    }

    char err[2048] = "";
    int status = 1;
    model_ref ref;
    chat_template *tmpl = NULL;
    generator g = {0};
    tokenizer *tok = NULL;
    backend *be = NULL;
    record conv = {0};
    int32_t *ids = NULL;
    cJSON *gen_cfg = NULL, *cfg = NULL;
    if (model_ref_resolve(model_arg, &ref, err, sizeof err) != 0) goto fail;
    tok = tokenizer_load(ref.base_dir, err, sizeof err);
    if (!tok) goto fail;
    if (!raw) {
        const char *force = tmpl_name ? tmpl_name : ref.template_name[0] ? ref.template_name : NULL;
        tmpl = chat_template_load(ref.base_dir, force, err, sizeof err);
        if (!tmpl) goto fail;
        if (tmpl->note) fprintf(stderr, "quarry generate: note: %s\n", tmpl->note);
        // A base model (no template) continues --prompt as raw text.
        if (tmpl->family == CHAT_RAW && prompt && !tmpl_name) {
            chat_template_free(tmpl);
            tmpl = NULL;
        }
    }
    conv.format = FORMAT_MESSAGES;
    if (messages && read_messages(messages, &conv, err, sizeof err) != 0) goto fail;
    if (system) {
        free(conv.system);
        conv.system = dup_n(system, strlen(system));
        conv.system_len = strlen(system);
        if (!conv.system) goto oom;
    }
    if (prompt && tmpl && add_turn(&conv, ROLE_USER, prompt, strlen(prompt)) != 0) goto oom;

    if (print_prompt) {
        if (chat) {
            snprintf(err, sizeof err, "--print-prompt needs --prompt or --messages");
            goto fail;
        }
        if (!tmpl) {
            fputs(prompt, stdout);
        } else {
            chat_rendered c;
            chat_options o = {0};
            if (chat_render_prompt(tmpl, &conv, &o, &c, err, sizeof err) != 0) goto fail;
            fwrite(c.text, 1, c.len, stdout);
            chat_rendered_free(&c);
        }
        status = 0;
        goto done;
    }
    int n = 0;
    if (!chat) {
        n = generator_encode_prompt(tmpl, tok, &conv, prompt, &ids, err, sizeof err);
        if (n < 0) goto fail;
        if (n == 0) {
            snprintf(err, sizeof err, "the prompt is empty and the tokenizer adds no BOS: nothing to continue from");
            goto fail;
        }
    }
    // Sampling settings: flags, else generation_config.json, else transformers' defaults.
    gen_cfg = generator_read_json(ref.base_dir, "generation_config.json");
    cfg = generator_read_json(ref.base_dir, "config.json");
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(gen_cfg, "do_sample");
    const cJSON *gt = cJSON_GetObjectItemCaseSensitive(gen_cfg, "temperature");
    const cJSON *gk = cJSON_GetObjectItemCaseSensitive(gen_cfg, "top_k");
    const cJSON *gp = cJSON_GetObjectItemCaseSensitive(gen_cfg, "top_p");
    sample_params sp;
    sp.temperature = !isnan(temperature) ? temperature
                     : cJSON_IsTrue(ds)  ? (cJSON_IsNumber(gt) ? gt->valuedouble : 1.0)
                                         : 0.0;
    sp.top_k = top_k != INT_MIN ? top_k : cJSON_IsNumber(gk) ? gk->valueint : 50;
    sp.top_p = !isnan(top_p) ? top_p : cJSON_IsNumber(gp) ? gp->valuedouble : 1.0;
    sp.seed = (uint64_t)(int64_t)seed;
    if (sample_params_check(&sp, err, sizeof err) != 0) {
        fprintf(stderr, "quarry generate: error: %s\nusage: %s\n", err, p.usage);
        status = 2;
        goto done;
    }

    be = backend_open(device, err, sizeof err);
    if (!be) goto fail;
    if (!backend_set_attention(be, attention, err, sizeof err)) goto fail;
    if (generator_open(&g, &ref, be, tok, tmpl, &sp, ctx_flag ? ctx_flag : chat ? 4096 : n + max_new, err,
                       sizeof err) != 0)
        goto fail;
    if (!chat && n > g.ctx) {
        snprintf(err, sizeof err, "the prompt has %d tokens; the model's context is %d", n, g.ctx);
        goto fail;
    }
    int32_t *buf = realloc(ids, (size_t)(g.ctx + 1) * sizeof *buf);
    if (!buf) goto oom;
    ids = buf;
    char desc[8400];
    model_ref_describe(&ref, desc, sizeof desc);
    fprintf(stderr, "quarry generate: %s on %s, loaded in %.2f s; template %s; ", desc, be->name, g.load_seconds,
            tmpl ? tmpl->name : "none (raw)");
    if (sp.temperature <= 0)
        fprintf(stderr, "greedy\n");
    else
        fprintf(stderr, "temperature %g, top-k %d, top-p %g, seed %d\n", sp.temperature, sp.top_k, sp.top_p, seed);

    answer a;
    if (!chat) {
        if (generator_run(&g, ids, n, max_new, stdout, &a, err, sizeof err) != 0) goto fail;
        if (isatty(STDOUT_FILENO)) fputc('\n', stdout);
        report(&a, n, max_new, g.ctx);
        free(a.text);
        status = 0;
        goto done;
    }
    fprintf(stderr, "quarry generate: chat; one message per line, an empty line or end of input to finish\n");
    for (;;) {
        fprintf(stderr, "> ");
        fflush(stderr);
        char *line = read_line(stdin);
        if (!line || !line[0]) {
            free(line);
            break;
        }
        int arc = add_turn(&conv, ROLE_USER, line, strlen(line));
        free(line);
        if (arc != 0) goto oom;
        int32_t *pids = NULL;
        int pn = generator_encode_prompt(tmpl, tok, &conv, NULL, &pids, err, sizeof err);
        if (pn < 0) goto fail;
        if (pn >= g.ctx) {
            free(pids);
            snprintf(err, sizeof err, "the conversation has %d tokens and fills the context (%d); start again or give "
                     "--context", pn, g.ctx);
            goto fail;
        }
        memcpy(ids, pids, (size_t)pn * sizeof *pids);
        free(pids);
        // Each answer draws from --seed's stream afresh: a turn answers as --messages would for
        // the same conversation.
        if (generator_run(&g, ids, pn, max_new, stdout, &a, err, sizeof err) != 0) goto fail;
        fputc('\n', stdout);
        fflush(stdout);
        report(&a, pn, max_new, g.ctx);
        arc = add_turn(&conv, ROLE_ASSISTANT, a.text, strlen(a.text));
        free(a.text);
        if (arc != 0) goto oom;
    }
    status = 0;
    goto done;
oom:
    snprintf(err, sizeof err, "out of memory");
fail:
    cli_error("generate", "%s", err);
    status = 1;
done:
    free(ids);
    generator_free(&g);
    if (be) be->destroy(be);
    tokenizer_free(tok);
    chat_template_free(tmpl);
    record_free(&conv);
    cJSON_Delete(gen_cfg);
    cJSON_Delete(cfg);
    return status;
}
