/*
 * The job engine in a jitrd worker (jobs/jobs.h, docs/jobs.md): the consumers of every kind's
 * stream, the due-later mover, claims, and the run of one job.
 *
 * A run of a kind with states: LOCK (the certificate's lock, for cert_lock kinds) → LOAD (the
 * record: the same entry DONE → duplicate; the same entry at a state → resume there; at RECORD
 * → only the audit append is missing) → the kind's states (each jobs_next saves the record
 * first) → RECORD (jobs_finish: the record saved with the audit record and a mark, then the
 * append, checked when resumed) → DONE saved → UNLOCK → the end: XACK, a backoff timer, or the
 * dead-letter stream. `phase` is changed only by set_phase.
 *
 * A kind without states (JITR) is run by the host (io->run) and ends with jobs_external_end;
 * everything around the run (reading, claiming, retries, dead letters) is the same.
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "jobs/jobs.h"
#include "store/store.h"

enum phase {
    PH_LOCK,
    PH_LOAD,
    PH_STATE,
    PH_SAVE,
    PH_AUDIT,
    PH_UNLOCK,
    PH_EXTERNAL,
    PH_ENDED,
};

struct kcons {
    const struct jobs_kind *kind;
    char stream[160], dlq[160], due[160];
    bool group_ready, group_pending, claiming, moving;
};

struct jobs_engine {
    struct event_base *base;
    struct store_async *rblock;
    struct jobs_config cfg;
    char consumer[96];
    struct jobs_io io;
    struct kcons *k;
    size_t nk;
    struct jobs_job *jobs;
    size_t njobs;
    struct event *kick, *claim, *due, *renew;
    bool reading, draining, stopping, redis_down;
    struct jobs_lease *leases; /* held (dropped ones are unlinked) */
    struct jobs_lease **renewing; /* the leases of the renewal in flight, in its order */
    size_t nrenewing;
    int64_t renew_sent_ms;
};

struct jobs_lease {
    struct jobs_engine *g;
    char key[320];
    char token[160];
    int64_t confirmed_ms; /* when the last take or renewal that found it ours was sent */
    bool lost;            /* a renewal found it gone or another's */
    bool in_renewal;      /* named by the renewal in flight */
    bool dropped;         /* released while in_renewal: freed by the renewal's reply */
    struct jobs_lease *prev, *next;
};

struct jobs_job {
    struct jobs_engine *g;
    struct kcons *kc;
    char entry[64];
    char key[JOBS_KEY_MAX + 1];
    json_t *fields;          /* the entry's */
    json_t *rec;             /* the record, when it is this entry's */
    json_t *set;             /* fields to save */
    enum phase phase, after; /* after: PH_SAVE's next phase */
    size_t st;
    bool moved; /* the state function moved on (or started an operation) */
    bool have_result, in_flight;
    struct err op_err;
    char aws_code[64];
    json_t *result;
    char token[160];
    bool locked;
    unsigned attempts; /* runs that did not finish: the backoff grows */
    unsigned failures; /* of those, failures (busy is not one) */
    enum jobs_end end;
    struct err why;
    char end_state[48];
    char outcome[48];
    json_t *audit_rec;
    uint64_t audit_after;
    bool audit_check;
    struct jobs_lease *lease; /* while locked */
    int64_t lock_sent_ms;
    bool finished; /* over: freed from the timer */
    void *host;
    struct event *timer;
    struct jobs_job *prev, *next;
};

