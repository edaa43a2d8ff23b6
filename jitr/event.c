/*
 * The messages the intakes receive (docs/jitr.md "Accepted events", "Destination
 * confirmation"), parsed and validated before anything is queued. Pure: no I/O, no allocation
 * that outlives the call (but the list of jitr_destination_arns_parse); fuzzed.
 *
 * The registered event (docs/jitr.md "Accepted events"): the members the flow needs are checked
 * strictly — certificateId and caCertificateId of 64 hex digits, certificateStatus
 * PENDING_ACTIVATION, awsAccountId of 12 digits, the CA one of ours — and everything else
 * leniently: the timestamps are read when they are a number or a numeric string and ignored
 * otherwise (AWS has sent "certificateRegistrationTimestamp": null), members we do not know
 * (sourceIp, ...) are ignored. Duplicate keys are refused: two certificateIds would be ambiguous.
 *
 * A body is one event (a JSON object) or, from an HTTP rule action with batching enabled, a JSON
 * array of 1..JITR_BATCH_MAX of them. The array is walked element by element (Jansson's decoder
 * stopped after each value, JSON_DISABLE_EOF_CHECK), so an element that can never be valid (not
 * an object, a duplicate key, too large, a wrong member) is refused alone, with its reason,
 * while the others go on; what makes the whole body unreadable (not JSON, an array inside the
 * array, too many elements, too many bytes) refuses the body.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "aws/endpoint.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr.h"

static int hex64(const json_t *obj, const char *name, char out[65], struct err *e)
{
    json_t *v = json_object_get(obj, name);
    const char *s;
    if (v == NULL || json_is_null(v)) {
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

/* Milliseconds from a number or a numeric string; 0 for anything else (absent, null, a date
 * string, negative): the timestamps are informational, never a reason to refuse a device. */
static int64_t timestamp(const json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    uint64_t u = 0;
    if (json_is_integer(v)) {
        return json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        return d >= 0 && d < 9.0e15 ? (int64_t)d : 0;
    }
    if (json_is_string(v) && json_string_length(v) <= 19 &&
        str_to_u64(json_string_value(v), &u) == 0 && u <= (uint64_t)INT64_MAX) {
        return (int64_t)u;
    }
    return 0;
}

/* One event object: the strict members, then the lenient ones. */
static int event_from_json(const json_t *root, jitr_ca_known_fn *known, void *arg,
                           struct jitr_event *out, struct err *e)
{
    json_t *v;
    memset(out, 0, sizeof(*out));
    if (!json_is_object(root)) {
        return err_set(e, ERRC_INVALID, "event: must be a JSON object");
    }
    if (hex64(root, "certificateId", out->cert_id, e) != 0 ||
        hex64(root, "caCertificateId", out->ca_id, e) != 0) {
        goto fail;
    }
    v = json_object_get(root, "certificateStatus");
    if (v == NULL || json_is_null(v)) {
        err_set(e, ERRC_INVALID, "event: 'certificateStatus' is missing");
        goto fail;
    }
    if (!json_is_string(v)) {
        err_set(e, ERRC_INVALID, "event: 'certificateStatus' must be a string");
        goto fail;
    }
    if (strcmp(json_string_value(v), "PENDING_ACTIVATION") != 0) {
        err_set(e, ERRC_INVALID, "event: certificateStatus '%.40s' is not PENDING_ACTIVATION",
                json_string_value(v));
        goto fail;
    }
    v = json_object_get(root, "awsAccountId");
    if (v == NULL || json_is_null(v)) {
        err_set(e, ERRC_INVALID, "event: 'awsAccountId' is missing");
        goto fail;
    }
    if (!json_is_string(v) || json_string_length(v) != 12) {
        err_set(e, ERRC_INVALID, "event: 'awsAccountId' must be a string of 12 digits");
        goto fail;
    }
    for (size_t i = 0; i < 12; i++) {
        if (!isdigit((unsigned char)json_string_value(v)[i])) {
            err_set(e, ERRC_INVALID, "event: 'awsAccountId' must be a string of 12 digits");
            goto fail;
        }
    }
    memcpy(out->account, json_string_value(v), 12);
    out->account[12] = '\0';
    out->timestamp_ms = timestamp(root, "timestamp");
    out->registered_ms = timestamp(root, "certificateRegistrationTimestamp");
    if (known != NULL && !known(arg, out->ca_id)) {
        err_set(e, ERRC_DENIED, "event: caCertificateId %.16s... is not one of our CAs",
                out->ca_id);
        goto fail;
    }
    return 0;
fail:
    memset(out, 0, sizeof(*out));
    return -1;
}

