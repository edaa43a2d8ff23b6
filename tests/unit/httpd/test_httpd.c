/*
 * httpd: the request parser (httpd/parse.c) on good and bad heads, fed whole and split at every
 * byte boundary, pipelined, at its limits; then the server itself over plain HTTP on loopback (real
 * sockets, the real event loop): keep-alive, pipelining, JSON errors with Connection: close,
 * Expect: 100-continue, Allow on 405, a reply after the client went away; over TLS with
 * httpd_tls_ctx_new both ways: client certificates requested (jitrd) or, with client_ca_pem NULL,
 * not requested at all (the JITR intake).
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"
#include "httpd/httpd.h"
#include "httpd/parse.h"
#include "tests/harness/tt.h"

static const struct hp_limits LIM = { HP_MAX_HEAD, 1000 };

static enum hp_result parse_whole(const char *s, size_t len, struct hp_req *hr)
{
    size_t scan = 0;
    return hp_parse(s, len, &LIM, &scan, hr);
}

static char *span(const char *buf, struct hp_span sp)
{
    return xstrndup(buf + sp.off, sp.len);
}

static int test_good(void)
{
    int rc = 0;
    struct hp_req hr;
    char *m = NULL, *t = NULL, *v = NULL;
    const struct hp_header *f = NULL;
    const char *req = "\r\nGET /v1/crl?ca=devices&format=pem HTTP/1.1\r\nHost: x\r\n"
                      "X-Thing:  spaced value \t\r\nCONTENT-length: 0\r\n\r\n";
    CHECK_INT_EQ(parse_whole(req, strlen(req), &hr), HP_DONE);
    CHECK_INT_EQ(hr.head_len, strlen(req));
    m = span(req, hr.method);
    t = span(req, hr.target);
    CHECK_STR_EQ(m, "GET");
    CHECK_STR_EQ(t, "/v1/crl?ca=devices&format=pem");
    CHECK_INT_EQ(hr.minor, 1);
    CHECK_INT_EQ(hr.nheaders, 3);
    CHECK(hr.keep_alive);
    CHECK(!hr.expect_continue);
    CHECK_INT_EQ(hr.content_length, 0);
    f = hp_header_find(req, &hr, "x-THING");
    CHECK(f != NULL);
    v = span(req, f->value);
    CHECK_STR_EQ(v, "spaced value");
    CHECK(hp_header_find(req, &hr, "absent") == NULL);
out:
    xfree(m);
    xfree(t);
    xfree(v);
    return rc;
}

static int test_connection_semantics(void)
{
    int rc = 0;
    struct hp_req hr;
    static const struct {
        const char *req;
        bool keep, cont;
    } v[] = {
        { "GET / HTTP/1.0\r\n\r\n", false, false },
        { "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true, false },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false, false },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n", false, false },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n", true, false },
        { "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n", true,
          true },
        { "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", false, false },
        { "GET / HTTP/1.1\nHost: bare-lf\n\n", true, false },
    };
    size_t i = 0;
    for (i = 0; i < ARRAY_LEN(v); i++) {
        CHECK_INT_EQ(parse_whole(v[i].req, strlen(v[i].req), &hr), HP_DONE);
        CHECK_INT_EQ(hr.keep_alive, v[i].keep);
        CHECK_INT_EQ(hr.expect_continue, v[i].cont);
    }
out:
    if (rc) {
        fprintf(stderr, "  (case %zu)\n", i);
    }
    return rc;
}

/* Fed one byte more at a time (same scan): HP_MORE until exactly the head's end, then HP_DONE with
 * the same result as the whole. */
static int test_split_every_byte(void)
{
    int rc = 0;
    struct hp_req whole, part;
    const char *req = "POST /v1/sign HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      "application/x-pem-file\r\nContent-Length: 11\r\n\r\nhello world";
    size_t n = strlen(req), scan = 0;
    char *copy = xmalloc(n);
    CHECK_INT_EQ(parse_whole(req, n, &whole), HP_DONE);
    CHECK_INT_EQ(whole.content_length, 11);
    CHECK_INT_EQ(whole.head_len, n - 11);
    for (size_t k = 0; k <= whole.head_len; k++) {
        /* a fresh buffer of exactly k bytes, so ASan catches any read past it */
        xfree(copy);
        copy = xmemdup(req, k ? k : 1);
        enum hp_result r = hp_parse(copy, k, &LIM, &scan, &part);
        if (k < whole.head_len) {
            if (r != HP_MORE) {
                TT_FAIL("prefix of %zu bytes: %d, want HP_MORE", k, (int)r);
            }
        } else {
            CHECK_INT_EQ(r, HP_DONE);
            CHECK_INT_EQ(part.head_len, whole.head_len);
            CHECK_INT_EQ(part.nheaders, 3);
            CHECK_INT_EQ(part.content_length, 11);
            CHECK_INT_EQ(part.target.off, whole.target.off);
        }
    }
out:
    xfree(copy);
    return rc;
}

