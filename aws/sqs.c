/*
 * The SQS client (aws/sqs.h). Only what a queue consumer needs: the AWS JSON 1.0 protocol is one
 * POST to "/" per action, so there is no operation table, just the action name in X-Amz-Target.
 *
 * The call engine (aws/call.h) runs each call: credentials (the provider is borrowed and may be
 * freed before the client or after it), signing, botocore's standard retries and retry quota,
 * error classes. This file gives it the protocol: the request (POST ENDPOINT/, the action in
 * X-Amz-Target, QueueUrl added to the body), the error code's precedence, SQS's own error
 * (QueueDoesNotExist), a long poll's longer timeout, and the typed result. SQS has no per-API
 * quota worth pacing for a consumer: no pace hook. The client's own transport carries nothing
 * but its requests: aws_sqs_free cancels a pending long poll at once.
 */
#include "aws/sqs.h"

#include <stdio.h>
#include <string.h>

#include "aws/call.h"
#include "aws/transport.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"

/* ---- queue URLs ------------------------------------------------------------------------------ */

void aws_sqs_queue_release(struct aws_sqs_queue *q)
{
    xfree(q->url);
    xfree(q->base_url);
    xfree(q->host);
    memset(q, 0, sizeof(*q));
}

static bool region_ok(const char *s, size_t n)
{
    if (n == 0 || n >= 64) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return true;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* The region an AWS host names: 1 found, 0 not an AWS host, -1 AWS's but no region in it. */
static int region_from_host(const char *host, size_t hl, char *out, size_t cap)
{
    static const char *const suffixes[] = { ".amazonaws.com", ".amazonaws.com.cn" };
    char h[256];
    size_t pl = 0;
    const char *r = NULL;
    size_t rl = 0;
    bool aws = false;
    if (hl >= sizeof(h)) {
        return 0;
    }
    for (size_t i = 0; i < hl; i++) {
        h[i] = (char)((host[i] >= 'A' && host[i] <= 'Z') ? host[i] - 'A' + 'a' : host[i]);
    }
    h[hl] = '\0';
    for (size_t i = 0; i < ARRAY_LEN(suffixes); i++) {
        size_t sl = strlen(suffixes[i]);
        if (hl > sl && strcmp(h + hl - sl, suffixes[i]) == 0) {
            pl = hl - sl;
            aws = true;
        }
    }
    if (!aws) {
        return 0;
    }
    h[pl] = '\0';
    if (strcmp(h, "queue") == 0) { /* the legacy global endpoint */
        r = "us-east-1";
        rl = 9;
    } else if (str_has_prefix(h, "sqs.")) { /* sqs.REGION */
        r = h + 4;
        rl = strlen(r);
    } else if (pl > 6 && strcmp(h + pl - 6, ".queue") == 0) { /* REGION.queue (legacy) */
        r = h;
        rl = pl - 6;
    } else if (pl > 5 && strcmp(h + pl - 5, ".vpce") == 0) { /* vpce-ID.sqs.REGION.vpce */
        const char *s = strstr(h, ".sqs.");
        if (s != NULL) {
            r = s + 5;
            rl = (size_t)(h + pl - 5 - r);
        }
    }
    if (r == NULL || !region_ok(r, rl) || rl >= cap) {
        return -1;
    }
    memcpy(out, r, rl);
    out[rl] = '\0';
    return 1;
}

int aws_sqs_queue_parse(const char *url, const char *fallback_region, struct aws_sqs_queue *out,
                        struct err *e)
{
    const char *hs, *slash, *p, *acct, *name, *colon;
    size_t hl, al, nl, ul;
    int rr;
    memset(out, 0, sizeof(*out));
    if (url == NULL || url[0] == '\0') {
        return err_set(e, ERRC_INVALID, "SQS queue URL is empty");
    }
    ul = strlen(url);
    if (ul > 2048) {
        return err_set(e, ERRC_INVALID, "SQS queue URL is longer than 2048 characters");
    }
    for (p = url; *p; p++) {
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f) {
            return err_set(e, ERRC_INVALID,
                           "SQS queue URL '%.200s' contains whitespace or a control character",
                           url);
        }
    }
    if (str_has_prefix(url, "https://")) {
        hs = url + 8;
    } else if (str_has_prefix(url, "http://")) {
        hs = url + 7;
    } else {
        return err_set(e, ERRC_INVALID, "SQS queue URL '%.200s' is not an http(s) URL", url);
    }
    if (strpbrk(url, "?#") != NULL) {
        return err_set(e, ERRC_INVALID, "SQS queue URL '%.200s' has a query or fragment", url);
    }
    slash = strchr(hs, '/');
    hl = slash ? (size_t)(slash - hs) : strlen(hs);
    if (memchr(hs, '@', hl) != NULL) {
        return err_set(e, ERRC_INVALID, "SQS queue URL '%.200s' carries user information", url);
    }
    colon = memchr(hs, ':', hl);
    if (hl == 0 || colon == hs) {
        return err_set(e, ERRC_INVALID, "SQS queue URL '%.200s' has no host", url);
    }
    if (colon != NULL) {
        uint64_t port = 0;
        char pb[8];
        size_t pl = hl - (size_t)(colon + 1 - hs);
        if (pl == 0 || pl >= sizeof(pb)) {
            return err_set(e, ERRC_INVALID, "SQS queue URL '%.200s' has a bad port", url);
        }
        memcpy(pb, colon + 1, pl);
        pb[pl] = '\0';
        if (str_to_u64(pb, &port) != 0 || port == 0 || port > 65535) {
            return err_set(e, ERRC_INVALID, "SQS queue URL '%.200s' has a bad port", url);
        }
    }
    if (slash == NULL) {
        return err_set(e, ERRC_INVALID,
                       "SQS queue URL '%.200s' has no path: expected /ACCOUNT_ID/QUEUE_NAME", url);
    }
    acct = slash + 1;
    al = strcspn(acct, "/");
    name = acct + al + (acct[al] ? 1 : 0);
    nl = strlen(name);
    if (al != 12 || acct[al] != '/') {
        return err_set(e, ERRC_INVALID,
                       "SQS queue URL '%.200s': the path must be /ACCOUNT_ID/QUEUE_NAME with a "
                       "12-digit account id",
                       url);
    }
    for (size_t i = 0; i < al; i++) {
        if (acct[i] < '0' || acct[i] > '9') {
            return err_set(e, ERRC_INVALID,
                           "SQS queue URL '%.200s': the account id must be 12 digits", url);
        }
    }
    {
        size_t core = nl;
        if (nl > 5 && strcmp(name + nl - 5, ".fifo") == 0) {
            core = nl - 5;
        }
        bool ok = nl >= 1 && nl <= 80 && core >= 1;
        for (size_t i = 0; ok && i < core; i++) {
            ok = name_char(name[i]);
        }
        if (!ok) {
            return err_set(e, ERRC_INVALID,
                           "SQS queue URL '%.200s': the queue name must be 1 to 80 of "
                           "A-Z a-z 0-9 _ - (and .fifo)",
                           url);
        }
    }
    rr = region_from_host(hs, colon ? (size_t)(colon - hs) : hl, out->region, sizeof(out->region));
    if (rr < 0) {
        return err_set(e, ERRC_INVALID,
                       "SQS queue URL '%.200s': an AWS host that names no region (expected "
                       "sqs.REGION.amazonaws.com)",
                       url);
    }
    if (rr == 0) {
        if (fallback_region == NULL || !region_ok(fallback_region, strlen(fallback_region))) {
            return err_set(e, ERRC_INVALID,
                           "SQS queue URL '%.200s': the host is not AWS's and no valid AWS region "
                           "is configured for it",
                           url);
        }
        snprintf(out->region, sizeof(out->region), "%s", fallback_region);
    }
    out->aws_host = rr > 0;
    out->url = xstrdup(url);
    out->base_url = xstrndup(url, (size_t)(hs - url) + hl);
    out->host = xstrndup(hs, hl);
    {
        size_t l = strlen(out->host);
        if (hs == url + 8 && l > 4 && strcmp(out->host + l - 4, ":443") == 0) {
            out->host[l - 4] = '\0';
        } else if (hs == url + 7 && l > 3 && strcmp(out->host + l - 3, ":80") == 0) {
            out->host[l - 3] = '\0';
        }
    }
    return 0;
}

