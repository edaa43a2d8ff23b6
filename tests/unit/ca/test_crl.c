/*
 * ca/crl: CRLs of P-256, P-384 and RSA CAs with 0, 1 and many entries, parsed back with
 * d2i_X509_CRL and checked field by field (v2, issuer, thisUpdate, nextUpdate, cRLNumber, AKI,
 * entries sorted with their revocationDate and reasonCode, none for unspecified), the signature
 * verified with the CA key (and not with another) by OpenSSL and by `openssl crl -verify`; the
 * refusals (key not the CA's, not a CA, no cRLSign, bad times, number 0, bad serials, unknown
 * reasons, a serial twice), each asserting its message and that nothing was produced; reason
 * names; the info, serial and PEM helpers.
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ca/crl.h"
#include "core/mem.h"
#include "core/util.h"
#include "tests/harness/tt.h"

#define T0 ((time_t)1767225600) /* 2026-01-01T00:00:00Z */

enum {
    CA_PLAIN = 0,
    CA_NO_SKI = 1,
    CA_NOT_CA = 2,
    CA_NO_CRLSIGN = 4
};

static EVP_PKEY *keygen(const char *type)
{
    if (strcmp(type, "rsa") == 0) {
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    }
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", type);
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* A self-signed CA certificate for key, shaped by flags. */
static X509 *make_ca(EVP_PKEY *key, int flags)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    int ok = x && n && X509_set_version(x, X509_VERSION_3) == 1 &&
             ASN1_INTEGER_set(X509_get_serialNumber(x), 1) == 1 &&
             X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"CRL Test CA",
                                        -1, -1, 0) == 1 &&
             X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"Acme", -1, -1,
                                        0) == 1 &&
             X509_set_subject_name(x, n) == 1 && X509_set_issuer_name(x, n) == 1 &&
             X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL &&
             X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 3650) != NULL &&
             X509_set_pubkey(x, key) == 1;
    ok = ok && add_ext(x, NID_basic_constraints,
                       flags & CA_NOT_CA ? "critical,CA:FALSE" : "critical,CA:TRUE") == 0;
    ok = ok && add_ext(x, NID_key_usage,
                       flags & CA_NO_CRLSIGN ? "critical,keyCertSign,digitalSignature"
                                             : "critical,keyCertSign,cRLSign") == 0;
    if (!(flags & CA_NO_SKI)) {
        ok = ok && add_ext(x, NID_subject_key_identifier, "hash") == 0;
    }
    ok = ok && X509_sign(x, key, EVP_sha256()) > 0;
    X509_NAME_free(n);
    if (!ok) {
        X509_free(x);
        ERR_print_errors_fp(stderr);
        return NULL;
    }
    return x;
}

static time_t asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return (time_t)-1;
    }
    return timegm(&tm);
}

static X509_CRL *parse(const struct buf *der)
{
    const unsigned char *p = (const unsigned char *)der->data;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)der->len);
    if (crl && p != (const unsigned char *)der->data + der->len) {
        X509_CRL_free(crl);
        return NULL;
    }
    return crl;
}

/* Lowercase hex of an entry's serial as BN_bn2hex spells it (whole octets, no sign octet). */
static void serial_hex(const X509_REVOKED *r, char *out, size_t cap)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_REVOKED_get0_serialNumber(r), NULL);
    char *h = bn ? BN_bn2hex(bn) : NULL;
    size_t i = 0;
    for (; h && h[i] && i + 1 < cap; i++) {
        out[i] = (char)(h[i] >= 'A' && h[i] <= 'F' ? h[i] - 'A' + 'a' : h[i]);
    }
    out[i] = '\0';
    OPENSSL_free(h);
    BN_free(bn);
}

/* The serial with its leading zero digits dropped. */
static const char *strip0(const char *s)
{
    while (s[0] == '0' && s[1]) {
        s++;
    }
    return s;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct ca_crl_entry *x = a, *y = b;
    const char *p = strip0(x->serial_hex), *q = strip0(y->serial_hex);
    size_t lp = strlen(p), lq = strlen(q);
    return lp != lq ? (lp < lq ? -1 : 1) : strcmp(p, q);
}

