/*
 * jitrctl aws register-batch --in DIR|FILE.jsonl [--status ACTIVE|INACTIVE] [--timeout S]
 * [--quiet]: certificates we issued registered in AWS IoT and provisioned before their devices
 * ship (docs/jobs.md, "The register kind").
 * Each input certificate is checked against our index here (ours, valid, not expired, its CA
 * registered in AWS IoT) and refused with the reason otherwise; the others are queued as jobs
 * of the "register" kind (jobs/register.c), which jitrd's job workers run at the AWS rates
 * configured, with the engine's retries and dead letters. This command then follows each job
 * and the JITR provisioning it queues, draws a progress bar with an ETA, and prints the report:
 * registered, activated, already there, failed (with the reasons).
 * --template T provisions with T (a template in jitr.template's format) instead of jitrd's own:
 * T is checked against every certificate of the batch first (jitr_template_check_cert, as
 * jitrctl policy check --cert does), the policies it names without a document must exist in
 * AWS IoT (GetPolicy), and the whole run is refused when a check fails; then T is
 * written to the audit log (an "aws_template" record: the rebuild after a Redis loss restores
 * it, issuance/reindex.c) and to Redis under its SHA-256 (jitr:tpl:<sha256>, written once),
 * and each register job carries that SHA-256 to the flow that provisions its certificate.
 */
#include <dirent.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "aws/iot.h"
#include "ca/authority.h"
#include "ca/issue.h"
#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "jitr/jitr.h"
#include "jobs/jobs.h"
#include "store/store.h"

#define REG_INPUT_MAX ((size_t)1 << 30)
#define REG_CHUNK     64  /* jobs per enqueue call (jobs_enqueue_argv's limit) */
#define REG_POLL      100 /* records read per call while following */
#define REG_FIELDS    10  /* strings per item in poll_lua's reply */

static const char aws_usage[] =
    "usage: jitrctl aws register-batch --in DIR|FILE.jsonl [--status ACTIVE|INACTIVE]\n"
    "                                  [--template T] [--timeout S] [--quiet]\n"
    "       jitrctl aws bulk-export --in DIR|FILE.jsonl --out FILE [--template-out FILE]\n"
    "\n"
    "Registers certificates we issued in AWS IoT and provisions them as JITR would (the thing,\n"
    "the policies and the principal of jitrd's template, ACTIVE last), before the devices\n"
    "connect. Runs as jobs in jitrd's job workers; this command queues them and follows them.\n"
    "  --in DIR      every *.crt and *.pem file of DIR (jitrctl sign-batch --out DIR)\n"
    "  --in FILE     JSON lines with a \"certificate\" (PEM), as jitrctl sign-batch writes them\n"
    "  --status S    ACTIVE (the default): the devices may connect once provisioned; INACTIVE:\n"
    "                provisioned (thing, policies, principal) but left INACTIVE; running the\n"
    "                command again with --status ACTIVE then only activates them\n"
    "  --template T  provision with the template T (the format of jitr.template) instead of\n"
    "                jitrd's: T is checked against every certificate first (the thing name,\n"
    "                the policies; a policy named without a document must exist in AWS IoT)\n"
    "                and nothing is queued when it fails for any; its policy documents are\n"
    "                named by their SHA-256\n"
    "  --timeout S   stop following after S seconds (default 3600; the jobs go on)\n"
    "  --quiet       no progress bar\n"
    "Running it again is safe: what is registered already is reported \"already there\";\n"
    "what a Redis loss interrupted is provisioned; nothing is ever deactivated.\n"
    "bulk-export writes, for the same checked certificates, the input file of AWS IoT's own\n"
    "bulk registration (StartThingRegistrationTask: one JSON object of parameter values a line:\n"
    "ThingName as jitrd's template names the thing, CertificatePem, CACertificatePem) and with\n"
    "--template-out its provisioning template (the thing, the certificate ACTIVE, the template's\n"
    "policies); upload the file to S3 and start the task with them.\n"
    "Exit status: 0 when every certificate is registered or already there, 2 when some were\n"
    "refused or failed, 7 when some were still in progress at the timeout.\n";

enum reg_state {
    R_REFUSED, /* refused here, never queued */
    R_QUEUED,  /* queued, following */
    R_REGISTERED,
    R_ACTIVATED, /* provisioned INACTIVE by an earlier run, activated by this one */
    R_ALREADY,
    R_FAILED
};

struct reg_item {
    char *source; /* file or line */
    char id[65];
    char serial[130];
    char ca[128];
    char entry[64]; /* the register job's stream entry */
    enum reg_state st;
    char *why; /* refused / failed: the reason; already: AWS's status; registered: thing */
    char *pem; /* the certificate, once checked (bulk-export) */
};

struct reg_run {
    struct reg_item *items;
    size_t n, cap;
    json_t *cas; /* name -> {"id", "mode", "account"} or {"error"} */
};

