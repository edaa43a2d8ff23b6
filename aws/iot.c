/*
 * AWS IoT calls (aws/iot.h): the REST-JSON protocol over the call engine (aws/call.h). An
 * operation is one row of iot_ops[] (method, URI template, query members, header member, body or
 * not, required output members, default rate); the typed functions only pack their arguments
 * into the generic input object, which iot_build() places by the table: labels into the path
 * (aws_uri_encode, greedy labels keep '/'), query members into a query, the header member into
 * its header, the rest into the JSON body. Anything left over for a body-less operation is an
 * input error.
 *
 * The engine runs each call (PACE -> CREDS -> SEND (-> BACKOFF) -> DONE: credentials, signing,
 * retries, the retry quota, error classes); this file gives it the protocol's hooks: iot_pace
 * (the per-API token bucket, shared through Redis, local while Redis is absent or failing),
 * the error code's precedence, IoT's 406/409/410 conflicts, the required output members, and the
 * typed result.
 */
#include "aws/iot.h"

#include <event2/event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/call.h"
#include "aws/sigv4.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "store/async.h"

struct iot_op_def {
    const char *name;
    const char *method;
    const char *uri;
    const char *query[3];
    const char *header_member, *header_name;
    bool body;
    const char *out_required[2];
    double rate;
};

/* Checklist for a new operation: the enum in aws/iot.h, a row here (model order), a typed
 * function below, a test in tests/unit/aws/test_iot.c, its default rate and the rate's source in
 * docs/aws-client.md ("Default rates"). Rates: AWS's default quota (requests per second per
 * account and region) in Service Quotas (service iotcore) where it lists the operation:
 * CreateThing, DescribeThing, AttachThingPrincipal, AddThingToThingGroup, UpdateThing; else the
 * AWS IoT Developer Guide's throttling table (15 for AttachPolicy, 10 for the others). */
