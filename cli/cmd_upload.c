// cli/cmd_upload.c — `quarry upload DIR s3://bucket/prefix/`: send an export to S3 (export/s3.h).
// DIR must be a package `quarry export` wrote that passes the CMI preflight (--force to send
// anything else); that is checked before credentials are read or the network is touched.
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "args.h"
#include "commands.h"
#include "data/fileio.h"
#include "export/aws_config.h"
#include "export/aws_credentials.h"
#include "export/aws_http.h"
#include "export/cmi.h"
#include "export/leakcheck.h"
#include "export/s3.h"

// What a training run leaves and an export never holds: optimizer states, the run's record.
static const char *const run_markers[] = {"run.json", "checkpoints", "trainer_state.json", "adam_m.safetensors",
                                          "adam_v.safetensors", "step_wise_training_metrics.csv"};

// quarry-export.json must list every file in dir with its size: anything else was added after the
// export (a copied run, notes, data) and would leave the building unchecked. 0 ok; -1 + message.
static int check_listed(const char *dir, char *err, size_t errlen) {
    char path[4200], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/quarry-export.json", dir);
    if (fileio_read_all(path, &text, &len, err, errlen)) return -1;
    cJSON *rec = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(rec, "files");
    int rc = 0;
    if (!cJSON_IsObject(files)) {
        snprintf(err, errlen, "%.2000s has no \"files\" object; it was not written by `quarry export`", path);
        rc = -1;
    }
    DIR *d = rc ? NULL : opendir(dir);
    if (!rc && !d) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        rc = -1;
    }
    struct dirent *e;
    while (d && !rc && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "quarry-export.json")) continue;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(files, e->d_name);
        const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(f, "bytes");
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!f) {
            snprintf(err, errlen, "%.2000s is not part of the export (quarry-export.json does not list it)", path);
            rc = -1;
        } else if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || !cJSON_IsNumber(bytes) ||
                   (double)st.st_size != bytes->valuedouble) {
            snprintf(err, errlen, "%.2000s changed after the export (quarry-export.json records %.0f bytes)", path,
                     cJSON_IsNumber(bytes) ? bytes->valuedouble : -1.0);
            rc = -1;
        }
    }
    if (d) closedir(d);
    cJSON_Delete(rec);
    return rc;
}

// 0: dir is a passing export. 1: it is not (err says why). 2: dir is no directory at all.
static int check_export_dir(const char *dir, char *err, size_t errlen) {
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (stat(dir, &st) != 0) snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        else snprintf(err, errlen, "%s is not a directory; upload sends the directory `quarry export` wrote", dir);
        return 2;
    }
    char path[4200];
    for (size_t i = 0; i < sizeof run_markers / sizeof *run_markers; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, run_markers[i]);
        if (fileio_exists(path)) {
            snprintf(err, errlen, "%s is a training run or checkpoint, not an export (it holds %s); a run carries "
                     "optimizer states, settings and local paths\nhint: package it with `quarry export %s --out PKG` and upload PKG",
                     dir, run_markers[i], dir);
            return 1;
        }
    }
    snprintf(path, sizeof path, "%s/quarry-export.json", dir);
    if (!fileio_exists(path)) {
        snprintf(err, errlen, "%s has no quarry-export.json: it is not a package written by `quarry export`\n"
                 "hint: export a run with `quarry export RUN --out PKG`, or add --force to upload it anyway", dir);
        return 1;
    }
    if (check_listed(dir, err, errlen)) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, "\nhint: export again with `quarry export`, or add --force to upload it anyway");
        return 1;
    }
    cmi_report r;
    if (cmi_preflight(dir, &r)) {
        snprintf(err, errlen, "out of memory in preflight");
        return 1;
    }
    int failed = r.failed;
    if (failed) cmi_report_print(&r, dir, stderr);
    cmi_report_free(&r);
    if (failed) {
        snprintf(err, errlen, "%s fails the CMI preflight (see above); Bedrock would not import it\n"
                 "hint: fix it and export again, or add --force to upload it anyway", dir);
        return 1;
    }
    return 0;
}

