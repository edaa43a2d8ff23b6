/*
 * The C half of the botocore cross-check (botocore_sign.py --check): reads the cases botocore
 * signed as a JSON array on stdin, signs each wire request with aws_sigv4_sign() and compares
 * Authorization, canonical request and string to sign. Exit 0 only when every case matches and
 * there was at least one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aws/aws.h"
#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"

#define MAX_HDRS 32

static const char *str(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int parse_amz_date(const char *s, time_t *out)
{
    struct tm tm = { 0 };
    char z = 0;
    if (s == NULL || strlen(s) != 16 ||
        sscanf(s, "%4d%2d%2dT%2d%2d%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &z) != 7 ||
        z != 'Z') {
        return -1;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = timegm(&tm);
    return 0;
}

static bool same(const char *what, const char *want, const char *got)
{
    if (want != NULL && got != NULL && strcmp(want, got) == 0) {
        return true;
    }
    printf("  %s differs\n  botocore:\n%s\n  jitrca:\n%s\n", what, want ? want : "(none)",
           got ? got : "(none)");
    return false;
}

static bool check_case(json_t *c)
{
    const char *name = str(c, "name");
    struct aws_header hdrs[MAX_HDRS];
    json_t *jh = json_object_get(c, "headers");
    struct buf body = BUF_INIT;
    struct aws_creds cr;
    struct aws_sigv4_out out;
    struct err e = ERR_INIT;
    time_t when = 0;
    bool ok = false;
    size_t nh = json_array_size(jh);
    const char *b64 = str(c, "body_b64");
    struct aws_sigv4_req r;
    memset(&r, 0, sizeof(r));
    aws_creds_init(&cr);
    aws_sigv4_out_init(&out);
    if (name == NULL || nh == 0 || nh > MAX_HDRS || b64 == NULL ||
        parse_amz_date(str(c, "amz_date"), &when) != 0) {
        printf("MALFORMED case %s\n", name ? name : "(unnamed)");
        goto out;
    }
    for (size_t i = 0; i < nh; i++) {
        json_t *pair = json_array_get(jh, i);
        hdrs[i].name = json_string_value(json_array_get(pair, 0));
        hdrs[i].value = json_string_value(json_array_get(pair, 1));
    }
    if (base64_decode(&body, b64, strlen(b64)) != 0) {
        printf("MALFORMED body in %s\n", name);
        goto out;
    }
    if (aws_creds_set(&cr, "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                      str(c, "token"), 0, "botocore check", &e) != 0) {
        printf("FAIL %s: %s\n", name, e.msg);
        goto out;
    }
    r = (struct aws_sigv4_req){
        .method = str(c, "method"),
        .path = str(c, "path"),
        .query = str(c, "query"),
        .headers = hdrs,
        .nheaders = nh,
        .payload = (const uint8_t *)body.data,
        .payload_len = body.len,
        .region = str(c, "region"),
        .service = str(c, "service"),
        .when = when,
    };
    if (aws_sigv4_sign(&r, &cr, &out, &e) != 0) {
        printf("FAIL %s: %s\n", name, e.msg);
        goto out;
    }
    ok = same("canonical request", str(c, "canonical_request"), out.canonical_request);
    ok = same("string to sign", str(c, "string_to_sign"), out.string_to_sign) && ok;
    ok = same("Authorization", str(c, "authorization"), out.authorization) && ok;
    printf("%s %s\n", ok ? "ok" : "MISMATCH", name);
out:
    buf_release(&body);
    aws_creds_release(&cr);
    aws_sigv4_out_release(&out);
    return ok;
}

int main(void)
{
    json_error_t jerr;
    json_t *cases;
    size_t n, bad = 0;
    mem_install();
    cases = json_loadf(stdin, 0, &jerr);
    if (!json_is_array(cases) || (n = json_array_size(cases)) == 0) {
        fprintf(stderr, "aws_botocore_check: expected a non-empty JSON array on stdin (%s)\n",
                cases == NULL ? jerr.text : "wrong type");
        json_decref(cases);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!check_case(json_array_get(cases, i))) {
            bad++;
        }
    }
    printf("%zu of %zu requests match botocore\n", n - bad, n);
    json_decref(cases);
    return bad == 0 ? 0 : 1;
}
