/*
 * The routes of jitrd (docs/api.md) and the jobs they hand to the signing threads.
 *
 * On the loop, a handler does only what needs no I/O: it authenticates the client from its
 * verified certificate chain (a station: issued by the station CA, its commonName listed in the
 * stations file; a device re-enrolling over EST: issued by a CA jitrd serves), parses the body,
 * and queues a job holding a reference to the current snapshot. In the signing thread the job
 * checks the client certificate's status in the index (revoked or unknown: refused; cached per
 * thread for STATUS_TTL_MS), takes the station's tokens from its Redis bucket, applies the
 * station's CA and profile authorisation, and runs the issuance path (issuance/issuance.h):
 * serials reserved, signed, audited durably, indexed. Its completion sends the reply on the loop.
 * Refusals of an authenticated client (authorisation, revocation, rate) are audited as
 * {"type":"deny"} records before the reply; CSR rejections are audited by the issuance path; a
 * client nobody authenticated is answered on the loop and only counted (refusal.c).
 *
 * Thread state: per thread one Redis connection and one issuance_worker per CA of the snapshot,
 * rebuilt when the snapshot changes and dropped after a Redis failure (reconnected by the next
 * job, which is how jitrd recovers when Redis returns).
 */
#include <event2/event.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "ca/issue.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/api.h"
#include "httpd/httpd.h"
#include "issuance/issuance.h"
#include "issuance/revoke.h"
#include "store/store.h"

#define STATUS_TTL_MS 5000
#define STATUS_CACHE  64

enum job_kind {
    J_SIGN,
    J_BATCH,
    J_EST_ENROLL,
    J_EST_REENROLL,
    J_CERT,
    J_READY,
    J_METRICS,
    J_DENY,
    J_REVOKE,
    J_CRL,
    J_CRL_SCHEDULE,
    J_RELOAD,
};

struct job {
    struct pool_job pj;
    enum job_kind kind;
    struct api *api;
    struct httpd_req *req;
    struct snap *snap;
    char request_id[24];
    /* who */
    const struct station *st; /* borrowed from snap; NULL for devices */
    char requester[128];
    char client_serial[41];
    X509_NAME *subject; /* re-enrollment: the current certificate's subject */
    char client_ca[API_NAME_MAX + 1];
    /* what */
    struct api_csr_req *items;
    size_t n;
    char param[API_NAME_MAX + 1];
    char reason[64];
    /* signing: per-item results, and the failure of the whole request */
    struct issuance_item *out;
    size_t *ca_of;
    size_t cost;   /* items that passed the checks: tokens to take from the station's bucket */
    bool checked;  /* sign_check passed the job (not failed whole) */
    bool failed;
    struct err fail;
    /* the reply */
    int status;
    char ctype[64];
    struct buf body;
    char retry_after[24];
    struct snap *new_snap;
    struct err err;
    /* operations: /readyz may name its problem (admin_listen, an admin station) */
    bool detail;
    /* EST re-enrollment: the certificate renewed, its lineage and this attempt (run_reenroll) */
    char renews[41];
    char lineage[65];
    char attempt[48];
};

struct status_entry {
    char serial[41];
    int64_t at_ms;
};

/* Bumped by any thread that sees Redis fail: every thread then drops its connections. */
static atomic_uint redis_epoch;

struct tstate {
    uint64_t gen;
    unsigned epoch;
    int64_t last_ok_ms; /* the last job that reached Redis */
    struct store *store;
    struct issuance_worker **iw;
    size_t niw;
    struct status_entry cache[STATUS_CACHE];
};

/* ---- thread state --------------------------------------------------------------------------- */

static void ts_reset(struct tstate *ts)
{
    for (size_t i = 0; i < ts->niw; i++) {
        issuance_worker_free(ts->iw[i]);
    }
    xfree(ts->iw);
    ts->iw = NULL;
    ts->niw = 0;
    store_free(ts->store);
    ts->store = NULL;
    memset(ts->cache, 0, sizeof(ts->cache));
}

static void *ts_new(void)
{
    return xcalloc(1, sizeof(struct tstate));
}

static void ts_free(void *p)
{
    ts_reset(p);
    xfree(p);
}

static void ts_sync(struct tstate *ts, const struct snap *s)
{
    if (ts->gen != s->gen || ts->niw != s->ncas) {
        ts_reset(ts);
        ts->gen = s->gen;
        ts->iw = xcalloc(s->ncas, sizeof(*ts->iw));
        ts->niw = s->ncas;
    }
}

static struct store *ts_store(struct tstate *ts, const struct snap *s, struct err *e)
{
    ts_sync(ts, s);
    if (ts->store == NULL) {
        ts->store = store_connect(s->conf->redis_url, e);
    }
    return ts->store;
}

static struct issuance_worker *ts_worker(struct tstate *ts, const struct snap *s, size_t ca,
                                         struct err *e)
{
    ts_sync(ts, s);
    if (ts->iw[ca] == NULL) {
        ts->iw[ca] = issuance_worker_new(s->cas[ca].ctx, e);
    }
    return ts->iw[ca];
}

/* After a failure: a Redis error drops the connections so the next job reconnects (not an
 * incomplete index: Redis answered; daemon/heal.c rebuilds it). */
static void ts_after_error(struct tstate *ts, const struct err *e)
{
    if (e->code == ERRC_UNAVAILABLE && !store_err_index_incomplete(e)) {
        ts_reset(ts);
        ts->epoch = atomic_fetch_add(&redis_epoch, 1) + 1;
    }
}

/* ---- replies built in the thread ------------------------------------------------------------ */

static void job_json(struct job *j, int status, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(v);
    j->status = status;
    snprintf(j->ctype, sizeof(j->ctype), "application/json");
    buf_reset(&j->body);
    if (s == NULL) {
        j->status = 500;
        buf_addstr(&j->body, "{\"error\":{\"code\":\"internal\",\"message\":\"cannot encode\"}}");
    } else {
        buf_addstr(&j->body, s);
    }
    buf_addch(&j->body, '\n');
    xfree(s);
}

static json_t *error_obj(const struct err *e)
{
    enum err_code c = e->code == ERRC_OK ? ERRC_INTERNAL : e->code;
    json_t *v = json_pack("{s:s,s:s}", "code", err_code_name(c), "message", e->msg);
    return v ? v : json_pack("{s:s,s:s}", "code", err_code_name(c), "message", "(unprintable)");
}

/* Seconds a client should wait before retrying a request refused with 503 (a dependency is down
 * or the index is being rebuilt): the Retry-After of every 503 of a job. */
#define UNAVAILABLE_RETRY_AFTER "2"

static const char *const audit_problem_names[] = {
    [AUDIT_OK] = "intact",           [AUDIT_EDITED] = "edited",
    [AUDIT_REMOVED] = "removed",     [AUDIT_REORDERED] = "reordered",
    [AUDIT_TRUNCATED] = "truncated", [AUDIT_MALFORMED] = "malformed",
};

/* The refusal of a request that needs the audit log while it is damaged: 503, nothing signed or
 * revoked. Signing asks only about damage the walk of daemon/auditwatch.c found in the middle
 * (any_part false): the end is checked by every append itself. */
static int audit_damaged_err(struct err *e, bool any_part)
{
    enum audit_problem p;
    uint64_t line;
    bool walk;
    if (!metrics_audit_damaged(&p, &line, &walk) || (!walk && !any_part)) {
        return 0;
    }
    return err_set(e, ERRC_UNAVAILABLE,
                   "the audit log is damaged (line %llu: %s): signing is suspended until an "
                   "operator repairs it",
                   (unsigned long long)line,
                   (unsigned)p < ARRAY_LEN(audit_problem_names) ? audit_problem_names[p] : "?");
}

/* What a client may read of an audit log failure: never the log's path (jitrd's log has the
 * whole message, audit.c wrote it there), and 503 for a damaged end as for an I/O error. */
static void audit_err_for_client(const struct snap *s, struct err *e)
{
    if (strstr(e->msg, conf_audit_path(s->conf)) == NULL) {
        return;
    }
    bool damaged = e->code == ERRC_INTERNAL;
    err_clear(e);
    err_set(e, ERRC_UNAVAILABLE, "%s",
            damaged ? "the audit log is damaged: signing is suspended until an operator repairs "
                      "it; nothing was issued"
                    : "the audit log cannot be written (disk full or I/O error); nothing was "
                      "issued");
}

