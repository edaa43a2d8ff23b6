/*
 * One jitrd worker process: its own libevent loop (evthread_use_pthreads so signing threads can
 * post completions), its own SO_REUSEPORT listener, its signing threads, its snapshot.
 *
 * Signals (forwarded by the parent): SIGHUP rebuilds the snapshot in a signing thread and swaps
 * it in on the loop, connections stay open; SIGTERM stops accepting, lets requests in flight
 * finish for up to drain_timeout seconds, then closes every connection and exits 0.
 * A once-a-second tick publishes the audit counters and, while a CA key could not be loaded,
 * retries the snapshot every 5 seconds so jitrd recovers when the key becomes readable.
 */
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/api.h"
#include "issuance/issuance.h"
#include "jitr/jitr.h"

#define DEGRADED_RETRY_MS 5000
#define CRL_CHECK_SECONDS 10 /* how often worker 0 asks whether a CRL is due */

struct worker {
    struct api api;
    struct jitr_service *jitr; /* NULL without jitr.enabled */
    struct heal *heal;         /* the Redis index's self-healing */
    struct aliaswatch *alias;  /* issuing aliases: rebuilds the snapshot when they change */
    struct auditwatch *aw;     /* worker 0: the audit log's health */
    struct event *ev_hup, *ev_term, *ev_int, *tick;
    bool stopping;
    int64_t stop_deadline_ms;
    uint64_t ticks; /* seconds since the worker started */
};

static SSL_CTX *current_ssl(void *arg)
{
    struct api *a = arg;
    return a->snap->ssl;
}

static void on_reply(void *arg, int route, int status, int64_t ns)
{
    (void)arg;
    metrics_request(route, status, ns);
}

static void on_hup(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    log_info("SIGHUP: reloading");
    api_reload_start(&w->api);
    jitr_service_reload(w->jitr, w->api.config_path); /* NULL without JITR: nothing */
    auditwatch_verify_now(w->aw);
}

static void on_term(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    if (w->stopping) {
        return;
    }
    log_info("%s: draining (%zu requests in flight)", fd == SIGINT ? "SIGINT" : "SIGTERM",
             httpd_requests_in_flight(w->api.httpd));
    w->stopping = true;
    w->stop_deadline_ms = time_now_ms() + w->api.snap->conf->drain_timeout * 1000;
    httpd_stop_accepting(w->api.httpd);
    admin_stop_accepting();
    ocsp_stop_accepting();
    enroll_stop_accepting();
    jitr_service_drain(w->jitr);
    heal_stop(w->heal);
    struct timeval tv = { 0, 50000 };
    event_del(w->tick);
    event_add(w->tick, &tv);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    struct api *a = &w->api;
    struct audit_stats st = a->audit_base;
    snap_audit_totals(a->snap, &st);
    metrics_audit(a->slot, &st);
    refusal_tick(a, w->stopping); /* the last deny_summary before exiting */
    if (w->stopping) {
        if ((httpd_requests_in_flight(a->httpd) == 0 && a->jobs == 0 &&
             jitr_service_busy(w->jitr) == 0) ||
            time_now_ms() >= w->stop_deadline_ms) {
            event_base_loopexit(a->base, NULL);
        }
        return;
    }
    heal_tick(w->heal, a->snap);
    /* one worker keeps the CRLs fresh (the check is cheap when nothing is due) and counts what
     * expires (at once, then every expiry_check_interval seconds) */
    if (a->slot == 0) {
        ++w->ticks;
        if (w->ticks % CRL_CHECK_SECONDS == 0) {
            api_crl_schedule(a);
        }
        if ((w->ticks - 1) % (uint64_t)a->snap->conf->expiry_check_interval == 0) {
            api_expiry_schedule(a);
        }
        if (w->ticks % COMPROMISE_CHECK_SECONDS == 0) {
            api_compromise_schedule(a);
        }
    }
    if (a->snap->degraded && !a->reloading &&
        time_now_ms() - a->last_reload_ms >= DEGRADED_RETRY_MS) {
        api_reload_start(a);
    }
}

