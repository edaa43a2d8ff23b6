/*
 * Enrollment of devices that hold no certificate of ours yet (docs/enroll.md):
 *
 *   POST /v1/tokens  (signing listener) an installer station asks for a one-time token bound to
 *                    a device id, one of its profiles and CAs, for ttl seconds (at most 3600);
 *                    audited (token_issue) before the reply
 *   GET /v1/claims/NAME?device=ID  (signing listener, any station) whether the device may
 *                    enroll with the claim: for a pre-provisioning hook that decides elsewhere
 *   POST /v1/enroll  (enroll_listen, TLS, a client certificate optional) a CSR as /v1/sign takes
 *                    it, with either
 *                    - Authorization: Bearer TOKEN: one certificate per token, CN = the token's
 *                      device id whatever the CSR asks; a used, expired or unknown token is 401
 *                      alike, and counts against the source address (enroll_fail_limit; then
 *                      429 until failures came back)
 *                    - a claim certificate (mutual TLS, config claim_profile, valid in the index
 *                      now, so a revoked claim stops at once): the device id is the CSR's CN,
 *                      once per claim, on its allowlist when it has one, approved by its
 *                      pre-provisioning hook when it has one ({"allowProvisioning": true} within
 *                      5 s; anything else refuses)
 *                    The certificate goes through the issuance path (audited with the device,
 *                    the source address and the token's id, indexed) before the reply, which is
 *                    /v1/sign's 201. A token or a reservation whose enrollment issued nothing is
 *                    given back. Refusals of an authenticated claim and every failed token are
 *                    audited (deny).
 *
 * The hook is called from the signing thread (libcurl, 5 s at most): a claim's enrollments take
 * a thread each while their hook answers.
 */
#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/job.h"

#define HOOK_TIMEOUT_MS 5000
#define HOOK_REPLY_MAX  65536

static struct httpd *enroll_httpd; /* of this worker process */

static void unauthorized(struct job *j)
{
    job_json(j, 401,
             json_pack("{s:{s:s,s:s}}", "error", "code", "unauthorized", "message",
                       "the token is not valid"));
}

/* ---- POST /v1/tokens ------------------------------------------------------------------------ */

static void token_run(struct job *j, struct tstate *ts)
{
    const struct snap *s = j->snap;
    struct api_csr_req *it = &j->items[0];
    struct enroll_token t;
    struct err e = ERR_INIT;
    char token[ENROLL_TOKEN_LEN + 1], expires[32];
    const char *ca = it->ca[0] ? it->ca : s->cas[s->def].name;
    const char *profile = it->profile[0] ? it->profile : s->conf->default_profile;
    const struct snap_ca *c;
    struct store *st;
    bool allowed = true;
    int64_t wait_ms = 0;
    memset(&t, 0, sizeof(t));
    if (auth_client_status(ts, j, NULL, &e) != 0) {
        goto refuse;
    }
    if (!station_may_use_ca(j->st, ca)) {
        err_set(&e, ERRC_DENIED, "station '%s' may not use CA '%s'", j->st->name, ca);
        goto refuse;
    }
    if (!station_may_use_profile(j->st, profile)) {
        err_set(&e, ERRC_DENIED, "station '%s' may not use profile '%s'", j->st->name, profile);
        goto refuse;
    }
    if (strcmp(profile, s->conf->claim_profile) == 0) {
        err_set(&e, ERRC_INVALID, "profile '%s' is for claim certificates (jitrctl claim issue)",
                profile);
        goto fail;
    }
    if ((c = snap_find_ca(s, ca)) == NULL) {
        err_set(&e, ERRC_NOT_FOUND, "CA '%s' is not served by jitrd", ca);
        goto fail;
    }
    if (snap_ca_check(c, &e) != 0) {
        goto fail;
    }
    if (ca_profiles_find(c->ctx->profiles, profile) == NULL) {
        err_set(&e, ERRC_INVALID, "unknown profile '%s'", profile);
        goto fail;
    }
    if (audit_damaged_err(&e, false) != 0 || (st = ts_store(ts, s, &e)) == NULL) {
        goto fail;
    }
    if (j->st->rate > 0) {
        char name[100];
        snprintf(name, sizeof(name), "station:%s", j->st->name);
        if (store_bucket_take(st, name, j->st->rate, j->st->burst, 1, &allowed, &wait_ms, &e) !=
            0) {
            goto fail;
        }
        if (!allowed) {
            snprintf(j->retry_after, sizeof(j->retry_after), "%lld",
                     (long long)((wait_ms + 999) / 1000));
            err_set(&e, ERRC_DENIED, "station '%s' is over its rate limit (%g/s, burst %g)",
                    j->st->name, j->st->rate, j->st->burst);
            audit_deny(j, "tokens", &e);
            job_json(j, 429,
                     json_pack("{s:{s:s,s:s}}", "error", "code", "rate_limited", "message", e.msg));
            return;
        }
    }
    snprintf(t.device, sizeof(t.device), "%s", j->device);
    snprintf(t.profile, sizeof(t.profile), "%s", profile);
    snprintf(t.ca, sizeof(t.ca), "%s", ca);
    snprintf(t.requester, sizeof(t.requester), "%s", j->requester);
    t.expires = time_now_ms() / 1000 + j->ttl;
    if (enroll_token_create(st, c->ctx->audit, &t, token, &e) != 0) {
        audit_err_for_client(s, &e);
        goto fail;
    }
    time_format_rfc3339((time_t)t.expires, expires, sizeof(expires));
    log_info("token %s for device %s issued to %s (expires %s)", t.id, t.device, j->requester,
             expires);
    job_json(j, 201,
             json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "token", token, "id", t.id, "expires", expires,
                       "device", t.device, "profile", t.profile, "ca", t.ca));
    OPENSSL_cleanse(token, sizeof(token));
    return;
