/*
 * The async credential provider (aws/provider.h). One fetch at a time, an explicit state machine
 * (docs/style.md, "State machines"): START plans the fetch (aws_chain_start: local sources, and
 * which base source and roles follow), then the base source ch.next runs:
 *   WEB_IDENTITY  READ the token file (off the loop) -> STS AssumeRoleWithWebIdentity
 *   SSO           READ the token cache (off the loop) -> the portal's GetRoleCredentials
 *   PROCESS       credential_process on a thread of its own
 *   CONTAINER     [READ the token file] -> GET the container endpoint
 *   IMDS          IMDS_TOKEN -> IMDS_ROLE -> IMDS_CREDS
 * then ASSUME for each role of the plan (STS AssumeRole signed with the credentials so far).
 * HTTP steps other than IMDS are tried up to 3 times (RETRY_WAIT between) on transport errors,
 * 5xx, 429 and STS throttling. Every completion stores its result and moves the machine on.
 * Waiters queue up; they are answered from a zero-delay event (never inline) once credentials
 * are fresh, or with the fetch's error. A refresh timer starts a background fetch before
 * expiry; the old credentials serve until mandatory_s before their expiry.
 */
#include "aws/provider.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "aws/job.h"
#include "aws/retry.h"
#include "aws/sigv4.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"

#define ATTEMPTS      3
#define TOKEN_MAX     (64u * 1024)
#define SSO_CACHE_MAX (1u << 20)
#define PROC_OUT_MAX  (64u * 1024)
#define PROC_ERR_MAX  1024u

enum fetch_state {
    FS_IDLE,
    FS_START,
    FS_READ,         /* a file is read off the loop; read_for says what for */
    FS_WEB_IDENTITY, /* STS AssumeRoleWithWebIdentity */
    FS_SSO,          /* the SSO portal's GetRoleCredentials */
    FS_PROCESS,      /* credential_process runs */
    FS_CONTAINER,
    FS_RETRY_WAIT, /* between attempts of retry_state */
    FS_IMDS_TOKEN,
    FS_IMDS_ROLE,
    FS_IMDS_CREDS,
    FS_ASSUME, /* STS AssumeRole of ch.roles[role_i] */
};

