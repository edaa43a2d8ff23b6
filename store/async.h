/*
 * The asynchronous Redis client of jitrd (and of jitrctl commands that run an event loop):
 * hiredis 0.14.1 on libevent. Only store/ includes hiredis and its libevent adapter.
 *
 * Async contract (docs/style.md, "Asynchronous calls"): a function taking a callback either fails
 * synchronously (returns -1, *e set, the callback never runs) or returns 0 and calls the callback
 * exactly once, later, from the loop, with e NULL on success or an error: ERRC_UNAVAILABLE (Redis
 * unreachable, connection lost, error reply), ERRC_TIMEOUT (no reply within timeout_ms; the late
 * reply is ignored), ERRC_CANCELED (store_async_free with the command outstanding: the callback
 * runs inside store_async_free). Everything passed to a callback is borrowed for its duration.
 *
 * Connection: made on first use and again after a loss (lazy reconnect, no retry loop here:
 * callers decide); AUTH and SELECT from the URL are pipelined in front of the first command.
 * hiredis 0.14.1 has no async timeouts, so every command arms its own timer. The hiredis
 * context is never freed from inside one of its callbacks: store_async_free called from a
 * completion callback defers the free to the loop.
 */
#ifndef STORE_ASYNC_H
#define STORE_ASYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/compat.h"
#include "core/err.h"

struct event_base;
struct store_async;

/* url as store_url_parse(). Nothing is connected yet. */
struct store_async *store_async_new(struct event_base *base, const char *url,
                                    struct err *e) ATTR_WUR;
/* Cancels outstanding commands (their callbacks run now with ERRC_CANCELED) and frees. NULL ok. */
void store_async_free(struct store_async *s);

/* The server in use, for messages and to notice a change of primary: the URL without its
 * password and, with Sentinel, "(primary HOST:PORT)" once one was found. */
const char *store_async_server(const struct store_async *s);

/* Token bucket result: allowed, or the wait until cost tokens would be there. */
typedef void store_bucket_cb(void *arg, bool allowed, int64_t wait_ms, const struct err *e);

/* The same script and key as store_bucket_take() (jitrca:bucket:NAME, store/bucket.lua):
 * processes using the sync and the async client share one bucket. rate > 0, burst >= cost > 0
 * (else ERRC_INVALID). */
int store_async_bucket_take(struct store_async *s, const char *name, double rate, double burst,
                            double cost, int timeout_ms, store_bucket_cb *cb, void *arg,
                            struct err *e) ATTR_WUR;

typedef void store_done_cb(void *arg, const struct err *e);

/* HSET jitrca:KEY f1 v1 f2 v2 ... (n strings, n even and > 0). */
int store_async_hset(struct store_async *s, const char *key, const char *const *fv, size_t n,
                     int timeout_ms, store_done_cb *cb, void *arg, struct err *e) ATTR_WUR;

/* ---- any command (what jitr/ needs) ------------------------------------------------------ */

/* A reply, independent of hiredis; borrowed for the callback. Status replies ("OK") are strings. */
enum store_reply_type {
    STORE_REPLY_NIL,
    STORE_REPLY_STRING,
    STORE_REPLY_INTEGER,
    STORE_REPLY_ARRAY
};
struct store_reply {
    enum store_reply_type type;
    long long integer;
    const char *str; /* NUL-terminated; len bytes */
    size_t len;
    const struct store_reply *elem; /* ARRAY: n elements */
    size_t n;
};
typedef void store_reply_cb(void *arg, const struct store_reply *r, const struct err *e);

/* Sends argv[0..argc) as one command (avlen NULL: NUL-terminated strings); keys are used as
 * given (callers add STORE_PREFIX). An error reply completes with ERRC_UNAVAILABLE and the
 * server's text ("NOGROUP ...", "BUSYGROUP ...") in e->detail; r is NULL whenever e is set. */
int store_async_cmd(struct store_async *s, int argc, const char *const *argv, const size_t *avlen,
                    int timeout_ms, store_reply_cb *cb, void *arg, struct err *e) ATTR_WUR;

#endif
