/*
 * jitrd: the signing service for factory stations (docs/daemon.md, docs/api.md).
 *
 *   parse     request bodies to CSRs, pure (fuzzed by tests/fuzz/fuzz_http.c)
 *   stations  the station authorisations file
 *   snap      an immutable snapshot of configuration, stations, CAs and TLS context; SIGHUP
 *             builds a new one off the loop and swaps it between loop iterations, requests in
 *             flight keep the one they started with (reference counted)
 *   pool      signing threads of a worker: jobs in, completions posted back to the loop
 *   metrics   counters in memory shared by the parent and every worker (Prometheus text)
 *   refusal   requests nobody authenticated: counted and summarised, never audited one by one
 *   routes    the route tables; the handlers queue jobs (job.h lists the files that answer them)
 *   admin     /healthz, /readyz, /metrics: what strangers see, admin stations, admin_listen
 *   reload    SIGHUP's new snapshot, built in a signing thread, swapped in on the loop
 *   aliaswatch  the issuing aliases (jitrctl ca alias, ca rotate): switched within 2 s
 *   worker    one worker process: loop, listener, pool, signals, the once-a-second tick
 */
#ifndef DAEMON_DAEMON_H
#define DAEMON_DAEMON_H

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"
#include "core/buf.h"
#include "core/compat.h"
#include "core/conf.h"
#include "core/err.h"
#include "core/workq.h"

struct event_base;
struct issuance_ctx;
struct issuance_revoker;
struct ca_authority;
struct ca_key;

/* ---- parse ---------------------------------------------------------------------------------- */

#define API_NAME_MAX 64

/* The media type of a Content-Type value, lowercased, without parameters or spaces ("" when
 * absent or longer than cap). */
void api_media_type(const char *ctype, char *out, size_t cap);

/* Refuses JSON nested deeper than max (arrays and objects; strings are skipped correctly)
 * before it reaches the parser. ERRC_INVALID. */
int api_json_depth_check(const uint8_t *body, size_t len, int max, struct err *e) ATTR_WUR;

struct api_csr_req {
    struct buf csr;                 /* PEM or DER, as ca_prepare takes it */
    char profile[API_NAME_MAX + 1]; /* "" = not given */
    char ca[API_NAME_MAX + 1];      /* "" = not given */
    char id[API_NAME_MAX * 2 + 1];  /* batch items: the caller's id, echoed */
    char renews[65];                /* serial or certificateId renewed, lowercase; "" none */
    struct err err;                 /* batch items: why this item is unusable */
};
void api_csr_req_release(struct api_csr_req *r);

/* The body of POST /v1/sign by media type: application/pkcs10 (DER, or its base64),
 * application/x-pem-file, application/pem or text/plain (PEM), application/json ({"csr":
 * PEM or base64 DER, "profile", "ca", "renews"}; other keys refused). *bad_type is set (and
 * ERRC_INVALID returned) for any other media type: the caller answers 415. */
int api_parse_sign(const char *media, const uint8_t *body, size_t len, int max_depth,
                   struct api_csr_req *out, bool *bad_type, struct err *e) ATTR_WUR;
/* {"requests":[{"csr","profile","ca","renews","id"}, ...]} with 1..max_items items. A malformed
 * item does not fail the batch: its err is set. *items is an array of *n (free with
 * api_batch_free). */
int api_parse_batch(const uint8_t *body, size_t len, int max_depth, size_t max_items,
                    struct api_csr_req **items, size_t *n, struct err *e) ATTR_WUR;
void api_batch_free(struct api_csr_req *items, size_t n);
/* EST (RFC 7030 §4.2.1): application/pkcs10, base64 of a DER PKCS#10 (whitespace allowed). */
int api_parse_est_csr(const char *media, const uint8_t *body, size_t len, struct buf *der,
                      bool *bad_type, struct err *e) ATTR_WUR;
