/*
 * struct buf: a growable byte buffer (git's strbuf). data is always NUL-terminated so text can
 * be used as a C string; len does not count the NUL. buf_detach() is the only way to take the
 * memory. A zeroed struct is a valid empty buffer (BUF_INIT).
 */
#ifndef CORE_BUF_H
#define CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "core/compat.h"

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

void buf_init(struct buf *b);
void buf_release(struct buf *b);
void buf_reset(struct buf *b); /* len = 0, keeps the memory */
/* Overwrites the whole allocation (OPENSSL_cleanse) before releasing it: for secrets. */
void buf_release_secret(struct buf *b);
void buf_reserve(struct buf *b, size_t extra);
void buf_add(struct buf *b, const void *data, size_t len);
void buf_addstr(struct buf *b, const char *s);
void buf_addch(struct buf *b, char c);
void buf_addf(struct buf *b, const char *fmt, ...) ATTR_PRINTF(2, 3);
void buf_vaddf(struct buf *b, const char *fmt, va_list ap) ATTR_PRINTF(2, 0);
void buf_addhex(struct buf *b, const uint8_t *data, size_t len); /* lowercase */
/* Hands the memory to the caller (free with xfree); the buffer is left empty. */
char *buf_detach(struct buf *b, size_t *len);
const char *buf_cstr(struct buf *b); /* "" for an empty buffer */

#endif
