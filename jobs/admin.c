/*
 * jitrctl's view of the job engine (status, dead letters, a job's record): short synchronous
 * sequences of Redis commands on a private event loop with the async client. Nothing here runs
 * inside jitrd.
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "core/mem.h"
#include "core/util.h"
#include "jobs/jobs.h"
#include "store/store.h"

static void on_reply(void *arg, const struct store_reply *r, const struct err *e)
{
    struct jobs_admin *a = arg;
    a->done = true;
    if (e != NULL) {
        err_copy(&a->err, e);
    } else {
        a->reply = jobs_reply_json(r);
        a->reply = a->reply ? a->reply : json_null();
    }
}

json_t *jobs_admin_cmd(struct jobs_admin *a, int argc, const char *const *argv, struct err *e)
{
    a->done = false;
    a->reply = NULL;
    err_clear(&a->err);
    if (store_async_cmd(a->s, argc, argv, NULL, 5000, on_reply, a, e) != 0) {
        return NULL;
    }
    while (!a->done && event_base_loop(a->base, EVLOOP_ONCE) >= 0) {
    }
    if (a->reply == NULL) {
        err_copy(e, &a->err);
    }
    return a->reply;
}

int jobs_admin_open(struct jobs_admin *a, const char *redis_url, struct err *e)
{
    memset(a, 0, sizeof(*a));
    a->base = event_base_new();
    if (a->base == NULL) {
        return err_set(e, ERRC_INTERNAL, "cannot create an event loop");
    }
    a->s = store_async_new(a->base, redis_url, e);
    return a->s ? 0 : -1;
}

void jobs_admin_close(struct jobs_admin *a)
{
    store_async_free(a->s);
    if (a->base) {
        event_base_free(a->base);
    }
}

json_t *jobs_admin_pairs(const json_t *arr)
{
    json_t *o = json_object();
    for (size_t i = 0; i + 1 < json_array_size(arr); i += 2) {
        const char *k = json_string_value(json_array_get(arr, i));
        if (k) {
            json_object_set(o, k, json_array_get(arr, i + 1));
        }
    }
    return o;
}

static int kind_arg(const char *kind, const struct jobs_kind **out, struct err *e)
{
    *out = NULL;
    if (kind != NULL && (*out = jobs_kind_find(kind)) == NULL) {
        struct buf names = BUF_INIT;
        for (size_t i = 0; i < jobs_nkinds; i++) {
            buf_addf(&names, "%s%s", i ? ", " : "", jobs_kinds[i]->name);
        }
        err_set(e, ERRC_INVALID, "unknown job kind '%.64s' (kinds: %s)", kind, names.data);
        buf_release(&names);
        return -1;
    }
    return 0;
}

static json_int_t int_of(json_t *v)
{
    if (json_is_integer(v)) {
        return json_integer_value(v);
    }
    if (json_is_string(v)) {
        uint64_t u = 0;
        if (str_to_u64(json_string_value(v), &u) == 0) {
            return (json_int_t)u;
        }
    }
    return 0;
}

int jobs_admin_status(const char *redis_url, json_t **out, struct err *e)
{
    struct jobs_admin a;
    json_t *kinds = json_array();
    int rc = -1;
    *out = NULL;
    if (jobs_admin_open(&a, redis_url, e) != 0) {
        goto out;
    }
    for (size_t i = 0; i < jobs_nkinds; i++) {
        const struct jobs_kind *k = jobs_kinds[i];
        char stream[160], due[160], dlq[160], done[96];
        json_int_t queued = 0, pending = 0;
        json_t *r;
        jobs_key_stream(k, stream, sizeof(stream));
        jobs_key_due(k, due, sizeof(due));
        jobs_key_dlq(k, dlq, sizeof(dlq));
        {
            const char *av[] = { "EXISTS", stream };
            if ((r = jobs_admin_cmd(&a, 2, av, e)) == NULL) {
                goto out;
            }
        }
        if (int_of(r) > 0) {
            json_t *g, *x;
            size_t gi;
            const char *av[] = { "XINFO", "GROUPS", stream };
            json_decref(r);
            if ((r = jobs_admin_cmd(&a, 3, av, e)) == NULL) {
                goto out;
            }
            json_array_foreach(r, gi, x)
            {
                g = jobs_admin_pairs(x);
                const char *gname = json_string_value(json_object_get(g, "name"));
                if (gname != NULL && strcmp(gname, JOBS_GROUP) == 0) {
                    pending = int_of(json_object_get(g, "pending"));
                    queued = int_of(json_object_get(g, "lag"));
                }
                json_decref(g);
            }
            if (json_array_size(r) == 0) {
                const char *xl[] = { "XLEN", stream };
                json_t *n = jobs_admin_cmd(&a, 2, xl, e);
                if (n == NULL) {
                    json_decref(r);
                    goto out;
                }
                queued = int_of(n);
                json_decref(n);
            }
        }
        json_decref(r);
        json_t *o = json_pack("{s:s,s:s,s:I,s:I}", "kind", k->name, "description", k->description,
                              "queued", queued, "in_flight", pending);
        json_array_append_new(kinds, o);
        {
            const char *av[] = { "ZCARD", due };
            if ((r = jobs_admin_cmd(&a, 2, av, e)) == NULL) {
                goto out;
            }
            json_object_set_new(o, "due", json_integer(int_of(r)));
            json_decref(r);
        }
        snprintf(done, sizeof(done), "%s:done", k->name);
        {
            const char *av[] = { "HGET", STORE_PREFIX "jobs:stats", done };
            if ((r = jobs_admin_cmd(&a, 3, av, e)) == NULL) {
                goto out;
            }
            json_object_set_new(o, "done", json_integer(int_of(r)));
            json_decref(r);
        }
        {
            const char *av[] = { "XLEN", dlq };
            if ((r = jobs_admin_cmd(&a, 2, av, e)) == NULL) {
                goto out;
            }
            json_object_set_new(o, "dead", json_integer(int_of(r)));
            json_decref(r);
        }
    }
    *out = json_pack("{s:O}", "kinds", kinds);
    rc = 0;
out:
    json_decref(kinds);
    jobs_admin_close(&a);
    return rc;
}

/* The dead letters of k, appended to list. */
static int dlq_of(struct jobs_admin *a, const struct jobs_kind *k, json_t *list, struct err *e)
{
    char dlq[160];
    json_t *r, *ent;
    size_t i;
    jobs_key_dlq(k, dlq, sizeof(dlq));
    const char *av[] = { "XRANGE", dlq, "-", "+" };
    if ((r = jobs_admin_cmd(a, 4, av, e)) == NULL) {
        return -1;
    }
    json_array_foreach(r, i, ent)
    {
        json_t *f = jobs_admin_pairs(json_array_get(ent, 1));
        const char *keyf = k->key_field ? k->key_field : "key";
        const char *key = json_string_value(json_object_get(f, keyf));
        json_t *o = json_pack("{s:s,s:O,s:s}", "kind", k->name, "id", json_array_get(ent, 0), "key",
                              key ? key : "");
        const char *meta[] = { "state", "attempts", "error", "dead_ms", "entry" };
        for (size_t m = 0; m < ARRAY_LEN(meta); m++) {
            json_t *v = json_object_get(f, meta[m]);
            json_object_set(o, meta[m], v ? v : json_string(""));
            json_object_del(f, meta[m]);
        }
        json_object_set_new(o, "fields", f);
        json_array_append_new(list, o);
    }
    json_decref(r);
    return 0;
}