static const char *jstr(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static struct reg_item *item_add(struct reg_run *r, const char *source)
{
    struct reg_item *it;
    r->items = xgrow(r->items, sizeof(*r->items), r->n + 1, &r->cap);
    it = &r->items[r->n++];
    memset(it, 0, sizeof(*it));
    it->source = xstrdup(source);
    it->st = R_QUEUED;
    return it;
}

static void item_why(struct reg_item *it, enum reg_state st, const char *fmt, ...)
    ATTR_PRINTF(3, 4);
static void item_why(struct reg_item *it, enum reg_state st, const char *fmt, ...)
{
    struct buf b = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vaddf(&b, fmt, ap);
    va_end(ap);
    xfree(it->why);
    it->why = buf_detach(&b, NULL);
    it->st = st;
}

/* The CA's AWS registration (cached per name): its certificateId, mode, account and PEM. */
static json_t *ca_info(struct reg_run *r, const struct conf *c, const char *name)
{
    json_t *o = json_object_get(r->cas, name);
    struct err e = ERR_INIT;
    struct ca_authority *a;
    if (o != NULL) {
        return o;
    }
    a = ca_authority_load(c->data_dir, name, &e);
    if (a == NULL || a->cert == NULL) {
        o = json_pack("{s:s}", "error", "its CA is not on this host");
    } else if (ca_authority_compromised(a)) {
        o = json_pack("{s:s}", "error", "its CA is marked compromised");
    } else {
        json_t *reg = json_array_get(json_object_get(a->meta, "aws"), 0);
        if (reg == NULL || strcmp(jstr(reg, "caCertificateId"), a->fingerprint) != 0) {
            o = json_pack("{s:s}", "error",
                          "its CA is not registered in AWS IoT (jitrctl ca register)");
        } else {
            struct buf pem = BUF_INIT;
            unsigned char *der = NULL;
            int n = i2d_X509(a->cert, &der);
            if (n > 0) {
                ca_der_to_pem(&pem, der, (size_t)n);
            }
            OPENSSL_free(der);
            o = json_pack("{s:s,s:s,s:s,s:s}", "id", a->fingerprint, "mode",
                          strcmp(jstr(reg, "mode"), "SNI_ONLY") == 0 ? "SNI_ONLY" : "DEFAULT",
                          "account", jstr(reg, "account"), "pem", buf_cstr(&pem));
            buf_release(&pem);
        }
    }
    ca_authority_free(a);
    json_object_set_new(r->cas, name, o);
    return o;
}

/* One certificate (PEM text) of the input: parsed, then checked against our index. */
static void check_cert(struct reg_run *r, struct jobs_admin *adm, const struct conf *c,
                       struct reg_item *it, const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    unsigned char *der = NULL;
    int nder;
    char key[STORE_KEY_MAX];
    json_t *rec = NULL, *reply, *ca;
    struct err e = ERR_INIT;
    time_t now = time(NULL);
    BIO_free(bio);
    ERR_clear_error();
    if (x == NULL || (nder = i2d_X509(x, &der)) <= 0 ||
        ca_serial_hex(X509_get0_serialNumber(x), it->serial, sizeof(it->serial)) != 0) {
        item_why(it, R_REFUSED, "not a PEM certificate");
        goto out;
    }
    sha256_hex(der, (size_t)nder, it->id);
    for (size_t i = 0; i + 1 < r->n; i++) {
        if (strcmp(r->items[i].id, it->id) == 0) {
            item_why(it, R_REFUSED, "the same certificate as %s", r->items[i].source);
            goto out;
        }
    }
    if (!store_key_cert(key, sizeof(key), it->serial)) {
        item_why(it, R_REFUSED, "serial %.40s is no serial of ours", it->serial);
        goto out;
    }
    {
        const char *av[] = { "EVAL", store_index_hgetall_lua, "2", STORE_INDEX_READY, key };
        reply = jobs_admin_cmd(adm, 5, av, &e);
    }
    if (reply == NULL) {
        item_why(it, R_REFUSED, "our index cannot be read: %s", e.msg);
        goto out;
    }
    rec = jobs_admin_pairs(reply);
    json_decref(reply);
    if (json_object_size(rec) == 0) {
        item_why(it, R_REFUSED, "not issued by us: serial %.40s is not in our index", it->serial);
    } else if (strcmp(jstr(rec, "fingerprint"), it->id) != 0) {
        item_why(it, R_REFUSED,
                 "not issued by us: our index holds another certificate for "
                 "serial %.40s",
                 it->serial);
    } else if (strcmp(jstr(rec, "status"), "valid") != 0) {
        item_why(it, R_REFUSED, "serial %.40s is %.16s in our index%s%.40s", it->serial,
                 jstr(rec, "status"), jstr(rec, "reason")[0] ? ": " : "", jstr(rec, "reason"));
    } else if (X509_cmp_time(X509_get0_notAfter(x), &now) < 0) {
        item_why(it, R_REFUSED, "serial %.40s has expired", it->serial);
    } else if ((ca = ca_info(r, c, jstr(rec, "ca"))) != NULL && jstr(ca, "error")[0]) {
        item_why(it, R_REFUSED, "serial %.40s: %s ('%.64s')", it->serial, jstr(ca, "error"),
                 jstr(rec, "ca"));
    } else {
        snprintf(it->ca, sizeof(it->ca), "%s", jstr(rec, "ca"));
        it->pem = xstrndup(pem, len);
    }
out:
    json_decref(rec);
    OPENSSL_free(der);
    X509_free(x);
}

static int load_jsonl(struct reg_run *r, struct jobs_admin *adm, const struct conf *c,
                      const char *file, struct err *e)
{
    struct buf all = BUF_INIT;
    size_t lineno = 0;
    if (file_read_all(file, REG_INPUT_MAX, &all, e) != 0) {
        return -1;
    }
    for (char *line = all.data; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char src[64];
        json_error_t jerr;
        json_t *o;
        const char *pem;
        struct reg_item *it;
        lineno++;
        if (len == 0 || (len == 1 && line[0] == '\r')) {
            line = nl ? nl + 1 : NULL;
            continue;
        }
        snprintf(src, sizeof(src), "line %zu", lineno);
        it = item_add(r, src);
        o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
        pem = json_string_value(json_object_get(o, "certificate"));
        if (!json_is_object(o)) {
            item_why(it, R_REFUSED, "not a JSON object");
        } else if (json_object_get(o, "error") != NULL) {
            item_why(it, R_REFUSED, "an error line (the CSR was not signed): %.200s",
                     jstr(json_object_get(o, "error"), "message"));
        } else if (pem == NULL) {
            item_why(it, R_REFUSED, "no string \"certificate\"");
        } else {
            check_cert(r, adm, c, it, pem, strlen(pem));
        }
        json_decref(o);
        line = nl ? nl + 1 : NULL;
    }
    buf_release(&all);
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_dir(struct reg_run *r, struct jobs_admin *adm, const struct conf *c,
                    const char *dir, struct err *e)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;
    if (d == NULL) {
        return err_set(e, ERRC_NOT_FOUND, "cannot read directory %s", dir);
    }
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l > 4 &&
            (strcmp(de->d_name + l - 4, ".crt") == 0 || strcmp(de->d_name + l - 4, ".pem") == 0)) {
            names = xgrow(names, sizeof(*names), n + 1, &cap);
            names[n++] = xstrdup(de->d_name);
        }
    }
    closedir(d);
    qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n; i++) {
        struct buf path = BUF_INIT, pem = BUF_INIT;
        struct err fe = ERR_INIT;
        struct reg_item *it = item_add(r, names[i]);
        buf_addf(&path, "%s/%s", dir, names[i]);
        if (file_read_all(buf_cstr(&path), 1 << 20, &pem, &fe) != 0) {
            item_why(it, R_REFUSED, "%s", fe.msg);
        } else {
            check_cert(r, adm, c, it, buf_cstr(&pem), pem.len);
        }
        buf_release(&path);
        buf_release(&pem);
        xfree(names[i]);
    }
    xfree(names);
    return 0;
}

