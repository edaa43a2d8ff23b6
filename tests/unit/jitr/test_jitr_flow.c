/*
 * jitr/flow.c: the provisioning state machine driven with fake completions: a tiny in-memory
 * Redis (the commands flow.c sends) and a scripted AWS that keeps its own record of each
 * certificate (DescribeCertificate answers it, UpdateCertificate changes it). Every case asserts
 * the state trace, the AWS calls made and what AWS holds afterwards. The decision (docs/jitr.md
 * "The decision") case by case: what is not ours is left alone, REVOKED only for facts about the
 * certificate, our configuration's mistakes are dead letters. Certificates are real (openssl
 * CLI).
 */
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/profile.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr.h"
#include "store/store.h"
#include "tests/harness/tt.h"
#include "tests/unit/jitr/pki.h"

#define CA_ID      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define OTHER_ID   "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define UNREG_ID   "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define FOREIGN_ID "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"

/* The PEM, DER (base64) and certificateId of a certificate of the test PKI. */
static int cert_files(const char *name, struct buf *pem, struct buf *b64, char id[65])
{
    struct err e = ERR_INIT;
    struct buf p = BUF_INIT, der = BUF_INIT;
    X509 *x;
    unsigned char *d = NULL;
    int n = -1;
    uint8_t md[32];
    buf_addf(&p, "%s/%s.pem", tt_tmpdir(), name);
    if (file_read_all(p.data, 65536, pem, &e) == 0 && (x = jt_load_cert(p.data)) != NULL) {
        n = i2d_X509(x, &d);
        X509_free(x);
    }
    if (n > 0) {
        SHA256(d, (size_t)n, md);
        hex_encode(md, sizeof(md), id);
        base64_encode(b64, d, (size_t)n);
    }
    OPENSSL_free(d);
    buf_release(&p);
    buf_release(&der);
    return n > 0 ? 0 : -1;
}

struct fake {
    json_t *redis; /* key -> string or object (hash) or array (list); "aws:desc:<id>": AWS */
    const struct jitr_template *policy_t; /* the template of the last policy_ready */
    /* the one pending operation */
    int kind; /* 0 none, 1 redis, 2 aws, 3 policy, 4 audit */
    char **argv;
    int argc;
    enum aws_iot_op op;
    json_t *in;
    store_reply_cb *rcb;
    aws_iot_cb *acb;
    store_done_cb *dcb;
    void *arg;
    struct buf calls;    /* AWS calls, space-separated */
    struct buf policies; /* policy_ready calls: "0 1 ..." */
    const char *fail_op; /* AWS operation name to fail once */
    enum err_code fail_code;
    const char *fail_aws_code;
    const char *fail_op2; /* and a second one */
    enum err_code fail_code2;
    const char *fail_aws_code2;
    bool lose_update;  /* the next UpdateCertificate is applied but its reply is lost */
    json_t *update_in; /* the last UpdateThing input */
    json_t *create_in; /* the last CreateThing input */
    json_t *attach_in; /* the last AttachThingPrincipal input */
    json_t *attached;  /* policy names of AttachPolicy, in order */
    json_t *listed;    /* ListThingGroupsForThing's groups (names) */
    int audits;
    json_t *log;       /* the audit log: records with "seq" */
    json_t *audit_rec; /* the pending append */
    bool audit_check;
    uint64_t audit_after;
    jitr_audit_cb *aucb;
    enum err_code audit_fail; /* fail the next append with this code (once) */
    bool index_incomplete;    /* Redis lost the index: its guarded reads fail (store.h) */
    bool finished;
    json_t *queued;    /* jobs enqueued (jobs_enqueue_argv's script): [due key, not_before,
                        * {fields}] each */
    bool fail_queue;   /* the next enqueue fails (Redis) */
    /* a second AWS call started while the first is pending (the flow's AttachPolicy alongside
     * CreateThing): served once the first slot is free */
    struct {
        bool on;
        enum aws_iot_op op;
        json_t *in;
        aws_iot_cb *acb;
        void *arg;
    } side;
    unsigned max_aws; /* most AWS calls pending at once */
    /* the lock as a lease (io->lease_*): held leases, and the AWS call after which the worker
     * finds the lock lost (Redis lost it) */
    unsigned leases;
    const char *lose_lease_after;
    bool hold_side;   /* run_to leaves the second call pending (a crash between the two) */
};

static int f_redis(void *ctx, int argc, const char *const *argv, store_reply_cb *cb, void *arg,
                   struct err *e)
{
    struct fake *f = ctx;
    (void)e;
    BUG_ON(f->kind != 0);
    f->kind = 1;
    f->argc = argc;
    f->argv = xcalloc((size_t)argc, sizeof(char *));
    for (int i = 0; i < argc; i++) {
        f->argv[i] = xstrdup(argv[i]);
    }
    f->rcb = cb;
    f->arg = arg;
    return 0;
}

static int f_aws(void *ctx, enum aws_iot_op op, json_t *in, aws_iot_cb *cb, void *arg,
                 struct err *e)
{
    struct fake *f = ctx;
    (void)e;
    if (f->kind != 0) { /* a call alongside the pending operation */
        BUG_ON(f->side.on);
        f->side.on = true;
        f->side.op = op;
        f->side.in = json_deep_copy(in);
        f->side.acb = cb;
        f->side.arg = arg;
    } else {
        f->kind = 2;
        f->op = op;
        f->in = json_deep_copy(in);
        f->acb = cb;
        f->arg = arg;
    }
    if ((unsigned)(f->kind == 2) + f->side.on > f->max_aws) {
        f->max_aws = (unsigned)(f->kind == 2) + f->side.on;
    }
    return 0;
}

/* The call alongside becomes the pending operation (the first slot is free). */
static void side_promote(struct fake *f)
{
    f->kind = 2;
    f->op = f->side.op;
    f->in = f->side.in;
    f->acb = f->side.acb;
    f->arg = f->side.arg;
    f->side.on = false;
    f->side.in = NULL;
}

static int f_policy(void *ctx, const struct jitr_template *t, size_t idx, store_done_cb *cb,
                    void *arg, struct err *e)
{
    struct fake *f = ctx;
    (void)e;
    BUG_ON(f->kind != 0);
    f->policy_t = t;
    buf_addf(&f->policies, "%s%zu", f->policies.len ? " " : "", idx);
    f->kind = 3;
    f->dcb = cb;
    f->arg = arg;
    return 0;
}

static int f_audit(void *ctx, json_t *rec, bool check, uint64_t after, jitr_audit_cb *cb, void *arg,
                   struct err *e)
{
    struct fake *f = ctx;
    (void)e;
    BUG_ON(f->kind != 0);
    f->kind = 4;
    f->audit_rec = json_deep_copy(rec);
    f->audit_check = check;
    f->audit_after = after;
    f->aucb = cb;
    f->arg = arg;
    return 0;
}

static uint64_t f_audit_mark(void *ctx)
{
    struct fake *f = ctx;
    return json_array_size(f->log);
}

/* The pending append as the writer does it: the look-up (check), then the record, durably.
 * Returns the seq; *found when the look-up found it. */
static uint64_t audit_write(struct fake *f, bool *found)
{
    const char *type = json_string_value(json_object_get(f->audit_rec, "type"));
    const char *cert = json_string_value(json_object_get(f->audit_rec, "certificate_id"));
    *found = false;
    for (size_t i = json_array_size(f->log); f->audit_check && i > f->audit_after; i--) {
        json_t *r = json_array_get(f->log, i - 1);
        if (strcmp(json_string_value(json_object_get(r, "type")), type) == 0 &&
            strcmp(json_string_value(json_object_get(r, "certificate_id")), cert) == 0) {
            *found = true;
            return i;
        }
    }
    json_object_set_new(f->audit_rec, "seq", json_integer((json_int_t)json_array_size(f->log) + 1));
    json_array_append(f->log, f->audit_rec);
    f->audits++;
    return json_array_size(f->log);
}

/* Completes the pending append: written, or failed with f->audit_fail. */
static void serve_audit(struct fake *f)
{
    json_t *rec = f->audit_rec;
    f->kind = 0;
    if (f->audit_fail != ERRC_OK) {
        struct err e = ERR_INIT;
        err_set(&e, f->audit_fail, "cannot fsync audit log 'x': Input/output error");
        f->audit_fail = ERRC_OK;
        f->audit_rec = NULL;
        f->aucb(f->arg, 0, false, &e);
    } else {
        bool found;
        uint64_t seq = audit_write(f, &found);
        f->audit_rec = NULL;
        f->aucb(f->arg, seq, found, NULL);
    }
    json_decref(rec);
}

static void *f_lease_hold(void *ctx, const char *key, const char *token, int64_t sent_ms)
{
    struct fake *f = ctx;
    (void)key;
    (void)token;
    (void)sent_ms;
    f->leases++;
    return f;
}

static bool f_lease_held(void *ctx, void *lease)
{
    struct fake *f = ctx;
    (void)lease;
    return f->lose_lease_after == NULL || f->calls.data == NULL ||
           strstr(f->calls.data, f->lose_lease_after) == NULL;
}

static void f_lease_drop(void *ctx, void *lease)
{
    struct fake *f = ctx;
    (void)lease;
    BUG_ON(f->leases == 0);
    f->leases--;
}

static void f_done(void *ctx, struct jitr_req *r)
{
    struct fake *f = ctx;
    (void)r;
    f->finished = true;
}

static void argv_free(struct fake *f)
{
    for (int i = 0; i < f->argc; i++) {
        xfree(f->argv[i]);
    }
    xfree(f->argv);
    f->argv = NULL;
    f->kind = 0;
}

/* Serves one pending Redis command from the in-memory map. */
static void serve_redis(struct fake *f)
{
    const char *cmd = f->argv[0];
    const char *key = f->argc > 1 ? f->argv[1] : "";
    struct store_reply rep;
    struct store_reply *el = NULL;
    memset(&rep, 0, sizeof(rep));
    rep.type = STORE_REPLY_NIL;
    if (strcmp(cmd, "EVAL") == 0 && (strcmp(f->argv[1], store_index_get_lua) == 0 ||
                                     strcmp(f->argv[1], store_index_hgetall_lua) == 0)) {
        /* the guarded index reads: KEYS index:ready, the key */
        BUG_ON(strcmp(f->argv[3], STORE_INDEX_READY) != 0);
        if (f->index_incomplete) { /* what store/async.c makes of the script's error reply */
            struct err e = ERR_INIT;
            err_set(&e, ERRC_UNAVAILABLE, "redis: error reply");
            snprintf(e.detail, sizeof(e.detail), "%s the index is being rebuilt",
                     STORE_INDEX_INCOMPLETE);
            argv_free(f);
            f->rcb(f->arg, NULL, &e);
            return;
        }
        cmd = strcmp(f->argv[1], store_index_get_lua) == 0 ? "GET" : "HGETALL";
        key = f->argv[4];
    }
    if (strcmp(cmd, "EVAL") == 0 && strstr(f->argv[1], "'NX'")) {
        /* the lock: KEYS lock; ARGV token, px → 1, or the holder's token */
        json_t *v = json_object_get(f->redis, f->argv[3]);
        if (v == NULL) {
            json_object_set_new(f->redis, f->argv[3], json_string(f->argv[4]));
            rep.type = STORE_REPLY_INTEGER;
            rep.integer = 1;
        } else {
            rep.type = STORE_REPLY_STRING;
            rep.str = json_string_value(v);
            rep.len = json_string_length(v);
        }
    } else if (strcmp(cmd, "GET") == 0) {
        json_t *v = json_object_get(f->redis, key);
        if (json_is_string(v)) {
            rep.type = STORE_REPLY_STRING;
            rep.str = json_string_value(v);
            rep.len = json_string_length(v);
        }
    } else if (strcmp(cmd, "HGETALL") == 0) {
        json_t *h = json_object_get(f->redis, key);
        size_t i = 0;
        const char *k;
        json_t *v;
        rep.type = STORE_REPLY_ARRAY;
        el = xcalloc(2 * json_object_size(h) + 1, sizeof(*el));
        json_object_foreach(h, k, v)
        {
            el[i].type = STORE_REPLY_STRING;
            el[i].str = k;
            el[i].len = strlen(k);
            el[i + 1].type = STORE_REPLY_STRING;
            el[i + 1].str = json_string_value(v);
            el[i + 1].len = json_string_length(v);
            i += 2;
        }
        rep.elem = el;
        rep.n = i;
    } else if (strcmp(cmd, "EVAL") == 0 && f->argc > 5 && strstr(f->argv[4], ":due")) {
        /* a job enqueued: KEYS stream, due; ARGV now, not_before, 2n, fields... */
        json_t *fields = json_object();
        if (f->fail_queue) {
            struct err e = ERR_INIT;
            f->fail_queue = false;
            json_decref(fields);
            err_set(&e, ERRC_UNAVAILABLE, "redis: connection lost");
            argv_free(f);
            f->rcb(f->arg, NULL, &e);
            return;
        }
        for (int i = 8; i + 1 < f->argc; i += 2) {
            json_object_set_new(fields, f->argv[i], json_string(f->argv[i + 1]));
        }
        if (f->queued == NULL) {
            f->queued = json_array();
        }
        json_array_append_new(f->queued, json_pack("[s,s,o]", f->argv[4], f->argv[6], fields));
        rep.type = STORE_REPLY_INTEGER;
        rep.integer = 1;
    } else if (strcmp(cmd, "EVAL") == 0 && strstr(f->argv[1], "RPUSH")) {
        /* persist: KEYS dev, trace, lock; ARGV line, token, px, fields... */
        json_t *h = json_object_get(f->redis, f->argv[3]), *l;
        json_t *lk = json_object_get(f->redis, f->argv[5]);
        if (!json_is_string(lk) || strcmp(json_string_value(lk), f->argv[7]) != 0) {
            struct err e = ERR_INIT;
            err_set(&e, ERRC_UNAVAILABLE, "LOCKLOST");
            argv_free(f);
            f->rcb(f->arg, NULL, &e);
            return;
        }
        if (h == NULL) {
            json_object_set_new(f->redis, f->argv[3], json_object());
            h = json_object_get(f->redis, f->argv[3]);
        }
        for (int i = 9; i + 1 < f->argc; i += 2) {
            json_object_set_new(h, f->argv[i], json_string(f->argv[i + 1]));
        }
        l = json_object_get(f->redis, f->argv[4]);
        if (l == NULL) {
            json_object_set_new(f->redis, f->argv[4], json_array());
            l = json_object_get(f->redis, f->argv[4]);
        }
        json_array_append_new(l, json_string(f->argv[6]));
        rep.type = STORE_REPLY_INTEGER;
        rep.integer = 1;
    } else if (strcmp(cmd, "EVAL") == 0) { /* unlock */
        json_t *v = json_object_get(f->redis, f->argv[3]);
        rep.type = STORE_REPLY_INTEGER;
        if (json_is_string(v) && strcmp(json_string_value(v), f->argv[4]) == 0) {
            json_object_del(f->redis, f->argv[3]);
            rep.integer = 1;
        }
    }
    argv_free(f);
    f->rcb(f->arg, &rep, NULL);
    xfree(el);
}

