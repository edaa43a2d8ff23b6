/*
 * The issuing engine against real OpenSSL, openssl verify and GnuTLS certtool. The test PKI (CA
 * keys and certificates, device keys, good and bad CSRs) is made by
 * tests/data/csr/make-test-pki.sh in a temporary directory; ca_issuer_new gets plain EVP_PKEYs,
 * so nothing here depends on ca/key.c.
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ca/issue.h"
#include "ca/profile.h"
#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"
#include "tests/harness/tt.h"

static const char *pki_dir;
static struct ca_profile *device_profile;

static const char *src_dir(void)
{
    const char *s = getenv("JITRCA_SOURCE_DIR");
    return s ? s : ".";
}

static int pki(void)
{
    static int state; /* 0 not made, 1 ok, -1 failed */
    struct err e = ERR_INIT;
    char path[600];
    if (state == 0) {
        pki_dir = tt_tmpdir();
        state = tt_sh("sh '%s/tests/data/csr/make-test-pki.sh' '%s' >/dev/null 2>&1", src_dir(),
                      pki_dir) == 0
                    ? 1
                    : -1;
        snprintf(path, sizeof(path), "%s/policies/profiles/device.json", src_dir());
        if (state == 1 && (device_profile = ca_profile_load_file(path, &e)) == NULL) {
            fprintf(stderr, "  %s\n", e.msg);
            state = -1;
        }
        if (state != 1) {
            fprintf(stderr, "  cannot build the test PKI (JITRCA_SOURCE_DIR=%s)\n", src_dir());
        }
    }
    return state == 1 ? 0 : -1;
}

static int slurp(const char *name, struct buf *out)
{
    char path[600];
    struct err e = ERR_INIT;
    snprintf(path, sizeof(path), "%s/%s", pki_dir, name);
    buf_reset(out);
    if (file_read_all(path, 1 << 20, out, &e) != 0) {
        fprintf(stderr, "  %s\n", e.msg);
        return -1;
    }
    return 0;
}

static X509 *load_cert(const char *name)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s.pem", pki_dir, name);
    FILE *f = fopen(path, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f) {
        fclose(f);
    }
    return x;
}

static EVP_PKEY *load_key(const char *name)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s.key", pki_dir, name);
    FILE *f = fopen(path, "r");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f) {
        fclose(f);
    }
    return k;
}

static X509_REQ *load_req(const char *name)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s.csr", pki_dir, name);
    FILE *f = fopen(path, "r");
    X509_REQ *r = f ? PEM_read_X509_REQ(f, NULL, NULL, NULL) : NULL;
    if (f) {
        fclose(f);
    }
    return r;
}

struct ctx {
    const char *ca;
    X509 *cert;
    EVP_PKEY *key;
    struct ca_issuer *is;
    struct ca_signer *s;
};

static int ctx_open(struct ctx *c, const char *ca, const char *keyname, bool hsm)
{
    struct err e = ERR_INIT;
    memset(c, 0, sizeof(*c));
    c->ca = ca;
    c->cert = load_cert(ca);
    c->key = load_key(keyname);
    if (c->cert == NULL || c->key == NULL ||
        (c->is = ca_issuer_new(c->cert, c->key, hsm, &e)) == NULL) {
        fprintf(stderr, "  cannot open CA %s: %s\n", ca, e.msg);
        return -1;
    }
    c->s = ca_signer_new();
    return 0;
}

static void ctx_close(struct ctx *c)
{
    ca_signer_free(c->s);
    ca_issuer_free(c->is);
    X509_free(c->cert);
    EVP_PKEY_free(c->key);
}

static struct ca_profile *inline_profile(const char *name, const char *json)
{
    struct err e = ERR_INIT;
    struct ca_profile *p = ca_profile_load_json(name, name, json, strlen(json), &e);
    if (p == NULL) {
        fprintf(stderr, "  inline profile %s: %s\n", name, e.msg);
    }
    return p;
}

/* prepare + serial + sign; pr is released. */
static int issue(struct ctx *c, const struct ca_profile *p, const struct buf *csr, time_t now,
                 struct ca_issued *out, struct ca_prepared *pr_out, struct err *e)
{
    struct ca_prepared pr;
    uint8_t sn[CA_SERIAL_MAX];
    size_t sn_len = 0;
    int rc = -1;
    memset(out, 0, sizeof(*out));
    if (ca_prepare(c->s, c->is, p, (const uint8_t *)csr->data, csr->len, now, &pr, e) != 0) {
        return -1;
    }
    if (ca_serial_draw(c->s, sn, &sn_len, e) == 0 &&
        ca_sign(c->s, c->is, &pr, sn, sn_len, out, e) == 0) {
        rc = 0;
    }
    if (pr_out) {
        *pr_out = pr;
        pr_out->_int = NULL;
    }
    ca_prepared_release(&pr);
    return rc;
}

static size_t tlv_hdr(const uint8_t *p)
{
    return p[1] < 0x80 ? 2 : 2 + (size_t)(p[1] & 0x7f);
}

static size_t tlv_total(const uint8_t *p)
{
    size_t len = p[1] & 0x7f;
    if (p[1] & 0x80) {
        len = 0;
        for (size_t i = 0; i < (size_t)(p[1] & 0x7f); i++) {
            len = (len << 8) | p[2 + i];
        }
    }
    return tlv_hdr(p) + len;
}

struct expect {
    unsigned ku;
    uint32_t xku;
    int san_count;       /* 0: no SAN extension */
    const char *subject; /* X509_NAME_oneline of the certificate subject, or NULL */
    time_t not_before, not_after;
};

/* Everything a certificate must be; runs openssl verify and certtool. */
static int check_cert(struct ctx *c, const struct ca_issued *ci, X509_REQ *req,
                      const struct expect *x)
{
    int rc = 0;
    const unsigned char *q = ci->der;
    X509 *cert = d2i_X509(NULL, &q, (long)ci->der_len);
    unsigned char *re = NULL;
    struct buf pem = BUF_INIT;
    uint8_t md[32], ski[20];
    unsigned mdlen = 0;
    char fp[65], name[512], path[600];
    static const int nids[] = { NID_basic_constraints,
                                NID_key_usage,
                                NID_ext_key_usage,
                                NID_subject_key_identifier,
                                NID_authority_key_identifier,
                                NID_subject_alt_name };
    static const int crit[] = { 1, 1, 0, 0, 0, 0 };
    const ASN1_INTEGER *sn = NULL;
    struct buf snhex = BUF_INIT;
    int same_sn = 0;
    const ASN1_BIT_STRING *pub = NULL;
    FILE *f = NULL;
    CHECK(cert != NULL);
    CHECK(q == ci->der + ci->der_len);
    CHECK_INT_EQ(i2d_X509(cert, &re), (long long)ci->der_len);
    CHECK(memcmp(re, ci->der, ci->der_len) == 0);
    CHECK_INT_EQ(X509_get_version(cert), X509_VERSION_3);
    /* the serial: positive, <= 20 octets, as reported */
    sn = X509_get0_serialNumber(cert);
    CHECK_INT_EQ(ASN1_STRING_type(sn), V_ASN1_INTEGER);
    CHECK(ASN1_STRING_length(sn) >= 1 && ASN1_STRING_length(sn) <= 20);
    buf_addhex(&snhex, ASN1_STRING_get0_data(sn), (size_t)ASN1_STRING_length(sn));
    same_sn = strcmp(snhex.data, ci->serial_hex) == 0 ||
              (ci->serial_hex[0] == '0' && strcmp(snhex.data, ci->serial_hex + 2) == 0);
    CHECK(same_sn);
    CHECK(EVP_Digest(ci->der, ci->der_len, md, &mdlen, EVP_sha256(), NULL) == 1);
    hex_encode(md, 32, fp);
    CHECK_STR_EQ(ci->fingerprint, fp);
    /* key, issuer, signature */
    CHECK(EVP_PKEY_eq(X509_get0_pubkey(cert), X509_REQ_get0_pubkey(req)) == 1);
    CHECK(X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(c->cert)) == 0);
    CHECK(X509_verify(cert, c->key) == 1);
    CHECK_INT_EQ(X509_get_signature_nid(cert),
                 EVP_PKEY_is_a(c->key, "RSA")       ? NID_sha256WithRSAEncryption
                 : EVP_PKEY_get_bits(c->key) == 384 ? NID_ecdsa_with_SHA384
                                                    : NID_ecdsa_with_SHA256);
    /* exactly the profile's extensions, in order */
    CHECK_INT_EQ(X509_get_ext_count(cert), x->san_count ? 6 : 5);
    for (int i = 0; i < X509_get_ext_count(cert); i++) {
        X509_EXTENSION *ext = X509_get_ext(cert, i);
        CHECK_INT_EQ(OBJ_obj2nid(X509_EXTENSION_get_object(ext)), nids[i]);
        CHECK_INT_EQ(X509_EXTENSION_get_critical(ext), crit[i]);
    }
    CHECK(X509_check_purpose(cert, -1, 0) == 1);
    CHECK((X509_get_extension_flags(cert) & EXFLAG_BCONS) != 0);
    CHECK((X509_get_extension_flags(cert) & EXFLAG_CA) == 0);
    CHECK_INT_EQ(X509_get_key_usage(cert), x->ku);
    CHECK_INT_EQ(X509_get_extended_key_usage(cert), x->xku);
    pub = X509_get0_pubkey_bitstr(cert);
    CHECK(EVP_Digest(ASN1_STRING_get0_data(pub), (size_t)ASN1_STRING_length(pub), ski, &mdlen,
                     EVP_sha1(), NULL) == 1);
    CHECK_INT_EQ(ASN1_STRING_length(X509_get0_subject_key_id(cert)), 20);
    CHECK(memcmp(ASN1_STRING_get0_data(X509_get0_subject_key_id(cert)), ski, 20) == 0);
    CHECK(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(cert),
                                X509_get0_subject_key_id(c->cert)) == 0);
    if (x->san_count) {
        GENERAL_NAMES *g = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
        int n = sk_GENERAL_NAME_num(g);
        GENERAL_NAMES_free(g);
        CHECK_INT_EQ(n, x->san_count);
    }
    if (x->subject) {
        X509_NAME_oneline(X509_get_subject_name(cert), name, sizeof(name));
        CHECK_STR_EQ(name, x->subject);
    }
    if (x->not_after) {
        CHECK(ASN1_TIME_cmp_time_t(X509_get0_notBefore(cert), x->not_before) == 0);
        CHECK(ASN1_TIME_cmp_time_t(X509_get0_notAfter(cert), x->not_after) == 0);
    }
    /* the outside verifiers */
    ca_der_to_pem(&pem, ci->der, ci->der_len);
    snprintf(path, sizeof(path), "%s/out.pem", pki_dir);
    f = fopen(path, "w");
    CHECK(f != NULL);
    fwrite(pem.data, 1, pem.len, f);
    fclose(f);
    f = NULL;
    CHECK_INT_EQ(tt_sh("openssl verify -purpose sslclient -CAfile '%s/%s.pem' '%s' >/dev/null",
                       pki_dir, c->ca, path),
                 0);
    CHECK_INT_EQ(tt_sh("certtool --verify --verify-purpose=1.3.6.1.5.5.7.3.2 "
                       "--load-ca-certificate '%s/%s.pem' --infile '%s' >/dev/null 2>&1",
                       pki_dir, c->ca, path),
                 0);
