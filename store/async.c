/*
 * hiredis 0.14.1 async on libevent (store/async.h). Each command is a struct sa_op with two
 * owners: hiredis (until its reply callback runs, which it always does, with a NULL reply when
 * the connection dies or the context is freed) and the caller's view (until the user callback
 * has run: reply, timeout or cancel). The op is freed when both are done, so a late reply after
 * a timeout finds it alive and is ignored. User callbacks run with s->depth raised; a
 * store_async_free from inside one defers redisAsyncFree to the loop, because 0.14.1's adapter
 * and async.c must not free the context they are executing (fixed only in hiredis 1.0).
 */
#include "store/async.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/mem.h"
#include "store/store.h"

/* Sentinel: how long one sentinel may take to answer before the next is asked. */
#define STORE_ASYNC_SENTINEL_MS 1000

enum sa_kind {
    SA_BUCKET,
    SA_DONE,
    SA_REPLY
};

struct sa_op {
    struct store_async *s;
    enum sa_kind kind;
    store_bucket_cb *bucket_cb;
    store_done_cb *done_cb;
    store_reply_cb *reply_cb;
    const struct store_reply *reply; /* SA_REPLY: the converted reply while the callback runs */
    void *arg;
    struct event *timer;
    int timeout_ms;
    bool completed;     /* the user callback has run */
    bool hiredis_owned; /* hiredis still holds it (reply callback pending) */
    char *pending;      /* the command (RESP) waiting for a checked primary (Sentinel) */
    size_t pending_len;
    struct sa_op *prev, *next;
};

struct store_async {
    struct event_base *base;
    struct store_url url;
    char url_display[300]; /* the URL without password */
    char display[600];     /* that and, with Sentinel, the primary in use */
    redisAsyncContext *ac;
    /* Sentinel (url.master set): ac is usable once ROLE said "master" (verified); until then
     * commands wait as their op's pending text. sac is the sentinel being asked (sidx the
     * sentinel's index, ask_timer its deadline); role_ac the connection whose ROLE is awaited. */
    bool verified;
    redisAsyncContext *sac;
    size_t sidx;
    struct event *ask_timer;
    redisAsyncContext *role_ac;
    char auth_error[160]; /* AUTH's error reply on role_ac */
    char last_error[160];
    struct sa_op *ops; /* not completed yet */
    int depth;         /* user callbacks running */
    bool freeing;
};

static void sa_list_remove(struct store_async *s, struct sa_op *op)
{
    if (op->prev) {
        op->prev->next = op->next;
    } else if (s->ops == op) {
        s->ops = op->next;
    }
    if (op->next) {
        op->next->prev = op->prev;
    }
    op->prev = op->next = NULL;
}

static void sa_op_maybe_free(struct sa_op *op)
{
    if (op->completed && !op->hiredis_owned) {
        if (op->timer) {
            event_free(op->timer);
        }
        if (op->pending) {
            redisFreeCommand(op->pending);
        }
        xfree(op);
    }
}

/* Runs the user callback once; r/e describe the outcome. */
static void sa_complete(struct sa_op *op, bool allowed, int64_t wait_ms, const struct err *e)
{
    struct store_async *s = op->s;
    if (op->completed) {
        return;
    }
    op->completed = true;
    sa_list_remove(s, op);
    if (op->timer) {
        event_del(op->timer);
    }
    s->depth++;
    if (op->kind == SA_BUCKET) {
        op->bucket_cb(op->arg, allowed, wait_ms, e);
    } else if (op->kind == SA_REPLY) {
        op->reply_cb(op->arg, e ? NULL : op->reply, e);
    } else {
        op->done_cb(op->arg, e);
    }
    s->depth--;
}

static void sa_fail(struct sa_op *op, enum err_code code, const char *what)
{
    struct err e = ERR_INIT;
    err_set(&e, code, "redis at %s: %s", op->s->display, what);
    sa_complete(op, false, 0, &e);
}