/* ---- the client ------------------------------------------------------------------------------ */

/* An SQS call: the engine's call and what the typed result needs. */
struct sqs_call {
    struct aws_call k; /* first: the engine allocates and frees the whole */
    char action[48];
    aws_sqs_cb *cb;
    void *arg;
};

struct aws_sqs {
    struct aws_sqs_queue queue;
    char *ep_url; /* where requests go: scheme://host[:port][/path] */
    char ep_source[96];
    struct aws_transport *t;
    struct aws_engine eng;
};

static const struct aws_call_proto sqs_proto;

/*
 * Where requests go, as the SDKs decide it (the QueueUrl travels in the body): a configured SQS
 * endpoint (AWS_ENDPOINT_URL_SQS, ...), else for a queue on an AWS host the region's endpoint
 * with FIPS and dual-stack as configured, else the queue's own host (a stand-in or a proxy).
 */
static int sqs_endpoint(struct aws_sqs *q, const struct aws_config *cfg, struct err *e)
{
    char signing[64];
    if (cfg != NULL && cfg->configured[AWS_SVC_SQS] != NULL) {
        q->ep_url = xstrdup(cfg->configured[AWS_SVC_SQS]);
        snprintf(q->ep_source, sizeof(q->ep_source), "%s", cfg->configured_source[AWS_SVC_SQS]);
    } else if (cfg != NULL && q->queue.aws_host) {
        if (aws_config_endpoint(cfg, AWS_SVC_SQS, q->queue.region, &q->ep_url, signing,
                                sizeof(signing), e) != 0) {
            return -1;
        }
        snprintf(q->ep_source, sizeof(q->ep_source), "%s",
                 cfg->use_fips && cfg->use_dualstack ? "FIPS dual-stack endpoint"
                 : cfg->use_fips                     ? "FIPS endpoint"
                 : cfg->use_dualstack                ? "dual-stack endpoint"
                                                     : "default endpoint");
    } else {
        q->ep_url = xstrdup(q->queue.base_url);
        snprintf(q->ep_source, sizeof(q->ep_source), "the queue URL's host");
    }
    return 0;
}

