/*
 * The SQS client: queue URL parsing (pure: endpoint, Host, region from AWS hosts or the fallback,
 * every malformed URL refused with its reason), and, under tests/sim/run_sim.py, the calls
 * against moto's SQS behind the SigV4-verifying stand-in: receive (JSON and base64 bodies),
 * DeleteMessageBatch, an empty long poll, a queue that does not exist, wrong credentials, retried
 * 5xx, and aws_sqs_free aborting a pending 20 s long poll at once.
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "aws/creds.h"
#include "aws/provider.h"
#include "aws/sqs.h"
#include "aws/transport.h"
#include "core/mem.h"
#include "core/util.h"
#include "tests/harness/tt.h"

/* ---- URL parsing ------------------------------------------------------------------------------
 */

static int test_url_ok(void)
{
    static const struct {
        const char *url, *fallback, *base, *host, *region;
        bool aws;
    } cases[] = {
        { "https://sqs.eu-west-1.amazonaws.com/123456789012/jitr-events", "us-east-1",
          "https://sqs.eu-west-1.amazonaws.com", "sqs.eu-west-1.amazonaws.com", "eu-west-1", true },
        { "https://SQS.US-WEST-2.AMAZONAWS.COM/123456789012/q", NULL,
          "https://SQS.US-WEST-2.AMAZONAWS.COM", "SQS.US-WEST-2.AMAZONAWS.COM", "us-west-2", true },
        { "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q.fifo", NULL,
          "https://sqs.cn-north-1.amazonaws.com.cn", "sqs.cn-north-1.amazonaws.com.cn",
          "cn-north-1", true },
        { "https://ap-south-1.queue.amazonaws.com/123456789012/q_1", NULL,
          "https://ap-south-1.queue.amazonaws.com", "ap-south-1.queue.amazonaws.com", "ap-south-1",
          true },
        { "https://queue.amazonaws.com/123456789012/q", NULL, "https://queue.amazonaws.com",
          "queue.amazonaws.com", "us-east-1", true },
        { "https://vpce-0a1b-xyz.sqs.eu-central-1.vpce.amazonaws.com/123456789012/q", NULL,
          "https://vpce-0a1b-xyz.sqs.eu-central-1.vpce.amazonaws.com",
          "vpce-0a1b-xyz.sqs.eu-central-1.vpce.amazonaws.com", "eu-central-1", true },
        { "https://sqs.eu-west-1.amazonaws.com:443/123456789012/q", NULL,
          "https://sqs.eu-west-1.amazonaws.com:443", "sqs.eu-west-1.amazonaws.com", "eu-west-1",
          true },
        { "http://127.0.0.1:4566/000000000000/local", "us-east-1", "http://127.0.0.1:4566",
          "127.0.0.1:4566", "us-east-1", false },
        { "http://localhost:80/123456789012/q", "eu-north-1", "http://localhost:80", "localhost",
          "eu-north-1", false },
    };
    int rc = 0;
    struct aws_sqs_queue q;
    memset(&q, 0, sizeof(q));
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct err e = ERR_INIT;
        CHECK_OK(aws_sqs_queue_parse(cases[i].url, cases[i].fallback, &q, &e), &e);
        CHECK_STR_EQ(q.url, cases[i].url);
        CHECK_STR_EQ(q.base_url, cases[i].base);
        CHECK_STR_EQ(q.host, cases[i].host);
        CHECK_STR_EQ(q.region, cases[i].region);
        CHECK_INT_EQ(q.aws_host, cases[i].aws);
        aws_sqs_queue_release(&q);
    }
out:
    aws_sqs_queue_release(&q);
    return rc;
}

