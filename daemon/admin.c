/*
 * What jitrd shows about itself, and to whom (docs/api.md "Operations"):
 *   - GET /healthz on the signing listener, to anyone: {"status":"ok"} while the worker's loop
 *     runs, nothing else;
 *   - GET /readyz and GET /metrics on the signing listener: a stranger learns only "ready" or
 *     "not ready" (503) from /readyz, and /metrics is for admin stations (api.c);
 *   - admin_listen (default 127.0.0.1:8444, plain HTTP, SO_REUSEPORT in every worker): /healthz,
 *     /readyz naming the problem, /metrics, for the local Prometheus and operators. It has no
 *     authentication: keep it on loopback or a management network.
 * Metrics route labels: the admin listener's routes follow the signing listener's.
 */
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "daemon/api.h"

static struct httpd *admin_httpd; /* of this worker process */

void admin_healthz(struct httpd_req *r, void *arg)
{
    (void)arg;
    httpd_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_ready(struct httpd_req *r, void *arg)
{
    api_ready(arg, r, true);
}

static void h_metrics(struct httpd_req *r, void *arg)
{
    struct buf out = BUF_INIT;
    (void)arg;
    admin_render_metrics(&out);
    httpd_reply(r, 200, "text/plain; version=0.0.4", out.data, out.len);
    buf_release(&out);
}

static const struct httpd_route admin_routes[] = {
    { "GET", "/healthz", 0, "admin_healthz", admin_healthz },
    { "GET", "/readyz", 0, "admin_readyz", h_ready },
    { "GET", "/metrics", 0, "admin_metrics", h_metrics },
};

void admin_render_metrics(struct buf *out)
{
    const char *names[METRICS_ROUTES];
    size_t n = 0;
    for (size_t i = 0; i < api_nroutes && n < METRICS_ROUTES; i++) {
        names[n++] = api_route_names[i];
    }
    for (size_t i = 0; i < ARRAY_LEN(admin_routes) && n < METRICS_ROUTES; i++) {
        names[n++] = admin_routes[i].name;
    }
    metrics_render(out, names, n);
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
    o.nroutes = ARRAY_LEN(admin_routes);
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
