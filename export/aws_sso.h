// export/aws_sso.h — IAM Identity Center (SSO) credentials as botocore gets them: the profile's
// sso_session ([sso-session NAME]: sso_start_url, sso_region) or legacy sso_start_url/sso_region,
// with sso_account_id and sso_role_name; the access token that `aws sso login` cached in
// ~/.aws/sso/cache/SHA1(session name, or the start URL for legacy profiles).json; then the portal's
// GetRoleCredentials (https://portal.sso.REGION.amazonaws.com, or AWS_ENDPOINT_URL_SSO...).
#pragma once
#include <stddef.h>
#include "export/aws_config.h"
#include "export/aws_sts.h"

// 1 when the profile has SSO settings, else 0.
int aws_sso_configured(const aws_config *cfg, const char *profile);
// 0 with the role's temporary keys, or -1 with err (an expired token says to run aws sso login).
int aws_sso_get_credentials(const aws_config *cfg, const char *profile, aws_temp_keys *out, char *err, size_t errlen);
