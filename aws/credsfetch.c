/*
 * The async credential provider (aws/provider.h). One fetch at a time, an explicit state machine
 * (docs/style.md, "State machines"): START runs the local part of the chain (aws_chain_start), then
 * the network source ch.next: WEB_IDENTITY, CONTAINER (with its own retry timer), IMDS_TOKEN ->
 * IMDS_ROLE -> IMDS_CREDS. Every HTTP completion stores its result and calls fetch_advance().
 * Waiters queue up; they are answered from a zero-delay event (never inline) once credentials are
 * fresh, or with the fetch's error. A refresh timer starts a background fetch before expiry; the
 * old credentials serve until mandatory_s before their expiry.
 */
#include "aws/provider.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "aws/retry.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"

enum fetch_state {
    FS_IDLE,
    FS_START,
    FS_WEB_IDENTITY,
    FS_CONTAINER,
    FS_CONTAINER_WAIT, /* between container attempts */
    FS_IMDS_TOKEN,
    FS_IMDS_ROLE,
    FS_IMDS_CREDS,
};

struct credp_waiter {
    aws_credp_cb *cb;
    void *arg;
    struct credp_waiter *next;
};

struct aws_credp {
    struct aws_transport *t;
    struct event_base *base;
    const struct aws_config *cfg;
    const char *const *env;
    struct aws_credp_opts o;
    struct aws_creds creds; /* cached; empty when none */
    bool have;
    bool just_fetched; /* deliver even inside the mandatory window: nothing fresher exists */
    struct aws_chain ch;
    enum fetch_state st;
    int container_attempt;
    char imds_token[256];
    bool imds_v1;
    char imds_role[256];
    struct err fetch_err; /* of the last failed fetch, for waiters */
    bool fetch_failed;
    struct credp_waiter *waiters, **tail;
    struct event *deliver; /* zero-delay: answers waiters */
    struct event *refresh; /* background refresh / container retry */
    struct event *retry;
    uint64_t fetches;
    bool *alive; /* cleared by free while a callback runs */
};

static void fetch_advance(struct aws_credp *p);

static bool creds_fresh(const struct aws_credp *p)
{
    return p->have && !aws_creds_expire_within(&p->creds, time(NULL), p->o.mandatory_s);
}

static void deliver_soon(struct aws_credp *p)
{
    struct timeval zero = { 0, 0 };
    evtimer_add(p->deliver, &zero);
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
    struct aws_credp *p = arg;
    struct aws_creds snap;
    struct err e = ERR_INIT;
    bool ok = creds_fresh(p) || (p->just_fetched && p->have &&
                                 (p->creds.expiration == 0 || p->creds.expiration > time(NULL))),
         alive = true;
    (void)fd;
    (void)what;
    if (!ok && !p->fetch_failed) {
        return; /* a fetch is running; its end delivers */
    }
    aws_creds_init(&snap);
    if (ok &&
        aws_creds_set(&snap, p->creds.access_key_id, p->creds.secret_access_key,
                      p->creds.session_token, p->creds.expiration, p->creds.source, &e) != 0) {
        ok = false;
    }
    if (!ok && p->fetch_failed) {
        err_copy(&e, &p->fetch_err);
    }
    struct credp_waiter *w = p->waiters;
    p->waiters = NULL;
    p->tail = &p->waiters;
    p->fetch_failed = false;
    p->just_fetched = false;
    p->alive = &alive;
    while (w != NULL) {
        struct credp_waiter *next = w->next;
        if (alive) {
            w->cb(w->arg, ok ? &snap : NULL, ok ? NULL : &e);
        } else {
            struct err c = ERR_INIT;
            err_set(&c, ERRC_CANCELED, "credential provider freed");
            w->cb(w->arg, NULL, &c);
        }
        xfree(w);
        w = next;
    }
    if (alive) {
        p->alive = NULL;
    }
    aws_creds_release(&snap);
}

static void fetch_start(struct aws_credp *p)
{
    if (p->st != FS_IDLE) {
        return;
    }
    p->st = FS_START;
    fetch_advance(p);
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fetch_start(arg);
}

static void schedule_refresh(struct aws_credp *p)
{
    time_t now = time(NULL);
    if (!p->have || p->creds.expiration == 0) {
        return;
    }
    time_t at = p->creds.expiration - p->o.advisory_s;
    if (p->o.jitter_s > 0) {
        at -= (time_t)(aws_retry_rand01() * (double)p->o.jitter_s);
    }
    long in = at > now ? (long)(at - now) : 1;
    struct timeval tv = { in, 0 };
    evtimer_add(p->refresh, &tv);
}

