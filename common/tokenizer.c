// tokenizer.c — see tokenizer.h for the contract. The reference for every step is Hugging Face
// `tokenizers` (Rust): added_vocabulary.rs (added-token matching), normalizers/unicode.rs,
// pre_tokenizers/{split,digits,byte_level}.rs, models/bpe/{model,word}.rs (merge order),
// processors/template.rs and decoders/byte_level.rs.
//
// Internally BPE runs on raw bytes, not on the ByteLevel alphabet: the byte<->char map is a
// bijection, so vocabulary strings are mapped back to bytes once at load time and the encoder
// never builds the intermediate unicode string.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"
#include "json.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>
#include <xxhash.h>

// GPT-2's pre-tokenizer regex, used by ByteLevel when use_regex is true (byte_level.rs).
static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

#define CACHE_MAX_WORD 256          // HF caches words shorter than this too (bpe/model.rs)
#define CACHE_SLOTS (1u << 20)
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)

// ---------------------------------------------------------------------------------------------
// types

struct span { uint32_t off, len; };   // a string in a pool; len == UINT32_MAX: none

// Open-addressing map from a string to an id; the key of id i is keys[i] in pool.
struct strmap {
    uint32_t *slot;   // id + 1; 0 = empty
    size_t mask;
};

// (left id, right id) -> (rank, merged id); keys of UINT64_MAX are empty slots.
struct mergemap {
    uint64_t *key;
    uint32_t *rank;
    int32_t *id;
    size_t mask;
};

struct added_token {
    int32_t id;
    char *content;
    size_t len;
    bool special, lstrip, rstrip, single_word, normalized;
};

// Byte trie over added-token contents, for leftmost-longest matching.
struct trie_node {
    int32_t child, sibling;   // first child, next sibling (-1 = none)
    int32_t token;            // index into added[] ending here, or -1
    uint8_t byte;
};
struct trie {
    struct trie_node *node;
    size_t n, cap;
    bool first[256];          // bytes that can start a match
};

enum pretok_kind { PRETOK_SPLIT, PRETOK_DIGITS, PRETOK_BYTELEVEL, PRETOK_METASPACE };
// How a Split keeps its matches (normalizer.rs SplitDelimiterBehavior; Contiguous is refused).
enum split_behavior { SPLIT_ISOLATED, SPLIT_REMOVED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT };
enum prepend_scheme { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
struct pretok {
    enum pretok_kind kind;
    pcre2_code *re;               // SPLIT, BYTELEVEL with use_regex, METASPACE with split
    pcre2_match_data *md;         // one per step: steps nest
    bool jit;                     // JIT-compiled: call pcre2_jit_match directly (less overhead)
    enum split_behavior behavior; // SPLIT (METASPACE splits MergedWithNext)
    bool individual_digits;       // DIGITS
    bool add_prefix_space;        // BYTELEVEL
    char rep[8];                  // METASPACE: the replacement character (UTF-8) ...
    size_t rep_len;
    enum prepend_scheme prepend;  // ... and when it is prepended
    char *buf;                    // METASPACE: the piece with spaces replaced (one per step)
    size_t buf_cap;
};

// Normalizer steps, applied in order (normalizers/{unicode,prepend,replace}.rs).
enum norm_kind { NORM_NFC, NORM_PREPEND, NORM_REPLACE };
struct norm_step {
    enum norm_kind kind;
    char *pat, *rep;              // PREPEND: pat is the prefix; REPLACE: every pat becomes rep
    size_t npat, nrep;
};

// Decoder steps of a character-level (SentencePiece-style) tokenizer, applied in order to the
// list of token strings (decoders/{replace,byte_fallback,fuse,strip}.rs, metaspace.rs).
enum dec_kind { DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE };
struct dec_step {
    enum dec_kind kind;
    char *pat, *rep;              // REPLACE; STRIP / METASPACE: pat is the character
    size_t npat, nrep;
    size_t start, stop;           // STRIP: at most this many pat characters cut at each end
    bool strip_first;             // METASPACE: the first token loses its replacement characters
};

struct cache_entry {
    uint64_t hash;
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids;      // a word may give no id (its bytes are not in the vocabulary)
    bool used;                    // false: empty slot
};

struct heap_item { uint32_t rank, pos; int32_t id; };

struct tokenizer {
    char *path;                   // tokenizer.json
    char hash_hex[17];
    int32_t vocab_size;           // max id + 1
    size_t ids_cap;               // allocated length of the per-id arrays
    // per-id strings
    char *pool;
    size_t pool_len, pool_cap;
    struct span *str;             // model vocabulary string, as in tokenizer.json
    struct span *raw;             // the same as raw bytes (ByteLevel decoded); none if not byte-level
    struct span *dec;             // bytes the decoder emits for the id (model or added token)
    int32_t *added_of;            // index into added[] or -1
    struct strmap by_str, by_raw;
    struct mergemap merges;
    int32_t byte_id[256];         // id of each single byte, -1 if not in the vocabulary (byte-level)
    int32_t unk_id;
    bool ignore_merges;
    // byte-level BPE (GPT-2 style: ByteLevel pre-tokenizer and decoder, BPE on bytes) or
    // character-level BPE (SentencePiece style: BPE on characters, vocabulary strings as they are)
    bool bytelevel;
    bool byte_fallback, fuse_unk; // character-level: unknown characters become <0xXX> tokens / one unk
    int32_t fallback_id[256];     // id of "<0xXX>" for each byte, -1 if none
    int32_t ascii_id[128];        // character-level: id of each ASCII character, -1 if none
    // Character-level words are cut before a "▁" where no merge can join the two sides (see
    // bpe_words): the characters c for which some merge (a ending in c, b starting with "▁")
    // exists. sp_cut is false when that cut is not exact (ignore_merges, no "▁" token, many c).
    bool sp_cut;
    int32_t sp_join[16];
    size_t n_sp_join;
    // added tokens
    struct added_token *added;
    size_t n_added;
    struct trie trie_raw, trie_norm;
    // pipeline
    struct norm_step norm[8];
    size_t n_norm;
    struct pretok pretok[8];
    size_t n_pretok;
    int32_t prefix[8], suffix[8];
    size_t n_prefix, n_suffix;
    pcre2_jit_stack *jit_stack;
    pcre2_match_context *mctx;
    struct dec_step dec_step[8];  // character-level decoder
    size_t n_dec;
    // configs
    char *chat_template;
    int32_t eos_id, bos_id;
    int32_t eos_ids[TOKENIZER_MAX_EOS];
    size_t n_eos;
    bool add_eos;
    // scratch (grown as needed, never freed while encoding)
    int32_t *nfc_buf;
    size_t nfc_cap;               // in code points
    char *nbuf[2];                // normalizer steps write here, alternately
    size_t nbuf_cap[2];
    const char *text, *norm_text; // the text being encoded; the normalized piece being split
    bool piece_first;             // that piece starts the text
    bool cont;                    // tokenizer_encode_cont: the text continues a section
    bool piece_cont;              // the raw piece being encoded is that continuation's start
    bool meta_cont;               // ... and its first Metaspace piece is still to come
    char *aps_buf;
    size_t aps_cap;
    int32_t *sym_id, *sym_prev, *sym_next;
    uint32_t *sym_len;
    struct heap_item *heap;
    size_t sym_cap, heap_cap;
    // pretoken cache
    struct cache_entry *cache;
    size_t cache_n;
    char *ckeys;
    size_t ckeys_len, ckeys_cap;
    int32_t *cids;
    size_t cids_len, cids_cap;
};

// ---------------------------------------------------------------------------------------------
// small helpers

static void tok_ids_grow(struct tok_ids *ids)
{
    ids->cap = ids->cap ? 2 * ids->cap : 64;
    ids->v = xrealloc(ids->v, ids->cap * sizeof *ids->v);
}

static inline void push(struct tok_ids *ids, int32_t id)
{
    if (ids->n == ids->cap) tok_ids_grow(ids);
    ids->v[ids->n++] = id;
}

void tok_ids_push(struct tok_ids *ids, int32_t id) { push(ids, id); }

void tok_ids_free(struct tok_ids *ids)
{
    free(ids->v);
    ids->v = NULL;
    ids->n = ids->cap = 0;
}

static _Noreturn __attribute__((format(printf, 2, 3))) void bad(const char *path, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    die(EX_DATAERR, "%s: %s", path, msg);
}

static uint32_t pool_add(struct tokenizer *t, const void *p, size_t n)
{
    if (t->pool_len + n + 1 > t->pool_cap) {
        t->pool_cap = 2 * (t->pool_len + n + 1);
        t->pool = xrealloc(t->pool, t->pool_cap);
    }
    ASSERT(t->pool_len + n < UINT32_MAX);
    uint32_t off = (uint32_t)t->pool_len;
    memcpy(t->pool + off, p, n);
    t->pool[off + n] = 0;
    t->pool_len += n + 1;
    return off;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n) p *= 2;
    return p;
}

