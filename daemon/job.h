/*
 * Internal to daemon/: a request's job and a signing thread's state, shared by the files that
 * answer routes. On the loop a handler authenticates the client (auth.c), parses the body and
 * queues a job holding a reference to the current snapshot (job.c); in a signing thread the job's
 * work function runs with the thread's state (its Redis connection, its issuance workers, its
 * cache of client certificate statuses); its completion replies on the loop.
 *
 *   job     the job's life, the thread state, the dispatch of a signing thread's share, body
 *           helpers of the handlers
 *   reply   replies and refusals built in the thread: JSON errors, deny audit records
 *   auth    who the client is (a station or a re-enrolling device, from its verified chain) and
 *           its certificate's status in the index
 *   sign    POST /v1/sign and /v1/sign/batch, EST simpleenroll: check, rate, issue, reply
 *   est     EST (RFC 7030): cacerts, simpleenroll's and simplereenroll's handlers, PKCS#7
 *   reenroll  EST re-enrollment in the thread: limits, the superseded certificate, renewal
 *   certs   GET /v1/certificates/ID (who may read which record) and GET /v1/ca
 *   crl     POST /v1/revoke, GET /v1/crl and the CRL schedule
 *   admin   /healthz, /readyz, /metrics (admin.c also has the admin listener)
 *   ocsp    the OCSP responder on ocsp_listen (POST and GET), answered in the thread
 *   enroll  POST /v1/tokens (installer stations) and POST /v1/enroll on enroll_listen (a token
 *           or a claim certificate; docs/enroll.md)
 *   expiry  worker 0's count of expiring certificates and CAs (metrics, the daily warning)
 *   routes  the route tables (signing listener, admin_listen, ocsp_listen) and their metrics
 *           labels
 *   reload  SIGHUP's snapshot rebuild and swap
 */
#ifndef DAEMON_JOB_H
#define DAEMON_JOB_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/api.h"
#include "issuance/enroll.h"
#include "issuance/issuance.h"
#include "store/store.h"

enum job_kind {
    J_SIGN,
    J_BATCH,
    J_EST_ENROLL,
    J_EST_REENROLL,
    J_CERT,
    J_READY,
    J_METRICS,
    J_DENY,
    J_REVOKE,
    J_CRL,
    J_CRL_SCHEDULE,
    J_RELOAD,
    J_OCSP_GET,
    J_OCSP_POST,
    J_EXPIRY,
    J_TOKEN,
    J_ENROLL,
    J_CLAIM,
    J_COMPROMISE,
};

struct job;
struct tstate;
/* What a job does in a signing thread. */
typedef void job_fn(struct job *j, struct tstate *ts);

struct job {
    struct pool_job pj;
    enum job_kind kind;
    job_fn *work;
    /* on the loop instead of a reply (NULL: reply to req, if any) */
    void (*finish)(struct job *j);
    struct api *api;
    struct httpd_req *req;
    struct snap *snap;
    struct aliases *al; /* the issuing aliases when the request arrived (api.h's al) */
    char request_id[24];
    /* who */
    const struct station *st; /* borrowed from snap; NULL for devices */
    char requester[128];
    char client_serial[41];
    X509_NAME *subject; /* re-enrollment: the current certificate's subject */
    char client_ca[API_NAME_MAX + 1];
    /* what */
    struct api_csr_req *items;
    size_t n;
    char param[API_NAME_MAX + 1];
    char reason[64];
    /* signing: per-item results, and the failure of the whole request */
    struct issuance_item *out;
    size_t *ca_of;
    size_t cost;  /* items that passed the checks: tokens to take from the station's bucket */
    bool checked; /* sign_check passed the job (not failed whole) */
    bool failed;
    struct err fail;
    /* the reply */
    int status;
    char ctype[64];
    struct buf body;
    char retry_after[24];
    struct snap *new_snap;
    struct err err;
    /* operations: /readyz may name its problem (admin_listen, an admin station) */
    bool detail;
    /* EST re-enrollment: the certificate renewed, its lineage and this attempt (reenroll.c) */
    char renews[41];
    char lineage[65];
    char attempt[48];
    /* POST /v1/tokens and /v1/enroll (enroll.c): the device, the token's lifetime, the bearer
     * token ("" for a claim's enrollment) and the client's address */
    char device[ENROLL_DEVICE_MAX + 1];
    int64_t ttl;
    char token[ENROLL_TOKEN_LEN + 2];
    char source[64];
    /* OCSP (ocsp.c): the request's DER, the answer's thisUpdate and how long a GET's answer
     * may be cached (-1: not at all) */
    struct buf input;
    time_t this_update;
    int64_t cache_max_age;
};

