/*
 * The SQS intake's message bodies (jitr_sqs_body_decode): the event JSON as is, base64 of it
 * (an sqs rule action with useBase64), whitespace around either; garbage, empty bodies, base64 of
 * something that is not a JSON object and oversized bodies refused with their reason and nothing
 * produced. A decoded body then goes through jitr_event_parse like an HTTP one.
 */
#include <string.h>

#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr.h"
#include "tests/harness/tt.h"

#define EVENT                                                                                      \
    "{\"certificateId\":\"a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90\","     \
    "\"caCertificateId\":\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\","   \
    "\"timestamp\":1795671724146,\"certificateStatus\":\"PENDING_ACTIVATION\","                    \
    "\"awsAccountId\":\"123456789012\"}"

static int test_decode_ok(void)
{
    int rc = 0;
    struct buf b64 = BUF_INIT, out = BUF_INIT, spaced = BUF_INIT;
    struct err e = ERR_INIT;
    struct jitr_event ev;
    bool was64 = true;
    /* raw JSON */
    CHECK_OK(jitr_sqs_body_decode(EVENT, strlen(EVENT), &out, &was64, &e), &e);
    CHECK(!was64);
    CHECK_STR_EQ(buf_cstr(&out), EVENT);
    CHECK_OK(jitr_event_parse((const uint8_t *)out.data, out.len, NULL, NULL, &ev, &e), &e);
    CHECK_STR_EQ(ev.account, "123456789012");
    buf_release(&out);
    /* base64 of it (useBase64), with a trailing newline */
    base64_encode(&b64, (const uint8_t *)EVENT, strlen(EVENT));
    buf_addch(&b64, '\n');
    CHECK_OK(jitr_sqs_body_decode(b64.data, b64.len, &out, &was64, &e), &e);
    CHECK(was64);
    CHECK_STR_EQ(buf_cstr(&out), EVENT);
    CHECK_OK(jitr_event_parse((const uint8_t *)out.data, out.len, NULL, NULL, &ev, &e), &e);
    CHECK_STR_EQ(ev.cert_id, "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90");
    buf_release(&out);
    /* leading whitespace before the JSON */
    buf_addstr(&spaced, " \r\n\t" EVENT);
    CHECK_OK(jitr_sqs_body_decode(spaced.data, spaced.len, &out, &was64, &e), &e);
    CHECK(!was64);
    CHECK_INT_EQ(out.len, spaced.len);
out:
    buf_release(&b64);
    buf_release(&out);
    buf_release(&spaced);
    return rc;
}

static int test_decode_bad(void)
{
    static const struct {
        const char *body;
        const char *msg;
    } cases[] = {
        { "", "message body is empty" },
        { "  \n", "message body is empty" },
        { "garbage{", "neither JSON nor base64" },
        { "Z2FyYmFnZQ", "neither JSON nor base64" }, /* no padding */
        { "Z2FyYmFnZQ==", "base64 of something that is not a JSON object" },
        { "NDI=", "base64 of something that is not a JSON object" },     /* 42 */
        { "ICAg", "base64 of something that is not a JSON object" },     /* "   " */
    };
    int rc = 0;
    struct buf out = BUF_INIT, big = BUF_INIT;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct err e = ERR_INIT;
        bool was64 = true;
        if (jitr_sqs_body_decode(cases[i].body, strlen(cases[i].body), &out, &was64, &e) == 0) {
            TT_FAIL("accepted '%s'", cases[i].body);
        }
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, cases[i].msg);
        CHECK_INT_EQ(out.len, 0);
        CHECK(!was64);
    }
    {
        struct err e = ERR_INIT;
        bool was64 = false;
        buf_addch(&big, '{');
        for (size_t i = 0; i < JITR_SQS_BODY_MAX; i++) {
            buf_addch(&big, ' ');
        }
        buf_addch(&big, '}');
        CHECK(jitr_sqs_body_decode(big.data, big.len, &out, &was64, &e) != 0);
        CHECK_INT_EQ(e.code, ERRC_TOO_LARGE);
        CHECK_STR_CONTAINS(e.msg, "over the limit");
        CHECK_INT_EQ(out.len, 0);
    }
    {
        /* decodes, but the event inside is invalid: jitr_event_parse says why */
        struct err e = ERR_INIT;
        struct jitr_event ev;
        bool was64 = false;
        CHECK_OK(jitr_sqs_body_decode("eyJhIjoxfQ==", 12, &out, &was64, &e), &e); /* {"a":1} */
        CHECK(was64);
        CHECK(jitr_event_parse((const uint8_t *)out.data, out.len, NULL, NULL, &ev, &e) != 0);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, "certificateId");
    }
out:
    buf_release(&out);
    buf_release(&big);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "decode_ok", test_decode_ok },
        { "decode_bad", test_decode_bad },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
