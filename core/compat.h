/*
 * Compiler attributes behind macros, and the one assertion we keep in release builds.
 *
 * BUG_ON() is for invariants, not for input: a CA that continues in an impossible state is worse
 * than one that restarts, so it aborts in every build.
 */
#ifndef CORE_COMPAT_H
#define CORE_COMPAT_H

#include <stddef.h>

#if defined(__GNUC__) || defined(__clang__)
#define ATTR_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define ATTR_WUR          __attribute__((warn_unused_result))
#define ATTR_NORETURN     __attribute__((noreturn))
#define ATTR_UNUSED       __attribute__((unused))
#else
#define ATTR_PRINTF(f, a)
#define ATTR_WUR
#define ATTR_NORETURN
#define ATTR_UNUSED
#endif

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

ATTR_NORETURN void bug_at(const char *file, int line, const char *cond);
#define BUG_ON(cond)                                                                               \
    do {                                                                                           \
        if (cond) {                                                                                \
            bug_at(__FILE__, __LINE__, #cond);                                                     \
        }                                                                                          \
    } while (0)

#endif