enum read_for {
    READ_WEB_TOKEN,
    READ_SSO_CACHE,
    READ_CONTAINER_TOKEN,
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
    enum fetch_state retry_state;
    enum read_for read_for;
    int attempt;
    size_t role_i;
    struct buf secret; /* the web identity, SSO or container token of this fetch */
    struct aws_job *job;
    char imds_token[256];
    bool imds_v1;
    char imds_role[256];
    struct err fetch_err; /* of the last failed fetch, for waiters */
    bool fetch_failed;
    struct credp_waiter *waiters, **tail;
    struct event *deliver; /* zero-delay: answers waiters */
    struct event *refresh; /* background refresh */
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

static void secret_clear(struct aws_credp *p)
{
    buf_release_secret(&p->secret);
}

/* The fetch ended: success with p->ch.creds, or failure e. */
static void fetch_done(struct aws_credp *p, const struct err *e)
{
    p->st = FS_IDLE;
    p->fetches++;
    secret_clear(p);
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

/* The base source failed for reason: the fetch fails (aws_chain_failed says how). */
static void source_failed(struct aws_credp *p, enum err_code code, const char *reason)
{
    struct err e = ERR_INIT;
    if (aws_chain_failed(&p->ch, code, reason, &e) != 0) {
        fetch_done(p, &e);
    }
}

static void assume_next(struct aws_credp *p);

/* The base source (or a role) produced c: on to the next role, or done. */
static void source_fetched(struct aws_credp *p, struct aws_creds *c)
{
    aws_chain_fetched(&p->ch, c);
    secret_clear(p);
    assume_next(p);
}

static void reason_http(char *out, size_t cap, const struct aws_http_resp *r, const struct err *te)
{
    if (te != NULL) {
        snprintf(out, cap, "%.200s", te->msg);
    } else {
        snprintf(out, cap, "HTTP %ld", r->status);
    }
}

/* Whether the reply needs nothing more: the step was canceled (the provider is going away), or
 * it is tried again (transport errors, 5xx, 429, STS throttling). */
static bool http_retry(struct aws_credp *p, enum fetch_state again, const struct aws_http_resp *r,
                       const struct err *te)
{
    bool transient = te != NULL || r->status >= 500 || r->status == 429;
    if (te != NULL && te->code == ERRC_CANCELED) {
        return true;
    }
    if (!transient && r->status == 400 && r->body.data != NULL &&
        (strstr(r->body.data, "<Code>Throttling</Code>") != NULL ||
         strstr(r->body.data, "<Code>IDPCommunicationError</Code>") != NULL)) {
        transient = true;
    }
    if (!transient || p->attempt >= ATTEMPTS) {
        return false;
    }
    struct timeval tv = { p->o.retry_ms / 1000, (p->o.retry_ms % 1000) * 1000 };
    p->retry_state = again;
    p->st = FS_RETRY_WAIT;
    evtimer_add(p->retry, &tv);
    return true;
}

/* scheme://host[:port][/path] -> Host header value (a default port dropped) and the path. */
static void url_parts(const char *url, char *host, size_t cap, struct buf *path)
{
    const char *hs = strstr(url, "://");
    const char *slash;
    size_t hl, l;
    hs = hs != NULL ? hs + 3 : url;
    slash = strchr(hs, '/');
    hl = slash != NULL ? (size_t)(slash - hs) : strlen(hs);
    snprintf(host, cap, "%.*s", (int)(hl < cap ? hl : cap - 1), hs);
    l = strlen(host);
    if (str_has_prefix(url, "https://") && l > 4 && strcmp(host + l - 4, ":443") == 0) {
        host[l - 4] = '\0';
    } else if (str_has_prefix(url, "http://") && l > 3 && strcmp(host + l - 3, ":80") == 0) {
        host[l - 3] = '\0';
    }
    buf_addstr(path, slash != NULL ? slash : "");
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

/* ---- off-loop reads ------------------------------------------------------------------------- */

struct read_job {
    struct aws_credp *p;
    char *path;
    size_t max;
    struct buf data;
    struct err err;
};

static void read_work(void *arg)
{
    struct read_job *r = arg;
    if (file_read_all(r->path, r->max, &r->data, &r->err) != 0) {
        buf_release_secret(&r->data); /* r->err says why */
    }
}

static void read_drop(void *arg)
{
    struct read_job *r = arg;
    buf_release_secret(&r->data);
    xfree(r->path);
    xfree(r);
}

static void on_read_web_token(struct aws_credp *p, struct buf *data, const struct err *e);
static void on_read_sso_cache(struct aws_credp *p, struct buf *data, const struct err *e);
static void on_read_container_token(struct aws_credp *p, struct buf *data, const struct err *e);

static void read_done(void *arg)
{
    struct read_job *r = arg;
    struct aws_credp *p = r->p;
    const struct err *e = r->err.code != ERRC_OK ? &r->err : NULL;
    p->job = NULL;
    switch (p->read_for) {
    case READ_WEB_TOKEN:
        on_read_web_token(p, &r->data, e);
        break;
    case READ_SSO_CACHE:
        on_read_sso_cache(p, &r->data, e);
        break;
    case READ_CONTAINER_TOKEN:
        on_read_container_token(p, &r->data, e);
        break;
    }
    read_drop(r);
}

/* Reads path off the loop; the read_for handler continues. */
static void read_file(struct aws_credp *p, enum read_for what, const char *path, size_t max)
{
    struct read_job *r = xcalloc(1, sizeof(*r));
    struct err e = ERR_INIT;
    r->p = p;
    r->path = xstrdup(path);
    r->max = max;
    p->read_for = what;
    p->st = FS_READ;
    p->job = aws_job_start(p->base, read_work, read_done, read_drop, r, &e);
    if (p->job == NULL) {
        read_drop(r);
        source_failed(p, e.code, e.msg);
    }
}

/* A token file's contents, trailing CR/LF dropped; -1 with reason when it has CR/LF inside. */
static int token_of(struct buf *data, const char *what, char *reason, size_t cap)
{
    while (data->len > 0 &&
           (data->data[data->len - 1] == '\n' || data->data[data->len - 1] == '\r')) {
        data->data[--data->len] = '\0';
    }
    if (data->len == 0 || strpbrk(data->data, "\r\n") != NULL ||
        memchr(data->data, '\0', data->len) != NULL) {
        snprintf(reason, cap, "%s is empty or holds CR, LF or NUL inside", what);
        return -1;
    }
    return 0;
}

/* ---- web identity ---------------------------------------------------------------------------- */

static void on_sts_web(void *arg, const struct aws_http_resp *r, const struct err *te);

static void send_web_identity(struct aws_credp *p)
{
    struct buf body = BUF_INIT, url = BUF_INIT;
    struct err e = ERR_INIT;
    char *ep = NULL, signing[64];
    const struct aws_header h[] = {
        { "Content-Type", "application/x-www-form-urlencoded; charset=utf-8" },
        { "Accept", "text/xml" },
    };
    if (aws_config_endpoint(p->cfg, AWS_SVC_STS, NULL, &ep, signing, sizeof(signing), &e) != 0) {
        source_failed(p, e.code, e.msg);
        return;
    }
    buf_addf(&url, "%s/", ep);
    form_add(&body, "Action", "AssumeRoleWithWebIdentity");
    form_add(&body, "Version", "2011-06-15");
    form_add(&body, "RoleArn", p->ch.role_arn);
    form_add(&body, "RoleSessionName",
             p->ch.role_session_name ? p->ch.role_session_name : "jitrca-session");
    form_add(&body, "WebIdentityToken", buf_cstr(&p->secret));
    struct aws_http_req req = {
        "POST", url.data, h, ARRAY_LEN(h), body.data, body.len, p->o.sts_timeout_ms, 0, 64 * 1024
    };
    p->attempt++;
    p->st = FS_WEB_IDENTITY;
    if (aws_http_send(p->t, &req, on_sts_web, p, &e) != 0) {
        source_failed(p, e.code, e.msg);
    }
    buf_release_secret(&body);
    buf_release(&url);
    xfree(ep);
}

/* A token file's read (what names it): the token moves to p->secret; false when the source
 * failed instead. */
static bool token_read(struct aws_credp *p, struct buf *data, const struct err *e, const char *what)
{
    char reason[300];
    if (e != NULL) {
        snprintf(reason, sizeof(reason), "token file: %.200s", e->msg);
        source_failed(p, e->code == ERRC_NOT_FOUND ? ERRC_INVALID : e->code, reason);
        return false;
    }
    if (token_of(data, what, reason, sizeof(reason)) != 0) {
        source_failed(p, ERRC_INVALID, reason);
        return false;
    }
    buf_release_secret(&p->secret);
    p->secret = *data;
    buf_init(data);
    return true;
}

static void on_read_web_token(struct aws_credp *p, struct buf *data, const struct err *e)
{
    if (token_read(p, data, e, "the token file")) {
        p->attempt = 0;
        send_web_identity(p);
    }
}

/* STS replies (both actions): credentials, or the failure's code and reason. */
static int sts_reply(const struct aws_http_resp *r, const char *action, const char *source,
                     struct aws_creds *c, struct err *e)
{
    char what[64];
    struct err pe = ERR_INIT;
    snprintf(what, sizeof(what), "STS %s", action);
    if (aws_creds_parse_sts_xml(r->body.data ? r->body.data : "", r->body.len, action, what, c,
                                &pe) != 0) {
        return err_set(e, pe.code, "%.230s (HTTP %ld)", pe.msg, r->status);
    }
    snprintf(c->source, sizeof(c->source), "%s", source);
    return 0;
}

static void on_sts_web(void *arg, const struct aws_http_resp *r, const struct err *te)
{
    struct aws_credp *p = arg;
    char reason[300];
    struct aws_creds c;
    struct err e = ERR_INIT;
    if (http_retry(p, FS_WEB_IDENTITY, r, te)) {
        return;
    }
    aws_creds_init(&c);
    if (te == NULL &&
        sts_reply(r, "AssumeRoleWithWebIdentity", "web identity (STS)", &c, &e) == 0) {
        source_fetched(p, &c);
        return;
    }
    if (te != NULL) {
        reason_http(reason, sizeof(reason), r, te);
    } else {
        snprintf(reason, sizeof(reason), "%.250s", e.msg);
    }
    source_failed(p, te != NULL ? te->code : e.code, reason);
}

/* ---- SSO ------------------------------------------------------------------------------------- */

static void on_sso(void *arg, const struct aws_http_resp *r, const struct err *te);

/* "aws sso login --sso-session NAME" or "--profile NAME": what renews the token. */
static void sso_login_hint(const struct aws_credp *p, char *out, size_t cap)
{
    if (p->ch.sso.session != NULL) {
        snprintf(out, cap, "run `aws sso login --sso-session %s`", p->ch.sso.session);
    } else {
        snprintf(out, cap, "run `aws sso login --profile %s`", p->ch.sso.profile);
    }
}

static void send_sso(struct aws_credp *p)
{
    struct buf url = BUF_INIT;
    struct err e = ERR_INIT;
    char *ep = NULL, signing[64];
    if (aws_config_endpoint(p->cfg, AWS_SVC_SSO, p->ch.sso.region, &ep, signing, sizeof(signing),
                            &e) != 0) {
        source_failed(p, e.code, e.msg);
        return;
    }
    buf_addf(&url, "%s/federation/credentials?role_name=", ep);
    aws_uri_encode(&url, p->ch.sso.role_name, strlen(p->ch.sso.role_name), false);
    buf_addstr(&url, "&account_id=");
    aws_uri_encode(&url, p->ch.sso.account_id, strlen(p->ch.sso.account_id), false);
    const struct aws_header h[] = {
        { "x-amz-sso_bearer_token", buf_cstr(&p->secret) },
        { "Accept", "application/json" },
    };
    struct aws_http_req req = { "GET", url.data, h, ARRAY_LEN(h), NULL, 0, p->o.sts_timeout_ms,
                                0,     64 * 1024 };
    p->attempt++;
    p->st = FS_SSO;
    if (aws_http_send(p->t, &req, on_sso, p, &e) != 0) {
        source_failed(p, e.code, e.msg);
    }
    buf_release(&url);
    xfree(ep);
}

static void on_read_sso_cache(struct aws_credp *p, struct buf *data, const struct err *e)
{
    char reason[400], hint[128], when[32];
    char *token = NULL;
    time_t expires = 0;
    struct err pe = ERR_INIT;
    sso_login_hint(p, hint, sizeof(hint));
    if (e != NULL && e->code == ERRC_NOT_FOUND) {
        snprintf(reason, sizeof(reason), "no SSO token cached: %s (token cache %s)", hint,
                 p->ch.sso.cache_file);
        source_failed(p, ERRC_DENIED, reason);
        return;
    }
    if (e != NULL) {
        snprintf(reason, sizeof(reason), "cannot read the SSO token cache: %.200s", e->msg);
        source_failed(p, e->code, reason);
        return;
    }
    if (aws_sso_token_parse(buf_cstr(data), data->len, "the SSO token cache", &token, &expires,
                            &pe) != 0) {
        snprintf(reason, sizeof(reason), "%.150s: %s (token cache %s)", pe.msg, hint,
                 p->ch.sso.cache_file);
        source_failed(p, ERRC_INVALID, reason);
        return;
    }
    if (expires <= time(NULL)) {
        time_format_rfc3339(expires, when, sizeof(when));
        snprintf(reason, sizeof(reason), "the SSO token expired at %s: %s (token cache %s)", when,
                 hint, p->ch.sso.cache_file);
        xfree_secret(token);
        source_failed(p, ERRC_DENIED, reason);
        return;
    }
    buf_release_secret(&p->secret);
    buf_addstr(&p->secret, token);
    xfree_secret(token);
    p->attempt = 0;
    send_sso(p);
}

static void on_sso(void *arg, const struct aws_http_resp *r, const struct err *te)
{
    struct aws_credp *p = arg;
    char reason[400], hint[128], source[160];
    struct aws_creds c;
    struct err e = ERR_INIT;
    if (http_retry(p, FS_SSO, r, te)) {
        return;
    }
    aws_creds_init(&c);
    snprintf(source, sizeof(source), "SSO (profile %.50s, account %.16s, role %.50s)",
             p->ch.sso.profile, p->ch.sso.account_id, p->ch.sso.role_name);
    if (te == NULL && r->status == 200 &&
        aws_creds_parse_sso(r->body.data ? r->body.data : "", r->body.len, source, &c, &e) == 0) {
        source_fetched(p, &c);
        return;
    }
    if (te != NULL) {
        reason_http(reason, sizeof(reason), r, te);
        source_failed(p, te->code, reason);
        return;
    }
    if (r->status == 200) {
        source_failed(p, e.code, e.msg);
        return;
    }
    sso_login_hint(p, hint, sizeof(hint));
    if (r->status == 401 || (r->status == 403 && strstr(r->error_type, "Forbidden") == NULL)) {
        snprintf(reason, sizeof(reason),
                 "the SSO portal refused the token (HTTP %ld%s%.60s): %s "
                 "(token cache %s)",
                 r->status, r->error_type[0] ? " " : "", r->error_type, hint, p->ch.sso.cache_file);
        source_failed(p, ERRC_DENIED, reason);
        return;
    }
    if (r->status == 403) {
        snprintf(reason, sizeof(reason),
                 "the SSO session grants no role %.64s in account %.20s "
                 "(HTTP 403 %.60s)",
                 p->ch.sso.role_name, p->ch.sso.account_id, r->error_type);
        source_failed(p, ERRC_DENIED, reason);
        return;
    }
    snprintf(reason, sizeof(reason), "GetRoleCredentials: HTTP %ld%s%.60s", r->status,
             r->error_type[0] ? " " : "", r->error_type);
    source_failed(p, r->status == 404 ? ERRC_NOT_FOUND : ERRC_UNAVAILABLE, reason);
}

/* ---- credential_process ---------------------------------------------------------------------- */

struct proc_job {
    struct aws_credp *p;
    char **argv;
    char **envp;
    long timeout_ms;
    struct buf out, errout;
    int status;
    struct err err;
};

static void proc_work(void *arg)
{
    struct proc_job *j = arg;
    if (aws_process_run(j->argv, j->envp, j->timeout_ms, PROC_OUT_MAX, PROC_ERR_MAX, &j->out,
                        &j->errout, &j->status, &j->err) != 0) {
        j->status = -1; /* j->err says why */
    }
}

static void proc_drop(void *arg)
{
    struct proc_job *j = arg;
    aws_argv_free(j->argv);
    for (size_t i = 0; j->envp != NULL && j->envp[i] != NULL; i++) {
        xfree_secret(j->envp[i]);
    }
    xfree(j->envp);
    buf_release_secret(&j->out);
    buf_release(&j->errout);
    xfree(j);
}

/* Standard error as one line for a message: controls become spaces, trimmed. */
static void stderr_line(struct buf *b, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < b->len && n + 1 < cap; i++) {
        unsigned char c = (unsigned char)b->data[i];
        char o = c < 0x20 || c == 0x7f ? ' ' : (char)c;
        if (o == ' ' && (n == 0 || out[n - 1] == ' ')) {
            continue;
        }
        out[n++] = o;
    }
    while (n > 0 && out[n - 1] == ' ') {
        n--;
    }
    out[n] = '\0';
}

static void proc_done(void *arg)
{
    struct proc_job *j = arg;
    struct aws_credp *p = j->p;
    char reason[400], errline[256], source[160];
    struct aws_creds c;
    struct err e = ERR_INIT;
    p->job = NULL;
    stderr_line(&j->errout, errline, sizeof(errline));
    aws_creds_init(&c);
    snprintf(source, sizeof(source), "%.150s", p->ch.base);
    if (j->err.code != ERRC_OK) {
        snprintf(reason, sizeof(reason), "%.200s%s%.150s", j->err.msg, errline[0] ? ": " : "",
                 errline);
        source_failed(p, j->err.code, reason);
    } else if (j->status != 0) {
        snprintf(reason, sizeof(reason), "'%.100s' exited with status %d%s%.200s", j->argv[0],
                 j->status, errline[0] ? ": " : "", errline);
        source_failed(p, ERRC_UNAVAILABLE, reason);
    } else if (aws_creds_parse_process(buf_cstr(&j->out), j->out.len, "its output", time(NULL), &c,
                                       &e) != 0) {
        snprintf(reason, sizeof(reason), "'%.100s': %.250s", j->argv[0], e.msg);
        source_failed(p, e.code, reason);
    } else {
        snprintf(c.source, sizeof(c.source), "%s", source);
        source_fetched(p, &c);
    }
    proc_drop(j);
}

static void start_process(struct aws_credp *p)
{
    struct proc_job *j = xcalloc(1, sizeof(*j));
    const char *const *env = p->env != NULL ? p->env : (const char *const *)environ;
    size_t n = 0;
    struct err e = ERR_INIT;
    j->p = p;
    j->timeout_ms = p->o.process_timeout_ms;
    if (aws_argv_split(p->ch.process, &j->argv, &e) != 0) {
        proc_drop(j);
        source_failed(p, e.code, e.msg);
        return;
    }
    while (env[n] != NULL) {
        n++;
    }
    j->envp = xcalloc(n + 1, sizeof(*j->envp));
    for (size_t i = 0; i < n; i++) {
        j->envp[i] = xstrdup(env[i]);
    }
    p->st = FS_PROCESS;
    p->job = aws_job_start(p->base, proc_work, proc_done, proc_drop, j, &e);
    if (p->job == NULL) {
        proc_drop(j);
        source_failed(p, e.code, e.msg);
    }
}

/* ---- container ------------------------------------------------------------------------------- */

static void on_container(void *arg, const struct aws_http_resp *r, const struct err *te);

static void send_container(struct aws_credp *p)
{
    struct err e = ERR_INIT;
    struct aws_header h[2] = { { "Accept", "application/json" }, { NULL, NULL } };
    size_t nh = 1;
    if (p->ch.container_auth_token_file != NULL) {
        h[nh++] = (struct aws_header){ "Authorization", buf_cstr(&p->secret) };
    } else if (p->ch.container_auth_token != NULL) {
        h[nh++] = (struct aws_header){ "Authorization", p->ch.container_auth_token };
    }
    struct aws_http_req req = { "GET", p->ch.container_url,       h, nh,       NULL,
                                0,     p->o.container_timeout_ms, 0, 64 * 1024 };
    p->attempt++;
    p->st = FS_CONTAINER;
    if (aws_http_send(p->t, &req, on_container, p, &e) != 0) {
        source_failed(p, e.code, e.msg);
    }
}

static void on_read_container_token(struct aws_credp *p, struct buf *data, const struct err *e)
{
    if (token_read(p, data, e, "the authorization token file")) {
        send_container(p);
    }
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
        source_failed(p, e.code, e.msg);
        return;
    }
    if (http_retry(p, FS_CONTAINER, r, te)) {
        return;
    }
    reason_http(reason, sizeof(reason), r, te);
    source_failed(p,
                  te != NULL                             ? te->code
                  : r->status == 401 || r->status == 403 ? ERRC_DENIED
                                                         : ERRC_UNAVAILABLE,
                  reason);
}

/* ---- IMDS ------------------------------------------------------------------------------------ */

static void imds_send(struct aws_credp *p, const char *method, const char *path, aws_http_cb *cb);

static bool imds_v1_allowed(const struct aws_credp *p)
{
    const char *v = aws_env_get(p->env, "AWS_EC2_METADATA_V1_DISABLED");
    return v == NULL || strcasecmp(v, "true") != 0;
}

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
        source_failed(p, te->code, reason);
        return;
    }
    switch (p->st) {
    case FS_IMDS_TOKEN:
        if (r->status == 200 && r->body.len > 0 && r->body.len < sizeof(p->imds_token)) {
            snprintf(p->imds_token, sizeof(p->imds_token), "%s", r->body.data);
            p->imds_v1 = false;
        } else if ((r->status == 403 || r->status == 404 || r->status == 405) &&
                   imds_v1_allowed(p)) {
            p->imds_v1 = true;
        } else {
            snprintf(reason, sizeof(reason), "token request: HTTP %ld", r->status);
            source_failed(p, ERRC_UNAVAILABLE, reason);
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
            source_failed(p, ERRC_NOT_FOUND, reason);
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
        source_failed(p, ERRC_UNAVAILABLE, reason);
        return;
    case FS_IDLE:
    case FS_START:
    case FS_READ:
    case FS_WEB_IDENTITY:
    case FS_SSO:
    case FS_PROCESS:
    case FS_CONTAINER:
    case FS_RETRY_WAIT:
    case FS_ASSUME:
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
        source_failed(p, e.code, e.msg);
    }
}

