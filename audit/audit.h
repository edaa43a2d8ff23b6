/*
 * The audit log: append-only JSON lines, hash-chained, the source of truth Redis is rebuilt from.
 *
 * Each line is a compact JSON object with sorted keys:
 *   {"prev":"<hex>","seq":N,"ts":"<RFC 3339 ms>","type":"...", ...record fields...,"hash":"<hex>"}
 * where hash = SHA-256 of the line's bytes up to and excluding `,"hash":"...` with the closing
 * `}` appended (i.e. of the object without its hash member), prev is the previous line's hash
 * (64 zeros for the first) and seq counts lines from 1. A sidecar PATH.head holds the newest
 * {"seq","hash"}, so truncation by whole lines is detected too.
 *
 * Durability: audit_append() returns 0 only after the records are written and fdatasync'd.
 * Several writers: an exclusive flock() on the log serialises processes; inside a process,
 * concurrent callers are group-committed (one write and one fdatasync for everything queued
 * while the previous commit ran), so fsync cost is shared under load. A handle belongs to one
 * process: after fork(), the child opens its own (flock() locks are shared across fork).
 * The format, the guarantees and the verifier's messages are described in docs/audit.md.
 */
#ifndef AUDIT_AUDIT_H
#define AUDIT_AUDIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"

struct audit_log;

/* Opens (creating it, mode 0640, and its directory, mode 0750) the log at path. Nothing is read
 * until the first append. */
struct audit_log *audit_open(const char *path, struct err *e) ATTR_WUR;

/* The node name a log's records carry (several jitrd nodes, each with its own log: the config's
 * node_id): 1 to AUDIT_NODE_MAX of [A-Za-z0-9._-]. */
#define AUDIT_NODE_MAX 64
bool audit_node_valid(const char *node);
/* Opens the log as audit_open and, when node is not "", every record appended through it gets
 * "node": node (a member the log sets, like "seq": records may not have it). */
struct audit_log *audit_open_node(const char *path, const char *node, struct err *e) ATTR_WUR;
void audit_close(struct audit_log *log);

/* Appends n records durably. Each record is an object (borrowed, not modified) that must not
 * contain "seq", "ts", "prev" or "hash" (ERRC_INVALID, nothing written), and whose line must fit
 * in 1 MiB (ERRC_TOO_LARGE). The n records get consecutive seqs. Thread-safe. On failure
 * (ERRC_UNAVAILABLE for I/O, ERRC_INTERNAL when the log's end is damaged or shorter than its head
 * file, which needs an operator) the records are not acknowledged; the writer removes what it
 * wrote, but after an fdatasync error the disk's state is unknown, so a reader may still meet
 * them: consumers of the log must treat a record as possibly present (replay is idempotent).
 * A partial line left by a crash is cut by the next writer. first_seq, if not NULL, receives
 * the seq of the first record (0 when n is 0, which appends nothing). */
int audit_append(struct audit_log *log, json_t *const *recs, size_t n, uint64_t *first_seq,
                 struct err *e) ATTR_WUR;

/* Records encoded without Jansson, for hot paths (the issuance path appends one per
 * certificate). The lines are byte-identical to what audit_append() writes for the same
 * members. Build with audit_batch_begin(), then members with keys in strictly increasing
 * strcmp() order, none of them reserved ("seq", "ts", "prev", "hash"; both are programming
 * errors, checked with BUG_ON), then audit_batch_end(); repeat per record. A string value that
 * is not valid UTF-8 (Jansson would refuse it too) makes audit_append_batch() fail with
 * ERRC_INVALID naming the record and the key, writing nothing. Reusable after
 * audit_batch_reset(); audit_batch_release() frees it. */
struct audit_batch {
    struct buf enc;
    size_t *bounds; /* 4 per record, then the end */
    size_t n, cap;
    size_t seg;
    const char *last_key;
    enum err_code bad_code; /* the first problem: ERRC_OK, ERRC_INVALID or ERRC_TOO_LARGE */
    size_t bad_rec;
    const char *bad_key;
};
#define AUDIT_BATCH_INIT { BUF_INIT, NULL, 0, 0, 0, NULL, ERRC_OK, 0, NULL }
void audit_batch_begin(struct audit_batch *b);
void audit_batch_str(struct audit_batch *b, const char *key, const char *value);
/* audit_batch_str() for text that may quote what a client sent (a refusal's reason): a byte
 * that is not valid UTF-8 is recorded as U+FFFD instead of failing the batch. */
void audit_batch_text(struct audit_batch *b, const char *key, const char *value);
void audit_batch_end(struct audit_batch *b);
void audit_batch_reset(struct audit_batch *b);
void audit_batch_release(struct audit_batch *b);
/* audit_append() of the batch's records (same contract; n may be 0). */
int audit_append_batch(struct audit_log *log, const struct audit_batch *b, uint64_t *first_seq,
                       struct err *e) ATTR_WUR;

