/*
 * Certificate profiles: the shipped ones load and say what docs/profiles.md says; every invalid
 * profile is refused with a message naming the origin, the key and the problem.
 */
#include <stdlib.h>
#include <sys/stat.h>

#include "ca/profile.h"
#include "core/mem.h"
#include "core/util.h"
#include "tests/harness/tt.h"

static const char *src_dir(void)
{
    const char *s = getenv("JITRCA_SOURCE_DIR");
    return s ? s : ".";
}

static int test_shipped(void)
{
    int rc = 0;
    char dir[512];
    struct err e = ERR_INIT;
    struct ca_profiles *ps = NULL;
    const struct ca_profile *dev, *st;
    snprintf(dir, sizeof(dir), "%s/policies/profiles", src_dir());
    ps = ca_profiles_load_dir(dir, &e);
    CHECK_OK(ps == NULL, &e);
    CHECK(ca_profiles_count(ps) >= 2);
    CHECK((dev = ca_profiles_find(ps, "device")) != NULL);
    CHECK((st = ca_profiles_find(ps, "station")) != NULL);
    CHECK(ca_profiles_find(ps, "nope") == NULL);
    CHECK(ca_profiles_find(ps, NULL) == NULL);
    CHECK_STR_EQ(ca_profile_name(ca_profiles_at(ps, 0)), "claim"); /* sorted */
    CHECK_STR_EQ(ca_profile_name(ca_profiles_at(ps, 1)), "device");
    /* a claim certificate never becomes a device in AWS IoT */
    CHECK(ca_profiles_find(ps, "claim") != NULL);
    CHECK(!ca_profile_allows_jitr(ca_profiles_find(ps, "claim")));
    CHECK(ca_profiles_at(ps, ca_profiles_count(ps)) == NULL);
    CHECK_STR_EQ(ca_profile_name(dev), "device");
    CHECK_STR_CONTAINS(ca_profile_description(dev), "AWS IoT");
    for (int t = 0; t < CA_KEY__COUNT; t++) {
        CHECK(ca_profile_allows_key(dev, (enum ca_key_type)t));
    }
    CHECK(!ca_profile_allows_key(dev, CA_KEY__COUNT));
    CHECK(ca_profile_allows_jitr(dev));
    CHECK(!ca_profile_allows_jitr(st));
    CHECK_INT_EQ(ca_profile_validity_seconds(dev), 3650LL * 86400);
    CHECK(ca_profile_validity_seconds(dev) <= 3653LL * 86400); /* at most 10 years */
    CHECK_INT_EQ(ca_profile_backdate_seconds(dev), 300);
    CHECK_INT_EQ(ca_profile_validity_seconds(st), 365LL * 86400);
out:
    ca_profiles_free(ps);
    return rc;
}

static int test_defaults(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    static const char j[] = "{\"key_types\":[\"rsa-3072\"],\"validity_days\":7,"
                            "\"subject\":{\"cn_pattern\":\"a+\"},"
                            "\"extended_key_usage\":[\"serverAuth\",\"clientAuth\"]}";
    struct ca_profile *p = ca_profile_load_json("min", "min.json", j, strlen(j), &e);
    CHECK_OK(p == NULL, &e);
    CHECK(ca_profile_allows_key(p, CA_KEY_RSA_3072));
    CHECK(!ca_profile_allows_key(p, CA_KEY_EC_P256));
    CHECK_INT_EQ(ca_profile_backdate_seconds(p), 300);
    CHECK(!ca_profile_allows_jitr(p));
    CHECK_STR_EQ(ca_profile_description(p), "");
out:
    ca_profile_free(p);
    return rc;
}

#define BASE_KT "\"key_types\":[\"ec-p256\"]"
#define BASE_VD "\"validity_days\":30"
#define BASE_SU "\"subject\":{\"cn_pattern\":\"x\"}"
#define BASE_EK "\"extended_key_usage\":[\"clientAuth\"]"
#define BASE    BASE_KT "," BASE_VD "," BASE_SU "," BASE_EK

