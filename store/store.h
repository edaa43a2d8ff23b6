/*
 * Redis: the working state and the index, never the only copy of anything that matters (the
 * audit log is; `jitrctl reindex` rebuilds the index from it).
 *
 * Key schema (prefix "jitrca:"; docs/redis.md):
 *   serial:<hex>        reservation of a serial (SET NX): value = CA name. Never deleted.
 *   cert:<hex>          hash: the issuance record (serial, fingerprint, subject, cn, profile, ca,
 *                       requester, not_before, not_after, issued_at, seq, status, der; renews and
 *                       superseded_by link an EST re-enrollment's new and old certificates)
 *   fp:<sha256>         string: serial of the certificate with that fingerprint (certificateId)
 *   cn:<cn>             set: serials issued to that common name
 *   ca:<name>:serials   set: serials issued by that CA
 *   ca:<name>:revoked   hash: serial -> "<revoked_at RFC 3339> <reason name>" of that CA's
 *                       revoked certificates (what its CRL lists)
 *   ca:<name>:expiry    zset: serial -> notAfter (Unix seconds) of that CA's certificates that
 *                       are valid and not superseded (left on revocation and supersession)
 *   once:<name>         string: something done once per period by all processes (store_once)
 *   crl:<name>:number   string: the last CRL number of that CA (never lowered; not an index
 *                       key: kept by store_index_clear)
 *   audit:head          hash: seq and hash of the newest audit record indexed
 *   index:ready         hash: the index is complete (written by a finished rebuild: gen, seq,
 *                       hash, records, at, by); absent after a Redis loss or during a rebuild
 *   index:lock          string: the token of the one process rebuilding the index (PX TTL that
 *                       its holder renews)
 *   bucket:<name>       hash: token bucket (tokens, ts) of a rate limit (store/bucket.lua)
 *   reenroll:<lineage>  zset: the EST re-enrollment attempts of a certificate lineage in the last
 *                       24 hours (working state; store_reenroll_begin)
 *   renewing:<hex>      string: a re-enrollment of that certificate in progress (expires)
 *
 * This file is the synchronous client (jitrctl, sign-batch, bench, signing threads): every call
 * has a timeout, pipelines its commands and fails with ERRC_UNAVAILABLE naming the server when
 * Redis cannot be reached.
 */
#ifndef STORE_STORE_H
#define STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"

#define STORE_PREFIX "jitrca:"

#define STORE_SENTINELS_MAX 8

struct store_url {
    char host[256];
    int port;
    char path[256]; /* unix socket, "" for TCP */
    char password[256];
    int db;
    /* redis-sentinel://: the primary of master is asked of the sentinels (host and port above
     * are unused); master is "" for the other schemes */
    char master[128];
    size_t nsentinels;
    struct {
        char host[256];
        int port;
    } sentinel[STORE_SENTINELS_MAX];
};

/* Parses redis://[:password@]host[:port][/db], unix:///path[?db=N] and
 * redis-sentinel://[:password@]host[:port][,host[:port]...]/master[/db] (sentinels' port 26379
 * by default; the password is the data nodes', the sentinels are asked without one). */
int store_url_parse(const char *url, struct store_url *out, struct err *e) ATTR_WUR;
/* The URL without its password, for messages. */
void store_url_display(const struct store_url *u, char *out, size_t cap);

/* ---- Sentinel --------------------------------------------------------------------------
 *
 * A redis-sentinel:// URL names a primary that Redis Sentinel may move: every connection (the
 * synchronous client's store_connect, the asynchronous client's on first use and after a loss)
 * asks the sentinels in turn (SENTINEL get-master-addr-by-name) for the primary's address, then
 * checks with ROLE that the server there is a primary, and only then sends commands. A command
 * that fails because the server became a replica (READONLY) drops the connection, so the next
 * one asks again. Nothing is retried here: callers see ERRC_UNAVAILABLE as for any loss. */

