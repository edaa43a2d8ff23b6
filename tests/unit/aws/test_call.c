/*
 * aws/call.c's pure part: where an error response carries its code, by protocol, as botocore's
 * parsers read it. REST-JSON (IoT): x-amzn-ErrorType, else body code/Code, else __type. JSON 1.0
 * (SQS): body __type, else x-amzn-ErrorType, else code/Code. Always cut at ':' and after '#'.
 * The engine's behaviour on the wire is in unit_aws_iot and unit_aws_sqs ("engine_rules").
 */
#include <string.h>

#include "aws/call.h"
#include "tests/harness/tt.h"

static const char *code_of(enum aws_call_protocol p, const char *header, const char *body_json,
                           long status)
{
    static char out[128];
    struct aws_http_resp r;
    json_t *body = body_json ? json_loads(body_json, 0, NULL) : NULL;
    memset(&r, 0, sizeof(r));
    r.status = status;
    snprintf(r.error_type, sizeof(r.error_type), "%s", header ? header : "");
    aws_call_error_code(p, &r, body, out, sizeof(out));
    json_decref(body);
    return out;
}

static int test_error_code(void)
{
    int rc = 0;
    const char *both = "{\"__type\": \"com.amazonaws.sqs#QueueDoesNotExist\", \"code\": \"C\"}";
    /* REST-JSON */
    CHECK_STR_EQ(code_of(AWS_PROTO_REST_JSON, "ResourceNotFoundException:http://x/", both, 404),
                 "ResourceNotFoundException");
    CHECK_STR_EQ(code_of(AWS_PROTO_REST_JSON, NULL, both, 400), "C");
    CHECK_STR_EQ(code_of(AWS_PROTO_REST_JSON, NULL, "{\"Code\": \"D\"}", 400), "D");
    CHECK_STR_EQ(code_of(AWS_PROTO_REST_JSON, NULL, "{\"__type\": \"a.b#E\"}", 400), "E");
    /* JSON 1.0: __type first */
    CHECK_STR_EQ(code_of(AWS_PROTO_JSON, "Other", both, 400), "QueueDoesNotExist");
    CHECK_STR_EQ(code_of(AWS_PROTO_JSON, "aws.x#F:more", "{\"code\": \"C\"}", 400), "F");
    CHECK_STR_EQ(code_of(AWS_PROTO_JSON, NULL, "{\"code\": \"C\"}", 400), "C");
    /* none, or empty: the status */
    CHECK_STR_EQ(code_of(AWS_PROTO_JSON, NULL, NULL, 502), "HTTP502");
    CHECK_STR_EQ(code_of(AWS_PROTO_REST_JSON, ":x", "{\"code\": \"\"}", 413), "HTTP413");
    /* the message */
    {
        json_t *b = json_loads("{\"Message\": \"m\"}", 0, NULL);
        CHECK_STR_EQ(aws_call_json_message(b), "m");
        CHECK_STR_EQ(aws_call_json_message(NULL), "");
        json_decref(b);
    }
out:
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "error_code", test_error_code },
    };
    return tt_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
