// tokenizer.h — BPE, token for token what Hugging Face `tokenizers` produces from the same
// tokenizer.json: byte-level (Qwen2.5, Qwen3, Llama-3, SmolLM, GPT-2 style) and SentencePiece-style
// character-level with byte fallback (Gemma 3, Llama 2, Mistral, TinyLlama, Phi-3). docs/tokenizer.md.
//
// Contract:
// - tokenizer_new(path) loads a tokenizer.json, or a model directory holding one. Beside it,
//   tokenizer_config.json (chat_template, eos_token, bos_token, add_bos_token, add_eos_token),
//   chat_template.jinja and generation_config.json (eos_token_id) are read when present.
//   A missing tokenizer.json exits 66. Anything srlm cannot reproduce exactly exits 65 with
//   "<path>: <reason>": corrupt JSON, a model other than BPE, BPE dropout, a normalizer other
//   than NFC / Prepend / Replace(String) (alone or in a Sequence), a pre-tokenizer other than
//   Split(Regex|String; Isolated, Removed, MergedWithPrevious, MergedWithNext) / Digits /
//   ByteLevel (last) / Metaspace, a decoder other than ByteLevel (byte-level) or Replace(String) /
//   ByteFallback / Fuse / Strip / Metaspace (character-level), no decoder, a post-processor other
//   than ByteLevel / TemplateProcessing, merges naming tokens that are not in the vocabulary,
//   missing or mistyped fields. It never guesses.
// - A tokenizer is byte-level when its pre-tokenizer or decoder holds ByteLevel (BPE on bytes,
//   vocabulary strings in GPT-2's byte alphabet; byte_fallback is refused there), else
//   character-level (BPE on characters, vocabulary strings as they are; an unknown character
//   becomes its <0xXX> byte tokens with byte_fallback, else unk, fused with fuse_unk).
// - Encoding follows HF's pipeline: added tokens are matched in the raw text first (leftmost-
//   longest, honouring lstrip / rstrip / single_word; tokens with normalized=true are matched in
//   the normalized text), each remaining section is normalized, pre-tokenized (Metaspace's
//   prepend_scheme "first" prepends only to the section at offset 0), and merged by BPE rank
//   (ignore_merges honoured). add_special applies the TemplateProcessing post-processor (the BOS
//   of Llama-3, Llama-2, Gemma); HF's add_special_tokens=True.
// - Input text must be valid UTF-8: tokenizer_encode returns TOKENIZER_EUTF8 and the byte offset
//   of the first bad byte instead of encoding it. Embedded NUL bytes are ordinary characters.
// - A struct tokenizer is not thread-safe: encoding uses scratch buffers and a per-pretoken cache
//   that live inside it. Use one tokenizer per thread.
// - Decoding maps ids to their token strings (added tokens included, unless skip_special drops
//   the special ones) and runs the decoder as HF's Rust decoders do: ByteLevel with invalid UTF-8
//   replaced by U+FFFD (String::from_utf8_lossy); or the character-level steps in order (a run of
//   byte tokens that is not valid UTF-8 gives one U+FFFD per byte; the Metaspace decoder drops
//   every replacement character of the first token). Ids outside the vocabulary are skipped, as
//   HF does.
// - Returned strings from tokenizer_token_str / tokenizer_chat_template / tokenizer_hash_hex are
//   BORROWED: valid until tokenizer_delete.
#ifndef SRLM_TOKENIZER_H
#define SRLM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOKENIZER_EUTF8 (-1)    // tokenizer_encode: the text is not valid UTF-8
#define TOKENIZER_MAX_EOS 8

struct tokenizer;

// A growable id vector the encoder appends to. Zero-initialise it; free with tok_ids_free.
struct tok_ids {
    int32_t *v;
    size_t n, cap;
};
void tok_ids_push(struct tok_ids *ids, int32_t id);
void tok_ids_free(struct tok_ids *ids);

struct tokenizer *tokenizer_new(const char *path);
void tokenizer_delete(struct tokenizer *t);

// Appends the ids of text[0..len) to out. Returns 0, or TOKENIZER_EUTF8 with *bad_offset set to
// the offset of the first invalid byte (out is then left as it was).
int tokenizer_encode(struct tokenizer *t, const char *text, size_t len, bool add_special,
                     struct tok_ids *out, size_t *bad_offset);
// The same for text that continues the text encoded before it in one string (cont true): its
// start is not the start of a section, so neither the Prepend normalizer nor Metaspace prepends
// "▁" there, and ByteLevel's add_prefix_space and prepend_scheme "first" do not apply, as when HF
// encodes the two as one string. (Merges across the boundary are still not made: the boundary
// stays a token boundary.) cont false is tokenizer_encode without specials.
int tokenizer_encode_cont(struct tokenizer *t, const char *text, size_t len, bool cont,
                          struct tok_ids *out, size_t *bad_offset);
// Whether id is one of the tokenizer's added tokens (which split the text into sections).
bool tokenizer_is_added(const struct tokenizer *t, int32_t id);

// The special tokens the post-processor puts before / after a sequence (TemplateProcessing
// "single"; Llama-3, Llama-2, Gemma: BOS before, nothing after). Returns the count; *ids is borrowed.
size_t tokenizer_special_prefix(const struct tokenizer *t, const int32_t **ids);
size_t tokenizer_special_suffix(const struct tokenizer *t, const int32_t **ids);

// Decodes ids to text (malloc'ed, NUL-terminated, caller frees); *len gets its length if non-NULL.
char *tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
                       size_t *len);

// Vocabulary: max id + 1 over the model vocabulary and the added tokens.
int32_t tokenizer_vocab_size(const struct tokenizer *t);
// Id of a token given as it is written in tokenizer.json ("<|im_end|>", "Ġthe"); -1 if none.
int32_t tokenizer_token_id(const struct tokenizer *t, const char *token);
// The token's string as written in tokenizer.json, or NULL for an unused id.
const char *tokenizer_token_str(const struct tokenizer *t, int32_t id);
bool tokenizer_is_special(const struct tokenizer *t, int32_t id);

// Special ids from the configs; -1 when not defined. eos_ids lists the config's eos_token first,
// then any other generation_config.json eos_token_id; returns the count.
int32_t tokenizer_eos_id(const struct tokenizer *t);
int32_t tokenizer_bos_id(const struct tokenizer *t);
size_t tokenizer_eos_ids(const struct tokenizer *t, int32_t out[TOKENIZER_MAX_EOS]);
// tokenizer_config.json add_eos_token (false when absent).
bool tokenizer_add_eos(const struct tokenizer *t);

// The chat template string from tokenizer_config.json or chat_template.jinja; NULL if none.
const char *tokenizer_chat_template(const struct tokenizer *t);
// Provenance: xxh3-64 of the tokenizer.json bytes, as 16 hex digits.
const char *tokenizer_hash_hex(const struct tokenizer *t);
const char *tokenizer_path(const struct tokenizer *t);   // the tokenizer.json path used

// UTF-8 helpers shared with the chat renderer and tests.
// Returns true if s[0..n) is valid UTF-8 (no overlongs, surrogates or values > U+10FFFF);
// otherwise sets *bad to the offset of the first invalid byte.
bool tokenizer_utf8_valid(const char *s, size_t n, size_t *bad);

#endif