refuse:
    if (e.code == ERRC_DENIED) {
        audit_deny(j, "tokens", &e);
    }
fail:
    ts_after_error(ts, &e);
    job_error(j, &e);
}

/* {"device": ID, "profile": P, "ca": C, "ttl": S}; device required, others optional. */
static int token_parse(struct job *j, const uint8_t *body, size_t len, int max_depth,
                       int64_t def_ttl, struct err *e)
{
    json_error_t jerr;
    json_t *root, *v;
    const char *key;
    int rc = -1;
    struct api_csr_req *it = job_one_item(j);
    if (api_json_depth_check(body, len, max_depth, e) != 0) {
        return -1;
    }
    root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        err_set(e, ERRC_INVALID, "the body must be a JSON object: %s",
                root ? "not an object" : jerr.text);
        goto out;
    }
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "device") != 0 && strcmp(key, "profile") != 0 && strcmp(key, "ca") != 0 &&
            strcmp(key, "ttl") != 0) {
            err_set(e, ERRC_INVALID, "unknown key '%.64s' (device, profile, ca, ttl)", key);
            goto out;
        }
    }
    v = json_object_get(root, "device");
    if (!json_is_string(v) || !enroll_device_ok(json_string_value(v))) {
        err_set(e, ERRC_INVALID,
                "'device' must be a device id: 1 to %d of A-Z a-z 0-9 : _ - (it becomes the "
                "certificate's CN and the AWS IoT thing name)",
                ENROLL_DEVICE_MAX);
        goto out;
    }
    snprintf(j->device, sizeof(j->device), "%s", json_string_value(v));
    for (int k = 0; k < 2; k++) {
        const char *name = k == 0 ? "profile" : "ca";
        char *dst = k == 0 ? it->profile : it->ca;
        v = json_object_get(root, name);
        if (v == NULL) {
            continue;
        }
        if (!json_is_string(v) || !api_name_ok(json_string_value(v))) {
            err_set(e, ERRC_INVALID, "'%s' must be a name", name);
            goto out;
        }
        snprintf(dst, API_NAME_MAX + 1, "%s", json_string_value(v));
    }
    j->ttl = def_ttl;
    v = json_object_get(root, "ttl");
    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > ENROLL_TOKEN_TTL_MAX) {
            err_set(e, ERRC_INVALID, "'ttl' must be seconds from 1 to %d", ENROLL_TOKEN_TTL_MAX);
            goto out;
        }
        j->ttl = (int64_t)json_integer_value(v);
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