struct aws_sqs *aws_sqs_new(const struct aws_sqs_opts *o, struct err *e)
{
    struct aws_sqs *q = NULL;
    if (o->base == NULL || o->credp == NULL) {
        err_set(e, ERRC_INVALID, "SQS client needs an event loop and a credential provider");
        return NULL;
    }
    q = xcalloc(1, sizeof(*q));
    aws_engine_init(&q->eng, o->base, &sqs_proto);
    if (aws_sqs_queue_parse(o->queue_url, o->region, &q->queue, e) != 0 ||
        sqs_endpoint(q, aws_credp_config(o->credp), e) != 0 ||
        (q->t = aws_transport_new(o->base, e)) == NULL) {
        aws_sqs_free(q);
        return NULL;
    }
    if (aws_engine_setup(&q->eng,
                         &(struct aws_engine_opts){ q->t, o->credp, q->queue.region, "sqs",
                                                    q->ep_url, o->timeout_ms, o->max_attempts },
                         e) != 0) {
        aws_sqs_free(q);
        return NULL;
    }
    return q;
}

const char *aws_sqs_endpoint(const struct aws_sqs *q, const char **source)
{
    if (source != NULL) {
        *source = q->ep_source;
    }
    return q->ep_url;
}

const struct aws_sqs_queue *aws_sqs_queue(const struct aws_sqs *q)
{
    return &q->queue;
}

void aws_sqs_free(struct aws_sqs *q)
{
    if (q == NULL) {
        return;
    }
    aws_engine_stop(&q->eng, q->t); /* in-flight requests: their callbacks end the calls */
    q->t = NULL;
    aws_engine_cancel_all(&q->eng); /* those waiting for credentials or a timer */
    aws_sqs_queue_release(&q->queue);
    aws_engine_release(&q->eng);
    xfree(q->ep_url);
    xfree(q);
}

/* SQS's own: the queue is not there (the JSON code, or the query-compatible one). */
static enum err_code sqs_error_class(long status, const char *code)
{
    (void)status;
    if (strcmp(code, "QueueDoesNotExist") == 0 ||
        strcmp(code, "AWS.SimpleQueueService.NonExistentQueue") == 0) {
        return ERRC_NOT_FOUND;
    }
    return ERRC_OK;
}

