/*
 * The AWS IoT control-plane client: typed asynchronous calls on the event loop, run by the call
 * engine of aws/ (signed with aws/sigv4.h, sent through aws/transport.h, retried as botocore's
 * "standard" mode, aws/retry.h), paced by per-API token buckets in Redis shared by every process
 * (store/async.h), with credentials from aws/provider.h. docs/aws-client.md describes it.
 *
 * Settings follow the AWS SDKs (aws_config_load): AWS_REGION / AWS_DEFAULT_REGION / profile /
 * EC2 IMDS, configured endpoint URLs, FIPS and dual-stack endpoints, the credential chain.
 * Options override region and endpoint. aws_iot_new reads the shared files and, only when no
 * region is configured, asks EC2 IMDS for one (at most about 2 s): call it before the loop
 * serves.
 *
 * Async contract (docs/style.md, "Asynchronous calls"): every call either fails synchronously (-1,
 * *e set: invalid input, ERRC_INVALID; the callback never runs) or returns 0 and calls cb exactly
 * once, later, from the loop. The result and error are borrowed for the callback (copy what you
 * keep).
 * Errors (e->msg "AWS IoT OPERATION: CODE: MESSAGE (HTTP n[, after k attempts])"):
 *   ERRC_INVALID      400 InvalidRequestException, MalformedPolicyException,
 *                     RegistrationCodeValidationException, CertificateValidationException;
 *                     any other 4xx that is not retried
 *   ERRC_DENIED       401/403 (signature, credentials, authorization), a refusal code
 *                     (AccessDenied*, ExpiredToken* after the refresh, ...) whatever the status
 *   ERRC_NOT_FOUND    404 ResourceNotFoundException; no credentials in any source
 *   ERRC_CONFLICT     409 (ResourceAlreadyExists, VersionsLimitExceeded, DeleteConflict, ...),
 *                     406 CertificateStateException, 410 LimitExceededException
 *   ERRC_UNAVAILABLE  throttling or 5xx after the last attempt, unreachable endpoint,
 *                     truncated or malformed response
 *   ERRC_TIMEOUT      the last attempt timed out
 *   ERRC_CANCELED     aws_iot_free with the call outstanding (cb runs inside aws_iot_free)
 * r->error_code holds the AWS code ("ResourceAlreadyExistsException"), r->out the parsed body
 * (on success: the operation's output; on an AWS error: the error body, e.g. resourceId).
 * aws_iot_free must not be called from inside a callback.
 */
#ifndef AWS_IOT_H
#define AWS_IOT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "aws/provider.h"
#include "aws/transport.h"
#include "core/compat.h"
#include "core/err.h"

struct event_base;
struct aws_iot;

enum aws_iot_op {
    AWS_IOT_GET_REGISTRATION_CODE,
    AWS_IOT_REGISTER_CA_CERTIFICATE,
    AWS_IOT_DESCRIBE_CA_CERTIFICATE,
    AWS_IOT_UPDATE_CA_CERTIFICATE,
    AWS_IOT_LIST_CERTIFICATES_BY_CA,
    AWS_IOT_DESCRIBE_CERTIFICATE,
    AWS_IOT_UPDATE_CERTIFICATE,
    AWS_IOT_CREATE_THING,
    AWS_IOT_DESCRIBE_THING,
    AWS_IOT_CREATE_POLICY,
    AWS_IOT_GET_POLICY,
    AWS_IOT_CREATE_POLICY_VERSION,
    AWS_IOT_LIST_POLICY_VERSIONS,
    AWS_IOT_DELETE_POLICY_VERSION,
    AWS_IOT_ATTACH_POLICY,
    AWS_IOT_ATTACH_THING_PRINCIPAL,
    AWS_IOT_ADD_THING_TO_THING_GROUP,
    AWS_IOT_CONFIRM_TOPIC_RULE_DESTINATION,
    AWS_IOT_UPDATE_THING,
    AWS_IOT_LIST_THING_GROUPS_FOR_THING,
    AWS_IOT_REMOVE_THING_FROM_THING_GROUP,
    AWS_IOT_DETACH_THING_PRINCIPAL,
    AWS_IOT_LIST_PRINCIPAL_THINGS,
    AWS_IOT_REGISTER_CERTIFICATE,
    AWS_IOT_REGISTER_CERTIFICATE_WITHOUT_CA,
    AWS_IOT_LIST_ATTACHED_POLICIES,
    AWS_IOT__COUNT /* adding one? update iot_ops[] in aws/iot.c */
};

