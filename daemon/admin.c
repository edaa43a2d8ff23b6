/*
 * What jitrd shows about itself, and to whom (docs/api.md "Operations"):
 *   - GET /healthz on the signing listener, to anyone: {"status":"ok"} while the worker's loop
 *     runs, nothing else;
 *   - GET /readyz and GET /metrics on the signing listener: a stranger learns only "ready" or
 *     "not ready" (503) from /readyz, and /metrics is for admin stations;
 *   - admin_listen (default 127.0.0.1:8444, plain HTTP, SO_REUSEPORT in every worker): /healthz,
 *     /readyz naming the problem, /metrics, for the local Prometheus and operators. It has no
 *     authentication: keep it on loopback or a management network.
 * Metrics route labels: the admin listener's routes follow the signing listener's (routes.c).
 * /readyz checks in a signing thread that Redis answers, every CA key is usable, the audit log is
 * intact and the index complete.
 */
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "daemon/job.h"

static struct httpd *admin_httpd; /* of this worker process */

/* /readyz: the audit log must be intact at its end (checked now) and as a whole (the last walk
 * of daemon/auditwatch.c). The reason names the problem, not the path. */
static int ready_audit_check(const struct snap *s, struct err *e)
{
    struct audit_report rep;
    if (audit_damaged_err(e, true) != 0) {
        return -1;
    }
    if (audit_tail_check(conf_audit_path(s->conf), &rep, e) != 0) {
        audit_err_for_client(s, e);
        return -1;
    }
    if (rep.problem != AUDIT_OK) {
        return err_set(e, ERRC_UNAVAILABLE, "%s: signing is suspended until an operator repairs it",
                       rep.message);
    }
    return 0;
}

/* /readyz: the index must be complete (daemon/heal.c rebuilds it otherwise). */
static int ready_index_check(struct store *st, struct err *e)
{
    bool ready = false;
    if (store_index_ready(st, &ready, e) != 0) {
        return -1;
    }
    if (!ready) {
        store_err_set_index_incomplete(e);
        snprintf(e->msg, sizeof(e->msg),
                 "the index of issued certificates is incomplete and being rebuilt from the "
                 "audit log (%llu records replayed so far)",
                 (unsigned long long)metrics_index_records());
        return -1;
    }
    return 0;
}

static void ready_check(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    struct store *st = ts_store(ts, j->snap, &e);
    if (st && store_ping(st, &e) != 0) { /* maybe a connection Redis dropped: once afresh */
        ts_reset(ts);
        err_clear(&e);
        st = ts_store(ts, j->snap, &e);
    }
    if (st == NULL || store_ping(st, &e) != 0) {
        ts_after_error(ts, &e);
        job_error(j, &e);
        return;
    }
    for (size_t i = 0; i < j->snap->ncas; i++) {
        if (snap_ca_check(&j->snap->cas[i], &e) != 0) {
            if (e.code == ERRC_DENIED && i != j->snap->def) {
                err_clear(&e); /* a retired CA a station still names: refused per request */
                continue;
            }
            job_error(j, &e);
            return;
        }
    }
    if (ready_audit_check(j->snap, &e) != 0) {
        job_error(j, &e);
        return;
    }
    if (ready_index_check(st, &e) != 0) {
        ts_after_error(ts, &e);
        job_error(j, &e);
        return;
    }
    job_json(j, 200, json_pack("{s:s}", "status", "ready"));
}

/* /readyz: with detail the problem is named (admin_listen, or an admin station whose certificate
 * is still valid in the index); a stranger learns only ready or not. */
static void ready_run(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    if (j->st && auth_client_status(ts, j, NULL, &e) != 0) {
        ts_after_error(ts, &e);
        j->detail = false;
    }
    ready_check(j, ts);
    if (!j->detail && j->status != 200) {
        job_json(j, 503,
                 json_pack("{s:{s:s,s:s}}", "error", "code", "unavailable", "message",
                           "jitrd is not ready"));
    }
}

/* GET /metrics on the signing listener: an admin station's, once its certificate is checked. */
static void metrics_run(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    if (auth_client_status(ts, j, NULL, &e) != 0) {
        if (e.code == ERRC_DENIED) {
            audit_deny(j, "metrics", &e);
        }
        ts_after_error(ts, &e);
        job_error(j, &e);
        return;
    }
    j->status = 200;
    snprintf(j->ctype, sizeof(j->ctype), "text/plain; version=0.0.4");
    buf_reset(&j->body);
    admin_render_metrics(&j->body);
}

