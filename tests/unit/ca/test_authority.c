/*
 * ca/authority: roots, intermediates and externally signed CAs for every key type, checked with
 * `openssl verify`, GnuTLS `certtool --verify` and `openssl x509 -text`; the refusals (each
 * asserting its message and that no directory was left); the same root + intermediate flow with
 * keys generated in a private SoftHSM2 token.
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ca/authority.h"
#include "core/mem.h"
#include "core/util.h"
#include "tests/harness/tt.h"

#define PASS  "correct horse battery"
#define PIN   "4321"
#define TOKEN "jitrca-test"

static char dd_buf[512];

/* A fresh data directory per case. */
static const char *datadir(const char *name)
{
    snprintf(dd_buf, sizeof(dd_buf), "%s/%s", tt_tmpdir(), name);
    return dd_buf;
}

static struct ca_init_opts opts(const char *name, enum ca_key_type t, const char *parent)
{
    struct ca_init_opts o;
    memset(&o, 0, sizeof(o));
    o.name = name;
    o.key_type = t;
    o.days = 3650;
    o.pathlen = parent ? -1 : 1;
    o.parent = parent;
    o.key_opts.secret = PASS;
    o.parent_opts.secret = PASS;
    return o;
}

static bool ca_dir_exists(const char *dd, const char *name)
{
    char p[700];
    snprintf(p, sizeof(p), "%s/ca/%s", dd, name);
    return file_exists(p);
}

/* openssl x509 -text of DD/ca/NAME/cert.pem contains every needle. */
static int text_has(const char *dd, const char *name, const char *needle)
{
    return tt_sh("openssl x509 -noout -text -in '%s/ca/%s/cert.pem' | grep -q -- '%s'", dd, name,
                 needle);
}

/* Writes the chain of NAME to DD/NAME-chain.pem. */
static int write_chain(const char *dd, const char *name, struct err *e)
{
    struct ca_authority *a = ca_authority_load(dd, name, e);
    struct buf b = BUF_INIT;
    char p[700];
    int rc = -1;
    if (a == NULL || ca_authority_chain_pem(dd, a, &b, e) != 0) {
        goto out;
    }
    snprintf(p, sizeof(p), "%s/%s-chain.pem", dd, name);
    rc = file_write_atomic(p, b.data, b.len, 0644, false, e);
out:
    buf_release(&b);
    ca_authority_free(a);
    return rc;
}

/* Signs DD/ca/NAME/ca.csr with the issuer (cert + key) and writes OUT. how: 0 a proper CA
 * certificate, 1 not a CA, 2 expired, 3 for another key than the CSR's, 4 no keyCertSign. */
static int sign_csr(const char *dd, const char *name, X509 *issuer, EVP_PKEY *ikey, int how,
                    const char *outp)
{
    int rc = 0;
    char p[700];
    FILE *f = NULL;
    X509_REQ *req = NULL;
    X509 *x = X509_new();
    EVP_PKEY *other = NULL, *pub = NULL;
    X509V3_CTX ctx;
    X509_EXTENSION *ext = NULL;
    snprintf(p, sizeof(p), "%s/ca/%s/ca.csr", dd, name);
    CHECK((f = fopen(p, "r")) != NULL);
    CHECK((req = PEM_read_X509_REQ(f, NULL, NULL, NULL)) != NULL);
    CHECK(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) == 1);
    pub = X509_REQ_get0_pubkey(req);
    if (how == 3) {
        CHECK((other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "prime256v1")) != NULL);
        pub = other;
    }
    CHECK(X509_set_version(x, 2) == 1);
    CHECK(ASN1_INTEGER_set(X509_get_serialNumber(x), 4242) == 1);
    CHECK(X509_set_subject_name(x, X509_REQ_get_subject_name(req)) == 1);
    CHECK(X509_set_issuer_name(x, X509_get_subject_name(issuer)) == 1);
    CHECK(X509_gmtime_adj(X509_getm_notBefore(x), how == 2 ? -86400 * 10 : -60) != NULL);
    CHECK(X509_gmtime_adj(X509_getm_notAfter(x), how == 2 ? -86400 : 86400 * 365) != NULL);
    CHECK(X509_set_pubkey(x, pub) == 1);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    CHECK((ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
                                     how == 1 ? "critical,CA:FALSE" : "critical,CA:TRUE")) != NULL);
    CHECK(X509_add_ext(x, ext, -1) == 1);
    X509_EXTENSION_free(ext);
    CHECK((ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage,
                                     how == 4 ? "critical,digitalSignature"
                                              : "critical,keyCertSign,cRLSign")) != NULL);
    CHECK(X509_add_ext(x, ext, -1) == 1);
    X509_EXTENSION_free(ext);
    ext = NULL;
    CHECK(X509_sign(x, ikey, EVP_sha256()) > 0);
    fclose(f);
    CHECK((f = fopen(outp, "w")) != NULL);
    CHECK(PEM_write_X509(f, x) == 1);
