#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mem.h"
#include "core/util.h"
#include "store/store.h"
#include "tests/harness/tt.h"

static int test_url_parse(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct store_url u;
    char d[300];
    const char *bad[] = { "http://x",    "redis://",   "redis://h:0",     "redis://h:99999",
                          "redis://h/x", "unix://rel", "unix:///s?foo=1", "redis://[::1" };
    CHECK_OK(store_url_parse("redis://127.0.0.1:6380/3", &u, &e), &e);
    CHECK_STR_EQ(u.host, "127.0.0.1");
    CHECK_INT_EQ(u.port, 6380);
    CHECK_INT_EQ(u.db, 3);
    CHECK_OK(store_url_parse("redis://:s3cret@localhost", &u, &e), &e);
    CHECK_STR_EQ(u.password, "s3cret");
    CHECK_INT_EQ(u.port, 6379);
    store_url_display(&u, d, sizeof(d));
    CHECK_STR_EQ(d, "redis://localhost:6379/0");
    CHECK_OK(store_url_parse("redis://[::1]:7000/1", &u, &e), &e);
    CHECK_STR_EQ(u.host, "::1");
    store_url_display(&u, d, sizeof(d));
    CHECK_STR_EQ(d, "redis://[::1]:7000/1");
    CHECK_OK(store_url_parse("unix:///run/redis.sock?db=2", &u, &e), &e);
    CHECK_STR_EQ(u.path, "/run/redis.sock");
    CHECK_INT_EQ(u.db, 2);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err_clear(&e);
        if (store_url_parse(bad[i], &u, &e) == 0) {
            TT_FAIL("accepted '%s'", bad[i]);
        }
        CHECK_INT_EQ(e.code, ERRC_INVALID);
    }
    /* a message about a bad URL does not show its password */
    static const char *const secret[] = { "redis://:hunter2@h:0", "redis://u:hunter2@h/x",
                                          "redis://hunter2@", "redis://:hunter2@[::1" };
    for (size_t i = 0; i < ARRAY_LEN(secret); i++) {
        err_clear(&e);
        CHECK(store_url_parse(secret[i], &u, &e) != 0);
        CHECK_STR_CONTAINS(e.msg, "<redacted>");
        if (strstr(e.msg, "hunter2") != NULL) {
            TT_FAIL("the message shows the password: %s", e.msg);
        }
    }
out:
    return rc;
}

static int test_unreachable(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct store *s = store_connect("redis://127.0.0.1:1/0", &e);
    CHECK(s == NULL);
    CHECK_INT_EQ(e.code, ERRC_UNAVAILABLE);
    CHECK_STR_CONTAINS(e.msg, "redis at redis://127.0.0.1:1/0 is unreachable");
out:
    store_free(s);
    return rc;
}

/* The index marked complete, as a finished rebuild leaves it (store.h). */
static int mark_ready(struct store *s, struct err *e)
{
    bool taken = false;
    struct store_index_mark m = { "test", 0, "", 0, "test" };
    if (store_index_lock_take(s, "test-marker", 10000, &taken, NULL, 0, e) != 0) {
        return -1;
    }
    if (!taken) {
        return err_set(e, ERRC_CONFLICT, "index lock held");
    }
    return store_index_mark_ready(s, "test-marker", &m, e);
}

