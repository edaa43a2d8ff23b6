/*
 * jitrctl ca alias set|list and jitrctl ca rotate: issuing aliases and the rotation of the CA an
 * alias names (docs/operations.md, "Rotating the issuing CA").
 *
 * An alias (say "devices") names one CA at a time; stations, default_ca, --ca and requests may
 * name the alias. The mapping is written to the audit log (record ca_alias) before Redis
 * (store_alias_set: the hash, a generation every jitrd worker watches, a PUBLISH). A CA name
 * wins over an alias of the same name.
 *
 * A rotation takes these steps, each audited, each skipped when a run before did it, so an
 * interrupted rotation is finished by running the same command again:
 *   1. begin     the old CA's ca.json "rotation": {alias, to, started} (audit ca_rotate_begin)
 *   2. create    the new CA: same parent, key type, validity and subject pattern unless told
 *   3. register  in AWS IoT like the old one (mode, auto-registration), when the old one is
 *   4. switch    the alias (audit ca_alias)
 *   5. retire    the old CA signs nothing more (audit ca_retire); AWS IoT keeps it ACTIVE with
 *                auto-registration as it was: the devices it signed may still be in warehouses
 *   6. done      "rotation" replaced by "rotated_to" (audit ca_rotate)
 */
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca/authority.h"
#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "store/store.h"

static const char alias_usage[] =
    "usage: jitrctl ca alias set ALIAS CA\n"
    "       jitrctl ca alias list\n"
    "An issuing alias names one active CA at a time. Stations (\"cas\"), default_ca, --ca and\n"
    "requests may name it; every jitrd switches to the new CA within 2 seconds of 'set', and\n"
    "requests in flight finish with the CA they started with. A CA of the same name wins over\n"
    "an alias.\n";

static const char rotate_usage[] =
    "usage: jitrctl ca rotate ALIAS [--to NEW] [--parent P] [--key-type T] [--key URI]\n"
    "                         [--subject S] [--days N] [--before DAYS]\n"
    "                         [--parent-passphrase-file FILE]\n"
    "Creates NEW (default: the current CA's name with its number raised, e.g. acme-devices-2\n"
    "after acme-devices-1) with the current CA's parent, key type, validity and subject (its CN's\n"
    "number raised) unless told otherwise, registers it in AWS IoT as the current CA is (same\n"
    "mode, auto-registration), switches ALIAS to it and retires the current CA: it signs nothing\n"
    "more, but stays ACTIVE in AWS IoT with auto-registration as it was, for the devices it\n"
    "signed. Every step is audited; an interrupted rotation is finished by running the same\n"
    "command again. An existing active CA named by --to is used as it is.\n"
    "  --before DAYS   rotate only when the current CA expires within DAYS days (for a timer)\n";

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* Whole days from now to the certificate's notAfter (negative once expired). */
static int days_left(X509 *cert)
{
    int days = 0, secs = 0;
    ASN1_TIME *t = ASN1_TIME_set(NULL, time(NULL));
    if (t == NULL || ASN1_TIME_diff(&days, &secs, t, X509_get0_notAfter(cert)) != 1) {
        days = 0;
    }
    ASN1_TIME_free(t);
    return days;
}

#define PREPARE_WAIT_MS 30000

/* A coming switch of alias to ca: every live jitrd worker loads ca (alias:next) before it is
 * used; waits until each has (alias:seen:*), at most PREPARE_WAIT_MS. */