/* Asks the sentinels of u (synchronously, timeout_ms per sentinel) for the primary's address. */
int store_sentinel_primary(const struct store_url *u, int timeout_ms, char *host, size_t cap,
                           int *port, struct err *e) ATTR_WUR;
/* The reply to SENTINEL get-master-addr-by-name as two strings: host and port (0 when valid). */
int store_sentinel_addr(const char *const *v, const size_t *len, size_t n, char *host, size_t cap,
                        int *port) ATTR_WUR;
/* Is an error reply the sign that the server is no primary (any more)? */
bool store_reply_not_primary(const char *err_reply);

struct store;

struct store *store_connect(const char *url, struct err *e) ATTR_WUR;
void store_free(struct store *s);
int store_ping(struct store *s, struct err *e) ATTR_WUR;

/* Reserves serials with SET NX (one MSETNX when every serial is new and none is repeated: the
 * same answers). taken[i] is set true for serials that already existed (the
 * caller draws again); returns -1 only when Redis failed. */
int store_serials_reserve(struct store *s, const char *ca, const char *const *serial_hex, size_t n,
                          bool *taken, struct err *e) ATTR_WUR;

/* One issuance record as the index holds it (strings borrowed). */
struct store_cert {
    const char *serial;      /* lowercase hex */
    const char *fingerprint; /* lowercase hex SHA-256 of the DER */
    const char *subject;
    const char *cn;
    const char *profile;
    const char *ca;
    const char *requester;
    const char *not_before; /* RFC 3339 */
    const char *not_after;
    const char *issued_at;
    const char *status; /* "valid" or "revoked" */
    const char *der_b64;
    uint64_t seq;       /* audit seq of the record */
    const char *renews; /* the serial this one replaces (a renewal), or NULL/"" */
};

/* Writes the index entries of n records in one pipeline (also marks their serials reserved).
 * A record that renews another also marks that one superseded_by it (when it is indexed and
 * not superseded yet: the first renewal wins, as in the audit log's order). */
int store_certs_index(struct store *s, const struct store_cert *certs, size_t n,
                      struct err *e) ATTR_WUR;

/* A revocation as the index holds it (strings borrowed). */
struct store_revocation {
    const char *serial; /* lowercase hex, as in cert:<serial> */
    const char *ca;
    const char *revoked_at; /* RFC 3339 */
    const char *reason;     /* RFC 5280 name: "keyCompromise", ... */
    uint64_t seq;           /* audit seq of the revoke record */
    /* the node whose log holds the record (node_id; NULL: "") and the record's time in ms since
     * the epoch (0: now): a job done for a change of another node is compared by time, as seqs
     * of different logs are not comparable */
    const char *node;
    int64_t ms;
    /* the index rebuild: the change only, no job (it queues the jobs the audit log shows
     * unfinished at the end, store_status_jobs_settle) */
    bool no_job;
};

enum store_revoke_result {
    STORE_REVOKE_DONE,    /* marked revoked now */
    STORE_REVOKE_ALREADY, /* it was revoked already: nothing changed (the first one wins) */
    STORE_REVOKE_UNKNOWN, /* no cert:<serial>: nothing changed */
};

/* Marks n certificates revoked, one atomic script per certificate, in one pipeline:
 * cert:<serial> gets status=revoked, revoked_at, reason, revoke_seq, and ca:<ca>:revoked gets
 * serial -> "revoked_at reason". A certificate on hold (reason certificateHold) is revoked
 * again by a permanent reason (not by another hold). The latest decision wins: a hold that is
 * not after the certificate's last release (by seq in one node's log, by time between nodes) is
 * not applied (ALREADY, no job); a permanent revocation always is. A hold also records
 * revoke_node and revoke_ms (r[i].node, r[i].ms). In the same script, the job that carries
 * the change to AWS IoT is queued (STORE_KEY_REVOKE_JOBS, fields cert, serial, change_seq,
 * change_node, change_ms, src, enq_ms) unless its record (STORE_KEY_REVOKE_JOB<fingerprint>)
 * says DONE for this change or a later one (of the same node: a seq at least this one; of
 * another node: a later time).
 * res[i] says what happened to each. */
