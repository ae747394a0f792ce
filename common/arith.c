// arith.c — see arith.h.
#include "arith.h"

#include "rng.h"
#include "util.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// vocabulary: a dozen names, eight items, a few verbs. Kept small on purpose (a tiny model and a
// ~500-token BPE vocabulary must cover it), but varied enough that the model has to read which
// operation each sentence asks for.

static const struct { const char *name; int she; } people[] = {
    {"Tom", 0}, {"Sam", 0}, {"Ben", 0}, {"Max", 0}, {"Leo", 0}, {"Dan", 0},
    {"Ann", 1}, {"Mia", 1}, {"Zoe", 1}, {"Eva", 1}, {"Amy", 1}, {"Kim", 1},
};
#define NPEOPLE ((int)(sizeof people / sizeof people[0]))
static const char *items[] = {"apples", "pens", "books", "coins", "cards", "eggs", "shells", "stamps"};
#define NITEMS ((int)(sizeof items / sizeof items[0]))
static const char *subj[2] = {"He", "She"}, *obj[2] = {"him", "her"}, *poss[2] = {"his", "her"};

enum op { OP_ADD, OP_SUB, OP_GROUP, OP_MUL, OP_DIV, NOPS };

// ---------------------------------------------------------------------------------------------

struct draw {
    uint64_t seed, index, attempt, n;
};

// Uniform integer in [lo, hi]: draw number d->n of this (seed, index, attempt).
static long pick(struct draw *d, long lo, long hi)
{
    ASSERT(lo <= hi);
    double u = rng_uniform(rng_key(d->seed, d->index, d->attempt, d->n++));
    long v = lo + (long)(u * (double)(hi - lo + 1));
    return v > hi ? hi : v;
}

static void append(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append(char *buf, const char *fmt, ...)
{
    size_t len = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + len, ARITH_TEXT_CAP - len, fmt, ap);
    va_end(ap);
    ASSERT(n >= 0 && (size_t)n < ARITH_TEXT_CAP - len);   // ARITH_MAX_STEPS keeps texts short
}

static long min_l(long a, long b) { return a < b ? a : b; }

const char *arith_options_check(const struct arith_options *o)
{
    if (o->min_steps < 1 || o->max_steps > ARITH_MAX_STEPS || o->min_steps > o->max_steps)
        return "steps must satisfy 1 <= min <= max <= 16";
    if (o->max_operand < 2 || o->max_operand > 1000000) return "max operand must lie in [2, 1000000]";
    if (o->max_value < o->max_operand || o->max_value > 1000000000)
        return "max value must lie in [max operand, 1000000000]";
    return NULL;
}

enum arith_split arith_split_of(const char *question)
{
    return (rng_hash_str(question, strlen(question)) & 1) ? ARITH_TEST : ARITH_TRAIN;
}

// One operation sentence applied to *v: appends the sentence to q and the equation line(s) to s.
static void step(struct draw *d, const struct arith_options *o, int who, int item, long *v, char *q, char *s)
{
    long V = o->max_value, M = o->max_operand, x = *v;
    int she = people[who].she, divs[4], ndiv = 0;
    for (int k = 2; k <= 5; k++)
        if (x % k == 0 && x / k >= 2) divs[ndiv++] = k;
    // Valid operations, each repeated by its weight: sums and differences are the common case,
    // groups (two lines) next, scaling and splitting rarer.
    enum op valid[16];
    int nvalid = 0;
    static const int weight[NOPS] = {3, 3, 2, 1, 1};
    bool ok[NOPS] = {x < V, x >= 2, x + 4 <= V, 2 * x <= V, ndiv > 0};
    for (int op = 0; op < NOPS; op++)
        for (int w = 0; ok[op] && w < weight[op]; w++) valid[nvalid++] = (enum op)op;
    ASSERT(nvalid > 0);   // x < V or x >= 2 always holds since V >= 2
    int friend = (int)pick(d, 0, NPEOPLE - 2);
    if (friend >= who) friend++;
    switch (valid[pick(d, 0, nvalid - 1)]) {
    case OP_ADD: {
        long b = pick(d, 1, min_l(M, V - x));
        int form = (int)pick(d, 0, 2);
        if (form == 0) append(q, " %s buys %ld more.", subj[she], b);
        else if (form == 1) append(q, " %s finds %ld more.", subj[she], b);
        else append(q, " %s gives %s %ld more.", people[friend].name, obj[she], b);
        append(s, "%ld + %ld = %ld\n", x, b, x + b);
        *v = x + b;
        break;
    }
    case OP_SUB: {
        long b = pick(d, 1, min_l(M, x - 1));
        int form = (int)pick(d, 0, 2);
        if (form == 0) append(q, " %s gives %ld to %s.", subj[she], b, people[friend].name);
        else if (form == 1) append(q, " %s loses %ld.", subj[she], b);
        else append(q, " %s sells %ld.", subj[she], b);
        append(s, "%ld - %ld = %ld\n", x, b, x - b);
        *v = x - b;
        break;
    }
    case OP_GROUP: {
        long k = pick(d, 2, min_l(5, (V - x) / 2));
        long b = pick(d, 2, min_l(M, (V - x) / k));
        const char *box = pick(d, 0, 1) ? "boxes" : "bags";
        append(q, " %s buys %ld %s with %ld %s in each.", subj[she], k, box, b, items[item]);
        append(s, "%ld * %ld = %ld\n%ld + %ld = %ld\n", k, b, k * b, x, k * b, x + k * b);
        *v = x + k * b;
        break;
    }
    case OP_MUL: {
        long f = 3 * x <= V ? pick(d, 2, 3) : 2;
        append(q, " %s %s %s %s.", subj[she], f == 2 ? "doubles" : "triples", poss[she], items[item]);
        append(s, "%ld * %ld = %ld\n", x, f, x * f);
        *v = x * f;
        break;
    }
    case OP_DIV: {
        long k = divs[pick(d, 0, ndiv - 1)];
        append(q, " %s puts them into %ld equal piles and keeps one pile.", subj[she], k);
        append(s, "%ld / %ld = %ld\n", x, k, x / k);
        *v = x / k;
        break;
    }
    default: ASSERT(0);
    }
}

