/*
 * jobs/: the durable job engine (docs/jobs.md). Everything jitrd changes in AWS IoT is a job:
 * JITR provisioning (kind "jitr", jitr/), a revocation reaching AWS (kind "revoke",
 * jobs/revoke.c), and the kinds added after them. One mechanism for every kind:
 *
 *   queue       a Redis stream per kind, consumer group "jitr" for all (one blocking read
 *               covers every kind's stream; the name is the one JITR's stream had first); an entry
 * is acknowledged only after the job ended (done, or dead-lettered), so a crash leaves it pending
 * and XAUTOCLAIM hands it to another worker due later   a sorted set per kind (score: the
 * not-before time in ms); whichever worker's timer finds an entry due moves it to the stream in one
 * script (ZREM and XADD together: exactly once) the record  a hash per job key: the state to run
 * next (a crash resumes there), attempts, the outcome and what the kind saved; written after every
 * state the lock    one per certificate, shared with JITR (jitr:lock:<certificateId>): a revoke job
 *               and a provisioning flow of one certificate never run at once
 *   pacing      every AWS call goes through the worker's aws_iot client, whose per-operation
 *               token buckets in Redis are shared by every process (aws/iot.h)
 *   retries     a failed run is retried after a capped exponential backoff; max_attempts
 *               failures, or a permanent error, put the job in the kind's dead-letter stream,
 *               from which `jitrctl jobs dlq retry` takes it back
 *   audit       a kind's final state appends one audit record (type kind->audit_type), durably,
 *               off the loop, at most once (a replay looks for it first)
 *
 * Redis keys (prefix "jitrca:"; the "jitr" kind keeps its older names, in brackets):
 *   jobs:<kind>:queue   stream of jobs to run (jitr:events), consumer group "jitr"
 *   jobs:<kind>:due     sorted set: member = the job's fields as a JSON array, score = the
 *                       not-before time (ms since the epoch)
 *   jobs:<kind>:dlq     stream of dead letters: the job's fields + state, attempts, error,
 *                       dead_ms (jitr:dlq)
 *   jobs:<kind>:<key>   hash: the job record (jitr:dev:<certificateId>), see struct jobs_job
 *   jobs:stats          hash: <kind>:<outcome> counters (AWS calls are counted by the host,
 *                       in jitr:stats: aws:<Operation>:<result>)
 *   jitr:lock:<key>     the certificate's lock (SET NX PX, released by its owner only),
 *                       renewed every lock_ms/3 while its holder lives (the leases below)
 *
 * Adding a kind: a struct jobs_kind (its name, key field, states table and audit type) in a
 * file of its own, listed in jobs_kinds[] (jobs/kinds.c); its state functions use the calls
 * below and nothing else to reach Redis, AWS and the audit log; enqueue with jobs_enqueue (on a
 * loop) or jobs_enqueue_argv (the command, for a synchronous client).
 */
#ifndef JOBS_JOBS_H
#define JOBS_JOBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws/iot.h"
#include "core/compat.h"
#include "core/err.h"
#include "store/async.h"

#define JOBS_KEY_MAX    128 /* bytes of a job key (a certificateId is 64) */
#define JOBS_FIELDS_MAX 24  /* fields of a job (name, value pairs count as one) */
#define JOBS_VALUE_MAX  512 /* bytes of a field's value */

struct jobs_job;
struct jobs_engine;

/* ---- kinds ---------------------------------------------------------------------------------- */

/* One state of a kind. fn follows the pattern of jitr/flow.c: called once to start the state's
 * operation (jobs_redis, jobs_aws, jobs_audit) and return; called again with the result
 * (jobs_have_result true) to read it and move on with exactly one of jobs_next, jobs_finish,
 * jobs_retry or jobs_dead. A state without an operation moves on at once. */
typedef void jobs_state_fn(struct jobs_job *j);
struct jobs_state {
    const char *name; /* stored as the resume point: "DESCRIBE", "UPDATE", ... */
    jobs_state_fn *fn;
};

