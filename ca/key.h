/*
 * CA private keys, named by URI, behind one interface:
 *   file:PATH   PKCS#8 encrypted with AES-256-CBC under scrypt (PBES2); written 0600, refused when
 *               group- or world-accessible; the passphrase comes from the caller (a file or an
 *               environment variable, never argv).
 *   pkcs11:...  RFC 7512 URI (token=, object=, id=, pin-value=, pin-source=, module-path=); the key
 *               is generated inside the token and never leaves it. OpenSSL 3.0 on Debian 12 reaches
 *               it through the pkcs11 engine of libengine-pkcs11-openssl; that deprecated API is
 *               confined to ca/key_pkcs11.c.
 * A loaded key is an EVP_PKEY usable with the ordinary EVP signing calls in both cases.
 */
#ifndef CA_KEY_H
#define CA_KEY_H

#include <openssl/evp.h>
#include <stdbool.h>

#include "core/compat.h"
#include "core/err.h"

enum ca_key_type {
    CA_KEY_EC_P256,
    CA_KEY_EC_P384,
    CA_KEY_RSA_2048,
    CA_KEY_RSA_3072,
    CA_KEY_RSA_4096,
    CA_KEY__COUNT /* adding a type? update ca_key_type_names[] in ca/key.c */
};

/* "ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096" */
const char *ca_key_type_name(enum ca_key_type t);
int ca_key_type_parse(const char *name, enum ca_key_type *out) ATTR_WUR;
/* The type of a public key, or -1 with *e set (ERRC_INVALID) when it is none of the above. */
int ca_key_type_of(const EVP_PKEY *pk, enum ca_key_type *out, struct err *e) ATTR_WUR;

struct ca_key_opts {
    const char *secret;        /* passphrase for file:, PIN for pkcs11: (unless the URI has one) */
    const char *pkcs11_module; /* default module when the URI has no module-path */
};

struct ca_key;

/* Generates a key of type t at uri and returns it loaded. file: needs a passphrase of at least 8
 * characters (ERRC_INVALID) and refuses to overwrite an existing file (ERRC_CONFLICT); the
 * directory must exist. pkcs11: needs token= and object= (the label; id= optional, random when
 * absent) and refuses an object label/id that already exists in the token (ERRC_CONFLICT). */
struct ca_key *ca_key_generate(enum ca_key_type t, const char *uri, const struct ca_key_opts *o,
                               struct err *e) ATTR_WUR;
/* Loads a key. Wrong passphrase or PIN: ERRC_DENIED naming the URI; unreadable or
 * group/world-accessible file: ERRC_DENIED; missing file, token or object: ERRC_NOT_FOUND;
 * no passphrase/PIN, unencrypted or damaged key file, bad URI: ERRC_INVALID; PKCS#11 module or
 * engine not loadable: ERRC_UNAVAILABLE. The OpenSSL error queue is left empty on failure. */
struct ca_key *ca_key_load(const char *uri, const struct ca_key_opts *o, struct err *e) ATTR_WUR;
void ca_key_free(struct ca_key *k);

/* Borrowed; valid until ca_key_free. Signs with EVP_DigestSign / EVP_PKEY_sign. */
EVP_PKEY *ca_key_pkey(const struct ca_key *k);
enum ca_key_type ca_key_type(const struct ca_key *k);
/* The URI as given, minus any pin-value (safe to store in ca.json and to print). */
const char *ca_key_uri(const struct ca_key *k);
/* True for keys in a token: signing may need serialising (see ca/issue.c). */
bool ca_key_is_hsm(const struct ca_key *k);

#endif
