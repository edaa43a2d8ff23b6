/*
 * ca/ocsp: requests as OpenSSL's client builds them (SHA-1 and SHA-256 CertIDs, with and without
 * a nonce, several CertIDs) decoded and matched to their CA (and not to another); responses for
 * good, revoked (time and reason, certificateHold included, none for unspecified) and unknown
 * parsed back and verified by OCSP_basic_verify against the CA, signed by P-256, P-384 and RSA
 * CAs and by a delegated responder certificate (its extensions checked); the refusals (malformed
 * DER, trailing bytes, 0 or 17 CertIDs, a critical extension, a nonce twice or too long; a
 * signer the CA did not issue, without OCSPSigning, expired, a key not the signer's), each
 * leaving nothing behind; the GET path decoding; the error responses' bytes.
 */
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "ca/crl.h"
#include "ca/ocsp.h"
#include "core/util.h"
#include "tests/harness/tt.h"

#define T0 ((time_t)1767225600) /* 2026-01-01T00:00:00Z */

static EVP_PKEY *keygen(const char *type)
{
    if (strcmp(type, "rsa") == 0) {
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    }
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", type);
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* A certificate of key named cn: self-signed CA when issuer is NULL, else a leaf (serial sn)
 * issued by issuer with ikey; eku (NULL: none) as extendedKeyUsage. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey, long sn,
                       const char *eku, long not_after_s)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    int ok = x && n && X509_set_version(x, X509_VERSION_3) == 1 &&
             ASN1_INTEGER_set(X509_get_serialNumber(x), sn) == 1 &&
             X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                        0) == 1 &&
             X509_set_subject_name(x, n) == 1 &&
             X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n) == 1 &&
             X509_time_adj_ex(X509_getm_notBefore(x), -1, 0, NULL) != NULL &&
             X509_time_adj_ex(X509_getm_notAfter(x), 0, not_after_s, NULL) != NULL &&
             X509_set_pubkey(x, key) == 1;
    ok = ok && add_ext(x, issuer ? issuer : x, NID_basic_constraints,
                       issuer ? "critical,CA:FALSE" : "critical,CA:TRUE") == 0;
    ok = ok && add_ext(x, issuer ? issuer : x, NID_subject_key_identifier, "hash") == 0;
    if (eku) {
        ok = ok && add_ext(x, issuer, NID_ext_key_usage, eku) == 0;
    }
    ok = ok && X509_sign(x, issuer ? ikey : key, EVP_sha256()) > 0;
    X509_NAME_free(n);
    if (!ok) {
        X509_free(x);
        ERR_print_errors_fp(stderr);
        return NULL;
    }
    return x;
}

/* The DER of a request for serials[0..n) of ca with digest md, a nonce when nonce_len > 0. */
static int make_req(X509 *ca, const EVP_MD *md, const long *serials, size_t n, int nonce_len,
                    struct buf *der)
{
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    unsigned char *enc = NULL;
    int len, ok = req != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        ASN1_INTEGER *sn = ASN1_INTEGER_new();
        OCSP_CERTID *id = NULL;
        ok = sn && ASN1_INTEGER_set(sn, serials[i]) == 1 &&
             (id = OCSP_cert_id_new(md, X509_get_subject_name(ca), X509_get0_pubkey_bitstr(ca),
                                    sn)) != NULL &&
             OCSP_request_add0_id(req, id) != NULL;
        ASN1_INTEGER_free(sn);
    }
    if (ok && nonce_len > 0) {
        ok = OCSP_request_add1_nonce(req, NULL, nonce_len) == 1;
    }
    ok = ok && (len = i2d_OCSP_REQUEST(req, &enc)) > 0;
    if (ok) {
        buf_add(der, enc, (size_t)len);
    }
    OPENSSL_free(enc);
    OCSP_REQUEST_free(req);
    return ok ? 0 : -1;
}

static OCSP_CERTID *cid(const struct ca_ocsp_req *r, size_t i)
{
    return OCSP_onereq_get0_id(OCSP_request_onereq_get0(r->req, (int)i));
}

