// tokenize — turns JSON lines into srlm example records: token ids plus which tokens are trained
// (docs/tokenizer.md, docs/stream.md).
//
// stdin (or FILE): JSON lines, one object per line, read through zlib when gzip-compressed. The
//   formats of TRL's datasets, chosen per record: a record holding `messages` (a chat
//   conversation) is rendered with the tokenizer's chat template; with --text-field every token of
//   that field is trained; else `prompt` (untrained) + optional `completion` (trained), both
//   strings (standard form) or both lists of messages (conversational form: rendered through the
//   chat template, the prompt with the generation prompt, the completion's assistant turns
//   trained); else a `text` string (language modeling) is trained whole. The first token is never
//   trained (nothing predicts it). Field names are configurable; every other field is passed
//   through unchanged.
// stdout: a srlm stream, schema "srlm.examples": a header (tokenizer_xxh3, vocab_size, eos_ids,
//   chat_template, options), one {kind:"example", id, tokens, mask, prompt_len, ...input fields}
//   per input line, and the end record.
// files: reads the tokenizer (tokenizer.json, or a model directory with it and its
//   tokenizer_config.json); writes none.
#include <getopt.h>
#include <string.h>
#include <xxhash.h>

#include "progress.h"
#include "chat.h"
#include "json.h"
#include "rec.h"
#include "tokenizer.h"
#include "util.h"

enum eos_mode { EOS_CONFIG, EOS_ON, EOS_OFF };

struct opts {
    const char *file;            // NULL or "-": stdin
    const char *tokenizer;
    const char *chat_template;   // override, or NULL: detect
    const char *date;            // llama3.1 "Today Date" (validated), or NULL: CHAT_DEFAULT_DATE
    struct chat_fields fields;
    enum eos_mode eos;
    bool thinking;
    size_t max_len;              // 0: no limit
    enum chat_truncate truncate;
    size_t max_line;
};

static void usage(void)
{
    printf("usage: tokenize [-hqvV] [--chat-template name] [--completion-field name] [--date \"DD Mon YYYY\"]\n"
           "                [--eos | --no-eos] [--max-len n] [--max-line-bytes n] [--messages-field name]\n"
           "                [--no-thinking] [--prompt-field name] [--text-field name] [--truncate left|right]\n"
           "                --tokenizer path [file] > out.msgpack\n"
           "\n"
           "Tokenizes JSON lines (file, or stdin when none or \"-\"; gzip-compressed input is read\n"
           "through zlib) into srlm example records (token ids + training mask). Each record is one\n"
           "of TRL's dataset formats: {\"messages\"}, {\"prompt\", \"completion\"} (strings, or\n"
           "lists of messages rendered with the chat template), {\"prompt\"} alone (prompt-only),\n"
           "or {\"text\"} (language modeling: every token trained).\n"
           "\n"
           "  -t, --tokenizer path       tokenizer.json, or a model directory holding it (required)\n"
           "      --prompt-field name    untrained prompt field (default \"prompt\")\n"
           "      --completion-field name trained completion field (default \"completion\");\n"
           "                             a record without it is a prompt-only record\n"
           "      --text-field name      train on every token of this field, whatever else the\n"
           "                             record holds (default: \"text\" for records without prompt\n"
           "                             or messages)\n"
           "      --messages-field name  chat conversation field, used when present (default \"messages\")\n"
           "      --chat-template name   chatml, qwen2.5, qwen3, llama3, llama3.1, or jinja to interpret\n"
           "                             the template itself (default: detected from\n"
           "                             tokenizer_config.json)\n"
           "      --date \"DD Mon YYYY\"   llama3.1: the system block's \"Today Date\" (default \"%s\")\n"
           "      --no-thinking          qwen3: generation prompts end with an empty <think> block\n"
           "      --eos, --no-eos        append (or not) the EOS token after a completion or text\n"
           "                             (default: append when the tokenizer names an eos_token)\n"
           "      --max-len n            keep at most n tokens per record\n"
           "      --truncate left|right  which end --max-len cuts (default right: keep the start)\n"
           "      --max-line-bytes n     refuse longer input lines (default 64M)\n"
           "      --progress-every S     seconds between progress lines when stderr is not a terminal\n"
           "                             (default 30; 0: every record); -q: none\n"
           "  -q, --quiet                warnings only\n"
           "  -v, --verbose              more detail\n"
           "  -h, --help                 print this help and exit\n"
           "  -V, --version              print the version and exit\n"
           "\n"
           "Exit status: 0 ok, 64 usage, 65 bad input or tokenizer, 66 missing tokenizer, 74 I/O error.\n",
           CHAT_DEFAULT_DATE);
}