/* The renews of a request (a serial: 1 to 40 hex digits; a certificateId: 64) into out
 * (65 bytes), lowercase; ERRC_INVALID naming what is wrong. */
int api_renews_parse(const char *v, size_t len, char *out, struct err *e) ATTR_WUR;
/* True for [A-Za-z0-9][A-Za-z0-9._-]{0,63}. */
bool api_name_ok(const char *s);

/* ---- stations ------------------------------------------------------------------------------- */

struct station {
    char *name;
    char **cas; /* "*" = every CA jitrd serves */
    size_t ncas;
    char **profiles; /* "*" = every profile */
    size_t nprofiles;
    double rate;  /* tokens per second; 0 = unlimited */
    double burst; /* bucket capacity */
    bool admin;   /* may revoke */
    bool installer; /* may ask for enrollment tokens (POST /v1/tokens) */
};
struct stations;

/* Loads the authorisations file (format in docs/daemon.md); "" gives an empty set (every
 * station refused). Errors name the file, station and key. */
struct stations *stations_load(const char *path, const char *default_ca,
                               const char *default_profile, struct err *e) ATTR_WUR;
void stations_free(struct stations *s);
const struct station *stations_find(const struct stations *s, const char *name);
size_t stations_count(const struct stations *s);
/* Appends to (*names)[0..*n) every CA name the stations list (not "*") that is not there yet. */
void stations_ca_names(const struct stations *s, char ***names, size_t *n);
bool station_may_use_ca(const struct station *st, const char *ca);
bool station_may_use_profile(const struct station *st, const char *profile);

/* ---- snap ----------------------------------------------------------------------------------- */

/* Issuing aliases (cli/cmd_ca_rotate.c) as read from Redis: immutable, reference counted; a
 * snapshot has the set read at its build, a worker's loop the newest it saw (api.h), and every
 * job the set of the moment its request arrived. Aliases a CA of the store shadows are left
 * out. */
struct aliases {
    atomic_int refs;
    uint64_t gen; /* Redis's alias:gen when read */
    size_t n;
    char **names;
    char **cas;
};

struct snap_ca {
    char *name;
    struct ca_authority *auth;
    struct issuance_ctx *ctx; /* NULL when the key could not be loaded: err says why */
    struct err err;
    char *key_path; /* the file of a file: key, NULL for pkcs11: */
    struct buf chain_pem;
    struct buf chain_json; /* chain_pem as a JSON string literal, for every reply */
    /* OCSP: the delegated responder (ca/NAME/ocsp-signer.pem and its key), NULL when the CA
     * signs its answers itself */
    X509 *ocsp_cert;
    struct ca_key *ocsp_key;
};

struct snap {
    atomic_int refs;
    uint64_t gen;
    struct conf *conf;
    struct stations *stations;
    struct snap_ca *cas;
    size_t ncas;
    size_t def; /* index of the default CA in cas */
    X509 *station_ca;
    SSL_CTX *ssl;
    struct issuance_revoker *revoker; /* thread-safe; POST /v1/revoke and GET /v1/crl */
    bool degraded;                    /* some CA could not be opened: retried by reload */
    struct aliases *al;               /* the issuing aliases read at the build (never NULL) */
};

/* The CA a name stands for: the alias's CA when name is an issuing alias of al (NULL: none),
 * else name. */
const char *aliases_resolve(const struct aliases *al, const char *name);
/* The station may use the CA name stands for: it lists "*", name, or a name (CA or alias) that
 * stands for the same CA. */
bool aliases_station_may_use_ca(const struct aliases *al, const struct station *st,
                                const char *name);
/* Takes names[i] -> cas[i] (n of each, ownership too). */
struct aliases *aliases_new(char **names, char **cas, size_t n, uint64_t gen);
struct aliases *aliases_ref(struct aliases *al);
void aliases_unref(struct aliases *al);
/* The name a request without a CA stands for: default_ca (maybe an alias) or the only CA. */
const char *snap_default_name(const struct snap *s);

