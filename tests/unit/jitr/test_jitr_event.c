/*
 * The intake's bodies as AWS sends them (jitr_events_parse): a single event with
 * "certificateRegistrationTimestamp": null, without the optional members, with members we do not
 * know (sourceIp); the timestamps read leniently and the required members strictly; batches (a
 * JSON array of up to 10, as an HTTP rule action with batching enabled sends them) where each
 * element is judged alone — an element that can never be valid (not an object, a duplicate
 * member, too large, a wrong member, a foreign CA) is refused with its reason while the others
 * are kept — and the bodies refused whole (empty array, more than 10, an array inside the array,
 * above 131,072 bytes, not JSON). ARNs of any partition, jitr.destination_arns and which
 * destinations jitrd confirms. One event alone (jitr_event_parse) and the destination
 * confirmation message.
 */
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr.h"
#include "tests/harness/tt.h"

#define CA_ID   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define CERT_A  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define FOREIGN "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"

static bool known_ca(void *arg, const char *id)
{
    (void)arg;
    return strcmp(id, CA_ID) == 0;
}

/* The 64-hex certificateId of device i. */
static void cert_id(int i, char out[65])
{
    snprintf(out, 65, "%064x", i + 1);
}

/* One event as AWS documents it, with `extra` members appended (",\"k\":v" or ""). */
static void add_event(struct buf *b, int i, const char *ca, const char *extra)
{
    char id[65];
    cert_id(i, id);
    buf_addf(b, "{\"certificateId\":\"%s\",\"caCertificateId\":\"%s\",\"timestamp\":1795671724146,"
                "\"certificateStatus\":\"PENDING_ACTIVATION\",\"awsAccountId\":\"123456789012\"%s}",
             id, ca, extra);
}

static int parse(const struct buf *b, struct jitr_events *out, struct err *e)
{
    return jitr_events_parse((const uint8_t *)b->data, b->len, known_ca, NULL, out, e);
}

static int test_single_as_aws_sends_it(void)
{
    static const char *const extras[] = {
        ",\"certificateRegistrationTimestamp\":null",
        ",\"certificateRegistrationTimestamp\":null,\"sourceIp\":\"198.51.100.7\"",
        ",\"sourceIp\":\"2001:db8::7\",\"future\":{\"nested\":[1,[2]]},\"flag\":true",
        "", /* no certificateRegistrationTimestamp at all */
    };
    int rc = 0;
    struct buf b = BUF_INIT;
    struct jitr_events evs;
    char id[65];
    cert_id(0, id);
    for (size_t i = 0; i < ARRAY_LEN(extras); i++) {
        struct err e = ERR_INIT;
        buf_reset(&b);
        add_event(&b, 0, CA_ID, extras[i]);
        CHECK_OK(parse(&b, &evs, &e), &e);
        CHECK(!evs.batch);
        CHECK_INT_EQ(evs.n, 1);
        CHECK_INT_EQ(evs.nvalid, 1);
        CHECK_INT_EQ(evs.err[0].code, ERRC_OK);
        CHECK_STR_EQ(evs.ev[0].cert_id, id);
        CHECK_STR_EQ(evs.ev[0].account, "123456789012");
        CHECK_INT_EQ(evs.ev[0].timestamp_ms, 1795671724146LL);
        CHECK_INT_EQ(evs.ev[0].registered_ms, 0);
        /* the single-event API agrees */
        {
            struct jitr_event ev;
            CHECK_OK(jitr_event_parse((const uint8_t *)b.data, b.len, known_ca, NULL, &ev, &e),
                     &e);
            CHECK_STR_EQ(ev.cert_id, id);
        }
    }
    /* without timestamp either: only the four members the flow needs */
    buf_reset(&b);
    buf_addf(&b, "{\"certificateId\":\"%s\",\"caCertificateId\":\"" CA_ID "\","
                 "\"certificateStatus\":\"PENDING_ACTIVATION\",\"awsAccountId\":\"123456789012\"}",
             id);
    {
        struct err e = ERR_INIT;
        CHECK_OK(parse(&b, &evs, &e), &e);
        CHECK_INT_EQ(evs.nvalid, 1);
        CHECK_INT_EQ(evs.ev[0].timestamp_ms, 0);
    }
out:
    buf_release(&b);
    return rc;
}

