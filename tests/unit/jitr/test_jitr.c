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
        { "{\"certificateId\":\"" CERT_A "\",\"caCertificateId\":\"" CA_ID
          "\",\"certificateStatus\":\"PENDING_ACTIVATION\",\"awsAccountId\":\"123456789012\","
          "\"timestamp\":\"soon\"}",
          ERRC_INVALID, "'timestamp' must be a number of milliseconds" },
        { "{\"certificateId\":\"" CERT_A "\",\"caCertificateId\":\"" CA_ID
          "\",\"certificateStatus\":\"PENDING_ACTIVATION\",\"awsAccountId\":\"123456789012\","
          "\"timestamp\":[]}",
          ERRC_INVALID, "'timestamp' must be a number or a numeric string" },
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
              "'arn' must be an arn:aws:iot: ARN" },
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

static void cert_id_of(const char *derpath, char out[65], struct buf *der)
{
    struct err e = ERR_INIT;
    uint8_t md[32];
    buf_reset(der);
    if (file_read_all(derpath, 65536, der, &e) != 0) {
        out[0] = '\0';
        return;
    }
    SHA256((const unsigned char *)der->data, der->len, md);
    hex_encode(md, sizeof(md), out);
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
    CHECK_STR_EQ(jitr_template_policy_name(t), "jitrca-device");
    CHECK_STR_CONTAINS(jitr_template_policy_doc(t), "topic/foo/bar");
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
    CHECK_STR_EQ(jitr_template_policy_name(t), "shared");
    CHECK_STR_EQ(jitr_template_policy_doc(t), "");
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
    t = jitr_template_load(p.data, "jitrca-device", &e);
    CHECK(t != NULL);
    buf_reset(&p);
    buf_addf(&p, "%s/policies/iot/device.json", getenv("JITRCA_SOURCE_DIR"));
    CHECK_OK(file_read_all(p.data, 65536, &doc, &e), &e);
    a = json_loads(doc.data, 0, NULL);
    b = json_loads(jitr_template_policy_doc(t), 0, NULL);
    CHECK(a != NULL && b != NULL && json_equal(a, b));
out:
    json_decref(a);
    json_decref(b);
    jitr_template_free(t);
    buf_release(&p);
    buf_release(&doc);
    return rc;
}

/* ---- the state machine with fake completions ------------------------------------------------ */

struct fake {
    json_t *redis; /* key -> string or object (hash) or array (list) */
    /* the one pending operation */
    int kind; /* 0 none, 1 redis, 2 aws, 3 policy, 4 audit */
    char **argv;
    int argc;
    enum aws_iot_op op;
    json_t *in;
    store_reply_cb *rcb;
    aws_iot_cb *acb;
    store_done_cb *dcb;
    void *arg;
    struct buf calls;   /* AWS calls, space-separated */
    const char *fail_op; /* AWS operation name to fail once */
    enum err_code fail_code;
    const char *fail_aws_code;
    const char *fail_op2; /* and a second one */
    enum err_code fail_code2;
    const char *fail_aws_code2;
    json_t *update_in; /* the last UpdateThing input */
    int audits;
    json_t *log;          /* the audit log: records with "seq" */
    json_t *audit_rec;    /* the pending append */
    bool audit_check;
    uint64_t audit_after;
    jitr_audit_cb *aucb;
    enum err_code audit_fail; /* fail the next append with this code (once) */
    bool index_incomplete;    /* Redis lost the index: its guarded reads fail (store.h) */
    bool finished;
    struct jitr_req *req;
};

static int f_redis(void *ctx, int argc, const char *const *argv, store_reply_cb *cb, void *arg,
                   struct err *e)
{
    struct fake *f = ctx;
    (void)e;
    BUG_ON(f->kind != 0);
    f->kind = 1;
    f->argc = argc;
    f->argv = xcalloc((size_t)argc, sizeof(char *));
    for (int i = 0; i < argc; i++) {
        f->argv[i] = xstrdup(argv[i]);
    }
    f->rcb = cb;
    f->arg = arg;
    return 0;
}

static int f_aws(void *ctx, enum aws_iot_op op, json_t *in, aws_iot_cb *cb, void *arg,
                 struct err *e)
{
    struct fake *f = ctx;
    (void)e;
    BUG_ON(f->kind != 0);
    f->kind = 2;
    f->op = op;
    f->in = json_deep_copy(in);
    f->acb = cb;
    f->arg = arg;
    return 0;
}

static int f_policy(void *ctx, const struct jitr_template *t, store_done_cb *cb, void *arg,
                    struct err *e)
{
    struct fake *f = ctx;
    (void)t;
    (void)e;
    f->kind = 3;
    f->dcb = cb;
    f->arg = arg;
    return 0;
}

static int f_audit(void *ctx, json_t *rec, bool check, uint64_t after, jitr_audit_cb *cb,
                   void *arg, struct err *e)
{
    struct fake *f = ctx;
    (void)e;
    BUG_ON(f->kind != 0);
    f->kind = 4;
    f->audit_rec = json_deep_copy(rec);
    f->audit_check = check;
    f->audit_after = after;
    f->aucb = cb;
    f->arg = arg;
    return 0;
}

static uint64_t f_audit_mark(void *ctx)
{
    struct fake *f = ctx;
    return json_array_size(f->log);
}

/* The pending append as the writer does it: the look-up (check), then the record, durably.
 * Returns the seq; *found when the look-up found it. */