static int test_pipelined(void)
{
    int rc = 0;
    struct hp_req hr;
    char *t = NULL;
    const char *two = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                      "GET /b?x=1 HTTP/1.1\r\nHost: h\r\n\r\nGET /c HT";
    size_t n = strlen(two), scan = 0, used = 0;
    CHECK_INT_EQ(hp_parse(two, n, &LIM, &scan, &hr), HP_DONE);
    used = hr.head_len + (size_t)hr.content_length;
    CHECK(memcmp(two + hr.head_len, "abc", 3) == 0);
    scan = 0;
    CHECK_INT_EQ(hp_parse(two + used, n - used, &LIM, &scan, &hr), HP_DONE);
    t = span(two + used, hr.target);
    CHECK_STR_EQ(t, "/b?x=1");
    used += hr.head_len;
    scan = 0;
    CHECK_INT_EQ(hp_parse(two + used, n - used, &LIM, &scan, &hr), HP_MORE);
out:
    xfree(t);
    return rc;
}

/* Host: what RFC 9112 §3.2 lets through. */
static int test_host(void)
{
    int rc = 0;
    struct hp_req hr;
    static const char *const ok[] = {
        "GET / HTTP/1.1\r\nHost: jitrd.example:8443\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n",
        "GET / HTTP/1.1\r\nhOsT:   spaced.example  \r\n\r\n",
        "GET / HTTP/1.1\r\nHost:\r\n\r\n", /* empty: allowed (no authority) */
        "GET / HTTP/1.0\r\n\r\n",          /* HTTP/1.0 may leave it out */
        "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
    };
    size_t i = 0;
    for (i = 0; i < ARRAY_LEN(ok); i++) {
        CHECK_INT_EQ(parse_whole(ok[i], strlen(ok[i]), &hr), HP_DONE);
    }
out:
    if (rc) {
        fprintf(stderr, "  (case %zu)\n", i);
    }
    return rc;
}

struct bad_case {
    const char *req;
    int status;
    const char *code;
    const char *msg;
};

static int check_bad(const char *req, size_t len, const struct hp_limits *lim, int status,
                     const char *code, const char *msg)
{
    int rc = 0;
    struct hp_req hr;
    size_t scan = 0;
    enum hp_result r = hp_parse(req, len, lim, &scan, &hr);
    if (r != HP_ERROR) {
        TT_FAIL("%.60s: result %d, want HP_ERROR", req, (int)r);
    }
    CHECK_INT_EQ(hr.status, status);
    CHECK_STR_EQ(hr.code, code);
    CHECK_STR_CONTAINS(hr.message, msg);
    CHECK_INT_EQ(hr.head_len, 0);
out:
    if (rc) {
        fprintf(stderr, "  (case: %.80s)\n", req);
    }
    return rc;
}

