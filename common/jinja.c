// jinja.c — see jinja.h for the contract. Three parts, each following the matching file of
// @huggingface/jinja (src/lexer.ts, parser.ts, runtime.ts) so that both give the same text:
// a lexer (with the trim_blocks/lstrip_blocks preprocessing), a recursive-descent parser to a
// tree of nodes, and an evaluator over tagged values. All memory of a parse or a render comes
// from one arena, freed at once; errors longjmp back to jinja_parse/jinja_render.
#include "jinja.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

// ---------------------------------------------------------------------------------------------
// arena and errors

struct chunk {
    struct chunk *next;
    size_t used, cap, pad;     // header of 32 bytes keeps mem 16-aligned
    char mem[];
};

struct ctx {
    jmp_buf jb;
    char *err;
    size_t errlen;
    struct chunk *head;
    size_t total, limit;
};

static _Noreturn void failf(struct ctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static _Noreturn void failf(struct ctx *c, int line, const char *fmt, ...)
{
    int k = line > 0 ? snprintf(c->err, c->errlen, "line %d: ", line) : 0;
    if (k < 0 || (size_t)k >= c->errlen) k = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
    va_end(ap);
    for (char *p = c->err; *p; p++)   // one line, whatever the template's strings hold
        if (*p == '\n' || *p == '\r') *p = ' ';
    longjmp(c->jb, 1);
}

static void *alloc(struct ctx *c, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct chunk *h = c->head;
    if (!h || h->cap - h->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (c->total + cap > c->limit) failf(c, 0, "the template needs more than %zu MB of memory", c->limit >> 20);
        h = xmalloc(sizeof *h + cap);
        h->next = c->head;
        h->used = 0;
        h->cap = cap;
        c->head = h;
        c->total += cap;
    }
    void *p = h->mem + h->used;
    h->used += n;
    return p;
}

static void arena_free(struct chunk *h)
{
    while (h) {
        struct chunk *next = h->next;
        free(h);
        h = next;
    }
}

struct str {
    size_t n;
    char p[];                  // NUL-terminated
};

static struct str *str_new(struct ctx *c, const char *p, size_t n)
{
    struct str *s = alloc(c, sizeof *s + n + 1);
    s->n = n;
    if (n) memcpy(s->p, p, n);
    s->p[n] = 0;
    return s;
}

static struct str *str_cat(struct ctx *c, const char *a, size_t an, const char *b, size_t bn)
{
    if (an + bn > JINJA_MAX_OUTPUT) failf(c, 0, "a string exceeds %u MB", JINJA_MAX_OUTPUT >> 20);
    struct str *s = alloc(c, sizeof *s + an + bn + 1);
    s->n = an + bn;
    if (an) memcpy(s->p, a, an);   // an empty side may be a NULL pointer
    if (bn) memcpy(s->p + an, b, bn);
    s->p[s->n] = 0;
    return s;
}

static bool str_is(const struct str *s, const char *lit) { return s && strcmp(s->p, lit) == 0; }

// ---------------------------------------------------------------------------------------------
// Unicode helpers: code points, and the two notions of whitespace (JavaScript's \s for
// whitespace control, Python's str.isspace() for strip/trim)

static size_t utf8_len(const char *p, size_t n)
{
    unsigned char c = (unsigned char)p[0];
    size_t k = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    return k <= n ? k : n;
}

static int32_t utf8_cp(const char *p, size_t n, size_t *k)
{
    utf8proc_int32_t cp;
    utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)p, (utf8proc_ssize_t)n, &cp);
    if (r <= 0) { *k = 1; return (unsigned char)p[0]; }
    *k = (size_t)r;
    return cp;
}

static bool is_space_cp(int32_t c, bool js)
{
    if (c == ' ' || (c >= 9 && c <= 13) || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
        c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000)
        return true;
    return js ? c == 0xfeff : (c >= 0x1c && c <= 0x1f) || c == 0x85;
}

// Length of the whitespace character at p (0 if none).
static size_t space_at(const char *p, size_t n, bool js)
{
    size_t k;
    return n && is_space_cp(utf8_cp(p, n, &k), js) ? k : 0;
}

// Length of the whitespace character ending at p + n (0 if none).
static size_t space_before(const char *p, size_t n, bool js)
{
    if (!n) return 0;
    size_t i = n - 1;
    while (i > 0 && n - i < 4 && ((unsigned char)p[i] & 0xc0) == 0x80) i--;
    size_t k;
    int32_t cp = utf8_cp(p + i, n - i, &k);
    return i + k == n && is_space_cp(cp, js) ? k : 0;
}

static size_t cp_count(const char *p, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i += utf8_len(p + i, n - i)) c++;
    return c;
}

// ---------------------------------------------------------------------------------------------
// lexer (src/lexer.ts)

enum tt {
    T_TEXT, T_NUM, T_STR, T_NAME, T_EQUALS, T_LP, T_RP, T_OS, T_CS, T_OE, T_CE, T_LB, T_RB, T_LC, T_RC,
    T_COMMA, T_DOT, T_COLON, T_PIPE, T_ADD, T_MUL, T_POW, T_CMP, T_UNARY, T_COMMENT
};

struct tok {
    enum tt t;
    struct str *s;
    int line;
};

struct lexer {
    struct ctx *c;
    const char *src;
    size_t n, pos;
    struct tok *v;
    size_t nt, cap;
    int depth;                 // curly brackets open inside {{ }}
    size_t lpos;               // line_at's position and its line
    int lline;
};

// Line of pos in the preprocessed text (counted on from the last position asked, which rarely goes back).
static int line_at(struct lexer *L, size_t pos)
{
    if (pos < L->lpos) L->lpos = 0, L->lline = 1;
    for (; L->lpos < pos && L->lpos < L->n; L->lpos++) L->lline += L->src[L->lpos] == '\n';
    return L->lline;
}

static void push_tok(struct lexer *L, enum tt t, const char *p, size_t n)
{
    if (L->nt == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 256;
        struct tok *v = alloc(L->c, cap * sizeof *v);
        if (L->nt) memcpy(v, L->v, L->nt * sizeof *v);
        L->v = v;
        L->cap = cap;
    }
    L->v[L->nt++] = (struct tok){ t, str_new(L->c, p, n), line_at(L, L->pos) };
}

static enum tt last_type(const struct lexer *L) { return L->nt ? L->v[L->nt - 1].t : (enum tt)-1; }

// The preprocessing of @huggingface/jinja's Template: drop one trailing newline; lstrip_blocks
// (spaces and tabs before {% {# {- at a line start); trim_blocks (the newline after %} #} -});
// {% generation %} / {% endgeneration %} removed, honouring their - modifiers.
static char *preprocess(struct ctx *c, const char *in, size_t *np)
{
    size_t n = strlen(in);
    if (n && in[n - 1] == '\n') n--;
    char *a = alloc(c, n + 1), *b = alloc(c, n + 1), *out = alloc(c, n + 1);
    size_t an = 0, bn = 0, on = 0;
    for (size_t i = 0; i < n;) {
        bool line_start = i == 0 || in[i - 1] == '\n' || in[i - 1] == '\r' ||
                          (i >= 3 && (memcmp(in + i - 3, "\xe2\x80\xa8", 3) == 0 || memcmp(in + i - 3, "\xe2\x80\xa9", 3) == 0));
        if (line_start) {
            size_t j = i;
            while (j < n && (in[j] == ' ' || in[j] == '\t')) j++;
            if (j + 1 < n && in[j] == '{' && strchr("#%-", in[j + 1])) i = j;
        }
        size_t j = i;   // copy up to the next line start
        while (j < n && in[j] != '\n' && in[j] != '\r') j++;
        if (j < n) j++;
        memcpy(a + an, in + i, j - i);
        an += j - i;
        i = j;
    }
    for (size_t i = 0; i < an;) {
        if (i + 2 < an && strchr("#%-", a[i]) && a[i] && a[i + 1] == '}' && a[i + 2] == '\n') {
            b[bn++] = a[i];
            b[bn++] = '}';
            i += 3;
        } else {
            b[bn++] = a[i++];
        }
    }
    for (size_t i = 0; i < bn;) {
        if (b[i] == '{' && i + 1 < bn && b[i + 1] == '%') {
            size_t j = i + 2, k;
            bool lstrip = j < bn && b[j] == '-';
            j += lstrip;
            while ((k = space_at(b + j, bn - j, true))) j += k;
            if (bn - j >= 3 && memcmp(b + j, "end", 3) == 0) j += 3;
            if (bn - j >= 10 && memcmp(b + j, "generation", 10) == 0) {
                j += 10;
                while ((k = space_at(b + j, bn - j, true))) j += k;
                bool rstrip = j < bn && b[j] == '-';
                j += rstrip;
                if (bn - j >= 2 && b[j] == '%' && b[j + 1] == '}') {
                    j += 2;
                    if (lstrip)
                        while ((k = space_before(out, on, true))) on -= k;
                    if (rstrip)
                        while ((k = space_at(b + j, bn - j, true))) j += k;
                    i = j;
                    continue;
                }
            }
        }
        out[on++] = b[i++];
    }
    out[on] = 0;
    *np = on;
    return out;
}

static _Noreturn void lex_fail(struct lexer *L, const char *what)
{
    failf(L->c, line_at(L, L->pos), "%s", what);
}

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }
static bool is_word(char ch) { return is_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_'; }

static int hexval(char ch)
{
    return is_digit(ch) ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

// A quoted string literal from L->pos (after the quote) to the closing quote, escapes undone.
static void lex_string(struct lexer *L, char quote)
{
    struct ctx *c = L->c;
    char *out = alloc(c, 3 * (L->n - L->pos) + 1);
    size_t o = 0;
    while (L->pos < L->n && L->src[L->pos] != quote) {
        char ch = L->src[L->pos++];
        if (ch != '\\') { out[o++] = ch; continue; }
        if (L->pos >= L->n) lex_fail(L, "unexpected end of template in a string literal");
        char e = L->src[L->pos++];
        if (e == 'x' || e == 'u') {
            int len = e == 'x' ? 2 : 4, cp = 0;
            for (int i = 0; i < len; i++) {
                int h = L->pos < L->n ? hexval(L->src[L->pos]) : -1;
                if (h < 0) lex_fail(L, "invalid \\x or \\u escape in a string literal");
                cp = cp * 16 + h;
                L->pos++;
            }
            if (cp >= 0xd800 && cp <= 0xdfff) lex_fail(L, "a \\u escape of a surrogate is not supported");
            o += (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)out + o);
            continue;
        }
        const char *from = "ntrbfv'\"\\", *to = "\n\t\r\b\f\v'\"\\";
        const char *q = strchr(from, e);
        if (!q || !e) lex_fail(L, "unknown escape in a string literal");
        out[o++] = to[q - from];
    }
    if (L->pos >= L->n) lex_fail(L, "unterminated string literal");
    L->pos++;
    struct tok *t;
    push_tok(L, T_STR, "", 0);
    t = &L->v[L->nt - 1];
    t->s = str_new(c, out, o);
}

static void strip_last_text(struct lexer *L)
{
    if (!L->nt || L->v[L->nt - 1].t != T_TEXT) return;
    struct str *s = L->v[L->nt - 1].s;
    size_t k;
    while ((k = space_before(s->p, s->n, true))) s->n -= k;
    s->p[s->n] = 0;
    if (s->n == 0) L->nt--;
}

static void skip_space(struct lexer *L)
{
    size_t k;
    while ((k = space_at(L->src + L->pos, L->n - L->pos, true))) L->pos += k;
}

static bool at(const struct lexer *L, const char *s)
{
    size_t k = strlen(s);
    return L->n - L->pos >= k && memcmp(L->src + L->pos, s, k) == 0;
}

static const struct { const char *s; enum tt t; } TABLE[] = {
    { "{%", T_OS }, { "%}", T_CS }, { "{{", T_OE }, { "}}", T_CE }, { "(", T_LP }, { ")", T_RP },
    { "{", T_LC }, { "}", T_RC }, { "[", T_LB }, { "]", T_RB }, { ",", T_COMMA }, { ".", T_DOT },
    { ":", T_COLON }, { "|", T_PIPE }, { "<=", T_CMP }, { ">=", T_CMP }, { "==", T_CMP }, { "!=", T_CMP },
    { "<", T_CMP }, { ">", T_CMP }, { "+", T_ADD }, { "-", T_ADD }, { "~", T_ADD }, { "**", T_POW },
    { "*", T_MUL }, { "//", T_MUL }, { "/", T_MUL }, { "%", T_MUL }, { "=", T_EQUALS },
};

static void lex_number(struct lexer *L, const char *sign)
{
    size_t start = L->pos;
    while (L->pos < L->n && is_digit(L->src[L->pos])) L->pos++;
    if (last_type(L) != T_DOT && L->pos + 1 < L->n && L->src[L->pos] == '.' && is_digit(L->src[L->pos + 1])) {
        L->pos++;
        while (L->pos < L->n && is_digit(L->src[L->pos])) L->pos++;
    }
    char buf[80];
    size_t len = L->pos - start;
    if (len > 60) lex_fail(L, "number literal too long");
    snprintf(buf, sizeof buf, "%s%.*s", sign, (int)len, L->src + start);
    push_tok(L, T_NUM, buf, strlen(buf));
}

// One token inside {% %} or {{ }} (whitespace already skipped).
static void lex_in_tag(struct lexer *L)
{
    char ch = L->src[L->pos];
    if (ch == '-' || ch == '+') {
        enum tt last = last_type(L);
        if (last == T_TEXT || last == (enum tt)-1) lex_fail(L, "unexpected + or -");
        if (last != T_NAME && last != T_NUM && last != T_STR && last != T_RP && last != T_RB) {
            L->pos++;
            char sign[2] = { ch, 0 };
            if (L->pos < L->n && is_digit(L->src[L->pos])) lex_number(L, sign);
            else push_tok(L, T_UNARY, sign, 1);
            return;
        }
    }
    for (size_t i = 0; i < sizeof TABLE / sizeof TABLE[0]; i++) {
        if (TABLE[i].t == T_CE && L->depth > 0) continue;
        if (!at(L, TABLE[i].s)) continue;
        push_tok(L, TABLE[i].t, TABLE[i].s, strlen(TABLE[i].s));
        if (TABLE[i].t == T_OE) L->depth = 0;
        else if (TABLE[i].t == T_LC) L->depth++;
        else if (TABLE[i].t == T_RC) L->depth--;
        L->pos += strlen(TABLE[i].s);
        return;
    }
    if (ch == '\'' || ch == '"') {
        L->pos++;
        lex_string(L, ch);
        return;
    }
    if (is_digit(ch)) {
        lex_number(L, "");
        return;
    }
    if (is_word(ch)) {
        size_t start = L->pos;
        while (L->pos < L->n && is_word(L->src[L->pos])) L->pos++;
        push_tok(L, T_NAME, L->src + start, L->pos - start);
        return;
    }
    char msg[64];
    snprintf(msg, sizeof msg, "unexpected character '%.*s'", (int)utf8_len(L->src + L->pos, L->n - L->pos), L->src + L->pos);
    lex_fail(L, msg);
}

static void lex(struct lexer *L)
{
    while (L->pos < L->n) {
        enum tt last = last_type(L);
        if (last == (enum tt)-1 || last == T_CS || last == T_CE || last == T_COMMENT) {
            size_t start = L->pos;
            while (L->pos < L->n && !(L->src[L->pos] == '{' && L->pos + 1 < L->n &&
                                      strchr("%{#", L->src[L->pos + 1]) && L->src[L->pos + 1]))
                L->pos++;
            if (L->pos > start) {
                size_t end = L->pos;
                L->pos = start;
                push_tok(L, T_TEXT, L->src + start, end - start);
                L->pos = end;
                continue;
            }
        }
        if (at(L, "{#")) {
            L->pos += 2;
            bool before = L->pos < L->n && L->src[L->pos] == '-';
            L->pos += before;
            size_t start = L->pos;
            while (!(L->pos + 1 < L->n && L->src[L->pos] == '#' && L->src[L->pos + 1] == '}')) {
                if (L->pos + 2 >= L->n) lex_fail(L, "unclosed comment {# (no #})");
                L->pos++;
            }
            bool after = L->pos > start && L->src[L->pos - 1] == '-';
            if (before) strip_last_text(L);
            push_tok(L, T_COMMENT, "", 0);
            L->pos += 2;
            if (after) skip_space(L);
            continue;
        }
        if (at(L, "{%-") || at(L, "{{-")) {
            strip_last_text(L);
            bool expr = L->src[L->pos + 1] == '{';
            push_tok(L, expr ? T_OE : T_OS, expr ? "{{" : "{%", 2);
            if (expr) L->depth = 0;
            L->pos += 3;
            continue;
        }
        skip_space(L);
        if (L->pos >= L->n) break;
        if (at(L, "-%}") || at(L, "-}}")) {
            bool expr = L->src[L->pos + 1] == '}';
            push_tok(L, expr ? T_CE : T_CS, expr ? "}}" : "%}", 2);
            L->pos += 3;
            skip_space(L);
            continue;
        }
        lex_in_tag(L);
    }
}

// ---------------------------------------------------------------------------------------------
// syntax tree and parser (src/parser.ts)

enum nk {
    N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_MACRO, N_BREAK, N_CONT, N_FBLOCK,
    E_STR, E_INT, E_FLOAT, E_NAME, E_LIST, E_TUPLE, E_DICT, E_MEMBER, E_SLICE, E_CALL, E_FILTER, E_TEST,
    E_UNARY, E_BIN, E_TERN, E_SELECT, E_KW
};

enum op {
    OP_NONE, OP_OR, OP_AND, OP_IN, OP_NOTIN, OP_EQ, OP_NE, OP_LT, OP_GT, OP_LE, OP_GE, OP_ADD, OP_SUB,
    OP_CAT, OP_MUL, OP_DIV, OP_FDIV, OP_MOD, OP_POW, OP_NOT, OP_NEG, OP_POS
};

struct node;
struct nodes {
    struct node **v;
    size_t n, cap;
};

struct node {
    enum nk k;
    enum op op;
    int line;
    bool flag;                 // member: computed ([...]); filter: has arguments; test: negated
    struct str *s;             // text, literal, name, filter/test/macro/keyword name
    int64_t i;
    double f;
    struct node *a, *b, *c;
    struct nodes x, y;         // bodies, items, arguments (see parse_*)
};

struct parser {
    struct ctx *c;
    struct tok *t;
    size_t n, pos;
    int depth;
};

static const char *const FILTERS[] = {
    "abs", "bool", "capitalize", "default", "first", "float", "indent", "int", "items", "join", "keys",
    "last", "length", "list", "lower", "map", "rejectattr", "replace", "reverse", "safe", "selectattr",
    "sort", "string", "title", "tojson", "trim", "unique", "upper", "values",
};
static const char *const TESTS[] = {
    "boolean", "callable", "defined", "eq", "equalto", "even", "false", "integer", "iterable", "lower",
    "mapping", "none", "number", "odd", "sequence", "string", "true", "undefined", "upper",
};

static bool in_list(const char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0) return true;
    return false;
}

