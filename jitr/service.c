/*
 * JITR inside a jitrd worker (docs/jitr.md): the production struct jitr_io and everything around
 * the flows.
 *
 *   jobs       the job engine (jobs/jobs.h) reads every kind's stream, JITR's jitr:events among
 *              them, on a connection of its own (BLOCK would stall other commands), at most
 *              max_in_flight jobs; it claims, retries and dead-letters. A JITR job's run is a
 *              flow (eng_run); the flow's outcome decides the job's end (io_done): done
 *              (activated, rejected, ignored), duplicate, retry, busy or dead.
 *   policy     once per policy, not per device: the first flow that needs it runs a small
 *              machine (Redis record → GetPolicy → CreatePolicy or CreatePolicyVersion, keeping
 *              at most 5 versions → Redis record); the others wait for it.
 *   reconciler worker 0 only: every reconcile_interval_s, ListCertificatesByCA (every page) for
 *              our registered CAs; PENDING_ACTIVATION certificates without a state record are
 *              queued like events, so a lost event never strands a device.
 *   stats      counters in Redis (jitr:stats) shared by every process: outcomes, AWS calls by
 *              API and result, first-event-to-ACTIVE latency histogram; /metrics renders them
 *              with the queue depth (XINFO GROUPS: pending + lag) and the dead letters.
 *   intake     intake.c.
 *   loader     loader.c: the CA table every 10 s and SIGHUP's reload, read off the loop.
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "aws/sqs.h"
#include "ca/profile.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "httpd/httpd.h"
#include "jitr/jitr_int.h"
#include "jobs/renewal.h"
#include "jobs/jobs.h"
#include "store/store.h"

/* ---- configuration -------------------------------------------------------------------------- */

/* The rules that tie the "jitr" section's keys together. */
int jitr_cfg_check(const struct conf *conf, struct err *e)
{
    const char *file = conf->source[0] ? conf->source : "configuration";
    const struct conf_jitr *c = &conf->jitr;
    if (strcmp(c->on_reject, "revoke") != 0 && strcmp(c->on_reject, "leave-pending") != 0) {
        err_set(e, ERRC_INVALID, "%s: jitr.on_reject must be revoke or leave-pending, not '%s'",
                file, c->on_reject);
        return -1;
    }
    if (strcmp(c->thing_conflict, "keep") != 0 && strcmp(c->thing_conflict, "fail") != 0) {
        err_set(e, ERRC_INVALID, "%s: jitr.thing_conflict must be keep or fail, not '%s'", file,
                c->thing_conflict);
        return -1;
    }
    if (c->thing_group[0] != '\0' && !jitr_name_ok(JITR_NAME_THING_GROUP, c->thing_group)) {
        err_set(e, ERRC_INVALID, "%s: jitr.thing_group '%.128s' is not %s", file, c->thing_group,
                jitr_name_rule(JITR_NAME_THING_GROUP));
        return -1;
    }
    if (c->backoff_max_ms >= c->claim_idle_ms) {
        err_set(e, ERRC_INVALID, "%s: jitr.backoff_max_ms must be below jitr.claim_idle_ms (else "
                "another worker claims an entry that is only waiting)", file);
        return -1;
    }
    if ((c->tls_cert_file[0] == '\0') != (c->tls_key_file[0] == '\0')) {
        err_set(e, ERRC_INVALID, "%s: jitr.tls_cert_file and jitr.tls_key_file go together",
                file);
        return -1;
    }
    if (c->listen[0] == '\0' && c->sqs_queue_url[0] == '\0') {
        err_set(e, ERRC_INVALID, "%s: JITR needs an intake: jitr.listen, jitr.sqs_queue_url or "
                "both", file);
        return -1;
    }
    if (c->secret_header[0] == '\0') {
        err_set(e, ERRC_INVALID, "%s: jitr.secret_header must not be empty", file);
        return -1;
    }
    if (c->sqs_queue_url[0] != '\0') {
        struct aws_sqs_queue q;
        if (aws_sqs_queue_parse(c->sqs_queue_url, "us-east-1", &q, e) != 0) {
            err_prefix(e, "%s: jitr.sqs_queue_url", file);
            return -1;
        }
        aws_sqs_queue_release(&q);
    }
    {
        char **arns = NULL;
        size_t n = 0;
        if (jitr_destination_arns_parse(c->destination_arns, &arns, &n, e) != 0) {
            err_prefix(e, "%s: jitr.destination_arns", file);
            return -1;
        }
        jitr_destination_arns_free(arns, n);
    }
    return 0;
}

