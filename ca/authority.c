/*
 * The CA store: one directory per CA under DATA/ca/ (layout in ca/authority.h).
 *
 * Creation is all-or-nothing: everything is checked first (name, subject, parent status and
 * pathlen, the parent's key and passphrase), then the directory is created with mkdir(2) (which
 * also settles a race between two creators), and any failure after that removes the directory
 * again. Every file is written with file_write_atomic(excl = true), ca.json last, so a directory
 * without ca.json is never taken for a CA by ca_authority_list.
 *
 * pub.pem (the CA's public key) is written at creation so that `ca import` can check the
 * external certificate without the key's passphrase or PIN.
 *
 * ca_authority_load() cross-checks cert.pem against the fingerprint in ca.json: a swapped
 * certificate file is an error, not a silent change of CA.
 */
#include "ca/authority.h"

#include <dirent.h>
#include <errno.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca/issue.h"
#include "core/mem.h"
#include "core/util.h"

#define CA_NAME_MAX     64
#define CA_DAYS_MAX     36500
#define CA_PATHLEN_MAX  16
#define CA_CHAIN_MAX    8
#define CA_FILE_MAX     (256 * 1024)
#define CA_SERIAL_LEN   16
#define CA_BACKDATE_SEC 60

static const char *const status_names[] = {
    [CA_ST_PENDING] = "pending",
    [CA_ST_ACTIVE] = "active",
    [CA_ST_RETIRED] = "retired",
};
_Static_assert(ARRAY_LEN(status_names) == CA_ST__COUNT, "status_names must cover enum ca_status");

const char *ca_status_name(enum ca_status st)
{
    return (unsigned)st < CA_ST__COUNT ? status_names[st] : "unknown";
}

bool ca_authority_compromised(const struct ca_authority *a)
{
    return json_is_object(json_object_get(a->meta, "compromised"));
}

static int status_parse(const char *s, enum ca_status *out)
{
    for (size_t i = 0; s != NULL && i < ARRAY_LEN(status_names); i++) {
        if (strcmp(s, status_names[i]) == 0) {
            *out = (enum ca_status)i;
            return 0;
        }
    }
    return -1;
}

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (!first && (c == '.' || c == '_' || c == '-'));
}

int ca_name_check(const char *name, struct err *e)
{
    size_t n = name ? strlen(name) : 0;
    bool ok = n > 0 && n <= CA_NAME_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        ok = name_char(name[i], i == 0);
    }
    if (!ok) {
        return err_set(e, ERRC_INVALID,
                       "bad CA name '%.80s': use 1 to %d of A-Z a-z 0-9 . _ -, starting with a "
                       "letter or digit",
                       name ? name : "", CA_NAME_MAX);
    }
    return 0;
}

static void ca_path(struct buf *b, const char *datadir, const char *name, const char *file)
{
    buf_reset(b);
    buf_addf(b, "%s/ca/%s%s%s", datadir, name, file ? "/" : "", file ? file : "");
}

static EVP_MD const *md_for(enum ca_key_type t)
{
    return t == CA_KEY_EC_P384 ? EVP_sha384() : EVP_sha256();
}

static int time_of(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1) {
        return -1;
    }
    *out = timegm(&tm);
    return 0;
}

/* "/CN=Factory CA/O=Acme/C=DE" ("\/" for a literal slash) into an X509_NAME. */
static int subject_parse(const char *s, X509_NAME **out, struct err *e)
{
    X509_NAME *n = X509_NAME_new();
    struct buf part = BUF_INIT, key = BUF_INIT;
    int rc = -1;
    const char *p = s + 1;
    if (n == NULL) {
        err_openssl(e, ERRC_INTERNAL, "X509_NAME_new");
        goto out;
    }
    if (s[0] != '/') {
        err_set(e, ERRC_INVALID, "subject '%.80s' must start with '/' (e.g. /CN=Factory CA/O=Acme)",
                s);
        goto out;
    }
    while (*p != '\0') {
        buf_reset(&part);
        for (; *p != '\0' && *p != '/'; p++) {
            if (p[0] == '\\' && p[1] != '\0') {
                p++;
            }
            buf_addch(&part, *p);
        }
        if (*p == '/') {
            p++;
        }
        const char *eq = strchr(buf_cstr(&part), '=');
        if (eq == NULL || eq == part.data) {
            err_set(e, ERRC_INVALID, "bad subject part '%.80s': expected KEY=VALUE",
                    buf_cstr(&part));
            goto out;
        }
        buf_reset(&key);
        buf_add(&key, part.data, (size_t)(eq - part.data));
        int nid = OBJ_txt2nid(key.data);
        if (nid == NID_undef) {
            err_set(e, ERRC_INVALID, "bad subject part '%.80s': unknown attribute '%.40s'",
                    part.data, key.data);
            goto out;
        }
        if (eq[1] == '\0') {
            err_set(e, ERRC_INVALID, "bad subject part '%.80s': empty value", part.data);
            goto out;
        }
        if (nid == NID_countryName &&
            (strlen(eq + 1) != 2 || !name_char(eq[1], true) || !name_char(eq[2], true) ||
             (eq[1] >= '0' && eq[1] <= '9') || (eq[2] >= '0' && eq[2] <= '9'))) {
            err_set(e, ERRC_INVALID, "bad subject part '%.80s': C must be two letters", part.data);
            goto out;
        }
        if (X509_NAME_add_entry_by_NID(n, nid, MBSTRING_UTF8, (const unsigned char *)(eq + 1), -1,
                                       -1, 0) != 1) {
            err_openssl(e, ERRC_INVALID, "bad subject part '%.80s': value not allowed (too long?)",
                        part.data);
            goto out;
        }
    }
    if (X509_NAME_entry_count(n) == 0) {
        err_set(e, ERRC_INVALID, "subject '%.80s' is empty", s);
        goto out;
    }
    *out = n;
    n = NULL;
    rc = 0;
out:
    if (rc != 0) {
        ERR_clear_error(); /* OBJ_txt2nid queues errors for unknown names */
    }
    X509_NAME_free(n);
    buf_release(&part);
    buf_release(&key);
    return rc;
}