static const char *at(json_t *a, size_t i)
{
    const char *v = json_string_value(json_array_get(a, i));
    return v ? v : "";
}

/* The CAs' PEMs where the jobs read them (aws:cacert:<id> pem), then the jobs, 64 a call. */
static int enqueue(struct reg_run *r, struct jobs_admin *adm, const char *batch, const char *status,
                   const char *tpl, struct err *e)
{
    const char *k;
    json_t *o;
    json_object_foreach(r->cas, k, o)
    {
        char key[200];
        json_t *reply;
        if (jstr(o, "error")[0]) {
            continue;
        }
        snprintf(key, sizeof(key), STORE_PREFIX "aws:cacert:%s", jstr(o, "id"));
        const char *av[] = { "HSET", key, "pem", jstr(o, "pem"), "ca", k, "mode", jstr(o, "mode") };
        if ((reply = jobs_admin_cmd(adm, 8, av, e)) == NULL) {
            return -1;
        }
        json_decref(reply);
    }
    for (size_t i = 0; i < r->n;) {
        struct jobs_new v[REG_CHUNK];
        const char *f[REG_CHUNK][14];
        size_t idx[REG_CHUNK], m = 0;
        struct jobs_argv a;
        json_t *reply;
        for (; i < r->n && m < REG_CHUNK; i++) {
            struct reg_item *it = &r->items[i];
            json_t *ca;
            if (it->st != R_QUEUED) {
                continue;
            }
            ca = json_object_get(r->cas, it->ca);
            f[m][0] = "serial";
            f[m][1] = it->serial;
            f[m][2] = "ca";
            f[m][3] = it->ca;
            f[m][4] = "ca_id";
            f[m][5] = jstr(ca, "id");
            f[m][6] = "mode";
            f[m][7] = jstr(ca, "mode");
            f[m][8] = "batch";
            f[m][9] = batch;
            f[m][10] = "status";
            f[m][11] = status;
            f[m][12] = "tpl";
            f[m][13] = tpl;
            v[m] = (struct jobs_new){ .kind = &jobs_kind_register,
                                      .key = it->id,
                                      .fields = f[m],
                                      .nfields = tpl[0] != '\0' ? 7 : 6,
                                      .src = "register-batch" };
            idx[m++] = i;
        }
        if (m == 0) {
            break;
        }
        if (jobs_enqueue_argv(v, m, time_now_ms(), &a, e) != 0) {
            return -1;
        }
        reply = jobs_admin_cmd(adm, (int)a.argc, (const char *const *)a.argv, e);
        jobs_argv_release(&a);
        if (reply == NULL) {
            return err_prefix(e, "queueing the jobs");
        }
        for (size_t x = 0; x < m; x++) {
            snprintf(r->items[idx[x]].entry, sizeof(r->items[idx[x]].entry), "%s", at(reply, x));
        }
        json_decref(reply);
    }
    return 0;
}

