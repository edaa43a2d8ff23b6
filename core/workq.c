/*
 * The loop <-> threads work queue (core/workq.h). Two intrusive singly linked lists under one
 * mutex: the jobs waiting for a thread, the jobs waiting for their completion on the loop.
 */
#include "core/workq.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"

struct workq {
    struct workq_opts o;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct workq_job *head, *tail;   /* waiting for a thread (mu) */
    struct workq_job *dhead, *dtail; /* waiting for their completion (mu) */
    size_t queued;                   /* jobs in head..tail (mu) */
    bool stop;                       /* workq_free has begun (mu) */
    uint64_t batches;                /* calls of run (mu) */
    size_t n;                        /* threads started */
    pthread_t *threads;
    int efd;       /* without a wake callback: the eventfd the loop watches */
    size_t busy;   /* loop: submitted, completion not run yet */
    bool stopping; /* loop: workq_free has begun */
};

/* Appends the list first..last (linked) to the completions. mu held. */
static void completed(struct workq *q, struct workq_job *first, struct workq_job *last)
{
    if (q->dtail) {
        q->dtail->next = first;
    } else {
        q->dhead = first;
    }
    q->dtail = last;
}

/* From a thread: completions are ready. */
static void wake(struct workq *q)
{
    uint64_t one = 1;
    if (q->o.wake != NULL) {
        q->o.wake(q->o.wake_arg);
        return;
    }
    while (write(q->efd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

static void *workq_thread(void *arg)
{
    struct workq *q = arg;
    void *tls = q->o.tls_new ? q->o.tls_new(q->o.arg) : NULL;
    size_t cap = q->o.take_max ? q->o.take_max : 16;
    struct workq_job **v = xcalloc(cap, sizeof(*v));
    for (;;) {
        size_t n = 0, share;
        pthread_mutex_lock(&q->mu);
        while (q->head == NULL && !q->stop) {
            pthread_cond_wait(&q->cv, &q->mu);
        }
        if (q->head == NULL || (q->stop && q->o.cancel_on_free)) {
            pthread_mutex_unlock(&q->mu); /* what is queued is cancelled by workq_free */
            break;
        }
        share = (q->queued + q->n - 1) / q->n;
        if (q->o.take_max != 0 && share > q->o.take_max) {
            share = q->o.take_max;
        }
        if (share > cap) {
            cap = share;
            v = xrealloc(v, cap * sizeof(*v));
        }
        while (q->head && n < share) {
            v[n] = q->head;
            q->head = q->head->next;
            v[n++]->next = NULL;
            q->queued--;
        }
        if (q->head == NULL) {
            q->tail = NULL;
        }
        q->batches++;
        pthread_mutex_unlock(&q->mu);
        q->o.run(v, n, tls, q->o.arg);
        for (size_t i = 0; i + 1 < n; i++) {
            v[i]->next = v[i + 1];
        }
        pthread_mutex_lock(&q->mu);
        completed(q, v[0], v[n - 1]);
        pthread_mutex_unlock(&q->mu);
        wake(q);
    }
    xfree(v);
    if (q->o.tls_free) {
        q->o.tls_free(tls, q->o.arg);
    }
    return NULL;
}

/* The completions ready; ran says whether they were run (else cancelled). */
static void run_completions(struct workq *q, struct workq_job *j, bool ran)
{
    while (j) {
        struct workq_job *next = j->next;
        q->busy--;
        j->done(j, ran);
        j = next;
    }
}

void workq_drain(struct workq *q)
{
    struct workq_job *j;
    pthread_mutex_lock(&q->mu);
    j = q->dhead;
    q->dhead = q->dtail = NULL;
    pthread_mutex_unlock(&q->mu);
    run_completions(q, j, true);
}

int workq_fd(const struct workq *q)
{
    return q->efd;
}

void workq_event_cb(int fd, short what, void *arg)
{
    uint64_t n;
    (void)what;
    while (read(fd, &n, sizeof(n)) < 0 && errno == EINTR) {
    }
    workq_drain(arg);
}

struct workq *workq_new(const struct workq_opts *o, struct err *e)
{
    struct workq *q = xcalloc(1, sizeof(*q));
    BUG_ON(o->run == NULL || o->threads == 0);
    q->o = *o;
    q->efd = -1;
    if (q->o.name == NULL) {
        q->o.name = "work queue";
    }
    if (q->o.wake == NULL) {
        q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (q->efd < 0) {
            err_errno(e, ERRC_INTERNAL, "%s: eventfd", q->o.name);
            xfree(q);
            return NULL;
        }
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->threads = xcalloc(o->threads, sizeof(pthread_t));
    for (size_t i = 0; i < o->threads; i++) {
        if (pthread_create(&q->threads[i], NULL, workq_thread, q) != 0) {
            log_error("cannot start %s thread %zu", q->o.name, i);
            break;
        }
        pthread_mutex_lock(&q->mu);
        q->n++; /* read by the threads for their share */
        pthread_mutex_unlock(&q->mu);
    }
    if (q->n == 0) {
        err_set(e, ERRC_INTERNAL, "cannot start the %s threads", q->o.name);
        workq_free(q);
        return NULL;
    }
    return q;
}

int workq_submit(struct workq *q, struct workq_job *j, struct err *e)
{
    if (q->stopping) {
        return err_set(e, ERRC_CANCELED, "the %s is stopping", q->o.name);
    }
    j->next = NULL;
    q->busy++;
    pthread_mutex_lock(&q->mu);
    if (q->tail) {
        q->tail->next = j;
    } else {
        q->head = j;
    }
    q->tail = j;
    q->queued++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

size_t workq_busy(const struct workq *q)
{
    return q->busy;
}

uint64_t workq_batches(struct workq *q)
{
    uint64_t n;
    pthread_mutex_lock(&q->mu);
    n = q->batches;
    pthread_mutex_unlock(&q->mu);
    return n;
}

size_t workq_threads(const struct workq *q)
{
    return q->n;
}

void workq_free(struct workq *q)
{
    struct workq_job *cancelled;
    if (q == NULL) {
        return;
    }
    q->stopping = true;
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (size_t i = 0; i < q->n; i++) {
        pthread_join(q->threads[i], NULL); /* the batches in progress complete */
    }
    cancelled = q->head; /* with cancel_on_free: what no thread took */
    q->head = q->tail = NULL;
    workq_drain(q);
    run_completions(q, cancelled, false);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    if (q->efd >= 0) {
        close(q->efd);
    }
    xfree(q->threads);
    xfree(q);
}
