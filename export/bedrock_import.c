// export/bedrock_import.c — see bedrock_import.h. Patterns and lengths from the Bedrock API
// reference (docs.aws.amazon.com/bedrock/latest/APIReference/API_CreateModelImportJob.html and
// API_GetModelImportJob.html; the same as botocore's bedrock service model).
#include "bedrock_import.h"
#include "../data/strbuf.h"
#include <cjson/cJSON.h>
#include <oniguruma.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOB_NAME_RE "[a-zA-Z0-9](-*[a-zA-Z0-9\\+\\-\\.])*"
#define MODEL_NAME_RE "([0-9a-zA-Z][_-]?)+"
#define ROLE_ARN_RE "arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+"
#define S3_URI_RE "s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?"
#define TAG_RE "[a-zA-Z0-9\\s._:/=+@-]*"
#define TOKEN_RE "[a-zA-Z0-9]([-a-zA-Z0-9]{0,254}[a-zA-Z0-9])?"
#define KMS_RE "(arn:aws(-[^:]+)?:kms:[a-zA-Z0-9-]*:[0-9]{12}:((key/[a-zA-Z0-9-]{36})|(alias/[a-zA-Z0-9-_/]+)))|([a-zA-Z0-9-]{36})|(alias/[a-zA-Z0-9-_/]+)"
#define JOB_ID_RE "(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-import-job/[a-z0-9]{12})|([a-zA-Z0-9](-*[a-zA-Z0-9\\+\\-\\.])*)"

// 1 when the whole of s matches pattern (the API's patterns are anchored), 0 when not, -1 on error.
static int full_match(const char *pattern, const char *s) {
    char anchored[1024];
    snprintf(anchored, sizeof anchored, "\\A(?:%s)\\z", pattern);
    regex_t *re = NULL;
    OnigErrorInfo einfo;
    OnigEncoding enc = ONIG_ENCODING_UTF8;
    if (onig_initialize(&enc, 1) != ONIG_NORMAL) return -1;
    const UChar *p = (const UChar *)anchored;
    if (onig_new(&re, p, p + strlen(anchored), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &einfo) != ONIG_NORMAL)
        return -1;
    const UChar *str = (const UChar *)s, *end = str + strlen(s);
    OnigRegion *region = onig_region_new();
    int r = region ? onig_search(re, str, end, str, end, region, ONIG_OPTION_NONE) : -1;
    onig_region_free(region, 1);
    onig_free(re);
    return r >= 0 ? 1 : r == ONIG_MISMATCH ? 0 : -1;
}

static int check_field(const char *field, const char *value, const char *pattern, size_t minlen, size_t maxlen,
                       const char *hint, char *err, size_t errlen) {
    size_t n = value ? strlen(value) : 0;
    if (!value || n < minlen) {
        snprintf(err, errlen, "%s is missing%s%s", field, *hint ? "; " : "", hint);
        return -1;
    }
    if (n > maxlen) {
        snprintf(err, errlen, "%s '%.80s...' is %zu characters; the limit is %zu", field, value, n, maxlen);
        return -1;
    }
    int m = full_match(pattern, value);
    if (m < 0) {
        snprintf(err, errlen, "internal error: cannot compile the pattern for %s", field);
        return -1;
    }
    if (!m) {
        snprintf(err, errlen, "%s '%s' does not match the pattern the Bedrock API requires: %s%s%s", field, value,
                 pattern, *hint ? "\nhint: " : "", hint);
        return -1;
    }
    return 0;
}