/* Builds the CRL of n entries for a CA of key type `type` and checks everything. */
static int crl_case(const char *type, size_t n, int sig_nid)
{
    int rc = 0;
    struct err e = ERR_INIT;
    EVP_PKEY *key = keygen(type), *other = keygen(type);
    X509 *ca = key ? make_ca(key, CA_PLAIN) : NULL;
    X509_CRL *crl = NULL;
    ASN1_INTEGER *num = NULL;
    AUTHORITY_KEYID *akid = NULL;
    ASN1_ENUMERATED *reason = NULL;
    struct buf der = BUF_INIT, path = BUF_INIT, pem = BUF_INIT;
    struct ca_crl_entry *en = xcalloc(n ? n : 1, sizeof(*en));
    char(*hex)[41] = xcalloc(n ? n : 1, sizeof(*hex));
    uint64_t got = 0;
    int crit = 0;
    struct ca_crl_params p = { T0, T0 + 7 * 86400, 42 + n, en, n };
    static const int reasons[] = { CA_CRL_UNSPECIFIED,         CA_CRL_KEY_COMPROMISE,
                                   CA_CRL_CA_COMPROMISE,       CA_CRL_AFFILIATION_CHANGED,
                                   CA_CRL_SUPERSEDED,          CA_CRL_CESSATION_OF_OPERATION,
                                   CA_CRL_PRIVILEGE_WITHDRAWN, CA_CRL_AA_COMPROMISE };
    CHECK(key != NULL && other != NULL && ca != NULL);
    for (size_t i = 0; i < n; i++) {
        /* distinct serials of various lengths; every third one with the high bit set (a 00
         * sign octet in DER); given in reverse order so the builder must sort */
        size_t k = n - i;
        if (k % 3 == 0) {
            snprintf(hex[i], sizeof(hex[i]), "00f%07zx%016zx", k, k * 7919);
        } else {
            snprintf(hex[i], sizeof(hex[i]), "%zx%08zx", k, k * 104729);
        }
        en[i].serial_hex = hex[i];
        en[i].revoked_at = T0 - (time_t)(k * 60);
        en[i].reason = reasons[k % ARRAY_LEN(reasons)];
    }
    CHECK_OK(ca_crl_build(ca, key, &p, &der, &e), &e);
    CHECK((crl = parse(&der)) != NULL);
    CHECK_INT_EQ(X509_CRL_get_version(crl), 1); /* v2 */
    CHECK_INT_EQ(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)), 0);
    CHECK_INT_EQ(asn1_time(X509_CRL_get0_lastUpdate(crl)), T0);
    CHECK_INT_EQ(asn1_time(X509_CRL_get0_nextUpdate(crl)), T0 + 7 * 86400);
    CHECK_INT_EQ(X509_CRL_get_signature_nid(crl), sig_nid);
    /* the signature: OpenSSL with the CA key yes, with another key no */
    CHECK_INT_EQ(X509_CRL_verify(crl, key), 1);
    CHECK(X509_CRL_verify(crl, other) != 1);
    ERR_clear_error();
    /* extensions: exactly AKI and cRLNumber, both non-critical */
    CHECK_INT_EQ(X509_CRL_get_ext_count(crl), 2);
    num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
    CHECK(num != NULL);
    CHECK_INT_EQ(crit, 0);
    CHECK_INT_EQ(ASN1_INTEGER_get_uint64(&got, num), 1);
    CHECK_INT_EQ(got, 42 + n);
    akid = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, &crit, NULL);
    CHECK(akid != NULL && akid->keyid != NULL);
    CHECK_INT_EQ(crit, 0);
    CHECK_INT_EQ(ASN1_OCTET_STRING_cmp(akid->keyid, X509_get0_subject_key_id(ca)), 0);
    CHECK(akid->issuer == NULL && akid->serial == NULL);
    /* entries: sorted by serial, each with its date and reason */
    if (n == 0) {
        CHECK(X509_CRL_get_REVOKED(crl) == NULL ||
              sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)) == 0);
    } else {
        STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
        CHECK_INT_EQ(sk_X509_REVOKED_num(revs), n);
        qsort(en, n, sizeof(*en), cmp_entry);
        for (size_t i = 0; i < n; i++) {
            X509_REVOKED *r = sk_X509_REVOKED_value(revs, (int)i);
            char h[48];
            serial_hex(r, h, sizeof(h));
            CHECK_STR_EQ(strip0(h), strip0(en[i].serial_hex));
            CHECK_INT_EQ(asn1_time(X509_REVOKED_get0_revocationDate(r)), en[i].revoked_at);
            reason = X509_REVOKED_get_ext_d2i(r, NID_crl_reason, &crit, NULL);
            if (en[i].reason == CA_CRL_UNSPECIFIED) {
                CHECK(reason == NULL);
                CHECK_INT_EQ(crit, -1); /* absent, not unspecified */
                CHECK_INT_EQ(X509_REVOKED_get_ext_count(r), 0);
            } else {
                CHECK(reason != NULL);
                CHECK_INT_EQ(crit, 0);
                CHECK_INT_EQ(ASN1_ENUMERATED_get(reason), en[i].reason);
                CHECK_INT_EQ(X509_REVOKED_get_ext_count(r), 1);
            }
            ASN1_ENUMERATED_free(reason);
            reason = NULL;
        }
    }
    /* and the openssl command line agrees */
    buf_addf(&path, "%s/%s-%zu", tt_tmpdir(), type, n);
    {
        struct buf ca_pem = BUF_INIT;
        BIO *b = BIO_new(BIO_s_mem());
        char *data = NULL;
        long len;
        CHECK(b != NULL && PEM_write_bio_X509(b, ca) == 1);
        len = BIO_get_mem_data(b, &data);
        buf_add(&ca_pem, data, (size_t)len);
        BIO_free(b);
        buf_addstr(&pem, path.data);
        buf_addstr(&pem, ".ca.pem");
        CHECK_OK(file_write_atomic(pem.data, ca_pem.data, ca_pem.len, 0644, false, &e), &e);
        buf_release(&ca_pem);
    }
    buf_addstr(&path, ".crl.der");
    CHECK_OK(file_write_atomic(path.data, der.data, der.len, 0644, false, &e), &e);
    CHECK_INT_EQ(tt_sh("openssl crl -inform DER -in '%s' -CAfile '%s' -noout -verify 2>&1 | "
                       "grep -q 'verify OK'",
                       path.data, pem.data),
                 0);
    CHECK_INT_EQ(tt_sh("openssl crl -inform DER -in '%s' -noout -text | grep -c 'Serial Number' "
                       "| grep -qx %zu",
                       path.data, n),
                 0);
