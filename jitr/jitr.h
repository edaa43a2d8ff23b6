/*
 * jitr/: just-in-time registration, from AWS IoT's "certificate registered" event to an ACTIVE,
 * provisioned device (docs/jitr.md; the AWS side in docs/aws-iot.md).
 *
 *   event.c     the intakes' bodies (the registered event, one or a batch; SQS message bodies)
 *               and the destination-confirmation message: parse and validate (pure, fuzzed by
 *               tests/fuzz/fuzz_jitr_event.c); an event as a stream entry (encode, decode)
 *   template.c  AWS JITP provisioning templates (Parameters from the certificate, Resources,
 *               Ref / Fn::Join / Fn::Sub / Fn::Select / Fn::Split) and IoT policy checks (pure)
 *   flow.c      the per-certificate state machine (docs/style.md, "State machines"), driven
 *               through struct jitr_io so tests complete its operations by hand
 *   service.c   the production jitr_io inside a jitrd worker: Redis stream consumer group,
 *               AWS IoT client, metrics in Redis, dead letters; it starts and stops:
 *   ctx.c       what the parts below share (jitr/ctx.h): stats, the AWS call wrapper, the CA
 *               table, the backoff
 *   auditq.c    the flows' audit appends, off the loop
 *   loader.c    files read off the loop: the CA table every 10 s, SIGHUP's reload; the
 *               templates register jobs carry (jitr:tpl:<sha256>), read and parsed once
 *   policy.c    each template's IoT policies in AWS, once per policy
 *   reconcile.c the reconciler (ListCertificatesByCA)
 *   intake.c    POST /v1/jitr/events on its own listener (plain HTTP or TLS)
 *   sqs.c       the SQS long-poll intake
 *   confirm.c   the topic rule destination's confirmation (ConfirmTopicRuleDestination)
 *   admin.c     synchronous helpers for jitrctl (status, dead letters)
 *
 * Redis keys (prefix "jitrca:"):
 *   jitr:events          stream of accepted events (consumer group "jitr")
 *   jitr:dlq             stream of dead letters (event fields + state, error)
 *   jitr:dev:<certId>    hash: state, serial, ca, thing, attempts, first_ms, updated_ms, outcome,
 *                        reason; the state is the next step to run (a crash resumes there)
 *   jitr:trace:<certId>  list: "<ms> <STATE> <detail>" lines (the last 64)
 *   jitr:lock:<certId>   in-flight lock (SET NX PX): concurrent duplicates do not race
 *   jitr:policy:<name>   hash: sha256 and version of the document known to be in AWS
 *   jitr:tpl:<sha256>    string: a template jitrctl aws register-batch --template stored
 *   jitr:stats           hash: counters (outcomes, states, AWS calls by API and result,
 *                        latency histogram, intake refusals) shared by every jitrd process
 *   jitr:confirm:<sha256 of a confirmation token>
 *                        string pending | done | failed (with a TTL): at most one
 *                        ConfirmTopicRuleDestination per token
 *   jitr:confirm_gate    set for JITR_CONFIRM_INTERVAL_MS after each confirmation started:
 *                        the global rate limit
 */
#ifndef JITR_JITR_H
#define JITR_JITR_H

#include <jansson.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws/iot.h"
#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"
#include "store/async.h"

/* ---- event.c -------------------------------------------------------------------------------- */

#define JITR_EVENT_MAX   8192   /* bytes of one event (it is about 300) */
#define JITR_BATCH_MAX   10     /* events of one batched HTTP rule action (maxBatchSize) */
#define JITR_BODY_MAX    131072 /* bytes of an intake body (the largest maxBatchSizeBytes) */
#define JITR_CONFIRM_MAX 8192
#define JITR_TOKEN_MAX   2048 /* ConfirmTopicRuleDestination: token 1..2048 */
#define JITR_ARN_MAX     511

struct jitr_event {
    char cert_id[65]; /* lowercase hex */
    char ca_id[65];
    char account[13];
    int64_t timestamp_ms;  /* 0 when absent or not a number */
    int64_t registered_ms; /* certificateRegistrationTimestamp, 0 when absent, null, ... */
    int64_t received_ms;   /* when the intake accepted it (not from the body) */
};

/* Is ca_id (lowercase hex) one of our registered CAs? */
typedef bool jitr_ca_known_fn(void *arg, const char *ca_id);