/* The fetch ended: success with p->ch.creds, or failure e. */
static void fetch_done(struct aws_credp *p, const struct err *e)
{
    p->st = FS_IDLE;
    p->fetches++;
    if (e == NULL) {
        aws_creds_release(&p->creds);
        p->creds = p->ch.creds;
        aws_creds_init(&p->ch.creds);
        p->have = true;
        p->just_fetched = true;
        log_debug("AWS credentials from %s", p->creds.source);
        schedule_refresh(p);
    } else if (creds_fresh(p)) {
        /* a background refresh failed: keep serving, try again in a minute or at the end */
        log_warn("AWS credential refresh failed (keeping the current ones): %s", e->msg);
        struct timeval tv = { 60, 0 };
        evtimer_add(p->refresh, &tv);
        return;
    } else {
        err_copy(&p->fetch_err, e);
        p->fetch_failed = true;
    }
    if (p->waiters) {
        deliver_soon(p);
    } else {
        p->fetch_failed = false;
    }
}

/* The current network source failed with reason: next source, or the final error. */
static void source_failed(struct aws_credp *p, const char *reason)
{
    struct err e = ERR_INIT;
    if (aws_chain_failed(&p->ch, reason, &e) != 0) {
        fetch_done(p, &e);
        return;
    }
    p->st = FS_START; /* FS_START with ch.next set continues with that source */
    fetch_advance(p);
}

static void source_fetched(struct aws_credp *p, struct aws_creds *c)
{
    aws_chain_fetched(&p->ch, c);
    fetch_done(p, NULL);
}

static void reason_http(char *out, size_t cap, const struct aws_http_resp *r, const struct err *e)
{
    if (e != NULL) {
        snprintf(out, cap, "%.200s", e->msg);
    } else {
        snprintf(out, cap, "HTTP %ld", r->status);
    }
}

static void on_sts(void *arg, const struct aws_http_resp *r, const struct err *te)
{
    struct aws_credp *p = arg;
    char reason[256];
    struct aws_creds c;
    struct err e = ERR_INIT;
    if (te != NULL && te->code == ERRC_CANCELED) {
        return;
    }
    aws_creds_init(&c);
    if (te == NULL && aws_creds_parse_sts_xml(r->body.data ? r->body.data : "", r->body.len,
                                              "web identity (STS)", &c, &e) == 0) {
        source_fetched(p, &c);
        return;
    }
    if (te == NULL) {
        snprintf(reason, sizeof(reason), "HTTP %ld: %.200s", r->status, e.msg);
    } else {
        reason_http(reason, sizeof(reason), r, te);
    }
    source_failed(p, reason);
}

static void form_add(struct buf *b, const char *name, const char *value)
{
    if (b->len) {
        buf_addch(b, '&');
    }
    buf_addstr(b, name);
    buf_addch(b, '=');
    aws_uri_encode(b, value, strlen(value), false);
}

static void start_web_identity(struct aws_credp *p)
{
    struct buf tok = BUF_INIT, body = BUF_INIT, url = BUF_INIT;
    struct err e = ERR_INIT;
    char reason[300];
    struct aws_http_req req;
    const struct aws_header h[] = {
        { "Content-Type", "application/x-www-form-urlencoded; charset=utf-8" },
        { "Accept", "text/xml" },
    };
    const char *ep = aws_env_get(p->env, "AWS_ENDPOINT_URL_STS");
    if (ep == NULL || ep[0] == '\0') {
        ep = aws_env_get(p->env, "AWS_ENDPOINT_URL");
    }
    if (ep != NULL && ep[0] != '\0') {
        buf_addstr(&url, ep);
        if (url.data[url.len - 1] != '/') {
            buf_addch(&url, '/');
        }
    } else {
        buf_addf(&url, "https://sts.%s.amazonaws.com%s/", p->cfg->region,
                 str_has_prefix(p->cfg->region, "cn-") ? ".cn" : "");
    }
    if (file_read_all(p->ch.web_identity_token_file, 64 * 1024, &tok, &e) != 0) {
        snprintf(reason, sizeof(reason), "token file: %.200s", e.msg);
        goto fail;
    }
    while (tok.len > 0 && (tok.data[tok.len - 1] == '\n' || tok.data[tok.len - 1] == '\r')) {
        tok.data[--tok.len] = '\0';
    }
    form_add(&body, "Action", "AssumeRoleWithWebIdentity");
    form_add(&body, "Version", "2011-06-15");
    form_add(&body, "RoleArn", p->ch.role_arn);
    form_add(&body, "RoleSessionName",
             p->ch.role_session_name ? p->ch.role_session_name : "jitrca-session");
    form_add(&body, "WebIdentityToken", tok.data);
    req = (struct aws_http_req){
        "POST", url.data, h, ARRAY_LEN(h), body.data, body.len, p->o.sts_timeout_ms, 0, 0
    };
    if (aws_http_send(p->t, &req, on_sts, p, &e) != 0) {
        snprintf(reason, sizeof(reason), "%.200s", e.msg);
        goto fail;
    }
    p->st = FS_WEB_IDENTITY;
    buf_release_secret(&tok);
    buf_release_secret(&body);
    buf_release(&url);
    return;
fail:
    buf_release_secret(&tok);
    buf_release_secret(&body);
    buf_release(&url);
    source_failed(p, reason);
}

