// data/record.c — see record.h.
#include "record.h"
#include <stdlib.h>

const char *record_format_name(record_format f) {
    switch (f) {
    case FORMAT_PROMPT_COMPLETION: return "prompt-completion";
    case FORMAT_MESSAGES: return "messages";
    case FORMAT_CONVERSE: return "converse";
    case FORMAT_CPT: return "continued-pretraining";
    case FORMAT_UNKNOWN: break;
    }
    return "unknown";
}

void record_free(record *r) {
    if (!r) return;
    free(r->system);
    for (int i = 0; i < r->nturns; i++) free(r->turns[i].text);
    free(r->turns);
    free(r->text);
    r->system = NULL;
    r->turns = NULL;
    r->nturns = 0;
    r->text = NULL;
    r->system_len = r->text_len = 0;
}