struct jobs_kind {
    const char *name;        /* "revoke": [a-z0-9-], in the keys and on the command line */
    const char *description; /* one line for `jitrctl jobs status` */
    const char *key_field;   /* the entry field holding the job key ("key"; JITR's "cert") */
    bool cert_lock;          /* the key is a certificateId: hold jitr:lock:<key> while running
                                (a host-run kind takes it itself: JITR's flow does) */
    const char *audit_type;  /* "type" of the record jobs_finish appends; NULL: none */
    const struct jobs_state *states; /* states[0] runs first; NULL: the host runs the job
                                        (JITR: jitr/flow.c), see struct jobs_io.run */
    size_t nstates;
    /* the keys, without STORE_PREFIX; NULL: jobs:<name>:queue, jobs:<name>:dlq, jobs:<name>: */
    const char *stream;
    const char *dlq;
    const char *record_prefix;
};

/* Every kind, in the order `jitrctl jobs status` lists them (jobs/kinds.c). */
extern const struct jobs_kind *const jobs_kinds[];
extern const size_t jobs_nkinds;
/* The kind of that name, or NULL. */
const struct jobs_kind *jobs_kind_find(const char *name);
/* The kind's keys with STORE_PREFIX (out: at least 160 bytes). */
void jobs_key_stream(const struct jobs_kind *k, char *out, size_t cap);
void jobs_key_due(const struct jobs_kind *k, char *out, size_t cap);
void jobs_key_dlq(const struct jobs_kind *k, char *out, size_t cap);
#define JOBS_GROUP "jitr" /* every kind's consumer group */
/* The record of one job: prefix + key. */
void jobs_key_record(const struct jobs_kind *k, const char *key, char *out, size_t cap);

/* The kinds of this release. */
extern const struct jobs_kind jobs_kind_jitr;   /* JITR provisioning (jitr/flow.c runs it) */
extern const struct jobs_kind jobs_kind_revoke; /* our index's status reaches AWS (revoke.c) */
extern const struct jobs_kind jobs_kind_register; /* registered before shipping (register.c) */

/* ---- enqueueing ----------------------------------------------------------------------------- */

/* A job to add: kind, key, its fields (name, value pairs, borrowed), and a not-before time:
 * 0 or a time at or before now queues it at once, a later one puts it in the kind's due set. */
struct jobs_new {
    const struct jobs_kind *kind;
    const char *key;
    const char *const *fields; /* nfields pairs: fields[2i] name, fields[2i+1] value */
    size_t nfields;
    int64_t not_before_ms;
    const char *src; /* who asks: "revoke", "reconcile", "dlq-retry", ... (stored as src) */
};

/* The command that enqueues n (1..64) jobs in one script (EVAL ... : XADD or ZADD each), for a
 * synchronous client or an async one. *out receives argc strings; free with
 * jobs_argv_release. ERRC_INVALID for a bad key (empty, too long, not printable), too many
 * fields, a value too long. */
struct jobs_argv {
    size_t argc;
    char **argv;
    size_t *lens;
};
int jobs_enqueue_argv(const struct jobs_new *v, size_t n, int64_t now_ms, struct jobs_argv *out,
                      struct err *e) ATTR_WUR;
void jobs_argv_release(struct jobs_argv *a);

/* On a loop: enqueues n jobs with store_async_cmd on rs (cb as store_async_cmd's: e == NULL once
 * Redis stored them all). */
int jobs_enqueue(struct store_async *rs, const struct jobs_new *v, size_t n, store_reply_cb *cb,
                 void *arg, struct err *e) ATTR_WUR;

/* The revocation's job is enqueued by store/'s revocation script itself (store_certs_revoke),
 * atomically with the index update, with the fields jobs_enqueue_argv would write: a crash
 * between the two cannot lose it. */

/* ---- inside a state function ---------------------------------------------------------------- */