static void job_error(struct job *j, const struct err *orig)
{
    struct err safe = *orig, *e = &safe;
    audit_err_for_client(j->snap, e);
    enum err_code c = e->code == ERRC_OK ? ERRC_INTERNAL : e->code;
    if (c == ERRC_UNAVAILABLE && !j->retry_after[0]) {
        snprintf(j->retry_after, sizeof(j->retry_after), "%s", UNAVAILABLE_RETRY_AFTER);
    }
    if (store_err_index_incomplete(e)) {
        metrics_index_complete(0); /* before the next check of daemon/heal.c */
    }
    job_json(j, err_http_status(c), json_pack("{s:o}", "error", error_obj(e)));
}

/* Appends one audit record of a refused request. Best effort: a failure is logged. */
static void audit_deny(const struct job *j, const char *route, const struct err *why)
{
    const struct snap *s = j->snap;
    struct audit_log *log = NULL;
    for (size_t i = 0; i < s->ncas && log == NULL; i++) {
        log = s->cas[i].ctx ? s->cas[i].ctx->audit : NULL;
    }
    if (log == NULL) {
        log_warn("refusal not audited (no CA audit log open): %s", why->msg);
        return;
    }
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "type", "deny", "requester",
                            j->requester, "route", route, "request_id", j->request_id, "code",
                            err_code_name(why->code), "reason", why->msg);
    struct err e = ERR_INIT;
    if (rec == NULL || audit_append(log, &rec, 1, NULL, &e) != 0) {
        log_error("cannot audit a refusal: %s", e.msg[0] ? e.msg : "cannot encode");
    }
    json_decref(rec);
}

/* Index status of the client's certificate: 0 when valid, -1 (DENIED, NOT_FOUND → DENIED,
 * UNAVAILABLE) otherwise. fields receives the record when want_fields. */
static int client_status(struct tstate *ts, struct job *j, struct buf *fields, struct err *e)
{
    struct buf own = BUF_INIT;
    struct buf *f = fields ? fields : &own;
    unsigned h = 0;
    for (const char *p = j->client_serial; *p; p++) {
        h = h * 31 + (unsigned char)*p;
    }
    struct status_entry *ce = &ts->cache[h % STATUS_CACHE];
    int64_t now = time_now_ms();
    if (fields == NULL && strcmp(ce->serial, j->client_serial) == 0 &&
        now - ce->at_ms < STATUS_TTL_MS) {
        return 0;
    }
    struct store *st = ts_store(ts, j->snap, e);
    int rc = -1;
    if (st == NULL) {
        goto out;
    }
    if (store_cert_get(st, j->client_serial, f, e) != 0) {
        if (e->code == ERRC_NOT_FOUND) {
            err_clear(e);
            err_set(e, ERRC_DENIED, "client certificate %s is not in the index of issued "
                                    "certificates",
                    j->client_serial);
        }
        goto out;
    }
    if (strstr(f->data, "\nstatus\tvalid\n") == NULL && !str_has_prefix(f->data, "status\tvalid\n")) {
        err_set(e, ERRC_DENIED, "client certificate %s is revoked", j->client_serial);
        goto out;
    }
    snprintf(ce->serial, sizeof(ce->serial), "%s", j->client_serial);
    ce->at_ms = now;
    rc = 0;
out:
    buf_release(&own);
    return rc;
}

/* The value of field name in store_cert_get's "name\tvalue\n" lines, into out. */
static bool field_get(const struct buf *f, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    const char *p = f->data;
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > n && strncmp(p, name, n) == 0 && p[n] == '\t') {
            size_t vl = len - n - 1;
            if (vl >= cap) {
                vl = cap - 1;
            }
            memcpy(out, p + n + 1, vl);
            out[vl] = '\0';
            return true;
        }
        p = eol ? eol + 1 : NULL;
    }
    return false;
}

/* field_get of a value of any length, into out. */
static bool field_get_buf(const struct buf *f, const char *name, struct buf *out)
{
    size_t n = strlen(name);
    for (const char *p = f->data; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > n && strncmp(p, name, n) == 0 && p[n] == '\t') {
            buf_add(out, p + n + 1, len - n - 1);
            return true;
        }
        p = eol ? eol + 1 : NULL;
    }
    return false;
}

/* PKCS#7 certs-only (RFC 7030 §4.1.3, §4.2.3), base64 in lines of 64. */
static int p7_certs_only(X509 *const *certs, size_t n, struct buf *out, struct err *e)
{
    PKCS7 *p7 = PKCS7_new();
    unsigned char *der = NULL;
    struct buf b64 = BUF_INIT;
    int rc = -1, len;
    if (p7 == NULL || PKCS7_set_type(p7, NID_pkcs7_signed) != 1 ||
        PKCS7_content_new(p7, NID_pkcs7_data) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot build a PKCS#7 structure");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (PKCS7_add_certificate(p7, certs[i]) != 1) {
            err_openssl(e, ERRC_INTERNAL, "PKCS7_add_certificate");
            goto out;
        }
    }
    len = i2d_PKCS7(p7, &der);
    if (len <= 0) {
        err_openssl(e, ERRC_INTERNAL, "i2d_PKCS7");
        goto out;
    }
    base64_encode(&b64, der, (size_t)len);
    for (size_t i = 0; i < b64.len; i += 64) {
        buf_add(out, b64.data + i, b64.len - i < 64 ? b64.len - i : 64);
        buf_addch(out, '\n');
    }
    rc = 0;
out:
    OPENSSL_free(der);
    PKCS7_free(p7);
    buf_release(&b64);
    return rc;
}

static X509 *x509_from_der(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    return d2i_X509(NULL, &p, (long)len);
}

/* Certificates of a PEM chain, appended to *v (*n counts them). */
static void pem_certs(const struct buf *pem, X509 ***v, size_t *n)
{
    BIO *bio = BIO_new_mem_buf(pem->data, (int)pem->len);
    X509 *x;
    while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        *v = xrealloc(*v, (*n + 1) * sizeof(X509 *));
        (*v)[(*n)++] = x;
    }
    BIO_free(bio);
    ERR_clear_error();
}

/* ---- signing -------------------------------------------------------------------------------- */

static const char *sign_route(const struct job *j)
{
    return j->kind == J_BATCH ? "sign_batch" : j->kind == J_SIGN ? "sign" : "est_enroll";
}

static void job_fail(struct job *j, const struct err *e)
{
    j->failed = true;
    err_copy(&j->fail, e);
}

/* Checks one signing request before issuance: the client certificate's status, the station's
 * CA and profile authorisation per item, the rate limit; marks the items to issue
 * (out[i].issued, until issuance_run decides). A refusal of the whole request: j->failed. */
/* The CA key check of one batch: each CA's key file is looked at once per batch, not per
 * certificate (a key made unreadable is still refused from the next batch on). */
struct ca_memo {
    signed char *state; /* per snapshot CA: 0 not checked, 1 usable, -1 not (err[i] says why) */
    struct err *err;
};

static int ca_memo_check(struct ca_memo *m, const struct snap *s, const struct snap_ca *c,
                         struct err *e)
{
    size_t i = (size_t)(c - s->cas);
    if (m->state[i] == 0) {
        m->state[i] = snap_ca_check(c, &m->err[i]) == 0 ? 1 : -1;
    }
    if (m->state[i] < 0) {
        *e = m->err[i];
        return -1;
    }
    return 0;
}

static void sign_check(struct tstate *ts, struct job *j, struct ca_memo *memo)
{
    const struct snap *s = j->snap;
    const char *route = sign_route(j);
    struct err e = ERR_INIT;
    size_t ok = 0;
    j->out = xcalloc(j->n, sizeof(*j->out));
    j->ca_of = xcalloc(j->n, sizeof(size_t));
    if (client_status(ts, j, NULL, &e) != 0) {
        if (e.code == ERRC_DENIED) {
            audit_deny(j, route, &e);
        }
        ts_after_error(ts, &e);
        job_fail(j, &e);
        return;
    }
    for (size_t i = 0; i < j->n; i++) {
        struct api_csr_req *it = &j->items[i];
        struct issuance_item *o = &j->out[i];
        const char *ca = *it->ca ? it->ca : s->cas[s->def].name;
        const char *profile = *it->profile ? it->profile : s->conf->default_profile;
        const struct snap_ca *c;
        o->requester = j->requester;
        o->profile = profile;
        o->renews = j->renews[0] ? j->renews : NULL;
        if (it->err.code != ERRC_OK) {
            err_copy(&o->err, &it->err);
            continue;
        }
        if (j->st && !station_may_use_ca(j->st, ca)) {
            err_set(&o->err, ERRC_DENIED, "station '%s' may not use CA '%s'", j->st->name, ca);
            audit_deny(j, route, &o->err);
            continue;
        }
        if (j->st && !station_may_use_profile(j->st, profile)) {
            err_set(&o->err, ERRC_DENIED, "station '%s' may not use profile '%s'", j->st->name,
                    profile);
            audit_deny(j, route, &o->err);
            continue;
        }
        c = snap_find_ca(s, ca);
        if (c == NULL) {
            err_set(&o->err, ERRC_NOT_FOUND, "CA '%s' is not served by jitrd", ca);
            continue;
        }
        if (ca_memo_check(memo, s, c, &o->err) != 0) {
            continue;
        }
        j->ca_of[i] = (size_t)(c - s->cas);
        o->csr = (const uint8_t *)it->csr.data;
        o->csr_len = it->csr.len;
        o->issued = true;
        ok++;
    }
    j->cost = ok;
    j->checked = true;
}