int jobs_admin_dlq_list(const char *redis_url, const char *kind, json_t **out, struct err *e)
{
    struct jobs_admin a;
    const struct jobs_kind *k;
    json_t *list;
    int rc = -1;
    *out = NULL;
    if (kind_arg(kind, &k, e) != 0) {
        return -1;
    }
    if (jobs_admin_open(&a, redis_url, e) != 0) {
        jobs_admin_close(&a);
        return -1;
    }
    list = json_array();
    for (size_t i = 0; i < jobs_nkinds; i++) {
        if ((k == NULL || k == jobs_kinds[i]) && dlq_of(&a, jobs_kinds[i], list, e) != 0) {
            goto out;
        }
    }
    *out = json_incref(list);
    rc = 0;
out:
    json_decref(list);
    jobs_admin_close(&a);
    return rc;
}

int jobs_admin_dlq_retry(const char *redis_url, const char *kind, const char *id, size_t *n,
                         struct err *e)
{
    struct jobs_admin a;
    const struct jobs_kind *k;
    json_t *list = NULL, *ent;
    size_t i;
    int rc = -1;
    *n = 0;
    if (kind_arg(kind, &k, e) != 0) {
        return -1;
    }
    if (jobs_admin_open(&a, redis_url, e) != 0) {
        goto out;
    }
    list = json_array();
    for (size_t x = 0; x < jobs_nkinds; x++) {
        if ((k == NULL || k == jobs_kinds[x]) && dlq_of(&a, jobs_kinds[x], list, e) != 0) {
            goto out;
        }
    }
    json_array_foreach(list, i, ent)
    {
        const struct jobs_kind *kk =
            jobs_kind_find(json_string_value(json_object_get(ent, "kind")));
        const char *eid = json_string_value(json_object_get(ent, "id"));
        const char *key = json_string_value(json_object_get(ent, "key"));
        char stream[160], dlq[160], rkey[320];
        const char *av[4 + 2 * JOBS_FIELDS_MAX + 2];
        int ac = 0;
        const char *fk;
        json_t *fv, *r;
        if (kk == NULL || eid == NULL || key == NULL || key[0] == '\0' ||
            (id != NULL && strcmp(id, eid) != 0 && strcmp(id, key) != 0)) {
            continue;
        }
        jobs_key_stream(kk, stream, sizeof(stream));
        jobs_key_dlq(kk, dlq, sizeof(dlq));
        jobs_key_record(kk, key, rkey, sizeof(rkey));
        if (kk->states == NULL) { /* JITR's flow keeps its resume point there: start over */
            const char *hd[] = { "HDEL", rkey, "state", "attempts", "reason" };
            if ((r = jobs_admin_cmd(&a, 5, hd, e)) == NULL) {
                goto out;
            }
            json_decref(r);
        }
        av[ac++] = "XADD";
        av[ac++] = stream;
        av[ac++] = "*";
        json_object_foreach(json_object_get(ent, "fields"), fk, fv)
        {
            if (json_is_string(fv) && strcmp(fk, "src") != 0 && ac + 4 <= (int)ARRAY_LEN(av)) {
                av[ac++] = fk;
                av[ac++] = json_string_value(fv);
            }
        }
        av[ac++] = "src";
        av[ac++] = "dlq-retry";
        if ((r = jobs_admin_cmd(&a, ac, av, e)) == NULL) {
            goto out;
        }
        json_decref(r);
        {
            const char *xd[] = { "XDEL", dlq, eid };
            if ((r = jobs_admin_cmd(&a, 3, xd, e)) == NULL) {
                goto out;
            }
            json_decref(r);
        }
        (*n)++;
    }
    if (id != NULL && *n == 0) {
        err_set(e, ERRC_NOT_FOUND, "no dead letter with id or key '%.128s'", id);
        goto out;
    }
    rc = 0;
out:
    json_decref(list);
    jobs_admin_close(&a);
    return rc;
}

