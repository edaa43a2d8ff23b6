/*
 * Signing (daemon/job.h): POST /v1/sign, POST /v1/sign/batch and EST's simpleenroll. The handler
 * authenticates the station and parses the body on the loop; in the signing thread the jobs a
 * thread took together are signed together: each is checked (the client certificate's status,
 * the station's CA and profile authorisation per item, the CA key), the station rate limits are
 * taken in one round trip, the items of all jobs go through one issuance run per CA (serials
 * reserved, signed, audited durably, indexed: issuance/issuance.h), and each job gets its reply.
 * Refusals of the station (authorisation, revocation, rate) are audited as {"type":"deny"}
 * records before the reply; CSR rejections are audited by the issuance path.
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/job.h"

static const char *sign_route(const struct job *j)
{
    return j->kind == J_BATCH ? "sign_batch" : j->kind == J_SIGN ? "sign" : "est_enroll";
}

static void job_fail(struct job *j, const struct err *e)
{
    j->failed = true;
    err_copy(&j->fail, e);
}

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

X509_REQ *sign_item_csr(const struct api_csr_req *it)
{
    X509_REQ *req;
    if (memmem(it->csr.data, it->csr.len, "-----BEGIN", 10) != NULL) {
        BIO *b = BIO_new_mem_buf(it->csr.data, (int)it->csr.len);
        req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
    } else {
        const unsigned char *p = (const unsigned char *)it->csr.data;
        req = d2i_X509_REQ(NULL, &p, (long)it->csr.len);
    }
    ERR_clear_error();
    return req;
}

/* The certificate an item renews (renews: a serial or certificateId). It must be one the
 * station may read (certs_visible: any other is answered as unknown, so serials cannot be
 * probed), valid and not renewed yet; the renewal keeps its CA, profile and subject (as EST
 * re-enrollment does). it->renews becomes its serial, it->ca and it->profile its own when not
 * given. 0: go on; -1: the item is refused (e); -2: Redis failed (the whole request fails). */
static int renew_check(struct tstate *ts, struct job *j, struct api_csr_req *it, struct err *e)
{
    struct store_cert_rec rec = { 0 };
    struct buf serial = BUF_INIT, der = BUF_INIT;
    char asked[sizeof(it->renews)];
    const char *newer;
    X509 *old = NULL;
    X509_REQ *req = NULL;
    int rc = -2, vis;
    struct store *st = ts_store(ts, j->snap, e);
    snprintf(asked, sizeof(asked), "%s", it->renews);
    if (st == NULL) {
        goto out;
    }
    if (strlen(asked) == 64) {
        if (store_serial_by_fingerprint(st, asked, &serial, e) != 0) {
            goto read_failed;
        }
    } else {
        char hex[41];
        /* as issued: leading zeros and the sign octet as `openssl x509 -serial` may differ */
        if (ca_serial_normalise(asked, hex, e) != 0) {
            err_clear(e);
            err_set(e, ERRC_NOT_FOUND, "renews: no certificate %s", asked);
            rc = -1;
            goto out;
        }
        buf_addstr(&serial, hex);
    }
    if (store_cert_read(st, buf_cstr(&serial), &rec, e) != 0) {
        goto read_failed;
    }
    if ((vis = certs_visible(st, j, &rec, e)) < 0) {
        goto out;
    }
    rc = -1;
    if (vis == 0) {
        err_set(e, ERRC_NOT_FOUND, "renews: no certificate %s", asked);
        goto out;
    }
    if (!store_cert_rec_valid(&rec)) {
        err_set(e, ERRC_CONFLICT, "renews: certificate %s is revoked (%s): it is not renewed",
                rec.serial, rec.reason);
        goto out;
    }
    if ((newer = store_cert_rec_field(&rec, "superseded_by")) != NULL) {
        err_set(e, ERRC_CONFLICT,
                "renews: certificate %s was renewed already (superseded by %s): renew that one",
                rec.serial, newer);
        goto out;
    }
    if (it->ca[0] && strcmp(it->ca, rec.ca) != 0) {
        err_set(e, ERRC_INVALID, "a renewal keeps the CA of certificate %s ('%s'), not '%s'",
                rec.serial, rec.ca, it->ca);
        goto out;
    }
    if (it->profile[0] && strcmp(it->profile, rec.profile) != 0) {
        err_set(e, ERRC_INVALID, "a renewal keeps the profile of certificate %s ('%s'), not '%s'",
                rec.serial, rec.profile, it->profile);
        goto out;
    }
    if (base64_decode(&der, rec.der_b64, strlen(rec.der_b64)) == 0 && der.len > 0) {
        const unsigned char *d = (const unsigned char *)der.data;
        old = d2i_X509(NULL, &d, (long)der.len);
    }
    if (old == NULL) {
        ERR_clear_error();
        err_set(e, ERRC_INTERNAL,
                "renews: the index record of certificate %s holds no readable certificate",
                rec.serial);
        goto out;
    }
    req = sign_item_csr(it);
    if (req != NULL &&
        X509_NAME_cmp(X509_REQ_get_subject_name(req), X509_get_subject_name(old)) != 0) {
        err_set(e, ERRC_INVALID, "a renewal keeps the subject of certificate %s (%s)", rec.serial,
                rec.subject);
        goto out;
    }
    snprintf(it->renews, sizeof(it->renews), "%s", rec.serial);
    snprintf(it->ca, sizeof(it->ca), "%s", rec.ca);
    snprintf(it->profile, sizeof(it->profile), "%s", rec.profile);
    rc = 0;
    goto out;
read_failed:
    if (e->code == ERRC_NOT_FOUND) {
        err_clear(e);
        err_set(e, ERRC_NOT_FOUND, "renews: no certificate %s", asked);
        rc = -1;
    }
out:
    X509_free(old);
    X509_REQ_free(req);
    store_cert_rec_release(&rec);
    buf_release(&serial);
    buf_release(&der);
    return rc;
}