static void alias_prepare(struct store *s, const char *alias, const char *ca, bool quiet)
{
    struct err e = ERR_INIT;
    char **n = NULL, **c = NULL;
    size_t k = 0, workers = 0;
    uint64_t gen = 0, min = 0;
    int64_t until = time_now_ms() + PREPARE_WAIT_MS;
    if (store_alias_prepare(s, alias, ca, &e) != 0 ||
        store_alias_next(s, &n, &c, &k, &gen, &e) != 0) {
        fprintf(stderr, "jitrctl: warning: cannot prepare jitrd for CA '%s': %s\n", ca, e.msg);
        return;
    }
    store_alias_free(n, c, k);
    while (store_alias_seen(s, &min, &workers, &e) == 0 && workers > 0 && min < gen &&
           time_now_ms() < until) {
        struct timespec ts = { 0, 100 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    if (e.code != ERRC_OK) {
        fprintf(stderr, "jitrctl: warning: %s\n", e.msg);
    } else if (workers > 0 && min < gen) {
        fprintf(stderr,
                "jitrctl: warning: not every jitrd worker loaded CA '%s' within %d s: those "
                "switch once they have\n",
                ca, PREPARE_WAIT_MS / 1000);
    } else if (!quiet) {
        fprintf(stderr, "%zu jitrd worker%s loaded CA '%s'\n", workers, workers == 1 ? "" : "s",
                ca);
    }
}

/* Points alias at ca (an active CA of the store): jitrd prepared, audited, then Redis. *was:
 * the CA it named before ("" when none); nothing changes when it names ca already. */
static int alias_switch(const struct conf *c, const char *alias, const char *ca, const char *why,
                        char *was, size_t wcap, struct err *e)
{
    struct issuance_aliases al;
    struct ca_authority *a = NULL;
    struct store *s = NULL;
    json_t *fields = NULL;
    const char *cur = NULL;
    int rc = -1;
    was[0] = '\0';
    if (ca_name_check(alias, e) != 0) {
        return err_prefix(e, "alias");
    }
    if (issuance_ca_exists(c, alias)) {
        return err_set(e, ERRC_CONFLICT,
                       "'%s' is a CA of the store: an alias cannot have a CA's name", alias);
    }
    if ((a = ca_authority_load(c->data_dir, ca, e)) == NULL) {
        return -1;
    }
    if (a->status != CA_ST_ACTIVE || a->cert == NULL || ca_authority_compromised(a)) {
        err_set(e, ERRC_CONFLICT, "CA '%s' is %s: an alias names an active CA", ca,
                ca_authority_compromised(a) ? "compromised" : ca_status_name(a->status));
        goto out;
    }
    if (strcmp(ca, c->station_ca) == 0) {
        err_set(e, ERRC_CONFLICT, "CA '%s' is the station CA: an alias names an issuing CA", ca);
        goto out;
    }
    if (issuance_aliases_load(c, &al, e) != 0) {
        goto out;
    }
    cur = issuance_alias_target(&al, alias);
    snprintf(was, wcap, "%s", cur ? cur : "");
    issuance_aliases_release(&al);
    if (strcmp(was, ca) == 0) {
        rc = 0;
        goto out;
    }
    fields = json_pack("{s:s,s:s?,s:s?}", "alias", alias, "from", was[0] ? was : NULL, "why", why);
    if ((s = store_connect(c->redis_url, e)) == NULL) {
        goto out;
    }
    alias_prepare(s, alias, ca, true);
    /* audit first: Redis is rebuilt from the log (jitrctl reindex replays ca_alias) */
    if (issuance_audit_ca_op(c, "ca_alias", ca, fields, e) != 0 ||
        store_alias_set(s, alias, ca, e) != 0) {
        goto out;
    }
    rc = 0;
out:
    store_free(s);
    json_decref(fields);
    ca_authority_free(a);
    return rc;
}

static int alias_set(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option none[] = { { NULL, 0, NULL, 0 } };
    int optidx = 0, ch;
    char was[80];
    while ((ch = cli_getopt(cli, argc, argv, none, &optidx, e)) != -1) {
        if (ch == 'h') {
            return cli_usage(alias_usage);
        }
        return -1;
    }
    if (optidx != argc - 2) {
        return err_set(e, ERRC_INVALID, "usage: jitrctl ca alias set ALIAS CA");
    }
    const char *alias = argv[optidx], *ca = argv[optidx + 1];
    const struct conf *c = cli_conf(cli, e);
    if (c == NULL || alias_switch(c, alias, ca, "alias set", was, sizeof(was), e) != 0) {
        return -1;
    }
    if (cli->json) {
        cli_print_json(json_pack("{s:s,s:s,s:s?,s:b}", "alias", alias, "ca", ca, "was",
                                 was[0] ? was : NULL, "changed", strcmp(was, ca) != 0));
    } else if (strcmp(was, ca) == 0) {
        printf("alias '%s' names CA '%s' already\n", alias, ca);
    } else {
        printf("alias '%s' names CA '%s'%s%s%s; every jitrd switches within 2 s\n", alias, ca,
               was[0] ? " (was '" : "", was, was[0] ? "')" : "");
    }
    return 0;
}

static int alias_list(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option none[] = { { NULL, 0, NULL, 0 } };
    int optidx = 0, ch;
    struct issuance_aliases al;
    while ((ch = cli_getopt(cli, argc, argv, none, &optidx, e)) != -1) {
        if (ch == 'h') {
            return cli_usage(alias_usage);
        }
        return -1;
    }
    if (optidx != argc) {
        return err_set(e, ERRC_INVALID, "ca alias list takes no arguments");
    }
    const struct conf *c = cli_conf(cli, e);
    if (c == NULL || issuance_aliases_load(c, &al, e) != 0) {
        return -1;
    }
    json_t *arr = json_array();
    if (!cli->json) {
        printf("%-20s %-20s %-11s %6s\n", "ALIAS", "CA", "STATUS", "DAYS");
    }
    for (size_t i = 0; i < al.n; i++) {
        struct err ignore = ERR_INIT;
        struct ca_authority *a = ca_authority_load(c->data_dir, al.cas[i], &ignore);
        const char *st = a == NULL                     ? "missing"
                         : ca_authority_compromised(a) ? "compromised"
                                                       : ca_status_name(a->status);
        json_t *o = json_pack("{s:s,s:s,s:s}", "alias", al.names[i], "ca", al.cas[i], "status", st);
        char days[24] = "-";
        if (a && a->cert) {
            json_object_set_new(o, "days_left", json_integer(days_left(a->cert)));
            snprintf(days, sizeof(days), "%d", days_left(a->cert));
        }
        if (!cli->json) {
            printf("%-20s %-20s %-11s %6s\n", al.names[i], al.cas[i], st, days);
        }
        json_array_append_new(arr, o);
        ca_authority_free(a);
    }
    issuance_aliases_release(&al);
    if (cli->json) {
        cli_print_json(json_incref(arr));
    }
    json_decref(arr);
    return 0;
}

int cmd_ca_alias(struct cli *cli, int argc, char **argv, struct err *e)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc < 2) {
            fputs(alias_usage, stderr);
            return err_set(e, ERRC_INVALID, "ca alias needs set or list");
        }
        return cli_usage(alias_usage);
    }
    optind = 0;
    if (strcmp(argv[1], "set") == 0) {
        return alias_set(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(argv[1], "list") == 0) {
        return alias_list(cli, argc - 1, argv + 1, e);
    }
    return err_set(e, ERRC_INVALID, "unknown ca alias subcommand '%s' (set, list)", argv[1]);
}