static int test_invalid(void)
{
    static const struct {
        const char *json;
        const char *msg;
    } bad[] = {
        { "", "profile t.json: not valid JSON at line" },
        { "[]", "profile t.json: (top level): must be a JSON object" },
        { "{" BASE ",\"jitr\":true,\"jitr\":false}", "not valid JSON" },
        { "{" BASE ",\"colour\":1}", "profile t.json: colour: unknown key" },
        { "{" BASE_VD "," BASE_SU "," BASE_EK "}", "profile t.json: key_types: is required" },
        { "{\"key_types\":[]," BASE_VD "," BASE_SU "," BASE_EK "}", "key_types: is required" },
        { "{\"key_types\":[\"rsa-1024\"]," BASE_VD "," BASE_SU "," BASE_EK "}",
          "profile t.json: key_types: unknown key type 'rsa-1024'" },
        { "{\"key_types\":[\"ec-p256\",\"ec-p256\"]," BASE_VD "," BASE_SU "," BASE_EK "}",
          "key_types: lists 'ec-p256' twice" },
        { "{" BASE_KT "," BASE_SU "," BASE_EK "}", "validity_days: is required" },
        { "{" BASE_KT ",\"validity_days\":0," BASE_SU "," BASE_EK "}",
          "validity_days: is required: an integer from 1 to 36500" },
        { "{" BASE_KT ",\"validity_days\":\"10\"," BASE_SU "," BASE_EK "}", "validity_days:" },
        { "{" BASE ",\"backdate_seconds\":-1}", "backdate_seconds: must be an integer from 0" },
        { "{" BASE ",\"backdate_seconds\":86401}", "backdate_seconds: must be an integer" },
        { "{" BASE_KT "," BASE_VD "," BASE_EK "}", "subject: is required" },
        { "{" BASE_KT "," BASE_VD ",\"subject\":{}," BASE_EK "}",
          "subject.cn_pattern: is required" },
        { "{" BASE_KT "," BASE_VD ",\"subject\":{\"cn_pattern\":\"(\"}," BASE_EK "}",
          "subject.cn_pattern: is not a valid POSIX extended regular expression" },
        { "{" BASE_KT "," BASE_VD ",\"subject\":{\"cn_pattern\":\"\"}," BASE_EK "}",
          "subject.cn_pattern: must be a non-empty pattern" },
        { "{" BASE_KT "," BASE_VD ",\"subject\":{\"cn_pattern\":\"x\",\"max\":1}," BASE_EK "}",
          "subject.max: unknown key" },
        { "{" BASE_KT "," BASE_VD
          ",\"subject\":{\"cn_pattern\":\"x\",\"allowed\":[\"XX\"]}," BASE_EK "}",
          "subject.allowed: unknown subject attribute 'XX'" },
        { "{" BASE_KT "," BASE_VD
          ",\"subject\":{\"cn_pattern\":\"x\",\"forbidden\":[\"CN\"]}," BASE_EK "}",
          "subject.forbidden: cannot forbid CN" },
        { "{" BASE_KT "," BASE_VD ",\"subject\":{\"cn_pattern\":\"x\",\"allowed\":[\"O\"],"
          "\"forbidden\":[\"O\"]}," BASE_EK "}",
          "subject.forbidden: 'O' is also in" },
        { "{" BASE_KT "," BASE_VD
          ",\"subject\":{\"cn_pattern\":\"x\",\"required\":[\"O\"]}," BASE_EK "}",
          "subject.required: 'O' is not in subject.allowed" },
        { "{" BASE_KT "," BASE_VD
          ",\"subject\":{\"cn_pattern\":\"x\",\"allowed\":[\"O\",\"O\"]}," BASE_EK "}",
          "subject.allowed: lists 'O' twice" },
        { "{" BASE ",\"san\":{}}", "san: allows no type" },
        { "{" BASE ",\"san\":[]}", "san: must be null" },
        { "{" BASE ",\"san\":{\"dns\":\"a\",\"uri\":\"[\"}}", "san.uri: is not a valid POSIX" },
        { "{" BASE ",\"san\":{\"dns\":\"a\",\"max\":0}}", "san.max: must be an integer from 1" },
        { "{" BASE ",\"san\":{\"dns\":\"a\",\"rid\":\"x\"}}", "san.rid: unknown key" },
        { "{" BASE_KT "," BASE_VD "," BASE_SU "}", "extended_key_usage: is required" },
        { "{" BASE_KT "," BASE_VD "," BASE_SU ",\"extended_key_usage\":[\"codeSigning\"]}",
          "extended_key_usage: unknown usage 'codeSigning'" },
        { "{" BASE_KT "," BASE_VD "," BASE_SU
          ",\"extended_key_usage\":[\"clientAuth\",\"clientAuth\"]}",
          "extended_key_usage: lists 'clientAuth' twice" },
        { "{" BASE ",\"jitr\":1}", "jitr: must be true or false" },
        { "{" BASE ",\"beyond_ca\":\"cut\"}", "beyond_ca: must be \"clamp\" or \"refuse\"" },
        { "{" BASE ",\"beyond_ca\":true}", "beyond_ca: must be \"clamp\" or \"refuse\"" },
        { "{" BASE ",\"description\":5}", "description: must be a string" },
        { "{" BASE ",\"crl_distribution_points\":\"http://a/\"}",
          "crl_distribution_points: must be an array of 1 to 4 http:// URLs" },
        { "{" BASE ",\"crl_distribution_points\":[]}", "must be an array of 1 to 4" },
        { "{" BASE ",\"crl_distribution_points\":[\"http://a/1\",\"http://a/2\",\"http://a/3\","
          "\"http://a/4\",\"http://a/5\"]}",
          "must be an array of 1 to 4" },
        { "{" BASE ",\"crl_distribution_points\":[5]}", "must be an array of 1 to 4" },
        { "{" BASE ",\"crl_distribution_points\":[\"https://a/c.crl\"]}",
          "crl_distribution_points: 'https://a/c.crl' must start with http://" },
        { "{" BASE ",\"crl_distribution_points\":[\"ldap://a/c\"]}", "must start with http://" },
        { "{" BASE ",\"crl_distribution_points\":[\"http:///c.crl\"]}", "has no host" },
        { "{" BASE ",\"crl_distribution_points\":[\"http://a/c d.crl\"]}",
          "has a character a URL may not have" },
        { "{" BASE ",\"crl_distribution_points\":[\"http://u@a/c.crl\"]}",
          "has a character a URL may not have" },
        { "{" BASE ",\"crl_distribution_points\":[\"http://a/c#x\"]}", "has a character" },
        { "{" BASE ",\"crl_distribution_points\":[\"http://a/%zz\"]}", "malformed %-escape" },
        { "{" BASE ",\"crl_distribution_points\":[\"http://a/%4\"]}", "malformed %-escape" },
        { "{" BASE ",\"crl_distribution_points\":[\"http://a/\\u0001\"]}", "has a character" },
        { "{" BASE ",\"crl_distribution_points\":[\"http://a/\",\"http://a/\"]}",
          "crl_distribution_points: lists 'http://a/' twice" },
        { "{" BASE ",\"authority_info_access\":[]}",
          "authority_info_access: must be an object with ca_issuers and/or ocsp" },
        { "{" BASE ",\"authority_info_access\":{}}", "must be an object with ca_issuers" },
        { "{" BASE ",\"authority_info_access\":{\"crl\":[\"http://a/\"]}}",
          "authority_info_access.crl: unknown key" },
        { "{" BASE ",\"authority_info_access\":{\"ocsp\":[\"https://o/\"]}}",
          "authority_info_access.ocsp: 'https://o/' must start with http://" },
        { "{" BASE ",\"authority_info_access\":{\"ca_issuers\":[]}}",
          "authority_info_access.ca_issuers: must be an array of 1 to 4" },
    };
    int rc = 0;
    struct err e = ERR_INIT;
    struct ca_profile *p = NULL;
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err_clear(&e);
        p = ca_profile_load_json("t", "t.json", bad[i].json, strlen(bad[i].json), &e);
        if (p != NULL) {
            TT_FAIL("accepted: %s", bad[i].json);
        }
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, bad[i].msg);
    }
    err_clear(&e);
    CHECK((p = ca_profile_load_json("bad name", "x", "{}", 2, &e)) == NULL);
    CHECK_STR_CONTAINS(e.msg, "the name 'bad name' is not");