/* Builds a snapshot from the configuration file (NULL: $JITRCA_CONFIG / defaults). A CA whose key
 * cannot be loaded does not fail the build (the snapshot is degraded); a broken configuration,
 * stations file, station CA or TLS files do. */
struct snap *snap_build(const char *config_path, uint64_t gen, struct err *e) ATTR_WUR;
struct snap *snap_ref(struct snap *s);
void snap_unref(struct snap *s);
/* The CA of that name, or NULL. */
const struct snap_ca *snap_find_ca(const struct snap *s, const char *name);
/* Is the CA's key usable now? ERRC_UNAVAILABLE naming the CA and the problem otherwise. */
int snap_ca_check(const struct snap_ca *c, struct err *e) ATTR_WUR;
/* Adds the audit counters of every CA log of s to *sum. */
void snap_audit_totals(const struct snap *s, struct audit_stats *sum);

/* ---- pool ----------------------------------------------------------------------------------- */

/* The signing threads: a core/workq.h queue. */
struct pool_job {
    struct workq_job wq;                        /* the queue's */
    void (*run)(struct pool_job *j, void *tls); /* in a signing thread */
    void (*done)(struct pool_job *j);           /* then on the loop */
};
struct pool;

/* n threads, each with tls = tls_new() (freed with tls_free at pool_free). A thread takes its
 * share of the queue at once (queued / n, at most 64) and hands them to run_many when given
 * (else to each job's run). Completions are run on base's loop. NULL when no thread starts. */
struct pool *pool_new(struct event_base *base, size_t n, void *(*tls_new)(void),
                      void (*tls_free)(void *),
                      void (*run_many)(struct pool_job **v, size_t n, void *tls)) ATTR_WUR;
void pool_submit(struct pool *p, struct pool_job *j);
/* Jobs submitted and not yet completed (done not yet run). */
size_t pool_busy(const struct pool *p);
/* Lets queued jobs run, joins the threads, runs remaining completions, frees. */
void pool_free(struct pool *p);

/* ---- refusal ------------------------------------------------------------------------------- */

/* Why a request nobody authenticated was refused (metrics label, deny_summary key). */
enum refusal_reason {
    REFUSED_NO_CERTIFICATE,     /* no client certificate */
    REFUSED_BAD_CERTIFICATE,    /* one that does not verify: expired, unknown issuer, ... */
    REFUSED_FOREIGN_ISSUER,     /* verifies, but not from the CA the route takes */
    REFUSED_NOT_A_STATION_NAME, /* from the station CA, its commonName is not a station name */
    REFUSED_MALFORMED,          /* HTTP the server refused itself: 400, 411, 417, 501, 505 */
    REFUSED_TOO_LARGE,          /* 413, 431 before any route */
    REFUSED_TIMEOUT,            /* 408: the request did not arrive in time */
    REFUSED__COUNT
};
const char *refusal_reason_name(enum refusal_reason why);

/* ---- metrics -------------------------------------------------------------------------------- */

#define METRICS_ROUTES  24
#define METRICS_WORKERS 256

/* Creates the shared counters (anonymous shared mapping: call before fork). */
int metrics_init(struct err *e) ATTR_WUR;
void metrics_request(int route, int status, int64_t ns);
void metrics_issued(const char *station, const char *profile, uint64_t n);
void metrics_issue_latency(int64_t ns);
/* The audit counters of a worker (all its logs, since it started), replacing the last ones. */
void metrics_audit(size_t worker, const struct audit_stats *st);
void metrics_worker_restart(void);
/* The index's completeness (daemon/heal.c): as last seen by a worker (1 complete, 0 not), a
 * rebuild started here, its progress (records replayed), its end. */
