/*
 * The asynchronous credential provider: the chain of aws/creds.h (environment, shared files)
 * plus its network sources fetched through the transport (docs/aws-iot.md, "Credential sources"):
 *   web identity  POST AssumeRoleWithWebIdentity to STS (unsigned, form body), the token file
 *                 re-read on every fetch; endpoint AWS_ENDPOINT_URL_STS, else AWS_ENDPOINT_URL,
 *                 else https://sts.REGION.amazonaws.com
 *   container     GET the ECS/EKS URL with Authorization from the token (file re-read each time),
 *                 2 s timeout, 3 attempts 1 s apart
 *   EC2 IMDSv2    PUT /latest/api/token (TTL 21600), GET the role name, GET its credentials;
 *                 1 s timeout; 403/404/405 on the token PUT falls back to IMDSv1 unless
 *                 AWS_EC2_METADATA_V1_DISABLED=true
 * A failing network source moves on to the next; when none is left the error names every
 * source tried (ERRC_NOT_FOUND "no AWS credentials: ...").
 *
 * Caching and refresh, never blocking the loop: credentials are cached; a refresh starts in the
 * background advisory_s (15 min) before expiry, plus up to 60 s of jitter; credentials that
 * expire within mandatory_s (5 min) are never handed out: callers wait for the refresh.
 * aws_credp_invalidate drops them (after an ExpiredToken answer).
 *
 * Async contract (docs/style.md, "Asynchronous calls"): aws_credp_get either fails synchronously or
 * returns 0 and calls cb exactly once, later, from the loop, with the credentials (borrowed for the
 * callback) or an error. aws_credp_free runs outstanding callbacks with ERRC_CANCELED.
 */
#ifndef AWS_PROVIDER_H
#define AWS_PROVIDER_H

#include <stdint.h>

#include "aws/creds.h"
#include "aws/transport.h"
#include "core/compat.h"
#include "core/err.h"

struct aws_credp;

struct aws_credp_opts {
    long advisory_s;           /* 0: 900 */
    long mandatory_s;          /* 0: 300 */
    long jitter_s;             /* 0: 60; negative: none (tests) */
    long imds_timeout_ms;      /* 0: 1000 */
    long container_timeout_ms; /* 0: 2000 */
    long container_retry_ms;   /* 0: 1000 */
    long sts_timeout_ms;       /* 0: 10000 */
};

/* cfg and env (NULL: the process environment) are borrowed and must outlive the provider. */
struct aws_credp *aws_credp_new(struct aws_transport *t, const struct aws_config *cfg,
                                const char *const *env, const struct aws_credp_opts *o,
                                struct err *e) ATTR_WUR;
void aws_credp_free(struct aws_credp *p);

typedef void aws_credp_cb(void *arg, const struct aws_creds *c, const struct err *e);
int aws_credp_get(struct aws_credp *p, aws_credp_cb *cb, void *arg, struct err *e) ATTR_WUR;
/* Forgets the cached credentials: the next get fetches. */
void aws_credp_invalidate(struct aws_credp *p);
/* Completed fetches (local or network) since creation. */
uint64_t aws_credp_fetches(const struct aws_credp *p);

#endif
