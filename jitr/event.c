/*
 * The two messages the intake receives (docs/aws-iot.md, "The registered event" and "Topic rule
 * HTTP action"), parsed and validated before anything is queued. Pure: no I/O, no allocation that
 * outlives the call; fuzzed.
 *
 * The registered event's documented types are loose (timestamp a number,
 * certificateRegistrationTimestamp a string), so both timestamps accept a number or a numeric
 * string. Members we do not know are ignored (AWS may add some), members we use are checked
 * strictly: a wrong type, an id that is not 64 hex digits, another status, an unknown CA.
 * Duplicate keys are refused (JSON_REJECT_DUPLICATES): two certificateIds would be ambiguous.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "jitr/jitr.h"

static int hex64(const json_t *obj, const char *name, char out[65], struct err *e)
{
    json_t *v = json_object_get(obj, name);
    const char *s;
    if (v == NULL) {
        return err_set(e, ERRC_INVALID, "event: '%s' is missing", name);
    }
    if (!json_is_string(v)) {
        return err_set(e, ERRC_INVALID, "event: '%s' must be a string", name);
    }
    s = json_string_value(v);
    if (json_string_length(v) != 64) {
        return err_set(e, ERRC_INVALID, "event: '%s' must be 64 hex digits (got %zu characters)",
                       name, json_string_length(v));
    }
    for (size_t i = 0; i < 64; i++) {
        if (hex_digit_value((unsigned char)s[i]) < 0) {
            return err_set(e, ERRC_INVALID, "event: '%s' must be 64 hex digits", name);
        }
        out[i] = (char)tolower((unsigned char)s[i]);
    }
    out[64] = '\0';
    return 0;
}

/* A number or a numeric string of milliseconds; absent gives 0. */
static int timestamp(const json_t *obj, const char *name, int64_t *out, struct err *e)
{
    json_t *v = json_object_get(obj, name);
    uint64_t u = 0;
    *out = 0;
    if (v == NULL) {
        return 0;
    }
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0) {
            return err_set(e, ERRC_INVALID, "event: '%s' must not be negative", name);
        }
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= 0 && d < 9.0e15)) {
            return err_set(e, ERRC_INVALID, "event: '%s' is out of range", name);
        }
        *out = (int64_t)d;
        return 0;
    }
    if (json_is_string(v)) {
        if (json_string_length(v) > 19 || str_to_u64(json_string_value(v), &u) != 0 ||
            u > (uint64_t)INT64_MAX) {
            return err_set(e, ERRC_INVALID, "event: '%s' must be a number of milliseconds",
                           name);
        }
        *out = (int64_t)u;
        return 0;
    }
    return err_set(e, ERRC_INVALID, "event: '%s' must be a number or a numeric string", name);
}

static json_t *parse_object(const uint8_t *body, size_t len, size_t max, const char *what,
                            struct err *e)
{
    json_error_t je;
    json_t *root = NULL;
    if (len > max) {
        err_set(e, ERRC_TOO_LARGE, "%s: body of %zu bytes is larger than %zu", what, len, max);
        return NULL;
    }
    if (len == 0) {
        err_set(e, ERRC_INVALID, "%s: empty body", what);
        return NULL;
    }
    root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        err_set(e, ERRC_INVALID, "%s: not JSON: %s (line %d, column %d)", what, je.text, je.line,
                je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        err_set(e, ERRC_INVALID, "%s: must be a JSON object", what);
        return NULL;
    }
    return root;
}

