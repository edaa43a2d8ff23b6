/*
 * The index rebuild (issuance/reindex.h): replay of the audit log into Redis under the index
 * lock, through a store fenced with the lock's token.
 */
#include "issuance/reindex.h"

#include <libgen.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/enroll.h"
#include "issuance/issuance.h"
#include "issuance/revoke.h"
#include "store/store.h"

#define RENEW_EVERY_MS 5000
#define ENSURE_POLL_MS 100

struct reindex {
    struct store *store;
    const char *token;
    json_t *pending[ISSUANCE_REINDEX_BATCH];
    uint64_t seqs[ISSUANCE_REINDEX_BATCH];
    size_t n;
    json_t *revokes[ISSUANCE_REINDEX_BATCH]; /* "revoke" records waiting, after the issues */
    uint64_t rseqs[ISSUANCE_REINDEX_BATCH];
    size_t nr;
    json_t *crl_numbers;  /* CA name -> highest audited CRL number */
    json_t *renews;       /* serial of a renewal -> the serial it renews ("issue" records) */
    json_t *activated;    /* certificateId activated ACTIVE -> [serial, thing, ms], the earliest */
    json_t *retired;      /* certificateId -> true: its renewal_retire record */
    json_t *registered;   /* certificateId -> [serial, ca_id, account, status, tpl]: aws_register */
    json_t *templates;    /* SHA-256 -> content: aws_template (register-batch --template) */
    json_t *flow_end;     /* certificateId -> [state, aws_status]: its flow's end record */
    json_t *changes;      /* a second pass: every log's revocations and releases, in time order */
    json_t *aliases;      /* issuing alias -> its CA in the last ca_alias record */
    json_t *blocked;      /* CA name -> true: a ca_compromised record (never signs again) */
    json_t *claims;       /* claim name -> what enroll_claims_restore writes (a full rebuild) */
    json_t *jitr_ends;    /* tail: certificateId -> its last JITR end record (jitr_tail_end) */
    json_t *changes_last; /* serial -> [src, seq, node, ms]: its last status change applied */
    json_t *aws_done;     /* serial -> the aws_status record of its last change that reached AWS */
    struct issuance_reindex_stats st;
    int64_t renewal_grace_s; /* requeue_renewals: conf's renewal_grace */
    int64_t renewed_ms;
    uint64_t reported; /* st.records at the last progress call */
    issuance_reindex_progress_fn *progress;
    void *arg;
    struct err *e;
    /* the kind of replay: a rebuild's first pass (all false), its second pass over several logs
     * (revocations and releases only, see replay_logs), or a tail (records from since on, an
     * issue only when its certificate is missing) */
    bool pass2;
    bool quiet; /* a first pass over several logs: an unknown serial is no news yet */
    bool tail;
    const char *since; /* tail: RFC 3339 UTC, compared as text (the log's "ts" format) */
};

void issuance_index_token(char *out, size_t cap)
{
    char host[128] = "?";
    unsigned char rnd[8] = { 0 };
    char hex[2 * sizeof(rnd) + 1];
    if (gethostname(host, sizeof(host) - 1) != 0) {
        snprintf(host, sizeof(host), "?");
    }
    host[sizeof(host) - 1] = '\0';
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        int64_t t = time_mono_ns();
        memcpy(rnd, &t, sizeof(rnd) < sizeof(t) ? sizeof(rnd) : sizeof(t));
    }
    hex_encode(rnd, sizeof(rnd), hex);
    snprintf(out, cap, "%s:%ld:%s", host, (long)getpid(), hex);
}

/* After every record: extend the lock when RENEW_EVERY_MS have passed (a failure stops the
 * rebuild) and report progress every ISSUANCE_REINDEX_BATCH records. Neither may wait for a
 * batch to fill: "revoke" records flush the issues before them, so in a log where revocations
 * are frequent no batch of issues ever fills, and a lock renewed only then lapsed after
 * ISSUANCE_INDEX_LOCK_TTL_MS of a long replay; every rebuild then failed at that point, under
 * load, for ever. */
static int reindex_tick(struct reindex *r)
{
    int64_t now = time_now_ms();
    if (r->token != NULL && now - r->renewed_ms >= RENEW_EVERY_MS) {
        if (store_index_lock_renew(r->store, r->token, ISSUANCE_INDEX_LOCK_TTL_MS, r->e) != 0) {
            return -1;
        }
        r->renewed_ms = now;
    }
    if (r->st.records - r->reported < ISSUANCE_REINDEX_BATCH) {
        return 0;
    }
    r->reported = r->st.records;
    if (r->progress && r->progress(r->arg, &r->st) != 0) {
        return err_set(r->e, ERRC_CANCELED, "the rebuild was stopped (jitrd is shutting down)");
    }
    return 0;
}

static int flush_issues(struct reindex *r)
{
    struct store_cert *certs = xcalloc(r->n ? r->n : 1, sizeof(*certs));
    const char **serials = xcalloc(r->n ? r->n : 1, sizeof(*serials));
    bool *exists = xcalloc(r->n ? r->n : 1, sizeof(*exists));
    size_t m = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        rc = issuance_index_from_record(r->pending[i], r->seqs[i], &certs[i], r->e);
        serials[i] = certs[i].serial;
    }
    /* a tail indexes only what is missing: a certificate in the index may have been revoked
     * or renewed since, and its issue record would overwrite that */
    if (rc == 0 && r->tail) {
        rc = store_certs_exist(r->store, serials, r->n, exists, r->e);
    }
    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        if (!exists[i]) {
            certs[m++] = certs[i];
        }
    }
    if (rc == 0 && m) {
        rc = store_certs_index(r->store, certs, m, r->e);
    }
    for (size_t i = 0; i < r->n; i++) {
        json_decref(r->pending[i]);
    }
    xfree(serials);
    xfree(exists);
    r->st.certificates += rc == 0 ? m : 0;
    r->n = 0;
    xfree(certs);
    return rc;
}

static const char *str(json_t *rec, const char *k)
{
    const char *v = json_string_value(json_object_get(rec, k));
    return v ? v : "";
}

/* Whether change a (its log's node, seq, time) comes after change b: by seq in one node's log,
 * by time between nodes, the rule of the revoke and release scripts (CHANGE_AFTER_LUA,
 * store/store.c). */
static bool change_later(const char *na, uint64_t sa, int64_t ma, const char *nb, uint64_t sb,
                         int64_t mb)
{
    return strcmp(na, nb) == 0 ? sa > sb : ma > mb;
}

/* A revocation or release the replay applied: the last of each certificate's is the change
 * whose job settle_status_jobs queues unless an aws_status record shows it reached AWS IoT. A
 * full rebuild notes every one (the index was cleared: the last record is the last change, and
 * with several logs one applied in the first pass may be a no-op in the second); a tail only
 * those that changed the index (the others are in Redis with their jobs). */
static void note_change(struct reindex *r, const char *src, const struct store_revocation *rv,
                        bool changed)
{
    json_t *had = json_object_get(r->changes_last, rv->serial);
    const char *node = rv->node ? rv->node : "";
    if (r->tail && !changed) {
        return;
    }
    if (had != NULL &&
        !change_later(node, rv->seq, rv->ms, json_string_value(json_array_get(had, 2)),
                      (uint64_t)json_integer_value(json_array_get(had, 1)),
                      json_integer_value(json_array_get(had, 3)))) {
        return;
    }
    json_object_set_new(r->changes_last, rv->serial,
                        json_pack("[s,I,s,I]", src, (json_int_t)rv->seq, node, (json_int_t)rv->ms));
}

