/*
 * jitr/template.c and jitr/check.c: JITP template semantics as AWS documents them (several
 * policies, PolicyDocument as a string or an object, a policy without a name named by the hash
 * of its document, OverrideSettings), names and values exactly as AWS's model accepts them, and
 * the check that a template works for a representative certificate of every JITR profile (and
 * for a real certificate), naming what is missing; AWS's own JITP documentation template, the
 * intrinsic functions and the templates refused; IoT policy documents checked offline.
 * Certificates are real (openssl CLI).
 */
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "ca/profile.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr.h"
#include "tests/harness/tt.h"
#include "tests/unit/jitr/pki.h"

#define CERT_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define P_CN "\"AWS::IoT::Certificate::CommonName\":{\"Type\":\"String\"}"
#define THING                                                                         \
    "\"thing\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":{\"Ref\":" \
    "\"AWS::IoT::Certificate::CommonName\"}}}"
#define DOC_A                                                                               \
    "{\\\"Version\\\":\\\"2012-10-17\\\",\\\"Statement\\\":[{\\\"Effect\\\":\\\"Allow\\\"," \
    "\\\"Action\\\":\\\"iot:Connect\\\",\\\"Resource\\\":\\\"arn:aws:iot:*:*:client/"       \
    "${iot:Connection.Thing.ThingName}\\\"}]}"
#define DOC_B_OBJ                                                                                  \
    "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\"," \
    "\"Resource\":\"arn:aws:iot:*:*:topic/devices/${iot:Connection.Thing.ThingName}/*\"}]}"

static struct jitr_template *parse(const char *text, const char *policy_name, struct err *e)
{
    return jitr_template_parse(text, strlen(text), "t.json", policy_name, e);
}

static void sha_hex(const char *s, char out[65])
{
    uint8_t md[32];
    SHA256((const unsigned char *)s, strlen(s), md);
    hex_encode(md, sizeof(md), out);
}

/* Several policies; a document without a name is named by its SHA-256 (so editing the
 * template makes a new policy); an object document is its compact JSON; the same policy twice
 * is attached once; jitr.policy_name names the one document instead, versioned. */
static int test_policies(void)
{
    static const char tpl[] =
        "{\"Parameters\":{" P_CN "},\"Resources\":{" THING ","
        "\"a\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":\"" DOC_A "\"}},"
        "\"b\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":" DOC_B_OBJ "}},"
        "\"c\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":\"fleet-ops\"}},"
        "\"a2\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":\"" DOC_A "\"}}"
        "}}";
    static const char edited[] =
        "{\"Parameters\":{" P_CN "},\"Resources\":{" THING ","
        "\"a\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":"
        "\"{\\\"Version\\\":\\\"2012-10-17\\\",\\\"Statement\\\":[{\\\"Effect\\\":\\\"Allow\\\","
        "\\\"Action\\\":[\\\"iot:Connect\\\",\\\"iot:Publish\\\"],\\\"Resource\\\":\\\"arn:aws:"
        "iot:*:*:client/${iot:Connection.Thing.ThingName}\\\"}]}\"}}}}";
    static const char one[] =
        "{\"Parameters\":{" P_CN "},\"Resources\":{" THING ","
        "\"a\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyDocument\":\"" DOC_A "\"}}"
        "}}";
    int rc = 0;
    struct err e = ERR_INIT;
    struct jitr_template *t = parse(tpl, NULL, &e), *t2 = NULL, *t3 = NULL;
    char h[65];
    const struct jitr_policy *p;
    CHECK(t != NULL);
    CHECK_INT_EQ(jitr_template_npolicies(t), 3);
    p = jitr_template_policy(t, 0);
    sha_hex(p->doc, h);
    CHECK_STR_EQ(p->name, h);
    CHECK_STR_EQ(p->hash, h);
    CHECK(!p->versioned);
    CHECK_STR_CONTAINS(p->doc, "iot:Connect");
    p = jitr_template_policy(t, 1);
    CHECK_STR_EQ(p->doc, "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
                         "\"Action\":\"iot:Publish\",\"Resource\":\"arn:aws:iot:*:*:topic/devices/"
                         "${iot:Connection.Thing.ThingName}/*\"}]}");
    sha_hex(p->doc, h);
    CHECK_STR_EQ(p->name, h);
    p = jitr_template_policy(t, 2);
    CHECK_STR_EQ(p->name, "fleet-ops");
    CHECK_STR_EQ(p->doc, "");
    CHECK(jitr_template_policy(t, 3) == NULL);
    /* an edited document is another policy: devices provisioned before keep theirs */
    t2 = parse(edited, NULL, &e);
    CHECK(t2 != NULL);
    CHECK(strcmp(jitr_template_policy(t2, 0)->name, jitr_template_policy(t, 0)->name) != 0);
    /* jitr.policy_name: the one document under that name, versioned */
    t3 = parse(one, "acme-device", &e);
    CHECK(t3 != NULL);
    CHECK_STR_EQ(jitr_template_policy(t3, 0)->name, "acme-device");
    CHECK(jitr_template_policy(t3, 0)->versioned);
    jitr_template_free(t3);
    t3 = parse(tpl, "acme-device", &e);
    CHECK(t3 == NULL);
    CHECK_STR_CONTAINS(e.msg, "jitr.policy_name names the template's one PolicyDocument, and it "
                              "has 3");