/* AWS's record of a certificate: {certificateId, caCertificateId, status, certificatePem}. */
static json_t *aws_desc(struct fake *f, const char *id)
{
    char key[100];
    snprintf(key, sizeof(key), "aws:desc:%s", id ? id : "");
    return json_object_get(f->redis, key);
}

/* AWS's attachments: "aws:things:<principal>" the things of a principal, "aws:pols:<target>"
 * the policies of a target (names, each once). */
static json_t *aws_attached(struct fake *f, const char *what, const json_t *arn)
{
    char key[400];
    snprintf(key, sizeof(key), "aws:%s:%s", what,
             json_is_string(arn) ? json_string_value(arn) : "");
    return json_object_get(f->redis, key);
}

static void aws_attach(struct fake *f, const char *what, const char *arn, const char *name)
{
    json_t *a = json_string(arn ? arn : ""), *l = aws_attached(f, what, a), *v;
    size_t i;
    if (l == NULL) {
        char key[400];
        snprintf(key, sizeof(key), "aws:%s:%s", what, arn ? arn : "");
        json_object_set_new(f->redis, key, json_array());
        l = aws_attached(f, what, a);
    }
    json_decref(a);
    json_array_foreach(l, i, v)
    {
        if (strcmp(json_string_value(v), name ? name : "") == 0) {
            return;
        }
    }
    json_array_append_new(l, json_string(name ? name : ""));
}

static void serve_aws(struct fake *f)
{
    struct aws_iot_result res;
    struct err e = ERR_INIT;
    json_t *out = json_object();
    const char *name = aws_iot_op_name(f->op);
    const char *cid = json_string_value(json_object_get(f->in, "certificateId"));
    bool fail = f->fail_op && strcmp(f->fail_op, name) == 0;
    bool fail2 = !fail && f->fail_op2 && strcmp(f->fail_op2, name) == 0;
    bool lost = false;
    memset(&res, 0, sizeof(res));
    res.op = f->op;
    res.error_code = "";
    res.error_message = "";
    res.request_id = "req";
    res.out = out;
    if (f->calls.len) {
        buf_addch(&f->calls, ' ');
    }
    buf_addstr(&f->calls, name);
    if (f->op == AWS_IOT_UPDATE_CERTIFICATE) {
        const char *to = json_string_value(json_object_get(f->in, "newStatus"));
        buf_addf(&f->calls, ":%s", to);
        if (!fail && aws_desc(f, cid) != NULL) {
            json_object_set_new(aws_desc(f, cid), "status", json_string(to));
        }
        lost = f->lose_update;
        f->lose_update = false;
    }
    if (f->op == AWS_IOT_UPDATE_THING) {
        json_decref(f->update_in);
        f->update_in = json_incref(f->in);
    }
    if (f->op == AWS_IOT_CREATE_THING) {
        json_decref(f->create_in);
        f->create_in = json_incref(f->in);
    }
    if (f->op == AWS_IOT_ATTACH_THING_PRINCIPAL) {
        json_decref(f->attach_in);
        f->attach_in = json_incref(f->in);
    }
    if (f->op == AWS_IOT_ATTACH_POLICY) {
        json_array_append(f->attached, json_object_get(f->in, "policyName"));
        aws_attach(f, "pols", json_string_value(json_object_get(f->in, "target")),
                   json_string_value(json_object_get(f->in, "policyName")));
    }
    if (f->op == AWS_IOT_ATTACH_THING_PRINCIPAL) {
        aws_attach(f, "things", json_string_value(json_object_get(f->in, "principal")),
                   json_string_value(json_object_get(f->in, "thingName")));
    }
    if (f->op == AWS_IOT_LIST_PRINCIPAL_THINGS) {
        json_t *t = aws_attached(f, "things", json_object_get(f->in, "principal"));
        json_object_set_new(out, "things", t ? json_deep_copy(t) : json_array());
    }
    if (f->op == AWS_IOT_LIST_ATTACHED_POLICIES) {
        json_t *p = aws_attached(f, "pols", json_object_get(f->in, "target")), *g = json_array(),
               *v;
        size_t i;
        json_array_foreach(p, i, v)
        {
            json_array_append_new(g, json_pack("{s:O}", "policyName", v));
        }
        json_object_set_new(out, "policies", g);
    }
    if (f->op == AWS_IOT_LIST_THING_GROUPS_FOR_THING) {
        json_t *g = json_array(), *v;
        size_t i;
        json_array_foreach(f->listed, i, v)
        {
            json_array_append_new(g, json_pack("{s:O}", "groupName", v));
        }
        json_object_set_new(out, "thingGroups", g);
    }
    if (f->op == AWS_IOT_DESCRIBE_CERTIFICATE) {
        if (aws_desc(f, cid) == NULL && !fail) {
            fail = true;
            f->fail_op = name;
            f->fail_code = ERRC_NOT_FOUND;
            f->fail_aws_code = "ResourceNotFoundException";
        } else if (!fail) {
            json_object_set_new(out, "certificateDescription", json_deep_copy(aws_desc(f, cid)));
        }
    }
    json_decref(f->in);
    f->in = NULL;
    f->kind = 0;
    if (fail) {
        f->fail_op = NULL;
        res.error_code = f->fail_aws_code;
        res.status = 400;
        err_set(&e, f->fail_code, "AWS IoT %s: %s", name, f->fail_aws_code);
        f->acb(f->arg, &res, &e);
    } else if (fail2) {
        f->fail_op2 = NULL;
        res.error_code = f->fail_aws_code2;
        res.status = 400;
        err_set(&e, f->fail_code2, "AWS IoT %s: %s", name, f->fail_aws_code2);
        f->acb(f->arg, &res, &e);
    } else if (lost) {
        err_set(&e, ERRC_TIMEOUT, "AWS IoT %s: timed out", name);
        f->acb(f->arg, &res, &e);
    } else {
        res.status = 200;
        f->acb(f->arg, &res, NULL);
    }
    json_decref(out);
}

/* Completes operations until the flow finishes (or, with to_audit, waits for its append). */
static void run_to(struct fake *f, bool to_audit)
{
    while (!f->finished && !(to_audit && f->kind == 4)) {
        if (f->kind == 1) {
            serve_redis(f);
        } else if (f->kind == 2) {
            serve_aws(f);
        } else if (f->kind == 3) {
            f->kind = 0;
            f->dcb(f->arg, NULL);
        } else if (f->kind == 4) {
            serve_audit(f);
        } else if (f->side.on && !f->hold_side) {
            side_promote(f);
        } else {
            break;
        }
    }
}

static void run(struct fake *f)
{
    run_to(f, false);
}

struct world {
    struct fake f;
    struct jitr_io io;
    struct jitr_env env;
    struct jitr_ca cas[3];
    struct ca_profiles *profiles;
    struct jitr_template *tpl;
    X509 *ca, *other;
    char dev_id[65];    /* dev.pem: ours, in the index, PENDING_ACTIVATION under our CA */
    char forged_id[65]; /* forged.pem: the other CA's, not in the index */
    char dev2_id[65];   /* dev2.pem: ours, in the index (serial 99), not in AWS yet */
    struct buf dev_pem, forged_pem, dev2_pem;
};

static int64_t far_future(void)
{
    return time_now_ms() + 400LL * 86400 * 1000;
}

static int64_t far_past(void)
{
    return time_now_ms() - 2LL * 86400 * 1000;
}

/* AWS's record of certificate id: registered under ca_id ("" for none) with status. */
static void aws_set(struct world *w, const char *id, const char *pem, const char *ca_id,
                    const char *status)
{
    char key[100];
    json_t *d =
        json_pack("{s:s, s:s, s:s}", "certificateId", id, "status", status, "certificatePem", pem);
    if (ca_id[0]) {
        json_object_set_new(d, "caCertificateId", json_string(ca_id));
    }
    snprintf(key, sizeof(key), "aws:desc:%s", id);
    json_object_set_new(w->f.redis, key, d);
}

static const char *aws_status(struct world *w, const char *id)
{
    return json_string_value(json_object_get(aws_desc(&w->f, id), "status"));
}

/* The index record of a certificate of ours, as issuance writes it. */
static void index_add(struct world *w, const char *id, const char *serial, const char *b64)
{
    char key[160];
    snprintf(key, sizeof(key), STORE_PREFIX "fp:%s", id);
    json_object_set_new(w->f.redis, key, json_string(serial));
    snprintf(key, sizeof(key), STORE_PREFIX "cert:%s", serial);
    json_object_set_new(w->f.redis, key,
                        json_pack("{s:s, s:s, s:s, s:s, s:s}", "der", b64, "status", "valid", "ca",
                                  "testca", "profile", "device", "serial", serial));
}

static json_t *index_rec(struct world *w, const char *serial)
{
    char key[160];
    snprintf(key, sizeof(key), STORE_PREFIX "cert:%s", serial);
    return json_object_get(w->f.redis, key);
}

static int world_init(struct world *w)
{
    struct err e = ERR_INIT;
    struct buf p = BUF_INIT, b64 = BUF_INIT;
    memset(w, 0, sizeof(*w));
    if (jt_make_pki() != 0) {
        return -1;
    }
    w->f.redis = json_object();
    w->f.log = json_array();
    w->f.attached = json_array();
    w->io = (struct jitr_io){ .ctx = &w->f,
                              .redis = f_redis,
                              .aws = f_aws,
                              .policy_ready = f_policy,
                              .audit = f_audit,
                              .audit_mark = f_audit_mark,
                              .done = f_done,
                              .lease_hold = f_lease_hold,
                              .lease_held = f_lease_held,
                              .lease_drop = f_lease_drop };
    buf_addf(&p, "%s/ca.pem", tt_tmpdir());
    w->ca = jt_load_cert(p.data);
    buf_reset(&p);
    buf_addf(&p, "%s/other.pem", tt_tmpdir());
    w->other = jt_load_cert(p.data);
    /* our CA; another CA of ours registered in AWS; one not registered */
    w->cas[0] = (struct jitr_ca){ "testca", CA_ID, w->ca, true, false };
    w->cas[1] = (struct jitr_ca){ "second", OTHER_ID, w->other, true, false };
    w->cas[2] = (struct jitr_ca){ "unregistered", UNREG_ID, w->ca, false, false };
    w->profiles = ca_profiles_load_dir(JITRCA_PROFILES_DIR, &e);
    buf_reset(&p);
    buf_addf(&p, "%s/policies/templates/default.json", getenv("JITRCA_SOURCE_DIR"));
    w->tpl = jitr_template_load(p.data, NULL, &e);
    w->env = (struct jitr_env){ .cas = w->cas,
                                .ncas = 3,
                                .profiles = w->profiles,
                                .tpl = w->tpl,
                                .region = "us-east-1",
                                .lock_ms = 60000 };
    if (cert_files("dev", &w->dev_pem, &b64, w->dev_id) == 0) {
        index_add(w, w->dev_id, "1234abcd", b64.data);
        aws_set(w, w->dev_id, w->dev_pem.data, CA_ID, "PENDING_ACTIVATION");
    }
    buf_reset(&b64);
    if (cert_files("dev2", &w->dev2_pem, &b64, w->dev2_id) == 0) {
        index_add(w, w->dev2_id, "99", b64.data);
    }
    buf_reset(&b64);
    if (cert_files("forged", &w->forged_pem, &b64, w->forged_id) == 0) {
        aws_set(w, w->forged_id, w->forged_pem.data, FOREIGN_ID, "PENDING_ACTIVATION");
    }
    buf_release(&p);
    buf_release(&b64);
    if (w->tpl == NULL) {
        fprintf(stderr, "%s\n", e.msg);
    }
    return (w->ca && w->other && w->profiles && w->tpl && w->dev_pem.len && w->dev2_pem.len &&
            w->forged_pem.len)
               ? 0
               : -1;
}