/* The revoke kind's aws_status records (jobs/revoke.c) that name the change their job carried
 * (change_seq, change_node, change_ms; older records do not, and their changes are queued again):
 * the last of each certificate's is kept for settle_status_jobs. */
static void replay_aws_status(struct reindex *r, const char *type, json_t *rec)
{
    const char *serial = json_string_value(json_object_get(rec, "serial"));
    const char *id = json_string_value(json_object_get(rec, "certificate_id"));
    json_t *seq = json_object_get(rec, "change_seq"), *ms = json_object_get(rec, "change_ms");
    const char *node = json_string_value(json_object_get(rec, "change_node"));
    json_t *had;
    if (strcmp(type, "aws_status") != 0 || strcmp(str(rec, "kind"), "revoke") != 0 ||
        serial == NULL || serial[0] == '\0' || id == NULL || strlen(id) != 64 ||
        !hex_is_lower(id, 64) || !json_is_integer(seq) || json_integer_value(seq) <= 0 ||
        !json_is_integer(ms) || node == NULL) {
        return;
    }
    had = json_object_get(r->aws_done, serial);
    if (had != NULL &&
        !change_later(node, (uint64_t)json_integer_value(seq), json_integer_value(ms),
                      str(had, "change_node"),
                      (uint64_t)json_integer_value(json_object_get(had, "change_seq")),
                      json_integer_value(json_object_get(had, "change_ms")))) {
        return;
    }
    json_object_set(r->aws_done, serial, rec);
}

static int flush_revokes(struct reindex *r)
{
    struct store_revocation *rv = xcalloc(r->nr ? r->nr : 1, sizeof(*rv));
    enum store_revoke_result *res = xcalloc(r->nr ? r->nr : 1, sizeof(*res));
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < r->nr; i++) {
        rc = issuance_revocation_from_record(r->revokes[i], r->rseqs[i], &rv[i], r->e);
        rv[i].no_job = true; /* settle_status_jobs queues what the log shows unfinished */
    }
    if (rc == 0 && r->nr) {
        rc = store_certs_revoke(r->store, rv, r->nr, res, r->e);
    }
    for (size_t i = 0; rc == 0 && i < r->nr; i++) {
        note_change(r, "revoke", &rv[i], res[i] == STORE_REVOKE_DONE);
        if (res[i] == STORE_REVOKE_UNKNOWN && r->quiet) {
            continue; /* another node's log may issue it: the second pass tells */
        }
        if (res[i] == STORE_REVOKE_UNKNOWN) {
            log_warn("audit seq %llu revokes serial %s, which no issue record before it names",
                     (unsigned long long)r->rseqs[i], rv[i].serial);
            r->st.revoke_unknown++;
        } else if (res[i] == STORE_REVOKE_DONE) {
            r->st.revoked++;
        }
    }
    for (size_t i = 0; i < r->nr; i++) {
        json_decref(r->revokes[i]);
    }
    r->nr = 0;
    xfree(rv);
    xfree(res);
    return rc;
}

/* Issues first: a revocation always follows the issuance it revokes in the log. */
static int flush_all(struct reindex *r)
{
    if (flush_issues(r) != 0 || flush_revokes(r) != 0) {
        return -1;
    }
    return reindex_tick(r);
}

static int replay_crl(struct reindex *r, json_t *rec, uint64_t seq)
{
    const char *ca = json_string_value(json_object_get(rec, "ca"));
    json_t *num = json_object_get(rec, "number");
    if (ca == NULL || !json_is_integer(num) || json_integer_value(num) <= 0) {
        return err_set(r->e, ERRC_INVALID, "crl record seq %llu has no 'ca' or 'number'",
                       (unsigned long long)seq);
    }
    json_t *cur = json_object_get(r->crl_numbers, ca);
    if (cur == NULL || json_integer_value(cur) < json_integer_value(num)) {
        json_object_set(r->crl_numbers, ca, num);
    }
    return 0;
}

/* Fills one slot of a chunk from an item of a JSON object (key, value); false skips the item. */
typedef bool reindex_fill_fn(struct reindex *r, const char *key, json_t *v, size_t slot, void *ctx);
/* Writes the m filled slots (one pipeline or script call), adding what it counts to *count. */
typedef int reindex_flush_fn(struct reindex *r, size_t m, size_t *count, void *ctx);

/* The items of obj in chunks of up to chunk slots, each flushed as soon as it is full and the
 * last one at the end: the one loop of every restore and re-queue after the replay. */
static int reindex_chunked(struct reindex *r, json_t *obj, size_t chunk, reindex_fill_fn *fill,
                           reindex_flush_fn *flush, void *ctx, size_t *count)
{
    const char *key;
    json_t *v;
    size_t m = 0;
    json_object_foreach(obj, key, v)
    {
        if (!fill(r, key, v, m, ctx)) {
            continue;
        }
        if (++m == chunk) {
            if (flush(r, m, count, ctx) != 0) {
                return -1;
            }
            m = 0;
        }
    }
    return m > 0 ? flush(r, m, count, ctx) : 0;
}

/* A renewal's predecessor is retired by a job (jobs/renewal.h) that its activation queued: the
 * renewal's "issue" record names the serial it renews, its "jitr_activate" record (ACTIVE) is
 * the activation, a "renewal_retire" record keyed by its certificateId the end. A retirement
 * in between lives only in Redis, and is queued again at the end of the replay. With several
 * nodes the three records may be in three logs, replayed in any order: each is collected here,
 * and requeue_renewals decides once every log was read. */
static void replay_renewal(struct reindex *r, const char *type, json_t *rec)
{
    if (strcmp(type, "issue") == 0) {
        if (str(rec, "renews")[0] != '\0' && str(rec, "serial")[0] != '\0') {
            json_object_set_new(r->renews, str(rec, "serial"), json_string(str(rec, "renews")));
        }
    } else if (strcmp(type, "jitr_activate") == 0) {
        const char *id = str(rec, "certificate_id");
        json_t *had = json_object_get(r->activated, id);
        int64_t ms = issuance_record_ms(rec);
        if (strcmp(str(rec, "aws_status"), "ACTIVE") != 0 || strlen(id) != 64 ||
            str(rec, "serial")[0] == '\0') {
            return; /* not activated */
        }
        if (ms == 0) {
            ms = time_now_ms();
        }
        if (had != NULL && json_integer_value(json_array_get(had, 2)) <= ms) {
            return; /* activated again (a replayed flow): the first one counts */
        }
        json_object_set_new(
            r->activated, id,
            json_pack("[s,s,I]", str(rec, "serial"), str(rec, "thing"), (json_int_t)ms));
    } else if (strcmp(type, "renewal_retire") == 0) {
        json_object_set_new(r->retired, str(rec, "key"), json_true());
    }
}

