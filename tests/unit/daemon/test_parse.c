/*
 * daemon/parse.c: the media type of a Content-Type, names, the JSON depth check, and the bodies
 * of POST /v1/sign, /v1/sign/batch and EST's enrollments as a careless or hostile client sends
 * them (tests/fuzz/fuzz_http.c throws random ones at the same functions).
 */
#include <string.h>

#include "core/util.h"
#include "daemon/daemon.h"
#include "tests/harness/tt.h"

#define PEM "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
/* the same inside a JSON string */
#define PEM_ESCAPED \
    "-----BEGIN CERTIFICATE REQUEST-----\\nMIIB\\n-----END CERTIFICATE REQUEST-----\\n"

static int parse_sign(const char *media, const char *body, struct api_csr_req *out, bool *bad_type,
                      struct err *e)
{
    memset(out, 0, sizeof(*out));
    return api_parse_sign(media, (const uint8_t *)body, strlen(body), 8, out, bad_type, e);
}

static int test_media_type(void)
{
    int rc = 0;
    char m[32], tiny[8];
    api_media_type(" Application/JSON ; charset=utf-8", m, sizeof(m));
    CHECK_STR_EQ(m, "application/json");
    api_media_type("\tapplication/pkcs10", m, sizeof(m));
    CHECK_STR_EQ(m, "application/pkcs10");
    api_media_type(NULL, m, sizeof(m));
    CHECK_STR_EQ(m, "");
    api_media_type("", m, sizeof(m));
    CHECK_STR_EQ(m, "");
    /* longer than the room: "", never a truncated type that might match another */
    api_media_type("application/json", tiny, sizeof(tiny));
    CHECK_STR_EQ(tiny, "");
out:
    return rc;
}

static int test_name_ok(void)
{
    int rc = 0;
    char long_name[API_NAME_MAX + 2];
    static const char *const good[] = { "a", "devices", "line-1.a_b", "0x", "Z9" };
    static const char *const bad[] = { "", "-a", ".a", "_a", "a/b", "a b", "a\"", "ä", "a:b" };
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        if (!api_name_ok(good[i])) {
            TT_FAIL("'%s' refused", good[i]);
        }
    }
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        if (api_name_ok(bad[i])) {
            TT_FAIL("'%s' accepted", bad[i]);
        }
    }
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[API_NAME_MAX] = '\0';
    CHECK(api_name_ok(long_name)); /* API_NAME_MAX characters */
    long_name[API_NAME_MAX] = 'a';
    long_name[API_NAME_MAX + 1] = '\0';
    CHECK(!api_name_ok(long_name));
out:
    return rc;
}

