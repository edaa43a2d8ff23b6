/*
 * jitrctl audit verify: walks the hash chain and names the first edited, removed, reordered or
 * truncated line.
 * jitrctl audit import FILE: brings certificates signed on another machine (an offline CA host)
 * into this installation's audit log and index, so JITR recognises them as ours. The file's own
 * chain is checked first, and every certificate must be signed by a CA of this store and match
 * its recorded fingerprint, before anything is written; certificates already indexed are
 * skipped, so an import can be repeated.
 */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ca/authority.h"
#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "store/store.h"

#define IMPORT_BATCH 1000

static const char audit_usage[] =
    "usage: jitrctl audit verify [--file PATH]...\n"
    "       jitrctl audit import FILE\n"
    "verify  checks the hash chain of the audit log (default: the configured one) and names\n"
    "        the first edited, removed, reordered or truncated line; exit 0 only when intact.\n"
    "        It also lists the quarantine files next to the log (PATH.quarantine.<time>): the\n"
    "        torn end of an acknowledged record that a writer moved aside, never deleted.\n"
    "        --file may be given several times (the logs of several nodes): each is checked,\n"
    "        exit 0 only when all are intact (--json: an array, one object per log).\n"
    "import  appends the issuance records of another host's audit log (after checking its\n"
    "        chain and each certificate's signature against this store's CAs) and indexes them.\n";

static long long file_size_or(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Checks one log; its JSON object goes to arr (NULL: printed alone) when --json. */
static int verify_one(struct cli *cli, const char *path, json_t *arr, struct err *e)
{
    struct audit_report rep = { 0 };
    char **q = NULL;
    size_t nq = 0;
    int rc = 0;
    if (audit_verify(path, true, &rep, e) != 0 || audit_quarantine_list(path, &q, &nq, e) != 0) {
        return err_prefix(e, "audit log '%s'", path);
    }
    if (cli->json) {
        json_t *o = json_pack("{s:s,s:b,s:I}", "file", path, "intact", rep.problem == AUDIT_OK,
                              "records", (json_int_t)rep.records);
        json_t *qa = json_array();
        if (rep.problem != AUDIT_OK) {
            json_object_set_new(o, "line", json_integer((json_int_t)rep.line));
            json_object_set_new(o, "problem", json_string(rep.message));
        }
        for (size_t i = 0; i < nq; i++) {
            json_array_append_new(qa, json_string(q[i]));
        }
        json_object_set_new(o, "quarantine", qa);
        if (arr) {
            json_array_append_new(arr, o);
        } else {
            cli_print_json(o);
        }
    }
    /* what writers moved aside instead of deleting it: evidence for the operator */
    for (size_t i = 0; i < nq; i++) {
        fprintf(stderr,
                "quarantine: %s (%lld bytes: the torn end of an acknowledged record, moved "
                "aside by a writer)\n",
                q[i], (long long)file_size_or(q[i]));
        xfree(q[i]);
    }
    xfree(q);
    if (rep.problem != AUDIT_OK) {
        rc = err_set(e, ERRC_INVALID, "audit log '%s' is damaged: %s", path, rep.message);
    } else if (!cli->json) {
        printf("audit log %s: %llu records, chain intact\n", path,
               (unsigned long long)rep.records);
    }
    return rc;
}

static int audit_verify_cmd(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option opts[] = { { "file", required_argument, NULL, 1 },
                                          { NULL, 0, NULL, 0 } };
    const char **paths = xcalloc((size_t)argc + 1, sizeof(*paths));
    size_t n = 0;
    int optidx = 0, ch, rc = 0;
    json_t *arr = NULL;
    struct err first = ERR_INIT;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        if (ch == 'h') {
            xfree(paths);
            return cli_usage(audit_usage);
        }
        if (ch != 1) {
            xfree(paths);
            return -1;
        }
        paths[n++] = optarg;
    }
    if (optidx != argc) {
        xfree(paths);
        return err_set(e, ERRC_INVALID, "usage: jitrctl audit verify [--file PATH]...");
    }
    if (n == 0) {
        const struct conf *c = cli_conf(cli, e);
        if (c == NULL) {
            xfree(paths);
            return -1;
        }
        paths[n++] = conf_audit_path(c);
    }
    arr = n > 1 && cli->json ? json_array() : NULL;
    /* every log is checked, whatever the first ones hold; the error names the first problem */
    for (size_t i = 0; i < n; i++) {
        struct err one = ERR_INIT;
        if (verify_one(cli, paths[i], arr, &one) != 0) {
            if (rc == 0) {
                first = one;
            } else if (!cli->json) {
                fprintf(stderr, "jitrctl: %s\n", one.msg);
            }
            rc = -1;
        }
    }
    if (arr) {
        cli_print_json(arr);
    }
    if (rc != 0 && e != NULL) {
        *e = first;
    }
    xfree(paths);
    return rc;
}

