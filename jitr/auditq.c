/*
 * The flows' audit writer (jitr_int.h): appends off the loop, on a core/workq.h queue of one
 * thread. Everything queued while the previous commit ran goes into one audit_append (one
 * write, one fdatasync); a record that an earlier attempt may have appended is looked up first
 * (audit_find_last). On jitr_auditq_free what no thread took is cancelled: its flows retry.
 */
#include <event2/event.h>

#include "audit/audit.h"
#include "core/mem.h"
#include "core/workq.h"
#include "jitr/jitr_int.h"

struct audit_item {
    struct workq_job job;
    struct jitr_auditq *q;
    json_t *rec; /* a deep copy: read by the thread, freed on the loop */
    bool check;
    uint64_t after;
    jitr_audit_cb *cb;
    void *arg;
    /* results, set by the thread */
    uint64_t seq;
    bool found;
    struct err err;
};

struct jitr_auditq {
    struct audit_log *log; /* borrowed */
    char *path;
    struct workq *wq;
    struct event *wake;
    uint64_t mark; /* loop: the highest seq known to be in the log */
};

/* The thread's work on what it took: look-ups first, then one append for the rest. */
static void auditq_run(struct workq_job **v, size_t n, void *tls, void *arg)
{
    struct jitr_auditq *q = arg;
    size_t k = 0;
    json_t **recs = xcalloc(n, sizeof(*recs));
    struct audit_item **its = xcalloc(n, sizeof(*its));
    uint64_t first = 0;
    struct err e = ERR_INIT;
    (void)tls;
    for (size_t i = 0; i < n; i++) {
        struct audit_item *it = (struct audit_item *)(void *)v[i];
        if (it->check) {
            const char *t = json_string_value(json_object_get(it->rec, "type"));
            const char *c = json_string_value(json_object_get(it->rec, "certificate_id"));
            if (audit_find_last(q->path, t ? t : "", "certificate_id", c ? c : "", it->after,
                                &it->seq, &it->found, &it->err) != 0 ||
                it->found) {
                continue;
            }
        }
        recs[k] = it->rec;
        its[k++] = it;
    }
    if (k > 0) {
        int rc = audit_append(q->log, recs, k, &first, &e);
        for (size_t i = 0; i < k; i++) {
            if (rc != 0) {
                err_copy(&its[i]->err, &e);
            } else {
                its[i]->seq = first + i;
            }
        }
    }
    xfree(recs);
    xfree(its);
}

/* On the loop: one append's completion. */
static void auditq_done(struct workq_job *j, bool ran)
{
    struct audit_item *it = (struct audit_item *)(void *)j;
    struct jitr_auditq *q = it->q;
    bool ok;
    if (!ran) {
        err_set(&it->err, ERRC_CANCELED, "jitr: audit append cancelled (shutting down)");
    }
    ok = it->err.code == ERRC_OK;
    if (ok && it->seq > q->mark) {
        q->mark = it->seq;
    }
    it->cb(it->arg, it->seq, it->found, ok ? NULL : &it->err);
    json_decref(it->rec);
    xfree(it);
}

struct jitr_auditq *jitr_auditq_new(struct event_base *base, struct audit_log *log,
                                    const char *path, struct err *e)
{
    struct jitr_auditq *q = xcalloc(1, sizeof(*q));
    struct workq_opts o = { 0 };
    bool found = false;
    q->log = log;
    q->path = xstrdup(path);
    if (audit_find_last(path, NULL, NULL, NULL, 0, &q->mark, &found, e) != 0) {
        err_prefix(e, "jitr: the end of the audit log");
        goto fail;
    }
    o.threads = 1;
    o.cancel_on_free = true; /* take_max 0: everything queued in one append */
    o.run = auditq_run;
    o.arg = q;
    o.name = "jitr audit writer";
    q->wq = workq_new(&o, e);
    if (q->wq == NULL) {
        goto fail;
    }
    q->wake = event_new(base, workq_fd(q->wq), EV_READ | EV_PERSIST, workq_event_cb, q->wq);
    if (q->wake == NULL || event_add(q->wake, NULL) != 0) {
        err_set(e, ERRC_INTERNAL, "jitr: cannot create the audit completion event");
        goto fail;
    }
    return q;
fail:
    jitr_auditq_free(q);
    return NULL;
}

int jitr_auditq_append(struct jitr_auditq *q, json_t *rec, bool check, uint64_t after,
                       jitr_audit_cb *cb, void *arg, struct err *e)
{
    struct audit_item *it = xcalloc(1, sizeof(*it));
    it->job.done = auditq_done;
    it->q = q;
    it->rec = json_deep_copy(rec);
    it->check = check;
    it->after = after;
    it->cb = cb;
    it->arg = arg;
    if (workq_submit(q->wq, &it->job, e) != 0) {
        json_decref(it->rec);
        xfree(it);
        return -1;
    }
    return 0;
}

uint64_t jitr_auditq_mark(const struct jitr_auditq *q)
{
    return q->mark;
}

size_t jitr_auditq_busy(const struct jitr_auditq *q)
{
    return workq_busy(q->wq);
}

uint64_t jitr_auditq_commits(struct jitr_auditq *q)
{
    return workq_batches(q->wq);
}

void jitr_auditq_free(struct jitr_auditq *q)
{
    if (q == NULL) {
        return;
    }
    if (q->wake) {
        event_free(q->wake);
    }
    workq_free(q->wq); /* the append in progress completes, the queued ones are cancelled */
    xfree(q->path);
    xfree(q);
}
