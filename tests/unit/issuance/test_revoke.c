/*
 * issuance/revoke.c against a real CA, audit log and Redis: a revocation by serial and by
 * certificateId (any case), the first one wins (a second keeps the recorded reason and seq),
 * what is refused and changes nothing (an unknown serial, another CA, certificateHold, no
 * requester), the CRL that lists them, and the index update of an audit revoke record; the
 * bulk revocation of a compromised CA's certificates across chunks (a hold revoked for good,
 * one revoked before left alone, an unknown serial counted, one record and one job each, one
 * CRL, nothing written by a second run) and a blocked CA that reserves no serial.
 */
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "ca/crl.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "issuance/revoke.h"
#include "store/store.h"
#include "tests/harness/tt.h"
#include "tests/unit/issuance/fixture.h"

static int issue(const struct issuance_ctx *ctx, const char *cn, struct issuance_item *it,
                 struct err *e)
{
    struct buf csr = BUF_INIT;
    fixture_csr(cn, &csr);
    int rc = issuance_sign_one(ctx, (const uint8_t *)csr.data, csr.len, NULL, "test", it, e);
    buf_release(&csr);
    return rc;
}

static int test_revoke(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct fixture f;
    struct issuance_ctx *ctx = NULL;
    struct issuance_revoker *rv = NULL;
    struct issuance_item a = { 0 }, b = { 0 };
    struct issuance_revocation r;
    struct issuance_crl crl = { 0 };
    struct store_cert_rec rec = { 0 };
    char upper[65];
    uint64_t first_seq = 0;
    size_t revokes = 0;
    X509_CRL *x = NULL;
    int frc = fixture_open(&f, "revoke", 13, &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    CHECK((ctx = issuance_ctx_open(f.conf, "root", NULL, &e)) != NULL);
    CHECK((rv = issuance_revoker_new(f.conf, ctx->audit, NULL, &e)) != NULL);
    CHECK_OK(issue(ctx, "dev-a", &a, &e), &e);
    CHECK_OK(issue(ctx, "dev-b", &b, &e), &e);
    /* by serial */
    r = (struct issuance_revocation){ .serial = a.cert.serial_hex,
                                      .reason = CA_CRL_KEY_COMPROMISE,
                                      .requester = "station:admin" };
    CHECK_OK(issuance_revoke(rv, f.store, &r, &e), &e);
    CHECK(!r.already_revoked);
    CHECK_STR_EQ(r.serial_hex, a.cert.serial_hex);
    CHECK_STR_EQ(r.ca_name, "root");
    CHECK_STR_EQ(r.fingerprint, a.cert.fingerprint);
    CHECK(r.crl_written);
    CHECK(r.seq > 0);
    first_seq = r.seq;
    CHECK_OK(store_cert_read(f.store, a.cert.serial_hex, &rec, &e), &e);
    CHECK_STR_EQ(rec.status, "revoked");
    CHECK_STR_EQ(rec.reason, "keyCompromise");
    CHECK_STR_EQ(rec.revoked_at, r.revoked_at);
    CHECK_INT_EQ(rec.revoke_seq, r.seq);
    store_cert_rec_release(&rec);
    /* again, with another reason: the first one stands, nothing written */
    revokes = fixture_audit_count(&f, "\"type\":\"revoke\"");
    r = (struct issuance_revocation){ .serial = a.cert.serial_hex,
                                      .reason = CA_CRL_SUPERSEDED,
                                      .requester = "station:admin" };
    CHECK_OK(issuance_revoke(rv, f.store, &r, &e), &e);
    CHECK(r.already_revoked);
    CHECK_INT_EQ(r.reason_recorded, CA_CRL_KEY_COMPROMISE);
    CHECK_INT_EQ(r.seq, first_seq);
    CHECK_INT_EQ(fixture_audit_count(&f, "\"type\":\"revoke\""), revokes);
    /* by certificateId, in capitals, checked against the CA that issued it */
    for (size_t i = 0; i < 65; i++) {
        char c = b.cert.fingerprint[i];
        upper[i] = (char)(c >= 'a' && c <= 'f' ? c - 'a' + 'A' : c);
    }
    r = (struct issuance_revocation){ .serial = upper,
                                      .ca = "root",
                                      .reason = CA_CRL_CESSATION_OF_OPERATION,
                                      .requester = "cli:test@host" };
    CHECK_OK(issuance_revoke(rv, f.store, &r, &e), &e);
    CHECK_STR_EQ(r.serial_hex, b.cert.serial_hex);
    /* refused, nothing changes */
    revokes = fixture_audit_count(&f, "\"type\":\"revoke\"");
    static const struct {
        const char *serial, *ca, *requester;
        enum ca_crl_reason reason;
        enum err_code code;
    } bad[] = {
        { "0badbadbad", NULL, "station:admin", CA_CRL_UNSPECIFIED, ERRC_NOT_FOUND },
        { "zz", NULL, "station:admin", CA_CRL_UNSPECIFIED, ERRC_INVALID },
        { NULL, "other", "station:admin", CA_CRL_UNSPECIFIED, ERRC_INVALID },
        { NULL, NULL, "station:admin", CA_CRL_REMOVE_FROM_CRL, ERRC_INVALID },
        { NULL, NULL, "", CA_CRL_UNSPECIFIED, ERRC_INVALID },
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err_clear(&e);
        r = (struct issuance_revocation){ .serial =
                                              bad[i].serial ? bad[i].serial : a.cert.serial_hex,
                                          .ca = bad[i].ca,
                                          .reason = bad[i].reason,
                                          .requester = bad[i].requester };
        if (issuance_revoke(rv, f.store, &r, &e) == 0) {
            TT_FAIL("case %zu accepted", i);
        }
        CHECK_INT_EQ(e.code, bad[i].code);
    }
    CHECK_INT_EQ(fixture_audit_count(&f, "\"type\":\"revoke\""), revokes);
    /* the CRL lists both */
    err_clear(&e);
    CHECK_OK(issuance_crl_get(rv, f.store, "root", "test", &crl, &e), &e);
    CHECK_INT_EQ(crl.entries, 2);
    {
        const unsigned char *p = (const unsigned char *)crl.der.data;
        CHECK((x = d2i_X509_CRL(NULL, &p, (long)crl.der.len)) != NULL);
        CHECK_INT_EQ(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(x)), 2);
    }
out:
    X509_CRL_free(x);
    issuance_crl_release(&crl);
    store_cert_rec_release(&rec);
    issuance_item_release(&a);
    issuance_item_release(&b);
    issuance_revoker_free(rv);
    issuance_ctx_free(ctx);
    fixture_close(&f);
    return rc;
}

