// tests/aws/aws_creds_probe.c — test helper (not a test): prints what quarry's credential chain or
// endpoint resolution answers, as one JSON line, for test_credential_chain.py to compare with
// botocore. Secrets are printed only as SHA-256 hashes.
//   aws_creds_probe creds [PROFILE|-] [REGION|-]
//   aws_creds_probe endpoint SERVICE_ENV service_key [PROFILE|-] [FLAG|-]
//   aws_creds_probe refresh MARGIN_S [PROFILE|-]   (loads, then refreshes once)
//   aws_creds_probe split CMDLINE      (credential_process's split: one hex-encoded word a line)
//   aws_creds_probe time ISO8601       (seconds since the epoch, -1 when malformed)
#include "export/aws_config.h"
#include "export/aws_credentials.h"
#include "export/aws_process.h"
#include "export/aws_sts.h"
#include "export/sigv4.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *arg(int argc, char **argv, int i) {
    return i < argc && strcmp(argv[i], "-") ? argv[i] : NULL;
}

static void print_creds(const aws_credentials *c) {
    char sk[65], tk[65] = "";
    sigv4_sha256_hex(c->secret_key, strlen(c->secret_key), sk);
    if (c->session_token) sigv4_sha256_hex(c->session_token, strlen(c->session_token), tk);
    printf("{\"method\": \"%s\", \"access_key\": \"%s\", \"secret_sha256\": \"%s\", \"token_sha256\": \"%s\", "
           "\"expiration\": %lld, \"region\": \"%s\"}\n",
           c->method, c->access_key, sk, tk, (long long)c->expiration, c->region ? c->region : "");
}

int main(int argc, char **argv) {
    char err[8192];
    if (argc >= 2 && !strcmp(argv[1], "creds")) {
        aws_credentials c;
        if (aws_credentials_load(&c, arg(argc, argv, 2), arg(argc, argv, 3), err, sizeof err)) {
            fprintf(stderr, "error: %s\n", err);
            return 1;
        }
        print_creds(&c);
        aws_credentials_free(&c);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "refresh")) {
        aws_credentials c;
        if (aws_credentials_load(&c, arg(argc, argv, 3), NULL, err, sizeof err)) {
            fprintf(stderr, "error: %s\n", err);
            return 1;
        }
        int r = aws_credentials_refresh(&c, atoi(argv[2]), err, sizeof err);
        if (r < 0) fprintf(stderr, "error: %s\n", err);
        else printf("{\"refreshed\": %d}\n", r);
        if (r >= 0) print_creds(&c);
        aws_credentials_free(&c);
        return r < 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "endpoint")) {
        char out[1024];
        int r = aws_endpoint_resolve(arg(argc, argv, 5), arg(argc, argv, 4), argv[2], argv[3], out, sizeof out);
        printf("{\"endpoint\": \"%s\"}\n", r > 0 ? out : "");
        return r < 0;
    }
    if (argc == 3 && !strcmp(argv[1], "split")) {
        char **words;
        if (aws_shell_split(argv[2], &words, err, sizeof err)) {
            fprintf(stderr, "error: %s\n", err);
            return 1;
        }
        for (int i = 0; words[i]; i++) {
            printf("w:");
            for (const unsigned char *c = (const unsigned char *)words[i]; *c; c++) printf("%02x", *c);
            printf("\n");
        }
        aws_argv_free(words);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "time")) {
        printf("%lld\n", (long long)aws_parse_time(argv[2]));
        return 0;
    }
    fprintf(stderr, "usage: aws_creds_probe creds|endpoint|refresh ...\n");
    return 2;
}
