/*
 * Revocation and CRLs (docs/api.md): POST /v1/revoke (admin stations), GET /v1/crl (anyone),
 * and the schedule that regenerates a CRL once half its validity has passed. The work is
 * issuance/revoke.h's; the routes check who asks and shape the replies.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/mem.h"
#include "daemon/job.h"
#include "issuance/revoke.h"

static void revoke_run(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    struct issuance_revocation rv = { 0 };
    struct store *st;
    enum ca_crl_reason reason = CA_CRL_UNSPECIFIED;
    json_t *o;
    if (audit_damaged_err(&e, false) != 0 || auth_client_status(ts, j, NULL, &e) != 0 ||
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
    o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:b}", "serial", rv.serial_hex, "ca", rv.ca_name,
                  "certificateId", rv.fingerprint, "revokedAt", rv.revoked_at, "reason",
                  ca_crl_reason_name(rv.reason_recorded), "alreadyRevoked", rv.already_revoked,
                  "crlUpdated", rv.crl_written);
    if (rv.crl_written) {
        json_object_set_new(o, "crlNumber", json_integer((json_int_t)rv.crl_number));
    }
    job_json(j, 200, o);
    return;
fail:
    ts_after_error(ts, &e);
    job_error(j, &e);
}

static void crl_run(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    struct issuance_crl crl = { 0 };
    struct store *st = ts_store(ts, j->snap, &e);
    const char *ca = aliases_resolve(j->al, j->param[0] ? j->param : snap_default_name(j->snap));
    if (st == NULL || issuance_crl_get(j->snap->revoker, st, ca, "jitrd:request", &crl, &e) != 0) {
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
static void crl_run_schedule(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    size_t n = 0;
    struct store *st = ts_store(ts, j->snap, &e);
    if (st == NULL || issuance_crl_refresh_if_due(j->snap->revoker, st, time(NULL),
                                                  "jitrd:schedule", &n, &e) != 0) {
        ts_after_error(ts, &e);
        log_warn("scheduled CRL refresh failed: %s", e.msg);
        return;
    }
    if (n) {
        log_info("scheduled CRL refresh regenerated %zu CRL(s)", n);
    }
}

void api_crl_schedule(struct api *a)
{
    if (a->snap->revoker != NULL && !a->snap->degraded) {
        job_submit(a, job_new(a, NULL, J_CRL_SCHEDULE, crl_run_schedule));
    }
}

void crl_handle(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    const char *ca = httpd_req_query(r, "ca");
    const char *fmt = httpd_req_query(r, "format");
    if ((ca && !api_name_ok(ca)) || (fmt && strcmp(fmt, "pem") != 0 && strcmp(fmt, "der") != 0)) {
        httpd_reply_error(r, 400, "invalid", "ca must be a CA name and format pem or der");
        return;
    }
    struct job *j = job_new(a, r, J_CRL, crl_run);
    snprintf(j->param, sizeof(j->param), "%s", ca ? ca : "");
    snprintf(j->reason, sizeof(j->reason), "%s", fmt ? fmt : "der");
    job_submit(a, j);
}

void crl_handle_revoke(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    char media[JOB_MEDIA_MAX];
    size_t len;
    json_error_t jerr;
    struct err e = ERR_INIT;
    json_t *root = NULL;
    const char *serial = NULL, *reason = NULL, *ca = NULL;
    struct job *j = auth_station_job(a, r, J_REVOKE, revoke_run, "revoke");
    if (j == NULL) {
        return;
    }
    if (!j->st->admin) {
        char who[API_NAME_MAX + 1];
        snprintf(who, sizeof(who), "%s", j->st->name);
        job_free(j);
        auth_deny(a, r, "revoke", who, ERRC_DENIED, "station '%s' does not have the admin role",
                  who);
        return;
    }
    const uint8_t *body = job_body(r, &len, media);
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