/* Checks one signing request before issuance: the client certificate's status, the station's
 * CA and profile authorisation per item, the CA key; marks the items to issue (out[i].issued,
 * until issuance_run decides). A refusal of the whole request: j->failed. */
static void sign_check(struct tstate *ts, struct job *j, struct ca_memo *memo)
{
    const struct snap *s = j->snap;
    const char *route = sign_route(j);
    struct err e = ERR_INIT;
    size_t ok = 0;
    j->out = xcalloc(j->n, sizeof(*j->out));
    j->ca_of = xcalloc(j->n, sizeof(size_t));
    if (auth_client_status(ts, j, NULL, &e) != 0) {
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
        const char *ca, *profile;
        const struct snap_ca *c;
        o->requester = j->requester;
        o->renews = j->renews[0] ? j->renews : NULL;
        o->profile = *it->profile ? it->profile : s->conf->default_profile;
        if (it->err.code != ERRC_OK) {
            err_copy(&o->err, &it->err);
            continue;
        }
        if (it->renews[0]) {
            int rc = renew_check(ts, j, it, &o->err);
            if (rc == -2) {
                ts_after_error(ts, &o->err);
                job_fail(j, &o->err);
                return;
            }
            if (rc != 0) {
                continue;
            }
            for (size_t k = 0; k < i; k++) {
                if (strcmp(j->items[k].renews, it->renews) == 0 && j->out[k].issued) {
                    err_set(&o->err, ERRC_CONFLICT,
                            "renews: certificate %s is renewed by an earlier item of this batch",
                            it->renews);
                    break;
                }
            }
            if (o->err.code != ERRC_OK) {
                continue;
            }
            o->renews = it->renews;
        }
        ca = *it->ca ? it->ca : snap_default_name(s);
        profile = *it->profile ? it->profile : s->conf->default_profile;
        o->profile = profile;
        if (j->st && !aliases_station_may_use_ca(j->al, j->st, ca)) {
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
        c = snap_find_ca(s, aliases_resolve(j->al, ca));
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
void sign_pem_json(struct buf *b, const uint8_t *der, size_t len)
{
    buf_reserve(b, (len + 2) / 3 * 4 + (len / 48 + 1) * 2 + 64);
    buf_addstr(b, "\"-----BEGIN CERTIFICATE-----\\n");
    for (size_t off = 0; off < len; off += 48) {
        base64_encode(b, der + off, len - off < 48 ? len - off : 48);
        buf_addstr(b, "\\n");
    }
    buf_addstr(b, "-----END CERTIFICATE-----\\n\"");
}

void sign_issued_write(struct buf *b, const struct snap *s, size_t ca,
                       const struct issuance_item *it, const char *id)
{
    buf_reserve(b, 2 * it->cert.der_len + s->cas[ca].chain_json.len + 320);
    buf_addstr(b, "{\"certificate\":");
    sign_pem_json(b, it->cert.der, it->cert.der_len);
    buf_addstr(b, ",\"chain\":");
    buf_add(b, s->cas[ca].chain_json.data, s->cas[ca].chain_json.len);
    buf_addstr(b, ",\"serial\":");
    json_str(b, it->cert.serial_hex);
    buf_addstr(b, ",\"certificateId\":");
    json_str(b, it->cert.fingerprint);
    buf_addstr(b, ",\"notAfter\":");
    json_str(b, it->not_after);
    if (it->validity_clamped) {
        buf_addstr(b, ",\"validity_clamped\":true");
    }
    buf_addstr(b, ",\"ca\":");
    json_str(b, s->cas[ca].name);
    buf_addstr(b, ",\"profile\":");
    json_str(b, it->profile);
    if (it->renews && it->renews[0]) {
        buf_addstr(b, ",\"renews\":");
        json_str(b, it->renews);
    }
    if (id && id[0]) {
        buf_addstr(b, ",\"id\":");
        json_str(b, id);
    }
    buf_addch(b, '}');
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
            job_json(j, 429,
                     json_pack("{s:{s:s,s:s}}", "error", "code", "rate_limited", "message",
                               j->fail.msg));
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
                sign_issued_write(&j->body, j->snap, j->ca_of[i], &out[i], j->items[i].id);
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
        sign_issued_write(&j->body, j->snap, j->ca_of[0], &out[0], NULL);
        buf_addch(&j->body, '\n');
    } else {
        const unsigned char *p = out[0].cert.der;
        X509 *x = d2i_X509(NULL, &p, (long)out[0].cert.der_len);
        if (x == NULL) {
            err_openssl(&e, ERRC_INTERNAL, "cannot parse the issued certificate");
            job_error(j, &e);
        } else {
            est_reply_cert(j, x);
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
        req[n] = (struct store_bucket_req){
            .name = names[n], .rate = j->st->rate, .burst = j->st->burst, .cost = (double)j->cost
        };
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

void sign_jobs(struct tstate *ts, struct job **jobs, size_t nj)
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

void sign_run(struct job *j, struct tstate *ts)
{
    sign_jobs(ts, &j, 1);
}

void sign_handle(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    struct job *j = auth_station_job(a, r, J_SIGN, sign_run, "sign");
    char media[JOB_MEDIA_MAX];
    size_t len;
    bool bad_type;
    struct err e = ERR_INIT;
    if (j == NULL) {
        return;
    }
    const uint8_t *body = job_body(r, &len, media);
    if (api_parse_sign(media, body, len, (int)a->snap->conf->max_json_depth, job_one_item(j),
                       &bad_type, &e) != 0) {
        job_refuse_body(j, r, &e, bad_type);
        return;
    }
    const char *qp = httpd_req_query(r, "profile"), *qc = httpd_req_query(r, "ca");
    if ((qp && !api_name_ok(qp)) || (qc && !api_name_ok(qc))) {
        job_free(j);
        httpd_reply_error(r, 400, "invalid", "query parameters profile and ca must be names");
        return;
    }
    const char *qr = httpd_req_query(r, "renews");
    if (qr && !j->items[0].renews[0] &&
        api_renews_parse(qr, strlen(qr), j->items[0].renews, &e) != 0) {
        job_free(j);
        httpd_reply_err(r, &e);
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

void sign_handle_batch(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    struct job *j = auth_station_job(a, r, J_BATCH, sign_run, "sign_batch");
    char media[JOB_MEDIA_MAX];
    size_t len;
    struct err e = ERR_INIT;
    if (j == NULL) {
        return;
    }
    const uint8_t *body = job_body(r, &len, media);
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
