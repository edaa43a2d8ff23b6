/*
 * Shared by ca/key.c and ca/key_pkcs11.c only: the PKCS#11 half of the key module. Nothing
 * outside ca/key*.c includes this header.
 */
#ifndef CA_KEY_INT_H
#define CA_KEY_INT_H

#include <openssl/evp.h>

#include "ca/key.h"
#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"

/* Generates a key pair of type t inside the token named by the pkcs11: uri (token= and object=
 * required): private part sensitive and never extractable. Refuses an existing label or id. */
int ca_key_pkcs11_generate(enum ca_key_type t, const char *uri, const struct ca_key_opts *o,
                           struct err *e) ATTR_WUR;
/* Loads the private key through the pkcs11 engine; *engine receives the functional engine
 * reference the key needs (release with ca_key_pkcs11_release after EVP_PKEY_free). */
EVP_PKEY *ca_key_pkcs11_load(const char *uri, const struct ca_key_opts *o, void **engine,
                             struct err *e) ATTR_WUR;
void ca_key_pkcs11_release(void *engine);
/* The uri without pin-value (safe to store and to print). */
void ca_key_pkcs11_redact(const char *uri, struct buf *out);

#endif
