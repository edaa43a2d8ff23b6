/*
 * The job engine (jobs/jobs.h) against a real redis-server ($JITRCA_TEST_REDIS_URL), with AWS
 * and the audit log completed by the test: enqueueing's checks, a kind's states and its record,
 * due-later jobs moved exactly once by two engines, resuming after a crash at each state (the
 * engine freed while an operation is in flight, another one claims the entry), the revoke
 * kind's decisions.
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/util.h"
#include "jobs/jobs.h"
#include "jobs/renewal.h"
#include "store/store.h"
#include "tests/harness/tt.h"

/* ---- the world the test completes ------------------------------------------------------------ */

struct pending_aws {
    enum aws_iot_op op;
    json_t *in;
    aws_iot_cb *cb;
    void *arg;
};

struct world {
    struct event_base *base;
    struct store_async *rs, *rblock;
    struct pending_aws aws[64];
    size_t naws;
    unsigned aws_calls[AWS_IOT__COUNT];
    json_t *audit; /* appended records */
    unsigned audit_checks;
    bool hold_audit; /* leave audit appends pending */
    void (*audit_cb)(void *arg, uint64_t seq, bool found, const struct err *e);
    void *audit_arg;
    unsigned runs; /* state A entered */
};

static struct world W;

/* An engine's own connections, freed before it as a worker does (their callbacks, cancelled,
 * run first). */
struct eng {
    struct jobs_engine *g;
    struct store_async *rs, *rblock;
};

static int w_redis(void *ctx, int argc, const char *const *argv, store_reply_cb *cb, void *arg,
                   struct err *e)
{
    struct eng *x = ctx;
    return store_async_cmd(x->rs, argc, argv, NULL, 5000, cb, arg, e);
}

static int w_aws(void *ctx, enum aws_iot_op op, json_t *in, aws_iot_cb *cb, void *arg,
                 struct err *e)
{
    struct world *w = &W;
    (void)ctx;
    if (w->naws == ARRAY_LEN(w->aws)) {
        return err_set(e, ERRC_UNAVAILABLE, "too many calls");
    }
    w->aws[w->naws++] = (struct pending_aws){ op, json_incref(in), cb, arg };
    w->aws_calls[op]++;
    return 0;
}

/* Completes the oldest pending call: out (taken) or an AWS error code. */
static void aws_answer(json_t *out, const char *code)
{
    struct pending_aws p = W.aws[0];
    struct aws_iot_result r = { .op = p.op, .out = out, .error_code = code ? code : "" };
    struct err e = ERR_INIT;
    memmove(W.aws, W.aws + 1, (W.naws - 1) * sizeof(W.aws[0]));
    W.naws--;
    if (code) {
        err_set(&e, strcmp(code, "ThrottlingException") == 0 ? ERRC_UNAVAILABLE : ERRC_INVALID,
                "AWS %s", code);
    }
    p.cb(p.arg, &r, code ? &e : NULL);
    json_decref(p.in);
    json_decref(out);
}

static int w_audit(void *ctx, json_t *rec, bool check, uint64_t after,
                   void (*cb)(void *arg, uint64_t seq, bool found, const struct err *e), void *arg,
                   struct err *e)
{
    struct world *w = &W;
    size_t i;
    (void)ctx;
    json_t *x;
    (void)after;
    (void)e;
    if (check) {
        w->audit_checks++;
        json_array_foreach(w->audit, i, x)
        {
            if (json_equal(json_object_get(x, "type"), json_object_get(rec, "type")) &&
                json_equal(json_object_get(x, "certificate_id"),
                           json_object_get(rec, "certificate_id"))) {
                cb(arg, i + 1, true, NULL);
                return 0;
            }
        }
    }
    json_array_append_new(w->audit, json_deep_copy(rec));
    if (w->hold_audit) {
        w->audit_cb = cb;
        w->audit_arg = arg;
        return 0;
    }
    cb(arg, json_array_size(w->audit), false, NULL);
    return 0;
}

