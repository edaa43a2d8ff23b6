/*
 * The signing threads of a worker. The loop never blocks: a job (sign, look up, audit a refusal,
 * probe readiness, rebuild the snapshot) is queued here, run by a thread that owns its signer
 * and Redis connections (tls), and its completion is queued back and run on the loop through an
 * event activated from the thread (libevent with evthread_use_pthreads, called by the worker
 * before creating its base). Queues are intrusive singly linked lists under one mutex each.
 */
#include <event2/event.h>
#include <pthread.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "daemon/daemon.h"

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct pool_job *head, *tail; /* waiting to run */
    struct pool_job *dhead, *dtail; /* waiting for their completion on the loop */
    bool stop;
    size_t queued;
    size_t busy;
    size_t n;
    pthread_t *threads;
    void *(*tls_new)(void);
    void (*tls_free)(void *);
    void (*run_many)(struct pool_job **v, size_t n, void *tls);
    struct event *wake;
};

#define POOL_TAKE_MAX 64

/* A thread takes its share of the queue (queued / threads, at least one): jobs taken together
 * can share one serial reservation, one durable audit commit and one index write. */
static void *pool_thread(void *arg)
{
    struct pool *p = arg;
    void *tls = p->tls_new();
    struct pool_job *v[POOL_TAKE_MAX];
    for (;;) {
        size_t n = 0;
        pthread_mutex_lock(&p->mu);
        while (p->head == NULL && !p->stop) {
            pthread_cond_wait(&p->cv, &p->mu);
        }
        if (p->head == NULL) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        size_t share = (p->queued + p->n - 1) / p->n;
        if (share > POOL_TAKE_MAX) {
            share = POOL_TAKE_MAX;
        }
        while (p->head && n < share) {
            v[n] = p->head;
            p->head = p->head->next;
            v[n++]->next = NULL;
            p->queued--;
        }
        if (p->head == NULL) {
            p->tail = NULL;
        }
        pthread_mutex_unlock(&p->mu);
        if (p->run_many) {
            p->run_many(v, n, tls);
        } else {
            for (size_t i = 0; i < n; i++) {
                v[i]->run(v[i], tls);
            }
        }
        pthread_mutex_lock(&p->mu);
        for (size_t i = 0; i < n; i++) {
            if (p->dtail) {
                p->dtail->next = v[i];
            } else {
                p->dhead = v[i];
            }
            p->dtail = v[i];
        }
        pthread_mutex_unlock(&p->mu);
        event_active(p->wake, EV_READ, 0);
    }
    p->tls_free(tls);
    return NULL;
}

static void pool_drain(struct pool *p)
{
    pthread_mutex_lock(&p->mu);
    struct pool_job *j = p->dhead;
    p->dhead = p->dtail = NULL;
    pthread_mutex_unlock(&p->mu);
    while (j) {
        struct pool_job *next = j->next;
        p->busy--;
        j->done(j);
        j = next;
    }
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pool_drain(arg);
}

struct pool *pool_new(struct event_base *base, size_t n, void *(*tls_new)(void),
                      void (*tls_free)(void *),
                      void (*run_many)(struct pool_job **v, size_t n, void *tls))
{
    struct pool *p = xcalloc(1, sizeof(*p));
    p->run_many = run_many;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->tls_new = tls_new;
    p->tls_free = tls_free;
    p->wake = event_new(base, -1, 0, wake_cb, p);
    BUG_ON(p->wake == NULL);
    p->threads = xcalloc(n, sizeof(pthread_t));
    for (size_t i = 0; i < n; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_thread, p) != 0) {
            log_error("cannot start signing thread %zu", i);
            break;
        }
        p->n++;
    }
    if (p->n == 0) {
        pool_free(p);
        return NULL;
    }
    return p;
}

void pool_submit(struct pool *p, struct pool_job *j)
{
    j->next = NULL;
    p->busy++;
    pthread_mutex_lock(&p->mu);
    if (p->tail) {
        p->tail->next = j;
    } else {
        p->head = j;
    }
    p->tail = j;
    p->queued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

size_t pool_busy(const struct pool *p)
{
    return p->busy;
}

void pool_free(struct pool *p)
{
    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < p->n; i++) {
        pthread_join(p->threads[i], NULL);
    }
    pool_drain(p);
    event_free(p->wake);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    xfree(p->threads);
    xfree(p);
}