out:
    if (f) {
        fclose(f);
    }
    buf_release(&snhex);
    buf_release(&pem);
    OPENSSL_free(re);
    X509_free(cert);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */

static int test_both_paths_all_keys(void)
{
    static const char *const cas[] = { "ca-p256", "ca-p384", "ca-rsa" };
    static const struct {
        const char *csr;
        bool fast;
    } csrs[] = { { "p256.der", true },         { "p256.csr", true },     { "p256-new.csr", true },
                 { "p384.csr", false },        { "rsa2048.der", false }, { "p256c.csr", false },
                 { "p256-sha384.csr", false }, { "ca-false.csr", false } };
    int rc = 0;
    struct ctx c = { 0 };
    struct buf csr = BUF_INIT;
    struct ca_issued ci = { 0 };
    struct ca_prepared pr;
    X509_REQ *req = NULL;
    struct err e = ERR_INIT;
    if (pki() != 0) {
        return 1;
    }
    for (size_t i = 0; i < ARRAY_LEN(cas); i++) {
        char key[32];
        snprintf(key, sizeof(key), "%s", cas[i]);
        CHECK(ctx_open(&c, cas[i], key, false) == 0);
        for (size_t j = 0; j < ARRAY_LEN(csrs); j++) {
            char base[64];
            fprintf(stderr, "   %s <- %s\n", cas[i], csrs[j].csr);
            snprintf(base, sizeof(base), "%s", csrs[j].csr);
            *strrchr(base, '.') = '\0';
            if (strcmp(csrs[j].csr, "ca-false.csr") == 0) {
                /* a requested basicConstraints CA:FALSE is still an extension request */
                CHECK(slurp(csrs[j].csr, &csr) == 0);
                CHECK(issue(&c, device_profile, &csr, time(NULL), &ci, NULL, &e) != 0);
                CHECK_STR_CONTAINS(e.msg, "CSR requests the extension X509v3 Basic Constraints");
                err_clear(&e);
                continue;
            }
            CHECK(slurp(csrs[j].csr, &csr) == 0);
            CHECK((req = load_req(base)) != NULL);
            time_t now = time(NULL);
            CHECK_OK(issue(&c, device_profile, &csr, now, &ci, &pr, &e), &e);
            CHECK_INT_EQ(pr.fast_path, csrs[j].fast);
            CHECK_STR_EQ(pr.cn, "device-0001");
            CHECK_STR_EQ(pr.subject, "CN=device-0001,O=Acme");
            struct expect x = { KU_DIGITAL_SIGNATURE,     XKU_SSL_CLIENT, 0,
                                "/O=Acme/CN=device-0001", pr.not_before,  pr.not_after };
            CHECK(pr.not_before == now - 300 ||
                  ASN1_TIME_cmp_time_t(X509_get0_notBefore(c.cert), pr.not_before) == 0);
            CHECK(pr.not_after <= now + 3650 * 86400LL);
            CHECK(check_cert(&c, &ci, req, &x) == 0);
            if (strcmp(base, "p256c") != 0) {
                /* canonical SPKIs are copied byte for byte */
                const unsigned char *q = ci.der;
                X509 *cert = d2i_X509(NULL, &q, (long)ci.der_len);
                unsigned char *ks = NULL, *kr = NULL;
                int ls = cert ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &ks) : -1;
                int lr = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(req), &kr);
                int same = ls > 0 && ls == lr && memcmp(ks, kr, (size_t)ls) == 0;
                OPENSSL_free(ks);
                OPENSSL_free(kr);
                X509_free(cert);
                CHECK(same);
            } else {
                /* the compressed point is written uncompressed */
                const unsigned char *q = ci.der;
                X509 *cert = d2i_X509(NULL, &q, (long)ci.der_len);
                int plen = cert ? ASN1_STRING_length(X509_get0_pubkey_bitstr(cert)) : 0;
                X509_free(cert);
                CHECK_INT_EQ(plen, 65);
            }
            ca_issued_release(&ci);
            X509_REQ_free(req);
            req = NULL;
        }
        ctx_close(&c);
        memset(&c, 0, sizeof(c));
    }
out:
    X509_REQ_free(req);
    ca_issued_release(&ci);
    ctx_close(&c);
    buf_release(&csr);
    return rc;
}

/* The fast and the ordinary path give the same TBSCertificate for the same CSR, serial, time. */
static int test_fast_equals_slow(void)
{
    static const char *const cas[] = { "ca-p256", "ca-p384", "ca-rsa" };
    static const uint8_t sn[] = { 0x00, 0x9a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77 };
    int rc = 0;
    struct ctx c = { 0 };
    struct ca_signer *slow = ca_signer_new();
    struct buf csr = BUF_INIT;
    struct ca_prepared a = { 0 }, b = { 0 };
    struct ca_issued ca_ = { 0 }, cb = { 0 };
    struct err e = ERR_INIT;
    ca_signer_set_fast_path(slow, false);
    if (pki() != 0) {
        return 1;
    }
    CHECK(slurp("p256.csr", &csr) == 0);
    for (size_t i = 0; i < ARRAY_LEN(cas); i++) {
        CHECK(ctx_open(&c, cas[i], cas[i], false) == 0);
        time_t now = time(NULL);
        CHECK_OK(
            ca_prepare(c.s, c.is, device_profile, (const uint8_t *)csr.data, csr.len, now, &a, &e),
            &e);
        CHECK_OK(
            ca_prepare(slow, c.is, device_profile, (const uint8_t *)csr.data, csr.len, now, &b, &e),
            &e);
        CHECK(a.fast_path && !b.fast_path);
        CHECK_OK(ca_sign(c.s, c.is, &a, sn, sizeof(sn), &ca_, &e), &e);
        CHECK_OK(ca_sign(slow, c.is, &b, sn, sizeof(sn), &cb, &e), &e);
        CHECK_STR_EQ(ca_.serial_hex, "009a11223344556677");
        const uint8_t *ta = ca_.der + tlv_hdr(ca_.der), *tb = cb.der + tlv_hdr(cb.der);
        CHECK_INT_EQ(tlv_total(ta), tlv_total(tb));
        CHECK(memcmp(ta, tb, tlv_total(ta)) == 0);
        ca_prepared_release(&a);
        ca_prepared_release(&b);
        ca_issued_release(&ca_);
        ca_issued_release(&cb);
        ctx_close(&c);
        memset(&c, 0, sizeof(c));
    }
out:
    ca_prepared_release(&a);
    ca_prepared_release(&b);
    ca_issued_release(&ca_);
    ca_issued_release(&cb);
    ctx_close(&c);
    ca_signer_free(slow);
    buf_release(&csr);
    return rc;
}

/* A profile's CRL distribution point and AIA URLs: the same DER on both paths, the values as
 * written, non-critical; a profile without them writes neither. */