static uint64_t w_mark(void *ctx)
{
    (void)ctx;
    return json_array_size(W.audit);
}

/* ---- a test kind: A (an AWS call) → B (an AWS call) → finish -------------------------------- */

static void st_a(struct jobs_job *j)
{
    if (!jobs_have_result(j)) {
        W.runs++;
        jobs_aws(j, AWS_IOT_DESCRIBE_THING, json_pack("{s:s}", "thingName", jobs_key(j)));
        return;
    }
    if (jobs_result_err(j)->code != ERRC_OK) {
        jobs_fail_op(j, "DescribeThing");
        return;
    }
    jobs_set(j, "a", "1");
    jobs_next(j, "B");
}

static void st_b(struct jobs_job *j)
{
    if (!jobs_have_result(j)) {
        jobs_aws(j, AWS_IOT_CREATE_THING, json_pack("{s:s}", "thingName", jobs_key(j)));
        return;
    }
    if (jobs_result_err(j)->code != ERRC_OK) {
        jobs_fail_op(j, "CreateThing");
        return;
    }
    jobs_finish(j, strcmp(jobs_get(j, "a"), "1") == 0 ? "made" : "lost-a",
                json_pack("{s:s}", "extra", jobs_get(j, "extra")));
}

static const struct jobs_state t_states[] = { { "A", st_a }, { "B", st_b } };
static char kname[32];
static struct jobs_kind tkind = {
    .name = kname,
    .description = "test",
    .key_field = "cert",
    .cert_lock = true,
    .audit_type = "test_done",
    .states = t_states,
    .nstates = 2,
};

static json_t *redis_json(const char *const *av, int ac);

/* Deletes a kind's stream, due set and dead letters and a key's record and lock, and waits for
 * the reply (a case must not start on the last one's keys). */
static void keys_clear(const struct jobs_kind *k, const char *key)
{
    char a[320], b[320], c[320], d[320], l[320];
    jobs_key_stream(k, a, sizeof(a));
    jobs_key_due(k, b, sizeof(b));
    jobs_key_dlq(k, c, sizeof(c));
    jobs_key_record(k, key, d, sizeof(d));
    snprintf(l, sizeof(l), STORE_PREFIX "jitr:lock:%s", key);
    const char *av[] = { "DEL", a, b, c, d, l };
    json_t *r = redis_json(av, 6);
    if (!json_is_integer(r)) {
        fprintf(stderr, "DEL of %s's keys failed\n", key);
    }
    json_decref(r);
}

/* Runs the loop until cond() or ms pass. */
static bool run_until(bool (*cond)(void), int ms)
{
    int64_t end = time_now_ms() + ms;
    while (time_now_ms() < end) {
        if (cond && cond()) {
            return true;
        }
        struct timeval tv = { 0, 20000 };
        event_base_loopexit(W.base, &tv);
        event_base_dispatch(W.base);
    }
    return cond ? cond() : true;
}

static struct eng engines[16];
static size_t nengines;

static struct jobs_engine *engine(const char *consumer, int64_t claim_idle_ms)
{
    struct jobs_config cfg = { .consumer = consumer,
                               .max_in_flight = 8,
                               .max_attempts = 3,
                               .backoff_ms = 50,
                               .backoff_max_ms = 100,
                               .claim_idle_ms = claim_idle_ms,
                               .due_poll_ms = 100,
                               .lock_ms = 600 };
    struct eng *x = &engines[nengines++ % ARRAY_LEN(engines)];
    struct jobs_io io = {
        .ctx = x, .redis = w_redis, .aws = w_aws, .audit = w_audit, .audit_mark = w_mark
    };
    const struct jobs_kind *kinds[] = { &tkind, &jobs_kind_revoke };
    struct err e = ERR_INIT;
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    x->rs = store_async_new(W.base, url, &e);
    x->rblock = store_async_new(W.base, url, &e);
    x->g = jobs_engine_new(W.base, x->rblock, kinds, 2, &cfg, &io, &e);
    if (x->g == NULL) {
        fprintf(stderr, "engine: %s\n", e.msg);
    }
    return x->g;
}

