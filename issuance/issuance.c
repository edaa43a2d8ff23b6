/*
 * The issuance sequence (see issuance.h). Everything that touches the network or the disk is
 * batched: one Redis round trip to reserve the serials, one group-committed audit append, one
 * Redis round trip to index. The audit append comes before the index and before anything is
 * returned: the audit log is the record of what was issued, Redis can be rebuilt from it.
 */
#include "issuance/issuance.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "store/store.h"

#define SERIAL_TRIES 4

struct issuance_worker {
    const struct issuance_ctx *ctx;
    struct ca_signer *signer;
    struct store *store;
    struct audit_batch recs; /* reused by every run */
};

int issuance_secret_load(const struct conf *c, const char *key_uri, const char *passphrase_file,
                         struct buf *out, struct err *e)
{
    if (str_has_prefix(key_uri, "pkcs11:")) {
        const char *pin = *c->pkcs11_pin_env ? getenv(c->pkcs11_pin_env) : NULL;
        if (pin) {
            buf_addstr(out, pin);
        }
        return 0;
    }
    const char *file = passphrase_file && *passphrase_file ? passphrase_file
                                                           : c->key_passphrase_file;
    if (file && *file) {
        if (file_read_all(file, 4096, out, e) != 0) {
            return err_prefix(e, "passphrase file");
        }
        while (out->len && (out->data[out->len - 1] == '\n' || out->data[out->len - 1] == '\r')) {
            out->data[--out->len] = '\0';
        }
        return 0;
    }
    const char *env = *c->key_passphrase_env ? getenv(c->key_passphrase_env) : NULL;
    if (env) {
        buf_addstr(out, env);
    }
    return 0;
}

bool issuance_ca_exists(const struct conf *c, const char *name)
{
    struct buf p = BUF_INIT;
    buf_addf(&p, "%s/ca/%s/ca.json", c->data_dir, name);
    bool there = strchr(name, '/') == NULL && file_exists(p.data);
    buf_release(&p);
    return there;
}

int issuance_aliases_load(const struct conf *c, struct issuance_aliases *out, struct err *e)
{
    struct store *s = store_connect(c->redis_url, e);
    memset(out, 0, sizeof(*out));
    if (s == NULL) {
        return err_prefix(e, "issuing aliases");
    }
    int rc = store_alias_all(s, &out->names, &out->cas, &out->n, &out->gen, e);
    store_free(s);
    return rc == 0 ? 0 : err_prefix(e, "issuing aliases");
}

const char *issuance_alias_target(const struct issuance_aliases *a, const char *name)
{
    for (size_t i = 0; a && i < a->n; i++) {
        if (strcmp(a->names[i], name) == 0) {
            return a->cas[i];
        }
    }
    return NULL;
}

void issuance_aliases_release(struct issuance_aliases *a)
{
    store_alias_free(a->names, a->cas, a->n);
    memset(a, 0, sizeof(*a));
}

/* name itself when it is a CA of the store, else the CA of the alias name. */
static char *ca_or_alias(const struct conf *c, const char *name, struct err *e)
{
    struct issuance_aliases al;
    char *out = NULL;
    struct err bad = ERR_INIT;
    if (issuance_ca_exists(c, name) || ca_name_check(name, &bad) != 0) {
        return xstrdup(name); /* loading it says what is wrong */
    }
    if (issuance_aliases_load(c, &al, e) != 0) {
        return NULL;
    }
    const char *t = issuance_alias_target(&al, name);
    out = xstrdup(t ? t : name);
    issuance_aliases_release(&al);
    return out;
}

char *issuance_ca_pick(const struct conf *c, const char *name, struct err *e)
{
    if (name && *name) {
        return ca_or_alias(c, name, e);
    }
    if (*c->default_ca) {
        return ca_or_alias(c, c->default_ca, e);
    }
    char **names = NULL;
    size_t n = 0;
    if (ca_authority_list(c->data_dir, &names, &n, e) != 0) {
        return NULL;
    }
    char *pick = NULL;
    size_t active = 0;
    struct buf list = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        struct err ignore = ERR_INIT;
        struct ca_authority *a = ca_authority_load(c->data_dir, names[i], &ignore);
        if (a && a->status == CA_ST_ACTIVE) {
            active++;
            buf_addf(&list, "%s%s", list.len ? ", " : "", names[i]);
            if (pick == NULL) {
                pick = xstrdup(names[i]);
            }
        }
        ca_authority_free(a);
        xfree(names[i]);
    }
    xfree(names);
    if (active == 0) {
        err_set(e, ERRC_NOT_FOUND, "no active CA in '%s': create one with 'jitrctl ca init NAME'",
                c->data_dir);
        xfree(pick);
        pick = NULL;
    } else if (active > 1) {
        err_set(e, ERRC_INVALID, "several active CAs (%s): name one with --ca", buf_cstr(&list));
        xfree(pick);
        pick = NULL;
    }
    buf_release(&list);
    return pick;
}

