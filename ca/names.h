/*
 * Internal to ca/: the names profiles and CSRs share, each in one table with its lookup: subject
 * attributes (the profile's spelling, OID, string type, RFC 5280 bound), SAN types, extended key
 * usages and key types. profile.c reads these names from a profile; csr.c and issue.c meet them
 * in CSRs and certificates. Never include this outside ca/.
 */
#ifndef CA_NAMES_H
#define CA_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ca/key.h"

/* Subject attributes a profile may name. Adding one? Update cai_attrs[] in ca/names.c and
 * docs/profiles.md. */
enum cai_attr {
    CAI_ATTR_CN,
    CAI_ATTR_C,
    CAI_ATTR_ST,
    CAI_ATTR_L,
    CAI_ATTR_O,
    CAI_ATTR_OU,
    CAI_ATTR_SERIAL,
    CAI_ATTR_EMAIL,
    CAI_ATTR_DC,
    CAI_ATTR__COUNT
};

struct cai_attr_info {
    const char *name; /* the profile's spelling: "CN", "O", "serialNumber", ... */
    uint8_t oid[10];  /* OBJECT IDENTIFIER contents */
    uint8_t oid_len;
    uint8_t out_tag;    /* string type written to certificates */
    uint16_t max_chars; /* RFC 5280 upper bounds */
    bool repeatable;    /* may appear in several RDNs (OU, DC) */
};
extern const struct cai_attr_info cai_attrs[CAI_ATTR__COUNT];
int cai_attr_parse(const char *name); /* index or -1 */

/* SAN types a profile may allow. Adding one? Update cai_san_names[] in ca/names.c. */
enum cai_san {
    CAI_SAN_DNS,
    CAI_SAN_URI,
    CAI_SAN_EMAIL,
    CAI_SAN_IP,
    CAI_SAN__COUNT
};
extern const char *const cai_san_names[CAI_SAN__COUNT];

/* Extended key usages. Adding one? Update cai_ekus[] in ca/names.c. */
enum cai_eku {
    CAI_EKU_CLIENT_AUTH,
    CAI_EKU_SERVER_AUTH,
    CAI_EKU__COUNT
};
struct cai_eku_info {
    const char *name;
    int nid;
    uint8_t oid[8]; /* id-kp-* contents, all 8 bytes long */
};
extern const struct cai_eku_info cai_ekus[CAI_EKU__COUNT];
int cai_eku_parse(const char *name); /* index or -1 */

/* Key types by their profile spelling ("ec-p256", "rsa-2048", ...). */
extern const char *const cai_key_type_names[CA_KEY__COUNT];
const char *cai_key_type_name(enum ca_key_type t); /* "unknown" out of range */
int cai_key_type_parse(const char *name);          /* enum ca_key_type or -1 */

/* The names[i] whose on[i] is set, ", "-separated, into out (what fits of it). */
void cai_names_list(const char *const *names, const bool *on, size_t n, char *out, size_t cap);

#endif
