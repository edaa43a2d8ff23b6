/*
 * daemon/auth.c: the status cache of a signing thread (what it remembers, for how long, and that
 * a collision is a miss, never a wrong answer) and the serial of a client certificate as the
 * index spells it (the key of its status lookup: a wrong spelling would refuse a valid station
 * or find another certificate's record).
 */
#include <openssl/bn.h>
#include <openssl/x509.h>
#include <string.h>

#include "core/util.h"
#include "daemon/job.h"
#include "tests/harness/tt.h"

static int test_status_cache(void)
{
    int rc = 0;
    static struct auth_status_cache c;
    char a[41], b[41];
    memset(&c, 0, sizeof(c));
    CHECK(!auth_status_fresh(&c, "0a1b", 1000000));
    auth_status_note(&c, "0a1b", 1000000);
    CHECK(auth_status_fresh(&c, "0a1b", 1000000));
    CHECK(auth_status_fresh(&c, "0a1b", 1000000 + AUTH_STATUS_TTL_MS - 1));
    CHECK(!auth_status_fresh(&c, "0a1b", 1000000 + AUTH_STATUS_TTL_MS));
    CHECK(!auth_status_fresh(&c, "0a1c", 1000000));
    CHECK(!auth_status_fresh(&c, "0a1", 1000000));
    CHECK(!auth_status_fresh(&c, "", 1000000)); /* no serial is never valid */
    /* a fresh cache (the thread's, zeroed) knows nothing even at time 0 */
    memset(&c, 0, sizeof(c));
    CHECK(!auth_status_fresh(&c, "", 0));
    /* two serials in one slot: the later replaces the earlier, which is then a miss */
    snprintf(a, sizeof(a), "01");
    for (unsigned i = 2; i < 100000; i++) {
        snprintf(b, sizeof(b), "%x", i);
        auth_status_note(&c, a, 5000);
        auth_status_note(&c, b, 5000);
        if (!auth_status_fresh(&c, a, 5000)) {
            break; /* found a serial that shares a's slot */
        }
        memset(&c, 0, sizeof(c));
    }
    CHECK(auth_status_fresh(&c, b, 5000));
    CHECK(!auth_status_fresh(&c, a, 5000));
    /* the longest serial the index holds fits */
    memset(a, 'f', 40);
    a[40] = '\0';
    auth_status_note(&c, a, 7000);
    CHECK(auth_status_fresh(&c, a, 7000));
out:
    return rc;
}

/* A certificate (unsigned: only its serial matters here) with serial bytes v[0..n). */
static X509 *cert_with_serial(const unsigned char *v, size_t n, bool negative)
{
    X509 *x = X509_new();
    BIGNUM *bn = BN_bin2bn(v, (int)n, NULL);
    ASN1_INTEGER *ai = NULL;
    if (bn != NULL) {
        BN_set_negative(bn, negative ? 1 : 0);
        ai = BN_to_ASN1_INTEGER(bn, NULL);
    }
    if (x == NULL || ai == NULL || X509_set_serialNumber(x, ai) != 1) {
        X509_free(x);
        x = NULL;
    }
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    return x;
}

static int test_serial_hex(void)
{
    int rc = 0;
    unsigned char v[21];
    char out[41], want[43];
    X509 *x = NULL;
    static const struct {
        size_t n;
        unsigned char first;
        bool negative;
        bool fits;
    } cases[] = {
        { 2, 0x0a, false, true },   /* a short serial */
        { 2, 0x80, false, true },   /* high bit: the DER content has a 00 in front */
        { 20, 0x7f, false, true },  /* 20 content octets: the most RFC 5280 allows */
        { 19, 0xff, false, true },  /* 19 magnitude octets + 00 = 20 */
        { 20, 0x80, false, false }, /* 21 content octets: longer than the index's serials */
        { 21, 0x01, false, false }, { 2, 0x0a, true, false }, /* negative: not a serial we issue */
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        memset(v, 0x5c, sizeof(v));
        v[0] = cases[i].first;
        x = cert_with_serial(v, cases[i].n, cases[i].negative);
        CHECK(x != NULL);
        memset(out, 'x', sizeof(out));
        auth_serial_hex(x, out);
        if (!cases[i].fits) {
            if (out[0] != '\0') {
                TT_FAIL("case %zu: '%s' for a serial the index cannot hold", i, out);
            }
        } else {
            bool pad = (cases[i].first & 0x80) != 0;
            want[0] = '\0';
            if (pad) {
                snprintf(want, sizeof(want), "00");
            }
            hex_encode(v, cases[i].n, want + strlen(want));
            CHECK_STR_EQ(out, want);
        }
        X509_free(x);
        x = NULL;
    }
out:
    X509_free(x);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "status_cache", test_status_cache },
        { "serial_hex", test_serial_hex },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
