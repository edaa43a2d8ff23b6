/*
 * daemon/routes.c: the route tables of the signing listener and admin_listen, and the metrics
 * labels taken from them (the labels are what dashboards and alerts select on: a change here
 * is a change users see, docs/api.md).
 */
#include <string.h>

#include "core/buf.h"
#include "core/util.h"
#include "daemon/api.h"
#include "tests/harness/tt.h"

static int check_table(const struct httpd_route *t, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(t[i].fn != NULL);
        CHECK(t[i].name != NULL && t[i].name[0] != '\0');
        CHECK(t[i].pattern[0] == '/');
        CHECK(strcmp(t[i].method, "GET") == 0 || strcmp(t[i].method, "POST") == 0);
        for (size_t k = 0; k < i; k++) {
            if (strcmp(t[i].method, t[k].method) == 0 && strcmp(t[i].pattern, t[k].pattern) == 0) {
                TT_FAIL("%s %s twice", t[i].method, t[i].pattern);
            }
        }
    }
out:
    return rc;
}

static int test_tables(void)
{
    int rc = 0;
    CHECK_INT_EQ(check_table(api_routes, api_nroutes), 0);
    CHECK_INT_EQ(check_table(admin_routes, admin_nroutes), 0);
    CHECK_INT_EQ(check_table(ocsp_routes, ocsp_nroutes), 0);
    CHECK_INT_EQ(check_table(enroll_routes, enroll_nroutes), 0);
    /* every route counted in the shared metrics */
    CHECK(api_nroutes + admin_nroutes + ocsp_nroutes + enroll_nroutes <= METRICS_ROUTES);
out:
    return rc;
}

static int test_metric_names(void)
{
    int rc = 0;
    static const char *const want[] = {
        "sign",          "sign_batch",   "ca",
        "certificate",   "crl",          "revoke",
        "tokens",        "claim",        "est_cacerts",   "est_enroll",   "est_reenroll",
        "healthz",       "readyz",       "metrics",
        "admin_healthz", "admin_readyz", "admin_metrics",
        "ocsp_post",     "ocsp_get",     "enroll",
        "enroll_healthz",
    };
    const char *names[METRICS_ROUTES];
    size_t n = routes_metric_names(names, ARRAY_LEN(names));
    CHECK_INT_EQ(n, ARRAY_LEN(want));
    for (size_t i = 0; i < n; i++) {
        CHECK_STR_EQ(names[i], want[i]);
        for (size_t k = 0; k < i; k++) {
            if (strcmp(names[i], names[k]) == 0) {
                TT_FAIL("label '%s' twice", names[i]);
            }
        }
        for (const char *p = names[i]; *p; p++) {
            CHECK((*p >= 'a' && *p <= 'z') || *p == '_');
        }
    }
    /* label i is route i of the signing listener, then admin_listen's route i - api_nroutes */
    for (size_t i = 0; i < api_nroutes; i++) {
        CHECK_STR_EQ(names[i], api_routes[i].name);
    }
    for (size_t i = 0; i < admin_nroutes; i++) {
        CHECK_STR_EQ(names[api_nroutes + i], admin_routes[i].name);
    }
    /* less room: the first ones, never beyond it */
    names[3] = "untouched";
    CHECK_INT_EQ(routes_metric_names(names, 3), 3);
    CHECK_STR_EQ(names[2], "ca");
    CHECK_STR_EQ(names[3], "untouched");
out:
    return rc;
}

/* What /metrics shows: a request counted by route index carries that route's label. */
static int test_rendered(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct buf out = BUF_INIT;
    CHECK_OK(metrics_init(&e), &e);
    metrics_request(0, 201, 1000);                    /* POST /v1/sign */
    metrics_request((int)api_nroutes + 1, 200, 1000); /* admin_listen's /readyz */
    metrics_request(-1, 404, 1000);                   /* no route */
    admin_render_metrics(&out);
    CHECK_STR_CONTAINS(buf_cstr(&out),
                       "jitrd_http_requests_total{route=\"sign\",status=\"201\"} 1\n");
    CHECK_STR_CONTAINS(buf_cstr(&out),
                       "jitrd_http_requests_total{route=\"admin_readyz\",status=\"200\"} 1\n");
    CHECK_STR_CONTAINS(buf_cstr(&out),
                       "jitrd_http_requests_total{route=\"none\",status=\"404\"} 1\n");
out:
    buf_release(&out);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "tables", test_tables },
        { "metric_names", test_metric_names },
        { "rendered", test_rendered },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
