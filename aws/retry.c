/*
 * botocore "standard" retries (aws/retry.h). The code lists are botocore's
 * (retries/standard.py, _THROTTLED_ERROR_CODES and _TRANSIENT_ERROR_CODES) minus
 * LimitExceededException, which IoT uses for resource limits (HTTP 410).
 */
#include "aws/retry.h"

#include <openssl/rand.h>
#include <string.h>

#include "core/compat.h"

static const char *const throttle_codes[] = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "EC2ThrottledException",
};

static const char *const transient_codes[] = {
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
    "IDPCommunicationError",
};

static bool in_list(const char *code, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(code, list[i]) == 0) {
            return true;
        }
    }
    return false;
}

enum aws_retry_class aws_retry_classify(enum err_code transport, long status, const char *code)
{
    if (transport != ERRC_OK) {
        return transport == ERRC_TIMEOUT || transport == ERRC_UNAVAILABLE ? AWS_RETRY_TRANSIENT
                                                                          : AWS_RETRY_NONE;
    }
    if (code == NULL) {
        code = "";
    }
    if (status == 429 || in_list(code, throttle_codes, ARRAY_LEN(throttle_codes))) {
        return AWS_RETRY_THROTTLE;
    }
    if (in_list(code, transient_codes, ARRAY_LEN(transient_codes))) {
        return AWS_RETRY_TRANSIENT;
    }
    if (status == 500 || status == 502 || status == 503 || status == 504) {
        return AWS_RETRY_TRANSIENT;
    }
    return AWS_RETRY_NONE;
}

bool aws_retry_is_expired_creds(const char *code)
{
    return code != NULL &&
           (strcmp(code, "ExpiredToken") == 0 || strcmp(code, "ExpiredTokenException") == 0);
}

int64_t aws_retry_delay_ms(unsigned attempt, double r01)
{
    double base_ms = 1000.0;
    if (attempt == 0) {
        attempt = 1;
    }
    for (unsigned i = 1; i < attempt && base_ms < AWS_RETRY_MAX_BACKOFF_MS; i++) {
        base_ms *= 2;
    }
    /* botocore: rand * min(2^(attempt-1), 20 s): the base is capped, not the product, so the
     * delay stays uniform over [0, 20 s) */
    if (base_ms > AWS_RETRY_MAX_BACKOFF_MS) {
        base_ms = AWS_RETRY_MAX_BACKOFF_MS;
    }
    if (r01 < 0) {
        r01 = 0;
    }
    return (int64_t)(r01 * base_ms);
}

double aws_retry_rand01(void)
{
    uint64_t v = 0;
    if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1) {
        return 0.5;
    }
    return (double)(v >> 11) / 9007199254740992.0; /* 53 bits / 2^53 */
}

void aws_retry_quota_init(struct aws_retry_quota *q)
{
    q->tokens = q->max = AWS_RETRY_QUOTA_INITIAL;
}

bool aws_retry_quota_acquire(struct aws_retry_quota *q, bool after_timeout, int *last)
{
    int cost = after_timeout ? AWS_RETRY_TIMEOUT_COST : AWS_RETRY_COST;
    if (q->tokens < cost) {
        return false;
    }
    q->tokens -= cost;
    *last = cost;
    return true;
}

void aws_retry_quota_success(struct aws_retry_quota *q, int last)
{
    q->tokens += last > 0 ? last : AWS_RETRY_NO_RETRY_INCREMENT;
    if (q->tokens > q->max) {
        q->tokens = q->max;
    }
}
