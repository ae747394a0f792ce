// chat.c — see chat.h for the contract. Each render_* function mirrors the Jinja template of
// its family line by line; the template text it follows is quoted in docs/tokenizer.md. Other
// templates go through the Jinja renderer (render_jinja).
#include "chat.h"
#include "jinja.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char QWEN_SYSTEM[] = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
static const char *const NAMES[] = { "chatml", "qwen2.5", "qwen3", "llama3", "llama3.1", "jinja" };
static const char FAMILIES[] = "chatml|qwen2.5|qwen3|llama3|llama3.1";   // the hand-written ones
// appended to the refusals of tools by the five families
static const char USE_JINJA[] = " (--chat-template jinja renders them with the model's own template)";

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

// ---------------------------------------------------------------------------------------------
// template detection

bool chat_template_known(const char *name)
{
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (strcmp(name, NAMES[i]) == 0) return true;
    return false;
}

// The first unescaped c in [p, end), or NULL.
static const char *find_unescaped(const char *p, const char *end, char c)
{
    for (const char *q = p; q < end; q++)
        if (*q == c && (q == p || q[-1] != '\\')) return q;
    return NULL;
}

// [p, end) with the Jinja string escapes (\n, \t, \', \\) undone, as a new string.
static char *unescape_literal(const char *p, const char *end)
{
    char *out = xmalloc((size_t)(end - p) + 1), *o = out;
    for (const char *q = p; q < end; q++) {
        if (*q == '\\' && q + 1 < end) {
            q++;
            *o++ = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
        } else {
            *o++ = *q;
        }
    }
    *o = 0;
    return out;
}

// The default system prompt a ChatML template writes as a literal:
// '<|im_start|>system\n...<|im_end|>\n' (Qwen2.5, Qwen2.5-Math, SmolLM2): a system header
// followed by one string literal up to <|im_end|>. Headers followed by a variable are skipped:
// Qwen2.5's tools branch comes first and writes '<|im_start|>system\n' }} then the content.
static char *chatml_default_system(const char *text)
{
    static const char open[] = "<|im_start|>system\\n";
    for (const char *at = strstr(text, open); at; at = strstr(at + 1, open)) {
        const char *p = at + sizeof open - 1;
        const char *end = strstr(p, "<|im_end|>");
        if (!end) return NULL;
        if (end > p && !find_unescaped(p, end, '\'')) return unescape_literal(p, end);
    }
    return NULL;
}

bool chat_date_valid(const char *s)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    static const int days[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    static const char shape[] = "00 Mmm 0000";   // 0: a digit, ' ': itself, Mmm: checked below
    if (strlen(s) != sizeof shape - 1) return false;
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == '0' && !(s[i] >= '0' && s[i] <= '9')) return false;
        if (shape[i] == ' ' && s[i] != ' ') return false;
    }
    int month = -1;
    for (int m = 0; m < 12; m++)
        if (memcmp(s + 3, months + 3 * m, 3) == 0) month = m;
    if (month < 0) return false;
    int day = (s[0] - '0') * 10 + (s[1] - '0');
    int year = atoi(s + 7);
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    int max = month == 1 && !leap ? 28 : days[month];
    return day >= 1 && day <= max;
}

static void set_family(struct chat_template *ct, enum chat_family f)
{
    ct->family = f;
    ct->name = NAMES[f];
}

// The jinja family: the template parsed, or an error naming what is outside the subset.
static int init_jinja(struct chat_template *ct, const char *text, bool named, char *err, size_t errlen)
{
    char why[300];
    if (!text) return fail(err, errlen, "--chat-template jinja: the tokenizer has no chat template");
    ct->jinja = jinja_parse(text, why, sizeof why);
    if (!ct->jinja) {
        if (named) return fail(err, errlen, "chat template: %s", why);
        return fail(err, errlen, "unrecognised chat template; name one with --chat-template %s (its Jinja is "
                                 "outside the subset srlm renders: %s)", FAMILIES, why);
    }
    set_family(ct, CHAT_JINJA);
    ct->uses_special = strstr(text, "bos_token") || strstr(text, "eos_token");
    return 0;
}