/* ---- rotate -------------------------------------------------------------------------------- */

/* s with the number at its end raised by one ("acme-devices-1" -> "acme-devices-2", "CA 9" ->
 * "CA 10"); with none, sep and 2 appended. */
static void bump(const char *s, const char *sep, struct buf *out)
{
    size_t n = strlen(s), d = n;
    while (d > 0 && s[d - 1] >= '0' && s[d - 1] <= '9') {
        d--;
    }
    uint64_t v = 0;
    if (d == n || n - d > 18 || str_to_u64(s + d, &v) != 0) {
        buf_addf(out, "%s%s2", s, sep);
        return;
    }
    buf_addf(out, "%.*s%llu", (int)d, s, (unsigned long long)(v + 1));
}

/* The old CA's subject ("/CN=Acme Devices CA 1/O=Acme") with its CN's number raised. */
static void next_subject(X509 *cert, struct buf *out)
{
    char subj[1024];
    X509_NAME_oneline(X509_get_subject_name(cert), subj, sizeof(subj));
    char *cn = strstr(subj, "/CN=");
    if (cn == NULL) {
        buf_addstr(out, subj);
        return;
    }
    char *v = cn + 4, *end = strchr(v, '/');
    size_t vl = end ? (size_t)(end - v) : strlen(v);
    char val[512];
    snprintf(val, sizeof(val), "%.*s", (int)vl, v);
    buf_addf(out, "%.*s/CN=", (int)(cn - subj), subj);
    bump(val, " ", out);
    buf_addstr(out, end ? end : "");
}

