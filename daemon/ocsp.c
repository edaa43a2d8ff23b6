/*
 * The OCSP responder (RFC 6960 with the RFC 5019 profile; docs/revocation.md, "OCSP"): a
 * plain-HTTP listener on ocsp_listen in every worker (SO_REUSEPORT), POST / with an
 * application/ocsp-request body and GET /<base64 of the request, URL-encoded>.
 *
 * On the loop a handler only copies the request into a job; in a signing thread ocsp_run decodes
 * it (ca/ocsp.h), picks the CA the CertIDs name among the snapshot's, reads each serial's record
 * from the index and has the answer signed by the CA's delegated responder certificate when the
 * snapshot has one (snap.c), else by the CA key. Nothing is cached: every answer is read from the
 * index when it is asked, so a revocation is answered at once; what clients and HTTP caches may
 * keep is bounded by nextUpdate (ocsp_validity) and, for GET without a nonce, the RFC 5019 caching
 * headers.
 *
 * Answers: a malformed request → malformedRequest; CertIDs that name no CA of ours →
 * unauthorized; the index incomplete (being rebuilt) or Redis unreachable → tryLater with HTTP
 * 503 and Retry-After; the CA's key unusable or a signing failure → internalError (HTTP 500).
 * Refusals with an OCSP status other than those are HTTP 200: the body is the answer.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ca/crl.h"
#include "ca/ocsp.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/job.h"

#define OCSP_CTYPE "application/ocsp-response"

static struct httpd *ocsp_httpd; /* of this worker process */

/* Sets the reply to the unsigned response of an error status. */
static void reply_status(struct job *j, enum ca_ocsp_rstatus st, int http)
{
    buf_reset(&j->body);
    ca_ocsp_error_resp(st, &j->body);
    j->status = http;
    snprintf(j->ctype, sizeof(j->ctype), OCSP_CTYPE);
    j->cache_max_age = -1;
    if (st == CA_OCSP_TRY_LATER) {
        snprintf(j->retry_after, sizeof(j->retry_after), "5");
    }
}

/* The reason code of a reason name in the index ("keyCompromise", "certificateHold", ...). */
static int reason_code(const char *name)
{
    for (int c = 0; c <= CA_CRL_AA_COMPROMISE; c++) {
        const char *n = ca_crl_reason_name(c);
        if (n && name && strcmp(n, name) == 0) {
            return c;
        }
    }
    return CA_CRL_UNSPECIFIED;
}

/* The answer about one serial of CA ca from the index; -1 when the index cannot say now (e set:
 * incomplete or unreachable). */
static int lookup(struct store *st, const char *ca, const char *serial, struct ca_ocsp_single *s,
                  struct err *e)
{
    struct store_cert_rec rec;
    memset(s, 0, sizeof(*s));
    s->status = CA_OCSP_UNKNOWN;
    if (serial[0] == '\0') {
        return 0;
    }
    if (store_cert_read(st, serial, &rec, e) != 0) {
        if (e->code == ERRC_NOT_FOUND) {
            err_clear(e);
            return 0;
        }
        return -1;
    }
    if (strcmp(rec.ca, ca) == 0) {
        if (store_cert_rec_valid(&rec)) {
            s->status = CA_OCSP_GOOD;
        } else if (strcmp(rec.status, "revoked") == 0 &&
                   time_parse_rfc3339(rec.revoked_at, &s->revoked_at) == 0) {
            s->status = CA_OCSP_REVOKED;
            s->reason = reason_code(rec.reason);
        } else {
            /* a status this responder does not know, or a revocation without its time: the
             * index must say what it means before anything is signed about it */
            err_set(e, ERRC_INTERNAL, "certificate %s of CA '%s': status '%s' (revoked_at '%s')",
                    serial, ca, rec.status, rec.revoked_at);
        }
    }
    store_cert_rec_release(&rec);
    return e->code == ERRC_OK ? 0 : -1;
}