/* Jitter and lock tokens: unique within the process (the consumer name holds the pid). */
static uint64_t rnd(void)
{
    static uint64_t x = 0x9e3779b97f4a7c15ULL;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

static int64_t now_ms(const struct jobs_engine *g)
{
    return g->io.now_ms ? g->io.now_ms() : time_now_ms();
}

static void ignore_reply(void *arg, const struct store_reply *r, const struct err *e)
{
    (void)arg;
    (void)r;
    if (e != NULL && e->code != ERRC_CANCELED) {
        log_debug("jobs: %s", e->msg);
    }
}

static int cmd(struct jobs_engine *g, int argc, const char *const *argv, store_reply_cb *cb,
               void *arg, struct err *e)
{
    return g->io.redis(g->io.ctx, argc, argv, cb, arg, e);
}

static void fire(struct jobs_engine *g, int argc, const char *const *argv)
{
    struct err e = ERR_INIT;
    if (!g->stopping && cmd(g, argc, argv, ignore_reply, NULL, &e) != 0) {
        log_debug("jobs: %s: %s", argv[0], e.msg);
    }
}

static void stat_incr(struct jobs_engine *g, const char *kind, const char *what)
{
    char f[96];
    snprintf(f, sizeof(f), "%s:%s", kind, what);
    const char *av[] = { "HINCRBY", STORE_PREFIX "jobs:stats", f, "1" };
    fire(g, 4, av);
}

json_t *jobs_reply_json(const struct store_reply *r)
{
    switch (r->type) {
    case STORE_REPLY_STRING:
        return json_stringn(r->str, r->len);
    case STORE_REPLY_INTEGER:
        return json_integer(r->integer);
    case STORE_REPLY_ARRAY: {
        json_t *a = json_array();
        for (size_t i = 0; i < r->n; i++) {
            json_t *x = jobs_reply_json(&r->elem[i]);
            json_array_append_new(a, x ? x : json_null());
        }
        return a;
    }
    case STORE_REPLY_NIL:
        break;
    }
    return NULL;
}

static json_t *pairs(const json_t *a)
{
    json_t *o = json_object();
    for (size_t i = 0; json_is_array(a) && i + 1 < json_array_size(a); i += 2) {
        const char *k = json_string_value(json_array_get(a, i));
        if (k != NULL && json_is_string(json_array_get(a, i + 1))) {
            json_object_set(o, k, json_array_get(a, i + 1));
        }
    }
    return o;
}

static const char *sget(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

/* ---- the run -------------------------------------------------------------------------------- */

static void advance(struct jobs_job *j);
static void run_end(struct jobs_job *j);

static void set_phase(struct jobs_job *j, enum phase p)
{
    j->phase = p;
    j->have_result = false;
    j->moved = true;
}

static void op_clear(struct jobs_job *j)
{
    json_decref(j->result);
    j->result = NULL;
    err_clear(&j->op_err);
    j->aws_code[0] = '\0';
}

static void on_redis(void *arg, const struct store_reply *r, const struct err *e)
{
    struct jobs_job *j = arg;
    j->in_flight = false;
    op_clear(j);
    if (e != NULL) {
        err_copy(&j->op_err, e);
    } else {
        j->result = jobs_reply_json(r);
    }
    j->have_result = true;
    advance(j);
}

static void on_aws(void *arg, const struct aws_iot_result *res, const struct err *e)
{
    struct jobs_job *j = arg;
    j->in_flight = false;
    op_clear(j);
    if (res != NULL && res->error_code != NULL) {
        snprintf(j->aws_code, sizeof(j->aws_code), "%s", res->error_code);
    }
    if (e != NULL) {
        err_copy(&j->op_err, e);
    } else if (res != NULL && res->out != NULL) {
        j->result = json_incref(res->out);
    }
    j->have_result = true;
    advance(j);
}

static void on_audit(void *arg, uint64_t seq, bool found, const struct err *e)
{
    struct jobs_job *j = arg;
    j->in_flight = false;
    op_clear(j);
    if (e != NULL) {
        err_copy(&j->op_err, e);
    } else {
        j->result = json_pack("{s:I,s:b}", "seq", (json_int_t)seq, "found", found);
    }
    j->have_result = true;
    advance(j);
}

void jobs_redis(struct jobs_job *j, int argc, const char *const *argv)
{
    struct err e = ERR_INIT;
    j->moved = true;
    if (cmd(j->g, argc, argv, on_redis, j, &e) != 0) {
        op_clear(j);
        err_copy(&j->op_err, &e);
        j->have_result = true;
        return;
    }
    j->in_flight = true;
}

void jobs_cert_lookup(struct jobs_job *j, const char *serial, const char *what)
{
    char key[STORE_KEY_MAX];
    struct err e = ERR_INIT;
    if (serial[0] == '\0' || !store_key_cert(key, sizeof(key), serial)) {
        err_set(&e, ERRC_INVALID, "%s job %.64s: %s is no serial", j->kc->kind->name, j->key,
                what);
        jobs_dead(j, &e);
        return;
    }
    const char *av[] = { "EVAL", store_index_hgetall_lua, "2", STORE_INDEX_READY, key };
    jobs_redis(j, 5, av);
}

json_t *jobs_cert_record(struct jobs_job *j)
{
    struct err e = ERR_INIT;
    if (jobs_result_err(j)->code == ERRC_OK) {
        return jobs_result_pairs(j);
    }
    if (store_err_index_incomplete(jobs_result_err(j))) {
        err_set(&e, ERRC_UNAVAILABLE, "the index is being rebuilt; waiting for it");
        jobs_busy(j, &e);
    } else {
        jobs_fail_op(j, "index lookup");
    }
    return NULL;
}

void jobs_aws(struct jobs_job *j, enum aws_iot_op op, json_t *in)
{
    struct err e = ERR_INIT;
    j->moved = true;
    if (j->lease != NULL && !jobs_lease_held(j->lease)) {
        /* the certificate's lock is gone (Redis lost it, or it could not be renewed in time):
         * nothing more is asked of AWS under it; the run fails as transient and the entry is
         * run again from the saved state once the lock is taken again */
        op_clear(j);
        err_set(&j->op_err, ERRC_UNAVAILABLE,
                "the lock of %.16s... was lost: %s not sent", j->key, aws_iot_op_name(op));
        j->have_result = true;
        json_decref(in);
        return;
    }
    if (j->g->io.aws(j->g->io.ctx, op, in, on_aws, j, &e) != 0) {
        op_clear(j);
        err_copy(&j->op_err, &e);
        j->have_result = true;
    } else {
        j->in_flight = true;
    }
    json_decref(in);
}

void jobs_host_begin(struct jobs_job *j)
{
    BUG_ON(j->in_flight);
    j->moved = true;
    j->in_flight = true;
}

void jobs_host_done(struct jobs_job *j, const struct err *e, json_t *result)
{
    BUG_ON(!j->in_flight);
    j->in_flight = false;
    op_clear(j);
    if (e != NULL && e->code != ERRC_OK) {
        err_copy(&j->op_err, e);
        json_decref(result);
    } else {
        j->result = result;
    }
    j->have_result = true;
    advance(j);
}

const char *jobs_key(const struct jobs_job *j)
{
    return j->key;
}

const struct jobs_kind *jobs_kind_of(const struct jobs_job *j)
{
    return j->kc->kind;
}

const char *jobs_entry(const struct jobs_job *j)
{
    return j->entry;
}

void **jobs_host(struct jobs_job *j)
{
    return &j->host;
}

void *jobs_kind_ctx(const struct jobs_job *j)
{
    return j->g->io.kind_ctx;
}

const char *jobs_get(const struct jobs_job *j, const char *name)
{
    if (json_object_get(j->set, name)) {
        return sget(j->set, name);
    }
    if (j->rec && json_object_get(j->rec, name)) {
        return sget(j->rec, name);
    }
    return sget(j->fields, name);
}

void jobs_set(struct jobs_job *j, const char *name, const char *value)
{
    json_object_set_new(j->set, name, json_string(value ? value : ""));
}

bool jobs_have_result(const struct jobs_job *j)
{
    return j->have_result;
}

const struct err *jobs_result_err(const struct jobs_job *j)
{
    return &j->op_err;
}

const char *jobs_result_aws_code(const struct jobs_job *j)
{
    return j->aws_code;
}

json_t *jobs_result(const struct jobs_job *j)
{
    return j->result;
}

json_t *jobs_result_pairs(const struct jobs_job *j)
{
    return pairs(j->result);
}

/* Saves the record (state, entry, attempts, updated_ms and the fields set), then `after`. */
static void save(struct jobs_job *j, const char *state, enum phase after)
{
    char rkey[320], ms[24], att[16];
    const char *av[8 + 2 * JOBS_FIELDS_MAX + 16];
    int ac = 0;
    const char *k;
    json_t *v;
    jobs_key_record(j->kc->kind, j->key, rkey, sizeof(rkey));
    snprintf(ms, sizeof(ms), "%lld", (long long)now_ms(j->g));
    snprintf(att, sizeof(att), "%u", j->failures);
    jobs_set(j, "state", state);
    av[ac++] = "HSET";
    av[ac++] = rkey;
    av[ac++] = "entry";
    av[ac++] = j->entry;
    av[ac++] = "attempts";
    av[ac++] = att;
    av[ac++] = "updated_ms";
    av[ac++] = ms;
    json_object_foreach(j->set, k, v)
    {
        if (ac + 2 > (int)ARRAY_LEN(av)) {
            break;
        }
        av[ac++] = k;
        av[ac++] = json_string_value(v);
    }
    /* the record now holds everything set: later reads see it there */
    if (j->rec == NULL) {
        j->rec = json_object();
    }
    json_object_update(j->rec, j->set);
    set_phase(j, PH_SAVE);
    j->after = after;
    jobs_redis(j, ac, av);
    json_object_clear(j->set);
}

void jobs_next(struct jobs_job *j, const char *next)
{
    const struct jobs_kind *k = j->kc->kind;
    size_t i = 0;
    while (i < k->nstates && strcmp(k->states[i].name, next) != 0) {
        i++;
    }
    BUG_ON(i == k->nstates);
    j->st = i;
    save(j, next, PH_STATE);
}

void jobs_finish(struct jobs_job *j, const char *outcome, json_t *rec)
{
    const struct jobs_kind *k = j->kc->kind;
    snprintf(j->outcome, sizeof(j->outcome), "%s", outcome);
    jobs_set(j, "outcome", outcome);
    jobs_set(j, "error", "");
    j->end = JOBS_END_DONE;
    if (k->audit_type == NULL) {
        json_decref(rec);
        save(j, "DONE", PH_UNLOCK);
        return;
    }
    {
        char after[24];
        char *text;
        json_t *r = rec ? rec : json_object();
        json_object_set_new(r, "type", json_string(k->audit_type));
        json_object_set_new(r, "kind", json_string(k->name));
        json_object_set_new(r, "outcome", json_string(outcome));
        if (k->cert_lock) {
            json_object_set_new(r, "certificate_id", json_string(j->key));
        } else {
            json_object_set_new(r, "key", json_string(j->key));
        }
        j->audit_after = j->g->io.audit_mark(j->g->io.ctx);
        j->audit_check = false;
        snprintf(after, sizeof(after), "%llu", (unsigned long long)j->audit_after);
        text = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
        jobs_set(j, "audit_after", after);
        jobs_set(j, "audit_rec", text ? text : "{}");
        xfree(text);
        json_decref(j->audit_rec);
        j->audit_rec = r;
        save(j, "RECORD", PH_AUDIT);
    }
}

void jobs_retry(struct jobs_job *j, const struct err *why)
{
    j->end = JOBS_END_RETRY;
    err_copy(&j->why, why);
    snprintf(j->end_state, sizeof(j->end_state), "%s",
             j->phase == PH_STATE && j->kc->kind->states ? j->kc->kind->states[j->st].name : "RUN");
    set_phase(j, PH_UNLOCK);
}

void jobs_busy(struct jobs_job *j, const struct err *why)
{
    jobs_retry(j, why);
    j->end = JOBS_END_BUSY;
}

void jobs_fail_op(struct jobs_job *j, const char *what)
{
    enum err_code c = j->op_err.code;
    struct err e = ERR_INIT;
    bool transient = c == ERRC_UNAVAILABLE || c == ERRC_TIMEOUT || c == ERRC_CANCELED ||
                     c == ERRC_INTERNAL || c == ERRC_OK;
    err_set(&e, c == ERRC_OK ? ERRC_UNAVAILABLE : c, "%s: %s", what, j->op_err.msg);
    if (transient) {
        jobs_retry(j, &e);
    } else {
        jobs_dead(j, &e);
    }
}

void jobs_dead(struct jobs_job *j, const struct err *why)
{
    j->end = JOBS_END_DEAD;
    err_copy(&j->why, why);
    snprintf(j->end_state, sizeof(j->end_state), "%s",
             j->phase == PH_STATE && j->kc->kind->states ? j->kc->kind->states[j->st].name : "RUN");
    jobs_set(j, "error", why->msg);
    jobs_set(j, "dead_state", j->end_state);
    save(j, "DEAD", PH_UNLOCK);
}

static void fail(struct jobs_job *j, const char *what)
{
    struct err e = ERR_INIT;
    err_set(&e, j->op_err.code == ERRC_OK ? ERRC_UNAVAILABLE : j->op_err.code, "%s: %s", what,
            j->op_err.msg);
    j->end = JOBS_END_RETRY;
    err_copy(&j->why, &e);
    snprintf(j->end_state, sizeof(j->end_state), "%s", what);
    set_phase(j, PH_UNLOCK);
}

static void ph_lock(struct jobs_job *j)
{
    char key[320], px[24];
    if (!j->kc->kind->cert_lock) {
        set_phase(j, PH_LOAD);
        return;
    }
    if (!j->have_result) {
        snprintf(key, sizeof(key), STORE_PREFIX "jitr:lock:%s", j->key);
        snprintf(px, sizeof(px), "%d", j->g->cfg.lock_ms > 0 ? j->g->cfg.lock_ms : 60000);
        const char *av[] = { "SET", key, j->token, "NX", "PX", px };
        j->lock_sent_ms = now_ms(j->g);
        jobs_redis(j, 6, av);
        return;
    }
    if (j->op_err.code != ERRC_OK) {
        fail(j, "lock");
        return;
    }
    if (!json_is_string(j->result)) {
        j->end = JOBS_END_BUSY;
        err_set(&j->why, ERRC_CONFLICT, "certificate %.16s... is busy in another job", j->key);
        set_phase(j, PH_UNLOCK);
        return;
    }
    j->locked = true;
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:lock:%s", j->key);
    j->lease = jobs_lease_hold(j->g, key, j->token, j->lock_sent_ms);
    set_phase(j, PH_LOAD);
}

static void ph_load(struct jobs_job *j)
{
    char rkey[320];
    const char *st;
    const struct jobs_kind *k = j->kc->kind;
    if (!j->have_result) {
        jobs_key_record(k, j->key, rkey, sizeof(rkey));
        const char *av[] = { "HGETALL", rkey };
        jobs_redis(j, 2, av);
        return;
    }
    if (j->op_err.code != ERRC_OK) {
        fail(j, "load");
        return;
    }
    json_decref(j->rec);
    j->rec = NULL;
    j->st = 0;
    {
        json_t *r = pairs(j->result);
        if (strcmp(sget(r, "entry"), j->entry) != 0) {
            /* another job's record, or none: this one starts; it may read what the last one
             * ended with */
            json_object_set_new(j->fields, "prev_outcome", json_string(sget(r, "outcome")));
            json_decref(r);
            set_phase(j, PH_STATE);
            return;
        }
        j->rec = r;
    }
    st = sget(j->rec, "state");
    {
        uint64_t u = 0;
        if (str_to_u64(sget(j->rec, "attempts"), &u) == 0 && u > j->failures) {
            j->failures = (unsigned)u;
        }
    }
    if (strcmp(st, "DONE") == 0) {
        j->end = JOBS_END_DUPLICATE;
        set_phase(j, PH_UNLOCK);
        return;
    }
    if (strcmp(st, "RECORD") == 0) {
        uint64_t u = 0;
        json_error_t je;
        snprintf(j->outcome, sizeof(j->outcome), "%s", sget(j->rec, "outcome"));
        json_decref(j->audit_rec);
        j->audit_rec = json_loads(sget(j->rec, "audit_rec"), 0, &je);
        if (j->audit_rec == NULL || str_to_u64(sget(j->rec, "audit_after"), &u) != 0) {
            err_set(&j->why, ERRC_INTERNAL,
                    "the saved audit record of %s job %.16s is "
                    "unreadable",
                    k->name, j->key);
            jobs_dead(j, &j->why);
            return;
        }
        j->audit_after = u;
        j->audit_check = true;
        j->end = JOBS_END_DONE;
        set_phase(j, PH_AUDIT);
        return;
    }
    for (size_t i = 0; i < k->nstates; i++) {
        if (strcmp(k->states[i].name, st) == 0) {
            j->st = i;
        }
    }
    set_phase(j, PH_STATE);
}

static void ph_state(struct jobs_job *j)
{
    j->moved = false;
    j->kc->kind->states[j->st].fn(j);
    /* a state function moves on or starts an operation, every time */
    BUG_ON(!j->moved);
}

static void ph_save(struct jobs_job *j)
{
    BUG_ON(!j->have_result);
    if (j->op_err.code != ERRC_OK) {
        if (j->end == JOBS_END_DEAD) {
            set_phase(j, PH_UNLOCK); /* dead-lettered anyway */
            return;
        }
        fail(j, "save");
        return;
    }
    set_phase(j, j->after);
}

static void ph_audit(struct jobs_job *j)
{
    if (!j->have_result) {
        struct err e = ERR_INIT;
        j->moved = true;
        if (j->g->io.audit(j->g->io.ctx, j->audit_rec, j->audit_check, j->audit_after, on_audit, j,
                           &e) != 0) {
            op_clear(j);
            err_copy(&j->op_err, &e);
            j->have_result = true;
            return;
        }
        j->in_flight = true;
        return;
    }
    if (j->op_err.code != ERRC_OK) {
        fail(j, "audit");
        return;
    }
    {
        char seq[24];
        snprintf(seq, sizeof(seq), "%lld",
                 (long long)json_integer_value(json_object_get(j->result, "seq")));
        jobs_set(j, "audit_seq", seq);
        jobs_set(j, "outcome", j->outcome);
        j->end = JOBS_END_DONE;
        save(j, "DONE", PH_UNLOCK);
    }
}

static const char unlock_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

static void ph_unlock(struct jobs_job *j)
{
    char key[320];
    jobs_lease_drop(j->lease); /* no renewal from here on */
    j->lease = NULL;
    if (!j->locked) {
        set_phase(j, PH_ENDED);
        return;
    }
    if (!j->have_result) {
        snprintf(key, sizeof(key), STORE_PREFIX "jitr:lock:%s", j->key);
        const char *av[] = { "EVAL", unlock_lua, "1", key, j->token };
        jobs_redis(j, 5, av);
        return;
    }
    j->locked = false; /* failed: it lapses */
    set_phase(j, PH_ENDED);
}

static void advance(struct jobs_job *j)
{
    while (!j->in_flight && j->phase != PH_ENDED && j->phase != PH_EXTERNAL) {
        switch (j->phase) {
        case PH_LOCK:
            ph_lock(j);
            break;
        case PH_LOAD:
            ph_load(j);
            break;
        case PH_STATE:
            ph_state(j);
            break;
        case PH_SAVE:
            ph_save(j);
            break;
        case PH_AUDIT:
            ph_audit(j);
            break;
        case PH_UNLOCK:
            ph_unlock(j);
            break;
        case PH_EXTERNAL:
        case PH_ENDED:
            break;
        }
    }
    if (j->phase == PH_ENDED && !j->in_flight) {
        run_end(j);
    }
}

/* ---- the consumer --------------------------------------------------------------------------- */

static void consumer_kick(struct jobs_engine *g);
static void run_start(struct jobs_job *j);

static void job_free(struct jobs_job *j)
{
    struct jobs_engine *g = j->g;
    if (j->prev) {
        j->prev->next = j->next;
    } else {
        g->jobs = j->next;
    }
    if (j->next) {
        j->next->prev = j->prev;
    }
    g->njobs--;
    if (g->io.release) {
        g->io.release(g->io.ctx, j);
    }
    jobs_lease_drop(j->lease);
    if (j->timer) {
        event_free(j->timer);
    }
    json_decref(j->fields);
    json_decref(j->rec);
    json_decref(j->set);
    json_decref(j->result);
    json_decref(j->audit_rec);
    xfree(j);
}

static void xack(struct jobs_engine *g, struct kcons *kc, const char *entry)
{
    const char *av[] = { "XACK", kc->stream, JOBS_GROUP, entry };
    fire(g, 4, av);
}

static void dead_letter(struct jobs_job *j)
{
    struct jobs_engine *g = j->g;
    char att[16], now[32];
    const char *av[6 + 2 * JOBS_FIELDS_MAX + 10];
    size_t ac = 0;
    const char *k;
    json_t *v;
    snprintf(att, sizeof(att), "%u", j->failures);
    snprintf(now, sizeof(now), "%lld", (long long)now_ms(g));
    av[ac++] = "XADD";
    av[ac++] = j->kc->dlq;
    av[ac++] = "MAXLEN";
    av[ac++] = "~";
    av[ac++] = "100000";
    av[ac++] = "*";
    json_object_foreach(j->fields, k, v)
    {
        if (ac + 12 > ARRAY_LEN(av)) {
            break;
        }
        if (strcmp(k, "entry") != 0 && strcmp(k, "attempts") != 0 && strcmp(k, "state") != 0 &&
            strcmp(k, "error") != 0 && strcmp(k, "dead_ms") != 0) {
            av[ac++] = k;
            av[ac++] = json_string_value(v);
        }
    }
    av[ac++] = "entry";
    av[ac++] = j->entry;
    av[ac++] = "attempts";
    av[ac++] = att;
    av[ac++] = "state";
    av[ac++] = j->end_state[0] ? j->end_state : "DEAD";
    av[ac++] = "error";
    av[ac++] = j->why.msg;
    av[ac++] = "dead_ms";
    av[ac++] = now;
    fire(g, (int)ac, av);
    if (j->kc->kind->states != NULL) {
        /* the record says so too (a run that failed max_attempts times kept its resume point) */
        char rkey[320];
        jobs_key_record(j->kc->kind, j->key, rkey, sizeof(rkey));
        const char *hv[] = { "HSET",       rkey,
                             "state",      "DEAD",
                             "error",      j->why.msg,
                             "dead_state", j->end_state[0] ? j->end_state : "DEAD",
                             "attempts",   att };
        fire(g, (int)ARRAY_LEN(hv), hv);
    }
    xack(g, j->kc, j->entry);
    stat_incr(g, j->kc->kind->name, "dead");
    log_warn("jobs: %s %.16s dead-lettered after %u failed attempts: %s", j->kc->kind->name, j->key,
             j->failures, j->why.msg);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct jobs_job *j = arg;
    struct jobs_engine *g = j->g;
    (void)fd;
    (void)what;
    if (j->finished) {
        job_free(j);
        consumer_kick(g);
        return;
    }
    run_start(j);
}

static void job_over(struct jobs_job *j)
{
    j->finished = true;
    event_active(j->timer, EV_TIMEOUT, 0); /* freed outside the run's callbacks */
}

static void run_end(struct jobs_job *j)
{
    struct jobs_engine *g = j->g;
    const char *kind = j->kc->kind->name;
    if (g->stopping) {
        return; /* jobs_engine_free frees it; the entry stays pending */
    }
    switch (j->end) {
    case JOBS_END_DONE:
        stat_incr(g, kind, "done");
        if (j->outcome[0]) {
            stat_incr(g, kind, j->outcome);
        }
        xack(g, j->kc, j->entry);
        job_over(j);
        return;
    case JOBS_END_DUPLICATE:
        stat_incr(g, kind, "duplicate");
        xack(g, j->kc, j->entry);
        job_over(j);
        return;
    case JOBS_END_DEAD:
        j->failures++;
        dead_letter(j);
        job_over(j);
        return;
    case JOBS_END_RETRY:
    case JOBS_END_BUSY:
        j->attempts++;
        j->failures += j->end == JOBS_END_RETRY;
        if (j->end == JOBS_END_RETRY && j->failures >= (unsigned)g->cfg.max_attempts) {
            dead_letter(j);
            job_over(j);
            return;
        }
        {
            int64_t d = 0;
            int64_t base = g->cfg.backoff_ms > 0 ? g->cfg.backoff_ms : 1000;
            int64_t max = g->cfg.backoff_max_ms > base ? g->cfg.backoff_max_ms : base;
            unsigned a = j->attempts;
            d = base;
            while (a-- > 1 && d < max) {
                d *= 2;
            }
            if (d > max) {
                d = max;
            }
            d = d / 2 + (int64_t)(rnd() % (uint64_t)(d / 2 + 1));
            log_debug("jobs: %s %.16s %s, again in %lld ms: %s", kind, j->key,
                      j->end == JOBS_END_BUSY ? "busy" : "failed", (long long)d, j->why.msg);
            struct timeval tv = { (time_t)(d / 1000), (suseconds_t)((d % 1000) * 1000) };
            evtimer_add(j->timer, &tv);
        }
        return;
    }
}

void jobs_external_end(struct jobs_job *j, enum jobs_end end, const struct err *why,
                       const char *state)
{
    j->end = end;
    if (why != NULL) {
        err_copy(&j->why, why);
    }
    snprintf(j->end_state, sizeof(j->end_state), "%s", state ? state : "");
    j->phase = PH_ENDED;
    run_end(j);
}

static void run_start(struct jobs_job *j)
{
    struct jobs_engine *g = j->g;
    if (g->io.release) {
        g->io.release(g->io.ctx, j); /* the previous run's */
    }
    op_clear(j);
    json_object_clear(j->set);
    err_clear(&j->why);
    j->end_state[0] = j->outcome[0] = '\0';
    j->end = JOBS_END_RETRY;
    j->locked = false;
    jobs_lease_drop(j->lease);
    j->lease = NULL;
    j->have_result = j->in_flight = false;
    snprintf(j->token, sizeof(j->token), "%s-%llx", g->consumer, (unsigned long long)rnd());
    if (j->kc->kind->states == NULL) {
        const char *kv[2 * JOBS_FIELDS_MAX];
        size_t n = 0;
        const char *k;
        json_t *v;
        json_object_foreach(j->fields, k, v)
        {
            if (n + 2 <= ARRAY_LEN(kv)) {
                kv[n++] = k;
                kv[n++] = json_string_value(v);
            }
        }
        j->phase = PH_EXTERNAL;
        g->io.run(g->io.ctx, j, kv, n);
        return;
    }
    set_phase(j, PH_LOCK);
    advance(j);
}

static bool entry_running(struct jobs_engine *g, const struct kcons *kc, const char *entry)
{
    for (struct jobs_job *j = g->jobs; j; j = j->next) {
        if (j->kc == kc && strcmp(j->entry, entry) == 0) {
            return true;
        }
    }
    return false;
}

static void job_start(struct jobs_engine *g, struct kcons *kc, const char *entry,
                      const struct store_reply *fv)
{
    struct jobs_job *j;
    json_t *fields = json_object();
    const char *key;
    for (size_t i = 0; fv && i + 1 < fv->n; i += 2) {
        const struct store_reply *k = &fv->elem[i], *v = &fv->elem[i + 1];
        if (k->type == STORE_REPLY_STRING && v->type == STORE_REPLY_STRING &&
            json_object_size(fields) < JOBS_FIELDS_MAX) {
            char *name = xstrndup(k->str, k->len);
            json_object_set_new(fields, name, json_stringn(v->str, v->len));
            xfree(name);
        }
    }
    key = sget(fields, kc->kind->key_field ? kc->kind->key_field : "key");
    if (key[0] == '\0' || strlen(key) > JOBS_KEY_MAX) {
        log_warn("jobs: %s entry %s has no key: acknowledged and dropped", kc->kind->name, entry);
        json_decref(fields);
        xack(g, kc, entry);
        return;
    }
    if (entry_running(g, kc, entry)) {
        json_decref(fields);
        return;
    }
    j = xcalloc(1, sizeof(*j));
    j->g = g;
    j->kc = kc;
    j->fields = fields;
    j->set = json_object();
    snprintf(j->entry, sizeof(j->entry), "%s", entry);
    snprintf(j->key, sizeof(j->key), "%s", key);
    j->timer = evtimer_new(g->base, on_timer, j);
    if (j->timer == NULL) {
        oom_die(event_get_struct_event_size());
    }
    j->next = g->jobs;
    if (g->jobs) {
        g->jobs->prev = j;
    }
    g->jobs = j;
    g->njobs++;
    run_start(j);
}

static void start_entries(struct jobs_engine *g, struct kcons *kc, const struct store_reply *l)
{
    for (size_t i = 0; l && l->type == STORE_REPLY_ARRAY && i < l->n; i++) {
        const struct store_reply *ent = &l->elem[i];
        if (ent->type == STORE_REPLY_ARRAY && ent->n == 2 &&
            ent->elem[0].type == STORE_REPLY_STRING) {
            job_start(g, kc, ent->elem[0].str,
                      ent->elem[1].type == STORE_REPLY_ARRAY ? &ent->elem[1] : NULL);
        }
    }
}

struct grp_req {
    struct jobs_engine *g;
    struct kcons *kc;
};

static void on_group(void *arg, const struct store_reply *r, const struct err *e)
{
    struct grp_req *q = arg;
    struct jobs_engine *g = q->g;
    struct kcons *kc = q->kc;
    (void)r;
    xfree(q);
    kc->group_pending = false;
    if (e != NULL && strstr(e->detail, "BUSYGROUP") == NULL) {
        if (e->code != ERRC_CANCELED) {
            log_warn("jobs: consumer group of %s: %s", kc->stream, e->msg);
        }
        return;
    }
    kc->group_ready = true;
    consumer_kick(g);
}

/* true when every group is there */
static bool groups_ready(struct jobs_engine *g)
{
    bool all = true;
    for (size_t i = 0; i < g->nk; i++) {
        struct kcons *kc = &g->k[i];
        if (kc->group_ready) {
            continue;
        }
        all = false;
        if (!kc->group_pending) {
            struct err e = ERR_INIT;
            struct grp_req *q = xcalloc(1, sizeof(*q));
            const char *av[] = { "XGROUP", "CREATE", kc->stream, JOBS_GROUP, "0", "MKSTREAM" };
            q->g = g;
            q->kc = kc;
            kc->group_pending = true;
            if (cmd(g, 6, av, on_group, q, &e) != 0) {
                kc->group_pending = false;
                xfree(q);
            }
        }
    }
    return all;
}

static void on_read(void *arg, const struct store_reply *r, const struct err *e)
{
    struct jobs_engine *g = arg;
    g->reading = false;
    if (e != NULL) {
        if (e->code == ERRC_CANCELED) {
            return;
        }
        if (strstr(e->detail, "NOGROUP") != NULL) {
            for (size_t i = 0; i < g->nk; i++) {
                g->k[i].group_ready = false; /* Redis lost the streams */
            }
        }
        if (!g->redis_down) {
            log_warn("jobs: reading the job streams: %s", e->msg);
        }
        g->redis_down = true;
        struct timeval tv = { 0, 500000 };
        evtimer_add(g->kick, &tv);
        return;
    }
    if (g->redis_down) {
        log_info("jobs: job streams reachable again");
    }
    g->redis_down = false;
    /* [[stream, [[id, [f, v...]], ...]], ...] or nil */
    for (size_t i = 0; r->type == STORE_REPLY_ARRAY && i < r->n; i++) {
        const struct store_reply *s = &r->elem[i];
        if (s->type != STORE_REPLY_ARRAY || s->n != 2 || s->elem[0].type != STORE_REPLY_STRING) {
            continue;
        }
        for (size_t k = 0; k < g->nk; k++) {
            if (strcmp(g->k[k].stream, s->elem[0].str) == 0) {
                start_entries(g, &g->k[k], &s->elem[1]);
            }
        }
    }
    consumer_kick(g);
}

static size_t room(const struct jobs_engine *g)
{
    return (size_t)g->cfg.max_in_flight > g->njobs ? (size_t)g->cfg.max_in_flight - g->njobs : 0;
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct jobs_engine *g = arg;
    char count[24];
    const char *av[8 + 2 * 16];
    int ac = 0;
    struct err e = ERR_INIT;
    (void)fd;
    (void)what;
    if (g->stopping || g->draining || g->reading || room(g) == 0) {
        return;
    }
    if (!groups_ready(g)) {
        struct timeval tv = { 0, 500000 };
        evtimer_add(g->kick, &tv);
        return;
    }
    snprintf(count, sizeof(count), "%zu", room(g));
    av[ac++] = "XREADGROUP";
    av[ac++] = "GROUP";
    av[ac++] = JOBS_GROUP;
    av[ac++] = g->consumer;
    av[ac++] = "COUNT";
    av[ac++] = count;
    av[ac++] = "BLOCK";
    av[ac++] = "1000";
    av[ac++] = "STREAMS";
    for (size_t i = 0; i < g->nk; i++) {
        av[ac++] = g->k[i].stream;
    }
    for (size_t i = 0; i < g->nk; i++) {
        av[ac++] = ">";
    }
    g->reading = true;
    if (store_async_cmd(g->rblock, ac, av, NULL, 5000, on_read, g, &e) != 0) {
        g->reading = false;
        struct timeval tv = { 0, 500000 };
        evtimer_add(g->kick, &tv);
    }
}

static void consumer_kick(struct jobs_engine *g)
{
    if (!g->stopping) {
        event_active(g->kick, EV_TIMEOUT, 0);
    }
}

struct claim_req {
    struct jobs_engine *g;
    struct kcons *kc;
};

static void on_claim_reply(void *arg, const struct store_reply *r, const struct err *e)
{
    struct claim_req *q = arg;
    struct jobs_engine *g = q->g;
    struct kcons *kc = q->kc;
    xfree(q);
    kc->claiming = false;
    if (e != NULL || r->type != STORE_REPLY_ARRAY || r->n < 2) {
        return;
    }
    if (r->elem[1].type == STORE_REPLY_ARRAY && r->elem[1].n > 0) {
        log_info("jobs: claimed %zu pending %s jobs idle for %lld ms", r->elem[1].n, kc->kind->name,
                 (long long)g->cfg.claim_idle_ms);
        stat_incr(g, kc->kind->name, "claimed");
    }
    start_entries(g, kc, &r->elem[1]);
}

/* KEYS: a stream; ARGV: the group, this consumer, then entry ids. Each entry still pending for
 * this consumer is claimed again by it (JUSTID: its idle time starts again at 0, its delivery
 * count is unchanged); one another consumer took meanwhile is left to it. */
static const char touch_lua[] =
    "local n = 0\n"
    "for i = 3, #ARGV do\n"
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])\n"
    "  if #p == 1 then\n"
    "    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

