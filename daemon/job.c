/*
 * The jobs of jitrd's routes and the signing threads that run them (daemon/job.h).
 *
 * Thread state: per thread one Redis connection and one issuance_worker per CA of the snapshot,
 * rebuilt when the snapshot changes and dropped after a Redis failure (reconnected by the next
 * job, which is how jitrd recovers when Redis returns).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/job.h"

/* Bumped by any thread that sees Redis fail: every thread then drops its connections. */
static atomic_uint redis_epoch;

/* ---- thread state --------------------------------------------------------------------------- */

void ts_reset(struct tstate *ts)
{
    for (size_t i = 0; i < ts->niw; i++) {
        issuance_worker_free(ts->iw[i]);
    }
    xfree(ts->iw);
    ts->iw = NULL;
    ts->niw = 0;
    store_free(ts->store);
    ts->store = NULL;
    memset(&ts->cache, 0, sizeof(ts->cache));
}

static void *ts_new(void)
{
    return xcalloc(1, sizeof(struct tstate));
}

static void ts_free(void *p)
{
    ts_reset(p);
    xfree(p);
}

static void ts_sync(struct tstate *ts, const struct snap *s)
{
    if (ts->gen != s->gen || ts->niw != s->ncas) {
        ts_reset(ts);
        ts->gen = s->gen;
        ts->iw = xcalloc(s->ncas, sizeof(*ts->iw));
        ts->niw = s->ncas;
    }
}

struct store *ts_store(struct tstate *ts, const struct snap *s, struct err *e)
{
    ts_sync(ts, s);
    if (ts->store == NULL) {
        ts->store = store_connect(s->conf->redis_url, e);
    }
    return ts->store;
}

struct issuance_worker *ts_worker(struct tstate *ts, const struct snap *s, size_t ca, struct err *e)
{
    ts_sync(ts, s);
    if (ts->iw[ca] == NULL) {
        ts->iw[ca] = issuance_worker_new(s->cas[ca].ctx, e);
    }
    return ts->iw[ca];
}

void ts_after_error(struct tstate *ts, const struct err *e)
{
    if (e->code == ERRC_UNAVAILABLE && !store_err_index_incomplete(e)) {
        ts_reset(ts);
        ts->epoch = atomic_fetch_add(&redis_epoch, 1) + 1;
    }
}

/* Connections idle for a while may be dead (Redis restarted meanwhile): a PING finds out before a
 * request fails on them, and a failure drops them all so this job reconnects. */
static void ts_freshen(struct tstate *ts)
{
    struct err e = ERR_INIT;
    int64_t now = time_now_ms();
    unsigned epoch = atomic_load(&redis_epoch);
    if (epoch != ts->epoch) {
        ts_reset(ts);
        ts->epoch = epoch;
    } else if (ts->store && now - ts->last_ok_ms > 250 && store_ping(ts->store, &e) != 0) {
        log_info("redis connection lost (%s): reconnecting", e.msg);
        ts_reset(ts);
    }
    ts->last_ok_ms = now;
}

static void job_run(struct pool_job *pj, void *tls)
{
    struct job *j = (struct job *)pj;
    struct tstate *ts = tls;
    log_set_request_id(j->request_id[0] ? j->request_id : NULL);
    if (j->kind != J_RELOAD && j->kind != J_DENY) {
        ts_freshen(ts);
    }
    j->work(j, ts);
    log_set_request_id(NULL);
}

void job_free(struct job *j)
{
    xfree(j->out);
    xfree(j->ca_of);
    api_batch_free(j->items, j->n);
    X509_NAME_free(j->subject);
    buf_release(&j->body);
    buf_release(&j->input);
    snap_unref(j->snap);
    aliases_unref(j->al);
    snap_unref(j->new_snap);
    xfree(j);
}

static void job_done(struct pool_job *pj)
{
    struct job *j = (struct job *)pj;
    struct api *a = j->api;
    a->jobs--;
    if (j->finish) {
        j->finish(j);
    } else if (j->req == NULL) {
        /* a job of the worker itself (the CRL schedule): nobody to answer */
    } else {
        if (j->retry_after[0]) {
            httpd_req_add_header(j->req, "Retry-After", j->retry_after);
        }
        if (j->status == 401) {
            httpd_req_add_header(j->req, "WWW-Authenticate", "Bearer");
        }
        if (strstr(j->ctype, "pkcs7")) {
            httpd_req_add_header(j->req, "Content-Transfer-Encoding", "base64");
        }
        httpd_reply(j->req, j->status ? j->status : 500, j->ctype[0] ? j->ctype : "text/plain",
                    j->body.data, j->body.len);
    }
    job_free(j);
}

struct job *job_new(struct api *a, struct httpd_req *r, enum job_kind kind, job_fn *work)
{
    struct job *j = xcalloc(1, sizeof(*j));
    j->pj.run = job_run;
    j->pj.done = job_done;
    j->kind = kind;
    j->work = work;
    j->api = a;
    j->req = r;
    j->snap = snap_ref(a->snap);
    j->al = aliases_ref(a->al);
    if (r) {
        snprintf(j->request_id, sizeof(j->request_id), "%s", httpd_req_id(r));
    }
    return j;
}

void job_submit(struct api *a, struct job *j)
{
    a->jobs++;
    pool_submit(a->pool, &j->pj);
}

const uint8_t *job_body(struct httpd_req *r, size_t *len, char media[JOB_MEDIA_MAX])
{
    api_media_type(httpd_req_header(r, "Content-Type"), media, JOB_MEDIA_MAX);
    return httpd_req_body(r, len);
}

struct api_csr_req *job_one_item(struct job *j)
{
    j->items = xcalloc(1, sizeof(*j->items));
    j->n = 1;
    return &j->items[0];
}

void job_refuse_body(struct job *j, struct httpd_req *r, const struct err *e, bool bad_type)
{
    job_free(j);
    if (bad_type) {
        httpd_reply_error(r, 415, "unsupported_media_type", e->msg);
    } else {
        httpd_reply_err(r, e);
    }
}

static bool is_sign(const struct job *j)
{
    return j->kind == J_SIGN || j->kind == J_BATCH || j->kind == J_EST_ENROLL;
}

void api_run_many(struct pool_job **v, size_t n, void *tls)
{
    struct tstate *ts = tls;
    struct job **batch = xcalloc(n, sizeof(*batch));
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) {
        struct job *j = (struct job *)v[i];
        if (v[i]->run != job_run) {
            v[i]->run(v[i], tls); /* a job of another file (refusal.c's deny_summary) */
        } else if (is_sign(j) && (nb == 0 || batch[0]->snap == j->snap)) {
            batch[nb++] = j;
        } else {
            job_run(v[i], tls);
        }
    }
    if (nb) {
        ts_freshen(ts);
        sign_jobs(ts, batch, nb);
    }
    xfree(batch);
}

void *api_tls_new(void)
{
    return ts_new();
}

void api_tls_free(void *p)
{
    ts_free(p);
}