void enroll_handle_token(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    struct job *j = auth_station_job(a, r, J_TOKEN, token_run, "tokens");
    char media[JOB_MEDIA_MAX];
    size_t len;
    struct err e = ERR_INIT;
    if (j == NULL) {
        return;
    }
    if (!j->st->installer) {
        char requester[API_NAME_MAX + 16], who[API_NAME_MAX + 1];
        snprintf(who, sizeof(who), "%s", j->st->name);
        snprintf(requester, sizeof(requester), "station:%s", who);
        job_free(j);
        auth_deny(a, r, "tokens", requester, ERRC_DENIED,
                  "station '%s' is not an installer (stations_file: \"installer\": true)", who);
        return;
    }
    const uint8_t *body = job_body(r, &len, media);
    if (strcmp(media, "application/json") != 0) {
        job_free(j);
        httpd_reply_error(r, 415, "unsupported_media_type",
                          "POST /v1/tokens takes application/json");
        return;
    }
    if (token_parse(j, body, len, (int)a->snap->conf->max_json_depth,
                    a->snap->conf->enroll_token_ttl, &e) != 0) {
        job_free(j);
        httpd_reply_err(r, &e);
        return;
    }
    job_submit(a, j);
}

/* ---- GET /v1/claims/NAME?device=ID ----------------------------------------------------------- */

/* May the device enroll with the claim? For a station that decides elsewhere (an AWS IoT
 * pre-provisioning hook, deploy/aws/): the claim's certificate valid, the claim not expired,
 * the id on its allowlist (when it has one); whether it enrolled with it already. */
static void claim_query_run(struct job *j, struct tstate *ts)
{
    struct enroll_claim cl;
    struct store_cert_rec rec = { 0 };
    struct err e = ERR_INIT;
    struct store *st;
    const char *reason = "";
    bool allowed = false;
    int res = 0;
    if (auth_client_status(ts, j, NULL, &e) != 0) {
        if (e.code == ERRC_DENIED) {
            audit_deny(j, "claim", &e);
        }
        goto fail;
    }
    if ((st = ts_store(ts, j->snap, &e)) == NULL) {
        goto fail;
    }
    if (enroll_claim_get(st, j->param, &cl, &e) != 0) {
        goto fail;
    }
    if (store_cert_read(st, cl.serial, &rec, &e) != 0 && e.code != ERRC_NOT_FOUND) {
        goto fail;
    }
    err_clear(&e);
    if (enroll_claim_reserve(st, &cl, j->device, true, &res, &e) != 0) {
        goto fail;
    }
    if (rec.status == NULL || !store_cert_rec_valid(&rec)) {
        reason = "the claim's certificate is revoked";
    } else if (time_now_ms() / 1000 >= cl.expires) {
        reason = "the claim has expired";
    } else if (res == 1) {
        reason = "the device is not on the claim's allowlist";
    } else {
        allowed = true;
    }
    job_json(j, 200,
             json_pack("{s:s,s:s,s:b,s:b,s:s}", "claim", cl.name, "device", j->device, "allowed",
                       allowed, "enrolled", res == 2, "reason", reason));
    store_cert_rec_release(&rec);
    return;
fail:
    store_cert_rec_release(&rec);
    ts_after_error(ts, &e);
    job_error(j, &e);
}

void enroll_handle_claim(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    const char *name = httpd_req_param(r), *device = httpd_req_query(r, "device");
    struct job *j;
    if (!api_name_ok(name) || device == NULL || !enroll_device_ok(device)) {
        httpd_reply_error(r, 400, "invalid",
                          "GET /v1/claims/NAME?device=ID: a claim name and a device id");
        return;
    }
    if ((j = auth_station_job(a, r, J_CLAIM, claim_query_run, "claim")) == NULL) {
        return;
    }
    snprintf(j->param, sizeof(j->param), "%s", name);
    snprintf(j->device, sizeof(j->device), "%s", device);
    job_submit(a, j);
}

/* ---- POST /v1/enroll ------------------------------------------------------------------------ */

/* Issues j's CSR with CA c, as the caller set up item (profile, requester, device, token...);
 * replies. Returns true when a certificate was issued. */