int jitr_check_config(const struct conf *conf, struct err *e)
{
    struct jitr_template *tpl = NULL;
    struct ca_profiles *profiles = NULL;
    int rc = -1;
    if (jitr_cfg_check(conf, e) != 0) {
        return -1;
    }
    tpl = jitr_template_load(conf->jitr.template, conf->jitr.policy_name, e);
    /* the template must work for a certificate of every JITR profile of every CA we serve */
    if (tpl != NULL && (profiles = ca_profiles_load_dir(conf->profiles_dir, e)) != NULL &&
        jitr_template_check_fleet(tpl, conf->data_dir, profiles, NULL, e) == 0) {
        rc = 0;
    }
    ca_profiles_free(profiles);
    jitr_template_free(tpl);
    if (rc != 0) {
        return -1;
    }
    /* the AWS settings every worker will resolve: a missing region fails here, naming where it
     * was looked for (environment, profile, EC2 IMDS), instead of in each worker */
    {
        struct aws_config ac;
        struct aws_config_opts ao = { conf->aws_profile, NULL, NULL };
        aws_config_init(&ac);
        rc = aws_config_load(&ac, NULL, &ao, e);
        aws_config_release(&ac);
        if (rc != 0) {
            err_prefix(e, "JITR");
            return -1;
        }
    }
    return 0;
}

/* ---- the io of the flows -------------------------------------------------------------------- */

static int io_redis(void *ctx, int argc, const char *const *argv, store_reply_cb *cb, void *arg,
                    struct err *e)
{
    struct jitr_service *s = ctx;
    return store_async_cmd(s->ctx.rs, argc, argv, NULL, (int)s->redis_timeout_ms, cb, arg, e);
}

static int io_aws(void *ctx, enum aws_iot_op op, json_t *in, aws_iot_cb *cb, void *arg,
                  struct err *e)
{
    struct jitr_service *s = ctx;
    return jitr_aws_call(&s->ctx, NULL, op, in, cb, arg, e);
}

static int io_audit(void *ctx, json_t *rec, bool check, uint64_t after, jitr_audit_cb *cb,
                    void *arg, struct err *e)
{
    struct jitr_service *s = ctx;
    return jitr_auditq_append(s->auditq, rec, check, after, cb, arg, e);
}

static uint64_t io_audit_mark(void *ctx)
{
    struct jitr_service *s = ctx;
    return jitr_auditq_mark(s->auditq);
}

/* The flows' certificate locks are leases of the job engine, renewed with its own jobs' */
static void *io_lease_hold(void *ctx, const char *key, const char *token, int64_t sent_ms)
{
    struct jitr_service *s = ctx;
    return s->jobs ? jobs_lease_hold(s->jobs, key, token, sent_ms) : NULL;
}

static bool io_lease_held(void *ctx, void *lease)
{
    (void)ctx;
    return jobs_lease_held(lease);
}

static void io_lease_drop(void *ctx, void *lease)
{
    (void)ctx;
    jobs_lease_drop(lease);
}

/* ---- JITR provisioning as a kind of the job engine ------------------------------------------ */

/* A run of a JITR job: the flow, and the generation it started with. */
struct hrun {
    struct jitr_service *s;
    struct jobs_job *job;
    struct jitr_req *req;
    struct jitr_gen *gen;
    struct jitr_event ev;
    struct jitr_tplc *tplc;     /* the template its register job carries (a reference) */
    struct jitr_tpl_wait *wait; /* waiting for it to load */
    struct hrun *prev, *next;
};

