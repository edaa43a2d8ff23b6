/*
 * The "renewal" kind: a renewed certificate retired once its renewal is ACTIVE in AWS IoT
 * (jobs/renewal.h), and the host that runs its revocations off the loop.
 */
#include "jobs/renewal.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "core/workq.h"
#include "issuance/revoke.h"
#include "store/store.h"

/* LIST → DETACH rounds before the job backs off (AWS lists a principal's things eventually
 * consistently: a thing just detached may still be listed for a moment). */
#define RENEWAL_ROUNDS_MAX 8

static void st_new(struct jobs_job *j);
static void st_old(struct jobs_job *j);
static void st_describe(struct jobs_job *j);
static void st_list(struct jobs_job *j);
static void st_detach(struct jobs_job *j);
static void st_deactivate(struct jobs_job *j);
static void st_revoke(struct jobs_job *j);

static const struct jobs_state renewal_states[] = {
    { "NEW", st_new },       { "OLD", st_old },       { "DESCRIBE", st_describe },
    { "LIST", st_list },     { "DETACH", st_detach }, { "DEACTIVATE", st_deactivate },
    { "REVOKE", st_revoke },
};

const struct jobs_kind jobs_kind_renewal = {
    .name = "renewal",
    .description = "a renewed certificate is detached, INACTIVE and revoked (superseded) once "
                   "its renewal is ACTIVE, after renewal_grace",
    .key_field = "cert",
    .cert_lock = false,
    .audit_type = "renewal_retire",
    .states = renewal_states,
    .nstates = sizeof(renewal_states) / sizeof(renewal_states[0]),
};

void jobs_renewal_job(struct jobs_renewal_new *out, const char *new_id, const char *serial,
                      const char *renews, const char *thing, int64_t now_ms, int64_t grace_s)
{
    out->fields[0] = "serial";
    out->fields[1] = serial;
    out->fields[2] = "renews";
    out->fields[3] = renews;
    out->fields[4] = "thing";
    out->fields[5] = thing ? thing : "";
    out->v = (struct jobs_new){ .kind = &jobs_kind_renewal,
                                .key = new_id,
                                .fields = out->fields,
                                .nfields = 3,
                                .not_before_ms = grace_s > 0 ? now_ms + grace_s * 1000 : 0,
                                .src = "jitr" };
}

static const char *field(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static bool is_aws(const struct jobs_job *j, const char *code)
{
    return strcmp(jobs_result_aws_code(j), code) == 0;
}

/* The job's end: its audit record says what happened to both certificates. */
static void finish(struct jobs_job *j, const char *outcome)
{
    json_t *rec =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "serial", jobs_get(j, "serial"), "renews",
                  jobs_get(j, "renews"), "thing", jobs_get(j, "thing"), "new_status",
                  jobs_get(j, "new_status"), "old_certificate_id", jobs_get(j, "old_id"),
                  "old_aws_before", jobs_get(j, "old_aws"), "old_aws_status",
                  jobs_get(j, "old_aws_after"), "detached", jobs_get(j, "detached"));
    if (jobs_get(j, "revoked")[0]) {
        json_object_set_new(rec, "revoked", json_string(jobs_get(j, "revoked")));
    }
    jobs_finish(j, outcome, rec);
}

/* NEW: the renewal is still ACTIVE in AWS (the grace may have seen it revoked or held). */
static void st_new(struct jobs_job *j)
{
    struct err e = ERR_INIT;
    if (!jobs_have_result(j)) {
        if (jobs_get(j, "renews")[0] == '\0' || jobs_get(j, "serial")[0] == '\0') {
            err_set(&e, ERRC_INVALID, "renewal job %.64s: no serial or renews", jobs_key(j));
            jobs_dead(j, &e);
            return;
        }
        jobs_aws(j, AWS_IOT_DESCRIBE_CERTIFICATE, json_pack("{s:s}", "certificateId", jobs_key(j)));
        return;
    }
    if (jobs_result_err(j)->code != ERRC_OK) {
        if (is_aws(j, "ResourceNotFoundException")) {
            jobs_set(j, "new_status", "unknown");
            finish(j, "kept");
            return;
        }
        jobs_fail_op(j, "DescribeCertificate of the renewal");
        return;
    }
    {
        const char *st = field(json_object_get(jobs_result(j), "certificateDescription"), "status");
        jobs_set(j, "new_status", st);
        if (strcmp(st, "ACTIVE") != 0) {
            log_info("renewal %.16s... is %s in AWS IoT: certificate %s is kept", jobs_key(j), st,
                     jobs_get(j, "renews"));
            finish(j, "kept");
            return;
        }
    }
    jobs_next(j, "OLD");
}

