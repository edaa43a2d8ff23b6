/*
 * JITR inside a jitrd worker (docs/jitr.md): the production struct jitr_io and everything around
 * the flows.
 *
 *   consumer   XREADGROUP on a connection of its own (BLOCK would stall other commands), at most
 *              max_in_flight flows; XAUTOCLAIM every claim_idle_ms/2 takes over entries a dead
 *              worker left pending; a flow's outcome decides: XACK (activated, rejected,
 *              duplicate), a backoff timer (retry, busy; capped exponential with jitter, always
 *              shorter than claim_idle_ms so no other worker claims it meanwhile), or the
 *              dead-letter stream then XACK (dead, or max_attempts reached).
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

/* ---- flows and the stream ------------------------------------------------------------------- */

struct sflow {
    struct jitr_service *s;
    struct jitr_req *req;
    struct jitr_event ev;
    char entry[64];
    unsigned attempts; /* runs that did not finish (retries and busy): the backoff grows */
    unsigned failures; /* of those, failures: jitr.max_attempts of them make a dead letter (a
                        * duplicate waiting for the flow that holds the lock is not one) */
    struct event *timer;
    struct jitr_gen *gen; /* the generation of the current run (a reference) */
    struct sflow *prev, *next;
};

static void flow_list_remove(struct jitr_service *s, struct sflow *f)
{
    if (f->prev) {
        f->prev->next = f->next;
    } else {
        s->flows = f->next;
    }
    if (f->next) {
        f->next->prev = f->prev;
    }
    s->nflows--;
}

static bool entry_in_flight(struct jitr_service *s, const char *entry)
{
    for (struct sflow *f = s->flows; f; f = f->next) {
        if (strcmp(f->entry, entry) == 0) {
            return true;
        }
    }
    return false;
}

static void sflow_free(struct sflow *f)
{
    flow_list_remove(f->s, f);
    if (f->timer) {
        event_free(f->timer);
    }
    jitr_req_free(f->req);
    jitr_gen_unref(f->s, f->gen);
    xfree(f);
}

static void consumer_kick(struct jitr_service *s);
static void flow_run(struct sflow *f);

static void xack(struct jitr_service *s, const char *entry)
{
    struct err e = ERR_INIT;
    const char *av[] = { "XACK", STORE_PREFIX "jitr:events", "jitr", entry };
    if (store_async_cmd(s->ctx.rs, 4, av, NULL, 5000, jitr_ignore_reply, NULL, &e) != 0) {
        log_warn("jitr: XACK %s: %s", entry, e.msg);
    }
}

static void dead_letter(struct jitr_service *s, struct sflow *f, const struct err *why,
                        const char *state)
{
    char att[16], now[32];
    struct err e = ERR_INIT;
    struct jitr_fields fl;
    const char *av[6 + JITR_FIELDS_MAX + 10];
    size_t ac = 0;
    snprintf(att, sizeof(att), "%u", f->failures);
    snprintf(now, sizeof(now), "%lld", (long long)time_now_ms());
    jitr_event_fields(&f->ev, NULL, &fl);
    av[ac++] = "XADD";
    av[ac++] = STORE_PREFIX "jitr:dlq";
    av[ac++] = "MAXLEN";
    av[ac++] = "~";
    av[ac++] = "100000";
    av[ac++] = "*";
    for (size_t i = 0; i < fl.n; i++) {
        av[ac++] = fl.av[i];
    }
    av[ac++] = "entry";
    av[ac++] = f->entry;
    av[ac++] = "attempts";
    av[ac++] = att;
    av[ac++] = "state";
    av[ac++] = state;
    av[ac++] = "error";
    av[ac++] = why->msg;
    av[ac++] = "dead_ms";
    av[ac++] = now;
    if (store_async_cmd(s->ctx.rs, (int)ac, av, NULL, 5000, jitr_ignore_reply, NULL, &e) != 0) {
        log_warn("jitr: dead letter for %.16s: %s", f->ev.cert_id, e.msg);
    }
    xack(s, f->entry);
    log_warn("jitr: cert=%.16s dead-lettered after %u failed attempts: %s", f->ev.cert_id,
             f->failures, why->msg);
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sflow *f = arg;
    (void)fd;
    (void)what;
    flow_run(f);
}

