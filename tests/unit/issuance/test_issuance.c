/*
 * issuance/issuance.c against a real CA, audit log and Redis: a batch with a good and a bad CSR
 * (the good one issued, reserved, audited, indexed as its record says; the bad one audited as a
 * rejection and nothing else), a renewal (renews and superseded_by), a profile that does not
 * exist, the index record rebuilt from the audit record, and a Redis failure that hands back
 * nothing.
 */
#include <openssl/x509.h>
#include <string.h>

#include "core/util.h"
#include "issuance/issuance.h"
#include "store/store.h"
#include "tests/harness/tt.h"
#include "tests/unit/issuance/fixture.h"

static int test_run(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct fixture f;
    struct issuance_ctx *ctx = NULL;
    struct issuance_worker *w = NULL;
    struct issuance_item it[3];
    struct buf good = BUF_INIT, other = BUF_INIT;
    struct store_cert_rec rec = { 0 };
    const uint8_t junk[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };
    char first[41] = "";
    memset(it, 0, sizeof(it));
    int frc = fixture_open(&f, "run", 12, &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    fixture_csr("dev-1", &good);
    fixture_csr("dev-2", &other);
    CHECK((ctx = issuance_ctx_open(f.conf, "root", NULL, &e)) != NULL);
    CHECK((w = issuance_worker_new(ctx, &e)) != NULL);
    it[0] = (struct issuance_item){ .csr = (const uint8_t *)good.data,
                                    .csr_len = good.len,
                                    .requester = "station:line1" };
    it[1] = (struct issuance_item){ .csr = junk,
                                    .csr_len = sizeof(junk),
                                    .requester = "station:line1" };
    it[2] = (struct issuance_item){ .csr = (const uint8_t *)other.data,
                                    .csr_len = other.len,
                                    .profile = "no-such-profile",
                                    .requester = "station:line1" };
    CHECK_OK(issuance_run(w, it, 3, &e), &e);
    CHECK(it[0].issued);
    CHECK(!it[1].issued);
    CHECK_INT_EQ(it[1].err.code, ERRC_INVALID);
    CHECK(!it[2].issued);
    CHECK_STR_CONTAINS(it[2].err.msg, "no-such-profile");
    CHECK_STR_EQ(it[0].cn, "dev-1");
    /* the index holds what was handed out */
    CHECK_OK(store_cert_read(f.store, it[0].cert.serial_hex, &rec, &e), &e);
    CHECK_STR_EQ(rec.fingerprint, it[0].cert.fingerprint);
    CHECK_STR_EQ(rec.requester, "station:line1");
    CHECK_STR_EQ(rec.profile, "device");
    CHECK_STR_EQ(rec.ca, "root");
    CHECK_STR_EQ(rec.cn, "dev-1");
    CHECK_STR_EQ(rec.not_after, it[0].not_after);
    CHECK(store_cert_rec_valid(&rec));
    CHECK(rec.seq > 0);
    CHECK_STR_EQ(rec.renews, "");
    store_cert_rec_release(&rec);
    /* audited: one issue, two rejections, durably before the return */
    CHECK_INT_EQ(fixture_audit_count(&f, "\"type\":\"issue\""), 1);
    CHECK_INT_EQ(fixture_audit_count(&f, "\"type\":\"reject\""), 2);
    snprintf(first, sizeof(first), "%s", it[0].cert.serial_hex);
    for (size_t i = 0; i < 3; i++) {
        issuance_item_release(&it[i]);
    }
    memset(it, 0, sizeof(it));
    /* a renewal links both records */
    it[0] = (struct issuance_item){ .csr = (const uint8_t *)other.data,
                                    .csr_len = other.len,
                                    .requester = "device:x",
                                    .renews = first };
    CHECK_OK(issuance_run(w, it, 1, &e), &e);
    CHECK(it[0].issued);
    CHECK_OK(store_cert_read(f.store, it[0].cert.serial_hex, &rec, &e), &e);
    CHECK_STR_EQ(rec.renews, first);
    store_cert_rec_release(&rec);
    CHECK_OK(store_cert_read(f.store, first, &rec, &e), &e);
    CHECK_STR_EQ(rec.superseded_by, it[0].cert.serial_hex);
    store_cert_rec_release(&rec);
    CHECK_STR_CONTAINS(it[0].subject, "dev-2");
    issuance_item_release(&it[0]);
    memset(it, 0, sizeof(it));
    /* the index is incomplete (a Redis loss): nothing is issued, nothing handed back */
    CHECK_OK(store_index_mark_clear(f.store, &e), &e);
    it[0] = (struct issuance_item){ .csr = (const uint8_t *)good.data,
                                    .csr_len = good.len,
                                    .requester = "station:line1" };
    CHECK(issuance_run(w, it, 1, &e) != 0);
    CHECK(store_err_index_incomplete(&e));
    CHECK(!it[0].issued);
    CHECK_INT_EQ(fixture_audit_count(&f, "\"type\":\"issue\""), 2);
out:
    for (size_t i = 0; i < 3; i++) {
        issuance_item_release(&it[i]);
    }
    store_cert_rec_release(&rec);
    buf_release(&good);
    buf_release(&other);
    issuance_worker_free(w);
    issuance_ctx_free(ctx);
    fixture_close(&f);
    return rc;
}

/* The index entry of an audit "issue" record: what reindex writes. */
static int test_index_from_record(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct store_cert c;
    json_t *rec =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "type", "issue",
                  "serial", "0a1b", "fingerprint", "f00d", "subject", "CN=a", "cn", "a", "profile",
                  "device", "ca", "root", "requester", "station:x", "not_before",
                  "2026-01-01T00:00:00Z", "not_after", "2027-01-01T00:00:00Z", "issued_at",
                  "2026-01-01T00:00:01Z", "der", "AA==", "renews", "0a00");
    json_t *partial = json_pack("{s:s,s:s}", "type", "issue", "serial", "0a1c");
    CHECK(rec != NULL && partial != NULL);
    CHECK_OK(issuance_index_from_record(rec, 7, &c, &e), &e);
    CHECK_STR_EQ(c.serial, "0a1b");
    CHECK_STR_EQ(c.requester, "station:x");
    CHECK_STR_EQ(c.der_b64, "AA==");
    CHECK_STR_EQ(c.renews, "0a00");
    CHECK_INT_EQ(c.seq, 7);
    CHECK_STR_EQ(c.status, "valid");
    err_clear(&e);
    CHECK(issuance_index_from_record(partial, 8, &c, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "'fingerprint'"); /* names the first field missing */
out:
    json_decref(rec);
    json_decref(partial);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "run", test_run },
        { "index_from_record", test_index_from_record },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
