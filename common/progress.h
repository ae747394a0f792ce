// progress.h — progress reports on stderr for the long-running tools (rollout, teacher-logits,
// tokenize, evaluate): how much is done, how fast, and how long is left.
//
// On a terminal (stderr a tty) one self-updating line, redrawn at most 4 times a second (or every
// --progress-every when that is shorter):
//     rollout: 120/512 prompts (23%)  23.4 prompts/s  4820 tok/s  elapsed 0:05  eta 0:17
// (without a known total: "rollout: 120 prompts  23.4 prompts/s ..."). Anywhere else (a log file,
// a scheduler's output) a plain line every progress_every seconds (--progress-every; 0: at every
// update), so a log shows the run's pace without a line per record. Nothing at all below
// LOG_LEVEL_INFO (-q). progress_end() clears the live line, so the tool's closing summary stands
// alone. Counts are the tool's own: records or prompts done, and tokens for the token rate
// (0 leaves the rate out).
#ifndef SRLM_PROGRESS_H
#define SRLM_PROGRESS_H

#include <stdbool.h>

extern double progress_every;   // seconds between plain lines (default 30)

struct progress {
    const char *unit;           // "prompts", "records"
    long long total;            // -1: unknown
    long long done, tokens;
    double t0, last;            // start, time of the last line
    bool tty, on, drawn;        // stderr a terminal; reporting at all; a live line is showing
};

void progress_init(struct progress *p, const char *unit, long long total);
// Adds n done (and tokens) and reports when it is time to.
void progress_add(struct progress *p, long long n, long long tokens);
void progress_end(struct progress *p);
// --progress-every SECS (0 to 86400; exit 64 otherwise).
void progress_parse_every(const char *arg);
// The option's line for a tool's --help.
#define PROGRESS_USAGE "  --progress-every S   seconds between progress lines when stderr is not a terminal\n" \
                       "                       (default 30; 0: every update; -q: none)\n"
// "h:mm:ss" or "m:ss" of a duration in seconds, into buf (at least 32 bytes).
const char *progress_clock(double seconds, char *buf);

#endif