static void world_release(struct world *w)
{
    json_decref(w->f.queued);
    json_decref(w->f.redis);
    json_decref(w->f.log);
    json_decref(w->f.update_in);
    json_decref(w->f.create_in);
    json_decref(w->f.attach_in);
    json_decref(w->f.attached);
    json_decref(w->f.listed);
    buf_release(&w->f.calls);
    buf_release(&w->f.policies);
    ca_profiles_free(w->profiles);
    jitr_template_free(w->tpl);
    X509_free(w->ca);
    X509_free(w->other);
    buf_release(&w->dev_pem);
    buf_release(&w->dev2_pem);
    buf_release(&w->forged_pem);
    memset(w, 0, sizeof(*w)); /* released twice (a CHECK between release and init): no-op */
}

/* Replaces the world's template. */
static int world_template(struct world *w, const char *text, const char *policy_name)
{
    struct err e = ERR_INIT;
    jitr_template_free(w->tpl);
    w->tpl = jitr_template_parse(text, strlen(text), "t.json", policy_name, &e);
    w->env.tpl = w->tpl;
    if (w->tpl == NULL) {
        fprintf(stderr, "  template: %s\n", e.msg);
        return -1;
    }
    return 0;
}

/* Runs one flow for cert_id (the event claims ca_id, NULL: ours); returns its outcome. */
static enum jitr_outcome flow_ca(struct world *w, const char *cert_id, const char *ca_id,
                                 struct buf *trace, struct err *why)
{
    struct jitr_event ev;
    struct jitr_req *r;
    enum jitr_outcome o;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.cert_id, sizeof(ev.cert_id), "%s", cert_id);
    snprintf(ev.ca_id, sizeof(ev.ca_id), "%s", ca_id ? ca_id : CA_ID);
    snprintf(ev.account, sizeof(ev.account), "123456789012");
    w->f.finished = false;
    buf_reset(&w->f.calls);
    buf_reset(&w->f.policies);
    json_array_clear(w->f.attached);
    r = jitr_req_new(&w->env, &w->io, &ev, "1-0");
    jitr_req_start(r);
    run(&w->f);
    o = jitr_req_outcome(r);
    buf_reset(trace);
    buf_addstr(trace, jitr_req_trace(r));
    if (why) {
        err_copy(why, jitr_req_err(r));
    }
    jitr_req_free(r);
    return o;
}

static enum jitr_outcome flow(struct world *w, const char *cert_id, struct buf *trace,
                              struct err *why)
{
    return flow_ca(w, cert_id, NULL, trace, why);
}

static const char *calls(struct world *w)
{
    return w->f.calls.data ? w->f.calls.data : "";
}

/* Starts a flow for cert_id and runs it until it waits for its audit append. */
static struct jitr_req *begin(struct world *w, const char *cert_id)
{
    struct jitr_event ev;
    struct jitr_req *r;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.cert_id, sizeof(ev.cert_id), "%s", cert_id);
    snprintf(ev.ca_id, sizeof(ev.ca_id), "%s", CA_ID);
    snprintf(ev.account, sizeof(ev.account), "123456789012");
    w->f.finished = false;
    buf_reset(&w->f.calls);
    r = jitr_req_new(&w->env, &w->io, &ev, "1-0");
    jitr_req_start(r);
    run_to(&w->f, true);
    return r;
}

/* jitrd dies while r waits for its append: Redis keeps what was saved until then (the lock
 * expires); appended says whether the record had reached the log. r is freed. */
static void crash_in_audit(struct world *w, struct jitr_req *r, bool appended)
{
    json_t *saved = json_deep_copy(w->f.redis);
    struct err e = ERR_INIT;
    char key[160];
    bool found;
    if (appended) {
        audit_write(&w->f, &found);
    }
    json_decref(w->f.audit_rec);
    w->f.audit_rec = NULL;
    w->f.kind = 0;
    /* the request object still has to end: whatever it writes now is undone below */
    err_set(&e, ERRC_CANCELED, "crashed");
    w->f.aucb(w->f.arg, 0, false, &e);
    run(&w->f);
    json_decref(w->f.redis);
    w->f.redis = saved;
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:lock:%s", jitr_req_event(r)->cert_id);
    json_object_del(w->f.redis, key);
    jitr_req_free(r);
}

/* Adds a record to the fake audit log (another writer's, or an older one). */
static void log_add(struct world *w, const char *type, const char *cert)
{
    json_array_append_new(w->f.log,
                          json_pack("{s:s, s:s, s:I}", "type", type, "certificate_id", cert, "seq",
                                    (json_int_t)json_array_size(w->f.log) + 1));
}

static const char *dev_state(struct world *w, const char *id, const char *fieldname)
{
    char key[160];
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", id);
    return json_string_value(json_object_get(json_object_get(w->f.redis, key), fieldname));
}

static const char *last_audit(struct world *w, const char *fieldname)
{
    json_t *r = json_array_get(w->f.log, json_array_size(w->f.log) - 1);
    return json_string_value(json_object_get(r, fieldname));
}

#define HAPPY                                                                               \
    "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE POLICY CREATE_THING ATTACH_POLICY PERSIST " \
    "ATTACH_PRINCIPAL PERSIST ACTIVATE PERSIST RECORD PERSIST UNLOCK FINISHED"
#define REJECTED                                                                               \
    "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE REJECT PERSIST RECORD_REJECT PERSIST UNLOCK " \
    "FINISHED"
#define IGNORED \
    "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE PERSIST RECORD_IGNORE PERSIST UNLOCK FINISHED"
#define DEAD "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE PERSIST UNLOCK FINISHED"
#define CALLS                                                            \
    "DescribeCertificate CreateThing AttachPolicy AttachThingPrincipal " \
    "UpdateCertificate:ACTIVE"

static int test_flow_activate_then_duplicate(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, HAPPY);
    /* five AWS calls for a certificate we issued: AWS's record first, no CreatePolicy */
    CHECK_STR_EQ(calls(&w), CALLS);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "ACTIVE");
    CHECK_INT_EQ(w.f.audits, 1);
    CHECK_STR_EQ(last_audit(&w, "type"), "jitr_activate");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "thing"), "dev-0001");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "serial"), "1234abcd");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "aws_status"), "ACTIVE");
    /* the policy is named by its document's SHA-256 */
    CHECK_STR_EQ(json_string_value(json_array_get(w.f.attached, 0)),
                 jitr_template_policy(w.tpl, 0)->hash);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "policies"), jitr_template_policy(w.tpl, 0)->hash);
    CHECK(json_object_get(w.f.attach_in, "thingPrincipalType") == NULL);
    /* the lock was released */
    {
        char key[160];
        snprintf(key, sizeof(key), STORE_PREFIX "jitr:lock:%s", w.dev_id);
        CHECK(json_object_get(w.f.redis, key) == NULL);
    }
    /* a duplicate event does nothing */
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DUPLICATE);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD UNLOCK FINISHED");
    CHECK_STR_EQ(calls(&w), "");
    CHECK_INT_EQ(w.f.audits, 1);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* The lock is a lease (docs/jitr.md "The lock is a lease"): a flow whose lock the worker found
 * lost (Redis lost it in a failover, or it could not be renewed in time) sends nothing more to
 * AWS, above all no UpdateCertificate: it ends RETRY and the retry, under a lock taken again,
 * activates. Every lease is released at the end. */
static int test_flow_lease_lost(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    w.f.lose_lease_after = "AttachThingPrincipal";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_RETRY);
    CHECK_STR_CONTAINS(why.msg, "lock of certificate");
    CHECK_STR_CONTAINS(why.msg, "UpdateCertificate not sent");
    CHECK(strstr(calls(&w), "UpdateCertificate") == NULL);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
    CHECK_INT_EQ(w.f.audits, 0);
    CHECK_INT_EQ(w.f.leases, 0);
    /* lost during CreateThing: the side chain's AttachPolicy is not sent either */
    w.f.lose_lease_after = "DescribeCertificate";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_RETRY);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    CHECK_INT_EQ(w.f.leases, 0);
    w.f.lose_lease_after = NULL;
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_CONTAINS(calls(&w), "UpdateCertificate:ACTIVE");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "ACTIVE");
    CHECK_INT_EQ(w.f.audits, 1);
    CHECK_INT_EQ(w.f.leases, 0);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

static int test_flow_resume_after_failure(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    w.f.fail_op = "AttachThingPrincipal";
    w.f.fail_code = ERRC_UNAVAILABLE;
    w.f.fail_aws_code = "ThrottlingException";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_RETRY);
    CHECK_STR_CONTAINS(why.msg, "AttachThingPrincipal");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "ATTACH_PRINCIPAL");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "attempts"), "1");
    /* the retry checks AWS's record again and resumes at the stored step */
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE ATTACH_PRINCIPAL PERSIST "
                          "ACTIVATE PERSIST RECORD PERSIST UNLOCK FINISHED");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate AttachThingPrincipal UpdateCertificate:ACTIVE");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* The UpdateCertificate of an earlier attempt went through but its reply was lost: the retry
 * sees ACTIVE in AWS and records the activation without asking again. */
static int test_flow_activate_reply_lost(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    w.f.lose_update = true;
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_RETRY);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "ACTIVATE");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "ACTIVE");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE PERSIST RECORD PERSIST "
                          "UNLOCK FINISHED");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
    CHECK_INT_EQ(w.f.audits, 1);
    /* the same for REVOKED */
    world_release(&w);
    CHECK_INT_EQ(world_init(&w), 0);
    json_object_set_new(index_rec(&w, "1234abcd"), "status", json_string("revoked"));
    w.f.lose_update = true;
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_RETRY);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "REJECT");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_REJECTED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    CHECK_STR_EQ(last_audit(&w, "type"), "jitr_reject");
    CHECK_STR_CONTAINS(last_audit(&w, "reason"), "certificate serial 1234abcd is revoked");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* Redis lost the states an attempt saved after a provisioning step (a failover to a replica
 * that lacked the newest writes) while AWS kept what it did: the attempt activated the
 * certificate, and LOAD finds ATTACH_PRINCIPAL. The retry does the idempotent steps from there
 * again, asks no UpdateCertificate and records the activation, rather than leave the certificate
 * alone as an operator's; with no state at all (no attempt of ours known) it is left alone. */
