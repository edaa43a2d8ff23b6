/*
 * The AWS call engine, internal to aws/ (aws/iot.c and aws/sqs.c are its only users): the life of
 * one AWS API call, the same for every service, as botocore's "standard" retry mode
 * (aws/retry.h) runs it. docs/aws-client.md, "The call engine", describes it.
 *
 * A call is a state machine (docs/style.md, "State machines") whose state changes only in
 * call.c's call_set_state():
 *   PACE       the protocol's pace hook takes a token (IoT: the per-API bucket); none: go on
 *   PACE_WAIT  a timer for the wait the bucket named, then PACE again
 *   CREDS      credentials from the provider (cached; a fetch only near expiry)
 *   SEND       signed with a fresh X-Amz-Date and sent; the completion classifies the outcome
 *   BACKOFF    the full-jitter timer before the next attempt, then PACE again
 *   DONE       the protocol's done hook has run the user's callback
 * Completions only store their result and move the call on.
 *
 * What the engine owns: the call list, the timer, the credential wait (the provider may be
 * borrowed and freed before the client), signing, the transport request and its timeout, the
 * retry decision (retryable outcome, attempts left, the client's retry quota), the refresh of
 * expired credentials, the messages and the err_code of every failure. What a protocol owns
 * (struct aws_call_proto): building the request once (method, path, query, headers, body), the
 * pacing, the AWS error code of an error response, the checks of a success body, its own error
 * codes, and turning the outcome into its typed result.
 */
#ifndef AWS_CALL_H
#define AWS_CALL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws/provider.h"
#include "aws/retry.h"
#include "aws/transport.h"
#include "core/err.h"

struct event_base;
struct event;
struct aws_call;

enum aws_call_state {
    AWS_CALL_PACE,
    AWS_CALL_PACE_WAIT,
    AWS_CALL_CREDS,
    AWS_CALL_SEND,
    AWS_CALL_BACKOFF,
    AWS_CALL_DONE,
};

/* What a call ended with, borrowed for the done hook. */
struct aws_call_result {
    long status;            /* last HTTP status, 0 when none arrived */
    const char *code;       /* AWS error code, "" when none */
    const char *message;    /* AWS error message, "" when none */
    const char *request_id; /* "" when none */
    json_t *out;            /* the success body, or the error body of an AWS error; else NULL */
    unsigned attempts;
    int64_t paced_ms;
};

/* Where an error response carries its code (botocore's parsers). */
enum aws_call_protocol {
    AWS_PROTO_REST_JSON, /* IoT: x-amzn-ErrorType, else body code/Code, else __type */
    AWS_PROTO_JSON,      /* SQS (JSON 1.0): body __type, else x-amzn-ErrorType, else code/Code */
};

struct aws_call_proto {
    enum aws_call_protocol protocol;
    /* Take a token for k's next attempt, then call aws_call_paced() (at once or later). NULL: no
     * pacing. */
    void (*pace)(struct aws_call *k);
    /* ERRC_OK, or the err_code of an AWS error this service gives its own meaning (e.g. IoT's
     * 409 CONFLICT, SQS's QueueDoesNotExist NOT_FOUND). NULL: none. */
    enum err_code (*error_class)(long status, const char *code);
    /* 0, or -1 with *e set (ERRC_UNAVAILABLE "malformed response") when a 2xx body (a JSON
     * object) lacks what the operation returns. NULL: every object will do. */
    int (*check_output)(const struct aws_call *k, json_t *out, struct err *e);
    /* The call ended (e NULL on success): run the user's callback. Called once; the engine frees
     * the call afterwards. */
    void (*done)(struct aws_call *k, const struct aws_call_result *r, const struct err *e);
};

/* One client's share of the engine, embedded in the client. */
struct aws_engine {
    struct event_base *base;
    struct aws_transport *t; /* borrowed */
    struct aws_credp *credp; /* borrowed; may be freed before the engine */
    const char *region;      /* signing region, borrowed */
    const char *service;     /* signing name, borrowed */
    char *base_url;          /* scheme://host[:port] of the endpoint */
    char *host;              /* the Host header (without a default port, as curl sends it) */
    char *base_path;         /* the endpoint's path without trailing '/': "" or "/p" */
    long timeout_ms;         /* per attempt */
    unsigned max_attempts;
    const struct aws_call_proto *proto;
    struct aws_retry_quota retry_quota;
    int64_t clock_offset_s; /* the service's clock minus ours, learnt from a skew error */
    struct aws_call *calls;
    bool freeing;
};

