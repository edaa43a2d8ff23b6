/*
 * The configuration: one JSON file, every key documented in docs/config.md, unknown keys are
 * errors. Keys of a section ("jitr") are an object in the file and "jitr.KEY" in the docs and
 * messages. Loaded into an immutable struct conf through one static table (name, type, offset,
 * default, bounds, help). Precedence: environment (JITRCA_DATA_DIR, JITRCA_REDIS_URL) > file >
 * defaults. The file is --config FILE or $JITRCA_CONFIG; with neither, the defaults hold.
 * Secrets are never in the file: it names where they come from.
 */
#ifndef CORE_CONF_H
#define CORE_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"

/* JITR (docs/jitr.md): the "jitr" section of the file, jitr.KEY in field KEY. jitr/ keeps a
 * copy of it (conf_jitr_copy): a new key is a field here and a line of core/conf.c's table. */
struct conf_jitr {
    bool enabled, exclusive_thing;
    char *listen, *tls_cert_file, *tls_key_file;
    char *secret_header, *secrets_file, *secrets_env;
    char *template, *policy_name, *thing_group;
    char *on_reject, *thing_conflict, *aws_rates;
    int64_t max_in_flight, claim_idle_ms, max_attempts;
    int64_t backoff_ms, backoff_max_ms, lock_ms;
    int64_t reconcile_interval_s, reconcile_min_age_s;
    char *sqs_queue_url;
    int64_t sqs_wait_seconds, sqs_max_messages;
    char *destination_arns;
};

struct conf {
    char *data_dir;            /* CA store and audit log */
    char *redis_url;           /* redis://[:password@]host[:port][/db] or unix:///path[?db=N] */
    char *profiles_dir;        /* certificate profiles, *.json */
    char *audit_log;           /* "" = DATA_DIR/audit/audit.log */
    char *node_id;              /* this node's name in audit records ("" = a single node) */
    char *audit_peer_logs;      /* other nodes' logs, comma-separated, replayed by a rebuild */
    char *default_ca;          /* CA used when --ca is absent; "" = the only active CA */
    char *default_profile;     /* profile used when none is asked for */
    char *key_passphrase_file; /* file holding the passphrase of file: keys ("" = none) */
    char *key_passphrase_env;  /* environment variable holding it */
    char *pkcs11_module;       /* PKCS#11 module for pkcs11: keys without module-path */
    char *pkcs11_pin_env;      /* environment variable holding the token PIN */
    char *log_level;           /* error, warn, info, debug */
    int64_t sign_threads;      /* sign-batch threads; 0 = one per core */
    int64_t crl_validity_hours; /* CRL nextUpdate - thisUpdate */
    /* jitrd (docs/daemon.md) */
    char *listen;              /* HOST:PORT of the signing listener */
    int64_t workers;           /* worker processes; 0 = one per core */
    int64_t worker_threads;    /* signing threads per worker */
    char *tls_cert_file;       /* server certificate chain (PEM) */
    char *tls_key_file;        /* server private key (PEM, unencrypted, 0600) */
    char *station_ca;          /* CA of the store that issues station certificates */
    char *stations_file;       /* station authorisations (JSON) */
    int64_t max_body_bytes;    /* request bodies above are refused (413) */
    int64_t max_connections;   /* per worker */
    int64_t request_timeout;   /* seconds for a whole request to arrive */
    int64_t idle_timeout;      /* seconds of silence before a connection is closed */
    int64_t drain_timeout;     /* seconds SIGTERM waits for requests in flight */
    int64_t max_json_depth;    /* nesting of request JSON */
    int64_t max_batch;         /* items of one /v1/sign/batch */
    char *admin_listen;        /* HOST:PORT of the plain-HTTP operations listener, "" = none */
    char *ocsp_listen;         /* HOST:PORT of the plain-HTTP OCSP responder, "" = none */
    int64_t ocsp_validity;     /* seconds from an OCSP response's thisUpdate to its nextUpdate */
    int64_t expiry_check_interval; /* seconds between worker 0's counts of what expires */
    char *enroll_listen;       /* HOST:PORT of the TLS enrollment listener, "" = none */
    int64_t enroll_token_ttl;  /* default seconds an enrollment token lives */
    int64_t enroll_fail_limit; /* failed redemptions per source address (burst; per 10 min) */
    char *claim_profile;       /* profile of claim certificates */
    char *enroll_hook_ca;      /* CAs of claim hooks' https servers ("" = the system's) */
    int64_t deny_summary_interval; /* seconds between deny_summary audit records */
    int64_t reenroll_per_day;  /* EST re-enrollments per certificate lineage in 24 h */
    int64_t renewal_grace;     /* seconds a renewed certificate stays ACTIVE in AWS */
    char *aws_rates;           /* jitrctl's AWS client: per-API rates ("" = AWS's quotas) */
    char *aws_signing_name;    /* SigV4 service name: iot or execute-api */
    char *aws_profile;         /* explicit AWS profile ("" = AWS_PROFILE, else default) */
    struct conf_jitr jitr;     /* the "jitr" section */
    char *source;              /* the file this came from, "" for defaults only */
    char *_audit_path;         /* derived: audit_log or DATA_DIR/audit/audit.log */
};

/* Loads path (NULL: $JITRCA_CONFIG, else defaults only). Errors name the file and key. */
struct conf *conf_load(const char *path, struct err *e) ATTR_WUR;
void conf_free(struct conf *c);
/* dst = a deep copy of src (a conf's jitr section), for a user that outlives the conf;
 * conf_jitr_release frees the copy's strings (and zeroes it). */
void conf_jitr_copy(struct conf_jitr *dst, const struct conf_jitr *src);
void conf_jitr_release(struct conf_jitr *c);
/* The effective audit log path. */
const char *conf_audit_path(const struct conf *c);
/* The worker processes jitrd runs: workers, or one per online core when it is 0. */
size_t conf_workers(const struct conf *c);
/* Prints the effective configuration as JSON, every value through conf_redact (the file names
 * where secrets come from, but a careless operator may paste one in). */
void conf_dump(const struct conf *c, struct buf *out);
/* value with whatever looks secret replaced by "<redacted>", for output and messages: the
 * password of a URL's userinfo (all of it when there is no "user:" part, as Redis takes it);
 * the values of URI attributes and query parameters such as pin-value, password, passphrase,
 * secret, token (not pkcs11:'s token label), signature; and, by key (NULL: none), the whole value
 * of a key naming an environment variable ("*_env") or a header ("*_header") that is not such a
 * name. Returns true when something was redacted. */
bool conf_redact(const char *key, const char *value, struct buf *out);
/* Every key with its type, default and help, as Markdown (docs/config.md is generated from it). */
void conf_describe(struct buf *out);

#endif