static const struct iot_op_def iot_ops[AWS_IOT__COUNT] = {
    [AWS_IOT_GET_REGISTRATION_CODE] = { "GetRegistrationCode",
                                        "GET",
                                        "/registrationcode",
                                        { NULL },
                                        NULL,
                                        NULL,
                                        false,
                                        { "registrationCode" },
                                        10 },
    [AWS_IOT_REGISTER_CA_CERTIFICATE] = { "RegisterCACertificate",
                                          "POST",
                                          "/cacertificate",
                                          { "setAsActive", "allowAutoRegistration" },
                                          NULL,
                                          NULL,
                                          true,
                                          { "certificateId", "certificateArn" },
                                          10 },
    [AWS_IOT_DESCRIBE_CA_CERTIFICATE] = { "DescribeCACertificate",
                                          "GET",
                                          "/cacertificate/{caCertificateId}",
                                          { NULL },
                                          NULL,
                                          NULL,
                                          false,
                                          { "certificateDescription" },
                                          10 },
    [AWS_IOT_UPDATE_CA_CERTIFICATE] = { "UpdateCACertificate",
                                        "PUT",
                                        "/cacertificate/{caCertificateId}",
                                        { "newStatus", "newAutoRegistrationStatus" },
                                        NULL,
                                        NULL,
                                        true,
                                        { NULL },
                                        10 },
    [AWS_IOT_LIST_CERTIFICATES_BY_CA] = { "ListCertificatesByCA",
                                          "GET",
                                          "/certificates-by-ca/{caCertificateId}",
                                          { "pageSize", "marker", "isAscendingOrder" },
                                          NULL,
                                          NULL,
                                          false,
                                          { "certificates" },
                                          10 },
    [AWS_IOT_DESCRIBE_CERTIFICATE] = { "DescribeCertificate",
                                       "GET",
                                       "/certificates/{certificateId}",
                                       { NULL },
                                       NULL,
                                       NULL,
                                       false,
                                       { "certificateDescription" },
                                       10 },
    [AWS_IOT_UPDATE_CERTIFICATE] = { "UpdateCertificate",
                                     "PUT",
                                     "/certificates/{certificateId}",
                                     { "newStatus" },
                                     NULL,
                                     NULL,
                                     false,
                                     { NULL },
                                     10 },
    [AWS_IOT_CREATE_THING] = { "CreateThing",
                               "POST",
                               "/things/{thingName}",
                               { NULL },
                               NULL,
                               NULL,
                               true,
                               { "thingName", "thingArn" },
                               100 },
    [AWS_IOT_DESCRIBE_THING] = { "DescribeThing",
                                 "GET",
                                 "/things/{thingName}",
                                 { NULL },
                                 NULL,
                                 NULL,
                                 false,
                                 { "thingName" },
                                 350 },
    [AWS_IOT_CREATE_POLICY] = { "CreatePolicy",
                                "POST",
                                "/policies/{policyName}",
                                { NULL },
                                NULL,
                                NULL,
                                true,
                                { "policyName", "policyArn" },
                                10 },
    [AWS_IOT_GET_POLICY] = { "GetPolicy",
                             "GET",
                             "/policies/{policyName}",
                             { NULL },
                             NULL,
                             NULL,
                             false,
                             { "policyName" },
                             10 },
    [AWS_IOT_CREATE_POLICY_VERSION] = { "CreatePolicyVersion",
                                        "POST",
                                        "/policies/{policyName}/version",
                                        { "setAsDefault" },
                                        NULL,
                                        NULL,
                                        true,
                                        { "policyVersionId" },
                                        10 },
    [AWS_IOT_LIST_POLICY_VERSIONS] = { "ListPolicyVersions",
                                       "GET",
                                       "/policies/{policyName}/version",
                                       { NULL },
                                       NULL,
                                       NULL,
                                       false,
                                       { "policyVersions" },
                                       10 },
    [AWS_IOT_DELETE_POLICY_VERSION] = { "DeletePolicyVersion",
                                        "DELETE",
                                        "/policies/{policyName}/version/{policyVersionId}",
                                        { NULL },
                                        NULL,
                                        NULL,
                                        false,
                                        { NULL },
                                        10 },
    [AWS_IOT_ATTACH_POLICY] = { "AttachPolicy",
                                "PUT",
                                "/target-policies/{policyName}",
                                { NULL },
                                NULL,
                                NULL,
                                true,
                                { NULL },
                                15 },
    [AWS_IOT_ATTACH_THING_PRINCIPAL] = { "AttachThingPrincipal",
                                         "PUT",
                                         "/things/{thingName}/principals",
                                         { "thingPrincipalType" },
                                         "principal",
                                         "x-amzn-principal",
                                         false,
                                         { NULL },
                                         100 },
    [AWS_IOT_ADD_THING_TO_THING_GROUP] = { "AddThingToThingGroup",
                                           "PUT",
                                           "/thing-groups/addThingToThingGroup",
                                           { NULL },
                                           NULL,
                                           NULL,
                                           true,
                                           { NULL },
                                           100 },
    [AWS_IOT_CONFIRM_TOPIC_RULE_DESTINATION] = { "ConfirmTopicRuleDestination",
                                                 "GET",
                                                 "/confirmdestination/{confirmationToken+}",
                                                 { NULL },
                                                 NULL,
                                                 NULL,
                                                 false,
                                                 { NULL },
                                                 10 },
    [AWS_IOT_UPDATE_THING] = { "UpdateThing",
                               "PATCH",
                               "/things/{thingName}",
                               { NULL },
                               NULL,
                               NULL,
                               true,
                               { NULL },
                               100 },
    [AWS_IOT_LIST_THING_GROUPS_FOR_THING] = { "ListThingGroupsForThing",
                                              "GET",
                                              "/things/{thingName}/thing-groups",
                                              { "nextToken", "maxResults" },
                                              NULL,
                                              NULL,
                                              false,
                                              { "thingGroups" },
                                              10 },
    [AWS_IOT_REMOVE_THING_FROM_THING_GROUP] = { "RemoveThingFromThingGroup",
                                                "PUT",
                                                "/thing-groups/removeThingFromThingGroup",
                                                { NULL },
                                                NULL,
                                                NULL,
                                                true,
                                                { NULL },
                                                10 },
    [AWS_IOT_DETACH_THING_PRINCIPAL] = { "DetachThingPrincipal",
                                         "DELETE",
                                         "/things/{thingName}/principals",
                                         { NULL },
                                         "principal",
                                         "x-amzn-principal",
                                         false,
                                         { NULL },
                                         100 },
    [AWS_IOT_LIST_PRINCIPAL_THINGS] = { "ListPrincipalThings",
                                        "GET",
                                        "/principals/things",
                                        { "nextToken", "maxResults" },
                                        "principal",
                                        "x-amzn-principal",
                                        false,
                                        { "things" },
                                        10 },
    [AWS_IOT_REGISTER_CERTIFICATE] = { "RegisterCertificate",
                                       "POST",
                                       "/certificate/register",
                                       { "setAsActive" },
                                       NULL,
                                       NULL,
                                       true,
                                       { "certificateId", "certificateArn" },
                                       10 },
    [AWS_IOT_REGISTER_CERTIFICATE_WITHOUT_CA] = { "RegisterCertificateWithoutCA",
                                                  "POST",
                                                  "/certificate/register-no-ca",
                                                  { NULL },
                                                  NULL,
                                                  NULL,
                                                  true,
                                                  { "certificateId", "certificateArn" },
                                                  10 },
    [AWS_IOT_LIST_ATTACHED_POLICIES] = { "ListAttachedPolicies",
                                         "POST",
                                         "/attached-policies/{target}",
                                         { "recursive", "marker", "pageSize" },
                                         NULL,
                                         NULL,
                                         false,
                                         { "policies" },
                                         10 },
};

