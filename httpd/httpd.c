/*
 * evhttp with TLS, a routing table and the limits of httpd.h.
 *
 * Connections: evhttp creates each connection's bufferevent through bevcb(), where we make the
 * SSL and hang a struct hconn on it (SSL ex_data). The hconn carries the request deadline timer
 * and is freed by the ex_data free callback when evhttp frees the connection (SSL_free), which
 * is the only destruction hook libevent 2.1 offers for server connections. The deadline runs from
 * the connection's start, stops when a request is dispatched and restarts when its response has
 * been sent (evhttp_request_set_on_complete_cb). When it fires we shutdown(2) the socket: evhttp
 * then sees EOF and frees the connection itself (freeing it from the timer would pull it out from
 * under evhttp).
 *
 * Session resumption is off (no cache, no tickets) so every connection presents and verifies its
 * client certificate afresh. Known limit: libevent 2.1 answers a body above max_body and a
 * malformed request line with its own HTML error page (the status is right); every other error
 * is JSON.
 */
#include "httpd/httpd.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"

#define HTTPD_MAX_HEADERS 16384

struct httpd {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct httpd_opts o;
    size_t nconns;
    size_t inflight;
    bool paused; /* listener disabled at max_conns */
    uint64_t seq;
    uint32_t id_prefix;
};

struct hconn {
    struct httpd *h;
    struct event *deadline;
    SSL *ssl;
};

struct httpd_req {
    struct httpd *h;
    struct evhttp_request *ev;
    struct hconn *conn; /* NULL once the client is gone (not tracked: only used at dispatch) */
    SSL *ssl;
    int route;
    char *path;
    const char *param;
    struct evkeyvalq query;
    bool has_query;
    int64_t t0;
    char id[24];
};

static int hconn_idx = -1;

static void hconn_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    struct hconn *c = ptr;
    if (c == NULL) {
        return;
    }
    struct httpd *h = c->h;
    event_free(c->deadline);
    xfree(c);
    h->nconns--;
    if (h->paused && h->nconns < h->o.max_conns && h->bound) {
        evconnlistener_enable(evhttp_bound_socket_get_listener(h->bound));
        h->paused = false;
    }
}

static void hconn_deadline_cb(evutil_socket_t fd_unused, short what, void *arg)
{
    (void)fd_unused;
    (void)what;
    struct hconn *c = arg;
    int fd = SSL_get_fd(c->ssl);
    log_info("closing a connection whose request did not arrive within %d s",
             c->h->o.request_timeout);
    if (fd >= 0) {
        shutdown(fd, SHUT_RDWR);
    }
}

static void hconn_arm(struct hconn *c)
{
    struct timeval tv = { c->h->o.request_timeout, 0 };
    event_add(c->deadline, &tv);
}

static struct bufferevent *bevcb(struct event_base *base, void *arg)
{
    struct httpd *h = arg;
    SSL_CTX *ctx = h->o.ssl_ctx(h->o.arg);
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    struct bufferevent *bev = NULL;
    if (ssl == NULL) {
        log_error("cannot create a TLS session");
        ERR_clear_error();
        return NULL;
    }
    struct hconn *c = xcalloc(1, sizeof(*c));
    c->h = h;
    c->ssl = ssl;
    c->deadline = evtimer_new(base, hconn_deadline_cb, c);
    if (SSL_set_ex_data(ssl, hconn_idx, c) != 1) {
        event_free(c->deadline);
        xfree(c);
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    h->nconns++;
    hconn_arm(c);
    bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl); /* frees c through the ex_data callback */
        return NULL;
    }
    if (h->nconns >= h->o.max_conns && !h->paused && h->bound) {
        evconnlistener_disable(evhttp_bound_socket_get_listener(h->bound));
        h->paused = true;
        log_warn("%zu connections open: not accepting until one closes", h->nconns);
    }
    return bev;
}

static void on_complete(struct evhttp_request *req, void *arg)
{
    (void)req;
    hconn_arm(arg);
}

static void req_free(struct httpd_req *r)
{
    if (r->has_query) {
        evhttp_clear_headers(&r->query);
    }
    xfree(r->path);
    xfree(r);
}

