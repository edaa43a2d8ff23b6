/*
 * Fuzz target: the OCSP responder's request decoding (ca/ocsp.c) as jitrd receives it: a POST
 * body (DER) and a GET path (URL-encoded base64). Invariants checked on every input:
 *   - a refused request leaves nothing (no OCSP_REQUEST, no CertIDs) and the OpenSSL error queue
 *     empty, with ERRC_INVALID;
 *   - an accepted one has 1..CA_OCSP_MAX_IDS CertIDs, each serial "" or lowercase hex of at most
 *     40 digits, and matching them against a CA never fails differently from "no";
 *   - a GET path decodes to 1..CA_OCSP_REQUEST_MAX bytes or is refused with nothing appended.
 */
#include <openssl/err.h>
#include <string.h>

#include "ca/ocsp.h"
#include "core/buf.h"
#include "core/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_req(const uint8_t *der, size_t len)
{
    struct err e = ERR_INIT;
    struct ca_ocsp_req r;
    if (ca_ocsp_req_parse(der, len, &r, &e) != 0) {
        BUG_ON(r.req != NULL || r.n != 0 || e.code != ERRC_INVALID);
        BUG_ON(ERR_peek_error() != 0);
        return;
    }
    BUG_ON(r.n < 1 || r.n > CA_OCSP_MAX_IDS);
    for (size_t i = 0; i < r.n; i++) {
        size_t n = strlen(r.serial[i]);
        BUG_ON(n > 40);
        for (size_t k = 0; k < n; k++) {
            char c = r.serial[i][k];
            BUG_ON(!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')));
        }
        BUG_ON(ca_ocsp_id_matches(&r, i, NULL));
    }
    ca_ocsp_req_release(&r);
    ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct err e = ERR_INIT;
    struct buf path = BUF_INIT, der = BUF_INIT;
    check_req(data, size);
    /* the same bytes as a GET path (up to the first NUL) */
    buf_add(&path, data, size);
    if (ca_ocsp_get_decode(buf_cstr(&path), &der, &e) == 0) {
        BUG_ON(der.len < 1 || der.len > CA_OCSP_REQUEST_MAX);
        check_req((const uint8_t *)der.data, der.len);
    } else {
        BUG_ON(der.len != 0 || e.code != ERRC_INVALID);
    }
    buf_release(&path);
    buf_release(&der);
    return 0;
}