static uint64_t audit_write(struct fake *f, bool *found)
{
    const char *type = json_string_value(json_object_get(f->audit_rec, "type"));
    const char *cert = json_string_value(json_object_get(f->audit_rec, "certificate_id"));
    *found = false;
    for (size_t i = json_array_size(f->log); f->audit_check && i > f->audit_after; i--) {
        json_t *r = json_array_get(f->log, i - 1);
        if (strcmp(json_string_value(json_object_get(r, "type")), type) == 0 &&
            strcmp(json_string_value(json_object_get(r, "certificate_id")), cert) == 0) {
            *found = true;
            return i;
        }
    }
    json_object_set_new(f->audit_rec, "seq", json_integer((json_int_t)json_array_size(f->log) + 1));
    json_array_append(f->log, f->audit_rec);
    f->audits++;
    return json_array_size(f->log);
}

/* Completes the pending append: written, or failed with f->audit_fail. */
static void serve_audit(struct fake *f)
{
    json_t *rec = f->audit_rec;
    f->kind = 0;
    if (f->audit_fail != ERRC_OK) {
        struct err e = ERR_INIT;
        err_set(&e, f->audit_fail, "cannot fsync audit log 'x': Input/output error");
        f->audit_fail = ERRC_OK;
        f->audit_rec = NULL;
        f->aucb(f->arg, 0, false, &e);
    } else {
        bool found;
        uint64_t seq = audit_write(f, &found);
        f->audit_rec = NULL;
        f->aucb(f->arg, seq, found, NULL);
    }
    json_decref(rec);
}

static void f_done(void *ctx, struct jitr_req *r)
{
    struct fake *f = ctx;
    (void)r;
    f->finished = true;
}

#define CHECK_FAKE(cond) BUG_ON(!(cond))

/* Serves one pending Redis command from the in-memory map. */
static void serve_redis(struct fake *f)
{
    const char *cmd = f->argv[0];
    const char *key = f->argc > 1 ? f->argv[1] : "";
    struct store_reply rep;
    struct store_reply *el = NULL;
    memset(&rep, 0, sizeof(rep));
    rep.type = STORE_REPLY_NIL;
    if (strcmp(cmd, "EVAL") == 0 && (strcmp(f->argv[1], store_index_get_lua) == 0 ||
                                     strcmp(f->argv[1], store_index_hgetall_lua) == 0)) {
        /* the guarded index reads: KEYS index:ready, the key */
        CHECK_FAKE(strcmp(f->argv[3], STORE_INDEX_READY) == 0);
        if (f->index_incomplete) { /* what store/async.c makes of the script's error reply */
            struct err e = ERR_INIT;
            err_set(&e, ERRC_UNAVAILABLE, "redis: error reply");
            snprintf(e.detail, sizeof(e.detail), "%s the index is being rebuilt",
                     STORE_INDEX_INCOMPLETE);
            for (int i = 0; i < f->argc; i++) {
                xfree(f->argv[i]);
            }
            xfree(f->argv);
            f->argv = NULL;
            f->kind = 0;
            f->rcb(f->arg, NULL, &e);
            return;
        }
        cmd = strcmp(f->argv[1], store_index_get_lua) == 0 ? "GET" : "HGETALL";
        key = f->argv[4];
    }
    if (strcmp(cmd, "SET") == 0) { /* SET key val NX PX ms */
        if (json_object_get(f->redis, f->argv[1]) == NULL) {
            json_object_set_new(f->redis, f->argv[1], json_string(f->argv[2]));
            rep.type = STORE_REPLY_STRING;
            rep.str = "OK";
            rep.len = 2;
        }
    } else if (strcmp(cmd, "GET") == 0) {
        json_t *v = json_object_get(f->redis, key);
        if (json_is_string(v)) {
            rep.type = STORE_REPLY_STRING;
            rep.str = json_string_value(v);
            rep.len = json_string_length(v);
        }
    } else if (strcmp(cmd, "HGETALL") == 0) {
        json_t *h = json_object_get(f->redis, key);
        size_t i = 0;
        const char *k;
        json_t *v;
        rep.type = STORE_REPLY_ARRAY;
        el = xcalloc(2 * json_object_size(h) + 1, sizeof(*el));
        json_object_foreach (h, k, v) {
            el[i].type = STORE_REPLY_STRING;
            el[i].str = k;
            el[i].len = strlen(k);
            el[i + 1].type = STORE_REPLY_STRING;
            el[i + 1].str = json_string_value(v);
            el[i + 1].len = json_string_length(v);
            i += 2;
        }
        rep.elem = el;
        rep.n = i;
    } else if (strcmp(cmd, "EVAL") == 0 && strstr(f->argv[1], "RPUSH")) {
        /* persist: KEYS dev, trace, lock; ARGV line, token, px, fields... */
        json_t *h = json_object_get(f->redis, f->argv[3]), *l;
        json_t *lk = json_object_get(f->redis, f->argv[5]);
        if (!json_is_string(lk) || strcmp(json_string_value(lk), f->argv[7]) != 0) {
            struct err e = ERR_INIT;
            err_set(&e, ERRC_UNAVAILABLE, "LOCKLOST");
            for (int i = 0; i < f->argc; i++) {
                xfree(f->argv[i]);
            }
            xfree(f->argv);
            f->argv = NULL;
            f->kind = 0;
            f->rcb(f->arg, NULL, &e);
            return;
        }
        if (h == NULL) {
            json_object_set_new(f->redis, f->argv[3], json_object());
            h = json_object_get(f->redis, f->argv[3]);
        }
        for (int i = 9; i + 1 < f->argc; i += 2) {
            json_object_set_new(h, f->argv[i], json_string(f->argv[i + 1]));
        }
        l = json_object_get(f->redis, f->argv[4]);
        if (l == NULL) {
            json_object_set_new(f->redis, f->argv[4], json_array());
            l = json_object_get(f->redis, f->argv[4]);
        }
        json_array_append_new(l, json_string(f->argv[6]));
        rep.type = STORE_REPLY_INTEGER;
        rep.integer = 1;
    } else if (strcmp(cmd, "EVAL") == 0) { /* unlock */
        json_t *v = json_object_get(f->redis, f->argv[3]);
        rep.type = STORE_REPLY_INTEGER;
        if (json_is_string(v) && strcmp(json_string_value(v), f->argv[4]) == 0) {
            json_object_del(f->redis, f->argv[3]);
            rep.integer = 1;
        }
    }
    for (int i = 0; i < f->argc; i++) {
        xfree(f->argv[i]);
    }
    xfree(f->argv);
    f->argv = NULL;
    f->kind = 0;
    f->rcb(f->arg, &rep, NULL);
    xfree(el);
}

