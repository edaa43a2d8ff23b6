/*
 * jitrctl station: the credentials of factory stations for jitrd's mutual TLS.
 *   issue NAME --out DIR   a P-256 key (0600), a certificate with CN=NAME from the station CA
 *                          (config station_ca, profile "station"), issued through the issuance
 *                          path (audited, indexed), and the station CA's chain
 *   revoke NAME            revokes every certificate issued to the station (revocation library)
 * The serials issued to a station are listed in DATA_DIR/stations/NAME.serials, which is what
 * revoke walks (the index has them too, by CN, but offers no lookup by CN).
 */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "issuance/revoke.h"
#include "store/store.h"

static const char station_usage[] =
    "usage: jitrctl station issue NAME --out DIR [--profile P]\n"
    "       jitrctl station revoke NAME [--reason R]\n"
    "\n"
    "issue   writes DIR/NAME.key (P-256, unencrypted, 0600), DIR/NAME.crt (CN=NAME, issued by\n"
    "        the config's station_ca with profile 'station') and DIR/ca.pem (the station CA\n"
    "        chain); the station presents NAME.crt and NAME.key to jitrd\n"
    "revoke  revokes every certificate issued to station NAME (default reason\n"
    "        cessationOfOperation) and regenerates the station CA's CRL\n"
    "Authorise the station in the stations_file (docs/daemon.md).\n";

static bool station_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) {
            return false;
        }
    }
    return true;
}

static void serials_path(const struct conf *c, const char *name, struct buf *out)
{
    buf_addf(out, "%s/stations/%s.serials", c->data_dir, name);
}

int cli_key_csr(const char *name, struct buf *key_pem, struct buf *csr_pem, struct err *e)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509_REQ *req = X509_REQ_new();
    X509_NAME *nm = X509_NAME_new();
    BIO *kb = BIO_new(BIO_s_mem()), *cb = BIO_new(BIO_s_mem());
    char *p = NULL;
    long n;
    int rc = -1;
    if (pk == NULL || req == NULL || nm == NULL || kb == NULL || cb == NULL) {
        err_openssl(e, ERRC_INTERNAL, "cannot generate a P-256 key");
        goto out;
    }
    if (X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)name, -1, -1,
                                   0) != 1 ||
        X509_REQ_set_subject_name(req, nm) != 1 || X509_REQ_set_pubkey(req, pk) != 1 ||
        X509_REQ_sign(req, pk, EVP_sha256()) <= 0 ||
        PEM_write_bio_PrivateKey(kb, pk, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_X509_REQ(cb, req) != 1) {
        err_openssl(e, ERRC_INTERNAL, "cannot build the CSR for '%s'", name);
        goto out;
    }
    n = BIO_get_mem_data(kb, &p);
    buf_add(key_pem, p, (size_t)n);
    n = BIO_get_mem_data(cb, &p);
    buf_add(csr_pem, p, (size_t)n);
    rc = 0;
out:
    BIO_free(kb);
    BIO_free(cb);
    X509_NAME_free(nm);
    X509_REQ_free(req);
    EVP_PKEY_free(pk);
    return rc;
}

static int station_issue(struct cli *cli, const char *name, const char *dir, const char *profile,
                         struct err *e)
{
    struct buf key = BUF_INIT, csr = BUF_INIT, pem = BUF_INIT, path = BUF_INIT, list = BUF_INIT;
    struct issuance_ctx *ctx = NULL;
    struct issuance_item it = { 0 };
    const struct conf *c;
    char what[300];
    int rc = -1;
    if ((c = cli_conf(cli, e)) == NULL || cli_index_ensure(cli, e) != 0) {
        goto out;
    }
    if (*c->station_ca == '\0') {
        err_set(e, ERRC_INVALID, "the configuration names no station_ca");
        goto out;
    }
    if (file_mkdirs(dir, 0700, e) != 0 || cli_key_csr(name, &key, &csr, e) != 0) {
        goto out;
    }
    ctx = issuance_ctx_open(c, c->station_ca, cli->passphrase_file, e);
    snprintf(what, sizeof(what), "station '%s'", name);
    if (ctx == NULL || issuance_sign_one(ctx, (const uint8_t *)csr.data, csr.len, profile, what,
                                         &it, e) != 0) {
        goto out;
    }
    /* the serial list first: a certificate that was handed out can always be revoked */
    serials_path(c, name, &path);
    buf_addf(&list, "%s/stations", c->data_dir);
    if (file_mkdirs(list.data, 0750, e) != 0) {
        goto out;
    }
    buf_reset(&list);
    if (file_exists(path.data) && file_read_all(path.data, 1 << 20, &list, e) != 0) {
        goto out;
    }
    buf_addf(&list, "%s\n", it.cert.serial_hex);
    if (file_write_atomic(path.data, list.data, list.len, 0640, false, e) != 0) {
        goto out;
    }
    buf_reset(&path);
    buf_addf(&path, "%s/%s.key", dir, name);
    if (file_write_atomic(path.data, key.data, key.len, 0600, true, e) != 0) {
        goto out;
    }
    ca_der_to_pem(&pem, it.cert.der, it.cert.der_len);
    buf_reset(&path);
    buf_addf(&path, "%s/%s.crt", dir, name);
    if (file_write_atomic(path.data, pem.data, pem.len, 0644, false, e) != 0) {
        goto out;
    }
    buf_reset(&path);
    buf_addf(&path, "%s/ca.pem", dir);
    if (file_write_atomic(path.data, ctx->chain_pem.data, ctx->chain_pem.len, 0644, false, e) !=
        0) {
        goto out;
    }
    if (cli->json) {
        cli_print_json(json_pack("{s:s,s:s,s:s,s:s}", "station", name, "serial",
                                 it.cert.serial_hex, "certificateId", it.cert.fingerprint,
                                 "notAfter", it.not_after));
    } else {
        printf("station %s: serial %s, certificate %s/%s.crt, key %s/%s.key, CA chain %s/ca.pem\n",
               name, it.cert.serial_hex, dir, name, dir, name, dir);
    }
    rc = 0;
out:
    buf_release_secret(&key);
    buf_release(&csr);
    buf_release(&pem);
    buf_release(&path);
    buf_release(&list);
    issuance_item_release(&it);
    issuance_ctx_free(ctx);
    return rc;
}

