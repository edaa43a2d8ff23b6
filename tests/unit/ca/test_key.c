/*
 * ca/key: file: keys (scrypt PKCS#8, 0600, refusals) and pkcs11: keys in a private SoftHSM2 token
 * made by tests/harness/softhsm-fixture.sh. Every key is used to sign and the signature is
 * verified with the public half; every refusal checks the message and that nothing was produced.
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ca/key.h"
#include "core/mem.h"
#include "core/util.h"
#include "tests/harness/tt.h"

#define PASS   "correct horse battery"
#define SO_PIN "12345678"
#define PIN    "4321"
#define TOKEN  "jitrca-test"

static char path_buf[512];

static const char *tpath(const char *name)
{
    snprintf(path_buf, sizeof(path_buf), "%s/%s", tt_tmpdir(), name);
    return path_buf;
}

/* Signs "hello" with the key and verifies with a public copy of the key (no engine). */
static int sign_and_verify(EVP_PKEY *pk)
{
    int rc = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_MD_CTX *mv = EVP_MD_CTX_new();
    unsigned char *der = NULL, sig[1024];
    const unsigned char *p = NULL;
    size_t siglen = sizeof(sig);
    EVP_PKEY *pub = NULL;
    int derlen = i2d_PUBKEY(pk, &der);
    CHECK(derlen > 0);
    p = der;
    CHECK((pub = d2i_PUBKEY(NULL, &p, derlen)) != NULL);
    CHECK(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk) == 1);
    CHECK(EVP_DigestSign(md, sig, &siglen, (const unsigned char *)"hello", 5) == 1);
    CHECK(EVP_DigestVerifyInit(mv, NULL, EVP_sha256(), NULL, pub) == 1);
    CHECK(EVP_DigestVerify(mv, sig, siglen, (const unsigned char *)"hello", 5) == 1);
    CHECK(EVP_DigestVerify(mv, sig, siglen, (const unsigned char *)"hellO", 5) != 1);
out:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    EVP_MD_CTX_free(mv);
    EVP_PKEY_free(pub);
    OPENSSL_free(der);
    return rc;
}

/* EVP_PKEY_sign over a SHA-256 digest, checked with EVP_PKEY_verify. */
static int raw_sign(EVP_PKEY *pk)
{
    int rc = 0;
    unsigned char dg[32], sig[1024];
    size_t siglen = sizeof(sig);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pk, NULL);
    EVP_PKEY_CTX *v = EVP_PKEY_CTX_new(pk, NULL);
    memset(dg, 0x5a, sizeof(dg));
    CHECK(c != NULL && v != NULL);
    CHECK(EVP_PKEY_sign_init(c) == 1);
    CHECK(EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) == 1);
    CHECK(EVP_PKEY_sign(c, sig, &siglen, dg, sizeof(dg)) == 1);
    CHECK(EVP_PKEY_verify_init(v) == 1);
    CHECK(EVP_PKEY_CTX_set_signature_md(v, EVP_sha256()) == 1);
    CHECK(EVP_PKEY_verify(v, sig, siglen, dg, sizeof(dg)) == 1);
out:
    ERR_clear_error();
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_CTX_free(v);
    return rc;
}

/* A self-signed certificate signed with X509_sign, verified with X509_verify. */
static int x509_sign_check(EVP_PKEY *pk)
{
    int rc = 0;
    X509 *x = X509_new();
    CHECK(x != NULL);
    CHECK(X509_set_version(x, 2) == 1);
    CHECK(ASN1_INTEGER_set(X509_get_serialNumber(x), 7) == 1);
    CHECK(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                     (const unsigned char *)"t", -1, -1, 0) == 1);
    CHECK(X509_set_issuer_name(x, X509_get_subject_name(x)) == 1);
    CHECK(X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL);
    CHECK(X509_gmtime_adj(X509_getm_notAfter(x), 3600) != NULL);
    CHECK(X509_set_pubkey(x, pk) == 1);
    CHECK(X509_sign(x, pk, EVP_sha256()) > 0);
    CHECK(X509_verify(x, X509_get0_pubkey(x)) == 1);