static int check_tags(const char *field, const bedrock_tag *t, int n, char *err, size_t errlen) {
    if (n > 200) {
        snprintf(err, errlen, "%s: %d tags; the limit is 200", field, n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char f[64];
        snprintf(f, sizeof f, "%s key", field);
        if (check_field(f, t[i].key, TAG_RE, 1, 128, "", err, errlen)) return -1;
        snprintf(f, sizeof f, "%s value", field);
        if (check_field(f, t[i].value, TAG_RE, 0, 256, "", err, errlen)) return -1;
    }
    return 0;
}

int bedrock_import_validate(const bedrock_import_request *r, char *err, size_t errlen) {
    if (check_field("--name", r->model_name, MODEL_NAME_RE, 1, 63,
                    "letters and digits, single '_' or '-' between them (e.g. my-llama-3-ft)", err, errlen) ||
        check_field("--job-name", r->job_name, JOB_NAME_RE, 1, 63,
                    "letters, digits, '+', '-', '.', starting with a letter or digit (no '_')", err, errlen) ||
        check_field("--role-arn", r->role_arn, ROLE_ARN_RE, 1, 2048,
                    "an IAM role ARN such as arn:aws:iam::123456789012:role/BedrockImport", err, errlen) ||
        check_field("--s3", r->s3_uri, S3_URI_RE, 1, 1024,
                    "s3://bucket/prefix/ with a lower-case bucket; key characters limited to A-Z a-z 0-9 - ! _ * ' ( ) .",
                    err, errlen) ||
        check_field("client request token", r->client_token, TOKEN_RE, 1, 256, "", err, errlen) ||
        check_tags("job tag", r->job_tags, r->njob_tags, err, errlen) ||
        check_tags("model tag", r->model_tags, r->nmodel_tags, err, errlen))
        return -1;
    if (r->kms_key_id && check_field("--kms-key-id", r->kms_key_id, KMS_RE, 1, 2048,
                                     "a KMS key ARN, key id or alias/NAME", err, errlen))
        return -1;
    if ((r->nsubnets > 0) != (r->nsecurity_groups > 0)) {
        snprintf(err, errlen, "a VPC configuration needs both --subnet-ids and --security-group-ids");
        return -1;
    }
    if (r->nsubnets > 16 || r->nsecurity_groups > 5) {
        snprintf(err, errlen, "a VPC configuration allows at most 16 subnets and 5 security groups");
        return -1;
    }
    return 0;
}


// A JSON string as Python's json.dumps writes it (ensure_ascii): \" \\ \n \r \t \b \f, other
// control characters and all non-ASCII as \uXXXX (UTF-16, surrogate pairs above U+FFFF).
static void put_json_string(strbuf *b, const char *s) {
    strbuf_puts(b, "\"");
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        char esc[16];
        if (c == '"') { strbuf_puts(b, "\\\""); p++; continue; }
        if (c == '\\') { strbuf_puts(b, "\\\\"); p++; continue; }
        if (c == '\n') { strbuf_puts(b, "\\n"); p++; continue; }
        if (c == '\r') { strbuf_puts(b, "\\r"); p++; continue; }
        if (c == '\t') { strbuf_puts(b, "\\t"); p++; continue; }
        if (c == '\b') { strbuf_puts(b, "\\b"); p++; continue; }
        if (c == '\f') { strbuf_puts(b, "\\f"); p++; continue; }
        if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            strbuf_puts(b, esc);
            p++;
            continue;
        }
        if (c < 0x80) { strbuf_put(b, (const char *)p, 1); p++; continue; }
        // UTF-8 → code point (invalid bytes become U+FFFD, as Python would refuse them anyway).
        unsigned cp = 0xfffd;
        int n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        int ok = n > 1;
        for (int i = 1; i < n && ok; i++) ok = (p[i] & 0xc0) == 0x80;
        if (ok) {
            cp = c & (0xff >> (n + 1));
            for (int i = 1; i < n; i++) cp = (cp << 6) | (p[i] & 0x3f);
        } else {
            n = 1;
        }
        if (cp >= 0x10000) {
            cp -= 0x10000;
            snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
        } else {
            snprintf(esc, sizeof esc, "\\u%04x", cp);
        }
        strbuf_puts(b, esc);
        p += n;
    }
    strbuf_puts(b, "\"");
}

static void put_member(strbuf *b, int *first, const char *name) {
    if (!*first) strbuf_puts(b, ", ");
    *first = 0;
    put_json_string(b, name);
    strbuf_puts(b, ": ");
}

