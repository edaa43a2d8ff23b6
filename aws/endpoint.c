/*
 * Partitions and default endpoints (aws/endpoint.h). The tables are botocore 1.43's
 * partitions.json and the iot, sts, sqs and sso endpoint rulesets, reduced to what they decide:
 * every partition supports FIPS and dual-stack, so the rulesets' "not supported" branches never
 * apply; the per-partition special cases of the IoT ruleset name the same hosts as the generic
 * rule. tests/unit/aws/test_endpoint.c checks the table against botocore's resolver.
 */
#include "aws/endpoint.h"

#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"

struct partition_def {
    struct aws_partition p;
    const char *prefixes[10]; /* region pattern ^(PREFIX)-\w+-\d+$, in botocore's order */
    const char *global;       /* the partition's pseudo-region listed by name */
};

/* partitions.json order: the first pattern that matches wins. */
static const struct partition_def partitions[] = {
    { { "aws", "amazonaws.com", "api.aws" },
      { "us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx" },
      "aws-global" },
    { { "aws-cn", "amazonaws.com.cn", "api.amazonwebservices.com.cn" }, { "cn" }, "aws-cn-global" },
    { { "aws-eusc", "amazonaws.eu", "api.amazonwebservices.eu" }, { "eusc-de" }, NULL },
    { { "aws-iso", "c2s.ic.gov", "api.aws.ic.gov" }, { "us-iso" }, "aws-iso-global" },
    { { "aws-iso-b", "sc2s.sgov.gov", "api.aws.scloud" }, { "us-isob" }, "aws-iso-b-global" },
    { { "aws-iso-e", "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk" },
      { "eu-isoe" },
      "aws-iso-e-global" },
    { { "aws-iso-f", "csp.hci.ic.gov", "api.aws.hci.ic.gov" }, { "us-isof" }, "aws-iso-f-global" },
    { { "aws-us-gov", "amazonaws.com", "api.aws" }, { "us-gov" }, "aws-us-gov-global" },
};

/* "\w+-\d+" and nothing else */
static bool word_dash_digits(const char *s)
{
    const char *dash = strchr(s, '-');
    if (dash == NULL || dash == s || dash[1] == '\0' || strchr(dash + 1, '-') != NULL) {
        return false;
    }
    for (const char *p = s; p < dash; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_')) {
            return false;
        }
    }
    for (const char *p = dash + 1; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
    }
    return true;
}

const struct aws_partition *aws_partition_lookup(const char *region)
{
    if (region == NULL) {
        return &partitions[0].p;
    }
    for (size_t i = 0; i < ARRAY_LEN(partitions); i++) {
        if (partitions[i].global != NULL && strcmp(region, partitions[i].global) == 0) {
            return &partitions[i].p;
        }
    }
    for (size_t i = 0; i < ARRAY_LEN(partitions); i++) {
        for (size_t k = 0; k < ARRAY_LEN(partitions[i].prefixes) && partitions[i].prefixes[k];
             k++) {
            size_t n = strlen(partitions[i].prefixes[k]);
            if (strncmp(region, partitions[i].prefixes[k], n) == 0 && region[n] == '-' &&
                word_dash_digits(region + n + 1)) {
                return &partitions[i].p;
            }
        }
    }
    return &partitions[0].p;
}

const char *aws_partition_of_region(const char *region)
{
    return aws_partition_lookup(region)->id;
}

