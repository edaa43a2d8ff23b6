/*
 * aws/retry.c: botocore's "standard" retry rules as pure functions. The retry quota's rules are
 * botocore's RetryQuotaChecker (retries/standard.py): a retry takes 5 tokens (10 after a
 * timeout); a request that gets HTTP 2xx gives back the cost of its LAST retry only, or 1 when it
 * was never retried; never above the initial 500.
 */
#include <string.h>

#include "aws/retry.h"
#include "tests/harness/tt.h"

/* A quota with room below its maximum, so that what a success gives back can be seen. */
static void drained(struct aws_retry_quota *q, int by)
{
    aws_retry_quota_init(q);
    q->tokens -= by;
}

static int test_quota_last_retry(void)
{
    int rc = 0;
    struct aws_retry_quota q;
    int last = 0;
    /* two plain retries, then success: 5 back, not 10 */
    drained(&q, 100);
    CHECK(aws_retry_quota_acquire(&q, false, &last));
    CHECK(aws_retry_quota_acquire(&q, false, &last));
    CHECK_INT_EQ(q.tokens, 390);
    aws_retry_quota_success(&q, last);
    CHECK_INT_EQ(q.tokens, 395);
    /* a retry after a timeout, then a plain one: the last cost (5), not 15 */
    drained(&q, 100);
    last = 0;
    CHECK(aws_retry_quota_acquire(&q, true, &last));
    CHECK(aws_retry_quota_acquire(&q, false, &last));
    CHECK_INT_EQ(q.tokens, 385);
    aws_retry_quota_success(&q, last);
    CHECK_INT_EQ(q.tokens, 390);
    /* a plain retry, then one after a timeout: the timeout's cost (10) */
    drained(&q, 100);
    last = 0;
    CHECK(aws_retry_quota_acquire(&q, false, &last));
    CHECK(aws_retry_quota_acquire(&q, true, &last));
    CHECK_INT_EQ(last, AWS_RETRY_TIMEOUT_COST);
    aws_retry_quota_success(&q, last);
    CHECK_INT_EQ(q.tokens, 395);
out:
    return rc;
}

static int test_quota_no_retry_and_cap(void)
{
    int rc = 0;
    struct aws_retry_quota q;
    int last = 0;
    /* a first-attempt success gives back no_retry_increment (1) */
    drained(&q, 10);
    aws_retry_quota_success(&q, 0);
    CHECK_INT_EQ(q.tokens, 491);
    /* never above the maximum */
    aws_retry_quota_init(&q);
    aws_retry_quota_success(&q, 0);
    CHECK_INT_EQ(q.tokens, AWS_RETRY_QUOTA_INITIAL);
    CHECK(aws_retry_quota_acquire(&q, true, &last));
    aws_retry_quota_success(&q, last);
    CHECK_INT_EQ(q.tokens, AWS_RETRY_QUOTA_INITIAL);
    /* spent: no retry, and *last keeps the cost of the retry that was taken */
    q.tokens = 7;
    last = 0;
    CHECK(aws_retry_quota_acquire(&q, false, &last));
    CHECK(!aws_retry_quota_acquire(&q, false, &last));
    CHECK(!aws_retry_quota_acquire(&q, true, &last));
    CHECK_INT_EQ(q.tokens, 2);
    CHECK_INT_EQ(last, AWS_RETRY_COST);
    /* a failed request gives nothing back: the caller calls aws_retry_quota_success only on 2xx */
out:
    return rc;
}

static int test_classify_delay(void)
{
    int rc = 0;
    CHECK_INT_EQ(aws_retry_classify(ERRC_OK, 400, "ThrottlingException"), AWS_RETRY_THROTTLE);
    CHECK_INT_EQ(aws_retry_classify(ERRC_OK, 429, ""), AWS_RETRY_THROTTLE);
    CHECK_INT_EQ(aws_retry_classify(ERRC_OK, 410, "LimitExceededException"), AWS_RETRY_NONE);
    CHECK_INT_EQ(aws_retry_classify(ERRC_OK, 503, "ServiceUnavailable"), AWS_RETRY_TRANSIENT);
    CHECK_INT_EQ(aws_retry_classify(ERRC_OK, 400, "RequestTimeout"), AWS_RETRY_TRANSIENT);
    CHECK_INT_EQ(aws_retry_classify(ERRC_OK, 409, "ResourceAlreadyExistsException"),
                 AWS_RETRY_NONE);
    CHECK_INT_EQ(aws_retry_classify(ERRC_TIMEOUT, 0, ""), AWS_RETRY_TRANSIENT);
    CHECK_INT_EQ(aws_retry_classify(ERRC_UNAVAILABLE, 0, ""), AWS_RETRY_TRANSIENT);
    CHECK_INT_EQ(aws_retry_classify(ERRC_TOO_LARGE, 0, ""), AWS_RETRY_NONE);
    /* RequestExpired is a request signed at the wrong time (aws/call.c corrects the clock) */
    CHECK(aws_retry_is_expired_creds("ExpiredToken"));
    CHECK(aws_retry_is_expired_creds("ExpiredTokenException"));
    CHECK(!aws_retry_is_expired_creds("RequestExpired"));
    CHECK_INT_EQ(aws_retry_delay_ms(1, 0.999), 999);
    CHECK_INT_EQ(aws_retry_delay_ms(2, 0.5), 1000);
    /* the base is capped at 20 s before the jitter (botocore), not the product */
    CHECK_INT_EQ(aws_retry_delay_ms(20, 0.999), 19980);
    CHECK_INT_EQ(aws_retry_delay_ms(6, 0.5), 10000);
out:
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "quota_last_retry", test_quota_last_retry },
        { "quota_no_retry_and_cap", test_quota_no_retry_and_cap },
        { "classify_delay", test_classify_delay },
    };
    return tt_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