/* A body as the intakes receive it (docs/jitr.md "Accepted events"): one event, or a batch. */
struct jitr_events {
    bool batch;    /* the body was a JSON array (an HTTP rule action with batching enabled) */
    size_t n;      /* events in the body: 1 for a single object, 1..JITR_BATCH_MAX for a batch */
    size_t nvalid; /* of which valid */
    struct jitr_event ev[JITR_BATCH_MAX]; /* ev[i] is valid when err[i].code is ERRC_OK */
    struct err err[JITR_BATCH_MAX];       /* why element i can never be valid */
};

/* Parses and validates an intake body: a JSON object, AWS IoT's registered event
 * (docs/aws-iot.md, "The registered event"), or a JSON array of 1..JITR_BATCH_MAX of them. Each
 * event: certificateId and caCertificateId (64 hex digits, stored lowercase), certificateStatus
 * "PENDING_ACTIVATION", awsAccountId (12 digits) are required and checked strictly; timestamp
 * and certificateRegistrationTimestamp are read when they are a number or a numeric string (0
 * otherwise: absent, null, ...); other members are ignored; a duplicate member refuses the
 * event. known == NULL accepts any CA. Returns 0 when the body could be read, each event's
 * verdict in out->err[i] (ERRC_INVALID naming the member; ERRC_DENIED for a CA that is not
 * ours), or -1 refusing the whole body: ERRC_TOO_LARGE above JITR_BODY_MAX bytes (a single
 * object: JITR_EVENT_MAX), above JITR_BATCH_MAX elements; ERRC_INVALID for an empty body, not
 * JSON, neither an object nor an array, an empty array, an array inside the array. In a batch,
 * an element above JITR_EVENT_MAX bytes or that is not an object is refused alone (out->err). */
int jitr_events_parse(const uint8_t *body, size_t len, jitr_ca_known_fn *known, void *arg,
                      struct jitr_events *out, struct err *e) ATTR_WUR;

/* One event only (a JSON object, at most JITR_EVENT_MAX bytes): jitr_events_parse's checks;
 * out is zeroed and *e says why when the body or the event is refused. */
int jitr_event_parse(const uint8_t *body, size_t len, jitr_ca_known_fn *known, void *arg,
                     struct jitr_event *out, struct err *e) ATTR_WUR;

/* An ARN taken apart, generically: arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE (PARTITION one
 * of AWS's, aws_partition_known; SERVICE and REGION of [a-z0-9-], ACCOUNT empty or 12 digits,
 * RESOURCE printable without spaces). */
struct jitr_arn {
    char partition[24];
    char service[32];
    char region[32];
    char account[13];
    char resource[JITR_ARN_MAX + 1];
};
int jitr_arn_parse(const char *s, struct jitr_arn *out, struct err *e) ATTR_WUR;
/* The ARN of an IoT topic rule destination: service iot, a region, an account, a resource
 * ruledestination/..., the partition of that region (aws_partition_of_region:
 * arn:aws-cn:iot:cn-north-1:...). */
int jitr_destination_arn_parse(const char *s, struct jitr_arn *out, struct err *e) ATTR_WUR;
/* jitr.destination_arns: comma-separated destination ARNs (spaces around them ignored) into a
 * new array of n strings; ERRC_INVALID naming the first bad one. */
int jitr_destination_arns_parse(const char *list, char ***out, size_t *n, struct err *e) ATTR_WUR;
void jitr_destination_arns_free(char **arns, size_t n);

struct jitr_confirm {
    char arn[JITR_ARN_MAX + 1];
    struct jitr_arn dest; /* arn taken apart */
    char token[JITR_TOKEN_MAX + 1];
    char enable_url[JITR_TOKEN_MAX + 256];
};

/* The destination-confirmation message (docs/aws-iot.md, "Topic rule HTTP action"): {"arn",
 * "confirmationToken", "enableUrl", "messageType": "DestinationConfirmation"}. The token must be
 * 1..2048 printable characters without spaces, the arn a topic rule destination's
 * (jitr_destination_arn_parse, any partition). ERRC_INVALID otherwise, ERRC_TOO_LARGE above
 * JITR_CONFIRM_MAX bytes. */
int jitr_confirm_parse(const uint8_t *body, size_t len, struct jitr_confirm *out,
                       struct err *e) ATTR_WUR;

