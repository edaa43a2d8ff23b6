/*
 * OCSP (RFC 6960, with the RFC 5019 profile), pure: no network, no disk, no index. jitrd's
 * responder (daemon/ocsp.c) decodes a request here, looks the serials up in the index itself and
 * has the response built and signed here.
 *
 * Requests: DER of an OCSPRequest, from a POST body or from a GET path (the base64 of the DER,
 * URL-encoded; the base64url alphabet and missing padding are accepted too). At most
 * CA_OCSP_MAX_IDS CertIDs; an optional signature is ignored (RFC 6960 §4.1.2: requests need not be
 * signed); the nonce extension (§4.4.1) may be at most CA_OCSP_NONCE_MAX bytes; any other critical
 * request extension is refused. Anything else is malformedRequest.
 *
 * Responses: a BasicOCSPResponse with the responderID byKey (RFC 5019 §2.2.3), producedAt,
 * one SingleResponse per CertID (the CertID as asked, thisUpdate, nextUpdate), the nonce echoed
 * when the request had one, signed by the CA key or by a delegated responder certificate the CA
 * issued (ca_ocsp_signer_issue: extendedKeyUsage id-kp-OCSPSigning, id-pkix-ocsp-nocheck), which
 * the response then carries. Signature algorithms as ca/crl.h's.
 */
#ifndef CA_OCSP_H
#define CA_OCSP_H

#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"

#define CA_OCSP_MAX_IDS   16
#define CA_OCSP_NONCE_MAX 64
/* The largest request accepted (a request of CA_OCSP_MAX_IDS SHA-512 CertIDs fits easily). */
#define CA_OCSP_REQUEST_MAX 8192

/* A CA's delegated responder, in DATA_DIR/ca/NAME/ (jitrctl ca ocsp-signer writes them, jitrd
 * reads them): the certificate (PEM) and its key (a file: key under the CA passphrase). */
#define CA_OCSP_SIGNER_CERT "ocsp-signer.pem"
#define CA_OCSP_SIGNER_KEY  "ocsp-signer.key"

/* OCSPResponseStatus (RFC 6960 §4.2.1) */
enum ca_ocsp_rstatus {
    CA_OCSP_SUCCESSFUL = 0,
    CA_OCSP_MALFORMED = 1,
    CA_OCSP_INTERNAL_ERROR = 2,
    CA_OCSP_TRY_LATER = 3,
    CA_OCSP_UNAUTHORIZED = 6,
};

/* CertStatus */
enum ca_ocsp_cstatus {
    CA_OCSP_GOOD = 0,
    CA_OCSP_REVOKED = 1,
    CA_OCSP_UNKNOWN = 2,
};

/* The request of a GET (the path after its leading '/'): percent-decoded, then base64 (either
 * alphabet, padding optional) decoded into der. ERRC_INVALID when it is not that or decodes to
 * more than CA_OCSP_REQUEST_MAX bytes. */
int ca_ocsp_get_decode(const char *path, struct buf *der, struct err *e) ATTR_WUR;

struct ca_ocsp_req {
    OCSP_REQUEST *req;
    size_t n;                         /* CertIDs */
    char serial[CA_OCSP_MAX_IDS][41]; /* lowercase hex as the index keys it ("" if unusable) */
    bool has_nonce;
};

/* Decodes an OCSPRequest; ERRC_INVALID (the responder answers malformedRequest) for anything
 * the header comment refuses. out needs ca_ocsp_req_release only when 0 is returned. */
int ca_ocsp_req_parse(const uint8_t *der, size_t len, struct ca_ocsp_req *out,
                      struct err *e) ATTR_WUR;
void ca_ocsp_req_release(struct ca_ocsp_req *r);

/* Does CertID i name cacert as its issuer (issuerNameHash and issuerKeyHash with the CertID's
 * hash algorithm)? False for an unknown hash algorithm. */
bool ca_ocsp_id_matches(const struct ca_ocsp_req *r, size_t i, X509 *cacert);

/* The answer about one CertID. */
struct ca_ocsp_single {
    enum ca_ocsp_cstatus status;
    time_t revoked_at; /* revoked */
    int reason;        /* revoked: enum ca_crl_reason; CA_CRL_UNSPECIFIED writes no reason */
};

struct ca_ocsp_resp_params {
    X509 *cacert;  /* the CA the CertIDs name */
    X509 *signer;  /* cacert, or a delegated responder certificate cacert issued */
    EVP_PKEY *key; /* signer's key */
    const struct ca_ocsp_single *single; /* one per CertID of the request */
    time_t now;                          /* producedAt and thisUpdate */
    int64_t validity;                    /* nextUpdate - thisUpdate, seconds (> 0) */
};

/* Builds and signs the successful response to r, appending its DER to der. ERRC_INVALID when
 * the signer is not the CA nor a responder certificate it issued with id-kp-OCSPSigning, or the
 * key is not the signer's; ERRC_INTERNAL when OpenSSL fails. On failure der is unchanged. */
int ca_ocsp_resp_build(const struct ca_ocsp_req *r, const struct ca_ocsp_resp_params *p,
                       struct buf *der, struct err *e) ATTR_WUR;

/* The unsigned response of an error status (malformedRequest, internalError, tryLater,
 * unauthorized), appended to der. */
void ca_ocsp_error_resp(enum ca_ocsp_rstatus st, struct buf *der);

/* Issues a delegated responder certificate for pub (the responder's public key): subject
 * "CN=<CA's CN> OCSP responder" (or the CA subject's CN absent), serial given (1..20 bytes, as
 * ca/issue.h draws them), validity days from now - 5 minutes, basicConstraints CA:FALSE,
 * keyUsage digitalSignature, extendedKeyUsage id-kp-OCSPSigning, id-pkix-ocsp-nocheck, subject
 * and authority key identifiers; signed with the CA key (verified before it is returned). DER
 * appended to der. ERRC_INVALID as ca_ocsp_resp_build for the CA and key, or days outside
 * 1..3650. */
int ca_ocsp_signer_issue(X509 *cacert, EVP_PKEY *cakey, EVP_PKEY *pub, const uint8_t *serial,
                         size_t serial_len, int days, time_t now, struct buf *der,
                         struct err *e) ATTR_WUR;

/* Is cert a usable delegated responder of cacert at now: issued by it (signature verifies),
 * id-kp-OCSPSigning, within its validity? ERRC_INVALID saying why not. */
int ca_ocsp_signer_check(X509 *cacert, X509 *cert, time_t now, struct err *e) ATTR_WUR;

#endif