/* OLD: the renewed certificate's certificateId and CA from our index. */
static void st_old(struct jobs_job *j)
{
    struct err e = ERR_INIT;
    json_t *rec;
    if (!jobs_have_result(j)) {
        jobs_cert_lookup(j, jobs_get(j, "renews"), "renews");
        return;
    }
    if ((rec = jobs_cert_record(j)) == NULL) {
        return;
    }
    {
        if (json_object_size(rec) == 0 || field(rec, "fingerprint")[0] == '\0') {
            json_decref(rec);
            err_set(&e, ERRC_NOT_FOUND,
                    "the renewed certificate %.40s is not in our index: run jitrctl reindex, "
                    "then jitrctl jobs dlq retry",
                    jobs_get(j, "renews"));
            jobs_dead(j, &e);
            return;
        }
        jobs_set(j, "old_id", field(rec, "fingerprint"));
        jobs_set(j, "old_ca", field(rec, "ca"));
        json_decref(rec);
    }
    jobs_next(j, "DESCRIBE");
}

/* DESCRIBE: the old certificate's ARN and status in AWS. */
static void st_describe(struct jobs_job *j)
{
    if (!jobs_have_result(j)) {
        jobs_aws(j, AWS_IOT_DESCRIBE_CERTIFICATE,
                 json_pack("{s:s}", "certificateId", jobs_get(j, "old_id")));
        return;
    }
    if (jobs_result_err(j)->code != ERRC_OK) {
        if (is_aws(j, "ResourceNotFoundException")) { /* never registered: our index only */
            jobs_set(j, "old_aws", "unknown");
            jobs_set(j, "old_aws_after", "unknown");
            jobs_next(j, "REVOKE");
            return;
        }
        jobs_fail_op(j, "DescribeCertificate of the renewed certificate");
        return;
    }
    {
        json_t *d = json_object_get(jobs_result(j), "certificateDescription");
        if (field(d, "certificateArn")[0] == '\0' || field(d, "status")[0] == '\0') {
            struct err e = ERR_INIT;
            err_set(&e, ERRC_UNAVAILABLE, "DescribeCertificate: no ARN or status of %.16s...",
                    jobs_get(j, "old_id"));
            jobs_retry(j, &e);
            return;
        }
        jobs_set(j, "old_arn", field(d, "certificateArn"));
        jobs_set(j, "old_aws", field(d, "status"));
        jobs_set(j, "old_aws_after", field(d, "status"));
        jobs_set(j, "rounds", "0");
    }
    jobs_next(j, "LIST");
}

/* LIST: the things the old certificate is still attached to. */
static void st_list(struct jobs_job *j)
{
    struct err e = ERR_INIT;
    char n[16];
    json_t *things;
    if (!jobs_have_result(j)) {
        jobs_aws(j, AWS_IOT_LIST_PRINCIPAL_THINGS,
                 json_pack("{s:s,s:i}", "principal", jobs_get(j, "old_arn"), "maxResults", 250));
        return;
    }
    if (jobs_result_err(j)->code != ERRC_OK) {
        jobs_fail_op(j, "ListPrincipalThings");
        return;
    }
    things = json_object_get(jobs_result(j), "things");
    if (json_array_size(things) == 0) {
        jobs_next(j, "DEACTIVATE");
        return;
    }
    uint64_t rounds = 0;
    if (str_to_u64(jobs_get(j, "rounds"), &rounds) != 0) {
        rounds = 0;
    }
    if (rounds >= RENEWAL_ROUNDS_MAX) {
        jobs_set(j, "rounds", "0");
        err_set(&e, ERRC_UNAVAILABLE,
                "certificate %.16s... is still listed on thing %.128s after %llu detachments",
                jobs_get(j, "old_id"), json_string_value(json_array_get(things, 0)),
                (unsigned long long)rounds);
        jobs_retry(j, &e);
        return;
    }
    snprintf(n, sizeof(n), "%llu", (unsigned long long)rounds + 1);
    jobs_set(j, "rounds", n);
    jobs_set(j, "detach", json_string_value(json_array_get(things, 0)));
    jobs_next(j, "DETACH");
}

