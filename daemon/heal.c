/*
 * Self-healing of the Redis index (docs/daemon.md "Failure behaviour"; store/store.h and
 * issuance/reindex.h say what "complete" means and how a rebuild runs).
 *
 * Every worker asks Redis once a second, on its loop with the async client, whether index:ready
 * exists (one EXISTS; a lost connection is reconnected by the next ask, so a Redis that came
 * back empty is noticed within a second of its return). When it does not, the worker tries to
 * take the index lock (SET NX PX, in one script with a second look at index:ready, so that a
 * worker whose EXISTS came just before another's rebuild finished does not rebuild again:
 * store_index_heal_lock_lua); the one that gets it rebuilds the index from the audit log
 * in a thread of its own (never on the loop, never in a signing thread: the loop keeps
 * answering, and every request that needs the index gets 503 with Retry-After from the store's
 * guarded reads meanwhile). The rebuild renews the lock after every batch; a worker or jitrd
 * that dies mid-rebuild leaves a lock that expires within ISSUANCE_INDEX_LOCK_TTL_MS, and the
 * next worker to ask takes over. A failed rebuild (say, a damaged audit log) is retried every
 * HEAL_RETRY_MS; the index stays incomplete and clients keep getting 503, not refusals.
 * Progress goes to the log and to /metrics (jitrd_index_*).
 *
 * The tail. Redis's replication is asynchronous: after a failover (Sentinel promoting a replica)
 * or a restart that lost its last writes, index:ready is there but the newest index writes may be
 * missing. Worker 0 notices that Redis was unreachable and is back with a complete index, or that
 * the client now talks to another primary, and replays this node's own audit records from
 * HEAL_TAIL_MARGIN_S before the loss was noticed (issuance_reindex_tail: what is missing is
 * indexed, nothing that is there is overwritten; the JITR flows whose end record is there and
 * whose every state was lost get their end state back), in the same thread as a rebuild. Every
 * node does so with its own log: the index converges without an operator.
 */
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/api.h"
#include "issuance/reindex.h"
#include "store/async.h"
#include "store/store.h"

#define HEAL_CHECK_MS     500 /* at most once per tick of the worker (1 s) */
#define HEAL_RETRY_MS     5000
#define HEAL_TIMEOUT_MS   2000
#define HEAL_LOG_EVERY_MS 5000
/* how far before a loss the tail replay starts: covers the replication lag (the writes a replica
 * had not received) and the time between the loss and its being noticed */
#define HEAL_TAIL_MARGIN_S 120

struct heal {
    struct event_base *base;
    size_t slot;
    struct store_async *rs;
    char url[512];
    bool asking; /* an EXISTS or SET NX in flight */
    int64_t last_ask_ms;
    int64_t retry_at_ms; /* after a failed rebuild */
    /* the tail (worker 0): since when Redis is unreachable (0: it is not), the server it was
     * last reached at */
    int64_t down_since_ms;
    char server[600];
    bool tail;            /* the thread replays the tail (else it rebuilds) */
    char since[40];       /* the tail's start (RFC 3339) */
    int64_t tail_from_ms; /* down_since_ms to restore when the tail fails */
    bool stopping;
    /* the rebuild, while running */
    bool running;
    pthread_t thread;
    struct event *done_ev;
    struct snap *snap; /* its configuration, held until it is done */
    char token[200];
    atomic_bool abort;
    int64_t started_ms;
    int64_t logged_ms; /* touched by the thread only */
    int rc;
    struct err err;
    struct issuance_reindex_stats st;
};

static int on_progress(void *arg, const struct issuance_reindex_stats *st)
{
    struct heal *h = arg;
    int64_t now = time_now_ms();
    metrics_index_progress(st->records);
    if (now - h->logged_ms >= HEAL_LOG_EVERY_MS) {
        h->logged_ms = now;
        log_info("index rebuild: %llu audit records replayed, %llu certificates indexed",
                 (unsigned long long)st->records, (unsigned long long)st->certificates);
    }
    return atomic_load(&h->abort) ? 1 : 0;
}

static void *rebuild_main(void *arg)
{
    struct heal *h = arg;
    struct store *s = store_connect(h->snap->conf->redis_url, &h->err);
    h->rc = -1;
    h->logged_ms = time_now_ms();
    if (s != NULL && h->tail) {
        h->rc = issuance_reindex_tail(h->snap->conf, s, h->since, &h->st, &h->err);
    } else if (s != NULL) {
        h->rc =
            issuance_reindex_locked(h->snap->conf, s, h->token, on_progress, h, &h->st, &h->err);
    }
    /* a failed connection leaves the lock to expire (Redis is unreachable anyway) */
    store_free(s);
    event_active(h->done_ev, EV_READ, 0);
    return NULL;
}