/* The destinations this jitrd confirms: the ARNs of jitr.destination_arns when there are any,
 * else every destination in region whose account is one of accounts (those our CAs are
 * registered in). */
struct jitr_dest_policy {
    const char *const *arns;
    size_t narns;
    const char *region;
    const char *const *accounts;
    size_t naccounts;
};
/* 0 when c names one of p's destinations; ERRC_DENIED saying why otherwise. */
int jitr_destination_check(const struct jitr_confirm *c, const struct jitr_dest_policy *p,
                           struct err *e) ATTR_WUR;

/* ---- an event as a stream entry (event.c) -------------------------------------------------- */

/* The fields of an event in the jitr:events stream, and the event's part of a dead letter in
 * jitr:dlq (docs/redis.md): cert, ca, account, recv, then ts when the event carried a timestamp
 * and src when one is given. Every writer encodes with jitr_event_fields, every reader decodes
 * with jitr_event_from_fields. */
#define JITR_FIELDS_MAX 12
struct jitr_fields {
    const char *av[JITR_FIELDS_MAX]; /* field, value, ...: borrowed from ev, src and below */
    size_t n;
    char recv[24], ts[24];
};
/* src: "http", "sqs", "reconciler", "dlq-retry", or NULL for none. ev and src are borrowed. */
void jitr_event_fields(const struct jitr_event *ev, const char *src, struct jitr_fields *out);
/* An entry's n strings (field, value, ...; other fields are ignored) into *ev (zeroed first):
 * ERRC_INVALID when cert or ca is not 64 hex digits; an account that is not 12 digits is left
 * empty, recv and ts that are not numbers 0. */
int jitr_event_from_fields(const char *const *kv, size_t n, struct jitr_event *ev,
                           struct err *e) ATTR_WUR;

/* ---- the SQS intake's message bodies (event.c) --------------------------------------------- */

#define JITR_SQS_BODY_MAX (2 * JITR_BODY_MAX) /* bytes of a message body (base64 is 4/3) */

/* An SQS message body as an IoT rule's sqs action sends it: the event JSON (an object, or an
 * array of them), or its base64 (useBase64: true); detected, not configured. out receives the
 * JSON text (something starting with '{' or '[' after whitespace), for jitr_events_parse.
 * ERRC_TOO_LARGE above JITR_SQS_BODY_MAX bytes; ERRC_INVALID when the body is neither JSON
 * nor base64 of it. *was_base64 says which it was. */
int jitr_sqs_body_decode(const char *body, size_t len, struct buf *out, bool *was_base64,
                         struct err *e) ATTR_WUR;

/* ---- template.c ----------------------------------------------------------------------------- */

#define JITR_POLICY_MAX 2048 /* characters, whitespace excluded (docs/aws-iot.md) */

/* Parameter values: the JITP built-ins from the certificate (AWS::IoT::Certificate::CommonName,
 * ::SerialNumber (subject serialNumber), ::Organization, ::OrganizationalUnit, ::Country,
 * ::StateName, ::DistinguishedNameQualifier, ::Id) and jitrca's own jitrca::SerialHex (the
 * certificate's serial). */
struct jitr_params {
    char **names;
    char **values;
    size_t n;
};
void jitr_params_release(struct jitr_params *p);
void jitr_params_set(struct jitr_params *p, const char *name, const char *value);
const char *jitr_params_get(const struct jitr_params *p, const char *name);
/* The parameters of cert (borrowed); cert_id is the AWS certificateId. */
void jitr_params_from_cert(X509 *cert, const char *cert_id, struct jitr_params *out);

struct jitr_template;

#define JITR_POLICIES_MAX 10 /* AWS attaches at most 10 policies to a certificate */

/* Parses a JITP template (docs/aws-iot.md, "JITP templates"): Parameters, Resources of type AWS::IoT::Thing,
 * AWS::IoT::Certificate and AWS::IoT::Policy (one or more), intrinsic functions Ref, Fn::Join,
 * Fn::Sub, Fn::Select, Fn::Split. A policy is PolicyName (an existing policy, attached) or a
 * constant PolicyDocument, a string or an object (checked by jitr_policy_check), named by the
 * lowercase hex SHA-256 of its text; policy_name (jitr.policy_name; NULL or "" for none) names
 * the template's one PolicyDocument instead, and that policy gets a new version when the
 * document changes. Errors name the template (origin), the resource and the property. */
