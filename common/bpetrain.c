// bpetrain.c — see bpetrain.h.
#include "bpetrain.h"

#include "safetensors.h"   // atomic_write_file
#include "util.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <jansson.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

// Qwen2's pre-tokenizer regex (tokenizer.json of Qwen2.5 / Qwen3), as PCRE2 and HF both read it.
static const char SPLIT_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct word {
    char *text;                // raw bytes of the pre-token
    size_t len;
    long count;
    int *sym;                  // current symbols (byte values 0-255, merged symbols 256+)
    int nsym;
};

struct symbol {
    char *bytes;               // raw bytes it stands for
    size_t len;
};

struct bpe_trainer {
    pcre2_code *re;
    pcre2_match_data *md;
    struct word *words;        // distinct pre-tokens
    size_t nwords, capwords;
    size_t *table;             // open addressing: index + 1 into words, 0 = empty
    size_t tcap;
    struct symbol *sym;        // 256 bytes + merges
    int nsym, capsym;
    int (*merges)[2];          // learnt merges, in rank order
    int nmerges;
};

// ---------------------------------------------------------------------------------------------

struct bpe_trainer *bpe_trainer_new(void)
{
    struct bpe_trainer *t = xcalloc(1, sizeof *t);
    int err;
    PCRE2_SIZE off;
    t->re = pcre2_compile((PCRE2_SPTR)SPLIT_REGEX, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    ASSERT(t->re);
    t->md = pcre2_match_data_create_from_pattern(t->re, NULL);
    t->tcap = 1024;
    t->table = xcalloc(t->tcap, sizeof *t->table);
    t->capsym = 1024;
    t->sym = xcalloc((size_t)t->capsym, sizeof *t->sym);
    for (int b = 0; b < 256; b++) {
        t->sym[b].bytes = xmalloc(1);
        t->sym[b].bytes[0] = (char)b;
        t->sym[b].len = 1;
    }
    t->nsym = 256;
    return t;
}

void bpe_trainer_delete(struct bpe_trainer *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->nwords; i++) free(t->words[i].text), free(t->words[i].sym);
    for (int i = 0; i < t->nsym; i++) free(t->sym[i].bytes);
    free(t->words);
    free(t->table);
    free(t->sym);
    free(t->merges);
    pcre2_match_data_free(t->md);
    pcre2_code_free(t->re);
    free(t);
}

static void table_put(struct bpe_trainer *t, size_t wi)
{
    const struct word *w = &t->words[wi];
    size_t i = (size_t)XXH3_64bits(w->text, w->len) & (t->tcap - 1);
    while (t->table[i]) i = (i + 1) & (t->tcap - 1);
    t->table[i] = wi + 1;
}

static void count_word(struct bpe_trainer *t, const char *s, size_t len)
{
    size_t i = (size_t)XXH3_64bits(s, len) & (t->tcap - 1);
    for (; t->table[i]; i = (i + 1) & (t->tcap - 1)) {
        struct word *w = &t->words[t->table[i] - 1];
        if (w->len == len && !memcmp(w->text, s, len)) { w->count++; return; }
    }
    if (t->nwords == t->capwords) {
        t->capwords = t->capwords ? 2 * t->capwords : 256;
        t->words = xrealloc(t->words, t->capwords * sizeof *t->words);
    }
    struct word *w = &t->words[t->nwords];
    *w = (struct word){.text = xmalloc(len ? len : 1), .len = len, .count = 1};
    memcpy(w->text, s, len);
    t->table[i] = ++t->nwords;
    if (2 * t->nwords > t->tcap) {   // grow and rehash
        free(t->table);
        t->tcap *= 2;
        t->table = xcalloc(t->tcap, sizeof *t->table);
        for (size_t k = 0; k < t->nwords; k++) table_put(t, k);
    }
}

void bpe_trainer_add(struct bpe_trainer *t, const char *text, size_t len)
{
    PCRE2_SIZE off = 0;
    while (off < len) {
        int rc = pcre2_match(t->re, (PCRE2_SPTR)text, len, off, 0, t->md, NULL);
        if (rc < 0) break;   // the regex matches every character; only invalid UTF-8 stops it
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        if (ov[1] == ov[0]) { off = ov[1] + 1; continue; }
        count_word(t, text + ov[0], ov[1] - ov[0]);
        off = ov[1];
    }
}

// ---------------------------------------------------------------------------------------------
// training

struct pair_count {
    uint64_t key;              // (a << 32) | b, 0 = empty (pair (0,0) is stored as key ~0)
    long count;
};

static uint64_t pair_key(int a, int b)
{
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    return k ? k : ~(uint64_t)0;
}

