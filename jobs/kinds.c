/*
 * The kinds of jobs, their keys, and enqueueing (jobs/jobs.h). Pure but for jobs_enqueue.
 */
#include <stdio.h>
#include <string.h>

#include "core/mem.h"
#include "core/util.h"
#include "jobs/jobs.h"
#include "jobs/renewal.h"
#include "store/store.h"

/* JITR provisioning: jitr/flow.c runs it (with its own lock and record); the keys are the ones
 * JITR had before the engine, so an upgraded jitrd goes on with the queues it finds. */
const struct jobs_kind jobs_kind_jitr = {
    .name = "jitr",
    .description = "JITR provisioning: a registered certificate becomes an ACTIVE device",
    .key_field = "cert",
    .cert_lock = false,
    .audit_type = NULL,
    .states = NULL,
    .nstates = 0,
    .stream = "jitr:events",
    .dlq = "jitr:dlq",
    .record_prefix = "jitr:dev:",
};

const struct jobs_kind *const jobs_kinds[] = { &jobs_kind_jitr, &jobs_kind_revoke,
                                               &jobs_kind_renewal, &jobs_kind_register };
const size_t jobs_nkinds = sizeof(jobs_kinds) / sizeof(jobs_kinds[0]);

const struct jobs_kind *jobs_kind_find(const char *name)
{
    for (size_t i = 0; name != NULL && i < jobs_nkinds; i++) {
        if (strcmp(jobs_kinds[i]->name, name) == 0) {
            return jobs_kinds[i];
        }
    }
    return NULL;
}

void jobs_key_stream(const struct jobs_kind *k, char *out, size_t cap)
{
    if (k->stream) {
        snprintf(out, cap, STORE_PREFIX "%s", k->stream);
    } else {
        snprintf(out, cap, STORE_PREFIX "jobs:%s:queue", k->name);
    }
}

void jobs_key_due(const struct jobs_kind *k, char *out, size_t cap)
{
    snprintf(out, cap, STORE_PREFIX "jobs:%s:due", k->name);
}

void jobs_key_dlq(const struct jobs_kind *k, char *out, size_t cap)
{
    if (k->dlq) {
        snprintf(out, cap, STORE_PREFIX "%s", k->dlq);
    } else {
        snprintf(out, cap, STORE_PREFIX "jobs:%s:dlq", k->name);
    }
}

void jobs_key_record(const struct jobs_kind *k, const char *key, char *out, size_t cap)
{
    if (k->record_prefix) {
        snprintf(out, cap, STORE_PREFIX "%s%s", k->record_prefix, key);
    } else {
        snprintf(out, cap, STORE_PREFIX "jobs:%s:%s", k->name, key);
    }
}

/* KEYS: stream, due of each job; ARGV: now, then per job not_before, 2n, the n fields. */
static const char enqueue_lua[] =
    "local now = tonumber(ARGV[1])\n"
    "local i = 2\n"
    "local out = {}\n"
    "for k = 1, #KEYS, 2 do\n"
    "  local nb = tonumber(ARGV[i])\n"
    "  local nf = tonumber(ARGV[i + 1])\n"
    "  i = i + 2\n"
    "  local f = {}\n"
    "  for x = 1, nf do f[x] = ARGV[i + x - 1] end\n"
    "  i = i + nf\n"
    "  if nb > now then\n"
    "    redis.call('ZADD', KEYS[k + 1], nb, cjson.encode(f))\n"
    "    out[#out + 1] = 'due'\n"
    "  else\n"
    "    out[#out + 1] = redis.call('XADD', KEYS[k], 'MAXLEN', '~', '1000000', '*', unpack(f))\n"
    "  end\n"
    "end\n"
    "return out\n";

static bool key_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > JOBS_KEY_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= ' ' || s[i] > '~') {
            return false;
        }
    }
    return true;
}

