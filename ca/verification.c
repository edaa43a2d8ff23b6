/*
 * The verification certificate for RegisterCACertificate (ca/verification.h). Kept apart from
 * the issuing engine: it is not a device certificate, follows no profile and is never audited
 * or indexed; its key pair exists only for the length of this function.
 */
#include "ca/verification.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "ca/key.h"

static bool code_ok(const char *code)
{
    size_t n = code ? strlen(code) : 0;
    if (n == 0 || n > 64) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = code[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            return false;
        }
    }
    return true;
}

int ca_verification_cert(EVP_PKEY *ca_key, X509 *ca_cert, const char *code, struct buf *pem,
                         struct err *e)
{
    EVP_PKEY *tmp = NULL;
    X509 *x = NULL;
    X509_NAME *name = NULL;
    BIGNUM *bn = NULL;
    BIO *bio = NULL;
    X509_EXTENSION *ext = NULL;
    unsigned char serial[16];
    enum ca_key_type kt;
    struct err ignore = ERR_INIT;
    const EVP_MD *md = NULL;
    char *data = NULL;
    long n = 0;
    int rc = -1;
    if (!code_ok(code)) {
        return err_set(e, ERRC_INVALID,
                       "registration code must be 1 to 64 letters or digits, not '%.80s'",
                       code ? code : "");
    }
    if (ca_key == NULL || ca_cert == NULL) {
        return err_set(e, ERRC_INVALID,
                       "verification certificate needs the CA key and certificate");
    }
    if (X509_check_private_key(ca_cert, ca_key) != 1) {
        /* engine keys cannot always be checked this way: compare the public halves instead */
        EVP_PKEY *pub = X509_get0_pubkey(ca_cert);
        ERR_clear_error();
        if (pub == NULL || EVP_PKEY_eq(pub, ca_key) != 1) {
            ERR_clear_error();
            return err_set(e, ERRC_INVALID, "the CA key does not match the CA certificate");
        }
    }
    if ((tmp = EVP_EC_gen("P-256")) == NULL) {
        err_openssl(e, ERRC_INTERNAL, "cannot generate the throwaway key");
        goto out;
    }
    if ((x = X509_new()) == NULL || (name = X509_NAME_new()) == NULL ||
        X509_set_version(x, X509_VERSION_3) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)code, -1, -1,
                                   0) != 1 ||
        X509_set_subject_name(x, name) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(ca_cert)) != 1 ||
        X509_set_pubkey(x, tmp) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot build the verification certificate");
        goto out;
    }
    if (RAND_bytes(serial, sizeof(serial)) != 1) {
        err_openssl(e, ERRC_INTERNAL, "no random serial");
        goto out;
    }
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    if ((bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
        X509_gmtime_adj(X509_getm_notBefore(x), -300) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 86400) == NULL) {
        err_openssl(e, ERRC_INTERNAL, "cannot set serial or validity");
        goto out;
    }
    if ((ext = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "CA:FALSE")) == NULL ||
        X509_add_ext(x, ext, -1) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot add basicConstraints");
        goto out;
    }
    md = ca_key_type_of(ca_key, &kt, &ignore) == 0 && kt == CA_KEY_EC_P384 ? EVP_sha384()
                                                                           : EVP_sha256();
    if (X509_sign(x, ca_key, md) <= 0) {
        err_openssl(e, ERRC_INTERNAL, "cannot sign the verification certificate with the CA key");
        goto out;
    }
    if ((bio = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_X509(bio, x) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot encode the verification certificate");
        goto out;
    }
    n = BIO_get_mem_data(bio, &data);
    buf_add(pem, data, (size_t)n);
    rc = 0;
out:
    X509_EXTENSION_free(ext);
    BIO_free(bio);
    BN_free(bn);
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(tmp);
    return rc;
}