/* Stops an engine as a worker does: its connections first, then the engine. */
static void engine_free(struct jobs_engine *g)
{
    for (size_t i = 0; g != NULL && i < ARRAY_LEN(engines); i++) {
        if (engines[i].g == g) {
            store_async_free(engines[i].rblock);
            store_async_free(engines[i].rs);
            jobs_engine_free(g);
            memset(&engines[i], 0, sizeof(engines[i]));
            return;
        }
    }
}

struct reply_box {
    bool done;
    json_t *v;
};

static void on_box(void *arg, const struct store_reply *r, const struct err *e)
{
    struct reply_box *b = arg;
    b->done = true;
    b->v = e ? NULL : jobs_reply_json(r);
    b->v = b->v ? b->v : json_null();
}

static struct reply_box *cur_box;
static bool box_done(void)
{
    return cur_box->done;
}

static json_t *redis_json(const char *const *av, int ac)
{
    struct reply_box b = { false, NULL };
    struct err e = ERR_INIT;
    if (store_async_cmd(W.rs, ac, av, NULL, 5000, on_box, &b, &e) != 0) {
        return json_null();
    }
    cur_box = &b;
    run_until(box_done, 5000);
    return b.v ? b.v : json_null();
}

static const char *rec_field(const char *key, const char *f, char *out, size_t cap)
{
    char rk[320];
    jobs_key_record(&tkind, key, rk, sizeof(rk));
    const char *av[] = { "HGET", rk, f };
    json_t *v = redis_json(av, 3);
    snprintf(out, cap, "%s", json_is_string(v) ? json_string_value(v) : "");
    json_decref(v);
    return out;
}

static int enqueue(const struct jobs_kind *k, const char *key, int64_t nb, const char *extra)
{
    const char *f[] = { "extra", extra, "serial", "0a" };
    struct jobs_new v = {
        .kind = k, .key = key, .fields = f, .nfields = 2, .not_before_ms = nb, .src = "test"
    };
    struct reply_box b = { false, NULL };
    struct err e = ERR_INIT;
    if (jobs_enqueue(W.rs, &v, 1, on_box, &b, &e) != 0) {
        return -1;
    }
    cur_box = &b;
    run_until(box_done, 5000);
    json_decref(b.v);
    return 0;
}

static bool aws_pending(void)
{
    return W.naws > 0;
}

static const char *waiting_key;
static bool rec_done(void)
{
    char st[32];
    return strcmp(rec_field(waiting_key, "state", st, sizeof(st)), "DONE") == 0;
}

static int setup(void)
{
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    struct err e = ERR_INIT;
    if (url == NULL) {
        fprintf(stderr, "  needs JITRCA_TEST_REDIS_URL (run under ctest)\n");
        return -1;
    }
    memset(&W, 0, sizeof(W));
    W.base = event_base_new();
    W.rs = store_async_new(W.base, url, &e);
    W.rblock = W.rs ? store_async_new(W.base, url, &e) : NULL;
    W.audit = json_array();
    snprintf(kname, sizeof(kname), "t%ld", (long)getpid());
    return W.rblock ? 0 : -1;
}

static void teardown(void)
{
    while (W.naws) {
        json_decref(W.aws[--W.naws].in);
    }
    store_async_free(W.rblock);
    store_async_free(W.rs);
    json_decref(W.audit);
    event_base_free(W.base);
}

/* ---- cases ---------------------------------------------------------------------------------- */

