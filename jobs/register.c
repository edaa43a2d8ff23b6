/*
 * The "register" kind (docs/jobs.md, "The register kind"): a certificate we
 * issued is registered in AWS IoT before its device ever connects, then provisioned by JITR's
 * own flow (jitr/flow.c: the same template, thing, policies, principal and activation last), so
 * its first connection needs no JITR event. Queued by `jitrctl aws register-batch`, keyed by the
 * certificateId; the fields: serial, ca (our CA's name), ca_id (its certificateId in AWS), mode
 * (the CA's AWS certificate mode, DEFAULT or SNI_ONLY), batch (the run that queued it), status
 * (the status provisioning ends with, ACTIVE or INACTIVE; ACTIVE when absent), tpl (the
 * SHA-256 of the provisioning template jitrctl aws register-batch --template stored in
 * jitr:tpl:<sha256>; absent: jitrd's own template).
 *
 *   CHECK      our index (cert:<serial>, read only while complete): the certificate is ours,
 *              valid, of that CA; with it the CA's PEM (aws:cacert:<ca_id>, written by jitrctl).
 *              Then DescribeCertificate: unknown to AWS → jitr:dev:<id> marked registered (the
 *              flow's record: a certificate we register INACTIVE is ours to provision), then
 *              RegisterCertificate (our CA's PEM; RegisterCertificateWithoutCA for an SNI_ONLY
 *              CA) with status INACTIVE; known to AWS → outcome "already" with its status,
 *              unless it is INACTIVE and marked registered by us: provisioned again when its
 *              flow did not finish (an earlier run, or a rebuild after a Redis loss that marked
 *              it again, issuance/reindex.c); activated when its flow left it INACTIVE as asked
 *              (--status INACTIVE) and this job asks ACTIVE
 *   PROVISION  a job of the "jitr" kind (src "register") is queued: the flow makes the thing,
 *              policies and principal and sets the status asked (the mark's "status": jitr/
 *              flow.c leaves an INACTIVE one as it is), with the template tpl names when the
 *              job has one (the mark's "tpl" and the flow's entry carry it); this job ends
 *              "registered"
 *   ACTIVATE   UpdateCertificate ACTIVE, the mark's status ACTIVE; this job ends "activated"
 * Each step is safe to run again: a crash after RegisterCertificate finds the certificate
 * INACTIVE and marked at the next run, a second job for the flow is a duplicate once it is done.
 */
#include <stdio.h>
#include <string.h>

#include "ca/issue.h"
#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"
#include "jobs/jobs.h"
#include "store/store.h"

static void st_check(struct jobs_job *j);
static void st_provision(struct jobs_job *j);
static void st_activate(struct jobs_job *j);

static const struct jobs_state register_states[] = {
    { "CHECK", st_check },
    { "PROVISION", st_provision },
    { "ACTIVATE", st_activate },
};

const struct jobs_kind jobs_kind_register = {
    .name = "register",
    .description = "a certificate we issued registered in AWS IoT and provisioned before its "
                   "device connects (jitrctl aws register-batch)",
    .key_field = "cert",
    .cert_lock = true,
    .audit_type = "aws_register",
    .states = register_states,
    .nstates = sizeof(register_states) / sizeof(register_states[0]),
};

/* KEYS: index:ready, cert:<serial>, aws:cacert:<ca_id>. The certificate's fingerprint, status,
 * CA, DER (base64) and the CA's PEM; the index's "incomplete" error while it is rebuilt. */
static const char check_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then\n"
    "  return redis.error_reply('" STORE_INDEX_INCOMPLETE " the index is being rebuilt')\n"
    "end\n"
    "local r = redis.call('HMGET', KEYS[2], 'fingerprint', 'status', 'ca', 'der', 'reason')\n"
    "r[6] = redis.call('HGET', KEYS[3], 'pem')\n"
    "return r\n";

