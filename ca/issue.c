/*
 * The issuing engine (RFC 5280 profile of an end-entity certificate, CA/B BR 7.1 serials).
 *
 * Two paths, one certificate. The fast path takes the CSR shape nearly every device sends (P-256
 * named curve, uncompressed point, no attributes, ecdsa-with-SHA256) and never lets OpenSSL 3.0
 * decode it: csr.c walks the DER, the point goes into a per-signer EVP_PKEY with
 * EVP_PKEY_set1_encoded_public_key, the signature is checked with one digest and a reused
 * EVP_PKEY_verify context, and the TBSCertificate is spliced from pieces encoded once (issuer
 * name, signature algorithm and AKI per issuer; basicConstraints, keyUsage and EKU per profile
 * shape, cached in the signer) around the per-certificate ones (serial, validity, subject, SPKI,
 * SKI). Its digest is signed with a reused EVP_PKEY_sign context. docs/performance.md ("The
 * issuing engine and its traps") has the numbers.
 * The slow path takes everything else through d2i_X509_REQ, X509_REQ_verify and an X509 object;
 * tests check that both give the same TBSCertificate for the same CSR, serial and time.
 *
 * Extensions come from the profile only: basicConstraints CA:FALSE (critical), keyUsage
 * digitalSignature (critical; plus keyEncipherment for RSA keys when the profile has serverAuth,
 * the only use of RSA key transport), extendedKeyUsage (profile order), SKI (SHA-1 of the
 * subjectPublicKey, RFC 5280 §4.2.1.2 method 1), AKI (the CA's SKI), subjectAltName (slow path,
 * validated values only). Times: UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5).
 *
 * Reused objects (the P-256 key and its verify context, the sign context) are thrown away after
 * any error: a rejected point may stay inside the EVP_PKEY (docs/performance.md, "The issuing
 * engine and its traps").
 */
#include "ca/issue.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "ca/ca_int.h"
#include "core/mem.h"
#include "core/util.h"

#define SERIAL_POOL 1024
#define EXT_CACHE_N 8
#define SIG_MAX     1024

static atomic_uint_fast64_t issuer_ids = 1;

struct ca_issuer {
    uint64_t id;
    X509 *cert;    /* borrowed */
    EVP_PKEY *key; /* borrowed */
    bool hsm;
    pthread_mutex_t *lock; /* serialises signatures when hsm */
    EVP_MD *md;            /* the certificate's signature hash */
    uint8_t sigalg[16];    /* AlgorithmIdentifier, whole TLV */
    size_t sigalg_len;
    uint8_t *name; /* the CA's subject Name as encoded in its certificate */
    size_t name_len;
    uint8_t ski[64]; /* the CA's key identifier */
    size_t ski_len;
    uint8_t aki_ext[96]; /* Extension { authorityKeyIdentifier, { [0] ski } } */
    size_t aki_ext_len;
    time_t not_before, not_after;
};

struct ext_entry {
    uint32_t key; /* 0: unused */
    uint8_t der[64];
    size_t len;
};

struct ca_signer {
    bool fast;
    EVP_MD *sha256, *sha1;
    EVP_MD_CTX *mdctx;
    EVP_PKEY *p256;     /* reused public key for the fast path */
    EVP_PKEY_CTX *vctx; /* its verify context */
    uint64_t sign_for;  /* issuer id of sctx */
    EVP_PKEY_CTX *sctx;
    uint8_t pool[SERIAL_POOL];
    size_t pool_off;
    unsigned pool_forks; /* the fork count when the pool was filled */
    struct buf tbs, cert;
    struct cai_subject subj;
    struct ext_entry ext[EXT_CACHE_N];
    unsigned ext_next;
};

struct ca_prepared_int {
    uint64_t issuer_id;
    bool fast;
    bool key_encipherment;
    enum ca_key_type key_type;
    uint8_t eku[CAI_EKU_MAX];
    size_t eku_n;
    uint8_t ski[20];         /* fast */
    EVP_PKEY *pkey;          /* slow: the CSR key, owned */
    GENERAL_NAMES *sans;     /* slow: rebuilt, owned; NULL when none */
    const uint8_t *url_exts; /* the profile's CDP and AIA Extensions (DER, borrowed), or NULL */
    size_t url_exts_len;
    size_t subject_len, spki_len;
    uint8_t *subject;
    uint8_t *spki; /* fast */
    uint8_t data[];
};

/* --- time ------------------------------------------------------------------------------------ */

static int asn1_to_time(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return -1;
    }
    *out = timegm(&tm);
    return 0;
}

