/*
 * What the parts of the JITR service share (jitr/ctx.h): stats, the AWS call wrapper, the CA
 * table, the backoff.
 */
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "ca/authority.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/ctx.h"
#include "store/store.h"

/* ---- the CA table --------------------------------------------------------------------------- */

static void catab_free(struct jitr_catab *t)
{
    for (size_t i = 0; i < t->n; i++) {
        xfree(t->names[i]);
        xfree(t->ids[i]);
        xfree(t->accounts[i]);
        X509_free(t->cas[i].cert);
    }
    xfree(t->cas);
    xfree(t->names);
    xfree(t->ids);
    xfree(t->accounts);
    xfree(t->known);
    xfree(t);
}

struct jitr_catab *jitr_catab_load(const char *data_dir, struct err *e)
{
    char **names = NULL;
    size_t n = 0;
    struct jitr_catab *t;
    if (ca_authority_list(data_dir, &names, &n, e) != 0) {
        return NULL;
    }
    t = xcalloc(1, sizeof(*t));
    t->refs = 1;
    t->cas = xcalloc(n + 1, sizeof(*t->cas));
    t->names = xcalloc(n + 1, sizeof(char *));
    t->ids = xcalloc(n + 1, sizeof(char *));
    t->accounts = xcalloc(n + 1, sizeof(char *));
    t->known = xcalloc(n + 1, sizeof(bool));
    for (size_t i = 0; i < n; i++) {
        struct err le = ERR_INIT;
        struct ca_authority *a = ca_authority_load(data_dir, names[i], &le);
        if (a != NULL && a->cert != NULL) {
            size_t k = t->n++;
            json_t *aws = json_object_get(a->meta, "aws");
            json_t *acct = json_object_get(json_array_get(aws, 0), "account");
            t->names[k] = xstrdup(a->name);
            t->ids[k] = xstrdup(a->fingerprint);
            t->accounts[k] = xstrdup(json_is_string(acct) ? json_string_value(acct) : "");
            t->known[k] = json_is_array(aws) && json_array_size(aws) > 0;
            X509_up_ref(a->cert);
            t->cas[k] = (struct jitr_ca){ t->names[k], t->ids[k], a->cert, t->known[k],
                                          ca_authority_compromised(a) };
        } else if (a == NULL) {
            log_warn("jitr: CA '%s' cannot be read: %s", names[i], le.msg);
        }
        ca_authority_free(a);
        xfree(names[i]);
    }
    xfree(names);
    return t;
}

struct jitr_catab *jitr_catab_ref(struct jitr_catab *t)
{
    t->refs++;
    return t;
}

void jitr_catab_unref(struct jitr_catab *t)
{
    if (t != NULL && --t->refs == 0) {
        catab_free(t);
    }
}

bool jitr_ca_known(void *arg, const char *ca_id)
{
    const struct jitr_ctx *c = arg;
    const struct jitr_catab *t = c->cas;
    for (size_t i = 0; t != NULL && i < t->n; i++) {
        if (t->known[i] && strcmp(t->ids[i], ca_id) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- stats ---------------------------------------------------------------------------------- */

void jitr_ignore_reply(void *arg, const struct store_reply *r, const struct err *e)
{
    (void)arg;
    (void)r;
    if (e != NULL && e->code != ERRC_CANCELED) {
        log_debug("jitr: redis: %s", e->msg);
    }
}

void jitr_stat_incr(struct jitr_ctx *c, const char *field, long long by)
{
    char n[32];
    struct err e = ERR_INIT;
    snprintf(n, sizeof(n), "%lld", by);
    const char *av[] = { "HINCRBY", STORE_PREFIX "jitr:stats", field, n };
    if (!c->stopping && c->rs != NULL &&
        store_async_cmd(c->rs, 4, av, NULL, 2000, jitr_ignore_reply, NULL, &e) != 0) {
        log_debug("jitr: stats: %s", e.msg);
    }
}

static const int64_t lat_buckets[] = { 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
                                       300000 };

void jitr_stat_latency(struct jitr_ctx *c, int64_t ms)
{
    char f[48];
    for (size_t i = 0; i < ARRAY_LEN(lat_buckets); i++) {
        if (ms <= lat_buckets[i]) {
            snprintf(f, sizeof(f), "lat_le:%lld", (long long)lat_buckets[i]);
            jitr_stat_incr(c, f, 1);
            break;
        }
    }
    jitr_stat_incr(c, "lat_count", 1);
    jitr_stat_incr(c, "lat_sum_ms", ms);
}

/* ---- AWS calls ------------------------------------------------------------------------------ */

struct aws_wrap {
    struct jitr_ctx *c;
    aws_iot_cb *cb;
    void *arg;
};

static void on_aws_wrapped(void *arg, const struct aws_iot_result *r, const struct err *e)
{
    struct aws_wrap *w = arg;
    char f[160];
    snprintf(f, sizeof(f), "aws:%s:%s", aws_iot_op_name(r->op),
             e == NULL ? "ok" : (r->error_code && r->error_code[0] ? r->error_code
                                                                    : err_code_name(e->code)));
    jitr_stat_incr(w->c, f, 1);
    if (r->attempts > 1) {
        snprintf(f, sizeof(f), "aws_retries:%s", aws_iot_op_name(r->op));
        jitr_stat_incr(w->c, f, (long long)r->attempts - 1);
    }
    /* the API's token: the bucket's round trip and any wait for it (0 too: the series exists) */
    snprintf(f, sizeof(f), "aws_pace_ms:%s", aws_iot_op_name(r->op));
    jitr_stat_incr(w->c, f, (long long)r->paced_ms);
    w->cb(w->arg, r, e);
    xfree(w);
}

int jitr_aws_call(struct jitr_ctx *c, struct aws_iot *iot, enum aws_iot_op op, json_t *in,
                  aws_iot_cb *cb, void *arg, struct err *e)
{
    struct aws_wrap *w = xcalloc(1, sizeof(*w));
    w->c = c;
    w->cb = cb;
    w->arg = arg;
    if (aws_iot_call(iot != NULL ? iot : c->iot, op, in, on_aws_wrapped, w, e) != 0) {
        xfree(w);
        return -1;
    }
    return 0;
}

/* ---- backoff -------------------------------------------------------------------------------- */

int64_t jitr_backoff_ms(int64_t base_ms, int64_t max_ms, unsigned attempt)
{
    int64_t d = base_ms;
    uint32_t rnd = 0;
    for (unsigned i = 1; i < attempt && d < max_ms; i++) {
        d *= 2;
    }
    if (d > max_ms) {
        d = max_ms;
    }
    if (RAND_bytes((unsigned char *)&rnd, sizeof(rnd)) == 1) {
        d = d / 2 + (int64_t)(rnd % (uint32_t)(d / 2 + 1)); /* jitter */
    }
    return d;
}
