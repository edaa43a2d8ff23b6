/*
 * jitrctl ca: the security team's CA operations. Each one that changes the store is audited;
 * a CA whose creation cannot be audited is removed again.
 */
#include <event2/event.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws/iot.h"
#include "ca/authority.h"
#include "ca/issue.h"
#include "ca/verification.h"
#include "cli/cli.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "store/async.h"

static const char ca_usage[] =
    "usage: jitrctl ca init NAME [--key-type T] [--key URI] [--subject S] [--days N]\n"
    "                           [--pathlen N] [--parent CA] [--csr-only] [--csr-out FILE]\n"
    "       jitrctl ca import NAME --cert FILE\n"
    "       jitrctl ca list\n"
    "       jitrctl ca show NAME\n"
    "       jitrctl ca activate NAME\n"
    "       jitrctl ca retire NAME [--aws]\n"
    "       jitrctl ca impact NAME [--json] | ca deactivate NAME [--force]  (jitrctl ca impact -h)\n"
    "       jitrctl ca mark-compromised NAME --yes\n"
    "       jitrctl ca compromise NAME [--since TIME] [--no-wait] --yes  (ca compromise -h)\n"
    "       jitrctl ca cross-sign NEW --by OLD [--days N] [--no-chain]  (ca cross-sign -h)\n"
    "       jitrctl ca ocsp-signer NAME [--days N]\n"
    "       jitrctl ca alias set ALIAS CA | ca alias list   (jitrctl ca alias --help)\n"
    "       jitrctl ca rotate ALIAS [--to NEW] [--before DAYS] ...  (jitrctl ca rotate --help)\n"
    "       jitrctl ca register NAME [--mode default|sni-only] [--no-auto-registration]\n"
    "                               [--inactive] [--force]\n"
    "\n"
    "init options:\n"
    "  --key-type T    ec-p256 (default), ec-p384, rsa-2048, rsa-3072, rsa-4096\n"
    "  --key URI       file:PATH (default file:DATA/ca/NAME/key.pem) or pkcs11:token=..;object=..\n"
    "  --subject S     /CN=Factory CA/O=Acme/C=DE (default /CN=NAME)\n"
    "  --days N        validity in days (default 7300 for a root, 5475 otherwise; capped at the\n"
    "                  parent's notAfter)\n"
    "  --pathlen N     pathLenConstraint (default: 1 for a root, 0 otherwise; -1 for none)\n"
    "  --parent CA     sign with this CA of the store (an intermediate)\n"
    "  --csr-only      make a key and a CSR for an external root; finish with 'ca import'\n"
    "  --csr-out FILE  where to write that CSR (default: stdout)\n"
    "  --parent-passphrase-file FILE  passphrase of the parent's key if it differs\n"
    "The passphrase of a new file: key comes from --passphrase-file or $JITRCA_KEY_PASSPHRASE;\n"
    "a pkcs11: token PIN from the URI (pin-source=FILE) or $JITRCA_PKCS11_PIN.\n"
    "\n"
    "register options (AWS IoT RegisterCACertificate; region, endpoint and credentials as the\n"
    "AWS SDKs: AWS_REGION, AWS_ENDPOINT_URL_IOT, AWS_PROFILE, ...):\n"
    "  --mode M                 default (proof of possession with a verification certificate,\n"
    "                           one account per region) or sni-only\n"
    "  --no-auto-registration   do not let AWS register device certificates on first connect\n"
    "  --inactive               register the CA INACTIVE (activate later in AWS)\n"
    "  --force                  register a CA that has child CAs (AWS needs the CA that signs\n"
    "                           device certificates directly, so this is refused by default)\n"
    "Registering again is harmless: a CA already in AWS (same certificate) is recognised and\n"
    "recorded, not registered twice.\n"
    "\n"
    "mark-compromised: the CA's key is no longer trusted. It is retired (signs nothing) for good\n"
    "(activate refuses it; every jitrd refuses it at once), and JITR sets every certificate of\n"
    "it that AWS still has PENDING_ACTIVATION to REVOKED instead of activating it. There is no\n"
    "undo: --yes says so. 'ca compromise' does this and revokes what the CA issued.\n"
    "\n"
    "ocsp-signer: issues the CA's delegated OCSP responder certificate (id-kp-OCSPSigning,\n"
    "id-pkix-ocsp-nocheck; --days N, default 30) for a new key under the CA passphrase; jitrd's\n"
    "OCSP responder signs with it after SIGHUP (docs/revocation.md, \"OCSP\"). Run it again to\n"
    "renew before it expires (jitrd falls back to the CA key once it has).\n"
    "\n"
    "list: DAYS is the days left until the CA certificate's notAfter.\n";

static char *ca_dir(const struct conf *c, const char *name)
{
    struct buf b = BUF_INIT;
    buf_addf(&b, "%s/ca/%s", c->data_dir, name);
    return buf_detach(&b, NULL);
}