/* ---- AssumeRole ------------------------------------------------------------------------------ */

static void on_assume(void *arg, const struct aws_http_resp *r, const struct err *te);

static void role_failed(struct aws_credp *p, enum err_code code, const char *reason)
{
    struct err e = ERR_INIT;
    const struct aws_role_step *s = &p->ch.roles[p->role_i];
    err_set(&e, code != ERRC_OK ? code : ERRC_UNAVAILABLE,
            "AWS credentials: assuming role %.100s (profile '%.40s'): %s", s->role_arn, s->profile,
            reason);
    snprintf(e.detail, sizeof(e.detail),
             "assuming role %s (profile '%s') with credentials from %s:"
             " %s",
             s->role_arn, s->profile, p->ch.base, reason);
    fetch_done(p, &e);
}

static void send_assume(struct aws_credp *p)
{
    const struct aws_role_step *s = &p->ch.roles[p->role_i];
    struct buf body = BUF_INIT, url = BUF_INIT, path = BUF_INIT;
    struct err e = ERR_INIT;
    struct aws_sigv4_out so;
    struct aws_header h[2], wire[2 + AWS_SIGV4_MAX_ADD];
    struct aws_sigv4_req sr;
    struct aws_http_req req;
    size_t nw = 0;
    char *ep = NULL, signing[64], host[256], session[32], dur[24];
    aws_sigv4_out_init(&so);
    if (aws_config_endpoint(p->cfg, AWS_SVC_STS, NULL, &ep, signing, sizeof(signing), &e) != 0) {
        role_failed(p, e.code, e.msg);
        goto out;
    }
    url_parts(ep, host, sizeof(host), &path);
    buf_addch(&path, '/');
    buf_addf(&url, "%s/", ep);
    snprintf(session, sizeof(session), "jitrca-%lld", (long long)time(NULL));
    form_add(&body, "Action", "AssumeRole");
    form_add(&body, "Version", "2011-06-15");
    form_add(&body, "RoleArn", s->role_arn);
    form_add(&body, "RoleSessionName", s->session_name ? s->session_name : session);
    if (s->duration_s > 0) {
        snprintf(dur, sizeof(dur), "%ld", s->duration_s);
        form_add(&body, "DurationSeconds", dur);
    }
    if (s->external_id != NULL) {
        form_add(&body, "ExternalId", s->external_id);
    }
    h[0] = (struct aws_header){ "Host", host };
    h[1] =
        (struct aws_header){ "Content-Type", "application/x-www-form-urlencoded; charset=utf-8" };
    sr = (struct aws_sigv4_req){ "POST",   path.data,  "",
                                 h,        2,          (const uint8_t *)body.data,
                                 body.len, NULL,       signing,
                                 "sts",    time(NULL), 0 };
    if (aws_sigv4_sign_wire(&sr, &p->ch.creds, &so, wire, &nw, &e) != 0) {
        role_failed(p, e.code, e.msg);
        goto out;
    }
    req =
        (struct aws_http_req){ "POST", url.data, wire, nw, body.data, body.len, p->o.sts_timeout_ms,
                               0,      64 * 1024 };
    p->attempt++;
    p->st = FS_ASSUME;
    if (aws_http_send(p->t, &req, on_assume, p, &e) != 0) {
        role_failed(p, e.code, e.msg);
    }
out:
    aws_sigv4_out_release(&so);
    buf_release(&body);
    buf_release(&url);
    buf_release(&path);
    xfree(ep);
}

