/*
 * The end of a CA's life (docs/operations.md, "Retiring a CA"):
 *   jitrctl ca impact NAME [--json]   what still depends on the CA, from the index and JITR's
 *                                     records in Redis: no AWS call
 *   jitrctl ca retire NAME --aws      signs nothing more (as ca retire) and, in AWS IoT, no new
 *                                     device registers with it (auto-registration DISABLE)
 *   jitrctl ca deactivate NAME        INACTIVE in AWS IoT; refused while impact shows devices
 *                                     ACTIVE in AWS or never provisioned, unless --force
 * Every AWS change is audited (ca_aws_update) before ca.json records it.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws/iot.h"
#include "ca/authority.h"
#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "store/store.h"

static const char life_usage[] =
    "usage: jitrctl ca impact NAME [--json]\n"
    "       jitrctl ca retire NAME --aws\n"
    "       jitrctl ca deactivate NAME [--force]\n"
    "impact: the CA's certificates in the index: issued, valid, revoked, superseded, expired,\n"
    "  expiring within 30 days; of the valid ones those JITR provisioned (by their status in AWS\n"
    "  IoT as JITR last saw it) and those never provisioned (by station and month of issue); the\n"
    "  last first connection JITR saw.\n"
    "retire --aws: the CA signs nothing more here and AWS IoT registers no new device certificate\n"
    "  of it (auto-registration DISABLE); provisioned devices keep working.\n"
    "deactivate: the CA becomes INACTIVE in AWS IoT. Refused while the CA still signs here, and\n"
    "  while impact shows valid certificates ACTIVE in AWS or never provisioned (--force).\n";

#define IMPACT_EXPIRING_DAYS 30

struct impact {
    json_int_t issued, valid, revoked, superseded, expired, expiring;
    json_int_t provisioned; /* valid, ACTIVE in AWS as JITR last saw it */
    json_int_t unprovisioned;
    json_t *aws_status; /* status -> count, valid certificates JITR saw */
    json_t *by_station; /* never provisioned: requester -> count */
    json_t *by_month;   /* never provisioned: YYYY-MM -> count */
    int64_t last_first_ms;
};

static void bump(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    json_object_set_new(o, k, json_integer(v ? json_integer_value(v) + 1 : 1));
}

static int impact_compute(const struct conf *c, const char *ca, struct impact *im, struct err *e)
{
    struct store *s = store_connect(c->redis_url, e);
    char **serials = NULL;
    size_t n = 0;
    int rc = -1;
    time_t now = time(NULL);
    memset(im, 0, sizeof(*im));
    im->aws_status = json_object();
    im->by_station = json_object();
    im->by_month = json_object();
    if (s == NULL || store_ca_serials(s, ca, &serials, &n, e) != 0) {
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct store_cert_rec rec;
        static const char *const f[] = { "aws_status", "first_ms" };
        char *v[2] = { NULL, NULL };
        char key[160];
        time_t na = 0;
        if (store_cert_read(s, serials[i], &rec, e) != 0) {
            if (e->code == ERRC_NOT_FOUND) {
                err_clear(e);
                continue;
            }
            goto out;
        }
        im->issued++;
        if (!store_cert_rec_valid(&rec)) {
            im->revoked++;
        } else if (rec.superseded_by[0]) {
            im->superseded++;
        } else if (time_parse_rfc3339(rec.not_after, &na) == 0 && na <= now) {
            im->expired++;
        } else {
            im->valid++;
            if (na > 0 && na - now <= IMPACT_EXPIRING_DAYS * 86400) {
                im->expiring++;
            }
            snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", rec.fingerprint);
            if (store_hmget(s, key, f, 2, v, e) != 0) {
                store_cert_rec_release(&rec);
                goto out;
            }
            if (v[0] && v[0][0]) {
                bump(im->aws_status, v[0]);
                im->provisioned += strcmp(v[0], "ACTIVE") == 0;
            } else {
                char month[8];
                im->unprovisioned++;
                bump(im->by_station, rec.requester[0] ? rec.requester : "?");
                snprintf(month, sizeof(month), "%.7s", rec.issued_at);
                bump(im->by_month, month);
            }
            uint64_t ms = 0;
            if (v[1] && str_to_u64(v[1], &ms) == 0 && (int64_t)ms > im->last_first_ms) {
                im->last_first_ms = (int64_t)ms;
            }
            xfree(v[0]);
            xfree(v[1]);
        }
        store_cert_rec_release(&rec);
    }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++) {
        xfree(serials[i]);
    }
    xfree(serials);
    store_free(s);
    return rc;
}

