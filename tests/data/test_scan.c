// data/scan: each kind found in a realistic sentence at the right place, near-misses not found,
// Luhn and IBAN checks on published examples, masks never show the value.
#include "test.h"
#include "data/scan.h"

typedef struct {
    scan_hit hits[16];
    int n;
} found;

static void on_hit(void *user, const scan_hit *h) {
    found *f = user;
    if (f->n < 16) f->hits[f->n++] = *h;
}

// Expects exactly one finding of kind k covering `value` inside text (or none when k < 0).
static void expect(const char *text, int k, const char *value) {
    found f = {.n = 0};
    size_t n = scan_text(text, strlen(text), on_hit, &f);
    if (k < 0) {
        CHECK(n == 0, "\"%s\": %zu finding(s), first %s at %zu", text, n, f.n ? scan_kind_name(f.hits[0].kind) : "-",
              f.n ? f.hits[0].offset : 0);
        return;
    }
    CHECK(n == 1, "\"%s\": %zu findings, want one %s", text, n, scan_kind_name((scan_kind)k));
    if (n != 1) return;
    const char *at = strstr(text, value);
    CHECK(f.hits[0].kind == (scan_kind)k, "\"%s\": found %s, want %s", text, scan_kind_name(f.hits[0].kind),
          scan_kind_name((scan_kind)k));
    CHECK(at && f.hits[0].offset == (size_t)(at - text) && f.hits[0].len == strlen(value),
          "\"%s\": span [%zu,+%zu), want \"%s\"", text, f.hits[0].offset, f.hits[0].len, value);
}

int main(void) {
    // AWS (the documented example credentials)
    expect("key AKIAIOSFODNN7EXAMPLE here", SCAN_AWS_ACCESS_KEY_ID, "AKIAIOSFODNN7EXAMPLE");
    expect("key AKIAIOSFODNN7EXAMPL here", -1, NULL);          // 19 characters
    expect("key XKIAIOSFODNN7EXAMPLE here", -1, NULL);         // not a key prefix
    expect("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY.", SCAN_AWS_SECRET_KEY,
           "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    expect("sha1 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12 is lower-case hex", -1, NULL);
    // private keys, tokens
    expect("x -----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY----- y", SCAN_PRIVATE_KEY,
           "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----");
    expect("-----BEGIN PUBLIC KEY----- is fine", -1, NULL);
    expect("Authorization: Bearer abcDEF123456ghiJKL789 ok", SCAN_BEARER_TOKEN, "Bearer abcDEF123456ghiJKL789");
    expect("authorization: bearer abcdef1234567890xyz ok", SCAN_BEARER_TOKEN, "bearer abcdef1234567890xyz");
    expect("the bearer of this letter is welcome", -1, NULL);
    expect("t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk;",
           SCAN_JWT, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    // e-mail
    expect("write to jane.doe+ml@mail.example.co.uk.", SCAN_EMAIL, "jane.doe+ml@mail.example.co.uk");
    expect("user@localhost and @handle and a@b.c", -1, NULL);
    // phones
    expect("call (415) 612-8582 today", SCAN_PHONE, "(415) 612-8582");
    expect("call 415-612-8582 today", SCAN_PHONE, "415-612-8582");
    expect("call +44 20 7946 0958 today", SCAN_PHONE, "+44 20 7946 0958");
    expect("call 1-800-555-0199 today", SCAN_PHONE, "1-800-555-0199");
    expect("revenue 2019-12-31 was 1,234,567 and 4152612858 ids", -1, NULL);
    // cards (Luhn)
    expect("card 4111 1111 1111 1111 exp", SCAN_CARD, "4111 1111 1111 1111");
    expect("card 5500-0000-0000-0004 exp", SCAN_CARD, "5500-0000-0000-0004");
    expect("card 378282246310005 exp", SCAN_CARD, "378282246310005");
    expect("card 4111 1111 1111 1112 exp", -1, NULL);   // Luhn fails
    // SSN
    expect("ssn 123-45-6789.", SCAN_SSN, "123-45-6789");
    expect("ssn 666-45-6789 000-12-3456 123-00-4567 912-34-5678", -1, NULL);
    // IBAN (ISO 13616 examples)
    expect("pay DE89370400440532013000 now", SCAN_IBAN, "DE89370400440532013000");
    expect("pay GB82 WEST 1234 5698 7654 32 now", SCAN_IBAN, "GB82 WEST 1234 5698 7654 32");
    expect("pay DE89370400440532013001 now", -1, NULL);   // checksum fails
    // ordinary text
    expect("The Quarterly Report (Form 10-K) for FY2023 shows $4.2 billion.", -1, NULL);
    expect("", -1, NULL);

    CHECK(scan_luhn("79927398713", 11) == 1, "Luhn example");
    CHECK(scan_luhn("79927398710", 11) == 0, "Luhn negative");
    CHECK(scan_iban_ok("GB82WEST12345698765432", 22) == 1, "IBAN GB");
    CHECK(scan_iban_ok("GB82WEST12345698765433", 22) == 0, "IBAN GB negative");

    const char *secret = "AKIAIOSFODNN7EXAMPLE";
    char m[64];
    scan_mask(secret, strlen(secret), m, sizeof m);
    CHECK(!strstr(m, "IOSFODNN7"), "mask shows the middle: %s", m);
    CHECK(!strcmp(m, "AKI***PLE (20 chars)"), "mask: %s", m);
    scan_mask("abc", 3, m, sizeof m);
    CHECK(!strcmp(m, "*** (3 chars)"), "short mask: %s", m);
    for (int k = 0; k < SCAN_NKINDS; k++)
        CHECK(scan_kind_from_name(scan_kind_name((scan_kind)k)) == k, "kind name %d", k);
    return test_finish("test_scan");
}
