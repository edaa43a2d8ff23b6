/*
 * The AWS call engine (aws/call.h): one call's life for every service. The state changes only in
 * call_set_state(); call_advance() starts the step of the state it finds; completions (timer,
 * bucket, credentials, HTTP) only store their result and move the call on.
 *
 * The credential provider may be borrowed (SQS) and freed before the client, so a call waits for
 * credentials through a small creds_wait that the provider's callback owns: a call that ends
 * meanwhile detaches it (cw->k = NULL) and the late callback only frees it.
 */
#include "aws/call.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws/sigv4.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"

struct aws_call_creds_wait {
    struct aws_call *k; /* NULL: the call is gone, only free this */
};

static void call_advance(struct aws_call *k);

/* The one place a call's state changes. A finished call stays finished. */
static void call_set_state(struct aws_call *k, enum aws_call_state st)
{
    if (k->st != AWS_CALL_DONE) {
        k->st = st;
    }
}

void aws_engine_init(struct aws_engine *g, struct event_base *base,
                     const struct aws_call_proto *proto)
{
    memset(g, 0, sizeof(*g));
    g->base = base;
    g->proto = proto;
    g->timeout_ms = 10000;
    g->max_attempts = AWS_RETRY_MAX_ATTEMPTS;
    aws_retry_quota_init(&g->retry_quota);
}

int aws_engine_setup(struct aws_engine *g, const struct aws_engine_opts *o, struct err *e)
{
    const char *ep = o->endpoint;
    const char *hs = ep ? strstr(ep, "://") : NULL;
    if (hs == NULL) {
        return err_set(e, ERRC_INVALID, "AWS endpoint '%s' is not a URL", ep ? ep : "");
    }
    hs += 3;
    const char *slash = strchr(hs, '/');
    size_t hl = slash ? (size_t)(slash - hs) : strlen(hs);
    if (hl == 0) {
        return err_set(e, ERRC_INVALID, "AWS endpoint '%s' has no host", ep);
    }
    g->t = o->t;
    g->credp = o->credp;
    g->region = o->region;
    g->service = o->service;
    g->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
    g->max_attempts = o->max_attempts > 0 ? o->max_attempts : AWS_RETRY_MAX_ATTEMPTS;
    g->host = xstrndup(hs, hl);
    g->base_url = xstrndup(ep, (size_t)(hs - ep) + hl);
    g->base_path = xstrdup(slash ? slash : "");
    size_t bl = strlen(g->base_path);
    while (bl > 0 && g->base_path[bl - 1] == '/') {
        g->base_path[--bl] = '\0';
    }
    /* default ports are not part of Host as curl sends it */
    size_t l = strlen(g->host);
    if (str_has_prefix(ep, "https://") && l > 4 && strcmp(g->host + l - 4, ":443") == 0) {
        g->host[l - 4] = '\0';
    } else if (str_has_prefix(ep, "http://") && l > 3 && strcmp(g->host + l - 3, ":80") == 0) {
        g->host[l - 3] = '\0';
    }
    return 0;
}

void aws_engine_release(struct aws_engine *g)
{
    xfree(g->host);
    xfree(g->base_url);
    xfree(g->base_path);
    g->host = g->base_url = g->base_path = NULL;
}

static void call_unlink(struct aws_call *k)
{
    struct aws_engine *g = k->eng;
    if (k->prev) {
        k->prev->next = k->next;
    } else if (g->calls == k) {
        g->calls = k->next;
    }
    if (k->next) {
        k->next->prev = k->prev;
    }
    k->prev = k->next = NULL;
}

void aws_call_discard(struct aws_call *k)
{
    if (k == NULL) {
        return;
    }
    if (k->timer) {
        event_free(k->timer);
    }
    for (size_t i = 0; i < k->nheaders; i++) {
        xfree(k->header_values[i]);
    }
    xfree(k->what);
    xfree(k->path);
    xfree(k->query);
    xfree(k->body);
    xfree(k);
}