/* UTCTime through 2049, GeneralizedTime after; returns the TLV length (<= 17). */
static size_t der_time(uint8_t *out, time_t t)
{
    struct tm tm;
    char s[24];
    if (gmtime_r(&t, &tm) == NULL) {
        BUG_ON(1);
    }
    int year = tm.tm_year + 1900;
    bool utc = year >= 1950 && year < 2050;
    int n = snprintf(s, sizeof(s), "%04d%02d%02d%02d%02d%02dZ", year, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
    BUG_ON(n != 15);
    const char *v = utc ? s + 2 : s;
    size_t len = utc ? 13 : 15;
    out[0] = utc ? V_ASN1_UTCTIME : V_ASN1_GENERALIZEDTIME;
    out[1] = (uint8_t)len;
    memcpy(out + 2, v, len);
    return len + 2;
}

/* --- the issuer ------------------------------------------------------------------------------ */

static int issuer_key(struct ca_issuer *is, struct err *e)
{
    static const uint8_t ecdsa256[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                        0x48, 0xce, 0x3d, 0x04, 0x03, 0x02 };
    static const uint8_t ecdsa384[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                        0x48, 0xce, 0x3d, 0x04, 0x03, 0x03 };
    static const uint8_t rsa256[] = { 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                      0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00 };
    const uint8_t *alg = NULL;
    size_t alg_len = 0;
    const char *md = NULL;
    int bits = EVP_PKEY_get_bits(is->key);
    if (EVP_PKEY_is_a(is->key, "EC")) {
        char grp[64] = "";
        if (EVP_PKEY_get_utf8_string_param(is->key, OSSL_PKEY_PARAM_GROUP_NAME, grp, sizeof(grp),
                                           NULL) != 1) {
            ERR_clear_error();
            snprintf(grp, sizeof(grp), "%s",
                     bits == 256   ? "prime256v1"
                     : bits == 384 ? "secp384r1"
                                   : "unknown");
        }
        if (strcmp(grp, "prime256v1") == 0) {
            alg = ecdsa256;
            alg_len = sizeof(ecdsa256);
            md = "SHA256";
        } else if (strcmp(grp, "secp384r1") == 0) {
            alg = ecdsa384;
            alg_len = sizeof(ecdsa384);
            md = "SHA384";
        }
    } else if (EVP_PKEY_is_a(is->key, "RSA") && bits >= 2048) {
        alg = rsa256;
        alg_len = sizeof(rsa256);
        md = "SHA256";
    }
    if (alg == NULL) {
        return err_set(e, ERRC_INVALID, "the CA key is not P-256, P-384 or RSA >= 2048");
    }
    memcpy(is->sigalg, alg, alg_len);
    is->sigalg_len = alg_len;
    if ((is->md = EVP_MD_fetch(NULL, md, NULL)) == NULL) {
        return err_openssl(e, ERRC_INTERNAL, "cannot fetch %s", md);
    }
    return 0;
}

static int sha1_of_spki(X509 *cert, uint8_t out[20], struct err *e)
{
    const ASN1_BIT_STRING *bits = X509_get0_pubkey_bitstr(cert);
    unsigned n = 0;
    if (bits == NULL || EVP_Digest(ASN1_STRING_get0_data(bits), (size_t)ASN1_STRING_length(bits),
                                   out, &n, EVP_sha1(), NULL) != 1) {
        return err_openssl(e, ERRC_INTERNAL, "cannot hash the public key");
    }
    return 0;
}

void ca_issuer_key_lock(const struct ca_issuer *is)
{
    if (is->hsm) {
        pthread_mutex_lock(is->lock);
    }
}

void ca_issuer_key_unlock(const struct ca_issuer *is)
{
    if (is->hsm) {
        pthread_mutex_unlock(is->lock);
    }
}

struct ca_issuer *ca_issuer_new(X509 *cacert, EVP_PKEY *key, bool hsm, struct err *e)
{
    struct ca_issuer *is = xcalloc(1, sizeof(*is));
    unsigned char *p = NULL;
    uint32_t xf;
    int n;
    const ASN1_OCTET_STRING *ski;
    is->lock = xmalloc(sizeof(*is->lock));
    pthread_mutex_init(is->lock, NULL);
    is->id = atomic_fetch_add(&issuer_ids, 1);
    is->cert = cacert;
    is->key = key;
    is->hsm = hsm;
    if (cacert == NULL || key == NULL) {
        err_set(e, ERRC_INVALID, "no CA certificate or key");
        goto fail;
    }
    xf = X509_get_extension_flags(cacert);
    if (X509_check_ca(cacert) != 1 || (xf & EXFLAG_INVALID)) {
        err_set(e, ERRC_INVALID, "the CA certificate has no basicConstraints CA:TRUE");
        goto fail;
    }
    if ((xf & EXFLAG_KUSAGE) && !(X509_get_key_usage(cacert) & KU_KEY_CERT_SIGN)) {
        err_set(e, ERRC_INVALID, "the CA certificate's keyUsage lacks keyCertSign");
        goto fail;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(cacert), key) != 1) {
        ERR_clear_error();
        err_set(e, ERRC_INVALID, "the CA key does not match the CA certificate");
        goto fail;
    }
    if (issuer_key(is, e) != 0) {
        goto fail;
    }
    n = i2d_X509_NAME(X509_get_subject_name(cacert), &p);
    if (n <= 0) {
        err_openssl(e, ERRC_INTERNAL, "cannot encode the CA name");
        goto fail;
    }
    is->name = xmemdup(p, (size_t)n);
    is->name_len = (size_t)n;
    OPENSSL_free(p);
    ski = X509_get0_subject_key_id(cacert);
    if (ski != NULL && ASN1_STRING_length(ski) > 0 && ASN1_STRING_length(ski) <= 64) {
        is->ski_len = (size_t)ASN1_STRING_length(ski);
        memcpy(is->ski, ASN1_STRING_get0_data(ski), is->ski_len);
    } else {
        if (sha1_of_spki(cacert, is->ski, e) != 0) {
            goto fail;
        }
        is->ski_len = 20;
    }
    /* Extension { 2.5.29.35, OCTET STRING { SEQUENCE { [0] keyIdentifier } } } */
    {
        uint8_t *w = is->aki_ext;
        size_t kid = 2 + is->ski_len, seq = 2 + kid, octs = 2 + seq, ext = 5 + octs;
        w += cai_der_hdr(w, 0x30, ext);
        memcpy(w, "\x06\x03\x55\x1d\x23", 5);
        w += 5;
        w += cai_der_hdr(w, 0x04, seq);
        w += cai_der_hdr(w, 0x30, kid);
        w += cai_der_hdr(w, 0x80, is->ski_len);
        memcpy(w, is->ski, is->ski_len);
        w += is->ski_len;
        is->aki_ext_len = (size_t)(w - is->aki_ext);
    }
    if (asn1_to_time(X509_get0_notBefore(cacert), &is->not_before) != 0 ||
        asn1_to_time(X509_get0_notAfter(cacert), &is->not_after) != 0) {
        err_openssl(e, ERRC_INVALID, "the CA certificate's validity cannot be read");
        goto fail;
    }
    return is;
fail:
    ca_issuer_free(is);
    return NULL;
}

void ca_issuer_free(struct ca_issuer *is)
{
    if (is == NULL) {
        return;
    }
    pthread_mutex_destroy(is->lock);
    xfree(is->lock);
    EVP_MD_free(is->md);
    xfree(is->name);
    xfree(is);
}

