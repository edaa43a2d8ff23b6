/*
 * The asynchronous credential provider: the chain of aws/creds.h run on the event loop
 * (docs/aws-client.md "Credentials"). Its steps:
 *   web identity  the token file (re-read on every fetch, off the loop) to STS
 *                 AssumeRoleWithWebIdentity (unsigned, form body)
 *   SSO           the token `aws sso login` cached (read off the loop; expired: an error telling to
 *                 run aws sso login) to the SSO portal's GetRoleCredentials
 *   process       credential_process run on a thread of its own: argv split as a shell would
 *                 without expanding anything, no shell, stdin /dev/null, this environment,
 *                 process_timeout_ms (60 s), exit status 0 and JSON Version 1 on stdout; its
 *                 standard error goes into the error
 *   container     GET the ECS/EKS URL with Authorization from the token (file re-read each
 *                 fetch), 2 s timeout
 *   EC2 IMDSv2    PUT /latest/api/token (TTL 21600), GET the role name, GET its credentials;
 *                 1 s timeout; 403/404/405 on the token PUT falls back to IMDSv1 unless
 *                 AWS_EC2_METADATA_V1_DISABLED=true
 *   assume role   STS AssumeRole, SigV4-signed with the credentials before it, per role of the
 *                 plan (chained source profiles: one after the other)
 * STS, SSO and container calls are tried 3 times, retry_ms apart, on transport errors, 5xx, 429
 * and STS throttling. Endpoints: aws_config_endpoint (configured URLs, FIPS, dual-stack,
 * partitions).
 *
 * Caching and refresh, never blocking the loop: credentials are cached; a refresh starts in the
 * background advisory_s (15 min) before expiry, plus up to 60 s of jitter; credentials that
 * expire within mandatory_s (5 min) are never handed out: callers wait for the refresh.
 * aws_credp_invalidate drops them (after an ExpiredToken answer). A refresh runs the whole plan
 * again (base source and roles).
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
    long retry_ms;             /* between attempts of STS, SSO, container calls; 0: 1000 */
    long sts_timeout_ms;       /* STS and SSO calls; 0: 10000 */
    long process_timeout_ms;   /* credential_process; 0: 60000 */
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
/* The configuration the provider was made with (borrowed). */
const struct aws_config *aws_credp_config(const struct aws_credp *p);

/*
 * aws_config_resolve_opts, and when no source names a region, the region of this EC2 instance:
 * IMDSv2 token, then GET /latest/meta-data/placement/region (1 s per request; IMDSv1 when the
 * token is refused, unless AWS_EC2_METADATA_V1_DISABLED=true). Blocking, on a private event
 * loop: for startup (aws_iot_new, jitrd --check-config), never on a running loop. Without a
 * region the error names everything looked at, IMDS included:
 *   no AWS region: AWS_REGION and AWS_DEFAULT_REGION unset, no region for profile 'default' in
 *   /root/.aws/config, EC2 IMDS at http://169.254.169.254 (timeout after 1000 ms ...)
 */
int aws_config_load(struct aws_config *cfg, const char *const *env, const struct aws_config_opts *o,
                    struct err *e) ATTR_WUR;

#endif
