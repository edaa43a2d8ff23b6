/*
 * jitrctl reindex: rebuilds the Redis index from the audit log, the source of truth, with the
 * code jitrd heals itself with (issuance/reindex.h): under the index lock (refused while another
 * process rebuilds), index:ready deleted first and written last.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/mem.h"
#include "issuance/reindex.h"
#include "store/store.h"

static const char reindex_usage[] =
    "usage: jitrctl reindex [--log PATH]...\n"
    "Rebuilds the Redis index (certificates by serial, fingerprint, CN and CA, revocations,\n"
    "CRL numbers, serial reservations) from the audit log after checking its hash chain, and\n"
    "marks it complete. Safe to run at any time; idempotent. jitrd does the same by itself\n"
    "when it finds the index incomplete (Redis lost its data).\n"
    "Several nodes: the configured log and audit_peer_logs are replayed, and every --log PATH\n"
    "too (another node's log, e.g. copied here); a log that cannot be read stops the rebuild.\n";

int cmd_reindex(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option opts[] = { { "log", required_argument, NULL, 1 },
                                          { NULL, 0, NULL, 0 } };
    int optidx = 0, ch, rc;
    const struct conf *c;
    struct conf with_logs;
    struct store *s = NULL;
    struct issuance_reindex_stats st;
    struct buf logs = BUF_INIT;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        if (ch != 1) {
            buf_release(&logs);
            return ch == 'h' ? cli_usage(reindex_usage) : -1;
        }
        if (optarg[0] == '\0' || strchr(optarg, ',') != NULL) {
            buf_release(&logs);
            return err_set(e, ERRC_INVALID, "--log '%s': one path, without ','", optarg);
        }
        buf_addf(&logs, ",%s", optarg);
    }
    if (optidx != argc) {
        buf_release(&logs);
        return err_set(e, ERRC_INVALID, "reindex takes no arguments (other logs: --log PATH)");
    }
    if ((c = cli_conf(cli, e)) == NULL || (s = store_connect(c->redis_url, e)) == NULL) {
        buf_release(&logs);
        return -1;
    }
    /* the configuration's peers, then the logs named here */
    with_logs = *c;
    struct buf all = BUF_INIT;
    buf_addf(&all, "%s%s", c->audit_peer_logs, buf_cstr(&logs));
    buf_cstr(&all);
    with_logs.audit_peer_logs = all.data;
    rc = issuance_reindex(&with_logs, s, NULL, NULL, &st, e);
    buf_release(&all);
    buf_release(&logs);
    store_free(s);
    if (rc != 0) {
        return -1;
    }
    if (cli->json) {
        cli_print_json(json_pack(
            "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "records", (json_int_t)st.records,
            "certificates", (json_int_t)st.certificates, "revoked", (json_int_t)st.revoked,
            "released", (json_int_t)st.released, "keys_removed", (json_int_t)st.keys_removed,
            "renewals_requeued", (json_int_t)st.renewals_requeued, "registered_requeued",
            (json_int_t)st.registered_requeued, "aws_status_jobs_queued",
            (json_int_t)st.status_jobs_queued, "aws_status_jobs_restored",
            (json_int_t)st.status_jobs_restored));
        return 0;
    }
    printf("reindexed %llu certificates from %llu audit records (%llu old index keys removed)\n",
           (unsigned long long)st.certificates, (unsigned long long)st.records,
           (unsigned long long)st.keys_removed);
    if (st.revoked || st.revoke_unknown) {
        printf("%llu revoked", (unsigned long long)st.revoked);
        if (st.revoke_unknown) {
            printf(" (%llu revocations of serials never issued ignored)",
                   (unsigned long long)st.revoke_unknown);
        }
        printf("\n");
    }
    if (st.renewals_requeued) {
        printf("%llu renewal retirements missing from Redis queued again\n",
               (unsigned long long)st.renewals_requeued);
    }
    if (st.registered_requeued) {
        printf("%llu certificates registered by register-batch whose provisioning Redis lost "
               "queued again\n",
               (unsigned long long)st.registered_requeued);
    }
    if (st.status_jobs_queued || st.status_jobs_restored) {
        printf("AWS IoT: %llu revocations, holds and releases queued (no AWS outcome in the "
               "audit log), %llu already there (their jobs' records restored)\n",
               (unsigned long long)st.status_jobs_queued,
               (unsigned long long)st.status_jobs_restored);
    }
    return 0;
}
