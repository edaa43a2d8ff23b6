/*
 * struct err and the one table that maps error codes to names, HTTP statuses and exit codes.
 * OpenSSL errors are drained here so a stale entry never leaks into the next operation.
 */
#include "core/err.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    int http;
    int exit;
} err_table[] = {
    [ERRC_OK] = { "ok", 200, 0 },
    [ERRC_INVALID] = { "invalid", 400, 2 },
    [ERRC_DENIED] = { "denied", 403, 3 },
    [ERRC_NOT_FOUND] = { "not_found", 404, 4 },
    [ERRC_CONFLICT] = { "conflict", 409, 5 },
    [ERRC_UNAVAILABLE] = { "unavailable", 503, 6 },
    [ERRC_TIMEOUT] = { "timeout", 504, 7 },
    [ERRC_CANCELED] = { "canceled", 499, 8 },
    [ERRC_TOO_LARGE] = { "too_large", 413, 2 },
    [ERRC_INTERNAL] = { "internal", 500, 1 },
};
_Static_assert(ARRAY_LEN(err_table) == ERRC__COUNT, "err_table must cover enum err_code");

void bug_at(const char *file, int line, const char *cond)
{
    fprintf(stderr, "BUG at %s:%d: %s\n", file, line, cond);
    abort();
}

void err_clear(struct err *e)
{
    e->code = ERRC_OK;
    e->msg[0] = '\0';
    e->detail[0] = '\0';
    e->file = NULL;
    e->line = 0;
}

static int err_vset(struct err *e, enum err_code code, const char *file, int line, const char *fmt,
                    va_list ap) ATTR_PRINTF(5, 0);
static int err_vset(struct err *e, enum err_code code, const char *file, int line, const char *fmt,
                    va_list ap)
{
    if (e == NULL || e->code != ERRC_OK) {
        return -1; /* the first error wins */
    }
    e->code = code == ERRC_OK ? ERRC_INTERNAL : code;
    e->file = file;
    e->line = line;
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    return -1;
}

int err_set_at(struct err *e, enum err_code code, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(e, code, file, line, fmt, ap);
    va_end(ap);
    return -1;
}

int err_openssl_at(struct err *e, enum err_code code, const char *file, int line, const char *fmt,
                   ...)
{
    int fresh = e != NULL && e->code == ERRC_OK;
    va_list ap;
    va_start(ap, fmt);
    err_vset(e, code, file, line, fmt, ap);
    va_end(ap);
    size_t off = 0;
    const char *efile = NULL, *func = NULL, *data = NULL;
    int eline = 0, flags = 0;
    unsigned long ec;
    while ((ec = ERR_get_error_all(&efile, &eline, &func, &data, &flags)) != 0) {
        if (!fresh || off + 2 >= sizeof(e->detail)) {
            continue; /* keep draining */
        }
        char one[256];
        ERR_error_string_n(ec, one, sizeof(one));
        int n = snprintf(e->detail + off, sizeof(e->detail) - off, "%s%s%s%s", off ? "; " : "",
                         one, (flags & ERR_TXT_STRING) && data ? ": " : "",
                         (flags & ERR_TXT_STRING) && data ? data : "");
        if (n < 0) {
            break;
        }
        off += (size_t)n;
        if (off >= sizeof(e->detail)) {
            off = sizeof(e->detail) - 1;
        }
    }
    return -1;
}

const char *err_errno_str(int errnum, char *buf, size_t cap)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(errnum, buf, cap);
#else
    if (strerror_r(errnum, buf, cap) != 0) {
        snprintf(buf, cap, "errno %d", errnum);
    }
    return buf;
#endif
}

int err_errno_at(struct err *e, enum err_code code, const char *file, int line, const char *fmt,
                 ...)
{
    int saved = errno;
    if (e == NULL || e->code != ERRC_OK) {
        return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    err_vset(e, code, file, line, fmt, ap);
    va_end(ap);
    char buf[128];
    const char *s = err_errno_str(saved, buf, sizeof(buf));
    size_t len = strlen(e->msg);
    snprintf(e->msg + len, sizeof(e->msg) - len, ": %s", s);
    errno = saved;
    return -1;
}

int err_prefix(struct err *e, const char *fmt, ...)
{
    if (e == NULL || e->code == ERRC_OK) {
        return -1;
    }
    char pre[sizeof(e->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof(pre), fmt, ap);
    va_end(ap);
    size_t plen = strnlen(pre, sizeof(e->msg) - 3);
    size_t olen = strnlen(e->msg, sizeof(e->msg) - 1);
    if (plen + 2 + olen >= sizeof(e->msg)) {
        olen = sizeof(e->msg) - 1 - plen - 2;
    }
    memmove(e->msg + plen + 2, e->msg, olen);
    memcpy(e->msg, pre, plen);
    e->msg[plen] = ':';
    e->msg[plen + 1] = ' ';
    e->msg[plen + 2 + olen] = '\0';
    return -1;
}

void err_copy(struct err *dst, const struct err *src)
{
    if (dst != src) {
        memcpy(dst, src, sizeof(*dst));
    }
}

const char *err_code_name(enum err_code code)
{
    return (unsigned)code < ERRC__COUNT ? err_table[code].name : "internal";
}

int err_http_status(enum err_code code)
{
    return (unsigned)code < ERRC__COUNT ? err_table[code].http : 500;
}

int err_exit_code(enum err_code code)
{
    return (unsigned)code < ERRC__COUNT ? err_table[code].exit : 1;
}
