/*
 * Revocation and CRL publication (see revoke.h).
 *
 * Why this order: the audit log is the record of what happened and Redis is rebuilt from it, so a
 * revocation is appended (durably) before the index says "revoked", and a CRL is appended before
 * its file is published. The CA's key is loaded before anything is written, so a revocation is
 * never recorded for a CA whose CRL cannot be signed (a wrong passphrase changes nothing).
 *
 * Why a file lock per CA (DATA/ca/NAME/crl.lock): revocations are rare and a CRL signature is
 * cheap, so serialising them per CA costs nothing, and it gives three properties at once: one
 * record for two concurrent revocations of a serial, CRL files written in the order of their
 * numbers (a slower writer cannot replace CRL n+1 by CRL n), and one regeneration when several
 * jitrd workers find a CRL due at the same moment. flock() locks belong to the open file
 * description, so threads of one process exclude each other as processes do.
 *
 * Why the CRL number is kept in Redis, raised to the number on disk, and audited: INCR in Redis
 * gives distinct increasing numbers to every process and host sharing the index; the floor from
 * the file on disk keeps it monotonic if Redis was flushed and not yet reindexed; the "crl" audit
 * records let reindex restore it even when both are lost.
 */
#include "issuance/revoke.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "ca/authority.h"
#include "ca/key.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "store/store.h"

#define CRL_FILE_MAX ((size_t)256 << 20) /* about 5 million entries */

/* A CA as the revoker knows it: loaded once, freed with the revoker (pointers stay valid). */
struct rv_ca {
    struct ca_authority *ca;
    struct ca_key *key; /* NULL until a CRL must be signed */
    struct rv_ca *next;
};

struct issuance_revoker {
    const struct conf *conf;
    struct audit_log *audit;
    bool own_audit;
    char *passphrase_file;
    pthread_mutex_t lock; /* guards cas */
    struct rv_ca *cas;
};

struct issuance_revoker *issuance_revoker_new(const struct conf *c, struct audit_log *audit,
                                              const char *passphrase_file, struct err *e)
{
    struct issuance_revoker *rv = xcalloc(1, sizeof(*rv));
    rv->conf = c;
    rv->passphrase_file = passphrase_file ? xstrdup(passphrase_file) : NULL;
    pthread_mutex_init(&rv->lock, NULL);
    rv->audit = audit;
    if (audit == NULL) {
        rv->audit = audit_open_node(conf_audit_path(c), c->node_id, e);
        rv->own_audit = true;
        if (rv->audit == NULL) {
            issuance_revoker_free(rv);
            return NULL;
        }
    }
    return rv;
}

void issuance_revoker_free(struct issuance_revoker *rv)
{
    if (rv == NULL) {
        return;
    }
    while (rv->cas) {
        struct rv_ca *next = rv->cas->next;
        ca_key_free(rv->cas->key);
        ca_authority_free(rv->cas->ca);
        xfree(rv->cas);
        rv->cas = next;
    }
    if (rv->own_audit) {
        audit_close(rv->audit);
    }
    pthread_mutex_destroy(&rv->lock);
    xfree(rv->passphrase_file);
    xfree(rv);
}

static int load_key(struct issuance_revoker *rv, struct rv_ca *rc, struct err *e)
{
    struct buf secret = BUF_INIT;
    struct ca_key_opts ko = { NULL, rv->conf->pkcs11_module };
    int rc_ = -1;
    if (issuance_secret_load(rv->conf, rc->ca->key_uri, rv->passphrase_file, &secret, e) != 0) {
        goto out;
    }
    ko.secret = secret.len ? secret.data : NULL;
    rc->key = ca_key_load(rc->ca->key_uri, &ko, e);
    if (rc->key == NULL) {
        goto out;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(rc->ca->cert), ca_key_pkey(rc->key)) != 1) {
        ca_key_free(rc->key);
        rc->key = NULL;
        err_set(e, ERRC_INVALID, "the key of CA '%s' does not match its certificate", rc->ca->name);
        goto out;
    }
    rc_ = 0;
out:
    buf_release_secret(&secret);
    return rc_;
}

/* The CA named name, loaded on first use (with its key when need_key). */
static struct rv_ca *get_ca(struct issuance_revoker *rv, const char *name, bool need_key,
                            struct err *e)
{
    struct rv_ca *rc;
    pthread_mutex_lock(&rv->lock);
    for (rc = rv->cas; rc; rc = rc->next) {
        if (strcmp(rc->ca->name, name) == 0) {
            break;
        }
    }
    if (rc == NULL) {
        struct ca_authority *a = ca_authority_load(rv->conf->data_dir, name, e);
        if (a == NULL) {
            goto out;
        }
        if (a->cert == NULL) {
            err_set(e, ERRC_INVALID, "CA '%s' is %s and has no certificate yet", name,
                    ca_status_name(a->status));
            ca_authority_free(a);
            goto out;
        }
        rc = xcalloc(1, sizeof(*rc));
        rc->ca = a;
        rc->next = rv->cas;
        rv->cas = rc;
    }
    if (need_key && rc->key == NULL && load_key(rv, rc, e) != 0) {
        rc = NULL;
    }
out:
    pthread_mutex_unlock(&rv->lock);
    return rc;
}

