/*
 * httpd.h on non-blocking sockets, OpenSSL SSL objects and three plain libevent events per
 * connection; the request head is parsed by parse.c.
 *
 * Syscalls: the read event is persistent and level-triggered, added once per connection; the write
 * event is added only when a write would block (and removed when the output drained), so a
 * request/response exchange costs no epoll_ctl. Reads go through an SSL with read_ahead on: one
 * read(2) pulls in every record the socket holds; a pass stops after a short read with no record
 * data left in the SSL (more would wake the level-triggered event again). A reply is built whole
 * (status line, headers, body) in the connection's output buffer and written with one SSL_write:
 * one TLS record and one write(2) for replies up to 16 KiB. Pipelined requests are parsed one at a
 * time, each only after the previous reply was queued; replies queued in one pass go out in one
 * write.
 *
 * Connections: struct hconn owns the socket, the SSL, the input buffer (grown up to the head cap +
 * max_body + 4 KiB, then reading pauses until the request in flight is answered) and the output
 * buffer. A dispatched request takes its own copy of its bytes and a reference to the SSL, so it
 * stays valid when the connection closes under it (the hconn then clears r->conn and the reply is
 * dropped). Replies made from inside a handler called by the connection's own processing only
 * queue; the processing flushes once it is done (no re-entry, no free under our feet).
 *
 * Deadlines (one timer per connection): a request must arrive whole within request_timeout of the
 * connection's start or of the previous response having been sent (a client dribbling a header is
 * cut off); a silent keep-alive connection is closed at the same deadline, or after idle_timeout
 * when that is shorter. The timer stops while a request is with its handler. A reply the client
 * does not read within idle_timeout closes the connection. On the deadline a partial request gets a
 * 408 JSON reply (one write attempt) and the connection is closed.
 *
 * Errors the stream cannot continue after (parse.h: 400, 411, 413, 417, 431, 501, 505) are answered
 * in JSON with Connection: close; then the server sends close_notify, shuts its side down and reads
 * and discards what the client still sends for up to LINGER_SECONDS, so the client sees the answer
 * instead of a reset (a body above max_body is refused as soon as its Content-Length is read, and
 * Expect: 100-continue gets the 413 instead of 100 Continue). Chunked request bodies are refused
 * with 411 (stations send Content-Length).
 *
 * TLS: session resumption is off (no cache, no tickets) so every connection presents and verifies
 * its client certificate afresh. Without an SSL_CTX (ssl_ctx NULL or returning NULL) the connection
 * is plain HTTP and has no client certificate.
 */
#include "httpd/httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/util.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "httpd/parse.h"

#define IN_MIN 4096
#define IN_SLACK                                                \
    4096 /* room for a pipelined request behind the largest one \
          */
#define OUT_PAUSE                                                                 \
    65536                    /* unsent output above which pipelined requests wait \
                              */
#define OUT_KEEP       65536 /* output buffers above this are released once sent */
#define LINGER_SECONDS 2
#define MAX_QUERY      32
#define REQ_ID_BYTES   8 /* random bytes of a request id: 16 hex digits */

/* A connection's phase; conn_set_phase is the one place it changes. Requests follow each other
 * HEAD -> BODY (-> CONTINUED) -> HANDLER -> HEAD ...; a reply with Connection: close, or the
 * client's end of input, leads to CLOSING, and the output sent to LINGER. */
enum cphase {
    CP_HANDSHAKE, /* TLS handshake */
    CP_HEAD,      /* waiting for, or reading, a request head */
    CP_BODY,      /* hr holds the head of the request being received; reading its body */
    CP_CONTINUED, /* the same after 100 Continue was sent for it */
    CP_HANDLER,   /* the request is with its handler (req); what follows it waits */
    CP_CLOSING,   /* no further request: the one with its handler (req, if any) and the output
                     finish, then LINGER */
    CP_LINGER     /* close_notify and FIN sent: what the client still sends is discarded */
};

struct hconn {
    struct httpd *h;
    struct hconn *prev, *next;
    int fd;
    struct sockaddr_storage peer; /* from accept4 */
    socklen_t peer_len;
    SSL *ssl; /* NULL: plain HTTP */
    struct event *rev, *wev, *timer;
    enum cphase phase;
    /* not phases: what libevent watches, a guard against re-entry, a fact about the client and
     * one about the output */
    bool reading; /* rev added */
    bool writing; /* wev added */
    bool busy;    /* in conn_process: replies only queue */
    bool eof;     /* the client finished sending */
    bool replied; /* a reply was queued since the last flush */
    char *in;
    size_t in_len, in_cap, scan;
    struct buf out;
    size_t out_off;
    struct httpd_req *req; /* with its handler */
    struct hp_req hr;
};

