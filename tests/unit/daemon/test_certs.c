/*
 * daemon/certs.c: what GET /v1/certificates/ID takes as ID (after the handler lowercased it):
 * a serial or a certificateId, nothing that could reach a Redis key unchecked.
 */
#include <string.h>

#include "core/util.h"
#include "daemon/job.h"
#include "tests/harness/tt.h"

static int test_id_ok(void)
{
    int rc = 0;
    char id[70];
    static const char *const good[] = { "0", "0a1b", "00ff", "deadbeef" };
    static const char *const bad[] = { "",  "0A1B",  "0a1g", "0a 1b", "0a:1b",
                                       "*", "0a1b*", "../x", "-1",    "0x0a" };
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        if (!certs_id_ok(good[i])) {
            TT_FAIL("'%s' refused", good[i]);
        }
    }
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        if (certs_id_ok(bad[i])) {
            TT_FAIL("'%s' accepted", bad[i]);
        }
    }
    memset(id, 'a', sizeof(id));
    id[40] = '\0';
    CHECK(certs_id_ok(id)); /* the longest serial */
    id[40] = 'a';
    id[64] = '\0';
    CHECK(certs_id_ok(id)); /* a certificateId */
    id[64] = 'a';
    id[65] = '\0';
    CHECK(!certs_id_ok(id));
out:
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "id_ok", test_id_ok },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