static int cur_line(const struct parser *P)
{
    return P->pos < P->n ? P->t[P->pos].line : P->n ? P->t[P->n - 1].line : 1;
}

static _Noreturn void perr(struct parser *P, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static _Noreturn void perr(struct parser *P, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    failf(P->c, cur_line(P), "%s", msg);
}

static struct node *node(struct parser *P, enum nk k)
{
    struct node *e = alloc(P->c, sizeof *e);
    memset(e, 0, sizeof *e);
    e->k = k;
    e->line = cur_line(P);
    return e;
}

static void nodes_push(struct ctx *c, struct nodes *l, struct node *e)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        struct node **v = alloc(c, cap * sizeof *v);
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = e;
}

static bool is_t(const struct parser *P, enum tt t) { return P->pos < P->n && P->t[P->pos].t == t; }
static bool is_name(const struct parser *P, size_t off, const char *name)
{
    return P->pos + off < P->n && P->t[P->pos + off].t == T_NAME && strcmp(P->t[P->pos + off].s->p, name) == 0;
}
static bool is_tv(const struct parser *P, enum tt t, const char *v)
{
    return is_t(P, t) && strcmp(P->t[P->pos].s->p, v) == 0;
}

static const char *tok_desc(const struct parser *P)
{
    if (P->pos >= P->n) return "the end of the template";
    static const char *const names[] = { "text", "a number", "a string", "a name", "'='", "'('", "')'", "'{%'",
                                         "'%}'", "'{{'", "'}}'", "'['", "']'", "'{'", "'}'", "','", "'.'",
                                         "':'", "'|'", "an operator", "an operator", "'**'", "a comparison",
                                         "a sign", "a comment" };
    return names[P->t[P->pos].t];
}

static struct tok *expect(struct parser *P, enum tt t, const char *what)
{
    if (!is_t(P, t)) perr(P, "expected %s, found %s", what, tok_desc(P));
    return &P->t[P->pos++];
}

static void expect_name(struct parser *P, const char *name)
{
    if (!is_name(P, 0, name)) perr(P, "expected '%s', found %s", name, tok_desc(P));
    P->pos++;
}

// {% name ... at the current position
static bool is_stmt(const struct parser *P, const char *const *names, size_t n)
{
    if (!is_t(P, T_OS) || P->pos + 1 >= P->n || P->t[P->pos + 1].t != T_NAME) return false;
    return in_list(names, n, P->t[P->pos + 1].s->p);
}

static void enter(struct parser *P)
{
    if (++P->depth > JINJA_MAX_DEPTH) perr(P, "the template nests more than %d levels deep", JINJA_MAX_DEPTH);
}

static struct node *parse_expr(struct parser *P);
static struct node *parse_any(struct parser *P);

// Statements up to one of `ends` ({% endfor %}, ...), which is left unconsumed.
static void parse_body(struct parser *P, struct nodes *body, const char *const *ends, size_t nends, const char *opened)
{
    while (!is_stmt(P, ends, nends)) {
        if (P->pos >= P->n) perr(P, "unclosed {%% %s %%} (no {%% %s %%})", opened, ends[nends - 1]);
        struct node *s = parse_any(P);
        if (s) nodes_push(P->c, body, s);
    }
}

static void close_stmt(struct parser *P, const char *end)
{
    expect(P, T_OS, "'{%'");
    expect_name(P, end);
    expect(P, T_CS, "'%}'");
}

static struct node *parse_seq(struct parser *P, bool primary);
static struct node *parse_primary(struct parser *P);

// (a, b=c, ...): positional then keyword arguments (E_KW nodes), or parameters with defaults.
static void parse_args(struct parser *P, struct nodes *args, bool params)
{
    expect(P, T_LP, "'('");
    bool kw_seen = false;
    while (!is_t(P, T_RP)) {
        if (P->pos >= P->n) perr(P, "unclosed '(' (no ')')");
        if (is_t(P, T_POW) || is_tv(P, T_MUL, "*")) perr(P, "argument unpacking (* or **) is not supported");
        struct node *a = parse_expr(P);
        if (is_t(P, T_EQUALS)) {
            P->pos++;
            if (a->k != E_NAME) perr(P, "expected a name before '='");
            struct node *kw = node(P, E_KW);
            kw->s = a->s;
            kw->a = parse_expr(P);
            a = kw;
            kw_seen = true;
        } else if (kw_seen) {
            perr(P, params ? "a parameter without default follows one with a default"
                           : "a positional argument follows a keyword argument");
        }
        if (params && a->k != E_NAME && a->k != E_KW) perr(P, "expected a parameter name");
        nodes_push(P->c, args, a);
        if (is_t(P, T_COMMA)) P->pos++;
    }
    P->pos++;
}

static struct node *parse_member(struct parser *P, struct node *obj);

static struct node *parse_call(struct parser *P, struct node *callee)
{
    struct node *e = node(P, E_CALL);
    e->a = callee;
    parse_args(P, &e->x, false);
    e = parse_member(P, e);
    if (is_t(P, T_LP)) e = parse_call(P, e);
    return e;
}

// [expr] or [a:b:c]
static struct node *parse_subscript(struct parser *P)
{
    struct node *parts[3] = { 0 };
    size_t n = 0;
    bool slice = false;
    while (!is_t(P, T_RB)) {
        if (P->pos >= P->n) perr(P, "unclosed '[' (no ']')");
        if (n == 3) perr(P, "a slice has at most 3 parts");
        if (is_t(P, T_COLON)) {
            parts[n++] = NULL;
            P->pos++;
            slice = true;
        } else {
            parts[n++] = parse_expr(P);
            if (is_t(P, T_COLON)) {
                P->pos++;
                slice = true;
            }
        }
    }
    if (n == 0) perr(P, "empty []");
    if (!slice) return parts[0];
    struct node *e = node(P, E_SLICE);
    e->a = parts[0];
    e->b = n > 1 ? parts[1] : NULL;
    e->c = n > 2 ? parts[2] : NULL;
    return e;
}

static struct node *parse_member(struct parser *P, struct node *obj)
{
    while (is_t(P, T_DOT) || is_t(P, T_LB)) {
        bool computed = is_t(P, T_LB);
        P->pos++;
        struct node *e = node(P, E_MEMBER);
        e->a = obj;
        e->flag = computed;
        if (computed) {
            e->b = parse_subscript(P);
            expect(P, T_RB, "']'");
        } else {
            e->b = parse_primary(P);
            if (e->b->k != E_NAME && e->b->k != E_INT) perr(P, "expected a name or an integer after '.'");
        }
        obj = e;
    }
    return obj;
}

static struct node *parse_primary(struct parser *P)
{
    enter(P);
    if (P->pos >= P->n) perr(P, "unexpected end of the template in an expression");
    struct tok *t = &P->t[P->pos++];
    struct node *e;
    switch (t->t) {
    case T_NUM:
        if (strchr(t->s->p, '.')) {
            e = node(P, E_FLOAT);
            e->f = strtod(t->s->p, NULL);
        } else {
            e = node(P, E_INT);
            errno = 0;
            e->i = strtoll(t->s->p, NULL, 10);
            if (errno) perr(P, "integer literal out of range");
        }
        break;
    case T_STR:
        e = node(P, E_STR);
        e->s = t->s;
        while (is_t(P, T_STR)) {
            e->s = str_cat(P->c, e->s->p, e->s->n, P->t[P->pos].s->p, P->t[P->pos].s->n);
            P->pos++;
        }
        break;
    case T_NAME:
        e = node(P, E_NAME);
        e->s = t->s;
        break;
    case T_LP:
        e = parse_seq(P, false);
        expect(P, T_RP, "')'");
        break;
    case T_LB:
        e = node(P, E_LIST);
        while (!is_t(P, T_RB)) {
            if (P->pos >= P->n) perr(P, "unclosed '[' (no ']')");
            nodes_push(P->c, &e->x, parse_expr(P));
            if (is_t(P, T_COMMA)) P->pos++;
        }
        P->pos++;
        break;
    case T_LC:
        e = node(P, E_DICT);
        while (!is_t(P, T_RC)) {
            if (P->pos >= P->n) perr(P, "unclosed '{' (no '}')");
            nodes_push(P->c, &e->x, parse_expr(P));
            expect(P, T_COLON, "':' in a dict literal");
            nodes_push(P->c, &e->y, parse_expr(P));
            if (is_t(P, T_COMMA)) P->pos++;
        }
        P->pos++;
        break;
    default:
        P->pos--;
        perr(P, "unexpected %s in an expression", tok_desc(P));
    }
    P->depth--;
    return e;
}

static struct node *parse_call_member(struct parser *P)
{
    struct node *e = parse_member(P, parse_primary(P));
    return is_t(P, T_LP) ? parse_call(P, e) : e;
}

static struct node *parse_sign(struct parser *P)
{
    if ((is_t(P, T_UNARY) || is_t(P, T_ADD)) && (is_tv(P, P->t[P->pos].t, "-") || is_tv(P, P->t[P->pos].t, "+"))) {
        enter(P);
        struct node *e = node(P, E_UNARY);
        e->op = P->t[P->pos++].s->p[0] == '-' ? OP_NEG : OP_POS;
        e->a = parse_sign(P);
        P->depth--;
        return e;
    }
    return parse_call_member(P);
}