static void put_tags(strbuf *b, const bedrock_tag *t, int n) {
    strbuf_puts(b, "[");
    for (int i = 0; i < n; i++) {
        if (i) strbuf_puts(b, ", ");
        strbuf_puts(b, "{\"key\": ");
        put_json_string(b, t[i].key);
        strbuf_puts(b, ", \"value\": ");
        put_json_string(b, t[i].value);
        strbuf_puts(b, "}");
    }
    strbuf_puts(b, "]");
}

static void put_strings(strbuf *b, const char *const *v, int n) {
    strbuf_puts(b, "[");
    for (int i = 0; i < n; i++) {
        if (i) strbuf_puts(b, ", ");
        put_json_string(b, v[i]);
    }
    strbuf_puts(b, "]");
}

char *bedrock_import_body(const bedrock_import_request *r) {
    strbuf b = {0};
    int first = 1;
    strbuf_puts(&b, "{");
    put_member(&b, &first, "jobName");
    put_json_string(&b, r->job_name);
    put_member(&b, &first, "importedModelName");
    put_json_string(&b, r->model_name);
    put_member(&b, &first, "roleArn");
    put_json_string(&b, r->role_arn);
    put_member(&b, &first, "modelDataSource");
    strbuf_puts(&b, "{\"s3DataSource\": {\"s3Uri\": ");
    put_json_string(&b, r->s3_uri);
    strbuf_puts(&b, "}}");
    if (r->njob_tags) {
        put_member(&b, &first, "jobTags");
        put_tags(&b, r->job_tags, r->njob_tags);
    }
    if (r->nmodel_tags) {
        put_member(&b, &first, "importedModelTags");
        put_tags(&b, r->model_tags, r->nmodel_tags);
    }
    if (r->client_token) {
        put_member(&b, &first, "clientRequestToken");
        put_json_string(&b, r->client_token);
    }
    if (r->nsubnets || r->nsecurity_groups) {
        put_member(&b, &first, "vpcConfig");
        strbuf_puts(&b, "{\"subnetIds\": ");
        put_strings(&b, r->subnet_ids, r->nsubnets);
        strbuf_puts(&b, ", \"securityGroupIds\": ");
        put_strings(&b, r->security_group_ids, r->nsecurity_groups);
        strbuf_puts(&b, "}");
    }
    if (r->kms_key_id) {
        put_member(&b, &first, "importedModelKmsKeyId");
        put_json_string(&b, r->kms_key_id);
    }
    strbuf_puts(&b, "}");
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

int bedrock_client_token(char out[33]) {
    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof rnd) != 1) return -1;
    sigv4_hex(rnd, sizeof rnd, out);
    return 0;
}

static void explain(const char *op, const aws_response *r, char *err, size_t errlen) {
    if (!r->status) {
        snprintf(err, errlen, "%s: no response after %d attempts: %s\nhint: check the network, --region and --endpoint-url",
                 op, r->attempts, r->message);
        return;
    }
    const char *c = r->code, *hint = "";
    if (!strcmp(c, "InvalidSignatureException") || !strcmp(c, "SignatureDoesNotMatch"))
        hint = "the secret access key is wrong for this access key id (AWS computed a different signature); "
               "check AWS_SECRET_ACCESS_KEY or aws_secret_access_key in the profile";
    else if (!strcmp(c, "UnrecognizedClientException") || !strcmp(c, "InvalidAccessKeyId"))
        hint = "the access key id is not known to AWS; check AWS_ACCESS_KEY_ID or the profile's aws_access_key_id";
    else if (!strcmp(c, "ExpiredTokenException") || !strcmp(c, "ExpiredToken"))
        hint = "the session token has expired; get fresh temporary credentials";
    else if (!strcmp(c, "AccessDeniedException"))
        hint = "the caller needs bedrock:CreateModelImportJob and bedrock:GetModelImportJob, plus iam:PassRole on "
               "--role-arn; the role itself must trust bedrock.amazonaws.com and may read the S3 prefix";
    else if (!strcmp(c, "ValidationException"))
        hint = "Bedrock rejected a parameter (see the message); check --s3 points at the exported files";
    else if (!strcmp(c, "ConflictException"))
        hint = "a job or model with this name exists already; choose another --job-name / --name";
    else if (!strcmp(c, "ServiceQuotaExceededException"))
        hint = "the account's quota for imported models or import jobs is used up; delete old ones or ask AWS for more";
    else if (!strcmp(c, "ResourceNotFoundException"))
        hint = "no such import job in this account and region";
    else if (aws_http_retryable(r->status, c))
        hint = "Bedrock kept failing or throttling after retries; try again later";
    snprintf(err, errlen, "%s failed: HTTP %ld %s%s%s%s%s", op, r->status, c, r->message[0] ? ": " : "", r->message,
             *hint ? "\nhint: " : "", hint);
}