// true when pair (a1,b1) should win a tie against (a2,b2): merged bytes sort first, then the
// shorter left part.
static bool tie_wins(const struct bpe_trainer *t, int a1, int b1, int a2, int b2)
{
    const struct symbol *x1 = &t->sym[a1], *y1 = &t->sym[b1], *x2 = &t->sym[a2], *y2 = &t->sym[b2];
    size_t n1 = x1->len + y1->len, n2 = x2->len + y2->len;
    for (size_t i = 0; i < n1 && i < n2; i++) {
        unsigned char c1 = (unsigned char)(i < x1->len ? x1->bytes[i] : y1->bytes[i - x1->len]);
        unsigned char c2 = (unsigned char)(i < x2->len ? x2->bytes[i] : y2->bytes[i - x2->len]);
        if (c1 != c2) return c1 < c2;
    }
    if (n1 != n2) return n1 < n2;
    return x1->len < x2->len;
}

static void apply_merge(struct word *w, int a, int b, int id)
{
    int o = 0;
    for (int i = 0; i < w->nsym; i++) {
        if (i + 1 < w->nsym && w->sym[i] == a && w->sym[i + 1] == b) { w->sym[o++] = id; i++; }
        else w->sym[o++] = w->sym[i];
    }
    w->nsym = o;
}

int bpe_trainer_train(struct bpe_trainer *t, int nmerges, long min_count)
{
    ASSERT(t->nsym == 256 && t->nmerges == 0);   // trains once
    size_t total = 0;
    for (size_t i = 0; i < t->nwords; i++) {
        struct word *w = &t->words[i];
        free(w->sym);
        w->sym = xmalloc((w->len ? w->len : 1) * sizeof *w->sym);
        for (size_t k = 0; k < w->len; k++) w->sym[k] = (unsigned char)w->text[k];
        w->nsym = (int)w->len;
        total += w->len;
    }
    size_t cap = 16;
    while (cap < 2 * total + 2) cap *= 2;
    struct pair_count *pc = xmalloc(cap * sizeof *pc);
    t->merges = xrealloc(t->merges, (size_t)(nmerges ? nmerges : 1) * sizeof *t->merges);
    t->nmerges = 0;
    while (t->nmerges < nmerges) {
        memset(pc, 0, cap * sizeof *pc);
        int ba = -1, bb = -1;
        long best = 0;
        for (size_t i = 0; i < t->nwords; i++) {
            const struct word *w = &t->words[i];
            for (int k = 0; k + 1 < w->nsym; k++) {
                uint64_t key = pair_key(w->sym[k], w->sym[k + 1]);
                size_t h = (size_t)(key * 0x9e3779b97f4a7c15ULL >> 20) & (cap - 1);
                while (pc[h].key && pc[h].key != key) h = (h + 1) & (cap - 1);
                pc[h].key = key;
                long c = pc[h].count += w->count;
                int a = w->sym[k], b = w->sym[k + 1];
                if (c > best || (c == best && tie_wins(t, a, b, ba, bb))) best = c, ba = a, bb = b;
            }
        }
        if (ba < 0 || best < min_count) break;
        if (t->nsym == t->capsym) {
            t->capsym *= 2;
            t->sym = xrealloc(t->sym, (size_t)t->capsym * sizeof *t->sym);
        }
        struct symbol *s = &t->sym[t->nsym];
        s->len = t->sym[ba].len + t->sym[bb].len;
        s->bytes = xmalloc(s->len);
        memcpy(s->bytes, t->sym[ba].bytes, t->sym[ba].len);
        memcpy(s->bytes + t->sym[ba].len, t->sym[bb].bytes, t->sym[bb].len);
        // Two merges can spell the same token ("ab"+"c", "a"+"bc"): reuse its id, as HF's
        // BpeTrainer does, so the vocabulary has no duplicate keys.
        int id = t->nsym;
        for (int k = 256; k < t->nsym; k++)
            if (t->sym[k].len == s->len && !memcmp(t->sym[k].bytes, s->bytes, s->len)) { id = k; break; }
        if (id == t->nsym) t->nsym++;
        else free(s->bytes);
        for (size_t i = 0; i < t->nwords; i++) apply_merge(&t->words[i], ba, bb, id);
        t->merges[t->nmerges][0] = ba;
        t->merges[t->nmerges][1] = bb;
        t->nmerges++;
    }
    free(pc);
    return t->nmerges;
}

int bpe_trainer_vocab_size(const struct bpe_trainer *t)
{
    return t->nsym + 1;
}

// ---------------------------------------------------------------------------------------------
// writing

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes map
// to U+0100 onwards in byte order. order[] lists bytes in vocabulary-id order (GPT-2's and Qwen's).
static uint32_t byte_char(int b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return (uint32_t)b;
    uint32_t n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
    return 256 + n;
}