out:
    if (f != NULL) {
        fclose(f);
    }
    X509_EXTENSION_free(ext);
    X509_REQ_free(req);
    X509_free(x);
    EVP_PKEY_free(other);
    return rc;
}

/* root + intermediate + externally signed CA of type t, all verified. */
static int flow(enum ca_key_type t, const char *dname)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *dd = datadir(dname);
    char ddc[600], certp[700];
    struct ca_authority *root = NULL, *inter = NULL, *ext = NULL;
    struct ca_key *rkey = NULL;
    struct buf csr = BUF_INIT;
    struct ca_init_opts o = opts("root", t, NULL);
    struct stat st;
    time_t rna = 0, ina = 0;
    struct tm tm;
    snprintf(ddc, sizeof(ddc), "%s", dd);
    dd = ddc;

    o.subject = "/CN=Fleet Root/O=Acme\\/Labs/C=DE";
    CHECK_OK(ca_authority_init(dd, &o, NULL, &e), &e);
    CHECK((root = ca_authority_load(dd, "root", &e)) != NULL);
    CHECK_STR_EQ(root->name, "root");
    CHECK_INT_EQ(root->status, CA_ST_ACTIVE);
    CHECK_INT_EQ(root->key_type, t);
    CHECK(root->parent == NULL);
    CHECK(root->cert != NULL);
    CHECK_INT_EQ(strlen(root->fingerprint), 64);
    CHECK(str_has_prefix(root->key_uri, "file:"));
    CHECK_STR_CONTAINS(root->key_uri, "/ca/root/key.pem");
    CHECK_STR_EQ(json_string_value(json_object_get(root->meta, "subject")),
                 "/CN=Fleet Root/O=Acme\\/Labs/C=DE");
    CHECK(json_string_value(json_object_get(root->meta, "created")) != NULL);
    CHECK(json_string_value(json_object_get(root->meta, "not_after")) != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(root->meta, "key_type")), ca_key_type_name(t));
    CHECK(stat(root->key_uri + 5, &st) == 0);
    CHECK_INT_EQ(st.st_mode & 0777, 0600);
    snprintf(certp, sizeof(certp), "%s/ca", dd);
    CHECK(stat(certp, &st) == 0);
    CHECK_INT_EQ(st.st_mode & 0777, 0700);

    /* the root: self-signed, verified by OpenSSL and GnuTLS, extensions as promised */
    CHECK(tt_sh("openssl verify -x509_strict -CAfile '%s/ca/root/cert.pem' '%s/ca/root/cert.pem' "
                ">/dev/null",
                dd, dd) == 0);
    CHECK(tt_sh("certtool --verify --load-ca-certificate '%s/ca/root/cert.pem' "
                "--infile '%s/ca/root/cert.pem' >/dev/null 2>&1",
                dd, dd) == 0);
    CHECK(text_has(dd, "root", "X509v3 Basic Constraints: critical") == 0);
    CHECK(text_has(dd, "root", "CA:TRUE, pathlen:1") == 0);
    CHECK(text_has(dd, "root", "X509v3 Key Usage: critical") == 0);
    CHECK(text_has(dd, "root", "Digital Signature, Certificate Sign, CRL Sign") == 0);
    CHECK(text_has(dd, "root", "X509v3 Subject Key Identifier") == 0);
    CHECK(text_has(dd, "root", "Authority Key Identifier") != 0);
    CHECK(text_has(dd, "root", "O = Acme/Labs") == 0);
    CHECK(text_has(dd, "root",
                   t == CA_KEY_EC_P384   ? "ecdsa-with-SHA384"
                   : t <= CA_KEY_EC_P384 ? "ecdsa-with-SHA256"
                                         : "sha256WithRSAEncryption") == 0);
    /* positive 16-byte serial */
    CHECK_INT_EQ(ASN1_STRING_length(X509_get0_serialNumber(root->cert)), 16);
    CHECK(ASN1_STRING_type(X509_get0_serialNumber(root->cert)) == V_ASN1_INTEGER);
    /* notBefore backdated by a minute */
    CHECK(X509_cmp_time(X509_get0_notBefore(root->cert), NULL) < 0);

    /* an intermediate with a longer wish than the root: capped at the root's notAfter */
    o = opts("inter", t, "root");
    o.days = 36500;
    o.subject = "/CN=Fleet Issuing/O=Acme";
    CHECK_OK(ca_authority_init(dd, &o, NULL, &e), &e);
    CHECK((inter = ca_authority_load(dd, "inter", &e)) != NULL);
    CHECK_STR_EQ(inter->parent, "root");
    CHECK(ASN1_TIME_to_tm(X509_get0_notAfter(root->cert), &tm) == 1);
    rna = timegm(&tm);
    CHECK(ASN1_TIME_to_tm(X509_get0_notAfter(inter->cert), &tm) == 1);
    ina = timegm(&tm);
    CHECK_INT_EQ(ina, rna);
    CHECK(X509_check_issued(root->cert, inter->cert) == X509_V_OK);
    CHECK(X509_get_pathlen(inter->cert) == 0); /* derived from the root's 1 */
    CHECK_OK(write_chain(dd, "inter", &e), &e);
    CHECK(tt_sh("openssl verify -x509_strict -CAfile '%s/ca/root/cert.pem' -untrusted "
                "'%s/ca/inter/cert.pem' '%s/ca/inter/cert.pem' >/dev/null",
                dd, dd, dd) == 0);
    CHECK(tt_sh("certtool --verify --load-ca-certificate '%s/ca/root/cert.pem' "
                "--infile '%s/inter-chain.pem' >/dev/null 2>&1",
                dd, dd) == 0);
    CHECK(tt_sh("test $(grep -c 'BEGIN CERTIFICATE' '%s/inter-chain.pem') = 2", dd) == 0);
    CHECK(text_has(dd, "inter", "Authority Key Identifier") == 0);
    CHECK(text_has(dd, "inter", "CA:TRUE, pathlen:0") == 0);
    CHECK(text_has(dd, "inter",
                   t == CA_KEY_EC_P384   ? "ecdsa-with-SHA384"
                   : t <= CA_KEY_EC_P384 ? "ecdsa-with-SHA256"
                                         : "sha256WithRSAEncryption") == 0);

    /* inter has pathlen 0: it cannot sign a CA, and nothing is left behind */
    o = opts("third", t, "inter");
    CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    CHECK_STR_EQ(e.msg, "parent CA 'inter' has pathlen 0: it cannot sign a CA");
    CHECK(!ca_dir_exists(dd, "third"));
    err_clear(&e);
    /* a pathlen larger than the root allows */
    o = opts("wide", t, "root");
    o.pathlen = 3;
    CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "pathlen 3 exceeds what parent CA 'root' allows (at most 0)");
    CHECK(!ca_dir_exists(dd, "wide"));
    err_clear(&e);

    /* csr_only: pending, CSR out; signed "outside" (by root's key) and imported */
    o = opts("ext", t, NULL);
    o.csr_only = true;
    o.pathlen = 0;
    o.subject = "/CN=External Issuing";
    CHECK_OK(ca_authority_init(dd, &o, &csr, &e), &e);
    CHECK_STR_CONTAINS(buf_cstr(&csr), "-----BEGIN CERTIFICATE REQUEST-----");
    CHECK((ext = ca_authority_load(dd, "ext", &e)) != NULL);
    CHECK_INT_EQ(ext->status, CA_ST_PENDING);
    CHECK(ext->cert == NULL);
    CHECK_STR_EQ(ext->fingerprint, "");
    CHECK(tt_sh("openssl req -verify -noout -in '%s/ca/ext/ca.csr' 2>/dev/null", dd) == 0);
    CHECK(tt_sh("openssl req -noout -text -in '%s/ca/ext/ca.csr' | grep -q 'CA:TRUE, pathlen:0'",
                dd) == 0);
    CHECK(tt_sh("test ! -e '%s/ca/ext/cert.pem'", dd) == 0);
    ca_authority_free(ext);
    ext = NULL;
    {
        struct ca_key_opts ko = { PASS, NULL };
        CHECK((rkey = ca_key_load(root->key_uri, &ko, &e)) != NULL);
    }
    snprintf(certp, sizeof(certp), "%s/ext-signed.pem", dd);
    CHECK(sign_csr(dd, "ext", root->cert, ca_key_pkey(rkey), 0, certp) == 0);
    CHECK_OK(ca_authority_import(dd, "ext", certp, &e), &e);
    CHECK((ext = ca_authority_load(dd, "ext", &e)) != NULL);
    CHECK_INT_EQ(ext->status, CA_ST_ACTIVE);
    CHECK(ext->cert != NULL);
    CHECK(ext->parent == NULL);
    CHECK_INT_EQ(strlen(ext->fingerprint), 64);
    CHECK(tt_sh("openssl verify -CAfile '%s/ca/root/cert.pem' '%s/ca/ext/cert.pem' >/dev/null", dd,
                dd) == 0);
    CHECK(tt_sh("certtool --verify --load-ca-certificate '%s/ca/root/cert.pem' "
                "--infile '%s/ca/ext/cert.pem' >/dev/null 2>&1",
                dd, dd) == 0);
    /* twice: not pending any more */
    CHECK(ca_authority_import(dd, "ext", certp, &e) == -1);
    CHECK_INT_EQ(e.code, ERRC_CONFLICT);
    CHECK_STR_CONTAINS(e.msg, "not pending");