static void serve_aws(struct fake *f)
{
    struct aws_iot_result res;
    struct err e = ERR_INIT;
    json_t *out = json_object();
    const char *name = aws_iot_op_name(f->op);
    bool fail = f->fail_op && strcmp(f->fail_op, name) == 0;
    bool fail2 = !fail && f->fail_op2 && strcmp(f->fail_op2, name) == 0;
    memset(&res, 0, sizeof(res));
    res.op = f->op;
    res.error_code = "";
    res.error_message = "";
    res.request_id = "req";
    res.out = out;
    if (f->calls.len) {
        buf_addch(&f->calls, ' ');
    }
    buf_addstr(&f->calls, name);
    if (f->op == AWS_IOT_UPDATE_CERTIFICATE) {
        buf_addf(&f->calls, ":%s", json_string_value(json_object_get(f->in, "newStatus")));
    }
    if (f->op == AWS_IOT_UPDATE_THING) {
        json_decref(f->update_in);
        f->update_in = json_incref(f->in);
    }
    if (f->op == AWS_IOT_DESCRIBE_CERTIFICATE) {
        json_t *pem = json_object_get(f->redis, "aws:pem");
        json_object_set_new(out, "certificateDescription",
                            json_pack("{s:O}", "certificatePem", pem));
    }
    json_decref(f->in);
    f->in = NULL;
    f->kind = 0;
    if (fail) {
        f->fail_op = NULL;
        res.error_code = f->fail_aws_code;
        res.status = 400;
        err_set(&e, f->fail_code, "AWS IoT %s: %s", name, f->fail_aws_code);
        f->acb(f->arg, &res, &e);
    } else if (fail2) {
        f->fail_op2 = NULL;
        res.error_code = f->fail_aws_code2;
        res.status = 400;
        err_set(&e, f->fail_code2, "AWS IoT %s: %s", name, f->fail_aws_code2);
        f->acb(f->arg, &res, &e);
    } else {
        res.status = 200;
        f->acb(f->arg, &res, NULL);
    }
    json_decref(out);
}

/* Completes operations until the flow finishes (or, with to_audit, waits for its append). */
static void run_to(struct fake *f, bool to_audit)
{
    while (!f->finished && !(to_audit && f->kind == 4)) {
        if (f->kind == 1) {
            serve_redis(f);
        } else if (f->kind == 2) {
            serve_aws(f);
        } else if (f->kind == 3) {
            f->kind = 0;
            f->dcb(f->arg, NULL);
        } else if (f->kind == 4) {
            serve_audit(f);
        } else {
            break;
        }
    }
}

static void run(struct fake *f)
{
    run_to(f, false);
}

struct world {
    struct fake f;
    struct jitr_io io;
    struct jitr_env env;
    struct jitr_ca cas[2];
    struct ca_profiles *profiles;
    struct jitr_template *tpl;
    X509 *ca, *other;
    struct buf der;
    char dev_id[65];
    char forged_id[65];
};

static int64_t far_future(void)
{
    return time_now_ms() + 400LL * 86400 * 1000;
}