struct httpd {
    struct event_base *base;
    struct httpd_opts o;
    int lfd;
    struct event *lev;
    struct event *resume; /* re-enables accepting after EMFILE */
    bool paused;          /* listener disabled at max_conns or after EMFILE */
    struct hconn *conns;
    size_t nconns;
    size_t inflight;
    size_t in_max;
    uint64_t seq;
    uint32_t id_prefix;
    /* request ids are drawn from here, refilled by one RAND_bytes when used up (a RAND_bytes per
     * request cost a DRBG generation and, in OpenSSL 3.0, a getpid(2) for its fork check);
     * filled only once requests arrive, so in the process that serves them */
    uint8_t id_rnd[512];
    size_t id_rnd_off;
};

struct httpd_hdr {
    const char *name;
    const char *value;
};

struct httpd_req {
    struct httpd *h;
    struct hconn *conn; /* NULL once the client is gone */
    SSL *ssl;           /* own reference */
    int route;
    bool keep_alive;
    int minor;
    char *raw; /* the request's bytes, NUL-terminated pieces */
    const char *path;
    const char *param;
    const uint8_t *body;
    size_t body_len;
    struct httpd_hdr *hdrs;
    size_t nhdrs;
    struct httpd_hdr query[MAX_QUERY];
    size_t nquery;
    struct buf extra; /* "Name: value\r\n" lines from httpd_req_add_header */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    int64_t t0;
    char id[24];
};

static void conn_process(struct hconn *c);

static void conn_set_phase(struct hconn *c, enum cphase p)
{
    c->phase = p;
}

/* After the handshake and before lingering: requests and replies may flow. */
static bool conn_open(const struct hconn *c)
{
    return c->phase >= CP_HEAD && c->phase <= CP_CLOSING;
}

/* A request is being received: the input is parsed. */
static bool conn_receiving(const struct hconn *c)
{
    return c->phase == CP_HEAD || c->phase == CP_BODY || c->phase == CP_CONTINUED;
}

/* Adds (without a timeout) or removes ev as on says; *added says which it is. */
static void ev_watch(struct event *ev, bool *added, bool on, const char *what)
{
    if (on == *added) {
        return;
    }
    if (on) {
        if (event_add(ev, NULL) != 0) {
            log_error("cannot %s", what);
            return;
        }
    } else {
        event_del(ev);
    }
    *added = on;
}

static void listener_set(struct httpd *h, bool on)
{
    bool accepting = !h->paused;
    if (h->lev != NULL) {
        ev_watch(h->lev, &accepting, on, "resume accepting connections");
        h->paused = !accepting;
    }
}

static void conn_set_read(struct hconn *c, bool on)
{
    ev_watch(c->rev, &c->reading, on, "watch a connection for reading");
}

static void conn_set_write(struct hconn *c, bool on)
{
    ev_watch(c->wev, &c->writing, on, "watch a connection for writing");
}

static void conn_arm(struct hconn *c, int seconds)
{
    if (seconds <= 0) {
        event_del(c->timer);
        return;
    }
    struct timeval tv = { seconds, 0 };
    event_add(c->timer, &tv);
}

/* The deadline for the next request (from now: the connection's start or a response sent). */
static void conn_arm_request(struct hconn *c)
{
    int t = c->h->o.request_timeout;
    int idle = c->h->o.idle_timeout;
    if (idle > 0 && (t <= 0 || idle < t)) {
        t = idle;
    }
    conn_arm(c, t);
}

static void conn_close(struct hconn *c)
{
    struct httpd *h = c->h;
    if (c->req) {
        c->req->conn = NULL;
    }
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        h->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    event_free(c->rev);
    event_free(c->wev);
    event_free(c->timer);
    SSL_free(c->ssl);
    ERR_clear_error();
    close(c->fd);
    xfree(c->in);
    buf_release(&c->out);
    xfree(c);
    h->nconns--;
    if (h->paused && h->lev && h->nconns < h->o.max_conns &&
        event_pending(h->resume, EV_TIMEOUT, NULL) == 0) {
        listener_set(h, true);
    }
}

/* After a Connection: close reply: close_notify, FIN, and discard what the client still sends until
 * it closes or LINGER_SECONDS pass. Frees c when the client already finished. */
static void conn_linger(struct hconn *c)
{
    if (c->eof) {
        conn_close(c);
        return;
    }
    if (c->ssl && conn_open(c)) {
        (void)SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
    shutdown(c->fd, SHUT_WR);
    conn_set_phase(c, CP_LINGER);
    conn_set_write(c, false);
    conn_set_read(c, true);
    conn_arm(c, LINGER_SECONDS);
}

static void conn_linger_read(struct hconn *c)
{
    char tmp[4096];
    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(c->fd, tmp, sizeof(tmp), 0);
        if (n > 0) {
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN)) {
            return;
        }
        break;
    }
    conn_close(c);
}