struct issuance_ctx *issuance_ctx_open(const struct conf *c, const char *ca_name,
                                       const char *passphrase_file, struct err *e)
{
    struct issuance_ctx *ctx = xcalloc(1, sizeof(*ctx));
    struct buf secret = BUF_INIT;
    struct ca_key_opts ko = { NULL, c->pkcs11_module };
    char *name = issuance_ca_pick(c, ca_name, e);
    ctx->conf = c;
    if (name == NULL) {
        goto fail;
    }
    ctx->ca = ca_authority_load(c->data_dir, name, e);
    if (ctx->ca == NULL) {
        goto fail;
    }
    if (ctx->ca->status != CA_ST_ACTIVE || ca_authority_compromised(ctx->ca)) {
        err_set(e, ERRC_DENIED, "CA '%s' is %s and issues nothing", name,
                ca_authority_compromised(ctx->ca) ? "compromised"
                                                  : ca_status_name(ctx->ca->status));
        goto fail;
    }
    if (issuance_secret_load(c, ctx->ca->key_uri, passphrase_file, &secret, e) != 0) {
        goto fail;
    }
    ko.secret = secret.len ? secret.data : NULL;
    ctx->key = ca_key_load(ctx->ca->key_uri, &ko, e);
    if (ctx->key == NULL) {
        goto fail;
    }
    ctx->issuer = ca_issuer_new(ctx->ca->cert, ca_key_pkey(ctx->key), ca_key_is_hsm(ctx->key), e);
    if (ctx->issuer == NULL) {
        goto fail;
    }
    if (ca_authority_chain_pem(c->data_dir, ctx->ca, &ctx->chain_pem, e) != 0) {
        goto fail;
    }
    ctx->profiles = ca_profiles_load_dir(c->profiles_dir, e);
    if (ctx->profiles == NULL) {
        goto fail;
    }
    ctx->audit = audit_open_node(conf_audit_path(c), c->node_id, e);
    if (ctx->audit == NULL) {
        goto fail;
    }
    buf_release_secret(&secret);
    xfree(name);
    return ctx;
fail:
    buf_release_secret(&secret);
    xfree(name);
    issuance_ctx_free(ctx);
    return NULL;
}

void issuance_ctx_free(struct issuance_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    audit_close(ctx->audit);
    ca_profiles_free(ctx->profiles);
    ca_issuer_free(ctx->issuer);
    ca_key_free(ctx->key);
    ca_authority_free(ctx->ca);
    buf_release(&ctx->chain_pem);
    xfree(ctx);
}

struct issuance_worker *issuance_worker_new(const struct issuance_ctx *ctx, struct err *e)
{
    struct issuance_worker *w = xcalloc(1, sizeof(*w));
    w->ctx = ctx;
    w->signer = ca_signer_new();
    w->store = store_connect(ctx->conf->redis_url, e);
    if (w->store == NULL) {
        issuance_worker_free(w);
        return NULL;
    }
    return w;
}

void issuance_worker_free(struct issuance_worker *w)
{
    if (w == NULL) {
        return;
    }
    store_free(w->store);
    ca_signer_free(w->signer);
    audit_batch_release(&w->recs);
    xfree(w);
}

void issuance_item_release(struct issuance_item *it)
{
    ca_issued_release(&it->cert);
    it->issued = false;
}

int issuance_sign_one(const struct issuance_ctx *ctx, const uint8_t *csr, size_t len,
                      const char *profile, const char *what, struct issuance_item *it,
                      struct err *e)
{
    char who[300];
    int rc = -1;
    struct issuance_worker *w = issuance_worker_new(ctx, e);
    if (w == NULL) {
        return -1;
    }
    issuance_cli_requester(who, sizeof(who));
    *it = (struct issuance_item){ .csr = csr, .csr_len = len, .profile = profile,
                                  .requester = who };
    if (issuance_run(w, it, 1, e) == 0) {
        if (it->issued) {
            rc = 0;
        } else {
            err_copy(e, &it->err);
            err_prefix(e, "%s", what);
        }
    }
    it->requester = NULL;
    issuance_worker_free(w);
    return rc;
}