X509 *ca_issuer_cert(const struct ca_issuer *is)
{
    return is->cert;
}

/* --- the signer ------------------------------------------------------------------------------ */

/* Forks seen by this process image: a child counts one more than its parent, so a signer
 * copied into a child by fork() knows its serial pool is its parent's (getpid() per serial was
 * a system call per certificate). */
static atomic_uint forks;
static pthread_once_t forks_once = PTHREAD_ONCE_INIT;

static void forks_child(void)
{
    atomic_fetch_add(&forks, 1);
}

static void forks_watch(void)
{
    BUG_ON(pthread_atfork(NULL, NULL, forks_child) != 0);
}

struct ca_signer *ca_signer_new(void)
{
    pthread_once(&forks_once, forks_watch);
    struct ca_signer *s = xcalloc(1, sizeof(*s));
    s->fast = true;
    s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    s->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    s->mdctx = EVP_MD_CTX_new();
    if (s->sha256 == NULL || s->sha1 == NULL || s->mdctx == NULL) {
        oom_die(0); /* the default provider is always there: only allocation can fail */
    }
    s->pool_off = SERIAL_POOL;
    return s;
}

static void drop_p256(struct ca_signer *s)
{
    EVP_PKEY_CTX_free(s->vctx);
    EVP_PKEY_free(s->p256);
    s->vctx = NULL;
    s->p256 = NULL;
}

static void drop_sctx(struct ca_signer *s)
{
    EVP_PKEY_CTX_free(s->sctx);
    s->sctx = NULL;
    s->sign_for = 0;
}

void ca_signer_free(struct ca_signer *s)
{
    if (s == NULL) {
        return;
    }
    drop_p256(s);
    drop_sctx(s);
    EVP_MD_CTX_free(s->mdctx);
    EVP_MD_free(s->sha256);
    EVP_MD_free(s->sha1);
    OPENSSL_cleanse(s->pool, sizeof(s->pool));
    buf_release(&s->tbs);
    buf_release(&s->cert);
    buf_release(&s->subj.der);
    xfree(s);
}

void ca_signer_set_fast_path(struct ca_signer *s, bool on)
{
    s->fast = on;
}

/* A public P-256 key (the generator as its point) whose point the fast path replaces. */
static int signer_p256(struct ca_signer *s, struct err *e)
{
    static const uint8_t g[65] = {
        0x04, 0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5,
        0x63, 0xa4, 0x40, 0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4,
        0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2, 0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a,
        0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e, 0x16, 0x2b, 0xce, 0x33,
        0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5,
    };
    if (s->vctx != NULL) {
        return 0;
    }
    char group[] = "prime256v1";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)(uintptr_t)g, sizeof(g)),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (kc == NULL || EVP_PKEY_fromdata_init(kc) != 1 ||
        EVP_PKEY_fromdata(kc, &s->p256, EVP_PKEY_PUBLIC_KEY, params) != 1 ||
        (s->vctx = EVP_PKEY_CTX_new_from_pkey(NULL, s->p256, NULL)) == NULL ||
        EVP_PKEY_verify_init(s->vctx) != 1 ||
        EVP_PKEY_CTX_set_signature_md(s->vctx, s->sha256) != 1) {
        EVP_PKEY_CTX_free(kc);
        drop_p256(s);
        return err_openssl(e, ERRC_INTERNAL, "cannot set up P-256 verification");
    }
    EVP_PKEY_CTX_free(kc);
    return 0;
}

static int signer_sctx(struct ca_signer *s, const struct ca_issuer *is, struct err *e)
{
    if (s->sctx != NULL && s->sign_for == is->id) {
        return 0;
    }
    drop_sctx(s);
    s->sctx = EVP_PKEY_CTX_new(is->key, NULL);
    if (s->sctx == NULL || EVP_PKEY_sign_init(s->sctx) != 1 ||
        EVP_PKEY_CTX_set_signature_md(s->sctx, is->md) != 1 ||
        (EVP_PKEY_is_a(is->key, "RSA") &&
         EVP_PKEY_CTX_set_rsa_padding(s->sctx, RSA_PKCS1_PADDING) != 1)) {
        drop_sctx(s);
        return err_openssl(e, is->hsm ? ERRC_UNAVAILABLE : ERRC_INTERNAL,
                           "cannot set up signing with the CA key");
    }
    s->sign_for = is->id;
    return 0;
}

static int digest(struct ca_signer *s, const EVP_MD *md, const void *d, size_t n, uint8_t *out,
                  unsigned *outlen, struct err *e)
{
    if (EVP_DigestInit_ex(s->mdctx, md, NULL) != 1 || EVP_DigestUpdate(s->mdctx, d, n) != 1 ||
        EVP_DigestFinal_ex(s->mdctx, out, outlen) != 1) {
        return err_openssl(e, ERRC_INTERNAL, "digest failed");
    }
    return 0;
}

/* --- serials --------------------------------------------------------------------------------- */

int ca_serial_draw(struct ca_signer *s, uint8_t out[CA_SERIAL_MAX], size_t *len, struct err *e)
{
    uint8_t b[CA_SERIAL_BYTES];
    for (;;) {
        unsigned f = atomic_load(&forks);
        if (s->pool_off + CA_SERIAL_BYTES > SERIAL_POOL || s->pool_forks != f) {
            /* A forked child must not reuse its parent's pool. */
            if (RAND_bytes(s->pool, SERIAL_POOL) != 1) {
                return err_openssl(e, ERRC_INTERNAL, "no randomness for serial numbers");
            }
            s->pool_off = 0;
            s->pool_forks = f;
        }
        memcpy(b, s->pool + s->pool_off, CA_SERIAL_BYTES);
        OPENSSL_cleanse(s->pool + s->pool_off, CA_SERIAL_BYTES);
        s->pool_off += CA_SERIAL_BYTES;
        b[0] &= 0x7f; /* positive */
        size_t i = 0;
        while (i + 1 < CA_SERIAL_BYTES && b[i] == 0 && b[i + 1] < 0x80) {
            i++; /* minimal: drop a leading 00 only when the next byte is below 0x80 */
        }
        if (i + 1 == CA_SERIAL_BYTES && b[i] == 0) {
            continue; /* zero */
        }
        *len = CA_SERIAL_BYTES - i;
        memcpy(out, b + i, *len);
        return 0;
    }
}

