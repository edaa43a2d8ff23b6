/*
 * Revocation and CRLs: the one path every revocation takes, whoever asks (jitrctl revoke, the
 * jitrd POST /v1/revoke of an admin station), and the publication of each CA's CRL (jitrctl crl,
 * jitrd GET /v1/crl and its schedule).
 *
 * A revocation, in this order:
 *   1. the serial is looked up in the index (its CA, fingerprint and status); unknown:
 *      ERRC_NOT_FOUND; already revoked: success with already_revoked, nothing written (but a
 *      certificate on hold, reason certificateHold, is revoked again by a permanent reason);
 *   2. the CA's certificate and key are loaded (once per revoker and CA), so a revocation whose
 *      CRL could not be signed is refused before anything is written;
 *   3. an audit record {"type":"revoke", serial, fingerprint, ca, reason, revoked_at, requester}
 *      is appended durably;
 *   4. the index is updated: cert:<serial> gets status=revoked, revoked_at, reason, revoke_seq;
 *      the CA's hash ca:<ca>:revoked gets serial -> "revoked_at reason"; and in the same Redis
 *      script the job that carries it to AWS IoT is queued (jobs/revoke.c: REVOKED, or INACTIVE
 *      for a hold; docs/revocation.md, "Revocation in AWS IoT");
 *   5. the CA's CRL is regenerated (below).
 * Steps 1 to 5 run under the CA's lock (an flock on DATA/ca/NAME/crl.lock, which excludes other
 * threads and other processes on this host), so two concurrent revocations of one serial write
 * one record, and CRLs are written in the order of their numbers.
 * Any CA of the store with a certificate works: a retired CA's certificates can be revoked.
 *
 * A CRL (ca/crl.h: v2, AKI, cRLNumber, reasonCode per entry) lists every serial of the CA's
 * revoked hash. thisUpdate = now, nextUpdate = now + conf crl_validity_hours (default 168, one
 * week). The number comes from Redis (jitrca:crl:<ca>:number, INCR) raised to at least one more
 * than the number of the CRL on disk; every CRL is audited ({"type":"crl", ca, number,
 * this_update, next_update, entries, sha256, requester}) before it is written, and jitrctl
 * reindex raises jitrca:crl:<ca>:number to the highest audited number: the number never goes
 * back, neither after FLUSHALL nor after a reindex. The CRL is written atomically (temp file,
 * fsync, rename) to DATA/ca/NAME/crl.der and crl.pem (mode 0644). A CRL is due when its file is
 * missing or unreadable, or half of its validity has passed.
 *
 * Threads: a struct issuance_revoker is shared by threads (its key cache has a mutex); each
 * thread passes its own struct store (Redis connections are not shared). The audit log handle
 * may be the one of an issuance_ctx (the log group-commits across threads). Processes: a revoker
 * belongs to the process that made it (its keys may hold PKCS#11 sessions): after fork(), each
 * worker makes its own. Every function here blocks (Redis, fsync, a signature, the CA lock):
 * call them from signing threads, never from an event loop.
 */
#ifndef ISSUANCE_REVOKE_H
#define ISSUANCE_REVOKE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "audit/audit.h"
#include "ca/crl.h"
#include "core/buf.h"
#include "core/compat.h"
#include "core/conf.h"
#include "core/err.h"

struct store;
struct store_revocation;

struct issuance_revoker;

/* c is borrowed and must outlive the revoker. audit is borrowed (e.g. an issuance_ctx's), or
 * NULL to open conf_audit_path(c). passphrase_file: as issuance_ctx_open (file: keys; pkcs11:
 * keys take the PIN from conf pkcs11_pin_env). No key is loaded yet. */
struct issuance_revoker *issuance_revoker_new(const struct conf *c, struct audit_log *audit,
                                              const char *passphrase_file, struct err *e) ATTR_WUR;
void issuance_revoker_free(struct issuance_revoker *rv);

/* Loads the certificate and key of CA ca now (jitrd at start-up: a missing passphrase or an
 * unreachable token is reported before the first request). ERRC_NOT_FOUND for an unknown CA,
 * ERRC_INVALID for a CA without a certificate (pending), the errors of ca_key_load. */
int issuance_revoker_load_ca(struct issuance_revoker *rv, const char *ca, struct err *e) ATTR_WUR;

struct issuance_revocation {
    /* in (borrowed) */
    const char *serial;        /* hex as issued, any case; leading zeros and a missing "00" sign
                                  octet are tolerated (`openssl x509 -serial` output works);
                                  or a 64-hex certificateId (SHA-256 of the DER) */
    const char *ca;            /* NULL or "": the CA the index records; else must be it */
    enum ca_crl_reason reason; /* not removeFromCRL (ERRC_INVALID); certificateHold is a hold,
                                  which issuance_release lifts */
    const char *requester;     /* who asks: "station:NAME", "cli:USER@HOST" */
    /* out */
    bool already_revoked; /* it was revoked before: nothing written, fields below are the
                             recorded ones */
    char serial_hex[41];  /* as the index holds it */
    char ca_name[65];
    char fingerprint[65];
    char revoked_at[24]; /* RFC 3339, seconds */
    int reason_recorded; /* enum ca_crl_reason */
    uint64_t seq;        /* audit seq of the revoke record (the first one's when already) */
    bool crl_written;    /* the CA's CRL was regenerated ... */
    uint64_t crl_number; /* ... with this number */
    struct err crl_err;  /* ... else why not (the revocation itself stands) */
};