static int test_url_bad(void)
{
    static const struct {
        const char *url, *fallback, *msg;
    } cases[] = {
        { "", "us-east-1", "SQS queue URL is empty" },
        { "ftp://sqs.eu-west-1.amazonaws.com/123456789012/q", NULL, "is not an http(s) URL" },
        { "sqs.eu-west-1.amazonaws.com/123456789012/q", NULL, "is not an http(s) URL" },
        { "https://sqs.eu-west-1.amazonaws.com/123456789012/q?x=1", NULL, "query or fragment" },
        { "https://sqs.eu-west-1.amazonaws.com/123456789012/q#f", NULL, "query or fragment" },
        { "https://user:pw@sqs.eu-west-1.amazonaws.com/123456789012/q", NULL,
          "carries user information" },
        { "https:///123456789012/q", NULL, "has no host" },
        { "https://:443/123456789012/q", NULL, "has no host" },
        { "https://sqs.eu-west-1.amazonaws.com:0/123456789012/q", NULL, "bad port" },
        { "https://sqs.eu-west-1.amazonaws.com:99999/123456789012/q", NULL, "bad port" },
        { "https://sqs.eu-west-1.amazonaws.com:/123456789012/q", NULL, "bad port" },
        { "https://sqs.eu-west-1.amazonaws.com", NULL, "has no path" },
        { "https://sqs.eu-west-1.amazonaws.com/q", NULL, "12-digit account id" },
        { "https://sqs.eu-west-1.amazonaws.com/12345/q", NULL, "12-digit account id" },
        { "https://sqs.eu-west-1.amazonaws.com/12345678901x/q", NULL, "must be 12 digits" },
        { "https://sqs.eu-west-1.amazonaws.com/123456789012/", NULL, "queue name must be" },
        { "https://sqs.eu-west-1.amazonaws.com/123456789012/a/b", NULL, "queue name must be" },
        { "https://sqs.eu-west-1.amazonaws.com/123456789012/bad.name", NULL, "queue name must be" },
        { "https://sqs.eu-west-1.amazonaws.com/123456789012/.fifo", NULL, "queue name must be" },
        { "https://sqs.eu-west-1.amazonaws.com/123456789012/"
          "a123456789a123456789a123456789a123456789a123456789a123456789a123456789a1234567890",
          NULL, "queue name must be" },
        { "https://sqs.eu-west-1.amazonaws.com/123456789012/my queue", NULL,
          "whitespace or a control character" },
        { "https://sqs.eu-west-1.amazonaws.com/123456789012/q\n", NULL,
          "whitespace or a control character" },
        { "https://s3.amazonaws.com/123456789012/q", NULL, "names no region" },
        { "https://sqs.EU_WEST.amazonaws.com/123456789012/q", NULL, "names no region" },
        { "http://127.0.0.1:9324/123456789012/q", NULL, "no valid AWS region" },
        { "http://127.0.0.1:9324/123456789012/q", "Bad Region", "no valid AWS region" },
    };
    int rc = 0;
    struct aws_sqs_queue q;
    memset(&q, 0, sizeof(q));
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct err e = ERR_INIT;
        if (aws_sqs_queue_parse(cases[i].url, cases[i].fallback, &q, &e) == 0) {
            TT_FAIL("accepted '%s'", cases[i].url);
        }
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, cases[i].msg);
        CHECK(q.url == NULL && q.base_url == NULL && q.host == NULL);
    }
out:
    aws_sqs_queue_release(&q);
    return rc;
}

/* ---- against the stand-in ---------------------------------------------------------------------
 */

struct fixture {
    struct event_base *base;
    struct aws_config cfg;
    struct aws_transport *t;
    struct aws_credp *credp;
    char qurl[512];
};

struct outcome {
    bool done;
    struct err err;
    json_t *out;
    unsigned attempts;
    char code[128];
};

static void on_result(void *arg, const struct aws_sqs_result *r, const struct err *e)
{
    struct outcome *o = arg;
    o->done = true;
    o->attempts = r->attempts;
    snprintf(o->code, sizeof(o->code), "%s", r->error_code);
    json_decref(o->out);
    o->out = r->out ? json_incref(r->out) : NULL;
    if (e != NULL) {
        err_copy(&o->err, e);
    } else {
        err_clear(&o->err);
    }
}

static int wait_done(struct fixture *f, struct outcome *o)
{
    int64_t deadline = time_now_ms() + 60000;
    while (!o->done && time_now_ms() < deadline) {
        if (event_base_loop(f->base, EVLOOP_ONCE) < 0) {
            return -1;
        }
    }
    return o->done ? 0 : -1;
}

static void outcome_reset(struct outcome *o)
{
    json_decref(o->out);
    memset(o, 0, sizeof(*o));
    err_clear(&o->err);
}