static size_t xlen(struct store *s, const char *key)
{
    struct err e = ERR_INIT;
    char *out[1] = { NULL };
    size_t n = 0, v = 0;
    const char *keys[] = { key };
    if (store_eval(s, "return redis.call('XLEN', KEYS[1])", keys, 1, NULL, 0, out, 1, &n, &e) ==
            0 &&
        n == 1 && out[0]) {
        v = (size_t)strtoull(out[0], NULL, 10);
    }
    xfree(out[0]);
    return v;
}

#define BULK_N (ISSUANCE_BULK_CHUNK + ISSUANCE_BULK_CHUNK / 2 + 3)

static int test_bulk(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct fixture f;
    struct issuance_ctx *ctx = NULL;
    struct issuance_revoker *rv = NULL;
    struct issuance_item *items = xcalloc(BULK_N, sizeof(*items));
    const char **serials = xcalloc(BULK_N + 1, sizeof(char *));
    struct issuance_revocation r;
    struct issuance_bulk b;
    struct store_cert_rec rec = { 0 };
    struct issuance_item late = { 0 };
    size_t revokes, jobs;
    bool blocked = true;
    int frc = fixture_open(&f, "bulk", 9, &e);
    if (frc == TT_SKIP) {
        xfree(items);
        xfree(serials);
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    CHECK((ctx = issuance_ctx_open(f.conf, "root", NULL, &e)) != NULL);
    CHECK((rv = issuance_revoker_new(f.conf, ctx->audit, NULL, &e)) != NULL);
    for (size_t i = 0; i < BULK_N; i++) {
        char cn[32];
        snprintf(cn, sizeof(cn), "bulk-%zu", i);
        CHECK_OK(issue(ctx, cn, &items[i], &e), &e);
        serials[i] = items[i].cert.serial_hex;
    }
    serials[BULK_N] = "0123456789abcdef"; /* never issued */
    /* one revoked before (kept), one on hold (revoked for good by the bulk pass) */
    r = (struct issuance_revocation){ .serial = serials[7],
                                      .reason = CA_CRL_UNSPECIFIED,
                                      .requester = "test" };
    CHECK_OK(issuance_revoke(rv, f.store, &r, &e), &e);
    r = (struct issuance_revocation){ .serial = serials[BULK_N - 1],
                                      .reason = CA_CRL_CERTIFICATE_HOLD,
                                      .requester = "test" };
    CHECK_OK(issuance_revoke(rv, f.store, &r, &e), &e);
    revokes = fixture_audit_count(&f, "\"type\":\"revoke\"");
    jobs = xlen(f.store, STORE_KEY_REVOKE_JOBS);
    /* refused: a hold, no requester; nothing written */
    b = (struct issuance_bulk){ .ca = "root",
                                .serials = serials,
                                .n = BULK_N + 1,
                                .reason = CA_CRL_CERTIFICATE_HOLD,
                                .requester = "test" };
    CHECK(issuance_revoke_bulk(rv, f.store, &b, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    err_clear(&e);
    b.reason = CA_CRL_KEY_COMPROMISE;
    b.requester = "";
    CHECK(issuance_revoke_bulk(rv, f.store, &b, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    err_clear(&e);
    CHECK_INT_EQ(fixture_audit_count(&f, "\"type\":\"revoke\""), revokes);
    /* the bulk pass */
    b.requester = "cli:test";
    CHECK_OK(issuance_revoke_bulk(rv, f.store, &b, &e), &e);
    CHECK_INT_EQ(b.revoked, BULK_N - 1);
    CHECK_INT_EQ(b.already, 1);
    CHECK_INT_EQ(b.unknown, 1);
    CHECK(b.crl_written);
    CHECK_INT_EQ(fixture_audit_count(&f, "\"type\":\"revoke\""), revokes + BULK_N - 1);
    CHECK_INT_EQ(xlen(f.store, STORE_KEY_REVOKE_JOBS), jobs + BULK_N - 1);
    for (size_t i = 0; i < BULK_N; i += 97) {
        CHECK_OK(store_cert_read(f.store, serials[i], &rec, &e), &e);
        CHECK_STR_EQ(rec.status, "revoked");
        CHECK_STR_EQ(rec.reason, i == 7 ? "unspecified" : "keyCompromise");
        store_cert_rec_release(&rec);
    }
    CHECK_OK(store_cert_read(f.store, serials[BULK_N - 1], &rec, &e), &e);
    CHECK_STR_EQ(rec.reason, "keyCompromise"); /* the hold, revoked for good */
    store_cert_rec_release(&rec);
    {
        struct issuance_crl crl = { 0 };
        CHECK_OK(issuance_crl_get(rv, f.store, "root", "test", &crl, &e), &e);
        CHECK_INT_EQ(crl.entries, BULK_N);
        CHECK_INT_EQ(crl.number, b.crl_number);
        issuance_crl_release(&crl);
    }
    /* again: nothing written, nothing queued */
    CHECK_OK(issuance_revoke_bulk(rv, f.store, &b, &e), &e);
    CHECK_INT_EQ(b.revoked, 0);
    CHECK_INT_EQ(b.already, BULK_N);
    CHECK_INT_EQ(fixture_audit_count(&f, "\"type\":\"revoke\""), revokes + BULK_N - 1);
    CHECK_INT_EQ(xlen(f.store, STORE_KEY_REVOKE_JOBS), jobs + BULK_N - 1);
    /* a blocked CA reserves no serial: nothing is signed, whatever asks */
    CHECK_OK(store_ca_blocked(f.store, "root", &blocked, &e), &e);
    CHECK(!blocked);
    CHECK_OK(store_ca_block(f.store, "root", NULL, &e), &e);
    CHECK_OK(store_ca_blocked(f.store, "root", &blocked, &e), &e);
    CHECK(blocked);
    CHECK(issue(ctx, "late", &late, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    CHECK_STR_CONTAINS(e.msg, "CA 'root' is compromised");
out:
    issuance_item_release(&late);
    for (size_t i = 0; i < BULK_N; i++) {
        issuance_item_release(&items[i]);
    }
    xfree(items);
    xfree(serials);
    issuance_revoker_free(rv);
    issuance_ctx_free(ctx);
    fixture_close(&f);
    return rc;
}

static int test_from_record(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct store_revocation out;
    json_t *good =
        json_pack("{s:s,s:s,s:s,s:s,s:s}", "type", "revoke", "serial", "0a1b", "ca", "root",
                  "revoked_at", "2026-02-02T00:00:00Z", "reason", "keyCompromise");
    CHECK(good != NULL);
    CHECK_OK(issuance_revocation_from_record(good, 9, &out, &e), &e);
    CHECK_STR_EQ(out.serial, "0a1b");
    CHECK_STR_EQ(out.reason, "keyCompromise");
    CHECK_INT_EQ(out.seq, 9);
    static const char *const breaks[][2] = {
        { "serial", "0A1B" },  { "serial", "" }, { "revoked_at", "yesterday" },
        { "reason", "bored" }, { "ca", "" },
    };
    for (size_t i = 0; i < ARRAY_LEN(breaks); i++) {
        json_t *bad = json_deep_copy(good);
        json_object_set_new(bad, breaks[i][0], json_string(breaks[i][1]));
        err_clear(&e);
        int r = issuance_revocation_from_record(bad, 9, &out, &e);
        json_decref(bad);
        if (r == 0) {
            TT_FAIL("%s '%s' accepted", breaks[i][0], breaks[i][1]);
        }
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, breaks[i][0]);
    }
out:
    json_decref(good);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "revoke", test_revoke },
        { "bulk", test_bulk },
        { "from_record", test_from_record },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