struct jitr_template *jitr_template_parse(const char *text, size_t len, const char *origin,
                                          const char *policy_name, struct err *e) ATTR_WUR;
struct jitr_template *jitr_template_load(const char *path, const char *policy_name,
                                         struct err *e) ATTR_WUR;
void jitr_template_free(struct jitr_template *t);
const char *jitr_template_origin(const struct jitr_template *t);

enum jitr_override { JITR_OVR_DO_NOTHING, JITR_OVR_REPLACE, JITR_OVR_MERGE, JITR_OVR_FAIL };

/* What the template says for one device. */
struct jitr_plan {
    char *thing_name;
    char *thing_type;    /* NULL: none */
    char *billing_group; /* NULL: none */
    json_t *attributes;  /* object of strings (owned), NULL: none */
    char **groups;       /* without duplicates */
    size_t ngroups;
    /* OverrideSettings: the thing's, for a thing that exists already; the certificate's Status,
     * for a certificate that is ACTIVE or INACTIVE already (never MERGE but for groups) */
    enum jitr_override thing_override;  /* AttributePayload */
    enum jitr_override type_override;   /* ThingTypeName */
    enum jitr_override groups_override; /* ThingGroups */
    enum jitr_override status_override; /* the certificate's Status */
    bool activate; /* AWS::IoT::Certificate Status ACTIVE (default) or INACTIVE */
};
void jitr_plan_release(struct jitr_plan *p);

/* Evaluates the template with the parameters (Default when the certificate lacks one, an error
 * naming the parameter when there is none: AWS fails provisioning then too); every name and
 * attribute is checked against what AWS accepts (jitr_name_ok). ERRC_INVALID. */
int jitr_template_eval(const struct jitr_template *t, const struct jitr_params *p,
                       struct jitr_plan *out, struct err *e) ATTR_WUR;

/* The template's policies, in the template's order, each once. Borrowed. */
struct jitr_policy {
    const char *name;
    const char *doc;  /* "" for an existing policy the template names */
    const char *hash; /* lowercase hex SHA-256 of doc */
    bool versioned;   /* jitr.policy_name: a new default version when the document changes */
};
size_t jitr_template_npolicies(const struct jitr_template *t);
/* The certificate resource's OverrideSettings.Status (DO_NOTHING when absent). */
enum jitr_override jitr_template_status_override(const struct jitr_template *t);
const struct jitr_policy *jitr_template_policy(const struct jitr_template *t, size_t i);

/* Names and values as AWS IoT's model constrains them. */
enum jitr_name_kind {
    JITR_NAME_THING,
    JITR_NAME_THING_TYPE,
    JITR_NAME_THING_GROUP,
    JITR_NAME_BILLING_GROUP,
    JITR_NAME_ATTR,
    JITR_NAME_ATTR_VALUE,
    JITR_NAME_POLICY,
};
bool jitr_name_ok(enum jitr_name_kind k, const char *s);
/* "1..128 of [a-zA-Z0-9:_-]", for messages. */
const char *jitr_name_rule(enum jitr_name_kind k);

/* Checks an IoT policy document offline: JSON, at most JITR_POLICY_MAX characters without
 * whitespace, Version "2012-10-17", Statement objects with Effect Allow|Deny, Action(s) "iot:..."
 * and Resource(s) "*" or "arn:aws:iot:..." strings, policy variables ${...} among those AWS
 * knows, and never an Allow of iot:* on * (least privilege). ERRC_INVALID with the reason. */
int jitr_policy_check(const char *doc, size_t len, struct err *e) ATTR_WUR;
/* The policy's length without whitespace (what AWS counts). */
size_t jitr_policy_size(const char *doc, size_t len);
/* jitr_name_ok(JITR_NAME_THING, s). */
bool jitr_thing_name_ok(const char *s);

/* ---- check.c: will the template work for our devices? ------------------------------------ */

struct ca_profiles;

/* Evaluates t against a representative certificate (built in memory: the profile's required
 * subject attributes, a CN its cn_pattern accepts) of every profile with "jitr": true under
 * every CA of data_dir JITR serves (registered in AWS and not compromised; the active ones
 * while none is registered; a CA-less one when there is none). report (NULL: none) receives
 * one object per pair: {"ca", "profile", "subject", "ok", "plan" | "error"}. 0 when every pair
 * works; ERRC_INVALID naming the template, the first failing pair, the parameter and what to
 * change in the profile; ERRC_NOT_FOUND when no profile allows JITR. */