int store_certs_revoke(struct store *s, const struct store_revocation *r, size_t n,
                       enum store_revoke_result *res, struct err *e) ATTR_WUR;
/* Releases n holds (r[i].revoked_at and reason unused; seq: the audit seq of the release
 * record): a certificate revoked with certificateHold is valid again (revoked_at, reason,
 * revoke_seq, revoke_node, revoke_ms removed, release_seq, release_node, release_ms set, gone
 * from ca:<ca>:revoked), and its job is queued as above, unless the hold is after the release
 * (the same rule): that hold stands. A valid certificate only records the release when it is
 * after the one it has (so an older hold replayed later is not applied). res[i]: DONE released
 * now, ALREADY not on hold or held later (no job), UNKNOWN. */
int store_certs_release(struct store *s, const struct store_revocation *r, size_t n,
                        enum store_revoke_result *res, struct err *e) ATTR_WUR;
/* The job engine's keys (jobs/jobs.h) that the scripts above write: the "revoke" kind's stream
 * and the prefix of its job records. */
#define STORE_KEY_REVOKE_JOBS "jobs:revoke:queue"
#define STORE_KEY_REVOKE_JOB  "jobs:revoke:"

/* One certificate's revoke job as an index rebuild found it in the audit log (strings
 * borrowed): the last change of its status the rebuild applied, and the aws_status record of
 * the last revoke job that reached AWS IoT, with the change that job carried. */
struct store_status_job {
    const char *serial;
    /* the change: src "revoke" or "release" (NULL: none to queue), its audit seq, node, ms */
    const char *src;
    uint64_t seq;
    const char *node;
    int64_t ms;
    /* the aws_status record (done_id NULL: none): the certificateId it names, the job's
     * outcome, want, reason, ca, aws_before, aws_status, the change it carried (done_seq,
     * done_node, done_ms), the record's audit seq and time */
    const char *done_id;
    const char *outcome, *want, *reason, *ca, *aws_before, *aws_status;
    uint64_t done_seq;
    const char *done_node;
    int64_t done_ms;
    uint64_t audit_seq;
    int64_t audit_ms;
};
/* After an index rebuild applied the changes without their jobs (no_job), one script per
 * certificate, in one pipeline: the finished job's record is written back as the job left it
 * (state DONE, marked restored "audit"), when Redis has no record of that certificate's job or a
 * DONE one of an earlier change; then the change's job is queued as store_certs_revoke would,
 * unless the record says DONE for that change or a later one. So a change AWS IoT heard of is
 * not sent again, and one it did not hear of (no aws_status record: never run, in flight or
 * dead when Redis lost it) is. *queued and *restored: how many jobs were queued, records
 * written. */
int store_status_jobs_settle(struct store *s, const struct store_status_job *v, size_t n,
                             size_t *queued, size_t *restored, struct err *e) ATTR_WUR;

/* A renewal's pending retirement (the "renewal" job kind, jobs/renewal.h) that an index rebuild
 * found in the audit log: the renewal was recorded ACTIVE (jitr_activate), its predecessor's
 * retirement not yet recorded (renewal_retire). Strings borrowed. */
struct store_renewal_job {
    const char *cert_id; /* the renewal's certificateId (64 hex): the job key */
    const char *serial;  /* the renewal's serial */
    const char *renews;  /* the serial it renews */
    const char *thing;   /* the thing it was provisioned onto, or "" */
    int64_t due_ms;      /* its activation + renewal_grace */
};
/* Queues the n retirements whose job is nowhere in Redis (no job record, nothing for that key in
 * the due set), with the fields jobs_renewal_job and jobs_enqueue_argv write (src "reindex"):
 * in the kind's due set when due_ms is later than now, else on its stream. After a Redis that
 * lost its data, the retirements queued since the grace began are queued again; on a Redis that
 * kept them, nothing changes. *queued: how many were queued. */
