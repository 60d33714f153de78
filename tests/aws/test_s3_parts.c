// tests/aws/test_s3_parts.c — part sizes respect S3's limits (≥ 5 MiB, ≤ 10,000 parts, ≤ 5 GiB a
// part, ≤ 5 TiB an object) and s3:// URIs parse or are refused with a reason.
#include "export/s3.h"
#include "test.h"

static void check_parts(long long size, long long requested) {
    long long ps = s3_choose_part_size(size, requested);
    long long parts = ps > 0 ? (size + ps - 1) / ps : -1;
    CHECK(ps >= requested && ps >= S3_MIN_PART_SIZE && ps <= S3_MAX_PART_SIZE && parts <= S3_MAX_PARTS,
          "size %lld requested %lld: part size %lld gives %lld parts", size, requested, ps, parts);
    if (parts <= S3_MAX_PARTS && (size + requested - 1) / requested <= S3_MAX_PARTS)
        CHECK(ps == requested, "size %lld: the requested part size %lld is kept, got %lld", size, requested, ps);
}

int main(void) {
    const long long MiB = 1LL << 20, GiB = 1LL << 30;
    check_parts(1, 5 * MiB);
    check_parts(64 * MiB * 10000, 64 * MiB);         // exactly 10,000 parts
    check_parts(64 * MiB * 10000 + 1, 64 * MiB);     // one byte more: grows
    check_parts(140 * GiB, 5 * MiB);                 // a 70B bf16 checkpoint with small parts
    check_parts(S3_MAX_OBJECT_SIZE, 64 * MiB);
    CHECK(s3_choose_part_size(S3_MAX_OBJECT_SIZE + 1, 64 * MiB) == -1, "over 5 TiB is refused");
    long long ps = s3_choose_part_size(64 * MiB * 10000 + 1, 64 * MiB);
    CHECK(ps % MiB == 0, "a grown part size is whole MiB: %lld", ps);

    char b[64], p[1024], err[512];
    CHECK(!s3_parse_uri("s3://my-bucket/exports/run1", b, sizeof b, p, sizeof p, err, sizeof err) &&
              !strcmp(b, "my-bucket") && !strcmp(p, "exports/run1/"), "prefix gets a trailing slash: %s %s", b, p);
    CHECK(!s3_parse_uri("s3://my.bucket", b, sizeof b, p, sizeof p, err, sizeof err) && !strcmp(p, ""), "no prefix");
    CHECK(!s3_parse_uri("s3://bkt/a/", b, sizeof b, p, sizeof p, err, sizeof err) && !strcmp(p, "a/"), "a/");
    const char *bad[] = {"https://bkt/a/", "s3://", "s3://ab/x", "s3://Bucket/x", "s3://-bkt/x", "s3://bkt_1/x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(s3_parse_uri(bad[i], b, sizeof b, p, sizeof p, err, sizeof err) == -1 && err[0], "%s refused", bad[i]);
    return test_finish("test_s3_parts");
}
