/*
 * jitrctl reindex: rebuilds the Redis index from the audit log, the source of truth, with the
 * code jitrd heals itself with (issuance/reindex.h): under the index lock (refused while another
 * process rebuilds), index:ready deleted first and written last.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "issuance/reindex.h"
#include "store/store.h"

static const char reindex_usage[] =
    "usage: jitrctl reindex\n"
    "Rebuilds the Redis index (certificates by serial, fingerprint, CN and CA, revocations,\n"
    "CRL numbers, serial reservations) from the audit log after checking its hash chain, and\n"
    "marks it complete. Safe to run at any time; idempotent. jitrd does the same by itself\n"
    "when it finds the index incomplete (Redis lost its data).\n";

int cmd_reindex(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option none[] = { { NULL, 0, NULL, 0 } };
    int optidx = 0, ch;
    const struct conf *c;
    struct store *s = NULL;
    struct issuance_reindex_stats st;
    while ((ch = cli_getopt(cli, argc, argv, none, &optidx, e)) != -1) {
        return ch == 'h' ? cli_usage(reindex_usage) : -1;
    }
    if (optidx != argc) {
        return err_set(e, ERRC_INVALID, "reindex takes no arguments");
    }
    if ((c = cli_conf(cli, e)) == NULL || (s = store_connect(c->redis_url, e)) == NULL) {
        return -1;
    }
    if (issuance_reindex(c, s, NULL, NULL, &st, e) != 0) {
        store_free(s);
        return -1;
    }
    store_free(s);
    if (cli->json) {
        cli_print_json(json_pack("{s:I,s:I,s:I,s:I,s:I}", "records", (json_int_t)st.records,
                                 "certificates", (json_int_t)st.certificates, "revoked",
                                 (json_int_t)st.revoked, "keys_removed",
                                 (json_int_t)st.keys_removed, "renewals_requeued",
                                 (json_int_t)st.renewals_requeued));
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
    return 0;
}