/* The same "/CN=.../O=..." form back from a name. */
static void subject_format(const X509_NAME *n, struct buf *out)
{
    for (int i = 0; i < X509_NAME_entry_count(n); i++) {
        const X509_NAME_ENTRY *ent = X509_NAME_get_entry(n, i);
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(ent));
        int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(ent));
        buf_addf(out, "/%s=", nid != NID_undef ? OBJ_nid2sn(nid) : "?");
        for (int j = 0; j < len; j++) {
            if (utf8[j] == '/' || utf8[j] == '\\') {
                buf_addch(out, '\\');
            }
            buf_addch(out, (char)utf8[j]);
        }
        OPENSSL_free(utf8);
    }
    ERR_clear_error();
}

static void fingerprint_of(X509 *x, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (X509_digest(x, EVP_sha256(), md, &n) == 1 && n == 32) {
        hex_encode(md, n, out);
    }
}

static int write_pem(const char *path, int (*wr)(BIO *, const void *), const void *obj, mode_t mode,
                     bool excl, struct err *e)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len = 0;
    int rc = -1;
    if (bio == NULL || wr(bio, obj) != 1 || (len = BIO_get_mem_data(bio, &data)) <= 0) {
        err_openssl(e, ERRC_INTERNAL, "cannot encode '%s'", path);
        goto out;
    }
    rc = file_write_atomic(path, data, (size_t)len, mode, excl, e);
out:
    BIO_free(bio);
    return rc;
}

static int wr_x509(BIO *b, const void *x)
{
    return PEM_write_bio_X509(b, (X509 *)(uintptr_t)x);
}

static int wr_req(BIO *b, const void *x)
{
    return PEM_write_bio_X509_REQ(b, (X509_REQ *)(uintptr_t)x);
}

static int wr_pubkey(BIO *b, const void *k)
{
    return PEM_write_bio_PUBKEY(b, (EVP_PKEY *)(uintptr_t)k);
}

static X509 *read_cert(const char *path, struct err *e)
{
    struct buf data = BUF_INIT;
    BIO *bio = NULL;
    X509 *x = NULL;
    const unsigned char *p = NULL;
    if (file_read_all(path, CA_FILE_MAX, &data, e) != 0) {
        goto out;
    }
    if ((bio = BIO_new_mem_buf(data.data, (int)data.len)) == NULL) {
        err_openssl(e, ERRC_INTERNAL, "BIO_new_mem_buf");
        goto out;
    }
    x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (x == NULL) {
        p = (const unsigned char *)data.data;
        x = d2i_X509(NULL, &p, (long)data.len);
    }
    if (x == NULL) {
        err_openssl(e, ERRC_INVALID, "'%s' holds no certificate", path);
    }
    ERR_clear_error();
out:
    BIO_free(bio);
    buf_release(&data);
    return x;
}

static EVP_PKEY *read_pubkey(const char *path, struct err *e)
{
    struct buf data = BUF_INIT;
    BIO *bio = NULL;
    EVP_PKEY *k = NULL;
    if (file_read_all(path, CA_FILE_MAX, &data, e) != 0) {
        goto out;
    }
    if ((bio = BIO_new_mem_buf(data.data, (int)data.len)) == NULL ||
        (k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) == NULL) {
        err_openssl(e, ERRC_INTERNAL, "'%s' holds no public key", path);
    }
out:
    BIO_free(bio);
    buf_release(&data);
    return k;
}

/* Removes a CA directory and its (flat) contents. */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    struct buf p = BUF_INIT;
    if (d != NULL) {
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
                continue;
            }
            buf_reset(&p);
            buf_addf(&p, "%s/%s", dir, de->d_name);
            unlink(p.data);
        }
        closedir(d);
    }
    rmdir(dir);
    buf_release(&p);
}

static int add_ext(STACK_OF(X509_EXTENSION) * sk, X509 *x, X509V3_CTX *ctx, int nid,
                   const char *value, struct err *e)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok = ext != NULL &&
             (x != NULL ? X509_add_ext(x, ext, -1) == 1 : sk_X509_EXTENSION_push(sk, ext) > 0);
    if (!ok) {
        X509_EXTENSION_free(ext);
        return err_openssl(e, ERRC_INTERNAL, "cannot add extension %s", OBJ_nid2sn(nid));
    }
    if (x != NULL) {
        X509_EXTENSION_free(ext);
    }
    return 0;
}

static void bc_value(char *out, size_t cap, int pathlen)
{
    if (pathlen >= 0) {
        snprintf(out, cap, "critical,CA:TRUE,pathlen:%d", pathlen);
    } else {
        snprintf(out, cap, "critical,CA:TRUE");
    }
}

