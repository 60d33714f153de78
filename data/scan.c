// data/scan.c — see scan.h. Everything the detectors look for holds a digit, an upper-case
// letter, '@', '+', '(' or '-' (a secret key has upper case and digits, a JWT starts "eyJ", a
// bearer token must hold a digit), so the scan skips all other bytes in a tight loop and, at one
// of those, goes back to the start of its word (a bounded step) and runs the detectors that can
// start there. Each detector reads a bounded stretch ahead: a pass costs O(len).
#include "scan.h"
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define C_DIGIT 1
#define C_UPPER 2
#define C_LOWER 4
#define C_B64 8        // [A-Za-z0-9/+]
#define C_LOCAL 16     // e-mail local part: [A-Za-z0-9._%+-]
#define C_TRIGGER 32   // a byte where some detector may start

static unsigned char cls[256];
static int cls_ready;

static void init_classes(void) {
    for (int c = 0; c < 256; c++) {
        unsigned char v = 0;
        if (c >= '0' && c <= '9') v |= C_DIGIT | C_B64 | C_LOCAL | C_TRIGGER;
        if (c >= 'A' && c <= 'Z') v |= C_UPPER | C_B64 | C_LOCAL | C_TRIGGER;
        if (c >= 'a' && c <= 'z') v |= C_LOWER | C_B64 | C_LOCAL;
        if (c == '/' || c == '+') v |= C_B64;
        if (c == '.' || c == '_' || c == '%' || c == '+' || c == '-') v |= C_LOCAL;
        if (c == '@' || c == '+' || c == '(' || c == '-') v |= C_TRIGGER;
        cls[c] = v;
    }
    cls_ready = 1;
}

#define U(c) ((unsigned char)(c))
#define IS(c, k) (cls[U(c)] & (k))
#define ALNUM (C_DIGIT | C_UPPER | C_LOWER)

const char *scan_kind_name(scan_kind k) {
    static const char *names[SCAN_NKINDS] = {"aws-access-key-id", "aws-secret-key", "private-key", "bearer-token",
                                             "jwt", "e-mail", "phone", "card-number", "us-ssn", "iban"};
    return (unsigned)k < SCAN_NKINDS ? names[k] : "?";
}

int scan_kind_from_name(const char *name) {
    for (int k = 0; k < SCAN_NKINDS; k++)
        if (!strcmp(name, scan_kind_name((scan_kind)k))) return k;
    return -1;
}

int scan_luhn(const char *s, size_t len) {
    int sum = 0, dbl = 0, n = 0;
    for (size_t i = len; i-- > 0;) {
        if (s[i] < '0' || s[i] > '9') continue;
        int d = s[i] - '0';
        if (dbl) { d *= 2; if (d > 9) d -= 9; }
        sum += d;
        dbl = !dbl;
        n++;
    }
    return n > 0 && sum % 10 == 0;
}

int scan_iban_ok(const char *s, size_t len) {
    if (len < 15 || len > 34) return 0;
    unsigned rem = 0;
    for (size_t k = 0; k < len; k++) {
        char c = s[(k + 4) % len];   // the first four characters move to the end
        if (c >= '0' && c <= '9') rem = (rem * 10 + (unsigned)(c - '0')) % 97;
        else if (c >= 'A' && c <= 'Z') rem = (rem * 100 + (unsigned)(c - 'A' + 10)) % 97;
        else return 0;
    }
    return rem == 1;
}

void scan_mask(const char *value, size_t len, char *out, size_t outlen) {
    size_t keep = len >= 16 ? 3 : len >= 8 ? 2 : len >= 4 ? 1 : 0;
    char head[4] = {0}, tail[4] = {0};
    for (size_t i = 0; i < keep; i++) {
        // Non-ASCII or control bytes are not shown either.
        head[i] = (U(value[i]) >= 0x21 && U(value[i]) < 0x7F) ? value[i] : '*';
        tail[i] = (U(value[len - keep + i]) >= 0x21 && U(value[len - keep + i]) < 0x7F) ? value[len - keep + i] : '*';
    }
    snprintf(out, outlen, "%s***%s (%zu chars)", head, tail, len);
}

typedef struct {
    const char *t;
    size_t len;
    scan_fn fn;
    void *user;
    size_t hits;
    size_t last_end;   // end of the last hit: no later hit starts before it
} scanner;

static void hit(scanner *s, scan_kind k, size_t off, size_t n) {
    if (off < s->last_end) return;   // overlaps the previous finding: that one is reported
    scan_hit h = {k, off, n};
    s->hits++;
    s->last_end = off + n;
    if (s->fn) s->fn(s->user, &h);
}