static void on_rebuilt(evutil_socket_t fd, short what, void *arg)
{
    struct heal *h = arg;
    (void)fd;
    (void)what;
    pthread_join(h->thread, NULL);
    h->running = false;
    int64_t ms = time_now_ms() - h->started_ms;
    if (h->tail) {
        h->tail = false;
        if (h->rc == 0) {
            log_info("audit tail since %s replayed into the index in %lld ms: %llu records, %llu "
                     "certificates that were missing indexed, %llu revocations applied, %llu "
                     "JITR end states restored",
                     h->since, (long long)ms, (unsigned long long)h->st.records,
                     (unsigned long long)h->st.certificates, (unsigned long long)h->st.revoked,
                     (unsigned long long)h->st.jitr_restored);
        } else {
            h->down_since_ms = h->tail_from_ms; /* again at the next good answer */
            h->retry_at_ms = time_now_ms() + HEAL_RETRY_MS;
            log_warn("audit tail replay failed after %lld ms (retried in %d s): %s", (long long)ms,
                     HEAL_RETRY_MS / 1000, h->err.msg);
        }
        snap_unref(h->snap);
        h->snap = NULL;
        return;
    }
    metrics_index_rebuilt(h->rc == 0, h->st.records);
    if (h->rc == 0) {
        metrics_index_complete(1);
        log_info("index rebuilt from the audit log in %lld ms: %llu certificates (%llu revoked) "
                 "from %llu records; requests that need the index are served again",
                 (long long)ms, (unsigned long long)h->st.certificates,
                 (unsigned long long)h->st.revoked, (unsigned long long)h->st.records);
    } else {
        /* Redis going away or another process taking the lock over (its data flushed again
         * while we wrote) is what healing is for: a warning, and the retry; anything else (the
         * audit log unreadable) needs an operator */
        bool transient = h->err.code == ERRC_UNAVAILABLE || h->err.code == ERRC_CONFLICT;
        h->retry_at_ms = time_now_ms() + HEAL_RETRY_MS;
        log_at(transient ? LOG_LVL_WARN : LOG_LVL_ERROR,
               "index rebuild failed after %lld ms (retried in %d s): %s%s%s",
               (long long)ms, HEAL_RETRY_MS / 1000, h->err.msg, h->err.detail[0] ? " - " : "",
               h->err.detail);
    }
    snap_unref(h->snap);
    h->snap = NULL;
}

static void start_tail(struct heal *h, struct snap *s, int64_t from_ms)
{
    time_t t = (time_t)(from_ms / 1000) - HEAL_TAIL_MARGIN_S;
    h->snap = snap_ref(s);
    err_clear(&h->err);
    memset(&h->st, 0, sizeof(h->st));
    h->tail = true;
    h->tail_from_ms = from_ms;
    time_format_rfc3339(t, h->since, sizeof(h->since));
    h->started_ms = time_now_ms();
    h->running = true;
    log_warn("redis is back after a loss or a failover (%s): replaying this node's audit records "
             "since %s into the index (writes the new primary may have lost)",
             h->server, h->since);
    if (pthread_create(&h->thread, NULL, rebuild_main, h) != 0) {
        log_error("cannot start the audit tail thread");
        h->running = false;
        h->tail = false;
        snap_unref(h->snap);
        h->snap = NULL;
        h->retry_at_ms = time_now_ms() + HEAL_RETRY_MS;
    }
}

static void start_rebuild(struct heal *h, struct snap *s)
{
    h->snap = snap_ref(s);
    err_clear(&h->err);
    memset(&h->st, 0, sizeof(h->st));
    atomic_store(&h->abort, false);
    h->started_ms = time_now_ms();
    h->running = true;
    metrics_index_rebuilding();
    log_warn("the index of issued certificates is incomplete (Redis lost its data, or a rebuild "
             "was interrupted): worker %zu rebuilds it from the audit log; until it is done, "
             "requests that need it get 503",
             h->slot);
    if (pthread_create(&h->thread, NULL, rebuild_main, h) != 0) {
        log_error("cannot start the index rebuild thread");
        h->running = false;
        h->rc = -1;
        snap_unref(h->snap);
        h->snap = NULL;
        metrics_index_rebuilt(false, 0);
        h->retry_at_ms = time_now_ms() + HEAL_RETRY_MS;
    }
}

struct ask {
    struct heal *h;
    struct snap *snap;
    bool lock; /* the lock take's reply (else EXISTS) */
};

static void ask_send(struct heal *h, struct snap *s, bool lock);