static void on_container(void *arg, const struct aws_http_resp *r, const struct err *te)
{
    struct aws_credp *p = arg;
    char reason[300];
    struct aws_creds c;
    struct err e = ERR_INIT;
    if (te != NULL && te->code == ERRC_CANCELED) {
        return;
    }
    aws_creds_init(&c);
    if (te == NULL && r->status == 200 &&
        aws_creds_parse_json(r->body.data ? r->body.data : "", r->body.len, "container endpoint",
                             &c, &e) == 0) {
        source_fetched(p, &c);
        return;
    }
    if (te == NULL && r->status == 200) {
        snprintf(reason, sizeof(reason), "%.200s", e.msg);
    } else {
        reason_http(reason, sizeof(reason), r, te);
    }
    if (p->container_attempt < 3 && (te != NULL || r->status >= 500)) {
        struct timeval tv = { p->o.container_retry_ms / 1000,
                              (p->o.container_retry_ms % 1000) * 1000 };
        p->st = FS_CONTAINER_WAIT;
        evtimer_add(p->retry, &tv);
        return;
    }
    source_failed(p, reason);
}

static void start_container(struct aws_credp *p)
{
    struct buf tok = BUF_INIT;
    struct err e = ERR_INIT;
    char reason[300];
    struct aws_header h[2] = { { "Accept", "application/json" }, { NULL, NULL } };
    size_t nh = 1;
    struct aws_http_req req;
    p->container_attempt++;
    if (p->ch.container_auth_token_file != NULL) {
        if (file_read_all(p->ch.container_auth_token_file, 16 * 1024, &tok, &e) != 0) {
            snprintf(reason, sizeof(reason), "token file: %.200s", e.msg);
            goto fail;
        }
        while (tok.len > 0 && (tok.data[tok.len - 1] == '\n' || tok.data[tok.len - 1] == '\r')) {
            tok.data[--tok.len] = '\0';
        }
        if (strpbrk(buf_cstr(&tok), "\r\n") != NULL) {
            snprintf(reason, sizeof(reason), "the authorization token file contains CR or LF");
            goto fail;
        }
        h[nh++] = (struct aws_header){ "Authorization", tok.data };
    } else if (p->ch.container_auth_token != NULL) {
        h[nh++] = (struct aws_header){ "Authorization", p->ch.container_auth_token };
    }
    req = (struct aws_http_req){ "GET", p->ch.container_url,       h, nh,       NULL,
                                 0,     p->o.container_timeout_ms, 0, 64 * 1024 };
    if (aws_http_send(p->t, &req, on_container, p, &e) != 0) {
        snprintf(reason, sizeof(reason), "%.200s", e.msg);
        goto fail;
    }
    p->st = FS_CONTAINER;
    buf_release_secret(&tok);
    return;
fail:
    buf_release_secret(&tok);
    source_failed(p, reason);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct aws_credp *p = arg;
    (void)fd;
    (void)what;
    if (p->st == FS_CONTAINER_WAIT) {
        start_container(p);
    }
}

static void imds_send(struct aws_credp *p, const char *method, const char *path, aws_http_cb *cb);

