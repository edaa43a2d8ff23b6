/*
 * The verification certificate of AWS IoT's CA registration (docs/aws-iot.md, "CA registration"):
 * proof that the registrant holds the CA's private key. Subject CN = the registration code
 * (GetRegistrationCode), issuer = the CA's subject, signed by the CA key (file or PKCS#11: any
 * EVP_PKEY), the subject key a throwaway P-256 key pair that is discarded, as AWS's own OpenSSL
 * recipe does. Valid from 5 minutes ago for one day; a random 16-byte serial; SHA-256 (SHA-384 for
 * a P-384 CA key); no extensions beyond basicConstraints CA:FALSE.
 */
#ifndef CA_VERIFICATION_H
#define CA_VERIFICATION_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"

/*
 * Appends the PEM of the verification certificate to pem. code: 1..64 characters of
 * [0-9A-Za-z] (AWS's codes are 64 hex digits), else ERRC_INVALID. The CA key must match the
 * CA certificate's public key (ERRC_INVALID otherwise): a wrong key would only fail at AWS.
 * Nothing is appended on failure.
 */
int ca_verification_cert(EVP_PKEY *ca_key, X509 *ca_cert, const char *code, struct buf *pem,
                         struct err *e) ATTR_WUR;

#endif