out:
    ca_profile_free(p);
    return rc;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    fputs(text, f);
    return fclose(f);
}

static int test_files(void)
{
    int rc = 0;
    char dir[600], path[700];
    struct err e = ERR_INIT;
    struct ca_profiles *ps = NULL;
    struct ca_profile *p = NULL;
    snprintf(dir, sizeof(dir), "%s/profiles", tt_tmpdir());
    CHECK(mkdir(dir, 0700) == 0);
    CHECK((ps = ca_profiles_load_dir(dir, &e)) == NULL);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    CHECK_STR_CONTAINS(e.msg, "no profile (*.json) in");
    err_clear(&e);
    snprintf(path, sizeof(path), "%s/good.json", dir);
    CHECK(write_file(path, "{" BASE "}") == 0);
    snprintf(path, sizeof(path), "%s/README.txt", dir);
    CHECK(write_file(path, "not a profile") == 0);
    CHECK((ps = ca_profiles_load_dir(dir, &e)) != NULL);
    CHECK_INT_EQ(ca_profiles_count(ps), 1);
    CHECK(ca_profiles_find(ps, "good") != NULL);
    ca_profiles_free(ps);
    ps = NULL;
    snprintf(path, sizeof(path), "%s/worse.json", dir);
    CHECK(write_file(path, "{" BASE ",\"jitr\":\"yes\"}") == 0);
    CHECK((ps = ca_profiles_load_dir(dir, &e)) == NULL);
    CHECK_STR_CONTAINS(e.msg, "/worse.json: jitr: must be true or false");
    err_clear(&e);
    snprintf(path, sizeof(path), "%s/missing.json", dir);
    CHECK((p = ca_profile_load_file(path, &e)) == NULL);
    CHECK_STR_CONTAINS(e.msg, "missing.json");
    err_clear(&e);
    CHECK((p = ca_profile_load_file("/etc/hostname", &e)) == NULL);
    CHECK_STR_CONTAINS(e.msg, "the file name must be NAME.json");
    err_clear(&e);
    CHECK((ps = ca_profiles_load_dir("/nonexistent-jitrca", &e)) == NULL);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
out:
    ca_profile_free(p);
    ca_profiles_free(ps);
    return rc;
}

/* The example in docs/profiles.md loads. */
static int test_docs_example(void)
{
    int rc = 0;
    char path[512];
    struct buf md = BUF_INIT;
    struct err e = ERR_INIT;
    struct ca_profile *p = NULL;
    const char *start, *end;
    snprintf(path, sizeof(path), "%s/docs/profiles.md", src_dir());
    CHECK_OK(file_read_all(path, 1 << 20, &md, &e), &e);
    CHECK((start = strstr(md.data, "```json\n")) != NULL);
    start += 8;
    CHECK((end = strstr(start, "```")) != NULL);
    p = ca_profile_load_json("example", "docs/profiles.md", start, (size_t)(end - start), &e);
    CHECK_OK(p == NULL, &e);
    CHECK(ca_profile_allows_key(p, CA_KEY_RSA_2048));
    CHECK_INT_EQ(ca_profile_validity_seconds(p), 825LL * 86400);
out:
    ca_profile_free(p);
    buf_release(&md);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "shipped", test_shipped },           { "defaults", test_defaults },
        { "invalid", test_invalid },           { "files", test_files },
        { "docs_example", test_docs_example },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