int issuance_revoker_load_ca(struct issuance_revoker *rv, const char *ca, struct err *e)
{
    return get_ca(rv, ca, true, e) ? 0 : -1;
}

static void ca_file(const struct issuance_revoker *rv, const char *ca, const char *file,
                    struct buf *out)
{
    buf_reset(out);
    buf_addf(out, "%s/ca/%s/%s", rv->conf->data_dir, ca, file);
}

/* Takes the CA's lock; *fd is closed by ca_unlock. */
static int ca_lock(const struct issuance_revoker *rv, const char *ca, int *fd, struct err *e)
{
    struct buf path = BUF_INIT;
    int rc = -1;
    ca_file(rv, ca, "crl.lock", &path);
    *fd = open(path.data, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0) {
        err_errno(e, ERRC_UNAVAILABLE, "cannot open the lock '%s'", path.data);
        goto out;
    }
    while (flock(*fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            err_errno(e, ERRC_UNAVAILABLE, "cannot lock '%s'", path.data);
            close(*fd);
            *fd = -1;
            goto out;
        }
    }
    rc = 0;
out:
    buf_release(&path);
    return rc;
}

static void ca_unlock(int fd)
{
    if (fd >= 0) {
        close(fd); /* releases the flock */
    }
}

void issuance_crl_release(struct issuance_crl *crl)
{
    if (crl == NULL) {
        return;
    }
    buf_release(&crl->der);
    buf_release(&crl->pem);
    memset(crl, 0, sizeof(*crl));
}

/* Reads the published CRL of ca. ERRC_NOT_FOUND when there is none. */
static int crl_read(const struct issuance_revoker *rv, const char *ca, struct issuance_crl *out,
                    struct err *e)
{
    struct buf path = BUF_INIT;
    struct ca_crl_info info;
    int rc = -1;
    ca_file(rv, ca, "crl.der", &path);
    issuance_crl_release(out);
    if (file_read_all(path.data, CRL_FILE_MAX, &out->der, e) != 0) {
        goto out;
    }
    if (ca_crl_info_parse((const uint8_t *)out->der.data, out->der.len, &info, e) != 0) {
        err_prefix(e, "'%s'", path.data);
        goto out;
    }
    snprintf(out->ca, sizeof(out->ca), "%s", ca);
    out->number = info.number;
    out->this_update = info.this_update;
    out->next_update = info.next_update;
    out->entries = info.entries;
    ca_crl_der_to_pem(&out->pem, (const uint8_t *)out->der.data, out->der.len);
    rc = 0;
out:
    if (rc != 0) {
        issuance_crl_release(out);
    }
    buf_release(&path);
    return rc;
}

static bool crl_due(const struct issuance_crl *crl, time_t now)
{
    if (crl->next_update <= crl->this_update) {
        return true;
    }
    return now >= crl->this_update + (crl->next_update - crl->this_update) / 2;
}

static int reason_code(const char *name)
{
    for (int i = 0; i <= CA_CRL_AA_COMPROMISE; i++) {
        const char *n = ca_crl_reason_name(i);
        if (n && strcmp(n, name) == 0) {
            return i;
        }
    }
    return -1;
}

static int cmp_revoked_serial(const void *key, const void *elem)
{
    return strcmp(key, ((const struct store_revoked *)elem)->serial);
}

/* Revocation is permanent here but for a released hold (no removal of expired entries), so a
 * new CRL lists at least what the published one does, less the holds released since (the
 * index says valid with a release_seq). When the index lacks other serials, Redis lost data
 * and was not reindexed: publishing would un-revoke certificates. */
static bool released(struct store *s, const char *serial)
{
    struct store_cert_rec rec;
    struct err e = ERR_INIT;
    bool yes;
    if (store_cert_read(s, serial, &rec, &e) != 0) {
        return false;
    }
    yes = strcmp(rec.status, "valid") == 0 && store_cert_rec_field(&rec, "release_seq") != NULL;
    store_cert_rec_release(&rec);
    return yes;
}