int worker_main(const char *config_path, size_t slot)
{
    struct worker w;
    struct err e = ERR_INIT;
    int rc = 1;
    struct api *a = &w.api;
    const struct conf *c = NULL;
    struct httpd_opts o;
    struct timeval sec = { 1, 0 };
    struct jitr_service *jitr = NULL;
    memset(&w, 0, sizeof(w));
    memset(&o, 0, sizeof(o));
    a->config_path = config_path;
    a->slot = slot;
    /* a peer that went away is an error return, not a death */
    struct sigaction ign;
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, NULL);
    if (evthread_use_pthreads() != 0) {
        log_error("libevent has no thread support");
        return 1;
    }
    a->base = event_base_new();
    if (a->base == NULL) {
        log_error("cannot create the event loop");
        return 1;
    }
    a->snap = snap_build(config_path, 1, &e);
    if (a->snap == NULL) {
        log_error("worker %zu: %s", slot, e.msg);
        goto out;
    }
    a->gen = 1;
    a->al = aliases_ref(a->snap->al);
    a->last_reload_ms = time_now_ms();
    c = a->snap->conf;
    log_set_level((enum log_level)log_level_parse(c->log_level));
    a->pool = pool_new(a->base, (size_t)c->worker_threads, api_tls_new, api_tls_free,
                       api_run_many);
    if (a->pool == NULL) {
        log_error("worker %zu: cannot start the signing threads", slot);
        goto out;
    }
    o.listen = c->listen;
    o.max_body = (size_t)c->max_body_bytes;
    o.request_timeout = (int)c->request_timeout;
    o.idle_timeout = (int)c->idle_timeout;
    o.max_conns = (size_t)c->max_connections;
    o.routes = api_routes;
    o.nroutes = api_nroutes;
    o.ssl_ctx = current_ssl;
    o.done = on_reply;
    o.refused = refusal_http;
    o.arg = a;
    a->httpd = httpd_new(a->base, &o, &e);
    if (a->httpd == NULL || admin_start(a, &e) != 0 || ocsp_start(a, &e) != 0 ||
        enroll_start(a, &e) != 0) {
        log_error("worker %zu: %s", slot, e.msg);
        goto out;
    }
    /* JITR (jitr/jitr.h, docs/jitr.md): its own intake listener, the stream consumer, reconciler */
    if (c->jitr.enabled) {
        jitr = jitr_service_new(a->base, c, slot, &e);
        if (jitr == NULL) {
            log_error("worker %zu: %s", slot, e.msg);
            goto out;
        }
        w.jitr = jitr; /* drained with the signing listener on SIGTERM */
    }
    if (slot == 0 && (w.aw = auditwatch_start(conf_audit_path(c))) == NULL) {
        log_error("worker %zu: cannot start the audit log check", slot);
        goto out;
    }
    w.heal = heal_new(a->base, slot);
    if (w.heal == NULL) {
        log_error("worker %zu: cannot set up the index check", slot);
        goto out;
    }
    w.alias = aliaswatch_new(a);
    if (w.alias == NULL) {
        log_error("worker %zu: cannot set up the alias check", slot);
        goto out;
    }
    w.ev_hup = evsignal_new(a->base, SIGHUP, on_hup, &w);
    w.ev_term = evsignal_new(a->base, SIGTERM, on_term, &w);
    w.ev_int = evsignal_new(a->base, SIGINT, on_term, &w);
    w.tick = event_new(a->base, -1, EV_PERSIST, on_tick, &w);
    if (w.ev_hup == NULL || w.ev_term == NULL || w.ev_int == NULL || w.tick == NULL ||
        event_add(w.ev_hup, NULL) != 0 || event_add(w.ev_term, NULL) != 0 ||
        event_add(w.ev_int, NULL) != 0 || event_add(w.tick, &sec) != 0) {
        log_error("worker %zu: cannot set up signals and timers", slot);
        goto out;
    }
    log_info("worker %zu listening on %s with %lld signing threads", slot, c->listen,
             (long long)c->worker_threads);
    event_base_dispatch(a->base);
    log_info("worker %zu stopped", slot);
    rc = 0;
out:
    w.jitr = NULL;
    jitr_service_free(jitr);
    aliaswatch_free(w.alias);
    heal_free(w.heal);
    auditwatch_stop(w.aw);
    /* completions still queued reply through httpd: the pool goes first */
    pool_free(a->pool);
    httpd_free(a->httpd);
    admin_free();
    ocsp_free();
    enroll_free();
    if (w.ev_hup) {
        event_free(w.ev_hup);
    }
    if (w.ev_term) {
        event_free(w.ev_term);
    }
    if (w.ev_int) {
        event_free(w.ev_int);
    }
    if (w.tick) {
        event_free(w.tick);
    }
    snap_unref(a->snap);
    aliases_unref(a->al);
    event_base_free(a->base);
    return rc;
}
