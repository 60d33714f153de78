// cli/cmd_preflight.c — `quarry preflight DIR [--json]`: checks a package against what Bedrock
// Custom Model Import requires (export/cmi.h). Exit 0 when nothing fails (warnings allowed), 1 on
// any failure.
#include "args.h"
#include "commands.h"
#include "../export/cmi.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

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
        cJSON *o = cmi_report_json(&r, pos[0]);
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
    }
    cmi_report_free(&r);
    if (fflush(stdout) != 0) return 1;
    return failed ? 1 : 0;
}
