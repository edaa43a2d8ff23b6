/*
 * The route tables of jitrd (docs/api.md): the signing listener's, admin_listen's and
 * ocsp_listen's and enroll_listen's. A route's name is its metrics label
 * (jitrd_http_requests_total{route}); the metrics count the signing listener's routes first,
 * then admin_listen's, then ocsp_listen's, then enroll_listen's, in this order.
 */
#include "core/util.h"
#include "daemon/job.h"

/* Adding a route? Name it (a metrics label, unique across both tables; at most METRICS_ROUTES
 * in all) and document it in docs/api.md. */
const struct httpd_route api_routes[] = {
    { "POST", "/v1/sign", 0, "sign", sign_handle },
    { "POST", "/v1/sign/batch", 0, "sign_batch", sign_handle_batch },
    { "GET", "/v1/ca", 0, "ca", certs_handle_ca },
    { "GET", "/v1/certificates/", HTTPD_ROUTE_PREFIX, "certificate", certs_handle },
    { "GET", "/v1/crl", 0, "crl", crl_handle },
    { "POST", "/v1/revoke", 0, "revoke", crl_handle_revoke },
    { "POST", "/v1/tokens", 0, "tokens", enroll_handle_token },
    { "GET", "/v1/claims/", HTTPD_ROUTE_PREFIX, "claim", enroll_handle_claim },
    { "GET", "/.well-known/est/cacerts", 0, "est_cacerts", est_handle_cacerts },
    { "POST", "/.well-known/est/simpleenroll", 0, "est_enroll", est_handle_enroll },
    { "POST", "/.well-known/est/simplereenroll", 0, "est_reenroll", est_handle_reenroll },
    { "GET", "/healthz", 0, "healthz", admin_healthz },
    { "GET", "/readyz", 0, "readyz", admin_handle_readyz },
    { "GET", "/metrics", 0, "metrics", admin_handle_metrics },
};
const size_t api_nroutes = ARRAY_LEN(api_routes);

const struct httpd_route admin_routes[] = {
    { "GET", "/healthz", 0, "admin_healthz", admin_healthz },
    { "GET", "/readyz", 0, "admin_readyz", admin_listen_readyz },
    { "GET", "/metrics", 0, "admin_metrics", admin_listen_metrics },
};
const size_t admin_nroutes = ARRAY_LEN(admin_routes);

/* ocsp_listen (daemon/ocsp.c): POST / and GET /<the request in base64, URL-encoded> */
const struct httpd_route ocsp_routes[] = {
    { "POST", "/", 0, "ocsp_post", ocsp_handle_post },
    { "GET", "/", HTTPD_ROUTE_TAIL, "ocsp_get", ocsp_handle_get },
};
const size_t ocsp_nroutes = ARRAY_LEN(ocsp_routes);

/* enroll_listen (daemon/enroll.c) */
const struct httpd_route enroll_routes[] = {
    { "POST", "/v1/enroll", 0, "enroll", enroll_handle_enroll },
    { "GET", "/healthz", 0, "enroll_healthz", admin_healthz },
};
const size_t enroll_nroutes = ARRAY_LEN(enroll_routes);

size_t routes_metric_names(const char **names, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < api_nroutes && n < cap; i++) {
        names[n++] = api_routes[i].name;
    }
    for (size_t i = 0; i < admin_nroutes && n < cap; i++) {
        names[n++] = admin_routes[i].name;
    }
    for (size_t i = 0; i < ocsp_nroutes && n < cap; i++) {
        names[n++] = ocsp_routes[i].name;
    }
    for (size_t i = 0; i < enroll_nroutes && n < cap; i++) {
        names[n++] = enroll_routes[i].name;
    }
    return n;
}
