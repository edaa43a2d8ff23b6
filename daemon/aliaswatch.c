/*
 * The switch of an issuing alias (cli/cmd_ca_rotate.c) in a running jitrd. Every ALIAS_CHECK_MS
 * each worker reads Redis's alias:gen and alias:ca (one round trip on its loop, async). When the
 * generation moved:
 *   - the new aliases become the worker's at once (api_aliases_switch) when every CA they name
 *     instead of a CA the snapshot serves is loaded in the snapshot already (a rotation prepares
 *     the new CA first: alias:next, loaded by every snapshot build); requests that arrived before
 *     keep the aliases, and so the CA, they started with (each job holds its set);
 *   - and the snapshot is rebuilt (daemon/reload.c: off the loop), which loads what the aliases
 *     name now and drops what is retired; its aliases replace the worker's unless older.
 * A generation whose rebuild failed is retried every ALIAS_RETRY_MS, not at every check. A Redis
 * that does not answer changes nothing.
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/api.h"
#include "store/async.h"
#include "store/store.h"

#define ALIAS_TIMEOUT_MS 1000
#define ALIAS_RETRY_MS   5000

struct aliaswatch {
    struct api *api;
    struct event *timer;
    struct store_async *rs;
    char url[512];
    char host[64];
    bool asking;
    uint64_t asked_gen; /* the generation a rebuild was last started for */
    int64_t asked_ms;
};

void api_aliases_switch(struct api *a, struct aliases *al)
{
    for (size_t i = 0; i < al->n; i++) {
        const char *was = aliases_resolve(a->al, al->names[i]);
        if (strcmp(was, al->cas[i]) != 0) {
            log_info("issuing alias '%s' now names CA '%s' (was '%s')", al->names[i], al->cas[i],
                     was);
        }
    }
    aliases_unref(a->al);
    a->al = al;
}

/* The aliases of the reply without those a CA of the snapshot shadows, or NULL when one names a
 * CA the snapshot has not loaded instead of one it serves. */
static struct aliases *usable(const struct snap *s, const struct aliases *cur,
                              const struct store_reply *h, uint64_t gen)
{
    size_t m = h->n / 2, n = 0;
    char **names = xcalloc(m ? m : 1, sizeof(char *)), **cas = xcalloc(m ? m : 1, sizeof(char *));
    for (size_t i = 0; i < m; i++) {
        const struct store_reply *k = &h->elem[2 * i], *v = &h->elem[2 * i + 1];
        if (k->type != STORE_REPLY_STRING || v->type != STORE_REPLY_STRING) {
            continue;
        }
        char *name = xstrndup(k->str, k->len), *ca = xstrndup(v->str, v->len);
        const struct snap_ca *now = snap_find_ca(s, ca);
        bool shadowed = snap_find_ca(s, name) != NULL;
        bool served = snap_find_ca(s, aliases_resolve(cur, name)) != NULL;
        if (shadowed) {
            xfree(name);
            xfree(ca);
            continue;
        }
        names[n] = name;
        cas[n++] = ca;
        if (served && (now == NULL || now->ctx == NULL)) {
            store_alias_free(names, cas, n);
            return NULL;
        }
    }
    return aliases_new(names, cas, n, gen);
}

