/*
 * jitrctl token and jitrctl claim: the credentials of devices that enroll with jitrd's POST
 * /v1/enroll (docs/enroll.md; the Redis state in issuance/enroll.h).
 *   token issue DEVICE [--ttl S] [--profile P] [--ca C]
 *       a one-time token bound to DEVICE (the certificate's CN), printed once; audited
 *   claim issue NAME --out DIR [--days N] [--devices FILE] [--hook URL] [--profile P] [--ca C]
 *       a claim certificate (P-256 key 0600, CN=NAME, profile claim_profile) for a batch of
 *       firmware images, and the claim: its devices get profile P from CA C, each id once,
 *       only ids listed in FILE when given, approved by the hook when given; audited
 *   claim show NAME
 * A claim is revoked as any certificate: jitrctl revoke SERIAL (its serial is printed).
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/enroll.h"
#include "issuance/issuance.h"
#include "store/store.h"

static const char token_usage[] =
    "usage: jitrctl token issue DEVICE [--ttl S] [--profile P] [--ca C]\n"
    "\n"
    "A one-time enrollment token for device DEVICE ([A-Za-z0-9:_-]{1,128}; it becomes the\n"
    "certificate's CN): the device presents it once as 'Authorization: Bearer TOKEN' to\n"
    "jitrd's POST /v1/enroll (enroll_listen) with its CSR. --ttl: seconds it lives (default\n"
    "enroll_token_ttl, at most 3600); --profile, --ca: of the certificate (default_profile,\n"
    "default_ca). The token is printed once and stored only as its hash; audited (token_issue).\n";

static const char claim_usage[] =
    "usage: jitrctl claim issue NAME --out DIR [--days N] [--devices FILE] [--hook URL]\n"
    "                            [--profile P] [--ca C]\n"
    "       jitrctl claim show NAME\n"
    "\n"
    "issue  writes DIR/NAME.key (P-256, 0600), DIR/NAME.crt (CN=NAME, profile claim_profile)\n"
    "       and DIR/ca.pem: the claim credential of a batch of firmware images. A device\n"
    "       presents it (mutual TLS) to jitrd's POST /v1/enroll with a CSR whose CN is its id\n"
    "       and gets its own certificate (profile P, default default_profile, from CA C), each\n"
    "       id once; --devices FILE: only the ids listed (one a line); --hook URL: an https://\n"
    "       pre-provisioning hook that must answer {\"allowProvisioning\": true} within 5 s;\n"
    "       --days N: no enrollment after N days (default 365).\n"
    "show   the claim and how many devices enrolled with it\n"
    "Revoke the claim with 'jitrctl revoke SERIAL': its enrollments stop at once.\n";

static int token_issue(struct cli *cli, const char *device, int64_t ttl, const char *profile,
                       const char *ca_name, struct err *e)
{
    const struct conf *c;
    struct store *st = NULL;
    struct audit_log *log = NULL;
    struct ca_profiles *profiles = NULL;
    struct ca_authority *auth = NULL;
    struct enroll_token t;
    char token[ENROLL_TOKEN_LEN + 1], expires[32];
    char *ca = NULL;
    int rc = -1;
    memset(&t, 0, sizeof(t));
    if ((c = cli_conf(cli, e)) == NULL) {
        return -1;
    }
    if (ttl == 0) {
        ttl = c->enroll_token_ttl;
    }
    profile = profile ? profile : c->default_profile;
    if (strcmp(profile, c->claim_profile) == 0) {
        return err_set(e, ERRC_INVALID, "profile '%s' is for claim certificates (claim issue)",
                       profile);
    }
    if ((ca = issuance_ca_pick(c, ca_name, e)) == NULL ||
        (auth = ca_authority_load(c->data_dir, ca, e)) == NULL ||
        (profiles = ca_profiles_load_dir(c->profiles_dir, e)) == NULL) {
        goto out;
    }
    if (ca_profiles_find(profiles, profile) == NULL) {
        err_set(e, ERRC_INVALID, "unknown profile '%s'", profile);
        goto out;
    }
    if ((st = store_connect(c->redis_url, e)) == NULL ||
        (log = audit_open(conf_audit_path(c), e)) == NULL) {
        goto out;
    }
    snprintf(t.device, sizeof(t.device), "%s", device);
    snprintf(t.profile, sizeof(t.profile), "%s", profile);
    snprintf(t.ca, sizeof(t.ca), "%s", ca);
    issuance_cli_requester(t.requester, sizeof(t.requester));
    t.expires = time_now_ms() / 1000 + ttl;
    if (enroll_token_create(st, log, &t, token, e) != 0) {
        goto out;
    }
    time_format_rfc3339((time_t)t.expires, expires, sizeof(expires));
    if (cli->json) {
        cli_print_json(json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "token", token, "id", t.id, "expires",
                                 expires, "device", t.device, "profile", t.profile, "ca", t.ca));
    } else {
        printf("%s\n", token);
        fprintf(stderr, "token %s for device %s (profile %s, CA %s), valid until %s\n", t.id,
                t.device, t.profile, t.ca, expires);
    }
    OPENSSL_cleanse(token, sizeof(token));
    rc = 0;
out:
    xfree(ca);
    audit_close(log);
    store_free(st);
    ca_profiles_free(profiles);
    ca_authority_free(auth);
    return rc;
}

/* The device ids of an allowlist file: one a line, blank lines and '#' comments skipped. */
static int devices_read(const char *path, struct buf *data, char ***ids, size_t *n, struct err *e)
{
    size_t line = 0;
    if (file_read_all(path, 64 << 20, data, e) != 0) {
        return err_prefix(e, "--devices");
    }
    buf_addch(data, '\0');
    for (char *p = data->data, *eol; p && *p; p = eol ? eol + 1 : NULL) {
        eol = strchr(p, '\n');
        if (eol) {
            *eol = '\0';
        }
        line++;
        size_t l = strlen(p);
        while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == ' ' || p[l - 1] == '\t')) {
            p[--l] = '\0';
        }
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0' || *p == '#') {
            continue;
        }
        if (!enroll_device_ok(p)) {
            return err_set(e, ERRC_INVALID,
                           "%s:%zu: '%.64s' is not a device id ([A-Za-z0-9:_-]{1,128})", path, line,
                           p);
        }
        *ids = xrealloc(*ids, (*n + 1) * sizeof(char *));
        (*ids)[(*n)++] = p;
    }
    if (*n == 0) {
        return err_set(e, ERRC_INVALID, "%s lists no device id", path);
    }
    return 0;
}