/* The credentials so far are in p->ch.creds: assume the next role of the plan, or finish. */
static void assume_next(struct aws_credp *p)
{
    if (p->role_i >= p->ch.nroles) {
        fetch_done(p, NULL);
        return;
    }
    p->attempt = 0;
    send_assume(p);
}

static void on_assume(void *arg, const struct aws_http_resp *r, const struct err *te)
{
    struct aws_credp *p = arg;
    char reason[300], source[160];
    struct aws_creds c;
    struct err e = ERR_INIT;
    const struct aws_role_step *s;
    if (http_retry(p, FS_ASSUME, r, te)) {
        return;
    }
    s = &p->ch.roles[p->role_i];
    aws_creds_init(&c);
    snprintf(source, sizeof(source), "role %.100s (profile %.40s)", s->role_arn, s->profile);
    if (te == NULL && sts_reply(r, "AssumeRole", source, &c, &e) == 0) {
        aws_chain_fetched(&p->ch, &c);
        p->role_i++;
        assume_next(p);
        return;
    }
    if (te != NULL) {
        reason_http(reason, sizeof(reason), r, te);
        role_failed(p, te->code, reason);
    } else {
        role_failed(p, e.code, e.msg);
    }
}

/* ---- the machine ----------------------------------------------------------------------------- */

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct aws_credp *p = arg;
    (void)fd;
    (void)what;
    if (p->st != FS_RETRY_WAIT) {
        return;
    }
    switch (p->retry_state) {
    case FS_WEB_IDENTITY:
        send_web_identity(p);
        return;
    case FS_SSO:
        send_sso(p);
        return;
    case FS_CONTAINER:
        send_container(p);
        return;
    case FS_ASSUME:
        send_assume(p);
        return;
    case FS_IDLE:
    case FS_START:
    case FS_READ:
    case FS_PROCESS:
    case FS_RETRY_WAIT:
    case FS_IMDS_TOKEN:
    case FS_IMDS_ROLE:
    case FS_IMDS_CREDS:
        break;
    }
}