static int serial_check(const uint8_t *sn, size_t len, struct err *e)
{
    if (sn == NULL || len == 0 || len > CA_SERIAL_MAX) {
        return err_set(e, ERRC_INVALID, "serial must be 1 to %d bytes", CA_SERIAL_MAX);
    }
    if (sn[0] & 0x80) {
        return err_set(e, ERRC_INVALID, "serial is negative");
    }
    if (len > 1 && sn[0] == 0 && sn[1] < 0x80) {
        return err_set(e, ERRC_INVALID, "serial is not minimally encoded");
    }
    if (len == 1 && sn[0] == 0) {
        return err_set(e, ERRC_INVALID, "serial is zero");
    }
    return 0;
}

/* --- prepare --------------------------------------------------------------------------------- */

static struct ca_prepared_int *int_new(const struct ca_issuer *is, const struct ca_profile *p,
                                       enum ca_key_type t, const struct buf *subject,
                                       const uint8_t *spki, size_t spki_len)
{
    struct ca_prepared_int *pi = xcalloc(1, sizeof(*pi) + subject->len + spki_len);
    pi->issuer_id = is->id;
    pi->key_type = t;
    pi->subject = pi->data;
    pi->subject_len = subject->len;
    memcpy(pi->subject, subject->data, subject->len);
    pi->spki = pi->data + subject->len;
    pi->spki_len = spki_len;
    if (spki_len) {
        memcpy(pi->spki, spki, spki_len);
    }
    pi->key_encipherment = t >= CA_KEY_RSA_2048 && cai_profile_has_eku(p, CAI_EKU_SERVER_AUTH);
    memcpy(pi->eku, p->eku, sizeof(pi->eku));
    pi->eku_n = p->eku_n;
    pi->url_exts = p->url_exts;
    pi->url_exts_len = p->url_exts_len;
    return pi;
}

static int prepare_fast(struct ca_signer *s, const struct ca_issuer *is, const struct ca_profile *p,
                        const struct cai_csr *c, struct ca_prepared *out, struct err *e)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    const uint8_t *point = c->spki + CAI_P256_POINT_OFF;
    if (!p->key_allowed[CA_KEY_EC_P256]) {
        return cai_key_denied(p, "ec-p256", e);
    }
    if (signer_p256(s, e) != 0) {
        return -1;
    }
    if (EVP_PKEY_set1_encoded_public_key(s->p256, point, CAI_P256_POINT_LEN) != 1) {
        drop_p256(s);
        ERR_clear_error();
        return err_set(e, ERRC_INVALID, "CSR public key is not a valid P-256 point");
    }
    if (digest(s, s->sha256, c->cri, c->cri_len, md, &mdlen, e) != 0) {
        return -1;
    }
    if (EVP_PKEY_verify(s->vctx, c->sig, c->sig_len, md, mdlen) != 1) {
        drop_p256(s);
        ERR_clear_error();
        return err_set(e, ERRC_INVALID, "CSR signature does not verify");
    }
    if (cai_subject_build(p, c->subject, c->subject_len, &s->subj, e) != 0) {
        return -1;
    }
    struct ca_prepared_int *pi = int_new(is, p, CA_KEY_EC_P256, &s->subj.der, c->spki, c->spki_len);
    pi->fast = true;
    if (digest(s, s->sha1, point, CAI_P256_POINT_LEN, pi->ski, &mdlen, e) != 0) {
        xfree(pi);
        return -1;
    }
    out->_int = pi;
    out->key_type = CA_KEY_EC_P256;
    out->fast_path = true;
    return 0;
}

/* The SPKI bytes are what OpenSSL would write for this key: the exact algorithm identifier of
 * the key type, an uncompressed EC point or a strict DER RSAPublicKey. */