/* One issuance run per CA over the items of all jobs (same snapshot) marked to issue. A failed
 * run (Redis, audit) fails every request that had an item in it: nothing of it is handed out. */
static void sign_issue(struct tstate *ts, struct job **jobs, size_t nj)
{
    const struct snap *s = jobs[0]->snap;
    size_t total = 0;
    for (size_t q = 0; q < nj; q++) {
        total += jobs[q]->n;
    }
    struct issuance_item *group = xcalloc(total ? total : 1, sizeof(*group));
    struct issuance_item **back = xcalloc(total ? total : 1, sizeof(*back));
    struct job **owner = xcalloc(total ? total : 1, sizeof(*owner));
    for (size_t c = 0; c < s->ncas; c++) {
        struct err e = ERR_INIT;
        size_t k = 0;
        for (size_t q = 0; q < nj; q++) {
            struct job *j = jobs[q];
            for (size_t i = 0; !j->failed && i < j->n; i++) {
                if (j->out[i].issued && j->ca_of[i] == c) {
                    group[k] = j->out[i];
                    group[k].issued = false;
                    owner[k] = j;
                    back[k++] = &j->out[i];
                }
            }
        }
        if (k == 0) {
            continue;
        }
        struct issuance_worker *w = ts_worker(ts, s, c, &e);
        int64_t t0 = time_mono_ns();
        int rc = w ? issuance_run(w, group, k, &e) : -1;
        metrics_issue_latency(time_mono_ns() - t0);
        for (size_t g = 0; g < k; g++) {
            *back[g] = group[g];
            if (rc != 0) {
                back[g]->issued = false;
                job_fail(owner[g], &e);
            } else if (group[g].issued) {
                metrics_issued(owner[g]->st ? owner[g]->st->name : "device", group[g].profile, 1);
            }
        }
        if (rc != 0) {
            ts_after_error(ts, &e);
        }
    }
    for (size_t q = 0; q < nj; q++) {
        struct job *j = jobs[q];
        for (size_t i = 0; j->failed && i < j->n; i++) {
            issuance_item_release(&j->out[i]);
        }
    }
    xfree(group);
    xfree(back);
    xfree(owner);
}

static void json_str(struct buf *b, const char *v)
{
    json_quote(b, v, strlen(v));
}

/* One issued certificate as a JSON object, written directly rather than through a json_t (the
 * hot path: Jansson's generic dump of the two PEM strings cost 5 % of jitrd's CPU). The 201 of
 * /v1/sign is this object; a batch result is this object with the item's "id" last. */
static void issued_write(struct buf *b, const struct snap *s, size_t ca,
                         const struct issuance_item *it, const char *id)
{
    struct buf pem = BUF_INIT;
    ca_der_to_pem(&pem, it->cert.der, it->cert.der_len);
    buf_reserve(b, 2 * pem.len + s->cas[ca].chain_json.len + 256);
    buf_addstr(b, "{\"certificate\":");
    json_quote(b, pem.data, pem.len);
    buf_addstr(b, ",\"chain\":");
    buf_add(b, s->cas[ca].chain_json.data, s->cas[ca].chain_json.len);
    buf_addstr(b, ",\"serial\":");
    json_str(b, it->cert.serial_hex);
    buf_addstr(b, ",\"certificateId\":");
    json_str(b, it->cert.fingerprint);
    buf_addstr(b, ",\"notAfter\":");
    json_str(b, it->not_after);
    buf_addstr(b, ",\"ca\":");
    json_str(b, s->cas[ca].name);
    buf_addstr(b, ",\"profile\":");
    json_str(b, it->profile);
    if (id && id[0]) {
        buf_addstr(b, ",\"id\":");
        json_str(b, id);
    }
    buf_addch(b, '}');
    buf_release(&pem);
}

/* A refused batch item: {"error":{"code","message"}} with the item's "id" last. */
static void item_error_write(struct buf *b, const struct err *e, const char *id)
{
    enum err_code c = e->code == ERRC_OK ? ERRC_INTERNAL : e->code;
    buf_addstr(b, "{\"error\":{\"code\":");
    json_str(b, err_code_name(c));
    buf_addstr(b, ",\"message\":");
    json_str(b, e->msg);
    buf_addch(b, '}');
    if (id && id[0]) {
        buf_addstr(b, ",\"id\":");
        json_str(b, id);
    }
    buf_addch(b, '}');
}

/* The reply of a signing request from its results. */
static void sign_reply(struct job *j)
{
    struct issuance_item *out = j->out;
    struct err e = ERR_INIT;
    if (j->failed) {
        if (j->fail.code == ERRC_DENIED && j->retry_after[0] && j->st) {
            job_json(j, 429,
                     json_pack("{s:{s:s,s:s,s:f,s:f}}", "error", "code", "rate_limited", "message",
                               j->fail.msg, "rate", j->st->rate, "burst", j->st->burst));
        } else if (j->fail.code == ERRC_DENIED && j->retry_after[0]) {
            job_json(j, 429, json_pack("{s:{s:s,s:s}}", "error", "code", "rate_limited",
                                       "message", j->fail.msg));
        } else {
            job_error(j, &j->fail);
        }
    } else if (j->kind == J_BATCH) {
        j->status = 200;
        snprintf(j->ctype, sizeof(j->ctype), "application/json");
        buf_reset(&j->body);
        buf_addstr(&j->body, "{\"results\":[");
        for (size_t i = 0; i < j->n; i++) {
            if (i > 0) {
                buf_addch(&j->body, ',');
            }
            if (out[i].issued) {
                issued_write(&j->body, j->snap, j->ca_of[i], &out[i], j->items[i].id);
            } else {
                item_error_write(&j->body, &out[i].err, j->items[i].id);
            }
        }
        buf_addstr(&j->body, "]}\n");
    } else if (!out[0].issued) {
        job_error(j, &out[0].err);
    } else if (j->kind == J_SIGN) {
        j->status = 201;
        snprintf(j->ctype, sizeof(j->ctype), "application/json");
        buf_reset(&j->body);
        issued_write(&j->body, j->snap, j->ca_of[0], &out[0], NULL);
        buf_addch(&j->body, '\n');
    } else {
        X509 *x = x509_from_der(out[0].cert.der, out[0].cert.der_len);
        buf_reset(&j->body);
        if (x == NULL || p7_certs_only(&x, 1, &j->body, &e) != 0) {
            if (x == NULL) {
                err_openssl(&e, ERRC_INTERNAL, "cannot parse the issued certificate");
            }
            job_error(j, &e);
        } else {
            j->status = 200;
            snprintf(j->ctype, sizeof(j->ctype), "application/pkcs7-mime; smime-type=certs-only");
        }
        X509_free(x);
    }
    for (size_t i = 0; i < j->n; i++) {
        issuance_item_release(&out[i]);
    }
}

/* A request for more certificates than the station's burst can never pass its token bucket:
 * 429 at once, saying so and what to do, without touching the bucket; Retry-After is the time
 * the bucket takes to fill (a request of at most burst items passes then). */
static bool rate_never_fits(struct job *j)
{
    struct err e = ERR_INIT;
    if ((double)j->cost <= j->st->burst) {
        return false;
    }
    double fill = j->st->burst / j->st->rate;
    snprintf(j->retry_after, sizeof(j->retry_after), "%lld",
             (long long)(fill < 1 ? 1 : fill + 0.999));
    err_set(&e, ERRC_DENIED,
            "%zu certificates in one request can never pass station '%s''s rate limit (%g/s, "
            "burst %g): send at most %g per request, or raise the station's burst in the "
            "stations file",
            j->cost, j->st->name, j->st->rate, j->st->burst, j->st->burst);
    audit_deny(j, sign_route(j), &e);
    job_fail(j, &e);
    return true;
}

/* The station rate limits of a batch of jobs: one pipelined round trip to Redis. A job over its
 * station's limit fails whole (429, Retry-After), as does every job when Redis fails. */