int store_renewal_jobs_requeue(struct store *s, const struct store_renewal_job *v, size_t n,
                               size_t *queued, struct err *e) ATTR_WUR;
/* The "renewal" kind's stream, due set and record prefix (jobs/jobs.h), which the call above
 * writes. */
#define STORE_KEY_RENEWAL_JOBS "jobs:renewal:queue"
#define STORE_KEY_RENEWAL_DUE  "jobs:renewal:due"
#define STORE_KEY_RENEWAL_JOB  "jobs:renewal:"

/* The revoked certificates of a CA, sorted by serial: free with store_revoked_free. */
struct store_revoked {
    char *serial;
    char *revoked_at; /* RFC 3339 */
    char *reason;     /* RFC 5280 name */
};
int store_revoked_list(struct store *s, const char *ca, struct store_revoked **out, size_t *n,
                       struct err *e) ATTR_WUR;
void store_revoked_free(struct store_revoked *list, size_t n);

/* The next CRL number of a CA: one more than crl:<ca>:number, and at least floor; stored. */
int store_crl_number_next(struct store *s, const char *ca, uint64_t floor, uint64_t *out,
                          struct err *e) ATTR_WUR;
/* Raises crl:<ca>:number to at least n (never lowers it); for reindex. */
int store_crl_number_raise(struct store *s, const char *ca, uint64_t n, struct err *e) ATTR_WUR;

/* Records the audit head the index has reached. */
int store_audit_head_set(struct store *s, uint64_t seq, const char *hash, struct err *e) ATTR_WUR;

/* Looks a record up; ERRC_NOT_FOUND when absent. fields receives "name\tvalue\n" lines sorted by
 * name (for printing and comparison). */
int store_cert_get(struct store *s, const char *serial, struct buf *fields, struct err *e) ATTR_WUR;
int store_serial_by_fingerprint(struct store *s, const char *fp, struct buf *serial,
                                struct err *e) ATTR_WUR;

/* ---- index records and keys, typed (store/record.c) ------------------------------------------
 *
 * What other modules need of the index's format: the keys they address with their own commands
 * (the JITR flow reads cert: and fp: through store_index_*_lua) and the issuance record as
 * fields rather than text. */

/* The families (after STORE_PREFIX) of the issuance record and the fingerprint's serial. */
#define STORE_KEY_CERT "cert:"
#define STORE_KEY_FP   "fp:"
/* Room for any key of those families (a fingerprint is 64 hex digits, a serial at most 40). */
#define STORE_KEY_MAX 128

/* STORE_PREFIX "cert:" serial and STORE_PREFIX "fp:" fingerprint into out (cap bytes); false
 * (and out "") when it does not fit. */
bool store_key_cert(char *out, size_t cap, const char *serial);
bool store_key_fp(char *out, size_t cap, const char *fingerprint);

struct store_field {
    const char *name;
    const char *value; /* NUL-terminated; len bytes */
    size_t len;
};

/* One issuance record (cert:<serial>) as read back. The known fields are "" when absent (an
 * older record has no renews, a valid one no revoked_at); fields holds every field the hash
 * has, sorted by name, those not known here included. Owned: store_cert_rec_release. */
struct store_cert_rec {
    const char *serial, *fingerprint, *subject, *cn, *profile, *ca, *requester;
    const char *not_before, *not_after, *issued_at; /* RFC 3339 */
    const char *status;                             /* "valid" or "revoked" */
    const char *der_b64;
    const char *renews;        /* the serial this one replaced (a renewal) */
    const char *superseded_by; /* the serial that replaced this one */
    const char *revoked_at;    /* revoked: RFC 3339 */
    const char *reason;        /* revoked: RFC 5280 name */
    uint64_t seq;              /* audit seq of the issue record (0 when absent or malformed) */
    uint64_t revoke_seq;       /* audit seq of the revoke record (0 when not revoked) */
    struct store_field *fields;
    size_t nfields;
    char *mem_; /* private: the strings */
};