static void hrun_unlink(struct jitr_service *s, struct hrun *h)
{
    if (h->prev) {
        h->prev->next = h->next;
    } else {
        s->runs = h->next;
    }
    if (h->next) {
        h->next->prev = h->prev;
    }
}

/* io->release: outside every callback of the flow's run, so its generation may go now. */
static void eng_release(void *ctx, struct jobs_job *j)
{
    struct jitr_service *s = ctx;
    struct hrun *h = *jobs_host(j);
    if (h == NULL) {
        return;
    }
    *jobs_host(j) = NULL;
    hrun_unlink(s, h);
    if (h->req && jitr_req_state(h->req) != JITR_ST_FINISHED) {
        log_error("jitr: flow for %.16s did not finish", h->ev.cert_id); /* at shutdown only */
    }
    jitr_req_free(h->req);
    if (h->wait != NULL) {
        jitr_tpl_cancel(s, h->wait);
    }
    jitr_tpl_unref(s, h->tplc);
    jitr_gen_unref(s, h->gen);
    xfree(h);
}

/* The flow of h, with the template its register job carries when it carries one. */
static void hrun_start(struct jitr_service *s, struct hrun *h, const char *sha)
{
    h->req = jitr_req_new(&h->gen->env, &s->io, &h->ev, jobs_entry(h->job));
    if (h->tplc != NULL) {
        jitr_req_set_template(h->req, jitr_tplc_template(h->tplc), sha);
    }
    jitr_req_start(h->req);
}

/* The template a register job's flow carries has loaded (or cannot be). */
static void on_tpl(void *arg, struct jitr_tplc *c, const struct err *e)
{
    struct hrun *h = arg;
    struct jitr_service *s = h->s;
    h->wait = NULL;
    if (e != NULL) {
        jobs_external_end(h->job, e->code == ERRC_NOT_FOUND ? JOBS_END_DEAD : JOBS_END_RETRY, e,
                          "TEMPLATE");
        return;
    }
    h->tplc = c;
    hrun_start(s, h, jitr_tplc_sha(c));
}

/* io->run: a flow for the stream entry (jitr_event_from_fields). */
static void eng_run(void *ctx, struct jobs_job *j, const char *const *kv, size_t n)
{
    struct jitr_service *s = ctx;
    struct hrun *h;
    struct jitr_event ev;
    struct err e = ERR_INIT;
    const char *sha = "";
    for (size_t i = 0; i + 1 < n; i += 2) {
        if (strcmp(kv[i], "tpl") == 0) {
            sha = kv[i + 1];
        }
    }
    if (sha[0] != '\0' && !jitr_tpl_sha_ok(sha)) {
        err_set(&e, ERRC_INVALID, "stream entry %s: tpl is not a SHA-256 (64 lowercase hex)",
                jobs_entry(j));
        jobs_external_end(j, JOBS_END_DEAD, &e, "TEMPLATE");
        return;
    }
    if (jitr_event_from_fields(kv, n, &ev, &e) != 0) {
        log_warn("jitr: stream entry %s is malformed: acknowledged and dropped (%s)",
                 jobs_entry(j), e.msg);
        jobs_external_end(j, JOBS_END_DUPLICATE, NULL, NULL);
        return;
    }
    h = xcalloc(1, sizeof(*h));
    h->s = s;
    h->job = j;
    h->ev = ev;
    h->gen = jitr_gen_ref(s->gen);
    h->next = s->runs;
    if (s->runs) {
        s->runs->prev = h;
    }
    s->runs = h;
    *jobs_host(j) = h;
    if (sha[0] != '\0') {
        int rc = jitr_tpl_get(s, sha, on_tpl, h, &h->tplc, &h->wait, &e);
        if (rc != 0) {
            if (rc < 0) {
                jobs_external_end(j, JOBS_END_RETRY, &e, "TEMPLATE");
            }
            return;
        }
    }
    hrun_start(s, h, sha);
}

