/*
 * daemon/sign.c: a certificate's PEM written as a JSON string straight from its DER is what
 * quoting the PEM gives, for every length around the 48-byte lines and the base64 padding.
 */
#include <string.h>

#include "ca/issue.h"
#include "core/buf.h"
#include "core/util.h"
#include "daemon/job.h"
#include "tests/harness/tt.h"

static int test_pem_json(void)
{
    int rc = 0;
    uint8_t der[700];
    struct buf pem = BUF_INIT, want = BUF_INIT, got = BUF_INIT;
    for (size_t i = 0; i < sizeof(der); i++) {
        der[i] = (uint8_t)(i * 131 + 7);
    }
    for (size_t len = 0; len <= sizeof(der); len++) {
        buf_reset(&pem);
        buf_reset(&want);
        buf_reset(&got);
        ca_der_to_pem(&pem, der, len);
        json_quote(&want, pem.data, pem.len);
        buf_addstr(&got, "x"); /* appends to what the buffer holds */
        sign_pem_json(&got, der, len);
        if (got.len != want.len + 1 || got.data[0] != 'x' ||
            memcmp(got.data + 1, want.data, want.len) != 0 || got.data[got.len] != '\0') {
            TT_FAIL("DER of %zu bytes: %s, not %s", len, got.data, want.data);
        }
    }
out:
    buf_release(&pem);
    buf_release(&want);
    buf_release(&got);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "pem_json", test_pem_json },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