static int test_lenient_timestamps(void)
{
    static const struct {
        const char *value;
        long long ms;
    } cases[] = {
        { "\"1795671724001\"", 1795671724001LL },
        { "1795671724001", 1795671724001LL },
        { "1.5e3", 1500 },
        { "null", 0 },
        { "\"soon\"", 0 },
        { "\"2026-12-01T10:00:00Z\"", 0 },
        { "[]", 0 },
        { "{}", 0 },
        { "-5", 0 },
        { "\"-5\"", 0 },
        { "1e300", 0 },
        { "\"99999999999999999999999\"", 0 },
        { "false", 0 },
    };
    int rc = 0;
    struct buf b = BUF_INIT, x = BUF_INIT;
    struct jitr_events evs;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct err e = ERR_INIT;
        buf_reset(&b);
        buf_reset(&x);
        buf_addf(&x, ",\"certificateRegistrationTimestamp\":%s", cases[i].value);
        add_event(&b, 0, CA_ID, x.data);
        CHECK_OK(parse(&b, &evs, &e), &e);
        CHECK_INT_EQ(evs.nvalid, 1);
        if (evs.ev[0].registered_ms != cases[i].ms) {
            TT_FAIL("certificateRegistrationTimestamp %s: %lld, not %lld", cases[i].value,
                    (long long)evs.ev[0].registered_ms, cases[i].ms);
        }
    }
out:
    buf_release(&b);
    buf_release(&x);
    return rc;
}

static int test_required_strict(void)
{
    static const struct {
        const char *body;
        enum err_code code;
        const char *msg;
    } cases[] = {
        { "{\"certificateId\":null,\"caCertificateId\":\"" CA_ID "\","
          "\"certificateStatus\":\"PENDING_ACTIVATION\",\"awsAccountId\":\"123456789012\"}",
          ERRC_INVALID, "'certificateId' is missing" },
        { "{\"certificateId\":\"" FOREIGN "\",\"caCertificateId\":null,"
          "\"certificateStatus\":\"PENDING_ACTIVATION\",\"awsAccountId\":\"123456789012\"}",
          ERRC_INVALID, "'caCertificateId' is missing" },
        { "{\"certificateId\":\"" FOREIGN "\",\"caCertificateId\":\"" CA_ID "\","
          "\"certificateStatus\":null,\"awsAccountId\":\"123456789012\"}",
          ERRC_INVALID, "'certificateStatus' is missing" },
        { "{\"certificateId\":\"" FOREIGN "\",\"caCertificateId\":\"" CA_ID "\","
          "\"certificateStatus\":\"PENDING_ACTIVATION\",\"awsAccountId\":null}",
          ERRC_INVALID, "'awsAccountId' is missing" },
        { "{\"certificateId\":\"" FOREIGN "\",\"caCertificateId\":\"" CA_ID "\","
          "\"certificateStatus\":\"PENDING_ACTIVATION\",\"awsAccountId\":\"12345678901x\"}",
          ERRC_INVALID, "'awsAccountId' must be a string of 12 digits" },
        { "{\"certificateId\":\"" FOREIGN "\",\"caCertificateId\":\"" CA_ID "\","
          "\"certificateStatus\":\"PENDING_ACTIVATION\",\"awsAccountId\":\"1234567890123\"}",
          ERRC_INVALID, "'awsAccountId' must be a string of 12 digits" },
        { "{\"certificateId\":\"" FOREIGN "\",\"caCertificateId\":\"" CA_ID "\","
          "\"certificateStatus\":\"pending_activation\",\"awsAccountId\":\"123456789012\"}",
          ERRC_INVALID, "is not PENDING_ACTIVATION" },
        { "{\"certificateId\":\"" FOREIGN "0\",\"caCertificateId\":\"" CA_ID "\","
          "\"certificateStatus\":\"PENDING_ACTIVATION\",\"awsAccountId\":\"123456789012\"}",
          ERRC_INVALID, "64 hex digits (got 65 characters)" },
        { "{\"certificateId\":\"" FOREIGN "\",\"caCertificateId\":\"" FOREIGN "\","
          "\"certificateStatus\":\"PENDING_ACTIVATION\",\"awsAccountId\":\"123456789012\"}",
          ERRC_DENIED, "is not one of our CAs" },
    };
    int rc = 0;
    struct jitr_events evs;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct err e = ERR_INIT;
        /* the body is readable: the verdict is the event's */
        CHECK_OK(jitr_events_parse((const uint8_t *)cases[i].body, strlen(cases[i].body),
                                   known_ca, NULL, &evs, &e),
                 &e);
        CHECK_INT_EQ(evs.n, 1);
        CHECK_INT_EQ(evs.nvalid, 0);
        CHECK_INT_EQ(evs.err[0].code, cases[i].code);
        CHECK_STR_CONTAINS(evs.err[0].msg, cases[i].msg);
        CHECK_STR_EQ(evs.ev[0].cert_id, "");
    }
out:
    return rc;
}