static int ca_init(struct cli *cli, int argc, char **argv, struct err *e)
{
    enum {
        O_TYPE = 1,
        O_KEY,
        O_SUBJECT,
        O_DAYS,
        O_PATHLEN,
        O_PARENT,
        O_CSR,
        O_CSR_OUT,
        O_PPF
    };
    static const struct option opts[] = {
        { "key-type", required_argument, NULL, O_TYPE },
        { "key", required_argument, NULL, O_KEY },
        { "subject", required_argument, NULL, O_SUBJECT },
        { "days", required_argument, NULL, O_DAYS },
        { "pathlen", required_argument, NULL, O_PATHLEN },
        { "parent", required_argument, NULL, O_PARENT },
        { "csr-only", no_argument, NULL, O_CSR },
        { "csr-out", required_argument, NULL, O_CSR_OUT },
        { "parent-passphrase-file", required_argument, NULL, O_PPF },
        { NULL, 0, NULL, 0 },
    };
    struct ca_init_opts o = { 0 };
    struct buf secret = BUF_INIT, psecret = BUF_INIT, csr = BUF_INIT, uri = BUF_INIT;
    const char *csr_out = NULL, *ppf = NULL;
    const struct conf *c = NULL;
    struct ca_authority *parent = NULL, *made = NULL;
    json_t *fields = NULL;
    char *dir = NULL;
    int rc = -1, optidx = 0, ch;
    bool days_set = false, pathlen_set = false, root;
    o.key_type = CA_KEY_EC_P256;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        uint64_t v = 0;
        switch (ch) {
        case 'h':
            rc = cli_usage(ca_usage);
            goto out;
        case O_TYPE:
            if (ca_key_type_parse(optarg, &o.key_type) != 0) {
                err_set(e, ERRC_INVALID,
                        "unknown key type '%s' (ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096)",
                        optarg);
                goto out;
            }
            break;
        case O_KEY:
            o.key_uri = optarg;
            break;
        case O_SUBJECT:
            o.subject = optarg;
            break;
        case O_DAYS:
            if (str_to_u64(optarg, &v) != 0 || v == 0 || v > 36500) {
                err_set(e, ERRC_INVALID, "--days must be a number from 1 to 36500, not '%s'",
                        optarg);
                goto out;
            }
            o.days = (int64_t)v;
            days_set = true;
            break;
        case O_PATHLEN:
            if (strcmp(optarg, "-1") == 0) {
                o.pathlen = -1;
            } else if (str_to_u64(optarg, &v) != 0 || v > 16) {
                err_set(e, ERRC_INVALID, "--pathlen must be -1 or 0 to 16, not '%s'", optarg);
                goto out;
            } else {
                o.pathlen = (int)v;
            }
            pathlen_set = true;
            break;
        case O_PARENT:
            o.parent = optarg;
            break;
        case O_CSR:
            o.csr_only = true;
            break;
        case O_CSR_OUT:
            csr_out = optarg;
            break;
        case O_PPF:
            ppf = optarg;
            break;
        default:
            goto out;
        }
    }
    if (optidx != argc - 1) {
        err_set(e, ERRC_INVALID, "ca init takes one NAME (see jitrctl ca init --help)");
        goto out;
    }
    o.name = argv[optidx];
    if (o.parent && o.csr_only) {
        err_set(e, ERRC_INVALID, "--parent and --csr-only exclude each other");
        goto out;
    }
    if ((c = cli_conf(cli, e)) == NULL) {
        goto out;
    }
    root = o.parent == NULL && !o.csr_only;
    if (!days_set) {
        /* a default device certificate (3650 days, policies/profiles/device.json) fits under a
         * default issuing CA for its first five years: no clamping from day one */
        o.days = root ? 7300 : 5475;
    }
    if (!pathlen_set) {
        o.pathlen = root ? 1 : 0;
    }
    if (o.key_uri == NULL) {
        buf_addf(&uri, "file:%s/ca/%s/key.pem", c->data_dir, o.name);
    } else {
        buf_addstr(&uri, o.key_uri);
    }
    if (issuance_secret_load(c, uri.data, cli->passphrase_file, &secret, e) != 0) {
        goto out;
    }
    o.key_opts.secret = secret.len ? secret.data : NULL;
    o.key_opts.pkcs11_module = c->pkcs11_module;
    o.parent_opts.pkcs11_module = c->pkcs11_module;
    if (o.parent) {
        parent = ca_authority_load(c->data_dir, o.parent, e);
        if (parent == NULL) {
            err_prefix(e, "parent");
            goto out;
        }
        if (issuance_secret_load(c, parent->key_uri, ppf ? ppf : cli->passphrase_file, &psecret,
                                 e) != 0) {
            goto out;
        }
        o.parent_opts.secret = psecret.len ? psecret.data : NULL;
    }
    if (ca_authority_init(c->data_dir, &o, &csr, e) != 0) {
        goto out;
    }
    made = ca_authority_load(c->data_dir, o.name, e);
    if (made == NULL) {
        goto out;
    }
    fields = json_pack("{s:s,s:s,s:s,s:s,s:s}", "key_type", ca_key_type_name(o.key_type), "key_uri",
                       made->key_uri, "status", ca_status_name(made->status), "fingerprint",
                       made->fingerprint, "kind",
                       o.csr_only ? "csr" : (o.parent ? "intermediate" : "root"));
    if (o.parent) {
        json_object_set_new(fields, "parent", json_string(o.parent));
    }
    if (issuance_audit_ca_op(c, "ca_init", o.name, fields, e) != 0) {
        struct err ignore = ERR_INIT;
        dir = ca_dir(c, o.name);
        if (file_remove_tree(dir, &ignore) != 0) {
            log_warn("could not remove '%s': %s", dir, ignore.msg);
        }
        err_prefix(e, "CA '%s' not created: the audit log failed", o.name);
        goto out;
    }
    if (o.csr_only) {
        if (csr_out) {
            if (file_write_atomic(csr_out, csr.data, csr.len, 0644, false, e) != 0) {
                goto out;
            }
        } else {
            fputs(buf_cstr(&csr), stdout);
        }
    }
    if (cli->json) {
        json_object_set_new(fields, "name", json_string(o.name));
        cli_print_json(json_incref(fields));
    } else {
        fprintf(o.csr_only && !csr_out ? stderr : stdout,
                "created CA '%s' (%s, %s), status %s%s%s\n", o.name,
                o.csr_only ? "CSR for an external signer" : (o.parent ? "intermediate" : "root"),
                ca_key_type_name(o.key_type), ca_status_name(made->status),
                made->fingerprint[0] ? ", SHA-256 fingerprint " : "", made->fingerprint);
    }
    rc = 0;