/* Parses a response, verifies it against ca (trusted), checks its nonce against the request. */
static OCSP_BASICRESP *check_resp(const struct buf *der, X509 *ca, const struct ca_ocsp_req *r)
{
    const unsigned char *p = (const unsigned char *)der->data;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)der->len);
    OCSP_BASICRESP *bs = resp ? OCSP_response_get1_basic(resp) : NULL;
    X509_STORE *st = X509_STORE_new();
    STACK_OF(X509) *other = sk_X509_new_null();
    int ok = bs && st && other && OCSP_response_status(resp) == OCSP_RESPONSE_STATUS_SUCCESSFUL &&
             X509_STORE_add_cert(st, ca) == 1 && sk_X509_push(other, ca) > 0 &&
             OCSP_basic_verify(bs, other, st, 0) == 1;
    if (ok && r->has_nonce) {
        ok = OCSP_check_nonce(r->req, bs) == 1;
    } else if (ok) {
        ok = OCSP_check_nonce(r->req, bs) == 2; /* neither has one */
    }
    if (!ok) {
        ERR_print_errors_fp(stderr);
        OCSP_BASICRESP_free(bs);
        bs = NULL;
    }
    sk_X509_free(other);
    X509_STORE_free(st);
    OCSP_RESPONSE_free(resp);
    return bs;
}

static int resp_case(const char *type, const EVP_MD *md, bool nonce, bool delegated)
{
    int rc = 0;
    struct err e = ERR_INIT;
    EVP_PKEY *key = keygen(type), *other = keygen("P-256"), *rkey = keygen("P-256");
    X509 *ca = make_cert(key, "OCSP Test CA", NULL, NULL, 1, NULL, 86400L * 365);
    X509 *ca2 = make_cert(other, "Other CA", NULL, NULL, 1, NULL, 86400L * 365);
    X509 *signer = NULL;
    struct buf req = BUF_INIT, der = BUF_INIT, sder = BUF_INIT;
    struct ca_ocsp_req r;
    struct ca_ocsp_resp_params p;
    OCSP_BASICRESP *bs = NULL;
    long serials[4] = { 0x1001, 0x1002, 0x1003, 0x1004 };
    struct ca_ocsp_single single[4] = {
        { CA_OCSP_GOOD, 0, 0 },
        { CA_OCSP_REVOKED, T0 + 60, CA_CRL_KEY_COMPROMISE },
        { CA_OCSP_UNKNOWN, 0, 0 },
        { CA_OCSP_REVOKED, T0 + 120, CA_CRL_UNSPECIFIED },
    };
    memset(&r, 0, sizeof(r));
    CHECK(ca != NULL && ca2 != NULL && rkey != NULL);
    CHECK_INT_EQ(make_req(ca, md, serials, 4, nonce ? 16 : 0, &req), 0);
    CHECK_OK(ca_ocsp_req_parse((const uint8_t *)req.data, req.len, &r, &e), &e);
    CHECK_INT_EQ(r.n, 4);
    CHECK_STR_EQ(r.serial[0], "1001");
    CHECK_STR_EQ(r.serial[3], "1004");
    CHECK(r.has_nonce == nonce);
    for (size_t i = 0; i < 4; i++) {
        CHECK(ca_ocsp_id_matches(&r, i, ca));
        CHECK(!ca_ocsp_id_matches(&r, i, ca2));
    }
    CHECK(!ca_ocsp_id_matches(&r, 4, ca));
    if (delegated) {
        static const uint8_t sn[] = { 0x42, 0x01 };
        CHECK_OK(ca_ocsp_signer_issue(ca, key, rkey, sn, sizeof(sn), 30, time(NULL), &sder, &e),
                 &e);
        const unsigned char *sp = (const unsigned char *)sder.data;
        signer = d2i_X509(NULL, &sp, (long)sder.len);
        CHECK(signer != NULL);
        CHECK(X509_get_extended_key_usage(signer) & XKU_OCSP_SIGN);
        CHECK(X509_get_ext_by_NID(signer, NID_id_pkix_OCSP_noCheck, -1) >= 0);
        CHECK(X509_check_ca(signer) == 0);
        CHECK(X509_get_key_usage(signer) == KU_DIGITAL_SIGNATURE);
        CHECK(X509_verify(signer, key) == 1);
        char cn[128] = "";
        X509_NAME_get_text_by_NID(X509_get_subject_name(signer), NID_commonName, cn, sizeof(cn));
        CHECK_STR_EQ(cn, "OCSP Test CA OCSP responder");
        CHECK_OK(ca_ocsp_signer_check(ca, signer, time(NULL), &e), &e);
    }
    p = (struct ca_ocsp_resp_params){
        ca, delegated ? signer : ca, delegated ? rkey : key, single, time(NULL), 3600
    };
    CHECK_OK(ca_ocsp_resp_build(&r, &p, &der, &e), &e);
    bs = check_resp(&der, ca, &r);
    CHECK(bs != NULL);
    /* the delegate's certificate travels with the response; the CA's does not */
    CHECK_INT_EQ(OCSP_resp_get0_certs(bs) ? sk_X509_num(OCSP_resp_get0_certs(bs)) : 0,
                 (delegated ? 1 : 0));
    for (size_t i = 0; i < 4; i++) {
        int status = -1, reason = -1;
        ASN1_GENERALIZEDTIME *rev = NULL, *thisupd = NULL, *nextupd = NULL;
        CHECK(OCSP_resp_find_status(bs, cid(&r, i), &status, &reason, &rev, &thisupd, &nextupd) ==
              1);
        CHECK(OCSP_check_validity(thisupd, nextupd, 0, -1) == 1);
        int days = 0, secs = 0;
        CHECK(ASN1_TIME_diff(&days, &secs, thisupd, nextupd) == 1);
        CHECK_INT_EQ(days * 86400 + secs, 3600);
        if (i == 0) {
            CHECK_INT_EQ(status, V_OCSP_CERTSTATUS_GOOD);
        } else if (i == 2) {
            CHECK_INT_EQ(status, V_OCSP_CERTSTATUS_UNKNOWN);
        } else {
            struct tm tm;
            CHECK_INT_EQ(status, V_OCSP_CERTSTATUS_REVOKED);
            CHECK_INT_EQ(reason, i == 1 ? CA_CRL_KEY_COMPROMISE : OCSP_REVOKED_STATUS_NOSTATUS);
            CHECK(rev != NULL && ASN1_TIME_to_tm(rev, &tm) == 1);
            CHECK_INT_EQ(timegm(&tm), T0 + (i == 1 ? 60 : 120));
        }
    }
out:
    OCSP_BASICRESP_free(bs);
    ca_ocsp_req_release(&r);
    buf_release(&req);
    buf_release(&der);
    buf_release(&sder);
    X509_free(signer);
    X509_free(ca);
    X509_free(ca2);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    EVP_PKEY_free(rkey);
    return rc;
}

