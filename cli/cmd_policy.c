/*
 * jitrctl policy check [--cert FILE] FILE...: validates IoT policy documents and JITP
 * provisioning templates (jitr/template.c, jitr/check.c): sizes (a policy's 2048 characters
 * without whitespace, a template's 10240), names, variables, least privilege, template
 * structure and functions, and whether the template works for our devices: evaluated against a
 * representative certificate of every JITR profile under every CA JITR serves (the configured
 * data_dir and profiles_dir, as jitrd --check-config does), or, with --cert, against that real
 * certificate. Each file is recognised by its content: "Statement" makes a policy, "Resources" a
 * template. Exit 0 only when every file is valid; each problem is printed with the file's name.
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

#include "ca/profile.h"
#include "cli/cli.h"
#include "core/util.h"
#include "jitr/jitr.h"

static const char policy_usage[] =
    "usage: jitrctl policy check [--cert FILE] FILE...\n"
    "  FILE is an AWS IoT policy document (JSON with \"Statement\") or a JITP provisioning\n"
    "  template (JSON with \"Resources\"); see policies/iot/ and policies/templates/.\n"
    "  A template is also evaluated against a representative certificate of every profile\n"
    "  with \"jitr\": true under every CA JITR serves (data_dir, profiles_dir), or with\n"
    "  --cert FILE (PEM or DER) against that certificate; the output shows the thing,\n"
    "  attributes, groups and policies it would get, or the parameter it lacks.\n";

static X509 *load_cert(const char *path, struct err *e)
{
    struct buf b = BUF_INIT;
    X509 *x = NULL;
    if (file_read_all(path, 1 << 20, &b, e) != 0) {
        return NULL;
    }
    {
        BIO *bio = BIO_new_mem_buf(b.data, (int)b.len);
        x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
    }
    if (x == NULL) {
        const unsigned char *p = (const unsigned char *)b.data;
        x = d2i_X509(NULL, &p, (long)b.len);
    }
    ERR_clear_error();
    if (x == NULL) {
        err_set(e, ERRC_INVALID, "%s: not a certificate (PEM or DER)", path);
    }
    buf_release(&b);
    return x;
}

static int check_template(struct cli *cli, const char *path, const struct buf *b, X509 *cert,
                          const char *cert_path, json_t *report, struct err *e)
{
    const struct conf *c = cli_conf(cli, e);
    struct jitr_template *t = NULL;
    struct ca_profiles *profiles = NULL;
    json_t *pols = json_array(), *o = NULL;
    int rc = -1;
    if (c == NULL) {
        goto out;
    }
    t = jitr_template_parse(b->data, b->len, path, c->jitr.policy_name, e);
    if (t == NULL) {
        goto out;
    }
    for (size_t i = 0; i < jitr_template_npolicies(t); i++) {
        const struct jitr_policy *p = jitr_template_policy(t, i);
        json_array_append_new(pols, json_pack("{s:s, s:s, s:b, s:b}", "name", p->name, "sha256",
                                              p->hash, "existing", p->doc[0] == '\0',
                                              "versioned", p->versioned));
    }
    o = json_pack("{s:s, s:s, s:O}", "file", path, "kind", "template", "policies", pols);
    if (cert != NULL) {
        json_t *plan = NULL;
        if (jitr_template_check_cert(t, cert, &plan, e) != 0) {
            err_prefix(e, "%s", cert_path);
            goto out;
        }
        json_object_set_new(o, "certificate", json_string(cert_path));
        json_object_set_new(o, "plan", plan);
    } else {
        json_t *rows = json_array();
        json_object_set_new(o, "checked", rows);
        profiles = ca_profiles_load_dir(c->profiles_dir, e);
        if (profiles == NULL || jitr_template_check_fleet(t, c->data_dir, profiles, rows, e) != 0) {
            goto out;
        }
    }
    json_array_append(report, o);
    rc = 0;
out:
    json_decref(o);
    json_decref(pols);
    ca_profiles_free(profiles);
    jitr_template_free(t);
    return rc;
}

static int check_one(struct cli *cli, const char *path, X509 *cert, const char *cert_path,
                     json_t *report, struct err *e)
{
    struct buf b = BUF_INIT;
    json_t *root = NULL;
    int rc = -1;
    if (file_read_all(path, 1 << 20, &b, e) != 0) {
        goto out;
    }
    root = json_loadb(b.data, b.len, 0, NULL);
    if (json_object_get(root, "Resources") != NULL) {
        rc = check_template(cli, path, &b, cert, cert_path, report, e);
    } else if (jitr_policy_check(b.data, b.len, e) == 0) {
        json_array_append_new(report, json_pack("{s:s, s:s, s:I}", "file", path, "kind",
                                                "policy", "size",
                                                (json_int_t)jitr_policy_size(b.data, b.len)));
        rc = 0;
    } else {
        err_prefix(e, "%s", path);
    }
out:
    json_decref(root);
    buf_release(&b);
    return rc;
}

static void print_plan(const json_t *p)
{
    size_t i;
    json_t *v;
    const char *k;
    printf("    thing %s", json_string_value(json_object_get(p, "thing")));
    if (json_object_get(p, "thing_type")) {
        printf(" (type %s)", json_string_value(json_object_get(p, "thing_type")));
    }
    printf(", certificate %s\n", json_string_value(json_object_get(p, "status")));
    if (json_object_size(json_object_get(p, "attributes")) > 0) {
        printf("    attributes");
        json_object_foreach (json_object_get(p, "attributes"), k, v) {
            printf(" %s=%s", k, json_string_value(v));
        }
        printf("\n");
    }
    if (json_array_size(json_object_get(p, "groups")) > 0) {
        printf("    groups");
        json_array_foreach (json_object_get(p, "groups"), i, v) {
            printf(" %s", json_string_value(v));
        }
        printf("\n");
    }
}

static void print_report(const json_t *report)
{
    size_t i, j;
    json_t *r, *x;
    json_array_foreach (report, i, r) {
        const char *file = json_string_value(json_object_get(r, "file"));
        if (strcmp(json_string_value(json_object_get(r, "kind")), "policy") == 0) {
            printf("%s: policy OK (%lld of 2048 characters)\n", file,
                   (long long)json_integer_value(json_object_get(r, "size")));
            continue;
        }
        printf("%s: template OK\n", file);
        json_array_foreach (json_object_get(r, "policies"), j, x) {
            printf("  policy %s (%s)\n", json_string_value(json_object_get(x, "name")),
                   json_is_true(json_object_get(x, "existing"))    ? "existing, attached"
                   : json_is_true(json_object_get(x, "versioned")) ? "versioned by jitr.policy_name"
                                                                    : "named by its SHA-256");
        }
        if (json_object_get(r, "plan")) {
            printf("  certificate %s:\n", json_string_value(json_object_get(r, "certificate")));
            print_plan(json_object_get(r, "plan"));
        }
        json_array_foreach (json_object_get(r, "checked"), j, x) {
            printf("  CA %s, profile %s, subject %s:%s\n",
                   json_string_value(json_object_get(x, "ca")),
                   json_string_value(json_object_get(x, "profile")),
                   json_string_value(json_object_get(x, "subject")),
                   json_is_true(json_object_get(x, "cn_matches_profile"))
                       ? ""
                       : " (no sample CN matches the profile's cn_pattern)");
            print_plan(json_object_get(x, "plan"));
        }
    }
}

int cmd_policy(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option opts[] = { { "cert", required_argument, NULL, 'c' },
                                          { NULL, 0, NULL, 0 } };
    int optidx = 0, ch, bad = 0;
    json_t *report = NULL;
    struct err first = ERR_INIT;
    const char *cert_path = NULL;
    X509 *cert = NULL;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        if (ch == 'h') {
            return cli_usage(policy_usage);
        }
        if (ch == 'c') {
            cert_path = optarg;
            continue;
        }
        return -1;
    }
    if (argc - optidx < 2 || strcmp(argv[optidx], "check") != 0) {
        return err_set(e, ERRC_INVALID, "usage: jitrctl policy check [--cert FILE] FILE...");
    }
    if (cert_path != NULL && (cert = load_cert(cert_path, e)) == NULL) {
        return -1;
    }
    report = json_array();
    for (int i = optidx + 1; i < argc; i++) {
        struct err fe = ERR_INIT;
        if (check_one(cli, argv[i], cert, cert_path, report, &fe) != 0) {
            fprintf(stderr, "jitrctl: %s\n", fe.msg);
            if (bad++ == 0) {
                err_copy(&first, &fe);
            }
        }
    }
    X509_free(cert);
    if (cli->json) {
        cli_print_json(report);
        report = NULL;
    } else {
        print_report(report);
    }
    json_decref(report);
    if (bad) {
        /* each problem was printed above, with its file */
        return err_set(e, first.code, "%d of %d files are invalid", bad, argc - optidx - 1);
    }
    return 0;
}