struct import {
    const struct conf *conf;
    struct store *store;
    struct audit_log *log;
    X509 **cas;
    char **ca_names;
    size_t ncas;
    json_t *batch[IMPORT_BATCH];
    size_t n;
    uint64_t imported, skipped, others;
    const char *file;
    bool check_only; /* first pass: check every record, write nothing */
    struct err *e;
};

/* The name of the CA of this store that signed der, or NULL. */
static const char *import_signer(struct import *im, const uint8_t *der, size_t len, char *fp)
{
    const uint8_t *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    const char *found = NULL;
    if (x == NULL || p != der + len) {
        X509_free(x);
        return NULL;
    }
    sha256_hex(der, len, fp);
    for (size_t i = 0; i < im->ncas && found == NULL; i++) {
        EVP_PKEY *pk = X509_get0_pubkey(im->cas[i]);
        if (X509_check_issued(im->cas[i], x) == X509_V_OK && pk && X509_verify(x, pk) == 1) {
            found = im->ca_names[i];
        }
    }
    X509_free(x);
    return found;
}

static int import_flush(struct import *im)
{
    uint64_t first = 0;
    struct store_cert certs[IMPORT_BATCH];
    int rc = 0;
    if (im->n == 0) {
        return 0;
    }
    rc = audit_append(im->log, im->batch, im->n, &first, im->e);
    for (size_t i = 0; rc == 0 && i < im->n; i++) {
        rc = issuance_index_from_record(im->batch[i], first + i, &certs[i], im->e);
    }
    if (rc == 0) {
        rc = store_certs_index(im->store, certs, im->n, im->e);
    }
    for (size_t i = 0; i < im->n; i++) {
        json_decref(im->batch[i]);
    }
    im->imported += rc == 0 ? im->n : 0;
    im->n = 0;
    return rc;
}

static int import_one(void *arg, json_t *rec, uint64_t line)
{
    struct import *im = arg;
    const char *type = json_string_value(json_object_get(rec, "type"));
    if (type == NULL || strcmp(type, "issue") != 0) {
        im->others++;
        return 0;
    }
    const char *b64 = json_string_value(json_object_get(rec, "der"));
    const char *fp = json_string_value(json_object_get(rec, "fingerprint"));
    struct buf der = BUF_INIT, serial = BUF_INIT;
    char realfp[65] = "";
    const char *ca;
    int rc = -1;
    struct err nf = ERR_INIT;
    json_t *copy = NULL, *from = NULL;
    if (b64 == NULL || fp == NULL || base64_decode(&der, b64, strlen(b64)) != 0) {
        err_set(im->e, ERRC_INVALID, "%s line %llu: issue record without a valid certificate",
                im->file, (unsigned long long)line);
        goto out;
    }
    ca = import_signer(im, (const uint8_t *)der.data, der.len, realfp);
    if (ca == NULL) {
        err_set(im->e, ERRC_DENIED,
                "%s line %llu: the certificate is not signed by any CA of this store", im->file,
                (unsigned long long)line);
        goto out;
    }
    if (strcmp(realfp, fp) != 0) {
        err_set(im->e, ERRC_INVALID,
                "%s line %llu: the recorded fingerprint does not match the certificate",
                im->file, (unsigned long long)line);
        goto out;
    }
    if (im->check_only) {
        rc = 0;
        goto out;
    }
    if (store_serial_by_fingerprint(im->store, fp, &serial, &nf) == 0) {
        im->skipped++;
        rc = 0;
        goto out;
    }
    if (nf.code != ERRC_NOT_FOUND) {
        err_copy(im->e, &nf);
        goto out;
    }
    copy = json_deep_copy(rec);
    from = json_pack("{s:s,s:O,s:O}", "file", im->file, "seq",
                             json_object_get(rec, "seq"), "hash", json_object_get(rec, "hash"));
    json_object_del(copy, "seq");
    json_object_del(copy, "hash");
    json_object_del(copy, "prev");
    json_object_del(copy, "ts");
    json_object_set_new(copy, "ca", json_string(ca));
    json_object_set_new(copy, "imported_from", from);
    im->batch[im->n++] = copy;
    rc = im->n == IMPORT_BATCH ? import_flush(im) : 0;
out:
    buf_release(&der);
    buf_release(&serial);
    return rc;
}