out:
    ASN1_ENUMERATED_free(reason);
    AUTHORITY_KEYID_free(akid);
    ASN1_INTEGER_free(num);
    X509_CRL_free(crl);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    buf_release(&der);
    buf_release(&path);
    buf_release(&pem);
    xfree(en);
    xfree(hex);
    return rc;
}

static int t_p256_empty(void)
{
    return crl_case("P-256", 0, NID_ecdsa_with_SHA256);
}
static int t_p256_one(void)
{
    return crl_case("P-256", 1, NID_ecdsa_with_SHA256);
}
static int t_p256_many(void)
{
    return crl_case("P-256", 1000, NID_ecdsa_with_SHA256);
}
static int t_p384_empty(void)
{
    return crl_case("P-384", 0, NID_ecdsa_with_SHA384);
}
static int t_p384_one(void)
{
    return crl_case("P-384", 1, NID_ecdsa_with_SHA384);
}
static int t_p384_many(void)
{
    return crl_case("P-384", 500, NID_ecdsa_with_SHA384);
}
static int t_rsa_empty(void)
{
    return crl_case("rsa", 0, NID_sha256WithRSAEncryption);
}
static int t_rsa_one(void)
{
    return crl_case("rsa", 1, NID_sha256WithRSAEncryption);
}
static int t_rsa_many(void)
{
    return crl_case("rsa", 500, NID_sha256WithRSAEncryption);
}