out:
    ca_key_free(rkey);
    ca_authority_free(root);
    ca_authority_free(inter);
    ca_authority_free(ext);
    buf_release(&csr);
    return rc;
}

static int t_flow_p256(void)
{
    return flow(CA_KEY_EC_P256, "p256");
}

static int t_flow_p384(void)
{
    return flow(CA_KEY_EC_P384, "p384");
}

static int t_flow_rsa2048(void)
{
    return flow(CA_KEY_RSA_2048, "rsa2048");
}

static int t_flow_rsa3072(void)
{
    return flow(CA_KEY_RSA_3072, "rsa3072");
}

/* RSA-4096 is slow: one intermediate under a P-256 root. */
static int t_rsa4096(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *dd = datadir("rsa4096");
    struct ca_init_opts o = opts("root", CA_KEY_EC_P256, NULL);
    CHECK_OK(ca_authority_init(dd, &o, NULL, &e), &e);
    o = opts("big", CA_KEY_RSA_4096, "root");
    CHECK_OK(ca_authority_init(dd, &o, NULL, &e), &e);
    CHECK(text_has(dd, "big", "Public-Key: (4096 bit)") == 0);
    CHECK(text_has(dd, "big", "ecdsa-with-SHA256") == 0);
    CHECK_OK(write_chain(dd, "big", &e), &e);
    CHECK(tt_sh("openssl verify -CAfile '%s/ca/root/cert.pem' -untrusted '%s/ca/big/cert.pem' "
                "'%s/ca/big/cert.pem' >/dev/null",
                dd, dd, dd) == 0);
    CHECK(tt_sh("certtool --verify --load-ca-certificate '%s/ca/root/cert.pem' "
                "--infile '%s/big-chain.pem' >/dev/null 2>&1",
                dd, dd) == 0);
out:
    return rc;
}