/* The entries of the jobs this worker holds (running, waiting for their pacing turn or a lock,
 * backing off) stay theirs: their idle time is reset every half claim_idle_ms, so no other
 * worker's XAUTOCLAIM takes a job that is only waiting and runs it a second time. A worker
 * that stops (or whose loop stalls) touches nothing: its entries are claimed as before. */
static void touch_own(struct jobs_engine *g)
{
    for (size_t i = 0; i < g->nk; i++) {
        struct kcons *kc = &g->k[i];
        size_t n = 0, ac = 0;
        const char **av;
        for (struct jobs_job *j = g->jobs; j; j = j->next) {
            n += j->kc == kc && !j->finished;
        }
        if (n == 0 || !kc->group_ready) {
            continue;
        }
        av = xcalloc(6 + n, sizeof(*av));
        av[ac++] = "EVAL";
        av[ac++] = touch_lua;
        av[ac++] = "1";
        av[ac++] = kc->stream;
        av[ac++] = JOBS_GROUP;
        av[ac++] = g->consumer;
        for (struct jobs_job *j = g->jobs; j; j = j->next) {
            if (j->kc == kc && !j->finished) {
                av[ac++] = j->entry;
            }
        }
        fire(g, (int)ac, av);
        xfree(av);
    }
}

static void on_claim_timer(evutil_socket_t fd, short what, void *arg)
{
    struct jobs_engine *g = arg;
    char idle[24], count[24];
    (void)fd;
    (void)what;
    if (g->stopping) {
        return;
    }
    touch_own(g); /* first: this worker's own idle entries are not its to claim either */
    if (g->draining || room(g) == 0) {
        return;
    }
    snprintf(idle, sizeof(idle), "%lld", (long long)g->cfg.claim_idle_ms);
    snprintf(count, sizeof(count), "%zu", room(g));
    for (size_t i = 0; i < g->nk; i++) {
        struct kcons *kc = &g->k[i];
        struct err e = ERR_INIT;
        struct claim_req *q;
        if (kc->claiming || !kc->group_ready) {
            continue;
        }
        const char *av[] = { "XAUTOCLAIM", kc->stream, JOBS_GROUP, g->consumer,
                             idle,         "0-0",      "COUNT",    count };
        q = xcalloc(1, sizeof(*q));
        q->g = g;
        q->kc = kc;
        kc->claiming = true;
        if (cmd(g, (int)ARRAY_LEN(av), av, on_claim_reply, q, &e) != 0) {
            kc->claiming = false;
            xfree(q);
        }
    }
}

