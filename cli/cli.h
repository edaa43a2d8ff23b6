/*
 * jitrctl: a table of subcommands (git's builtin/), one file each. Every subcommand accepts the
 * common options (--config FILE, --json, --passphrase-file FILE, --help) anywhere on its command
 * line, prints a message naming the problem on failure and exits with err_exit_code().
 */
#ifndef CLI_CLI_H
#define CLI_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>

#include "core/buf.h"
#include "core/conf.h"
#include "core/err.h"

struct cli {
    const char *config_path;
    const char *passphrase_file;
    bool json;
    struct conf *conf; /* loaded by cli_conf() */
};

/* Loads the configuration on first use. */
const struct conf *cli_conf(struct cli *cli, struct err *e);

/* Before a command that reads the index or reserves serials: when the index is incomplete
 * (Redis lost its data), rebuilds it from the audit log (issuance/reindex.h) and says so on
 * stderr, or waits up to CLI_INDEX_WAIT_MS for the process that is rebuilding it. */
#define CLI_INDEX_WAIT_MS 60000
int cli_index_ensure(struct cli *cli, struct err *e);

/* Option parsing shared by every subcommand: the command's own long options are merged with the
 * common ones. cli_getopt returns the option's val, -1 at the end, '?' on error (with *e set),
 * 'h' for --help. */
int cli_getopt(struct cli *cli, int argc, char **argv, const struct option *own, int *optind_out,
               struct err *e);

/* Prints a JSON value (stolen) or text to stdout. */
void cli_print_json(json_t *v);
/* Prints usage text (for --help) and returns 0. */
int cli_usage(const char *text);

typedef int cli_cmd_fn(struct cli *cli, int argc, char **argv, struct err *e);

int cmd_ca(struct cli *cli, int argc, char **argv, struct err *e);
/* cmd_ca.c: registers CA name in AWS IoT (RegisterCACertificate, mode "DEFAULT" or
 * "SNI_ONLY"), or adopts its registration when AWS has it already (*existed), audits a new
 * registration (ca_register) and records it (ca.json "aws", Redis aws:cacert:ID). *entry: the
 * recorded registration (region, account, caCertificateId, arn, mode, status,
 * autoRegistrationStatus, registered_at); release with json_decref. */
int cli_ca_register(struct cli *cli, const char *name, const char *mode, bool active, bool auto_reg,
                    bool force, json_t **entry, bool *existed, struct err *e) ATTR_WUR;
/* cmd_ca.c: an AWS IoT client on base for jitrctl (settings from the environment as the AWS
 * SDKs read them); quick: one short attempt without pacing. */
struct event_base;
struct aws_iot;
struct aws_iot *cli_aws_iot_new(const struct conf *c, struct event_base *base, bool quick,
                                struct err *e);
/* cmd_ca_life.c: jitrctl ca impact, ca retire --aws, ca deactivate */
int cmd_ca_impact(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_ca_retire_aws(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_ca_deactivate(struct cli *cli, int argc, char **argv, struct err *e);
/* cmd_ca_life.c: UpdateCACertificate of each registration of a in the configured region
 * (new_status or new_auto NULL: unchanged), each audited (ca_aws_update) first, then described
 * and recorded in ca.json; prints a line per registration unless --json. */
struct ca_authority;
int cli_ca_aws_update(struct cli *cli, const struct conf *c, struct ca_authority *a,
                      const char *new_status, const char *new_auto, struct err *e) ATTR_WUR;
/* cmd_ca_compromise.c: jitrctl ca compromise; cli_ca_block: CA name signs nothing ever again
 * (audited ca_compromised, ca.json, Redis ca:blocked); *was: it was marked so already */
int cmd_ca_compromise(struct cli *cli, int argc, char **argv, struct err *e);
int cli_ca_block(const struct conf *c, const char *name, bool *was, struct err *e) ATTR_WUR;
/* cmd_ca_cross.c: jitrctl ca cross-sign */
int cmd_ca_cross_sign(struct cli *cli, int argc, char **argv, struct err *e);
/* cmd_ca_rotate.c: jitrctl ca alias set|list, ca rotate */
int cmd_ca_alias(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_ca_rotate(struct cli *cli, int argc, char **argv, struct err *e);
/* cmd_ca_ocsp.c: jitrctl ca ocsp-signer */
int cmd_ca_ocsp_signer(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_sign(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_sign_batch(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_audit(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_reindex(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_config(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_cert(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_station(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_revoke(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_release(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_jobs(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_aws(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_crl(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_policy(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_jitr(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_report(struct cli *cli, int argc, char **argv, struct err *e);
/* cmd_enroll.c: jitrctl token, jitrctl claim */
int cmd_token(struct cli *cli, int argc, char **argv, struct err *e);
int cmd_claim(struct cli *cli, int argc, char **argv, struct err *e);

/* A new P-256 key and a CSR with CN=name, both PEM, appended to key_pem and csr_pem (a station's
 * credential, a claim's: cli/cmd_station.c). */
int cli_key_csr(const char *name, struct buf *key_pem, struct buf *csr_pem, struct err *e) ATTR_WUR;

#endif
