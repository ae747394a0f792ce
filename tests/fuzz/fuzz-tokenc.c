// fuzz-tokenc.c — encoding arbitrary bytes with real tokenizers (tests/data/tok-tiny, a
// byte-level BPE with NFC and Qwen-style added tokens, and examples/arith, a Sequence of
// Split/Digits/ByteLevel pre-tokenizers). SRLM_FUZZ_TOKENIZERS (colon-separated) overrides.
//
// Properties: encode either refuses invalid UTF-8 with the offset of a really invalid byte
// (checked against tokenizer_utf8_valid) or returns ids inside the vocabulary; encoding is
// deterministic (twice the same ids, the per-pretoken cache notwithstanding); decoding those ids
// gives back the input when it is printable ASCII (NFC cannot change it) and the tokenizer has a
// token for every printable ASCII character (tok-tiny does not: it drops what it cannot spell).
#include "common.h"
#include "tokenizer.h"
#include "trap.h"

#define MAXTOK 4
static struct tokenizer *toks[MAXTOK];
static int ntok;
static bool covers_ascii[MAXTOK];   // every printable ASCII character has a token

static bool roundtrips(struct tokenizer *t, const char *s, size_t n)
{
    struct tok_ids ids = {0};
    size_t bad, len = 0;
    bool ok = tokenizer_encode(t, s, n, false, &ids, &bad) == 0;
    char *back = ok ? tokenizer_decode(t, ids.v, ids.n, false, &len) : NULL;
    ok = ok && len == n && memcmp(back, s, n) == 0;
    free(back);
    tok_ids_free(&ids);
    return ok;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    trap_init("fuzz-tokenc");
    const char *env = getenv("SRLM_FUZZ_TOKENIZERS");
    char *list = strdup(env ? env : "tests/data/tok-tiny:examples/arith");
    for (char *s = strtok(list, ":"); s && ntok < MAXTOK; s = strtok(NULL, ":"))
    {
        toks[ntok] = tokenizer_new(s);     // outside trap_run: a bad path ends the run (66)
        covers_ascii[ntok] = true;
        for (char c = 0x20; c < 0x7f; c++) covers_ascii[ntok] &= roundtrips(toks[ntok], &c, 1);
        ntok++;
    }
    free(list);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    size_t bad_ref = 0;
    bool valid = tokenizer_utf8_valid(s, size, &bad_ref);
    bool ascii = true;
    for (size_t i = 0; i < size; i++) ascii &= data[i] >= 0x20 && data[i] < 0x7f;
    for (int k = 0; k < ntok; k++) {
        int32_t V = tokenizer_vocab_size(toks[k]);
        for (int sp = 0; sp < 2; sp++) {
            struct tok_ids a = {0}, b = {0};
            size_t bad = 0;
            int rc = tokenizer_encode(toks[k], s, size, sp, &a, &bad);
            if (rc == TOKENIZER_EUTF8) {
                if (valid) FUZZ_FAIL("valid UTF-8 refused at offset %zu", bad);
                if (bad != bad_ref) FUZZ_FAIL("bad offset %zu, utf8_valid says %zu", bad, bad_ref);
                if (a.n) FUZZ_FAIL("ids appended to a refused text");
                continue;
            }
            if (rc != 0) FUZZ_FAIL("tokenizer_encode returned %d", rc);
            if (!valid) FUZZ_FAIL("invalid UTF-8 (offset %zu) encoded", bad_ref);
            for (size_t i = 0; i < a.n; i++)
                if (a.v[i] < 0 || a.v[i] >= V) FUZZ_FAIL("id %d outside vocabulary %d", a.v[i], V);
            if (tokenizer_encode(toks[k], s, size, sp, &b, &bad) != 0 || a.n != b.n ||
                (a.n && memcmp(a.v, b.v, a.n * sizeof *a.v) != 0))
                FUZZ_FAIL("encoding the same text twice gave different ids");
            if (ascii && !sp && covers_ascii[k]) {
                size_t len = 0;
                char *back = tokenizer_decode(toks[k], a.v, a.n, false, &len);
                if (len != size || memcmp(back, s, size) != 0)
                    FUZZ_FAIL("decode(encode(x)) != x for printable ASCII x (tokenizer %d)", k);
                free(back);
            }
            tok_ids_free(&a);
            tok_ids_free(&b);
        }
    }
    return 0;
}