// Decodes one code point of valid UTF-8 (the caller validated); returns its length.
static size_t utf8_decode(const unsigned char *s, int32_t *cp)
{
    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    if (s[0] < 0xE0) { *cp = ((s[0] & 0x1F) << 6) | (s[1] & 0x3F); return 2; }
    if (s[0] < 0xF0) { *cp = ((s[0] & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F); return 3; }
    *cp = ((s[0] & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
}

// Length of the valid UTF-8 sequence at s[0..n), or 0 if it is invalid. The second-byte ranges
// exclude overlongs (E0, F0), surrogates (ED) and values above U+10FFFF (F4) (Unicode 3.9, D92).
static size_t utf8_seq_len(const unsigned char *s, size_t n, size_t *valid_prefix)
{
    unsigned char c = s[0];
    size_t want;
    unsigned char lo = 0x80, hi = 0xBF;
    *valid_prefix = 0;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) want = 2;
    else if (c >= 0xE0 && c <= 0xEF) { want = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { want = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    for (size_t k = 1; k < want; k++) {
        *valid_prefix = k;
        if (k >= n) return 0;
        unsigned char b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
    }
    return want;
}

bool tokenizer_utf8_valid(const char *s, size_t n, size_t *bad_off)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, vp;
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        size_t k = utf8_seq_len(u + i, n - i, &vp);
        if (k == 0) { if (bad_off) *bad_off = i; return false; }
        i += k;
    }
    return true;
}

// String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
static char *utf8_lossy(const char *s, size_t n, size_t *out_len)
{
    char *out = xmalloc(3 * n + 1);
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, o = 0, vp;
    while (i < n) {
        size_t k = utf8_seq_len(u + i, n - i, &vp);
        if (k) { memcpy(out + o, s + i, k); o += k; i += k; continue; }
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
        i += vp ? vp : 1;
    }
    out[o] = 0;
    if (out_len) *out_len = o;
    return out;
}

static bool is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

// Unicode White_Space (what Rust's regex \s means, used by lstrip / rstrip).
static bool is_white_space(int32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

// Rust's regex \w (Alphabetic, marks, decimal digits, connector punctuation, joiners), by category.
static bool is_word_char(int32_t c)
{
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (c == 0x200C || c == 0x200D) return true;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return false;
    }
}

// Rust's char::is_numeric (Nd, Nl, No), used by the Digits pre-tokenizer.
static bool is_numeric(int32_t c)
{
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

// Last code point before s+n (s[0..n) valid UTF-8, n > 0).
static int32_t utf8_last(const char *s, size_t n)
{
    size_t i = n - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    int32_t cp;
    utf8_decode((const unsigned char *)s + i, &cp);
    return cp;
}

// ---------------------------------------------------------------------------------------------
// ByteLevel alphabet (GPT-2 bytes_to_unicode): printable bytes map to themselves, the other 68
// bytes to U+0100 onwards in byte order.

static int32_t byte_to_cp[256];
static int16_t cp_to_byte[324];   // all mapped code points are < 0x144

static void bytelevel_init(void)
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        byte_to_cp[b] = printable ? b : 256 + n++;
    }
    for (int c = 0; c < 324; c++) cp_to_byte[c] = -1;
    for (int b = 0; b < 256; b++) cp_to_byte[byte_to_cp[b]] = (int16_t)b;
}

// Maps a ByteLevel string back to bytes into out (n bytes at most); returns the byte count, or
// -1 if a character is outside the alphabet.
static long bytelevel_decode(const char *s, size_t n, char *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        int32_t cp;
        i += utf8_decode((const unsigned char *)s + i, &cp);
        if (cp >= 324 || cp_to_byte[cp] < 0) return -1;
        out[o++] = (char)cp_to_byte[cp];
    }
    return (long)o;
}

// ---------------------------------------------------------------------------------------------
// maps

static void strmap_init(struct strmap *m, size_t n)
{
    size_t cap = pow2_at_least(2 * n + 16);
    m->slot = xcalloc(cap, sizeof *m->slot);
    m->mask = cap - 1;
}

static int32_t strmap_find(const struct strmap *m, const struct span *keys, const char *pool,
                           const char *s, size_t n)
{
    size_t i = XXH3_64bits(s, n) & m->mask;
    for (; m->slot[i]; i = (i + 1) & m->mask) {
        const struct span *k = &keys[m->slot[i] - 1];
        if (k->len == n && memcmp(pool + k->off, s, n) == 0) return (int32_t)m->slot[i] - 1;
    }
    return -1;
}

// Inserts id under its key; an existing entry with the same key is replaced (later wins).
static void strmap_put(struct strmap *m, const struct span *keys, const char *pool, int32_t id)
{
    const char *s = pool + keys[id].off;
    size_t n = keys[id].len;
    size_t i = XXH3_64bits(s, n) & m->mask;
    for (; m->slot[i]; i = (i + 1) & m->mask) {
        const struct span *k = &keys[m->slot[i] - 1];
        if (k->len == n && memcmp(pool + k->off, s, n) == 0) break;
    }
    m->slot[i] = (uint32_t)id + 1;
}

static inline size_t merge_slot(uint64_t key, size_t mask)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 24) & mask;
}

static void mergemap_init(struct mergemap *m, size_t n)
{
    size_t cap = pow2_at_least(2 * n + 16);
    m->key = xmalloc(cap * sizeof *m->key);
    m->rank = xmalloc(cap * sizeof *m->rank);
    m->id = xmalloc(cap * sizeof *m->id);
    memset(m->key, 0xff, cap * sizeof *m->key);
    m->mask = cap - 1;
}

static void mergemap_put(struct mergemap *m, int32_t a, int32_t b, uint32_t rank, int32_t id)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = merge_slot(key, m->mask);
    while (m->key[i] != UINT64_MAX && m->key[i] != key) i = (i + 1) & m->mask;
    m->key[i] = key;
    m->rank[i] = rank;
    m->id[i] = id;
}

static inline bool mergemap_get(const struct mergemap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (size_t i = merge_slot(key, m->mask); m->key[i] != UINT64_MAX; i = (i + 1) & m->mask) {
        if (m->key[i] == key) { *rank = m->rank[i]; *id = m->id[i]; return true; }
    }
    return false;
}

// ---------------------------------------------------------------------------------------------
// added-token trie

static int32_t trie_new_node(struct trie *tr, uint8_t byte)
{
    if (tr->n == tr->cap) {
        tr->cap = tr->cap ? 2 * tr->cap : 64;
        tr->node = xrealloc(tr->node, tr->cap * sizeof *tr->node);
    }
    tr->node[tr->n] = (struct trie_node){ .child = -1, .sibling = -1, .token = -1, .byte = byte };
    return (int32_t)tr->n++;
}

static int32_t trie_step(const struct trie *tr, int32_t node, uint8_t byte)
{
    for (int32_t c = tr->node[node].child; c >= 0; c = tr->node[c].sibling)
        if (tr->node[c].byte == byte) return c;
    return -1;
}

static void trie_add(struct trie *tr, const char *s, size_t n, int32_t token)
{
    if (tr->n == 0) trie_new_node(tr, 0);
    if (n == 0) return;
    tr->first[(uint8_t)s[0]] = true;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t next = trie_step(tr, node, (uint8_t)s[i]);
        if (next < 0) {
            next = trie_new_node(tr, (uint8_t)s[i]);
            tr->node[next].sibling = tr->node[node].child;
            tr->node[node].child = next;
        }
        node = next;
    }
    // Two added tokens with the same content: the later one wins, as in HF's HashMap.
    tr->node[node].token = token;
}

// Longest token starting at s[0..n); returns its length (0: none) and its index in *token.
static size_t trie_longest(const struct trie *tr, const char *s, size_t n, int32_t *token)
{
    size_t best = 0;
    int32_t node = 0;
    for (size_t i = 0; i < n && node >= 0; i++) {
        node = trie_step(tr, node, (uint8_t)s[i]);
        if (node >= 0 && tr->node[node].token >= 0) { best = i + 1; *token = tr->node[node].token; }
    }
    return best;
}

// ---------------------------------------------------------------------------------------------
// loading: model (vocab, merges)

static bool get_bool(const char *path, const json_t *obj, const char *key, bool dflt)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return dflt;
    if (!json_is_boolean(v)) bad(path, "\"%s\" must be true or false", key);
    return json_is_true(v);
}

static void grow_ids(struct tokenizer *t, int32_t id)
{
    if (id < t->vocab_size) return;
    size_t old = (size_t)t->vocab_size;
    t->vocab_size = id + 1;
    if ((size_t)t->vocab_size <= t->ids_cap) return;
    size_t cap = pow2_at_least((size_t)t->vocab_size);
    t->str = xrealloc(t->str, cap * sizeof *t->str);
    t->raw = xrealloc(t->raw, cap * sizeof *t->raw);
    t->dec = xrealloc(t->dec, cap * sizeof *t->dec);
    t->added_of = xrealloc(t->added_of, cap * sizeof *t->added_of);
    for (size_t i = old; i < cap; i++) {
        t->str[i] = t->raw[i] = t->dec[i] = (struct span){ 0, UINT32_MAX };
        t->added_of[i] = -1;
    }
    t->ids_cap = cap;
}

static void load_vocab(struct tokenizer *t, const json_t *vocab)
{
    const char *path = t->path;
    if (!json_is_object(vocab)) bad(path, "model.vocab must be an object");
    size_t n = json_object_size(vocab);
    // ids are dense in practice; size the arrays once from the largest id
    int32_t max_id = -1;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= INT32_MAX / 2)
            bad(path, "model.vocab[\"%s\"]: id must be a non-negative integer", key);
        if (json_integer_value(v) > max_id) max_id = (int32_t)json_integer_value(v);
    }
    if (n == 0) bad(path, "model.vocab is empty");
    grow_ids(t, max_id);
    char *tmp = xmalloc(4096);
    size_t tmp_cap = 4096;
    json_object_foreach((json_t *)vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        size_t len = strlen(key);   // jansson keys are NUL-free here: vocab strings never hold NUL
        t->str[id] = (struct span){ pool_add(t, key, len), (uint32_t)len };
        if (!t->bytelevel) continue;
        if (len > tmp_cap) { tmp_cap = len; tmp = xrealloc(tmp, tmp_cap); }
        long nb = bytelevel_decode(key, len, tmp);
        if (nb > 0) t->raw[id] = (struct span){ pool_add(t, tmp, (size_t)nb), (uint32_t)nb };
    }
    free(tmp);
    strmap_init(&t->by_str, n);
    for (int32_t id = 0; id <= max_id; id++)
        if (t->str[id].len != UINT32_MAX) strmap_put(&t->by_str, t->str, t->pool, id);
    if (t->bytelevel) {
        strmap_init(&t->by_raw, n);
        for (int32_t id = 0; id <= max_id; id++)
            if (t->raw[id].len != UINT32_MAX) strmap_put(&t->by_raw, t->raw, t->pool, id);
    } else {
        // character-level: BPE runs on the vocabulary strings themselves
        memcpy(t->raw, t->str, (size_t)t->vocab_size * sizeof *t->raw);
        t->by_raw = t->by_str;
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b, hex[8];
        t->byte_id[b] = t->bytelevel ? strmap_find(&t->by_raw, t->raw, t->pool, &c, 1) : -1;
        if (b < 128) t->ascii_id[b] = strmap_find(&t->by_str, t->str, t->pool, &c, 1);
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        t->fallback_id[b] = strmap_find(&t->by_str, t->str, t->pool, hex, 6);
    }
}