static void dispatch(struct evhttp_request *req, void *arg)
{
    struct httpd *h = arg;
    struct httpd_req *r = xcalloc(1, sizeof(*r));
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *method = "";
    bool path_known = false;
    r->h = h;
    r->ev = req;
    r->route = -1;
    r->t0 = time_mono_ns();
    r->ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    r->conn = r->ssl ? SSL_get_ex_data(r->ssl, hconn_idx) : NULL;
    snprintf(r->id, sizeof(r->id), "%08x%08llx", h->id_prefix, (unsigned long long)++h->seq);
    h->inflight++;
    if (r->conn) {
        event_del(r->conn->deadline);
        evhttp_request_set_on_complete_cb(req, on_complete, r->conn);
    }
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET:
        method = "GET";
        break;
    case EVHTTP_REQ_POST:
        method = "POST";
        break;
    case EVHTTP_REQ_HEAD:
        method = "HEAD";
        break;
    case EVHTTP_REQ_PUT:
        method = "PUT";
        break;
    case EVHTTP_REQ_DELETE:
        method = "DELETE";
        break;
    case EVHTTP_REQ_OPTIONS:
        method = "OPTIONS";
        break;
    case EVHTTP_REQ_TRACE:
    case EVHTTP_REQ_CONNECT:
    case EVHTTP_REQ_PATCH:
        method = "OTHER";
        break;
    }
    const char *p = uri ? evhttp_uri_get_path(uri) : NULL;
    size_t plen = 0;
    r->path = evhttp_uridecode(p && *p ? p : "/", 0, &plen);
    if (r->path == NULL) {
        r->path = xstrdup("/");
        plen = 1;
    }
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    if (q && evhttp_parse_query_str(q, &r->query) == 0) {
        r->has_query = true;
    }
    if (strlen(r->path) != plen) {
        httpd_reply_error(r, 400, "invalid", "the request path contains a NUL character");
        return;
    }
    for (size_t i = 0; i < h->o.nroutes; i++) {
        const struct httpd_route *rt = &h->o.routes[i];
        bool match;
        if (rt->flags & HTTPD_ROUTE_PREFIX) {
            size_t n = strlen(rt->pattern);
            match = strncmp(r->path, rt->pattern, n) == 0 && r->path[n] != '\0' &&
                    strchr(r->path + n, '/') == NULL;
        } else {
            match = strcmp(r->path, rt->pattern) == 0;
        }
        if (!match) {
            continue;
        }
        path_known = true;
        if (strcmp(rt->method, method) == 0) {
            r->route = (int)i;
            r->param = rt->flags & HTTPD_ROUTE_PREFIX ? r->path + strlen(rt->pattern) : "";
            log_set_request_id(r->id);
            rt->fn(r, h->o.arg);
            log_set_request_id(NULL);
            return;
        }
    }
    if (path_known) {
        httpd_reply_error(r, 405, "method_not_allowed", "method not allowed on this path");
    } else {
        httpd_reply_error(r, 404, "not_found", "no such endpoint");
    }
}

struct httpd *httpd_new(struct event_base *base, const struct httpd_opts *o, struct err *e)
{
    struct httpd *h = xcalloc(1, sizeof(*h));
    struct sockaddr_storage ss;
    int sslen = (int)sizeof(ss);
    struct evconnlistener *lev = NULL;
    h->base = base;
    h->o = *o;
    if (hconn_idx < 0) {
        hconn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, hconn_free_cb);
        BUG_ON(hconn_idx < 0);
    }
    if (RAND_bytes((unsigned char *)&h->id_prefix, sizeof(h->id_prefix)) != 1) {
        h->id_prefix = (uint32_t)getpid();
        ERR_clear_error();
    }
    memset(&ss, 0, sizeof(ss));
    if (evutil_parse_sockaddr_port(o->listen, (struct sockaddr *)&ss, &sslen) != 0) {
        err_set(e, ERRC_INVALID, "listen address '%s' is not HOST:PORT", o->listen);
        goto fail;
    }
    h->http = evhttp_new(base);
    if (h->http == NULL) {
        err_set(e, ERRC_INTERNAL, "cannot create the HTTP server");
        goto fail;
    }
    lev = evconnlistener_new_bind(base, NULL, NULL,
                                  LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT |
                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                  1024, (struct sockaddr *)&ss, sslen);
    if (lev == NULL) {
        err_errno(e, ERRC_UNAVAILABLE, "cannot listen on %s", o->listen);
        goto fail;
    }
    {
        /* accepted sockets inherit it on Linux: replies go out without waiting for an ACK */
        int one = 1;
        if (setsockopt(evconnlistener_get_fd(lev), IPPROTO_TCP, TCP_NODELAY, &one,
                       sizeof(one)) != 0) {
            log_warn("cannot set TCP_NODELAY on %s", o->listen);
        }
    }
    h->bound = evhttp_bind_listener(h->http, lev);
    if (h->bound == NULL) {
        evconnlistener_free(lev);
        err_set(e, ERRC_INTERNAL, "cannot attach the listener on %s", o->listen);
        goto fail;
    }
    evhttp_set_bevcb(h->http, bevcb, h);
    evhttp_set_gencb(h->http, dispatch, h);
    evhttp_set_max_body_size(h->http, (ev_ssize_t)o->max_body);
    evhttp_set_max_headers_size(h->http, HTTPD_MAX_HEADERS);
    evhttp_set_timeout(h->http, o->idle_timeout);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    return h;
