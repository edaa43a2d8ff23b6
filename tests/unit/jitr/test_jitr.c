/*
 * jitr/: event and confirmation parsing, JITP templates (including the template from AWS's
 * documentation), policy checks, and the provisioning state machine driven with fake
 * completions: a tiny in-memory Redis (the commands flow.c sends) and a scripted AWS. Every
 * case asserts the state trace and the AWS calls made. Certificates are real (openssl CLI).
 */
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "ca/profile.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr.h"
#include "store/store.h"
#include "tests/harness/tt.h"

#define CA_ID  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define CERT_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

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

static bool known_ca(void *arg, const char *id)
{
    (void)arg;
    return strcmp(id, CA_ID) == 0;
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

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f) {
        fclose(f);
    }
    return x;
}

/* Test PKI in the temporary directory: CA, a device (CN, serialNumber, C, O), another CA. */
static int make_pki(void)
{
    static int made;
    const char *d = tt_tmpdir();
    if (made) {
        return 0;
    }
    made = 1;
    return tt_sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                 "-keyout ca.key -out ca.pem -subj /CN=Test-CA -days 30 2>/dev/null && "
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                 "-keyout other.key -out other.pem -subj /CN=Other-CA -days 30 2>/dev/null && "
                 "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                 "-keyout dev.key -out dev.csr "
                 "-subj /C=DE/O=Acme/serialNumber=SN-42/CN=dev-0001 2>/dev/null && "
                 "openssl x509 -req -in dev.csr -CA ca.pem -CAkey ca.key -set_serial 0x1234abcd "
                 "-days 10 -out dev.pem 2>/dev/null && "
                 "openssl x509 -req -in dev.csr -CA other.pem -CAkey other.key -set_serial 7 "
                 "-days 10 -out forged.pem 2>/dev/null && "
                 "openssl x509 -in dev.pem -outform DER -out dev.der && "
                 "openssl x509 -in forged.pem -outform DER -out forged.der",
                 d);
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
    CHECK_INT_EQ(make_pki(), 0);
    buf_addf(&path, "%s/tests/unit/jitr/data/aws-jitp-doc-template.json",
             getenv("JITRCA_SOURCE_DIR"));
    t = jitr_template_load(path.data, "jitrca-device", &e);
    CHECK(t != NULL);
    buf_reset(&path);
    buf_addf(&path, "%s/dev.pem", tt_tmpdir());
    x = load_cert(path.data);
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
        { "event_ok", test_event_ok },
        { "event_bad", test_event_bad },
        { "confirm", test_confirm },
        { "policy_device", test_policy_device },
        { "policy_bad", test_policy_bad },
        { "template_aws_doc", test_template_aws_doc },
        { "template_functions", test_template_functions },
        { "template_bad", test_template_bad },
        { "default_template", test_default_template },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