static int test_flow_states_lost(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    char key[160];
    CHECK_INT_EQ(world_init(&w), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "ACTIVE");
    CHECK_INT_EQ(w.f.audits, 1);
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", w.dev_id);
    json_object_set_new(json_object_get(w.f.redis, key), "state", json_string("ATTACH_PRINCIPAL"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE ATTACH_PRINCIPAL PERSIST "
                          "ACTIVATE PERSIST RECORD PERSIST UNLOCK FINISHED");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate AttachThingPrincipal");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
    CHECK_STR_EQ(last_audit(&w, "type"), "jitr_activate");
    CHECK_STR_EQ(last_audit(&w, "aws_status"), "ACTIVE");
    CHECK_INT_EQ(w.f.audits, 2);
    /* the state lost back to ACTIVATE: as for a lost reply, the record only */
    json_object_set_new(json_object_get(w.f.redis, key), "state", json_string("ACTIVATE"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    CHECK_INT_EQ(w.f.audits, 3);
    /* nothing left of any attempt: AWS's facts say whether a flow of ours provisioned it
     * (flow_adopt) */
    json_object_del(w.f.redis, key);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate ListPrincipalThings ListAttachedPolicies");
    CHECK_INT_EQ(w.f.audits, 4);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* ACTIVE in AWS with no state of ours (a failover lost every state a flow saved, or an
 * operator activated it): adopted, its activation recorded and nothing changed in AWS, only
 * when the template's thing holds the certificate and the template's policies are attached to
 * it; anything else is left alone, as before. */
static int test_flow_adopt(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    char key[160], arn[200], pols[400], thing[130];
    json_t *att;
    CHECK_INT_EQ(world_init(&w), 0);
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", w.dev_id);
    snprintf(arn, sizeof(arn), "arn:aws:iot:us-east-1:123456789012:cert/%s", w.dev_id);
    snprintf(pols, sizeof(pols), "aws:pols:%s", arn);
    /* activated by hand, attached to nothing: left alone, nothing asked of AWS but the look */
    aws_set(&w, w.dev_id, w.dev_pem.data, CA_ID, "ACTIVE");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_IGNORED);
    CHECK_STR_CONTAINS(why.msg, "ACTIVE in AWS, not PENDING_ACTIVATION: left alone");
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE ADOPT PERSIST "
                          "RECORD_IGNORE PERSIST UNLOCK FINISHED");
    CHECK_STR_CONTAINS(why.msg, "not attached to the template's thing 'dev-0001'");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate ListPrincipalThings");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "IGNORED");
    CHECK_STR_EQ(last_audit(&w, "type"), "jitr_ignore");
    CHECK(json_object_get(json_array_get(w.f.log, 0), "adopted") == NULL);
    /* on a thing of the operator's: the same */
    json_object_del(w.f.redis, key);
    aws_attach(&w.f, "things", arn, "bench-unit-7");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_IGNORED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate ListPrincipalThings");
    /* provisioned by a flow of ours (PENDING_ACTIVATION, then the whole flow) */
    json_object_del(w.f.redis, key);
    aws_set(&w, w.dev_id, w.dev_pem.data, CA_ID, "PENDING_ACTIVATION");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), CALLS);
    snprintf(thing, sizeof(thing), "%s",
             json_string_value(json_object_get(w.f.attach_in, "thingName")));
    CHECK_STR_EQ(json_string_value(json_object_get(w.f.attach_in, "principal")), arn);
    /* ... its states lost, and its policy detached since: left alone */
    att = json_incref(json_object_get(w.f.redis, pols));
    CHECK(json_array_size(att) == 1);
    json_object_del(w.f.redis, pols);
    json_object_del(w.f.redis, key);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_IGNORED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate ListPrincipalThings ListAttachedPolicies");
    CHECK_STR_CONTAINS(why.msg, "ACTIVE in AWS, not PENDING_ACTIVATION: left alone");
    CHECK_STR_CONTAINS(why.msg, "without the template's policy '");
    /* the policy there: adopted; the look failing first is retried, then it goes on */
    json_object_set_new(w.f.redis, pols, att);
    json_object_del(w.f.redis, key);
    w.f.fail_op = "ListAttachedPolicies";
    w.f.fail_code = ERRC_UNAVAILABLE;
    w.f.fail_aws_code = "ServiceUnavailableException";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_RETRY);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "ADOPT");
    CHECK_INT_EQ(w.f.audits, 4);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE ADOPT PERSIST RECORD "
                          "PERSIST UNLOCK FINISHED");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate ListPrincipalThings ListAttachedPolicies");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "ACTIVE");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "adopted"), "1");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "reason"), "");
    CHECK_STR_EQ(last_audit(&w, "type"), "jitr_activate");
    CHECK_STR_EQ(last_audit(&w, "thing"), thing);
    CHECK(json_is_true(json_object_get(json_array_get(w.f.log, 4), "adopted")));
    CHECK_INT_EQ(w.f.audits, 5);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DUPLICATE);
    CHECK_STR_EQ(calls(&w), "");
    /* not ours to adopt whatever AWS holds: revoked in our index (a fact), not in it */
    json_object_del(w.f.redis, key);
    json_object_set_new(index_rec(&w, "1234abcd"), "status", json_string("revoked"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_IGNORED);
    CHECK_STR_CONTAINS(why.msg, "ACTIVE in AWS, not PENDING_ACTIVATION: left alone");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    json_object_del(w.f.redis, key);
    {
        char fp[160];
        snprintf(fp, sizeof(fp), STORE_PREFIX "fp:%s", w.dev_id);
        json_object_del(w.f.redis, fp);
    }
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_IGNORED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "ACTIVE");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

static int test_flow_permanent_failure(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    w.f.fail_op = "CreateThing";
    w.f.fail_code = ERRC_INVALID;
    w.f.fail_aws_code = "InvalidRequestException";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "CreateThing");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DEAD");
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE POLICY CREATE_THING "
                          "PERSIST UNLOCK FINISHED");
    /* the AttachPolicy started alongside CreateThing ended before the flow did (UNLOCK waits
     * for it); nothing after them */
    CHECK_STR_EQ(calls(&w), "DescribeCertificate CreateThing AttachPolicy");
    CHECK_INT_EQ(w.f.audits, 0);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* ---- the round trips: AttachPolicy alongside CreateThing -------------------------------- */

/* Serves Redis, the policy and the audit until the flow waits for an AWS call (or ends). */
static void to_aws(struct fake *f)
{
    while (!f->finished) {
        if (f->kind == 1) {
            serve_redis(f);
        } else if (f->kind == 3) {
            f->kind = 0;
            f->dcb(f->arg, NULL);
        } else if (f->kind == 4) {
            serve_audit(f);
        } else {
            return;
        }
    }
}

/* Answers the call alongside before the pending one (its completion starts no other call). */
static void serve_side_first(struct fake *f)
{
    enum aws_iot_op op = f->op;
    json_t *in = f->in;
    aws_iot_cb *acb = f->acb;
    void *arg = f->arg;
    side_promote(f);
    serve_aws(f);
    BUG_ON(f->kind != 0 || f->side.on);
    f->kind = 2;
    f->op = op;
    f->in = in;
    f->acb = acb;
    f->arg = arg;
}

/* Starts a flow for cert_id (our CA's event) and serves up to its first AWS call. */
static struct jitr_req *start_flow(struct world *w, const char *cert_id)
{
    struct jitr_event ev;
    struct jitr_req *r;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.cert_id, sizeof(ev.cert_id), "%s", cert_id);
    snprintf(ev.ca_id, sizeof(ev.ca_id), "%s", CA_ID);
    snprintf(ev.account, sizeof(ev.account), "123456789012");
    w->f.finished = false;
    buf_reset(&w->f.calls);
    r = jitr_req_new(&w->env, &w->io, &ev, "1-0");
    jitr_req_start(r);
    to_aws(&w->f);
    return r;
}

/* jitrd dies now: the AWS calls in flight never reach AWS, Redis keeps what was saved (the lock
 * expires). r is freed. */
static void crash_now(struct world *w, struct jitr_req *r)
{
    json_t *saved = json_deep_copy(w->f.redis);
    struct err e = ERR_INIT;
    char key[160];
    err_set(&e, ERRC_CANCELED, "crashed");
    /* the request object still has to end: whatever it writes now is undone below */
    while (!w->f.finished) {
        if (w->f.kind == 0 && w->f.side.on) {
            side_promote(&w->f);
        }
        if (w->f.kind == 2) {
            struct aws_iot_result res;
            memset(&res, 0, sizeof(res));
            res.op = w->f.op;
            res.error_code = "";
            res.error_message = "";
            res.request_id = "";
            json_decref(w->f.in);
            w->f.in = NULL;
            w->f.kind = 0;
            w->f.acb(w->f.arg, &res, &e);
        } else if (w->f.kind == 4) {
            json_decref(w->f.audit_rec);
            w->f.audit_rec = NULL;
            w->f.kind = 0;
            w->f.aucb(w->f.arg, 0, false, &e);
        } else if (w->f.kind != 0) {
            run_to(&w->f, false);
        } else {
            break;
        }
    }
    json_decref(w->f.redis);
    w->f.redis = saved;
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:lock:%s", jitr_req_event(r)->cert_id);
    json_object_del(w->f.redis, key);
    jitr_req_free(r);
}

/* After DescribeCertificate (no AWS write before it), CreateThing and the certificate's
 * AttachPolicy are in flight together; AttachThingPrincipal waits for the thing, and for the
 * join's save; UpdateCertificate comes last. Either may answer first. */
static int test_flow_round_trips(void)
{
    int rc = 0;
    struct world w;
    struct jitr_req *r = NULL;
    CHECK_INT_EQ(world_init(&w), 0);
    r = start_flow(&w, w.dev_id);
    CHECK_INT_EQ(w.f.kind, 2);
    CHECK_STR_EQ(aws_iot_op_name(w.f.op), "DescribeCertificate");
    CHECK(!w.f.side.on);
    serve_aws(&w.f);
    to_aws(&w.f);
    /* the second round trip: both calls in flight at once */
    CHECK_INT_EQ(w.f.kind, 2);
    CHECK_STR_EQ(aws_iot_op_name(w.f.op), "CreateThing");
    CHECK(w.f.side.on);
    CHECK_STR_EQ(aws_iot_op_name(w.f.side.op), "AttachPolicy");
    CHECK_STR_EQ(json_string_value(json_object_get(w.f.side.in, "policyName")),
                 jitr_template_policy(w.tpl, 0)->hash);
    CHECK(dev_state(&w, w.dev_id, "state") == NULL); /* nothing saved yet */
    /* AttachPolicy answers first: nothing starts until the thing is there */
    serve_side_first(&w.f);
    to_aws(&w.f);
    CHECK_INT_EQ(w.f.kind, 2);
    CHECK_STR_EQ(aws_iot_op_name(w.f.op), "CreateThing");
    CHECK(!w.f.side.on);
    serve_aws(&w.f);
    to_aws(&w.f);
    /* the join saved both as done, then the third round trip */
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "ATTACH_PRINCIPAL");
    CHECK_INT_EQ(w.f.kind, 2);
    CHECK_STR_EQ(aws_iot_op_name(w.f.op), "AttachThingPrincipal");
    CHECK(!w.f.side.on);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
    serve_aws(&w.f);
    to_aws(&w.f);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "ACTIVATE");
    CHECK_STR_EQ(aws_iot_op_name(w.f.op), "UpdateCertificate");
    CHECK(!w.f.side.on);
    run(&w.f);
    CHECK_INT_EQ(jitr_req_outcome(r), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate AttachPolicy CreateThing AttachThingPrincipal "
                            "UpdateCertificate:ACTIVE");
    CHECK_STR_EQ(jitr_req_trace(r), HAPPY);
    CHECK_INT_EQ(w.f.max_aws, 2);
    CHECK_INT_EQ(jitr_req_aws_calls(r), 5);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "ACTIVE");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
    jitr_req_free(r);
    r = NULL;
    world_release(&w);
    /* a certificate that is not ours: DescribeCertificate alone, nothing in flight beside it */
    CHECK_INT_EQ(world_init(&w), 0);
    r = start_flow(&w, w.forged_id);
    CHECK(!w.f.side.on);
    run(&w.f);
    CHECK_INT_EQ(jitr_req_outcome(r), JITR_OUT_IGNORED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    CHECK_INT_EQ(w.f.max_aws, 1);
out:
    if (r != NULL) {
        run(&w.f);
        jitr_req_free(r);
    }
    world_release(&w);
    return rc;
}

/* jitrd dies between the two calls of the second round trip (either one answered, the other
 * lost), or after the join's save: the replay knows from the saved state what is done. */