void issuance_cli_requester(char *out, size_t cap)
{
    char host[256] = "localhost";
    struct passwd pw, *res = NULL;
    char pwbuf[1024];
    const char *user = "unknown";
    if (getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res) {
        user = res->pw_name;
    }
    if (gethostname(host, sizeof(host) - 1) != 0) {
        snprintf(host, sizeof(host), "localhost");
    }
    host[sizeof(host) - 1] = '\0';
    snprintf(out, cap, "cli:%s@%s", user, host);
}

/* The audit records, their members in key order (audit_batch_str's contract). */
static void record_reject(struct audit_batch *ab, const struct issuance_ctx *ctx,
                          const struct issuance_item *it, const char *profile)
{
    char csrfp[65];
    sha256_hex(it->csr, it->csr_len, csrfp);
    audit_batch_begin(ab);
    audit_batch_str(ab, "ca", ctx->ca->name);
    audit_batch_str(ab, "code", err_code_name(it->err.code));
    audit_batch_str(ab, "csr_sha256", csrfp);
    if (it->device) {
        audit_batch_str(ab, "device", it->device);
    }
    audit_batch_str(ab, "profile", profile);
    audit_batch_text(ab, "reason", it->err.msg);
    audit_batch_str(ab, "requester", it->requester);
    if (it->source) {
        audit_batch_str(ab, "source", it->source);
    }
    if (it->token) {
        audit_batch_str(ab, "token", it->token);
    }
    audit_batch_str(ab, "type", "reject");
    audit_batch_end(ab);
}

static void record_issue(struct audit_batch *ab, const struct issuance_ctx *ctx,
                         const struct issuance_item *it, const char *profile, const char *nb,
                         const char *issued_at, const char *der_b64)
{
    audit_batch_begin(ab);
    audit_batch_str(ab, "ca", ctx->ca->name);
    audit_batch_str(ab, "cn", it->cn);
    audit_batch_str(ab, "der", der_b64);
    if (it->device) {
        audit_batch_str(ab, "device", it->device);
    }
    audit_batch_str(ab, "fingerprint", it->cert.fingerprint);
    audit_batch_str(ab, "issued_at", issued_at);
    audit_batch_str(ab, "not_after", it->not_after);
    audit_batch_str(ab, "not_before", nb);
    audit_batch_str(ab, "profile", profile);
    if (it->renews && it->renews[0]) {
        audit_batch_str(ab, "renews", it->renews);
    }
    audit_batch_str(ab, "requester", it->requester);
    audit_batch_str(ab, "serial", it->cert.serial_hex);
    if (it->source) {
        audit_batch_str(ab, "source", it->source);
    }
    audit_batch_str(ab, "subject", it->subject);
    if (it->token) {
        audit_batch_str(ab, "token", it->token);
    }
    audit_batch_str(ab, "type", "issue");
    if (it->validity_clamped) {
        audit_batch_str(ab, "validity", "clamped to the CA's notAfter");
    }
    audit_batch_end(ab);
}

/* Per-item working state of one batch. */
struct slot {
    struct ca_prepared pr;
    bool prepared;
    const char *profile;
    uint8_t serial[CA_SERIAL_MAX];
    size_t serial_len;
    char serial_hex[2 * CA_SERIAL_MAX + 1];
    char not_before[24];
    struct buf der_b64;
};

/* Draws serials for every prepared slot and reserves them; redraws the (astronomically rare)
 * serials that were already taken. */