out:
    buf_release_secret(&secret);
    buf_release_secret(&psecret);
    buf_release(&csr);
    buf_release(&uri);
    ca_authority_free(parent);
    ca_authority_free(made);
    json_decref(fields);
    xfree(dir);
    return rc;
}

/* Parses "ca SUB NAME [opts]" with no options of its own beyond own[]. */
static int one_name(struct cli *cli, int argc, char **argv, const struct option *own,
                    const char *what, const char **name, struct err *e, bool *help)
{
    static const struct option none[] = { { NULL, 0, NULL, 0 } };
    int optidx = 0, ch;
    *help = false;
    while ((ch = cli_getopt(cli, argc, argv, own ? own : none, &optidx, e)) != -1) {
        if (ch == 'h') {
            *help = true;
            return 0;
        }
        if (ch == '?') {
            return -1;
        }
    }
    if (optidx != argc - 1) {
        return err_set(e, ERRC_INVALID, "%s takes one NAME (see jitrctl ca --help)", what);
    }
    *name = argv[optidx];
    return 0;
}

static void x509_time_str(const ASN1_TIME *t, char *out, size_t cap)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1) {
        snprintf(out, cap, "?");
        return;
    }
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Whole days from now to the certificate's notAfter (negative once expired). */
static json_int_t ca_days_left(X509 *cert, time_t now)
{
    int days = 0, secs = 0;
    ASN1_TIME *t = ASN1_TIME_set(NULL, now);
    if (t == NULL || ASN1_TIME_diff(&days, &secs, t, X509_get0_notAfter(cert)) != 1) {
        days = 0;
    }
    ASN1_TIME_free(t);
    return days;
}

static json_t *ca_json(const struct conf *c, const struct ca_authority *a, bool full)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "name", a->name, "status", ca_status_name(a->status),
                          "key_type", ca_key_type_name(a->key_type), "key_uri", a->key_uri);
    json_object_set_new(o, "parent", a->parent ? json_string(a->parent) : json_null());
    json_object_set_new(o, "compromised", json_boolean(ca_authority_compromised(a)));
    if (a->cert) {
        char nb[32], na[32], subj[512], iss[512];
        x509_time_str(X509_get0_notBefore(a->cert), nb, sizeof(nb));
        x509_time_str(X509_get0_notAfter(a->cert), na, sizeof(na));
        X509_NAME_oneline(X509_get_subject_name(a->cert), subj, sizeof(subj));
        X509_NAME_oneline(X509_get_issuer_name(a->cert), iss, sizeof(iss));
        json_object_set_new(o, "subject", json_string(subj));
        json_object_set_new(o, "not_after", json_string(na));
        json_object_set_new(o, "days_left", json_integer(ca_days_left(a->cert, time(NULL))));
        if (full) {
            json_object_set_new(o, "issuer", json_string(iss));
            json_object_set_new(o, "not_before", json_string(nb));
            json_object_set_new(o, "fingerprint_sha256", json_string(a->fingerprint));
            char sn[131];
            (void)ca_serial_hex(X509_get0_serialNumber(a->cert), sn, sizeof(sn));
            json_object_set_new(o, "serial", json_string(sn));
        }
    }
    if (full) {
        char **kids = NULL;
        size_t n = 0;
        struct err ignore = ERR_INIT;
        json_t *arr = json_array();
        if (ca_authority_children(c->data_dir, a->name, &kids, &n, &ignore) == 0) {
            for (size_t i = 0; i < n; i++) {
                json_array_append_new(arr, json_string(kids[i]));
                xfree(kids[i]);
            }
            xfree(kids);
        }
        json_object_set_new(o, "children", arr);
        json_t *aws = json_object_get(a->meta, "aws");
        json_object_set_new(o, "aws", aws ? json_deep_copy(aws) : json_null());
        json_t *cross = json_object_get(a->meta, "cross_signed"), *via;
        if (cross) {
            json_object_set_new(o, "cross_signed", json_deep_copy(cross));
        }
        if ((via = json_object_get(a->meta, "chain_via")) != NULL) {
            json_object_set_new(o, "chain_via", json_deep_copy(via));
        }
    }
    return o;
}