out:
    jitr_template_free(t);
    jitr_template_free(t2);
    jitr_template_free(t3);
    return rc;
}

static int test_policies_bad(void)
{
#define POL(props)                                                         \
    "{\"Parameters\":{" P_CN "},\"Resources\":{" THING ",\"p\":{\"Type\":" \
    "\"AWS::IoT::Policy\",\"Properties\":" props "}}}"
    static const char *const cases[][2] = {
        { POL("{\"PolicyName\":\"x\",\"PolicyDocument\":\"" DOC_A "\"}"),
          "policy 'p' needs PolicyName (an existing policy) or PolicyDocument, not both" },
        { POL("{}"), "policy 'p' needs PolicyName" },
        { POL("{\"PolicyName\":\"bad name\"}"), "PolicyName must be a constant name of 1..128" },
        { POL("{\"PolicyName\":{\"Ref\":\"AWS::IoT::Certificate::CommonName\"}}"),
          "PolicyName must be a constant name" },
        { POL("{\"PolicyDocument\":{\"Fn::Sub\":\"x\"}}"),
          "PolicyDocument must be a constant string or object" },
        { POL("{\"PolicyDocument\":5}"), "PolicyDocument must be a constant string or object" },
        { POL("{\"PolicyDocument\":{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":"
              "\"Allow\",\"Action\":\"iot:*\",\"Resource\":\"*\"}]}}"),
          "policy 'p': PolicyDocument: policy: Statement[0] allows iot:* on *" },
        { "{\"Parameters\":{" P_CN "},\"Resources\":{" THING ",\"p\":{\"Type\":"
          "\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":\"x\"},\"OverrideSettings\":{}}}}",
          "OverrideSettings are not available for policies" },
    };
    int rc = 0;
    struct buf many = BUF_INIT;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct err e = ERR_INIT;
        struct jitr_template *t = parse(cases[i][0], NULL, &e);
        if (t != NULL) {
            jitr_template_free(t);
            TT_FAIL("case %zu parsed", i);
        }
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, "t.json");
        CHECK_STR_CONTAINS(e.msg, cases[i][1]);
    }
    /* AWS attaches at most 10 policies to a certificate */
    buf_addstr(&many, "{\"Parameters\":{" P_CN "},\"Resources\":{" THING);
    for (int i = 0; i < 11; i++) {
        buf_addf(&many,
                 ",\"p%d\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":"
                 "\"pol-%d\"}}",
                 i, i);
    }
    buf_addstr(&many, "}}");
    {
        struct err e = ERR_INIT;
        struct jitr_template *t = parse(many.data, NULL, &e);
        CHECK(t == NULL);
        CHECK_STR_CONTAINS(e.msg, "more than 10 policies");
    }
out:
    buf_release(&many);
    return rc;
}