static void ocsp_run(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    struct ca_ocsp_req req;
    struct ca_ocsp_single single[CA_OCSP_MAX_IDS];
    const struct snap_ca *c = NULL;
    struct store *st;
    struct ca_ocsp_resp_params p;
    time_t now = time(NULL);
    bool delegated;
    int rc;
    if (ca_ocsp_req_parse((const uint8_t *)j->input.data, j->input.len, &req, &e) != 0) {
        log_info("OCSP: %s", e.msg);
        reply_status(j, CA_OCSP_MALFORMED, 200);
        return;
    }
    /* the CA: the first CertID that names one of ours; the others, if of another CA, are
     * unknown (RFC 6960 §2.2: not served by this responder with this signer) */
    for (size_t i = 0; i < req.n && c == NULL; i++) {
        for (size_t k = 0; k < j->snap->ncas && c == NULL; k++) {
            const struct snap_ca *x = &j->snap->cas[k];
            if (x->auth->cert && ca_ocsp_id_matches(&req, i, x->auth->cert)) {
                c = x;
            }
        }
    }
    if (c == NULL) {
        reply_status(j, CA_OCSP_UNAUTHORIZED, 200);
        goto out;
    }
    if (c->ctx == NULL) {
        log_warn("OCSP: CA '%s' cannot sign: %s", c->name, c->err.msg);
        reply_status(j, CA_OCSP_INTERNAL_ERROR, 500);
        goto out;
    }
    if ((st = ts_store(ts, j->snap, &e)) == NULL) {
        goto later;
    }
    for (size_t i = 0; i < req.n; i++) {
        if (!ca_ocsp_id_matches(&req, i, c->auth->cert)) {
            memset(&single[i], 0, sizeof(single[i]));
            single[i].status = CA_OCSP_UNKNOWN;
        } else if (lookup(st, c->name, req.serial[i], &single[i], &e) != 0) {
            if (e.code == ERRC_UNAVAILABLE) {
                goto later;
            }
            log_error("OCSP: %s", e.msg);
            reply_status(j, CA_OCSP_INTERNAL_ERROR, 500);
            goto out;
        }
    }
    memset(&p, 0, sizeof(p));
    /* the delegated responder while it is valid (the snapshot may outlive it), else the CA */
    delegated = c->ocsp_cert != NULL && X509_cmp_time(X509_get0_notAfter(c->ocsp_cert), &now) > 0;
    p.cacert = c->auth->cert;
    p.signer = delegated ? c->ocsp_cert : c->auth->cert;
    p.key = delegated ? ca_key_pkey(c->ocsp_key) : ca_key_pkey(c->ctx->key);
    p.single = single;
    p.now = now;
    p.validity = j->snap->conf->ocsp_validity;
    buf_reset(&j->body);
    /* the CA key in a token signs one thing at a time: certificates, CRLs' issuer, this */
    if (!delegated) {
        ca_issuer_key_lock(c->ctx->issuer);
    }
    rc = ca_ocsp_resp_build(&req, &p, &j->body, &e);
    if (!delegated) {
        ca_issuer_key_unlock(c->ctx->issuer);
    }
    if (rc != 0) {
        log_error("OCSP: CA '%s': %s", c->name, e.msg);
        reply_status(j, CA_OCSP_INTERNAL_ERROR, 500);
        goto out;
    }
    j->status = 200;
    snprintf(j->ctype, sizeof(j->ctype), OCSP_CTYPE);
    j->this_update = now;
    /* RFC 5019 §6: a GET without a nonce may be cached until nextUpdate */
    j->cache_max_age = req.has_nonce ? -1 : p.validity;
    goto out;
later:
    ts_after_error(ts, &e);
    log_info("OCSP: answering tryLater: %s", e.msg);
    reply_status(j, CA_OCSP_TRY_LATER, 503);
out:
    ca_ocsp_req_release(&req);
}