static int t_p256_sha1(void)
{
    return resp_case("P-256", EVP_sha1(), true, false);
}
static int t_p384_sha256(void)
{
    return resp_case("P-384", EVP_sha256(), false, false);
}
static int t_rsa_sha1(void)
{
    return resp_case("rsa", EVP_sha1(), true, false);
}
static int t_delegated(void)
{
    return resp_case("P-256", EVP_sha1(), true, true);
}
static int t_delegated_rsa_ca(void)
{
    return resp_case("rsa", EVP_sha256(), false, true);
}

static int t_hold(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    EVP_PKEY *key = keygen("P-256");
    X509 *ca = make_cert(key, "Hold CA", NULL, NULL, 1, NULL, 86400);
    struct buf req = BUF_INIT, der = BUF_INIT;
    struct ca_ocsp_req r;
    OCSP_BASICRESP *bs = NULL;
    long sn = 7;
    struct ca_ocsp_single s = { CA_OCSP_REVOKED, T0, CA_CRL_CERTIFICATE_HOLD };
    int status = -1, reason = -1;
    struct ca_ocsp_resp_params p = { ca, ca, key, &s, T0 + 10, 60 };
    memset(&r, 0, sizeof(r));
    CHECK_INT_EQ(make_req(ca, EVP_sha1(), &sn, 1, 0, &req), 0);
    CHECK_OK(ca_ocsp_req_parse((const uint8_t *)req.data, req.len, &r, &e), &e);
    CHECK_OK(ca_ocsp_resp_build(&r, &p, &der, &e), &e);
    CHECK((bs = check_resp(&der, ca, &r)) != NULL);
    CHECK(OCSP_resp_find_status(bs, cid(&r, 0), &status, &reason, NULL, NULL, NULL) == 1);
    CHECK_INT_EQ(status, V_OCSP_CERTSTATUS_REVOKED);
    CHECK_INT_EQ(reason, CA_CRL_CERTIFICATE_HOLD);
    /* a reason the enum does not have is refused, nothing written */
    s.reason = 7;
    buf_reset(&der);
    CHECK_INT_EQ(ca_ocsp_resp_build(&r, &p, &der, &e), -1);
    CHECK_STR_CONTAINS(e.msg, "unknown revocation reason 7");
    CHECK_INT_EQ(der.len, 0);
out:
    OCSP_BASICRESP_free(bs);
    ca_ocsp_req_release(&r);
    buf_release(&req);
    buf_release(&der);
    X509_free(ca);
    EVP_PKEY_free(key);
    return rc;
}