static int sim_config(const char *json)
{
    return tt_sh("curl -sf -X POST \"$JITRCA_SIM_IOT_URL/_standin/config\" -d '%s' >/dev/null",
                 json);
}

static void fixture_release(struct fixture *f)
{
    aws_credp_free(f->credp);
    aws_transport_free(f->t);
    aws_config_release(&f->cfg);
    if (f->base) {
        event_base_free(f->base);
    }
    memset(f, 0, sizeof(*f));
}

/* A fresh queue named `name` in the stand-in; credentials from the environment (run_sim). */
static int fixture_init(struct fixture *f, const char *name, const char *const *env)
{
    struct err e = ERR_INIT;
    struct aws_credp_opts co;
    char path[512];
    struct buf b = BUF_INIT;
    memset(f, 0, sizeof(*f));
    memset(&co, 0, sizeof(co));
    co.jitter_s = -1;
    f->base = event_base_new();
    aws_config_init(&f->cfg);
    if (f->base == NULL || aws_config_resolve(&f->cfg, env, NULL, NULL, &e) != 0 ||
        (f->t = aws_transport_new(f->base, &e)) == NULL ||
        (f->credp = aws_credp_new(f->t, &f->cfg, env, &co, &e)) == NULL) {
        fprintf(stderr, "fixture: %s\n", e.msg);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/qurl", tt_tmpdir());
    if (tt_sh("aws --endpoint-url \"$JITRCA_SIM_IOT_URL\" sqs create-queue --queue-name %s "
              "--attributes VisibilityTimeout=2 --query QueueUrl --output text >%s",
              name, path) != 0 ||
        file_read_all(path, 4096, &b, &e) != 0) {
        buf_release(&b);
        return -1;
    }
    snprintf(f->qurl, sizeof(f->qurl), "%.*s", (int)strcspn(buf_cstr(&b), "\r\n"), buf_cstr(&b));
    buf_release(&b);
    return 0;
}

static struct aws_sqs *client(struct fixture *f, const char *url, struct err *e)
{
    struct aws_sqs_opts o;
    memset(&o, 0, sizeof(o));
    o.base = f->base;
    o.queue_url = url;
    o.region = f->cfg.region;
    o.credp = f->credp;
    o.timeout_ms = 5000;
    return aws_sqs_new(&o, e);
}

static bool have_sim(void)
{
    return getenv("JITRCA_SIM_IOT_URL") != NULL;
}

static int test_roundtrip(void)
{
    int rc = 0;
    struct fixture f;
    struct err e = ERR_INIT;
    struct aws_sqs *q = NULL;
    struct outcome o;
    const char *receipts[10];
    size_t n;
    json_t *m;
    bool seen_json = false, seen_b64 = false;
    memset(&o, 0, sizeof(o));
    if (!have_sim()) {
        return TT_SKIP;
    }
    CHECK(fixture_init(&f, "roundtrip", NULL) == 0);
    CHECK_STR_CONTAINS(f.qurl, "/123456789012/roundtrip");
    q = client(&f, f.qurl, &e);
    CHECK(q != NULL);
    CHECK_STR_EQ(aws_sqs_queue(q)->region, "us-east-1");
    CHECK_INT_EQ(aws_sqs_queue(q)->aws_host, false);
    /* an empty long poll of 1 s */
    CHECK_OK(aws_sqs_receive(q, 10, 1, on_result, &o, &e), &e);
    CHECK(!o.done); /* never inline */
    CHECK(wait_done(&f, &o) == 0);
    CHECK_OK(o.err.code == ERRC_OK ? 0 : -1, &o.err);
    CHECK(json_object_get(o.out, "Messages") == NULL ||
          json_array_size(json_object_get(o.out, "Messages")) == 0);
    outcome_reset(&o);
    CHECK(tt_sh("aws --endpoint-url \"$JITRCA_SIM_IOT_URL\" sqs send-message --queue-url %s "
                "--message-body '{\"a\":1}' >/dev/null && "
                "aws --endpoint-url \"$JITRCA_SIM_IOT_URL\" sqs send-message --queue-url %s "
                "--message-body eyJhIjoyfQ== >/dev/null",
                f.qurl, f.qurl) == 0);
    CHECK_OK(aws_sqs_receive(q, 10, 2, on_result, &o, &e), &e);
    CHECK(wait_done(&f, &o) == 0);
    CHECK_OK(o.err.code == ERRC_OK ? 0 : -1, &o.err);
    n = json_array_size(json_object_get(o.out, "Messages"));
    if (n < 2) { /* moto may hand them out over two receives */
        struct outcome o2;
        memset(&o2, 0, sizeof(o2));
        CHECK_OK(aws_sqs_receive(q, 10, 2, on_result, &o2, &e), &e);
        CHECK(wait_done(&f, &o2) == 0);
        json_array_extend(json_object_get(o.out, "Messages"), json_object_get(o2.out, "Messages"));
        outcome_reset(&o2);
        n = json_array_size(json_object_get(o.out, "Messages"));
    }
    CHECK_INT_EQ(n, 2);
    for (size_t i = 0; i < n; i++) {
        m = json_array_get(json_object_get(o.out, "Messages"), i);
        const char *body = json_string_value(json_object_get(m, "Body"));
        receipts[i] = json_string_value(json_object_get(m, "ReceiptHandle"));
        CHECK(receipts[i] != NULL && body != NULL);
        seen_json = seen_json || strcmp(body, "{\"a\":1}") == 0;
        seen_b64 = seen_b64 || strcmp(body, "eyJhIjoyfQ==") == 0;
    }
    CHECK(seen_json && seen_b64);
    {
        struct outcome d;
        memset(&d, 0, sizeof(d));
        CHECK_OK(aws_sqs_delete_batch(q, receipts, n, on_result, &d, &e), &e);
        CHECK(wait_done(&f, &d) == 0);
        CHECK_OK(d.err.code == ERRC_OK ? 0 : -1, &d.err);
        CHECK_INT_EQ(json_array_size(json_object_get(d.out, "Successful")), 2);
        CHECK_INT_EQ(json_array_size(json_object_get(d.out, "Failed")), 0);
        outcome_reset(&d);
    }
    /* gone for good: not back after the 2 s visibility timeout */
    outcome_reset(&o);
    CHECK_OK(aws_sqs_receive(q, 10, 3, on_result, &o, &e), &e);
    CHECK(wait_done(&f, &o) == 0);
    CHECK_INT_EQ(json_array_size(json_object_get(o.out, "Messages")), 0);
out:
    outcome_reset(&o);
    aws_sqs_free(q);
    fixture_release(&f);
    return rc;
}

static int test_bad_input(void)
{
    int rc = 0;
    struct fixture f;
    struct err e = ERR_INIT;
    struct aws_sqs *q = NULL;
    struct outcome o;
    const char *none[1] = { "" };
    memset(&o, 0, sizeof(o));
    if (!have_sim()) {
        return TT_SKIP;
    }
    CHECK(fixture_init(&f, "badinput", NULL) == 0);
    CHECK(client(&f, "https://sqs.eu-west-1.amazonaws.com/123/q", &e) == NULL);
    CHECK_STR_CONTAINS(e.msg, "12-digit account id");
    err_clear(&e);
    q = client(&f, f.qurl, &e);
    CHECK(q != NULL);
    CHECK(aws_sqs_receive(q, 11, 1, on_result, &o, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "MaxNumberOfMessages must be 1..10");
    err_clear(&e);
    CHECK(aws_sqs_receive(q, 1, 21, on_result, &o, &e) != 0);
    err_clear(&e);
    CHECK(aws_sqs_delete_batch(q, none, 0, on_result, &o, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "1 to 10 entries");
    err_clear(&e);
    CHECK(aws_sqs_delete_batch(q, none, 1, on_result, &o, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "has no receipt handle");
    event_base_loop(f.base, EVLOOP_NONBLOCK);
    CHECK(!o.done); /* failed synchronously: the callback never runs */
out:
    aws_sqs_free(q);
    fixture_release(&f);
    return rc;
}

static int test_errors(void)
{
    int rc = 0;
    struct fixture f, fw;
    struct err e = ERR_INIT;
    struct aws_sqs *q = NULL, *missing = NULL, *wrong = NULL;
    struct outcome o;
    char url[600];
    static const char *const bad_env[] = { "AWS_ACCESS_KEY_ID=AKIDEXAMPLE",
                                           "AWS_SECRET_ACCESS_KEY=not-the-secret",
                                           "AWS_REGION=us-east-1", NULL };
    memset(&o, 0, sizeof(o));
    memset(&fw, 0, sizeof(fw));
    if (!have_sim()) {
        return TT_SKIP;
    }
    CHECK(fixture_init(&f, "errors", NULL) == 0);
    /* a queue that does not exist: NOT_FOUND naming the queue, not retried */
    snprintf(url, sizeof(url), "%.*s/nope", (int)(strrchr(f.qurl, '/') - f.qurl), f.qurl);
    missing = client(&f, url, &e);
    CHECK(missing != NULL);
    CHECK_OK(aws_sqs_receive(missing, 10, 0, on_result, &o, &e), &e);
    CHECK(wait_done(&f, &o) == 0);
    CHECK_INT_EQ(o.err.code, ERRC_NOT_FOUND);
    CHECK_STR_CONTAINS(o.err.msg, "QueueDoesNotExist");
    CHECK_STR_CONTAINS(o.err.msg, "/nope");
    CHECK_INT_EQ(o.attempts, 1);
    outcome_reset(&o);
    /* wrong secret: DENIED */
    CHECK(fixture_init(&fw, "errors", bad_env) == 0);
    wrong = client(&fw, fw.qurl, &e);
    CHECK(wrong != NULL);
    CHECK_OK(aws_sqs_receive(wrong, 1, 0, on_result, &o, &e), &e);
    CHECK(wait_done(&fw, &o) == 0);
    CHECK_INT_EQ(o.err.code, ERRC_DENIED);
    CHECK_STR_CONTAINS(o.err.msg, "InvalidSignatureException");
    outcome_reset(&o);
    /* two 503s then success: retried (standard mode, 3 attempts) */
    q = client(&f, f.qurl, &e);
    CHECK(q != NULL);
    CHECK(sim_config("{\"next_faults\": {\"sqs:ReceiveMessage\": [503, 500]}}") == 0);
    CHECK_OK(aws_sqs_receive(q, 1, 0, on_result, &o, &e), &e);
    CHECK(wait_done(&f, &o) == 0);
    CHECK_OK(o.err.code == ERRC_OK ? 0 : -1, &o.err);
    CHECK_INT_EQ(o.attempts, 3);
    outcome_reset(&o);
    /* three: UNAVAILABLE after 3 attempts */
    CHECK(sim_config("{\"next_faults\": {\"sqs:ReceiveMessage\": [503, 503, 503]}}") == 0);
    CHECK_OK(aws_sqs_receive(q, 1, 0, on_result, &o, &e), &e);
    CHECK(wait_done(&f, &o) == 0);
    CHECK_INT_EQ(o.err.code, ERRC_UNAVAILABLE);
    CHECK_STR_CONTAINS(o.err.msg, "after 3 attempts");
    CHECK_INT_EQ(o.attempts, 3);
    outcome_reset(&o);
    /* throttled once: retried */
    CHECK(sim_config("{\"next_faults\": {\"sqs:ReceiveMessage\": [\"throttle\"]}}") == 0);
    CHECK_OK(aws_sqs_receive(q, 1, 0, on_result, &o, &e), &e);
    CHECK(wait_done(&f, &o) == 0);
    CHECK_OK(o.err.code == ERRC_OK ? 0 : -1, &o.err);
    CHECK_INT_EQ(o.attempts, 2);
out:
    outcome_reset(&o);
    aws_sqs_free(q);
    aws_sqs_free(missing);
    aws_sqs_free(wrong);
    fixture_release(&fw);
    fixture_release(&f);
    return rc;
}

/* The call engine's rules as SQS sees them (aws/call.c), the same as IoT's: an expired token
 * refreshes the credentials and retries once; a request signed an hour off the service's clock is
 * signed again at the service's time and the correction is kept; timeouts and truncated bodies
 * are retried, a malformed body is not; a 404 is NOT_FOUND (was INVALID), any other 4xx that is
 * not retried INVALID, a refusal code DENIED. */
static int test_engine_rules(void)
{
    int rc = 0;
    struct fixture f;
    struct err e = ERR_INIT;
    struct aws_sqs *q = NULL;
    struct aws_sqs_opts so;
    struct outcome o;
    uint64_t fetches;
    memset(&o, 0, sizeof(o));
    memset(&so, 0, sizeof(so));
    if (!have_sim()) {
        return TT_SKIP;
    }
    CHECK(fixture_init(&f, "engine", NULL) == 0);
    so.base = f.base;
    so.queue_url = f.qurl;
    so.region = f.cfg.region;
    so.credp = f.credp;
    so.timeout_ms = 500;
    CHECK((q = aws_sqs_new(&so, &e)) != NULL);
#define RECEIVE(faults)                                                                    \
    do {                                                                                   \
        outcome_reset(&o);                                                                 \
        CHECK(sim_config("{\"next_faults\": {\"sqs:ReceiveMessage\": " faults "}}") == 0); \
        CHECK_OK(aws_sqs_receive(q, 1, 0, on_result, &o, &e), &e);                         \
        CHECK(wait_done(&f, &o) == 0);                                                     \
    } while (0)
    fetches = aws_credp_fetches(f.credp);
    RECEIVE("[\"expired\"]");
    CHECK_OK(o.err.code == ERRC_OK ? 0 : -1, &o.err);
    CHECK_INT_EQ(o.attempts, 2);
    CHECK(aws_credp_fetches(f.credp) > fetches);
    RECEIVE("[\"expired\", \"expired\"]");
    CHECK_INT_EQ(o.err.code, ERRC_DENIED);
    CHECK_STR_EQ(o.code, "ExpiredToken");
    CHECK_INT_EQ(o.attempts, 2);
    CHECK(sim_config("{\"faults\": {\"timeout_ms\": 1500}}") == 0);
    RECEIVE("[\"timeout\"]");
    CHECK_OK(o.err.code == ERRC_OK ? 0 : -1, &o.err);
    CHECK_INT_EQ(o.attempts, 2);
    RECEIVE("[\"truncated\"]");
    CHECK_OK(o.err.code == ERRC_OK ? 0 : -1, &o.err);
    CHECK_INT_EQ(o.attempts, 2);
    RECEIVE("[\"malformed\"]");
    CHECK_INT_EQ(o.err.code, ERRC_UNAVAILABLE);
    CHECK_STR_CONTAINS(o.err.msg, "malformed response (HTTP 200)");
    CHECK_INT_EQ(o.attempts, 1);
    RECEIVE("[\"http:404:UnknownOperationException\"]");
    CHECK_INT_EQ(o.err.code, ERRC_NOT_FOUND);
    CHECK_INT_EQ(o.attempts, 1);
    RECEIVE("[\"http:413:RequestEntityTooLarge\"]");
    CHECK_INT_EQ(o.err.code, ERRC_INVALID);
    CHECK_INT_EQ(o.attempts, 1);
    RECEIVE("[\"http:400:AccessDeniedException\"]");
    CHECK_INT_EQ(o.err.code, ERRC_DENIED);
    /* the service's clock an hour ahead, then back */
    CHECK(sim_config("{\"clock_offset_s\": 3600}") == 0);
    RECEIVE("[]");
    CHECK_OK(o.err.code == ERRC_OK ? 0 : -1, &o.err);
    CHECK_INT_EQ(o.attempts, 2);
    RECEIVE("[]");
    CHECK_INT_EQ(o.attempts, 1);
    CHECK(sim_config("{\"clock_offset_s\": 0}") == 0);
    RECEIVE("[]");
    CHECK_OK(o.err.code == ERRC_OK ? 0 : -1, &o.err);
    CHECK_INT_EQ(o.attempts, 2);
#undef RECEIVE
out:
    sim_config("{\"clock_offset_s\": 0}");
    outcome_reset(&o);
    aws_sqs_free(q);
    fixture_release(&f);
    return rc;
}

static int test_cancel(void)
{
    int rc = 0;
    struct fixture f;
    struct err e = ERR_INIT;
    struct aws_sqs *q = NULL;
    struct outcome o, o2;
    int64_t t0;
    struct timeval tv = { 0, 300000 };
    memset(&o, 0, sizeof(o));
    memset(&o2, 0, sizeof(o2));
    if (!have_sim()) {
        return TT_SKIP;
    }
    CHECK(fixture_init(&f, "cancel", NULL) == 0);
    q = client(&f, f.qurl, &e);
    CHECK(q != NULL);
    CHECK_OK(aws_sqs_receive(q, 10, 20, on_result, &o, &e), &e);
    /* a second call still waiting for its first step when the client goes */
    CHECK_OK(aws_sqs_receive(q, 10, 20, on_result, &o2, &e), &e);
    event_base_loopexit(f.base, &tv);
    event_base_dispatch(f.base); /* both long polls are in flight now */
    CHECK(!o.done && !o2.done);
    t0 = time_now_ms();
    aws_sqs_free(q);
    q = NULL;
    CHECK(o.done && o2.done);
    CHECK_INT_EQ(o.err.code, ERRC_CANCELED);
    CHECK_INT_EQ(o2.err.code, ERRC_CANCELED);
    CHECK(time_now_ms() - t0 < 1000);
out:
    outcome_reset(&o);
    outcome_reset(&o2);
    aws_sqs_free(q);
    fixture_release(&f);
    return rc;
}

/* Where requests go: the queue's region's SQS endpoint (FIPS, dual-stack, China), a configured
 * SQS endpoint, or a non-AWS queue host. No request is sent. */
static int test_endpoint(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    static const struct {
        const char *env1, *env2, *url, *want, *source;
    } cases[] = {
        { "AWS_USE_FIPS_ENDPOINT=true", "X=1", "https://sqs.us-east-2.amazonaws.com/123456789012/q",
          "https://sqs-fips.us-east-2.amazonaws.com", "FIPS endpoint" },
        { "AWS_USE_FIPS_ENDPOINT=true", "AWS_USE_DUALSTACK_ENDPOINT=true",
          "https://us-west-2.queue.amazonaws.com/123456789012/q",
          "https://sqs-fips.us-west-2.api.aws", "FIPS dual-stack endpoint" },
        { "AWS_USE_FIPS_ENDPOINT=true", "X=1",
          "https://sqs.us-gov-west-1.amazonaws.com/123456789012/q",
          "https://sqs.us-gov-west-1.amazonaws.com", "FIPS endpoint" },
        { "X=1", "X=2", "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q",
          "https://sqs.cn-north-1.amazonaws.com.cn", "default endpoint" },
        { "AWS_ENDPOINT_URL_SQS=http://127.0.0.1:4566/", "AWS_USE_FIPS_ENDPOINT=true",
          "https://sqs.eu-west-1.amazonaws.com/123456789012/q", "http://127.0.0.1:4566",
          "AWS_ENDPOINT_URL_SQS" },
        { "AWS_USE_FIPS_ENDPOINT=true", "X=1", "http://127.0.0.1:9324/123456789012/q",
          "http://127.0.0.1:9324", "the queue URL's host" },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct event_base *base = event_base_new();
        struct aws_config cfg;
        struct aws_transport *t = NULL;
        struct aws_credp *p = NULL;
        struct aws_sqs *q = NULL;
        struct aws_sqs_opts o;
        const char *source = NULL;
        const char *env[] = {
            "HOME=/nonexistent", "AWS_REGION=us-east-1", "AWS_CONFIG_FILE=/nonexistent",
            cases[i].env1,       cases[i].env2,          NULL
        };
        aws_config_init(&cfg);
        memset(&o, 0, sizeof(o));
        CHECK(base != NULL);
        CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
        CHECK((t = aws_transport_new(base, &e)) != NULL);
        CHECK((p = aws_credp_new(t, &cfg, env, NULL, &e)) != NULL);
        o.base = base;
        o.queue_url = cases[i].url;
        o.region = cfg.region;
        o.credp = p;
        CHECK((q = aws_sqs_new(&o, &e)) != NULL);
        CHECK_STR_EQ(aws_sqs_endpoint(q, &source), cases[i].want);
        CHECK_STR_EQ(source, cases[i].source);
        aws_sqs_free(q);
        aws_credp_free(p);
        aws_transport_free(t);
        aws_config_release(&cfg);
        event_base_free(base);
    }
out:
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "url_ok", test_url_ok },       { "url_bad", test_url_bad },
        { "roundtrip", test_roundtrip }, { "bad_input", test_bad_input },
        { "errors", test_errors },       { "cancel", test_cancel },
        { "endpoint", test_endpoint },   { "engine_rules", test_engine_rules },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
