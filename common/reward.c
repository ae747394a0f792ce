// reward.c — see reward.h.
#include "reward.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void copy_span(const char *b, const char *e, char *out, size_t cap)
{
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    size_t n = (size_t)(e - b) < cap - 1 ? (size_t)(e - b) : cap - 1;
    // a cut must not split a UTF-8 sequence (the answer goes into a msgpack str, and to-json
    // refuses invalid UTF-8): back off over continuation bytes to the sequence's start
    if (n < (size_t)(e - b))
        while (n > 0 && ((unsigned char)b[n] & 0xC0) == 0x80) n--;
    memcpy(out, b, n);
    out[n] = '\0';
}

static const char *last_strstr(const char *s, const char *pat)
{
    const char *last = NULL;
    for (const char *p = strstr(s, pat); p; p = strstr(p + 1, pat)) last = p;
    return last;
}

// Content of the braces opening at p[0] == '{'; returns the closing brace, or NULL if unbalanced.
static const char *match_brace(const char *p)
{
    int depth = 0;
    for (; *p; p++) {
        if (*p == '{') depth++;
        else if (*p == '}' && --depth == 0) return p;
    }
    return NULL;
}

// A number starts here: digit, or sign/period followed by a digit.
static bool number_at(const char *p)
{
    if (isdigit((unsigned char)p[0])) return true;
    if ((p[0] == '-' || p[0] == '.') && isdigit((unsigned char)p[1])) return true;
    return false;
}

// Length of the number token at p (digits, grouping commas, one period, digits).
static size_t number_len(const char *p)
{
    const char *q = p;
    if (*q == '-') q++;
    while (isdigit((unsigned char)*q) || (*q == ',' && isdigit((unsigned char)q[1]))) q++;
    if (*q == '.' && isdigit((unsigned char)q[1])) {
        q++;
        while (isdigit((unsigned char)*q)) q++;
    }
    return (size_t)(q - p);
}

bool reward_extract(const char *text, char *out, size_t cap)
{
    out[0] = '\0';
    const char *h = last_strstr(text, "####");
    if (h) {
        h += 4;
        const char *e = strchr(h, '\n');
        copy_span(h, e ? e : h + strlen(h), out, cap);
        return out[0] != '\0';
    }
    const char *b = last_strstr(text, "\\boxed{");
    if (b) {
        const char *open = b + 6, *close = match_brace(open);
        if (close) {
            copy_span(open + 1, close, out, cap);
            return out[0] != '\0';
        }
    }
    const char *last = NULL;
    size_t last_len = 0;
    for (const char *p = text; *p; ) {
        if (number_at(p) && (p == text || !isalnum((unsigned char)p[-1]) || p[0] == '-')) {
            size_t n = number_len(p);
            last = p, last_len = n;
            p += n;
        } else {
            p++;
        }
    }
    if (!last) return false;
    copy_span(last, last + last_len, out, cap);
    return true;
}

// Parses the number token at p (commas dropped); returns false if there is none.
static bool parse_token(const char *p, double *out, const char **end)
{
    if (!number_at(p)) return false;
    size_t n = number_len(p);
    char buf[128];
    size_t k = 0;
    for (size_t i = 0; i < n && k < sizeof buf - 1; i++)
        if (p[i] != ',') buf[k++] = p[i];
    buf[k] = '\0';
    *out = strtod(buf, NULL);
    *end = p + n;
    return true;
}

static bool parse_frac(const char *s, double *out)
{
    const char *f = strstr(s, "frac{");
    if (!f) return false;
    const char *a = f + 4, *ae = match_brace(a);
    if (!ae || ae[1] != '{') return false;
    const char *b = ae + 1, *be = match_brace(b);
    if (!be) return false;
    double x, y;
    const char *end;
    if (!parse_token(a + 1, &x, &end) || end != ae) return false;
    if (!parse_token(b + 1, &y, &end) || end != be || y == 0) return false;
    *out = (s < f && f[-1] == '\\' && f - 1 > s && f[-2] == '-') ? -x / y : x / y;
    return true;
}

bool reward_parse_number(const char *s, double *out)
{
    if (parse_frac(s, out)) return true;
    for (const char *p = s; *p; p++) {
        if (!number_at(p)) continue;
        const char *end;
        double x;
        parse_token(p, &x, &end);
        // "a/b" is a fraction when b follows directly.
        if (*end == '/' && isdigit((unsigned char)end[1])) {
            double y;
            const char *e2;
            parse_token(end + 1, &y, &e2);
            if (y != 0) x /= y;
        }
        *out = x;
        return isfinite(x);
    }
    return false;
}

static void normalize_text(const char *s, char *out, size_t cap)
{
    size_t k = 0;
    for (; *s && k < cap - 1; s++)
        if (!isspace((unsigned char)*s)) out[k++] = (char)tolower((unsigned char)*s);
    while (k > 0 && out[k - 1] == '.') k--;
    out[k] = '\0';
}

bool reward_equivalent(const char *pred, const char *gold)
{
    double a, b;
    if (reward_parse_number(pred, &a) && reward_parse_number(gold, &b))
        return fabs(a - b) <= 1e-9 * fmax(1.0, fabs(b));
    char x[512], y[512];
    normalize_text(pred, x, sizeof x);
    normalize_text(gold, y, sizeof y);
    return x[0] != '\0' && strcmp(x, y) == 0;
}

double reward_format(const char *text)
{
    while (isspace((unsigned char)*text)) text++;
    if (strncmp(text, "<think>", 7) != 0) return 0.0;
    const char *close = strstr(text + 7, "</think>");
    if (!close || strstr(close + 8, "<think>")) return 0.0;
    for (const char *p = close + 8; *p; p++)
        if (!isspace((unsigned char)*p)) return 1.0;
    return 0.0;
}

double reward_overlong(long len, long max_len, long buffer)
{
    if (max_len <= 0) return 0.0;
    if (len > max_len) return -1.0;
    long soft = max_len - buffer;
    if (len <= soft || buffer <= 0) return 0.0;
    return (double)(soft - len) / (double)buffer;
}