static int test_enqueue_checks(void)
{
    int rc = 0;
    struct jobs_argv a;
    struct err e = ERR_INIT;
    const char *f[] = { "x", "y" };
    struct jobs_new ok = { .kind = &jobs_kind_revoke, .key = "abc", .fields = f, .nfields = 1 };
    struct jobs_new bad = ok;
    CHECK_OK(jobs_enqueue_argv(&ok, 1, 1000, &a, &e), &e);
    CHECK_STR_EQ(a.argv[0], "EVAL");
    CHECK_STR_EQ(a.argv[3], STORE_PREFIX "jobs:revoke:queue");
    CHECK_STR_EQ(a.argv[4], STORE_PREFIX "jobs:revoke:due");
    jobs_argv_release(&a);
    bad.key = "";
    CHECK(jobs_enqueue_argv(&bad, 1, 0, &a, &e) == -1 && e.code == ERRC_INVALID);
    bad.key = "a b";
    CHECK(jobs_enqueue_argv(&bad, 1, 0, &a, &e) == -1);
    bad = ok;
    bad.nfields = JOBS_FIELDS_MAX;
    CHECK(jobs_enqueue_argv(&bad, 1, 0, &a, &e) == -1);
    CHECK(jobs_enqueue_argv(&ok, 0, 0, &a, &e) == -1);
    CHECK(jobs_kind_find("revoke") == &jobs_kind_revoke);
    CHECK(jobs_kind_find("jitr") == &jobs_kind_jitr);
    CHECK(jobs_kind_find("nope") == NULL);
    {
        char k[200];
        jobs_key_stream(&jobs_kind_jitr, k, sizeof(k));
        CHECK_STR_EQ(k, STORE_PREFIX "jitr:events");
        jobs_key_record(&jobs_kind_jitr, "ab", k, sizeof(k));
        CHECK_STR_EQ(k, STORE_PREFIX "jitr:dev:ab");
        jobs_key_dlq(&jobs_kind_jitr, k, sizeof(k));
        CHECK_STR_EQ(k, STORE_PREFIX "jitr:dlq");
        /* the keys store/store.c's scripts write jobs to: a revocation's, a renewal's retirement
         * that an index rebuild queues again */
        jobs_key_stream(&jobs_kind_revoke, k, sizeof(k));
        CHECK_STR_EQ(k, STORE_PREFIX STORE_KEY_REVOKE_JOBS);
        jobs_key_record(&jobs_kind_revoke, "", k, sizeof(k));
        CHECK_STR_EQ(k, STORE_PREFIX STORE_KEY_REVOKE_JOB);
        jobs_key_stream(&jobs_kind_renewal, k, sizeof(k));
        CHECK_STR_EQ(k, STORE_PREFIX STORE_KEY_RENEWAL_JOBS);
        jobs_key_due(&jobs_kind_renewal, k, sizeof(k));
        CHECK_STR_EQ(k, STORE_PREFIX STORE_KEY_RENEWAL_DUE);
        jobs_key_record(&jobs_kind_renewal, "", k, sizeof(k));
        CHECK_STR_EQ(k, STORE_PREFIX STORE_KEY_RENEWAL_JOB);
    }
    {
        /* a renewal's entry, field by field as store_renewal_jobs_requeue writes it (the
         * index rebuild's test checks that side against the same list) */
        static const char *const want[] = { "cert",  "ID",   "serial", "0b",   "renews", "0a",
                                            "thing", "dev1", "src",    "jitr", "enq_ms", "1000" };
        struct jobs_renewal_new jn;
        jobs_renewal_job(&jn, "ID", "0b", "0a", "dev1", 1000, 0);
        CHECK_OK(jobs_enqueue_argv(&jn.v, 1, 1000, &a, &e), &e);
        /* EVAL script numkeys stream due now not_before nfields, then the fields */
        CHECK_INT_EQ(a.argc, 8 + ARRAY_LEN(want));
        CHECK_STR_EQ(a.argv[7], "12");
        for (size_t i = 0; i < ARRAY_LEN(want); i++) {
            CHECK_STR_EQ(a.argv[8 + i], want[i]);
        }
        jobs_argv_release(&a);
    }
out:
    return rc;
}