static int world_init(struct world *w)
{
    struct err e = ERR_INIT;
    struct buf p = BUF_INIT, b64 = BUF_INIT, pem = BUF_INIT;
    memset(w, 0, sizeof(*w));
    if (make_pki() != 0) {
        return -1;
    }
    w->f.redis = json_object();
    w->f.log = json_array();
    w->io = (struct jitr_io){ .ctx = &w->f,
                              .redis = f_redis,
                              .aws = f_aws,
                              .policy_ready = f_policy,
                              .audit = f_audit,
                              .audit_mark = f_audit_mark,
                              .done = f_done };
    buf_addf(&p, "%s/ca.pem", tt_tmpdir());
    w->ca = load_cert(p.data);
    buf_reset(&p);
    buf_addf(&p, "%s/other.pem", tt_tmpdir());
    w->other = load_cert(p.data);
    w->cas[0] = (struct jitr_ca){ "testca", CA_ID, w->ca, false };
    w->cas[1] = (struct jitr_ca){ "retired", "bb", w->other, true };
    w->profiles = ca_profiles_load_dir(JITRCA_PROFILES_DIR, &e);
    buf_reset(&p);
    buf_addf(&p, "%s/policies/templates/default.json", getenv("JITRCA_SOURCE_DIR"));
    w->tpl = jitr_template_load(p.data, "jitrca-device", &e);
    w->env = (struct jitr_env){ .cas = w->cas, .ncas = 2, .profiles = w->profiles, .tpl = w->tpl,
                                .region = "us-east-1", .lock_ms = 60000 };
    /* the index record of dev.pem, as issuance writes it */
    buf_reset(&p);
    buf_addf(&p, "%s/forged.der", tt_tmpdir());
    cert_id_of(p.data, w->forged_id, &w->der);
    buf_reset(&p);
    buf_addf(&p, "%s/forged.pem", tt_tmpdir());
    if (file_read_all(p.data, 65536, &pem, &e) == 0) {
        json_object_set_new(w->f.redis, "aws:pem", json_string(pem.data));
    }
    buf_reset(&p);
    buf_addf(&p, "%s/dev.der", tt_tmpdir());
    cert_id_of(p.data, w->dev_id, &w->der);
    base64_encode(&b64, (const uint8_t *)w->der.data, w->der.len);
    buf_reset(&p);
    buf_addf(&p, STORE_PREFIX "fp:%s", w->dev_id);
    json_object_set_new(w->f.redis, p.data, json_string("1234abcd"));
    json_object_set_new(w->f.redis, STORE_PREFIX "cert:1234abcd",
                        json_pack("{s:s, s:s, s:s, s:s, s:s}", "der", b64.data, "status", "valid",
                                  "ca", "testca", "profile", "device", "serial", "1234abcd"));
    buf_release(&p);
    buf_release(&b64);
    buf_release(&pem);
    return (w->ca && w->other && w->profiles && w->tpl) ? 0 : -1;
}

static void world_release(struct world *w)
{
    json_decref(w->f.redis);
    json_decref(w->f.log);
    json_decref(w->f.update_in);
    buf_release(&w->f.calls);
    ca_profiles_free(w->profiles);
    jitr_template_free(w->tpl);
    X509_free(w->ca);
    X509_free(w->other);
    buf_release(&w->der);
}

/* Runs one flow for cert_id; returns its outcome; trace copied into trace. */
static enum jitr_outcome flow(struct world *w, const char *cert_id, struct buf *trace,
                              struct err *why)
{
    struct jitr_event ev;
    struct jitr_req *r;
    enum jitr_outcome o;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.cert_id, sizeof(ev.cert_id), "%s", cert_id);
    snprintf(ev.ca_id, sizeof(ev.ca_id), "%s", CA_ID);
    snprintf(ev.account, sizeof(ev.account), "123456789012");
    w->f.finished = false;
    buf_reset(&w->f.calls);
    r = jitr_req_new(&w->env, &w->io, &ev, "1-0");
    jitr_req_start(r);
    run(&w->f);
    o = jitr_req_outcome(r);
    buf_reset(trace);
    buf_addstr(trace, jitr_req_trace(r));
    if (why) {
        err_copy(why, jitr_req_err(r));
    }
    jitr_req_free(r);
    return o;
}

/* Starts a flow for cert_id and runs it until it waits for its audit append. */
static struct jitr_req *begin(struct world *w, const char *cert_id)
{
    struct jitr_event ev;
    struct jitr_req *r;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.cert_id, sizeof(ev.cert_id), "%s", cert_id);
    snprintf(ev.ca_id, sizeof(ev.ca_id), "%s", CA_ID);
    snprintf(ev.account, sizeof(ev.account), "123456789012");
    w->f.finished = false;
    buf_reset(&w->f.calls);
    r = jitr_req_new(&w->env, &w->io, &ev, "1-0");
    jitr_req_start(r);
    run_to(&w->f, true);
    return r;
}

/* jitrd dies while r waits for its append: Redis keeps what was saved until then (the lock
 * expires); appended says whether the record had reached the log. r is freed. */
static void crash_in_audit(struct world *w, struct jitr_req *r, bool appended)
{
    json_t *saved = json_deep_copy(w->f.redis);
    struct err e = ERR_INIT;
    char key[160];
    bool found;
    if (appended) {
        audit_write(&w->f, &found);
    }
    json_decref(w->f.audit_rec);
    w->f.audit_rec = NULL;
    w->f.kind = 0;
    /* the request object still has to end: whatever it writes now is undone below */
    err_set(&e, ERRC_CANCELED, "crashed");
    w->f.aucb(w->f.arg, 0, false, &e);
    run(&w->f);
    json_decref(w->f.redis);
    w->f.redis = saved;
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:lock:%s", jitr_req_event(r)->cert_id);
    json_object_del(w->f.redis, key);
    jitr_req_free(r);
}

/* Adds a record to the fake audit log (another writer's, or an older one). */
static void log_add(struct world *w, const char *type, const char *cert)
{
    json_array_append_new(w->f.log,
                          json_pack("{s:s, s:s, s:I}", "type", type, "certificate_id", cert,
                                    "seq", (json_int_t)json_array_size(w->f.log) + 1));
}

static const char *dev_state(struct world *w, const char *id, const char *fieldname)
{
    char key[160];
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", id);
    return json_string_value(json_object_get(json_object_get(w->f.redis, key), fieldname));
}

#define HAPPY                                                                                      \
    "RECEIVED LOCK LOAD LOOKUP EVALUATE CREATE_THING PERSIST POLICY ATTACH_POLICY PERSIST "        \
    "ATTACH_PRINCIPAL PERSIST ACTIVATE PERSIST RECORD PERSIST UNLOCK FINISHED"

