/*
 * core/workq.c: every job runs once on a queue thread and completes once on the loop (here the
 * test's main thread, woken by a condition variable, or polling the queue's eventfd), in
 * submission order; a thread takes at
 * most take_max jobs at once; each thread has its own tls; workq_free runs what is queued, or
 * cancels it (ran = false) with cancel_on_free, and refuses submissions from then on.
 */
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "core/mem.h"
#include "core/util.h"
#include "core/workq.h"
#include "tests/harness/tt.h"

#define NJOBS 200

struct job {
    struct workq_job wq;
    struct world *w;
    int id;
    int runs;        /* on a queue thread */
    int dones;       /* on the loop */
    bool ran;        /* done's argument */
    pthread_t where; /* the thread done ran on */
    void *tls;       /* run's tls */
};

struct world {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool woken;
    size_t max_batch;
    int tls_made, tls_freed;
    bool gate_closed; /* run waits while it is */
    int running;      /* run calls that started */
    int order[NJOBS]; /* completion order */
    int ndone;
    struct workq *q;
    int resubmit_rc; /* workq_submit from a completion once freeing */
    enum err_code resubmit_code;
};

static void *tls_new(void *arg)
{
    struct world *w = arg;
    int *t = xcalloc(1, sizeof(*t));
    pthread_mutex_lock(&w->mu);
    *t = ++w->tls_made;
    pthread_mutex_unlock(&w->mu);
    return t;
}

static void tls_free(void *tls, void *arg)
{
    struct world *w = arg;
    pthread_mutex_lock(&w->mu);
    w->tls_freed++;
    pthread_mutex_unlock(&w->mu);
    xfree(tls);
}

static void run(struct workq_job **v, size_t n, void *tls, void *arg)
{
    struct world *w = arg;
    pthread_mutex_lock(&w->mu);
    w->running++;
    pthread_cond_broadcast(&w->cv);
    while (w->gate_closed) {
        pthread_cond_wait(&w->cv, &w->mu);
    }
    if (n > w->max_batch) {
        w->max_batch = n;
    }
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < n; i++) {
        struct job *j = (struct job *)(void *)v[i];
        j->runs++;
        j->tls = tls;
    }
}