static struct node *parse_filter(struct parser *P)
{
    struct node *e = parse_sign(P);
    while (is_t(P, T_PIPE)) {
        P->pos++;
        if (!is_t(P, T_NAME)) perr(P, "expected a filter name after '|'");
        struct node *f = node(P, E_FILTER);
        f->s = P->t[P->pos++].s;
        if (!in_list(FILTERS, sizeof FILTERS / sizeof FILTERS[0], f->s->p))
            perr(P, "the filter '%s' is not supported", f->s->p);
        f->a = e;
        if (is_t(P, T_LP)) {
            f->flag = true;
            parse_args(P, &f->x, false);
        }
        e = f;
    }
    return e;
}

static struct node *parse_test(struct parser *P)
{
    struct node *e = parse_filter(P);
    while (is_name(P, 0, "is")) {
        P->pos++;
        struct node *t = node(P, E_TEST);
        t->flag = is_name(P, 0, "not");
        P->pos += t->flag;
        if (!is_t(P, T_NAME)) perr(P, "expected a test name after 'is'");
        t->s = P->t[P->pos++].s;
        if (!in_list(TESTS, sizeof TESTS / sizeof TESTS[0], t->s->p)) perr(P, "the test '%s' is not supported", t->s->p);
        if (is_t(P, T_LP)) perr(P, "tests with arguments ('is %s(...)') are not supported", t->s->p);
        t->a = e;
        e = t;
    }
    return e;
}

static struct node *binary(struct parser *P, enum op op, struct node *a, struct node *b)
{
    struct node *e = node(P, E_BIN);
    e->op = op;
    e->a = a;
    e->b = b;
    return e;
}

static struct node *parse_pow(struct parser *P)
{
    struct node *e = parse_test(P);
    while (is_t(P, T_POW)) {
        P->pos++;
        e = binary(P, OP_POW, e, parse_test(P));
    }
    return e;
}

static struct node *parse_mul(struct parser *P)
{
    struct node *e = parse_pow(P);
    while (is_t(P, T_MUL)) {
        const char *v = P->t[P->pos++].s->p;
        enum op op = strcmp(v, "*") == 0 ? OP_MUL : strcmp(v, "/") == 0 ? OP_DIV : strcmp(v, "//") == 0 ? OP_FDIV : OP_MOD;
        e = binary(P, op, e, parse_pow(P));
    }
    return e;
}

static struct node *parse_add(struct parser *P)
{
    struct node *e = parse_mul(P);
    while (is_t(P, T_ADD)) {
        char v = P->t[P->pos++].s->p[0];
        e = binary(P, v == '+' ? OP_ADD : v == '-' ? OP_SUB : OP_CAT, e, parse_mul(P));
    }
    return e;
}

static struct node *parse_cmp(struct parser *P)
{
    struct node *e = parse_add(P);
    for (;;) {
        enum op op;
        if (is_name(P, 0, "not") && is_name(P, 1, "in")) { op = OP_NOTIN; P->pos += 2; }
        else if (is_name(P, 0, "in")) { op = OP_IN; P->pos++; }
        else if (is_t(P, T_CMP)) {
            const char *v = P->t[P->pos++].s->p;
            op = strcmp(v, "==") == 0 ? OP_EQ : strcmp(v, "!=") == 0 ? OP_NE : strcmp(v, "<") == 0 ? OP_LT
               : strcmp(v, ">") == 0 ? OP_GT : strcmp(v, "<=") == 0 ? OP_LE : OP_GE;
        } else {
            return e;
        }
        e = binary(P, op, e, parse_add(P));
    }
}

static struct node *parse_not(struct parser *P)
{
    if (!is_name(P, 0, "not")) return parse_cmp(P);
    enter(P);
    P->pos++;
    struct node *e = node(P, E_UNARY);
    e->op = OP_NOT;
    e->a = parse_not(P);
    P->depth--;
    return e;
}

static struct node *parse_and(struct parser *P)
{
    struct node *e = parse_not(P);
    while (is_name(P, 0, "and")) {
        P->pos++;
        e = binary(P, OP_AND, e, parse_not(P));
    }
    return e;
}

static struct node *parse_or(struct parser *P)
{
    struct node *e = parse_and(P);
    while (is_name(P, 0, "or")) {
        P->pos++;
        e = binary(P, OP_OR, e, parse_and(P));
    }
    return e;
}

static struct node *parse_expr(struct parser *P)
{
    enter(P);
    struct node *e = parse_or(P);
    if (is_name(P, 0, "if")) {
        P->pos++;
        struct node *t = node(P, E_TERN);
        t->b = e;
        t->a = parse_or(P);
        if (is_name(P, 0, "else")) {
            P->pos++;
            t->c = parse_expr(P);
        } else {
            t->k = E_SELECT;
        }
        e = t;
    }
    P->depth--;
    return e;
}

// a or a, b, ... (a tuple); primary: names only, for loop targets
static struct node *parse_seq(struct parser *P, bool primary)
{
    struct node *first = primary ? parse_primary(P) : parse_expr(P);
    if (!is_t(P, T_COMMA)) return first;
    struct node *e = node(P, E_TUPLE);
    nodes_push(P->c, &e->x, first);
    while (is_t(P, T_COMMA)) {
        P->pos++;
        nodes_push(P->c, &e->x, primary ? parse_primary(P) : parse_expr(P));
    }
    return e;
}

static const char *const END_IF[] = { "elif", "else", "endif" };
static const char *const END_ELSE_IF[] = { "endif" };
static const char *const END_FOR[] = { "else", "endfor" };
static const char *const END_FOR_ELSE[] = { "endfor" };
static const char *const END_SET[] = { "endset" };
static const char *const END_MACRO[] = { "endmacro" };
static const char *const END_FILTER[] = { "endfilter" };

// after {% if / {% elif: the test, the body, and the elif/else chain (endif left unconsumed)
static struct node *parse_if(struct parser *P)
{
    enter(P);
    struct node *e = node(P, N_IF);
    e->a = parse_expr(P);
    expect(P, T_CS, "'%}'");
    parse_body(P, &e->x, END_IF, 3, "if");
    if (is_stmt(P, END_IF, 1)) {
        P->pos += 2;
        nodes_push(P->c, &e->y, parse_if(P));
    } else if (is_stmt(P, END_IF + 1, 1)) {
        P->pos += 2;
        expect(P, T_CS, "'%}'");
        parse_body(P, &e->y, END_ELSE_IF, 1, "if");
    }
    P->depth--;
    return e;
}

static struct node *parse_stmt(struct parser *P)
{
    expect(P, T_OS, "'{%'");
    if (!is_t(P, T_NAME)) perr(P, "expected a statement name after '{%%', found %s", tok_desc(P));
    const char *name = P->t[P->pos].s->p;
    struct node *e;
    P->pos++;
    if (strcmp(name, "set") == 0) {
        e = node(P, N_SET);
        e->a = parse_seq(P, false);
        if (e->a->k != E_NAME && e->a->k != E_TUPLE && !(e->a->k == E_MEMBER && !e->a->flag && e->a->b->k == E_NAME))
            perr(P, "{%% set %%} assigns to a name, names, or a namespace attribute");
        if (is_t(P, T_EQUALS)) {
            P->pos++;
            e->b = parse_seq(P, false);
        } else {
            expect(P, T_CS, "'%}'");
            parse_body(P, &e->x, END_SET, 1, "set");
            P->pos++;
            expect_name(P, "endset");
        }
        expect(P, T_CS, "'%}'");
    } else if (strcmp(name, "if") == 0) {
        e = parse_if(P);
        close_stmt(P, "endif");
    } else if (strcmp(name, "for") == 0) {
        e = node(P, N_FOR);
        e->a = parse_seq(P, true);
        if (e->a->k != E_NAME && e->a->k != E_TUPLE) perr(P, "expected a name or names after 'for'");
        for (size_t i = 0; e->a->k == E_TUPLE && i < e->a->x.n; i++)
            if (e->a->x.v[i]->k != E_NAME) perr(P, "expected names after 'for'");
        expect_name(P, "in");
        e->b = parse_expr(P);
        expect(P, T_CS, "'%}'");
        parse_body(P, &e->x, END_FOR, 2, "for");
        if (is_stmt(P, END_FOR, 1)) {
            P->pos += 2;
            expect(P, T_CS, "'%}'");
            parse_body(P, &e->y, END_FOR_ELSE, 1, "for");
        }
        close_stmt(P, "endfor");
    } else if (strcmp(name, "macro") == 0) {
        e = node(P, N_MACRO);
        if (!is_t(P, T_NAME)) perr(P, "expected a macro name");
        e->s = P->t[P->pos++].s;
        parse_args(P, &e->x, true);
        expect(P, T_CS, "'%}'");
        parse_body(P, &e->y, END_MACRO, 1, "macro");
        close_stmt(P, "endmacro");
    } else if (strcmp(name, "filter") == 0) {
        e = node(P, N_FBLOCK);
        if (!is_t(P, T_NAME)) perr(P, "expected a filter name");
        struct node *f = node(P, E_FILTER);
        f->s = P->t[P->pos++].s;
        if (!in_list(FILTERS, sizeof FILTERS / sizeof FILTERS[0], f->s->p)) perr(P, "the filter '%s' is not supported", f->s->p);
        if (is_t(P, T_LP)) {
            f->flag = true;
            parse_args(P, &f->x, false);
        }
        e->a = f;
        expect(P, T_CS, "'%}'");
        parse_body(P, &e->x, END_FILTER, 1, "filter");
        close_stmt(P, "endfilter");
    } else if (strcmp(name, "break") == 0 || strcmp(name, "continue") == 0) {
        e = node(P, name[0] == 'b' ? N_BREAK : N_CONT);
        expect(P, T_CS, "'%}'");
    } else if (strcmp(name, "call") == 0) {
        P->pos--;
        perr(P, "{%% call %%} blocks are not supported");
    } else {
        P->pos--;
        perr(P, "unknown statement {%% %s %%}", name);
    }
    return e;
}

// One statement: text, {{ expr }}, {% ... %}; NULL for a comment.
static struct node *parse_any(struct parser *P)
{
    enter(P);
    struct tok *t = &P->t[P->pos];
    struct node *e = NULL;
    switch (t->t) {
    case T_COMMENT:
        P->pos++;
        break;
    case T_TEXT:
        e = node(P, N_TEXT);
        e->s = t->s;
        P->pos++;
        break;
    case T_OS:
        e = parse_stmt(P);
        break;
    case T_OE:
        P->pos++;
        e = node(P, N_OUT);
        e->a = parse_expr(P);
        expect(P, T_CE, "'}}'");
        break;
    default:
        perr(P, "unexpected %s", tok_desc(P));
    }
    P->depth--;
    return e;
}

struct jinja_template {
    struct chunk *arena;
    struct nodes body;
};

struct jinja_template *jinja_parse(const char *text, char *err, size_t errlen)
{
    struct ctx *c = xcalloc(1, sizeof *c);   // on the heap: it changes after setjmp
    c->err = err;
    c->errlen = errlen;
    c->limit = JINJA_MAX_MEMORY;
    if (setjmp(c->jb)) {
        arena_free(c->head);
        free(c);
        return NULL;
    }
    struct lexer L = { .c = c, .lline = 1 };
    L.src = preprocess(c, text, &L.n);
    lex(&L);
    struct parser P = { .c = c, .t = L.v, .n = L.nt };
    struct jinja_template *t = alloc(c, sizeof *t);
    memset(t, 0, sizeof *t);
    while (P.pos < P.n) {
        if (is_t(&P, T_OS) && P.pos + 1 < P.n && P.t[P.pos + 1].t == T_NAME) {
            const char *w = P.t[P.pos + 1].s->p;
            static const char *const stray[] = { "elif", "else", "endif", "endfor", "endset", "endmacro", "endfilter" };
            if (in_list(stray, sizeof stray / sizeof stray[0], w)) {
                P.pos++;
                perr(&P, "{%% %s %%} without its opening statement", w);
            }
        }
        struct node *s = parse_any(&P);
        if (s) nodes_push(c, &t->body, s);
    }
    t->arena = c->head;
    free(c);
    return t;
}

void jinja_free(struct jinja_template *t)
{
    if (t) arena_free(t->arena);
}

// ---------------------------------------------------------------------------------------------
// values (src/runtime.ts)

enum vk { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_FUNC };
static const char *const KIND[] = { "undefined", "none", "boolean", "integer", "float", "string", "list", "dict",
                                    "namespace", "function" };

struct list;
struct dict;
struct func;
typedef struct val {
    enum vk k;
    bool tuple;                // a list written as a tuple
    union {
        bool b;
        int64_t i;
        double f;
        struct str *s;
        struct list *l;
        struct dict *d;        // V_DICT and V_NS
        struct func *fn;
    };
} val;

struct list {
    size_t n, cap;
    val *v;
};

struct dict {                  // keys in insertion order, as a JavaScript Map
    size_t n, cap;
    struct str **key;
    val *v;
    const json_t *src;         // the JSON object of `vars` it was made from, or NULL
};

enum fid {
    F_MACRO, F_NAMESPACE, F_RANGE, F_RAISE, F_STRFTIME,
    S_UPPER, S_LOWER, S_STRIP, S_TITLE, S_CAPITALIZE, S_RSTRIP, S_LSTRIP, S_STARTSWITH, S_ENDSWITH, S_SPLIT, S_REPLACE,
    D_GET, D_ITEMS, D_KEYS, D_VALUES
};
static const char *const STR_METHODS[] = { "upper", "lower", "strip", "title", "capitalize", "rstrip", "lstrip",
                                           "startswith", "endswith", "split", "replace" };
static const char *const DICT_METHODS[] = { "get", "items", "keys", "values" };

struct func {
    enum fid id;
    val self;                  // the string or dict of a method
    const struct node *macro;
};

struct env {
    struct env *up;
    size_t n, cap;
    struct str **name;
    val *v;
};

struct sb {
    char *p;
    size_t n, cap;
};

enum { CTL_NONE, CTL_BREAK, CTL_CONT };