bool aws_partition_known(const char *id)
{
    for (size_t i = 0; id != NULL && i < ARRAY_LEN(partitions); i++) {
        if (strcmp(id, partitions[i].p.id) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- services ------------------------------------------------------------------------------ */

struct service_def {
    const char *config_key; /* services section key */
    const char *env;        /* AWS_ENDPOINT_URL_<ID> */
    const char *prefix;     /* host prefix */
    bool gov_fips_plain;    /* GovCloud FIPS (without dual-stack) is the default host */
};

static const struct service_def svcs[AWS_SVC__COUNT] = {
    [AWS_SVC_IOT] = { "iot", "AWS_ENDPOINT_URL_IOT", "iot", false },
    [AWS_SVC_STS] = { "sts", "AWS_ENDPOINT_URL_STS", "sts", true },
    [AWS_SVC_SQS] = { "sqs", "AWS_ENDPOINT_URL_SQS", "sqs", true },
    [AWS_SVC_SSO] = { "sso", "AWS_ENDPOINT_URL_SSO", "portal.sso", true },
};

/* The regions whose STS calls went to sts.amazonaws.com before regional endpoints became the
 * default (the STS ruleset's UseGlobalEndpoint branch). */
static const char *const sts_legacy_global[] = {
    "ap-northeast-1", "ap-south-1",   "ap-southeast-1", "ap-southeast-2",
    "aws-global",     "ca-central-1", "eu-central-1",   "eu-north-1",
    "eu-west-1",      "eu-west-2",    "eu-west-3",      "sa-east-1",
    "us-east-1",      "us-east-2",    "us-west-1",      "us-west-2",
};

const char *aws_service_config_key(enum aws_service s)
{
    return (unsigned)s < AWS_SVC__COUNT ? svcs[s].config_key : "?";
}

const char *aws_service_endpoint_env(enum aws_service s)
{
    return (unsigned)s < AWS_SVC__COUNT ? svcs[s].env : "?";
}

static bool region_chars_ok(const char *r)
{
    size_t n = 0;
    for (; r[n] != '\0'; n++) {
        if (!((r[n] >= 'a' && r[n] <= 'z') || (r[n] >= '0' && r[n] <= '9') || r[n] == '-')) {
            return false;
        }
    }
    return n > 0 && n <= 63 && r[0] != '-' && r[n - 1] != '-';
}

int aws_endpoint_default(enum aws_service s, const struct aws_endpoint_want *want, char **url,
                         char *signing_region, size_t cap, struct err *e)
{
    const char *r = want->region;
    const struct service_def *d;
    const struct aws_partition *p;
    struct buf b = BUF_INIT;
    *url = NULL;
    if ((unsigned)s >= AWS_SVC__COUNT) {
        return err_set(e, ERRC_INVALID, "unknown AWS service %d", (int)s);
    }
    if (r == NULL || !region_chars_ok(r)) {
        return err_set(e, ERRC_INVALID, "AWS region '%.64s' is not [a-z0-9-]", r ? r : "");
    }
    d = &svcs[s];
    p = aws_partition_lookup(r);
    snprintf(signing_region, cap, "%s", r);
    if (s == AWS_SVC_STS && !want->fips && !want->dualstack) {
        bool global = strcmp(r, "aws-global") == 0;
        for (size_t i = 0; want->sts_legacy && !global && i < ARRAY_LEN(sts_legacy_global); i++) {
            global = strcmp(r, sts_legacy_global[i]) == 0;
        }
        if (global) {
            *url = xstrdup("https://sts.amazonaws.com");
            snprintf(signing_region, cap, "us-east-1");
            return 0;
        }
    }
    if (want->fips && want->dualstack) {
        buf_addf(&b, "https://%s-fips.%s.%s", d->prefix, r, p->dualstack_suffix);
    } else if (want->fips && d->gov_fips_plain && strcmp(p->id, "aws-us-gov") == 0) {
        buf_addf(&b, "https://%s.%s.amazonaws.com", d->prefix, r);
    } else if (want->fips) {
        buf_addf(&b, "https://%s-fips.%s.%s", d->prefix, r, p->dns_suffix);
    } else if (want->dualstack) {
        buf_addf(&b, "https://%s.%s.%s", d->prefix, r, p->dualstack_suffix);
    } else {
        buf_addf(&b, "https://%s.%s.%s", d->prefix, r, p->dns_suffix);
    }
    *url = buf_detach(&b, NULL);
    return 0;
}

/* ---- ARNs ---------------------------------------------------------------------------------- */

int aws_arn_split(char *arn, struct aws_arn *out, struct err *e)
{
    char *f[6];
    char *p = arn;
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < 5; i++) {
        char *c = strchr(p, ':');
        if (c == NULL) {
            return err_set(e, ERRC_INVALID,
                           "not an ARN (arn:PARTITION:SERVICE:REGION:ACCOUNT:"
                           "RESOURCE)");
        }
        *c = '\0';
        f[i] = p;
        p = c + 1;
    }
    f[5] = p;
    if (strcmp(f[0], "arn") != 0 || f[2][0] == '\0' || f[5][0] == '\0') {
        return err_set(e, ERRC_INVALID,
                       "not an ARN (arn:PARTITION:SERVICE:REGION:ACCOUNT:"
                       "RESOURCE)");
    }
    if (!aws_partition_known(f[1])) {
        return err_set(e, ERRC_INVALID, "ARN partition '%.32s' is not one of AWS's", f[1]);
    }
    *out = (struct aws_arn){ f[1], f[2], f[3], f[4], f[5] };
    return 0;
}