static void ca_show_aws(const struct conf *c, json_t *o);

static int ca_list(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option none[] = { { NULL, 0, NULL, 0 } };
    int optidx = 0, ch;
    while ((ch = cli_getopt(cli, argc, argv, none, &optidx, e)) != -1) {
        if (ch == 'h') {
            return cli_usage(ca_usage);
        }
        return -1;
    }
    if (optidx != argc) {
        return err_set(e, ERRC_INVALID, "ca list takes no arguments");
    }
    const struct conf *c = cli_conf(cli, e);
    char **names = NULL;
    size_t n = 0;
    if (c == NULL || ca_authority_list(c->data_dir, &names, &n, e) != 0) {
        return -1;
    }
    json_t *arr = json_array();
    int rc = 0;
    if (!cli->json) {
        printf("%-20s %-8s %-9s %-14s %-20s %6s %s\n", "NAME", "STATUS", "KEY", "PARENT",
               "NOT AFTER", "DAYS", "SUBJECT");
    }
    for (size_t i = 0; i < n; i++) {
        struct ca_authority *a = rc == 0 ? ca_authority_load(c->data_dir, names[i], e) : NULL;
        if (a == NULL) {
            rc = -1;
        } else {
            json_t *o = ca_json(c, a, false);
            if (!cli->json) {
                json_t *na = json_object_get(o, "not_after"), *sj = json_object_get(o, "subject");
                json_t *dl = json_object_get(o, "days_left");
                char days[24] = "-";
                if (dl) {
                    snprintf(days, sizeof(days), "%lld", (long long)json_integer_value(dl));
                }
                printf("%-20s %-8s %-9s %-14s %-20s %6s %s\n", a->name,
                       ca_authority_compromised(a) ? "compromised" : ca_status_name(a->status),
                       ca_key_type_name(a->key_type), a->parent ? a->parent : "-",
                       na ? json_string_value(na) : "-", days, sj ? json_string_value(sj) : "-");
            }
            json_array_append_new(arr, o);
        }
        ca_authority_free(a);
        xfree(names[i]);
    }
    xfree(names);
    if (rc == 0 && cli->json) {
        cli_print_json(json_incref(arr));
    }
    json_decref(arr);
    return rc;
}

static int ca_show(struct cli *cli, int argc, char **argv, struct err *e)
{
    const char *name = NULL;
    bool help;
    if (one_name(cli, argc, argv, NULL, "ca show", &name, e, &help) != 0) {
        return -1;
    }
    if (help) {
        return cli_usage(ca_usage);
    }
    const struct conf *c = cli_conf(cli, e);
    struct ca_authority *a = c ? ca_authority_load(c->data_dir, name, e) : NULL;
    if (a == NULL) {
        return -1;
    }
    json_t *o = ca_json(c, a, true);
    ca_show_aws(c, o);
    if (cli->json) {
        cli_print_json(json_incref(o));
    } else {
        const char *key;
        json_t *v;
        json_object_foreach(o, key, v)
        {
            if (json_is_string(v)) {
                printf("%-20s %s\n", key, json_string_value(v));
            } else if (json_is_null(v)) {
                printf("%-20s -\n", key);
            } else {
                char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                printf("%-20s %s\n", key, s ? s : "?");
                xfree(s);
            }
        }
    }
    json_decref(o);
    ca_authority_free(a);
    return 0;
}

/* ---- AWS IoT registration ------------------------------------------------------------------ */

/* A client on base for jitrctl: settings from the environment as the AWS SDKs read them;
 * quick = one short attempt without pacing (for `ca show`). */
struct aws_iot *cli_aws_iot_new(const struct conf *c, struct event_base *base, bool quick,
                                struct err *e)
{
    struct aws_iot_opts o = { 0 };
    o.base = base;
    o.redis_url = quick ? NULL : c->redis_url;
    o.no_quota = quick;
    o.rates = *c->aws_rates ? c->aws_rates : NULL;
    o.service = c->aws_signing_name;
    o.profile = c->aws_profile;
    if (quick) {
        o.timeout_ms = 3000;
        o.max_attempts = 1;
    }
    return aws_iot_new(&o, e);
}

