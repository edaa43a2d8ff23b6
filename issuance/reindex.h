/*
 * The index rebuild: Redis's index (store/store.h) made again from the audit log, the source of
 * truth. One code path for `jitrctl reindex`, for jitrd's self-healing (daemon/heal.c) and for
 * jitrctl commands that find the index incomplete (docs/redis.md "Completeness").
 *
 * A rebuild holds the index lock (jitrca:index:lock, a token with a TTL it renews every 5 s
 * whatever the records are) and writes through a store fenced with that token (store_fence): a
 * rebuilder that stalled beyond the TTL, and whose lock another process took, cannot write any
 * more. In order:
 *   1. index:ready is deleted (every index read and serial reservation now fails as
 *      "incomplete": clients get 503, never a refusal);
 *   2. every index key is deleted (serial reservations, CRL numbers and working state are kept);
 *   3. the log is replayed in order (audit_foreach checks every hash and link), in pipelines of
 *      ISSUANCE_REINDEX_BATCH: "issue" records index a certificate and re-reserve its serial,
 *      "revoke" records mark it revoked (the issues before it are flushed first; the first
 *      revocation of a serial wins, as it did live), "crl" records raise the CA's CRL number;
 *      then the retirements of renewed certificates that were queued (a renewal's
 *      "jitr_activate") and not yet recorded ended ("renewal_retire") are queued again, due
 *      renewal_grace after the activation, unless Redis still has their jobs
 *      (store_renewal_jobs_requeue): they lived only in Redis; and the certificates jitrctl
 *      aws register-batch registered in AWS IoT ("aws_register", outcome registered) whose
 *      flow record Redis lost get it back (marked registered, with the status asked and the
 *      flow's end when an end record is in the log), and those whose flow did not end and
 *      that are valid in the index (neither revoked, held nor superseded; their CA not
 *      blocked) get their provisioning queued again (src "reindex"); revocations and releases
 *      are applied without their revoke jobs, and then each certificate's finished job record
 *      comes back from its last "aws_status" record and the job of its last change is queued
 *      only when no such record shows that change (or a later one) reached AWS IoT with the
 *      status the index now wants (store_status_jobs_settle; the tail does the same);
 *   4. index:ready is written and the lock deleted, atomically, only while the lock is ours.
 * A failure anywhere leaves index:ready absent (the index stays "incomplete") and releases the
 * lock; the next rebuild starts again from the top (every step is idempotent).
 *
 * A missing audit log is an empty one (a fresh install, a CA host whose log is new) unless its
 * head file exists: the first commit creates both, so a head without its log means the log was
 * lost, and an empty index would refuse every station; that rebuild fails instead.
 *
 * Every function here blocks (Redis, reading the log): never call them on an event loop.
 */
#ifndef ISSUANCE_REINDEX_H
#define ISSUANCE_REINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/compat.h"
#include "core/conf.h"
#include "core/err.h"

struct store;

#define ISSUANCE_REINDEX_LOGS_MAX  64 /* this node's log and audit_peer_logs */
#define ISSUANCE_REINDEX_BATCH     1000
#define ISSUANCE_INDEX_LOCK_TTL_MS 15000 /* renewed every 5 s while the log is replayed */

struct issuance_reindex_stats {
    uint64_t records;      /* audit records replayed */
    uint64_t certificates; /* issue records indexed */
    uint64_t revoked;      /* certificates marked revoked */
    uint64_t revoke_unknown;
    uint64_t released;            /* holds released (certificateHold lifted) */
    uint64_t keys_removed;        /* old index keys deleted first */
    uint64_t renewals_requeued;   /* renewal retirements Redis had lost, queued again */
    uint64_t registered_requeued; /* provisioning of registered certificates, queued again */
    uint64_t jitr_restored;       /* tail: JITR end states Redis lacked, from their records */
    uint64_t status_jobs_queued;  /* revoke jobs queued: changes with no aws_status record */
    uint64_t status_jobs_restored; /* revoke jobs' DONE records written back from aws_status */
    uint64_t last_seq;
    char last_hash[65];
};

/* Called from the rebuilding thread every ISSUANCE_REINDEX_BATCH records (of any type) and once
 * at the end; a non-zero return (not heeded at the end) stops the rebuild with ERRC_CANCELED. */
typedef int issuance_reindex_progress_fn(void *arg, const struct issuance_reindex_stats *st);

/* A token naming this process for the lock: "HOST:PID:<16 random hex>". */
void issuance_index_token(char *out, size_t cap);

/* Rebuilds the index; the caller has taken the lock with token (store_index_lock_take). The lock
 * is released whatever happens (by the final atomic mark on success). progress may be NULL. */
int issuance_reindex_locked(const struct conf *c, struct store *s, const char *token,
                            issuance_reindex_progress_fn *progress, void *arg,
                            struct issuance_reindex_stats *out, struct err *e) ATTR_WUR;

/* Takes the lock and rebuilds. ERRC_CONFLICT naming the holder when another process rebuilds. */
int issuance_reindex(const struct conf *c, struct store *s, issuance_reindex_progress_fn *progress,
                     void *arg, struct issuance_reindex_stats *out, struct err *e) ATTR_WUR;

/* Several nodes (docs/operations.md "Run several nodes"): a rebuild replays this node's log and
 * then conf's audit_peer_logs, each read in full (a peer log that cannot be read fails the
 * rebuild: an index without that node's certificates must not be marked complete; a log not
 * written yet is empty when its directory exists and it has no head file); with peers,
 * a second pass replays every log's revocations and releases again, so a revocation recorded by
 * another node than the issue applies whatever the order of the logs.
 *
 * The tail (after a Redis failover that may have lost the newest writes: replication is
 * asynchronous): this node's records whose "ts" is since or later (RFC 3339 UTC, as the log
 * writes it) are applied again without clearing anything and without the lock: an issue record
 * whose certificate is missing from the index is indexed (its serial reserved again), one that is
 * there is left alone (it may have been revoked or renewed since); revocations, holds and
 * releases are applied again in the log's order, and the latest decision wins (store_certs_revoke,
 * store_certs_release: a hold older than the certificate's last release is not applied, nor a
 * release older than the hold the index shows; a certificate revoked for good stays so); CRL
 * numbers are raised; a JITR flow whose end
 * record (jitr_activate, jitr_reject, jitr_ignore) is in the tail while Redis has no state for
 * its certificate (every write of the flow lost, its event's too) and no flow holds its lock
 * gets that end state back (DONE, REJECTED, IGNORED, marked "restored"), so a repeated event is
 * a duplicate and the flow is known as done. A hold and its release both in the tail end
 * released, whatever of them Redis kept; the revoke jobs are then settled as a rebuild does
 * (only the changes the tail applied, each certificate's last one). */
int issuance_reindex_tail(const struct conf *c, struct store *s, const char *since,
                          struct issuance_reindex_stats *out, struct err *e) ATTR_WUR;

/* For one-shot commands that need the index: returns 0 at once when it is complete; else
 * rebuilds it (*rebuilt set, stats in out when not NULL), or waits up to wait_ms for the
 * process that is rebuilding it (ERRC_UNAVAILABLE naming it when it is not done by then). */
int issuance_index_ensure(const struct conf *c, struct store *s, int64_t wait_ms, bool *rebuilt,
                          struct issuance_reindex_stats *out, struct err *e) ATTR_WUR;

#endif
