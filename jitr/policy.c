/*
 * The template's shared IoT policy in AWS, once per policy and not per device (so that a device
 * costs 4 AWS calls). The first flow that reaches POLICY starts this machine; every flow
 * arriving meanwhile waits in a list; all are answered together from the loop (never inline).
 *
 *   RECORD_GET  Redis HGET jitr:policy:<name> sha256: another worker or an earlier run made
 *               this version already → READY without an AWS call
 *   GET         GetPolicy: 404 → CREATE; the same document → RECORD_SET; another → LIST
 *   CREATE      CreatePolicy (409: a concurrent creator won → GET again, to compare)
 *   LIST        ListPolicyVersions: 5 versions → DELETE the oldest non-default one first
 *   DELETE      DeletePolicyVersion
 *   VERSION     CreatePolicyVersion setAsDefault=true
 *   RECORD_SET  Redis HSET jitr:policy:<name> sha256 <hash> → READY
 * A template naming an existing policy (PolicyName) needs nothing: READY at once.
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

static void pol_advance(struct jitr_service *s);

static struct err pol_result; /* the outcome delivered to waiters by on_defer */

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    struct jitr_service *s = arg;
    struct policy_waiter *w = s->pol_waiters;
    struct err res = pol_result;
    (void)fd;
    (void)what;
    s->pol_waiters = NULL;
    while (w) {
        struct policy_waiter *next = w->next;
        w->cb(w->arg, res.code == ERRC_OK ? NULL : &res);
        xfree(w);
        w = next;
    }
}

static void pol_finish(struct jitr_service *s, const struct err *e)
{
    err_clear(&pol_result);
    if (e != NULL) {
        err_copy(&pol_result, e);
        s->pol_state = JITR_POL_UNKNOWN;
        log_warn("jitr: policy '%s': %s", jitr_template_policy_name(s->tpl), e->msg);
    } else {
        s->pol_state = JITR_POL_READY;
        snprintf(s->pol_hash, sizeof(s->pol_hash), "%s", jitr_template_policy_hash(s->tpl));
        log_info("jitr: policy '%s' is at the template's version %.12s",
                 jitr_template_policy_name(s->tpl), s->pol_hash);
    }
    event_active(s->pol_defer, EV_TIMEOUT, 0);
}