static int boundary_after(const scanner *s, size_t end) { return end >= s->len || !IS(s->t[end], ALNUM); }

// Each try_* returns the length matched at i (0 = no match) and reports it.

static size_t try_aws_key_id(scanner *s, size_t i) {
    static const char *prefixes[] = {"AKIA", "ASIA", "AIDA", "AROA", "AGPA", "ANPA", "ANVA", "AIPA", "ABIA", "ACCA"};
    if (s->len - i < 20) return 0;
    const char *t = s->t + i;
    int ok = 0;
    for (size_t p = 0; p < sizeof prefixes / sizeof prefixes[0]; p++)
        if (!memcmp(t, prefixes[p], 4)) ok = 1;
    if (!ok) return 0;
    for (int k = 4; k < 20; k++)
        if (!IS(t[k], C_UPPER | C_DIGIT)) return 0;
    if (!boundary_after(s, i + 20)) return 0;
    hit(s, SCAN_AWS_ACCESS_KEY_ID, i, 20);
    return 20;
}

static size_t try_secret(scanner *s, size_t i) {
    if (i > 0 && (IS(s->t[i - 1], C_B64) || s->t[i - 1] == '=')) return 0;
    size_t n = 0;
    int up = 0, lo = 0, dig = 0;
    while (i + n < s->len && IS(s->t[i + n], C_B64) && n <= 40) {
        unsigned char c = cls[U(s->t[i + n])];
        up |= c & C_UPPER;
        lo |= c & C_LOWER;
        dig |= c & C_DIGIT;
        n++;
    }
    if (n != 40 || (i + n < s->len && s->t[i + n] == '=')) return 0;
    if (!up || !lo || !dig) return 0;
    hit(s, SCAN_AWS_SECRET_KEY, i, 40);
    return 40;
}

static size_t try_private_key(scanner *s, size_t i) {
    static const char begin[] = "-----BEGIN ";
    if (s->len - i < sizeof begin - 1 || memcmp(s->t + i, begin, sizeof begin - 1)) return 0;
    size_t j = i + sizeof begin - 1, stop = j + 48 < s->len ? j + 48 : s->len;
    static const char pk[] = "PRIVATE KEY-----";
    for (; j + sizeof pk - 1 <= stop; j++) {
        if (!memcmp(s->t + j, pk, sizeof pk - 1)) {
            size_t end = j + sizeof pk - 1;
            // Extend over the body to the END line's closing dashes when they are there.
            for (size_t k = end; k + 8 <= s->len && k < end + 65536; k++) {   // bounded: keys are short
                if (s->t[k] != '-' || memcmp(s->t + k, "-----END", 8)) continue;
                size_t m = k + 8;
                while (m + 5 <= s->len && memcmp(s->t + m, "-----", 5) && s->t[m] != '\n') m++;
                end = (m + 5 <= s->len && !memcmp(s->t + m, "-----", 5)) ? m + 5 : k + 8;
                break;
            }
            hit(s, SCAN_PRIVATE_KEY, i, end - i);
            return end - i;
        }
        if (!IS(s->t[j], C_UPPER) && s->t[j] != ' ') return 0;
    }
    return 0;
}

static size_t b64url_run(const scanner *s, size_t j) {
    size_t n = 0;
    while (j + n < s->len && (IS(s->t[j + n], ALNUM) || s->t[j + n] == '-' || s->t[j + n] == '_')) n++;
    return n;
}

static size_t try_jwt(scanner *s, size_t i) {
    if (s->len - i < 3 || memcmp(s->t + i, "eyJ", 3)) return 0;
    size_t a = b64url_run(s, i);
    if (a < 10 || i + a >= s->len || s->t[i + a] != '.') return 0;
    size_t b = b64url_run(s, i + a + 1);
    if (b < 10 || i + a + 1 + b >= s->len || s->t[i + a + 1 + b] != '.') return 0;
    size_t c = b64url_run(s, i + a + b + 2);
    size_t n = a + b + c + 2;
    hit(s, SCAN_JWT, i, n);
    return n;
}