/* Names and values: exactly the AWS IoT model's patterns and lengths. */
static int test_names(void)
{
    static const struct {
        enum jitr_name_kind k;
        const char *s;
        bool ok;
    } cases[] = {
        { JITR_NAME_THING, "dev-0001:a_b", true },
        { JITR_NAME_THING, "", false },
        { JITR_NAME_THING, "a.b", false },
        { JITR_NAME_THING, "a/b", false },
        { JITR_NAME_THING, "a=b", false },
        { JITR_NAME_THING, "é", false },
        { JITR_NAME_THING_GROUP, "v1-lightbulbs", true },
        { JITR_NAME_THING_GROUP, "v1 lightbulbs", false },
        { JITR_NAME_THING_TYPE, "lightBulb-versionA", true },
        { JITR_NAME_BILLING_GROUP, "b:1", true },
        { JITR_NAME_ATTR, "serial.number@site/a:b#c,d_e-f", true },
        { JITR_NAME_ATTR, "", false },
        { JITR_NAME_ATTR, "a=b", false },
        { JITR_NAME_ATTR, "a[0]", false },
        { JITR_NAME_ATTR_VALUE, "", true },
        { JITR_NAME_ATTR_VALUE, "rack=3[a]", true },
        { JITR_NAME_ATTR_VALUE, "a/b:c#d@e.f,g_h-i", true },
        { JITR_NAME_ATTR_VALUE, "a b", false },
        { JITR_NAME_ATTR_VALUE, "a+b", false },
        { JITR_NAME_ATTR_VALUE, "a\"b", false },
        { JITR_NAME_POLICY, "jitrca-device+v2=ok,@.", true },
        { JITR_NAME_POLICY, "a:b", false },
    };
    int rc = 0;
    char big[802];
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        if (jitr_name_ok(cases[i].k, cases[i].s) != cases[i].ok) {
            TT_FAIL("case %zu '%s': expected %s", i, cases[i].s, cases[i].ok ? "ok" : "refused");
        }
    }
    memset(big, 'a', sizeof(big));
    big[128] = '\0';
    CHECK(jitr_name_ok(JITR_NAME_THING, big));
    CHECK(jitr_name_ok(JITR_NAME_ATTR, big));
    big[128] = 'a';
    big[129] = '\0';
    CHECK(!jitr_name_ok(JITR_NAME_THING, big));
    CHECK(!jitr_name_ok(JITR_NAME_ATTR, big));
    CHECK(jitr_name_ok(JITR_NAME_ATTR_VALUE, big));
    big[129] = 'a';
    big[800] = '\0';
    CHECK(jitr_name_ok(JITR_NAME_ATTR_VALUE, big));
    big[800] = 'a';
    big[801] = '\0';
    CHECK(!jitr_name_ok(JITR_NAME_ATTR_VALUE, big));
out:
    return rc;
}

/* OverrideSettings as AWS documents them: the thing's three (also in the documentation's
 * upper-case spelling), the certificate's Status; Status "Active" as in one AWS example. */
static int test_overrides(void)
{
    static const char tpl[] =
        "{\"Parameters\":{" P_CN "},\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\","
        "\"Properties\":{\"ThingName\":{\"Ref\":\"AWS::IoT::Certificate::CommonName\"},"
        "\"ThingGroups\":[\"g1\",\"g2\",\"g1\"]},\"OverrideSettings\":{\"ATTRIBUTE_PAYLOAD\":"
        "\"REPLACE\",\"THING_GROUPS\":\"MERGE\"}},\"certificate\":{\"Type\":"
        "\"AWS::IoT::Certificate\",\"Properties\":{\"Status\":\"Active\"},\"OverrideSettings\":"
        "{\"Status\":\"REPLACE\"}},\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":"
        "{\"PolicyName\":\"x\"}}}}";
    static const char bad_status[] =
        "{\"Parameters\":{" P_CN "},\"Resources\":{" THING ",\"certificate\":{\"Type\":"
        "\"AWS::IoT::Certificate\",\"Properties\":{},\"OverrideSettings\":{\"Status\":\"MERGE\"}},"
        "\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":\"x\"}}}}";
    int rc = 0;
    struct err e = ERR_INIT;
    struct jitr_template *t = parse(tpl, NULL, &e);
    struct jitr_params p = { 0 };
    struct jitr_plan plan = { 0 };
    CHECK(t != NULL);
    CHECK_INT_EQ(jitr_template_status_override(t), JITR_OVR_REPLACE);
    jitr_params_set(&p, "AWS::IoT::Certificate::CommonName", "dev-1");
    CHECK_OK(jitr_template_eval(t, &p, &plan, &e), &e);
    CHECK_INT_EQ(plan.thing_override, JITR_OVR_REPLACE);
    CHECK_INT_EQ(plan.groups_override, JITR_OVR_MERGE);
    CHECK_INT_EQ(plan.type_override, JITR_OVR_DO_NOTHING);
    CHECK(plan.activate);
    CHECK_INT_EQ(plan.ngroups, 2); /* "g1" once */
    jitr_template_free(t);
    t = parse(bad_status, NULL, &e);
    CHECK(t == NULL);
    CHECK_STR_CONTAINS(e.msg, "certificate OverrideSettings.Status must be DO_NOTHING, REPLACE "
                              "or FAIL");
out:
    jitr_plan_release(&plan);
    jitr_params_release(&p);
    jitr_template_free(t);
    return rc;
}