/* Reads cert:<serial> into out; ERRC_NOT_FOUND when absent, the index-incomplete error while the
 * index is being rebuilt. out needs store_cert_rec_release only when 0 is returned. */
int store_cert_read(struct store *s, const char *serial, struct store_cert_rec *out,
                    struct err *e) ATTR_WUR;
/* Builds a record from a hash's n strings (name, value, name, value, ...: HGETALL's reply);
 * kvlen gives their lengths. A last unpaired string is ignored. */
void store_cert_rec_parse(struct store_cert_rec *out, const char *const *kv, const size_t *kvlen,
                          size_t n);
/* The value of field name, or NULL when the record has none. */
const char *store_cert_rec_field(const struct store_cert_rec *r, const char *name);
/* Is the certificate valid in the index (status "valid")? */
bool store_cert_rec_valid(const struct store_cert_rec *r);
void store_cert_rec_release(struct store_cert_rec *r);

/* Deletes every index key (cert:, fp:, cn:, ca:*:serials, ca:*:revoked, audit:head) but not the
 * serial reservations, the CRL numbers nor any working state; returns the number of keys removed
 * in *removed. */
int store_index_clear(struct store *s, uint64_t *removed, struct err *e) ATTR_WUR;

/* A canonical dump of the whole index (sorted), for `jitrctl reindex --check` and tests. */
int store_index_dump(struct store *s, struct buf *out, struct err *e) ATTR_WUR;

/* ---- completeness of the index ------------------------------------------------------------
 *
 * Redis can lose everything (a restart without persistence, a failover to an empty replica,
 * FLUSHALL). The index is complete only while index:ready exists: a rebuild from the audit log
 * (issuance/reindex.h) deletes it first and writes it last. Every read of the index and every
 * serial reservation checks it in the same atomic script as the read: while it is absent they
 * fail with an error that store_err_index_incomplete() recognises (ERRC_UNAVAILABLE; the
 * server's reply starts with STORE_INDEX_INCOMPLETE), never with "not found" nor with a record
 * that a later audit record (a revocation) changes. Serials: a rebuild re-reserves every serial
 * of the log before it writes index:ready, and reservations are refused while it is absent, so
 * a serial issued before the loss is never handed out again. */
#define STORE_INDEX_READY      STORE_PREFIX "index:ready"
#define STORE_INDEX_LOCK       STORE_PREFIX "index:lock"
#define STORE_INDEX_INCOMPLETE "JITRCA_INDEX_INCOMPLETE"

/* Lua scripts for clients that send their own commands (the JITR flow, async): KEYS[1] =
 * STORE_INDEX_READY, KEYS[2] = the key to GET / HGETALL; the STORE_INDEX_INCOMPLETE error reply
 * when the index is incomplete. */
extern const char store_index_get_lua[];
extern const char store_index_hgetall_lua[];
/* The self-healing workers' take of the index lock (daemon/heal.c): KEYS[1] = STORE_INDEX_LOCK,
 * KEYS[2] = STORE_INDEX_READY, ARGV[1] = the token, ARGV[2] = its lifetime in ms. 1 when taken;
 * 0 when the index is complete by now (a rebuild of another worker finished between the worker's
 * look and its take: rebuilding again would queue the rebuild's AWS jobs twice) or the lock is
 * another's. */
extern const char store_index_heal_lock_lua[];

/* Is e the failure of an index read or a reservation because the index is incomplete? (sync and
 * async clients alike) */
bool store_err_index_incomplete(const struct err *e);
/* Sets that error (ERRC_UNAVAILABLE, a message for clients, STORE_INDEX_INCOMPLETE in detail). */
int store_err_set_index_incomplete(struct err *e);