fail:
    httpd_free(h);
    return NULL;
}

void httpd_stop_accepting(struct httpd *h)
{
    if (h->bound) {
        evhttp_del_accept_socket(h->http, h->bound);
        h->bound = NULL;
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
    h->bound = NULL;
    if (h->http) {
        evhttp_free(h->http); /* frees connections, hence their hconn */
    }
    xfree(h);
}

static int verify_accept(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1; /* the result stays in SSL_get_verify_result; the dispatcher decides */
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
        err_set(e, ERRC_INVALID, "tls_cert_file and tls_key_file must name the server's "
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
    if (!r->has_query) {
        return NULL;
    }
    return evhttp_find_header(&((struct httpd_req *)(uintptr_t)r)->query, key);
}

const char *httpd_req_header(const struct httpd_req *r, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(r->ev), name);
}

const uint8_t *httpd_req_body(const struct httpd_req *r, size_t *len)
{
    struct evbuffer *b = evhttp_request_get_input_buffer(r->ev);
    *len = evbuffer_get_length(b);
    if (*len == 0) {
        return (const uint8_t *)"";
    }
    return evbuffer_pullup(b, -1);
}

const char *httpd_req_id(const struct httpd_req *r)
{
    return r->id;
}

int httpd_req_route(const struct httpd_req *r)
{
    return r->route;
}

STACK_OF(X509) *httpd_req_client_chain(const struct httpd_req *r, const char **why)
{
    *why = "no TLS session";
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

void httpd_req_add_header(struct httpd_req *r, const char *name, const char *value)
{
    evhttp_add_header(evhttp_request_get_output_headers(r->ev), name, value);
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 499:
        return "Client Closed Request";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status >= 500 ? "Internal Server Error" : status >= 400 ? "Bad Request" : "OK";
    }
}

void httpd_reply(struct httpd_req *r, int status, const char *ctype, const void *body,
                 size_t len)
{
    struct httpd *h = r->h;
    struct evbuffer *out = evbuffer_new();
    struct evkeyvalq *hdrs = evhttp_request_get_output_headers(r->ev);
    evhttp_add_header(hdrs, "Content-Type", ctype);
    evhttp_add_header(hdrs, "X-Request-Id", r->id);
    evhttp_add_header(hdrs, "Cache-Control", "no-store");
    if (out == NULL) {
        oom_die(len);
    }
    if (len && evbuffer_add(out, body, len) != 0) {
        oom_die(len);
    }
    int64_t ns = time_mono_ns() - r->t0;
    if (status >= 500) {
        log_warn("request %s %s %s -> %d", r->id, httpd_req_method(r), r->path, status);
    } else {
        log_debug("request %s %s %s -> %d in %lld us", r->id, httpd_req_method(r), r->path,
                  status, (long long)(ns / 1000));
    }
    evhttp_send_reply(r->ev, status, reason_phrase(status), out);
    evbuffer_free(out);
    h->inflight--;
    if (h->o.done) {
        h->o.done(h->o.arg, r->route, status, ns);
    }
    req_free(r);
}

void httpd_reply_json(struct httpd_req *r, int status, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(v);
    if (s == NULL) {
        httpd_reply_error(r, 500, "internal", "cannot encode the reply");
        return;
    }
    struct buf b = BUF_INIT;
    buf_addstr(&b, s);
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
