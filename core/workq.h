/*
 * A work queue between an event loop and threads, so the loop never blocks: jobs submitted on
 * the loop are run by the queue's threads, and each job's completion runs back on the loop. core/
 * knows no event library: a thread that has completions makes workq_fd readable (an eventfd),
 * and the loop's event on it calls workq_event_cb, which runs them (libevent:
 * event_new(base, workq_fd(q), EV_READ | EV_PERSIST, workq_event_cb, q), then event_add). A
 * loop of another kind may instead give a wake callback and call workq_drain. A thread takes several jobs at once (its share of the queue: queued /
 * threads, at least one, at most take_max) and runs them in one call, so jobs taken together
 * can share work (one durable audit commit, one serial reservation). Jobs are intrusive: embed
 * a struct workq_job and get back to the outer struct in run and done.
 */
#ifndef CORE_WORKQ_H
#define CORE_WORKQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/compat.h"
#include "core/err.h"

struct workq_job {
    struct workq_job *next; /* the queue's */
    /* on the loop, once per job: ran is false for a job workq_free cancelled (cancel_on_free) */
    void (*done)(struct workq_job *j, bool ran);
};

struct workq_opts {
    size_t threads;      /* at least 1 */
    size_t take_max;     /* jobs a thread takes at once, at most; 0 = no limit */
    bool cancel_on_free; /* workq_free: jobs not yet taken complete with ran = false (else the
                          * threads run them first) */
    /* per thread (tls), on that thread; NULL: tls is NULL */
    void *(*tls_new)(void *arg);
    void (*tls_free)(void *tls, void *arg);
    /* the jobs a thread took, in submission order, on that thread */
    void (*run)(struct workq_job **v, size_t n, void *tls, void *arg);
    void *arg;
    /* NULL: workq_fd; else called from a thread with completions ready, and the loop is to
     * call workq_drain */
    void (*wake)(void *wake_arg);
    void *wake_arg;
    const char *name; /* for messages ("audit writer", "signing thread") */
};

/* Starts the threads (as many as can be started, at least one: else NULL with *e set). */
struct workq *workq_new(const struct workq_opts *o, struct err *e) ATTR_WUR;
/* On the loop. 0: j->done runs exactly once, later, on the loop; -1 (ERRC_CANCELED) once
 * workq_free has begun (a completion that submits again). */
int workq_submit(struct workq *q, struct workq_job *j, struct err *e) ATTR_WUR;
/* On the loop, after wake: runs the completions ready. */
void workq_drain(struct workq *q);
/* Without a wake callback: readable when completions are ready (-1 with one). */
int workq_fd(const struct workq *q);
/* An event callback (libevent's event_callback_fn on Linux) for workq_fd: reads it, then
 * workq_drain(arg). */
void workq_event_cb(int fd, short what, void *arg);
/* Jobs submitted whose completion has not run yet. */
size_t workq_busy(const struct workq *q);
/* Calls of run so far (any thread). */
uint64_t workq_batches(struct workq *q);
/* Threads started. */
size_t workq_threads(const struct workq *q);
/* On the loop: lets the threads finish (and, without cancel_on_free, run everything queued),
 * joins them, runs every completion left on the calling thread, closes workq_fd, frees (free
 * the loop's event on workq_fd first). NULL is fine. */
void workq_free(struct workq *q);

#endif
