/*
 * Who the client is (daemon/job.h). On the loop, from its verified certificate chain: a station
 * is issued by the station CA and its commonName is listed in the stations file; a stranger
 * (no certificate, one that does not verify, another issuer, not a station name) is refused and
 * only counted (refusal.c); a station certificate whose name is not listed is a decision about
 * an authenticated client, audited. In the signing thread, the status of the client's
 * certificate in the index: revoked or unknown is refused; valid is remembered for
 * AUTH_STATUS_TTL_MS per thread.
 */
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ca/issue.h"
#include "core/util.h"
#include "daemon/job.h"

void auth_serial_hex(X509 *x, char out[41])
{
    (void)ca_serial_hex(X509_get0_serialNumber(x), out, 41);
}

/* ---- the status of the client's certificate, in a signing thread ----------------------------- */

static size_t status_slot(const char *serial)
{
    unsigned h = 0;
    for (const char *p = serial; *p; p++) {
        h = h * 31 + (unsigned char)*p;
    }
    return h % AUTH_STATUS_SLOTS;
}

bool auth_status_fresh(const struct auth_status_cache *c, const char *serial, int64_t now_ms)
{
    size_t i = status_slot(serial);
    return serial[0] != '\0' && strcmp(c->slot[i].serial, serial) == 0 &&
           now_ms - c->slot[i].at_ms < AUTH_STATUS_TTL_MS;
}

void auth_status_note(struct auth_status_cache *c, const char *serial, int64_t now_ms)
{
    size_t i = status_slot(serial);
    snprintf(c->slot[i].serial, sizeof(c->slot[i].serial), "%s", serial);
    c->slot[i].at_ms = now_ms;
}

int auth_client_status(struct tstate *ts, struct job *j, struct store_cert_rec *rec, struct err *e)
{
    struct store_cert_rec own;
    struct store_cert_rec *r = rec ? rec : &own;
    int64_t now = time_now_ms();
    struct store *st;
    if (rec == NULL && auth_status_fresh(&ts->cache, j->client_serial, now)) {
        return 0;
    }
    if ((st = ts_store(ts, j->snap, e)) == NULL) {
        return -1;
    }
    if (store_cert_read(st, j->client_serial, r, e) != 0) {
        if (e->code == ERRC_NOT_FOUND) {
            err_clear(e);
            err_set(e, ERRC_DENIED,
                    "client certificate %s is not in the index of issued certificates",
                    j->client_serial);
        }
        return -1;
    }
    if (!store_cert_rec_valid(r)) {
        store_cert_rec_release(r);
        return err_set(e, ERRC_DENIED, "client certificate %s is revoked", j->client_serial);
    }
    auth_status_note(&ts->cache, j->client_serial, now);
    if (rec == NULL) {
        store_cert_rec_release(r);
    }
    return 0;
}

/* ---- on the loop ---------------------------------------------------------------------------- */

static void deny_run(struct job *j, struct tstate *ts)
{
    (void)ts;
    audit_deny(j, j->param, &j->err);
    job_error(j, &j->err);
}

void auth_deny(struct api *a, struct httpd_req *r, const char *route, const char *requester,
               enum err_code code, const char *fmt, ...)
{
    struct job *j = job_new(a, r, J_DENY, deny_run);
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

/* The client's verified chain (leaf first, its issuer second), or NULL with *why and msg. */
static STACK_OF(X509) *
    verified_chain(struct httpd_req *r, enum refusal_reason *why, char *msg, size_t cap)
{
    const char *verr = "";
    STACK_OF(X509) *chain = httpd_req_client_chain(r, &verr);
    if (chain == NULL) {
        *why = httpd_req_client_cert(r) ? REFUSED_BAD_CERTIFICATE : REFUSED_NO_CERTIFICATE;
        snprintf(msg, cap, "client certificate refused: %s", verr);
    }
    return chain;
}

int auth_station_of(struct api *a, struct httpd_req *r, const struct station **st, X509 **leaf,
                    char cn[API_NAME_MAX + 2], enum refusal_reason *why, char *msg, size_t cap)
{
    STACK_OF(X509) *chain = verified_chain(r, why, msg, cap);
    cn[0] = '\0';
    if (chain == NULL) {
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

const struct snap_ca *auth_device_of(struct api *a, struct httpd_req *r, X509 **leaf,
                                     enum refusal_reason *why, char *msg, size_t cap)
{
    STACK_OF(X509) *chain = verified_chain(r, why, msg, cap);
    if (chain == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < a->snap->ncas; i++) {
        if (a->snap->cas[i].auth->cert &&
            X509_cmp(sk_X509_value(chain, 1), a->snap->cas[i].auth->cert) == 0) {
            *leaf = sk_X509_value(chain, 0);
            return &a->snap->cas[i];
        }
    }
    *why = REFUSED_FOREIGN_ISSUER;
    snprintf(msg, cap,
             "client certificate refused: re-enrollment needs a certificate issued by a CA jitrd "
             "serves");
    return NULL;
}

/* Authenticates a station; on failure answers and returns NULL. A stranger's refusal is only
 * counted (refusal.c); a station certificate whose name is not listed is a decision about an
 * authenticated client: audited. */
struct job *auth_station_job(struct api *a, struct httpd_req *r, enum job_kind kind, job_fn *work,
                             const char *route)
{
    char label[160], cn[API_NAME_MAX + 2], msg[200];
    const struct station *st = NULL;
    X509 *leaf = NULL;
    enum refusal_reason why = REFUSED_NO_CERTIFICATE;
    int who = auth_station_of(a, r, &st, &leaf, cn, &why, msg, sizeof(msg));
    if (who < 0) {
        refusal_reply(a, r, why, msg);
        return NULL;
    }
    if (who == 0) {
        client_label(r, label, sizeof(label));
        auth_deny(a, r, route, label, ERRC_DENIED, "station '%s' is not authorised (stations_file)",
                  cn);
        return NULL;
    }
    struct job *j = job_new(a, r, kind, work);
    j->st = st;
    snprintf(j->requester, sizeof(j->requester), "station:%s", cn);
    auth_serial_hex(leaf, j->client_serial);
    return j;
}