out:
    ERR_clear_error();
    X509_free(x);
    return rc;
}

static int file_roundtrip(enum ca_key_type t, const char *fname)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct ca_key *k = NULL, *l = NULL;
    struct ca_key_opts o = { PASS, NULL };
    char uri[600];
    struct stat st;
    snprintf(uri, sizeof(uri), "file:%s", tpath(fname));
    k = ca_key_generate(t, uri, &o, &e);
    CHECK_OK(k == NULL, &e);
    CHECK_INT_EQ(ca_key_type(k), t);
    CHECK(!ca_key_is_hsm(k));
    CHECK_STR_EQ(ca_key_uri(k), uri);
    CHECK(stat(uri + 5, &st) == 0);
    CHECK_INT_EQ(st.st_mode & 0777, 0600);
    CHECK(tt_sh("grep -q 'BEGIN ENCRYPTED PRIVATE KEY' '%s'", uri + 5) == 0);
    /* PBES2 + scrypt + AES-256-CBC, and readable by the openssl CLI */
    CHECK(tt_sh("openssl asn1parse -in '%s' | grep -q OBJECT.*:scrypt", uri + 5) == 0);
    CHECK(tt_sh("openssl asn1parse -in '%s' | grep -q :aes-256-cbc", uri + 5) == 0);
    CHECK(tt_sh("openssl pkey -in '%s' -passin 'pass:%s' -noout", uri + 5, PASS) == 0);
    CHECK(tt_sh("openssl asn1parse -in '%s' | grep -q INTEGER.*:4000", uri + 5) == 0);
    l = ca_key_load(uri, &o, &e);
    CHECK_OK(l == NULL, &e);
    CHECK_INT_EQ(ca_key_type(l), t);
    CHECK(EVP_PKEY_eq(ca_key_pkey(k), ca_key_pkey(l)) == 1);
    CHECK(sign_and_verify(ca_key_pkey(l)) == 0);
    CHECK(raw_sign(ca_key_pkey(l)) == 0);
    CHECK(x509_sign_check(ca_key_pkey(l)) == 0);
out:
    ca_key_free(k);
    ca_key_free(l);
    return rc;
}

static int t_types(void)
{
    int rc = 0;
    enum ca_key_type t = CA_KEY_EC_P256;
    for (int i = 0; i < CA_KEY__COUNT; i++) {
        CHECK(ca_key_type_parse(ca_key_type_name((enum ca_key_type)i), &t) == 0);
        CHECK_INT_EQ(t, i);
    }
    CHECK(ca_key_type_parse("ec-p521", &t) == -1);
    CHECK(ca_key_type_parse("", &t) == -1);
    CHECK_STR_EQ(ca_key_type_name(CA_KEY_EC_P256), "ec-p256");
    CHECK_STR_EQ(ca_key_type_name(CA_KEY_RSA_4096), "rsa-4096");
out:
    return rc;
}

static int t_type_of_unsupported(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    enum ca_key_type t;
    EVP_PKEY *k1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp521r1");
    EVP_PKEY *k2 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    CHECK(k1 != NULL && k2 != NULL);
    CHECK(ca_key_type_of(k1, &t, &e) == -1);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "secp521r1");
    err_clear(&e);
    CHECK(ca_key_type_of(k2, &t, &e) == -1);
    CHECK_STR_CONTAINS(e.msg, "not supported");
out:
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    return rc;
}

static int t_file_p256(void)
{
    return file_roundtrip(CA_KEY_EC_P256, "p256.pem");
}

static int t_file_p384(void)
{
    return file_roundtrip(CA_KEY_EC_P384, "p384.pem");
}

static int t_file_rsa2048(void)
{
    return file_roundtrip(CA_KEY_RSA_2048, "rsa2048.pem");
}