/* KEYS: due, stream; ARGV: now, limit. Moves the due members to the stream (exactly once: the
 * script is atomic). */
static const char move_lua[] =
    "local m = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0,\n"
    "                     tonumber(ARGV[2]))\n"
    "for _, v in ipairs(m) do\n"
    "  local ok, f = pcall(cjson.decode, v)\n"
    "  if ok and type(f) == 'table' and #f >= 2 and #f % 2 == 0 then\n"
    "    redis.call('XADD', KEYS[2], 'MAXLEN', '~', '1000000', '*', unpack(f))\n"
    "  end\n"
    "  redis.call('ZREM', KEYS[1], v)\n"
    "end\n"
    "return #m\n";

#define MOVE_BATCH 100

struct move_req {
    struct jobs_engine *g;
    struct kcons *kc;
};

static void move_due(struct jobs_engine *g, struct kcons *kc);

static void on_moved(void *arg, const struct store_reply *r, const struct err *e)
{
    struct move_req *q = arg;
    struct jobs_engine *g = q->g;
    struct kcons *kc = q->kc;
    xfree(q);
    kc->moving = false;
    if (e != NULL || r->type != STORE_REPLY_INTEGER) {
        return;
    }
    if (r->integer > 0) {
        log_debug("jobs: %lld %s jobs due now", r->integer, kc->kind->name);
    }
    if (r->integer >= MOVE_BATCH) {
        move_due(g, kc); /* more are due */
    }
}