static void fetch_advance(struct aws_credp *p)
{
    struct err e = ERR_INIT;
    if (p->st != FS_START) {
        return; /* waiting for a completion */
    }
    /* a new fetch: plan it (local sources are cheap, parsed at startup) */
    p->role_i = 0;
    p->attempt = 0;
    secret_clear(p);
    if (aws_chain_start(&p->ch, p->cfg, p->env, &e) != 0) {
        fetch_done(p, &e);
        return;
    }
    switch (p->ch.next) {
    case AWS_CREDS_READY:
        assume_next(p);
        return;
    case AWS_CREDS_FETCH_WEB_IDENTITY:
        read_file(p, READ_WEB_TOKEN, p->ch.web_identity_token_file, TOKEN_MAX);
        return;
    case AWS_CREDS_FETCH_SSO:
        read_file(p, READ_SSO_CACHE, p->ch.sso.cache_file, SSO_CACHE_MAX);
        return;
    case AWS_CREDS_FETCH_PROCESS:
        start_process(p);
        return;
    case AWS_CREDS_FETCH_CONTAINER:
        if (p->ch.container_auth_token_file != NULL) {
            read_file(p, READ_CONTAINER_TOKEN, p->ch.container_auth_token_file, 16 * 1024);
        } else {
            send_container(p);
        }
        return;
    case AWS_CREDS_FETCH_IMDS:
        p->st = FS_IMDS_TOKEN;
        p->imds_v1 = false;
        imds_send(p, "PUT", "/latest/api/token", on_imds);
        return;
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
    p->o.retry_ms = p->o.retry_ms > 0 ? p->o.retry_ms : 1000;
    p->o.sts_timeout_ms = p->o.sts_timeout_ms > 0 ? p->o.sts_timeout_ms : 10000;
    p->o.process_timeout_ms = p->o.process_timeout_ms > 0 ? p->o.process_timeout_ms : 60000;
    aws_creds_init(&p->creds);
    aws_chain_init(&p->ch);
    p->tail = &p->waiters;
    p->deliver = evtimer_new(p->base, on_deliver, p);
    p->refresh = evtimer_new(p->base, on_refresh, p);
    p->retry = evtimer_new(p->base, on_retry, p);
    if (!p->deliver || !p->refresh || !p->retry) {
        oom_die(event_get_struct_event_size());
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
    aws_job_cancel(p->job); /* a file read or process still running finishes on its own */
    p->job = NULL;
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
    secret_clear(p);
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

const struct aws_config *aws_credp_config(const struct aws_credp *p)
{
    return p->cfg;
}

/* ---- the region from IMDS -------------------------------------------------------------------- */

struct imds_region {
    struct aws_transport *t;
    const char *endpoint;
    bool v1_allowed;
    bool v1;
    int step; /* 0 token, 1 region */
    bool done;
    char token[256];
    char region[64];
    char reason[256];
};

static void imds_region_send(struct imds_region *q);

static void on_imds_region(void *arg, const struct aws_http_resp *r, const struct err *te)
{
    struct imds_region *q = arg;
    if (te != NULL) {
        snprintf(q->reason, sizeof(q->reason), "%.200s", te->msg);
        q->done = true;
        return;
    }
    if (q->step == 0) {
        if (r->status == 200 && r->body.len > 0 && r->body.len < sizeof(q->token)) {
            snprintf(q->token, sizeof(q->token), "%s", r->body.data);
        } else if ((r->status == 403 || r->status == 404 || r->status == 405) && q->v1_allowed) {
            q->v1 = true;
        } else {
            snprintf(q->reason, sizeof(q->reason), "token request: HTTP %ld", r->status);
            q->done = true;
            return;
        }
        q->step = 1;
        imds_region_send(q);
        return;
    }
    size_t n = r->body.len;
    const char *b = r->body.data ? r->body.data : "";
    while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r')) {
        n--;
    }
    if (r->status != 200 || n == 0 || n >= sizeof(q->region)) {
        snprintf(q->reason, sizeof(q->reason), "placement/region: HTTP %ld", r->status);
    } else {
        snprintf(q->region, sizeof(q->region), "%.*s", (int)n, b);
    }
    q->done = true;
}

static void imds_region_send(struct imds_region *q)
{
    struct buf url = BUF_INIT;
    struct err e = ERR_INIT;
    struct aws_header h[1];
    size_t nh = 0;
    if (q->step == 0) {
        buf_addf(&url, "%s/latest/api/token", q->endpoint);
        h[nh++] = (struct aws_header){ "X-aws-ec2-metadata-token-ttl-seconds", "60" };
    } else {
        buf_addf(&url, "%s/latest/meta-data/placement/region", q->endpoint);
        if (!q->v1) {
            h[nh++] = (struct aws_header){ "X-aws-ec2-metadata-token", q->token };
        }
    }
    struct aws_http_req req = {
        q->step == 0 ? "PUT" : "GET", url.data, h, nh, NULL, 0, 1000, 0, 4096
    };
    if (aws_http_send(q->t, &req, on_imds_region, q, &e) != 0) {
        snprintf(q->reason, sizeof(q->reason), "%.200s", e.msg);
        q->done = true;
    }
    buf_release(&url);
}

int aws_config_load(struct aws_config *cfg, const char *const *env, const struct aws_config_opts *o,
                    struct err *e)
{
    struct err first = ERR_INIT;
    struct aws_config_opts with = *o;
    struct imds_region q;
    struct event_base *base = NULL;
    char *imds = NULL;
    int rc = -1;
    if (aws_config_resolve_opts(cfg, env, o, &first) == 0) {
        return 0;
    }
    if (!cfg->region_missing) {
        err_copy(e, &first);
        return -1;
    }
    if (aws_imds_endpoint(env, &imds, e) != 0) {
        return -1;
    }
    if (imds == NULL) {
        return err_set(e, ERRC_INVALID, "%s, EC2 IMDS (AWS_EC2_METADATA_DISABLED=true)", first.msg);
    }
    memset(&q, 0, sizeof(q));
    q.endpoint = imds;
    {
        const char *v1 = aws_env_get(env, "AWS_EC2_METADATA_V1_DISABLED");
        q.v1_allowed = v1 == NULL || strcasecmp(v1, "true") != 0;
    }
    base = event_base_new();
    if (base == NULL || (q.t = aws_transport_new(base, e)) == NULL) {
        if (base == NULL) {
            err_set(e, ERRC_INTERNAL, "cannot create an event loop");
        }
        goto out;
    }
    imds_region_send(&q);
    while (!q.done && event_base_loop(base, EVLOOP_ONCE) == 0) {
    }
    if (!q.done) {
        snprintf(q.reason, sizeof(q.reason), "the event loop failed");
    }
    if (q.region[0] == '\0') {
        err_set(e, ERRC_INVALID, "%s, EC2 IMDS at %s (%s)", first.msg, imds, q.reason);
        goto out;
    }
    with.region = q.region;
    if (aws_config_resolve_opts(cfg, env, &with, e) != 0) {
        err_prefix(e, "region '%.64s' from EC2 IMDS", q.region);
        goto out;
    }
    snprintf(cfg->region_source, sizeof(cfg->region_source), "EC2 IMDS (%s)", imds);
    rc = 0;
out:
    aws_transport_free(q.t);
    if (base != NULL) {
        event_base_free(base);
    }
    OPENSSL_cleanse(q.token, sizeof(q.token));
    xfree(imds);
    return rc;
}