static bool enroll_issue(struct job *j, struct tstate *ts, const struct snap_ca *c,
                         struct issuance_item *item)
{
    const struct snap *s = j->snap;
    size_t ca = (size_t)(c - s->cas);
    struct err e = ERR_INIT;
    bool issued = false;
    struct issuance_worker *w;
    item->csr = (const uint8_t *)j->items[0].csr.data;
    item->csr_len = j->items[0].csr.len;
    item->cn_forced = j->device;
    item->device = j->device;
    item->source = j->source;
    if (snap_ca_check(c, &e) != 0 || (w = ts_worker(ts, s, ca, &e)) == NULL) {
        ts_after_error(ts, &e);
        job_error(j, &e);
        return false;
    }
    int64_t t0 = time_mono_ns();
    int rc = issuance_run(w, item, 1, &e);
    metrics_issue_latency(time_mono_ns() - t0);
    if (rc != 0) {
        ts_after_error(ts, &e);
        audit_err_for_client(s, &e);
        job_error(j, &e);
    } else if (!item->issued) {
        job_error(j, &item->err);
    } else {
        metrics_issued("device", item->profile, 1);
        j->status = 201;
        snprintf(j->ctype, sizeof(j->ctype), "application/json");
        buf_reset(&j->body);
        sign_issued_write(&j->body, s, ca, item, NULL);
        buf_addch(&j->body, '\n');
        issued = true;
    }
    issuance_item_release(item);
    return issued;
}

static void enroll_token(struct job *j, struct tstate *ts, struct store *st)
{
    struct enroll_token t;
    struct err e = ERR_INIT;
    int64_t retry_ms = 0;
    const struct snap_ca *c;
    struct issuance_item item = { 0 };
    int got;
    if (enroll_fail_blocked(st, j->source, &retry_ms, &e) != 0) {
        goto fail;
    }
    if (retry_ms > 0) {
        snprintf(j->retry_after, sizeof(j->retry_after), "%lld",
                 (long long)((retry_ms + 999) / 1000));
        log_info("enrollment from %s refused: too many failed tokens (retry in %s s)", j->source,
                 j->retry_after);
        job_json(j, 429,
                 json_pack("{s:{s:s,s:s}}", "error", "code", "rate_limited", "message",
                           "too many failed enrollments from this address"));
        return;
    }
    got = enroll_token_take(st, j->token, j->request_id, &t, &e);
    OPENSSL_cleanse(j->token, sizeof(j->token));
    if (got < 0) {
        goto fail;
    }
    if (got == 0) {
        err_set(&e, ERRC_DENIED, "token unknown, used or expired (id %s)", t.id[0] ? t.id : "-");
        audit_deny(j, "enroll", &e);
        err_clear(&e);
        if (enroll_fail_count(st, j->source, j->snap->conf->enroll_fail_limit, &e) != 0) {
            ts_after_error(ts, &e);
        }
        unauthorized(j);
        return;
    }
    snprintf(j->device, sizeof(j->device), "%s", t.device);
    snprintf(j->requester, sizeof(j->requester), "%s", t.requester);
    if ((c = snap_find_ca(j->snap, t.ca)) == NULL) {
        err_set(&e, ERRC_UNAVAILABLE, "CA '%s' of the token is not served by jitrd now", t.ca);
    } else {
        item.profile = t.profile;
        item.requester = t.requester;
        item.token = t.id;
        if (enroll_issue(j, ts, c, &item)) {
            log_info("token %s redeemed by device %s from %s", t.id, t.device, j->source);
            return;
        }
    }
    if (e.code != ERRC_OK) {
        job_error(j, &e);
    }
    err_clear(&e);
    if (enroll_token_give_back(st, &t, j->request_id, &e) != 0) {
        ts_after_error(ts, &e);
        log_warn("token %s: cannot give it back after a failed enrollment: %s", t.id, e.msg);
    }
    return;
fail:
    ts_after_error(ts, &e);
    job_error(j, &e);
}

struct hook_reply {
    struct buf body;
};

