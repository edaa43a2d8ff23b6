#include "core/buf.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "core/mem.h"

void buf_init(struct buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_release(struct buf *b)
{
    xfree(b->data);
    buf_init(b);
}

void buf_release_secret(struct buf *b)
{
    if (b->data) {
        OPENSSL_cleanse(b->data, b->cap);
    }
    buf_release(b);
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data) {
        b->data[0] = '\0';
    }
}

void buf_reserve(struct buf *b, size_t extra)
{
    if (extra >= SIZE_MAX - b->len - 1) {
        oom_die(SIZE_MAX);
    }
    b->data = xgrow(b->data, 1, b->len + extra + 1, &b->cap);
}

void buf_add(struct buf *b, const void *data, size_t len)
{
    buf_reserve(b, len);
    if (len) {
        memcpy(b->data + b->len, data, len);
    }
    b->len += len;
    b->data[b->len] = '\0';
}

void buf_addstr(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

void buf_addch(struct buf *b, char c)
{
    buf_add(b, &c, 1);
}

void buf_vaddf(struct buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    buf_reserve(b, 64);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, cp);
    va_end(cp);
    if (n < 0) {
        b->data[b->len] = '\0';
        return;
    }
    if ((size_t)n >= b->cap - b->len) {
        buf_reserve(b, (size_t)n);
        n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        if (n < 0) {
            b->data[b->len] = '\0';
            return;
        }
    }
    b->len += (size_t)n;
}

void buf_addf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vaddf(b, fmt, ap);
    va_end(ap);
}

void buf_addhex(struct buf *b, const uint8_t *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    buf_reserve(b, len * 2);
    for (size_t i = 0; i < len; i++) {
        b->data[b->len++] = hex[data[i] >> 4];
        b->data[b->len++] = hex[data[i] & 15];
    }
    b->data[b->len] = '\0';
}

char *buf_detach(struct buf *b, size_t *len)
{
    if (b->data == NULL) {
        buf_reserve(b, 0);
        b->data[0] = '\0';
    }
    char *p = b->data;
    if (len) {
        *len = b->len;
    }
    buf_init(b);
    return p;
}

const char *buf_cstr(struct buf *b)
{
    return b->data ? b->data : "";
}