static int t_file_rsa3072(void)
{
    return file_roundtrip(CA_KEY_RSA_3072, "rsa3072.pem");
}

static int t_file_generate_refusals(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct ca_key *k = NULL;
    struct ca_key_opts empty = { "", NULL }, none = { NULL, NULL }, shrt = { "1234567", NULL };
    struct ca_key_opts good = { PASS, NULL };
    char uri[600];
    snprintf(uri, sizeof(uri), "file:%s", tpath("refused.pem"));

    CHECK(ca_key_generate(CA_KEY_EC_P256, uri, &empty, &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "empty passphrase");
    CHECK(!file_exists(uri + 5));
    err_clear(&e);
    CHECK(ca_key_generate(CA_KEY_EC_P256, uri, &none, &e) == NULL);
    CHECK_STR_CONTAINS(e.msg, "empty passphrase");
    CHECK(!file_exists(uri + 5));
    err_clear(&e);
    CHECK(ca_key_generate(CA_KEY_EC_P256, uri, &shrt, &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "shorter than 8 characters");
    CHECK(!file_exists(uri + 5));
    err_clear(&e);
    CHECK(ca_key_generate(CA_KEY__COUNT, uri, &good, &e) == NULL);
    CHECK_STR_CONTAINS(e.msg, "unknown key type");
    CHECK(!file_exists(uri + 5));
    err_clear(&e);

    /* never overwrite: the existing file keeps its bytes */
    CHECK(tt_sh("echo precious > '%s'", uri + 5) == 0);
    CHECK(ca_key_generate(CA_KEY_EC_P256, uri, &good, &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_CONFLICT);
    CHECK_STR_CONTAINS(e.msg, "already exists");
    CHECK(tt_sh("grep -qx precious '%s'", uri + 5) == 0);
    err_clear(&e);

    /* a missing directory */
    snprintf(uri, sizeof(uri), "file:%s", tpath("nodir/k.pem"));
    CHECK(ca_key_generate(CA_KEY_EC_P256, uri, &good, &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_INTERNAL);
    CHECK_STR_CONTAINS(e.msg, "cannot create");
    err_clear(&e);

    CHECK(ca_key_generate(CA_KEY_EC_P256, "file:", &good, &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "neither file:PATH nor pkcs11:");
    err_clear(&e);
    CHECK(ca_key_generate(CA_KEY_EC_P256, "/etc/key.pem", &good, &e) == NULL);
    CHECK_STR_CONTAINS(e.msg, "neither file:PATH nor pkcs11:");
out:
    ca_key_free(k);
    return rc;
}

static int t_file_load_refusals(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct ca_key *k = NULL;
    struct ca_key_opts good = { PASS, NULL }, bad = { "not the passphrase", NULL };
    struct ca_key_opts none = { NULL, NULL };
    char uri[600], plain[600], missing[600], junk[600];
    snprintf(uri, sizeof(uri), "file:%s", tpath("load.pem"));
    snprintf(plain, sizeof(plain), "file:%s", tpath("plain.pem"));
    snprintf(missing, sizeof(missing), "file:%s", tpath("missing.pem"));
    snprintf(junk, sizeof(junk), "file:%s", tpath("junk.pem"));

    k = ca_key_generate(CA_KEY_EC_P256, uri, &good, &e);
    CHECK_OK(k == NULL, &e);
    ca_key_free(k);
    k = NULL;

    CHECK((k = ca_key_load(uri, &bad, &e)) == NULL);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    {
        char want[700];
        snprintf(want, sizeof(want), "wrong passphrase for key '%s'", uri);
        CHECK_STR_EQ(e.msg, want);
    }
    CHECK(ERR_peek_error() == 0); /* the OpenSSL queue was drained */
    err_clear(&e);

    CHECK((k = ca_key_load(uri, &none, &e)) == NULL);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "no passphrase");
    err_clear(&e);

    CHECK((k = ca_key_load(missing, &good, &e)) == NULL);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    CHECK_STR_CONTAINS(e.msg, "not found");
    err_clear(&e);

    CHECK(chmod(uri + 5, 0644) == 0);
    CHECK((k = ca_key_load(uri, &good, &e)) == NULL);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    CHECK_STR_CONTAINS(e.msg, "accessible by group or others");
    err_clear(&e);
    CHECK(chmod(uri + 5, 0640) == 0);
    CHECK((k = ca_key_load(uri, &good, &e)) == NULL);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    err_clear(&e);
    CHECK(chmod(uri + 5, 0600) == 0);
    k = ca_key_load(uri, &good, &e);
    CHECK_OK(k == NULL, &e);
    ca_key_free(k);
    k = NULL;

    CHECK(tt_sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '%s' "
                "2>/dev/null && chmod 600 '%s'",
                plain + 5, plain + 5) == 0);
    CHECK((k = ca_key_load(plain, &good, &e)) == NULL);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    {
        char want[700];
        snprintf(want, sizeof(want), "key file '%s' is not encrypted", plain + 5);
        CHECK_STR_EQ(e.msg, want);
    }
    err_clear(&e);

    CHECK(tt_sh("printf -- '-----BEGIN ENCRYPTED PRIVATE KEY-----\\nAAAA\\n-----END ENCRYPTED "
                "PRIVATE KEY-----\\n' > '%s' && chmod 600 '%s'",
                junk + 5, junk + 5) == 0);
    CHECK((k = ca_key_load(junk, &good, &e)) == NULL);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "is damaged");
    CHECK(ERR_peek_error() == 0);
out:
    ca_key_free(k);
    return rc;
}

/* ---- PKCS#11 in a private SoftHSM2 token ---- */

static int hsm_ready;

static int hsm_setup(void)
{
    char dir[600], conf[700];
    const char *src = getenv("JITRCA_SOURCE_DIR");
    if (hsm_ready) {
        return 0;
    }
    if (src == NULL) {
        fprintf(stderr, "  JITRCA_SOURCE_DIR is not set (run through ctest)\n");
        return -1;
    }
    snprintf(dir, sizeof(dir), "%s/hsm", tt_tmpdir());
    if (tt_sh("'%s/tests/harness/softhsm-fixture.sh' init '%s' %s %s %s >/dev/null", src, dir,
              TOKEN, SO_PIN, PIN) != 0 ||
        tt_sh("'%s/tests/harness/softhsm-fixture.sh' add '%s' other-token %s %s >/dev/null", src,
              dir, SO_PIN, PIN) != 0) {
        fprintf(stderr, "  softhsm-fixture.sh failed (softhsm2 installed?)\n");
        return -1;
    }
    snprintf(conf, sizeof(conf), "%s/softhsm2.conf", dir);
    setenv("SOFTHSM2_CONF", conf, 1);
    hsm_ready = 1;
    return 0;
}

static int pkcs11_roundtrip(enum ca_key_type t, const char *label)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct ca_key *k = NULL, *l = NULL;
    struct ca_key_opts o = { PIN, NULL };
    char uri[300];
    CHECK(hsm_setup() == 0);
    snprintf(uri, sizeof(uri), "pkcs11:token=%s;object=%s;type=private", TOKEN, label);
    k = ca_key_generate(t, uri, &o, &e);
    CHECK_OK(k == NULL, &e);
    CHECK(ca_key_is_hsm(k));
    CHECK_INT_EQ(ca_key_type(k), t);
    CHECK_STR_EQ(ca_key_uri(k), uri);
    CHECK(sign_and_verify(ca_key_pkey(k)) == 0);
    CHECK(raw_sign(ca_key_pkey(k)) == 0);
    CHECK(x509_sign_check(ca_key_pkey(k)) == 0);
    l = ca_key_load(uri, &o, &e);
    CHECK_OK(l == NULL, &e);
    CHECK(EVP_PKEY_eq(ca_key_pkey(k), ca_key_pkey(l)) == 1);
    CHECK(sign_and_verify(ca_key_pkey(l)) == 0);
    /* the private key is sensitive and never extractable */
    CHECK(tt_sh("pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --token-label %s --login "
                "--pin %s --list-objects --type privkey 2>/dev/null | grep -A8 'label: *%s$' "
                "| grep -q 'Access: *sensitive, always sensitive, never extractable'",
                TOKEN, PIN, label) == 0);
out:
    ca_key_free(k);
    ca_key_free(l);
    return rc;
}

static int t_pkcs11_p256(void)
{
    return pkcs11_roundtrip(CA_KEY_EC_P256, "k-p256");
}

static int t_pkcs11_p384(void)
{
    return pkcs11_roundtrip(CA_KEY_EC_P384, "k-p384");
}

static int t_pkcs11_rsa2048(void)
{
    return pkcs11_roundtrip(CA_KEY_RSA_2048, "k-rsa2048");
}

static int t_pkcs11_pin_sources(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct ca_key *k = NULL;
    struct ca_key_opts none = { NULL, NULL }, bad = { "9999", NULL };
    char uri[900], pinfile[600];
    CHECK(hsm_setup() == 0);
    snprintf(pinfile, sizeof(pinfile), "%s", tpath("pin.txt"));
    CHECK(tt_sh("printf '%s\\n' > '%s' && chmod 600 '%s'", PIN, pinfile, pinfile) == 0);

    /* pin-value: used, and never shown */
    snprintf(uri, sizeof(uri), "pkcs11:token=%s;object=pins?pin-value=%s", TOKEN, PIN);
    k = ca_key_generate(CA_KEY_EC_P256, uri, &bad, &e);
    CHECK_OK(k == NULL, &e);
    CHECK_STR_EQ(ca_key_uri(k), "pkcs11:token=" TOKEN ";object=pins");
    ca_key_free(k);
    k = NULL;

    /* pin-source beats opts.secret; module-path is honoured */
    snprintf(uri, sizeof(uri),
             "pkcs11:token=%s;object=pins?pin-source=file:%s&module-path=/usr/lib/softhsm/"
             "libsofthsm2.so",
             TOKEN, pinfile);
    k = ca_key_load(uri, &bad, &e);
    CHECK_OK(k == NULL, &e);
    CHECK(sign_and_verify(ca_key_pkey(k)) == 0);
    ca_key_free(k);
    k = NULL;

    /* a world-readable PIN file is refused */
    CHECK(chmod(pinfile, 0644) == 0);
    CHECK((k = ca_key_load(uri, &none, &e)) == NULL);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    CHECK_STR_CONTAINS(e.msg, "PIN file");
    err_clear(&e);

    /* no PIN anywhere */
    snprintf(uri, sizeof(uri), "pkcs11:token=%s;object=pins", TOKEN);
    CHECK((k = ca_key_load(uri, &none, &e)) == NULL);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "no PIN given");
out:
    ca_key_free(k);
    return rc;
}