static bool spki_is_canonical(const struct cai_csr *c, enum ca_key_type t)
{
    static const uint8_t p256[] = { 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                    0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
                                    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
    static const uint8_t p384[] = { 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
                                    0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
    static const uint8_t rsa[] = { 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                   0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00 };
    const uint8_t *alg = t == CA_KEY_EC_P256 ? p256 : t == CA_KEY_EC_P384 ? p384 : rsa;
    size_t alg_len = t == CA_KEY_EC_P256   ? sizeof(p256)
                     : t == CA_KEY_EC_P384 ? sizeof(p384)
                                           : sizeof(rsa);
    struct cai_tlv outer, a, bits;
    const uint8_t *q = c->spki, *end = c->spki + c->spki_len;
    if (cai_der_next(&q, end, &outer) != 0) {
        return false;
    }
    q = outer.val;
    end = outer.val + outer.len;
    if (cai_der_next(&q, end, &a) != 0 || a.total != alg_len || memcmp(a.start, alg, alg_len) ||
        cai_der_next(&q, end, &bits) != 0 || bits.tag != V_ASN1_BIT_STRING || q != end ||
        bits.len < 2 || bits.val[0] != 0) {
        return false;
    }
    if (t == CA_KEY_EC_P256 || t == CA_KEY_EC_P384) {
        return bits.val[1] == 0x04 && bits.len == (t == CA_KEY_EC_P256 ? 66u : 98u);
    }
    return cai_der_check(bits.val + 1, bits.len - 1) == 0;
}

/* Sets the certificate's key from canonical SPKI bytes without decoding the key. */
static int set_spki(X509 *x, const struct ca_prepared_int *pi, enum ca_key_type t)
{
    struct cai_tlv outer, a, bits;
    const uint8_t *q = pi->spki, *end = pi->spki + pi->spki_len;
    unsigned char *penc;
    bool ec = t == CA_KEY_EC_P256 || t == CA_KEY_EC_P384;
    if (cai_der_next(&q, end, &outer) != 0) {
        return -1;
    }
    q = outer.val;
    if (cai_der_next(&q, end, &a) != 0 || cai_der_next(&q, end, &bits) != 0 || bits.len < 2) {
        return -1;
    }
    penc = OPENSSL_memdup(bits.val + 1, bits.len - 1);
    if (penc == NULL ||
        X509_PUBKEY_set0_param(
            X509_get_X509_PUBKEY(x), OBJ_nid2obj(ec ? NID_X9_62_id_ecPublicKey : NID_rsaEncryption),
            ec ? V_ASN1_OBJECT : V_ASN1_NULL,
            ec ? OBJ_nid2obj(t == CA_KEY_EC_P256 ? NID_X9_62_prime256v1 : NID_secp384r1) : NULL,
            penc, (int)(bits.len - 1)) != 1) {
        OPENSSL_free(penc);
        return -1;
    }
    return 0;
}

static int set_key(X509 *x, const struct ca_prepared *pr)
{
    if (pr->_int->spki_len) {
        return set_spki(x, pr->_int, pr->_int->key_type);
    }
    return X509_set_pubkey(x, pr->_int->pkey) == 1 ? 0 : -1;
}

static int prepare_slow(const struct ca_issuer *is, const struct ca_profile *p, const uint8_t *der,
                        size_t der_len, const struct cai_csr *c, struct ca_signer *s,
                        struct ca_prepared *out, struct err *e)
{
    int rc = -1;
    enum ca_key_type t;
    GENERAL_NAMES *sans = NULL;
    const unsigned char *q = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &q, (long)der_len);
    EVP_PKEY *pk;
    struct ca_prepared_int *pi;
    if (req == NULL || q != der + der_len) {
        /* OpenSSL refuses some Names (invalid UTF-8) while decoding: say what is wrong. */
        ERR_clear_error();
        if (cai_subject_build(p, c->subject, c->subject_len, &s->subj, e) == 0) {
            err_set(e, ERRC_INVALID, "CSR is not a valid PKCS#10 request");
        }
        goto out;
    }
    if ((pk = X509_REQ_get0_pubkey(req)) == NULL) {
        err_openssl(e, ERRC_INVALID, "CSR public key cannot be decoded");
        goto out;
    }
    if (cai_key_check(p, pk, &t, e) != 0) {
        goto out;
    }
    if (X509_REQ_verify(req, pk) != 1) {
        ERR_clear_error();
        err_set(e, ERRC_INVALID, "CSR signature does not verify");
        goto out;
    }
    if (cai_req_check_attrs(p, req, &sans, e) != 0) {
        goto out;
    }
    if (cai_subject_build(p, c->subject, c->subject_len, &s->subj, e) != 0) {
        goto out;
    }
    if (EVP_PKEY_is_a(pk, "EC") &&
        EVP_PKEY_set_utf8_string_param(pk, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                       OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_UNCOMPRESSED) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot set the point format");
        goto out;
    }
    /* A canonical SPKI is copied (X509_set_pubkey re-encodes and decodes the key: 150 us);
     * anything else (a compressed point, BER inside the BIT STRING) is re-encoded. */
    if (spki_is_canonical(c, t)) {
        pi = int_new(is, p, t, &s->subj.der, c->spki, c->spki_len);
    } else {
        pi = int_new(is, p, t, &s->subj.der, NULL, 0);
    }
    if (EVP_PKEY_up_ref(pk) != 1) {
        xfree(pi);
        err_openssl(e, ERRC_INTERNAL, "EVP_PKEY_up_ref");
        goto out;
    }
    pi->pkey = pk;
    pi->sans = sans;
    sans = NULL;
    out->_int = pi;
    out->key_type = t;
    rc = 0;
out:
    GENERAL_NAMES_free(sans);
    X509_REQ_free(req);
    return rc;
}

/* The CSR's subject Name with its commonName replaced by cn (added last when it has none), DER
 * into out. The replacement is then checked against the profile as any subject is. */
static int subject_with_cn(const struct cai_csr *c, const char *cn, struct buf *out,
                           struct err *e)
{
    const unsigned char *q = c->subject;
    X509_NAME *n = d2i_X509_NAME(NULL, &q, (long)c->subject_len);
    unsigned char *der = NULL;
    int len, i, rc = -1;
    if (n == NULL) {
        ERR_clear_error();
        return err_set(e, ERRC_INVALID, "CSR subject is not a Name");
    }
    while ((i = X509_NAME_get_index_by_NID(n, NID_commonName, -1)) >= 0) {
        X509_NAME_ENTRY_free(X509_NAME_delete_entry(n, i));
    }
    if (X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn,
                                   -1, -1, 0) != 1 ||
        (len = i2d_X509_NAME(n, &der)) <= 0) {
        ERR_clear_error();
        err_set(e, ERRC_INVALID, "the commonName '%.64s' cannot be set", cn);
        goto out;
    }
    buf_reset(out);
    buf_add(out, der, (size_t)len);
    rc = 0;
out:
    OPENSSL_free(der);
    X509_NAME_free(n);
    return rc;
}

int ca_prepare(struct ca_signer *s, const struct ca_issuer *is, const struct ca_profile *p,
               const uint8_t *csr, size_t len, time_t now, struct ca_prepared *out, struct err *e)
{
    return ca_prepare_cn(s, is, p, csr, len, now, NULL, out, e);
}

