// export/aws_credentials.h — AWS credentials and region from the chain botocore (hence the AWS
// CLI and the SDKs) walks, in its order:
//   1. environment: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN (skipped when
//      --profile is given, as the CLI does);
//   2. the profile's role_arn with source_profile or credential_source = Environment: STS
//      AssumeRole (role_session_name, external_id, duration_seconds; mfa_serial is refused);
//   3. web identity: the profile's web_identity_token_file + role_arn, or AWS_WEB_IDENTITY_TOKEN_FILE
//      + AWS_ROLE_ARN (+ AWS_ROLE_SESSION_NAME): STS AssumeRoleWithWebIdentity;
//   4. SSO: sso_session (or the legacy sso_start_url/sso_region) + sso_account_id + sso_role_name,
//      with the token `aws sso login` cached in ~/.aws/sso/cache: the portal's GetRoleCredentials;
//   5. static keys in the credentials file (AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials);
//   6. credential_process (e.g. IAM Roles Anywhere's aws_signing_helper), run without a shell;
//   7. static keys in the config file (AWS_CONFIG_FILE, ~/.aws/config).
// The profile is --profile, else AWS_PROFILE, else "default". Region: the flag, AWS_REGION,
// AWS_DEFAULT_REGION, then the profile's `region`. STS and the SSO portal are reached at the
// endpoint the SDKs would use (AWS_ENDPOINT_URL_STS / _SSO, AWS_ENDPOINT_URL, the profile's
// endpoint settings). Secrets are never printed or written anywhere, and wiped when freed.
#pragma once
#include <stddef.h>
#include <time.h>

typedef struct {
    char *access_key, *secret_key;
    char *session_token;   // NULL for long-term keys
    char *region;          // NULL when none was found
    time_t expiration;     // 0 for long-term keys; else when temporary keys stop working
    const char *method;    // botocore's name for the source: "env", "assume-role", "sso", ...
    char source[4200];     // where the keys came from, e.g. "profile dev in /home/u/.aws/credentials"
    // What a refresh needs: the profile flag, and secrets replaced by a refresh, kept (wiped at
    // free) because another thread may still be signing with them.
    char *profile_flag;
    char **retired;
    int n_retired;
} aws_credentials;

// Returns 0 with keys (and the region when found), or -1 with err saying how to provide them.
int aws_credentials_load(aws_credentials *c, const char *profile_flag, const char *region_flag,
                         char *err, size_t errlen);
// Temporary keys expiring within margin_s seconds are fetched again from the same chain. The old
// strings stay valid until aws_credentials_free. Returns 1 refreshed, 0 nothing to do, -1 with err.
int aws_credentials_refresh(aws_credentials *c, int margin_s, char *err, size_t errlen);
void aws_credentials_free(aws_credentials *c);   // wipes the secrets before freeing

