/*
 * CA keys by URI: the key types, the file: backend, and the dispatch to the pkcs11: backend
 * (ca/key_pkcs11.c, the only file that touches the deprecated ENGINE API).
 *
 * file: keys are PKCS#8 EncryptedPrivateKeyInfo, PEM, PBES2 with scrypt and AES-256-CBC.
 * Parameters: N = 2^14, r = 8, p = 4. OpenSSL 3.0 caps scrypt at 32 MiB when it decrypts PBES2
 * (EVP_PBE_scrypt's default maxmem), so N = 2^15 with r = 8 is not readable by `openssl pkey`
 * or by PEM_read_*; N = 2^14, r = 8 is the largest memory cost stock OpenSSL accepts (16 MiB),
 * and p = 4 multiplies the work by four (about 0.15 s per load on this machine; a CA key is
 * loaded once at start, so the cost falls on an attacker, not on issuance).
 *
 * Writing goes through file_write_atomic(excl = true): 0600, never overwrites. Loading refuses a
 * file readable by group or others, and refuses unencrypted keys outright. The PKCS#8 envelope
 * is parsed first and decrypted separately so that a wrong passphrase is told apart from a
 * damaged file.
 */
#include "ca/key.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <string.h>
#include <sys/stat.h>

#include "ca/key_int.h"
#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"

#define KEY_SCRYPT_N       16384
#define KEY_SCRYPT_R       8
#define KEY_SCRYPT_P       4
#define KEY_SALT_LEN       16
#define KEY_PASSPHRASE_MIN 8
#define KEY_FILE_MAX       65536

struct ca_key {
    char *uri; /* as given, without a pin-value */
    enum ca_key_type type;
    EVP_PKEY *pkey;
    bool hsm;
    void *engine; /* pkcs11: the engine reference the key needs */
};

static const struct {
    const char *name;
    const char *alg;   /* "EC" or "RSA" */
    const char *curve; /* EC group name */
    unsigned bits;
} key_types[] = {
    [CA_KEY_EC_P256] = { "ec-p256", "EC", "prime256v1", 256 },
    [CA_KEY_EC_P384] = { "ec-p384", "EC", "secp384r1", 384 },
    [CA_KEY_RSA_2048] = { "rsa-2048", "RSA", NULL, 2048 },
    [CA_KEY_RSA_3072] = { "rsa-3072", "RSA", NULL, 3072 },
    [CA_KEY_RSA_4096] = { "rsa-4096", "RSA", NULL, 4096 },
};
_Static_assert(ARRAY_LEN(key_types) == CA_KEY__COUNT, "key_types must cover enum ca_key_type");

const char *ca_key_type_name(enum ca_key_type t)
{
    if ((unsigned)t >= CA_KEY__COUNT) {
        return "unknown";
    }
    return key_types[t].name;
}

int ca_key_type_parse(const char *name, enum ca_key_type *out)
{
    for (size_t i = 0; name != NULL && i < ARRAY_LEN(key_types); i++) {
        if (strcmp(name, key_types[i].name) == 0) {
            *out = (enum ca_key_type)i;
            return 0;
        }
    }
    return -1;
}

int ca_key_type_of(const EVP_PKEY *pk, enum ca_key_type *out, struct err *e)
{
    int bits = EVP_PKEY_get_bits(pk);
    if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC) {
        char group[64];
        size_t glen = 0;
        if (EVP_PKEY_get_group_name(pk, group, sizeof(group), &glen) != 1) {
            return err_openssl(e, ERRC_INVALID, "EC key without a named curve");
        }
        for (size_t i = 0; i < ARRAY_LEN(key_types); i++) {
            if (key_types[i].curve != NULL && strcmp(group, key_types[i].curve) == 0) {
                *out = (enum ca_key_type)i;
                return 0;
            }
        }
        return err_set(e, ERRC_INVALID, "EC curve '%s' is not supported (P-256 or P-384)", group);
    }
    if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA) {
        for (size_t i = 0; i < ARRAY_LEN(key_types); i++) {
            if (key_types[i].curve == NULL && bits >= 0 && key_types[i].bits == (unsigned)bits) {
                *out = (enum ca_key_type)i;
                return 0;
            }
        }
        return err_set(e, ERRC_INVALID, "RSA key of %d bits is not supported (2048, 3072, 4096)",
                       bits);
    }
    return err_set(e, ERRC_INVALID, "key algorithm '%s' is not supported (EC or RSA)",
                   OBJ_nid2sn(EVP_PKEY_get_base_id(pk)));
}

static EVP_PKEY *keygen(enum ca_key_type t, struct err *e)
{
    EVP_PKEY *pk = NULL;
    if (key_types[t].curve != NULL) {
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", key_types[t].curve);
    } else {
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)key_types[t].bits);
    }
    if (pk == NULL) {
        err_openssl(e, ERRC_INTERNAL, "cannot generate a %s key", key_types[t].name);
    }
    return pk;
}

