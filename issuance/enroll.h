/*
 * Enrollment by devices that hold no certificate of ours yet (docs/enroll.md): the state jitrd's
 * POST /v1/tokens and POST /v1/enroll and jitrctl's token and claim commands share in Redis.
 *
 *   token   a random single-use secret an installer obtained for one device: stored only as its
 *           SHA-256 (jitrca:token:HASH, a hash: device, profile, ca, requester, expires; expiring
 *           with the token), bound to the device id that becomes the certificate's CN; taken
 *           (marked used) by one redemption, given back when that issued nothing
 *   fails   failed redemptions per source address: a token bucket (enroll_fail_limit at once,
 *           as many back per 10 minutes); an address whose bucket is empty is blocked
 *           (jitrca:enroll:block:ADDR) until one came back
 *   claim   a shared claim certificate of a batch of devices (jitrca:claim:NAME: serial, ca,
 *           profile of its devices, hook, allowlist, expires; jitrca:claim:NAME:allow the
 *           allowlist, jitrca:claim:NAME:used the device ids that enrolled with it, each once)
 *
 * Creating a token or a claim appends its audit record (token_issue, claim_issue) durably
 * before it is handed out. The functions are synchronous (a signing thread, jitrctl).
 */
#ifndef ISSUANCE_ENROLL_H
#define ISSUANCE_ENROLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"
#include "core/compat.h"
#include "core/err.h"
#include "store/store.h"

#define ENROLL_DEVICE_MAX    128  /* an AWS IoT thing name's length */
#define ENROLL_TOKEN_TTL_MAX 3600 /* seconds */
#define ENROLL_TOKEN_LEN     43   /* 32 random bytes, base64url without padding */
#define ENROLL_HOOK_MAX      512

/* A device id: [A-Za-z0-9:_-]{1,128}, what an AWS IoT thing name may be. */
bool enroll_device_ok(const char *id);

struct enroll_token {
    char device[ENROLL_DEVICE_MAX + 1];
    char profile[65];
    char ca[65];
    char requester[128]; /* who asked for it: station:NAME, cli:USER@HOST */
    int64_t expires;     /* Unix seconds */
    char hash[65];       /* SHA-256 of the token, hex: its key */
    char id[17];         /* the hash's first 16 digits: the token's name in records and logs */
};

/* A new token bound to t's device, profile, ca, requester and expires: the secret into
 * token[ENROLL_TOKEN_LEN + 1], t->hash and t->id set. Stored, then audited durably
 * (token_issue); an audit failure removes it again. */
int enroll_token_create(struct store *st, struct audit_log *log, struct enroll_token *t,
                        char token[ENROLL_TOKEN_LEN + 1], struct err *e) ATTR_WUR;
/* Takes the token for one redemption (attempt: a unique id of it): 1 with *t filled when it is
 * known, unused and unexpired (it is used from now on); 0 when not, without saying which;
 * -1 when Redis failed. */
int enroll_token_take(struct store *st, const char *token, const char *attempt,
                      struct enroll_token *t, struct err *e) ATTR_WUR;
/* Gives a taken token back (its redemption issued nothing). */
int enroll_token_give_back(struct store *st, const struct enroll_token *t, const char *attempt,
                           struct err *e) ATTR_WUR;

/* Is the source address blocked after too many failed redemptions? *retry_ms > 0: yes, for
 * that long. */
int enroll_fail_blocked(struct store *st, const char *addr, int64_t *retry_ms,
                        struct err *e) ATTR_WUR;
/* Counts one failed redemption of addr (limit: enroll_fail_limit). */
int enroll_fail_count(struct store *st, const char *addr, int64_t limit, struct err *e) ATTR_WUR;

struct enroll_claim {
    char name[65];
    char serial[41]; /* of its certificate */
    char ca[65];
    char profile[65];               /* of the devices' certificates */
    char hook[ENROLL_HOOK_MAX + 1]; /* "" = none */
    bool allowlist;                 /* only the ids of its allowlist may enroll */
    int64_t expires;                /* Unix seconds: no enrollment after */
};

/* Stores a new claim (ERRC_CONFLICT when one of that name exists) with its allowlist devices
 * (n may be 0), then audits it durably (claim_issue, requester). */
int enroll_claim_create(struct store *st, struct audit_log *log, const struct enroll_claim *c,
                        const char *const *devices, size_t n, const char *requester,
                        struct err *e) ATTR_WUR;
/* The ids of an allowlist in one claim_allow audit record at most. */
#define ENROLL_ALLOW_CHUNK 4000
/* Writes claims back from what an index rebuild gathered from the audit log: an object of
 * claim name → {"serial", "ca", "profile", "hook", "allowlist" (bool), "exp" (Unix seconds): the
 * claim_issue record's, absent when no log read has it; "allow": ids of its claim_allow
 * records; "used": the device ids of the certificates issued to requester claim:NAME}. What is
 * in Redis already is kept (SADD), the claim's fields are written again. */
int enroll_claims_restore(struct store *st, json_t *claims, struct err *e) ATTR_WUR;
/* The claim of that name; ERRC_NOT_FOUND when there is none. */
int enroll_claim_get(struct store *st, const char *name, struct enroll_claim *c,
                     struct err *e) ATTR_WUR;
/* Reserves device under claim c: 0 reserved, 1 not on its allowlist, 2 enrolled with it
 * already; check_only tells without reserving. */
int enroll_claim_reserve(struct store *st, const struct enroll_claim *c, const char *device,
                         bool check_only, int *res, struct err *e) ATTR_WUR;
/* Releases a reservation whose enrollment issued nothing. */
int enroll_claim_release(struct store *st, const struct enroll_claim *c, const char *device,
                         struct err *e) ATTR_WUR;
/* Devices enrolled with the claim so far. */
int enroll_claim_used(struct store *st, const char *name, int64_t *n, struct err *e) ATTR_WUR;

#endif
