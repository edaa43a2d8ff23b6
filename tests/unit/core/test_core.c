#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "core/conf.h"
#include "core/err.h"
#include "core/mem.h"
#include "core/util.h"
#include "tests/harness/tt.h"

static int test_err_first_wins(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    CHECK_INT_EQ(err_set(&e, ERRC_INVALID, "first %d", 1), -1);
    err_set(&e, ERRC_INTERNAL, "second");
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_EQ(e.msg, "first 1");
    err_prefix(&e, "while %s", "testing");
    CHECK_STR_EQ(e.msg, "while testing: first 1");
    CHECK_INT_EQ(err_http_status(ERRC_NOT_FOUND), 404);
    CHECK_INT_EQ(err_exit_code(ERRC_OK), 0);
    CHECK_STR_EQ(err_code_name(ERRC_UNAVAILABLE), "unavailable");
out:
    return rc;
}

static int test_buf_and_hex(void)
{
    int rc = 0;
    struct buf b = BUF_INIT;
    uint8_t raw[4] = { 0x00, 0xab, 0x10, 0xff }, back[4];
    size_t n = 0;
    buf_addf(&b, "%s-%d", "x", 42);
    CHECK_STR_EQ(buf_cstr(&b), "x-42");
    buf_reset(&b);
    buf_addhex(&b, raw, sizeof(raw));
    CHECK_STR_EQ(b.data, "00ab10ff");
    CHECK_OK(hex_decode("00AB10ff", back, sizeof(back), &n), &(struct err)ERR_INIT);
    CHECK_INT_EQ(n, 4);
    CHECK(memcmp(raw, back, 4) == 0);
    CHECK(hex_decode("0g", back, sizeof(back), &n) != 0);
    CHECK(hex_decode("abc", back, sizeof(back), &n) != 0);
    CHECK(hex_decode("0011223344", back, sizeof(back), &n) != 0);
    {
        char h[65];
        sha256_hex("abc", 3, h);
        CHECK_STR_EQ(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        sha256_hex("", 0, h);
        CHECK_STR_EQ(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
    buf_reset(&b);
    CHECK(pct_decode(&b, "a%2Fb%2fc+d", 11) == 0);
    CHECK_STR_EQ(buf_cstr(&b), "a/b/c+d");
    buf_reset(&b);
    CHECK(pct_decode(&b, "%00x", 4) == 0 && b.len == 2 && b.data[0] == '\0');
    CHECK(pct_decode(&b, "ab%4", 4) != 0);
    CHECK(pct_decode(&b, "%g0", 3) != 0);
    CHECK(pct_decode(&b, "%", 1) != 0);
    {
        char *secret = xstrdup("hunter2");
        xfree_secret(secret);
        xfree_secret(NULL);
    }
out:
    buf_release(&b);
    return rc;
}

static int test_base64(void)
{
    int rc = 0;
    struct buf enc = BUF_INIT, dec = BUF_INIT;
    const char *vec[][2] = { { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
                             { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
                             { "foobar", "Zm9vYmFy" } };
    for (size_t i = 0; i < ARRAY_LEN(vec); i++) {
        buf_reset(&enc);
        buf_reset(&dec);
        base64_encode(&enc, (const uint8_t *)vec[i][0], strlen(vec[i][0]));
        CHECK_STR_EQ(buf_cstr(&enc), vec[i][1]);
        CHECK_INT_EQ(base64_decode(&dec, vec[i][1], strlen(vec[i][1])), 0);
        CHECK_STR_EQ(buf_cstr(&dec), vec[i][0]);
    }
    CHECK(base64_decode(&dec, "Zm9", 3) != 0);
    CHECK(base64_decode(&dec, "Zm9v!A==", 8) != 0);
    CHECK(base64_decode(&dec, "Zh==", 4) != 0); /* non-zero trailing bits */
    buf_reset(&dec);
    CHECK(base64_decode(&dec, "Zg==Zm9v", 8) != 0); /* data after the padding */
    CHECK(base64_decode(&dec, "Z===", 4) != 0);
    CHECK(base64_decode(&dec, "Zm9v\xff" "A==", 8) != 0);
    CHECK(base64_decode(&dec, "Zm9v\0Zm9v", 9) != 0);
    CHECK(base64_decode(&dec, "Zm9v-_8=", 8) != 0); /* the URL alphabet is not base64 */
    CHECK_INT_EQ(dec.len, 0); /* a refusal leaves the output as it was */
    CHECK_INT_EQ(base64_decode(&dec, " Z g\r\n= =\t", 10), 0);
    CHECK_STR_EQ(buf_cstr(&dec), "f");
    buf_reset(&dec);
    CHECK_INT_EQ(base64_decode(&dec, "Zm9v\nYmFy\n", 10), 0);
    CHECK_STR_EQ(buf_cstr(&dec), "foobar");
out:
    buf_release(&enc);
    buf_release(&dec);
    return rc;
}

static int test_json_quote(void)
{
    int rc = 0;
    struct buf b = BUF_INIT;
    json_quote(&b, "a\"b\\c\n\x01\xc3\xa9\xff", 10);
    CHECK_STR_EQ(buf_cstr(&b), "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\\u00ff\"");
    {
        /* valid UTF-8 comes out as Jansson writes it (jitrd's 201 is written with json_quote) */
        static const char *const in[] = {
            "-----BEGIN CERTIFICATE-----\nMIIB+zCCAaGgAwIBAgIQ/x==\n-----END CERTIFICATE-----\n",
            "", "plain", "q\"b\\s/\t\r end", "\xc3\xa9t\xc3\xa9 \xe2\x82\xac",
        };
        for (size_t i = 0; i < ARRAY_LEN(in); i++) {
            json_t *v = json_string(in[i]);
            char *want = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            buf_reset(&b);
            json_quote(&b, in[i], strlen(in[i]));
            CHECK_STR_EQ(buf_cstr(&b), want);
            free(want);
            json_decref(v);
        }
        /* other control characters and DEL as \u00xx: what a JSON parser reads back */
        buf_reset(&b);
        json_quote(&b, "a\x1f\x7f\x01" "b", 5);
        json_t *back = json_loads(buf_cstr(&b), JSON_DECODE_ANY, NULL);
        CHECK(json_is_string(back) && strcmp(json_string_value(back), "a\x1f\x7f\x01" "b") == 0);
        json_decref(back);
    }
out:
    buf_release(&b);
    return rc;
}

static int test_numbers_and_time(void)
{
    int rc = 0;
    uint64_t v = 0;
    time_t t = 0;
    char s[32];
    CHECK_INT_EQ(str_to_u64("18446744073709551615", &v), 0);
    CHECK(v == UINT64_MAX);
    CHECK(str_to_u64("18446744073709551616", &v) != 0);
    CHECK(str_to_u64("-1", &v) != 0);
    CHECK(str_to_u64("", &v) != 0);
    CHECK(str_to_u64("1 ", &v) != 0);
    {
        static const struct {
            uint64_t v;
            const char *dec;
        } dec[] = { { 0, "0" }, { 9, "9" }, { 10, "10" }, { 12345, "12345" },
                    { UINT64_MAX, "18446744073709551615" } };
        for (size_t i = 0; i < ARRAY_LEN(dec); i++) {
            size_t n = u64_to_dec(s, dec[i].v);
            s[n] = '\0';
            CHECK_STR_EQ(s, dec[i].dec);
        }
    }
    CHECK_INT_EQ(time_parse_rfc3339("2026-02-28T23:59:59Z", &t), 0);
    time_format_rfc3339(t, s, sizeof(s));
    CHECK_STR_EQ(s, "2026-02-28T23:59:59Z");
    CHECK(time_parse_rfc3339("2026-02-30T00:00:00Z", &t) != 0);
    CHECK(time_parse_rfc3339("2026-02-28T00:00:00", &t) != 0);
out:
    return rc;
}

static int test_files(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct buf path = BUF_INIT, got = BUF_INIT;
    buf_addf(&path, "%s/a/b/c", tt_tmpdir());
    CHECK_OK(file_mkdirs(path.data, 0700, &e), &e);
    buf_addstr(&path, "/f");
    CHECK_OK(file_write_atomic(path.data, "hello", 5, 0600, true, &e), &e);
    CHECK(file_write_atomic(path.data, "again", 5, 0600, true, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_CONFLICT);
    err_clear(&e);
    CHECK_OK(file_read_all(path.data, 100, &got, &e), &e);
    CHECK_STR_EQ(buf_cstr(&got), "hello");
    CHECK_OK(file_check_private(path.data, &e), &e);
    CHECK(chmod(path.data, 0640) == 0);
    CHECK(file_check_private(path.data, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    err_clear(&e);
    buf_reset(&got);
    CHECK(file_read_all(path.data, 3, &got, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_TOO_LARGE);
out:
    buf_release(&path);
    buf_release(&got);
    return rc;
}

/* A careless operator's config show pasted into a ticket: nothing secret in it. */
static int test_conf_redact(void)
{
    int rc = 0;
    struct buf b = BUF_INIT;
    static const struct {
        const char *key, *in, *out;
        bool red;
    } v[] = {
        { "redis_url", "redis://:hunter2@db.example:6380/1",
          "redis://:<redacted>@db.example:6380/1", true },
        { "redis_url", "redis://alice:hunter2@db.example", "redis://alice:<redacted>@db.example",
          true },
        /* no "user:": Redis takes the whole userinfo as the password */
        { "redis_url", "redis://hunter2@db.example", "redis://<redacted>@db.example", true },
        /* the last '@' ends the userinfo, as store_url_parse reads it */
        { "redis_url", "redis://:p@ss/w@rd@h:1/0", "redis://:<redacted>@h:1/0", true },
        { "redis_url", "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", false },
        { "redis_url", "unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2", false },
        { NULL, "pkcs11:token=acme;object=ca;pin-value=1234?module-path=/m.so",
          "pkcs11:token=acme;object=ca;pin-value=<redacted>?module-path=/m.so", true },
        { NULL, "pkcs11:token=acme?PIN-VALUE=1234&module-path=/m.so",
          "pkcs11:token=acme?PIN-VALUE=<redacted>&module-path=/m.so", true },
        { NULL, "https://h.example/q?token=abc&x=1#f", "https://h.example/q?token=<redacted>&x=1#f",
          true },
        { NULL, "https://h/p?X-Amz-Signature=abcd", "https://h/p?X-Amz-Signature=<redacted>",
          true },
        { NULL, "https://sqs.eu-west-1.amazonaws.com/123/q",
          "https://sqs.eu-west-1.amazonaws.com/123/q", false },
        { NULL, "password=x;secret=y", "password=<redacted>;secret=<redacted>", true },
        { NULL, "notapassword=x", "notapassword=x", false },
        /* a secret pasted where the name of its environment variable belongs */
        { "jitr.secrets_env", "s3cret-one,s3cret-two", "<redacted>", true },
        { "pkcs11_pin_env", "1234", "<redacted>", true },
        { "key_passphrase_env", "JITRCA_KEY_PASSPHRASE", "JITRCA_KEY_PASSPHRASE", false },
        { "jitr.secrets_env", "", "", false },
        { "jitr.secret_header", "x-jitr-secret", "x-jitr-secret", false },
        { "jitr.secret_header", "x-jitr-secret: s3cret", "<redacted>", true },
        { "data_dir", "/var/lib/jitrca", "/var/lib/jitrca", false },
    };
    size_t i = 0;
    for (i = 0; i < ARRAY_LEN(v); i++) {
        bool red = conf_redact(v[i].key, v[i].in, &b);
        CHECK_STR_EQ(buf_cstr(&b), v[i].out);
        CHECK_INT_EQ(red, v[i].red);
    }
out:
    if (rc) {
        fprintf(stderr, "  (case %zu)\n", i);
    }
    buf_release(&b);
    return rc;
}

/* node_id: a name of A-Z a-z 0-9 . _ - (1 to 64), or empty; JITRCA_NODE_ID overrides the file.
 * A redis-sentinel:// URL's password is redacted like a redis:// one's. */
static int test_conf_node_id(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct buf path = BUF_INIT, out = BUF_INIT, doc = BUF_INIT;
    struct conf *c = NULL;
    static const char *const bad[] = { "a b", "x/y", "n\u00e9", "a!b",
                                       "01234567890123456789012345678901234567890123456789"
                                       "012345678901234" };
    buf_addf(&path, "%s/node.json", tt_tmpdir());
    unsetenv("JITRCA_NODE_ID");
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        buf_reset(&doc);
        buf_addf(&doc, "{\"node_id\": \"%s\"}", bad[i]);
        CHECK_OK(file_write_atomic(path.data, doc.data, doc.len, 0600, false, &e), &e);
        if ((c = conf_load(path.data, &e)) != NULL) {
            TT_FAIL("node_id '%s' accepted", bad[i]);
        }
        CHECK_STR_CONTAINS(e.msg, "node_id");
        err_clear(&e);
    }
    static const char good[] = "{\"node_id\": \"ca-1.eu_west\", \"redis_url\": "
                               "\"redis-sentinel://:hunter2@s1:26379,s2/jitrca/1\"}";
    CHECK_OK(file_write_atomic(path.data, good, strlen(good), 0600, false, &e), &e);
    CHECK((c = conf_load(path.data, &e)) != NULL);
    CHECK_STR_EQ(c->node_id, "ca-1.eu_west");
    conf_dump(c, &out);
    CHECK(strstr(buf_cstr(&out), "hunter2") == NULL);
    CHECK_STR_CONTAINS(buf_cstr(&out), "redis-sentinel://:<redacted>@s1:26379,s2/jitrca/1");
    conf_free(c);
    setenv("JITRCA_NODE_ID", "from-env", 1);
    c = conf_load(path.data, &e);
    unsetenv("JITRCA_NODE_ID");
    CHECK(c != NULL);
    CHECK_STR_EQ(c->node_id, "from-env");
out:
    conf_free(c);
    buf_release(&path);
    buf_release(&out);
    buf_release(&doc);
    return rc;
}

/* conf_dump redacts, and conf_load's messages do not quote a secret from the file. */
static int test_conf_no_secret_shown(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct buf path = BUF_INIT, out = BUF_INIT;
    struct conf *c = NULL;
    static const char *const broken[] = {
        "{\"redis_url\": \"redis://:hunter2@db:6379/0\" hunter2}",
        "{\"redis_url\": redis://:hunter2@db:6379/0}",
        "{\"redis_url\": \"redis://:hunter2@db:6379/0\\q\"}",
        "{\"redis://:hunter2@db:6379/0\": 1}",
        "{\"jitr\": {\"redis://:hunter2@db\": 1}}",
        "{\"redis_url\": \"redis://:hunter2\x01@db\"}",
    };
    unsetenv("JITRCA_REDIS_URL");
    buf_addf(&path, "%s/jitrd.json", tt_tmpdir());
    for (size_t i = 0; i < ARRAY_LEN(broken); i++) {
        CHECK_OK(file_write_atomic(path.data, broken[i], strlen(broken[i]), 0600, false, &e), &e);
        CHECK((c = conf_load(path.data, &e)) == NULL);
        if (strstr(e.msg, "hunter2") != NULL) {
            TT_FAIL("case %zu: the message shows the password: %s", i, e.msg);
        }
        CHECK_STR_CONTAINS(e.msg, path.data);
        err_clear(&e);
    }
    static const char good[] = "{\"redis_url\": \"redis://:hunter2@db:6379/0\", "
                               "\"pkcs11_pin_env\": \"1234\"}";
    CHECK_OK(file_write_atomic(path.data, good, strlen(good), 0600, false, &e), &e);
    c = conf_load(path.data, &e);
    CHECK(c != NULL);
    CHECK_STR_EQ(c->redis_url, "redis://:hunter2@db:6379/0"); /* used as given */
    conf_dump(c, &out);
    CHECK(strstr(buf_cstr(&out), "hunter2") == NULL);
    CHECK(strstr(buf_cstr(&out), "1234") == NULL);
    CHECK_STR_CONTAINS(buf_cstr(&out), "\"redis_url\": \"redis://:<redacted>@db:6379/0\"");
    CHECK_STR_CONTAINS(buf_cstr(&out), "\"pkcs11_pin_env\": \"<redacted>\"");
    /* the environment's URL is shown redacted too */
    conf_free(c);
    setenv("JITRCA_REDIS_URL", "redis://u:envsecret@h:1/0", 1);
    c = conf_load(path.data, &e);
    unsetenv("JITRCA_REDIS_URL");
    CHECK(c != NULL);
    buf_reset(&out);
    conf_dump(c, &out);
    CHECK(strstr(buf_cstr(&out), "envsecret") == NULL);
    CHECK_STR_CONTAINS(buf_cstr(&out), "redis://u:<redacted>@h:1/0");
out:
    conf_free(c);
    buf_release(&path);
    buf_release(&out);
    return rc;
}

/* The jitr section: keys in struct conf_jitr, defaults and bounds from the table, and a copy
 * that outlives the conf. */
static int test_conf_jitr_section(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct buf path = BUF_INIT;
    struct conf *c = NULL;
    struct conf_jitr copy;
    static const char text[] = "{\"jitr\": {\"enabled\": true, \"template\": \"/t.json\", "
                               "\"max_in_flight\": 7, \"sqs_wait_seconds\": 5}}";
    static const char bad[] = "{\"jitr\": {\"sqs_wait_seconds\": 21}}";
    memset(&copy, 0, sizeof(copy));
    buf_addf(&path, "%s/jitr.json", tt_tmpdir());
    CHECK_OK(file_write_atomic(path.data, text, strlen(text), 0600, false, &e), &e);
    c = conf_load(path.data, &e);
    CHECK(c != NULL);
    CHECK(c->jitr.enabled);
    CHECK_STR_EQ(c->jitr.template, "/t.json");
    CHECK_INT_EQ(c->jitr.max_in_flight, 7);
    CHECK_INT_EQ(c->jitr.sqs_wait_seconds, 5);
    CHECK_STR_EQ(c->jitr.secret_header, "x-jitr-secret"); /* default */
    conf_jitr_copy(&copy, &c->jitr);
    CHECK(copy.template != c->jitr.template);
    conf_free(c);
    c = NULL;
    CHECK(copy.enabled);
    CHECK_STR_EQ(copy.template, "/t.json");
    CHECK_STR_EQ(copy.secret_header, "x-jitr-secret");
    CHECK_STR_EQ(copy.destination_arns, "");
    CHECK_INT_EQ(copy.max_in_flight, 7);
    CHECK_OK(file_write_atomic(path.data, bad, strlen(bad), 0600, false, &e), &e);
    CHECK((c = conf_load(path.data, &e)) == NULL);
    CHECK_STR_CONTAINS(e.msg, "jitr.sqs_wait_seconds");
    conf_jitr_release(&copy);
    CHECK(copy.template == NULL);
out:
    conf_jitr_release(&copy);
    conf_free(c);
    buf_release(&path);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "err_first_wins", test_err_first_wins },
        { "buf_and_hex", test_buf_and_hex },
        { "base64", test_base64 },
        { "json_quote", test_json_quote },
        { "numbers_and_time", test_numbers_and_time },
        { "files", test_files },
        { "conf_redact", test_conf_redact },
        { "conf_no_secret_shown", test_conf_no_secret_shown },
        { "conf_node_id", test_conf_node_id },
        { "conf_jitr_section", test_conf_jitr_section },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
