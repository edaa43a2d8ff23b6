/*
 * OCSP requests and responses on OpenSSL's OCSP_* (see ocsp.h). Everything a request carries is
 * checked before it is used: the responder parses bytes from anyone (tests/fuzz/fuzz_ocsp.c).
 */
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "ca/crl.h"
#include "ca/issue.h"
#include "ca/key.h"
#include "ca/ocsp.h"
#include "core/util.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int ca_ocsp_get_decode(const char *path, struct buf *der, struct err *e)
{
    struct buf b64 = BUF_INIT, out = BUF_INIT;
    size_t n = strlen(path);
    int rc = -1;
    if (n == 0 || n > CA_OCSP_REQUEST_MAX * 2) {
        return err_set(e, ERRC_INVALID, "the GET path must be the base64 of an OCSP request");
    }
    for (size_t i = 0; i < n; i++) {
        char c = path[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval(path[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(path[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                err_set(e, ERRC_INVALID, "the GET path has a malformed %%-escape");
                goto out;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '-') {
            c = '+';
        } else if (c == '_') {
            c = '/';
        }
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || c == '=')) {
            err_set(e, ERRC_INVALID, "the GET path is not base64");
            goto out;
        }
        buf_add(&b64, &c, 1);
    }
    while (b64.len % 4 != 0) {
        buf_add(&b64, "=", 1);
    }
    if (base64_decode(&out, b64.data, b64.len) != 0 || out.len == 0 ||
        out.len > CA_OCSP_REQUEST_MAX) {
        err_set(e, ERRC_INVALID, "the GET path is not the base64 of an OCSP request");
        goto out;
    }
    buf_add(der, out.data, out.len);
    rc = 0;
out:
    buf_release(&b64);
    buf_release(&out);
    return rc;
}

static int malformed(struct ca_ocsp_req *out, struct err *e, const char *why)
{
    ERR_clear_error();
    OCSP_REQUEST_free(out->req);
    memset(out, 0, sizeof(*out));
    return err_set(e, ERRC_INVALID, "malformed OCSP request: %s", why);
}

int ca_ocsp_req_parse(const uint8_t *der, size_t len, struct ca_ocsp_req *out, struct err *e)
{
    const unsigned char *p = der;
    int n;
    memset(out, 0, sizeof(*out));
    if (der == NULL || len == 0 || len > CA_OCSP_REQUEST_MAX) {
        return malformed(out, e, "empty or too large");
    }
    out->req = d2i_OCSP_REQUEST(NULL, &p, (long)len);
    if (out->req == NULL || p != der + len) {
        return malformed(out, e, "not a DER OCSPRequest");
    }
    n = OCSP_request_onereq_count(out->req);
    if (n < 1 || n > CA_OCSP_MAX_IDS) {
        return malformed(out, e, "it must ask about 1 to 16 certificates");
    }
    out->n = (size_t)n;
    for (int i = 0; i < n; i++) {
        OCSP_ONEREQ *one = OCSP_request_onereq_get0(out->req, i);
        OCSP_CERTID *id = one ? OCSP_onereq_get0_id(one) : NULL;
        ASN1_INTEGER *sn = NULL;
        if (id == NULL || OCSP_id_get0_info(NULL, NULL, NULL, &sn, id) != 1) {
            return malformed(out, e, "a CertID is unusable");
        }
        if (ca_serial_hex(sn, out->serial[i], sizeof(out->serial[i])) != 0) {
            out->serial[i][0] = '\0'; /* negative or too long: no certificate of ours */
        }
        for (int k = 0; k < OCSP_ONEREQ_get_ext_count(one); k++) {
            if (X509_EXTENSION_get_critical(OCSP_ONEREQ_get_ext(one, k))) {
                return malformed(out, e, "an unsupported critical singleRequestExtension");
            }
        }
    }
    for (int k = 0; k < OCSP_REQUEST_get_ext_count(out->req); k++) {
        X509_EXTENSION *x = OCSP_REQUEST_get_ext(out->req, k);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(x));
        if (nid == NID_id_pkix_OCSP_Nonce) {
            const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(x);
            /* the value is an OCTET STRING wrapping the nonce's OCTET STRING (tag, length) */
            if (out->has_nonce || ASN1_STRING_length(v) < 1 ||
                ASN1_STRING_length(v) > CA_OCSP_NONCE_MAX + 2) {
                return malformed(out, e, "the nonce must be given once, 1 to 64 bytes");
            }
            out->has_nonce = true;
        } else if (X509_EXTENSION_get_critical(x)) {
            return malformed(out, e, "an unsupported critical requestExtension");
        }
    }
    return 0;
}

void ca_ocsp_req_release(struct ca_ocsp_req *r)
{
    if (r) {
        OCSP_REQUEST_free(r->req);
        memset(r, 0, sizeof(*r));
    }
}

static bool octets_eq(const ASN1_OCTET_STRING *a, const unsigned char *b, unsigned int n)
{
    return a != NULL && ASN1_STRING_length(a) == (int)n &&
           memcmp(ASN1_STRING_get0_data(a), b, n) == 0;
}

bool ca_ocsp_id_matches(const struct ca_ocsp_req *r, size_t i, X509 *cacert)
{
    ASN1_OCTET_STRING *nh = NULL, *kh = NULL;
    ASN1_OBJECT *alg = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const EVP_MD *type;
    OCSP_CERTID *id;
    if (r == NULL || r->req == NULL || i >= r->n || cacert == NULL) {
        return false;
    }
    id = OCSP_onereq_get0_id(OCSP_request_onereq_get0(r->req, (int)i));
    if (id == NULL || OCSP_id_get0_info(&nh, &alg, &kh, NULL, id) != 1 ||
        (type = EVP_get_digestbyobj(alg)) == NULL) {
        ERR_clear_error();
        return false;
    }
    if (X509_NAME_digest(X509_get_subject_name(cacert), type, md, &mdlen) != 1 ||
        !octets_eq(nh, md, mdlen)) {
        ERR_clear_error();
        return false;
    }
    if (X509_pubkey_digest(cacert, type, md, &mdlen) != 1 || !octets_eq(kh, md, mdlen)) {
        ERR_clear_error();
        return false;
    }
    return true;
}

/* The digest a key signs with (ca/crl.h's choice), after checking that key is cert's. */
static const EVP_MD *signing_md(X509 *cert, EVP_PKEY *key, const char *what, struct err *e)
{
    enum ca_key_type t;
    if (cert == NULL || key == NULL) {
        err_set(e, ERRC_INVALID, "no %s certificate or key", what);
        return NULL;
    }
    if (ca_key_type_of(X509_get0_pubkey(cert), &t, e) != 0) {
        err_prefix(e, "%s certificate", what);
        return NULL;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(cert), key) != 1) {
        ERR_clear_error();
        err_set(e, ERRC_INVALID, "the %s key does not match its certificate", what);
        return NULL;
    }
    return t == CA_KEY_EC_P384 ? EVP_sha384() : EVP_sha256();
}

