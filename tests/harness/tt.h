/*
 * A tiny test harness (libevent's tinytest and OpenSSL's testutil in miniature). A test is a
 * function returning 0 on success; CHECK_* print both operands, file and line, and `goto out` so
 * tests clean up like production code. A test executable lists its cases in a table and calls
 * tt_main(): with no argument it runs every case, with names it runs those. A case returns
 * TT_SKIP to report a skip (exit 77 when it is the only case run).
 */
#ifndef TESTS_HARNESS_TT_H
#define TESTS_HARNESS_TT_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define TT_SKIP 77

struct tt_case {
    const char *name;
    int (*fn)(void);
};

int tt_main(int argc, char **argv, const struct tt_case *cases, size_t n);
/* A fresh private temporary directory for this test run (removed at exit unless TT_KEEP=1). */
const char *tt_tmpdir(void);
/* Runs a shell command, returns its exit status (-1 if it did not exit normally). */
int tt_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define TT_FAIL(...)                                                                               \
    do {                                                                                           \
        fprintf(stderr, "  FAIL %s:%d: ", __FILE__, __LINE__);                                     \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        rc = 1;                                                                                    \
        goto out;                                                                                  \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            TT_FAIL("CHECK(%s)", #cond);                                                           \
        }                                                                                          \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                                         \
    do {                                                                                           \
        long long tt_a = (long long)(a), tt_b = (long long)(b);                                    \
        if (tt_a != tt_b) {                                                                        \
            TT_FAIL("%s == %s: %lld != %lld", #a, #b, tt_a, tt_b);                                 \
        }                                                                                          \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                         \
    do {                                                                                           \
        const char *tt_a = (a), *tt_b = (b);                                                       \
        if (tt_a == NULL || tt_b == NULL || strcmp(tt_a, tt_b) != 0) {                             \
            TT_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, tt_a ? tt_a : "(null)",                  \
                    tt_b ? tt_b : "(null)");                                                       \
        }                                                                                          \
    } while (0)

#define CHECK_STR_CONTAINS(hay, needle)                                                            \
    do {                                                                                           \
        const char *tt_h = (hay), *tt_n = (needle);                                                \
        if (tt_h == NULL || strstr(tt_h, tt_n) == NULL) {                                          \
            TT_FAIL("%s contains \"%s\": got \"%s\"", #hay, tt_n, tt_h ? tt_h : "(null)");         \
        }                                                                                          \
    } while (0)

#define CHECK_OK(expr, e)                                                                          \
    do {                                                                                           \
        if ((expr) != 0) {                                                                         \
            TT_FAIL("%s failed: %s [%s]", #expr, (e)->msg, (e)->detail);                           \
        }                                                                                          \
    } while (0)

#endif