struct iot_bucket {
    double rate, burst;
    double tokens; /* local fallback bucket */
    int64_t ts_ms;
};

/* An IoT call: the engine's call and what the typed result needs. */
struct iot_call {
    struct aws_call k; /* first: the engine allocates and frees the whole */
    struct aws_iot *c;
    enum aws_iot_op op;
    aws_iot_cb *cb;
    void *arg;
};

struct aws_iot {
    struct event_base *base;
    const char *const *env;
    struct aws_config cfg;
    char *service;
    struct aws_transport *t;
    struct aws_credp *credp;
    struct store_async *redis;
    bool redis_warned;
    bool no_quota;
    unsigned local_share; /* aws_iot_opts */
    struct iot_bucket buckets[AWS_IOT__COUNT];
    struct aws_engine eng;
};

static const struct aws_call_proto iot_proto;

const char *aws_iot_op_name(enum aws_iot_op op)
{
    return (unsigned)op < AWS_IOT__COUNT ? iot_ops[op].name : NULL;
}

double aws_iot_op_default_rate(enum aws_iot_op op)
{
    return (unsigned)op < AWS_IOT__COUNT ? iot_ops[op].rate : 0;
}

/* ---- rates -------------------------------------------------------------------------------- */

static int parse_rate(const char *spec, size_t len, double *rate, double *burst)
{
    char tmp[64], *end = NULL;
    if (len == 0 || len >= sizeof(tmp)) {
        return -1;
    }
    memcpy(tmp, spec, len);
    tmp[len] = '\0';
    *rate = strtod(tmp, &end);
    if (end == tmp || !(*rate > 0) || *rate > 1e6) {
        return -1;
    }
    if (*end == '/') {
        char *b = end + 1;
        *burst = strtod(b, &end);
        if (end == b || !(*burst >= 1) || *burst > 1e6) {
            return -1;
        }
    } else {
        *burst = *rate < 1 ? 1 : *rate;
    }
    return *end == '\0' ? 0 : -1;
}