static int test_url_extensions(void)
{
    static const uint8_t sn[] = { 0x11, 0x22, 0x33 };
    int rc = 0;
    struct ctx c = { 0 };
    struct ca_signer *slow = ca_signer_new();
    struct buf csr = BUF_INIT;
    struct ca_prepared a = { 0 }, b = { 0 };
    struct ca_issued ia = { 0 }, ib = { 0 };
    struct err e = ERR_INIT;
    struct ca_profile *urls = NULL;
    X509 *x = NULL;
    CRL_DIST_POINTS *cdp = NULL;
    AUTHORITY_INFO_ACCESS *aia = NULL;
    const unsigned char *q;
    const uint8_t *ta, *tb;
    int crit = -1;
    time_t now = time(NULL);
    ca_signer_set_fast_path(slow, false);
    if (pki() != 0) {
        return 1;
    }
    urls = inline_profile(
        "urls", "{\"key_types\":[\"ec-p256\"],\"validity_days\":30,"
                "\"subject\":{\"cn_pattern\":\".*\",\"allowed\":[\"CN\",\"O\"]},"
                "\"extended_key_usage\":[\"clientAuth\"],"
                "\"crl_distribution_points\":[\"http://pki.example.com/devices.crl\","
                "\"http://pki2.example.com:8080/c?ca=devices\"],"
                "\"authority_info_access\":{\"ca_issuers\":[\"http://pki.example.com/ca.der\"],"
                "\"ocsp\":[\"http://ocsp.example.com:8081/\"]}}");
    CHECK(urls != NULL);
    CHECK(slurp("p256.csr", &csr) == 0);
    CHECK(ctx_open(&c, "ca-p256", "ca-p256", false) == 0);
    CHECK_OK(ca_prepare(c.s, c.is, urls, (const uint8_t *)csr.data, csr.len, now, &a, &e), &e);
    CHECK_OK(ca_prepare(slow, c.is, urls, (const uint8_t *)csr.data, csr.len, now, &b, &e), &e);
    CHECK(a.fast_path && !b.fast_path);
    CHECK_OK(ca_sign(c.s, c.is, &a, sn, sizeof(sn), &ia, &e), &e);
    CHECK_OK(ca_sign(slow, c.is, &b, sn, sizeof(sn), &ib, &e), &e);
    ta = ia.der + tlv_hdr(ia.der);
    tb = ib.der + tlv_hdr(ib.der);
    CHECK_INT_EQ(tlv_total(ta), tlv_total(tb));
    CHECK(memcmp(ta, tb, tlv_total(ta)) == 0);
    q = ia.der;
    CHECK((x = d2i_X509(NULL, &q, (long)ia.der_len)) != NULL);
    CHECK(X509_verify(x, X509_get0_pubkey(c.cert)) == 1);
    CHECK((cdp = X509_get_ext_d2i(x, NID_crl_distribution_points, &crit, NULL)) != NULL);
    CHECK_INT_EQ(crit, 0);
    CHECK_INT_EQ(sk_DIST_POINT_num(cdp), 1);
    {
        GENERAL_NAMES *full = sk_DIST_POINT_value(cdp, 0)->distpoint->name.fullname;
        CHECK_INT_EQ(sk_GENERAL_NAME_num(full), 2);
        int type = -1;
        ASN1_IA5STRING *u = GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(full, 1), &type);
        CHECK_INT_EQ(type, GEN_URI);
        CHECK_STR_EQ((const char *)ASN1_STRING_get0_data(u),
                     "http://pki2.example.com:8080/c?ca=devices");
    }
    CHECK((aia = X509_get_ext_d2i(x, NID_info_access, &crit, NULL)) != NULL);
    CHECK_INT_EQ(crit, 0);
    CHECK_INT_EQ(sk_ACCESS_DESCRIPTION_num(aia), 2);
    CHECK_INT_EQ(OBJ_obj2nid(sk_ACCESS_DESCRIPTION_value(aia, 0)->method), NID_ad_ca_issuers);
    CHECK_INT_EQ(OBJ_obj2nid(sk_ACCESS_DESCRIPTION_value(aia, 1)->method), NID_ad_OCSP);
    {
        int type = -1;
        ASN1_IA5STRING *u =
            GENERAL_NAME_get0_value(sk_ACCESS_DESCRIPTION_value(aia, 1)->location, &type);
        CHECK_INT_EQ(type, GEN_URI);
        CHECK_STR_EQ((const char *)ASN1_STRING_get0_data(u), "http://ocsp.example.com:8081/");
    }
    /* the device profile writes neither */
    X509_free(x);
    x = NULL;
    ca_issued_release(&ia);
    ca_prepared_release(&a);
    CHECK_OK(ca_prepare(c.s, c.is, device_profile, (const uint8_t *)csr.data, csr.len, now, &a, &e),
             &e);
    CHECK_OK(ca_sign(c.s, c.is, &a, sn, sizeof(sn), &ia, &e), &e);
    q = ia.der;
    CHECK((x = d2i_X509(NULL, &q, (long)ia.der_len)) != NULL);
    CHECK_INT_EQ(X509_get_ext_by_NID(x, NID_crl_distribution_points, -1), -1);
    CHECK_INT_EQ(X509_get_ext_by_NID(x, NID_info_access, -1), -1);
out:
    CRL_DIST_POINTS_free(cdp);
    AUTHORITY_INFO_ACCESS_free(aia);
    X509_free(x);
    ca_prepared_release(&a);
    ca_prepared_release(&b);
    ca_issued_release(&ia);
    ca_issued_release(&ib);
    ctx_close(&c);
    ca_signer_free(slow);
    ca_profile_free(urls);
    buf_release(&csr);
    return rc;
}