void arith_generate(const struct arith_options *o, uint64_t index, uint64_t attempt, struct arith_problem *p)
{
    struct draw d = {o->seed, index, attempt, 0};
    p->question[0] = p->solution[0] = '\0';
    int who = (int)pick(&d, 0, NPEOPLE - 1), item = (int)pick(&d, 0, NITEMS - 1);
    p->steps = (int)pick(&d, o->min_steps, o->max_steps);
    long v = pick(&d, 2, min_l(o->max_operand, o->max_value));
    append(p->question, "%s has %ld %s.", people[who].name, v, items[item]);
    for (int i = 0; i < p->steps; i++) step(&d, o, who, item, &v, p->question, p->solution);
    append(p->question, " How many %s does %s have now?", items[item], people[who].name);
    append(p->solution, "#### %ld", v);
    p->answer = v;
    p->hash = rng_hash_str(p->question, strlen(p->question));
}

// ---------------------------------------------------------------------------------------------
// generator with split filter and de-duplication

void arith_gen_init(struct arith_gen *g, const struct arith_options *o, enum arith_split split)
{
    *g = (struct arith_gen){.opt = *o, .split = split, .seen_cap = 1024};
    g->seen = xcalloc(g->seen_cap, sizeof *g->seen);
}

void arith_gen_free(struct arith_gen *g)
{
    free(g->seen);
    g->seen = NULL;
}

// Inserts h; returns false if it was already there.
static bool seen_insert(struct arith_gen *g, uint64_t h)
{
    if (h == 0) h = 1;   // 0 marks an empty slot
    if (2 * (g->seen_n + 1) > g->seen_cap) {
        uint64_t *old = g->seen;
        size_t oldcap = g->seen_cap;
        g->seen_cap *= 2;
        g->seen = xcalloc(g->seen_cap, sizeof *g->seen);
        g->seen_n = 0;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i]) seen_insert(g, old[i]);
        free(old);
    }
    size_t i = (size_t)(h * 0x9e3779b97f4a7c15ULL) & (g->seen_cap - 1);
    for (; g->seen[i]; i = (i + 1) & (g->seen_cap - 1))
        if (g->seen[i] == h) return false;
    g->seen[i] = h;
    g->seen_n++;
    return true;
}

bool arith_gen_next(struct arith_gen *g, struct arith_problem *p)
{
    for (uint64_t attempt = 0; attempt < 10000; attempt++) {
        arith_generate(&g->opt, g->index, attempt, p);
        if (((p->hash & 1) ? ARITH_TEST : ARITH_TRAIN) != g->split) continue;
        if (!seen_insert(g, p->hash)) continue;
        g->index++;
        return true;
    }
    return false;
}

// ---------------------------------------------------------------------------------------------
// output records

bool arith_format_parse(const char *s, enum arith_format *out)
{
    static const char *names[] = {"qa", "prompt", "chat"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) { *out = (enum arith_format)i; return true; }
    return false;
}

json_t *arith_record(enum arith_format f, const char *id, const char *question, const char *answer)
{
    json_t *o = json_object(), *q = json_string(question), *a = json_string(answer);
    if (!q || !a) { json_decref(o), json_decref(q), json_decref(a); return NULL; }
    json_object_set_new(o, "id", json_string(id));
    size_t nq = strlen(question), na = strlen(answer);
    char *buf = xmalloc(nq + na + sizeof ARITH_INSTRUCTION + 16);
    switch (f) {
    case ARITH_FORMAT_QA:
        json_object_set(o, "question", q);
        break;
    case ARITH_FORMAT_PROMPT:
        sprintf(buf, "Q: %s\nA:", question);
        json_object_set_new(o, "prompt", json_string(buf));
        sprintf(buf, " %s", answer);
        json_object_set_new(o, "completion", json_string(buf));
        break;
    case ARITH_FORMAT_CHAT: {
        sprintf(buf, "%s\n%s", question, ARITH_INSTRUCTION);
        json_t *msgs = json_array(), *u = json_object(), *as = json_object();
        json_object_set_new(u, "role", json_string("user"));
        json_object_set_new(u, "content", json_string(buf));
        json_object_set_new(as, "role", json_string("assistant"));
        json_object_set(as, "content", a);
        json_array_append_new(msgs, u);
        json_array_append_new(msgs, as);
        json_object_set_new(o, "messages", msgs);
        break;
    }
    }
    json_object_set(o, "answer", a);
    json_decref(q);
    json_decref(a);
    free(buf);
    return o;
}

void arith_strip_calc(char *s)
{
    char *w = s;
    for (char *r = s; *r;) {
        char *end;
        if (r[0] == '<' && r[1] == '<' && (end = strstr(r + 2, ">>"))) { r = end + 2; continue; }
        *w++ = *r++;
    }
    *w = '\0';
}