/* Runs the protocol's done hook once and frees the call. */
static void call_finish(struct aws_call *k, const struct aws_call_result *r, const struct err *e)
{
    if (k->st == AWS_CALL_DONE) {
        return;
    }
    call_set_state(k, AWS_CALL_DONE);
    call_unlink(k);
    if (k->cw != NULL) {
        k->cw->k = NULL; /* the provider's callback frees it */
        k->cw = NULL;
    }
    k->eng->proto->done(k, r, e);
    aws_call_discard(k);
}

void aws_call_fail(struct aws_call *k, const struct err *e)
{
    struct aws_call_result r = { 0, "", "", "", NULL, k->attempts, k->paced_ms };
    call_finish(k, &r, e);
}

void aws_engine_stop(struct aws_engine *g, struct aws_transport *t)
{
    g->freeing = true;
    aws_transport_free(t);
    g->t = NULL;
}

void aws_engine_cancel_all(struct aws_engine *g)
{
    g->freeing = true;
    while (g->calls) {
        struct err e = ERR_INIT;
        err_set(&e, ERRC_CANCELED, "%s canceled", g->calls->what);
        aws_call_fail(g->calls, &e);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct aws_call *k = arg;
    (void)fd;
    (void)what;
    if (k->st == AWS_CALL_PACE_WAIT || k->st == AWS_CALL_BACKOFF) {
        call_set_state(k, AWS_CALL_PACE);
    }
    call_advance(k);
}

static void call_sleep(struct aws_call *k, enum aws_call_state st, int64_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
    call_set_state(k, st);
    evtimer_add(k->timer, &tv);
}

struct aws_call *aws_call_new(struct aws_engine *g, size_t size, const char *what)
{
    struct aws_call *k = xcalloc(1, size < sizeof(*k) ? sizeof(*k) : size);
    k->eng = g;
    k->what = xstrdup(what);
    k->method = "POST";
    k->st = AWS_CALL_BACKOFF; /* not started: the first step is the start timer */
    k->timer = evtimer_new(g->base, on_timer, k);
    if (k->timer == NULL) {
        oom_die(event_get_struct_event_size());
    }
    aws_call_header(k, "Host", g->host);
    return k;
}

void aws_call_header(struct aws_call *k, const char *name, const char *value)
{
    if (k->nheaders >= AWS_CALL_MAX_HEADERS) {
        abort(); /* a protocol's bug: the tables name at most three */
    }
    k->header_values[k->nheaders] = xstrdup(value);
    k->headers[k->nheaders] = (struct aws_header){ name, k->header_values[k->nheaders] };
    k->nheaders++;
}

int aws_call_start(struct aws_call *k, long extra_timeout_ms, struct err *e)
{
    struct aws_engine *g = k->eng;
    if (g->freeing) {
        err_set(e, ERRC_CANCELED, "%s: the client is being freed", k->what);
        aws_call_discard(k);
        return -1;
    }
    if (k->path == NULL) {
        k->path = xstrdup("/");
    }
    if (k->query == NULL) {
        k->query = xstrdup("");
    }
    k->timeout_ms = g->timeout_ms + extra_timeout_ms;
    k->next = g->calls;
    if (g->calls) {
        g->calls->prev = k;
    }
    g->calls = k;
    /* start from the loop, never inline: the callback must not run before we return */
    call_sleep(k, AWS_CALL_BACKOFF, 0);
    return 0;
}

void aws_call_paced(struct aws_call *k, int64_t wait_ms)
{
    if (wait_ms > 0) {
        call_sleep(k, AWS_CALL_PACE_WAIT, wait_ms);
        return;
    }
    k->paced_ms += time_mono_ns() / 1000000 - k->pace_started;
    call_set_state(k, AWS_CALL_CREDS);
    call_advance(k);
}

static void on_http(void *arg, const struct aws_http_resp *r, const struct err *te);

static void call_send(struct aws_call *k, const struct aws_creds *creds)
{
    struct aws_engine *g = k->eng;
    struct aws_header wire[AWS_CALL_MAX_HEADERS + AWS_SIGV4_MAX_ADD];
    size_t nw = 0;
    struct aws_sigv4_out so;
    struct buf url = BUF_INIT;
    struct err e = ERR_INIT;
    struct aws_http_req req;
    aws_sigv4_out_init(&so);
    struct aws_sigv4_req sr = { k->method,
                                k->path,
                                k->query,
                                k->headers,
                                k->nheaders,
                                (const uint8_t *)k->body,
                                k->body_len,
                                NULL,
                                g->region,
                                g->service,
                                time(NULL) + g->clock_offset_s,
                                0 };
    if (aws_sigv4_sign_wire(&sr, creds, &so, wire, &nw, &e) != 0) {
        err_prefix(&e, "%s", k->what);
        aws_call_fail(k, &e);
        goto out;
    }
    buf_addf(&url, "%s%s%s%s", g->base_url, k->path, k->query[0] ? "?" : "", k->query);
    req = (struct aws_http_req){ k->method,   url.data,      wire, nw, k->body,
                                 k->body_len, k->timeout_ms, 0,    0 };
    k->attempts++;
    call_set_state(k, AWS_CALL_SEND);
    if (aws_http_send(g->t, &req, on_http, k, &e) != 0) {
        aws_call_fail(k, &e);
    }
out:
    buf_release(&url);
    aws_sigv4_out_release(&so);
}

static void on_creds(void *arg, const struct aws_creds *creds, const struct err *e)
{
    struct aws_call_creds_wait *cw = arg;
    struct aws_call *k = cw->k;
    xfree(cw);
    if (k == NULL) {
        return; /* the call ended meanwhile */
    }
    k->cw = NULL;
    if (e != NULL) {
        aws_call_fail(k, e); /* "no AWS credentials: ..." is long enough without a prefix */
        return;
    }
    call_send(k, creds);
}

static void call_advance(struct aws_call *k)
{
    struct aws_engine *g = k->eng;
    struct err e = ERR_INIT;
    switch (k->st) {
    case AWS_CALL_PACE:
        k->pace_started = time_mono_ns() / 1000000;
        if (g->proto->pace == NULL) {
            aws_call_paced(k, 0);
        } else {
            g->proto->pace(k);
        }
        return;
    case AWS_CALL_CREDS: {
        struct aws_call_creds_wait *cw = xcalloc(1, sizeof(*cw));
        cw->k = k;
        if (aws_credp_get(g->credp, on_creds, cw, &e) != 0) {
            xfree(cw);
            aws_call_fail(k, &e);
            return;
        }
        k->cw = cw;
        return;
    }
    case AWS_CALL_PACE_WAIT:
    case AWS_CALL_SEND:
    case AWS_CALL_BACKOFF:
    case AWS_CALL_DONE:
        return;
    }
}

/* Retry after `cls`? Then takes the retry quota's cost, arms the backoff timer, returns true. */
static bool call_maybe_retry(struct aws_call *k, enum aws_retry_class cls, bool after_timeout)
{
    struct aws_engine *g = k->eng;
    if (cls == AWS_RETRY_NONE || k->attempts >= g->max_attempts || g->freeing) {
        return false;
    }
    if (!aws_retry_quota_acquire(&g->retry_quota, after_timeout, &k->quota_last)) {
        return false;
    }
    call_sleep(k, AWS_CALL_BACKOFF, aws_retry_delay_ms(k->attempts, aws_retry_rand01()));
    return true;
}

/* Errors that a request signed at the wrong time gets (the AWS SDKs' clock skew list). */
static bool skew_code(const char *code)
{
    static const char *const codes[] = {
        "RequestTimeTooSkewed",      "RequestExpired",        "RequestInTheFuture",
        "InvalidSignatureException", "SignatureDoesNotMatch", "AuthFailure",
    };
    for (size_t i = 0; i < ARRAY_LEN(codes); i++) {
        if (strcmp(code, codes[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* After a skew error: when the service's Date and our clock (as we sign) differ by more than
 * AWS_CALL_CLOCK_SKEW_S, signs with the service's time from now on and returns true. */
static bool call_correct_clock(struct aws_call *k, const struct aws_http_resp *r)
{
    struct aws_engine *g = k->eng;
    int64_t offset = r->date - (int64_t)time(NULL);
    int64_t diff = offset - g->clock_offset_s;
    if (r->date == 0 || k->corrected_clock ||
        (diff < AWS_CALL_CLOCK_SKEW_S && -diff < AWS_CALL_CLOCK_SKEW_S)) {
        return false;
    }
    log_warn("%s: the local clock is %lld s off the service's (its Date header): signing with "
             "the service's time",
             k->what, (long long)-offset);
    g->clock_offset_s = offset;
    k->corrected_clock = true;
    return true;
}

/* Codes that mean "who you are or what you signed was refused", whatever the status. */
static bool denied_code(const char *code)
{
    static const char *const codes[] = {
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "UnrecognizedClientException",
        "IncompleteSignature",
        "IncompleteSignatureException",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "UnauthorizedException",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "AuthFailure",
    };
    if (str_has_prefix(code, "AccessDenied")) {
        return true;
    }
    for (size_t i = 0; i < ARRAY_LEN(codes); i++) {
        if (strcmp(code, codes[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* The err_code of an AWS error response, the same rules for every service after its own. */
static enum err_code error_class(const struct aws_engine *g, long status, const char *code,
                                 enum aws_retry_class cls)
{
    enum err_code c = g->proto->error_class ? g->proto->error_class(status, code) : ERRC_OK;
    if (c != ERRC_OK) {
        return c;
    }
    if (cls != AWS_RETRY_NONE) {
        return ERRC_UNAVAILABLE; /* throttled or transient after the last attempt */
    }
    if (status == 401 || status == 403 || denied_code(code)) {
        return ERRC_DENIED;
    }
    if (status == 404) {
        return ERRC_NOT_FOUND;
    }
    if (status >= 400 && status < 500) {
        return ERRC_INVALID; /* the request is wrong: sending it again will not help */
    }
    return ERRC_UNAVAILABLE;
}

static void attempts_suffix(const struct aws_call *k, char *out, size_t cap)
{
    if (k->attempts > 1) {
        snprintf(out, cap, ", after %u attempts", k->attempts);
    } else {
        out[0] = '\0';
    }
}

static const char *json_str(json_t *body, const char *key, const char *alt)
{
    json_t *v = json_object_get(body, key);
    if (!json_is_string(v) && alt != NULL) {
        v = json_object_get(body, alt);
    }
    return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

void aws_call_error_code(enum aws_call_protocol p, const struct aws_http_resp *r, json_t *body,
                         char *out, size_t cap)
{
    const char *header = r->error_type[0] ? r->error_type : NULL;
    const char *type = json_str(body, "__type", NULL);
    const char *code = json_str(body, "code", "Code");
    const char *src = p == AWS_PROTO_JSON ? (type     ? type
                                             : header ? header
                                                      : code)
                                          : (header ? header
                                             : code ? code
                                                    : type);
    size_t n;
    if (src != NULL) {
        n = strcspn(src, ":");
        const char *hash = memrchr(src, '#', n);
        if (hash != NULL) {
            n -= (size_t)(hash + 1 - src);
            src = hash + 1;
        }
        if (n > 0) {
            snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), src);
            return;
        }
    }
    snprintf(out, cap, "HTTP%ld", r->status);
}

const char *aws_call_json_message(json_t *body)
{
    json_t *m = json_object_get(body, "message");
    if (!json_is_string(m)) {
        m = json_object_get(body, "Message");
    }
    return json_is_string(m) ? json_string_value(m) : "";
}

static void on_transport_error(struct aws_call *k, const struct err *te)
{
    struct err e = ERR_INIT;
    char suffix[48];
    if (te->code == ERRC_CANCELED) {
        aws_call_fail(k, te);
        return;
    }
    if (call_maybe_retry(k, aws_retry_classify(te->code, 0, ""), te->code == ERRC_TIMEOUT)) {
        return;
    }
    attempts_suffix(k, suffix, sizeof(suffix));
    err_set(&e, te->code, "%s: %s%s", k->what, te->msg, suffix);
    snprintf(e.detail, sizeof(e.detail), "%s", te->detail);
    aws_call_fail(k, &e);
}

static void on_success(struct aws_call *k, const struct aws_http_resp *r, json_t *body,
                       const json_error_t *jerr)
{
    struct aws_engine *g = k->eng;
    struct err e = ERR_INIT;
    struct aws_call_result res = {
        r->status, "", "", r->request_id, NULL, k->attempts, k->paced_ms
    };
    /* the request succeeded whatever its body: the retry quota gets its share back */
    aws_retry_quota_success(&g->retry_quota, k->quota_last);
    if (!json_is_object(body)) {
        err_set(&e, ERRC_UNAVAILABLE, "%s: malformed response (HTTP %ld): %s", k->what, r->status,
                body == NULL ? jerr->text : "the body is not a JSON object");
    } else if (g->proto->check_output != NULL && g->proto->check_output(k, body, &e) != 0) {
        err_prefix(&e, "%s", k->what);
    } else {
        res.out = body;
        call_finish(k, &res, NULL);
        return;
    }
    snprintf(e.detail, sizeof(e.detail), "request id %s", r->request_id);
    call_finish(k, &res, &e);
}

static void on_http(void *arg, const struct aws_http_resp *r, const struct err *te)
{
    struct aws_call *k = arg;
    struct aws_engine *g = k->eng;
    struct err e = ERR_INIT;
    json_t *body = NULL;
    json_error_t jerr;
    char code[128], suffix[48];
    enum aws_retry_class cls;
    if (te != NULL) {
        on_transport_error(k, te);
        return;
    }
    memset(&jerr, 0, sizeof(jerr));
    if (r->body.len > 0) {
        body = json_loadb(r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &jerr);
    }
    if (r->status >= 200 && r->status < 300) {
        if (r->body.len == 0) {
            body = json_object();
        }
        on_success(k, r, body, &jerr);
        json_decref(body);
        return;
    }
    if (!json_is_object(body)) {
        json_decref(body);
        body = NULL;
    }
    aws_call_error_code(g->proto->protocol, r, body, code, sizeof(code));
    if (!g->freeing && ((skew_code(code) && call_correct_clock(k, r)) ||
                        (aws_retry_is_expired_creds(code) && !k->refreshed_creds))) {
        /* signed at the service's time, or with fresh credentials: once each, outside the retry
         * quota and paced like any attempt */
        if (aws_retry_is_expired_creds(code)) {
            k->refreshed_creds = true;
            aws_credp_invalidate(g->credp);
        }
        json_decref(body);
        call_set_state(k, AWS_CALL_PACE);
        call_advance(k);
        return;
    }
    cls = aws_retry_classify(ERRC_OK, r->status, code);
    if (call_maybe_retry(k, cls, false)) {
        json_decref(body);
        return;
    }
    {
        const char *msg = aws_call_json_message(body);
        struct aws_call_result res = { r->status, code,        msg,        r->request_id,
                                       body,      k->attempts, k->paced_ms };
        attempts_suffix(k, suffix, sizeof(suffix));
        err_set(&e, error_class(g, r->status, code, cls), "%s: %s%s%.200s (HTTP %ld%s)", k->what,
                code, msg[0] ? ": " : "", msg, r->status, suffix);
        snprintf(e.detail, sizeof(e.detail), "request id %s", r->request_id);
        call_finish(k, &res, &e);
    }
    json_decref(body);
}