static int t_pkcs11_refusals(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct ca_key *k = NULL;
    struct ca_key_opts o = { PIN, NULL }, bad = { "0000", NULL };
    struct ca_key_opts badmod = { PIN, "/nonexistent/libpkcs11.so" };
    CHECK(hsm_setup() == 0);
    k = ca_key_generate(CA_KEY_EC_P256, "pkcs11:token=" TOKEN ";object=dup;id=%01%02", &o, &e);
    CHECK_OK(k == NULL, &e);
    ca_key_free(k);
    k = NULL;

    /* existing label, existing id */
    CHECK(ca_key_generate(CA_KEY_EC_P256, "pkcs11:token=" TOKEN ";object=dup", &o, &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_CONFLICT);
    CHECK_STR_CONTAINS(e.msg, "already has an object labelled 'dup'");
    err_clear(&e);
    CHECK(ca_key_generate(CA_KEY_EC_P256, "pkcs11:token=" TOKEN ";object=dup2;id=%01%02", &o, &e) ==
          NULL);
    CHECK_INT_EQ(e.code, ERRC_CONFLICT);
    CHECK_STR_CONTAINS(e.msg, "with this id");
    err_clear(&e);
    CHECK(tt_sh("pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --token-label %s --login "
                "--pin %s --list-objects 2>/dev/null | grep -q dup2",
                TOKEN, PIN) != 0);

    /* load by id alone */
    k = ca_key_load("pkcs11:token=" TOKEN ";id=%01%02", &o, &e);
    CHECK_OK(k == NULL, &e);
    ca_key_free(k);
    k = NULL;

    /* wrong PIN */
    CHECK(ca_key_load("pkcs11:token=" TOKEN ";object=dup", &bad, &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    CHECK_STR_EQ(e.msg, "wrong PIN for key 'pkcs11:token=" TOKEN ";object=dup'");
    err_clear(&e);
    CHECK(ca_key_generate(CA_KEY_EC_P256, "pkcs11:token=" TOKEN ";object=nopin", &bad, &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    err_clear(&e);

    /* missing object, token, module */
    CHECK(ca_key_load("pkcs11:token=" TOKEN ";object=nothere", &o, &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    CHECK_STR_CONTAINS(e.msg, "no private key 'nothere'");
    err_clear(&e);
    CHECK(ca_key_load("pkcs11:token=no-such-token;object=dup", &o, &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    CHECK_STR_CONTAINS(e.msg, "no PKCS#11 token 'no-such-token'");
    err_clear(&e);
    CHECK(ca_key_load("pkcs11:token=" TOKEN ";object=dup", &badmod, &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_UNAVAILABLE);
    CHECK_STR_CONTAINS(e.msg, "cannot load PKCS#11 module");
    err_clear(&e);

    /* the same label in another token is another key */
    k = ca_key_generate(CA_KEY_EC_P256, "pkcs11:token=other-token;object=dup", &o, &e);
    CHECK_OK(k == NULL, &e);
    CHECK(sign_and_verify(ca_key_pkey(k)) == 0);
out:
    ca_key_free(k);
    return rc;
}

static int t_pkcs11_uri_errors(void)
{
    static const struct {
        const char *uri;
        const char *msg;
    } bad[] = {
        { "pkcs11:object=x", "names no token" },
        { "pkcs11:token=t", "names no key" },
        { "pkcs11:token=t;object=x;color=red", "'color' is not supported" },
        { "pkcs11:token=t;object=x?pin-value", "has no value" },
        { "pkcs11:token=t;object=%zz", "bad %-escape" },
        { "pkcs11:token=t;object=%4", "bad %-escape" },
        { "pkcs11:token=t;object=x;type=public", "type must be 'private'" },
        { "pkcs11:token=t;object=x;object=y", "given twice" },
        { "pkcs11:token=t;pin-value=1234;object=x", "'pin-value' is not supported here" },
    };
    int rc = 0;
    struct ca_key_opts o = { PIN, NULL };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct err e = ERR_INIT;
        CHECK(ca_key_load(bad[i].uri, &o, &e) == NULL);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, bad[i].msg);
        CHECK(strstr(e.msg, "1234") == NULL);
    }
out:
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "types", t_types },
        { "type_of_unsupported", t_type_of_unsupported },
        { "file_p256", t_file_p256 },
        { "file_p384", t_file_p384 },
        { "file_rsa2048", t_file_rsa2048 },
        { "file_rsa3072", t_file_rsa3072 },
        { "file_generate_refusals", t_file_generate_refusals },
        { "file_load_refusals", t_file_load_refusals },
        { "pkcs11_uri_errors", t_pkcs11_uri_errors },
        { "pkcs11_p256", t_pkcs11_p256 },
        { "pkcs11_p384", t_pkcs11_p384 },
        { "pkcs11_rsa2048", t_pkcs11_rsa2048 },
        { "pkcs11_pin_sources", t_pkcs11_pin_sources },
        { "pkcs11_refusals", t_pkcs11_refusals },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
