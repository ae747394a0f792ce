// arith.h — the embedded task: seeded multi-step arithmetic word problems in GSM8K's format
// (docs/task.md). Small enough for a tiny model trained from scratch on two CPU cores to learn,
// while every problem still needs several dependent arithmetic steps.
//
// A problem is an opening sentence and K operation sentences about one person's items, then a
// question:
//   "Tom has 7 apples. He buys 5 more. He gives 3 to Ann. He buys 2 bags with 4 apples in each.
//    How many apples does Tom have now?"
// Its solution is one equation per line and GSM8K's final line, so `score --task gsm8k` judges it:
//   "7 + 5 = 12\n12 - 3 = 9\n2 * 4 = 8\n9 + 8 = 17\n#### 17"
// Operations, drawn among those valid for the current value with weights 3:3:2:1:1: add, subtract,
// buy groups (a product, then a sum: two lines), double/triple, split into 2-5 equal piles (exact
// division leaving at least 2). The running value stays in [1, max_value]; amounts added, taken
// or per group are at most max_operand; group counts are 2-5.
//
// Determinism. Every random choice is rng_uniform(rng_key(seed, index, attempt, draw)): the
// problem at position `index` of a split depends only on the seed, the options and the problems
// before it (through de-duplication), so `--n 100` is a prefix of `--n 1000`.
//
// Splits. A problem belongs to the test split when bit 0 of xxh3(question) is 1, else to train.
// arith_gen_next() rejects candidates of the other split, so train and test sets can never share
// a question, whatever the seeds and options of each. Within one generator, repeated questions
// are rejected too (a 64-bit hash set).
//
// Ownership: struct arith_gen owns its hash set (arith_gen_free). Problems are plain values.
#ifndef SRLM_ARITH_H
#define SRLM_ARITH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARITH_MAX_STEPS 16
#define ARITH_TEXT_CAP 2048

enum arith_split { ARITH_TRAIN = 0, ARITH_TEST = 1 };

struct arith_options {
    uint64_t seed;
    int min_steps, max_steps;   // operation sentences per problem, 1 <= min <= max <= ARITH_MAX_STEPS
    int max_operand;            // added/subtracted amounts and group sizes in [1 or 2, max_operand]
    int max_value;              // every intermediate value lies in [1, max_value]
};

struct arith_problem {
    char question[ARITH_TEXT_CAP];
    char solution[ARITH_TEXT_CAP];   // equation lines, then "#### <answer>"
    long answer;
    int steps;                       // operation sentences
    uint64_t hash;                   // xxh3-64 of the question
};

struct arith_gen {
    struct arith_options opt;
    enum arith_split split;
    uint64_t index;            // problems produced so far
    uint64_t *seen;            // open-addressing set of question hashes (0 = empty slot)
    size_t seen_cap, seen_n;
};

// Checks the options; returns NULL, or a message naming the problem.
const char *arith_options_check(const struct arith_options *o);
// The split a question belongs to.
enum arith_split arith_split_of(const char *question);
// One candidate problem for (index, attempt), whatever its split.
void arith_generate(const struct arith_options *o, uint64_t index, uint64_t attempt, struct arith_problem *p);

void arith_gen_init(struct arith_gen *g, const struct arith_options *o, enum arith_split split);
// The next problem of the split. Returns false when 10000 candidates in a row were rejected (the
// options allow too few distinct problems for the number asked).
bool arith_gen_next(struct arith_gen *g, struct arith_problem *p);
void arith_gen_free(struct arith_gen *g);

// ---------------------------------------------------------------------------------------------
// output records (docs/task.md). The same formats serve the generated task and converted GSM8K.

enum arith_format {
    ARITH_FORMAT_QA,       // {id, question, answer}: GSM8K's own shape
    ARITH_FORMAT_PROMPT,   // {id, prompt: "Q: <question>\nA:", completion: " <answer>", answer}
    ARITH_FORMAT_CHAT,     // {id, messages: [user: <question>\n<ARITH_INSTRUCTION>, assistant: <answer>], answer}
};
#define ARITH_INSTRUCTION "Please reason step by step, and put your final answer after ####."
// Parses "qa", "prompt", "chat"; returns false for anything else.
bool arith_format_parse(const char *s, enum arith_format *out);
// A new JSON object (jansson; the caller json_decref()s it) for one problem. answer is the full
// solution ending "#### N". The strings must be valid UTF-8 (NULL is returned otherwise).
json_t *arith_record(enum arith_format f, const char *id, const char *question, const char *answer);
// Removes GSM8K's calculator annotations "<<48/2=24>>" in place.
void arith_strip_calc(char *s);

#endif