struct run {
    struct ctx c;
    const struct jinja_opts *o;
    struct sb *out;
    int capture;               // > 0 while writing into a captured block or a macro's result
    long steps;
    int depth;
    int ctl;
    struct tm day;             // strftime_now's date
    struct str *loop_keys[9], *loop_name;
};

static const val UNDEF = { .k = V_UNDEF };
static const val NONE = { .k = V_NONE };

static val mk_bool(bool b) { return (val){ .k = V_BOOL, .b = b }; }
static val mk_int(int64_t i) { return (val){ .k = V_INT, .i = i }; }
static val mk_float(double f) { return (val){ .k = V_FLOAT, .f = f }; }
static val mk_str(struct str *s) { return (val){ .k = V_STR, .s = s }; }

static _Noreturn void rfail(struct run *r, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static _Noreturn void rfail(struct run *r, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    failf(&r->c, line, "%s", msg);
}

static val mk_cstr(struct run *r, const char *p, size_t n) { return mk_str(str_new(&r->c, p, n)); }

static struct list *list_new(struct run *r, size_t cap)
{
    struct list *l = alloc(&r->c, sizeof *l);
    l->n = 0;
    l->cap = cap;
    l->v = cap ? alloc(&r->c, cap * sizeof *l->v) : NULL;
    return l;
}

static void list_push(struct run *r, struct list *l, val v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        val *nv = alloc(&r->c, cap * sizeof *nv);
        if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

static val mk_list(struct list *l) { return (val){ .k = V_LIST, .l = l }; }

static struct dict *dict_new(struct run *r)
{
    struct dict *d = alloc(&r->c, sizeof *d);
    memset(d, 0, sizeof *d);
    return d;
}

static val *dict_get(const struct dict *d, const char *k, size_t n)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->key[i]->n == n && memcmp(d->key[i]->p, k, n) == 0) return &d->v[i];
    return NULL;
}

static void dict_set(struct run *r, struct dict *d, struct str *k, val v)
{
    val *old = dict_get(d, k->p, k->n);
    if (old) { *old = v; return; }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 8;
        struct str **nk = alloc(&r->c, cap * sizeof *nk);
        val *nv = alloc(&r->c, cap * sizeof *nv);
        if (d->n) {
            memcpy(nk, d->key, d->n * sizeof *nk);
            memcpy(nv, d->v, d->n * sizeof *nv);
        }
        d->key = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->key[d->n] = k;
    d->v[d->n++] = v;
}

static val mk_func(struct run *r, enum fid id, val self, const struct node *macro)
{
    struct func *f = alloc(&r->c, sizeof *f);
    f->id = id;
    f->self = self;
    f->macro = macro;
    return (val){ .k = V_FUNC, .fn = f };
}

static struct env *env_new(struct run *r, struct env *up)
{
    struct env *e = alloc(&r->c, sizeof *e);
    memset(e, 0, sizeof *e);
    e->up = up;
    return e;
}

static val *env_find(struct env *e, const char *name)
{
    for (; e; e = e->up)
        for (size_t i = 0; i < e->n; i++)
            if (strcmp(e->name[i]->p, name) == 0) return &e->v[i];
    return NULL;
}

static void env_set(struct run *r, struct env *e, struct str *name, val v)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->name[i]->p, name->p) == 0) { e->v[i] = v; return; }
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 8;
        struct str **nn = alloc(&r->c, cap * sizeof *nn);
        val *nv = alloc(&r->c, cap * sizeof *nv);
        if (e->n) {
            memcpy(nn, e->name, e->n * sizeof *nn);
            memcpy(nv, e->v, e->n * sizeof *nv);
        }
        e->name = nn;
        e->v = nv;
        e->cap = cap;
    }
    e->name[e->n] = name;
    e->v[e->n++] = v;
}

static void env_set_c(struct run *r, struct env *e, const char *name, val v)
{
    env_set(r, e, str_new(&r->c, name, strlen(name)), v);
}

static val from_json(struct run *r, const json_t *j, int depth)
{
    if (depth > 1000) rfail(r, 0, "a variable nests more than 1000 levels deep");
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        struct dict *d = dict_new(r);
        d->src = j;
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)j, k, v) dict_set(r, d, str_new(&r->c, k, strlen(k)), from_json(r, v, depth + 1));
        return (val){ .k = V_DICT, .d = d };
    }
    case JSON_ARRAY: {
        struct list *l = list_new(r, json_array_size(j));
        for (size_t i = 0; i < json_array_size(j); i++) list_push(r, l, from_json(r, json_array_get(j, i), depth + 1));
        return mk_list(l);
    }
    case JSON_STRING: return mk_cstr(r, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return mk_int(json_integer_value(j));
    case JSON_REAL: {   // JSON.parse makes 2.0 a JavaScript integer
        double f = json_real_value(j);
        return f == floor(f) && fabs(f) < 9e15 ? mk_int((int64_t)f) : mk_float(f);
    }
    case JSON_TRUE: return mk_bool(true);
    case JSON_FALSE: return mk_bool(false);
    default: return NONE;
    }
}

// ---------------------------------------------------------------------------------------------
// text: string builders, number and JSON formatting as JavaScript writes them

static void sb_add(struct run *r, struct sb *b, const char *p, size_t n)
{
    if (n == 0) return;   // p (and an empty builder's buffer) may be NULL: memcpy must not see them
    if (n > b->cap - b->n) {
        if (b->n + n > JINJA_MAX_OUTPUT) rfail(r, 0, "the rendered text exceeds %u MB", JINJA_MAX_OUTPUT >> 20);
        size_t cap = 2 * (b->n + n) > 256 ? 2 * (b->n + n) : 256;
        char *np = alloc(&r->c, cap);
        if (b->n) memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void sb_adds(struct run *r, struct sb *b, const char *s) { sb_add(r, b, s, strlen(s)); }

static struct str *sb_str(struct run *r, const struct sb *b) { return str_new(&r->c, b->p, b->n); }

// Number.prototype.toString: the shortest digits that read back, fixed notation for
// 1e-7 < |d| < 1e21, else exponent notation ("1e+21").
static void js_number(double d, char *out, size_t n)
{
    if (isnan(d)) { snprintf(out, n, "NaN"); return; }
    if (isinf(d)) { snprintf(out, n, d < 0 ? "-Infinity" : "Infinity"); return; }
    if (d == 0) { snprintf(out, n, "0"); return; }
    char buf[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, d);
        if (strtod(buf, NULL) == d) break;
    }
    char digits[24];
    size_t k = 0;
    const char *q = buf + (buf[0] == '-');
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[k++] = *q;
    digits[k] = 0;
    int e = atoi(q + 1) + 1;   // position of the decimal point
    char *o = out;
    size_t left = n;
#define PUT(...) do { int w_ = snprintf(o, left, __VA_ARGS__); if (w_ > 0 && (size_t)w_ < left) { o += w_; left -= (size_t)w_; } } while (0)
    if (d < 0) PUT("-");
    if ((int)k <= e && e <= 21) {
        PUT("%s", digits);
        for (int i = (int)k; i < e; i++) PUT("0");
    } else if (0 < e && e <= 21) {
        PUT("%.*s.%s", e, digits, digits + e);
    } else if (-6 < e && e <= 0) {
        PUT("0.");
        for (int i = e; i < 0; i++) PUT("0");
        PUT("%s", digits);
    } else {
        PUT("%c", digits[0]);
        if (k > 1) PUT(".%s", digits + 1);
        PUT("e%c%d", e - 1 >= 0 ? '+' : '-', abs(e - 1));
    }
#undef PUT
}

// FloatValue.toString: integral values keep one decimal ("3.0").
static void js_float(double d, char *out, size_t n)
{
    if (d == 0 && signbit(d)) snprintf(out, n, "-0.0");
    else if (isfinite(d) && d == floor(d) && fabs(d) < 1e21) snprintf(out, n, "%.1f", d);
    else js_number(d, out, n);
}

struct json_opts {
    int indent;                // 0: none
    bool ascii, sort, undef_null;
    const char *item_sep, *key_sep;
};

static void json_quote(struct run *r, struct sb *b, const char *p, size_t n, bool ascii)
{
    sb_add(r, b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)p[i];
        char esc[16];
        const char *e = NULL;
        switch (ch) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        }
        if (e) { sb_adds(r, b, e); i++; continue; }
        if (ch < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            sb_adds(r, b, esc);
            i++;
            continue;
        }
        size_t k;
        int32_t cp = utf8_cp(p + i, n - i, &k);
        if (ascii && cp >= 0x7f) {
            if (cp >= 0x10000) {
                snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", cp);
            }
            sb_adds(r, b, esc);
        } else {
            sb_add(r, b, p + i, k);
        }
        i += k;
    }
    sb_add(r, b, "\"", 1);
}

static void pad(struct run *r, struct sb *b, const struct json_opts *o, int depth)
{
    sb_add(r, b, "\n", 1);
    for (int i = 0; i < depth * o->indent; i++) sb_add(r, b, " ", 1);
}

static int key_cmp(const void *a, const void *b)
{
    const struct str *x = *(struct str *const *)a, *y = *(struct str *const *)b;
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->p, y->p, n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

static void to_json(struct run *r, struct sb *b, val v, const struct json_opts *o, int depth)
{
    char num[40];
    if (depth > 1000) rfail(r, 0, "a value nests more than 1000 levels deep");
    switch (v.k) {
    case V_UNDEF: sb_adds(r, b, o->undef_null ? "null" : "undefined"); return;
    case V_NONE: sb_adds(r, b, "null"); return;
    case V_BOOL: sb_adds(r, b, v.b ? "true" : "false"); return;
    case V_INT: snprintf(num, sizeof num, "%" PRId64, v.i); sb_adds(r, b, num); return;
    case V_FLOAT:
        if (!isfinite(v.f)) { sb_adds(r, b, "null"); return; }
        js_number(v.f, num, sizeof num);
        sb_adds(r, b, num);
        return;
    case V_STR: json_quote(r, b, v.s->p, v.s->n, o->ascii); return;
    case V_LIST:
        sb_add(r, b, "[", 1);
        for (size_t i = 0; i < v.l->n; i++) {
            if (i) sb_adds(r, b, o->item_sep);
            if (o->indent) pad(r, b, o, depth + 1);
            to_json(r, b, v.l->v[i], o, depth + 1);
        }
        if (o->indent && v.l->n) pad(r, b, o, depth);
        sb_add(r, b, "]", 1);
        return;
    case V_DICT:
    case V_NS: {
        size_t n = v.d->n;
        struct str **keys = alloc(&r->c, (n ? n : 1) * sizeof *keys);
        if (n) memcpy(keys, v.d->key, n * sizeof *keys);
        if (o->sort) qsort(keys, n, sizeof *keys, key_cmp);
        sb_add(r, b, "{", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) sb_adds(r, b, o->item_sep);
            if (o->indent) pad(r, b, o, depth + 1);
            json_quote(r, b, keys[i]->p, keys[i]->n, o->ascii);
            sb_adds(r, b, o->key_sep);
            to_json(r, b, *dict_get(v.d, keys[i]->p, keys[i]->n), o, depth + 1);
        }
        if (o->indent && n) pad(r, b, o, depth);
        sb_add(r, b, "}", 1);
        return;
    }
    case V_FUNC: rfail(r, 0, "cannot convert a function to JSON");
    }
}

static struct str *json_of(struct run *r, val v, struct json_opts o)
{
    if (!o.item_sep) o.item_sep = o.indent ? "," : ", ";
    if (!o.key_sep) o.key_sep = ": ";
    struct sb b = { 0 };
    to_json(r, &b, v, &o, 0);
    return sb_str(r, &b);
}

// The text {{ v }} writes (RuntimeValue.toString); none and undefined write nothing.
static struct str *to_text(struct run *r, val v, int line)
{
    char num[40];
    switch (v.k) {
    case V_UNDEF:
    case V_NONE: return str_new(&r->c, "", 0);
    case V_BOOL: return str_new(&r->c, v.b ? "true" : "false", v.b ? 4 : 5);
    case V_INT: snprintf(num, sizeof num, "%" PRId64, v.i); return str_new(&r->c, num, strlen(num));
    case V_FLOAT: js_float(v.f, num, sizeof num); return str_new(&r->c, num, strlen(num));
    case V_STR: return v.s;
    case V_LIST:
    case V_DICT:
    case V_NS: return json_of(r, v, (struct json_opts){ 0 });
    case V_FUNC: break;
    }
    rfail(r, line, "cannot write a function as text");
}

// String(x.value), which + and ~ use: a float 2.0 is "2"; lists and dicts are refused.
static struct str *concat_text(struct run *r, val v, int line)
{
    char num[40];
    if (v.k == V_FLOAT) {
        js_number(v.f, num, sizeof num);
        return str_new(&r->c, num, strlen(num));
    }
    if (v.k == V_BOOL || v.k == V_INT || v.k == V_STR) return to_text(r, v, line);
    rfail(r, line, "cannot join a %s to a string", KIND[v.k]);
}

// ---------------------------------------------------------------------------------------------
// truth, equality, comparison

static bool truthy(val v)
{
    switch (v.k) {
    case V_UNDEF:
    case V_NONE: return false;
    case V_BOOL: return v.b;
    case V_INT: return v.i != 0;
    case V_FLOAT: return v.f != 0 && !isnan(v.f);
    case V_STR: return v.s->n > 0;
    case V_LIST: return v.l->n > 0;
    case V_DICT: return v.d->n > 0;
    default: return true;
    }
}

static bool is_num(val v) { return v.k == V_INT || v.k == V_FLOAT; }
static double num_of(val v) { return v.k == V_INT ? (double)v.i : v.k == V_FLOAT ? v.f : v.k == V_BOOL ? v.b : NAN; }

// Number(s) of JavaScript: surrounding whitespace ignored, "" is 0, otherwise a decimal literal.
static double js_to_number(const struct str *s)
{
    const char *p = s->p, *end = s->p + s->n;
    size_t k;
    while ((k = space_at(p, (size_t)(end - p), true))) p += k;
    while ((k = space_before(p, (size_t)(end - p), true))) end -= k;
    if (p == end) return 0;
    char *e;
    double d = strtod(p, &e);
    return e == end && !strpbrk(p, "xXnN") ? d : NAN;
}