static int iot_rates(struct aws_iot *c, const char *spec, struct err *e)
{
    for (size_t i = 0; i < AWS_IOT__COUNT; i++) {
        c->buckets[i].rate = iot_ops[i].rate;
        c->buckets[i].burst = iot_ops[i].rate;
    }
    const char *p = spec;
    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        double rate = 0, burst = 0;
        bool found = false;
        if (eq == NULL || parse_rate(eq + 1, len - (size_t)(eq - p) - 1, &rate, &burst) != 0) {
            return err_set(e, ERRC_INVALID,
                           "AWS rates: '%.*s' is not OPERATION=RATE[/BURST] with positive numbers",
                           (int)len, p);
        }
        size_t nl = (size_t)(eq - p);
        for (size_t i = 0; i < AWS_IOT__COUNT; i++) {
            bool all = nl == 7 && strncmp(p, "default", 7) == 0;
            if (all || (strlen(iot_ops[i].name) == nl && strncmp(p, iot_ops[i].name, nl) == 0)) {
                c->buckets[i].rate = rate;
                c->buckets[i].burst = burst;
                found = true;
            }
        }
        if (!found) {
            return err_set(e, ERRC_INVALID, "AWS rates: unknown operation '%.*s'", (int)nl, p);
        }
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

/* In-process bucket: the fallback when Redis is not configured or failing. */
static int64_t local_take(struct iot_bucket *b, unsigned share)
{
    int64_t now = time_mono_ns() / 1000000;
    double rate = b->rate / (share > 1 ? share : 1), burst = b->burst / (share > 1 ? share : 1);
    if (burst < 1) {
        burst = 1;
    }
    if (b->ts_ms == 0) {
        b->tokens = burst;
        b->ts_ms = now;
    }
    if (now > b->ts_ms) {
        b->tokens += (double)(now - b->ts_ms) * rate / 1000.0;
        if (b->tokens > burst) {
            b->tokens = burst;
        }
        b->ts_ms = now;
    }
    if (b->tokens >= 1) {
        b->tokens -= 1;
        return 0;
    }
    return (int64_t)ceil((1 - b->tokens) * 1000.0 / rate);
}

/* ---- the client ----------------------------------------------------------------------------- */

struct aws_iot *aws_iot_new(const struct aws_iot_opts *o, struct err *e)
{
    struct aws_iot *c = xcalloc(1, sizeof(*c));
    struct aws_config_opts co = { o->profile, o->region, o->endpoint };
    if (o->base == NULL) {
        err_set(e, ERRC_INVALID, "AWS IoT client needs an event loop");
        goto fail;
    }
    c->base = o->base;
    c->env = o->env;
    aws_config_init(&c->cfg);
    aws_engine_init(&c->eng, o->base, &iot_proto);
    c->service = xstrdup(o->service && o->service[0] ? o->service : AWS_SIGV4_DEFAULT_SERVICE);
    c->no_quota = o->no_quota;
    c->local_share = o->local_share;
    if (aws_config_load(&c->cfg, o->env, &co, e) != 0 || iot_rates(c, o->rates, e) != 0 ||
        (c->t = aws_transport_new(o->base, e)) == NULL ||
        (c->credp = aws_credp_new(c->t, &c->cfg, o->env, &o->creds, e)) == NULL ||
        aws_engine_setup(&c->eng,
                         &(struct aws_engine_opts){ c->t, c->credp, c->cfg.region, c->service,
                                                    c->cfg.endpoint, o->timeout_ms,
                                                    o->max_attempts },
                         e) != 0) {
        goto fail;
    }
    if (o->redis_url != NULL && o->redis_url[0] != '\0' && !o->no_quota &&
        (c->redis = store_async_new(o->base, o->redis_url, e)) == NULL) {
        goto fail;
    }
    return c;
fail:
    aws_iot_free(c);
    return NULL;
}

const char *aws_iot_region(const struct aws_iot *c)
{
    return c->cfg.region;
}

const char *aws_iot_endpoint(const struct aws_iot *c)
{
    return c->cfg.endpoint;
}

struct aws_transport *aws_iot_transport(struct aws_iot *c)
{
    return c->t;
}

struct aws_credp *aws_iot_credp(struct aws_iot *c)
{
    return c->credp;
}

/* ---- the protocol's hooks ------------------------------------------------------------------ */

static void iot_paced(struct iot_call *k, bool allowed, int64_t wait_ms)
{
    aws_call_paced(&k->k, allowed ? 0 : wait_ms > 0 ? wait_ms : 1);
}

static void on_bucket(void *arg, bool allowed, int64_t wait_ms, const struct err *e)
{
    struct iot_call *k = arg;
    if (e != NULL && e->code == ERRC_CANCELED) {
        aws_call_fail(&k->k, e);
        return;
    }
    if (e != NULL) {
        if (!k->c->redis_warned) {
            log_warn("AWS rate limiter: %s; pacing per process until Redis is back", e->msg);
            k->c->redis_warned = true;
        }
        int64_t w = local_take(&k->c->buckets[k->op], k->c->local_share);
        iot_paced(k, w == 0, w);
        return;
    }
    k->c->redis_warned = false;
    iot_paced(k, allowed, wait_ms);
}

/* PACE: one token of the operation's bucket (Redis, shared; local when Redis is absent). */
static void iot_pace(struct aws_call *call)
{
    struct iot_call *k = (struct iot_call *)call;
    struct aws_iot *c = k->c;
    struct err e = ERR_INIT;
    if (c->no_quota) {
        aws_call_paced(call, 0);
        return;
    }
    if (c->redis != NULL) {
        struct buf name = BUF_INIT;
        buf_addf(&name, "aws:%s:%s:%s", c->service, c->cfg.region, iot_ops[k->op].name);
        int rc = store_async_bucket_take(c->redis, name.data, c->buckets[k->op].rate,
                                         c->buckets[k->op].burst, 1, 2000, on_bucket, k, &e);
        buf_release(&name);
        if (rc != 0) {
            on_bucket(k, false, 0, &e); /* falls back to the local bucket */
        }
        return;
    }
    int64_t w = local_take(&c->buckets[k->op], c->local_share);
    iot_paced(k, w == 0, w);
}

/* IoT's own: the state of a resource forbids the change, or it exists, or a limit is reached. */
static enum err_code iot_error_class(long status, const char *code)
{
    (void)code;
    return status == 406 || status == 409 || status == 410 ? ERRC_CONFLICT : ERRC_OK;
}

static int iot_check_output(const struct aws_call *call, json_t *out, struct err *e)
{
    const struct iot_op_def *od = &iot_ops[((const struct iot_call *)call)->op];
    for (size_t i = 0; i < ARRAY_LEN(od->out_required) && od->out_required[i]; i++) {
        if (json_object_get(out, od->out_required[i]) == NULL) {
            return err_set(e, ERRC_UNAVAILABLE, "malformed response: no '%s'", od->out_required[i]);
        }
    }
    return 0;
}

static void iot_done(struct aws_call *call, const struct aws_call_result *cr, const struct err *e)
{
    struct iot_call *k = (struct iot_call *)call;
    struct aws_iot_result r = { k->op,          cr->status, cr->code,     cr->message,
                                cr->request_id, cr->out,    cr->attempts, cr->paced_ms };
    k->cb(k->arg, &r, e);
}

static const struct aws_call_proto iot_proto = {
    AWS_PROTO_REST_JSON, iot_pace, iot_error_class, iot_check_output, iot_done,
};

/* Places the input by the op table; ERRC_INVALID naming the member on bad input. */
static int iot_build(struct iot_call *k, const struct aws_iot *c, json_t *in, struct err *e)
{
    const struct iot_op_def *od = &iot_ops[k->op];
    struct buf path = BUF_INIT, query = BUF_INIT;
    char *header_value = NULL;
    json_t *rest = in ? json_deep_copy(in) : json_object();
    const char *p = od->uri;
    int rc = -1;
    if (rest == NULL || !json_is_object(rest)) {
        err_set(e, ERRC_INVALID, "%s: the input must be a JSON object", od->name);
        goto out;
    }
    buf_addstr(&path, c->eng.base_path);
    while (*p) {
        const char *open = strchr(p, '{');
        if (open == NULL) {
            buf_addstr(&path, p);
            break;
        }
        buf_add(&path, p, (size_t)(open - p));
        const char *close = strchr(open, '}');
        char label[64];
        bool greedy = close[-1] == '+';
        snprintf(label, sizeof(label), "%.*s", (int)(close - open - 1 - (greedy ? 1 : 0)),
                 open + 1);
        json_t *v = json_object_get(rest, label);
        if (!json_is_string(v) || json_string_length(v) == 0) {
            err_set(e, ERRC_INVALID, "%s: '%s' is required and must be a non-empty string",
                    od->name, label);
            goto out;
        }
        aws_uri_encode(&path, json_string_value(v), json_string_length(v), greedy);
        json_object_del(rest, label);
        p = close + 1;
    }
    for (size_t i = 0; i < ARRAY_LEN(od->query) && od->query[i]; i++) {
        json_t *v = json_object_get(rest, od->query[i]);
        if (v == NULL || json_is_null(v)) {
            json_object_del(rest, od->query[i]);
            continue;
        }
        if (query.len) {
            buf_addch(&query, '&');
        }
        buf_addf(&query, "%s=", od->query[i]);
        if (json_is_boolean(v)) {
            buf_addstr(&query, json_is_true(v) ? "true" : "false");
        } else if (json_is_integer(v)) {
            buf_addf(&query, "%lld", (long long)json_integer_value(v));
        } else if (json_is_string(v)) {
            aws_uri_encode(&query, json_string_value(v), json_string_length(v), false);
        } else {
            err_set(e, ERRC_INVALID, "%s: '%s' must be a string, integer or boolean", od->name,
                    od->query[i]);
            goto out;
        }
        json_object_del(rest, od->query[i]);
    }
    if (od->header_member != NULL) {
        json_t *v = json_object_get(rest, od->header_member);
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            strpbrk(json_string_value(v), "\r\n") != NULL) {
            err_set(e, ERRC_INVALID, "%s: '%s' is required and must be a one-line string", od->name,
                    od->header_member);
            goto out;
        }
        header_value = xstrdup(json_string_value(v));
        json_object_del(rest, od->header_member);
    }
    if (od->body) {
        k->k.body = json_dumps(rest, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (k->k.body == NULL) {
            err_set(e, ERRC_INVALID, "%s: the input cannot be encoded", od->name);
            goto out;
        }
        k->k.body_len = strlen(k->k.body);
        aws_call_header(&k->k, "Content-Type", "application/json");
    } else if (json_object_size(rest) > 0) {
        const char *key = json_object_iter_key(json_object_iter(rest));
        err_set(e, ERRC_INVALID, "%s: unknown input member '%s'", od->name, key);
        goto out;
    }
    if (header_value != NULL) {
        aws_call_header(&k->k, od->header_name, header_value);
    }
    k->k.method = od->method;
    k->k.path = buf_detach(&path, NULL);
    k->k.query = xstrdup(buf_cstr(&query));
    rc = 0;
out:
    xfree(header_value);
    buf_release(&path);
    buf_release(&query);
    json_decref(rest);
    return rc;
}

int aws_iot_call(struct aws_iot *c, enum aws_iot_op op, json_t *in, aws_iot_cb *cb, void *arg,
                 struct err *e)
{
    struct iot_call *k = NULL;
    if ((unsigned)op >= AWS_IOT__COUNT || cb == NULL) {
        return err_set(e, ERRC_INVALID, "AWS IoT: unknown operation or no callback");
    }
    if (c->eng.freeing) {
        return err_set(e, ERRC_CANCELED, "AWS IoT client is being freed");
    }
    char what[64];
    snprintf(what, sizeof(what), "AWS IoT %s", iot_ops[op].name);
    k = (struct iot_call *)aws_call_new(&c->eng, sizeof(*k), what);
    k->c = c;
    k->op = op;
    k->cb = cb;
    k->arg = arg;
    if (iot_build(k, c, in, e) != 0) {
        aws_call_discard(&k->k);
        return -1;
    }
    return aws_call_start(&k->k, 0, e);
}

void aws_iot_free(struct aws_iot *c)
{
    if (c == NULL) {
        return;
    }
    /* cancels in-flight HTTP, bucket and credential steps: their callbacks finish the calls */
    aws_engine_stop(&c->eng, c->t);
    c->t = NULL;
    store_async_free(c->redis);
    c->redis = NULL;
    aws_credp_free(c->credp);
    c->credp = NULL;
    aws_engine_cancel_all(&c->eng); /* those waiting for a timer */
    aws_config_release(&c->cfg);
    xfree(c->service);
    aws_engine_release(&c->eng);
    xfree(c);
}

/* ---- typed calls ------------------------------------------------------------------------------
 */

static int call_new(struct aws_iot *c, enum aws_iot_op op, json_t *in, aws_iot_cb *cb, void *arg,
                    struct err *e)
{
    int rc;
    if (in == NULL) {
        return err_set(e, ERRC_INVALID, "%s: bad arguments", iot_ops[op].name);
    }
    rc = aws_iot_call(c, op, in, cb, arg, e);
    json_decref(in);
    return rc;
}

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v != NULL) {
        json_object_set_new(o, k, json_string(v));
    }
}