int cmd_upload(int argc, char **argv) {
    const char *region = NULL, *profile = NULL, *endpoint = NULL;
    long long part_size = 64LL << 20;
    int jobs = 4, quiet = 0, force = 0, accept_leaks = 0;
    const arg_spec specs[] = {
        {"region", ARG_STRING, &region, "R", "AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, ~/.aws/config)"},
        {"profile", ARG_STRING, &profile, "P", "profile in ~/.aws/credentials and ~/.aws/config (default: AWS_PROFILE)"},
        {"endpoint-url", ARG_STRING, &endpoint, "URL", "S3-compatible endpoint, path-style addressing (e.g. http://127.0.0.1:5000); default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's endpoint_url"},
        {"part-size", ARG_BYTES, &part_size, "SIZE", "multipart part size, 5MiB..5GiB (default 64MiB)"},
        {"jobs", ARG_INT, &jobs, "N", "parts uploaded in parallel (default 4)"},
        {"quiet", ARG_FLAG, &quiet, NULL, "no progress display"},
        {"force", ARG_FLAG, &force, NULL,
         "upload DIR even if it is not an export that passes preflight (a run directory, any other directory)"},
        {"accept-leaks", ARG_FLAG, &accept_leaks, NULL, "upload a package whose leak check found secrets or was skipped"},
    };
    const arg_parser p = {
        "upload", "quarry upload DIR s3://bucket/prefix/ [options]",
        "Uploads every file under DIR (a package written by `quarry export` that passes `quarry preflight`; "
        "anything else, a run directory above all, is refused without --force) to S3 under the prefix: one PutObject per small file, "
        "a parallel multipart upload above --part-size, SHA-256 checksums on every request, retries with "
        "backoff. An interrupted upload resumes when the same command is run again. At the end each "
        "object's size and checksum are verified against S3. Credentials: the AWS CLI's chain "
        "(environment, role_arn, web identity, SSO, the profile's keys, credential_process); temporary keys are "
        "refreshed before they expire.",
        specs, (int)(sizeof specs / sizeof specs[0]), 2, 2};
    const char *pos[2];
    int npos = 0;
    int rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;
    if (part_size < S3_MIN_PART_SIZE || part_size > S3_MAX_PART_SIZE) {
        fprintf(stderr, "quarry upload: error: --part-size must be between 5MiB and 5GiB (S3's part limits)\n");
        return 2;
    }
    if (jobs < 1 || jobs > 64) {
        fprintf(stderr, "quarry upload: error: --jobs must be between 1 and 64\n");
        return 2;
    }
    char err[8192];
    char bucket[64], prefix[1024];
    if (s3_parse_uri(pos[1], bucket, sizeof bucket, prefix, sizeof prefix, err, sizeof err)) {
        fprintf(stderr, "quarry upload: error: %s\n", err);
        return 2;
    }
    // The endpoint as the SDKs choose it: the flag, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile.
    const char *origin = endpoint ? "--endpoint-url" : "the endpoint set by AWS_ENDPOINT_URL[_S3] or the profile";
    char ep_buf[2048];
    int ep = aws_endpoint_resolve(endpoint, profile, "S3", "s3", ep_buf, sizeof ep_buf);
    if (ep > 0) endpoint = ep_buf;
    aws_url url;  // a malformed endpoint is a usage error, found before credentials or files
    if (ep < 0 || (endpoint && aws_url_parse(endpoint, &url, err, sizeof err))) {
        fprintf(stderr, "quarry upload: error: %s: %s\nusage: %s\n", origin, ep < 0 ? "too long" : err, p.usage);
        return 2;
    }
    if (endpoint) aws_url_warn_plain(&url, "upload");
    // Before credentials and the network: what would leave the building.
    int src = check_export_dir(pos[0], err, sizeof err);
    if (src == 2 || (src && !force)) {
        fprintf(stderr, "quarry upload: error: %s\n", err);
        return src;
    }
    if (src) {
        char *nl = strchr(err, '\n');   // the reason without its hint
        if (nl) *nl = 0;
        fprintf(stderr, "quarry upload: warning: uploading because of --force: %s\n", err);
    }
    if (leakcheck_package_gate(pos[0], accept_leaks, err, sizeof err)) {
        fprintf(stderr, "quarry upload: error: %s\n", err);
        return 1;
    }
    aws_credentials creds;
    if (aws_credentials_load(&creds, profile, region, err, sizeof err)) {
        fprintf(stderr, "quarry upload: error: %s\n", err);
        return 1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        fprintf(stderr, "quarry upload: error: libcurl failed to initialise\n");
        aws_credentials_free(&creds);
        return 1;
    }
    s3_upload_options o = {.creds = &creds, .region = creds.region, .endpoint_url = endpoint,
                           .part_size = part_size, .jobs = jobs, .quiet = quiet};
    s3_upload_stats st;
    rc = s3_upload_dir(pos[0], pos[1], &o, &st, err, sizeof err);
    if (rc) {
        fprintf(stderr, "quarry upload: error: %s\n", err);
        if (creds.source[0]) fprintf(stderr, "(credentials from %s)\n", creds.source);
    } else {
        printf("uploaded %d file(s), %.1f MB to s3://%s/%s: %d part(s) sent, %d part(s) resumed, %d file(s) "
               "already complete; size and SHA-256 of every object verified\n",
               st.files, (double)st.bytes / 1e6, bucket, prefix, st.parts_sent, st.parts_resumed, st.files_skipped);
    }
    curl_global_cleanup();
    aws_credentials_free(&creds);
    return rc ? 1 : 0;
}