static int test_flow_crash_round_trips(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct jitr_req *r;
    /* CreateThing answered, AttachPolicy lost: nothing was saved, both run again */
    CHECK_INT_EQ(world_init(&w), 0);
    r = start_flow(&w, w.dev_id);
    serve_aws(&w.f); /* DescribeCertificate */
    to_aws(&w.f);
    CHECK(w.f.side.on);
    w.f.hold_side = true;
    serve_aws(&w.f); /* CreateThing */
    to_aws(&w.f);
    CHECK_INT_EQ(w.f.kind, 0); /* the join waits for AttachPolicy */
    CHECK_INT_EQ(jitr_req_state(r), JITR_ST_ATTACH_POLICY);
    w.f.hold_side = false;
    crash_now(&w, r);
    CHECK(dev_state(&w, w.dev_id, "state") == NULL);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), CALLS);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "ACTIVE");
    CHECK_INT_EQ(json_array_size(w.f.log), 1);
    world_release(&w);
    /* AttachPolicy answered, CreateThing lost: the same */
    CHECK_INT_EQ(world_init(&w), 0);
    r = start_flow(&w, w.dev_id);
    serve_aws(&w.f);
    to_aws(&w.f);
    serve_side_first(&w.f);
    crash_now(&w, r);
    CHECK(dev_state(&w, w.dev_id, "state") == NULL);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), CALLS);
    CHECK_STR_EQ(tr.data, HAPPY);
    world_release(&w);
    /* both answered and saved (ATTACH_PRINCIPAL), AttachThingPrincipal lost: neither again */
    CHECK_INT_EQ(world_init(&w), 0);
    r = start_flow(&w, w.dev_id);
    serve_aws(&w.f); /* DescribeCertificate */
    to_aws(&w.f);
    serve_aws(&w.f); /* CreateThing */
    side_promote(&w.f);
    serve_aws(&w.f); /* AttachPolicy */
    to_aws(&w.f);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "ATTACH_PRINCIPAL");
    CHECK_STR_EQ(aws_iot_op_name(w.f.op), "AttachThingPrincipal");
    crash_now(&w, r);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate AttachThingPrincipal UpdateCertificate:ACTIVE");
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE ATTACH_PRINCIPAL PERSIST "
                          "ACTIVATE PERSIST RECORD PERSIST UNLOCK FINISHED");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "ACTIVE");
    world_release(&w);
    /* AttachPolicy fails (throttled after the client's retries) while CreateThing succeeds: a
     * retry resumes at ATTACH_POLICY, the thing is not created again */
    CHECK_INT_EQ(world_init(&w), 0);
    w.f.fail_op = "AttachPolicy";
    w.f.fail_code = ERRC_UNAVAILABLE;
    w.f.fail_aws_code = "ThrottlingException";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_RETRY);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate CreateThing AttachPolicy");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "ATTACH_POLICY");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
    w.f.max_aws = 0;
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate AttachPolicy AttachThingPrincipal "
                            "UpdateCertificate:ACTIVE");
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE POLICY ATTACH_POLICY "
                          "PERSIST ATTACH_PRINCIPAL PERSIST ACTIVATE PERSIST RECORD PERSIST "
                          "UNLOCK FINISHED");
    CHECK_INT_EQ(w.f.max_aws, 1);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

static int test_flow_thing_exists(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    w.f.fail_op = "CreateThing";
    w.f.fail_code = ERRC_CONFLICT;
    w.f.fail_aws_code = "ResourceAlreadyExistsException";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, HAPPY);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "existed"), "1");
    /* by config: a dead letter instead */
    world_release(&w);
    CHECK_INT_EQ(world_init(&w), 0);
    w.env.thing_conflict_fail = true;
    w.f.fail_op = "CreateThing";
    w.f.fail_code = ERRC_CONFLICT;
    w.f.fail_aws_code = "ResourceAlreadyExistsException";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DEAD);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* Facts about the certificate: REVOKED (or left pending by config), audited. */
static int test_flow_revoked(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    json_object_set_new(index_rec(&w, "1234abcd"), "status", json_string("revoked"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_REJECTED);
    CHECK_STR_CONTAINS(why.msg, "certificate serial 1234abcd is revoked");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate UpdateCertificate:REVOKED");
    CHECK_STR_EQ(tr.data, REJECTED);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "REJECTED");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "REVOKED");
    CHECK_INT_EQ(w.f.audits, 1);
    CHECK_STR_EQ(last_audit(&w, "aws_status"), "REVOKED");
    /* never activated, even when the event comes again */
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DUPLICATE);
    world_release(&w);
    /* expired (the clock moved past notAfter), and left pending by config */
    CHECK_INT_EQ(world_init(&w), 0);
    w.env.now_ms = far_future;
    w.env.reject_leave_pending = true;
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_REJECTED);
    CHECK_STR_CONTAINS(why.msg, "has expired");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
    world_release(&w);
    /* the CA AWS names is marked compromised */
    CHECK_INT_EQ(world_init(&w), 0);
    w.cas[0].compromised = true;
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_REJECTED);
    CHECK_STR_CONTAINS(why.msg, "CA 'testca' is marked compromised");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "REVOKED");
    world_release(&w);
    /* AWS names a CA of ours that did not sign it (the other CA's key signed it) */
    CHECK_INT_EQ(world_init(&w), 0);
    aws_set(&w, w.forged_id, w.forged_pem.data, CA_ID, "PENDING_ACTIVATION");
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.forged_id, &tr, &why), JITR_OUT_REJECTED);
    CHECK_STR_CONTAINS(why.msg, "not signed by CA 'testca', under which AWS registered it");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate UpdateCertificate:REVOKED");
    world_release(&w);
    /* AWS's copy is not the certificate the id names */
    CHECK_INT_EQ(world_init(&w), 0);
    aws_set(&w, w.dev_id, w.dev2_pem.data, CA_ID, "PENDING_ACTIVATION");
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_REJECTED);
    CHECK_STR_CONTAINS(why.msg, "not the certificateId");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* What is not ours to touch: nothing is asked of AWS but DescribeCertificate, and the record
 * says why. */
static int test_flow_not_ours(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    /* another CA's certificate, ACTIVE in AWS, with an event that claims our CA */
    aws_set(&w, w.forged_id, w.forged_pem.data, FOREIGN_ID, "ACTIVE");
    CHECK_INT_EQ(flow(&w, w.forged_id, &tr, &why), JITR_OUT_IGNORED);
    CHECK_STR_EQ(tr.data, IGNORED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    CHECK_STR_EQ(aws_status(&w, w.forged_id), "ACTIVE");
    CHECK_STR_CONTAINS(why.msg, "AWS registered it under CA dddddddddddddddd..., not under one "
                                "of our CAs");
    CHECK_STR_CONTAINS(why.msg, "ACTIVE in AWS: left alone");
    CHECK_STR_EQ(dev_state(&w, w.forged_id, "state"), "IGNORED");
    CHECK_STR_CONTAINS(dev_state(&w, w.forged_id, "reason"), "left alone");
    CHECK_STR_EQ(last_audit(&w, "type"), "jitr_ignore");
    CHECK_STR_EQ(last_audit(&w, "aws_status"), "ACTIVE");
    /* the same event again: nothing at all */
    CHECK_INT_EQ(flow(&w, w.forged_id, &tr, NULL), JITR_OUT_DUPLICATE);
    CHECK_STR_EQ(calls(&w), "");
    CHECK_INT_EQ(w.f.audits, 1);
    world_release(&w);
    /* another CA's certificate, PENDING_ACTIVATION */
    CHECK_INT_EQ(world_init(&w), 0);
    CHECK_INT_EQ(flow(&w, w.forged_id, &tr, &why), JITR_OUT_IGNORED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    CHECK_STR_EQ(aws_status(&w, w.forged_id), "PENDING_ACTIVATION");
    world_release(&w);
    /* registered without a CA */
    CHECK_INT_EQ(world_init(&w), 0);
    aws_set(&w, w.forged_id, w.forged_pem.data, "", "INACTIVE");
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.forged_id, &tr, &why), JITR_OUT_IGNORED);
    CHECK_STR_CONTAINS(why.msg, "AWS registered it without a CA");
    CHECK_STR_EQ(aws_status(&w, w.forged_id), "INACTIVE");
    world_release(&w);
    /* a CA of ours that is not registered in AWS does not count */
    CHECK_INT_EQ(world_init(&w), 0);
    aws_set(&w, w.dev_id, w.dev_pem.data, UNREG_ID, "PENDING_ACTIVATION");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_IGNORED);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
    world_release(&w);
    /* ours, but ACTIVE or REVOKED in AWS already (an operator's doing): left alone, even when our
     * index says revoked */
    CHECK_INT_EQ(world_init(&w), 0);
    aws_set(&w, w.dev_id, w.dev_pem.data, CA_ID, "INACTIVE");
    json_object_set_new(index_rec(&w, "1234abcd"), "status", json_string("revoked"));
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_IGNORED);
    CHECK_STR_CONTAINS(why.msg, "INACTIVE in AWS, not PENDING_ACTIVATION: left alone");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "INACTIVE");
    aws_set(&w, w.dev2_id, w.dev2_pem.data, CA_ID, "REVOKED");
    CHECK_INT_EQ(flow(&w, w.dev2_id, &tr, NULL), JITR_OUT_IGNORED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* A certificate our register job registered (jitr:dev:<id> registered = 1, jobs/register.c):
 * INACTIVE in AWS is ours to provision like PENDING_ACTIVATION; registered without a CA (an
 * SNI_ONLY CA of ours) the event's CA is checked instead; facts about it still revoke it. */
static void mark_registered(struct world *w, const char *id)
{
    char key[160];
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", id);
    json_object_set_new(w->f.redis, key, json_pack("{s:s}", "registered", "1"));
}

static int test_flow_registered(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    /* registered INACTIVE under our CA: provisioned, ACTIVE last */
    CHECK_INT_EQ(world_init(&w), 0);
    aws_set(&w, w.dev_id, w.dev_pem.data, CA_ID, "INACTIVE");
    mark_registered(&w, w.dev_id);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "ACTIVE");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "thing"), "dev-0001");
    CHECK_STR_EQ(last_audit(&w, "type"), "jitr_activate");
    world_release(&w);
    /* registered without a CA (SNI_ONLY): the event's CA, ours, signed it: provisioned */
    CHECK_INT_EQ(world_init(&w), 0);
    aws_set(&w, w.dev_id, w.dev_pem.data, "", "INACTIVE");
    mark_registered(&w, w.dev_id);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "ACTIVE");
    world_release(&w);
    /* not marked: INACTIVE without a CA is not ours (as before) */
    CHECK_INT_EQ(world_init(&w), 0);
    aws_set(&w, w.dev_id, w.dev_pem.data, "", "INACTIVE");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_IGNORED);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "INACTIVE");
    world_release(&w);
    /* marked, but not signed by the CA the event names: a fact, REVOKED */
    CHECK_INT_EQ(world_init(&w), 0);
    aws_set(&w, w.forged_id, w.forged_pem.data, "", "INACTIVE");
    mark_registered(&w, w.forged_id);
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.forged_id, &tr, &why), JITR_OUT_REJECTED);
    CHECK_STR_CONTAINS(why.msg, "not signed by CA 'testca'");
    CHECK_STR_EQ(aws_status(&w, w.forged_id), "REVOKED");
    world_release(&w);
    /* marked, revoked in our index since: REVOKED; on hold: a dead letter, INACTIVE kept */
    CHECK_INT_EQ(world_init(&w), 0);
    aws_set(&w, w.dev_id, w.dev_pem.data, CA_ID, "INACTIVE");
    mark_registered(&w, w.dev_id);
    json_object_set_new(index_rec(&w, "1234abcd"), "status", json_string("revoked"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_REJECTED);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "REVOKED");
    world_release(&w);
    CHECK_INT_EQ(world_init(&w), 0);
    aws_set(&w, w.dev_id, w.dev_pem.data, CA_ID, "INACTIVE");
    mark_registered(&w, w.dev_id);
    json_object_set_new(index_rec(&w, "1234abcd"), "status", json_string("revoked"));
    json_object_set_new(index_rec(&w, "1234abcd"), "reason", json_string("certificateHold"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DEAD);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "INACTIVE");
    world_release(&w);
    /* marked with status INACTIVE (jitrctl aws register-batch --status INACTIVE): thing,
     * policy and principal, no UpdateCertificate, INACTIVE recorded */
    CHECK_INT_EQ(world_init(&w), 0);
    aws_set(&w, w.dev_id, w.dev_pem.data, CA_ID, "INACTIVE");
    mark_registered(&w, w.dev_id);
    {
        char key[160];
        snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", w.dev_id);
        json_object_set_new(json_object_get(w.f.redis, key), "status", json_string("INACTIVE"));
    }
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "INACTIVE");
    CHECK(strstr(calls(&w), "AttachThingPrincipal") != NULL);
    CHECK(strstr(calls(&w), "UpdateCertificate") == NULL);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "thing"), "dev-0001");
    CHECK_STR_EQ(last_audit(&w, "type"), "jitr_activate");
    CHECK_STR_EQ(last_audit(&w, "aws_status"), "INACTIVE");
    world_release(&w);
    /* REVOKED in AWS and marked: final, left alone */
    CHECK_INT_EQ(world_init(&w), 0);
    aws_set(&w, w.dev_id, w.dev_pem.data, CA_ID, "REVOKED");
    mark_registered(&w, w.dev_id);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_IGNORED);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "REVOKED");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* Our configuration or state: dead letters, nothing changed in AWS; retried after the fix. */