/* The job's key and kind. */
const char *jobs_key(const struct jobs_job *j);
const struct jobs_kind *jobs_kind_of(const struct jobs_job *j);
/* A field of the job: the stream entry's, overlaid by the record's (what earlier runs saved
 * with jobs_set); "" when absent. */
const char *jobs_get(const struct jobs_job *j, const char *name);
/* Saves a field into the record with the next jobs_next / jobs_finish (and jobs_get sees it at
 * once). */
void jobs_set(struct jobs_job *j, const char *name, const char *value);
/* The host's context for kinds that need it (jobs_io.kind_ctx). */
void *jobs_kind_ctx(const struct jobs_job *j);

/* A failed operation (jobs_result_err): transient errors (unavailable, timeout, throttling
 * after the client's retries) → jobs_retry, the others (AWS 4xx) → jobs_dead; what names the
 * operation in the message. */
void jobs_fail_op(struct jobs_job *j, const char *what);

/* Operations: each starts one and returns; the state function runs again with the result. */
void jobs_redis(struct jobs_job *j, int argc, const char *const *argv);
/* in is taken. Paced by the worker's client (shared token buckets), counted by the host. */
void jobs_aws(struct jobs_job *j, enum aws_iot_op op, json_t *in);
/* Our index's record of the certificate serial (cert:<serial>, read only while the index is
 * complete): starts the read; a serial that is no serial dead-letters the job (what names it in
 * the message). Then, with the result, jobs_cert_record gives the record (a new reference; {}
 * when the index has no such certificate), or NULL when the read failed: the job then waits for
 * the index's rebuild (jobs_busy) or is retried (jobs_fail_op), and the state returns. */
void jobs_cert_lookup(struct jobs_job *j, const char *serial, const char *what);
json_t *jobs_cert_record(struct jobs_job *j);

/* An operation of the host's own (kind_ctx's: work off the loop, e.g. a revocation through the
 * issuance path): the state function calls jobs_host_begin, then starts it; its completion, on
 * the loop and exactly once, calls jobs_host_done with its error (NULL or ERRC_OK: success) and
 * result (taken, may be NULL), and the state function runs again with them. A host frees its
 * pending operations without completing them before jobs_engine_free. */
void jobs_host_begin(struct jobs_job *j);
void jobs_host_done(struct jobs_job *j, const struct err *e, json_t *result);

/* The result of the state's operation. */
bool jobs_have_result(const struct jobs_job *j);
const struct err *jobs_result_err(const struct jobs_job *j); /* code ERRC_OK on success */
const char *jobs_result_aws_code(const struct jobs_job *j);  /* "" or AWS's error code */
/* The reply: an AWS call's output object; a Redis string, integer or array as a JSON string,
 * integer or array, nil as NULL. Borrowed until the next operation. */
json_t *jobs_result(const struct jobs_job *j);
/* A Redis array of name, value, ... (HGETALL) as an object (a new reference; {} for others). */
json_t *jobs_result_pairs(const struct jobs_job *j);
/* A Redis reply as JSON (a new reference): a string, an integer, an array (nil elements as
 * null); NULL for nil. */
json_t *jobs_reply_json(const struct store_reply *r);

/* Moving on (exactly one per run of a state function that has its result, or none). */
/* Saves the record with state next (and the fields set), then runs next. */
void jobs_next(struct jobs_job *j, const char *next);
/* The job is over: outcome ("revoked", "inactive", "unknown", ...) is saved in the record with
 * state DONE; when the kind has an audit_type, rec (taken; NULL: {}) gets "type", "kind",
 * "key", "outcome" and the fields set, and is appended first, at most once. */
void jobs_finish(struct jobs_job *j, const char *outcome, json_t *rec);
/* A transient failure (Redis, AWS throttling or 5xx, another worker holds the lock): run again
 * from the saved state after a backoff; max_attempts of them make a dead letter. */
void jobs_retry(struct jobs_job *j, const struct err *why);
/* Not a failure: something the job needs is not there yet (the index being rebuilt): run
 * again after a backoff, never dead-lettered for it. */