/* hiredis reply -> store_reply (strings borrowed from the hiredis reply, arrays allocated). */
static void sa_convert(const redisReply *r, struct store_reply *out)
{
    memset(out, 0, sizeof(*out));
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        out->type = STORE_REPLY_STRING;
        out->str = r->str;
        out->len = r->len > 0 ? (size_t)r->len : 0;
        break;
    case REDIS_REPLY_INTEGER:
        out->type = STORE_REPLY_INTEGER;
        out->integer = r->integer;
        break;
    case REDIS_REPLY_ARRAY: {
        struct store_reply *el = NULL;
        out->type = STORE_REPLY_ARRAY;
        if (r->elements > 0) {
            el = xcalloc(r->elements, sizeof(*el));
            for (size_t i = 0; i < r->elements; i++) {
                sa_convert(r->element[i], &el[i]);
            }
        }
        out->elem = el;
        out->n = r->elements;
        break;
    }
    default:
        out->type = STORE_REPLY_NIL;
        break;
    }
}

static void sa_convert_release(struct store_reply *r)
{
    if (r->type == STORE_REPLY_ARRAY && r->elem) {
        struct store_reply *el = (struct store_reply *)(uintptr_t)r->elem;
        for (size_t i = 0; i < r->n; i++) {
            sa_convert_release(&el[i]);
        }
        xfree(el);
    }
}

static void sa_on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct sa_op *op = priv;
    redisReply *reply = r;
    op->hiredis_owned = false;
    if (op->completed) {
        sa_op_maybe_free(op);
        return;
    }
    if (reply == NULL) {
        const char *why = ac->errstr[0] ? ac->errstr : op->s->last_error;
        char msg[200];
        snprintf(msg, sizeof(msg), "unreachable: %s", why[0] ? why : "connection closed");
        sa_fail(op, ERRC_UNAVAILABLE, msg);
    } else if (reply->type == REDIS_REPLY_ERROR) {
        struct err e = ERR_INIT;
        if (op->s->url.master[0] && op->s->ac == ac && store_reply_not_primary(reply->str)) {
            /* the primary became a replica: the next command asks the sentinels again */
            op->s->ac = NULL;
            op->s->verified = false;
            redisAsyncDisconnect(ac);
        }
        err_set(&e, ERRC_UNAVAILABLE, "redis at %s: %s", op->s->display, reply->str);
        snprintf(e.detail, sizeof(e.detail), "%s", reply->str);
        sa_complete(op, false, 0, &e);
    } else if (op->kind == SA_REPLY) {
        struct store_reply conv;
        sa_convert(reply, &conv);
        op->reply = &conv;
        sa_complete(op, false, 0, NULL);
        op->reply = NULL;
        sa_convert_release(&conv);
    } else if (op->kind == SA_BUCKET) {
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
            reply->element[0]->type != REDIS_REPLY_INTEGER ||
            reply->element[1]->type != REDIS_REPLY_INTEGER) {
            sa_fail(op, ERRC_UNAVAILABLE, "bad token-bucket reply");
        } else {
            sa_complete(op, reply->element[0]->integer == 1, (int64_t)reply->element[1]->integer,
                        NULL);
        }
    } else {
        sa_complete(op, false, 0, NULL);
    }
    sa_op_maybe_free(op);
}

static void sa_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct sa_op *op = arg;
    char msg[64];
    (void)fd;
    (void)what;
    snprintf(msg, sizeof(msg), "no answer within %d ms", op->timeout_ms);
    sa_fail(op, ERRC_TIMEOUT, msg);
    sa_op_maybe_free(op);
}

static void sa_on_connect(const redisAsyncContext *ac, int status)
{
    struct store_async *s = ac->data;
    if (status != REDIS_OK) {
        snprintf(s->last_error, sizeof(s->last_error), "%s", ac->errstr);
        if (s->ac == ac) {
            s->ac = NULL; /* hiredis frees the context after this callback */
            s->verified = false;
        }
    }
}

static void sa_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct store_async *s = ac->data;
    if (status != REDIS_OK) {
        snprintf(s->last_error, sizeof(s->last_error), "%s", ac->errstr);
    }
    if (s->ac == ac) {
        s->ac = NULL;
        s->verified = false;
    }
}

static void sa_on_role(redisAsyncContext *ac, void *r, void *priv);

static void sa_on_auth(redisAsyncContext *ac, void *r, void *priv)
{
    struct store_async *s = priv;
    redisReply *reply = r;
    if (s->role_ac == ac && reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        snprintf(s->auth_error, sizeof(s->auth_error), "%s", reply->str);
    }
}