#define CA_KU "critical,keyCertSign,cRLSign,digitalSignature"

/* A random positive serial of CA_SERIAL_LEN bytes. */
static int set_serial(X509 *x, struct err *e)
{
    unsigned char b[CA_SERIAL_LEN];
    BIGNUM *bn = NULL;
    int rc = -1;
    if (RAND_bytes(b, sizeof(b)) != 1) {
        return err_openssl(e, ERRC_INTERNAL, "RAND_bytes");
    }
    b[0] = (unsigned char)((b[0] & 0x7f) | 0x40); /* positive, full length */
    if ((bn = BN_bin2bn(b, sizeof(b), NULL)) == NULL ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) {
        err_openssl(e, ERRC_INTERNAL, "cannot set the serial");
        goto out;
    }
    rc = 0;
out:
    BN_free(bn);
    return rc;
}

struct cert_params {
    const X509_NAME *subject;
    EVP_PKEY *pub;    /* the new CA's key */
    X509 *issuer;     /* NULL: self-signed */
    EVP_PKEY *signer; /* the issuer's private key (or the CA's own) */
    enum ca_key_type signer_type;
    time_t not_before, not_after;
    int pathlen;
};

static X509 *cert_build(const struct cert_params *cp, struct err *e)
{
    X509 *x = X509_new();
    X509V3_CTX ctx;
    char bc[64];
    if (x == NULL || X509_set_version(x, 2) != 1 || set_serial(x, e) != 0 ||
        X509_set_subject_name(x, cp->subject) != 1 ||
        X509_set_issuer_name(x, cp->issuer ? X509_get_subject_name(cp->issuer) : cp->subject) !=
            1 ||
        ASN1_TIME_set(X509_getm_notBefore(x), cp->not_before) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(x), cp->not_after) == NULL ||
        X509_set_pubkey(x, cp->pub) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot build the CA certificate");
        goto fail;
    }
    X509V3_set_ctx(&ctx, cp->issuer ? cp->issuer : x, x, NULL, NULL, 0);
    bc_value(bc, sizeof(bc), cp->pathlen);
    if (add_ext(NULL, x, &ctx, NID_basic_constraints, bc, e) != 0 ||
        add_ext(NULL, x, &ctx, NID_key_usage, CA_KU, e) != 0 ||
        add_ext(NULL, x, &ctx, NID_subject_key_identifier, "hash", e) != 0 ||
        (cp->issuer != NULL &&
         add_ext(NULL, x, &ctx, NID_authority_key_identifier, "keyid:always", e) != 0)) {
        goto fail;
    }
    if (X509_sign(x, cp->signer, md_for(cp->signer_type)) <= 0) {
        err_openssl(e, ERRC_INTERNAL, "cannot sign the CA certificate");
        goto fail;
    }
    if (X509_verify(x, cp->issuer ? X509_get0_pubkey(cp->issuer) : cp->pub) != 1) {
        err_openssl(e, ERRC_INTERNAL, "the new CA certificate does not verify");
        goto fail;
    }
    return x;
fail:
    X509_free(x);
    return NULL;
}