int chat_template_init(struct chat_template *ct, const char *text, const char *override,
                       char *err, size_t errlen)
{
    memset(ct, 0, sizeof *ct);
    ct->thinking = true;
    snprintf(ct->date, sizeof ct->date, "%s", CHAT_DEFAULT_DATE);
    if (override) {
        if (!chat_template_known(override)) return fail(err, errlen, "unknown chat template \"%s\"", override);
        if (strcmp(override, "jinja") == 0) return init_jinja(ct, text, true, err, errlen);
        for (int f = 0; f <= CHAT_LLAMA31; f++)
            if (strcmp(override, NAMES[f]) == 0) set_family(ct, (enum chat_family)f);
        if (ct->family == CHAT_QWEN25) ct->default_system = xstrdup(QWEN_SYSTEM);
        return 0;
    }
    if (!text)
        return fail(err, errlen, "the tokenizer has no chat template; name one with --chat-template %s", FAMILIES);
    if (strstr(text, "<|start_header_id|>") && strstr(text, "<|eot_id|>")) {
        // Llama-3.2-Vision's template writes image tokens and does not strip the content.
        if (strstr(text, "<|image|>"))
            return fail(err, errlen, "Llama-3.2-Vision chat template (with <|image|>) is not supported");
        // Llama-3.1 and 3.2 (text) open with the dated system block.
        set_family(ct, strstr(text, "Cutting Knowledge Date") ? CHAT_LLAMA31 : CHAT_LLAMA3);
        return 0;
    }
    if (strstr(text, "<|im_start|>") && strstr(text, "<|im_end|>")) {
        if (strstr(text, "<think>") && strstr(text, "reasoning_content")) {
            set_family(ct, CHAT_QWEN3);
            return 0;
        }
        ct->default_system = chatml_default_system(text);
        bool qwen = ct->default_system && strncmp(ct->default_system, "You are Qwen", 12) == 0;
        set_family(ct, qwen || strstr(text, "Qwen") ? CHAT_QWEN25 : CHAT_CHATML);
        return 0;
    }
    return init_jinja(ct, text, false, err, errlen);
}

void chat_template_set_special(struct chat_template *ct, const char *bos, const char *eos)
{
    free(ct->bos_token);
    free(ct->eos_token);
    ct->bos_token = bos ? xstrdup(bos) : NULL;
    ct->eos_token = eos ? xstrdup(eos) : NULL;
    ct->special_set = true;
}

void chat_template_free(struct chat_template *ct)
{
    free(ct->default_system);
    ct->default_system = NULL;
    jinja_free(ct->jinja);
    ct->jinja = NULL;
    free(ct->bos_token);
    free(ct->eos_token);
    ct->bos_token = ct->eos_token = NULL;
    ct->special_set = false;
}

// ---------------------------------------------------------------------------------------------
// segments

void chat_segments_clear(struct chat_segments *s)
{
    s->len = s->n = 0;
    s->prompt_only = false;
}

void chat_segments_free(struct chat_segments *s)
{
    free(s->text);
    free(s->seg);
    memset(s, 0, sizeof *s);
}

void chat_segments_add(struct chat_segments *s, const char *p, size_t n, bool trained)
{
    if (n == 0) return;
    trained = trained && !s->prompt_only;
    if (s->len + n > s->cap) {
        s->cap = 2 * (s->len + n) + 256;
        s->text = xrealloc(s->text, s->cap);
    }
    memcpy(s->text + s->len, p, n);
    if (s->n > 0 && s->seg[s->n - 1].trained == trained) {
        s->seg[s->n - 1].len += n;
    } else {
        if (s->n == s->seg_cap) {
            s->seg_cap = s->seg_cap ? 2 * s->seg_cap : 16;
            s->seg = xrealloc(s->seg, s->seg_cap * sizeof *s->seg);
        }
        s->seg[s->n++] = (struct chat_segment){ s->len, n, trained };
    }
    s->len += n;
}

static void add_str(struct chat_segments *s, const char *p, bool trained)
{
    chat_segments_add(s, p, strlen(p), trained);
}

// ---------------------------------------------------------------------------------------------
// messages

struct msg {
    const char *role;
    const char *content;
    size_t len;
    const char *reasoning;     // Qwen3 reasoning_content, or NULL
    size_t reasoning_len;
};