static void on_reply(void *arg, const struct store_reply *r, const struct err *e)
{
    struct ask *a = arg;
    struct heal *h = a->h;
    struct snap *s = a->snap;
    bool lock = a->lock;
    xfree(a);
    h->asking = false;
    if (e != NULL) {
        /* Redis unreachable: requests get 503 from their own Redis calls; ask again later */
        if (e->code != ERRC_CANCELED) {
            metrics_redis_up(0);
            log_debug("index check: %s", e->msg);
            if (h->down_since_ms == 0) {
                h->down_since_ms = time_now_ms();
            }
        }
    } else if (!lock) {
        metrics_redis_up(1);
        bool ready = r->type == STORE_REPLY_INTEGER && r->integer == 1;
        metrics_index_complete(ready ? 1 : 0);
        const char *server = store_async_server(h->rs);
        if (h->slot == 0 && h->server[0] && strcmp(server, h->server) != 0 &&
            h->down_since_ms == 0) {
            h->down_since_ms = time_now_ms(); /* another primary without a loss seen */
        }
        snprintf(h->server, sizeof(h->server), "%s", server);
        if (!ready) {
            h->down_since_ms = 0; /* the rebuild replays everything */
        }
        if (!ready && !h->stopping && !h->running && time_now_ms() >= h->retry_at_ms) {
            ask_send(h, s, true);
        } else if (ready && h->slot == 0 && h->down_since_ms != 0 && !h->stopping && !h->running &&
                   time_now_ms() >= h->retry_at_ms) {
            int64_t from = h->down_since_ms;
            h->down_since_ms = 0;
            start_tail(h, s, from);
        }
    } else if (r->type == STORE_REPLY_INTEGER && r->integer == 1 && !h->stopping && !h->running) {
        start_rebuild(h, s); /* the lock is ours and the index still incomplete */
    }
    snap_unref(s);
}

static void ask_send(struct heal *h, struct snap *s, bool lock)
{
    struct err e = ERR_INIT;
    struct ask *a = xcalloc(1, sizeof(*a));
    char ttl[24];
    int rc;
    a->h = h;
    a->snap = snap_ref(s);
    a->lock = lock;
    h->asking = true;
    if (lock) {
        issuance_index_token(h->token, sizeof(h->token));
        snprintf(ttl, sizeof(ttl), "%d", ISSUANCE_INDEX_LOCK_TTL_MS);
        /* taken only while the index is still incomplete: a worker that asked just before
         * another's rebuild finished must not rebuild again */
        const char *av[] = {
            "EVAL", store_index_heal_lock_lua, "2", STORE_INDEX_LOCK, STORE_INDEX_READY, h->token,
            ttl
        };
        rc = store_async_cmd(h->rs, 7, av, NULL, HEAL_TIMEOUT_MS, on_reply, a, &e);
    } else {
        const char *av[] = { "EXISTS", STORE_INDEX_READY };
        rc = store_async_cmd(h->rs, 2, av, NULL, HEAL_TIMEOUT_MS, on_reply, a, &e);
    }
    if (rc != 0) {
        h->asking = false;
        snap_unref(a->snap);
        xfree(a);
        if (!h->stopping) {
            metrics_redis_up(0);
            if (h->down_since_ms == 0) {
                h->down_since_ms = time_now_ms();
            }
        }
        log_debug("index check: %s", e.msg);
    }
}

struct heal *heal_new(struct event_base *base, size_t slot)
{
    struct heal *h = xcalloc(1, sizeof(*h));
    h->base = base;
    h->slot = slot;
    h->done_ev = event_new(base, -1, 0, on_rebuilt, h);
    if (h->done_ev == NULL) {
        xfree(h);
        return NULL;
    }
    return h;
}

void heal_tick(struct heal *h, struct snap *s)
{
    struct err e = ERR_INIT;
    int64_t now = time_now_ms();
    if (h == NULL || h->stopping || h->asking || h->running ||
        now - h->last_ask_ms < HEAL_CHECK_MS) {
        return;
    }
    if (h->rs == NULL || strcmp(h->url, s->conf->redis_url) != 0) {
        store_async_free(h->rs);
        snprintf(h->url, sizeof(h->url), "%s", s->conf->redis_url);
        h->rs = store_async_new(h->base, h->url, &e);
        if (h->rs == NULL) {
            log_error("index check: %s", e.msg);
            return;
        }
    }
    h->last_ask_ms = now;
    ask_send(h, s, false);
}

void heal_stop(struct heal *h)
{
    if (h == NULL) {
        return;
    }
    h->stopping = true;
    atomic_store(&h->abort, true);
}

void heal_free(struct heal *h)
{
    if (h == NULL) {
        return;
    }
    h->stopping = true;
    if (h->running) {
        atomic_store(&h->abort, true);
        pthread_join(h->thread, NULL);
        h->running = false;
        snap_unref(h->snap);
    }
    store_async_free(h->rs); /* cancels an ask in flight: its callback runs now */
    event_free(h->done_ev);
    xfree(h);
}