/* Upper bounds (microseconds) of the fdatasync latency histogram; one more bucket: above. */
#define AUDIT_FSYNC_BOUNDS_US                                                                      \
    { 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000 }
#define AUDIT_FSYNC_NBOUNDS 13

/* Counters since audit_open(); commits = write + fdatasync rounds (one per group commit).
 * fsync_le[i]: fdatasync calls that took at most bound i (not cumulative; the last slot counts
 * those above every bound); fsync_ns: their total time. */
struct audit_stats {
    uint64_t records;
    uint64_t commits;
    uint64_t bytes;
    uint64_t fsync_le[AUDIT_FSYNC_NBOUNDS + 1];
    uint64_t fsync_ns;
    uint64_t torn_cut;    /* torn unacknowledged writes cut off the end */
    uint64_t quarantined; /* torn ends of acknowledged records moved to a quarantine file */
    uint64_t failures;    /* commits that failed (I/O error, disk full, a damaged end) */
};
/* a += b, field by field */
void audit_stats_add(struct audit_stats *a, const struct audit_stats *b);
void audit_get_stats(struct audit_log *log, struct audit_stats *out);

enum audit_problem {
    AUDIT_OK,
    AUDIT_EDITED,    /* a line's hash does not match its content, or its prev does not match the
                        previous line's hash (that line was rewritten with a fresh hash), or the
                        head file records another hash for the same seq */
    AUDIT_REMOVED,   /* seq jumps forward and the missing seqs never show up: lines are missing */
    AUDIT_REORDERED, /* seq goes backwards or repeats */
    AUDIT_TRUNCATED, /* a partial last line, or fewer lines than the head file records */
    AUDIT_MALFORMED, /* a line that is not a record, or a head file that is not valid */
};

struct audit_report {
    enum audit_problem problem;
    uint64_t line;    /* 1-based line of the first problem */
    uint64_t records; /* records checked */
    char message[256];
};

/* Walks the whole file checking the chain (and the head file when check_head; a missing or
 * empty head file is not a problem). Returns 0 when the walk completed (report->problem says
 * whether the log is intact; message is "" when it is), -1 on I/O errors (ERRC_NOT_FOUND when
 * the log does not exist). Messages name the line, e.g. "line 17: edited (hash does not match
 * its content)"; docs/audit.md lists them all. */
int audit_verify(const char *path, bool check_head, struct audit_report *report,
                 struct err *e) ATTR_WUR;

/* The log's end as the next append would find it, read-only (under a shared lock), for health
 * checks: 0 with report->problem AUDIT_OK when an append would go ahead (a missing log, a torn
 * unacknowledged write, which that append cuts), else AUDIT_TRUNCATED (records cut off the end)
 * or AUDIT_EDITED (a damaged last record) and a message that does not name the path; records
 * is the last record's seq. -1 on I/O errors. */
int audit_tail_check(const char *path, struct audit_report *report, struct err *e) ATTR_WUR;

/* The quarantine files next to the log (PATH.quarantine.<UTC time>[.N]): the torn ends of
 * acknowledged records that a writer moved aside instead of cutting them (docs/audit.md),
 * sorted. Free each and the array with xfree. */
int audit_quarantine_list(const char *path, char ***names, size_t *n, struct err *e) ATTR_WUR;

/* Calls fn for every record in order after checking its hash and link; stops at the first
 * problem (-1, ERRC_INVALID naming the line; a seq jump is final here) or when fn returns
 * non-zero (that value is returned). An incomplete last line is skipped with a warning: it is
 * what a writer that crashed mid-write leaves, its records were never acknowledged, and the
 * next writer cuts it (audit_verify reports it). No head file check: run audit_verify for that.
 * rec is the whole line (seq, ts, prev and hash included), borrowed for the call. */
typedef int audit_record_fn(void *arg, json_t *rec, uint64_t line);
int audit_foreach(const char *path, audit_record_fn *fn, void *arg, struct err *e) ATTR_WUR;

/* Looks back from the end of the log at path (no handle needed, any thread or process) for the
 * newest durable record whose "type" is type and whose string member key is value (type NULL:
 * the last record, whatever it is), stopping at the first seq at or below after. *found says
 * whether there is one and *seq is its seq (0 otherwise). A line a writer is still writing is
 * skipped; a record found is durable once no commit runs (a writer holds its exclusive flock
 * from its write to its fdatasync, and removes what it wrote when that fails), so it is read
 * again under a shared flock and counts only when it is still there. A line that is not a
 * record is skipped with a warning. A missing log holds nothing. ERRC_UNAVAILABLE for I/O,
 * ERRC_INTERNAL for a line above 1 MiB. Reads backwards in windows: the cost is the distance
 * from the end, not the log's size. */
int audit_find_last(const char *path, const char *type, const char *key, const char *value,
                    uint64_t after, uint64_t *seq, bool *found, struct err *e) ATTR_WUR;

#endif
