/*
 * jitrctl jobs status | dlq list [--kind K] | dlq retry ID|--all [--kind K]: the job engine's
 * queues per kind and the dead letters of every kind (docs/jobs.md). Reads and writes Redis
 * only (jobs/admin.c); jitrd's workers pick re-queued jobs up.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "jobs/jobs.h"

static const char jobs_usage[] =
    "usage: jitrctl jobs status\n"
    "       jitrctl jobs dlq list [--kind K]\n"
    "       jitrctl jobs dlq retry ID|--all [--kind K]\n"
    "  status     per kind: queued (not read yet), due later, in flight (read, not ended),\n"
    "             done (since the counters began), dead (in the dead-letter stream)\n"
    "  dlq list   the dead letters of every kind, or of kind K: why, in which state\n"
    "  dlq retry  re-queue one dead letter (by its id or its job key, e.g. a certificateId)\n"
    "             or --all of them (of kind K with --kind)\n"
    "Kinds: jitr (provisioning), revoke (revocations, holds and releases reaching AWS IoT).\n";

static const char *jstr(const json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

int cmd_jobs(struct cli *cli, int argc, char **argv, struct err *e)
{
    enum {
        O_ALL = 1,
        O_KIND
    };
    static const struct option opts[] = { { "all", no_argument, NULL, O_ALL },
                                          { "kind", required_argument, NULL, O_KIND },
                                          { NULL, 0, NULL, 0 } };
    bool all = false;
    const char *kind = NULL;
    int optidx = 0, ch, rc = -1, nargs;
    const struct conf *c;
    json_t *out = NULL;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        switch (ch) {
        case 'h':
            return cli_usage(jobs_usage);
        case O_ALL:
            all = true;
            break;
        case O_KIND:
            kind = optarg;
            if (jobs_kind_find(kind) == NULL) {
                return err_set(e, ERRC_INVALID, "unknown job kind '%.64s' (jitr, revoke)", kind);
            }
            break;
        default:
            return -1;
        }
    }
    nargs = argc - optidx;
    if (nargs < 1) {
        return err_set(e, ERRC_INVALID, "jobs: status or dlq expected (see --help)");
    }
    if ((c = cli_conf(cli, e)) == NULL) {
        return -1;
    }
    if (strcmp(argv[optidx], "status") == 0 && nargs == 1 && !all && kind == NULL) {
        size_t i;
        json_t *k;
        if (jobs_admin_status(c->redis_url, &out, e) != 0) {
            goto out;
        }
        if (cli->json) {
            cli_print_json(out);
            out = NULL;
        } else {
            printf("%-8s %8s %8s %9s %10s %6s\n", "kind", "queued", "due", "in_flight", "done",
                   "dead");
            json_array_foreach(json_object_get(out, "kinds"), i, k)
            {
                printf("%-8s %8lld %8lld %9lld %10lld %6lld\n", jstr(k, "kind"),
                       (long long)json_integer_value(json_object_get(k, "queued")),
                       (long long)json_integer_value(json_object_get(k, "due")),
                       (long long)json_integer_value(json_object_get(k, "in_flight")),
                       (long long)json_integer_value(json_object_get(k, "done")),
                       (long long)json_integer_value(json_object_get(k, "dead")));
            }
        }
        rc = 0;
    } else if (strcmp(argv[optidx], "dlq") == 0 && nargs == 2 &&
               strcmp(argv[optidx + 1], "list") == 0 && !all) {
        size_t i;
        json_t *d;
        if (jobs_admin_dlq_list(c->redis_url, kind, &out, e) != 0) {
            goto out;
        }
        if (cli->json) {
            cli_print_json(out);
            out = NULL;
        } else {
            json_array_foreach(out, i, d)
            {
                printf("%s %s  key %s  attempts %s  state %s\n    %s\n", jstr(d, "kind"),
                       jstr(d, "id"), jstr(d, "key"), jstr(d, "attempts"), jstr(d, "state"),
                       jstr(d, "error"));
            }
            printf("%zu dead letters\n", json_array_size(out));
        }
        rc = 0;
    } else if (strcmp(argv[optidx], "dlq") == 0 && nargs >= 2 &&
               strcmp(argv[optidx + 1], "retry") == 0) {
        size_t n = 0;
        if ((nargs == 2) == !all || nargs > 3) {
            return err_set(e, ERRC_INVALID, "usage: jitrctl jobs dlq retry ID|--all [--kind K]");
        }
        if (jobs_admin_dlq_retry(c->redis_url, kind, all ? NULL : argv[optidx + 2], &n, e) != 0) {
            goto out;
        }
        if (cli->json) {
            cli_print_json(json_pack("{s:I}", "requeued", (json_int_t)n));
        } else {
            printf("%zu dead letters re-queued\n", n);
        }
        rc = 0;
    } else {
        err_set(e, ERRC_INVALID,
                "jobs: unknown or malformed subcommand '%s' (status, dlq list "
                "[--kind K], dlq retry ID|--all [--kind K])",
                argv[optidx]);
    }
out:
    json_decref(out);
    return rc;
}