void jobs_busy(struct jobs_job *j, const struct err *why);
/* A permanent failure: the dead-letter stream, now. */
void jobs_dead(struct jobs_job *j, const struct err *why);

/* ---- the engine in a jitrd worker ----------------------------------------------------------- */

enum jobs_end {
    JOBS_END_DONE,
    JOBS_END_DUPLICATE,
    JOBS_END_RETRY,
    JOBS_END_BUSY,
    JOBS_END_DEAD
};

/* The world of the engine (the production one is jitr/service.c's; tests complete by hand).
 * Async functions follow docs/style.md, "Asynchronous calls". */
struct jobs_io {
    void *ctx;
    void *kind_ctx;
    int (*redis)(void *ctx, int argc, const char *const *argv, store_reply_cb *cb, void *arg,
                 struct err *e);
    int (*aws)(void *ctx, enum aws_iot_op op, json_t *in, aws_iot_cb *cb, void *arg, struct err *e);
    /* as struct jitr_io's audit: check looks for a record of the same "type" and
     * "certificate_id" above after */
    int (*audit)(void *ctx, json_t *rec, bool check, uint64_t after,
                 void (*cb)(void *arg, uint64_t seq, bool found, const struct err *e), void *arg,
                 struct err *e);
    uint64_t (*audit_mark)(void *ctx);
    /* a kind without states: start a run of the job (kv: the entry's n strings, name, value,
     * ..., borrowed for the call); the host calls jobs_external_end exactly once, later, and
     * keeps what the run needs in *jobs_host(j) */
    void (*run)(void *ctx, struct jobs_job *j, const char *const *kv, size_t n);
    /* frees *jobs_host(j) (NULL is fine) outside every callback of the run: before a rerun and
     * when the job goes */
    void (*release)(void *ctx, struct jobs_job *j);
    int64_t (*now_ms)(void); /* NULL: time_now_ms */
};

struct jobs_config {
    const char *consumer;   /* this worker's consumer name */
    int max_in_flight;      /* jobs running at once, every kind together */
    int max_attempts;       /* failures before a dead letter */
    int64_t backoff_ms;     /* first retry delay ... */
    int64_t backoff_max_ms; /* ... doubling up to this (below claim_idle_ms) */
    int64_t claim_idle_ms;  /* entries pending that long are claimed by another worker */
    int64_t due_poll_ms;    /* how often due jobs are moved to their streams */
    int lock_ms;            /* the certificate lock's lifetime */
};

struct event_base;
/* Starts consumers for the kinds given (their groups made when missing). rblock is a connection
 * for the blocking reads only (borrowed); io->redis is used for the rest. Free rblock and io's
 * clients before the engine: their callbacks, cancelled, run while it is there. */
struct jobs_engine *jobs_engine_new(struct event_base *base, struct store_async *rblock,
                                    const struct jobs_kind *const *kinds, size_t nkinds,
                                    const struct jobs_config *cfg, const struct jobs_io *io,
                                    struct err *e) ATTR_WUR;
/* No new reads or claims; running jobs go on. */
void jobs_engine_drain(struct jobs_engine *g);
size_t jobs_engine_busy(const struct jobs_engine *g);
/* Running jobs are cancelled (their entries stay pending). After io's clients are gone. */
void jobs_engine_free(struct jobs_engine *g);
/* A host-run job (kind without states) ended: DONE/DUPLICATE acknowledge, RETRY/BUSY back off,
 * DEAD dead-letters with why and state. */
void jobs_external_end(struct jobs_job *j, enum jobs_end end, const struct err *why,
                       const char *state);
/* The stream entry id of a job. */
const char *jobs_entry(const struct jobs_job *j);
/* The host's data of a host-run job. */
void **jobs_host(struct jobs_job *j);

