/*
 * jitrctl: the security team's and offline stations' CLI. main() finds the subcommand in
 * commands[], runs it, and is the one place errors are printed.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/mem.h"
#include "issuance/reindex.h"
#include "store/store.h"

#define OPT_CONFIG     1000
#define OPT_JSON       1001
#define OPT_PASSPHRASE 1002

static const struct {
    const char *name;
    cli_cmd_fn *fn;
    const char *summary;
} commands[] = {
    { "ca", cmd_ca, "manage CAs: init, import, list, show, activate, retire, ocsp-signer" },
    { "sign", cmd_sign, "sign one CSR and print the certificate" },
    { "sign-batch", cmd_sign_batch, "sign many CSRs offline, on every core" },
    { "cert", cmd_cert, "show an issued certificate's record from the index" },
    { "revoke", cmd_revoke, "revoke an issued certificate and regenerate its CA's CRL" },
    { "release", cmd_release, "lift a hold (certificateHold) and regenerate the CA's CRL" },
    { "crl", cmd_crl, "regenerate and print a CA's CRL; --refresh for every CA due" },
    { "station", cmd_station, "issue or revoke a factory station's jitrd credentials" },
    { "token", cmd_token, "issue a one-time enrollment token for a device (POST /v1/enroll)" },
    { "claim", cmd_claim, "issue or show a claim certificate for a batch of devices" },
    { "audit", cmd_audit, "verify the audit log, import another CA host's log" },
    { "reindex", cmd_reindex, "rebuild the Redis index from the audit log" },
    { "config", cmd_config, "check, show or describe the configuration" },
    { "policy", cmd_policy, "check IoT policy documents and JITP templates offline" },
    { "jitr", cmd_jitr, "JITR: a device's provisioning state, dead letters" },
    { "report", cmd_report, "reports: certificates expiring within N days" },
    { "aws", cmd_aws, "AWS IoT: register certificates we issued before devices ship" },
    { "jobs", cmd_jobs, "the job engine: queues, due, in flight, done and dead per kind" },
};

static const char main_usage[] =
    "usage: jitrctl [--config FILE] [--json] [--passphrase-file FILE] COMMAND [ARGS]\n"
    "\n"
    "Common options (accepted by every command, anywhere on its line):\n"
    "  --config FILE           configuration file (default: $JITRCA_CONFIG, else built-in\n"
    "                          defaults with $JITRCA_DATA_DIR and $JITRCA_REDIS_URL)\n"
    "  --json                  machine-readable output\n"
    "  --passphrase-file FILE  passphrase of file: CA keys (else $JITRCA_KEY_PASSPHRASE)\n"
    "  --help                  help of the command\n"
    "\n"
    "Commands:\n";

const struct conf *cli_conf(struct cli *cli, struct err *e)
{
    if (cli->conf == NULL) {
        cli->conf = conf_load(cli->config_path, e);
        if (cli->conf) {
            log_set_level((enum log_level)log_level_parse(cli->conf->log_level));
        }
    }
    return cli->conf;
}

int cli_index_ensure(struct cli *cli, struct err *e)
{
    const struct conf *c = cli_conf(cli, e);
    struct store *s = c ? store_connect(c->redis_url, e) : NULL;
    struct issuance_reindex_stats st;
    bool rebuilt = false;
    int rc = -1;
    if (s && issuance_index_ensure(c, s, CLI_INDEX_WAIT_MS, &rebuilt, &st, e) == 0) {
        if (rebuilt) {
            fprintf(stderr,
                    "jitrctl: the index was incomplete (Redis lost its data?); rebuilt from the "
                    "audit log: %llu certificates from %llu records\n",
                    (unsigned long long)st.certificates, (unsigned long long)st.records);
        }
        rc = 0;
    }
    store_free(s);
    return rc;
}

int cli_getopt(struct cli *cli, int argc, char **argv, const struct option *own, int *optind_out,
               struct err *e)
{
    static const struct option common[] = {
        { "config", required_argument, NULL, OPT_CONFIG },
        { "json", no_argument, NULL, OPT_JSON },
        { "passphrase-file", required_argument, NULL, OPT_PASSPHRASE },
        { "help", no_argument, NULL, 'h' },
    };
    struct option merged[48];
    size_t n = 0;
    /* main (own == NULL) stops at the command; subcommands take options anywhere */
    const char *optstring = own == NULL ? "+:h" : ":h"; /* ':' reports a missing value */
    for (; own && own[n].name; n++) {
        BUG_ON(n >= ARRAY_LEN(merged) - ARRAY_LEN(common) - 1);
        merged[n] = own[n];
    }
    for (size_t i = 0; i < ARRAY_LEN(common); i++) {
        merged[n++] = common[i];
    }
    memset(&merged[n], 0, sizeof(merged[n]));
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, optstring, merged, NULL);
        *optind_out = optind;
        switch (c) {
        case OPT_CONFIG:
            cli->config_path = optarg;
            continue;
        case OPT_JSON:
            cli->json = true;
            continue;
        case OPT_PASSPHRASE:
            cli->passphrase_file = optarg;
            continue;
        case '?':
        case ':':
            /* GNU getopt leaves the offending word just before optind */
            if (c == ':') {
                err_set(e, ERRC_INVALID, "option '%s' needs a value", argv[optind - 1]);
            } else {
                err_set(e, ERRC_INVALID, "unknown option '%s'", argv[optind - 1]);
            }
            return '?';
        default:
            return c;
        }
    }
}