static void move_due(struct jobs_engine *g, struct kcons *kc)
{
    char now[24], lim[16];
    struct err e = ERR_INIT;
    struct move_req *q;
    if (kc->moving || g->stopping || g->draining) {
        return;
    }
    snprintf(now, sizeof(now), "%lld", (long long)now_ms(g));
    snprintf(lim, sizeof(lim), "%d", MOVE_BATCH);
    const char *av[] = { "EVAL", move_lua, "2", kc->due, kc->stream, now, lim };
    q = xcalloc(1, sizeof(*q));
    q->g = g;
    q->kc = kc;
    kc->moving = true;
    if (cmd(g, (int)ARRAY_LEN(av), av, on_moved, q, &e) != 0) {
        kc->moving = false;
        xfree(q);
    }
}

static void on_due_timer(evutil_socket_t fd, short what, void *arg)
{
    struct jobs_engine *g = arg;
    (void)fd;
    (void)what;
    for (size_t i = 0; i < g->nk; i++) {
        move_due(g, &g->k[i]);
    }
}

/* ---- life ----------------------------------------------------------------------------------- */

/* ---- leases (jobs.h) ---------------------------------------------------------------------- */

/* Renews every lock of the list whose value is still the holder's token (ARGV[1]: PX, then one
 * token per key); 1 renewed, 0 gone or another's (never taken again). */