/* A CA certificate without SKI: the AKI is the SHA-1 of its public key (RFC 5280 §4.2.1.2). */
static int t_aki_without_ski(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    EVP_PKEY *key = keygen("P-256");
    X509 *ca = key ? make_ca(key, CA_NO_SKI) : NULL;
    X509_CRL *crl = NULL;
    AUTHORITY_KEYID *akid = NULL;
    struct buf der = BUF_INIT;
    unsigned char md[20];
    unsigned int mdlen = 0;
    struct ca_crl_params p = { T0, T0 + 3600, 1, NULL, 0 };
    CHECK(ca != NULL && X509_get0_subject_key_id(ca) == NULL);
    CHECK_OK(ca_crl_build(ca, key, &p, &der, &e), &e);
    CHECK((crl = parse(&der)) != NULL);
    akid = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, NULL, NULL);
    CHECK(akid != NULL && akid->keyid != NULL);
    CHECK_INT_EQ(X509_pubkey_digest(ca, EVP_sha1(), md, &mdlen), 1);
    CHECK_INT_EQ(ASN1_STRING_length(akid->keyid), 20);
    CHECK(memcmp(ASN1_STRING_get0_data(akid->keyid), md, 20) == 0);
out:
    AUTHORITY_KEYID_free(akid);
    X509_CRL_free(crl);
    X509_free(ca);
    EVP_PKEY_free(key);
    buf_release(&der);
    return rc;
}

/* Large numbers and times past 2049 (GeneralizedTime) survive the round trip. */
static int t_bounds(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    EVP_PKEY *key = keygen("P-256");
    X509 *ca = key ? make_ca(key, CA_PLAIN) : NULL;
    X509_CRL *crl = NULL;
    struct buf der = BUF_INIT;
    struct ca_crl_info info;
    time_t late = (time_t)2556143999; /* 2050-12-31T23:59:59Z */
    struct ca_crl_entry en[] = { { "7fffffffffffffffffffffffffffffffffffffff", late - 10, 1 },
                                 { "00ffffffffffffffffffffffffffffffffffff", late - 20, 4 } };
    struct ca_crl_params p = { late - 100, late, UINT64_MAX, en, 2 };
    CHECK(ca != NULL);
    CHECK_OK(ca_crl_build(ca, key, &p, &der, &e), &e);
    CHECK((crl = parse(&der)) != NULL);
    CHECK_INT_EQ(ASN1_STRING_type(X509_CRL_get0_nextUpdate(crl)), V_ASN1_GENERALIZEDTIME);
    CHECK_OK(ca_crl_info_parse((const uint8_t *)der.data, der.len, &info, &e), &e);
    CHECK(info.number == UINT64_MAX);
    CHECK_INT_EQ(info.this_update, late - 100);
    CHECK_INT_EQ(info.next_update, late);
    CHECK_INT_EQ(info.entries, 2);
out:
    X509_CRL_free(crl);
    X509_free(ca);
    EVP_PKEY_free(key);
    buf_release(&der);
    return rc;
}