static void byte_order(int order[256])
{
    int n = 0;
    for (int b = 0; b < 256; b++)
        if (byte_char(b) == (uint32_t)b) order[n++] = b;
    for (int b = 0; b < 256; b++)
        if (byte_char(b) != (uint32_t)b) order[n++] = b;
}

// A symbol's token string in the ByteLevel alphabet (UTF-8), JSON-escaped with its quotes.
static void put_token(FILE *f, const struct symbol *s)
{
    char *u = xmalloc(2 * s->len + 1), *p = u;
    for (size_t i = 0; i < s->len; i++) {
        uint32_t c = byte_char((unsigned char)s->bytes[i]);
        if (c < 0x80) *p++ = (char)c;
        else { *p++ = (char)(0xc0 | (c >> 6)); *p++ = (char)(0x80 | (c & 0x3f)); }
    }
    *p = '\0';
    json_t *js = json_string(u);
    ASSERT(js);
    char *e = json_dumps(js, JSON_ENCODE_ANY);
    fputs(e, f);
    free(e);
    json_decref(js);
    free(u);
}

static void put_json_str(FILE *f, const char *s)
{
    json_t *js = json_string(s);
    ASSERT(js);
    char *e = json_dumps(js, JSON_ENCODE_ANY);
    fputs(e, f);
    free(e);
    json_decref(js);
}

static void write_file(const char *dir, const char *name, const char *text, size_t len)
{
    char *path = xmalloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    atomic_write_file(path, text, len);
    free(path);
}

static const char BYTELEVEL[] = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}";

void bpe_trainer_save(const struct bpe_trainer *t, const char *dir, const char *eos, int max_len)
{
    int eos_id = t->nsym, order[256];
    byte_order(order);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) die(EX_OSERR, "open_memstream:");
    fprintf(f, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [\n"
               "    {\"id\": %d, \"content\": ", eos_id);
    put_json_str(f, eos);
    fprintf(f, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}\n  ],\n"
               "  \"normalizer\": {\"type\": \"NFC\"},\n"
               "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [\n"
               "    {\"type\": \"Split\", \"pattern\": {\"Regex\": ");
    put_json_str(f, SPLIT_REGEX);
    fprintf(f, "}, \"behavior\": \"Isolated\", \"invert\": false},\n    %s]},\n", BYTELEVEL);
    fprintf(f, "  \"post_processor\": %s,\n  \"decoder\": %s,\n", BYTELEVEL, BYTELEVEL);
    fprintf(f, "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": \"\", "
               "\"end_of_word_suffix\": \"\", \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": false,\n"
               "    \"vocab\": {\n");
    // ids: bytes in GPT-2 order, then merges in rank order
    for (int i = 0; i < t->nsym; i++) {
        fputs("      ", f);
        put_token(f, &t->sym[i < 256 ? order[i] : i]);
        fprintf(f, ": %d%s\n", i, i + 1 < t->nsym ? "," : "");
    }
    fputs("    },\n    \"merges\": [\n", f);
    for (int m = 0; m < t->nmerges; m++) {
        fputs("      [", f);
        put_token(f, &t->sym[t->merges[m][0]]);
        fputs(", ", f);
        put_token(f, &t->sym[t->merges[m][1]]);
        fprintf(f, "]%s\n", m + 1 < t->nmerges ? "," : "");
    }
    fputs("    ]\n  }\n}\n", f);
    if (fclose(f) != 0) die(EX_OSERR, "open_memstream:");
    make_dirs(dir);
    write_file(dir, "tokenizer.json", buf, len);
    free(buf);

    buf = NULL, len = 0;
    f = open_memstream(&buf, &len);
    if (!f) die(EX_OSERR, "open_memstream:");
    fprintf(f, "{\n  \"add_bos_token\": false,\n  \"add_eos_token\": false,\n  \"added_tokens_decoder\": {\n"
               "    \"%d\": {\"content\": ", eos_id);
    put_json_str(f, eos);
    fputs(", \"lstrip\": false, \"normalized\": false, \"rstrip\": false, \"single_word\": false, \"special\": true}\n  },\n"
          "  \"bos_token\": null,\n  \"clean_up_tokenization_spaces\": false,\n  \"eos_token\": ", f);
    put_json_str(f, eos);
    fprintf(f, ",\n  \"model_max_length\": %d,\n  \"pad_token\": ", max_len);
    put_json_str(f, eos);
    fputs(",\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"unk_token\": null\n}\n", f);
    if (fclose(f) != 0) die(EX_OSERR, "open_memstream:");
    write_file(dir, "tokenizer_config.json", buf, len);
    free(buf);
}