static int audit_import_cmd(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option none[] = { { NULL, 0, NULL, 0 } };
    int optidx = 0, ch, rc = -1;
    struct import *im = xcalloc(1, sizeof(*im));
    struct audit_report rep = { 0 };
    char **names = NULL;
    size_t nnames = 0;
    while ((ch = cli_getopt(cli, argc, argv, none, &optidx, e)) != -1) {
        xfree(im);
        return ch == 'h' ? cli_usage(audit_usage) : -1;
    }
    im->e = e;
    if (optidx != argc - 1) {
        err_set(e, ERRC_INVALID, "usage: jitrctl audit import FILE");
        goto out;
    }
    im->file = argv[optidx];
    if ((im->conf = cli_conf(cli, e)) == NULL) {
        goto out;
    }
    if (audit_verify(im->file, false, &rep, e) != 0) {
        goto out;
    }
    if (rep.problem != AUDIT_OK) {
        err_set(e, ERRC_INVALID, "refusing to import '%s': %s", im->file, rep.message);
        goto out;
    }
    if (ca_authority_list(im->conf->data_dir, &names, &nnames, e) != 0) {
        goto out;
    }
    im->cas = xcalloc(nnames ? nnames : 1, sizeof(X509 *));
    im->ca_names = xcalloc(nnames ? nnames : 1, sizeof(char *));
    for (size_t i = 0; i < nnames; i++) {
        struct ca_authority *a = ca_authority_load(im->conf->data_dir, names[i], e);
        if (a == NULL) {
            goto out;
        }
        if (a->cert) {
            im->cas[im->ncas] = X509_dup(a->cert);
            im->ca_names[im->ncas++] = xstrdup(a->name);
        }
        ca_authority_free(a);
    }
    if ((im->store = store_connect(im->conf->redis_url, e)) == NULL ||
        (im->log = audit_open_node(conf_audit_path(im->conf), im->conf->node_id, e)) == NULL) {
        goto out;
    }
    /* all or nothing: every record is checked before the first is written */
    im->check_only = true;
    if (audit_foreach(im->file, import_one, im, e) != 0) {
        err_prefix(e, "nothing imported");
        goto out;
    }
    im->check_only = false;
    im->others = 0;
    if (audit_foreach(im->file, import_one, im, e) != 0 || import_flush(im) != 0) {
        err_prefix(e, "import stopped after %llu certificates (run it again to continue)",
                   (unsigned long long)im->imported);
        goto out;
    }
    if (cli->json) {
        cli_print_json(json_pack("{s:s,s:I,s:I,s:I}", "file", im->file, "imported",
                                 (json_int_t)im->imported, "already_present",
                                 (json_int_t)im->skipped, "other_records",
                                 (json_int_t)im->others));
    } else {
        printf("imported %llu certificates from %s (%llu already present, %llu other records "
               "not imported)\n",
               (unsigned long long)im->imported, im->file, (unsigned long long)im->skipped,
               (unsigned long long)im->others);
    }
    rc = 0;
out:
    for (size_t i = 0; i < im->n; i++) {
        json_decref(im->batch[i]);
    }
    for (size_t i = 0; i < im->ncas; i++) {
        X509_free(im->cas[i]);
        xfree(im->ca_names[i]);
    }
    for (size_t i = 0; i < nnames; i++) {
        xfree(names[i]);
    }
    xfree(names);
    xfree(im->cas);
    xfree(im->ca_names);
    audit_close(im->log);
    store_free(im->store);
    xfree(im);
    return rc;
}

int cmd_audit(struct cli *cli, int argc, char **argv, struct err *e)
{
    if (argc < 2) {
        fputs(audit_usage, stderr);
        return err_set(e, ERRC_INVALID, "audit needs a subcommand");
    }
    optind = 0;
    if (strcmp(argv[1], "verify") == 0) {
        return audit_verify_cmd(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(argv[1], "import") == 0) {
        return audit_import_cmd(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        return cli_usage(audit_usage);
    }
    return err_set(e, ERRC_INVALID, "unknown audit subcommand '%s'", argv[1]);
}