static int write_file(const char *dir, const char *name, const char *ext, const struct buf *b,
                      unsigned mode, bool secret, struct err *e)
{
    struct buf path = BUF_INIT;
    buf_addf(&path, "%s/%s%s", dir, name, ext);
    int rc = file_write_atomic(path.data, b->data, b->len, mode, secret, e);
    buf_release(&path);
    return rc;
}

struct claim_opts {
    const char *out, *devices, *hook, *profile, *ca;
    int64_t days;
};

static int claim_issue(struct cli *cli, const char *name, const struct claim_opts *o, struct err *e)
{
    struct buf key = BUF_INIT, csr = BUF_INIT, pem = BUF_INIT, list = BUF_INIT;
    struct issuance_ctx *ctx = NULL;
    struct issuance_item it = { 0 };
    struct store *st = NULL;
    struct enroll_claim cl, old;
    const struct conf *c;
    char **ids = NULL, what[128], who[160], *ca = NULL;
    const char *profile = o->profile ? o->profile : NULL;
    const struct ca_profile *cp;
    size_t nids = 0;
    int rc = -1;
    memset(&cl, 0, sizeof(cl));
    if ((c = cli_conf(cli, e)) == NULL || cli_index_ensure(cli, e) != 0) {
        goto out;
    }
    if (o->hook && (strncmp(o->hook, "https://", 8) != 0 || strlen(o->hook) > ENROLL_HOOK_MAX ||
                    strpbrk(o->hook, " \t\r\n\"") != NULL)) {
        err_set(e, ERRC_INVALID, "--hook must be an https:// URL of at most %d characters",
                ENROLL_HOOK_MAX);
        goto out;
    }
    if (o->devices && devices_read(o->devices, &list, &ids, &nids, e) != 0) {
        goto out;
    }
    if ((ca = issuance_ca_pick(c, o->ca, e)) == NULL ||
        (st = store_connect(c->redis_url, e)) == NULL) {
        goto out;
    }
    if (enroll_claim_get(st, name, &old, e) == 0) {
        err_set(e, ERRC_CONFLICT, "a claim named '%s' exists already (certificate %s)", name,
                old.serial);
        goto out;
    } else if (e->code != ERRC_NOT_FOUND) {
        goto out;
    }
    err_clear(e);
    ctx = issuance_ctx_open(c, ca, cli->passphrase_file, e);
    if (ctx == NULL) {
        goto out;
    }
    profile = o->profile ? o->profile : c->default_profile;
    cp = ca_profiles_find(ctx->profiles, c->claim_profile);
    if (ca_profiles_find(ctx->profiles, profile) == NULL) {
        err_set(e, ERRC_INVALID, "unknown profile '%s' (--profile)", profile);
        goto out;
    }
    if (strcmp(profile, c->claim_profile) == 0) {
        err_set(e, ERRC_INVALID, "the devices of a claim get a device profile, not '%s'", profile);
        goto out;
    }
    if (cp == NULL) {
        err_set(e, ERRC_INVALID, "claim_profile '%s' is not a profile of %s", c->claim_profile,
                c->profiles_dir);
        goto out;
    }
    if (ca_profile_allows_jitr(cp)) {
        err_set(e, ERRC_INVALID,
                "claim_profile '%s' allows JITR: a claim certificate must never be registered in "
                "AWS IoT (\"jitr\": false)",
                c->claim_profile);
        goto out;
    }
    if (file_mkdirs(o->out, 0700, e) != 0 || cli_key_csr(name, &key, &csr, e) != 0) {
        goto out;
    }
    snprintf(what, sizeof(what), "claim '%s'", name);
    if (issuance_sign_one(ctx, (const uint8_t *)csr.data, csr.len, c->claim_profile, what, &it,
                          e) != 0) {
        goto out;
    }
    snprintf(cl.name, sizeof(cl.name), "%s", name);
    snprintf(cl.serial, sizeof(cl.serial), "%s", it.cert.serial_hex);
    snprintf(cl.ca, sizeof(cl.ca), "%s", ca);
    snprintf(cl.profile, sizeof(cl.profile), "%s", profile);
    snprintf(cl.hook, sizeof(cl.hook), "%s", o->hook ? o->hook : "");
    cl.allowlist = o->devices != NULL;
    cl.expires = time_now_ms() / 1000 + o->days * 86400;
    issuance_cli_requester(who, sizeof(who));
    if (enroll_claim_create(st, ctx->audit, &cl, (const char *const *)ids, nids, who, e) != 0) {
        err_prefix(e, "claim certificate %s was issued but the claim not stored (revoke it)",
                   cl.serial);
        goto out;
    }
    ca_der_to_pem(&pem, it.cert.der, it.cert.der_len);
    if (write_file(o->out, name, ".key", &key, 0600, true, e) != 0 ||
        write_file(o->out, name, ".crt", &pem, 0644, false, e) != 0 ||
        write_file(o->out, "ca", ".pem", &ctx->chain_pem, 0644, false, e) != 0) {
        goto out;
    }
    if (cli->json) {
        cli_print_json(json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "claim", name, "serial", cl.serial,
                                 "ca", cl.ca, "profile", cl.profile, "notAfter", it.not_after,
                                 "devices", (json_int_t)nids));
    } else {
        printf("claim %s: serial %s, certificate %s/%s.crt, key %s/%s.key, CA chain %s/ca.pem; "
               "devices get profile %s from CA %s%s%s\n",
               name, cl.serial, o->out, name, o->out, name, o->out, cl.profile, cl.ca,
               nids ? ", allowlist of " : "", nids ? "the --devices file" : "");
    }
    rc = 0;