// A merge (a, b) where b starts with "▁" and a ends with c: a word may not be cut between c and "▁".
static void note_join(struct tokenizer *t, int32_t c)
{
    for (size_t i = 0; i < t->n_sp_join; i++)
        if (t->sp_join[i] == c) return;
    if (t->n_sp_join == sizeof t->sp_join / sizeof t->sp_join[0]) { t->sp_cut = false; return; }
    t->sp_join[t->n_sp_join++] = c;
}

// A merge is "a b" (one space) or ["a", "b"]; both halves and their concatenation must be tokens.
static void load_merges(struct tokenizer *t, const json_t *merges)
{
    const char *path = t->path;
    if (!json_is_array(merges)) bad(path, "model.merges must be an array");
    size_t n = json_array_size(merges);
    mergemap_init(&t->merges, n);
    char *cat = NULL;
    size_t cat_cap = 0;
    for (size_t r = 0; r < n; r++) {
        const json_t *m = json_array_get(merges, r);
        const char *a, *b;
        size_t la, lb;
        char *split = NULL;
        if (json_is_string(m)) {
            split = xstrdup(json_string_value(m));
            char *sp = strchr(split, ' ');
            if (!sp || strchr(sp + 1, ' ')) bad(path, "model.merges[%zu]: expected \"a b\"", r);
            *sp = 0;
            a = split; b = sp + 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
        } else {
            bad(path, "model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", r);
        }
        la = strlen(a); lb = strlen(b);
        if (la + lb + 1 > cat_cap) { cat_cap = 2 * (la + lb + 1); cat = xrealloc(cat, cat_cap); }
        memcpy(cat, a, la); memcpy(cat + la, b, lb);
        int32_t ia = strmap_find(&t->by_str, t->str, t->pool, a, la);
        int32_t ib = strmap_find(&t->by_str, t->str, t->pool, b, lb);
        int32_t iab = strmap_find(&t->by_str, t->str, t->pool, cat, la + lb);
        if (ia < 0 || ib < 0 || iab < 0)
            bad(path, "model.merges[%zu]: \"%s\" + \"%s\": token not in the vocabulary", r, a, b);
        mergemap_put(&t->merges, ia, ib, (uint32_t)r, iab);
        if (!t->bytelevel && lb >= 3 && memcmp(b, "\xe2\x96\x81", 3) == 0 && la > 0 &&
            !(la >= 3 && memcmp(a + la - 3, "\xe2\x96\x81", 3) == 0))
            note_join(t, utf8_last(a, la));
        free(split);
    }
    free(cat);
}

static void load_model(struct tokenizer *t, const json_t *model)
{
    const char *path = t->path;
    if (!json_is_object(model)) bad(path, "no \"model\" object");
    const json_t *type = json_object_get(model, "type");
    if (type && !(json_is_string(type) && strcmp(json_string_value(type), "BPE") == 0))
        bad(path, "model type \"%s\" is not supported (only BPE)",
            json_is_string(type) ? json_string_value(type) : "?");
    if (!json_object_get(model, "merges")) bad(path, "model has no merges: not a BPE tokenizer");
    t->byte_fallback = get_bool(path, model, "byte_fallback", false);
    t->fuse_unk = get_bool(path, model, "fuse_unk", false);
    if (t->byte_fallback && t->bytelevel)
        bad(path, "byte_fallback BPE with a ByteLevel pre-tokenizer is not supported");
    const json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0))
        bad(path, "BPE dropout is not supported (encoding would not be deterministic)");
    const char *affix[] = { "continuing_subword_prefix", "end_of_word_suffix" };
    for (int i = 0; i < 2; i++) {
        const json_t *v = json_object_get(model, affix[i]);
        if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
            bad(path, "model.%s is not supported", affix[i]);
    }
    t->ignore_merges = get_bool(path, model, "ignore_merges", false);
    load_vocab(t, json_object_get(model, "vocab"));
    t->sp_cut = !t->bytelevel && !t->ignore_merges &&
                strmap_find(&t->by_str, t->str, t->pool, "\xe2\x96\x81", 3) >= 0;
    load_merges(t, json_object_get(model, "merges"));
    t->unk_id = -1;
    const json_t *unk = json_object_get(model, "unk_token");
    if (unk && !json_is_null(unk)) {
        if (!json_is_string(unk)) bad(path, "model.unk_token must be a string");
        t->unk_id = strmap_find(&t->by_str, t->str, t->pool, json_string_value(unk), json_string_length(unk));
        if (t->unk_id < 0) bad(path, "model.unk_token \"%s\" is not in the vocabulary", json_string_value(unk));
    }
}

// ---------------------------------------------------------------------------------------------
// loading: added tokens, normalizer, pre-tokenizer, post-processor, decoder

static const char *normalize_scratch(struct tokenizer *t, const char *s, size_t n, size_t *out_n);

static void load_added(struct tokenizer *t, const json_t *arr)
{
    const char *path = t->path;
    if (!arr || json_is_null(arr)) return;
    if (!json_is_array(arr)) bad(path, "added_tokens must be an array");
    t->n_added = json_array_size(arr);
    t->added = xcalloc(t->n_added ? t->n_added : 1, sizeof *t->added);
    for (size_t i = 0; i < t->n_added; i++) {
        const json_t *a = json_array_get(arr, i);
        const json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= INT32_MAX / 2 ||
            !json_is_string(content) || json_string_length(content) == 0)
            bad(path, "added_tokens[%zu]: needs an integer id and a non-empty content string", i);
        struct added_token *at = &t->added[i];
        at->id = (int32_t)json_integer_value(id);
        at->special = get_bool(path, a, "special", false);
        at->lstrip = get_bool(path, a, "lstrip", false);
        at->rstrip = get_bool(path, a, "rstrip", false);
        at->single_word = get_bool(path, a, "single_word", false);
        at->normalized = get_bool(path, a, "normalized", !at->special);
        at->len = json_string_length(content);
        at->content = xmalloc(at->len + 1);
        memcpy(at->content, json_string_value(content), at->len + 1);
        grow_ids(t, at->id);
        t->added_of[at->id] = (int32_t)i;
    }
}

// Tries are built after the normalizer is known: normalized tokens match their normalized form.
static void build_tries(struct tokenizer *t)
{
    trie_new_node(&t->trie_raw, 0);
    trie_new_node(&t->trie_norm, 0);
    for (size_t i = 0; i < t->n_added; i++) {
        struct added_token *at = &t->added[i];
        if (!at->normalized) { trie_add(&t->trie_raw, at->content, at->len, (int32_t)i); continue; }
        size_t nn;
        const char *norm = normalize_scratch(t, at->content, at->len, &nn);
        trie_add(&t->trie_norm, norm, nn, (int32_t)i);
    }
}

static const char *type_of(const json_t *o)
{
    const json_t *ty = json_object_get(o, "type");
    return json_is_string(ty) ? json_string_value(ty) : "";
}

// A JSON string that must be there (msg names it in the error).
static const char *need_string(const char *path, const json_t *v, const char *what, size_t *len)
{
    if (!json_is_string(v)) bad(path, "%s must be a string", what);
    *len = json_string_length(v);
    if (strlen(json_string_value(v)) != *len) bad(path, "%s must not hold NUL", what);
    return json_string_value(v);
}

// A Replace pattern: {"String": "..."} (non-empty); regex patterns are refused.
static const char *replace_pattern(const char *path, const json_t *o, const char *what, size_t *len)
{
    const json_t *pat = json_object_get(o, "pattern");
    if (json_object_get(pat, "Regex")) bad(path, "%s with a Regex pattern is not supported", what);
    const char *s = need_string(path, json_object_get(pat, "String"), what, len);
    if (*len == 0) bad(path, "%s with an empty pattern", what);
    return s;
}

static void load_normalizer(struct tokenizer *t, const json_t *n)
{
    if (!n || json_is_null(n)) return;
    const char *path = t->path, *ty = type_of(n);
    if (strcmp(ty, "Sequence") == 0) {
        const json_t *list = json_object_get(n, "normalizers");
        if (!json_is_array(list)) bad(path, "normalizer Sequence without \"normalizers\"");
        for (size_t i = 0; i < json_array_size(list); i++) load_normalizer(t, json_array_get(list, i));
        return;
    }
    if (t->n_norm == sizeof t->norm / sizeof t->norm[0]) bad(path, "too many normalizers");
    struct norm_step *st = &t->norm[t->n_norm];
    size_t len;
    const char *v;
    if (strcmp(ty, "NFC") == 0) {
        st->kind = NORM_NFC;
    } else if (strcmp(ty, "Prepend") == 0) {
        st->kind = NORM_PREPEND;
        v = need_string(path, json_object_get(n, "prepend"), "normalizer Prepend \"prepend\"", &len);
        st->pat = xstrdup(v);
        st->npat = len;
    } else if (strcmp(ty, "Replace") == 0) {
        st->kind = NORM_REPLACE;
        v = replace_pattern(path, n, "normalizer Replace", &len);
        st->pat = xstrdup(v);
        st->npat = len;
        v = need_string(path, json_object_get(n, "content"), "normalizer Replace \"content\"", &len);
        st->rep = xstrdup(v);
        st->nrep = len;
    } else {
        bad(path, "normalizer \"%s\" is not supported (only NFC, Prepend, Replace)", ty);
    }
    t->n_norm++;
}

static pcre2_code *compile_regex(const char *path, const char *pat, size_t len, uint32_t extra, bool *jit)
{
    int err;
    PCRE2_SIZE off;
    uint32_t opt = PCRE2_UTF | extra | (extra & PCRE2_LITERAL ? 0 : PCRE2_UCP);   // LITERAL refuses UCP
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opt, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        bad(path, "pre-tokenizer regex does not compile at offset %zu: %s", (size_t)off, (char *)msg);
    }
    // JIT is an optimisation: when it is unavailable pcre2_match interprets the same pattern.
    *jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    return re;
}

static struct pretok *pretok_add(struct tokenizer *t, enum pretok_kind kind)
{
    if (t->n_pretok == sizeof t->pretok / sizeof t->pretok[0]) bad(t->path, "too many pre-tokenizers");
    struct pretok *p = &t->pretok[t->n_pretok++];
    memset(p, 0, sizeof *p);
    p->kind = kind;
    return p;
}

