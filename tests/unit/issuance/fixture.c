/* tests/unit/issuance/fixture.h */
#include "tests/unit/issuance/fixture.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/authority.h"
#include "core/util.h"
#include "issuance/reindex.h"
#include "tests/harness/tt.h"

#define PASS "fixture passphrase"

int fixture_open(struct fixture *f, const char *name, int db, struct err *e)
{
    const char *url = getenv("JITRCA_TEST_REDIS_URL");
    char cfg[600], dburl[600];
    struct ca_init_opts o;
    struct issuance_reindex_stats st;
    uint64_t removed = 0;
    bool rebuilt = false;
    memset(f, 0, sizeof(*f));
    if (url == NULL) {
        return TT_SKIP;
    }
    snprintf(f->dir, sizeof(f->dir), "%s/%s", tt_tmpdir(), name);
    memset(&o, 0, sizeof(o));
    o.name = "root";
    o.key_type = CA_KEY_EC_P256;
    o.days = 3650;
    o.pathlen = 1;
    o.key_opts.secret = PASS;
    if (ca_authority_init(f->dir, &o, NULL, e) != 0) {
        return -1;
    }
    snprintf(dburl, sizeof(dburl), "%s?db=%d", url, db);
    snprintf(cfg, sizeof(cfg), "%s/jitrca.json", f->dir);
    json_t *c = json_pack("{s:s,s:s,s:s}", "data_dir", f->dir, "redis_url", dburl,
                          "key_passphrase_env", "JITRCA_TEST_FIXTURE_PASS");
    if (c == NULL || json_dump_file(c, cfg, 0) != 0) {
        json_decref(c);
        return err_set(e, ERRC_INTERNAL, "cannot write %s", cfg);
    }
    json_decref(c);
    setenv("JITRCA_TEST_FIXTURE_PASS", PASS, 1);
    if ((f->conf = conf_load(cfg, e)) == NULL ||
        (f->store = store_connect(f->conf->redis_url, e)) == NULL ||
        store_index_clear(f->store, &removed, e) != 0 || store_index_mark_clear(f->store, e) != 0 ||
        issuance_index_ensure(f->conf, f->store, 5000, &rebuilt, &st, e) != 0) {
        return -1;
    }
    return 0;
}

void fixture_close(struct fixture *f)
{
    uint64_t removed = 0;
    struct err e = ERR_INIT;
    if (f->store != NULL && store_index_clear(f->store, &removed, &e) != 0) {
        fprintf(stderr, "  cleanup: %s\n", e.msg);
    }
    store_free(f->store);
    conf_free(f->conf);
    memset(f, 0, sizeof(*f));
}

void fixture_csr(const char *cn, struct buf *out)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509_REQ *req = X509_REQ_new();
    unsigned char *der = NULL;
    int len;
    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_REQ_set_pubkey(req, pk);
    X509_REQ_sign(req, pk, EVP_sha256());
    len = i2d_X509_REQ(req, &der);
    if (len > 0) {
        buf_add(out, der, (size_t)len);
    }
    OPENSSL_free(der);
    X509_REQ_free(req);
    EVP_PKEY_free(pk);
}

size_t fixture_audit_count(const struct fixture *f, const char *needle)
{
    struct buf log = BUF_INIT;
    struct err e = ERR_INIT;
    size_t n = 0;
    if (file_read_all(conf_audit_path(f->conf), 64 << 20, &log, &e) == 0) {
        for (const char *p = buf_cstr(&log); (p = strstr(p, needle)) != NULL; p++) {
            n++;
        }
    }
    buf_release(&log);
    return n;
}
