// bpetrain.h — learns a byte-level BPE vocabulary from text and writes it as a Hugging Face
// tokenizer directory (tokenizer.json + tokenizer_config.json) that srlm's tokenizer
// (common/tokenizer.h) and HF `tokenizers` both load and encode identically (docs/task.md).
//
// The tokenizer written is Qwen2-shaped: NFC normalizer; a Split pre-tokenizer with Qwen2's regex
// (letters in runs, every digit on its own, punctuation runs, whitespace) followed by ByteLevel;
// ByteLevel post-processor and decoder; a BPE model whose first 256 ids are the byte alphabet in
// GPT-2's bytes_to_unicode order; one special added token, the EOS, after the merges. Single
// digits keep arithmetic learnable: a number is always its digits, never a learnt chunk.
//
// Training is classic BPE (Sennrich et al. 2016, as HF's BpeTrainer): the text is pre-tokenized
// with the same regex, words are counted, and each round merges the most frequent adjacent pair
// of symbols over all words (weighted by count). Ties go to the pair whose merged bytes sort first,
// then to the shorter left part, so the result depends only on the multiset of words. Training
// stops at the requested number of merges or when no pair occurs min_count times.
//
// Ownership: the trainer owns every word and merge; bpe_trainer_delete() frees them.
// bpe_trainer_save() replaces each file atomically (temp file, fsync, rename): exit 73 when the
// directory or a file cannot be created, 74 on a write error.
#ifndef SRLM_BPETRAIN_H
#define SRLM_BPETRAIN_H

#include <stddef.h>

struct bpe_trainer;

struct bpe_trainer *bpe_trainer_new(void);
void bpe_trainer_delete(struct bpe_trainer *t);
// Adds text (UTF-8) to the training counts.
void bpe_trainer_add(struct bpe_trainer *t, const char *text, size_t len);
// Learns up to nmerges merges (call once, after every bpe_trainer_add); returns how many it
// learnt. Two merges may spell the same token (HF's trainer reuses the id then, and so does this).
int bpe_trainer_train(struct bpe_trainer *t, int nmerges, long min_count);
// Vocabulary size of the trained tokenizer: 256 bytes + distinct merged tokens + the EOS.
int bpe_trainer_vocab_size(const struct bpe_trainer *t);
// Writes dir/tokenizer.json and dir/tokenizer_config.json (dir is created if missing). The EOS
// token (e.g. "<|endoftext|>") gets the id after the last merge; max_len goes to
// tokenizer_config.json's model_max_length.
void bpe_trainer_save(const struct bpe_trainer *t, const char *dir, const char *eos, int max_len);

#endif