out:
    buf_release_secret(&key);
    buf_release(&csr);
    buf_release(&pem);
    buf_release(&list);
    xfree(ids);
    xfree(ca);
    issuance_item_release(&it);
    issuance_ctx_free(ctx);
    store_free(st);
    return rc;
}

static int claim_show(struct cli *cli, const char *name, struct err *e)
{
    const struct conf *c;
    struct store *st = NULL;
    struct enroll_claim cl;
    char expires[32];
    int64_t used = 0;
    int rc = -1;
    if ((c = cli_conf(cli, e)) == NULL || (st = store_connect(c->redis_url, e)) == NULL ||
        enroll_claim_get(st, name, &cl, e) != 0 || enroll_claim_used(st, name, &used, e) != 0) {
        goto out;
    }
    time_format_rfc3339((time_t)cl.expires, expires, sizeof(expires));
    if (cli->json) {
        cli_print_json(json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:I}", "claim", cl.name, "serial",
                                 cl.serial, "ca", cl.ca, "profile", cl.profile, "hook", cl.hook,
                                 "allowlist", cl.allowlist, "expires", expires, "enrolled",
                                 (json_int_t)used));
    } else {
        printf("claim %s: certificate %s; devices get profile %s from CA %s; %s; hook %s; "
               "enrollments until %s; %lld enrolled\n",
               cl.name, cl.serial, cl.profile, cl.ca,
               cl.allowlist ? "allowlist only" : "any device id", cl.hook[0] ? cl.hook : "none",
               expires, (long long)used);
    }
    rc = 0;