void cli_print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        xfree(s);
    }
    json_decref(v);
}

int cli_usage(const char *text)
{
    fputs(text, stdout);
    return 0;
}

static void print_error(const struct cli *cli, const struct err *e)
{
    if (cli->json) {
        cli_print_json(json_pack("{s:{s:s,s:s}}", "error", "code", err_code_name(e->code),
                                 "message", e->msg));
    }
    fprintf(stderr, "jitrctl: error: %s\n", e->msg);
    if (e->detail[0]) {
        log_debug("%s (%s:%d)", e->detail, e->file ? e->file : "?", e->line);
    }
}

int main(int argc, char **argv)
{
    struct cli cli = { 0 };
    struct err e = ERR_INIT;
    int rc = 1, first = 0;
    mem_install();
    /* --version alone, before the common options' parser (which knows no such option) */
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("jitrctl %s\n", JITRCA_VERSION);
        return 0;
    }
    /* common options before the command */
    int c = cli_getopt(&cli, argc, argv, NULL, &first, &e);
    if (c == '?') {
        print_error(&cli, &e);
        return err_exit_code(e.code);
    }
    if (c == 'h' || first >= argc) {
        fputs(main_usage, c == 'h' ? stdout : stderr);
        for (size_t i = 0; i < ARRAY_LEN(commands); i++) {
            fprintf(c == 'h' ? stdout : stderr, "  %-12s %s\n", commands[i].name,
                    commands[i].summary);
        }
        return c == 'h' ? 0 : 2;
    }
    if (strcmp(argv[first], "--version") == 0 || strcmp(argv[first], "version") == 0) {
        printf("jitrctl %s\n", JITRCA_VERSION);
        return 0;
    }
    for (size_t i = 0; i < ARRAY_LEN(commands); i++) {
        if (strcmp(argv[first], commands[i].name) == 0) {
            optind = 0; /* reinitialise getopt for the subcommand's argv */
            rc = commands[i].fn(&cli, argc - first, argv + first, &e);
            goto done;
        }
    }
    err_set(&e, ERRC_INVALID, "unknown command '%s' (see jitrctl --help)", argv[first]);
    rc = -1;
done:
    if (rc != 0) {
        if (e.code == ERRC_OK) {
            err_set(&e, ERRC_INTERNAL, "command failed");
        }
        print_error(&cli, &e);
        rc = err_exit_code(e.code);
    }
    fflush(stdout);
    conf_free(cli.conf);
    return rc;
}
