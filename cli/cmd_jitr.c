/*
 * jitrctl jitr status CERT_ID|SERIAL, jitrctl jitr dlq list, jitrctl jitr dlq retry [ID]: one
 * device's provisioning state and trace, and the dead letters (docs/jitr.md). Reads and writes
 * Redis only (jitr/admin.c); jitrd's workers pick re-queued events up.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/util.h"
#include "jitr/jitr.h"

static const char jitr_usage[] =
    "usage: jitrctl jitr status CERT_ID|SERIAL\n"
    "       jitrctl jitr dlq list\n"
    "       jitrctl jitr dlq retry [--all | DLQ_ID | CERT_ID]\n"
    "  status     one device's JITR state (the next step, or DONE / REJECTED / IGNORED / DEAD),\n"
    "             its thing, attempts, the reason, state trace; CERT_ID is AWS IoT's\n"
    "             certificateId (64 hex), SERIAL the certificate's hex serial\n"
    "  dlq list   the dead letters: events whose provisioning failed permanently\n"
    "  dlq retry  re-queue one dead letter (by its stream id or certificateId) or --all\n";

static const char *jstr(const json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

int cmd_jitr(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option opts[] = { { "all", no_argument, NULL, 1 },
                                          { NULL, 0, NULL, 0 } };
    bool all = false;
    int optidx = 0, ch, rc = -1;
    const struct conf *c;
    json_t *out = NULL;
    int nargs;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        if (ch == 'h') {
            return cli_usage(jitr_usage);
        }
        if (ch != 1) {
            return -1;
        }
        all = true;
    }
    nargs = argc - optidx;
    if (nargs < 1) {
        return err_set(e, ERRC_INVALID, "jitr: status or dlq expected (see --help)");
    }
    if ((c = cli_conf(cli, e)) == NULL) {
        return -1;
    }
    if (strcmp(argv[optidx], "status") == 0) {
        if (nargs != 2) {
            return err_set(e, ERRC_INVALID, "usage: jitrctl jitr status CERT_ID|SERIAL");
        }
        if (jitr_admin_status(c->redis_url, argv[optidx + 1], &out, e) != 0) {
            goto out;
        }
        if (cli->json) {
            cli_print_json(out);
            out = NULL;
        } else {
            size_t i;
            json_t *t;
            printf("certificate %s\n  state %s\n  serial %s  CA %s  thing %s  attempts %s\n",
                   jstr(out, "certificate_id"), jstr(out, "state"), jstr(out, "serial"),
                   jstr(out, "ca"), jstr(out, "thing"), jstr(out, "attempts"));
            if (jstr(out, "reason")[0]) {
                printf("  reason: %s\n", jstr(out, "reason"));
            }
            json_array_foreach (json_object_get(out, "trace"), i, t) {
                /* "<ms since the epoch> <transition>": the time as UTC for people */
                const char *line = json_string_value(t);
                const char *sp = line ? strchr(line, ' ') : NULL;
                uint64_t ms = 0;
                char num[24], when[32];
                if (sp && (size_t)(sp - line) < sizeof(num)) {
                    snprintf(num, sizeof(num), "%.*s", (int)(sp - line), line);
                }
                if (sp && (size_t)(sp - line) < sizeof(num) && str_to_u64(num, &ms) == 0 &&
                    ms < UINT64_C(100000000000000)) { /* before the year 5138 */
                    time_format_rfc3339((time_t)(ms / 1000), when, sizeof(when));
                    when[strlen(when) - 1] = '\0'; /* the Z goes after the milliseconds */
                    printf("  %s.%03uZ %s\n", when, (unsigned)(ms % 1000), sp + 1);
                } else {
                    printf("  %s\n", line ? line : "");
                }
            }
        }
        rc = 0;
    } else if (strcmp(argv[optidx], "dlq") == 0 && nargs >= 2 &&
               strcmp(argv[optidx + 1], "list") == 0 && nargs == 2) {
        if (jitr_admin_dlq_list(c->redis_url, &out, e) != 0) {
            goto out;
        }
        if (cli->json) {
            cli_print_json(out);
            out = NULL;
        } else {
            size_t i;
            json_t *d;
            json_array_foreach (out, i, d) {
                printf("%s  cert %s  attempts %s  state %s\n    %s\n", jstr(d, "id"),
                       jstr(d, "cert"), jstr(d, "attempts"), jstr(d, "state"), jstr(d, "error"));
            }
            printf("%zu dead letters\n", json_array_size(out));
        }
        rc = 0;
    } else if (strcmp(argv[optidx], "dlq") == 0 && nargs >= 2 &&
               strcmp(argv[optidx + 1], "retry") == 0) {
        size_t n = 0;
        if ((nargs == 2) == !all || nargs > 3) {
            return err_set(e, ERRC_INVALID, "usage: jitrctl jitr dlq retry --all | ID");
        }
        if (jitr_admin_dlq_retry(c->redis_url, all ? NULL : argv[optidx + 2], &n, e) != 0) {
            goto out;
        }
        if (cli->json) {
            cli_print_json(json_pack("{s:I}", "requeued", (json_int_t)n));
        } else {
            printf("%zu dead letters re-queued\n", n);
        }
        rc = 0;
    } else {
        err_set(e, ERRC_INVALID, "jitr: unknown subcommand '%s' (status, dlq list, dlq retry)",
                argv[optidx]);
    }
out:
    json_decref(out);
    return rc;
}