static void on_pol_redis(void *arg, const struct store_reply *r, const struct err *e)
{
    struct jitr_service *s = arg;
    if (e != NULL) {
        pol_finish(s, e);
        return;
    }
    if (s->pol_step == P_RECORD_GET) {
        if (r->type == STORE_REPLY_STRING &&
            strcmp(r->str, jitr_template_policy_hash(s->tpl)) == 0) {
            pol_finish(s, NULL);
            return;
        }
        s->pol_step = P_GET;
    } else {
        pol_finish(s, NULL);
        return;
    }
    pol_advance(s);
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
    struct jitr_service *s = arg;
    const char *doc = jitr_template_policy_doc(s->tpl);
    switch ((enum pol_step)s->pol_step) {
    case P_GET:
        if (e != NULL && e->code == ERRC_NOT_FOUND) {
            s->pol_step = P_CREATE;
        } else if (e != NULL) {
            pol_finish(s, e);
            return;
        } else {
            json_t *d = json_object_get(r->out, "policyDocument");
            s->pol_step = json_is_string(d) && same_document(json_string_value(d), doc)
                              ? P_RECORD_SET
                              : P_LIST;
        }
        break;
    case P_CREATE:
        if (e != NULL && e->code != ERRC_CONFLICT) {
            pol_finish(s, e);
            return;
        }
        /* 409: another worker created it meanwhile; look at what it wrote (the same document
         * needs no new version) rather than adding a version of our own */
        s->pol_step = e == NULL ? P_RECORD_SET : ++s->pol_conflicts <= 2 ? P_GET : P_LIST;
        break;
    case P_LIST:
        if (e != NULL) {
            pol_finish(s, e);
            return;
        }
        json_decref(s->pol_versions);
        s->pol_versions = json_incref(json_object_get(r->out, "policyVersions"));
        s->pol_step = json_array_size(s->pol_versions) >= 5 ? P_DELETE : P_VERSION;
        break;
    case P_DELETE:
        if (e != NULL && e->code != ERRC_NOT_FOUND) {
            pol_finish(s, e);
            return;
        }
        s->pol_step = P_VERSION;
        break;
    case P_VERSION:
        if (e != NULL) {
            pol_finish(s, e);
            return;
        }
        log_info("jitr: policy '%s': new default version %s", jitr_template_policy_name(s->tpl),
                 json_string_value(json_object_get(r->out, "policyVersionId")));
        s->pol_step = P_RECORD_SET;
        break;
    case P_RECORD_GET:
    case P_RECORD_SET:
        BUG_ON(true);
    }
    pol_advance(s);
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

static void pol_advance(struct jitr_service *s)
{
    const char *name = jitr_template_policy_name(s->tpl);
    const char *doc = jitr_template_policy_doc(s->tpl);
    char key[200];
    struct err e = ERR_INIT;
    int rc = 0;
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:policy:%s", name);
    switch ((enum pol_step)s->pol_step) {
    case P_RECORD_GET: {
        const char *av[] = { "HGET", key, "sha256" };
        rc = store_async_cmd(s->rs, 3, av, NULL, 5000, on_pol_redis, s, &e);
        break;
    }
    case P_GET:
        rc = jitr_aws_call(s, AWS_IOT_GET_POLICY, json_pack("{s:s}", "policyName", name) ,
                           on_pol_aws, s, &e);
        break;
    case P_CREATE:
        rc = aws_iot_create_policy(s->iot, name, doc, on_pol_aws, s, &e);
        jitr_stat_incr(s, "aws:CreatePolicy:sent", 1);
        break;
    case P_LIST:
        rc = aws_iot_list_policy_versions(s->iot, name, on_pol_aws, s, &e);
        break;
    case P_DELETE: {
        const char *v = oldest_version(s->pol_versions);
        if (v == NULL) {
            err_set(&e, ERRC_CONFLICT, "policy '%s' has 5 versions and none can be deleted",
                    name);
            rc = -1;
            break;
        }
        rc = aws_iot_delete_policy_version(s->iot, name, v, on_pol_aws, s, &e);
        break;
    }
    case P_VERSION:
        rc = aws_iot_create_policy_version(s->iot, name, doc, 1, on_pol_aws, s, &e);
        jitr_stat_incr(s, "aws:CreatePolicyVersion:sent", 1);
        break;
    case P_RECORD_SET: {
        const char *av[] = { "HSET", key, "sha256", jitr_template_policy_hash(s->tpl) };
        rc = store_async_cmd(s->rs, 4, av, NULL, 5000, on_pol_redis, s, &e);
        break;
    }
    }
    if (rc != 0) {
        pol_finish(s, &e);
    }
}

int jitr_policy_ready(void *ctx, const struct jitr_template *t, store_done_cb *cb, void *arg,
                      struct err *e)
{
    struct jitr_service *s = ctx;
    struct policy_waiter *w;
    (void)t;
    if (s->pol_defer == NULL) {
        s->pol_defer = evtimer_new(s->base, on_defer, s);
        if (s->pol_defer == NULL) {
            return err_set(e, ERRC_INTERNAL, "jitr: cannot create a timer");
        }
    }
    w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    w->next = s->pol_waiters;
    s->pol_waiters = w;
    if (s->pol_state == JITR_POL_READY || jitr_template_policy_doc(s->tpl)[0] == '\0') {
        s->pol_state = JITR_POL_READY;
        err_clear(&pol_result);
        event_active(s->pol_defer, EV_TIMEOUT, 0);
        return 0;
    }
    if (s->pol_state == JITR_POL_UNKNOWN) {
        s->pol_state = JITR_POL_ENSURING;
        s->pol_step = P_RECORD_GET;
        s->pol_conflicts = 0;
        pol_advance(s);
    }
    return 0;
}

void jitr_policy_release(struct jitr_service *s)
{
    struct err e = ERR_INIT;
    err_set(&e, ERRC_CANCELED, "jitr: stopping");
    pol_result = e;
    if (s->pol_waiters != NULL) {
        on_defer(-1, 0, s);
    }
    if (s->pol_defer) {
        event_free(s->pol_defer);
        s->pol_defer = NULL;
    }
    json_decref(s->pol_versions);
    s->pol_versions = NULL;
}