static void rate_take_many(struct tstate *ts, struct job **jobs, size_t nj)
{
    struct store_bucket_req *req = xcalloc(nj, sizeof(*req));
    char(*names)[100] = xcalloc(nj, sizeof(*names));
    size_t *of = xcalloc(nj, sizeof(*of));
    size_t n = 0;
    struct err e = ERR_INIT;
    for (size_t q = 0; q < nj; q++) {
        struct job *j = jobs[q];
        if (!j->checked || j->st == NULL || j->st->rate <= 0 || j->cost == 0 ||
            rate_never_fits(j)) {
            continue;
        }
        snprintf(names[n], sizeof(names[n]), "station:%s", j->st->name);
        req[n] = (struct store_bucket_req){ .name = names[n], .rate = j->st->rate,
                                            .burst = j->st->burst, .cost = (double)j->cost };
        of[n++] = q;
    }
    if (n > 0) {
        struct store *st = ts_store(ts, jobs[0]->snap, &e);
        if (st == NULL || store_buckets_take(st, req, n, &e) != 0) {
            ts_after_error(ts, &e);
            for (size_t i = 0; i < n; i++) {
                job_fail(jobs[of[i]], &e);
            }
            n = 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct job *j = jobs[of[i]];
        if (!req[i].allowed) {
            snprintf(j->retry_after, sizeof(j->retry_after), "%lld",
                     (long long)((req[i].wait_ms + 999) / 1000));
            err_set(&e, ERRC_DENIED,
                    "station '%s' is over its rate limit (%g/s, burst %g): %zu certificates "
                    "need %zu tokens; retry in %s s",
                    j->st->name, j->st->rate, j->st->burst, j->cost, j->cost, j->retry_after);
            audit_deny(j, sign_route(j), &e);
            job_fail(j, &e);
        }
    }
    xfree(req);
    xfree(names);
    xfree(of);
}

/* Signing requests of one snapshot, together. */
static void sign_jobs(struct tstate *ts, struct job **jobs, size_t nj)
{
    const struct snap *s = jobs[0]->snap; /* a batch is of one snapshot (api_run_many) */
    struct ca_memo memo = { xcalloc(s->ncas + 1, 1), xcalloc(s->ncas + 1, sizeof(struct err)) };
    struct err damaged = ERR_INIT;
    (void)audit_damaged_err(&damaged, false);
    for (size_t q = 0; q < nj; q++) {
        log_set_request_id(jobs[q]->request_id);
        if (damaged.code != ERRC_OK) {
            jobs[q]->out = xcalloc(jobs[q]->n, sizeof(*jobs[q]->out));
            jobs[q]->ca_of = xcalloc(jobs[q]->n, sizeof(size_t));
            job_fail(jobs[q], &damaged);
            continue;
        }
        sign_check(ts, jobs[q], &memo);
    }
    rate_take_many(ts, jobs, nj);
    xfree(memo.state);
    xfree(memo.err);
    log_set_request_id(NULL);
    sign_issue(ts, jobs, nj);
    for (size_t q = 0; q < nj; q++) {
        sign_reply(jobs[q]);
    }
}

static void run_sign(struct job *j, struct tstate *ts)
{
    sign_jobs(ts, &j, 1);
}

#define REENROLL_WINDOW_MS (24 * 3600 * 1000LL)
#define REENROLL_CLAIM_MS  60000

/* A re-enrollment refused by a limit: 429 with Retry-After (seconds, at least 1). */
static void reenroll_429(struct job *j, int64_t retry_ms, const char *msg)
{
    snprintf(j->retry_after, sizeof(j->retry_after), "%lld",
             (long long)(retry_ms < 1000 ? 1 : (retry_ms + 999) / 1000));
    job_json(j, 429, json_pack("{s:{s:s,s:s}}", "error", "code", "rate_limited", "message", msg));
}

/* The re-enrollment limit of the client's certificate lineage (the certificates that renewed one
 * another: same CA and subject, which re-enrollment keeps) and the claim that makes concurrent
 * re-enrollments of one certificate wait for each other. 0 to go on; else the reply is set. */
static int reenroll_begin(struct job *j, struct tstate *ts, const struct buf *fields)
{
    struct err e = ERR_INIT;
    char subject[1100] = "", msg[256];
    struct buf key = BUF_INIT;
    enum store_reenroll_result res = STORE_REENROLL_OK;
    int64_t retry_ms = 0, limit = j->snap->conf->reenroll_per_day;
    struct store *st;
    if (limit == 0) {
        err_set(&e, ERRC_DENIED, "re-enrollment is turned off (reenroll_per_day is 0)");
        audit_deny(j, "est_reenroll", &e);
        job_error(j, &e);
        return -1;
    }
    field_get(fields, "subject", subject, sizeof(subject));
    buf_addf(&key, "%s\n%s", j->client_ca, subject);
    sha256_hex(key.data, key.len, j->lineage);
    buf_release(&key);
    snprintf(j->attempt, sizeof(j->attempt), "%s", j->request_id);
    if ((st = ts_store(ts, j->snap, &e)) == NULL ||
        store_reenroll_begin(st, j->client_serial, j->lineage, j->attempt, limit,
                             REENROLL_WINDOW_MS, REENROLL_CLAIM_MS, &res, &retry_ms, &e) != 0) {
        ts_after_error(ts, &e);
        job_error(j, &e);
        return -1;
    }
    if (res == STORE_REENROLL_BUSY) {
        snprintf(msg, sizeof(msg), "a re-enrollment of certificate %s is in progress",
                 j->client_serial);
        reenroll_429(j, retry_ms, msg);
        return -1;
    }
    if (res == STORE_REENROLL_LIMIT) {
        snprintf(msg, sizeof(msg),
                 "this certificate's lineage was re-enrolled %lld times in the last 24 hours "
                 "(reenroll_per_day)",
                 (long long)limit);
        err_set(&e, ERRC_DENIED, "%s", msg);
        audit_deny(j, "est_reenroll", &e);
        reenroll_429(j, retry_ms, msg);
        return -1;
    }
    return 0;
}

/* Releases the claim; a request that failed whole (Redis, the audit log, the CA key) gives its
 * attempt back. A failure here only leaves the claim to expire. */
static void reenroll_end(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    struct store *st = ts_store(ts, j->snap, &e);
    if (st == NULL ||
        store_reenroll_end(st, j->client_serial, j->lineage, j->attempt, j->failed, &e) != 0) {
        ts_after_error(ts, &e);
        log_warn("re-enrollment of %s: cannot release its claim (it expires in %d s): %s",
                 j->client_serial, REENROLL_CLAIM_MS / 1000, e.msg);
    }
}

/* The client's certificate was renewed already (superseded_by newer). A device that did not get
 * that reply asks again with the same new key: it gets the same certificate again, nothing is
 * issued. Any other request is refused: re-enroll with the newer certificate. */
static void reenroll_superseded(struct job *j, struct tstate *ts, X509_REQ *req, const char *newer)
{
    struct err e = ERR_INIT;
    struct buf f = BUF_INIT, der = BUF_INIT, b64 = BUF_INIT;
    char status[32] = "";
    X509 *x = NULL;
    EVP_PKEY *csr_key = X509_REQ_get0_pubkey(req);
    struct store *st = ts_store(ts, j->snap, &e);
    if (st == NULL || store_cert_get(st, newer, &f, &e) != 0) {
        if (e.code != ERRC_NOT_FOUND) {
            ts_after_error(ts, &e);
            job_error(j, &e);
            goto out;
        }
        err_clear(&e);
    }
    field_get(&f, "status", status, sizeof(status));
    if (strcmp(status, "valid") == 0 && field_get_buf(&f, "der", &b64) &&
        base64_decode(&der, b64.data, b64.len) == 0 &&
        (x = x509_from_der((const uint8_t *)der.data, der.len)) != NULL && csr_key != NULL &&
        EVP_PKEY_eq(X509_get0_pubkey(x), csr_key) == 1 && X509_REQ_verify(req, csr_key) == 1) {
        buf_reset(&j->body);
        if (p7_certs_only(&x, 1, &j->body, &e) != 0) {
            job_error(j, &e);
            goto out;
        }
        j->status = 200;
        snprintf(j->ctype, sizeof(j->ctype), "application/pkcs7-mime; smime-type=certs-only");
        log_info("re-enrollment of %s asked again with the key of its renewal %s: that "
                 "certificate sent again",
                 j->client_serial, newer);
        goto out;
    }
    ERR_clear_error();
    err_set(&e, ERRC_DENIED,
            "certificate %s was renewed already (superseded by %s): re-enroll with the newer "
            "certificate",
            j->client_serial, newer);
    audit_deny(j, "est_reenroll", &e);
    job_error(j, &e);
out:
    X509_free(x);
    buf_release(&f);
    buf_release(&der);
    buf_release(&b64);
}

/* EST re-enrollment: the client is a device whose current certificate we issued and is valid in
 * the index; the new certificate keeps its subject and profile (RFC 7030 §4.2.2), renews the
 * current one, which becomes superseded by it. */
static void run_reenroll(struct job *j, struct tstate *ts)
{
    struct buf fields = BUF_INIT;
    struct err e = ERR_INIT;
    char profile[API_NAME_MAX + 1] = "", ca[API_NAME_MAX + 1] = "", newer[64];
    const unsigned char *p = (const unsigned char *)j->items[0].csr.data;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)j->items[0].csr.len);
    if (client_status(ts, j, &fields, &e) != 0) {
        if (e.code == ERRC_DENIED) {
            audit_deny(j, "est_reenroll", &e);
        }
        job_error(j, &e);
        goto out;
    }
    if (!field_get(&fields, "profile", profile, sizeof(profile)) ||
        !field_get(&fields, "ca", ca, sizeof(ca)) || strcmp(ca, j->client_ca) != 0) {
        err_set(&e, ERRC_DENIED, "the index record of certificate %s does not match its issuer",
                j->client_serial);
        audit_deny(j, "est_reenroll", &e);
        job_error(j, &e);
        goto out;
    }
    if (req == NULL) {
        ERR_clear_error();
        err_set(&e, ERRC_INVALID, "the body is not a DER PKCS#10 request");
        job_error(j, &e);
        goto out;
    }
    if (X509_NAME_cmp(X509_REQ_get_subject_name(req), j->subject) != 0) {
        err_set(&e, ERRC_INVALID,
                "re-enrollment must keep the subject of the current certificate");
        job_error(j, &e);
        goto out;
    }
    if (field_get(&fields, "superseded_by", newer, sizeof(newer))) {
        reenroll_superseded(j, ts, req, newer);
        goto out;
    }
    snprintf(j->items[0].profile, sizeof(j->items[0].profile), "%s", profile);
    snprintf(j->items[0].ca, sizeof(j->items[0].ca), "%s", ca);
    if (reenroll_begin(j, ts, &fields) != 0) {
        goto out;
    }
    snprintf(j->renews, sizeof(j->renews), "%s", j->client_serial);
    run_sign(j, ts);
    reenroll_end(j, ts);
