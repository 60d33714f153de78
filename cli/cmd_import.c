// cli/cmd_import.c — `quarry import`: start a Bedrock Custom Model Import job for an uploaded
// export and, with --wait, follow it to the end (export/bedrock_import.h).
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "args.h"
#include "commands.h"
#include "export/aws_config.h"
#include "export/aws_credentials.h"
#include "export/bedrock_import.h"

#define MAX_LIST 200

// "a,b,c" → items (pointers into a copy kept in *storage). Returns the count, -1 when too many.
static int split_list(const char *s, char **storage, const char **items, int max) {
    *storage = NULL;
    if (!s || !*s) return 0;
    char *copy = strdup(s);
    if (!copy) return -1;
    *storage = copy;
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == max) return -1;
        items[n++] = t;
    }
    return n;
}

// "k=v,k2=v2" → tags. -1 on a tag without '='.
static int split_tags(const char *s, char **storage, bedrock_tag *tags, int max) {
    const char *items[MAX_LIST];
    int n = split_list(s, storage, items, max < MAX_LIST ? max : MAX_LIST);
    for (int i = 0; i < n; i++) {
        char *eq = strchr(items[i], '=');
        if (!eq) return -1;
        *eq = 0;
        tags[i].key = items[i];
        tags[i].value = eq + 1;
    }
    return n;
}