static json_t *obj_str(const char *k, const char *v)
{
    json_t *o = json_object();
    if (v == NULL) {
        json_decref(o);
        return NULL;
    }
    set_str(o, k, v);
    if (json_object_get(o, k) == NULL) { /* not UTF-8 */
        json_decref(o);
        return NULL;
    }
    return o;
}

/* A call whose input is {k1: v1, k2: v2}: v1 is needed (else call_new's "bad arguments"), v2 too
 * when required (else ERRC_INVALID naming k2), and left out when NULL otherwise. */
static int call_new2(struct aws_iot *c, enum aws_iot_op op, const char *k1, const char *v1,
                     const char *k2, const char *v2, bool required, aws_iot_cb *cb, void *arg,
                     struct err *e)
{
    json_t *in = obj_str(k1, v1);
    if (in != NULL && v2 == NULL && required) {
        json_decref(in);
        return err_set(e, ERRC_INVALID, "%s: '%s' is required", iot_ops[op].name, k2);
    }
    if (in != NULL) {
        set_str(in, k2, v2);
    }
    return call_new(c, op, in, cb, arg, e);
}

int aws_iot_get_registration_code(struct aws_iot *c, aws_iot_cb *cb, void *arg, struct err *e)
{
    return call_new(c, AWS_IOT_GET_REGISTRATION_CODE, json_object(), cb, arg, e);
}