out:
    X509_REQ_free(req);
    buf_release(&fields);
}

static bool serial_param_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

#define OWNER_HOPS 8

/* May the station of j read the index record fields? Its own requests, and the renewals of its
 * certificates by their devices (requester device:SERIAL, followed back OWNER_HOPS times); an
 * admin station every record. -1 when Redis failed. */
static int cert_visible(struct store *st, const struct job *j, const struct buf *fields,
                        struct err *e)
{
    char who[128];
    struct buf f = BUF_INIT;
    int rc = 0;
    if (j->st->admin) {
        return 1;
    }
    if (!field_get(fields, "requester", who, sizeof(who))) {
        return 0;
    }
    for (int hop = 0; hop < OWNER_HOPS; hop++) {
        if (strcmp(who, j->requester) == 0) {
            rc = 1;
            break;
        }
        if (!str_has_prefix(who, "device:")) {
            break;
        }
        buf_reset(&f);
        if (store_cert_get(st, who + strlen("device:"), &f, e) != 0) {
            rc = e->code == ERRC_NOT_FOUND ? 0 : -1;
            if (rc == 0) {
                err_clear(e);
            }
            break;
        }
        if (!field_get(&f, "requester", who, sizeof(who))) {
            break;
        }
    }
    buf_release(&f);
    return rc;
}

