// export/s3.h — upload a directory to S3 with our own SigV4 signing over libcurl.
//
// Each regular file under DIR becomes the object PREFIX + its relative path. Files up to the part
// size go up in one PutObject; larger ones in a multipart upload whose parts (≥ 5 MiB, ≤ 10,000)
// are sent by `jobs` threads, each with its own curl handle. Every request carries
// x-amz-content-sha256 and x-amz-checksum-sha256 (S3 checks the bytes it received); transient
// failures (5xx, throttling, timeouts, dropped connections) are retried with exponential backoff
// and full jitter. A journal (JSON, under $XDG_CACHE_HOME or ~/.cache/quarry/uploads/, keyed by
// source and destination) records open multipart uploads, so a rerun after an interruption asks
// S3 which parts it holds (ListParts) and sends only the rest. A fatal error aborts the multipart
// upload it belongs to. At the end every object's size and SHA-256 checksum are read back with
// HeadObject (checksum mode) and compared.
#pragma once
#include <stddef.h>
#include "export/aws_credentials.h"

#define S3_MIN_PART_SIZE (5LL * 1024 * 1024)
#define S3_MAX_PART_SIZE (5LL * 1024 * 1024 * 1024)
#define S3_MAX_PARTS 10000
#define S3_MAX_OBJECT_SIZE (5LL * 1024 * 1024 * 1024 * 1024)

// The part size for a file: the requested one, grown (to a whole MiB) when the file would need
// more than 10,000 parts. -1 when the file is larger than an S3 object may be (5 TiB).
long long s3_choose_part_size(long long file_size, long long part_size);

typedef struct {
    aws_credentials *creds;      // temporary keys are refreshed in place before they expire
    const char *region;          // signing region; required without endpoint_url
    const char *endpoint_url;    // e.g. "http://127.0.0.1:5000": path-style addressing; NULL for AWS
    long long part_size;         // bytes, ≥ S3_MIN_PART_SIZE
    int jobs;                    // parallel part uploads, ≥ 1
    int quiet;                   // no progress display
} s3_upload_options;

typedef struct {
    int files, files_skipped;      // skipped: completed in an earlier run (journal) and verified now
    long long bytes;               // total size of the files
    long long bytes_sent;          // bytes sent in this run (parts and objects)
    int parts_sent, parts_resumed; // multipart parts sent now / found in S3 from an earlier run
} s3_upload_stats;

// "s3://bucket/prefix/" → bucket and prefix ("" or ending in '/'). 0, or -1 with err.
int s3_parse_uri(const char *uri, char *bucket, size_t bucketlen, char *prefix, size_t prefixlen,
                 char *err, size_t errlen);

// Uploads every file under dir to s3_uri. Returns 0, or 1 with err holding a message for the user
// (what failed, why, and what to do).
int s3_upload_dir(const char *dir, const char *s3_uri, const s3_upload_options *o, s3_upload_stats *stats,
                  char *err, size_t errlen);