static int test_flow_activate_then_duplicate(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, HAPPY);
    /* four AWS calls for a certificate we issued: no DescribeCertificate, no CreatePolicy */
    CHECK_STR_EQ(w.f.calls.data,
                 "CreateThing AttachPolicy AttachThingPrincipal UpdateCertificate:ACTIVE");
    CHECK_INT_EQ(w.f.audits, 1);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "thing"), "dev-0001");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "serial"), "1234abcd");
    /* the lock was released */
    {
        char key[160];
        snprintf(key, sizeof(key), STORE_PREFIX "jitr:lock:%s", w.dev_id);
        CHECK(json_object_get(w.f.redis, key) == NULL);
    }
    /* a duplicate event does nothing */
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DUPLICATE);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD UNLOCK FINISHED");
    CHECK_STR_EQ(w.f.calls.data ? w.f.calls.data : "", "");
    CHECK_INT_EQ(w.f.audits, 1);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

static int test_flow_resume_after_failure(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    w.f.fail_op = "AttachThingPrincipal";
    w.f.fail_code = ERRC_UNAVAILABLE;
    w.f.fail_aws_code = "ThrottlingException";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_RETRY);
    CHECK_STR_CONTAINS(why.msg, "AttachThingPrincipal");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "ATTACH_PRINCIPAL");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "attempts"), "1");
    /* the retry resumes at the stored step: no CreateThing, no AttachPolicy again */
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP EVALUATE ATTACH_PRINCIPAL PERSIST ACTIVATE "
                          "PERSIST RECORD PERSIST UNLOCK FINISHED");
    CHECK_STR_EQ(w.f.calls.data, "AttachThingPrincipal UpdateCertificate:ACTIVE");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

static int test_flow_permanent_failure(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    w.f.fail_op = "CreateThing";
    w.f.fail_code = ERRC_INVALID;
    w.f.fail_aws_code = "InvalidRequestException";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "CreateThing");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DEAD");
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP EVALUATE CREATE_THING PERSIST UNLOCK "
                          "FINISHED");
    CHECK_INT_EQ(w.f.audits, 0);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

static int test_flow_thing_exists(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    w.f.fail_op = "CreateThing";
    w.f.fail_code = ERRC_CONFLICT;
    w.f.fail_aws_code = "ResourceAlreadyExistsException";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, HAPPY);
    /* by config: a dead letter instead */
    json_object_clear(w.f.redis);
    world_release(&w);
    CHECK_INT_EQ(world_init(&w), 0);
    w.env.thing_conflict_fail = true;
    w.f.fail_op = "CreateThing";
    w.f.fail_code = ERRC_CONFLICT;
    w.f.fail_aws_code = "ResourceAlreadyExistsException";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DEAD);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

static int test_flow_revoked(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    json_object_set_new(json_object_get(w.f.redis, STORE_PREFIX "cert:1234abcd"), "status",
                        json_string("revoked"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_REJECTED);
    CHECK_STR_CONTAINS(why.msg, "certificate serial 1234abcd is revoked");
    CHECK_STR_EQ(w.f.calls.data, "UpdateCertificate:REVOKED");
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP EVALUATE REJECT PERSIST RECORD_REJECT "
                          "PERSIST UNLOCK FINISHED");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "REJECTED");
    CHECK_INT_EQ(w.f.audits, 1);
    /* never activated, even when the event comes again */
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DUPLICATE);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

static int test_flow_reject_reasons(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    json_t *rec;
    /* profile without JITR */
    CHECK_INT_EQ(world_init(&w), 0);
    rec = json_object_get(w.f.redis, STORE_PREFIX "cert:1234abcd");
    json_object_set_new(rec, "profile", json_string("station"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_REJECTED);
    CHECK_STR_CONTAINS(why.msg, "profile 'station' does not allow JITR");
    world_release(&w);
    /* retired CA */
    CHECK_INT_EQ(world_init(&w), 0);
    w.cas[0].retired = true;
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_REJECTED);
    CHECK_STR_CONTAINS(why.msg, "CA 'testca' is retired");
    world_release(&w);
    /* expired (the clock moved past notAfter), and left pending by config */
    CHECK_INT_EQ(world_init(&w), 0);
    w.env.now_ms = far_future;
    w.env.reject_leave_pending = true;
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_REJECTED);
    CHECK_STR_CONTAINS(why.msg, "has expired");
    CHECK_STR_EQ(w.f.calls.data ? w.f.calls.data : "", "");
    world_release(&w);
    /* the index names a CA we do not have */
    CHECK_INT_EQ(world_init(&w), 0);
    rec = json_object_get(w.f.redis, STORE_PREFIX "cert:1234abcd");
    json_object_set_new(rec, "ca", json_string("ghost"));
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_REJECTED);
    CHECK_STR_CONTAINS(why.msg, "was not issued by one of our CAs (ghost)");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* A certificate we never issued: not in the index, DescribeCertificate, not signed by us. */
static int test_flow_forged(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    CHECK_INT_EQ(flow(&w, w.forged_id, &tr, &why), JITR_OUT_REJECTED);
    CHECK_STR_CONTAINS(why.msg, "is not signed by CA 'testca'");
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP DESCRIBE EVALUATE REJECT PERSIST "
                          "RECORD_REJECT PERSIST UNLOCK FINISHED");
    CHECK_STR_EQ(w.f.calls.data, "DescribeCertificate UpdateCertificate:REVOKED");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

