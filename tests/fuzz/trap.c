// trap.c — see trap.h. Linked into every fuzz harness with the --wrap options listed there
// (Makefile: FUZZ_WRAP).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "trap.h"

#include <errno.h>
#include <fcntl.h>
#include <pcre2.h>
#include <sanitizer/allocator_interface.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util.h"

static jmp_buf trap_env;
static volatile int trap_active;   // inside trap_run: exit() longjmps, resources are tracked
static volatile int trap_status;
static pthread_t trap_thread;      // the thread inside trap_run

// Only the thread running trap_run is tracked. libFuzzer's RSS-limit thread (and any pool
// thread) allocates and frees at its own times: a block it allocated while an input was dying
// would be freed by release_all() and then again by its owner (a flaky double free in CI).
static int tracking(void)
{
    return trap_active && pthread_equal(pthread_self(), trap_thread);
}

// ---------------------------------------------------------------------------------------------
// live heap blocks allocated inside trap_run: a dense array of the pointers (released in one
// pass) and an open-addressing index into it (linear probing, backward-shift deletion, no
// tombstones). The hooks must not allocate.

#define HEAP_BITS 21
#define HEAP_CAP ((size_t)1 << HEAP_BITS)
#define HEAP_MAX (HEAP_CAP / 2)
static struct { uintptr_t p; size_t at; } heap[HEAP_CAP];   // at: index into live[]
static uintptr_t live[HEAP_MAX];
static size_t heap_n;

static size_t heap_slot(uintptr_t p)
{
    return (size_t)((p >> 4) * 0x9E3779B97F4A7C15ull >> (64 - HEAP_BITS));
}

static size_t heap_find(uintptr_t p)
{
    size_t i = heap_slot(p);
    while (heap[i].p && heap[i].p != p) i = (i + 1) & (HEAP_CAP - 1);
    return i;
}

static void heap_add(uintptr_t p)
{
    size_t i = heap_find(p);
    if (heap[i].p) return;
    if (heap_n == HEAP_MAX) {
        static const char msg[] = "trap: too many live allocations to track\n";
        (void)!write(2, msg, sizeof msg - 1);
        abort();
    }
    heap[i].p = p;
    heap[i].at = heap_n;
    live[heap_n++] = p;
}

static void heap_del(uintptr_t p)
{
    size_t i = heap_find(p);
    if (!heap[i].p) return;                 // allocated outside trap_run
    size_t at = heap[i].at;
    uintptr_t last = live[--heap_n];
    if (at != heap_n) {                     // move the last live block into the gap
        live[at] = last;
        heap[heap_find(last)].at = at;
    }
    heap[i].p = 0;
    size_t j = i;                           // backward shift of the rest of the cluster
    for (;;) {
        j = (j + 1) & (HEAP_CAP - 1);
        if (!heap[j].p) break;
        size_t home = heap_slot(heap[j].p);
        if (((j - home) & (HEAP_CAP - 1)) >= ((j - i) & (HEAP_CAP - 1))) {
            heap[i] = heap[j];
            heap[j].p = 0;
            i = j;
        }
    }
}

static void heap_clear(int release)
{
    while (heap_n) {
        uintptr_t p = live[heap_n - 1];
        heap_del(p);
        if (release) free((void *)p);
    }
}

static void malloc_hook(const volatile void *p, size_t n)
{
    if (p && tracking()) heap_add((uintptr_t)p);
}

static void free_hook(const volatile void *p)
{
    if (p && tracking()) heap_del((uintptr_t)p);
}

// ---------------------------------------------------------------------------------------------
// other resources: small arrays (a fuzz input opens a handful)

#define RES_MAX 4096
struct res { int kind; void *p; size_t n; };
enum { R_FD = 1, R_FILE, R_MAP, R_RE, R_JITSTACK };
static struct res res[RES_MAX];
static size_t nres;

static void res_add(int kind, void *p, size_t n)
{
    if (!tracking()) return;
    if (nres == RES_MAX) {
        static const char msg[] = "trap: too many open resources to track\n";
        (void)!write(2, msg, sizeof msg - 1);
        abort();
    }
    res[nres++] = (struct res){kind, p, n};
}

static void res_del(int kind, void *p)
{
    if (!tracking()) return;
    for (size_t i = nres; i-- > 0;)
        if (res[i].kind == kind && res[i].p == p) {
            res[i] = res[--nres];
            return;
        }
}

#define FD_P(fd) ((void *)(intptr_t)(fd))

int __real_open(const char *path, int flags, ...);
int __real_close(int fd);
FILE *__real_fopen(const char *path, const char *mode);
FILE *__real_fdopen(int fd, const char *mode);
int __real_fclose(FILE *f);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_munmap(void *addr, size_t len);
pcre2_code *__real_pcre2_compile_8(PCRE2_SPTR pat, PCRE2_SIZE len, uint32_t opts, int *err,
                                   PCRE2_SIZE *off, pcre2_compile_context *ctx);
