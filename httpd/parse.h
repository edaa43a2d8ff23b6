/*
 * httpd's HTTP/1.1 request parser (internal to httpd/; unit-tested and fuzzed on its own). Pure: no
 * I/O, no allocation. It reads the bytes a connection has buffered so far and says whether they
 * hold a whole request head, need more, or can never become a valid request.
 *
 * Contract: hp_parse() is called with the connection's buffer (which only grows between calls for
 * one request) and the same *scan; *scan starts at 0 and lets the search for the end of the head
 * resume where it stopped. A malformed request line is reported as soon as its line is complete, an
 * oversized head as soon as HP_MAX_HEAD bytes hold no empty line. On HP_DONE the head is
 * hr->head_len bytes (leading empty lines included) and the body is the next hr->content_length
 * bytes; spans are offsets into the buffer. On HP_ERROR hr->status, hr->code and hr->message say
 * what to answer (static strings); the stream cannot continue.
 *
 * Accepted: origin-form targets ("/..."), HTTP/1.0 and HTTP/1.1, CRLF or bare LF line ends, up to
 * HP_MAX_HEADERS header fields, Content-Length bodies up to lim->max_body. Refused: chunked or any
 * other Transfer-Encoding (411, "send Content-Length"), obsolete line folding, whitespace before a
 * header's colon, control characters, conflicting Content-Length values, an HTTP/1.1 request
 * without a Host field, any request with several Host fields or one that is not host[:port].
 */
#ifndef HTTPD_PARSE_H
#define HTTPD_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HP_MAX_HEAD    16384 /* request line and header fields */
#define HP_MAX_HEADERS 64

enum hp_result {
    HP_ERROR = -1,
    HP_MORE = 0,
    HP_DONE = 1
};

struct hp_span {
    size_t off;
    size_t len;
};

struct hp_header {
    struct hp_span name;
    struct hp_span value; /* surrounding whitespace trimmed */
};

struct hp_req {
    struct hp_span method;
    struct hp_span target;   /* path and query as sent */
    int minor;               /* HTTP/1.<minor>, 0 or 1 */
    size_t head_len;         /* bytes up to and including the empty line */
    uint64_t content_length; /* 0 when absent */
    bool keep_alive;         /* from the version and Connection */
    bool expect_continue;    /* Expect: 100-continue */
    size_t nheaders;
    struct hp_header headers[HP_MAX_HEADERS];
    /* HP_ERROR: the answer */
    int status;
    const char *code;
    const char *message; /* static text, or msgbuf */
    char msgbuf[128];
};

struct hp_limits {
    size_t max_head; /* at most HP_MAX_HEAD */
    size_t max_body;
};

enum hp_result hp_parse(const char *buf, size_t len, const struct hp_limits *lim, size_t *scan,
                        struct hp_req *hr);

/* Case-insensitive lookup of a header's value span; NULL when absent (the first of several). */
const struct hp_header *hp_header_find(const char *buf, const struct hp_req *hr, const char *name);

/* Percent-decodes s[0..len) in place ('+' becomes a space when plus); returns the new length. A '%'
 * not followed by two hex digits is kept as is. */
size_t hp_pct_decode(char *s, size_t len, bool plus);

#endif