static void io_done(void *ctx, struct jitr_req *r)
{
    struct jitr_service *s = ctx;
    struct sflow *f = NULL;
    enum jitr_outcome o = jitr_req_outcome(r);
    char stat[64];
    for (struct sflow *x = s->flows; x; x = x->next) {
        if (x->req == r) {
            f = x;
        }
    }
    BUG_ON(f == NULL);
    snprintf(stat, sizeof(stat), "outcome:%s", jitr_outcome_name(o));
    jitr_stat_incr(&s->ctx, stat, 1);
    if (s->ctx.stopping) {
        return; /* jitr_service_free frees the flow; the entry stays pending */
    }
    switch (o) {
    case JITR_OUT_ACTIVATED:
        jitr_stat_latency(&s->ctx, time_now_ms() - (f->ev.received_ms > 0 ? f->ev.received_ms
                                                                : time_now_ms()));
        jitr_stat_incr(&s->ctx, "aws_calls_activated", jitr_req_aws_calls(r));
        log_info("jitr: cert=%.16s thing '%s' ACTIVE", f->ev.cert_id, jitr_req_thing(r));
        xack(s, f->entry);
        break;
    case JITR_OUT_REJECTED:
        log_warn("jitr: cert=%.16s rejected: %s", f->ev.cert_id, jitr_req_err(r)->msg);
        xack(s, f->entry);
        break;
    case JITR_OUT_IGNORED:
        log_warn("jitr: cert=%.16s left alone: %s", f->ev.cert_id, jitr_req_err(r)->msg);
        xack(s, f->entry);
        break;
    case JITR_OUT_DUPLICATE:
        xack(s, f->entry);
        break;
    case JITR_OUT_DEAD:
        f->failures++;
        dead_letter(s, f, jitr_req_err(r), "DEAD");
        break;
    case JITR_OUT_NONE:
    case JITR_OUT_BUSY:
    case JITR_OUT_RETRY:
        f->attempts++;
        f->failures += o != JITR_OUT_BUSY;
        if (o != JITR_OUT_BUSY && f->failures >= (unsigned)s->cfg.max_attempts) {
            dead_letter(s, f, jitr_req_err(r), jitr_state_name(jitr_req_state(r)));
            break;
        }
        {
            int64_t d = jitr_backoff_ms(s->cfg.backoff_ms, s->cfg.backoff_max_ms, f->attempts);
            log_debug("jitr: cert=%.16s %s, again in %lld ms: %s", f->ev.cert_id,
                      jitr_outcome_name(o), (long long)d, jitr_req_err(r)->msg);
            jitr_req_free(f->req);
            f->req = NULL;
            struct timeval tv = { (time_t)(d / 1000), (suseconds_t)((d % 1000) * 1000) };
            evtimer_add(f->timer, &tv);
            return;
        }
    case JITR_OUT__COUNT:
        BUG_ON(true);
    }
    /* the flow is over: free it on the loop, outside its own callback */
    f->req = r;
    event_active(f->timer, EV_TIMEOUT, 0);
    f->attempts = UINT32_MAX; /* marks "finished" for on_retry_timer */
}

static void flow_run(struct sflow *f)
{
    struct jitr_service *s = f->s;
    if (f->attempts == UINT32_MAX) { /* finished: deferred free */
        sflow_free(f);
        consumer_kick(s);
        return;
    }
    /* outside every callback of the flow's previous run: its generation may go now */
    jitr_gen_unref(s, f->gen);
    f->gen = jitr_gen_ref(s->gen);
    f->req = jitr_req_new(&f->gen->env, &s->io, &f->ev, f->entry);
    jitr_req_start(f->req);
}

