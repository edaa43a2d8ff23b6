/*
 * The issuing engine: pure and synchronous, no network. Two phases, as Boulder's Prepare/Issue:
 *
 *   ca_prepare()  parses the CSR (PEM or DER), verifies its self-signature, checks it against the
 *                 profile and builds everything of the certificate but the serial;
 *   ca_sign()     takes the serial the caller reserved (store/, SET NX) and signs.
 *
 * Rejections are ERRC_INVALID (malformed input) or ERRC_DENIED (the profile forbids it) with a
 * message naming the problem; nothing is issued. The fast path (P-256 CSR, no attributes)
 * walks the CSR DER itself and splices the TBSCertificate from pre-encoded pieces; everything
 * else takes the ordinary OpenSSL path. Both give byte-identical structure for the same input.
 *
 * Threads: a struct ca_issuer is immutable after ca_issuer_new() and shared by threads; each
 * thread owns its struct ca_signer (reused digest/verify/sign contexts, serial randomness).
 */
#ifndef CA_ISSUE_H
#define CA_ISSUE_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ca/key.h"
#include "ca/profile.h"
#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"

#define CA_CSR_MAX      16384 /* larger CSRs are refused before parsing */
#define CA_SERIAL_MAX   20    /* RFC 5280 §4.1.2.2 */
#define CA_SERIAL_BYTES 16    /* 128 bits drawn; at least 64 are required */

struct ca_issuer;
struct ca_signer;

/* cacert and key (the CA's private key, e.g. ca_key_pkey()) are borrowed and must outlive the
 * issuer; the issuer pre-encodes the CA's name, signature algorithm and key identifier once.
 * hsm: the key lives in a token, so signing is serialised across threads (one mutex per issuer).
 * Fails (ERRC_INVALID) when the certificate is not a CA (basicConstraints CA:TRUE, keyUsage with
 * keyCertSign if present), the key does not match it, or the key is not P-256 (signs
 * ecdsa-with-SHA256), P-384 (ecdsa-with-SHA384) or RSA >= 2048 (sha256WithRSAEncryption). */
struct ca_issuer *ca_issuer_new(X509 *cacert, EVP_PKEY *key, bool hsm, struct err *e) ATTR_WUR;
void ca_issuer_free(struct ca_issuer *is);
X509 *ca_issuer_cert(const struct ca_issuer *is); /* borrowed */
/* For another signature with the issuer's key (an OCSP response): takes and releases the mutex
 * that serialises its signatures when the key is in a token; nothing otherwise. */
void ca_issuer_key_lock(const struct ca_issuer *is);
void ca_issuer_key_unlock(const struct ca_issuer *is);

struct ca_signer *ca_signer_new(void);
void ca_signer_free(struct ca_signer *s);
/* On by default. Off sends every CSR down the ordinary OpenSSL path (tests compare the two paths,
 * bench/sign_core measures both). */
void ca_signer_set_fast_path(struct ca_signer *s, bool on);

/* A positive, minimally encoded serial of CA_SERIAL_BYTES CSPRNG bytes (randomness drawn in
 * batches); len is at most CA_SERIAL_MAX. */
int ca_serial_draw(struct ca_signer *s, uint8_t out[CA_SERIAL_MAX], size_t *len,
                   struct err *e) ATTR_WUR;

struct ca_prepared {
    char cn[257];       /* the subject's commonName (<= 64 characters of UTF-8) */
    char subject[1024]; /* RFC 2253 form, for records and messages */
    enum ca_key_type key_type;
    time_t not_before;
    time_t not_after;
    bool validity_clamped;        /* not_after is the CA's, before the profile's validity */
    bool fast_path;               /* prepared by the fast path (for metrics and tests) */
    struct ca_prepared_int *_int; /* engine-private; freed by ca_prepared_release */
};

/* Checks a CSR (PEM or DER, at most CA_CSR_MAX bytes) against the profile and prepares the
 * certificate. now is the issuance time: notBefore = now - backdate (not before the CA's
 * notBefore), notAfter = now + validity capped at the CA certificate's notAfter
 * (validity_clamped says so), or, when the profile says "beyond_ca": "refuse", ERRC_DENIED
 * instead of a certificate its CA would cut short.
 * Errors: ERRC_TOO_LARGE (over CA_CSR_MAX), ERRC_INVALID (not PEM/DER, not strict DER, not a
 * PKCS#10 request, bad signature, malformed names), ERRC_DENIED (the profile refuses the key,
 * subject, requested extensions or SANs, or the CA is not valid at now), ERRC_INTERNAL.
 * On failure *out holds nothing to release (calling ca_prepared_release is harmless). p and is
 * are borrowed during the call only: *out keeps copies of what ca_sign needs. */
int ca_prepare(struct ca_signer *s, const struct ca_issuer *is, const struct ca_profile *p,
               const uint8_t *csr, size_t len, time_t now, struct ca_prepared *out,
               struct err *e) ATTR_WUR;
/* ca_prepare with the subject's commonName replaced by cn (added when the CSR has none; NULL:
 * as the CSR asks): the certificate names the identity an enrollment vouched for, whatever the
 * CSR says. The resulting subject is checked against the profile as a CSR's is. */
int ca_prepare_cn(struct ca_signer *s, const struct ca_issuer *is, const struct ca_profile *p,
                  const uint8_t *csr, size_t len, time_t now, const char *cn,
                  struct ca_prepared *out, struct err *e) ATTR_WUR;
void ca_prepared_release(struct ca_prepared *pr);

struct ca_issued {
    uint8_t *der; /* owned: xfree, or ca_issued_release */
    size_t der_len;
    char fingerprint[65]; /* lowercase hex SHA-256 of der: AWS IoT's certificateId */
    char
        serial_hex[2 * CA_SERIAL_MAX + 1]; /* lowercase, as encoded (no leading 00 unless needed) */
};

/* Signs a prepared certificate with the serial the caller reserved: 1..CA_SERIAL_MAX bytes,
 * positive, non-zero, minimally encoded (else ERRC_INVALID). is must be the issuer pr was
 * prepared with (else ERRC_INTERNAL). pr may be signed again with another serial. */
int ca_sign(struct ca_signer *s, const struct ca_issuer *is, const struct ca_prepared *pr,
            const uint8_t *serial, size_t serial_len, struct ca_issued *out,
            struct err *e) ATTR_WUR;
void ca_issued_release(struct ca_issued *c);

/* A serial as users type it (any case, ':' separators, leading zeros added or dropped) to the
 * canonical form the index is keyed by: lowercase hex of the minimal DER INTEGER contents.
 * ERRC_INVALID for non-hex, zero, or more than 20 octets. */
int ca_serial_normalise(const char *in, char out[41], struct err *e) ATTR_WUR;

/* The serial sn in that canonical form: lowercase hex of the DER INTEGER contents, the serial as
 * the certificate encodes it (`openssl x509 -serial` prints the same digits without the 00 octet
 * a first byte >= 0x80 needs; ca_serial_normalise accepts both). -1 and "" when sn is not a
 * non-negative INTEGER or its hex and NUL do not fit in cap (41 holds RFC 5280's 20 octets). */
int ca_serial_hex(const ASN1_INTEGER *sn, char *out, size_t cap);

/* PEM of a DER certificate, appended to out. */
void ca_der_to_pem(struct buf *out, const uint8_t *der, size_t len);

#endif
