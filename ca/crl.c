/*
 * CRLs on OpenSSL's X509_CRL (see crl.h). A CRL is signed rarely (on each revocation and on a
 * schedule), so this takes the ordinary OpenSSL path rather than the pre-encoded one of
 * ca/issue.c; what matters here is that the result is exactly what RFC 5280 asks for and that
 * a wrong key cannot publish a CRL nobody can verify: the signature is checked before the bytes
 * leave. Entries are sorted by serial (X509_CRL_sort), which also makes a CRL of the same set
 * the same apart from its times, number and (ECDSA) signature.
 */
#include "ca/crl.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <strings.h>

#include "ca/issue.h"
#include "ca/key.h"
#include "core/util.h"

#define CRL_SERIAL_HEX_MAX 40 /* 20 octets, RFC 5280 §4.1.2.2 */

/* Checklist: a reason added to enum ca_crl_reason needs its row here. */
static const struct {
    int code;
    const char *name;
} reasons[] = {
    { CA_CRL_UNSPECIFIED, "unspecified" },
    { CA_CRL_KEY_COMPROMISE, "keyCompromise" },
    { CA_CRL_CA_COMPROMISE, "cACompromise" },
    { CA_CRL_AFFILIATION_CHANGED, "affiliationChanged" },
    { CA_CRL_SUPERSEDED, "superseded" },
    { CA_CRL_CESSATION_OF_OPERATION, "cessationOfOperation" },
    { CA_CRL_CERTIFICATE_HOLD, "certificateHold" },
    { CA_CRL_REMOVE_FROM_CRL, "removeFromCRL" },
    { CA_CRL_PRIVILEGE_WITHDRAWN, "privilegeWithdrawn" },
    { CA_CRL_AA_COMPROMISE, "aACompromise" },
};

const char *ca_crl_reason_name(int reason)
{
    for (size_t i = 0; i < ARRAY_LEN(reasons); i++) {
        if (reasons[i].code == reason) {
            return reasons[i].name;
        }
    }
    return NULL;
}

int ca_crl_reason_parse(const char *name, enum ca_crl_reason *out, struct err *e)
{
    for (size_t i = 0; name && i < ARRAY_LEN(reasons); i++) {
        if (strcasecmp(name, reasons[i].name) != 0) {
            continue;
        }
        if (reasons[i].code == CA_CRL_REMOVE_FROM_CRL) {
            return err_set(e, ERRC_INVALID,
                           "reason 'removeFromCRL' is not supported: it belongs to delta CRLs");
        }
        *out = (enum ca_crl_reason)reasons[i].code;
        return 0;
    }
    return err_set(e, ERRC_INVALID,
                   "unknown reason '%s' (unspecified, keyCompromise, cACompromise, "
                   "affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, "
                   "aACompromise)",
                   name ? name : "");
}

/* The serial's ASN1_INTEGER, or NULL with *e set. */
static ASN1_INTEGER *serial_of(const char *hex, struct err *e)
{
    size_t len = hex ? strlen(hex) : 0;
    BIGNUM *bn = NULL;
    ASN1_INTEGER *ai = NULL;
    if (len == 0 || len > CRL_SERIAL_HEX_MAX || strspn(hex, "0123456789abcdefABCDEF") != len) {
        err_set(e, ERRC_INVALID, "CRL entry serial '%s' is not 1 to %d hex digits", hex ? hex : "",
                CRL_SERIAL_HEX_MAX);
        return NULL;
    }
    if (BN_hex2bn(&bn, hex) != (int)len) {
        err_openssl(e, ERRC_INTERNAL, "cannot read serial '%s'", hex);
        goto out;
    }
    if (BN_is_zero(bn)) {
        err_set(e, ERRC_INVALID, "CRL entry serial '%s' is zero", hex);
        goto out;
    }
    ai = BN_to_ASN1_INTEGER(bn, NULL);
    if (ai == NULL) {
        err_openssl(e, ERRC_INTERNAL, "cannot encode serial '%s'", hex);
    }
out:
    BN_free(bn);
    return ai;
}

