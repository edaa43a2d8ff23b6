/*
 * The SQS client (aws/sqs.h). Only what a queue consumer needs: the AWS JSON 1.0 protocol is one
 * POST to "/" per action, so there is no operation table, just the action name in X-Amz-Target.
 *
 * A call is a small state machine like aws/iot.c's, without pacing (SQS has no per-API quota
 * worth pacing for a consumer): START (a zero timer: never complete inside the caller) → CREDS →
 * SEND → on failure BACKOFF (full jitter, botocore standard retries) → CREDS again → DONE.
 * Completions only store their result and move the call on.
 *
 * The credential provider is borrowed and may outlive the client or die first. A call waiting
 * for credentials therefore waits through a small `creds_wait` that the provider's callback
 * owns: aws_sqs_free detaches it (wait->k = NULL) and the provider's late callback only frees it.
 * The client's own transport carries nothing but its requests: aws_sqs_free cancels a pending
 * long poll at once.
 */
#include "aws/sqs.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "aws/retry.h"
#include "aws/sigv4.h"
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
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
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
                       "12-digit account id", url);
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
                           "A-Z a-z 0-9 _ - (and .fifo)", url);
        }
    }
    rr = region_from_host(hs, colon ? (size_t)(colon - hs) : hl, out->region,
                          sizeof(out->region));
    if (rr < 0) {
        return err_set(e, ERRC_INVALID,
                       "SQS queue URL '%.200s': an AWS host that names no region (expected "
                       "sqs.REGION.amazonaws.com)", url);
    }
    if (rr == 0) {
        if (fallback_region == NULL || !region_ok(fallback_region, strlen(fallback_region))) {
            return err_set(e, ERRC_INVALID,
                           "SQS queue URL '%.200s': the host is not AWS's and no valid AWS region "
                           "is configured for it", url);
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

struct sqs_call;

struct creds_wait {
    struct sqs_call *k; /* NULL: the call is gone, only free this */
};

struct sqs_call {
    struct aws_sqs *q;
    char action[48];
    char *body;
    size_t body_len;
    long timeout_ms;
    unsigned attempts;
    int quota_taken;
    bool refreshed_creds;
    bool done;
    struct creds_wait *cw;
    struct event *timer;
    aws_sqs_cb *cb;
    void *arg;
    struct sqs_call *prev, *next;
};

struct aws_sqs {
    struct event_base *base;
    struct aws_sqs_queue queue;
    char *ep_url;  /* where requests go: scheme://host[:port][/path] */
    char *ep_host; /* its Host header */
    char *ep_path; /* the request path ("/" or PATH/) */
    char ep_source[96];
    struct aws_transport *t;
    struct aws_credp *credp;
    long timeout_ms;
    unsigned max_attempts;
    struct aws_retry_quota retry_quota;
    struct sqs_call *calls;
    bool freeing;
};

/*
 * Where requests go, as the SDKs decide it (the QueueUrl travels in the body): a configured SQS
 * endpoint (AWS_ENDPOINT_URL_SQS, ...), else for a queue on an AWS host the region's endpoint
 * with FIPS and dual-stack as configured, else the queue's own host (a stand-in or a proxy).
 */
static int sqs_endpoint(struct aws_sqs *q, const struct aws_config *cfg, struct err *e)
{
    char signing[64];
    const char *hs, *slash;
    size_t hl, l;
    struct buf path = BUF_INIT;
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
    hs = strstr(q->ep_url, "://") + 3;
    slash = strchr(hs, '/');
    hl = slash ? (size_t)(slash - hs) : strlen(hs);
    q->ep_host = xstrndup(hs, hl);
    l = strlen(q->ep_host);
    if (str_has_prefix(q->ep_url, "https://") && l > 4 && strcmp(q->ep_host + l - 4, ":443") == 0) {
        q->ep_host[l - 4] = '\0';
    } else if (str_has_prefix(q->ep_url, "http://") && l > 3 &&
               strcmp(q->ep_host + l - 3, ":80") == 0) {
        q->ep_host[l - 3] = '\0';
    }
    buf_addstr(&path, slash ? slash : "");
    buf_addch(&path, '/');
    q->ep_path = buf_detach(&path, NULL);
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
    q->base = o->base;
    q->credp = o->credp;
    q->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
    q->max_attempts = o->max_attempts > 0 ? o->max_attempts : AWS_RETRY_MAX_ATTEMPTS;
    aws_retry_quota_init(&q->retry_quota);
    if (aws_sqs_queue_parse(o->queue_url, o->region, &q->queue, e) != 0 ||
        sqs_endpoint(q, aws_credp_config(o->credp), e) != 0 ||
        (q->t = aws_transport_new(o->base, e)) == NULL) {
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

static void call_unlink(struct sqs_call *k)
{
    struct aws_sqs *q = k->q;
    if (k->prev) {
        k->prev->next = k->next;
    } else if (q->calls == k) {
        q->calls = k->next;
    }
    if (k->next) {
        k->next->prev = k->prev;
    }
    k->prev = k->next = NULL;
}

static void call_finish(struct sqs_call *k, long status, const char *code, const char *msg,
                        json_t *out, const struct err *e)
{
    struct aws_sqs_result r = { k->action, status, code ? code : "", msg ? msg : "",
                                k->attempts, out };
    if (k->done) {
        return;
    }
    k->done = true;
    call_unlink(k);
    if (k->cw != NULL) {
        k->cw->k = NULL; /* the provider's callback frees it */
        k->cw = NULL;
    }
    if (e == NULL) {
        aws_retry_quota_success(&k->q->retry_quota, k->quota_taken);
    }
    k->cb(k->arg, &r, e);
    if (k->timer) {
        event_free(k->timer);
    }
    xfree(k->body);
    xfree(k);
}

static void call_fail(struct sqs_call *k, const struct err *e)
{
    call_finish(k, 0, "", "", NULL, e);
}

void aws_sqs_free(struct aws_sqs *q)
{
    if (q == NULL) {
        return;
    }
    q->freeing = true;
    aws_transport_free(q->t); /* in-flight requests: their callbacks finish the calls */
    q->t = NULL;
    while (q->calls) {
        struct err e = ERR_INIT;
        err_set(&e, ERRC_CANCELED, "SQS %s canceled", q->calls->action);
        call_fail(q->calls, &e);
    }
    aws_sqs_queue_release(&q->queue);
    xfree(q->ep_url);
    xfree(q->ep_host);
    xfree(q->ep_path);
    xfree(q);
}

static void on_http(void *arg, const struct aws_http_resp *r, const struct err *te);

static void call_send(struct sqs_call *k, const struct aws_creds *creds)
{
    struct aws_sqs *q = k->q;
    char target[80];
    struct aws_header h[3];
    struct aws_header wire[3 + AWS_SIGV4_MAX_ADD];
    size_t nw = 0;
    struct aws_sigv4_out so;
    struct buf url = BUF_INIT;
    struct err e = ERR_INIT;
    struct aws_http_req req;
    aws_sigv4_out_init(&so);
    snprintf(target, sizeof(target), "AmazonSQS.%s", k->action);
    h[0] = (struct aws_header){ "Host", q->ep_host };
    h[1] = (struct aws_header){ "Content-Type", "application/x-amz-json-1.0" };
    h[2] = (struct aws_header){ "X-Amz-Target", target };
    struct aws_sigv4_req sr = { "POST", q->ep_path, "", h, 3, (const uint8_t *)k->body,
                                k->body_len, NULL, q->queue.region, "sqs", time(NULL), 0 };
    if (aws_sigv4_sign_wire(&sr, creds, &so, wire, &nw, &e) != 0) {
        call_fail(k, &e);
        goto out;
    }
    buf_addf(&url, "%s/", q->ep_url);
    req = (struct aws_http_req){ "POST", url.data, wire, nw, k->body, k->body_len,
                                 k->timeout_ms, 0, 0 };
    k->attempts++;
    if (aws_http_send(q->t, &req, on_http, k, &e) != 0) {
        call_fail(k, &e);
    }
out:
    buf_release(&url);
    aws_sigv4_out_release(&so);
}

static void on_creds(void *arg, const struct aws_creds *creds, const struct err *e)
{
    struct creds_wait *cw = arg;
    struct sqs_call *k = cw->k;
    xfree(cw);
    if (k == NULL) {
        return; /* the call was canceled meanwhile */
    }
    k->cw = NULL;
    if (e != NULL) {
        call_fail(k, e);
        return;
    }
    call_send(k, creds);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sqs_call *k = arg;
    struct err e = ERR_INIT;
    struct creds_wait *cw = xcalloc(1, sizeof(*cw));
    (void)fd;
    (void)what;
    cw->k = k;
    if (aws_credp_get(k->q->credp, on_creds, cw, &e) != 0) {
        xfree(cw);
        call_fail(k, &e);
        return;
    }
    k->cw = cw;
}

static void call_sleep(struct sqs_call *k, int64_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
    evtimer_add(k->timer, &tv);
}

/* botocore's JSON protocol: x-amzn-ErrorType up to ':', else __type after '#', else code. */
static void error_code_of(const struct aws_http_resp *r, json_t *body, char *out, size_t cap)
{
    const char *src = NULL;
    size_t n = 0;
    json_t *v;
    if (r->error_type[0]) {
        src = r->error_type;
        n = strcspn(src, ":");
    } else if (json_is_string(v = json_object_get(body, "__type"))) {
        const char *hash = strchr(json_string_value(v), '#');
        src = hash ? hash + 1 : json_string_value(v);
        n = strlen(src);
    } else if (json_is_string(v = json_object_get(body, "code")) ||
               json_is_string(v = json_object_get(body, "Code"))) {
        src = json_string_value(v);
        n = strlen(src);
    }
    if (src == NULL || n == 0) {
        snprintf(out, cap, "HTTP%ld", r->status);
    } else {
        snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), src);
    }
}

static enum err_code error_class(long status, const char *code, enum aws_retry_class rc)
{
    if (strcmp(code, "QueueDoesNotExist") == 0 ||
        strcmp(code, "AWS.SimpleQueueService.NonExistentQueue") == 0) {
        return ERRC_NOT_FOUND;
    }
    if (status == 401 || status == 403 || str_has_prefix(code, "AccessDenied") ||
        strcmp(code, "InvalidClientTokenId") == 0 || strcmp(code, "SignatureDoesNotMatch") == 0 ||
        strcmp(code, "InvalidSignatureException") == 0 ||
        strcmp(code, "UnrecognizedClientException") == 0) {
        return ERRC_DENIED;
    }
    if (rc != AWS_RETRY_NONE || status >= 500) {
        return ERRC_UNAVAILABLE;
    }
    return status >= 400 && status < 500 ? ERRC_INVALID : ERRC_UNAVAILABLE;
}

static bool call_maybe_retry(struct sqs_call *k, enum aws_retry_class cls, bool after_timeout)
{
    if (cls == AWS_RETRY_NONE || k->attempts >= k->q->max_attempts || k->q->freeing) {
        return false;
    }
    if (!aws_retry_quota_acquire(&k->q->retry_quota, after_timeout, &k->quota_taken)) {
        return false;
    }
    call_sleep(k, aws_retry_delay_ms(k->attempts, aws_retry_rand01()));
    return true;
}

static void on_http(void *arg, const struct aws_http_resp *r, const struct err *te)
{
    struct sqs_call *k = arg;
    struct aws_sqs *q = k->q;
    struct err e = ERR_INIT;
    json_t *body = NULL;
    json_error_t jerr;
    char code[128], suffix[48] = "";
    const char *msg = "";
    enum aws_retry_class cls;
    if (te != NULL) {
        if (te->code == ERRC_CANCELED) {
            call_fail(k, te);
            return;
        }
        cls = aws_retry_classify(te->code, 0, "");
        if (call_maybe_retry(k, cls, te->code == ERRC_TIMEOUT)) {
            return;
        }
        if (k->attempts > 1) {
            snprintf(suffix, sizeof(suffix), ", after %u attempts", k->attempts);
        }
        err_set(&e, te->code, "SQS %s %s: %s%s", k->action, q->queue.url, te->msg, suffix);
        snprintf(e.detail, sizeof(e.detail), "%s", te->detail);
        call_fail(k, &e);
        return;
    }
    if (r->body.len > 0) {
        body = json_loadb(r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &jerr);
    }
    if (r->status >= 200 && r->status < 300) {
        if (r->body.len == 0) {
            body = json_object();
        }
        if (!json_is_object(body)) {
            err_set(&e, ERRC_UNAVAILABLE, "SQS %s %s: malformed response (HTTP %ld): %s",
                    k->action, q->queue.url, r->status,
                    body == NULL ? jerr.text : "the body is not a JSON object");
            snprintf(e.detail, sizeof(e.detail), "request id %s", r->request_id);
            json_decref(body);
            call_fail(k, &e);
            return;
        }
        call_finish(k, r->status, "", "", body, NULL);
        json_decref(body);
        return;
    }
    if (!json_is_object(body)) {
        json_decref(body);
        body = NULL;
    }
    error_code_of(r, body, code, sizeof(code));
    if (body != NULL) {
        json_t *m = json_object_get(body, "message");
        if (!json_is_string(m)) {
            m = json_object_get(body, "Message");
        }
        msg = json_is_string(m) ? json_string_value(m) : "";
    }
    if (aws_retry_is_expired_creds(code) && !k->refreshed_creds) {
        k->refreshed_creds = true; /* refresh and retry once, outside the retry budget */
        aws_credp_invalidate(q->credp);
        json_decref(body);
        call_sleep(k, 0);
        return;
    }
    cls = aws_retry_classify(ERRC_OK, r->status, code);
    if (call_maybe_retry(k, cls, false)) {
        json_decref(body);
        return;
    }
    if (k->attempts > 1) {
        snprintf(suffix, sizeof(suffix), ", after %u attempts", k->attempts);
    }
    err_set(&e, error_class(r->status, code, cls), "SQS %s %s: %s%s%.200s (HTTP %ld%s)",
            k->action, q->queue.url, code, msg[0] ? ": " : "", msg, r->status, suffix);
    snprintf(e.detail, sizeof(e.detail), "request id %s", r->request_id);
    call_finish(k, r->status, code, msg, NULL, &e);
    json_decref(body);
}

int aws_sqs_call(struct aws_sqs *q, const char *action, json_t *in, long extra_timeout_ms,
                 aws_sqs_cb *cb, void *arg, struct err *e)
{
    struct sqs_call *k = NULL;
    json_t *req = NULL;
    if (action == NULL || action[0] == '\0' || strlen(action) >= sizeof(k->action) ||
        cb == NULL || (in != NULL && !json_is_object(in)) || extra_timeout_ms < 0) {
        return err_set(e, ERRC_INVALID, "SQS: bad call arguments");
    }
    if (q->freeing) {
        return err_set(e, ERRC_CANCELED, "SQS client is being freed");
    }
    req = in ? json_deep_copy(in) : json_object();
    json_object_set_new(req, "QueueUrl", json_string(q->queue.url));
    k = xcalloc(1, sizeof(*k));
    k->q = q;
    snprintf(k->action, sizeof(k->action), "%s", action);
    k->body = json_dumps(req, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(req);
    if (k->body == NULL) {
        xfree(k);
        return err_set(e, ERRC_INVALID, "SQS %s: the input cannot be encoded", action);
    }
    k->body_len = strlen(k->body);
    k->timeout_ms = q->timeout_ms + extra_timeout_ms;
    k->cb = cb;
    k->arg = arg;
    k->timer = evtimer_new(q->base, on_timer, k);
    if (k->timer == NULL) {
        oom_die(event_get_struct_event_size());
    }
    k->next = q->calls;
    if (q->calls) {
        q->calls->prev = k;
    }
    q->calls = k;
    call_sleep(k, 0); /* from the loop, never inline */
    return 0;
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

int aws_sqs_delete_batch(struct aws_sqs *q, const char *const *receipts, size_t n,
                         aws_sqs_cb *cb, void *arg, struct err *e)
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
            return err_set(e, ERRC_INVALID, "SQS DeleteMessageBatch: entry %zu has no receipt "
                           "handle", i);
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
