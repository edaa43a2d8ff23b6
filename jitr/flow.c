/*
 * The per-certificate provisioning state machine (docs/style.md, "State machines";
 * docs/aws-iot.md, "Provisioning order: activation last"; docs/contracts.md, "Guarantees"). One
 * struct jitr_req per queued event; one function per state (state_fns[], run by jitr_advance())
 * decides, completions only store their result and call jitr_advance(); set_state is the one
 * place that changes the state.
 *
 * Order: LOCK → LOAD → LOOKUP → DESCRIBE → EVALUATE → POLICY → CREATE_THING (→ UPDATE_THING)
 * → ATTACH_POLICY → ATTACH_PRINCIPAL (→ LIST_GROUPS → REMOVE_FROM_GROUP) → ADD_TO_GROUP →
 * ACTIVATE → RECORD → UNLOCK; or EVALUATE → REJECT → RECORD_REJECT → UNLOCK; or EVALUATE →
 * RECORD_IGNORE → UNLOCK. Activation is last: ACTIVE is the commit marker, and every earlier
 * step is idempotent in AWS (CreateThing with the same configuration answers 200, attaching
 * twice is a no-op), so a crash anywhere resumes safely.
 *
 * Round trips (docs/jitr.md "Round trips"): nothing is written to AWS before DescribeCertificate
 * answered and EVALUATE decided. Then the certificate's AttachPolicy calls (the side chain) run
 * alongside CreateThing (and UpdateThing), each call paced by its own API's bucket; ATTACH_POLICY
 * joins them and saves both as done in one write; AttachThingPrincipal needs the thing;
 * UpdateCertificate waits for everything. So a device is ACTIVE after four AWS round trips
 * (Describe, CreateThing ∥ AttachPolicy, AttachThingPrincipal, UpdateCertificate).
 *
 * The decision (EVALUATE, docs/jitr.md "The decision"): the event's fields are claims; AWS's
 * own record of the certificate (DescribeCertificate, on every run that may change its status)
 * and the certificate itself are the facts. A certificate AWS registered under a CA that is not
 * one of ours, or that is not PENDING_ACTIVATION, is left alone (IGNORED, audited). REVOKED is
 * asked only for facts about the certificate: its SHA-256 is not the certificateId, it is not
 * signed by the CA AWS names, that CA is marked compromised, our index says revoked, it has
 * expired. Everything that comes from our configuration or state (not in the index, unknown
 * profile, profile without JITR, the template, AWS errors) is a dead letter with the reason,
 * which `jitrctl jitr dlq retry` runs again once fixed. A retired CA still provisions.
 *
 * Audit: RECORD, RECORD_REJECT and RECORD_IGNORE wait for io->audit, which appends on a thread
 * (never on the loop). The state is saved with audit_after (a seq at or below the log's end)
 * before the append and as DONE / REJECTED / IGNORED with audit_seq after it; a replay from a
 * RECORD state goes there straight from LOAD (everything the record needs is saved) and asks
 * io->audit to look for this certificate's record above audit_after first, so a crash between
 * the two writes does not leave a second record.
 *
 * Persistence: after each AWS step, PERSIST writes the next state (the resume point) and a trace
 * line into jitr:dev:<id> in one Lua call. LOAD reads it: DONE, REJECTED or IGNORED → duplicate,
 * nothing to do; a provisioning state → LOOKUP, DESCRIBE and EVALUATE again and then the stored
 * step (at ACTIVATE or REJECT, AWS's status tells whether the earlier attempt's
 * UpdateCertificate went through). The lock (SET NX PX, released only by its owner) keeps
 * concurrent duplicates apart. It is a lease (docs/jitr.md "The lock is a lease"): the worker
 * renews it while the flow lives (io->lease_hold), and before each AWS call the flow checks it
 * is still held (lock_held): a lost lock ends the flow RETRY with nothing more sent, never an
 * UpdateCertificate. A crashed flow stops renewing: its lock expires and the claimer gets in.
 *
 * Errors: Redis failures, AWS throttling/5xx/timeouts (after the client's own retries) → RETRY
 * (the stream entry stays pending; the owner backs off). AWS 4xx → DEAD (dead-letter stream).
 */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ca/issue.h"
#include "ca/profile.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr.h"
#include "jobs/renewal.h"
#include "store/store.h"

#define TRACE_KEEP "64"
/* how a JITR flow's lock token begins (the job engine's tokens for other kinds never do) */
#define JITR_LOCK_TAG "jitr-flow "

static const char *const jitr_state_names[] = {
    [JITR_ST_RECEIVED] = "RECEIVED",
    [JITR_ST_LOCK] = "LOCK",
    [JITR_ST_LOAD] = "LOAD",
    [JITR_ST_LOOKUP] = "LOOKUP",
    [JITR_ST_DESCRIBE] = "DESCRIBE",
    [JITR_ST_EVALUATE] = "EVALUATE",
    [JITR_ST_ADOPT] = "ADOPT",
    [JITR_ST_CREATE_THING] = "CREATE_THING",
    [JITR_ST_UPDATE_THING] = "UPDATE_THING",
    [JITR_ST_POLICY] = "POLICY",
    [JITR_ST_ATTACH_POLICY] = "ATTACH_POLICY",
    [JITR_ST_ATTACH_PRINCIPAL] = "ATTACH_PRINCIPAL",
    [JITR_ST_LIST_GROUPS] = "LIST_GROUPS",
    [JITR_ST_REMOVE_FROM_GROUP] = "REMOVE_FROM_GROUP",
    [JITR_ST_ADD_TO_GROUP] = "ADD_TO_GROUP",
    [JITR_ST_ACTIVATE] = "ACTIVATE",
    [JITR_ST_RECORD] = "RECORD",
    [JITR_ST_REJECT] = "REJECT",
    [JITR_ST_RECORD_REJECT] = "RECORD_REJECT",
    [JITR_ST_RECORD_IGNORE] = "RECORD_IGNORE",
    [JITR_ST_PERSIST] = "PERSIST",
    [JITR_ST_UNLOCK] = "UNLOCK",
    [JITR_ST_FINISHED] = "FINISHED",
};
_Static_assert(ARRAY_LEN(jitr_state_names) == JITR_ST__COUNT, "jitr_state_names");

static const char *const jitr_outcome_names[] = {
    [JITR_OUT_NONE] = "none",         [JITR_OUT_ACTIVATED] = "activated",
    [JITR_OUT_REJECTED] = "rejected", [JITR_OUT_IGNORED] = "ignored",
    [JITR_OUT_DUPLICATE] = "duplicate", [JITR_OUT_BUSY] = "busy",
    [JITR_OUT_RETRY] = "retry",       [JITR_OUT_DEAD] = "dead",
};
_Static_assert(ARRAY_LEN(jitr_outcome_names) == JITR_OUT__COUNT, "jitr_outcome_names");

/* Stored states that mean "finished". */
#define ST_DONE     "DONE"
#define ST_REJECTED "REJECTED"
#define ST_IGNORED  "IGNORED"
#define ST_DEAD     "DEAD"

static const char persist_lua[] =
    "if redis.call('GET', KEYS[3]) ~= ARGV[2] then return redis.error_reply('LOCKLOST') end\n"
    "redis.call('PEXPIRE', KEYS[3], ARGV[3])\n"
    "for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end\n"
    "redis.call('RPUSH', KEYS[2], ARGV[1])\n"
    "redis.call('LTRIM', KEYS[2], -" TRACE_KEEP ", -1)\n"
    "return 1\n";