static size_t skip_ws(const uint8_t *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) {
        i++;
    }
    return i;
}

static int not_json(const char *what, const json_error_t *je, struct err *e)
{
    return err_set(e, ERRC_INVALID, "%s: not JSON: %s (line %d, column %d)", what, je->text,
                   je->line, je->column);
}

/* The object of a single-event body. */
static int parse_single(const uint8_t *body, size_t len, jitr_ca_known_fn *known, void *arg,
                        struct jitr_events *out, struct err *e)
{
    json_error_t je;
    json_t *root;
    if (len > JITR_EVENT_MAX) {
        return err_set(e, ERRC_TOO_LARGE, "event: body of %zu bytes is larger than %d", len,
                       JITR_EVENT_MAX);
    }
    root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        return not_json("event", &je, e);
    }
    out->n = 1;
    if (event_from_json(root, known, arg, &out->ev[0], &out->err[0]) == 0) {
        out->nvalid = 1;
    }
    json_decref(root);
    return 0;
}

/* One element of a batch at body[*pos]: decoded into out->ev[k] / out->err[k]; *pos moves past
 * it. -1 only when the element cannot be delimited (the body is not JSON) or is an array. */
static int parse_element(const uint8_t *body, size_t len, size_t *pos, size_t k,
                         jitr_ca_known_fn *known, void *arg, struct jitr_events *out, struct err *e)
{
    const size_t flags = JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK;
    json_error_t je;
    json_t *v;
    size_t start = *pos, used;
    if (body[start] == '[') {
        return err_set(e, ERRC_INVALID,
                       "events: element %zu is an array: a batch is one array "
                       "of event objects, not nested",
                       k + 1);
    }
    v = json_loadb((const char *)body + start, len - start, flags | JSON_REJECT_DUPLICATES, &je);
    if (v == NULL && json_error_code(&je) == json_error_duplicate_key) {
        /* well-formed but ambiguous: delimit it without the check, refuse it alone */
        v = json_loadb((const char *)body + start, len - start, flags, &je);
        if (v == NULL) {
            return not_json("events", &je, e);
        }
        json_decref(v);
        v = NULL;
        err_set(&out->err[k], ERRC_INVALID, "event: a member appears twice");
    } else if (v == NULL) {
        return not_json("events", &je, e);
    }
    used = (size_t)je.position;
    *pos = start + used;
    if (v == NULL) {
        return 0;
    }
    if (used > JITR_EVENT_MAX) {
        err_set(&out->err[k], ERRC_INVALID, "event: %zu bytes, larger than %d", used,
                JITR_EVENT_MAX);
    } else if (event_from_json(v, known, arg, &out->ev[k], &out->err[k]) == 0) {
        out->nvalid++;
    }
    json_decref(v);
    return 0;
}

/* A batch: '[' element (',' element)* ']' with at most JITR_BATCH_MAX elements. */
static int parse_batch(const uint8_t *body, size_t len, size_t pos, jitr_ca_known_fn *known,
                       void *arg, struct jitr_events *out, struct err *e)
{
    out->batch = true;
    pos = skip_ws(body, len, pos + 1);
    if (pos < len && body[pos] == ']') {
        return err_set(e, ERRC_INVALID, "events: empty array");
    }
    for (;;) {
        if (pos >= len) {
            return err_set(e, ERRC_INVALID, "events: not JSON: the array is not closed");
        }
        if (out->n == JITR_BATCH_MAX) {
            return err_set(e, ERRC_TOO_LARGE, "events: more than %d events in one body",
                           JITR_BATCH_MAX);
        }
        if (parse_element(body, len, &pos, out->n, known, arg, out, e) != 0) {
            return -1;
        }
        out->n++;
        pos = skip_ws(body, len, pos);
        if (pos < len && body[pos] == ',') {
            pos = skip_ws(body, len, pos + 1);
            continue;
        }
        if (pos < len && body[pos] == ']') {
            break;
        }
        if (pos >= len) {
            return err_set(e, ERRC_INVALID, "events: not JSON: the array is not closed");
        }
        return err_set(e, ERRC_INVALID, "events: not JSON: ',' or ']' expected after element %zu",
                       out->n);
    }
    if (skip_ws(body, len, pos + 1) != len) {
        return err_set(e, ERRC_INVALID, "events: not JSON: data after the array");
    }
    return 0;
}

