/*
 * The topic rule destination's confirmation (docs/jitr.md "Destination confirmation"). AWS IoT
 * POSTs {"arn", "confirmationToken", "enableUrl", "messageType"} to the confirmation URL when a
 * destination is created or set IN_PROGRESS again, without the rule's headers: anyone can send
 * one, so nothing here trusts it beyond what it costs to check.
 *
 *   parse       jitr_confirm_parse (any partition's destination ARN); the header
 *               x-amz-rules-engine-destination-arn, when sent, must name the same ARN
 *   ours?       jitr_destination_check: one of jitr.destination_arns, or (none configured) in
 *               jitrd's region and in an account where one of our CAs is registered
 *   once        one Lua call: a token already known (jitr:confirm:<sha256 of the token>:
 *               pending, done or failed) is answered 200 without an AWS call; else the global
 *               gate (jitr:confirm_gate, SET NX PX JITR_CONFIRM_INTERVAL_MS: one confirmation
 *               started per interval by all jitrd processes together) is taken and the token
 *               recorded as pending, or the post is answered 429 (AWS retries it)
 *   confirm     200 at once, then ConfirmTopicRuleDestination in the ARN's region (the main AWS
 *               client, or a client of that region made on first use), retried with backoff
 *               when AWS fails (throttling, 5xx, timeouts, after the client's own retries) up to
 *               CONFIRM_ATTEMPTS calls; the token is then recorded done or failed for a day
 * Refused posts (malformed, not ours, over the rate) are counted in jitr:stats
 * (jitr_destination_confirmations_total{result}) and logged at most once a minute per worker,
 * with how many there were: a flood of forged posts costs neither AWS calls nor log volume.
 */
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "core/conf.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "httpd/httpd.h"
#include "jitr/jitr_int.h"
#include "store/store.h"

#define CONFIRM_INTERVAL_MS    10000 /* one confirmation started per interval, all processes */
#define CONFIRM_PENDING_S      600   /* a token being confirmed, retries included */
#define CONFIRM_DONE_S         86400 /* a token confirmed, or refused by AWS: never sent again */
#define CONFIRM_ATTEMPTS       6     /* ConfirmTopicRuleDestination calls per token */
#define CONFIRM_BACKOFF_MS     1000  /* before the 2nd call; doubling, with jitter, up to */
#define CONFIRM_BACKOFF_MAX_MS 30000
#define CONFIRM_MAX_JOBS       16    /* per worker: confirmations in flight or waiting to retry */
#define CONFIRM_LOG_EVERY_MS   60000 /* refused posts: at most one log line per minute */
#define CONFIRM_REDIS_MS       2000

/* KEYS: the token's key, the gate. ARGV: pending TTL (s), interval (ms).
 * 0: the token is known already; -1: the gate is closed; 1: go (the token is now pending). */
static const char gate_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return -1 end\n"
    "redis.call('SET', KEYS[1], 'pending', 'EX', ARGV[1])\n"
    "return 1\n";

struct cregion {
    char region[32];
    struct aws_iot *iot;
    struct cregion *next;
};

struct cjob {
    struct jitr_confirmer *c;
    char arn[JITR_ARN_MAX + 1];
    char region[32];
    char key[128]; /* STORE_PREFIX jitr:confirm:<sha256 hex> */
    char *token;
    unsigned attempts;
    struct event *timer;
    struct cjob *prev, *next;
};

struct jitr_confirmer {
    struct jitr_service *s;
    char **arns;
    size_t narns;
    char *redis_url, *signing_name, *rates;
    struct cregion *regions;
    struct cjob *jobs;
    size_t njobs;
    unsigned long long refused; /* since the last log line */
    int64_t last_log_ms;
};

/* A post waiting for the gate. */
struct cpost {
    struct jitr_confirmer *c;
    struct httpd_req *req;
    struct jitr_confirm msg;
    char key[128];
};

static void cstat(struct jitr_confirmer *c, const char *result)
{
    char f[64];
    snprintf(f, sizeof(f), "confirm:%s", result);
    jitr_stat_incr(&c->s->ctx, f, 1);
}