int aws_iot_register_ca_certificate(struct aws_iot *c, const char *ca_pem,
                                    const char *verification_pem, const char *mode,
                                    bool set_as_active, bool allow_auto_registration,
                                    aws_iot_cb *cb, void *arg, struct err *e)
{
    json_t *in = obj_str("caCertificate", ca_pem);
    if (in != NULL) {
        set_str(in, "verificationCertificate", verification_pem);
        set_str(in, "certificateMode", mode);
        json_object_set_new(in, "setAsActive", json_boolean(set_as_active));
        json_object_set_new(in, "allowAutoRegistration", json_boolean(allow_auto_registration));
    }
    return call_new(c, AWS_IOT_REGISTER_CA_CERTIFICATE, in, cb, arg, e);
}

int aws_iot_describe_ca_certificate(struct aws_iot *c, const char *ca_id, aws_iot_cb *cb, void *arg,
                                    struct err *e)
{
    return call_new(c, AWS_IOT_DESCRIBE_CA_CERTIFICATE, obj_str("caCertificateId", ca_id), cb, arg,
                    e);
}

int aws_iot_update_ca_certificate(struct aws_iot *c, const char *ca_id, const char *new_status,
                                  const char *new_auto, aws_iot_cb *cb, void *arg, struct err *e)
{
    json_t *in = obj_str("caCertificateId", ca_id);
    if (in != NULL) {
        set_str(in, "newStatus", new_status);
        set_str(in, "newAutoRegistrationStatus", new_auto);
    }
    return call_new(c, AWS_IOT_UPDATE_CA_CERTIFICATE, in, cb, arg, e);
}

int aws_iot_list_certificates_by_ca(struct aws_iot *c, const char *ca_id, int page_size,
                                    const char *marker, aws_iot_cb *cb, void *arg, struct err *e)
{
    json_t *in = obj_str("caCertificateId", ca_id);
    if (in != NULL) {
        if (page_size >= 0) {
            json_object_set_new(in, "pageSize", json_integer(page_size));
        }
        set_str(in, "marker", marker);
    }
    return call_new(c, AWS_IOT_LIST_CERTIFICATES_BY_CA, in, cb, arg, e);
}

struct pager {
    struct aws_iot *c;
    char *ca_id;
    int page_size;
    json_t *all;
    unsigned attempts;
    int64_t paced_ms;
    aws_iot_cb *cb;
    void *arg;
};

static void pager_free(struct pager *pg)
{
    json_decref(pg->all);
    xfree(pg->ca_id);
    xfree(pg);
}