static int check_superset(struct store *s, const struct issuance_crl *old,
                          const struct store_revoked *list, size_t n, const char *ca, struct err *e)
{
    struct buf serials = BUF_INIT;
    size_t missing = 0, total = 0;
    char first[48] = "";
    int rc = -1;
    if (ca_crl_serials((const uint8_t *)old->der.data, old->der.len, &serials, e) != 0) {
        err_prefix(e, "the published CRL of CA '%s'", ca);
        goto out;
    }
    for (char *l = serials.data; l && *l;) {
        char *nl = strchr(l, '\n');
        *nl = '\0';
        total++;
        if (bsearch(l, list, n, sizeof(*list), cmp_revoked_serial) == NULL && !released(s, l)) {
            if (missing++ == 0) {
                snprintf(first, sizeof(first), "%s", l);
            }
        }
        l = nl + 1;
    }
    if (missing) {
        err_set(e, ERRC_CONFLICT,
                "the index lacks %zu of the %zu serials the published CRL %llu of CA '%s' "
                "revokes (%s...): run 'jitrctl reindex' first; nothing published",
                missing, total, (unsigned long long)old->number, ca, first);
        goto out;
    }
    rc = 0;
out:
    buf_release(&serials);
    return rc;
}

/* Builds, audits and writes a new CRL of rc. The caller holds the CA's lock. */
static int crl_make_locked(struct issuance_revoker *rv, struct store *s, struct rv_ca *rc,
                           const char *requester, struct issuance_crl *out, struct err *e)
{
    const char *name = rc->ca->name;
    struct issuance_crl old = { 0 };
    struct err ignore = ERR_INIT;
    struct store_revoked *list = NULL;
    size_t n = 0;
    struct ca_crl_entry *entries = NULL;
    struct ca_crl_params p = { 0 };
    struct buf der = BUF_INIT, pem = BUF_INIT, path = BUF_INIT;
    char tu[24], nu[24], digest[65];
    json_t *rec = NULL;
    uint64_t floor = 1;
    int ret = -1;
    time_t now = time(NULL);

    if (crl_read(rv, name, &old, &ignore) == 0) {
        floor = old.number + 1;
    } else if (ignore.code != ERRC_NOT_FOUND) {
        log_warn("CA %s: the published CRL is unreadable (%s); numbering from Redis", name,
                 ignore.msg);
    }
    if (store_crl_number_next(s, name, floor, &p.number, e) != 0 ||
        store_revoked_list(s, name, &list, &n, e) != 0) {
        goto out;
    }
    if (old.der.len && check_superset(s, &old, list, n, name, e) != 0) {
        goto out;
    }
    entries = xcalloc(n ? n : 1, sizeof(*entries));
    for (size_t i = 0; i < n; i++) {
        int code = reason_code(list[i].reason);
        entries[i].serial_hex = list[i].serial;
        entries[i].reason = code;
        if (code < 0 || time_parse_rfc3339(list[i].revoked_at, &entries[i].revoked_at) != 0) {
            err_set(e, ERRC_INTERNAL,
                    "the index entry of revoked serial %s of CA '%s' is damaged (run 'jitrctl "
                    "reindex')",
                    list[i].serial, name);
            goto out;
        }
    }
    p.entries = entries;
    p.n = n;
    p.this_update = now;
    p.next_update = now + (time_t)rv->conf->crl_validity_hours * 3600;
    if (rc->key == NULL) {
        err_set(e, ERRC_INTERNAL, "the key of CA '%s' is not loaded", name);
        goto out;
    }
    if (ca_crl_build(rc->ca->cert, ca_key_pkey(rc->key), &p, &der, e) != 0) {
        err_prefix(e, "CA '%s'", name);
        goto out;
    }
    time_format_rfc3339(p.this_update, tu, sizeof(tu));
    time_format_rfc3339(p.next_update, nu, sizeof(nu));
    sha256_hex(der.data, der.len, digest);
    rec = json_pack("{s:s, s:s, s:I, s:s, s:s, s:I, s:s, s:s}", "type", "crl", "ca", name, "number",
                    (json_int_t)p.number, "this_update", tu, "next_update", nu, "entries",
                    (json_int_t)n, "sha256", digest, "requester", requester);
    if (audit_append(rv->audit, &rec, 1, NULL, e) != 0) {
        err_prefix(e, "CRL %llu of CA '%s' not published", (unsigned long long)p.number, name);
        goto out;
    }
    ca_crl_der_to_pem(&pem, (const uint8_t *)der.data, der.len);
    ca_file(rv, name, "crl.der", &path);
    if (file_write_atomic(path.data, der.data, der.len, 0644, false, e) != 0) {
        goto out;
    }
    ca_file(rv, name, "crl.pem", &path);
    if (file_write_atomic(path.data, pem.data, pem.len, 0644, false, e) != 0) {
        goto out;
    }
    log_info("CA %s: CRL %llu with %zu entries published (next update %s)", name,
             (unsigned long long)p.number, n, nu);
    if (out) {
        issuance_crl_release(out);
        snprintf(out->ca, sizeof(out->ca), "%s", name);
        out->number = p.number;
        out->this_update = p.this_update;
        out->next_update = p.next_update;
        out->entries = n;
        out->der = der;
        out->pem = pem;
        der = (struct buf)BUF_INIT;
        pem = (struct buf)BUF_INIT;
    }
    ret = 0;
out:
    json_decref(rec);
    buf_release(&der);
    buf_release(&pem);
    buf_release(&path);
    xfree(entries);
    store_revoked_free(list, n);
    issuance_crl_release(&old);
    return ret;
}