static struct ca_key *key_wrap(const char *uri, EVP_PKEY *pk, bool hsm, void *engine, struct err *e)
{
    enum ca_key_type t;
    if (ca_key_type_of(pk, &t, e) != 0) {
        err_prefix(e, "key '%s'", uri);
        EVP_PKEY_free(pk);
        if (engine != NULL) {
            ca_key_pkcs11_release(engine);
        }
        return NULL;
    }
    struct ca_key *k = xcalloc(1, sizeof(*k));
    k->uri = xstrdup(uri);
    k->type = t;
    k->pkey = pk;
    k->hsm = hsm;
    k->engine = engine;
    return k;
}

static int check_passphrase(const char *uri, const char *pass, struct err *e)
{
    if (pass == NULL || pass[0] == '\0') {
        return err_set(e, ERRC_INVALID, "an empty passphrase is refused for key '%s'", uri);
    }
    if (strlen(pass) < KEY_PASSPHRASE_MIN) {
        return err_set(e, ERRC_INVALID, "the passphrase for key '%s' is shorter than %d characters",
                       uri, KEY_PASSPHRASE_MIN);
    }
    return 0;
}

static int passlen_of(const char *pass, int *out, struct err *e)
{
    size_t n = strlen(pass);
    if (n > 1024) {
        return err_set(e, ERRC_INVALID, "passphrase longer than 1024 bytes");
    }
    *out = (int)n;
    return 0;
}