static void load_split(struct tokenizer *t, const json_t *p)
{
    const char *path = t->path;
    static const char *const names[] = { "Isolated", "Removed", "MergedWithPrevious", "MergedWithNext" };
    const json_t *beh = json_object_get(p, "behavior");
    const char *b = json_is_string(beh) ? json_string_value(beh) : "?";
    int k = 0;
    while (k < 4 && strcmp(b, names[k]) != 0) k++;
    if (k == 4)
        bad(path, "Split pre-tokenizer behavior \"%s\" is not supported (Isolated, Removed, "
            "MergedWithPrevious, MergedWithNext)", b);
    if (get_bool(path, p, "invert", false)) bad(path, "Split pre-tokenizer with invert is not supported");
    const json_t *pat = json_object_get(p, "pattern");
    const json_t *re = json_object_get(pat, "Regex"), *lit = json_object_get(pat, "String");
    struct pretok *s = pretok_add(t, PRETOK_SPLIT);
    s->behavior = (enum split_behavior)k;
    if (json_is_string(re))
        s->re = compile_regex(path, json_string_value(re), json_string_length(re), 0, &s->jit);
    else if (json_is_string(lit))
        s->re = compile_regex(path, json_string_value(lit), json_string_length(lit), PCRE2_LITERAL, &s->jit);
    else
        bad(path, "Split pre-tokenizer needs a pattern {\"Regex\": ...} or {\"String\": ...}");
}

// One character (1-4 bytes of UTF-8), as Rust's char fields are.
static size_t one_char(const char *path, const json_t *v, const char *what, char out[8])
{
    size_t len, vp;
    const char *s = need_string(path, v, what, &len);
    if (len == 0 || len > 4 || utf8_seq_len((const unsigned char *)s, len, &vp) != len)
        bad(path, "%s must be exactly one character", what);
    memcpy(out, s, len);
    out[len] = 0;
    return len;
}

// Metaspace (pre_tokenizers/metaspace.rs): prepend_scheme, or the older add_prefix_space.
static void load_metaspace(struct tokenizer *t, const json_t *p)
{
    const char *path = t->path;
    struct pretok *m = pretok_add(t, PRETOK_METASPACE);
    m->rep_len = one_char(path, json_object_get(p, "replacement"), "Metaspace \"replacement\"", m->rep);
    const json_t *sch = json_object_get(p, "prepend_scheme");
    m->prepend = PREPEND_ALWAYS;
    if (sch && !json_is_null(sch)) {
        const char *v = json_is_string(sch) ? json_string_value(sch) : "?";
        if (strcmp(v, "always") == 0) m->prepend = PREPEND_ALWAYS;
        else if (strcmp(v, "first") == 0) m->prepend = PREPEND_FIRST;
        else if (strcmp(v, "never") == 0) m->prepend = PREPEND_NEVER;
        else bad(path, "Metaspace prepend_scheme \"%s\" is not always, first or never", v);
    }
    if (!get_bool(path, p, "add_prefix_space", true)) {
        if (sch && !json_is_null(sch) && m->prepend != PREPEND_NEVER)
            bad(path, "Metaspace: add_prefix_space false contradicts prepend_scheme");
        m->prepend = PREPEND_NEVER;
    }
    if (get_bool(path, p, "split", true)) {
        m->behavior = SPLIT_MERGED_NEXT;
        m->re = compile_regex(path, m->rep, m->rep_len, PCRE2_LITERAL, &m->jit);
    }
}

static void load_pretok(struct tokenizer *t, const json_t *p)
{
    const char *path = t->path, *ty = type_of(p);
    if (strcmp(ty, "Sequence") == 0) {
        const json_t *list = json_object_get(p, "pretokenizers");
        if (!json_is_array(list)) bad(path, "pre-tokenizer Sequence without \"pretokenizers\"");
        for (size_t i = 0; i < json_array_size(list); i++) load_pretok(t, json_array_get(list, i));
    } else if (strcmp(ty, "Split") == 0) {
        load_split(t, p);
    } else if (strcmp(ty, "Digits") == 0) {
        pretok_add(t, PRETOK_DIGITS)->individual_digits = get_bool(path, p, "individual_digits", false);
    } else if (strcmp(ty, "ByteLevel") == 0) {
        struct pretok *b = pretok_add(t, PRETOK_BYTELEVEL);
        b->add_prefix_space = get_bool(path, p, "add_prefix_space", true);
        if (get_bool(path, p, "use_regex", true))
            b->re = compile_regex(path, GPT2_REGEX, sizeof GPT2_REGEX - 1, 0, &b->jit);
    } else if (strcmp(ty, "Metaspace") == 0 && !t->bytelevel) {
        load_metaspace(t, p);
    } else {
        bad(path, "pre-tokenizer \"%s\" is not supported", ty);
    }
}

static void check_pretok(struct tokenizer *t)
{
    if (t->bytelevel && (t->n_pretok == 0 || t->pretok[t->n_pretok - 1].kind != PRETOK_BYTELEVEL))
        bad(t->path, "a ByteLevel tokenizer's pre-tokenizer must end with ByteLevel");
    for (size_t i = 0; i + 1 < t->n_pretok; i++)
        if (t->pretok[i].kind == PRETOK_BYTELEVEL)
            bad(t->path, "ByteLevel must be the last pre-tokenizer");
    for (size_t i = 0; i < t->n_pretok; i++)
        if (t->pretok[i].re) t->pretok[i].md = pcre2_match_data_create_from_pattern(t->pretok[i].re, NULL);
}

// Does this pre-tokenizer or decoder (or a Sequence of them) hold a ByteLevel step?
static bool has_bytelevel(const json_t *o)
{
    if (!json_is_object(o)) return false;
    if (strcmp(type_of(o), "ByteLevel") == 0) return true;
    const char *lists[] = { "pretokenizers", "decoders" };
    for (int k = 0; k < 2; k++) {
        const json_t *l = json_object_get(o, lists[k]);
        for (size_t i = 0; json_is_array(l) && i < json_array_size(l); i++)
            if (has_bytelevel(json_array_get(l, i))) return true;
    }
    return false;
}

static void load_template(struct tokenizer *t, const json_t *p)
{
    const char *path = t->path;
    const json_t *single = json_object_get(p, "single"), *specials = json_object_get(p, "special_tokens");
    if (!json_is_array(single)) bad(path, "TemplateProcessing without \"single\"");
    bool seen_a = false;
    for (size_t i = 0; i < json_array_size(single); i++) {
        const json_t *item = json_array_get(single, i);
        const json_t *sp = json_object_get(item, "SpecialToken"), *seq = json_object_get(item, "Sequence");
        if (seq) {
            const json_t *id = json_object_get(seq, "id");
            if (seen_a || !json_is_string(id) || strcmp(json_string_value(id), "A") != 0)
                bad(path, "TemplateProcessing: single must hold sequence A once");
            seen_a = true;
            continue;
        }
        const json_t *name = json_object_get(sp, "id");
        const json_t *ids = json_object_get(json_object_get(specials, json_string_value(name)), "ids");
        if (!json_is_string(name) || !json_is_array(ids))
            bad(path, "TemplateProcessing: special token without ids");
        for (size_t k = 0; k < json_array_size(ids); k++) {
            const json_t *id = json_array_get(ids, k);
            if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= t->vocab_size)
                bad(path, "TemplateProcessing: special token id out of range");
            int32_t *dst = seen_a ? t->suffix : t->prefix;
            size_t *n = seen_a ? &t->n_suffix : &t->n_prefix;
            if (*n == 8) bad(path, "TemplateProcessing: too many special tokens");
            dst[(*n)++] = (int32_t)json_integer_value(id);
        }
    }
    if (!seen_a) bad(path, "TemplateProcessing: single has no sequence A");
}

static void load_post(struct tokenizer *t, const json_t *p)
{
    if (!p || json_is_null(p)) return;
    const char *ty = type_of(p);
    if (strcmp(ty, "ByteLevel") == 0) return;   // only trims offsets, which srlm does not report
    if (strcmp(ty, "TemplateProcessing") == 0) { load_template(t, p); return; }
    if (strcmp(ty, "Sequence") == 0) {
        const json_t *list = json_object_get(p, "processors");
        if (!json_is_array(list)) bad(t->path, "post-processor Sequence without \"processors\"");
        for (size_t i = 0; i < json_array_size(list); i++) load_post(t, json_array_get(list, i));
        return;
    }
    bad(t->path, "post-processor \"%s\" is not supported", ty);
}

static size_t get_count(const char *path, const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000)
        bad(path, "decoder \"%s\" must be an integer in [0, 1000000]", key);
    return (size_t)json_integer_value(v);
}

// A character-level decoder step: Replace (String pattern), ByteFallback, Fuse, Strip, Metaspace.
static void load_dec_step(struct tokenizer *t, const json_t *d, const char *ty)
{
    const char *path = t->path;
    if (t->n_dec == sizeof t->dec_step / sizeof t->dec_step[0]) bad(path, "too many decoders");
    struct dec_step *st = &t->dec_step[t->n_dec];
    char c[8];
    size_t len;
    const char *v;
    if (strcmp(ty, "Replace") == 0) {
        st->kind = DEC_REPLACE;
        v = replace_pattern(path, d, "decoder Replace", &len);
        st->pat = xstrdup(v);
        st->npat = len;
        v = need_string(path, json_object_get(d, "content"), "decoder Replace \"content\"", &len);
        st->rep = xstrdup(v);
        st->nrep = len;
    } else if (strcmp(ty, "ByteFallback") == 0) {
        st->kind = DEC_BYTEFALLBACK;
    } else if (strcmp(ty, "Fuse") == 0) {
        st->kind = DEC_FUSE;
    } else if (strcmp(ty, "Strip") == 0) {
        st->kind = DEC_STRIP;
        st->npat = one_char(path, json_object_get(d, "content"), "decoder Strip \"content\"", c);
        st->pat = xstrdup(c);
        st->start = get_count(path, d, "start");
        st->stop = get_count(path, d, "stop");
    } else if (strcmp(ty, "Metaspace") == 0) {
        st->kind = DEC_METASPACE;
        st->npat = one_char(path, json_object_get(d, "replacement"), "decoder Metaspace \"replacement\"", c);
        st->pat = xstrdup(c);
        const json_t *sch = json_object_get(d, "prepend_scheme");
        bool never = json_is_string(sch) && strcmp(json_string_value(sch), "never") == 0;
        if (sch && !json_is_null(sch) && !never && !(json_is_string(sch) &&
            (strcmp(json_string_value(sch), "always") == 0 || strcmp(json_string_value(sch), "first") == 0)))
            bad(path, "decoder Metaspace prepend_scheme must be always, first or never");
        if (!get_bool(path, d, "add_prefix_space", true)) never = true;
        st->strip_first = !never;
    } else {
        bad(path, "decoder \"%s\" is not supported (Replace, ByteFallback, Fuse, Strip, Metaspace)", ty);
    }
    t->n_dec++;
}

