// util.c — see util.h for the contract.
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

const char *progname = "srlm";
int log_level = LOG_LEVEL_INFO;
int log_mute = 0;
void (*util_fatal_hook)(int code, const char *msg) = NULL;
void (*util_exit_hook)(void) = NULL;

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

static void format_message(char *out, size_t cap, const char *prefix, const char *fmt, va_list ap)
{
    int saved = errno;
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    if (n > 0 && buf[n - 1] == ':')
        snprintf(out, cap, "%s%s %s", prefix, buf, strerror(saved));
    else
        snprintf(out, cap, "%s%s", prefix, buf);
}

static void vmessage(const char *prefix, const char *fmt, va_list ap)
{
    char msg[2304];
    format_message(msg, sizeof msg, prefix, fmt, ap);
    fprintf(stderr, "%s: %s\n", progname, msg);
}

void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[2304];
    format_message(msg, sizeof msg, "", fmt, ap);
    va_end(ap);
    if (util_fatal_hook) util_fatal_hook(code, msg);
    fprintf(stderr, "%s: %s\n", progname, msg);
    // Data already written is flushed so a downstream consumer sees whole records, then the
    // missing end record tells it the stream is incomplete.
    fflush(stdout);
    exit(code);
}

void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[2304];
    format_message(msg, sizeof msg, "", fmt, ap);
    va_end(ap);
    if (util_fatal_hook) {
        char hint[2560];
        snprintf(hint, sizeof hint, "%s (try '%s --help')", msg, progname);
        util_fatal_hook(EX_USAGE, hint);
    }
    fprintf(stderr, "%s: %s\n", progname, msg);
    fprintf(stderr, "Try '%s --help' for more information.\n", progname);
    exit(EX_USAGE);
}

void log_warn(const char *fmt, ...)
{
    if (log_level < LOG_LEVEL_WARN || log_mute) return;
    va_list ap;
    va_start(ap, fmt);
    vmessage("warning: ", fmt, ap);
    va_end(ap);
}

void log_info(const char *fmt, ...)
{
    if (log_level < LOG_LEVEL_INFO || log_mute) return;
    va_list ap;
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
}

void log_debug(const char *fmt, ...)
{
    if (log_level < LOG_LEVEL_DEBUG || log_mute) return;
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
    if (util_exit_hook) util_exit_hook();
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

// ---------------------------------------------------------------------------------------------
// input operands and CPU count

static void refuse_directory(FILE *fp, const char *name)
{
    struct stat sb;
    if (fstat(fileno(fp), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        errno = EISDIR;
        die(EX_NOINPUT, "open %s:", name);
    }
}

FILE *open_input_path(const char *path, const char **name)
{
    FILE *fp = open_input(path, name);
    refuse_directory(fp, *name);
    return fp;
}

FILE *open_input_operand(int argc, char **argv, int first, const char **name)
{
    if (argc - first > 1) usage_error("too many operands (one input file at most)");
    return open_input_path(first < argc ? argv[first] : NULL, name);
}

// A small file's text, NUL-terminated (caller frees), or NULL if it cannot be read.
static char *read_small_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f) return NULL;
    size_t cap = 4096, n = 0, got;
    char *buf = xmalloc(cap);
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0)
        if ((n += got) + 1 == cap) buf = xrealloc(buf, cap *= 2);
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); return NULL; }
    buf[n] = '\0';
    return buf;
}

// ceil(quota / period) from one cgroup directory's files; 0 when no quota is set or readable.
static long quota_at(const char *dir, int v2)
{
    char path[8300];
    long long quota = -1, period = 0;
    snprintf(path, sizeof path, "%s/%s", dir, v2 ? "cpu.max" : "cpu.cfs_quota_us");
    char *s = read_small_file(path);
    if (s && sscanf(s, "%lld %lld", &quota, &period) < (v2 ? 2 : 1)) quota = -1;   // "max 100000": none
    free(s);
    if (!v2) {
        snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
        s = read_small_file(path);
        if (!s || sscanf(s, "%lld", &period) != 1) period = 0;
        free(s);
    }
    if (quota <= 0 || period <= 0) return 0;
    return (long)((quota + period - 1) / period);
}

// Copies a mountinfo path field (space, tab, newline, backslash escaped as \ooo) into out.
static void unescape_field(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s && n + 1 < cap; n++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
            out[n] = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 4;
        } else {
            out[n] = *s++;
        }
    }
    out[n] = '\0';
}

// Whether the comma-separated list holds item.
static int list_has(const char *list, size_t len, const char *item)
{
    size_t il = strlen(item);
    for (const char *p = list, *end = list + len; p < end;) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        size_t n = c ? (size_t)(c - p) : (size_t)(end - p);
        if (n == il && !memcmp(p, item, il)) return 1;
        p += n + 1;
    }
    return 0;
}