/* A refused post: counted, logged at most once per CONFIRM_LOG_EVERY_MS. */
static void refuse(struct jitr_confirmer *c, const char *result, const char *why)
{
    int64_t now = time_now_ms();
    cstat(c, result);
    c->refused++;
    if (now - c->last_log_ms >= CONFIRM_LOG_EVERY_MS) {
        log_warn("jitr: destination confirmation refused (%s): %s; %llu refused since the last "
                 "such line",
                 result, why, c->refused);
        c->refused = 0;
        c->last_log_ms = now;
    }
}

static void token_key(const char *token, char out[128])
{
    char hex[65];
    sha256_hex(token, strlen(token), hex);
    snprintf(out, 128, STORE_PREFIX "jitr:confirm:%s", hex);
}

/* ---- AWS clients by region ------------------------------------------------------------------- */

static struct aws_iot *region_client(struct jitr_confirmer *c, const char *region, struct err *e)
{
    struct jitr_service *s = c->s;
    struct aws_iot_opts o;
    struct cregion *r;
    if (strcmp(region, aws_iot_region(s->ctx.iot)) == 0) {
        return s->ctx.iot;
    }
    for (r = c->regions; r; r = r->next) {
        if (strcmp(r->region, region) == 0) {
            return r->iot;
        }
    }
    memset(&o, 0, sizeof(o));
    o.base = s->ctx.base;
    o.region = region;
    o.redis_url = c->redis_url;
    o.service = c->signing_name[0] ? c->signing_name : NULL;
    o.rates = c->rates[0] ? c->rates : NULL;
    r = xcalloc(1, sizeof(*r));
    snprintf(r->region, sizeof(r->region), "%s", region);
    r->iot = aws_iot_new(&o, e);
    if (r->iot == NULL) {
        xfree(r);
        return NULL;
    }
    r->next = c->regions;
    c->regions = r;
    return r->iot;
}

/* ---- confirmations in flight ----------------------------------------------------------------- */

static void job_free(struct cjob *j)
{
    struct jitr_confirmer *c = j->c;
    if (j->prev) {
        j->prev->next = j->next;
    } else {
        c->jobs = j->next;
    }
    if (j->next) {
        j->next->prev = j->prev;
    }
    c->njobs--;
    if (j->timer) {
        event_free(j->timer);
    }
    xfree_secret(j->token);
    xfree(j);
}

/* The token's fate, remembered for CONFIRM_DONE_S: the same token is never sent to AWS again. */
static void job_finish(struct cjob *j, const char *state)
{
    struct jitr_service *s = j->c->s;
    struct err e = ERR_INIT;
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%d", CONFIRM_DONE_S);
    const char *av[] = { "SET", j->key, state, "EX", ttl };
    if (!s->ctx.stopping && s->ctx.rs != NULL &&
        store_async_cmd(s->ctx.rs, (int)ARRAY_LEN(av), av, NULL, CONFIRM_REDIS_MS,
                        jitr_ignore_reply, NULL, &e) != 0) {
        log_debug("jitr: confirmation: %s", e.msg);
    }
    job_free(j);
}

static void job_call(struct cjob *j);

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    job_call(arg);
}

static void on_confirmed(void *arg, const struct aws_iot_result *r, const struct err *e)
{
    struct cjob *j = arg;
    struct jitr_confirmer *c = j->c;
    (void)r;
    if (e != NULL && e->code == ERRC_CANCELED) {
        job_free(j); /* shutting down: the destination stays IN_PROGRESS; AWS can send again */
        return;
    }
    if (e == NULL) {
        cstat(c, "ok");
        log_info("jitr: topic rule destination confirmed: %s (region %s)", j->arn, j->region);
        job_finish(j, "done");
        return;
    }
    if ((e->code == ERRC_UNAVAILABLE || e->code == ERRC_TIMEOUT) &&
        j->attempts < CONFIRM_ATTEMPTS && !c->s->ctx.stopping) {
        int64_t d = jitr_backoff_ms(CONFIRM_BACKOFF_MS, CONFIRM_BACKOFF_MAX_MS, j->attempts);
        struct timeval tv = { (time_t)(d / 1000), (suseconds_t)((d % 1000) * 1000) };
        cstat(c, "retry");
        log_warn("jitr: ConfirmTopicRuleDestination for %s failed (call %u of %d), again in "
                 "%lld ms: %s",
                 j->arn, j->attempts, CONFIRM_ATTEMPTS, (long long)d, e->msg);
        if (evtimer_add(j->timer, &tv) == 0) {
            return;
        }
    }
    cstat(c, "failed");
    log_warn("jitr: ConfirmTopicRuleDestination for %s failed after %u call(s): %s (AWS sends a "
             "new confirmation after aws iot update-topic-rule-destination --status IN_PROGRESS)",
             j->arn, j->attempts, e->msg);
    job_finish(j, "failed");
}