static void on_imds(void *arg, const struct aws_http_resp *r, const struct err *te)
{
    struct aws_credp *p = arg;
    char reason[300];
    struct aws_creds c;
    struct err e = ERR_INIT;
    if (te != NULL && te->code == ERRC_CANCELED) {
        return;
    }
    if (te != NULL) {
        reason_http(reason, sizeof(reason), r, te);
        source_failed(p, reason);
        return;
    }
    switch (p->st) {
    case FS_IMDS_TOKEN:
        if (r->status == 200 && r->body.len > 0 && r->body.len < sizeof(p->imds_token)) {
            snprintf(p->imds_token, sizeof(p->imds_token), "%s", r->body.data);
            p->imds_v1 = false;
        } else if ((r->status == 403 || r->status == 404 || r->status == 405) &&
                   !(aws_env_get(p->env, "AWS_EC2_METADATA_V1_DISABLED") &&
                     strcasecmp(aws_env_get(p->env, "AWS_EC2_METADATA_V1_DISABLED"), "true") ==
                         0)) {
            p->imds_v1 = true;
        } else {
            snprintf(reason, sizeof(reason), "token request: HTTP %ld", r->status);
            source_failed(p, reason);
            return;
        }
        p->st = FS_IMDS_ROLE;
        imds_send(p, "GET", "/latest/meta-data/iam/security-credentials/", on_imds);
        return;
    case FS_IMDS_ROLE: {
        size_t n = 0;
        const char *b = r->body.data ? r->body.data : "";
        while (n < r->body.len && b[n] != '\n' && b[n] != '\r') {
            n++;
        }
        if (r->status != 200 || n == 0 || n >= sizeof(p->imds_role)) {
            snprintf(reason, sizeof(reason), "no instance role (HTTP %ld)", r->status);
            source_failed(p, reason);
            return;
        }
        snprintf(p->imds_role, sizeof(p->imds_role), "%.*s", (int)n, b);
        struct buf path = BUF_INIT;
        buf_addstr(&path, "/latest/meta-data/iam/security-credentials/");
        aws_uri_encode(&path, p->imds_role, strlen(p->imds_role), false);
        p->st = FS_IMDS_CREDS;
        imds_send(p, "GET", path.data, on_imds);
        buf_release(&path);
        return;
    }
    case FS_IMDS_CREDS:
        aws_creds_init(&c);
        if (r->status == 200 && aws_creds_parse_json(r->body.data ? r->body.data : "", r->body.len,
                                                     "EC2 IMDS", &c, &e) == 0) {
            source_fetched(p, &c);
            return;
        }
        if (r->status == 200) {
            snprintf(reason, sizeof(reason), "%.200s", e.msg);
        } else {
            snprintf(reason, sizeof(reason), "role credentials: HTTP %ld", r->status);
        }
        source_failed(p, reason);
        return;
    case FS_IDLE:
    case FS_START:
    case FS_WEB_IDENTITY:
    case FS_CONTAINER:
    case FS_CONTAINER_WAIT:
        break;
    }
}

static void imds_send(struct aws_credp *p, const char *method, const char *path, aws_http_cb *cb)
{
    struct buf url = BUF_INIT;
    struct err e = ERR_INIT;
    struct aws_header h[1];
    size_t nh = 0;
    buf_addf(&url, "%s%s", p->ch.imds_endpoint, path);
    if (strcmp(method, "PUT") == 0) {
        h[nh++] = (struct aws_header){ "X-aws-ec2-metadata-token-ttl-seconds", "21600" };
    } else if (!p->imds_v1) {
        h[nh++] = (struct aws_header){ "X-aws-ec2-metadata-token", p->imds_token };
    }
    struct aws_http_req req = {
        method, url.data, h, nh, NULL, 0, p->o.imds_timeout_ms, 0, 64 * 1024
    };
    int rc = aws_http_send(p->t, &req, cb, p, &e);
    buf_release(&url);
    if (rc != 0) {
        source_failed(p, e.msg);
    }
}