static int station_revoke(struct cli *cli, const char *name, const char *reason_name,
                          struct err *e)
{
    struct buf path = BUF_INIT, list = BUF_INIT;
    struct issuance_revoker *rv = NULL;
    struct store *st = NULL;
    enum ca_crl_reason reason = CA_CRL_CESSATION_OF_OPERATION;
    const struct conf *c;
    char who[300];
    size_t revoked = 0, already = 0;
    int rc = -1;
    if ((c = cli_conf(cli, e)) == NULL || cli_index_ensure(cli, e) != 0) {
        goto out;
    }
    if (reason_name && ca_crl_reason_parse(reason_name, &reason, e) != 0) {
        goto out;
    }
    serials_path(c, name, &path);
    if (!file_exists(path.data)) {
        err_set(e, ERRC_NOT_FOUND, "no certificate was issued to station '%s' here", name);
        goto out;
    }
    if (file_read_all(path.data, 1 << 20, &list, e) != 0) {
        goto out;
    }
    rv = issuance_revoker_new(c, NULL, cli->passphrase_file, e);
    if (rv == NULL || (st = store_connect(c->redis_url, e)) == NULL) {
        goto out;
    }
    issuance_cli_requester(who, sizeof(who));
    for (char *line = list.data; line && *line;) {
        char *eol = strchr(line, '\n');
        if (eol) {
            *eol = '\0';
        }
        if (*line) {
            struct issuance_revocation r = { 0 };
            r.serial = line;
            r.ca = c->station_ca;
            r.reason = reason;
            r.requester = who;
            if (issuance_revoke(rv, st, &r, e) != 0) {
                err_prefix(e, "station '%s' serial %s", name, line);
                goto out;
            }
            if (r.already_revoked) {
                already++;
            } else {
                revoked++;
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    if (cli->json) {
        cli_print_json(json_pack("{s:s,s:I,s:I}", "station", name, "revoked", (json_int_t)revoked,
                                 "alreadyRevoked", (json_int_t)already));
    } else {
        printf("station %s: %zu certificate(s) revoked, %zu already revoked\n", name, revoked,
               already);
    }
    rc = 0;
out:
    store_free(st);
    issuance_revoker_free(rv);
    buf_release(&path);
    buf_release(&list);
    return rc;
}

int cmd_station(struct cli *cli, int argc, char **argv, struct err *e)
{
    enum { O_OUT = 1, O_PROFILE, O_REASON };
    static const struct option opts[] = {
        { "out", required_argument, NULL, O_OUT },
        { "profile", required_argument, NULL, O_PROFILE },
        { "reason", required_argument, NULL, O_REASON },
        { NULL, 0, NULL, 0 },
    };
    const char *out = NULL, *profile = "station", *reason = NULL;
    int optidx = 0, ch;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        switch (ch) {
        case 'h':
            return cli_usage(station_usage);
        case O_OUT:
            out = optarg;
            break;
        case O_PROFILE:
            profile = optarg;
            break;
        case O_REASON:
            reason = optarg;
            break;
        default:
            return -1;
        }
    }
    if (argc - optidx != 2) {
        return err_set(e, ERRC_INVALID, "usage: jitrctl station issue|revoke NAME [options]");
    }
    const char *sub = argv[optidx], *name = argv[optidx + 1];
    if (!station_name_ok(name)) {
        return err_set(e, ERRC_INVALID,
                       "station name '%s' must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}", name);
    }
    if (strcmp(sub, "issue") == 0) {
        if (out == NULL) {
            return err_set(e, ERRC_INVALID, "station issue needs --out DIR");
        }
        return station_issue(cli, name, out, profile, e);
    }
    if (strcmp(sub, "revoke") == 0) {
        return station_revoke(cli, name, reason, e);
    }
    return err_set(e, ERRC_INVALID, "unknown station command '%s' (issue, revoke)", sub);
}