/* A certificate we registered in AWS IoT (jobs/register.c, jitrctl aws register-batch) is
 * provisioned by a JITR flow its register job queued; the job's "registered" mark (the flow's
 * record jitr:dev:<certificateId>) and the queued flow live only in Redis. The replay collects
 * the "aws_register" records (outcome registered, or activated: a later run's ACTIVE) and the
 * flows' end records, from every log, and requeue_registered restores them. */
static void replay_register(struct reindex *r, const char *type, json_t *rec)
{
    const char *id = str(rec, "certificate_id");
    json_t *had;
    if (strlen(id) != 64) {
        return;
    }
    if (strcmp(type, "aws_register") == 0 && strcmp(str(rec, "outcome"), "registered") == 0 &&
        str(rec, "serial")[0] != '\0' && strlen(str(rec, "ca_id")) == 64) {
        json_object_set_new(
            r->registered, id,
            json_pack("[s,s,s,s,s]", str(rec, "serial"), str(rec, "ca_id"), str(rec, "account"),
                      strcmp(str(rec, "status"), "INACTIVE") == 0 ? "INACTIVE" : "ACTIVE",
                      str(rec, "tpl")));
        return;
    }
    if (strcmp(type, "aws_register") == 0 && strcmp(str(rec, "outcome"), "activated") == 0) {
        json_object_set_new(r->flow_end, id, json_pack("[s,s]", "DONE", "ACTIVE"));
        return;
    }
    had = json_object_get(r->flow_end, id);
    if (had != NULL && strcmp(json_string_value(json_array_get(had, 1)), "ACTIVE") == 0) {
        return; /* activated: whatever else the logs hold, its last status ours was ACTIVE */
    }
    if (strcmp(type, "jitr_activate") == 0) {
        json_object_set_new(r->flow_end, id, json_pack("[s,s]", "DONE", str(rec, "aws_status")));
    } else if (strcmp(type, "jitr_reject") == 0) {
        json_object_set_new(r->flow_end, id,
                            json_pack("[s,s]", "REJECTED", str(rec, "aws_status")));
    } else if (strcmp(type, "jitr_ignore") == 0) {
        json_object_set_new(r->flow_end, id, json_pack("[s,s]", "IGNORED", str(rec, "aws_status")));
    }
}

/* The templates jitrctl aws register-batch --template stored (jitr:tpl:<sha256>): each
 * "aws_template" record's content, kept when it hashes to its sha256. */
static void replay_template(struct reindex *r, const char *type, json_t *rec)
{
    const char *sha = str(rec, "sha256"), *text = str(rec, "content");
    char got[65];
    if (strcmp(type, "aws_template") != 0 || strlen(sha) != 64) {
        return;
    }
    sha256_hex(text, strlen(text), got);
    if (strcmp(got, sha) == 0) {
        json_object_set_new(r->templates, sha, json_string(text));
    }
}

/* The templates back in Redis (SET NX: written once, never changed), before
 * requeue_registered queues the flows that name them. */
static int restore_templates(struct reindex *r)
{
    const char *sha;
    json_t *text;
    json_object_foreach(r->templates, sha, text)
    {
        char key[200], *out[1] = { NULL };
        size_t n = 0;
        const char *keys[] = { key }, *args[] = { json_string_value(text) };
        int rc;
        snprintf(key, sizeof(key), "jitr:tpl:%s", sha);
        rc = store_eval(r->store, "redis.call('SET', KEYS[1], ARGV[1], 'NX') return 1", keys, 1,
                        args, 1, out, 1, &n, r->e);
        xfree(out[0]);
        if (rc != 0) {
            return err_prefix(r->e, "restoring template %.16s...", sha);
        }
    }
    if (json_object_size(r->templates)) {
        log_info("index rebuild: %zu register-batch templates restored",
                 json_object_size(r->templates));
    }
    return 0;
}

/* The flow's record and stream (jobs/kinds.c, the "jitr" kind's older names). */
#define REG_FLOW_STREAM "jitr:events"
#define REG_FLOW_RECORD STORE_PREFIX "jitr:dev:"
#define REG_CHUNK       100

/* KEYS: the flow's stream, ca:blocked. ARGV: now (ms), the record prefix, then 8 per
 * certificate: certificateId, its index key (cert:<serial>), the CA's certificateId, account,
 * status asked, the flow's end state and status ("" when it did not end), the SHA-256 of the
 * template its register job carried ("" for jitrd's: restore_templates wrote it back). A
 * certificate whose flow record Redis still has is left alone; else the record is written again
 * (registered, as the register job marked it, its template too; with the end state when there
 * was one), and a flow is queued (with that template) for one that did not end, is valid in our
 * index (not revoked, not on hold, not superseded) and whose CA is not blocked. Returns how many
 * were queued. */
static const char register_restore_lua[] =
    "local n = 0\n"
    "for i = 3, #ARGV, 8 do\n"
    "  local dev = ARGV[2] .. ARGV[i]\n"
    "  if redis.call('EXISTS', dev) == 0 then\n"
    "    redis.call('HSET', dev, 'registered', '1', 'ca_id', ARGV[i + 2], 'status', ARGV[i + 4],\n"
    "               'tpl', ARGV[i + 7])\n"
    "    if ARGV[i + 5] ~= '' then\n"
    "      redis.call('HSET', dev, 'state', ARGV[i + 5], 'aws_status', ARGV[i + 6])\n"
    "    else\n"
    "      local c = redis.call('HMGET', ARGV[i + 1], 'status', 'ca')\n"
    "      if c[1] == 'valid' and redis.call('SISMEMBER', KEYS[2], c[2] or '') == 0 then\n"
    "        local f = {'cert', ARGV[i], 'ca', ARGV[i + 2], 'account', ARGV[i + 3], 'recv',\n"
    "                   ARGV[1], 'src', 'reindex', 'enq_ms', ARGV[1]}\n"
    "        if ARGV[i + 7] ~= '' then f[#f + 1] = 'tpl'; f[#f + 1] = ARGV[i + 7] end\n"
    "        redis.call('XADD', KEYS[1], 'MAXLEN', '~', '1000000', '*', unpack(f))\n"
    "        n = n + 1\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return n\n";

/* requeue_registered's chunk: the script's arguments, and each slot's cert:<serial> key. */
struct reg_chunk {
    const char **args;
    char (*ckeys)[STORE_KEY_MAX];
};

static bool reg_fill(struct reindex *r, const char *id, json_t *a, size_t m, void *ctx)
{
    struct reg_chunk *c = ctx;
    json_t *end = json_object_get(r->flow_end, id);
    const char **v = c->args + 2 + 8 * m;
    if (!store_key_cert(c->ckeys[m], sizeof(c->ckeys[m]),
                        json_string_value(json_array_get(a, 0)))) {
        return false; /* a serial that is no serial of ours */
    }
    v[0] = id;
    v[1] = c->ckeys[m];
    v[2] = json_string_value(json_array_get(a, 1));
    v[3] = json_string_value(json_array_get(a, 2));
    v[4] = json_string_value(json_array_get(a, 3));
    v[5] = end ? json_string_value(json_array_get(end, 0)) : "";
    v[6] = end ? json_string_value(json_array_get(end, 1)) : "";
    v[7] = json_string_value(json_array_get(a, 4));
    return true;
}