static void fetch_advance(struct aws_credp *p)
{
    struct err e = ERR_INIT;
    switch (p->st) {
    case FS_START:
        if (p->ch.next == AWS_CREDS_READY) {
            /* a new fetch: local sources first (cheap, synchronous file reads) */
            if (aws_chain_start(&p->ch, p->cfg, p->env, &e) != 0) {
                fetch_done(p, &e);
                return;
            }
            if (p->ch.next == AWS_CREDS_READY) {
                fetch_done(p, NULL);
                return;
            }
        }
        switch (p->ch.next) {
        case AWS_CREDS_FETCH_WEB_IDENTITY:
            start_web_identity(p);
            return;
        case AWS_CREDS_FETCH_CONTAINER:
            p->container_attempt = 0;
            start_container(p);
            return;
        case AWS_CREDS_FETCH_IMDS:
            p->st = FS_IMDS_TOKEN;
            p->imds_v1 = false;
            imds_send(p, "PUT", "/latest/api/token", on_imds);
            return;
        case AWS_CREDS_READY:
            fetch_done(p, NULL);
            return;
        }
        return;
    case FS_IDLE:
    case FS_WEB_IDENTITY:
    case FS_CONTAINER:
    case FS_CONTAINER_WAIT:
    case FS_IMDS_TOKEN:
    case FS_IMDS_ROLE:
    case FS_IMDS_CREDS:
        return; /* waiting for a completion */
    }
}

struct aws_credp *aws_credp_new(struct aws_transport *t, const struct aws_config *cfg,
                                const char *const *env, const struct aws_credp_opts *o,
                                struct err *e)
{
    struct aws_credp *p = NULL;
    if (cfg == NULL || cfg->region == NULL) {
        err_set(e, ERRC_INVALID, "credential provider needs a resolved AWS configuration");
        return NULL;
    }
    p = xcalloc(1, sizeof(*p));
    p->t = t;
    p->base = aws_transport_base(t);
    p->cfg = cfg;
    p->env = env;
    if (o) {
        p->o = *o;
    }
    p->o.advisory_s = p->o.advisory_s > 0 ? p->o.advisory_s : 900;
    p->o.mandatory_s = p->o.mandatory_s > 0 ? p->o.mandatory_s : 300;
    p->o.jitter_s = p->o.jitter_s == 0 ? 60 : (p->o.jitter_s < 0 ? 0 : p->o.jitter_s);
    p->o.imds_timeout_ms = p->o.imds_timeout_ms > 0 ? p->o.imds_timeout_ms : 1000;
    p->o.container_timeout_ms = p->o.container_timeout_ms > 0 ? p->o.container_timeout_ms : 2000;
    p->o.container_retry_ms = p->o.container_retry_ms > 0 ? p->o.container_retry_ms : 1000;
    p->o.sts_timeout_ms = p->o.sts_timeout_ms > 0 ? p->o.sts_timeout_ms : 10000;
    aws_creds_init(&p->creds);
    aws_chain_init(&p->ch);
    p->tail = &p->waiters;
    p->deliver = evtimer_new(p->base, on_deliver, p);
    p->refresh = evtimer_new(p->base, on_refresh, p);
    p->retry = evtimer_new(p->base, on_retry, p);
    if (!p->deliver || !p->refresh || !p->retry) {
        oom_die(sizeof(void *));
    }
    return p;
}

void aws_credp_free(struct aws_credp *p)
{
    if (p == NULL) {
        return;
    }
    if (p->alive) {
        *p->alive = false; /* on_deliver cancels the rest of its list */
    }
    struct credp_waiter *w = p->waiters;
    while (w) {
        struct credp_waiter *next = w->next;
        struct err c = ERR_INIT;
        err_set(&c, ERRC_CANCELED, "credential provider freed");
        w->cb(w->arg, NULL, &c);
        xfree(w);
        w = next;
    }
    event_free(p->deliver);
    event_free(p->refresh);
    event_free(p->retry);
    aws_creds_release(&p->creds);
    aws_chain_release(&p->ch);
    OPENSSL_cleanse(p->imds_token, sizeof(p->imds_token));
    xfree(p);
}

int aws_credp_get(struct aws_credp *p, aws_credp_cb *cb, void *arg, struct err *e)
{
    if (cb == NULL) {
        return err_set(e, ERRC_INVALID, "aws_credp_get without a callback");
    }
    struct credp_waiter *w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    *p->tail = w;
    p->tail = &w->next;
    if (creds_fresh(p)) {
        if (aws_creds_expire_within(&p->creds, time(NULL), p->o.advisory_s)) {
            fetch_start(p); /* background: the current ones still serve */
        }
        deliver_soon(p);
    } else {
        fetch_start(p);
    }
    return 0;
}

void aws_credp_invalidate(struct aws_credp *p)
{
    aws_creds_release(&p->creds);
    p->have = false;
    evtimer_del(p->refresh);
}

uint64_t aws_credp_fetches(const struct aws_credp *p)
{
    return p->fetches;
}