static void run_cert(struct job *j, struct tstate *ts)
{
    struct buf fields = BUF_INIT, serial = BUF_INIT, der = BUF_INIT, pem = BUF_INIT;
    struct err e = ERR_INIT;
    json_t *o = NULL;
    const char *sn = j->param;
    struct store *st;
    int vis;
    if (client_status(ts, j, NULL, &e) != 0 || (st = ts_store(ts, j->snap, &e)) == NULL) {
        goto fail;
    }
    if (strlen(j->param) == 64) { /* a certificateId */
        if (store_serial_by_fingerprint(st, j->param, &serial, &e) != 0) {
            goto fail;
        }
        sn = buf_cstr(&serial);
    }
    if (store_cert_get(st, sn, &fields, &e) != 0) {
        goto fail;
    }
    /* another station's record is answered as an unknown one: serials cannot be probed */
    vis = cert_visible(st, j, &fields, &e);
    if (vis <= 0) {
        if (vis == 0) {
            if (strlen(j->param) == 64) {
                err_set(&e, ERRC_NOT_FOUND, "no certificate with fingerprint %s", j->param);
            } else {
                err_set(&e, ERRC_NOT_FOUND, "no certificate with serial %s", sn);
            }
        }
        goto fail;
    }
    o = json_object();
    for (char *line = fields.data; line && *line;) {
        char *eol = strchr(line, '\n');
        char *tab = strchr(line, '\t');
        if (eol) {
            *eol = '\0';
        }
        if (tab) {
            *tab = '\0';
            if (strcmp(line, "der") == 0) {
                if (base64_decode(&der, tab + 1, strlen(tab + 1)) == 0) {
                    ca_der_to_pem(&pem, (const uint8_t *)der.data, der.len);
                    json_object_set_new(o, "certificate", json_string(buf_cstr(&pem)));
                }
            } else {
                json_object_set_new(o, strcmp(line, "fingerprint") == 0 ? "certificateId" : line,
                                    json_string(tab + 1));
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    job_json(j, 200, o);
    goto out;
fail:
    ts_after_error(ts, &e);
    job_error(j, &e);
out:
    buf_release(&fields);
    buf_release(&serial);
    buf_release(&der);
    buf_release(&pem);
}

/* /readyz: the audit log must be intact at its end (checked now) and as a whole (the last walk
 * of daemon/auditwatch.c). The reason names the problem, not the path. */
static int ready_audit_check(const struct snap *s, struct err *e)
{
    struct audit_report rep;
    if (audit_damaged_err(e, true) != 0) {
        return -1;
    }
    if (audit_tail_check(conf_audit_path(s->conf), &rep, e) != 0) {
        audit_err_for_client(s, e);
        return -1;
    }
    if (rep.problem != AUDIT_OK) {
        return err_set(e, ERRC_UNAVAILABLE, "%s: signing is suspended until an operator repairs it",
                       rep.message);
    }
    return 0;
}

/* /readyz: the index must be complete (daemon/heal.c rebuilds it otherwise). */
static int ready_index_check(struct store *st, struct err *e)
{
    bool ready = false;
    if (store_index_ready(st, &ready, e) != 0) {
        return -1;
    }
    if (!ready) {
        store_err_set_index_incomplete(e);
        snprintf(e->msg, sizeof(e->msg),
                 "the index of issued certificates is incomplete and being rebuilt from the "
                 "audit log (%llu records replayed so far)",
                 (unsigned long long)metrics_index_records());
        return -1;
    }
    return 0;
}

static void run_ready(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    struct store *st = ts_store(ts, j->snap, &e);
    if (st && store_ping(st, &e) != 0) { /* maybe a connection Redis dropped: once afresh */
        ts_reset(ts);
        err_clear(&e);
        st = ts_store(ts, j->snap, &e);
    }
    if (st == NULL || store_ping(st, &e) != 0) {
        ts_after_error(ts, &e);
        job_error(j, &e);
        return;
    }
    for (size_t i = 0; i < j->snap->ncas; i++) {
        if (snap_ca_check(&j->snap->cas[i], &e) != 0) {
            job_error(j, &e);
            return;
        }
    }
    if (ready_audit_check(j->snap, &e) != 0) {
        job_error(j, &e);
        return;
    }
    if (ready_index_check(st, &e) != 0) {
        ts_after_error(ts, &e);
        job_error(j, &e);
        return;
    }
    job_json(j, 200, json_pack("{s:s}", "status", "ready"));
}

/* /readyz: with detail the problem is named (admin_listen, or an admin station whose certificate
 * is still valid in the index); a stranger learns only ready or not. */
static void run_ready_for(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    if (j->st && client_status(ts, j, NULL, &e) != 0) {
        ts_after_error(ts, &e);
        j->detail = false;
    }
    run_ready(j, ts);
    if (!j->detail && j->status != 200) {
        job_json(j, 503,
                 json_pack("{s:{s:s,s:s}}", "error", "code", "unavailable", "message",
                           "jitrd is not ready"));
    }
}

/* GET /metrics on the signing listener: an admin station's, once its certificate is checked. */
static void run_metrics(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    if (client_status(ts, j, NULL, &e) != 0) {
        if (e.code == ERRC_DENIED) {
            audit_deny(j, "metrics", &e);
        }
        ts_after_error(ts, &e);
        job_error(j, &e);
        return;
    }
    j->status = 200;
    snprintf(j->ctype, sizeof(j->ctype), "text/plain; version=0.0.4");
    buf_reset(&j->body);
    admin_render_metrics(&j->body);
}

static void run_revoke(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    struct issuance_revocation rv = { 0 };
    struct store *st;
    enum ca_crl_reason reason = CA_CRL_UNSPECIFIED;
    json_t *o;
    if (audit_damaged_err(&e, false) != 0 || client_status(ts, j, NULL, &e) != 0 ||
        (st = ts_store(ts, j->snap, &e)) == NULL) {
        goto fail;
    }
    if (j->reason[0] && ca_crl_reason_parse(j->reason, &reason, &e) != 0) {
        goto fail;
    }
    rv.serial = j->param;
    rv.ca = j->items && j->n ? j->items[0].ca : NULL;
    rv.reason = reason;
    rv.requester = j->requester;
    if (issuance_revoke(j->snap->revoker, st, &rv, &e) != 0) {
        goto fail;
    }
    o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:b}", "serial", rv.serial_hex, "ca",
                          rv.ca_name, "certificateId", rv.fingerprint, "revokedAt", rv.revoked_at,
                          "reason", ca_crl_reason_name(rv.reason_recorded), "alreadyRevoked",
                          rv.already_revoked, "crlUpdated", rv.crl_written);
    if (rv.crl_written) {
        json_object_set_new(o, "crlNumber", json_integer((json_int_t)rv.crl_number));
    }
    job_json(j, 200, o);
    return;
fail:
    ts_after_error(ts, &e);
    job_error(j, &e);
}

static void run_crl(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    struct issuance_crl crl = { 0 };
    struct store *st = ts_store(ts, j->snap, &e);
    const char *ca = j->param[0] ? j->param : j->snap->cas[j->snap->def].name;
    if (st == NULL ||
        issuance_crl_get(j->snap->revoker, st, ca, "jitrd:request", &crl, &e) != 0) {
        ts_after_error(ts, &e);
        if (e.code == ERRC_UNAVAILABLE || e.code == ERRC_INTERNAL) {
            /* anyone may ask: the reason (Redis's address, a file's path) goes to the log */
            enum err_code code = e.code;
            log_warn("GET /v1/crl of CA '%s': %s", ca, e.msg);
            err_clear(&e);
            err_set(&e, code, "the CRL of CA '%s' cannot be served now", ca);
        }
        job_error(j, &e);
        return;
    }
    j->status = 200;
    buf_reset(&j->body);
    if (strcmp(j->reason, "pem") == 0) {
        snprintf(j->ctype, sizeof(j->ctype), "application/x-pem-file");
        buf_add(&j->body, crl.pem.data, crl.pem.len);
    } else {
        snprintf(j->ctype, sizeof(j->ctype), "application/pkix-crl");
        buf_add(&j->body, crl.der.data, crl.der.len);
    }
    issuance_crl_release(&crl);
}

/* The CRL schedule: a CRL is regenerated once half its validity has passed, even when
 * nothing is revoked and nobody asks for it (issuance_crl_refresh_if_due decides). */
static void run_crl_schedule(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    size_t n = 0;
    struct store *st = ts_store(ts, j->snap, &e);
    if (st == NULL ||
        issuance_crl_refresh_if_due(j->snap->revoker, st, time(NULL), "jitrd:schedule", &n, &e) !=
            0) {
        ts_after_error(ts, &e);
        log_warn("scheduled CRL refresh failed: %s", e.msg);
        return;
    }
    if (n) {
        log_info("scheduled CRL refresh regenerated %zu CRL(s)", n);
    }
}

/* Connections idle for a while may be dead (Redis restarted meanwhile): a PING finds out before a
 * request fails on them, and a failure drops them all so this job reconnects. */
static void ts_freshen(struct tstate *ts)
{
    struct err e = ERR_INIT;
    int64_t now = time_now_ms();
    unsigned epoch = atomic_load(&redis_epoch);
    if (epoch != ts->epoch) {
        ts_reset(ts);
        ts->epoch = epoch;
    } else if (ts->store && now - ts->last_ok_ms > 250 && store_ping(ts->store, &e) != 0) {
        log_info("redis connection lost (%s): reconnecting", e.msg);
        ts_reset(ts);
    }
    ts->last_ok_ms = now;
}

static void job_run(struct pool_job *pj, void *tls)
{
    struct job *j = (struct job *)pj;
    struct tstate *ts = tls;
    log_set_request_id(j->request_id[0] ? j->request_id : NULL);
    if (j->kind != J_RELOAD && j->kind != J_DENY) {
        ts_freshen(ts);
    }
    switch (j->kind) {
    case J_SIGN:
    case J_BATCH:
    case J_EST_ENROLL:
        run_sign(j, ts);
        break;
    case J_EST_REENROLL:
        run_reenroll(j, ts);
        break;
    case J_CERT:
        run_cert(j, ts);
        break;
    case J_READY:
        run_ready_for(j, ts);
        break;
    case J_METRICS:
        run_metrics(j, ts);
        break;
    case J_DENY:
        audit_deny(j, j->param, &j->err);
        job_error(j, &j->err);
        break;
    case J_REVOKE:
        run_revoke(j, ts);
        break;
    case J_CRL:
        run_crl(j, ts);
        break;
    case J_CRL_SCHEDULE:
        run_crl_schedule(j, ts);
        break;
    case J_RELOAD:
        j->new_snap = snap_build(j->api->config_path, j->api->gen + 1, &j->err);
        break;
    }
    log_set_request_id(NULL);
}

static void job_free(struct job *j)
{
    xfree(j->out);
    xfree(j->ca_of);
    api_batch_free(j->items, j->n);
    X509_NAME_free(j->subject);
    buf_release(&j->body);
    snap_unref(j->snap);
    snap_unref(j->new_snap);
    xfree(j);
}

static void job_done(struct pool_job *pj)
{
    struct job *j = (struct job *)pj;
    struct api *a = j->api;
    a->jobs--;
    if (j->kind == J_RELOAD) {
        api_reload_done(a, j->new_snap, &j->err);
        j->new_snap = NULL;
    } else if (j->req == NULL) {
        /* a job of the worker itself (the CRL schedule): nobody to answer */
    } else {
        if (j->retry_after[0]) {
            httpd_req_add_header(j->req, "Retry-After", j->retry_after);
        }
        if (strstr(j->ctype, "pkcs7")) {
            httpd_req_add_header(j->req, "Content-Transfer-Encoding", "base64");
        }
        httpd_reply(j->req, j->status ? j->status : 500, j->ctype[0] ? j->ctype : "text/plain",
                    j->body.data, j->body.len);
    }
    job_free(j);
}

static struct job *job_new(struct api *a, struct httpd_req *r, enum job_kind kind)
{
    struct job *j = xcalloc(1, sizeof(*j));
    j->pj.run = job_run;
    j->pj.done = job_done;
    j->kind = kind;
    j->api = a;
    j->req = r;
    j->snap = snap_ref(a->snap);
    if (r) {
        snprintf(j->request_id, sizeof(j->request_id), "%s", httpd_req_id(r));
    }
    return j;
}

static void job_submit(struct api *a, struct job *j)
{
    a->jobs++;
    pool_submit(a->pool, &j->pj);
}

void api_crl_schedule(struct api *a)
{
    if (a->snap->revoker != NULL && !a->snap->degraded) {
        job_submit(a, job_new(a, NULL, J_CRL_SCHEDULE));
    }
}

void api_reload_start(struct api *a)
{
    if (a->reloading) {
        a->reload_again = true;
        return;
    }
    a->reloading = true;
    job_submit(a, job_new(a, NULL, J_RELOAD));
}

/* ---- handlers (on the loop) ----------------------------------------------------------------- */

/* A refusal that concerns a request: audited in a signing thread, then answered. */
static void deny(struct api *a, struct httpd_req *r, const char *route, const char *requester,
                 enum err_code code, const char *fmt, ...) ATTR_PRINTF(6, 7);
static void deny(struct api *a, struct httpd_req *r, const char *route, const char *requester,
                 enum err_code code, const char *fmt, ...)
{
    struct job *j = job_new(a, r, J_DENY);
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(j->param, sizeof(j->param), "%s", route);
    snprintf(j->requester, sizeof(j->requester), "%s", requester);
    err_set(&j->err, code, "%s", msg);
    job_submit(a, j);
}

static void client_label(struct httpd_req *r, char *out, size_t cap)
{
    X509 *x = httpd_req_client_cert(r);
    char cn[128] = "";
    if (x == NULL) {
        snprintf(out, cap, "tls:anonymous");
        return;
    }
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) < 0) {
        snprintf(cn, sizeof(cn), "?");
    }
    for (char *p = cn; *p; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f || *p == '"') {
            *p = '?';
        }
    }
    snprintf(out, cap, "tls:%s", cn);
}

