/*
 * jitrctl ca ocsp-signer CA [--days N]: issues the CA's delegated OCSP responder certificate
 * (ca/ocsp.h, ca_ocsp_signer_issue) for a new P-256 key, and puts both where jitrd looks for
 * them (DATA_DIR/ca/NAME/ocsp-signer.pem, ocsp-signer.key: a file: key under the passphrase
 * jitrd reads for file: CA keys). Running it again replaces them (a renewal); jitrd uses the new
 * one after SIGHUP. The serial is reserved in Redis like a device certificate's, and the
 * certificate is in the audit log (type ca_ocsp_signer) before it is written.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ca/ocsp.h"
#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "store/store.h"

#define SIGNER_DAYS_DEFAULT 30

/* A serial of the CA's that nothing else holds (SET NX in Redis). */
static int reserve_serial(const struct conf *c, const char *ca, uint8_t *serial, size_t *len,
                          char hex[41], struct err *e)
{
    struct ca_signer *sg = ca_signer_new();
    struct store *st = store_connect(c->redis_url, e);
    int rc = -1;
    for (int tries = 0; st != NULL && tries < 8; tries++) {
        const char *v[1] = { hex };
        bool taken = false;
        if (ca_serial_draw(sg, serial, len, e) != 0) {
            break;
        }
        hex_encode(serial, *len, hex);
        if (store_serials_reserve(st, ca, v, 1, &taken, e) != 0) {
            break;
        }
        if (!taken) {
            rc = 0;
            break;
        }
    }
    if (rc != 0 && e->code == ERRC_OK) {
        err_set(e, ERRC_INTERNAL, "no free serial after 8 draws");
    }
    store_free(st);
    ca_signer_free(sg);
    return rc;
}

int cmd_ca_ocsp_signer(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option own[] = { { "days", required_argument, NULL, 'd' },
                                         { NULL, 0, NULL, 0 } };
    int optidx = 0, ch, rc = -1;
    uint64_t days = SIGNER_DAYS_DEFAULT;
    const struct conf *c;
    struct issuance_ctx *ctx = NULL;
    struct ca_key *key = NULL;
    struct ca_key_opts ko = { 0 };
    struct buf dir = BUF_INIT, keytmp = BUF_INIT, keypath = BUF_INIT, certpath = BUF_INIT;
    struct buf secret = BUF_INIT, der = BUF_INIT, pem = BUF_INIT, uri = BUF_INIT;
    uint8_t serial[CA_SERIAL_MAX];
    size_t slen = 0;
    char hex[41], fp[65], na[32];
    time_t now = time(NULL);
    json_t *fields = NULL;
    while ((ch = cli_getopt(cli, argc, argv, own, &optidx, e)) != -1) {
        if (ch == 'h') {
            return cli_usage("usage: jitrctl ca ocsp-signer NAME [--days N]\n"
                             "Issues CA NAME's delegated OCSP responder certificate (valid N "
                             "days, default 30) for a new key;\n"
                             "jitrd signs NAME's OCSP answers with it after SIGHUP.\n");
        }
        if (ch == 'd' && str_to_u64(optarg, &days) == 0 && days >= 1 && days <= 3650) {
            continue;
        }
        if (ch == 'd') {
            return err_set(e, ERRC_INVALID, "--days must be 1 to 3650, not '%s'", optarg);
        }
        return -1;
    }
    if (optidx != argc - 1) {
        return err_set(e, ERRC_INVALID, "ca ocsp-signer takes one NAME (see jitrctl ca --help)");
    }
    const char *name = argv[optidx];
    if ((c = cli_conf(cli, e)) == NULL ||
        (ctx = issuance_ctx_open(c, name, cli->passphrase_file, e)) == NULL) {
        goto out;
    }
    if (cli_index_ensure(cli, e) != 0) {
        goto out;
    }
    buf_addf(&dir, "%s/ca/%s", c->data_dir, name);
    buf_addf(&keypath, "%s/" CA_OCSP_SIGNER_KEY, dir.data);
    buf_addf(&keytmp, "%s/" CA_OCSP_SIGNER_KEY ".new", dir.data);
    buf_addf(&certpath, "%s/" CA_OCSP_SIGNER_CERT, dir.data);
    buf_addf(&uri, "file:%s", keytmp.data);
    if (issuance_secret_load(c, "file:", cli->passphrase_file, &secret, e) != 0) {
        goto out;
    }
    ko.secret = secret.len ? secret.data : NULL;
    (void)unlink(keytmp.data); /* a run that died before its rename */
    if ((key = ca_key_generate(CA_KEY_EC_P256, uri.data, &ko, e)) == NULL ||
        reserve_serial(c, name, serial, &slen, hex, e) != 0 ||
        ca_ocsp_signer_issue(ctx->ca->cert, ca_key_pkey(ctx->key), ca_key_pkey(key), serial, slen,
                             (int)days, now, &der, e) != 0) {
        goto fail;
    }
    sha256_hex(der.data, der.len, fp);
    ca_der_to_pem(&pem, (const uint8_t *)der.data, der.len);
    time_format_rfc3339(now + (time_t)days * 86400, na, sizeof(na));
    fields = json_pack("{s:s,s:s,s:s,s:s}", "serial", hex, "fingerprint", fp, "not_after", na,
                       "certificate", buf_cstr(&pem));
    /* audited before it exists anywhere else */
    if (issuance_audit_ca_op(c, "ca_ocsp_signer", name, fields, e) != 0) {
        goto fail;
    }
    if (rename(keytmp.data, keypath.data) != 0) {
        err_errno(e, ERRC_INTERNAL, "cannot rename %s to %s", keytmp.data, keypath.data);
        goto fail;
    }
    if (file_write_atomic(certpath.data, pem.data, pem.len, 0644, false, e) != 0 ||
        file_fsync_dir(dir.data, e) != 0) {
        goto out;
    }
    if (cli->json) {
        cli_print_json(json_pack("{s:s,s:s,s:s,s:s,s:s}", "ca", name, "serial", hex, "fingerprint",
                                 fp, "not_after", na, "certificate", certpath.data));
    } else {
        printf("OCSP responder certificate of CA '%s': serial %s, valid until %s\n  %s\n"
               "jitrd signs this CA's OCSP answers with it after SIGHUP\n",
               name, hex, na, certpath.data);
    }
    rc = 0;
    goto out;
fail:
    if (key != NULL) {
        (void)unlink(keytmp.data);
    }
out:
    json_decref(fields);
    ca_key_free(key);
    issuance_ctx_free(ctx);
    buf_release_secret(&secret);
    buf_release(&der);
    buf_release(&pem);
    buf_release(&uri);
    buf_release(&dir);
    buf_release(&keytmp);
    buf_release(&keypath);
    buf_release(&certpath);
    return rc;
}
