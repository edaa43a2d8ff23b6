/*
 * The snapshot a worker serves from: configuration, station authorisations, the CAs it signs with
 * (issuance contexts: key, profiles, audit log), the station CA and the TLS context. Built whole
 * off the loop (loading keys runs scrypt), swapped in between loop iterations, released when the
 * last request that started under it is answered.
 *
 * CAs opened: the default CA and every CA a station is allowed by name. A CA whose key cannot be
 * loaded leaves the snapshot degraded instead of failing it: /readyz and signing answer 503
 * naming the problem, and the worker rebuilds the snapshot periodically until the key loads.
 */
#include <fcntl.h>
#include <openssl/err.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "ca/authority.h"
#include "ca/ocsp.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/daemon.h"
#include "httpd/httpd.h"
#include "issuance/issuance.h"
#include "issuance/revoke.h"
#include "store/store.h"

static void snap_free(struct snap *s)
{
    issuance_revoker_free(s->revoker);
    for (size_t i = 0; i < s->ncas; i++) {
        struct snap_ca *c = &s->cas[i];
        X509_free(c->ocsp_cert);
        ca_key_free(c->ocsp_key);
        issuance_ctx_free(c->ctx);
        ca_authority_free(c->auth);
        buf_release(&c->chain_pem);
        buf_release(&c->chain_json);
        xfree(c->key_path);
        xfree(c->name);
    }
    xfree(s->cas);
    aliases_unref(s->al);
    stations_free(s->stations);
    X509_free(s->station_ca);
    SSL_CTX_free(s->ssl);
    conf_free(s->conf);
    xfree(s);
}

struct snap *snap_ref(struct snap *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void snap_unref(struct snap *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
        snap_free(s);
    }
}

const struct snap_ca *snap_find_ca(const struct snap *s, const char *name)
{
    for (size_t i = 0; i < s->ncas; i++) {
        if (strcmp(s->cas[i].name, name) == 0) {
            return &s->cas[i];
        }
    }
    return NULL;
}

struct aliases *aliases_new(char **names, char **cas, size_t n, uint64_t gen)
{
    struct aliases *al = xcalloc(1, sizeof(*al));
    atomic_init(&al->refs, 1);
    al->names = names;
    al->cas = cas;
    al->n = n;
    al->gen = gen;
    return al;
}

struct aliases *aliases_ref(struct aliases *al)
{
    atomic_fetch_add(&al->refs, 1);
    return al;
}

void aliases_unref(struct aliases *al)
{
    if (al && atomic_fetch_sub(&al->refs, 1) == 1) {
        store_alias_free(al->names, al->cas, al->n);
        xfree(al);
    }
}

const char *aliases_resolve(const struct aliases *al, const char *name)
{
    for (size_t i = 0; al && i < al->n; i++) {
        if (strcmp(al->names[i], name) == 0) {
            return al->cas[i];
        }
    }
    return name;
}

bool aliases_station_may_use_ca(const struct aliases *al, const struct station *st,
                                const char *name)
{
    const char *want = aliases_resolve(al, name);
    for (size_t i = 0; i < st->ncas; i++) {
        if (strcmp(st->cas[i], "*") == 0 || strcmp(st->cas[i], name) == 0 ||
            strcmp(aliases_resolve(al, st->cas[i]), want) == 0) {
            return true;
        }
    }
    return false;
}

const char *snap_default_name(const struct snap *s)
{
    return *s->conf->default_ca ? s->conf->default_ca : s->cas[s->def].name;
}

/* Reads the issuing aliases and the CAs being prepared for a switch (alias:next). Needed (a
 * configured name is no CA of the store): a failure fails the build; else it is logged and the
 * snapshot has none (generation 0: the alias watch rebuilds once Redis answers). */