static int get_messages(const json_t *messages, struct msg **out, size_t *n, char *err, size_t errlen)
{
    if (!json_is_array(messages)) return fail(err, errlen, "expected an array of messages");
    *n = json_array_size(messages);
    if (*n == 0) return fail(err, errlen, "no messages");
    struct msg *m = xcalloc(*n, sizeof *m);
    for (size_t i = 0; i < *n; i++) {
        const json_t *o = json_array_get(messages, i);
        const json_t *role = json_object_get(o, "role"), *content = json_object_get(o, "content");
        const json_t *reasoning = json_object_get(o, "reasoning_content");
        int rc = 0;
        if (!json_is_object(o)) rc = fail(err, errlen, "[%zu]: expected an object", i);
        else if (!json_is_string(role)) rc = fail(err, errlen, "[%zu]: \"role\" must be a string", i);
        else if (!json_is_string(content)) rc = fail(err, errlen, "[%zu]: \"content\" must be a string", i);
        else if (json_object_get(o, "tool_calls")) rc = fail(err, errlen, "[%zu]: tool calls are not supported%s", i, USE_JINJA);
        else if (strcmp(json_string_value(role), "system") && strcmp(json_string_value(role), "user") &&
                 strcmp(json_string_value(role), "assistant"))
            rc = fail(err, errlen, "[%zu]: role \"%s\" is not supported (system, user, assistant)%s", i,
                      json_string_value(role), USE_JINJA);
        if (rc) { free(m); return rc; }
        m[i].role = json_string_value(role);
        m[i].content = json_string_value(content);
        m[i].len = json_string_length(content);
        if (json_is_string(reasoning)) {
            m[i].reasoning = json_string_value(reasoning);
            m[i].reasoning_len = json_string_length(reasoning);
        }
    }
    *out = m;
    return 0;
}

static bool is_assistant(const struct msg *m) { return strcmp(m->role, "assistant") == 0; }

// '<|im_start|>' + role + '\n' + content + '<|im_end|>' + '\n', the assistant part trained.
static void chatml_turn(struct chat_segments *s, const char *role, const char *content, size_t len, bool trained)
{
    add_str(s, "<|im_start|>", false);
    add_str(s, role, false);
    add_str(s, "\n", false);
    chat_segments_add(s, content, len, trained);
    add_str(s, "<|im_end|>", trained);
    add_str(s, "\n", false);
}

static void render_chatml(const struct chat_template *ct, const struct msg *m, size_t n, struct chat_segments *s)
{
    if (strcmp(m[0].role, "system") != 0 && ct->default_system)
        chatml_turn(s, "system", ct->default_system, strlen(ct->default_system), false);
    for (size_t i = 0; i < n; i++) chatml_turn(s, m[i].role, m[i].content, m[i].len, is_assistant(&m[i]));
    if (s->prompt_only) add_str(s, "<|im_start|>assistant\n", false);
}

// Python's str.strip(chars) on [*p, *p + *n) for a one-character set.
static void strip_char(const char **p, size_t *n, char c, bool left, bool right)
{
    while (left && *n > 0 && (*p)[0] == c) { (*p)++; (*n)--; }
    while (right && *n > 0 && (*p)[*n - 1] == c) (*n)--;
}

static const char *memmem_last(const char *h, size_t hn, const char *needle)
{
    size_t nn = strlen(needle);
    for (size_t i = hn >= nn ? hn - nn + 1 : 0; i-- > 0;)
        if (memcmp(h + i, needle, nn) == 0) return h + i;
    return NULL;
}

// Qwen3's reasoning: reasoning_content when given, else split out of the content at </think>
// exactly as the template's string operations do (noted beside each step).
static void qwen3_split(const struct msg *m, const char **content, size_t *clen, const char **reason, size_t *rlen)
{
    *content = m->content; *clen = m->len;
    *reason = ""; *rlen = 0;
    if (m->reasoning) { *reason = m->reasoning; *rlen = m->reasoning_len; return; }
    const char *first = memmem(m->content, m->len, "</think>", 8);
    if (!first) return;
    const char *last = memmem_last(m->content, m->len, "</think>");
    *reason = m->content; *rlen = (size_t)(first - m->content);      // split('</think>')[0]
    strip_char(reason, rlen, '\n', false, true);                     // .rstrip('\n')
    const char *open = memmem_last(*reason, *rlen, "<think>");        // .split('<think>')[-1]
    if (open) { *rlen -= (size_t)(open + 7 - *reason); *reason = open + 7; }
    strip_char(reason, rlen, '\n', true, false);                     // .lstrip('\n')
    *content = last + 8;                                               // split('</think>')[-1]
    *clen = m->len - (size_t)(*content - m->content);
    strip_char(content, clen, '\n', true, false);                    // .lstrip('\n')
}

