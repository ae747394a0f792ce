// test-jinja.c — the Jinja renderer (common/jinja.c) and the jinja chat family (common/chat.c):
// constructs against hand-checked outputs, hostile templates (errors, never a crash), and the
// training mask of the jinja family against the five hand-written families. The comparison
// with @huggingface/jinja on the real templates is tests/cli/chat-template.sh, through the
// driver mode:
//
//   test-jinja render CONFIG_JSON [--date "DD Mon YYYY"] < cases.jsonl > out.jsonl
//
// (the same input and output as tests/oracle/jinja-render.mjs).
#include "chat.h"
#include "jinja.h"
#include "test.h"
#include "util.h"

#include <string.h>
#include <sysexits.h>

// Renders tpl with the variables of the JSON object vars; the text, or "ERROR: message".
static char *render(const char *tpl, const char *vars)
{
    static char out[8192];
    char err[512];
    struct jinja_template *t = jinja_parse(tpl, err, sizeof err);
    if (!t) {
        snprintf(out, sizeof out, "ERROR: %s", err);
        return out;
    }
    json_t *v = json_loads(vars ? vars : "{}", 0, NULL);
    struct jinja_opts o = { .vars = v, .date = "05 Mar 2025" };
    size_t len;
    char *text = jinja_render(t, &o, &len, err, sizeof err);
    if (text) snprintf(out, sizeof out, "%s", text);
    else snprintf(out, sizeof out, "ERROR: %s", err);
    free(text);
    json_decref(v);
    jinja_free(t);
    return out;
}

#define EXPECT(tpl, vars, want) do { \
    const char *got_ = render(tpl, vars); \
    CHECK_MSG(strcmp(got_, want) == 0, "%s -> [%s], want [%s]", tpl, got_, want); \
} while (0)
#define EXPECT_ERR(tpl, vars, part) do { \
    const char *got_ = render(tpl, vars); \
    CHECK_MSG(strncmp(got_, "ERROR: ", 7) == 0 && strstr(got_, part), "%s -> [%s], want an error with [%s]", tpl, got_, part); \
} while (0)

static void test_syntax(void)
{
    EXPECT("a {{ 'b' }} c", NULL, "a b c");
    EXPECT("x\n", NULL, "x");                                      // one trailing newline dropped
    EXPECT("  {%- if true %}\n  y\n{% endif -%}  z", NULL, "  y\nz");
    EXPECT("a\n  {% if true %}\nb\n  {% endif %}\nc", NULL, "a\nb\nc");   // lstrip_blocks, trim_blocks
    EXPECT("a {# note #} b {#- gone -#} c", NULL, "a  bc");
    EXPECT("{{ 'it''s' }} {{ \"q\\\"\\n\" }}", NULL, "its q\"\n");
    EXPECT("{{ '\\u00e9\\x41' }}", NULL, "\xc3\xa9" "A");
    EXPECT("{% if 1 < 2 and not false %}yes{% elif x %}no{% else %}never{% endif %}", NULL, "yes");
    EXPECT("{% if x %}a{% elif y %}b{% else %}c{% endif %}", "{\"y\":1}", "b");
    EXPECT("{{ 'a' if x else 'b' }}{{ 'c' if true }}{{ 'd' if false }}", NULL, "bc");
    EXPECT("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ -3 }} {{ 1.5 + 1 }} {{ 2.0 }}", NULL,
           "7 3 1 1024 3.5 -3 2.5 2.0");
    EXPECT("{{ 'a' ~ 1 ~ true }} {{ 'n=' + 3 }}", NULL, "a1true n=3");
    EXPECT("{{ [1, 2] + [3] }} {{ {'a': 1, 'b': [true, none]} }}", NULL, "[1, 2, 3] {\"a\": 1, \"b\": [true, null]}");
    EXPECT("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ 1 in undefined_x }}", NULL,
           "true true true true false");
    EXPECT("{{ 1 == 1.0 }} {{ '1' == 1 }} {{ none == undefined_x }} {{ [] == [] }}", NULL, "true true true false");
    EXPECT("{% set x = 3 %}{% set a, b = [1, 2] %}{{ x }}{{ a }}{{ b }}", NULL, "312");
    EXPECT("{% set s %}in{{ 1 }}{% endset %}[{{ s }}]", NULL, "[in1]");
    EXPECT("{% set ns = namespace(n=0, s='') %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}", NULL, "3");
    EXPECT("{% for i in range(3) %}{% set y = i %}{% endfor %}{{ y }}", NULL, "");   // loop scope
    EXPECT("{% macro m(a, b='d') %}<{{ a }}{{ b }}>{% endmacro %}{{ m(1) }}{{ m(2, b=3) }}{{ m(a=4) }}", NULL, "<1d><23><4d>");
    EXPECT("{% filter upper %}ab{{ 'c' }}{% endfilter %}", NULL, "ABC");
    EXPECT("{{ x.y.z }}|{{ x['y'] }}|{{ [1,2,3][-1] }}|{{ 'abc'[1] }}|{{ [1][5] }}", "{\"x\":{\"y\":{\"z\":\"Z\"}}}",
           "Z|{\"z\": \"Z\"}|3|b|");
    EXPECT("{{ 'hello'[1:3] }} {{ [1,2,3,4][::-1] }} {{ [1,2,3][1:] }} {{ 'héllo'[::2] }}", NULL, "el [4, 3, 2, 1] [2, 3] hlo");
}