static int test_batch_of_ten(void)
{
    int rc = 0;
    struct buf b = BUF_INIT;
    struct jitr_events evs;
    struct err e = ERR_INIT;
    buf_addstr(&b, " [\n");
    for (int i = 0; i < JITR_BATCH_MAX; i++) {
        add_event(&b, i, CA_ID,
                  i % 2 ? ",\"certificateRegistrationTimestamp\":null,\"sourceIp\":\"192.0.2.1\""
                        : ",\"certificateRegistrationTimestamp\":\"1795671724001\"");
        buf_addstr(&b, i + 1 < JITR_BATCH_MAX ? " ,\n" : "\n");
    }
    buf_addstr(&b, "]\n");
    CHECK_OK(parse(&b, &evs, &e), &e);
    CHECK(evs.batch);
    CHECK_INT_EQ(evs.n, 10);
    CHECK_INT_EQ(evs.nvalid, 10);
    for (int i = 0; i < JITR_BATCH_MAX; i++) {
        char id[65];
        cert_id(i, id);
        CHECK_STR_EQ(evs.ev[i].cert_id, id);
        CHECK_INT_EQ(evs.err[i].code, ERRC_OK);
        CHECK_INT_EQ(evs.ev[i].registered_ms, i % 2 ? 0 : 1795671724001LL);
    }
    /* an array of one is a batch too */
    buf_reset(&b);
    buf_addch(&b, '[');
    add_event(&b, 3, CA_ID, "");
    buf_addch(&b, ']');
    CHECK_OK(parse(&b, &evs, &e), &e);
    CHECK(evs.batch);
    CHECK_INT_EQ(evs.nvalid, 1);
    /* but the single-event API wants an object */
    {
        struct jitr_event ev;
        CHECK(jitr_event_parse((const uint8_t *)b.data, b.len, known_ca, NULL, &ev, &e) != 0);
        CHECK_STR_CONTAINS(e.msg, "must be a JSON object");
    }
out:
    buf_release(&b);
    return rc;
}

