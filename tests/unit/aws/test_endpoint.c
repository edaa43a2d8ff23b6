/*
 * aws/endpoint.c: partitions, default endpoints with FIPS and dual-stack, ARNs. The reference is
 * botocore's own resolver (endpoint_table.py prints what it decides for regions of every
 * partition, FIPS and dual-stack on and off, STS's legacy global endpoint); every line must match
 * aws_partition_of_region / aws_endpoint_default exactly. Then the configuration's side:
 * AWS_USE_FIPS_ENDPOINT / use_fips_endpoint and dual-stack, configured URLs winning over them.
 */
#include <stdlib.h>
#include <string.h>

#include "aws/aws.h"
#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"
#include "tests/harness/tt.h"

static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    struct err e = ERR_INIT;
    snprintf(path, sizeof(path), "%s/%s", tt_tmpdir(), name);
    if (file_write_atomic(path, text, strlen(text), 0600, false, &e) != 0) {
        fprintf(stderr, "write %s: %s\n", path, e.msg);
        exit(1);
    }
    return path;
}

static int svc_of(const char *name, enum aws_service *out)
{
    static const struct {
        const char *name;
        enum aws_service s;
    } map[] = { { "iot", AWS_SVC_IOT },
                { "sts", AWS_SVC_STS },
                { "sqs", AWS_SVC_SQS },
                { "sso", AWS_SVC_SSO } };
    for (size_t i = 0; i < ARRAY_LEN(map); i++) {
        if (strcmp(name, map[i].name) == 0) {
            *out = map[i].s;
            return 0;
        }
    }
    return -1;
}

