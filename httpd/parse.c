/*
 * The HTTP/1.1 request-head parser of parse.h (RFC 9112 §2-§6, the server side).
 *
 * Two passes over a head: while it is incomplete only the end of the head is looked for (memchr for
 * '\n' from where the last call stopped, so a head dribbled byte by byte costs linear time) and the
 * request line is checked as soon as it is whole; once the empty line is there, every field line is
 * checked and the few fields the server acts on (Content-Length, Transfer-Encoding, Connection,
 * Expect) are interpreted. Leading empty lines are skipped (RFC 9112 §2.2: clients may send a CRLF
 * after a body). The parser never writes to the buffer.
 */
#include "httpd/parse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static enum hp_result fail(struct hp_req *hr, int status, const char *code, const char *message)
{
    hr->status = status;
    hr->code = code;
    hr->message = message;
    return HP_ERROR;
}

static enum hp_result bad(struct hp_req *hr, const char *message)
{
    return fail(hr, 400, "bad_request", message);
}

/* The line [s, e) without its line end; method SP target SP HTTP/x.y. */
static enum hp_result request_line(const char *buf, size_t s, size_t e, struct hp_req *hr)
{
    size_t i = s;
    while (i < e && is_tchar((unsigned char)buf[i])) {
        i++;
    }
    if (i == s || i >= e || buf[i] != ' ') {
        return bad(hr, "malformed request line: want METHOD SP TARGET SP HTTP-VERSION");
    }
    hr->method.off = s;
    hr->method.len = i - s;
    s = ++i;
    while (i < e && (unsigned char)buf[i] > 0x20 && (unsigned char)buf[i] < 0x7f) {
        i++;
    }
    if (i == s || i >= e || buf[i] != ' ') {
        return bad(hr, "malformed request line: want METHOD SP TARGET SP HTTP-VERSION");
    }
    if (buf[s] != '/') {
        return bad(hr, "the request target must be an absolute path");
    }
    hr->target.off = s;
    hr->target.len = i - s;
    s = ++i;
    if (e - s != 8 || memcmp(buf + s, "HTTP/", 5) != 0 || buf[s + 5] < '0' || buf[s + 5] > '9' ||
        buf[s + 6] != '.' || buf[s + 7] < '0' || buf[s + 7] > '9') {
        return bad(hr, "malformed request line: want METHOD SP TARGET SP HTTP-VERSION");
    }
    if (buf[s + 5] != '1' || (buf[s + 7] != '0' && buf[s + 7] != '1')) {
        return fail(hr, 505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served");
    }
    hr->minor = buf[s + 7] - '0';
    return HP_DONE;
}

static bool span_ieq(const char *buf, struct hp_span sp, const char *s)
{
    size_t n = strlen(s);
    return sp.len == n && strncasecmp(buf + sp.off, s, n) == 0;
}

/* Content-Length: 1*DIGIT, at most 19 digits (fits in 64 bits). */
static bool parse_length(const char *buf, struct hp_span v, uint64_t *out)
{
    uint64_t n = 0;
    if (v.len == 0 || v.len > 19) {
        return false;
    }
    for (size_t i = 0; i < v.len; i++) {
        char c = buf[v.off + i];
        if (c < '0' || c > '9') {
            return false;
        }
        n = n * 10 + (uint64_t)(c - '0');
    }
    *out = n;
    return true;
}

/* Connection: a comma-separated token list. */
static void connection_tokens(const char *buf, struct hp_span v, bool *close, bool *keep)
{
    size_t i = v.off, end = v.off + v.len;
    while (i < end) {
        while (i < end && (is_ows(buf[i]) || buf[i] == ',')) {
            i++;
        }
        struct hp_span t = { i, 0 };
        while (i < end && buf[i] != ',' && !is_ows(buf[i])) {
            i++;
        }
        t.len = i - t.off;
        if (span_ieq(buf, t, "close")) {
            *close = true;
        } else if (span_ieq(buf, t, "keep-alive")) {
            *keep = true;
        }
    }
}

/* A Host field value (RFC 9110 §7.2): uri-host [":" port], where uri-host is an IP literal in
 * brackets or a reg-name / IPv4 address (RFC 3986 §3.2.2); empty is allowed (§7.2: a target
 * without an authority). No userinfo, no whitespace. */
static bool host_ok(const char *buf, struct hp_span v)
{
    const char *s = buf + v.off, *end = s + v.len;
    if (s < end && *s == '[') {
        const char *close = memchr(s, ']', v.len);
        if (close == NULL || close == s + 1) {
            return false;
        }
        for (const char *p = s + 1; p < close; p++) {
            if (!(hex_digit_value((unsigned char)*p) >= 0 || *p == ':' || *p == '.')) {
                return false;
            }
        }
        s = close + 1;
    } else {
        for (; s < end && *s != ':'; s++) {
            unsigned char c = (unsigned char)*s;
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr("-._~!$&'()*+,;=%", c) != NULL) ||
                c == '\0') {
                return false;
            }
        }
    }
    if (s == end) {
        return true;
    }
    if (*s != ':') {
        return false;
    }
    for (s++; s < end; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
    }
    return true;
}