out:
    store_free(st);
    return rc;
}

static int parse_int(const char *opt, const char *v, int64_t lo, int64_t hi, int64_t *out,
                     struct err *e)
{
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || n < lo || n > hi) {
        return err_set(e, ERRC_INVALID, "%s must be a whole number from %lld to %lld", opt,
                       (long long)lo, (long long)hi);
    }
    *out = (int64_t)n;
    return 0;
}

enum {
    O_TTL = 1,
    O_PROFILE,
    O_CA,
    O_OUT,
    O_DAYS,
    O_DEVICES,
    O_HOOK
};

int cmd_token(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option opts[] = {
        { "ttl", required_argument, NULL, O_TTL },
        { "profile", required_argument, NULL, O_PROFILE },
        { "ca", required_argument, NULL, O_CA },
        { NULL, 0, NULL, 0 },
    };
    const char *profile = NULL, *ca = NULL;
    int64_t ttl = 0;
    int optidx = 0, ch;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        switch (ch) {
        case 'h':
            return cli_usage(token_usage);
        case O_TTL:
            if (parse_int("--ttl", optarg, 1, ENROLL_TOKEN_TTL_MAX, &ttl, e) != 0) {
                return -1;
            }
            break;
        case O_PROFILE:
            profile = optarg;
            break;
        case O_CA:
            ca = optarg;
            break;
        default:
            return -1;
        }
    }
    if (argc - optidx != 2 || strcmp(argv[optidx], "issue") != 0) {
        return err_set(e, ERRC_INVALID, "usage: jitrctl token issue DEVICE [--ttl S]");
    }
    const char *device = argv[optidx + 1];
    if (!enroll_device_ok(device)) {
        return err_set(e, ERRC_INVALID,
                       "device id '%.64s' must be 1 to %d of A-Z a-z 0-9 : _ - (it becomes the "
                       "certificate's CN and the AWS IoT thing name)",
                       device, ENROLL_DEVICE_MAX);
    }
    return token_issue(cli, device, ttl, profile, ca, e);
}

int cmd_claim(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option opts[] = {
        { "out", required_argument, NULL, O_OUT },
        { "days", required_argument, NULL, O_DAYS },
        { "devices", required_argument, NULL, O_DEVICES },
        { "hook", required_argument, NULL, O_HOOK },
        { "profile", required_argument, NULL, O_PROFILE },
        { "ca", required_argument, NULL, O_CA },
        { NULL, 0, NULL, 0 },
    };
    struct claim_opts o = { .days = 365 };
    int optidx = 0, ch;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        switch (ch) {
        case 'h':
            return cli_usage(claim_usage);
        case O_OUT:
            o.out = optarg;
            break;
        case O_DAYS:
            if (parse_int("--days", optarg, 1, 36500, &o.days, e) != 0) {
                return -1;
            }
            break;
        case O_DEVICES:
            o.devices = optarg;
            break;
        case O_HOOK:
            o.hook = optarg;
            break;
        case O_PROFILE:
            o.profile = optarg;
            break;
        case O_CA:
            o.ca = optarg;
            break;
        default:
            return -1;
        }
    }
    if (argc - optidx != 2) {
        return err_set(e, ERRC_INVALID, "usage: jitrctl claim issue|show NAME [options]");
    }
    const char *sub = argv[optidx], *name = argv[optidx + 1];
    bool name_ok = strlen(name) >= 1 && strlen(name) <= 64;
    for (const char *p = name; *p && name_ok; p++) {
        name_ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || (p > name && (*p == '.' || *p == '_' || *p == '-'));
    }
    if (!name_ok) {
        return err_set(e, ERRC_INVALID,
                       "claim name '%.64s' must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}", name);
    }
    if (strcmp(sub, "issue") == 0) {
        if (o.out == NULL) {
            return err_set(e, ERRC_INVALID, "claim issue needs --out DIR");
        }
        return claim_issue(cli, name, &o, e);
    }
    if (strcmp(sub, "show") == 0) {
        return claim_show(cli, name, e);
    }
    return err_set(e, ERRC_INVALID, "unknown claim subcommand '%s' (issue, show)", sub);
}
