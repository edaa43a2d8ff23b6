/*
 * jitrctl sign: one CSR in, the certificate out (PEM on stdout or --out), issued through the
 * same path as the signing API: audited durably and indexed before it is printed.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"

static const char sign_usage[] =
    "usage: jitrctl sign --csr FILE [--profile P] [--ca NAME] [--chain] [--out FILE]\n"
    "\n"
    "Signs one PKCS#10 CSR (PEM or DER) and prints the certificate (PEM).\n"
    "  --csr FILE     the CSR ('-' for standard input)\n"
    "  --profile P    certificate profile (default: the config's default_profile)\n"
    "  --ca NAME      issuing CA (default: the config's default_ca, else the only active CA)\n"
    "  --chain        append the CA chain after the certificate\n"
    "  --out FILE     write there instead of standard output\n"
    "With --json: {serial, certificateId, subject, notAfter, certificate, chain}.\n";

static int read_input(const char *path, struct buf *out, struct err *e)
{
    if (strcmp(path, "-") != 0) {
        return file_read_all(path, CA_CSR_MAX * 4, out, e);
    }
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
        buf_add(out, chunk, n);
        if (out->len > CA_CSR_MAX * 4) {
            return err_set(e, ERRC_TOO_LARGE, "standard input is larger than %d bytes",
                           CA_CSR_MAX * 4);
        }
    }
    return 0;
}

int cmd_sign(struct cli *cli, int argc, char **argv, struct err *e)
{
    enum { O_CSR = 1, O_PROFILE, O_CA, O_CHAIN, O_OUT };
    static const struct option opts[] = {
        { "csr", required_argument, NULL, O_CSR },
        { "profile", required_argument, NULL, O_PROFILE },
        { "ca", required_argument, NULL, O_CA },
        { "chain", no_argument, NULL, O_CHAIN },
        { "out", required_argument, NULL, O_OUT },
        { NULL, 0, NULL, 0 },
    };
    const char *csr_path = NULL, *profile = NULL, *ca = NULL, *out_path = NULL;
    bool chain = false;
    struct buf csr = BUF_INIT, pem = BUF_INIT;
    struct issuance_ctx *ctx = NULL;
    struct issuance_item it = { 0 };
    const struct conf *c;
    char what[300];
    int rc = -1, optidx = 0, ch;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        switch (ch) {
        case 'h':
            return cli_usage(sign_usage);
        case O_CSR:
            csr_path = optarg;
            break;
        case O_PROFILE:
            profile = optarg;
            break;
        case O_CA:
            ca = optarg;
            break;
        case O_CHAIN:
            chain = true;
            break;
        case O_OUT:
            out_path = optarg;
            break;
        default:
            return -1;
        }
    }
    if (csr_path == NULL || optidx != argc) {
        return err_set(e, ERRC_INVALID, "usage: jitrctl sign --csr FILE [options]");
    }
    if ((c = cli_conf(cli, e)) == NULL || read_input(csr_path, &csr, e) != 0 ||
        cli_index_ensure(cli, e) != 0) {
        goto out;
    }
    ctx = issuance_ctx_open(c, ca, cli->passphrase_file, e);
    snprintf(what, sizeof(what), "CSR '%s' rejected", csr_path);
    if (ctx == NULL || issuance_sign_one(ctx, (const uint8_t *)csr.data, csr.len, profile, what,
                                         &it, e) != 0) {
        goto out;
    }
    ca_der_to_pem(&pem, it.cert.der, it.cert.der_len);
    if (it.validity_clamped) {
        fprintf(stderr,
                "jitrctl: warning: the certificate ends at %s, when CA '%s' does, before its "
                "profile's validity\n",
                it.not_after, ctx->ca->name);
    }
    if (cli->json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "serial", it.cert.serial_hex,
                              "certificateId", it.cert.fingerprint, "subject", it.subject,
                              "notAfter", it.not_after, "certificate", pem.data, "chain",
                              buf_cstr(&ctx->chain_pem));
        if (it.validity_clamped) {
            json_object_set_new(o, "validity_clamped", json_true());
        }
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        buf_reset(&pem);
        buf_addstr(&pem, s);
        buf_addch(&pem, '\n');
        xfree(s);
        json_decref(o);
    } else if (chain) {
        buf_add(&pem, ctx->chain_pem.data, ctx->chain_pem.len);
    }
    if (out_path) {
        if (file_write_atomic(out_path, pem.data, pem.len, 0644, false, e) != 0) {
            goto out;
        }
        fprintf(stderr, "issued serial %s (certificateId %s) to %s\n", it.cert.serial_hex,
                it.cert.fingerprint, out_path);
    } else {
        fputs(pem.data, stdout);
    }
    rc = 0;
out:
    issuance_item_release(&it);
    issuance_ctx_free(ctx);
    buf_release(&csr);
    buf_release(&pem);
    return rc;
}