static void test_loops(void)
{
    const char *v = "{\"m\":[\"a\",\"b\",\"c\"]}";
    EXPECT("{% for x in m %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ x }};{% endfor %}", v,
           "01truefalse3a;12falsefalse3b;23falsetrue3c;");
    EXPECT("{% for x in m %}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}", v,
           "32b;21ac;10b;");
    EXPECT("{% for x in m if x != 'b' %}{{ x }}{{ loop.index }}{% endfor %}", v, "a1c2");
    EXPECT("{% for x in m %}{% if x == 'b' %}{% continue %}{% endif %}{{ x }}{% endfor %}", v, "ac");
    EXPECT("{% for x in m %}{% if x == 'b' %}{% break %}{% endif %}{{ x }}{% endfor %}", v, "a");
    EXPECT("{% for x in [] %}x{% else %}empty{% endfor %}", NULL, "empty");
    EXPECT("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}", "{\"d\":{\"a\":1,\"b\":2}}",
           "a=1;b=2;ab");
    EXPECT("{% for x in m %}{% for y in m %}{{ loop.index }}{% endfor %}{{ loop.index }}|{% endfor %}", v, "1231|1232|1233|");
}

static void test_filters(void)
{
    EXPECT("{{ ' a b ' | trim }}|{{ 'aB' | upper }}{{ 'aB' | lower }}|{{ [1,2] | length }}{{ 'héllo' | length }}", NULL,
           "a b|ABab|25");
    EXPECT("{{ {'a': [1, 'é\"'], 'b': none} | tojson }}", NULL, "{\"a\": [1, \"é\\\"\"], \"b\": null}");
    EXPECT("{{ {'a': [1, {}], 'b': []} | tojson(indent=2) }}", NULL, "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}");
    EXPECT("{{ {'b': 1, 'a': 'é'} | tojson(sort_keys=true, ensure_ascii=true) }}", NULL, "{\"a\": \"\\u00e9\", \"b\": 1}");
    EXPECT("{{ [1, 2] | tojson(separators=(',', ':')) }}", NULL, "[1,2]");
    EXPECT("{{ x | default('d') }}{{ '' | default('e', true) }}{{ 'v' | default('f') }}", NULL, "dev");
    EXPECT("{{ 'a-b-a' | replace('a', 'x') }} {{ 'a-b-a'.replace('a', 'x', 1) }}", NULL, "x-b-x x-b-a");
    EXPECT("{{ [3,1,2] | first }}{{ [3,1,2] | last }}{{ [3,1,2] | sort | join(',') }}{{ ['b','A','a'] | sort | join }}", NULL,
           "321,2,3Aab");
    EXPECT("{{ [1,2,2,1] | unique | list }}{{ [1,2] | reverse | join }}{{ 5 | string }}{{ '7' | int + 1 }}{{ -2 | abs }}", NULL,
           "[1, 2]2158" "2");
    const char *tools = "{\"t\":[{\"n\":\"a\",\"k\":\"x\",\"f\":{\"g\":1}},{\"n\":\"b\",\"k\":\"y\"},{\"n\":\"c\",\"k\":\"x\"}]}";
    EXPECT("{{ t | selectattr('k', 'equalto', 'x') | map(attribute='n') | join(',') }}", tools, "a,c");
    EXPECT("{{ t | rejectattr('k', 'equalto', 'x') | map(attribute='n') | list }}", tools, "[\"b\"]");
    EXPECT("{{ t | selectattr('f') | map(attribute='f.g') | first }}", tools, "1");
    EXPECT("{{ t[0] | items | list | length }} {{ t[0].keys() | join }} {{ t[0].get('n') }}{{ t[0].get('zz', 'dflt') }}", tools,
           "3 nkf adflt");
    EXPECT("{{ 'a\\nb' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}", NULL, "a\n  b|  a\n  b");
    EXPECT("{{ 'hello world' | title }} {{ 'hello' | capitalize }}", NULL, "Hello World Hello");
}