/* A job through both states: the record, the audit record, the stats; a duplicate entry. */
static int test_kind_states(void)
{
    int rc = 0;
    char v[64];
    struct jobs_engine *g = NULL;
    if (setup() != 0) {
        return TT_SKIP;
    }
    keys_clear(&tkind, "k1");
    g = engine("c1", 2000);
    CHECK(enqueue(&tkind, "k1", 0, "x1") == 0);
    CHECK(run_until(aws_pending, 3000));
    CHECK_INT_EQ(W.aws[0].op, AWS_IOT_DESCRIBE_THING);
    CHECK_STR_EQ(rec_field("k1", "state", v, sizeof(v)), ""); /* nothing saved before A's end */
    aws_answer(json_object(), NULL);
    CHECK(run_until(aws_pending, 3000));
    CHECK_INT_EQ(W.aws[0].op, AWS_IOT_CREATE_THING);
    CHECK_STR_EQ(rec_field("k1", "state", v, sizeof(v)), "B");
    CHECK_STR_EQ(rec_field("k1", "a", v, sizeof(v)), "1");
    aws_answer(json_object(), NULL);
    waiting_key = "k1";
    CHECK(run_until(rec_done, 3000));
    CHECK_STR_EQ(rec_field("k1", "outcome", v, sizeof(v)), "made");
    CHECK_INT_EQ(json_array_size(W.audit), 1);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(W.audit, 0), "type")),
                 "test_done");
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(W.audit, 0), "certificate_id")),
                 "k1");
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(W.audit, 0), "extra")), "x1");
out:
    engine_free(g);
    teardown();
    return rc;
}

static bool two_runs(void)
{
    return W.runs >= 1 && W.naws > 0;
}

/* Due later: not run before its time, moved once although two engines poll. */
static int test_due_later(void)
{
    int rc = 0;
    struct jobs_engine *g1 = NULL, *g2 = NULL;
    char due[200];
    if (setup() != 0) {
        return TT_SKIP;
    }
    keys_clear(&tkind, "k2");
    jobs_key_due(&tkind, due, sizeof(due));
    g1 = engine("c1", 2000);
    g2 = engine("c2", 2000);
    CHECK(enqueue(&tkind, "k2", time_now_ms() + 600, "due") == 0);
    {
        const char *av[] = { "ZCARD", due };
        json_t *n = redis_json(av, 2);
        CHECK_INT_EQ(json_integer_value(n), 1);
        json_decref(n);
    }
    run_until(NULL, 300);
    CHECK_INT_EQ(W.runs, 0); /* not yet */
    CHECK(run_until(two_runs, 3000));
    run_until(NULL, 500); /* both engines polled again: still one run */
    CHECK_INT_EQ(W.runs, 1);
    CHECK_INT_EQ(W.naws, 1);
    {
        const char *av[] = { "ZCARD", due };
        json_t *n = redis_json(av, 2);
        CHECK_INT_EQ(json_integer_value(n), 0);
        json_decref(n);
    }
    aws_answer(json_object(), NULL);
    CHECK(run_until(aws_pending, 3000));
    aws_answer(json_object(), NULL);
    waiting_key = "k2";
    CHECK(run_until(rec_done, 3000));
out:
    engine_free(g1);
    engine_free(g2);
    teardown();
    return rc;
}

/* A crash (the engine freed with an operation in flight) in A, in B, and in RECORD: another
 * engine claims the entry after claim_idle_ms and resumes at the saved state; A is not run
 * again once B is saved; the audit record is written once. */