/* Every refusal of a request: ERRC_INVALID with why, nothing kept. */
static int refused(const struct buf *der, const char *why)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct ca_ocsp_req r;
    CHECK_INT_EQ(ca_ocsp_req_parse((const uint8_t *)der->data, der->len, &r, &e), -1);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, why);
    CHECK(r.req == NULL && r.n == 0);
    CHECK(ERR_peek_error() == 0);
out:
    return rc;
}

static int t_malformed(void)
{
    int rc = 0;
    EVP_PKEY *key = keygen("P-256");
    X509 *ca = make_cert(key, "Malformed CA", NULL, NULL, 1, NULL, 86400);
    struct buf good = BUF_INIT, b = BUF_INIT;
    long sn[17];
    for (size_t i = 0; i < 17; i++) {
        sn[i] = (long)i + 1;
    }
    CHECK_INT_EQ(make_req(ca, EVP_sha1(), sn, 1, 16, &good), 0);
    CHECK_INT_EQ(refused(&b, "empty"), 0);
    buf_addstr(&b, "not an OCSP request at all");
    CHECK_INT_EQ(refused(&b, "not a DER OCSPRequest"), 0);
    for (size_t cut = 1; cut < good.len; cut += 7) {
        buf_reset(&b);
        buf_add(&b, good.data, cut);
        CHECK_INT_EQ(refused(&b, "malformed OCSP request"), 0);
    }
    buf_reset(&b);
    buf_add(&b, good.data, good.len);
    buf_add(&b, "\0", 1);
    CHECK_INT_EQ(refused(&b, "not a DER OCSPRequest"), 0);
    buf_reset(&b);
    CHECK_INT_EQ(make_req(ca, EVP_sha1(), sn, 17, 0, &b), 0);
    CHECK_INT_EQ(refused(&b, "1 to 16 certificates"), 0);
    buf_reset(&b);
    CHECK_INT_EQ(make_req(ca, EVP_sha1(), sn, 0, 0, &b), 0);
    CHECK_INT_EQ(refused(&b, "1 to 16 certificates"), 0);
    buf_reset(&b);
    CHECK_INT_EQ(make_req(ca, EVP_sha1(), sn, 1, 100, &b), 0);
    CHECK_INT_EQ(refused(&b, "nonce"), 0);
    buf_reset(&b);
    /* a nonce twice, and a critical extension nobody knows */
    {
        OCSP_REQUEST *req = OCSP_REQUEST_new();
        ASN1_INTEGER *one = ASN1_INTEGER_new();
        ASN1_OBJECT *obj = OBJ_txt2obj("1.3.6.1.4.1.99999.1", 1);
        ASN1_OCTET_STRING *v = ASN1_OCTET_STRING_new();
        X509_EXTENSION *x = NULL;
        unsigned char *enc = NULL;
        int len;
        CHECK(req && one && obj && v && ASN1_INTEGER_set(one, 1) == 1);
        CHECK(OCSP_request_add0_id(req, OCSP_cert_id_new(EVP_sha1(), X509_get_subject_name(ca),
                                                         X509_get0_pubkey_bitstr(ca), one)));
        CHECK(OCSP_request_add1_nonce(req, NULL, 8) == 1);
        CHECK((x = X509_EXTENSION_dup(OCSP_REQUEST_get_ext(req, 0))) != NULL);
        CHECK(OCSP_REQUEST_add_ext(req, x, -1) == 1);
        X509_EXTENSION_free(x);
        x = NULL;
        CHECK((len = i2d_OCSP_REQUEST(req, &enc)) > 0);
        buf_add(&b, enc, (size_t)len);
        OPENSSL_free(enc);
        enc = NULL;
        CHECK_INT_EQ(refused(&b, "nonce must be given once"), 0);
        X509_EXTENSION_free(OCSP_REQUEST_delete_ext(req, 1));
        CHECK(ASN1_OCTET_STRING_set(v, (const unsigned char *)"\x05\x00", 2) == 1);
        CHECK((x = X509_EXTENSION_create_by_OBJ(NULL, obj, 1, v)) != NULL);
        CHECK(OCSP_REQUEST_add_ext(req, x, -1) == 1);
        buf_reset(&b);
        CHECK((len = i2d_OCSP_REQUEST(req, &enc)) > 0);
        buf_add(&b, enc, (size_t)len);
        OPENSSL_free(enc);
        CHECK_INT_EQ(refused(&b, "critical requestExtension"), 0);
        X509_EXTENSION_free(x);
        ASN1_OCTET_STRING_free(v);
        ASN1_OBJECT_free(obj);
        ASN1_INTEGER_free(one);
        OCSP_REQUEST_free(req);
    }
out:
    buf_release(&good);
    buf_release(&b);
    X509_free(ca);
    EVP_PKEY_free(key);
    return rc;
}