void metrics_index_complete(int complete);
/* Whether Redis answered a worker's last index check (1) or not (0). */
void metrics_redis_up(int up);
void metrics_index_rebuilding(void);
void metrics_index_progress(uint64_t records);
void metrics_index_rebuilt(bool ok, uint64_t records);
/* Records replayed by the running or last rebuild of this jitrd. */
uint64_t metrics_index_records(void);
/* The audit log's health (daemon/auditwatch.c): the problem found (AUDIT_OK when intact), at
 * which line, whether the walk of the whole chain found it (an edit in the middle, which no
 * append would notice) rather than the check of its end (which every append makes itself), and
 * the quarantine files next to the log. metrics_audit_damaged() is true while the log is
 * damaged, with the details when asked (NULL: not wanted). */
void metrics_audit_health(enum audit_problem problem, uint64_t line, bool walk, size_t quarantined);
bool metrics_audit_damaged(enum audit_problem *problem, uint64_t *line, bool *walk);
void metrics_refused(enum refusal_reason why);
/* Expiry (daemon/expiry.c): per CA jitrd uses, the days left of its certificate and how many of
 * its valid certificates expire within each of metrics_expiry_days[] (7, 30, 90) and are expired
 * already; replaced whole by each count (at: when, Unix seconds). */
#define METRICS_CAS            32
#define METRICS_EXPIRY_BUCKETS 3
extern const int metrics_expiry_days[METRICS_EXPIRY_BUCKETS];
struct metrics_expiry {
    char ca[API_NAME_MAX + 1];
    int64_t days_left;
    uint64_t expired;
    uint64_t within[METRICS_EXPIRY_BUCKETS];
};
void metrics_expiry_set(const struct metrics_expiry *v, size_t n, int64_t at);
/* Compromise responses (jitrctl ca compromise; daemon/expiry.c counts them every
 * COMPROMISE_CHECK_SECONDS): per CA, its certificates by their revoke job's outcome. */
#define COMPROMISE_CHECK_SECONDS 2
struct metrics_compromise {
    char ca[API_NAME_MAX + 1];
    bool done;
    uint64_t total, revoked, unknown, failed, other, pending;
};
void metrics_compromise_set(const struct metrics_compromise *v, size_t n);
/* Prometheus text exposition; route_names[i] labels route i. */
void metrics_render(struct buf *out, const char *const *route_names, size_t nroutes);

/* ---- aliaswatch ------------------------------------------------------------------------------ */

/* Every ALIAS_CHECK_MS each worker reads Redis's alias:gen on its loop and rebuilds its snapshot
 * (api_reload_start) when it differs from the running snapshot's (daemon/aliaswatch.c). */
#define ALIAS_CHECK_MS 250
struct aliaswatch;
struct api;
struct aliaswatch *aliaswatch_new(struct api *a) ATTR_WUR;
void aliaswatch_free(struct aliaswatch *w);

/* ---- heal ----------------------------------------------------------------------------------- */

/* The self-healing of the Redis index, one per worker (daemon/heal.c). */
struct heal;
struct heal *heal_new(struct event_base *base, size_t slot) ATTR_WUR;
/* From the worker's one-second tick: asks Redis whether the index is complete, and rebuilds it
 * (in a thread) when it is not and this worker gets the lock. */
void heal_tick(struct heal *h, struct snap *s);
/* SIGTERM: no new rebuild; a running one stops at its next batch (the lock is released). */
void heal_stop(struct heal *h);
void heal_free(struct heal *h);

/* ---- auditwatch ----------------------------------------------------------------------------- */

/* Worker 0 watches the audit log's health in a thread (daemon/auditwatch.c). */
struct auditwatch;
struct auditwatch *auditwatch_start(const char *path) ATTR_WUR;
/* A full walk of the chain now (SIGHUP: after an operator's repair). */
void auditwatch_verify_now(struct auditwatch *w);
void auditwatch_stop(struct auditwatch *w);

/* ---- api / worker --------------------------------------------------------------------------- */

/* Runs one worker until SIGTERM has drained it; returns the exit status. slot numbers the
 * worker for metrics. */
int worker_main(const char *config_path, size_t slot);

#endif