/* Writes the output. false when the connection was closed (c is gone). */
static bool conn_flush(struct hconn *c)
{
    while (c->out_off < c->out.len) {
        size_t left = c->out.len - c->out_off;
        int want = left > INT_MAX ? INT_MAX : (int)left;
        if (c->ssl) {
            ERR_clear_error(); /* SSL_get_error needs an empty queue; handlers may leave one */
            int n = SSL_write(c->ssl, c->out.data + c->out_off, want);
            if (n > 0) {
                c->out_off += (size_t)n;
                continue;
            }
            int err = SSL_get_error(c->ssl, n);
            if (err == SSL_ERROR_WANT_WRITE) {
                conn_set_write(c, true);
                conn_arm(c, c->h->o.idle_timeout);
                return true;
            }
            if (err == SSL_ERROR_WANT_READ) {
                /* renegotiation is off, so hardly ever: the read event retries, the timer ends a
                 * connection stuck here */
                conn_arm(c, c->h->o.idle_timeout);
                return true;
            }
            log_debug("a client went away before its reply was sent");
            conn_close(c);
            return false;
        }
        ssize_t n = send(c->fd, c->out.data + c->out_off, (size_t)want, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN)) {
            conn_set_write(c, true);
            conn_arm(c, c->h->o.idle_timeout);
            return true;
        }
        log_debug("a client went away before its reply was sent");
        conn_close(c);
        return false;
    }
    if (c->out.cap > OUT_KEEP) {
        buf_release(&c->out);
    } else {
        buf_reset(&c->out);
    }
    c->out_off = 0;
    conn_set_write(c, false);
    if (c->req == NULL && c->phase == CP_CLOSING) {
        conn_linger(c);
        return false;
    }
    if (c->replied) {
        c->replied = false;
        if (c->req == NULL) {
            conn_arm_request(c);
        }
    }
    return true;
}

/* One reading pass. -1: the connection is dead (closed here); 0 otherwise (c->eof on EOF). */
static int conn_read(struct hconn *c)
{
    for (;;) {
        if (c->in_len == c->in_cap) {
            if (c->in_cap >= c->h->in_max) {
                return 0; /* full: conn_process pauses reading */
            }
            size_t cap = c->in_cap ? c->in_cap * 2 : IN_MIN;
            c->in_cap = cap < c->h->in_max ? cap : c->h->in_max;
            c->in = xrealloc(c->in, c->in_cap);
        }
        size_t room = c->in_cap - c->in_len;
        if (c->ssl) {
            ERR_clear_error();
            int n = SSL_read(c->ssl, c->in + c->in_len, room > INT_MAX ? INT_MAX : (int)room);
            if (n > 0) {
                c->in_len += (size_t)n;
                if ((size_t)n < room && SSL_has_pending(c->ssl) == 0) {
                    return 0;
                }
                continue;
            }
            int err = SSL_get_error(c->ssl, n);
            if (err == SSL_ERROR_WANT_READ) {
                return 0;
            }
            if (err == SSL_ERROR_WANT_WRITE) {
                conn_set_write(c, true);
                return 0;
            }
            if (err == SSL_ERROR_ZERO_RETURN) {
                c->eof = true;
                return 0;
            }
            log_debug("closing a connection on a TLS read error");
            conn_close(c);
            return -1;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            if ((size_t)n < room) {
                return 0;
            }
            continue;
        }
        if (n == 0) {
            c->eof = true;
            return 0;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN) {
            return 0;
        }
        conn_close(c);
        return -1;
    }
}

static struct httpd_req *req_new(struct hconn *c)
{
    struct httpd *h = c->h;
    struct httpd_req *r = xcalloc(1, sizeof(*r));
    r->h = h;
    r->conn = c;
    r->route = -1;
    r->path = "";
    r->t0 = time_mono_ns();
    memcpy(&r->peer, &c->peer, sizeof(r->peer));
    r->peer_len = c->peer_len;
    /* random, not a counter: a counter would tell any client how many requests the worker
     * served since it started (what a factory produces); the counter only if the CSPRNG fails */
    if (h->id_rnd_off + REQ_ID_BYTES > sizeof(h->id_rnd) &&
        RAND_bytes(h->id_rnd, sizeof(h->id_rnd)) == 1) {
        h->id_rnd_off = 0;
    }
    if (h->id_rnd_off + REQ_ID_BYTES <= sizeof(h->id_rnd)) {
        hex_encode(h->id_rnd + h->id_rnd_off, REQ_ID_BYTES, r->id);
        h->id_rnd_off += REQ_ID_BYTES;
    } else {
        ERR_clear_error();
        snprintf(r->id, sizeof(r->id), "%08x%08llx", h->id_prefix, (unsigned long long)++h->seq);
    }
    h->inflight++;
    c->req = r;
    if (c->phase != CP_CLOSING) {
        conn_set_phase(c, CP_HANDLER);
    }
    return r;
}

