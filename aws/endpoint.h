/*
 * AWS partitions and service endpoints, pure functions (docs/aws-client.md "Endpoints").
 *
 * A region belongs to a partition (botocore's partitions.json): "aws" (commercial), "aws-cn"
 * (China, amazonaws.com.cn), "aws-us-gov" (GovCloud), "aws-iso", "aws-iso-b", "aws-iso-e",
 * "aws-iso-f" and "aws-eusc". The partition is the second field of every ARN of that region
 * ("arn:aws-cn:iot:cn-north-1:..."), and names the DNS suffixes of its endpoints.
 *
 * Endpoints follow the services' endpoint rulesets (botocore's endpoint-rule-set-1.json of iot,
 * sts, sqs and sso):
 *   default     https://PREFIX.REGION.DNS_SUFFIX                  iot.eu-west-1.amazonaws.com
 *   FIPS        https://PREFIX-fips.REGION.DNS_SUFFIX             iot-fips.us-east-1.amazonaws.com
 *               (GovCloud STS, SQS and SSO: the default host, which is FIPS there)
 *   dual-stack  https://PREFIX.REGION.DUALSTACK_SUFFIX            iot.us-east-1.api.aws
 *   both        https://PREFIX-fips.REGION.DUALSTACK_SUFFIX       sqs-fips.us-east-2.api.aws
 *   STS         region "aws-global", or sts_regional_endpoints=legacy in one of the 16 regions
 *               that used the global endpoint: https://sts.amazonaws.com, signed for us-east-1
 * PREFIX is iot, sts, sqs, portal.sso (the SSO portal's GetRoleCredentials).
 */
#ifndef AWS_ENDPOINT_H
#define AWS_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/compat.h"
#include "core/err.h"

struct aws_partition {
    const char *id;               /* "aws", "aws-cn", ... : the ARN partition */
    const char *dns_suffix;       /* "amazonaws.com" */
    const char *dualstack_suffix; /* "api.aws" */
};

/* The partition of region: the one listing it by name, else the first whose region pattern
 * matches (botocore's order), else "aws". Never NULL. */
const struct aws_partition *aws_partition_lookup(const char *region);
/* aws_partition_lookup(region)->id: "aws", "aws-cn", "aws-us-gov", ... */
const char *aws_partition_of_region(const char *region);
/* True when id is one of the partitions above ("aws-cn"); for validating ARNs. */
bool aws_partition_known(const char *id);

/* The services whose endpoints jitrca resolves. Adding one? aws/endpoint.c svcs[]. */
enum aws_service {
    AWS_SVC_IOT,
    AWS_SVC_STS,
    AWS_SVC_SQS,
    AWS_SVC_SSO, /* the SSO portal (GetRoleCredentials) */
    AWS_SVC__COUNT
};

/* "iot", "sts", "sqs", "sso": the service id of the shared config's services sections. */
const char *aws_service_config_key(enum aws_service s);
/* "AWS_ENDPOINT_URL_IOT", ...: the service's endpoint environment variable. */
const char *aws_service_endpoint_env(enum aws_service s);

struct aws_endpoint_want {
    const char *region; /* required, [a-z0-9-] */
    bool fips;
    bool dualstack;
    bool sts_legacy; /* sts_regional_endpoints = legacy (STS only) */
};

/*
 * The default endpoint of service s for want, as the service's ruleset builds it: *url (owned,
 * "https://host", no trailing '/') and signing_region (the region SigV4 scopes to: want->region,
 * or "us-east-1" for STS's global endpoint). ERRC_INVALID for a missing or malformed region.
 */
int aws_endpoint_default(enum aws_service s, const struct aws_endpoint_want *want, char **url,
                         char *signing_region, size_t cap, struct err *e) ATTR_WUR;

/*
 * An ARN taken apart: arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE (RESOURCE may contain ':').
 * Pointers into the caller's copy (aws_arn_split writes NULs into it).
 */
struct aws_arn {
    char *partition, *service, *region, *account, *resource;
};
/* Splits arn in place. ERRC_INVALID when it is not "arn:" followed by five fields or the
 * partition is not one of AWS's. */
int aws_arn_split(char *arn, struct aws_arn *out, struct err *e) ATTR_WUR;

#endif