/* The certificate's lock: 1 when taken, else the holder's token (0: none, cannot happen). */
static const char lock_lua[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end\n"
    "return redis.call('GET', KEYS[1]) or 0\n";
static const char unlock_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

const char *jitr_state_name(enum jitr_state st)
{
    return (unsigned)st < JITR_ST__COUNT ? jitr_state_names[st] : "?";
}

int jitr_state_parse(const char *name)
{
    for (int i = 0; i < JITR_ST__COUNT; i++) {
        if (strcmp(jitr_state_names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

const char *jitr_outcome_name(enum jitr_outcome o)
{
    return (unsigned)o < JITR_OUT__COUNT ? jitr_outcome_names[o] : "?";
}

/* The reply of the current Redis operation, kept until the state consumes it. */
struct held_reply {
    enum store_reply_type type;
    char *str;
    long long integer;
    json_t *fields; /* HGETALL: object */
};

struct jitr_req {
    const struct jitr_env *env;
    const struct jitr_io *io;
    /* the flow's template: env->tpl (jitrd's), or the one its register job carries (jitrctl aws
     * register-batch --template), named by its SHA-256 (tpl_sha; "" for jitrd's) */
    const struct jitr_template *tpl;
    char tpl_sha[65];
    struct jitr_event ev;
    char entry[64];
    enum jitr_state state;
    enum jitr_state after;  /* PERSIST: the state that follows */
    enum jitr_state resume; /* LOAD: the stored resume point, RECEIVED for none */
    enum jitr_outcome outcome;
    bool have_result;       /* the current state's operation has completed */
    bool in_flight;
    struct held_reply held; /* the completed operation's reply */
    struct err op_err;      /* the completed operation's error (code OK on success) */
    char aws_code[64];      /* its AWS error code */
    struct err err;         /* why rejected / ignored / retried / dead */
    char lock_token[160]; /* JITR_LOCK_TAG entry pid-counter-ms (jitr_req_new) */
    bool locked;
    void *lease;          /* io->lease_hold's, while locked */
    int64_t lock_sent_ms; /* when LOCK's command was sent */
    int64_t first_ms;
    unsigned attempts;
    char serial[130];
    json_t *record; /* cert:<serial> fields; NULL when the index has none */
    json_t *desc;   /* DescribeCertificate's certificateDescription */
    char aws_status[32]; /* its status ("" before DESCRIBE) */
    char stored_reason[256]; /* LOAD: the reason saved with a REJECT or RECORD_* state */
    X509 *cert;
    char ca_name[128]; /* the issuing CA found by EVALUATE (a copy: the CA table may be
                        * reloaded between steps) */
    struct jitr_plan plan;
    bool planned;
    char thing[130];     /* the thing's name ("" before EVALUATE) */
    struct buf policies; /* the policies' names, comma-separated */
    bool existed;        /* CreateThing found the thing with another configuration */
    bool registered;     /* our register job registered it INACTIVE (jobs/register.c): ours to
                          * provision as if PENDING_ACTIVATION */
    bool reg_inactive;   /* registered, and the register job asks it left INACTIVE */
    bool status_set;     /* AWS has the template's status already: no UpdateCertificate */
    bool adopted;        /* ADOPT found it provisioned by a flow of ours whose states were lost */
    int adopt_step;      /* ADOPT: 0 the principal's things, 1 its policies */
    struct buf adopt_next; /* ADOPT: the next page's token ("" for the first) */
    json_t *adopt_missing; /* ADOPT: the template's policies not seen attached yet */
    size_t idx;          /* POLICY, ATTACH_POLICY, REMOVE_FROM_GROUP, ADD_TO_GROUP */
    json_t *remove;      /* LIST_GROUPS: the groups to leave (array of names) */
    char cert_arn[256];
    /* RECORD states: audit_after (a seq at or below the log's end, saved with the state before
     * the append) bounds the look for an earlier attempt's record on a replay */
    uint64_t audit_after;
    bool audit_after_set;
    bool audit_check; /* resumed at a RECORD state: an earlier attempt may have appended */
    uint64_t audit_seq;
    bool audit_found;
    int renewal; /* ACTIVATE of a renewal: 0 its predecessor's retirement to queue, 1 queueing,
                  * 2 queued */
    /* The AttachPolicy calls run alongside CreateThing (and UpdateThing), one policy after the
     * other: the side chain, started in CREATE_THING (or in ATTACH_POLICY when resumed there)
     * and joined in ATTACH_POLICY; UNLOCK waits for it too, so no call outlives the flow */
    bool side_started;   /* this run started the side chain */
    bool side_running;   /* one of its calls is in flight */
    bool side_waited;    /* the machine waits for it (in_flight until it ends) */
    bool side_stop;      /* the flow failed: start no further side call */
    size_t side_idx;     /* the policy being attached */
    struct err side_err; /* its failure (code OK: none) */
    struct buf trace;   /* every state, for tests and logs */
    struct buf pending; /* states since the last PERSIST, for the Redis trace */
    unsigned aws_calls;
};

static void jitr_advance(struct jitr_req *r);

static int64_t now_ms(const struct jitr_req *r)
{
    return r->env->now_ms ? r->env->now_ms() : time_now_ms();
}

static void set_state(struct jitr_req *r, enum jitr_state st)
{
    log_debug("cert=%.16s %s -> %s", r->ev.cert_id, jitr_state_name(r->state),
              jitr_state_name(st));
    r->state = st;
    r->have_result = false;
    if (r->trace.len) {
        buf_addch(&r->trace, ' ');
    }
    buf_addstr(&r->trace, jitr_state_name(st));
    if (st != JITR_ST_PERSIST && st != JITR_ST_UNLOCK && st != JITR_ST_FINISHED) {
        if (r->pending.len) {
            buf_addch(&r->pending, ' ');
        }
        buf_addstr(&r->pending, jitr_state_name(st));
    }
}

/* The flow ends (after UNLOCK) with this outcome; e explains it. */
static void finish_with(struct jitr_req *r, enum jitr_outcome o, const struct err *e)
{
    r->outcome = o;
    if (e != NULL && e->code != ERRC_OK && r->err.code == ERRC_OK) {
        err_copy(&r->err, e);
    }
}
/* ---- completions: store, then advance ------------------------------------------------------ */

static void on_redis(void *arg, const struct store_reply *rep, const struct err *e);
static void on_aws(void *arg, const struct aws_iot_result *res, const struct err *e);
static void on_done(void *arg, const struct err *e);
static void on_audit(void *arg, uint64_t seq, bool found, const struct err *e);

static struct held_reply *held(struct jitr_req *r)
{
    return &r->held;
}

static void held_clear(struct held_reply *h)
{
    xfree(h->str);
    json_decref(h->fields);
    memset(h, 0, sizeof(*h));
}

static void on_redis(void *arg, const struct store_reply *rep, const struct err *e)
{
    struct jitr_req *r = arg;
    struct held_reply *h = held(r);
    r->in_flight = false;
    held_clear(h);
    err_clear(&r->op_err);
    if (e != NULL) {
        err_copy(&r->op_err, e);
    } else {
        h->type = rep->type;
        h->integer = rep->integer;
        if (rep->type == STORE_REPLY_STRING) {
            h->str = xstrndup(rep->str, rep->len);
        } else if (rep->type == STORE_REPLY_ARRAY) {
            h->fields = json_object();
            for (size_t i = 0; i + 1 < rep->n; i += 2) {
                if (rep->elem[i].type == STORE_REPLY_STRING &&
                    rep->elem[i + 1].type == STORE_REPLY_STRING) {
                    char *k = xstrndup(rep->elem[i].str, rep->elem[i].len);
                    json_object_set_new(h->fields, k,
                                        json_stringn(rep->elem[i + 1].str, rep->elem[i + 1].len));
                    xfree(k);
                }
            }
        }
    }
    r->have_result = true;
    jitr_advance(r);
}

static void on_aws(void *arg, const struct aws_iot_result *res, const struct err *e)
{
    struct jitr_req *r = arg;
    struct held_reply *h = held(r);
    r->in_flight = false;
    held_clear(h);
    err_clear(&r->op_err);
    r->aws_code[0] = '\0';
    if (res != NULL && res->error_code != NULL) {
        snprintf(r->aws_code, sizeof(r->aws_code), "%s", res->error_code);
    }
    if (e != NULL) {
        err_copy(&r->op_err, e);
    } else if (res != NULL && res->out != NULL) {
        h->fields = json_incref(res->out);
    }
    r->have_result = true;
    jitr_advance(r);
}

static void on_done(void *arg, const struct err *e)
{
    struct jitr_req *r = arg;
    r->in_flight = false;
    err_clear(&r->op_err);
    if (e != NULL) {
        err_copy(&r->op_err, e);
    }
    r->have_result = true;
    jitr_advance(r);
}

static void on_audit(void *arg, uint64_t seq, bool found, const struct err *e)
{
    struct jitr_req *r = arg;
    r->in_flight = false;
    err_clear(&r->op_err);
    if (e != NULL) {
        err_copy(&r->op_err, e);
    } else {
        r->audit_seq = seq;
        r->audit_found = found;
    }
    r->have_result = true;
    jitr_advance(r);
}

/* ---- starting operations ------------------------------------------------------------------- */

/* Starts a Redis command; on a synchronous failure the result is that error, now. */
static void start_redis(struct jitr_req *r, int argc, const char *const *argv)
{
    struct err e = ERR_INIT;
    if (r->io->redis(r->io->ctx, argc, argv, on_redis, r, &e) != 0) {
        err_copy(&r->op_err, &e);
        r->have_result = true;
        return;
    }
    r->in_flight = true;
}

/* Whether the flow may still act under its certificate's lock: the worker renews it (a lease,
 * docs/jitr.md "The lock is a lease"); lost (Redis lost it, or it could not be renewed in time)
 * means another flow may hold it now, so nothing more is asked of AWS. */
static bool lock_held(struct jitr_req *r, enum aws_iot_op op, struct err *e)
{
    if (!r->locked || r->lease == NULL || r->io->lease_held == NULL ||
        r->io->lease_held(r->io->ctx, r->lease)) {
        return true;
    }
    err_set(e, ERRC_UNAVAILABLE, "the lock of certificate %.16s... was lost: %s not sent",
            r->ev.cert_id, aws_iot_op_name(op));
    return false;
}

static void lease_drop(struct jitr_req *r)
{
    if (r->lease != NULL && r->io->lease_drop != NULL) {
        r->io->lease_drop(r->io->ctx, r->lease);
    }
    r->lease = NULL;
}

static void start_aws(struct jitr_req *r, enum aws_iot_op op, json_t *in)
{
    struct err e = ERR_INIT;
    if (!lock_held(r, op, &e)) {
        err_copy(&r->op_err, &e);
        r->have_result = true;
        json_decref(in);
        return;
    }
    r->aws_calls++;
    if (r->io->aws(r->io->ctx, op, in, on_aws, r, &e) != 0) {
        err_copy(&r->op_err, &e);
        r->have_result = true;
    } else {
        r->in_flight = true;
    }
    json_decref(in);
}

static void key_of(char *out, size_t cap, const char *kind, const char *id)
{
    snprintf(out, cap, STORE_PREFIX "%s:%s", kind, id);
}

/* Writes the resume point `next` and the trace, then continues with `next`. */
static void persist_then(struct jitr_req *r, enum jitr_state next, const char *stored,
                         const char *detail)
{
    char dev[128], trace[128], lock[128], ms[32], first[32], att[16], px[24], after[24],
        aseq[24];
    struct buf line = BUF_INIT;
    const char *reason = r->err.code != ERRC_OK ? r->err.msg : "";
    snprintf(ms, sizeof(ms), "%lld", (long long)now_ms(r));
    snprintf(first, sizeof(first), "%lld", (long long)r->first_ms);
    snprintf(att, sizeof(att), "%u", r->attempts);
    key_of(dev, sizeof(dev), "jitr:dev", r->ev.cert_id);
    key_of(trace, sizeof(trace), "jitr:trace", r->ev.cert_id);
    key_of(lock, sizeof(lock), "jitr:lock", r->ev.cert_id);
    snprintf(px, sizeof(px), "%d", r->env->lock_ms > 0 ? r->env->lock_ms : 60000);
    after[0] = aseq[0] = '\0';
    if (r->audit_after_set) {
        snprintf(after, sizeof(after), "%llu", (unsigned long long)r->audit_after);
    }
    if (r->audit_seq > 0) {
        snprintf(aseq, sizeof(aseq), "%llu", (unsigned long long)r->audit_seq);
    }
    buf_addf(&line, "%s %s -> %s%s%s", ms, buf_cstr(&r->pending), stored, detail[0] ? " " : "",
             detail);
    {
        const char *av[] = { "EVAL",       persist_lua,   "3",
                             dev,          trace,         lock,
                             line.data,    r->lock_token, px,
                             "state",      stored,        "updated_ms",
                             ms,           "first_ms",    first,
                             "serial",     r->serial,     "ca",
                             r->ca_name,   "thing",       r->thing,
                             "policies",   buf_cstr(&r->policies),
                             "existed",    r->existed ? "1" : "0",
                             "aws_status", r->aws_status, "attempts",
                             att,          "reason",      reason,
                             "ca_id",      r->ev.ca_id,   "account",
                             r->ev.account, "audit_after", after,
                             "audit_seq",  aseq,          "adopted",
                             r->adopted ? "1" : "0" };
        buf_reset(&r->pending);
        r->after = next;
        set_state(r, JITR_ST_PERSIST);
        start_redis(r, (int)ARRAY_LEN(av), av);
    }
    buf_release(&line);
}

/* ---- decisions ------------------------------------------------------------------------------ */

/* Transient or permanent? Sets the outcome and heads for UNLOCK (through PERSIST for the
 * record). */
static void fail_op(struct jitr_req *r, const char *what)
{
    enum err_code c = r->op_err.code;
    bool transient = c == ERRC_UNAVAILABLE || c == ERRC_TIMEOUT || c == ERRC_CANCELED ||
                     c == ERRC_INTERNAL;
    err_prefix(&r->op_err, "%s", what);
    finish_with(r, transient ? JITR_OUT_RETRY : JITR_OUT_DEAD, &r->op_err);
    r->attempts++;
    r->side_stop = true;
    if (!r->locked) {
        set_state(r, JITR_ST_UNLOCK);
        return;
    }
    /* the resume point stays the failed step; a dead letter says so */
    persist_then(r, JITR_ST_UNLOCK, transient ? jitr_state_name(r->state) : ST_DEAD,
                 transient ? "retry" : "dead");
}

/* The index is being rebuilt (Redis lost it): neither a verdict nor a failed attempt. The
 * flow ends as BUSY (retried with backoff, never dead-lettered for it) and nothing is stored. */
static void wait_for_index(struct jitr_req *r)
{
    struct err e = ERR_INIT;
    err_set(&e, ERRC_UNAVAILABLE,
            "certificate %.16s...: the index is incomplete (being rebuilt); waiting for it",
            r->ev.cert_id);
    finish_with(r, JITR_OUT_BUSY, &e);
    set_state(r, JITR_ST_UNLOCK);
}

/* One of our CAs registered in AWS with that certificateId. */
static const struct jitr_ca *ca_registered(const struct jitr_env *env, const char *id)
{
    for (size_t i = 0; i < env->ncas; i++) {
        if (env->cas[i].registered && strcmp(env->cas[i].aws_id, id) == 0) {
            return &env->cas[i];
        }
    }
    return NULL;
}

static const struct jitr_ca *ca_by_name(const struct jitr_env *env, const char *name)
{
    for (size_t i = 0; i < env->ncas; i++) {
        if (strcmp(env->cas[i].name, name) == 0) {
            return &env->cas[i];
        }
    }
    return NULL;
}

static const char *field(const json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* What EVALUATE decided. */
enum verdict {
    V_GO,       /* provision (resume at r->resume when it is a provisioning step) */
    V_REJECT,   /* a fact about the certificate: REVOKED (or left pending, by config) */
    V_IGNORE,   /* not ours to touch: nothing is asked of AWS */
    V_DEAD,     /* our configuration or state: a dead letter with the reason */
    V_ACTIVE,   /* resumed at ACTIVATE: the earlier UpdateCertificate went through */
    V_REVOKED,  /* resumed at REJECT: the earlier REVOKED went through */
    V_ADOPT,    /* ACTIVE with no state of ours: ADOPT asks AWS whether our flow provisioned it */
};

static enum verdict verdict(struct jitr_req *r, enum verdict v, const char *fmt, ...)
    ATTR_PRINTF(3, 4);
static enum verdict verdict(struct jitr_req *r, enum verdict v, const char *fmt, ...)
{
    struct err e = ERR_INIT;
    va_list ap;
    va_start(ap, fmt);
    e.code = v == V_DEAD ? ERRC_CONFLICT : ERRC_DENIED;
    vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
    va_end(ap);
    err_copy(&r->err, &e);
    return v;
}

/* A fact about the certificate speaks against it: REVOKED only while AWS has it pending. */
static enum verdict fact(struct jitr_req *r, const char *fmt, ...) ATTR_PRINTF(2, 3);
static enum verdict fact(struct jitr_req *r, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (strcmp(r->aws_status, "PENDING_ACTIVATION") == 0 ||
        (r->registered && strcmp(r->aws_status, "INACTIVE") == 0)) {
        return verdict(r, V_REJECT, "%s", what);
    }
    return verdict(r, V_IGNORE, "%s; %s in AWS, not PENDING_ACTIVATION: left alone", what,
                   r->aws_status);
}

/* The stored reason of an earlier attempt (a resumed REJECT whose REVOKED went through). */
static enum verdict stored(struct jitr_req *r, enum verdict v, const char *fallback)
{
    return verdict(r, v, "%s", r->stored_reason[0] ? r->stored_reason : fallback);
}

/* LOAD found a provisioning state of an earlier attempt (CREATE_THING to ACTIVATE). */
static bool resumed_provisioning(const struct jitr_req *r)
{
    return r->resume >= JITR_ST_CREATE_THING && r->resume <= JITR_ST_ACTIVATE;
}

/* The decision, from AWS's record of the certificate (r->desc), the certificate, our index
 * (r->record) and our configuration, in that order (docs/jitr.md "The decision"). Builds r->cert
 * and, for V_GO, r->plan. */
static enum verdict evaluate(struct jitr_req *r)
{
    const struct jitr_env *env = r->env;
    const char *status = field(r->desc, "status");
    const char *aws_ca = field(r->desc, "caCertificateId");
    /* a certificate our register job registered INACTIVE waits for us like a pending one */
    bool ours = r->registered && strcmp(status, "INACTIVE") == 0;
    bool pending = strcmp(status, "PENDING_ACTIVATION") == 0 || ours;
    bool settled = !ours && (strcmp(status, "ACTIVE") == 0 || strcmp(status, "INACTIVE") == 0);
    enum jitr_override ovr = jitr_template_status_override(r->tpl);
    time_t now = (time_t)(now_ms(r) / 1000);
    const struct ca_profile *prof;
    const struct jitr_ca *ca, *idx_ca;
    unsigned char *der = NULL;
    int nder;
    char hex[65];
    struct buf idx_der = BUF_INIT;
    struct jitr_params params = { 0 };
    struct err e = ERR_INIT, left = ERR_INIT;
    enum verdict v, unless_adopted = V_GO;

    snprintf(r->aws_status, sizeof(r->aws_status), "%s", status[0] ? status : "?");
    /* 1. AWS's record: only a certificate AWS registered under one of our CAs is ours */
    ca = ca_registered(env, aws_ca);
    if (ca == NULL && aws_ca[0] == '\0' && r->registered) {
        /* registered without a CA (RegisterCertificateWithoutCA, an SNI_ONLY CA of ours): the
         * CA our register job named; its signature is checked below like any other */
        ca = ca_registered(env, r->ev.ca_id);
    }
    if (ca == NULL) {
        v = verdict(r, V_IGNORE, "AWS registered it %s%.16s%s, not under one of our CAs (the "
                    "event named %.16s...); %s in AWS: left alone", aws_ca[0] ? "under CA " : "",
                    aws_ca[0] ? aws_ca : "without a CA", aws_ca[0] ? "..." : "", r->ev.ca_id,
                    r->aws_status);
        goto out;
    }
    snprintf(r->ca_name, sizeof(r->ca_name), "%s", ca->name);
    if (r->resume == JITR_ST_REJECT && strcmp(status, "REVOKED") == 0) {
        v = stored(r, V_REVOKED, "REVOKED by an earlier attempt");
        goto out;
    }
    /* 2. the certificate AWS holds */
    {
        const char *pem = field(r->desc, "certificatePem");
        BIO *bio = BIO_new_mem_buf(pem, -1);
        r->cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        ERR_clear_error();
    }
    if (r->cert == NULL || (nder = i2d_X509(r->cert, &der)) <= 0) {
        v = verdict(r, V_DEAD, "AWS's certificatePem of %.16s... cannot be parsed",
                    r->ev.cert_id);
        goto out;
    }
    if (r->serial[0] == '\0') {
        (void)ca_serial_hex(X509_get0_serialNumber(r->cert), r->serial, sizeof(r->serial));
    }
    sha256_hex(der, (size_t)nder, hex);
    if (strcmp(hex, r->ev.cert_id) != 0) {
        v = fact(r, "its SHA-256 is %.16s..., not the certificateId", hex);
        goto out;
    }
    {
        EVP_PKEY *capub = X509_get0_pubkey(ca->cert);
        if (capub == NULL || X509_verify(r->cert, capub) != 1) {
            ERR_clear_error();
            v = fact(r, "not signed by CA '%s', under which AWS registered it", ca->name);
            goto out;
        }
    }
    if (ca->compromised) {
        v = fact(r, "CA '%s' is marked compromised", ca->name);
        goto out;
    }
    /* 3. its status in AWS: only PENDING_ACTIVATION is ours to decide, unless the template's
     * certificate OverrideSettings.Status says REPLACE, or an earlier attempt of ours was
     * provisioning it: that one may have activated it, and Redis lost the states it saved after
     * the one LOAD found (a failover to a replica that lacked the newest writes) */
    if (!pending && !(settled && (ovr == JITR_OVR_REPLACE || resumed_provisioning(r)))) {
        if (settled && ovr == JITR_OVR_FAIL) {
            v = verdict(r, V_DEAD, "%s in AWS and the template's certificate "
                        "OverrideSettings.Status is FAIL", status);
        } else {
            v = verdict(r, V_IGNORE, "%s in AWS, not PENDING_ACTIVATION: left alone",
                        r->aws_status);
        }
        if (strcmp(status, "ACTIVE") != 0 || r->resume != JITR_ST_RECEIVED) {
            goto out;
        }
        /* ACTIVE with no provisioning step of ours known: a flow of ours may have provisioned
         * it within writes Redis lost (a failover) and left nothing. The rest of the decision
         * runs, then ADOPT asks AWS whether this flow's steps all ran; any other outcome keeps
         * this verdict (an operator's activation is left alone) */
        unless_adopted = v;
        err_copy(&left, &r->err);
    }
    /* 4. our index */
    if (r->record == NULL) {
        v = verdict(r, V_DEAD, "signed by CA '%s' but not in our index: run jitrctl reindex, "
                    "then jitrctl jitr dlq retry", ca->name);
        goto out;
    }
    {
        const char *b64 = field(r->record, "der");
        if (base64_decode(&idx_der, b64, strlen(b64)) != 0 || idx_der.len != (size_t)nder ||
            memcmp(idx_der.data, der, idx_der.len) != 0) {
            v = verdict(r, V_DEAD, "our index holds another certificate for serial %s: run "
                        "jitrctl reindex, then jitrctl jitr dlq retry", r->serial);
            goto out;
        }
    }
    idx_ca = ca_by_name(env, field(r->record, "ca"));
    if (idx_ca != NULL && idx_ca != ca && idx_ca->compromised) {
        v = fact(r, "CA '%s' is marked compromised", idx_ca->name);
        goto out;
    }
    if (strcmp(field(r->record, "status"), "revoked") == 0 &&
        strcmp(field(r->record, "reason"), "certificateHold") == 0) {
        /* a hold is not final: not a fact that revokes it in AWS */
        v = verdict(r, V_DEAD, "certificate serial %s is on hold: jitrctl release, then "
                    "jitrctl jitr dlq retry", r->serial);
        goto out;
    }
    if (strcmp(field(r->record, "status"), "revoked") == 0) {
        v = fact(r, "certificate serial %s is revoked", r->serial);
        goto out;
    }
    if (strcmp(field(r->record, "status"), "valid") != 0) {
        v = verdict(r, V_DEAD, "certificate serial %s has status '%.32s' in our index",
                    r->serial, field(r->record, "status"));
        goto out;
    }
    if (X509_cmp_time(X509_get0_notAfter(r->cert), &now) < 0) {
        v = fact(r, "certificate serial %s has expired", r->serial);
        goto out;
    }
    if (X509_cmp_time(X509_get0_notBefore(r->cert), &now) > 0) {
        v = verdict(r, V_DEAD, "certificate serial %s is not valid yet: jitrctl jitr dlq retry "
                    "once it is", r->serial);
        goto out;
    }
    /* 5. our configuration (a retired CA stops signing; its certificates still provision) */
    prof = env->profiles ? ca_profiles_find(env->profiles, field(r->record, "profile")) : NULL;
    if (prof == NULL) {
        v = verdict(r, V_DEAD, "profile '%.64s' of serial %s is unknown", field(r->record,
                    "profile"), r->serial);
        goto out;
    }
    if (!ca_profile_allows_jitr(prof)) {
        v = verdict(r, V_DEAD, "profile '%.64s' does not allow JITR (serial %s)",
                    field(r->record, "profile"), r->serial);
        goto out;
    }
    jitr_params_from_cert(r->cert, r->ev.cert_id, &params);
    if (jitr_template_eval(r->tpl, &params, &r->plan, &e) != 0) {
        v = verdict(r, V_DEAD, "%s", e.msg);
        goto out;
    }
    r->planned = true;
    snprintf(r->cert_arn, sizeof(r->cert_arn), "arn:%s:iot:%s:%s:cert/%s",
             aws_partition_of_region(env->region), env->region, r->ev.account, r->ev.cert_id);
    snprintf(r->thing, sizeof(r->thing), "%s", r->plan.thing_name);
    buf_reset(&r->policies);
    for (size_t i = 0; i < jitr_template_npolicies(r->tpl); i++) {
        buf_addf(&r->policies, "%s%s", i ? "," : "", jitr_template_policy(r->tpl, i)->name);
    }
    /* 6. a certificate AWS has ACTIVE or INACTIVE already */
    v = V_GO;
    if (settled) {
        const char *want = r->plan.activate ? "ACTIVE" : "INACTIVE";
        if (strcmp(status, want) == 0) {
            r->status_set = true;
            if (r->resume == JITR_ST_ACTIVATE) {
                v = V_ACTIVE;
            } else if (unless_adopted != V_GO) {
                v = V_ADOPT;
            }
        } else if (ovr != JITR_OVR_REPLACE) {
            v = verdict(r, V_IGNORE, "%s in AWS, not %s as the template says, since the last "
                        "attempt: left alone", status, want);
        }
    }
out:
    if (unless_adopted != V_GO && v != V_ADOPT) {
        v = unless_adopted;
        err_copy(&r->err, &left);
    } else if (v == V_ADOPT) {
        err_clear(&r->err); /* ADOPT gives the reason if it leaves it alone */
    }
    OPENSSL_free(der);
    buf_release(&idx_der);
    jitr_params_release(&params);
    return v;
}

/* The steps after ATTACH_PRINCIPAL: an existing thing's groups follow the template's
 * OverrideSettings.ThingGroups (DO_NOTHING: untouched; MERGE: added to the template's; REPLACE:
 * removed from the others first); a new thing joins the template's groups; every thing joins
 * jitr.thing_group. */
static bool template_groups(const struct jitr_req *r)
{
    return !r->existed || r->plan.groups_override == JITR_OVR_MERGE ||
           r->plan.groups_override == JITR_OVR_REPLACE;
}

static size_t total_groups(const struct jitr_req *r)
{
    return (template_groups(r) ? r->plan.ngroups : 0) +
           ((r->env->thing_group && r->env->thing_group[0]) ? 1 : 0);
}

static const char *group_at(const struct jitr_req *r, size_t i)
{
    size_t n = template_groups(r) ? r->plan.ngroups : 0;
    return i < n ? r->plan.groups[i] : r->env->thing_group;
}

static bool group_wanted(const struct jitr_req *r, const char *g)
{
    for (size_t i = 0; i < total_groups(r); i++) {
        if (strcmp(group_at(r, i), g) == 0) {
            return true;
        }
    }
    return false;
}

static enum jitr_state after_principal(const struct jitr_req *r)
{
    if (r->existed && r->plan.groups_override == JITR_OVR_REPLACE) {
        return JITR_ST_LIST_GROUPS;
    }
    return total_groups(r) > 0 ? JITR_ST_ADD_TO_GROUP : JITR_ST_ACTIVATE;
}

/* An existing thing with another configuration: does the template ask for an UpdateThing? */
static bool update_wanted(const struct jitr_req *r)
{
    return r->plan.thing_override == JITR_OVR_MERGE ||
           r->plan.thing_override == JITR_OVR_REPLACE ||
           (r->plan.type_override == JITR_OVR_REPLACE && r->plan.thing_type != NULL);
}

/* Starts the audit append of the record of type (on a replay, looking for an earlier
 * attempt's record first); on a synchronous failure the result is that error, now. */
static void start_audit(struct jitr_req *r, const char *type, const char *reason)
{
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", type, "certificate_id",
                            r->ev.cert_id, "ca_certificate_id", r->ev.ca_id, "serial", r->serial,
                            "ca", r->ca_name, "account", r->ev.account);
    struct err e = ERR_INIT;
    if (rec != NULL && r->thing[0] != '\0') {
        json_t *pols = json_array();
        const char *p = buf_cstr(&r->policies);
        while (*p) {
            const char *c = strchr(p, ',');
            size_t n = c ? (size_t)(c - p) : strlen(p);
            json_array_append_new(pols, json_stringn(p, n));
            p += n + (c ? 1 : 0);
        }
        json_object_set_new(rec, "thing", json_string(r->thing));
        json_object_set_new(rec, "policies", pols);
    }
    if (rec != NULL && r->aws_status[0] != '\0') {
        json_object_set_new(rec, "aws_status", json_string(r->aws_status));
    }
    if (rec != NULL && reason != NULL) {
        json_object_set_new(rec, "reason", json_string(reason));
    }
    if (rec != NULL && r->adopted) {
        json_object_set_new(rec, "adopted", json_true());
    }
    if (rec == NULL || r->io->audit(r->io->ctx, rec, r->audit_check, r->audit_after, on_audit,
                                    r, &e) != 0) {
        if (rec == NULL) {
            err_set(&e, ERRC_INTERNAL, "cannot build the %s audit record", type);
        }
        err_copy(&r->op_err, &e);
        r->have_result = true;
    } else {
        r->in_flight = true;
    }
    json_decref(rec);
}

/* Before a RECORD state: a seq at or below the log's end, saved with the state, so that a
 * replay finds this attempt's record instead of appending a second one. */
static void persist_audit_mark(struct jitr_req *r, enum jitr_state next, const char *detail)
{
    r->audit_after = r->io->audit_mark ? r->io->audit_mark(r->io->ctx) : 0;
    r->audit_after_set = true;
    r->audit_check = false;
    persist_then(r, next, jitr_state_name(next), detail);
}

/* LOAD found a RECORD state: everything its audit record needs was saved with it. */
static void restore(struct jitr_req *r, const json_t *h)
{
    snprintf(r->serial, sizeof(r->serial), "%s", field(h, "serial"));
    snprintf(r->ca_name, sizeof(r->ca_name), "%s", field(h, "ca"));
    snprintf(r->thing, sizeof(r->thing), "%s", field(h, "thing"));
    snprintf(r->aws_status, sizeof(r->aws_status), "%s", field(h, "aws_status"));
    r->adopted = strcmp(field(h, "adopted"), "1") == 0;
    buf_reset(&r->policies);
    buf_addstr(&r->policies, field(h, "policies"));
}

/* ---- the machine ---------------------------------------------------------------------------- */

static void on_evaluated(struct jitr_req *r, enum verdict v)
{
    switch (v) {
    case V_GO:
        /* the policies first: POLICY then CreateThing with the attachments alongside; resumed
         * after ATTACH_POLICY (the join), the stored step */
        if (r->resume >= JITR_ST_ATTACH_PRINCIPAL && r->resume <= JITR_ST_ACTIVATE) {
            set_state(r, r->resume);
        } else {
            set_state(r, JITR_ST_POLICY);
        }
        return;
    case V_REJECT:
        set_state(r, JITR_ST_REJECT);
        return;
    case V_IGNORE:
        log_info("cert=%.16s left alone: %s", r->ev.cert_id, r->err.msg);
        persist_audit_mark(r, JITR_ST_RECORD_IGNORE, "left alone");
        return;
    case V_DEAD:
        finish_with(r, JITR_OUT_DEAD, &r->err);
        r->attempts++;
        persist_then(r, JITR_ST_UNLOCK, ST_DEAD, "dead");
        return;
    case V_ACTIVE:
        if (r->plan.activate && field(r->record, "renews")[0] != '\0') {
            set_state(r, JITR_ST_ACTIVATE); /* a renewal: its predecessor's retirement first */
            return;
        }
        persist_audit_mark(r, JITR_ST_RECORD, r->plan.activate ? "ACTIVE already" :
                                                                 "INACTIVE already");
        return;
    case V_REVOKED:
        persist_audit_mark(r, JITR_ST_RECORD_REJECT, "REVOKED already");
        return;
    case V_ADOPT:
        set_state(r, JITR_ST_ADOPT);
        return;
    }
}

/* A RECORD state's audit record is durable: the final state. */
static void recorded(struct jitr_req *r, enum jitr_outcome o, const char *final)
{
    finish_with(r, o, NULL);
    persist_then(r, JITR_ST_UNLOCK, final, r->audit_found ? "audited already" : "audited");
}

/* Whether the lock's holder is a JITR flow of another stream entry (a job of another kind, say
 * a revocation, or a flow of this very entry left by a crash, is waited for instead). */
static bool lock_covers(const char *holder, const char *entry)
{
    size_t n = strlen(JITR_LOCK_TAG), m = strlen(entry);
    if (entry[0] == '\0' || strncmp(holder, JITR_LOCK_TAG, n) != 0) {
        return false;
    }
    holder += n;
    return !(strncmp(holder, entry, m) == 0 && holder[m] == ' ');
}

static void st_received(struct jitr_req *r)
{
    set_state(r, JITR_ST_LOCK);
}

static void st_lock(struct jitr_req *r)
{
    char key[160];
    struct held_reply *h = held(r);
    if (!r->have_result) {
        char px[24];
        key_of(key, sizeof(key), "jitr:lock", r->ev.cert_id);
        snprintf(px, sizeof(px), "%d", r->env->lock_ms > 0 ? r->env->lock_ms : 60000);
        const char *av[] = { "EVAL", lock_lua, "1", key, r->lock_token, px };
        r->lock_sent_ms = now_ms(r);
        start_redis(r, 6, av);
        return;
    }
    if (r->op_err.code != ERRC_OK) {
        fail_op(r, "lock");
        return;
    }
    if (h->type != STORE_REPLY_INTEGER || h->integer != 1) {
        struct err e = ERR_INIT;
        if (h->type == STORE_REPLY_STRING && lock_covers(h->str, r->entry)) {
            /* another event of this certificate is being provisioned: its stream entry stays
             * pending until its flow ends (and is claimed again if its worker dies), so this
             * one carries nothing more and is acknowledged at once */
            finish_with(r, JITR_OUT_DUPLICATE, NULL);
            set_state(r, JITR_ST_UNLOCK);
            return;
        }
        err_set(&e, ERRC_CONFLICT, "certificate %.16s... is busy in another job", r->ev.cert_id);
        finish_with(r, JITR_OUT_BUSY, &e);
        set_state(r, JITR_ST_UNLOCK);
        return;
    }
    r->locked = true;
    if (r->io->lease_hold != NULL) {
        key_of(key, sizeof(key), "jitr:lock", r->ev.cert_id);
        r->lease = r->io->lease_hold(r->io->ctx, key, r->lock_token, r->lock_sent_ms);
    }
    set_state(r, JITR_ST_LOAD);
}

static void st_load(struct jitr_req *r)
{
    char key[160];
    struct held_reply *h = held(r);
    if (!r->have_result) {
        key_of(key, sizeof(key), "jitr:dev", r->ev.cert_id);
        const char *av[] = { "HGETALL", key };
        start_redis(r, 2, av);
        return;
    }
    if (r->op_err.code != ERRC_OK) {
        fail_op(r, "load state");
        return;
    }
    {
        const char *st = field(h->fields, "state");
        int sti = jitr_state_parse(st);
        uint64_t u = 0;
        if (str_to_u64(field(h->fields, "first_ms"), &u) == 0 && u > 0) {
            r->first_ms = (int64_t)u;
        }
        if (str_to_u64(field(h->fields, "attempts"), &u) == 0) {
            r->attempts = (unsigned)u;
        }
        if (strcmp(st, ST_DONE) == 0 || strcmp(st, ST_REJECTED) == 0 ||
            strcmp(st, ST_IGNORED) == 0) {
            finish_with(r, JITR_OUT_DUPLICATE, NULL);
            set_state(r, JITR_ST_UNLOCK);
            return;
        }
        if (strcmp(field(h->fields, "tpl"), r->tpl_sha) != 0) {
            /* a register job provisions it with another template (jitrctl aws register-batch
             * --template): never with this one, which would give it another thing and other
             * policies; its record is left as it is */
            struct err te = ERR_INIT;
            const char *want = field(h->fields, "tpl");
            err_set(&te, ERRC_CONFLICT,
                    "certificate %.16s... is provisioned with %s%.64s, this flow carries %s%.64s: "
                    "left to its register job (jitrctl aws register-batch%s)",
                    r->ev.cert_id, want[0] ? "template " : "jitrd's template", want,
                    r->tpl_sha[0] ? "template " : "jitrd's template", r->tpl_sha,
                    want[0] ? " --template with that template" : " without --template");
            finish_with(r, JITR_OUT_DEAD, &te);
            set_state(r, JITR_ST_UNLOCK);
            return;
        }
        snprintf(r->stored_reason, sizeof(r->stored_reason), "%s",
                 field(h->fields, "reason"));
        r->existed = strcmp(field(h->fields, "existed"), "1") == 0;
        r->registered = strcmp(field(h->fields, "registered"), "1") == 0;
        r->reg_inactive = r->registered && strcmp(field(h->fields, "status"), "INACTIVE") == 0;
        r->resume = JITR_ST_RECEIVED;
        if (sti == JITR_ST_RECORD || sti == JITR_ST_RECORD_REJECT ||
            sti == JITR_ST_RECORD_IGNORE) {
            /* the AWS step is done (or there was none): only the audit record is
             * missing, and perhaps not even that (a crash after the append) */
            if (str_to_u64(field(h->fields, "audit_after"), &u) == 0) {
                r->audit_after = u;
                r->audit_after_set = true;
                r->audit_check = true;
            }
            restore(r, h->fields);
            if (sti != JITR_ST_RECORD) {
                verdict(r, V_REJECT, "%s", r->stored_reason);
            }
            set_state(r, (enum jitr_state)sti);
            return;
        }
        if (sti >= JITR_ST_CREATE_THING && sti <= JITR_ST_REJECT) {
            r->resume = (enum jitr_state)sti;
        }
    }
    set_state(r, JITR_ST_LOOKUP);
}

static void st_lookup(struct jitr_req *r)
{
    char key[160];
    struct held_reply *h = held(r);
    /* both reads fail while the index is incomplete (store.h): no verdict then */
    if (!r->have_result && r->serial[0] == '\0') {
        store_key_fp(key, sizeof(key), r->ev.cert_id);
        const char *av[] = { "EVAL", store_index_get_lua, "2", STORE_INDEX_READY, key };
        start_redis(r, 5, av);
        return;
    }
    if (r->op_err.code != ERRC_OK && store_err_index_incomplete(&r->op_err)) {
        wait_for_index(r);
        return;
    }
    if (r->op_err.code != ERRC_OK) {
        fail_op(r, "index lookup");
        return;
    }
    if (r->serial[0] == '\0') {
        if (h->type != STORE_REPLY_STRING || h->str == NULL || h->str[0] == '\0' ||
            strlen(h->str) >= sizeof(r->serial)) {
            set_state(r, JITR_ST_DESCRIBE); /* not in our index */
            return;
        }
        snprintf(r->serial, sizeof(r->serial), "%s", h->str);
        r->have_result = false;
        store_key_cert(key, sizeof(key), r->serial);
        const char *av[] = { "EVAL", store_index_hgetall_lua, "2", STORE_INDEX_READY, key };
        start_redis(r, 5, av);
        return;
    }
    if (h->fields == NULL || json_object_size(h->fields) == 0) {
        r->serial[0] = '\0';
    } else {
        r->record = json_incref(h->fields);
    }
    set_state(r, JITR_ST_DESCRIBE);
}

static void st_describe(struct jitr_req *r)
{
    struct held_reply *h = held(r);
    /* AWS's own record, on every run that may change the certificate's status: the
     * event's fields are claims */
    if (!r->have_result) {
        start_aws(r, AWS_IOT_DESCRIBE_CERTIFICATE,
                  json_pack("{s:s}", "certificateId", r->ev.cert_id));
        return;
    }
    if (r->op_err.code != ERRC_OK) {
        fail_op(r, "DescribeCertificate");
        return;
    }
    r->desc = json_incref(json_object_get(h->fields, "certificateDescription"));
    if (!json_is_object(r->desc) ||
        strcmp(field(r->desc, "certificateId"), r->ev.cert_id) != 0) {
        err_set(&r->op_err, ERRC_UNAVAILABLE, "AWS IoT DescribeCertificate: no "
                "description of certificate %.16s...", r->ev.cert_id);
        fail_op(r, "DescribeCertificate");
        return;
    }
    set_state(r, JITR_ST_EVALUATE);
}

static void st_evaluate(struct jitr_req *r)
{
    enum verdict v = evaluate(r);
    if (v == V_GO && r->reg_inactive) {
        /* jitrctl aws register-batch --status INACTIVE: provisioned, not allowed to connect
         * yet; AWS has it INACTIVE as the register job left it */
        r->plan.activate = false;
        r->status_set = strcmp(r->aws_status, "INACTIVE") == 0;
    }
    on_evaluated(r, v);
}

/* ---- the side chain: AttachPolicy alongside CreateThing ------------------------------------ */

static void on_side(void *arg, const struct aws_iot_result *res, const struct err *e);

/* Starts the side chain's next AttachPolicy, if any is left and the flow has not failed; a
 * call that cannot start ends the chain with that error. */
static void side_call(struct jitr_req *r)
{
    struct err e = ERR_INIT;
    json_t *in;
    if (r->side_stop || r->side_err.code != ERRC_OK ||
        r->side_idx >= jitr_template_npolicies(r->tpl)) {
        return;
    }
    if (!lock_held(r, AWS_IOT_ATTACH_POLICY, &e)) {
        err_copy(&r->side_err, &e);
        return;
    }
    in = json_pack("{s:s, s:s}", "policyName", jitr_template_policy(r->tpl, r->side_idx)->name,
                   "target", r->cert_arn);
    r->aws_calls++;
    if (r->io->aws(r->io->ctx, AWS_IOT_ATTACH_POLICY, in, on_side, r, &e) != 0) {
        err_copy(&r->side_err, &e);
    } else {
        r->side_running = true;
    }
    json_decref(in);
}

static void side_start(struct jitr_req *r)
{
    r->side_started = true;
    r->side_idx = 0;
    err_clear(&r->side_err);
    side_call(r);
}

static void on_side(void *arg, const struct aws_iot_result *res, const struct err *e)
{
    struct jitr_req *r = arg;
    (void)res;
    r->side_running = false;
    if (e != NULL) {
        err_copy(&r->side_err, e);
    } else {
        r->side_idx++;
        side_call(r);
    }
    if (!r->side_running && r->side_waited) {
        r->side_waited = false;
        r->in_flight = false;
        jitr_advance(r);
    }
}

/* true while the side chain runs: the machine waits (the state runs again once it ended) */
static bool side_wait(struct jitr_req *r)
{
    if (!r->side_running) {
        return false;
    }
    r->side_waited = true;
    r->in_flight = true;
    return true;
}

/* ADOPT, one page: whether the template's thing holds the certificate (step 0), then which of the
 * template's policies are attached to it (step 1). true when a next page was started. */
static bool adopt_page(struct jitr_req *r, const json_t *out)
{
    const char *next = field(out, r->adopt_step == 0 ? "nextToken" : "nextMarker");
    json_t *v;
    size_t i;
    if (r->adopt_step == 0) {
        json_array_foreach(json_object_get(out, "things"), i, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), r->plan.thing_name) == 0) {
                next = ""; /* found: the policies next */
                r->adopt_step = 1;
            }
        }
    } else {
        json_array_foreach(json_object_get(out, "policies"), i, v)
        {
            const char *name = field(v, "policyName");
            for (size_t k = json_array_size(r->adopt_missing); k > 0; k--) {
                if (strcmp(json_string_value(json_array_get(r->adopt_missing, k - 1)), name) ==
                    0) {
                    json_array_remove(r->adopt_missing, k - 1);
                }
            }
        }
        if (json_array_size(r->adopt_missing) == 0) {
            next = "";
            r->adopt_step = 2;
        }
    }
    buf_reset(&r->adopt_next);
    buf_addstr(&r->adopt_next, next);
    return next[0] != '\0';
}

/* ACTIVE in AWS with no provisioning step of ours known (EVALUATE's V_ADOPT): ours only when
 * AWS's facts show that a flow of ours provisioned it, its states lost since (a failover to a
 * replica that lacked the newest writes): the template's thing holds the certificate and every
 * template policy is attached to it, which our steps do before the activation. Then the
 * activation is recorded, marked adopted, and nothing is asked of AWS; else it is left alone. */
static void st_adopt(struct jitr_req *r)
{
    struct held_reply *h = held(r);
    static const char *const what[] = { "ListPrincipalThings", "ListAttachedPolicies" };
    if (r->have_result && r->op_err.code != ERRC_OK) {
        fail_op(r, what[r->adopt_step]);
        return;
    }
    if (!r->have_result && r->adopt_step == 0 && r->adopt_next.len == 0) {
        json_decref(r->adopt_missing);
        r->adopt_missing = json_array();
        for (size_t i = 0; i < jitr_template_npolicies(r->tpl); i++) {
            json_array_append_new(r->adopt_missing,
                                  json_string(jitr_template_policy(r->tpl, i)->name));
        }
    } else if (r->have_result) {
        int step = r->adopt_step;
        bool more = adopt_page(r, h->fields);
        if (!more && step == r->adopt_step) {
            /* the last page, and the thing or a policy was not found */
            verdict(r, V_IGNORE, "ACTIVE in AWS, not PENDING_ACTIVATION: left alone (no state "
                    "of ours, and %s '%.128s')", step == 0 ? "not attached to the template's "
                    "thing" : "without the template's policy", step == 0 ? r->plan.thing_name :
                    json_string_value(json_array_get(r->adopt_missing, 0)));
            log_info("cert=%.16s left alone: %s", r->ev.cert_id, r->err.msg);
            persist_audit_mark(r, JITR_ST_RECORD_IGNORE, "left alone");
            return;
        }
        if (r->adopt_step == 2) {
            r->adopted = true;
            log_info("cert=%.16s ACTIVE in AWS on thing '%s' with the template's policies, no "
                     "state of ours (lost): adopted", r->ev.cert_id, r->plan.thing_name);
            on_evaluated(r, V_ACTIVE);
            return;
        }
    }
    r->have_result = false;
    if (r->adopt_step == 0) {
        json_t *in = json_pack("{s:s}", "principal", r->cert_arn);
        if (r->adopt_next.len) {
            json_object_set_new(in, "nextToken", json_string(buf_cstr(&r->adopt_next)));
        }
        start_aws(r, AWS_IOT_LIST_PRINCIPAL_THINGS, in);
    } else {
        json_t *in = json_pack("{s:s}", "target", r->cert_arn);
        if (r->adopt_next.len) {
            json_object_set_new(in, "marker", json_string(buf_cstr(&r->adopt_next)));
        }
        start_aws(r, AWS_IOT_LIST_ATTACHED_POLICIES, in);
    }
}

static void st_create_thing(struct jitr_req *r)
{
    if (!r->have_result) {
        json_t *in = json_pack("{s:s}", "thingName", r->plan.thing_name);
        if (r->plan.thing_type) {
            json_object_set_new(in, "thingTypeName", json_string(r->plan.thing_type));
        }
        if (r->plan.billing_group) {
            json_object_set_new(in, "billingGroupName",
                                json_string(r->plan.billing_group));
        }
        if (r->plan.attributes) {
            json_object_set_new(in, "attributePayload",
                                json_pack("{s:O}", "attributes", r->plan.attributes));
        }
        start_aws(r, AWS_IOT_CREATE_THING, in);
        if (r->in_flight && !r->side_started) {
            side_start(r); /* the certificate's policies do not need the thing */
        }
        return;
    }
    r->existed = r->op_err.code != ERRC_OK &&
                 strcmp(r->aws_code, "ResourceAlreadyExistsException") == 0;
    if (r->existed &&
        (r->env->thing_conflict_fail || r->plan.thing_override == JITR_OVR_FAIL ||
         r->plan.type_override == JITR_OVR_FAIL ||
         r->plan.groups_override == JITR_OVR_FAIL)) {
        /* the template (or jitr.thing_conflict) says an existing thing is an error */
        fail_op(r, "CreateThing (OverrideSettings FAIL or jitr.thing_conflict fail)");
        return;
    }
    if (r->existed) {
        /* the thing exists with another configuration: the template's OverrideSettings
         * say whether to update it (MERGE, REPLACE) or keep it (DO_NOTHING) */
        err_clear(&r->op_err);
        if (update_wanted(r)) {
            set_state(r, JITR_ST_UPDATE_THING);
            return;
        }
        log_info("cert=%.16s thing '%s' exists with other attributes: kept",
                 r->ev.cert_id, r->plan.thing_name);
    } else if (r->op_err.code != ERRC_OK) {
        fail_op(r, "CreateThing");
        return;
    }
    set_state(r, JITR_ST_ATTACH_POLICY);
}

static void st_update_thing(struct jitr_req *r)
{
    if (!r->have_result) {
        json_t *in = json_pack("{s:s}", "thingName", r->plan.thing_name);
        if (r->plan.thing_override == JITR_OVR_MERGE ||
            r->plan.thing_override == JITR_OVR_REPLACE) {
            /* REPLACE without AttributePayload: the thing keeps no attribute */
            json_object_set_new(
                in, "attributePayload",
                json_pack("{s:o, s:b}", "attributes",
                          r->plan.attributes ? json_copy(r->plan.attributes)
                                             : json_object(),
                          "merge", r->plan.thing_override == JITR_OVR_MERGE));
        }
        if (r->plan.type_override == JITR_OVR_REPLACE && r->plan.thing_type) {
            json_object_set_new(in, "thingTypeName", json_string(r->plan.thing_type));
        }
        start_aws(r, AWS_IOT_UPDATE_THING, in);
        return;
    }
    if (r->op_err.code != ERRC_OK) {
        fail_op(r, "UpdateThing");
        return;
    }
    log_info("cert=%.16s thing '%s' existed: %s", r->ev.cert_id, r->plan.thing_name,
             r->plan.thing_override == JITR_OVR_MERGE     ? "attributes merged"
             : r->plan.thing_override == JITR_OVR_REPLACE ? "attributes replaced"
                                                          : "thing type replaced");
    set_state(r, JITR_ST_ATTACH_POLICY);
}

/* The states that make one operation per item (idx = 0 .. n-1, a policy, a group): where the
 * state is with its items. On ITEMS_DONE idx is back to 0; on ITEM_FAILED fail_op has run. */
enum item_step { ITEM_START, ITEM_NEXT, ITEM_FAILED, ITEMS_DONE };

static enum item_step item_step(struct jitr_req *r, size_t n, const char *what)
{
    if (r->idx >= n) {
        r->idx = 0;
        return ITEMS_DONE;
    }
    if (!r->have_result) {
        return ITEM_START;
    }
    if (r->op_err.code != ERRC_OK) {
        r->idx = 0;
        fail_op(r, what);
        return ITEM_FAILED;
    }
    r->idx++;
    r->have_result = false;
    return ITEM_NEXT;
}

static void st_policy(struct jitr_req *r)
{
    struct err e = ERR_INIT;
    switch (item_step(r, jitr_template_npolicies(r->tpl), "policy")) {
    case ITEMS_DONE:
        /* CreateThing next (and the attachments alongside), or the step a retry resumes */
        set_state(r, r->resume == JITR_ST_UPDATE_THING || r->resume == JITR_ST_ATTACH_POLICY
                         ? r->resume
                         : JITR_ST_CREATE_THING);
        return;
    case ITEM_START:
        if (r->io->policy_ready(r->io->ctx, r->tpl, r->idx, on_done, r, &e) != 0) {
            err_copy(&r->op_err, &e);
            r->have_result = true;
        } else {
            r->in_flight = true;
        }
        return;
    case ITEM_NEXT:
    case ITEM_FAILED:
        return;
    }
}

/* The join: the thing is there (CreateThing, UpdateThing done); waits for the side chain's
 * AttachPolicy calls (started here when a retry resumed at this step), then saves both as done:
 * the resume point ATTACH_PRINCIPAL. A crash before this save redoes both (idempotent). */
static void st_attach_policy(struct jitr_req *r)
{
    if (!r->side_started) {
        side_start(r);
    }
    if (side_wait(r)) {
        return;
    }
    if (r->side_err.code != ERRC_OK) {
        err_copy(&r->op_err, &r->side_err);
        fail_op(r, "AttachPolicy");
        return;
    }
    persist_then(r, JITR_ST_ATTACH_PRINCIPAL, "ATTACH_PRINCIPAL", r->existed ? "existed" : "");
}

static void st_attach_principal(struct jitr_req *r)
{
    if (!r->have_result) {
        json_t *in = json_pack("{s:s, s:s}", "thingName", r->plan.thing_name,
                               "principal", r->cert_arn);
        if (r->env->exclusive_thing) {
            json_object_set_new(in, "thingPrincipalType", json_string("EXCLUSIVE_THING"));
        }
        start_aws(r, AWS_IOT_ATTACH_THING_PRINCIPAL, in);
        return;
    }
    if (r->op_err.code != ERRC_OK) {
        fail_op(r, "AttachThingPrincipal");
        return;
    }
    persist_then(r, after_principal(r), jitr_state_name(after_principal(r)), "");
}

static void st_list_groups(struct jitr_req *r)
{
    struct held_reply *h = held(r);
    if (!r->have_result) {
        start_aws(r, AWS_IOT_LIST_THING_GROUPS_FOR_THING,
                  json_pack("{s:s, s:i}", "thingName", r->plan.thing_name, "maxResults",
                            250));
        return;
    }
    if (r->op_err.code != ERRC_OK) {
        fail_op(r, "ListThingGroupsForThing");
        return;
    }
    {
        size_t i;
        json_t *g;
        json_decref(r->remove);
        r->remove = json_array();
        json_array_foreach (json_object_get(h->fields, "thingGroups"), i, g) {
            const char *name = field(g, "groupName");
            if (name[0] && !group_wanted(r, name)) {
                json_array_append_new(r->remove, json_string(name));
            }
        }
    }
    r->idx = 0;
    set_state(r, JITR_ST_REMOVE_FROM_GROUP);
}

static void st_remove_from_group(struct jitr_req *r)
{
    if (r->remove == NULL) { /* resumed here: list again */
        set_state(r, JITR_ST_LIST_GROUPS);
        return;
    }
    switch (item_step(r, json_array_size(r->remove), "RemoveThingFromThingGroup")) {
    case ITEMS_DONE:
        persist_then(r, total_groups(r) > 0 ? JITR_ST_ADD_TO_GROUP : JITR_ST_ACTIVATE,
                     total_groups(r) > 0 ? "ADD_TO_GROUP" : "ACTIVATE", "");
        return;
    case ITEM_START:
        start_aws(r, AWS_IOT_REMOVE_THING_FROM_THING_GROUP,
                  json_pack("{s:s, s:s}", "thingGroupName",
                            json_string_value(json_array_get(r->remove, r->idx)), "thingName",
                            r->plan.thing_name));
        return;
    case ITEM_NEXT:
    case ITEM_FAILED:
        return;
    }
}

static void st_add_to_group(struct jitr_req *r)
{
    switch (item_step(r, total_groups(r), "AddThingToThingGroup")) {
    case ITEMS_DONE:
        persist_then(r, JITR_ST_ACTIVATE, "ACTIVATE", "");
        return;
    case ITEM_START:
        start_aws(r, AWS_IOT_ADD_THING_TO_THING_GROUP,
                  json_pack("{s:s, s:s}", "thingGroupName", group_at(r, r->idx), "thingName",
                            r->plan.thing_name));
        return;
    case ITEM_NEXT:
    case ITEM_FAILED:
        return;
    }
}

/* A renewal (its index record renews another certificate: EST re-enrollment, /v1/sign with
 * renews) is ACTIVE now: the retirement of the certificate it renews is queued (jobs/renewal.h,
 * due renewal_grace from now) before the activation is recorded, so a crash in between queues it
 * again on the replay (the job is idempotent). true while the queueing is in progress: the state
 * runs again with its result. */
static bool renewal_queue(struct jitr_req *r)
{
    const char *renews = field(r->record, "renews");
    if (!r->plan.activate || renews[0] == '\0' || r->renewal == 2) {
        return false;
    }
    if (r->renewal == 0) {
        struct jobs_renewal_new jn;
        struct jobs_argv a;
        jobs_renewal_job(&jn, r->ev.cert_id, r->serial, renews, r->thing, now_ms(r),
                         r->env->renewal_grace_s);
        r->renewal = 1;
        r->have_result = false;
        if (jobs_enqueue_argv(&jn.v, 1, now_ms(r), &a, &r->op_err) != 0) {
            r->have_result = true;
            return true;
        }
        start_redis(r, (int)a.argc, (const char *const *)a.argv);
        jobs_argv_release(&a);
        return true;
    }
    if (r->op_err.code != ERRC_OK) {
        r->renewal = 0;
        fail_op(r, "queueing the renewed certificate's retirement");
        return true;
    }
    r->renewal = 2;
    r->have_result = false;
    return false;
}

static void st_activate(struct jitr_req *r)
{
    if (r->renewal == 1 || (r->status_set && r->plan.activate)) {
        if (renewal_queue(r)) {
            return;
        }
    }
    if (r->status_set) { /* AWS has the template's status already */
        persist_audit_mark(r, JITR_ST_RECORD, r->plan.activate ? "ACTIVE already"
                                                               : "INACTIVE already");
        return;
    }
    if (r->renewal == 2) { /* activated, then the retirement queued */
        persist_audit_mark(r, JITR_ST_RECORD, r->aws_status);
        return;
    }
    if (!r->have_result) {
        start_aws(r, AWS_IOT_UPDATE_CERTIFICATE,
                  json_pack("{s:s, s:s}", "certificateId", r->ev.cert_id, "newStatus",
                            r->plan.activate ? "ACTIVE" : "INACTIVE"));
        return;
    }
    if (r->op_err.code != ERRC_OK) {
        fail_op(r, "UpdateCertificate");
        return;
    }
    snprintf(r->aws_status, sizeof(r->aws_status), "%s",
             r->plan.activate ? "ACTIVE" : "INACTIVE");
    if (renewal_queue(r)) {
        return;
    }
    persist_audit_mark(r, JITR_ST_RECORD, r->aws_status);
}

static void st_record(struct jitr_req *r)
{
    /* the audit record is durable before DONE is saved; a crash in between replays
     * RECORD, which finds the record (audit_after) instead of appending it again */
    if (!r->have_result) {
        start_audit(r, "jitr_activate", NULL);
        return;
    }
    if (r->op_err.code != ERRC_OK) {
        fail_op(r, "audit");
        return;
    }
    recorded(r, JITR_OUT_ACTIVATED, ST_DONE);
}

static void st_reject(struct jitr_req *r)
{
    if (r->env->reject_leave_pending) {
        persist_audit_mark(r, JITR_ST_RECORD_REJECT, "left PENDING_ACTIVATION");
        return;
    }
    if (!r->have_result) {
        start_aws(r, AWS_IOT_UPDATE_CERTIFICATE,
                  json_pack("{s:s, s:s}", "certificateId", r->ev.cert_id, "newStatus",
                            "REVOKED"));
        return;
    }
    if (r->op_err.code != ERRC_OK) {
        fail_op(r, "UpdateCertificate REVOKED");
        return;
    }
    snprintf(r->aws_status, sizeof(r->aws_status), "REVOKED");
    persist_audit_mark(r, JITR_ST_RECORD_REJECT, "REVOKED");
}

static void st_record_verdict(struct jitr_req *r)
{
    if (!r->have_result) {
        start_audit(r, r->state == JITR_ST_RECORD_REJECT ? "jitr_reject" : "jitr_ignore",
                    r->err.msg);
        return;
    }
    if (r->op_err.code != ERRC_OK) {
        fail_op(r, "audit");
        return;
    }
    if (r->state == JITR_ST_RECORD_REJECT) {
        recorded(r, JITR_OUT_REJECTED, ST_REJECTED);
    } else {
        recorded(r, JITR_OUT_IGNORED, ST_IGNORED);
    }
}

static void st_persist(struct jitr_req *r)
{
    if (r->op_err.code != ERRC_OK) {
        enum jitr_outcome o = r->outcome;
        err_prefix(&r->op_err, "save state");
        /* a finished AWS step is redone idempotently after the retry */
        finish_with(r, o == JITR_OUT_ACTIVATED || o == JITR_OUT_REJECTED ||
                               o == JITR_OUT_IGNORED || o == JITR_OUT_NONE
                           ? JITR_OUT_RETRY
                           : o,
                    &r->op_err);
        set_state(r, JITR_ST_UNLOCK);
        return;
    }
    set_state(r, r->after);
}

static void st_unlock(struct jitr_req *r)
{
    char key[160];
    if (side_wait(r)) { /* a failed flow's AttachPolicy still in flight */
        return;
    }
    lease_drop(r); /* no call of this flow is in flight any more */
    if (!r->locked) {
        set_state(r, JITR_ST_FINISHED);
        return;
    }
    if (!r->have_result) {
        key_of(key, sizeof(key), "jitr:lock", r->ev.cert_id);
        const char *av[] = { "EVAL", unlock_lua, "1", key, r->lock_token };
        start_redis(r, 5, av);
        return;
    }
    /* an unlock failure only delays a duplicate until the lock expires */
    r->locked = false;
    set_state(r, JITR_ST_FINISHED);
}

static void st_finished(struct jitr_req *r)
{
    struct held_reply *h = held(r);
    held_clear(h);
    if (r->outcome == JITR_OUT_NONE) {
        r->outcome = JITR_OUT_RETRY;
    }
    r->io->done(r->io->ctx, r);
}

/* One function per state (JITR_ST_FINISHED included): it starts the state's operation, or
 * reads the completed one's result (have_result) and moves on through set_state (directly, or
 * through persist_then, fail_op, ...). */
typedef void state_fn(struct jitr_req *r);
static state_fn *const state_fns[JITR_ST__COUNT] = {
    [JITR_ST_RECEIVED] = st_received,
    [JITR_ST_LOCK] = st_lock,
    [JITR_ST_LOAD] = st_load,
    [JITR_ST_LOOKUP] = st_lookup,
    [JITR_ST_DESCRIBE] = st_describe,
    [JITR_ST_EVALUATE] = st_evaluate,
    [JITR_ST_ADOPT] = st_adopt,
    [JITR_ST_CREATE_THING] = st_create_thing,
    [JITR_ST_UPDATE_THING] = st_update_thing,
    [JITR_ST_POLICY] = st_policy,
    [JITR_ST_ATTACH_POLICY] = st_attach_policy,
    [JITR_ST_ATTACH_PRINCIPAL] = st_attach_principal,
    [JITR_ST_LIST_GROUPS] = st_list_groups,
    [JITR_ST_REMOVE_FROM_GROUP] = st_remove_from_group,
    [JITR_ST_ADD_TO_GROUP] = st_add_to_group,
    [JITR_ST_ACTIVATE] = st_activate,
    [JITR_ST_RECORD] = st_record,
    [JITR_ST_REJECT] = st_reject,
    [JITR_ST_RECORD_REJECT] = st_record_verdict,
    [JITR_ST_RECORD_IGNORE] = st_record_verdict,
    [JITR_ST_PERSIST] = st_persist,
    [JITR_ST_UNLOCK] = st_unlock,
    [JITR_ST_FINISHED] = st_finished,
};

static void jitr_advance(struct jitr_req *r)
{
    while (!r->in_flight) {
        enum jitr_state st = r->state;
        BUG_ON((unsigned)st >= JITR_ST__COUNT || state_fns[st] == NULL);
        state_fns[st](r);
        if (st == JITR_ST_FINISHED) {
            return; /* io->done may have freed r */
        }
    }
}

struct jitr_req *jitr_req_new(const struct jitr_env *env, const struct jitr_io *io,
                              const struct jitr_event *ev, const char *entry_id)
{
    static unsigned long counter;
    struct jitr_req *r = xcalloc(1, sizeof(*r));
    r->env = env;
    r->io = io;
    r->tpl = env->tpl;
    r->ev = *ev;
    snprintf(r->entry, sizeof(r->entry), "%s", entry_id ? entry_id : "");
    snprintf(r->lock_token, sizeof(r->lock_token), JITR_LOCK_TAG "%s %ld-%lu-%lld", r->entry,
             (long)getpid(), ++counter, (long long)time_now_ms());
    r->first_ms = ev->received_ms > 0 ? ev->received_ms : 0;
    r->state = JITR_ST_RECEIVED;
    buf_addstr(&r->trace, "RECEIVED");
    buf_addstr(&r->pending, "RECEIVED");
    return r;
}

void jitr_req_set_template(struct jitr_req *r, const struct jitr_template *tpl, const char *sha)
{
    r->tpl = tpl;
    snprintf(r->tpl_sha, sizeof(r->tpl_sha), "%s", sha ? sha : "");
}

void jitr_req_start(struct jitr_req *r)
{
    if (r->first_ms == 0) {
        r->first_ms = now_ms(r);
    }
    jitr_advance(r);
}

void jitr_req_free(struct jitr_req *r)
{
    if (r == NULL) {
        return;
    }
    BUG_ON(r->in_flight || r->side_running);
    lease_drop(r);
    held_clear(&r->held);
    json_decref(r->record);
    json_decref(r->desc);
    json_decref(r->remove);
    json_decref(r->adopt_missing);
    buf_release(&r->adopt_next);
    X509_free(r->cert);
    jitr_plan_release(&r->plan);
    buf_release(&r->policies);
    buf_release(&r->trace);
    buf_release(&r->pending);
    xfree(r);
}

enum jitr_outcome jitr_req_outcome(const struct jitr_req *r)
{
    return r->outcome;
}

enum jitr_state jitr_req_state(const struct jitr_req *r)
{
    return r->state;
}

const struct err *jitr_req_err(const struct jitr_req *r)
{
    return &r->err;
}

const char *jitr_req_trace(const struct jitr_req *r)
{
    return r->trace.data ? r->trace.data : "";
}

const struct jitr_event *jitr_req_event(const struct jitr_req *r)
{
    return &r->ev;
}

const char *jitr_req_entry(const struct jitr_req *r)
{
    return r->entry;
}

const char *jitr_req_thing(const struct jitr_req *r)
{
    return r->thing;
}

unsigned jitr_req_aws_calls(const struct jitr_req *r)
{
    return r->aws_calls;
}