static int t_info_serials_pem(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    EVP_PKEY *key = keygen("P-256");
    X509 *ca = key ? make_ca(key, CA_PLAIN) : NULL;
    X509_CRL *crl = NULL;
    BIO *bio = NULL;
    unsigned char *enc = NULL;
    int len;
    struct buf der = BUF_INIT, pem = BUF_INIT, serials = BUF_INIT;
    struct ca_crl_info info;
    /* canonical forms: minimal DER contents, a 00 sign octet only before a high bit: "00FF01"
     * is "00ff01", "0A0B" is "0a0b", "0000ab" is "00ab"; listed sorted as integers */
    struct ca_crl_entry en[] = { { "00FF01", T0, 0 }, { "0A0B", T0, 1 }, { "0000ab", T0, 2 } };
    struct ca_crl_params p = { T0, T0 + 60, 7, en, 3 };
    CHECK(ca != NULL);
    CHECK_OK(ca_crl_build(ca, key, &p, &der, &e), &e);
    CHECK_OK(ca_crl_info_parse((const uint8_t *)der.data, der.len, &info, &e), &e);
    CHECK_INT_EQ(info.number, 7);
    CHECK_INT_EQ(info.this_update, T0);
    CHECK_INT_EQ(info.next_update, T0 + 60);
    CHECK_INT_EQ(info.entries, 3);
    CHECK_OK(ca_crl_serials((const uint8_t *)der.data, der.len, &serials, &e), &e);
    CHECK_STR_EQ(serials.data, "00ab\n0a0b\n00ff01\n");
    ca_crl_der_to_pem(&pem, (const uint8_t *)der.data, der.len);
    CHECK(str_has_prefix(pem.data, "-----BEGIN X509 CRL-----\n"));
    CHECK_STR_CONTAINS(pem.data, "\n-----END X509 CRL-----\n");
    for (const char *l = pem.data; *l; l = strchr(l, '\n') + 1) {
        CHECK(strchr(l, '\n') - l <= 64);
    }
    bio = BIO_new_mem_buf(pem.data, (int)pem.len);
    CHECK(bio != NULL && (crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL);
    len = i2d_X509_CRL(crl, &enc);
    CHECK(len > 0 && (size_t)len == der.len && memcmp(enc, der.data, der.len) == 0);
    /* bad bytes */
    e = (struct err)ERR_INIT;
    CHECK(ca_crl_info_parse((const uint8_t *)"\x30\x03\x02\x01\x01", 5, &info, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "not a DER CRL");
    e = (struct err)ERR_INIT;
    CHECK(ca_crl_info_parse((const uint8_t *)der.data, der.len - 1, &info, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    e = (struct err)ERR_INIT;
    CHECK(ca_crl_info_parse((const uint8_t *)"", 0, &info, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "not a CRL");
    e = (struct err)ERR_INIT;
    buf_reset(&serials);
    CHECK(ca_crl_serials((const uint8_t *)der.data, der.len - 3, &serials, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_INT_EQ(serials.len, 0);
out:
    OPENSSL_free(enc);
    BIO_free(bio);
    X509_CRL_free(crl);
    X509_free(ca);
    EVP_PKEY_free(key);
    buf_release(&der);
    buf_release(&pem);
    buf_release(&serials);
    return rc;
}

/* Every refusal names the problem and produces nothing. */
static int t_refusals(void)
{
    int rc = 0;
    EVP_PKEY *key = keygen("P-256"), *other = keygen("P-256"), *p192 = keygen("P-192");
    X509 *ca = key ? make_ca(key, CA_PLAIN) : NULL;
    X509 *notca = key ? make_ca(key, CA_NOT_CA) : NULL;
    X509 *nocrl = key ? make_ca(key, CA_NO_CRLSIGN) : NULL;
    X509 *ca192 = p192 ? make_ca(p192, CA_PLAIN) : NULL;
    struct buf der = BUF_INIT;
    struct ca_crl_entry good = { "01", T0, 1 };
    struct ca_crl_entry dup[] = { { "0a", T0, 1 }, { "A", T0 - 5, 4 } };
    struct ca_crl_entry bad[][1] = {
        { { "", T0, 0 } },
        { { "xyz", T0, 0 } },
        { { "-1", T0, 0 } },
        { { "0000", T0, 0 } },
        { { "01020304050607080910111213141516171819200", T0, 0 } },
        { { "01", T0, 7 } },
        { { "01", T0, 11 } },
        { { "01", T0, -1 } },
        { { NULL, T0, 0 } },
    };
    static const char *const bad_msg[] = {
        "serial '' is not 1 to 40 hex digits",
        "serial 'xyz' is not",
        "serial '-1' is not",
        "serial '0000' is zero",
        "is not 1 to 40 hex digits",
        "unknown reason code 7",
        "unknown reason code 11",
        "unknown reason code -1",
        "serial '' is not",
    };
    struct {
        X509 *cert;
        EVP_PKEY *key;
        struct ca_crl_params p;
        const char *msg;
    } cases[] = {
        { ca, other, { T0, T0 + 60, 1, &good, 1 }, "the CA key does not match the CA certificate" },
        { notca, key, { T0, T0 + 60, 1, &good, 1 }, "no basicConstraints CA:TRUE" },
        { nocrl, key, { T0, T0 + 60, 1, &good, 1 }, "keyUsage lacks cRLSign" },
        { ca192, p192, { T0, T0 + 60, 1, &good, 1 }, "curve" },
        { NULL, key, { T0, T0 + 60, 1, &good, 1 }, "no CA certificate or key" },
        { ca, NULL, { T0, T0 + 60, 1, &good, 1 }, "no CA certificate or key" },
        { ca, key, { T0, T0, 1, &good, 1 }, "nextUpdate must be after its thisUpdate" },
        { ca, key, { T0, T0 - 1, 1, &good, 1 }, "nextUpdate must be after its thisUpdate" },
        { ca, key, { T0, T0 + 60, 0, &good, 1 }, "CRL number 0" },
        { ca, key, { T0, T0 + 60, 1, dup, 2 }, "serial 0a is listed twice" },
    };
    CHECK(ca && notca && nocrl && ca192);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct err e = ERR_INIT;
        CHECK(ca_crl_build(cases[i].cert, cases[i].key, &cases[i].p, &der, &e) != 0);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, cases[i].msg);
        CHECK_INT_EQ(der.len, 0);
        CHECK_INT_EQ(ERR_peek_error(), 0);
    }
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct err e = ERR_INIT;
        struct ca_crl_params p = { T0, T0 + 60, 1, bad[i], 1 };
        CHECK(ca_crl_build(ca, key, &p, &der, &e) != 0);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, bad_msg[i]);
        CHECK_INT_EQ(der.len, 0);
    }
    /* and the good one works with the same objects */
    {
        struct err e = ERR_INIT;
        struct ca_crl_params p = { T0, T0 + 60, 1, &good, 1 };
        CHECK_OK(ca_crl_build(ca, key, &p, &der, &e), &e);
        CHECK(der.len > 0);
    }
out:
    X509_free(ca);
    X509_free(notca);
    X509_free(nocrl);
    X509_free(ca192);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    EVP_PKEY_free(p192);
    buf_release(&der);
    return rc;
}

static int t_reasons(void)
{
    int rc = 0;
    static const struct {
        const char *name;
        int code;
    } ok[] = {
        { "unspecified", 0 },          { "keyCompromise", 1 },      { "KEYCOMPROMISE", 1 },
        { "cACompromise", 2 },         { "affiliationChanged", 3 }, { "superseded", 4 },
        { "cessationOfOperation", 5 }, { "privilegeWithdrawn", 9 }, { "aACompromise", 10 },
        { "certificateHold", 6 },      { "CertificateHold", 6 },
    };
    static const struct {
        const char *name;
        const char *msg;
    } bad[] = {
        { "removeFromCRL", "'removeFromCRL' is not supported: it belongs to delta CRLs" },
        { "stolen", "unknown reason 'stolen' (unspecified, keyCompromise," },
        { "", "unknown reason ''" },
        { "key Compromise", "unknown reason" },
        { NULL, "unknown reason ''" },
    };
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        struct err e = ERR_INIT;
        enum ca_crl_reason r = CA_CRL_AA_COMPROMISE;
        CHECK_OK(ca_crl_reason_parse(ok[i].name, &r, &e), &e);
        CHECK_INT_EQ(r, ok[i].code);
        CHECK(strcasecmp(ca_crl_reason_name(ok[i].code), ok[i].name) == 0);
    }
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct err e = ERR_INIT;
        enum ca_crl_reason r = CA_CRL_SUPERSEDED;
        CHECK(ca_crl_reason_parse(bad[i].name, &r, &e) != 0);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, bad[i].msg);
        CHECK_INT_EQ(r, CA_CRL_SUPERSEDED);
    }
    CHECK_STR_EQ(ca_crl_reason_name(CA_CRL_CERTIFICATE_HOLD), "certificateHold");
    CHECK(ca_crl_reason_name(7) == NULL);
    CHECK(ca_crl_reason_name(11) == NULL);
    CHECK(ca_crl_reason_name(-1) == NULL);
out:
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "p256_empty", t_p256_empty }, { "p256_one", t_p256_one },
        { "p256_many", t_p256_many },   { "p384_empty", t_p384_empty },
        { "p384_one", t_p384_one },     { "p384_many", t_p384_many },
        { "rsa_empty", t_rsa_empty },   { "rsa_one", t_rsa_one },
        { "rsa_many", t_rsa_many },     { "aki_without_ski", t_aki_without_ski },
        { "bounds", t_bounds },         { "info_serials_pem", t_info_serials_pem },
        { "refusals", t_refusals },     { "reasons", t_reasons },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
