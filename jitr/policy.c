/*
 * The template's IoT policies in AWS, once per policy and not per device. The first flow that
 * reaches POLICY for a policy starts that policy's machine; every flow arriving meanwhile waits
 * in its list; all are answered together from the loop (never inline). The state is kept per
 * template: jitrd's own (each SIGHUP generation's) and each template a register job carries
 * (loader.c's cache), so a flow with jitrctl aws register-batch --template gets that template's
 * policies made in AWS the same way.
 *
 *   RECORD_GET  Redis HGET jitr:policy:<name> sha256: another worker or an earlier run made
 *               this document already → READY without an AWS call
 *   GET         GetPolicy: 404 → CREATE; the same document → RECORD_SET; another → LIST when
 *               the policy is versioned (jitr.policy_name), else a conflict (a policy named by
 *               its document's hash that holds another document was not made by jitrca)
 *   CREATE      CreatePolicy (409: a concurrent creator won → GET again, to compare)
 *   LIST        ListPolicyVersions: 5 versions → DELETE the oldest non-default one first
 *   DELETE      DeletePolicyVersion
 *   VERSION     CreatePolicyVersion setAsDefault=true
 *   RECORD_SET  Redis HSET jitr:policy:<name> sha256 <hash> → READY
 * A policy the template names (PolicyName) needs nothing: READY at once (AttachPolicy finds out
 * whether it exists).
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr_int.h"
#include "store/store.h"

enum pol_step { P_RECORD_GET, P_GET, P_CREATE, P_LIST, P_DELETE, P_VERSION, P_RECORD_SET };

struct policy_waiter {
    store_done_cb *cb;
    void *arg;
    struct policy_waiter *next;
};

/* One policy of the template. */
struct jitr_pol {
    struct jitr_service *s;
    const struct jitr_policy *p; /* borrowed from the template */
    enum jitr_pol_state state;
    enum pol_step step;
    int conflicts; /* CreatePolicy 409s in this round: a concurrent creator won */
    struct policy_waiter *waiters;
    struct event *defer;
    json_t *versions;
    struct err result; /* delivered to the waiters by on_defer */
};

static void pol_advance(struct jitr_pol *pl);

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    struct jitr_pol *pl = arg;
    struct policy_waiter *w = pl->waiters;
    struct err res = pl->result;
    (void)fd;
    (void)what;
    pl->waiters = NULL;
    while (w) {
        struct policy_waiter *next = w->next;
        w->cb(w->arg, res.code == ERRC_OK ? NULL : &res);
        xfree(w);
        w = next;
    }
}

static void pol_finish(struct jitr_pol *pl, const struct err *e)
{
    err_clear(&pl->result);
    if (e != NULL) {
        err_copy(&pl->result, e);
        pl->state = JITR_POL_UNKNOWN;
        log_warn("jitr: policy '%s': %s", pl->p->name, e->msg);
    } else {
        pl->state = JITR_POL_READY;
        log_info("jitr: policy '%s' is in AWS with the template's document %.12s", pl->p->name,
                 pl->p->hash);
    }
    event_active(pl->defer, EV_TIMEOUT, 0);
}

static void on_pol_redis(void *arg, const struct store_reply *r, const struct err *e)
{
    struct jitr_pol *pl = arg;
    if (e != NULL) {
        pol_finish(pl, e);
        return;
    }
    if (pl->step == P_RECORD_GET) {
        if (r->type == STORE_REPLY_STRING && strcmp(r->str, pl->p->hash) == 0) {
            pol_finish(pl, NULL);
            return;
        }
        pl->step = P_GET;
    } else {
        pol_finish(pl, NULL);
        return;
    }
    pol_advance(pl);
}

static bool same_document(const char *a, const char *b)
{
    json_t *x = json_loads(a, 0, NULL), *y = json_loads(b, 0, NULL);
    bool same = x && y && json_equal(x, y);
    json_decref(x);
    json_decref(y);
    return same;
}