/* Names the template evaluates are checked: groups, types, billing groups. */
static int test_eval_names(void)
{
    static const char tpl[] =
        "{\"Parameters\":{" P_CN ",\"G\":{\"Type\":\"String\",\"Default\":\"ok-group\"}},"
        "\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":"
        "{\"Ref\":\"AWS::IoT::Certificate::CommonName\"},\"ThingGroups\":[{\"Ref\":\"G\"}]}},"
        "\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":\"x\"}}}}";
    int rc = 0;
    struct err e = ERR_INIT;
    struct jitr_template *t = parse(tpl, NULL, &e);
    struct jitr_params p = { 0 };
    struct jitr_plan plan = { 0 };
    CHECK(t != NULL);
    jitr_params_set(&p, "AWS::IoT::Certificate::CommonName", "dev-1");
    CHECK_OK(jitr_template_eval(t, &p, &plan, &e), &e);
    CHECK_STR_EQ(plan.groups[0], "ok-group");
    jitr_plan_release(&plan);
    jitr_params_set(&p, "G", "bad group");
    CHECK(jitr_template_eval(t, &p, &plan, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "thing group 'bad group' is not 1..128 of [a-zA-Z0-9:_-]");
out:
    jitr_plan_release(&plan);
    jitr_params_release(&p);
    jitr_template_free(t);
    return rc;
}

/* Profiles in a directory of the test: device (CN only) and bulb (C and serialNumber too),
 * both JITR; station (no JITR). */
static const char *profiles_dir(const char *which)
{
    static char dir[512];
    snprintf(dir, sizeof(dir), "%s/profiles-%s", tt_tmpdir(), which);
    tt_sh("mkdir -p %s && cp %s/policies/profiles/station.json %s/", dir,
          getenv("JITRCA_SOURCE_DIR"), dir);
    if (strchr(which, 'd')) {
        tt_sh("cp %s/policies/profiles/device.json %s/", getenv("JITRCA_SOURCE_DIR"), dir);
    }
    if (strchr(which, 'b')) {
        tt_sh("sed 's/\"required\": \\[\"CN\"\\]/\"required\": [\"CN\", \"C\", \"serialNumber\"]/'"
              " %s/policies/profiles/device.json > %s/bulb.json",
              getenv("JITRCA_SOURCE_DIR"), dir);
    }
    if (strchr(which, 'w')) {
        tt_sh("jq '.subject.cn_pattern = \"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\"' "
              "%s/policies/profiles/device.json > %s/wide.json",
              getenv("JITRCA_SOURCE_DIR"), dir);
    }
    return dir;
}

/* The fleet check: the AWS JITP documentation's template needs Country and SerialNumber, which
 * only the bulb profile requires. */
static int test_check_fleet(void)
{
    static const char dnq[] =
        "{\"Parameters\":{" P_CN ",\"AWS::IoT::Certificate::DistinguishedNameQualifier\":{"
        "\"Type\":\"String\"}},\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\","
        "\"Properties\":{\"ThingName\":{\"Ref\":\"AWS::IoT::Certificate::"
        "DistinguishedNameQualifier\"}}},\"p\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":"
        "{\"PolicyName\":\"x\"}}}}";
    int rc = 0;
    struct err e = ERR_INIT;
    struct buf path = BUF_INIT;
    struct jitr_template *t = NULL, *t2 = NULL;
    struct ca_profiles *both = NULL, *bulb = NULL, *none = NULL;
    json_t *report = json_array();
    buf_addf(&path, "%s/tests/unit/jitr/data/aws-jitp-doc-template.json",
             getenv("JITRCA_SOURCE_DIR"));
    t = jitr_template_load(path.data, NULL, &e);
    CHECK(t != NULL);
    both = ca_profiles_load_dir(profiles_dir("db"), &e);
    bulb = ca_profiles_load_dir(profiles_dir("b"), &e);
    none = ca_profiles_load_dir(profiles_dir("-"), &e);
    CHECK(both != NULL && bulb != NULL && none != NULL);
    CHECK(jitr_template_check_fleet(t, NULL, both, report, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "aws-jitp-doc-template.json: for CA '(none)', profile 'device': "
                              "parameter 'AWS::IoT::Certificate::");
    CHECK_STR_CONTAINS(e.msg, "' has no value");
    CHECK_STR_CONTAINS(e.msg, "profile 'device' does not require");
    CHECK_INT_EQ(json_array_size(report), 2); /* bulb and device; station is not JITR */
    err_clear(&e);
    json_array_clear(report);
    CHECK_OK(jitr_template_check_fleet(t, NULL, bulb, report, &e), &e);
    CHECK_INT_EQ(json_array_size(report), 1);
    {
        json_t *row = json_array_get(report, 0), *plan = json_object_get(row, "plan");
        CHECK(json_is_true(json_object_get(row, "ok")));
        CHECK(json_is_true(json_object_get(row, "cn_matches_profile")));
        CHECK_STR_CONTAINS(json_string_value(json_object_get(row, "subject")), "C=US");
        CHECK_STR_EQ(json_string_value(json_object_get(plan, "thing")), "device-0001");
        CHECK_STR_EQ(json_string_value(json_array_get(json_object_get(plan, "groups"), 1)), "US");
    }
    err_clear(&e);
    CHECK(jitr_template_check_fleet(t, NULL, none, NULL, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    CHECK_STR_CONTAINS(e.msg, "no profile allows JITR");
    /* a parameter no profile can give */
    t2 = jitr_template_parse(dnq, strlen(dnq), "dnq.json", NULL, &e);
    CHECK(t2 != NULL);
    err_clear(&e);
    CHECK(jitr_template_check_fleet(t2, NULL, bulb, NULL, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "'AWS::IoT::Certificate::DistinguishedNameQualifier' has no value");
    CHECK_STR_CONTAINS(e.msg, "no profile can require dnQualifier: give the parameter a Default");
    /* a profile whose CNs may hold a '.', with a template that names the thing by the CN */
    {
        struct ca_profiles *wide = ca_profiles_load_dir(profiles_dir("w"), &e);
        struct jitr_template *t3 = NULL;
        CHECK(wide != NULL);
        buf_reset(&path);
        buf_addf(&path, "%s/policies/templates/default.json", getenv("JITRCA_SOURCE_DIR"));
        t3 = jitr_template_load(path.data, NULL, &e);
        err_clear(&e);
        if (t3 == NULL || jitr_template_check_fleet(t3, NULL, wide, NULL, &e) == 0) {
            jitr_template_free(t3);
            ca_profiles_free(wide);
            TT_FAIL("a profile accepting 'device.0001' passed");
        }
        jitr_template_free(t3);
        ca_profiles_free(wide);
        CHECK_STR_CONTAINS(e.msg, "profile 'wide': ");
        CHECK_STR_CONTAINS(e.msg, "thing name 'device.0001' is not 1..128 of [a-zA-Z0-9:_-]");
        CHECK_STR_CONTAINS(e.msg, "the profile's cn_pattern accepts 'device.0001': narrow it");
    }
out:
    json_decref(report);
    ca_profiles_free(both);
    ca_profiles_free(bulb);
    ca_profiles_free(none);
    jitr_template_free(t);
    jitr_template_free(t2);
    buf_release(&path);
    return rc;
}

/* A real certificate: the plan, or the parameter it lacks. */
static int test_check_cert(void)
{
    static const char needs_st[] =
        "{\"Parameters\":{" P_CN ",\"AWS::IoT::Certificate::StateName\":{\"Type\":\"String\"}},"
        "\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":"
        "{\"Ref\":\"AWS::IoT::Certificate::CommonName\"},\"AttributePayload\":{\"st\":{\"Ref\":"
        "\"AWS::IoT::Certificate::StateName\"}}}},\"p\":{\"Type\":\"AWS::IoT::Policy\","
        "\"Properties\":{\"PolicyName\":\"x\"}}}}";
    int rc = 0;
    struct err e = ERR_INIT;
    struct buf path = BUF_INIT;
    struct jitr_template *t = NULL, *t2 = NULL;
    json_t *plan = NULL;
    X509 *x = NULL;
    FILE *f;
    CHECK_INT_EQ(tt_sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                       "-nodes -keyout c.key -out c.pem -subj /C=DE/O=Acme/serialNumber=SN-7/"
                       "CN=bulb-7 -days 2 2>/dev/null",
                       tt_tmpdir()),
                 0);
    buf_addf(&path, "%s/c.pem", tt_tmpdir());
    f = fopen(path.data, "r");
    x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f) {
        fclose(f);
    }
    CHECK(x != NULL);
    buf_reset(&path);
    buf_addf(&path, "%s/tests/unit/jitr/data/aws-jitp-doc-template.json",
             getenv("JITRCA_SOURCE_DIR"));
    t = jitr_template_load(path.data, NULL, &e);
    CHECK(t != NULL);
    CHECK_OK(jitr_template_check_cert(t, x, &plan, &e), &e);
    CHECK_STR_EQ(json_string_value(json_object_get(plan, "thing")), "bulb-7");
    CHECK_STR_EQ(
        json_string_value(json_object_get(json_object_get(plan, "attributes"), "serialNumber")),
        "SN-7");
    CHECK_INT_EQ(strlen(json_string_value(json_object_get(plan, "certificate_id"))), 64);
    t2 = jitr_template_parse(needs_st, strlen(needs_st), "st.json", NULL, &e);
    CHECK(t2 != NULL);
    json_decref(plan);
    plan = NULL;
    CHECK(jitr_template_check_cert(t2, x, &plan, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "st.json: parameter 'AWS::IoT::Certificate::StateName' has no "
                              "value (the certificate lacks it) and no Default");
    CHECK(plan == NULL);
out:
    json_decref(plan);
    X509_free(x);
    jitr_template_free(t);
    jitr_template_free(t2);
    buf_release(&path);
    return rc;
}


/* ---- templates and policies ----------------------------------------------------------------- */

static int test_policy_device(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct buf b = BUF_INIT, p = BUF_INIT;
    buf_addf(&p, "%s/policies/iot/device.json", getenv("JITRCA_SOURCE_DIR"));
    CHECK_OK(file_read_all(p.data, 65536, &b, &e), &e);
    CHECK_OK(jitr_policy_check(b.data, b.len, &e), &e);
    CHECK(jitr_policy_size(b.data, b.len) < JITR_POLICY_MAX);
    { /* a device's own resources in every partition */
        static const char *const res[] = {
            "arn:aws-cn:iot:cn-north-1:123456789012:client/${iot:Connection.Thing.ThingName}",
            "arn:aws-us-gov:iot:us-gov-west-1:123456789012:topic/d/${iot:ClientId}",
        };
        for (size_t i = 0; i < ARRAY_LEN(res); i++) {
            buf_reset(&b);
            buf_addf(&b, "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
                     "\"Action\":\"iot:*\",\"Resource\":\"%s\"}]}", res[i]);
            CHECK_OK(jitr_policy_check(b.data, b.len, &e), &e);
        }
    }
out:
    buf_release(&b);
    buf_release(&p);
    return rc;
}

static int test_policy_bad(void)
{
    static const char *const cases[][2] = {
        { "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:*\","
          "\"Resource\":\"*\"}]}",
          "allows iot:* on *" },
        { "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":[\"iot:"
          "Connect\",\"*\"],\"Resource\":[\"arn:aws:iot:*:*:*\"]}]}",
          "allows iot:* on *" },
        { "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"s3:"
          "GetObject\",\"Resource\":\"*\"}]}",
          "action 's3:GetObject' is not an iot: action" },
        { "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:"
          "Connect\",\"Resource\":\"arn:aws:iot:*:*:client/${iot:Connection.Thing.Name}\"}]}",
          "unknown policy variable '${iot:Connection.Thing.Name}'" },
        { "{\"Version\":\"2008-10-17\",\"Statement\":[]}", "Version must be \"2012-10-17\"" },
        { "{\"Version\":\"2012-10-17\",\"Statement\":[]}", "Statement must be a non-empty list" },
        { "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Maybe\",\"Action\":\"iot:"
          "Connect\",\"Resource\":\"*\"}]}",
          "Effect must be Allow or Deny" },
        { "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:"
          "Connect\",\"Resource\":\"*\",\"Principal\":\"*\"}]}",
          "unsupported key 'Principal'" },
        { "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:*\","
          "\"Resource\":\"arn:aws-cn:iot:*\"}]}",
          "allows iot:* on *" },
        { "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:"
          "Connect\",\"Resource\":\"arn:aws-moon:iot:x:1:client/a\"}]}",
          "is not * or an AWS IoT ARN" },
        { "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:"
          "Connect\",\"Resource\":\"arn:aws-cn:s3:::bucket\"}]}",
          "is not * or an AWS IoT ARN" },
        { "[", "not JSON" },
    };
    int rc = 0;
    struct buf big = BUF_INIT;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct err e = ERR_INIT;
        CHECK(jitr_policy_check(cases[i][0], strlen(cases[i][0]), &e) != 0);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, cases[i][1]);
    }
    {
        struct err e = ERR_INIT;
        buf_addstr(&big, "{\"Version\":\"2012-10-17\",\"Statement\":[");
        for (int i = 0; i < 40; i++) {
            buf_addf(&big, "%s{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\",\"Resource\":"
                           "\"arn:aws:iot:us-east-1:123456789012:topic/t%d\"}",
                     i ? "," : "", i);
        }
        buf_addstr(&big, "]}");
        CHECK(jitr_policy_check(big.data, big.len, &e) != 0);
        CHECK_STR_CONTAINS(e.msg, "characters without whitespace; AWS allows 2048");
    }
out:
    buf_release(&big);
    return rc;
}

static int test_template_aws_doc(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct buf path = BUF_INIT;
    struct jitr_template *t = NULL;
    struct jitr_params p = { 0 };
    struct jitr_plan plan = { 0 };
    X509 *x = NULL;
    CHECK_INT_EQ(jt_make_pki(), 0);
    buf_addf(&path, "%s/tests/unit/jitr/data/aws-jitp-doc-template.json",
             getenv("JITRCA_SOURCE_DIR"));
    t = jitr_template_load(path.data, "jitrca-device", &e);
    CHECK(t != NULL);
    buf_reset(&path);
    buf_addf(&path, "%s/dev.pem", tt_tmpdir());
    x = jt_load_cert(path.data);
    CHECK(x != NULL);
    jitr_params_from_cert(x, CERT_A, &p);
    CHECK_STR_EQ(jitr_params_get(&p, "AWS::IoT::Certificate::CommonName"), "dev-0001");
    CHECK_STR_EQ(jitr_params_get(&p, "AWS::IoT::Certificate::SerialNumber"), "SN-42");
    CHECK_STR_EQ(jitr_params_get(&p, "jitrca::SerialHex"), "1234abcd");
    CHECK_OK(jitr_template_eval(t, &p, &plan, &e), &e);
    CHECK_STR_EQ(plan.thing_name, "dev-0001");
    CHECK_STR_EQ(plan.thing_type, "lightBulb-versionA");
    CHECK_INT_EQ(plan.ngroups, 2);
    CHECK_STR_EQ(plan.groups[0], "v1-lightbulbs");
    CHECK_STR_EQ(plan.groups[1], "DE");
    CHECK_STR_EQ(json_string_value(json_object_get(plan.attributes, "serialNumber")), "SN-42");
    CHECK_STR_EQ(json_string_value(json_object_get(plan.attributes, "version")), "v1");
    CHECK(plan.activate);
    CHECK_INT_EQ(plan.thing_override, JITR_OVR_MERGE);
    /* jitr.policy_name set: the one document is that policy, versioned */
    CHECK_INT_EQ(jitr_template_npolicies(t), 1);
    CHECK_STR_EQ(jitr_template_policy(t, 0)->name, "jitrca-device");
    CHECK(jitr_template_policy(t, 0)->versioned);
    CHECK_STR_CONTAINS(jitr_template_policy(t, 0)->doc, "topic/foo/bar");
    /* a certificate without C: the declared parameter has no value and no Default */
    jitr_params_release(&p);
    jitr_params_set(&p, "AWS::IoT::Certificate::CommonName", "x");
    jitr_params_set(&p, "AWS::IoT::Certificate::SerialNumber", "1");
    jitr_params_set(&p, "AWS::IoT::Certificate::Id", CERT_A);
    jitr_plan_release(&plan);
    CHECK(jitr_template_eval(t, &p, &plan, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "parameter 'AWS::IoT::Certificate::Country' has no value");
    CHECK(plan.thing_name == NULL);
out:
    jitr_plan_release(&plan);
    jitr_params_release(&p);
    jitr_template_free(t);
    X509_free(x);
    buf_release(&path);
    return rc;
}

static int test_template_functions(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct jitr_template *t = NULL;
    struct jitr_params p = { 0 };
    struct jitr_plan plan = { 0 };
    const char *tpl =
        "{\"Parameters\":{\"AWS::IoT::Certificate::CommonName\":{\"Type\":\"String\"},"
        "\"AWS::IoT::Certificate::Organization\":{\"Type\":\"String\",\"Default\":\"none\"}},"
        "\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{"
        "\"ThingName\":{\"Fn::Join\":[\"_\",[\"acme\",{\"Ref\":\"AWS::IoT::Certificate::"
        "CommonName\"}]]},"
        "\"AttributePayload\":{\"org\":{\"Fn::Sub\":\"o-${AWS::IoT::Certificate::Organization}"
        "\"},\"model\":{\"Fn::Select\":[1,{\"Fn::Split\":[\"-\",{\"Ref\":\"AWS::IoT::"
        "Certificate::CommonName\"}]}]},\"lit\":{\"Fn::Sub\":[\"${a}.y\",{\"a\":\"x\"}]}}}},"
        "\"policy\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":\"shared\"}}}}";
    t = jitr_template_parse(tpl, strlen(tpl), "t.json", "p", &e);
    CHECK(t != NULL);
    jitr_params_set(&p, "AWS::IoT::Certificate::CommonName", "sensor-x200-0007");
    CHECK_OK(jitr_template_eval(t, &p, &plan, &e), &e);
    CHECK_STR_EQ(plan.thing_name, "acme_sensor-x200-0007");
    CHECK_STR_EQ(json_string_value(json_object_get(plan.attributes, "org")), "o-none");
    CHECK_STR_EQ(json_string_value(json_object_get(plan.attributes, "model")), "x200");
    CHECK_STR_EQ(json_string_value(json_object_get(plan.attributes, "lit")), "x.y");
    CHECK_INT_EQ(jitr_template_npolicies(t), 1);
    CHECK_STR_EQ(jitr_template_policy(t, 0)->name, "shared");
    CHECK_STR_EQ(jitr_template_policy(t, 0)->doc, "");
    CHECK(!jitr_template_policy(t, 0)->versioned);
out:
    jitr_plan_release(&plan);
    jitr_params_release(&p);
    jitr_template_free(t);
    return rc;
}

static int test_template_bad(void)
{
#define RES_OK "\"thing\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":\"t\"}}"
#define POL_OK "\"policy\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{\"PolicyName\":\"p\"}}"
    static const char *const cases[][2] = {
        { "{", "not JSON" },
        { "{\"Mappings\":{}}", "unsupported top-level key 'Mappings'" },
        { "{\"Resources\":{}}", "Resources must be a non-empty object" },
        { "{\"Resources\":{" POL_OK "}}", "an AWS::IoT::Thing resource is required" },
        { "{\"Resources\":{" RES_OK "}}", "an AWS::IoT::Policy resource is required" },
        { "{\"Resources\":{\"x\":{\"Type\":\"AWS::S3::Bucket\",\"Properties\":{}}}}",
          "unsupported Type 'AWS::S3::Bucket'" },
        { "{\"Parameters\":{\"P\":{\"Type\":\"Number\"}},\"Resources\":{" RES_OK "," POL_OK "}}",
          "parameter 'P' needs \"Type\": \"String\"" },
        { "{\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":"
          "{\"Ref\":\"Nope\"}}}," POL_OK "}}",
          "Ref 'Nope' names no declared parameter" },
        { "{\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":"
          "{\"Fn::FindInMap\":[\"a\",\"b\",\"c\"]}}}," POL_OK "}}",
          "unsupported function 'Fn::FindInMap'" },
        { "{\"Resources\":{" RES_OK ",\"policy\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{"
          "\"PolicyDocument\":{\"Fn::Sub\":\"x\"}}}}}",
          "PolicyDocument must be a constant string" },
        { "{\"Resources\":{" RES_OK ",\"policy\":{\"Type\":\"AWS::IoT::Policy\",\"Properties\":{"
          "\"PolicyDocument\":\"{\\\"Version\\\":\\\"2012-10-17\\\",\\\"Statement\\\":[{"
          "\\\"Effect\\\":\\\"Allow\\\",\\\"Action\\\":\\\"iot:*\\\",\\\"Resource\\\":\\\"*\\\"}"
          "]}\"}}}}",
          "PolicyDocument: policy: Statement[0] allows iot:* on *" },
        { "{\"Resources\":{\"thing\":{\"Type\":\"AWS::IoT::Thing\",\"Properties\":{\"ThingName\":"
          "\"t\"},\"OverrideSettings\":{\"AttributePayload\":\"KEEP\"}}," POL_OK "}}",
          "OverrideSettings.AttributePayload must be DO_NOTHING" },
    };
    int rc = 0;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct err e = ERR_INIT;
        struct jitr_template *t =
            jitr_template_parse(cases[i][0], strlen(cases[i][0]), "bad.json", "p", &e);
        if (t != NULL) {
            jitr_template_free(t);
            TT_FAIL("case %zu parsed", i);
        }
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, "bad.json");
        CHECK_STR_CONTAINS(e.msg, cases[i][1]);
    }
out:
    return rc;
}

/* The default template carries policies/iot/device.json verbatim. */
static int test_default_template(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct buf p = BUF_INIT, doc = BUF_INIT;
    struct jitr_template *t = NULL;
    json_t *a = NULL, *b = NULL;
    buf_addf(&p, "%s/policies/templates/default.json", getenv("JITRCA_SOURCE_DIR"));
    t = jitr_template_load(p.data, NULL, &e);
    CHECK(t != NULL);
    buf_reset(&p);
    buf_addf(&p, "%s/policies/iot/device.json", getenv("JITRCA_SOURCE_DIR"));
    CHECK_OK(file_read_all(p.data, 65536, &doc, &e), &e);
    a = json_loads(doc.data, 0, NULL);
    b = json_loads(jitr_template_policy(t, 0)->doc, 0, NULL);
    CHECK(a != NULL && b != NULL && json_equal(a, b));
out:
    json_decref(a);
    json_decref(b);
    jitr_template_free(t);
    buf_release(&p);
    buf_release(&doc);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "policies", test_policies },     { "policies_bad", test_policies_bad },
        { "names", test_names },           { "overrides", test_overrides },
        { "eval_names", test_eval_names }, { "check_fleet", test_check_fleet },
        { "check_cert", test_check_cert },
        { "policy_device", test_policy_device },
        { "policy_bad", test_policy_bad },
        { "template_aws_doc", test_template_aws_doc },
        { "template_functions", test_template_functions },
        { "template_bad", test_template_bad },
        { "default_template", test_default_template },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
