/*
 * HTTP(S) requests on the event loop: libcurl's multi interface driven by libevent
 * (curl_multi_socket_action). One transport per event loop; its multi handle keeps the
 * connection cache, so requests to one host reuse connections. The transport knows nothing of
 * AWS: callers sign (aws/sigv4.h) and pass the headers; it adds none that are signed.
 *
 * Async contract (docs/style.md, "Asynchronous calls"): aws_http_send either fails
 * synchronously (-1, *e set, the callback never runs) or returns 0 and calls cb exactly once,
 * later, from the loop. The
 * response and error are borrowed for the duration of the callback. Errors:
 *   ERRC_TIMEOUT      no complete response within timeout_ms ("timeout after N ms ...")
 *   ERRC_UNAVAILABLE  cannot resolve/connect, connection reset or closed without a response,
 *                     a truncated body ("truncated response: ..."), TLS failures
 *   ERRC_TOO_LARGE    the body exceeded max_body (1 MiB by default)
 *   ERRC_CANCELED     aws_transport_free with the request outstanding (cb runs inside free)
 * An HTTP error status is not an error here: resp->status carries it.
 * aws_transport_free must not be called from inside a transport callback.
 */
#ifndef AWS_TRANSPORT_H
#define AWS_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "aws/sigv4.h"
#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"

struct event_base;
struct aws_transport;

struct aws_transport *aws_transport_new(struct event_base *base, struct err *e) ATTR_WUR;
void aws_transport_free(struct aws_transport *t);
struct event_base *aws_transport_base(const struct aws_transport *t);
/* Requests started and connections opened since creation (for tests of connection reuse). */
void aws_transport_stats(const struct aws_transport *t, uint64_t *requests, uint64_t *connects);

/* Borrowed; copied by aws_http_send. */
struct aws_http_req {
    const char *method; /* GET, PUT, POST, PATCH, DELETE */
    const char *url;    /* full URL, path and query already encoded */
    const struct aws_header *headers;
    size_t nheaders;
    const void *body; /* sent as is (also for GET/DELETE when non-empty); NULL: none */
    size_t body_len;
    long timeout_ms;         /* whole request; 0: 30000 */
    long connect_timeout_ms; /* 0: min(timeout_ms, 10000) */
    size_t max_body;         /* 0: 1 MiB */
};

struct aws_http_resp {
    long status;
    struct buf body;
    char content_type[128];
    char error_type[256]; /* x-amzn-ErrorType, "" when absent */
    char request_id[128]; /* x-amzn-RequestId (or x-amz-request-id) */
    int64_t date;         /* the Date header, UTC seconds; 0 when absent or unreadable */
    double seconds;       /* total time */
};

typedef void aws_http_cb(void *arg, const struct aws_http_resp *r, const struct err *e);

int aws_http_send(struct aws_transport *t, const struct aws_http_req *req, aws_http_cb *cb,
                  void *arg, struct err *e) ATTR_WUR;

#endif