/* ---- auth.c: the status cache ---------------------------------------------------------------
 *
 * A signing thread remembers for AUTH_STATUS_TTL_MS which client certificates it found valid in
 * the index, in AUTH_STATUS_SLOTS slots by a hash of the serial (a collision replaces the older
 * entry: a miss, never a wrong answer). Revoked and unknown certificates are never cached. */
#define AUTH_STATUS_TTL_MS 5000
#define AUTH_STATUS_SLOTS  64

struct auth_status_cache {
    struct {
        char serial[41];
        int64_t at_ms;
    } slot[AUTH_STATUS_SLOTS];
};
/* Was serial found valid less than AUTH_STATUS_TTL_MS before now_ms? */
bool auth_status_fresh(const struct auth_status_cache *c, const char *serial, int64_t now_ms);
/* serial was found valid at now_ms. */
void auth_status_note(struct auth_status_cache *c, const char *serial, int64_t now_ms);

/* ---- job.c ---------------------------------------------------------------------------------- */

struct tstate {
    uint64_t gen;
    unsigned epoch;
    int64_t last_ok_ms; /* the last job that reached Redis */
    struct store *store;
    struct issuance_worker **iw;
    size_t niw;
    struct auth_status_cache cache;
};

/* The thread's Redis connection (made now if there is none), NULL when it cannot be made. */
struct store *ts_store(struct tstate *ts, const struct snap *s, struct err *e);
/* The thread's issuance worker for CA ca of s. */
struct issuance_worker *ts_worker(struct tstate *ts, const struct snap *s, size_t ca,
                                  struct err *e);
/* Drops the connections, workers and cache. */
void ts_reset(struct tstate *ts);
/* After a failure: a Redis error drops the connections so the next job reconnects (not an
 * incomplete index: Redis answered; daemon/heal.c rebuilds it). */
void ts_after_error(struct tstate *ts, const struct err *e);

/* A job of kind for request r (NULL: a job of the worker itself) on a's current snapshot. */
struct job *job_new(struct api *a, struct httpd_req *r, enum job_kind kind, job_fn *work);
void job_submit(struct api *a, struct job *j);
/* Frees a job that was not submitted (or whose completion ran). */
void job_free(struct job *j);

/* On the loop: r's body (*len bytes) and the media type of its Content-Type (api_media_type). */
#define JOB_MEDIA_MAX 64
const uint8_t *job_body(struct httpd_req *r, size_t *len, char media[JOB_MEDIA_MAX]);
/* The one CSR of a request that has one: j->items[0], made now. */
struct api_csr_req *job_one_item(struct job *j);
/* Frees j and answers r's body that api_parse_* refused: 415 when its media type is not one
 * the route takes (bad_type), else e's status. */
void job_refuse_body(struct job *j, struct httpd_req *r, const struct err *e, bool bad_type);

/* ---- reply.c -------------------------------------------------------------------------------- */

/* The reply: status and v's compact JSON (v is consumed). */
void job_json(struct job *j, int status, json_t *v);
/* The reply {"error":{"code","message"}} of e, with Retry-After on 503; an audit log failure is
 * told without the log's path. */
void job_error(struct job *j, const struct err *e);
/* Appends one {"type":"deny"} audit record of a refused request. Best effort: a failure is
 * logged. */
void audit_deny(const struct job *j, const char *route, const struct err *why);
/* The refusal of a request that needs the audit log while it is damaged: -1 and e set, else 0.
 * Signing asks only about damage the walk of daemon/auditwatch.c found in the middle (any_part
 * false): the end is checked by every append itself. */
int audit_damaged_err(struct err *e, bool any_part);
/* What a client may read of an audit log failure: never the log's path, and 503 for a damaged
 * end as for an I/O error. */
void audit_err_for_client(const struct snap *s, struct err *e);

/* ---- auth.c --------------------------------------------------------------------------------- */

/* The hex of a certificate's serial as the index spells it (DER content octets, lowercase; ""
 * for a serial the index cannot hold). */
void auth_serial_hex(X509 *x, char out[41]);
/* Index status of the client's certificate (j->client_serial): 0 when valid, -1 (DENIED for
 * revoked or not in the index, UNAVAILABLE) otherwise. With rec (not NULL) the record is read
 * afresh, never from the cache, and returned in *rec (release it when 0 is returned). */
int auth_client_status(struct tstate *ts, struct job *j, struct store_cert_rec *rec,
                       struct err *e) ATTR_WUR;