static size_t hook_write(char *p, size_t size, size_t n, void *arg)
{
    struct hook_reply *h = arg;
    if (h->body.len + size * n > HOOK_REPLY_MAX) {
        return 0;
    }
    buf_add(&h->body, p, size * n);
    return size * n;
}

/* The claim's pre-provisioning hook: 0 when it answered {"allowProvisioning": true} within
 * HOOK_TIMEOUT_MS; else -1 and e says why (ERRC_DENIED). */
static int hook_ask(const struct snap *s, const struct enroll_claim *c, const char *device,
                    const char *subject, const char *source, struct err *e)
{
    struct hook_reply h = { BUF_INIT };
    struct curl_slist *hdrs = NULL;
    char cerr[CURL_ERROR_SIZE] = "";
    long status = 0;
    int rc = -1;
    CURLcode cc;
    json_t *ans = NULL;
    json_t *req = json_pack("{s:s,s:s,s:s,s:s,s:s}", "device", device, "claim", c->name,
                            "claimSerial", c->serial, "csrSubject", subject, "source", source);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    CURL *cu = curl_easy_init();
    if (body == NULL || cu == NULL) {
        err_set(e, ERRC_INTERNAL, "cannot prepare the pre-provisioning hook's request");
        goto out;
    }
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    curl_easy_setopt(cu, CURLOPT_URL, c->hook);
    curl_easy_setopt(cu, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(cu, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(cu, CURLOPT_TIMEOUT_MS, (long)HOOK_TIMEOUT_MS);
    curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, hook_write);
    curl_easy_setopt(cu, CURLOPT_WRITEDATA, &h);
    curl_easy_setopt(cu, CURLOPT_ERRORBUFFER, cerr);
    if (s->conf->enroll_hook_ca[0]) {
        curl_easy_setopt(cu, CURLOPT_CAINFO, s->conf->enroll_hook_ca);
    }
    cc = curl_easy_perform(cu);
    if (cc != CURLE_OK) {
        err_set(e, ERRC_DENIED, "the pre-provisioning hook of claim '%s' did not answer: %s",
                c->name, cerr[0] ? cerr : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &status);
    if (status / 100 == 2 && h.body.len > 0) {
        ans = json_loadb(h.body.data, h.body.len, 0, NULL);
    }
    if (json_is_true(json_object_get(ans, "allowProvisioning"))) {
        rc = 0;
    } else {
        err_set(e, ERRC_DENIED,
                "the pre-provisioning hook of claim '%s' refused device '%s' (HTTP %ld%s)", c->name,
                device, status, ans ? "" : ", no JSON answer");
    }
out:
    json_decref(ans);
    curl_slist_free_all(hdrs);
    if (cu) {
        curl_easy_cleanup(cu);
    }
    xfree(body);
    json_decref(req);
    buf_release(&h.body);
    return rc;
}

/* A claim's refusal of an authenticated client: audited, then answered. */
static void claim_refuse(struct job *j, const struct err *e)
{
    audit_deny(j, "enroll", e);
    job_error(j, e);
}

static void enroll_claim(struct job *j, struct tstate *ts, struct store *st)
{
    const struct snap *s = j->snap;
    struct store_cert_rec rec = { 0 };
    struct enroll_claim cl;
    struct err e = ERR_INIT;
    struct issuance_item item = { 0 };
    char subject[512] = "", cn[ENROLL_DEVICE_MAX + 2] = "";
    const char *profile, *name;
    const struct snap_ca *c;
    X509_REQ *req = NULL;
    int res = 0;
    if (auth_client_status(ts, j, &rec, &e) != 0) {
        if (e.code == ERRC_DENIED) {
            claim_refuse(j, &e);
        } else {
            ts_after_error(ts, &e);
            job_error(j, &e);
        }
        return;
    }
    profile = store_cert_rec_field(&rec, "profile");
    name = store_cert_rec_field(&rec, "cn");
    if (profile == NULL || strcmp(profile, s->conf->claim_profile) != 0 || name == NULL) {
        err_set(&e, ERRC_DENIED,
                "client certificate %s is not a claim certificate: enroll with a token or a claim",
                j->client_serial);
        claim_refuse(j, &e);
        goto out;
    }
    if (enroll_claim_get(st, name, &cl, &e) != 0 || strcmp(cl.serial, j->client_serial) != 0) {
        if (e.code == ERRC_UNAVAILABLE) {
            ts_after_error(ts, &e);
            job_error(j, &e);
            goto out;
        }
        err_clear(&e);
        err_set(&e, ERRC_DENIED, "client certificate %s is not the certificate of a claim",
                j->client_serial);
        claim_refuse(j, &e);
        goto out;
    }
    snprintf(j->requester, sizeof(j->requester), "claim:%s", cl.name);
    if (time_now_ms() / 1000 >= cl.expires) {
        err_set(&e, ERRC_DENIED, "claim '%s' has expired", cl.name);
        claim_refuse(j, &e);
        goto out;
    }
    req = sign_item_csr(&j->items[0]);
    if (req == NULL ||
        X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof(cn)) <=
            0 ||
        !enroll_device_ok(cn)) {
        err_set(&e, ERRC_INVALID,
                "the CSR's commonName must be the device id: 1 to %d of A-Z a-z 0-9 : _ -",
                ENROLL_DEVICE_MAX);
        job_error(j, &e);
        goto out;
    }
    snprintf(j->device, sizeof(j->device), "%.*s", ENROLL_DEVICE_MAX, cn);
    X509_NAME_oneline(X509_REQ_get_subject_name(req), subject, sizeof(subject));
    if (enroll_claim_reserve(st, &cl, j->device, true, &res, &e) != 0) {
        ts_after_error(ts, &e);
        job_error(j, &e);
        goto out;
    }
    if (res == 0 && cl.hook[0] && hook_ask(s, &cl, j->device, subject, j->source, &e) != 0) {
        claim_refuse(j, &e);
        goto out;
    }
    if (res == 0 && enroll_claim_reserve(st, &cl, j->device, false, &res, &e) != 0) {
        ts_after_error(ts, &e);
        job_error(j, &e);
        goto out;
    }
    if (res != 0) {
        err_set(&e, res == 1 ? ERRC_DENIED : ERRC_CONFLICT,
                res == 1 ? "device '%s' is not on the allowlist of claim '%s'"
                         : "device '%s' enrolled with claim '%s' already",
                j->device, cl.name);
        claim_refuse(j, &e);
        goto out;
    }
    if ((c = snap_find_ca(s, cl.ca)) == NULL) {
        err_set(&e, ERRC_UNAVAILABLE, "CA '%s' of claim '%s' is not served by jitrd now", cl.ca,
                cl.name);
        job_error(j, &e);
    } else {
        item.profile = cl.profile;
        item.requester = j->requester;
        if (enroll_issue(j, ts, c, &item)) {
            log_info("device %s enrolled with claim %s from %s", j->device, cl.name, j->source);
            goto out;
        }
    }
    err_clear(&e);
    if (enroll_claim_release(st, &cl, j->device, &e) != 0) {
        ts_after_error(ts, &e);
        log_warn("claim %s: cannot release device %s after a failed enrollment: %s", cl.name,
                 j->device, e.msg);
    }
out:
    X509_REQ_free(req);
    store_cert_rec_release(&rec);
}

static void enroll_run(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    struct store *st;
    if (audit_damaged_err(&e, false) != 0 || (st = ts_store(ts, j->snap, &e)) == NULL) {
        ts_after_error(ts, &e);
        job_error(j, &e);
        return;
    }
    if (j->token[0]) {
        enroll_token(j, ts, st);
    } else {
        enroll_claim(j, ts, st);
    }
}

/* The bearer token of an Authorization header into out (cap bytes): 1 found, 0 no header, -1 a
 * header that is not "Bearer TOKEN" or a token too long to be ours. */
static int bearer_of(struct httpd_req *r, char *out, size_t cap)
{
    const char *h = httpd_req_header(r, "Authorization");
    size_t n;
    if (h == NULL) {
        return 0;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        return -1;
    }
    h += 7;
    while (*h == ' ') {
        h++;
    }
    n = strlen(h);
    while (n > 0 && h[n - 1] == ' ') {
        n--;
    }
    if (n == 0 || n >= cap) {
        return -1;
    }
    memcpy(out, h, n);
    out[n] = '\0';
    return 1;
}

void enroll_handle_enroll(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    char msg[200], media[JOB_MEDIA_MAX], token[ENROLL_TOKEN_LEN + 2] = "";
    size_t len;
    bool bad_type = false;
    struct err e = ERR_INIT;
    X509 *leaf = NULL;
    enum refusal_reason why = REFUSED_NO_CERTIFICATE;
    const struct snap_ca *ca = NULL;
    int b = bearer_of(r, token, sizeof(token));
    if (b == 0) {
        ca = auth_device_of(a, r, &leaf, &why, msg, sizeof(msg));
        if (ca == NULL && why == REFUSED_NO_CERTIFICATE) {
            httpd_req_add_header(r, "WWW-Authenticate", "Bearer");
            httpd_reply_error(r, 401, "unauthorized",
                              "enrollment needs a token (Authorization: Bearer) or a claim "
                              "certificate");
            return;
        }
        if (ca == NULL) {
            refusal_reply(a, r, why, msg);
            return;
        }
    }
    struct job *j = job_new(a, r, J_ENROLL, enroll_run);
    httpd_req_peer(r, j->source, sizeof(j->source));
    if (j->source[0] == '\0') {
        snprintf(j->source, sizeof(j->source), "unknown");
    }
    if (b != 0) {
        snprintf(j->token, sizeof(j->token), "%s", b > 0 ? token : "-");
        snprintf(j->requester, sizeof(j->requester), "enroll:%s", j->source);
    } else {
        auth_serial_hex(leaf, j->client_serial);
        snprintf(j->requester, sizeof(j->requester), "device:%s", j->client_serial);
        snprintf(j->client_ca, sizeof(j->client_ca), "%s", ca->name);
    }
    OPENSSL_cleanse(token, sizeof(token));
    const uint8_t *body = job_body(r, &len, media);
    struct api_csr_req *it = job_one_item(j);
    if (api_parse_sign(media, body, len, (int)a->snap->conf->max_json_depth, it, &bad_type, &e) !=
        0) {
        job_refuse_body(j, r, &e, bad_type);
        return;
    }
    if (it->profile[0] || it->ca[0] || it->renews[0]) {
        job_free(j);
        httpd_reply_error(r, 400, "invalid",
                          "POST /v1/enroll takes only the CSR: the token or the claim decides the "
                          "profile and the CA");
        return;
    }
    job_submit(a, j);
}

/* ---- the listener --------------------------------------------------------------------------- */

static SSL_CTX *enroll_ssl(void *arg)
{
    struct api *a = arg;
    return a->snap->ssl;
}

static void on_reply(void *arg, int route, int status, int64_t ns)
{
    (void)arg;
    metrics_request(route >= 0 ? (int)(api_nroutes + admin_nroutes + ocsp_nroutes) + route : -1,
                    status, ns);
}

int enroll_start(struct api *a, struct err *e)
{
    const struct conf *c = a->snap->conf;
    struct httpd_opts o;
    if (c->enroll_listen[0] == '\0') {
        return 0;
    }
    /* on the loop, before a signing thread may call a claim's hook */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return err_set(e, ERRC_INTERNAL, "enroll_listen: curl_global_init failed");
    }
    memset(&o, 0, sizeof(o));
    o.listen = c->enroll_listen;
    o.max_body = (size_t)c->max_body_bytes;
    o.request_timeout = (int)c->request_timeout;
    o.idle_timeout = (int)c->idle_timeout;
    o.max_conns = (size_t)c->max_connections;
    o.routes = enroll_routes;
    o.nroutes = enroll_nroutes;
    o.ssl_ctx = enroll_ssl;
    o.done = on_reply;
    o.refused = refusal_http;
    o.arg = a;
    enroll_httpd = httpd_new(a->base, &o, e);
    if (enroll_httpd == NULL) {
        return err_prefix(e, "enroll_listen");
    }
    return 0;
}

void enroll_stop_accepting(void)
{
    if (enroll_httpd) {
        httpd_stop_accepting(enroll_httpd);
    }
}

void enroll_free(void)
{
    httpd_free(enroll_httpd);
    enroll_httpd = NULL;
}