static int test_json_depth(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *ok = "{\"a\":[[{}]]}";
    const char *deep = "{\"a\":[[{\"b\":[]}]]}";
    const char *in_string = "{\"a\":\"[[[[[[[[\\\"[[[[\"}";
    CHECK_OK(api_json_depth_check((const uint8_t *)ok, strlen(ok), 4, &e), &e);
    CHECK(api_json_depth_check((const uint8_t *)deep, strlen(deep), 4, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "deeper than 4");
    err_clear(&e);
    /* brackets inside strings (and escaped quotes) do not count */
    CHECK_OK(api_json_depth_check((const uint8_t *)in_string, strlen(in_string), 1, &e), &e);
    /* closing brackets without opening ones do not go below zero */
    CHECK_OK(api_json_depth_check((const uint8_t *)"]]]][", 5, 1, &e), &e);
out:
    return rc;
}

static int test_sign_bodies(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct api_csr_req r = { 0 };
    bool bad_type = false;
    const uint8_t der[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };
    /* PEM as text/plain, application/x-pem-file, application/pem */
    CHECK_OK(parse_sign("text/plain", PEM, &r, &bad_type, &e), &e);
    CHECK_INT_EQ(r.csr.len, strlen(PEM));
    api_csr_req_release(&r);
    CHECK_OK(parse_sign("application/pem", PEM, &r, &bad_type, &e), &e);
    api_csr_req_release(&r);
    CHECK(parse_sign("application/x-pem-file", "MIIB", &r, &bad_type, &e) != 0);
    CHECK(!bad_type);
    CHECK_STR_CONTAINS(e.msg, "not a PEM CSR");
    api_csr_req_release(&r);
    err_clear(&e);
    /* DER as is, or its base64 */
    memset(&r, 0, sizeof(r));
    CHECK_OK(api_parse_sign("application/pkcs10", der, sizeof(der), 8, &r, &bad_type, &e), &e);
    CHECK_INT_EQ(r.csr.len, sizeof(der));
    api_csr_req_release(&r);
    CHECK_OK(parse_sign("application/pkcs10", "MAMCAQE=", &r, &bad_type, &e), &e);
    CHECK_INT_EQ(r.csr.len, 5);
    CHECK(memcmp(r.csr.data, der, 5) == 0);
    api_csr_req_release(&r);
    CHECK(parse_sign("application/pkcs10", "not base64!", &r, &bad_type, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_INT_EQ(r.csr.len, 0); /* nothing half-decoded */
    api_csr_req_release(&r);
    err_clear(&e);
    /* JSON: csr, profile, ca; other keys, bad names, duplicates refused */
    CHECK_OK(parse_sign("application/json",
                        "{\"csr\":\"MAMCAQE=\",\"profile\":\"device\",\"ca\":\"devices\"}", &r,
                        &bad_type, &e),
             &e);
    CHECK_STR_EQ(r.profile, "device");
    CHECK_STR_EQ(r.ca, "devices");
    CHECK_INT_EQ(r.csr.len, 5);
    api_csr_req_release(&r);
    static const char *const bad_json[] = {
        "{\"csr\":\"MAMCAQE=\",\"profil\":\"device\"}",
        "{\"csr\":\"MAMCAQE=\",\"profile\":\"../etc\"}",
        "{\"csr\":\"MAMCAQE=\",\"ca\":7}",
        "{\"csr\":\"MAMCAQE=\",\"csr\":\"MAMCAQE=\"}",
        "{\"csr\":\"\"}",
        "{}",
        "[\"MAMCAQE=\"]",
        "{\"csr\":\"MAMCAQE=\"",
        "{\"csr\":\"MAMCAQE=\",\"profile\":\"de\\u0000vice\"}",
        "{\"csr\":[[[[[[[[[[\"x\"]]]]]]]]]]}",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad_json); i++) {
        err_clear(&e);
        if (parse_sign("application/json", bad_json[i], &r, &bad_type, &e) == 0) {
            TT_FAIL("accepted %s", bad_json[i]);
        }
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK(!bad_type);
        api_csr_req_release(&r);
    }
    /* any other media type: bad_type (the handler answers 415) */
    err_clear(&e);
    CHECK(parse_sign("application/xml", PEM, &r, &bad_type, &e) != 0);
    CHECK(bad_type);
    CHECK_STR_CONTAINS(e.msg, "application/xml");
    err_clear(&e);
    CHECK(parse_sign("", PEM, &r, &bad_type, &e) != 0);
    CHECK(bad_type);
    CHECK_STR_CONTAINS(e.msg, "(none)");
out:
    api_csr_req_release(&r);
    return rc;
}

static int test_batch(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct api_csr_req *items = NULL;
    size_t n = 0;
    const char *body = "{\"requests\":[{\"csr\":\"MAMCAQE=\",\"id\":\"a-1\"},"
                       "{\"csr\":\"MAMCAQE=\",\"nope\":1},{\"csr\":\"" PEM_ESCAPED "\"}]}";
    CHECK_OK(api_parse_batch((const uint8_t *)body, strlen(body), 8, 3, &items, &n, &e), &e);
    CHECK_INT_EQ(n, 3);
    /* a bad item does not fail the batch: it carries its own error */
    CHECK_INT_EQ(items[0].err.code, ERRC_OK);
    CHECK_STR_EQ(items[0].id, "a-1");
    CHECK_INT_EQ(items[1].err.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(items[1].err.msg, "unknown key 'nope'");
    CHECK_INT_EQ(items[1].csr.len, 0);
    CHECK_INT_EQ(items[2].err.code, ERRC_OK);
    api_batch_free(items, n);
    items = NULL;
    /* more than max_items: too large, nothing parsed */
    CHECK(api_parse_batch((const uint8_t *)body, strlen(body), 8, 2, &items, &n, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_TOO_LARGE);
    CHECK(items == NULL);
    CHECK_INT_EQ(n, 0);
    static const char *const bad[] = { "{\"requests\":[]}", "{\"requests\":{}}", "[]",
                                       "{\"requests\":[{\"csr\":\"x\"}],\"more\":1}", "" };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err_clear(&e);
        if (api_parse_batch((const uint8_t *)bad[i], strlen(bad[i]), 8, 10, &items, &n, &e) == 0) {
            TT_FAIL("accepted %s", bad[i]);
        }
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK(items == NULL);
    }
out:
    api_batch_free(items, n);
    return rc;
}

static int test_est_csr(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct buf der = BUF_INIT;
    bool bad_type = false;
    const char *b64 = "MAMC\r\nAQE=\r\n";
    CHECK_OK(api_parse_est_csr("application/pkcs10", (const uint8_t *)b64, strlen(b64), &der,
                               &bad_type, &e),
             &e);
    CHECK_INT_EQ(der.len, 5);
    buf_reset(&der);
    CHECK(api_parse_est_csr("application/json", (const uint8_t *)b64, strlen(b64), &der, &bad_type,
                            &e) != 0);
    CHECK(bad_type);
    err_clear(&e);
    CHECK(api_parse_est_csr("application/pkcs10", (const uint8_t *)PEM, strlen(PEM), &der,
                            &bad_type, &e) != 0);
    CHECK(!bad_type);
    CHECK_INT_EQ(der.len, 0);
    err_clear(&e);
    CHECK(api_parse_est_csr("application/pkcs10", (const uint8_t *)"", 0, &der, &bad_type, &e) !=
          0);
out:
    buf_release(&der);
    return rc;
}

/* renews: a serial (1 to 40 hex digits) or a certificateId (64), any case, stored lowercase;
 * anything else refused naming the key; in JSON a string or null only. */
static int test_renews(void)
{
    int rc = 0;
    struct api_csr_req r = { 0 };
    struct err e = ERR_INIT;
    bool bad_type;
    char out[65], id[65];
    static const char *const bad[] = { "", "0x12", "12 ", "g1", "-1", "1\n" };
    CHECK_OK(api_renews_parse("0A1b", 4, out, &e), &e);
    CHECK_STR_EQ(out, "0a1b");
    memset(id, 'F', 64);
    id[64] = '\0';
    CHECK_OK(api_renews_parse(id, 64, out, &e), &e);
    CHECK(strlen(out) == 64 && out[0] == 'f');
    CHECK(api_renews_parse(id, 41, out, &e) != 0 && e.code == ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "'renews'");
    CHECK_STR_EQ(out, "");
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err_clear(&e);
        if (api_renews_parse(bad[i], strlen(bad[i]), out, &e) == 0 || out[0] != '\0') {
            TT_FAIL("renews '%s' accepted", bad[i]);
        }
    }
    err_clear(&e);
    /* a NUL inside the value */
    CHECK(api_renews_parse("ab\0cd", 5, out, &e) != 0);
    err_clear(&e);
    CHECK_OK(parse_sign("application/json", "{\"csr\":\"" PEM_ESCAPED "\",\"renews\":\"AB01\"}", &r,
                        &bad_type, &e),
             &e);
    CHECK_STR_EQ(r.renews, "ab01");
    api_csr_req_release(&r);
    CHECK_OK(parse_sign("application/json", "{\"csr\":\"" PEM_ESCAPED "\",\"renews\":null}", &r,
                        &bad_type, &e),
             &e);
    CHECK_STR_EQ(r.renews, "");
    api_csr_req_release(&r);
    CHECK(parse_sign("application/json", "{\"csr\":\"" PEM_ESCAPED "\",\"renews\":12}", &r,
                     &bad_type, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "'renews' must be a string");
    api_csr_req_release(&r);
    err_clear(&e);
    CHECK(parse_sign("application/json", "{\"csr\":\"" PEM_ESCAPED "\",\"renews\":\"a\\u0000b\"}",
                     &r, &bad_type, &e) != 0);
    api_csr_req_release(&r);
out:
    api_csr_req_release(&r);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "media_type", test_media_type }, { "name_ok", test_name_ok },
        { "json_depth", test_json_depth }, { "sign_bodies", test_sign_bodies },
        { "batch", test_batch },           { "est_csr", test_est_csr },
        { "renews", test_renews },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