static int crash_at(const char *key, int where)
{
    int rc = 0;
    char v[64];
    struct jobs_engine *g = NULL;
    keys_clear(&tkind, key);
    W.runs = 0;
    memset(W.aws_calls, 0, sizeof(W.aws_calls));
    json_array_clear(W.audit);
    W.audit_checks = 0;
    g = engine("dead", 400);
    CHECK(enqueue(&tkind, key, 0, "crash") == 0);
    CHECK(run_until(aws_pending, 3000));
    if (where >= 1) {
        aws_answer(json_object(), NULL);
        CHECK(run_until(aws_pending, 3000)); /* in B */
    }
    if (where == 2) {
        W.hold_audit = true;
        aws_answer(json_object(), NULL);
        run_until(NULL, 300); /* the append is "in flight" */
        CHECK_STR_EQ(rec_field(key, "state", v, sizeof(v)), "RECORD");
        CHECK_INT_EQ(json_array_size(W.audit), 1); /* appended, not acknowledged */
        W.hold_audit = false;
    }
    engine_free(g); /* the crash: the entry stays pending */
    while (W.naws) {
        json_decref(W.aws[--W.naws].in);
    }
    W.audit_cb = NULL;
    run_until(NULL, 700); /* the lock (600 ms) lapses, the entry idles */
    g = engine("alive", 400);
    if (where < 2) {
        CHECK(run_until(aws_pending, 5000));
        CHECK_INT_EQ(W.aws[0].op, where == 0 ? AWS_IOT_DESCRIBE_THING : AWS_IOT_CREATE_THING);
        if (where == 0) {
            aws_answer(json_object(), NULL);
            CHECK(run_until(aws_pending, 3000));
        }
        aws_answer(json_object(), NULL);
    }
    waiting_key = key;
    CHECK(run_until(rec_done, 5000));
    CHECK_STR_EQ(rec_field(key, "outcome", v, sizeof(v)), "made");
    CHECK_INT_EQ(W.aws_calls[AWS_IOT_DESCRIBE_THING], where == 0 ? 2 : 1);
    CHECK_INT_EQ(W.aws_calls[AWS_IOT_CREATE_THING], where == 1 ? 2 : 1);
    CHECK_INT_EQ(json_array_size(W.audit), 1);
    CHECK_INT_EQ(W.audit_checks, where == 2 ? 1 : 0);
out:
    engine_free(g);
    return rc;
}

static int test_resume(void)
{
    int rc = 0;
    if (setup() != 0) {
        return TT_SKIP;
    }
    if (crash_at("r0", 0) != 0 || crash_at("r1", 1) != 0 || crash_at("r2", 2) != 0) {
        rc = 1;
    }
    teardown();
    return rc;
}

/* A job that waits (its AWS call unanswered: a pacing turn, a slow API) three times claim_idle_ms
 * stays its worker's: the other worker, alive all along, claims nothing and calls nothing; the
 * entry is still pending for the first; answered, the job ends once. */