static int test_batch_mixed(void)
{
    int rc = 0;
    struct buf b = BUF_INIT, pad = BUF_INIT;
    struct jitr_events evs;
    struct err e = ERR_INIT;
    char id0[65], id6[65];
    for (int i = 0; i < JITR_EVENT_MAX; i++) {
        buf_addch(&pad, 'x');
    }
    buf_addch(&b, '[');
    add_event(&b, 0, CA_ID, ",\"certificateRegistrationTimestamp\":null"); /* 0: good */
    buf_addstr(&b, ",5,");                                                   /* 1: a number */
    add_event(&b, 2, CA_ID, ",\"awsAccountId\":\"123456789012\"");        /* 2: twice */
    buf_addch(&b, ',');
    add_event(&b, 3, FOREIGN, "");                                         /* 3: foreign CA */
    buf_addstr(&b, ",{\"certificateId\":\"" CA_ID "\"},");                 /* 4: incomplete */
    buf_addstr(&b, "null,");                                               /* 5: null */
    add_event(&b, 6, CA_ID, ",\"sourceIp\":\"203.0.113.9\"");             /* 6: good */
    buf_addch(&b, ',');
    buf_addf(&b, "{\"padding\":\"%s\"}", pad.data); /* 7: over JITR_EVENT_MAX */
    buf_addstr(&b, ",\"string\"]");                 /* 8: a string */
    CHECK_OK(parse(&b, &evs, &e), &e);
    CHECK(evs.batch);
    CHECK_INT_EQ(evs.n, 9);
    CHECK_INT_EQ(evs.nvalid, 2);
    cert_id(0, id0);
    cert_id(6, id6);
    CHECK_STR_EQ(evs.ev[0].cert_id, id0);
    CHECK_STR_EQ(evs.ev[6].cert_id, id6);
    CHECK_INT_EQ(evs.err[0].code, ERRC_OK);
    CHECK_INT_EQ(evs.err[6].code, ERRC_OK);
    CHECK_INT_EQ(evs.err[1].code, ERRC_INVALID);
    CHECK_STR_CONTAINS(evs.err[1].msg, "must be a JSON object");
    CHECK_INT_EQ(evs.err[2].code, ERRC_INVALID);
    CHECK_STR_CONTAINS(evs.err[2].msg, "a member appears twice");
    CHECK_INT_EQ(evs.err[3].code, ERRC_DENIED);
    CHECK_STR_CONTAINS(evs.err[3].msg, "not one of our CAs");
    CHECK_INT_EQ(evs.err[4].code, ERRC_INVALID);
    CHECK_STR_CONTAINS(evs.err[4].msg, "'caCertificateId' is missing");
    CHECK_STR_CONTAINS(evs.err[5].msg, "must be a JSON object");
    CHECK_STR_CONTAINS(evs.err[7].msg, "larger than 8192");
    CHECK_STR_CONTAINS(evs.err[8].msg, "must be a JSON object");
    for (size_t i = 1; i < 9; i++) {
        if (i != 6) {
            CHECK_STR_EQ(evs.ev[i].cert_id, ""); /* nothing produced for a refused one */
        }
    }
    /* the same oversized event alone is a 413 */
    buf_reset(&b);
    buf_addf(&b, "{\"padding\":\"%s\"}", pad.data);
    CHECK(parse(&b, &evs, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_TOO_LARGE);
    CHECK_INT_EQ(evs.n, 0);
out:
    buf_release(&b);
    buf_release(&pad);
    return rc;
}

static int test_bodies_refused(void)
{
    static const struct {
        const char *body;
        enum err_code code;
        const char *msg;
    } cases[] = {
        { "", ERRC_INVALID, "empty body" },
        { " \r\n\t", ERRC_INVALID, "empty body" },
        { "[]", ERRC_INVALID, "empty array" },
        { "[ \n ]", ERRC_INVALID, "empty array" },
        { "[[{\"certificateId\":\"x\"}]]", ERRC_INVALID, "element 1 is an array" },
        { "[{\"a\":1},[]]", ERRC_INVALID, "element 2 is an array" },
        { "[{\"a\":1}", ERRC_INVALID, "the array is not closed" },
        { "[{\"a\":1},", ERRC_INVALID, "the array is not closed" },
        { "[{\"a\":1} {\"b\":2}]", ERRC_INVALID, "',' or ']' expected after element 1" },
        { "[{\"a\":1},]", ERRC_INVALID, "not JSON" },
        { "[{\"a\":1}] x", ERRC_INVALID, "data after the array" },
        { "[{\"a\":1}]]", ERRC_INVALID, "data after the array" },
        { "[{\"a\":}]", ERRC_INVALID, "not JSON" },
        { "[\"\\u0000\"]", ERRC_INVALID, "not JSON" },
        { "{\"a\":1} x", ERRC_INVALID, "not JSON" },
        { "{\"a\":1,\"a\":1}", ERRC_INVALID, "not JSON" },
        { "5", ERRC_INVALID, "must be a JSON object or an array of them" },
        { "\"event\"", ERRC_INVALID, "must be a JSON object or an array of them" },
        { "null", ERRC_INVALID, "must be a JSON object or an array of them" },
        { "garbage", ERRC_INVALID, "not JSON" },
    };
    int rc = 0;
    struct jitr_events evs;
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct err e = ERR_INIT;
        if (jitr_events_parse((const uint8_t *)cases[i].body, strlen(cases[i].body), known_ca,
                              NULL, &evs, &e) == 0) {
            TT_FAIL("accepted '%s'", cases[i].body);
        }
        CHECK_INT_EQ(e.code, cases[i].code);
        CHECK_STR_CONTAINS(e.msg, cases[i].msg);
        CHECK_INT_EQ(evs.n, 0);
        CHECK_INT_EQ(evs.nvalid, 0);
    }
    /* 11 events */
    {
        struct err e = ERR_INIT;
        buf_addch(&b, '[');
        for (int i = 0; i < JITR_BATCH_MAX + 1; i++) {
            add_event(&b, i, CA_ID, "");
            buf_addch(&b, i < JITR_BATCH_MAX ? ',' : ']');
        }
        CHECK(parse(&b, &evs, &e) != 0);
        CHECK_INT_EQ(e.code, ERRC_TOO_LARGE);
        CHECK_STR_CONTAINS(e.msg, "more than 10 events");
        CHECK_INT_EQ(evs.n, 0);
        CHECK_STR_EQ(evs.ev[0].cert_id, "");
    }
out:
    buf_release(&b);
    return rc;
}