/* One script call for args[2 .. 2 + 8 * m): adds how many it queued to *queued. */
static int reg_flush(struct reindex *r, size_t m, size_t *queued, void *ctx)
{
    const struct reg_chunk *c = ctx;
    const char *keys[] = { REG_FLOW_STREAM, STORE_CA_BLOCKED };
    char *out[1] = { NULL };
    size_t n = 0;
    uint64_t q = 0;
    int rc =
        store_eval(r->store, register_restore_lua, keys, 2, c->args, 2 + 8 * m, out, 1, &n, r->e);
    if (rc == 0 && (n != 1 || out[0] == NULL || str_to_u64(out[0], &q) != 0)) {
        rc = err_set(r->e, ERRC_INTERNAL, "bad reply to the registered certificates' restore");
    }
    xfree(out[0]);
    *queued += (size_t)q;
    return rc;
}

/* The registered certificates whose marks Redis lost, marked again; their unfinished flows
 * queued again (after the index and ca:blocked are written: the script reads them). */
static int requeue_registered(struct reindex *r)
{
    struct reg_chunk c = { xcalloc(2 + 8 * REG_CHUNK, sizeof(*c.args)),
                           xcalloc(REG_CHUNK, sizeof(*c.ckeys)) };
    char now[24];
    size_t queued = 0;
    int rc;
    snprintf(now, sizeof(now), "%lld", (long long)time_now_ms());
    c.args[0] = now;
    c.args[1] = REG_FLOW_RECORD;
    rc = reindex_chunked(r, r->registered, REG_CHUNK, reg_fill, reg_flush, &c, &queued);
    if (rc == 0 && queued) {
        log_info("index rebuild: %zu certificates registered in AWS IoT by jitrctl aws "
                 "register-batch whose provisioning Redis lost are queued again",
                 queued);
    }
    r->st.registered_requeued = queued;
    xfree(c.ckeys);
    xfree(c.args);
    return rc;
}

/* A pending retirement (a renewal activated, its retirement not recorded) into slot m. */
static bool renewal_fill(struct reindex *r, const char *id, json_t *a, size_t m, void *ctx)
{
    struct store_renewal_job *v = ctx;
    const char *serial = json_string_value(json_array_get(a, 0));
    const char *renews = json_string_value(json_object_get(r->renews, serial));
    if (renews == NULL || json_object_get(r->retired, id) != NULL) {
        return false;
    }
    v[m] = (struct store_renewal_job){
        .cert_id = id,
        .serial = serial,
        .renews = renews,
        .thing = json_string_value(json_array_get(a, 1)),
        .due_ms = json_integer_value(json_array_get(a, 2)) + r->renewal_grace_s * 1000,
    };
    return true;
}

static int renewal_flush(struct reindex *r, size_t m, size_t *queued, void *ctx)
{
    size_t q = 0;
    int rc = store_renewal_jobs_requeue(r->store, ctx, m, &q, r->e);
    *queued += q;
    return rc;
}

/* The retirements the replay found pending, queued unless Redis has their jobs still, due
 * renewal_grace after the activation (to the second: enough for a grace of seconds). */
static int requeue_renewals(struct reindex *r, int64_t grace_s)
{
    struct store_renewal_job *v = xcalloc(ISSUANCE_REINDEX_BATCH, sizeof(*v));
    size_t queued = 0;
    int rc;
    r->renewal_grace_s = grace_s;
    rc = reindex_chunked(r, r->activated, ISSUANCE_REINDEX_BATCH, renewal_fill, renewal_flush, v,
                         &queued);
    if (rc == 0 && queued) {
        log_info("index rebuild: %zu renewal retirements were missing from Redis and are queued "
                 "again",
                 queued);
    }
    r->st.renewals_requeued = queued;
    xfree(v);
    return rc;
}

/* The issuing aliases as their last ca_alias records left them, written only where Redis
 * differs (each write moves alias:gen, and every jitrd worker rebuilds its snapshot). */
static int replay_aliases(struct reindex *r)
{
    char **names = NULL, **cas = NULL;
    size_t n = 0;
    uint64_t gen = 0;
    const char *alias;
    json_t *ca;
    int rc = 0;
    if (json_object_size(r->aliases) == 0) {
        return 0;
    }
    if (store_alias_all(r->store, &names, &cas, &n, &gen, r->e) != 0) {
        return -1;
    }
    json_object_foreach(r->aliases, alias, ca)
    {
        bool same = false;
        for (size_t i = 0; i < n && !same; i++) {
            same = strcmp(names[i], alias) == 0 && strcmp(cas[i], json_string_value(ca)) == 0;
        }
        if (!same && (rc = store_alias_set(r->store, alias, json_string_value(ca), r->e)) != 0) {
            break;
        }
    }
    store_alias_free(names, cas, n);
    return rc;
}

/* Every CA a ca_compromised record blocked is blocked again (ca:blocked), before the index is
 * marked complete: until then no serial is reserved at all. */
static int replay_blocked(struct reindex *r)
{
    const char *ca;
    json_t *v;
    json_object_foreach(r->blocked, ca, v)
    {
        if (store_ca_block(r->store, ca, NULL, r->e) != 0) {
            return -1;
        }
    }
    return 0;
}

/* A claim's entry in r->claims (made empty when absent). */
static json_t *claim_of(struct reindex *r, const char *name)
{
    json_t *cl = json_object_get(r->claims, name);
    if (cl == NULL) {
        cl = json_pack("{s:[],s:[]}", "allow", "used");
        json_object_set_new(r->claims, name, cl);
    }
    return cl;
}

/* Claims for POST /v1/enroll: the claim (claim_issue: a later claim of the same name replaces
 * the claim and its allowlist, the ids enrolled under the name stay enrolled), its allowlist
 * (claim_allow), the device ids that enrolled with it (the issue records of requester
 * claim:NAME, whichever log has them). */
static void replay_claim(struct reindex *r, const char *type, json_t *rec)
{
    const char *name = json_string_value(json_object_get(rec, "claim"));
    if (strcmp(type, "claim_issue") == 0 && name) {
        time_t exp = 0;
        const char *x = json_string_value(json_object_get(rec, "expires"));
        const char *serial = json_string_value(json_object_get(rec, "serial"));
        const char *ca = json_string_value(json_object_get(rec, "ca"));
        const char *profile = json_string_value(json_object_get(rec, "profile"));
        const char *hook = json_string_value(json_object_get(rec, "hook"));
        json_t *cl = claim_of(r, name);
        if (serial == NULL || ca == NULL || profile == NULL) {
            return; /* not a claim this version wrote: its enrollments stay refused */
        }
        if (x == NULL || time_parse_rfc3339(x, &exp) != 0) {
            exp = 0; /* an unreadable expiry: expired, it enrolls nothing */
        }
        json_object_set_new(cl, "serial", json_string(serial));
        json_object_set_new(cl, "ca", json_string(ca));
        json_object_set_new(cl, "profile", json_string(profile));
        json_object_set_new(cl, "hook", json_string(hook ? hook : ""));
        json_object_set_new(cl, "allowlist",
                            json_boolean(json_is_true(json_object_get(rec, "allowlist"))));
        json_object_set_new(cl, "exp", json_integer((json_int_t)exp));
        json_object_set_new(cl, "allow", json_array());
    } else if (strcmp(type, "claim_allow") == 0 && name) {
        json_t *ids = json_object_get(rec, "devices"), *v;
        size_t i;
        json_array_foreach(ids, i, v)
        {
            if (json_is_string(v)) {
                json_array_append(json_object_get(claim_of(r, name), "allow"), v);
            }
        }
    } else if (strcmp(type, "issue") == 0) {
        const char *who = json_string_value(json_object_get(rec, "requester"));
        json_t *cn = json_object_get(rec, "cn");
        if (who && strncmp(who, "claim:", 6) == 0 && who[6] && json_is_string(cn)) {
            json_array_append(json_object_get(claim_of(r, who + 6), "used"), cn);
        }
    }
}