static int load_aliases(struct snap *s, bool needed, char ***next, size_t *nnext, struct err *e)
{
    struct issuance_aliases al;
    struct err le = ERR_INIT;
    char **names, **cas, **nn = NULL, **nc = NULL;
    size_t n = 0, m = 0;
    if (issuance_aliases_load(s->conf, &al, &le) != 0) {
        s->al = aliases_new(NULL, NULL, 0, 0);
        if (needed) {
            err_copy(e, &le);
            return err_prefix(e, "a CA name of the configuration is no CA of the store");
        }
        log_debug("%s", le.msg);
        return 0;
    }
    names = xcalloc(al.n ? al.n : 1, sizeof(char *));
    cas = xcalloc(al.n ? al.n : 1, sizeof(char *));
    for (size_t i = 0; i < al.n; i++) {
        if (issuance_ca_exists(s->conf, al.names[i])) {
            log_warn("issuing alias '%s' is ignored: a CA of the store has that name", al.names[i]);
            continue;
        }
        names[n] = xstrdup(al.names[i]);
        cas[n++] = xstrdup(al.cas[i]);
    }
    s->al = aliases_new(names, cas, n, al.gen);
    issuance_aliases_release(&al);
    {
        struct store *st = store_connect(s->conf->redis_url, &le);
        uint64_t g;
        if (st == NULL || store_alias_next(st, &nn, &nc, &m, &g, &le) != 0) {
            log_debug("%s", le.msg);
        }
        store_free(st);
    }
    /* the CAs of a coming switch: loaded now, so that the switch needs no key load */
    for (size_t i = 0; i < m; i++) {
        if (!issuance_ca_exists(s->conf, nc[i])) {
            continue;
        }
        *next = xrealloc(*next, (*nnext + 1) * sizeof(char *));
        (*next)[(*nnext)++] = nc[i];
        nc[i] = NULL;
    }
    store_alias_free(nn, nc, m);
    return 0;
}

static void names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        xfree(names[i]);
    }
    xfree(names);
}

/* conf default_ca, else the only active CA of the store besides the station CA. */
static char *default_ca(const struct conf *c, struct err *e)
{
    char **names = NULL;
    size_t n = 0;
    char *pick = NULL;
    size_t active = 0;
    if (*c->default_ca) {
        return xstrdup(c->default_ca);
    }
    if (ca_authority_list(c->data_dir, &names, &n, e) != 0) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        struct err ignore = ERR_INIT;
        struct ca_authority *a = NULL;
        if (strcmp(names[i], c->station_ca) != 0) {
            a = ca_authority_load(c->data_dir, names[i], &ignore);
        }
        if (a && a->status == CA_ST_ACTIVE) {
            active++;
            xfree(pick);
            pick = xstrdup(names[i]);
        }
        ca_authority_free(a);
    }
    names_free(names, n);
    if (active != 1) {
        xfree(pick);
        err_set(e, ERRC_INVALID,
                "%s active CAs besides the station CA in '%s': set default_ca in the configuration",
                active ? "several" : "no", c->data_dir);
        return NULL;
    }
    return pick;
}

/* The CA's delegated OCSP responder (ca/ocsp.h), when it has one that is usable now: else the
 * CA signs its OCSP answers itself, and the log says why. */
