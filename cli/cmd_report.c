/*
 * jitrctl report expiring --days N [--ca NAME] [--json | --csv]: the certificates that are valid
 * (not revoked, not superseded) and whose notAfter falls within the next N days, earliest first:
 * serial, CN, the AWS IoT thing and the certificate's status in AWS as JITR last recorded them,
 * the CA and notAfter. The certificates come from ca:<ca>:expiry (store_expiry_range: no scan of
 * the index), their records from cert:<serial>.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca/authority.h"
#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "store/store.h"

static const char report_usage[] =
    "usage: jitrctl report expiring --days N [--ca NAME] [--json | --csv]\n"
    "\n"
    "Lists the valid certificates (not revoked, not superseded by a renewal) whose notAfter is\n"
    "within the next N days (1..36500), earliest first, of every CA or of --ca NAME: serial,\n"
    "CN, the AWS IoT thing and AWS status as JITR recorded them (\"-\" when JITR never saw the\n"
    "certificate), CA, notAfter and the days left. --json prints an array, --csv a header line\n"
    "and one line per certificate (RFC 4180 quoting).\n";

struct row {
    char *serial, *cn, *ca, *not_after, *cert_id;
    char *thing, *aws_status; /* NULL when JITR has no record */
    int64_t expires;          /* notAfter, Unix seconds */
};

static void row_free(struct row *r)
{
    xfree(r->serial);
    xfree(r->cn);
    xfree(r->ca);
    xfree(r->not_after);
    xfree(r->cert_id);
    xfree(r->thing);
    xfree(r->aws_status);
}

/* The thing and the AWS status of certificate cert_id as JITR records them (jitr:dev:<id>, its
 * fields thing and aws_status; docs/redis.md): the one place this report reads JITR's state.
 * Both NULL when JITR has no record of it. */
static int report_aws_of(struct store *st, const char *cert_id, char **thing, char **aws_status,
                         struct err *e)
{
    static const char *const fields[] = { "thing", "aws_status" };
    char key[STORE_KEY_MAX];
    char *v[2] = { NULL, NULL };
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", cert_id);
    if (store_hmget(st, key, fields, 2, v, e) != 0) {
        return -1;
    }
    *thing = v[0] && v[0][0] ? v[0] : NULL;
    *aws_status = v[1] && v[1][0] ? v[1] : NULL;
    if (*thing == NULL) {
        xfree(v[0]);
    }
    if (*aws_status == NULL) {
        xfree(v[1]);
    }
    return 0;
}

static int cmp_row(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    if (x->expires != y->expires) {
        return x->expires < y->expires ? -1 : 1;
    }
    return strcmp(x->serial, y->serial);
}

/* The rows of CA ca expiring in [now, to], appended to *rows. */
static int collect(struct store *st, const char *ca, int64_t now, int64_t to, struct row **rows,
                   size_t *n, size_t *cap, struct err *e)
{
    struct store_expiring *v = NULL;
    size_t nv = 0;
    int rc = 0;
    if (store_expiry_range(st, ca, now, to, &v, &nv, e) != 0) {
        return -1;
    }
    for (size_t i = 0; rc == 0 && i < nv; i++) {
        struct store_cert_rec rec;
        struct row r = { 0 };
        if (store_cert_read(st, v[i].serial, &rec, e) != 0) {
            if (e->code != ERRC_NOT_FOUND) {
                rc = -1;
            }
            err_clear(e);
            continue;
        }
        /* the set follows the index; the record is what counts */
        if (store_cert_rec_valid(&rec) && rec.superseded_by[0] == '\0') {
            r.serial = xstrdup(rec.serial);
            r.cn = xstrdup(rec.cn);
            r.ca = xstrdup(rec.ca);
            r.not_after = xstrdup(rec.not_after);
            r.cert_id = xstrdup(rec.fingerprint);
            r.expires = v[i].not_after;
            if (report_aws_of(st, rec.fingerprint, &r.thing, &r.aws_status, e) != 0) {
                rc = -1;
                row_free(&r);
            } else {
                if (*n == *cap) {
                    *cap = *cap ? *cap * 2 : 64;
                    *rows = xrealloc(*rows, *cap * sizeof(**rows));
                }
                (*rows)[(*n)++] = r;
            }
        }
        store_cert_rec_release(&rec);
    }
    store_expiring_free(v, nv);
    return rc;
}

/* A CSV field (RFC 4180): quoted when it holds a comma, quote or line break. */
static void csv_field(const char *s, bool last)
{
    if (s && strpbrk(s, ",\"\r\n")) {
        putchar('"');
        for (const char *p = s; *p; p++) {
            if (*p == '"') {
                putchar('"');
            }
            putchar(*p);
        }
        putchar('"');
    } else {
        fputs(s ? s : "", stdout);
    }
    fputs(last ? "\r\n" : ",", stdout);
}