int ca_prepare_cn(struct ca_signer *s, const struct ca_issuer *is, const struct ca_profile *p,
                  const uint8_t *csr, size_t len, time_t now, const char *cn,
                  struct ca_prepared *out, struct err *e)
{
    struct buf pem = BUF_INIT, subj = BUF_INIT;
    const uint8_t *der = NULL;
    size_t der_len = 0;
    struct cai_csr c;
    int rc = -1;
    memset(out, 0, sizeof(*out));
    if (len > CA_CSR_MAX) {
        return err_set(e, ERRC_TOO_LARGE, "CSR is %zu bytes; the limit is %d", len, CA_CSR_MAX);
    }
    if (csr == NULL || len == 0) {
        return err_set(e, ERRC_INVALID, "CSR is empty");
    }
    if (now < is->not_before || now >= is->not_after) {
        char a[32], b[32];
        time_format_rfc3339(is->not_before, a, sizeof(a));
        time_format_rfc3339(is->not_after, b, sizeof(b));
        return err_set(e, ERRC_DENIED, "the CA certificate is not valid now (%s to %s)", a, b);
    }
    if (p->refuse_beyond_ca && now + p->validity_s > is->not_after) {
        char b[32];
        time_format_rfc3339(is->not_after, b, sizeof(b));
        return err_set(e, ERRC_DENIED,
                       "profile '%s' issues for %lld days but the CA certificate expires at %s "
                       "(%lld days left), and the profile refuses a shorter validity "
                       "(\"beyond_ca\": \"refuse\"): rotate the CA",
                       p->name ? p->name : "?", (long long)(p->validity_s / 86400), b,
                       (long long)((is->not_after - now) / 86400));
    }
    if (cai_csr_der(csr, len, &pem, &der, &der_len, e) != 0 ||
        cai_csr_walk(der, der_len, &c, e) != 0) {
        goto out;
    }
    if (cn != NULL) {
        if (subject_with_cn(&c, cn, &subj, e) != 0) {
            goto out;
        }
        c.subject = (const uint8_t *)subj.data;
        c.subject_len = subj.len;
    }
    if (s->fast && cai_csr_is_fast(&c)) {
        rc = prepare_fast(s, is, p, &c, out, e);
    } else {
        rc = prepare_slow(is, p, der, der_len, &c, s, out, e);
    }
    if (rc != 0) {
        goto out;
    }
    snprintf(out->cn, sizeof(out->cn), "%s", s->subj.cn);
    snprintf(out->subject, sizeof(out->subject), "%s", s->subj.text);
    out->not_before = now - p->backdate_s < is->not_before ? is->not_before : now - p->backdate_s;
    out->validity_clamped = now + p->validity_s > is->not_after;
    out->not_after = out->validity_clamped ? is->not_after : now + p->validity_s;
out:
    buf_release(&pem);
    buf_release(&subj);
    return rc;
}

void ca_prepared_release(struct ca_prepared *pr)
{
    if (pr == NULL || pr->_int == NULL) {
        return;
    }
    EVP_PKEY_free(pr->_int->pkey);
    GENERAL_NAMES_free(pr->_int->sans);
    xfree(pr->_int);
    pr->_int = NULL;
}

/* --- sign: the fast assembly ----------------------------------------------------------------- */

/* basicConstraints, keyUsage and extendedKeyUsage for a profile shape, cached per signer. */
static const struct ext_entry *profile_exts(struct ca_signer *s, const struct ca_prepared_int *pi)
{
    uint32_t key = 1u | (pi->key_encipherment ? 2u : 0u) | ((uint32_t)pi->eku_n << 2);
    for (size_t i = 0; i < pi->eku_n; i++) {
        key |= (uint32_t)(pi->eku[i] + 1u) << (5 + 4 * i);
    }
    for (size_t i = 0; i < EXT_CACHE_N; i++) {
        if (s->ext[i].key == key) {
            return &s->ext[i];
        }
    }
    struct ext_entry *x = &s->ext[s->ext_next++ % EXT_CACHE_N];
    uint8_t *w = x->der;
    static const uint8_t bc[] = { 0x30, 0x0c, 0x06, 0x03, 0x55, 0x1d, 0x13,
                                  0x01, 0x01, 0xff, 0x04, 0x02, 0x30, 0x00 };
    static const uint8_t ku[] = { 0x30, 0x0e, 0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01,
                                  0x01, 0xff, 0x04, 0x04, 0x03, 0x02, 0x07, 0x80 };
    memcpy(w, bc, sizeof(bc));
    w += sizeof(bc);
    memcpy(w, ku, sizeof(ku));
    if (pi->key_encipherment) {
        w[14] = 0x05; /* digitalSignature | keyEncipherment: 101 + 5 unused bits */
        w[15] = 0xa0;
    }
    w += sizeof(ku);
    size_t seq = pi->eku_n * 10;
    w += cai_der_hdr(w, 0x30, 5 + 2 + 2 + seq);
    memcpy(w, "\x06\x03\x55\x1d\x25", 5);
    w += 5;
    w += cai_der_hdr(w, 0x04, 2 + seq);
    w += cai_der_hdr(w, 0x30, seq);
    for (size_t i = 0; i < pi->eku_n; i++) {
        *w++ = 0x06;
        *w++ = 8;
        memcpy(w, cai_ekus[pi->eku[i]].oid, 8);
        w += 8;
    }
    x->len = (size_t)(w - x->der);
    BUG_ON(x->len > sizeof(x->der));
    x->key = key;
    return x;
}

static int sign_raw(struct ca_signer *s, const struct ca_issuer *is, const uint8_t *tbs,
                    size_t tbs_len, uint8_t *sig, size_t *sig_len, struct err *e)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int ok;
    if (digest(s, is->md, tbs, tbs_len, md, &mdlen, e) != 0 || signer_sctx(s, is, e) != 0) {
        return -1;
    }
    if (is->hsm) {
        pthread_mutex_lock(is->lock);
    }
    ok = EVP_PKEY_sign(s->sctx, sig, sig_len, md, mdlen);
    if (is->hsm) {
        pthread_mutex_unlock(is->lock);
    }
    if (ok != 1) {
        drop_sctx(s);
        /* an HSM that fails a signature is unreachable or lost its session (503: retry); a
         * file key that fails is a bug */
        return is->hsm ? err_openssl(e, ERRC_UNAVAILABLE,
                                     "signing with the CA key failed (is the HSM reachable?)")
                       : err_openssl(e, ERRC_INTERNAL, "signing with the CA key failed");
    }
    return 0;
}