static const char renew_lua[] =
    "local out = {}\n"
    "for i = 1, #KEYS do\n"
    "  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then\n"
    "    redis.call('PEXPIRE', KEYS[i], ARGV[1]); out[i] = 1\n"
    "  else out[i] = 0 end\n"
    "end\n"
    "return out\n";

static int64_t lock_ms_of(const struct jobs_engine *g)
{
    return g->cfg.lock_ms > 0 ? g->cfg.lock_ms : 60000;
}

bool jobs_lease_valid(bool lost, int64_t confirmed_ms, int64_t now, int64_t lock_ms)
{
    return !lost && now - confirmed_ms < lock_ms - lock_ms / 10;
}

int64_t jobs_lease_period_ms(int64_t lock_ms)
{
    return lock_ms / 3 > 0 ? lock_ms / 3 : 1;
}

struct jobs_lease *jobs_lease_hold(struct jobs_engine *g, const char *key, const char *token,
                                   int64_t sent_ms)
{
    struct jobs_lease *l = xcalloc(1, sizeof(*l));
    l->g = g;
    snprintf(l->key, sizeof(l->key), "%s", key);
    snprintf(l->token, sizeof(l->token), "%s", token);
    l->confirmed_ms = sent_ms;
    l->next = g->leases;
    if (g->leases) {
        g->leases->prev = l;
    }
    g->leases = l;
    return l;
}