static int t_signer_refusals(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    EVP_PKEY *key = keygen("P-256"), *okey = keygen("P-256"), *rkey = keygen("P-256");
    X509 *ca = make_cert(key, "Signer CA", NULL, NULL, 1, NULL, 86400L * 30);
    X509 *oca = make_cert(okey, "Stranger CA", NULL, NULL, 1, NULL, 86400L * 30);
    X509 *foreign = make_cert(rkey, "foreign", oca, okey, 9, "OCSPSigning", 86400);
    X509 *noeku = make_cert(rkey, "no eku", ca, key, 10, "clientAuth", 86400);
    X509 *expired = make_cert(rkey, "expired", ca, key, 11, "OCSPSigning", 2);
    X509 *fine = make_cert(rkey, "fine", ca, key, 12, "OCSPSigning", 86400);
    struct buf req = BUF_INIT, der = BUF_INIT;
    struct ca_ocsp_req r;
    long sn = 5;
    struct ca_ocsp_single s = { CA_OCSP_GOOD, 0, 0 };
    struct ca_ocsp_resp_params p = { ca, fine, rkey, &s, time(NULL), 60 };
    struct {
        X509 *signer;
        EVP_PKEY *key;
        time_t now;
        const char *why;
    } cases[] = {
        { foreign, rkey, time(NULL), "not issued by the CA" },
        { noeku, rkey, time(NULL), "lacks id-kp-OCSPSigning" },
        { expired, rkey, time(NULL) + 60, "not valid now" },
        { fine, key, time(NULL), "responder key does not match" },
        { ca, rkey, time(NULL), "CA key does not match" },
    };
    memset(&r, 0, sizeof(r));
    CHECK(foreign && noeku && expired && fine);
    CHECK_INT_EQ(make_req(ca, EVP_sha1(), &sn, 1, 0, &req), 0);
    CHECK_OK(ca_ocsp_req_parse((const uint8_t *)req.data, req.len, &r, &e), &e);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct ca_ocsp_resp_params q = { ca, cases[i].signer, cases[i].key, &s, cases[i].now, 60 };
        err_clear(&e);
        CHECK_INT_EQ(ca_ocsp_resp_build(&r, &q, &der, &e), -1);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, cases[i].why);
        CHECK_INT_EQ(der.len, 0);
    }
    CHECK_OK(ca_ocsp_resp_build(&r, &p, &der, &e), &e);
    /* the CA's certificate must be a CA; the signer issue refuses bad days and keys */
    {
        static const uint8_t one[] = { 1 };
        struct buf x = BUF_INIT;
        err_clear(&e);
        CHECK_INT_EQ(ca_ocsp_signer_issue(fine, rkey, rkey, one, 1, 30, time(NULL), &x, &e), -1);
        CHECK_STR_CONTAINS(e.msg, "CA:TRUE");
        err_clear(&e);
        CHECK_INT_EQ(ca_ocsp_signer_issue(ca, key, rkey, one, 1, 0, time(NULL), &x, &e), -1);
        CHECK_STR_CONTAINS(e.msg, "1 to 3650 days");
        err_clear(&e);
        CHECK_INT_EQ(ca_ocsp_signer_issue(ca, okey, rkey, one, 1, 30, time(NULL), &x, &e), -1);
        CHECK_STR_CONTAINS(e.msg, "CA key does not match");
        CHECK_INT_EQ(x.len, 0);
    }