static void http_date(char *out, size_t cap, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static void ocsp_finish(struct job *j)
{
    if (j->retry_after[0]) {
        httpd_req_add_header(j->req, "Retry-After", j->retry_after);
    }
    if (j->status == 200 && j->cache_max_age > 0 && j->kind == J_OCSP_GET) {
        char v[96];
        snprintf(v, sizeof(v), "max-age=%lld, public, no-transform, must-revalidate",
                 (long long)j->cache_max_age);
        httpd_req_add_header(j->req, "Cache-Control", v);
        http_date(v, sizeof(v), j->this_update);
        httpd_req_add_header(j->req, "Last-Modified", v);
        http_date(v, sizeof(v), j->this_update + (time_t)j->cache_max_age);
        httpd_req_add_header(j->req, "Expires", v);
    } else {
        httpd_req_add_header(j->req, "Cache-Control", "no-cache, no-store");
    }
    httpd_reply(j->req, j->status ? j->status : 500, j->ctype[0] ? j->ctype : OCSP_CTYPE,
                j->body.data, j->body.len);
}

static void submit(struct api *a, struct httpd_req *r, enum job_kind kind, struct buf *der)
{
    struct job *j = job_new(a, r, kind, ocsp_run);
    j->finish = ocsp_finish;
    buf_add(&j->input, der->data, der->len);
    job_submit(a, j);
}

/* A malformedRequest answered on the loop (nothing to look up or sign). */
static void reply_malformed(struct httpd_req *r, const char *why)
{
    struct buf der = BUF_INIT;
    log_info("OCSP: malformed request: %s", why);
    ca_ocsp_error_resp(CA_OCSP_MALFORMED, &der);
    httpd_req_add_header(r, "Cache-Control", "no-cache, no-store");
    httpd_reply(r, 200, OCSP_CTYPE, der.data, der.len);
    buf_release(&der);
}

void ocsp_handle_get(struct httpd_req *r, void *arg)
{
    struct err e = ERR_INIT;
    struct buf der = BUF_INIT;
    if (ca_ocsp_get_decode(httpd_req_param(r), &der, &e) != 0) {
        reply_malformed(r, e.msg);
    } else {
        submit(arg, r, J_OCSP_GET, &der);
    }
    buf_release(&der);
}

void ocsp_handle_post(struct httpd_req *r, void *arg)
{
    char media[JOB_MEDIA_MAX];
    size_t len = 0;
    const uint8_t *body = job_body(r, &len, media);
    struct buf der = BUF_INIT;
    if (strcmp(media, "application/ocsp-request") != 0) {
        reply_malformed(r, "POST takes Content-Type application/ocsp-request");
        return;
    }
    buf_add(&der, body, len);
    submit(arg, r, J_OCSP_POST, &der);
    buf_release(&der);
}

static void on_reply(void *arg, int route, int status, int64_t ns)
{
    (void)arg;
    metrics_request(route >= 0 ? (int)(api_nroutes + admin_nroutes) + route : -1, status, ns);
}

int ocsp_start(struct api *a, struct err *e)
{
    const struct conf *c = a->snap->conf;
    struct httpd_opts o;
    if (c->ocsp_listen[0] == '\0') {
        return 0;
    }
    memset(&o, 0, sizeof(o));
    o.listen = c->ocsp_listen;
    o.max_body = CA_OCSP_REQUEST_MAX;
    o.request_timeout = (int)c->request_timeout;
    o.idle_timeout = (int)c->idle_timeout;
    o.max_conns = (size_t)c->max_connections;
    o.routes = ocsp_routes;
    o.nroutes = ocsp_nroutes;
    o.done = on_reply;
    o.refused = refusal_http;
    o.arg = a;
    ocsp_httpd = httpd_new(a->base, &o, e);
    if (ocsp_httpd == NULL) {
        return err_prefix(e, "ocsp_listen");
    }
    return 0;
}

void ocsp_stop_accepting(void)
{
    if (ocsp_httpd) {
        httpd_stop_accepting(ocsp_httpd);
    }
}

void ocsp_free(void)
{
    httpd_free(ocsp_httpd);
    ocsp_httpd = NULL;
}