/* Who the client of r is, without side effects: 1 a station listed in the stations file (*st,
 * its certificate *leaf), 0 a certificate of the station CA whose name is not listed (cn says
 * which), -1 a stranger: nobody authenticated (*why and msg say what is wrong). */
static int station_of(struct api *a, struct httpd_req *r, const struct station **st, X509 **leaf,
                      char cn[API_NAME_MAX + 2], enum refusal_reason *why, char *msg, size_t cap)
{
    const char *verr = "";
    STACK_OF(X509) *chain = httpd_req_client_chain(r, &verr);
    cn[0] = '\0';
    if (chain == NULL) {
        *why = httpd_req_client_cert(r) ? REFUSED_BAD_CERTIFICATE : REFUSED_NO_CERTIFICATE;
        snprintf(msg, cap, "client certificate refused: %s", verr);
        return -1;
    }
    *leaf = sk_X509_value(chain, 0);
    if (X509_cmp(sk_X509_value(chain, 1), a->snap->station_ca) != 0) {
        *why = REFUSED_FOREIGN_ISSUER;
        snprintf(msg, cap, "client certificate refused: not issued by the station CA");
        return -1;
    }
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(*leaf), NID_commonName, cn,
                                  API_NAME_MAX + 2) < 0 ||
        !api_name_ok(cn)) {
        cn[0] = '\0';
        *why = REFUSED_NOT_A_STATION_NAME;
        snprintf(msg, cap, "client certificate refused: its commonName is not a station name");
        return -1;
    }
    *st = stations_find(a->snap->stations, cn);
    return *st ? 1 : 0;
}

/* Authenticates a station; on failure answers and returns NULL. A stranger's refusal is only
 * counted (refusal.c); a station certificate whose name is not listed is a decision about an
 * authenticated client: audited. */
static struct job *station_job(struct api *a, struct httpd_req *r, enum job_kind kind,
                               const char *route)
{
    char label[160], cn[API_NAME_MAX + 2], msg[200];
    const struct station *st = NULL;
    X509 *leaf = NULL;
    enum refusal_reason why = REFUSED_NO_CERTIFICATE;
    int who = station_of(a, r, &st, &leaf, cn, &why, msg, sizeof(msg));
    if (who < 0) {
        refusal_reply(a, r, why, msg);
        return NULL;
    }
    if (who == 0) {
        client_label(r, label, sizeof(label));
        deny(a, r, route, label, ERRC_DENIED, "station '%s' is not authorised (stations_file)",
             cn);
        return NULL;
    }
    struct job *j = job_new(a, r, kind);
    j->st = st;
    snprintf(j->requester, sizeof(j->requester), "station:%s", cn);
    ca_serial_hex(X509_get0_serialNumber(leaf), j->client_serial, sizeof(j->client_serial));
    return j;
}

static void h_sign(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    struct job *j = station_job(a, r, J_SIGN, "sign");
    char media[64];
    size_t len;
    bool bad_type;
    struct err e = ERR_INIT;
    if (j == NULL) {
        return;
    }
    const uint8_t *body = httpd_req_body(r, &len);
    api_media_type(httpd_req_header(r, "Content-Type"), media, sizeof(media));
    j->items = xcalloc(1, sizeof(*j->items));
    j->n = 1;
    if (api_parse_sign(media, body, len, (int)a->snap->conf->max_json_depth, &j->items[0],
                       &bad_type, &e) != 0) {
        job_free(j);
        if (bad_type) {
            httpd_reply_error(r, 415, "unsupported_media_type", e.msg);
        } else {
            httpd_reply_err(r, &e);
        }
        return;
    }
    const char *qp = httpd_req_query(r, "profile"), *qc = httpd_req_query(r, "ca");
    if ((qp && !api_name_ok(qp)) || (qc && !api_name_ok(qc))) {
        job_free(j);
        httpd_reply_error(r, 400, "invalid", "query parameters profile and ca must be names");
        return;
    }
    if (qp && !j->items[0].profile[0]) {
        snprintf(j->items[0].profile, sizeof(j->items[0].profile), "%s", qp);
    }
    if (qc && !j->items[0].ca[0]) {
        snprintf(j->items[0].ca, sizeof(j->items[0].ca), "%s", qc);
    }
    job_submit(a, j);
}

static void h_batch(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    struct job *j = station_job(a, r, J_BATCH, "sign_batch");
    char media[64];
    size_t len;
    struct err e = ERR_INIT;
    if (j == NULL) {
        return;
    }
    const uint8_t *body = httpd_req_body(r, &len);
    api_media_type(httpd_req_header(r, "Content-Type"), media, sizeof(media));
    if (strcmp(media, "application/json") != 0) {
        job_free(j);
        httpd_reply_error(r, 415, "unsupported_media_type",
                          "POST /v1/sign/batch takes application/json");
        return;
    }
    if (api_parse_batch(body, len, (int)a->snap->conf->max_json_depth,
                        (size_t)a->snap->conf->max_batch, &j->items, &j->n, &e) != 0) {
        job_free(j);
        httpd_reply_err(r, &e);
        return;
    }
    job_submit(a, j);
}

static void h_est_enroll(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    struct job *j = station_job(a, r, J_EST_ENROLL, "est_enroll");
    char media[64];
    size_t len;
    bool bad_type;
    struct err e = ERR_INIT;
    if (j == NULL) {
        return;
    }
    const uint8_t *body = httpd_req_body(r, &len);
    api_media_type(httpd_req_header(r, "Content-Type"), media, sizeof(media));
    j->items = xcalloc(1, sizeof(*j->items));
    j->n = 1;
    if (api_parse_est_csr(media, body, len, &j->items[0].csr, &bad_type, &e) != 0) {
        job_free(j);
        if (bad_type) {
            httpd_reply_error(r, 415, "unsupported_media_type", e.msg);
        } else {
            httpd_reply_err(r, &e);
        }
        return;
    }
    job_submit(a, j);
}

static void h_est_reenroll(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    const char *why = "";
    char label[160], media[64];
    size_t len;
    bool bad_type = false;
    struct err e = ERR_INIT;
    const struct snap_ca *ca = NULL;
    STACK_OF(X509) *chain = httpd_req_client_chain(r, &why);
    if (chain == NULL) {
        snprintf(label, sizeof(label), "client certificate refused: %s", why);
        refusal_reply(a, r,
                      httpd_req_client_cert(r) ? REFUSED_BAD_CERTIFICATE : REFUSED_NO_CERTIFICATE,
                      label);
        return;
    }
    for (size_t i = 0; i < a->snap->ncas && ca == NULL; i++) {
        if (a->snap->cas[i].auth->cert &&
            X509_cmp(sk_X509_value(chain, 1), a->snap->cas[i].auth->cert) == 0) {
            ca = &a->snap->cas[i];
        }
    }
    if (ca == NULL) {
        refusal_reply(a, r, REFUSED_FOREIGN_ISSUER,
                      "client certificate refused: re-enrollment needs a certificate issued by a "
                      "CA jitrd serves");
        return;
    }
    const uint8_t *body = httpd_req_body(r, &len);
    api_media_type(httpd_req_header(r, "Content-Type"), media, sizeof(media));
    struct job *j = job_new(a, r, J_EST_REENROLL);
    X509 *leaf = sk_X509_value(chain, 0);
    ca_serial_hex(X509_get0_serialNumber(leaf), j->client_serial, sizeof(j->client_serial));
    snprintf(j->requester, sizeof(j->requester), "device:%s", j->client_serial);
    snprintf(j->client_ca, sizeof(j->client_ca), "%s", ca->name);
    j->subject = X509_NAME_dup(X509_get_subject_name(leaf));
    j->items = xcalloc(1, sizeof(*j->items));
    j->n = 1;
    if (j->subject == NULL ||
        api_parse_est_csr(media, body, len, &j->items[0].csr, &bad_type, &e) != 0) {
        job_free(j);
        if (e.code == ERRC_OK) {
            err_set(&e, ERRC_INTERNAL, "cannot copy the subject");
        }
        if (bad_type) {
            httpd_reply_error(r, 415, "unsupported_media_type", e.msg);
        } else {
            httpd_reply_err(r, &e);
        }
        return;
    }
    job_submit(a, j);
}