/* The tail's JITR flows (issuance_reindex_tail). A flow writes its end record (jitr_activate,
 * jitr_reject, jitr_ignore) to this node's log before it saves its end state in
 * jitr:dev:<certificateId> and acknowledges its event; a failover that lost every write of the
 * flow, its event's too, leaves the record and nothing in Redis: no state, no stream entry,
 * nothing that runs the flow again. Each certificate's last end record in the tail is kept
 * here (an activation is not replaced by a later refusal: AWS's status was ACTIVE) and
 * jitr_tail_restore writes its end state back. */
static void jitr_tail_end(struct reindex *r, const char *type, json_t *rec)
{
    const char *id = str(rec, "certificate_id");
    json_t *had;
    if (strncmp(type, "jitr_", 5) != 0 || strlen(id) != 64 || !hex_is_lower(id, 64)) {
        return;
    }
    if (strcmp(type, "jitr_activate") != 0 && strcmp(type, "jitr_reject") != 0 &&
        strcmp(type, "jitr_ignore") != 0) {
        return;
    }
    had = json_object_get(r->jitr_ends, id);
    if (had != NULL && strcmp(str(had, "type"), "jitr_activate") == 0 &&
        strcmp(type, "jitr_activate") != 0) {
        return;
    }
    json_object_set(r->jitr_ends, id, rec);
}

#define JITR_DEV_PREFIX   STORE_PREFIX "jitr:dev:"
#define JITR_TRACE_PREFIX STORE_PREFIX "jitr:trace:"
#define JITR_LOCK_PREFIX  STORE_PREFIX "jitr:lock:"
#define JITR_ARGS         14 /* per certificate, see jitr_restore_lua */
#define JITR_CHUNK        100

/* ARGV: now (ms), the prefixes of jitr:dev, jitr:trace and jitr:lock, then JITR_ARGS per
 * certificate: certificateId, end state, serial, ca, thing, policies (comma-separated),
 * aws_status, CA certificateId, account, audit seq, adopted (1/0), reason, the record's time
 * (ms), its node. A certificate whose flow has a state in Redis (it runs, or resumes from it:
 * its event is in the stream) or whose lock is held (a flow runs now) is left alone; else its
 * end state is written as the flow would have saved it, marked "restored", with a trace line.
 * Returns how many were written. */
static const char jitr_restore_lua[] =
    "local n = 0\n"
    "for i = 5, #ARGV, 14 do\n"
    "  local id = ARGV[i]\n"
    "  local dev = ARGV[2] .. id\n"
    "  if redis.call('HEXISTS', dev, 'state') == 0 and\n"
    "     redis.call('EXISTS', ARGV[4] .. id) == 0 then\n"
    "    redis.call('HSET', dev, 'state', ARGV[i + 1], 'serial', ARGV[i + 2], 'ca', ARGV[i + 3],\n"
    "      'thing', ARGV[i + 4], 'policies', ARGV[i + 5], 'aws_status', ARGV[i + 6],\n"
    "      'ca_id', ARGV[i + 7], 'account', ARGV[i + 8], 'audit_seq', ARGV[i + 9],\n"
    "      'adopted', ARGV[i + 10], 'reason', ARGV[i + 11], 'updated_ms', ARGV[i + 12],\n"
    "      'restored', 'audit')\n"
    "    redis.call('HSETNX', dev, 'first_ms', ARGV[i + 12])\n"
    "    redis.call('RPUSH', ARGV[3] .. id, ARGV[1] .. ' RESTORED -> ' .. ARGV[i + 1] ..\n"
    "      ' from the audit record seq ' .. ARGV[i + 9] .. ' of node ' .. ARGV[i + 13] ..\n"
    "      ' (a failover lost the flow\\'s states)')\n"
    "    redis.call('LTRIM', ARGV[3] .. id, -64, -1)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

/* jitr_tail_restore's chunk: the script's arguments, each slot's numbers and policies. */
struct jitr_chunk {
    const char **args;
    char (*nums)[2][24];
    struct buf *pols;
};

static bool jitr_fill(struct reindex *r, const char *id, json_t *rec, size_t m, void *ctx)
{
    struct jitr_chunk *c = ctx;
    const char **v = c->args + 4 + JITR_ARGS * m;
    const char *type = str(rec, "type");
    json_t *p;
    size_t k;
    (void)r;
    buf_reset(&c->pols[m]);
    json_array_foreach(json_object_get(rec, "policies"), k, p)
    {
        buf_addf(&c->pols[m], "%s%s", k ? "," : "",
                 json_string_value(p) ? json_string_value(p) : "");
    }
    snprintf(c->nums[m][0], sizeof(c->nums[m][0]), "%lld",
             (long long)json_integer_value(json_object_get(rec, "seq")));
    snprintf(c->nums[m][1], sizeof(c->nums[m][1]), "%lld", (long long)issuance_record_ms(rec));
    v[0] = id;
    v[1] = strcmp(type, "jitr_activate") == 0 ? "DONE"
           : strcmp(type, "jitr_reject") == 0 ? "REJECTED"
                                              : "IGNORED";
    v[2] = str(rec, "serial");
    v[3] = str(rec, "ca");
    v[4] = str(rec, "thing");
    v[5] = buf_cstr(&c->pols[m]);
    v[6] = str(rec, "aws_status");
    v[7] = str(rec, "ca_certificate_id");
    v[8] = str(rec, "account");
    v[9] = c->nums[m][0];
    v[10] = json_is_true(json_object_get(rec, "adopted")) ? "1" : "0";
    v[11] = str(rec, "reason");
    v[12] = c->nums[m][1];
    v[13] = str(rec, "node");
    return true;
}

/* One script call for args[4 .. 4 + JITR_ARGS * m): adds how many it wrote to *restored. */
static int jitr_flush(struct reindex *r, size_t m, size_t *restored, void *ctx)
{
    const struct jitr_chunk *c = ctx;
    char *out[1] = { NULL };
    size_t n = 0;
    uint64_t q = 0;
    int rc = store_eval(r->store, jitr_restore_lua, NULL, 0, c->args, 4 + JITR_ARGS * m, out, 1, &n,
                        r->e);
    if (rc == 0 && (n != 1 || out[0] == NULL || str_to_u64(out[0], &q) != 0)) {
        rc = err_set(r->e, ERRC_INTERNAL, "bad reply to the JITR end states' restore");
    }
    xfree(out[0]);
    *restored += (size_t)q;
    return rc;
}