static void job_call(struct cjob *j)
{
    struct jitr_confirmer *c = j->c;
    struct err e = ERR_INIT;
    struct aws_iot *iot = NULL;
    json_t *in;
    int rc = -1;
    if (c->s->ctx.stopping) {
        job_free(j);
        return;
    }
    iot = region_client(c, j->region, &e);
    if (iot != NULL) {
        in = json_pack("{s:s}", "confirmationToken", j->token);
        j->attempts++;
        rc = jitr_aws_call(&c->s->ctx, iot, AWS_IOT_CONFIRM_TOPIC_RULE_DESTINATION, in,
                           on_confirmed, j, &e);
        json_decref(in);
    }
    if (rc != 0) {
        cstat(c, "failed");
        log_warn("jitr: cannot confirm topic rule destination %s: %s", j->arn, e.msg);
        job_finish(j, "failed");
    }
}

static void job_start(struct jitr_confirmer *c, const struct cpost *p)
{
    struct cjob *j = xcalloc(1, sizeof(*j));
    j->c = c;
    snprintf(j->arn, sizeof(j->arn), "%s", p->msg.arn);
    snprintf(j->region, sizeof(j->region), "%s", p->msg.dest.region);
    snprintf(j->key, sizeof(j->key), "%s", p->key);
    j->token = xstrdup(p->msg.token);
    j->next = c->jobs;
    if (c->jobs) {
        c->jobs->prev = j;
    }
    c->jobs = j;
    c->njobs++;
    j->timer = evtimer_new(c->s->ctx.base, on_retry_timer, j);
    if (j->timer == NULL) {
        oom_die(event_get_struct_event_size());
    }
    log_info("jitr: confirming topic rule destination %s (region %s)", j->arn, j->region);
    job_call(j);
}

/* ---- the POST -------------------------------------------------------------------------------- */

static void on_gate(void *arg, const struct store_reply *r, const struct err *e)
{
    struct cpost *p = arg;
    struct jitr_confirmer *c = p->c;
    c->s->intake_busy--;
    if (e != NULL || r->type != STORE_REPLY_INTEGER) {
        refuse(c, "unavailable", e ? e->msg : "unexpected reply from Redis");
        httpd_reply_error(p->req, 503, "unavailable", "cannot confirm now; retry");
    } else if (r->integer == 0) {
        cstat(c, "duplicate"); /* being confirmed or done: nothing more to do */
        httpd_reply_json(p->req, 200, json_pack("{s:b}", "confirming", 1));
    } else if (r->integer < 0) {
        refuse(c, "rate_limited", "a confirmation was started in the last 10 s");
        httpd_req_add_header(p->req, "Retry-After", "10");
        httpd_reply_error(p->req, 429, "rate_limited",
                          "one destination confirmation per 10 seconds; retry");
    } else {
        cstat(c, "accepted");
        httpd_reply_json(p->req, 200, json_pack("{s:b}", "confirming", 1));
        job_start(c, p);
    }
    OPENSSL_cleanse(p->msg.token, sizeof(p->msg.token));
    xfree(p);
}

