/*
 * httpd: the HTTPS server of jitrd, one instance per worker process: HTTP/1.1 (keep-alive,
 * pipelining, Expect: 100-continue; no chunked request bodies) over TLS 1.2/1.3 on the worker's
 * event loop, with a routing table. Every error, including malformed requests, is JSON
 * {"error":{"code","message"}}.
 *
 * The client certificate is asked for and verified against the SSL_CTX's trust store, but a
 * failed or missing one does not end the handshake: every route says whether it needs a verified
 * client, and the dispatcher answers the others with a JSON 403 naming the problem (so refusals
 * are explained and audited, and /healthz, /readyz, /metrics and EST cacerts stay reachable
 * without a certificate).
 *
 * Limits: bodies above max_body are refused with 413 as soon as their Content-Length is read;
 * request heads above 16 KiB with 431; a request must arrive whole within request_timeout of the
 * connection or of the previous response (a client dribbling a header gets 408 and is cut off);
 * a reply not read within idle_timeout closes the connection; at max_conns open connections the
 * listener pauses.
 *
 * Async contract: a handler is called on the loop with a struct httpd_req it owns until it calls
 * one of the httpd_reply*() functions, exactly once, from the loop (now or later). If the client
 * went away meanwhile the reply is dropped quietly; the request and its accessors stay valid
 * until the reply. Strings returned by accessors are borrowed until the reply.
 */
#ifndef HTTPD_HTTPD_H
#define HTTPD_HTTPD_H

#include <jansson.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/compat.h"
#include "core/err.h"

struct event_base;
struct httpd;
struct httpd_req;

typedef void httpd_handler_fn(struct httpd_req *r, void *arg);

enum {
    HTTPD_ROUTE_PREFIX = 1u << 0, /* pattern ends in '/': the rest of the path is the param */
    HTTPD_ROUTE_TAIL = 1u << 1,   /* as PREFIX, and the rest may contain '/' (OCSP's GET) */
};

/* One line of the routing table. name labels metrics and logs. */
struct httpd_route {
    const char *method; /* "GET", "POST" */
    const char *pattern;
    unsigned flags;
    const char *name;
    httpd_handler_fn *fn;
};

/* Returns the SSL_CTX new connections use (borrowed; the SSL takes its own reference). Lets
 * the owner swap certificates and trust stores on reload. A NULL callback, or a NULL return,
 * makes the connection plain HTTP (no client certificate): a TLS server must never return NULL. */
typedef SSL_CTX *httpd_ssl_ctx_fn(void *arg);
/* Called for every reply: route index (-1 for no route), status, nanoseconds since dispatch. */
typedef void httpd_done_fn(void *arg, int route, int status, int64_t ns);
/* Called when the server itself refuses a request before any route sees it (malformed, too
 * large, too slow: the statuses of parse.h and 408), with the error code of the reply
 * ("bad_request", "request_timeout", ...; a static string) and the client's numeric address. */
typedef void httpd_refused_fn(void *arg, int status, const char *code, const char *peer);

struct httpd_opts {
    const char *listen; /* "HOST:PORT"; bound with SO_REUSEPORT */
    size_t max_body;
    int request_timeout; /* seconds */
    int idle_timeout;    /* seconds */
    size_t max_conns;
    const struct httpd_route *routes;
    size_t nroutes;
    httpd_ssl_ctx_fn *ssl_ctx;
    httpd_done_fn *done;
    httpd_refused_fn *refused; /* optional */
    void *arg;                 /* passed to handlers and callbacks */
};

/* Binds the listener and starts serving on base. ERRC_UNAVAILABLE when the address cannot be
 * bound, ERRC_INVALID when it does not parse. */
struct httpd *httpd_new(struct event_base *base, const struct httpd_opts *o,
                        struct err *e) ATTR_WUR;
/* Closes the listener; connections and requests in flight continue. */
void httpd_stop_accepting(struct httpd *h);
size_t httpd_connections(const struct httpd *h);
size_t httpd_requests_in_flight(const struct httpd *h);
/* Closes every connection and frees the server. Requests still owned by handlers must have been
 * answered before. */
void httpd_free(struct httpd *h);

/* A server SSL_CTX: certificate chain and key from PEM files (the key must not be group- or
 * world-accessible), client certificates requested and verified against client_ca_pem (one or
 * more PEM certificates, also sent as the acceptable CA list), TLS 1.2 minimum. client_ca_pem
 * NULL: no client certificate is requested (httpd_req_client_chain then says "a client
 * certificate is required"); "" or PEM without a certificate is an error. */
SSL_CTX *httpd_tls_ctx_new(const char *cert_file, const char *key_file, const char *client_ca_pem,
                           struct err *e) ATTR_WUR;

/* Request accessors (borrowed until the reply). */
const char *httpd_req_method(const struct httpd_req *r);
const char *httpd_req_path(const struct httpd_req *r);
const char *httpd_req_param(const struct httpd_req *r); /* "" unless HTTPD_ROUTE_PREFIX */
const char *httpd_req_query(const struct httpd_req *r, const char *key); /* NULL when absent */
const char *httpd_req_header(const struct httpd_req *r, const char *name);
const uint8_t *httpd_req_body(const struct httpd_req *r, size_t *len);
const char *httpd_req_id(const struct httpd_req *r);
int httpd_req_route(const struct httpd_req *r);
/* The verified client certificate chain (leaf first), NULL when the client sent none or it did
 * not verify; *why then says which ("a client certificate is required", "certificate has
 * expired", ...; "no client certificate" on plain HTTP). */
STACK_OF(X509) *httpd_req_client_chain(const struct httpd_req *r, const char **why);
/* The client's certificate whether or not it verified (for audit records), or NULL. */
X509 *httpd_req_client_cert(const struct httpd_req *r);
/* The client's address, numeric ("192.0.2.7", "2001:db8::1"), or "" when unknown. */
void httpd_req_peer(const struct httpd_req *r, char *out, size_t cap);

void httpd_req_add_header(struct httpd_req *r, const char *name, const char *value);
/* Sends the reply and frees r. */
void httpd_reply(struct httpd_req *r, int status, const char *ctype, const void *body,
                 size_t len);
/* Sends a JSON reply (v is stolen). */
void httpd_reply_json(struct httpd_req *r, int status, json_t *v);
/* {"error":{"code","message"}} with the given status. */
void httpd_reply_error(struct httpd_req *r, int status, const char *code, const char *message);
/* The same from a struct err: status from err_http_status(), code from err_code_name(). */
void httpd_reply_err(struct httpd_req *r, const struct err *e);

#endif