/* Regenerates ca's CRL (always, or only when due at now), under the CA's lock. out may be NULL;
 * *made says whether a new CRL was made. */
static int crl_publish(struct issuance_revoker *rv, struct store *s, const char *ca,
                       const char *requester, bool only_if_due, time_t now,
                       struct issuance_crl *out, bool *made, struct err *e)
{
    struct issuance_crl cur = { 0 };
    struct err ignore = ERR_INIT;
    struct rv_ca *rc = get_ca(rv, ca, false, e);
    int fd = -1, ret = -1;
    *made = false;
    if (rc == NULL) {
        return -1;
    }
    if (only_if_due && crl_read(rv, ca, &cur, &ignore) == 0 && !crl_due(&cur, now)) {
        goto current; /* the common case, without the lock */
    }
    if (ca_lock(rv, ca, &fd, e) != 0) {
        goto out;
    }
    err_clear(&ignore);
    if (only_if_due && crl_read(rv, ca, &cur, &ignore) == 0 && !crl_due(&cur, now)) {
        goto current; /* another thread or process made it while we waited */
    }
    if (get_ca(rv, ca, true, e) == NULL) {
        goto out;
    }
    if (crl_make_locked(rv, s, rc, requester, out, e) != 0) {
        goto out;
    }
    *made = true;
    ret = 0;
    goto out;
current:
    if (out) {
        issuance_crl_release(out);
        *out = cur;
        cur = (struct issuance_crl){ 0 };
    }
    ret = 0;
out:
    ca_unlock(fd);
    issuance_crl_release(&cur);
    return ret;
}

int issuance_crl_regenerate(struct issuance_revoker *rv, struct store *s, const char *ca,
                            const char *requester, struct issuance_crl *out, struct err *e)
{
    bool made;
    if (requester == NULL || *requester == '\0') {
        return err_set(e, ERRC_INVALID, "a CRL needs a requester");
    }
    return crl_publish(rv, s, ca, requester, false, time(NULL), out, &made, e);
}

int issuance_crl_get(struct issuance_revoker *rv, struct store *s, const char *ca,
                     const char *requester, struct issuance_crl *out, struct err *e)
{
    bool made;
    if (requester == NULL || *requester == '\0') {
        return err_set(e, ERRC_INVALID, "a CRL needs a requester");
    }
    return crl_publish(rv, s, ca, requester, true, time(NULL), out, &made, e);
}

int issuance_crl_refresh_if_due(struct issuance_revoker *rv, struct store *s, time_t now,
                                const char *requester, size_t *regenerated, struct err *e)
{
    char **names = NULL;
    size_t n = 0, made_n = 0;
    int ret = 0;
    if (requester == NULL || *requester == '\0') {
        return err_set(e, ERRC_INVALID, "a CRL needs a requester");
    }
    if (ca_authority_list(rv->conf->data_dir, &names, &n, e) != 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct err e1 = ERR_INIT;
        bool made = false;
        struct ca_authority *a = ca_authority_load(rv->conf->data_dir, names[i], &e1);
        bool has_cert = a && a->cert;
        ca_authority_free(a);
        if (has_cert && crl_publish(rv, s, names[i], requester, true, now, NULL, &made, &e1) != 0) {
            log_warn("CA %s: CRL not refreshed: %s", names[i], e1.msg);
        }
        if (e1.code != ERRC_OK && ret == 0) {
            err_copy(e, &e1);
            err_prefix(e, "CA '%s'", names[i]);
            ret = -1;
        }
        made_n += made ? 1 : 0;
        xfree(names[i]);
    }
    xfree(names);
    if (regenerated) {
        *regenerated = made_n;
    }
    return ret;
}