static int test_flow_config_dead_letters(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    json_t *rec;
    /* profile without JITR */
    CHECK_INT_EQ(world_init(&w), 0);
    rec = index_rec(&w, "1234abcd");
    json_object_set_new(rec, "profile", json_string("station"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "profile 'station' does not allow JITR");
    CHECK_STR_EQ(tr.data, DEAD);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DEAD");
    CHECK_STR_CONTAINS(dev_state(&w, w.dev_id, "reason"), "does not allow JITR");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
    CHECK_INT_EQ(w.f.audits, 0);
    /* fixed: the retry provisions */
    json_object_set_new(rec, "profile", json_string("device"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, HAPPY);
    world_release(&w);
    /* unknown profile */
    CHECK_INT_EQ(world_init(&w), 0);
    json_object_set_new(index_rec(&w, "1234abcd"), "profile", json_string("gone"));
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "profile 'gone' of serial 1234abcd is unknown");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
    world_release(&w);
    /* signed by our CA, not in our index */
    CHECK_INT_EQ(world_init(&w), 0);
    json_object_del(w.f.redis, STORE_PREFIX "cert:1234abcd");
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "signed by CA 'testca' but not in our index: run jitrctl "
                                "reindex");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
    world_release(&w);
    /* the index holds another certificate under this id */
    CHECK_INT_EQ(world_init(&w), 0);
    json_object_set(index_rec(&w, "1234abcd"), "der", json_object_get(index_rec(&w, "99"), "der"));
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "our index holds another certificate");
    world_release(&w);
    /* not valid yet (our clock behind its notBefore): a dead letter, not a revocation */
    CHECK_INT_EQ(world_init(&w), 0);
    w.env.now_ms = far_past;
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "is not valid yet");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
    world_release(&w);
    /* AWS does not know the certificate */
    CHECK_INT_EQ(world_init(&w), 0);
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev2_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "DescribeCertificate: AWS IoT DescribeCertificate: "
                                "ResourceNotFoundException");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

#define TPL_POLICY                                                                                 \
    "\"policy\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":"                \
    "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\"," \
    "\"Resource\":\"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}\"}]}}}"
#define P_CN "\"AWS::IoT::Certificate::CommonName\":{\"Type\":\"String\"}"

/* A template the certificate cannot satisfy: a dead letter naming the parameter, the
 * certificate stays PENDING_ACTIVATION; the same for a name AWS would refuse. Values AWS
 * accepts pass, '=', '[' and ']' included. */
static int test_flow_template_dead_letters(void)
{
    static const char needs_state[] =
        "{\"Parameters\":{" P_CN ",\"AWS::IoT::Certificate::StateName\":{\"Type\":\"String\"}},"
        "\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":"
        "{\"Fn::Join\":[\"-\",[{\"Ref\":\"AWS::IoT::Certificate::StateName\"},{\"Ref\":"
        "\"AWS::IoT::Certificate::CommonName\"}]]}}}," TPL_POLICY "}}";
    static const char bad_name[] =
        "{\"Parameters\":{" P_CN ",\"AWS::IoT::Certificate::Organization\":{\"Type\":\"String\"}},"
        "\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":"
        "{\"Fn::Join\":[\"/\",[{\"Ref\":\"AWS::IoT::Certificate::Organization\"},{\"Ref\":"
        "\"AWS::IoT::Certificate::CommonName\"}]]}}}," TPL_POLICY "}}";
    static const char values[] =
        "{\"Parameters\":{" P_CN "},\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\","
        "\"Properties\":{\"ThingName\":{\"Ref\":\"AWS::IoT::Certificate::CommonName\"},"
        "\"AttributePayload\":{\"slot\":\"rack=3[a]\",\"path\":\"a/b:c#d@e.f,g_h-i\"}}}," TPL_POLICY
        "}}";
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    CHECK_INT_EQ(world_template(&w, needs_state, NULL), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "parameter 'AWS::IoT::Certificate::StateName' has no value");
    CHECK_STR_EQ(tr.data, DEAD);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DEAD");
    world_release(&w);
    CHECK_INT_EQ(world_init(&w), 0);
    CHECK_INT_EQ(world_template(&w, bad_name, NULL), 0);
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "thing name 'Acme/dev-0001' is not 1..128 of [a-zA-Z0-9:_-]");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
    world_release(&w);
    CHECK_INT_EQ(world_init(&w), 0);
    CHECK_INT_EQ(world_template(&w, values, NULL), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(
        json_string_value(json_object_get(
            json_object_get(json_object_get(w.f.create_in, "attributePayload"), "attributes"),
            "slot")),
        "rack=3[a]");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* jitr.exclusive_thing: AttachThingPrincipal EXCLUSIVE_THING. */
static int test_flow_exclusive_thing(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    w.env.exclusive_thing = true;
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(json_string_value(json_object_get(w.f.attach_in, "thingPrincipalType")),
                 "EXCLUSIVE_THING");
    CHECK_STR_EQ(json_string_value(json_object_get(w.f.attach_in, "thingName")), "dev-0001");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* Several policies: each made ready once, each attached, in the template's order. */
static int test_flow_policies(void)
{
    static const char tpl[] =
        "{\"Parameters\":{" P_CN "},\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\","
        "\"Properties\":{\"ThingName\":{\"Ref\":\"AWS::IoT::Certificate::CommonName\"}}},"
        "\"shared\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":"
        "\"fleet-ops\"}}," TPL_POLICY "}}";
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    CHECK_INT_EQ(world_template(&w, tpl, NULL), 0);
    CHECK_INT_EQ(jitr_template_npolicies(w.tpl), 2);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(w.f.policies.data, "0 1");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate CreateThing AttachPolicy AttachPolicy "
                            "AttachThingPrincipal UpdateCertificate:ACTIVE");
    CHECK_INT_EQ(json_array_size(w.f.attached), 2);
    CHECK_STR_EQ(json_string_value(json_array_get(w.f.attached, 0)), "fleet-ops");
    CHECK_STR_EQ(json_string_value(json_array_get(w.f.attached, 1)),
                 jitr_template_policy(w.tpl, 1)->hash);
    CHECK_STR_EQ(last_audit(&w, "type"), "jitr_activate");
    {
        json_t *pols = json_object_get(json_array_get(w.f.log, 0), "policies");
        CHECK_INT_EQ(json_array_size(pols), 2);
        CHECK_STR_EQ(json_string_value(json_array_get(pols, 0)), "fleet-ops");
    }
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* Runs one flow for cert_id with the template t a register job carries (NULL: jitrd's). */
static enum jitr_outcome flow_tpl(struct world *w, const char *cert_id,
                                  const struct jitr_template *t, const char *sha, struct buf *trace,
                                  struct err *why)
{
    struct jitr_event ev;
    struct jitr_req *r;
    enum jitr_outcome o;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.cert_id, sizeof(ev.cert_id), "%s", cert_id);
    snprintf(ev.ca_id, sizeof(ev.ca_id), "%s", CA_ID);
    snprintf(ev.account, sizeof(ev.account), "123456789012");
    w->f.finished = false;
    w->f.policy_t = NULL;
    buf_reset(&w->f.calls);
    buf_reset(&w->f.policies);
    json_array_clear(w->f.attached);
    r = jitr_req_new(&w->env, &w->io, &ev, "1-0");
    if (t != NULL) {
        jitr_req_set_template(r, t, sha);
    }
    jitr_req_start(r);
    run(&w->f);
    o = jitr_req_outcome(r);
    buf_reset(trace);
    buf_addstr(trace, jitr_req_trace(r));
    err_copy(why, jitr_req_err(r));
    jitr_req_free(r);
    return o;
}

/* A register job's own template (jitrctl aws register-batch --template): the flow names the
 * thing, ensures and attaches the policies of that template, not jitrd's (env->tpl); a flow
 * carrying another template than the certificate's record names changes nothing; a later event
 * for the certificate provisioned with it is a duplicate. */
static int test_flow_template(void)
{
    static const char tpl[] =
        "{\"Parameters\":{" P_CN "},\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\","
        "\"Properties\":{\"ThingName\":{\"Fn::Join\":[\"\",[\"fleetb-\",{\"Ref\":"
        "\"AWS::IoT::Certificate::CommonName\"}]]}}},\"shared\":{\"Type\":\"AWS::IoT::Policy\","
        "\"Properties\":{\"PolicyName\":\"fleet-b\"}}}}";
    static const char sha[] = "5ab1f0e7c1d8a3b2c4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT, e = ERR_INIT;
    struct jitr_template *t = jitr_template_parse(tpl, strlen(tpl), "t.json", NULL, &e);
    char key[160];
    CHECK(t != NULL);
    CHECK_INT_EQ(world_init(&w), 0);
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", w.dev_id);
    aws_set(&w, w.dev_id, w.dev_pem.data, CA_ID, "INACTIVE");
    mark_registered(&w, w.dev_id);
    json_object_set_new(json_object_get(w.f.redis, key), "tpl", json_string(sha));
    /* jitrd's template against a record that names T: nothing read from AWS, record kept */
    CHECK_INT_EQ(flow_tpl(&w, w.dev_id, NULL, NULL, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD UNLOCK FINISHED");
    CHECK_STR_CONTAINS(why.msg, "left to its register job");
    CHECK_STR_CONTAINS(why.msg, sha);
    CHECK_STR_EQ(calls(&w), "");
    CHECK(dev_state(&w, w.dev_id, "state") == NULL);
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "INACTIVE");
    /* T: its thing, its policy (ensured for T), ACTIVE last */
    CHECK_INT_EQ(flow_tpl(&w, w.dev_id, t, sha, &tr, &why), JITR_OUT_ACTIVATED);
    CHECK(w.f.policy_t == t);
    CHECK_STR_EQ(calls(&w), CALLS);
    CHECK_STR_EQ(json_string_value(json_array_get(w.f.attached, 0)), "fleet-b");
    CHECK_INT_EQ(json_array_size(w.f.attached), 1);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "thing"), "fleetb-dev-0001");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "ACTIVE");
    CHECK_STR_EQ(last_audit(&w, "type"), "jitr_activate");
    /* a later event (jitrd's template): done already, nothing called */
    CHECK_INT_EQ(flow_tpl(&w, w.dev_id, NULL, NULL, &tr, &why), JITR_OUT_DUPLICATE);
    CHECK_STR_EQ(calls(&w), "");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "thing"), "fleetb-dev-0001");
    world_release(&w);
    /* a record without a template and a flow carrying T: left alone too */
    CHECK_INT_EQ(world_init(&w), 0);
    aws_set(&w, w.dev_id, w.dev_pem.data, CA_ID, "INACTIVE");
    mark_registered(&w, w.dev_id);
    CHECK_INT_EQ(flow_tpl(&w, w.dev_id, t, sha, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "jitrd's template");
    CHECK_STR_EQ(calls(&w), "");
    /* and jitrd's template provisions it as before */
    CHECK_INT_EQ(flow_tpl(&w, w.dev_id, NULL, NULL, &tr, &why), JITR_OUT_ACTIVATED);
    CHECK(w.f.policy_t == w.tpl);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "thing"), "dev-0001");
out:
    jitr_template_free(t);
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* The certificate's OverrideSettings.Status: REPLACE sets the template's status on a
 * certificate that is ACTIVE or INACTIVE already (never on a REVOKED one); FAIL makes such a
 * certificate a dead letter. */