struct rot {
    struct cli *cli;
    const struct conf *c;
    const char *alias;
    const char *to, *parent, *key_uri, *subject, *ppf;
    enum ca_key_type key_type;
    bool key_type_set;
    int64_t days;
    int64_t before; /* -1: rotate now */
    bool started;   /* a step changed something: an error says how to resume */
    json_t *steps;  /* [{step, done, detail}] */
};

static void step(struct rot *r, const char *name, bool done_now, const char *fmt, ...)
    ATTR_PRINTF(4, 5);
static void step(struct rot *r, const char *name, bool done_now, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->started = r->started || done_now;
    json_array_append_new(
        r->steps, json_pack("{s:s,s:b,s:s}", "step", name, "done_now", done_now, "detail", msg));
    if (!r->cli->json) {
        printf("%-9s %s%s\n", name, msg, done_now ? "" : " (done before)");
    }
}

/* Step 2: the new CA. */
static int rot_create(struct rot *r, struct ca_authority *old, const char *name, struct err *e)
{
    struct ca_init_opts o = { 0 };
    struct buf secret = BUF_INIT, psecret = BUF_INIT, uri = BUF_INIT, subj = BUF_INIT;
    struct ca_authority *parent = NULL, *made = NULL;
    json_t *fields = NULL;
    int rc = -1;
    o.name = name;
    o.parent = r->parent ? r->parent : old->parent;
    o.key_type = r->key_type_set ? r->key_type : old->key_type;
    o.pathlen = 0;
    if (o.parent == NULL) {
        return err_set(e, ERRC_CONFLICT,
                       "CA '%s' was signed outside this store: make its successor with "
                       "'jitrctl ca init %s --csr-only' and 'jitrctl ca import', or name a parent "
                       "with --parent, then run 'jitrctl ca rotate %s --to %s' again",
                       old->name, name, r->alias, name);
    }
    if (r->subject) {
        buf_addstr(&subj, r->subject);
    } else {
        next_subject(old->cert, &subj);
    }
    o.subject = subj.data;
    if (r->days > 0) {
        o.days = r->days;
    } else {
        int d = 0, sec = 0;
        if (ASN1_TIME_diff(&d, &sec, X509_get0_notBefore(old->cert),
                           X509_get0_notAfter(old->cert)) != 1 ||
            d < 1) {
            d = 1825;
        }
        o.days = d;
    }
    if (r->key_uri) {
        o.key_uri = r->key_uri;
        buf_addstr(&uri, r->key_uri);
    } else {
        buf_addf(&uri, "file:%s/ca/%s/key.pem", r->c->data_dir, name);
    }
    if (issuance_secret_load(r->c, uri.data, r->cli->passphrase_file, &secret, e) != 0) {
        goto out;
    }
    o.key_opts.secret = secret.len ? secret.data : NULL;
    o.key_opts.pkcs11_module = r->c->pkcs11_module;
    o.parent_opts.pkcs11_module = r->c->pkcs11_module;
    if ((parent = ca_authority_load(r->c->data_dir, o.parent, e)) == NULL) {
        err_prefix(e, "parent");
        goto out;
    }
    if (issuance_secret_load(r->c, parent->key_uri, r->ppf ? r->ppf : r->cli->passphrase_file,
                             &psecret, e) != 0) {
        goto out;
    }
    o.parent_opts.secret = psecret.len ? psecret.data : NULL;
    if (ca_authority_init(r->c->data_dir, &o, NULL, e) != 0 ||
        (made = ca_authority_load(r->c->data_dir, name, e)) == NULL) {
        goto out;
    }
    fields = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "key_type", ca_key_type_name(o.key_type),
                       "key_uri", made->key_uri, "status", ca_status_name(made->status),
                       "fingerprint", made->fingerprint, "kind", "intermediate", "parent", o.parent,
                       "rotation_of", r->alias);
    if (issuance_audit_ca_op(r->c, "ca_init", name, fields, e) != 0) {
        struct err ignore = ERR_INIT;
        struct buf dir = BUF_INIT;
        buf_addf(&dir, "%s/ca/%s", r->c->data_dir, name);
        if (file_remove_tree(dir.data, &ignore) != 0) {
            fprintf(stderr, "could not remove '%s': %s\n", dir.data, ignore.msg);
        }
        buf_release(&dir);
        err_prefix(e, "CA '%s' not created: the audit log failed", name);
        goto out;
    }
    step(r, "create", true,
         "created CA '%s' (intermediate of '%s', %s, %s, %lld days), "
         "SHA-256 fingerprint %s",
         name, o.parent, ca_key_type_name(o.key_type), subj.data, (long long)o.days,
         made->fingerprint);
    rc = 0;