int jobs_admin_record(const char *redis_url, const char *kind, const char *key, json_t **out,
                      struct err *e)
{
    struct jobs_admin a;
    const struct jobs_kind *k;
    char rkey[320];
    json_t *r = NULL;
    int rc = -1;
    *out = NULL;
    if (kind == NULL) {
        return err_set(e, ERRC_INVALID, "a job kind is needed");
    }
    if (kind_arg(kind, &k, e) != 0) {
        return -1;
    }
    if (jobs_admin_open(&a, redis_url, e) == 0) {
        jobs_key_record(k, key, rkey, sizeof(rkey));
        const char *av[] = { "HGETALL", rkey };
        if ((r = jobs_admin_cmd(&a, 2, av, e)) != NULL) {
            if (json_array_size(r) == 0) {
                err_set(e, ERRC_NOT_FOUND, "no %s job for '%.128s'", k->name, key);
            } else {
                *out = jobs_admin_pairs(r);
                rc = 0;
            }
        }
    }
    json_decref(r);
    jobs_admin_close(&a);
    return rc;
}

int jobs_admin_engine_seen(const char *redis_url, const char *kind, bool *seen, struct err *e)
{
    struct jobs_admin a;
    const struct jobs_kind *k;
    char stream[160];
    json_t *r = NULL, *x;
    size_t i;
    int rc = -1;
    *seen = false;
    if (kind_arg(kind, &k, e) != 0 || k == NULL) {
        return k == NULL && kind == NULL ? err_set(e, ERRC_INVALID, "a job kind is needed") : -1;
    }
    if (jobs_admin_open(&a, redis_url, e) == 0) {
        jobs_key_stream(k, stream, sizeof(stream));
        const char *ex[] = { "EXISTS", stream };
        if ((r = jobs_admin_cmd(&a, 2, ex, e)) != NULL) {
            rc = 0;
            if (int_of(r) > 0) {
                const char *av[] = { "XINFO", "GROUPS", stream };
                json_decref(r);
                if ((r = jobs_admin_cmd(&a, 3, av, e)) == NULL) {
                    rc = -1;
                }
                json_array_foreach(r, i, x)
                {
                    json_t *g = jobs_admin_pairs(x);
                    const char *gname = json_string_value(json_object_get(g, "name"));
                    if (gname != NULL && strcmp(gname, JOBS_GROUP) == 0 &&
                        int_of(json_object_get(g, "consumers")) > 0) {
                        *seen = true;
                    }
                    json_decref(g);
                }
            }
        }
    }
    json_decref(r);
    jobs_admin_close(&a);
    return rc;
}