/* exists[i]: is cert:<serials[i]> in the index? (no completeness check: for a replay) */
int store_certs_exist(struct store *s, const char *const *serials, size_t n, bool *exists,
                      struct err *e) ATTR_WUR;

/* Pipelined HMGET of fields[0..nf) of cert:<serials[i]> for n serials (no completeness check:
 * the caller checked index:ready): values[i * nf + j] is xstrdup'd or NULL (absent). */
int store_certs_fields(struct store *s, const char *const *serials, size_t n,
                       const char *const *fields, size_t nf, char **values, struct err *e) ATTR_WUR;

/* Does index:ready exist? */
int store_index_ready(struct store *s, bool *ready, struct err *e) ATTR_WUR;

/* The rebuild lock: SET NX PX. *taken says whether it is ours now; if not, holder (may be NULL)
 * receives the current holder's token ("" if it just expired). */
int store_index_lock_take(struct store *s, const char *token, int64_t ttl_ms, bool *taken,
                          char *holder, size_t cap, struct err *e) ATTR_WUR;
/* Extends the lock when it is still ours; ERRC_CONFLICT when it is not (expired and maybe
 * taken by another process: stop writing). */
int store_index_lock_renew(struct store *s, const char *token, int64_t ttl_ms,
                           struct err *e) ATTR_WUR;
/* Deletes the lock when it is ours (nothing otherwise). */
int store_index_lock_release(struct store *s, const char *token, struct err *e) ATTR_WUR;

struct store_index_mark {
    const char *gen; /* random id of this rebuild */
    uint64_t seq;    /* last audit record replayed (0: none) */
    const char *hash;
    uint64_t records;
    const char *by; /* the lock token */
};
/* Writes index:ready and deletes the lock, atomically, when the lock is still token's;
 * ERRC_CONFLICT (nothing written) when it is not. */
int store_index_mark_ready(struct store *s, const char *token, const struct store_index_mark *m,
                           struct err *e) ATTR_WUR;
/* Deletes index:ready (the start of a rebuild). */
int store_index_mark_clear(struct store *s, struct err *e) ATTR_WUR;
/* index:ready's fields as "name\tvalue\n" lines (ERRC_NOT_FOUND when absent). */
int store_index_mark_get(struct store *s, struct buf *fields, struct err *e) ATTR_WUR;

/* Fencing for a rebuilder: while token is set (NULL unsets), every command batch of s runs in
 * a transaction that aborts unless index:lock holds token (WATCH, GET, MULTI ... EXEC), failing
 * with ERRC_CONFLICT: a rebuilder that lost its lock (it stalled beyond the TTL) cannot write
 * a stale record over the new rebuilder's work. */
void store_fence(struct store *s, const char *token);

/* EST re-enrollment of certificate serial, whose lineage (the certificates that renewed one
 * another) is keyed by lineage: STORE_REENROLL_BUSY while another re-enrollment of that
 * certificate is in progress, STORE_REENROLL_LIMIT when the lineage had limit attempts within
 * window_ms; *retry_ms then says when to try again. Else the attempt (attempt_id, unique) is
 * counted and the certificate claimed for ttl_ms. Clock: Redis's TIME. */
enum store_reenroll_result {
    STORE_REENROLL_OK,
    STORE_REENROLL_BUSY,
    STORE_REENROLL_LIMIT
};
int store_reenroll_begin(struct store *s, const char *serial, const char *lineage,
                         const char *attempt_id, int64_t limit, int64_t window_ms, int64_t ttl_ms,
                         enum store_reenroll_result *res, int64_t *retry_ms,
                         struct err *e) ATTR_WUR;
/* Releases the claim of store_reenroll_begin; refund uncounts the attempt (nothing was decided:
 * Redis or the audit log failed). */