static int test_bad(void)
{
    int rc = 0;
    static const struct bad_case v[] = {
        /* the request line is judged as soon as it is whole: no empty line needed / */
        { "GARBAGE\r\n", 400, "bad_request", "malformed request line" },
        { "GET /x\r\n", 400, "bad_request", "malformed request line" },
        { " GET /x HTTP/1.1\r\n", 400, "bad_request", "malformed request line" },
        { "GET  /x HTTP/1.1\r\n", 400, "bad_request", "malformed request line" },
        { "GET /x HTTP/1.1 extra\r\n", 400, "bad_request", "malformed request line" },
        { "GET /x http/1.1\r\n", 400, "bad_request", "malformed request line" },
        { "GET /x HTTP/1.12\r\n", 400, "bad_request", "malformed request line" },
        { "G(T /x HTTP/1.1\r\n", 400, "bad_request", "malformed request line" },
        { "GET /a\x7f HTTP/1.1\r\n", 400, "bad_request", "malformed request line" },
        { "GET x HTTP/1.1\r\n", 400, "bad_request", "absolute path" },
        { "GET http://h/x HTTP/1.1\r\n", 400, "bad_request", "absolute path" },
        { "GET /x HTTP/2.0\r\n", 505, "http_version_not_supported", "HTTP/1.0 and HTTP/1.1" },
        { "GET /x HTTP/0.9\r\n", 505, "http_version_not_supported", "HTTP/1.0 and HTTP/1.1" },
        { "GET /x HTTP/1.1\r\nBad Header: x\r\n\r\n", 400, "bad_request",
          "malformed header field" },
        { "GET /x HTTP/1.1\r\nNoColon\r\n\r\n", 400, "bad_request", "malformed header field" },
        { "GET /x HTTP/1.1\r\n: empty\r\n\r\n", 400, "bad_request", "malformed header field" },
        { "GET /x HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400, "bad_request", "line folding" },
        { "GET /x HTTP/1.1\r\nX: a\x01z\r\n\r\n", 400, "bad_request", "control character" },
        { "GET /x HTTP/1.1\r\nX: a\rz\r\n\r\n", 400, "bad_request", "control character" },
        { "POST /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400, "bad_request", "Content-Length" },
        { "POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "bad_request", "Content-Length" },
        { "POST /x HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 400, "bad_request", "Content-Length" },
        { "POST /x HTTP/1.1\r\nContent-Length:\r\n\r\n", 400, "bad_request", "Content-Length" },
        { "POST /x HTTP/1.1\r\nContent-Length: 12345678901234567890\r\n\r\n", 400, "bad_request",
          "Content-Length" },
        { "POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400, "bad_request",
          "conflicting Content-Length" },
        { "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411, "length_required",
          "send Content-Length" },
        { "POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, "
          "Chunked\r\nContent-Length: 3\r\n\r\n",
          411, "length_required", "chunked" },
        { "POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not_implemented",
          "Transfer-Encoding" },
        { "POST /x HTTP/1.1\r\nExpect: something\r\n\r\n", 417, "expectation_failed",
          "100-continue" },
        { "POST /x HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413, "too_large", "bytes accepted" },
        { "POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: "
          "99999999\r\n\r\n",
          413, "too_large", "bytes accepted" },
        /* Host (RFC 9112 §3.2): exactly one for HTTP/1.1, never two, always host[:port] */
        { "GET /x HTTP/1.1\r\n\r\n", 400, "bad_request", "exactly one Host" },
        { "GET /x HTTP/1.1\r\nX-Host: a\r\n\r\n", 400, "bad_request", "exactly one Host" },
        { "GET /x HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400, "bad_request",
          "more than one Host" },
        { "GET /x HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", 400, "bad_request",
          "more than one Host" },
        { "GET /x HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "bad_request", "not a valid host" },
        { "GET /x HTTP/1.1\r\nHost: user@a\r\n\r\n", 400, "bad_request", "not a valid host" },
        { "GET /x HTTP/1.1\r\nHost: a:80x\r\n\r\n", 400, "bad_request", "not a valid host" },
        { "GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "bad_request", "not a valid host" },
        { "GET /x HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, "bad_request", "not a valid host" },
        { "GET /x HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400, "bad_request", "not a valid host" },
        { "GET /x HTTP/1.1\r\nHost: [zz]\r\n\r\n", 400, "bad_request", "not a valid host" },
    };
    for (size_t i = 0; i < ARRAY_LEN(v); i++) {
        if (check_bad(v[i].req, strlen(v[i].req), &LIM, v[i].status, v[i].code, v[i].msg) != 0) {
            rc = 1;
        }
    }
    /* the same requests with the body still missing are refused as early */
    CHECK_INT_EQ(check_bad("POST /x HTTP/1.1\r\nContent-Length: 1001\r\n\r\n{", 45, &LIM, 413,
                           "too_large", "bytes accepted"),
                 0);
out:
    return rc;
}

static int test_limits(void)
{
    int rc = 0;
    struct buf b = BUF_INIT;
    struct hp_req hr;
    size_t scan = 0;
    struct hp_limits small = { 64, 10 };
    /* a header block that never ends: 431 once 16 KiB hold no empty line */
    buf_addstr(&b, "GET / HTTP/1.1\r\n");
    while (b.len <= HP_MAX_HEAD) {
        buf_addstr(&b, "X-Pad: 0123456789012345678901234567890123456789\r\n");
    }
    CHECK_INT_EQ(hp_parse(b.data, HP_MAX_HEAD - 10, &LIM, &scan, &hr), HP_MORE);
    CHECK_INT_EQ(check_bad(b.data, b.len, &LIM, 431, "headers_too_large", "16 KiB"), 0);
    /* ... and one that ends, but beyond the cap */
    buf_addstr(&b, "\r\n");
    CHECK_INT_EQ(check_bad(b.data, b.len, &LIM, 431, "headers_too_large", "16 KiB"), 0);
    /* a request line longer than the cap, still without its line end */
    buf_reset(&b);
    buf_addstr(&b, "GET /");
    while (b.len <= HP_MAX_HEAD) {
        buf_addch(&b, 'a');
    }
    CHECK_INT_EQ(check_bad(b.data, b.len, &LIM, 431, "headers_too_large", "16 KiB"), 0);
    /* 64 fields are fine, 65 are not */
    buf_reset(&b);
    buf_addstr(&b, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 1; i < HP_MAX_HEADERS; i++) {
        buf_addf(&b, "X-%d: v\r\n", i);
    }
    buf_addstr(&b, "\r\n");
    scan = 0;
    CHECK_INT_EQ(hp_parse(b.data, b.len, &LIM, &scan, &hr), HP_DONE);
    CHECK_INT_EQ(hr.nheaders, HP_MAX_HEADERS);
    b.len -= 2;
    buf_addstr(&b, "X-65: v\r\n\r\n");
    CHECK_INT_EQ(check_bad(b.data, b.len, &LIM, 431, "headers_too_large", "more than 64"), 0);
    /* a smaller cap from the caller */
    CHECK_INT_EQ(check_bad("GET / HTTP/1.1\r\nX-Pad: "
                           "012345678901234567890123456789012345678901234"
                           "567890123456789\r\n\r\n",
                           88, &small, 431, "headers_too_large", "16 KiB"),
                 0);
    CHECK_INT_EQ(check_bad("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 40, &small, 413,
                           "too_large", "bytes accepted"),
                 0);
    scan = 0;
    CHECK_INT_EQ(hp_parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n", 49, &small,
                          &scan, &hr),
                 HP_DONE);
out:
    buf_release(&b);
    return rc;
}

static int test_pct_decode(void)
{
    int rc = 0;
    char s1[] = "%41%2fb+c%4";
    char s2[] = "%41%2fb+c%zz";
    char s3[] = "a%00b";
    size_t n = hp_pct_decode(s1, strlen(s1), false);
    s1[n] = '\0';
    CHECK_STR_EQ(s1, "A/b+c%4");
    n = hp_pct_decode(s2, strlen(s2), true);
    s2[n] = '\0';
    CHECK_STR_EQ(s2, "A/b c%zz");
    n = hp_pct_decode(s3, strlen(s3), false);
    CHECK_INT_EQ(n, 3);
    CHECK(memcmp(s3, "a\0b", 3) == 0);
out:
    return rc;
}

/* --- the server over plain HTTP ------------------------------------------------------------ */

static struct httpd_req *parked;

static void h_echo(struct httpd_req *r, void *arg)
{
    (void)arg;
    size_t len = 0;
    const uint8_t *body = httpd_req_body(r, &len);
    const char *why = NULL;
    X509 *cert = httpd_req_client_cert(r);
    STACK_OF(X509) *chain = httpd_req_client_chain(r, &why);
    struct buf b = BUF_INIT;
    char peer[64];
    httpd_req_peer(r, peer, sizeof(peer));
    buf_addf(&b, "%s|%s|%s|%s|%s|%s|peer=%s|", httpd_req_method(r), httpd_req_path(r),
             httpd_req_query(r, "q") ? httpd_req_query(r, "q") : "-",
             httpd_req_header(r, "x-test") ? httpd_req_header(r, "x-test") : "-",
             cert || chain ? "cert" : "nocert", why, peer);
    buf_add(&b, body, len);
    httpd_req_add_header(r, "X-Extra", "yes");
    httpd_req_add_header(r, "X-Bad", "a\r\nInjected: 1");
    httpd_reply(r, 200, "text/plain", b.data, b.len);
    buf_release(&b);
}

static void h_item(struct httpd_req *r, void *arg)
{
    (void)arg;
    httpd_reply(r, 200, "text/plain", httpd_req_param(r), strlen(httpd_req_param(r)));
}

static void h_park(struct httpd_req *r, void *arg)
{
    (void)arg;
    parked = r;
}

static const struct httpd_route routes[] = {
    { "POST", "/echo", 0, "echo", h_echo },
    { "GET", "/echo", 0, "echo_get", h_echo },
    { "GET", "/items/", HTTPD_ROUTE_PREFIX, "item", h_item },
    { "GET", "/park", 0, "park", h_park },
};

static SSL_CTX *srv_ssl; /* the servers' SSL_CTX: NULL = plain HTTP */

static SSL_CTX *srv_ssl_ctx(void *arg)
{
    (void)arg;
    return srv_ssl;
}

struct srv {
    struct event_base *base;
    struct httpd *h;
    int port;
    int ndone;
    int last_status;
    int nrefused;
    char refused[160]; /* "STATUS CODE PEER" of the last refusal */
};

static void on_refused(void *arg, int status, const char *code, const char *peer)
{
    struct srv *s = arg;
    s->nrefused++;
    snprintf(s->refused, sizeof(s->refused), "%d %s %s", status, code, peer);
}

static void on_done(void *arg, int rt, int status, int64_t ns)
{
    (void)rt;
    (void)ns;
    struct srv *s = arg;
    s->ndone++;
    s->last_status = status;
}

static int srv_start(struct srv *s, int request_timeout)
{
    struct err e = ERR_INIT;
    struct httpd_opts o;
    char listen[64];
    memset(s, 0, sizeof(*s));
    s->base = event_base_new();
    if (s->base == NULL) {
        return -1;
    }
    for (int attempt = 0; attempt < 20 && s->h == NULL; attempt++) {
        s->port = 20000 + (int)((unsigned)getpid() * 7u + (unsigned)attempt * 131u) % 40000;
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", s->port);
        memset(&o, 0, sizeof(o));
        o.listen = listen;
        o.max_body = 1000;
        o.request_timeout = request_timeout;
        o.idle_timeout = 30;
        o.max_conns = 16;
        o.routes = routes;
        o.nroutes = ARRAY_LEN(routes);
        o.ssl_ctx = srv_ssl_ctx;
        o.done = on_done;
        o.refused = on_refused;
        o.arg = s;
        s->h = httpd_new(s->base, &o, &e);
        if (s->h == NULL) {
            fprintf(stderr, "  (httpd_new: %s)\n", e.msg);
            e = (struct err)ERR_INIT;
        }
    }
    return s->h ? 0 : -1;
}

static void srv_stop(struct srv *s)
{
    httpd_free(s->h);
    if (s->base) {
        event_base_free(s->base);
    }
}

static int cli_connect(const struct srv *s)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)s->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

static void cli_send(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0) {
            return;
        }
        data += n;
        len -= (size_t)n;
    }
}

static void cli_sends(int fd, const char *s)
{
    cli_send(fd, s, strlen(s));
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

/* Runs the server's loop and reads from fd until `want` status lines arrived (and their bodies: a
 * short grace period), EOF, or ms passed. *eof says whether the server closed. */
static void cli_recv(struct srv *s, int fd, struct buf *out, size_t want, int ms, bool *eof)
{
    int64_t end = time_mono_ns() + (int64_t)ms * 1000000;
    int64_t settle = 0;
    *eof = false;
    while (time_mono_ns() < end) {
        char tmp[4096];
        struct pollfd p = { fd, POLLIN, 0 };
        event_base_loop(s->base, EVLOOP_NONBLOCK);
        if (poll(&p, 1, 5) == 1) {
            ssize_t n = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
            if (n > 0) {
                buf_add(out, tmp, (size_t)n);
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                *eof = true;
                return;
            }
        }
        if (settle == 0 && count(buf_cstr(out), "HTTP/1.1 ") >= want && want > 0) {
            settle = time_mono_ns() + 50000000;
        }
        if (settle && time_mono_ns() > settle) {
            return;
        }
    }
}

static int test_server(void)
{
    int rc = 0, fd = -1;
    struct srv s;
    struct buf in = BUF_INIT;
    bool eof = false;
    int before = 0;
    const char *three = "POST /echo?q=a%20b+c HTTP/1.1\r\nHost: h\r\nX-Test: "
                        "one\r\nContent-Length: 5\r\n\r\n"
                        "hello"
                        "GET /items/42 HTTP/1.1\r\nHost: h\r\n\r\n"
                        "GET /echo HTTP/1.1\r\nHost: h\r\nX-Test: three\r\n\r\n";
    CHECK_INT_EQ(srv_start(&s, 5), 0);

    /* keep-alive and pipelining: three requests in one send, three replies in order */
    fd = cli_connect(&s);
    CHECK(fd >= 0);
    cli_send(fd, three, strlen(three));
    cli_recv(&s, fd, &in, 3, 3000, &eof);
    CHECK(!eof);
    CHECK_INT_EQ(count(in.data, "HTTP/1.1 200 OK\r\n"), 3);
    CHECK_STR_CONTAINS(in.data,
                       "POST|/echo|a b c|one|nocert|no client certificate|peer=127.0.0.1|hello");
    CHECK_STR_CONTAINS(in.data, "\r\n\r\n42HTTP/1.1 200");
    CHECK_STR_CONTAINS(in.data, "GET|/echo|-|three|");
    CHECK(strstr(in.data, "POST|") < strstr(in.data, "42HTTP") &&
          strstr(in.data, "42HTTP") < strstr(in.data, "GET|"));
    CHECK_STR_CONTAINS(in.data, "X-Extra: yes\r\n");
    CHECK(strstr(in.data, "Injected") == NULL);
    CHECK_STR_CONTAINS(in.data, "X-Request-Id: ");
    {
        /* request ids are random: no worker prefix shared by consecutive requests, no counter */
        const char *p1 = strstr(in.data, "X-Request-Id: ");
        const char *p2 = p1 ? strstr(p1 + 1, "X-Request-Id: ") : NULL;
        CHECK(p2 != NULL);
        CHECK(strspn(p1 + 14, "0123456789abcdef") == 16 &&
              strspn(p2 + 14, "0123456789abcdef") == 16);
        CHECK(memcmp(p1 + 14, p2 + 14, 8) != 0);
    }
    CHECK(strstr(in.data, "Connection: close") == NULL);
    CHECK_INT_EQ(httpd_connections(s.h), 1);

    /* 404 and 405 (with Allow) keep the connection */
    buf_reset(&in);
    cli_sends(fd,
              "GET /nothing HTTP/1.1\r\nHost: h\r\n\r\nDELETE /echo HTTP/1.1\r\nHost: h\r\n\r\n");
    cli_recv(&s, fd, &in, 2, 3000, &eof);
    CHECK_STR_CONTAINS(in.data, "HTTP/1.1 404 Not Found\r\n");
    CHECK_STR_CONTAINS(in.data,
                       "{\"error\":{\"code\":\"not_found\",\"message\":\"no such endpoint\"}}");
    CHECK_STR_CONTAINS(in.data, "HTTP/1.1 405 Method Not Allowed\r\n");
    CHECK_STR_CONTAINS(in.data, "Allow: POST, GET\r\n");
    CHECK(!eof);

    /* Expect: 100-continue, then the body, then the reply */
    buf_reset(&in);
    cli_sends(fd, "POST /echo HTTP/1.1\r\nHost: h\r\nExpect: "
                  "100-continue\r\nContent-Length: 4\r\n\r\n");
    cli_recv(&s, fd, &in, 1, 3000, &eof);
    CHECK_STR_EQ(in.data, "HTTP/1.1 100 Continue\r\n\r\n");
    cli_sends(fd, "body");
    buf_reset(&in);
    cli_recv(&s, fd, &in, 1, 3000, &eof);
    CHECK_STR_CONTAINS(in.data, "HTTP/1.1 200 OK\r\n");
    CHECK_STR_CONTAINS(in.data, "|body");

    /* a body above max_body: 413 JSON at once (no 100 Continue), then the server closes */
    buf_reset(&in);
    cli_sends(fd, "POST /echo HTTP/1.1\r\nExpect: "
                  "100-continue\r\nContent-Length: 1001\r\n\r\n");
    cli_recv(&s, fd, &in, 1, 3000, &eof);
    CHECK_STR_CONTAINS(in.data, "HTTP/1.1 413 Payload Too Large\r\n");
    CHECK(strstr(in.data, "100 Continue") == NULL);
    CHECK_STR_CONTAINS(in.data, "Connection: close\r\n");
    CHECK_STR_CONTAINS(in.data, "\"code\":\"too_large\"");
    CHECK_STR_CONTAINS(in.data, "Content-Type: application/json\r\n");
    cli_recv(&s, fd, &in, 0, 3000, &eof);
    CHECK(eof);
    close(fd);
    fd = -1;

    /* a malformed request line: 400 JSON and close, even with a body behind it */
    static const struct {
        const char *req, *status, *code;
    } bad[] = {
        { "BLAH\r\n", "400 Bad Request", "bad_request" },
        { "GET /x HTTP/3.0\r\nHost: x\r\n\r\n", "505 HTTP Version Not Supported",
          "http_version_not_supported" },
        { "POST /echo HTTP/1.1\r\nTransfer-Encoding: "
          "chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
          "411 Length Required", "length_required" },
        { "GET /echo HTTP/1.1\r\nContent-Length: x\r\n\r\n", "400 Bad Request", "bad_request" },
        { "GET /echo HTTP/1.1\r\n\r\n", "400 Bad Request", "exactly one Host" },
        { "GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400 Bad Request",
          "more than one Host" },
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        fd = cli_connect(&s);
        CHECK(fd >= 0);
        buf_reset(&in);
        before = s.nrefused;
        cli_send(fd, bad[i].req, strlen(bad[i].req));
        cli_recv(&s, fd, &in, 1, 3000, &eof);
        cli_recv(&s, fd, &in, 0, 3000, &eof);
        CHECK_STR_CONTAINS(in.data, bad[i].status);
        CHECK_STR_CONTAINS(in.data, bad[i].code);
        CHECK_STR_CONTAINS(in.data, "Connection: close\r\n");
        CHECK(eof);
        /* the server's own refusals are reported with the client's address */
        CHECK_INT_EQ(s.nrefused, before + 1);
        CHECK_STR_CONTAINS(s.refused, " 127.0.0.1");
        CHECK(strncmp(s.refused, bad[i].status, 4) == 0);
        close(fd);
        fd = -1;
    }

    /* headers above 16 KiB: 431 */
    fd = cli_connect(&s);
    CHECK(fd >= 0);
    buf_reset(&in);
    {
        struct buf big = BUF_INIT;
        buf_addstr(&big, "GET /echo HTTP/1.1\r\n");
        while (big.len < 20000) {
            buf_addstr(&big, "X-Pad: 0123456789012345678901234567890123456789\r\n");
        }
        buf_addstr(&big, "\r\n");
        cli_send(fd, big.data, big.len);
        buf_release(&big);
    }
    cli_recv(&s, fd, &in, 1, 3000, &eof);
    CHECK_STR_CONTAINS(in.data, "HTTP/1.1 431 Request Header Fields Too Large\r\n");
    CHECK_STR_CONTAINS(in.data, "\"code\":\"headers_too_large\"");
    close(fd);
    fd = -1;

    /* HTTP/1.0: closed after the reply; keep-alive on request */
    fd = cli_connect(&s);
    CHECK(fd >= 0);
    buf_reset(&in);
    cli_sends(fd, "GET /items/7 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    cli_recv(&s, fd, &in, 1, 3000, &eof);
    CHECK_STR_CONTAINS(in.data, "Connection: keep-alive\r\n");
    CHECK(!eof);
    buf_reset(&in);
    cli_sends(fd, "GET /items/8 HTTP/1.0\r\n\r\n");
    cli_recv(&s, fd, &in, 1, 3000, &eof);
    cli_recv(&s, fd, &in, 0, 3000, &eof);
    CHECK_STR_CONTAINS(in.data, "Connection: close\r\n\r\n8");
    CHECK(eof);
    close(fd);
    fd = -1;

    /* a reply after the client went away is dropped; the request stayed valid */
    fd = cli_connect(&s);
    CHECK(fd >= 0);
    parked = NULL;
    cli_sends(fd, "GET /park?q=kept HTTP/1.1\r\nHost: h\r\nX-Test: still here\r\n\r\n");
    cli_recv(&s, fd, &in, 1, 300, &eof);
    CHECK(parked != NULL);
    CHECK_INT_EQ(httpd_requests_in_flight(s.h), 1);
    close(fd);
    fd = -1;
    for (int i = 0; i < 20; i++) {
        event_base_loop(s.base, EVLOOP_NONBLOCK);
        usleep(5000);
    }
    /* a plain client's EOF may be a half-close: the connection waits for the reply */
    CHECK_STR_EQ(httpd_req_query(parked, "q"), "kept");
    CHECK_STR_EQ(httpd_req_header(parked, "X-TEST"), "still here");
    before = s.ndone;
    httpd_reply_error(parked, 503, "unavailable", "late");
    parked = NULL;
    CHECK_INT_EQ(s.ndone, before + 1);
    CHECK_INT_EQ(s.last_status, 503);
    CHECK_INT_EQ(httpd_requests_in_flight(s.h), 0);
    for (int i = 0; i < 50 && httpd_connections(s.h) > 0; i++) {
        event_base_loop(s.base, EVLOOP_NONBLOCK);
        usleep(10000);
    }
    CHECK_INT_EQ(httpd_connections(s.h), 0);

    /* a connection closed by the server under a parked request (httpd_free, or a reset): the reply
     * is dropped quietly */
    fd = cli_connect(&s);
    CHECK(fd >= 0);
    cli_sends(fd, "GET /park HTTP/1.1\r\nHost: h\r\n\r\n");
    cli_recv(&s, fd, &in, 1, 300, &eof);
    CHECK(parked != NULL);
    {
        struct linger lg = { 1, 0 };
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)); /* close sends a reset */
    }
    close(fd);
    fd = -1;
    for (int i = 0; i < 50 && httpd_connections(s.h) > 0; i++) {
        event_base_loop(s.base, EVLOOP_NONBLOCK);
        usleep(10000);
    }
    CHECK_INT_EQ(httpd_connections(s.h), 0);
    before = s.ndone;
    httpd_reply_error(parked, 503, "unavailable", "after the reset");
    parked = NULL;
    CHECK_INT_EQ(s.ndone, before + 1);
    CHECK_INT_EQ(httpd_requests_in_flight(s.h), 0);
out:
    if (fd >= 0) {
        close(fd);
    }
    if (parked) {
        httpd_reply_error(parked, 503, "unavailable", "test cleanup");
    }
    buf_release(&in);
    srv_stop(&s);
    return rc;
}

/* Request ids come from a pool of CSPRNG bytes refilled when used up: 200 requests (several
 * refills) get 200 distinct ids of 16 hex digits. */
static int test_request_ids(void)
{
    enum {
        N = 200
    };
    int rc = 0, fd = -1;
    struct srv s;
    struct buf in = BUF_INIT, reqs = BUF_INIT;
    bool eof = false;
    static char ids[N][17];
    size_t n = 0;
    CHECK_INT_EQ(srv_start(&s, 5), 0);
    fd = cli_connect(&s);
    CHECK(fd >= 0);
    for (int i = 0; i < N; i++) {
        buf_addf(&reqs, "GET /items/%d HTTP/1.1\r\nHost: h\r\n\r\n", i);
    }
    cli_send(fd, reqs.data, reqs.len);
    cli_recv(&s, fd, &in, N, 10000, &eof);
    CHECK(!eof);
    for (const char *p = strstr(buf_cstr(&in), "X-Request-Id: "); p && n < N;
         p = strstr(p + 1, "X-Request-Id: ")) {
        CHECK(strspn(p + 14, "0123456789abcdef") == 16);
        memcpy(ids[n], p + 14, 16);
        ids[n++][16] = '\0';
    }
    CHECK_INT_EQ(n, N);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = i + 1; k < n; k++) {
            CHECK(strcmp(ids[i], ids[k]) != 0);
        }
    }
out:
    if (fd >= 0) {
        close(fd);
    }
    buf_release(&in);
    buf_release(&reqs);
    srv_stop(&s);
    return rc;
}

/* request_timeout: a partial request gets 408 and the connection closes; an idle one closes. */
static int test_server_deadline(void)
{
    int rc = 0, fd = -1, fd2 = -1;
    struct srv s;
    struct buf in = BUF_INIT;
    bool eof = false;
    int64_t t0 = 0, ms = 0;
    CHECK_INT_EQ(srv_start(&s, 1), 0);
    fd = cli_connect(&s);
    fd2 = cli_connect(&s);
    CHECK(fd >= 0 && fd2 >= 0);
    cli_sends(fd, "GET /echo HTTP/1.1\r\nX-Slow: ");
    t0 = time_mono_ns();
    cli_recv(&s, fd, &in, 1, 3000, &eof);
    cli_recv(&s, fd, &in, 0, 3000, &eof);
    ms = (time_mono_ns() - t0) / 1000000;
    CHECK_STR_CONTAINS(in.data, "HTTP/1.1 408 Request Timeout\r\n");
    CHECK_STR_EQ(s.refused, "408 request_timeout 127.0.0.1");
    CHECK_STR_CONTAINS(in.data, "\"code\":\"request_timeout\"");
    CHECK(eof);
    CHECK(ms >= 900 && ms < 2500);
    buf_reset(&in);
    cli_recv(&s, fd2, &in, 0, 3000, &eof);
    CHECK(eof);
    CHECK_INT_EQ(in.len, 0);
    CHECK_INT_EQ(httpd_connections(s.h), 0);
out:
    if (fd >= 0) {
        close(fd);
    }
    if (fd2 >= 0) {
        close(fd2);
    }
    buf_release(&in);
    srv_stop(&s);
    return rc;
}

/* ---- TLS ------------------------------------------------------------------------------------ */

static bool cert_requested;

static int client_cert_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    (void)ssl;
    (void)x509;
    (void)pkey;
    cert_requested = true;
    return 0; /* no certificate */
}

/* A TLS client (no certificate) on the server's loop: handshake, one GET /echo with Connection:
 * close, the whole reply into out. 0 when the exchange ran to the server's close. */
static int tls_get(struct srv *s, struct buf *out)
{
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    const char *req = "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    size_t sent = 0;
    bool shook = false;
    int fd = cli_connect(s), rc = -1;
    int64_t end = time_mono_ns() + 5000000000LL;
    cert_requested = false;
    if (cctx == NULL || fd < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
        goto done;
    }
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL); /* the server side is under test */
    SSL_CTX_set_client_cert_cb(cctx, client_cert_cb);
    ssl = SSL_new(cctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        goto done;
    }
    SSL_set_connect_state(ssl);
    while (time_mono_ns() < end) {
        struct pollfd p = { fd, POLLIN, 0 };
        char tmp[4096];
        int n, err;
        event_base_loop(s->base, EVLOOP_NONBLOCK);
        ERR_clear_error();
        if (!shook) {
            n = SSL_do_handshake(ssl);
            shook = n == 1;
        } else if (sent < strlen(req)) {
            n = SSL_write(ssl, req + sent, (int)(strlen(req) - sent));
            sent += n > 0 ? (size_t)n : 0;
        } else {
            n = SSL_read(ssl, tmp, sizeof(tmp));
            if (n > 0) {
                buf_add(out, tmp, (size_t)n);
            }
        }
        if (n > 0) {
            continue;
        }
        err = SSL_get_error(ssl, n);
        if (err == SSL_ERROR_ZERO_RETURN || (shook && err == SSL_ERROR_SYSCALL)) {
            rc = 0; /* close_notify, or the FIN after it */
            break;
        }
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
            break;
        }
        (void)poll(&p, 1, 5);
    }
done:
    SSL_free(ssl);
    SSL_CTX_free(cctx);
    ERR_clear_error();
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

static int test_tls(void)
{
    int rc = 0;
    struct srv s;
    struct err e = ERR_INIT;
    struct buf in = BUF_INIT, ca = BUF_INIT;
    char cert[512], key[512];
    bool started = false;
    snprintf(cert, sizeof(cert), "%s/tls-cert.pem", tt_tmpdir());
    snprintf(key, sizeof(key), "%s/tls-key.pem", tt_tmpdir());
    CHECK_INT_EQ(tt_sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                       "-keyout '%s' -out '%s' -subj /CN=localhost -days 2 2>/dev/null && "
                       "chmod 600 '%s'",
                       key, cert, key),
                 0);
    CHECK_OK(file_read_all(cert, 65536, &ca, &e), &e);

    /* client_ca_pem NULL: no certificate requested, no CA list; the request is served and the
     * handler is told there is no client certificate */
    srv_ssl = httpd_tls_ctx_new(cert, key, NULL, &e);
    CHECK(srv_ssl != NULL);
    CHECK_INT_EQ(SSL_CTX_get_verify_mode(srv_ssl), SSL_VERIFY_NONE);
    CHECK_INT_EQ(sk_X509_NAME_num(SSL_CTX_get_client_CA_list(srv_ssl)), 0);
    CHECK_INT_EQ(srv_start(&s, 5), 0);
    started = true;
    CHECK_INT_EQ(tls_get(&s, &in), 0);
    CHECK_STR_CONTAINS(buf_cstr(&in), "HTTP/1.1 200 OK\r\n");
    CHECK_STR_CONTAINS(buf_cstr(&in), "\r\n\r\nGET|/echo|-|-|nocert|a client certificate is "
                                      "required|");
    CHECK(!cert_requested);
    srv_stop(&s);
    started = false;
    SSL_CTX_free(srv_ssl);
    srv_ssl = NULL;

    /* with client CAs (jitrd): requested and verified against them, CA list sent; a client
     * without one is still served (the route decides) */
    srv_ssl = httpd_tls_ctx_new(cert, key, buf_cstr(&ca), &e);
    CHECK(srv_ssl != NULL);
    CHECK_INT_EQ(SSL_CTX_get_verify_mode(srv_ssl), SSL_VERIFY_PEER);
    CHECK_INT_EQ(sk_X509_NAME_num(SSL_CTX_get_client_CA_list(srv_ssl)), 1);
    CHECK_INT_EQ(srv_start(&s, 5), 0);
    started = true;
    buf_reset(&in);
    CHECK_INT_EQ(tls_get(&s, &in), 0);
    CHECK_STR_CONTAINS(buf_cstr(&in), "HTTP/1.1 200 OK\r\n");
    CHECK_STR_CONTAINS(buf_cstr(&in), "|nocert|a client certificate is required|");
    CHECK(cert_requested);
    srv_stop(&s);
    started = false;
    SSL_CTX_free(srv_ssl);
    srv_ssl = NULL;

    /* "" is not "no client certificates": an error, as PEM without a certificate is */
    CHECK(httpd_tls_ctx_new(cert, key, "", &e) == NULL);
    CHECK_STR_CONTAINS(e.msg, "no client CA certificate to verify stations with");
    e = (struct err)ERR_INIT;
    /* the key's permissions are checked with or without client CAs */
    CHECK_INT_EQ(tt_sh("chmod 644 '%s'", key), 0);
    CHECK(httpd_tls_ctx_new(cert, key, NULL, &e) == NULL);
    CHECK_STR_CONTAINS(e.msg, "tls_key_file");
    e = (struct err)ERR_INIT;
    CHECK(httpd_tls_ctx_new("", key, NULL, &e) == NULL);
    CHECK_STR_CONTAINS(e.msg, "tls_cert_file and tls_key_file must name");
out:
    if (started) {
        srv_stop(&s);
    }
    SSL_CTX_free(srv_ssl);
    srv_ssl = NULL;
    buf_release(&in);
    buf_release(&ca);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "good", test_good },
        { "connection_semantics", test_connection_semantics },
        { "split_every_byte", test_split_every_byte },
        { "pipelined", test_pipelined },
        { "bad", test_bad },
        { "host", test_host },
        { "limits", test_limits },
        { "pct_decode", test_pct_decode },
        { "server", test_server },
        { "request_ids", test_request_ids },
        { "server_deadline", test_server_deadline },
        { "tls", test_tls },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