// ===
static bool strict_eq(val a, val b)
{
    if (is_num(a) && is_num(b)) return num_of(a) == num_of(b);
    if (a.k != b.k) return false;
    switch (a.k) {
    case V_UNDEF:
    case V_NONE: return true;
    case V_BOOL: return a.b == b.b;
    case V_STR: return a.s->n == b.s->n && memcmp(a.s->p, b.s->p, a.s->n) == 0;
    case V_LIST: return a.l == b.l;
    case V_DICT:
    case V_NS: return a.d == b.d;
    case V_FUNC: return a.fn == b.fn;
    default: return false;
    }
}

// == on the JavaScript values (what @huggingface/jinja compares)
static bool loose_eq(val a, val b)
{
    bool an = a.k == V_UNDEF || a.k == V_NONE, bn = b.k == V_UNDEF || b.k == V_NONE;
    if (an || bn) return an && bn;
    bool anum = is_num(a) || a.k == V_BOOL, bnum = is_num(b) || b.k == V_BOOL;
    if (anum && bnum) return num_of(a) == num_of(b);
    if (a.k == V_STR && bnum) return js_to_number(a.s) == num_of(b);
    if (anum && b.k == V_STR) return num_of(a) == js_to_number(b.s);
    return strict_eq(a, b);
}

// compareRuntimeValues (sort): numbers and booleans together, strings (case-folded unless
// case_sensitive), none with none, undefined with undefined.
static int compare(struct run *r, val a, val b, bool case_sensitive, int line)
{
    if (a.k == V_NONE || b.k == V_NONE || a.k == V_UNDEF || b.k == V_UNDEF) {
        if (a.k == b.k) return 0;
        rfail(r, line, "cannot compare %s with %s", KIND[a.k], KIND[b.k]);
    }
    bool an = is_num(a) || a.k == V_BOOL, bn = is_num(b) || b.k == V_BOOL;
    if (an && bn) return num_of(a) < num_of(b) ? -1 : num_of(a) > num_of(b);
    if (a.k != V_STR || b.k != V_STR) rfail(r, line, "cannot compare %s with %s", KIND[a.k], KIND[b.k]);
    if (case_sensitive) return key_cmp(&a.s, &b.s);
    // toLowerCase of both (ASCII and the rest through utf8proc), then code unit order
    for (size_t i = 0, j = 0;; ) {
        if (i >= a.s->n || j >= b.s->n) return (i < a.s->n) - (j < b.s->n);
        size_t ki, kj;
        int32_t x = utf8proc_tolower(utf8_cp(a.s->p + i, a.s->n - i, &ki));
        int32_t y = utf8proc_tolower(utf8_cp(b.s->p + j, b.s->n - j, &kj));
        if (x != y) return x < y ? -1 : 1;
        i += ki;
        j += kj;
    }
}

// ---------------------------------------------------------------------------------------------
// strings by code point

// Byte offsets of the code points of s (n + 1 entries, the last is s->n).
static size_t *cp_offsets(struct run *r, const struct str *s, size_t *n)
{
    size_t c = cp_count(s->p, s->n), *off = alloc(&r->c, (c + 1) * sizeof *off), k = 0;
    for (size_t i = 0; i < s->n; i += utf8_len(s->p + i, s->n - i)) off[k++] = i;
    off[k] = s->n;
    *n = c;
    return off;
}

// utils.ts slice(): Python's [start:stop:step] on n items; calls put(i) for each index.
static void slice_indices(struct run *r, size_t n, val vstart, val vstop, val vstep, int line,
                          void (*put)(void *, size_t), void *ctx)
{
    for (int i = 0; i < 3; i++) {
        val v = i == 0 ? vstart : i == 1 ? vstop : vstep;
        if (v.k != V_INT && v.k != V_UNDEF) rfail(r, line, "slice bounds must be integers, not %s", KIND[v.k]);
    }
    int64_t len = (int64_t)n, step = vstep.k == V_INT ? vstep.i : 1, start, stop;
    if (step == 0) rfail(r, line, "slice step cannot be zero");
    if (step > 0) {
        start = vstart.k == V_INT ? vstart.i : 0;
        stop = vstop.k == V_INT ? vstop.i : len;
        start = start < 0 ? (len + start > 0 ? len + start : 0) : (start < len ? start : len);
        stop = stop < 0 ? (len + stop > 0 ? len + stop : 0) : (stop < len ? stop : len);
        for (int64_t i = start; i < stop; i += step) put(ctx, (size_t)i);
    } else {
        start = vstart.k == V_INT ? vstart.i : len - 1;
        stop = vstop.k == V_INT ? vstop.i : -1;
        start = start < 0 ? (len + start > -1 ? len + start : -1) : (start < len - 1 ? start : len - 1);
        stop = stop < -1 ? (len + stop > -1 ? len + stop : -1) : (stop < len - 1 ? stop : len - 1);
        for (int64_t i = start; i > stop; i += step) put(ctx, (size_t)i);
    }
}

struct slice_ctx {
    struct run *r;
    val src;
    size_t *off;
    struct list *l;
    struct sb b;
};

static void slice_put(void *p, size_t i)
{
    struct slice_ctx *s = p;
    if (s->src.k == V_LIST) list_push(s->r, s->l, s->src.l->v[i]);
    else sb_add(s->r, &s->b, s->src.s->p + s->off[i], s->off[i + 1] - s->off[i]);
}

static val do_slice(struct run *r, val obj, val a, val b, val c, int line)
{
    if (obj.k != V_LIST && obj.k != V_STR) rfail(r, line, "cannot slice a %s", KIND[obj.k]);
    struct slice_ctx s = { .r = r, .src = obj };
    size_t n;
    if (obj.k == V_LIST) {
        s.l = list_new(r, 0);
        n = obj.l->n;
    } else {
        s.off = cp_offsets(r, obj.s, &n);
    }
    slice_indices(r, n, a, b, c, line, slice_put, &s);
    return obj.k == V_LIST ? mk_list(s.l) : mk_str(sb_str(r, &s.b));
}

// x[i] with a negative i counting from the end; undefined when out of range.
static val index_at(struct run *r, val obj, int64_t i)
{
    size_t n;
    size_t *off = NULL;
    if (obj.k == V_LIST) n = obj.l->n;
    else off = cp_offsets(r, obj.s, &n);
    if (i < 0) i += (int64_t)n;
    if (i < 0 || i >= (int64_t)n) return UNDEF;
    return obj.k == V_LIST ? obj.l->v[i] : mk_cstr(r, obj.s->p + off[i], off[i + 1] - off[i]);
}

static val member(struct run *r, val obj, val prop, int line)
{
    if (obj.k == V_DICT || obj.k == V_NS) {
        if (prop.k != V_STR) rfail(r, line, "cannot index a %s with a %s", KIND[obj.k], KIND[prop.k]);
        val *v = dict_get(obj.d, prop.s->p, prop.s->n);
        if (v) return *v;
        for (size_t i = 0; obj.k == V_DICT && i < sizeof DICT_METHODS / sizeof DICT_METHODS[0]; i++)
            if (strcmp(prop.s->p, DICT_METHODS[i]) == 0) return mk_func(r, (enum fid)(D_GET + i), obj, NULL);
        return UNDEF;
    }
    if (obj.k == V_LIST || obj.k == V_STR) {
        if (prop.k == V_INT) return index_at(r, obj, prop.i);
        if (prop.k != V_STR) rfail(r, line, "cannot index a %s with a %s", KIND[obj.k], KIND[prop.k]);
        if (str_is(prop.s, "length")) return mk_int((int64_t)(obj.k == V_LIST ? obj.l->n : cp_count(obj.s->p, obj.s->n)));
        for (size_t i = 0; obj.k == V_STR && i < sizeof STR_METHODS / sizeof STR_METHODS[0]; i++)
            if (strcmp(prop.s->p, STR_METHODS[i]) == 0) return mk_func(r, (enum fid)(S_UPPER + i), obj, NULL);
        return UNDEF;
    }
    if (prop.k != V_STR) rfail(r, line, "cannot index a %s with a %s", KIND[obj.k], KIND[prop.k]);
    return UNDEF;
}

// ---------------------------------------------------------------------------------------------
// string methods and filters on strings

static val map_case(struct run *r, const struct str *s, bool upper)
{
    struct sb b = { 0 };
    for (size_t i = 0; i < s->n;) {
        size_t k;
        int32_t cp = utf8_cp(s->p + i, s->n - i, &k);
        utf8proc_uint8_t enc[4];
        int32_t m = upper ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
        sb_add(r, &b, (const char *)enc, (size_t)utf8proc_encode_char(m, enc));
        i += k;
    }
    return mk_str(sb_str(r, &b));
}

static bool in_chars(const struct str *chars, int32_t cp)
{
    for (size_t i = 0; i < chars->n;) {
        size_t k;
        if (utf8_cp(chars->p + i, chars->n - i, &k) == cp) return true;
        i += k;
    }
    return false;
}

// Python's str.strip/lstrip/rstrip: whitespace (str.isspace()), or the characters of chars.
static val py_strip(struct run *r, const struct str *s, const struct str *chars, bool left, bool right)
{
    const char *p = s->p;
    size_t n = s->n;
    while (left && n) {
        size_t k;
        int32_t cp = utf8_cp(p, n, &k);
        if (chars ? !in_chars(chars, cp) : !is_space_cp(cp, false)) break;
        p += k;
        n -= k;
    }
    while (right && n) {
        size_t i = n - 1;
        while (i > 0 && n - i < 4 && ((unsigned char)p[i] & 0xc0) == 0x80) i--;
        size_t k;
        int32_t cp = utf8_cp(p + i, n - i, &k);
        if (chars ? !in_chars(chars, cp) : !is_space_cp(cp, false)) break;
        n = i;
    }
    return mk_cstr(r, p, n);
}

static bool has_prefix(const struct str *s, const struct str *x, bool suffix)
{
    return x->n <= s->n && memcmp(suffix ? s->p + s->n - x->n : s->p, x->p, x->n) == 0;
}

static val starts_ends(struct run *r, const struct str *s, val arg, bool suffix, int line)
{
    if (arg.k == V_STR) return mk_bool(has_prefix(s, arg.s, suffix));
    if (arg.k != V_LIST) rfail(r, line, "%s() expects a string or a tuple of strings", suffix ? "endswith" : "startswith");
    for (size_t i = 0; i < arg.l->n; i++) {
        if (arg.l->v[i].k != V_STR) rfail(r, line, "%s() expects strings", suffix ? "endswith" : "startswith");
        if (has_prefix(s, arg.l->v[i].s, suffix)) return mk_bool(true);
    }
    return mk_bool(false);
}

static const char *find_bytes(const char *h, size_t hn, const char *nd, size_t nn)
{
    return nn == 0 ? h : memmem(h, hn, nd, nn);
}

static val split(struct run *r, const struct str *s, val sep, val maxsplit, int line)
{
    if (sep.k != V_STR && sep.k != V_NONE && sep.k != V_UNDEF) rfail(r, line, "split(): the separator must be a string or none");
    if (maxsplit.k != V_INT && maxsplit.k != V_UNDEF) rfail(r, line, "split(): maxsplit must be an integer");
    int64_t max = maxsplit.k == V_INT ? maxsplit.i : -1;
    struct list *l = list_new(r, 0);
    if (sep.k != V_STR) {   // runs of whitespace
        const char *p = s->p, *end = s->p + s->n;
        size_t k;
        while ((k = space_at(p, (size_t)(end - p), true))) p += k;
        while (p < end) {
            const char *w = p;
            while (p < end && !space_at(p, (size_t)(end - p), true)) p += utf8_len(p, (size_t)(end - p));
            if (max != -1 && (int64_t)l->n >= max) {
                list_push(r, l, mk_cstr(r, w, (size_t)(end - w)));
                return mk_list(l);
            }
            list_push(r, l, mk_cstr(r, w, (size_t)(p - w)));
            while ((k = space_at(p, (size_t)(end - p), true))) p += k;
        }
        return mk_list(l);
    }
    if (sep.s->n == 0) rfail(r, line, "split(): empty separator");
    const char *p = s->p, *end = s->p + s->n, *q;
    while ((max == -1 || (int64_t)l->n < max) && (q = find_bytes(p, (size_t)(end - p), sep.s->p, sep.s->n))) {
        list_push(r, l, mk_cstr(r, p, (size_t)(q - p)));
        p = q + sep.s->n;
    }
    list_push(r, l, mk_cstr(r, p, (size_t)(end - p)));
    return mk_list(l);
}

static val replace(struct run *r, const struct str *s, val old, val new, val count, int line)
{
    if (old.k != V_STR || new.k != V_STR) rfail(r, line, "replace() expects two strings");
    if (count.k != V_INT && count.k != V_NONE && count.k != V_UNDEF) rfail(r, line, "replace(): count must be an integer");
    int64_t left = count.k == V_INT && count.i >= 0 ? count.i : INT64_MAX;
    struct sb b = { 0 };
    const char *p = s->p, *end = s->p + s->n;
    if (old.s->n == 0) {   // before every code point and at the end
        for (;;) {
            if (left > 0) { sb_add(r, &b, new.s->p, new.s->n); left--; }
            if (p >= end) break;
            size_t k = utf8_len(p, (size_t)(end - p));
            sb_add(r, &b, p, k);
            p += k;
        }
        return mk_str(sb_str(r, &b));
    }
    const char *q;
    while (left > 0 && (q = find_bytes(p, (size_t)(end - p), old.s->p, old.s->n))) {
        sb_add(r, &b, p, (size_t)(q - p));
        sb_add(r, &b, new.s->p, new.s->n);
        p = q + old.s->n;
        left--;
    }
    sb_add(r, &b, p, (size_t)(end - p));
    return mk_str(sb_str(r, &b));
}

// titleCase: an ASCII word character after a non-word one is upper-cased (the rest is kept).
static val title(struct run *r, const struct str *s)
{
    struct str *o = str_new(&r->c, s->p, s->n);
    for (size_t i = 0; i < o->n; i++)
        if (is_word(o->p[i]) && (i == 0 || !is_word(o->p[i - 1])) && o->p[i] >= 'a' && o->p[i] <= 'z') o->p[i] -= 32;
    return mk_str(o);
}