static int sa_connect(struct store_async *s, struct err *e)
{
    redisAsyncContext *ac = NULL;
    if (s->ac != NULL) {
        return 0;
    }
    s->last_error[0] = '\0';
    if (s->url.path[0]) {
        ac = redisAsyncConnectUnix(s->url.path);
    } else {
        ac = redisAsyncConnect(s->url.host, s->url.port);
    }
    if (ac == NULL) {
        oom_die(sizeof(*ac));
    }
    if (ac->err) {
        err_set(e, ERRC_UNAVAILABLE, "redis at %s is unreachable: %s", s->display, ac->errstr);
        redisAsyncFree(ac);
        return -1;
    }
    ac->data = s;
    if (redisLibeventAttach(ac, s->base) != REDIS_OK) {
        redisAsyncFree(ac);
        return err_set(e, ERRC_INTERNAL, "redis: cannot attach to the event loop");
    }
    redisAsyncSetConnectCallback(ac, sa_on_connect);
    redisAsyncSetDisconnectCallback(ac, sa_on_disconnect);
    s->ac = ac;
    s->verified = s->url.master[0] == '\0';
    if (!s->verified) {
        /* AUTH, ROLE, SELECT: the commands waiting are sent once ROLE says "master" */
        s->role_ac = ac;
        s->auth_error[0] = '\0';
        if (s->url.password[0]) {
            const char *av[] = { "AUTH", s->url.password };
            redisAsyncCommandArgv(ac, sa_on_auth, s, 2, av, NULL);
        }
        const char *av[] = { "ROLE" };
        redisAsyncCommandArgv(ac, sa_on_role, s, 1, av, NULL);
        if (s->url.db != 0) {
            char db[16];
            snprintf(db, sizeof(db), "%d", s->url.db);
            const char *sv[] = { "SELECT", db };
            redisAsyncCommandArgv(ac, NULL, NULL, 2, sv, NULL);
        }
        return 0;
    }
    if (s->url.password[0]) {
        const char *av[] = { "AUTH", s->url.password };
        redisAsyncCommandArgv(ac, NULL, NULL, 2, av, NULL);
    }
    if (s->url.db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", s->url.db);
        const char *av[] = { "SELECT", db };
        redisAsyncCommandArgv(ac, NULL, NULL, 2, av, NULL);
    }
    return 0;
}

/* ---- Sentinel: the ask, the check, the commands waiting ---- */

/* Fails every command waiting for a primary (ERRC_UNAVAILABLE, why). Their callbacks may send
 * again: those wait for a new ask. */
static void sa_pending_fail(struct store_async *s, const char *why)
{
    struct sa_op *waiting = NULL;
    for (struct sa_op *op = s->ops, *next; op; op = next) {
        next = op->next;
        if (op->pending && !op->completed) {
            sa_list_remove(s, op);
            op->next = waiting;
            waiting = op;
        }
    }
    while (waiting) {
        struct sa_op *op = waiting;
        waiting = op->next;
        op->next = NULL;
        struct err e = ERR_INIT;
        err_set(&e, ERRC_UNAVAILABLE, "redis at %s: %s", s->display, why);
        /* sa_complete takes it off the list it is no longer on: a no-op */
        sa_complete(op, false, 0, &e);
        sa_op_maybe_free(op);
    }
}

/* Sends the commands waiting, oldest first, on the checked primary. */
static void sa_pending_flush(struct store_async *s)
{
    struct sa_op *op = s->ops;
    while (op && op->next) {
        op = op->next;
    }
    for (struct sa_op *prev; op && !s->freeing; op = prev) {
        prev = op->prev;
        if (op->pending == NULL || op->completed) {
            continue;
        }
        int rc = redisAsyncFormattedCommand(s->ac, sa_on_reply, op, op->pending, op->pending_len);
        redisFreeCommand(op->pending);
        op->pending = NULL;
        if (rc == REDIS_OK) {
            op->hiredis_owned = true;
        } else {
            sa_fail(op, ERRC_UNAVAILABLE, "cannot send the command: connection closing");
            sa_op_maybe_free(op);
        }
    }
}

static void sa_set_display(struct store_async *s)
{
    if (s->url.master[0] && s->url.host[0]) {
        snprintf(s->display, sizeof(s->display), "%s (primary %s:%d)", s->url_display, s->url.host,
                 s->url.port);
    } else {
        snprintf(s->display, sizeof(s->display), "%s", s->url_display);
    }
}