static void on_page(void *arg, const struct aws_iot_result *r, const struct err *e)
{
    struct pager *pg = arg;
    struct err e2 = ERR_INIT;
    pg->attempts += r->attempts;
    pg->paced_ms += r->paced_ms;
    if (e == NULL) {
        json_t *certs = json_object_get(r->out, "certificates");
        json_t *next = json_object_get(r->out, "nextMarker");
        if (!json_is_array(certs)) {
            err_set(&e2, ERRC_UNAVAILABLE,
                    "AWS IoT ListCertificatesByCA: malformed response: 'certificates' is not "
                    "a list");
            e = &e2;
        } else {
            json_array_extend(json_object_get(pg->all, "certificates"), certs);
            if (json_is_string(next) && json_string_length(next) > 0) {
                if (aws_iot_list_certificates_by_ca(pg->c, pg->ca_id, pg->page_size,
                                                    json_string_value(next), on_page, pg,
                                                    &e2) == 0) {
                    return;
                }
                e = &e2;
            }
        }
    }
    struct aws_iot_result all = *r;
    all.out = e == NULL ? pg->all : r->out;
    all.attempts = pg->attempts;
    all.paced_ms = pg->paced_ms;
    pg->cb(pg->arg, &all, e);
    pager_free(pg);
}

int aws_iot_list_certificates_by_ca_all(struct aws_iot *c, const char *ca_id, int page_size,
                                        aws_iot_cb *cb, void *arg, struct err *e)
{
    struct pager *pg = xcalloc(1, sizeof(*pg));
    pg->c = c;
    pg->ca_id = ca_id ? xstrdup(ca_id) : NULL;
    pg->page_size = page_size;
    pg->all = json_pack("{s:[]}", "certificates");
    pg->cb = cb;
    pg->arg = arg;
    if (cb == NULL) {
        pager_free(pg);
        return err_set(e, ERRC_INVALID, "ListCertificatesByCA: no callback");
    }
    if (aws_iot_list_certificates_by_ca(c, ca_id, page_size, NULL, on_page, pg, e) != 0) {
        pager_free(pg);
        return -1;
    }
    return 0;
}

int aws_iot_describe_certificate(struct aws_iot *c, const char *cert_id, aws_iot_cb *cb, void *arg,
                                 struct err *e)
{
    return call_new(c, AWS_IOT_DESCRIBE_CERTIFICATE, obj_str("certificateId", cert_id), cb, arg, e);
}

int aws_iot_update_certificate(struct aws_iot *c, const char *cert_id, const char *new_status,
                               aws_iot_cb *cb, void *arg, struct err *e)
{
    return call_new2(c, AWS_IOT_UPDATE_CERTIFICATE, "certificateId", cert_id, "newStatus",
                     new_status, true, cb, arg, e);
}

int aws_iot_create_thing(struct aws_iot *c, const char *thing, const char *thing_type,
                         json_t *attributes, const char *billing_group, aws_iot_cb *cb, void *arg,
                         struct err *e)
{
    json_t *in = obj_str("thingName", thing);
    if (in != NULL) {
        set_str(in, "thingTypeName", thing_type);
        set_str(in, "billingGroupName", billing_group);
        if (attributes != NULL) {
            json_object_set_new(in, "attributePayload",
                                json_pack("{s:O}", "attributes", attributes));
        }
    }
    return call_new(c, AWS_IOT_CREATE_THING, in, cb, arg, e);
}

int aws_iot_describe_thing(struct aws_iot *c, const char *thing, aws_iot_cb *cb, void *arg,
                           struct err *e)
{
    return call_new(c, AWS_IOT_DESCRIBE_THING, obj_str("thingName", thing), cb, arg, e);
}

int aws_iot_update_thing(struct aws_iot *c, const char *thing, const char *thing_type,
                         json_t *attributes, bool merge, aws_iot_cb *cb, void *arg, struct err *e)
{
    json_t *in = obj_str("thingName", thing);
    if (in != NULL) {
        set_str(in, "thingTypeName", thing_type);
        if (attributes != NULL) {
            json_object_set_new(in, "attributePayload",
                                json_pack("{s:O, s:b}", "attributes", attributes, "merge", merge));
        }
    }
    return call_new(c, AWS_IOT_UPDATE_THING, in, cb, arg, e);
}

int aws_iot_create_policy(struct aws_iot *c, const char *policy, const char *document,
                          aws_iot_cb *cb, void *arg, struct err *e)
{
    return call_new2(c, AWS_IOT_CREATE_POLICY, "policyName", policy, "policyDocument", document,
                     true, cb, arg, e);
}

int aws_iot_get_policy(struct aws_iot *c, const char *policy, aws_iot_cb *cb, void *arg,
                       struct err *e)
{
    return call_new(c, AWS_IOT_GET_POLICY, obj_str("policyName", policy), cb, arg, e);
}

