/*
 * Internal to jitr/: what the parts of the JITR service share, below them all. service.c,
 * intake.c, sqs.c, confirm.c, policy.c and reconcile.c use it; it uses none of them.
 *
 *   stats      fire-and-forget HINCRBY on jitr:stats (docs/redis.md)
 *   AWS calls  jitr_aws_call: every AWS IoT call of JITR goes through it, so jitr:stats counts
 *              each by API and result (aws:<Operation>:<ok|error code>, aws_retries:<Operation>)
 *   CA table   the CAs of the store as JITR sees them: a snapshot loaded from disk (anywhere:
 *              it touches nothing shared) and swapped in on the loop
 *   backoff    the capped exponential delay with jitter every retry of JITR waits
 * Everything but jitr_catab_load is used on the worker's loop only.
 */
#ifndef JITR_CTX_H
#define JITR_CTX_H

#include "jitr/jitr.h"

struct event_base;

/* The CA table: every CA of the store with a certificate. Reference-counted on the loop, so a
 * walk across calls (the reconciler) keeps the table it started with while a new one is
 * swapped in. */
struct jitr_catab {
    unsigned refs;
    size_t n;
    struct jitr_ca *cas; /* n of them, for the flows' jitr_env */
    char **names, **ids, **accounts;
    bool *known; /* registered in AWS (ca.json "aws") */
};
/* Reads data_dir's CAs (a CA that cannot be read is logged and left out). refs = 1. No loop,
 * no shared state: may run on any thread. */
struct jitr_catab *jitr_catab_load(const char *data_dir, struct err *e) ATTR_WUR;
struct jitr_catab *jitr_catab_ref(struct jitr_catab *t);
void jitr_catab_unref(struct jitr_catab *t);

struct jitr_ctx {
    struct event_base *base;
    struct store_async *rs; /* every Redis command but the consumer's blocking read */
    struct aws_iot *iot;    /* the client of the configured region */
    struct jitr_catab *cas; /* the current CA table (never NULL once the service started) */
    bool stopping;          /* jitr_service_free has begun: no new work */
};

/* jitr_ca_known_fn over ctx's current table (arg: the struct jitr_ctx): a registered CA. */
bool jitr_ca_known(void *arg, const char *ca_id);

/* Fire-and-forget HINCRBY jitr:stats field by (nothing once stopping). */
void jitr_stat_incr(struct jitr_ctx *c, const char *field, long long by);
/* The first-event-to-ACTIVE histogram: lat_le:<bucket>, lat_count, lat_sum_ms. */
void jitr_stat_latency(struct jitr_ctx *c, int64_t ms);
/* aws_iot_call on iot (NULL: c->iot), counted in jitr:stats when it completes. in is
 * borrowed. */
int jitr_aws_call(struct jitr_ctx *c, struct aws_iot *iot, enum aws_iot_op op, json_t *in,
                  aws_iot_cb *cb, void *arg, struct err *e) ATTR_WUR;

/* A store_reply_cb for replies nobody waits for (failures other than cancellation at debug). */
void jitr_ignore_reply(void *arg, const struct store_reply *r, const struct err *e);

/* The delay before attempt+1 of something that failed attempt times (attempt >= 1): base_ms
 * doubled per attempt up to max_ms, then a random point of its upper half. */
int64_t jitr_backoff_ms(int64_t base_ms, int64_t max_ms, unsigned attempt);

#endif
