// chat.h — turning an input record (prompt/completion, plain text, or a chat conversation) into
// token ids with a per-token training mask. docs/tokenizer.md describes the rules for users.
//
// Contract:
// - chat_template_init() recognises five template families by the markers of a
//   tokenizer_config.json chat_template and renders them with code that mirrors them (below);
//   any other template is interpreted as Jinja (common/jinja.h, family "jinja"). An explicit
//   name overrides detection: a family name, or "jinja" to interpret the template itself
//   (which renders tools, tool calls and any role the template knows). The families:
//     chatml   <|im_start|>role\ncontent<|im_end|>\n, with the default system prompt the template
//              holds as a literal (SmolLM2), if any
//     qwen2.5  chatml with "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
//              as default system prompt (or the literal the template holds, e.g. Qwen2.5-Math)
//     qwen3    chatml with Qwen3's <think> handling of assistant turns after the last user turn
//     llama3   <|begin_of_text|> then <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
//              (Llama-3.0's template: content is stripped of surrounding whitespace)
//     llama3.1 llama3 with Llama-3.1/3.2's system block, always written first: "Cutting Knowledge
//              Date: December 2023\nToday Date: {date}\n\n" + the first message if it is a system
//              message (stripped), else nothing. The date is ct->date ("26 Jul 2024" by default,
//              the date Llama-3.1's template writes; Llama-3.2's writes today's date).
//   No template, or one outside the Jinja subset, is an error (the caller exits 65 and suggests
//   --chat-template); with the five families, tools, tool calls and roles other than
//   system/user/assistant are errors that point to --chat-template jinja.
// - jinja: the template gets the variables transformers gives it: messages, tools (a record's
//   non-empty "tools" array), add_generation_prompt, bos_token and eos_token (when
//   chat_template_set_special named them), date_string (ct->date, which strftime_now() also
//   formats) and enable_thinking=false with ct->thinking off. The text of an assistant
//   message is what the template writes in the iteration of its loop over the messages that has
//   that message as the item; of it, the part after the generation prompt (the text
//   add_generation_prompt appends, as far as it matches) up to and including the last eos_token
//   is trained (without an eos_token in it: up to the whitespace that ends the iteration). A
//   template that mentions bos_token or eos_token is refused when chat_template_set_special was
//   not called: rendering it without them would silently drop the model's special tokens.
// - chat_render() fills segments of text, each trained or not. Trained: the content of assistant
//   turns (with Qwen3's non-empty <think> block) and the end-of-turn token that closes them.
//   Untrained: everything else (role headers, system and user turns, the newline after an
//   end-of-turn, Qwen3's empty <think></think> scaffold). A conversation whose last message is
//   not from the assistant gets the generation prompt appended and becomes a prompt-only record:
//   nothing in it is trained.
// - chat_encode() encodes each run of same-flag text as one string (so a whole prompt is
//   tokenized exactly as HF tokenizes the rendered template), and adds the post-processor's
//   special tokens (Llama-3's BOS) and an EOS when asked.
// - Ownership: segments and tokens own their buffers (init zeroed, *_free releases them);
//   err buffers belong to the caller.
#ifndef SRLM_CHAT_H
#define SRLM_CHAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

enum chat_family { CHAT_CHATML, CHAT_QWEN25, CHAT_QWEN3, CHAT_LLAMA3, CHAT_LLAMA31, CHAT_JINJA };

struct jinja_template;

struct chat_template {
    enum chat_family family;
    const char *name;          // "chatml", "qwen2.5", "qwen3", "llama3", "llama3.1", "jinja"
    char *default_system;      // used when the conversation has no system message; NULL: none
    bool thinking;             // qwen3 generation prompt: false appends the empty <think> block
    char date[12];             // llama3.1 "Today Date", "DD Mon YYYY"; set to CHAT_DEFAULT_DATE
    struct jinja_template *jinja;   // the parsed template (family CHAT_JINJA), else NULL
    char *bos_token, *eos_token;    // jinja's bos_token/eos_token; NULL: undefined
    bool special_set;               // chat_template_set_special was called (even with NULLs)
    bool uses_special;              // the jinja template mentions bos_token or eos_token
};

