/*
 * jitrctl crl: regenerates a CA's CRL through issuance_crl_regenerate() (new number, audited,
 * published to DATA_DIR/ca/NAME/crl.{pem,der}) and prints it; --refresh is the schedule for
 * installations without jitrd (cron): every CA whose CRL is due gets a new one.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "issuance/revoke.h"
#include "store/store.h"

static const char crl_usage[] =
    "usage: jitrctl crl [--ca NAME] [--out FILE] [--der]\n"
    "       jitrctl crl --refresh\n"
    "\n"
    "Regenerates the CA's CRL (v2, a new CRL number, every revoked serial with its reason),\n"
    "audits it, writes DATA_DIR/ca/NAME/crl.pem and crl.der, and prints it. Needs the CA's key.\n"
    "  --ca NAME    the CA (default: the config's default_ca, else the only active CA)\n"
    "  --out FILE   write the CRL there instead of standard output\n"
    "  --der        DER instead of PEM\n"
    "  --refresh    regenerate the CRL of every CA whose CRL is missing or past half of its\n"
    "               validity (crl_validity_hours); for cron when jitrd does not run\n"
    "With --json: {ca, number, thisUpdate, nextUpdate, entries, path, crl (PEM)}; with\n"
    "--refresh: {regenerated}.\n";

static int crl_refresh(struct cli *cli, struct issuance_revoker *rv, struct store *s,
                       const char *who, struct err *e)
{
    size_t n = 0;
    if (issuance_crl_refresh_if_due(rv, s, time(NULL), who, &n, e) != 0) {
        return -1;
    }
    if (cli->json) {
        cli_print_json(json_pack("{s:I}", "regenerated", (json_int_t)n));
    } else {
        printf("%zu CRL%s regenerated\n", n, n == 1 ? "" : "s");
    }
    return 0;
}

int cmd_crl(struct cli *cli, int argc, char **argv, struct err *e)
{
    enum {
        O_CA = 1,
        O_OUT,
        O_DER,
        O_REFRESH
    };
    static const struct option opts[] = {
        { "ca", required_argument, NULL, O_CA },
        { "out", required_argument, NULL, O_OUT },
        { "der", no_argument, NULL, O_DER },
        { "refresh", no_argument, NULL, O_REFRESH },
        { NULL, 0, NULL, 0 },
    };
    const char *ca = NULL, *out_path = NULL;
    bool der = false, refresh = false;
    char *name = NULL;
    struct issuance_revoker *rv = NULL;
    struct issuance_crl crl = { 0 };
    struct store *s = NULL;
    const struct conf *c;
    char who[300], tu[24], nu[24];
    int rc = -1, optidx = 0, ch;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        switch (ch) {
        case 'h':
            return cli_usage(crl_usage);
        case O_CA:
            ca = optarg;
            break;
        case O_OUT:
            out_path = optarg;
            break;
        case O_DER:
            der = true;
            break;
        case O_REFRESH:
            refresh = true;
            break;
        default:
            return -1;
        }
    }
    if (optidx != argc) {
        return err_set(e, ERRC_INVALID, "usage: jitrctl crl [--ca NAME] [--out FILE] [--der]");
    }
    if (refresh && (ca || out_path || der)) {
        return err_set(e, ERRC_INVALID, "--refresh takes no --ca, --out or --der");
    }
    if (der && out_path == NULL && !cli->json && isatty(STDOUT_FILENO)) {
        return err_set(e, ERRC_INVALID, "not writing DER to a terminal: use --out FILE");
    }
    if ((c = cli_conf(cli, e)) == NULL || cli_index_ensure(cli, e) != 0 ||
        (s = store_connect(c->redis_url, e)) == NULL ||
        (rv = issuance_revoker_new(c, NULL, cli->passphrase_file, e)) == NULL) {
        goto out;
    }
    issuance_cli_requester(who, sizeof(who));
    if (refresh) {
        rc = crl_refresh(cli, rv, s, who, e);
        goto out;
    }
    if ((name = issuance_ca_pick(c, ca, e)) == NULL ||
        issuance_crl_regenerate(rv, s, name, who, &crl, e) != 0) {
        goto out;
    }
    time_format_rfc3339(crl.this_update, tu, sizeof(tu));
    time_format_rfc3339(crl.next_update, nu, sizeof(nu));
    if (out_path) {
        const struct buf *b = der ? &crl.der : &crl.pem;
        if (file_write_atomic(out_path, b->data, b->len, 0644, false, e) != 0) {
            goto out;
        }
    }
    if (cli->json) {
        struct buf path = BUF_INIT;
        buf_addf(&path, "%s/ca/%s/crl.pem", c->data_dir, name);
        cli_print_json(json_pack("{s:s,s:I,s:s,s:s,s:I,s:s,s:s}", "ca", name, "number",
                                 (json_int_t)crl.number, "thisUpdate", tu, "nextUpdate", nu,
                                 "entries", (json_int_t)crl.entries, "path", path.data, "crl",
                                 crl.pem.data));
        buf_release(&path);
    } else if (out_path == NULL) {
        const struct buf *b = der ? &crl.der : &crl.pem;
        fwrite(b->data, 1, b->len, stdout);
    }
    fprintf(stderr, "CRL %llu of CA %s: %zu revoked, next update %s\n",
            (unsigned long long)crl.number, name, crl.entries, nu);
    rc = 0;
out:
    issuance_crl_release(&crl);
    issuance_revoker_free(rv);
    store_free(s);
    xfree(name);
    return rc;
}
