/*
 * libFuzzer target: CSR bytes through ca_prepare and, when accepted, ca_sign, on both issuing
 * paths (the fast path under a device-like profile, the ordinary path under a profile that
 * allows SANs). Random bytes rarely carry a valid self-signature, so each input is also used as
 * the contents of the subject Name and as the contents of the [0] attributes of a CSR that the
 * harness signs with a fixed P-256 key: that takes the fuzzer past the signature check into the
 * subject, attribute and SAN checks. The oracle: every certificate issued parses, re-encodes to
 * the same bytes and verifies under the CA key; every refusal carries a code and a message;
 * anything else aborts. The CA (P-256) is made in memory at start.
 * Built with -fsanitize=fuzzer,address,undefined when JITRCA_FUZZ=ON; replay.c runs the corpus
 * in every build.
 */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca/issue.h"
#include "ca/profile.h"
#include "core/mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char device_json[] =
    "{\"key_types\":[\"ec-p256\",\"ec-p384\",\"rsa-2048\",\"rsa-3072\",\"rsa-4096\"],"
    "\"validity_days\":3650,\"backdate_seconds\":300,"
    "\"subject\":{\"cn_pattern\":\"[A-Za-z0-9][A-Za-z0-9_:-]{0,63}\","
    "\"allowed\":[\"CN\",\"O\",\"OU\",\"C\",\"ST\",\"L\",\"serialNumber\"],"
    "\"forbidden\":[\"emailAddress\",\"DC\"]},"
    "\"san\":null,\"extended_key_usage\":[\"clientAuth\"],\"jitr\":true}";
static const char open_json[] =
    "{\"key_types\":[\"ec-p256\",\"ec-p384\",\"rsa-2048\",\"rsa-3072\",\"rsa-4096\"],"
    "\"validity_days\":30,\"subject\":{\"cn_pattern\":\".*\","
    "\"allowed\":[\"CN\",\"O\",\"OU\",\"C\",\"ST\",\"L\",\"serialNumber\",\"emailAddress\",\"DC\"]},"
    "\"san\":{\"dns\":\".*\",\"uri\":\".*\",\"email\":\".*\",\"ip\":\".*\",\"max\":8},"
    "\"extended_key_usage\":[\"clientAuth\",\"serverAuth\"]}";

static struct {
    EVP_PKEY *key;
    EVP_PKEY *dev;     /* signs the spliced CSRs */
    uint8_t spki[128]; /* its SubjectPublicKeyInfo */
    size_t spki_len;
    BIO *null;
    X509 *cert;
    struct ca_issuer *is;
    struct ca_signer *fast, *slow;
    struct ca_profile *device, *open;
    time_t now;
} F;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_csr: %s\n", what);
    ERR_print_errors_fp(stderr);
    abort();
}

static void add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v;
    X509V3_set_ctx(&v, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v, nid, value);
    if (ext == NULL || X509_add_ext(x, ext, -1) != 1) {
        die("CA extension");
    }
    X509_EXTENSION_free(ext);
}