static X509_REQ *csr_build(const X509_NAME *subject, struct ca_key *key, int pathlen, struct err *e)
{
    X509_REQ *r = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509V3_CTX ctx;
    char bc[64];
    if (r == NULL || exts == NULL || X509_REQ_set_version(r, 0) != 1 ||
        X509_REQ_set_subject_name(r, subject) != 1 ||
        X509_REQ_set_pubkey(r, ca_key_pkey(key)) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot build the CSR");
        goto fail;
    }
    X509V3_set_ctx(&ctx, NULL, NULL, r, NULL, 0);
    bc_value(bc, sizeof(bc), pathlen);
    if (add_ext(exts, NULL, &ctx, NID_basic_constraints, bc, e) != 0 ||
        add_ext(exts, NULL, &ctx, NID_key_usage, CA_KU, e) != 0) {
        goto fail;
    }
    if (X509_REQ_add_extensions(r, exts) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot add the CSR extensions");
        goto fail;
    }
    if (X509_REQ_sign(r, ca_key_pkey(key), md_for(ca_key_type(key))) <= 0) {
        err_openssl(e, ERRC_INTERNAL, "cannot sign the CSR");
        goto fail;
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return r;
fail:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(r);
    return NULL;
}

/* ---- ca.json ---- */

static void meta_set_str(json_t *m, const char *k, const char *v)
{
    json_object_set_new(m, k, v ? json_string(v) : json_null());
}

static void meta_set_cert(json_t *m, X509 *x)
{
    struct buf b = BUF_INIT;
    char ts[40], sn[131];
    time_t t;
    if (x == NULL) {
        meta_set_str(m, "not_after", NULL);
        return;
    }
    if (time_of(X509_get0_notAfter(x), &t) == 0) {
        time_format_rfc3339(t, ts, sizeof(ts));
        meta_set_str(m, "not_after", ts);
    }
    (void)ca_serial_hex(X509_get0_serialNumber(x), sn, sizeof(sn));
    meta_set_str(m, "serial", sn);
    subject_format(X509_get_subject_name(x), &b);
    meta_set_str(m, "subject", buf_cstr(&b));
    buf_reset(&b);
    subject_format(X509_get_issuer_name(x), &b);
    meta_set_str(m, "issuer", buf_cstr(&b));
    buf_release(&b);
}

static void meta_refresh(struct ca_authority *a)
{
    if (a->meta == NULL) {
        a->meta = json_object();
    }
    meta_set_str(a->meta, "name", a->name);
    meta_set_str(a->meta, "key_uri", a->key_uri);
    meta_set_str(a->meta, "key_type", ca_key_type_name(a->key_type));
    meta_set_str(a->meta, "parent", a->parent);
    meta_set_str(a->meta, "status", ca_status_name(a->status));
    meta_set_str(a->meta, "fingerprint", a->fingerprint);
    if (a->cert != NULL) {
        meta_set_cert(a->meta, a->cert);
    }
}

static int meta_write(const char *path, json_t *m, bool excl, struct err *e)
{
    size_t flags = JSON_INDENT(2) | JSON_SORT_KEYS;
    size_t n = json_dumpb(m, NULL, 0, flags);
    struct buf b = BUF_INIT;
    int rc;
    if (n == 0) {
        return err_set(e, ERRC_INTERNAL, "cannot encode '%s'", path);
    }
    buf_reserve(&b, n + 2);
    b.len = json_dumpb(m, b.data, n, flags);
    buf_addch(&b, '\n');
    rc = file_write_atomic(path, b.data, b.len, 0644, excl, e);
    buf_release(&b);
    return rc;
}

void ca_authority_free(struct ca_authority *a)
{
    if (a == NULL) {
        return;
    }
    xfree(a->name);
    xfree(a->key_uri);
    xfree(a->parent);
    X509_free(a->cert);
    json_decref(a->meta);
    xfree(a);
}

struct ca_authority *ca_authority_load(const char *datadir, const char *name, struct err *e)
{
    struct buf path = BUF_INIT, data = BUF_INIT;
    struct ca_authority *a = NULL;
    json_error_t je;
    json_t *m = NULL;
    const char *key_uri, *key_type, *status, *fp;
    json_t *parent;
    char fpc[65];

    if (ca_name_check(name, e) != 0) {
        goto fail;
    }
    ca_path(&path, datadir, name, "ca.json");
    if (file_read_all(path.data, CA_FILE_MAX, &data, e) != 0) {
        if (e->code == ERRC_NOT_FOUND) {
            err_clear(e);
            err_set(e, ERRC_NOT_FOUND, "CA '%s' not found", name);
        }
        goto fail;
    }
    if ((m = json_loadb(data.data, data.len, 0, &je)) == NULL || !json_is_object(m)) {
        err_set(e, ERRC_INTERNAL, "ca.json of CA '%s' is damaged: %s", name,
                m ? "not an object" : je.text);
        goto fail;
    }
    key_uri = json_string_value(json_object_get(m, "key_uri"));
    key_type = json_string_value(json_object_get(m, "key_type"));
    status = json_string_value(json_object_get(m, "status"));
    fp = json_string_value(json_object_get(m, "fingerprint"));
    parent = json_object_get(m, "parent");
    a = xcalloc(1, sizeof(*a));
    a->name = xstrdup(name);
    if (key_uri == NULL || ca_key_type_parse(key_type, &a->key_type) != 0 ||
        status_parse(status, &a->status) != 0 ||
        (parent && !json_is_null(parent) && !json_is_string(parent))) {
        err_set(e, ERRC_INTERNAL, "ca.json of CA '%s' lacks key_uri, key_type, status or parent",
                name);
        goto fail;
    }
    a->key_uri = xstrdup(key_uri);
    if (json_is_string(parent)) {
        a->parent = xstrdup(json_string_value(parent));
    }
    if (a->status != CA_ST_PENDING) {
        ca_path(&path, datadir, name, "cert.pem");
        if ((a->cert = read_cert(path.data, e)) == NULL) {
            err_prefix(e, "CA '%s'", name);
            goto fail;
        }
        fingerprint_of(a->cert, fpc);
        if (fp == NULL || strcmp(fp, fpc) != 0) {
            err_set(e, ERRC_INTERNAL,
                    "cert.pem of CA '%s' does not match the fingerprint in ca.json", name);
            goto fail;
        }
        memcpy(a->fingerprint, fpc, sizeof(fpc));
    }
    a->meta = m;
    buf_release(&path);
    buf_release(&data);
    return a;
fail:
    json_decref(m);
    ca_authority_free(a);
    buf_release(&path);
    buf_release(&data);
    return NULL;
}

int ca_authority_save(const char *datadir, struct ca_authority *a, struct err *e)
{
    struct buf path = BUF_INIT;
    int rc;
    if (ca_name_check(a->name, e) != 0) {
        return -1;
    }
    meta_refresh(a);
    ca_path(&path, datadir, a->name, "ca.json");
    rc = meta_write(path.data, a->meta, false, e);
    buf_release(&path);
    return rc;
}

/* Checks the parent and loads its key; *pathlen may be derived from the parent's. */
static int parent_prepare(const char *datadir, const struct ca_init_opts *o,
                          struct ca_authority **parent, struct ca_key **pkey, int *pathlen,
                          struct err *e)
{
    struct ca_authority *p = NULL;
    struct ca_key *k = NULL;
    long ppl;
    if ((p = ca_authority_load(datadir, o->parent, e)) == NULL) {
        if (e->code == ERRC_NOT_FOUND) {
            err_clear(e);
            err_set(e, ERRC_NOT_FOUND, "parent CA '%s' not found", o->parent);
        }
        goto fail;
    }
    if (p->status != CA_ST_ACTIVE) {
        err_set(e, ERRC_DENIED, "parent CA '%s' is %s: it cannot sign", o->parent,
                ca_status_name(p->status));
        goto fail;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(p->cert)) <= 0) {
        err_set(e, ERRC_DENIED, "parent CA '%s' has expired", o->parent);
        goto fail;
    }
    ppl = X509_get_pathlen(p->cert);
    if (ppl == 0) {
        err_set(e, ERRC_DENIED, "parent CA '%s' has pathlen 0: it cannot sign a CA", o->parent);
        goto fail;
    }
    if (ppl > 0 && *pathlen < 0) {
        *pathlen = (int)(ppl - 1);
    } else if (ppl > 0 && *pathlen > ppl - 1) {
        err_set(e, ERRC_INVALID, "pathlen %d exceeds what parent CA '%s' allows (at most %ld)",
                *pathlen, o->parent, ppl - 1);
        goto fail;
    }
    if ((k = ca_key_load(p->key_uri, &o->parent_opts, e)) == NULL) {
        err_prefix(e, "parent CA '%s'", o->parent);
        goto fail;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(p->cert), ca_key_pkey(k)) != 1) {
        ERR_clear_error();
        err_set(e, ERRC_INTERNAL, "the key of parent CA '%s' does not match its certificate",
                o->parent);
        goto fail;
    }
    *parent = p;
    *pkey = k;
    return 0;
