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
 * while the previous commit ran), so fsync cost is shared under load.
 */
#ifndef AUDIT_AUDIT_H
#define AUDIT_AUDIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/compat.h"
#include "core/err.h"

struct audit_log;

/* Opens (creating it and its directory, mode 0640) the log at path. */
struct audit_log *audit_open(const char *path, struct err *e) ATTR_WUR;
void audit_close(struct audit_log *log);

/* Appends n records durably. Each record is an object (borrowed, not modified) that must not
 * contain "seq", "ts", "prev" or "hash". Thread-safe. On failure nothing of this batch is
 * considered written (a partial line left by a crash is cut by the next writer). first_seq, if
 * not NULL, receives the seq of the first record. */
int audit_append(struct audit_log *log, json_t *const *recs, size_t n, uint64_t *first_seq,
                 struct err *e) ATTR_WUR;

enum audit_problem {
    AUDIT_OK,
    AUDIT_EDITED,    /* a line's hash does not match its content */
    AUDIT_REMOVED,   /* seq jumps forward: lines are missing */
    AUDIT_REORDERED, /* seq goes backwards or a prev link points elsewhere */
    AUDIT_TRUNCATED, /* a partial last line, or fewer lines than the head file records */
    AUDIT_MALFORMED, /* a line that is not a record */
};

struct audit_report {
    enum audit_problem problem;
    uint64_t line;   /* 1-based line of the first problem */
    uint64_t records;/* records checked */
    char message[256];
};

/* Walks the whole file checking the chain (and the head file when check_head). Returns 0 when
 * the walk completed (report->problem says whether the log is intact), -1 on I/O errors. */
int audit_verify(const char *path, bool check_head, struct audit_report *report,
                 struct err *e) ATTR_WUR;

/* Calls fn for every record in order after checking its link; stops at the first problem
 * (-1, ERRC_INVALID naming the line) or when fn returns non-zero (that value is returned). */
typedef int audit_record_fn(void *arg, json_t *rec, uint64_t line);
int audit_foreach(const char *path, audit_record_fn *fn, void *arg, struct err *e) ATTR_WUR;

#endif