// Turns after the last user query carry a <think> block when they are the last message or
// have reasoning; the others show the content only.
static void qwen3_assistant(struct chat_segments *s, const struct msg *m, bool after_query, bool last)
{
    const char *content, *reason;
    size_t clen, rlen;
    qwen3_split(m, &content, &clen, &reason, &rlen);
    add_str(s, "<|im_start|>assistant\n", false);
    if (after_query && (last || rlen > 0)) {
        strip_char(&reason, &rlen, '\n', true, true);
        strip_char(&content, &clen, '\n', true, false);
        bool has = rlen > 0;   // an empty block is template scaffolding, not something to learn
        add_str(s, "<think>\n", has);
        chat_segments_add(s, reason, rlen, true);
        add_str(s, "\n</think>\n\n", has);
    }
    chat_segments_add(s, content, clen, true);
    add_str(s, "<|im_end|>", true);
    add_str(s, "\n", false);
}

static void render_qwen3(const struct chat_template *ct, const struct msg *m, size_t n, struct chat_segments *s)
{
    size_t last_query = n - 1;
    for (size_t i = n; i-- > 0;) {
        if (strcmp(m[i].role, "user") != 0) continue;
        bool tool_resp = m[i].len >= 31 && strncmp(m[i].content, "<tool_response>", 15) == 0 &&
                         memcmp(m[i].content + m[i].len - 16, "</tool_response>", 16) == 0;
        if (!tool_resp) { last_query = i; break; }
    }
    for (size_t i = 0; i < n; i++) {
        if (is_assistant(&m[i])) qwen3_assistant(s, &m[i], i > last_query, i == n - 1);
        else chatml_turn(s, m[i].role, m[i].content, m[i].len, false);
    }
    if (s->prompt_only) {
        add_str(s, "<|im_start|>assistant\n", false);
        if (!ct->thinking) add_str(s, "<think>\n\n</think>\n\n", false);
    }
}

// Jinja's trim (Python str.strip()): whitespace as str.isspace() sees it.
static bool py_space_at(const char *p, size_t n, size_t *k, bool backwards)
{
    static const char *const multi[] = { "\xc2\x85", "\xc2\xa0", "\xe1\x9a\x80", "\xe2\x80\xa8", "\xe2\x80\xa9",
                                         "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80" };
    unsigned char c = (unsigned char)(backwards ? p[n - 1] : p[0]);
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) { *k = 1; return true; }
    for (size_t i = 0; i < sizeof multi / sizeof multi[0]; i++) {
        size_t l = strlen(multi[i]);
        if (n >= l && memcmp(backwards ? p + n - l : p, multi[i], l) == 0) { *k = l; return true; }
    }
    if (n >= 3 && memcmp(backwards ? p + n - 3 : p, "\xe2\x80", 2) == 0) {   // U+2000..U+200A
        unsigned char last = (unsigned char)(backwards ? p[n - 1] : p[2]);
        if (last >= 0x80 && last <= 0x8a) { *k = 3; return true; }
    }
    return false;
}

static void py_strip(const char **p, size_t *n)
{
    size_t k;
    while (*n > 0 && py_space_at(*p, *n, &k, false)) { *p += k; *n -= k; }
    while (*n > 0 && py_space_at(*p, *n, &k, true)) *n -= k;
}

// '<|start_header_id|>' + role + '<|end_header_id|>\n\n' + content | trim + '<|eot_id|>', the
// assistant part trained.
static void llama3_turn(struct chat_segments *s, const struct msg *m)
{
    bool tr = is_assistant(m);
    const char *c = m->content;
    size_t len = m->len;
    py_strip(&c, &len);
    add_str(s, "<|start_header_id|>", false);
    add_str(s, m->role, false);
    add_str(s, "<|end_header_id|>\n\n", false);
    chat_segments_add(s, c, len, tr);
    add_str(s, "<|eot_id|>", tr);
}

