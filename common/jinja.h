// jinja.h — a renderer for the Jinja subset that chat templates use (tokenizer_config.json's
// chat_template), written to give the same text as @huggingface/jinja (the engine of
// transformers.js), which is its test oracle (tests/cli/chat-template.sh). docs/tokenizer.md
// lists the subset for users.
//
// Contract:
// - jinja_parse() reads the template as @huggingface/jinja does with trim_blocks and
//   lstrip_blocks (as transformers does): one trailing newline dropped, {%- -%} {{- -}} {#- -#}
//   whitespace control, {% generation %} tags removed. Statements: if/elif/else, for (with an
//   `if` filter, an else block, tuple targets, loop.index/index0/revindex/revindex0/first/last/
//   length/previtem/nextitem), set (name, tuple, namespace attribute, block form), macro (with
//   defaults and keyword arguments), filter blocks, break, continue, comments. Expressions:
//   literals (strings, ints, floats, lists, tuples, dicts), names, .attr and [key], slices
//   [a:b:c], calls, `x if c else y`, and/or/not, in/not in, == != < > <= >=, + - * / // % **, ~.
//   Globals: namespace(), range(), raise_exception(), strftime_now(), true/false/none.
//   String methods: upper lower strip lstrip rstrip title capitalize startswith endswith split
//   replace; dict methods: get items keys values. Filters: see FILTERS in jinja.c (trim, length,
//   tojson, upper, lower, replace, string, default, items, first, last, join, selectattr,
//   rejectattr, map(attribute=), ...). Tests: defined undefined none string number integer
//   boolean mapping iterable sequence callable true false odd even lower upper equalto eq.
//   Anything else (an unknown filter, test or statement, {% call %}, argument unpacking) is
//   refused at parse time with a one-line message naming the construct and its line.
// - Where @huggingface/jinja departs from Python's Jinja on something real templates use, this
//   renderer follows Python (transformers): strip/lstrip/rstrip honour their argument (Qwen3's
//   .rstrip('\n')), and whitespace in strip/trim is what Python's str.isspace() accepts.
//   String lengths, indices and slices count code points.
// - jinja_render() evaluates the template with the variables of `vars` (a JSON object; its
//   values are read, never changed). Errors (raise_exception(), a type error, an undefined
//   value where a string is needed) give -1 and a one-line message. Hostile templates cannot
//   crash it: parse nesting, call depth, loop work, memory and output size are bounded
//   (JINJA_MAX_*), each giving an error when exceeded.
// - on_item, when set, is called after each iteration of a {% for %} at the top level of the
//   output (not inside a macro call or a set block) whose loop item is a JSON object of `vars`,
//   with the byte range of the output that iteration wrote. chat.c uses it to find the text of
//   each message of the conversation.
// - Ownership: a template is immutable after parsing and may be rendered many times; the
//   rendered text is malloc'd and belongs to the caller; err belongs to the caller.
#ifndef SRLM_JINJA_H
#define SRLM_JINJA_H

#include <jansson.h>
#include <stddef.h>

#define JINJA_MAX_DEPTH 200             // parse nesting and evaluation recursion
#define JINJA_MAX_OUTPUT (64u << 20)    // bytes of rendered text (and of any captured block)
#define JINJA_MAX_MEMORY (512u << 20)   // bytes of values a render may create
#define JINJA_MAX_STEPS 10000000L       // statements + loop iterations of a render

struct jinja_template;

struct jinja_opts {
    const json_t *vars;   // object: variable name -> value (messages, add_generation_prompt, ...)
    const char *date;     // the day strftime_now() formats, "DD Mon YYYY" (NULL: today, UTC)
    void (*on_item)(void *ctx, const json_t *item, size_t begin, size_t end);
    void *ctx;
};

// Returns the parsed template, or NULL with a one-line message in err.
struct jinja_template *jinja_parse(const char *text, char *err, size_t errlen);
void jinja_free(struct jinja_template *t);

// Renders t. Returns the text (NUL-terminated, length in *len), or NULL with a message in err.
char *jinja_render(const struct jinja_template *t, const struct jinja_opts *o, size_t *len,
                   char *err, size_t errlen);

#endif