static void load_decoder(struct tokenizer *t, const json_t *d)
{
    const char *ty = d ? type_of(d) : "";
    if (strcmp(ty, "Sequence") == 0) {
        const json_t *list = json_object_get(d, "decoders");
        if (!json_is_array(list) || json_array_size(list) == 0) bad(t->path, "decoder Sequence is empty");
        for (size_t i = 0; i < json_array_size(list); i++) load_decoder(t, json_array_get(list, i));
        return;
    }
    if (!d || json_is_null(d)) bad(t->path, "no decoder: decoding would not be defined");
    if (t->bytelevel) {
        if (strcmp(ty, "ByteLevel") != 0)
            bad(t->path, "decoder \"%s\" is not supported with a ByteLevel pre-tokenizer (only ByteLevel)", ty);
        return;
    }
    load_dec_step(t, d, ty);
}

// Decoder bytes of every id: the ByteLevel decoder maps each character back to its byte, or
// keeps the token's UTF-8 as is when a character is outside the alphabet (decoders/byte_level.rs).
static void build_decode(struct tokenizer *t)
{
    if (!t->bytelevel) return;   // character-level tokenizers decode through their decoder steps
    for (int32_t id = 0; id < t->vocab_size; id++) {
        const char *s;
        size_t n;
        if (t->added_of[id] >= 0) {
            const struct added_token *at = &t->added[t->added_of[id]];
            s = at->content; n = at->len;
        } else if (t->str[id].len != UINT32_MAX) {
            if (t->raw[id].len != UINT32_MAX) { t->dec[id] = t->raw[id]; continue; }
            s = t->pool + t->str[id].off; n = t->str[id].len;
        } else {
            continue;
        }
        char *tmp = xmalloc(n + 1);
        long nb = bytelevel_decode(s, n, tmp);
        if (nb < 0) { memcpy(tmp, s, n); nb = (long)n; }
        t->dec[id] = (struct span){ pool_add(t, tmp, (size_t)nb), (uint32_t)nb };
        free(tmp);
    }
}

// ---------------------------------------------------------------------------------------------
// loading: configs beside tokenizer.json

// flags: jansson decoding flags besides JSON_ALLOW_NUL (JSON_DECODE_INT_AS_REAL for a file whose
// integers srlm does not read and may not fit: Llama-2's model_max_length is 1e30).
static json_t *load_json_file(const char *path, bool required, size_t flags)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (!required) return NULL;
        die(EX_NOINPUT, "%s:", path);
    }
    size_t len;
    char *buf = read_file(path, &len);
    json_error_t err;
    json_t *root = json_load_text(buf, len, JSON_ALLOW_NUL | flags, &err);
    free(buf);
    if (!root) die(EX_DATAERR, "%s: line %d: %s", path, err.line, err.text);
    if (!json_is_object(root)) die(EX_DATAERR, "%s: not a JSON object", path);
    return root;
}

// A token given as "<s>" or as an AddedToken object {"content": "<s>", ...}.
static const char *token_content(const json_t *v)
{
    if (json_is_string(v)) return json_string_value(v);
    const json_t *c = json_object_get(v, "content");
    return json_is_string(c) ? json_string_value(c) : NULL;
}

static void add_eos(struct tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->vocab_size) return;
    for (size_t i = 0; i < t->n_eos; i++)
        if (t->eos_ids[i] == id) return;
    if (t->n_eos < TOKENIZER_MAX_EOS) t->eos_ids[t->n_eos++] = id;
}

static void load_config(struct tokenizer *t, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    json_t *cfg = load_json_file(path, false, JSON_DECODE_INT_AS_REAL);
    t->eos_id = t->bos_id = -1;
    if (cfg) {
        const char *eos = token_content(json_object_get(cfg, "eos_token"));
        const char *bos = token_content(json_object_get(cfg, "bos_token"));
        if (eos && (t->eos_id = tokenizer_token_id(t, eos)) < 0)
            die(EX_DATAERR, "%s: eos_token \"%s\" is not a token", path, eos);
        if (bos && (t->bos_id = tokenizer_token_id(t, bos)) < 0)
            die(EX_DATAERR, "%s: bos_token \"%s\" is not a token", path, bos);
        t->add_eos = get_bool(path, cfg, "add_eos_token", false);
        const json_t *tpl = json_object_get(cfg, "chat_template");
        if (json_is_array(tpl)) {   // [{name, template}, ...]: the "default" one
            size_t i;
            const json_t *e;
            json_array_foreach(tpl, i, e)
                if (json_is_string(json_object_get(e, "name")) &&
                    strcmp(json_string_value(json_object_get(e, "name")), "default") == 0)
                    tpl = json_object_get(e, "template");
        }
        if (json_is_string(tpl)) t->chat_template = xstrdup(json_string_value(tpl));
        json_decref(cfg);
    }
    add_eos(t, t->eos_id);
    if (!t->chat_template) {
        snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
        struct stat st;
        if (stat(path, &st) == 0) t->chat_template = read_file(path, NULL);
    }
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    json_t *gen = load_json_file(path, false, 0);
    const json_t *ids = gen ? json_object_get(gen, "eos_token_id") : NULL;
    for (size_t i = 0; ids && i < (json_is_array(ids) ? json_array_size(ids) : 1); i++) {
        const json_t *v = json_is_array(ids) ? json_array_get(ids, i) : ids;
        if (!json_is_integer(v)) continue;
        // an id beyond int32 is a broken file (a cast would wrap it onto another token); one
        // inside int32 but beyond the vocabulary is ignored, as before
        json_int_t x = json_integer_value(v);
        if (x < INT32_MIN || x > INT32_MAX) die(EX_DATAERR, "%s: eos_token_id %lld is out of range", path, (long long)x);
        add_eos(t, (int32_t)x);
    }
    json_decref(gen);
}

// ---------------------------------------------------------------------------------------------
// new / delete

static void resolve_paths(const char *path, char **json_path, char **dir)
{
    struct stat st;
    if (stat(path, &st) != 0) die(EX_NOINPUT, "%s:", path);
    if (S_ISDIR(st.st_mode)) {
        size_t n = strlen(path) + 32;
        *json_path = xmalloc(n);
        snprintf(*json_path, n, "%s/tokenizer.json", path);
        *dir = xstrdup(path);
        if (stat(*json_path, &st) != 0) die(EX_NOINPUT, "%s:", *json_path);
    } else {
        *json_path = xstrdup(path);
        *dir = xstrdup(path);
        char *slash = strrchr(*dir, '/');
        if (slash) *slash = 0; else strcpy(*dir, ".");
    }
}

struct tokenizer *tokenizer_new(const char *path_arg)
{
    if (byte_to_cp[0] == 0) bytelevel_init();
    struct tokenizer *t = xcalloc(1, sizeof *t);
    char *dir;
    resolve_paths(path_arg, &t->path, &dir);
    size_t len;
    char *buf = read_file(t->path, &len);
    hash_hex(XXH3_64bits(buf, len), t->hash_hex);
    json_error_t err;
    json_t *root = json_load_text(buf, len, 0, &err);
    free(buf);
    if (!root) bad(t->path, "invalid JSON at line %d: %s", err.line, err.text);
    if (!json_is_object(root)) bad(t->path, "not a JSON object");
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    t->bytelevel = has_bytelevel(pre) || has_bytelevel(json_object_get(root, "decoder"));
    load_model(t, json_object_get(root, "model"));
    load_added(t, json_object_get(root, "added_tokens"));
    load_normalizer(t, json_object_get(root, "normalizer"));
    if (pre && !json_is_null(pre)) load_pretok(t, pre);
    check_pretok(t);
    load_post(t, json_object_get(root, "post_processor"));
    load_decoder(t, json_object_get(root, "decoder"));
    json_decref(root);
    build_tries(t);
    build_decode(t);
    t->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    t->mctx = pcre2_match_context_create(NULL);
    pcre2_jit_stack_assign(t->mctx, NULL, t->jit_stack);
    t->cache = xcalloc(CACHE_SLOTS, sizeof *t->cache);
    load_config(t, dir);
    free(dir);
    return t;
}

void tokenizer_delete(struct tokenizer *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n_pretok; i++) {
        pcre2_code_free(t->pretok[i].re);
        pcre2_match_data_free(t->pretok[i].md);
        free(t->pretok[i].buf);
    }
    for (size_t i = 0; i < t->n_norm; i++) { free(t->norm[i].pat); free(t->norm[i].rep); }
    for (size_t i = 0; i < t->n_dec; i++) { free(t->dec_step[i].pat); free(t->dec_step[i].rep); }
    free(t->nbuf[0]); free(t->nbuf[1]);
    pcre2_match_context_free(t->mctx);
    pcre2_jit_stack_free(t->jit_stack);
    for (size_t i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->trie_raw.node); free(t->trie_norm.node);
    if (t->by_raw.slot != t->by_str.slot) free(t->by_raw.slot);
    free(t->by_str.slot);
    free(t->merges.key); free(t->merges.rank); free(t->merges.id);
    free(t->str); free(t->raw); free(t->dec); free(t->added_of); free(t->pool);
    free(t->nfc_buf); free(t->aps_buf);
    free(t->sym_id); free(t->sym_prev); free(t->sym_next); free(t->sym_len); free(t->heap);
    free(t->cache); free(t->ckeys); free(t->cids);
    free(t->chat_template);
    free(t->path);
    free(t);
}

// ---------------------------------------------------------------------------------------------
// BPE on one pretoken (models/bpe/word.rs merge_all): a min-heap of (rank, position) merges,
// stale entries skipped when the pair at their position no longer makes the same token.