/* Starts a flow for a stream entry (jitr_event_from_fields). */
static void flow_start(struct jitr_service *s, const char *entry, const struct store_reply *fv)
{
    struct sflow *f;
    struct jitr_event ev;
    const char *kv[2 * JITR_FIELDS_MAX];
    size_t n = 0;
    struct err e = ERR_INIT;
    for (size_t i = 0; fv && i + 1 < fv->n && n + 2 <= ARRAY_LEN(kv); i += 2) {
        const struct store_reply *k = &fv->elem[i], *v = &fv->elem[i + 1];
        if (k->type == STORE_REPLY_STRING && v->type == STORE_REPLY_STRING) {
            kv[n++] = k->str;
            kv[n++] = v->str;
        }
    }
    if (jitr_event_from_fields(kv, n, &ev, &e) != 0) {
        log_warn("jitr: stream entry %s is malformed: acknowledged and dropped (%s)", entry,
                 e.msg);
        xack(s, entry);
        return;
    }
    if (entry_in_flight(s, entry)) {
        return;
    }
    f = xcalloc(1, sizeof(*f));
    f->s = s;
    f->ev = ev;
    snprintf(f->entry, sizeof(f->entry), "%s", entry);
    f->timer = evtimer_new(s->ctx.base, on_retry_timer, f);
    if (f->timer == NULL) {
        oom_die(event_get_struct_event_size());
    }
    f->next = s->flows;
    if (s->flows) {
        s->flows->prev = f;
    }
    s->flows = f;
    s->nflows++;
    flow_run(f);
}

/* Entries of an XREADGROUP / XAUTOCLAIM reply: [[id, [f, v, ...]], ...]. */
static void start_entries(struct jitr_service *s, const struct store_reply *list)
{
    for (size_t i = 0; list && list->type == STORE_REPLY_ARRAY && i < list->n; i++) {
        const struct store_reply *ent = &list->elem[i];
        if (ent->type == STORE_REPLY_ARRAY && ent->n == 2 &&
            ent->elem[0].type == STORE_REPLY_STRING) {
            flow_start(s, ent->elem[0].str,
                       ent->elem[1].type == STORE_REPLY_ARRAY ? &ent->elem[1] : NULL);
        }
    }
}

static void on_group_created(void *arg, const struct store_reply *r, const struct err *e);

static void ensure_group(struct jitr_service *s)
{
    struct err e = ERR_INIT;
    const char *av[] = { "XGROUP", "CREATE", STORE_PREFIX "jitr:events", "jitr", "0",
                         "MKSTREAM" };
    s->group_pending = true;
    if (store_async_cmd(s->ctx.rs, 6, av, NULL, 5000, on_group_created, s, &e) != 0) {
        s->group_pending = false;
        log_debug("jitr: XGROUP CREATE: %s", e.msg);
    }
}

static void on_group_created(void *arg, const struct store_reply *r, const struct err *e)
{
    struct jitr_service *s = arg;
    (void)r;
    s->group_pending = false;
    if (e != NULL && strstr(e->detail, "BUSYGROUP") == NULL) {
        if (e->code != ERRC_CANCELED) {
            log_warn("jitr: consumer group: %s", e->msg);
        }
        return;
    }
    s->group_ready = true;
    consumer_kick(s);
}