void api_ready(struct api *a, struct httpd_req *r, bool detail)
{
    struct job *j = job_new(a, r, J_READY, ready_run);
    j->detail = detail;
    job_submit(a, j);
}

/* /readyz on the signing listener: anyone (load balancers) learns ready or not; an admin station
 * also learns why (admin.c). Never a refusal: a probe without a certificate is normal. */
void admin_handle_readyz(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    char cn[API_NAME_MAX + 2], msg[200];
    const struct station *st = NULL;
    X509 *leaf = NULL;
    enum refusal_reason why;
    struct job *j = job_new(a, r, J_READY, ready_run);
    if (auth_station_of(a, r, &st, &leaf, cn, &why, msg, sizeof(msg)) == 1 && st->admin) {
        j->st = st;
        j->detail = true;
        snprintf(j->requester, sizeof(j->requester), "station:%s", cn);
        auth_serial_hex(leaf, j->client_serial);
    }
    job_submit(a, j);
}

/* /metrics on the signing listener: admin stations only (else admin_listen). */
void admin_handle_metrics(struct httpd_req *r, void *arg)
{
    struct api *a = arg;
    struct job *j = auth_station_job(a, r, J_METRICS, metrics_run, "metrics");
    if (j == NULL) {
        return;
    }
    if (!j->st->admin) {
        char who[API_NAME_MAX + 1], requester[API_NAME_MAX + 16];
        snprintf(who, sizeof(who), "%s", j->st->name);
        snprintf(requester, sizeof(requester), "station:%s", who);
        job_free(j);
        auth_deny(a, r, "metrics", requester, ERRC_DENIED,
                  "station '%s' does not have the admin role (metrics: an admin station, or "
                  "admin_listen)",
                  who);
        return;
    }
    job_submit(a, j);
}

void admin_healthz(struct httpd_req *r, void *arg)
{
    (void)arg;
    httpd_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

void admin_listen_readyz(struct httpd_req *r, void *arg)
{
    api_ready(arg, r, true);
}

void admin_listen_metrics(struct httpd_req *r, void *arg)
{
    struct buf out = BUF_INIT;
    (void)arg;
    admin_render_metrics(&out);
    httpd_reply(r, 200, "text/plain; version=0.0.4", out.data, out.len);
    buf_release(&out);
}

void admin_render_metrics(struct buf *out)
{
    const char *names[METRICS_ROUTES];
    metrics_render(out, names, routes_metric_names(names, ARRAY_LEN(names)));
}

static void on_reply(void *arg, int route, int status, int64_t ns)
{
    (void)arg;
    metrics_request(route >= 0 ? (int)api_nroutes + route : -1, status, ns);
}

int admin_start(struct api *a, struct err *e)
{
    const struct conf *c = a->snap->conf;
    struct httpd_opts o;
    if (c->admin_listen[0] == '\0') {
        return 0;
    }
    memset(&o, 0, sizeof(o));
    o.listen = c->admin_listen;
    o.max_body = 1024;
    o.request_timeout = (int)c->request_timeout;
    o.idle_timeout = (int)c->idle_timeout;
    o.max_conns = 64;
    o.routes = admin_routes;
    o.nroutes = admin_nroutes;
    o.done = on_reply;
    o.refused = refusal_http;
    o.arg = a;
    admin_httpd = httpd_new(a->base, &o, e);
    if (admin_httpd == NULL) {
        return err_prefix(e, "admin_listen");
    }
    if (a->slot == 0 && strncmp(c->admin_listen, "127.", 4) != 0 &&
        strncmp(c->admin_listen, "[::1]:", 6) != 0) {
        log_warn("admin_listen %s is not a loopback address: /metrics and /readyz's reasons are "
                 "served there without authentication",
                 c->admin_listen);
    }
    return 0;
}

void admin_stop_accepting(void)
{
    if (admin_httpd) {
        httpd_stop_accepting(admin_httpd);
    }
}

void admin_free(void)
{
    httpd_free(admin_httpd);
    admin_httpd = NULL;
}