static int reserve_serials(struct issuance_worker *w, struct slot *slots, size_t n,
                           struct err *e)
{
    const char **hex = xcalloc(n ? n : 1, sizeof(char *));
    bool *taken = xcalloc(n ? n : 1, sizeof(bool));
    size_t *idx = xcalloc(n ? n : 1, sizeof(size_t));
    int rc = -1;
    size_t pending = 0;
    for (size_t i = 0; i < n; i++) {
        if (slots[i].prepared) {
            idx[pending++] = i;
        }
    }
    for (int attempt = 0; pending > 0; attempt++) {
        if (attempt == SERIAL_TRIES) {
            err_set(e, ERRC_INTERNAL, "could not draw a free serial in %d attempts",
                    SERIAL_TRIES);
            goto out;
        }
        for (size_t k = 0; k < pending; k++) {
            struct slot *sl = &slots[idx[k]];
            if (ca_serial_draw(w->signer, sl->serial, &sl->serial_len, e) != 0) {
                goto out;
            }
            hex_encode(sl->serial, sl->serial_len, sl->serial_hex);
            hex[k] = sl->serial_hex;
        }
        if (store_serials_reserve(w->store, w->ctx->ca->name, hex, pending, taken, e) != 0) {
            goto out;
        }
        size_t left = 0;
        for (size_t k = 0; k < pending; k++) {
            if (taken[k]) {
                log_warn("serial %s already reserved; drawing again", hex[k]);
                idx[left++] = idx[k];
            }
        }
        pending = left;
    }
    rc = 0;
out:
    xfree(hex);
    xfree(taken);
    xfree(idx);
    return rc;
}

/* The log's warning that the CA's notAfter cut certificates short (each one's audit record
 * says so): at most once a minute per process, a busy line would repeat it per batch. */
static void clamp_warn(const struct issuance_ctx *ctx, size_t n)
{
    static _Atomic int64_t last_ms;
    int64_t now = time_now_ms(), last = atomic_load(&last_ms);
    char na[32] = "?";
    struct tm tm;
    if (now - last < 60000 || !atomic_compare_exchange_strong(&last_ms, &last, now)) {
        return;
    }
    if (ctx->ca->cert && ASN1_TIME_to_tm(X509_get0_notAfter(ctx->ca->cert), &tm) == 1) {
        strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    log_warn("CA '%s' expires at %s: %zu certificate(s) just issued end then, before their "
             "profile's validity (rotate the CA: jitrctl ca rotate; a profile with \"beyond_ca\": "
             "\"refuse\" refuses them instead)",
             ctx->ca->name, na, n);
}

int issuance_run(struct issuance_worker *w, struct issuance_item *items, size_t n, struct err *e)
{
    const struct issuance_ctx *ctx = w->ctx;
    struct slot *slots = xcalloc(n ? n : 1, sizeof(*slots));
    struct store_cert *idx = xcalloc(n ? n : 1, sizeof(*idx));
    char issued_at[40], nb_fmt[sizeof(slots->not_before)] = "",
                        na_fmt[sizeof(items->not_after)] = "";
    time_t nb_t = 0, na_t = 0;
    size_t nidx = 0, clamped = 0;
    uint64_t first_seq = 0;
    int rc = -1;
    time_t now = time(NULL);
    time_format_rfc3339(now, issued_at, sizeof(issued_at));

    /* 1. prepare: pure, per item */
    for (size_t i = 0; i < n; i++) {
        struct issuance_item *it = &items[i];
        struct slot *sl = &slots[i];
        it->issued = false;
        err_clear(&it->err);
        sl->profile = it->profile && *it->profile ? it->profile : ctx->conf->default_profile;
        const struct ca_profile *p = ca_profiles_find(ctx->profiles, sl->profile);
        if (p == NULL) {
            err_set(&it->err, ERRC_INVALID, "unknown profile '%s'", sl->profile);
            continue;
        }
        if (ca_prepare_cn(w->signer, ctx->issuer, p, it->csr, it->csr_len, now, it->cn_forced,
                          &sl->pr, &it->err) != 0) {
            continue;
        }
        sl->prepared = true;
    }
    /* 2. serials */
    if (reserve_serials(w, slots, n, e) != 0) {
        goto out;
    }
    /* 3. sign */
    for (size_t i = 0; i < n; i++) {
        struct issuance_item *it = &items[i];
        struct slot *sl = &slots[i];
        if (!sl->prepared) {
            continue;
        }
        if (ca_sign(w->signer, ctx->issuer, &sl->pr, sl->serial, sl->serial_len, &it->cert,
                    &it->err) != 0) {
            continue;
        }
        it->issued = true;
        it->validity_clamped = sl->pr.validity_clamped;
        clamped += it->validity_clamped;
        snprintf(it->subject, sizeof(it->subject), "%s", sl->pr.subject);
        snprintf(it->cn, sizeof(it->cn), "%s", sl->pr.cn);
        /* the items of a batch mostly share their validity: format each time once */
        if (nb_fmt[0] == '\0' || sl->pr.not_before != nb_t) {
            nb_t = sl->pr.not_before;
            time_format_rfc3339(nb_t, nb_fmt, sizeof(nb_fmt));
        }
        if (na_fmt[0] == '\0' || sl->pr.not_after != na_t) {
            na_t = sl->pr.not_after;
            time_format_rfc3339(na_t, na_fmt, sizeof(na_fmt));
        }
        snprintf(sl->not_before, sizeof(sl->not_before), "%s", nb_fmt);
        snprintf(it->not_after, sizeof(it->not_after), "%s", na_fmt);
        base64_encode(&sl->der_b64, it->cert.der, it->cert.der_len);
    }
    /* 4. audit, durably, before anything is handed out */
    audit_batch_reset(&w->recs);
    for (size_t i = 0; i < n; i++) {
        struct issuance_item *it = &items[i];
        if (it->issued) {
            record_issue(&w->recs, ctx, it, slots[i].profile, slots[i].not_before, issued_at,
                         buf_cstr(&slots[i].der_b64));
        } else {
            record_reject(&w->recs, ctx, it, slots[i].profile);
        }
    }
    if (audit_append_batch(ctx->audit, &w->recs, &first_seq, e) != 0) {
        goto out;
    }
    /* 5. index */
    for (size_t i = 0; i < n; i++) {
        struct issuance_item *it = &items[i];
        if (!it->issued) {
            continue;
        }
        idx[nidx++] = (struct store_cert){
            .serial = it->cert.serial_hex,
            .fingerprint = it->cert.fingerprint,
            .subject = it->subject,
            .cn = it->cn,
            .profile = slots[i].profile,
            .ca = ctx->ca->name,
            .requester = it->requester,
            .not_before = slots[i].not_before,
            .not_after = it->not_after,
            .issued_at = issued_at,
            .status = "valid",
            .der_b64 = buf_cstr(&slots[i].der_b64),
            .seq = first_seq + i,
            .renews = it->renews,
        };
    }
    if (store_certs_index(w->store, idx, nidx, e) != 0) {
        err_prefix(e, "certificates were audited but not indexed (run 'jitrctl reindex')");
        goto out;
    }
    if (clamped > 0) {
        clamp_warn(ctx, clamped);
    }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++) {
        if (slots[i].prepared) {
            ca_prepared_release(&slots[i].pr);
        }
        buf_release(&slots[i].der_b64);
        if (rc != 0) {
            issuance_item_release(&items[i]);
        }
    }
    xfree(idx);
    xfree(slots);
    return rc;
}

