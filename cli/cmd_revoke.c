/*
 * jitrctl revoke SERIAL|CERTIFICATE_ID [--reason R] [--ca NAME]: revokes an issued certificate
 * through issuance_revoke() (audited first, then indexed, then the CA's CRL regenerated), the same
 * path as jitrd's POST /v1/revoke. Revoking a revoked certificate changes nothing and succeeds.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "issuance/issuance.h"
#include "issuance/revoke.h"
#include "store/store.h"

static const char revoke_usage[] =
    "usage: jitrctl revoke SERIAL|CERTIFICATE_ID [--reason R] [--ca NAME]\n"
    "\n"
    "Revokes an issued certificate: an audit record first, then the index (status revoked),\n"
    "then the CA's CRL is regenerated (DATA_DIR/ca/NAME/crl.pem and crl.der). Needs the CA's\n"
    "key (passphrase or PIN as for sign). Revoking a revoked certificate changes nothing.\n"
    "  SERIAL       hex serial as issued (any case; ':' separators and the output of\n"
    "               'openssl x509 -serial' work), or the 64-hex certificateId\n"
    "  --reason R   unspecified (default), keyCompromise, cACompromise, affiliationChanged,\n"
    "               superseded, cessationOfOperation, privilegeWithdrawn, aACompromise\n"
    "               (certificateHold is refused: revocation is permanent)\n"
    "  --ca NAME    the CA that issued it (default: the one the index records; checked)\n"
    "With --json: {serial, certificateId, ca, reason, revoked_at, already_revoked, seq,\n"
    "crl_number}.\n";

int cmd_revoke(struct cli *cli, int argc, char **argv, struct err *e)
{
    enum {
        O_REASON = 1,
        O_CA
    };
    static const struct option opts[] = {
        { "reason", required_argument, NULL, O_REASON },
        { "ca", required_argument, NULL, O_CA },
        { NULL, 0, NULL, 0 },
    };
    const char *reason = "unspecified", *ca = NULL;
    struct issuance_revocation r;
    struct issuance_revoker *rv = NULL;
    struct store *s = NULL;
    const struct conf *c;
    const char *rname;
    char who[300];
    int rc = -1, optidx = 0, ch;
    memset(&r, 0, sizeof(r));
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        switch (ch) {
        case 'h':
            return cli_usage(revoke_usage);
        case O_REASON:
            reason = optarg;
            break;
        case O_CA:
            ca = optarg;
            break;
        default:
            return -1;
        }
    }
    if (optidx != argc - 1) {
        return err_set(e, ERRC_INVALID,
                       "usage: jitrctl revoke SERIAL|CERTIFICATE_ID [--reason R] [--ca NAME]");
    }
    if (ca_crl_reason_parse(reason, &r.reason, e) != 0) {
        return -1;
    }
    if ((c = cli_conf(cli, e)) == NULL || cli_index_ensure(cli, e) != 0 ||
        (s = store_connect(c->redis_url, e)) == NULL ||
        (rv = issuance_revoker_new(c, NULL, cli->passphrase_file, e)) == NULL) {
        goto out;
    }
    issuance_cli_requester(who, sizeof(who));
    r.serial = argv[optidx];
    r.ca = ca;
    r.requester = who;
    if (issuance_revoke(rv, s, &r, e) != 0) {
        goto out;
    }
    rname = ca_crl_reason_name(r.reason_recorded);
    if (cli->json) {
        json_t *o =
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:I}", "serial", r.serial_hex, "certificateId",
                      r.fingerprint, "ca", r.ca_name, "reason", rname ? rname : "", "revoked_at",
                      r.revoked_at, "already_revoked", r.already_revoked, "seq", (json_int_t)r.seq);
        json_object_set_new(o, "crl_number",
                            r.crl_written ? json_integer((json_int_t)r.crl_number) : json_null());
        cli_print_json(o);
    } else if (r.already_revoked) {
        printf("serial %s of CA %s was already revoked at %s (%s); nothing changed\n", r.serial_hex,
               r.ca_name, r.revoked_at, rname ? rname : "?");
    } else {
        printf("revoked serial %s of CA %s (%s) at %s\n", r.serial_hex, r.ca_name,
               rname ? rname : "?", r.revoked_at);
        if (r.crl_written) {
            printf("CRL %llu of CA %s written to %s/ca/%s/crl.pem\n",
                   (unsigned long long)r.crl_number, r.ca_name, c->data_dir, r.ca_name);
        }
    }
    if (!r.already_revoked && !r.crl_written) {
        err_copy(e, &r.crl_err);
        err_prefix(e,
                   "serial %s is revoked, but the CRL of CA '%s' was not regenerated (run "
                   "'jitrctl crl --ca %s')",
                   r.serial_hex, r.ca_name, r.ca_name);
        goto out;
    }
    rc = 0;
out:
    issuance_revoker_free(rv);
    store_free(s);
    return rc;
}