/* io->done of a flow: its outcome decides the job's end. */
static void io_done(void *ctx, struct jitr_req *r)
{
    struct jitr_service *s = ctx;
    struct hrun *h = NULL;
    enum jitr_outcome o = jitr_req_outcome(r);
    char stat[64];
    for (struct hrun *x = s->runs; x; x = x->next) {
        if (x->req == r) {
            h = x;
        }
    }
    BUG_ON(h == NULL);
    snprintf(stat, sizeof(stat), "outcome:%s", jitr_outcome_name(o));
    jitr_stat_incr(&s->ctx, stat, 1);
    switch (o) {
    case JITR_OUT_ACTIVATED:
        jitr_stat_latency(&s->ctx, time_now_ms() - (h->ev.received_ms > 0 ? h->ev.received_ms
                                                                : time_now_ms()));
        jitr_stat_incr(&s->ctx, "aws_calls_activated", jitr_req_aws_calls(r));
        log_info("jitr: cert=%.16s thing '%s' ACTIVE", h->ev.cert_id, jitr_req_thing(r));
        jobs_external_end(h->job, JOBS_END_DONE, NULL, NULL);
        return;
    case JITR_OUT_REJECTED:
        log_warn("jitr: cert=%.16s rejected: %s", h->ev.cert_id, jitr_req_err(r)->msg);
        jobs_external_end(h->job, JOBS_END_DONE, NULL, NULL);
        return;
    case JITR_OUT_IGNORED:
        log_warn("jitr: cert=%.16s left alone: %s", h->ev.cert_id, jitr_req_err(r)->msg);
        jobs_external_end(h->job, JOBS_END_DONE, NULL, NULL);
        return;
    case JITR_OUT_DUPLICATE:
        jobs_external_end(h->job, JOBS_END_DUPLICATE, NULL, NULL);
        return;
    case JITR_OUT_DEAD:
        jobs_external_end(h->job, JOBS_END_DEAD, jitr_req_err(r), "DEAD");
        return;
    case JITR_OUT_BUSY:
        jobs_external_end(h->job, JOBS_END_BUSY, jitr_req_err(r),
                          jitr_state_name(jitr_req_state(r)));
        return;
    case JITR_OUT_NONE:
    case JITR_OUT_RETRY:
        jobs_external_end(h->job, JOBS_END_RETRY, jitr_req_err(r),
                          jitr_state_name(jitr_req_state(r)));
        return;
    case JITR_OUT__COUNT:
        break;
    }
    BUG_ON(true);
}

/* The engine's audit: the JITR writer (jitr/auditq.c). */
static int eng_audit(void *ctx, json_t *rec, bool check, uint64_t after,
                     void (*cb)(void *arg, uint64_t seq, bool found, const struct err *e),
                     void *arg, struct err *e)
{
    struct jitr_service *s = ctx;
    return jitr_auditq_append(s->auditq, rec, check, after, cb, arg, e);
}

/* Every kind of jobs/jobs_kinds[] runs here: JITR's flows and the others. */
static int engine_start(struct jitr_service *s, struct err *e)
{
    struct jobs_config jc = {
        .consumer = s->consumer,
        .max_in_flight = (int)s->cfg.max_in_flight,
        .max_attempts = (int)s->cfg.max_attempts,
        .backoff_ms = s->cfg.backoff_ms,
        .backoff_max_ms = s->cfg.backoff_max_ms,
        .claim_idle_ms = s->cfg.claim_idle_ms,
        .due_poll_ms = 1000,
        .lock_ms = (int)s->cfg.lock_ms,
    };
    struct jobs_io io = {
        .ctx = s,
        .redis = io_redis,
        .aws = io_aws,
        .audit = eng_audit,
        .audit_mark = io_audit_mark,
        .run = eng_run,
        .release = eng_release,
        .kind_ctx = s->renewal, /* the renewal kind's revocations (jobs/renewal.h) */
    };
    s->jobs = jobs_engine_new(s->ctx.base, s->rblock, jobs_kinds, jobs_nkinds, &jc, &io, e);
    return s->jobs ? 0 : -1;
}