/* The end states of the tail's JITR flows that Redis lacks, written back (jitr_tail_end). */
static int jitr_tail_restore(struct reindex *r)
{
    struct jitr_chunk c = { xcalloc(4 + JITR_ARGS * JITR_CHUNK, sizeof(*c.args)),
                            xcalloc(JITR_CHUNK, sizeof(*c.nums)),
                            xcalloc(JITR_CHUNK, sizeof(*c.pols)) };
    char now[24];
    size_t restored = 0;
    int rc;
    snprintf(now, sizeof(now), "%lld", (long long)time_now_ms());
    c.args[0] = now;
    c.args[1] = JITR_DEV_PREFIX;
    c.args[2] = JITR_TRACE_PREFIX;
    c.args[3] = JITR_LOCK_PREFIX;
    rc = reindex_chunked(r, r->jitr_ends, JITR_CHUNK, jitr_fill, jitr_flush, &c, &restored);
    if (rc == 0 && restored) {
        log_info("audit tail: %zu JITR flows whose every state Redis lost have their end state "
                 "back from their audit records",
                 restored);
    }
    r->st.jitr_restored = restored;
    for (size_t i = 0; i < JITR_CHUNK; i++) {
        buf_release(&c.pols[i]);
    }
    xfree(c.pols);
    xfree(c.nums);
    xfree(c.args);
    return rc;
}

#define STATUS_CHUNK 500

/* j's aws_status record (none when a is NULL). */
static void status_done(struct store_status_job *j, json_t *a)
{
    if (a == NULL) {
        return;
    }
    j->done_id = str(a, "certificate_id");
    j->outcome = str(a, "outcome");
    j->want = str(a, "want");
    j->reason = str(a, "reason");
    j->ca = str(a, "ca");
    j->aws_before = str(a, "aws_before");
    j->aws_status = str(a, "aws_status");
    j->done_seq = (uint64_t)json_integer_value(json_object_get(a, "change_seq"));
    j->done_node = str(a, "change_node");
    j->done_ms = json_integer_value(json_object_get(a, "change_ms"));
    j->audit_seq = (uint64_t)json_integer_value(json_object_get(a, "seq"));
    j->audit_ms = issuance_record_ms(a);
}

/* settle_status_jobs's chunk, and how many records it wrote back. */
struct status_chunk {
    struct store_status_job *v;
    size_t restored;
};

/* A certificate's last change, with its aws_status record when there is one. */
static bool change_fill(struct reindex *r, const char *serial, json_t *a, size_t m, void *ctx)
{
    struct status_chunk *c = ctx;
    c->v[m] = (struct store_status_job){
        .serial = serial,
        .src = json_string_value(json_array_get(a, 0)),
        .seq = (uint64_t)json_integer_value(json_array_get(a, 1)),
        .node = json_string_value(json_array_get(a, 2)),
        .ms = json_integer_value(json_array_get(a, 3)),
    };
    status_done(&c->v[m], json_object_get(r->aws_done, serial));
    return true;
}

/* An aws_status record of a certificate with no change applied (a tail's): its record only. */
static bool done_fill(struct reindex *r, const char *serial, json_t *a, size_t m, void *ctx)
{
    struct status_chunk *c = ctx;
    if (json_object_get(r->changes_last, serial) != NULL) {
        return false; /* change_fill took it */
    }
    c->v[m] = (struct store_status_job){ .serial = serial };
    status_done(&c->v[m], a);
    return true;
}

static int status_flush(struct reindex *r, size_t m, size_t *queued, void *ctx)
{
    struct status_chunk *c = ctx;
    size_t q = 0, w = 0;
    int rc = store_status_jobs_settle(r->store, c->v, m, &q, &w, r->e);
    *queued += q;
    c->restored += w;
    return rc == 0 ? reindex_tick(r) : rc;
}

/* The revoke jobs after the replay (its revocations and releases queued none): for every
 * certificate, the record of its last job that reached AWS IoT is written back when Redis lost
 * it (jitrctl cert show, and the prev_outcome a release's job needs to make a held certificate
 * ACTIVE again), and its last change is queued unless that job carried it or a later one. So
 * Redis restarted empty costs no AWS call for a change AWS IoT heard of; a change whose job had
 * not run, ran when Redis died, or died itself has no aws_status record and is queued again. */
static int settle_status_jobs(struct reindex *r)
{
    struct status_chunk c = { xcalloc(STATUS_CHUNK, sizeof(*c.v)), 0 };
    size_t queued = 0;
    int rc =
        reindex_chunked(r, r->changes_last, STATUS_CHUNK, change_fill, status_flush, &c, &queued);
    if (rc == 0) {
        rc = reindex_chunked(r, r->aws_done, STATUS_CHUNK, done_fill, status_flush, &c, &queued);
    }
    if (rc == 0 && (queued || c.restored)) {
        log_info("index rebuild: %zu revocations, holds and releases queued for AWS IoT (the "
                 "audit log shows no AWS outcome of them), %zu finished revoke jobs restored",
                 queued, c.restored);
    }
    r->st.status_jobs_queued = queued;
    r->st.status_jobs_restored = c.restored;
    xfree(c.v);
    return rc;
}

/* Frees r and what it still holds (a rebuild stopped midway leaves pending records). */
static void reindex_free(struct reindex *r)
{
    for (size_t i = 0; i < r->n; i++) {
        json_decref(r->pending[i]);
    }
    for (size_t i = 0; i < r->nr; i++) {
        json_decref(r->revokes[i]);
    }
    json_decref(r->crl_numbers);
    json_decref(r->renews);
    json_decref(r->activated);
    json_decref(r->retired);
    json_decref(r->registered);
    json_decref(r->templates);
    json_decref(r->flow_end);
    json_decref(r->changes);
    json_decref(r->aliases);
    json_decref(r->blocked);
    json_decref(r->claims);
    json_decref(r->jitr_ends);
    json_decref(r->changes_last);
    json_decref(r->aws_done);
    xfree(r);
}

/* A hold lifted: after every revocation before it, alone. */
static int replay_release(struct reindex *r, json_t *rec, uint64_t seq)
{
    struct store_revocation rv;
    enum store_revoke_result res;
    if (flush_all(r) != 0 || issuance_release_from_record(rec, seq, &rv, r->e) != 0) {
        return -1;
    }
    rv.no_job = true; /* settle_status_jobs queues what the log shows unfinished */
    if (store_certs_release(r->store, &rv, 1, &res, r->e) != 0) {
        return -1;
    }
    note_change(r, "release", &rv, res == STORE_REVOKE_DONE);
    r->st.released += res == STORE_REVOKE_DONE;
    return 0;
}

static int64_t rec_seq(json_t *rec)
{
    return (int64_t)json_integer_value(json_object_get(rec, "seq"));
}

/* Revocations and releases of several logs: by time, then node, then seq (one log's order). */
static int change_cmp(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int64_t tx = issuance_record_ms(x), ty = issuance_record_ms(y);
    int c;
    if (tx != ty) {
        return tx < ty ? -1 : 1;
    }
    if ((c = strcmp(str(x, "node"), str(y, "node"))) != 0) {
        return c;
    }
    return rec_seq(x) < rec_seq(y) ? -1 : rec_seq(x) > rec_seq(y);
}

/* The second pass's revocations and releases of every log, in time order: a hold on one node
 * and its release through another (or a release, then a hold again) end as the later one says,
 * whichever log comes first. */