static void impact_release(struct impact *im)
{
    json_decref(im->aws_status);
    json_decref(im->by_station);
    json_decref(im->by_month);
}

static json_t *impact_json(const char *ca, const struct impact *im)
{
    json_t *o = json_pack(
        "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:O,s:O,s:O}", "ca", ca, "issued", im->issued,
        "valid", im->valid, "revoked", im->revoked, "superseded", im->superseded, "expired",
        im->expired, "expiring_30_days", im->expiring, "provisioned_active", im->provisioned,
        "never_provisioned", im->unprovisioned, "aws_status", im->aws_status,
        "never_provisioned_by_station", im->by_station, "never_provisioned_by_month", im->by_month);
    if (im->last_first_ms > 0) {
        char at[40];
        time_format_rfc3339((time_t)(im->last_first_ms / 1000), at, sizeof(at));
        json_object_set_new(o, "last_first_connection", json_string(at));
    } else {
        json_object_set_new(o, "last_first_connection", json_null());
    }
    return o;
}

static void print_counts(const char *what, json_t *o)
{
    const char *k;
    json_t *v;
    printf("  %s:", what);
    if (json_object_size(o) == 0) {
        printf(" -");
    }
    json_object_foreach(o, k, v)
    {
        printf(" %s %lld", k, (long long)json_integer_value(v));
    }
    printf("\n");
}

static int name_opts(struct cli *cli, int argc, char **argv, const struct option *own, int *flag,
                     const char **name, struct err *e)
{
    static const struct option none[] = { { NULL, 0, NULL, 0 } };
    int optidx = 0, ch;
    while ((ch = cli_getopt(cli, argc, argv, own ? own : none, &optidx, e)) != -1) {
        if (ch == 'h') {
            return 1;
        }
        if (ch != 'f' && ch != 'a') {
            return -1;
        }
        *flag = 1;
    }
    if (optidx != argc - 1) {
        return err_set(e, ERRC_INVALID, "%s takes one NAME (see jitrctl ca impact --help)",
                       argv[0]);
    }
    *name = argv[optidx];
    return 0;
}

int cmd_ca_impact(struct cli *cli, int argc, char **argv, struct err *e)
{
    const char *name = NULL;
    int flag = 0, r = name_opts(cli, argc, argv, NULL, &flag, &name, e);
    struct impact im;
    if (r != 0) {
        return r > 0 ? cli_usage(life_usage) : -1;
    }
    const struct conf *c = cli_conf(cli, e);
    if (c == NULL || cli_index_ensure(cli, e) != 0) {
        return -1;
    }
    if (!issuance_ca_exists(c, name)) {
        return err_set(e, ERRC_NOT_FOUND, "CA '%s' not found", name);
    }
    if (impact_compute(c, name, &im, e) != 0) {
        impact_release(&im);
        return -1;
    }
    json_t *o = impact_json(name, &im);
    if (cli->json) {
        cli_print_json(json_incref(o));
    } else {
        printf("CA '%s': %lld certificates issued\n", name, (long long)im.issued);
        printf("  valid %lld, revoked %lld, superseded %lld, expired %lld; expiring within %d "
               "days %lld\n",
               (long long)im.valid, (long long)im.revoked, (long long)im.superseded,
               (long long)im.expired, IMPACT_EXPIRING_DAYS, (long long)im.expiring);
        printf("  provisioned (ACTIVE in AWS IoT) %lld; never provisioned %lld\n",
               (long long)im.provisioned, (long long)im.unprovisioned);
        print_counts("valid, by AWS status", im.aws_status);
        print_counts("never provisioned, by station", im.by_station);
        print_counts("never provisioned, by month of issue", im.by_month);
        json_t *lf = json_object_get(o, "last_first_connection");
        printf("  last first connection: %s\n", json_is_string(lf) ? json_string_value(lf) : "-");
    }
    json_decref(o);
    impact_release(&im);
    return 0;
}