fail:
    ca_key_free(k);
    ca_authority_free(p);
    return -1;
}

static int init_check(const struct ca_init_opts *o, struct err *e)
{
    if (ca_name_check(o->name, e) != 0) {
        return -1;
    }
    if ((unsigned)o->key_type >= CA_KEY__COUNT) {
        return err_set(e, ERRC_INVALID, "unknown key type %d", (int)o->key_type);
    }
    if (o->days <= 0 || o->days > CA_DAYS_MAX) {
        return err_set(e, ERRC_INVALID, "validity of %lld days is out of range (1 to %d)",
                       (long long)o->days, CA_DAYS_MAX);
    }
    if (o->pathlen < -1 || o->pathlen > CA_PATHLEN_MAX) {
        return err_set(e, ERRC_INVALID, "pathlen %d is out of range (-1 to %d)", o->pathlen,
                       CA_PATHLEN_MAX);
    }
    if (o->parent != NULL && o->csr_only) {
        return err_set(e, ERRC_INVALID,
                       "CA '%s': a parent in the store and csr_only exclude each other", o->name);
    }
    if (o->parent != NULL && strcmp(o->parent, o->name) == 0) {
        return err_set(e, ERRC_INVALID, "CA '%s' cannot be its own parent", o->name);
    }
    return 0;
}

int ca_authority_init(const char *datadir, const struct ca_init_opts *o, struct buf *csr_out,
                      struct err *e)
{
    struct buf dir = BUF_INIT, path = BUF_INIT, uri = BUF_INIT, subj_text = BUF_INIT;
    X509_NAME *subj = NULL;
    struct ca_authority *parent = NULL;
    struct ca_key *pkey = NULL, *key = NULL;
    X509 *cert = NULL;
    X509_REQ *req = NULL;
    json_t *meta = NULL;
    BIO *bio = NULL;
    bool made_dir = false, made_token_key = false;
    char *made_key_file = NULL;
    int pathlen = o->pathlen, rc = -1;
    time_t now = time(NULL), not_after = 0, pna = 0;
    char ts[40], fp[65] = "";

    if (init_check(o, e) != 0) {
        goto out;
    }
    if (o->subject == NULL) {
        buf_addf(&subj_text, "/CN=%s", o->name);
    } else {
        buf_addstr(&subj_text, o->subject);
    }
    if (subject_parse(subj_text.data, &subj, e) != 0) {
        goto out;
    }
    ca_path(&dir, datadir, o->name, NULL);
    if (file_exists(dir.data)) {
        err_set(e, ERRC_CONFLICT, "CA '%s' already exists", o->name);
        goto out;
    }
    if (o->parent != NULL && parent_prepare(datadir, o, &parent, &pkey, &pathlen, e) != 0) {
        goto out;
    }
    not_after = now + (time_t)o->days * 86400;
    if (parent != NULL && time_of(X509_get0_notAfter(parent->cert), &pna) == 0 && pna < not_after) {
        not_after = pna;
    }

    buf_addf(&path, "%s/ca", datadir);
    if (file_mkdirs(path.data, 0700, e) != 0) {
        goto out;
    }
    if (mkdir(dir.data, 0700) != 0) {
        if (errno == EEXIST) {
            err_set(e, ERRC_CONFLICT, "CA '%s' already exists", o->name);
        } else {
            err_errno(e, ERRC_INTERNAL, "cannot create '%s'", dir.data);
        }
        goto out;
    }
    made_dir = true;

