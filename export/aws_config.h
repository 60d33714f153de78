// export/aws_config.h — the AWS shared config and credentials files as the AWS CLI reads them:
// where they are (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/), which profile
// (--profile, AWS_PROFILE, "default"), a profile's settings (the credentials file's [NAME] over
// the config file's [profile NAME]), other sections ([sso-session NAME], [services NAME]), and the
// service endpoint the SDKs would use (AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL, the profile's
// services section, the profile's endpoint_url). Values are returned malloc'd; values that may be
// secrets are wiped by the caller (aws_secret_free).
#pragma once
#include <stddef.h>

typedef struct {
    char cred_path[4096], conf_path[4096];
    char profile[256];
    int explicit_profile;   // --profile given: the environment keys are not used
} aws_config;

// Fills paths and the profile name. 0, or -1 when the profile name is too long.
int aws_config_init(aws_config *cfg, const char *profile_flag);

// A value of [section] of the file at path; sub != NULL reads `sub = v` inside the nested
// `key =` block. NULL when absent (or out of memory: *oom is set then, when oom != NULL).
char *aws_ini_get(const char *path, const char *section, const char *key, const char *sub, int *oom);
int aws_ini_has_section(const char *path, const char *section);

// A setting of a profile: the credentials file's [profile], then the config file's [profile P]
// ([default] for "default"). NULL when absent or out of memory (*oom then).
char *aws_profile_get(const aws_config *cfg, const char *profile, const char *key, int *oom);
int aws_profile_exists(const aws_config *cfg, const char *profile);
// A value in the config file's [KIND NAME] section (kind "sso-session", "services").
char *aws_section_get(const aws_config *cfg, const char *kind, const char *name, const char *key,
                      const char *sub, int *oom);

// The endpoint for a service, as the SDKs choose it when no --endpoint-url is given.
// service_env: "S3", "STS", "BEDROCK", "SSO"; service_key: "s3", "sts", "bedrock", "sso".
// Copies it to out and returns 1 when one is configured, 0 when the default AWS endpoint applies,
// -1 when it does not fit. flag (--endpoint-url) wins when given.
int aws_endpoint_resolve(const char *flag, const char *profile_flag, const char *service_env,
                         const char *service_key, char *out, size_t outlen);

void aws_secret_free(char **p);   // wipes and frees a malloc'd string; *p = NULL