static void bpe_reserve(struct tokenizer *t, size_t n)
{
    if (n <= t->sym_cap) return;
    t->sym_cap = pow2_at_least(n);
    t->sym_id = xrealloc(t->sym_id, t->sym_cap * sizeof *t->sym_id);
    t->sym_prev = xrealloc(t->sym_prev, t->sym_cap * sizeof *t->sym_prev);
    t->sym_next = xrealloc(t->sym_next, t->sym_cap * sizeof *t->sym_next);
    t->sym_len = xrealloc(t->sym_len, t->sym_cap * sizeof *t->sym_len);
    t->heap_cap = 3 * t->sym_cap;
    t->heap = xrealloc(t->heap, t->heap_cap * sizeof *t->heap);
}

static inline bool heap_less(const struct heap_item *a, const struct heap_item *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(struct heap_item *h, size_t *n, struct heap_item it)
{
    size_t i = (*n)++;
    while (i > 0 && heap_less(&it, &h[(i - 1) / 2])) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = it;
}

static struct heap_item heap_pop(struct heap_item *h, size_t *n)
{
    struct heap_item top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static void bpe_push_pair(struct tokenizer *t, size_t *hn, int32_t pos)
{
    uint32_t rank;
    int32_t id;
    int32_t next = t->sym_next[pos];
    if (next >= 0 && mergemap_get(&t->merges, t->sym_id[pos], t->sym_id[next], &rank, &id)) {
        ASSERT(*hn < t->heap_cap);
        heap_push(t->heap, hn, (struct heap_item){ rank, (uint32_t)pos, id });
    }
}

static inline void bpe_add_symbol(struct tokenizer *t, size_t *ns, int32_t id)
{
    size_t i = (*ns)++;
    t->sym_id[i] = id;
    t->sym_len[i] = 1;
    t->sym_prev[i] = (int32_t)i - 1;
    t->sym_next[i] = (int32_t)i + 1;
}

// Byte-level: one symbol per byte. A byte with no token becomes unk, or is dropped when there is
// no unk token, as HF does.
static size_t bpe_symbols_bytes(struct tokenizer *t, const char *w, size_t n)
{
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[(uint8_t)w[i]];
        if (id < 0) id = t->unk_id;
        if (id >= 0) bpe_add_symbol(t, &ns, id);
    }
    return ns;
}

// Character-level (models/bpe/model.rs merge_word): one symbol per character in the vocabulary;
// an unknown character becomes its <0xXX> byte tokens (byte_fallback, when all of them exist),
// else unk (consecutive unknowns fused into one with fuse_unk), else nothing. As in HF, a pending
// unk is not flushed before byte tokens.
static size_t bpe_symbols_chars(struct tokenizer *t, const char *w, size_t n)
{
    size_t ns = 0, i = 0, k;
    bool unk = false;
    while (i < n) {
        unsigned char c = (unsigned char)w[i];
        int32_t id;
        if (c < 0x80) {
            k = 1;
            id = t->ascii_id[c];
        } else {
            k = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            if (k > n - i) k = n - i;   // (valid UTF-8 never gets here)
            id = strmap_find(&t->by_str, t->str, t->pool, w + i, k);
        }
        if (id >= 0) {
            if (unk) { bpe_add_symbol(t, &ns, t->unk_id); unk = false; }
            bpe_add_symbol(t, &ns, id);
        } else {
            bool fell_back = t->byte_fallback;
            for (size_t b = 0; fell_back && b < k; b++) fell_back = t->fallback_id[(uint8_t)w[i + b]] >= 0;
            if (fell_back) {
                for (size_t b = 0; b < k; b++) bpe_add_symbol(t, &ns, t->fallback_id[(uint8_t)w[i + b]]);
            } else if (t->unk_id >= 0) {
                if (unk && !t->fuse_unk) bpe_add_symbol(t, &ns, t->unk_id);
                unk = true;
            }
        }
        i += k;
    }
    if (unk) bpe_add_symbol(t, &ns, t->unk_id);
    return ns;
}

// Appends the BPE ids of the word w[0..n) (raw bytes, or characters) to out.
static void bpe_word(struct tokenizer *t, const char *w, size_t n, struct tok_ids *out)
{
    if (t->ignore_merges) {
        int32_t id = strmap_find(&t->by_raw, t->raw, t->pool, w, n);
        if (id >= 0) { push(out, id); return; }
    }
    bpe_reserve(t, n);   // at most one symbol per byte either way
    size_t ns = t->bytelevel ? bpe_symbols_bytes(t, w, n) : bpe_symbols_chars(t, w, n);
    if (ns == 0) return;
    t->sym_next[ns - 1] = -1;
    size_t hn = 0;
    for (size_t i = 0; i + 1 < ns; i++) bpe_push_pair(t, &hn, (int32_t)i);
    while (hn > 0) {
        struct heap_item top = heap_pop(t->heap, &hn);
        int32_t pos = (int32_t)top.pos, next = t->sym_next[pos];
        if (t->sym_len[pos] == 0 || next < 0) continue;
        uint32_t rank;
        int32_t id;
        if (!mergemap_get(&t->merges, t->sym_id[pos], t->sym_id[next], &rank, &id) || id != top.id) continue;
        t->sym_id[pos] = top.id;
        t->sym_len[pos] += t->sym_len[next];
        t->sym_len[next] = 0;
        t->sym_next[pos] = t->sym_next[next];
        if (t->sym_next[pos] >= 0) t->sym_prev[t->sym_next[pos]] = pos;
        if (t->sym_prev[pos] >= 0) bpe_push_pair(t, &hn, t->sym_prev[pos]);
        bpe_push_pair(t, &hn, pos);
    }
    for (size_t i = 0; i < ns; i++)
        if (t->sym_len[i]) push(out, t->sym_id[i]);
}

// ---------------------------------------------------------------------------------------------
// pretoken cache: raw bytes -> ids, flushed whole when full (bounded memory, no eviction logic)

static void cache_clear(struct tokenizer *t)
{
    memset(t->cache, 0, CACHE_SLOTS * sizeof *t->cache);
    t->cache_n = t->ckeys_len = t->cids_len = 0;
}

static void bpe_cached(struct tokenizer *t, const char *w, size_t n, struct tok_ids *out)
{
    if (n == 1 && t->bytelevel) {   // one byte is always one symbol, no merge possible
        int32_t id = t->byte_id[(uint8_t)w[0]];
        if (id < 0) id = t->unk_id;
        if (id >= 0) push(out, id);
        return;
    }
    if (n == 1 && t->ascii_id[(uint8_t)w[0] & 0x7F] >= 0) { push(out, t->ascii_id[(uint8_t)w[0] & 0x7F]); return; }
    if (n >= CACHE_MAX_WORD) { bpe_word(t, w, n, out); return; }
    uint64_t h = XXH3_64bits(w, n);
    size_t i = h & (CACHE_SLOTS - 1);
    for (; t->cache[i].used; i = (i + 1) & (CACHE_SLOTS - 1)) {
        const struct cache_entry *e = &t->cache[i];
        if (e->hash == h && e->key_len == n && memcmp(t->ckeys + e->key_off, w, n) == 0) {
            for (size_t k = 0; k < e->n_ids; k++) push(out, t->cids[e->ids_off + k]);
            return;
        }
    }
    size_t before = out->n;
    bpe_word(t, w, n, out);
    size_t nid = out->n - before;
    if (t->cache_n >= CACHE_MAX_ENTRIES || t->ckeys_len + n > UINT32_MAX / 2) {
        cache_clear(t);
        i = h & (CACHE_SLOTS - 1);
    }
    if (t->ckeys_len + n > t->ckeys_cap) {
        t->ckeys_cap = 2 * (t->ckeys_len + n) + 4096;
        t->ckeys = xrealloc(t->ckeys, t->ckeys_cap);
    }
    if (t->cids_len + nid > t->cids_cap) {
        t->cids_cap = 2 * (t->cids_len + nid) + 4096;
        t->cids = xrealloc(t->cids, t->cids_cap * sizeof *t->cids);
    }
    struct cache_entry *e = &t->cache[i];
    *e = (struct cache_entry){ h, (uint32_t)t->ckeys_len, (uint32_t)t->cids_len, (uint16_t)n, (uint16_t)nid, true };
    memcpy(t->ckeys + t->ckeys_len, w, n);
    if (nid) memcpy(t->cids + t->cids_len, out->v + before, nid * sizeof *t->cids);   // none: bytes dropped
    t->ckeys_len += n;
    t->cids_len += nid;
    t->cache_n++;
}

// A character-level word cut into the pieces that start at a "▁" following a character c that
// is in the vocabulary, is not "▁" and ends no merge (c, "▁..."): BPE can never join across such
// a cut (a merge across it would be one of those), so merging the pieces apart gives the same
// ids as merging the whole word, and the pieces ("▁the") hit the cache. Without a pre-tokenizer
// (Gemma, Llama-2) the word is a whole line otherwise.
static void bpe_words(struct tokenizer *t, const char *w, size_t n, struct tok_ids *out)
{
    if (!t->sp_cut) { bpe_cached(t, w, n, out); return; }
    size_t start = 0, i = 1;
    while (i + 2 < n) {
        const char *q = memchr(w + i, 0xE2, n - i - 2);
        if (!q) break;
        i = (size_t)(q - w);
        if (q[1] != '\x96' || q[2] != '\x81') { i++; continue; }
        size_t pl = 1;
        while (pl < i && ((unsigned char)w[i - pl] & 0xC0) == 0x80) pl++;
        int32_t c;
        utf8_decode((const unsigned char *)w + i - pl, &c);
        bool cut = i > start && c != 0x2581 &&
                   (c < 0x80 ? t->ascii_id[c] >= 0 : strmap_find(&t->by_str, t->str, t->pool, w + i - pl, pl) >= 0);
        for (size_t k = 0; cut && k < t->n_sp_join; k++) cut = t->sp_join[k] != c;
        if (cut) {
            bpe_cached(t, w + start, i - start, out);
            start = i;
        }
        i += 3;
    }
    bpe_cached(t, w + start, n - start, out);
}

// ---------------------------------------------------------------------------------------------
// pre-tokenizer pipeline: each step splits a piece and hands the sub-pieces to the next step;
// after the last step a piece is a word for BPE. `first`: the piece starts at offset 0 of the
// original text (Metaspace's prepend_scheme "first" looks at it, as metaspace.rs does).

static void pretok_run(struct tokenizer *t, size_t step, const char *s, size_t n, bool first,
                       struct tok_ids *out);

static inline void pretok_emit(struct tokenizer *t, size_t step, const char *s, size_t a, size_t b, bool first,
                               struct tok_ids *out)
{
    if (b > a) pretok_run(t, step + 1, s + a, b - a, first && a == 0, out);
}

// Split by the step's regex (normalizer.rs split): Isolated makes every match and every gap a
// piece, Removed keeps the gaps, MergedWithPrevious ends a piece after each match,
// MergedWithNext starts one at each match. Empty matches are not pieces.
static void pretok_regex(struct tokenizer *t, size_t step, const struct pretok *p, const char *s, size_t n,
                         bool first, struct tok_ids *out)
{
    pcre2_code *re = p->re;
    pcre2_match_data *md = p->md;
    size_t pos = 0, from = 0;   // pos: start of the piece not yet handed on
    while (from < n) {
        int rc = p->jit ? pcre2_jit_match(re, (PCRE2_SPTR)s, n, from, 0, md, t->mctx)
                        : pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, md, t->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            die(EX_SOFTWARE, "pre-tokenizer regex failed: %s", (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], b = ov[1];
        if (a == b) {   // empty match: not a piece; step over one character
            from = b + 1;
            while (from < n && ((unsigned char)s[from] & 0xC0) == 0x80) from++;
            continue;
        }
        switch (p->behavior) {
        case SPLIT_ISOLATED: pretok_emit(t, step, s, pos, a, first, out); pretok_emit(t, step, s, a, b, first, out); pos = b; break;
        case SPLIT_REMOVED: pretok_emit(t, step, s, pos, a, first, out); pos = b; break;
        case SPLIT_MERGED_PREV: pretok_emit(t, step, s, pos, b, first, out); pos = b; break;
        case SPLIT_MERGED_NEXT: pretok_emit(t, step, s, pos, a, first, out); pos = a; break;
        }
        from = b;
    }
    pretok_emit(t, step, s, pos, n, first, out);
}

// Digits: numeric characters are split off, one by one or as runs (digits.rs).
static void pretok_digits(struct tokenizer *t, size_t step, bool individual, const char *s, size_t n,
                          bool first, struct tok_ids *out)
{
    size_t start = 0, i = 0;
    bool in_digits = false;
    while (i < n) {
        int32_t cp;
        size_t k = utf8_decode((const unsigned char *)s + i, &cp);
        bool d = is_numeric(cp);
        if (i > start && (d != in_digits || (d && individual))) {
            pretok_emit(t, step, s, start, i, first, out);
            start = i;
        }
        in_digits = d;
        i += k;
    }
    pretok_emit(t, step, s, start, n, first, out);
}

static void pretok_bytelevel(struct tokenizer *t, size_t step, const struct pretok *p, const char *s,
                             size_t n, bool first, struct tok_ids *out)
{
    if (p->add_prefix_space && (n == 0 || s[0] != ' ')) {
        // byte_level.rs prepends the space to every piece the previous steps produced
        if (n + 1 > t->aps_cap) { t->aps_cap = 2 * (n + 1); t->aps_buf = xrealloc(t->aps_buf, t->aps_cap); }
        t->aps_buf[0] = ' ';
        memcpy(t->aps_buf + 1, s, n);
        s = t->aps_buf;
        n++;
    }
    if (p->re) pretok_regex(t, step, p, s, n, first, out);
    else pretok_run(t, step + 1, s, n, first, out);
}

// Metaspace (metaspace.rs): every ' ' becomes the replacement; the replacement is prepended
// (always, or only to the piece at the start of the text) unless the piece starts with it; with
// split, a piece starts at each replacement (MergedWithNext). The step's own buffer holds the
// result while the later steps use it (a step is never re-entered from below).
static void pretok_metaspace(struct tokenizer *t, size_t step, struct pretok *p, const char *s, size_t n,
                             bool first, struct tok_ids *out)
{
    size_t spaces = 0, rl = p->rep_len;
    for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
    size_t need = rl + n + spaces * (rl - 1);
    if (need > p->buf_cap) { p->buf_cap = 2 * need; p->buf = xrealloc(p->buf, p->buf_cap); }
    char *d = p->buf + rl;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { memcpy(d + o, p->rep, rl); o += rl; }
        else d[o++] = s[i];
    }
    bool cont = t->meta_cont;   // the continuation of a section prepended where it began
    t->meta_cont = false;
    bool pre = !cont && (p->prepend == PREPEND_ALWAYS || (p->prepend == PREPEND_FIRST && first));
    if (pre && !(o >= rl && memcmp(d, p->rep, rl) == 0)) {
        d -= rl;
        memcpy(d, p->rep, rl);
        o += rl;
    }
    if (p->re) pretok_regex(t, step, p, d, o, first, out);
    else pretok_run(t, step + 1, d, o, first, out);
}

static void pretok_run(struct tokenizer *t, size_t step, const char *s, size_t n, bool first,
                       struct tok_ids *out)
{
    if (step == t->n_pretok) { bpe_words(t, s, n, out); return; }
    struct pretok *p = &t->pretok[step];
    switch (p->kind) {
    case PRETOK_SPLIT: pretok_regex(t, step, p, s, n, first, out); break;
    case PRETOK_DIGITS: pretok_digits(t, step, p->individual_digits, s, n, first, out); break;
    case PRETOK_BYTELEVEL: pretok_bytelevel(t, step, p, s, n, first, out); break;
    case PRETOK_METASPACE: pretok_metaspace(t, step, p, s, n, first, out); break;
    }
}

// ---------------------------------------------------------------------------------------------
// normalization and added tokens

static char *nbuf(struct tokenizer *t, int k, size_t need)
{
    if (need + 1 > t->nbuf_cap[k]) {
        t->nbuf_cap[k] = 2 * need + 64;
        t->nbuf[k] = xrealloc(t->nbuf[k], t->nbuf_cap[k]);
    }
    return t->nbuf[k];
}

// NFC of s (valid UTF-8) into normalizer buffer k; ASCII is already NFC (s is returned).
static const char *nfc_step(struct tokenizer *t, int k, const char *s, size_t n, size_t *out_n)
{
    *out_n = n;
    if (is_ascii(s, n)) return s;
    const utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    for (;;) {
        utf8proc_ssize_t r = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n,
                                                t->nfc_buf, (utf8proc_ssize_t)t->nfc_cap, opt);
        if (r < 0) die(EX_SOFTWARE, "NFC failed: %s", utf8proc_errmsg(r));
        if ((size_t)r > t->nfc_cap) {
            t->nfc_cap = 2 * (size_t)r;
            t->nfc_buf = xrealloc(t->nfc_buf, (t->nfc_cap + 1) * sizeof *t->nfc_buf);   // +1: reencode's NUL
            continue;
        }
        r = utf8proc_reencode(t->nfc_buf, r, opt);
        if (r < 0) die(EX_SOFTWARE, "NFC failed: %s", utf8proc_errmsg(r));
        *out_n = (size_t)r;
        return memcpy(nbuf(t, k, *out_n), t->nfc_buf, *out_n);
    }
}

