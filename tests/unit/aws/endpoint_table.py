#!/usr/bin/env python3
"""The reference for unit_aws_endpoint: botocore's own partition and endpoint-ruleset resolution
(the EndpointProvider the SDK runs for every call) over regions of every partition, FIPS and
dual-stack on and off, and STS's legacy global endpoint. One line per case:
  partition REGION PARTITION
  endpoint SERVICE REGION FIPS DUALSTACK LEGACY URL SIGNING_REGION
SERVICE is the ruleset's name (iot, sts, sqs, sso); booleans are 0/1."""
import itertools

import botocore.session
from botocore.endpoint_provider import EndpointProvider, RuleSetStandardLibrary

REGIONS = ["us-east-1", "us-west-2", "eu-central-1", "ap-southeast-7", "il-central-1",
           "mx-central-1", "ca-west-1", "cn-north-1", "cn-northwest-1", "us-gov-west-1",
           "us-gov-east-1", "us-iso-east-1", "us-isob-east-1", "eu-isoe-west-1",
           "us-isof-south-1", "eusc-de-east-1", "aws-global", "xx-nowhere-1", "eu-central-99"]
PARTITION_ONLY = ["aws-cn-global", "aws-us-gov-global", "us-gov-nowhere-9", "us-iso-x-1",
                  "cn-north", "us-east-1-x", "eu_west-1"]


def main():
    s = botocore.session.get_session()
    loader = s.get_component("data_loader")
    parts = loader.load_data("partitions")
    lib = RuleSetStandardLibrary(parts)
    for r in REGIONS + PARTITION_ONLY:
        print("partition", r, lib.aws_partition(r)["name"])
    for svc in ("iot", "sts", "sqs", "sso"):
        ep = EndpointProvider(loader.load_service_model(svc, "endpoint-rule-set-1"), parts)
        for region, fips, dual, legacy in itertools.product(REGIONS, (False, True), (False, True),
                                                            (False, True)):
            if legacy and svc != "sts":
                continue
            kw = {"Region": region, "UseFIPS": fips, "UseDualStack": dual}
            if svc == "sts":
                kw["UseGlobalEndpoint"] = legacy
            r = ep.resolve_endpoint(**kw)
            schemes = r.properties.get("authSchemes") or [{}]
            signing = schemes[0].get("signingRegion", region)
            print("endpoint", svc, region, int(fips), int(dual), int(legacy), r.url, signing)


if __name__ == "__main__":
    main()