static int test_flow_busy(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    char key[160];
    CHECK_INT_EQ(world_init(&w), 0);
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:lock:%s", w.dev_id);
    json_object_set_new(w.f.redis, key, json_string("someone-else"));
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_BUSY);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK UNLOCK FINISHED");
    CHECK_STR_EQ(json_string_value(json_object_get(w.f.redis, key)), "someone-else");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* Redis lost the index: the flow neither rejects nor dead-letters the certificate, stores
 * nothing and ends BUSY (retried, not counted as an attempt); once the index is rebuilt the
 * same event provisions the device. */
static int test_flow_index_incomplete(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    w.f.index_incomplete = true;
    for (int i = 0; i < 3; i++) {
        CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_BUSY);
        CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP UNLOCK FINISHED");
        CHECK_STR_CONTAINS(why.msg, "the index is incomplete");
        err_clear(&why);
    }
    CHECK_STR_EQ(w.f.calls.data ? w.f.calls.data : "", "");
    CHECK(dev_state(&w, w.dev_id, "state") == NULL);
    CHECK_INT_EQ(w.f.audits, 0);
    w.f.index_incomplete = false;
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, HAPPY);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* The append runs off the loop: the flow waits in RECORD, with its state saved before. */
static int test_flow_audit_waits(void)
{
    int rc = 0;
    struct world w;
    struct jitr_req *r = NULL;
    CHECK_INT_EQ(world_init(&w), 0);
    log_add(&w, "issue", "x");
    log_add(&w, "issue", "y");
    r = begin(&w, w.dev_id);
    CHECK_INT_EQ(w.f.kind, 4);
    CHECK(!w.f.finished);
    CHECK_INT_EQ(jitr_req_state(r), JITR_ST_RECORD);
    CHECK_INT_EQ(jitr_req_outcome(r), JITR_OUT_NONE);
    /* ACTIVE in AWS, RECORD saved with the log's end at that time */
    CHECK_STR_EQ(w.f.calls.data,
                 "CreateThing AttachPolicy AttachThingPrincipal UpdateCertificate:ACTIVE");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "RECORD");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "audit_after"), "2");
    CHECK(!w.f.audit_check);
    CHECK_STR_EQ(json_string_value(json_object_get(w.f.audit_rec, "type")), "jitr_activate");
    CHECK_INT_EQ(json_array_size(w.f.log), 2);
    /* the completion moves it on: DONE only now */
    run(&w.f);
    CHECK(w.f.finished);
    CHECK_INT_EQ(jitr_req_outcome(r), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(jitr_req_trace(r), HAPPY);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "audit_seq"), "3");
    CHECK_INT_EQ(json_array_size(w.f.log), 3);
out:
    jitr_req_free(r);
    world_release(&w);
    return rc;
}

/* A failed append (fdatasync error) is retried like other failures, from RECORD, and the
 * retry looks for the record first (after a failed fdatasync it may be on disk after all). */
static int test_flow_audit_failure_retry(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_init(&w), 0);
    w.f.audit_fail = ERRC_UNAVAILABLE;
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_RETRY);
    CHECK_STR_CONTAINS(why.msg, "audit: cannot fsync audit log");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "RECORD");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "attempts"), "1");
    CHECK_INT_EQ(json_array_size(w.f.log), 0);
    /* the retry: no AWS call (ACTIVE was done), one record */
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP EVALUATE RECORD PERSIST UNLOCK FINISHED");
    CHECK_STR_EQ(w.f.calls.data ? w.f.calls.data : "", "");
    CHECK(w.f.audit_check);
    CHECK_INT_EQ(json_array_size(w.f.log), 1);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* jitrd dies before the append completed and before the record reached the log: the replay
 * appends it. An older record of the same certificate (below audit_after) does not count. */
static int test_flow_audit_crash_before_append(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct jitr_req *r;
    CHECK_INT_EQ(world_init(&w), 0);
    log_add(&w, "jitr_activate", w.dev_id); /* e.g. before a jitrctl jitr dlq retry */
    r = begin(&w, w.dev_id);
    CHECK_INT_EQ(jitr_req_state(r), JITR_ST_RECORD);
    crash_in_audit(&w, r, false);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "RECORD");
    CHECK_INT_EQ(json_array_size(w.f.log), 1);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP EVALUATE RECORD PERSIST UNLOCK FINISHED");
    CHECK(w.f.audit_check);
    CHECK_INT_EQ(w.f.audit_after, 1);
    CHECK_INT_EQ(json_array_size(w.f.log), 2);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "audit_seq"), "2");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* jitrd dies after the record was durable, before DONE was saved: the replay finds it and
 * appends nothing; other writers' records after it do not matter. */
static int test_flow_audit_crash_after_append(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct jitr_req *r;
    json_t *trace;
    char key[160];
    CHECK_INT_EQ(world_init(&w), 0);
    log_add(&w, "issue", "x");
    r = begin(&w, w.dev_id);
    crash_in_audit(&w, r, true);
    log_add(&w, "issue", "y");
    CHECK_INT_EQ(json_array_size(w.f.log), 3);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP EVALUATE RECORD PERSIST UNLOCK FINISHED");
    CHECK_STR_EQ(w.f.calls.data ? w.f.calls.data : "", "");
    CHECK_INT_EQ(json_array_size(w.f.log), 3);
    CHECK_INT_EQ(w.f.audits, 1);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "audit_seq"), "2");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DONE");
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:trace:%s", w.dev_id);
    trace = json_object_get(w.f.redis, key);
    CHECK_STR_CONTAINS(json_string_value(json_array_get(trace, json_array_size(trace) - 1)),
                       "RECORD -> DONE audited already");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* The same for a rejection: one jitr_reject record, and REVOKED is not asked again. */