static X509_REVOKED *entry_new(const struct ca_crl_entry *en, struct err *e)
{
    X509_REVOKED *r = X509_REVOKED_new();
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *when = NULL;
    ASN1_ENUMERATED *code = NULL;
    const char *name = ca_crl_reason_name(en->reason);
    if (r == NULL) {
        err_openssl(e, ERRC_INTERNAL, "cannot allocate a CRL entry");
        goto fail;
    }
    if (name == NULL) {
        err_set(e, ERRC_INVALID, "CRL entry %s: unknown reason code %d",
                en->serial_hex ? en->serial_hex : "", en->reason);
        goto fail;
    }
    if ((serial = serial_of(en->serial_hex, e)) == NULL) {
        goto fail;
    }
    when = ASN1_TIME_set(NULL, en->revoked_at);
    if (when == NULL || X509_REVOKED_set_serialNumber(r, serial) != 1 ||
        X509_REVOKED_set_revocationDate(r, when) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot fill the CRL entry of %s", en->serial_hex);
        goto fail;
    }
    if (en->reason != CA_CRL_UNSPECIFIED) {
        code = ASN1_ENUMERATED_new();
        if (code == NULL || ASN1_ENUMERATED_set(code, en->reason) != 1 ||
            X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, code, 0, X509V3_ADD_DEFAULT) != 1) {
            err_openssl(e, ERRC_INTERNAL, "cannot add the reasonCode of %s", en->serial_hex);
            goto fail;
        }
    }
    ASN1_ENUMERATED_free(code);
    ASN1_TIME_free(when);
    ASN1_INTEGER_free(serial);
    return r;
fail:
    ASN1_ENUMERATED_free(code);
    ASN1_TIME_free(when);
    ASN1_INTEGER_free(serial);
    X509_REVOKED_free(r);
    return NULL;
}

/* authorityKeyIdentifier { keyIdentifier = the CA's SKI, else SHA-1 of its public key }. */
static int add_aki(X509_CRL *crl, X509 *cacert, struct err *e)
{
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(cacert);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = -1;
    if (akid == NULL || (akid->keyid = ASN1_OCTET_STRING_new()) == NULL) {
        err_openssl(e, ERRC_INTERNAL, "cannot allocate the authorityKeyIdentifier");
        goto out;
    }
    if (ski != NULL && ASN1_STRING_length(ski) > 0) {
        if (ASN1_OCTET_STRING_set(akid->keyid, ASN1_STRING_get0_data(ski),
                                  ASN1_STRING_length(ski)) != 1) {
            err_openssl(e, ERRC_INTERNAL, "cannot copy the CA's subjectKeyIdentifier");
            goto out;
        }
    } else if (X509_pubkey_digest(cacert, EVP_sha1(), md, &mdlen) != 1 ||
               ASN1_OCTET_STRING_set(akid->keyid, md, (int)mdlen) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot hash the CA's public key");
        goto out;
    }
    if (X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) !=
        1) {
        err_openssl(e, ERRC_INTERNAL, "cannot add the authorityKeyIdentifier");
        goto out;
    }
    rc = 0;
out:
    AUTHORITY_KEYID_free(akid);
    return rc;
}

/* The digest the CA signs with, after checking the certificate and the key. */
static const EVP_MD *check_signer(X509 *cacert, EVP_PKEY *key, struct err *e)
{
    enum ca_key_type t;
    uint32_t xf;
    if (cacert == NULL || key == NULL) {
        err_set(e, ERRC_INVALID, "no CA certificate or key");
        return NULL;
    }
    xf = X509_get_extension_flags(cacert);
    if (X509_check_ca(cacert) != 1 || (xf & EXFLAG_INVALID)) {
        err_set(e, ERRC_INVALID, "the CA certificate has no basicConstraints CA:TRUE");
        return NULL;
    }
    if ((xf & EXFLAG_KUSAGE) && !(X509_get_key_usage(cacert) & KU_CRL_SIGN)) {
        err_set(e, ERRC_INVALID, "the CA certificate's keyUsage lacks cRLSign");
        return NULL;
    }
    if (ca_key_type_of(X509_get0_pubkey(cacert), &t, e) != 0) {
        err_prefix(e, "CA certificate");
        return NULL;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(cacert), key) != 1) {
        ERR_clear_error();
        err_set(e, ERRC_INVALID, "the CA key does not match the CA certificate");
        return NULL;
    }
    return t == CA_KEY_EC_P384 ? EVP_sha384() : EVP_sha256();
}

