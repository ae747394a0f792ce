// fuzz-tokload.c — loading a tokenizer.json (common/tokenizer.c) from mutated files.
//
// Input: tokenizer.json, optionally followed by a NUL byte and a tokenizer_config.json. Both are
// written to a private directory and loaded with tokenizer_new(dir). A tokenizer that loads
// must encode and decode a few fixed texts with every id inside its vocabulary.
// Expected outcomes: return, or exit 65/66 (trapped; 64..74 accepted). Anything else is a crash.
#include "common.h"
#include "tokenizer.h"
#include "trap.h"

static char dir[128], tok_path[160], cfg_path[160];

static const char *const texts[] = {
    "Hello world! 123 + 4567 = 4690", "<|im_start|>user\nhi<|im_end|>", " \t\n\n  x  ",
    "\xc3\xa9t\xc3\xa9 \xf0\x9f\x92\xa1 \xe4\xb8\xad\xe6\x96\x87", "e\xcc\x81", "",
};

static void run(void *arg)
{
    struct tokenizer *t = tokenizer_new(dir);
    int32_t V = tokenizer_vocab_size(t);
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        for (int sp = 0; sp < 2; sp++) {
            struct tok_ids ids = {0};
            size_t bad = 0;
            if (tokenizer_encode(t, texts[i], strlen(texts[i]), sp, &ids, &bad) == 0)
                for (size_t k = 0; k < ids.n; k++)
                    if (ids.v[k] < 0 || ids.v[k] >= V) FUZZ_FAIL("id %d outside vocabulary %d", ids.v[k], V);
            free(tokenizer_decode(t, ids.v, ids.n, sp, NULL));
            tok_ids_free(&ids);
        }
    for (int32_t id = -1; id <= V && id < 300; id++) (void)tokenizer_token_str(t, id);
    (void)tokenizer_chat_template(t);
    tokenizer_delete(t);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    trap_init("fuzz-tokload");
    snprintf(dir, sizeof dir, "%s", fuzz_tmpdir());
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    fuzz_write_file(tok_path, data, n);
    unlink(cfg_path);
    if (nul) fuzz_write_file(cfg_path, nul + 1, size - n - 1);
    trap_check(trap_run(run, NULL), "tokenizer load");
    return 0;
}