static void req_free(struct httpd_req *r)
{
    SSL_free(r->ssl);
    xfree(r->raw);
    xfree(r->hdrs);
    buf_release(&r->extra);
    xfree(r);
}

/* A request that cannot be served: JSON error, then the connection closes. */
static void conn_error(struct hconn *c, int status, const char *code, const char *message)
{
    struct httpd_req *r = req_new(c);
    log_debug("refusing a request: %d %s", status, message);
    event_del(c->timer);
    if (c->h->o.refused) {
        char peer[INET6_ADDRSTRLEN];
        httpd_req_peer(r, peer, sizeof(peer));
        c->h->o.refused(c->h->o.arg, status, code, peer);
    }
    httpd_reply_error(r, status, code, message);
}

static void split_query(struct httpd_req *r, char *q)
{
    while (q && *q && r->nquery < MAX_QUERY) {
        char *amp = strchr(q, '&');
        char *next = NULL;
        if (amp) {
            *amp = '\0';
            next = amp + 1;
        }
        if (*q) {
            char *eq = strchr(q, '=');
            const char *v = "";
            if (eq) {
                char *val = eq + 1;
                *eq = '\0';
                val[hp_pct_decode(val, strlen(val), true)] = '\0';
                v = val;
            }
            q[hp_pct_decode(q, strlen(q), true)] = '\0';
            r->query[r->nquery].name = q;
            r->query[r->nquery].value = v;
            r->nquery++;
        }
        q = next;
    }
}

static void route(struct httpd_req *r)
{
    struct httpd *h = r->h;
    const struct hp_req *hr = &r->conn->hr;
    const char *method = r->raw + hr->method.off;
    struct buf allow = BUF_INIT;
    for (size_t i = 0; i < h->o.nroutes; i++) {
        const struct httpd_route *rt = &h->o.routes[i];
        bool match;
        if (rt->flags & (HTTPD_ROUTE_PREFIX | HTTPD_ROUTE_TAIL)) {
            size_t n = strlen(rt->pattern);
            match = strncmp(r->path, rt->pattern, n) == 0 && r->path[n] != '\0' &&
                    ((rt->flags & HTTPD_ROUTE_TAIL) || strchr(r->path + n, '/') == NULL);
        } else {
            match = strcmp(r->path, rt->pattern) == 0;
        }
        if (!match) {
            continue;
        }
        if (strcmp(rt->method, method) == 0) {
            r->route = (int)i;
            r->param = rt->flags & (HTTPD_ROUTE_PREFIX | HTTPD_ROUTE_TAIL)
                           ? r->path + strlen(rt->pattern)
                           : "";
            log_set_request_id(r->id);
            rt->fn(r, h->o.arg);
            log_set_request_id(NULL);
            buf_release(&allow);
            return;
        }
        buf_addf(&allow, "%s%s", allow.len ? ", " : "", rt->method);
    }
    if (allow.len) {
        httpd_req_add_header(r, "Allow", allow.data);
        httpd_reply_error(r, 405, "method_not_allowed", "method not allowed on this path");
    } else {
        httpd_reply_error(r, 404, "not_found", "no such endpoint");
    }
    buf_release(&allow);
}

/* The request in c->in[0..need) is whole: take it out of the buffer and hand it over. */
static void dispatch(struct hconn *c, size_t need)
{
    const struct hp_req *hr = &c->hr;
    struct httpd_req *r = req_new(c);
    char *raw = xmalloc(need + 1);
    memcpy(raw, c->in, need);
    raw[need] = '\0';
    memmove(c->in, c->in + need, c->in_len - need);
    c->in_len -= need;
    c->scan = 0;
    event_del(c->timer);
    r->raw = raw;
    r->keep_alive = hr->keep_alive;
    r->minor = hr->minor;
    r->body = (const uint8_t *)raw + hr->head_len;
    r->body_len = (size_t)hr->content_length;
    if (c->ssl) {
        SSL_up_ref(c->ssl);
        r->ssl = c->ssl;
    }
    r->nhdrs = hr->nheaders;
    r->hdrs = xcalloc(hr->nheaders ? hr->nheaders : 1, sizeof(*r->hdrs));
    for (size_t i = 0; i < hr->nheaders; i++) {
        const struct hp_header *f = &hr->headers[i];
        raw[f->name.off + f->name.len] = '\0';
        raw[f->value.off + f->value.len] = '\0';
        r->hdrs[i].name = raw + f->name.off;
        r->hdrs[i].value = raw + f->value.off;
    }
    raw[hr->method.off + hr->method.len] = '\0';
    if (strcmp(raw + hr->method.off, "HEAD") == 0) {
        r->keep_alive = false; /* our error replies carry a body a HEAD client will not read */
    }
    char *path = raw + hr->target.off;
    path[hr->target.len] = '\0';
    char *q = strchr(path, '?');
    if (q) {
        *q++ = '\0';
    }
    size_t plen = hp_pct_decode(path, strlen(path), false);
    path[plen] = '\0';
    r->path = path;
    split_query(r, q);
    if (strlen(path) != plen) {
        httpd_reply_error(r, 400, "invalid", "the request path contains a NUL character");
        return;
    }
    route(r);
}