static void events_reset(struct jitr_events *out)
{
    for (size_t i = 0; i < JITR_BATCH_MAX; i++) {
        memset(&out->ev[i], 0, sizeof(out->ev[i]));
        err_clear(&out->err[i]);
    }
    out->n = out->nvalid = 0;
    out->batch = false;
}

int jitr_events_parse(const uint8_t *body, size_t len, jitr_ca_known_fn *known, void *arg,
                      struct jitr_events *out, struct err *e)
{
    size_t pos;
    int rc;
    events_reset(out);
    if (len > JITR_BODY_MAX) {
        return err_set(e, ERRC_TOO_LARGE, "events: body of %zu bytes is larger than %d", len,
                       JITR_BODY_MAX);
    }
    pos = skip_ws(body, len, 0);
    if (pos == len) {
        return err_set(e, ERRC_INVALID, "event: empty body");
    }
    if (body[pos] == '[') {
        rc = parse_batch(body, len, pos, known, arg, out, e);
    } else if (body[pos] == '{') {
        rc = parse_single(body, len, known, arg, out, e);
    } else {
        json_error_t je;
        json_t *v = json_loadb((const char *)body, len, JSON_DECODE_ANY, &je);
        rc = v == NULL
                 ? not_json("event", &je, e)
                 : err_set(e, ERRC_INVALID, "event: must be a JSON object or an array of them");
        json_decref(v);
    }
    if (rc != 0) {
        events_reset(out);
    }
    return rc;
}

int jitr_event_parse(const uint8_t *body, size_t len, jitr_ca_known_fn *known, void *arg,
                     struct jitr_event *out, struct err *e)
{
    struct jitr_events all;
    size_t pos = skip_ws(body, len, 0);
    memset(out, 0, sizeof(*out));
    if (len > JITR_EVENT_MAX) {
        return err_set(e, ERRC_TOO_LARGE, "event: body of %zu bytes is larger than %d", len,
                       JITR_EVENT_MAX);
    }
    if (pos < len && body[pos] == '[') {
        return err_set(e, ERRC_INVALID, "event: must be a JSON object");
    }
    if (jitr_events_parse(body, len, known, arg, &all, e) != 0) {
        return -1;
    }
    if (all.nvalid != 1) {
        err_copy(e, &all.err[0]);
        return -1;
    }
    *out = all.ev[0];
    return 0;
}

/* ---- an event as a stream entry ------------------------------------------------------------ */

void jitr_event_fields(const struct jitr_event *ev, const char *src, struct jitr_fields *out)
{
    size_t n = 0;
    snprintf(out->recv, sizeof(out->recv), "%lld", (long long)ev->received_ms);
    snprintf(out->ts, sizeof(out->ts), "%lld", (long long)ev->timestamp_ms);
    out->av[n++] = "cert";
    out->av[n++] = ev->cert_id;
    out->av[n++] = "ca";
    out->av[n++] = ev->ca_id;
    out->av[n++] = "account";
    out->av[n++] = ev->account;
    out->av[n++] = "recv";
    out->av[n++] = out->recv;
    if (ev->timestamp_ms > 0) {
        out->av[n++] = "ts";
        out->av[n++] = out->ts;
    }
    if (src != NULL) {
        out->av[n++] = "src";
        out->av[n++] = src;
    }
    out->n = n;
}

/* v when it is exactly len characters that `is` accepts, copied (lowercased) to out. */
static void field_copy(const char *v, size_t len, int (*is)(int), char *out)
{
    size_t i;
    for (i = 0; v[i] != '\0' && i < len && is((unsigned char)v[i]); i++) {
        out[i] = (char)tolower((unsigned char)v[i]);
    }
    out[v[i] == '\0' && i == len ? i : 0] = '\0';
}

int jitr_event_from_fields(const char *const *kv, size_t n, struct jitr_event *ev, struct err *e)
{
    memset(ev, 0, sizeof(*ev));
    for (size_t i = 0; i + 1 < n; i += 2) {
        const char *k = kv[i], *v = kv[i + 1];
        uint64_t u;
        if (k == NULL || v == NULL) {
            continue;
        }
        if (strcmp(k, "cert") == 0) {
            field_copy(v, 64, isxdigit, ev->cert_id);
        } else if (strcmp(k, "ca") == 0) {
            field_copy(v, 64, isxdigit, ev->ca_id);
        } else if (strcmp(k, "account") == 0) {
            field_copy(v, 12, isdigit, ev->account);
        } else if (strcmp(k, "recv") == 0 && str_to_u64(v, &u) == 0 && u <= INT64_MAX) {
            ev->received_ms = (int64_t)u;
        } else if (strcmp(k, "ts") == 0 && str_to_u64(v, &u) == 0 && u <= INT64_MAX) {
            ev->timestamp_ms = (int64_t)u;
        }
    }
    if (ev->cert_id[0] == '\0' || ev->ca_id[0] == '\0') {
        memset(ev, 0, sizeof(*ev));
        return err_set(e, ERRC_INVALID, "an event entry without a 64-hex-digit cert and ca");
    }
    return 0;
}