/* Looks the certificate up; fills r's out fields; *revoked when it is. */
static int cert_lookup(struct store *s, struct issuance_revocation *r, bool *revoked, struct err *e)
{
    struct store_cert_rec rec;
    if (store_cert_read(s, r->serial_hex, &rec, e) != 0) {
        return -1;
    }
    snprintf(r->ca_name, sizeof(r->ca_name), "%s", rec.ca);
    snprintf(r->fingerprint, sizeof(r->fingerprint), "%s", rec.fingerprint);
    *revoked = strcmp(rec.status, "revoked") == 0;
    if (*revoked) {
        snprintf(r->revoked_at, sizeof(r->revoked_at), "%s", rec.revoked_at);
        r->reason_recorded = reason_code(rec.reason);
        r->seq = rec.revoke_seq;
    }
    store_cert_rec_release(&rec);
    if (r->ca_name[0] == '\0') {
        return err_set(e, ERRC_INTERNAL,
                       "the index entry of serial %s has no CA (run 'jitrctl reindex')",
                       r->serial_hex);
    }
    return 0;
}

/* A certificate on hold is revoked again by a permanent reason (not by another hold). */
static bool superseded_hold(const struct issuance_revocation *r)
{
    return r->reason_recorded == CA_CRL_CERTIFICATE_HOLD && r->reason != CA_CRL_CERTIFICATE_HOLD;
}

int issuance_revoke(struct issuance_revoker *rv, struct store *s, struct issuance_revocation *r,
                    struct err *e)
{
    struct buf serial = BUF_INIT;
    struct rv_ca *rc = NULL;
    json_t *rec = NULL;
    bool revoked = false;
    int fd = -1, ret = -1;
    uint64_t seq = 0;
    const char *reason = ca_crl_reason_name((int)r->reason);
    enum store_revoke_result res = STORE_REVOKE_UNKNOWN;
    struct store_revocation sr;

    r->already_revoked = false;
    r->serial_hex[0] = r->ca_name[0] = r->fingerprint[0] = r->revoked_at[0] = '\0';
    r->reason_recorded = (int)r->reason;
    r->seq = 0;
    r->crl_written = false;
    r->crl_number = 0;
    err_clear(&r->crl_err);
    if (reason == NULL || r->reason == CA_CRL_REMOVE_FROM_CRL) {
        return err_set(e, ERRC_INVALID, "reason %d cannot be used to revoke (%s)", (int)r->reason,
                       reason ? reason : "unknown");
    }
    if (r->requester == NULL || *r->requester == '\0') {
        return err_set(e, ERRC_INVALID, "a revocation needs a requester");
    }
    if (r->serial == NULL || *r->serial == '\0') {
        return err_set(e, ERRC_INVALID, "no serial to revoke");
    }
    /* 1. which certificate */
    if (strlen(r->serial) == 64 && strspn(r->serial, "0123456789abcdefABCDEF") == 64) {
        char fp[65];
        for (size_t i = 0; i < 65; i++) {
            char c = r->serial[i];
            fp[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
        }
        if (store_serial_by_fingerprint(s, fp, &serial, e) != 0) {
            goto out;
        }
        snprintf(r->serial_hex, sizeof(r->serial_hex), "%s", buf_cstr(&serial));
    } else if (ca_serial_normalise(r->serial, r->serial_hex, e) != 0) {
        goto out;
    }
    if (cert_lookup(s, r, &revoked, e) != 0) {
        goto out;
    }
    if (r->ca && *r->ca && strcmp(r->ca, r->ca_name) != 0) {
        err_set(e, ERRC_INVALID, "serial %s was issued by CA '%s', not '%s'", r->serial_hex,
                r->ca_name, r->ca);
        goto out;
    }
    if (revoked && superseded_hold(r)) {
        revoked = false;
    }
    if (revoked) {
        r->already_revoked = true;
        ret = 0;
        goto out;
    }
    /* 2. the CA's key, then its lock, then look again */
    if ((rc = get_ca(rv, r->ca_name, true, e)) == NULL) {
        err_prefix(e, "nothing revoked");
        goto out;
    }
    if (ca_lock(rv, r->ca_name, &fd, e) != 0 || cert_lookup(s, r, &revoked, e) != 0) {
        goto out;
    }
    if (revoked && superseded_hold(r)) {
        revoked = false;
    }
    if (revoked) {
        r->already_revoked = true;
        ret = 0;
        goto out;
    }
    /* 3. audit */
    time_format_rfc3339(time(NULL), r->revoked_at, sizeof(r->revoked_at));
    rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "type", "revoke", "serial",
                    r->serial_hex, "fingerprint", r->fingerprint, "ca", r->ca_name, "reason",
                    reason, "revoked_at", r->revoked_at, "requester", r->requester);
    if (audit_append(rv->audit, &rec, 1, &seq, e) != 0) {
        err_prefix(e, "nothing revoked");
        goto out;
    }
    r->seq = seq;
    /* 4. index */
    sr = (struct store_revocation){ r->serial_hex, r->ca_name,        r->revoked_at, reason,
                                    seq,           rv->conf->node_id, time_now_ms(), false };
    if (store_certs_revoke(s, &sr, 1, &res, e) != 0) {
        err_prefix(e,
                   "serial %s: the revocation is audited but not indexed (run 'jitrctl "
                   "reindex')",
                   r->serial_hex);
        goto out;
    }
    if (res == STORE_REVOKE_UNKNOWN) {
        err_set(e, ERRC_INTERNAL,
                "serial %s: the revocation is audited but the index lost the certificate (run "
                "'jitrctl reindex')",
                r->serial_hex);
        goto out;
    }
    log_info("serial %s of CA %s revoked (%s) by %s", r->serial_hex, r->ca_name, reason,
             r->requester);
    ret = 0;
    /* 5. the CRL; its failure does not undo the revocation */
    {
        struct issuance_crl crl = { 0 };
        if (crl_make_locked(rv, s, rc, r->requester, &crl, &r->crl_err) == 0) {
            r->crl_written = true;
            r->crl_number = crl.number;
        } else {
            log_warn("serial %s revoked but the CRL of CA %s was not regenerated: %s",
                     r->serial_hex, r->ca_name, r->crl_err.msg);
        }
        issuance_crl_release(&crl);
    }
out:
    ca_unlock(fd);
    json_decref(rec);
    buf_release(&serial);
    return ret;
}