static int test_reserve_and_index(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    struct store *s = NULL;
    struct buf f = BUF_INIT, dump = BUF_INIT, dump2 = BUF_INIT;
    uint64_t removed = 0;
    char u9[512];
    const char *serials[] = { "0aff01", "0aff02", "0aff01" };
    bool taken[3];
    struct store_cert c = { .serial = "0aff01",
                            .fingerprint = "ab",
                            .subject = "CN=d1",
                            .cn = "d1",
                            .profile = "device",
                            .ca = "ca1",
                            .requester = "t",
                            .not_before = "2026-01-01T00:00:00Z",
                            .not_after = "2027-01-01T00:00:00Z",
                            .issued_at = "2026-01-01T00:00:00Z",
                            .status = "valid",
                            .der_b64 = "AA==",
                            .seq = 7 };
    if (url == NULL) {
        return TT_SKIP;
    }
    snprintf(u9, sizeof(u9), "%s?db=9", url);
    s = store_connect(u9, &e);
    CHECK(s != NULL);
    CHECK_OK(mark_ready(s, &e), &e);
    CHECK_OK(store_ping(s, &e), &e);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
    CHECK_OK(store_serials_reserve(s, "ca1", serials, 2, taken, &e), &e);
    /* a serial reserved once can never be reserved again */
    CHECK_OK(store_serials_reserve(s, "ca1", serials + 2, 1, taken + 2, &e), &e);
    CHECK(taken[2]);
    CHECK_OK(store_certs_index(s, &c, 1, &e), &e);
    CHECK_OK(store_cert_get(s, "0aff01", &f, &e), &e);
    CHECK_STR_CONTAINS(f.data, "cn\td1\n");
    CHECK_STR_CONTAINS(f.data, "seq\t7\n");
    buf_reset(&f);
    CHECK_OK(store_serial_by_fingerprint(s, "ab", &f, &e), &e);
    CHECK_STR_EQ(f.data, "0aff01");
    CHECK(store_cert_get(s, "0aff02", &f, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    err_clear(&e);
    CHECK_OK(store_audit_head_set(s, 7, "cafe", &e), &e);
    CHECK_OK(store_index_dump(s, &dump, &e), &e);
    CHECK_STR_CONTAINS(dump.data, "set jitrca:cn:d1\n\t0aff01\n");
    CHECK_STR_CONTAINS(dump.data, "zset jitrca:ca:ca1:expiry\n\t0aff01 1798761600\n");
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
    CHECK_INT_EQ(removed, 6);
    CHECK_OK(store_index_dump(s, &dump2, &e), &e);
    CHECK_INT_EQ(dump2.len, 0);
    /* reservations survive an index clear */
    CHECK_OK(store_serials_reserve(s, "ca1", serials, 1, taken, &e), &e);
    CHECK(taken[0]);
out:
    buf_release(&f);
    buf_release(&dump);
    buf_release(&dump2);
    store_free(s);
    return rc;
}

static int test_bucket(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    struct store *s = NULL;
    struct buf lua = BUF_INIT, path = BUF_INIT, want = BUF_INIT;
    bool allowed = false;
    int64_t wait = 0;
    char u9[512], name[64];
    if (url == NULL) {
        return TT_SKIP;
    }
    /* the embedded script is store/bucket.lua without its comment lines */
    buf_addf(&path, "%s/store/bucket.lua", getenv("JITRCA_SOURCE_DIR"));
    CHECK_OK(file_read_all(path.data, 65536, &lua, &e), &e);
    for (char *l = lua.data; l && *l;) {
        char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) + 1 : strlen(l);
        if (strncmp(l, "--", 2) != 0) {
            buf_add(&want, l, len);
        }
        l += len;
    }
    CHECK_STR_EQ(store_bucket_lua, want.data);
    snprintf(u9, sizeof(u9), "%s?db=9", url);
    s = store_connect(u9, &e);
    CHECK(s != NULL);
    CHECK_OK(mark_ready(s, &e), &e);
    snprintf(name, sizeof(name), "test-%ld", (long)time_now_ms());
    for (int i = 0; i < 5; i++) {
        CHECK_OK(store_bucket_take(s, name, 1.0, 5.0, 1.0, &allowed, &wait, &e), &e);
        CHECK(allowed);
    }
    CHECK_OK(store_bucket_take(s, name, 1.0, 5.0, 1.0, &allowed, &wait, &e), &e);
    CHECK(!allowed);
    CHECK(wait > 500 && wait <= 1000);
    CHECK(store_bucket_take(s, name, 0.0, 5.0, 1.0, &allowed, &wait, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    {
        /* a batch in one round trip, in order: the same bucket drained within the batch, another
         * bucket untouched by it */
        char other[80];
        snprintf(other, sizeof(other), "%s-b", name);
        struct store_bucket_req v[] = {
            { .name = other, .rate = 1.0, .burst = 3.0, .cost = 2.0 },
            { .name = other, .rate = 1.0, .burst = 3.0, .cost = 2.0 },
            { .name = name, .rate = 1.0, .burst = 5.0, .cost = 1.0 },
            { .name = other, .rate = 1.0, .burst = 3.0, .cost = 1.0 },
        };
        CHECK_OK(store_buckets_take(s, v, ARRAY_LEN(v), &e), &e);
        CHECK(v[0].allowed);
        CHECK(!v[1].allowed);
        CHECK(v[1].wait_ms > 500 && v[1].wait_ms <= 1000);
        CHECK(!v[2].allowed); /* drained above */
        CHECK(v[3].allowed);  /* 3 - 2 = 1 token left for it */
        v[0].cost = 4.0;      /* above the burst: refused before anything is sent */
        CHECK(store_buckets_take(s, v, ARRAY_LEN(v), &e) != 0);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, "burst at least the cost");
    }
out:
    buf_release(&lua);
    buf_release(&path);
    buf_release(&want);
    store_free(s);
    return rc;
}

/* A raw hiredis connection to the test server's database 9, to plant what the store API cannot
 * (a key of the wrong type). */
static redisContext *raw_connect(const char *url)
{
    struct store_url u;
    struct err e = ERR_INIT;
    redisContext *c = NULL;
    redisReply *r = NULL;
    if (store_url_parse(url, &u, &e) != 0 || u.path[0] == '\0') {
        return NULL;
    }
    c = redisConnectUnix(u.path);
    if (c == NULL || c->err) {
        if (c) {
            redisFree(c);
        }
        return NULL;
    }
    r = redisCommand(c, "SELECT 9");
    if (r == NULL) {
        redisFree(c);
        return NULL;
    }
    freeReplyObject(r);
    return c;
}

static int raw_ok(redisContext *c, const char *cmd, const char *key)
{
    redisReply *r = redisCommand(c, cmd, key);
    int ok = r != NULL && r->type != REDIS_REPLY_ERROR;
    if (r) {
        freeReplyObject(r);
    }
    return ok;
}

/* Every field goes out and comes back byte for byte, whatever it holds (spaces, CR LF,
 * UTF-8, a long DER, the extreme seq values), and the index keys are exactly the ones the
 * record calls for (no cn: key for a certificate without a CN). */
static int test_index_fields(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    struct store *s = NULL;
    struct buf der = BUF_INIT, f = BUF_INIT, want = BUF_INIT, dump = BUF_INIT;
    uint64_t removed = 0;
    char u9[512];
    struct store_cert c[2];
    if (url == NULL) {
        return TT_SKIP;
    }
    for (int i = 0; i < 5000; i++) {
        buf_addch(&der, (char)('a' + i % 26));
    }
    c[0] = (struct store_cert){ .serial = "0c0001",
                                .fingerprint = "f00d",
                                .subject = "CN=a b\r\nO=x\xc3\xa9",
                                .cn = "a b",
                                .profile = "device",
                                .ca = "ca-rt",
                                .requester = "r e",
                                .not_before = "2026-01-01T00:00:00Z",
                                .not_after = "2027-01-01T00:00:00Z",
                                .issued_at = "2026-01-02T00:00:00Z",
                                .status = "valid",
                                .der_b64 = der.data,
                                .seq = UINT64_MAX };
    c[1] = c[0];
    c[1].serial = "0c0002";
    c[1].fingerprint = "f00e";
    c[1].cn = "";
    c[1].der_b64 = "";
    c[1].seq = 0;
    snprintf(u9, sizeof(u9), "%s?db=9", url);
    s = store_connect(u9, &e);
    CHECK(s != NULL);
    CHECK_OK(mark_ready(s, &e), &e);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
    CHECK_OK(store_certs_index(s, c, 2, &e), &e);
    CHECK_OK(store_cert_get(s, "0c0001", &f, &e), &e);
    buf_addf(&want,
             "ca\tca-rt\ncn\ta b\nder\t%s\nfingerprint\tf00d\nissued_at\t2026-01-02T00:00:00Z\n"
             "not_after\t2027-01-01T00:00:00Z\nnot_before\t2026-01-01T00:00:00Z\n"
             "profile\tdevice\nrequester\tr e\nseq\t18446744073709551615\nserial\t0c0001\n"
             "status\tvalid\nsubject\tCN=a b\r\nO=x\xc3\xa9\n",
             der.data);
    CHECK_STR_EQ(f.data, want.data);
    buf_reset(&f);
    CHECK_OK(store_cert_get(s, "0c0002", &f, &e), &e);
    CHECK_STR_CONTAINS(f.data, "der\t\n");
    CHECK_STR_CONTAINS(f.data, "seq\t0\n");
    CHECK_STR_CONTAINS(f.data, "cn\t\n");
    CHECK_OK(store_index_dump(s, &dump, &e), &e);
    CHECK_STR_CONTAINS(dump.data, "set jitrca:ca:ca-rt:serials\n\t0c0001\n\t0c0002\n");
    CHECK_STR_CONTAINS(dump.data, "set jitrca:cn:a b\n\t0c0001\nstring");
    CHECK_STR_CONTAINS(dump.data, "string jitrca:fp:f00e\n\t0c0002\n");
    CHECK(strstr(dump.data, "jitrca:cn:\n") == NULL);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
    CHECK_INT_EQ(removed, 7); /* 2 cert:, 2 fp:, 1 cn:, ca:*:serials, ca:*:expiry */
out:
    buf_release(&der);
    buf_release(&f);
    buf_release(&want);
    buf_release(&dump);
    store_free(s);
    return rc;
}

/* An EST re-enrollment's records: the new one says what it renews, the old one is marked
 * superseded_by it (once: the first renewal wins), a renewal of a record not indexed creates
 * nothing. */
static int test_supersede(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    struct store *s = NULL;
    struct buf f = BUF_INIT;
    uint64_t removed = 0;
    char u9[512];
    struct store_cert c[4];
    struct store_cert_rec rec = { 0 };
    struct store_expiring *exp = NULL;
    size_t nexp = 0;
    if (url == NULL) {
        return TT_SKIP;
    }
    c[0] = (struct store_cert){ .serial = "0d0001",
                                .fingerprint = "d1",
                                .subject = "CN=dev",
                                .cn = "dev",
                                .profile = "device",
                                .ca = "ca-rt",
                                .requester = "station:line1",
                                .not_before = "2026-01-01T00:00:00Z",
                                .not_after = "2027-01-01T00:00:00Z",
                                .issued_at = "2026-01-02T00:00:00Z",
                                .status = "valid",
                                .der_b64 = "AA==",
                                .seq = 1 };
    c[1] = c[0];
    c[1].serial = "0d0002";
    c[1].fingerprint = "d2";
    c[1].requester = "device:0d0001";
    c[1].renews = "0d0001";
    c[2] = c[1];
    c[2].serial = "0d0003";
    c[2].fingerprint = "d3";
    c[3] = c[1];
    c[3].serial = "0d0004";
    c[3].fingerprint = "d4";
    c[3].renews = "0dffff";
    snprintf(u9, sizeof(u9), "%s?db=9", url);
    s = store_connect(u9, &e);
    CHECK(s != NULL);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
    CHECK_OK(mark_ready(s, &e), &e);
    /* the old one and its renewal in one pipeline: in order */
    CHECK_OK(store_certs_index(s, c, 2, &e), &e);
    CHECK_OK(store_cert_get(s, "0d0001", &f, &e), &e);
    CHECK_STR_CONTAINS(f.data, "superseded_by\t0d0002\n");
    CHECK(strstr(f.data, "renews") == NULL);
    buf_reset(&f);
    CHECK_OK(store_cert_get(s, "0d0002", &f, &e), &e);
    CHECK_STR_CONTAINS(f.data, "renews\t0d0001\n");
    CHECK(strstr(f.data, "superseded_by") == NULL);
    /* a superseded certificate is no longer expiring: only its renewal is */
    CHECK_OK(store_expiry_range(s, "ca-rt", 0, INT64_MAX, &exp, &nexp, &e), &e);
    CHECK_INT_EQ(nexp, 1);
    CHECK_STR_EQ(exp[0].serial, "0d0002");
    CHECK_INT_EQ(exp[0].not_after, 1798761600);
    store_expiring_free(exp, nexp);
    exp = NULL;
    /* the typed read says the same */
    CHECK_OK(store_cert_read(s, "0d0001", &rec, &e), &e);
    CHECK_STR_EQ(rec.superseded_by, "0d0002");
    CHECK_STR_EQ(rec.renews, "");
    CHECK_STR_EQ(rec.requester, "station:line1");
    CHECK_STR_EQ(rec.subject, "CN=dev");
    CHECK_INT_EQ(rec.seq, 1);
    CHECK(store_cert_rec_valid(&rec));
    store_cert_rec_release(&rec);
    CHECK_OK(store_cert_read(s, "0d0002", &rec, &e), &e);
    CHECK_STR_EQ(rec.renews, "0d0001");
    CHECK_STR_EQ(rec.superseded_by, "");
    CHECK(store_cert_rec_field(&rec, "superseded_by") == NULL);
    store_cert_rec_release(&rec);
    CHECK(store_cert_read(s, "0dffff", &rec, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    err_clear(&e);
    /* a second renewal of the same certificate does not move the link */
    CHECK_OK(store_certs_index(s, &c[2], 2, &e), &e);
    buf_reset(&f);
    CHECK_OK(store_cert_get(s, "0d0001", &f, &e), &e);
    CHECK_STR_CONTAINS(f.data, "superseded_by\t0d0002\n");
    buf_reset(&f);
    CHECK(store_cert_get(s, "0dffff", &f, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    err_clear(&e);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
out:
    store_cert_rec_release(&rec);
    buf_release(&f);
    store_free(s);
    return rc;
}

/* The re-enrollment limit of a lineage and the claim of a certificate. */
static int test_reenroll(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    struct store *s = NULL;
    char u9[512];
    enum store_reenroll_result res = STORE_REENROLL_OK;
    int64_t retry = -1;
    if (url == NULL) {
        return TT_SKIP;
    }
    snprintf(u9, sizeof(u9), "%s?db=9", url);
    s = store_connect(u9, &e);
    CHECK(s != NULL);
    CHECK_OK(store_reenroll_end(s, "0e01", "lin", "a1", true, &e), &e);
    CHECK_OK(store_reenroll_end(s, "0e01", "lin", "a2", true, &e), &e);
    CHECK_OK(store_reenroll_end(s, "0e02", "lin", "a3", true, &e), &e);
    CHECK_OK(store_reenroll_begin(s, "0e01", "lin", "a1", 2, 60000, 5000, &res, &retry, &e), &e);
    CHECK_INT_EQ(res, STORE_REENROLL_OK);
    /* the same certificate again while the first is in progress */
    CHECK_OK(store_reenroll_begin(s, "0e01", "lin", "a2", 2, 60000, 5000, &res, &retry, &e), &e);
    CHECK_INT_EQ(res, STORE_REENROLL_BUSY);
    CHECK(retry > 0 && retry <= 5000);
    /* a failure on our side gives the attempt back */
    CHECK_OK(store_reenroll_end(s, "0e01", "lin", "a1", true, &e), &e);
    CHECK_OK(store_reenroll_begin(s, "0e01", "lin", "a1", 2, 60000, 5000, &res, &retry, &e), &e);
    CHECK_INT_EQ(res, STORE_REENROLL_OK);
    CHECK_OK(store_reenroll_end(s, "0e01", "lin", "a1", false, &e), &e);
    /* the claim is gone; the lineage's second attempt (its next certificate) */
    CHECK_OK(store_reenroll_begin(s, "0e02", "lin", "a2", 2, 60000, 5000, &res, &retry, &e), &e);
    CHECK_INT_EQ(res, STORE_REENROLL_OK);
    CHECK_OK(store_reenroll_end(s, "0e02", "lin", "a2", false, &e), &e);
    /* the third in the window is refused until the first leaves it */
    CHECK_OK(store_reenroll_begin(s, "0e03", "lin", "a3", 2, 60000, 5000, &res, &retry, &e), &e);
    CHECK_INT_EQ(res, STORE_REENROLL_LIMIT);
    CHECK(retry > 50000 && retry <= 60000);
    /* another lineage is not affected */
    CHECK_OK(store_reenroll_begin(s, "0e09", "other", "b1", 2, 60000, 5000, &res, &retry, &e), &e);
    CHECK_INT_EQ(res, STORE_REENROLL_OK);
    CHECK_OK(store_reenroll_end(s, "0e09", "other", "b1", true, &e), &e);
    CHECK(store_reenroll_begin(s, "0e09", "other", "b1", 0, 60000, 5000, &res, &retry, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
out:
    store_free(s);
    return rc;
}

/* Revocations in one pipeline (the second of the same serial in a batch finds it revoked), the
 * revoked list, and the CRL number scripts. */
/* A valid certificate of ca, issued at seq 1, for the revocation tests. */
static struct store_cert revocable_cert(const char *serial, const char *fingerprint, const char *ca)
{
    return (struct store_cert){ .serial = serial,
                                .fingerprint = fingerprint,
                                .subject = "CN=r",
                                .cn = "r",
                                .profile = "device",
                                .ca = ca,
                                .requester = "t",
                                .not_before = "2026-01-01T00:00:00Z",
                                .not_after = "2027-01-01T00:00:00Z",
                                .issued_at = "2026-01-01T00:00:00Z",
                                .status = "valid",
                                .der_b64 = "AA==",
                                .seq = 1 };
}

static int test_revoke_and_crl_number(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    struct store *s = NULL;
    struct buf f = BUF_INIT;
    struct store_revoked *list = NULL;
    size_t nlist = 0;
    uint64_t removed = 0, num = 0;
    char u9[512], ca[64];
    enum store_revoke_result res[3];
    struct store_cert_rec rec = { 0 };
    if (url == NULL) {
        return TT_SKIP;
    }
    snprintf(ca, sizeof(ca), "ca-rv-%ld", (long)time_now_ms());
    struct store_cert c = revocable_cert("0d0001", "fd01", ca);
    struct store_revocation rv[3] = {
        { .serial = "0d0001",
          .ca = ca,
          .revoked_at = "2026-02-02T00:00:00Z",
          .reason = "keyCompromise",
          .seq = 42 },
        { .serial = "0d0001",
          .ca = ca,
          .revoked_at = "2026-03-03T00:00:00Z",
          .reason = "superseded",
          .seq = 43 },
        { .serial = "0dffff",
          .ca = ca,
          .revoked_at = "2026-02-02T00:00:00Z",
          .reason = "keyCompromise",
          .seq = 44 },
    };
    snprintf(u9, sizeof(u9), "%s?db=9", url);
    s = store_connect(u9, &e);
    CHECK(s != NULL);
    CHECK_OK(mark_ready(s, &e), &e);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
    CHECK_OK(store_certs_index(s, &c, 1, &e), &e);
    CHECK_OK(store_certs_revoke(s, rv, 3, res, &e), &e);
    CHECK_INT_EQ(res[0], STORE_REVOKE_DONE);
    CHECK_INT_EQ(res[1], STORE_REVOKE_ALREADY);
    CHECK_INT_EQ(res[2], STORE_REVOKE_UNKNOWN);
    CHECK_OK(store_cert_get(s, "0d0001", &f, &e), &e);
    CHECK_STR_CONTAINS(f.data, "status\trevoked\n");
    CHECK_STR_CONTAINS(f.data, "revoke_seq\t42\n");
    CHECK_STR_CONTAINS(f.data, "reason\tkeyCompromise\n");
    CHECK_OK(store_cert_read(s, "0d0001", &rec, &e), &e);
    CHECK(!store_cert_rec_valid(&rec));
    CHECK_STR_EQ(rec.status, "revoked");
    CHECK_STR_EQ(rec.revoked_at, "2026-02-02T00:00:00Z");
    CHECK_STR_EQ(rec.reason, "keyCompromise");
    CHECK_INT_EQ(rec.revoke_seq, 42);
    CHECK_STR_EQ(rec.ca, ca);
    CHECK_STR_EQ(rec.fingerprint, "fd01");
    CHECK_OK(store_revoked_list(s, ca, &list, &nlist, &e), &e);
    CHECK_INT_EQ(nlist, 1);
    CHECK_STR_EQ(list[0].serial, "0d0001");
    CHECK_STR_EQ(list[0].revoked_at, "2026-02-02T00:00:00Z");
    CHECK_STR_EQ(list[0].reason, "keyCompromise");
    CHECK_OK(store_crl_number_next(s, ca, 0, &num, &e), &e);
    CHECK_INT_EQ(num, 1);
    CHECK_OK(store_crl_number_next(s, ca, 0, &num, &e), &e);
    CHECK_INT_EQ(num, 2);
    CHECK_OK(store_crl_number_raise(s, ca, 10, &e), &e);
    CHECK_OK(store_crl_number_next(s, ca, 0, &num, &e), &e);
    CHECK_INT_EQ(num, 11);
    CHECK_OK(store_crl_number_raise(s, ca, 5, &e), &e); /* never lowers it */
    CHECK_OK(store_crl_number_next(s, ca, 100, &num, &e), &e);
    CHECK_INT_EQ(num, 100);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
out:
    store_cert_rec_release(&rec);
    store_revoked_free(list, nlist);
    buf_release(&f);
    store_free(s);
    return rc;
}

/* One hold (reason certificateHold), permanent revocation (another reason) or release (reason
 * NULL) of serial by node at seq and ms, no job; its result, or -1 on an error. */
static int change(struct store *s, const char *ca, const char *serial, const char *reason,
                  const char *node, uint64_t seq, int64_t ms)
{
    struct err e = ERR_INIT;
    enum store_revoke_result res = STORE_REVOKE_UNKNOWN;
    struct store_revocation rv = { .serial = serial,
                                   .ca = ca,
                                   .revoked_at = "2026-02-02T00:00:00Z",
                                   .reason = reason,
                                   .seq = seq,
                                   .node = node,
                                   .ms = ms,
                                   .no_job = true };
    int rc =
        reason ? store_certs_revoke(s, &rv, 1, &res, &e) : store_certs_release(s, &rv, 1, &res, &e);
    if (rc != 0) {
        fprintf(stderr, "    %s\n", e.msg);
        return -1;
    }
    return (int)res;
}

/* Whether serial's index entry has field with value ("field\tvalue\n"), or lacks field (value
 * NULL). */
static bool has_field(struct store *s, const char *serial, const char *field, const char *value)
{
    struct err e = ERR_INIT;
    struct buf f = BUF_INIT, want = BUF_INIT;
    bool ok = false;
    buf_addf(&f, "\n");
    if (store_cert_get(s, serial, &f, &e) == 0) {
        buf_addf(&want, "\n%s\t%s", field, value ? value : "");
        buf_addf(&want, value ? "\n" : "");
        ok = (strstr(buf_cstr(&f), buf_cstr(&want)) != NULL) == (value != NULL);
        if (!ok) {
            fprintf(stderr, "    %s: %s %s in:%s\n", serial, field, value ? value : "(none)",
                    buf_cstr(&f));
        }
    }
    buf_release(&f);
    buf_release(&want);
    return ok;
}

/* The latest decision wins between a hold and a release (revoke_lua, release_lua): by seq in
 * one node's log, by time between nodes. A hold not after the last release is not applied, a
 * release not after the hold the index shows does not lift it; a release met by a valid
 * certificate is kept when it is the latest (so an older hold that replays after it stays off);
 * a permanent revocation is applied whatever its age and no release undoes it; entries without
 * the new fields (an older index) behave as before. */
static int test_hold_release_order(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    const char *H = "certificateHold", *K = "keyCompromise";
    struct store *s = NULL;
    redisContext *raw = NULL;
    uint64_t removed = 0;
    char u9[512], ca[64];
    struct store_cert c[4];
    static const char *const serials[4] = { "0d0101", "0d0102", "0d0103", "0d0104" };
    if (url == NULL) {
        return TT_SKIP;
    }
    snprintf(ca, sizeof(ca), "ca-hr-%ld", (long)time_now_ms());
    for (size_t i = 0; i < 4; i++) {
        c[i] = revocable_cert(serials[i], "fd02", ca);
    }
    snprintf(u9, sizeof(u9), "%s?db=9", url);
    s = store_connect(u9, &e);
    CHECK(s != NULL);
    CHECK((raw = raw_connect(u9)) != NULL);
    CHECK_OK(mark_ready(s, &e), &e);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
    CHECK_OK(store_certs_index(s, c, 4, &e), &e);

    /* an older entry: a release without its node and time does not stop a hold */
    CHECK(raw_ok(raw, "HSET %s release_seq 5", "jitrca:cert:0d0101"));
    CHECK_INT_EQ(change(s, ca, "0d0101", H, "a", 3, 100), STORE_REVOKE_DONE);
    CHECK(has_field(s, "0d0101", "revoke_node", "a") && has_field(s, "0d0101", "revoke_ms", "100"));
    CHECK_INT_EQ(change(s, ca, "0d0101", NULL, "a", 6, 200), STORE_REVOKE_DONE);
    CHECK(has_field(s, "0d0101", "status", "valid") && has_field(s, "0d0101", "revoke_ms", NULL));
    CHECK(has_field(s, "0d0101", "release_seq", "6") &&
          has_field(s, "0d0101", "release_node", "a") &&
          has_field(s, "0d0101", "release_ms", "200"));
    /* a hold before that release: same node by seq (its time does not count), another by time */
    CHECK_INT_EQ(change(s, ca, "0d0101", H, "a", 4, 900), STORE_REVOKE_ALREADY);
    CHECK_INT_EQ(change(s, ca, "0d0101", H, "b", 90, 150), STORE_REVOKE_ALREADY);
    CHECK(has_field(s, "0d0101", "status", "valid") && has_field(s, "0d0101", "reason", NULL));
    /* a hold after it: held; a release before that hold (another node, earlier) leaves it */
    CHECK_INT_EQ(change(s, ca, "0d0101", H, "b", 1, 300), STORE_REVOKE_DONE);
    CHECK_INT_EQ(change(s, ca, "0d0101", NULL, "a", 7, 250), STORE_REVOKE_ALREADY);
    CHECK(has_field(s, "0d0101", "reason", H) && has_field(s, "0d0101", "release_seq", "6"));
    CHECK_INT_EQ(change(s, ca, "0d0101", NULL, "a", 8, 400), STORE_REVOKE_DONE);
    CHECK(has_field(s, "0d0101", "status", "valid"));
    /* a permanent revocation older than the release: applied (final), and no release lifts it */
    CHECK_INT_EQ(change(s, ca, "0d0101", K, "a", 2, 50), STORE_REVOKE_DONE);
    CHECK(has_field(s, "0d0101", "reason", K) && has_field(s, "0d0101", "revoke_node", NULL));
    CHECK_INT_EQ(change(s, ca, "0d0101", NULL, "a", 9, 500), STORE_REVOKE_ALREADY);
    CHECK(has_field(s, "0d0101", "status", "revoked") && has_field(s, "0d0101", "reason", K));

    /* a release replayed before the older hold it lifted: the hold stays off; a later one holds */
    CHECK_INT_EQ(change(s, ca, "0d0102", NULL, "b", 5, 300), STORE_REVOKE_ALREADY);
    CHECK(has_field(s, "0d0102", "release_ms", "300"));
    CHECK_INT_EQ(change(s, ca, "0d0102", H, "a", 50, 200), STORE_REVOKE_ALREADY);
    CHECK(has_field(s, "0d0102", "status", "valid"));
    CHECK_INT_EQ(change(s, ca, "0d0102", H, "a", 51, 400), STORE_REVOKE_DONE);
    CHECK(has_field(s, "0d0102", "reason", H));

    /* a valid certificate keeps the latest release only */
    CHECK_INT_EQ(change(s, ca, "0d0103", NULL, "b", 5, 300), STORE_REVOKE_ALREADY);
    CHECK_INT_EQ(change(s, ca, "0d0103", NULL, "b", 4, 900), STORE_REVOKE_ALREADY);
    CHECK(has_field(s, "0d0103", "release_seq", "5") &&
          has_field(s, "0d0103", "release_ms", "300"));
    CHECK_INT_EQ(change(s, ca, "0d0103", H, "b", 4, 900), STORE_REVOKE_ALREADY); /* by seq */

    /* an older entry: a hold without its node and time is lifted by any release */
    CHECK(raw_ok(raw, "HSET %s status revoked reason certificateHold revoke_seq 99",
                 "jitrca:cert:0d0104"));
    CHECK_INT_EQ(change(s, ca, "0d0104", NULL, "a", 1, 10), STORE_REVOKE_DONE);
    CHECK(has_field(s, "0d0104", "status", "valid"));
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
out:
    if (raw) {
        redisFree(raw);
    }
    store_free(s);
    return rc;
}

/* ca:<ca>:expiry: the valid certificates of a CA by notAfter, counted by ZCOUNT and listed in
 * order; a revoked one leaves it, a reindex (the same store_certs_index) puts it back;
 * store_once and store_hmget. */
static int test_expiry(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    struct store *s = NULL;
    uint64_t removed = 0, counts[4] = { 0 };
    char u9[512];
    struct store_cert c[4];
    struct store_expiring *exp = NULL;
    size_t nexp = 0;
    enum store_revoke_result res[1];
    bool first = false;
    char *vals[3] = { NULL, NULL, NULL };
    static const char *const fields[] = { "cn", "ca", "nothing" };
    struct store_revocation rv = { .serial = "0e0002",
                                   .ca = "ca-x",
                                   .revoked_at = "2026-02-02T00:00:00Z",
                                   .reason = "keyCompromise",
                                   .seq = 9 };
    /* 2027-01-01, 2027-01-05, 2027-02-01 and one of another CA */
    const int64_t t0 = 1798761600, upto[4] = { t0 - 1, t0, t0 + 5 * 86400, t0 + 40 * 86400 };
    if (url == NULL) {
        return TT_SKIP;
    }
    c[0] = (struct store_cert){ .serial = "0e0001",
                                .fingerprint = "e1",
                                .subject = "CN=x",
                                .cn = "x",
                                .profile = "device",
                                .ca = "ca-x",
                                .requester = "t",
                                .not_before = "2026-01-01T00:00:00Z",
                                .not_after = "2027-01-01T00:00:00Z",
                                .issued_at = "2026-01-01T00:00:00Z",
                                .status = "valid",
                                .der_b64 = "AA==",
                                .seq = 1 };
    c[1] = c[0];
    c[1].serial = "0e0002";
    c[1].fingerprint = "e2";
    c[1].not_after = "2027-01-05T00:00:00Z";
    c[2] = c[0];
    c[2].serial = "0e0003";
    c[2].fingerprint = "e3";
    c[2].not_after = "2027-02-01T00:00:00Z";
    c[3] = c[0];
    c[3].serial = "0e0004";
    c[3].fingerprint = "e4";
    c[3].ca = "ca-y";
    snprintf(u9, sizeof(u9), "%s?db=9", url);
    s = store_connect(u9, &e);
    CHECK(s != NULL);
    CHECK_OK(mark_ready(s, &e), &e);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
    CHECK_OK(store_certs_index(s, c, 4, &e), &e);
    CHECK_OK(store_expiry_count(s, "ca-x", upto, 4, counts, &e), &e);
    CHECK_INT_EQ(counts[0], 0);
    CHECK_INT_EQ(counts[1], 1);
    CHECK_INT_EQ(counts[2], 2);
    CHECK_INT_EQ(counts[3], 3);
    CHECK_OK(store_expiry_count(s, "ca-nobody", upto, 4, counts, &e), &e);
    CHECK_INT_EQ(counts[3], 0);
    CHECK_OK(store_expiry_range(s, "ca-x", t0, t0 + 30 * 86400, &exp, &nexp, &e), &e);
    CHECK_INT_EQ(nexp, 2);
    CHECK_STR_EQ(exp[0].serial, "0e0001");
    CHECK_STR_EQ(exp[1].serial, "0e0002");
    CHECK_INT_EQ(exp[1].not_after, t0 + 4 * 86400);
    store_expiring_free(exp, nexp);
    exp = NULL;
    /* revoked: no longer expiring */
    CHECK_OK(store_certs_revoke(s, &rv, 1, res, &e), &e);
    CHECK_INT_EQ(res[0], STORE_REVOKE_DONE);
    CHECK_OK(store_expiry_count(s, "ca-x", upto, 4, counts, &e), &e);
    CHECK_INT_EQ(counts[2], 1);
    CHECK_INT_EQ(counts[3], 2);
    /* a record indexed as revoked (a rebuild's record before its revocation is replayed is
     * valid; one whose status says otherwise) is not added */
    c[1].status = "revoked";
    CHECK_OK(store_certs_index(s, &c[1], 1, &e), &e);
    CHECK_OK(store_expiry_count(s, "ca-x", upto, 4, counts, &e), &e);
    CHECK_INT_EQ(counts[3], 2);
    /* once per period across processes */
    CHECK_OK(store_once(s, "test-expiry", 60, &first, &e), &e);
    CHECK(first);
    CHECK_OK(store_once(s, "test-expiry", 60, &first, &e), &e);
    CHECK(!first);
    /* HMGET of any hash */
    CHECK_OK(store_hmget(s, STORE_PREFIX "cert:0e0001", fields, 3, vals, &e), &e);
    CHECK_STR_EQ(vals[0], "x");
    CHECK_STR_EQ(vals[1], "ca-x");
    CHECK(vals[2] == NULL);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
out:
    store_expiring_free(exp, nexp);
    for (size_t i = 0; i < 3; i++) {
        xfree(vals[i]);
    }
    store_free(s);
    return rc;
}

/* An error reply in the middle of a batch fails the call with redis's message, every reply of
 * the batch is still read (the next call on the same connection gets its own replies), and
 * the batch's other commands ran (a pipeline is not a transaction, as before). */
static int test_error_reply(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    struct store *s = NULL;
    redisContext *raw = NULL;
    struct buf f = BUF_INIT;
    uint64_t removed = 0;
    char u9[512];
    const char *fresh[] = { "0e00ff" };
    bool taken[1] = { true };
    if (url == NULL) {
        return TT_SKIP;
    }
    struct store_cert c[2] = {
        { .serial = "0e0001",
          .fingerprint = "fe01",
          .subject = "CN=ok",
          .cn = "ok",
          .profile = "device",
          .ca = "ca-er",
          .requester = "t",
          .not_before = "2026-01-01T00:00:00Z",
          .not_after = "2027-01-01T00:00:00Z",
          .issued_at = "2026-01-01T00:00:00Z",
          .status = "valid",
          .der_b64 = "AA==",
          .seq = 1 },
        { .serial = "0e0002",
          .fingerprint = "fe02",
          .subject = "CN=wrongtype",
          .cn = "wrongtype",
          .profile = "device",
          .ca = "ca-er",
          .requester = "t",
          .not_before = "2026-01-01T00:00:00Z",
          .not_after = "2027-01-01T00:00:00Z",
          .issued_at = "2026-01-01T00:00:00Z",
          .status = "valid",
          .der_b64 = "AA==",
          .seq = 2 },
    };
    snprintf(u9, sizeof(u9), "%s?db=9", url);
    s = store_connect(u9, &e);
    CHECK(s != NULL);
    CHECK_OK(mark_ready(s, &e), &e);
    raw = raw_connect(url);
    CHECK(raw != NULL);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
    CHECK(raw_ok(raw, "SET %s x", "jitrca:cn:wrongtype")); /* a string where a set belongs */
    CHECK(store_certs_index(s, c, 2, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_UNAVAILABLE);
    CHECK_STR_CONTAINS(e.msg, "redis at unix://");
    CHECK_STR_CONTAINS(e.msg, "WRONGTYPE");
    err_clear(&e);
    CHECK_OK(store_serials_reserve(s, "ca-er", fresh, 1, taken, &e), &e);
    CHECK(!taken[0]);
    CHECK_OK(store_serial_by_fingerprint(s, "fe02", &f, &e), &e);
    CHECK_STR_EQ(f.data, "0e0002");
    buf_reset(&f);
    CHECK_OK(store_cert_get(s, "0e0001", &f, &e), &e);
    CHECK_STR_CONTAINS(f.data, "cn\tok\n");
    CHECK(raw_ok(raw, "DEL %s", "jitrca:cn:wrongtype"));
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
out:
    if (raw) {
        redisFree(raw);
    }
    buf_release(&f);
    store_free(s);
    return rc;
}

/* A batch far beyond the buffer a store keeps between calls (600 records of 2 KB; the index
 * clear then needs three UNLINK batches of at most 512 keys), and the same store carries on. */
static int test_large_batch(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    struct store *s = NULL;
    struct store_cert *c = NULL;
    struct buf der = BUF_INIT, f = BUF_INIT;
    char(*serial)[16] = NULL, (*fp)[16] = NULL;
    uint64_t removed = 0;
    char u9[512];
    const size_t n = 600;
    if (url == NULL) {
        return TT_SKIP;
    }
    for (int i = 0; i < 2000; i++) {
        buf_addch(&der, (char)('A' + i % 26));
    }
    c = xcalloc(n, sizeof(*c));
    serial = xcalloc(n, sizeof(*serial));
    fp = xcalloc(n, sizeof(*fp));
    for (size_t i = 0; i < n; i++) {
        snprintf(serial[i], sizeof(serial[i]), "0f%04zx", i);
        snprintf(fp[i], sizeof(fp[i]), "ff%04zx", i);
        c[i] = (struct store_cert){ .serial = serial[i],
                                    .fingerprint = fp[i],
                                    .subject = "O=bulk",
                                    .cn = "",
                                    .profile = "device",
                                    .ca = "ca-big",
                                    .requester = "t",
                                    .not_before = "2026-01-01T00:00:00Z",
                                    .not_after = "2027-01-01T00:00:00Z",
                                    .issued_at = "2026-01-01T00:00:00Z",
                                    .status = "valid",
                                    .der_b64 = der.data,
                                    .seq = i };
    }
    snprintf(u9, sizeof(u9), "%s?db=9", url);
    s = store_connect(u9, &e);
    CHECK(s != NULL);
    CHECK_OK(mark_ready(s, &e), &e);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
    CHECK_OK(store_certs_index(s, c, n, &e), &e);
    CHECK_OK(store_cert_get(s, "0f0257", &f, &e), &e);
    CHECK_STR_CONTAINS(f.data, "seq\t599\n");
    CHECK_STR_CONTAINS(f.data, der.data);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
    CHECK_INT_EQ(removed, 2 * n + 2);
    CHECK_OK(store_certs_index(s, c, 1, &e), &e);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
    CHECK_INT_EQ(removed, 4);
out:
    xfree(c);
    xfree(serial);
    xfree(fp);
    buf_release(&der);
    buf_release(&f);
    store_free(s);
    return rc;
}

/* While index:ready is absent every read of the index and every reservation is refused as
 * "incomplete" (never "not found", never a record), the lock has one holder, a fenced store
 * writes only while its token holds the lock, and the final mark is atomic with the lock. */
static int test_index_completeness(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    struct store *s = NULL, *s2 = NULL;
    struct buf f = BUF_INIT;
    struct store_revoked *list = NULL;
    size_t nl = 0;
    char u9[512], holder[64], fresh[40];
    const char *serials[] = { "0e0001", fresh };
    bool taken[2], ready = true, got = false;
    struct store_cert c = { .serial = "0e0001",
                            .fingerprint = "e1",
                            .subject = "CN=e",
                            .cn = "e",
                            .profile = "device",
                            .ca = "ca-e",
                            .requester = "t",
                            .not_before = "2026-01-01T00:00:00Z",
                            .not_after = "2027-01-01T00:00:00Z",
                            .issued_at = "2026-01-01T00:00:00Z",
                            .status = "valid",
                            .der_b64 = "AA==",
                            .seq = 1 };
    struct store_index_mark m = { "g1", 1, "h", 1, NULL };
    if (url == NULL) {
        return TT_SKIP;
    }
    snprintf(u9, sizeof(u9), "%s?db=9", url);
    snprintf(fresh, sizeof(fresh), "0e%llx", (unsigned long long)time_now_ms()); /* never seen */
    s = store_connect(u9, &e);
    s2 = s ? store_connect(u9, &e) : NULL;
    CHECK(s2 != NULL);
    CHECK_OK(mark_ready(s, &e), &e);
    CHECK_OK(store_certs_index(s, &c, 1, &e), &e);
    CHECK_OK(store_index_mark_clear(s, &e), &e);
    CHECK_OK(store_index_ready(s, &ready, &e), &e);
    CHECK(!ready);
    /* incomplete: a record that exists and one that does not both answer "incomplete" */
    CHECK(store_cert_get(s, "0e0001", &f, &e) != 0 && store_err_index_incomplete(&e));
    err_clear(&e);
    CHECK(store_cert_get(s, "0e0999", &f, &e) != 0 && store_err_index_incomplete(&e));
    err_clear(&e);
    {
        struct store_cert_rec rec;
        CHECK(store_cert_read(s, "0e0001", &rec, &e) != 0 && store_err_index_incomplete(&e));
    }
    err_clear(&e);
    CHECK(store_serial_by_fingerprint(s, "e1", &f, &e) != 0 && store_err_index_incomplete(&e));
    err_clear(&e);
    CHECK(store_revoked_list(s, "ca-e", &list, &nl, &e) != 0 && store_err_index_incomplete(&e));
    err_clear(&e);
    CHECK(store_serials_reserve(s, "ca-e", serials + 1, 1, taken, &e) != 0 &&
          store_err_index_incomplete(&e));
    err_clear(&e);
    /* nothing was reserved by the refused call */
    CHECK_OK(mark_ready(s, &e), &e);
    CHECK_OK(store_serials_reserve(s, "ca-e", serials, 2, taken, &e), &e);
    CHECK(taken[0] && !taken[1]);
    CHECK_OK(store_index_mark_clear(s, &e), &e);
    /* the lock: one holder */
    CHECK_OK(store_index_lock_take(s, "A", 10000, &got, holder, sizeof(holder), &e), &e);
    CHECK(got);
    CHECK_OK(store_index_lock_take(s2, "B", 10000, &got, holder, sizeof(holder), &e), &e);
    CHECK(!got);
    CHECK_STR_EQ(holder, "A");
    CHECK(store_index_lock_renew(s2, "B", 10000, &e) != 0 && e.code == ERRC_CONFLICT);
    err_clear(&e);
    CHECK_OK(store_index_lock_renew(s, "A", 10000, &e), &e);
    /* a fenced store whose token does not hold the lock writes nothing */
    store_fence(s2, "B");
    c.status = "stale";
    CHECK(store_certs_index(s2, &c, 1, &e) != 0 && e.code == ERRC_CONFLICT);
    err_clear(&e);
    store_fence(s2, NULL);
    store_fence(s, "A");
    c.status = "valid";
    c.seq = 2;
    CHECK_OK(store_certs_index(s, &c, 1, &e), &e);
    store_fence(s, NULL);
    CHECK(store_index_mark_ready(s2, "B", &m, &e) != 0 && e.code == ERRC_CONFLICT);
    err_clear(&e);
    CHECK_OK(store_index_ready(s, &ready, &e), &e);
    CHECK(!ready);
    CHECK_OK(store_index_mark_ready(s, "A", &m, &e), &e);
    CHECK_OK(store_index_ready(s, &ready, &e), &e);
    CHECK(ready);
    /* a healing worker's take: not once the index is complete (a rebuild that had just
     * finished would be run twice), else once */
    {
        const char *keys[] = { "index:lock", "index:ready" }, *a1[] = { "W1", "10000" },
                   *a2[] = { "W2", "10000" };
        char *out[1] = { NULL };
        size_t no = 0;
        CHECK_OK(store_eval(s, store_index_heal_lock_lua, keys, 2, a1, 2, out, 1, &no, &e), &e);
        CHECK(no == 1 && out[0] != NULL && strcmp(out[0], "0") == 0);
        xfree(out[0]);
        out[0] = NULL;
        CHECK_OK(store_index_lock_take(s2, "B", 10000, &got, holder, sizeof(holder), &e), &e);
        CHECK(got); /* the refused take left no lock behind */
        CHECK_OK(store_index_lock_release(s2, "B", &e), &e);
        CHECK_OK(store_index_mark_clear(s, &e), &e);
        CHECK_OK(store_eval(s, store_index_heal_lock_lua, keys, 2, a1, 2, out, 1, &no, &e), &e);
        CHECK(no == 1 && out[0] != NULL && strcmp(out[0], "1") == 0);
        xfree(out[0]);
        out[0] = NULL;
        CHECK_OK(store_eval(s, store_index_heal_lock_lua, keys, 2, a2, 2, out, 1, &no, &e), &e);
        CHECK(no == 1 && out[0] != NULL && strcmp(out[0], "0") == 0);
        xfree(out[0]);
        CHECK_OK(store_index_lock_release(s, "W1", &e), &e);
        CHECK_OK(store_index_lock_take(s, "A", 10000, &got, holder, sizeof(holder), &e), &e);
        CHECK(got);
        CHECK_OK(store_index_mark_ready(s, "A", &m, &e), &e); /* complete again, as before */
    }
    buf_reset(&f);
    CHECK_OK(store_cert_get(s, "0e0001", &f, &e), &e);
    CHECK_STR_CONTAINS(f.data, "seq\t2\n");
    CHECK_STR_CONTAINS(f.data, "status\tvalid\n");
    buf_reset(&f);
    CHECK_OK(store_index_mark_get(s, &f, &e), &e);
    CHECK_STR_CONTAINS(f.data, "gen\tg1\n");
    CHECK_STR_CONTAINS(f.data, "by\tA\n");
    /* the mark released the lock */
    CHECK_OK(store_index_lock_take(s2, "B", 10000, &got, holder, sizeof(holder), &e), &e);
    CHECK(got);
    CHECK_OK(store_index_lock_release(s, "A", &e), &e); /* not A's: nothing */
    CHECK_OK(store_index_lock_take(s, "A", 10000, &got, holder, sizeof(holder), &e), &e);
    CHECK(!got);
    CHECK_OK(store_index_lock_release(s2, "B", &e), &e);
    CHECK_OK(store_index_lock_take(s, "A", 10000, &got, holder, sizeof(holder), &e), &e);
    CHECK(got);
    CHECK_OK(store_index_lock_release(s, "A", &e), &e);
out:
    store_revoked_free(list, nl);
    buf_release(&f);
    store_free(s);
    store_free(s2);
    return rc;
}

/* A reservation answers per serial whatever the batch holds: all new (one MSETNX in the
 * script), some taken, a serial twice in one batch (the second is taken: it must not be handed
 * out twice), more serials than one MSETNX takes. Indexing reserves a serial too. */
static int test_reserve_batch(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    struct store *s = NULL;
    redisContext *raw = NULL;
    char u9[512];
    const char *fresh[] = { "0b0001", "0b0002", "0b0003" };
    const char *mixed[] = { "0b0004", "0b0001", "0b0005" };
    const char *twice[] = { "0b0006", "0b0007", "0b0006" };
    const char *again[] = { "0b0004", "0b0005", "0b0007" };
    const char *idx[] = { "0b0008", "0b0009" };
    const size_t nbig = 1001;
    char(*big)[8] = NULL;
    const char **bigp = NULL;
    bool taken[3], *bigt = NULL;
    uint64_t removed = 0;
    struct store_cert c[2];
    if (url == NULL) {
        return TT_SKIP;
    }
    big = xcalloc(nbig, sizeof(*big));
    bigp = xcalloc(nbig, sizeof(*bigp));
    bigt = xcalloc(nbig, sizeof(*bigt));
    snprintf(u9, sizeof(u9), "%s?db=9", url);
    s = store_connect(u9, &e);
    CHECK(s != NULL);
    raw = raw_connect(url);
    CHECK(raw != NULL);
    CHECK_OK(mark_ready(s, &e), &e);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
    for (int i = 1; i <= 9; i++) { /* reservations outlive an index clear */
        char key[64];
        snprintf(key, sizeof(key), "jitrca:serial:0b%04x", i);
        CHECK(raw_ok(raw, "DEL %s", key));
    }
    for (size_t i = 0; i < nbig; i++) {
        snprintf(big[i], sizeof(big[i]), "0c%04zx", i);
        bigp[i] = big[i];
        char key[64];
        snprintf(key, sizeof(key), "jitrca:serial:%s", big[i]);
        CHECK(raw_ok(raw, "DEL %s", key));
    }
    CHECK_OK(store_serials_reserve(s, "ca-rb", fresh, 3, taken, &e), &e);
    CHECK(!taken[0] && !taken[1] && !taken[2]);
    CHECK_OK(store_serials_reserve(s, "ca-rb", mixed, 3, taken, &e), &e);
    CHECK(!taken[0] && taken[1] && !taken[2]);
    CHECK_OK(store_serials_reserve(s, "ca-rb", twice, 3, taken, &e), &e);
    CHECK(!taken[0] && !taken[1] && taken[2]);
    /* the new ones of the mixed and the doubled batches were reserved */
    CHECK_OK(store_serials_reserve(s, "ca-rb", again, 3, taken, &e), &e);
    CHECK(taken[0] && taken[1] && taken[2]);
    CHECK_OK(store_serials_reserve(s, "ca-rb", bigp, nbig, bigt, &e), &e);
    for (size_t i = 0; i < nbig; i++) {
        CHECK(!bigt[i]);
    }
    CHECK_OK(store_serials_reserve(s, "ca-rb", bigp + nbig - 2, 2, bigt, &e), &e);
    CHECK(bigt[0] && bigt[1]);
    c[0] = (struct store_cert){ .serial = idx[0],
                                .fingerprint = "b8",
                                .subject = "CN=r",
                                .cn = "r",
                                .profile = "device",
                                .ca = "ca-rb",
                                .requester = "t",
                                .not_before = "2026-01-01T00:00:00Z",
                                .not_after = "2027-01-01T00:00:00Z",
                                .issued_at = "2026-01-01T00:00:00Z",
                                .status = "valid",
                                .der_b64 = "AA==",
                                .seq = 1 };
    c[1] = c[0];
    c[1].serial = idx[1];
    c[1].fingerprint = "b9";
    CHECK_OK(store_certs_index(s, c, 2, &e), &e);
    CHECK_OK(store_serials_reserve(s, "ca-rb", idx, 2, taken, &e), &e);
    CHECK(taken[0] && taken[1]);
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
out:
    xfree(big);
    xfree(bigp);
    xfree(bigt);
    if (raw) {
        redisFree(raw);
    }
    store_free(s);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "url_parse", test_url_parse },
        { "unreachable", test_unreachable },
        { "reserve_and_index", test_reserve_and_index },
        { "reserve_batch", test_reserve_batch },
        { "bucket", test_bucket },
        { "index_fields", test_index_fields },
        { "supersede", test_supersede },
        { "expiry", test_expiry },
        { "reenroll", test_reenroll },
        { "revoke_and_crl_number", test_revoke_and_crl_number },
        { "hold_release_order", test_hold_release_order },
        { "error_reply", test_error_reply },
        { "large_batch", test_large_batch },
        { "index_completeness", test_index_completeness },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