/* 131,072 bytes is the largest batch AWS sends: accepted; one byte more is refused. */
static int test_batch_byte_limit(void)
{
    int rc = 0;
    struct buf b = BUF_INIT;
    struct jitr_events evs;
    struct err e = ERR_INIT;
    buf_addch(&b, '[');
    for (int i = 0; i < JITR_BATCH_MAX; i++) {
        add_event(&b, i, CA_ID, "");
        if (i + 1 < JITR_BATCH_MAX) {
            buf_addch(&b, ',');
        }
    }
    while (b.len < JITR_BODY_MAX - 1) {
        buf_addch(&b, ' ');
    }
    buf_addch(&b, ']');
    CHECK_INT_EQ(b.len, JITR_BODY_MAX);
    CHECK_OK(parse(&b, &evs, &e), &e);
    CHECK_INT_EQ(evs.nvalid, 10);
    buf_addch(&b, '\n');
    CHECK(parse(&b, &evs, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_TOO_LARGE);
    CHECK_STR_CONTAINS(e.msg, "larger than 131072");
out:
    buf_release(&b);
    return rc;
}

/* ---- ARNs and destinations ------------------------------------------------------------------ */

#define DEST_US  "arn:aws:iot:us-east-1:123456789012:ruledestination/http/1a2b"
#define DEST_CN  "arn:aws-cn:iot:cn-north-1:123456789012:ruledestination/http/3c4d"
#define DEST_GOV "arn:aws-us-gov:iot:us-gov-west-1:123456789012:ruledestination/http/5e"

static int test_arns(void)
{
    static const char *const good[][4] = {
        { DEST_US, "aws", "us-east-1", "123456789012" },
        { DEST_CN, "aws-cn", "cn-north-1", "123456789012" },
        { DEST_GOV, "aws-us-gov", "us-gov-west-1", "123456789012" },
        { "arn:aws:iot:eu-west-1:000000000000:ruledestination/vpc/x:y", "aws", "eu-west-1",
          "000000000000" },
    };
    static const char *const bad[][2] = {
        { "arn:aws:iot:cn-north-1:123456789012:ruledestination/http/1", "is in partition aws-cn" },
        { "arn:aws-cn:iot:us-east-1:123456789012:ruledestination/http/1", "is in partition aws," },
        { "arn:aws:iot:us-east-1:123456789012:thing/dev-1", "not the ARN of an AWS IoT topic" },
        { "arn:aws:s3:::bucket", "not the ARN of an AWS IoT topic" },
        { "arn:aws:iot::123456789012:ruledestination/http/1", "not the ARN of an AWS IoT topic" },
        { "arn:aws:iot:us-east-1::ruledestination/http/1", "not the ARN of an AWS IoT topic" },
        { "arn:aws:iot:us-east-1:12345:ruledestination/http/1", "is not an ARN" },
        { "arn:aws:iot:us-east-1:12345678901x:ruledestination/http/1", "must be 12 digits" },
        { "arn:gcp:iot:us-east-1:123456789012:ruledestination/http/1", "is not an ARN" },
        { "arn:AWS:iot:us-east-1:123456789012:ruledestination/http/1", "is not an ARN" },
        { "urn:aws:iot:us-east-1:123456789012:ruledestination/http/1", "is not an ARN" },
        { "arn:aws:iot:us-east-1:123456789012", "is not an ARN" },
        { "arn:aws:iot:us-east-1:123456789012:", "is not an ARN" },
        { "arn:aws:iot:us-east-1:123456789012:ruledestination/a b", "printable without spaces" },
    };
    int rc = 0;
    struct jitr_arn a;
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        struct err e = ERR_INIT;
        CHECK_OK(jitr_destination_arn_parse(good[i][0], &a, &e), &e);
        CHECK_STR_EQ(a.partition, good[i][1]);
        CHECK_STR_EQ(a.service, "iot");
        CHECK_STR_EQ(a.region, good[i][2]);
        CHECK_STR_EQ(a.account, good[i][3]);
        CHECK(str_has_prefix(a.resource, "ruledestination/"));
    }
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct err e = ERR_INIT;
        if (jitr_destination_arn_parse(bad[i][0], &a, &e) == 0) {
            TT_FAIL("accepted '%s'", bad[i][0]);
        }
        CHECK_STR_CONTAINS(e.msg, bad[i][1]);
        CHECK_STR_EQ(a.region, "");
    }
    /* generic ARNs of other services still parse */
    {
        struct err e = ERR_INIT;
        CHECK_OK(jitr_arn_parse("arn:aws:s3:::bucket/key", &a, &e), &e);
        CHECK_STR_EQ(a.service, "s3");
        CHECK_STR_EQ(a.region, "");
        CHECK_STR_EQ(a.resource, "bucket/key");
    }
    /* the partitions jitrd knows (aws/endpoint.c) and only those */
    {
        struct err e = ERR_INIT;
        CHECK_OK(jitr_destination_arn_parse(
                     "arn:aws-iso-b:iot:us-isob-east-1:123456789012:ruledestination/http/1", &a, &e),
                 &e);
        CHECK(jitr_destination_arn_parse(
                  "arn:aws-moon:iot:us-east-1:123456789012:ruledestination/http/1", &a, &e) != 0);
        CHECK_STR_CONTAINS(e.msg, "is not an ARN");
    }
out:
    return rc;
}