/* One chunk of issuance_revoke_bulk, under the CA's lock. */
#define NF 4 /* fields read per certificate */
static int bulk_chunk(struct issuance_revoker *rv, struct store *s, struct issuance_bulk *b,
                      const char *const *serials, size_t n, const char *reason, struct err *e)
{
    static const char *const fields[] = { "fingerprint", "status", "reason", "ca" };
    char **v = xcalloc(n * NF, sizeof(char *));
    json_t **recs = xcalloc(n, sizeof(json_t *));
    struct store_revocation *sr = xcalloc(n, sizeof(*sr));
    enum store_revoke_result *res = xcalloc(n, sizeof(*res));
    size_t k = 0;
    uint64_t seq = 0;
    char at[24];
    int rc = -1;
    time_format_rfc3339(time(NULL), at, sizeof(at));
    if (store_certs_fields(s, serials, n, fields, NF, v, e) != 0) {
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char **f = v + i * NF;
        if (f[0] == NULL || f[3] == NULL || strcmp(f[3], b->ca) != 0) {
            b->unknown++;
            continue;
        }
        if (f[1] && strcmp(f[1], "revoked") == 0 &&
            !(f[2] && strcmp(f[2], "certificateHold") == 0)) {
            b->already++;
            continue;
        }
        recs[k] = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "type", "revoke", "serial",
                            serials[i], "fingerprint", f[0], "ca", b->ca, "reason", reason,
                            "revoked_at", at, "requester", b->requester);
        sr[k] = (struct store_revocation){ serials[i],        b->ca,         at,   reason, 0,
                                           rv->conf->node_id, time_now_ms(), false };
        k++;
    }
    if (k == 0) {
        rc = 0;
        goto out;
    }
    if (audit_append(rv->audit, recs, k, &seq, e) != 0) {
        err_prefix(e, "%zu revocations not written", k);
        goto out;
    }
    for (size_t i = 0; i < k; i++) {
        sr[i].seq = seq + i;
    }
    if (store_certs_revoke(s, sr, k, res, e) != 0) {
        err_prefix(e,
                   "%zu revocations are audited but not indexed (run 'jitrctl reindex', then "
                   "this again)",
                   k);
        goto out;
    }
    for (size_t i = 0; i < k; i++) {
        b->revoked += res[i] == STORE_REVOKE_DONE;
        b->already += res[i] == STORE_REVOKE_ALREADY;
        b->unknown += res[i] == STORE_REVOKE_UNKNOWN;
    }
    rc = 0;
out:
    for (size_t i = 0; i < n * NF; i++) {
        xfree(v[i]);
    }
    for (size_t i = 0; i < k; i++) {
        json_decref(recs[i]);
    }
    xfree(v);
    xfree(recs);
    xfree(sr);
    xfree(res);
    return rc;
}

