/*
 * EST re-enrollment in the signing thread (RFC 7030 §4.2.2; docs/api.md): the client is a device
 * whose current certificate a CA jitrd serves issued and that is valid in the index. The new
 * certificate keeps its subject and profile and renews the current one, which becomes
 * superseded by it (store.h: renews, superseded_by). A lineage (the certificates that renewed one
 * another) may re-enroll reenroll_per_day times a day; concurrent re-enrollments of one
 * certificate wait for each other.
 */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "daemon/job.h"

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
static int reenroll_begin(struct job *j, struct tstate *ts, const struct store_cert_rec *rec)
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
    snprintf(subject, sizeof(subject), "%s", rec->subject);
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
    struct store_cert_rec rec = { 0 };
    struct buf der = BUF_INIT;
    X509 *x = NULL;
    EVP_PKEY *csr_key = X509_REQ_get0_pubkey(req);
    struct store *st = ts_store(ts, j->snap, &e);
    if (st == NULL || store_cert_read(st, newer, &rec, &e) != 0) {
        if (e.code != ERRC_NOT_FOUND) {
            ts_after_error(ts, &e);
            job_error(j, &e);
            goto out;
        }
        err_clear(&e);
    }
    if (rec.status != NULL && store_cert_rec_valid(&rec) &&
        base64_decode(&der, rec.der_b64, strlen(rec.der_b64)) == 0 && der.len > 0) {
        const unsigned char *d = (const unsigned char *)der.data;
        x = d2i_X509(NULL, &d, (long)der.len);
    }
    if (x != NULL && csr_key != NULL && EVP_PKEY_eq(X509_get0_pubkey(x), csr_key) == 1 &&
        X509_REQ_verify(req, csr_key) == 1) {
        est_reply_cert(j, x);
        if (j->status == 200) {
            log_info("re-enrollment of %s asked again with the key of its renewal %s: that "
                     "certificate sent again",
                     j->client_serial, newer);
        }
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
    store_cert_rec_release(&rec);
    buf_release(&der);
}

void reenroll_run(struct job *j, struct tstate *ts)
{
    struct store_cert_rec rec = { 0 };
    struct err e = ERR_INIT;
    const char *profile, *ca, *newer;
    const unsigned char *p = (const unsigned char *)j->items[0].csr.data;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)j->items[0].csr.len);
    if (auth_client_status(ts, j, &rec, &e) != 0) {
        if (e.code == ERRC_DENIED) {
            audit_deny(j, "est_reenroll", &e);
        }
        job_error(j, &e);
        goto out;
    }
    profile = store_cert_rec_field(&rec, "profile");
    ca = store_cert_rec_field(&rec, "ca");
    if (profile == NULL || ca == NULL || strcmp(ca, j->client_ca) != 0) {
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
        err_set(&e, ERRC_INVALID, "re-enrollment must keep the subject of the current certificate");
        job_error(j, &e);
        goto out;
    }
    if ((newer = store_cert_rec_field(&rec, "superseded_by")) != NULL) {
        reenroll_superseded(j, ts, req, newer);
        goto out;
    }
    snprintf(j->items[0].profile, sizeof(j->items[0].profile), "%s", profile);
    snprintf(j->items[0].ca, sizeof(j->items[0].ca), "%s", ca);
    if (reenroll_begin(j, ts, &rec) != 0) {
        goto out;
    }
    snprintf(j->renews, sizeof(j->renews), "%s", j->client_serial);
    sign_run(j, ts);
    reenroll_end(j, ts);
out:
    X509_REQ_free(req);
    store_cert_rec_release(&rec);
}