static int test_destination_arns_config(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    char **arns = NULL;
    size_t n = 9;
    CHECK_OK(jitr_destination_arns_parse("", &arns, &n, &e), &e);
    CHECK_INT_EQ(n, 0);
    CHECK(arns == NULL);
    CHECK_OK(jitr_destination_arns_parse(" " DEST_US " ,," DEST_CN "\t,", &arns, &n, &e), &e);
    CHECK_INT_EQ(n, 2);
    CHECK_STR_EQ(arns[0], DEST_US);
    CHECK_STR_EQ(arns[1], DEST_CN);
    jitr_destination_arns_free(arns, n);
    arns = NULL;
    CHECK(jitr_destination_arns_parse(DEST_US ",arn:aws:iot:us-east-1:123456789012:thing/x",
                                      &arns, &n, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "thing/x' is not the ARN of an AWS IoT topic rule destination");
    CHECK_INT_EQ(n, 0);
    CHECK(arns == NULL);
out:
    return rc;
}

static int confirm_of(const char *arn, struct jitr_confirm *c, struct err *e)
{
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"arn\":\"%s\",\"confirmationToken\":\"AYA/tok+en=\",\"enableUrl\":\"https://"
             "iot.example/confirmdestination/AYA/tok+en=\",\"messageType\":"
             "\"DestinationConfirmation\"}",
             arn);
    return jitr_confirm_parse((const uint8_t *)body, strlen(body), c, e);
}