static size_t try_bearer(scanner *s, size_t i) {
    if (s->len - i < 8 || strncasecmp(s->t + i, "bearer", 6) != 0 || s->t[i + 6] != ' ') return 0;
    size_t j = i + 7;
    while (j < s->len && s->t[j] == ' ') j++;
    size_t n = 0;
    while (j + n < s->len) {
        char c = s->t[j + n];
        if (!(IS(c, ALNUM) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/')) break;
        n++;
    }
    while (j + n < s->len && s->t[j + n] == '=') n++;
    if (n < 16) return 0;
    // Looks like a token, not prose: mixes letters and digits.
    int dig = 0, alpha = 0;
    for (size_t k = 0; k < n; k++) {
        dig |= IS(s->t[j + k], C_DIGIT) != 0;
        alpha |= IS(s->t[j + k], C_UPPER | C_LOWER) != 0;
    }
    if (!dig || !alpha) return 0;
    hit(s, SCAN_BEARER_TOKEN, i, j + n - i);
    return j + n - i;
}

static size_t try_iban(scanner *s, size_t i) {
    const char *t = s->t;
    if (s->len - i < 15 || !IS(t[i], C_UPPER) || !IS(t[i + 1], C_UPPER) || !IS(t[i + 2], C_DIGIT) || !IS(t[i + 3], C_DIGIT))
        return 0;
    char buf[40];
    size_t nb = 0, j = i;
    int spaced = 0;
    // Either one unbroken run, or printed groups of four separated by single spaces.
    while (j < s->len && nb < 34) {
        if (IS(t[j], C_UPPER | C_DIGIT)) { buf[nb++] = t[j++]; continue; }
        if (t[j] == ' ' && nb % 4 == 0 && j + 1 < s->len && IS(t[j + 1], C_UPPER | C_DIGIT) && (spaced || nb == 4)) {
            spaced = 1;
            j++;
            continue;
        }
        break;
    }
    if (j < s->len && IS(t[j], ALNUM)) return 0;
    if (scan_iban_ok(buf, nb)) { hit(s, SCAN_IBAN, i, j - i); return j - i; }
    return 0;
}

// A run of digits and separators from i: phone numbers, card numbers, SSNs.
static size_t try_number(scanner *s, size_t i) {
    const char *t = s->t;
    char dig[24], seps[24];
    int nd = 0, ns = 0;
    int groups[24], ng = 0, cur = 0, plus = 0, paren = 0;
    size_t j = i;
    if (t[j] == '+') { plus = 1; j++; }
    if (j < s->len && t[j] == '(') { paren = 1; j++; }
    if (j >= s->len || !IS(t[j], C_DIGIT)) return 0;
    size_t last_digit = j;
    while (j < s->len && nd < 20) {
        char c = t[j];
        if (IS(c, C_DIGIT)) { dig[nd++] = c; cur++; last_digit = j; j++; continue; }
        int sep = c == ' ' || c == '-' || c == '.' || c == ')';
        if (!sep || cur == 0) break;
        if (c == ')') {
            if (!paren || ng > 0) break;
            // "(555) 123" or "(555)123"
            groups[ng++] = cur;
            cur = 0;
            seps[ns++] = ')';
            j++;
            if (j < s->len && t[j] == ' ') j++;
            continue;
        }
        if (j + 1 >= s->len || !IS(t[j + 1], C_DIGIT)) break;
        if (ng < 23) groups[ng++] = cur;
        cur = 0;
        if (ns < 23) seps[ns++] = c;
        j++;
    }
    if (cur) groups[ng++] = cur;
    size_t end = last_digit + 1;
    if (nd >= 20 || !boundary_after(s, end) || (end < s->len && t[end] == '.' && end + 1 < s->len && IS(t[end + 1], C_DIGIT)))
        return end - i;   // part of a longer number: nothing here, skip it whole
    if (i > 0 && (t[i - 1] == '.' || t[i - 1] == ',' || t[i - 1] == '$' || t[i - 1] == '-' || t[i - 1] == '/')) return end - i;
    int same_sep = 1;
    for (int k = 1; k < ns; k++)
        if (seps[k] != seps[0]) same_sep = 0;
    if (!plus && !paren && ng == 3 && nd == 9 && groups[0] == 3 && groups[1] == 2 && groups[2] == 4 && ns == 2 &&
        seps[0] == '-' && seps[1] == '-') {
        int area = (dig[0] - '0') * 100 + (dig[1] - '0') * 10 + (dig[2] - '0');
        int grp = (dig[3] - '0') * 10 + (dig[4] - '0');
        int ser = (dig[5] - '0') * 1000 + (dig[6] - '0') * 100 + (dig[7] - '0') * 10 + (dig[8] - '0');
        if (area != 0 && area != 666 && area < 900 && grp != 0 && ser != 0) { hit(s, SCAN_SSN, i, end - i); return end - i; }
        return end - i;
    }
    if (!plus && !paren && nd >= 13 && nd <= 19 && (ns == 0 || (same_sep && (seps[0] == ' ' || seps[0] == '-')))) {
        int lead_ok = dig[0] == '3' || dig[0] == '4' || dig[0] == '5' || dig[0] == '6' || dig[0] == '2';
        if (lead_ok && scan_luhn(dig, (size_t)nd)) { hit(s, SCAN_CARD, i, end - i); return end - i; }
        return end - i;
    }
    if (plus && nd >= 8 && nd <= 15 && (ns > 0 || nd >= 10)) { hit(s, SCAN_PHONE, i, end - i); return end - i; }
    // North American numbers need their usual separators: bare 10-digit runs are too often ids.
    int nanp = 0;
    if (paren && ng == 3 && groups[0] == 3 && groups[1] == 3 && groups[2] == 4 && seps[0] == ')') nanp = 1;
    if (!paren && ng == 3 && nd == 10 && groups[0] == 3 && groups[1] == 3 && groups[2] == 4 && same_sep) nanp = 1;
    if (!paren && ng == 4 && nd == 11 && dig[0] == '1' && groups[0] == 1 && groups[1] == 3 && groups[2] == 3 &&
        groups[3] == 4 && same_sep)
        nanp = 1;
    if (nanp && dig[nd == 11 ? 1 : 0] >= '2') { hit(s, SCAN_PHONE, i, end - i); return end - i; }
    return end - i;
}

static size_t try_email(scanner *s, size_t at) {
    const char *t = s->t;
    size_t b = at;
    while (b > s->last_end && IS(t[b - 1], C_LOCAL) && at - b < 64) b--;
    while (b < at && (t[b] == '.' || t[b] == '-' || t[b] == '+')) b++;
    if (b == at) return 0;
    size_t j = at + 1, last_dot = 0;
    int labels = 0;
    for (;;) {
        size_t l = 0;
        while (j + l < s->len && (IS(t[j + l], ALNUM) || t[j + l] == '-') && l < 63) l++;
        if (l == 0) break;
        labels++;
        j += l;
        if (j + 1 < s->len && t[j] == '.' && IS(t[j + 1], ALNUM)) { last_dot = j; j++; continue; }
        break;
    }
    if (labels < 2) return 0;
    for (size_t k = last_dot + 1; k < j; k++)
        if (!IS(t[k], C_UPPER | C_LOWER)) return 0;
    if (j - last_dot - 1 < 2) return 0;
    hit(s, SCAN_EMAIL, b, j - b);
    return j - at;
}

size_t scan_text(const char *text, size_t len, scan_fn fn, void *user) {
    if (!cls_ready) init_classes();
    scanner s = {text, len, fn, user, 0, 0};
    size_t i = 0;
    while (i < len) {
        size_t from = i;
        while (i < len && !IS(text[i], C_TRIGGER)) i++;
        if (i >= len) break;
        char c = text[i];
        size_t n = 0;
        if (c == '@') n = try_email(&s, i);
        else if (c == '-') n = try_private_key(&s, i);
        else if (c == '+' || c == '(') {
            if (i == 0 || !IS(text[i - 1], ALNUM)) n = try_number(&s, i);
        } else {
            // A digit or an upper-case letter: back to the start of its word (never before
            // where this step began), then the detectors that may start there.
            size_t ws = i, floor = from, w = i;
            while (ws > floor && i - ws < 64 && IS(text[ws - 1], ALNUM)) ws--;
            while (w < len && IS(text[w], ALNUM)) w++;
            size_t wl = w - ws;
            const char *t = text + ws;
            if (ws == 0 || !IS(text[ws - 1], ALNUM)) {
                c = t[0];
                if (ws >= 7 && ws - 7 >= s.last_end && text[ws - 1] == ' ' && !strncasecmp(text + ws - 7, "bearer", 6) &&
                    (ws == 7 || !IS(text[ws - 8], ALNUM)))
                    n = try_bearer(&s, ws - 7);
                if (n) n -= 7;
                if (!n && (c == 'B' || c == 'b') && wl == 6) n = try_bearer(&s, ws);
                if (!n && c == 'e' && wl >= 3 && t[1] == 'y' && t[2] == 'J') n = try_jwt(&s, ws);
                if (!n && c == 'A' && wl == 20) n = try_aws_key_id(&s, ws);
                if (!n && wl >= 4 && IS(c, C_UPPER) && IS(t[1], C_UPPER) && IS(t[2], C_DIGIT) && IS(t[3], C_DIGIT))
                    n = try_iban(&s, ws);
                if (!n && (wl >= 40 || (w < len && (text[w] == '/' || text[w] == '+')))) n = try_secret(&s, ws);
                if (!n && IS(c, C_DIGIT)) n = try_number(&s, ws);
            }
            i = n ? ws + n : w;
            continue;
        }
        i += n ? n : 1;
    }
    return s.hits;
}
