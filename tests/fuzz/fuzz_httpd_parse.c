/*
 * libFuzzer target: httpd's request-head parser (httpd/parse.c). The first byte picks the body
 * cap and where the rest is split in two; the rest is a connection's bytes. Invariants: a head
 * that parses lies within the input and the 16 KiB cap, its spans lie within the head, its
 * method is a token and its target a path, its Content-Length within the cap; a refusal carries
 * a status the server knows, a code and a message, and no head; feeding the bytes in two parts
 * (with the resumable scan) gives the answer the whole gives; percent-decoding never grows.
 */
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "httpd/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_span(struct hp_span sp, size_t limit)
{
    if (sp.off > limit || sp.len > limit - sp.off) {
        abort();
    }
}

static void check(const char *buf, size_t len, const struct hp_limits *lim, enum hp_result r,
                  const struct hp_req *hr)
{
    if (r == HP_DONE) {
        if (hr->head_len == 0 || hr->head_len > len || hr->head_len > HP_MAX_HEAD ||
            hr->content_length > lim->max_body || hr->nheaders > HP_MAX_HEADERS ||
            (hr->minor != 0 && hr->minor != 1) || hr->method.len == 0 || hr->target.len == 0 ||
            buf[hr->target.off] != '/') {
            abort();
        }
        check_span(hr->method, hr->head_len);
        check_span(hr->target, hr->head_len);
        for (size_t i = 0; i < hr->nheaders; i++) {
            check_span(hr->headers[i].name, hr->head_len);
            check_span(hr->headers[i].value, hr->head_len);
            if (hr->headers[i].name.len == 0) {
                abort();
            }
        }
    } else if (r == HP_ERROR) {
        static const int known[] = { 400, 411, 413, 417, 431, 501, 505 };
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
            ok = ok || hr->status == known[i];
        }
        if (!ok || hr->code == NULL || hr->code[0] == '\0' || hr->message == NULL ||
            hr->message[0] == '\0' || hr->head_len != 0) {
            abort();
        }
    } else if (r != HP_MORE || len > HP_MAX_HEAD) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct hp_req whole, part;
    struct hp_limits lim = { HP_MAX_HEAD, 0 };
    size_t scan = 0;
    if (size == 0) {
        return 0;
    }
    lim.max_body = (data[0] & 1) ? 1048576 : 16;
    size_t n = size - 1;
    size_t split = n ? ((size_t)data[0] * 131u) % (n + 1) : 0;
    char *buf = xmalloc(n ? n : 1); /* exactly n bytes: ASan sees any read past them */
    memcpy(buf, data + 1, n);
    enum hp_result rw = hp_parse(buf, n, &lim, &scan, &whole);
    check(buf, n, &lim, rw, &whole);
    /* the same bytes in two parts */
    char *pre = xmalloc(split ? split : 1);
    memcpy(pre, buf, split);
    scan = 0;
    enum hp_result rp = hp_parse(pre, split, &lim, &scan, &part);
    check(pre, split, &lim, rp, &part);
    if (rp == HP_ERROR && (rw != HP_ERROR || part.status != whole.status)) {
        abort();
    }
    if (rp == HP_DONE && (rw != HP_DONE || part.head_len != whole.head_len)) {
        abort();
    }
    if (rp == HP_MORE) {
        enum hp_result r2 = hp_parse(buf, n, &lim, &scan, &part);
        if (r2 != rw || (rw == HP_DONE && part.head_len != whole.head_len) ||
            (rw == HP_ERROR && part.status != whole.status)) {
            abort();
        }
    }
    if (rw == HP_DONE) {
        char *t = xmemdup(buf + whole.target.off, whole.target.len);
        if (hp_pct_decode(t, whole.target.len, true) > whole.target.len) {
            abort();
        }
        xfree(t);
    }
    xfree(pre);
    xfree(buf);
    return 0;
}
