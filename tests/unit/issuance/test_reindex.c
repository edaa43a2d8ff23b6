/*
 * issuance/reindex.c against a real CA, audit log and Redis: the index rebuilt from the audit
 * log is the one the live path wrote (certificates, a renewal's links, a revocation, CRL
 * numbers), index:ready is written last, an index that is complete is left alone, and a lock
 * held by another process is respected. A renewal's retirement that lived only in Redis (its
 * activation audited, its end not) is queued again by a rebuild, once, and not while Redis has
 * its job. Two nodes: a hold and its release through different nodes end as the later one says
 * (the job queued, the rebuild), a renewal's retirement is queued again whatever log has which
 * record. Certificates registered in AWS IoT by jitrctl aws register-batch get their flow records
 * back, and the unfinished and valid ones their provisioning.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca/crl.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/enroll.h"
#include "issuance/issuance.h"
#include "issuance/reindex.h"
#include "issuance/revoke.h"
#include "store/store.h"
#include "tests/harness/tt.h"
#include "tests/unit/issuance/fixture.h"

/* A raw connection to the fixture's database, for what the store has no call for. */
static redisContext *raw_connect(const struct conf *c)
{
    struct store_url u;
    struct err e = ERR_INIT;
    redisContext *rc;
    redisReply *r;
    if (store_url_parse(c->redis_url, &u, &e) != 0) {
        return NULL;
    }
    rc = u.path[0] ? redisConnectUnix(u.path) : redisConnect(u.host, u.port);
    if (rc == NULL || rc->err) {
        if (rc) {
            redisFree(rc);
        }
        return NULL;
    }
    r = redisCommand(rc, "SELECT %d", u.db);
    if (r) {
        freeReplyObject(r);
    }
    return rc;
}

/* The reply of a command as text: an integer, a string, or an array's first element. */
static void raw(redisContext *c, char *out, size_t cap, const char *fmt, const char *a)
{
    redisReply *r = redisCommand(c, fmt, a);
    out[0] = '\0';
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements) {
        redisReply *x = r->element[0];
        snprintf(out, cap, "%.*s", x->type == REDIS_REPLY_STRING ? (int)x->len : 0,
                 x->type == REDIS_REPLY_STRING ? x->str : "");
    } else if (r && r->type == REDIS_REPLY_INTEGER) {
        snprintf(out, cap, "%lld", r->integer);
    } else if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)) {
        snprintf(out, cap, "%.*s", (int)r->len, r->str);
    }
    if (r) {
        freeReplyObject(r);
    }
}

/* One node of a test: the fixture (CA "root" in TMP/name, Redis database db), a raw
 * connection to that database, the issuance context (its audit log, named node_id when not
 * NULL), a signing worker and a revoker. node_close frees whatever node_open made. */
struct node {
    struct fixture f;
    bool open;
    redisContext *raw;
    struct issuance_ctx *ctx;
    struct issuance_worker *w;
    struct issuance_revoker *rv;
};

/* TT_SKIP without a test Redis, -1 on a failure (e says why), 0 when set up. */
static int node_open(struct node *n, const char *name, int db, const char *node_id, struct err *e)
{
    int frc = fixture_open(&n->f, name, db, e);
    if (frc != 0) {
        return frc;
    }
    n->open = true;
    if ((n->raw = raw_connect(n->f.conf)) == NULL) {
        return err_set(e, ERRC_UNAVAILABLE, "no raw connection to the test Redis");
    }
    if (node_id != NULL) {
        xfree(n->f.conf->node_id);
        n->f.conf->node_id = xstrdup(node_id);
    }
    if ((n->ctx = issuance_ctx_open(n->f.conf, "root", NULL, e)) == NULL ||
        (n->w = issuance_worker_new(n->ctx, e)) == NULL ||
        (n->rv = issuance_revoker_new(n->f.conf, n->ctx->audit, NULL, e)) == NULL) {
        return -1;
    }
    return 0;
}

static void node_close(struct node *n)
{
    issuance_revoker_free(n->rv);
    issuance_worker_free(n->w);
    issuance_ctx_free(n->ctx);
    if (n->raw) {
        redisFree(n->raw);
    }
    if (n->open) {
        fixture_close(&n->f);
    }
    memset(n, 0, sizeof(*n));
}

static int test_rebuild(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct node n = { 0 };
    struct issuance_item it[2];
    struct issuance_revocation r;
    struct issuance_reindex_stats st;
    struct buf csr1 = BUF_INIT, csr2 = BUF_INIT, live = BUF_INIT, rebuilt_dump = BUF_INIT,
               want = BUF_INIT;
    struct store_cert_rec rec = { 0 };
    char first[41] = "", holder[64];
    bool ready = false, rebuilt = true, taken = false;
    uint64_t removed = 0;
    memset(it, 0, sizeof(it));
    int frc = node_open(&n, "reindex", 14, NULL, &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    fixture_csr("dev-r1", &csr1);
    fixture_csr("dev-r2", &csr2);
    /* the live path: an issue, its renewal, a revocation (and its CRL) */
    it[0] = (struct issuance_item){ .csr = (const uint8_t *)csr1.data,
                                    .csr_len = csr1.len,
                                    .requester = "station:line1" };
    CHECK_OK(issuance_run(n.w, it, 1, &e), &e);
    CHECK(it[0].issued);
    snprintf(first, sizeof(first), "%s", it[0].cert.serial_hex);
    it[1] = (struct issuance_item){ .csr = (const uint8_t *)csr2.data,
                                    .csr_len = csr2.len,
                                    .requester = "device:x",
                                    .renews = first };
    CHECK_OK(issuance_run(n.w, &it[1], 1, &e), &e);
    CHECK(it[1].issued);
    r = (struct issuance_revocation){ .serial = it[1].cert.serial_hex,
                                      .reason = CA_CRL_KEY_COMPROMISE,
                                      .requester = "station:admin" };
    CHECK_OK(issuance_revoke(n.rv, n.f.store, &r, &e), &e);
    CHECK(r.crl_written);
    CHECK_OK(store_index_dump(n.f.store, &live, &e), &e);
    /* lost, then rebuilt from the log */
    CHECK_OK(store_index_mark_clear(n.f.store, &e), &e);
    CHECK_OK(store_index_clear(n.f.store, &removed, &e), &e);
    CHECK_OK(issuance_reindex(n.f.conf, n.f.store, NULL, NULL, &st, &e), &e);
    CHECK_INT_EQ(st.certificates, 2);
    CHECK_INT_EQ(st.revoked, 1);
    CHECK_INT_EQ(st.revoke_unknown, 0);
    CHECK(st.records >= 4); /* two issues, a revoke, a crl */
    CHECK_OK(store_index_ready(n.f.store, &ready, &e), &e);
    CHECK(ready);
    CHECK_OK(store_index_dump(n.f.store, &rebuilt_dump, &e), &e);
    /* the same, and the audit head it reached (which only a rebuild records) */
    buf_addf(&want, "hash jitrca:audit:head\nhash\t%s\nseq\t%llu\n%s", st.last_hash,
             (unsigned long long)st.last_seq, buf_cstr(&live));
    CHECK_STR_EQ(buf_cstr(&rebuilt_dump), buf_cstr(&want));
    CHECK_OK(store_cert_read(n.f.store, first, &rec, &e), &e);
    CHECK_STR_EQ(rec.superseded_by, it[1].cert.serial_hex);
    store_cert_rec_release(&rec);
    /* complete: ensure leaves it alone */
    CHECK_OK(issuance_index_ensure(n.f.conf, n.f.store, 0, &rebuilt, &st, &e), &e);
    CHECK(!rebuilt);
    /* another process holds the lock: no second rebuilder */
    CHECK_OK(
        store_index_lock_take(n.f.store, "someone-else", 5000, &taken, holder, sizeof(holder), &e),
        &e);
    CHECK(taken);
    CHECK(issuance_reindex(n.f.conf, n.f.store, NULL, NULL, &st, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_CONFLICT);
    CHECK_STR_CONTAINS(e.msg, "someone-else");
    err_clear(&e);
    CHECK_OK(store_index_lock_release(n.f.store, "someone-else", &e), &e);
out:
    for (size_t i = 0; i < 2; i++) {
        issuance_item_release(&it[i]);
    }
    store_cert_rec_release(&rec);
    buf_release(&csr1);
    buf_release(&csr2);
    buf_release(&live);
    buf_release(&rebuilt_dump);
    buf_release(&want);
    node_close(&n);
    return rc;
}

static int append(struct audit_log *log, json_t *rec, struct err *e)
{
    uint64_t seq = 0;
    int rc = audit_append(log, &rec, 1, &seq, e);
    json_decref(rec);
    return rc;
}

/* A jitr_activate record of certificateId id (serial, thing), with aws_status when not NULL. */
static int activated(struct audit_log *log, const char *id, const char *serial, const char *thing,
                     const char *status, struct err *e)
{
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s}", "type", "jitr_activate", "certificate_id", id,
                            "serial", serial, "thing", thing);
    if (status != NULL) {
        json_object_set_new(rec, "aws_status", json_string(status));
    }
    return append(log, rec, e);
}

/* A renewed A: B renews it, activated (its retirement pending); C renews B, activated and
 * retired; D renews C, its flow audited without activation. A rebuild queues B's retirement
 * only, due renewal_grace after the activation, with the fields the job engine writes; again,
 * nothing (the due set has it); with the due set empty but the job's record there, nothing; a
 * grace of 0 queues it on the stream at once. */