out:
    buf_release_secret(&secret);
    buf_release_secret(&psecret);
    buf_release(&uri);
    buf_release(&subj);
    ca_authority_free(parent);
    ca_authority_free(made);
    json_decref(fields);
    return rc;
}

/* Step 3: in AWS IoT as the old CA is there (its first registration). */
static int rot_register(struct rot *r, struct ca_authority *old, const char *name, struct err *e)
{
    json_t *list = json_object_get(old->meta, "aws"), *reg = json_array_get(list, 0);
    json_t *entry = NULL;
    bool existed = false;
    if (reg == NULL) {
        step(r, "register", true, "CA '%s' is not registered in AWS IoT: neither is '%s'",
             old->name, name);
        return 0;
    }
    const char *mode = strcmp(jstr(reg, "mode"), "SNI_ONLY") == 0 ? "SNI_ONLY" : "DEFAULT";
    bool auto_reg = strcmp(jstr(reg, "autoRegistrationStatus"), "DISABLE") != 0;
    if (cli_ca_register(r->cli, name, mode, true, auto_reg, false, &entry, &existed, e) != 0) {
        return err_prefix(e, "registering CA '%s' in AWS IoT", name);
    }
    step(r, "register", !existed,
         "CA '%s' in AWS IoT %s (account %s): caCertificateId %s, status %s, auto-registration %s,"
         " mode %s",
         name, jstr(entry, "region"), jstr(entry, "account"), jstr(entry, "caCertificateId"),
         jstr(entry, "status"), jstr(entry, "autoRegistrationStatus"), jstr(entry, "mode"));
    json_decref(entry);
    return 0;
}

static int rot_save_marker(struct rot *r, struct ca_authority *old, const char *key, json_t *v,
                           struct err *e)
{
    json_object_set_new(old->meta, key, v);
    return ca_authority_save(r->c->data_dir, old, e);
}