/* "arn:PARTITION:iot:REGION:ACCOUNT:cacert/ID" -> ACCOUNT (any partition: aws, aws-cn, ...) */
static void arn_account(const char *arn, char *out, size_t cap)
{
    const char *p = arn;
    out[0] = '\0';
    for (int i = 0; i < 4 && p != NULL; i++) {
        p = strchr(p, ':');
        p = p ? p + 1 : NULL;
    }
    if (p != NULL) {
        size_t n = strcspn(p, ":");
        snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
    }
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

static int ca_index_done_rc;
static bool ca_index_done;
static struct err ca_index_err;

static void ca_on_index(void *arg, const struct err *e)
{
    (void)arg;
    ca_index_done = true;
    ca_index_done_rc = e ? -1 : 0;
    if (e) {
        err_copy(&ca_index_err, e);
    }
}

/* jitrca:aws:cacert:ID -> the CA's name, region, account, ARN: lets JITR map an event's
 * caCertificateId to our CA. */
static int ca_aws_index(const struct conf *c, struct event_base *base, const char *name,
                        json_t *entry, struct err *e)
{
    struct store_async *s = store_async_new(base, c->redis_url, e);
    struct buf key = BUF_INIT;
    int rc = -1;
    if (s == NULL) {
        return -1;
    }
    const char *fv[] = { "ca",      name,
                         "region",  jstr(entry, "region"),
                         "account", jstr(entry, "account"),
                         "arn",     jstr(entry, "arn"),
                         "mode",    jstr(entry, "mode") };
    buf_addf(&key, "aws:cacert:%s", jstr(entry, "caCertificateId"));
    ca_index_done = false;
    if (store_async_hset(s, key.data, fv, ARRAY_LEN(fv), 5000, ca_on_index, NULL, e) == 0) {
        while (!ca_index_done && event_base_loop(base, EVLOOP_ONCE) >= 0) {
        }
        rc = ca_index_done_rc;
        if (rc != 0) {
            err_copy(e, &ca_index_err);
        }
    }
    store_async_free(s);
    buf_release(&key);
    return rc;
}

/* Runs one call started with aws_iot_sync_cb to its end. */
#define AWS_SYNC(client, s, e, call) ((call) == 0 ? aws_iot_sync_wait((client), (s), (e)) : -1)

static int ca_register(struct cli *cli, int argc, char **argv, struct err *e)
{
    enum {
        O_MODE = 1,
        O_NOAUTO,
        O_INACTIVE,
        O_FORCE
    };
    static const struct option opts[] = {
        { "mode", required_argument, NULL, O_MODE },
        { "no-auto-registration", no_argument, NULL, O_NOAUTO },
        { "inactive", no_argument, NULL, O_INACTIVE },
        { "force", no_argument, NULL, O_FORCE },
        { NULL, 0, NULL, 0 },
    };
    const char *mode = "DEFAULT", *name = NULL;
    bool auto_reg = true, active = true, force = false, existed = false;
    int optidx = 0, ch, rc = -1;
    json_t *entry = NULL;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        switch (ch) {
        case 'h':
            rc = cli_usage(ca_usage);
            goto out;
        case O_MODE:
            if (strcmp(optarg, "default") == 0) {
                mode = "DEFAULT";
            } else if (strcmp(optarg, "sni-only") == 0) {
                mode = "SNI_ONLY";
            } else {
                err_set(e, ERRC_INVALID, "--mode must be default or sni-only, not '%s'", optarg);
                goto out;
            }
            break;
        case O_NOAUTO:
            auto_reg = false;
            break;
        case O_INACTIVE:
            active = false;
            break;
        case O_FORCE:
            force = true;
            break;
        default:
            goto out;
        }
    }
    if (optidx != argc - 1) {
        err_set(e, ERRC_INVALID, "ca register takes one NAME (see jitrctl ca --help)");
        goto out;
    }
    name = argv[optidx];
    if (cli_ca_register(cli, name, mode, active, auto_reg, force, &entry, &existed, e) != 0) {
        goto out;
    }
    if (cli->json) {
        json_t *o = json_deep_copy(entry);
        json_object_set_new(o, "name", json_string(name));
        json_object_set_new(o, "already_registered", json_boolean(existed));
        cli_print_json(o);
    } else {
        printf("%s CA '%s' in AWS IoT %s (account %s): caCertificateId %s, status %s, "
               "auto-registration %s\n",
               existed ? "already registered:" : "registered", name, jstr(entry, "region"),
               jstr(entry, "account"), jstr(entry, "caCertificateId"), jstr(entry, "status"),
               jstr(entry, "autoRegistrationStatus"));
    }
    rc = 0;
out:
    json_decref(entry);
    return rc;
}