static int test_flow_audit_crash_reject(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    struct jitr_req *r;
    CHECK_INT_EQ(world_init(&w), 0);
    json_object_set_new(json_object_get(w.f.redis, STORE_PREFIX "cert:1234abcd"), "status",
                        json_string("revoked"));
    r = begin(&w, w.dev_id);
    CHECK_INT_EQ(jitr_req_state(r), JITR_ST_RECORD_REJECT);
    CHECK_STR_EQ(w.f.calls.data, "UpdateCertificate:REVOKED");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "RECORD_REJECT");
    crash_in_audit(&w, r, true);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_REJECTED);
    CHECK_STR_CONTAINS(why.msg, "certificate serial 1234abcd is revoked");
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP EVALUATE RECORD_REJECT PERSIST UNLOCK "
                          "FINISHED");
    CHECK_STR_EQ(w.f.calls.data ? w.f.calls.data : "", "");
    CHECK_INT_EQ(json_array_size(w.f.log), 1);
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "REJECTED");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* The template from AWS's JITP documentation, with its OverrideSettings.AttributePayload set to
 * ovr (NULL: as published, MERGE) and ThingTypeName to type_ovr (NULL: REPLACE). */
static struct jitr_template *doc_template(const char *ovr, const char *type_ovr, struct err *e)
{
    struct buf path = BUF_INIT, text = BUF_INIT, out = BUF_INIT;
    struct jitr_template *t = NULL;
    const char *a, *b;
    buf_addf(&path, "%s/tests/unit/jitr/data/aws-jitp-doc-template.json",
             getenv("JITRCA_SOURCE_DIR"));
    if (file_read_all(path.data, 65536, &text, e) != 0) {
        goto out;
    }
    a = strstr(text.data, "\"AttributePayload\" : \"MERGE\"");
    b = strstr(text.data, "\"ThingTypeName\" : \"REPLACE\"");
    if (a == NULL || b == NULL || b < a) {
        err_set(e, ERRC_INVALID, "the documentation template changed");
        goto out;
    }
    buf_add(&out, text.data, (size_t)(a - text.data));
    buf_addf(&out, "\"AttributePayload\" : \"%s\"", ovr ? ovr : "MERGE");
    a += strlen("\"AttributePayload\" : \"MERGE\"");
    buf_add(&out, a, (size_t)(b - a));
    buf_addf(&out, "\"ThingTypeName\" : \"%s\"", type_ovr ? type_ovr : "REPLACE");
    b += strlen("\"ThingTypeName\" : \"REPLACE\"");
    buf_addstr(&out, b);
    t = jitr_template_parse(out.data, out.len, "aws-jitp-doc-template.json", "jitrca-device", e);
out:
    buf_release(&path);
    buf_release(&text);
    buf_release(&out);
    return t;
}

/* A world provisioning with the documentation template; the thing exists with other
 * attributes (CreateThing: ResourceAlreadyExistsException). */
static int world_doc(struct world *w, const char *ovr, const char *type_ovr)
{
    struct err e = ERR_INIT;
    if (world_init(w) != 0) {
        return -1;
    }
    jitr_template_free(w->tpl);
    w->tpl = doc_template(ovr, type_ovr, &e);
    w->env.tpl = w->tpl;
    w->f.fail_op = "CreateThing";
    w->f.fail_code = ERRC_CONFLICT;
    w->f.fail_aws_code = "ResourceAlreadyExistsException";
    if (w->tpl == NULL) {
        fprintf(stderr, "%s\n", e.msg);
    }
    return w->tpl ? 0 : -1;
}

#define DOC_CALLS_AFTER_UPDATE                                                                     \
    "AttachPolicy AttachThingPrincipal AddThingToThingGroup AddThingToThingGroup "                 \
    "UpdateCertificate:ACTIVE"

/* OverrideSettings from AWS's documentation template: MERGE the attributes into the existing
 * thing's, REPLACE its type: one UpdateThing. */
static int test_flow_override_merge(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    json_t *ap;
    CHECK_INT_EQ(world_doc(&w, NULL, NULL), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(tr.data, "RECEIVED LOCK LOAD LOOKUP EVALUATE CREATE_THING UPDATE_THING PERSIST "
                          "POLICY ATTACH_POLICY PERSIST ATTACH_PRINCIPAL PERSIST ADD_TO_GROUP "
                          "PERSIST ACTIVATE PERSIST RECORD PERSIST UNLOCK FINISHED");
    CHECK_STR_EQ(w.f.calls.data, "CreateThing UpdateThing " DOC_CALLS_AFTER_UPDATE);
    CHECK(w.f.update_in != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(w.f.update_in, "thingName")), "dev-0001");
    CHECK_STR_EQ(json_string_value(json_object_get(w.f.update_in, "thingTypeName")),
                 "lightBulb-versionA");
    ap = json_object_get(w.f.update_in, "attributePayload");
    CHECK(json_is_true(json_object_get(ap, "merge")));
    CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(ap, "attributes"), "version")),
                 "v1");
    CHECK_STR_EQ(json_string_value(
                     json_object_get(json_object_get(ap, "attributes"), "serialNumber")),
                 "SN-42");
    CHECK_INT_EQ(json_object_size(json_object_get(ap, "attributes")), 2);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* REPLACE: the template's attributes become the thing's (merge false); ThingTypeName
 * DO_NOTHING leaves the type. */