/* Field lines between the request line's end and the empty line at head_end. */
static enum hp_result fields(const char *buf, size_t s, size_t head_end,
                             const struct hp_limits *lim, struct hp_req *hr)
{
    bool have_len = false, te = false, chunked = false, close = false, keep = false;
    bool host_bad = false;
    size_t nhost = 0;
    while (s < head_end) {
        const char *nl = memchr(buf + s, '\n', head_end - s);
        size_t e = (size_t)(nl - buf), next = e + 1, i = s;
        if (e > s && buf[e - 1] == '\r') {
            e--;
        }
        if (e == s) {
            break; /* the empty line */
        }
        if (is_ows(buf[s])) {
            return bad(hr, "obsolete line folding is not accepted");
        }
        while (i < e && is_tchar((unsigned char)buf[i])) {
            i++;
        }
        if (i == s || i >= e || buf[i] != ':') {
            return bad(hr, "malformed header field: want NAME: VALUE");
        }
        if (hr->nheaders == HP_MAX_HEADERS) {
            return fail(hr, 431, "headers_too_large", "more than 64 header fields");
        }
        struct hp_header *f = &hr->headers[hr->nheaders++];
        f->name.off = s;
        f->name.len = i - s;
        i++;
        while (i < e && is_ows(buf[i])) {
            i++;
        }
        f->value.off = i;
        for (; i < e; i++) {
            unsigned char c = (unsigned char)buf[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                return bad(hr, "a header field holds a control character");
            }
        }
        while (i > f->value.off && is_ows(buf[i - 1])) {
            i--;
        }
        f->value.len = i - f->value.off;
        if (span_ieq(buf, f->name, "content-length")) {
            uint64_t n = 0;
            if (!parse_length(buf, f->value, &n)) {
                return bad(hr, "Content-Length is not a decimal number");
            }
            if (have_len && n != hr->content_length) {
                return bad(hr, "conflicting Content-Length fields");
            }
            have_len = true;
            hr->content_length = n;
        } else if (span_ieq(buf, f->name, "transfer-encoding")) {
            te = true;
            for (size_t k = 0; k + 7 <= f->value.len; k++) {
                if (strncasecmp(buf + f->value.off + k, "chunked", 7) == 0) {
                    chunked = true;
                }
            }
        } else if (span_ieq(buf, f->name, "connection")) {
            connection_tokens(buf, f->value, &close, &keep);
        } else if (span_ieq(buf, f->name, "host")) {
            nhost++;
            host_bad = host_bad || !host_ok(buf, f->value);
        } else if (span_ieq(buf, f->name, "expect")) {
            if (!span_ieq(buf, f->value, "100-continue")) {
                return fail(hr, 417, "expectation_failed",
                            "only Expect: 100-continue is understood");
            }
            hr->expect_continue = hr->minor == 1;
        }
        s = next;
    }
    if (chunked) {
        return fail(hr, 411, "length_required",
                    "chunked request bodies are not accepted: send Content-Length");
    }
    if (te) {
        return fail(hr, 501, "not_implemented", "unsupported Transfer-Encoding");
    }
    if (hr->content_length > lim->max_body) {
        snprintf(hr->msgbuf, sizeof(hr->msgbuf),
                 "the request body (%llu bytes) is larger than the %zu bytes accepted",
                 (unsigned long long)hr->content_length, lim->max_body);
        return fail(hr, 413, "too_large", hr->msgbuf);
    }
    /* RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any request with more
     * than one Host field or an invalid one (HTTP/1.0 clients may leave it out) */
    if (nhost > 1) {
        return bad(hr, "more than one Host header field");
    }
    if (nhost == 0 && hr->minor == 1) {
        return bad(hr, "an HTTP/1.1 request needs exactly one Host header field");
    }
    if (host_bad) {
        return bad(hr, "the Host header field is not a valid host[:port]");
    }
    hr->keep_alive = hr->minor == 1 ? !close : keep && !close;
    return HP_DONE;
}

