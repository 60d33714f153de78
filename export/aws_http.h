// export/aws_http.h — signed AWS requests over libcurl (HTTP only: signing is ours, sigv4.h),
// with retries: exponential backoff with full jitter on dropped connections, timeouts, 5xx and
// throttling. One aws_http per thread (it owns a curl handle and reuses its connection).
// curl_global_init must have been called once before any thread makes one.
#pragma once
#include <stddef.h>
#include "export/sigv4.h"

typedef struct {
    char base[512];   // scheme://host[:port], no trailing slash
    char host[300];   // host[:port] as sent in the Host header
} aws_url;

// "https://s3.us-east-1.amazonaws.com" or "http://127.0.0.1:5000/" → aws_url. A path other than
// "/" is refused. 0, or -1 with err.
int aws_url_parse(const char *url, aws_url *out, char *err, size_t errlen);
// Warns on stderr that a plain http:// endpoint carries credentials and data in clear.
void aws_url_warn_plain(const aws_url *u, const char *command);

typedef struct {
    long status;          // HTTP status, 0 when no response came back
    char *body;           // NUL-terminated (malloc'd), body_len bytes
    size_t body_len;
    char *headers;        // raw response headers of the last attempt
    char code[128];       // error code from an XML <Code>, JSON "__type"/"code" or x-amzn-ErrorType
    char message[1024];   // error message from the body, or curl's error text when status is 0
    int attempts;
} aws_response;

void aws_response_free(aws_response *r);
// The value of a response header (case-insensitive name) copied into out; 0 found, -1 not.
int aws_response_header(const aws_response *r, const char *name, char *out, size_t outlen);

typedef struct aws_http aws_http;

// signer: credentials, region, service (copied by pointer: must outlive the client). A signer
// whose access_key is NULL sends requests unsigned (calls authenticated by a token instead).
aws_http *aws_http_new(const aws_url *url, const sigv4_signer *signer, int max_attempts);
void aws_http_free(aws_http *h);

// Sends method url.base+path?query with the given extra headers (signed with Host and
// X-Amz-Date) and body. payload_hash: hex SHA-256 of the body; NULL computes it. Retries
// transient failures. Returns 0 when an HTTP response came back (any status: check r->status),
// -1 when none did after every attempt (r->message says why).
int aws_http_request(aws_http *h, const char *method, const char *path, const char *query,
                     const sigv4_headers *extra, const void *body, size_t body_len,
                     const char *payload_hash, aws_response *r);

// 1 for statuses/codes worth retrying (429, 500, 502, 503, 504, SlowDown, Throttling…).
int aws_http_retryable(long status, const char *code);

// Copies the text between <tag> and </tag> (first occurrence) into out; out is left as it was
// when the tag is absent.
void aws_xml_tag(const char *xml, const char *tag, char *out, size_t outlen);