static int test_validity(void)
{
    int rc = 0;
    struct ctx c = { 0 };
    struct buf csr = BUF_INIT;
    struct ca_prepared pr = { 0 };
    struct err e = ERR_INIT;
    struct ca_profile *day = NULL, *strict = NULL;
    time_t ca_nb = 0, ca_na = 0, now = 0;
    struct tm tm;
    if (pki() != 0) {
        return 1;
    }
    day = inline_profile("day",
                         "{\"key_types\":[\"ec-p256\"],\"validity_days\":1,"
                         "\"backdate_seconds\":60,\"subject\":{\"cn_pattern\":\".*\","
                         "\"allowed\":[\"CN\",\"O\"]},\"extended_key_usage\":[\"clientAuth\"]}");
    CHECK(day != NULL);
    strict = inline_profile("strict",
                            "{\"key_types\":[\"ec-p256\"],\"validity_days\":1,"
                            "\"beyond_ca\":\"refuse\",\"subject\":{\"cn_pattern\":\".*\","
                            "\"allowed\":[\"CN\",\"O\"]},\"extended_key_usage\":[\"clientAuth\"]}");
    CHECK(strict != NULL);
    CHECK(ctx_open(&c, "ca-short", "ca-p256", false) == 0);
    CHECK(ASN1_TIME_to_tm(X509_get0_notBefore(c.cert), &tm) == 1);
    ca_nb = timegm(&tm);
    CHECK(ASN1_TIME_to_tm(X509_get0_notAfter(c.cert), &tm) == 1);
    ca_na = timegm(&tm);
    CHECK(slurp("p256.der", &csr) == 0);
    /* capped at the CA's notAfter */
    now = ca_nb + 3600;
    CHECK_OK(
        ca_prepare(c.s, c.is, device_profile, (const uint8_t *)csr.data, csr.len, now, &pr, &e),
        &e);
    CHECK_INT_EQ(pr.not_before, now - 300);
    CHECK_INT_EQ(pr.not_after, ca_na);
    CHECK(pr.validity_clamped);
    ca_prepared_release(&pr);
    /* the profile's validity and backdate; notBefore not before the CA's */
    CHECK_OK(ca_prepare(c.s, c.is, day, (const uint8_t *)csr.data, csr.len, ca_nb + 10, &pr, &e),
             &e);
    CHECK_INT_EQ(pr.not_before, ca_nb);
    CHECK_INT_EQ(pr.not_after, ca_nb + 10 + 86400);
    CHECK(!pr.validity_clamped);
    ca_prepared_release(&pr);
    /* "beyond_ca": "refuse": nothing the CA would cut short, until a day before its end */
    CHECK_OK(
        ca_prepare(c.s, c.is, strict, (const uint8_t *)csr.data, csr.len, ca_na - 86400, &pr, &e),
        &e);
    CHECK_INT_EQ(pr.not_after, ca_na);
    CHECK(!pr.validity_clamped);
    ca_prepared_release(&pr);
    CHECK(ca_prepare(c.s, c.is, strict, (const uint8_t *)csr.data, csr.len, ca_na - 86399, &pr,
                     &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    CHECK_STR_CONTAINS(e.msg, "profile 'strict' issues for 1 days but the CA certificate expires");
    CHECK_STR_CONTAINS(e.msg, "\"beyond_ca\": \"refuse\"");
    CHECK(pr._int == NULL);
    err_clear(&e);
    /* a CA outside its validity issues nothing */
    CHECK(ca_prepare(c.s, c.is, day, (const uint8_t *)csr.data, csr.len, ca_na + 1, &pr, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    CHECK_STR_CONTAINS(e.msg, "the CA certificate is not valid now");
    CHECK(pr._int == NULL);
    err_clear(&e);
    CHECK(ca_prepare(c.s, c.is, day, (const uint8_t *)csr.data, csr.len, ca_nb - 1, &pr, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "the CA certificate is not valid now");
out:
    ca_prepared_release(&pr);
    ca_profile_free(day);
    ca_profile_free(strict);
    ctx_close(&c);
    buf_release(&csr);
    return rc;
}

/* notAfter past 2049 is a GeneralizedTime, the same on both paths, accepted by the verifiers. */
static int test_generalized_time(void)
{
    static const uint8_t sn[] = { 0x42 };
    int rc = 0;
    struct ctx c = { 0 };
    struct ca_signer *slow = ca_signer_new();
    struct buf csr = BUF_INIT;
    struct ca_prepared a = { 0 }, b = { 0 };
    struct ca_issued ca_ = { 0 }, cb = { 0 };
    struct ca_profile *century = NULL;
    X509_REQ *req = NULL;
    X509 *x = NULL;
    struct err e = ERR_INIT;
    struct expect xp = { KU_DIGITAL_SIGNATURE, XKU_SSL_CLIENT, 0, "/O=Acme/CN=device-0001", 0, 0 };
    time_t now = time(NULL);
    const unsigned char *q;
    const uint8_t *ta, *tb;
    ca_signer_set_fast_path(slow, false);
    if (pki() != 0) {
        return 1;
    }
    century = inline_profile("century", "{\"key_types\":[\"ec-p256\"],\"validity_days\":36500,"
                                        "\"subject\":{\"cn_pattern\":\".*\",\"allowed\":[\"O\"]},"
                                        "\"extended_key_usage\":[\"clientAuth\"]}");
    CHECK(century != NULL);
    CHECK(ctx_open(&c, "ca-long", "ca-p256", false) == 0);
    CHECK(slurp("p256.der", &csr) == 0);
    CHECK((req = load_req("p256")) != NULL);
    CHECK_OK(ca_prepare(c.s, c.is, century, (const uint8_t *)csr.data, csr.len, now, &a, &e), &e);
    CHECK_OK(ca_prepare(slow, c.is, century, (const uint8_t *)csr.data, csr.len, now, &b, &e), &e);
    CHECK(a.not_after > 2524608000); /* 2050-01-01 */
    CHECK_OK(ca_sign(c.s, c.is, &a, sn, sizeof(sn), &ca_, &e), &e);
    CHECK_OK(ca_sign(slow, c.is, &b, sn, sizeof(sn), &cb, &e), &e);
    ta = ca_.der + tlv_hdr(ca_.der);
    tb = cb.der + tlv_hdr(cb.der);
    CHECK_INT_EQ(tlv_total(ta), tlv_total(tb));
    CHECK(memcmp(ta, tb, tlv_total(ta)) == 0);
    q = ca_.der;
    CHECK((x = d2i_X509(NULL, &q, (long)ca_.der_len)) != NULL);
    CHECK_INT_EQ(ASN1_STRING_type(X509_get0_notBefore(x)), V_ASN1_UTCTIME);
    CHECK_INT_EQ(ASN1_STRING_type(X509_get0_notAfter(x)), V_ASN1_GENERALIZEDTIME);
    CHECK(ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), a.not_after) == 0);
    CHECK(check_cert(&c, &ca_, req, &xp) == 0);
out:
    X509_free(x);
    X509_REQ_free(req);
    ca_prepared_release(&a);
    ca_prepared_release(&b);
    ca_issued_release(&ca_);
    ca_issued_release(&cb);
    ca_profile_free(century);
    ca_signer_free(slow);
    ctx_close(&c);
    buf_release(&csr);
    return rc;
}

struct bad {
    const char *file;
    const char *profile; /* NULL: device */
    enum err_code code;
    const char *msg;
};

static const char san_json[] =
    "{\"key_types\":[\"ec-p256\",\"rsa-2048\"],\"validity_days\":30,"
    "\"subject\":{\"cn_pattern\":\"device-[0-9]+\",\"allowed\":[\"CN\",\"O\"]},"
    "\"san\":{\"dns\":\"[a-z0-9-]+\\\\.example\\\\.com\",\"ip\":\"10\\\\..*\",\"max\":2},"
    "\"extended_key_usage\":[\"clientAuth\",\"serverAuth\"],\"jitr\":false}";

static int test_profile_refusals(void)
{
    static const struct bad bads[] = {
        { "rsa1024.csr", NULL, ERRC_DENIED,
          "CSR key rsa-1024 is not allowed by profile 'device' (allowed: ec-p256, ec-p384, "
          "rsa-2048, rsa-3072, rsa-4096)" },
        { "p192.csr", NULL, ERRC_DENIED, "CSR key ec-p192 is not allowed by profile 'device'" },
        { "p521.csr", NULL, ERRC_DENIED, "CSR key ec-p521 is not allowed by profile 'device'" },
        { "ed25519.csr", NULL, ERRC_DENIED, "CSR key ed25519 is not allowed by profile 'device'" },
        { "rsa-e3.csr", NULL, ERRC_DENIED,
          "CSR key rsa-2048 has an unacceptable public exponent (must be odd and at least 65537)" },
        { "p384.csr", "san", ERRC_DENIED,
          "CSR key ec-p384 is not allowed by profile 'san' (allowed: ec-p256, rsa-2048)" },
        { "p256x.csr", NULL, ERRC_DENIED, "CSR key uses explicit EC parameters" },
        { "p256.der", "rsa", ERRC_DENIED,
          "CSR key ec-p256 is not allowed by profile 'rsa' (allowed: rsa-2048)" },
        { "sha1.csr", NULL, ERRC_DENIED,
          "CSR signature algorithm sha1WithRSAEncryption is not accepted" },
        { "cn-space.csr", NULL, ERRC_DENIED,
          "CN 'x y' does not match the pattern '[A-Za-z0-9][A-Za-z0-9_:-]{0,63}' of profile "
          "'device'" },
        { "email.csr", NULL, ERRC_DENIED,
          "subject attribute emailAddress is forbidden by profile 'device'" },
        { "title.csr", NULL, ERRC_DENIED, "subject attribute 2.5.4.12 is not allowed by profile" },
        { "utf8.csr", "san", ERRC_DENIED, "subject attribute C is not allowed by profile 'san'" },
        { "nocn.csr", NULL, ERRC_DENIED, "subject attribute CN is required by profile 'device'" },
        { "multi.csr", NULL, ERRC_DENIED, "multi-valued RDN" },
        { "country.csr", NULL, ERRC_DENIED, "subject attribute C must be a two-letter country" },
        { "bmp.csr", NULL, ERRC_INVALID, "subject attribute O uses an unsupported string type" },
        { "ca-true.csr", NULL, ERRC_DENIED,
          "CSR requests basicConstraints CA:TRUE; profile 'device' issues end-entity" },
        { "ku.csr", NULL, ERRC_DENIED,
          "CSR requests the extension X509v3 Key Usage; only subjectAltName may be requested" },
        { "san-dns.csr", NULL, ERRC_DENIED,
          "CSR requests subjectAltName but profile 'device' allows none" },
        { "san-bad.csr", "san", ERRC_DENIED,
          "subjectAltName dns 'evil.example.org' does not match the pattern" },
        { "san-email.csr", "san", ERRC_DENIED,
          "CSR requests a subjectAltName of type email; profile 'san' allows dns, ip" },
        { "san-dir.csr", "san", ERRC_DENIED, "subjectAltName of type directoryName" },
        { "chpw.csr", NULL, ERRC_DENIED, "CSR attribute challengePassword is not accepted" },
    };
    int rc = 0;
    struct ctx c = { 0 };
    struct ca_signer *slow = ca_signer_new();
    struct buf csr = BUF_INIT;
    struct ca_prepared pr = { 0 };
    struct ca_profile *san = NULL, *rsa = NULL;
    struct err e = ERR_INIT;
    ca_signer_set_fast_path(slow, false);
    if (pki() != 0) {
        return 1;
    }
    CHECK((san = inline_profile("san", san_json)) != NULL);
    CHECK((rsa = inline_profile("rsa", "{\"key_types\":[\"rsa-2048\"],\"validity_days\":1,"
                                       "\"subject\":{\"cn_pattern\":\".*\",\"allowed\":[\"O\"]},"
                                       "\"extended_key_usage\":[\"clientAuth\"]}")) != NULL);
    CHECK(ctx_open(&c, "ca-p256", "ca-p256", false) == 0);
    for (size_t i = 0; i < ARRAY_LEN(bads); i++) {
        const struct ca_profile *p = bads[i].profile == NULL               ? device_profile
                                     : strcmp(bads[i].profile, "rsa") == 0 ? rsa
                                                                           : san;
        CHECK(slurp(bads[i].file, &csr) == 0);
        for (int k = 0; k < 2; k++) {
            struct ca_signer *s = k == 0 ? c.s : slow;
            err_clear(&e);
            fprintf(stderr, "   %s\n", bads[i].file);
            CHECK(ca_prepare(s, c.is, p, (const uint8_t *)csr.data, csr.len, time(NULL), &pr, &e) !=
                  0);
            CHECK(pr._int == NULL);
            CHECK_INT_EQ(e.code, bads[i].code);
            CHECK_STR_CONTAINS(e.msg, bads[i].msg);
        }
    }
out:
    ca_prepared_release(&pr);
    ca_profile_free(san);
    ca_profile_free(rsa);
    ca_signer_free(slow);
    ctx_close(&c);
    buf_release(&csr);
    return rc;
}

static int test_san_and_subject(void)
{
    int rc = 0;
    struct ctx c = { 0 };
    struct buf csr = BUF_INIT;
    struct ca_issued ci = { 0 };
    struct ca_prepared pr = { 0 };
    struct ca_profile *san = NULL;
    X509_REQ *req = NULL;
    struct err e = ERR_INIT;
    struct expect x = {
        KU_DIGITAL_SIGNATURE, XKU_SSL_CLIENT | XKU_SSL_SERVER, 2, "/O=Acme/CN=device-0001", 0, 0
    };
    struct expect y = { KU_DIGITAL_SIGNATURE, XKU_SSL_CLIENT, 0, NULL, 0, 0 };
    if (pki() != 0) {
        return 1;
    }
    CHECK((san = inline_profile("san", san_json)) != NULL);
    CHECK(ctx_open(&c, "ca-rsa", "ca-rsa", false) == 0);
    /* DNS SANs copied; serverAuth added; no keyEncipherment for an EC key */
    CHECK(slurp("san-dns.csr", &csr) == 0);
    CHECK((req = load_req("san-dns")) != NULL);
    CHECK_OK(issue(&c, san, &csr, time(NULL), &ci, &pr, &e), &e);
    CHECK(check_cert(&c, &ci, req, &x) == 0);
    ca_issued_release(&ci);
    X509_REQ_free(req);
    /* an RSA key under serverAuth also gets keyEncipherment */
    CHECK(slurp("san-rsa.csr", &csr) == 0);
    CHECK((req = load_req("san-rsa")) != NULL);
    CHECK_OK(issue(&c, san, &csr, time(NULL), &ci, &pr, &e), &e);
    x.ku = KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT;
    x.san_count = 1;
    CHECK(check_cert(&c, &ci, req, &x) == 0);
    ca_issued_release(&ci);
    X509_REQ_free(req);
    CHECK(slurp("san-ip.csr", &csr) == 0);
    CHECK((req = load_req("san-ip")) != NULL);
    CHECK_OK(issue(&c, san, &csr, time(NULL), &ci, &pr, &e), &e);
    x.ku = KU_DIGITAL_SIGNATURE;
    CHECK(check_cert(&c, &ci, req, &x) == 0);
    ca_issued_release(&ci);
    X509_REQ_free(req);
    /* UTF-8 values, repeated OU, order kept; string types rewritten */
    CHECK(slurp("utf8.csr", &csr) == 0);
    CHECK((req = load_req("utf8")) != NULL);
    CHECK_OK(issue(&c, device_profile, &csr, time(NULL), &ci, &pr, &e), &e);
    CHECK_STR_EQ(pr.subject, "CN=device-0006,OU=Line 2,OU=Line 1,O=Gerätebau Süd,C=DE");
    CHECK(check_cert(&c, &ci, req, &y) == 0);
    {
        const unsigned char *q = ci.der;
        X509 *cert = d2i_X509(NULL, &q, (long)ci.der_len);
        X509_NAME *n = cert ? X509_get_subject_name(cert) : NULL;
        int types[5] = { -1, -1, -1, -1, -1 };
        for (int i = 0; n && i < X509_NAME_entry_count(n) && i < 5; i++) {
            types[i] = ASN1_STRING_type(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i)));
        }
        X509_free(cert);
        CHECK_INT_EQ(types[0], V_ASN1_PRINTABLESTRING); /* C */
        CHECK_INT_EQ(types[1], V_ASN1_UTF8STRING);
        CHECK_INT_EQ(types[4], V_ASN1_UTF8STRING); /* CN arrived as PrintableString */
    }
out:
    X509_REQ_free(req);
    ca_issued_release(&ci);
    ca_profile_free(san);
    ctx_close(&c);
    buf_release(&csr);
    return rc;
}

struct ent {
    int nid;
    int type; /* V_ASN1_UTF8STRING, ... */
    const char *val;
};

static void der_hdr(struct buf *b, uint8_t tag, size_t len)
{
    uint8_t h[4] = { tag, (uint8_t)len, 0, 0 };
    if (len < 128) {
        buf_add(b, h, 2);
        return;
    }
    if (len < 256) {
        h[1] = 0x81;
        h[2] = (uint8_t)len;
        buf_add(b, h, 3);
        return;
    }
    h[1] = 0x82;
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    buf_add(b, h, 4);
}

static void der_wrap(struct buf *b, uint8_t tag, const struct buf *content)
{
    der_hdr(b, tag, content->len);
    buf_add(b, content->data, content->len);
}

/* A CSR with exactly these subject entries, encoded by hand (OpenSSL refuses to encode invalid
 * UTF-8) and signed with k. */
static int make_csr(EVP_PKEY *k, const struct ent *ents, size_t n, struct buf *out)
{
    struct buf name = BUF_INIT, rdn = BUF_INIT, atv = BUF_INIT, cri = BUF_INIT, t = BUF_INIT;
    unsigned char *spki = NULL, *oid = NULL;
    uint8_t sig[128];
    size_t sig_len = sizeof(sig);
    int rc = -1, spki_len = i2d_PUBKEY(k, &spki);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    for (size_t i = 0; i < n; i++) {
        int ol = i2d_ASN1_OBJECT(OBJ_nid2obj(ents[i].nid), &oid);
        buf_reset(&atv);
        buf_add(&atv, oid, (size_t)ol);
        OPENSSL_free(oid);
        oid = NULL;
        der_hdr(&atv, (uint8_t)ents[i].type, strlen(ents[i].val));
        buf_addstr(&atv, ents[i].val);
        buf_reset(&rdn);
        der_wrap(&rdn, 0x30, &atv);
        der_wrap(&name, 0x31, &rdn);
    }
    buf_add(&t, "\x02\x01\x00", 3);
    der_wrap(&t, 0x30, &name);
    buf_add(&t, spki, (size_t)spki_len);
    buf_add(&t, "\xa0\x00", 2);
    der_wrap(&cri, 0x30, &t);
    if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k) != 1 ||
        EVP_DigestSign(md, sig, &sig_len, (const uint8_t *)cri.data, cri.len) != 1) {
        goto out;
    }
    buf_reset(&t);
    buf_add(&t, cri.data, cri.len);
    buf_add(&t, "\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02", 12);
    der_hdr(&t, 0x03, sig_len + 1);
    buf_addch(&t, 0);
    buf_add(&t, sig, sig_len);
    buf_reset(out);
    der_wrap(out, 0x30, &t);
    rc = 0;