static void wake(void *arg)
{
    struct world *w = arg;
    pthread_mutex_lock(&w->mu);
    w->woken = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void done(struct workq_job *wj, bool ran)
{
    struct job *j = (struct job *)(void *)wj;
    struct world *w = j->w;
    j->dones++;
    j->ran = ran;
    j->where = pthread_self();
    if (w->ndone < NJOBS) {
        w->order[w->ndone++] = j->id;
    }
}

/* The completion of the job submitted from a completion while the queue is freed. */
static void done_resubmit(struct workq_job *wj, bool ran)
{
    struct job *j = (struct job *)(void *)wj;
    struct err e = ERR_INIT;
    done(wj, ran);
    j->w->resubmit_rc = workq_submit(j->w->q, wj, &e);
    j->w->resubmit_code = e.code;
}

static void world_init(struct world *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

static void world_release(struct world *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

static struct workq *start(struct world *w, size_t threads, size_t take_max, bool cancel)
{
    struct workq_opts o = { 0 };
    struct err e = ERR_INIT;
    o.threads = threads;
    o.take_max = take_max;
    o.cancel_on_free = cancel;
    o.tls_new = tls_new;
    o.tls_free = tls_free;
    o.run = run;
    o.arg = w;
    o.wake = wake;
    o.wake_arg = w;
    o.name = "test";
    w->q = workq_new(&o, &e);
    return w->q;
}

/* The loop: waits for a wake, runs the completions, until `until` jobs completed. */
static void loop(struct world *w, int until)
{
    while (w->ndone < until) {
        pthread_mutex_lock(&w->mu);
        while (!w->woken) {
            pthread_cond_wait(&w->cv, &w->mu);
        }
        w->woken = false;
        pthread_mutex_unlock(&w->mu);
        workq_drain(w->q);
    }
}

static void gate(struct world *w, bool closed)
{
    pthread_mutex_lock(&w->mu);
    w->gate_closed = closed;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Until n run calls have started. */
static void wait_running(struct world *w, int n)
{
    pthread_mutex_lock(&w->mu);
    while (w->running < n) {
        pthread_cond_wait(&w->cv, &w->mu);
    }
    pthread_mutex_unlock(&w->mu);
}

static int test_every_job_once(void)
{
    int rc = 0;
    struct world w;
    struct job *jobs = xcalloc(NJOBS, sizeof(*jobs));
    struct err e = ERR_INIT;
    world_init(&w);
    CHECK(start(&w, 3, 4, false) != NULL);
    CHECK_INT_EQ(workq_threads(w.q), 3);
    gate(&w, true); /* the queue fills while the threads wait */
    for (int i = 0; i < NJOBS; i++) {
        jobs[i] = (struct job){ .w = &w, .id = i };
        jobs[i].wq.done = done;
        CHECK_OK(workq_submit(w.q, &jobs[i].wq, &e), &e);
    }
    CHECK_INT_EQ(workq_busy(w.q), NJOBS);
    gate(&w, false);
    loop(&w, NJOBS);
    CHECK_INT_EQ(workq_busy(w.q), 0);
    CHECK(w.max_batch >= 1 && w.max_batch <= 4);
    CHECK(workq_batches(w.q) >= NJOBS / 4);
    for (int i = 0; i < NJOBS; i++) {
        CHECK_INT_EQ(jobs[i].runs, 1);
        CHECK_INT_EQ(jobs[i].dones, 1);
        CHECK(jobs[i].ran);
        CHECK(pthread_equal(jobs[i].where, pthread_self()));
        CHECK(jobs[i].tls != NULL);
    }
    workq_free(w.q);
    w.q = NULL;
    CHECK_INT_EQ(w.tls_made, 3);
    CHECK_INT_EQ(w.tls_freed, 3);
out:
    workq_free(w.q);
    world_release(&w);
    xfree(jobs);
    return rc;
}

/* One thread and no take_max: everything queued meanwhile is one batch, completed in order. */
static int test_one_thread_takes_all(void)
{
    int rc = 0;
    struct world w;
    struct job jobs[20];
    struct err e = ERR_INIT;
    world_init(&w);
    CHECK(start(&w, 1, 0, false) != NULL);
    gate(&w, true);
    for (int i = 0; i < 20; i++) {
        jobs[i] = (struct job){ .w = &w, .id = i };
        jobs[i].wq.done = done;
        CHECK_OK(workq_submit(w.q, &jobs[i].wq, &e), &e);
        if (i == 0) {
            wait_running(&w, 1); /* the thread holds job 0; 1..19 queue behind it */
        }
    }
    gate(&w, false);
    loop(&w, 20);
    CHECK_INT_EQ(w.max_batch, 19);
    CHECK_INT_EQ(workq_batches(w.q), 2);
    for (int i = 0; i < 20; i++) {
        CHECK_INT_EQ(w.order[i], i);
    }
out:
    workq_free(w.q);
    world_release(&w);
    return rc;
}

static void *open_gate_later(void *arg)
{
    struct world *w = arg;
    struct timespec ts = { 0, 200 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    gate(w, false);
    return NULL;
}

/* workq_free while a batch runs and two jobs wait: cancelled (ran = false) or run first. */
static int free_with_queued(bool cancel)
{
    int rc = 0;
    struct world w;
    struct job jobs[3];
    struct err e = ERR_INIT;
    pthread_t opener;
    bool opener_started = false;
    world_init(&w);
    CHECK(start(&w, 1, 0, cancel) != NULL);
    gate(&w, true);
    for (int i = 0; i < 3; i++) {
        jobs[i] = (struct job){ .w = &w, .id = i };
        jobs[i].wq.done = i == 2 ? done_resubmit : done;
        CHECK_OK(workq_submit(w.q, &jobs[i].wq, &e), &e);
        if (i == 0) {
            wait_running(&w, 1);
        }
    }
    CHECK(pthread_create(&opener, NULL, open_gate_later, &w) == 0);
    opener_started = true;
    workq_free(w.q); /* the running batch completes; then jobs 1 and 2 */
    w.q = NULL;
    pthread_join(opener, NULL);
    opener_started = false;
    CHECK_INT_EQ(jobs[0].runs, 1);
    CHECK(jobs[0].ran);
    for (int i = 1; i < 3; i++) {
        CHECK_INT_EQ(jobs[i].runs, cancel ? 0 : 1);
        CHECK_INT_EQ(jobs[i].dones, 1);
        CHECK(jobs[i].ran == !cancel);
    }
    for (int i = 0; i < 3; i++) {
        CHECK_INT_EQ(w.order[i], i);
    }
    /* a completion that submits again while the queue goes is refused, not lost */
    CHECK_INT_EQ(w.resubmit_rc, -1);
    CHECK_INT_EQ(w.resubmit_code, ERRC_CANCELED);
    CHECK_INT_EQ(w.tls_freed, 1);
out:
    if (opener_started) {
        gate(&w, false);
        pthread_join(opener, NULL);
    }
    workq_free(w.q);
    world_release(&w);
    return rc;
}

static int test_free_cancels(void)
{
    return free_with_queued(true);
}

static int test_free_runs_queued(void)
{
    return free_with_queued(false);
}

/* Without a wake callback: the queue's eventfd is readable when completions are ready, and
 * workq_event_cb runs them (what a libevent loop's event on it does). */
static int test_eventfd(void)
{
    int rc = 0;
    struct world w;
    struct job jobs[5];
    struct workq_opts o = { 0 };
    struct err e = ERR_INIT;
    world_init(&w);
    o.threads = 2;
    o.run = run;
    o.arg = &w;
    w.q = workq_new(&o, &e);
    CHECK(w.q != NULL);
    CHECK(workq_fd(w.q) >= 0);
    for (int i = 0; i < 5; i++) {
        jobs[i] = (struct job){ .w = &w, .id = i };
        jobs[i].wq.done = done;
        CHECK_OK(workq_submit(w.q, &jobs[i].wq, &e), &e);
    }
    while (w.ndone < 5) {
        struct pollfd p = { workq_fd(w.q), POLLIN, 0 };
        CHECK(poll(&p, 1, 10000) == 1);
        workq_event_cb(p.fd, 0, w.q);
    }
    for (int i = 0; i < 5; i++) {
        CHECK_INT_EQ(jobs[i].dones, 1);
        CHECK(jobs[i].tls == NULL); /* no tls_new */
    }
    CHECK_INT_EQ(workq_busy(w.q), 0);
out:
    workq_free(w.q);
    world_release(&w);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "every_job_once", test_every_job_once },
        { "one_thread_takes_all", test_one_thread_takes_all },
        { "free_cancels", test_free_cancels },
        { "free_runs_queued", test_free_runs_queued },
        { "eventfd", test_eventfd },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
