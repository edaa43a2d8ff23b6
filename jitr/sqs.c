/*
 * The SQS long-poll intake (docs/jitr.md "SQS intake"): for users without a public HTTPS
 * endpoint, an IoT topic rule with an sqs action puts the registered event on a queue and every
 * jitrd worker polls it. The poller feeds the same stream after the same validation as the HTTP
 * intake (jitr_intake_parse, jitr_events_enqueue in intake.c). A body is one event or an array
 * of them, as the HTTP intake takes them, as JSON or base64 of it (jitr_sqs_body_decode,
 * event.c).
 *
 * One poller per worker, one SQS request outstanding at a time, an explicit state machine:
 *   RECEIVE   ReceiveMessage (long poll: jitr.sqs_wait_seconds, jitr.sqs_max_messages)
 *   ENQUEUE   each message: decode (JSON or base64 of it) → validate every event of it; the
 *             valid events of every message of the batch go to Redis in one EVAL; a message
 *             with nothing valid is marked for deletion at once (logged by MessageId, counted by
 *             reason, never enqueued), as is an event of a message that can never be valid
 *   DELETE    DeleteMessageBatch of what Redis acknowledged plus the invalid ones; when the
 *             EVAL failed the messages are left alone: SQS delivers them again after the
 *             visibility timeout (at-least-once; the workers are idempotent, so duplicates are
 *             harmless)
 *   BACKOFF   after an SQS error (the client already retried per botocore's standard mode) or
 *             while Redis is down: capped exponential with jitter, 0.5 s .. 20 s; logged once per
 *             outage, with the queue URL
 * Stopping (jitr_service_free) aborts a pending long poll by freeing the client; an EVAL still in
 * flight finishes into an orphaned poller that its callback frees.
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "aws/sqs.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr_int.h"

#define SQS_BACKOFF_MIN_MS 500
#define SQS_BACKOFF_MAX_MS 20000
#define SQS_BATCH_MAX      10

/* ---- the poller ------------------------------------------------------------------------------ */

enum sq_state { SQ_IDLE, SQ_RECEIVE, SQ_ENQUEUE, SQ_DELETE, SQ_BACKOFF };

enum sq_fate { SQ_PENDING, SQ_DELETE_IT, SQ_KEEP };

struct jitr_sqs;

struct sq_msg {
    char id[96]; /* MessageId, for the log */
    char *receipt;
    enum sq_fate fate;
    size_t nvalid; /* its events in evs[] */
};

struct jitr_sqs {
    struct jitr_service *s;
    struct aws_sqs *q;
    struct event *timer;
    enum sq_state st;
    struct sq_msg msgs[SQS_BATCH_MAX];
    size_t nmsgs;
    struct jitr_events parsed;                          /* one message's, scratch */
    struct jitr_event evs[SQS_BATCH_MAX * JITR_BATCH_MAX]; /* the valid events of the batch */
    size_t nevs;
    bool enqueuing;        /* the batch's EVAL is in flight */
    bool redis_err;        /* the batch's EVAL failed */
    char redis_msg[256];
    unsigned failures;     /* consecutive, for the backoff */
    bool sqs_failing;      /* logged once per outage */
    bool redis_failing;
    bool stopped;          /* jitr_sqs_stop ran: no new work, callbacks only clean up */
};

static void sq_receive(struct jitr_sqs *p);

static void batch_release(struct jitr_sqs *p)
{
    for (size_t i = 0; i < p->nmsgs; i++) {
        xfree(p->msgs[i].receipt);
        p->msgs[i].receipt = NULL;
    }
    p->nmsgs = 0;
    p->nevs = 0;
    p->redis_err = false;
}

