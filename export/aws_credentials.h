// export/aws_credentials.h — AWS credentials and region from the standard chain, like the AWS
// CLI: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, then the profile's keys in
// ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE), then in ~/.aws/config (AWS_CONFIG_FILE).
// The profile is --profile, else AWS_PROFILE, else "default"; an explicit --profile skips the
// environment keys (as the AWS CLI does). Region: the flag, AWS_REGION, AWS_DEFAULT_REGION, then
// the profile's `region` in the config file. Secrets are never printed or written anywhere.
#pragma once
#include <stddef.h>

typedef struct {
    char *access_key, *secret_key;
    char *session_token;   // NULL for long-term keys
    char *region;          // NULL when none was found
    char source[4200];     // where the keys came from, e.g. "profile dev in /home/u/.aws/credentials"
} aws_credentials;

// Returns 0 with keys (and the region when found), or -1 with err saying how to provide them.
int aws_credentials_load(aws_credentials *c, const char *profile_flag, const char *region_flag,
                         char *err, size_t errlen);
void aws_credentials_free(aws_credentials *c);   // wipes the secrets before freeing
