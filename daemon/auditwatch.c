/*
 * The audit log's health for jitrd (docs/daemon.md "Failure behaviour"), watched by worker 0 in
 * a thread of its own (reading the log never runs on the loop):
 *   - every AW_TAIL_MS, the end of the log as the next append would find it
 *     (audit_tail_check: a damaged last record, records cut off the end, the torn end of an
 *     acknowledged record; a torn unacknowledged write is fine, the next append cuts it);
 *   - at start, on SIGHUP (auditwatch_verify_now) and every AW_FULL_MS (every AW_FULL_BAD_MS
 *     while damaged, so a repair is noticed soon), the whole chain (audit_verify: an edited
 *     line in the middle);
 *   - the quarantine files next to the log.
 * The verdict goes to the shared metrics (metrics_audit_health): /readyz answers 503 with the line
 * and the problem while the log is damaged, and every worker's signing threads refuse (503) while
 * the walk has found a problem in the middle, which no append would notice. A damaged end needs
 * no such check: every append reads the end first and refuses (after moving the torn end of an
 * acknowledged record aside to a quarantine file).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/daemon.h"

#define AW_TAIL_MS     2000
#define AW_FULL_MS     3600000
#define AW_FULL_BAD_MS 30000

struct auditwatch {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;  /* under mu */
    bool again; /* a full verify asked for (SIGHUP), under mu */
    char *path;
};

/* One check; the verdict goes to the shared metrics. */
static void check(struct auditwatch *w, bool full, struct audit_report *last_full)
{
    struct audit_report tail, rep;
    struct err e = ERR_INIT;
    char **q = NULL;
    size_t nq = 0;
    if (full) {
        if (audit_verify(w->path, true, &rep, &e) != 0) {
            if (e.code != ERRC_NOT_FOUND) {
                log_warn("audit check: %s", e.msg);
            }
            memset(&rep, 0, sizeof(rep));
            err_clear(&e);
        }
        *last_full = rep;
    }
    if (audit_tail_check(w->path, &tail, &e) != 0) {
        log_warn("audit check: %s", e.msg);
        return;
    }
    /* the end of the log: the tail check is current and decides (a torn unacknowledged write is
     * fine there); the middle: the last full walk */
    bool walk = false;
    rep = tail;
    rep.line = tail.records + 1;
    if (tail.problem == AUDIT_OK && last_full->problem != AUDIT_OK &&
        last_full->problem != AUDIT_TRUNCATED) {
        rep = *last_full;
        walk = true;
    }
    if (audit_quarantine_list(w->path, &q, &nq, &e) != 0) {
        nq = 0;
    }
    for (size_t i = 0; i < nq; i++) {
        xfree(q[i]);
    }
    xfree(q);
    bool was = metrics_audit_damaged(NULL, NULL, NULL);
    metrics_audit_health(rep.problem, rep.line, walk, nq);
    if (rep.problem != AUDIT_OK && !was) {
        log_error("the audit log is damaged (%s): signing is refused with 503 until an operator "
                  "repairs it (jitrctl audit verify)",
                  rep.message);
    } else if (rep.problem == AUDIT_OK && was) {
        log_info("the audit log is intact again: signing resumes");
    }
}

static void *aw_main(void *arg)
{
    struct auditwatch *w = arg;
    struct audit_report last_full;
    int64_t next_full = 0;
    memset(&last_full, 0, sizeof(last_full));
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        bool full = w->again || time_now_ms() >= next_full;
        w->again = false;
        pthread_mutex_unlock(&w->mu);
        check(w, full, &last_full);
        if (full) {
            next_full =
                time_now_ms() + (last_full.problem == AUDIT_OK ? AW_FULL_MS : AW_FULL_BAD_MS);
        }
        pthread_mutex_lock(&w->mu);
        if (!w->stop && !w->again) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += AW_TAIL_MS / 1000;
            ts.tv_nsec += (AW_TAIL_MS % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

struct auditwatch *auditwatch_start(const char *path)
{
    struct auditwatch *w = xcalloc(1, sizeof(*w));
    w->path = xstrdup(path);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, aw_main, w) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        xfree(w->path);
        xfree(w);
        return NULL;
    }
    return w;
}

void auditwatch_verify_now(struct auditwatch *w)
{
    if (w == NULL) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->again = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void auditwatch_stop(struct auditwatch *w)
{
    if (w == NULL) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    xfree(w->path);
    xfree(w);
}