int ca_crl_build(X509 *cacert, EVP_PKEY *key, const struct ca_crl_params *p, struct buf *der,
                 struct err *e)
{
    X509_CRL *crl = NULL;
    ASN1_TIME *tu = NULL, *nu = NULL;
    ASN1_INTEGER *num = NULL;
    X509_REVOKED *r = NULL;
    STACK_OF(X509_REVOKED) *revs = NULL;
    unsigned char *enc = NULL;
    int rc = -1, len;
    const EVP_MD *md = check_signer(cacert, key, e);
    if (md == NULL) {
        goto out;
    }
    if (p->next_update <= p->this_update) {
        err_set(e, ERRC_INVALID, "the CRL's nextUpdate must be after its thisUpdate");
        goto out;
    }
    if (p->number == 0) {
        err_set(e, ERRC_INVALID, "CRL number 0: numbers start at 1");
        goto out;
    }
    crl = X509_CRL_new();
    tu = ASN1_TIME_set(NULL, p->this_update);
    nu = ASN1_TIME_set(NULL, p->next_update);
    num = ASN1_INTEGER_new();
    if (crl == NULL || tu == NULL || nu == NULL || num == NULL ||
        X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(cacert)) != 1 ||
        X509_CRL_set1_lastUpdate(crl, tu) != 1 || X509_CRL_set1_nextUpdate(crl, nu) != 1 ||
        ASN1_INTEGER_set_uint64(num, p->number) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot start the CRL");
        goto out;
    }
    for (size_t i = 0; i < p->n; i++) {
        if ((r = entry_new(&p->entries[i], e)) == NULL) {
            goto out;
        }
        if (X509_CRL_add0_revoked(crl, r) != 1) {
            err_openssl(e, ERRC_INTERNAL, "cannot add the CRL entry of %s",
                        p->entries[i].serial_hex);
            goto out;
        }
        r = NULL;
    }
    if (X509_CRL_sort(crl) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot sort the CRL entries");
        goto out;
    }
    revs = X509_CRL_get_REVOKED(crl);
    for (int i = 1; i < sk_X509_REVOKED_num(revs); i++) {
        const ASN1_INTEGER *a = X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revs, i - 1));
        const ASN1_INTEGER *b = X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revs, i));
        if (ASN1_INTEGER_cmp(a, b) == 0) {
            char hex[CRL_SERIAL_HEX_MAX + 3];
            err_set(e, ERRC_INVALID, "serial %s is listed twice",
                    ca_serial_hex(b, hex, sizeof(hex)) == 0 ? hex : "?");
            goto out;
        }
    }
    if (add_aki(crl, cacert, e) != 0) {
        goto out;
    }
    if (X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, X509V3_ADD_DEFAULT) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot add the CRL number");
        goto out;
    }
    if (X509_CRL_sign(crl, key, md) <= 0) {
        err_openssl(e, ERRC_INTERNAL, "cannot sign the CRL with the CA key");
        goto out;
    }
    if (X509_CRL_verify(crl, X509_get0_pubkey(cacert)) != 1) {
        err_openssl(e, ERRC_INTERNAL, "the CRL's signature does not verify with the CA key");
        goto out;
    }
    len = i2d_X509_CRL(crl, &enc);
    if (len <= 0) {
        err_openssl(e, ERRC_INTERNAL, "cannot encode the CRL");
        goto out;
    }
    buf_add(der, enc, (size_t)len);
    rc = 0;
