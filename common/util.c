// util.c — see util.h for the contract.
#include "util.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>

const char *progname = "srlm";
int log_level = LOG_LEVEL_INFO;

void tool_init(const char *argv0)
{
    const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
    progname = slash ? slash + 1 : (argv0 && *argv0 ? argv0 : "srlm");
    // An ignored SIGPIPE is inherited across exec; restore the default so that `tool | head`
    // ends quietly (status 141) instead of reporting EPIPE as an I/O error.
    signal(SIGPIPE, SIG_DFL);
    const uint16_t one = 1;
    if (*(const uint8_t *)&one != 1)
        die(EX_SOFTWARE, "this build needs a little-endian host (streams and safetensors are little-endian)");
}

static void vmessage(const char *prefix, const char *fmt, va_list ap)
{
    int saved = errno;
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    if (n > 0 && buf[n - 1] == ':')
        fprintf(stderr, "%s: %s%s %s\n", progname, prefix, buf, strerror(saved));
    else
        fprintf(stderr, "%s: %s%s\n", progname, prefix, buf);
}

void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
    // Data already written is flushed so a downstream consumer sees whole records, then the
    // missing end record tells it the stream is incomplete.
    fflush(stdout);
    exit(code);
}

void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", progname);
    exit(EX_USAGE);
}

void log_warn(const char *fmt, ...)
{
    if (log_level < LOG_LEVEL_WARN) return;
    va_list ap;
    va_start(ap, fmt);
    vmessage("warning: ", fmt, ap);
    va_end(ap);
}

void log_info(const char *fmt, ...)
{
    if (log_level < LOG_LEVEL_INFO) return;
    va_list ap;
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
}

void log_debug(const char *fmt, ...)
{
    if (log_level < LOG_LEVEL_DEBUG) return;
    va_list ap;
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
}

void assert_fail(const char *file, int line, const char *cond)
{
    fprintf(stderr, "%s: %s:%d: assertion failed: %s\n", progname, file, line, cond);
    abort();
}

void tool_exit(int code)
{
    // stdio errors are sticky and may only surface at flush (a full disk, a closed file).
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno;
        fclose(stdout);
        errno = e;
        die(EX_IOERR, "write <stdout>:");
    }
    if (fclose(stdout) != 0) die(EX_IOERR, "write <stdout>:");
    exit(code);
}

// ---------------------------------------------------------------------------------------------
// allocation

static _Noreturn void oom(size_t n, const char *file, int line)
{
    die(EX_OSERR, "out of memory allocating %zu bytes at %s:%d", n, file, line);
}

void *xmalloc_at(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n, file, line);
    return p;
}

void *xcalloc_at(size_t n, size_t size, const char *file, int line)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size, file, line);
    return p;
}

void *xrealloc_at(void *p, size_t n, const char *file, int line)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n, file, line);
    return q;
}

char *xstrdup_at(const char *s, const char *file, int line)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc_at(n, file, line);
    memcpy(p, s, n);
    return p;
}

size_t mul_size(size_t a, size_t b, const char *what)
{
    if (b != 0 && a > SIZE_MAX / b) die(EX_DATAERR, "%s: size %zu x %zu overflows", what, a, b);
    return a * b;
}

// ---------------------------------------------------------------------------------------------
// numbers

long long parse_int(const char *s, long long min, long long max, const char *opt)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || errno == EINVAL)
        usage_error("%s: invalid number \"%s\"", opt, s);
    if (errno == ERANGE || v < min || v > max)
        usage_error("%s: %s out of range [%lld, %lld]", opt, s, min, max);
    return v;
}

double parse_float(const char *s, double min, double max, const char *opt)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (s[0] == '\0' || *end != '\0' || isnan(v))
        usage_error("%s: invalid number \"%s\"", opt, s);
    if (errno == ERANGE || !(v >= min && v <= max))
        usage_error("%s: %s out of range [%g, %g]", opt, s, min, max);
    return v;
}

size_t parse_size(const char *s, size_t min, size_t max, const char *opt)
{
    char *end;
    errno = 0;
    if (s[0] == '-' || s[0] == '\0') usage_error("%s: invalid size \"%s\"", opt, s);
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno == ERANGE) usage_error("%s: invalid size \"%s\"", opt, s);
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k') shift = 10, end++;
    else if (*end == 'M' || *end == 'm') shift = 20, end++;
    else if (*end == 'G' || *end == 'g') shift = 30, end++;
    if (*end != '\0') usage_error("%s: invalid size \"%s\"", opt, s);
    if (shift && v > (SIZE_MAX >> shift)) usage_error("%s: %s out of range", opt, s);
    v <<= shift;
    if (v < min || v > max) usage_error("%s: %s out of range [%zu, %zu]", opt, s, min, max);
    return (size_t)v;
}

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---------------------------------------------------------------------------------------------
// files

FILE *open_input(const char *path, const char **name)
{
    if (!path || !strcmp(path, "-")) {
        *name = "<stdin>";
        return stdin;
    }
    FILE *fp = fopen(path, "rbe");
    if (!fp) die(EX_NOINPUT, "open %s:", path);
    *name = path;
    return fp;
}

void close_input(FILE *fp)
{
    if (fp != stdin) fclose(fp);
}

char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rbe");
    if (!f) die(EX_NOINPUT, "open %s:", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = xrealloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) die(EX_NOINPUT, "read %s:", path);
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

uint64_t hash_file(const char *path)
{
    FILE *f = fopen(path, "rbe");
    if (!f) die(EX_NOINPUT, "open %s:", path);
    XXH3_state_t *st = XXH3_createState();
    if (!st) die(EX_OSERR, "out of memory (xxh3 state)");
    XXH3_64bits_reset(st);
    static char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) XXH3_64bits_update(st, buf, got);
    if (ferror(f)) die(EX_NOINPUT, "read %s:", path);
    fclose(f);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

void hash_hex(uint64_t h, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void make_dirs(const char *dir)
{
    char *p = xstrdup(dir);
    for (char *s = p + 1;; s++) {
        if (*s && *s != '/') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) die(EX_CANTCREAT, "create %s:", p);
        *s = c;
        if (!c) break;
    }
    struct stat sb;
    if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) die(EX_CANTCREAT, "create %s: not a directory", p);
    free(p);
}