/* ---- AWS IoT changes ------------------------------------------------------------------------ */

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* UpdateCACertificate of each registration of a in the configured region (new_status or
 * new_auto NULL: unchanged), audited (ca_aws_update) and recorded in ca.json. */
int cli_ca_aws_update(struct cli *cli, const struct conf *c, struct ca_authority *a,
                      const char *new_status, const char *new_auto, struct err *e)
{
    json_t *list = json_object_get(a->meta, "aws"), *v;
    struct event_base *base = NULL;
    struct aws_iot *iot = NULL;
    size_t i, done = 0;
    int rc = -1;
    if (!json_is_array(list) || json_array_size(list) == 0) {
        return err_set(e, ERRC_CONFLICT,
                       "CA '%s' is not registered in AWS IoT (jitrctl ca register)", a->name);
    }
    if ((base = event_base_new()) == NULL) {
        return err_set(e, ERRC_INTERNAL, "cannot create an event loop");
    }
    if ((iot = cli_aws_iot_new(c, base, false, e)) == NULL) {
        goto out;
    }
    json_array_foreach(list, i, v)
    {
        struct aws_iot_sync s;
        const char *id = jstr(v, "caCertificateId");
        json_t *fields = NULL, *d = NULL;
        if (strcmp(jstr(v, "region"), aws_iot_region(iot)) != 0) {
            fprintf(stderr,
                    "jitrctl: warning: CA '%s' in %s not changed: the configured region is "
                    "%s\n",
                    a->name, jstr(v, "region"), aws_iot_region(iot));
            continue;
        }
        aws_iot_sync_init(&s);
        fields = json_pack("{s:s,s:s,s:s,s:s?,s:s?,s:s,s:s}", "caCertificateId", id, "region",
                           jstr(v, "region"), "account", jstr(v, "account"), "newStatus",
                           new_status, "newAutoRegistrationStatus", new_auto, "status_before",
                           jstr(v, "status"), "auto_before", jstr(v, "autoRegistrationStatus"));
        /* audit first: a change in AWS nobody can trace must not happen */
        if (issuance_audit_ca_op(c, "ca_aws_update", a->name, fields, e) != 0 ||
            (aws_iot_update_ca_certificate(iot, id, new_status, new_auto, aws_iot_sync_cb, &s, e) ==
                     0
                 ? aws_iot_sync_wait(iot, &s, e)
                 : -1) != 0) {
            json_decref(fields);
            aws_iot_sync_release(&s);
            err_prefix(e, "CA '%s' (%s)", a->name, id);
            goto out;
        }
        json_decref(fields);
        aws_iot_sync_release(&s);
        aws_iot_sync_init(&s);
        if ((aws_iot_describe_ca_certificate(iot, id, aws_iot_sync_cb, &s, e) == 0
                 ? aws_iot_sync_wait(iot, &s, e)
                 : -1) != 0) {
            aws_iot_sync_release(&s);
            err_prefix(e, "CA '%s' changed in AWS IoT, but cannot describe it", a->name);
            goto out;
        }
        d = json_object_get(s.out, "certificateDescription");
        json_object_set_new(v, "status", json_string(jstr(d, "status")));
        json_object_set_new(v, "autoRegistrationStatus",
                            json_string(jstr(d, "autoRegistrationStatus")));
        if (!cli->json) {
            printf("CA '%s' in AWS IoT %s (account %s): status %s, auto-registration %s\n", a->name,
                   jstr(v, "region"), jstr(v, "account"), jstr(v, "status"),
                   jstr(v, "autoRegistrationStatus"));
        }
        aws_iot_sync_release(&s);
        done++;
    }
    if (done == 0) {
        err_set(e, ERRC_CONFLICT, "CA '%s' has no registration in the configured region %s",
                a->name, aws_iot_region(iot));
        goto out;
    }
    rc = 0;
out:
    if (done > 0) {
        struct err ignore = ERR_INIT;
        if (ca_authority_save(c->data_dir, a, rc == 0 ? e : &ignore) != 0) {
            rc = -1;
        }
    }
    aws_iot_free(iot);
    event_base_free(base);
    return rc;
}

