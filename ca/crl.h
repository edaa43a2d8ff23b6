/*
 * Certificate revocation lists (RFC 5280 §5), pure: no network, no disk. The caller gathers the
 * revoked serials (store/), picks the CRL number and the times, and publishes the bytes.
 *
 * A CRL built here is v2 and carries: issuer = the CA certificate's subject; thisUpdate and
 * nextUpdate; the extensions authorityKeyIdentifier (the CA's SKI, else the SHA-1 of its public
 * key) and cRLNumber (both non-critical, §5.2.1, §5.2.3); one entry per revoked serial, sorted by
 * serial, with its revocationDate and a reasonCode entry extension unless the reason is
 * unspecified (§5.3.1: "the reason code CRL entry extension SHOULD be absent instead of using the
 * unspecified (0) reasonCode value"). Signed with the CA key (a file key or a PKCS#11 token key:
 * any EVP_PKEY): ecdsa-with-SHA256 for P-256, ecdsa-with-SHA384 for P-384, sha256WithRSAEncryption
 * for RSA (the algorithms ca/issue.h signs certificates with). The signature is verified against
 * the CA certificate's public key before the bytes are returned.
 */
#ifndef CA_CRL_H
#define CA_CRL_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"

/* CRLReason (RFC 5280 §5.3.1); the values are the ASN.1 ENUMERATED codes (7 is unused). */
enum ca_crl_reason {
    CA_CRL_UNSPECIFIED = 0,
    CA_CRL_KEY_COMPROMISE = 1,
    CA_CRL_CA_COMPROMISE = 2,
    CA_CRL_AFFILIATION_CHANGED = 3,
    CA_CRL_SUPERSEDED = 4,
    CA_CRL_CESSATION_OF_OPERATION = 5,
    CA_CRL_CERTIFICATE_HOLD = 6,
    CA_CRL_REMOVE_FROM_CRL = 8,
    CA_CRL_PRIVILEGE_WITHDRAWN = 9,
    CA_CRL_AA_COMPROMISE = 10,
};

/* The RFC 5280 ASN.1 name ("keyCompromise", "cACompromise", ...); NULL for a value not in the
 * enum. */
const char *ca_crl_reason_name(int reason);

/* Parses a reason name as a revocation may carry it: the RFC 5280 names, case-insensitively
 * ("keycompromise" is keyCompromise); certificateHold is a hold (issuance_release lifts it: the
 * next CRL leaves the serial out). Refused with ERRC_INVALID and a message saying why:
 * removeFromCRL (it belongs to delta CRLs, which we do not issue), anything else (the message
 * lists the accepted names). */
int ca_crl_reason_parse(const char *name, enum ca_crl_reason *out, struct err *e) ATTR_WUR;

struct ca_crl_entry {
    const char *serial_hex; /* lowercase or uppercase hex, 1..40 digits, positive and non-zero */
    time_t revoked_at;      /* revocationDate */
    int reason;             /* enum ca_crl_reason; CA_CRL_UNSPECIFIED writes no reasonCode */
};

struct ca_crl_params {
    time_t this_update;
    time_t next_update;                 /* must be after this_update */
    uint64_t number;                    /* cRLNumber: the caller keeps it monotonic per CA (>= 1) */
    const struct ca_crl_entry *entries; /* borrowed; any order (the CRL is sorted) */
    size_t n;
};

/* Builds and signs the CRL of the CA whose certificate is cacert and whose private key is key
 * (both borrowed), appending its DER to der. Errors: ERRC_INVALID (not a CA certificate, key
 * not P-256/P-384/RSA >= 2048 or not cacert's, nextUpdate not after thisUpdate, number 0, an
 * entry with a bad serial or an unknown reason, a serial listed twice), ERRC_INTERNAL (OpenSSL
 * failed, or the signature did not verify). On failure der is unchanged. */
int ca_crl_build(X509 *cacert, EVP_PKEY *key, const struct ca_crl_params *p, struct buf *der,
                 struct err *e) ATTR_WUR;

/* What the publisher needs back from a CRL it wrote: the number (0 when the CRL has none),
 * thisUpdate, nextUpdate (0 when absent) and the number of entries. Parses strict DER;
 * ERRC_INVALID when the bytes are not a CRL. No signature check. */
struct ca_crl_info {
    uint64_t number;
    time_t this_update;
    time_t next_update;
    size_t entries;
};
int ca_crl_info_parse(const uint8_t *der, size_t len, struct ca_crl_info *out,
                      struct err *e) ATTR_WUR;

/* The serials a DER CRL lists, appended to out one per line as lowercase hex of the minimal
 * DER INTEGER contents (the form the index and ca/issue.h use: "00" first only when needed), in
 * the CRL's order. ERRC_INVALID when the bytes are not a CRL. No signature check. */
int ca_crl_serials(const uint8_t *der, size_t len, struct buf *out, struct err *e) ATTR_WUR;

/* PEM ("-----BEGIN X509 CRL-----") of a DER CRL, appended to out. */
void ca_crl_der_to_pem(struct buf *out, const uint8_t *der, size_t len);

#endif
