/*
 * The index rebuild (issuance/reindex.h) against the test Redis, with a log of its own (not
 * fixture.c's): the lock is renewed and progress reported while the log is replayed whatever its
 * records are. A log where revocations are
 * frequent flushes every batch of issues early, so no batch ever fills: a rebuild that renewed its
 * lock only on full batches lost it ISSUANCE_INDEX_LOCK_TTL_MS into a long replay and failed, again
 * and again (it_jitrd_soak_long found it: jitrd never healed after a Redis loss under load).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/buf.h"
#include "core/conf.h"
#include "core/err.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/reindex.h"
#include "store/store.h"
#include "tests/harness/tt.h"

#define ISSUES 2400 /* a revocation after every 4th: 600, so no batch of 1000 ever fills */
#define DENIES 1500 /* then records the rebuild skips */
#define SLOW_MS                                                                      \
    5500 /* the first progress call stalls the replay longer than a renewal's period \
          */
#define MAX_CALLS 64

struct watch {
    const char *sock;
    uint64_t at[MAX_CALLS]; /* st->records at each call */
    long long pttl[MAX_CALLS];
    size_t n;
};

/* PTTL of the lock, through redis-cli (-2 when it is gone) */
static long long lock_pttl(const char *sock)
{
    char path[512], line[64] = "";
    long long v = -100;
    snprintf(path, sizeof(path), "%s/pttl", tt_tmpdir());
    if (tt_sh("redis-cli -s '%s' PTTL " STORE_PREFIX "index:lock >'%s'", sock, path) == 0) {
        FILE *f = fopen(path, "r");
        if (f && fgets(line, sizeof(line), f)) {
            v = strtoll(line, NULL, 10);
        }
        if (f) {
            fclose(f);
        }
    }
    return v;
}

static int on_progress(void *arg, const struct issuance_reindex_stats *st)
{
    struct watch *w = arg;
    if (w->n < MAX_CALLS) {
        w->at[w->n] = st->records;
        w->pttl[w->n] = lock_pttl(w->sock);
        w->n++;
    }
    if (w->n == 1) {
        struct timespec ts = { SLOW_MS / 1000, (SLOW_MS % 1000) * 1000000L };
        nanosleep(&ts, NULL); /* a slow machine, a busy Redis */
    }
    return 0;
}

static json_t *issue_rec(unsigned i)
{
    char serial[41], fp[65];
    snprintf(serial, sizeof(serial), "7e57%08x", i);
    snprintf(fp, sizeof(fp), "%064x", i);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "type",
                     "issue", "serial", serial, "fingerprint", fp, "subject", "CN=dev", "cn", "dev",
                     "profile", "device", "ca", "devices", "requester", "station:line1",
                     "not_before", "2026-01-01T00:00:00Z", "not_after", "2036-01-01T00:00:00Z",
                     "issued_at", "2026-01-01T00:00:00Z", "der", "MAA=");
}

static json_t *revoke_rec(unsigned i)
{
    char serial[41];
    snprintf(serial, sizeof(serial), "7e57%08x", i);
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "revoke", "serial", serial, "ca",
                     "devices", "revoked_at", "2026-01-02T00:00:00Z", "reason", "keyCompromise");
}

static int test_lock_renewed_whatever_the_records(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    struct buf path = BUF_INIT, cfg = BUF_INIT;
    struct conf *c = NULL;
    struct store *s = NULL;
    struct audit_log *log = NULL;
    struct issuance_reindex_stats st;
    struct watch w = { 0 };
    char token[200];
    bool taken = false, ready = false;
    json_t **recs = NULL;
    size_t nrecs = 0;
    if (url == NULL || strncmp(url, "unix://", 7) != 0) {
        fprintf(stderr, "  needs JITRCA_TEST_REDIS_URL=unix://... (run under ctest)\n");
        return TT_SKIP;
    }
    w.sock = url + 7;
    buf_addf(&path, "%s/data/audit", tt_tmpdir());
    CHECK(tt_sh("mkdir -p '%s'", path.data) == 0);
    buf_reset(&path);
    buf_addf(&path, "%s/jitrca.json", tt_tmpdir());
    buf_addf(&cfg, "{\"data_dir\": \"%s/data\", \"redis_url\": \"%s\"}", tt_tmpdir(), url);
    CHECK_OK(file_write_atomic(path.data, cfg.data, cfg.len, 0600, false, &e), &e);
    CHECK((c = conf_load(path.data, &e)) != NULL);
    CHECK((log = audit_open(conf_audit_path(c), &e)) != NULL);
    /* the records in the log's order, appended 500 at a time (one fdatasync each) */
    nrecs = ISSUES + ISSUES / 4 + DENIES;
    recs = xcalloc(nrecs, sizeof(*recs));
    for (unsigned i = 0, k = 0; i < ISSUES; i++) {
        recs[k++] = issue_rec(i);
        if (i % 4 == 3) {
            recs[k++] = revoke_rec(i - 2);
        }
    }
    for (size_t k = ISSUES + ISSUES / 4; k < nrecs; k++) {
        recs[k] = json_pack("{s:s, s:s, s:s}", "type", "deny", "requester", "station:line1",
                            "reason", "rate limited");
    }
    for (size_t k = 0; k < nrecs; k += 500) {
        CHECK_OK(audit_append(log, recs + k, nrecs - k < 500 ? nrecs - k : 500, NULL, &e), &e);
    }

    CHECK((s = store_connect(url, &e)) != NULL);
    CHECK(tt_sh("redis-cli -s '%s' FLUSHALL >/dev/null", w.sock) == 0);
    issuance_index_token(token, sizeof(token));
    CHECK_OK(store_index_lock_take(s, token, ISSUANCE_INDEX_LOCK_TTL_MS, &taken, NULL, 0, &e), &e);
    CHECK(taken);
    CHECK_OK(issuance_reindex_locked(c, s, token, on_progress, &w, &st, &e), &e);
    CHECK_INT_EQ(st.records, ISSUES + ISSUES / 4 + DENIES);
    CHECK_INT_EQ(st.certificates, ISSUES);
    CHECK_INT_EQ(st.revoked, ISSUES / 4);
    CHECK_OK(store_index_ready(s, &ready, &e), &e);
    CHECK(ready);
    /* progress at least every ISSUANCE_REINDEX_BATCH records, through the skipped ones too */
    CHECK(w.n >= 4);
    for (size_t i = 0; i < w.n; i++) {
        uint64_t prev = i ? w.at[i - 1] : 0;
        if (w.at[i] - prev > ISSUANCE_REINDEX_BATCH) {
            TT_FAIL("progress call %zu at record %llu, the one before at %llu", i,
                    (unsigned long long)w.at[i], (unsigned long long)prev);
        }
    }
    /* the lock was renewed after the first call's stall (else it would have SLOW_MS less) */
    if (w.pttl[1] < ISSUANCE_INDEX_LOCK_TTL_MS - 3000) {
        TT_FAIL("the lock's TTL after a %d ms stall: %lld ms (not renewed)", SLOW_MS, w.pttl[1]);
    }
out:
    for (size_t k = 0; recs && k < nrecs; k++) {
        json_decref(recs[k]);
    }
    xfree(recs);
    audit_close(log);
    store_free(s);
    conf_free(c);
    buf_release(&path);
    buf_release(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "lock_renewed_whatever_the_records", test_lock_renewed_whatever_the_records },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
