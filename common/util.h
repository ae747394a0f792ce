// util.h — process-wide helpers every tool and test links: the tool's name, diagnostics with
// sysexits.h exit codes, checked allocation, strict number parsing, and the clean exit path.
//
// Contract:
// - tool_init(argv[0]) is the first call of every tool's main(): it sets the name used to prefix
//   every message, restores the default SIGPIPE (a closed pipe downstream ends the tool quietly
//   with status 141), and refuses to run on a big-endian host (streams are little-endian).
// - die(code, fmt, ...) prints "<tool>: <message>" on stderr and exits with code. A format ending
//   in ':' appends ": strerror(errno)". Use it for bad data and environment errors, never for bugs.
// - ASSERT(cond) is for bugs only: always compiled in, prints file:line and aborts.
// - xmalloc/xcalloc/xrealloc never return NULL: they exit 71 naming the size and call site.
// - parse_int/parse_float/parse_size refuse garbage and out-of-range values with exit 64.
// - tool_exit(code) flushes and closes stdout, turning a late write error into exit 74; every tool
//   ends through it (or through die()).
#ifndef SRLM_UTIL_H
#define SRLM_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sysexits.h>

extern const char *progname;   // tool name, set by tool_init

enum log_level { LOG_LEVEL_QUIET = 0, LOG_LEVEL_WARN = 1, LOG_LEVEL_INFO = 2, LOG_LEVEL_DEBUG = 3 };
extern int log_level;          // default LOG_LEVEL_INFO; -q lowers, -v raises

void tool_init(const char *argv0);

// Hooks for a tool run as one rank of several (dist.h sets them; NULL otherwise).
// util_fatal_hook(code, message) replaces die()'s and usage_error()'s report and exit;
// util_exit_hook() runs in tool_exit() before the process exits; log_mute silences log_* and
// progress lines.
extern void (*util_fatal_hook)(int code, const char *msg);
extern void (*util_exit_hook)(void);
extern int log_mute;
_Noreturn void tool_exit(int code);
_Noreturn void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Usage errors: prints the message and the "Try '<tool> --help'" hint, exits 64.
_Noreturn void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

_Noreturn void assert_fail(const char *file, int line, const char *cond);
#define ASSERT(c) ((c) ? (void)0 : assert_fail(__FILE__, __LINE__, #c))

void *xmalloc_at(size_t n, const char *file, int line);
void *xcalloc_at(size_t n, size_t size, const char *file, int line);
void *xrealloc_at(void *p, size_t n, const char *file, int line);
char *xstrdup_at(const char *s, const char *file, int line);
#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(n, s) xcalloc_at((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) xrealloc_at((p), (n), __FILE__, __LINE__)
#define xstrdup(s) xstrdup_at((s), __FILE__, __LINE__)
// Multiplies two sizes, dying with exit 65 (what = the field that asked) on overflow.
size_t mul_size(size_t a, size_t b, const char *what);

// Strict parsers for option values: the whole string must be a number in [min, max], else exit 64
// with "<tool>: <opt>: invalid number \"...\"" or "... out of range [min, max]".
long long parse_int(const char *s, long long min, long long max, const char *opt);
double parse_float(const char *s, double min, double max, const char *opt);
// Like parse_int, with an optional K/M/G suffix (powers of 1024).
size_t parse_size(const char *s, size_t min, size_t max, const char *opt);

// Monotonic seconds, for throughput figures.
double now_seconds(void);

// xxh3-64 of a whole file, or exits 66 naming it. Hex form is 16 lowercase digits + NUL.
uint64_t hash_file(const char *path);
void hash_hex(uint64_t h, char out[17]);

// Opens a tool's input operand: NULL or "-" is stdin (named "<stdin>"), else the file (exit 66 if
// it cannot be opened). *name receives the name for messages; close with close_input().
FILE *open_input(const char *path, const char **name);
void close_input(FILE *fp);

// Reads a whole file into a NUL-terminated buffer (caller frees); exits 66 if it cannot.
char *read_file(const char *path, size_t *len);
// Writes v as one CSV field (RFC 4180): quoted, with doubled quotes, when it holds a comma, a
// quote or a line end (to-json --csv, evaluate --csv).
void csv_field(FILE *f, const char *v);
// "dir/name" in a new buffer (caller frees).
char *path_join(const char *dir, const char *name);
// mkdir -p dir, as save_pretrained's os.makedirs(exist_ok=True); exit 73 naming the part that
// could not be created or is not a directory.
void make_dirs(const char *dir);

// ---------------------------------------------------------------------------------------------
// Input operands and CPU count (issue 15: one FILE operand everywhere; threads by default).

// A tool's input operand, as cat takes it: NULL or "-" is stdin (named "<stdin>"), else the file.
// Exits 66 when it cannot be opened ("open NAME: No such file or directory") or is a directory
// ("open NAME: Is a directory"; stdin too, as `tool < dir`). *name receives the name for messages;
// close with close_input().
FILE *open_input_path(const char *path, const char **name);
// The same for a tool that reads one input stream: its operands are argv[first..argc-1] (first is
// getopt's optind after the options). None or "-" is stdin; more than one is a usage error (64,
// "too many operands (one input file at most)").
FILE *open_input_operand(int argc, char **argv, int first, const char **name);

// The CPUs this process may use: the CPUs in its affinity mask (sched_getaffinity: taskset,
// cpusets), capped by the CPU quota of its cgroup (see cgroup_cpu_limit). At least 1.
int cpus_available(void);
// The CPU quota of a cgroup as a CPU count: the smallest ceil(quota / period) over the cgroup
// and its ancestors, from cgroup v2's cpu.max ("quota period", "max" = none) or cgroup v1's
// cpu.cfs_quota_us / cpu.cfs_period_us (-1 = none). self_cgroup is the text of
// /proc/self/cgroup, mountinfo that of /proc/self/mountinfo (where the hierarchies are
// mounted, so tests can point them at a directory of their own). 0 when no quota is set.
int cgroup_cpu_limit(const char *mountinfo, const char *self_cgroup);

#endif