static val capitalize(struct run *r, const struct str *s)
{
    if (!s->n) return mk_str((struct str *)s);
    size_t k;
    int32_t cp = utf8proc_toupper(utf8_cp(s->p, s->n, &k));
    utf8proc_uint8_t enc[4];
    size_t e = (size_t)utf8proc_encode_char(cp, enc);
    return mk_str(str_cat(&r->c, (const char *)enc, e, s->p + k, s->n - k));
}

static val indent(struct run *r, const struct str *s, val width, val first, val blank, int line)
{
    if (width.k != V_INT) rfail(r, line, "indent(): width must be an integer");
    if (width.i < 0 || width.i > 1000) rfail(r, line, "indent(): width out of range");
    struct sb b = { 0 };
    const char *p = s->p, *end = s->p + s->n;
    for (size_t i = 0;; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        if (!((!truthy(first) && i == 0) || (!truthy(blank) && e == p)))
            for (int64_t k = 0; k < width.i; k++) sb_add(r, &b, " ", 1);
        sb_add(r, &b, p, (size_t)(e - p));
        if (!nl) break;
        sb_add(r, &b, "\n", 1);
        p = nl + 1;
    }
    return mk_str(sb_str(r, &b));
}

// strftime of utils.ts: %Y %m %d %b %B %H %M %%, other directives kept as written.
static val strftime_day(struct run *r, val fmt, int line)
{
    static const char *const months[] = { "January", "February", "March", "April", "May", "June", "July",
                                          "August", "September", "October", "November", "December" };
    if (fmt.k != V_STR) rfail(r, line, "strftime_now() expects a format string");
    struct sb b = { 0 };
    char tmp[16];
    for (size_t i = 0; i < fmt.s->n; i++) {
        char d = i + 1 < fmt.s->n ? fmt.s->p[i + 1] : 0;
        if (fmt.s->p[i] != '%' || !d || !strchr("YmdbBHM%", d)) { sb_add(r, &b, fmt.s->p + i, 1); continue; }
        i++;
        switch (d) {
        case 'Y': snprintf(tmp, sizeof tmp, "%d", r->day.tm_year + 1900); break;
        case 'm': snprintf(tmp, sizeof tmp, "%02d", r->day.tm_mon + 1); break;
        case 'd': snprintf(tmp, sizeof tmp, "%02d", r->day.tm_mday); break;
        case 'b': snprintf(tmp, sizeof tmp, "%.3s", months[r->day.tm_mon]); break;
        case 'B': snprintf(tmp, sizeof tmp, "%s", months[r->day.tm_mon]); break;
        case 'H': snprintf(tmp, sizeof tmp, "%02d", r->day.tm_hour); break;
        case 'M': snprintf(tmp, sizeof tmp, "%02d", r->day.tm_min); break;
        default: snprintf(tmp, sizeof tmp, "%%"); break;
        }
        sb_adds(r, &b, tmp);
    }
    return mk_str(sb_str(r, &b));
}

// ---------------------------------------------------------------------------------------------
// calls

struct args {
    val *pos;
    size_t n;
    struct dict *kw;           // keyword arguments, or NULL
};

static val arg(const struct args *a, size_t i, const char *kw)
{
    if (i < a->n) return a->pos[i];
    val *v = kw && a->kw ? dict_get(a->kw, kw, strlen(kw)) : NULL;
    return v ? *v : UNDEF;
}

static void exec(struct run *r, const struct nodes *body, struct env *env);
static val eval(struct run *r, const struct node *e, struct env *env);

static struct str *capture(struct run *r, const struct nodes *body, struct env *env)
{
    struct sb b = { 0 }, *saved = r->out;
    r->out = &b;
    r->capture++;
    exec(r, body, env);
    r->capture--;
    r->out = saved;
    return sb_str(r, &b);
}

static val call_macro(struct run *r, const struct node *m, const struct args *a, struct env *caller, int line)
{
    if (a->n > m->x.n) rfail(r, line, "macro '%s' takes at most %zu arguments", m->s->p, m->x.n);
    struct env *scope = env_new(r, caller);
    size_t used_kw = 0;
    for (size_t i = 0; i < m->x.n; i++) {
        const struct node *p = m->x.v[i];
        struct str *name = p->s;
        val v = i < a->n ? a->pos[i] : UNDEF;
        val *kv = i >= a->n && a->kw ? dict_get(a->kw, name->p, name->n) : NULL;
        if (kv) { v = *kv; used_kw++; }
        env_set(r, scope, name, v);
    }
    if (a->kw && used_kw < a->kw->n) rfail(r, line, "macro '%s' called with an unknown keyword argument", m->s->p);
    for (size_t i = 0; i < m->x.n; i++) {   // defaults, evaluated in the macro's scope
        const struct node *p = m->x.v[i];
        if (p->k == E_KW && env_find(scope, p->s->p)->k == V_UNDEF && (i >= a->n) &&
            !(a->kw && dict_get(a->kw, p->s->p, p->s->n)))
            env_set(r, scope, p->s, eval(r, p->a, scope));
    }
    return mk_str(capture(r, &m->y, scope));
}

static val call_namespace(struct run *r, const struct args *a, int line)
{
    struct dict *d = dict_new(r);
    if (a->n > 1) rfail(r, line, "namespace() takes at most one positional argument");
    if (a->n == 1) {
        val src = a->pos[0];
        if (src.k == V_DICT) {
            for (size_t i = 0; i < src.d->n; i++) dict_set(r, d, src.d->key[i], src.d->v[i]);
        } else if (src.k == V_LIST) {
            for (size_t i = 0; i < src.l->n; i++) {
                val p = src.l->v[i];
                if (p.k != V_LIST || p.l->n != 2 || p.l->v[0].k != V_STR)
                    rfail(r, line, "namespace() expects [key, value] pairs");
                dict_set(r, d, p.l->v[0].s, p.l->v[1]);
            }
        } else {
            rfail(r, line, "namespace() expects a dict or a list of pairs, not a %s", KIND[src.k]);
        }
    }
    for (size_t i = 0; a->kw && i < a->kw->n; i++) dict_set(r, d, a->kw->key[i], a->kw->v[i]);
    return (val){ .k = V_NS, .d = d };
}

static val call_range(struct run *r, const struct args *a, int line)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->pos[i].k != V_INT) rfail(r, line, "range() expects integers");
    if (a->n < 1 || a->n > 3) rfail(r, line, "range() takes 1 to 3 arguments");
    int64_t start = a->n > 1 ? a->pos[0].i : 0, stop = a->n > 1 ? a->pos[1].i : a->pos[0].i, step = a->n > 2 ? a->pos[2].i : 1;
    if (step == 0) rfail(r, line, "range() step must not be zero");
    double count = ceil(((double)stop - (double)start) / (double)step);
    if (count > 1000000) rfail(r, line, "range() of more than 1000000 numbers");
    struct list *l = list_new(r, count > 0 ? (size_t)count : 0);
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) list_push(r, l, mk_int(i));
    return mk_list(l);
}

static val items_of(struct run *r, const struct dict *d, int what)   // 0 items, 1 keys, 2 values
{
    struct list *l = list_new(r, d->n);
    for (size_t i = 0; i < d->n; i++) {
        if (what == 1) { list_push(r, l, mk_str(d->key[i])); continue; }
        if (what == 2) { list_push(r, l, d->v[i]); continue; }
        struct list *p = list_new(r, 2);
        list_push(r, p, mk_str(d->key[i]));
        list_push(r, p, d->v[i]);
        list_push(r, l, mk_list(p));
    }
    return mk_list(l);
}

static val call(struct run *r, val fn, const struct args *a, struct env *env, int line)
{
    if (fn.k != V_FUNC) rfail(r, line, "cannot call a %s", KIND[fn.k]);
    const struct func *f = fn.fn;
    const struct str *s = f->self.k == V_STR ? f->self.s : NULL;
    val s0 = arg(a, 0, NULL);
    switch (f->id) {
    case F_MACRO: return call_macro(r, f->macro, a, env, line);
    case F_NAMESPACE: return call_namespace(r, a, line);
    case F_RANGE: return call_range(r, a, line);
    case F_RAISE: {
        struct str *m = s0.k == V_STR ? s0.s : to_text(r, s0, line);
        rfail(r, line, "the template raised an exception: %s", m->p);
    }
    case F_STRFTIME: return strftime_day(r, s0, line);
    case S_UPPER: return map_case(r, s, true);
    case S_LOWER: return map_case(r, s, false);
    case S_STRIP:
    case S_LSTRIP:
    case S_RSTRIP:
        if (s0.k != V_STR && s0.k != V_NONE && s0.k != V_UNDEF) rfail(r, line, "strip(): expects a string of characters");
        return py_strip(r, s, s0.k == V_STR ? s0.s : NULL, f->id != S_RSTRIP, f->id != S_LSTRIP);
    case S_TITLE: return title(r, s);
    case S_CAPITALIZE: return capitalize(r, s);
    case S_STARTSWITH:
    case S_ENDSWITH:
        if (a->n == 0) rfail(r, line, "startswith()/endswith() need an argument");
        return starts_ends(r, s, s0, f->id == S_ENDSWITH, line);
    case S_SPLIT: return split(r, s, s0, arg(a, 1, NULL), line);
    case S_REPLACE: return replace(r, s, s0, arg(a, 1, NULL), arg(a, 2, "count"), line);
    case D_GET: {
        if (s0.k != V_STR) rfail(r, line, "get(): the key must be a string");
        val *v = dict_get(f->self.d, s0.s->p, s0.s->n);
        return v ? *v : a->n > 1 ? a->pos[1] : NONE;
    }
    case D_ITEMS: return items_of(r, f->self.d, 0);
    case D_KEYS: return items_of(r, f->self.d, 1);
    case D_VALUES: return items_of(r, f->self.d, 2);
    }
    rfail(r, line, "cannot call this function");
}

static void eval_args(struct run *r, const struct nodes *x, struct env *env, struct args *a)
{
    a->pos = alloc(&r->c, (x->n ? x->n : 1) * sizeof *a->pos);
    a->n = 0;
    a->kw = NULL;
    for (size_t i = 0; i < x->n; i++)
        if (x->v[i]->k != E_KW) a->pos[a->n++] = eval(r, x->v[i], env);
    for (size_t i = 0; i < x->n; i++) {
        if (x->v[i]->k != E_KW) continue;
        if (!a->kw) a->kw = dict_new(r);
        if (dict_get(a->kw, x->v[i]->s->p, x->v[i]->s->n)) rfail(r, x->v[i]->line, "keyword argument '%s' given twice", x->v[i]->s->p);
        dict_set(r, a->kw, x->v[i]->s, eval(r, x->v[i]->a, env));
    }
}

// ---------------------------------------------------------------------------------------------
// tests and filters

static bool run_test(struct run *r, const char *name, val v, val b, int line)
{
    if (!strcmp(name, "boolean")) return v.k == V_BOOL;
    if (!strcmp(name, "callable")) return v.k == V_FUNC;
    if (!strcmp(name, "odd") || !strcmp(name, "even")) {
        if (v.k != V_INT) rfail(r, line, "the test '%s' needs an integer, not a %s", name, KIND[v.k]);
        return (v.i % 2 != 0) == (name[0] == 'o');
    }
    if (!strcmp(name, "false")) return v.k == V_BOOL && !v.b;
    if (!strcmp(name, "true")) return v.k == V_BOOL && v.b;
    if (!strcmp(name, "none")) return v.k == V_NONE;
    if (!strcmp(name, "string")) return v.k == V_STR;
    if (!strcmp(name, "number")) return is_num(v);
    if (!strcmp(name, "integer")) return v.k == V_INT;
    if (!strcmp(name, "iterable")) return v.k == V_LIST || v.k == V_STR;
    if (!strcmp(name, "mapping")) return v.k == V_DICT;
    if (!strcmp(name, "sequence")) return v.k == V_LIST || v.k == V_DICT || v.k == V_STR;
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v.k != V_STR) return false;
        val m = map_case(r, v.s, name[0] == 'u');
        return m.s->n == v.s->n && memcmp(m.s->p, v.s->p, v.s->n) == 0;
    }
    if (!strcmp(name, "defined")) return v.k != V_UNDEF;
    if (!strcmp(name, "undefined")) return v.k == V_UNDEF;
    if (!strcmp(name, "equalto") || !strcmp(name, "eq")) return strict_eq(v, b);
    rfail(r, line, "unknown test '%s'", name);
}


struct sort_key {
    bool reverse, case_sensitive;
    val attr;                  // none: the items themselves
    int line;
};

// getAttributeValue: "a.b.0" through dicts and lists; undefined when absent.
static val attr_path(struct run *r, val item, const struct str *path)
{
    const char *p = path->p, *end = path->p + path->n;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const char *e = dot ? dot : end;
        if (item.k == V_DICT || item.k == V_NS) {
            val *v = dict_get(item.d, p, (size_t)(e - p));
            item = v ? *v : UNDEF;
        } else if (item.k == V_LIST) {
            char buf[24];
            snprintf(buf, sizeof buf, "%.*s", (int)(e - p < 20 ? e - p : 20), p);
            char *q;
            long i = strtol(buf, &q, 10);
            if (q == buf || i < 0 || (size_t)i >= item.l->n) return UNDEF;
            item = item.l->v[i];
        } else {
            return UNDEF;
        }
        if (!dot) return item;
        p = dot + 1;
    }
    (void)r;
}

static val sort_value(struct run *r, val item, const struct sort_key *k)
{
    if (k->attr.k == V_NONE || k->attr.k == V_UNDEF) return item;
    char buf[32];
    const struct str *path = k->attr.s;
    if (k->attr.k == V_INT) {
        snprintf(buf, sizeof buf, "%" PRId64, k->attr.i);
        path = str_new(&r->c, buf, strlen(buf));
    }
    return attr_path(r, item, path);
}