static int test_destination_check(void)
{
    static const char *const accounts[] = { "", "123456789012", "210987654321" };
    static const char *const list[] = { DEST_CN, DEST_GOV };
    int rc = 0;
    struct jitr_confirm c;
    struct err e = ERR_INIT;
    struct jitr_dest_policy p = { NULL, 0, "us-east-1", accounts, ARRAY_LEN(accounts) };
    /* by account and region */
    CHECK_OK(confirm_of(DEST_US, &c, &e), &e);
    CHECK_STR_EQ(c.dest.partition, "aws");
    CHECK_OK(jitr_destination_check(&c, &p, &e), &e);
    CHECK_OK(confirm_of("arn:aws:iot:us-east-1:210987654321:ruledestination/http/9", &c, &e), &e);
    CHECK_OK(jitr_destination_check(&c, &p, &e), &e);
    CHECK_OK(confirm_of("arn:aws:iot:us-east-1:999999999999:ruledestination/http/9", &c, &e), &e);
    CHECK(jitr_destination_check(&c, &p, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    CHECK_STR_CONTAINS(e.msg, "not in an account where our CAs are registered");
    err_clear(&e);
    CHECK_OK(confirm_of("arn:aws:iot:eu-west-1:123456789012:ruledestination/http/9", &c, &e), &e);
    CHECK(jitr_destination_check(&c, &p, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "not in this jitrd's region (us-east-1)");
    err_clear(&e);
    /* China: jitrd in cn-north-1 */
    p.region = "cn-north-1";
    CHECK_OK(confirm_of(DEST_CN, &c, &e), &e);
    CHECK_STR_EQ(c.dest.region, "cn-north-1");
    CHECK_OK(jitr_destination_check(&c, &p, &e), &e);
    /* no account of ours: nothing is confirmed */
    p.naccounts = 1;
    CHECK(jitr_destination_check(&c, &p, &e) != 0);
    err_clear(&e);
    /* a list: exactly its ARNs, in their own regions */
    p = (struct jitr_dest_policy){ list, ARRAY_LEN(list), "us-east-1", accounts, 3 };
    CHECK_OK(confirm_of(DEST_GOV, &c, &e), &e);
    CHECK_OK(jitr_destination_check(&c, &p, &e), &e);
    CHECK_OK(confirm_of(DEST_US, &c, &e), &e);
    CHECK(jitr_destination_check(&c, &p, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "is not in jitr.destination_arns");
    err_clear(&e);
    CHECK_OK(confirm_of(DEST_CN "0", &c, &e), &e);
    CHECK(jitr_destination_check(&c, &p, &e) != 0);
    err_clear(&e);
    /* a confirmation naming an ARN of the wrong partition never gets that far */
    CHECK(confirm_of("arn:aws:iot:cn-north-1:123456789012:ruledestination/http/1", &c, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "confirmation: 'arn'");
    CHECK_STR_EQ(c.token, "");
out:
    return rc;
}

/* ---- one event (jitr_event_parse) and the confirmation message ---- */

static const char *event_json(struct buf *b, const char *cert, const char *ca, const char *status,
                              const char *extra)
{
    buf_reset(b);
    buf_addf(b, "{\"certificateId\":\"%s\",\"caCertificateId\":\"%s\",\"timestamp\":1795671724146,"
                "\"certificateStatus\":\"%s\",\"awsAccountId\":\"123456789012\","
                "\"certificateRegistrationTimestamp\":\"1795671724001\"%s}",
             cert, ca, status, extra);
    return b->data;
}

static int test_event_ok(void)
{
    int rc = 0;
    struct buf b = BUF_INIT;
    struct err e = ERR_INIT;
    struct jitr_event ev;
    char upper[65];
    event_json(&b, CERT_A, CA_ID, "PENDING_ACTIVATION", ",\"future\":[1,2]");
    CHECK_OK(jitr_event_parse((const uint8_t *)b.data, b.len, known_ca, NULL, &ev, &e), &e);
    CHECK_STR_EQ(ev.cert_id, CERT_A);
    CHECK_STR_EQ(ev.ca_id, CA_ID);
    CHECK_STR_EQ(ev.account, "123456789012");
    CHECK_INT_EQ(ev.timestamp_ms, 1795671724146LL);
    CHECK_INT_EQ(ev.registered_ms, 1795671724001LL);
    /* upper case ids are stored lowercase */
    snprintf(upper, sizeof(upper), "%s", CERT_A);
    for (char *c = upper; *c; c++) {
        if (*c >= 'a' && *c <= 'f') {
            *c = (char)(*c - 32);
        }
    }
    event_json(&b, upper, CA_ID, "PENDING_ACTIVATION", "");
    CHECK_OK(jitr_event_parse((const uint8_t *)b.data, b.len, known_ca, NULL, &ev, &e), &e);
    CHECK_STR_EQ(ev.cert_id, CERT_A);
out:
    buf_release(&b);
    return rc;
}

static int test_event_bad(void)
{
    static const struct {
        const char *body;
        enum err_code code;
        const char *msg;
    } cases[] = {
        { "", ERRC_INVALID, "empty body" },
        { "not json", ERRC_INVALID, "not JSON" },
        { "[1]", ERRC_INVALID, "must be a JSON object" },
        { "{}", ERRC_INVALID, "'certificateId' is missing" },
        { "{\"certificateId\":5}", ERRC_INVALID, "'certificateId' must be a string" },
        { "{\"certificateId\":\"abc\"}", ERRC_INVALID, "64 hex digits (got 3 characters)" },
        { "{\"certificateId\":\"" CERT_A "\",\"certificateId\":\"" CERT_A "\"}", ERRC_INVALID,
          "not JSON" },
        { "{\"certificateId\":\"g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\""
          "}",
          ERRC_INVALID, "'certificateId' must be 64 hex digits" },
        { "{\"certificateId\":\"" CERT_A "\",\"caCertificateId\":\"" CA_ID "\"}", ERRC_INVALID,
          "'certificateStatus' is missing" },
        { "{\"certificateId\":\"" CERT_A "\",\"caCertificateId\":\"" CA_ID
          "\",\"certificateStatus\":\"ACTIVE\"}",
          ERRC_INVALID, "certificateStatus 'ACTIVE' is not PENDING_ACTIVATION" },
        { "{\"certificateId\":\"" CERT_A "\",\"caCertificateId\":\"" CA_ID
          "\",\"certificateStatus\":\"PENDING_ACTIVATION\"}",
          ERRC_INVALID, "'awsAccountId' is missing" },
        { "{\"certificateId\":\"" CERT_A "\",\"caCertificateId\":\"" CA_ID
          "\",\"certificateStatus\":\"PENDING_ACTIVATION\",\"awsAccountId\":123456789012}",
          ERRC_INVALID, "'awsAccountId' must be a string of 12 digits" },
        { "{\"certificateId\":\"" CERT_A "\",\"caCertificateId\":\"" CERT_A
          "\",\"certificateStatus\":\"PENDING_ACTIVATION\",\"awsAccountId\":\"123456789012\"}",
          ERRC_DENIED, "is not one of our CAs" },
    };
    int rc = 0;
    struct jitr_event ev;
    struct buf big = BUF_INIT;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct err e = ERR_INIT;
        memset(&ev, 0x55, sizeof(ev));
        CHECK(jitr_event_parse((const uint8_t *)cases[i].body, strlen(cases[i].body), known_ca,
                               NULL, &ev, &e) != 0);
        CHECK_INT_EQ(e.code, cases[i].code);
        CHECK_STR_CONTAINS(e.msg, cases[i].msg);
        CHECK_STR_EQ(ev.cert_id, ""); /* nothing produced */
    }
    {
        struct err e = ERR_INIT;
        for (int i = 0; i < 1000; i++) {
            buf_addstr(&big, "          ");
        }
        CHECK(jitr_event_parse((const uint8_t *)big.data, big.len, NULL, NULL, &ev, &e) != 0);
        CHECK_INT_EQ(e.code, ERRC_TOO_LARGE);
    }
out:
    buf_release(&big);
    return rc;
}

static int test_confirm(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct jitr_confirm c;
    const char *ok = "{\"arn\":\"arn:aws:iot:us-east-1:123456789012:ruledestination/http/"
                     "1a2b\",\"confirmationToken\":\"AYA/tok+en=\",\"enableUrl\":\"https://"
                     "iot.us-east-1.amazonaws.com/confirmdestination/AYA/tok+en=\","
                     "\"messageType\":\"DestinationConfirmation\"}";
    CHECK_OK(jitr_confirm_parse((const uint8_t *)ok, strlen(ok), &c, &e), &e);
    CHECK_STR_EQ(c.token, "AYA/tok+en=");
    CHECK_STR_CONTAINS(c.arn, "ruledestination");
    {
        const char *bad[][2] = {
            { "{\"arn\":\"arn:aws:iot:x\",\"confirmationToken\":\"t\"}", "'messageType' must be" },
            { "{\"messageType\":\"DestinationConfirmation\",\"arn\":\"arn:aws:iot:x:y\"}",
              "'confirmationToken' is missing" },
            { "{\"messageType\":\"DestinationConfirmation\",\"arn\":\"arn:aws:iot:x:y\","
              "\"confirmationToken\":\"a b\"}",
              "printable without spaces" },
            { "{\"messageType\":\"DestinationConfirmation\",\"arn\":\"arn:aws:s3:::bucket\","
              "\"confirmationToken\":\"t\"}",
              "is not the ARN of an AWS IoT topic rule destination" },
        };
        for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
            err_clear(&e);
            CHECK(jitr_confirm_parse((const uint8_t *)bad[i][0], strlen(bad[i][0]), &c, &e) != 0);
            CHECK_STR_CONTAINS(e.msg, bad[i][1]);
            CHECK_STR_EQ(c.token, "");
        }
    }
out:
    return rc;
}

/* ---- an event as a stream entry ------------------------------------------------------------- */

/* What every writer of jitr:events encodes, every reader decodes the same; entries written by
 * hand or damaged are refused or read leniently as documented. */
static int test_stream_fields(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct jitr_event ev = { .timestamp_ms = 1795671724146LL, .received_ms = 1795671725000LL };
    struct jitr_event back;
    struct jitr_fields f;
    snprintf(ev.cert_id, sizeof(ev.cert_id), "%s", CERT_A);
    snprintf(ev.ca_id, sizeof(ev.ca_id), "%s", CA_ID);
    snprintf(ev.account, sizeof(ev.account), "123456789012");
    jitr_event_fields(&ev, "sqs", &f);
    CHECK_INT_EQ(f.n, 12);
    CHECK_STR_EQ(f.av[0], "cert");
    CHECK_STR_EQ(f.av[6], "recv");
    CHECK_STR_EQ(f.av[7], "1795671725000");
    CHECK_STR_EQ(f.av[8], "ts");
    CHECK_STR_EQ(f.av[11], "sqs");
    CHECK_OK(jitr_event_from_fields(f.av, f.n, &back, &e), &e);
    CHECK(memcmp(&ev, &back, sizeof(ev)) == 0);
    /* no timestamp, no source: neither field */
    ev.timestamp_ms = 0;
    jitr_event_fields(&ev, NULL, &f);
    CHECK_INT_EQ(f.n, 8);
    CHECK_OK(jitr_event_from_fields(f.av, f.n, &back, &e), &e);
    CHECK(memcmp(&ev, &back, sizeof(ev)) == 0);
    {
        /* upper case ids are read lowercase; unknown fields and bad optional ones ignored */
        const char *kv[] = { "CERT", "x", "cert", "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"
                             "0123456789ABCDEF", "ca", CA_ID, "account", "12345678901x",
                             "recv", "soon", "ts", "-5", "src", "http", "extra" };
        CHECK_OK(jitr_event_from_fields(kv, ARRAY_LEN(kv), &back, &e), &e);
        CHECK_STR_EQ(back.cert_id, CERT_A);
        CHECK_STR_EQ(back.account, "");
        CHECK_INT_EQ(back.received_ms, 0);
        CHECK_INT_EQ(back.timestamp_ms, 0);
    }
    {
        static const char *const bad[][4] = {
            { "cert", CERT_A, "ca", "abc" },
            { "cert", CERT_A "0", "ca", CA_ID },
            { "cert", "g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "ca",
              CA_ID },
            { "ca", CA_ID, "account", "123456789012" },
        };
        for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
            err_clear(&e);
            memset(&back, 0x55, sizeof(back));
            CHECK(jitr_event_from_fields(bad[i], 4, &back, &e) != 0);
            CHECK_INT_EQ(e.code, ERRC_INVALID);
            CHECK_STR_EQ(back.cert_id, "");
        }
    }
out:
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "single_as_aws_sends_it", test_single_as_aws_sends_it },
        { "lenient_timestamps", test_lenient_timestamps },
        { "required_strict", test_required_strict },
        { "batch_of_ten", test_batch_of_ten },
        { "batch_mixed", test_batch_mixed },
        { "bodies_refused", test_bodies_refused },
        { "batch_byte_limit", test_batch_byte_limit },
        { "arns", test_arns },
        { "destination_arns_config", test_destination_arns_config },
        { "destination_check", test_destination_check },
        { "event_ok", test_event_ok },
        { "event_bad", test_event_bad },
        { "confirm", test_confirm },
        { "stream_fields", test_stream_fields },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