static void sa_on_role(redisAsyncContext *ac, void *r, void *priv)
{
    struct store_async *s = priv;
    redisReply *reply = r;
    if (s->role_ac != ac) {
        return; /* the client is being freed */
    }
    s->role_ac = NULL;
    if (s->auth_error[0] == '\0' && reply != NULL && reply->type == REDIS_REPLY_ARRAY &&
        reply->elements >= 1 && reply->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(reply->element[0]->str, "master") == 0 && s->ac == ac) {
        s->verified = true;
        sa_pending_flush(s);
        return;
    }
    char why[200];
    if (s->auth_error[0]) {
        snprintf(why, sizeof(why), "AUTH: %s", s->auth_error);
    } else if (reply == NULL) {
        snprintf(why, sizeof(why), "unreachable: %s",
                 ac->errstr[0] ? ac->errstr
                               : (s->last_error[0] ? s->last_error : "connection closed"));
    } else if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%s", reply->str);
    } else {
        snprintf(why, sizeof(why),
                 "the server the sentinels named is not a primary (a failover is in progress)");
    }
    if (s->ac == ac) {
        s->ac = NULL;
        s->verified = false;
    }
    if (reply != NULL) {
        redisAsyncDisconnect(ac);
    }
    sa_pending_fail(s, why);
}

static int sa_ask_next(struct store_async *s);

/* The ask's end: the primary's address (host non-NULL) or one more sentinel failed. */
static void sa_ask_done(struct store_async *s, const char *host, int port, const char *why)
{
    if (s->freeing) {
        return; /* its commands were canceled; the release is due */
    }
    if (host != NULL) {
        struct err e = ERR_INIT;
        snprintf(s->url.host, sizeof(s->url.host), "%s", host);
        s->url.port = port;
        sa_set_display(s);
        if (sa_connect(s, &e) != 0) {
            sa_pending_fail(s, e.msg);
        }
        return;
    }
    snprintf(s->last_error, sizeof(s->last_error), "sentinel %.64s:%d: %.80s",
             s->url.sentinel[s->sidx].host, s->url.sentinel[s->sidx].port, why);
    s->sidx++;
    if (sa_ask_next(s) != 0) {
        char msg[400];
        snprintf(msg, sizeof(msg), "no sentinel gave the primary of '%s' (last: %s)", s->url.master,
                 s->last_error);
        sa_pending_fail(s, msg);
    }
}

static void sa_on_ask(redisAsyncContext *ac, void *r, void *priv)
{
    struct store_async *s = priv;
    redisReply *reply = r;
    char host[256];
    int port = 0;
    if (s->sac != ac) {
        return; /* abandoned: timed out, or the client is being freed */
    }
    s->sac = NULL;
    evtimer_del(s->ask_timer);
    if (reply == NULL) {
        sa_ask_done(s, NULL, 0, ac->errstr[0] ? ac->errstr : "connection closed");
        return;
    }
    redisAsyncDisconnect(ac); /* after this callback: one question per connection */
    if (reply->type == REDIS_REPLY_ERROR) {
        sa_ask_done(s, NULL, 0, reply->str);
        return;
    }
    const char *v[2] = { NULL, NULL };
    size_t len[2] = { 0, 0 };
    for (size_t k = 0; reply->type == REDIS_REPLY_ARRAY && k < reply->elements && k < 2; k++) {
        if (reply->element[k]->type == REDIS_REPLY_STRING) {
            v[k] = reply->element[k]->str;
            len[k] = (size_t)reply->element[k]->len;
        }
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 && v[0] && v[1] &&
        store_sentinel_addr(v, len, 2, host, sizeof(host), &port) == 0) {
        sa_ask_done(s, host, port, NULL);
    } else if (reply->type == REDIS_REPLY_NIL) {
        sa_ask_done(s, NULL, 0, "does not know that master");
    } else {
        sa_ask_done(s, NULL, 0, "bad reply to SENTINEL get-master-addr-by-name");
    }
}

static void sa_on_sentinel_disconnect(const redisAsyncContext *ac, int status)
{
    struct store_async *s = ac->data;
    (void)status;
    if (s->sac == ac) {
        s->sac = NULL; /* the reply callback has run already (NULL reply) */
    }
}

static void sa_on_ask_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct store_async *s = arg;
    redisAsyncContext *ac = s->sac;
    (void)fd;
    (void)what;
    if (ac == NULL) {
        return;
    }
    s->sac = NULL;
    redisAsyncFree(ac); /* its reply callback finds it abandoned */
    sa_ask_done(s, NULL, 0, "no answer in time");
}

