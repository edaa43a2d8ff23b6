/*
 * The "revoke" kind (docs/revocation.md, "Revocation in AWS IoT"): AWS IoT follows our index's
 * status of a certificate. Enqueued by the index update of every revocation, hold and release
 * (store_certs_revoke, store_certs_release: in the same script), keyed by the certificateId.
 *
 *   LOOKUP  our index (cert:<serial>): revoked → want REVOKED; revoked with reason
 *           certificateHold or superseded (a renewed certificate retired: jobs/renewal.h) →
 *           want INACTIVE; valid (a hold released) → want ACTIVE
 *   SYNC    DescribeCertificate: unknown to AWS → done, "unknown" (JITR refuses it if it ever
 *           appears: our index says revoked); then UpdateCertificate when AWS's status is not
 *           what we want, never from REVOKED (final in AWS), never ACTIVE but from INACTIVE
 *           after our own hold, never INACTIVE for a certificate still PENDING_ACTIVATION
 *           (JITR has not provisioned it; it refuses it while held)
 * The job converges: it reads the index when it runs, so jobs queued for a hold and its
 * release, or a hold and a revocation, end with AWS at the last status, and running one twice
 * changes nothing. SYNC describes again when resumed after a crash, so an UpdateCertificate
 * that went through is not repeated.
 */
#include <stdio.h>
#include <string.h>

#include "core/mem.h"
#include "core/util.h"
#include "jobs/jobs.h"
#include "store/store.h"

static void st_lookup(struct jobs_job *j);
static void st_sync(struct jobs_job *j);

static const struct jobs_state revoke_states[] = {
    { "LOOKUP", st_lookup },
    { "SYNC", st_sync },
};

const struct jobs_kind jobs_kind_revoke = {
    .name = "revoke",
    .description = "our index's revocations, holds and releases reach AWS IoT",
    .key_field = "cert",
    .cert_lock = true,
    .audit_type = "aws_status",
    .states = revoke_states,
    .nstates = sizeof(revoke_states) / sizeof(revoke_states[0]),
};

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

static const char *field(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static void st_lookup(struct jobs_job *j)
{
    struct err e = ERR_INIT;
    const char *serial = jobs_get(j, "serial");
    json_t *rec;
    if (!jobs_have_result(j)) {
        if (!hex64(jobs_key(j))) {
            err_set(&e, ERRC_INVALID, "revoke job %.64s: not a certificateId", jobs_key(j));
            jobs_dead(j, &e);
            return;
        }
        jobs_cert_lookup(j, serial, "serial");
        return;
    }
    if ((rec = jobs_cert_record(j)) == NULL) {
        return;
    }
    {
        const char *status = field(rec, "status");
        const char *want = NULL;
        if (json_object_size(rec) == 0) {
            err_set(&e, ERRC_NOT_FOUND,
                    "serial %.40s is not in our index: run jitrctl reindex, "
                    "then jitrctl jobs dlq retry",
                    serial);
        } else if (strcmp(field(rec, "fingerprint"), jobs_key(j)) != 0) {
            err_set(&e, ERRC_INVALID, "serial %.40s has another fingerprint in our index", serial);
        } else if (strcmp(status, "revoked") == 0) {
            /* a hold, and a certificate superseded by its renewal (jobs/renewal.h: retired,
             * not compromised), are INACTIVE in AWS; every other reason REVOKED */
            const char *reason = field(rec, "reason");
            want = strcmp(reason, "certificateHold") == 0 || strcmp(reason, "superseded") == 0
                       ? "INACTIVE"
                       : "REVOKED";
        } else if (strcmp(status, "valid") == 0) {
            want = "ACTIVE";
        } else {
            err_set(&e, ERRC_INVALID, "serial %.40s has status '%.32s' in our index", serial,
                    status);
        }
        if (want == NULL) {
            json_decref(rec);
            jobs_dead(j, &e);
            return;
        }
        jobs_set(j, "want", want);
        jobs_set(j, "change_seq", jobs_get(j, "change_seq"));
        jobs_set(j, "change_node", jobs_get(j, "change_node"));
        jobs_set(j, "change_ms", jobs_get(j, "change_ms"));
        jobs_set(j, "reason", field(rec, "reason"));
        jobs_set(j, "ca", field(rec, "ca"));
        json_decref(rec);
    }
    jobs_next(j, "SYNC");
}

/* The audit record of the outcome, with the change the job carried (change_seq, change_node,
 * change_ms: the audit seq, node and time of the revocation, hold or release that queued it),
 * so that an index rebuild after a Redis loss knows the change reached AWS IoT and does not queue
 * it again (issuance/reindex.c). A job without them (an entry of an older version) writes none. */
static void finish(struct jobs_job *j, const char *outcome, const char *before, const char *after)
{
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "serial", jobs_get(j, "serial"), "ca",
                            jobs_get(j, "ca"), "want", jobs_get(j, "want"), "reason",
                            jobs_get(j, "reason"), "aws_before", before, "aws_status", after);
    uint64_t seq = 0, ms = 0;
    if (str_to_u64(jobs_get(j, "change_seq"), &seq) == 0 && seq > 0 && seq <= (uint64_t)INT64_MAX &&
        str_to_u64(jobs_get(j, "change_ms"), &ms) == 0 && ms <= (uint64_t)INT64_MAX) {
        json_object_set_new(rec, "change_seq", json_integer((json_int_t)seq));
        json_object_set_new(rec, "change_node", json_string(jobs_get(j, "change_node")));
        json_object_set_new(rec, "change_ms", json_integer((json_int_t)ms));
    }
    jobs_set(j, "aws_status", after);
    jobs_finish(j, outcome, rec);
}