static void argv_add(struct jobs_argv *a, size_t *cap, const char *s)
{
    if (a->argc == *cap) {
        *cap = *cap ? *cap * 2 : 32;
        a->argv = xrealloc(a->argv, *cap * sizeof(*a->argv));
        a->lens = xrealloc(a->lens, *cap * sizeof(*a->lens));
    }
    a->argv[a->argc] = xstrdup(s);
    a->lens[a->argc] = strlen(s);
    a->argc++;
}

int jobs_enqueue_argv(const struct jobs_new *v, size_t n, int64_t now_ms, struct jobs_argv *out,
                      struct err *e)
{
    size_t cap = 0;
    char buf[200];
    memset(out, 0, sizeof(*out));
    if (n == 0 || n > 64) {
        return err_set(e, ERRC_INVALID, "jobs: 1 to 64 jobs at once, not %zu", n);
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].kind == NULL || !key_ok(v[i].key)) {
            return err_set(e, ERRC_INVALID,
                           "jobs: a job needs a kind and a key of 1 to %d "
                           "printable characters",
                           JOBS_KEY_MAX);
        }
        if (v[i].nfields + 3 > JOBS_FIELDS_MAX) {
            return err_set(e, ERRC_INVALID, "jobs: %zu fields, at most %d", v[i].nfields,
                           JOBS_FIELDS_MAX - 3);
        }
        for (size_t f = 0; f < 2 * v[i].nfields; f++) {
            if (v[i].fields[f] == NULL || strlen(v[i].fields[f]) > JOBS_VALUE_MAX) {
                return err_set(e, ERRC_INVALID,
                               "jobs: field %zu of a %s job is missing or "
                               "longer than %d bytes",
                               f / 2, v[i].kind->name, JOBS_VALUE_MAX);
            }
        }
    }
    argv_add(out, &cap, "EVAL");
    argv_add(out, &cap, enqueue_lua);
    snprintf(buf, sizeof(buf), "%zu", 2 * n);
    argv_add(out, &cap, buf);
    for (size_t i = 0; i < n; i++) {
        jobs_key_stream(v[i].kind, buf, sizeof(buf));
        argv_add(out, &cap, buf);
        jobs_key_due(v[i].kind, buf, sizeof(buf));
        argv_add(out, &cap, buf);
    }
    snprintf(buf, sizeof(buf), "%lld", (long long)now_ms);
    argv_add(out, &cap, buf);
    for (size_t i = 0; i < n; i++) {
        snprintf(buf, sizeof(buf), "%lld", (long long)v[i].not_before_ms);
        argv_add(out, &cap, buf);
        snprintf(buf, sizeof(buf), "%zu", 2 * v[i].nfields + 6);
        argv_add(out, &cap, buf);
        argv_add(out, &cap, v[i].kind->key_field ? v[i].kind->key_field : "key");
        argv_add(out, &cap, v[i].key);
        for (size_t f = 0; f < 2 * v[i].nfields; f++) {
            argv_add(out, &cap, v[i].fields[f]);
        }
        argv_add(out, &cap, "src");
        argv_add(out, &cap, v[i].src ? v[i].src : "");
        argv_add(out, &cap, "enq_ms");
        snprintf(buf, sizeof(buf), "%lld", (long long)now_ms);
        argv_add(out, &cap, buf);
    }
    return 0;
}

void jobs_argv_release(struct jobs_argv *a)
{
    for (size_t i = 0; i < a->argc; i++) {
        xfree(a->argv[i]);
    }
    xfree(a->argv);
    xfree(a->lens);
    memset(a, 0, sizeof(*a));
}

int jobs_enqueue(struct store_async *rs, const struct jobs_new *v, size_t n, store_reply_cb *cb,
                 void *arg, struct err *e)
{
    struct jobs_argv a;
    int rc;
    if (jobs_enqueue_argv(v, n, time_now_ms(), &a, e) != 0) {
        return -1;
    }
    rc = store_async_cmd(rs, (int)a.argc, (const char *const *)a.argv, a.lens, 5000, cb, arg, e);
    jobs_argv_release(&a);
    return rc;
}