// The mount of the cgroup v2 hierarchy (v2) or of v1's cpu controller: its root inside the
// hierarchy and its mount point. Fields: id parent dev root point options... - fstype src superopts.
static int find_cgroup_mount(const char *mountinfo, int v2, char *root, char *point, size_t cap)
{
    char *text = xstrdup(mountinfo), *save = NULL;
    int found = 0;
    for (char *line = strtok_r(text, "\n", &save); line && !found; line = strtok_r(NULL, "\n", &save)) {
        char *f[64], *s2 = NULL;
        int nf = 0, dash = -1;
        for (char *t = strtok_r(line, " ", &s2); t && nf < 64; t = strtok_r(NULL, " ", &s2)) {
            if (dash < 0 && !strcmp(t, "-")) dash = nf;
            f[nf++] = t;
        }
        if (dash < 5 || dash + 3 >= nf) continue;
        if (v2 ? strcmp(f[dash + 1], "cgroup2") != 0
               : strcmp(f[dash + 1], "cgroup") != 0 || !list_has(f[dash + 3], strlen(f[dash + 3]), "cpu"))
            continue;
        unescape_field(f[3], root, cap);
        unescape_field(f[4], point, cap);
        found = 1;
    }
    free(text);
    return found;
}

// The process's cgroup path in that hierarchy, from /proc/self/cgroup ("id:controllers:path";
// v2 is "0::path").
static int find_cgroup_path(const char *self_cgroup, int v2, char *path, size_t cap)
{
    for (const char *line = self_cgroup; *line;) {
        const char *nl = strchr(line, '\n'), *end = nl ? nl : line + strlen(line);
        const char *c1 = memchr(line, ':', (size_t)(end - line));
        const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
        int match = c2 && (v2 ? (c1 == line + 1 && line[0] == '0' && c2 == c1 + 1)
                              : list_has(c1 + 1, (size_t)(c2 - c1 - 1), "cpu"));
        if (match && (size_t)(end - c2 - 1) < cap) {
            memcpy(path, c2 + 1, (size_t)(end - c2 - 1));
            path[end - c2 - 1] = '\0';
            return 1;
        }
        line = nl ? nl + 1 : end;
    }
    return 0;
}

// The smallest quota from the process's cgroup up to the hierarchy's mount point.
static long hierarchy_limit(const char *mountinfo, const char *self_cgroup, int v2)
{
    char root[4096], point[4096], cg[4096], dir[8200];
    if (!find_cgroup_mount(mountinfo, v2, root, point, sizeof root) ||
        !find_cgroup_path(self_cgroup, v2, cg, sizeof cg))
        return 0;
    // The mount shows the hierarchy from `root` down. A cgroup outside it (another cgroup
    // namespace) leaves only the mount point's own files to read.
    const char *rel = cg;
    size_t rl = strlen(root);
    if (strcmp(root, "/") != 0)
        rel = !strncmp(cg, root, rl) && (cg[rl] == '/' || cg[rl] == '\0') ? cg + rl : "";
    snprintf(dir, sizeof dir, "%s%s", point, rel);
    size_t plen = strlen(point);
    long best = 0;
    for (;;) {
        long q = quota_at(dir, v2);
        if (q > 0 && (best == 0 || q < best)) best = q;
        char *slash = strlen(dir) > plen ? strrchr(dir + plen, '/') : NULL;
        if (!slash) break;
        *slash = '\0';
    }
    return best;
}

int cgroup_cpu_limit(const char *mountinfo, const char *self_cgroup)
{
    long a = hierarchy_limit(mountinfo, self_cgroup, 1), b = hierarchy_limit(mountinfo, self_cgroup, 0);
    long q = a && b ? (a < b ? a : b) : (a ? a : b);
    return q > INT_MAX ? INT_MAX : (int)q;
}

static int affinity_cpus(void)
{
    for (int ncpu = 1024; ncpu <= (1 << 20); ncpu *= 2) {
        cpu_set_t *set = CPU_ALLOC(ncpu);
        if (!set) break;
        size_t size = CPU_ALLOC_SIZE(ncpu);
        CPU_ZERO_S(size, set);
        int rc = sched_getaffinity(0, size, set), n = CPU_COUNT_S(size, set);
        CPU_FREE(set);
        if (rc == 0) return n > 0 ? n : 1;
        if (errno != EINVAL) break;   // EINVAL: the kernel's mask is larger than ours
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int cpus_available(void)
{
    int n = affinity_cpus();
    char *mi = read_small_file("/proc/self/mountinfo"), *cg = read_small_file("/proc/self/cgroup");
    int q = mi && cg ? cgroup_cpu_limit(mi, cg) : 0;
    free(mi);
    free(cg);
    return q > 0 && q < n ? q : n;
}

void csv_field(FILE *f, const char *v)
{
    if (!strpbrk(v, ",\"\r\n")) { fputs(v, f); return; }
    putc('"', f);
    for (; *v; v++) {
        if (*v == '"') putc('"', f);
        putc(*v, f);
    }
    putc('"', f);
}