static struct opts parse_args(int argc, char **argv)
{
    enum { O_PROMPT = 256, O_COMPLETION, O_TEXT, O_MESSAGES, O_TEMPLATE, O_DATE, O_NO_THINK, O_EOS,
           O_NO_EOS, O_MAX_LEN, O_TRUNCATE, O_MAX_LINE, O_PROGRESS };
    static const struct option longopts[] = {
        { "tokenizer", required_argument, NULL, 't' }, { "prompt-field", required_argument, NULL, O_PROMPT },
        { "completion-field", required_argument, NULL, O_COMPLETION }, { "text-field", required_argument, NULL, O_TEXT },
        { "messages-field", required_argument, NULL, O_MESSAGES }, { "chat-template", required_argument, NULL, O_TEMPLATE },
        { "date", required_argument, NULL, O_DATE },
        { "no-thinking", no_argument, NULL, O_NO_THINK }, { "eos", no_argument, NULL, O_EOS },
        { "no-eos", no_argument, NULL, O_NO_EOS }, { "max-len", required_argument, NULL, O_MAX_LEN },
        { "truncate", required_argument, NULL, O_TRUNCATE }, { "max-line-bytes", required_argument, NULL, O_MAX_LINE },
        { "progress-every", required_argument, NULL, O_PROGRESS },
        { "quiet", no_argument, NULL, 'q' }, { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' }, { "version", no_argument, NULL, 'V' }, { NULL, 0, NULL, 0 },
    };
    struct opts o = { .fields = { "prompt", "completion", NULL, "messages" }, .thinking = true,
                      .truncate = CHAT_TRUNCATE_RIGHT };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":t:qvhV", longopts, NULL)) != -1) {
        switch (c) {
        case 't': o.tokenizer = optarg; break;
        case O_PROMPT: o.fields.prompt = optarg; break;
        case O_COMPLETION: o.fields.completion = optarg; break;
        case O_TEXT: o.fields.text = optarg; break;
        case O_MESSAGES: o.fields.messages = optarg; break;
        case O_TEMPLATE:
            if (!chat_template_known(optarg)) usage_error("--chat-template: unknown template \"%s\" (chatml, qwen2.5, qwen3, llama3, llama3.1, jinja)", optarg);
            o.chat_template = optarg;
            break;
        case O_DATE:
            if (!chat_date_valid(optarg)) usage_error("--date: expected a date like \"%s\" (DD Mon YYYY), got \"%s\"", CHAT_DEFAULT_DATE, optarg);
            o.date = optarg;
            break;
        case O_NO_THINK: o.thinking = false; break;
        case O_EOS: case O_NO_EOS:
            if (o.eos != EOS_CONFIG) usage_error("--eos and --no-eos exclude each other");
            o.eos = c == O_EOS ? EOS_ON : EOS_OFF;
            break;
        case O_MAX_LEN: o.max_len = (size_t)parse_int(optarg, 1, INT32_MAX, "--max-len"); break;
        case O_TRUNCATE:
            if (strcmp(optarg, "left") && strcmp(optarg, "right")) usage_error("--truncate: expected left or right, got \"%s\"", optarg);
            o.truncate = optarg[0] == 'l' ? CHAT_TRUNCATE_LEFT : CHAT_TRUNCATE_RIGHT;
            break;
        case O_MAX_LINE: o.max_line = parse_size(optarg, 16, (size_t)1 << 32, "--max-line-bytes"); break;
        case O_PROGRESS: progress_parse_every(optarg); break;
        case 'q': log_level = LOG_LEVEL_WARN; break;
        case 'v': log_level = LOG_LEVEL_DEBUG; break;
        case 'h': usage(); tool_exit(0);
        case 'V': printf("%s %s\n", progname, VERSION); tool_exit(0);
        case ':': usage_error("option '%s' needs a value", argv[optind - 1]);
        default: usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind > 1) usage_error("too many operands (one input file at most)");
    if (optind < argc) o.file = argv[optind];
    if (!o.tokenizer) usage_error("--tokenizer is required");
    return o;
}