int jitr_template_check_fleet(const struct jitr_template *t, const char *data_dir,
                              const struct ca_profiles *profiles, json_t *report,
                              struct err *e) ATTR_WUR;
/* What t makes of a real certificate: *out = {"certificate_id", "thing", "thing_type",
 * "billing_group", "attributes", "groups", "policies", "status"}; ERRC_INVALID naming the
 * parameter the certificate lacks or the name AWS would refuse. */
int jitr_template_check_cert(const struct jitr_template *t, X509 *cert, json_t **out,
                             struct err *e) ATTR_WUR;

/* ---- flow.c --------------------------------------------------------------------------------- */

/* Adding a state? Update jitr_state_names[] and state_fns[] in flow.c and docs/jitr.md. The
 * stored resume points are the names, so the order may change. */
enum jitr_state {
    JITR_ST_RECEIVED,          /* request context created from a queued event */
    JITR_ST_LOCK,              /* Redis SET jitr:lock:<id> NX PX: one flow per certificate */
    JITR_ST_LOAD,              /* Redis HGETALL jitr:dev:<id>: finished already? resume where? */
    JITR_ST_LOOKUP,            /* Redis GET fp:<id>, HGETALL cert:<serial>: our index */
    JITR_ST_DESCRIBE,          /* AWS DescribeCertificate: AWS's record (CA, status, PEM) */
    JITR_ST_EVALUATE,          /* pure: the decision (docs/jitr.md "The decision") */
    JITR_ST_ADOPT,             /* AWS ListPrincipalThings, ListAttachedPolicies: ACTIVE with no
                                * state of ours, provisioned by a flow whose states were lost? */
    JITR_ST_CREATE_THING,      /* AWS CreateThing (identical config: 200; other: conflict) */
    JITR_ST_UPDATE_THING,      /* AWS UpdateThing: an existing thing, OverrideSettings MERGE or
                                  REPLACE */
    JITR_ST_POLICY,            /* the template's policies in AWS (once per policy) */
    JITR_ST_ATTACH_POLICY,     /* AWS AttachPolicy to the certificate ARN, per policy */
    JITR_ST_ATTACH_PRINCIPAL,  /* AWS AttachThingPrincipal (EXCLUSIVE_THING by config) */
    JITR_ST_LIST_GROUPS,       /* AWS ListThingGroupsForThing: an existing thing, ThingGroups
                                  REPLACE */
    JITR_ST_REMOVE_FROM_GROUP, /* AWS RemoveThingFromThingGroup, per group not in the template */
    JITR_ST_ADD_TO_GROUP,      /* AWS AddThingToThingGroup, per group (optional) */
    JITR_ST_ACTIVATE,          /* AWS UpdateCertificate ACTIVE: last, the commit marker */
    JITR_ST_RECORD,            /* waits for the audit append (a thread), then Redis: DONE */
    JITR_ST_REJECT,            /* AWS UpdateCertificate REVOKED (or left pending, by config) */
    JITR_ST_RECORD_REJECT,     /* waits for the audit append, then Redis: state REJECTED */
    JITR_ST_RECORD_IGNORE,     /* not ours to touch: the audit append, then Redis: IGNORED */
    JITR_ST_PERSIST,           /* Redis: the next state and the trace (after each AWS step) */
    JITR_ST_UNLOCK,            /* Redis: release the lock if still ours */
    JITR_ST_FINISHED,          /* io->done has run */
    JITR_ST__COUNT
};
const char *jitr_state_name(enum jitr_state st);
/* The state of that name, or -1. */
int jitr_state_parse(const char *name);

enum jitr_outcome {
    JITR_OUT_NONE,
    JITR_OUT_ACTIVATED, /* provisioned and ACTIVE now */
    JITR_OUT_REJECTED,  /* a fact about the certificate (not signed by the CA AWS names, revoked,
                         * expired, CA compromised): REVOKED in AWS or left pending */
    JITR_OUT_IGNORED,   /* AWS's record says it is not ours to touch (another CA, not
                         * PENDING_ACTIVATION): nothing changed in AWS, audited */
    JITR_OUT_DUPLICATE, /* already finished: nothing done */
    JITR_OUT_BUSY,      /* another flow holds the certificate's lock: retry later */
    JITR_OUT_RETRY,     /* transient failure: retry after a backoff */
    JITR_OUT_DEAD,      /* permanent failure: dead-letter */
    JITR_OUT__COUNT
};
const char *jitr_outcome_name(enum jitr_outcome o);

