/*
 * What the flow's UPDATE_THING relies on, against the AWS IoT stand-in (moto behind
 * tests/sim/iot_standin.py; run under tests/sim/run_sim.py): the template from AWS's JITP
 * documentation evaluated for a device whose thing already exists with other attributes;
 * CreateThing refuses (ResourceAlreadyExistsException), UpdateThing merges (an empty value
 * removes an attribute) or replaces the attributes and replaces the thing type; its errors.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/iot.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr.h"
#include "tests/harness/tt.h"

#define DEV_ID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static struct event_base *base;

#define SYNC(call) \
    (aws_iot_sync_release(&s), err_clear(&e), (call) == 0 ? aws_iot_sync_wait(c, &s, &e) : -1)

static const char *attr(json_t *out, const char *k)
{
    json_t *v = json_object_get(json_object_get(out, "attributes"), k);
    return json_is_string(v) ? json_string_value(v) : "(absent)";
}

static int test_update_thing(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_iot_sync s;
    struct aws_iot *c = NULL;
    struct aws_iot_opts o = { 0 };
    struct jitr_template *t = NULL;
    struct jitr_params p = { 0 };
    struct jitr_plan plan = { 0 };
    struct buf path = BUF_INIT;
    json_t *old = json_pack("{s:s, s:s}", "version", "v0", "owner", "factory-7");
    json_t *drop = json_pack("{s:s}", "serialNumber", "");
    aws_iot_sync_init(&s);
    o.base = base;
    o.no_quota = true;
    CHECK(c = aws_iot_new(&o, &e));
    /* the documentation template for a device whose CN names an existing thing */
    buf_addf(&path, "%s/tests/unit/jitr/data/aws-jitp-doc-template.json",
             getenv("JITRCA_SOURCE_DIR"));
    t = jitr_template_load(path.data, "jitrca-device", &e);
    CHECK(t != NULL);
    jitr_params_set(&p, "AWS::IoT::Certificate::CommonName", "lamp-0042");
    jitr_params_set(&p, "AWS::IoT::Certificate::SerialNumber", "SN-42");
    jitr_params_set(&p, "AWS::IoT::Certificate::Country", "DE");
    jitr_params_set(&p, "AWS::IoT::Certificate::Id", DEV_ID);
    CHECK_OK(jitr_template_eval(t, &p, &plan, &e), &e);
    CHECK_INT_EQ(plan.thing_override, JITR_OVR_MERGE);
    CHECK_INT_EQ(plan.type_override, JITR_OVR_REPLACE);
    CHECK_STR_EQ(plan.thing_type, "lightBulb-versionA");
    CHECK_OK(
        SYNC(aws_iot_create_thing(c, plan.thing_name, NULL, old, NULL, aws_iot_sync_cb, &s, &e)),
        &e);
    CHECK(SYNC(aws_iot_create_thing(c, plan.thing_name, NULL, plan.attributes, NULL,
                                    aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_STR_EQ(s.code, "ResourceAlreadyExistsException");
    /* MERGE */
    CHECK_OK(SYNC(aws_iot_update_thing(c, plan.thing_name, NULL, plan.attributes, true,
                                       aws_iot_sync_cb, &s, &e)),
             &e);
    CHECK_OK(SYNC(aws_iot_describe_thing(c, plan.thing_name, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_STR_EQ(attr(s.out, "version"), "v1");
    CHECK_STR_EQ(attr(s.out, "serialNumber"), "SN-42");
    CHECK_STR_EQ(attr(s.out, "owner"), "factory-7");
    /* an empty value removes that attribute */
    CHECK_OK(
        SYNC(aws_iot_update_thing(c, plan.thing_name, NULL, drop, true, aws_iot_sync_cb, &s, &e)),
        &e);
    CHECK_OK(SYNC(aws_iot_describe_thing(c, plan.thing_name, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_STR_EQ(attr(s.out, "serialNumber"), "(absent)");
    CHECK_STR_EQ(attr(s.out, "owner"), "factory-7");
    /* REPLACE */
    CHECK_OK(SYNC(aws_iot_update_thing(c, plan.thing_name, NULL, plan.attributes, false,
                                       aws_iot_sync_cb, &s, &e)),
             &e);
    CHECK_OK(SYNC(aws_iot_describe_thing(c, plan.thing_name, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_STR_EQ(attr(s.out, "version"), "v1");
    CHECK_STR_EQ(attr(s.out, "serialNumber"), "SN-42");
    CHECK_STR_EQ(attr(s.out, "owner"), "(absent)");
    /* now CreateThing with the template's configuration is the idempotent 200 again */
    CHECK_OK(SYNC(aws_iot_create_thing(c, plan.thing_name, NULL, plan.attributes, NULL,
                                       aws_iot_sync_cb, &s, &e)),
             &e);
    /* ThingTypeName REPLACE: a type that does not exist is refused, one that does is set */
    CHECK(SYNC(aws_iot_update_thing(c, plan.thing_name, plan.thing_type, NULL, true,
                                    aws_iot_sync_cb, &s, &e)) != 0);
    CHECK_STR_EQ(s.code, "ResourceNotFoundException");
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    CHECK_INT_EQ(tt_sh("python3 -c 'import boto3, os; boto3.client(\"iot\", endpoint_url=os.environ"
                       "[\"JITRCA_SIM_MOTO_URL\"]).create_thing_type(thingTypeName=\"%s\")' "
                       ">/dev/null",
                       plan.thing_type),
                 0);
    CHECK_OK(SYNC(aws_iot_update_thing(c, plan.thing_name, plan.thing_type, NULL, true,
                                       aws_iot_sync_cb, &s, &e)),
             &e);
    CHECK_OK(SYNC(aws_iot_describe_thing(c, plan.thing_name, aws_iot_sync_cb, &s, &e)), &e);
    CHECK_STR_EQ(json_string_value(json_object_get(s.out, "thingTypeName")), "lightBulb-versionA");
    CHECK_STR_EQ(attr(s.out, "version"), "v1");
    /* no such thing; a name AWS refuses */
    CHECK(SYNC(aws_iot_update_thing(c, "lamp-9999", NULL, plan.attributes, true, aws_iot_sync_cb,
                                    &s, &e)) != 0);
    CHECK_STR_EQ(s.code, "ResourceNotFoundException");
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    CHECK(SYNC(aws_iot_update_thing(c, "bad name", NULL, plan.attributes, true, aws_iot_sync_cb, &s,
                                    &e)) != 0);
    CHECK_STR_EQ(s.code, "InvalidRequestException");
    CHECK_INT_EQ(e.code, ERRC_INVALID);
out:
    aws_iot_sync_release(&s);
    aws_iot_free(c);
    jitr_plan_release(&plan);
    jitr_params_release(&p);
    jitr_template_free(t);
    buf_release(&path);
    json_decref(old);
    json_decref(drop);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "update_thing", test_update_thing },
    };
    int rc;
    if (getenv("JITRCA_SIM_IOT_URL") == NULL) {
        fprintf(stderr, "run under tests/sim/run_sim.py\n");
        return 77;
    }
    base = event_base_new();
    rc = tt_main(argc, argv, cases, ARRAY_LEN(cases));
    event_base_free(base);
    return rc;
}
