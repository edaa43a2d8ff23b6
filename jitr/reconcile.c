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

static const char enqueue_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', '1000000', '*', 'cert', ARGV[1], 'ca', ARGV[2],\n"
    "  'account', ARGV[3], 'recv', ARGV[4], 'src', 'reconciler')\n"
    "return 1\n";

static void rec_next(struct jitr_service *s);

static void on_enqueued(void *arg, const struct store_reply *r, const struct err *e)
{
    struct jitr_service *s = arg;
    if (e == NULL && r->type == STORE_REPLY_INTEGER && r->integer == 1) {
        jitr_stat_incr(s, "reconciler_enqueued", 1);
    }
}

static void on_listed(void *arg, const struct aws_iot_result *r, const struct err *e)
{
    struct jitr_service *s = arg;
    size_t i, queued = 0;
    json_t *c;
    const char *ca_id = s->ca_ids[s->rec_ca];
    if (e != NULL) {
        if (e->code != ERRC_CANCELED) {
            log_warn("jitr: reconciler: ListCertificatesByCA %.16s...: %s", ca_id, e->msg);
        }
    } else {
        char now[32];
        snprintf(now, sizeof(now), "%lld", (long long)time_now_ms());
        json_array_foreach (json_object_get(r->out, "certificates"), i, c) {
            const char *id = json_string_value(json_object_get(c, "certificateId"));
            const char *st = json_string_value(json_object_get(c, "status"));
            char dev[128];
            struct err se = ERR_INIT;
            json_t *cd = json_object_get(c, "creationDate");
            if (id == NULL || st == NULL || strcmp(st, "PENDING_ACTIVATION") != 0 ||
                strlen(id) != 64 || !hex_is_lower(id, 64)) {
                continue;
            }
            if (json_is_number(cd) &&
                json_number_value(cd) * 1000 > (double)(time_now_ms() -
                                                        s->cfg.reconcile_min_age_s * 1000)) {
                continue;
            }
            snprintf(dev, sizeof(dev), STORE_PREFIX "jitr:dev:%s", id);
            const char *av[] = { "EVAL", enqueue_lua, "2", dev, STORE_PREFIX "jitr:events", id,
                                 ca_id, s->ca_accounts[s->rec_ca], now };
            if (store_async_cmd(s->rs, (int)ARRAY_LEN(av), av, NULL, 5000, on_enqueued, s,
                                &se) == 0) {
                queued++;
            }
        }
        log_info("jitr: reconciler: CA %.16s...: %zu certificates, %zu pending checked", ca_id,
                 json_array_size(json_object_get(r->out, "certificates")), queued);
    }
    if (s->stopping || s->draining) {
        s->reconciling = false;
        return;
    }
    s->rec_ca++;
    rec_next(s);
}

static void rec_next(struct jitr_service *s)
{
    struct err e = ERR_INIT;
    while (s->rec_ca < s->ncas && !s->ca_known[s->rec_ca]) {
        s->rec_ca++;
    }
    if (s->rec_ca >= s->ncas) {
        s->reconciling = false;
        return;
    }
    if (aws_iot_list_certificates_by_ca_all(s->iot, s->ca_ids[s->rec_ca], 250, on_listed, s,
                                            &e) != 0) {
        log_warn("jitr: reconciler: %s", e.msg);
        s->reconciling = false;
    }
}

static void on_reconcile(evutil_socket_t fd, short what, void *arg)
{
    struct jitr_service *s = arg;
    (void)fd;
    (void)what;
    if (s->reconciling || s->stopping) {
        return;
    }
    s->reconciling = true;
    s->rec_ca = 0;
    rec_next(s);
}

int jitr_reconciler_start(struct jitr_service *s, struct err *e)
{
    struct timeval tv = { (time_t)s->cfg.reconcile_interval_s, 0 };
    if (s->cfg.reconcile_interval_s == 0) {
        return 0;
    }
    s->reconcile = event_new(s->base, -1, EV_PERSIST, on_reconcile, s);
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
