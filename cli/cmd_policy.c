/*
 * jitrctl policy check FILE...: validates IoT policy documents and JITP provisioning templates
 * offline (jitr/template.c): sizes (a policy's 2048 characters without whitespace, a template's
 * 10240), names, variables, least privilege, template structure and functions. Each file is
 * recognised by its content: "Statement" makes a policy, "Resources" a template. Exit 0 only
 * when every file is valid; each problem is printed with the file's name.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/util.h"
#include "jitr/jitr.h"

static const char policy_usage[] =
    "usage: jitrctl policy check FILE...\n"
    "  FILE is an AWS IoT policy document (JSON with \"Statement\") or a JITP provisioning\n"
    "  template (JSON with \"Resources\"); see policies/iot/ and policies/templates/.\n";

static int check_one(const char *path, json_t *report, struct err *e)
{
    struct buf b = BUF_INIT;
    json_t *root = NULL;
    int rc = -1;
    const char *kind = "?";
    if (file_read_all(path, 1 << 20, &b, e) != 0) {
        goto out;
    }
    root = json_loadb(b.data, b.len, 0, NULL);
    if (json_object_get(root, "Resources") != NULL) {
        struct jitr_template *t = NULL;
        kind = "template";
        t = jitr_template_parse(b.data, b.len, path, "jitrca-device", e);
        if (t != NULL) {
            json_array_append_new(report,
                                  json_pack("{s:s, s:s, s:s, s:s}", "file", path, "kind", kind,
                                            "policy", jitr_template_policy_name(t), "version",
                                            jitr_template_policy_hash(t)));
            jitr_template_free(t);
            rc = 0;
        }
    } else {
        kind = "policy";
        if (jitr_policy_check(b.data, b.len, e) == 0) {
            json_array_append_new(report, json_pack("{s:s, s:s, s:I}", "file", path, "kind", kind,
                                                    "size",
                                                    (json_int_t)jitr_policy_size(b.data, b.len)));
            rc = 0;
        } else {
            err_prefix(e, "%s", path);
        }
    }
out:
    json_decref(root);
    buf_release(&b);
    return rc;
}

int cmd_policy(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option opts[] = { { NULL, 0, NULL, 0 } };
    int optidx = 0, ch, bad = 0;
    json_t *report = NULL;
    struct err first = ERR_INIT;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        if (ch == 'h') {
            return cli_usage(policy_usage);
        }
        return -1;
    }
    if (argc - optidx < 2 || strcmp(argv[optidx], "check") != 0) {
        return err_set(e, ERRC_INVALID, "usage: jitrctl policy check FILE...");
    }
    report = json_array();
    for (int i = optidx + 1; i < argc; i++) {
        struct err fe = ERR_INIT;
        if (check_one(argv[i], report, &fe) != 0) {
            fprintf(stderr, "jitrctl: %s\n", fe.msg);
            if (bad++ == 0) {
                err_copy(&first, &fe);
            }
        }
    }
    if (cli->json) {
        cli_print_json(report);
        report = NULL;
    } else {
        size_t i;
        json_t *r;
        json_array_foreach (report, i, r) {
            if (strcmp(json_string_value(json_object_get(r, "kind")), "policy") == 0) {
                printf("%s: policy OK (%lld of 2048 characters)\n",
                       json_string_value(json_object_get(r, "file")),
                       (long long)json_integer_value(json_object_get(r, "size")));
            } else {
                printf("%s: template OK (policy %s, version %.12s)\n",
                       json_string_value(json_object_get(r, "file")),
                       json_string_value(json_object_get(r, "policy")),
                       json_string_value(json_object_get(r, "version")));
            }
        }
    }
    json_decref(report);
    if (bad) {
        /* each problem was printed above, with its file */
        return err_set(e, first.code, "%d of %d files are invalid", bad, argc - optidx - 1);
    }
    return 0;
}
