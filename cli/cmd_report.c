// cli/cmd_report.c — `quarry report RUN`: one self-contained HTML page about a run
// (trainer/report): curves, result, memory plan, settings, record accounting, the cost
// comparison (data/cost, as `quarry cost --run RUN` prices it) and, unless --no-generate, the
// greedy answers of the base and of the tuned model to the first validation records' prompts
// (cli/generator; the base checked against run.json first, as generate does).
//
// Where it writes: RUN/report.html by default, replaced on every call (the name is the
// report's own in a run directory); --out FILE must not exist unless --force, nor lie in the
// run's final/ or checkpoints/. The page holds records of the training data, so it is written
// 0600, atomically.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "commands.h"
#include "diag.h"
#include "generator.h"
#include "model_ref.h"
#include "data/bedrock.h"
#include "data/cost.h"
#include "data/dataset.h"
#include "data/fileio.h"
#include "data/strbuf.h"
#include "trainer/example_store.h"
#include "trainer/report.h"
#include "trainer/run_record.h"
#include "trainer/settings.h"

static char *dup_s(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

// The lines of the first n validation records (file order) of a --validation-split run: the
// split as training made it (the same examples, fitting and seeded shuffle). 0 ok; -1 + message.
static int split_lines(const train_settings *s, const tokenizer *tok, const chat_template *tmpl, long *lines, int *n,
                       char *err, size_t errlen) {
    examples_source src = {.path = s->data_path, .tok = tok, .tmpl = tmpl, .chat = {s->template_date, 0, s->train_on_prompt},
                           .quiet = 1, .model_dir = s->model_dir, .allow_extra_keys = s->allow_extra_keys};
    truncation trunc = {s->max_seq_len, s->truncate_left ? TRUNCATE_LEFT : TRUNCATE_RIGHT, s->truncate_explicit,
                        s->on_long_error ? ON_LONG_ERROR : ON_LONG_TRUNCATE};
    example_set train = {0}, val = {0};
    token_store *store = example_store_open(&src, err, errlen);
    int bad = !store || example_set_open(&train, store, NULL, 0, &trunc, s->data_path, err, errlen) ||
              example_set_split(&train, &val, s->validation_split, s->seed, err, errlen);
    token_store_release(store);
    if (bad) {
        example_set_free(&train);
        return -1;
    }
    long *all = malloc((size_t)(val.n ? val.n : 1) * sizeof *all);
    if (!all) {
        example_set_free(&train);
        example_set_free(&val);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < val.n; i++) all[i] = example_set_line(&val, i);
    qsort(all, (size_t)val.n, sizeof *all, cmp_long);
    if (*n > val.n) *n = val.n;
    memcpy(lines, all, (size_t)*n * sizeof *lines);
    free(all);
    example_set_free(&train);
    example_set_free(&val);
    return 0;
}

// The prompt as the page shows it: the system text and every turn but the answer, labelled when
// there is more than one.
static char *prompt_text(const record *r) {
    strbuf b = {0};
    int labelled = r->system || r->nturns > 1;
    if (r->system) {
        strbuf_puts(&b, "[system] ");
        strbuf_put(&b, r->system, r->system_len);
        strbuf_puts(&b, "\n\n");
    }
    for (int t = 0; t < r->nturns; t++) {
        if (labelled) strbuf_puts(&b, r->turns[t].role == ROLE_USER ? "[user] " : "[assistant] ");
        strbuf_put(&b, r->turns[t].text, r->turns[t].len);
        if (t + 1 < r->nturns) strbuf_puts(&b, "\n\n");
    }
    return strbuf_take(&b);
}

typedef struct {
    record *recs;   // prompts: the answer turn removed
    report_answer *ans;
    int n;
} prompt_set;

static void prompt_set_free(prompt_set *p) {
    for (int i = 0; i < p->n; i++) {
        record_free(&p->recs[i]);
        report_answer_free(&p->ans[i]);
    }
    free(p->recs);
    free(p->ans);
    memset(p, 0, sizeof *p);
}

// Reads the records of path at lines[0..n) (every record when lines is NULL, up to n), keeping
// those with a user turn to answer. 0 ok; -1 + message.
static int read_prompts(const char *path, int allow_extra_keys, const long *lines, int n, prompt_set *p, char *err,
                        size_t errlen) {
    bedrock_options opts;
    memset(&opts, 0, sizeof opts);
    opts.allow_extra_keys = allow_extra_keys;
    bedrock_stream *s = bedrock_open(path, &opts, err, errlen);
    if (!s) return -1;
    p->recs = calloc((size_t)n, sizeof *p->recs);
    p->ans = calloc((size_t)n, sizeof *p->ans);
    int rc = p->recs && p->ans ? 0 : -1, got, k = 0;
    if (rc) snprintf(err, errlen, "out of memory");
    record r;
    while (!rc && p->n < n && (got = bedrock_next(s, &r)) == 1) {
        int wanted = !lines;
        while (lines && k < n && lines[k] < r.line) k++;
        if (lines && k < n && lines[k] == r.line) wanted = 1;
        // The answer is the last assistant turn; what precedes it is the prompt.
        if (!wanted || r.format == FORMAT_CPT || r.nturns < 2 || r.turns[r.nturns - 1].role != ROLE_ASSISTANT) {
            record_free(&r);
            continue;
        }
        report_answer *a = &p->ans[p->n];
        a->line = r.line;
        a->reference = dup_s(r.turns[r.nturns - 1].text);
        free(r.turns[--r.nturns].text);
        a->prompt = prompt_text(&r);
        p->recs[p->n++] = r;
        if (!a->reference || !a->prompt) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
    }
    if (!rc && got < 0) {
        snprintf(err, errlen, "%s: %s", path, bedrock_error(s));
        rc = -1;
    }
    bedrock_close(s);
    return rc;
}

// Generates every prompt's answer with ref (tuned = 1: into a->tuned, else a->base).
static int answer_all(const model_ref *ref, backend *be, const tokenizer *tok, const chat_template *tmpl,
                      prompt_set *p, int max_new, int tuned, char *err, size_t errlen) {
    int32_t **ids = calloc((size_t)p->n, sizeof *ids);
    int *len = calloc((size_t)p->n, sizeof *len);
    int rc = ids && len ? 0 : -1, longest = 0;
    if (rc) snprintf(err, errlen, "out of memory");
    for (int i = 0; !rc && i < p->n; i++) {
        len[i] = generator_encode_prompt(tmpl, tok, &p->recs[i], NULL, &ids[i], err, errlen);
        if (len[i] < 0) rc = -1;
        else if (len[i] > longest) longest = len[i];
    }
    generator g = {0};
    sample_params sp = {0, 0, 1, 0};   // greedy
    int32_t *buf = NULL;
    if (!rc) rc = generator_open(&g, ref, be, tok, tmpl, &sp, longest + max_new, err, errlen);
    if (!rc && !(buf = malloc((size_t)(g.ctx + 1) * sizeof *buf))) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    for (int i = 0; !rc && i < p->n; i++) {
        report_answer *a = &p->ans[i];
        if (len[i] > g.ctx) {
            snprintf(err, errlen, "line %ld: the prompt has %d tokens; the model's context is %d", a->line, len[i], g.ctx);
            rc = -1;
            break;
        }
        memcpy(buf, ids[i], (size_t)len[i] * sizeof *buf);
        answer ans;
        if (generator_run(&g, buf, len[i], max_new, NULL, &ans, err, errlen) != 0) {
            rc = -1;
            break;
        }
        *(tuned ? &a->tuned : &a->base) = ans.text;
        *(tuned ? &a->tuned_tokens : &a->base_tokens) = ans.ntok;
        *(tuned ? &a->tuned_stopped : &a->base_stopped) = ans.stopped;
    }
    free(buf);
    generator_free(&g);
    for (int i = 0; ids && i < p->n; i++) free(ids[i]);
    free(ids);
    free(len);
    return rc;
}

// The prompts of the first n validation records, answered by the base and the tuned model.
// *source says where they come from; a run without validation data leaves p empty with *note.
static int make_answers(const char *run_dir, const cJSON *run, int n, int max_new, const char *device,
                        prompt_set *p, char *source, size_t srclen, char *note, size_t notelen, char *err,
                        size_t errlen) {
    train_settings s;
    settings_defaults(&s);
    if (settings_from_json(cJSON_GetObjectItemCaseSensitive(run, "settings"), &s, err, errlen) != 0) return -1;
    const char *val_path = s.validation_path && s.validation_path[0] ? s.validation_path : NULL;
    if (!val_path && !(s.validation_split > 0)) {
        snprintf(note, notelen, "The run had no validation data (--validation or --validation-split): no prompts to "
                                "answer.");
        return 0;
    }
    model_ref ref, base;
    // The tuned model's base is checked against run.json's hashes here, before anything is loaded.
    if (model_ref_resolve(run_dir, &ref, err, errlen) != 0) return -1;
    memset(&base, 0, sizeof base);
    snprintf(base.base_dir, sizeof base.base_dir, "%s", ref.base_dir);
    // The prompts must be the records the run validated on: the files are checked by hash.
    if (run_record_check_data(run, val_path ? NULL : s.data_path, val_path, err, errlen) != 0) return -1;
    int rc = -1;
    tokenizer *tok = tokenizer_load(ref.base_dir, err, errlen);
    const char *force = s.template_name && s.template_name[0] ? s.template_name : NULL;
    chat_template *tmpl = tok ? chat_template_load(ref.base_dir, force, err, errlen) : NULL;
    long *lines = calloc((size_t)n, sizeof *lines);
    backend *be = NULL;
    if (!tmpl || !lines) {
        if (!lines) snprintf(err, errlen, "out of memory");
        goto out;
    }
    int want = n;
    if (val_path) {
        if (read_prompts(val_path, s.allow_extra_keys, NULL, n, p, err, errlen) != 0) goto out;
        snprintf(source, srclen, "The first %d records of the validation file %s", p->n, val_path);
    } else {
        if (split_lines(&s, tok, tmpl, lines, &want, err, errlen) != 0 ||
            read_prompts(s.data_path, s.allow_extra_keys, lines, want, p, err, errlen) != 0)
            goto out;
        snprintf(source, srclen, "The first %d records (in file order) of the validation share of %s (--validation-split "
                 "%g, seed %llu)", p->n, s.data_path, s.validation_split, s.seed);
    }
    if (p->n < n)
        snprintf(note, notelen, "%d prompt(s) asked for, %d validation record(s) with an answer to compare.", n, p->n);
    if (p->n == 0) {
        rc = 0;
        goto out;
    }
    be = backend_open(device, err, errlen);
    if (!be) goto out;
    fprintf(stderr, "quarry report: answering %d prompt(s) with the base and the tuned model on %s\n", p->n, be->name);
    if (answer_all(&base, be, tok, tmpl, p, max_new, 0, err, errlen) != 0 ||
        answer_all(&ref, be, tok, tmpl, p, max_new, 1, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    if (be) be->destroy(be);
    free(lines);
    chat_template_free(tmpl);
    tokenizer_free(tok);
    return rc;
}

// --out must not go where quarry keeps what it wrote: the run's final/ and checkpoints/ are
// hashed, exported and resumed from as they are. Compared as resolved paths. 0 ok; -1 + message.
static int check_out_place(const char *out, const char *run_dir, char *err, size_t errlen) {
    char o[4200], d[4300], p[4200];
    if (fileio_resolve_path(out, o, sizeof o, err, errlen)) return -1;
    const char *kept[] = {"final", "checkpoints"};
    for (int i = 0; i < 2; i++) {
        snprintf(d, sizeof d, "%s/%s", run_dir, kept[i]);
        if (fileio_resolve_path(d, p, sizeof p, err, errlen)) return -1;
        if (fileio_path_within(o, p)) {
            snprintf(err, errlen, "--out %.1000s lies inside the run's %s/, which only quarry train writes\n"
                     "hint: write the report elsewhere (the default is %.1000s/report.html)", out, kept[i], run_dir);
            return -1;
        }
    }
    return 0;
}

int cmd_report(int argc, char **argv) {
    const char *out = NULL, *device = "auto", *base_model = NULL, *region = NULL;
    int prompts = 3, max_new = 48, no_generate = 0, force = 0;
    double gpu_hour_price = NAN, power_price = NAN;
    const arg_spec specs[] = {
        {"out", ARG_STRING, &out, "FILE", "where to write the page (default RUN/report.html, replaced each time)"},
        {"force", ARG_FLAG, &force, NULL, "replace --out FILE when it exists"},
        {"prompts", ARG_INT, &prompts, "N", "answer the first N validation records' prompts (default 3; 0 = none)"},
        {"max-new-tokens", ARG_INT, &max_new, "N", "at most N tokens per answer (default 48)"},
        {"no-generate", ARG_FLAG, &no_generate, NULL, "no answers: the page from the run's files alone (no model is loaded)"},
        {"device", ARG_STRING, &device, "cpu|cuda|cuda:N|auto", "the device of the answers (default auto)"},
        {"base-model", ARG_STRING, &base_model, "ID", "Bedrock base model id for the managed prices (as quarry cost)"},
        {"gpu-hour-price", ARG_FLOAT, &gpu_hour_price, "USD", "what one GPU-hour costs you on-prem (as quarry cost)"},
        {"power-price", ARG_FLOAT, &power_price, "USD", "electricity per kWh (as quarry cost)"},
        {"region", ARG_STRING, &region, "REGION", "region of the Custom Model Import price row (as quarry cost)"},
    };
    const arg_parser p = {
        "report",
        "quarry report RUN [--out FILE [--force]] [--prompts N] [--max-new-tokens N] [--no-generate] [--device DEV] "
        "[--base-model ID] [--gpu-hour-price USD] [--power-price USD] [--region R]",
        "Writes one self-contained HTML page about a run (no network, no script: it opens offline): loss and\n"
        "validation curves, throughput and learning rate per step, the result, the memory plan, the record\n"
        "accounting, the cost comparison (the figures of quarry cost --run RUN with the same price flags),\n"
        "the greedy answers of the base and the tuned model to the first validation records' prompts beside\n"
        "the records' own answers, and every setting. Default RUN/report.html (replaced on each call, mode 0600:\n"
        "it shows training records); --out FILE is never replaced without --force.",
        specs, (int)(sizeof specs / sizeof specs[0]), 1, 1};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;
    const char *usage_err = NULL;
    if (prompts < 0) usage_err = "--prompts must be ≥ 0";
    else if (max_new < 1) usage_err = "--max-new-tokens must be ≥ 1";
    else if (force && !out) usage_err = "--force applies to --out FILE (RUN/report.html is always replaced)";
    else if ((!isnan(gpu_hour_price) && !(gpu_hour_price >= 0)) || (!isnan(power_price) && !(power_price >= 0)))
        usage_err = "prices must be ≥ 0";
    if (usage_err) {
        fprintf(stderr, "quarry report: error: %s\nusage: %s\n", usage_err, p.usage);
        return 2;
    }
    const char *run_dir = pos[0];
    char err[4600] = "", path[4200];
    cJSON *run = run_record_read(run_dir, err, sizeof err);
    if (!run) {
        cli_error("report", "%s\nhint: quarry report takes a run directory written by quarry train", err);
        return 1;
    }
    int status = 1;
    prompt_set ps = {0};
    char *html = NULL, *cost_cmd = NULL;
    if (out) {
        snprintf(path, sizeof path, "%s", out);
        if (check_out_place(out, run_dir, err, sizeof err) != 0) {
            cli_error("report", "%s", err);
            goto done;
        }
        struct stat st;
        if (stat(path, &st) == 0 && (S_ISDIR(st.st_mode) || !force)) {
            cli_error("report", "%s exists%s\nhint: choose another --out%s", path,
                      S_ISDIR(st.st_mode) ? " and is a directory" : "; it is not replaced",
                      S_ISDIR(st.st_mode) ? " (a file name)" : ", or give --force to replace it");
            goto done;
        }
    } else {
        snprintf(path, sizeof path, "%s/report.html", run_dir);
    }

    cost_inputs ci;
    cost_inputs_default(&ci);
    ci.run = run_dir;
    ci.base_model = base_model;
    ci.region = region;
    ci.gpu_hour_price = gpu_hour_price;
    ci.power_price = power_price;
    cost c;
    char cost_err[4600] = "";
    int priced = cost_compute(&ci, &c, cost_err, sizeof cost_err) == 0;
    // The command that prints the same figures, for the page.
    strbuf cb = {0};
    strbuf_printf(&cb, "quarry cost --run %s", run_dir);
    if (base_model) strbuf_printf(&cb, " --base-model %s", base_model);
    if (region) strbuf_printf(&cb, " --region %s", region);
    if (!isnan(gpu_hour_price)) strbuf_printf(&cb, " --gpu-hour-price %g", gpu_hour_price);
    if (!isnan(power_price)) strbuf_printf(&cb, " --power-price %g", power_price);
    cost_cmd = strbuf_take(&cb);

    char source[8600] = "", note[512] = "";
    if (no_generate || prompts == 0) {
        snprintf(note, sizeof note, "No answers: written with %s.", no_generate ? "--no-generate" : "--prompts 0");
    } else if (make_answers(run_dir, run, prompts, max_new, device, &ps, source, sizeof source, note, sizeof note, err,
                            sizeof err) != 0) {
        cli_error("report", "%s\nhint: --no-generate writes the report without the models' answers", err);
        goto done;
    }
    size_t rl = strlen(run_dir);
    char name_buf[4200];
    snprintf(name_buf, sizeof name_buf, "%s", run_dir);
    while (rl > 1 && name_buf[rl - 1] == '/') name_buf[--rl] = 0;   // "runs/a/" names "a"
    const char *name = strrchr(name_buf, '/');
    name = name ? name + 1 : name_buf;
    report_input in = {run_dir, name, run, priced ? &c : NULL, cost_cmd, priced ? NULL : cost_err,
                       ps.ans, ps.n, max_new, source[0] ? source : NULL, note[0] ? note : NULL};
    size_t len = 0;
    html = report_html(&in, &len);
    if (!html) {
        cli_error("report", "out of memory writing the page");
        goto done;
    }
    if (fileio_write_atomic_mode(path, html, len, 0600, err, sizeof err) != 0) {
        cli_error("report", "%s", err);
        goto done;
    }
    printf("quarry report: wrote %s\n", path);
    status = 0;
done:
    free(html);
    free(cost_cmd);
    prompt_set_free(&ps);
    cJSON_Delete(run);
    return status;
}
