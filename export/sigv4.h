// export/sigv4.h — AWS Signature Version 4 (AWS4-HMAC-SHA256) written with OpenSSL: canonical
// request, string to sign, signing key and the Authorization header. Verified byte for byte
// against the official AWS test suite (tests/aws/test_sigv4.c).
//
// The caller builds the request's headers (Host included), signs, then sends exactly those
// headers: every header in the list is signed, so nothing may be added to the signed set later.
#pragma once
#include <stddef.h>

#define SIGV4_MAX_HEADERS 32

typedef struct {
    char *name;    // as given, e.g. "X-Amz-Date"
    char *value;
} sigv4_header;

typedef struct {
    sigv4_header h[SIGV4_MAX_HEADERS];
    int n;
} sigv4_headers;   // zero-initialise; duplicate names allowed (joined with ',' when signed)

int sigv4_headers_add(sigv4_headers *hs, const char *name, const char *value);  // copies; -1 when full/OOM
const char *sigv4_headers_get(const sigv4_headers *hs, const char *name);        // first match, any case
void sigv4_headers_remove(sigv4_headers *hs, const char *name);                   // every match, any case
void sigv4_headers_free(sigv4_headers *hs);

typedef struct {
    const char *access_key, *secret_key;
    const char *session_token;   // NULL for long-term keys
    const char *region;          // "us-east-1"
    const char *service;         // "s3", "bedrock"
    // S3 rules: the path is signed as sent (URI-encoded once by the caller), no dot-segment
    // normalisation. Other services: the path is normalised and encoded once more.
    int s3;
} sigv4_signer;

typedef struct {
    char *canonical_request, *string_to_sign, *authorization;   // malloc'd
} sigv4_result;

// Signs `method path?query` (query raw, without '?', may be NULL or "") with the headers in hs
// and the payload hash (64 hex chars, or "UNSIGNED-PAYLOAD"). amz_date is "YYYYMMDDTHHMMSSZ";
// an X-Amz-Date already in hs wins. Adds to hs: X-Amz-Date when absent, X-Amz-Security-Token
// when the signer has a token and hs lacks one, and Authorization (replacing an old one).
// out may be NULL. Returns 0, or -1 (malformed input or out of memory; err says which).
int sigv4_sign(const sigv4_signer *s, const char *method, const char *path, const char *query,
               sigv4_headers *hs, const char *payload_hash, const char *amz_date, sigv4_result *out,
               char *err, size_t errlen);
void sigv4_result_free(sigv4_result *r);

// The 32-byte signing key HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request").
int sigv4_signing_key(const char *secret, const char *date8, const char *region, const char *service,
                      unsigned char key[32]);

void sigv4_sha256_hex(const void *data, size_t n, char out[65]);
void sigv4_hex(const unsigned char *bytes, size_t n, char *out);   // out: 2n+1 chars

// The current UTC time as "YYYYMMDDTHHMMSSZ". QUARRY_TEST_FIXED_TIME (same format) replaces the
// clock; it exists only so tests can compare signatures with botocore's.
void sigv4_amz_date(char out[17]);

// AWS URI encoding: A-Z a-z 0-9 - . _ ~ kept, '/' kept when keep_slash, every other byte %XX
// (upper-case hex). Returns a malloc'd string or NULL.
char *sigv4_uri_encode(const char *s, size_t n, int keep_slash);