bool jobs_lease_held(const struct jobs_lease *l)
{
    return jobs_lease_valid(l->lost, l->confirmed_ms, now_ms(l->g), lock_ms_of(l->g));
}

void jobs_lease_drop(struct jobs_lease *l)
{
    struct jobs_engine *g;
    if (l == NULL) {
        return;
    }
    g = l->g;
    if (l->prev) {
        l->prev->next = l->next;
    } else {
        g->leases = l->next;
    }
    if (l->next) {
        l->next->prev = l->prev;
    }
    l->prev = l->next = NULL;
    if (l->in_renewal) {
        l->dropped = true; /* the renewal's reply names it: freed there */
        return;
    }
    xfree(l);
}

static void on_renewed(void *arg, const struct store_reply *r, const struct err *e)
{
    struct jobs_engine *g = arg;
    bool ok = e == NULL && r != NULL && r->type == STORE_REPLY_ARRAY && r->n == g->nrenewing;
    for (size_t i = 0; i < g->nrenewing; i++) {
        struct jobs_lease *l = g->renewing[i];
        l->in_renewal = false;
        if (l->dropped) {
            xfree(l);
            continue;
        }
        if (!ok) {
            continue; /* unknown: the lease ages, and is not held once too old */
        }
        if (r->elem[i].type == STORE_REPLY_INTEGER && r->elem[i].integer == 1) {
            if (g->renew_sent_ms > l->confirmed_ms) {
                l->confirmed_ms = g->renew_sent_ms;
            }
        } else if (!l->lost) {
            l->lost = true;
            log_warn("jobs: the lock %s was lost (gone or another's when renewed): its holder "
                     "stops before its next AWS call", l->key);
        }
    }
    if (e != NULL && e->code != ERRC_CANCELED) {
        log_debug("jobs: lock renewal: %s", e->msg);
    }
    xfree(g->renewing);
    g->renewing = NULL;
    g->nrenewing = 0;
}