out:
    OPENSSL_free(enc);
    X509_REVOKED_free(r);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(tu);
    ASN1_TIME_free(nu);
    X509_CRL_free(crl);
    return rc;
}

static int time_of(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return -1;
    }
    *out = timegm(&tm);
    return 0;
}

/* The CRL in exactly [der, der+len), or NULL with *e set. */
static X509_CRL *crl_parse(const uint8_t *der, size_t len, struct err *e)
{
    const unsigned char *p = der;
    X509_CRL *crl;
    if (len == 0 || len > (size_t)INT32_MAX) {
        err_set(e, ERRC_INVALID, "not a CRL (%zu bytes)", len);
        return NULL;
    }
    crl = d2i_X509_CRL(NULL, &p, (long)len);
    if (crl == NULL || p != der + len) {
        err_openssl(e, ERRC_INVALID, "not a DER CRL");
        X509_CRL_free(crl);
        ERR_clear_error();
        return NULL;
    }
    return crl;
}

int ca_crl_info_parse(const uint8_t *der, size_t len, struct ca_crl_info *out, struct err *e)
{
    X509_CRL *crl = NULL;
    ASN1_INTEGER *num = NULL;
    int crit = -1, rc = -1;
    memset(out, 0, sizeof(*out));
    if ((crl = crl_parse(der, len, e)) == NULL) {
        return -1;
    }
    if (time_of(X509_CRL_get0_lastUpdate(crl), &out->this_update) != 0) {
        err_openssl(e, ERRC_INVALID, "the CRL's thisUpdate cannot be read");
        goto out;
    }
    if (X509_CRL_get0_nextUpdate(crl) != NULL &&
        time_of(X509_CRL_get0_nextUpdate(crl), &out->next_update) != 0) {
        err_openssl(e, ERRC_INVALID, "the CRL's nextUpdate cannot be read");
        goto out;
    }
    num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
    if (num == NULL && crit != -1) {
        err_openssl(e, ERRC_INVALID, "the CRL's number cannot be read");
        goto out;
    }
    if (num != NULL && ASN1_INTEGER_get_uint64(&out->number, num) != 1) {
        err_openssl(e, ERRC_INVALID, "the CRL's number is out of range");
        goto out;
    }
    crit = sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)); /* -1 for none */
    out->entries = crit > 0 ? (size_t)crit : 0;
    rc = 0;
out:
    ERR_clear_error();
    ASN1_INTEGER_free(num);
    X509_CRL_free(crl);
    return rc;
}

int ca_crl_serials(const uint8_t *der, size_t len, struct buf *out, struct err *e)
{
    X509_CRL *crl = NULL;
    STACK_OF(X509_REVOKED) * revs;
    char hex[CRL_SERIAL_HEX_MAX + 3]; /* 20 octets and the 00 of a first byte >= 0x80 */
    int rc = -1;
    if ((crl = crl_parse(der, len, e)) == NULL) {
        return -1;
    }
    revs = X509_CRL_get_REVOKED(crl);
    for (int i = 0; i < sk_X509_REVOKED_num(revs); i++) {
        const ASN1_INTEGER *sn = X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revs, i));
        if (ca_serial_hex(sn, hex, sizeof(hex)) != 0) {
            err_set(e, ERRC_INVALID, "CRL entry %d: serial out of range", i + 1);
            goto out;
        }
        buf_addstr(out, hex);
        buf_addch(out, '\n');
    }
    rc = 0;
out:
    ERR_clear_error();
    X509_CRL_free(crl);
    return rc;
}

void ca_crl_der_to_pem(struct buf *out, const uint8_t *der, size_t len)
{
    struct buf b64 = BUF_INIT;
    base64_encode(&b64, der, len);
    buf_addstr(out, "-----BEGIN X509 CRL-----\n");
    for (size_t i = 0; i < b64.len; i += 64) {
        buf_add(out, b64.data + i, b64.len - i < 64 ? b64.len - i : 64);
        buf_addch(out, '\n');
    }
    buf_addstr(out, "-----END X509 CRL-----\n");
    buf_release(&b64);
}