int bedrock_create_import_job(aws_http *h, const bedrock_import_request *r, char *job_arn, size_t arnlen,
                              char *err, size_t errlen) {
    if (bedrock_import_validate(r, err, errlen)) return -1;
    char *body = bedrock_import_body(r);
    if (!body) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    sigv4_headers hs = {0};
    aws_response resp;
    int rc = -1;
    if (sigv4_headers_add(&hs, "Content-Type", "application/json")) {
        snprintf(err, errlen, "out of memory");
    } else if (aws_http_request(h, "POST", "/model-import-jobs", NULL, &hs, body, strlen(body), NULL, &resp) ||
               (resp.status != 201 && resp.status != 200)) {
        explain("CreateModelImportJob", &resp, err, errlen);
        aws_response_free(&resp);
    } else {
        cJSON *j = cJSON_Parse(resp.body);
        const cJSON *arn = cJSON_GetObjectItem(j, "jobArn");
        if (cJSON_IsString(arn)) {
            snprintf(job_arn, arnlen, "%s", arn->valuestring);
            rc = 0;
        } else {
            snprintf(err, errlen, "CreateModelImportJob: the answer has no jobArn: %.200s", resp.body);
        }
        cJSON_Delete(j);
        aws_response_free(&resp);
    }
    sigv4_headers_free(&hs);
    free(body);
    return rc;
}

static void copy_str(const cJSON *j, const char *name, char *out, size_t outlen) {
    const cJSON *v = cJSON_GetObjectItem(j, name);
    out[0] = 0;
    if (cJSON_IsString(v)) snprintf(out, outlen, "%s", v->valuestring);
}

int bedrock_get_import_job(aws_http *h, const char *job_id, bedrock_job *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (check_field("job identifier", job_id, JOB_ID_RE, 1, 1011, "", err, errlen)) return -1;
    // The identifier is one path segment: ':' and '/' of the ARN are percent-encoded.
    char *enc = sigv4_uri_encode(job_id, strlen(job_id), 0);
    char path[4096];
    if (!enc) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(path, sizeof path, "/model-import-jobs/%s", enc);
    free(enc);
    aws_response resp;
    if (aws_http_request(h, "GET", path, NULL, NULL, NULL, 0, NULL, &resp) || resp.status != 200) {
        explain("GetModelImportJob", &resp, err, errlen);
        aws_response_free(&resp);
        return -1;
    }
    cJSON *j = cJSON_Parse(resp.body);
    aws_response_free(&resp);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(err, errlen, "GetModelImportJob: the answer is not JSON");
        return -1;
    }
    copy_str(j, "status", out->status, sizeof out->status);
    copy_str(j, "jobArn", out->job_arn, sizeof out->job_arn);
    copy_str(j, "importedModelArn", out->imported_model_arn, sizeof out->imported_model_arn);
    copy_str(j, "failureMessage", out->failure_message, sizeof out->failure_message);
    cJSON_Delete(j);
    if (!out->status[0]) {
        snprintf(err, errlen, "GetModelImportJob: the answer has no status");
        return -1;
    }
    return 0;
}
