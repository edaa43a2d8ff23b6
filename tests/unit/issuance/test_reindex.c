/*
 * issuance/reindex.c against a real CA, audit log and Redis: the index rebuilt from the audit
 * log is the one the live path wrote (certificates, a renewal's links, a revocation, CRL
 * numbers), index:ready is written last, an index that is complete is left alone, and a lock
 * held by another process is respected.
 */
#include <string.h>

#include "ca/crl.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "issuance/reindex.h"
#include "issuance/revoke.h"
#include "store/store.h"
#include "tests/harness/tt.h"
#include "tests/unit/issuance/fixture.h"

static int test_rebuild(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct fixture f;
    struct issuance_ctx *ctx = NULL;
    struct issuance_worker *w = NULL;
    struct issuance_revoker *rv = NULL;
    struct issuance_item it[2];
    struct issuance_revocation r;
    struct issuance_reindex_stats st;
    struct buf csr1 = BUF_INIT, csr2 = BUF_INIT, live = BUF_INIT, rebuilt_dump = BUF_INIT,
               want = BUF_INIT;
    struct store_cert_rec rec = { 0 };
    char first[41] = "", holder[64];
    bool ready = false, rebuilt = true, taken = false;
    uint64_t removed = 0;
    memset(it, 0, sizeof(it));
    int frc = fixture_open(&f, "reindex", 14, &e);
    if (frc == TT_SKIP) {
        return TT_SKIP;
    }
    CHECK_OK(frc, &e);
    fixture_csr("dev-r1", &csr1);
    fixture_csr("dev-r2", &csr2);
    CHECK((ctx = issuance_ctx_open(f.conf, "root", NULL, &e)) != NULL);
    CHECK((w = issuance_worker_new(ctx, &e)) != NULL);
    CHECK((rv = issuance_revoker_new(f.conf, ctx->audit, NULL, &e)) != NULL);
    /* the live path: an issue, its renewal, a revocation (and its CRL) */
    it[0] = (struct issuance_item){ .csr = (const uint8_t *)csr1.data,
                                    .csr_len = csr1.len,
                                    .requester = "station:line1" };
    CHECK_OK(issuance_run(w, it, 1, &e), &e);
    CHECK(it[0].issued);
    snprintf(first, sizeof(first), "%s", it[0].cert.serial_hex);
    it[1] = (struct issuance_item){ .csr = (const uint8_t *)csr2.data,
                                    .csr_len = csr2.len,
                                    .requester = "device:x",
                                    .renews = first };
    CHECK_OK(issuance_run(w, &it[1], 1, &e), &e);
    CHECK(it[1].issued);
    r = (struct issuance_revocation){ .serial = it[1].cert.serial_hex,
                                      .reason = CA_CRL_KEY_COMPROMISE,
                                      .requester = "station:admin" };
    CHECK_OK(issuance_revoke(rv, f.store, &r, &e), &e);
    CHECK(r.crl_written);
    CHECK_OK(store_index_dump(f.store, &live, &e), &e);
    /* lost, then rebuilt from the log */
    CHECK_OK(store_index_mark_clear(f.store, &e), &e);
    CHECK_OK(store_index_clear(f.store, &removed, &e), &e);
    CHECK_OK(issuance_reindex(f.conf, f.store, NULL, NULL, &st, &e), &e);
    CHECK_INT_EQ(st.certificates, 2);
    CHECK_INT_EQ(st.revoked, 1);
    CHECK_INT_EQ(st.revoke_unknown, 0);
    CHECK(st.records >= 4); /* two issues, a revoke, a crl */
    CHECK_OK(store_index_ready(f.store, &ready, &e), &e);
    CHECK(ready);
    CHECK_OK(store_index_dump(f.store, &rebuilt_dump, &e), &e);
    /* the same, and the audit head it reached (which only a rebuild records) */
    buf_addf(&want, "hash jitrca:audit:head\nhash\t%s\nseq\t%llu\n%s", st.last_hash,
             (unsigned long long)st.last_seq, buf_cstr(&live));
    CHECK_STR_EQ(buf_cstr(&rebuilt_dump), buf_cstr(&want));
    CHECK_OK(store_cert_read(f.store, first, &rec, &e), &e);
    CHECK_STR_EQ(rec.superseded_by, it[1].cert.serial_hex);
    store_cert_rec_release(&rec);
    /* complete: ensure leaves it alone */
    CHECK_OK(issuance_index_ensure(f.conf, f.store, 0, &rebuilt, &st, &e), &e);
    CHECK(!rebuilt);
    /* another process holds the lock: no second rebuilder */
    CHECK_OK(
        store_index_lock_take(f.store, "someone-else", 5000, &taken, holder, sizeof(holder), &e),
        &e);
    CHECK(taken);
    CHECK(issuance_reindex(f.conf, f.store, NULL, NULL, &st, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_CONFLICT);
    CHECK_STR_CONTAINS(e.msg, "someone-else");
    err_clear(&e);
    CHECK_OK(store_index_lock_release(f.store, "someone-else", &e), &e);
out:
    for (size_t i = 0; i < 2; i++) {
        issuance_item_release(&it[i]);
    }
    store_cert_rec_release(&rec);
    buf_release(&csr1);
    buf_release(&csr2);
    buf_release(&live);
    buf_release(&rebuilt_dump);
    buf_release(&want);
    issuance_revoker_free(rv);
    issuance_worker_free(w);
    issuance_ctx_free(ctx);
    fixture_close(&f);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "rebuild", test_rebuild },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
