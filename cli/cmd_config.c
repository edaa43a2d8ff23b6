/*
 * jitrctl config: check (load and validate), show (the effective configuration, secrets
 * redacted: conf_redact), describe (every key, as docs/config.md shows it). Neither output nor
 * error messages show a secret of the file.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "store/store.h"

static const char config_usage[] = "usage: jitrctl config check|show|describe [--config FILE]\n";

int cmd_config(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option none[] = { { NULL, 0, NULL, 0 } };
    int optidx = 0, ch;
    while ((ch = cli_getopt(cli, argc, argv, none, &optidx, e)) != -1) {
        if (ch == 'h') {
            return cli_usage(config_usage);
        }
        return -1;
    }
    if (optidx != argc - 1) {
        return err_set(e, ERRC_INVALID, "usage: jitrctl config check|show|describe");
    }
    const char *sub = argv[optidx];
    struct buf out = BUF_INIT;
    if (strcmp(sub, "describe") == 0) {
        conf_describe(&out);
    } else if (strcmp(sub, "check") == 0 || strcmp(sub, "show") == 0) {
        const struct conf *c = cli_conf(cli, e);
        if (c == NULL) {
            return -1;
        }
        if (strcmp(sub, "show") == 0) {
            conf_dump(c, &out);
        } else {
            struct store_url u;
            if (store_url_parse(c->redis_url, &u, e) != 0) {
                return err_prefix(e, "%s: redis_url", *c->source ? c->source : "configuration");
            }
            buf_addf(&out, "configuration %s is valid\n", *c->source ? c->source : "(defaults)");
        }
    } else {
        return err_set(e, ERRC_INVALID, "unknown config subcommand '%s'", sub);
    }
    fputs(buf_cstr(&out), stdout);
    buf_release(&out);
    return 0;
}