static int test_renewal_requeue(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct node n = { 0 };
    struct issuance_item it[4];
    struct issuance_reindex_stats st;
    struct buf csr = BUF_INIT, want = BUF_INIT;
    char out[1024], idb[65], idc[65], idd[65];
    static const char *const cn[4] = { "dev-a", "dev-b", "dev-c", "dev-d" };
    int64_t t0 = 0, ta = 0;
    int frc;
    memset(it, 0, sizeof(it));
    memset(idb, 'b', 64);
    memset(idc, 'c', 64);
    memset(idd, 'd', 64);
    idb[64] = idc[64] = idd[64] = '\0';
    frc = node_open(&n, "reindex-renewal", 13, NULL, &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    raw(n.raw, out, sizeof(out), "DEL %s", "jitrca:" STORE_KEY_RENEWAL_DUE);
    raw(n.raw, out, sizeof(out), "DEL %s", "jitrca:" STORE_KEY_RENEWAL_JOBS);
    for (size_t i = 0; i < 4; i++) {
        buf_reset(&csr);
        fixture_csr(cn[i], &csr);
        it[i] = (struct issuance_item){ .csr = (const uint8_t *)csr.data,
                                        .csr_len = csr.len,
                                        .requester = "station:line1",
                                        .renews = i ? it[i - 1].cert.serial_hex : NULL };
        CHECK_OK(issuance_run(n.w, &it[i], 1, &e), &e);
        CHECK(it[i].issued);
    }
    ta = time_now_ms();
    CHECK_OK(activated(n.ctx->audit, idb, it[1].cert.serial_hex, "dev-b", "ACTIVE", &e), &e);
    CHECK_OK(activated(n.ctx->audit, idc, it[2].cert.serial_hex, "dev-c", "ACTIVE", &e), &e);
    CHECK_OK(append(n.ctx->audit,
                    json_pack("{s:s,s:s,s:s,s:s}", "type", "renewal_retire", "kind", "renewal",
                              "key", idc, "outcome", "retired"),
                    &e),
             &e);
    CHECK_OK(activated(n.ctx->audit, idd, it[3].cert.serial_hex, "dev-d", NULL, &e), &e);
    /* B activated again (a replayed flow): still one retirement */
    CHECK_OK(activated(n.ctx->audit, idb, it[1].cert.serial_hex, "dev-b", "ACTIVE", &e), &e);
    t0 = time_now_ms();
    CHECK_OK(issuance_reindex(n.f.conf, n.f.store, NULL, NULL, &st, &e), &e);
    CHECK_INT_EQ(st.renewals_requeued, 1);
    raw(n.raw, out, sizeof(out), "ZCARD %s", "jitrca:" STORE_KEY_RENEWAL_DUE);
    CHECK_STR_EQ(out, "1");
    raw(n.raw, out, sizeof(out), "ZRANGE %s 0 -1", "jitrca:" STORE_KEY_RENEWAL_DUE);
    buf_addf(&want,
             "[\"cert\",\"%s\",\"serial\",\"%s\",\"renews\",\"%s\",\"thing\",\"dev-b\","
             "\"src\",\"reindex\",\"enq_ms\",\"",
             idb, it[1].cert.serial_hex, it[0].cert.serial_hex);
    CHECK(strncmp(out, buf_cstr(&want), want.len) == 0);
    {
        /* due a grace (default 7 days) after the activation, audited within this test: to
         * the millisecond (a rebuild that rounded the activation down to its second ran the
         * retirement up to a second before the grace ended) */
        redisReply *r =
            redisCommand(n.raw, "ZRANGE %s 0 -1 WITHSCORES", "jitrca:" STORE_KEY_RENEWAL_DUE);
        double due = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2
                         ? strtod(r->element[1]->str, NULL)
                         : 0;
        if (r) {
            freeReplyObject(r);
        }
        CHECK(due >= (double)(ta + n.f.conf->renewal_grace * 1000));
        CHECK(due <= (double)(t0 + n.f.conf->renewal_grace * 1000));
        CHECK(due <= (double)(time_now_ms() + n.f.conf->renewal_grace * 1000));
    }
    /* Redis has it: nothing again */
    CHECK_OK(issuance_reindex(n.f.conf, n.f.store, NULL, NULL, &st, &e), &e);
    CHECK_INT_EQ(st.renewals_requeued, 0);
    raw(n.raw, out, sizeof(out), "ZCARD %s", "jitrca:" STORE_KEY_RENEWAL_DUE);
    CHECK_STR_EQ(out, "1");
    /* the job running (its record), the due set empty: nothing */
    raw(n.raw, out, sizeof(out), "DEL %s", "jitrca:" STORE_KEY_RENEWAL_DUE);
    buf_reset(&want);
    buf_addf(&want, "jitrca:" STORE_KEY_RENEWAL_JOB "%s", idb);
    raw(n.raw, out, sizeof(out), "HSET %s state DETACH", buf_cstr(&want));
    CHECK_OK(issuance_reindex(n.f.conf, n.f.store, NULL, NULL, &st, &e), &e);
    CHECK_INT_EQ(st.renewals_requeued, 0);
    /* lost altogether, no grace: on the stream at once */
    raw(n.raw, out, sizeof(out), "DEL %s", buf_cstr(&want));
    n.f.conf->renewal_grace = 0;
    CHECK_OK(issuance_reindex(n.f.conf, n.f.store, NULL, NULL, &st, &e), &e);
    CHECK_INT_EQ(st.renewals_requeued, 1);
    raw(n.raw, out, sizeof(out), "XLEN %s", "jitrca:" STORE_KEY_RENEWAL_JOBS);
    CHECK_STR_EQ(out, "1");
    raw(n.raw, out, sizeof(out), "ZCARD %s", "jitrca:" STORE_KEY_RENEWAL_DUE);
    CHECK_STR_EQ(out, "0");
out:
    for (size_t i = 0; i < 4; i++) {
        issuance_item_release(&it[i]);
    }
    buf_release(&csr);
    buf_release(&want);
    node_close(&n);
    return rc;
}

/* Two nodes: node a issues A and its renewal B; node b's JITR activates B (its log); node a's
 * job retires A later. A rebuild from node b's configuration reads b's log first, the
 * activation before the issue record that makes it a renewal: B's retirement is queued all the
 * same; once the retirement is recorded (in a's log, after the activation's log was read)
 * nothing is. */
static int test_peers_renewal(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct node n = { 0 };
    struct conf cb;
    struct issuance_ctx *cbx = NULL;
    struct issuance_item it[2];
    struct issuance_reindex_stats st;
    struct buf csr = BUF_INIT, logb = BUF_INIT, peers = BUF_INIT;
    char node_b[] = "node-b", out[1024], idb[65];
    static const char *const cn[2] = { "dev-ra", "dev-rb" };
    memset(it, 0, sizeof(it));
    memset(idb, 'b', 64);
    idb[64] = '\0';
    int frc = node_open(&n, "peers-renewal", 15, "node-a", &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    raw(n.raw, out, sizeof(out), "DEL %s", "jitrca:" STORE_KEY_RENEWAL_DUE);
    raw(n.raw, out, sizeof(out), "DEL %s", "jitrca:" STORE_KEY_RENEWAL_JOBS);
    buf_addf(&logb, "%s/node-b/audit.log", n.f.dir);
    cb = *n.f.conf;
    cb.node_id = node_b;
    cb._audit_path = logb.data;
    buf_addstr(&peers, conf_audit_path(n.f.conf));
    cb.audit_peer_logs = peers.data;
    CHECK((cbx = issuance_ctx_open(&cb, "root", NULL, &e)) != NULL);
    for (size_t i = 0; i < 2; i++) {
        buf_reset(&csr);
        fixture_csr(cn[i], &csr);
        it[i] = (struct issuance_item){ .csr = (const uint8_t *)csr.data,
                                        .csr_len = csr.len,
                                        .requester = "station:line1",
                                        .renews = i ? it[0].cert.serial_hex : NULL };
        CHECK_OK(issuance_run(n.w, &it[i], 1, &e), &e);
        CHECK(it[i].issued);
    }
    CHECK_OK(activated(cbx->audit, idb, it[1].cert.serial_hex, "dev-rb", "ACTIVE", &e), &e);
    CHECK_OK(issuance_reindex(&cb, n.f.store, NULL, NULL, &st, &e), &e);
    CHECK_INT_EQ(st.renewals_requeued, 1);
    raw(n.raw, out, sizeof(out), "ZCARD %s", "jitrca:" STORE_KEY_RENEWAL_DUE);
    CHECK_STR_EQ(out, "1");
    /* retired through node a: nothing pending any more */
    CHECK_OK(append(n.ctx->audit,
                    json_pack("{s:s,s:s,s:s,s:s}", "type", "renewal_retire", "kind", "renewal",
                              "key", idb, "outcome", "retired"),
                    &e),
             &e);
    raw(n.raw, out, sizeof(out), "DEL %s", "jitrca:" STORE_KEY_RENEWAL_DUE);
    CHECK_OK(issuance_reindex(&cb, n.f.store, NULL, NULL, &st, &e), &e);
    CHECK_INT_EQ(st.renewals_requeued, 0);
    raw(n.raw, out, sizeof(out), "ZCARD %s", "jitrca:" STORE_KEY_RENEWAL_DUE);
    CHECK_STR_EQ(out, "0");
out:
    for (size_t i = 0; i < 2; i++) {
        issuance_item_release(&it[i]);
    }
    buf_release(&csr);
    buf_release(&logb);
    buf_release(&peers);
    issuance_ctx_free(cbx);
    node_close(&n);
    return rc;
}

/* Redis at the fixture's database, by redis-cli (what a lost write looks like). */
static int redis(const struct fixture *f, const char *cmd)
{
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    const char *db = strstr(f->conf->redis_url, "?db=");
    if (url == NULL || !str_has_prefix(url, "unix://") || db == NULL) {
        return -1;
    }
    return tt_sh("redis-cli -s '%s' -n %s %s >/dev/null", url + strlen("unix://"), db + 4, cmd);
}

/* The aws_status record a revoke job appends when AWS answered (jobs/revoke.c): with the change
 * it carried (seq, node, ms: when it was indexed), or without (an older version's record: node
 * NULL). */
static int aws_done(struct audit_log *log, const struct issuance_item *it, uint64_t seq,
                    const char *node, int64_t ms, const char *want, const char *outcome,
                    struct err *e)
{
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "type", "aws_status",
                            "kind", "revoke", "outcome", outcome, "certificate_id",
                            it->cert.fingerprint, "serial", it->cert.serial_hex, "ca", "root",
                            "want", want, "reason", "", "aws_before", "ACTIVE", "aws_status", want);
    if (node != NULL) {
        json_object_set_new(rec, "change_seq", json_integer((json_int_t)seq));
        json_object_set_new(rec, "change_node", json_string(node));
        json_object_set_new(rec, "change_ms", json_integer((json_int_t)ms));
    }
    return append(log, rec, e);
}

/* The revoke jobs' stream as "<serial>:<change_seq>:<src>" per entry, in order, space-separated. */
static void revoke_queue(redisContext *c, struct buf *out)
{
    redisReply *r = redisCommand(c, "XRANGE %s - +", STORE_PREFIX STORE_KEY_REVOKE_JOBS);
    buf_reset(out);
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *f = r->element[i]->element[1];
        const char *serial = "", *seq = "", *src = "";
        for (size_t k = 0; k + 1 < f->elements; k += 2) {
            if (strcmp(f->element[k]->str, "serial") == 0) {
                serial = f->element[k + 1]->str;
            } else if (strcmp(f->element[k]->str, "change_seq") == 0) {
                seq = f->element[k + 1]->str;
            } else if (strcmp(f->element[k]->str, "src") == 0) {
                src = f->element[k + 1]->str;
            }
        }
        buf_addf(out, "%s%s:%s:%s", i ? " " : "", serial, seq, src);
    }
    if (r) {
        freeReplyObject(r);
    }
}