out:
    EVP_MD_CTX_free(md);
    OPENSSL_free(spki);
    buf_release(&name);
    buf_release(&rdn);
    buf_release(&atv);
    buf_release(&cri);
    buf_release(&t);
    return rc;
}

/* ca_prepare_cn: the commonName is the one given, whatever the CSR asks (or lacks), the other
 * attributes stay, on both paths; the forced name is checked against the profile too. */
static int test_forced_cn(void)
{
    static const struct ent asks[] = { { NID_serialNumber, V_ASN1_PRINTABLESTRING, "SN 42" },
                                       { NID_commonName, V_ASN1_UTF8STRING, "other-device" } };
    static const struct ent none[] = { { NID_serialNumber, V_ASN1_PRINTABLESTRING, "SN 43" } };
    int rc = 0;
    struct ctx c = { 0 };
    struct ca_signer *slow = ca_signer_new();
    struct buf csr = BUF_INIT;
    struct ca_prepared pr = { 0 };
    struct err e = ERR_INIT;
    EVP_PKEY *k = NULL;
    ca_signer_set_fast_path(slow, false);
    if (pki() != 0) {
        return 1;
    }
    CHECK(ctx_open(&c, "ca-p256", "ca-p256", false) == 0);
    CHECK((k = load_key("dev-p256")) != NULL);
    for (int j = 0; j < 2; j++) {
        struct ca_signer *s = j ? slow : c.s;
        CHECK(make_csr(k, asks, ARRAY_LEN(asks), &csr) == 0);
        CHECK_OK(ca_prepare_cn(s, c.is, device_profile, (const uint8_t *)csr.data, csr.len,
                               time(NULL), "pump-0042", &pr, &e),
                 &e);
        CHECK_STR_EQ(pr.cn, "pump-0042");
        CHECK_STR_EQ(pr.subject, "CN=pump-0042,serialNumber=SN 42");
        ca_prepared_release(&pr);
        /* NULL: as the CSR asks */
        CHECK_OK(ca_prepare_cn(s, c.is, device_profile, (const uint8_t *)csr.data, csr.len,
                               time(NULL), NULL, &pr, &e),
                 &e);
        CHECK_STR_EQ(pr.cn, "other-device");
        ca_prepared_release(&pr);
        /* a CSR without a CN gets one */
        CHECK(make_csr(k, none, ARRAY_LEN(none), &csr) == 0);
        CHECK_OK(ca_prepare_cn(s, c.is, device_profile, (const uint8_t *)csr.data, csr.len,
                               time(NULL), "pump-0043", &pr, &e),
                 &e);
        CHECK_STR_EQ(pr.subject, "CN=pump-0043,serialNumber=SN 43");
        ca_prepared_release(&pr);
        /* the profile still decides */
        err_clear(&e);
        CHECK(ca_prepare_cn(s, c.is, device_profile, (const uint8_t *)csr.data, csr.len,
                            time(NULL), "bad name!", &pr, &e) != 0);
        CHECK_INT_EQ(e.code, ERRC_DENIED);
        CHECK_STR_CONTAINS(e.msg, "does not match the pattern");
    }
out:
    ca_prepared_release(&pr);
    EVP_PKEY_free(k);
    ctx_close(&c);
    ca_signer_free(slow);
    buf_release(&csr);
    return rc;
}

/* Name validation: string types, UTF-8, control characters, bounds (PERF-NOTES "Traps"). */
static int test_subject_strings(void)
{
    static const struct {
        struct ent e[3];
        size_t n;
        enum err_code code;
        const char *msg;
    } cases[] = {
        { { { NID_commonName, V_ASN1_UTF8STRING, "dev-\xc3\x28" } },
          1,
          ERRC_INVALID,
          "subject attribute CN is not valid UTF-8 or contains control characters" },
        { { { NID_commonName, V_ASN1_UTF8STRING, "dev-\xc0\xaf" } },
          1,
          ERRC_INVALID,
          "subject attribute CN is not valid UTF-8" },
        { { { NID_commonName, V_ASN1_UTF8STRING, "dev-\xed\xa0\x80" } },
          1,
          ERRC_INVALID,
          "subject attribute CN is not valid UTF-8" },
        { { { NID_commonName, V_ASN1_UTF8STRING, "dev-\xf4\x90\x80\x80" } },
          1,
          ERRC_INVALID,
          "subject attribute CN is not valid UTF-8" },
        { { { NID_commonName, V_ASN1_UTF8STRING, "dev\x01" } },
          1,
          ERRC_INVALID,
          "contains control characters" },
        { { { NID_organizationName, V_ASN1_UTF8STRING, "Acme\xc2\x85" },
            { NID_commonName, V_ASN1_UTF8STRING, "dev-1" } },
          2,
          ERRC_INVALID,
          "subject attribute O is not valid UTF-8 or contains control characters" },
        { { { NID_commonName, V_ASN1_PRINTABLESTRING, "dev@1" } },
          1,
          ERRC_INVALID,
          "subject attribute CN is a PrintableString with characters outside its set" },
        { { { NID_commonName, V_ASN1_IA5STRING, "dev-\xe9" } },
          1,
          ERRC_INVALID,
          "subject attribute CN is not valid ASCII" },
        { { { NID_commonName, V_ASN1_T61STRING, "dev-1" } },
          1,
          ERRC_INVALID,
          "subject attribute CN uses an unsupported string type" },
        { { { NID_commonName, V_ASN1_UTF8STRING, "" } },
          1,
          ERRC_DENIED,
          "subject attribute CN must have 1 to 64 characters" },
        { { { NID_commonName, V_ASN1_UTF8STRING,
              "d1234567890123456789012345678901234567890123456789012345678901234" } },
          1,
          ERRC_DENIED,
          "subject attribute CN must have 1 to 64 characters" },
        { { { NID_commonName, V_ASN1_UTF8STRING, "dev-1" },
            { NID_commonName, V_ASN1_UTF8STRING, "dev-2" } },
          2,
          ERRC_DENIED,
          "subject attribute CN appears more than once" },
        { { { NID_serialNumber, V_ASN1_UTF8STRING, "SN_1" },
            { NID_commonName, V_ASN1_UTF8STRING, "dev-1" } },
          2,
          ERRC_DENIED,
          "subject attribute serialNumber may only contain PrintableString characters" },
        { { { NID_commonName, V_ASN1_UTF8STRING, "dev-\xc3\xa9" } },
          1,
          ERRC_DENIED,
          "CN 'dev-\xc3\xa9' does not match the pattern" },
    };
    int rc = 0;
    struct ctx c = { 0 };
    struct ca_signer *slow = ca_signer_new();
    struct buf csr = BUF_INIT;
    struct ca_prepared pr = { 0 };
    struct ca_issued ci = { 0 };
    struct err e = ERR_INIT;
    EVP_PKEY *k = NULL;
    static const struct ent ok[] = { { NID_serialNumber, V_ASN1_PRINTABLESTRING, "SN 42" },
                                     { NID_commonName, V_ASN1_IA5STRING, "dev-9" } };
    ca_signer_set_fast_path(slow, false);
    if (pki() != 0) {
        return 1;
    }
    CHECK(ctx_open(&c, "ca-p256", "ca-p256", false) == 0);
    CHECK((k = load_key("dev-p256")) != NULL);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        if (make_csr(k, cases[i].e, cases[i].n, &csr) != 0) {
            TT_FAIL("cannot make CSR %zu", i);
        }
        for (int j = 0; j < 2; j++) {
            err_clear(&e);
            CHECK(ca_prepare(j ? slow : c.s, c.is, device_profile, (const uint8_t *)csr.data,
                             csr.len, time(NULL), &pr, &e) != 0);
            CHECK(pr._int == NULL);
            CHECK_INT_EQ(e.code, cases[i].code);
            CHECK_STR_CONTAINS(e.msg, cases[i].msg);
        }
    }
    /* accepted, and rewritten: CN IA5String -> UTF8String */
    CHECK(make_csr(k, ok, ARRAY_LEN(ok), &csr) == 0);
    CHECK_OK(issue(&c, device_profile, &csr, time(NULL), &ci, &pr, &e), &e);
    CHECK_STR_EQ(pr.subject, "CN=dev-9,serialNumber=SN 42");
    {
        const unsigned char *q = ci.der;
        X509 *x = d2i_X509(NULL, &q, (long)ci.der_len);
        X509_NAME *n = x ? X509_get_subject_name(x) : NULL;
        int t0 = n ? ASN1_STRING_type(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, 0))) : -1;
        int t1 = n ? ASN1_STRING_type(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, 1))) : -1;
        X509_free(x);
        CHECK_INT_EQ(t0, V_ASN1_PRINTABLESTRING);
        CHECK_INT_EQ(t1, V_ASN1_UTF8STRING);
    }