static void h_cert(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    char sn[API_NAME_MAX + 1];
    /* a stranger learns nothing, not even what a serial looks like */
    struct job *j = station_job(a, r, J_CERT, "certificate");
    if (j == NULL) {
        return;
    }
    snprintf(sn, sizeof(sn), "%s", httpd_req_param(r));
    for (char *p = sn; *p; p++) {
        if (*p >= 'A' && *p <= 'F') {
            *p = (char)(*p - 'A' + 'a');
        }
    }
    if (!serial_param_ok(sn)) {
        job_free(j);
        httpd_reply_error(r, 400, "invalid",
                          "a serial is 1 to 40 hex digits, a certificateId 64 hex digits");
        return;
    }
    snprintf(j->param, sizeof(j->param), "%s", sn);
    job_submit(a, j);
}

static void h_ca(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    const char *name = httpd_req_query(r, "ca");
    const struct snap_ca *c = name ? snap_find_ca(a->snap, name) : &a->snap->cas[a->snap->def];
    if (c == NULL) {
        httpd_reply_error(r, 404, "not_found", "no such CA served by jitrd");
        return;
    }
    httpd_reply(r, 200, "application/pem-certificate-chain", c->chain_pem.data,
                c->chain_pem.len);
}

static void h_est_cacerts(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    const struct snap_ca *c = &a->snap->cas[a->snap->def];
    X509 **certs = NULL;
    size_t n = 0;
    struct buf out = BUF_INIT;
    struct err e = ERR_INIT;
    pem_certs(&c->chain_pem, &certs, &n);
    if (n == 0 || p7_certs_only(certs, n, &out, &e) != 0) {
        if (e.code == ERRC_OK) {
            err_set(&e, ERRC_INTERNAL, "the CA chain is empty");
        }
        httpd_reply_err(r, &e);
    } else {
        httpd_req_add_header(r, "Content-Transfer-Encoding", "base64");
        httpd_reply(r, 200, "application/pkcs7-mime", out.data, out.len);
    }
    for (size_t i = 0; i < n; i++) {
        X509_free(certs[i]);
    }
    xfree(certs);
    buf_release(&out);
}

static void h_crl(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    const char *ca = httpd_req_query(r, "ca");
    const char *fmt = httpd_req_query(r, "format");
    if ((ca && !api_name_ok(ca)) || (fmt && strcmp(fmt, "pem") != 0 && strcmp(fmt, "der") != 0)) {
        httpd_reply_error(r, 400, "invalid", "ca must be a CA name and format pem or der");
        return;
    }
    struct job *j = job_new(a, r, J_CRL);
    snprintf(j->param, sizeof(j->param), "%s", ca ? ca : "");
    snprintf(j->reason, sizeof(j->reason), "%s", fmt ? fmt : "der");
    job_submit(a, j);
}

static void h_revoke(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    char media[64];
    size_t len;
    json_error_t jerr;
    struct err e = ERR_INIT;
    json_t *root = NULL;
    const char *serial = NULL, *reason = NULL, *ca = NULL;
    struct job *j = station_job(a, r, J_REVOKE, "revoke");
    if (j == NULL) {
        return;
    }
    if (!j->st->admin) {
        char who[API_NAME_MAX + 1];
        snprintf(who, sizeof(who), "%s", j->st->name);
        job_free(j);
        deny(a, r, "revoke", who, ERRC_DENIED, "station '%s' does not have the admin role", who);
        return;
    }
    const uint8_t *body = httpd_req_body(r, &len);
    api_media_type(httpd_req_header(r, "Content-Type"), media, sizeof(media));
    if (strcmp(media, "application/json") != 0) {
        job_free(j);
        httpd_reply_error(r, 415, "unsupported_media_type", "POST /v1/revoke takes JSON");
        return;
    }
    if (api_json_depth_check(body, len, (int)a->snap->conf->max_json_depth, &e) != 0 ||
        (root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL ||
        json_unpack_ex(root, &jerr, JSON_STRICT, "{s:s,s?s,s?s}", "serial", &serial, "reason",
                       &reason, "ca", &ca) != 0 ||
        strlen(serial) > API_NAME_MAX || (reason && strlen(reason) >= sizeof(j->reason)) ||
        (ca && !api_name_ok(ca))) {
        if (e.code == ERRC_OK) {
            err_set(&e, ERRC_INVALID, "the body must be {\"serial\", \"reason\", \"ca\"}: %s",
                    jerr.text);
        }
        json_decref(root);
        job_free(j);
        httpd_reply_err(r, &e);
        return;
    }
    snprintf(j->param, sizeof(j->param), "%s", serial);
    snprintf(j->reason, sizeof(j->reason), "%s", reason ? reason : "");
    if (ca) {
        j->items = xcalloc(1, sizeof(*j->items));
        j->n = 1;
        snprintf(j->items[0].ca, sizeof(j->items[0].ca), "%s", ca);
    }
    json_decref(root);
    job_submit(a, j);
}

void api_ready(struct api *a, struct httpd_req *r, bool detail)
{
    struct job *j = job_new(a, r, J_READY);
    j->detail = detail;
    job_submit(a, j);
}

/* /readyz on the signing listener: anyone (load balancers) learns ready or not; an admin station
 * also learns why (admin.c). Never a refusal: a probe without a certificate is normal. */
static void h_readyz(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    char cn[API_NAME_MAX + 2], msg[200];
    const struct station *st = NULL;
    X509 *leaf = NULL;
    enum refusal_reason why;
    struct job *j = job_new(a, r, J_READY);
    if (station_of(a, r, &st, &leaf, cn, &why, msg, sizeof(msg)) == 1 && st->admin) {
        j->st = st;
        j->detail = true;
        snprintf(j->requester, sizeof(j->requester), "station:%s", cn);
        ca_serial_hex(X509_get0_serialNumber(leaf), j->client_serial, sizeof(j->client_serial));
    }
    job_submit(a, j);
}

/* /metrics on the signing listener: admin stations only (else admin_listen). */
static void h_metrics(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    struct job *j = station_job(a, r, J_METRICS, "metrics");
    if (j == NULL) {
        return;
    }
    if (!j->st->admin) {
        char who[API_NAME_MAX + 1], requester[API_NAME_MAX + 16];
        snprintf(who, sizeof(who), "%s", j->st->name);
        snprintf(requester, sizeof(requester), "station:%s", who);
        job_free(j);
        deny(a, r, "metrics", requester, ERRC_DENIED,
             "station '%s' does not have the admin role (metrics: an admin station, or "
             "admin_listen)",
             who);
        return;
    }
    job_submit(a, j);
}

/* Adding a route? Name it (metrics label) and document it in docs/api.md. */
const struct httpd_route api_routes[] = {
    { "POST", "/v1/sign", 0, "sign", h_sign },
    { "POST", "/v1/sign/batch", 0, "sign_batch", h_batch },
    { "GET", "/v1/ca", 0, "ca", h_ca },
    { "GET", "/v1/certificates/", HTTPD_ROUTE_PREFIX, "certificate", h_cert },
    { "GET", "/v1/crl", 0, "crl", h_crl },
    { "POST", "/v1/revoke", 0, "revoke", h_revoke },
    { "GET", "/.well-known/est/cacerts", 0, "est_cacerts", h_est_cacerts },
    { "POST", "/.well-known/est/simpleenroll", 0, "est_enroll", h_est_enroll },
    { "POST", "/.well-known/est/simplereenroll", 0, "est_reenroll", h_est_reenroll },
    { "GET", "/healthz", 0, "healthz", admin_healthz },
    { "GET", "/readyz", 0, "readyz", h_readyz },
    { "GET", "/metrics", 0, "metrics", h_metrics },
};
const size_t api_nroutes = ARRAY_LEN(api_routes);
const char *const api_route_names[] = {
    "sign",        "sign_batch", "ca",           "certificate", "crl",     "revoke",
    "est_cacerts", "est_enroll", "est_reenroll", "healthz",     "readyz",  "metrics",
};

static bool is_sign(const struct job *j)
{
    return j->kind == J_SIGN || j->kind == J_BATCH || j->kind == J_EST_ENROLL;
}

void api_run_many(struct pool_job **v, size_t n, void *tls)
{
    struct tstate *ts = tls;
    struct job **batch = xcalloc(n, sizeof(*batch));
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) {
        struct job *j = (struct job *)v[i];
        if (v[i]->run != job_run) {
            v[i]->run(v[i], tls); /* a job of another file (refusal.c's deny_summary) */
        } else if (is_sign(j) && (nb == 0 || batch[0]->snap == j->snap)) {
            batch[nb++] = j;
        } else {
            job_run(v[i], tls);
        }
    }
    if (nb) {
        ts_freshen(ts);
        sign_jobs(ts, batch, nb);
    }
    xfree(batch);
}

void *api_tls_new(void)
{
    return ts_new();
}

void api_tls_free(void *p)
{
    ts_free(p);
}