#define AWS_CALL_MAX_HEADERS 4
/* A skew error is corrected when the service's clock is this far from ours (the SDKs' 4 min). */
#define AWS_CALL_CLOCK_SKEW_S 240

/* One call. A protocol allocates it with aws_call_new (its own struct begins with this one). */
struct aws_call {
    struct aws_engine *eng;
    enum aws_call_state st;
    char *what; /* "AWS IoT CreateThing", "SQS ReceiveMessage URL": every message's prefix */
    /* the request, built once */
    const char *method;
    char *path;                                      /* wire path, encoded */
    char *query;                                     /* "" for none */
    struct aws_header headers[AWS_CALL_MAX_HEADERS]; /* Host comes first, added by the engine */
    char *header_values[AWS_CALL_MAX_HEADERS];       /* owned copies */
    size_t nheaders;
    char *body;
    size_t body_len;
    long timeout_ms;
    /* progress */
    unsigned attempts;
    int quota_last; /* the retry quota's cost of the last retry, 0 before any */
    bool refreshed_creds, corrected_clock;
    int64_t paced_ms, pace_started;
    struct event *timer;
    struct aws_call_creds_wait *cw;
    struct aws_call *prev, *next;
};

void aws_engine_init(struct aws_engine *g, struct event_base *base,
                     const struct aws_call_proto *proto);

/* What a client gives its engine once its parts exist (borrowed for the engine's life, but the
 * endpoint, which the engine takes apart). */
struct aws_engine_opts {
    struct aws_transport *t;
    struct aws_credp *credp;
    const char *region, *service;
    const char *endpoint;  /* scheme://host[:port][/path] */
    long timeout_ms;       /* per attempt; 0: 10000 */
    unsigned max_attempts; /* 0: AWS_RETRY_MAX_ATTEMPTS */
};
/* ERRC_INVALID when the endpoint is not a URL with a host. */
int aws_engine_setup(struct aws_engine *g, const struct aws_engine_opts *o, struct err *e);
/* Frees what the engine owns (after aws_engine_cancel_all). */
void aws_engine_release(struct aws_engine *g);
/* Begins freeing the client: new calls are refused, no call is retried, and t (the client's own
 * transport) is freed, which ends the requests in flight with ERRC_CANCELED. */
void aws_engine_stop(struct aws_engine *g, struct aws_transport *t);
/* Fails every outstanding call with ERRC_CANCELED ("WHAT canceled"); new calls are refused.
 * Free or cancel whatever runs the calls' steps first (transport, bucket client), so that their
 * callbacks end the calls. */
void aws_engine_cancel_all(struct aws_engine *g);

/* A zeroed call of size bytes (>= sizeof(struct aws_call)) for engine g; what is copied. */
struct aws_call *aws_call_new(struct aws_engine *g, size_t size, const char *what);
/* Adds a request header (name borrowed: a literal or a table's; value copied). */
void aws_call_header(struct aws_call *k, const char *name, const char *value);
/* Frees a call that was never started (a build error). */
void aws_call_discard(struct aws_call *k);
/* Starts k from the loop (never inline: the callback never runs before the caller returns);
 * extra_timeout_ms lengthens each attempt (a long poll's wait). -1 with ERRC_CANCELED while the
 * client is being freed (k is discarded). */
int aws_call_start(struct aws_call *k, long extra_timeout_ms, struct err *e);

/* The pace hook's answer: wait_ms 0 goes on, > 0 asks again after that long. */
void aws_call_paced(struct aws_call *k, int64_t wait_ms);
/* Ends k with an error (e.g. the pace hook's ERRC_CANCELED). */
void aws_call_fail(struct aws_call *k, const struct err *e);

/* The AWS error code of an error response as protocol p places it, cut at ':' and after '#'
 * ("HTTP404" when there is none); body is NULL or a JSON object. */
void aws_call_error_code(enum aws_call_protocol p, const struct aws_http_resp *r, json_t *body,
                         char *out, size_t cap);
/* The message of a JSON error body ("message", else "Message"), "" when none. */
const char *aws_call_json_message(json_t *body);

#endif
