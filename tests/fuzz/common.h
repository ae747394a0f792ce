// common.h — helpers shared by the fuzz harnesses (tests/fuzz/fuzz-*.c).
#ifndef SRLM_FUZZ_COMMON_H
#define SRLM_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// A FILE reading data[0..n) through a real descriptor (rec_reader reads with read(2), so no
// fmemopen): a memfd written once per input. The caller fcloses it (outside trap_run).
static inline FILE *fuzz_memfile(const uint8_t *data, size_t n)
{
    int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
    if (fd < 0) { perror("memfd_create"); abort(); }
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, data + off, n - off);
        if (w <= 0) { perror("write memfd"); abort(); }
        off += (size_t)w;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) { perror("lseek"); abort(); }
    FILE *f = fdopen(fd, "rb");
    if (!f) { perror("fdopen"); abort(); }
    // stdio would allocate the buffer at the first read, inside trap_run, which then frees it
    // if the input dies: give it one that belongs to the harness.
    static char buf[BUFSIZ];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    return f;
}

// Writes data[0..n) to path (a fresh file), aborting on failure (not the input's fault).
static inline void fuzz_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) { perror(path); abort(); }
}

// A private temp directory for the process, created once.
static inline const char *fuzz_tmpdir(void)
{
    static char dir[64];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/srlm-fuzz.XXXXXX", t && strlen(t) < 40 ? t : "/tmp");
        if (!mkdtemp(dir)) { perror("mkdtemp"); abort(); }
    }
    return dir;
}

#define FUZZ_FAIL(...) do { fprintf(stderr, "fuzz: property violated: " __VA_ARGS__); \
                            fputc('\n', stderr); abort(); } while (0)

#endif
