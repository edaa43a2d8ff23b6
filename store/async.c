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
    struct sa_op *prev, *next;
};

struct store_async {
    struct event_base *base;
    struct store_url url;
    char display[300];
    redisAsyncContext *ac;
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
        s->ac = NULL; /* hiredis frees the context after this callback */
    }
}

static void sa_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct store_async *s = ac->data;
    if (status != REDIS_OK) {
        snprintf(s->last_error, sizeof(s->last_error), "%s", ac->errstr);
    }
    s->ac = NULL;
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

struct store_async *store_async_new(struct event_base *base, const char *url, struct err *e)
{
    struct store_async *s = xcalloc(1, sizeof(*s));
    if (store_url_parse(url, &s->url, e) != 0) {
        xfree(s);
        return NULL;
    }
    s->base = base;
    store_url_display(&s->url, s->display, sizeof(s->display));
    return s;
}

static void sa_release(struct store_async *s)
{
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
    if (sa_connect(s, e) != 0) {
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
    if (redisAsyncCommandArgv(s->ac, sa_on_reply, op, argc, av, avlen) != REDIS_OK) {
        err_set(e, ERRC_UNAVAILABLE, "redis at %s: cannot send the command: %s", s->display,
                s->ac->errstr[0] ? s->ac->errstr : "connection closing");
        event_free(op->timer);
        xfree(op);
        return NULL;
    }
    op->hiredis_owned = true;
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