static struct ca_key *file_generate(enum ca_key_type t, const char *uri,
                                    const struct ca_key_opts *o, struct err *e)
{
    const char *path = uri + strlen("file:");
    EVP_PKEY *pk = NULL;
    PKCS8_PRIV_KEY_INFO *p8inf = NULL;
    X509_ALGOR *pbe = NULL;
    X509_SIG *p8 = NULL;
    BIO *bio = NULL;
    struct ca_key *k = NULL;
    const char *pass = o != NULL ? o->secret : NULL;
    int passlen = 0;
    char *pem = NULL;
    long pemlen = 0;

    if (check_passphrase(uri, pass, e) != 0 || passlen_of(pass, &passlen, e) != 0) {
        goto out;
    }
    if (file_exists(path)) {
        err_set(e, ERRC_CONFLICT, "key file '%s' already exists", path);
        goto out;
    }
    if ((pk = keygen(t, e)) == NULL) {
        goto out;
    }
    if ((p8inf = EVP_PKEY2PKCS8(pk)) == NULL) {
        err_openssl(e, ERRC_INTERNAL, "cannot encode key '%s'", uri);
        goto out;
    }
    pbe = PKCS5_pbe2_set_scrypt(EVP_aes_256_cbc(), NULL, KEY_SALT_LEN, NULL, KEY_SCRYPT_N,
                                KEY_SCRYPT_R, KEY_SCRYPT_P);
    if (pbe == NULL) {
        err_openssl(e, ERRC_INTERNAL, "cannot set up scrypt for key '%s'", uri);
        goto out;
    }
    if ((p8 = PKCS8_set0_pbe(pass, passlen, p8inf, pbe)) == NULL) {
        err_openssl(e, ERRC_INTERNAL, "cannot encrypt key '%s'", uri);
        goto out;
    }
    pbe = NULL; /* owned by p8 now */
    if ((bio = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_PKCS8(bio, p8) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot encode key '%s'", uri);
        goto out;
    }
    pemlen = BIO_get_mem_data(bio, &pem);
    if (pemlen <= 0) {
        err_set(e, ERRC_INTERNAL, "cannot encode key '%s'", uri);
        goto out;
    }
    if (file_write_atomic(path, pem, (size_t)pemlen, 0600, true, e) != 0) {
        goto out;
    }
    k = key_wrap(uri, pk, false, NULL, e);
    pk = NULL;
out:
    EVP_PKEY_free(pk);
    PKCS8_PRIV_KEY_INFO_free(p8inf);
    X509_ALGOR_free(pbe);
    X509_SIG_free(p8);
    BIO_free(bio);
    return k;
}

static struct ca_key *file_load(const char *uri, const struct ca_key_opts *o, struct err *e)
{
    const char *path = uri + strlen("file:");
    struct buf data = BUF_INIT;
    BIO *bio = NULL;
    X509_SIG *p8 = NULL;
    PKCS8_PRIV_KEY_INFO *p8inf = NULL;
    EVP_PKEY *pk = NULL;
    struct ca_key *k = NULL;
    const char *pass = o != NULL ? o->secret : NULL;
    int passlen = 0;
    struct stat st;

    if (stat(path, &st) != 0) {
        if (errno == ENOENT) {
            err_set(e, ERRC_NOT_FOUND, "key file '%s' not found", path);
        } else {
            err_errno(e, ERRC_DENIED, "cannot access key file '%s'", path);
        }
        goto out;
    }
    if (file_check_private(path, e) != 0) {
        goto out;
    }
    if (file_read_all(path, KEY_FILE_MAX, &data, e) != 0) {
        e->code = e->code == ERRC_TOO_LARGE ? ERRC_INVALID : ERRC_DENIED;
        goto out;
    }
    if (strstr(data.data, "-----BEGIN ENCRYPTED PRIVATE KEY-----") == NULL) {
        if (strstr(data.data, "PRIVATE KEY-----") != NULL) {
            err_set(e, ERRC_INVALID, "key file '%s' is not encrypted", path);
        } else {
            err_set(e, ERRC_INVALID, "key file '%s' holds no encrypted PKCS#8 key", path);
        }
        goto out;
    }
    if (pass == NULL || pass[0] == '\0') {
        err_set(e, ERRC_INVALID, "no passphrase given for key '%s'", uri);
        goto out;
    }
    if (passlen_of(pass, &passlen, e) != 0) {
        goto out;
    }
    if ((bio = BIO_new_mem_buf(data.data, (int)data.len)) == NULL) {
        err_openssl(e, ERRC_INTERNAL, "BIO_new_mem_buf");
        goto out;
    }
    if ((p8 = PEM_read_bio_PKCS8(bio, NULL, NULL, NULL)) == NULL) {
        err_openssl(e, ERRC_INVALID, "key file '%s' is damaged", path);
        goto out;
    }
    if ((p8inf = PKCS8_decrypt(p8, pass, passlen)) == NULL) {
        err_openssl(e, ERRC_DENIED, "wrong passphrase for key '%s'", uri);
        goto out;
    }
    if ((pk = EVP_PKCS82PKEY(p8inf)) == NULL) {
        err_openssl(e, ERRC_INVALID, "key file '%s' holds no usable key", path);
        goto out;
    }
    k = key_wrap(uri, pk, false, NULL, e);
out:
    OPENSSL_cleanse(data.data, data.len);
    buf_release(&data);
    BIO_free(bio);
    X509_SIG_free(p8);
    PKCS8_PRIV_KEY_INFO_free(p8inf);
    return k;
}

static struct ca_key *pkcs11_load(const char *uri, const struct ca_key_opts *o, struct err *e)
{
    struct buf shown = BUF_INIT;
    void *engine = NULL;
    struct ca_key *k = NULL;
    EVP_PKEY *pk = ca_key_pkcs11_load(uri, o, &engine, e);
    if (pk != NULL) {
        ca_key_pkcs11_redact(uri, &shown);
        k = key_wrap(shown.data, pk, true, engine, e);
    }
    buf_release(&shown);
    return k;
}

struct ca_key *ca_key_generate(enum ca_key_type t, const char *uri, const struct ca_key_opts *o,
                               struct err *e)
{
    if ((unsigned)t >= CA_KEY__COUNT) {
        err_set(e, ERRC_INVALID, "unknown key type %d", (int)t);
        return NULL;
    }
    if (uri != NULL && str_has_prefix(uri, "file:") && uri[5] != '\0') {
        return file_generate(t, uri, o, e);
    }
    if (uri != NULL && str_has_prefix(uri, "pkcs11:")) {
        if (ca_key_pkcs11_generate(t, uri, o, e) != 0) {
            return NULL;
        }
        return pkcs11_load(uri, o, e);
    }
    err_set(e, ERRC_INVALID, "key URI '%s' is neither file:PATH nor pkcs11:...",
            uri ? uri : "(none)");
    return NULL;
}

struct ca_key *ca_key_load(const char *uri, const struct ca_key_opts *o, struct err *e)
{
    if (uri != NULL && str_has_prefix(uri, "file:") && uri[5] != '\0') {
        return file_load(uri, o, e);
    }
    if (uri != NULL && str_has_prefix(uri, "pkcs11:")) {
        return pkcs11_load(uri, o, e);
    }
    err_set(e, ERRC_INVALID, "key URI '%s' is neither file:PATH nor pkcs11:...",
            uri ? uri : "(none)");
    return NULL;
}

void ca_key_free(struct ca_key *k)
{
    if (k == NULL) {
        return;
    }
    EVP_PKEY_free(k->pkey);
    if (k->engine != NULL) {
        ca_key_pkcs11_release(k->engine);
    }
    xfree(k->uri);
    xfree(k);
}

EVP_PKEY *ca_key_pkey(const struct ca_key *k)
{
    return k->pkey;
}

enum ca_key_type ca_key_type(const struct ca_key *k)
{
    return k->type;
}

const char *ca_key_uri(const struct ca_key *k)
{
    return k->uri;
}

bool ca_key_is_hsm(const struct ca_key *k)
{
    return k->hsm;
}