out:
    ca_issued_release(&ci);
    EVP_PKEY_free(k);
    ca_signer_free(slow);
    ctx_close(&c);
    buf_release(&csr);
    return rc;
}

static int expect_reject(struct ctx *c, struct ca_signer *s, const void *data, size_t len,
                         enum err_code code, const char *msg)
{
    int rc = 0;
    struct ca_prepared pr = { 0 };
    struct err e = ERR_INIT;
    CHECK(ca_prepare(s, c->is, device_profile, data, len, time(NULL), &pr, &e) != 0);
    CHECK(pr._int == NULL);
    CHECK_INT_EQ(e.code, code);
    CHECK_STR_CONTAINS(e.msg, msg);
out:
    ca_prepared_release(&pr);
    return rc;
}

static int test_malformed(void)
{
    int rc = 0;
    struct ctx c = { 0 };
    struct ca_signer *slow = ca_signer_new();
    struct buf der = BUF_INIT, pem = BUF_INIT, other = BUF_INIT, t = BUF_INIT;
    uint8_t *big = NULL;
    ca_signer_set_fast_path(slow, false);
    if (pki() != 0) {
        return 1;
    }
    CHECK(ctx_open(&c, "ca-p256", "ca-p256", false) == 0);
    CHECK(slurp("p256.der", &der) == 0);
    CHECK(slurp("p256.csr", &pem) == 0);
    CHECK(slurp("p256b.der", &other) == 0);
    for (int k = 0; k < 2; k++) {
        struct ca_signer *s = k == 0 ? c.s : slow;
        CHECK(expect_reject(&c, s, "", 0, ERRC_INVALID, "CSR is empty") == 0);
        CHECK(expect_reject(&c, s, "hello", 5, ERRC_INVALID, "CSR is not valid PEM or DER") == 0);
        big = xcalloc(1, CA_CSR_MAX + 1);
        big[0] = 0x30;
        CHECK(expect_reject(&c, s, big, CA_CSR_MAX + 1, ERRC_TOO_LARGE,
                            "CSR is 16385 bytes; the limit is 16384") == 0);
        xfree(big);
        big = NULL;
        /* PEM damage */
        buf_reset(&t);
        buf_add(&t, pem.data, pem.len - 30);
        CHECK(expect_reject(&c, s, t.data, t.len, ERRC_INVALID,
                            "CSR is not valid PEM: no '-----END CERTIFICATE REQUEST-----' line") ==
              0);
        buf_reset(&t);
        buf_add(&t, pem.data, pem.len);
        t.data[60] = '*';
        CHECK(expect_reject(&c, s, t.data, t.len, ERRC_INVALID,
                            "CSR is not valid PEM: the base64 body is malformed") == 0);
        buf_reset(&t);
        buf_add(&t, pem.data, pem.len);
        buf_addstr(&t, "junk\n");
        CHECK(expect_reject(&c, s, t.data, t.len, ERRC_INVALID, "data after the END line") == 0);
        buf_reset(&t);
        buf_addstr(&t, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
        CHECK(expect_reject(&c, s, t.data, t.len, ERRC_INVALID,
                            "expected BEGIN CERTIFICATE REQUEST") == 0);
        /* DER damage */
        buf_reset(&t);
        buf_add(&t, der.data, der.len);
        buf_addch(&t, 0);
        CHECK(expect_reject(&c, s, t.data, t.len, ERRC_INVALID, "CSR is not valid DER") == 0);
        /* non-minimal outer length: 30 81 LL -> 30 82 00 LL */
        CHECK((uint8_t)der.data[1] == 0x81);
        buf_reset(&t);
        buf_add(&t, "\x30\x82\x00", 3);
        buf_add(&t, der.data + 2, der.len - 2);
        CHECK(expect_reject(&c, s, t.data, t.len, ERRC_INVALID, "CSR is not valid DER") == 0);
        /* indefinite outer length */
        buf_reset(&t);
        buf_add(&t, "\x30\x80", 2);
        buf_add(&t, der.data + 3, der.len - 3);
        buf_add(&t, "\x00\x00", 2);
        CHECK(expect_reject(&c, s, t.data, t.len, ERRC_INVALID, "CSR is not valid DER") == 0);
        /* version 1: 02 01 00 -> 02 01 01 (the signature no longer matters) */
        buf_reset(&t);
        buf_add(&t, der.data, der.len);
        CHECK(memcmp(t.data + 6, "\x02\x01\x00", 3) == 0);
        t.data[8] = 1;
        CHECK(expect_reject(&c, s, t.data, t.len, ERRC_INVALID, "the version is not v1") == 0);
        /* the signature does not verify: last byte of s */
        buf_reset(&t);
        buf_add(&t, der.data, der.len);
        t.data[t.len - 1] ^= 0x01;
        CHECK(expect_reject(&c, s, t.data, t.len, ERRC_INVALID, "CSR signature does not verify") ==
              0);
        /* the signature of another CSR */
        buf_reset(&t);
        {
            size_t cri_end = 3 + tlv_total((const uint8_t *)der.data + 3);
            size_t ocri_end = 3 + tlv_total((const uint8_t *)other.data + 3);
            buf_add(&t, der.data, cri_end);
            buf_add(&t, other.data + ocri_end, other.len - ocri_end);
            /* fix the outer length (both are 30 81 LL) */
            t.data[2] = (char)(t.len - 3);
        }
        CHECK(expect_reject(&c, s, t.data, t.len, ERRC_INVALID, "CSR signature does not verify") ==
              0);
        /* then a good CSR still passes (reused objects were dropped) */
        {
            struct ca_prepared pr;
            struct err e = ERR_INIT;
            CHECK_OK(ca_prepare(s, c.is, device_profile, (const uint8_t *)der.data, der.len,
                                time(NULL), &pr, &e),
                     &e);
            ca_prepared_release(&pr);
        }
    }
    /* a point off the curve (fast path check) */
    buf_reset(&t);
    buf_add(&t, der.data, der.len);
    {
        const uint8_t *hit = NULL;
        for (size_t i = 0; i + 3 < t.len && hit == NULL; i++) {
            if (memcmp(t.data + i, "\x03\x42\x00\x04", 4) == 0) {
                hit = (const uint8_t *)t.data + i + 4;
            }
        }
        CHECK(hit != NULL);
        t.data[hit - (const uint8_t *)t.data + 10] ^= 0x01;
    }
    CHECK(expect_reject(&c, c.s, t.data, t.len, ERRC_INVALID,
                        "CSR public key is not a valid P-256 point") == 0);
out:
    xfree(big);
    ctx_close(&c);
    ca_signer_free(slow);
    buf_release(&der);
    buf_release(&pem);
    buf_release(&other);
    buf_release(&t);
    return rc;
}

/* The reused P-256 key of the fast path must hold the CSR's key, never the previous one: the
 * CRI of CSR A (key A) signed with key B is refused right after CSR B (key B) was accepted. */
static int test_reused_key_is_replaced(void)
{
    int rc = 0;
    struct ctx c = { 0 };
    struct buf a = BUF_INIT, b = BUF_INIT, forged = BUF_INIT, t = BUF_INIT;
    struct ca_prepared pr = { 0 };
    struct err e = ERR_INIT;
    EVP_PKEY *kb = NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t sig[80];
    size_t sig_len = sizeof(sig), cri_len;
    if (pki() != 0) {
        return 1;
    }
    CHECK(ctx_open(&c, "ca-p256", "ca-p256", false) == 0);
    CHECK(slurp("p256.der", &a) == 0);
    CHECK(slurp("p256b.der", &b) == 0);
    CHECK((kb = load_key("dev-p256b")) != NULL);
    cri_len = tlv_total((const uint8_t *)a.data + tlv_hdr((const uint8_t *)a.data));
    CHECK(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, kb) == 1);
    CHECK(EVP_DigestSign(md, sig, &sig_len, (const uint8_t *)a.data + 3, cri_len) == 1);
    buf_add(&t, a.data + 3, cri_len);
    buf_add(&t, "\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02", 12);
    der_hdr(&t, 0x03, sig_len + 1);
    buf_addch(&t, 0);
    buf_add(&t, sig, sig_len);
    der_wrap(&forged, 0x30, &t);
    for (int i = 0; i < 3; i++) {
        CHECK_OK(ca_prepare(c.s, c.is, device_profile, (const uint8_t *)b.data, b.len, time(NULL),
                            &pr, &e),
                 &e);
        CHECK(pr.fast_path);
        ca_prepared_release(&pr);
        CHECK(expect_reject(&c, c.s, forged.data, forged.len, ERRC_INVALID,
                            "CSR signature does not verify") == 0);
    }
out:
    ca_prepared_release(&pr);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(kb);
    ctx_close(&c);
    buf_release(&a);
    buf_release(&b);
    buf_release(&forged);
    buf_release(&t);
    return rc;
}

