/*
 * struct err: the caller-allocated error every fallible function fills.
 *
 * Functions return 0 on success and -1 with *e set (constructors: NULL and *e set). The first
 * error set wins; callers add context with err_prefix(). msg is safe to show a client or print in
 * the CLI; detail is for the operational log only (OpenSSL's queue, errno, Redis errstr).
 * The code is a contract: it maps to an HTTP status and a CLI exit code through one table.
 */
#ifndef CORE_ERR_H
#define CORE_ERR_H

#include "core/compat.h"

enum err_code {
    ERRC_OK = 0,
    ERRC_INVALID,     /* bad input: 400, exit 2 */
    ERRC_DENIED,      /* not allowed: 403, exit 3 */
    ERRC_NOT_FOUND,   /* 404, exit 4 */
    ERRC_CONFLICT,    /* 409, exit 5 */
    ERRC_UNAVAILABLE, /* a dependency is down: 503, exit 6 */
    ERRC_TIMEOUT,     /* 504, exit 7 */
    ERRC_CANCELED,    /* 499, exit 8 */
    ERRC_TOO_LARGE,   /* 413, exit 2 */
    ERRC_INTERNAL,    /* 500, exit 1 */
    ERRC__COUNT       /* adding a code? update the table in core/err.c */
};

struct err {
    enum err_code code;
    char msg[256];    /* safe for clients */
    char detail[512]; /* internal only */
    const char *file; /* where it was first set */
    int line;
};

#define ERR_INIT { ERRC_OK, "", "", NULL, 0 }

void err_clear(struct err *e);
int err_set_at(struct err *e, enum err_code code, const char *file, int line, const char *fmt,
               ...) ATTR_PRINTF(5, 6);
/* Like err_set, and drains OpenSSL's error queue into detail. */
int err_openssl_at(struct err *e, enum err_code code, const char *file, int line, const char *fmt,
                   ...) ATTR_PRINTF(5, 6);
/* Like err_set, and appends strerror(errno) (read at call time) to msg. */
int err_errno_at(struct err *e, enum err_code code, const char *file, int line, const char *fmt,
                 ...) ATTR_PRINTF(5, 6);
#define err_set(e, c, ...)     err_set_at((e), (c), __FILE__, __LINE__, __VA_ARGS__)
#define err_openssl(e, c, ...) err_openssl_at((e), (c), __FILE__, __LINE__, __VA_ARGS__)
#define err_errno(e, c, ...)   err_errno_at((e), (c), __FILE__, __LINE__, __VA_ARGS__)

/* Prepends "CONTEXT: " to msg of an error already set; returns -1. */
int err_prefix(struct err *e, const char *fmt, ...) ATTR_PRINTF(2, 3);
/* Copies src into dst (used when an error crosses an ownership boundary). */
void err_copy(struct err *dst, const struct err *src);

const char *err_code_name(enum err_code code); /* "invalid", "denied", ... */
/* The text of errno value errnum in buf (thread-safe strerror). */
const char *err_errno_str(int errnum, char *buf, size_t cap);
int err_http_status(enum err_code code);
int err_exit_code(enum err_code code);

#endif