static bool hex64(const char *s)
{
    size_t n = strlen(s);
    if (n != 64) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

static const char *at(json_t *a, size_t i)
{
    const char *v = json_string_value(json_array_get(a, i));
    return v ? v : "";
}

static const char *field(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

/* The status the job asks provisioning to end with. */
static const char *want_status(struct jobs_job *j)
{
    return strcmp(jobs_get(j, "status"), "INACTIVE") == 0 ? "INACTIVE" : "ACTIVE";
}

/* The job's end (the PEMs held between the operations of CHECK are not saved). The record
 * carries what a rebuild needs to mark the certificate ours again (issuance/reindex.c): the
 * CA's certificateId, the account and the status asked. */
static void finish(struct jobs_job *j, const char *outcome, const char *reason)
{
    json_t *rec = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "serial", jobs_get(j, "serial"), "ca",
        jobs_get(j, "ca"), "ca_id", jobs_get(j, "ca_id"), "account", jobs_get(j, "account"), "mode",
        jobs_get(j, "mode"), "batch", jobs_get(j, "batch"), "status", want_status(j), "aws_before",
        jobs_get(j, "aws_before"), "reason", reason);
    if (jobs_get(j, "tpl")[0] != '\0') {
        json_object_set_new(rec, "tpl", json_string(jobs_get(j, "tpl")));
    }
    jobs_set(j, "cert_pem", "");
    jobs_set(j, "ca_pem", "");
    jobs_set(j, "step", "");
    jobs_set(j, "reason", reason);
    jobs_finish(j, outcome, rec);
}

static void next(struct jobs_job *j, const char *state)
{
    jobs_set(j, "cert_pem", "");
    jobs_set(j, "ca_pem", "");
    jobs_set(j, "step", "");
    jobs_next(j, state);
}

/* The account of a certificate's ARN (arn:PARTITION:iot:REGION:ACCOUNT:cert/ID), "" if none. */
static void arn_account(const char *arn, char out[13])
{
    const char *p = arn;
    size_t n = 0;
    out[0] = '\0';
    for (int colons = 0; colons < 4 && p != NULL; colons++) {
        p = strchr(p, ':');
        p = p ? p + 1 : NULL;
    }
    if (p == NULL) {
        return;
    }
    while (p[n] >= '0' && p[n] <= '9' && n < 12) {
        n++;
    }
    if (n == 12 && p[n] == ':') {
        memcpy(out, p, 12);
        out[12] = '\0';
    }
}

/* CHECK, first operation: the index and the CA's PEM. */
static void check_index(struct jobs_job *j)
{
    char ckey[STORE_KEY_MAX], akey[200];
    struct err e = ERR_INIT;
    const char *serial = jobs_get(j, "serial");
    if (!hex64(jobs_key(j)) || !hex64(jobs_get(j, "ca_id")) ||
        (jobs_get(j, "tpl")[0] != '\0' && !hex64(jobs_get(j, "tpl"))) ||
        (strcmp(jobs_get(j, "mode"), "DEFAULT") != 0 &&
         strcmp(jobs_get(j, "mode"), "SNI_ONLY") != 0) ||
        serial[0] == '\0' || !store_key_cert(ckey, sizeof(ckey), serial)) {
        err_set(&e, ERRC_INVALID,
                "register job %.64s: needs a certificateId, a serial, the CA's "
                "certificateId and its mode (DEFAULT or SNI_ONLY); tpl, when given, a SHA-256",
                jobs_key(j));
        jobs_dead(j, &e);
        return;
    }
    snprintf(akey, sizeof(akey), STORE_PREFIX "aws:cacert:%s", jobs_get(j, "ca_id"));
    jobs_set(j, "step", "index");
    const char *av[] = { "EVAL", check_lua, "3", STORE_INDEX_READY, ckey, akey };
    jobs_redis(j, 6, av);
}

/* The index's answer: ours, valid, of that CA? Then DescribeCertificate. */
static void check_indexed(struct jobs_job *j)
{
    struct err e = ERR_INIT;
    json_t *r = jobs_result(j);
    const char *serial = jobs_get(j, "serial");
    struct buf der = BUF_INIT, pem = BUF_INIT;
    if (jobs_result_err(j)->code != ERRC_OK) {
        if (store_err_index_incomplete(jobs_result_err(j))) {
            err_set(&e, ERRC_UNAVAILABLE, "the index is being rebuilt; waiting for it");
            jobs_busy(j, &e);
        } else {
            jobs_fail_op(j, "index lookup");
        }
        return;
    }
    if (at(r, 0)[0] == '\0') {
        finish(j, "refused", "not issued by us: serial not in our index");
        return;
    }
    if (strcmp(at(r, 0), jobs_key(j)) != 0) {
        finish(j, "refused", "our index holds another certificate for that serial");
        return;
    }
    if (strcmp(at(r, 1), "valid") != 0) {
        char why[160];
        snprintf(why, sizeof(why), "%.16s in our index%s%.40s", at(r, 1), at(r, 4)[0] ? ": " : "",
                 at(r, 4));
        finish(j, "refused", why);
        return;
    }
    if (strcmp(at(r, 2), jobs_get(j, "ca")) != 0) {
        finish(j, "refused", "issued by another CA than the one named");
        return;
    }
    if (strcmp(jobs_get(j, "mode"), "DEFAULT") == 0 && at(r, 5)[0] == '\0') {
        err_set(&e, ERRC_NOT_FOUND,
                "the PEM of CA %.64s is not in aws:cacert:%.16s...: run jitrctl aws "
                "register-batch again",
                jobs_get(j, "ca"), jobs_get(j, "ca_id"));
        jobs_dead(j, &e);
        return;
    }
    if (base64_decode(&der, at(r, 3), strlen(at(r, 3))) != 0 || der.len == 0) {
        buf_release(&der);
        err_set(&e, ERRC_INVALID, "serial %.40s: the index's DER cannot be read", serial);
        jobs_dead(j, &e);
        return;
    }
    ca_der_to_pem(&pem, (const uint8_t *)der.data, der.len);
    buf_release(&der);
    jobs_set(j, "cert_pem", buf_cstr(&pem));
    jobs_set(j, "ca_pem", at(r, 5));
    buf_release(&pem);
    jobs_set(j, "step", "describe");
    jobs_aws(j, AWS_IOT_DESCRIBE_CERTIFICATE, json_pack("{s:s}", "certificateId", jobs_key(j)));
}

static void check_described(struct jobs_job *j)
{
    char key[200];
    if (jobs_result_err(j)->code != ERRC_OK) {
        if (strcmp(jobs_result_aws_code(j), "ResourceNotFoundException") != 0) {
            jobs_fail_op(j, "DescribeCertificate");
            return;
        }
        /* unknown to AWS: marked as ours first, so a crash after the registration resumes */
        snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", jobs_key(j));
        jobs_set(j, "step", "mark");
        const char *av[] = {
            "HSET",         key,   "registered",      "1", "ca_id", jobs_get(j, "ca_id"), "status",
            want_status(j), "tpl", jobs_get(j, "tpl")
        };
        jobs_redis(j, 10, av);
        return;
    }
    {
        json_t *d = json_object_get(jobs_result(j), "certificateDescription");
        char account[13];
        const char *status = field(d, "status");
        jobs_set(j, "aws_before", status);
        arn_account(field(d, "certificateArn"), account);
        jobs_set(j, "account", account);
        if (strcmp(status, "INACTIVE") != 0) {
            finish(j, "already", "");
            return;
        }
        /* INACTIVE: ours to provision only when we registered it (an earlier run) */
        snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", jobs_key(j));
        jobs_set(j, "step", "ours");
        const char *av[] = { "HMGET", key, "registered", "state", "status" };
        jobs_redis(j, 5, av);
    }
}

static void register_call(struct jobs_job *j)
{
    jobs_set(j, "step", "register");
    if (strcmp(jobs_get(j, "mode"), "SNI_ONLY") == 0) {
        jobs_aws(j, AWS_IOT_REGISTER_CERTIFICATE_WITHOUT_CA,
                 json_pack("{s:s,s:s}", "certificatePem", jobs_get(j, "cert_pem"), "status",
                           "INACTIVE"));
    } else {
        jobs_aws(j, AWS_IOT_REGISTER_CERTIFICATE,
                 json_pack("{s:s,s:s,s:s}", "certificatePem", jobs_get(j, "cert_pem"),
                           "caCertificatePem", jobs_get(j, "ca_pem"), "status", "INACTIVE"));
    }
}

static void st_check(struct jobs_job *j)
{
    const char *step = jobs_get(j, "step");
    if (!jobs_have_result(j)) {
        check_index(j);
        return;
    }
    if (strcmp(step, "index") == 0) {
        check_indexed(j);
    } else if (strcmp(step, "describe") == 0) {
        check_described(j);
    } else if (strcmp(step, "ours") == 0) {
        json_t *r = jobs_result(j);
        if (jobs_result_err(j)->code != ERRC_OK) {
            jobs_fail_op(j, "the flow's record");
            return;
        }
        if (strcmp(at(r, 0), "1") != 0) {
            finish(j, "already", ""); /* INACTIVE, not by us: left alone */
        } else if (strcmp(at(r, 1), "DONE") != 0) {
            next(j, "PROVISION"); /* its flow did not finish */
        } else if (strcmp(at(r, 2), "INACTIVE") == 0 && strcmp(want_status(j), "ACTIVE") == 0) {
            next(j, "ACTIVATE"); /* provisioned INACTIVE as asked then, ACTIVE asked now */
        } else {
            finish(j, "already", ""); /* INACTIVE as asked, or made INACTIVE since */
        }
    } else if (strcmp(step, "mark") == 0) {
        if (jobs_result_err(j)->code != ERRC_OK) {
            jobs_fail_op(j, "marking the flow's record");
            return;
        }
        register_call(j);
    } else { /* register */
        char account[13];
        if (jobs_result_err(j)->code != ERRC_OK) {
            if (strcmp(jobs_result_aws_code(j), "ResourceAlreadyExistsException") == 0) {
                /* registered since the describe: the next run finds it */
                struct err e = ERR_INIT;
                err_set(&e, ERRC_UNAVAILABLE, "registered meanwhile: describing it again");
                jobs_retry(j, &e);
                return;
            }
            jobs_fail_op(j, strcmp(jobs_get(j, "mode"), "SNI_ONLY") == 0
                                ? "RegisterCertificateWithoutCA"
                                : "RegisterCertificate");
            return;
        }
        arn_account(field(jobs_result(j), "certificateArn"), account);
        jobs_set(j, "account", account);
        jobs_set(j, "aws_before", "");
        next(j, "PROVISION");
    }
}

/* PROVISION: JITR's flow provisions it (fields as jitr/event.c's jitr_event_fields writes
 * them: cert, ca, account, recv, src), with the status this job asks (the mark's, which an
 * earlier run may have set otherwise). */
static void st_provision(struct jobs_job *j)
{
    char now[24], key[200];
    struct jobs_argv a;
    struct err e = ERR_INIT;
    const char *step = jobs_get(j, "step");
    if (jobs_have_result(j) && jobs_result_err(j)->code != ERRC_OK) {
        jobs_fail_op(j, strcmp(step, "status") == 0 ? "the flow's record"
                                                    : "queueing the provisioning");
        return;
    }
    if (!jobs_have_result(j)) {
        snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", jobs_key(j));
        jobs_set(j, "step", "status");
        const char *av[] = { "HSET", key, "status", want_status(j), "tpl", jobs_get(j, "tpl") };
        jobs_redis(j, 6, av);
        return;
    }
    if (strcmp(step, "queue") == 0) {
        finish(j, "registered", "");
        return;
    }
    jobs_set(j, "step", "queue");
    snprintf(now, sizeof(now), "%lld", (long long)time_now_ms());
    const char *fields[] = { "ca",      jobs_get(j, "ca_id"),
                             "account", jobs_get(j, "account"),
                             "recv",    now,
                             "tpl",     jobs_get(j, "tpl") };
    struct jobs_new v = { .kind = &jobs_kind_jitr,
                          .key = jobs_key(j),
                          .fields = fields,
                          .nfields = jobs_get(j, "tpl")[0] != '\0' ? 4 : 3,
                          .not_before_ms = 0,
                          .src = "register" };
    if (jobs_enqueue_argv(&v, 1, time_now_ms(), &a, &e) != 0) {
        jobs_dead(j, &e);
        return;
    }
    jobs_redis(j, (int)a.argc, (const char *const *)a.argv);
    jobs_argv_release(&a);
}

/* ACTIVATE: a certificate our flow provisioned INACTIVE (an earlier --status INACTIVE) made
 * ACTIVE; nothing else is called (its thing, policies and principal are there). */
static void st_activate(struct jobs_job *j)
{
    char key[200];
    const char *step = jobs_get(j, "step");
    if (!jobs_have_result(j)) {
        jobs_set(j, "step", "update");
        jobs_aws(j, AWS_IOT_UPDATE_CERTIFICATE,
                 json_pack("{s:s,s:s}", "certificateId", jobs_key(j), "newStatus", "ACTIVE"));
        return;
    }
    if (jobs_result_err(j)->code != ERRC_OK) {
        jobs_fail_op(j, strcmp(step, "update") == 0 ? "UpdateCertificate" : "the flow's record");
        return;
    }
    if (strcmp(step, "update") == 0) {
        snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", jobs_key(j));
        jobs_set(j, "step", "mark");
        const char *av[] = { "HSET", key, "status", "ACTIVE", "aws_status", "ACTIVE" };
        jobs_redis(j, 6, av);
        return;
    }
    finish(j, "activated", "");
}