/* One of our CAs as the flow sees it (borrowed from the service). */
struct jitr_ca {
    const char *name;
    const char *aws_id; /* its certificateId in AWS: SHA-256 of its DER */
    X509 *cert;
    bool registered;  /* registered in AWS by jitrctl ca register */
    bool compromised; /* jitrctl ca mark-compromised: its certificates are revoked in AWS */
};

/* Read-only context of every flow (owned by the service or the test). */
struct jitr_env {
    const struct jitr_ca *cas;
    size_t ncas;
    const struct ca_profiles *profiles;
    const struct jitr_template *tpl;
    const char *region;
    bool reject_leave_pending; /* rejected certificates stay PENDING_ACTIVATION */
    bool thing_conflict_fail;  /* an existing thing with other attributes: dead letter */
    bool exclusive_thing;      /* AttachThingPrincipal with thingPrincipalType EXCLUSIVE_THING */
    const char *thing_group;   /* every device joins this group too; NULL/"" none */
    int lock_ms;               /* lock lifetime (renewed by the worker, io->lease_hold) */
    int64_t renewal_grace_s;   /* a renewal ACTIVE: its predecessor retired this much later */
    int redis_timeout_ms;
    int64_t (*now_ms)(void);   /* NULL: time_now_ms */
};

struct jitr_req;

/* An audit append completed: seq of the record; found = it was there already (nothing
 * appended); e != NULL: nothing acknowledged. */
typedef void jitr_audit_cb(void *arg, uint64_t seq, bool found, const struct err *e);

/* The world of a flow. Async functions follow docs/style.md, "Asynchronous calls" (-1: cb never
 * runs; 0: cb exactly once, later, from the loop). */
struct jitr_io {
    void *ctx;
    /* a Redis command; keys carry STORE_PREFIX */
    int (*redis)(void *ctx, int argc, const char *const *argv, store_reply_cb *cb, void *arg,
                 struct err *e);
    /* an AWS IoT call (aws_iot_call); in is borrowed */
    int (*aws)(void *ctx, enum aws_iot_op op, json_t *in, aws_iot_cb *cb, void *arg,
               struct err *e);
    /* the template's policy idx (jitr_template_policy) exists in AWS with its document */
    int (*policy_ready)(void *ctx, const struct jitr_template *t, size_t idx, store_done_cb *cb,
                        void *arg, struct err *e);
    /* appends an audit record (borrowed: copied before the call returns) durably, off the
     * loop; cb runs once on the loop after the fdatasync, with the record's seq. check: an
     * earlier attempt may have appended it already (it crashed before saving DONE): when the log
     * holds a durable record of the same "type" and "certificate_id" with a seq above after, cb
     * gets that seq with found = true and nothing is appended. */
    int (*audit)(void *ctx, json_t *rec, bool check, uint64_t after, jitr_audit_cb *cb,
                 void *arg, struct err *e);
    /* a seq at or below the last record of the audit log now (0: unknown); no I/O */
    uint64_t (*audit_mark)(void *ctx);
    /* the flow has finished (jitr_req_outcome); the owner may free r from here */
    void (*done)(void *ctx, struct jitr_req *r);
    /* optional (NULL: the lock lives lock_ms from its take and each save): the certificate's
     * lock (key, taken with token by a command sent at sent_ms) is kept renewed by the worker
     * while the flow holds it (jobs_lease_hold); lease_held says whether the flow may still act
     * under it, lease_drop releases it (no renewal from then on) */
    void *(*lease_hold)(void *ctx, const char *key, const char *token, int64_t sent_ms);
    bool (*lease_held)(void *ctx, void *lease);
    void (*lease_drop)(void *ctx, void *lease);
};

/* A flow for one event. entry_id is the stream entry (copied; "" in tests). */
struct jitr_req *jitr_req_new(const struct jitr_env *env, const struct jitr_io *io,
                              const struct jitr_event *ev, const char *entry_id);
