/*
 * jitrctl revoke SERIAL|CERTIFICATE_ID [--reason R] [--ca NAME] [--wait S | --no-wait]: revokes
 * an issued certificate through issuance_revoke() (audited first, then indexed with its AWS job
 * queued, then the CA's CRL regenerated), the same path as jitrd's POST /v1/revoke, and waits
 * for AWS IoT's outcome (the job's record, jobs/revoke.c). Revoking a revoked certificate
 * changes nothing and succeeds. jitrctl release lifts a hold (certificateHold) the same way.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "issuance/revoke.h"
#include "jobs/jobs.h"
#include "store/store.h"

#define WAIT_DEFAULT_S 30

/* Waits up to wait_s for the revoke job of certificate fp that carries the change audited at
 * seq: *out (new) receives {"state", "outcome", "aws_status", "error"}, state "queued" when it
 * did not end in time. */
static int aws_wait(const struct conf *c, const char *fp, uint64_t seq, long wait_s, json_t **out,
                    struct err *e)
{
    char want[24];
    int64_t end = time_now_ms() + wait_s * 1000;
    snprintf(want, sizeof(want), "%llu", (unsigned long long)seq);
    *out = NULL;
    for (;;) {
        json_t *rec = NULL;
        struct err re = ERR_INIT;
        if (jobs_admin_record(c->redis_url, "revoke", fp, &rec, &re) != 0 &&
            re.code != ERRC_NOT_FOUND) {
            err_copy(e, &re);
            return -1;
        }
        if (rec != NULL) {
            const char *st = json_string_value(json_object_get(rec, "state"));
            const char *cs = json_string_value(json_object_get(rec, "change_seq"));
            if (st != NULL && cs != NULL && strcmp(cs, want) == 0 &&
                (strcmp(st, "DONE") == 0 || strcmp(st, "DEAD") == 0)) {
                *out = rec;
                return 0;
            }
            json_decref(rec);
        }
        if (time_now_ms() >= end) {
            *out = json_pack("{s:s}", "state", "queued");
            return 0;
        }
        {
            struct timespec ts = { 0, 200 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
}

static const char *jstr(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

/* Prints AWS IoT's outcome (text) or adds it to o (--json); -1 when the job is dead. */
static int aws_report(const struct conf *c, const char *serial, const char *fp, uint64_t seq,
                      long wait_s, json_t *o, struct err *e)
{
    json_t *rec = NULL;
    int rc = 0;
    bool seen = false;
    if (wait_s >= 0 && (jobs_admin_engine_seen(c->redis_url, "revoke", &seen, e) != 0 || !seen)) {
        if (e->code != ERRC_OK) {
            return -1;
        }
        /* no jitrd ever ran the job engine on this Redis: nothing to wait for */
        if (o) {
            json_object_set_new(o, "aws", json_pack("{s:s}", "state", "queued"));
        } else {
            printf("AWS IoT: queued (no jitrd with jitr.enabled has run the job engine yet)\n");
        }
        return 0;
    }
    if (wait_s < 0) {
        if (o) {
            json_object_set_new(o, "aws", json_pack("{s:s}", "state", "queued"));
        } else {
            printf("AWS IoT: queued (jitrctl cert show %s shows the outcome)\n", serial);
        }
        return 0;
    }
    if (aws_wait(c, fp, seq, wait_s, &rec, e) != 0) {
        return -1;
    }
    if (strcmp(jstr(rec, "state"), "DEAD") == 0) {
        err_set(e, ERRC_UNAVAILABLE,
                "serial %s: AWS IoT was not updated: %s (jitrctl jobs dlq "
                "list; jitrctl jobs dlq retry %s once fixed)",
                serial, jstr(rec, "error"), fp);
        rc = -1;
    }
    if (o) {
        json_object_set_new(
            o, "aws",
            json_pack("{s:s,s:s,s:s,s:s}", "state",
                      strcmp(jstr(rec, "state"), "queued") == 0 ? "queued" : jstr(rec, "state"),
                      "outcome", jstr(rec, "outcome"), "aws_status", jstr(rec, "aws_status"),
                      "error", jstr(rec, "error")));
    } else if (strcmp(jstr(rec, "state"), "queued") == 0) {
        printf("AWS IoT: still queued after %ld s (jitrctl cert show %s shows the outcome; "
               "jitrctl jobs status)\n",
               wait_s, serial);
    } else if (rc == 0) {
        const char *out = jstr(rec, "outcome");
        if (strcmp(out, "unknown") == 0) {
            printf("AWS IoT: certificate unknown to AWS (recorded: JITR refuses it)\n");
        } else {
            printf("AWS IoT: %s (status %s)\n", out,
                   jstr(rec, "aws_status")[0] ? jstr(rec, "aws_status") : "?");
        }
    }
    json_decref(rec);
    return rc;
}

static int wait_arg(const char *v, long *out, struct err *e)
{
    uint64_t u = 0;
    if (str_to_u64(v, &u) != 0 || u > 3600) {
        return err_set(e, ERRC_INVALID, "--wait takes seconds, 0 to 3600, not '%.32s'", v);
    }
    *out = (long)u;
    return 0;
}

static const char revoke_usage[] =
    "usage: jitrctl revoke SERIAL|CERTIFICATE_ID [--reason R] [--ca NAME] [--wait S|--no-wait]\n"
    "\n"
    "Revokes an issued certificate: an audit record first, then the index (status revoked)\n"
    "with the job that carries it to AWS IoT, then the CA's CRL is regenerated\n"
    "(DATA_DIR/ca/NAME/crl.pem and crl.der). Needs the CA's key (passphrase or PIN as for\n"
    "sign). Revoking a revoked certificate changes nothing. jitrd's job engine sets the\n"
    "certificate REVOKED in AWS IoT (INACTIVE for certificateHold); this waits for it.\n"
    "  SERIAL       hex serial as issued (any case; ':' separators and the output of\n"
    "               'openssl x509 -serial' work), or the 64-hex certificateId\n"
    "  --reason R   unspecified (default), keyCompromise, cACompromise, affiliationChanged,\n"
    "               superseded, cessationOfOperation, privilegeWithdrawn, aACompromise\n"
    "               or certificateHold: a hold, on the CRL and INACTIVE in AWS IoT until\n"
    "               'jitrctl release' (a permanent reason later revokes it for good)\n"
    "  --ca NAME    the CA that issued it (default: the one the index records; checked)\n"
    "  --wait S     wait up to S seconds for AWS IoT's outcome (default 30; then it says the\n"
    "               job is queued: jitrd finishes it)\n"
    "  --no-wait    do not wait\n"
    "With --json: {serial, certificateId, ca, reason, revoked_at, already_revoked, seq,\n"
    "crl_number, aws: {state, outcome, aws_status, error}}.\n";

static const char release_usage[] =
    "usage: jitrctl release SERIAL|CERTIFICATE_ID [--ca NAME] [--wait S|--no-wait]\n"
    "\n"
    "Lifts a hold (a revocation with reason certificateHold): an audit record, then the index\n"
    "(valid again) with the job that carries it to AWS IoT (INACTIVE becomes ACTIVE again),\n"
    "then the CA's CRL without it. A certificate revoked for good cannot be released.\n"
    "  --ca, --wait, --no-wait as for revoke. With --json: {serial, certificateId, ca, seq,\n"
    "crl_number, aws: {...}}.\n";

/* jitrctl revoke and jitrctl release: one command body, release says which (release takes no
 * --reason; its output and CRL message say "released"). */
static int status_cmd(struct cli *cli, int argc, char **argv, bool release, struct err *e)
{
    enum {
        O_REASON = 1,
        O_CA,
        O_WAIT,
        O_NO_WAIT
    };
    static const struct option revoke_opts[] = {
        { "reason", required_argument, NULL, O_REASON },
        { "ca", required_argument, NULL, O_CA },
        { "wait", required_argument, NULL, O_WAIT },
        { "no-wait", no_argument, NULL, O_NO_WAIT },
        { NULL, 0, NULL, 0 },
    };
    const struct option *opts = release ? revoke_opts + 1 : revoke_opts;
    long wait_s = WAIT_DEFAULT_S;
    const char *reason = "unspecified", *ca = NULL;
    struct issuance_revocation r;
    struct issuance_revoker *rv = NULL;
    struct store *s = NULL;
    const struct conf *c;
    const char *rname;
    char who[300];
    int rc = -1, optidx = 0, ch, aws_rc = 0;
    struct err aws_err = ERR_INIT;
    memset(&r, 0, sizeof(r));
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        switch (ch) {
        case 'h':
            return cli_usage(release ? release_usage : revoke_usage);
        case O_REASON:
            reason = optarg;
            break;
        case O_CA:
            ca = optarg;
            break;
        case O_WAIT:
            if (wait_arg(optarg, &wait_s, e) != 0) {
                return -1;
            }
            break;
        case O_NO_WAIT:
            wait_s = -1;
            break;
        default:
            return -1;
        }
    }
    if (optidx != argc - 1) {
        return err_set(e, ERRC_INVALID, "%s",
                       release ? "usage: jitrctl release SERIAL|CERTIFICATE_ID "
                                 "[--ca NAME] [--wait S|--no-wait]"
                               : "usage: jitrctl revoke SERIAL|CERTIFICATE_ID [--reason R] "
                                 "[--ca NAME] [--wait S|--no-wait]");
    }
    if (!release && ca_crl_reason_parse(reason, &r.reason, e) != 0) {
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
    if ((release ? issuance_release(rv, s, &r, e) : issuance_revoke(rv, s, &r, e)) != 0) {
        goto out;
    }
    rname = ca_crl_reason_name(r.reason_recorded);
    if (cli->json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:I}", "serial", r.serial_hex, "certificateId",
                              r.fingerprint, "ca", r.ca_name, "seq", (json_int_t)r.seq);
        if (!release) {
            json_object_set_new(o, "reason", json_string(rname ? rname : ""));
            json_object_set_new(o, "revoked_at", json_string(r.revoked_at));
            json_object_set_new(o, "already_revoked", json_boolean(r.already_revoked));
        }
        json_object_set_new(o, "crl_number",
                            r.crl_written ? json_integer((json_int_t)r.crl_number) : json_null());
        aws_rc = aws_report(c, r.serial_hex, r.fingerprint, r.seq, wait_s, o, &aws_err);
        cli_print_json(o);
    } else {
        if (release) {
            printf("released serial %s of CA %s from hold\n", r.serial_hex, r.ca_name);
        } else if (r.already_revoked) {
            printf("serial %s of CA %s was already revoked at %s (%s); nothing changed\n",
                   r.serial_hex, r.ca_name, r.revoked_at, rname ? rname : "?");
        } else {
            printf("revoked serial %s of CA %s (%s) at %s\n", r.serial_hex, r.ca_name,
                   rname ? rname : "?", r.revoked_at);
        }
        if (r.crl_written && !(r.already_revoked && !release)) {
            printf("CRL %llu of CA %s written to %s/ca/%s/crl.pem\n",
                   (unsigned long long)r.crl_number, r.ca_name, c->data_dir, r.ca_name);
        }
        fflush(stdout);
        aws_rc = aws_report(c, r.serial_hex, r.fingerprint, r.seq, wait_s, NULL, &aws_err);
    }
    if (!(r.already_revoked && !release) && !r.crl_written) {
        err_copy(e, &r.crl_err);
        err_prefix(e,
                   "serial %s is %s, but the CRL of CA '%s' was not regenerated (run "
                   "'jitrctl crl --ca %s')",
                   r.serial_hex, release ? "released" : "revoked", r.ca_name, r.ca_name);
        goto out;
    }
    if (aws_rc != 0) {
        err_copy(e, &aws_err);
        goto out;
    }
    rc = 0;
out:
    issuance_revoker_free(rv);
    store_free(s);
    return rc;
}

int cmd_revoke(struct cli *cli, int argc, char **argv, struct err *e)
{
    return status_cmd(cli, argc, argv, false, e);
}

int cmd_release(struct cli *cli, int argc, char **argv, struct err *e)
{
    return status_cmd(cli, argc, argv, true, e);
}