static int test_botocore_table(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct buf table = BUF_INIT, path = BUF_INIT;
    const char *src = getenv("JITRCA_SOURCE_DIR");
    size_t partitions = 0, endpoints = 0;
    char *save = NULL;
    buf_addf(&path, "%s/endpoints.txt", tt_tmpdir());
    CHECK_INT_EQ(
        tt_sh("python3 %s/tests/unit/aws/endpoint_table.py >%s", src ? src : ".", path.data), 0);
    CHECK_OK(file_read_all(path.data, 1 << 20, &table, &e), &e);
    for (char *line = strtok_r(table.data, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char kind[16], svc[8], region[64], url[160], signing[64], got_signing[64];
        int fips, dual, legacy;
        char *got = NULL;
        enum aws_service s;
        if (sscanf(line, "partition %63s %15s", region, kind) == 2) {
            CHECK_STR_EQ(aws_partition_of_region(region), kind);
            partitions++;
            continue;
        }
        CHECK(sscanf(line, "endpoint %7s %63s %d %d %d %159s %63s", svc, region, &fips, &dual,
                     &legacy, url, signing) == 7);
        CHECK_OK(svc_of(svc, &s), &e);
        struct aws_endpoint_want w = { region, fips != 0, dual != 0, legacy != 0 };
        CHECK_OK(aws_endpoint_default(s, &w, &got, got_signing, sizeof(got_signing), &e), &e);
        if (strcmp(got, url) != 0 || strcmp(got_signing, signing) != 0) {
            fprintf(stderr, "  botocore: %s\n  ours:     %s %s\n", line, got, got_signing);
            rc = 1;
        }
        xfree(got);
        endpoints++;
    }
    CHECK(partitions >= 20 && endpoints >= 300);
out:
    buf_release(&table);
    buf_release(&path);
    return rc;
}

static int test_partitions_and_arns(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_arn a;
    char arn[200];
    char *url = NULL, signing[64];
    CHECK_STR_EQ(aws_partition_lookup("cn-north-1")->dns_suffix, "amazonaws.com.cn");
    CHECK_STR_EQ(aws_partition_lookup("cn-north-1")->dualstack_suffix,
                 "api.amazonwebservices.com.cn");
    CHECK_STR_EQ(aws_partition_of_region(NULL), "aws");
    CHECK(aws_partition_known("aws-us-gov") && !aws_partition_known("aws-gov") &&
          !aws_partition_known(NULL));
    snprintf(arn, sizeof(arn), "arn:aws-cn:iot:cn-north-1:123456789012:cert/ab:cd");
    CHECK_OK(aws_arn_split(arn, &a, &e), &e);
    CHECK_STR_EQ(a.partition, "aws-cn");
    CHECK_STR_EQ(a.service, "iot");
    CHECK_STR_EQ(a.region, "cn-north-1");
    CHECK_STR_EQ(a.account, "123456789012");
    CHECK_STR_EQ(a.resource, "cert/ab:cd");
    static const struct {
        const char *arn, *want;
    } bad[] = {
        { "arn:aws-mars:iot:x:1:cert/a", "ARN partition 'aws-mars' is not one of AWS's" },
        { "arn:aws:iot:x:1", "not an ARN" },
        { "urn:aws:iot:x:1:cert/a", "not an ARN" },
        { "arn:aws::x:1:cert/a", "not an ARN" },
        { "arn:aws:iot:x:1:", "not an ARN" },
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        snprintf(arn, sizeof(arn), "%s", bad[i].arn);
        err_clear(&e);
        CHECK_INT_EQ(aws_arn_split(arn, &a, &e), -1);
        CHECK_STR_CONTAINS(e.msg, bad[i].want);
    }
    /* regions that cannot name a host are refused */
    {
        struct aws_endpoint_want w = { "us-east-1.evil.com#", false, false, false };
        err_clear(&e);
        CHECK_INT_EQ(aws_endpoint_default(AWS_SVC_IOT, &w, &url, signing, sizeof(signing), &e), -1);
        CHECK(url == NULL);
        CHECK_STR_CONTAINS(e.msg, "is not [a-z0-9-]");
    }
out:
    xfree(url);
    return rc;
}

/* The configuration's FIPS and dual-stack settings and configured URLs. */
static int test_config_endpoints(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_config cfg;
    struct buf conf = BUF_INIT;
    char *url = NULL, signing[64];
    aws_config_init(&cfg);
    buf_addf(&conf, "AWS_CONFIG_FILE=%s",
             write_file("config-ep",
                        "[default]\nregion = us-gov-west-1\nuse_fips_endpoint = true\n"
                        "[profile ds]\nregion = cn-north-1\n"
                        "use_dualstack_endpoint = TRUE\n"
                        "[profile svc]\nregion = eu-west-1\nservices = local\n"
                        "endpoint_url = http://127.0.0.1:9000\n"
                        "use_fips_endpoint = true\n"
                        "[services local]\niot =\n  endpoint_url = http://[::1]:9001/\n"
                        "sqs =\n  other = x\n"
                        "[profile ign]\nregion = eu-west-1\nendpoint_url = http://x\n"
                        "ignore_configured_endpoint_urls = true\n"
                        "[profile typo]\nregion = eu-west-1\n"
                        "use_fips_endpoint = ture\n"
                        "[profile nosvc]\nregion = eu-west-1\nservices = ghost\n"
                        "[profile legacy]\nregion = eu-west-1\n"
                        "sts_regional_endpoints = legacy\n"));
    /* FIPS from the profile: GovCloud IoT has iot-fips, STS's FIPS host is the default one */
    {
        const char *env[] = { "HOME=/nonexistent", conf.data, NULL };
        CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
        CHECK(cfg.use_fips && !cfg.use_dualstack);
        CHECK_STR_EQ(cfg.endpoint, "https://iot-fips.us-gov-west-1.amazonaws.com");
        CHECK_STR_EQ(cfg.endpoint_source, "FIPS endpoint");
        CHECK_OK(aws_config_endpoint(&cfg, AWS_SVC_STS, NULL, &url, signing, sizeof(signing), &e),
                 &e);
        CHECK_STR_EQ(url, "https://sts.us-gov-west-1.amazonaws.com");
        xfree(url);
        url = NULL;
        CHECK_OK(aws_config_endpoint(&cfg, AWS_SVC_SQS, "us-gov-east-1", &url, signing,
                                     sizeof(signing), &e),
                 &e);
        CHECK_STR_EQ(url, "https://sqs.us-gov-east-1.amazonaws.com");
        CHECK_STR_EQ(signing, "us-gov-east-1");
        xfree(url);
        url = NULL;
    }
    /* the environment wins over the profile, both ways */
    {
        const char *env[] = { "HOME=/nonexistent",           conf.data,
                              "AWS_USE_FIPS_ENDPOINT=false", "AWS_USE_DUALSTACK_ENDPOINT=true",
                              "AWS_REGION=us-east-1",        NULL };
        CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
        CHECK(!cfg.use_fips && cfg.use_dualstack);
        CHECK_STR_EQ(cfg.endpoint, "https://iot.us-east-1.api.aws");
    }
    /* China: amazonaws.com.cn, dual-stack api.amazonwebservices.com.cn */
    {
        const char *env[] = { "HOME=/nonexistent", conf.data, "AWS_PROFILE=ds", NULL };
        CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
        CHECK_STR_EQ(cfg.endpoint, "https://iot.cn-north-1.api.amazonwebservices.com.cn");
        const char *env2[] = { "HOME=/nonexistent", conf.data, "AWS_PROFILE=ds",
                               "AWS_USE_DUALSTACK_ENDPOINT=false", NULL };
        CHECK_OK(aws_config_resolve(&cfg, env2, NULL, NULL, &e), &e);
        CHECK_STR_EQ(cfg.endpoint, "https://iot.cn-north-1.amazonaws.com.cn");
        CHECK_OK(aws_config_endpoint(&cfg, AWS_SVC_STS, NULL, &url, signing, sizeof(signing), &e),
                 &e);
        CHECK_STR_EQ(url, "https://sts.cn-north-1.amazonaws.com.cn");
        xfree(url);
        url = NULL;
    }
    /* configured URLs: services section for IoT, the profile's endpoint_url for the rest, both
     * winning over FIPS; the environment over both */
    {
        const char *env[] = { "HOME=/nonexistent", conf.data, "AWS_PROFILE=svc", NULL };
        CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
        CHECK_STR_EQ(cfg.endpoint, "http://[::1]:9001");
        CHECK_STR_EQ(cfg.endpoint_source, "[services local] iot endpoint_url");
        CHECK_OK(aws_config_endpoint(&cfg, AWS_SVC_SQS, NULL, &url, signing, sizeof(signing), &e),
                 &e);
        CHECK_STR_EQ(url, "http://127.0.0.1:9000");
        CHECK_STR_EQ(signing, "eu-west-1");
        xfree(url);
        url = NULL;
        const char *env2[] = { "HOME=/nonexistent", conf.data, "AWS_PROFILE=svc",
                               "AWS_ENDPOINT_URL=http://127.0.0.2:1", NULL };
        CHECK_OK(aws_config_resolve(&cfg, env2, NULL, NULL, &e), &e);
        CHECK_STR_EQ(cfg.endpoint, "http://127.0.0.2:1");
        const char *env3[] = { "HOME=/nonexistent",
                               conf.data,
                               "AWS_PROFILE=svc",
                               "AWS_ENDPOINT_URL=http://127.0.0.2:1",
                               "AWS_ENDPOINT_URL_IOT=http://127.0.0.3:1",
                               NULL };
        CHECK_OK(aws_config_resolve(&cfg, env3, NULL, NULL, &e), &e);
        CHECK_STR_EQ(cfg.endpoint, "http://127.0.0.3:1");
        CHECK_OK(aws_config_endpoint(&cfg, AWS_SVC_STS, NULL, &url, signing, sizeof(signing), &e),
                 &e);
        CHECK_STR_EQ(url, "http://127.0.0.2:1");
        xfree(url);
        url = NULL;
        const char *env4[] = { "HOME=/nonexistent", conf.data, "AWS_PROFILE=svc",
                               "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true", NULL };
        CHECK_OK(aws_config_resolve(&cfg, env4, NULL, NULL, &e), &e);
        CHECK_STR_EQ(cfg.endpoint, "https://iot-fips.eu-west-1.amazonaws.com");
    }
    {
        const char *env[] = { "HOME=/nonexistent", conf.data, "AWS_PROFILE=ign", NULL };
        CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
        CHECK_STR_EQ(cfg.endpoint, "https://iot.eu-west-1.amazonaws.com");
    }
    {
        const char *env[] = { "HOME=/nonexistent", conf.data, "AWS_PROFILE=legacy", NULL };
        CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
        CHECK(cfg.sts_legacy);
        CHECK_OK(aws_config_endpoint(&cfg, AWS_SVC_STS, NULL, &url, signing, sizeof(signing), &e),
                 &e);
        CHECK_STR_EQ(url, "https://sts.amazonaws.com");
        CHECK_STR_EQ(signing, "us-east-1");
        xfree(url);
        url = NULL;
    }
    static const struct {
        const char *a, *b, *want;
    } bad[] = {
        { "AWS_PROFILE=typo", "X=1",
          "use_fips_endpoint of profile 'typo' must be true or false, "
          "not 'ture'" },
        { "AWS_USE_DUALSTACK_ENDPOINT=1", "X=1",
          "AWS_USE_DUALSTACK_ENDPOINT must be true or "
          "false, not '1'" },
        { "AWS_PROFILE=nosvc", "X=1", "profile 'nosvc' names services 'ghost'" },
        { "AWS_STS_REGIONAL_ENDPOINTS=global", "X=1",
          "AWS_STS_REGIONAL_ENDPOINTS must be "
          "regional or legacy" },
        { "AWS_ENDPOINT_URL_STS=ftp://x", "X=1", "AWS_ENDPOINT_URL_STS: endpoint must start" },
        { "AWS_PROFILE=svc", "AWS_ENDPOINT_URL_SSO=https://a@b",
          "AWS_ENDPOINT_URL_SSO: endpoint "
          "contains '@'" },
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        const char *env[] = { "HOME=/nonexistent", conf.data, bad[i].a, bad[i].b, NULL };
        err_clear(&e);
        CHECK_INT_EQ(aws_config_resolve(&cfg, env, NULL, NULL, &e), -1);
        CHECK_STR_CONTAINS(e.msg, bad[i].want);
        CHECK(cfg.endpoint == NULL);
    }
out:
    xfree(url);
    aws_config_release(&cfg);
    buf_release(&conf);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "botocore_table", test_botocore_table },
        { "partitions_and_arns", test_partitions_and_arns },
        { "config_endpoints", test_config_endpoints },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
