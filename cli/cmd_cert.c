/*
 * jitrctl cert show SERIAL|FINGERPRINT: the index record of an issued certificate, the EST
 * re-enrollment links ("renews SERIAL", "superseded by SERIAL"), and what AWS IoT has of it as
 * the job engine recorded it (the revoke job's record, JITR's provisioning record).
 */
#include <stdio.h>
#include <string.h>

#include "ca/issue.h"
#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "jobs/jobs.h"
#include "store/store.h"

static const char cert_usage[] =
    "usage: jitrctl cert show SERIAL|CERTIFICATE_ID [--pem]\n"
    "  SERIAL is the hex serial (as openssl prints it; case, ':' and leading zeros do not\n"
    "  matter); CERTIFICATE_ID the 64-hex SHA-256 of the DER\n"
    "  (AWS IoT's certificateId). Our status (the index), then AWS IoT's as the job engine\n"
    "  last recorded it: the revoke job's outcome and status, JITR's provisioning state.\n";

static const char *str_or(json_t *o, const char *k, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : dflt;
}

/* {"status", "revoke_job": {...}, "provisioning": {...}} from the jobs' records (NULL members
 * left out): status is the revoke job's aws_status when it ended, else ACTIVE when JITR
 * provisioned it, else "unknown" (AWS never heard of it: the job said so) or "". */
static json_t *aws_view(const char *redis_url, const char *fp)
{
    json_t *rv = NULL, *jt = NULL, *o = json_object();
    struct err e = ERR_INIT;
    const char *status = "";
    if (jobs_admin_record(redis_url, "revoke", fp, &rv, &e) == 0) {
        const char *st = json_string_value(json_object_get(rv, "state"));
        const char *out = json_string_value(json_object_get(rv, "outcome"));
        const char *as = json_string_value(json_object_get(rv, "aws_status"));
        json_object_del(rv, "audit_rec");
        if (st && strcmp(st, "DONE") == 0 && out && strcmp(out, "unknown") == 0) {
            status = "unknown to AWS";
        } else if (st && strcmp(st, "DONE") == 0 && as) {
            status = as;
        }
        json_object_set(o, "revoke_job", rv);
    }
    err_clear(&e);
    if (jobs_admin_record(redis_url, "jitr", fp, &jt, &e) == 0) {
        const char *st = json_string_value(json_object_get(jt, "state"));
        if (status[0] == '\0' && st && strcmp(st, "DONE") == 0) {
            status = "ACTIVE (provisioned by JITR)";
        }
        json_object_set(o, "provisioning", jt);
    }
    json_object_set_new(o, "status", json_string(status));
    json_decref(rv);
    json_decref(jt);
    return o;
}

int cmd_cert(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option opts[] = { { "pem", no_argument, NULL, 1 },
                                          { NULL, 0, NULL, 0 } };
    bool pem = false;
    int optidx = 0, ch, rc = -1;
    struct buf serial = BUF_INIT;
    struct store_cert_rec rec = { 0 };
    struct store *s = NULL;
    json_t *o = NULL;
    const struct conf *c;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        if (ch == 'h') {
            return cli_usage(cert_usage);
        }
        if (ch != 1) {
            return -1;
        }
        pem = true;
    }
    if (optidx != argc - 2 || strcmp(argv[optidx], "show") != 0) {
        return err_set(e, ERRC_INVALID, "usage: jitrctl cert show SERIAL|CERTIFICATE_ID");
    }
    const char *id = argv[optidx + 1];
    if ((c = cli_conf(cli, e)) == NULL || cli_index_ensure(cli, e) != 0 ||
        (s = store_connect(c->redis_url, e)) == NULL) {
        goto out;
    }
    if (hex_is_lower(id, 64)) {
        if (store_serial_by_fingerprint(s, id, &serial, e) != 0) {
            goto out;
        }
    } else {
        /* a serial as openssl prints it or users type it (case, ':', leading zeros): the index's
         * spelling */
        char canon[41];
        struct err se = ERR_INIT;
        if (ca_serial_normalise(id, canon, &se) != 0) {
            err_set(e, ERRC_INVALID, "'%.80s' is neither a hex serial nor a certificateId: %s", id,
                    se.msg);
            goto out;
        }
        buf_addstr(&serial, canon);
    }
    if (store_cert_read(s, serial.data, &rec, e) != 0) {
        goto out;
    }
    o = json_object();
    for (size_t i = 0; i < rec.nfields; i++) {
        json_object_set_new(o, rec.fields[i].name, json_string(rec.fields[i].value));
    }
    if (pem) {
        struct buf der = BUF_INIT, out = BUF_INIT;
        const char *b64 = json_string_value(json_object_get(o, "der"));
        if (b64 && base64_decode(&der, b64, strlen(b64)) == 0) {
            base64_encode(&out, (const uint8_t *)der.data, der.len);
            fputs("-----BEGIN CERTIFICATE-----\n", stdout);
            for (size_t i = 0; i < out.len; i += 64) {
                printf("%.*s\n", (int)(out.len - i < 64 ? out.len - i : 64), out.data + i);
            }
            fputs("-----END CERTIFICATE-----\n", stdout);
        }
        buf_release(&der);
        buf_release(&out);
    } else if (cli->json) {
        json_object_set_new(o, "aws", aws_view(c->redis_url, rec.fingerprint));
        cli_print_json(json_incref(o));
    } else {
        json_t *aws = aws_view(c->redis_url, rec.fingerprint);
        json_t *rj = json_object_get(aws, "revoke_job");
        json_t *pj = json_object_get(aws, "provisioning");
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v)
        {
            if (strcmp(k, "der") != 0 && strcmp(k, "renews") != 0 &&
                strcmp(k, "superseded_by") != 0) {
                printf("%-12s %s\n", k, json_string_value(v));
            }
        }
        /* EST re-enrollment links, both ways */
        if (json_object_get(o, "renews")) {
            printf("renews %s\n", json_string_value(json_object_get(o, "renews")));
        }
        if (json_object_get(o, "superseded_by")) {
            printf("superseded by %s\n", json_string_value(json_object_get(o, "superseded_by")));
        }
        printf("%-12s %s\n", "aws_status",
               json_string_value(json_object_get(aws, "status"))[0]
                   ? json_string_value(json_object_get(aws, "status"))
                   : "not recorded");
        if (rj) {
            const char *err = str_or(rj, "error", "");
            printf("%-12s state %s, outcome %s%s%s\n", "aws_job", str_or(rj, "state", "?"),
                   str_or(rj, "outcome", "-"), err[0] ? ": " : "", err);
        }
        if (pj) {
            printf("%-12s %s\n", "jitr_state", str_or(pj, "state", "?"));
        }
        json_decref(aws);
    }
    rc = 0;
out:
    json_decref(o);
    store_cert_rec_release(&rec);
    buf_release(&serial);
    store_free(s);
    return rc;
}