// ---------------------------------------------------------------------------------------------

struct run {
    struct opts o;
    struct tokenizer *tok;
    struct chat_template ct;
    bool ct_ok;
    char ct_err[300];
    int32_t eos;                 // appended after completions and texts; -1: none
};

static void pack_header_fields(struct rec_writer *w, void *ctx)
{
    const struct run *r = ctx;
    int32_t eos[TOKENIZER_MAX_EOS];
    size_t neos = tokenizer_eos_ids(r->tok, eos);
    rec_pack_key(w, "tokenizer_xxh3"); rec_pack_str(w, tokenizer_hash_hex(r->tok));
    rec_pack_key(w, "vocab_size"); rec_pack_int(w, tokenizer_vocab_size(r->tok));
    rec_pack_key(w, "eos_ids"); rec_pack_i32_array(w, eos, neos);
    rec_pack_key(w, "chat_template");
    if (r->ct_ok) rec_pack_str(w, r->ct.name); else rec_pack_nil(w);
    rec_pack_key(w, "options");
    rec_pack_map(w, 10);
    rec_pack_key(w, "tokenizer"); rec_pack_str(w, r->o.tokenizer);
    rec_pack_key(w, "prompt_field"); rec_pack_str(w, r->o.fields.prompt);
    rec_pack_key(w, "completion_field"); rec_pack_str(w, r->o.fields.completion);
    rec_pack_key(w, "text_field");
    if (r->o.fields.text) rec_pack_str(w, r->o.fields.text); else rec_pack_nil(w);
    rec_pack_key(w, "messages_field"); rec_pack_str(w, r->o.fields.messages);
    rec_pack_key(w, "eos"); rec_pack_int(w, r->eos);
    rec_pack_key(w, "thinking"); rec_pack_bool(w, r->o.thinking);
    rec_pack_key(w, "date"); rec_pack_str(w, r->ct.date);
    rec_pack_key(w, "max_len"); rec_pack_int(w, (int64_t)r->o.max_len);
    rec_pack_key(w, "truncate"); rec_pack_str(w, r->o.truncate == CHAT_TRUNCATE_LEFT ? "left" : "right");
}

static void setup(struct run *r)
{
    r->tok = tokenizer_new(r->o.tokenizer);
    r->ct_ok = chat_template_init(&r->ct, tokenizer_chat_template(r->tok), r->o.chat_template,
                                  r->ct_err, sizeof r->ct_err) == 0;
    r->ct.thinking = r->o.thinking;
    // the jinja family's bos_token/eos_token: the tokenizer's own (as transformers passes them)
    int32_t bos_id = tokenizer_bos_id(r->tok), eos_id = tokenizer_eos_id(r->tok);
    if (r->ct_ok)
        chat_template_set_special(&r->ct, bos_id >= 0 ? tokenizer_token_str(r->tok, bos_id) : NULL,
                                  eos_id >= 0 ? tokenizer_token_str(r->tok, eos_id) : NULL);
    if (r->o.date) snprintf(r->ct.date, sizeof r->ct.date, "%s", r->o.date);
    // By default a trained completion ends with EOS whenever the tokenizer names one (as TRL's
    // SFT does for prompt/completion data): a model fine-tuned without it never learns to stop.
    // add_eos_token in tokenizer_config.json is about encode() of plain text, not this.
    bool want = r->o.eos == EOS_ON || (r->o.eos == EOS_CONFIG && (tokenizer_add_eos(r->tok) || tokenizer_eos_id(r->tok) >= 0));
    r->eos = want ? tokenizer_eos_id(r->tok) : -1;
    if (r->o.eos == EOS_ON && r->eos < 0) die(EX_DATAERR, "%s: --eos: the tokenizer config names no eos_token", tokenizer_path(r->tok));
}

