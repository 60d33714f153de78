// export/aws_sts.h — temporary credentials from AWS STS (query API, version 2011-06-15):
// AssumeRole, signed with the source credentials (sigv4), and AssumeRoleWithWebIdentity, sent
// unsigned with the OIDC token. The endpoint: AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL / the
// profile's settings, else https://sts.REGION.amazonaws.com (sts.amazonaws.com without a region).
#pragma once
#include <stddef.h>
#include <time.h>

typedef struct {
    char *access_key, *secret_key, *session_token;
    time_t expiration;
} aws_temp_keys;

typedef struct {
    const char *role_arn, *session_name;
    const char *external_id;     // AssumeRole only; NULL for none
    int duration_seconds;        // 0: STS's default
    const char *region;          // NULL: the global endpoint
    const char *profile_flag;    // for the endpoint settings
} aws_sts_request;

// AssumeRole signed with the given keys (token may be NULL). 0, or -1 with err.
int aws_sts_assume_role(const aws_sts_request *q, const char *access_key, const char *secret_key,
                        const char *token, aws_temp_keys *out, char *err, size_t errlen);
// AssumeRoleWithWebIdentity with the token read from token_file. 0, or -1 with err.
int aws_sts_assume_role_web_identity(const aws_sts_request *q, const char *token_file, aws_temp_keys *out,
                                     char *err, size_t errlen);
void aws_temp_keys_free(aws_temp_keys *k);

// "2026-12-06T01:02:03Z" / "...03.123+00:00" → seconds since the epoch; -1 when malformed (the
// expirations every temporary-credential source reports).
time_t aws_parse_time(const char *iso8601);