    if (o->key_uri != NULL) {
        buf_addstr(&uri, o->key_uri);
    } else {
        buf_addf(&uri, "file:%s/key.pem", dir.data);
    }
    if ((key = ca_key_generate(o->key_type, uri.data, &o->key_opts, e)) == NULL) {
        goto out;
    }
    if (str_has_prefix(uri.data, "file:")) {
        made_key_file = xstrdup(uri.data + 5);
    } else {
        made_token_key = true;
    }
    ca_path(&path, datadir, o->name, "pub.pem");
    if (write_pem(path.data, wr_pubkey, ca_key_pkey(key), 0644, true, e) != 0) {
        goto out;
    }

    if (o->csr_only) {
        if ((req = csr_build(subj, key, pathlen, e)) == NULL) {
            goto out;
        }
        ca_path(&path, datadir, o->name, "ca.csr");
        if (write_pem(path.data, wr_req, req, 0644, true, e) != 0) {
            goto out;
        }
        if (csr_out != NULL) {
            char *pem = NULL;
            long len = 0;
            if ((bio = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_X509_REQ(bio, req) != 1 ||
                (len = BIO_get_mem_data(bio, &pem)) <= 0) {
                err_openssl(e, ERRC_INTERNAL, "cannot encode the CSR");
                goto out;
            }
            buf_add(csr_out, pem, (size_t)len);
        }
    } else {
        struct cert_params cp = {
            .subject = subj,
            .pub = ca_key_pkey(key),
            .issuer = parent ? parent->cert : NULL,
            .signer = parent ? ca_key_pkey(pkey) : ca_key_pkey(key),
            .signer_type = parent ? ca_key_type(pkey) : ca_key_type(key),
            .not_before = now - CA_BACKDATE_SEC,
            .not_after = not_after,
            .pathlen = pathlen,
        };
        if ((cert = cert_build(&cp, e)) == NULL) {
            goto out;
        }
        ca_path(&path, datadir, o->name, "cert.pem");
        if (write_pem(path.data, wr_x509, cert, 0644, true, e) != 0) {
            goto out;
        }
        fingerprint_of(cert, fp);
    }

    meta = json_object();
    time_format_rfc3339(now, ts, sizeof(ts));
    meta_set_str(meta, "name", o->name);
    meta_set_str(meta, "created", ts);
    meta_set_str(meta, "key_uri", ca_key_uri(key));
    meta_set_str(meta, "key_type", ca_key_type_name(ca_key_type(key)));
    meta_set_str(meta, "parent", o->parent);
    meta_set_str(meta, "status", ca_status_name(o->csr_only ? CA_ST_PENDING : CA_ST_ACTIVE));
    meta_set_str(meta, "subject", subj_text.data);
    meta_set_str(meta, "fingerprint", fp);
    json_object_set_new(meta, "pathlen", pathlen >= 0 ? json_integer(pathlen) : json_null());
    meta_set_cert(meta, cert);
    if (cert != NULL) {
        meta_set_str(meta, "subject", subj_text.data); /* keep the operator's spelling */
    }
    ca_path(&path, datadir, o->name, "ca.json");
    if (meta_write(path.data, meta, true, e) != 0) {
        goto out;
    }
    rc = 0;
out:
    if (rc != 0 && made_dir) {
        if (made_key_file != NULL) {
            unlink(made_key_file);
        }
        remove_dir(dir.data);
        if (made_token_key) {
            size_t l = strlen(e->msg);
            snprintf(e->msg + l, sizeof(e->msg) - l,
                     " (the key '%s' generated for it stays in the token)", ca_key_uri(key));
        }
    }
    xfree(made_key_file);
    BIO_free(bio);
    json_decref(meta);
    X509_free(cert);
    X509_REQ_free(req);
    ca_key_free(key);
    ca_key_free(pkey);
    ca_authority_free(parent);
    X509_NAME_free(subj);
    buf_release(&dir);
    buf_release(&path);
    buf_release(&uri);
    buf_release(&subj_text);
    return rc;
}

int ca_authority_import(const char *datadir, const char *name, const char *cert_path, struct err *e)
{
    struct ca_authority *a = NULL;
    struct buf path = BUF_INIT;
    X509 *x = NULL;
    EVP_PKEY *pub = NULL;
    uint32_t flags;
    bool wrote = false;
    int rc = -1;

    if ((a = ca_authority_load(datadir, name, e)) == NULL) {
        goto out;
    }
    if (a->status != CA_ST_PENDING) {
        err_set(e, ERRC_CONFLICT, "CA '%s' is %s, not pending: nothing to import", name,
                ca_status_name(a->status));
        goto out;
    }
    if ((x = read_cert(cert_path, e)) == NULL) {
        goto out;
    }
    ca_path(&path, datadir, name, "pub.pem");
    if ((pub = read_pubkey(path.data, e)) == NULL) {
        goto out;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(x), pub) != 1) {
        ERR_clear_error();
        err_set(e, ERRC_INVALID, "certificate '%s' does not carry the key of CA '%s'", cert_path,
                name);
        goto out;
    }
    flags = X509_get_extension_flags(x);
    if (!(flags & EXFLAG_BCONS) || !(flags & EXFLAG_CA)) {
        err_set(e, ERRC_INVALID, "certificate '%s' is not a CA certificate (no CA:TRUE)",
                cert_path);
        goto out;
    }
    if (!(flags & EXFLAG_KUSAGE) || !(X509_get_key_usage(x) & KU_KEY_CERT_SIGN)) {
        err_set(e, ERRC_INVALID, "certificate '%s' lacks keyUsage keyCertSign", cert_path);
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0) {
        err_set(e, ERRC_INVALID, "certificate '%s' is not valid yet", cert_path);
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
        err_set(e, ERRC_INVALID, "certificate '%s' has expired", cert_path);
        goto out;
    }
    ca_path(&path, datadir, name, "cert.pem");
    if (write_pem(path.data, wr_x509, x, 0644, true, e) != 0) {
        goto out;
    }
    wrote = true;
    a->cert = x;
    x = NULL;
    a->status = CA_ST_ACTIVE;
    fingerprint_of(a->cert, a->fingerprint);
    if (ca_authority_save(datadir, a, e) != 0) {
        goto out;
    }
    rc = 0;
out:
    if (rc != 0 && wrote) {
        unlink(path.data);
    }
    ERR_clear_error();
    EVP_PKEY_free(pub);
    X509_free(x);
    ca_authority_free(a);
    buf_release(&path);
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_free(char **names, size_t n)
{
    for (size_t i = 0; names != NULL && i < n; i++) {
        xfree(names[i]);
    }
    xfree(names);
}

int ca_authority_list(const char *datadir, char ***names, size_t *n, struct err *e)
{
    struct buf path = BUF_INIT;
    DIR *d = NULL;
    struct dirent *de;
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    struct err ignore = ERR_INIT;

    *names = NULL;
    *n = 0;
    buf_addf(&path, "%s/ca", datadir);
    if ((d = opendir(path.data)) == NULL) {
        buf_release(&path);
        if (errno == ENOENT) {
            return 0;
        }
        return err_errno(e, ERRC_INTERNAL, "cannot list '%s/ca'", datadir);
    }
    while ((de = readdir(d)) != NULL) {
        if (ca_name_check(de->d_name, &ignore) != 0) {
            err_clear(&ignore);
            continue;
        }
        ca_path(&path, datadir, de->d_name, "ca.json");
        if (!file_exists(path.data)) {
            continue;
        }
        v = xgrow(v, sizeof(*v), cnt + 1, &cap);
        v[cnt++] = xstrdup(de->d_name);
    }
    closedir(d);
    buf_release(&path);
    if (cnt > 1) {
        qsort(v, cnt, sizeof(*v), cmp_names);
    }
    *names = v;
    *n = cnt;
    return 0;
}

int ca_authority_children(const char *datadir, const char *name, char ***names, size_t *n,
                          struct err *e)
{
    char **all = NULL, **v = NULL;
    size_t nall = 0, cnt = 0, cap = 0;
    int rc = -1;
    *names = NULL;
    *n = 0;
    if (ca_authority_list(datadir, &all, &nall, e) != 0) {
        return -1;
    }
    for (size_t i = 0; i < nall; i++) {
        struct ca_authority *a = ca_authority_load(datadir, all[i], e);
        if (a == NULL) {
            goto out;
        }
        if (a->parent != NULL && strcmp(a->parent, name) == 0) {
            v = xgrow(v, sizeof(*v), cnt + 1, &cap);
            v[cnt++] = xstrdup(all[i]);
        }
        ca_authority_free(a);
    }
    *names = v;
    *n = cnt;
    v = NULL;
    cnt = 0;
    rc = 0;
out:
    names_free(v, cnt);
    names_free(all, nall);
    return rc;
}

int ca_authority_chain_pem(const char *datadir, const struct ca_authority *a, struct buf *out,
                           struct err *e)
{
    BIO *bio = BIO_new(BIO_s_mem());
    struct ca_authority *cur = NULL;
    const struct ca_authority *at = a;
    char *pem = NULL;
    long len;
    int rc = -1;
    if (bio == NULL) {
        return err_openssl(e, ERRC_INTERNAL, "BIO_new");
    }
    for (int depth = 0;; depth++) {
        if (at->cert == NULL) {
            err_set(e, ERRC_CONFLICT, "CA '%s' has no certificate yet (status %s)", at->name,
                    ca_status_name(at->status));
            goto out;
        }
        const char *via = json_string_value(json_object_get(at->meta, "chain_via"));
        X509 *cross = NULL;
        if (via != NULL) {
            struct buf cp = BUF_INIT, f = BUF_INIT;
            buf_addf(&f, "cross-%s.pem", via);
            ca_path(&cp, datadir, at->name, f.data);
            cross = read_cert(cp.data, e);
            buf_release(&cp);
            buf_release(&f);
            if (cross == NULL) {
                err_prefix(e, "chain of CA '%s' (through CA '%s')", a->name, via);
                goto out;
            }
        }
        if (PEM_write_bio_X509(bio, cross ? cross : at->cert) != 1) {
            X509_free(cross);
            err_openssl(e, ERRC_INTERNAL, "PEM_write_bio_X509");
            goto out;
        }
        X509_free(cross);
        if (via == NULL && at->parent == NULL) {
            break;
        }
        if (depth + 1 >= CA_CHAIN_MAX) {
            err_set(e, ERRC_INTERNAL, "the chain of CA '%s' is longer than %d (a loop?)", a->name,
                    CA_CHAIN_MAX);
            goto out;
        }
        struct ca_authority *next = ca_authority_load(datadir, via ? via : at->parent, e);
        ca_authority_free(cur);
        cur = next;
        if (cur == NULL) {
            err_prefix(e, "chain of CA '%s'", a->name);
            goto out;
        }
        at = cur;
    }
    len = BIO_get_mem_data(bio, &pem);
    if (len > 0) {
        buf_add(out, pem, (size_t)len);
    }
    rc = 0;
out:
    ca_authority_free(cur);
    BIO_free(bio);
    return rc;
}

int ca_authority_cross_sign(const char *datadir, const char *name, const char *by,
                            const struct ca_key_opts *by_opts, int64_t days, X509 **out,
                            struct err *e)
{
    struct ca_authority *a = NULL, *b = NULL;
    struct ca_key *k = NULL;
    struct cert_params cp;
    time_t now = time(NULL), na_a = 0, na_b = 0;
    long pl_a, pl_b;
    int rc = -1;
    *out = NULL;
    if (strcmp(name, by) == 0) {
        return err_set(e, ERRC_INVALID, "a CA cannot cross-sign itself");
    }
    if ((a = ca_authority_load(datadir, name, e)) == NULL ||
        (b = ca_authority_load(datadir, by, e)) == NULL) {
        goto out;
    }
    if (a->cert == NULL || b->cert == NULL) {
        err_set(e, ERRC_CONFLICT, "CA '%s' is pending: it has no certificate yet",
                a->cert == NULL ? name : by);
        goto out;
    }
    if (json_is_object(json_object_get(a->meta, "compromised")) ||
        json_is_object(json_object_get(b->meta, "compromised"))) {
        err_set(e, ERRC_CONFLICT, "CA '%s' is compromised: no trust is carried to or from it",
                json_is_object(json_object_get(a->meta, "compromised")) ? name : by);
        goto out;
    }
    if (time_of(X509_get0_notAfter(a->cert), &na_a) != 0 ||
        time_of(X509_get0_notAfter(b->cert), &na_b) != 0 || na_a <= now || na_b <= now) {
        err_set(e, ERRC_CONFLICT, "CA '%s' has expired", na_a <= now ? name : by);
        goto out;
    }
    /* the devices that trust b must accept b -> a -> a's CAs below: b's pathLenConstraint must
     * leave room for a and whatever a's own allows under it */
    pl_a = X509_get_pathlen(a->cert);
    pl_b = X509_get_pathlen(b->cert);
    if (pl_b == 0 || (pl_b > 0 && (pl_a < 0 || pl_a > pl_b - 1))) {
        char need[32];
        if (pl_a < 0) {
            snprintf(need, sizeof(need), "none");
        } else {
            snprintf(need, sizeof(need), "at least %ld", pl_a + 1);
        }
        err_set(e, ERRC_CONFLICT,
                "CA '%s' has pathlen %ld, too short for chains through a cross-signed '%s' "
                "(they need %s): cross-sign with a CA whose pathlen allows them",
                by, pl_b, name, need);
        goto out;
    }
    if ((k = ca_key_load(b->key_uri, by_opts, e)) == NULL) {
        err_prefix(e, "CA '%s'", by);
        goto out;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(b->cert), ca_key_pkey(k)) != 1) {
        ERR_clear_error();
        err_set(e, ERRC_INVALID, "the key of CA '%s' does not match its certificate", by);
        goto out;
    }
    cp = (struct cert_params){ X509_get_subject_name(a->cert),
                               X509_get0_pubkey(a->cert),
                               b->cert,
                               ca_key_pkey(k),
                               b->key_type,
                               now - 60,
                               na_a < na_b ? na_a : na_b,
                               (int)pl_a };
    if (days > 0 && now + days * 86400 < cp.not_after) {
        cp.not_after = now + days * 86400;
    }
    if ((*out = cert_build(&cp, e)) == NULL) {
        goto out;
    }
    rc = 0;
out:
    ca_key_free(k);
    ca_authority_free(a);
    ca_authority_free(b);
    return rc;
}

