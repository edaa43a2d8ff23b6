/*
 * Redis: the working state and the index, never the only copy of anything that matters (the
 * audit log is; `jitrctl reindex` rebuilds the index from it).
 *
 * Key schema (prefix "jitrca:"; docs/redis.md):
 *   serial:<hex>        reservation of a serial (SET NX): value = CA name. Never deleted.
 *   cert:<hex>          hash: the issuance record (serial, fingerprint, subject, cn, profile, ca,
 *                       requester, not_before, not_after, issued_at, seq, status, der)
 *   fp:<sha256>         string: serial of the certificate with that fingerprint (certificateId)
 *   cn:<cn>             set: serials issued to that common name
 *   ca:<name>:serials   set: serials issued by that CA
 *   ca:<name>:revoked   hash: serial -> "<revoked_at RFC 3339> <reason name>" of that CA's
 *                       revoked certificates (what its CRL lists)
 *   crl:<name>:number   string: the last CRL number of that CA (never lowered; not an index
 *                       key: kept by store_index_clear)
 *   audit:head          hash: seq and hash of the newest audit record indexed
 *   bucket:<name>       hash: token bucket (tokens, ts) of a rate limit (store/bucket.lua)
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

struct store_url {
    char host[256];
    int port;
    char path[256]; /* unix socket, "" for TCP */
    char password[256];
    int db;
};

/* Parses redis://[:password@]host[:port][/db] and unix:///path[?db=N]. */
int store_url_parse(const char *url, struct store_url *out, struct err *e) ATTR_WUR;
/* The URL without its password, for messages. */
void store_url_display(const struct store_url *u, char *out, size_t cap);

struct store;

struct store *store_connect(const char *url, struct err *e) ATTR_WUR;
void store_free(struct store *s);
int store_ping(struct store *s, struct err *e) ATTR_WUR;

/* Reserves serials with SET NX. taken[i] is set true for serials that already existed (the
 * caller draws again); returns -1 only when Redis failed. */
int store_serials_reserve(struct store *s, const char *ca, const char *const *serial_hex,
                          size_t n, bool *taken, struct err *e) ATTR_WUR;

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
    const char *status;     /* "valid" or "revoked" */
    const char *der_b64;
    uint64_t seq;           /* audit seq of the record */
};

/* Writes the index entries of n records in one pipeline (also marks their serials reserved). */
int store_certs_index(struct store *s, const struct store_cert *certs, size_t n,
                      struct err *e) ATTR_WUR;

/* A revocation as the index holds it (strings borrowed). */
struct store_revocation {
    const char *serial;     /* lowercase hex, as in cert:<serial> */
    const char *ca;
    const char *revoked_at; /* RFC 3339 */
    const char *reason;     /* RFC 5280 name: "keyCompromise", ... */
    uint64_t seq;           /* audit seq of the revoke record */
};

enum store_revoke_result {
    STORE_REVOKE_DONE,    /* marked revoked now */
    STORE_REVOKE_ALREADY, /* it was revoked already: nothing changed (the first one wins) */
    STORE_REVOKE_UNKNOWN, /* no cert:<serial>: nothing changed */
};

/* Marks n certificates revoked, one atomic script per certificate, in one pipeline:
 * cert:<serial> gets status=revoked, revoked_at, reason, revoke_seq, and ca:<ca>:revoked gets
 * serial -> "revoked_at reason". res[i] says what happened to each. */
int store_certs_revoke(struct store *s, const struct store_revocation *r, size_t n,
                       enum store_revoke_result *res, struct err *e) ATTR_WUR;

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
int store_cert_get(struct store *s, const char *serial, struct buf *fields,
                   struct err *e) ATTR_WUR;
int store_serial_by_fingerprint(struct store *s, const char *fp, struct buf *serial,
                                struct err *e) ATTR_WUR;

/* Deletes every index key (cert:, fp:, cn:, ca:*:serials, ca:*:revoked, audit:head) but not the
 * serial reservations, the CRL numbers nor any working state; returns the number of keys removed
 * in *removed. */
int store_index_clear(struct store *s, uint64_t *removed, struct err *e) ATTR_WUR;

/* A canonical dump of the whole index (sorted), for `jitrctl reindex --check` and tests. */
int store_index_dump(struct store *s, struct buf *out, struct err *e) ATTR_WUR;

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

#endif
