// tests/chat/chat_case.h — what the chat tests share: the generated cases as records, and files
// read whole (through data/fileio).
#pragma once
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "data/fileio.h"
#include "data/record.h"

// The file's bytes, NUL-terminated (length in *len when not NULL); NULL when unreadable.
static inline char *slurp(const char *path, size_t *len) {
    char *data, err[256];
    return fileio_read_all(path, &data, len, err, sizeof err) ? NULL : data;
}

// Builds a record from {"system": str|null, "turns": [[role, text], ...]}; free with record_free.
static inline int record_from_case(const cJSON *c, record *r) {
    memset(r, 0, sizeof *r);
    r->format = FORMAT_MESSAGES;
    const cJSON *sys = cJSON_GetObjectItemCaseSensitive(c, "system");
    if (cJSON_IsString(sys)) {
        r->system = strdup(sys->valuestring);
        r->system_len = strlen(r->system);
    }
    const cJSON *turns = cJSON_GetObjectItemCaseSensitive(c, "turns"), *t;
    int n = cJSON_GetArraySize(turns);
    r->turns = calloc((size_t)(n > 0 ? n : 1), sizeof *r->turns);
    if (!r->turns) return -1;
    cJSON_ArrayForEach(t, turns) {
        const char *role = cJSON_GetArrayItem(t, 0)->valuestring;
        const char *text = cJSON_GetArrayItem(t, 1)->valuestring;
        record_turn *rt = &r->turns[r->nturns++];
        rt->role = strcmp(role, "assistant") == 0 ? ROLE_ASSISTANT : ROLE_USER;
        rt->text = strdup(text);
        rt->len = strlen(text);
    }
    return 0;
}