/* "CreateThing"; NULL when out of range. */
const char *aws_iot_op_name(enum aws_iot_op op);
/* The default client-side rate (requests/s) of op: AWS's default quota for it (docs/aws-client.md
 * "Default rates" gives each figure's source and date). */
double aws_iot_op_default_rate(enum aws_iot_op op);

struct aws_iot_opts {
    struct event_base *base;
    const char *const *env; /* NULL: process environment; borrowed for the client's life */
    const char *profile;    /* chosen explicitly (aws_config_opts); NULL: AWS_PROFILE */
    const char *region;     /* override */
    const char *endpoint;   /* override */
    const char *service;    /* signing name; NULL: "iot" */
    const char *redis_url;  /* shared buckets; NULL: per-process buckets only */
    const char *rates;      /* "CreateThing=100,DescribeThing=350/50,default=10": rate[/burst] */
    bool no_quota;          /* no client-side pacing at all */
    /* processes that share the quota through Redis (jitrd's workers): while Redis is absent or
     * failing, each paces alone at rate / local_share (burst likewise, at least 1), so together
     * they stay within it; 0 or 1: the whole rate */
    unsigned local_share;
    long timeout_ms;        /* per attempt; 0: 10000 */
    unsigned max_attempts;  /* 0: 3 */
    struct aws_credp_opts creds;
};

struct aws_iot *aws_iot_new(const struct aws_iot_opts *o, struct err *e) ATTR_WUR;
void aws_iot_free(struct aws_iot *c);
const char *aws_iot_region(const struct aws_iot *c);
const char *aws_iot_endpoint(const struct aws_iot *c);
struct aws_transport *aws_iot_transport(struct aws_iot *c);
struct aws_credp *aws_iot_credp(struct aws_iot *c);

struct aws_iot_result {
    enum aws_iot_op op;
    long status;               /* last HTTP status, 0 when none arrived */
    const char *error_code;    /* AWS error code, "" when none */
    const char *error_message; /* AWS message, "" when none */
    const char *request_id;
    json_t *out;       /* borrowed; see above; NULL after a transport error */
    unsigned attempts; /* HTTP attempts made */
    int64_t paced_ms;  /* time spent waiting for the token bucket */
};

typedef void aws_iot_cb(void *arg, const struct aws_iot_result *r, const struct err *e);

/* The generic call: in (borrowed) holds the operation's input members by their model names
 * (path labels, query, header and body members alike). Unknown members: ERRC_INVALID. */
int aws_iot_call(struct aws_iot *c, enum aws_iot_op op, json_t *in, aws_iot_cb *cb, void *arg,
                 struct err *e) ATTR_WUR;

/* Typed calls. Optional arguments: NULL, or -1 for tri-state booleans and integers. */
int aws_iot_get_registration_code(struct aws_iot *c, aws_iot_cb *cb, void *arg,
                                  struct err *e) ATTR_WUR;
/* mode "DEFAULT" (verification_pem required) or "SNI_ONLY" (verification_pem NULL). */
int aws_iot_register_ca_certificate(struct aws_iot *c, const char *ca_pem,
                                    const char *verification_pem, const char *mode,
                                    bool set_as_active, bool allow_auto_registration,
                                    aws_iot_cb *cb, void *arg, struct err *e) ATTR_WUR;
int aws_iot_describe_ca_certificate(struct aws_iot *c, const char *ca_id, aws_iot_cb *cb, void *arg,
                                    struct err *e) ATTR_WUR;
/* new_status "ACTIVE"/"INACTIVE" or NULL; new_auto "ENABLE"/"DISABLE" or NULL. */
int aws_iot_update_ca_certificate(struct aws_iot *c, const char *ca_id, const char *new_status,
                                  const char *new_auto, aws_iot_cb *cb, void *arg,
                                  struct err *e) ATTR_WUR;
/* One page (page_size 1..250 or -1; marker NULL for the first page; out.nextMarker). */
int aws_iot_list_certificates_by_ca(struct aws_iot *c, const char *ca_id, int page_size,
                                    const char *marker, aws_iot_cb *cb, void *arg,
                                    struct err *e) ATTR_WUR;
/* Every page: out = {"certificates": [...all...]}; attempts summed over the pages. */
int aws_iot_list_certificates_by_ca_all(struct aws_iot *c, const char *ca_id, int page_size,
                                        aws_iot_cb *cb, void *arg, struct err *e) ATTR_WUR;
int aws_iot_describe_certificate(struct aws_iot *c, const char *cert_id, aws_iot_cb *cb, void *arg,
                                 struct err *e) ATTR_WUR;