static int check_ca(X509 *cacert, struct err *e)
{
    uint32_t xf;
    if (cacert == NULL) {
        return err_set(e, ERRC_INVALID, "no CA certificate");
    }
    xf = X509_get_extension_flags(cacert);
    if (X509_check_ca(cacert) != 1 || (xf & EXFLAG_INVALID)) {
        return err_set(e, ERRC_INVALID, "the CA certificate has no basicConstraints CA:TRUE");
    }
    return 0;
}

int ca_ocsp_signer_check(X509 *cacert, X509 *cert, time_t now, struct err *e)
{
    uint32_t xf;
    if (check_ca(cacert, e) != 0 || cert == NULL) {
        return e->code ? -1 : err_set(e, ERRC_INVALID, "no responder certificate");
    }
    xf = X509_get_extension_flags(cert);
    if (X509_check_issued(cacert, cert) != X509_V_OK ||
        X509_verify(cert, X509_get0_pubkey(cacert)) != 1) {
        ERR_clear_error();
        return err_set(e, ERRC_INVALID, "the responder certificate was not issued by the CA");
    }
    if ((xf & EXFLAG_INVALID) || !(xf & EXFLAG_XKUSAGE) ||
        !(X509_get_extended_key_usage(cert) & XKU_OCSP_SIGN)) {
        return err_set(e, ERRC_INVALID, "the responder certificate lacks id-kp-OCSPSigning");
    }
    if (X509_cmp_time(X509_get0_notBefore(cert), &now) > 0 ||
        X509_cmp_time(X509_get0_notAfter(cert), &now) <= 0) {
        ERR_clear_error();
        return err_set(e, ERRC_INVALID, "the responder certificate is not valid now");
    }
    return 0;
}