static int t_bad_inputs(void)
{
    static const char *const bad_names[] = { "",
                                             "-x",
                                             ".hidden",
                                             "a/b",
                                             "..",
                                             "a b",
                                             "é",
                                             ("0123456789012345678901234567890123456789012345678"
                                              "901234567890123456789") };
    static const struct {
        const char *subject;
        const char *msg;
    } bad_subjects[] = {
        { "CN=x", "must start with '/'" },
        { "/CN=x/Organization", "bad subject part 'Organization': expected KEY=VALUE" },
        { "/CN=x/XYZ=1", "bad subject part 'XYZ=1': unknown attribute 'XYZ'" },
        { "/CN=x/O=", "bad subject part 'O=': empty value" },
        { "/CN=x/C=Germany", "bad subject part 'C=Germany': C must be two letters" },
        { "/C=D1", "bad subject part 'C=D1'" },
        { "/", "is empty" },
        { "/CN=0123456789012345678901234567890123456789012345678901234567890123456789",
          "bad subject part 'CN=0123" },
    };
    int rc = 0;
    struct err e = ERR_INIT;
    const char *dd0 = datadir("bad");
    char dd[600];
    struct ca_init_opts o;
    struct ca_authority *a = NULL;
    char **names = NULL;
    size_t n = 0;
    snprintf(dd, sizeof(dd), "%s", dd0);

    for (size_t i = 0; i < ARRAY_LEN(bad_names); i++) {
        o = opts(bad_names[i], CA_KEY_EC_P256, NULL);
        CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, "bad CA name");
        err_clear(&e);
        CHECK(ca_authority_load(dd, bad_names[i], &e) == NULL);
        CHECK_STR_CONTAINS(e.msg, "bad CA name");
        err_clear(&e);
    }
    for (size_t i = 0; i < ARRAY_LEN(bad_subjects); i++) {
        o = opts("subj", CA_KEY_EC_P256, NULL);
        o.subject = bad_subjects[i].subject;
        CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, bad_subjects[i].msg);
        CHECK(ERR_peek_error() == 0);
        CHECK(!ca_dir_exists(dd, "subj"));
        err_clear(&e);
    }
    o = opts("days", CA_KEY_EC_P256, NULL);
    o.days = 0;
    CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
    CHECK_STR_CONTAINS(e.msg, "validity of 0 days is out of range");
    err_clear(&e);
    o = opts("pl", CA_KEY_EC_P256, NULL);
    o.pathlen = -2;
    CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
    CHECK_STR_CONTAINS(e.msg, "pathlen -2 is out of range");
    err_clear(&e);
    o = opts("both", CA_KEY_EC_P256, "root");
    o.csr_only = true;
    CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
    CHECK_STR_CONTAINS(e.msg, "exclude each other");
    err_clear(&e);
    o = opts("short", CA_KEY_EC_P256, NULL);
    o.key_opts.secret = "short";
    CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
    CHECK_STR_CONTAINS(e.msg, "shorter than 8 characters");
    CHECK(!ca_dir_exists(dd, "short"));
    err_clear(&e);

    /* a root to work with */
    o = opts("root", CA_KEY_EC_P256, NULL);
    CHECK_OK(ca_authority_init(dd, &o, NULL, &e), &e);

    /* existing name: refused, the existing CA untouched */
    CHECK((a = ca_authority_load(dd, "root", &e)) != NULL);
    {
        char fp[65];
        memcpy(fp, a->fingerprint, sizeof(fp));
        ca_authority_free(a);
        a = NULL;
        CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
        CHECK_INT_EQ(e.code, ERRC_CONFLICT);
        CHECK_STR_EQ(e.msg, "CA 'root' already exists");
        err_clear(&e);
        CHECK((a = ca_authority_load(dd, "root", &e)) != NULL);
        CHECK_STR_EQ(a->fingerprint, fp);
    }

    /* unknown parent */
    o = opts("orphan", CA_KEY_EC_P256, "nobody");
    CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    CHECK_STR_EQ(e.msg, "parent CA 'nobody' not found");
    CHECK(!ca_dir_exists(dd, "orphan"));
    err_clear(&e);

    /* wrong passphrase for the parent */
    o = opts("inter", CA_KEY_EC_P256, "root");
    o.parent_opts.secret = "not the passphrase";
    CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    CHECK_STR_CONTAINS(e.msg, "parent CA 'root': wrong passphrase for key 'file:");
    CHECK(!ca_dir_exists(dd, "inter"));
    err_clear(&e);

    /* the parent's key file readable by others */
    CHECK(tt_sh("chmod 644 '%s/ca/root/key.pem'", dd) == 0);
    o = opts("inter", CA_KEY_EC_P256, "root");
    CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    CHECK_STR_CONTAINS(e.msg, "accessible by group or others (mode 644)");
    CHECK(!ca_dir_exists(dd, "inter"));
    err_clear(&e);
    CHECK(tt_sh("chmod 600 '%s/ca/root/key.pem'", dd) == 0);

    /* a failure after the directory was made: key URI onto an existing file */
    o = opts("clash", CA_KEY_EC_P256, NULL);
    {
        char uri[700];
        snprintf(uri, sizeof(uri), "file:%s/ca/root/key.pem", dd);
        o.key_uri = uri;
        CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
        CHECK_INT_EQ(e.code, ERRC_CONFLICT);
        CHECK(!ca_dir_exists(dd, "clash"));
        err_clear(&e);
    }
    CHECK(tt_sh("test -s '%s/ca/root/key.pem'", dd) == 0);

    /* retired and pending parents */
    a->status = CA_ST_RETIRED;
    CHECK_OK(ca_authority_save(dd, a, &e), &e);
    o = opts("inter", CA_KEY_EC_P256, "root");
    CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    CHECK_STR_EQ(e.msg, "parent CA 'root' is retired: it cannot sign");
    CHECK(!ca_dir_exists(dd, "inter"));
    err_clear(&e);
    o = opts("pend", CA_KEY_EC_P256, NULL);
    o.csr_only = true;
    CHECK_OK(ca_authority_init(dd, &o, NULL, &e), &e);
    o = opts("inter", CA_KEY_EC_P256, "pend");
    CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
    CHECK_STR_EQ(e.msg, "parent CA 'pend' is pending: it cannot sign");
    err_clear(&e);

    /* nothing stray is listed */
    CHECK_OK(ca_authority_list(dd, &names, &n, &e), &e);
    CHECK_INT_EQ(n, 2);
    CHECK_STR_EQ(names[0], "pend");
    CHECK_STR_EQ(names[1], "root");

    /* a swapped cert.pem is caught at load */
    CHECK(tt_sh("cp '%s/ca/root/cert.pem' '%s/root.bak' && openssl req -x509 -newkey ec "
                "-pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null -subj /CN=evil "
                "-out '%s/ca/root/cert.pem' 2>/dev/null",
                dd, dd, dd) == 0);
    CHECK(ca_authority_load(dd, "root", &e) == NULL);
    CHECK_STR_CONTAINS(e.msg, "does not match the fingerprint");
    err_clear(&e);
    CHECK(ca_authority_load(dd, "absent", &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    CHECK_STR_EQ(e.msg, "CA 'absent' not found");
out:
    for (size_t i = 0; i < n; i++) {
        xfree(names[i]);
    }
    xfree(names);
    ca_authority_free(a);
    return rc;
}

static int t_import_refusals(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *dd0 = datadir("import");
    char dd[600], p[700];
    struct ca_init_opts o;
    struct ca_authority *root = NULL, *pend = NULL;
    struct ca_key *rkey = NULL;
    struct ca_key_opts ko = { PASS, NULL };
    static const struct {
        int how;
        const char *msg;
    } bad[] = {
        { 3, "does not carry the key of CA 'pend'" },
        { 1, "is not a CA certificate" },
        { 2, "has expired" },
        { 4, "lacks keyUsage keyCertSign" },
    };
    snprintf(dd, sizeof(dd), "%s", dd0);
    o = opts("root", CA_KEY_EC_P384, NULL);
    CHECK_OK(ca_authority_init(dd, &o, NULL, &e), &e);
    o = opts("pend", CA_KEY_EC_P256, NULL);
    o.csr_only = true;
    CHECK_OK(ca_authority_init(dd, &o, NULL, &e), &e);
    CHECK((root = ca_authority_load(dd, "root", &e)) != NULL);
    CHECK((rkey = ca_key_load(root->key_uri, &ko, &e)) != NULL);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        snprintf(p, sizeof(p), "%s/bad%d.pem", dd, bad[i].how);
        CHECK(sign_csr(dd, "pend", root->cert, ca_key_pkey(rkey), bad[i].how, p) == 0);
        CHECK(ca_authority_import(dd, "pend", p, &e) == -1);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, bad[i].msg);
        err_clear(&e);
        CHECK(tt_sh("test ! -e '%s/ca/pend/cert.pem'", dd) == 0);
        CHECK((pend = ca_authority_load(dd, "pend", &e)) != NULL);
        CHECK_INT_EQ(pend->status, CA_ST_PENDING);
        ca_authority_free(pend);
        pend = NULL;
    }
    snprintf(p, sizeof(p), "%s/garbage.pem", dd);
    CHECK(tt_sh("echo garbage > '%s'", p) == 0);
    CHECK(ca_authority_import(dd, "pend", p, &e) == -1);
    CHECK_STR_CONTAINS(e.msg, "holds no certificate");
    err_clear(&e);
    CHECK(ca_authority_import(dd, "pend", "/nonexistent.pem", &e) == -1);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    err_clear(&e);
    CHECK(ca_authority_import(dd, "nope", p, &e) == -1);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    err_clear(&e);
    /* a pending CA has no chain */
    CHECK((pend = ca_authority_load(dd, "pend", &e)) != NULL);
    {
        struct buf b = BUF_INIT;
        CHECK(ca_authority_chain_pem(dd, pend, &b, &e) == -1);
        buf_release(&b);
        CHECK_INT_EQ(e.code, ERRC_CONFLICT);
        CHECK_STR_CONTAINS(e.msg, "has no certificate yet");
    }