// Stable merge sort (Array.prototype.sort is stable).
static void msort(struct run *r, val *v, val *tmp, size_t n, const struct sort_key *k)
{
    if (n < 2) return;
    size_t h = n / 2;
    msort(r, v, tmp, h, k);
    msort(r, v + h, tmp, n - h, k);
    size_t i = 0, j = h, o = 0;
    while (i < h && j < n) {
        int c = compare(r, sort_value(r, v[j], k), sort_value(r, v[i], k), k->case_sensitive, k->line);
        if (k->reverse) c = -c;
        tmp[o++] = c < 0 ? v[j++] : v[i++];
    }
    while (i < h) tmp[o++] = v[i++];
    while (j < n) tmp[o++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}

static val sort_list(struct run *r, const struct list *l, struct sort_key k)
{
    struct list *o = list_new(r, l->n);
    if (l->n) memcpy(o->v, l->v, l->n * sizeof *o->v);
    o->n = l->n;
    val *tmp = alloc(&r->c, (l->n ? l->n : 1) * sizeof *tmp);
    msort(r, o->v, tmp, o->n, &k);
    return mk_list(o);
}

static bool js_parse_number(const struct str *s, bool integer, double *out)
{
    const char *p = s->p, *end = s->p + s->n;
    size_t k;
    while ((k = space_at(p, (size_t)(end - p), true))) p += k;
    const char *q = p;
    if (q < end && (*q == '+' || *q == '-')) q++;
    const char *digits = q;
    while (q < end && is_digit(*q)) q++;
    bool any = q > digits;
    if (!integer && q < end && *q == '.') {
        const char *f = ++q;
        while (q < end && is_digit(*q)) q++;
        any = any || q > f;
        if (any && q < end && (*q == 'e' || *q == 'E')) {
            const char *x = q + 1;
            if (x < end && (*x == '+' || *x == '-')) x++;
            if (x < end && is_digit(*x)) { q = x; while (q < end && is_digit(*q)) q++; }
        }
    }
    if (!any) return false;
    char buf[64];
    snprintf(buf, sizeof buf, "%.*s", (int)(q - p < 60 ? q - p : 60), p);
    *out = integer ? (double)strtoll(buf, NULL, 10) : strtod(buf, NULL);
    return true;
}

static bool bool_arg(struct run *r, val v, bool dflt, const char *what, int line)
{
    if (v.k == V_UNDEF) return dflt;
    if (v.k != V_BOOL) rfail(r, line, "%s must be a boolean", what);
    return v.b;
}

static val filter_select(struct run *r, val v, const struct node *f, const struct args *a, bool select)
{
    for (size_t i = 0; i < v.l->n; i++)
        if (v.l->v[i].k != V_DICT && v.l->v[i].k != V_NS) rfail(r, f->line, "%s needs a list of dicts", f->s->p);
    for (size_t i = 0; i < f->x.n; i++)
        if (f->x.v[i]->k != E_STR) rfail(r, f->line, "the arguments of %s must be strings", f->s->p);
    val attr = arg(a, 0, NULL), test = arg(a, 1, NULL), cmp = arg(a, 2, NULL);
    if (attr.k != V_STR) rfail(r, f->line, "%s needs an attribute name", f->s->p);
    if (test.k == V_STR && !in_list(TESTS, sizeof TESTS / sizeof TESTS[0], test.s->p))
        rfail(r, f->line, "unknown test '%s'", test.s->p);
    struct list *o = list_new(r, 0);
    for (size_t i = 0; i < v.l->n; i++) {
        val *x = dict_get(v.l->v[i].d, attr.s->p, attr.s->n);
        bool ok = x && (test.k == V_STR ? run_test(r, test.s->p, *x, cmp, f->line) : truthy(*x));
        if (ok == select) list_push(r, o, v.l->v[i]);
    }
    return mk_list(o);
}

static val filter_map(struct run *r, val v, const struct args *a, int line)
{
    val attr = arg(a, (size_t)-1, "attribute"), dflt = arg(a, (size_t)-1, "default");
    if (attr.k == V_UNDEF) rfail(r, line, "map() without attribute= is not supported");
    if (attr.k != V_STR) rfail(r, line, "map(): attribute must be a string");
    struct list *o = list_new(r, v.l->n);
    for (size_t i = 0; i < v.l->n; i++) {
        if (v.l->v[i].k != V_DICT && v.l->v[i].k != V_NS) rfail(r, line, "map() needs a list of dicts");
        val x = attr_path(r, v.l->v[i], attr.s);
        list_push(r, o, x.k == V_UNDEF ? dflt : x);
    }
    return mk_list(o);
}

static val join(struct run *r, val v, val sep, int line)
{
    if (sep.k == V_UNDEF) sep = mk_cstr(r, "", 0);
    if (sep.k != V_STR) rfail(r, line, "join(): the separator must be a string");
    struct sb b = { 0 };
    if (v.k == V_STR) {
        for (size_t i = 0; i < v.s->n;) {
            size_t k = utf8_len(v.s->p + i, v.s->n - i);
            if (i) sb_add(r, &b, sep.s->p, sep.s->n);
            sb_add(r, &b, v.s->p + i, k);
            i += k;
        }
        return mk_str(sb_str(r, &b));
    }
    for (size_t i = 0; i < v.l->n; i++) {
        if (i) sb_add(r, &b, sep.s->p, sep.s->n);
        val x = v.l->v[i];
        if (x.k != V_NONE && x.k != V_UNDEF) {
            struct str *t = concat_text(r, x, line);
            sb_add(r, &b, t->p, t->n);
        }
    }
    return mk_str(sb_str(r, &b));
}

static val to_number(struct run *r, val v, bool integer, val dflt, bool called, int line)
{
    double d;
    switch (v.k) {
    case V_STR:
        if (js_parse_number(v.s, integer, &d)) return integer ? mk_int((int64_t)d) : mk_float(d);
        return dflt.k != V_UNDEF ? dflt : integer ? mk_int(0) : mk_float(0);
    case V_INT:
    case V_FLOAT:
        if (called) return v;
        return integer ? mk_int((int64_t)floor(num_of(v))) : mk_float(num_of(v));
    case V_BOOL: return integer ? mk_int(v.b) : mk_float(v.b);
    default: rfail(r, line, "cannot apply the filter '%s' to a %s", integer ? "int" : "float", KIND[v.k]);
    }
}

static val apply_filter(struct run *r, val v, const struct node *f, struct env *env)
{
    const char *name = f->s->p;
    int line = f->line;
    struct args a = { 0 };
    if (f->flag) eval_args(r, &f->x, env, &a);
    if (!strcmp(name, "safe")) return v;
    if (!strcmp(name, "tojson")) {
        struct json_opts o = { .undef_null = true };
        val ind = arg(&a, (size_t)-1, "indent"), sep = arg(&a, (size_t)-1, "separators");
        if (ind.k != V_INT && ind.k != V_NONE && ind.k != V_UNDEF) rfail(r, line, "tojson(): indent must be an integer");
        if (ind.k == V_INT && (ind.i < 0 || ind.i > 100)) rfail(r, line, "tojson(): indent out of range");
        o.indent = ind.k == V_INT ? (int)ind.i : 0;
        o.ascii = bool_arg(r, arg(&a, (size_t)-1, "ensure_ascii"), false, "tojson(): ensure_ascii", line);
        o.sort = bool_arg(r, arg(&a, (size_t)-1, "sort_keys"), false, "tojson(): sort_keys", line);
        if (sep.k == V_LIST) {
            if (sep.l->n != 2 || sep.l->v[0].k != V_STR || sep.l->v[1].k != V_STR)
                rfail(r, line, "tojson(): separators must be two strings");
            o.item_sep = sep.l->v[0].s->p;
            o.key_sep = sep.l->v[1].s->p;
        } else if (sep.k != V_NONE && sep.k != V_UNDEF) {
            rfail(r, line, "tojson(): separators must be two strings");
        }
        return mk_str(json_of(r, v, o));
    }
    if (!strcmp(name, "default")) {
        val d = a.n > 0 ? a.pos[0] : mk_cstr(r, "", 0);
        bool b = bool_arg(r, arg(&a, 1, "boolean"), false, "default(): boolean", line);
        return v.k == V_UNDEF || (b && !truthy(v)) ? d : v;
    }
    if (!strcmp(name, "join") && (v.k == V_LIST || (v.k == V_STR && f->flag)))
        return join(r, v, arg(&a, 0, "separator"), line);
    if (!strcmp(name, "int") || !strcmp(name, "float"))
        return to_number(r, v, name[0] == 'i', arg(&a, 0, "default"), f->flag, line);
    if (v.k == V_LIST) {
        const struct list *l = v.l;
        if (!strcmp(name, "list") && !f->flag) return v;
        if (!strcmp(name, "first") && !f->flag) return l->n ? l->v[0] : UNDEF;
        if (!strcmp(name, "last") && !f->flag) return l->n ? l->v[l->n - 1] : UNDEF;
        if (!strcmp(name, "length") && !f->flag) return mk_int((int64_t)l->n);
        if (!strcmp(name, "string") && !f->flag) return mk_str(json_of(r, v, (struct json_opts){ 0 }));
        if (!strcmp(name, "reverse") && !f->flag) {
            struct list *o = list_new(r, l->n);
            for (size_t i = l->n; i-- > 0;) list_push(r, o, l->v[i]);
            return mk_list(o);
        }
        if (!strcmp(name, "unique") && !f->flag) {
            struct list *o = list_new(r, 0);
            for (size_t i = 0; i < l->n; i++) {
                bool seen = false;
                for (size_t j = 0; j < o->n && !seen; j++) seen = strict_eq(o->v[j], l->v[i]);
                if (!seen) list_push(r, o, l->v[i]);
            }
            return mk_list(o);
        }
        if (!strcmp(name, "sort")) {
            struct sort_key k = { .line = line };
            k.reverse = bool_arg(r, arg(&a, 0, "reverse"), false, "sort(): reverse", line);
            k.case_sensitive = bool_arg(r, arg(&a, 1, "case_sensitive"), false, "sort(): case_sensitive", line);
            k.attr = arg(&a, 2, "attribute");
            if (k.attr.k != V_STR && k.attr.k != V_INT && k.attr.k != V_NONE && k.attr.k != V_UNDEF)
                rfail(r, line, "sort(): attribute must be a string or an integer");
            return sort_list(r, l, k);
        }
        if ((!strcmp(name, "selectattr") || !strcmp(name, "rejectattr")) && f->flag)
            return filter_select(r, v, f, &a, name[0] == 's');
        if (!strcmp(name, "map") && f->flag) return filter_map(r, v, &a, line);
    } else if (v.k == V_STR) {
        const struct str *s = v.s;
        if (!strcmp(name, "length") && !f->flag) return mk_int((int64_t)cp_count(s->p, s->n));
        if (!strcmp(name, "upper") && !f->flag) return map_case(r, s, true);
        if (!strcmp(name, "lower") && !f->flag) return map_case(r, s, false);
        if (!strcmp(name, "title") && !f->flag) return title(r, s);
        if (!strcmp(name, "capitalize") && !f->flag) return capitalize(r, s);
        if (!strcmp(name, "trim") && !f->flag) return py_strip(r, s, NULL, true, true);
        if ((!strcmp(name, "string") || !strcmp(name, "join")) && !f->flag) return v;
        if (!strcmp(name, "indent"))
            return indent(r, s, f->flag ? arg(&a, 0, "width") : mk_int(4), arg(&a, 1, "first"), arg(&a, 2, "blank"), line);
        if (!strcmp(name, "replace") && f->flag) return replace(r, s, arg(&a, 0, NULL), arg(&a, 1, NULL), arg(&a, 2, "count"), line);
    } else if (is_num(v)) {
        if (!strcmp(name, "abs") && !f->flag) return v.k == V_INT ? mk_int(v.i < 0 ? -v.i : v.i) : mk_float(fabs(v.f));
        if (!strcmp(name, "string") && !f->flag) return mk_str(to_text(r, v, line));
    } else if (v.k == V_DICT) {
        if (!strcmp(name, "length") && !f->flag) return mk_int((int64_t)v.d->n);
        for (size_t i = 0; i < sizeof DICT_METHODS / sizeof DICT_METHODS[0]; i++)
            if (!strcmp(name, DICT_METHODS[i])) return call(r, mk_func(r, (enum fid)(D_GET + i), v, NULL), &a, env, line);
    } else if (v.k == V_BOOL) {
        if (!strcmp(name, "bool") && !f->flag) return v;
        if (!strcmp(name, "string") && !f->flag) return mk_str(to_text(r, v, line));
    }
    rfail(r, line, "cannot apply the filter '%s'%s to a %s", name, f->flag ? "(...)" : "", KIND[v.k]);
}

// ---------------------------------------------------------------------------------------------
// operators

static const char *const OPS[] = { "", "or", "and", "in", "not in", "==", "!=", "<", ">", "<=", ">=", "+", "-",
                                   "~", "*", "/", "//", "%", "**", "not", "-", "+" };

static val int_or_fail(struct run *r, double d, int line)
{
    if (!isfinite(d) || fabs(d) > 9007199254740992.0) rfail(r, line, "integer result out of range");
    return mk_int((int64_t)d);
}

static val arith(struct run *r, enum op op, val a, val b, int line)
{
    bool fl = a.k == V_FLOAT || b.k == V_FLOAT;
    double x = num_of(a), y = num_of(b), z;
    switch (op) {
    case OP_ADD: z = x + y; break;
    case OP_SUB: z = x - y; break;
    case OP_MUL: z = x * y; break;
    case OP_DIV:
        if (y == 0) rfail(r, line, "division by zero");
        return mk_float(x / y);
    case OP_FDIV:
        if (y == 0) rfail(r, line, "division by zero");
        z = floor(x / y);
        break;
    case OP_MOD:
        if (y == 0) rfail(r, line, "modulo by zero");
        z = fmod(x, y);
        break;
    case OP_LT: return mk_bool(x < y);
    case OP_GT: return mk_bool(x > y);
    case OP_LE: return mk_bool(x <= y);
    case OP_GE: return mk_bool(x >= y);
    default: rfail(r, line, "unsupported operator '%s' between numbers", OPS[op]);
    }
    return fl ? mk_float(z) : int_or_fail(r, z, line);
}

static bool list_has(val l, val x)
{
    for (size_t i = 0; i < l.l->n; i++)
        if (strict_eq(l.l->v[i], x)) return true;
    return false;
}

static val binop(struct run *r, const struct node *e, struct env *env)
{
    val a = eval(r, e->a, env), b;
    enum op op = e->op;
    if (op == OP_AND) return truthy(a) ? eval(r, e->b, env) : a;
    if (op == OP_OR) return truthy(a) ? a : eval(r, e->b, env);
    b = eval(r, e->b, env);
    int line = e->line;
    if (op == OP_EQ) return mk_bool(loose_eq(a, b));
    if (op == OP_NE) return mk_bool(!loose_eq(a, b));
    if (a.k == V_UNDEF || b.k == V_UNDEF) {
        if (b.k == V_UNDEF && (op == OP_IN || op == OP_NOTIN)) return mk_bool(op == OP_NOTIN);
        rfail(r, line, "cannot apply '%s' to an undefined value", OPS[op]);
    }
    if (a.k == V_NONE || b.k == V_NONE) rfail(r, line, "cannot apply '%s' to none", OPS[op]);
    if (op == OP_CAT) {
        struct str *x = concat_text(r, a, line), *y = concat_text(r, b, line);
        return mk_str(str_cat(&r->c, x->p, x->n, y->p, y->n));
    }
    bool an = is_num(a) || a.k == V_BOOL, bn = is_num(b) || b.k == V_BOOL;
    if (op == OP_POW && an && bn) {
        double x = num_of(a), y = num_of(b), z = pow(x, y);
        if (x == 0 && y < 0) rfail(r, line, "0 cannot be raised to a negative power");
        if (!isfinite(z)) rfail(r, line, "'**' result is not a finite number");
        return a.k == V_FLOAT || b.k == V_FLOAT || y < 0 ? mk_float(z) : int_or_fail(r, z, line);
    }
    if (is_num(a) && is_num(b) && op != OP_IN && op != OP_NOTIN && op != OP_POW) return arith(r, op, a, b, line);
    if (a.k == V_LIST && b.k == V_LIST && op == OP_ADD) {
        struct list *l = list_new(r, a.l->n + b.l->n);
        for (size_t i = 0; i < a.l->n; i++) list_push(r, l, a.l->v[i]);
        for (size_t i = 0; i < b.l->n; i++) list_push(r, l, b.l->v[i]);
        return mk_list(l);
    }
    if (b.k == V_LIST && (op == OP_IN || op == OP_NOTIN)) return mk_bool(list_has(b, a) == (op == OP_IN));
    if ((a.k == V_STR || b.k == V_STR) && op == OP_ADD) {
        struct str *x = concat_text(r, a, line), *y = concat_text(r, b, line);
        return mk_str(str_cat(&r->c, x->p, x->n, y->p, y->n));
    }
    if (a.k == V_STR && b.k == V_STR && (op == OP_IN || op == OP_NOTIN))
        return mk_bool((find_bytes(b.s->p, b.s->n, a.s->p, a.s->n) != NULL) == (op == OP_IN));
    if (a.k == V_STR && b.k == V_DICT && (op == OP_IN || op == OP_NOTIN))
        return mk_bool((dict_get(b.d, a.s->p, a.s->n) != NULL) == (op == OP_IN));
    rfail(r, line, "unsupported operator '%s' between %s and %s", OPS[op], KIND[a.k], KIND[b.k]);
}

static val unop(struct run *r, const struct node *e, struct env *env)
{
    val a = eval(r, e->a, env);
    if (e->op == OP_NOT) return mk_bool(!truthy(a));
    int sign = e->op == OP_NEG ? -1 : 1;
    if (a.k == V_FLOAT) return mk_float(sign * a.f);
    if (a.k == V_INT || a.k == V_BOOL) return mk_int(sign * (a.k == V_INT ? a.i : a.b));
    rfail(r, e->line, "unary '%s' needs a number, not a %s", OPS[e->op], KIND[a.k]);
}

// ---------------------------------------------------------------------------------------------
// evaluation

static void enter_eval(struct run *r, int line)
{
    if (++r->depth > 10 * JINJA_MAX_DEPTH) rfail(r, line, "the template recurses too deeply");
}

static val eval_inner(struct run *r, const struct node *e, struct env *env)
{
    switch (e->k) {
    case E_STR: return mk_str(e->s);
    case E_INT: return mk_int(e->i);
    case E_FLOAT: return mk_float(e->f);
    case E_NAME: {
        val *v = env_find(env, e->s->p);
        return v ? *v : UNDEF;
    }
    case E_LIST:
    case E_TUPLE: {
        struct list *l = list_new(r, e->x.n);
        for (size_t i = 0; i < e->x.n; i++) list_push(r, l, eval(r, e->x.v[i], env));
        val v = mk_list(l);
        v.tuple = e->k == E_TUPLE;
        return v;
    }
    case E_DICT: {
        struct dict *d = dict_new(r);
        for (size_t i = 0; i < e->x.n; i++) {
            val k = eval(r, e->x.v[i], env);
            if (k.k != V_STR) rfail(r, e->line, "dict keys must be strings, not %s", KIND[k.k]);
            dict_set(r, d, k.s, eval(r, e->y.v[i], env));
        }
        return (val){ .k = V_DICT, .d = d };
    }
    case E_MEMBER: {
        val obj = eval(r, e->a, env);
        const struct node *p = e->b;
        if (p->k == E_SLICE)
            return do_slice(r, obj, p->a ? eval(r, p->a, env) : UNDEF, p->b ? eval(r, p->b, env) : UNDEF,
                            p->c ? eval(r, p->c, env) : UNDEF, e->line);
        val prop = e->flag ? eval(r, p, env) : p->k == E_INT ? mk_int(p->i) : mk_str(p->s);
        return member(r, obj, prop, e->line);
    }
    case E_CALL: {
        struct args a;
        eval_args(r, &e->x, env, &a);
        return call(r, eval(r, e->a, env), &a, env, e->line);
    }
    case E_FILTER: return apply_filter(r, eval(r, e->a, env), e, env);
    case E_TEST: return mk_bool(run_test(r, e->s->p, eval(r, e->a, env), UNDEF, e->line) != e->flag);
    case E_UNARY: return unop(r, e, env);
    case E_BIN: return binop(r, e, env);
    case E_TERN: return eval(r, truthy(eval(r, e->a, env)) ? e->b : e->c, env);
    case E_SELECT: return truthy(eval(r, e->a, env)) ? eval(r, e->b, env) : UNDEF;
    case E_KW: rfail(r, e->line, "keyword argument outside a call");
    case E_SLICE: rfail(r, e->line, "a slice outside []");
    default: rfail(r, e->line, "a statement where an expression was expected");
    }
}

static val eval(struct run *r, const struct node *e, struct env *env)
{
    enter_eval(r, e->line);
    val v = eval_inner(r, e, env);
    r->depth--;
    return v;
}

static void emit(struct run *r, const struct str *s) { sb_add(r, r->out, s->p, s->n); }

static void bind(struct run *r, struct env *env, const struct node *target, val v, int line)
{
    if (target->k == E_NAME) { env_set(r, env, target->s, v); return; }
    if (v.k != V_LIST) rfail(r, line, "cannot unpack a %s", KIND[v.k]);
    if (v.l->n != target->x.n) rfail(r, line, "too %s values to unpack", v.l->n < target->x.n ? "few" : "many");
    for (size_t i = 0; i < target->x.n; i++) {
        if (target->x.v[i]->k != E_NAME) rfail(r, line, "can only unpack into names");
        env_set(r, env, target->x.v[i]->s, v.l->v[i]);
    }
}

static void step(struct run *r, int line)
{
    if (++r->steps > JINJA_MAX_STEPS) rfail(r, line, "the template runs more than %ld steps", JINJA_MAX_STEPS);
}

static void exec_for(struct run *r, const struct node *e, struct env *env)
{
    struct env *scope = env_new(r, env);
    const struct node *it = e->b, *test = NULL;
    if (it->k == E_SELECT) { test = it->a; it = it->b; }
    val seq = eval(r, it, scope);
    if (seq.k == V_DICT) seq = items_of(r, seq.d, 1);
    if (seq.k != V_LIST) rfail(r, e->line, "{%% for %%} over a %s", KIND[seq.k]);
    struct list *items = seq.l;
    if (test) {
        items = list_new(r, 0);
        for (size_t i = 0; i < seq.l->n; i++) {
            step(r, e->line);
            struct env *ls = env_new(r, scope);
            bind(r, ls, e->a, seq.l->v[i], e->line);
            if (truthy(eval(r, test, ls))) list_push(r, items, seq.l->v[i]);
        }
    }
    static const char *const keys[] = { "index", "index0", "revindex", "revindex0", "first", "last", "length",
                                        "previtem", "nextitem" };
    if (!r->loop_keys[0])
        for (int i = 0; i < 9; i++) r->loop_keys[i] = str_new(&r->c, keys[i], strlen(keys[i]));
    bool none = true;
    size_t n = items->n;
    struct dict *loop = dict_new(r);   // one for the whole loop, its values updated (a template can't tell)
    if (!r->loop_name) r->loop_name = str_new(&r->c, "loop", 4);
    for (size_t i = 0; i < n; i++) {
        step(r, e->line);
        val vals[9] = { mk_int((int64_t)i + 1), mk_int((int64_t)i), mk_int((int64_t)(n - i)), mk_int((int64_t)(n - i - 1)),
                        mk_bool(i == 0), mk_bool(i == n - 1), mk_int((int64_t)n), i > 0 ? items->v[i - 1] : UNDEF,
                        i + 1 < n ? items->v[i + 1] : UNDEF };
        for (int k = 0; k < 9; k++) dict_set(r, loop, r->loop_keys[k], vals[k]);
        env_set(r, scope, r->loop_name, (val){ .k = V_DICT, .d = loop });
        val item = items->v[i];
        bind(r, scope, e->a, item, e->line);
        size_t begin = r->out->n;
        exec(r, &e->x, scope);
        if (!r->capture && r->o->on_item && item.k == V_DICT && item.d->src)
            r->o->on_item(r->o->ctx, item.d->src, begin, r->out->n);
        if (r->ctl == CTL_CONT) { r->ctl = CTL_NONE; continue; }
        if (r->ctl == CTL_BREAK) { r->ctl = CTL_NONE; break; }
        none = false;
    }
    if (none) exec(r, &e->y, scope);
}

static void exec_set(struct run *r, const struct node *e, struct env *env)
{
    val v = e->b ? eval(r, e->b, env) : mk_str(capture(r, &e->x, env));
    const struct node *t = e->a;
    if (t->k == E_MEMBER) {
        val obj = eval(r, t->a, env);
        if (obj.k != V_NS) rfail(r, e->line, "cannot set an attribute of a %s (only of a namespace)", KIND[obj.k]);
        dict_set(r, obj.d, t->b->s, v);
        return;
    }
    bind(r, env, t, v, e->line);
}

static void exec_one(struct run *r, const struct node *e, struct env *env)
{
    step(r, e->line);
    enter_eval(r, e->line);
    switch (e->k) {
    case N_TEXT: emit(r, e->s); break;
    case N_OUT: emit(r, to_text(r, eval(r, e->a, env), e->line)); break;
    case N_IF: exec(r, truthy(eval(r, e->a, env)) ? &e->x : &e->y, env); break;
    case N_FOR: exec_for(r, e, env); break;
    case N_SET: exec_set(r, e, env); break;
    case N_MACRO: env_set(r, env, e->s, mk_func(r, F_MACRO, UNDEF, e)); break;
    case N_BREAK: r->ctl = CTL_BREAK; break;
    case N_CONT: r->ctl = CTL_CONT; break;
    case N_FBLOCK: emit(r, to_text(r, apply_filter(r, mk_str(capture(r, &e->x, env)), e->a, env), e->line)); break;
    default: rfail(r, e->line, "an expression where a statement was expected");
    }
    r->depth--;
}

static void exec(struct run *r, const struct nodes *body, struct env *env)
{
    for (size_t i = 0; i < body->n && r->ctl == CTL_NONE; i++) exec_one(r, body->v[i], env);
}

static void set_day(struct run *r, const char *date)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    time_t now = time(NULL);
    gmtime_r(&now, &r->day);
    char mon[4];
    int d, y;
    if (!date || sscanf(date, "%d %3s %d", &d, mon, &y) != 3) return;
    const char *m = strstr(months, mon);
    if (!m || (m - months) % 3) return;
    memset(&r->day, 0, sizeof r->day);
    r->day.tm_mday = d;
    r->day.tm_mon = (int)(m - months) / 3;
    r->day.tm_year = y - 1900;
}

