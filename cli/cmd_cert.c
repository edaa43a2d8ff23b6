/*
 * jitrctl cert show SERIAL|FINGERPRINT: the index record of an issued certificate, and the EST
 * re-enrollment links ("renews SERIAL", "superseded by SERIAL").
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "store/store.h"

static const char cert_usage[] =
    "usage: jitrctl cert show SERIAL|CERTIFICATE_ID [--pem]\n"
    "  SERIAL is the lowercase hex serial; CERTIFICATE_ID the 64-hex SHA-256 of the DER\n"
    "  (AWS IoT's certificateId).\n";

int cmd_cert(struct cli *cli, int argc, char **argv, struct err *e)
{
    static const struct option opts[] = { { "pem", no_argument, NULL, 1 },
                                          { NULL, 0, NULL, 0 } };
    bool pem = false;
    int optidx = 0, ch, rc = -1;
    struct buf serial = BUF_INIT;
    struct store_cert_rec rec = { 0 };
    struct store *s = NULL;
    json_t *o = NULL;
    const struct conf *c;
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        if (ch == 'h') {
            return cli_usage(cert_usage);
        }
        if (ch != 1) {
            return -1;
        }
        pem = true;
    }
    if (optidx != argc - 2 || strcmp(argv[optidx], "show") != 0) {
        return err_set(e, ERRC_INVALID, "usage: jitrctl cert show SERIAL|CERTIFICATE_ID");
    }
    const char *id = argv[optidx + 1];
    if ((c = cli_conf(cli, e)) == NULL || cli_index_ensure(cli, e) != 0 ||
        (s = store_connect(c->redis_url, e)) == NULL) {
        goto out;
    }
    if (hex_is_lower(id, 64)) {
        if (store_serial_by_fingerprint(s, id, &serial, e) != 0) {
            goto out;
        }
    } else if (strlen(id) <= 40 && hex_is_lower(id, strlen(id)) && *id) {
        buf_addstr(&serial, id);
    } else {
        err_set(e, ERRC_INVALID, "'%s' is neither a lowercase hex serial nor a certificateId", id);
        goto out;
    }
    if (store_cert_read(s, serial.data, &rec, e) != 0) {
        goto out;
    }
    o = json_object();
    for (size_t i = 0; i < rec.nfields; i++) {
        json_object_set_new(o, rec.fields[i].name, json_string(rec.fields[i].value));
    }
    if (pem) {
        struct buf der = BUF_INIT, out = BUF_INIT;
        const char *b64 = json_string_value(json_object_get(o, "der"));
        if (b64 && base64_decode(&der, b64, strlen(b64)) == 0) {
            base64_encode(&out, (const uint8_t *)der.data, der.len);
            fputs("-----BEGIN CERTIFICATE-----\n", stdout);
            for (size_t i = 0; i < out.len; i += 64) {
                printf("%.*s\n", (int)(out.len - i < 64 ? out.len - i : 64), out.data + i);
            }
            fputs("-----END CERTIFICATE-----\n", stdout);
        }
        buf_release(&der);
        buf_release(&out);
    } else if (cli->json) {
        cli_print_json(json_incref(o));
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v)
        {
            if (strcmp(k, "der") != 0 && strcmp(k, "renews") != 0 &&
                strcmp(k, "superseded_by") != 0) {
                printf("%-12s %s\n", k, json_string_value(v));
            }
        }
        /* EST re-enrollment links, both ways */
        if (json_object_get(o, "renews")) {
            printf("renews %s\n", json_string_value(json_object_get(o, "renews")));
        }
        if (json_object_get(o, "superseded_by")) {
            printf("superseded by %s\n", json_string_value(json_object_get(o, "superseded_by")));
        }
    }
    rc = 0;
out:
    json_decref(o);
    store_cert_rec_release(&rec);
    buf_release(&serial);
    store_free(s);
    return rc;
}
