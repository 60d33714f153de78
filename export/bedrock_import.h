// export/bedrock_import.h — Amazon Bedrock Custom Model Import: CreateModelImportJob
// (POST /model-import-jobs) and GetModelImportJob (GET /model-import-jobs/{jobIdentifier}) on
// bedrock.REGION.amazonaws.com, signed with SigV4 for the service "bedrock". Every name is checked
// against the API's documented pattern and length before anything is sent.
#pragma once
#include <stddef.h>
#include "export/aws_http.h"

typedef struct {
    const char *key, *value;
} bedrock_tag;

typedef struct {
    const char *job_name;             // [a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*, 1..63
    const char *model_name;           // ([0-9a-zA-Z][_-]?)+, 1..63
    const char *role_arn;             // arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+
    const char *s3_uri;               // s3://bucket/prefix/
    const bedrock_tag *job_tags;      // optional (jobTags)
    int njob_tags;
    const bedrock_tag *model_tags;    // optional (importedModelTags)
    int nmodel_tags;
    const char *client_token;         // idempotency token; required here (the caller makes one)
    const char *const *subnet_ids;    // vpcConfig, optional: both lists or neither
    int nsubnets;
    const char *const *security_group_ids;
    int nsecurity_groups;
    const char *kms_key_id;           // importedModelKmsKeyId, optional
} bedrock_import_request;

// 0, or -1 with err naming the field, the value, the rule and the fix.
int bedrock_import_validate(const bedrock_import_request *r, char *err, size_t errlen);

// The request body exactly as botocore serialises it (members in the API model's order, Python
// json.dumps spacing and escaping), so requests can be compared byte for byte. malloc'd.
char *bedrock_import_body(const bedrock_import_request *r);

// A fresh random idempotency token (32 hex digits) into out[33].
int bedrock_client_token(char out[33]);

typedef struct {
    char status[32];                  // "InProgress", "Completed", "Failed"
    char job_arn[1100];
    char imported_model_arn[1100];
    char failure_message[2100];
} bedrock_job;

// CreateModelImportJob; job_arn receives the new job's ARN. 0, or -1 with err (explained).
int bedrock_create_import_job(aws_http *h, const bedrock_import_request *r, char *job_arn, size_t arnlen,
                              char *err, size_t errlen);
// GetModelImportJob for a job ARN or name. 0, or -1 with err.
int bedrock_get_import_job(aws_http *h, const char *job_id, bedrock_job *out, char *err, size_t errlen);
