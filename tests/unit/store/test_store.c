#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "store/store.h"
#include "tests/harness/tt.h"

static int test_url_parse(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct store_url u;
    char d[300];
    const char *bad[] = { "http://x", "redis://", "redis://h:0", "redis://h:99999",
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
    struct store_cert c = { .serial = "0aff01", .fingerprint = "ab", .subject = "CN=d1",
                            .cn = "d1", .profile = "device", .ca = "ca1", .requester = "t",
                            .not_before = "2026-01-01T00:00:00Z",
                            .not_after = "2027-01-01T00:00:00Z",
                            .issued_at = "2026-01-01T00:00:00Z", .status = "valid",
                            .der_b64 = "AA==", .seq = 7 };
    if (url == NULL) {
        return TT_SKIP;
    }
    snprintf(u9, sizeof(u9), "%s?db=9", url);
    s = store_connect(u9, &e);
    CHECK(s != NULL);
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
    CHECK_OK(store_index_clear(s, &removed, &e), &e);
    CHECK_INT_EQ(removed, 5);
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

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "url_parse", test_url_parse },
        { "unreachable", test_unreachable },
        { "reserve_and_index", test_reserve_and_index },
        { "bucket", test_bucket },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
