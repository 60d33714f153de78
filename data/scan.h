// data/scan.h — find sensitive values in training text before it is memorised by a model whose
// weights will leave the premises: AWS access key ids and secret-looking keys, private key
// blocks, bearer tokens and JWTs, e-mail addresses, phone numbers, payment card numbers (Luhn),
// US social security numbers and IBANs (mod-97 checksum). One pass over the bytes, no
// allocation. Values are reported by position only; scan_mask gives a printable masked form.
#pragma once
#include <stddef.h>

typedef enum {
    SCAN_AWS_ACCESS_KEY_ID = 0,   // AKIA/ASIA/... + 16 [A-Z0-9]
    SCAN_AWS_SECRET_KEY,          // a 40-character [A-Za-z0-9/+] word with upper, lower and digits
    SCAN_PRIVATE_KEY,             // -----BEGIN ... PRIVATE KEY-----
    SCAN_BEARER_TOKEN,            // "Bearer <token>"
    SCAN_JWT,                     // eyJ...header.payload.signature
    SCAN_EMAIL,
    SCAN_PHONE,                   // +<8-15 digits> or NANP (ddd) ddd-dddd / ddd-ddd-dddd / ddd.ddd.dddd
    SCAN_CARD,                    // 13-19 digits, Luhn-valid, a card network's leading digit
    SCAN_SSN,                     // ddd-dd-dddd outside the never-issued ranges
    SCAN_IBAN,                    // CCdd + 11-30 alphanumerics, mod-97 == 1
    SCAN_NKINDS
} scan_kind;

typedef struct {
    scan_kind kind;
    size_t offset, len;   // bytes in the scanned text
} scan_hit;

// Calls fn for every hit, in order. Returns the number of hits.
typedef void (*scan_fn)(void *user, const scan_hit *hit);
size_t scan_text(const char *text, size_t len, scan_fn fn, void *user);

const char *scan_kind_name(scan_kind k);   // "aws-access-key-id", "e-mail", ...
int scan_kind_from_name(const char *name);   // -1 when unknown
// Writes a masked form of value (never the whole value; at most a few characters at each end).
void scan_mask(const char *value, size_t len, char *out, size_t outlen);
// Luhn checksum over the digits of s (other characters ignored): 1 when valid.
int scan_luhn(const char *s, size_t len);
// ISO 13616 check: s holds an IBAN without spaces (upper case): 1 when mod 97 == 1.
int scan_iban_ok(const char *s, size_t len);
