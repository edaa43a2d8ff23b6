/*
 * The test PKI of the jitr unit tests, in tt_tmpdir(): our CA (ca.pem, ca.key), another CA
 * (other.pem), a device of ours (dev.pem, dev.der: C=DE, O=Acme, serialNumber=SN-42,
 * CN=dev-0001, serial 0x1234abcd), the same key's certificate from the other CA (forged.pem,
 * forged.der), another device of ours (dev2.pem: CN=dev-0002). Made once per process (openssl
 * CLI).
 */
#ifndef TESTS_UNIT_JITR_PKI_H
#define TESTS_UNIT_JITR_PKI_H

#include <openssl/x509.h>

int jt_make_pki(void);
/* The certificate of a PEM file, NULL when it cannot be read. */
X509 *jt_load_cert(const char *path);

#endif