/* Revokes one certificate (see above). Returns 0 when the certificate is revoked: newly (records
 * written) or already_revoked (nothing written); when the CRL could not be regenerated afterwards
 * it still returns 0, with crl_written false and crl_err saying why (a later
 * issuance_crl_regenerate catches up). -1: nothing was revoked (ERRC_INVALID bad serial, reason
 * or CA mismatch; ERRC_NOT_FOUND unknown serial; the key errors of issuance_revoker_load_ca;
 * ERRC_UNAVAILABLE Redis or the audit log), except that when the audit record was written but
 * the index update failed, the message says so and 'jitrctl reindex' completes it. */
int issuance_revoke(struct issuance_revoker *rv, struct store *s, struct issuance_revocation *r,
                    struct err *e) ATTR_WUR;

/* Many certificates of one CA at once (jitrctl ca compromise): the same records and index
 * changes as issuance_revoke for each, but one key load, one lock, chunks of
 * ISSUANCE_BULK_CHUNK certificates read in one pipeline, their revoke records in one durable
 * append and their index updates (each with its AWS job, as issuance_revoke's) in one pipeline,
 * and one CRL at the end. A certificate revoked already stays as it is (a hold is revoked again
 * by a permanent reason). progress (may be NULL) is called after each chunk. */
#define ISSUANCE_BULK_CHUNK 500
struct issuance_bulk {
    /* in (borrowed) */
    const char *ca;
    const char *const *serials; /* lowercase hex as the index holds them, all of CA ca */
    size_t n;
    enum ca_crl_reason reason; /* permanent: not certificateHold nor removeFromCRL */
    const char *requester;
    void (*progress)(void *arg, size_t done, size_t n);
    void *arg;
    /* out */
    size_t revoked; /* newly */
    size_t already; /* revoked before */
    size_t unknown; /* not in the index, or of another CA: nothing written */
    bool crl_written;
    uint64_t crl_number;
    struct err crl_err;
};
/* 0 when every certificate was revoked (newly or before); -1: the first chunk that failed and
 * what is left were not revoked (the ones before stand: running it again goes on). */
int issuance_revoke_bulk(struct issuance_revoker *rv, struct store *s, struct issuance_bulk *b,
                         struct err *e) ATTR_WUR;

/* Releases a hold (the certificate was revoked with certificateHold): under the CA's lock, an
 * audit record {"type":"release", serial, fingerprint, ca, released_at, requester}, then the
 * index (valid again, off the CA's revoked hash, its AWS job queued in the same script:
 * INACTIVE → ACTIVE), then the CRL without it. r as for issuance_revoke (reason unused; seq is
 * the release record's). ERRC_CONFLICT when the certificate is not on hold (valid, or revoked
 * for good: that is final); the other errors as issuance_revoke's. */
int issuance_release(struct issuance_revoker *rv, struct store *s, struct issuance_revocation *r,
                     struct err *e) ATTR_WUR;

/* A CRL as published. */
struct issuance_crl {
    char ca[65];
    uint64_t number;
    time_t this_update;
    time_t next_update;
    size_t entries;
    struct buf der; /* owned */
    struct buf pem; /* owned */
};
void issuance_crl_release(struct issuance_crl *crl);

/* Regenerates CA ca's CRL now: new number, audited, written to DATA/ca/NAME/crl.{der,pem}.
 * requester is recorded in the "crl" audit record ("station:NAME", "cli:...", "jitrd:schedule").
 * out (may be NULL) receives the new CRL; release it. */
int issuance_crl_regenerate(struct issuance_revoker *rv, struct store *s, const char *ca,
                            const char *requester, struct issuance_crl *out,
                            struct err *e) ATTR_WUR;

/* The current CRL of ca, as published on disk; regenerated first when due (requester as for
 * issuance_crl_regenerate). For GET /v1/crl. */
int issuance_crl_get(struct issuance_revoker *rv, struct store *s, const char *ca,
                     const char *requester, struct issuance_crl *out, struct err *e) ATTR_WUR;

/* For a schedule (jitrd every few minutes; cron with `jitrctl crl --refresh`): regenerates the
 * CRL of every CA of the store that has a certificate (active and retired) and whose CRL is due
 * at now. *regenerated (may be NULL) counts them. A failing CA does not stop the others: -1 with
 * the first error after trying them all. */
int issuance_crl_refresh_if_due(struct issuance_revoker *rv, struct store *s, time_t now,
                                const char *requester, size_t *regenerated, struct err *e) ATTR_WUR;

/* An audit record's time ("ts") in ms since the epoch; 0 when it has none or it is unreadable. */
int64_t issuance_record_ms(json_t *rec);
/* For jitrctl reindex: the index update of an audit "revoke" record (strings borrowed from rec;
 * its node and time too); ERRC_INVALID naming the missing or bad field. */
int issuance_revocation_from_record(json_t *rec, uint64_t seq, struct store_revocation *out,
                                    struct err *e) ATTR_WUR;
/* The same for an audit "release" record. */
int issuance_release_from_record(json_t *rec, uint64_t seq, struct store_revocation *out,
                                 struct err *e) ATTR_WUR;

#endif