static void st_sync(struct jobs_job *j)
{
    const char *want = jobs_get(j, "want");
    const char *before = jobs_get(j, "aws_before");
    if (!jobs_have_result(j)) {
        jobs_set(j, "aws_before", "");
        jobs_aws(j, AWS_IOT_DESCRIBE_CERTIFICATE, json_pack("{s:s}", "certificateId", jobs_key(j)));
        return;
    }
    if (before[0] == '\0') { /* DescribeCertificate answered */
        json_t *d = json_object_get(jobs_result(j), "certificateDescription");
        const char *status = field(d, "status");
        if (jobs_result_err(j)->code != ERRC_OK) {
            if (strcmp(jobs_result_aws_code(j), "ResourceNotFoundException") == 0) {
                finish(j, "unknown", "", "");
                return;
            }
            jobs_fail_op(j, "DescribeCertificate");
            return;
        }
        if (status[0] == '\0' || strcmp(field(d, "certificateId"), jobs_key(j)) != 0) {
            struct err e = ERR_INIT;
            err_set(&e, ERRC_UNAVAILABLE, "DescribeCertificate: no description of %.16s...",
                    jobs_key(j));
            jobs_retry(j, &e);
            return;
        }
        jobs_set(j, "aws_before", status);
        if (strcmp(status, want) == 0) {
            finish(j, "unchanged", status, status);
            return;
        }
        if (strcmp(status, "REVOKED") == 0) {
            finish(j, "final", status, status); /* REVOKED in AWS is never changed */
            return;
        }
        if (strcmp(want, "ACTIVE") == 0 && (strcmp(status, "INACTIVE") != 0 ||
                                            strcmp(jobs_get(j, "prev_outcome"), "inactive") != 0)) {
            finish(j, "unchanged", status, status); /* not our hold: not ours to activate */
            return;
        }
        if (strcmp(want, "INACTIVE") == 0 && strcmp(status, "ACTIVE") != 0) {
            finish(j, "unchanged", status, status); /* not provisioned yet: JITR refuses it */
            return;
        }
        jobs_aws(j, AWS_IOT_UPDATE_CERTIFICATE,
                 json_pack("{s:s,s:s}", "certificateId", jobs_key(j), "newStatus", want));
        return;
    }
    /* UpdateCertificate answered */
    if (jobs_result_err(j)->code != ERRC_OK) {
        if (strcmp(jobs_result_aws_code(j), "ResourceNotFoundException") == 0) {
            finish(j, "unknown", before, "");
            return;
        }
        jobs_fail_op(j, "UpdateCertificate");
        return;
    }
    finish(j,
           strcmp(want, "REVOKED") == 0    ? "revoked"
           : strcmp(want, "INACTIVE") == 0 ? "inactive"
                                           : "active",
           before, want);
}