int aws_iot_update_certificate(struct aws_iot *c, const char *cert_id, const char *new_status,
                               aws_iot_cb *cb, void *arg, struct err *e) ATTR_WUR;
/* attributes: borrowed JSON object of strings, or NULL. */
int aws_iot_create_thing(struct aws_iot *c, const char *thing, const char *thing_type,
                         json_t *attributes, const char *billing_group, aws_iot_cb *cb, void *arg,
                         struct err *e) ATTR_WUR;
int aws_iot_describe_thing(struct aws_iot *c, const char *thing, aws_iot_cb *cb, void *arg,
                           struct err *e) ATTR_WUR;
/* attributes (borrowed JSON object of strings, or NULL to leave them): merged into the thing's
 * (merge; an empty value removes that attribute) or replacing them all. thing_type: NULL to
 * leave it. ResourceNotFoundException when there is no such thing. */
int aws_iot_update_thing(struct aws_iot *c, const char *thing, const char *thing_type,
                         json_t *attributes, bool merge, aws_iot_cb *cb, void *arg,
                         struct err *e) ATTR_WUR;
int aws_iot_create_policy(struct aws_iot *c, const char *policy, const char *document,
                          aws_iot_cb *cb, void *arg, struct err *e) ATTR_WUR;
int aws_iot_get_policy(struct aws_iot *c, const char *policy, aws_iot_cb *cb, void *arg,
                       struct err *e) ATTR_WUR;
int aws_iot_create_policy_version(struct aws_iot *c, const char *policy, const char *document,
                                  int set_as_default, aws_iot_cb *cb, void *arg,
                                  struct err *e) ATTR_WUR;
int aws_iot_list_policy_versions(struct aws_iot *c, const char *policy, aws_iot_cb *cb, void *arg,
                                 struct err *e) ATTR_WUR;
int aws_iot_delete_policy_version(struct aws_iot *c, const char *policy, const char *version,
                                  aws_iot_cb *cb, void *arg, struct err *e) ATTR_WUR;
int aws_iot_attach_policy(struct aws_iot *c, const char *policy, const char *target, aws_iot_cb *cb,
                          void *arg, struct err *e) ATTR_WUR;
int aws_iot_attach_thing_principal(struct aws_iot *c, const char *thing, const char *principal,
                                   aws_iot_cb *cb, void *arg, struct err *e) ATTR_WUR;
/* ResourceNotFoundException when the principal is not attached to the thing (or either is
 * unknown). */
int aws_iot_detach_thing_principal(struct aws_iot *c, const char *thing, const char *principal,
                                   aws_iot_cb *cb, void *arg, struct err *e) ATTR_WUR;
/* The things the principal is attached to: {"things": [names], "nextToken"}; next_token NULL for
 * the first page. */
int aws_iot_list_principal_things(struct aws_iot *c, const char *principal,
                                  const char *next_token, aws_iot_cb *cb, void *arg,
                                  struct err *e) ATTR_WUR;
/* The policies attached to the target (a certificate's ARN): {"policies": [{policyName,
 * policyArn}], "nextMarker"}; marker NULL for the first page. */
int aws_iot_list_attached_policies(struct aws_iot *c, const char *target, const char *marker,
                                   aws_iot_cb *cb, void *arg, struct err *e) ATTR_WUR;
int aws_iot_add_thing_to_thing_group(struct aws_iot *c, const char *group, const char *thing,
                                     aws_iot_cb *cb, void *arg, struct err *e) ATTR_WUR;
int aws_iot_confirm_topic_rule_destination(struct aws_iot *c, const char *token, aws_iot_cb *cb,
                                           void *arg, struct err *e) ATTR_WUR;

/*
 * The synchronous wrapper for jitrctl: start any call with aws_iot_sync_cb and &s, then
 * aws_iot_sync_wait runs the same event loop until it ends. s->out is a new reference (the
 * output or the error body), s->code the AWS error code.
 */
struct aws_iot_sync {
    bool done;
    json_t *out;
    char code[128];
    long status;
    unsigned attempts;
    struct err err;
};
void aws_iot_sync_init(struct aws_iot_sync *s);
void aws_iot_sync_release(struct aws_iot_sync *s);
void aws_iot_sync_cb(void *arg, const struct aws_iot_result *r, const struct err *e);
/* 0 when the call succeeded; -1 with its error copied to *e. */
int aws_iot_sync_wait(struct aws_iot *c, struct aws_iot_sync *s, struct err *e) ATTR_WUR;

#endif