// Every occurrence of pat (left to right, not overlapping) replaced by rep, into buffer k.
static const char *replace_step(struct tokenizer *t, int k, const struct norm_step *st, const char *s, size_t n,
                                size_t *out_n)
{
    *out_n = n;
    const char *hit = memmem(s, n, st->pat, st->npat);
    if (!hit) return s;
    size_t count = 0;
    for (const char *q = hit; q; q = memmem(q + st->npat, n - (size_t)(q + st->npat - s), st->pat, st->npat)) count++;
    size_t len = n - count * st->npat + count * st->nrep, o = 0, i = 0;
    char *d = nbuf(t, k, len);
    for (const char *q = hit; q; q = memmem(s + i, n - i, st->pat, st->npat)) {
        size_t at = (size_t)(q - s);
        memcpy(d + o, s + i, at - i); o += at - i;
        memcpy(d + o, st->rep, st->nrep); o += st->nrep;
        i = at + st->npat;
    }
    memcpy(d + o, s + i, n - i);
    *out_n = len;
    return d;
}

// The normalizer steps over s[0..n), in the tokenizer's scratch buffers (valid until the next
// call); returns s itself when nothing changes.
static const char *normalize_scratch(struct tokenizer *t, const char *s, size_t n, size_t *out_n)
{
    bool skip_prepend = t->piece_cont;   // a continued section was prepended where it began
    int k = 0;
    for (size_t i = 0; i < t->n_norm; i++) {
        const struct norm_step *st = &t->norm[i];
        const char *r = s;
        size_t rn = n;
        switch (st->kind) {
        case NORM_NFC: r = nfc_step(t, k, s, n, &rn); break;
        case NORM_REPLACE: r = replace_step(t, k, st, s, n, &rn); break;
        case NORM_PREPEND:
            if (n == 0 || skip_prepend) break;   // prepend.rs: only to a non-empty string
            r = nbuf(t, k, st->npat + n);
            memcpy((char *)r, st->pat, st->npat);
            memcpy((char *)r + st->npat, s, n);
            rn = st->npat + n;
            break;
        }
        if (r != s) k ^= 1;
        s = r;
        n = rn;
    }
    *out_n = n;
    return s;
}

enum stage { STAGE_RAW, STAGE_NORMALIZED };

static void encode_piece(struct tokenizer *t, enum stage st, const char *s, size_t n, struct tok_ids *out);

// added_vocabulary.rs find_matches: leftmost-longest matches, single_word filter, lstrip/rstrip
// widening over whitespace; the gaps go on to the next stage.
static void added_split(struct tokenizer *t, enum stage st, const struct trie *tr, const char *s, size_t n,
                        struct tok_ids *out)
{
    size_t done = 0, i = 0;
    if (tr->n == 0 || tr->node[0].child < 0) { encode_piece(t, st, s, n, out); return; }
    while (i < n) {
        if (!tr->first[(uint8_t)s[i]]) { i++; continue; }
        int32_t k;
        size_t len = trie_longest(tr, s + i, n - i, &k);
        if (len == 0) { i++; continue; }
        const struct added_token *at = &t->added[k];
        size_t start = i, stop = i + len;
        i = stop;   // the matcher resumes after the match even when it is discarded
        if (at->single_word) {
            bool left_ok = start == 0 || !is_word_char(utf8_last(s, start));
            int32_t next = 0;
            if (stop < n) utf8_decode((const unsigned char *)s + stop, &next);
            if (!left_ok || (stop < n && is_word_char(next))) continue;
        }
        if (at->lstrip) {
            size_t ns = start;
            while (ns > done && is_white_space(utf8_last(s, ns))) {
                ns--;
                while (ns > 0 && ((unsigned char)s[ns] & 0xC0) == 0x80) ns--;
            }
            start = ns;
        }
        if (at->rstrip) {
            int32_t cp;
            size_t kk;
            while (stop < n && (kk = utf8_decode((const unsigned char *)s + stop, &cp), is_white_space(cp))) stop += kk;
            i = stop;
        }
        if (start > done) encode_piece(t, st, s + done, start - done, out);
        push(out, at->id);
        done = stop;
    }
    if (done < n) encode_piece(t, st, s + done, n - done, out);
}