/* Asks sentinel sidx, or the next one that can be connected to; -1 when none is left
 * (s->last_error says why the last one failed). */
static int sa_ask_next(struct store_async *s)
{
    for (; s->sidx < s->url.nsentinels; s->sidx++) {
        redisAsyncContext *ac =
            redisAsyncConnect(s->url.sentinel[s->sidx].host, s->url.sentinel[s->sidx].port);
        if (ac == NULL) {
            oom_die(sizeof(*ac));
        }
        if (ac->err) {
            snprintf(s->last_error, sizeof(s->last_error), "sentinel %.64s:%d: %.80s",
                     s->url.sentinel[s->sidx].host, s->url.sentinel[s->sidx].port, ac->errstr);
            redisAsyncFree(ac);
            continue;
        }
        ac->data = s;
        if (redisLibeventAttach(ac, s->base) != REDIS_OK) {
            redisAsyncFree(ac);
            snprintf(s->last_error, sizeof(s->last_error), "cannot attach to the event loop");
            return -1;
        }
        redisAsyncSetDisconnectCallback(ac, sa_on_sentinel_disconnect);
        const char *av[] = { "SENTINEL", "get-master-addr-by-name", s->url.master };
        s->sac = ac;
        if (redisAsyncCommandArgv(ac, sa_on_ask, s, 3, av, NULL) != REDIS_OK) {
            s->sac = NULL;
            redisAsyncFree(ac);
            continue;
        }
        struct timeval tv = { STORE_ASYNC_SENTINEL_MS / 1000,
                              (STORE_ASYNC_SENTINEL_MS % 1000) * 1000 };
        evtimer_add(s->ask_timer, &tv);
        return 0;
    }
    return -1;
}

struct store_async *store_async_new(struct event_base *base, const char *url, struct err *e)
{
    struct store_async *s = xcalloc(1, sizeof(*s));
    if (store_url_parse(url, &s->url, e) != 0) {
        xfree(s);
        return NULL;
    }
    s->base = base;
    store_url_display(&s->url, s->url_display, sizeof(s->url_display));
    sa_set_display(s);
    if (s->url.master[0] && (s->ask_timer = evtimer_new(base, sa_on_ask_timeout, s)) == NULL) {
        oom_die(event_get_struct_event_size());
    }
    return s;
}

const char *store_async_server(const struct store_async *s)
{
    return s->display;
}

static void sa_release(struct store_async *s)
{
    s->role_ac = NULL;
    if (s->sac) {
        redisAsyncContext *ac = s->sac;
        s->sac = NULL;
        redisAsyncFree(ac);
    }
    if (s->ask_timer) {
        event_free(s->ask_timer);
    }
    if (s->ac) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        redisAsyncFree(ac); /* outstanding replies arrive as NULL and free their ops */
    }
    OPENSSL_cleanse(s->url.password, sizeof(s->url.password));
    xfree(s);
}

static void sa_deferred_free(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sa_release(arg);
}

void store_async_free(struct store_async *s)
{
    if (s == NULL || s->freeing) {
        return;
    }
    s->freeing = true;
    while (s->ops) {
        struct sa_op *op = s->ops;
        struct err e = ERR_INIT;
        err_set(&e, ERRC_CANCELED, "redis at %s: canceled", s->display);
        sa_complete(op, false, 0, &e);
        sa_op_maybe_free(op);
    }
    if (s->depth > 0 && event_base_once(s->base, -1, EV_TIMEOUT, sa_deferred_free, s, NULL) == 0) {
        return;
    }
    sa_release(s);
}