static int test_flow_status_override(void)
{
    static const char replace_inactive[] =
        "{\"Parameters\":{" P_CN "},\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\","
        "\"Properties\":{\"ThingName\":{\"Ref\":\"AWS::IoT::Certificate::CommonName\"}}},"
        "\"certificate\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{\"Status\":"
        "\"Inactive\"},\"OverrideSettings\":{\"Status\":\"REPLACE\"}}," TPL_POLICY "}}";
    static const char replace_active[] =
        "{\"Parameters\":{" P_CN "},\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\","
        "\"Properties\":{\"ThingName\":{\"Ref\":\"AWS::IoT::Certificate::CommonName\"}}},"
        "\"certificate\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{\"Status\":"
        "\"ACTIVE\"},\"OverrideSettings\":{\"Status\":\"REPLACE\"}}," TPL_POLICY "}}";
    static const char fail[] =
        "{\"Parameters\":{" P_CN "},\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\","
        "\"Properties\":{\"ThingName\":{\"Ref\":\"AWS::IoT::Certificate::CommonName\"}}},"
        "\"certificate\":{\"Type\":\"AWS::IoT::Certificate\",\"Properties\":{},"
        "\"OverrideSettings\":{\"Status\":\"FAIL\"}}," TPL_POLICY "}}";
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    CHECK_INT_EQ(world_template(&w, replace_inactive, NULL), 0);
    aws_set(&w, w.dev_id, w.dev_pem.data, CA_ID, "ACTIVE");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate CreateThing AttachPolicy AttachThingPrincipal "
                            "UpdateCertificate:INACTIVE");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "INACTIVE");
    /* a pending one gets the template's status too */
    aws_set(&w, w.dev2_id, w.dev2_pem.data, CA_ID, "PENDING_ACTIVATION");
    CHECK_INT_EQ(flow(&w, w.dev2_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(aws_status(&w, w.dev2_id), "INACTIVE");
    world_release(&w);
    /* REPLACE with the status it has already: provisioned, no UpdateCertificate */
    CHECK_INT_EQ(world_init(&w), 0);
    CHECK_INT_EQ(world_template(&w, replace_active, NULL), 0);
    aws_set(&w, w.dev_id, w.dev_pem.data, CA_ID, "ACTIVE");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate CreateThing AttachPolicy AttachThingPrincipal");
    /* never for a REVOKED one */
    aws_set(&w, w.dev2_id, w.dev2_pem.data, CA_ID, "REVOKED");
    CHECK_INT_EQ(flow(&w, w.dev2_id, &tr, NULL), JITR_OUT_IGNORED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    world_release(&w);
    CHECK_INT_EQ(world_init(&w), 0);
    CHECK_INT_EQ(world_template(&w, fail, NULL), 0);
    aws_set(&w, w.dev_id, w.dev_pem.data, CA_ID, "INACTIVE");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "INACTIVE in AWS and the template's certificate "
                                "OverrideSettings.Status is FAIL");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "INACTIVE");
    /* FAIL is about a certificate that is not pending: a pending one provisions */
    aws_set(&w, w.dev2_id, w.dev2_pem.data, CA_ID, "PENDING_ACTIVATION");
    CHECK_INT_EQ(flow(&w, w.dev2_id, &tr, NULL), JITR_OUT_ACTIVATED);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

static int test_flow_busy(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    char key[160];
    CHECK_INT_EQ(world_init(&w), 0);
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:lock:%s", w.dev_id);
    json_object_set_new(w.f.redis, key, json_string("someone-else"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_BUSY);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK UNLOCK FINISHED");
    CHECK_STR_EQ(json_string_value(json_object_get(w.f.redis, key)), "someone-else");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* An event of a certificate whose lock another JITR flow (another stream entry) holds is a
 * duplicate, acknowledged at once: that flow's entry stays pending until it ends. A lock left by
 * a flow of this same entry (a crash) or held by another kind's job is waited for. */
static int test_flow_covered(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    char key[160];
    CHECK_INT_EQ(world_init(&w), 0);
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:lock:%s", w.dev_id);
    json_object_set_new(w.f.redis, key, json_string("jitr-flow 7-3 42-1-1700000000000"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DUPLICATE);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK UNLOCK FINISHED");
    CHECK_STR_EQ(calls(&w), "");
    CHECK_STR_EQ(json_string_value(json_object_get(w.f.redis, key)),
                 "jitr-flow 7-3 42-1-1700000000000");
    /* this entry's own earlier run (crashed): wait for its lock to expire */
    json_object_set_new(w.f.redis, key, json_string("jitr-flow 1-0 42-1-1700000000000"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_BUSY);
    /* an entry whose id only begins like ours is another one */
    json_object_set_new(w.f.redis, key, json_string("jitr-flow 1-00 42-1-1700000000000"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DUPLICATE);
    /* a revocation's job (the job engine's token): wait */
    json_object_set_new(w.f.redis, key, json_string("jitrd-1-w0-5a5a"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_BUSY);
    CHECK_INT_EQ(w.f.audits, 0);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* Redis lost the index: the flow neither rejects nor dead-letters the certificate, asks nothing
 * of AWS, stores nothing and ends BUSY (retried, not counted as an attempt); once the index is
 * rebuilt the same event provisions the device. */
static int test_flow_index_incomplete(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    w.f.index_incomplete = true;
    for (int i = 0; i < 3; i++) {
        CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_BUSY);
        CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP UNLOCK FINISHED");
        CHECK_STR_CONTAINS(why.msg, "the index is incomplete");
        err_clear(&why);
    }
    CHECK_STR_EQ(calls(&w), "");
    CHECK(dev_state(&w, w.dev_id, "state") == NULL);
    CHECK_INT_EQ(w.f.audits, 0);
    w.f.index_incomplete = false;
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, HAPPY);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* The append runs off the loop: the flow waits in RECORD, with its state saved before. */
static int test_flow_audit_waits(void)
{
    int rc = 0;
    struct world w;
    struct jitr_req *r = NULL;
    CHECK_INT_EQ(world_init(&w), 0);
    log_add(&w, "issue", "x");
    log_add(&w, "issue", "y");
    r = begin(&w, w.dev_id);
    CHECK_INT_EQ(w.f.kind, 4);
    CHECK(!w.f.finished);
    CHECK_INT_EQ(jitr_req_state(r), JITR_ST_RECORD);
    CHECK_INT_EQ(jitr_req_outcome(r), JITR_OUT_NONE);
    /* ACTIVE in AWS, RECORD saved with the log's end at that time */
    CHECK_STR_EQ(calls(&w), CALLS);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "RECORD");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "audit_after"), "2");
    CHECK(!w.f.audit_check);
    CHECK_STR_EQ(json_string_value(json_object_get(w.f.audit_rec, "type")), "jitr_activate");
    CHECK_INT_EQ(json_array_size(w.f.log), 2);
    /* the completion moves it on: DONE only now */
    run(&w.f);
    CHECK(w.f.finished);
    CHECK_INT_EQ(jitr_req_outcome(r), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(jitr_req_trace(r), HAPPY);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "audit_seq"), "3");
    CHECK_INT_EQ(json_array_size(w.f.log), 3);
out:
    jitr_req_free(r);
    world_release(&w);
    return rc;
}

#define REPLAY "RECEIVED LOCK LOAD RECORD PERSIST UNLOCK FINISHED"

/* A failed append (fdatasync error) is retried like other failures, from RECORD, and the
 * retry looks for the record first (after a failed fdatasync it may be on disk after all). */
static int test_flow_audit_failure_retry(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    w.f.audit_fail = ERRC_UNAVAILABLE;
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_RETRY);
    CHECK_STR_CONTAINS(why.msg, "audit: cannot fsync audit log");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "RECORD");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "attempts"), "1");
    CHECK_INT_EQ(json_array_size(w.f.log), 0);
    /* the retry: no AWS call (ACTIVE was done), one record with what was saved */
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, REPLAY);
    CHECK_STR_EQ(calls(&w), "");
    CHECK(w.f.audit_check);
    CHECK_INT_EQ(json_array_size(w.f.log), 1);
    CHECK_STR_EQ(last_audit(&w, "thing"), "dev-0001");
    CHECK_STR_EQ(last_audit(&w, "serial"), "1234abcd");
    CHECK_STR_EQ(last_audit(&w, "ca"), "testca");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* jitrd dies before the append completed and before the record reached the log: the replay
 * appends it. An older record of the same certificate (below audit_after) does not count. */
static int test_flow_audit_crash_before_append(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct jitr_req *r;
    CHECK_INT_EQ(world_init(&w), 0);
    log_add(&w, "jitr_activate", w.dev_id); /* e.g. before a jitrctl jitr dlq retry */
    r = begin(&w, w.dev_id);
    CHECK_INT_EQ(jitr_req_state(r), JITR_ST_RECORD);
    crash_in_audit(&w, r, false);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "RECORD");
    CHECK_INT_EQ(json_array_size(w.f.log), 1);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, REPLAY);
    CHECK(w.f.audit_check);
    CHECK_INT_EQ(w.f.audit_after, 1);
    CHECK_INT_EQ(json_array_size(w.f.log), 2);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "audit_seq"), "2");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* jitrd dies after the record was durable, before DONE was saved: the replay finds it and
 * appends nothing; other writers' records after it do not matter. */
static int test_flow_audit_crash_after_append(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct jitr_req *r;
    json_t *trace;
    char key[160];
    CHECK_INT_EQ(world_init(&w), 0);
    log_add(&w, "issue", "x");
    r = begin(&w, w.dev_id);
    crash_in_audit(&w, r, true);
    log_add(&w, "issue", "y");
    CHECK_INT_EQ(json_array_size(w.f.log), 3);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, REPLAY);
    CHECK_STR_EQ(calls(&w), "");
    CHECK_INT_EQ(json_array_size(w.f.log), 3);
    CHECK_INT_EQ(w.f.audits, 1);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "audit_seq"), "2");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:trace:%s", w.dev_id);
    trace = json_object_get(w.f.redis, key);
    CHECK_STR_CONTAINS(json_string_value(json_array_get(trace, json_array_size(trace) - 1)),
                       "RECORD -> DONE audited already");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* The same for a rejection and for a certificate left alone: one record each, nothing asked of
 * AWS again. */
static int test_flow_audit_crash_reject(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    struct jitr_req *r;
    CHECK_INT_EQ(world_init(&w), 0);
    json_object_set_new(index_rec(&w, "1234abcd"), "status", json_string("revoked"));
    r = begin(&w, w.dev_id);
    CHECK_INT_EQ(jitr_req_state(r), JITR_ST_RECORD_REJECT);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate UpdateCertificate:REVOKED");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "RECORD_REJECT");
    crash_in_audit(&w, r, true);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_REJECTED);
    CHECK_STR_CONTAINS(why.msg, "certificate serial 1234abcd is revoked");
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD RECORD_REJECT PERSIST UNLOCK FINISHED");
    CHECK_STR_EQ(calls(&w), "");
    CHECK_INT_EQ(json_array_size(w.f.log), 1);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "REJECTED");
    world_release(&w);
    CHECK_INT_EQ(world_init(&w), 0);
    r = begin(&w, w.forged_id);
    CHECK_INT_EQ(jitr_req_state(r), JITR_ST_RECORD_IGNORE);
    crash_in_audit(&w, r, false);
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.forged_id, &tr, &why), JITR_OUT_IGNORED);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD RECORD_IGNORE PERSIST UNLOCK FINISHED");
    CHECK_STR_CONTAINS(why.msg, "not under one of our CAs");
    CHECK_STR_CONTAINS(last_audit(&w, "reason"), "not under one of our CAs");
    CHECK_INT_EQ(json_array_size(w.f.log), 1);
    CHECK_STR_EQ(dev_state(&w, w.forged_id, "state"), "IGNORED");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* The template from AWS's JITP documentation with its OverrideSettings replaced: each pair is
 * the published text and what it becomes. */
static struct jitr_template *doc_template(const char *const *repl, size_t n, struct err *e)
{
    struct buf path = BUF_INIT, text = BUF_INIT;
    struct jitr_template *t = NULL;
    buf_addf(&path, "%s/tests/unit/jitr/data/aws-jitp-doc-template.json",
             getenv("JITRCA_SOURCE_DIR"));
    if (file_read_all(path.data, 65536, &text, e) != 0) {
        goto out;
    }
    for (size_t i = 0; i + 1 < n; i += 2) {
        struct buf out = BUF_INIT;
        const char *a = strstr(buf_cstr(&text), repl[i]);
        if (a == NULL) {
            err_set(e, ERRC_INVALID, "the documentation template changed: no %s", repl[i]);
            goto out;
        }
        buf_add(&out, text.data, (size_t)(a - text.data));
        buf_addstr(&out, repl[i + 1]);
        buf_addstr(&out, a + strlen(repl[i]));
        buf_release(&text);
        text = out;
    }
    t = jitr_template_parse(text.data, text.len, "aws-jitp-doc-template.json", NULL, e);
out:
    buf_release(&path);
    buf_release(&text);
    return t;
}

#define O_ATTR  "\"AttributePayload\" : \"MERGE\""
#define O_TYPE  "\"ThingTypeName\" : \"REPLACE\""
#define O_GROUP "\"ThingGroups\" : \"DO_NOTHING\""

/* A world provisioning with the documentation template (OverrideSettings replaced by repl); the
 * thing exists with other attributes (CreateThing: ResourceAlreadyExistsException). */
static int world_doc(struct world *w, const char *const *repl, size_t n)
{
    struct err e = ERR_INIT;
    if (world_init(w) != 0) {
        return -1;
    }
    jitr_template_free(w->tpl);
    w->tpl = doc_template(repl, n, &e);
    w->env.tpl = w->tpl;
    w->f.fail_op = "CreateThing";
    w->f.fail_code = ERRC_CONFLICT;
    w->f.fail_aws_code = "ResourceAlreadyExistsException";
    if (w->tpl == NULL) {
        fprintf(stderr, "%s\n", e.msg);
    }
    return w->tpl ? 0 : -1;
}

#define DOC_CALLS_AFTER_UPDATE "AttachPolicy AttachThingPrincipal UpdateCertificate:ACTIVE"

/* OverrideSettings from AWS's documentation template: MERGE the attributes into the existing
 * thing's, REPLACE its type: one UpdateThing; its groups DO_NOTHING: not touched. */
static int test_flow_override_merge(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    json_t *ap;
    CHECK_INT_EQ(world_doc(&w, NULL, 0), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE POLICY CREATE_THING "
                          "UPDATE_THING ATTACH_POLICY PERSIST ATTACH_PRINCIPAL PERSIST "
                          "ACTIVATE PERSIST RECORD PERSIST UNLOCK FINISHED");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate CreateThing UpdateThing " DOC_CALLS_AFTER_UPDATE);
    CHECK(w.f.update_in != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(w.f.update_in, "thingName")), "dev-0001");
    CHECK_STR_EQ(json_string_value(json_object_get(w.f.update_in, "thingTypeName")),
                 "lightBulb-versionA");
    ap = json_object_get(w.f.update_in, "attributePayload");
    CHECK(json_is_true(json_object_get(ap, "merge")));
    CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(ap, "attributes"), "version")),
                 "v1");
    CHECK_STR_EQ(
        json_string_value(json_object_get(json_object_get(ap, "attributes"), "serialNumber")),
        "SN-42");
    CHECK_INT_EQ(json_object_size(json_object_get(ap, "attributes")), 2);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* REPLACE: the template's attributes become the thing's (merge false); ThingTypeName
 * DO_NOTHING leaves the type. */