/* Before jitr_req_start: the flow provisions with tpl (borrowed: it must outlive the flow),
 * the template a register job carries (jitrctl aws register-batch --template), named by sha
 * (its SHA-256, 64 lowercase hex), instead of env->tpl. A certificate whose flow record names
 * another template than the flow's (sha, or "" for env->tpl) is left to that template's flow:
 * the flow ends DEAD saying so. */
void jitr_req_set_template(struct jitr_req *r, const struct jitr_template *tpl, const char *sha);
/* Runs the machine until it waits on an operation; io->done runs at the end (never inside
 * jitr_req_start itself unless the very first operation fails to start). */
void jitr_req_start(struct jitr_req *r);
void jitr_req_free(struct jitr_req *r);
enum jitr_outcome jitr_req_outcome(const struct jitr_req *r);
enum jitr_state jitr_req_state(const struct jitr_req *r);
/* Why it was rejected, ignored, retried or dead-lettered ("" otherwise). */
const struct err *jitr_req_err(const struct jitr_req *r);
/* Every state entered, space-separated ("RECEIVED LOCK LOAD ..."). */
const char *jitr_req_trace(const struct jitr_req *r);
const struct jitr_event *jitr_req_event(const struct jitr_req *r);
const char *jitr_req_entry(const struct jitr_req *r);
const char *jitr_req_thing(const struct jitr_req *r); /* "" before EVALUATE */
/* AWS calls made by this flow. */
unsigned jitr_req_aws_calls(const struct jitr_req *r);

/* ---- service.c / intake.c: JITR inside a jitrd worker --------------------------------------- */

struct event_base;
struct conf;
struct jitr_service;

/* jitrd --check-config: the "jitr" section of conf is usable (cross-key rules; the provisioning
 * template loads and validates). Errors name the file and the key. */
int jitr_check_config(const struct conf *conf, struct err *e) ATTR_WUR;

/* Starts JITR in a worker: reads conf's "jitr" section (docs/jitr.md; errors name the key),
 * opens the intake listener (SO_REUSEPORT, every worker), joins the consumer group, and in worker
 * slot 0 runs the reconciler. NULL with *e set when the settings, template, CA store or listener
 * are unusable. Redis being down is not an error: the intake answers 503 until it is back. */
struct jitr_service *jitr_service_new(struct event_base *base, const struct conf *conf,
                                      size_t slot, struct err *e) ATTR_WUR;
/* Stops the intake and the consumer; flows in flight are cancelled (their entries stay pending
 * and are claimed by another worker or after a restart). */
void jitr_service_free(struct jitr_service *s);
/* SIGTERM: takes no new events (the intake stops accepting, SQS polling and the reconciler
 * stop, no stream reads or claims); flows and intake requests in flight go on. */
void jitr_service_drain(struct jitr_service *s);
/* Flows and intake requests in flight. */
size_t jitr_service_busy(const struct jitr_service *s);
/* SIGHUP: reads the configuration file again (config_path; NULL: $JITRCA_CONFIG) off the loop
 * and swaps in the template (jitr.template, jitr.policy_name), the certificate profiles, the
 * intake secrets (jitr.secrets_file, jitr.secrets_env) and the CA table. Flows in flight finish
 * their run with what they started with. Other jitr keys take effect at the next start. When
 * the file, the template, the profiles or the secrets do not load, the error is logged and the
 * running ones stay. A reload asked for while one runs is done again after it. */
void jitr_service_reload(struct jitr_service *s, const char *config_path);

/* ---- admin.c: for jitrctl ------------------------------------------------------------------- */

/* `jitrctl jitr status ID`: ID is a certificateId (64 hex) or a serial (hex) found through the
 * index. out receives {"certificate_id", "serial", "state", ..., "trace": [...]}. ERRC_NOT_FOUND
 * when nothing is known. */
int jitr_admin_status(const char *redis_url, const char *id, json_t **out,
                      struct err *e) ATTR_WUR;
/* The dead letters, oldest first: [{"id", "certificate_id", "error", ...}]. */
int jitr_admin_dlq_list(const char *redis_url, json_t **out, struct err *e) ATTR_WUR;
/* Re-queues dead letters (every one when id is NULL, else the one with that stream id or
 * certificateId): resets their stored state, adds them to the event stream, removes them from
 * the dead-letter stream. *n receives how many. */
int jitr_admin_dlq_retry(const char *redis_url, const char *id, size_t *n,
                         struct err *e) ATTR_WUR;

#endif
