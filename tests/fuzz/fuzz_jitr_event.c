/*
 * Fuzz target: the JITR intake's parsers (jitr/event.c) as the intakes receive their input: the
 * registered event, one object or a batch (a JSON array of up to 10, as an HTTP rule action with
 * batching enabled sends it), the same body as an SQS message (JSON or base64 of it), and the
 * destination-confirmation message with its ARN. Invariants checked on every input:
 *   - a body refused whole produces nothing (n = nvalid = 0, every slot zeroed) with a reason;
 *   - a body read has 1..10 elements (a non-batch exactly 1), nvalid counts the elements without
 *     an error, each valid one has lowercase 64-hex ids and a 12-digit account, each refused one
 *     has a reason and no event;
 *   - the single-event API agrees with the batch API on an object body;
 *   - a parsed confirmation has a token of 1..2048 printable characters and a topic rule
 *     destination ARN whose partition is its region's.
 */
#include <string.h>

#include "aws/endpoint.h"
#include "core/buf.h"
#include "jitr/jitr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool any_ca(void *arg, const char *id)
{
    (void)arg;
    return id[0] != 'f'; /* some CAs are "unknown" */
}

static void check_event(const struct jitr_event *ev)
{
    BUG_ON(strlen(ev->cert_id) != 64 || strlen(ev->ca_id) != 64 || strlen(ev->account) != 12);
    BUG_ON(ev->timestamp_ms < 0 || ev->registered_ms < 0);
    for (size_t i = 0; i < 64; i++) {
        BUG_ON(!((ev->cert_id[i] >= '0' && ev->cert_id[i] <= '9') ||
                 (ev->cert_id[i] >= 'a' && ev->cert_id[i] <= 'f')));
        BUG_ON(!((ev->ca_id[i] >= '0' && ev->ca_id[i] <= '9') ||
                 (ev->ca_id[i] >= 'a' && ev->ca_id[i] <= 'f')));
    }
    for (size_t i = 0; i < 12; i++) {
        BUG_ON(ev->account[i] < '0' || ev->account[i] > '9');
    }
}

static void check_events(const uint8_t *data, size_t size)
{
    struct jitr_events evs;
    struct err e = ERR_INIT;
    size_t valid = 0;
    if (jitr_events_parse(data, size, any_ca, NULL, &evs, &e) != 0) {
        BUG_ON(e.code == ERRC_OK || evs.n != 0 || evs.nvalid != 0);
        for (size_t i = 0; i < JITR_BATCH_MAX; i++) {
            BUG_ON(evs.ev[i].cert_id[0] != '\0' || evs.err[i].code != ERRC_OK);
        }
        return;
    }
    BUG_ON(evs.n == 0 || evs.n > JITR_BATCH_MAX || (!evs.batch && evs.n != 1));
    for (size_t i = 0; i < evs.n; i++) {
        if (evs.err[i].code == ERRC_OK) {
            check_event(&evs.ev[i]);
            valid++;
        } else {
            BUG_ON(evs.ev[i].cert_id[0] != '\0' || evs.err[i].msg[0] == '\0');
        }
    }
    BUG_ON(valid != evs.nvalid);
    if (!evs.batch) {
        struct jitr_event one;
        err_clear(&e);
        if (jitr_event_parse(data, size, any_ca, NULL, &one, &e) == 0) {
            BUG_ON(evs.nvalid != 1 || strcmp(one.cert_id, evs.ev[0].cert_id) != 0);
        } else {
            BUG_ON(evs.nvalid == 1 && size <= JITR_EVENT_MAX);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jitr_event ev;
    struct jitr_confirm c;
    struct err e = ERR_INIT;
    struct buf json = BUF_INIT;
    bool b64 = false;
    check_events(data, size);
    if (jitr_event_parse(data, size, any_ca, NULL, &ev, &e) == 0) {
        check_event(&ev);
    } else {
        BUG_ON(ev.cert_id[0] != '\0' || e.code == ERRC_OK);
    }
    /* as an SQS message body */
    err_clear(&e);
    if (jitr_sqs_body_decode((const char *)data, size, &json, &b64, &e) == 0) {
        check_events((const uint8_t *)json.data, json.len);
    } else {
        BUG_ON(json.len != 0 || e.code == ERRC_OK);
    }
    buf_release(&json);
    err_clear(&e);
    if (jitr_confirm_parse(data, size, &c, &e) == 0) {
        size_t n = strlen(c.token);
        BUG_ON(n == 0 || n > JITR_TOKEN_MAX);
        BUG_ON(strcmp(c.dest.service, "iot") != 0 || strlen(c.dest.account) != 12);
        BUG_ON(strcmp(c.dest.partition, aws_partition_of_region(c.dest.region)) != 0);
    } else {
        BUG_ON(c.token[0] != '\0' || c.arn[0] != '\0');
    }
    return 0;
}