/* Every truncation rejected; every single-byte flip rejected or still a valid certificate. */
static int mutate(struct ctx *c, struct ca_signer *s, const struct buf *der, X509_REQ *req)
{
    static const uint8_t masks[] = { 0x01, 0x80, 0xff };
    int rc = 0, accepted = 0;
    struct ca_prepared pr = { 0 };
    struct ca_issued ci = { 0 };
    struct err e = ERR_INIT;
    uint8_t *m = xmalloc(der->len);
    uint8_t sn[CA_SERIAL_MAX];
    size_t sn_len;
    for (size_t n = 0; n < der->len; n++) {
        err_clear(&e);
        CHECK(ca_prepare(s, c->is, device_profile, (const uint8_t *)der->data, n, time(NULL), &pr,
                         &e) != 0);
        CHECK(pr._int == NULL);
        CHECK(e.code == ERRC_INVALID);
    }
    for (size_t i = 0; i < der->len; i++) {
        for (size_t k = 0; k < ARRAY_LEN(masks); k++) {
            memcpy(m, der->data, der->len);
            m[i] ^= masks[k];
            err_clear(&e);
            if (ca_prepare(s, c->is, device_profile, m, der->len, time(NULL), &pr, &e) != 0) {
                CHECK(pr._int == NULL);
                CHECK(e.code == ERRC_INVALID || e.code == ERRC_DENIED);
                continue;
            }
            accepted++;
            CHECK_OK(ca_serial_draw(s, sn, &sn_len, &e), &e);
            CHECK_OK(ca_sign(s, c->is, &pr, sn, sn_len, &ci, &e), &e);
            const unsigned char *q = ci.der;
            X509 *cert = d2i_X509(NULL, &q, (long)ci.der_len);
            CHECK(cert != NULL);
            int ok = X509_verify(cert, c->key) == 1 &&
                     EVP_PKEY_eq(X509_get0_pubkey(cert), X509_REQ_get0_pubkey(req)) == 1;
            X509_free(cert);
            CHECK(ok);
            ca_prepared_release(&pr);
            ca_issued_release(&ci);
        }
    }
    fprintf(stderr, "   %zu truncations, %zu flips, %d accepted\n", der->len,
            der->len * ARRAY_LEN(masks), accepted);
out:
    ca_prepared_release(&pr);
    ca_issued_release(&ci);
    xfree(m);
    return rc;
}

static int test_truncate_and_flip(void)
{
    int rc = 0;
    struct ctx c = { 0 };
    struct ca_signer *slow = ca_signer_new();
    struct buf der = BUF_INIT;
    X509_REQ *req = NULL;
    ca_signer_set_fast_path(slow, false);
    if (pki() != 0) {
        return 1;
    }
    CHECK(ctx_open(&c, "ca-p256", "ca-p256", false) == 0);
    CHECK(slurp("p256.der", &der) == 0);
    CHECK((req = load_req("p256")) != NULL);
    CHECK(mutate(&c, c.s, &der, req) == 0);
    CHECK(mutate(&c, slow, &der, req) == 0);
    X509_REQ_free(req);
    CHECK(slurp("rsa2048.der", &der) == 0);
    CHECK((req = load_req("rsa2048")) != NULL);
    CHECK(mutate(&c, c.s, &der, req) == 0);
out:
    X509_REQ_free(req);
    ctx_close(&c);
    ca_signer_free(slow);
    buf_release(&der);
    return rc;
}

static int cmp_serial(const void *a, const void *b)
{
    return memcmp(a, b, 1 + CA_SERIAL_MAX);
}

static int test_serials(void)
{
    int rc = 0;
    const char *scale = getenv("JITRCA_TEST_SCALE");
    size_t n = scale && strcmp(scale, "small") == 0 ? 10000 : 100000, shorter = 0;
    uint8_t(*all)[1 + CA_SERIAL_MAX] = xcalloc(n, sizeof(*all));
    struct ca_signer *s = ca_signer_new();
    struct err e = ERR_INIT;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        CHECK_OK(ca_serial_draw(s, all[i] + 1, &len, &e), &e);
        CHECK(len >= 1 && len <= CA_SERIAL_MAX);
        CHECK(len >= 8);                                         /* >= 64 random bits survive */
        CHECK((all[i][1] & 0x80) == 0);                          /* positive */
        CHECK(!(len > 1 && all[i][1] == 0 && all[i][2] < 0x80)); /* minimal */
        shorter += len < CA_SERIAL_BYTES;
        all[i][0] = (uint8_t)len;
    }
    qsort(all, n, sizeof(*all), cmp_serial);
    for (size_t i = 1; i < n; i++) {
        CHECK(memcmp(all[i - 1], all[i], sizeof(*all)) != 0);
    }
    /* about 1 in 256 loses its leading zero byte */
    CHECK(shorter < n / 64);
    fprintf(stderr, "   %zu serials, %zu shorter than %d bytes\n", n, shorter, CA_SERIAL_BYTES);
out:
    xfree(all);
    ca_signer_free(s);
    return rc;
}

/* A child forked while a signer holds drawn-but-unused randomness must not hand out the serials
 * its parent will: the child's next serial differs from the parent's next one. */
static int test_serials_after_fork(void)
{
    int rc = 0;
    struct ca_signer *s = ca_signer_new();
    struct err e = ERR_INIT;
    uint8_t a[CA_SERIAL_MAX], mine[CA_SERIAL_MAX], theirs[CA_SERIAL_MAX];
    size_t alen = 0, mlen = 0, tlen = 0;
    int fds[2] = { -1, -1 }, status = 0;
    pid_t pid = -1;
    ssize_t r = 0;

    CHECK_OK(ca_serial_draw(s, a, &alen, &e), &e); /* the pool is filled */
    CHECK(pipe(fds) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        size_t len = 0;
        uint8_t sn[CA_SERIAL_MAX];
        int ok = ca_serial_draw(s, sn, &len, &e) == 0 && write(fds[1], sn, len) == (ssize_t)len;
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    fds[1] = -1;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    r = read(fds[0], theirs, sizeof(theirs));
    CHECK(r > 0);
    tlen = (size_t)r;
    CHECK_OK(ca_serial_draw(s, mine, &mlen, &e), &e);
    CHECK(!(mlen == tlen && memcmp(mine, theirs, mlen) == 0));
out:
    for (int i = 0; i < 2; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    ca_signer_free(s);
    return rc;
}

static int test_sign_errors(void)
{
    int rc = 0;
    struct ctx c = { 0 }, d = { 0 };
    struct buf csr = BUF_INIT;
    struct ca_prepared pr = { 0 };
    struct ca_issued ci = { 0 };
    struct err e = ERR_INIT;
    static const struct {
        const char *sn;
        size_t len;
        const char *msg;
    } bad[] = {
        { "", 0, "serial must be 1 to 20 bytes" },
        { "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15",
          21, "serial must be 1 to 20 bytes" },
        { "\x80\x01", 2, "serial is negative" },
        { "\x00\x01", 2, "serial is not minimally encoded" },
        { "\x00", 1, "serial is zero" },
    };
    if (pki() != 0) {
        return 1;
    }
    CHECK(ctx_open(&c, "ca-p256", "ca-p256", false) == 0);
    CHECK(ctx_open(&d, "ca-p384", "ca-p384", false) == 0);
    CHECK(slurp("p256.der", &csr) == 0);
    CHECK_OK(ca_prepare(c.s, c.is, device_profile, (const uint8_t *)csr.data, csr.len, time(NULL),
                        &pr, &e),
             &e);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err_clear(&e);
        CHECK(ca_sign(c.s, c.is, &pr, (const uint8_t *)bad[i].sn, bad[i].len, &ci, &e) != 0);
        CHECK(ci.der == NULL);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, bad[i].msg);
    }
    err_clear(&e);
    CHECK(ca_sign(c.s, d.is, &pr, (const uint8_t *)"\x01", 1, &ci, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "prepared for another issuer");
    /* the smallest serial works; a prepared certificate signs twice */
    CHECK_OK(ca_sign(c.s, c.is, &pr, (const uint8_t *)"\x01", 1, &ci, &e), &e);
    CHECK_STR_EQ(ci.serial_hex, "01");
    ca_issued_release(&ci);
    CHECK_OK(ca_sign(c.s, c.is, &pr, (const uint8_t *)"\x00\x80", 2, &ci, &e), &e);
    CHECK_STR_EQ(ci.serial_hex, "0080");
out:
    ca_issued_release(&ci);
    ca_prepared_release(&pr);
    ctx_close(&c);
    ctx_close(&d);
    buf_release(&csr);
    return rc;
}

static int test_issuer_errors(void)
{
    int rc = 0;
    X509 *notca = NULL, *ca = NULL;
    EVP_PKEY *k256 = NULL, *k384 = NULL;
    struct ca_issuer *is = NULL;
    struct err e = ERR_INIT;
    if (pki() != 0) {
        return 1;
    }
    CHECK((notca = load_cert("notca")) != NULL);
    CHECK((ca = load_cert("ca-p256")) != NULL);
    CHECK((k256 = load_key("ca-p256")) != NULL);
    CHECK((k384 = load_key("ca-p384")) != NULL);
    CHECK((is = ca_issuer_new(notca, k256, false, &e)) == NULL);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "the CA certificate has no basicConstraints CA:TRUE");
    err_clear(&e);
    CHECK((is = ca_issuer_new(ca, k384, false, &e)) == NULL);
    CHECK_STR_CONTAINS(e.msg, "the CA key does not match the CA certificate");
    CHECK((is = ca_issuer_new(ca, k256, true, &e)) != NULL);
    CHECK(ca_issuer_cert(is) == ca);
out:
    ca_issuer_free(is);
    X509_free(notca);
    X509_free(ca);
    EVP_PKEY_free(k256);
    EVP_PKEY_free(k384);
    return rc;
}

