/*
 * jitrctl reindex: rebuilds the Redis index from the audit log, the source of truth. The index
 * keys are removed first (serial reservations and working state are kept), then every issuance
 * record is replayed in order, in pipelines of REINDEX_BATCH.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "store/store.h"

#define REINDEX_BATCH 1000

static const char reindex_usage[] =
    "usage: jitrctl reindex\n"
    "Rebuilds the Redis index (certificates by serial, fingerprint, CN and CA) from the audit\n"
    "log after checking its hash chain. Safe to run at any time; idempotent.\n";

struct reindex {
    struct store *store;
    json_t *pending[REINDEX_BATCH];
    uint64_t seqs[REINDEX_BATCH];
    size_t n;
    uint64_t issued, records, last_seq;
    char last_hash[65];
    struct err *e;
};

static int reindex_flush(struct reindex *r)
{
    struct store_cert certs[REINDEX_BATCH];
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        rc = issuance_index_from_record(r->pending[i], r->seqs[i], &certs[i], r->e);
    }
    if (rc == 0 && r->n) {
        rc = store_certs_index(r->store, certs, r->n, r->e);
    }
    for (size_t i = 0; i < r->n; i++) {
        json_decref(r->pending[i]);
    }
    r->issued += rc == 0 ? r->n : 0;
    r->n = 0;
    return rc;
}

static int reindex_one(void *arg, json_t *rec, uint64_t line)
{
    struct reindex *r = arg;
    (void)line;
    const char *type = json_string_value(json_object_get(rec, "type"));
    json_int_t seq = json_integer_value(json_object_get(rec, "seq"));
    const char *hash = json_string_value(json_object_get(rec, "hash"));
    r->records++;
    r->last_seq = (uint64_t)seq;
    snprintf(r->last_hash, sizeof(r->last_hash), "%s", hash ? hash : "");
    if (type && strcmp(type, "issue") == 0) {
        r->pending[r->n] = json_incref(rec);
        r->seqs[r->n++] = (uint64_t)seq;
        if (r->n == REINDEX_BATCH) {
            return reindex_flush(r);
        }
    }
    return 0;
}

int cmd_reindex(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option none[] = { { NULL, 0, NULL, 0 } };
    int optidx = 0, ch, rc = -1;
    struct reindex *r = xcalloc(1, sizeof(*r));
    const struct conf *c;
    uint64_t removed = 0;
    while ((ch = cli_getopt(cli, argc, argv, none, &optidx, e)) != -1) {
        xfree(r);
        return ch == 'h' ? cli_usage(reindex_usage) : -1;
    }
    r->e = e;
    if (optidx != argc) {
        err_set(e, ERRC_INVALID, "reindex takes no arguments");
        goto out;
    }
    if ((c = cli_conf(cli, e)) == NULL || (r->store = store_connect(c->redis_url, e)) == NULL) {
        goto out;
    }
    if (!file_exists(conf_audit_path(c))) {
        err_set(e, ERRC_NOT_FOUND, "no audit log at '%s'", conf_audit_path(c));
        goto out;
    }
    if (store_index_clear(r->store, &removed, e) != 0) {
        goto out;
    }
    if (audit_foreach(conf_audit_path(c), reindex_one, r, e) != 0 || reindex_flush(r) != 0) {
        err_prefix(e, "reindex stopped; the index is incomplete until it succeeds");
        goto out;
    }
    if (r->records && store_audit_head_set(r->store, r->last_seq, r->last_hash, e) != 0) {
        goto out;
    }
    if (cli->json) {
        cli_print_json(json_pack("{s:I,s:I,s:I}", "records", (json_int_t)r->records,
                                 "certificates", (json_int_t)r->issued, "keys_removed",
                                 (json_int_t)removed));
    } else {
        printf("reindexed %llu certificates from %llu audit records (%llu old index keys "
               "removed)\n",
               (unsigned long long)r->issued, (unsigned long long)r->records,
               (unsigned long long)removed);
    }
    rc = 0;
out:
    for (size_t i = 0; i < r->n; i++) {
        json_decref(r->pending[i]);
    }
    store_free(r->store);
    xfree(r);
    return rc;
}