// The input's "id" (a string, or an integer written in decimal), else the xxh3 of the record's
// canonical JSON (compact, keys sorted), so the same content always gets the same id.
static void example_id(const struct jsonl_reader *jr, const json_t *rec, char *out, size_t n)
{
    const json_t *id = json_object_get(rec, "id");
    if (json_is_string(id)) { snprintf(out, n, "%s", json_string_value(id)); return; }
    if (json_is_integer(id)) { snprintf(out, n, "%" JSON_INTEGER_FORMAT, json_integer_value(id)); return; }
    if (id) jsonl_fail(jr, "field \"id\": expected a string or an integer");
    char *canon = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    char hex[17];
    hash_hex(XXH3_64bits(canon, strlen(canon)), hex);
    snprintf(out, n, "%s", hex);
    free(canon);
}

// ---------------------------------------------------------------------------------------------
// records: TRL's dataset formats

// TRL's language-modeling field, read when --text-field is not given and a record has neither
// messages nor a prompt.
#define TEXT_FIELD "text"

struct bufs {
    struct chat_segments seg;    // what is encoded
    struct chat_segments prompt, full;   // conversational renders
};

static _Noreturn void field_fail(const struct jsonl_reader *jr, const char *field, const char *inner)
{
    jsonl_fail(jr, "field \"%s\"%s%s", field, inner[0] == '[' ? "" : ": ", inner);
}

// out = f's text, untrained before byte `upto` and with f's flags from there on.
static void untrain_prefix(const struct chat_segments *f, size_t upto, struct chat_segments *out)
{
    chat_segments_clear(out);
    chat_segments_add(out, f->text, upto, false);
    for (size_t i = 0; i < f->n; i++) {
        size_t a = f->seg[i].off, b = a + f->seg[i].len;
        if (b <= upto) continue;
        if (a < upto) a = upto;
        chat_segments_add(out, f->text + a, b - a, f->seg[i].trained);
    }
}

static bool last_is_assistant(const json_t *msgs)
{
    const json_t *role = json_object_get(json_array_get(msgs, json_array_size(msgs) - 1), "role");
    return json_is_string(role) && strcmp(json_string_value(role), "assistant") == 0;
}

