/*
 * jitrctl ca cross-sign NEW --by OLD (docs/operations.md, "Rotating the root"): OLD signs a
 * certificate for NEW's subject and key, so that devices which trust only OLD accept chains of
 * NEW (and of the CAs under it) while they learn to trust NEW. Audited (ca_cross_sign, with the
 * certificate) before it is written to DATA/ca/NEW/cross-OLD.pem and recorded in NEW's ca.json;
 * unless --no-chain, the chains handed out for NEW and the CAs under it go up through it.
 */
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "ca/authority.h"
#include "ca/issue.h"
#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"

static const char usage[] =
    "usage: jitrctl ca cross-sign NEW --by OLD [--days N] [--no-chain]\n"
    "                             [--by-passphrase-file FILE]\n"
    "OLD (a CA of the store, typically the root being replaced) signs a certificate for NEW's\n"
    "subject and key: devices that trust only OLD accept chains of NEW and of the CAs under it.\n"
    "It is valid until the earlier notAfter of the two (--days N: shorter), and written to\n"
    "DATA/ca/NEW/cross-OLD.pem. Unless --no-chain, every chain handed out for NEW and the CAs\n"
    "under it (jitrd's replies after a SIGHUP, jitrctl sign --chain) goes up through it to OLD.\n"
    "OLD's pathlen must leave room for NEW and what NEW allows under it. OLD may be retired;\n"
    "a compromised CA is refused either way.\n"
    "  --by-passphrase-file FILE  passphrase of OLD's key if it differs\n";

int cmd_ca_cross_sign(struct cli *cli, int argc, char **argv, struct err *e)
{
    enum { O_BY = 1, O_DAYS, O_NOCHAIN, O_BPF };
    static const struct option own[] = {
        { "by", required_argument, NULL, O_BY },
        { "days", required_argument, NULL, O_DAYS },
        { "no-chain", no_argument, NULL, O_NOCHAIN },
        { "by-passphrase-file", required_argument, NULL, O_BPF },
        { NULL, 0, NULL, 0 },
    };
    const char *by = NULL, *bpf = NULL;
    uint64_t days = 0;
    bool chain = true;
    int optidx = 0, ch, rc = -1;
    struct buf secret = BUF_INIT, pem = BUF_INIT;
    struct ca_authority *old = NULL;
    X509 *x = NULL;
    BIO *bio = NULL;
    json_t *fields = NULL;
    while ((ch = cli_getopt(cli, argc, argv, own, &optidx, e)) != -1) {
        switch (ch) {
        case 'h':
            return cli_usage(usage);
        case O_BY:
            by = optarg;
            break;
        case O_DAYS:
            if (str_to_u64(optarg, &days) != 0 || days == 0 || days > 36500) {
                return err_set(e, ERRC_INVALID, "--days: 1 to 36500, not '%s'", optarg);
            }
            break;
        case O_NOCHAIN:
            chain = false;
            break;
        case O_BPF:
            bpf = optarg;
            break;
        default:
            return -1;
        }
    }
    if (optidx != argc - 1 || by == NULL) {
        return err_set(e, ERRC_INVALID,
                       "usage: jitrctl ca cross-sign NEW --by OLD (jitrctl ca cross-sign -h)");
    }
    const char *name = argv[optidx];
    const struct conf *c = cli_conf(cli, e);
    if (c == NULL || ca_name_check(name, e) != 0 || ca_name_check(by, e) != 0) {
        return -1;
    }
    if ((old = ca_authority_load(c->data_dir, by, e)) == NULL) {
        return -1;
    }
    if (issuance_secret_load(c, old->key_uri, bpf ? bpf : cli->passphrase_file, &secret, e) != 0) {
        goto out;
    }
    {
        struct ca_key_opts ko = { secret.len ? secret.data : NULL, c->pkcs11_module };
        if (ca_authority_cross_sign(c->data_dir, name, by, &ko, (int64_t)days, &x, e) != 0) {
            goto out;
        }
    }
    if ((bio = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_X509(bio, x) != 1) {
        err_set(e, ERRC_INTERNAL, "cannot encode the cross certificate");
        goto out;
    }
    {
        char *p = NULL;
        long n = BIO_get_mem_data(bio, &p);
        buf_add(&pem, p, (size_t)n);
    }
    {
        char sn[131], na[32];
        struct tm tm;
        unsigned char md[32];
        unsigned int mdl = 0;
        char fp[65];
        (void)ca_serial_hex(X509_get0_serialNumber(x), sn, sizeof(sn));
        ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm);
        strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", &tm);
        X509_digest(x, EVP_sha256(), md, &mdl);
        hex_encode(md, mdl, fp);
        fields = json_pack("{s:s,s:s,s:s,s:s,s:s,s:b}", "by", by, "serial", sn, "fingerprint", fp,
                           "not_after", na, "certificate", buf_cstr(&pem), "in_chain", chain);
        /* audit first: a certificate nobody can trace must not exist */
        if (issuance_audit_ca_op(c, "ca_cross_sign", name, fields, e) != 0 ||
            ca_authority_cross_install(c->data_dir, name, by, x, chain, e) != 0) {
            goto out;
        }
        if (cli->json) {
            json_object_del(fields, "certificate");
            json_object_set_new(fields, "ca", json_string(name));
            json_object_set_new(fields, "file",
                                json_sprintf("%s/ca/%s/cross-%s.pem", c->data_dir, name, by));
            cli_print_json(json_incref(fields));
        } else {
            printf("CA '%s' cross-signed by CA '%s': serial %s, valid until %s, %s/ca/%s/"
                   "cross-%s.pem\n",
                   name, by, sn, na, c->data_dir, name, by);
            if (chain) {
                printf("chains of '%s' and the CAs under it now go through it to '%s' (jitrd: "
                       "after a SIGHUP)\n",
                       name, by);
            }
        }
    }
    rc = 0;
out:
    json_decref(fields);
    BIO_free(bio);
    X509_free(x);
    buf_release(&pem);
    buf_release_secret(&secret);
    ca_authority_free(old);
    return rc;
}