// The date Llama-3.1's template always writes and Llama-3.2's writes without strftime_now.
#define CHAT_DEFAULT_DATE "26 Jul 2024"

// Returns true if s is a date as strftime("%d %b %Y") writes it in the C locale ("05 Mar 2025"):
// a two-digit day that exists in that month, an English month abbreviation, a four-digit year.
bool chat_date_valid(const char *s);

// Returns true if name is a template name chat_template_init accepts as an override.
bool chat_template_known(const char *name);
// Detects the family from text (may be NULL), or uses override (a known name) when non-NULL.
// Returns 0, or -1 with a message in err.
int chat_template_init(struct chat_template *ct, const char *text, const char *override,
                       char *err, size_t errlen);
void chat_template_free(struct chat_template *ct);
// Sets the bos_token/eos_token strings the jinja family's template sees (either may be NULL:
// undefined); the tokenizer's special tokens (tokenizer_token_str of tokenizer_bos_id/eos_id).
void chat_template_set_special(struct chat_template *ct, const char *bos, const char *eos);

struct chat_segment {
    size_t off, len;           // into chat_segments.text
    bool trained;
};

struct chat_segments {
    char *text;
    size_t len, cap;
    struct chat_segment *seg;
    size_t n, seg_cap;
    bool prompt_only;          // no trained segment by construction (prompt record)
};

void chat_segments_clear(struct chat_segments *s);
void chat_segments_free(struct chat_segments *s);
// Appends text; merges with the previous segment when the flag is the same.
void chat_segments_add(struct chat_segments *s, const char *p, size_t n, bool trained);

// Renders a messages array. Returns 0, or -1 with a message naming the message and field in err.
int chat_render(const struct chat_template *ct, const json_t *messages, struct chat_segments *out,
                char *err, size_t errlen);
// The same with a tools list (NULL or an empty array: none; only the jinja family takes one).
int chat_render_tools(const struct chat_template *ct, const json_t *messages, const json_t *tools,
                      struct chat_segments *out, char *err, size_t errlen);

// Input record fields. A record holding `messages` is a conversation; else with `text` set
// (the option was given) the text is trained whole; else `prompt` (required, untrained) and
// `completion` (optional, trained; absent: a prompt-only record).
struct chat_fields {
    const char *prompt, *completion, *text, *messages;
};
enum chat_mode { CHAT_MODE_PROMPT, CHAT_MODE_COMPLETION, CHAT_MODE_TEXT, CHAT_MODE_CHAT };

// Renders one JSON object into segments; a chat record's "tools" array goes to the template.
// ct may be NULL when no template could be set up:
// chat records then fail with ct_err. Returns the mode, or -1 with a message naming the field.
int chat_render_record(const struct chat_template *ct, const char *ct_err, const json_t *rec,
                       const struct chat_fields *f, struct chat_segments *out, char *err, size_t errlen);

struct chat_tokens {
    struct tok_ids ids;
    uint8_t *mask;             // 1 = training target, one per id
    size_t mask_cap;
    size_t prompt_len;         // ids before the first trained one (all of them if none is)
};

void chat_tokens_free(struct chat_tokens *x);
// Encodes the segments (replacing x's contents). add_special: the post-processor's tokens
// around the whole sequence. eos >= 0: appended after the last segment, with its flag. Returns 0,
// or TOKENIZER_EUTF8 with *bad_offset into s->text.
int chat_encode(struct tokenizer *t, const struct chat_segments *s, bool add_special, int32_t eos,
                struct chat_tokens *x, size_t *bad_offset);

enum chat_truncate { CHAT_TRUNCATE_RIGHT, CHAT_TRUNCATE_LEFT };
// Keeps at most max_len tokens: the first ones (RIGHT: the end is cut) or the last ones (LEFT).
// Returns true if it cut anything; prompt_len is recomputed.
bool chat_tokens_truncate(struct chat_tokens *x, size_t max_len, enum chat_truncate side);

#endif