int cmd_ca_retire_aws(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option own[] = { { "aws", no_argument, NULL, 'a' }, { NULL, 0, NULL, 0 } };
    const char *name = NULL;
    int flag = 0, r = name_opts(cli, argc, argv, own, &flag, &name, e), rc = -1;
    if (r != 0) {
        return r > 0 ? cli_usage(life_usage) : -1;
    }
    const struct conf *c = cli_conf(cli, e);
    struct ca_authority *a = c ? ca_authority_load(c->data_dir, name, e) : NULL;
    if (a == NULL) {
        return -1;
    }
    if (a->status == CA_ST_PENDING) {
        err_set(e, ERRC_CONFLICT, "CA '%s' is pending: import its certificate first", name);
        goto out;
    }
    if (a->status == CA_ST_ACTIVE) {
        json_t *fields = json_pack("{s:s,s:s}", "from", "active", "to", "retired");
        int arc = issuance_audit_ca_op(c, "ca_retire", name, fields, e);
        json_decref(fields);
        a->status = CA_ST_RETIRED;
        if (arc != 0 || ca_authority_save(c->data_dir, a, e) != 0) {
            goto out;
        }
    }
    if (!cli->json) {
        printf("CA '%s' is retired: it signs nothing more\n", name);
    }
    if (cli_ca_aws_update(cli, c, a, NULL, "DISABLE", e) != 0) {
        goto out;
    }
    if (cli->json) {
        cli_print_json(json_pack("{s:s,s:s,s:O}", "name", name, "status", "retired", "aws",
                                 json_object_get(a->meta, "aws")));
    } else {
        printf("no new device certificate of '%s' registers in AWS IoT; provisioned devices keep "
               "working. next: 'jitrctl ca deactivate %s' once 'jitrctl ca impact %s' shows none "
               "left\n",
               name, name, name);
    }
    rc = 0;
out:
    ca_authority_free(a);
    return rc;
}

int cmd_ca_deactivate(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option own[] = { { "force", no_argument, NULL, 'f' },
                                         { NULL, 0, NULL, 0 } };
    const char *name = NULL;
    int force = 0, r = name_opts(cli, argc, argv, own, &force, &name, e), rc = -1;
    struct impact im;
    if (r != 0) {
        return r > 0 ? cli_usage(life_usage) : -1;
    }
    memset(&im, 0, sizeof(im));
    const struct conf *c = cli_conf(cli, e);
    struct ca_authority *a = c ? ca_authority_load(c->data_dir, name, e) : NULL;
    if (a == NULL) {
        return -1;
    }
    if (a->status == CA_ST_ACTIVE) {
        err_set(e, ERRC_CONFLICT,
                "CA '%s' still signs: retire it first ('jitrctl ca rotate' moves its alias, "
                "'jitrctl ca retire %s --aws' stops it)",
                name, name);
        goto out;
    }
    if (cli_index_ensure(cli, e) != 0 || impact_compute(c, name, &im, e) != 0) {
        goto out;
    }
    if ((im.provisioned > 0 || im.unprovisioned > 0) && !force) {
        err_set(e, ERRC_CONFLICT,
                "CA '%s' still has %lld valid certificates ACTIVE in AWS IoT and %lld never "
                "provisioned ('jitrctl ca impact %s'): their devices could no longer register or "
                "connect; --force deactivates it anyway",
                name, (long long)im.provisioned, (long long)im.unprovisioned, name);
        goto out;
    }
    if (cli_ca_aws_update(cli, c, a, "INACTIVE", NULL, e) != 0) {
        goto out;
    }
    if (cli->json) {
        cli_print_json(json_pack("{s:s,s:b,s:O}", "name", name, "forced",
                                 force && (im.provisioned > 0 || im.unprovisioned > 0), "aws",
                                 json_object_get(a->meta, "aws")));
    } else {
        printf("CA '%s' is INACTIVE in AWS IoT\n", name);
    }
    rc = 0;
out:
    impact_release(&im);
    ca_authority_free(a);
    return rc;
}