out:
    ca_ocsp_req_release(&r);
    buf_release(&req);
    buf_release(&der);
    X509_free(ca);
    X509_free(oca);
    X509_free(foreign);
    X509_free(noeku);
    X509_free(expired);
    X509_free(fine);
    EVP_PKEY_free(key);
    EVP_PKEY_free(okey);
    EVP_PKEY_free(rkey);
    return rc;
}

static int t_get_decode(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct buf der = BUF_INIT;
    static const struct {
        const char *in;
        const char *out; /* NULL: refused */
    } cases[] = {
        { "MAM%3D", "0\x03" }, /* "MAM=" */
        { "MAM=", "0\x03" },
        { "MAM", "0\x03" },           /* padding optional */
        { "%2B%2F8%3D", "\xfb\xff" }, /* "+/8=" */
        { "+/8=", "\xfb\xff" },
        { "-_8", "\xfb\xff" }, /* base64url */
        { "", NULL },
        { "%", NULL },
        { "%4", NULL },
        { "%zz", NULL },
        { "MA*M", NULL },
        { "MA M", NULL },
        { "M", NULL },
        { "%00MAM", NULL },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        buf_reset(&der);
        err_clear(&e);
        int r = ca_ocsp_get_decode(cases[i].in, &der, &e);
        if (cases[i].out == NULL) {
            if (r != -1 || e.code != ERRC_INVALID || der.len != 0) {
                TT_FAIL("'%s' should be refused", cases[i].in);
            }
        } else if (r != 0 || der.len != strlen(cases[i].out) ||
                   memcmp(der.data, cases[i].out, der.len) != 0) {
            TT_FAIL("'%s' decoded wrong: %s", cases[i].in, e.msg);
        }
    }
out:
    buf_release(&der);
    return rc;
}

static int t_error_resp(void)
{
    int rc = 0;
    enum ca_ocsp_rstatus st[] = { CA_OCSP_MALFORMED, CA_OCSP_INTERNAL_ERROR, CA_OCSP_TRY_LATER,
                                  CA_OCSP_UNAUTHORIZED };
    for (size_t i = 0; i < ARRAY_LEN(st); i++) {
        struct buf der = BUF_INIT;
        ca_ocsp_error_resp(st[i], &der);
        const unsigned char *p = (const unsigned char *)der.data;
        OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)der.len);
        int got = resp ? OCSP_response_status(resp) : -1;
        OCSP_RESPONSE_free(resp);
        buf_release(&der);
        CHECK_INT_EQ(got, (int)st[i]);
    }
out:
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "p256_sha1", t_p256_sha1 },
        { "p384_sha256", t_p384_sha256 },
        { "rsa_sha1", t_rsa_sha1 },
        { "delegated", t_delegated },
        { "delegated_rsa_ca", t_delegated_rsa_ca },
        { "hold", t_hold },
        { "malformed", t_malformed },
        { "signer_refusals", t_signer_refusals },
        { "get_decode", t_get_decode },
        { "error_resp", t_error_resp },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