static struct sa_op *sa_send(struct store_async *s, enum sa_kind kind, int argc, const char **av,
                             const size_t *avlen, int timeout_ms, struct err *e)
{
    struct sa_op *op = NULL;
    if (s->freeing) {
        err_set(e, ERRC_CANCELED, "redis at %s: client is being freed", s->display);
        return NULL;
    }
    if (timeout_ms <= 0) {
        err_set(e, ERRC_INVALID, "redis command timeout must be positive");
        return NULL;
    }
    if (s->url.master[0]) {
        if (s->ac == NULL && s->sac == NULL) {
            /* no primary: ask the sentinels (the command waits for the answer and the check) */
            s->sidx = 0;
            if (sa_ask_next(s) != 0) {
                err_set(e, ERRC_UNAVAILABLE, "redis at %s: no sentinel reachable (last: %s)",
                        s->display, s->last_error);
                return NULL;
            }
        }
    } else if (sa_connect(s, e) != 0) {
        return NULL;
    }
    op = xcalloc(1, sizeof(*op));
    op->s = s;
    op->kind = kind;
    op->timeout_ms = timeout_ms;
    op->timer = evtimer_new(s->base, sa_on_timeout, op);
    if (op->timer == NULL) {
        oom_die(event_get_struct_event_size());
    }
    if (!s->verified) {
        int len = redisFormatCommandArgv(&op->pending, argc, av, avlen);
        if (len < 0) {
            oom_die((size_t)argc);
        }
        op->pending_len = (size_t)len;
    } else if (redisAsyncCommandArgv(s->ac, sa_on_reply, op, argc, av, avlen) != REDIS_OK) {
        err_set(e, ERRC_UNAVAILABLE, "redis at %s: cannot send the command: %s", s->display,
                s->ac->errstr[0] ? s->ac->errstr : "connection closing");
        event_free(op->timer);
        xfree(op);
        return NULL;
    }
    op->hiredis_owned = op->pending == NULL; /* a command waiting is hiredis's once sent */
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    evtimer_add(op->timer, &tv);
    op->next = s->ops;
    if (s->ops) {
        s->ops->prev = op;
    }
    s->ops = op;
    return op;
}

int store_async_bucket_take(struct store_async *s, const char *name, double rate, double burst,
                            double cost, int timeout_ms, store_bucket_cb *cb, void *arg,
                            struct err *e)
{
    char r[64], b[64], c[64];
    struct buf key = BUF_INIT;
    struct sa_op *op = NULL;
    if (!(rate > 0) || !(cost > 0) || !(burst >= cost) || name == NULL || name[0] == '\0') {
        return err_set(e, ERRC_INVALID,
                       "bucket '%s': rate and cost must be positive and burst at least the cost",
                       name ? name : "");
    }
    snprintf(r, sizeof(r), "%.6f", rate);
    snprintf(b, sizeof(b), "%.6f", burst);
    snprintf(c, sizeof(c), "%.6f", cost);
    buf_addf(&key, STORE_PREFIX "bucket:%s", name);
    const char *av[] = { "EVAL", store_bucket_lua, "1", key.data, r, b, c };
    op = sa_send(s, SA_BUCKET, 7, av, NULL, timeout_ms, e);
    buf_release(&key);
    if (op == NULL) {
        return -1;
    }
    op->bucket_cb = cb;
    op->arg = arg;
    return 0;
}

int store_async_hset(struct store_async *s, const char *key, const char *const *fv, size_t n,
                     int timeout_ms, store_done_cb *cb, void *arg, struct err *e)
{
    struct buf k = BUF_INIT;
    const char **av = NULL;
    struct sa_op *op = NULL;
    if (n == 0 || n % 2 != 0 || n > 256 || key == NULL || key[0] == '\0') {
        return err_set(e, ERRC_INVALID, "HSET needs a key and field/value pairs");
    }
    buf_addf(&k, STORE_PREFIX "%s", key);
    av = xcalloc(n + 2, sizeof(*av));
    av[0] = "HSET";
    av[1] = k.data;
    for (size_t i = 0; i < n; i++) {
        av[i + 2] = fv[i];
    }
    op = sa_send(s, SA_DONE, (int)(n + 2), av, NULL, timeout_ms, e);
    xfree(av);
    buf_release(&k);
    if (op == NULL) {
        return -1;
    }
    op->done_cb = cb;
    op->arg = arg;
    return 0;
}

int store_async_cmd(struct store_async *s, int argc, const char *const *argv, const size_t *avlen,
                    int timeout_ms, store_reply_cb *cb, void *arg, struct err *e)
{
    struct sa_op *op = NULL;
    if (argc <= 0 || argv == NULL || cb == NULL) {
        return err_set(e, ERRC_INVALID, "redis command needs arguments and a callback");
    }
    op = sa_send(s, SA_REPLY, argc, (const char **)(uintptr_t)argv, avlen, timeout_ms, e);
    if (op == NULL) {
        return -1;
    }
    op->reply_cb = cb;
    op->arg = arg;
    return 0;
}