int store_reenroll_end(struct store *s, const char *serial, const char *lineage,
                       const char *attempt_id, bool refund, struct err *e) ATTR_WUR;

/* The token-bucket script (store/bucket.lua) as sent to Redis. */
extern const char store_bucket_lua[];

/* Takes cost tokens from the bucket jitrca:bucket:NAME (rate tokens/s, capacity burst), shared
 * by every process using this Redis. *allowed says whether they were taken; if not, *wait_ms is
 * how long until they would be. */
int store_bucket_take(struct store *s, const char *name, double rate, double burst, double cost,
                      bool *allowed, int64_t *wait_ms, struct err *e) ATTR_WUR;

/* The same for n buckets in one round trip (a pipeline; each take is its own atomic script).
 * Fills allowed and wait_ms of every request; -1 (nothing known) when Redis fails. */
struct store_bucket_req {
    const char *name;
    double rate, burst, cost;
    bool allowed;    /* out */
    int64_t wait_ms; /* out */
};
int store_buckets_take(struct store *s, struct store_bucket_req *v, size_t n,
                       struct err *e) ATTR_WUR;

/* ---- expiry (ca:<ca>:expiry) ----------------------------------------------------------------
 *
 * The certificates of a CA that are valid and not superseded, by notAfter: written with the index
 * (store_certs_index, a rebuild alike), left on revocation and supersession. Read without a scan:
 * counts[i] = how many expire at or before upto[i] (Unix seconds), one ZCOUNT each, pipelined. */
int store_expiry_count(struct store *s, const char *ca, const int64_t *upto, size_t n,
                       uint64_t *counts, struct err *e) ATTR_WUR;
/* The serials of a CA whose notAfter is in [from, to], earliest first (free with
 * store_expiring_free). */
struct store_expiring {
    char *serial;
    int64_t not_after;
};
int store_expiry_range(struct store *s, const char *ca, int64_t from, int64_t to,
                       struct store_expiring **out, size_t *n, struct err *e) ATTR_WUR;
void store_expiring_free(struct store_expiring *v, size_t n);

/* Something all processes do once per ttl_s: *first is true for the one caller that set
 * once:<name> (SET NX EX), false for every other until it expires. */
int store_once(struct store *s, const char *name, int64_t ttl_s, bool *first,
               struct err *e) ATTR_WUR;

/* HMGET of a whole key name (with its prefix): values[i] is the field's value (xfree) or NULL. */
int store_hmget(struct store *s, const char *key, const char *const *fields, size_t n,
                char **values, struct err *e) ATTR_WUR;

/* Every serial ca:<name>:serials lists (free each and the array with xfree). */
int store_ca_serials(struct store *s, const char *ca, char ***serials, size_t *n,
                     struct err *e) ATTR_WUR;

/* ---- issuing aliases (docs/operations.md, "Rotating the issuing CA") ----------------------
 * alias:ca   hash: alias -> the CA it names now (written by jitrctl ca alias set | ca rotate
 *            after their audit record, replayed by jitrctl reindex from it)
 * alias:next hash: alias -> the CA a rotation is about to switch it to (jitrd loads it ahead)
 * alias:seen:<host>:<pid>  string: the generation of the aliases whose CAs that jitrd worker
 *            has loaded (written with every check, expires after 3 s: live workers only)
 * alias:gen  string: a counter raised by every change (jitrd's workers compare it every
 *            ALIAS_CHECK_MS, switch and rebuild their snapshot when it moved); every change is
 *            also published on the channel jitrca:alias:ca (the alias as the message) */
#define STORE_ALIASES      "alias:ca"
#define STORE_ALIASES_GEN  "alias:gen"
#define STORE_ALIASES_NEXT "alias:next"
#define STORE_ALIASES_SEEN "alias:seen:"

