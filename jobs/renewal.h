/*
 * The "renewal" kind (docs/jitr.md, "Renewal retires the old certificate"): once a renewal (a
 * certificate whose index record says it renews another: EST simplereenroll, POST /v1/sign with
 * renews) is ACTIVE in AWS IoT, its JITR provisioning enqueues this job, not before
 * renewal_grace seconds from then. Keyed by the renewal's certificateId; the fields name the
 * renewal's serial ("serial"), the certificate it renews ("renews") and its thing ("thing").
 *
 *   NEW         DescribeCertificate of the renewal: still ACTIVE? Else the old certificate is
 *               kept (outcome "kept": a device is never left without an ACTIVE certificate by
 *               this job)
 *   OLD         the old certificate in our index (its certificateId, CA)
 *   DESCRIBE    DescribeCertificate of the old one: unknown to AWS → REVOKE
 *   LIST        ListPrincipalThings of the old one's ARN: a thing → DETACH, none → DEACTIVATE
 *   DETACH      DetachThingPrincipal (already detached: fine), then LIST again
 *   DEACTIVATE  UpdateCertificate INACTIVE when AWS has it ACTIVE; never from REVOKED (final in
 *               AWS: CertificateStateException leaves it so), PENDING_* left alone
 *   REVOKE      our index: revoked with reason superseded through the one revocation path
 *               (issuance/revoke.h: audit record, index, the CA's CRL), off the loop by the
 *               host (struct jobs_renewal_host, the engine's kind_ctx)
 * then the job's audit record {"type":"renewal_retire", ...}. Every step is idempotent, so a
 * crash anywhere resumes safely (the engine saves the state after each).
 */
#ifndef JOBS_RENEWAL_H
#define JOBS_RENEWAL_H

#include <stdint.h>

#include "core/compat.h"
#include "core/conf.h"
#include "core/err.h"
#include "jobs/jobs.h"

extern const struct jobs_kind jobs_kind_renewal;

/* A renewal job to enqueue (jobs_enqueue, jobs_enqueue_argv): v points into out. new_id is the
 * renewal's certificateId, serial its serial, renews the serial it renews, thing the thing it
 * was provisioned onto ("" if none); due at now_ms + grace_s seconds. */
struct jobs_renewal_new {
    const char *fields[6];
    struct jobs_new v;
};
void jobs_renewal_job(struct jobs_renewal_new *out, const char *new_id, const char *serial,
                      const char *renews, const char *thing, int64_t now_ms, int64_t grace_s);

/* The host of the kind in a jitrd worker (the engine's io.kind_ctx): REVOKE's revocations run
 * on a thread of its own (the revocation path blocks: the CA lock, fsync, a signature), with
 * its own configuration (c's file loaded again: a reload may replace c), revoker (CA keys loaded
 * when first needed) and Redis connection. Free it before the audit writer the engine's io uses
 * and before jobs_engine_free: a revocation in progress completes, pending ones are cancelled
 * (their jobs stay pending and run again). */
struct event_base;
struct jobs_renewal_host;
struct jobs_renewal_host *jobs_renewal_host_new(struct event_base *base, const struct conf *c,
                                                struct err *e) ATTR_WUR;
void jobs_renewal_host_free(struct jobs_renewal_host *h);

#endif