int jitr_event_parse(const uint8_t *body, size_t len, jitr_ca_known_fn *known, void *arg,
                     struct jitr_event *out, struct err *e)
{
    json_t *root = NULL, *v;
    int rc = -1;
    memset(out, 0, sizeof(*out));
    root = parse_object(body, len, JITR_EVENT_MAX, "event", e);
    if (root == NULL) {
        return -1;
    }
    if (hex64(root, "certificateId", out->cert_id, e) != 0 ||
        hex64(root, "caCertificateId", out->ca_id, e) != 0) {
        goto out;
    }
    v = json_object_get(root, "certificateStatus");
    if (v == NULL) {
        err_set(e, ERRC_INVALID, "event: 'certificateStatus' is missing");
        goto out;
    }
    if (!json_is_string(v)) {
        err_set(e, ERRC_INVALID, "event: 'certificateStatus' must be a string");
        goto out;
    }
    if (strcmp(json_string_value(v), "PENDING_ACTIVATION") != 0) {
        err_set(e, ERRC_INVALID, "event: certificateStatus '%.40s' is not PENDING_ACTIVATION",
                json_string_value(v));
        goto out;
    }
    v = json_object_get(root, "awsAccountId");
    if (v == NULL) {
        err_set(e, ERRC_INVALID, "event: 'awsAccountId' is missing");
        goto out;
    }
    if (!json_is_string(v) || json_string_length(v) != 12) {
        err_set(e, ERRC_INVALID, "event: 'awsAccountId' must be a string of 12 digits");
        goto out;
    }
    for (size_t i = 0; i < 12; i++) {
        if (!isdigit((unsigned char)json_string_value(v)[i])) {
            err_set(e, ERRC_INVALID, "event: 'awsAccountId' must be a string of 12 digits");
            goto out;
        }
    }
    memcpy(out->account, json_string_value(v), 12);
    out->account[12] = '\0';
    if (timestamp(root, "timestamp", &out->timestamp_ms, e) != 0 ||
        timestamp(root, "certificateRegistrationTimestamp", &out->registered_ms, e) != 0) {
        goto out;
    }
    if (known != NULL && !known(arg, out->ca_id)) {
        err_set(e, ERRC_DENIED, "event: caCertificateId %.16s... is not one of our CAs",
                out->ca_id);
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

static int copy_str(const json_t *obj, const char *name, char *out, size_t cap, size_t min,
                    struct err *e)
{
    json_t *v = json_object_get(obj, name);
    const char *s;
    size_t n;
    if (v == NULL) {
        return err_set(e, ERRC_INVALID, "confirmation: '%s' is missing", name);
    }
    if (!json_is_string(v)) {
        return err_set(e, ERRC_INVALID, "confirmation: '%s' must be a string", name);
    }
    s = json_string_value(v);
    n = json_string_length(v);
    if (n < min || n >= cap) {
        return err_set(e, ERRC_INVALID, "confirmation: '%s' must have %zu to %zu characters",
                       name, min, cap - 1);
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= ' ' || s[i] == 0x7f) {
            return err_set(e, ERRC_INVALID,
                           "confirmation: '%s' must be printable without spaces", name);
        }
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

int jitr_confirm_parse(const uint8_t *body, size_t len, struct jitr_confirm *out, struct err *e)
{
    json_t *root = NULL, *v;
    int rc = -1;
    memset(out, 0, sizeof(*out));
    root = parse_object(body, len, JITR_CONFIRM_MAX, "confirmation", e);
    if (root == NULL) {
        return -1;
    }
    v = json_object_get(root, "messageType");
    if (!json_is_string(v) || strcmp(json_string_value(v), "DestinationConfirmation") != 0) {
        err_set(e, ERRC_INVALID, "confirmation: 'messageType' must be DestinationConfirmation");
        goto out;
    }
    if (copy_str(root, "confirmationToken", out->token, sizeof(out->token), 1, e) != 0 ||
        copy_str(root, "arn", out->arn, sizeof(out->arn), 12, e) != 0) {
        goto out;
    }
    if (!str_has_prefix(out->arn, "arn:aws:iot:")) {
        err_set(e, ERRC_INVALID, "confirmation: 'arn' must be an arn:aws:iot: ARN");
        goto out;
    }
    if (json_object_get(root, "enableUrl") != NULL &&
        copy_str(root, "enableUrl", out->enable_url, sizeof(out->enable_url), 1, e) != 0) {
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}
