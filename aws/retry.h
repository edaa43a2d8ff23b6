/*
 * The retry policy of botocore's "standard" mode (docs/aws-iot.md, "Retries"; botocore
 * retries/standard.py), as pure functions so that tests can check every rule (unit_aws_retry);
 * aws/call.c applies them:
 *   - which outcomes are retried: throttling error codes and HTTP 429; the transient codes
 *     RequestTimeout, RequestTimeoutException, PriorRequestNotComplete; HTTP 500, 502, 503, 504;
 *     transport failures (connect, reset, timeout, truncated body). Not retried: every other 4xx,
 *     LimitExceededException (botocore counts it as throttling, but for IoT, HTTP 410, it is a
 *     resource limit) and malformed bodies;
 *   - at most max_attempts (3) attempts;
 *   - the delay before attempt n+1 is rand[0,1) * min(2^(n-1), 20) s ("full jitter");
 *   - a retry quota per client: 500 tokens, a retry costs 5 (10 after a timeout); a success
 *     (HTTP 2xx) without retries gives 1 back, a success after retries gives back the cost of
 *     its LAST retry only (botocore's RetryQuotaChecker.release_retry_quota), not the sum: a
 *     request retried twice keeps 5 of its 10 tokens, so a struggling endpoint drains the quota.
 * Expired credentials (ExpiredToken*) are the caller's business: refresh, then retry once
 * (aws/call.c).
 */
#ifndef AWS_RETRY_H
#define AWS_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"

#define AWS_RETRY_MAX_ATTEMPTS       3
#define AWS_RETRY_MAX_BACKOFF_MS     20000
#define AWS_RETRY_QUOTA_INITIAL      500
#define AWS_RETRY_COST               5
#define AWS_RETRY_TIMEOUT_COST       10
#define AWS_RETRY_NO_RETRY_INCREMENT 1

enum aws_retry_class {
    AWS_RETRY_NONE,      /* success or a final error */
    AWS_RETRY_TRANSIENT, /* 5xx, transient codes, transport errors */
    AWS_RETRY_THROTTLE,  /* throttling codes, 429 */
};

/*
 * Classifies one attempt. transport is ERRC_OK when an HTTP response arrived (then status and
 * code, the AWS error code or "", decide), else the transport error code (ERRC_TIMEOUT,
 * ERRC_UNAVAILABLE retry; ERRC_TOO_LARGE, ERRC_INVALID do not).
 */
enum aws_retry_class aws_retry_classify(enum err_code transport, long status, const char *code);
/* True for ExpiredToken, ExpiredTokenException (not RequestExpired: a request signed at the wrong
 * time, which aws/call.c corrects from the service's Date header). */
bool aws_retry_is_expired_creds(const char *code);

/* Delay before the next attempt after `attempt` (1-based) failed; r01 in [0, 1). */
int64_t aws_retry_delay_ms(unsigned attempt, double r01);
/* A uniform double in [0, 1) from the CSPRNG. */
double aws_retry_rand01(void);

struct aws_retry_quota {
    int tokens;
    int max;
};
void aws_retry_quota_init(struct aws_retry_quota *q);
/* Takes the cost of one retry (AWS_RETRY_TIMEOUT_COST after a timeout); false when the quota
 * is spent (no retry then, *last unchanged). *last is set to the cost taken: the request's state,
 * 0 before its first retry. */
bool aws_retry_quota_acquire(struct aws_retry_quota *q, bool after_timeout, int *last);
/* A request got HTTP 2xx: gives back *last's value from aws_retry_quota_acquire (its last retry's
 * cost), or AWS_RETRY_NO_RETRY_INCREMENT when it was never retried; never above the maximum. */
void aws_retry_quota_success(struct aws_retry_quota *q, int last);

#endif