static void load_ocsp_signer(struct snap *s, struct snap_ca *c)
{
    struct err e = ERR_INIT;
    struct buf path = BUF_INIT, uri = BUF_INIT, pem = BUF_INIT, secret = BUF_INIT;
    struct ca_key_opts ko = { 0 };
    X509 *x = NULL;
    BIO *bio = NULL;
    buf_addf(&path, "%s/ca/%s/" CA_OCSP_SIGNER_CERT, s->conf->data_dir, c->name);
    if (access(path.data, F_OK) != 0 || c->auth->cert == NULL) {
        goto out;
    }
    if (file_read_all(path.data, 1 << 20, &pem, &e) != 0) {
        goto fail;
    }
    if ((bio = BIO_new_mem_buf(pem.data, (int)pem.len)) == NULL ||
        (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL) {
        err_openssl(&e, ERRC_INVALID, "%s is not a PEM certificate", path.data);
        goto fail;
    }
    if (ca_ocsp_signer_check(c->auth->cert, x, time(NULL), &e) != 0) {
        goto fail;
    }
    buf_addf(&uri, "file:%s/ca/%s/" CA_OCSP_SIGNER_KEY, s->conf->data_dir, c->name);
    if (issuance_secret_load(s->conf, uri.data, NULL, &secret, &e) != 0) {
        goto fail;
    }
    ko.secret = secret.len ? secret.data : NULL;
    if ((c->ocsp_key = ca_key_load(uri.data, &ko, &e)) == NULL) {
        goto fail;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(x), ca_key_pkey(c->ocsp_key)) != 1) {
        ERR_clear_error();
        err_set(&e, ERRC_INVALID, "its key does not match the certificate");
        ca_key_free(c->ocsp_key);
        c->ocsp_key = NULL;
        goto fail;
    }
    c->ocsp_cert = x;
    x = NULL;
    goto out;
fail:
    log_warn("CA '%s': the delegated OCSP responder is not used (the CA key signs): %s", c->name,
             e.msg);
out:
    X509_free(x);
    BIO_free(bio);
    buf_release_secret(&secret);
    buf_release(&pem);
    buf_release(&uri);
    buf_release(&path);
}

static int add_ca(struct snap *s, const char *name, struct err *e)
{
    if (snap_find_ca(s, name) != NULL) {
        return 0;
    }
    struct snap_ca *c = &s->cas[s->ncas];
    c->name = xstrdup(name);
    s->ncas++;
    c->auth = ca_authority_load(s->conf->data_dir, name, e);
    if (c->auth == NULL) {
        return err_prefix(e, "CA '%s'", name);
    }
    if (str_has_prefix(c->auth->key_uri, "file:")) {
        c->key_path = xstrdup(c->auth->key_uri + 5);
    }
    if (ca_authority_chain_pem(s->conf->data_dir, c->auth, &c->chain_pem, e) != 0) {
        return err_prefix(e, "CA '%s'", name);
    }
    json_quote(&c->chain_json, c->chain_pem.data, c->chain_pem.len);
    if (c->auth->status != CA_ST_ACTIVE || ca_authority_compromised(c->auth)) {
        /* named by a station, but issues nothing (retired by a rotation, say): refused per
         * request, not a degraded snapshot */
        err_set(&c->err, ERRC_DENIED, "CA '%s' is %s and issues nothing", name,
                ca_authority_compromised(c->auth) ? "compromised"
                                                  : ca_status_name(c->auth->status));
        log_info("%s", c->err.msg);
        return 0;
    }
    c->ctx = issuance_ctx_open(s->conf, name, NULL, &c->err);
    if (c->ctx == NULL) {
        log_error("CA '%s' cannot sign: %s", name, c->err.msg);
        s->degraded = true;
    } else {
        load_ocsp_signer(s, c);
    }
    return 0;
}

