// test.h — the unit-test harness: CHECK macros that report file:line and keep going, and a
// closing line "<test>: N passed, N failed" with a non-zero status when anything failed.
#ifndef SRLM_TEST_H
#define SRLM_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int test_passed, test_failed;

#define CHECK(cond) do { \
    if (cond) test_passed++; \
    else { test_failed++; fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } \
} while (0)

#define CHECK_MSG(cond, ...) do { \
    if (cond) test_passed++; \
    else { test_failed++; fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
           fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } \
} while (0)

// |a - b| <= tol * max(1, |b|): relative for large values, absolute near zero.
#define CHECK_NEAR(a, b, tol) do { \
    double a_ = (a), b_ = (b), t_ = (tol) * fmax(1.0, fabs(b_)); \
    if (fabs(a_ - b_) <= t_) test_passed++; \
    else { test_failed++; fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g, tol %.3g\n", \
                                  __FILE__, __LINE__, #a, a_, #b, b_, t_); } \
} while (0)

static inline int test_finish(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, test_passed, test_failed);
    return test_failed ? 1 : 0;
}

#endif
