/*
 * The name tables of ca/names.h.
 */
#include "ca/names.h"

#include <openssl/asn1.h>
#include <openssl/obj_mac.h>
#include <stdio.h>
#include <string.h>

const struct cai_attr_info cai_attrs[CAI_ATTR__COUNT] = {
    [CAI_ATTR_CN] = { "CN", { 0x55, 0x04, 0x03 }, 3, V_ASN1_UTF8STRING, 64, false },
    [CAI_ATTR_C] = { "C", { 0x55, 0x04, 0x06 }, 3, V_ASN1_PRINTABLESTRING, 2, false },
    [CAI_ATTR_ST] = { "ST", { 0x55, 0x04, 0x08 }, 3, V_ASN1_UTF8STRING, 128, false },
    [CAI_ATTR_L] = { "L", { 0x55, 0x04, 0x07 }, 3, V_ASN1_UTF8STRING, 128, false },
    [CAI_ATTR_O] = { "O", { 0x55, 0x04, 0x0a }, 3, V_ASN1_UTF8STRING, 64, false },
    [CAI_ATTR_OU] = { "OU", { 0x55, 0x04, 0x0b }, 3, V_ASN1_UTF8STRING, 64, true },
    [CAI_ATTR_SERIAL] = { "serialNumber",
                          { 0x55, 0x04, 0x05 },
                          3,
                          V_ASN1_PRINTABLESTRING,
                          64,
                          false },
    [CAI_ATTR_EMAIL] = { "emailAddress",
                         { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01 },
                         9,
                         V_ASN1_IA5STRING,
                         255,
                         false },
    [CAI_ATTR_DC] = { "DC",
                      { 0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19 },
                      10,
                      V_ASN1_IA5STRING,
                      63,
                      true },
};

const char *const cai_san_names[CAI_SAN__COUNT] = {
    [CAI_SAN_DNS] = "dns",
    [CAI_SAN_URI] = "uri",
    [CAI_SAN_EMAIL] = "email",
    [CAI_SAN_IP] = "ip",
};

const struct cai_eku_info cai_ekus[CAI_EKU__COUNT] = {
    [CAI_EKU_CLIENT_AUTH] = { "clientAuth",
                              NID_client_auth,
                              { 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02 } },
    [CAI_EKU_SERVER_AUTH] = { "serverAuth",
                              NID_server_auth,
                              { 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01 } },
};

const char *const cai_key_type_names[CA_KEY__COUNT] = {
    [CA_KEY_EC_P256] = "ec-p256",   [CA_KEY_EC_P384] = "ec-p384",   [CA_KEY_RSA_2048] = "rsa-2048",
    [CA_KEY_RSA_3072] = "rsa-3072", [CA_KEY_RSA_4096] = "rsa-4096",
};

int cai_attr_parse(const char *name)
{
    for (int i = 0; i < CAI_ATTR__COUNT; i++) {
        if (strcmp(name, cai_attrs[i].name) == 0) {
            return i;
        }
    }
    return -1;
}

int cai_eku_parse(const char *name)
{
    for (int i = 0; i < CAI_EKU__COUNT; i++) {
        if (strcmp(name, cai_ekus[i].name) == 0) {
            return i;
        }
    }
    return -1;
}

const char *cai_key_type_name(enum ca_key_type t)
{
    if ((unsigned)t >= CA_KEY__COUNT) {
        return "unknown";
    }
    return cai_key_type_names[t];
}

int cai_key_type_parse(const char *name)
{
    for (int i = 0; i < CA_KEY__COUNT; i++) {
        if (strcmp(name, cai_key_type_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

void cai_names_list(const char *const *names, const bool *on, size_t n, char *out, size_t cap)
{
    size_t off = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (on[i]) {
            int w = snprintf(out + off, cap - off, "%s%s", off ? ", " : "", names[i]);
            if (w > 0 && (size_t)w < cap - off) {
                off += (size_t)w;
            }
        }
    }
}