static int test_pem(void)
{
    int rc = 0;
    struct buf pem = BUF_INIT;
    uint8_t der[300];
    size_t line = 0;
    for (size_t i = 0; i < sizeof(der); i++) {
        der[i] = (uint8_t)(i * 7);
    }
    ca_der_to_pem(&pem, der, sizeof(der));
    CHECK(str_has_prefix(pem.data, "-----BEGIN CERTIFICATE-----\n"));
    CHECK_STR_CONTAINS(pem.data, "\n-----END CERTIFICATE-----\n");
    for (size_t i = 0; i < pem.len; i++) {
        line = pem.data[i] == '\n' ? 0 : line + 1;
        CHECK(line <= 64);
    }
    {
        BIO *b = BIO_new_mem_buf(pem.data, (int)pem.len);
        char *name = NULL, *hdr = NULL;
        unsigned char *data = NULL;
        long len = 0;
        int ok = PEM_read_bio(b, &name, &hdr, &data, &len) == 1 && len == (long)sizeof(der) &&
                 memcmp(data, der, sizeof(der)) == 0 && strcmp(name, "CERTIFICATE") == 0;
        OPENSSL_free(name);
        OPENSSL_free(hdr);
        OPENSSL_free(data);
        BIO_free(b);
        CHECK(ok);
    }
out:
    buf_release(&pem);
    return rc;
}

struct thread_arg {
    struct ctx *c;
    const struct buf *csr;
    int issued;
};

static void *thread_main(void *arg)
{
    struct thread_arg *ta = arg;
    struct ca_signer *s = ca_signer_new();
    for (int i = 0; i < 200; i++) {
        struct ca_prepared pr;
        struct ca_issued ci;
        uint8_t sn[CA_SERIAL_MAX];
        size_t len = 0;
        struct err e = ERR_INIT;
        if (ca_prepare(s, ta->c->is, device_profile, (const uint8_t *)ta->csr->data, ta->csr->len,
                       time(NULL), &pr, &e) != 0) {
            break;
        }
        if (ca_serial_draw(s, sn, &len, &e) == 0 &&
            ca_sign(s, ta->c->is, &pr, sn, len, &ci, &e) == 0) {
            const unsigned char *q = ci.der;
            X509 *x = d2i_X509(NULL, &q, (long)ci.der_len);
            ta->issued += x != NULL && X509_verify(x, ta->c->key) == 1;
            X509_free(x);
            ca_issued_release(&ci);
        }
        ca_prepared_release(&pr);
    }
    ca_signer_free(s);
    return NULL;
}

static int test_threads_hsm_lock(void)
{
    int rc = 0;
    struct ctx c = { 0 };
    struct buf csr = BUF_INIT;
    pthread_t th[2];
    struct thread_arg ta[2];
    if (pki() != 0) {
        return 1;
    }
    CHECK(ctx_open(&c, "ca-p256", "ca-p256", true) == 0);
    CHECK(slurp("p256.der", &csr) == 0);
    for (int i = 0; i < 2; i++) {
        ta[i] = (struct thread_arg){ &c, &csr, 0 };
        CHECK(pthread_create(&th[i], NULL, thread_main, &ta[i]) == 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    CHECK_INT_EQ(ta[0].issued + ta[1].issued, 400);
out:
    ctx_close(&c);
    buf_release(&csr);
    return rc;
}

/* What users type for a serial (openssl x509 -serial, with or without the leading zeros) reaches
 * the index's key. */
static int test_serial_normalise(void)
{
    static const struct {
        const char *in, *want;
    } ok[] = {
        { "01D5299015EC0CB9E6875A381CC88ADA", "01d5299015ec0cb9e6875a381cc88ada" },
        { "1d5299015ec0cb9e6875a381cc88ada", "01d5299015ec0cb9e6875a381cc88ada" },
        { "0001d5", "01d5" },
        { "80", "0080" },
        { "0080", "0080" },
        { "7f", "7f" },
        { "ab:cd:ef", "00abcdef" },
        { "5", "05" },
    };
    static const struct {
        const char *in, *msg;
    } bad[] = {
        { "", "is zero" },
        { "000", "is zero" },
        { "12g4", "not a hex serial" },
        { "ffffffffffffffffffffffffffffffffffffffff", "longer than 20 octets" },
    };
    int rc = 0;
    char out[41];
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        struct err e = ERR_INIT;
        CHECK_OK(ca_serial_normalise(ok[i].in, out, &e), &e);
        CHECK_STR_EQ(out, ok[i].want);
    }
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct err e = ERR_INIT;
        CHECK(ca_serial_normalise(bad[i].in, out, &e) != 0);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, bad[i].msg);
    }
out:
    return rc;
}

/* One spelling of a serial: a first byte >= 0x80 keeps the 00 octet the certificate encodes (the
 * index's key, what ca_sign reports), while `openssl x509 -serial` prints the digits without it
 * (i2a_ASN1_INTEGER); ca_serial_normalise takes that output to the same key. */
static int test_serial_hex(void)
{
    int rc = 0;
    struct ctx c = { 0 };
    struct buf csr = BUF_INIT;
    struct ca_prepared pr = { 0 };
    struct ca_issued ci = { 0 };
    struct err e = ERR_INIT;
    static const uint8_t high[] = { 0x00, 0x80, 0xaa, 0xbb };
    uint8_t twenty[20];
    const unsigned char *p;
    X509 *x = NULL;
    BIO *mem = NULL;
    ASN1_INTEGER *a = NULL;
    char hex[41], printed[64] = "", key[41];
    if (pki() != 0) {
        return 1;
    }
    CHECK(ctx_open(&c, "ca-p256", "ca-p256", false) == 0);
    CHECK(slurp("p256.der", &csr) == 0);
    CHECK_OK(ca_prepare(c.s, c.is, device_profile, (const uint8_t *)csr.data, csr.len, time(NULL),
                        &pr, &e),
             &e);
    CHECK_OK(ca_sign(c.s, c.is, &pr, high, sizeof(high), &ci, &e), &e);
    CHECK_STR_EQ(ci.serial_hex, "0080aabb");
    p = ci.der;
    CHECK((x = d2i_X509(NULL, &p, (long)ci.der_len)) != NULL);
    CHECK_INT_EQ(ca_serial_hex(X509_get0_serialNumber(x), hex, sizeof(hex)), 0);
    CHECK_STR_EQ(hex, "0080aabb");
    /* what openssl x509 -serial prints, and the key it leads to */
    CHECK((mem = BIO_new(BIO_s_mem())) != NULL);
    CHECK(i2a_ASN1_INTEGER(mem, X509_get0_serialNumber(x)) > 0);
    CHECK(BIO_read(mem, printed, sizeof(printed) - 1) > 0);
    CHECK_STR_EQ(printed, "80AABB");
    CHECK_OK(ca_serial_normalise(printed, key, &e), &e);
    CHECK_STR_EQ(key, hex);

    /* below 0x80 no 00; 20 octets fit 41 bytes, 21 (20 and the 00) do not; negative is none */
    for (size_t i = 0; i < sizeof(twenty); i++) {
        twenty[i] = (uint8_t)(i + 1);
    }
    twenty[0] = 0x7f;
    a = ASN1_INTEGER_new();
    CHECK(a != NULL && ASN1_INTEGER_set_int64(a, 0x7f01) == 1);
    CHECK_INT_EQ(ca_serial_hex(a, hex, sizeof(hex)), 0);
    CHECK_STR_EQ(hex, "7f01");
    CHECK_INT_EQ(ca_serial_hex(a, hex, 4), -1);
    CHECK_STR_EQ(hex, "");
    CHECK(ASN1_STRING_set(a, twenty, sizeof(twenty)) == 1);
    CHECK_INT_EQ(ca_serial_hex(a, hex, sizeof(hex)), 0);
    CHECK_STR_EQ(hex, "7f02030405060708090a0b0c0d0e0f1011121314");
    hex[0] = 'x';
    twenty[0] = 0x80;
    CHECK(ASN1_STRING_set(a, twenty, sizeof(twenty)) == 1);
    CHECK_INT_EQ(ca_serial_hex(a, hex, sizeof(hex)), -1);
    CHECK_STR_EQ(hex, "");
    CHECK(ASN1_INTEGER_set_int64(a, -5) == 1);
    CHECK_INT_EQ(ca_serial_hex(a, hex, sizeof(hex)), -1);
    CHECK_INT_EQ(ca_serial_hex(NULL, hex, sizeof(hex)), -1);
out:
    ASN1_INTEGER_free(a);
    BIO_free(mem);
    X509_free(x);
    ca_issued_release(&ci);
    ca_prepared_release(&pr);
    buf_release(&csr);
    ctx_close(&c);
    return rc;
}

static void cleanup(void)
{
    ca_profile_free(device_profile);
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "both_paths_all_keys", test_both_paths_all_keys },
        { "fast_equals_slow", test_fast_equals_slow },
        { "url_extensions", test_url_extensions },
        { "validity", test_validity },
        { "generalized_time", test_generalized_time },
        { "profile_refusals", test_profile_refusals },
        { "san_and_subject", test_san_and_subject },
        { "subject_strings", test_subject_strings },
        { "forced_cn", test_forced_cn },
        { "malformed", test_malformed },
        { "reused_key_is_replaced", test_reused_key_is_replaced },
        { "truncate_and_flip", test_truncate_and_flip },
        { "serials", test_serials },
        { "serials_after_fork", test_serials_after_fork },
        { "sign_errors", test_sign_errors },
        { "issuer_errors", test_issuer_errors },
        { "pem", test_pem },
        { "serial_normalise", test_serial_normalise },
        { "serial_hex", test_serial_hex },
        { "threads_hsm_lock", test_threads_hsm_lock },
    };
    atexit(cleanup);
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
