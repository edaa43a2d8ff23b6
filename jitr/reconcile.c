/*
 * The reconciler (worker 0 only; docs/contracts.md, "Guarantees": a device is never stuck because
 * an event was lost): every reconcile_interval_s, ListCertificatesByCA (every page, paced by the
 * same token bucket as every other call) for each of our registered CAs, one CA at a time; each
 * PENDING_ACTIVATION certificate registered more than reconcile_min_age_s ago (younger ones are the
 * event path's) without a state record is queued like an event (one Lua call checks and adds, so a
 * finished device is never queued again). A duplicate of a queued event is harmless: the flow is
 * idempotent.
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr_int.h"
#include "store/store.h"

/* ARGV: the entry's fields (jitr_event_fields). */
static const char enqueue_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', '1000000', '*', unpack(ARGV))\n"
    "return 1\n";

static void rec_next(struct jitr_service *s, const char *marker);

static void on_enqueued(void *arg, const struct store_reply *r, const struct err *e)
{
    struct jitr_service *s = arg;
    if (e == NULL && r->type == STORE_REPLY_INTEGER && r->integer == 1) {
        jitr_stat_incr(&s->ctx, "reconciler_enqueued", 1);
    }
}

/* One page of the CA's certificates: the pending ones without a state record are queued. */
static void rec_page(struct jitr_service *s, const json_t *certs)
{
    const struct jitr_catab *tab = s->rec_tab;
    struct jitr_event ev;
    size_t i;
    json_t *c;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.ca_id, sizeof(ev.ca_id), "%s", tab->ids[s->rec_ca]);
    snprintf(ev.account, sizeof(ev.account), "%s", tab->accounts[s->rec_ca]);
    ev.received_ms = time_now_ms();
    json_array_foreach (certs, i, c) {
        const char *id = json_string_value(json_object_get(c, "certificateId"));
        const char *st = json_string_value(json_object_get(c, "status"));
        char dev[128];
        const char *av[5 + JITR_FIELDS_MAX];
        struct jitr_fields fl;
        struct err se = ERR_INIT;
        json_t *cd = json_object_get(c, "creationDate");
        s->rec_seen++;
        if (id == NULL || st == NULL || strcmp(st, "PENDING_ACTIVATION") != 0 ||
            strlen(id) != 64 || !hex_is_lower(id, 64)) {
            continue;
        }
        if (json_is_number(cd) &&
            json_number_value(cd) * 1000 >
                (double)(time_now_ms() - s->cfg.reconcile_min_age_s * 1000)) {
            continue;
        }
        snprintf(dev, sizeof(dev), STORE_PREFIX "jitr:dev:%s", id);
        memcpy(ev.cert_id, id, sizeof(ev.cert_id));
        jitr_event_fields(&ev, "reconciler", &fl);
        av[0] = "EVAL";
        av[1] = enqueue_lua;
        av[2] = "2";
        av[3] = dev;
        av[4] = STORE_PREFIX "jitr:events";
        memcpy(av + 5, fl.av, fl.n * sizeof(*av));
        if (store_async_cmd(s->ctx.rs, (int)(5 + fl.n), av, NULL, 5000, on_enqueued, s, &se) ==
            0) {
            s->rec_queued++;
        }
    }
}

static void rec_done(struct jitr_service *s)
{
    s->reconciling = false;
    jitr_catab_unref(s->rec_tab);
    s->rec_tab = NULL;
}

static void on_listed(void *arg, const struct aws_iot_result *r, const struct err *e)
{
    struct jitr_service *s = arg;
    const char *ca_id = s->rec_tab->ids[s->rec_ca];
    json_t *certs = e == NULL ? json_object_get(r->out, "certificates") : NULL;
    json_t *next = e == NULL ? json_object_get(r->out, "nextMarker") : NULL;
    if (e != NULL) {
        if (e->code != ERRC_CANCELED) {
            log_warn("jitr: reconciler: ListCertificatesByCA %.16s...: %s", ca_id, e->msg);
        }
    } else if (!json_is_array(certs)) {
        log_warn("jitr: reconciler: ListCertificatesByCA %.16s...: malformed response: "
                 "'certificates' is not a list", ca_id);
    } else {
        rec_page(s, certs);
        if (json_is_string(next) && json_string_length(next) > 0 && !s->ctx.stopping &&
            !s->draining) {
            rec_next(s, json_string_value(next));
            return;
        }
        log_info("jitr: reconciler: CA %.16s...: %zu certificates, %zu pending checked", ca_id,
                 s->rec_seen, s->rec_queued);
    }
    if (s->ctx.stopping || s->draining) {
        rec_done(s);
        return;
    }
    s->rec_ca++;
    rec_next(s, NULL);
}

/* The next page of the current CA (marker) or the first of the next registered CA (NULL). */
static void rec_next(struct jitr_service *s, const char *marker)
{
    const struct jitr_catab *tab = s->rec_tab;
    struct err e = ERR_INIT;
    json_t *in;
    int rc;
    if (marker == NULL) {
        while (s->rec_ca < tab->n && !tab->known[s->rec_ca]) {
            s->rec_ca++;
        }
        if (s->rec_ca >= tab->n) {
            rec_done(s);
            return;
        }
        s->rec_seen = s->rec_queued = 0;
    }
    /* every page paced by the same token bucket as every other call */
    in = json_pack("{s:s, s:i}", "caCertificateId", tab->ids[s->rec_ca], "pageSize", 250);
    if (marker != NULL) {
        json_object_set_new(in, "marker", json_string(marker));
    }
    rc = jitr_aws_call(&s->ctx, NULL, AWS_IOT_LIST_CERTIFICATES_BY_CA, in, on_listed, s, &e);
    json_decref(in);
    if (rc != 0) {
        log_warn("jitr: reconciler: %s", e.msg);
        rec_done(s);
    }
}

static void on_reconcile(evutil_socket_t fd, short what, void *arg)
{
    struct jitr_service *s = arg;
    (void)fd;
    (void)what;
    if (s->reconciling || s->ctx.stopping) {
        return;
    }
    s->reconciling = true;
    s->rec_tab = jitr_catab_ref(s->ctx.cas);
    s->rec_ca = 0;
    rec_next(s, NULL);
}

int jitr_reconciler_start(struct jitr_service *s, struct err *e)
{
    struct timeval tv = { (time_t)s->cfg.reconcile_interval_s, 0 };
    if (s->cfg.reconcile_interval_s == 0) {
        return 0;
    }
    s->reconcile = event_new(s->ctx.base, -1, EV_PERSIST, on_reconcile, s);
    if (s->reconcile == NULL || event_add(s->reconcile, &tv) != 0) {
        return err_set(e, ERRC_INTERNAL, "jitr: cannot arm the reconciler");
    }
    return 0;
}

void jitr_reconciler_stop(struct jitr_service *s)
{
    if (s->reconcile) {
        event_free(s->reconcile);
        s->reconcile = NULL;
    }
}