/* Whether two space-separated lists hold the same words (the rebuild queues in its hash's
 * order). */
static bool same_set(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    bool same = true;
    char *x = xstrdup(b), *save = NULL;
    for (const char *p = a; *p; p++) {
        na += *p == ' ';
    }
    for (char *t = strtok_r(x, " ", &save); t; t = strtok_r(NULL, " ", &save), nb++) {
        same = same && strstr(a, t) != NULL;
    }
    xfree(x);
    if (!same || (a[0] ? na + 1 : 0) != nb) {
        fprintf(stderr, "    queued: '%s'\n    wanted: '%s'\n", a, b);
        return false;
    }
    return true;
}

/* Two nodes, two logs, one index: node a issues X, node b issues Y and revokes X. A rebuild
 * from either node's configuration (its peers: the other log) gives the live index back, X
 * revoked whatever the order; a peer log that cannot be read fails the rebuild, incomplete. */
static int test_peers(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct node n = { 0 };
    struct conf cb;
    struct issuance_ctx *cbx = NULL;
    struct issuance_worker *wb = NULL;
    struct issuance_revoker *rb = NULL;
    struct issuance_item x, y;
    struct issuance_revocation r;
    struct issuance_reindex_stats st;
    struct store_cert_rec rec = { 0 };
    struct buf csr1 = BUF_INIT, csr2 = BUF_INIT, logb = BUF_INIT, peers = BUF_INIT;
    char *own_peers = NULL;
    char node_b[] = "node-b", missing[] = "/nonexistent/audit.log", none[] = "";
    bool ready = true;
    uint64_t removed = 0;
    memset(&x, 0, sizeof(x));
    memset(&y, 0, sizeof(y));
    int frc = node_open(&n, "peers", 11, "node-a", &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    buf_addf(&logb, "%s/node-b/audit.log", n.f.dir);
    cb = *n.f.conf;
    cb.node_id = node_b;
    cb._audit_path = logb.data;
    fixture_csr("dev-x", &csr1);
    fixture_csr("dev-y", &csr2);
    CHECK((cbx = issuance_ctx_open(&cb, "root", NULL, &e)) != NULL);
    CHECK((wb = issuance_worker_new(cbx, &e)) != NULL);
    CHECK((rb = issuance_revoker_new(&cb, cbx->audit, NULL, &e)) != NULL);
    x = (struct issuance_item){ .csr = (const uint8_t *)csr1.data,
                                .csr_len = csr1.len,
                                .requester = "station:a" };
    CHECK_OK(issuance_run(n.w, &x, 1, &e), &e);
    y = (struct issuance_item){ .csr = (const uint8_t *)csr2.data,
                                .csr_len = csr2.len,
                                .requester = "station:b" };
    CHECK_OK(issuance_run(wb, &y, 1, &e), &e);
    CHECK(x.issued && y.issued);
    r = (struct issuance_revocation){ .serial = x.cert.serial_hex,
                                      .reason = CA_CRL_KEY_COMPROMISE,
                                      .requester = "station:admin" };
    CHECK_OK(issuance_revoke(rb, n.f.store, &r, &e), &e);
    /* each record names its node */
    CHECK_INT_EQ(fixture_audit_count(&n.f, "\"node\":\"node-a\""), 1);
    CHECK_INT_EQ(fixture_audit_count(&n.f, "\"node\":\"node-b\""), 0);
    for (int order = 0; order < 2; order++) {
        struct conf *c = order == 0 ? n.f.conf : &cb;
        buf_reset(&peers);
        buf_addf(&peers, "%s", order == 0 ? logb.data : conf_audit_path(n.f.conf));
        if (order == 0) {
            own_peers = n.f.conf->audit_peer_logs;
            n.f.conf->audit_peer_logs = peers.data;
        } else {
            cb.audit_peer_logs = peers.data;
        }
        CHECK_OK(store_index_mark_clear(n.f.store, &e), &e);
        CHECK_OK(store_index_clear(n.f.store, &removed, &e), &e);
        CHECK_OK(issuance_reindex(c, n.f.store, NULL, NULL, &st, &e), &e);
        CHECK_INT_EQ(st.certificates, 2);
        CHECK_INT_EQ(st.revoked, 1);
        CHECK_INT_EQ(st.revoke_unknown, 0);
        CHECK_OK(store_cert_read(n.f.store, x.cert.serial_hex, &rec, &e), &e);
        CHECK_STR_EQ(rec.status, "revoked");
        store_cert_rec_release(&rec);
        CHECK_OK(store_cert_read(n.f.store, y.cert.serial_hex, &rec, &e), &e);
        CHECK_STR_EQ(rec.status, "valid");
        store_cert_rec_release(&rec);
        if (order == 0) {
            n.f.conf->audit_peer_logs = own_peers;
            own_peers = NULL;
        }
    }
    /* a peer log that is not there: no rebuild, the index stays incomplete */
    cb.audit_peer_logs = missing;
    CHECK(issuance_reindex(&cb, n.f.store, NULL, NULL, &st, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_UNAVAILABLE);
    CHECK_STR_CONTAINS(e.msg, "/nonexistent/audit.log");
    err_clear(&e);
    CHECK_OK(store_index_ready(n.f.store, &ready, &e), &e);
    CHECK(!ready);
    cb.audit_peer_logs = none;
    CHECK_OK(issuance_reindex(n.f.conf, n.f.store, NULL, NULL, &st, &e), &e);
out:
    if (own_peers) {
        n.f.conf->audit_peer_logs = own_peers;
    }
    issuance_item_release(&x);
    issuance_item_release(&y);
    store_cert_rec_release(&rec);
    buf_release(&csr1);
    buf_release(&csr2);
    buf_release(&logb);
    buf_release(&peers);
    issuance_revoker_free(rb);
    issuance_worker_free(wb);
    issuance_ctx_free(cbx);
    node_close(&n);
    return rc;
}

/* A hold through node a, its release through node b (whose log has fewer records: its seq is
 * lower than the hold's). The release reaches AWS although the hold's job is DONE with a higher
 * change_seq (another node's: compared by time); a rebuild from either node's configuration (its
 * own log first) leaves the certificate valid, the later fact, and queues no job (each node's
 * log has its job's aws_status record); a hold through a again after the release ends held,
 * and a rebuild after Redis lost its jobs queues that hold's job, once. */
static int test_peers_hold_release(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct node n = { 0 };
    struct conf cb;
    struct issuance_ctx *cbx = NULL;
    struct issuance_revoker *rb = NULL;
    struct issuance_item x;
    struct issuance_revocation r;
    struct issuance_reindex_stats st;
    struct store_cert_rec rec = { 0 };
    struct buf csr = BUF_INIT, logb = BUF_INIT, peers = BUF_INIT, job = BUF_INIT;
    char *own_peers = NULL;
    char node_b[] = "node-b", out[1024], cmd[512];
    uint64_t removed = 0, hold_seq = 0;
    int64_t hold_ms = 0;
    memset(&x, 0, sizeof(x));
    int frc = node_open(&n, "peers-hold", 12, "node-a", &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    raw(n.raw, out, sizeof(out), "DEL %s", STORE_PREFIX STORE_KEY_REVOKE_JOBS);
    buf_addf(&logb, "%s/node-b/audit.log", n.f.dir);
    cb = *n.f.conf;
    cb.node_id = node_b;
    cb._audit_path = logb.data;
    fixture_csr("dev-h", &csr);
    CHECK((cbx = issuance_ctx_open(&cb, "root", NULL, &e)) != NULL);
    CHECK((rb = issuance_revoker_new(&cb, cbx->audit, NULL, &e)) != NULL);
    x = (struct issuance_item){ .csr = (const uint8_t *)csr.data,
                                .csr_len = csr.len,
                                .requester = "station:a" };
    CHECK_OK(issuance_run(n.w, &x, 1, &e), &e);
    CHECK(x.issued);
    r = (struct issuance_revocation){ .serial = x.cert.serial_hex,
                                      .reason = CA_CRL_CERTIFICATE_HOLD,
                                      .requester = "station:admin" };
    CHECK_OK(issuance_revoke(n.rv, n.f.store, &r, &e), &e);
    hold_seq = r.seq;
    hold_ms = time_now_ms();
    CHECK(hold_seq >= 2);
    raw(n.raw, out, sizeof(out), "XLEN %s", STORE_PREFIX STORE_KEY_REVOKE_JOBS);
    CHECK_STR_EQ(out, "1");
    /* the hold's job done (jobs/revoke.c records the change it carried) */
    buf_addf(&job, STORE_PREFIX STORE_KEY_REVOKE_JOB "%s", x.cert.fingerprint);
    snprintf(cmd, sizeof(cmd),
             "HSET %%s state DONE change_seq %llu change_node node-a change_ms %lld",
             (unsigned long long)hold_seq, (long long)time_now_ms());
    raw(n.raw, out, sizeof(out), cmd, buf_cstr(&job));
    nanosleep(&(struct timespec){ 0, 5000000 }, NULL); /* a later ms */
    r = (struct issuance_revocation){ .serial = x.cert.serial_hex, .requester = "station:admin" };
    CHECK_OK(issuance_release(rb, n.f.store, &r, &e), &e);
    CHECK(r.seq < hold_seq);
    raw(n.raw, out, sizeof(out), "XLEN %s", STORE_PREFIX STORE_KEY_REVOKE_JOBS);
    CHECK_STR_EQ(out, "2");
    /* both reached AWS: each job's aws_status record in the log of the node that ran it */
    CHECK_OK(aws_done(n.ctx->audit, &x, hold_seq, "node-a", hold_ms, "INACTIVE", "inactive", &e),
             &e);
    CHECK_OK(aws_done(cbx->audit, &x, r.seq, "node-b", time_now_ms(), "ACTIVE", "active", &e), &e);
    for (int order = 0; order < 2; order++) {
        struct conf *c = order == 0 ? n.f.conf : &cb;
        buf_reset(&peers);
        buf_addf(&peers, "%s", order == 0 ? logb.data : conf_audit_path(n.f.conf));
        if (order == 0) {
            own_peers = n.f.conf->audit_peer_logs;
            n.f.conf->audit_peer_logs = peers.data;
        } else {
            cb.audit_peer_logs = peers.data;
        }
        CHECK_OK(store_index_mark_clear(n.f.store, &e), &e);
        CHECK_OK(store_index_clear(n.f.store, &removed, &e), &e);
        CHECK_OK(issuance_reindex(c, n.f.store, NULL, NULL, &st, &e), &e);
        CHECK_OK(store_cert_read(n.f.store, x.cert.serial_hex, &rec, &e), &e);
        CHECK_STR_EQ(rec.status, "valid");
        store_cert_rec_release(&rec);
        CHECK_INT_EQ(st.status_jobs_queued, 0); /* AWS has both */
        raw(n.raw, out, sizeof(out), "XLEN %s", STORE_PREFIX STORE_KEY_REVOKE_JOBS);
        CHECK_STR_EQ(out, "2");
        if (order == 0) {
            n.f.conf->audit_peer_logs = own_peers;
            own_peers = NULL;
        }
    }
    /* held again through a, after the release: held, from either node */
    nanosleep(&(struct timespec){ 0, 5000000 }, NULL); /* a later ms */
    r = (struct issuance_revocation){ .serial = x.cert.serial_hex,
                                      .reason = CA_CRL_CERTIFICATE_HOLD,
                                      .requester = "station:admin" };
    CHECK_OK(issuance_revoke(n.rv, n.f.store, &r, &e), &e);
    /* Redis lost everything but the index's old keys: the hold's job never ran; one job for it */
    CHECK(redis(&n.f, "EVAL \"for _, k in ipairs(redis.call('KEYS', 'jitrca:jobs:revoke:*')) do "
                      "redis.call('DEL', k) end\" 0") == 0);
    CHECK_OK(store_index_mark_clear(n.f.store, &e), &e);
    CHECK_OK(store_index_clear(n.f.store, &removed, &e), &e);
    CHECK_OK(issuance_reindex(&cb, n.f.store, NULL, NULL, &st, &e), &e);
    CHECK_OK(store_cert_read(n.f.store, x.cert.serial_hex, &rec, &e), &e);
    CHECK_STR_EQ(rec.status, "revoked");
    CHECK_STR_EQ(rec.reason, "certificateHold");
    store_cert_rec_release(&rec);
    CHECK_INT_EQ(st.status_jobs_queued, 1);
    revoke_queue(n.raw, &job);
    snprintf(cmd, sizeof(cmd), "%s:%llu:revoke", x.cert.serial_hex, (unsigned long long)r.seq);
    CHECK_STR_EQ(buf_cstr(&job), cmd);
    buf_reset(&job);
    buf_addf(&job, STORE_PREFIX STORE_KEY_REVOKE_JOB "%s", x.cert.fingerprint);
    raw(n.raw, out, sizeof(out), "HGET %s outcome", buf_cstr(&job));
    CHECK_STR_EQ(out, "active"); /* the release's, restored: the hold's job finds AWS ACTIVE */
out:
    if (own_peers) {
        n.f.conf->audit_peer_logs = own_peers;
    }
    issuance_item_release(&x);
    store_cert_rec_release(&rec);
    buf_release(&csr);
    buf_release(&logb);
    buf_release(&peers);
    buf_release(&job);
    issuance_revoker_free(rb);
    issuance_ctx_free(cbx);
    node_close(&n);
    return rc;
}

/* The newest index writes lost (a failover): the tail replay indexes the certificate that went
 * missing and reserves its serial again, applies a lost revocation again, and leaves alone what
 * is there (a revoked certificate is not made valid by its issue record); a tail that starts
 * after every record replays nothing. */
static int test_tail(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct node n = { 0 };
    struct issuance_item it[2];
    struct issuance_revocation r;
    struct issuance_reindex_stats st;
    struct store_cert_rec rec = { 0 };
    struct buf csr1 = BUF_INIT, csr2 = BUF_INIT, live = BUF_INIT, after = BUF_INIT;
    char cmd[300];
    bool taken = false;
    const char *serial = NULL;
    memset(it, 0, sizeof(it));
    int frc = node_open(&n, "tail", 10, NULL, &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    fixture_csr("dev-t1", &csr1);
    fixture_csr("dev-t2", &csr2);
    it[0] = (struct issuance_item){ .csr = (const uint8_t *)csr1.data,
                                    .csr_len = csr1.len,
                                    .requester = "station:t" };
    it[1] = (struct issuance_item){ .csr = (const uint8_t *)csr2.data,
                                    .csr_len = csr2.len,
                                    .requester = "station:t" };
    CHECK_OK(issuance_run(n.w, it, 2, &e), &e);
    CHECK(it[0].issued && it[1].issued);
    r = (struct issuance_revocation){ .serial = it[1].cert.serial_hex,
                                      .reason = CA_CRL_KEY_COMPROMISE,
                                      .requester = "station:admin" };
    CHECK_OK(issuance_revoke(n.rv, n.f.store, &r, &e), &e);
    CHECK_OK(store_index_dump(n.f.store, &live, &e), &e);
    /* lost: the first certificate's index keys and serial reservation, the revocation */
    serial = it[0].cert.serial_hex;
    snprintf(cmd, sizeof(cmd), "DEL jitrca:cert:%s jitrca:serial:%s jitrca:fp:%s", serial, serial,
             it[0].cert.fingerprint);
    CHECK(redis(&n.f, cmd) == 0);
    snprintf(cmd, sizeof(cmd),
             "EVAL \"redis.call('HSET', KEYS[1], 'status', 'valid'); redis.call('HDEL', KEYS[1], "
             "'revoked_at', 'reason', 'revoke_seq'); redis.call('DEL', KEYS[2])\" 2 "
             "jitrca:cert:%s jitrca:ca:root:revoked",
             it[1].cert.serial_hex);
    CHECK(redis(&n.f, cmd) == 0);
    CHECK(store_cert_read(n.f.store, serial, &rec, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    err_clear(&e);
    /* a tail that starts after every record: nothing */
    CHECK_OK(issuance_reindex_tail(n.f.conf, n.f.store, "9999-01-01T00:00:00Z", &st, &e), &e);
    CHECK_INT_EQ(st.records, 0);
    CHECK(store_cert_read(n.f.store, serial, &rec, &e) != 0);
    err_clear(&e);
    /* the tail: back as it was */
    CHECK_OK(issuance_reindex_tail(n.f.conf, n.f.store, "2000-01-01T00:00:00Z", &st, &e), &e);
    CHECK_INT_EQ(st.certificates, 1); /* the missing one only */
    CHECK_INT_EQ(st.revoked, 1);
    CHECK_OK(store_index_dump(n.f.store, &after, &e), &e);
    CHECK_STR_EQ(buf_cstr(&after), buf_cstr(&live));
    /* its serial is reserved again */
    CHECK_OK(store_serials_reserve(n.f.store, "root", &serial, 1, &taken, &e), &e);
    CHECK(taken);
    /* again: nothing changes (the revoked one stays revoked) */
    CHECK_OK(issuance_reindex_tail(n.f.conf, n.f.store, "2000-01-01T00:00:00Z", &st, &e), &e);
    CHECK_INT_EQ(st.certificates, 0);
    CHECK_INT_EQ(st.revoked, 0);
    buf_reset(&after);
    CHECK_OK(store_index_dump(n.f.store, &after, &e), &e);
    CHECK_STR_EQ(buf_cstr(&after), buf_cstr(&live));
out:
    for (size_t i = 0; i < 2; i++) {
        issuance_item_release(&it[i]);
    }
    store_cert_rec_release(&rec);
    buf_release(&csr1);
    buf_release(&csr2);
    buf_release(&live);
    buf_release(&after);
    node_close(&n);
    return rc;
}

/* A certificate's index entry back to what its issue wrote: every trace of a hold, its release
 * and their jobs gone (a failover that lost them). */
static int lose_changes(struct node *n, const struct issuance_item *it)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd),
             "EVAL \"redis.call('HSET', KEYS[1], 'status', 'valid'); redis.call('HDEL', KEYS[1], "
             "'revoked_at', 'reason', 'revoke_seq', 'revoke_node', 'revoke_ms', 'release_seq', "
             "'release_node', 'release_ms'); redis.call('HDEL', KEYS[2], ARGV[1]); "
             "redis.call('DEL', KEYS[3], KEYS[4])\" 4 jitrca:cert:%s jitrca:ca:root:revoked "
             "%s %s%s %s",
             it->cert.serial_hex, STORE_PREFIX STORE_KEY_REVOKE_JOBS,
             STORE_PREFIX STORE_KEY_REVOKE_JOB, it->cert.fingerprint, it->cert.serial_hex);
    return redis(&n->f, cmd);
}

/* A failover's tail over a hold and its release (issuance_reindex_tail): with the release in
 * the index, the certificate stays valid and no job is queued (the hold is older than the
 * release: it is not applied again); with both lost, it ends valid and only the release's job
 * is queued; a hold alone in the tail (its release not made yet) ends held, its job queued. */
static int test_tail_release(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct node n = { 0 };
    struct issuance_item it[2];
    struct issuance_revocation r;
    struct issuance_reindex_stats st;
    struct store_cert_rec rec = { 0 };
    struct buf csr[2] = { BUF_INIT, BUF_INIT }, q = BUF_INIT, want = BUF_INIT;
    uint64_t release_seq = 0, hold_seq = 0;
    char out[64];
    memset(it, 0, sizeof(it));
    int frc = node_open(&n, "tail-release", 4, "node-a", &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    for (size_t i = 0; i < 2; i++) {
        fixture_csr(i ? "dev-tr2" : "dev-tr1", &csr[i]);
        it[i] = (struct issuance_item){ .csr = (const uint8_t *)csr[i].data,
                                        .csr_len = csr[i].len,
                                        .requester = "station:t" };
    }
    CHECK_OK(issuance_run(n.w, it, 2, &e), &e);
    CHECK(it[0].issued && it[1].issued);
    r = (struct issuance_revocation){ .serial = it[0].cert.serial_hex,
                                      .reason = CA_CRL_CERTIFICATE_HOLD,
                                      .requester = "station:admin" };
    CHECK_OK(issuance_revoke(n.rv, n.f.store, &r, &e), &e);
    r = (struct issuance_revocation){ .serial = it[0].cert.serial_hex,
                                      .requester = "station:admin" };
    CHECK_OK(issuance_release(n.rv, n.f.store, &r, &e), &e);
    release_seq = r.seq;
    /* (1) the new primary has the release (the jobs ran and are gone) */
    raw(n.raw, out, sizeof(out), "DEL %s", STORE_PREFIX STORE_KEY_REVOKE_JOBS);
    CHECK_OK(issuance_reindex_tail(n.f.conf, n.f.store, "2000-01-01T00:00:00Z", &st, &e), &e);
    CHECK_OK(store_cert_read(n.f.store, it[0].cert.serial_hex, &rec, &e), &e);
    CHECK_STR_EQ(rec.status, "valid");
    store_cert_rec_release(&rec);
    CHECK_INT_EQ(st.revoked, 0);
    CHECK_INT_EQ(st.released, 0);
    CHECK_INT_EQ(st.status_jobs_queued, 0);
    raw(n.raw, out, sizeof(out), "XLEN %s", STORE_PREFIX STORE_KEY_REVOKE_JOBS);
    CHECK_STR_EQ(out, "0");
    /* (2) it lost both, and their jobs */
    CHECK(lose_changes(&n, &it[0]) == 0);
    CHECK_OK(issuance_reindex_tail(n.f.conf, n.f.store, "2000-01-01T00:00:00Z", &st, &e), &e);
    CHECK_OK(store_cert_read(n.f.store, it[0].cert.serial_hex, &rec, &e), &e);
    CHECK_STR_EQ(rec.status, "valid");
    store_cert_rec_release(&rec);
    CHECK_INT_EQ(st.revoked, 1);
    CHECK_INT_EQ(st.released, 1);
    CHECK_INT_EQ(st.status_jobs_queued, 1);
    revoke_queue(n.raw, &q);
    buf_addf(&want, "%s:%llu:release", it[0].cert.serial_hex, (unsigned long long)release_seq);
    CHECK_STR_EQ(buf_cstr(&q), buf_cstr(&want));
    /* (3) a hold alone, lost: held again, its job queued */
    raw(n.raw, out, sizeof(out), "DEL %s", STORE_PREFIX STORE_KEY_REVOKE_JOBS);
    r = (struct issuance_revocation){ .serial = it[1].cert.serial_hex,
                                      .reason = CA_CRL_CERTIFICATE_HOLD,
                                      .requester = "station:admin" };
    CHECK_OK(issuance_revoke(n.rv, n.f.store, &r, &e), &e);
    hold_seq = r.seq;
    CHECK(lose_changes(&n, &it[1]) == 0);
    CHECK_OK(issuance_reindex_tail(n.f.conf, n.f.store, "2000-01-01T00:00:00Z", &st, &e), &e);
    CHECK_OK(store_cert_read(n.f.store, it[1].cert.serial_hex, &rec, &e), &e);
    CHECK_STR_EQ(rec.status, "revoked");
    CHECK_STR_EQ(rec.reason, "certificateHold");
    store_cert_rec_release(&rec);
    CHECK_OK(store_cert_read(n.f.store, it[0].cert.serial_hex, &rec, &e), &e);
    CHECK_STR_EQ(rec.status, "valid");
    store_cert_rec_release(&rec);
    revoke_queue(n.raw, &q);
    buf_reset(&want);
    buf_addf(&want, "%s:%llu:revoke", it[1].cert.serial_hex, (unsigned long long)hold_seq);
    CHECK_STR_EQ(buf_cstr(&q), buf_cstr(&want));
out:
    for (size_t i = 0; i < 2; i++) {
        issuance_item_release(&it[i]);
        buf_release(&csr[i]);
    }
    store_cert_rec_release(&rec);
    buf_release(&q);
    buf_release(&want);
    node_close(&n);
    return rc;
}

/* One change of x's status as a replay applies it (no job): a hold (hold true) or a release
 * recorded by node at seq and ms. */
static int replay_change(struct node *n, const struct issuance_item *x, bool hold, const char *node,
                         uint64_t seq, int64_t ms, enum store_revoke_result *res, struct err *e)
{
    struct store_revocation rv = { .serial = x->cert.serial_hex,
                                   .ca = "root",
                                   .revoked_at = "2026-02-02T00:00:00Z",
                                   .reason = hold ? "certificateHold" : NULL,
                                   .seq = seq,
                                   .node = node,
                                   .ms = ms,
                                   .no_job = false };
    return hold ? store_certs_revoke(n->f.store, &rv, 1, res, e)
                : store_certs_release(n->f.store, &rv, 1, res, e);
}

/* Two nodes' changes replayed in either order (several logs, a tail): a hold on node a at t1 and
 * its release on node b at t2 > t1 (b's seq lower than a's) end valid whichever comes first, the
 * later-applied older hold queuing no job; a hold on a at t3 > t2 then holds it. */
static int test_peers_replay_order(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct node n = { 0 };
    struct issuance_item x;
    struct store_cert_rec rec = { 0 };
    struct buf csr = BUF_INIT;
    enum store_revoke_result res;
    char out[64];
    int64_t t1 = 1800000000000, t2 = t1 + 1000, t3 = t2 + 1000;
    memset(&x, 0, sizeof(x));
    int frc = node_open(&n, "peers-replay", 3, "node-a", &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    fixture_csr("dev-pr", &csr);
    x = (struct issuance_item){ .csr = (const uint8_t *)csr.data,
                                .csr_len = csr.len,
                                .requester = "station:a" };
    CHECK_OK(issuance_run(n.w, &x, 1, &e), &e);
    CHECK(x.issued);
    for (int order = 0; order < 2; order++) {
        CHECK(lose_changes(&n, &x) == 0);
        for (int k = 0; k < 2; k++) {
            bool hold = (k == 0) == (order == 0);
            CHECK_OK(replay_change(&n, &x, hold, hold ? "node-a" : "node-b", hold ? 40 : 3,
                                   hold ? t1 : t2, &res, &e),
                     &e);
            /* hold then release: both apply; release then hold: neither changes anything */
            CHECK_INT_EQ(res, order == 0 ? STORE_REVOKE_DONE : STORE_REVOKE_ALREADY);
        }
        CHECK_OK(store_cert_read(n.f.store, x.cert.serial_hex, &rec, &e), &e);
        CHECK_STR_EQ(rec.status, "valid");
        store_cert_rec_release(&rec);
        raw(n.raw, out, sizeof(out), "XLEN %s", STORE_PREFIX STORE_KEY_REVOKE_JOBS);
        CHECK_STR_EQ(out, order == 0 ? "2" : "0");
    }
    CHECK_OK(replay_change(&n, &x, true, "node-a", 41, t3, &res, &e), &e);
    CHECK_INT_EQ(res, STORE_REVOKE_DONE);
    CHECK_OK(store_cert_read(n.f.store, x.cert.serial_hex, &rec, &e), &e);
    CHECK_STR_EQ(rec.status, "revoked");
    CHECK_STR_EQ(rec.reason, "certificateHold");
    store_cert_rec_release(&rec);
    /* and b's release at t2, replayed again after it: still held */
    CHECK_OK(replay_change(&n, &x, false, "node-b", 3, t2, &res, &e), &e);
    CHECK_INT_EQ(res, STORE_REVOKE_ALREADY);
    CHECK_OK(store_cert_read(n.f.store, x.cert.serial_hex, &rec, &e), &e);
    CHECK_STR_EQ(rec.status, "revoked");
out:
    issuance_item_release(&x);
    store_cert_rec_release(&rec);
    buf_release(&csr);
    node_close(&n);
    return rc;
}

/* Claims come back with the index: a claim of 9,000 allowlisted ids (three claim_allow records
 * besides claim_issue) and a device that enrolled with it; after Redis lost them, the rebuild
 * writes the claim, all 9,000 ids, and the enrolled one: that id is refused again, another
 * listed one is reserved, an unlisted one refused. */
static int test_claims(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct node n = { 0 };
    struct issuance_item it;
    struct issuance_reindex_stats st;
    struct enroll_claim cl = { 0 }, got;
    struct buf csr = BUF_INIT;
    char out[1024];
    char **ids = xcalloc(9000, sizeof(char *));
    int res = -1, frc;
    memset(&it, 0, sizeof(it));
    for (size_t i = 0; i < 9000; i++) {
        char id[32];
        snprintf(id, sizeof(id), "id-%05zu", i);
        ids[i] = xstrdup(id);
    }
    frc = node_open(&n, "reindex-claims", 8, NULL, &e);
    if (frc == TT_SKIP) {
        rc = TT_SKIP;
        goto out;
    }
    CHECK_OK(frc, &e);
    snprintf(cl.name, sizeof(cl.name), "big");
    snprintf(cl.serial, sizeof(cl.serial), "0a0b");
    snprintf(cl.ca, sizeof(cl.ca), "root");
    snprintf(cl.profile, sizeof(cl.profile), "device");
    cl.allowlist = true;
    cl.expires = (int64_t)time(NULL) + 86400;
    CHECK_OK(enroll_claim_create(n.f.store, n.ctx->audit, &cl, (const char *const *)ids, 9000,
                                 "cli:test", &e),
             &e);
    CHECK_INT_EQ(fixture_audit_count(&n.f, "\"type\":\"claim_allow\""), 3);
    CHECK_OK(enroll_claim_reserve(n.f.store, &cl, "id-00007", false, &res, &e), &e);
    CHECK_INT_EQ(res, 0);
    fixture_csr("id-00007", &csr);
    it = (struct issuance_item){ .csr = (const uint8_t *)csr.data,
                                 .csr_len = csr.len,
                                 .requester = "claim:big" };
    CHECK_OK(issuance_run(n.w, &it, 1, &e), &e);
    CHECK(it.issued);
    raw(n.raw, out, sizeof(out), "FLUSHDB%s", "");
    CHECK(enroll_claim_get(n.f.store, "big", &got, &e) != 0);
    err_clear(&e);
    CHECK_OK(issuance_reindex(n.f.conf, n.f.store, NULL, NULL, &st, &e), &e);
    CHECK_OK(enroll_claim_get(n.f.store, "big", &got, &e), &e);
    CHECK_STR_EQ(got.serial, "0a0b");
    CHECK_STR_EQ(got.profile, "device");
    CHECK(got.allowlist);
    CHECK_INT_EQ(got.expires, cl.expires);
    raw(n.raw, out, sizeof(out), "SCARD %s", "jitrca:claim:big:allow");
    CHECK_STR_EQ(out, "9000");
    CHECK_OK(enroll_claim_reserve(n.f.store, &got, "id-00007", true, &res, &e), &e);
    CHECK_INT_EQ(res, 2);
    CHECK_OK(enroll_claim_reserve(n.f.store, &got, "id-08999", false, &res, &e), &e);
    CHECK_INT_EQ(res, 0);
    CHECK_OK(enroll_claim_reserve(n.f.store, &got, "id-09000", true, &res, &e), &e);
    CHECK_INT_EQ(res, 1);
out:
    for (size_t i = 0; i < 9000; i++) {
        xfree(ids[i]);
    }
    xfree(ids);
    buf_release(&csr);
    issuance_item_release(&it);
    node_close(&n);
    return rc;
}

/* An aws_register record of certificateId id (jobs/register.c's fields). */
static int aws_registered(struct audit_log *log, const char *id, const char *serial,
                          const char *status, const char *outcome, struct err *e)
{
    static const char ca_id[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    return append(log,
                  json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "type", "aws_register", "kind",
                            "register", "certificate_id", id, "serial", serial, "ca", "root",
                            "ca_id", ca_id, "account", "123456789012", "status", status, "outcome",
                            outcome),
                  e);
}

/* Certificates jitrctl aws register-batch registered, after Redis lost their flow records: A
 * (no flow end) is marked and its provisioning queued, once, with the fields the job engine
 * writes; B (provisioned INACTIVE as asked) marked DONE with its status; C on hold, D revoked
 * (superseded): marked, not queued; E activated by a later run: DONE ACTIVE; F "already" there:
 * nothing. Again with Redis keeping the records: nothing. The CA blocked (compromised): A's
 * record lost again, it is marked but not queued. */
static int test_registered(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct node n = { 0 };
    struct issuance_item it[6];
    struct issuance_revocation r;
    struct issuance_reindex_stats st;
    struct buf csr = BUF_INIT, key = BUF_INIT;
    char out[1024];
    static const char *const cn[6] = { "reg-a", "reg-b", "reg-c", "reg-d", "reg-e", "reg-f" };
    int frc;
    memset(it, 0, sizeof(it));
    frc = node_open(&n, "reindex-registered", 7, NULL, &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    for (size_t i = 0; i < 6; i++) {
        buf_reset(&csr);
        fixture_csr(cn[i], &csr);
        it[i] = (struct issuance_item){ .csr = (const uint8_t *)csr.data,
                                        .csr_len = csr.len,
                                        .requester = "station:line1" };
        CHECK_OK(issuance_run(n.w, &it[i], 1, &e), &e);
        CHECK(it[i].issued);
        CHECK_OK(aws_registered(n.ctx->audit, it[i].cert.fingerprint, it[i].cert.serial_hex,
                                i == 1 || i == 4 ? "INACTIVE" : "ACTIVE",
                                i == 5 ? "already" : "registered", &e),
                 &e);
    }
    CHECK_OK(activated(n.ctx->audit, it[1].cert.fingerprint, it[1].cert.serial_hex, "reg-b",
                       "INACTIVE", &e),
             &e);
    CHECK_OK(activated(n.ctx->audit, it[4].cert.fingerprint, it[4].cert.serial_hex, "reg-e",
                       "INACTIVE", &e),
             &e);
    CHECK_OK(aws_registered(n.ctx->audit, it[4].cert.fingerprint, it[4].cert.serial_hex, "ACTIVE",
                            "activated", &e),
             &e);
    r = (struct issuance_revocation){ .serial = it[2].cert.serial_hex,
                                      .reason = CA_CRL_CERTIFICATE_HOLD,
                                      .requester = "station:admin" };
    CHECK_OK(issuance_revoke(n.rv, n.f.store, &r, &e), &e);
    r = (struct issuance_revocation){ .serial = it[3].cert.serial_hex,
                                      .reason = CA_CRL_SUPERSEDED,
                                      .requester = "station:admin" };
    CHECK_OK(issuance_revoke(n.rv, n.f.store, &r, &e), &e);
    raw(n.raw, out, sizeof(out), "FLUSHDB%s", "");
    CHECK_OK(issuance_reindex(n.f.conf, n.f.store, NULL, NULL, &st, &e), &e);
    CHECK_INT_EQ(st.registered_requeued, 1);
    raw(n.raw, out, sizeof(out), "XLEN %s", "jitrca:jitr:events");
    CHECK_STR_EQ(out, "1");
    {
        redisReply *x = redisCommand(n.raw, "XRANGE jitrca:jitr:events - +");
        struct buf got = BUF_INIT, want = BUF_INIT;
        CHECK(x != NULL && x->type == REDIS_REPLY_ARRAY && x->elements == 1);
        for (size_t i = 0; x && x->elements == 1 && i < x->element[0]->element[1]->elements; i++) {
            buf_addf(&got, "%s ", x->element[0]->element[1]->element[i]->str);
        }
        buf_addf(&want, "cert %s ca %.64s account 123456789012 recv ", it[0].cert.fingerprint,
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        CHECK(strncmp(buf_cstr(&got), buf_cstr(&want), want.len) == 0);
        CHECK(strstr(buf_cstr(&got), " src reindex enq_ms ") != NULL);
        if (x) {
            freeReplyObject(x);
        }
        buf_release(&got);
        buf_release(&want);
    }
#define DEV(i, what)                                                                \
    do {                                                                            \
        buf_reset(&key);                                                            \
        buf_addf(&key, "HGET jitrca:jitr:dev:%s %s", it[i].cert.fingerprint, what); \
        raw(n.raw, out, sizeof(out), buf_cstr(&key), "");                           \
    } while (0)
    DEV(0, "registered");
    CHECK_STR_EQ(out, "1");
    DEV(0, "status");
    CHECK_STR_EQ(out, "ACTIVE");
    DEV(0, "state");
    CHECK_STR_EQ(out, "");
    DEV(1, "state");
    CHECK_STR_EQ(out, "DONE");
    DEV(1, "status");
    CHECK_STR_EQ(out, "INACTIVE");
    DEV(2, "registered");
    CHECK_STR_EQ(out, "1");
    DEV(2, "state");
    CHECK_STR_EQ(out, "");
    DEV(3, "registered");
    CHECK_STR_EQ(out, "1");
    DEV(4, "state");
    CHECK_STR_EQ(out, "DONE");
    DEV(4, "aws_status");
    CHECK_STR_EQ(out, "ACTIVE");
    DEV(5, "registered");
    CHECK_STR_EQ(out, "");
    /* Redis kept them: nothing again */
    CHECK_OK(issuance_reindex(n.f.conf, n.f.store, NULL, NULL, &st, &e), &e);
    CHECK_INT_EQ(st.registered_requeued, 0);
    raw(n.raw, out, sizeof(out), "XLEN %s", "jitrca:jitr:events");
    CHECK_STR_EQ(out, "1");
    /* the CA compromised: marked, never queued */
    CHECK_OK(
        append(n.ctx->audit, json_pack("{s:s,s:s}", "type", "ca_compromised", "ca", "root"), &e),
        &e);
    raw(n.raw, out, sizeof(out), "FLUSHDB%s", "");
    CHECK_OK(issuance_reindex(n.f.conf, n.f.store, NULL, NULL, &st, &e), &e);
    CHECK_INT_EQ(st.registered_requeued, 0);
    DEV(0, "registered");
    CHECK_STR_EQ(out, "1");
#undef DEV
out:
    for (size_t i = 0; i < 6; i++) {
        issuance_item_release(&it[i]);
    }
    buf_release(&csr);
    buf_release(&key);
    node_close(&n);
    return rc;
}

/* A JITR end record of certificateId id: every field the flow writes (jitr/flow.c start_audit). */
static int jitr_end(struct audit_log *log, const char *type, const char *id, const char *status,
                    bool adopted, struct err *e)
{
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:[s,s],s:s}", "type", type,
                            "certificate_id", id, "ca_certificate_id",
                            "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
                            "serial", "0a0b0c", "ca", "root", "account", "123456789012", "thing",
                            "thing-x", "policies", "pol-a", "pol-b", "aws_status", status);
    if (adopted) {
        json_object_set_new(rec, "adopted", json_true());
    }
    if (strcmp(type, "jitr_activate") != 0) {
        json_object_set_new(rec, "reason", json_string("the reason"));
    }
    return append(log, rec, e);
}

/* The tail and JITR flows whose every write a failover lost: A activated (adopted), B rejected,
 * E ignored and then activated, F activated and then ignored: Redis has no state for them and
 * they get their end state back (DONE, REJECTED, DONE, DONE) with the record's fields, marked
 * restored, a trace line each; C has a provisioning state (its flow resumes from it), D's lock
 * is held (its flow runs now): left alone; a record whose certificateId is not one is skipped.
 * Again: nothing (the states are there). Before the restore a repeated event would have found
 * no state; after it the flow's LOAD finds DONE. */
static int test_tail_jitr(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct node n = { 0 };
    struct issuance_reindex_stats st;
    redisReply *r = NULL;
    char id[6][65], key[128], out[256];
    int frc = node_open(&n, "tail-jitr", 9, NULL, &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    for (size_t i = 0; i < 6; i++) {
        memset(id[i], 'a' + (int)i, 64);
        id[i][64] = '\0';
    }
    CHECK_OK(jitr_end(n.ctx->audit, "jitr_activate", id[0], "ACTIVE", true, &e), &e);
    CHECK_OK(jitr_end(n.ctx->audit, "jitr_reject", id[1], "REVOKED", false, &e), &e);
    CHECK_OK(jitr_end(n.ctx->audit, "jitr_activate", id[2], "ACTIVE", false, &e), &e);
    CHECK_OK(jitr_end(n.ctx->audit, "jitr_activate", id[3], "ACTIVE", false, &e), &e);
    CHECK_OK(jitr_end(n.ctx->audit, "jitr_ignore", id[4], "ACTIVE", false, &e), &e);
    CHECK_OK(jitr_end(n.ctx->audit, "jitr_activate", id[4], "ACTIVE", false, &e), &e);
    CHECK_OK(jitr_end(n.ctx->audit, "jitr_activate", id[5], "ACTIVE", false, &e), &e);
    CHECK_OK(jitr_end(n.ctx->audit, "jitr_ignore", id[5], "ACTIVE", false, &e), &e);
    CHECK_OK(jitr_end(n.ctx->audit, "jitr_activate", "not-an-id", "ACTIVE", false, &e), &e);
    snprintf(key, sizeof(key), "jitrca:jitr:dev:%s", id[2]);
    raw(n.raw, out, sizeof(out), "HSET %s state ATTACH_PRINCIPAL", key);
    snprintf(key, sizeof(key), "jitrca:jitr:lock:%s", id[3]);
    raw(n.raw, out, sizeof(out), "SET %s someone", key);
    CHECK_OK(issuance_reindex_tail(n.f.conf, n.f.store, "2000-01-01T00:00:00Z", &st, &e), &e);
    CHECK_INT_EQ(st.jitr_restored, 4);
    snprintf(key, sizeof(key), "jitrca:jitr:dev:%s", id[0]);
    r = redisCommand(n.raw,
                     "HMGET %s state serial ca thing policies aws_status ca_id "
                     "account adopted restored audit_seq updated_ms first_ms",
                     key);
    CHECK(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 13);
    {
        static const char *const want[] = {
            "DONE",
            "0a0b0c",
            "root",
            "thing-x",
            "pol-a,pol-b",
            "ACTIVE",
            "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
            "123456789012",
            "1",
            "audit",
        };
        for (size_t i = 0; i < ARRAY_LEN(want); i++) {
            CHECK_STR_EQ(r->element[i]->type == REDIS_REPLY_STRING ? r->element[i]->str : "",
                         want[i]);
        }
        for (size_t i = ARRAY_LEN(want); i < 13; i++) {
            CHECK(r->element[i]->type == REDIS_REPLY_STRING && atoll(r->element[i]->str) > 0);
        }
    }
    freeReplyObject(r);
    snprintf(key, sizeof(key), "jitrca:jitr:trace:%s", id[0]);
    raw(n.raw, out, sizeof(out), "LLEN %s", key);
    CHECK_STR_EQ(out, "1");
    raw(n.raw, out, sizeof(out), "LRANGE %s 0 0", key);
    CHECK(strstr(out, " RESTORED -> DONE from the audit record seq ") != NULL);
    {
        static const char *const st_want[] = { "DONE", "REJECTED", "ATTACH_PRINCIPAL",
                                               "",     "DONE",     "DONE" };
        for (size_t i = 0; i < 6; i++) {
            r = redisCommand(n.raw, "HGET jitrca:jitr:dev:%s state", id[i]);
            CHECK(r != NULL);
            CHECK_STR_EQ(r->type == REDIS_REPLY_STRING ? r->str : "", st_want[i]);
            freeReplyObject(r);
        }
    }
    r = redisCommand(n.raw, "HGET jitrca:jitr:dev:%s reason", id[1]);
    CHECK(r != NULL && r->type == REDIS_REPLY_STRING && strcmp(r->str, "the reason") == 0);
    freeReplyObject(r);
    /* again: every state is there, nothing is written */
    CHECK_OK(issuance_reindex_tail(n.f.conf, n.f.store, "2000-01-01T00:00:00Z", &st, &e), &e);
    CHECK_INT_EQ(st.jitr_restored, 0);
    snprintf(key, sizeof(key), "jitrca:jitr:trace:%s", id[0]);
    raw(n.raw, out, sizeof(out), "LLEN %s", key);
    CHECK_STR_EQ(out, "1");
out:
    node_close(&n);
    return rc;
}

/* register-batch --template after a Redis loss: the rebuild writes each aws_template record's
 * content back to jitr:tpl:<sha256> (one whose content does not hash to its sha256 is not
 * written), marks a certificate registered with it with its tpl and queues its provisioning
 * with it; one registered without a template gets none. */
static int test_registered_template(void)
{
    static const char ca_id[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    static const char text[] = "{\"Resources\": {}}\n";
    static const char bad[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    int rc = 0;
    struct err e = ERR_INIT;
    struct node n = { 0 };
    struct issuance_item it[2];
    struct issuance_reindex_stats st;
    struct buf csr = BUF_INIT, cmd = BUF_INIT;
    char out[1024], sha[65];
    int frc;
    memset(it, 0, sizeof(it));
    sha256_hex(text, strlen(text), sha);
    frc = node_open(&n, "reindex-registered-tpl", 6, NULL, &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    CHECK_OK(append(n.ctx->audit,
                    json_pack("{s:s,s:s,s:s,s:s}", "type", "aws_template", "sha256", sha, "content",
                              text, "batch", "b1"),
                    &e),
             &e);
    CHECK_OK(append(n.ctx->audit,
                    json_pack("{s:s,s:s,s:s,s:s}", "type", "aws_template", "sha256", bad, "content",
                              text, "batch", "b1"),
                    &e),
             &e);
    for (size_t i = 0; i < 2; i++) {
        buf_reset(&csr);
        fixture_csr(i == 0 ? "tpl-a" : "tpl-b", &csr);
        it[i] = (struct issuance_item){ .csr = (const uint8_t *)csr.data,
                                        .csr_len = csr.len,
                                        .requester = "station:line1" };
        CHECK_OK(issuance_run(n.w, &it[i], 1, &e), &e);
        CHECK(it[i].issued);
        CHECK_OK(append(n.ctx->audit,
                        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "type",
                                  "aws_register", "kind", "register", "certificate_id",
                                  it[i].cert.fingerprint, "serial", it[i].cert.serial_hex, "ca",
                                  "root", "ca_id", ca_id, "account", "123456789012", "status",
                                  "ACTIVE", "outcome", "registered", "tpl", i == 0 ? sha : ""),
                        &e),
                 &e);
    }
    raw(n.raw, out, sizeof(out), "FLUSHDB%s", "");
    CHECK_OK(issuance_reindex(n.f.conf, n.f.store, NULL, NULL, &st, &e), &e);
    CHECK_INT_EQ(st.registered_requeued, 2);
    buf_addf(&cmd, "GET jitrca:jitr:tpl:%s", sha);
    raw(n.raw, out, sizeof(out), buf_cstr(&cmd), "");
    CHECK_STR_EQ(out, text);
    buf_reset(&cmd);
    buf_addf(&cmd, "EXISTS jitrca:jitr:tpl:%s", bad);
    raw(n.raw, out, sizeof(out), buf_cstr(&cmd), "");
    CHECK_STR_EQ(out, "0");
    for (size_t i = 0; i < 2; i++) {
        buf_reset(&cmd);
        buf_addf(&cmd, "HGET jitrca:jitr:dev:%s tpl", it[i].cert.fingerprint);
        raw(n.raw, out, sizeof(out), buf_cstr(&cmd), "");
        CHECK_STR_EQ(out, i == 0 ? sha : "");
    }
    {
        redisReply *x = redisCommand(n.raw, "XRANGE jitrca:jitr:events - +");
        size_t with = 0;
        CHECK(x != NULL && x->type == REDIS_REPLY_ARRAY && x->elements == 2);
        for (size_t k = 0; x && k < x->elements; k++) {
            redisReply *fl = x->element[k]->element[1];
            const char *cert = fl->element[1]->str, *tpl = NULL;
            for (size_t i = 0; i + 1 < fl->elements; i += 2) {
                if (strcmp(fl->element[i]->str, "tpl") == 0) {
                    tpl = fl->element[i + 1]->str;
                }
            }
            if (tpl != NULL) {
                with++;
                CHECK_STR_EQ(tpl, sha);
                CHECK_STR_EQ(cert, it[0].cert.fingerprint);
            }
        }
        CHECK_INT_EQ(with, 1);
        if (x) {
            freeReplyObject(x);
        }
    }
out:
    for (size_t i = 0; i < 2; i++) {
        issuance_item_release(&it[i]);
    }
    buf_release(&csr);
    buf_release(&cmd);
    node_close(&n);
    return rc;
}

/* Redis restarted empty: the rebuild queues a revoke job only for a certificate whose last
 * change has no aws_status record naming it or a later one, and writes the finished jobs'
 * records back. A revoked (AWS answered); B held (answered), then released (its job never ran);
 * C revoked, answered by an older version's record (no change: queued again); D held and
 * released, each answered; E held, released, held again, its last hold not answered. Queued:
 * B's release, C's revocation, E's last hold, one each; B's restored record says "inactive"
 * (what the release's job needs to make it ACTIVE again). Then a failover that lost A's and C's
 * revocations and every job: the tail revokes A and C again and leaves B and D released (each
 * hold is older than the release the index shows: the later decision stands); it queues C's
 * revocation, not A's (AWS has what the index says) nor any hold of B or D, and gives A's record
 * back. */
static int test_status_jobs(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct node n = { 0 };
    struct issuance_item it[5];
    struct issuance_revocation r;
    struct issuance_reindex_stats st;
    struct buf csr[5], q = BUF_INIT, want = BUF_INIT, key = BUF_INIT;
    uint64_t seq[5][3];
    char out[256], cmd[400];
    memset(it, 0, sizeof(it));
    memset(csr, 0, sizeof(csr));
    memset(seq, 0, sizeof(seq));
    int frc = node_open(&n, "status-jobs", 5, "node-a", &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    for (size_t i = 0; i < 5; i++) {
        char cn[16];
        snprintf(cn, sizeof(cn), "dev-s%zu", i);
        fixture_csr(cn, &csr[i]);
        it[i] = (struct issuance_item){ .csr = (const uint8_t *)csr[i].data,
                                        .csr_len = csr[i].len,
                                        .requester = "station:s" };
    }
    CHECK_OK(issuance_run(n.w, it, 5, &e), &e);
    for (size_t i = 0; i < 5; i++) {
        /* 0 revoke; 1..4 hold, release, hold again (as far as each goes) */
        size_t steps = i == 0 || i == 2 ? 1 : i == 4 ? 3 : 2;
        CHECK(it[i].issued);
        for (size_t k = 0; k < steps; k++) {
            r = (struct issuance_revocation){ .serial = it[i].cert.serial_hex,
                                              .reason = i == 0 || i == 2 ? CA_CRL_KEY_COMPROMISE
                                                                         : CA_CRL_CERTIFICATE_HOLD,
                                              .requester = "station:admin" };
            if (k == 1) {
                CHECK_OK(issuance_release(n.rv, n.f.store, &r, &e), &e);
            } else {
                CHECK_OK(issuance_revoke(n.rv, n.f.store, &r, &e), &e);
            }
            seq[i][k] = r.seq;
            if ((i == 1 && k == 1) || (i == 4 && k == 2)) {
                continue; /* its job never ran */
            }
            CHECK_OK(aws_done(n.ctx->audit, &it[i], r.seq, i == 2 ? NULL : "node-a", time_now_ms(),
                              i == 0 || i == 2 ? "REVOKED"
                              : k == 1         ? "ACTIVE"
                                               : "INACTIVE",
                              i == 0 || i == 2 ? "revoked"
                              : k == 1         ? "active"
                                               : "inactive",
                              &e),
                     &e);
        }
    }
    /* Redis restarted empty */
    raw(n.raw, out, sizeof(out), "FLUSHDB", "");
    CHECK_OK(issuance_reindex(n.f.conf, n.f.store, NULL, NULL, &st, &e), &e);
    revoke_queue(n.raw, &q);
    buf_addf(&want, "%s:%llu:release %s:%llu:revoke %s:%llu:revoke", it[1].cert.serial_hex,
             (unsigned long long)seq[1][1], it[2].cert.serial_hex, (unsigned long long)seq[2][0],
             it[4].cert.serial_hex, (unsigned long long)seq[4][2]);
    CHECK(same_set(buf_cstr(&q), buf_cstr(&want)));
    raw(n.raw, out, sizeof(out), "XLEN %s", STORE_PREFIX STORE_KEY_REVOKE_JOBS);
    CHECK_STR_EQ(out, "3");
    CHECK_INT_EQ(st.status_jobs_queued, 3);
    CHECK_INT_EQ(st.status_jobs_restored, 4);
    /* the finished jobs' records, as the engine left them */
    buf_addf(&key, STORE_PREFIX STORE_KEY_REVOKE_JOB "%s", it[1].cert.fingerprint);
    raw(n.raw, out, sizeof(out), "HMGET %s state outcome change_seq restored", buf_cstr(&key));
    CHECK_STR_EQ(out, "DONE");
    raw(n.raw, out, sizeof(out), "HGET %s outcome", buf_cstr(&key));
    CHECK_STR_EQ(out, "inactive");
    buf_reset(&key);
    buf_addf(&key, STORE_PREFIX STORE_KEY_REVOKE_JOB "%s", it[0].cert.fingerprint);
    raw(n.raw, out, sizeof(out), "HGET %s aws_status", buf_cstr(&key));
    CHECK_STR_EQ(out, "REVOKED");
    raw(n.raw, out, sizeof(out), "HGET %s change_seq", buf_cstr(&key));
    snprintf(cmd, sizeof(cmd), "%llu", (unsigned long long)seq[0][0]);
    CHECK_STR_EQ(out, cmd);
    raw(n.raw, out, sizeof(out), "HGET %s restored", buf_cstr(&key));
    CHECK_STR_EQ(out, "audit");
    buf_reset(&key);
    buf_addf(&key, STORE_PREFIX STORE_KEY_REVOKE_JOB "%s", it[2].cert.fingerprint);
    raw(n.raw, out, sizeof(out), "EXISTS %s", buf_cstr(&key));
    CHECK_STR_EQ(out, "0"); /* an older record: nothing to restore */

    /* a failover lost A's and C's revocations and every job */
    for (size_t i = 0; i < 3; i += 2) {
        snprintf(cmd, sizeof(cmd),
                 "EVAL \"redis.call('HSET', KEYS[1], 'status', 'valid'); redis.call('HDEL', "
                 "KEYS[1], 'revoked_at', 'reason', 'revoke_seq'); redis.call('HDEL', KEYS[2], "
                 "ARGV[1])\" 2 jitrca:cert:%s jitrca:ca:root:revoked %s",
                 it[i].cert.serial_hex, it[i].cert.serial_hex);
        CHECK(redis(&n.f, cmd) == 0);
    }
    CHECK(redis(&n.f, "EVAL \"for _, k in ipairs(redis.call('KEYS', 'jitrca:jobs:revoke:*')) do "
                      "redis.call('DEL', k) end\" 0") == 0);
    CHECK_OK(issuance_reindex_tail(n.f.conf, n.f.store, "2000-01-01T00:00:00Z", &st, &e), &e);
    CHECK_INT_EQ(st.revoked, 2);
    CHECK_INT_EQ(st.released, 0);
    CHECK_INT_EQ(st.status_jobs_queued, 1);
    revoke_queue(n.raw, &q);
    buf_reset(&want);
    buf_addf(&want, "%s:%llu:revoke", it[2].cert.serial_hex, (unsigned long long)seq[2][0]);
    CHECK(same_set(buf_cstr(&q), buf_cstr(&want)));
    for (size_t i = 1; i < 4; i += 2) {
        buf_reset(&key);
        buf_addf(&key, "jitrca:cert:%s", it[i].cert.serial_hex);
        raw(n.raw, out, sizeof(out), "HGET %s status", buf_cstr(&key));
        CHECK_STR_EQ(out, "valid");
    }
    buf_reset(&key);
    buf_addf(&key, STORE_PREFIX STORE_KEY_REVOKE_JOB "%s", it[0].cert.fingerprint);
    raw(n.raw, out, sizeof(out), "HGET %s outcome", buf_cstr(&key));
    CHECK_STR_EQ(out, "revoked");
    /* the tail again: nothing more */
    CHECK_OK(issuance_reindex_tail(n.f.conf, n.f.store, "2000-01-01T00:00:00Z", &st, &e), &e);
    CHECK_INT_EQ(st.status_jobs_queued, 0);
    CHECK_INT_EQ(st.status_jobs_restored, 0);
out:
    for (size_t i = 0; i < 5; i++) {
        issuance_item_release(&it[i]);
        buf_release(&csr[i]);
    }
    buf_release(&q);
    buf_release(&want);
    buf_release(&key);
    node_close(&n);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "rebuild", test_rebuild },
        { "renewal_requeue", test_renewal_requeue },
        { "peers", test_peers },
        { "peers_hold_release", test_peers_hold_release },
        { "peers_renewal", test_peers_renewal },
        { "tail", test_tail },
        { "tail_release", test_tail_release },
        { "peers_replay_order", test_peers_replay_order },
        { "tail_jitr", test_tail_jitr },
        { "claims", test_claims },
        { "registered", test_registered },
        { "registered_template", test_registered_template },
        { "status_jobs", test_status_jobs },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