static void encode_piece(struct tokenizer *t, enum stage st, const char *s, size_t n, struct tok_ids *out)
{
    if (st == STAGE_RAW) {
        size_t nn;
        t->piece_cont = t->cont && s == t->text;
        t->piece_first = s == t->text && !t->cont;
        t->meta_cont = t->piece_cont;
        const char *norm = normalize_scratch(t, s, n, &nn);
        t->piece_cont = false;
        t->norm_text = norm;
        added_split(t, STAGE_NORMALIZED, &t->trie_norm, norm, nn, out);
    } else {
        pretok_run(t, 0, s, n, t->piece_first && s == t->norm_text, out);
    }
}

int tokenizer_encode_cont(struct tokenizer *t, const char *text, size_t len, bool cont,
                          struct tok_ids *out, size_t *bad_offset)
{
    t->cont = cont;
    int r = tokenizer_encode(t, text, len, false, out, bad_offset);
    t->cont = false;
    return r;
}

bool tokenizer_is_added(const struct tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->vocab_size && t->added_of[id] >= 0;
}

int tokenizer_encode(struct tokenizer *t, const char *text, size_t len, bool add_special,
                     struct tok_ids *out, size_t *bad_offset)
{
    size_t bad_at = 0;
    if (!tokenizer_utf8_valid(text, len, &bad_at)) {
        if (bad_offset) *bad_offset = bad_at;
        return TOKENIZER_EUTF8;
    }
    if (add_special)
        for (size_t i = 0; i < t->n_prefix; i++) push(out, t->prefix[i]);
    t->text = text;
    if (len > 0) added_split(t, STAGE_RAW, &t->trie_raw, text, len, out);
    if (add_special)
        for (size_t i = 0; i < t->n_suffix; i++) push(out, t->suffix[i]);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// decode and lookups

// A list of token strings the character-level decoder steps rewrite: token i is
// buf[tok[i].off, +tok[i].len).
struct chain {
    char *buf;
    size_t len, cap;
    struct { size_t off, len; } *tok;
    size_t n, tcap;
};

static void chain_add(struct chain *c, const char *s, size_t n)   // to the last token
{
    if (c->len + n > c->cap) { c->cap = 2 * (c->len + n) + 64; c->buf = xrealloc(c->buf, c->cap); }
    if (n) memcpy(c->buf + c->len, s, n);   // (s may be NULL when n is 0: an empty chain fused)
    c->len += n;
    c->tok[c->n - 1].len += n;
}

static void chain_new(struct chain *c, const char *s, size_t n)   // a new token
{
    if (c->n == c->tcap) { c->tcap = 2 * c->tcap + 16; c->tok = xrealloc(c->tok, c->tcap * sizeof *c->tok); }
    c->tok[c->n].off = c->len;
    c->tok[c->n++].len = 0;
    chain_add(c, s, n);
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

// byte_fallback.rs: a token "<0xHH>" (6 bytes; HH as Rust's u8::from_str_radix(_, 16) reads it).
static bool byte_token(const char *s, size_t n, uint8_t *b)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return false;
    int hi = s[3] == '+' ? 0 : hex_digit(s[3]), lo = hex_digit(s[4]);
    if (hi < 0 || lo < 0) return false;
    *b = (uint8_t)(16 * hi + lo);
    return true;
}

// Appends s with every pat replaced by rep as a new token.
static void chain_replace(struct chain *out, const char *s, size_t n, const char *pat, size_t np, const char *rep,
                          size_t nr)
{
    chain_new(out, "", 0);
    size_t i = 0;
    for (const char *q; (q = memmem(s + i, n - i, pat, np)) != NULL; i = (size_t)(q - s) + np) {
        chain_add(out, s + i, (size_t)(q - s) - i);
        chain_add(out, rep, nr);
    }
    chain_add(out, s + i, n - i);
}

// ByteFallback: runs of byte tokens become their text when it is valid UTF-8, else one U+FFFD
// per byte (String::from_utf8 failing in byte_fallback.rs).
static void flush_bytes(struct chain *out, const char *bytes, size_t nb)
{
    if (nb == 0) return;
    if (tokenizer_utf8_valid(bytes, nb, NULL)) { chain_new(out, bytes, nb); return; }
    for (size_t i = 0; i < nb; i++) chain_new(out, "\xEF\xBF\xBD", 3);
}

static void dec_apply(const struct dec_step *st, const struct chain *in, struct chain *out)
{
    out->len = out->n = 0;
    char *bytes = NULL;
    size_t nb = 0;
    if (st->kind == DEC_FUSE) chain_new(out, in->buf, in->len);
    if (st->kind == DEC_BYTEFALLBACK) bytes = xmalloc(in->n + 1);
    for (size_t i = 0; i < in->n && st->kind != DEC_FUSE; i++) {
        const char *s = in->buf + in->tok[i].off;
        size_t n = in->tok[i].len;
        uint8_t b;
        switch (st->kind) {
        case DEC_REPLACE: chain_replace(out, s, n, st->pat, st->npat, st->rep, st->nrep); break;
        case DEC_METASPACE:
            chain_replace(out, s, n, st->pat, st->npat, " ", i == 0 && st->strip_first ? 0 : 1);
            break;
        case DEC_BYTEFALLBACK:
            if (byte_token(s, n, &b)) { bytes[nb++] = (char)b; break; }
            flush_bytes(out, bytes, nb);
            nb = 0;
            chain_new(out, s, n);
            break;
        case DEC_STRIP: {
            size_t a = 0, e = n, np = st->npat;
            for (size_t k = 0; k < st->start && a + np <= n && memcmp(s + a, st->pat, np) == 0; k++) a += np;
            for (size_t k = 0; k < st->stop && e >= np && memcmp(s + e - np, st->pat, np) == 0; k++) e -= np;
            chain_new(out, s + a, e > a ? e - a : 0);
            break;
        }
        case DEC_FUSE: break;
        }
    }
    flush_bytes(out, bytes, nb);
    free(bytes);
}

// Character-level decoding: the token strings through the decoder steps, then concatenated.
static char *decode_chars(const struct tokenizer *t, const int32_t *ids, size_t n, bool skip_special, size_t *len)
{
    struct chain c[2] = { { 0 }, { 0 } };
    for (size_t i = 0; i < n; i++) {
        const char *s = tokenizer_token_str(t, ids[i]);
        if (!s || (skip_special && tokenizer_is_special(t, ids[i]))) continue;
        size_t sl = t->added_of[ids[i]] >= 0 ? t->added[t->added_of[ids[i]]].len : t->str[ids[i]].len;
        chain_new(&c[0], s, sl);
    }
    int k = 0;
    for (size_t i = 0; i < t->n_dec; i++, k ^= 1) dec_apply(&t->dec_step[i], &c[k], &c[k ^ 1]);
    char *res = utf8_lossy(c[k].buf ? c[k].buf : "", c[k].len, len);
    free(c[0].buf); free(c[0].tok); free(c[1].buf); free(c[1].tok);
    return res;
}

char *tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
                       size_t *len)
{
    if (!t->bytelevel) return decode_chars(t, ids, n, skip_special, len);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->vocab_size && t->dec[ids[i]].len != UINT32_MAX) total += t->dec[ids[i]].len;
    char *buf = xmalloc(total + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->vocab_size || t->dec[id].len == UINT32_MAX) continue;
        if (skip_special && tokenizer_is_special(t, id)) continue;
        memcpy(buf + o, t->pool + t->dec[id].off, t->dec[id].len);
        o += t->dec[id].len;
    }
    char *res = utf8_lossy(buf, o, len);
    free(buf);
    return res;
}

int32_t tokenizer_vocab_size(const struct tokenizer *t) { return t->vocab_size; }

int32_t tokenizer_token_id(const struct tokenizer *t, const char *token)
{
    size_t n = strlen(token);
    for (size_t i = t->n_added; i-- > 0;)
        if (t->added[i].len == n && memcmp(t->added[i].content, token, n) == 0) return t->added[i].id;
    return strmap_find(&t->by_str, t->str, t->pool, token, n);
}

const char *tokenizer_token_str(const struct tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->vocab_size) return NULL;
    if (t->added_of[id] >= 0) return t->added[t->added_of[id]].content;
    return t->str[id].len == UINT32_MAX ? NULL : t->pool + t->str[id].off;
}

bool tokenizer_is_special(const struct tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->vocab_size && t->added_of[id] >= 0 && t->added[t->added_of[id]].special;
}

int32_t tokenizer_eos_id(const struct tokenizer *t) { return t->eos_id; }
int32_t tokenizer_bos_id(const struct tokenizer *t) { return t->bos_id; }
bool tokenizer_add_eos(const struct tokenizer *t) { return t->add_eos; }
const char *tokenizer_chat_template(const struct tokenizer *t) { return t->chat_template; }
const char *tokenizer_hash_hex(const struct tokenizer *t) { return t->hash_hex; }
const char *tokenizer_path(const struct tokenizer *t) { return t->path; }

size_t tokenizer_eos_ids(const struct tokenizer *t, int32_t out[TOKENIZER_MAX_EOS])
{
    memcpy(out, t->eos_ids, t->n_eos * sizeof *out);
    return t->n_eos;
}

size_t tokenizer_special_prefix(const struct tokenizer *t, const int32_t **ids)
{
    *ids = t->prefix;
    return t->n_prefix;
}

size_t tokenizer_special_suffix(const struct tokenizer *t, const int32_t **ids)
{
    *ids = t->suffix;
    return t->n_suffix;
}