int aws_iot_create_policy_version(struct aws_iot *c, const char *policy, const char *document,
                                  int set_as_default, aws_iot_cb *cb, void *arg, struct err *e)
{
    json_t *in = obj_str("policyName", policy);
    if (in != NULL && document == NULL) {
        json_decref(in);
        return err_set(e, ERRC_INVALID, "CreatePolicyVersion: 'policyDocument' is required");
    }
    if (in != NULL) {
        set_str(in, "policyDocument", document);
        if (set_as_default >= 0) {
            json_object_set_new(in, "setAsDefault", json_boolean(set_as_default));
        }
    }
    return call_new(c, AWS_IOT_CREATE_POLICY_VERSION, in, cb, arg, e);
}

int aws_iot_list_policy_versions(struct aws_iot *c, const char *policy, aws_iot_cb *cb, void *arg,
                                 struct err *e)
{
    return call_new(c, AWS_IOT_LIST_POLICY_VERSIONS, obj_str("policyName", policy), cb, arg, e);
}

int aws_iot_delete_policy_version(struct aws_iot *c, const char *policy, const char *version,
                                  aws_iot_cb *cb, void *arg, struct err *e)
{
    return call_new2(c, AWS_IOT_DELETE_POLICY_VERSION, "policyName", policy, "policyVersionId",
                     version, false, cb, arg, e);
}

int aws_iot_attach_policy(struct aws_iot *c, const char *policy, const char *target, aws_iot_cb *cb,
                          void *arg, struct err *e)
{
    return call_new2(c, AWS_IOT_ATTACH_POLICY, "policyName", policy, "target", target, true, cb,
                     arg, e);
}

int aws_iot_attach_thing_principal(struct aws_iot *c, const char *thing, const char *principal,
                                   aws_iot_cb *cb, void *arg, struct err *e)
{
    return call_new2(c, AWS_IOT_ATTACH_THING_PRINCIPAL, "thingName", thing, "principal", principal,
                     false, cb, arg, e);
}

int aws_iot_detach_thing_principal(struct aws_iot *c, const char *thing, const char *principal,
                                   aws_iot_cb *cb, void *arg, struct err *e)
{
    return call_new2(c, AWS_IOT_DETACH_THING_PRINCIPAL, "thingName", thing, "principal", principal,
                     true, cb, arg, e);
}

int aws_iot_list_principal_things(struct aws_iot *c, const char *principal, const char *next_token,
                                  aws_iot_cb *cb, void *arg, struct err *e)
{
    return call_new2(c, AWS_IOT_LIST_PRINCIPAL_THINGS, "principal", principal, "nextToken",
                     next_token, false, cb, arg, e);
}

int aws_iot_list_attached_policies(struct aws_iot *c, const char *target, const char *marker,
                                   aws_iot_cb *cb, void *arg, struct err *e)
{
    return call_new2(c, AWS_IOT_LIST_ATTACHED_POLICIES, "target", target, "marker", marker, false,
                     cb, arg, e);
}

int aws_iot_add_thing_to_thing_group(struct aws_iot *c, const char *group, const char *thing,
                                     aws_iot_cb *cb, void *arg, struct err *e)
{
    return call_new2(c, AWS_IOT_ADD_THING_TO_THING_GROUP, "thingGroupName", group, "thingName",
                     thing, true, cb, arg, e);
}

int aws_iot_confirm_topic_rule_destination(struct aws_iot *c, const char *token, aws_iot_cb *cb,
                                           void *arg, struct err *e)
{
    return call_new(c, AWS_IOT_CONFIRM_TOPIC_RULE_DESTINATION, obj_str("confirmationToken", token),
                    cb, arg, e);
}

/* ---- the synchronous wrapper -------------------------------------------------------------------
 */

void aws_iot_sync_init(struct aws_iot_sync *s)
{
    memset(s, 0, sizeof(*s));
    err_clear(&s->err);
}

void aws_iot_sync_release(struct aws_iot_sync *s)
{
    json_decref(s->out);
    aws_iot_sync_init(s);
}

void aws_iot_sync_cb(void *arg, const struct aws_iot_result *r, const struct err *e)
{
    struct aws_iot_sync *s = arg;
    s->done = true;
    s->status = r->status;
    s->attempts = r->attempts;
    snprintf(s->code, sizeof(s->code), "%s", r->error_code);
    json_decref(s->out);
    s->out = r->out ? json_incref(r->out) : NULL;
    if (e != NULL) {
        err_copy(&s->err, e);
    } else {
        err_clear(&s->err);
    }
}

int aws_iot_sync_wait(struct aws_iot *c, struct aws_iot_sync *s, struct err *e)
{
    while (!s->done) {
        if (event_base_loop(c->base, EVLOOP_ONCE) < 0) {
            return err_set(e, ERRC_INTERNAL, "event loop failed");
        }
    }
    if (s->err.code != ERRC_OK) {
        err_copy(e, &s->err);
        return -1;
    }
    return 0;
}