int ca_authority_cross_install(const char *datadir, const char *name, const char *by, X509 *x,
                               bool in_chain, struct err *e)
{
    struct ca_authority *a = ca_authority_load(datadir, name, e);
    struct buf path = BUF_INIT, f = BUF_INIT;
    char fp[65], sn[131], na[40];
    time_t t = 0;
    int rc = -1;
    json_t *list;
    if (a == NULL) {
        return -1;
    }
    buf_addf(&f, "cross-%s.pem", by);
    ca_path(&path, datadir, name, f.data);
    if (write_pem(path.data, wr_x509, x, 0644, false, e) != 0) {
        goto out;
    }
    fingerprint_of(x, fp);
    (void)ca_serial_hex(X509_get0_serialNumber(x), sn, sizeof(sn));
    (void)time_of(X509_get0_notAfter(x), &t);
    time_format_rfc3339(t, na, sizeof(na));
    list = json_object_get(a->meta, "cross_signed");
    if (!json_is_object(list)) {
        list = json_object();
        json_object_set_new(a->meta, "cross_signed", list);
    }
    json_object_set_new(list, by,
                        json_pack("{s:s,s:s,s:s,s:s}", "file", f.data, "serial", sn, "fingerprint",
                                  fp, "not_after", na));
    if (in_chain) {
        json_object_set_new(a->meta, "chain_via", json_string(by));
    }
    rc = ca_authority_save(datadir, a, e);
out:
    buf_release(&path);
    buf_release(&f);
    ca_authority_free(a);
    return rc;
}