static void on_pol_aws(void *arg, const struct aws_iot_result *r, const struct err *e)
{
    struct jitr_pol *pl = arg;
    switch (pl->step) {
    case P_GET:
        if (e != NULL && e->code == ERRC_NOT_FOUND) {
            pl->step = P_CREATE;
        } else if (e != NULL) {
            pol_finish(pl, e);
            return;
        } else {
            json_t *d = json_object_get(r->out, "policyDocument");
            if (json_is_string(d) && same_document(json_string_value(d), pl->p->doc)) {
                pl->step = P_RECORD_SET;
            } else if (pl->p->versioned) {
                pl->step = P_LIST;
            } else {
                struct err ce = ERR_INIT;
                err_set(&ce, ERRC_CONFLICT, "policy '%s' exists in AWS with another document "
                        "than the template's (whose SHA-256 names it): not made by jitrca",
                        pl->p->name);
                pol_finish(pl, &ce);
                return;
            }
        }
        break;
    case P_CREATE:
        if (e != NULL && e->code != ERRC_CONFLICT) {
            pol_finish(pl, e);
            return;
        }
        /* 409: another worker created it meanwhile; look at what it wrote (the same document
         * needs no new version) rather than adding a version of our own */
        if (e == NULL) {
            pl->step = P_RECORD_SET;
        } else if (++pl->conflicts <= 2) {
            pl->step = P_GET;
        } else if (pl->p->versioned) {
            pl->step = P_LIST;
        } else {
            pol_finish(pl, e);
            return;
        }
        break;
    case P_LIST:
        if (e != NULL) {
            pol_finish(pl, e);
            return;
        }
        json_decref(pl->versions);
        pl->versions = json_incref(json_object_get(r->out, "policyVersions"));
        pl->step = json_array_size(pl->versions) >= 5 ? P_DELETE : P_VERSION;
        break;
    case P_DELETE:
        if (e != NULL && e->code != ERRC_NOT_FOUND) {
            pol_finish(pl, e);
            return;
        }
        pl->step = P_VERSION;
        break;
    case P_VERSION:
        if (e != NULL) {
            pol_finish(pl, e);
            return;
        }
        log_info("jitr: policy '%s': new default version %s", pl->p->name,
                 json_string_value(json_object_get(r->out, "policyVersionId")));
        pl->step = P_RECORD_SET;
        break;
    case P_RECORD_GET:
    case P_RECORD_SET:
        BUG_ON(true);
    }
    pol_advance(pl);
}

/* The oldest non-default version (smallest numeric id). */
static const char *oldest_version(const json_t *versions)
{
    const char *best = NULL;
    long long bestn = 0;
    size_t i;
    json_t *v;
    json_array_foreach (versions, i, v) {
        const char *id = json_string_value(json_object_get(v, "versionId"));
        uint64_t n = 0;
        if (id == NULL || json_is_true(json_object_get(v, "isDefaultVersion"))) {
            continue;
        }
        if (str_to_u64(id, &n) == 0 && (best == NULL || (long long)n < bestn)) {
            best = id;
            bestn = (long long)n;
        }
    }
    return best;
}

/* The AWS call of an AWS step (in is the call's input, freed here). */
static int pol_call(struct jitr_pol *pl, enum aws_iot_op op, json_t *in, struct err *e)
{
    int rc;
    if (in == NULL) {
        return err_set(e, ERRC_INVALID, "%s: bad arguments", aws_iot_op_name(op));
    }
    rc = jitr_aws_call(&pl->s->ctx, NULL, op, in, on_pol_aws, pl, e);
    json_decref(in);
    return rc;
}