static void render_llama3(const struct msg *m, size_t n, struct chat_segments *s)
{
    add_str(s, "<|begin_of_text|>", false);
    for (size_t i = 0; i < n; i++) llama3_turn(s, &m[i]);
    if (s->prompt_only) add_str(s, "<|start_header_id|>assistant<|end_header_id|>\n\n", false);
}

// Llama-3.1/3.2 without tools: the system block is always written and takes the first message
// when it is a system message (stripped); later system messages are ordinary turns.
static void render_llama31(const struct chat_template *ct, const struct msg *m, size_t n, struct chat_segments *s)
{
    bool system = strcmp(m[0].role, "system") == 0;
    const char *c = system ? m[0].content : "";
    size_t len = system ? m[0].len : 0;
    py_strip(&c, &len);
    add_str(s, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
               "Cutting Knowledge Date: December 2023\nToday Date: ", false);
    add_str(s, ct->date, false);
    add_str(s, "\n\n", false);
    chat_segments_add(s, c, len, false);
    add_str(s, "<|eot_id|>", false);
    for (size_t i = system; i < n; i++) llama3_turn(s, &m[i]);
    if (s->prompt_only) add_str(s, "<|start_header_id|>assistant<|end_header_id|>\n\n", false);
}

// ---------------------------------------------------------------------------------------------
// the jinja family

struct spans {
    const json_t *messages;
    size_t *begin, *end;       // per message: the text of its last non-empty loop iteration
};

static void on_item(void *ctx, const json_t *item, size_t begin, size_t end)
{
    struct spans *sp = ctx;
    if (end == begin) return;
    for (size_t i = 0; i < json_array_size(sp->messages); i++)
        if (json_array_get(sp->messages, i) == item) {
            sp->begin[i] = begin;
            sp->end[i] = end;
        }
}

static char *jinja_text(const struct chat_template *ct, json_t *vars, bool gen_prompt, struct spans *sp,
                        size_t *len, char *err, size_t errlen)
{
    json_object_set_new(vars, "add_generation_prompt", json_boolean(gen_prompt));
    struct jinja_opts o = { .vars = vars, .date = ct->date, .on_item = sp ? on_item : NULL, .ctx = sp };
    return jinja_render(ct->jinja, &o, len, err, errlen);
}

static const char *memmem_last(const char *h, size_t hn, const char *needle);