int cli_ca_register(struct cli *cli, const char *name, const char *mode, bool active, bool auto_reg,
                    bool force, json_t **entry_out, bool *existed_out, struct err *e)
{
    bool existed = false, recorded = false;
    int rc = -1;
    const struct conf *c = NULL;
    struct ca_authority *a = NULL;
    struct ca_key *key = NULL;
    struct event_base *base = NULL;
    struct aws_iot *iot = NULL;
    struct aws_iot_sync s;
    struct buf secret = BUF_INIT, pem = BUF_INIT, vpem = BUF_INIT;
    char **kids = NULL;
    size_t nkids = 0;
    json_t *entry = NULL, *fields = NULL, *desc = NULL;
    char account[32], arn[256], id[80];
    aws_iot_sync_init(&s);
    if ((c = cli_conf(cli, e)) == NULL || (a = ca_authority_load(c->data_dir, name, e)) == NULL) {
        goto out;
    }
    if (a->status == CA_ST_PENDING || a->cert == NULL) {
        err_set(e, ERRC_CONFLICT, "CA '%s' is pending: import its certificate first", name);
        goto out;
    }
    if (a->status == CA_ST_RETIRED) {
        err_set(e, ERRC_CONFLICT, "CA '%s' is retired: it signs no device certificates", name);
        goto out;
    }
    if (ca_authority_children(c->data_dir, name, &kids, &nkids, e) != 0) {
        goto out;
    }
    if (nkids > 0 && !force) {
        err_set(e, ERRC_CONFLICT,
                "CA '%s' has child CAs (%s%s): AWS IoT needs the CA that signs device "
                "certificates directly; register that one (or pass --force)",
                name, kids[0], nkids > 1 ? ", ..." : "");
        goto out;
    }
    if (a->meta == NULL || !json_is_object(a->meta)) {
        err_set(e, ERRC_INTERNAL, "CA '%s' has no metadata", name);
        goto out;
    }
    if ((base = event_base_new()) == NULL) {
        err_set(e, ERRC_INTERNAL, "cannot create an event loop");
        goto out;
    }
    if ((iot = cli_aws_iot_new(c, base, false, e)) == NULL) {
        goto out;
    }
    snprintf(id, sizeof(id), "%s", a->fingerprint); /* certificateId = SHA-256 of the DER */

    /* 1. already registered (by us or anyone)? */
    if (AWS_SYNC(iot, &s, e, aws_iot_describe_ca_certificate(iot, id, aws_iot_sync_cb, &s, e)) ==
        0) {
        existed = true;
    } else if (strcmp(s.code, "ResourceNotFoundException") != 0) {
        goto out;
    } else {
        err_clear(e);
        /* 2. register */
        {
            BIO *b = BIO_new(BIO_s_mem());
            char *d = NULL;
            if (b == NULL || PEM_write_bio_X509(b, a->cert) != 1) {
                BIO_free(b);
                err_openssl(e, ERRC_INTERNAL, "cannot encode the CA certificate");
                goto out;
            }
            long n = BIO_get_mem_data(b, &d);
            buf_add(&pem, d, (size_t)n);
            BIO_free(b);
        }
        if (strcmp(mode, "DEFAULT") == 0) {
            struct ca_key_opts ko = { 0 };
            aws_iot_sync_release(&s);
            if (AWS_SYNC(iot, &s, e, aws_iot_get_registration_code(iot, aws_iot_sync_cb, &s, e)) !=
                0) {
                goto out;
            }
            if (issuance_secret_load(c, a->key_uri, cli->passphrase_file, &secret, e) != 0) {
                goto out;
            }
            ko.secret = secret.len ? secret.data : NULL;
            ko.pkcs11_module = c->pkcs11_module;
            if ((key = ca_key_load(a->key_uri, &ko, e)) == NULL ||
                ca_verification_cert(ca_key_pkey(key), a->cert, jstr(s.out, "registrationCode"),
                                     &vpem, e) != 0) {
                goto out;
            }
        }
        aws_iot_sync_release(&s);
        if (AWS_SYNC(iot, &s, e,
                     aws_iot_register_ca_certificate(iot, pem.data, vpem.len ? vpem.data : NULL,
                                                     mode, active, auto_reg, aws_iot_sync_cb, &s,
                                                     e)) != 0) {
            if (strcmp(s.code, "ResourceAlreadyExistsException") != 0) {
                goto out;
            }
            err_clear(e); /* registered meanwhile (a concurrent run): adopt it */
        }
        aws_iot_sync_release(&s);
        if (AWS_SYNC(iot, &s, e,
                     aws_iot_describe_ca_certificate(iot, id, aws_iot_sync_cb, &s, e)) != 0) {
            err_prefix(e, "registered, but cannot describe it");
            goto out;
        }
    }
    desc = json_object_get(s.out, "certificateDescription");
    if (strcmp(jstr(desc, "certificateId"), id) != 0) {
        err_set(e, ERRC_UNAVAILABLE, "AWS IoT describes CA %s as '%s'", id,
                jstr(desc, "certificateId"));
        goto out;
    }
    snprintf(arn, sizeof(arn), "%s", jstr(desc, "certificateArn"));
    arn_account(arn, account, sizeof(account));
    if (account[0] == '\0') {
        err_set(e, ERRC_UNAVAILABLE, "AWS IoT returned an ARN without an account: '%s'", arn);
        goto out;
    }
    {
        char now[32];
        time_format_rfc3339(time(NULL), now, sizeof(now));
        entry = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "region", aws_iot_region(iot),
                          "account", account, "caCertificateId", id, "arn", arn, "mode",
                          jstr(desc, "certificateMode")[0] ? jstr(desc, "certificateMode") : mode,
                          "status", jstr(desc, "status"), "autoRegistrationStatus",
                          jstr(desc, "autoRegistrationStatus"), "registered_at", now);
    }
    {
        json_t *list = json_object_get(a->meta, "aws");
        size_t i;
        json_t *v;
        if (!json_is_array(list)) {
            list = json_array();
            json_object_set_new(a->meta, "aws", list);
        }
        json_array_foreach(list, i, v)
        {
            if (strcmp(jstr(v, "region"), aws_iot_region(iot)) == 0 &&
                strcmp(jstr(v, "account"), account) == 0) {
                recorded = strcmp(jstr(v, "caCertificateId"), id) == 0;
                if (recorded) {
                    json_object_set(entry, "registered_at", json_object_get(v, "registered_at"));
                }
                json_array_remove(list, i);
                break;
            }
        }
        json_array_append(list, entry);
    }
    if (!recorded) {
        /* audit before the metadata changes: a registration nobody can trace must not stand */
        fields = json_deep_copy(entry);
        json_object_set_new(fields, "adopted", json_boolean(existed));
        if (issuance_audit_ca_op(c, "ca_register", name, fields, e) != 0) {
            err_prefix(e, "CA '%s' is registered in AWS IoT, but the audit log failed", name);
            goto out;
        }
    }
    if (ca_authority_save(c->data_dir, a, e) != 0 || ca_aws_index(c, base, name, entry, e) != 0) {
        err_prefix(e, "CA '%s' is registered in AWS IoT (%s); run the command again to record it",
                   name, id);
        goto out;
    }
    *entry_out = json_incref(entry);
    *existed_out = existed;
    rc = 0;