/* ---- SQS message bodies ---------------------------------------------------------------------- */

int jitr_sqs_body_decode(const char *body, size_t len, struct buf *out, bool *was_base64,
                         struct err *e)
{
    struct buf dec = BUF_INIT;
    size_t i = skip_ws((const uint8_t *)body, len, 0);
    *was_base64 = false;
    if (len > JITR_SQS_BODY_MAX) {
        return err_set(e, ERRC_TOO_LARGE, "message body of %zu bytes is over the limit of %d",
                       len, JITR_SQS_BODY_MAX);
    }
    if (i < len && (body[i] == '{' || body[i] == '[')) {
        buf_add(out, body, len);
        return 0;
    }
    if (i == len) {
        return err_set(e, ERRC_INVALID, "message body is empty");
    }
    if (base64_decode(&dec, body, len) != 0 || dec.len == 0) {
        buf_release(&dec);
        return err_set(e, ERRC_INVALID, "message body is neither JSON nor base64");
    }
    i = skip_ws((const uint8_t *)dec.data, dec.len, 0);
    if (i == dec.len || (dec.data[i] != '{' && dec.data[i] != '[')) {
        buf_release(&dec);
        return err_set(e, ERRC_INVALID, "message body is base64 of something that is not a "
                       "JSON object or array");
    }
    buf_add(out, dec.data, dec.len);
    buf_release(&dec);
    *was_base64 = true;
    return 0;
}

/* ---- ARNs and the destination confirmation -------------------------------------------------- */

/* Copies s[0..n) into out (cap) when every byte is in [a-z0-9-]. */
static bool arn_field(const char *s, size_t n, char *out, size_t cap)
{
    if (n >= cap) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-')) {
            return false;
        }
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

int jitr_arn_parse(const char *s, struct jitr_arn *out, struct err *e)
{
    const char *f[6];
    size_t n[6], rl;
    const char *p = s;
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < 5; i++) {
        const char *c = strchr(p, ':');
        if (c == NULL) {
            return err_set(e, ERRC_INVALID,
                           "'%.80s' is not an ARN (arn:PARTITION:SERVICE:REGION:"
                           "ACCOUNT:RESOURCE)",
                           s);
        }
        f[i] = p;
        n[i] = (size_t)(c - p);
        p = c + 1;
    }
    f[5] = p;
    n[5] = rl = strlen(p);
    if (n[0] != 3 || memcmp(f[0], "arn", 3) != 0 ||
        !arn_field(f[1], n[1], out->partition, sizeof(out->partition)) ||
        !aws_partition_known(out->partition) ||
        n[2] == 0 || !arn_field(f[2], n[2], out->service, sizeof(out->service)) ||
        !arn_field(f[3], n[3], out->region, sizeof(out->region)) || !(n[4] == 0 || n[4] == 12) ||
        rl == 0 || rl >= sizeof(out->resource)) {
        memset(out, 0, sizeof(*out));
        return err_set(e, ERRC_INVALID,
                       "'%.80s' is not an ARN (arn:PARTITION:SERVICE:REGION:"
                       "ACCOUNT:RESOURCE)",
                       s);
    }
    for (size_t i = 0; i < n[4]; i++) {
        if (!isdigit((unsigned char)f[4][i])) {
            memset(out, 0, sizeof(*out));
            return err_set(e, ERRC_INVALID, "ARN '%.80s': the account must be 12 digits", s);
        }
        out->account[i] = f[4][i];
    }
    for (size_t i = 0; i < rl; i++) {
        if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f) {
            memset(out, 0, sizeof(*out));
            return err_set(e, ERRC_INVALID,
                           "ARN '%.80s': the resource must be printable "
                           "without spaces",
                           s);
        }
    }
    memcpy(out->resource, p, rl + 1);
    return 0;
}