int issuance_revoke_bulk(struct issuance_revoker *rv, struct store *s, struct issuance_bulk *b,
                         struct err *e)
{
    const char *reason = ca_crl_reason_name((int)b->reason);
    struct rv_ca *rc = NULL;
    int fd = -1, ret = -1;
    b->revoked = b->already = b->unknown = 0;
    b->crl_written = false;
    b->crl_number = 0;
    err_clear(&b->crl_err);
    if (reason == NULL || b->reason == CA_CRL_REMOVE_FROM_CRL ||
        b->reason == CA_CRL_CERTIFICATE_HOLD) {
        return err_set(e, ERRC_INVALID, "reason %d cannot be used for a bulk revocation",
                       (int)b->reason);
    }
    if (b->requester == NULL || *b->requester == '\0') {
        return err_set(e, ERRC_INVALID, "a revocation needs a requester");
    }
    if ((rc = get_ca(rv, b->ca, true, e)) == NULL) {
        return err_prefix(e, "nothing revoked");
    }
    if (ca_lock(rv, b->ca, &fd, e) != 0) {
        return -1;
    }
    for (size_t i = 0; i < b->n; i += ISSUANCE_BULK_CHUNK) {
        size_t k = b->n - i < ISSUANCE_BULK_CHUNK ? b->n - i : ISSUANCE_BULK_CHUNK;
        if (bulk_chunk(rv, s, b, b->serials + i, k, reason, e) != 0) {
            goto out;
        }
        if (b->progress) {
            b->progress(b->arg, i + k, b->n);
        }
    }
    log_info("CA %s: %zu certificates revoked (%s) by %s, %zu revoked before", b->ca, b->revoked,
             reason, b->requester, b->already);
    ret = 0;
out:
    if (b->revoked > 0 || ret == 0) {
        struct issuance_crl crl = { 0 };
        if (crl_make_locked(rv, s, rc, b->requester, &crl, &b->crl_err) == 0) {
            b->crl_written = true;
            b->crl_number = crl.number;
        } else {
            log_warn("CA %s: %zu revoked but its CRL was not regenerated: %s", b->ca, b->revoked,
                     b->crl_err.msg);
        }
        issuance_crl_release(&crl);
    }
    ca_unlock(fd);
    return ret;
}

/* Which certificate r->serial names (a serial or a certificateId) into r->serial_hex. */
static int serial_of(struct store *s, struct issuance_revocation *r, struct err *e)
{
    struct buf serial = BUF_INIT;
    int rc = 0;
    if (strlen(r->serial) == 64 && strspn(r->serial, "0123456789abcdefABCDEF") == 64) {
        char fp[65];
        for (size_t i = 0; i < 65; i++) {
            char c = r->serial[i];
            fp[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
        }
        rc = store_serial_by_fingerprint(s, fp, &serial, e);
        if (rc == 0) {
            snprintf(r->serial_hex, sizeof(r->serial_hex), "%s", buf_cstr(&serial));
        }
    } else {
        rc = ca_serial_normalise(r->serial, r->serial_hex, e);
    }
    buf_release(&serial);
    return rc;
}

int issuance_release(struct issuance_revoker *rv, struct store *s, struct issuance_revocation *r,
                     struct err *e)
{
    struct rv_ca *rc = NULL;
    json_t *rec = NULL;
    bool revoked = false;
    int fd = -1, ret = -1;
    uint64_t seq = 0;
    enum store_revoke_result res = STORE_REVOKE_UNKNOWN;
    struct store_revocation sr;
    char released_at[24];

    r->already_revoked = false;
    r->serial_hex[0] = r->ca_name[0] = r->fingerprint[0] = r->revoked_at[0] = '\0';
    r->reason_recorded = -1;
    r->seq = 0;
    r->crl_written = false;
    r->crl_number = 0;
    err_clear(&r->crl_err);
    if (r->requester == NULL || *r->requester == '\0') {
        return err_set(e, ERRC_INVALID, "a release needs a requester");
    }
    if (r->serial == NULL || *r->serial == '\0') {
        return err_set(e, ERRC_INVALID, "no serial to release");
    }
    if (serial_of(s, r, e) != 0 || cert_lookup(s, r, &revoked, e) != 0) {
        goto out;
    }
    if (r->ca && *r->ca && strcmp(r->ca, r->ca_name) != 0) {
        err_set(e, ERRC_INVALID, "serial %s was issued by CA '%s', not '%s'", r->serial_hex,
                r->ca_name, r->ca);
        goto out;
    }
    if ((rc = get_ca(rv, r->ca_name, true, e)) == NULL) {
        err_prefix(e, "nothing released");
        goto out;
    }
    if (ca_lock(rv, r->ca_name, &fd, e) != 0 || cert_lookup(s, r, &revoked, e) != 0) {
        goto out;
    }
    if (!revoked || r->reason_recorded != CA_CRL_CERTIFICATE_HOLD) {
        err_set(e, ERRC_CONFLICT,
                "serial %s is not on hold (%s): only a certificateHold is "
                "released",
                r->serial_hex, revoked ? "revoked for good" : "valid");
        goto out;
    }
    time_format_rfc3339(time(NULL), released_at, sizeof(released_at));
    rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "release", "serial", r->serial_hex,
                    "fingerprint", r->fingerprint, "ca", r->ca_name, "released_at", released_at,
                    "requester", r->requester);
    if (audit_append(rv->audit, &rec, 1, &seq, e) != 0) {
        err_prefix(e, "nothing released");
        goto out;
    }
    r->seq = seq;
    sr = (struct store_revocation){ r->serial_hex,     r->ca_name,    "",   "", seq,
                                    rv->conf->node_id, time_now_ms(), false };
    if (store_certs_release(s, &sr, 1, &res, e) != 0 || res != STORE_REVOKE_DONE) {
        if (res != STORE_REVOKE_DONE && e->code == ERRC_OK) {
            err_set(e, ERRC_INTERNAL, "the index changed under the CA's lock");
        }
        err_prefix(e,
                   "serial %s: the release is audited but not indexed (run 'jitrctl "
                   "reindex')",
                   r->serial_hex);
        goto out;
    }
    log_info("serial %s of CA %s released from hold by %s", r->serial_hex, r->ca_name,
             r->requester);
    ret = 0;
    {
        struct issuance_crl crl = { 0 };
        if (crl_make_locked(rv, s, rc, r->requester, &crl, &r->crl_err) == 0) {
            r->crl_written = true;
            r->crl_number = crl.number;
        } else {
            log_warn("serial %s released but the CRL of CA %s was not regenerated: %s",
                     r->serial_hex, r->ca_name, r->crl_err.msg);
        }
        issuance_crl_release(&crl);
    }
out:
    ca_unlock(fd);
    json_decref(rec);
    return ret;
}