enum hp_result hp_parse(const char *buf, size_t len, const struct hp_limits *lim, size_t *scan,
                        struct hp_req *hr)
{
    size_t max_head = lim->max_head < HP_MAX_HEAD ? lim->max_head : HP_MAX_HEAD;
    size_t start = 0, line_end, q, head_end = 0;
    const char *nl;
    hr->nheaders = 0;
    hr->content_length = 0;
    hr->keep_alive = false;
    hr->expect_continue = false;
    hr->head_len = 0;
    hr->status = 0;
    hr->code = NULL;
    hr->message = NULL;
    while (start < len && (buf[start] == '\r' || buf[start] == '\n')) {
        start++;
    }
    if (start > max_head) {
        return fail(hr, 431, "headers_too_large", "the request head is larger than 16 KiB");
    }
    nl = start < len ? memchr(buf + start, '\n', len - start) : NULL;
    if (nl == NULL) {
        if (len > max_head) {
            return fail(hr, 431, "headers_too_large", "the request head is larger than 16 KiB");
        }
        return HP_MORE;
    }
    line_end = (size_t)(nl - buf);
    if (request_line(buf, start,
                     line_end > start && buf[line_end - 1] == '\r' ? line_end - 1 : line_end,
                     hr) != HP_DONE) {
        return HP_ERROR;
    }
    q = *scan > line_end ? *scan : line_end;
    for (;;) {
        nl = q < len ? memchr(buf + q, '\n', len - q) : NULL;
        if (nl == NULL) {
            *scan = len;
            break;
        }
        size_t i = (size_t)(nl - buf);
        if (i + 1 < len && buf[i + 1] == '\n') {
            head_end = i + 2;
            break;
        }
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
            head_end = i + 3;
            break;
        }
        if (i + 2 >= len) {
            *scan = i; /* may be the start of the empty line: look again with more
                          bytes */
            break;
        }
        q = i + 1;
    }
    if (head_end == 0) {
        if (len > max_head) {
            return fail(hr, 431, "headers_too_large", "the request head is larger than 16 KiB");
        }
        return HP_MORE;
    }
    if (head_end > max_head) {
        return fail(hr, 431, "headers_too_large", "the request head is larger than 16 KiB");
    }
    hr->head_len = head_end;
    if (fields(buf, line_end + 1, head_end, lim, hr) != HP_DONE) {
        hr->head_len = 0;
        return HP_ERROR;
    }
    return HP_DONE;
}

const struct hp_header *hp_header_find(const char *buf, const struct hp_req *hr, const char *name)
{
    for (size_t i = 0; i < hr->nheaders; i++) {
        if (span_ieq(buf, hr->headers[i].name, name)) {
            return &hr->headers[i];
        }
    }
    return NULL;
}

size_t hp_pct_decode(char *s, size_t len, bool plus)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < len && (hi = hex_digit_value((unsigned char)s[i + 1])) >= 0 &&
            (lo = hex_digit_value((unsigned char)s[i + 2])) >= 0) {
            s[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (plus && s[i] == '+') {
            s[o++] = ' ';
        } else {
            s[o++] = s[i];
        }
    }
    return o;
}