out:
    ca_key_free(rkey);
    ca_authority_free(root);
    ca_authority_free(pend);
    return rc;
}

static int t_list_children(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *dd0 = datadir("list");
    char dd[600];
    char **names = NULL;
    size_t n = 0;
    struct ca_init_opts o;
    snprintf(dd, sizeof(dd), "%s", dd0);
    CHECK_OK(ca_authority_list(dd, &names, &n, &e), &e); /* no data dir yet: empty */
    CHECK_INT_EQ(n, 0);
    o = opts("zeta", CA_KEY_EC_P256, NULL);
    o.pathlen = 2;
    CHECK_OK(ca_authority_init(dd, &o, NULL, &e), &e);
    o = opts("alpha", CA_KEY_EC_P256, "zeta");
    CHECK_OK(ca_authority_init(dd, &o, NULL, &e), &e);
    o = opts("mid", CA_KEY_EC_P256, "zeta");
    CHECK_OK(ca_authority_init(dd, &o, NULL, &e), &e);
    o = opts("leaf-ca", CA_KEY_EC_P256, "mid");
    CHECK_OK(ca_authority_init(dd, &o, NULL, &e), &e);
    CHECK(tt_sh("mkdir -p '%s/ca/not-a-ca' '%s/ca/.tmp'", dd, dd) == 0);
    CHECK_OK(ca_authority_list(dd, &names, &n, &e), &e);
    CHECK_INT_EQ(n, 4);
    CHECK_STR_EQ(names[0], "alpha");
    CHECK_STR_EQ(names[1], "leaf-ca");
    CHECK_STR_EQ(names[2], "mid");
    CHECK_STR_EQ(names[3], "zeta");
    for (size_t i = 0; i < n; i++) {
        xfree(names[i]);
    }
    xfree(names);
    names = NULL;
    CHECK_OK(ca_authority_children(dd, "zeta", &names, &n, &e), &e);
    CHECK_INT_EQ(n, 2);
    CHECK_STR_EQ(names[0], "alpha");
    CHECK_STR_EQ(names[1], "mid");
    for (size_t i = 0; i < n; i++) {
        xfree(names[i]);
    }
    xfree(names);
    names = NULL;
    CHECK_OK(ca_authority_children(dd, "leaf-ca", &names, &n, &e), &e);
    CHECK_INT_EQ(n, 0);
    /* a three-level chain */
    CHECK_OK(write_chain(dd, "leaf-ca", &e), &e);
    CHECK(tt_sh("test $(grep -c 'BEGIN CERTIFICATE' '%s/leaf-ca-chain.pem') = 3", dd) == 0);
    CHECK(tt_sh("certtool --verify --load-ca-certificate '%s/ca/zeta/cert.pem' "
                "--infile '%s/leaf-ca-chain.pem' >/dev/null 2>&1",
                dd, dd) == 0);
    CHECK(tt_sh("openssl verify -CAfile '%s/ca/zeta/cert.pem' -untrusted '%s/leaf-ca-chain.pem' "
                "'%s/ca/leaf-ca/cert.pem' >/dev/null",
                dd, dd, dd) == 0);
out:
    for (size_t i = 0; names != NULL && i < n; i++) {
        xfree(names[i]);
    }
    xfree(names);
    return rc;
}