static void test_methods_tests(void)
{
    EXPECT("{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a,b,c'.split(',', 1) }}", NULL,
           "[\"a\", \"b\", \"\", \"c\"] [\"a\", \"b\"] [\"a\", \"b,c\"]");
    // Python's strip(chars) (@huggingface/jinja ignores the argument): Qwen3's .rstrip('\n')
    EXPECT("[{{ '\\n x \\n'.strip('\\n') }}][{{ 'xxaxx'.lstrip('x') }}][{{ 'xxaxx'.rstrip('x') }}][{{ ' a '.strip() }}]", NULL,
           "[ x ][axx][xxa][a]");
    EXPECT("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'bc')) }}{{ 'AbC'.upper() }}{{ 'AbC'.lower() }}", NULL,
           "truetrueABCabc");
    EXPECT("{{ x is defined }}{{ none is none }}{{ x is undefined }}{{ 's' is string }}{{ {} is mapping }}"
           "{{ [] is iterable }}{{ 's' is iterable }}{{ {} is iterable }}{{ 3 is number }}{{ 3 is odd }}{{ false is false }}",
           NULL, "falsetruetruetruetruetruetruefalsetruetruetrue");
    EXPECT("{{ x is not none }}{{ x is not defined }}", "{\"x\":null}", "falsefalse");
    EXPECT("{{ strftime_now('%d %b %Y, %B %m') }}", NULL, "05 Mar 2025, March 03");
}

// Templates outside the subset, malformed ones, and runaway ones: an error naming the construct
// (and its line), never a crash.
static void test_hostile(void)
{
    EXPECT_ERR("{{ x | custom }}", NULL, "line 1: the filter 'custom' is not supported");
    EXPECT_ERR("a\n{{ x is divisibleby }}", NULL, "line 2: the test 'divisibleby' is not supported");
    EXPECT_ERR("{% call m() %}x{% endcall %}", NULL, "{% call %} blocks are not supported");
    EXPECT_ERR("{% include 'x' %}", NULL, "unknown statement {% include %}");
    EXPECT_ERR("{{ f(*args) }}", NULL, "argument unpacking");
    EXPECT_ERR("{% if x %}never closed", NULL, "unclosed {% if %} (no {% endif %})");
    EXPECT_ERR("{% for x in y %}a", NULL, "unclosed {% for %}");
    EXPECT_ERR("{% endif %}", NULL, "{% endif %} without its opening statement");
    EXPECT_ERR("{{ 'abc }}", NULL, "unterminated string literal");
    EXPECT_ERR("{{ x ", NULL, "expected '}}'");
    EXPECT_ERR("{# never closed", NULL, "unclosed comment");
    EXPECT_ERR("{{ (1 + }}", NULL, "unexpected");
    EXPECT_ERR("{{ @ }}", NULL, "unexpected character '@'");
    EXPECT_ERR("{{ raise_exception('no system role') }}", NULL, "the template raised an exception: no system role");
    EXPECT_ERR("{{ x.y + 'a' }}", NULL, "cannot apply '+' to an undefined value");
    EXPECT_ERR("{{ undefined_fn() }}", NULL, "cannot call a undefined");
    EXPECT_ERR("{{ 1 // 0 }}", NULL, "division by zero");
    EXPECT_ERR("{% break %}", NULL, "outside a loop");
    EXPECT_ERR("{% for i in range(100000000) %}{% endfor %}", NULL, "range() of more than");
    EXPECT_ERR("{% for i in range(100000) %}{% for j in range(100) %}{{ '' }}{% endfor %}{% endfor %}", NULL, "steps");
    EXPECT_ERR("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, "recurses too deeply");
    EXPECT_ERR("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
               "{{ ns.s }}", NULL, "a string exceeds");
    // deep nesting: of expressions, of statements, of values
    size_t n = 100000;
    char *deep = xmalloc(4 * n + 16);
    memset(deep, 0, 4 * n + 16);
    strcpy(deep, "{{ ");
    for (size_t i = 0; i < n; i++) strcat(deep + 3 * 0, "(");
    EXPECT_ERR(deep, NULL, "nests more than");
    deep[0] = 0;
    for (size_t i = 0; i < n / 10; i++) strcat(deep, "{% if 1 %}");
    EXPECT_ERR(deep, NULL, "nests more than");
    free(deep);
    EXPECT_ERR("{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}", NULL,
               "nests more than 1000");
    // every prefix of a real template fails cleanly or renders
    const char *tpl = "{%- set ns = namespace(a=1) -%}{% for m in messages[::-1] if m.role != 'x' %}{{ m['content'] | trim ~ "
                      "(m.content is string) }}{% macro k(a, b=2) %}{{ a ~ b }}{% endmacro %}{{ k(1, b=[{'x': [1, 2.5]}][0].x[1]) }}"
                      "{% endfor %}{# c #}{{ '\\n' if ns.a else \"\" }}";
    const char *vars = "{\"messages\":[{\"role\":\"user\",\"content\":\" hi \"}]}";
    char buf[1024];
    int errors = 0;
    for (size_t k = 0; k <= strlen(tpl); k++) {
        snprintf(buf, sizeof buf, "%.*s", (int)k, tpl);
        errors += strncmp(render(buf, vars), "ERROR: ", 7) == 0;
    }
    CHECK(errors > 10);
    EXPECT(tpl, vars, "hitrue12.5\n");
}

// The jinja family: rendering, the mask, and the same segments as the hand-written families.
static const char QWEN_TPL[] =
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}{%- for message in messages %}{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) "
    "or (message.role == 'assistant') %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- elif message.role == 'tool' %}{{- '<|im_start|>user\\n<tool_response>\\n' + message.content + "
    "'\\n</tool_response><|im_end|>\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}{%- endif %}";