/* DETACH: one thing from the old certificate; a detachment that went through before a crash
 * answers ResourceNotFoundException. */
static void st_detach(struct jobs_job *j)
{
    const char *thing = jobs_get(j, "detach");
    if (!jobs_have_result(j)) {
        jobs_aws(j, AWS_IOT_DETACH_THING_PRINCIPAL,
                 json_pack("{s:s,s:s}", "thingName", thing, "principal", jobs_get(j, "old_arn")));
        return;
    }
    if (jobs_result_err(j)->code != ERRC_OK && !is_aws(j, "ResourceNotFoundException")) {
        jobs_fail_op(j, "DetachThingPrincipal");
        return;
    }
    {
        const char *done = jobs_get(j, "detached");
        size_t len = strlen(done) + strlen(thing) + 2;
        /* the things detached, comma-separated (thing names have no comma), for the record */
        if (strstr(done, thing) == NULL && len <= JOBS_VALUE_MAX) {
            char *all = xmalloc(len);
            snprintf(all, len, "%s%s%s", done, done[0] ? "," : "", thing);
            jobs_set(j, "detached", all);
            xfree(all);
        }
        log_info("renewal %.16s...: certificate %s detached from thing %s", jobs_key(j),
                 jobs_get(j, "renews"), thing);
    }
    jobs_next(j, "LIST");
}

/* DEACTIVATE: INACTIVE in AWS when it is ACTIVE; REVOKED stays REVOKED. */
static void st_deactivate(struct jobs_job *j)
{
    const char *before = jobs_get(j, "old_aws_after");
    if (!jobs_have_result(j)) {
        if (strcmp(before, "ACTIVE") != 0) {
            jobs_next(j, "REVOKE");
            return;
        }
        jobs_aws(j, AWS_IOT_UPDATE_CERTIFICATE,
                 json_pack("{s:s,s:s}", "certificateId", jobs_get(j, "old_id"), "newStatus",
                           "INACTIVE"));
        return;
    }
    if (jobs_result_err(j)->code != ERRC_OK) {
        if (is_aws(j, "CertificateStateException")) { /* revoked meanwhile: final */
            jobs_set(j, "old_aws_after", "REVOKED");
            jobs_next(j, "REVOKE");
            return;
        }
        jobs_fail_op(j, "UpdateCertificate INACTIVE");
        return;
    }
    jobs_set(j, "old_aws_after", "INACTIVE");
    log_info("renewal %.16s...: certificate %s is INACTIVE in AWS IoT", jobs_key(j),
             jobs_get(j, "renews"));
    jobs_next(j, "REVOKE");
}

/* ---- the host: revocations on a thread ------------------------------------------------------ */

struct jobs_renewal_host {
    struct workq *q;
    struct event *ev;
    struct conf *conf;           /* its own: the worker's may be replaced by a reload */
    struct issuance_revoker *rv; /* the thread's */
    struct store *st;            /* the thread's */
};

struct revoke_op {
    struct workq_job wj;
    struct jobs_renewal_host *h;
    struct jobs_job *job;
    char serial[41];
    struct issuance_revocation r;
    struct err err;
    int rc;
};

static void revoke_run(struct workq_job **v, size_t n, void *tls, void *arg)
{
    struct jobs_renewal_host *h = arg;
    (void)tls;
    for (size_t i = 0; i < n; i++) {
        struct revoke_op *op = (struct revoke_op *)v[i];
        op->rc = -1;
        if (h->rv == NULL &&
            (h->rv = issuance_revoker_new(h->conf, NULL, NULL, &op->err)) == NULL) {
            continue;
        }
        if (h->st == NULL && (h->st = store_connect(h->conf->redis_url, &op->err)) == NULL) {
            continue;
        }
        op->r = (struct issuance_revocation){ .serial = op->serial,
                                              .reason = CA_CRL_SUPERSEDED,
                                              .requester = "jitrd:renewal" };
        op->rc = issuance_revoke(h->rv, h->st, &op->r, &op->err);
        if (op->rc != 0 && op->err.code == ERRC_UNAVAILABLE) {
            store_free(h->st); /* reconnect for the next one */
            h->st = NULL;
        }
    }
}