static int sign_fast(struct ca_signer *s, const struct ca_issuer *is, const struct ca_prepared *pr,
                     const uint8_t *sn, size_t sn_len, struct buf *cert, struct err *e)
{
    const struct ca_prepared_int *pi = pr->_int;
    const struct ext_entry *pe = profile_exts(s, pi);
    uint8_t nb[20], na[20], sig[SIG_MAX];
    uint8_t ski[] = { 0x30, 0x1d, 0x06, 0x03, 0x55, 0x1d, 0x0e, 0x04, 0x16, 0x04, 0x14 };
    size_t sig_len = sizeof(sig);
    size_t nb_len = der_time(nb, pr->not_before), na_len = der_time(na, pr->not_after);
    size_t ext_c = pe->len + sizeof(ski) + 20 + is->aki_ext_len + pi->url_exts_len;
    size_t a3_c = cai_der_hdr_len(ext_c) + ext_c;
    size_t tbs_c = 5 + 2 + sn_len + is->sigalg_len + is->name_len + 2 + nb_len + na_len +
                   pi->subject_len + pi->spki_len + cai_der_hdr_len(a3_c) + a3_c;
    struct buf *t = &s->tbs;

    buf_reset(t);
    cai_der_add_hdr(t, 0x30, tbs_c);
    buf_add(t, "\xa0\x03\x02\x01\x02", 5);
    cai_der_add(t, 0x02, sn, sn_len);
    buf_add(t, is->sigalg, is->sigalg_len);
    buf_add(t, is->name, is->name_len);
    cai_der_add_hdr(t, 0x30, nb_len + na_len);
    buf_add(t, nb, nb_len);
    buf_add(t, na, na_len);
    buf_add(t, pi->subject, pi->subject_len);
    buf_add(t, pi->spki, pi->spki_len);
    cai_der_add_hdr(t, 0xa3, a3_c);
    cai_der_add_hdr(t, 0x30, ext_c);
    buf_add(t, pe->der, pe->len);
    buf_add(t, ski, sizeof(ski));
    buf_add(t, pi->ski, 20);
    buf_add(t, is->aki_ext, is->aki_ext_len);
    if (pi->url_exts_len) {
        buf_add(t, pi->url_exts, pi->url_exts_len);
    }

    if (sign_raw(s, is, (const uint8_t *)t->data, t->len, sig, &sig_len, e) != 0) {
        return -1;
    }
    buf_reset(cert);
    cai_der_add_hdr(cert, 0x30,
                    t->len + is->sigalg_len + cai_der_hdr_len(sig_len + 1) + sig_len + 1);
    buf_add(cert, t->data, t->len);
    buf_add(cert, is->sigalg, is->sigalg_len);
    cai_der_add_hdr(cert, 0x03, sig_len + 1);
    buf_addch(cert, 0);
    buf_add(cert, sig, sig_len);
    return 0;
}

/* --- sign: the ordinary path ----------------------------------------------------------------- */

/* The profile's CDP and AIA Extensions, as the fast path writes them. */
static int add_url_exts(X509 *x, const struct ca_prepared_int *pi, struct err *e)
{
    const unsigned char *q = pi->url_exts, *end = q + pi->url_exts_len;
    while (q < end) {
        X509_EXTENSION *ext = d2i_X509_EXTENSION(NULL, &q, (long)(end - q));
        int ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
        X509_EXTENSION_free(ext);
        if (!ok) {
            return err_openssl(e, ERRC_INTERNAL, "cannot add the profile's URL extensions");
        }
    }
    return 0;
}

static int add_ext(X509 *x, int nid, void *value, int crit, struct err *e)
{
    if (X509_add1_ext_i2d(x, nid, value, crit, X509V3_ADD_APPEND) != 1) {
        return err_openssl(e, ERRC_INTERNAL, "cannot add the %s extension", OBJ_nid2sn(nid));
    }
    return 0;
}

static int sign_slow(struct ca_signer *s, const struct ca_issuer *is, const struct ca_prepared *pr,
                     const uint8_t *sn, size_t sn_len, struct buf *cert, struct err *e)
{
    const struct ca_prepared_int *pi = pr->_int;
    int rc = -1, n;
    X509 *x = X509_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    X509_NAME *subject = NULL, *issuer = NULL;
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
    AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
    const unsigned char *q = pi->subject, *qi = is->name;
    unsigned char *der = NULL;
    uint8_t kid[20];
    unsigned kid_len = 0;
    const ASN1_BIT_STRING *pub;

    if (x == NULL || bc == NULL || ku == NULL || eku == NULL || ski == NULL || aki == NULL ||
        (bn = BN_bin2bn(sn, (int)sn_len, NULL)) == NULL ||
        (serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
        (subject = d2i_X509_NAME(NULL, &q, (long)pi->subject_len)) == NULL ||
        (issuer = d2i_X509_NAME(NULL, &qi, (long)is->name_len)) == NULL ||
        X509_set_version(x, X509_VERSION_3) != 1 || X509_set_serialNumber(x, serial) != 1 ||
        X509_set_issuer_name(x, issuer) != 1 ||
        ASN1_TIME_set(X509_getm_notBefore(x), pr->not_before) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(x), pr->not_after) == NULL ||
        X509_set_subject_name(x, subject) != 1 || set_key(x, pr) != 0) {
        err_openssl(e, ERRC_INTERNAL, "cannot build the certificate");
        goto out;
    }
    bc->ca = 0;
    if (ASN1_BIT_STRING_set_bit(ku, 0, 1) != 1 ||
        (pi->key_encipherment && ASN1_BIT_STRING_set_bit(ku, 2, 1) != 1)) {
        err_openssl(e, ERRC_INTERNAL, "cannot build keyUsage");
        goto out;
    }
    for (size_t i = 0; i < pi->eku_n; i++) {
        if (sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(cai_ekus[pi->eku[i]].nid)) <= 0) {
            err_openssl(e, ERRC_INTERNAL, "cannot build extendedKeyUsage");
            goto out;
        }
    }
    pub = X509_get0_pubkey_bitstr(x);
    if (pub == NULL ||
        EVP_Digest(ASN1_STRING_get0_data(pub), (size_t)ASN1_STRING_length(pub), kid, &kid_len,
                   s->sha1, NULL) != 1 ||
        ASN1_OCTET_STRING_set(ski, kid, (int)kid_len) != 1 ||
        (aki->keyid = ASN1_OCTET_STRING_new()) == NULL ||
        ASN1_OCTET_STRING_set(aki->keyid, is->ski, (int)is->ski_len) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot build the key identifiers");
        goto out;
    }
    if (add_ext(x, NID_basic_constraints, bc, 1, e) != 0 ||
        add_ext(x, NID_key_usage, ku, 1, e) != 0 || add_ext(x, NID_ext_key_usage, eku, 0, e) != 0 ||
        add_ext(x, NID_subject_key_identifier, ski, 0, e) != 0 ||
        add_ext(x, NID_authority_key_identifier, aki, 0, e) != 0 ||
        (pi->sans && add_ext(x, NID_subject_alt_name, pi->sans, 0, e) != 0) ||
        add_url_exts(x, pi, e) != 0) {
        goto out;
    }
    if (is->hsm) {
        pthread_mutex_lock(is->lock);
    }
    n = X509_sign(x, is->key, is->md);
    if (is->hsm) {
        pthread_mutex_unlock(is->lock);
    }
    if (n <= 0) {
        err_openssl(e, ERRC_INTERNAL, "signing with the CA key failed");
        goto out;
    }
    if ((n = i2d_X509(x, &der)) <= 0) {
        err_openssl(e, ERRC_INTERNAL, "cannot encode the certificate");
        goto out;
    }
    buf_reset(cert);
    buf_add(cert, der, (size_t)n);
    rc = 0;