static int render_jinja(const struct chat_template *ct, const json_t *messages, const json_t *tools,
                        struct chat_segments *s, char *err, size_t errlen)
{
    size_t n = json_array_size(messages);
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(messages, i);
        if (!json_is_object(o)) return fail(err, errlen, "[%zu]: expected an object", i);
        if (!json_is_string(json_object_get(o, "role"))) return fail(err, errlen, "[%zu]: \"role\" must be a string", i);
    }
    if (ct->uses_special && !ct->special_set)
        return fail(err, errlen, "chat template: the template uses bos_token/eos_token, which were not given "
                                 "to the renderer (chat_template_set_special)");
    const char *last_role = json_string_value(json_object_get(json_array_get(messages, n - 1), "role"));
    s->prompt_only = strcmp(last_role, "assistant") != 0;
    json_t *vars = json_object();
    json_object_set(vars, "messages", (json_t *)messages);
    if (tools && json_array_size(tools) > 0) json_object_set(vars, "tools", (json_t *)tools);
    if (ct->bos_token) json_object_set_new(vars, "bos_token", json_string(ct->bos_token));
    if (ct->eos_token) json_object_set_new(vars, "eos_token", json_string(ct->eos_token));
    json_object_set_new(vars, "date_string", json_string(ct->date));
    if (!ct->thinking) json_object_set_new(vars, "enable_thinking", json_false());
    struct spans sp = { messages, xcalloc(n, sizeof(size_t)), xcalloc(n, sizeof(size_t)) };
    size_t len, glen = 0, gpn = 0;
    char why[400], *gen = NULL;
    char *text = jinja_text(ct, vars, s->prompt_only, &sp, &len, why, sizeof why);
    int rc = 0;
    if (!text) {
        rc = fail(err, errlen, "chat template: %s", why);
    } else if (!s->prompt_only) {
        // the generation prompt: what add_generation_prompt appends to this conversation
        gen = jinja_text(ct, vars, true, NULL, &glen, why, sizeof why);
        if (gen && glen >= len && memcmp(gen, text, len) == 0) gpn = glen - len;
    }
    size_t done = 0;
    bool any = false;
    for (size_t i = 0; text && !s->prompt_only && i < n; i++) {
        const char *role = json_string_value(json_object_get(json_array_get(messages, i), "role"));
        if (strcmp(role, "assistant") != 0 || sp.end[i] == 0 || sp.begin[i] < done) continue;
        size_t b = sp.begin[i], e = sp.end[i], k = 0;
        while (k < gpn && b + k < e && gen[len + k] == text[b + k]) k++;   // the generation prompt
        const char *eos = ct->eos_token && *ct->eos_token ? memmem_last(text + b + k, e - b - k, ct->eos_token) : NULL;
        if (eos) e = (size_t)(eos - text) + strlen(ct->eos_token);
        else while (e > b + k && strchr(" \t\r\n", text[e - 1])) e--;   // the newline after an end-of-turn
        chat_segments_add(s, text + done, b + k - done, false);
        chat_segments_add(s, text + b + k, e - b - k, true);
        done = e;
        any = true;
    }
    if (text) chat_segments_add(s, text + done, len - done, false);
    if (text && !s->prompt_only && !any)
        rc = fail(err, errlen, "chat template: no assistant message is written in a loop over the messages, "
                               "so srlm cannot tell which text to train");
    free(text);
    free(gen);
    free(sp.begin);
    free(sp.end);
    json_decref(vars);
    return rc;
}

int chat_render_tools(const struct chat_template *ct, const json_t *messages, const json_t *tools,
                      struct chat_segments *out, char *err, size_t errlen)
{
    chat_segments_clear(out);
    if (ct->family == CHAT_JINJA) {
        if (!json_is_array(messages)) return fail(err, errlen, "expected an array of messages");
        if (json_array_size(messages) == 0) return fail(err, errlen, "no messages");
        return render_jinja(ct, messages, tools, out, err, errlen);
    }
    if (tools && json_array_size(tools) > 0)
        return fail(err, errlen, "tools are not supported by the %s renderer%s", ct->name, USE_JINJA);
    struct msg *m = NULL;
    size_t n;
    if (get_messages(messages, &m, &n, err, errlen) != 0) return -1;
    out->prompt_only = !is_assistant(&m[n - 1]);
    switch (ct->family) {
    case CHAT_CHATML:
    case CHAT_QWEN25: render_chatml(ct, m, n, out); break;
    case CHAT_QWEN3: render_qwen3(ct, m, n, out); break;
    case CHAT_LLAMA3: render_llama3(m, n, out); break;
    case CHAT_LLAMA31: render_llama31(ct, m, n, out); break;
    case CHAT_JINJA: break;
    }
    free(m);
    return 0;
}

int chat_render(const struct chat_template *ct, const json_t *messages, struct chat_segments *out,
                char *err, size_t errlen)
{
    return chat_render_tools(ct, messages, NULL, out, err, errlen);
}

static int string_field(const json_t *rec, const char *name, bool required, const json_t **out,
                        char *err, size_t errlen)
{
    *out = json_object_get(rec, name);
    if (!*out) return required ? fail(err, errlen, "missing field \"%s\"", name) : 0;
    if (!json_is_string(*out)) return fail(err, errlen, "field \"%s\": expected a string", name);
    return 0;
}