out:
    aws_iot_sync_release(&s);
    aws_iot_free(iot);
    if (base) {
        event_base_free(base);
    }
    for (size_t i = 0; i < nkids; i++) {
        xfree(kids[i]);
    }
    xfree(kids);
    ca_key_free(key);
    buf_release_secret(&secret);
    buf_release(&pem);
    buf_release(&vpem);
    json_decref(entry);
    json_decref(fields);
    ca_authority_free(a);
    return rc;
}

/* The live AWS state of each registration of the configured region (DescribeCACertificate, one
 * short attempt); the stored data stands when AWS cannot be asked. */
static void ca_show_aws(const struct conf *c, json_t *o)
{
    json_t *list = json_object_get(o, "aws"), *v;
    struct event_base *base = NULL;
    struct aws_iot *iot = NULL;
    struct err e = ERR_INIT;
    size_t i;
    if (!json_is_array(list) || json_array_size(list) == 0) {
        return;
    }
    if ((base = event_base_new()) == NULL || (iot = cli_aws_iot_new(c, base, true, &e)) == NULL) {
        if (e.code == ERRC_OK) {
            err_set(&e, ERRC_INTERNAL, "cannot create an event loop");
        }
    }
    json_array_foreach(list, i, v)
    {
        struct aws_iot_sync s;
        struct err ce = ERR_INIT;
        aws_iot_sync_init(&s);
        if (iot == NULL) {
            json_object_set_new(v, "live_error", json_string(e.msg));
        } else if (strcmp(jstr(v, "region"), aws_iot_region(iot)) != 0) {
            char m[200];
            snprintf(m, sizeof(m), "not checked: the configured region is %s", aws_iot_region(iot));
            json_object_set_new(v, "live_error", json_string(m));
        } else if (AWS_SYNC(iot, &s, &ce,
                            aws_iot_describe_ca_certificate(iot, jstr(v, "caCertificateId"),
                                                            aws_iot_sync_cb, &s, &ce)) == 0) {
            json_t *d = json_object_get(s.out, "certificateDescription");
            json_object_set_new(v, "live",
                                json_pack("{s:s,s:s,s:s}", "status", jstr(d, "status"),
                                          "autoRegistrationStatus",
                                          jstr(d, "autoRegistrationStatus"), "certificateMode",
                                          jstr(d, "certificateMode")));
        } else {
            json_object_set_new(v, "live_error", json_string(ce.msg));
        }
        aws_iot_sync_release(&s);
    }
    aws_iot_free(iot);
    if (base) {
        event_base_free(base);
    }
}

static int ca_import(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option opts[] = { { "cert", required_argument, NULL, 1 },
                                          { NULL, 0, NULL, 0 } };
    const char *cert = NULL, *name = NULL;
    int optidx = 0, ch;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        if (ch == 'h') {
            return cli_usage(ca_usage);
        }
        if (ch != 1) {
            return -1;
        }
        cert = optarg;
    }
    if (optidx != argc - 1 || cert == NULL) {
        return err_set(e, ERRC_INVALID, "usage: jitrctl ca import NAME --cert FILE");
    }
    name = argv[optidx];
    const struct conf *c = cli_conf(cli, e);
    if (c == NULL || ca_authority_import(c->data_dir, name, cert, e) != 0) {
        return -1;
    }
    struct ca_authority *a = ca_authority_load(c->data_dir, name, e);
    if (a == NULL) {
        return -1;
    }
    json_t *fields = json_pack("{s:s}", "fingerprint", a->fingerprint);
    int rc = issuance_audit_ca_op(c, "ca_import", name, fields, e);
    if (rc == 0) {
        if (cli->json) {
            cli_print_json(ca_json(c, a, false));
        } else {
            printf("imported the certificate of CA '%s', status %s\n", name,
                   ca_status_name(a->status));
        }
    }
    json_decref(fields);
    ca_authority_free(a);
    return rc;
}