static int replay_changes(struct reindex *r)
{
    size_t n = json_array_size(r->changes);
    json_t **v = xcalloc(n ? n : 1, sizeof(*v));
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = json_array_get(r->changes, i);
    }
    qsort(v, n, sizeof(*v), change_cmp);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint64_t seq = (uint64_t)rec_seq(v[i]);
        if (strcmp(str(v[i], "type"), "release") == 0) {
            rc = replay_release(r, v[i], seq);
            continue;
        }
        r->revokes[r->nr] = json_incref(v[i]);
        r->rseqs[r->nr++] = seq;
        if (r->nr == ISSUANCE_REINDEX_BATCH) {
            rc = flush_revokes(r);
        }
        if (rc == 0) {
            rc = reindex_tick(r);
        }
    }
    if (rc == 0) {
        rc = flush_all(r);
    }
    xfree(v);
    json_array_clear(r->changes);
    return rc;
}

static int replay_one(void *arg, json_t *rec, uint64_t line)
{
    struct reindex *r = arg;
    (void)line;
    const char *type = json_string_value(json_object_get(rec, "type"));
    json_int_t seq = json_integer_value(json_object_get(rec, "seq"));
    const char *hash = json_string_value(json_object_get(rec, "hash"));
    if (r->since != NULL) {
        const char *ts = json_string_value(json_object_get(rec, "ts"));
        if (ts == NULL || strcmp(ts, r->since) < 0) {
            return 0;
        }
    }
    r->st.records++;
    if (r->pass2) {
        if (type && (strcmp(type, "revoke") == 0 || strcmp(type, "release") == 0)) {
            json_array_append(r->changes, rec); /* applied in time order: replay_changes */
        }
        return reindex_tick(r);
    } else {
        r->st.last_seq = (uint64_t)seq;
        snprintf(r->st.last_hash, sizeof(r->st.last_hash), "%s", hash ? hash : "");
        if (type && !r->tail) {
            replay_renewal(r, type, rec);  /* a rebuild's renewal retirements (not a tail's) */
            replay_claim(r, type, rec);    /* and its claims */
            replay_register(r, type, rec); /* and its registered certificates */
            replay_template(r, type, rec); /* and their templates */
        }
    }
    if (r->tail && type) {
        jitr_tail_end(r, type, rec); /* the JITR flows whose states the new primary lacks */
    }
    if (type) {
        replay_aws_status(r, type, rec); /* the changes that reached AWS IoT */
    }
    if (type && strcmp(type, "issue") == 0) {
        r->pending[r->n] = json_incref(rec);
        r->seqs[r->n++] = (uint64_t)seq;
        if (r->n == ISSUANCE_REINDEX_BATCH && flush_issues(r) != 0) {
            return -1;
        }
    } else if (type && strcmp(type, "revoke") == 0) {
        if (flush_issues(r) != 0) {
            return -1;
        }
        r->revokes[r->nr] = json_incref(rec);
        r->rseqs[r->nr++] = (uint64_t)seq;
        if (r->nr == ISSUANCE_REINDEX_BATCH && flush_revokes(r) != 0) {
            return -1;
        }
    } else if (type && strcmp(type, "release") == 0) {
        if (replay_release(r, rec, (uint64_t)seq) != 0) {
            return -1;
        }
    } else if (type && strcmp(type, "crl") == 0) {
        if (replay_crl(r, rec, (uint64_t)seq) != 0) {
            return -1;
        }
    } else if (type && strcmp(type, "ca_alias") == 0) {
        json_t *alias = json_object_get(rec, "alias"), *ca = json_object_get(rec, "ca");
        if (!json_is_string(alias) || !json_is_string(ca)) {
            return err_set(r->e, ERRC_INVALID, "ca_alias record seq %llu has no 'alias' or 'ca'",
                           (unsigned long long)seq);
        }
        json_object_set(r->aliases, json_string_value(alias), ca);
    } else if (type && strcmp(type, "ca_compromised") == 0) {
        const char *ca = json_string_value(json_object_get(rec, "ca"));
        if (ca == NULL || *ca == '\0') {
            return err_set(r->e, ERRC_INVALID, "ca_compromised record seq %llu has no 'ca'",
                           (unsigned long long)seq);
        }
        json_object_set_new(r->blocked, ca, json_true());
    }
    return reindex_tick(r);
}

/* A missing log is an empty one only when no commit ever happened here: the first commit also
 * creates PATH.head, so a head file without its log means the log was lost (see reindex.h). */
static int missing_log_ok(const struct conf *c, struct err *e)
{
    struct buf head = BUF_INIT;
    bool lost;
    buf_addf(&head, "%s.head", conf_audit_path(c));
    lost = file_exists(head.data);
    buf_release(&head);
    if (lost) {
        return err_set(e, ERRC_UNAVAILABLE,
                       "the audit log '%s' is missing but its head file is there: the index "
                       "cannot be rebuilt until the log is restored",
                       conf_audit_path(c));
    }
    return 0;
}

/* A peer's log that is not there is an empty one (a node that never wrote) only when its
 * directory is there and its head file is not: a directory that is missing (a share not
 * mounted) or a head without its log (the log lost) would make an index without that node's
 * certificates. */
static bool peer_log_empty(const char *path)
{
    char *copy = xstrdup(path);
    struct buf head = BUF_INIT;
    bool empty;
    buf_addf(&head, "%s.head", path);
    empty = file_exists(dirname(copy)) && !file_exists(head.data);
    buf_release(&head);
    xfree(copy);
    return empty;
}

/* This node's log, then the other nodes' (audit_peer_logs). With several logs a second pass
 * replays every revocation and release of every log again, in time order (replay_changes): a
 * certificate issued by one node and revoked through another is revoked whatever order the logs
 * come in (the first pass found it unknown when the revoking log came first; done already is a
 * no-op), and of a hold and its release through two nodes the later wins. audit:head and the
 * ready mark name this node's log. */
static int replay_logs(struct reindex *r, const struct conf *c)
{
    struct issuance_reindex_stats own = { 0 };
    const char *self = conf_audit_path(c);
    char *list = xstrdup(c->audit_peer_logs);
    const char *logs[ISSUANCE_REINDEX_LOGS_MAX + 1];
    size_t nlogs = 0;
    int rc = -1;
    logs[nlogs++] = self;
    for (char *save = NULL, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (p[0] == '\0' || strcmp(p, self) == 0) {
            continue;
        }
        if (nlogs == ARRAY_LEN(logs)) {
            err_set(r->e, ERRC_INVALID, "audit_peer_logs: more than %d logs",
                    ISSUANCE_REINDEX_LOGS_MAX);
            goto out;
        }
        logs[nlogs++] = p;
    }
    for (int pass = 0; pass < (nlogs > 1 ? 2 : 1); pass++) {
        r->pass2 = pass == 1;
        r->quiet = nlogs > 1 && pass == 0;
        if (pass == 1) {
            r->st.revoke_unknown = 0; /* counted again, now that every issue is indexed */
        }
        for (size_t i = 0; i < nlogs; i++) {
            if (!file_exists(logs[i])) {
                if (i == 0 && (pass == 1 || missing_log_ok(c, r->e) == 0)) {
                    continue;
                }
                if (i > 0 && peer_log_empty(logs[i])) {
                    continue;
                }
                if (i > 0) {
                    err_set(r->e, ERRC_UNAVAILABLE,
                            "the audit log '%s' of another node (audit_peer_logs) cannot be "
                            "read: the index would miss its certificates",
                            logs[i]);
                }
                goto out;
            }
            if (audit_foreach(logs[i], replay_one, r, r->e) != 0 || flush_all(r) != 0) {
                if (i > 0) {
                    err_prefix(r->e, "audit log '%s'", logs[i]);
                }
                goto out;
            }
            if (i == 0 && pass == 0) {
                own = r->st;
            }
        }
        if (pass == 1 && replay_changes(r) != 0) {
            goto out;
        }
    }
    rc = 0;
out:
    r->quiet = false;
    if (rc == 0) {
        r->pass2 = false;
        r->st.last_seq = own.last_seq;
        memcpy(r->st.last_hash, own.last_hash, sizeof(own.last_hash));
    }
    xfree(list);
    return rc;
}

