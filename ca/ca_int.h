/*
 * Internal to ca/: the profile's layout, the strict DER walker and writer, the CSR walk, subject
 * and SAN validation shared by the fast and the slow issuing path. Never include this outside
 * ca/ (tests included: they use the public headers).
 */
#ifndef CA_CA_INT_H
#define CA_CA_INT_H

#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ca/key.h"
#include "ca/names.h"
#include "ca/profile.h"
#include "core/buf.h"
#include "core/err.h"

#define CAI_EKU_MAX 4

struct ca_profile {
    char *name;
    char *description;
    bool key_allowed[CA_KEY__COUNT];
    int64_t validity_s;
    int64_t backdate_s;
    char *cn_pattern;
    regex_t cn_re;
    bool cn_re_ok;
    bool attr_allowed[CAI_ATTR__COUNT];
    bool attr_required[CAI_ATTR__COUNT];
    bool attr_forbidden[CAI_ATTR__COUNT];
    bool san_allowed[CAI_SAN__COUNT];
    char *san_pattern[CAI_SAN__COUNT];
    regex_t san_re[CAI_SAN__COUNT];
    size_t san_max;
    uint8_t eku[CAI_EKU_MAX]; /* enum cai_eku, in the profile's order */
    size_t eku_n;
    bool jitr;
    bool refuse_beyond_ca; /* "beyond_ca": "refuse": no certificate cut short by its CA */
    /* crl_distribution_points, authority_info_access: the DER of those Extensions, one after
     * the other (NULL when the profile has none), appended to every certificate as they are */
    uint8_t *url_exts;
    size_t url_exts_len;
};

/* "ec-p256, ec-p384, rsa-2048" */
void cai_profile_allowed_keys(const struct ca_profile *p, char *out, size_t cap);
bool cai_profile_has_eku(const struct ca_profile *p, enum cai_eku k);

/* --- strict DER --------------------------------------------------------------------------- */

struct cai_tlv {
    int tag;              /* tag number (low-tag form only) */
    int cls;              /* V_ASN1_UNIVERSAL, V_ASN1_CONTEXT_SPECIFIC, ... */
    bool cons;            /* constructed */
    const uint8_t *start; /* header */
    const uint8_t *val;   /* contents */
    size_t len;           /* contents length */
    size_t total;         /* header + contents */
};

/* Reads one TLV at *p (ASN1_get_object) and advances *p past it. Fails on errors, indefinite or
 * non-minimal lengths, high tag numbers and contents running past end. */
int cai_der_next(const uint8_t **p, const uint8_t *end, struct cai_tlv *t);
/* Checks that [der, der+len) is exactly one DER TLV tree: every constructed value recursively,
 * definite minimal lengths, no trailing bytes, minimal INTEGERs, DER BOOLEANs. */
int cai_der_check(const uint8_t *der, size_t len);
size_t cai_der_hdr_len(size_t len);
/* Writes a header to out (cai_der_hdr_len(len) bytes). */
size_t cai_der_hdr(uint8_t *out, uint8_t tag, size_t len);
void cai_der_add_hdr(struct buf *b, uint8_t tag, size_t len);
void cai_der_add(struct buf *b, uint8_t tag, const void *content, size_t len);

/* --- the CSR ---------------------------------------------------------------------------------- */

/* The pieces of a CertificationRequest (RFC 2986), all inside the input buffer. */
struct cai_csr {
    const uint8_t *cri; /* CertificationRequestInfo, whole TLV: the signed bytes */
    size_t cri_len;
    const uint8_t *subject; /* Name, whole TLV */
    size_t subject_len;
    const uint8_t *spki; /* SubjectPublicKeyInfo, whole TLV */
    size_t spki_len;
    const uint8_t *attrs; /* [0] attributes, whole TLV */
    size_t attrs_len;
    const uint8_t *sigalg; /* AlgorithmIdentifier, whole TLV */
    size_t sigalg_len;
    const uint8_t *sig; /* BIT STRING contents without the unused-bits octet */
    size_t sig_len;
};

/* PEM ("CERTIFICATE REQUEST" or "NEW CERTIFICATE REQUEST") or DER to DER: *der points into in or
 * into tmp. ERRC_INVALID "CSR is not valid PEM or DER" and friends. */
int cai_csr_der(const uint8_t *in, size_t len, struct buf *tmp, const uint8_t **der,
                size_t *der_len, struct err *e);
/* Strict structural walk of a DER CSR (cai_der_check plus the RFC 2986 shape, version 0). */
int cai_csr_walk(const uint8_t *der, size_t len, struct cai_csr *c, struct err *e);
/* The exact shape the fast path accepts: P-256 named curve, uncompressed point, no attributes,
 * ecdsa-with-SHA256 without parameters. */
bool cai_csr_is_fast(const struct cai_csr *c);
#define CAI_P256_SPKI_LEN  91
#define CAI_P256_POINT_OFF 26
#define CAI_P256_POINT_LEN 65

/* The certificate subject built from the CSR's Name under the profile's rules. */
struct cai_subject {
    struct buf der; /* Name, whole TLV, re-encoded */
    char cn[257];
    char text[1024]; /* RFC 2253 */
};
int cai_subject_build(const struct ca_profile *p, const uint8_t *name, size_t len,
                      struct cai_subject *out, struct err *e);

/* Key type of a decoded public key, checked against the profile; the message names the key
 * ("rsa-1024", "ec-p192", "ed25519") and the allowed list. */
int cai_key_check(const struct ca_profile *p, EVP_PKEY *pk, enum ca_key_type *out, struct err *e);
/* Denial message for a key type the profile does not list. */
int cai_key_denied(const struct ca_profile *p, const char *keyname, struct err *e);

/* The slow path's CSR checks after d2i_X509_REQ: signature algorithm, attributes, requested
 * extensions. *sans receives validated, rebuilt subjectAltNames (NULL when none). */
int cai_req_check_attrs(const struct ca_profile *p, X509_REQ *req, GENERAL_NAMES **sans,
                        struct err *e);

#endif
