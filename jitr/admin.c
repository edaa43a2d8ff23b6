/*
 * jitrctl's view of JITR (status, dead letters): short synchronous sequences of Redis commands
 * on jobs/jobs.h's struct jobs_admin (a private event loop with the async client), each reply
 * as JSON. Nothing here runs inside jitrd.
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "ca/issue.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr.h"
#include "jobs/jobs.h"
#include "store/store.h"

int jitr_admin_status(const char *redis_url, const char *id, json_t **out, struct err *e)
{
    struct jobs_admin a;
    char cert[65], key[200];
    json_t *h = NULL, *tr = NULL, *res = NULL;
    int rc = -1;
    size_t n = strlen(id);
    *out = NULL;
    if (n == 0 || n > 128) {
        return err_set(e, ERRC_INVALID, "'%s' is neither a certificateId nor a serial", id);
    }
    for (size_t i = 0; i < n; i++) {
        if (hex_digit_value((unsigned char)id[i]) < 0) {
            return err_set(e, ERRC_INVALID,
                           "'%.64s' is neither a certificateId (64 hex) nor a serial (hex)", id);
        }
    }
    if (jobs_admin_open(&a, redis_url, e) != 0) {
        goto out;
    }
    if (n == 64) {
        for (size_t i = 0; i < 64; i++) {
            cert[i] = (char)((id[i] >= 'A' && id[i] <= 'F') ? id[i] + 32 : id[i]);
        }
        cert[64] = '\0';
    } else {
        json_t *fp;
        char serial[41];
        if (ca_serial_normalise(id, serial, e) != 0) {
            goto out;
        }
        store_key_cert(key, sizeof(key), serial);
        const char *av[] = { "HGET", key, "fingerprint" };
        fp = jobs_admin_cmd(&a, 3, av, e);
        if (fp == NULL) {
            goto out;
        }
        if (!json_is_string(fp) || json_string_length(fp) != 64) {
            json_decref(fp);
            err_set(e, ERRC_NOT_FOUND, "serial %s is not in the index", serial);
            goto out;
        }
        snprintf(cert, sizeof(cert), "%s", json_string_value(fp));
        json_decref(fp);
    }
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", cert);
    {
        const char *av[] = { "HGETALL", key };
        h = jobs_admin_cmd(&a, 2, av, e);
    }
    snprintf(key, sizeof(key), STORE_PREFIX "jitr:trace:%s", cert);
    {
        const char *av[] = { "LRANGE", key, "0", "-1" };
        tr = h ? jobs_admin_cmd(&a, 4, av, e) : NULL;
    }
    if (tr == NULL) {
        goto out;
    }
    if (json_array_size(h) == 0) {
        err_set(e, ERRC_NOT_FOUND, "no JITR state for certificate %s", cert);
        goto out;
    }
    res = jobs_admin_pairs(h);
    json_object_set_new(res, "certificate_id", json_string(cert));
    json_object_set(res, "trace", tr);
    *out = res;
    res = NULL;
    rc = 0;
out:
    json_decref(h);
    json_decref(tr);
    json_decref(res);
    jobs_admin_close(&a);
    return rc;
}

static json_t *dlq_entries(struct jobs_admin *a, struct err *e)
{
    const char *av[] = { "XRANGE", STORE_PREFIX "jitr:dlq", "-", "+" };
    json_t *r = jobs_admin_cmd(a, 4, av, e), *out;
    size_t i;
    json_t *ent;
    if (r == NULL) {
        return NULL;
    }
    out = json_array();
    json_array_foreach (r, i, ent) {
        json_t *o = jobs_admin_pairs(json_array_get(ent, 1));
        json_object_set(o, "id", json_array_get(ent, 0));
        json_array_append_new(out, o);
    }
    json_decref(r);
    return out;
}

int jitr_admin_dlq_list(const char *redis_url, json_t **out, struct err *e)
{
    struct jobs_admin a;
    int rc = -1;
    *out = NULL;
    if (jobs_admin_open(&a, redis_url, e) == 0) {
        *out = dlq_entries(&a, e);
        rc = *out ? 0 : -1;
    }
    jobs_admin_close(&a);
    return rc;
}

int jitr_admin_dlq_retry(const char *redis_url, const char *id, size_t *n, struct err *e)
{
    struct jobs_admin a;
    json_t *list = NULL;
    size_t i;
    json_t *ent;
    int rc = -1;
    *n = 0;
    if (jobs_admin_open(&a, redis_url, e) != 0 || (list = dlq_entries(&a, e)) == NULL) {
        goto out;
    }
    json_array_foreach (list, i, ent) {
        const char *eid = json_string_value(json_object_get(ent, "id"));
        const char *cert = json_string_value(json_object_get(ent, "cert"));
        const char *kv[2 * JITR_FIELDS_MAX], *k;
        struct jitr_event ev;
        struct jitr_fields fl;
        struct err fe = ERR_INIT;
        char key[200];
        size_t nkv = 0;
        json_t *r, *v;
        json_object_foreach (ent, k, v) {
            if (json_is_string(v) && nkv + 2 <= ARRAY_LEN(kv)) {
                kv[nkv++] = k;
                kv[nkv++] = json_string_value(v);
            }
        }
        if (eid == NULL || cert == NULL || jitr_event_from_fields(kv, nkv, &ev, &fe) != 0) {
            continue;
        }
        if (id != NULL && strcmp(id, eid) != 0 && strcmp(id, cert) != 0) {
            continue;
        }
        snprintf(key, sizeof(key), STORE_PREFIX "jitr:dev:%s", cert);
        {
            const char *av[] = { "HDEL", key, "state", "attempts", "reason" };
            if ((r = jobs_admin_cmd(&a, 5, av, e)) == NULL) {
                goto out;
            }
            json_decref(r);
        }
        {
            const char *av[5 + JITR_FIELDS_MAX] = { "XADD", STORE_PREFIX "jitr:events", "*" };
            const char *tpl = json_string_value(json_object_get(ent, "tpl"));
            jitr_event_fields(&ev, "dlq-retry", &fl);
            memcpy(av + 3, fl.av, fl.n * sizeof(*av));
            if (tpl != NULL && tpl[0] != '\0') {
                /* the template its register job carries (jitrctl aws register-batch
                 * --template): never retried with jitrd's instead */
                av[3 + fl.n++] = "tpl";
                av[3 + fl.n++] = tpl;
            }
            if ((r = jobs_admin_cmd(&a, (int)(3 + fl.n), av, e)) == NULL) {
                goto out;
            }
            json_decref(r);
        }
        {
            const char *av[] = { "XDEL", STORE_PREFIX "jitr:dlq", eid };
            if ((r = jobs_admin_cmd(&a, 3, av, e)) == NULL) {
                goto out;
            }
            json_decref(r);
        }
        (*n)++;
    }
    if (id != NULL && *n == 0) {
        err_set(e, ERRC_NOT_FOUND, "no dead letter with id or certificateId '%s'", id);
        goto out;
    }
    rc = 0;
out:
    json_decref(list);
    jobs_admin_close(&a);
    return rc;
}
