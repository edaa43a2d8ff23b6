/*
 * Redis Sentinel for both clients (store/store.h, "Sentinel"): hiredis has no Sentinel client, so
 * the primary's address is asked of the sentinels with SENTINEL get-master-addr-by-name, one
 * after the other until one knows it. The synchronous ask is here; the asynchronous one, on the
 * event loop, is in store/async.c.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "core/util.h"
#include "store/store.h"

int store_sentinel_addr(const char *const *v, const size_t *len, size_t n, char *host, size_t cap,
                        int *port)
{
    uint64_t p;
    char num[16];
    if (n != 2 || len[0] == 0 || len[0] >= cap || memchr(v[0], '\0', len[0]) != NULL ||
        len[1] == 0 || len[1] >= sizeof(num)) {
        return -1;
    }
    memcpy(num, v[1], len[1]);
    num[len[1]] = '\0';
    if (str_to_u64(num, &p) != 0 || p == 0 || p > 65535) {
        return -1;
    }
    memcpy(host, v[0], len[0]);
    host[len[0]] = '\0';
    *port = (int)p;
    return 0;
}

bool store_reply_not_primary(const char *err_reply)
{
    /* READONLY: a replica refusing a write (also inside a script); MASTERDOWN: a replica that
     * lost its primary and does not serve stale data */
    return err_reply != NULL &&
           (str_has_prefix(err_reply, "READONLY") || str_has_prefix(err_reply, "MASTERDOWN") ||
            strstr(err_reply, "-READONLY") != NULL);
}

/* One sentinel's answer: 0 and the address, or -1 and why in why. */
static int ask_one(const struct store_url *u, size_t i, int timeout_ms, char *host, size_t cap,
                   int *port, char *why, size_t whycap)
{
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    redisContext *c = redisConnectWithTimeout(u->sentinel[i].host, u->sentinel[i].port, tv);
    redisReply *r = NULL;
    int rc = -1;
    const char *av[] = { "SENTINEL", "get-master-addr-by-name", u->master };
    if (c == NULL || c->err) {
        snprintf(why, whycap, "%s", c ? c->errstr : "cannot allocate");
        goto out;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(why, whycap, "cannot set timeout");
        goto out;
    }
    r = redisCommandArgv(c, 3, av, NULL);
    if (r == NULL) {
        snprintf(why, whycap, "%s", c->errstr[0] ? c->errstr : "no reply");
    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, whycap, "%s", r->str);
    } else if (r->type != REDIS_REPLY_ARRAY) {
        snprintf(why, whycap, "does not know master '%s'", u->master);
    } else {
        const char *v[2] = { NULL, NULL };
        size_t len[2] = { 0, 0 };
        for (size_t k = 0; k < r->elements && k < 2; k++) {
            if (r->element[k]->type == REDIS_REPLY_STRING) {
                v[k] = r->element[k]->str;
                len[k] = (size_t)r->element[k]->len;
            }
        }
        if (r->elements == 2 && v[0] && v[1] &&
            store_sentinel_addr(v, len, 2, host, cap, port) == 0) {
            rc = 0;
        } else {
            snprintf(why, whycap, "bad reply to SENTINEL get-master-addr-by-name");
        }
    }
out:
    if (r) {
        freeReplyObject(r);
    }
    if (c) {
        redisFree(c);
    }
    return rc;
}

int store_sentinel_primary(const struct store_url *u, int timeout_ms, char *host, size_t cap,
                           int *port, struct err *e)
{
    char why[200] = "";
    for (size_t i = 0; i < u->nsentinels; i++) {
        if (ask_one(u, i, timeout_ms, host, cap, port, why, sizeof(why)) == 0) {
            return 0;
        }
    }
    return err_set(e, ERRC_UNAVAILABLE,
                   "redis: no sentinel of %zu gave the primary of '%s' (last: %s:%d: %s)",
                   u->nsentinels, u->master, u->sentinel[u->nsentinels - 1].host,
                   u->sentinel[u->nsentinels - 1].port, why);
}