static int test_waiting_kept(void)
{
    int rc = 0;
    char stream[200], v[64], claimed_f[64], claimed0[24];
    struct jobs_engine *g1 = NULL, *g2 = NULL;
    json_t *p = NULL, *st = NULL;
    if (setup() != 0) {
        return TT_SKIP;
    }
    keys_clear(&tkind, "w1");
    jobs_key_stream(&tkind, stream, sizeof(stream));
    snprintf(claimed_f, sizeof(claimed_f), "%s:claimed", tkind.name);
    {
        const char *av[] = { "HGET", STORE_PREFIX "jobs:stats", claimed_f };
        st = redis_json(av, 3);
        snprintf(claimed0, sizeof(claimed0), "%s",
                 json_is_string(st) ? json_string_value(st) : "0");
        json_decref(st);
        st = NULL;
    }
    g1 = engine("first", 400);
    CHECK(enqueue(&tkind, "w1", 0, "wait") == 0);
    CHECK(run_until(aws_pending, 3000));
    g2 = engine("second", 400);
    run_until(NULL, 1500);
    CHECK_INT_EQ(W.aws_calls[AWS_IOT_DESCRIBE_THING], 1);
    CHECK_INT_EQ(W.naws, 1);
    {
        const char *av[] = { "XPENDING", stream, JOBS_GROUP, "-", "+", "10" };
        p = redis_json(av, 6);
        CHECK_INT_EQ(json_array_size(p), 1);
        CHECK_STR_EQ(json_string_value(json_array_get(json_array_get(p, 0), 1)), "first");
        /* delivered once: the touches are not deliveries */
        CHECK_INT_EQ(json_integer_value(json_array_get(json_array_get(p, 0), 3)), 1);
    }
    {
        /* the claims counted for the test kind (the earlier cases' among them): none since */
        const char *av[] = { "HGET", STORE_PREFIX "jobs:stats", claimed_f };
        st = redis_json(av, 3);
        CHECK_STR_EQ(json_is_string(st) ? json_string_value(st) : "0", claimed0);
    }
    aws_answer(json_object(), NULL);
    CHECK(run_until(aws_pending, 3000));
    aws_answer(json_object(), NULL);
    waiting_key = "w1";
    CHECK(run_until(rec_done, 5000));
    CHECK_STR_EQ(rec_field("w1", "outcome", v, sizeof(v)), "made");
    CHECK_INT_EQ(W.aws_calls[AWS_IOT_DESCRIBE_THING], 1);
    CHECK_INT_EQ(W.aws_calls[AWS_IOT_CREATE_THING], 1);
out:
    json_decref(p);
    json_decref(st);
    engine_free(g2);
    engine_free(g1);
    teardown();
    return rc;
}

/* Failures: retried with backoff, then a dead letter with the state and the reason. */
static bool dead_one(void)
{
    char v[32];
    return strcmp(rec_field("k3", "state", v, sizeof(v)), "DEAD") == 0;
}

static int test_dead_letter(void)
{
    int rc = 0;
    char dlq[200];
    struct jobs_engine *g = NULL;
    if (setup() != 0) {
        return TT_SKIP;
    }
    keys_clear(&tkind, "k3");
    jobs_key_dlq(&tkind, dlq, sizeof(dlq));
    g = engine("c1", 2000);
    CHECK(enqueue(&tkind, "k3", 0, "fail") == 0);
    for (int i = 0; i < 3; i++) {
        CHECK(run_until(aws_pending, 3000));
        aws_answer(NULL, "ThrottlingException");
    }
    CHECK(run_until(dead_one, 3000));
    {
        const char *av[] = { "XRANGE", dlq, "-", "+" };
        json_t *r = redis_json(av, 4);
        char *s = json_dumps(r, JSON_COMPACT);
        CHECK_INT_EQ(json_array_size(r), 1);
        CHECK_STR_CONTAINS(s, "\"state\",\"A\"");
        CHECK_STR_CONTAINS(s, "DescribeThing: AWS ThrottlingException");
        CHECK_STR_CONTAINS(s, "\"extra\",\"fail\"");
        xfree(s);
        json_decref(r);
    }
    CHECK_INT_EQ(W.aws_calls[AWS_IOT_DESCRIBE_THING], 3);
out:
    engine_free(g);
    teardown();
    return rc;
}

/* The lock is a lease (jobs.h, docs/jobs.md "The lock is a lease"): the decision alone, then a
 * job whose AWS call takes 2.5 lock_ms keeps its lock (renewed, never re-taken), and a job whose
 * lock Redis lost sends no further AWS call under it: the run is retried and takes it again. */