/* A replay's state: everything a full rebuild gathers (a tail uses part of it). */
static struct reindex *reindex_new(struct store *s, struct err *e)
{
    struct reindex *r = xcalloc(1, sizeof(*r));
    r->store = s;
    r->e = e;
    r->renewed_ms = time_now_ms();
    r->crl_numbers = json_object();
    r->renews = json_object();
    r->activated = json_object();
    r->retired = json_object();
    r->registered = json_object();
    r->templates = json_object();
    r->flow_end = json_object();
    r->changes = json_array();
    r->aliases = json_object();
    r->blocked = json_object();
    r->claims = json_object();
    r->jitr_ends = json_object();
    r->changes_last = json_object();
    r->aws_done = json_object();
    return r;
}

/* Every CA's CRL number raised to the highest its crl records reached. */
static int raise_crl_numbers(struct reindex *r)
{
    const char *ca;
    json_t *num;
    json_object_foreach(r->crl_numbers, ca, num)
    {
        if (store_crl_number_raise(r->store, ca, (uint64_t)json_integer_value(num), r->e) != 0) {
            return -1;
        }
    }
    return 0;
}

int issuance_reindex_tail(const struct conf *c, struct store *s, const char *since,
                          struct issuance_reindex_stats *out, struct err *e)
{
    struct reindex *r = reindex_new(s, e);
    int rc = -1;
    r->tail = true;
    r->since = since;
    if (file_exists(conf_audit_path(c)) &&
        (audit_foreach(conf_audit_path(c), replay_one, r, e) != 0 || flush_all(r) != 0 ||
         replay_blocked(r) != 0)) {
        goto out;
    }
    if (raise_crl_numbers(r) != 0 || jitr_tail_restore(r) != 0 || settle_status_jobs(r) != 0) {
        goto out;
    }
    rc = 0;
out:
    if (out) {
        *out = r->st;
    }
    reindex_free(r);
    return rc;
}

int issuance_reindex_locked(const struct conf *c, struct store *s, const char *token,
                            issuance_reindex_progress_fn *progress, void *arg,
                            struct issuance_reindex_stats *out, struct err *e)
{
    struct reindex *r = reindex_new(s, e);
    struct store_index_mark mark = { 0 };
    struct err ignore = ERR_INIT;
    unsigned char rnd[16] = { 0 };
    char gen[2 * sizeof(rnd) + 1];
    int rc = -1;
    r->token = token;
    r->progress = progress;
    r->arg = arg;
    store_fence(s, token);
    if (store_index_mark_clear(s, e) != 0 || store_index_clear(s, &r->st.keys_removed, e) != 0) {
        goto out;
    }
    if (replay_logs(r, c) != 0 || raise_crl_numbers(r) != 0 || settle_status_jobs(r) != 0) {
        goto out;
    }
    if (requeue_renewals(r, c->renewal_grace) != 0 || replay_aliases(r) != 0 ||
        replay_blocked(r) != 0 || enroll_claims_restore(s, r->claims, e) != 0 ||
        restore_templates(r) != 0 || requeue_registered(r) != 0) {
        goto out;
    }
    if (r->st.records && store_audit_head_set(s, r->st.last_seq, r->st.last_hash, e) != 0) {
        goto out;
    }
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        err_openssl(e, ERRC_INTERNAL, "no randomness for the index generation");
        goto out;
    }
    hex_encode(rnd, sizeof(rnd), gen);
    mark = (struct store_index_mark){ gen, r->st.last_seq, r->st.last_hash, r->st.records, token };
    if (store_index_mark_ready(s, token, &mark, e) != 0) {
        goto out;
    }
    rc = 0;
out:
    store_fence(s, NULL);
    if (rc != 0) {
        err_prefix(e,
                   "index rebuild stopped after %llu records; the index stays incomplete "
                   "until a rebuild succeeds",
                   (unsigned long long)r->st.records);
        if (store_index_lock_release(s, token, &ignore) != 0) {
            log_warn("cannot release the index lock: %s", ignore.msg);
        }
    }
    if (progress) {
        (void)progress(arg, &r->st);
    }
    if (out) {
        *out = r->st;
    }
    reindex_free(r);
    return rc;
}

int issuance_reindex(const struct conf *c, struct store *s, issuance_reindex_progress_fn *progress,
                     void *arg, struct issuance_reindex_stats *out, struct err *e)
{
    char token[200], holder[200];
    bool taken = false;
    issuance_index_token(token, sizeof(token));
    if (store_index_lock_take(s, token, ISSUANCE_INDEX_LOCK_TTL_MS, &taken, holder, sizeof(holder),
                              e) != 0) {
        return -1;
    }
    if (!taken) {
        return err_set(e, ERRC_CONFLICT,
                       "the index is being rebuilt by another process (%s); try again when it "
                       "is done",
                       holder[0] ? holder : "its lock just expired");
    }
    return issuance_reindex_locked(c, s, token, progress, arg, out, e);
}

int issuance_index_ensure(const struct conf *c, struct store *s, int64_t wait_ms, bool *rebuilt,
                          struct issuance_reindex_stats *out, struct err *e)
{
    int64_t deadline = time_now_ms() + (wait_ms > 0 ? wait_ms : 0);
    char token[200], holder[200] = "";
    bool ready = false, taken = false;
    if (rebuilt) {
        *rebuilt = false;
    }
    issuance_index_token(token, sizeof(token));
    for (;;) {
        if (store_index_ready(s, &ready, e) != 0) {
            return -1;
        }
        if (ready) {
            return 0;
        }
        if (store_index_lock_take(s, token, ISSUANCE_INDEX_LOCK_TTL_MS, &taken, holder,
                                  sizeof(holder), e) != 0) {
            return -1;
        }
        if (taken) {
            if (issuance_reindex_locked(c, s, token, NULL, NULL, out, e) != 0) {
                return -1;
            }
            if (rebuilt) {
                *rebuilt = true;
            }
            return 0;
        }
        if (time_now_ms() >= deadline) {
            return err_set(e, ERRC_UNAVAILABLE,
                           "the index of issued certificates is being rebuilt from the audit log "
                           "by %s; try again shortly",
                           holder[0] ? holder : "another process");
        }
        usleep(ENSURE_POLL_MS * 1000);
    }
}