static void init(void)
{
    struct err e = ERR_INIT;
    X509_NAME *n = X509_NAME_new();
    mem_install();
    F.now = time(NULL);
    F.key = EVP_EC_gen("P-256");
    F.cert = X509_new();
    if (F.key == NULL || F.cert == NULL || n == NULL ||
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)"Fuzz CA", -1, -1,
                                   0) != 1 ||
        X509_set_version(F.cert, X509_VERSION_3) != 1 ||
        ASN1_INTEGER_set(X509_get_serialNumber(F.cert), 1) != 1 ||
        X509_set_subject_name(F.cert, n) != 1 || X509_set_issuer_name(F.cert, n) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(F.cert), -86400) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(F.cert), 86400L * 3650) == NULL ||
        X509_set_pubkey(F.cert, F.key) != 1) {
        die("CA certificate");
    }
    add_ext(F.cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(F.cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(F.cert, NID_subject_key_identifier, "hash");
    if (X509_sign(F.cert, F.key, EVP_sha256()) <= 0) {
        die("CA signature");
    }
    X509_NAME_free(n);
    F.is = ca_issuer_new(F.cert, F.key, false, &e);
    F.device = ca_profile_load_json("device", "device", device_json, strlen(device_json), &e);
    F.open = ca_profile_load_json("open", "open", open_json, strlen(open_json), &e);
    if (F.is == NULL || F.device == NULL || F.open == NULL) {
        fprintf(stderr, "%s\n", e.msg);
        die("issuer or profiles");
    }
    F.dev = EVP_EC_gen("P-256");
    unsigned char *sp = F.spki;
    int spl = F.dev ? i2d_PUBKEY(F.dev, NULL) : -1;
    if (spl <= 0 || (size_t)spl > sizeof(F.spki) || i2d_PUBKEY(F.dev, &sp) != spl) {
        die("device key");
    }
    F.spki_len = (size_t)spl;
    F.null = BIO_new(BIO_s_null());
    F.fast = ca_signer_new();
    F.slow = ca_signer_new();
    ca_signer_set_fast_path(F.slow, false);
}

static void one(struct ca_signer *s, const struct ca_profile *p, const uint8_t *data, size_t size)
{
    struct ca_prepared pr;
    struct ca_issued ci;
    struct err e = ERR_INIT;
    uint8_t sn[CA_SERIAL_MAX];
    size_t sn_len = 0;
    if (ca_prepare(s, F.is, p, data, size, F.now, &pr, &e) != 0) {
        if (pr._int != NULL || e.code == ERRC_OK || e.msg[0] == '\0' || e.code == ERRC_INTERNAL) {
            fprintf(stderr, "%s\n", e.msg);
            die("a rejection without a proper error");
        }
        return;
    }
    if (ca_serial_draw(s, sn, &sn_len, &e) != 0 ||
        ca_sign(s, F.is, &pr, sn, sn_len, &ci, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        die("a prepared certificate does not sign");
    }
    const unsigned char *q = ci.der;
    X509 *x = d2i_X509(NULL, &q, (long)ci.der_len);
    unsigned char *re = NULL;
    int relen = x ? i2d_X509(x, &re) : -1;
    if (x == NULL || q != ci.der + ci.der_len || relen != (int)ci.der_len ||
        memcmp(re, ci.der, ci.der_len) != 0 || X509_verify(x, F.key) != 1 ||
        X509_NAME_print_ex(F.null, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) < 0) {
        die("an issued certificate does not parse, re-encode or verify");
    }
    OPENSSL_free(re);
    X509_free(x);
    ca_issued_release(&ci);
    ca_prepared_release(&pr);
    ERR_clear_error();
}

static size_t hdr(uint8_t *out, uint8_t tag, size_t len)
{
    out[0] = tag;
    if (len < 128) {
        out[1] = (uint8_t)len;
        return 2;
    }
    out[1] = 0x82;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    return 4;
}

/* CSR { CRI { 0, Name { name }, SPKI, [0] { attrs } }, ecdsa-with-SHA256, signature } */
static void spliced(const uint8_t *name, size_t nlen, const uint8_t *attrs, size_t alen)
{
    static const uint8_t alg[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                   0x48, 0xce, 0x3d, 0x04, 0x03, 0x02 };
    static uint8_t cri[10000], csr[10200];
    uint8_t h[4], sig[80], *w;
    size_t sig_len = sizeof(sig), n, body;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (nlen > 4000 || alen > 4000) {
        EVP_MD_CTX_free(md);
        return;
    }
    body = 3 + hdr(h, 0x30, nlen) + nlen + F.spki_len + hdr(h, 0xa0, alen) + alen;
    w = cri + hdr(cri, 0x30, body);
    memcpy(w, "\x02\x01\x00", 3);
    w += 3;
    w += hdr(w, 0x30, nlen);
    if (nlen) {
        memcpy(w, name, nlen);
        w += nlen;
    }
    memcpy(w, F.spki, F.spki_len);
    w += F.spki_len;
    w += hdr(w, 0xa0, alen);
    if (alen) {
        memcpy(w, attrs, alen);
        w += alen;
    }
    n = (size_t)(w - cri);
    if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, F.dev) != 1 ||
        EVP_DigestSign(md, sig, &sig_len, cri, n) != 1) {
        die("signing a spliced CSR");
    }
    EVP_MD_CTX_free(md);
    body = n + sizeof(alg) + hdr(h, 0x03, sig_len + 1) + sig_len + 1;
    w = csr + hdr(csr, 0x30, body);
    memcpy(w, cri, n);
    w += n;
    memcpy(w, alg, sizeof(alg));
    w += sizeof(alg);
    w += hdr(w, 0x03, sig_len + 1);
    *w++ = 0;
    memcpy(w, sig, sig_len);
    w += sig_len;
    one(F.fast, F.device, csr, (size_t)(w - csr));
    one(F.slow, F.open, csr, (size_t)(w - csr));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t cn[] = { 0x31, 0x0e, 0x30, 0x0c, 0x06, 0x03, 0x55, 0x04,
                                  0x03, 0x0c, 0x05, 0x64, 0x65, 0x76, 0x2d, 0x31 };
    if (F.is == NULL) {
        init();
    }
    one(F.fast, F.device, data, size);
    one(F.slow, F.open, data, size);
    spliced(data, size, NULL, 0);
    spliced(cn, sizeof(cn), data, size);
    ERR_clear_error();
    return 0;
}