out:
    OPENSSL_free(der);
    AUTHORITY_KEYID_free(aki);
    ASN1_OCTET_STRING_free(ski);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    ASN1_BIT_STRING_free(ku);
    BASIC_CONSTRAINTS_free(bc);
    X509_NAME_free(subject);
    X509_NAME_free(issuer);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    X509_free(x);
    return rc;
}

int ca_sign(struct ca_signer *s, const struct ca_issuer *is, const struct ca_prepared *pr,
            const uint8_t *serial, size_t serial_len, struct ca_issued *out, struct err *e)
{
    uint8_t fp[EVP_MAX_MD_SIZE];
    unsigned fp_len = 0;
    int rc;
    memset(out, 0, sizeof(*out));
    if (pr == NULL || pr->_int == NULL) {
        return err_set(e, ERRC_INTERNAL, "ca_sign without a prepared certificate");
    }
    if (pr->_int->issuer_id != is->id) {
        return err_set(e, ERRC_INTERNAL, "the certificate was prepared for another issuer");
    }
    if (serial_check(serial, serial_len, e) != 0) {
        return -1;
    }
    rc = pr->_int->fast ? sign_fast(s, is, pr, serial, serial_len, &s->cert, e)
                        : sign_slow(s, is, pr, serial, serial_len, &s->cert, e);
    if (rc != 0 || digest(s, s->sha256, s->cert.data, s->cert.len, fp, &fp_len, e) != 0) {
        return -1;
    }
    out->der = xmemdup(s->cert.data, s->cert.len);
    out->der_len = s->cert.len;
    hex_encode(fp, fp_len, out->fingerprint);
    hex_encode(serial, serial_len, out->serial_hex);
    return 0;
}

void ca_issued_release(struct ca_issued *c)
{
    if (c == NULL) {
        return;
    }
    xfree(c->der);
    c->der = NULL;
    c->der_len = 0;
}

void ca_der_to_pem(struct buf *out, const uint8_t *der, size_t len)
{
    unsigned char line[65];
    buf_addstr(out, "-----BEGIN CERTIFICATE-----\n");
    for (size_t off = 0; off < len; off += 48) {
        size_t n = len - off < 48 ? len - off : 48;
        int w = EVP_EncodeBlock(line, der + off, (int)n);
        buf_add(out, line, (size_t)w);
        buf_addch(out, '\n');
    }
    buf_addstr(out, "-----END CERTIFICATE-----\n");
}

int ca_serial_normalise(const char *in, char out[41], struct err *e)
{
    char hex[128];
    size_t n = 0, start = 0;
    for (const char *p = in; *p; p++) {
        if (*p == ':') {
            continue;
        }
        bool ok = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F');
        if (!ok || n + 1 >= sizeof(hex)) {
            return err_set(e, ERRC_INVALID, "'%.80s' is not a hex serial nor a certificateId", in);
        }
        hex[n++] = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
    }
    hex[n] = '\0';
    while (start < n && hex[start] == '0') {
        start++;
    }
    size_t digits = n - start;
    if (digits == 0) {
        return err_set(e, ERRC_INVALID, "serial '%.80s' is zero", in);
    }
    /* whole octets, and a 00 octet when the first one would have its high bit set */
    size_t pad = digits % 2 ? 1 : hex[start] >= '8' ? 2 : 0;
    if (digits + pad > 40) {
        return err_set(e, ERRC_INVALID, "serial '%.80s' is longer than 20 octets", in);
    }
    memset(out, '0', pad);
    memcpy(out + pad, hex + start, digits + 1);
    return 0;
}

int ca_serial_hex(const ASN1_INTEGER *sn, char *out, size_t cap)
{
    /* OpenSSL keeps the magnitude: the 00 octet of a first byte >= 0x80 is ours to add */
    const unsigned char *p = sn != NULL ? ASN1_STRING_get0_data(sn) : NULL;
    int n = sn != NULL ? ASN1_STRING_length(sn) : 0;
    size_t pad = n > 0 && (p[0] & 0x80) ? 2 : 0;
    if (cap > 0) {
        out[0] = '\0';
    }
    if (n < 1 || ASN1_STRING_type(sn) != V_ASN1_INTEGER || pad + 2 * (size_t)n + 1 > cap) {
        return -1;
    }
    memset(out, '0', pad);
    hex_encode(p, (size_t)n, out + pad);
    return 0;
}
