/*
 * The IoT client against the AWS IoT stand-in (run under tests/sim/run_sim.py, which sets
 * AWS_ENDPOINT_URL_IOT, AWS_REGION and the test credentials): every typed call with success and
 * its documented errors, retries on throttling and 5xx, timeouts, an unreachable endpoint,
 * malformed and truncated responses, signature and credential failures, input validation,
 * connection reuse and cancellation.
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "aws/iot.h"
#include "ca/verification.h"
#include "core/mem.h"
#include "core/util.h"
#include "tests/harness/tt.h"

extern char **environ;

static struct event_base *base;

/* A copy of the environment with NAME=value overrides (value NULL removes NAME). */
static char **env_with(const char *const *kv, size_t n)
{
    size_t ne = 0, k = 0;
    while (environ[ne]) {
        ne++;
    }
    char **out = xcalloc(ne + n / 2 + 1, sizeof(*out));
    for (size_t i = 0; i < ne; i++) {
        bool skip = false;
        for (size_t j = 0; j < n; j += 2) {
            size_t l = strlen(kv[j]);
            if (strncmp(environ[i], kv[j], l) == 0 && environ[i][l] == '=') {
                skip = true;
            }
        }
        if (!skip) {
            out[k++] = xstrdup(environ[i]);
        }
    }
    for (size_t j = 0; j < n; j += 2) {
        if (kv[j + 1] != NULL) {
            struct buf b = BUF_INIT;
            buf_addf(&b, "%s=%s", kv[j], kv[j + 1]);
            out[k++] = buf_detach(&b, NULL);
        }
    }
    return out;
}

static void env_free(char **env)
{
    for (size_t i = 0; env && env[i]; i++) {
        xfree(env[i]);
    }
    xfree(env);
}

static struct aws_iot *client(const char *const *env, const char *endpoint, long timeout_ms,
                              struct err *e)
{
    struct aws_iot_opts o = { 0 };
    o.base = base;
    o.env = env;
    o.endpoint = endpoint;
    o.no_quota = true;
    o.timeout_ms = timeout_ms;
    return aws_iot_new(&o, e);
}

static int standin(const char *json)
{
    return tt_sh("curl -sf -X POST \"$JITRCA_SIM_IOT_URL/_standin/config\" -d '%s' >/dev/null",
                 json);
}

#define SYNC(call) \
    (aws_iot_sync_release(&s), err_clear(&e), (call) == 0 ? aws_iot_sync_wait(c, &s, &e) : -1)
#define CHECK_AWS_ERR(want_errc, want_code)     \
    do {                                        \
        CHECK_INT_EQ(e.code, (want_errc));      \
        CHECK_STR_EQ(s.code, (want_code));      \
        CHECK_STR_CONTAINS(e.msg, (want_code)); \
    } while (0)