static void segments_text(const struct chat_segments *s, char *out, size_t n)
{
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < s->n && o < n; i++)
        o += (size_t)snprintf(out + o, n - o, s->seg[i].trained ? "[%.*s]" : "%.*s", (int)s->seg[i].len,
                              s->text + s->seg[i].off);
}

static void test_chat_family(void)
{
    struct chat_template named, jin;
    char err[512], a[4096], b[4096];
    CHECK(chat_template_init(&named, QWEN_TPL, NULL, err, sizeof err) == 0 && named.family == CHAT_QWEN25);
    CHECK(chat_template_init(&jin, QWEN_TPL, "jinja", err, sizeof err) == 0 && jin.family == CHAT_JINJA &&
          strcmp(jin.name, "jinja") == 0);
    chat_template_set_special(&jin, NULL, "<|im_end|>");
    const char *convs[] = {
        "[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":\"A\"}]",
        "[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":\"A\\n\"},"
        "{\"role\":\"user\",\"content\":\"Q2\"},{\"role\":\"assistant\",\"content\":\"\"}]",
        "[{\"role\":\"user\",\"content\":\"Q\"}]",
    };
    struct chat_segments s1 = { 0 }, s2 = { 0 };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
        json_t *m = json_loads(convs[i], 0, NULL);
        CHECK(chat_render(&named, m, &s1, err, sizeof err) == 0);
        CHECK_MSG(chat_render(&jin, m, &s2, err, sizeof err) == 0, "%s", err);
        segments_text(&s1, a, sizeof a);
        segments_text(&s2, b, sizeof b);
        CHECK_MSG(strcmp(a, b) == 0 && s1.prompt_only == s2.prompt_only, "conversation %zu:\n%s\n---\n%s", i, a, b);
        json_decref(m);
    }
    // tools: refused by the family, rendered by the template
    json_t *m = json_loads("[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"tool\",\"content\":\"42\"},"
                           "{\"role\":\"assistant\",\"content\":\"A\"}]", 0, NULL);
    CHECK(chat_render(&named, m, &s1, err, sizeof err) != 0 && strstr(err, "--chat-template jinja"));
    CHECK(chat_render(&jin, m, &s2, err, sizeof err) == 0);
    segments_text(&s2, b, sizeof b);
    CHECK_MSG(strstr(b, "<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n<|im_start|>assistant\n[A<|im_end|>]\n"),
              "%s", b);
    json_decref(m);
    // a raising template and a template that names no assistant turn
    chat_template_free(&jin);
    CHECK(chat_template_init(&jin, "{{ raise_exception('roles must alternate') }}", NULL, err, sizeof err) == 0);
    m = json_loads("[{\"role\":\"user\",\"content\":\"Q\"}]", 0, NULL);
    CHECK(chat_render(&jin, m, &s2, err, sizeof err) != 0 && strstr(err, "roles must alternate"));
    json_decref(m);
    chat_template_free(&jin);
    CHECK(chat_template_init(&jin, "{{ messages[0].content }}", NULL, err, sizeof err) == 0);
    m = json_loads("[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":\"A\"}]", 0, NULL);
    CHECK(chat_render(&jin, m, &s2, err, sizeof err) != 0 && strstr(err, "cannot tell which text to train"));
    json_decref(m);
    chat_template_free(&jin);
    // outside the subset: the family names the construct and the way out
    CHECK(chat_template_init(&jin, "{{ messages | custom }}", NULL, err, sizeof err) != 0 &&
          strstr(err, "unrecognised chat template; name one with --chat-template") && strstr(err, "'custom'"));
    CHECK(chat_template_init(&jin, NULL, "jinja", err, sizeof err) != 0 && strstr(err, "no chat template"));
    chat_segments_free(&s1);
    chat_segments_free(&s2);
    chat_template_free(&named);
}

