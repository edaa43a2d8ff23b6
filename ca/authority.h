/*
 * The CA store: every CA of this installation lives in DATA/ca/NAME/:
 *   ca.json   metadata (name, key URI and type, parent, status, created, AWS registrations)
 *   cert.pem  the CA certificate (absent while a CSR for an external root is pending)
 *   ca.csr    the CSR of a CA waiting for `ca import`
 *   key.pem   the encrypted key, when the key URI is the default file: key
 *   pub.pem   the CA's public key (lets ca_authority_import check a certificate without a secret)
 * ca.json keys: name, created, key_uri, key_type, parent (null), status, subject ("/CN=..."),
 * pathlen (null for none), fingerprint ("" while pending), and from the certificate not_after,
 * serial, issuer; compromised (an object) once marked so. Other modules keep their data under
 * their own key; save() preserves it.
 * A CA is a self-signed root, an intermediate signed by another CA of the store (parent), or an
 * intermediate signed outside (CSR now, certificate later with ca_authority_import).
 * CA certificates: basicConstraints critical CA:TRUE with pathLenConstraint, keyUsage critical
 * keyCertSign + cRLSign (+ digitalSignature), SKI, AKI (not on roots), SHA-256/384 matching the key.
 */
#ifndef CA_AUTHORITY_H
#define CA_AUTHORITY_H

#include <jansson.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdint.h>

#include "ca/key.h"
#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"

enum ca_status {
    CA_ST_PENDING, /* CSR written, waiting for the external certificate */
    CA_ST_ACTIVE,  /* issues certificates */
    CA_ST_RETIRED, /* issues nothing; its certificates stay valid until they expire */
    CA_ST__COUNT
};
const char *ca_status_name(enum ca_status st); /* "pending", "active", "retired" */

struct ca_authority {
    char *name;
    char *key_uri;
    enum ca_key_type key_type;
    char *parent;       /* NULL for a root or an externally signed CA */
    enum ca_status status;
    X509 *cert;         /* NULL while pending */
    char fingerprint[65]; /* SHA-256 of the certificate DER, "" while pending */
    json_t *meta;       /* the whole ca.json (owned); other modules keep their data under a key */
};

struct ca_init_opts {
    const char *name;          /* [A-Za-z0-9][A-Za-z0-9._-]{0,63} */
    enum ca_key_type key_type;
    const char *key_uri;       /* NULL: file:DATA/ca/NAME/key.pem */
    const char *subject;       /* "/CN=Factory CA/O=Acme/C=DE"; NULL: "/CN=NAME" */
    int64_t days;              /* validity; capped at the parent's notAfter */
    int pathlen;               /* pathLenConstraint; -1 for none */
    const char *parent;        /* sign with this CA of the store */
    bool csr_only;             /* external root: write ca.csr, status pending */
    struct ca_key_opts key_opts;    /* for the new key */
    struct ca_key_opts parent_opts; /* to load the parent's key */
};

/* Creates the CA; on any failure nothing is left behind (the directory is removed, a token key
 * generated for it stays in the token and the message says so). With csr_only the CSR PEM is
 * appended to csr_out. */
int ca_authority_init(const char *datadir, const struct ca_init_opts *o, struct buf *csr_out,
                      struct err *e) ATTR_WUR;
/* Installs the externally signed certificate of a pending CA: it must carry the pending key,
 * be a CA certificate and be valid now. */
int ca_authority_import(const char *datadir, const char *name, const char *cert_path,
                        struct err *e) ATTR_WUR;
struct ca_authority *ca_authority_load(const char *datadir, const char *name,
                                       struct err *e) ATTR_WUR;
void ca_authority_free(struct ca_authority *a);
/* Marked compromised (jitrctl ca mark-compromised: ca.json "compromised": {"at": RFC 3339}):
 * such a CA is retired, cannot be activated again, and JITR revokes its certificates in AWS. */
bool ca_authority_compromised(const struct ca_authority *a);
/* A CA or alias name: 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit;
 * ERRC_INVALID naming it otherwise. */
int ca_name_check(const char *name, struct err *e) ATTR_WUR;
/* Writes a->meta (with name, status, ... refreshed from the struct) atomically. */
int ca_authority_save(const char *datadir, struct ca_authority *a, struct err *e) ATTR_WUR;
/* Names of all CAs, sorted; free each and the array with xfree. */
int ca_authority_list(const char *datadir, char ***names, size_t *n, struct err *e) ATTR_WUR;
/* The CA's certificate followed by its parents' up to the root, PEM. */
int ca_authority_chain_pem(const char *datadir, const struct ca_authority *a, struct buf *out,
                           struct err *e) ATTR_WUR;
/* Names of CAs whose parent is a; free like ca_authority_list. */
int ca_authority_children(const char *datadir, const char *name, char ***names, size_t *n,
                          struct err *e) ATTR_WUR;

/* Cross-signing, for a root rotation: a certificate for CA name's subject and key (its
 * basicConstraints, keyUsage and SKI) issued by CA by, valid from now until the earlier notAfter
 * of the two (or days, when shorter), so that devices which trust by accept chains of name.
 * Refused (ERRC_CONFLICT) for a pending, expired or compromised CA of the two, and when by's
 * pathLenConstraint leaves no room for name and the CAs name allows under it. *out: the
 * certificate (X509_free); nothing is written. by_opts: how to load by's key. */
int ca_authority_cross_sign(const char *datadir, const char *name, const char *by,
                            const struct ca_key_opts *by_opts, int64_t days, X509 **out,
                            struct err *e) ATTR_WUR;
/* Writes x as DATA/ca/NAME/cross-BY.pem (0644) and records it in ca.json ("cross_signed":
 * {BY: {file, serial, fingerprint, not_after}}); with in_chain also "chain_via": BY, which makes
 * ca_authority_chain_pem (every chain jitrd and jitrctl hand out for NAME and the CAs under it)
 * go up through the cross certificate to BY instead of NAME's own certificate. */
int ca_authority_cross_install(const char *datadir, const char *name, const char *by, X509 *x,
                               bool in_chain, struct err *e) ATTR_WUR;

#endif