void jitr_confirm_post(struct jitr_service *s, struct httpd_req *req, const uint8_t *body,
                       size_t len)
{
    struct jitr_confirmer *c = s->confirm;
    const char *harn = httpd_req_header(req, "x-amz-rules-engine-destination-arn");
    struct jitr_dest_policy pol;
    struct err e = ERR_INIT;
    struct cpost *p;
    char pending[24], interval[24];
    if (c == NULL) {
        httpd_reply_error(req, 503, "unavailable", "cannot confirm now; retry");
        return;
    }
    p = xcalloc(1, sizeof(*p));
    p->c = c;
    p->req = req;
    if (jitr_confirm_parse(body, len, &p->msg, &e) != 0) {
        refuse(c, "invalid", e.msg);
        httpd_reply_err(req, &e);
        xfree(p);
        return;
    }
    if (harn != NULL && strcmp(harn, p->msg.arn) != 0) {
        err_set(&e, ERRC_INVALID,
                "confirmation: the header x-amz-rules-engine-destination-arn "
                "and the body name different destinations");
        refuse(c, "invalid", e.msg);
        httpd_reply_err(req, &e);
        goto drop;
    }
    memset(&pol, 0, sizeof(pol));
    pol.arns = (const char *const *)c->arns;
    pol.narns = c->narns;
    pol.region = aws_iot_region(s->ctx.iot);
    pol.accounts = (const char *const *)s->ctx.cas->accounts;
    pol.naccounts = s->ctx.cas->n;
    if (jitr_destination_check(&p->msg, &pol, &e) != 0) {
        refuse(c, "foreign", e.msg);
        httpd_reply_err(req, &e);
        goto drop;
    }
    if (c->njobs >= CONFIRM_MAX_JOBS) {
        refuse(c, "rate_limited", "too many confirmations in flight");
        httpd_req_add_header(req, "Retry-After", "10");
        httpd_reply_error(req, 429, "rate_limited", "too many confirmations in flight; retry");
        goto drop;
    }
    token_key(p->msg.token, p->key);
    snprintf(pending, sizeof(pending), "%d", CONFIRM_PENDING_S);
    snprintf(interval, sizeof(interval), "%d", CONFIRM_INTERVAL_MS);
    {
        const char *av[] = { "EVAL",  gate_lua, "2", p->key, STORE_PREFIX "jitr:confirm_gate",
                             pending, interval };
        if (s->ctx.stopping || s->ctx.rs == NULL ||
            store_async_cmd(s->ctx.rs, (int)ARRAY_LEN(av), av, NULL, CONFIRM_REDIS_MS, on_gate, p,
                            &e) != 0) {
            refuse(c, "unavailable", e.msg[0] ? e.msg : "stopping");
            httpd_reply_error(req, 503, "unavailable", "cannot confirm now; retry");
            goto drop;
        }
    }
    s->intake_busy++;
    return;
drop:
    OPENSSL_cleanse(p->msg.token, sizeof(p->msg.token));
    xfree(p);
}

/* ---- life ------------------------------------------------------------------------------------ */

int jitr_confirm_start(struct jitr_service *s, const struct conf *conf, struct err *e)
{
    struct jitr_confirmer *c = xcalloc(1, sizeof(*c));
    const char *rates = s->cfg.aws_rates[0] ? s->cfg.aws_rates : conf->aws_rates;
    c->s = s;
    if (jitr_destination_arns_parse(s->cfg.destination_arns, &c->arns, &c->narns, e) != 0) {
        xfree(c);
        return err_prefix(e, "jitr.destination_arns");
    }
    c->redis_url = xstrdup(conf->redis_url);
    c->signing_name = xstrdup(conf->aws_signing_name ? conf->aws_signing_name : "");
    c->rates = xstrdup(rates ? rates : "");
    c->last_log_ms = -CONFIRM_LOG_EVERY_MS;
    s->confirm = c;
    return 0;
}

void jitr_confirm_stop(struct jitr_service *s)
{
    struct jitr_confirmer *c = s->confirm;
    if (c == NULL) {
        return;
    }
    /* the other regions' clients: a call outstanding ends now (ERRC_CANCELED frees its job) */
    while (c->regions) {
        struct cregion *r = c->regions;
        c->regions = r->next;
        aws_iot_free(r->iot);
        xfree(r);
    }
    /* what is left waits for a retry timer */
    while (c->jobs) {
        job_free(c->jobs);
    }
    jitr_destination_arns_free(c->arns, c->narns);
    xfree(c->redis_url);
    xfree(c->signing_name);
    xfree(c->rates);
    xfree(c);
    s->confirm = NULL;
}