int jitr_destination_arn_parse(const char *s, struct jitr_arn *out, struct err *e)
{
    if (jitr_arn_parse(s, out, e) != 0) {
        return -1;
    }
    if (strcmp(out->service, "iot") != 0 || out->region[0] == '\0' || out->account[0] == '\0' ||
        !str_has_prefix(out->resource, "ruledestination/")) {
        memset(out, 0, sizeof(*out));
        return err_set(e, ERRC_INVALID,
                       "'%.80s' is not the ARN of an AWS IoT topic rule "
                       "destination (arn:PARTITION:iot:REGION:ACCOUNT:ruledestination/...)",
                       s);
    }
    if (strcmp(out->partition, aws_partition_of_region(out->region)) != 0) {
        err_set(e, ERRC_INVALID, "ARN '%.80s': region %s is in partition %s, not %s", s,
                out->region, aws_partition_of_region(out->region), out->partition);
        memset(out, 0, sizeof(*out));
        return -1;
    }
    return 0;
}

void jitr_destination_arns_free(char **arns, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        xfree(arns[i]);
    }
    xfree(arns);
}

int jitr_destination_arns_parse(const char *list, char ***out, size_t *nout, struct err *e)
{
    char **arns = NULL;
    size_t n = 0;
    const char *p = list;
    *out = NULL;
    *nout = 0;
    while (*p) {
        size_t len = strcspn(p, ",");
        const char *q = p, *end = p + len;
        struct jitr_arn a;
        char one[JITR_ARN_MAX + 1];
        while (q < end && (*q == ' ' || *q == '\t')) {
            q++;
        }
        while (end > q && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }
        if (end - q > JITR_ARN_MAX) {
            jitr_destination_arns_free(arns, n);
            return err_set(e, ERRC_INVALID, "ARN '%.80s...' is longer than %d characters", q,
                           JITR_ARN_MAX);
        }
        if (end > q) {
            memcpy(one, q, (size_t)(end - q));
            one[end - q] = '\0';
            if (jitr_destination_arn_parse(one, &a, e) != 0) {
                jitr_destination_arns_free(arns, n);
                return -1;
            }
            arns = xrealloc(arns, (n + 1) * sizeof(*arns));
            arns[n++] = xstrdup(one);
        }
        p += len + (p[len] ? 1 : 0);
    }
    *out = arns;
    *nout = n;
    return 0;
}

int jitr_destination_check(const struct jitr_confirm *c, const struct jitr_dest_policy *p,
                           struct err *e)
{
    if (p->narns > 0) {
        for (size_t i = 0; i < p->narns; i++) {
            if (strcmp(c->arn, p->arns[i]) == 0) {
                return 0;
            }
        }
        return err_set(e, ERRC_DENIED, "destination %.200s is not in jitr.destination_arns",
                       c->arn);
    }
    if (p->region == NULL || strcmp(c->dest.region, p->region) != 0) {
        return err_set(e, ERRC_DENIED, "destination %.200s is not in this jitrd's region (%s)",
                       c->arn, p->region ? p->region : "none");
    }
    for (size_t i = 0; i < p->naccounts; i++) {
        if (p->accounts[i] != NULL && strcmp(c->dest.account, p->accounts[i]) == 0) {
            return 0;
        }
    }
    return err_set(e, ERRC_DENIED,
                   "destination %.200s is not in an account where our CAs are "
                   "registered",
                   c->arn);
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
        return err_set(e, ERRC_INVALID, "confirmation: '%s' must have %zu to %zu characters", name,
                       min, cap - 1);
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f) {
            return err_set(e, ERRC_INVALID, "confirmation: '%s' must be printable without spaces",
                           name);
        }
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

int jitr_confirm_parse(const uint8_t *body, size_t len, struct jitr_confirm *out, struct err *e)
{
    json_error_t je;
    json_t *root = NULL, *v;
    int rc = -1;
    memset(out, 0, sizeof(*out));
    if (len > JITR_CONFIRM_MAX) {
        return err_set(e, ERRC_TOO_LARGE, "confirmation: body of %zu bytes is larger than %d", len,
                       JITR_CONFIRM_MAX);
    }
    if (skip_ws(body, len, 0) == len) {
        return err_set(e, ERRC_INVALID, "confirmation: empty body");
    }
    root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        return not_json("confirmation", &je, e);
    }
    if (!json_is_object(root)) {
        err_set(e, ERRC_INVALID, "confirmation: must be a JSON object");
        goto out;
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
    if (jitr_destination_arn_parse(out->arn, &out->dest, e) != 0) {
        err_prefix(e, "confirmation: 'arn'");
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
