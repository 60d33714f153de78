// cli/cmd_preflight.c — `quarry preflight DIR [--json]`: checks a package against what Bedrock
// Custom Model Import requires (export/cmi.h). Exit 0 when nothing fails (warnings allowed), 1 on
// any failure. When the package's quarry-export.json records what it keeps of the fine-tuning
// (`quarry export`'s retention check), that is shown too.
#include "args.h"
#include "commands.h"
#include "../data/fileio.h"
#include "../export/cmi.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// DIR/quarry-export.json's "retention" object (detached), or NULL.
static cJSON *read_retention(const char *dir) {
    char path[4200], err[256], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/quarry-export.json", dir);
    if (!fileio_exists(path) || fileio_read_all(path, &text, &len, err, sizeof err)) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    cJSON *r = j ? cJSON_DetachItemFromObjectCaseSensitive(j, "retention") : NULL;
    cJSON_Delete(j);
    if (!cJSON_IsObject(r)) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

static void print_retention(const cJSON *r, FILE *f) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, "retained"), *dt = cJSON_GetObjectItemCaseSensitive(r, "dtype");
    const cJSON *why = cJSON_GetObjectItemCaseSensitive(r, "why"), *ds = cJSON_GetObjectItemCaseSensitive(r, "dtypes");
    const cJSON *cd = cJSON_GetObjectItemCaseSensitive(r, "check_data");
    const cJSON *nrec = cJSON_GetObjectItemCaseSensitive(cd, "records");
    if (cJSON_IsString(why)) {
        fprintf(f, "INFO  retention      %s%s\n", cJSON_IsNumber(v) ? "100% of the fine-tuning: " : "", why->valuestring);
        return;
    }
    if (!cJSON_IsNumber(v)) {
        fprintf(f, "INFO  retention      not measured by quarry export\n");
        return;
    }
    fprintf(f, "INFO  retention      the %s package retains %.1f%% of the run's improvement over the base",
            cJSON_IsString(dt) ? dt->valuestring : "?", 100 * v->valuedouble);
    const char *sep = " (";
    for (const cJSON *e = ds ? ds->child : NULL; e; e = e->next) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(e, "retained");
        if (!cJSON_IsNumber(x) || (cJSON_IsString(dt) && !strcmp(e->string, dt->valuestring))) continue;
        fprintf(f, "%s%s: %.1f%%", sep, e->string, 100 * x->valuedouble);
        sep = ", ";
    }
    fprintf(f, "%s; measured by quarry export over %d check records)\n", strcmp(sep, " (") ? "" : " (",
            cJSON_IsNumber(nrec) ? nrec->valueint : 0);
}

int cmd_preflight(int argc, char **argv) {
    int json = 0;
    const arg_spec specs[] = {
        {"json", ARG_FLAG, &json, NULL, "print the report as one JSON document on stdout"},
    };
    const arg_parser p = {
        "preflight", "quarry preflight DIR [--json]",
        "Checks a Hugging Face package against what Amazon Bedrock Custom Model Import requires:\n"
        "supported architecture, dtype fp32/fp16/bf16, weights under 200 GB, max_position_embeddings\n"
        "at most 128K, config/tokenizer files present and parseable, every tensor the config implies\n"
        "present with its shape, no NaN/Inf, one chat template (a warning when there is none:\n"
        "Converse needs it). Each check prints pass, warn or fail with the reason.\n"
        "Exit status: 0 when no check fails, 1 otherwise.",
        specs, (int)(sizeof specs / sizeof specs[0]), 1, 1};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;
    cmi_report r;
    if (cmi_preflight(pos[0], &r)) {
        fprintf(stderr, "quarry preflight: error: out of memory\n");
        cmi_report_free(&r);
        return 1;
    }
    int failed = r.failed > 0;
    if (json) {
        cJSON *o = cmi_report_json(&r, pos[0]), *ret = read_retention(pos[0]);
        if (ret && (!o || !cJSON_AddItemToObject(o, "retention", ret))) cJSON_Delete(ret);
        char *s = o ? cJSON_Print(o) : NULL;
        cJSON_Delete(o);
        if (!s) {
            fprintf(stderr, "quarry preflight: error: out of memory\n");
            cmi_report_free(&r);
            return 1;
        }
        printf("%s\n", s);
        free(s);
    } else {
        cmi_report_print(&r, pos[0], stdout);
        cJSON *ret = read_retention(pos[0]);
        if (ret) print_retention(ret, stdout);
        cJSON_Delete(ret);
    }
    cmi_report_free(&r);
    if (fflush(stdout) != 0) return 1;
    return failed ? 1 : 0;
}