// ---------------------------------------------------------------------------------------------
// driver: render CONFIG_JSON [--date D] < cases > out (see tests/oracle/jinja-render.mjs)

static const char *token_text(const json_t *t)
{
    if (json_is_object(t)) t = json_object_get(t, "content");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

static int drive(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "render") != 0) die(EX_USAGE, "usage: test-jinja render CONFIG_JSON [--date D]");
    const char *date = argc > 4 && strcmp(argv[3], "--date") == 0 ? argv[4] : CHAT_DEFAULT_DATE;
    json_error_t je;
    json_t *config = json_load_file(argv[2], JSON_DECODE_INT_AS_REAL, &je);   // model_max_length can exceed int64
    if (!config) die(EX_NOINPUT, "%s: %s", argv[2], je.text);
    const char *tpl = json_string_value(json_object_get(config, "chat_template"));
    char perr[512], err[512];
    struct jinja_template *t = tpl ? jinja_parse(tpl, perr, sizeof perr) : NULL;
    if (!tpl) snprintf(perr, sizeof perr, "no chat_template");
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        json_t *vars = json_loads(line, 0, &je);
        if (!vars) die(EX_DATAERR, "bad input line: %s", je.text);
        json_t *res = json_object();
        const json_t *msgs = json_object_get(vars, "messages");
        const json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
        const char *role = json_string_value(json_object_get(last, "role"));
        if (!json_object_get(vars, "add_generation_prompt"))
            json_object_set_new(vars, "add_generation_prompt", json_boolean(role && strcmp(role, "assistant") != 0));
        if (!json_object_get(vars, "date_string")) json_object_set_new(vars, "date_string", json_string(date));
        const char *bos = token_text(json_object_get(config, "bos_token")), *eos = token_text(json_object_get(config, "eos_token"));
        if (bos && !json_object_get(vars, "bos_token")) json_object_set_new(vars, "bos_token", json_string(bos));
        if (eos && !json_object_get(vars, "eos_token")) json_object_set_new(vars, "eos_token", json_string(eos));
        struct jinja_opts o = { .vars = vars, .date = date };
        size_t len;
        char *text = t ? jinja_render(t, &o, &len, err, sizeof err) : NULL;
        if (text) json_object_set_new(res, "text", json_stringn(text, len));
        else json_object_set_new(res, "error", json_string(t ? err : perr));
        char *s = json_dumps(res, JSON_COMPACT);
        puts(s);
        free(s);
        free(text);
        json_decref(res);
        json_decref(vars);
    }
    free(line);
    jinja_free(t);
    json_decref(config);
    return 0;
}

int main(int argc, char **argv)
{
    tool_init("test-jinja");
    if (argc > 1) return drive(argc, argv);
    test_syntax();
    test_loops();
    test_filters();
    test_methods_tests();
    test_hostile();
    test_chat_family();
    return test_finish("test-jinja");
}