int ca_ocsp_resp_build(const struct ca_ocsp_req *r, const struct ca_ocsp_resp_params *p,
                       struct buf *der, struct err *e)
{
    OCSP_BASICRESP *bs = NULL;
    OCSP_RESPONSE *resp = NULL;
    EVP_MD_CTX *mctx = NULL;
    ASN1_TIME *thisupd = NULL, *nextupd = NULL, *revtime = NULL;
    unsigned char *enc = NULL;
    const EVP_MD *md;
    bool delegated;
    int len, rc = -1;
    if (r == NULL || r->req == NULL || p == NULL || p->single == NULL || p->validity <= 0) {
        return err_set(e, ERRC_INVALID, "an OCSP response needs a request, answers and a validity");
    }
    if (check_ca(p->cacert, e) != 0) {
        return -1;
    }
    delegated = p->signer != NULL && X509_cmp(p->signer, p->cacert) != 0;
    if (delegated && ca_ocsp_signer_check(p->cacert, p->signer, p->now, e) != 0) {
        return -1;
    }
    if ((md = signing_md(p->signer, p->key, delegated ? "responder" : "CA", e)) == NULL) {
        return -1;
    }
    if ((bs = OCSP_BASICRESP_new()) == NULL || (thisupd = ASN1_TIME_set(NULL, p->now)) == NULL ||
        (nextupd = ASN1_TIME_adj(NULL, p->now, 0, (long)p->validity)) == NULL) {
        err_openssl(e, ERRC_INTERNAL, "cannot allocate an OCSP response");
        goto out;
    }
    for (size_t i = 0; i < r->n; i++) {
        const struct ca_ocsp_single *s = &p->single[i];
        OCSP_CERTID *id = OCSP_onereq_get0_id(OCSP_request_onereq_get0(r->req, (int)i));
        int status = s->status == CA_OCSP_GOOD      ? V_OCSP_CERTSTATUS_GOOD
                     : s->status == CA_OCSP_REVOKED ? V_OCSP_CERTSTATUS_REVOKED
                                                    : V_OCSP_CERTSTATUS_UNKNOWN;
        int reason = OCSP_REVOKED_STATUS_NOSTATUS;
        ASN1_TIME_free(revtime);
        revtime = NULL;
        if (s->status == CA_OCSP_REVOKED) {
            if (ca_crl_reason_name(s->reason) == NULL) {
                err_set(e, ERRC_INVALID, "unknown revocation reason %d", s->reason);
                goto out;
            }
            reason = s->reason == CA_CRL_UNSPECIFIED ? OCSP_REVOKED_STATUS_NOSTATUS : s->reason;
            if ((revtime = ASN1_TIME_set(NULL, s->revoked_at)) == NULL) {
                err_openssl(e, ERRC_INTERNAL, "cannot encode a revocation time");
                goto out;
            }
        }
        if (OCSP_basic_add1_status(bs, id, status, reason, revtime, thisupd, nextupd) == NULL) {
            err_openssl(e, ERRC_INTERNAL, "cannot add a SingleResponse");
            goto out;
        }
    }
    if (r->has_nonce && OCSP_copy_nonce(bs, r->req) <= 0) {
        err_openssl(e, ERRC_INTERNAL, "cannot copy the request's nonce");
        goto out;
    }
    if ((mctx = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestSignInit(mctx, NULL, md, NULL, p->key) != 1 ||
        OCSP_basic_sign_ctx(bs, p->signer, mctx, NULL,
                            OCSP_RESPID_KEY | (delegated ? 0 : OCSP_NOCERTS)) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot sign the OCSP response");
        goto out;
    }
    if ((resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs)) == NULL ||
        (len = i2d_OCSP_RESPONSE(resp, &enc)) <= 0) {
        err_openssl(e, ERRC_INTERNAL, "cannot encode the OCSP response");
        goto out;
    }
    buf_add(der, enc, (size_t)len);
    rc = 0;
out:
    OPENSSL_free(enc);
    OCSP_RESPONSE_free(resp);
    EVP_MD_CTX_free(mctx);
    ASN1_TIME_free(thisupd);
    ASN1_TIME_free(nextupd);
    ASN1_TIME_free(revtime);
    OCSP_BASICRESP_free(bs);
    if (rc != 0) {
        ERR_clear_error();
    }
    return rc;
}