static int ca_set_status(struct cli *cli, int argc, char **argv, enum ca_status to, struct err *e)
{
    const char *name = NULL;
    bool help;
    if (one_name(cli, argc, argv, NULL, argv[0], &name, e, &help) != 0) {
        return -1;
    }
    if (help) {
        return cli_usage(ca_usage);
    }
    const struct conf *c = cli_conf(cli, e);
    struct ca_authority *a = c ? ca_authority_load(c->data_dir, name, e) : NULL;
    int rc = -1;
    enum ca_status from;
    if (a == NULL) {
        return -1;
    }
    from = a->status;
    if (from == CA_ST_PENDING) {
        err_set(e, ERRC_CONFLICT, "CA '%s' is pending: import its certificate first", name);
        goto out;
    }
    if (to == CA_ST_ACTIVE && ca_authority_compromised(a)) {
        err_set(e, ERRC_CONFLICT, "CA '%s' is marked compromised: it never signs again", name);
        goto out;
    }
    if (from != to) {
        a->status = to;
        json_t *fields =
            json_pack("{s:s,s:s}", "from", ca_status_name(from), "to", ca_status_name(to));
        /* audit first: a status change nobody can trace must not happen */
        rc = issuance_audit_ca_op(c, to == CA_ST_RETIRED ? "ca_retire" : "ca_activate", name,
                                  fields, e);
        json_decref(fields);
        if (rc != 0 || ca_authority_save(c->data_dir, a, e) != 0) {
            rc = -1;
            goto out;
        }
    }
    if (cli->json) {
        cli_print_json(ca_json(c, a, false));
    } else {
        printf("CA '%s' is %s\n", name, ca_status_name(to));
    }
    rc = 0;
out:
    ca_authority_free(a);
    return rc;
}

static int ca_mark_compromised(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option own[] = { { "yes", no_argument, NULL, 'y' }, { NULL, 0, NULL, 0 } };
    int optidx = 0, ch;
    bool yes = false;
    while ((ch = cli_getopt(cli, argc, argv, own, &optidx, e)) != -1) {
        if (ch == 'h') {
            return cli_usage(ca_usage);
        }
        if (ch == 'y') {
            yes = true;
            continue;
        }
        return -1;
    }
    if (optidx != argc - 1) {
        return err_set(e, ERRC_INVALID,
                       "ca mark-compromised takes one NAME (see jitrctl ca "
                       "--help)");
    }
    const char *name = argv[optidx];
    if (!yes) {
        return err_set(e, ERRC_INVALID,
                       "ca mark-compromised %s cannot be undone: the CA is "
                       "retired for good and JITR revokes its pending certificates in AWS; add "
                       "--yes",
                       name);
    }
    const struct conf *c = cli_conf(cli, e);
    struct ca_authority *a = NULL;
    bool was = false;
    if (c == NULL || cli_ca_block(c, name, &was, e) != 0 ||
        (a = ca_authority_load(c->data_dir, name, e)) == NULL) {
        return -1;
    }
    if (cli->json) {
        cli_print_json(ca_json(c, a, false));
    } else {
        printf("CA '%s' is marked compromised (retired)\n", name);
    }
    ca_authority_free(a);
    return 0;
}

int cmd_ca(struct cli *cli, int argc, char **argv, struct err *e)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc < 2) {
            fputs(ca_usage, stderr);
            return err_set(e, ERRC_INVALID, "ca needs a subcommand");
        }
        return cli_usage(ca_usage);
    }
    const char *sub = argv[1];
    optind = 0;
    if (strcmp(sub, "init") == 0) {
        return ca_init(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(sub, "import") == 0) {
        return ca_import(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(sub, "list") == 0) {
        return ca_list(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(sub, "show") == 0) {
        return ca_show(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(sub, "retire") == 0) {
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--aws") == 0) {
                return cmd_ca_retire_aws(cli, argc - 1, argv + 1, e);
            }
        }
        return ca_set_status(cli, argc - 1, argv + 1, CA_ST_RETIRED, e);
    }
    if (strcmp(sub, "impact") == 0) {
        return cmd_ca_impact(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(sub, "deactivate") == 0) {
        return cmd_ca_deactivate(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(sub, "register") == 0) {
        return ca_register(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(sub, "activate") == 0) {
        return ca_set_status(cli, argc - 1, argv + 1, CA_ST_ACTIVE, e);
    }
    if (strcmp(sub, "mark-compromised") == 0) {
        return ca_mark_compromised(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(sub, "cross-sign") == 0) {
        return cmd_ca_cross_sign(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(sub, "compromise") == 0) {
        return cmd_ca_compromise(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(sub, "alias") == 0) {
        return cmd_ca_alias(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(sub, "rotate") == 0) {
        return cmd_ca_rotate(cli, argc - 1, argv + 1, e);
    }
    if (strcmp(sub, "ocsp-signer") == 0) {
        return cmd_ca_ocsp_signer(cli, argc - 1, argv + 1, e);
    }
    return err_set(e, ERRC_INVALID, "unknown ca subcommand '%s' (see jitrctl ca --help)", sub);
}
