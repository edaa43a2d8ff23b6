/*
 * Issuance: the one path every certificate takes, whoever asks (jitrctl sign, sign-batch, the
 * jitrd signing API, the benchmark). For a batch of CSRs, in this order:
 *   1. ca_prepare() each CSR against its profile (pure); a rejection is kept per item;
 *   2. draw a serial per accepted item and reserve them all in Redis (one script: a MSETNX of
 *      them all, or a SET NX each when one is taken);
 *   3. ca_sign() each;
 *   4. append one audit record per issuance and per rejection, durably (group commit);
 *   5. index the issued certificates in Redis (one pipeline);
 * and only then are the certificates handed back. A failure of Redis or of the audit log fails
 * the whole batch and hands back nothing.
 *
 * Threads: struct issuance_ctx is shared read-only; each thread has its own issuance_worker
 * (signer and Redis connection). The audit log group-commits across threads.
 */
#ifndef ISSUANCE_ISSUANCE_H
#define ISSUANCE_ISSUANCE_H

#include <stdbool.h>
#include <stddef.h>

#include "audit/audit.h"
#include "ca/authority.h"
#include "ca/issue.h"
#include "ca/key.h"
#include "ca/profile.h"
#include "core/buf.h"
#include "core/conf.h"
#include "core/err.h"

/* Reads the secret for a CA key: for file: keys the passphrase from passphrase_file (if given),
 * else conf key_passphrase_file, else the environment variable conf key_passphrase_env; for
 * pkcs11: keys the PIN from conf pkcs11_pin_env (the URI may carry its own). Missing secret:
 * out stays empty (the key load then says what is missing). */
int issuance_secret_load(const struct conf *c, const char *key_uri, const char *passphrase_file,
                         struct buf *out, struct err *e) ATTR_WUR;

/* The name of the CA to use: name if not NULL, else conf default_ca, else the only active CA of
 * the store (an error lists them when there are several). A name that is no CA of the store is
 * looked up as an issuing alias (Redis) and gives the CA the alias names now. Owned by the
 * caller. */
char *issuance_ca_pick(const struct conf *c, const char *name, struct err *e) ATTR_WUR;

/* Issuing aliases: a name (say "devices") that maps to one CA at a time, in Redis
 * (store_alias_*) and in the audit log (records "ca_alias"); stations, default_ca, --ca and
 * requests may name an alias instead of a CA. */
struct issuance_aliases {
    char **names;
    char **cas;
    size_t n;
    uint64_t gen; /* Redis's alias:gen when read */
};
/* Reads every alias from Redis (conf redis_url). */
int issuance_aliases_load(const struct conf *c, struct issuance_aliases *out,
                          struct err *e) ATTR_WUR;
/* The CA an alias names, NULL when name is no alias. */
const char *issuance_alias_target(const struct issuance_aliases *a, const char *name);
void issuance_aliases_release(struct issuance_aliases *a);
/* True when DATA/ca/NAME exists (a CA of the store, whatever its status). */
bool issuance_ca_exists(const struct conf *c, const char *name);

struct issuance_ctx {
    const struct conf *conf;
    struct ca_authority *ca;
    struct ca_key *key;
    struct ca_issuer *issuer;
    struct ca_profiles *profiles;
    struct audit_log *audit;
    struct buf chain_pem; /* the CA certificate and its parents */
};

/* Loads CA, key (secret as issuance_secret_load), profiles and opens the audit log. Refuses a
 * CA that is pending or retired. */
struct issuance_ctx *issuance_ctx_open(const struct conf *c, const char *ca_name,
                                       const char *passphrase_file, struct err *e) ATTR_WUR;
void issuance_ctx_free(struct issuance_ctx *ctx);

struct issuance_worker;
struct issuance_worker *issuance_worker_new(const struct issuance_ctx *ctx, struct err *e) ATTR_WUR;
void issuance_worker_free(struct issuance_worker *w);

struct issuance_item {
    /* in (borrowed) */
    const uint8_t *csr;
    size_t csr_len;
    const char *profile;   /* NULL: conf default_profile */
    const char *requester; /* who asked: "station:NAME", "cli:user@host" */
    const char *renews;    /* a renewal: the serial this replaces, else NULL */
    /* an enrollment (POST /v1/enroll): the certificate's commonName is cn whatever the CSR asks
     * (ca_prepare_cn); device, source (the client's address) and token (the token's id) go into
     * the audit record. NULL: none. */
    const char *cn_forced;
    const char *device;
    const char *source;
    const char *token;
    /* out */
    bool issued;
    struct err err;        /* why it was rejected, when !issued */
    struct ca_issued cert; /* when issued: DER, fingerprint, serial */
    char subject[1024];
    char cn[257];
    char not_after[24];
    bool validity_clamped; /* notAfter is the CA's: the profile's validity would outlive it */
};

/* Issues what it can of items[0..n). Returns -1 (and no item issued) only when Redis or the
 * audit log failed; rejected CSRs are reported per item and audited. */
int issuance_run(struct issuance_worker *w, struct issuance_item *items, size_t n,
                 struct err *e) ATTR_WUR;
void issuance_item_release(struct issuance_item *it);

/* Fills an index entry from an audit "issue" record (strings borrowed from rec); -1 with
 * ERRC_INVALID naming the missing field when the record is incomplete. */
struct store_cert;
int issuance_index_from_record(json_t *rec, uint64_t seq, struct store_cert *out,
                               struct err *e) ATTR_WUR;

/* Issues one CSR as the CLI user ("cli:USER@HOST") through a worker of its own, for jitrctl's
 * one-shot commands. Returns -1 when Redis or the audit log failed, or when the CSR was
 * rejected (e then says why, after `what: `); on 0, it->cert holds the certificate (release
 * with issuance_item_release). it->requester is not kept. */
int issuance_sign_one(const struct issuance_ctx *ctx, const uint8_t *csr, size_t len,
                      const char *profile, const char *what, struct issuance_item *it,
                      struct err *e) ATTR_WUR;

/* "cli:USER@HOST" for the calling process. */
void issuance_cli_requester(char *out, size_t cap);

/* Appends one audit record for a CA operation (type "ca_init", "ca_import", ...); obj is
 * borrowed. */
int issuance_audit_ca_op(const struct conf *c, const char *type, const char *ca, json_t *fields,
                         struct err *e) ATTR_WUR;

#endif