static void revoke_done(struct workq_job *wj, bool ran)
{
    struct revoke_op *op = (struct revoke_op *)wj;
    if (ran) {
        json_t *res = NULL;
        if (op->rc == 0) {
            res = json_pack("{s:b,s:s,s:I}", "already", op->r.already_revoked, "reason",
                            ca_crl_reason_name(op->r.reason_recorded), "seq",
                            (json_int_t)op->r.seq);
            if (!op->r.crl_written) {
                log_warn("renewal: certificate %s revoked, but CA %s's CRL was not regenerated "
                         "(a later one lists it): %s",
                         op->r.serial_hex, op->r.ca_name, op->r.crl_err.msg);
            }
        }
        jobs_host_done(op->job, op->rc == 0 ? NULL : &op->err, res);
    }
    xfree(op);
}

static void host_tls_free(void *tls, void *arg)
{
    struct jobs_renewal_host *h = arg;
    (void)tls;
    issuance_revoker_free(h->rv);
    store_free(h->st);
    h->rv = NULL;
    h->st = NULL;
}

struct jobs_renewal_host *jobs_renewal_host_new(struct event_base *base, const struct conf *c,
                                                struct err *e)
{
    struct jobs_renewal_host *h = xcalloc(1, sizeof(*h));
    struct workq_opts o = { .threads = 1,
                            .take_max = 1,
                            .cancel_on_free = true,
                            .tls_free = host_tls_free,
                            .run = revoke_run,
                            .arg = h };
    if ((h->conf = conf_load(c->source[0] ? c->source : NULL, e)) == NULL ||
        (h->q = workq_new(&o, e)) == NULL) {
        jobs_renewal_host_free(h);
        return NULL;
    }
    h->ev = event_new(base, workq_fd(h->q), EV_READ | EV_PERSIST, workq_event_cb, h->q);
    if (h->ev == NULL || event_add(h->ev, NULL) != 0) {
        err_set(e, ERRC_INTERNAL, "renewal: cannot watch the revocation thread");
        jobs_renewal_host_free(h);
        return NULL;
    }
    return h;
}

void jobs_renewal_host_free(struct jobs_renewal_host *h)
{
    if (h == NULL) {
        return;
    }
    if (h->ev) {
        event_free(h->ev);
    }
    if (h->q) {
        workq_free(h->q); /* pending revocations complete with ran = false: no call back */
    }
    conf_free(h->conf);
    xfree(h);
}

/* REVOKE: our index, reason superseded (already revoked, for whatever reason: that stands). */
static void st_revoke(struct jobs_job *j)
{
    struct jobs_renewal_host *h = jobs_kind_ctx(j);
    struct err e = ERR_INIT;
    if (!jobs_have_result(j)) {
        struct revoke_op *op;
        if (h == NULL) {
            err_set(&e, ERRC_INTERNAL, "renewal: this worker runs no revocations");
            jobs_retry(j, &e);
            return;
        }
        op = xcalloc(1, sizeof(*op));
        op->wj.done = revoke_done;
        op->h = h;
        op->job = j;
        snprintf(op->serial, sizeof(op->serial), "%s", jobs_get(j, "renews"));
        /* its completion runs from the loop's event, never within workq_submit */
        if (workq_submit(h->q, &op->wj, &e) != 0) {
            xfree(op);
            jobs_retry(j, &e);
            return;
        }
        jobs_host_begin(j);
        return;
    }
    if (jobs_result_err(j)->code != ERRC_OK) {
        jobs_fail_op(j, "revocation (superseded)");
        return;
    }
    {
        json_t *r = jobs_result(j);
        bool already = json_is_true(json_object_get(r, "already"));
        jobs_set(j, "revoked", already ? field(r, "reason") : "superseded");
        if (!already) {
            log_info("renewal %.16s...: certificate %s revoked (superseded) in our index",
                     jobs_key(j), jobs_get(j, "renews"));
        }
    }
    finish(j, "retired");
}