/* One script for every lease of the worker (the one renewal of this tick). */
static void on_renew_timer(evutil_socket_t fd, short what, void *arg)
{
    struct jobs_engine *g = arg;
    struct err e = ERR_INIT;
    size_t n = 0, ac = 0;
    const char **av;
    char px[24], nk[24];
    (void)fd;
    (void)what;
    if (g->stopping || g->renewing != NULL) {
        return; /* the previous renewal has not answered: it counts for this tick */
    }
    for (struct jobs_lease *l = g->leases; l; l = l->next) {
        n += !l->lost;
    }
    if (n == 0) {
        return;
    }
    snprintf(px, sizeof(px), "%lld", (long long)lock_ms_of(g));
    snprintf(nk, sizeof(nk), "%zu", n);
    av = xcalloc(4 + 2 * n, sizeof(*av));
    g->renewing = xcalloc(n, sizeof(*g->renewing));
    av[ac++] = "EVAL";
    av[ac++] = renew_lua;
    av[ac++] = nk;
    for (struct jobs_lease *l = g->leases; l; l = l->next) {
        if (!l->lost) {
            av[ac++] = l->key;
            g->renewing[g->nrenewing++] = l;
            l->in_renewal = true;
        }
    }
    av[ac++] = px;
    for (size_t i = 0; i < n; i++) {
        av[ac++] = g->renewing[i]->token;
    }
    g->renew_sent_ms = now_ms(g);
    if (cmd(g, (int)ac, av, on_renewed, g, &e) != 0) {
        log_debug("jobs: lock renewal: %s", e.msg);
        on_renewed(g, NULL, &e);
    }
    xfree(av);
}

static struct event *periodic(struct jobs_engine *g, event_callback_fn fn, int64_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
    struct event *ev = event_new(g->base, -1, EV_PERSIST, fn, g);
    if (ev == NULL || event_add(ev, &tv) != 0) {
        oom_die(event_get_struct_event_size());
    }
    return ev;
}

struct jobs_engine *jobs_engine_new(struct event_base *base, struct store_async *rblock,
                                    const struct jobs_kind *const *kinds, size_t nkinds,
                                    const struct jobs_config *cfg, const struct jobs_io *io,
                                    struct err *e)
{
    struct jobs_engine *g;
    if (nkinds == 0 || nkinds > 16 || cfg->max_in_flight <= 0 || cfg->max_attempts <= 0 ||
        cfg->claim_idle_ms <= 0 || cfg->backoff_max_ms >= cfg->claim_idle_ms) {
        err_set(e, ERRC_INVALID,
                "jobs: 1 to 16 kinds, max_in_flight, max_attempts and "
                "claim_idle_ms above 0, backoff_max_ms below claim_idle_ms");
        return NULL;
    }
    g = xcalloc(1, sizeof(*g));
    g->base = base;
    g->rblock = rblock;
    g->cfg = *cfg;
    snprintf(g->consumer, sizeof(g->consumer), "%s", cfg->consumer ? cfg->consumer : "jobs");
    g->cfg.consumer = g->consumer;
    g->io = *io;
    g->nk = nkinds;
    g->k = xcalloc(nkinds, sizeof(*g->k));
    for (size_t i = 0; i < nkinds; i++) {
        g->k[i].kind = kinds[i];
        jobs_key_stream(kinds[i], g->k[i].stream, sizeof(g->k[i].stream));
        jobs_key_dlq(kinds[i], g->k[i].dlq, sizeof(g->k[i].dlq));
        jobs_key_due(kinds[i], g->k[i].due, sizeof(g->k[i].due));
    }
    g->kick = evtimer_new(base, on_kick, g);
    if (g->kick == NULL) {
        oom_die(event_get_struct_event_size());
    }
    g->claim = periodic(g, on_claim_timer, cfg->claim_idle_ms / 2 > 0 ? cfg->claim_idle_ms / 2 : 1);
    g->due = periodic(g, on_due_timer, cfg->due_poll_ms > 0 ? cfg->due_poll_ms : 1000);
    g->renew = periodic(g, on_renew_timer, jobs_lease_period_ms(lock_ms_of(g)));
    consumer_kick(g);
    return g;
}

void jobs_engine_drain(struct jobs_engine *g)
{
    if (g != NULL) {
        g->draining = true;
    }
}

size_t jobs_engine_busy(const struct jobs_engine *g)
{
    return g ? g->njobs : 0;
}

void jobs_engine_free(struct jobs_engine *g)
{
    if (g == NULL) {
        return;
    }
    g->stopping = true;
    while (g->jobs) {
        job_free(g->jobs);
    }
    if (g->kick) {
        event_free(g->kick);
    }
    if (g->claim) {
        event_free(g->claim);
    }
    if (g->due) {
        event_free(g->due);
    }
    if (g->renew) {
        event_free(g->renew);
    }
    /* every job was freed above, and with it its flow (io.release), each dropping its lease;
     * what is left are leases of holders outside the engine's jobs, if any, freed here (a holder
     * must not drop one after this). A renewal in flight was cancelled with io's client, which
     * the caller freed first: its dropped leases are freed here too. */
    for (size_t i = 0; i < g->nrenewing; i++) {
        if (g->renewing[i]->dropped) {
            xfree(g->renewing[i]); /* unlinked already */
        }
    }
    while (g->leases) {
        struct jobs_lease *l = g->leases;
        g->leases = l->next;
        xfree(l);
    }
    xfree(g->renewing);
    xfree(g->k);
    xfree(g);
}