/* ---- life ----------------------------------------------------------------------------------- */

size_t jitr_service_busy(const struct jitr_service *s)
{
    return s ? jobs_engine_busy(s->jobs) + s->intake_busy : 0;
}

size_t jitr_service_jobs(const struct jitr_service *s)
{
    return s ? jobs_engine_busy(s->jobs) : 0;
}

struct jitr_service *jitr_service_new(struct event_base *base, const struct conf *conf,
                                      size_t slot, struct err *e)
{
    struct jitr_service *s = xcalloc(1, sizeof(*s));
    struct jitr_template *tpl = NULL;
    struct ca_profiles *profiles = NULL;
    struct aws_iot_opts ao;
    struct buf rates = BUF_INIT;
    s->ctx.base = base;
    s->slot = slot;
    s->data_dir = xstrdup(conf->data_dir);
    s->redis_timeout_ms = 5000;
    if (jitr_cfg_check(conf, e) != 0) {
        goto fail;
    }
    conf_jitr_copy(&s->cfg, &conf->jitr);
    snprintf(s->consumer, sizeof(s->consumer), "w%zu-%ld-%lld", slot, (long)getpid(),
             (long long)time_now_ms());
    tpl = jitr_template_load(s->cfg.template, s->cfg.policy_name, e);
    if (tpl == NULL) {
        goto fail;
    }
    profiles = ca_profiles_load_dir(conf->profiles_dir, e);
    if (profiles == NULL) {
        goto fail;
    }
    {
        struct jitr_catab *tab = jitr_catab_load(s->data_dir, e);
        if (tab == NULL) {
            goto fail;
        }
        jitr_cas_swap(s, tab);
    }
    s->audit = audit_open_node(conf_audit_path(conf), conf->node_id, e);
    if (s->audit == NULL) {
        goto fail;
    }
    s->auditq = jitr_auditq_new(base, s->audit, conf_audit_path(conf), e);
    if (s->auditq == NULL) {
        goto fail;
    }
    s->ctx.rs = store_async_new(base, conf->redis_url, e);
    s->rblock = s->ctx.rs ? store_async_new(base, conf->redis_url, e) : NULL;
    if (s->rblock == NULL) {
        goto fail;
    }
    memset(&ao, 0, sizeof(ao));
    ao.base = base;
    ao.redis_url = conf->redis_url;
    ao.service = conf->aws_signing_name[0] ? conf->aws_signing_name : NULL;
    ao.profile = conf->aws_profile;
    ao.rates = s->cfg.aws_rates[0] ? s->cfg.aws_rates : conf->aws_rates;
    ao.local_share = (unsigned)conf_workers(conf);
    if (ao.rates == NULL || ao.rates[0] == '\0') {
        /* AWS enforces its quotas as token buckets: pacing a little under the quota (0.2 TPS)
         * with a burst of one never meets its limit, and keeps ~98 % of a 10 TPS quota */
        for (int op = 0; op < AWS_IOT__COUNT; op++) {
            double r = aws_iot_op_default_rate((enum aws_iot_op)op);
            buf_addf(&rates, "%s%s=%.2f/1", op ? "," : "", aws_iot_op_name((enum aws_iot_op)op),
                     r > 1 ? r - 0.2 : r);
        }
        ao.rates = rates.data;
    }
    s->ctx.iot = aws_iot_new(&ao, e);
    buf_release(&rates);
    if (s->ctx.iot == NULL) {
        goto fail;
    }
    s->env = (struct jitr_env){
        .cas = s->ctx.cas->cas,
        .ncas = s->ctx.cas->n,
        .region = aws_iot_region(s->ctx.iot),
        .reject_leave_pending = strcmp(s->cfg.on_reject, "leave-pending") == 0,
        .thing_conflict_fail = strcmp(s->cfg.thing_conflict, "fail") == 0,
        .exclusive_thing = s->cfg.exclusive_thing,
        .thing_group = s->cfg.thing_group,
        .lock_ms = (int)s->cfg.lock_ms,
        .renewal_grace_s = conf->renewal_grace,
        .redis_timeout_ms = (int)s->redis_timeout_ms,
    };
    s->io = (struct jitr_io){ .ctx = s,
                              .redis = io_redis,
                              .aws = io_aws,
                              .policy_ready = jitr_policy_ready,
                              .audit = io_audit,
                              .audit_mark = io_audit_mark,
                              .done = io_done,
                              .lease_hold = io_lease_hold,
                              .lease_held = io_lease_held,
                              .lease_drop = io_lease_drop };
    jitr_gen_install(s, tpl, profiles);
    tpl = NULL;
    profiles = NULL;
    if (jitr_loader_start(s, e) != 0 || jitr_intake_start(s, e) != 0) {
        goto fail;
    }
    if (jitr_sqs_start(s, e) != 0 || jitr_confirm_start(s, conf, e) != 0) {
        goto fail;
    }
    if ((s->renewal = jobs_renewal_host_new(base, conf, e)) == NULL || engine_start(s, e) != 0) {
        goto fail;
    }
    if (slot == 0 && jitr_reconciler_start(s, e) != 0) {
        goto fail;
    }
    log_info("jitr: worker %zu consumer %s, intake on %s (%s), template %s, %zu policies, "
             "%zu CAs", slot, s->consumer, s->cfg.listen, s->ssl ? "TLS" : "plain HTTP",
             s->cfg.template, jitr_template_npolicies(s->gen->tpl), s->ctx.cas->n);
    return s;
fail:
    jitr_template_free(tpl);
    ca_profiles_free(profiles);
    buf_release(&rates);
    jitr_service_free(s);
    return NULL;
}