/* Who the client of r is, without side effects: 1 a station listed in the stations file (*st,
 * its certificate *leaf), 0 a certificate of the station CA whose name is not listed (cn says
 * which), -1 a stranger: nobody authenticated (*why and msg say what is wrong). */
int auth_station_of(struct api *a, struct httpd_req *r, const struct station **st, X509 **leaf,
                    char cn[API_NAME_MAX + 2], enum refusal_reason *why, char *msg, size_t cap);
/* A device re-enrolling over EST: the CA jitrd serves that issued its certificate (*leaf), or
 * NULL for a stranger (*why and msg say what is wrong). */
const struct snap_ca *auth_device_of(struct api *a, struct httpd_req *r, X509 **leaf,
                                     enum refusal_reason *why, char *msg, size_t cap);
/* Authenticates a station for a job of kind; on failure answers r and returns NULL. */
struct job *auth_station_job(struct api *a, struct httpd_req *r, enum job_kind kind, job_fn *work,
                             const char *route);
/* A refusal of an authenticated client that concerns a request: audited in a signing thread,
 * then answered. */
void auth_deny(struct api *a, struct httpd_req *r, const char *route, const char *requester,
               enum err_code code, const char *fmt, ...) ATTR_PRINTF(6, 7);

/* ---- sign.c --------------------------------------------------------------------------------- */

/* Signing jobs (J_SIGN, J_BATCH, J_EST_ENROLL) of one snapshot, together: checks, one rate
 * limit round trip, one issuance run per CA, the replies. */
void sign_jobs(struct tstate *ts, struct job **jobs, size_t nj);
void sign_run(struct job *j, struct tstate *ts);
void sign_handle(struct httpd_req *r, void *arg);
void sign_handle_batch(struct httpd_req *r, void *arg);
/* The CSR of an item (PEM or DER), NULL when it does not parse (issuance then rejects it). */
X509_REQ *sign_item_csr(const struct api_csr_req *it);
/* A certificate's PEM as a JSON string, straight from its DER: byte for byte what json_quote of
 * ca_der_to_pem writes, without the PEM in between and the escaping pass over it. */
void sign_pem_json(struct buf *b, const uint8_t *der, size_t len);
/* One issued certificate as the 201 of /v1/sign gives it (id: a batch item's, or NULL). */
void sign_issued_write(struct buf *b, const struct snap *s, size_t ca,
                       const struct issuance_item *it, const char *id);

/* ---- enroll.c ------------------------------------------------------------------------------- */

/* POST /v1/tokens (an installer station, the signing listener) and POST /v1/enroll
 * (enroll_listen: a bearer token or a claim certificate). */
void enroll_handle_token(struct httpd_req *r, void *arg);
void enroll_handle_enroll(struct httpd_req *r, void *arg);
void enroll_handle_claim(struct httpd_req *r, void *arg);

/* ---- est.c, reenroll.c ---------------------------------------------------------------------- */

/* The reply of a certificate as EST gives it (200, base64 PKCS#7 certs-only); an error reply if
 * it cannot be encoded. */
void est_reply_cert(struct job *j, X509 *x);
void est_handle_cacerts(struct httpd_req *r, void *arg);
void est_handle_enroll(struct httpd_req *r, void *arg);
void est_handle_reenroll(struct httpd_req *r, void *arg);
/* EST re-enrollment in the signing thread (J_EST_REENROLL). */
void reenroll_run(struct job *j, struct tstate *ts);

/* ---- certs.c, crl.c, admin.c ---------------------------------------------------------------- */

void certs_handle(struct httpd_req *r, void *arg);
void certs_handle_ca(struct httpd_req *r, void *arg);
/* Is s what GET /v1/certificates/ID takes: 1 to 64 lowercase hex digits (a serial has at most
 * 40, a certificateId 64)? */
bool certs_id_ok(const char *s);
/* May the station of j read (and renew) the record rec? Its own requests, and the renewals of
 * its certificates by their devices (requester device:SERIAL, followed back a few times); an
 * admin station every record. -1 when Redis failed. */
int certs_visible(struct store *st, const struct job *j, const struct store_cert_rec *rec,
                  struct err *e);
void crl_handle(struct httpd_req *r, void *arg);
void crl_handle_revoke(struct httpd_req *r, void *arg);
void admin_handle_readyz(struct httpd_req *r, void *arg);
void admin_handle_metrics(struct httpd_req *r, void *arg);

/* ---- ocsp.c --------------------------------------------------------------------------------- */

void ocsp_handle_get(struct httpd_req *r, void *arg);
void ocsp_handle_post(struct httpd_req *r, void *arg);

#endif