/* The node that wrote an audit record ("" on a node without node_id) and its time in ms since
 * the epoch ("ts", 2026-11-26T05:31:37.123Z; 0 when unreadable: counted as now). */
static const char *record_node(json_t *rec)
{
    const char *n = json_string_value(json_object_get(rec, "node"));
    return n ? n : "";
}

int64_t issuance_record_ms(json_t *rec)
{
    const char *ts = json_string_value(json_object_get(rec, "ts"));
    char sec[21];
    time_t t;
    int64_t ms = 0;
    if (ts == NULL || strlen(ts) < 20) {
        return 0;
    }
    snprintf(sec, sizeof(sec), "%.19sZ", ts);
    if (time_parse_rfc3339(sec, &t) != 0) {
        return 0;
    }
    if (ts[19] == '.') {
        for (int i = 20; i < 23 && ts[i] >= '0' && ts[i] <= '9'; i++) {
            ms = ms * 10 + (ts[i] - '0');
        }
    }
    return (int64_t)t * 1000 + ms;
}

int issuance_release_from_record(json_t *rec, uint64_t seq, struct store_revocation *out,
                                 struct err *e)
{
    const char *serial = json_string_value(json_object_get(rec, "serial"));
    const char *ca = json_string_value(json_object_get(rec, "ca"));
    if (serial == NULL || !hex_is_lower(serial, strlen(serial)) || strlen(serial) > 40 ||
        serial[0] == '\0' || ca == NULL || ca[0] == '\0') {
        return err_set(e, ERRC_INVALID, "release record seq %llu: bad or missing serial or ca",
                       (unsigned long long)seq);
    }
    *out = (struct store_revocation){
        serial, ca, "", "", seq, record_node(rec), issuance_record_ms(rec), false
    };
    return 0;
}

int issuance_revocation_from_record(json_t *rec, uint64_t seq, struct store_revocation *out,
                                    struct err *e)
{
    static const char *const fields[] = { "serial", "ca", "revoked_at", "reason" };
    const char *v[ARRAY_LEN(fields)];
    time_t t;
    for (size_t i = 0; i < ARRAY_LEN(fields); i++) {
        v[i] = json_string_value(json_object_get(rec, fields[i]));
        if (v[i] == NULL || *v[i] == '\0') {
            return err_set(e, ERRC_INVALID, "revoke record seq %llu has no '%s'",
                           (unsigned long long)seq, fields[i]);
        }
    }
    if (!hex_is_lower(v[0], strlen(v[0])) || strlen(v[0]) > 40) {
        return err_set(e, ERRC_INVALID, "revoke record seq %llu: bad serial '%.80s'",
                       (unsigned long long)seq, v[0]);
    }
    if (time_parse_rfc3339(v[2], &t) != 0) {
        return err_set(e, ERRC_INVALID, "revoke record seq %llu: bad revoked_at '%.40s'",
                       (unsigned long long)seq, v[2]);
    }
    if (reason_code(v[3]) < 0) {
        return err_set(e, ERRC_INVALID, "revoke record seq %llu: unknown reason '%.40s'",
                       (unsigned long long)seq, v[3]);
    }
    *out = (struct store_revocation){
        v[0], v[1], v[2], v[3], seq, record_node(rec), issuance_record_ms(rec), false
    };
    return 0;
}