/* Parses and dispatches what the input holds, then flushes. May free c. */
static void conn_process(struct hconn *c)
{
    struct httpd *h = c->h;
    struct hp_limits lim = { HP_MAX_HEAD, h->o.max_body };
    for (;;) {
        bool out_full = false;
        c->busy = true;
        while (conn_receiving(c)) {
            if (c->out.len - c->out_off >= OUT_PAUSE) {
                out_full = true;
                break;
            }
            if (c->phase == CP_HEAD) {
                enum hp_result pr = hp_parse(c->in, c->in_len, &lim, &c->scan, &c->hr);
                if (pr == HP_MORE) {
                    break;
                }
                if (pr == HP_ERROR) {
                    conn_error(c, c->hr.status, c->hr.code, c->hr.message);
                    break;
                }
                conn_set_phase(c, CP_BODY);
            }
            size_t need = c->hr.head_len + (size_t)c->hr.content_length;
            if (c->in_len < need) {
                if (c->hr.expect_continue && c->phase == CP_BODY) {
                    buf_addstr(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
                    conn_set_phase(c, CP_CONTINUED);
                }
                break;
            }
            dispatch(c, need);
        }
        c->busy = false;
        if (c->eof && conn_open(c)) {
            conn_set_phase(c, CP_CLOSING); /* answer what is in flight, then close */
        }
        if (!conn_flush(c)) {
            return;
        }
        if (!out_full || c->out.len > c->out_off) {
            break;
        }
    }
    if (conn_open(c)) {
        conn_set_read(c, !c->eof && c->phase != CP_CLOSING && c->in_len < h->in_max);
    }
}

static void conn_handshake(struct hconn *c)
{
    ERR_clear_error();
    int n = SSL_do_handshake(c->ssl);
    if (n == 1) {
        conn_set_phase(c, CP_HEAD);
        conn_set_write(c, false);
        if (conn_read(c) == 0) {
            conn_process(c);
        }
        return;
    }
    int err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_READ) {
        conn_set_write(c, false);
        return;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        conn_set_write(c, true);
        return;
    }
    unsigned long e = ERR_peek_error();
    log_debug("TLS handshake failed: %s",
              e ? ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "unknown"
                : "connection closed");
    conn_close(c);
}

static void conn_on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hconn *c = arg;
    if (c->phase == CP_HANDSHAKE) {
        conn_handshake(c);
        return;
    }
    if (c->phase == CP_LINGER) {
        conn_linger_read(c);
        return;
    }
    if (conn_read(c) == 0) {
        conn_process(c);
    }
}

static void conn_on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hconn *c = arg;
    if (c->phase == CP_HANDSHAKE) {
        conn_handshake(c);
        return;
    }
    if (conn_open(c)) {
        conn_process(c);
    }
}

static void conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hconn *c = arg;
    if (conn_open(c) && c->req == NULL && c->out.len == c->out_off && c->in_len > 0) {
        log_info("closing a connection whose request did not arrive within %d s",
                 c->h->o.request_timeout);
        c->eof = true; /* no lingering: the client is too slow to be waited for */
        conn_error(c, 408, "request_timeout", "the request did not arrive in time");
        return; /* the reply makes one write attempt, then the connection closes */
    }
    if (c->phase == CP_HANDSHAKE) {
        log_info("closing a connection whose TLS handshake did not finish within %d s",
                 c->h->o.request_timeout);
    } else if (conn_open(c) && c->out.len > c->out_off) {
        log_info("closing a connection whose client did not read its reply within %d s",
                 c->h->o.idle_timeout);
    }
    if (conn_open(c) && c->req) {
        return; /* with its handler: the timer is not armed then */
    }
    conn_close(c);
}