void jitr_service_drain(struct jitr_service *s)
{
    if (s == NULL || s->draining) {
        return;
    }
    s->draining = true;
    jobs_engine_drain(s->jobs);
    jitr_reconciler_stop(s);
    jitr_sqs_stop(s);
    if (s->http) {
        httpd_stop_accepting(s->http);
    }
    log_info("jitr: draining (%zu jobs, %zu intake requests in flight)",
             jobs_engine_busy(s->jobs), s->intake_busy);
}

void jitr_service_free(struct jitr_service *s)
{
    if (s == NULL) {
        return;
    }
    s->ctx.stopping = true;
    jitr_loader_stop(s);
    jitr_reconciler_stop(s);
    jitr_sqs_stop(s); /* aborts a pending long poll before the clients it borrows go */
    /* a renewal's revocation in progress completes (its job goes on to the audit writer),
     * pending ones are cancelled */
    jobs_renewal_host_free(s->renewal);
    s->renewal = NULL;
    /* the append in progress completes, queued ones are cancelled: their flows go on (to
     * Redis) while the clients are still there */
    jitr_auditq_free(s->auditq);
    s->auditq = NULL;
    /* cancelling AWS calls and Redis commands lets every flow and intake request reach its
     * end (intake requests are answered 503 before the server goes) */
    if (s->jobs) {
        jobs_engine_drain(s->jobs);
    }
    aws_iot_free(s->ctx.iot);
    s->ctx.iot = NULL;
    for (struct jitr_gen *g = s->gens; g != NULL; g = g->next) {
        jitr_policy_release(&g->ps);
    }
    jitr_tpl_release_all(s);
    store_async_free(s->rblock);
    store_async_free(s->ctx.rs);
    s->ctx.rs = s->rblock = NULL;
    jitr_confirm_stop(s); /* after the clients whose callbacks it waits for */
    jitr_intake_stop(s);
    /* every job's run has ended (both clients are gone): their entries stay pending */
    jobs_engine_free(s->jobs);
    s->jobs = NULL;
    BUG_ON(s->runs != NULL);
    audit_close(s->audit);
    jitr_gen_unref(s, s->gen);
    BUG_ON(s->gens != NULL);
    jitr_tpl_free_all(s);
    jitr_cas_swap(s, NULL);
    xfree(s->config_path);
    conf_jitr_release(&s->cfg);
    xfree(s->data_dir);
    xfree(s);
}
