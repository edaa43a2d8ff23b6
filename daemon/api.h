/*
 * Internal to daemon/: the state of one worker shared by the files that answer its routes
 * (daemon/job.h) and worker.c (the process: loop, listener, signals, timers), and what worker.c
 * calls of them. Everything here is touched on the loop only.
 */
#ifndef DAEMON_API_H
#define DAEMON_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/daemon.h"
#include "httpd/httpd.h"

struct api {
    struct event_base *base;
    struct httpd *httpd;
    struct pool *pool;
    struct snap *snap; /* current snapshot; jobs hold their own reference */
    struct aliases *al; /* the newest issuing aliases seen (daemon/aliaswatch.c); jobs too */
    const char *config_path;
    uint64_t gen;
    size_t slot;
    size_t jobs; /* submitted, completion not yet run */
    bool reloading;
    bool reload_again;
    int64_t last_reload_ms;
    struct audit_stats audit_base; /* of snapshots already replaced */
};

/* routes.c: the signing listener's routes, admin_listen's, ocsp_listen's, and their metrics
 * labels in the order metrics_request counts them (the signing listener's, admin_listen's, then
 * ocsp_listen's) into
 * names[0..cap); returns how many. */
extern const struct httpd_route api_routes[];
extern const size_t api_nroutes;
extern const struct httpd_route admin_routes[];
extern const size_t admin_nroutes;
extern const struct httpd_route ocsp_routes[];
extern const size_t ocsp_nroutes;
size_t routes_metric_names(const char **names, size_t cap);

/* Signing-thread state for pool_new. */
void *api_tls_new(void);
void api_tls_free(void *p);
/* Runs jobs a signing thread took together: the signing requests among them of one snapshot
 * share one issuance run per CA (one serial reservation, one durable audit commit, one index
 * write); the others run one by one. */
void api_run_many(struct pool_job **v, size_t n, void *tls);

/* aliaswatch.c: makes al (stolen) the worker's aliases, logging each alias that names another
 * CA now. */
void api_aliases_switch(struct api *a, struct aliases *al);
/* reload.c: builds a new snapshot in a signing thread and swaps it in on the loop, or logs why
 * it failed and keeps the current one. */
void api_reload_start(struct api *a);
/* expiry.c: submits the count of expiring certificates and CAs (metrics, the daily warning of
 * a CA under 90 days) to a signing thread. */
void api_expiry_schedule(struct api *a);
/* expiry.c: submits the count of the compromise responses (metrics) to a signing thread. */
void api_compromise_schedule(struct api *a);
/* crl.c: submits the CRL schedule check (regenerates the CRLs that are due) to a signing
 * thread. */
void api_crl_schedule(struct api *a);

/* Queues the readiness check of r (Redis answers, every CA key usable). detail: the reply names
 * the problem (admin_listen, admin stations); else a stranger learns only ready or not. */
void api_ready(struct api *a, struct httpd_req *r, bool detail);

/* refusal.c: requests nobody authenticated. refusal_reply answers r 403 on the loop (no job,
 * no audit record) and counts it: metrics at once, the log at most once per interval, the audit
 * log in the next deny_summary record. refusal_http is httpd's refused callback (arg: the api).
 * refusal_tick (once a second, and with final on SIGTERM) hands the counts of an elapsed
 * deny_summary_interval to a signing thread as one audit record. */
void refusal_reply(struct api *a, struct httpd_req *r, enum refusal_reason why,
                   const char *message);
void refusal_http(void *arg, int status, const char *code, const char *peer);
void refusal_tick(struct api *a, bool final);

/* admin.c: the plain-HTTP operations listener (conf admin_listen, "" = none) of a worker, and the
 * operations routes of the signing listener. */
int admin_start(struct api *a, struct err *e) ATTR_WUR;
void admin_stop_accepting(void);
void admin_free(void);
void admin_render_metrics(struct buf *out);
void admin_healthz(struct httpd_req *r, void *arg);
/* admin_listen's /readyz (naming the problem) and /metrics */
void admin_listen_readyz(struct httpd_req *r, void *arg);
void admin_listen_metrics(struct httpd_req *r, void *arg);

/* enroll.c: the TLS enrollment listener (conf enroll_listen, "" = none) of a worker. */
extern const struct httpd_route enroll_routes[];
extern const size_t enroll_nroutes;
int enroll_start(struct api *a, struct err *e) ATTR_WUR;
void enroll_stop_accepting(void);
void enroll_free(void);

/* ocsp.c: the plain-HTTP OCSP responder (conf ocsp_listen, "" = none) of a worker. */
int ocsp_start(struct api *a, struct err *e) ATTR_WUR;
void ocsp_stop_accepting(void);
void ocsp_free(void);

#endif