int issuance_audit_ca_op(const struct conf *c, const char *type, const char *ca, json_t *fields,
                         struct err *e)
{
    char who[300];
    issuance_cli_requester(who, sizeof(who));
    json_t *rec = fields ? json_deep_copy(fields) : json_object();
    json_object_set_new(rec, "type", json_string(type));
    json_object_set_new(rec, "ca", json_string(ca));
    json_object_set_new(rec, "requester", json_string(who));
    struct audit_log *log = audit_open_node(conf_audit_path(c), c->node_id, e);
    int rc = -1;
    if (log && audit_append(log, &rec, 1, NULL, e) == 0) {
        rc = 0;
    }
    audit_close(log);
    json_decref(rec);
    return rc;
}

int issuance_index_from_record(json_t *rec, uint64_t seq, struct store_cert *out, struct err *e)
{
    static const char *const fields[] = { "serial",    "fingerprint", "subject",    "cn",
                                          "profile",   "ca",          "requester",  "not_before",
                                          "not_after", "issued_at",   "der" };
    const char *v[ARRAY_LEN(fields)];
    for (size_t i = 0; i < ARRAY_LEN(fields); i++) {
        v[i] = json_string_value(json_object_get(rec, fields[i]));
        if (v[i] == NULL) {
            return err_set(e, ERRC_INVALID, "issue record seq %llu has no '%s'",
                           (unsigned long long)seq, fields[i]);
        }
    }
    *out = (struct store_cert){
        .serial = v[0],
        .fingerprint = v[1],
        .subject = v[2],
        .cn = v[3],
        .profile = v[4],
        .ca = v[5],
        .requester = v[6],
        .not_before = v[7],
        .not_after = v[8],
        .issued_at = v[9],
        .der_b64 = v[10],
        .status = "valid",
        .seq = seq,
        /* an EST re-enrollment: the index marks the renewed certificate superseded */
        .renews = json_string_value(json_object_get(rec, "renews")),
    };
    return 0;
}