static void conn_new(struct httpd *h, int fd, const struct sockaddr_storage *peer,
                     socklen_t peer_len)
{
    struct hconn *c = xcalloc(1, sizeof(*c));
    SSL_CTX *ctx = h->o.ssl_ctx ? h->o.ssl_ctx(h->o.arg) : NULL;
    c->h = h;
    c->fd = fd;
    memcpy(&c->peer, peer, sizeof(c->peer));
    c->peer_len = peer_len;
    conn_set_phase(c, CP_HEAD);
    if (ctx) {
        c->ssl = SSL_new(ctx);
        if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
            log_error("cannot create a TLS session");
            SSL_free(c->ssl);
            ERR_clear_error();
            close(fd);
            xfree(c);
            return;
        }
        SSL_set_accept_state(c->ssl);
        SSL_set_read_ahead(c->ssl, 1);
        SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        conn_set_phase(c, CP_HANDSHAKE);
    }
    c->rev = event_new(h->base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
    c->wev = event_new(h->base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
    c->timer = evtimer_new(h->base, conn_on_timer, c);
    if (c->rev == NULL || c->wev == NULL || c->timer == NULL) {
        oom_die(event_get_struct_event_size());
    }
    c->next = h->conns;
    if (h->conns) {
        h->conns->prev = c;
    }
    h->conns = c;
    h->nconns++;
    conn_set_read(c, true);
    /* the request deadline, not the idle one, covers the handshake and the first request */
    conn_arm(c, h->o.request_timeout);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct httpd *h = arg;
    if (h->nconns < h->o.max_conns) {
        listener_set(h, true);
    }
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    struct httpd *h = arg;
    for (;;) {
        if (h->nconns >= h->o.max_conns) {
            listener_set(h, false);
            log_warn("%zu connections open: not accepting until one closes", h->nconns);
            return;
        }
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        memset(&peer, 0, sizeof(peer));
        int fd = accept4(lfd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int en = errno;
            char eb[128];
            if (en == EAGAIN) {
                return;
            }
            if (en == EINTR || en == ECONNABORTED || en == EPROTO) {
                continue;
            }
            log_warn("cannot accept a connection: %s; pausing for a second",
                     err_errno_str(en, eb, sizeof(eb)));
            listener_set(h, false);
            struct timeval tv = { 1, 0 };
            event_add(h->resume, &tv);
            return;
        }
        conn_new(h, fd, &peer, peer_len);
    }
}

static int listen_on(struct httpd *h, const char *addr, struct err *e)
{
    struct sockaddr_storage ss;
    int sslen = (int)sizeof(ss);
    int one = 1;
    memset(&ss, 0, sizeof(ss));
    if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sslen) != 0) {
        return err_set(e, ERRC_INVALID, "listen address '%s' is not HOST:PORT", addr);
    }
    h->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h->lfd < 0) {
        return err_errno(e, ERRC_UNAVAILABLE, "cannot listen on %s", addr);
    }
    if (setsockopt(h->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(h->lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        return err_errno(e, ERRC_UNAVAILABLE, "cannot listen on %s", addr);
    }
    if (bind(h->lfd, (struct sockaddr *)&ss, (socklen_t)sslen) != 0 || listen(h->lfd, 1024) != 0) {
        return err_errno(e, ERRC_UNAVAILABLE, "cannot listen on %s", addr);
    }
    /* accepted sockets inherit it on Linux: replies go out without waiting for an ACK */
    if (setsockopt(h->lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
        log_warn("cannot set TCP_NODELAY on %s", addr);
    }
    h->lev = event_new(h->base, h->lfd, EV_READ | EV_PERSIST, on_accept, h);
    if ((h->resume = evtimer_new(h->base, on_resume, h)) == NULL) {
        oom_die(event_get_struct_event_size());
    }
    if (h->lev == NULL || event_add(h->lev, NULL) != 0) {
        return err_set(e, ERRC_INTERNAL, "cannot watch the listener on %s", addr);
    }
    return 0;
}

struct httpd *httpd_new(struct event_base *base, const struct httpd_opts *o, struct err *e)
{
    struct httpd *h = xcalloc(1, sizeof(*h));
    h->base = base;
    h->o = *o;
    h->lfd = -1;
    h->id_rnd_off = sizeof(h->id_rnd); /* empty */
    h->in_max = HP_MAX_HEAD + o->max_body + IN_SLACK;
    if (RAND_bytes((unsigned char *)&h->id_prefix, sizeof(h->id_prefix)) != 1) {
        h->id_prefix = (uint32_t)getpid();
        ERR_clear_error();
    }
    if (listen_on(h, o->listen, e) != 0) {
        httpd_free(h);
        return NULL;
    }
    return h;
}

void httpd_stop_accepting(struct httpd *h)
{
    if (h->lev) {
        event_free(h->lev);
        h->lev = NULL;
    }
    if (h->resume) {
        event_free(h->resume);
        h->resume = NULL;
    }
    if (h->lfd >= 0) {
        close(h->lfd);
        h->lfd = -1;
    }
}

size_t httpd_connections(const struct httpd *h)
{
    return h->nconns;
}

size_t httpd_requests_in_flight(const struct httpd *h)
{
    return h->inflight;
}

void httpd_free(struct httpd *h)
{
    if (h == NULL) {
        return;
    }
    httpd_stop_accepting(h);
    while (h->conns) {
        conn_close(h->conns);
    }
    xfree(h);
}

static int verify_accept(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1; /* the result stays in SSL_get_verify_result; the dispatcher decides
               */
}

SSL_CTX *httpd_tls_ctx_new(const char *cert_file, const char *key_file, const char *client_ca_pem,
                           struct err *e)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    BIO *bio = NULL;
    X509 *x = NULL;
    size_t ncas = 0;
    if (ctx == NULL) {
        err_openssl(e, ERRC_INTERNAL, "SSL_CTX_new");
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        err_openssl(e, ERRC_INTERNAL, "SSL_CTX_set_min_proto_version");
        goto fail;
    }
    if (cert_file == NULL || *cert_file == '\0' || key_file == NULL || *key_file == '\0') {
        err_set(e, ERRC_INVALID,
                "tls_cert_file and tls_key_file must name the server's "
                "certificate and key");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        err_openssl(e, ERRC_INVALID, "tls_cert_file '%s': cannot load a PEM certificate chain",
                    cert_file);
        goto fail;
    }
    if (file_check_private(key_file, e) != 0) {
        err_prefix(e, "tls_key_file");
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        err_openssl(e, ERRC_INVALID, "tls_key_file '%s': cannot load an unencrypted PEM key",
                    key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        err_openssl(e, ERRC_INVALID, "tls_key_file '%s' does not match tls_cert_file '%s'",
                    key_file, cert_file);
        goto fail;
    }
    if (client_ca_pem == NULL) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        goto done; /* no client certificates requested */
    }
    bio = BIO_new_mem_buf(client_ca_pem, -1);
    if (bio == NULL) {
        err_openssl(e, ERRC_INTERNAL, "BIO_new_mem_buf");
        goto fail;
    }
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x) != 1 ||
            SSL_CTX_add_client_CA(ctx, x) != 1) {
            err_openssl(e, ERRC_INTERNAL, "cannot add a client CA certificate");
            goto fail;
        }
        X509_free(x);
        x = NULL;
        ncas++;
    }
    ERR_clear_error(); /* the end of the PEM data */
    if (ncas == 0) {
        err_set(e, ERRC_INVALID, "no client CA certificate to verify stations with");
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_accept);
    SSL_CTX_set_verify_depth(ctx, 4);