static int report_expiring(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option own[] = { { "days", required_argument, NULL, 'd' },
                                         { "ca", required_argument, NULL, 'c' },
                                         { "csv", no_argument, NULL, 'v' },
                                         { NULL, 0, NULL, 0 } };
    int optidx = 0, ch, rc = -1;
    uint64_t days = 0;
    bool have_days = false, csv = false;
    const char *only = NULL;
    const struct conf *c;
    struct store *st = NULL;
    char **names = NULL;
    size_t nnames = 0, n = 0, cap = 0;
    struct row *rows = NULL;
    int64_t now = (int64_t)time(NULL);
    while ((ch = cli_getopt(cli, argc, argv, own, &optidx, e)) != -1) {
        switch (ch) {
        case 'h':
            return cli_usage(report_usage);
        case 'd':
            if (str_to_u64(optarg, &days) != 0 || days < 1 || days > 36500) {
                return err_set(e, ERRC_INVALID, "--days must be 1 to 36500, not '%s'", optarg);
            }
            have_days = true;
            break;
        case 'c':
            only = optarg;
            break;
        case 'v':
            csv = true;
            break;
        default:
            return -1;
        }
    }
    if (optidx != argc) {
        return err_set(e, ERRC_INVALID, "report expiring takes no arguments besides its options");
    }
    if (!have_days) {
        return err_set(e, ERRC_INVALID, "report expiring needs --days N");
    }
    if (csv && cli->json) {
        return err_set(e, ERRC_INVALID, "--csv and --json exclude each other");
    }
    if ((c = cli_conf(cli, e)) == NULL) {
        return -1;
    }
    if (only) {
        struct ca_authority *a = ca_authority_load(c->data_dir, only, e);
        if (a == NULL) {
            return -1;
        }
        ca_authority_free(a);
        names = xcalloc(1, sizeof(*names));
        names[0] = xstrdup(only);
        nnames = 1;
    } else if (ca_authority_list(c->data_dir, &names, &nnames, e) != 0) {
        return -1;
    }
    if (cli_index_ensure(cli, e) != 0 || (st = store_connect(c->redis_url, e)) == NULL) {
        goto out;
    }
    for (size_t i = 0; i < nnames; i++) {
        if (collect(st, names[i], now, now + (int64_t)days * 86400, &rows, &n, &cap, e) != 0) {
            goto out;
        }
    }
    if (n > 1) {
        qsort(rows, n, sizeof(*rows), cmp_row);
    }
    if (cli->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "serial", rows[i].serial, "cn",
                                  rows[i].cn, "ca", rows[i].ca, "not_after", rows[i].not_after,
                                  "certificate_id", rows[i].cert_id, "days_left",
                                  (json_int_t)((rows[i].expires - now) / 86400));
            json_object_set_new(o, "thing",
                                rows[i].thing ? json_string(rows[i].thing) : json_null());
            json_object_set_new(o, "aws_status",
                                rows[i].aws_status ? json_string(rows[i].aws_status) : json_null());
            json_array_append_new(arr, o);
        }
        cli_print_json(arr);
    } else if (csv) {
        fputs("serial,cn,thing,ca,not_after,aws_status\r\n", stdout);
        for (size_t i = 0; i < n; i++) {
            csv_field(rows[i].serial, false);
            csv_field(rows[i].cn, false);
            csv_field(rows[i].thing, false);
            csv_field(rows[i].ca, false);
            csv_field(rows[i].not_after, false);
            csv_field(rows[i].aws_status, true);
        }
    } else {
        printf("%-20s %5s %-40s %-24s %-24s %-16s %s\n", "NOT AFTER", "DAYS", "SERIAL", "CN",
               "THING", "CA", "AWS STATUS");
        for (size_t i = 0; i < n; i++) {
            printf("%-20s %5lld %-40s %-24s %-24s %-16s %s\n", rows[i].not_after,
                   (long long)((rows[i].expires - now) / 86400), rows[i].serial, rows[i].cn,
                   rows[i].thing ? rows[i].thing : "-", rows[i].ca,
                   rows[i].aws_status ? rows[i].aws_status : "-");
        }
        fprintf(stderr, "%zu certificate(s) expire within %llu days\n", n,
                (unsigned long long)days);
    }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++) {
        row_free(&rows[i]);
    }
    xfree(rows);
    for (size_t i = 0; i < nnames; i++) {
        xfree(names[i]);
    }
    xfree(names);
    store_free(st);
    return rc;
}

int cmd_report(struct cli *cli, int argc, char **argv, struct err *e)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc < 2) {
            fputs(report_usage, stderr);
            return err_set(e, ERRC_INVALID, "report needs a subcommand");
        }
        return cli_usage(report_usage);
    }
    optind = 0;
    if (strcmp(argv[1], "expiring") == 0) {
        return report_expiring(cli, argc - 1, argv + 1, e);
    }
    return err_set(e, ERRC_INVALID, "unknown report '%s' (see jitrctl report --help)", argv[1]);
}
