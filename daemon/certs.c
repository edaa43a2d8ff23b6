/*
 * Reading the index (docs/api.md): GET /v1/certificates/ID, a station's own certificates and
 * their renewals by their devices (an admin station's: every one; another station's record is
 * answered as an unknown one, so serials cannot be probed), and GET /v1/ca, the chain of a CA.
 */
#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "daemon/job.h"

bool certs_id_ok(const char *s)
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

int certs_visible(struct store *st, const struct job *j, const struct store_cert_rec *rec,
                  struct err *e)
{
    char who[128];
    struct store_cert_rec f = { 0 };
    int rc = 0;
    if (j->st->admin) {
        return 1;
    }
    if (store_cert_rec_field(rec, "requester") == NULL) {
        return 0;
    }
    snprintf(who, sizeof(who), "%s", rec->requester);
    for (int hop = 0; hop < OWNER_HOPS; hop++) {
        if (strcmp(who, j->requester) == 0) {
            rc = 1;
            break;
        }
        if (!str_has_prefix(who, "device:")) {
            break;
        }
        store_cert_rec_release(&f);
        if (store_cert_read(st, who + strlen("device:"), &f, e) != 0) {
            rc = e->code == ERRC_NOT_FOUND ? 0 : -1;
            if (rc == 0) {
                err_clear(e);
            }
            break;
        }
        if (store_cert_rec_field(&f, "requester") == NULL) {
            break;
        }
        snprintf(who, sizeof(who), "%s", f.requester);
    }
    store_cert_rec_release(&f);
    return rc;
}

static void cert_run(struct job *j, struct tstate *ts)
{
    struct store_cert_rec rec = { 0 };
    struct buf serial = BUF_INIT, der = BUF_INIT, pem = BUF_INIT;
    struct err e = ERR_INIT;
    json_t *o = NULL;
    const char *sn = j->param;
    struct store *st;
    int vis;
    if (auth_client_status(ts, j, NULL, &e) != 0 || (st = ts_store(ts, j->snap, &e)) == NULL) {
        goto fail;
    }
    if (strlen(j->param) == 64) { /* a certificateId */
        if (store_serial_by_fingerprint(st, j->param, &serial, &e) != 0) {
            goto fail;
        }
        sn = buf_cstr(&serial);
    }
    if (store_cert_read(st, sn, &rec, &e) != 0) {
        goto fail;
    }
    /* another station's record is answered as an unknown one: serials cannot be probed */
    vis = certs_visible(st, j, &rec, &e);
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
    /* every field of the record, by name; the DER as PEM, the fingerprint as certificateId */
    o = json_object();
    for (size_t i = 0; i < rec.nfields; i++) {
        const struct store_field *f = &rec.fields[i];
        if (strcmp(f->name, "der") == 0) {
            if (base64_decode(&der, f->value, strlen(f->value)) == 0) {
                ca_der_to_pem(&pem, (const uint8_t *)der.data, der.len);
                json_object_set_new(o, "certificate", json_string(buf_cstr(&pem)));
            }
        } else {
            json_object_set_new(o, strcmp(f->name, "fingerprint") == 0 ? "certificateId" : f->name,
                                json_string(f->value));
        }
    }
    job_json(j, 200, o);
    goto out;
fail:
    ts_after_error(ts, &e);
    job_error(j, &e);
out:
    store_cert_rec_release(&rec);
    buf_release(&serial);
    buf_release(&der);
    buf_release(&pem);
}

void certs_handle(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    char sn[API_NAME_MAX + 1];
    /* a stranger learns nothing, not even what a serial looks like */
    struct job *j = auth_station_job(a, r, J_CERT, cert_run, "certificate");
    if (j == NULL) {
        return;
    }
    snprintf(sn, sizeof(sn), "%s", httpd_req_param(r));
    for (char *p = sn; *p; p++) {
        if (*p >= 'A' && *p <= 'F') {
            *p = (char)(*p - 'A' + 'a');
        }
    }
    if (!certs_id_ok(sn)) {
        job_free(j);
        httpd_reply_error(r, 400, "invalid",
                          "a serial is 1 to 40 hex digits, a certificateId 64 hex digits");
        return;
    }
    snprintf(j->param, sizeof(j->param), "%s", sn);
    job_submit(a, j);
}

void certs_handle_ca(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    const char *name = httpd_req_query(r, "ca");
    const struct snap_ca *c =
        snap_find_ca(a->snap, aliases_resolve(a->al, name ? name : snap_default_name(a->snap)));
    if (c == NULL) {
        httpd_reply_error(r, 404, "not_found", "no such CA served by jitrd");
        return;
    }
    httpd_reply(r, 200, "application/pem-certificate-chain", c->chain_pem.data, c->chain_pem.len);
}