static void pol_advance(struct jitr_pol *pl)
{
    struct jitr_service *s = pl->s;
    const char *name = pl->p->name, *doc = pl->p->doc;
    char key[200];
    struct err e = ERR_INIT;
    int rc = 0;
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:policy:%s", name);
    switch (pl->step) {
    case P_RECORD_GET: {
        const char *av[] = { "HGET", key, "sha256" };
        rc = store_async_cmd(s->ctx.rs, 3, av, NULL, 5000, on_pol_redis, pl, &e);
        break;
    }
    case P_GET:
        rc = pol_call(pl, AWS_IOT_GET_POLICY, json_pack("{s:s}", "policyName", name), &e);
        break;
    case P_CREATE:
        rc = pol_call(pl, AWS_IOT_CREATE_POLICY,
                      json_pack("{s:s, s:s}", "policyName", name, "policyDocument", doc), &e);
        break;
    case P_LIST:
        rc = pol_call(pl, AWS_IOT_LIST_POLICY_VERSIONS, json_pack("{s:s}", "policyName", name),
                      &e);
        break;
    case P_DELETE: {
        const char *v = oldest_version(pl->versions);
        if (v == NULL) {
            err_set(&e, ERRC_CONFLICT, "policy '%s' has 5 versions and none can be deleted",
                    name);
            rc = -1;
            break;
        }
        rc = pol_call(pl, AWS_IOT_DELETE_POLICY_VERSION,
                      json_pack("{s:s, s:s}", "policyName", name, "policyVersionId", v), &e);
        break;
    }
    case P_VERSION:
        rc = pol_call(pl, AWS_IOT_CREATE_POLICY_VERSION,
                      json_pack("{s:s, s:s, s:b}", "policyName", name, "policyDocument", doc,
                                "setAsDefault", 1),
                      &e);
        break;
    case P_RECORD_SET: {
        const char *av[] = { "HSET", key, "sha256", pl->p->hash };
        rc = store_async_cmd(s->ctx.rs, 4, av, NULL, 5000, on_pol_redis, pl, &e);
        break;
    }
    }
    if (rc != 0) {
        pol_finish(pl, &e);
    }
}

int jitr_policy_ready(void *ctx, const struct jitr_template *t, size_t idx, store_done_cb *cb,
                      void *arg, struct err *e)
{
    struct jitr_service *s = ctx;
    struct jitr_polset *g = jitr_polset_of(s, t);
    struct jitr_pol *pl;
    struct policy_waiter *w;
    if (g == NULL || idx >= jitr_template_npolicies(t)) {
        return err_set(e, ERRC_INTERNAL, "jitr: no policy %zu in the template", idx);
    }
    if (g->pols == NULL) {
        g->npols = jitr_template_npolicies(t);
        g->pols = xcalloc(g->npols, sizeof(*g->pols));
        for (size_t i = 0; i < g->npols; i++) {
            g->pols[i].s = s;
            g->pols[i].p = jitr_template_policy(t, i);
        }
    }
    pl = &g->pols[idx];
    if (pl->defer == NULL) {
        pl->defer = evtimer_new(s->ctx.base, on_defer, pl);
        if (pl->defer == NULL) {
            oom_die(event_get_struct_event_size());
        }
    }
    w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    w->next = pl->waiters;
    pl->waiters = w;
    if (pl->state == JITR_POL_READY || pl->p->doc[0] == '\0') {
        pl->state = JITR_POL_READY;
        err_clear(&pl->result);
        event_active(pl->defer, EV_TIMEOUT, 0);
        return 0;
    }
    if (pl->state == JITR_POL_UNKNOWN) {
        pl->state = JITR_POL_ENSURING;
        pl->step = P_RECORD_GET;
        pl->conflicts = 0;
        pol_advance(pl);
    }
    return 0;
}

void jitr_policy_release(struct jitr_polset *g)
{
    for (size_t i = 0; i < g->npols; i++) {
        struct jitr_pol *pl = &g->pols[i];
        err_clear(&pl->result);
        err_set(&pl->result, ERRC_CANCELED, "jitr: stopping");
        if (pl->waiters != NULL) {
            on_defer(-1, 0, pl);
        }
        if (pl->defer) {
            event_free(pl->defer);
        }
        json_decref(pl->versions);
    }
    xfree(g->pols);
    g->pols = NULL;
    g->npols = 0;
}