static void sqs_done(struct aws_call *call, const struct aws_call_result *cr, const struct err *e)
{
    struct sqs_call *k = (struct sqs_call *)call;
    struct aws_sqs_result r = { k->action,   cr->status,   cr->code,
                                cr->message, cr->attempts, e == NULL ? cr->out : NULL };
    k->cb(k->arg, &r, e);
}

static const struct aws_call_proto sqs_proto = {
    AWS_PROTO_JSON, NULL, sqs_error_class, NULL, sqs_done,
};

int aws_sqs_call(struct aws_sqs *q, const char *action, json_t *in, long extra_timeout_ms,
                 aws_sqs_cb *cb, void *arg, struct err *e)
{
    struct sqs_call *k = NULL;
    json_t *req = NULL;
    char what[2200], target[80];
    if (action == NULL || action[0] == '\0' || strlen(action) >= sizeof(k->action) || cb == NULL ||
        (in != NULL && !json_is_object(in)) || extra_timeout_ms < 0) {
        return err_set(e, ERRC_INVALID, "SQS: bad call arguments");
    }
    if (q->eng.freeing) {
        return err_set(e, ERRC_CANCELED, "SQS client is being freed");
    }
    req = in ? json_deep_copy(in) : json_object();
    json_object_set_new(req, "QueueUrl", json_string(q->queue.url));
    snprintf(what, sizeof(what), "SQS %s %s", action, q->queue.url);
    k = (struct sqs_call *)aws_call_new(&q->eng, sizeof(*k), what);
    snprintf(k->action, sizeof(k->action), "%s", action);
    k->cb = cb;
    k->arg = arg;
    k->k.body = json_dumps(req, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(req);
    if (k->k.body == NULL) {
        aws_call_discard(&k->k);
        return err_set(e, ERRC_INVALID, "SQS %s: the input cannot be encoded", action);
    }
    k->k.body_len = strlen(k->k.body);
    k->k.method = "POST";
    struct buf path = BUF_INIT;
    buf_addf(&path, "%s/", q->eng.base_path);
    k->k.path = buf_detach(&path, NULL);
    snprintf(target, sizeof(target), "AmazonSQS.%s", action);
    aws_call_header(&k->k, "Content-Type", "application/x-amz-json-1.0");
    aws_call_header(&k->k, "X-Amz-Target", target);
    return aws_call_start(&k->k, extra_timeout_ms, e);
}

int aws_sqs_receive(struct aws_sqs *q, int max, int wait_s, aws_sqs_cb *cb, void *arg,
                    struct err *e)
{
    json_t *in;
    int rc;
    if (max < 1 || max > 10 || wait_s < 0 || wait_s > 20) {
        return err_set(e, ERRC_INVALID,
                       "SQS ReceiveMessage: MaxNumberOfMessages must be 1..10 and "
                       "WaitTimeSeconds 0..20");
    }
    in = json_pack("{s:i, s:i}", "MaxNumberOfMessages", max, "WaitTimeSeconds", wait_s);
    rc = aws_sqs_call(q, "ReceiveMessage", in, (long)wait_s * 1000, cb, arg, e);
    json_decref(in);
    return rc;
}

int aws_sqs_delete_batch(struct aws_sqs *q, const char *const *receipts, size_t n, aws_sqs_cb *cb,
                         void *arg, struct err *e)
{
    json_t *in, *entries;
    int rc;
    if (n < 1 || n > 10) {
        return err_set(e, ERRC_INVALID, "SQS DeleteMessageBatch: 1 to 10 entries, not %zu", n);
    }
    entries = json_array();
    for (size_t i = 0; i < n; i++) {
        char id[8];
        if (receipts[i] == NULL || receipts[i][0] == '\0') {
            json_decref(entries);
            return err_set(e, ERRC_INVALID,
                           "SQS DeleteMessageBatch: entry %zu has no receipt "
                           "handle",
                           i);
        }
        snprintf(id, sizeof(id), "%zu", i);
        json_array_append_new(entries,
                              json_pack("{s:s, s:s}", "Id", id, "ReceiptHandle", receipts[i]));
    }
    in = json_pack("{s:o}", "Entries", entries);
    rc = aws_sqs_call(q, "DeleteMessageBatch", in, 0, cb, arg, e);
    json_decref(in);
    return rc;
}