static int test_lease(void)
{
    int rc = 0;
    struct jobs_engine *g = NULL;
    char lock[320], v[64];
    const char *key = "lease1";
    /* the decision: 9/10 of lock_ms since the last confirmed renewal, and never once lost */
    CHECK(jobs_lease_valid(false, 1000, 1539, 600));
    CHECK(!jobs_lease_valid(false, 1000, 1540, 600));
    CHECK(!jobs_lease_valid(true, 1000, 1000, 600));
    CHECK(jobs_lease_valid(false, 1000, 1000, 60000));
    CHECK_INT_EQ(jobs_lease_period_ms(600), 200);
    CHECK_INT_EQ(jobs_lease_period_ms(2), 1);
    if (setup() != 0) {
        return TT_SKIP;
    }
    keys_clear(&tkind, key);
    keys_clear(&tkind, "lease2");
    snprintf(lock, sizeof(lock), STORE_PREFIX "jitr:lock:%s", key);
    g = engine("leaser", 5000);
    CHECK(g != NULL);
    CHECK(enqueue(&tkind, key, 0, "x") == 0);
    CHECK(run_until(aws_pending, 5000));
    CHECK_INT_EQ(W.aws[0].op, AWS_IOT_DESCRIBE_THING);
    run_until(NULL, 1500); /* 2.5 lock_ms with DescribeThing unanswered */
    {
        const char *av[] = { "PTTL", lock };
        json_t *t = redis_json(av, 2);
        CHECK(json_is_integer(t) && json_integer_value(t) > 0); /* renewed: still there */
        json_decref(t);
    }
    aws_answer(json_object(), NULL);
    CHECK(run_until(aws_pending, 3000));
    CHECK_INT_EQ(W.aws[0].op, AWS_IOT_CREATE_THING); /* still held: sent */
    /* Redis loses the lock while CreateThing is in flight: the renewal finds it gone and does
     * not take it again; the next call (none here: the job ends) would not be sent */
    {
        const char *av[] = { "DEL", lock };
        json_decref(redis_json(av, 2));
    }
    run_until(NULL, 500);
    {
        const char *av[] = { "EXISTS", lock };
        json_t *t = redis_json(av, 2);
        CHECK(json_is_integer(t) && json_integer_value(t) == 0); /* never re-taken */
        json_decref(t);
    }
    aws_answer(json_object(), NULL);
    waiting_key = key;
    CHECK(run_until(rec_done, 5000));
    /* a second job: its lock is lost while DescribeThing is in flight; CreateThing is not sent
     * under the lost lock, the run is retried (one failed attempt), takes the lock again and
     * sends it then */
    snprintf(lock, sizeof(lock), STORE_PREFIX "jitr:lock:%s", "lease2");
    CHECK(enqueue(&tkind, "lease2", 0, "x") == 0);
    CHECK(run_until(aws_pending, 5000));
    CHECK_INT_EQ(W.aws[0].op, AWS_IOT_DESCRIBE_THING);
    {
        const char *av[] = { "DEL", lock };
        json_decref(redis_json(av, 2));
    }
    run_until(NULL, 500); /* a renewal finds it gone */
    CHECK_INT_EQ(W.aws_calls[AWS_IOT_CREATE_THING], 1);
    aws_answer(json_object(), NULL);
    CHECK(run_until(aws_pending, 3000));
    CHECK_INT_EQ(W.aws[0].op, AWS_IOT_CREATE_THING);
    CHECK_INT_EQ(W.aws_calls[AWS_IOT_DESCRIBE_THING], 2); /* the first job's only */
    aws_answer(json_object(), NULL);
    waiting_key = "lease2";
    CHECK(run_until(rec_done, 5000));
    CHECK_STR_EQ(rec_field("lease2", "attempts", v, sizeof(v)), "1");
    CHECK_INT_EQ(W.aws_calls[AWS_IOT_CREATE_THING], 2);
out:
    engine_free(g);
    teardown();
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "enqueue_checks", test_enqueue_checks },
        { "kind_states", test_kind_states },
        { "due_later", test_due_later },
        { "resume", test_resume },
        { "dead_letter", test_dead_letter },
        { "waiting_kept", test_waiting_kept },
        { "lease", test_lease },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
