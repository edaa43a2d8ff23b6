/*
 * store/record.c without Redis: the key builders and the typed issuance record built from a
 * hash's strings (what HGETALL returns, in any order, with fields known and unknown).
 */
#include <string.h>

#include "core/util.h"
#include "store/store.h"
#include "tests/harness/tt.h"

static void rec_of(struct store_cert_rec *r, const char *const *kv, size_t n)
{
    size_t len[64] = { 0 };
    for (size_t i = 0; i < n; i++) {
        len[i] = strlen(kv[i]);
    }
    store_cert_rec_parse(r, kv, len, n);
}

static int test_keys(void)
{
    int rc = 0;
    char k[STORE_KEY_MAX], small[12];
    char fp[65];
    memset(fp, 'a', 64);
    fp[64] = '\0';
    CHECK(store_key_cert(k, sizeof(k), "0a1b"));
    CHECK_STR_EQ(k, "jitrca:cert:0a1b");
    CHECK(store_key_fp(k, sizeof(k), fp));
    CHECK_STR_EQ(k + strlen("jitrca:fp:"), fp);
    CHECK(str_has_prefix(k, STORE_PREFIX STORE_KEY_FP));
    /* too long for the room given: nothing half-built */
    CHECK(!store_key_cert(small, sizeof(small), "0a1b"));
    CHECK_STR_EQ(small, "");
out:
    return rc;
}

static int test_valid(void)
{
    int rc = 0;
    struct store_cert_rec r = { 0 };
    static const char *const kv[] = {
        "status",      "valid",   "serial",    "0a1b",
        "seq",         "17",      "requester", "station:line1",
        "ca",          "devices", "profile",   "device",
        "der",         "AA==",    "subject",   "CN=dev-1,O=Acme",
        "fingerprint", "f00d",    "not_after", "2027-01-01T00:00:00Z",
    };
    rec_of(&r, kv, ARRAY_LEN(kv));
    CHECK(store_cert_rec_valid(&r));
    CHECK_STR_EQ(r.serial, "0a1b");
    CHECK_STR_EQ(r.requester, "station:line1");
    CHECK_STR_EQ(r.ca, "devices");
    CHECK_STR_EQ(r.profile, "device");
    CHECK_STR_EQ(r.der_b64, "AA==");
    CHECK_STR_EQ(r.subject, "CN=dev-1,O=Acme");
    CHECK_STR_EQ(r.fingerprint, "f00d");
    CHECK_INT_EQ(r.seq, 17);
    /* absent fields read "", and say they are absent */
    CHECK_STR_EQ(r.renews, "");
    CHECK_STR_EQ(r.superseded_by, "");
    CHECK_STR_EQ(r.revoked_at, "");
    CHECK_INT_EQ(r.revoke_seq, 0);
    CHECK(store_cert_rec_field(&r, "renews") == NULL);
    /* every field, sorted by name */
    CHECK_INT_EQ(r.nfields, ARRAY_LEN(kv) / 2);
    for (size_t i = 1; i < r.nfields; i++) {
        CHECK(strcmp(r.fields[i - 1].name, r.fields[i].name) < 0);
    }
    CHECK_STR_EQ(r.fields[0].name, "ca");
out:
    store_cert_rec_release(&r);
    return rc;
}

static int test_revoked_and_linked(void)
{
    int rc = 0;
    struct store_cert_rec r = { 0 };
    static const char *const kv[] = {
        "status",        "revoked",
        "revoked_at",    "2026-02-02T00:00:00Z",
        "reason",        "keyCompromise",
        "revoke_seq",    "42",
        "renews",        "0a00",
        "superseded_by", "0a02",
        "later_field",   "x",
        "seq",           "not a number",
    };
    rec_of(&r, kv, ARRAY_LEN(kv));
    CHECK(!store_cert_rec_valid(&r));
    CHECK_STR_EQ(r.status, "revoked");
    CHECK_STR_EQ(r.revoked_at, "2026-02-02T00:00:00Z");
    CHECK_STR_EQ(r.reason, "keyCompromise");
    CHECK_INT_EQ(r.revoke_seq, 42);
    CHECK_STR_EQ(r.renews, "0a00");
    CHECK_STR_EQ(r.superseded_by, "0a02");
    CHECK_INT_EQ(r.seq, 0); /* malformed: 0, never a guess */
    /* a field not known here is kept for those who show every field */
    CHECK_STR_EQ(store_cert_rec_field(&r, "later_field"), "x");
out:
    store_cert_rec_release(&r);
    return rc;
}

static int test_odd(void)
{
    int rc = 0;
    struct store_cert_rec r = { 0 };
    /* an empty hash, a value with a NUL inside (binary safe length), a last unpaired string */
    static const char *const none[] = { "status" };
    const char *kv[] = { "subject", "CN=a\0b", "status", "valid" };
    size_t len[] = { 7, 6, 6, 5 };
    rec_of(&r, none, 0);
    CHECK_INT_EQ(r.nfields, 0);
    CHECK(!store_cert_rec_valid(&r));
    CHECK_STR_EQ(r.serial, "");
    store_cert_rec_release(&r);
    rec_of(&r, none, 1);
    CHECK_INT_EQ(r.nfields, 0);
    store_cert_rec_release(&r);
    store_cert_rec_parse(&r, kv, len, 4);
    CHECK(store_cert_rec_valid(&r));
    CHECK_INT_EQ(r.fields[1].len, 6);
    CHECK(memcmp(r.fields[1].value, "CN=a\0b", 6) == 0);
    /* the "valid" of another field is not the status */
    store_cert_rec_release(&r);
    {
        static const char *const tricky[] = { "xstatus", "valid", "reason", "status\tvalid" };
        static const char *const near[] = { "status", "invalid" };
        static const char *const spaced[] = { "status", "valid " };
        rec_of(&r, tricky, 4);
        CHECK(!store_cert_rec_valid(&r));
        store_cert_rec_release(&r);
        rec_of(&r, near, 2);
        CHECK(!store_cert_rec_valid(&r));
        store_cert_rec_release(&r);
        rec_of(&r, spaced, 2);
        CHECK(!store_cert_rec_valid(&r));
    }
out:
    store_cert_rec_release(&r);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "keys", test_keys },
        { "valid", test_valid },
        { "revoked_and_linked", test_revoked_and_linked },
        { "odd", test_odd },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