/* Points alias at ca (HSET alias:ca, HDEL alias:next), then store_alias_touch. */
int store_alias_set(struct store *s, const char *alias, const char *ca, struct err *e) ATTR_WUR;
/* A coming switch: alias:next alias -> ca (jitrd's workers load ca before it is used), then
 * store_alias_touch. */
int store_alias_prepare(struct store *s, const char *alias, const char *ca, struct err *e) ATTR_WUR;
/* INCR alias:gen and PUBLISH: every jitrd rereads the aliases and its CAs. */
int store_alias_touch(struct store *s, const char *alias, struct err *e) ATTR_WUR;
/* The lowest generation among the live workers' alias:seen:* (*n of them; 0 and 0 for none). */
int store_alias_seen(struct store *s, uint64_t *min, size_t *n, struct err *e) ATTR_WUR;
/* alias:next as store_alias_all (gen as well). */
int store_alias_next(struct store *s, char ***names, char ***cas, size_t *n, uint64_t *gen,
                     struct err *e) ATTR_WUR;
/* Every alias and its CA (names[i] -> cas[i]) and the generation (0 when never set); free with
 * store_alias_free. */
int store_alias_all(struct store *s, char ***names, char ***cas, size_t *n, uint64_t *gen,
                    struct err *e) ATTR_WUR;
void store_alias_free(char **names, char **cas, size_t n);

/* ---- CA compromise (jitrctl ca compromise; docs/operations.md, "A compromised CA") ---------
 * ca:blocked                set: CAs that sign nothing ever again, written after their audit
 *                           record (ca_compromised) and replayed from it by a rebuild; the serial
 *                           reservation refuses them (ERRC_DENIED), so no path signs with them
 * ca:compromises            set: CAs with a compromise response (begun or done)
 * ca:<ca>:compromise        hash: the response's progress (jitrctl's, cli/cmd_ca_compromise.c)
 * ca:<ca>:compromise:certs  set: "<fingerprint> <serial>" of every certificate it revokes */
#define STORE_CA_BLOCKED     "ca:blocked"
#define STORE_CA_BLOCKED_ERR "JITRCA_CA_BLOCKED"
#define STORE_CA_COMPROMISES "ca:compromises"

/* SADD ca:blocked ca; *added (may be NULL): it was not there. */
int store_ca_block(struct store *s, const char *ca, bool *added, struct err *e) ATTR_WUR;
/* Is ca in ca:blocked? */
int store_ca_blocked(struct store *s, const char *ca, bool *blocked, struct err *e) ATTR_WUR;

/* A compromise response's certificates by their revoke job's outcome (or the counts recorded
 * when it is done). step: "" when there is no response for ca. */
struct store_compromise {
    char step[16];    /* begun, blocked, inactive, revoked, done */
    uint64_t total;   /* certificates of the response */
    uint64_t revoked; /* REVOKED in AWS IoT */
    uint64_t unknown; /* unknown to AWS IoT */
    uint64_t failed;  /* dead letters */
    uint64_t other;   /* another status in AWS IoT (revoked before, e.g. superseded) */
    uint64_t pending; /* no outcome yet */
};
int store_compromise_count(struct store *s, const char *ca, struct store_compromise *out,
                           struct err *e) ATTR_WUR;
/* The CAs of ca:compromises (free each and the array with xfree). */
int store_compromises(struct store *s, char ***names, size_t *n, struct err *e) ATTR_WUR;

/* EVAL of script for a room that keeps its own keys (issuance/enroll.c): KEYS are
 * STORE_PREFIX keys[i], ARGV args. The reply (a string, an integer, nil, or arrays of them)
 * flattened into out[0..*n), at most cap: strings and integers (in decimal) as xstrdup'd
 * strings, nil as NULL; the caller frees them. A longer or other reply is ERRC_UNAVAILABLE. */
int store_eval(struct store *s, const char *script, const char *const *keys, size_t nkeys,
               const char *const *args, size_t nargs, char **out, size_t cap, size_t *n,
               struct err *e) ATTR_WUR;

#endif
