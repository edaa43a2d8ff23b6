/*
 * jitrctl reindex: rebuilds the Redis index from the audit log, the source of truth. The index
 * keys are removed first (serial reservations, CRL numbers and working state are kept), then
 * every record is replayed in log order, in pipelines of REINDEX_BATCH: "issue" records index a
 * certificate, "revoke" records mark one revoked (the issue batch is flushed first, so the
 * certificate is there; the first revocation of a serial wins, as it did live), and "crl"
 * records raise each CA's CRL number to the highest one published, so it never goes back.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "issuance/revoke.h"
#include "store/store.h"

#define REINDEX_BATCH 1000

static const char reindex_usage[] =
    "usage: jitrctl reindex\n"
    "Rebuilds the Redis index (certificates by serial, fingerprint, CN and CA, revocations,\n"
    "CRL numbers) from the audit log after checking its hash chain. Safe to run at any time;\n"
    "idempotent.\n";

struct reindex {
    struct store *store;
    json_t *pending[REINDEX_BATCH];
    uint64_t seqs[REINDEX_BATCH];
    size_t n;
    json_t *revokes[REINDEX_BATCH]; /* "revoke" records waiting, after the issues above */
    uint64_t rseqs[REINDEX_BATCH];
    size_t nr;
    json_t *crl_numbers; /* CA name -> highest audited CRL number */
    uint64_t issued, records, last_seq, revoked, revoke_unknown;
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

static int reindex_flush_revokes(struct reindex *r)
{
    struct store_revocation rv[REINDEX_BATCH];
    enum store_revoke_result res[REINDEX_BATCH];
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < r->nr; i++) {
        rc = issuance_revocation_from_record(r->revokes[i], r->rseqs[i], &rv[i], r->e);
    }
    if (rc == 0 && r->nr) {
        rc = store_certs_revoke(r->store, rv, r->nr, res, r->e);
    }
    for (size_t i = 0; rc == 0 && i < r->nr; i++) {
        if (res[i] == STORE_REVOKE_UNKNOWN) {
            log_warn("audit seq %llu revokes serial %s, which no issue record before it names",
                     (unsigned long long)r->rseqs[i], rv[i].serial);
            r->revoke_unknown++;
        } else if (res[i] == STORE_REVOKE_DONE) {
            r->revoked++;
        }
    }
    for (size_t i = 0; i < r->nr; i++) {
        json_decref(r->revokes[i]);
    }
    r->nr = 0;
    return rc;
}

/* Issues first: a revocation always follows the issuance it revokes in the log. */
static int reindex_flush_all(struct reindex *r)
{
    if (reindex_flush(r) != 0) {
        return -1;
    }
    return reindex_flush_revokes(r);
}

static int reindex_crl(struct reindex *r, json_t *rec, uint64_t seq)
{
    const char *ca = json_string_value(json_object_get(rec, "ca"));
    json_t *num = json_object_get(rec, "number");
    if (ca == NULL || !json_is_integer(num) || json_integer_value(num) <= 0) {
        return err_set(r->e, ERRC_INVALID, "crl record seq %llu has no 'ca' or 'number'",
                       (unsigned long long)seq);
    }
    json_t *cur = json_object_get(r->crl_numbers, ca);
    if (cur == NULL || json_integer_value(cur) < json_integer_value(num)) {
        json_object_set(r->crl_numbers, ca, num);
    }
    return 0;
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
    } else if (type && strcmp(type, "revoke") == 0) {
        if (reindex_flush(r) != 0) {
            return -1;
        }
        r->revokes[r->nr] = json_incref(rec);
        r->rseqs[r->nr++] = (uint64_t)seq;
        if (r->nr == REINDEX_BATCH) {
            return reindex_flush_revokes(r);
        }
    } else if (type && strcmp(type, "crl") == 0) {
        return reindex_crl(r, rec, (uint64_t)seq);
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
    const char *ca;
    json_t *num;
    r->crl_numbers = json_object();
    while ((ch = cli_getopt(cli, argc, argv, none, &optidx, e)) != -1) {
        json_decref(r->crl_numbers);
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
    if (audit_foreach(conf_audit_path(c), reindex_one, r, e) != 0 || reindex_flush_all(r) != 0) {
        err_prefix(e, "reindex stopped; the index is incomplete until it succeeds");
        goto out;
    }
    json_object_foreach(r->crl_numbers, ca, num)
    {
        if (store_crl_number_raise(r->store, ca, (uint64_t)json_integer_value(num), e) != 0) {
            goto out;
        }
    }
    if (r->records && store_audit_head_set(r->store, r->last_seq, r->last_hash, e) != 0) {
        goto out;
    }
    if (cli->json) {
        cli_print_json(json_pack("{s:I,s:I,s:I,s:I}", "records", (json_int_t)r->records,
                                 "certificates", (json_int_t)r->issued, "revoked",
                                 (json_int_t)r->revoked, "keys_removed", (json_int_t)removed));
    } else {
        printf("reindexed %llu certificates from %llu audit records (%llu old index keys "
               "removed)\n",
               (unsigned long long)r->issued, (unsigned long long)r->records,
               (unsigned long long)removed);
        if (r->revoked || r->revoke_unknown) {
            printf("%llu revoked", (unsigned long long)r->revoked);
            if (r->revoke_unknown) {
                printf(" (%llu revocations of serials never issued ignored)",
                       (unsigned long long)r->revoke_unknown);
            }
            printf("\n");
        }
    }
    rc = 0;
out:
    for (size_t i = 0; i < r->n; i++) {
        json_decref(r->pending[i]);
    }
    for (size_t i = 0; i < r->nr; i++) {
        json_decref(r->revokes[i]);
    }
    json_decref(r->crl_numbers);
    store_free(r->store);
    xfree(r);
    return rc;
}
