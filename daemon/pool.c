/*
 * The signing threads of a worker. The loop never blocks: a job (sign, look up, audit a refusal,
 * probe readiness, rebuild the snapshot) is queued here, run by a thread that owns its signer
 * and Redis connections (tls), and its completion is run back on the loop (an event on the
 * queue's eventfd). The queue is core/workq.h's; this file gives it the worker's threads.
 */
#include <event2/event.h>

#include "core/log.h"
#include "core/mem.h"
#include "daemon/daemon.h"

#define POOL_TAKE_MAX 64

struct pool {
    struct workq *wq;
    struct event *wake;
    void *(*tls_new)(void);
    void (*tls_free)(void *);
    void (*run_many)(struct pool_job **v, size_t n, void *tls);
};

static void *pool_tls_new(void *arg)
{
    struct pool *p = arg;
    return p->tls_new();
}

static void pool_tls_free(void *tls, void *arg)
{
    struct pool *p = arg;
    p->tls_free(tls);
}

/* A thread's share of the queue: jobs taken together can share one serial reservation, one
 * durable audit commit and one index write. */
static void pool_run(struct workq_job **v, size_t n, void *tls, void *arg)
{
    struct pool *p = arg;
    struct pool_job *jobs[POOL_TAKE_MAX];
    BUG_ON(n > POOL_TAKE_MAX);
    for (size_t i = 0; i < n; i++) {
        jobs[i] = (struct pool_job *)(void *)v[i];
    }
    if (p->run_many) {
        p->run_many(jobs, n, tls);
    } else {
        for (size_t i = 0; i < n; i++) {
            jobs[i]->run(jobs[i], tls);
        }
    }
}

static void pool_done(struct workq_job *j, bool ran)
{
    struct pool_job *pj = (struct pool_job *)(void *)j;
    (void)ran; /* always: the pool runs everything queued before it goes */
    pj->done(pj);
}

struct pool *pool_new(struct event_base *base, size_t n, void *(*tls_new)(void),
                      void (*tls_free)(void *),
                      void (*run_many)(struct pool_job **v, size_t n, void *tls))
{
    struct pool *p = xcalloc(1, sizeof(*p));
    struct workq_opts o = { 0 };
    struct err e = ERR_INIT;
    p->tls_new = tls_new;
    p->tls_free = tls_free;
    p->run_many = run_many;
    o.threads = n;
    o.take_max = POOL_TAKE_MAX;
    o.tls_new = pool_tls_new;
    o.tls_free = pool_tls_free;
    o.run = pool_run;
    o.arg = p;
    o.name = "signing";
    p->wq = workq_new(&o, &e);
    if (p->wq == NULL) {
        log_error("%s", e.msg);
        pool_free(p);
        return NULL;
    }
    p->wake = event_new(base, workq_fd(p->wq), EV_READ | EV_PERSIST, workq_event_cb, p->wq);
    BUG_ON(p->wake == NULL || event_add(p->wake, NULL) != 0);
    return p;
}

void pool_submit(struct pool *p, struct pool_job *j)
{
    struct err e = ERR_INIT;
    j->wq.done = pool_done;
    if (workq_submit(p->wq, &j->wq, &e) != 0) {
        /* only from a completion run by pool_free: nothing runs any more */
        log_error("%s", e.msg);
    }
}

size_t pool_busy(const struct pool *p)
{
    return workq_busy(p->wq);
}

void pool_free(struct pool *p)
{
    if (p == NULL) {
        return;
    }
    if (p->wake != NULL) {
        event_free(p->wake);
    }
    workq_free(p->wq); /* queued jobs run, then every completion */
    xfree(p);
}
