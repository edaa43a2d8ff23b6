/*
 * Internal to daemon/: the state of one worker shared by api.c (routes, jobs) and worker.c (the
 * process: loop, listener, signals, timers). Everything here is touched on the loop only.
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
    const char *config_path;
    uint64_t gen;
    size_t slot;
    size_t jobs; /* submitted, completion not yet run */
    bool reloading;
    bool reload_again;
    int64_t last_reload_ms;
    struct audit_stats audit_base; /* of snapshots already replaced */
};

extern const struct httpd_route api_routes[];
extern const size_t api_nroutes;
extern const char *const api_route_names[];

/* Signing-thread state for pool_new. */
void *api_tls_new(void);
void api_tls_free(void *p);
/* Runs jobs a signing thread took together: the signing requests among them of one snapshot
 * share one issuance run per CA (one serial reservation, one durable audit commit, one index
 * write); the others run one by one. */
void api_run_many(struct pool_job **v, size_t n, void *tls);

/* Builds a new snapshot in a signing thread; api_reload_done (worker.c) swaps it in on the
 * loop, or logs why it failed and keeps the current one. */
void api_reload_start(struct api *a);
/* Submits the CRL schedule check (regenerates the CRLs that are due) to a signing thread. */
void api_crl_schedule(struct api *a);
void api_reload_done(struct api *a, struct snap *fresh, const struct err *e);

#endif