struct snap *snap_build(const char *config_path, uint64_t gen, struct err *e)
{
    struct snap *s = xcalloc(1, sizeof(*s));
    struct ca_authority *sca = NULL;
    struct buf trust = BUF_INIT;
    char *def = NULL;
    char **names = NULL;
    size_t nnames = 0;
    atomic_init(&s->refs, 1);
    s->gen = gen;
    s->conf = conf_load(config_path, e);
    if (s->conf == NULL) {
        goto fail;
    }
    s->stations =
        stations_load(s->conf->stations_file, s->conf->default_ca, s->conf->default_profile, e);
    if (s->stations == NULL) {
        goto fail;
    }
    if (*s->conf->station_ca == '\0') {
        err_set(e, ERRC_INVALID, "%s: station_ca must name the CA of the station certificates",
                *s->conf->source ? s->conf->source : "configuration");
        goto fail;
    }
    def = default_ca(s->conf, e);
    if (def == NULL) {
        goto fail;
    }
    /* the default CA plus every CA a station names, aliases resolved */
    names = xcalloc(1, sizeof(char *));
    names[0] = def;
    nnames = 1;
    def = NULL;
    stations_ca_names(s->stations, &names, &nnames);
    {
        bool needed = false;
        char **next = NULL;
        size_t nnext = 0;
        for (size_t i = 0; i < nnames; i++) {
            needed = needed || !issuance_ca_exists(s->conf, names[i]);
        }
        if (load_aliases(s, needed, &next, &nnext, e) != 0) {
            goto fail;
        }
        /* resolved in place, then the prepared ones (names_free frees them all) */
        for (size_t i = 0; i < nnames; i++) {
            const char *r = aliases_resolve(s->al, names[i]);
            if (r != names[i]) {
                char *t = xstrdup(r);
                xfree(names[i]);
                names[i] = t;
            }
        }
        names = xrealloc(names, (nnames + nnext) * sizeof(char *));
        for (size_t i = 0; i < nnext; i++) {
            names[nnames++] = next[i];
        }
        xfree(next);
    }
    s->cas = xcalloc(nnames, sizeof(*s->cas));
    for (size_t i = 0; i < nnames; i++) {
        if (add_ca(s, names[i], e) != 0) {
            goto fail;
        }
    }
    s->def = 0;
    s->revoker =
        issuance_revoker_new(s->conf, s->cas[0].ctx ? s->cas[0].ctx->audit : NULL, NULL, e);
    if (s->revoker == NULL) {
        goto fail;
    }
    /* the station CA and the TLS context: stations and, for EST re-enrollment, devices */
    sca = ca_authority_load(s->conf->data_dir, s->conf->station_ca, e);
    if (sca == NULL) {
        err_prefix(e, "station_ca");
        goto fail;
    }
    if (sca->cert == NULL) {
        err_set(e, ERRC_INVALID, "station_ca '%s' has no certificate yet", sca->name);
        goto fail;
    }
    if (X509_up_ref(sca->cert) != 1) {
        err_openssl(e, ERRC_INTERNAL, "X509_up_ref");
        goto fail;
    }
    s->station_ca = sca->cert;
    if (ca_authority_chain_pem(s->conf->data_dir, sca, &trust, e) != 0) {
        goto fail;
    }
    for (size_t i = 0; i < s->ncas; i++) {
        buf_add(&trust, s->cas[i].chain_pem.data, s->cas[i].chain_pem.len);
    }
    s->ssl = httpd_tls_ctx_new(s->conf->tls_cert_file, s->conf->tls_key_file, buf_cstr(&trust), e);
    if (s->ssl == NULL) {
        goto fail;
    }
    ca_authority_free(sca);
    buf_release(&trust);
    names_free(names, nnames);
    return s;
fail:
    names_free(names, nnames);
    xfree(def);
    ca_authority_free(sca);
    buf_release(&trust);
    snap_free(s);
    return NULL;
}

int snap_ca_check(const struct snap_ca *c, struct err *e)
{
    if (c->ctx == NULL && c->err.code == ERRC_DENIED) {
        err_copy(e, &c->err);
        return -1;
    }
    if (c->ctx == NULL) {
        return err_set(e, ERRC_UNAVAILABLE, "CA '%s' cannot sign: %s", c->name, c->err.msg);
    }
    if (c->key_path) {
        int fd = open(c->key_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            return err_errno(e, ERRC_UNAVAILABLE, "CA '%s': key file '%s' is unreadable", c->name,
                             c->key_path);
        }
        close(fd);
        if (file_check_private(c->key_path, e) != 0) {
            e->code = ERRC_UNAVAILABLE;
            return err_prefix(e, "CA '%s'", c->name);
        }
    }
    return 0;
}

void snap_audit_totals(const struct snap *s, struct audit_stats *sum)
{
    for (size_t i = 0; i < s->ncas; i++) {
        if (s->cas[i].ctx) {
            struct audit_stats st;
            audit_get_stats(s->cas[i].ctx->audit, &st);
            audit_stats_add(sum, &st);
        }
    }
}