void ca_ocsp_error_resp(enum ca_ocsp_rstatus st, struct buf *der)
{
    /* OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } without responseBytes */
    uint8_t b[5] = { 0x30, 0x03, 0x0a, 0x01, (uint8_t)st };
    buf_add(der, b, sizeof(b));
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value, struct err *e)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (ext == NULL || X509_add_ext(x, ext, -1) != 1) {
        X509_EXTENSION_free(ext);
        return err_openssl(e, ERRC_INTERNAL, "cannot add the extension %s", OBJ_nid2sn(nid));
    }
    X509_EXTENSION_free(ext);
    return 0;
}

/* "CN=<the CA's CN> OCSP responder" */
static X509_NAME *responder_name(X509 *cacert)
{
    const X509_NAME *cn = X509_get_subject_name(cacert);
    int i = X509_NAME_get_index_by_NID(cn, NID_commonName, -1);
    unsigned char *utf8 = NULL;
    char name[65];
    X509_NAME *out = X509_NAME_new();
    int n = i >= 0
                ? ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(cn, i)))
                : -1;
    /* an ub-common-name of 64: the CA's name is cut, the suffix kept */
    snprintf(name, sizeof(name), "%.*s OCSP responder", n > 0 ? (n > 49 ? 49 : n) : 2,
             n > 0 ? (const char *)utf8 : "CA");
    OPENSSL_free(utf8);
    if (out == NULL || X509_NAME_add_entry_by_NID(out, NID_commonName, MBSTRING_UTF8,
                                                  (const unsigned char *)name, -1, -1, 0) != 1) {
        X509_NAME_free(out);
        return NULL;
    }
    return out;
}

int ca_ocsp_signer_issue(X509 *cacert, EVP_PKEY *cakey, EVP_PKEY *pub, const uint8_t *serial,
                         size_t serial_len, int days, time_t now, struct buf *der, struct err *e)
{
    X509 *x = NULL;
    X509_NAME *subject = NULL;
    BIGNUM *bn = NULL;
    ASN1_INTEGER *sn = NULL;
    X509V3_CTX ctx;
    unsigned char *enc = NULL;
    const EVP_MD *md;
    int len, rc = -1;
    if (check_ca(cacert, e) != 0 || (md = signing_md(cacert, cakey, "CA", e)) == NULL) {
        return -1;
    }
    if (days < 1 || days > 3650) {
        return err_set(e, ERRC_INVALID, "a responder certificate is valid 1 to 3650 days");
    }
    if (pub == NULL || serial == NULL || serial_len < 1 || serial_len > 20) {
        return err_set(e, ERRC_INVALID, "a responder certificate needs a key and a serial");
    }
    if ((x = X509_new()) == NULL || X509_set_version(x, 2) != 1 ||
        (bn = BN_bin2bn(serial, (int)serial_len, NULL)) == NULL ||
        (sn = BN_to_ASN1_INTEGER(bn, NULL)) == NULL || X509_set_serialNumber(x, sn) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(cacert)) != 1 ||
        (subject = responder_name(cacert)) == NULL || X509_set_subject_name(x, subject) != 1 ||
        X509_time_adj_ex(X509_getm_notBefore(x), 0, -300, &now) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), days, 0, &now) == NULL ||
        X509_set_pubkey(x, pub) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot build the responder certificate");
        goto out;
    }
    X509V3_set_ctx(&ctx, cacert, x, NULL, NULL, 0);
    if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE", e) != 0 ||
        add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature", e) != 0 ||
        add_ext(x, &ctx, NID_ext_key_usage, "OCSPSigning", e) != 0 ||
        add_ext(x, &ctx, NID_id_pkix_OCSP_noCheck, "ignored", e) != 0 ||
        add_ext(x, &ctx, NID_subject_key_identifier, "hash", e) != 0 ||
        add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always", e) != 0) {
        goto out;
    }
    if (X509_sign(x, cakey, md) <= 0) {
        err_openssl(e, ERRC_INTERNAL, "cannot sign the responder certificate");
        goto out;
    }
    if (X509_verify(x, X509_get0_pubkey(cacert)) != 1) {
        err_openssl(e, ERRC_INTERNAL, "the responder certificate does not verify with the CA key");
        goto out;
    }
    if ((len = i2d_X509(x, &enc)) <= 0) {
        err_openssl(e, ERRC_INTERNAL, "cannot encode the responder certificate");
        goto out;
    }
    buf_add(der, enc, (size_t)len);
    rc = 0;
out:
    OPENSSL_free(enc);
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    X509_NAME_free(subject);
    X509_free(x);
    if (rc != 0) {
        ERR_clear_error();
    }
    return rc;
}