void __real_pcre2_code_free_8(pcre2_code *re);
pcre2_jit_stack *__real_pcre2_jit_stack_create_8(PCRE2_SIZE start, PCRE2_SIZE max,
                                                 pcre2_general_context *ctx);
void __real_pcre2_jit_stack_free_8(pcre2_jit_stack *s);
_Noreturn void __real_exit(int code);

int __wrap_open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    int fd = __real_open(path, flags, mode);
    if (fd >= 0) res_add(R_FD, FD_P(fd), 0);
    return fd;
}

int __wrap_close(int fd)
{
    res_del(R_FD, FD_P(fd));
    return __real_close(fd);
}

FILE *__wrap_fopen(const char *path, const char *mode)
{
    FILE *f = __real_fopen(path, mode);
    if (f) res_add(R_FILE, f, 0);
    return f;
}

FILE *__wrap_fdopen(int fd, const char *mode)
{
    FILE *f = __real_fdopen(fd, mode);
    if (f) {
        res_del(R_FD, FD_P(fd));            // the FILE owns it now
        res_add(R_FILE, f, 0);
    }
    return f;
}

FILE *__real_open_memstream(char **buf, size_t *len);
FILE *__wrap_open_memstream(char **buf, size_t *len)
{
    FILE *f = __real_open_memstream(buf, len);
    if (f) res_add(R_FILE, f, 0);
    return f;
}

int __wrap_fclose(FILE *f)
{
    res_del(R_FILE, f);
    return __real_fclose(f);
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p = __real_mmap(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED) res_add(R_MAP, p, len);
    return p;
}

int __wrap_munmap(void *addr, size_t len)
{
    res_del(R_MAP, addr);
    return __real_munmap(addr, len);
}

pcre2_code *__wrap_pcre2_compile_8(PCRE2_SPTR pat, PCRE2_SIZE len, uint32_t opts, int *err,
                                   PCRE2_SIZE *off, pcre2_compile_context *ctx)
{
    pcre2_code *re = __real_pcre2_compile_8(pat, len, opts, err, off, ctx);
    if (re) res_add(R_RE, re, 0);
    return re;
}

void __wrap_pcre2_code_free_8(pcre2_code *re)
{
    if (re) res_del(R_RE, re);
    __real_pcre2_code_free_8(re);
}

pcre2_jit_stack *__wrap_pcre2_jit_stack_create_8(PCRE2_SIZE start, PCRE2_SIZE max,
                                                 pcre2_general_context *ctx)
{
    pcre2_jit_stack *s = __real_pcre2_jit_stack_create_8(start, max, ctx);
    if (s) res_add(R_JITSTACK, s, 0);
    return s;
}

void __wrap_pcre2_jit_stack_free_8(pcre2_jit_stack *s)
{
    if (s) res_del(R_JITSTACK, s);
    __real_pcre2_jit_stack_free_8(s);
}

_Noreturn void __wrap_exit(int code)
{
    if (tracking()) {
        trap_status = code;
        longjmp(trap_env, 1);
    }
    __real_exit(code);
}

// Releases what the code under test left behind: library objects first (their frees remove
// heap entries while tracking is still on), then mappings and descriptors, then raw blocks.
static void release_all(void)
{
    static const int order[] = {R_JITSTACK, R_RE, R_FILE, R_MAP, R_FD};
    for (size_t k = 0; k < sizeof order / sizeof *order; k++)
        for (size_t i = nres; i-- > 0;) {
            if (i >= nres || res[i].kind != order[k]) continue;
            struct res r = res[i];
            res[i] = res[--nres];
            switch (r.kind) {
            case R_JITSTACK: __real_pcre2_jit_stack_free_8(r.p); break;
            case R_RE: __real_pcre2_code_free_8(r.p); break;
            case R_FILE: {
                int fd = fileno((FILE *)r.p);
                __real_fclose(r.p);
                if (fd >= 0) res_del(R_FD, FD_P(fd));
                break;
            }
            case R_MAP: __real_munmap(r.p, r.n); break;
            case R_FD: __real_close((int)(intptr_t)r.p); break;
            }
        }
    trap_active = 0;
    heap_clear(1);
}

static void forget_all(void)
{
    trap_active = 0;
    nres = 0;
    heap_clear(0);
}

int trap_run(void (*fn)(void *), void *arg)
{
    if (setjmp(trap_env)) {
        release_all();
        return trap_status;
    }
    trap_thread = pthread_self();
    trap_active = 1;
    fn(arg);
    // A normal return: the code under test released what it had to (LeakSanitizer checks).
    forget_all();
    return -1;
}

void trap_check(int status, const char *what)
{
    if (status == -1 || (status >= 64 && status <= 74)) return;
    fprintf(stderr, "trap: %s: exit status %d is not a documented outcome (64..74)\n", what, status);
    abort();
}

void trap_init(const char *name)
{
    tool_init(name);
    __sanitizer_install_malloc_and_free_hooks(malloc_hook, free_hook);
}