// TRL's conversational prompt-only / prompt-completion record, as TRL's SFT tokenizes it: the
// prompt rendered with the generation prompt is untrained; the completion's messages are
// appended, the whole conversation rendered, and what follows the prompt keeps the chat mask
// (assistant content and its end-of-turn token). The prompt's render must be a prefix of the
// whole one (TRL checks the same), else the completion's tokens cannot be told apart.
static void render_conversational(const struct run *r, const struct jsonl_reader *jr, const json_t *rec,
                                  const json_t *prompt, const json_t *completion, struct bufs *b)
{
    const char *pf = r->o.fields.prompt, *cf = r->o.fields.completion;
    const json_t *tools = json_object_get(rec, "tools");   // TRL passes a record's tools to the template
    char inner[512];
    if (!r->ct_ok) jsonl_fail(jr, "field \"%s\": %s", pf, r->ct_err);
    if (tools && !json_is_array(tools) && !json_is_null(tools)) jsonl_fail(jr, "field \"tools\": expected an array");
    if (!json_is_array(tools)) tools = NULL;
    if (chat_render_tools(&r->ct, prompt, tools, &b->prompt, inner, sizeof inner) != 0) field_fail(jr, pf, inner);
    if (!completion) {                        // prompt-only: nothing trained
        untrain_prefix(&b->prompt, b->prompt.len, &b->seg);
        b->seg.prompt_only = true;
        return;
    }
    if (!json_is_array(completion))
        jsonl_fail(jr, "field \"%s\": expected a list of messages, as field \"%s\" is (TRL's conversational "
                       "form), got a %s", cf, pf, json_is_string(completion) ? "string" : "non-list");
    if (!last_is_assistant(completion))
        jsonl_fail(jr, "field \"%s\": the last message must be from the assistant (it is what is trained)", cf);
    json_t *all = json_copy((json_t *)prompt);
    json_array_extend(all, (json_t *)completion);
    int rc = chat_render_tools(&r->ct, all, tools, &b->full, inner, sizeof inner);
    json_decref(all);
    if (rc != 0)   // message indices count the prompt's messages first
        jsonl_fail(jr, "fields \"%s\" + \"%s\" as one conversation%s%s", pf, cf, inner[0] == '[' ? "" : ": ", inner);
    if (b->full.len < b->prompt.len || memcmp(b->full.text, b->prompt.text, b->prompt.len) != 0)
        jsonl_fail(jr, "the chat template (%s) renders field \"%s\" differently when field \"%s\" follows it, "
                       "so the completion's tokens cannot be told apart", r->ct.name, pf, cf);
    untrain_prefix(&b->full, b->prompt.len, &b->seg);
}

// Renders one record into b->seg; returns its chat_mode.
static int render_record(const struct run *r, const struct jsonl_reader *jr, const json_t *rec, struct bufs *b)
{
    const struct chat_fields *f = &r->o.fields;
    const json_t *prompt = json_object_get(rec, f->prompt), *completion = json_object_get(rec, f->completion);
    char err[700];
    if (!f->text && !json_object_get(rec, f->messages)) {
        if (json_is_array(prompt)) {
            render_conversational(r, jr, rec, prompt, completion, b);
            return CHAT_MODE_CHAT;
        }
        if (json_is_string(prompt) && json_is_array(completion))
            jsonl_fail(jr, "field \"%s\" is a string but field \"%s\" a list of messages: TRL's formats "
                           "take both as strings (standard) or both as lists (conversational)", f->prompt, f->completion);
        if (!prompt && json_object_get(rec, TEXT_FIELD)) {   // TRL's language modeling
            struct chat_fields lm = *f;
            lm.text = TEXT_FIELD;
            int mode = chat_render_record(NULL, r->ct_err, rec, &lm, &b->seg, err, sizeof err);
            if (mode < 0) jsonl_fail(jr, "%s", err);
            return mode;
        }
        if (!prompt)
            jsonl_fail(jr, "missing field \"%s\": expected one of TRL's dataset formats, a record with \"%s\", "
                           "\"%s\" (+ \"%s\") or \"%s\" (see --messages-field, --prompt-field, --text-field)",
                       f->prompt, f->messages, f->prompt, f->completion, TEXT_FIELD);
    }
    int mode = chat_render_record(r->ct_ok ? &r->ct : NULL, r->ct_err, rec, f, &b->seg, err, sizeof err);
    if (mode < 0) jsonl_fail(jr, "%s", err);
    return mode;
}

// Nothing predicts the first token, so it is never a training target (the consumers refuse
// mask[0] = 1): text or a completion with no BOS before it, an empty prompt, a left truncation.
static void untrain_first(struct chat_tokens *x)
{
    if (x->ids.n == 0 || !x->mask[0]) return;
    x->mask[0] = 0;
    x->prompt_len = 1;
    while (x->prompt_len < x->ids.n && !x->mask[x->prompt_len]) x->prompt_len++;
}