done:
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_set_num_tickets(ctx, 0) != 1) {
        err_openssl(e, ERRC_INTERNAL, "SSL_CTX_set_num_tickets");
        goto fail;
    }
    BIO_free(bio);
    return ctx;
fail:
    X509_free(x);
    BIO_free(bio);
    SSL_CTX_free(ctx);
    return NULL;
}

const char *httpd_req_method(const struct httpd_req *r)
{
    return r->route >= 0 ? r->h->o.routes[r->route].method : "";
}

const char *httpd_req_path(const struct httpd_req *r)
{
    return r->path;
}

const char *httpd_req_param(const struct httpd_req *r)
{
    return r->param ? r->param : "";
}

const char *httpd_req_query(const struct httpd_req *r, const char *key)
{
    for (size_t i = 0; i < r->nquery; i++) {
        if (strcmp(r->query[i].name, key) == 0) {
            return r->query[i].value;
        }
    }
    return NULL;
}

const char *httpd_req_header(const struct httpd_req *r, const char *name)
{
    for (size_t i = 0; i < r->nhdrs; i++) {
        if (strcasecmp(r->hdrs[i].name, name) == 0) {
            return r->hdrs[i].value;
        }
    }
    return NULL;
}

const uint8_t *httpd_req_body(const struct httpd_req *r, size_t *len)
{
    *len = r->body_len;
    return r->body_len ? r->body : (const uint8_t *)"";
}

const char *httpd_req_id(const struct httpd_req *r)
{
    return r->id;
}

int httpd_req_route(const struct httpd_req *r)
{
    return r->route;
}

STACK_OF(X509) * httpd_req_client_chain(const struct httpd_req *r, const char **why)
{
    *why = "no client certificate";
    if (r->ssl == NULL) {
        return NULL;
    }
    X509 *peer = SSL_get0_peer_certificate(r->ssl);
    if (peer == NULL) {
        *why = "a client certificate is required";
        return NULL;
    }
    long vr = SSL_get_verify_result(r->ssl);
    if (vr != X509_V_OK) {
        *why = X509_verify_cert_error_string(vr);
        return NULL;
    }
    STACK_OF(X509) *chain = SSL_get0_verified_chain(r->ssl);
    if (chain == NULL || sk_X509_num(chain) < 2) {
        *why = "the client certificate chain could not be verified";
        return NULL;
    }
    *why = "";
    return chain;
}