static void on_read(void *arg, const struct store_reply *r, const struct err *e)
{
    struct jitr_service *s = arg;
    s->reading = false;
    if (e != NULL) {
        if (e->code == ERRC_CANCELED) {
            return;
        }
        if (strstr(e->detail, "NOGROUP") != NULL) {
            s->group_ready = false; /* Redis lost the stream (restart without persistence) */
        }
        if (!s->redis_down) {
            log_warn("jitr: reading the event stream: %s", e->msg);
        }
        s->redis_down = true;
        struct timeval tv = { 0, 500000 };
        evtimer_add(s->kick, &tv);
        return;
    }
    if (s->redis_down) {
        log_info("jitr: event stream reachable again");
    }
    s->redis_down = false;
    /* [[stream, [[id, [f, v...]], ...]]] or nil on timeout */
    if (r->type == STORE_REPLY_ARRAY && r->n > 0 && r->elem[0].type == STORE_REPLY_ARRAY &&
        r->elem[0].n == 2) {
        start_entries(s, &r->elem[0].elem[1]);
    }
    consumer_kick(s);
}

static void consumer_read(struct jitr_service *s)
{
    char count[24];
    struct err e = ERR_INIT;
    size_t room = (size_t)s->cfg.max_in_flight > s->nflows
                      ? (size_t)s->cfg.max_in_flight - s->nflows
                      : 0;
    if (s->ctx.stopping || s->draining || s->reading || room == 0) {
        return;
    }
    if (!s->group_ready) {
        if (!s->group_pending) {
            ensure_group(s);
        }
        return;
    }
    snprintf(count, sizeof(count), "%zu", room);
    const char *av[] = { "XREADGROUP", "GROUP", "jitr", s->consumer, "COUNT", count, "BLOCK",
                         "1000", "STREAMS", STORE_PREFIX "jitr:events", ">" };
    s->reading = true;
    if (store_async_cmd(s->rblock, (int)ARRAY_LEN(av), av, NULL, 5000, on_read, s, &e) != 0) {
        s->reading = false;
        struct timeval tv = { 0, 500000 };
        evtimer_add(s->kick, &tv);
    }
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct jitr_service *s = arg;
    if (!s->group_ready && !s->group_pending) {
        ensure_group(s);
        struct timeval tv = { 0, 500000 };
        evtimer_add(s->kick, &tv);
        return;
    }
    consumer_read(s);
}

static void consumer_kick(struct jitr_service *s)
{
    if (!s->ctx.stopping) {
        event_active(s->kick, EV_TIMEOUT, 0);
    }
}

static void on_claimed(void *arg, const struct store_reply *r, const struct err *e)
{
    struct jitr_service *s = arg;
    s->claiming = false;
    if (e != NULL || r->type != STORE_REPLY_ARRAY || r->n < 2) {
        return;
    }
    if (r->elem[1].type == STORE_REPLY_ARRAY && r->elem[1].n > 0) {
        log_info("jitr: claimed %zu pending entries idle for %lld ms", r->elem[1].n,
                 (long long)s->cfg.claim_idle_ms);
        jitr_stat_incr(&s->ctx, "claimed", (long long)r->elem[1].n);
    }
    start_entries(s, &r->elem[1]);
}

static void on_claim_timer(evutil_socket_t fd, short what, void *arg)
{
    struct jitr_service *s = arg;
    char idle[24], count[24];
    struct err e = ERR_INIT;
    size_t room = (size_t)s->cfg.max_in_flight > s->nflows
                      ? (size_t)s->cfg.max_in_flight - s->nflows
                      : 0;
    (void)fd;
    (void)what;
    if (s->ctx.stopping || s->draining || s->claiming || room == 0 || !s->group_ready) {
        return;
    }
    snprintf(idle, sizeof(idle), "%lld", (long long)s->cfg.claim_idle_ms);
    snprintf(count, sizeof(count), "%zu", room);
    const char *av[] = { "XAUTOCLAIM", STORE_PREFIX "jitr:events", "jitr", s->consumer, idle,
                         "0-0", "COUNT", count };
    s->claiming = true;
    if (store_async_cmd(s->ctx.rs, (int)ARRAY_LEN(av), av, NULL, 5000, on_claimed, s, &e) != 0) {
        s->claiming = false;
    }
}