/* KEYS: per item, the register job's record and the flow's record. Per item: entry, state,
 * outcome, error, reason, aws_before of the job; state, reason, thing, status asked of the
 * flow. */
static const char poll_lua[] =
    "local out = {}\n"
    "for i = 1, #KEYS, 2 do\n"
    "  local a = redis.call('HMGET', KEYS[i], 'entry', 'state', 'outcome', 'error', 'reason',\n"
    "                       'aws_before')\n"
    "  local b = redis.call('HMGET', KEYS[i + 1], 'state', 'reason', 'thing', 'status')\n"
    "  for _, x in ipairs(a) do out[#out + 1] = x or '' end\n"
    "  for _, x in ipairs(b) do out[#out + 1] = x or '' end\n"
    "end\n"
    "return out\n";

/* One item's progress from its two records (REG_FIELDS strings at a). */
static void settle(struct reg_item *it, json_t *a, size_t o)
{
    const char *st = at(a, o + 1), *out = at(a, o + 2), *fst = at(a, o + 6);
    if (strcmp(at(a, o), it->entry) != 0) {
        return; /* not started yet */
    }
    if (strcmp(st, "DEAD") == 0) {
        item_why(it, R_FAILED, "%s", at(a, o + 3));
    } else if (strcmp(st, "DONE") != 0) {
        return;
    } else if (strcmp(out, "already") == 0) {
        item_why(it, R_ALREADY, "%s in AWS IoT", at(a, o + 5));
    } else if (strcmp(out, "activated") == 0) {
        item_why(it, R_ACTIVATED, "INACTIVE in AWS IoT, now ACTIVE (thing %s)", at(a, o + 8));
    } else if (strcmp(out, "refused") == 0) {
        item_why(it, R_FAILED, "%s", at(a, o + 4));
    } else if (strcmp(fst, "DONE") == 0) {
        item_why(it, R_REGISTERED, "thing %s%s", at(a, o + 8),
                 strcmp(at(a, o + 9), "INACTIVE") == 0 ? ", INACTIVE" : "");
    } else if (strcmp(fst, "REJECTED") == 0 || strcmp(fst, "IGNORED") == 0 ||
               strcmp(fst, "DEAD") == 0) {
        item_why(it, R_FAILED, "provisioning %s: %s (jitrctl jitr status %.16s...)", fst,
                 at(a, o + 7), it->id);
    }
}

static void progress(size_t done, size_t total, int64_t t0)
{
    int64_t el = time_now_ms() - t0;
    int w = 30, fill = total ? (int)(done * (size_t)w / total) : w;
    char eta[32] = "--";
    if (done > 0 && done < total) {
        snprintf(eta, sizeof(eta), "%llds",
                 (long long)(el * (int64_t)(total - done) / (int64_t)done / 1000));
    } else if (done == total) {
        snprintf(eta, sizeof(eta), "0s");
    }
    fprintf(stderr, "\rregister-batch [%.*s%*s] %zu/%zu ETA %s   ", fill,
            "==============================", w - fill, "", done, total, eta);
    fflush(stderr);
}

