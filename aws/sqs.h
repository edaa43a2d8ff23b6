/*
 * A small Amazon SQS client for one queue: ReceiveMessage (long poll) and DeleteMessageBatch in
 * the AWS JSON 1.0 protocol that current SDKs use (POST /, X-Amz-Target: AmazonSQS.ACTION,
 * Content-Type: application/x-amz-json-1.0), signed with aws/sigv4.h (service "sqs"), sent through
 * a transport of its own (aws/transport.h, so that aws_sqs_free aborts a pending long poll
 * without touching anyone else's requests), run by the call engine of aws/ (botocore's "standard"
 * retries, aws/retry.h; ExpiredToken refresh; clock skew correction), with credentials from a
 * borrowed aws/provider.h.
 *
 * Async contract (docs/style.md, "Asynchronous calls"): every call either fails synchronously (-1,
 * *e set; the callback never runs) or returns 0 and calls cb exactly once, later, from the loop.
 * The result and error are borrowed for the callback. Errors (e->msg "SQS ACTION QUEUE_URL: CODE:
 * MESSAGE (HTTP n)"):
 *   ERRC_NOT_FOUND    QueueDoesNotExist (AWS.SimpleQueueService.NonExistentQueue), HTTP 404
 *   ERRC_DENIED       401/403, AccessDenied*, signature and credential failures
 *   ERRC_INVALID      other 4xx that are not retried
 *   ERRC_UNAVAILABLE  throttling or 5xx after the last attempt, unreachable endpoint, malformed
 *                     response
 *   ERRC_TIMEOUT      the last attempt timed out
 *   ERRC_CANCELED     aws_sqs_free with the call outstanding (cb runs inside aws_sqs_free)
 * aws_sqs_free must not be called from inside a callback of the client.
 */
#ifndef AWS_SQS_H
#define AWS_SQS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "aws/provider.h"
#include "core/compat.h"
#include "core/err.h"

/* A queue URL taken apart (pure). */
struct aws_sqs_queue {
    char *url;      /* as given */
    char *base_url; /* scheme://host[:port]: the endpoint requests go to */
    char *host;     /* the Host header (a default port dropped, as curl sends it) */
    char region[64];
    bool aws_host; /* the host is AWS's and named the region */
};

/*
 * Parses an SQS queue URL, scheme://host[:port]/ACCOUNT/QUEUE_NAME (http or https; one path
 * segment for the account, one for the name: 1..80 of [A-Za-z0-9_-], ".fifo" allowed; no query,
 * fragment, userinfo or whitespace). The region comes from an AWS host (sqs.REGION.amazonaws.com,
 * REGION.queue.amazonaws.com, queue.amazonaws.com = us-east-1, VPC endpoints
 * *.sqs.REGION.vpce.amazonaws.com, the .amazonaws.com.cn partition) and otherwise from
 * fallback_region (a stand-in or a proxy). ERRC_INVALID naming the URL and the problem; out is
 * left empty then.
 */
int aws_sqs_queue_parse(const char *url, const char *fallback_region, struct aws_sqs_queue *out,
                        struct err *e) ATTR_WUR;
void aws_sqs_queue_release(struct aws_sqs_queue *q);

struct event_base;
struct aws_sqs;

struct aws_sqs_opts {
    struct event_base *base;
    const char *queue_url;
    const char *region;     /* when the URL's host does not name one */
    struct aws_credp *credp; /* borrowed; may be freed before or after the client */
    long timeout_ms;        /* per attempt, 0: 10000; a long poll adds its wait */
    unsigned max_attempts;  /* 0: 3 */
};

/* Requests go to a configured SQS endpoint (AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL, the
 * profile's services section or endpoint_url), else, for a queue on an AWS host, to the SQS
 * endpoint of the queue's region (FIPS and dual-stack as configured: sqs-fips.REGION...), else to
 * the queue URL's host. Signed for the queue's region. */
struct aws_sqs *aws_sqs_new(const struct aws_sqs_opts *o, struct err *e) ATTR_WUR;
void aws_sqs_free(struct aws_sqs *q);
const struct aws_sqs_queue *aws_sqs_queue(const struct aws_sqs *q);
/* The endpoint requests go to; *source (optional) says why ("default endpoint", ...). */
const char *aws_sqs_endpoint(const struct aws_sqs *q, const char **source);

struct aws_sqs_result {
    const char *action;        /* "ReceiveMessage" */
    long status;               /* last HTTP status, 0 when none arrived */
    const char *error_code;    /* "QueueDoesNotExist", "" when none */
    const char *error_message; /* "" when none */
    unsigned attempts;
    json_t *out; /* borrowed: the response object on success, else NULL */
};

typedef void aws_sqs_cb(void *arg, const struct aws_sqs_result *r, const struct err *e);

/* The generic call: in (borrowed) is the JSON request without QueueUrl, which the client adds.
 * extra_timeout_ms is added to the attempt's timeout (a long poll's wait). */
int aws_sqs_call(struct aws_sqs *q, const char *action, json_t *in, long extra_timeout_ms,
                 aws_sqs_cb *cb, void *arg, struct err *e) ATTR_WUR;
/* ReceiveMessage: max 1..10 messages, wait_s 0..20 (long poll). out.Messages: [{MessageId,
 * ReceiptHandle, Body, ...}], absent when the queue was empty. */
int aws_sqs_receive(struct aws_sqs *q, int max, int wait_s, aws_sqs_cb *cb, void *arg,
                    struct err *e) ATTR_WUR;
/* DeleteMessageBatch of n (1..10) receipt handles, entry Id = the index ("0".."9").
 * out.Successful / out.Failed name the entries. */
int aws_sqs_delete_batch(struct aws_sqs *q, const char *const *receipts, size_t n,
                         aws_sqs_cb *cb, void *arg, struct err *e) ATTR_WUR;

#endif