static void sq_backoff(struct jitr_sqs *p)
{
    int64_t d = jitr_backoff_ms(SQS_BACKOFF_MIN_MS, SQS_BACKOFF_MAX_MS, ++p->failures);
    struct timeval tv = { (time_t)(d / 1000), (suseconds_t)((d % 1000) * 1000) };
    p->st = SQ_BACKOFF;
    evtimer_add(p->timer, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sq_receive(arg);
}

/* The batch is settled: poll again, at once unless Redis refused something. */
static void sq_next(struct jitr_sqs *p)
{
    bool redis_err = p->redis_err;
    batch_release(p);
    if (p->stopped) {
        return;
    }
    if (redis_err) {
        sq_backoff(p);
        return;
    }
    p->failures = 0;
    p->st = SQ_IDLE;
    sq_receive(p);
}

static void on_deleted(void *arg, const struct aws_sqs_result *r, const struct err *e)
{
    struct jitr_sqs *p = arg;
    if (e != NULL && e->code == ERRC_CANCELED) {
        batch_release(p);
        return;
    }
    if (e != NULL) {
        /* the messages come back after the visibility timeout: duplicates, harmless */
        jitr_stat_incr(&p->s->ctx, "sqs:delete_errors", 1);
        log_warn("jitr: SQS intake: DeleteMessageBatch failed (the messages will be delivered "
                 "again): %s", e->msg);
    } else {
        json_t *ok = json_object_get(r->out, "Successful");
        json_t *failed = json_object_get(r->out, "Failed");
        size_t i;
        json_t *f;
        if (json_array_size(ok) > 0) {
            jitr_stat_incr(&p->s->ctx, "sqs:deleted", (long long)json_array_size(ok));
        }
        json_array_foreach (failed, i, f) {
            const char *fid = json_string_value(json_object_get(f, "Id"));
            const char *code = json_string_value(json_object_get(f, "Code"));
            jitr_stat_incr(&p->s->ctx, "sqs:delete_errors", 1);
            log_warn("jitr: SQS intake: entry %s not deleted (it will be delivered again): %s",
                     fid ? fid : "?", code ? code : "?");
        }
    }
    sq_next(p);
}

static void sq_delete(struct jitr_sqs *p)
{
    const char *receipts[SQS_BATCH_MAX];
    size_t n = 0;
    struct err e = ERR_INIT;
    if (p->stopped) {
        batch_release(p);
        return;
    }
    if (p->redis_err) {
        if (!p->redis_failing) {
            log_warn("jitr: SQS intake: Redis unavailable, messages stay on the queue for "
                     "redelivery: %s", p->redis_msg);
        }
        p->redis_failing = true;
    } else if (p->redis_failing && p->nmsgs > 0) {
        log_info("jitr: SQS intake: Redis reachable again");
        p->redis_failing = false;
    }
    for (size_t i = 0; i < p->nmsgs; i++) {
        if (p->msgs[i].fate == SQ_DELETE_IT) {
            receipts[n++] = p->msgs[i].receipt;
        }
    }
    if (n == 0) {
        sq_next(p);
        return;
    }
    p->st = SQ_DELETE;
    if (aws_sqs_delete_batch(p->q, receipts, n, on_deleted, p, &e) != 0) {
        log_warn("jitr: SQS intake: %s", e.msg);
        sq_next(p);
    }
}

static void on_enqueued(void *arg, const struct store_reply *r, const struct err *e)
{
    struct jitr_sqs *p = arg;
    size_t queued = 0;
    p->enqueuing = false;
    if (p->stopped) {
        batch_release(p);
        xfree(p); /* orphaned by jitr_sqs_stop */
        return;
    }
    if (e == NULL && (r->type != STORE_REPLY_ARRAY || r->n != p->nevs)) {
        snprintf(p->redis_msg, sizeof(p->redis_msg), "unexpected reply to the XADD script");
        p->redis_err = true;
    } else if (e != NULL) {
        snprintf(p->redis_msg, sizeof(p->redis_msg), "%s", e->msg);
        p->redis_err = true;
    }
    for (size_t i = 0; i < p->nmsgs; i++) {
        struct sq_msg *m = &p->msgs[i];
        if (m->fate != SQ_PENDING) {
            continue;
        }
        m->fate = p->redis_err ? SQ_KEEP : SQ_DELETE_IT;
        queued += p->redis_err ? 0 : 1;
    }
    if (queued > 0) {
        jitr_stat_incr(&p->s->ctx, "sqs:enqueued", (long long)queued);
        jitr_stat_incr(&p->s->ctx, "events:sqs:queued", (long long)p->nevs);
    }
    sq_delete(p);
}

static const char *reject_class(enum err_code c, bool decoded)
{
    if (!decoded) {
        return c == ERRC_TOO_LARGE ? "too_large" : "not_json";
    }
    switch (c) {
    case ERRC_DENIED:
        return "foreign_ca";
    case ERRC_TOO_LARGE:
        return "too_large";
    default:
        return "invalid";
    }
}

/* One message: its valid events appended to p->evs (the batch's EVAL stores them), or the
 * message marked for deletion when nothing in it can ever be valid. */
static void sq_take(struct jitr_sqs *p, struct sq_msg *m, const char *body, size_t len)
{
    struct buf json = BUF_INIT;
    struct err e = ERR_INIT;
    struct jitr_events *pe = &p->parsed;
    bool b64 = false, decoded = false;
    enum err_code why = ERRC_OK;
    char field[64];
    if (jitr_sqs_body_decode(body, len, &json, &b64, &e) == 0) {
        decoded = true;
        if (jitr_intake_parse(p->s, (const uint8_t *)json.data, json.len, pe, &e) == 0) {
            for (size_t i = 0; i < pe->n; i++) {
                if (pe->err[i].code == ERRC_OK) {
                    p->evs[p->nevs++] = pe->ev[i];
                    m->nvalid++;
                    continue;
                }
                /* first reason, preferring "invalid" over "foreign_ca" for the message */
                if (why == ERRC_OK || (why == ERRC_DENIED && pe->err[i].code != ERRC_DENIED)) {
                    why = pe->err[i].code;
                    err_copy(&e, &pe->err[i]);
                }
                snprintf(field, sizeof(field), "events:sqs:rejected:%s",
                         jitr_event_reject_class(pe->err[i].code));
                jitr_stat_incr(&p->s->ctx, field, 1);
                if (pe->batch) {
                    log_warn("jitr: SQS intake: message %s: event %zu of %zu refused: %s", m->id,
                             i + 1, pe->n, pe->err[i].msg);
                }
            }
        }
    }
    buf_release(&json);
    if (m->nvalid > 0) {
        m->fate = SQ_PENDING;
        return;
    }
    m->fate = SQ_DELETE_IT;
    snprintf(field, sizeof(field), "sqs:rejected:%s", reject_class(e.code, decoded));
    jitr_stat_incr(&p->s->ctx, field, 1);
    log_warn("jitr: SQS intake: message %s rejected and deleted (%s): %s", m->id,
             reject_class(e.code, decoded), e.msg);
}

static void on_received(void *arg, const struct aws_sqs_result *r, const struct err *e)
{
    struct jitr_sqs *p = arg;
    json_t *msgs, *jm;
    size_t i;
    if (e != NULL) {
        if (e->code == ERRC_CANCELED || p->stopped) {
            return;
        }
        jitr_stat_incr(&p->s->ctx, "sqs:receive_errors", 1);
        if (!p->sqs_failing) {
            /* NOT_FOUND / DENIED are configuration problems: say so loudly, keep trying */
            if (e->code == ERRC_NOT_FOUND || e->code == ERRC_DENIED) {
                log_error("jitr: SQS intake: cannot receive from %s (retrying with backoff): %s",
                          aws_sqs_queue(p->q)->url, e->msg);
            } else {
                log_warn("jitr: SQS intake: cannot receive from %s (retrying with backoff): %s",
                         aws_sqs_queue(p->q)->url, e->msg);
            }
        }
        p->sqs_failing = true;
        sq_backoff(p);
        return;
    }
    if (p->sqs_failing) {
        log_info("jitr: SQS intake: %s reachable again", aws_sqs_queue(p->q)->url);
        p->sqs_failing = false;
    }
    msgs = json_object_get(r->out, "Messages");
    p->st = SQ_ENQUEUE;
    p->nmsgs = 0;
    p->nevs = 0;
    p->redis_err = false;
    json_array_foreach (msgs, i, jm) {
        const char *id = json_string_value(json_object_get(jm, "MessageId"));
        const char *rh = json_string_value(json_object_get(jm, "ReceiptHandle"));
        json_t *body = json_object_get(jm, "Body");
        struct sq_msg *m;
        if (p->nmsgs == SQS_BATCH_MAX) {
            break;
        }
        if (rh == NULL || rh[0] == '\0') {
            log_warn("jitr: SQS intake: message %s without a receipt handle ignored",
                     id ? id : "?");
            continue;
        }
        m = &p->msgs[p->nmsgs++];
        snprintf(m->id, sizeof(m->id), "%s", id ? id : "?");
        m->receipt = xstrdup(rh);
        m->fate = SQ_PENDING;
        m->nvalid = 0;
        jitr_stat_incr(&p->s->ctx, "sqs:received", 1);
        sq_take(p, m, json_is_string(body) ? json_string_value(body) : "",
                json_is_string(body) ? json_string_length(body) : 0);
    }
    if (p->nevs > 0) {
        const struct jitr_event *evs[SQS_BATCH_MAX * JITR_BATCH_MAX];
        struct err e2 = ERR_INIT;
        for (i = 0; i < p->nevs; i++) {
            evs[i] = &p->evs[i];
        }
        if (jitr_events_enqueue(p->s, evs, p->nevs, "sqs", on_enqueued, p, &e2) == 0) {
            p->enqueuing = true;
            return;
        }
        snprintf(p->redis_msg, sizeof(p->redis_msg), "%s", e2.msg);
        p->redis_err = true;
        for (i = 0; i < p->nmsgs; i++) {
            if (p->msgs[i].fate == SQ_PENDING) {
                p->msgs[i].fate = SQ_KEEP;
            }
        }
    }
    sq_delete(p);
}

static void sq_receive(struct jitr_sqs *p)
{
    struct err e = ERR_INIT;
    if (p->stopped || p->s->ctx.stopping) {
        return;
    }
    p->st = SQ_RECEIVE;
    if (aws_sqs_receive(p->q, (int)p->s->cfg.sqs_max_messages, (int)p->s->cfg.sqs_wait_seconds,
                        on_received, p, &e) != 0) {
        log_warn("jitr: SQS intake: %s", e.msg);
        sq_backoff(p);
    }
}

int jitr_sqs_start(struct jitr_service *s, struct err *e)
{
    struct jitr_sqs *p;
    struct aws_sqs_opts o;
    if (s->cfg.sqs_queue_url == NULL || s->cfg.sqs_queue_url[0] == '\0') {
        return 0;
    }
    p = xcalloc(1, sizeof(*p));
    p->s = s;
    memset(&o, 0, sizeof(o));
    o.base = s->ctx.base;
    o.queue_url = s->cfg.sqs_queue_url;
    o.region = aws_iot_region(s->ctx.iot);
    o.credp = aws_iot_credp(s->ctx.iot);
    p->q = aws_sqs_new(&o, e);
    if (p->q == NULL) {
        xfree(p);
        return err_prefix(e, "jitr.sqs_queue_url");
    }
    p->timer = evtimer_new(s->ctx.base, on_timer, p);
    if (p->timer == NULL) {
        oom_die(event_get_struct_event_size());
    }
    s->sqs = p;
    /* from the loop: the worker finishes starting first */
    p->st = SQ_BACKOFF;
    {
        struct timeval tv = { 0, 0 };
        evtimer_add(p->timer, &tv);
    }
    log_info("jitr: SQS intake on %s (region %s, wait %llds, up to %lld messages)",
             aws_sqs_queue(p->q)->url, aws_sqs_queue(p->q)->region,
             (long long)s->cfg.sqs_wait_seconds, (long long)s->cfg.sqs_max_messages);
    return 0;
}

void jitr_sqs_stop(struct jitr_service *s)
{
    struct jitr_sqs *p = s->sqs;
    if (p == NULL) {
        return;
    }
    s->sqs = NULL;
    p->stopped = true;
    aws_sqs_free(p->q); /* a pending long poll or delete ends now (ERRC_CANCELED) */
    p->q = NULL;
    event_free(p->timer);
    p->timer = NULL;
    if (p->enqueuing) {
        return; /* the EVAL's callback frees the orphan */
    }
    batch_release(p);
    xfree(p);
}