int chat_render_record(const struct chat_template *ct, const char *ct_err, const json_t *rec,
                       const struct chat_fields *f, struct chat_segments *out, char *err, size_t errlen)
{
    const json_t *msgs = json_object_get(rec, f->messages), *a, *b;
    chat_segments_clear(out);
    if (msgs) {
        char inner[512];
        if (!ct) return fail(err, errlen, "field \"%s\": %s", f->messages, ct_err);
        const json_t *tools = json_object_get(rec, "tools");
        if (tools && !json_is_array(tools) && !json_is_null(tools))
            return fail(err, errlen, "field \"tools\": expected an array");
        if (chat_render_tools(ct, msgs, json_is_array(tools) ? tools : NULL, out, inner, sizeof inner) != 0)
            return fail(err, errlen, "field \"%s\"%s%s", f->messages, inner[0] == '[' ? "" : ": ", inner);
        return CHAT_MODE_CHAT;
    }
    if (f->text) {
        if (string_field(rec, f->text, true, &a, err, errlen)) return -1;
        chat_segments_add(out, json_string_value(a), json_string_length(a), true);
        return CHAT_MODE_TEXT;
    }
    if (string_field(rec, f->prompt, true, &a, err, errlen) ||
        string_field(rec, f->completion, false, &b, err, errlen))
        return -1;
    out->prompt_only = b == NULL;
    chat_segments_add(out, json_string_value(a), json_string_length(a), false);
    if (b) chat_segments_add(out, json_string_value(b), json_string_length(b), true);
    return b ? CHAT_MODE_COMPLETION : CHAT_MODE_PROMPT;
}

// ---------------------------------------------------------------------------------------------
// encoding

void chat_tokens_free(struct chat_tokens *x)
{
    tok_ids_free(&x->ids);
    free(x->mask);
    memset(x, 0, sizeof *x);
}

// Extends the mask to cover ids added since it last covered `from` ids.
static void mask_fill(struct chat_tokens *x, size_t from, uint8_t v)
{
    if (!x->mask || x->ids.n > x->mask_cap) {
        x->mask_cap = x->ids.cap > 64 ? x->ids.cap : 64;
        x->mask = xrealloc(x->mask, x->mask_cap);
    }
    memset(x->mask + from, v, x->ids.n - from);
}

static void push_ids(struct chat_tokens *x, const int32_t *ids, size_t n, uint8_t v)
{
    size_t from = x->ids.n;
    for (size_t i = 0; i < n; i++) tok_ids_push(&x->ids, ids[i]);
    mask_fill(x, from, v);
}

static void set_prompt_len(struct chat_tokens *x)
{
    x->prompt_len = 0;
    while (x->prompt_len < x->ids.n && !x->mask[x->prompt_len]) x->prompt_len++;
}

int chat_encode(struct tokenizer *t, const struct chat_segments *s, bool add_special, int32_t eos,
                struct chat_tokens *x, size_t *bad_offset)
{
    const int32_t *special;
    x->ids.n = 0;
    if (add_special) push_ids(x, special, tokenizer_special_prefix(t, &special), 0);
    for (size_t i = 0; i < s->n; i++) {
        size_t from = x->ids.n, bad;
        const struct chat_segment *g = &s->seg[i];
        // a segment continues the previous one's section unless that ended with an added token
        // (tokenizer.h), so SentencePiece prepends "▁" where HF would, encoding one string
        bool cont = from > 0 && i > 0 && !tokenizer_is_added(t, x->ids.v[from - 1]);
        if (tokenizer_encode_cont(t, s->text + g->off, g->len, cont, &x->ids, &bad) != 0) {
            if (bad_offset) *bad_offset = g->off + bad;
            return TOKENIZER_EUTF8;
        }
        mask_fill(x, from, g->trained);
    }
    uint8_t last = s->n > 0 && s->seg[s->n - 1].trained;
    if (eos >= 0) push_ids(x, &eos, 1, last);
    if (add_special) push_ids(x, special, tokenizer_special_suffix(t, &special), last);
    mask_fill(x, x->ids.n, 0);   // allocates the mask even for an empty sequence
    set_prompt_len(x);
    return 0;
}

bool chat_tokens_truncate(struct chat_tokens *x, size_t max_len, enum chat_truncate side)
{
    if (x->ids.n <= max_len) return false;
    if (side == CHAT_TRUNCATE_LEFT) {
        size_t cut = x->ids.n - max_len;
        memmove(x->ids.v, x->ids.v + cut, max_len * sizeof *x->ids.v);
        memmove(x->mask, x->mask + cut, max_len);
    }
    x->ids.n = max_len;
    set_prompt_len(x);
    return true;
}