static int test_flow_override_replace(void)
{
    static const char *const repl[] = { O_ATTR, "\"AttributePayload\" : \"REPLACE\"", O_TYPE,
                                        "\"ThingTypeName\" : \"DO_NOTHING\"" };
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    json_t *ap;
    CHECK_INT_EQ(world_doc(&w, repl, ARRAY_LEN(repl)), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate CreateThing UpdateThing " DOC_CALLS_AFTER_UPDATE);
    ap = json_object_get(w.f.update_in, "attributePayload");
    CHECK(json_is_false(json_object_get(ap, "merge")));
    CHECK_INT_EQ(json_object_size(json_object_get(ap, "attributes")), 2);
    CHECK(json_object_get(w.f.update_in, "thingTypeName") == NULL);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* DO_NOTHING keeps the thing as it is; FAIL (any setting) and thing_conflict "fail" send the
 * device to the dead letters; a new thing needs no update and joins the template's groups. */
static int test_flow_override_keep_fail(void)
{
    static const char *const keep[] = { O_ATTR, "\"AttributePayload\" : \"DO_NOTHING\"", O_TYPE,
                                        "\"ThingTypeName\" : \"DO_NOTHING\"" };
    static const char *const fail_attr[] = { O_ATTR, "\"AttributePayload\" : \"FAIL\"" };
    static const char *const fail_type[] = { O_TYPE, "\"ThingTypeName\" : \"FAIL\"" };
    static const char *const fail_groups[] = { O_GROUP, "\"ThingGroups\" : \"FAIL\"" };
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_doc(&w, keep, ARRAY_LEN(keep)), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate CreateThing " DOC_CALLS_AFTER_UPDATE);
    world_release(&w);
    CHECK_INT_EQ(world_doc(&w, fail_attr, ARRAY_LEN(fail_attr)), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "CreateThing");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate CreateThing AttachPolicy");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DEAD");
    CHECK_STR_EQ(aws_status(&w, w.dev_id), "PENDING_ACTIVATION");
    world_release(&w);
    CHECK_INT_EQ(world_doc(&w, fail_type, ARRAY_LEN(fail_type)), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DEAD);
    world_release(&w);
    CHECK_INT_EQ(world_doc(&w, fail_groups, ARRAY_LEN(fail_groups)), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DEAD);
    world_release(&w);
    CHECK_INT_EQ(world_doc(&w, NULL, 0), 0);
    w.env.thing_conflict_fail = true; /* jitrd's setting wins over the template */
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DEAD);
    CHECK(w.f.update_in == NULL);
    world_release(&w);
    /* a new thing: created as the template says, nothing to update, the template's groups */
    CHECK_INT_EQ(world_doc(&w, NULL, 0), 0);
    w.f.fail_op = NULL;
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate CreateThing AttachPolicy AttachThingPrincipal "
                            "AddThingToThingGroup AddThingToThingGroup UpdateCertificate:ACTIVE");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* OverrideSettings.ThingGroups for an existing thing: MERGE adds it to the template's groups;
 * REPLACE also removes it from the others (jitr.thing_group stays); DO_NOTHING (above) leaves
 * its groups. */
static int test_flow_override_groups(void)
{
    static const char *const merge[] = { O_GROUP, "\"ThingGroups\" : \"MERGE\"" };
    static const char *const replace[] = { O_GROUP, "\"ThingGroups\" : \"REPLACE\"" };
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    CHECK_INT_EQ(world_doc(&w, merge, ARRAY_LEN(merge)), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate CreateThing UpdateThing AttachPolicy "
                            "AttachThingPrincipal AddThingToThingGroup AddThingToThingGroup "
                            "UpdateCertificate:ACTIVE");
    world_release(&w);
    CHECK_INT_EQ(world_doc(&w, replace, ARRAY_LEN(replace)), 0);
    w.env.thing_group = "factory-1";
    w.f.listed = json_pack("[s, s, s]", "old-batch", "DE", "factory-1");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE POLICY CREATE_THING "
                          "UPDATE_THING ATTACH_POLICY PERSIST ATTACH_PRINCIPAL PERSIST "
                          "LIST_GROUPS REMOVE_FROM_GROUP PERSIST ADD_TO_GROUP PERSIST ACTIVATE "
                          "PERSIST RECORD PERSIST UNLOCK FINISHED");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate CreateThing UpdateThing AttachPolicy "
                            "AttachThingPrincipal ListThingGroupsForThing "
                            "RemoveThingFromThingGroup AddThingToThingGroup AddThingToThingGroup "
                            "AddThingToThingGroup UpdateCertificate:ACTIVE");
    /* a throttled removal resumes with a new list */
    world_release(&w);
    CHECK_INT_EQ(world_doc(&w, replace, ARRAY_LEN(replace)), 0);
    w.f.listed = json_pack("[s]", "old-batch");
    w.f.fail_op2 = "RemoveThingFromThingGroup";
    w.f.fail_code2 = ERRC_UNAVAILABLE;
    w.f.fail_aws_code2 = "ThrottlingException";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_RETRY);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "REMOVE_FROM_GROUP");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate ListThingGroupsForThing "
                            "RemoveThingFromThingGroup AddThingToThingGroup AddThingToThingGroup "
                            "UpdateCertificate:ACTIVE");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* UpdateThing throttled: retried from UPDATE_THING (no second CreateThing); refused (the thing
 * type does not exist): a dead letter naming UpdateThing. */
static int test_flow_override_update_fails(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_doc(&w, NULL, 0), 0);
    w.f.fail_op2 = "UpdateThing";
    w.f.fail_code2 = ERRC_UNAVAILABLE;
    w.f.fail_aws_code2 = "ThrottlingException";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_RETRY);
    CHECK_STR_CONTAINS(why.msg, "UpdateThing");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "UPDATE_THING");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(calls(&w), "DescribeCertificate UpdateThing " DOC_CALLS_AFTER_UPDATE);
    world_release(&w);
    CHECK_INT_EQ(world_doc(&w, NULL, 0), 0);
    w.f.fail_op2 = "UpdateThing";
    w.f.fail_code2 = ERRC_NOT_FOUND;
    w.f.fail_aws_code2 = "ResourceNotFoundException";
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "UpdateThing: AWS IoT UpdateThing: ResourceNotFoundException");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DEAD");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* OverrideSettings values the template parser refuses, with the message. */
static int test_template_override_bad(void)
{
    static const char *const bad_attr[] = { O_ATTR, "\"AttributePayload\" : \"SOMETIMES\"" };
    static const char *const bad_type[] = { O_TYPE, "\"ThingTypeName\" : \"MERGE\"" };
    static const char *const bad_key[] = { O_GROUP, "\"ThingGroupz\" : \"MERGE\"" };
    int rc = 0;
    struct err e = ERR_INIT;
    struct jitr_template *t = doc_template(bad_attr, ARRAY_LEN(bad_attr), &e);
    CHECK(t == NULL);
    CHECK_STR_CONTAINS(e.msg, "aws-jitp-doc-template.json: thing OverrideSettings."
                              "AttributePayload must be DO_NOTHING, REPLACE, MERGE or FAIL");
    err_clear(&e);
    t = doc_template(bad_type, ARRAY_LEN(bad_type), &e);
    CHECK(t == NULL);
    CHECK_STR_CONTAINS(e.msg, "thing OverrideSettings.ThingTypeName must be DO_NOTHING, "
                              "REPLACE or FAIL");
    err_clear(&e);
    t = doc_template(bad_key, ARRAY_LEN(bad_key), &e);
    CHECK(t == NULL);
    CHECK_STR_CONTAINS(e.msg, "thing OverrideSettings.ThingGroupz is not a setting AWS knows");
out:
    jitr_template_free(t);
    return rc;
}

/* A renewal (its index record renews another certificate) that becomes ACTIVE queues its
 * predecessor's retirement, due renewal_grace later, before the activation is recorded: a
 * failure to queue it retries the flow (nothing recorded), the retry queues it and records; a
 * certificate that renews nothing queues nothing. */
static int test_flow_renewal_queued(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    json_t *q;
    CHECK_INT_EQ(world_init(&w), 0);
    w.env.renewal_grace_s = 7;
    json_object_set_new(index_rec(&w, "1234abcd"), "renews", json_string("0abc"));
    w.f.fail_queue = true;
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_RETRY);
    CHECK_STR_CONTAINS(why.msg, "queueing the renewed certificate's retirement");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "ACTIVATE");
    CHECK_INT_EQ(w.f.audits, 0);
    CHECK(w.f.queued == NULL);
    /* AWS has it ACTIVE now: the retry queues the retirement, then records */
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE ACTIVATE PERSIST RECORD "
                          "PERSIST UNLOCK FINISHED");
    CHECK_STR_EQ(calls(&w), "DescribeCertificate");
    CHECK_INT_EQ(json_array_size(w.f.queued), 1);
    q = json_array_get(w.f.queued, 0);
    CHECK_STR_EQ(json_string_value(json_array_get(q, 0)), STORE_PREFIX "jobs:renewal:due");
    {
        long long nb = atoll(json_string_value(json_array_get(q, 1)));
        long long now = (long long)time_now_ms();
        CHECK(nb > now + 6000 && nb <= now + 7000);
    }
    q = json_array_get(q, 2);
    CHECK_STR_EQ(json_string_value(json_object_get(q, "cert")), w.dev_id);
    CHECK_STR_EQ(json_string_value(json_object_get(q, "serial")), "1234abcd");
    CHECK_STR_EQ(json_string_value(json_object_get(q, "renews")), "0abc");
    CHECK_STR_EQ(json_string_value(json_object_get(q, "thing")), "dev-0001");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
    CHECK_INT_EQ(w.f.audits, 1);
    world_release(&w);
    /* the first attempt: UpdateCertificate, then the job queued (grace 0: due at once) */
    CHECK_INT_EQ(world_init(&w), 0);
    json_object_set_new(index_rec(&w, "1234abcd"), "renews", json_string("0abc"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, HAPPY);
    CHECK_INT_EQ(json_array_size(w.f.queued), 1);
    CHECK_STR_EQ(json_string_value(json_array_get(json_array_get(w.f.queued, 0), 1)), "0");
    world_release(&w);
    /* no renews: nothing queued */
    CHECK_INT_EQ(world_init(&w), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK(w.f.queued == NULL);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "flow_activate_then_duplicate", test_flow_activate_then_duplicate },
        { "flow_resume_after_failure", test_flow_resume_after_failure },
        { "flow_lease_lost", test_flow_lease_lost },
        { "flow_activate_reply_lost", test_flow_activate_reply_lost },
        { "flow_states_lost", test_flow_states_lost },
        { "flow_adopt", test_flow_adopt },
        { "flow_permanent_failure", test_flow_permanent_failure },
        { "flow_round_trips", test_flow_round_trips },
        { "flow_crash_round_trips", test_flow_crash_round_trips },
        { "flow_thing_exists", test_flow_thing_exists },
        { "flow_revoked", test_flow_revoked },
        { "flow_not_ours", test_flow_not_ours },
        { "flow_registered", test_flow_registered },
        { "flow_config_dead_letters", test_flow_config_dead_letters },
        { "flow_template_dead_letters", test_flow_template_dead_letters },
        { "flow_exclusive_thing", test_flow_exclusive_thing },
        { "flow_policies", test_flow_policies },
        { "flow_template", test_flow_template },
        { "flow_status_override", test_flow_status_override },
        { "flow_busy", test_flow_busy },
        { "flow_covered", test_flow_covered },
        { "flow_index_incomplete", test_flow_index_incomplete },
        { "flow_audit_waits", test_flow_audit_waits },
        { "flow_audit_failure_retry", test_flow_audit_failure_retry },
        { "flow_audit_crash_before_append", test_flow_audit_crash_before_append },
        { "flow_audit_crash_after_append", test_flow_audit_crash_after_append },
        { "flow_audit_crash_reject", test_flow_audit_crash_reject },
        { "flow_override_merge", test_flow_override_merge },
        { "flow_override_replace", test_flow_override_replace },
        { "flow_override_keep_fail", test_flow_override_keep_fail },
        { "flow_override_groups", test_flow_override_groups },
        { "flow_override_update_fails", test_flow_override_update_fails },
        { "template_override_bad", test_template_override_bad },
        { "flow_renewal_queued", test_flow_renewal_queued },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