static int follow(struct reg_run *r, struct jobs_admin *adm, long timeout_s, bool quiet,
                  struct err *e)
{
    int64_t t0 = time_now_ms(), end = t0 + (int64_t)timeout_s * 1000;
    size_t total = 0;
    for (size_t i = 0; i < r->n; i++) {
        total += r->items[i].st != R_REFUSED;
    }
    for (;;) {
        size_t open = 0;
        for (size_t i = 0; i < r->n;) {
            const char *av[3 + 2 * REG_POLL];
            char keys[2 * REG_POLL][200];
            size_t idx[REG_POLL], m = 0;
            json_t *reply;
            int ac = 3;
            char nk[16];
            for (; i < r->n && m < REG_POLL; i++) {
                if (r->items[i].st != R_QUEUED) {
                    continue;
                }
                jobs_key_record(&jobs_kind_register, r->items[i].id, keys[2 * m], 200);
                jobs_key_record(&jobs_kind_jitr, r->items[i].id, keys[2 * m + 1], 200);
                av[ac++] = keys[2 * m];
                av[ac++] = keys[2 * m + 1];
                idx[m++] = i;
            }
            if (m == 0) {
                break;
            }
            snprintf(nk, sizeof(nk), "%zu", 2 * m);
            av[0] = "EVAL";
            av[1] = poll_lua;
            av[2] = nk;
            if ((reply = jobs_admin_cmd(adm, ac, av, e)) == NULL) {
                return err_prefix(e, "following the jobs");
            }
            for (size_t x = 0; x < m; x++) {
                settle(&r->items[idx[x]], reply, REG_FIELDS * x);
                open += r->items[idx[x]].st == R_QUEUED;
            }
            json_decref(reply);
        }
        if (!quiet) {
            progress(total - open, total, t0);
        }
        if (open == 0 || time_now_ms() >= end) {
            if (!quiet) {
                fputc('\n', stderr);
            }
            return 0;
        }
        {
            struct timespec ts = { 0, 250 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
}

static int report(struct cli *cli, struct reg_run *r, struct err *e)
{
    static const char *const names[] = {
        [R_REFUSED] = "refused",     [R_QUEUED] = "in progress",    [R_REGISTERED] = "registered",
        [R_ACTIVATED] = "activated", [R_ALREADY] = "already there", [R_FAILED] = "failed"
    };
    size_t count[R_FAILED + 1] = { 0 };
    for (size_t i = 0; i < r->n; i++) {
        count[r->items[i].st]++;
    }
    if (cli->json) {
        json_t *items = json_array();
        for (size_t i = 0; i < r->n; i++) {
            struct reg_item *it = &r->items[i];
            json_array_append_new(items,
                                  json_pack("{s:s,s:s,s:s,s:s,s:s}", "source", it->source,
                                            "certificateId", it->id, "serial", it->serial, "result",
                                            names[it->st], "detail", it->why ? it->why : ""));
        }
        cli_print_json(
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "registered",
                      (json_int_t)count[R_REGISTERED], "activated", (json_int_t)count[R_ACTIVATED],
                      "already_there", (json_int_t)count[R_ALREADY], "failed",
                      (json_int_t)count[R_FAILED], "refused", (json_int_t)count[R_REFUSED],
                      "in_progress", (json_int_t)count[R_QUEUED], "items", items));
    } else {
        printf("registered: %zu\n", count[R_REGISTERED]);
        if (count[R_ACTIVATED]) {
            printf("activated: %zu\n", count[R_ACTIVATED]);
        }
        printf("already there: %zu\nfailed: %zu\nrefused: %zu\n", count[R_ALREADY], count[R_FAILED],
               count[R_REFUSED]);
        if (count[R_QUEUED]) {
            printf("still in progress: %zu (jitrctl jobs status)\n", count[R_QUEUED]);
        }
        for (size_t i = 0; i < r->n; i++) {
            struct reg_item *it = &r->items[i];
            if (it->st == R_REFUSED || it->st == R_FAILED || it->st == R_QUEUED) {
                printf("%s: %s%s%s\n", it->source, names[it->st], it->why ? ": " : "",
                       it->why ? it->why : "");
            }
        }
    }
    if (count[R_QUEUED]) {
        return err_set(e, ERRC_TIMEOUT, "%zu of %zu certificates still in progress at the timeout",
                       count[R_QUEUED], r->n);
    }
    if (count[R_REFUSED] || count[R_FAILED]) {
        return err_set(e, ERRC_INVALID, "%zu of %zu certificates were refused or failed",
                       count[R_REFUSED] + count[R_FAILED], r->n);
    }
    return 0;
}

/* A jitrd's job engine that runs the register kind made its stream's consumer group (at start,
 * before it reads anything). */
static bool engine_knows(struct jobs_admin *adm)
{
    char stream[160];
    struct err e = ERR_INIT;
    json_t *r, *x;
    size_t i;
    bool found = false;
    jobs_key_stream(&jobs_kind_register, stream, sizeof(stream));
    const char *av[] = { "XINFO", "GROUPS", stream };
    if ((r = jobs_admin_cmd(adm, 3, av, &e)) == NULL) {
        return false; /* no such stream */
    }
    json_array_foreach(r, i, x)
    {
        json_t *g = jobs_admin_pairs(x);
        found = found || strcmp(jstr(g, "name"), JOBS_GROUP) == 0;
        json_decref(g);
    }
    json_decref(r);
    return found;
}

/* --template T: T read and parsed as jitrd parses it (its PolicyDocuments named by their
 * SHA-256: jitr.policy_name versions jitrd's own template's policy only), then evaluated on
 * every certificate the run would queue. Any failure refuses the whole run, naming the
 * certificate and the reason: a batch is provisioned with one template or not at all. */
static struct jitr_template *batch_template(struct reg_run *r, const char *path, struct buf *text,
                                            char sha[65], struct err *e)
{
    struct jitr_template *t;
    if (file_read_all(path, 1 << 20, text, e) != 0) {
        err_prefix(e, "--template");
        return NULL;
    }
    if (memchr(text->data, '\0', text->len) != NULL) {
        err_set(e, ERRC_INVALID, "--template %s: a NUL byte: not a template", path);
        return NULL;
    }
    if ((t = jitr_template_parse(text->data, text->len, path, NULL, e)) == NULL) {
        err_prefix(e, "--template");
        return NULL;
    }
    sha256_hex(text->data, text->len, sha);
    for (size_t i = 0; i < r->n; i++) {
        struct reg_item *it = &r->items[i];
        BIO *bio;
        X509 *x;
        json_t *plan = NULL;
        int rc;
        if (it->st != R_QUEUED) {
            continue;
        }
        bio = BIO_new_mem_buf(it->pem, -1);
        x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        ERR_clear_error();
        rc = x ? jitr_template_check_cert(t, x, &plan, e)
               : err_set(e, ERRC_INVALID, "the certificate cannot be read again");
        json_decref(plan);
        X509_free(x);
        if (rc != 0) {
            err_prefix(e, "--template %s cannot provision %s (serial %s, certificateId %.16s...)",
                       path, it->source, it->serial, it->id);
            jitr_template_free(t);
            return NULL;
        }
    }
    return t;
}

/* T's existing policies (PolicyName alone, attached as they are) must be in AWS IoT: else
 * every certificate's AttachPolicy would fail, after it was registered. Its documents are
 * checked offline (jitr_template_parse) and made by the flows. */
static int template_policies_exist(const struct conf *c, const struct jitr_template *t,
                                   const char *path, struct err *e)
{
    struct event_base *base = NULL;
    struct aws_iot *iot = NULL;
    int rc = 0;
    for (size_t i = 0; i < jitr_template_npolicies(t) && rc == 0; i++) {
        const struct jitr_policy *p = jitr_template_policy(t, i);
        struct aws_iot_sync s;
        json_t *in;
        if (p->doc[0] != '\0') {
            continue;
        }
        if (iot == NULL && ((base = event_base_new()) == NULL ||
                            (iot = cli_aws_iot_new(c, base, false, e)) == NULL)) {
            rc = base ? -1 : err_set(e, ERRC_INTERNAL, "cannot create an event loop");
            break;
        }
        aws_iot_sync_init(&s);
        in = json_pack("{s:s}", "policyName", p->name);
        if (aws_iot_call(iot, AWS_IOT_GET_POLICY, in, aws_iot_sync_cb, &s, e) != 0 ||
            aws_iot_sync_wait(iot, &s, e) != 0) {
            if (e->code == ERRC_NOT_FOUND) {
                err_clear(e);
                err_set(e, ERRC_INVALID,
                        "--template %s: policy '%s' is not in AWS IoT (AttachPolicy would fail "
                        "for every certificate): create it first",
                        path, p->name);
            } else {
                err_prefix(e, "--template %s: looking for policy '%s' in AWS IoT", path, p->name);
            }
            rc = -1;
        }
        json_decref(in);
        aws_iot_sync_release(&s);
    }
    aws_iot_free(iot);
    if (base) {
        event_base_free(base);
    }
    return rc;
}

/* T where jitrd's flows find it, the audit record first: jitr:tpl:<sha256> is written once
 * (SET NX) and never changed; the "aws_template" record (sha256, the content, the batch) lets a
 * rebuild after a Redis loss restore it before it queues the provisioning again. */
static int store_template(const struct conf *c, struct jobs_admin *adm, const char *path,
                          const struct buf *text, const char *sha, const char *batch, struct err *e)
{
    char who[300], key[200];
    json_t *rec, *reply;
    struct audit_log *log;
    int rc;
    issuance_cli_requester(who, sizeof(who));
    rec = json_pack("{s:s,s:s,s:s%,s:s,s:s}", "type", "aws_template", "sha256", sha, "content",
                    text->data, text->len, "file", path, "batch", batch, "requester", who);
    if (rec == NULL) {
        return err_set(e, ERRC_INVALID, "--template %s is not UTF-8 text", path);
    }
    log = audit_open_node(conf_audit_path(c), c->node_id, e);
    rc = log ? audit_append(log, &rec, 1, NULL, e) : -1;
    audit_close(log);
    json_decref(rec);
    if (rc != 0) {
        return err_prefix(e, "--template: the audit record");
    }
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:tpl:%s", sha);
    const char *av[] = { "SET", key, text->data, "NX" };
    if ((reply = jobs_admin_cmd(adm, 4, av, e)) == NULL) {
        return err_prefix(e, "--template: storing it in Redis");
    }
    json_decref(reply);
    return 0;
}

static int register_batch(struct cli *cli, int argc, char **argv, struct err *e)
{
    enum {
        O_IN = 1,
        O_TIMEOUT,
        O_QUIET,
        O_STATUS,
        O_TEMPLATE
    };
    static const struct option opts[] = { { "in", required_argument, NULL, O_IN },
                                          { "timeout", required_argument, NULL, O_TIMEOUT },
                                          { "quiet", no_argument, NULL, O_QUIET },
                                          { "status", required_argument, NULL, O_STATUS },
                                          { "template", required_argument, NULL, O_TEMPLATE },
                                          { NULL, 0, NULL, 0 } };
    const char *in = NULL, *status = "ACTIVE", *tpl_path = NULL;
    struct jitr_template *tpl = NULL;
    struct buf tpl_text = BUF_INIT;
    char tpl_sha[65] = "";
    long timeout_s = 3600;
    bool quiet = false, seen = false;
    int optidx = 0, ch, rc = -1;
    const struct conf *c;
    struct jobs_admin adm;
    struct reg_run r = { 0 };
    struct stat sb;
    char batch[64];
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        switch (ch) {
        case 'h':
            return cli_usage(aws_usage);
        case O_IN:
            in = optarg;
            break;
        case O_TIMEOUT: {
            uint64_t u;
            if (str_to_u64(optarg, &u) != 0 || u < 1 || u > 86400) {
                return err_set(e, ERRC_INVALID,
                               "--timeout takes seconds, 1 to 86400, not "
                               "'%.32s'",
                               optarg);
            }
            timeout_s = (long)u;
            break;
        }
        case O_QUIET:
            quiet = true;
            break;
        case O_STATUS:
            if (strcmp(optarg, "ACTIVE") != 0 && strcmp(optarg, "INACTIVE") != 0) {
                return err_set(e, ERRC_INVALID, "--status takes ACTIVE or INACTIVE, not '%.32s'",
                               optarg);
            }
            status = strcmp(optarg, "ACTIVE") == 0 ? "ACTIVE" : "INACTIVE";
            break;
        case O_TEMPLATE:
            tpl_path = optarg;
            break;
        default:
            return -1;
        }
    }
    if (in == NULL || optidx != argc) {
        return err_set(e, ERRC_INVALID, "usage: jitrctl aws register-batch --in DIR|FILE.jsonl");
    }
    if (stat(in, &sb) != 0) {
        return err_set(e, ERRC_NOT_FOUND, "--in %s: no such file or directory", in);
    }
    if ((c = cli_conf(cli, e)) == NULL || cli_index_ensure(cli, e) != 0) {
        return -1;
    }
    if (jobs_admin_open(&adm, c->redis_url, e) != 0) {
        return -1;
    }
    for (int i = 0; i < 40 && !(seen = engine_knows(&adm)); i++) {
        struct timespec ts = { 0, 250 * 1000 * 1000 }; /* a jitrd just started: seconds */
        nanosleep(&ts, NULL);
    }
    if (!seen) {
        /* the jobs would wait for a jitrd that runs them: say so rather than queue and hang */
        err_set(e, ERRC_UNAVAILABLE,
                "no jitrd with JITR enabled has started the register jobs' consumer group on "
                "this Redis: the registrations run in jitrd's job workers; start it first");
        goto out;
    }
    r.cas = json_object();
    if ((S_ISDIR(sb.st_mode) ? load_dir(&r, &adm, c, in, e) : load_jsonl(&r, &adm, c, in, e)) !=
        0) {
        goto out;
    }
    if (r.n == 0) {
        err_set(e, ERRC_INVALID, "--in %s holds no certificate", in);
        goto out;
    }
    snprintf(batch, sizeof(batch), "%lld-%d", (long long)time_now_ms(), (int)getpid());
    if (tpl_path != NULL && (tpl = batch_template(&r, tpl_path, &tpl_text, tpl_sha, e)) == NULL) {
        goto out;
    }
    for (size_t i = 0; tpl != NULL && i < r.n; i++) {
        if (r.items[i].st == R_QUEUED) {
            break; /* something to queue: T is stored below */
        }
        if (i + 1 == r.n) {
            tpl_path = NULL; /* every certificate refused: T is neither needed nor stored */
            tpl_sha[0] = '\0';
        }
    }
    if (tpl_path != NULL &&
        (template_policies_exist(c, tpl, tpl_path, e) != 0 ||
         store_template(c, &adm, tpl_path, &tpl_text, tpl_sha, batch, e) != 0)) {
        goto out;
    }
    if (enqueue(&r, &adm, batch, status, tpl_sha, e) != 0 ||
        follow(&r, &adm, timeout_s, quiet, e) != 0) {
        goto out;
    }
    rc = report(cli, &r, e);
out:
    jobs_admin_close(&adm);
    for (size_t i = 0; i < r.n; i++) {
        xfree(r.items[i].source);
        xfree(r.items[i].why);
        xfree(r.items[i].pem);
    }
    xfree(r.items);
    json_decref(r.cas);
    jitr_template_free(tpl);
    buf_release(&tpl_text);
    return rc;
}

/* The provisioning template of AWS's bulk registration for t's policies. */
static json_t *bulk_template(const struct jitr_template *t)
{
    json_t *res = json_pack("{s:{s:s,s:{s:{s:s}}},s:{s:s,s:{s:{s:s},s:{s:s},s:s}}}", "thing",
                            "Type", "AWS::IoT::Thing", "Properties", "ThingName", "Ref",
                            "ThingName", "certificate", "Type", "AWS::IoT::Certificate",
                            "Properties", "CertificatePem", "Ref", "CertificatePem",
                            "CACertificatePem", "Ref", "CACertificatePem", "Status", "ACTIVE");
    for (size_t i = 0; i < jitr_template_npolicies(t); i++) {
        const struct jitr_policy *p = jitr_template_policy(t, i);
        char name[32];
        json_t *props = json_pack("{s:s}", "PolicyName", p->name);
        if (p->doc[0]) {
            json_object_set_new(props, "PolicyDocument", json_string(p->doc));
        }
        snprintf(name, sizeof(name), "policy%zu", i + 1);
        json_object_set_new(
            res, name, json_pack("{s:s,s:o}", "Type", "AWS::IoT::Policy", "Properties", props));
    }
    return json_pack("{s:{s:{s:s},s:{s:s},s:{s:s}},s:o}", "Parameters", "ThingName", "Type",
                     "String", "CertificatePem", "Type", "String", "CACertificatePem", "Type",
                     "String", "Resources", res);
}

static int bulk_export(struct cli *cli, int argc, char **argv, struct err *e)
{
    enum {
        O_IN = 1,
        O_OUT,
        O_TPL
    };
    static const struct option opts[] = { { "in", required_argument, NULL, O_IN },
                                          { "out", required_argument, NULL, O_OUT },
                                          { "template-out", required_argument, NULL, O_TPL },
                                          { NULL, 0, NULL, 0 } };
    const char *in = NULL, *out = NULL, *tpl_out = NULL;
    int optidx = 0, ch, rc = -1;
    const struct conf *c;
    struct jobs_admin adm;
    struct reg_run r = { 0 };
    struct jitr_template *t = NULL;
    struct buf lines = BUF_INIT;
    size_t written = 0, refused = 0;
    struct stat sb;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        switch (ch) {
        case 'h':
            return cli_usage(aws_usage);
        case O_IN:
            in = optarg;
            break;
        case O_OUT:
            out = optarg;
            break;
        case O_TPL:
            tpl_out = optarg;
            break;
        default:
            return -1;
        }
    }
    if (in == NULL || out == NULL || optidx != argc) {
        return err_set(e, ERRC_INVALID,
                       "usage: jitrctl aws bulk-export --in DIR|FILE.jsonl --out FILE "
                       "[--template-out FILE]");
    }
    if (stat(in, &sb) != 0) {
        return err_set(e, ERRC_NOT_FOUND, "--in %s: no such file or directory", in);
    }
    if ((c = cli_conf(cli, e)) == NULL || cli_index_ensure(cli, e) != 0 ||
        (t = jitr_template_load(c->jitr.template, c->jitr.policy_name, e)) == NULL) {
        return -1;
    }
    if (jobs_admin_open(&adm, c->redis_url, e) != 0) {
        jitr_template_free(t);
        return -1;
    }
    r.cas = json_object();
    if ((S_ISDIR(sb.st_mode) ? load_dir(&r, &adm, c, in, e) : load_jsonl(&r, &adm, c, in, e)) !=
        0) {
        goto out;
    }
    for (size_t i = 0; i < r.n; i++) {
        struct reg_item *it = &r.items[i];
        json_t *ca = json_object_get(r.cas, it->ca);
        struct jitr_params params = { 0 };
        struct jitr_plan plan;
        struct err pe = ERR_INIT;
        BIO *bio;
        X509 *x;
        if (it->st == R_REFUSED) {
            refused++;
            continue;
        }
        if (strcmp(jstr(ca, "mode"), "SNI_ONLY") == 0) {
            item_why(it, R_REFUSED,
                     "its CA is registered SNI_ONLY: AWS's bulk registration "
                     "takes a CA certificate; use jitrctl aws register-batch");
            refused++;
            continue;
        }
        memset(&plan, 0, sizeof(plan));
        bio = BIO_new_mem_buf(it->pem, -1);
        x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        if (x != NULL) {
            jitr_params_from_cert(x, it->id, &params);
        }
        if (x == NULL || jitr_template_eval(t, &params, &plan, &pe) != 0) {
            item_why(it, R_REFUSED, "jitrd's template: %s", x ? pe.msg : "unreadable");
            refused++;
        } else {
            json_t *o = json_pack("{s:s,s:s,s:s}", "ThingName", plan.thing_name, "CertificatePem",
                                  it->pem, "CACertificatePem", jstr(ca, "pem"));
            char *line = json_dumps(o, JSON_COMPACT);
            buf_addf(&lines, "%s\n", line);
            free(line); /* lint: allow (jansson's allocation) */
            json_decref(o);
            it->st = R_REGISTERED;
            written++;
        }
        jitr_plan_release(&plan);
        jitr_params_release(&params);
        X509_free(x);
        ERR_clear_error();
    }
    if (file_write_atomic(out, lines.data ? lines.data : "", lines.len, 0644, false, e) != 0) {
        goto out;
    }
    if (tpl_out != NULL) {
        json_t *tj = bulk_template(t);
        char *text = json_dumps(tj, JSON_INDENT(2));
        int wrc = file_write_atomic(tpl_out, text, strlen(text), 0644, false, e);
        free(text); /* lint: allow (jansson's allocation) */
        json_decref(tj);
        if (wrc != 0) {
            goto out;
        }
    }
    if (cli->json) {
        json_t *bad = json_array();
        for (size_t i = 0; i < r.n; i++) {
            if (r.items[i].st == R_REFUSED) {
                json_array_append_new(bad, json_pack("{s:s,s:s}", "source", r.items[i].source,
                                                     "reason", r.items[i].why));
            }
        }
        cli_print_json(json_pack("{s:I,s:I,s:o}", "written", (json_int_t)written, "refused",
                                 (json_int_t)refused, "refusals", bad));
    } else {
        printf("written: %zu (%s)\nrefused: %zu\n", written, out, refused);
        for (size_t i = 0; i < r.n; i++) {
            if (r.items[i].st == R_REFUSED) {
                printf("%s: refused: %s\n", r.items[i].source, r.items[i].why);
            }
        }
    }
    rc = refused ? err_set(e, ERRC_INVALID, "%zu of %zu certificates were refused", refused, r.n)
                 : 0;
out:
    jobs_admin_close(&adm);
    for (size_t i = 0; i < r.n; i++) {
        xfree(r.items[i].source);
        xfree(r.items[i].why);
        xfree(r.items[i].pem);
    }
    xfree(r.items);
    json_decref(r.cas);
    buf_release(&lines);
    jitr_template_free(t);
    return rc;
}

int cmd_aws(struct cli *cli, int argc, char **argv, struct err *e)
{
    if (argc >= 2 && strcmp(argv[1], "register-batch") == 0) {
        return register_batch(cli, argc - 1, argv + 1, e);
    }
    if (argc >= 2 && strcmp(argv[1], "bulk-export") == 0) {
        return bulk_export(cli, argc - 1, argv + 1, e);
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        return cli_usage(aws_usage);
    }
    return err_set(e, ERRC_INVALID,
                   "usage: jitrctl aws register-batch --in DIR|FILE.jsonl "
                   "(jitrctl aws --help)");
}