int cmd_import(int argc, char **argv) {
    const char *s3 = NULL, *name = NULL, *role = NULL, *job_name = NULL, *region = NULL, *profile = NULL,
               *endpoint = NULL, *kms = NULL, *token = NULL, *tags_s = NULL, *job_tags_s = NULL, *subnets_s = NULL,
               *sgs_s = NULL;
    int wait = 0, quiet = 0;
    double poll = 30.0;
    const arg_spec specs[] = {
        {"s3", ARG_STRING, &s3, "URI", "where the export was uploaded: s3://bucket/prefix/ (required)"},
        {"name", ARG_STRING, &name, "NAME", "name of the imported model (required)"},
        {"role-arn", ARG_STRING, &role, "ARN", "IAM role Bedrock assumes to read the S3 prefix (required)"},
        {"job-name", ARG_STRING, &job_name, "N", "import job name (default: NAME-import-YYYYMMDD-HHMMSS)"},
        {"region", ARG_STRING, &region, "R", "AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, ~/.aws/config)"},
        {"profile", ARG_STRING, &profile, "P", "profile in ~/.aws/credentials and ~/.aws/config (default: AWS_PROFILE)"},
        {"endpoint-url", ARG_STRING, &endpoint, "URL", "Bedrock endpoint (default: AWS_ENDPOINT_URL_BEDROCK, AWS_ENDPOINT_URL, the profile's endpoint_url, else https://bedrock.REGION.amazonaws.com)"},
        {"wait", ARG_FLAG, &wait, NULL, "poll until the job completes or fails; print the imported model ARN"},
        {"poll-interval", ARG_FLOAT, &poll, "S", "seconds between status polls with --wait (default 30)"},
        {"tags", ARG_STRING, &tags_s, "K=V,...", "tags for the imported model"},
        {"job-tags", ARG_STRING, &job_tags_s, "K=V,...", "tags for the import job"},
        {"kms-key-id", ARG_STRING, &kms, "KEY", "KMS key to encrypt the imported model"},
        {"subnet-ids", ARG_STRING, &subnets_s, "A,B", "VPC subnets for the job (with --security-group-ids)"},
        {"security-group-ids", ARG_STRING, &sgs_s, "A,B", "VPC security groups for the job"},
        {"client-token", ARG_STRING, &token, "T", "idempotency token (default: random; reuse it to retry safely)"},
        {"quiet", ARG_FLAG, &quiet, NULL, "no status lines while waiting"},
    };
    const arg_parser p = {
        "import", "quarry import --s3 s3://bucket/prefix/ --name NAME --role-arn ARN [options]",
        "Starts an Amazon Bedrock Custom Model Import job (CreateModelImportJob) for an export uploaded with "
        "`quarry upload`, prints the job ARN, and with --wait polls GetModelImportJob until the job is "
        "Completed (prints the imported model ARN, exit 0) or Failed (prints the reason, exit 1).",
        specs, (int)(sizeof specs / sizeof specs[0]), 0, 0};
    int npos = 0;
    int rc = args_parse(&p, argc, argv, NULL, &npos);
    if (rc) return rc == 1 ? 0 : rc;
    if (!s3 || !name || !role) {
        fprintf(stderr, "quarry import: error: --s3, --name and --role-arn are required\nusage: %s\n", p.usage);
        return 2;
    }
    if (!(poll >= 0.01 && poll <= 3600)) {
        fprintf(stderr, "quarry import: error: --poll-interval must be between 0.01 and 3600 seconds\n");
        return 2;
    }

    char default_job[64], tok[33];
    if (!job_name) {
        // The job-name pattern has no '_': the model name's underscores become '-'.
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
        snprintf(default_job, sizeof default_job, "%.40s-import-%.15s", name, stamp);
        for (char *c = default_job; *c; c++)
            if (*c == '_') *c = '-';
        job_name = default_job;
    }
    if (!token) {
        if (bedrock_client_token(tok)) {
            fprintf(stderr, "quarry import: error: no randomness for the client token (OpenSSL RAND_bytes failed)\n");
            return 1;
        }
        token = tok;
    }

    char *st1 = NULL, *st2 = NULL, *st3 = NULL, *st4 = NULL;
    bedrock_tag tags[MAX_LIST], job_tags[MAX_LIST];
    const char *subnets[17], *sgs[6];
    bedrock_import_request req = {.job_name = job_name, .model_name = name, .role_arn = role, .s3_uri = s3,
                                  .client_token = token, .kms_key_id = kms, .model_tags = tags, .job_tags = job_tags,
                                  .subnet_ids = subnets, .security_group_ids = sgs};
    req.nmodel_tags = split_tags(tags_s, &st1, tags, MAX_LIST);
    req.njob_tags = split_tags(job_tags_s, &st2, job_tags, MAX_LIST);
    req.nsubnets = split_list(subnets_s, &st3, subnets, 17);
    req.nsecurity_groups = split_list(sgs_s, &st4, sgs, 6);
    char err[4096];
    rc = 0;
    if (req.nmodel_tags < 0 || req.njob_tags < 0) {
        fprintf(stderr, "quarry import: error: tags must be KEY=VALUE pairs separated by commas (at most %d)\n", MAX_LIST);
        rc = 2;
    } else if (req.nsubnets < 0 || req.nsecurity_groups < 0) {
        fprintf(stderr, "quarry import: error: at most 16 subnets and 5 security groups\n");
        rc = 2;
    } else if (bedrock_import_validate(&req, err, sizeof err)) {
        fprintf(stderr, "quarry import: error: %s\n", err);
        rc = 2;
    }
    aws_credentials creds = {0};
    int have_creds = 0;
    if (!rc) {
        if (aws_credentials_load(&creds, profile, region, err, sizeof err)) {
            fprintf(stderr, "quarry import: error: %s\n", err);
            rc = 1;
        } else {
            have_creds = 1;
        }
    }
    // The endpoint as the SDKs choose it: the flag, AWS_ENDPOINT_URL_BEDROCK, AWS_ENDPOINT_URL, the profile.
    char ep_buf[600];
    int ep = rc ? 0 : aws_endpoint_resolve(endpoint, profile, "BEDROCK", "bedrock", ep_buf, sizeof ep_buf);
    if (ep > 0) endpoint = ep_buf;
    if (ep < 0) {
        fprintf(stderr, "quarry import: error: the configured Bedrock endpoint is too long\n");
        rc = 2;
    }
    const char *use_region = have_creds ? creds.region : NULL;
    if (!rc && !use_region && !endpoint) {
        fprintf(stderr, "quarry import: error: no AWS region: pass --region, set AWS_REGION, or set region in ~/.aws/config "
                        "(Custom Model Import runs in us-east-1, us-west-2, eu-central-1, ...)\n");
        rc = 1;
    }
    if (!use_region) use_region = "us-east-1";
    char url_s[600];
    aws_url url;
    if (!rc) {
        if (endpoint) snprintf(url_s, sizeof url_s, "%s", endpoint);
        else snprintf(url_s, sizeof url_s, "https://bedrock.%s.amazonaws.com", use_region);
        if (aws_url_parse(url_s, &url, err, sizeof err)) {
            fprintf(stderr, "quarry import: error: %s\n", err);
            rc = 2;
        } else {
            aws_url_warn_plain(&url, "import");
        }
    }
    if (!rc && curl_global_init(CURL_GLOBAL_DEFAULT)) {
        fprintf(stderr, "quarry import: error: libcurl failed to initialise\n");
        rc = 1;
    }
    if (!rc) {
        sigv4_signer signer = {.access_key = creds.access_key, .secret_key = creds.secret_key,
                               .session_token = creds.session_token, .region = use_region, .service = "bedrock"};
        aws_http *h = aws_http_new(&url, &signer, 5);
        char job_arn[1100];
        if (!h) {
            fprintf(stderr, "quarry import: error: cannot start libcurl\n");
            rc = 1;
        } else if (bedrock_create_import_job(h, &req, job_arn, sizeof job_arn, err, sizeof err)) {
            fprintf(stderr, "quarry import: error: %s\n(credentials from %s)\n", err, creds.source);
            rc = 1;
        } else {
            printf("import job started: %s\n", job_arn);
            fflush(stdout);
            char last[32] = "";
            while (wait) {
                bedrock_job job;
                // A job can run for hours: temporary keys are fetched again 5 minutes before they expire.
                int fresh = aws_credentials_refresh(&creds, 300, err, sizeof err);
                if (fresh > 0) {
                    signer.access_key = creds.access_key;
                    signer.secret_key = creds.secret_key;
                    signer.session_token = creds.session_token;
                }
                if (fresh < 0 || bedrock_get_import_job(h, job_arn, &job, err, sizeof err)) {
                    fprintf(stderr, "quarry import: error: %s\n(the job may still be running: %s)\n", err, job_arn);
                    rc = 1;
                    break;
                }
                if (!quiet && strcmp(last, job.status)) fprintf(stderr, "quarry import: job %s: %s\n", job_name, job.status);
                snprintf(last, sizeof last, "%s", job.status);
                if (!strcmp(job.status, "Completed")) {
                    printf("imported model: %s\n", job.imported_model_arn[0] ? job.imported_model_arn : "(no ARN returned)");
                    break;
                }
                if (!strcmp(job.status, "Failed")) {
                    fprintf(stderr, "quarry import: error: import job %s failed: %s\n", job_name,
                            job.failure_message[0] ? job.failure_message : "(no failure message)");
                    rc = 1;
                    break;
                }
                struct timespec ts = {(time_t)poll, (long)((poll - (double)(time_t)poll) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        aws_http_free(h);
        curl_global_cleanup();
    }
    if (have_creds) aws_credentials_free(&creds);
    free(st1);
    free(st2);
    free(st3);
    free(st4);
    return rc;
}