/* The root + intermediate flow with both keys generated in a SoftHSM2 token. */
static int t_pkcs11_flow(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    const char *dd0 = datadir("hsm");
    char dd[600], hsm[700], conf[800];
    struct ca_init_opts o;
    struct ca_authority *root = NULL;
    const char *src = getenv("JITRCA_SOURCE_DIR");
    snprintf(dd, sizeof(dd), "%s", dd0);
    snprintf(hsm, sizeof(hsm), "%s/softhsm", tt_tmpdir());
    CHECK(src != NULL);
    CHECK(tt_sh("'%s/tests/harness/softhsm-fixture.sh' init '%s' %s 12345678 %s >/dev/null", src,
                hsm, TOKEN, PIN) == 0);
    snprintf(conf, sizeof(conf), "%s/softhsm2.conf", hsm);
    setenv("SOFTHSM2_CONF", conf, 1);

    o = opts("hroot", CA_KEY_EC_P384, NULL);
    o.key_uri = "pkcs11:token=" TOKEN ";object=hroot;type=private";
    o.key_opts.secret = PIN;
    o.subject = "/CN=HSM Root/O=Acme";
    CHECK_OK(ca_authority_init(dd, &o, NULL, &e), &e);
    CHECK((root = ca_authority_load(dd, "hroot", &e)) != NULL);
    CHECK_STR_EQ(root->key_uri, "pkcs11:token=" TOKEN ";object=hroot;type=private");
    CHECK(tt_sh("test ! -e '%s/ca/hroot/key.pem'", dd) == 0);

    o = opts("hinter", CA_KEY_EC_P256, "hroot");
    o.key_uri = "pkcs11:token=" TOKEN ";object=hinter";
    o.key_opts.secret = PIN;
    o.parent_opts.secret = PIN;
    CHECK_OK(ca_authority_init(dd, &o, NULL, &e), &e);
    CHECK(text_has(dd, "hinter", "ecdsa-with-SHA384") == 0); /* signed by the P-384 token root */
    CHECK_OK(write_chain(dd, "hinter", &e), &e);
    CHECK(tt_sh("openssl verify -x509_strict -CAfile '%s/ca/hroot/cert.pem' -untrusted "
                "'%s/ca/hinter/cert.pem' '%s/ca/hinter/cert.pem' >/dev/null",
                dd, dd, dd) == 0);
    CHECK(tt_sh("certtool --verify --load-ca-certificate '%s/ca/hroot/cert.pem' "
                "--infile '%s/hinter-chain.pem' >/dev/null 2>&1",
                dd, dd) == 0);
    /* both token keys are sensitive and never extractable */
    CHECK(tt_sh("test $(pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --token-label %s "
                "--login --pin %s --list-objects --type privkey 2>/dev/null "
                "| grep -c 'Access: *sensitive, always sensitive, never extractable') = 2",
                TOKEN, PIN) == 0);

    /* wrong PIN for the token parent */
    o = opts("hbad", CA_KEY_EC_P256, "hroot");
    o.parent_opts.secret = "0000";
    CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
    CHECK_INT_EQ(e.code, ERRC_DENIED);
    CHECK_STR_CONTAINS(e.msg, "parent CA 'hroot': wrong PIN");
    CHECK(!ca_dir_exists(dd, "hbad"));
    err_clear(&e);
    /* a label already in the token: refused before anything is made */
    o = opts("hdup", CA_KEY_EC_P256, NULL);
    o.key_uri = "pkcs11:token=" TOKEN ";object=hroot";
    o.key_opts.secret = PIN;
    CHECK(ca_authority_init(dd, &o, NULL, &e) == -1);
    CHECK_INT_EQ(e.code, ERRC_CONFLICT);
    CHECK(!ca_dir_exists(dd, "hdup"));
out:
    ca_authority_free(root);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "flow_p256", t_flow_p256 },
        { "flow_p384", t_flow_p384 },
        { "flow_rsa2048", t_flow_rsa2048 },
        { "flow_rsa3072", t_flow_rsa3072 },
        { "rsa4096", t_rsa4096 },
        { "bad_inputs", t_bad_inputs },
        { "import_refusals", t_import_refusals },
        { "list_children", t_list_children },
        { "pkcs11_flow", t_pkcs11_flow },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