static int rotate_run(struct rot *r, struct err *e)
{
    struct issuance_aliases al;
    struct ca_authority *old = NULL, *nw = NULL;
    struct buf newname = BUF_INIT;
    char was[80], curname[80];
    json_t *from = NULL, *mark = NULL;
    const char *cur = NULL;
    bool resuming = false;
    int rc = -1;
    if (ca_name_check(r->alias, e) != 0) {
        return err_prefix(e, "alias");
    }
    if (issuance_aliases_load(r->c, &al, e) != 0) {
        return -1;
    }
    cur = issuance_alias_target(&al, r->alias);
    if (cur == NULL) {
        issuance_aliases_release(&al);
        return err_set(e, ERRC_NOT_FOUND,
                       "alias '%s' names no CA: point it at the current CA first "
                       "('jitrctl ca alias set %s CA')",
                       r->alias, r->alias);
    }
    snprintf(curname, sizeof(curname), "%s", cur);
    issuance_aliases_release(&al);
    if ((old = ca_authority_load(r->c->data_dir, curname, e)) == NULL) {
        err_prefix(e, "alias '%s'", r->alias);
        goto out;
    }
    /* the alias names the new CA already: an interrupted rotation's last steps are left */
    from = json_object_get(old->meta, "rotated_from");
    if (json_is_object(from) && strcmp(jstr(from, "alias"), r->alias) == 0) {
        struct ca_authority *prev = ca_authority_load(r->c->data_dir, jstr(from, "ca"), e);
        mark = prev ? json_object_get(prev->meta, "rotation") : NULL;
        if (prev && json_is_object(mark) && strcmp(jstr(mark, "to"), curname) == 0) {
            buf_addstr(&newname, curname);
            ca_authority_free(old);
            old = prev;
        } else {
            ca_authority_free(prev);
            err_clear(e);
        }
    }
    if (old->cert == NULL) {
        err_set(e, ERRC_CONFLICT, "CA '%s' is pending", old->name);
        goto out;
    }
    mark = json_object_get(old->meta, "rotation");
    resuming = json_is_object(mark) && strcmp(jstr(mark, "alias"), r->alias) == 0;
    if (resuming) {
        if (r->to && strcmp(r->to, jstr(mark, "to")) != 0) {
            err_set(e, ERRC_CONFLICT,
                    "a rotation of alias '%s' from '%s' to '%s' is unfinished: run 'jitrctl ca "
                    "rotate %s' (without --to, or --to %s) to finish it first",
                    r->alias, old->name, jstr(mark, "to"), r->alias, jstr(mark, "to"));
            goto out;
        }
        buf_reset(&newname);
        buf_addstr(&newname, jstr(mark, "to"));
    } else {
        if (r->before >= 0) {
            int left = days_left(old->cert);
            if (left > r->before) {
                if (r->cli->json) {
                    cli_print_json(json_pack("{s:s,s:s,s:i,s:b}", "alias", r->alias, "ca",
                                             old->name, "days_left", left, "rotated", 0));
                } else {
                    printf("CA '%s' (alias '%s') expires in %d days, not within %lld: nothing "
                           "to do\n",
                           old->name, r->alias, left, (long long)r->before);
                }
                rc = 0;
                goto out;
            }
        }
        if (old->status != CA_ST_ACTIVE || ca_authority_compromised(old)) {
            err_set(e, ERRC_CONFLICT, "alias '%s' names CA '%s', which is %s", r->alias, old->name,
                    ca_authority_compromised(old) ? "compromised" : ca_status_name(old->status));
            goto out;
        }
        if (r->to) {
            buf_addstr(&newname, r->to);
        } else {
            bump(old->name, "-", &newname);
            while (issuance_ca_exists(r->c, newname.data)) {
                char *t = buf_detach(&newname, NULL);
                bump(t, "-", &newname);
                xfree(t);
            }
        }
        if (ca_name_check(newname.data, e) != 0) {
            goto out;
        }
        if (strcmp(newname.data, old->name) == 0) {
            err_set(e, ERRC_INVALID, "alias '%s' names '%s' already", r->alias, old->name);
            goto out;
        }
        char at[40];
        time_format_rfc3339(time(NULL), at, sizeof(at));
        json_t *fields =
            json_pack("{s:s,s:s,s:s}", "alias", r->alias, "from", old->name, "to", newname.data);
        int arc = issuance_audit_ca_op(r->c, "ca_rotate_begin", old->name, fields, e);
        json_decref(fields);
        if (arc != 0 || rot_save_marker(r, old, "rotation",
                                        json_pack("{s:s,s:s,s:s}", "alias", r->alias, "to",
                                                  newname.data, "started", at),
                                        e) != 0) {
            goto out;
        }
        step(r, "begin", true, "rotation of alias '%s': '%s' -> '%s'", r->alias, old->name,
             newname.data);
    }
    if (resuming) {
        step(r, "begin", false, "rotation of alias '%s': '%s' -> '%s'", r->alias, old->name,
             newname.data);
    }
    /* 2. create */
    if (!issuance_ca_exists(r->c, newname.data)) {
        if (rot_create(r, old, newname.data, e) != 0) {
            goto out;
        }
    } else {
        step(r, "create", false, "CA '%s' exists", newname.data);
    }
    if ((nw = ca_authority_load(r->c->data_dir, newname.data, e)) == NULL) {
        goto out;
    }
    if (nw->status != CA_ST_ACTIVE || nw->cert == NULL || ca_authority_compromised(nw)) {
        err_set(e, ERRC_CONFLICT, "CA '%s' is %s: a rotation needs an active CA", nw->name,
                ca_authority_compromised(nw) ? "compromised" : ca_status_name(nw->status));
        goto out;
    }
    if (!json_is_object(json_object_get(nw->meta, "rotated_from"))) {
        if (rot_save_marker(r, nw, "rotated_from",
                            json_pack("{s:s,s:s}", "alias", r->alias, "ca", old->name), e) != 0) {
            goto out;
        }
    }
    /* 3. register */
    if (rot_register(r, old, nw->name, e) != 0) {
        goto out;
    }
    /* 4. switch */
    if (alias_switch(r->c, r->alias, nw->name, "ca rotate", was, sizeof(was), e) != 0) {
        goto out;
    }
    step(r, "switch", strcmp(was, nw->name) != 0,
         "alias '%s' names CA '%s'; every jitrd switches within 2 s", r->alias, nw->name);
    /* 5. retire */
    if (old->status == CA_ST_ACTIVE) {
        json_t *fields =
            json_pack("{s:s,s:s,s:s}", "from", "active", "to", "retired", "rotation_of", r->alias);
        int arc = issuance_audit_ca_op(r->c, "ca_retire", old->name, fields, e);
        json_decref(fields);
        old->status = CA_ST_RETIRED;
        if (arc != 0 || ca_authority_save(r->c->data_dir, old, e) != 0) {
            goto out;
        }
        {
            /* every jitrd drops the retired CA at its next rebuild */
            struct err te = ERR_INIT;
            struct store *s = store_connect(r->c->redis_url, &te);
            if (s == NULL || store_alias_touch(s, r->alias, &te) != 0) {
                fprintf(stderr, "jitrctl: warning: %s\n", te.msg);
            }
            store_free(s);
        }
        step(r, "retire", true,
             "CA '%s' signs nothing more; in AWS IoT it stays as it was (ACTIVE, "
             "auto-registration unchanged) for the devices it signed",
             old->name);
    } else {
        step(r, "retire", false, "CA '%s' is %s", old->name, ca_status_name(old->status));
    }
    /* 6. done */
    {
        char at[40];
        time_format_rfc3339(time(NULL), at, sizeof(at));
        json_t *fields =
            json_pack("{s:s,s:s,s:s}", "alias", r->alias, "from", old->name, "to", nw->name);
        int arc = issuance_audit_ca_op(r->c, "ca_rotate", old->name, fields, e);
        json_decref(fields);
        if (arc != 0) {
            goto out;
        }
        json_object_del(old->meta, "rotation");
        if (rot_save_marker(r, old, "rotated_to",
                            json_pack("{s:s,s:s,s:s}", "alias", r->alias, "ca", nw->name, "at", at),
                            e) != 0) {
            goto out;
        }
    }
    if (r->cli->json) {
        cli_print_json(json_pack("{s:s,s:s,s:s,s:b,s:O}", "alias", r->alias, "from", old->name,
                                 "to", nw->name, "rotated", 1, "steps", r->steps));
    } else {
        printf("done: alias '%s' rotated from '%s' to '%s'\n"
               "next: the devices of '%s' are still provisioned by AWS IoT as they connect; "
               "watch 'jitrctl ca impact %s', then 'jitrctl ca retire %s --aws' (no new devices) "
               "and 'jitrctl ca deactivate %s' once none depends on it\n",
               r->alias, old->name, nw->name, old->name, old->name, old->name, old->name);
    }
    rc = 0;
out:
    ca_authority_free(old);
    ca_authority_free(nw);
    buf_release(&newname);
    return rc;
}