char *jinja_render(const struct jinja_template *t, const struct jinja_opts *o, size_t *len, char *err, size_t errlen)
{
    struct run *r = xcalloc(1, sizeof *r);
    r->c.err = err;
    r->c.errlen = errlen;
    r->c.limit = JINJA_MAX_MEMORY;
    r->o = o;
    if (setjmp(r->c.jb)) {
        arena_free(r->c.head);
        free(r);
        return NULL;
    }
    set_day(r, o->date);
    struct env *g = env_new(r, NULL);
    static const char *const fns[] = { "namespace", "range", "raise_exception", "strftime_now" };
    static const enum fid ids[] = { F_NAMESPACE, F_RANGE, F_RAISE, F_STRFTIME };
    for (int i = 0; i < 4; i++) env_set_c(r, g, fns[i], mk_func(r, ids[i], UNDEF, NULL));
    env_set_c(r, g, "true", mk_bool(true));
    env_set_c(r, g, "false", mk_bool(false));
    env_set_c(r, g, "none", NONE);
    env_set_c(r, g, "True", mk_bool(true));
    env_set_c(r, g, "False", mk_bool(false));
    env_set_c(r, g, "None", NONE);
    const char *k;
    const json_t *v;
    if (json_is_object(o->vars))
        json_object_foreach((json_t *)o->vars, k, v) env_set_c(r, g, k, from_json(r, v, 0));
    struct sb out = { 0 };
    r->out = &out;
    exec(r, &t->body, g);
    if (r->ctl) rfail(r, 0, "{%% break %%} or {%% continue %%} outside a loop");
    char *text = xmalloc(out.n + 1);
    if (out.n) memcpy(text, out.p, out.n);
    text[out.n] = 0;
    *len = out.n;
    arena_free(r->c.head);
    free(r);
    return text;
}
