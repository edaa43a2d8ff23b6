/*
 * EST (RFC 7030; docs/api.md): /cacerts, /simpleenroll (a station, signed as /v1/sign is:
 * sign.c) and /simplereenroll (a device whose current certificate a CA jitrd serves issued;
 * the work is in reenroll.c). Certificates go out as base64 PKCS#7 certs-only.
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <stdio.h>
#include <string.h>

#include "core/mem.h"
#include "core/util.h"
#include "daemon/job.h"

/* PKCS#7 certs-only (RFC 7030 §4.1.3, §4.2.3), base64 in lines of 64, appended to out. */
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

void est_reply_cert(struct job *j, X509 *x)
{
    struct err e = ERR_INIT;
    buf_reset(&j->body);
    if (p7_certs_only(&x, 1, &j->body, &e) != 0) {
        job_error(j, &e);
        return;
    }
    j->status = 200;
    snprintf(j->ctype, sizeof(j->ctype), "application/pkcs7-mime; smime-type=certs-only");
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

void est_handle_enroll(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    struct job *j = auth_station_job(a, r, J_EST_ENROLL, sign_run, "est_enroll");
    char media[JOB_MEDIA_MAX];
    size_t len;
    bool bad_type;
    struct err e = ERR_INIT;
    if (j == NULL) {
        return;
    }
    const uint8_t *body = job_body(r, &len, media);
    if (api_parse_est_csr(media, body, len, &job_one_item(j)->csr, &bad_type, &e) != 0) {
        job_refuse_body(j, r, &e, bad_type);
        return;
    }
    job_submit(a, j);
}

/* A device whose current certificate a CA jitrd serves issued; a stranger is only counted. */
void est_handle_reenroll(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    char msg[200], media[JOB_MEDIA_MAX];
    size_t len;
    bool bad_type = false;
    struct err e = ERR_INIT;
    X509 *leaf = NULL;
    enum refusal_reason why = REFUSED_NO_CERTIFICATE;
    const struct snap_ca *ca = auth_device_of(a, r, &leaf, &why, msg, sizeof(msg));
    if (ca == NULL) {
        refusal_reply(a, r, why, msg);
        return;
    }
    const uint8_t *body = job_body(r, &len, media);
    struct job *j = job_new(a, r, J_EST_REENROLL, reenroll_run);
    auth_serial_hex(leaf, j->client_serial);
    snprintf(j->requester, sizeof(j->requester), "device:%s", j->client_serial);
    snprintf(j->client_ca, sizeof(j->client_ca), "%s", ca->name);
    j->subject = X509_NAME_dup(X509_get_subject_name(leaf));
    if (j->subject == NULL) {
        err_set(&e, ERRC_INTERNAL, "cannot copy the subject");
        job_refuse_body(j, r, &e, false);
        return;
    }
    if (api_parse_est_csr(media, body, len, &job_one_item(j)->csr, &bad_type, &e) != 0) {
        job_refuse_body(j, r, &e, bad_type);
        return;
    }
    job_submit(a, j);
}

void est_handle_cacerts(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    const struct snap_ca *c =
        snap_find_ca(a->snap, aliases_resolve(a->al, snap_default_name(a->snap)));
    X509 **certs = NULL;
    size_t n = 0;
    struct buf out = BUF_INIT;
    struct err e = ERR_INIT;
    if (c == NULL) {
        c = &a->snap->cas[a->snap->def];
    }
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