static const char *const OWN_KEYS[] = { "kind", "id", "tokens", "mask", "prompt_len" };

static void pack_example(struct rec_writer *w, const json_t *rec, const char *id, const struct chat_tokens *x)
{
    size_t npass = 0;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)rec, key, v) {
        bool own = false;
        for (size_t i = 0; i < 5; i++) own = own || strcmp(key, OWN_KEYS[i]) == 0;
        npass += !own;
    }
    rec_record_begin(w, (uint32_t)(5 + npass));
    rec_pack_key(w, "kind"); rec_pack_str(w, "example");
    rec_pack_key(w, "id"); rec_pack_str(w, id);
    rec_pack_key(w, "tokens"); rec_pack_i32_array(w, x->ids.v, x->ids.n);
    rec_pack_key(w, "mask"); rec_pack_array(w, (uint32_t)x->ids.n);
    for (size_t i = 0; i < x->ids.n; i++) rec_pack_uint(w, x->mask[i]);
    rec_pack_key(w, "prompt_len"); rec_pack_uint(w, x->prompt_len);
    json_object_foreach((json_t *)rec, key, v) {
        bool own = false;
        for (size_t i = 0; i < 5; i++) own = own || strcmp(key, OWN_KEYS[i]) == 0;
        if (own) continue;
        rec_pack_key(w, key);
        json_pack_value(w, v);
    }
    rec_record_end(w);
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    struct run r = { .o = parse_args(argc, argv) };
    setup(&r);
    const char *name;
    FILE *fp = open_input_path(r.o.file, &name);   // before the header: a missing file writes nothing
    struct rec_writer w;
    rec_writer_open(&w, stdout);
    rec_write_header(&w, "srlm.examples", NULL, 5, pack_header_fields, &r);
    FILE *in = jsonl_gunzip(fp, name);
    struct jsonl_reader jr;
    jsonl_open(&jr, in, name, r.o.max_line);
    struct bufs b = { 0 };
    struct chat_tokens x = { 0 };
    size_t ntrunc = 0, ntokens = 0;
    char err[700], id[512];
    json_t *rec;
    struct progress pg;
    progress_init(&pg, "records", -1);
    while ((rec = jsonl_next(&jr))) {
        int mode = render_record(&r, &jr, rec, &b);
        if (!json_pack_check_members(rec, err, sizeof err)) jsonl_fail(&jr, "%s", err);
        bool plain = mode != CHAT_MODE_CHAT;   // chat templates write their own BOS
        int32_t eos = mode == CHAT_MODE_COMPLETION || mode == CHAT_MODE_TEXT ? r.eos : -1;
        size_t bad;
        if (chat_encode(r.tok, &b.seg, plain, eos, &x, &bad) != 0)
            jsonl_fail(&jr, "invalid UTF-8 at byte %zu of the rendered text", bad);
        if (r.o.max_len && chat_tokens_truncate(&x, r.o.max_len, r.o.truncate)) ntrunc++;
        untrain_first(&x);
        ntokens += x.ids.n;
        example_id(&jr, rec, id, sizeof id);
        pack_example(&w, rec, id, &x);
        json_decref(rec);
        progress_add(&pg, 1, (long long)x.ids.n);
    }
    progress_end(&pg);
    rec_write_end(&w);
    if (ntrunc) log_info("records=%zu truncated=%zu (to --max-len %zu, %s end cut)", w.ndata, ntrunc,
                         r.o.max_len, r.o.truncate == CHAT_TRUNCATE_LEFT ? "left" : "right");
    log_debug("records=%zu tokens=%zu", w.ndata, ntokens);
    jsonl_close(&jr);
    jsonl_gunzip_close(in, fp);
    close_input(fp);
    chat_segments_free(&b.seg);
    chat_segments_free(&b.prompt);
    chat_segments_free(&b.full);
    chat_tokens_free(&x);
    chat_template_free(&r.ct);
    tokenizer_delete(r.tok);
    tool_exit(0);
}
