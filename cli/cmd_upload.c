// cli/cmd_upload.c — `quarry upload DIR s3://bucket/prefix/`: send an export to S3 (export/s3.h).
#include <curl/curl.h>
#include <stdio.h>
#include "args.h"
#include "commands.h"
#include "export/aws_credentials.h"
#include "export/aws_http.h"
#include "export/s3.h"

int cmd_upload(int argc, char **argv) {
    const char *region = NULL, *profile = NULL, *endpoint = NULL;
    long long part_size = 64LL << 20;
    int jobs = 4, quiet = 0;
    const arg_spec specs[] = {
        {"region", ARG_STRING, &region, "R", "AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, ~/.aws/config)"},
        {"profile", ARG_STRING, &profile, "P", "profile in ~/.aws/credentials and ~/.aws/config (default: AWS_PROFILE)"},
        {"endpoint-url", ARG_STRING, &endpoint, "URL", "S3-compatible endpoint, path-style addressing (e.g. http://127.0.0.1:5000)"},
        {"part-size", ARG_BYTES, &part_size, "SIZE", "multipart part size, 5MiB..5GiB (default 64MiB)"},
        {"jobs", ARG_INT, &jobs, "N", "parts uploaded in parallel (default 4)"},
        {"quiet", ARG_FLAG, &quiet, NULL, "no progress display"},
    };
    const arg_parser p = {
        "upload", "quarry upload DIR s3://bucket/prefix/ [options]",
        "Uploads every file under DIR (an export) to S3 under the prefix: one PutObject per small file, "
        "a parallel multipart upload above --part-size, SHA-256 checksums on every request, retries with "
        "backoff. An interrupted upload resumes when the same command is run again. At the end each "
        "object's size and checksum are verified against S3. Credentials: AWS_ACCESS_KEY_ID/"
        "AWS_SECRET_ACCESS_KEY[/AWS_SESSION_TOKEN] or a profile in ~/.aws/credentials.",
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
    char err[4096];
    char bucket[64], prefix[1024];
    if (s3_parse_uri(pos[1], bucket, sizeof bucket, prefix, sizeof prefix, err, sizeof err)) {
        fprintf(stderr, "quarry upload: error: %s\n", err);
        return 2;
    }
    aws_url url;  // a malformed --endpoint-url is a usage error, found before credentials or files
    if (endpoint && aws_url_parse(endpoint, &url, err, sizeof err)) {
        fprintf(stderr, "quarry upload: error: --endpoint-url: %s\nusage: %s\n", err, p.usage);
        return 2;
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