static void on_reply(void *arg, const struct store_reply *r, const struct err *e)
{
    struct aliaswatch *w = arg;
    struct api *a = w->api;
    uint64_t gen = 0;
    w->asking = false;
    if (e != NULL) {
        log_debug("alias check: %s", e->msg);
        return;
    }
    if (r->type != STORE_REPLY_ARRAY || r->n != 2 || r->elem[1].type != STORE_REPLY_ARRAY) {
        return;
    }
    if (r->elem[0].type == STORE_REPLY_STRING) {
        char tmp[32];
        size_t l = r->elem[0].len < 31 ? r->elem[0].len : 31;
        snprintf(tmp, sizeof(tmp), "%.*s", (int)l, r->elem[0].str);
        if (str_to_u64(tmp, &gen) != 0) {
            return;
        }
    }
    if (gen == a->al->gen) {
        return;
    }
    /* The generation only grows, except when Redis lost its data: then it starts again from 0
     * (no alias at all) until the index rebuild restores the aliases from the audit log (and
     * counts from 1). Below ours, an empty table is that gap: the last one known serves on; a
     * table is Redis's again, whatever its number. */
    if (gen < a->al->gen && r->elem[1].n == 0) {
        return;
    }
    {
        struct aliases *al = usable(a->snap, a->al, &r->elem[1], gen);
        if (al != NULL) {
            api_aliases_switch(a, al);
        }
    }
    int64_t now = time_now_ms();
    if (gen == a->snap->al->gen || (gen == w->asked_gen && now - w->asked_ms < ALIAS_RETRY_MS)) {
        return; /* the snapshot has it, or its rebuild runs or failed a moment ago */
    }
    w->asked_gen = gen;
    w->asked_ms = now;
    log_info("issuing aliases changed (generation %llu, snapshot's %llu): rebuilding the snapshot",
             (unsigned long long)gen, (unsigned long long)a->snap->al->gen);
    api_reload_start(a);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct aliaswatch *w = arg;
    struct api *a = w->api;
    struct err e = ERR_INIT;
    (void)fd;
    (void)what;
    if (w->asking) {
        return;
    }
    if (w->rs == NULL || strcmp(w->url, a->snap->conf->redis_url) != 0) {
        store_async_free(w->rs);
        snprintf(w->url, sizeof(w->url), "%s", a->snap->conf->redis_url);
        if ((w->rs = store_async_new(a->base, w->url, &e)) == NULL) {
            log_error("alias check: %s", e.msg);
            return;
        }
    }
    /* one script: what this worker has loaded (for jitrctl ca rotate's wait), and the
     * generation and the mapping of the same moment */
    char seen[160], sgen[24];
    snprintf(seen, sizeof(seen), STORE_PREFIX STORE_ALIASES_SEEN "%s:%ld", w->host, (long)getpid());
    snprintf(sgen, sizeof(sgen), "%llu", (unsigned long long)a->snap->al->gen);
    const char *av[] = { "EVAL",
                         "redis.call('SET', KEYS[3], ARGV[1], 'PX', 3000) "
                         "return {redis.call('GET', KEYS[1]), redis.call('HGETALL', KEYS[2])}",
                         "3",
                         STORE_PREFIX STORE_ALIASES_GEN,
                         STORE_PREFIX STORE_ALIASES,
                         seen,
                         sgen };
    w->asking = true;
    if (store_async_cmd(w->rs, 7, av, NULL, ALIAS_TIMEOUT_MS, on_reply, w, &e) != 0) {
        w->asking = false;
        log_debug("alias check: %s", e.msg);
    }
}

struct aliaswatch *aliaswatch_new(struct api *a)
{
    struct aliaswatch *w = xcalloc(1, sizeof(*w));
    struct timeval tv = { ALIAS_CHECK_MS / 1000, (ALIAS_CHECK_MS % 1000) * 1000 };
    w->api = a;
    if (gethostname(w->host, sizeof(w->host)) != 0) {
        snprintf(w->host, sizeof(w->host), "localhost");
    }
    w->host[sizeof(w->host) - 1] = '\0';
    w->timer = event_new(a->base, -1, EV_PERSIST, on_timer, w);
    if (w->timer == NULL || event_add(w->timer, &tv) != 0) {
        aliaswatch_free(w);
        return NULL;
    }
    return w;
}

void aliaswatch_free(struct aliaswatch *w)
{
    if (w == NULL) {
        return;
    }
    if (w->timer) {
        event_free(w->timer);
    }
    store_async_free(w->rs); /* a check in flight completes now, canceled */
    xfree(w);
}