static int test_flow_override_replace(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    json_t *ap;
    CHECK_INT_EQ(world_doc(&w, "REPLACE", "DO_NOTHING"), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(w.f.calls.data, "CreateThing UpdateThing " DOC_CALLS_AFTER_UPDATE);
    ap = json_object_get(w.f.update_in, "attributePayload");
    CHECK(json_is_false(json_object_get(ap, "merge")));
    CHECK_INT_EQ(json_object_size(json_object_get(ap, "attributes")), 2);
    CHECK(json_object_get(w.f.update_in, "thingTypeName") == NULL);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* DO_NOTHING keeps the thing as it is; FAIL (either setting) and thing_conflict "fail" send the
 * device to the dead letters; an unknown thing needs no update. */
static int test_flow_override_keep_fail(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_doc(&w, "DO_NOTHING", "DO_NOTHING"), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(w.f.calls.data, "CreateThing " DOC_CALLS_AFTER_UPDATE);
    world_release(&w);
    CHECK_INT_EQ(world_doc(&w, "FAIL", NULL), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "CreateThing");
    CHECK_STR_EQ(w.f.calls.data, "CreateThing");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DEAD");
    world_release(&w);
    CHECK_INT_EQ(world_doc(&w, "MERGE", "FAIL"), 0);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DEAD);
    world_release(&w);
    CHECK_INT_EQ(world_doc(&w, NULL, NULL), 0);
    w.env.thing_conflict_fail = true; /* jitrd's setting wins over the template */
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_DEAD);
    CHECK(w.f.update_in == NULL);
    world_release(&w);
    /* a new thing: created as the template says, nothing to update */
    CHECK_INT_EQ(world_doc(&w, NULL, NULL), 0);
    w.f.fail_op = NULL;
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(w.f.calls.data, "CreateThing " DOC_CALLS_AFTER_UPDATE);
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* UpdateThing throttled: retried from UPDATE_THING (no second CreateThing); refused (the thing
 * type does not exist): a dead letter naming UpdateThing. */
static int test_flow_override_update_fails(void)
{
    int rc = 0;
    struct world w;
    struct buf tr = BUF_INIT;
    struct err why = ERR_INIT;
    CHECK_INT_EQ(world_doc(&w, NULL, NULL), 0);
    w.f.fail_op2 = "UpdateThing";
    w.f.fail_code2 = ERRC_UNAVAILABLE;
    w.f.fail_aws_code2 = "ThrottlingException";
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_RETRY);
    CHECK_STR_CONTAINS(why.msg, "UpdateThing");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "UPDATE_THING");
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, NULL), JITR_OUT_ACTIVATED);
    CHECK_STR_EQ(w.f.calls.data, "UpdateThing " DOC_CALLS_AFTER_UPDATE);
    world_release(&w);
    CHECK_INT_EQ(world_doc(&w, NULL, NULL), 0);
    w.f.fail_op2 = "UpdateThing";
    w.f.fail_code2 = ERRC_NOT_FOUND;
    w.f.fail_aws_code2 = "ResourceNotFoundException";
    err_clear(&why);
    CHECK_INT_EQ(flow(&w, w.dev_id, &tr, &why), JITR_OUT_DEAD);
    CHECK_STR_CONTAINS(why.msg, "UpdateThing: AWS IoT UpdateThing: ResourceNotFoundException");
    CHECK_STR_EQ(dev_state(&w, w.dev_id, "state"), "DEAD");
out:
    buf_release(&tr);
    world_release(&w);
    return rc;
}

/* OverrideSettings values the template parser refuses, with the message. */
static int test_template_override_bad(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct jitr_template *t = doc_template("SOMETIMES", NULL, &e);
    CHECK(t == NULL);
    CHECK_STR_CONTAINS(e.msg, "aws-jitp-doc-template.json: thing OverrideSettings."
                              "AttributePayload must be DO_NOTHING, REPLACE, MERGE or FAIL");
    err_clear(&e);
    t = doc_template(NULL, "MERGE", &e);
    CHECK(t == NULL);
    CHECK_STR_CONTAINS(e.msg, "thing OverrideSettings.ThingTypeName must be DO_NOTHING, "
                              "REPLACE or FAIL");
out:
    jitr_template_free(t);
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
        { "flow_activate_then_duplicate", test_flow_activate_then_duplicate },
        { "flow_resume_after_failure", test_flow_resume_after_failure },
        { "flow_permanent_failure", test_flow_permanent_failure },
        { "flow_thing_exists", test_flow_thing_exists },
        { "flow_revoked", test_flow_revoked },
        { "flow_reject_reasons", test_flow_reject_reasons },
        { "flow_forged", test_flow_forged },
        { "flow_busy", test_flow_busy },
        { "flow_index_incomplete", test_flow_index_incomplete },
        { "flow_audit_waits", test_flow_audit_waits },
        { "flow_audit_failure_retry", test_flow_audit_failure_retry },
        { "flow_audit_crash_before_append", test_flow_audit_crash_before_append },
        { "flow_audit_crash_after_append", test_flow_audit_crash_after_append },
        { "flow_audit_crash_reject", test_flow_audit_crash_reject },
        { "flow_override_merge", test_flow_override_merge },
        { "flow_override_replace", test_flow_override_replace },
        { "flow_override_keep_fail", test_flow_override_keep_fail },
        { "flow_override_update_fails", test_flow_override_update_fails },
        { "template_override_bad", test_template_override_bad },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