static const char *str_of(json_t *o, const char *path1, const char *path2)
{
    json_t *v = json_object_get(o, path1);
    if (path2) {
        v = json_object_get(v, path2);
    }
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int read_file_str(const char *path, struct buf *out)
{
    struct err e = ERR_INIT;
    return file_read_all(path, 1 << 20, out, &e);
}

static int test_ca_ops(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_iot_sync s;
    struct aws_iot *c = NULL;
    struct buf ca = BUF_INIT, vpem = BUF_INIT, bad = BUF_INIT;
    char code[80], caid[80], devid[80];
    FILE *f = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    const char *d = tt_tmpdir();
    aws_iot_sync_init(&s);
    CHECK_INT_EQ(tt_sh("curl -sf -X POST \"$JITRCA_SIM_IOT_URL/_standin/reset\" >/dev/null"), 0);
    CHECK_INT_EQ(tt_sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                       "-nodes -keyout ca.key -out ca.pem -subj /CN=IotTestCA -days 30 "
                       "-addext basicConstraints=critical,CA:TRUE,pathlen:0 "
                       "-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null",
                       d),
                 0);
    CHECK(c = client(NULL, NULL, 0, &e));
    /* GetRegistrationCode: stable */
    CHECK_OK(SYNC(aws_iot_get_registration_code(c, aws_iot_sync_cb, &s, &e)), &e);
    snprintf(code, sizeof(code), "%s", str_of(s.out, "registrationCode", NULL));
    CHECK_INT_EQ(strlen(code), 64);
    CHECK_OK(SYNC(aws_iot_get_registration_code(c, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_STR_EQ(str_of(s.out, "registrationCode", NULL), code);
    CHECK_INT_EQ(s.attempts, 1);

    /* RegisterCACertificate: verification certificate made by ca_verification_cert */
    {
        struct buf p = BUF_INIT;
        buf_addf(&p, "%s/ca.key", d);
        f = fopen(p.data, "r");
        buf_release(&p);
    }
    CHECK(f != NULL);
    CHECK(key = PEM_read_PrivateKey(f, NULL, NULL, NULL));
    fclose(f);
    f = NULL;
    {
        struct buf p = BUF_INIT;
        buf_addf(&p, "%s/ca.pem", d);
        CHECK_INT_EQ(read_file_str(p.data, &ca), 0);
        f = fopen(p.data, "r");
        buf_release(&p);
    }
    CHECK(f != NULL);
    CHECK(cert = PEM_read_X509(f, NULL, NULL, NULL));
    fclose(f);
    f = NULL;
    CHECK_OK(ca_verification_cert(key, cert, code, &vpem, &e), &e);
    /* a verification certificate with another CN is refused by AWS */
    CHECK_OK(ca_verification_cert(key, cert, "0123456789abcdef", &bad, &e), &e);
    CHECK(SYNC(aws_iot_register_ca_certificate(c, ca.data, bad.data, "DEFAULT", true, true,
                                               aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_INVALID, "RegistrationCodeValidationException");
    CHECK_OK(SYNC(aws_iot_register_ca_certificate(c, ca.data, vpem.data, "DEFAULT", true, true,
                                                  aws_iot_sync_cb, &s, &e)),
             &e);
    snprintf(caid, sizeof(caid), "%s", str_of(s.out, "certificateId", NULL));
    CHECK_INT_EQ(strlen(caid), 64);
    CHECK_STR_CONTAINS(str_of(s.out, "certificateArn", NULL), ":cacert/");
    CHECK(SYNC(aws_iot_register_ca_certificate(c, ca.data, vpem.data, "DEFAULT", true, true,
                                               aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_CONFLICT, "ResourceAlreadyExistsException");
    CHECK_STR_EQ(str_of(s.out, "resourceId", NULL), caid);
    /* bad input rejected by the model: mode SNI_ONLY with a verification certificate */
    CHECK(SYNC(aws_iot_register_ca_certificate(c, ca.data, vpem.data, "SNI_ONLY", true, true,
                                               aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);

    /* DescribeCACertificate / UpdateCACertificate */
    CHECK_OK(SYNC(aws_iot_describe_ca_certificate(c, caid, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_STR_EQ(str_of(s.out, "certificateDescription", "status"), "ACTIVE");
    CHECK_STR_EQ(str_of(s.out, "certificateDescription", "autoRegistrationStatus"), "ENABLE");
    CHECK(SYNC(aws_iot_describe_ca_certificate(c,
                                               "00000000000000000000000000000000000000000000000"
                                               "00000000000000000",
                                               aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_NOT_FOUND, "ResourceNotFoundException");
    CHECK(SYNC(aws_iot_describe_ca_certificate(c, "short", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_INVALID, "InvalidRequestException");
    CHECK_OK(SYNC(aws_iot_update_ca_certificate(c, caid, "INACTIVE", "DISABLE", aws_iot_sync_cb, &s,
                                                &e)),
             &e);
    CHECK_OK(SYNC(aws_iot_describe_ca_certificate(c, caid, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_STR_EQ(str_of(s.out, "certificateDescription", "status"), "INACTIVE");
    CHECK_STR_EQ(str_of(s.out, "certificateDescription", "autoRegistrationStatus"), "DISABLE");
    CHECK_OK(SYNC(aws_iot_update_ca_certificate(c, caid, "ACTIVE", NULL, aws_iot_sync_cb, &s, &e)),
             &e);
    CHECK(SYNC(aws_iot_update_ca_certificate(c,
                                             "0000000000000000000000000000000000000000000000000"
                                             "000000000000000",
                                             "ACTIVE", NULL, aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_NOT_FOUND, "ResourceNotFoundException");

    /* three device certificates under the CA (registered with the aws CLI), listed 2 a page */
    CHECK_INT_EQ(tt_sh("cd %s && for i in 1 2 3; do openssl req -new -newkey ec "
                       "-pkeyopt ec_paramgen_curve:P-256 -nodes -keyout d$i.key -subj /CN=dev$i "
                       "2>/dev/null | openssl x509 -req -CA ca.pem -CAkey ca.key -days 2 "
                       "-out d$i.pem 2>/dev/null && aws --endpoint-url \"$JITRCA_SIM_IOT_URL\" iot "
                       "register-certificate --certificate-pem file://d$i.pem "
                       "--ca-certificate-pem file://ca.pem --set-as-active >/dev/null || exit 1; "
                       "done",
                       d),
                 0);
    CHECK_OK(SYNC(aws_iot_list_certificates_by_ca_all(c, caid, 2, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_INT_EQ(json_array_size(json_object_get(s.out, "certificates")), 3);
    CHECK_INT_EQ(s.attempts, 2);
    CHECK_OK(SYNC(aws_iot_list_certificates_by_ca(c, caid, 2, NULL, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_INT_EQ(json_array_size(json_object_get(s.out, "certificates")), 2);
    CHECK(str_of(s.out, "nextMarker", NULL) != NULL);
    snprintf(
        devid, sizeof(devid), "%s",
        str_of(json_array_get(json_object_get(s.out, "certificates"), 0), "certificateId", NULL));
    CHECK(SYNC(aws_iot_list_certificates_by_ca(c, caid, 251, NULL, aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_INVALID, "InvalidRequestException");

    /* RegisterCertificate (our CA's PEM, INACTIVE: the CA AWS names is ours), again: 409;
     * RegisterCertificateWithoutCA: no CA in AWS's description */
    CHECK_INT_EQ(tt_sh("cd %s && for i in 4 5; do openssl req -new -newkey ec "
                       "-pkeyopt ec_paramgen_curve:P-256 -nodes -keyout d$i.key -subj /CN=dev$i "
                       "2>/dev/null | openssl x509 -req -CA ca.pem -CAkey ca.key -days 2 "
                       "-out d$i.pem 2>/dev/null || exit 1; done",
                       d),
                 0);
    for (int i = 4; i <= 5; i++) {
        struct buf p = BUF_INIT, dpem = BUF_INIT;
        json_t *in;
        char id[80];
        buf_addf(&p, "%s/d%d.pem", d, i);
        CHECK_INT_EQ(read_file_str(p.data, &dpem), 0);
        buf_release(&p);
        in = i == 4 ? json_pack("{s:s,s:s,s:s}", "certificatePem", dpem.data, "caCertificatePem",
                                ca.data, "status", "INACTIVE")
                    : json_pack("{s:s,s:s}", "certificatePem", dpem.data, "status", "INACTIVE");
        enum aws_iot_op op =
            i == 4 ? AWS_IOT_REGISTER_CERTIFICATE : AWS_IOT_REGISTER_CERTIFICATE_WITHOUT_CA;
        CHECK_OK(SYNC(aws_iot_call(c, op, in, aws_iot_sync_cb, &s, &e)), &e);
        snprintf(id, sizeof(id), "%s", str_of(s.out, "certificateId", NULL));
        CHECK_INT_EQ(strlen(id), 64);
        CHECK_STR_CONTAINS(str_of(s.out, "certificateArn", NULL), id);
        CHECK(SYNC(aws_iot_call(c, op, in, aws_iot_sync_cb, &s, &e)) != 0);
        CHECK_AWS_ERR(ERRC_CONFLICT, "ResourceAlreadyExistsException");
        json_decref(in);
        CHECK_OK(SYNC(aws_iot_describe_certificate(c, id, aws_iot_sync_cb, &s, &e)), &e);
        CHECK_STR_EQ(str_of(s.out, "certificateDescription", "status"), "INACTIVE");
        {
            const char *got = str_of(s.out, "certificateDescription", "caCertificateId");
            if (i == 4) {
                CHECK_STR_EQ(got ? got : "", caid);
            } else {
                CHECK(got == NULL || got[0] == '\0');
            }
        }
        buf_release(&dpem);
    }

    /* DescribeCertificate / UpdateCertificate */
    CHECK_OK(SYNC(aws_iot_describe_certificate(c, devid, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_STR_EQ(str_of(s.out, "certificateDescription", "caCertificateId"), caid);
    CHECK(SYNC(aws_iot_describe_certificate(c,
                                            "1111111111111111111111111111111111111111111111111"
                                            "111111111111111",
                                            aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_NOT_FOUND, "ResourceNotFoundException");
    CHECK_OK(SYNC(aws_iot_update_certificate(c, devid, "INACTIVE", aws_iot_sync_cb, &s, &e)), &e);
    CHECK_OK(SYNC(aws_iot_describe_certificate(c, devid, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_STR_EQ(str_of(s.out, "certificateDescription", "status"), "INACTIVE");
    CHECK(SYNC(aws_iot_update_certificate(c, devid, "PENDING_ACTIVATION", aws_iot_sync_cb, &s,
                                          &e)) != 0);
    CHECK_AWS_ERR(ERRC_INVALID, "InvalidRequestException");
    CHECK(SYNC(aws_iot_update_certificate(c, devid, "BOGUS", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_INVALID, "InvalidRequestException");
out:
    if (f) {
        fclose(f);
    }
    aws_iot_sync_release(&s);
    aws_iot_free(c);
    buf_release(&ca);
    buf_release(&vpem);
    buf_release(&bad);
    EVP_PKEY_free(key);
    X509_free(cert);
    return rc;
}

static int test_things_policies(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_iot_sync s;
    struct aws_iot *c = NULL;
    json_t *attrs = json_pack("{s:s}", "batch", "B7"), *attrs2 = json_pack("{s:s}", "batch", "B8");
    char thing_id[80], cert_arn[200], token[300];
    struct buf out = BUF_INIT;
    const char *doc = "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
                      "\"Action\":\"iot:Connect\",\"Resource\":\"*\"}]}";
    aws_iot_sync_init(&s);
    CHECK(c = client(NULL, NULL, 0, &e));
    /* CreateThing: idempotent with the same configuration, 409 with another */
    CHECK_OK(SYNC(aws_iot_create_thing(c, "dev:1", NULL, attrs, NULL, aws_iot_sync_cb, &s, &e)),
             &e);
    snprintf(thing_id, sizeof(thing_id), "%s", str_of(s.out, "thingId", NULL));
    CHECK_STR_CONTAINS(str_of(s.out, "thingArn", NULL), ":thing/dev:1");
    CHECK_OK(SYNC(aws_iot_create_thing(c, "dev:1", NULL, attrs, NULL, aws_iot_sync_cb, &s, &e)),
             &e);
    CHECK_STR_EQ(str_of(s.out, "thingId", NULL), thing_id);
    CHECK(SYNC(aws_iot_create_thing(c, "dev:1", NULL, attrs2, NULL, aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_CONFLICT, "ResourceAlreadyExistsException");
    CHECK(SYNC(aws_iot_create_thing(c, "bad name", NULL, NULL, NULL, aws_iot_sync_cb, &s, &e)) !=
          0);
    CHECK_AWS_ERR(ERRC_INVALID, "InvalidRequestException");
    CHECK_STR_CONTAINS(e.msg, "[a-zA-Z0-9:_-]+");
    /* DescribeThing */
    CHECK_OK(SYNC(aws_iot_describe_thing(c, "dev:1", aws_iot_sync_cb, &s, &e)), &e);
    CHECK_STR_EQ(str_of(s.out, "attributes", "batch"), "B7");
    CHECK(SYNC(aws_iot_describe_thing(c, "nosuch", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_NOT_FOUND, "ResourceNotFoundException");
    /* CreatePolicy / GetPolicy (policy name with reserved characters) */
    CHECK_OK(SYNC(aws_iot_create_policy(c, "p+a=b,c@d.e", doc, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_STR_EQ(str_of(s.out, "policyVersionId", NULL), "1");
    CHECK(SYNC(aws_iot_create_policy(c, "p+a=b,c@d.e", doc, aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_CONFLICT, "ResourceAlreadyExistsException");
    CHECK_OK(SYNC(aws_iot_get_policy(c, "p+a=b,c@d.e", aws_iot_sync_cb, &s, &e)), &e);
    CHECK_STR_EQ(str_of(s.out, "defaultVersionId", NULL), "1");
    CHECK(SYNC(aws_iot_get_policy(c, "nosuch", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_NOT_FOUND, "ResourceNotFoundException");
    /* versions: 5 allowed, the 6th refused; the default cannot be deleted */
    for (int i = 0; i < 4; i++) {
        CHECK_OK(SYNC(aws_iot_create_policy_version(c, "p+a=b,c@d.e", doc, i == 3, aws_iot_sync_cb,
                                                    &s, &e)),
                 &e);
    }
    CHECK(SYNC(aws_iot_create_policy_version(c, "p+a=b,c@d.e", doc, -1, aws_iot_sync_cb, &s, &e)) !=
          0);
    CHECK_AWS_ERR(ERRC_CONFLICT, "VersionsLimitExceededException");
    CHECK(SYNC(aws_iot_create_policy_version(c, "nosuch", doc, -1, aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_NOT_FOUND, "ResourceNotFoundException");
    CHECK_OK(SYNC(aws_iot_list_policy_versions(c, "p+a=b,c@d.e", aws_iot_sync_cb, &s, &e)), &e);
    CHECK_INT_EQ(json_array_size(json_object_get(s.out, "policyVersions")), 5);
    CHECK(SYNC(aws_iot_list_policy_versions(c, "nosuch", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_NOT_FOUND, "ResourceNotFoundException");
    CHECK_OK(SYNC(aws_iot_delete_policy_version(c, "p+a=b,c@d.e", "1", aws_iot_sync_cb, &s, &e)),
             &e);
    CHECK(SYNC(aws_iot_delete_policy_version(c, "p+a=b,c@d.e", "5", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_CONFLICT, "DeleteConflictException");
    /* a certificate to attach things to */
    CHECK_INT_EQ(tt_sh("aws --endpoint-url \"$JITRCA_SIM_IOT_URL\" iot create-keys-and-certificate "
                       "--set-as-active --query certificateArn --output text >%s/arn",
                       tt_tmpdir()),
                 0);
    {
        struct buf p = BUF_INIT;
        buf_addf(&p, "%s/arn", tt_tmpdir());
        CHECK_INT_EQ(read_file_str(p.data, &out), 0);
        buf_release(&p);
    }
    snprintf(cert_arn, sizeof(cert_arn), "%.*s", (int)strcspn(out.data, "\n"), out.data);
    /* AttachPolicy / AttachThingPrincipal */
    CHECK_OK(SYNC(aws_iot_attach_policy(c, "p+a=b,c@d.e", cert_arn, aws_iot_sync_cb, &s, &e)), &e);
    CHECK(SYNC(aws_iot_attach_policy(c, "nosuch", cert_arn, aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_NOT_FOUND, "ResourceNotFoundException");
    /* ListAttachedPolicies (the ARN a path label: its ':' and '/' encoded) */
    CHECK_OK(SYNC(aws_iot_list_attached_policies(c, cert_arn, NULL, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_INT_EQ(json_array_size(json_object_get(s.out, "policies")), 1);
    CHECK_STR_EQ(str_of(json_array_get(json_object_get(s.out, "policies"), 0), "policyName", NULL),
                 "p+a=b,c@d.e");
    CHECK(SYNC(aws_iot_list_attached_policies(c, NULL, NULL, aws_iot_sync_cb, &s, &e)) != 0);
    err_clear(&e);
    CHECK_OK(SYNC(aws_iot_attach_thing_principal(c, "dev:1", cert_arn, aws_iot_sync_cb, &s, &e)),
             &e);
    CHECK(SYNC(aws_iot_attach_thing_principal(c, "nosuch", cert_arn, aws_iot_sync_cb, &s, &e)) !=
          0);
    CHECK_AWS_ERR(ERRC_NOT_FOUND, "ResourceNotFoundException");
    /* AddThingToThingGroup */
    CHECK_INT_EQ(tt_sh("aws --endpoint-url \"$JITRCA_SIM_IOT_URL\" iot create-thing-group "
                       "--thing-group-name fleet >/dev/null"),
                 0);
    CHECK_OK(SYNC(aws_iot_add_thing_to_thing_group(c, "fleet", "dev:1", aws_iot_sync_cb, &s, &e)),
             &e);
    CHECK(SYNC(aws_iot_add_thing_to_thing_group(c, "nosuch", "dev:1", aws_iot_sync_cb, &s, &e)) !=
          0);
    CHECK_AWS_ERR(ERRC_NOT_FOUND, "ResourceNotFoundException");
    /* ListThingGroupsForThing, RemoveThingFromThingGroup */
    {
        json_t *in = json_pack("{s:s, s:i}", "thingName", "dev:1", "maxResults", 250);
        CHECK_OK(
            SYNC(aws_iot_call(c, AWS_IOT_LIST_THING_GROUPS_FOR_THING, in, aws_iot_sync_cb, &s, &e)),
            &e);
        CHECK_STR_EQ(
            str_of(json_array_get(json_object_get(s.out, "thingGroups"), 0), "groupName", NULL),
            "fleet");
        json_decref(in);
        in = json_pack("{s:s, s:s}", "thingGroupName", "fleet", "thingName", "dev:1");
        CHECK_OK(SYNC(aws_iot_call(c, AWS_IOT_REMOVE_THING_FROM_THING_GROUP, in, aws_iot_sync_cb,
                                   &s, &e)),
                 &e);
        json_decref(in);
        in = json_pack("{s:s}", "thingName", "dev:1");
        CHECK_OK(
            SYNC(aws_iot_call(c, AWS_IOT_LIST_THING_GROUPS_FOR_THING, in, aws_iot_sync_cb, &s, &e)),
            &e);
        CHECK_INT_EQ(json_array_size(json_object_get(s.out, "thingGroups")), 0);
        json_decref(in);
    }
    /* ListPrincipalThings, DetachThingPrincipal (the principal in a header), and again: not
     * attached any more */
    CHECK_OK(SYNC(aws_iot_list_principal_things(c, cert_arn, NULL, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_INT_EQ(json_array_size(json_object_get(s.out, "things")), 1);
    CHECK_STR_EQ(json_string_value(json_array_get(json_object_get(s.out, "things"), 0)), "dev:1");
    CHECK_OK(SYNC(aws_iot_detach_thing_principal(c, "dev:1", cert_arn, aws_iot_sync_cb, &s, &e)),
             &e);
    CHECK_OK(SYNC(aws_iot_list_principal_things(c, cert_arn, NULL, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_INT_EQ(json_array_size(json_object_get(s.out, "things")), 0);
    CHECK(SYNC(aws_iot_detach_thing_principal(c, "dev:1", cert_arn, aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_NOT_FOUND, "ResourceNotFoundException");
    CHECK(SYNC(aws_iot_detach_thing_principal(c, "dev:1", NULL, aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_STR_CONTAINS(e.msg, "'principal' is required");
    err_clear(&e);
    CHECK_OK(SYNC(aws_iot_attach_thing_principal(c, "dev:1", cert_arn, aws_iot_sync_cb, &s, &e)),
             &e);
    /* AttachThingPrincipal thingPrincipalType (a query member): EXCLUSIVE_THING, then AWS refuses
     * another thing for the certificate */
    {
        json_t *in = json_pack("{s:s, s:s, s:s}", "thingName", "dev:1", "principal", cert_arn,
                               "thingPrincipalType", "EXCLUSIVE_THING");
        CHECK_OK(SYNC(aws_iot_call(c, AWS_IOT_ATTACH_THING_PRINCIPAL, in, aws_iot_sync_cb, &s, &e)),
                 &e);
        json_decref(in);
        CHECK_OK(SYNC(aws_iot_create_thing(c, "dev:2", NULL, NULL, NULL, aws_iot_sync_cb, &s, &e)),
                 &e);
        CHECK(SYNC(aws_iot_attach_thing_principal(c, "dev:2", cert_arn, aws_iot_sync_cb, &s, &e)) !=
              0);
        CHECK_AWS_ERR(ERRC_INVALID, "InvalidRequestException");
        CHECK_STR_CONTAINS(e.msg, "attached exclusively to thing dev:1");
    }
    /* ConfirmTopicRuleDestination (greedy label) */
    CHECK_INT_EQ(tt_sh("cd %s && aws --endpoint-url \"$JITRCA_SIM_IOT_URL\" iot "
                       "create-topic-rule-destination --destination-configuration "
                       "'httpUrlConfiguration={confirmationUrl=http://127.0.0.1:9/x}' "
                       "--query topicRuleDestination.arn --output text >darn && "
                       "curl -sf -X POST \"$JITRCA_SIM_IOT_URL/_standin/destinations/"
                       "send-confirmation\" -d \"{\\\"arn\\\":\\\"$(cat darn)\\\"}\" | "
                       "jq -r .confirmationToken >token",
                       tt_tmpdir()),
                 0);
    {
        struct buf p = BUF_INIT;
        buf_reset(&out);
        buf_addf(&p, "%s/token", tt_tmpdir());
        CHECK_INT_EQ(read_file_str(p.data, &out), 0);
        buf_release(&p);
    }
    snprintf(token, sizeof(token), "%.*s", (int)strcspn(out.data, "\n"), out.data);
    CHECK_OK(SYNC(aws_iot_confirm_topic_rule_destination(c, token, aws_iot_sync_cb, &s, &e)), &e);
    CHECK(SYNC(aws_iot_confirm_topic_rule_destination(c, "no/such:token", aws_iot_sync_cb, &s,
                                                      &e)) != 0);
    CHECK_AWS_ERR(ERRC_INVALID, "InvalidRequestException");
out:
    aws_iot_sync_release(&s);
    aws_iot_free(c);
    json_decref(attrs);
    json_decref(attrs2);
    buf_release(&out);
    return rc;
}

static int test_retries(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_iot_sync s;
    struct aws_iot *c = NULL;
    aws_iot_sync_init(&s);
    CHECK(c = client(NULL, NULL, 2000, &e));
    CHECK_OK(SYNC(aws_iot_create_thing(c, "retry-1", NULL, NULL, NULL, aws_iot_sync_cb, &s, &e)),
             &e);
    CHECK_INT_EQ(standin("{\"next_faults\": {\"DescribeThing\": [\"throttle\", \"503\"]}}"), 0);
    CHECK_OK(SYNC(aws_iot_describe_thing(c, "retry-1", aws_iot_sync_cb, &s, &e)), &e);
    CHECK_INT_EQ(s.attempts, 3);
    CHECK_INT_EQ(standin("{\"next_faults\": {\"DescribeThing\": [\"500\", \"500\", \"500\"]}}"), 0);
    CHECK(SYNC(aws_iot_describe_thing(c, "retry-1", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_UNAVAILABLE, "InternalFailureException");
    CHECK_STR_CONTAINS(e.msg, "HTTP 500, after 3 attempts");
    CHECK_INT_EQ(standin("{\"next_faults\": {\"DescribeThing\": "
                         "[\"throttle\", \"throttle\", \"throttle\"]}}"),
                 0);
    CHECK(SYNC(aws_iot_describe_thing(c, "retry-1", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_UNAVAILABLE, "ThrottlingException");
    CHECK_STR_CONTAINS(e.msg, "Rate exceeded (HTTP 400, after 3 attempts)");
    /* a 4xx is final at once */
    CHECK(SYNC(aws_iot_describe_thing(c, "nosuch", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_INT_EQ(s.attempts, 1);
out:
    aws_iot_sync_release(&s);
    aws_iot_free(c);
    return rc;
}

static int test_timeout_malformed_truncated(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_iot_sync s;
    struct aws_iot *c = NULL;
    aws_iot_sync_init(&s);
    CHECK(c = client(NULL, NULL, 500, &e));
    CHECK_INT_EQ(standin("{\"faults\": {\"timeout_ms\": 1500}, "
                         "\"next_faults\": {\"DescribeThing\": [\"timeout\"]}}"),
                 0);
    CHECK_OK(SYNC(aws_iot_create_thing(c, "to-1", NULL, NULL, NULL, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_OK(SYNC(aws_iot_describe_thing(c, "to-1", aws_iot_sync_cb, &s, &e)), &e);
    CHECK_INT_EQ(s.attempts, 2);
    CHECK_INT_EQ(standin("{\"next_faults\": {\"DescribeThing\": "
                         "[\"timeout\", \"timeout\", \"timeout\"]}}"),
                 0);
    CHECK(SYNC(aws_iot_describe_thing(c, "to-1", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_INT_EQ(e.code, ERRC_TIMEOUT);
    CHECK_STR_CONTAINS(e.msg, "timeout after 500 ms");
    CHECK_STR_CONTAINS(e.msg, "after 3 attempts");
    /* malformed JSON: a clear error, not retried */
    CHECK_INT_EQ(standin("{\"next_faults\": {\"DescribeThing\": [\"malformed\"]}}"), 0);
    CHECK(SYNC(aws_iot_describe_thing(c, "to-1", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_INT_EQ(e.code, ERRC_UNAVAILABLE);
    CHECK_STR_CONTAINS(e.msg, "AWS IoT DescribeThing: malformed response (HTTP 200)");
    CHECK_INT_EQ(s.attempts, 1);
    CHECK(s.out == NULL);
    /* truncated: a transport failure, retried */
    CHECK_INT_EQ(standin("{\"next_faults\": {\"DescribeThing\": [\"truncated\"]}}"), 0);
    CHECK_OK(SYNC(aws_iot_describe_thing(c, "to-1", aws_iot_sync_cb, &s, &e)), &e);
    CHECK_INT_EQ(s.attempts, 2);
    CHECK_INT_EQ(standin("{\"next_faults\": {\"DescribeThing\": "
                         "[\"truncated\", \"truncated\", \"truncated\"]}}"),
                 0);
    CHECK(SYNC(aws_iot_describe_thing(c, "to-1", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_INT_EQ(e.code, ERRC_UNAVAILABLE);
    CHECK_STR_CONTAINS(e.msg, "truncated response");
out:
    aws_iot_sync_release(&s);
    aws_iot_free(c);
    return rc;
}

/* The call engine's rules as IoT sees them (aws/call.c): an expired token refreshes the
 * credentials and retries once, outside the retry quota; a request signed an hour off the
 * service's clock is signed again at the service's time (its Date header) and later requests
 * keep the correction, until the clocks agree again; a 4xx that is not retried and has no
 * documented meaning is final and INVALID; a refusal code is DENIED whatever its status. */
static int test_engine_rules(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_iot_sync s;
    struct aws_iot *c = NULL;
    char **env = NULL;
    const char *wrong[] = { "AWS_SECRET_ACCESS_KEY", "wrong" };
    uint64_t fetches;
    aws_iot_sync_init(&s);
    CHECK(c = client(NULL, NULL, 2000, &e));
    CHECK_OK(SYNC(aws_iot_create_thing(c, "engine-1", NULL, NULL, NULL, aws_iot_sync_cb, &s, &e)),
             &e);
    fetches = aws_credp_fetches(aws_iot_credp(c));
    CHECK_INT_EQ(standin("{\"next_faults\": {\"DescribeThing\": [\"expired\"]}}"), 0);
    CHECK_OK(SYNC(aws_iot_describe_thing(c, "engine-1", aws_iot_sync_cb, &s, &e)), &e);
    CHECK_INT_EQ(s.attempts, 2);
    CHECK(aws_credp_fetches(aws_iot_credp(c)) > fetches);
    CHECK_INT_EQ(standin("{\"next_faults\": {\"DescribeThing\": [\"expired\", \"expired\"]}}"), 0);
    CHECK(SYNC(aws_iot_describe_thing(c, "engine-1", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_DENIED, "ExpiredTokenException");
    CHECK_INT_EQ(s.attempts, 2);
    /* errors: a 413 is the request's fault (was UNAVAILABLE: JITR would retry it for ever) */
    CHECK_INT_EQ(standin("{\"next_faults\": {\"DescribeThing\": "
                         "[\"http:413:PayloadTooLargeException\"]}}"),
                 0);
    CHECK(SYNC(aws_iot_describe_thing(c, "engine-1", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_INVALID, "PayloadTooLargeException");
    CHECK_INT_EQ(s.attempts, 1);
    CHECK_INT_EQ(standin("{\"next_faults\": {\"DescribeThing\": "
                         "[\"http:400:AccessDeniedException\"]}}"),
                 0);
    CHECK(SYNC(aws_iot_describe_thing(c, "engine-1", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_DENIED, "AccessDeniedException");
    /* the service's clock an hour ahead: corrected once, then kept */
    CHECK_INT_EQ(standin("{\"clock_offset_s\": 3600}"), 0);
    CHECK_OK(SYNC(aws_iot_describe_thing(c, "engine-1", aws_iot_sync_cb, &s, &e)), &e);
    CHECK_INT_EQ(s.attempts, 2);
    CHECK_OK(SYNC(aws_iot_describe_thing(c, "engine-1", aws_iot_sync_cb, &s, &e)), &e);
    CHECK_INT_EQ(s.attempts, 1);
    /* and back: the correction follows */
    CHECK_INT_EQ(standin("{\"clock_offset_s\": 0}"), 0);
    CHECK_OK(SYNC(aws_iot_describe_thing(c, "engine-1", aws_iot_sync_cb, &s, &e)), &e);
    CHECK_INT_EQ(s.attempts, 2);
    CHECK_OK(SYNC(aws_iot_describe_thing(c, "engine-1", aws_iot_sync_cb, &s, &e)), &e);
    CHECK_INT_EQ(s.attempts, 1);
    /* a wrong secret is not a skew: final at once even with the clocks apart */
    CHECK_INT_EQ(standin("{\"clock_offset_s\": 60}"), 0);
    aws_iot_free(c);
    env = env_with(wrong, ARRAY_LEN(wrong));
    CHECK(c = client((const char *const *)env, NULL, 2000, &e));
    CHECK(SYNC(aws_iot_describe_thing(c, "engine-1", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_DENIED, "InvalidSignatureException");
    CHECK_INT_EQ(s.attempts, 1);
out:
    standin("{\"clock_offset_s\": 0}");
    aws_iot_sync_release(&s);
    aws_iot_free(c);
    env_free(env);
    return rc;
}

static int test_unreachable(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_iot_sync s;
    struct aws_iot *c = NULL;
    int64_t t0 = time_mono_ns();
    aws_iot_sync_init(&s);
    CHECK(c = client(NULL, "http://127.0.0.1:1", 1000, &e));
    CHECK(SYNC(aws_iot_describe_thing(c, "x", aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_INT_EQ(e.code, ERRC_UNAVAILABLE);
    CHECK_STR_CONTAINS(e.msg, "cannot connect to http://127.0.0.1:1/things/x");
    CHECK_STR_CONTAINS(e.msg, "after 3 attempts");
    CHECK_INT_EQ(s.attempts, 3);
    CHECK(time_mono_ns() - t0 < 8 * 1000000000LL); /* backoff 0..1 s + 0..2 s */
out:
    aws_iot_sync_release(&s);
    aws_iot_free(c);
    return rc;
}

static int test_signature_and_credentials(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_iot_sync s;
    struct aws_iot *c = NULL;
    const char *wrong[] = { "AWS_SECRET_ACCESS_KEY", "wrong" };
    const char *temp[] = { "AWS_ACCESS_KEY_ID",     getenv("JITRCA_SIM_TEMP_ACCESS_KEY_ID"),
                           "AWS_SECRET_ACCESS_KEY", getenv("JITRCA_SIM_TEMP_SECRET_ACCESS_KEY"),
                           "AWS_SESSION_TOKEN",     getenv("JITRCA_SIM_TEMP_SESSION_TOKEN") };
    const char *none[] = { "AWS_ACCESS_KEY_ID",         NULL,  "AWS_SECRET_ACCESS_KEY", NULL,
                           "AWS_EC2_METADATA_DISABLED", "true" };
    const char *region[] = { "AWS_REGION", "eu-west-1", "AWS_DEFAULT_REGION", NULL };
    char **env = NULL;
    aws_iot_sync_init(&s);
    CHECK(temp[1] && temp[3] && temp[5]);
    env = env_with(wrong, ARRAY_LEN(wrong));
    CHECK(c = client((const char *const *)env, NULL, 0, &e));
    CHECK(SYNC(aws_iot_get_registration_code(c, aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_AWS_ERR(ERRC_DENIED, "InvalidSignatureException");
    CHECK_INT_EQ(s.attempts, 1);
    aws_iot_free(c);
    c = NULL;
    env_free(env);
    env = env_with(temp, ARRAY_LEN(temp));
    CHECK(c = client((const char *const *)env, NULL, 0, &e));
    CHECK_OK(SYNC(aws_iot_get_registration_code(c, aws_iot_sync_cb, &s, &e)), &e);
    aws_iot_free(c);
    c = NULL;
    env_free(env);
    temp[4] = "AWS_SESSION_TOKEN_UNUSED"; /* the temporary key without its token */
    env = env_with(temp, ARRAY_LEN(temp));
    CHECK(c = client((const char *const *)env, NULL, 0, &e));
    CHECK(SYNC(aws_iot_get_registration_code(c, aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    aws_iot_free(c);
    c = NULL;
    env_free(env);
    env = env_with(region, ARRAY_LEN(region));
    CHECK(c = client((const char *const *)env, NULL, 0, &e));
    CHECK(SYNC(aws_iot_get_registration_code(c, aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_INT_EQ(e.code, ERRC_DENIED); /* credential scope names the wrong region */
    aws_iot_free(c);
    c = NULL;
    env_free(env);
    env = env_with(none, ARRAY_LEN(none));
    CHECK(c = client((const char *const *)env, NULL, 0, &e));
    CHECK(SYNC(aws_iot_get_registration_code(c, aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    CHECK_STR_CONTAINS(e.msg, "no AWS credentials: environment (AWS_ACCESS_KEY_ID unset)");
    CHECK_STR_CONTAINS(e.detail, "EC2 IMDS");
    CHECK_INT_EQ(s.attempts, 0);
out:
    aws_iot_sync_release(&s);
    aws_iot_free(c);
    env_free(env);
    return rc;
}

static int test_input_validation(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_iot_sync s;
    struct aws_iot *c = NULL;
    json_t *in = json_pack("{s:s,s:s}", "thingName", "x", "bogus", "y");
    struct aws_iot_opts o = { 0 };
    aws_iot_sync_init(&s);
    CHECK(c = client(NULL, NULL, 0, &e));
    CHECK(aws_iot_describe_thing(c, NULL, aws_iot_sync_cb, &s, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    err_clear(&e);
    CHECK(aws_iot_describe_thing(c, "", aws_iot_sync_cb, &s, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "DescribeThing: 'thingName' is required");
    err_clear(&e);
    CHECK(aws_iot_call(c, AWS_IOT_DESCRIBE_THING, in, aws_iot_sync_cb, &s, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "DescribeThing: unknown input member 'bogus'");
    err_clear(&e);
    CHECK(aws_iot_attach_thing_principal(c, "x", "a\r\nb", aws_iot_sync_cb, &s, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "'principal' is required and must be a one-line string");
    CHECK(!s.done); /* no callback after a synchronous failure */
    o.base = base;
    o.rates = "CreateThing=0";
    err_clear(&e);
    CHECK(aws_iot_new(&o, &e) == NULL);
    CHECK_STR_CONTAINS(e.msg, "'CreateThing=0' is not OPERATION=RATE[/BURST]");
    o.rates = "CreateThingz=5";
    err_clear(&e);
    CHECK(aws_iot_new(&o, &e) == NULL);
    CHECK_STR_CONTAINS(e.msg, "unknown operation 'CreateThingz'");
out:
    json_decref(in);
    aws_iot_sync_release(&s);
    aws_iot_free(c);
    return rc;
}

static int cancel_calls;

static void on_cancel(void *arg, const struct aws_iot_result *r, const struct err *e)
{
    (void)r;
    cancel_calls++;
    *(enum err_code *)arg = e ? e->code : ERRC_OK;
}

static int test_reuse_cancel_service(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_iot_sync s;
    struct aws_iot *c = NULL;
    uint64_t reqs = 0, conns = 0;
    enum err_code got = ERRC_OK;
    struct aws_iot_opts o = { 0 };
    aws_iot_sync_init(&s);
    CHECK(c = client(NULL, NULL, 0, &e));
    CHECK_INT_EQ(standin("{\"quotas\": {\"enabled\": false}}"), 0); /* no retries here */
    for (int i = 0; i < 20; i++) {
        CHECK_OK(SYNC(aws_iot_get_registration_code(c, aws_iot_sync_cb, &s, &e)), &e);
    }
    aws_transport_stats(aws_iot_transport(c), &reqs, &conns);
    CHECK_INT_EQ(reqs, 20);
    CHECK_INT_EQ(conns, 1);
    /* freed with a call outstanding: the callback runs once, canceled */
    CHECK_OK(aws_iot_get_registration_code(c, on_cancel, &got, &e), &e);
    CHECK_INT_EQ(cancel_calls, 0);
    aws_iot_free(c);
    c = NULL;
    CHECK_INT_EQ(cancel_calls, 1);
    CHECK_INT_EQ(got, ERRC_CANCELED);
    /* the pre-2023 signing name */
    o.base = base;
    o.no_quota = true;
    o.service = "execute-api";
    CHECK(c = aws_iot_new(&o, &e));
    CHECK_OK(SYNC(aws_iot_get_registration_code(c, aws_iot_sync_cb, &s, &e)), &e);
out:
    standin("{\"quotas\": {\"enabled\": true}}");
    aws_iot_sync_release(&s);
    aws_iot_free(c);
    return rc;
}

/* Without Redis each process paces alone: with local_share N (jitrd's workers) at rate / N and
 * burst / N, so that N of them together stay within the quota. 10 calls at 20/s burst 20 shared
 * by 4 (5/s, burst 5) take at least a second; the whole rate would pass them at once. */
static int test_local_share(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_iot_sync s;
    struct aws_iot *c = NULL;
    struct aws_iot_opts o = { 0 };
    int64_t t0;
    aws_iot_sync_init(&s);
    o.base = base;
    o.rates = "GetRegistrationCode=20/20";
    o.local_share = 4;
    CHECK(c = aws_iot_new(&o, &e));
    t0 = time_mono_ns();
    for (int i = 0; i < 10; i++) {
        CHECK_OK(SYNC(aws_iot_get_registration_code(c, aws_iot_sync_cb, &s, &e)), &e);
    }
    CHECK(time_mono_ns() - t0 >= 900 * 1000000LL);
out:
    aws_iot_sync_release(&s);
    aws_iot_free(c);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "ca_ops", test_ca_ops },
        { "things_policies", test_things_policies },
        { "retries", test_retries },
        { "timeout_malformed_truncated", test_timeout_malformed_truncated },
        { "engine_rules", test_engine_rules },
        { "unreachable", test_unreachable },
        { "signature_and_credentials", test_signature_and_credentials },
        { "input_validation", test_input_validation },
        { "reuse_cancel_service", test_reuse_cancel_service },
        { "local_share", test_local_share },
    };
    int rc;
    if (getenv("JITRCA_SIM_IOT_URL") == NULL) {
        fprintf(stderr, "run under tests/sim/run_sim.py\n");
        return TT_SKIP;
    }
    mem_install();
    base = event_base_new();
    rc = tt_main(argc, argv, cases, ARRAY_LEN(cases));
    event_base_free(base);
    return rc;
}