/* ---- leases: the certificate locks this worker holds, kept alive while their holder lives ----
 *
 * A lock (jitr:lock:<key>, SET NX PX lock_ms) taken by a job of the engine or by a JITR flow is
 * registered as a lease: every ~lock_ms/3 one script renews every lease of the worker (PEXPIRE
 * each lock whose value is still its holder's token; a lock that is gone or another's is never
 * taken again, its lease is lost). A holder asks jobs_lease_held before each AWS call and stops
 * (a retry) when it is not: lost, or not confirmed for 9/10 of lock_ms (Redis unreachable, the
 * loop stalled), when Redis may have let it expire. A holder that dies stops renewing: its lock
 * expires lock_ms after the last renewal, as before. */
struct jobs_lease;
/* Registers the lock key (the full Redis key) taken with token; sent_ms: when the command that
 * took it was sent (the lock lives at least lock_ms from then). */
struct jobs_lease *jobs_lease_hold(struct jobs_engine *g, const char *key, const char *token,
                                   int64_t sent_ms);
/* Whether the holder may still act under the lock now (jobs_lease_valid of its lease). */
bool jobs_lease_held(const struct jobs_lease *l);
/* The holder releases it (before or after its unlock); NULL is fine. */
void jobs_lease_drop(struct jobs_lease *l);
/* The decision, pure: not lost, and the last take or renewal that found the lock ours was sent
 * less than lock_ms - lock_ms/10 before now. */
bool jobs_lease_valid(bool lost, int64_t confirmed_ms, int64_t now_ms, int64_t lock_ms);
/* The period of the renewal for a lock lifetime: lock_ms / 3 (at least 1). */
int64_t jobs_lease_period_ms(int64_t lock_ms);

/* ---- for jitrctl (synchronous, a private loop) ---------------------------------------------- */

/* A private event loop and async Redis client on which jitrctl runs short synchronous sequences
 * of commands (jitrctl's views of the engine here and of JITR in jitr/admin.c). Nothing of it
 * runs inside jitrd. */
struct jobs_admin {
    struct event_base *base;
    struct store_async *s;
    bool done;
    json_t *reply;
    struct err err;
};
int jobs_admin_open(struct jobs_admin *a, const char *redis_url, struct err *e) ATTR_WUR;
/* Safe after a failed jobs_admin_open. */
void jobs_admin_close(struct jobs_admin *a);
/* Runs one command and waits for it (5 s at most): the reply as JSON (strings, integers,
 * arrays, null), a new reference, or NULL with *e set. */
json_t *jobs_admin_cmd(struct jobs_admin *a, int argc, const char *const *argv, struct err *e);
/* [k, v, k, v, ...] (an HGETALL reply) -> {k: v, ...}, a new object. */
json_t *jobs_admin_pairs(const json_t *arr);

/* {"kinds": [{"kind", "description", "queued", "due", "in_flight", "done", "dead"}, ...]} */
int jobs_admin_status(const char *redis_url, json_t **out, struct err *e) ATTR_WUR;
/* The dead letters of kind (NULL: every kind), oldest first: [{"kind", "id", "key", "state",
 * "attempts", "error", "dead_ms", "fields": {...}}] */
int jobs_admin_dlq_list(const char *redis_url, const char *kind, json_t **out,
                        struct err *e) ATTR_WUR;
/* Requeues dead letters of kind (NULL: every kind): id NULL for all, else a dead letter's stream
 * id or job key. *n receives how many. */
int jobs_admin_dlq_retry(const char *redis_url, const char *kind, const char *id, size_t *n,
                         struct err *e) ATTR_WUR;
/* *seen: a job engine has read kind's stream (its group has a consumer): a jitrd that runs
 * the jobs exists or existed, so waiting for an outcome makes sense. */
int jobs_admin_engine_seen(const char *redis_url, const char *kind, bool *seen,
                           struct err *e) ATTR_WUR;
/* The record of kind's job key: the hash as an object; ERRC_NOT_FOUND when none. */
int jobs_admin_record(const char *redis_url, const char *kind, const char *key, json_t **out,
                      struct err *e) ATTR_WUR;

#endif