int cmd_ca_rotate(struct cli *cli, int argc, char **argv, struct err *e)
{
    enum {
        O_TO = 1,
        O_PARENT,
        O_TYPE,
        O_KEY,
        O_SUBJECT,
        O_DAYS,
        O_BEFORE,
        O_PPF
    };
    static const struct option opts[] = {
        { "to", required_argument, NULL, O_TO },
        { "parent", required_argument, NULL, O_PARENT },
        { "key-type", required_argument, NULL, O_TYPE },
        { "key", required_argument, NULL, O_KEY },
        { "subject", required_argument, NULL, O_SUBJECT },
        { "days", required_argument, NULL, O_DAYS },
        { "before", required_argument, NULL, O_BEFORE },
        { "parent-passphrase-file", required_argument, NULL, O_PPF },
        { NULL, 0, NULL, 0 },
    };
    struct rot r = { .cli = cli, .before = -1 };
    int optidx = 0, ch, rc;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        uint64_t v = 0;
        switch (ch) {
        case 'h':
            return cli_usage(rotate_usage);
        case O_TO:
            r.to = optarg;
            break;
        case O_PARENT:
            r.parent = optarg;
            break;
        case O_TYPE:
            if (ca_key_type_parse(optarg, &r.key_type) != 0) {
                return err_set(e, ERRC_INVALID,
                               "unknown key type '%s' (ec-p256, ec-p384, rsa-2048, rsa-3072, "
                               "rsa-4096)",
                               optarg);
            }
            r.key_type_set = true;
            break;
        case O_KEY:
            r.key_uri = optarg;
            break;
        case O_SUBJECT:
            r.subject = optarg;
            break;
        case O_DAYS:
            if (str_to_u64(optarg, &v) != 0 || v == 0 || v > 36500) {
                return err_set(e, ERRC_INVALID,
                               "--days must be a number from 1 to 36500, not "
                               "'%s'",
                               optarg);
            }
            r.days = (int64_t)v;
            break;
        case O_BEFORE:
            if (str_to_u64(optarg, &v) != 0 || v > 36500) {
                return err_set(e, ERRC_INVALID,
                               "--before must be a number of days from 0 to 36500, not '%s'",
                               optarg);
            }
            r.before = (int64_t)v;
            break;
        case O_PPF:
            r.ppf = optarg;
            break;
        default:
            return -1;
        }
    }
    if (optidx != argc - 1) {
        return err_set(e, ERRC_INVALID, "ca rotate takes one ALIAS (see jitrctl ca rotate --help)");
    }
    r.alias = argv[optidx];
    if ((r.c = cli_conf(cli, e)) == NULL) {
        return -1;
    }
    r.steps = json_array();
    rc = rotate_run(&r, e);
    if (rc != 0 && r.started) {
        err_prefix(e, "ca rotate %s stopped (run it again to finish)", r.alias);
    }
    json_decref(r.steps);
    return rc;
}