/* ---- life ----------------------------------------------------------------------------------- */

size_t jitr_service_busy(const struct jitr_service *s)
{
    return s ? s->nflows + s->intake_busy : 0;
}

struct jitr_service *jitr_service_new(struct event_base *base, const struct conf *conf,
                                      size_t slot, struct err *e)
{
    struct jitr_service *s = xcalloc(1, sizeof(*s));
    struct jitr_template *tpl = NULL;
    struct ca_profiles *profiles = NULL;
    struct aws_iot_opts ao;
    struct timeval claim;
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
    s->audit = audit_open(conf_audit_path(conf), e);
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
        .redis_timeout_ms = (int)s->redis_timeout_ms,
    };
    s->io = (struct jitr_io){ .ctx = s,
                              .redis = io_redis,
                              .aws = io_aws,
                              .policy_ready = jitr_policy_ready,
                              .audit = io_audit,
                              .audit_mark = io_audit_mark,
                              .done = io_done };
    jitr_gen_install(s, tpl, profiles);
    tpl = NULL;
    profiles = NULL;
    if (jitr_loader_start(s, e) != 0 || jitr_intake_start(s, e) != 0) {
        goto fail;
    }
    if (jitr_sqs_start(s, e) != 0 || jitr_confirm_start(s, conf, e) != 0) {
        goto fail;
    }
    if ((s->kick = evtimer_new(base, on_kick, s)) == NULL) {
        oom_die(event_get_struct_event_size());
    }
    s->claim = event_new(base, -1, EV_PERSIST, on_claim_timer, s);
    claim.tv_sec = (time_t)(s->cfg.claim_idle_ms / 2000);
    claim.tv_usec = (suseconds_t)((s->cfg.claim_idle_ms / 2 % 1000) * 1000);
    if (s->claim == NULL || event_add(s->claim, &claim) != 0) {
        err_set(e, ERRC_INTERNAL, "jitr: cannot arm timers");
        goto fail;
    }
    if (slot == 0 && jitr_reconciler_start(s, e) != 0) {
        goto fail;
    }
    consumer_kick(s);
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
    jitr_reconciler_stop(s);
    jitr_sqs_stop(s);
    if (s->http) {
        httpd_stop_accepting(s->http);
    }
    log_info("jitr: draining (%zu flows, %zu intake requests in flight)", s->nflows,
             s->intake_busy);
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
    /* the append in progress completes, queued ones are cancelled: their flows go on (to
     * Redis) while the clients are still there */
    jitr_auditq_free(s->auditq);
    s->auditq = NULL;
    /* cancelling AWS calls and Redis commands lets every flow and intake request reach its
     * end (intake requests are answered 503 before the server goes) */
    aws_iot_free(s->ctx.iot);
    s->ctx.iot = NULL;
    for (struct jitr_gen *g = s->gens; g != NULL; g = g->next) {
        jitr_policy_release(g);
    }
    store_async_free(s->rblock);
    store_async_free(s->ctx.rs);
    s->ctx.rs = s->rblock = NULL;
    jitr_confirm_stop(s); /* after the clients whose callbacks it waits for */
    jitr_intake_stop(s);
    while (s->flows) {
        struct sflow *f = s->flows;
        if (f->req && jitr_req_state(f->req) != JITR_ST_FINISHED) {
            /* still waiting: cannot happen once both clients are gone */
            log_error("jitr: flow for %.16s did not finish at shutdown", f->ev.cert_id);
        }
        sflow_free(f);
    }
    if (s->kick) {
        event_free(s->kick);
    }
    if (s->claim) {
        event_free(s->claim);
    }
    audit_close(s->audit);
    jitr_gen_unref(s, s->gen);
    BUG_ON(s->gens != NULL);
    jitr_cas_swap(s, NULL);
    xfree(s->config_path);
    conf_jitr_release(&s->cfg);
    xfree(s->data_dir);
    xfree(s);
}