X509 *httpd_req_client_cert(const struct httpd_req *r)
{
    return r->ssl ? SSL_get0_peer_certificate(r->ssl) : NULL;
}

void httpd_req_peer(const struct httpd_req *r, char *out, size_t cap)
{
    const struct sockaddr_storage *ss = &r->peer;
    out[0] = '\0';
    if (cap < INET6_ADDRSTRLEN) {
        return;
    }
    if (ss->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)cap);
    } else if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)cap);
    }
}

static bool header_safe(const char *s)
{
    for (; *s; s++) {
        if (*s == '\r' || *s == '\n') {
            return false;
        }
    }
    return true;
}

void httpd_req_add_header(struct httpd_req *r, const char *name, const char *value)
{
    if (!header_safe(name) || !header_safe(value)) {
        log_error("dropping a reply header with a line break in it: %s", name);
        return;
    }
    buf_addf(&r->extra, "%s: %s\r\n", name, value);
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return status >= 500 ? "Internal Server Error" : status >= 400 ? "Bad Request" : "OK";
    }
}

static void add_dec(struct buf *o, uint64_t v)
{
    char d[20];
    buf_add(o, d, u64_to_dec(d, v));
}

void httpd_reply(struct httpd_req *r, int status, const char *ctype, const void *body, size_t len)
{
    struct httpd *h = r->h;
    struct hconn *c = r->conn;
    int64_t ns = time_mono_ns() - r->t0;
    if (status >= 500 && r->route >= 0) {
        log_warn("request %s %s %s -> %d", r->id, httpd_req_method(r), r->path, status);
    } else {
        log_debug("request %s %s %s -> %d in %lld us", r->id, httpd_req_method(r), r->path, status,
                  (long long)(ns / 1000));
    }
    if (c) {
        struct buf *o = &c->out;
        if (!r->keep_alive) {
            conn_set_phase(c, CP_CLOSING);
        }
        buf_reserve(o, 256 + r->extra.len + len);
        /* pieces, not buf_addf: this runs for every request */
        buf_addstr(o, "HTTP/1.1 ");
        add_dec(o, (uint64_t)status);
        buf_addch(o, ' ');
        buf_addstr(o, reason_phrase(status));
        buf_addstr(o, "\r\nContent-Type: ");
        buf_addstr(o, ctype);
        buf_addstr(o, "\r\nContent-Length: ");
        add_dec(o, len);
        buf_addstr(o, "\r\nX-Request-Id: ");
        buf_addstr(o, r->id);
        buf_addstr(o, "\r\nCache-Control: no-store\r\n");
        if (r->extra.len) {
            buf_add(o, r->extra.data, r->extra.len);
        }
        if (c->phase == CP_CLOSING || c->eof) {
            buf_addstr(o, "Connection: close\r\n\r\n");
        } else if (r->minor == 0) {
            buf_addstr(o, "Connection: keep-alive\r\n\r\n");
        } else {
            buf_addstr(o, "\r\n");
        }
        if (len) {
            buf_add(o, body, len);
        }
        c->req = NULL;
        c->replied = true;
        if (c->phase == CP_HANDLER) {
            conn_set_phase(c, CP_HEAD);
        }
    }
    h->inflight--;
    if (h->o.done) {
        h->o.done(h->o.arg, r->route, status, ns);
    }
    req_free(r);
    if (c && !c->busy) {
        conn_process(c);
    }
}

void httpd_reply_json(struct httpd_req *r, int status, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(v);
    if (s == NULL) {
        httpd_reply_error(r, 500, "internal", "cannot encode the reply");
        return;
    }
    size_t n = strlen(s);
    struct buf b = BUF_INIT;
    buf_reserve(&b, n + 1);
    buf_add(&b, s, n);
    buf_addch(&b, '\n');
    xfree(s);
    httpd_reply(r, status, "application/json", b.data, b.len);
    buf_release(&b);
}

void httpd_reply_error(struct httpd_req *r, int status, const char *code, const char *message)
{
    json_t *v = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    if (v == NULL) {
        v = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", "(unprintable)");
    }
    httpd_reply_json(r, status, v);
}

void httpd_reply_err(struct httpd_req *r, const struct err *e)
{
    enum err_code code = e->code == ERRC_OK ? ERRC_INTERNAL : e->code;
    httpd_reply_error(r, err_http_status(code), err_code_name(code),
                      e->msg[0] ? e->msg : "internal error");
}
