// export/aws_process.c — see aws_process.h.
#include "aws_process.h"
#include "aws_config.h"
#include "aws_credentials.h"
#include "aws_sts.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

void aws_argv_free(char **argv) {
    for (int i = 0; argv && argv[i]; i++) free(argv[i]);
    free(argv);
}

int aws_shell_split(const char *s, char ***argv_out, char *err, size_t errlen) {
    size_t n = strlen(s);
    char **argv = calloc(n / 2 + 2, sizeof *argv);   // at most one word per two characters, + NULL
    char *word = malloc(n + 1);
    int argc = 0;
    if (!argv || !word) goto oom;
    for (size_t i = 0; i < n;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
        if (i >= n) break;
        size_t w = 0;
        int quoted = 0;   // '' and "" are words of their own, empty
        while (i < n && !(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) {
            char c = s[i++];
            if (c == '\\') {
                if (i < n) word[w++] = s[i++];   // shlex: a trailing backslash is an error
                else { snprintf(err, errlen, "credential_process ends in a lone backslash"); goto fail; }
            } else if (c == '\'') {
                quoted = 1;
                while (i < n && s[i] != '\'') word[w++] = s[i++];
                if (i++ >= n) { snprintf(err, errlen, "credential_process has an unclosed ' quote"); goto fail; }
            } else if (c == '"') {
                quoted = 1;
                // Inside double quotes a backslash escapes only '"' and '\' (shlex's POSIX mode).
                while (i < n && s[i] != '"') {
                    if (s[i] == '\\' && i + 1 < n && (s[i + 1] == '"' || s[i + 1] == '\\')) i++;
                    word[w++] = s[i++];
                }
                if (i++ >= n) { snprintf(err, errlen, "credential_process has an unclosed \" quote"); goto fail; }
            } else {
                word[w++] = c;
            }
        }
        word[w] = 0;
        if ((w || quoted) && !(argv[argc++] = strdup(word))) goto oom;
    }
    free(word);
    if (!argc) {
        snprintf(err, errlen, "credential_process is empty");
        aws_argv_free(argv);
        return -1;
    }
    *argv_out = argv;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    free(word);
    aws_argv_free(argv);
    return -1;
}

// Runs argv with stdout into a malloc'd buffer (at most 1 MiB). Returns the exit status (0..255),
// or -1 with err when it could not run or was killed.
static int run_capture(char **argv, char **outp, size_t *cap, char *err, size_t errlen) {
    int fds[2];
    if (pipe(fds)) {
        snprintf(err, errlen, "cannot run credential_process %s: pipe: %s", argv[0], strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int e = posix_spawn_file_actions_init(&fa);
    if (!e) e = posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    if (!e) e = posix_spawn_file_actions_addclose(&fa, fds[0]);
    if (!e) e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (e) {
        close(fds[0]);
        snprintf(err, errlen, "cannot run credential_process %s: %s", argv[0], strerror(e));
        return -1;
    }
    *cap = 1 << 20;
    char *buf = malloc(*cap);
    size_t len = 0;
    ssize_t got = 0;
    while (buf && len < *cap - 1 && (got = read(fds[0], buf + len, *cap - 1 - len)) != 0) {
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) break;
        len += (size_t)got;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    buf[len] = 0;
    *outp = buf;
    if (!WIFEXITED(status)) {
        snprintf(err, errlen, "credential_process %s was killed (signal %d)", argv[0],
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        return -1;
    }
    return WEXITSTATUS(status);
}

int aws_process_credentials(const char *cmdline, aws_temp_keys *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    char **argv = NULL, *text = NULL;
    size_t cap = 0;
    if (aws_shell_split(cmdline, &argv, err, errlen)) return -1;
    int st = run_capture(argv, &text, &cap, err, errlen), rc = -1;
    cJSON *j = NULL;
    if (st > 0) {
        snprintf(err, errlen, "credential_process %s exited with status %d (its messages are above)", argv[0], st);
    } else if (!st) {
        j = cJSON_Parse(text);
        const cJSON *v = cJSON_GetObjectItem(j, "Version"), *ak = cJSON_GetObjectItem(j, "AccessKeyId");
        const cJSON *sk = cJSON_GetObjectItem(j, "SecretAccessKey"), *tk = cJSON_GetObjectItem(j, "SessionToken");
        const cJSON *ex = cJSON_GetObjectItem(j, "Expiration");
        time_t t = cJSON_IsString(ex) ? aws_parse_time(ex->valuestring) : 0;
        if (!j)
            snprintf(err, errlen, "credential_process %s did not print JSON", argv[0]);
        else if (!cJSON_IsNumber(v) || v->valueint != 1)
            snprintf(err, errlen, "credential_process %s answered Version %s; only Version 1 is defined", argv[0],
                     cJSON_IsNumber(v) ? "other than 1" : "missing");
        else if (!cJSON_IsString(ak) || !cJSON_IsString(sk) || !*ak->valuestring || !*sk->valuestring)
            snprintf(err, errlen, "credential_process %s answered without %s", argv[0],
                     cJSON_IsString(ak) && *ak->valuestring ? "SecretAccessKey" : "AccessKeyId");
        else if (t < 0 || (ex && !cJSON_IsString(ex)))
            snprintf(err, errlen, "credential_process %s answered an unreadable Expiration", argv[0]);
        else if (!(out->access_key = strdup(ak->valuestring)) || !(out->secret_key = strdup(sk->valuestring)) ||
                 (cJSON_IsString(tk) && !(out->session_token = strdup(tk->valuestring))))
            snprintf(err, errlen, "out of memory");
        else {
            out->expiration = t;
            rc = 0;
        }
        if (cJSON_IsString(sk)) OPENSSL_cleanse(sk->valuestring, strlen(sk->valuestring));
        if (cJSON_IsString(tk)) OPENSSL_cleanse(tk->valuestring, strlen(tk->valuestring));
    }
    if (rc) aws_temp_keys_free(out);
    cJSON_Delete(j);
    if (text) OPENSSL_cleanse(text, cap);
    free(text);
    aws_argv_free(argv);
    return rc;
}
