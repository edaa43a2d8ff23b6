/*
 * The async credential provider against a local HTTP server (creds_server.py on 127.0.0.1,
 * started by this test): EC2 IMDSv2 (and the IMDSv1 fallback), the container endpoint with a
 * token file (and its retries), STS web identity; refresh before expiry in the background and
 * on demand inside the mandatory window; environment and profile files; the error naming every
 * source when none has credentials.
 */
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aws/provider.h"
#include "core/mem.h"
#include "core/util.h"
#include "tests/harness/tt.h"

static struct event_base *base;
static char server_url[64];

struct got {
    bool done;
    char akid[64];
    char source[160];
    struct err err;
};

static void on_creds(void *arg, const struct aws_creds *c, const struct err *e)
{
    struct got *g = arg;
    g->done = true;
    if (e) {
        err_copy(&g->err, e);
    } else {
        snprintf(g->akid, sizeof(g->akid), "%s", c->access_key_id);
        snprintf(g->source, sizeof(g->source), "%s", c->source);
    }
}

static int get(struct aws_credp *p, struct got *g)
{
    struct err e = ERR_INIT;
    memset(g, 0, sizeof(*g));
    if (aws_credp_get(p, on_creds, g, &e) != 0) {
        err_copy(&g->err, &e);
        return -1;
    }
    if (g->done) {
        return -2; /* the contract: never inline */
    }
    while (!g->done && event_base_loop(base, EVLOOP_ONCE) >= 0) {
    }
    return g->err.code == ERRC_OK ? 0 : -1;
}

static void run_for_ms(long ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static int server_mode(const char *json)
{
    return tt_sh("curl -sf -X POST %s/_mode -d '%s' >/dev/null", server_url, json);
}

static long server_count(const char *what)
{
    return (long)tt_sh("exit $(curl -sf %s/_stats | jq '.counts.%s // 0')", server_url, what);
}

/* A provider over an environment of exactly these NAME=value strings (+ HOME, no files). */
struct fixture {
    char *env[24];
    size_t n;
    struct aws_config cfg;
    struct aws_transport *t;
    struct aws_credp *p;
};

static void fx_env(struct fixture *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fx_env(struct fixture *f, const char *fmt, ...)
{
    struct buf b = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vaddf(&b, fmt, ap);
    va_end(ap);
    f->env[f->n++] = buf_detach(&b, NULL);
}

static int fx_start(struct fixture *f, long advisory, long mandatory, struct err *e)
{
    struct aws_credp_opts o = { 0 };
    fx_env(f, "HOME=%s/home", tt_tmpdir());
    fx_env(f, "AWS_REGION=us-east-1");
    aws_config_init(&f->cfg);
    if (aws_config_resolve(&f->cfg, (const char *const *)f->env, NULL, NULL, e) != 0 ||
        (f->t = aws_transport_new(base, e)) == NULL) {
        return -1;
    }
    o.advisory_s = advisory;
    o.mandatory_s = mandatory;
    o.jitter_s = -1;
    o.retry_ms = 100;
    f->p = aws_credp_new(f->t, &f->cfg, (const char *const *)f->env, &o, e);
    return f->p ? 0 : -1;
}

static void fx_release(struct fixture *f)
{
    aws_transport_free(f->t); /* first: cancels in-flight fetches */
    aws_credp_free(f->p);
    aws_config_release(&f->cfg);
    for (size_t i = 0; i < f->n; i++) {
        xfree(f->env[i]);
    }
    memset(f, 0, sizeof(*f));
}

static int test_imds_refresh(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct fixture f = { 0 };
    struct got g;
    long tokens0;
    char first[64];
    CHECK_INT_EQ(server_mode("{\"expires\": 6, \"imds_token_status\": 200}"), 0);
    fx_env(&f, "AWS_EC2_METADATA_SERVICE_ENDPOINT=%s", server_url);
    CHECK_OK(fx_start(&f, 4, 1, &e), &e);
    tokens0 = server_count("imds_token");
    CHECK_OK(get(f.p, &g), &g.err);
    CHECK_STR_CONTAINS(g.akid, "ASIAIMDS");
    snprintf(first, sizeof(first), "%s", g.akid);
    CHECK_STR_CONTAINS(g.source, "EC2 IMDS");
    CHECK_INT_EQ(server_count("imds_token") - tokens0, 1);
    /* cached */
    CHECK_OK(get(f.p, &g), &g.err);
    CHECK_STR_EQ(g.akid, first);
    CHECK_INT_EQ(aws_credp_fetches(f.p), 1);
    /* expires in 6 s, advisory 4 s: a background refresh at ~2 s (the next at ~4 s) */
    run_for_ms(3000);
    CHECK_INT_EQ(aws_credp_fetches(f.p), 2);
    CHECK_INT_EQ(server_count("imds_token") - tokens0, 2);
    /* (the get may start the next background refresh: Expiration has whole seconds, so the
     * second credentials can be inside the advisory window already) */
    CHECK_OK(get(f.p, &g), &g.err);
    CHECK(strcmp(g.akid, first) != 0);
out:
    fx_release(&f);
    return rc;
}

static int test_mandatory_window(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct fixture f = { 0 };
    struct got g;
    char first[64] = "";
    /* expiring within the mandatory window: never handed out, every get fetches */
    CHECK_INT_EQ(server_mode("{\"expires\": 3}"), 0);
    fx_env(&f, "AWS_EC2_METADATA_SERVICE_ENDPOINT=%s", server_url);
    CHECK_OK(fx_start(&f, 10, 5, &e), &e);
    CHECK_OK(get(f.p, &g), &g.err);
    snprintf(first, sizeof(first), "%s", g.akid);
    CHECK_OK(get(f.p, &g), &g.err);
    CHECK(strcmp(g.akid, first) != 0);
    CHECK_INT_EQ(aws_credp_fetches(f.p), 2);
    /* invalidate (after an ExpiredToken answer) forces a fetch */
    CHECK_INT_EQ(server_mode("{\"expires\": 600}"), 0);
    CHECK_OK(get(f.p, &g), &g.err);
    aws_credp_invalidate(f.p);
    CHECK_OK(get(f.p, &g), &g.err);
    CHECK_INT_EQ(aws_credp_fetches(f.p), 4);
out:
    fx_release(&f);
    return rc;
}

static int test_imds_v1(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct fixture f = { 0 };
    struct got g;
    CHECK_INT_EQ(server_mode("{\"expires\": 600, \"imds_token_status\": 405}"), 0);
    fx_env(&f, "AWS_EC2_METADATA_SERVICE_ENDPOINT=%s", server_url);
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK_OK(get(f.p, &g), &g.err);
    CHECK_STR_CONTAINS(g.akid, "ASIAIMDS");
    fx_release(&f);
    fx_env(&f, "AWS_EC2_METADATA_SERVICE_ENDPOINT=%s", server_url);
    fx_env(&f, "AWS_EC2_METADATA_V1_DISABLED=true");
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK(get(f.p, &g) == -1);
    CHECK_INT_EQ(g.err.code, ERRC_NOT_FOUND);
    CHECK_STR_CONTAINS(g.err.detail, "EC2 IMDS (token request: HTTP 405)");
out:
    server_mode("{\"imds_token_status\": 200}");
    fx_release(&f);
    return rc;
}

static int test_container(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct fixture f = { 0 };
    struct got g;
    long n0;
    CHECK_INT_EQ(tt_sh("printf 'Bearer-tok\\n' >%s/tok && printf 'wrong' >%s/badtok", tt_tmpdir(),
                       tt_tmpdir()),
                 0);
    CHECK_INT_EQ(server_mode("{\"expires\": 600, \"container_fail\": 2}"), 0);
    fx_env(&f, "AWS_CONTAINER_CREDENTIALS_FULL_URI=%s/container/creds", server_url);
    fx_env(&f, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=%s/tok", tt_tmpdir());
    fx_env(&f, "AWS_EC2_METADATA_DISABLED=true");
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    n0 = server_count("container");
    CHECK_OK(get(f.p, &g), &g.err); /* two 500s, then success: 3 attempts */
    CHECK_STR_CONTAINS(g.akid, "ASIACONT");
    CHECK_STR_CONTAINS(g.source, "container endpoint");
    CHECK_INT_EQ(server_count("container") - n0, 3);
    fx_release(&f);
    /* a wrong token: 401, not retried; the error names the source */
    fx_env(&f, "AWS_CONTAINER_CREDENTIALS_FULL_URI=%s/container/creds", server_url);
    fx_env(&f, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=%s/badtok", tt_tmpdir());
    fx_env(&f, "AWS_EC2_METADATA_DISABLED=true");
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK(get(f.p, &g) == -1);
    CHECK_STR_CONTAINS(g.err.msg, "AWS credentials from container endpoint: HTTP 401");
    CHECK_INT_EQ(g.err.code, ERRC_DENIED);
out:
    fx_release(&f);
    return rc;
}

static int test_web_identity(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct fixture f = { 0 };
    struct got g;
    CHECK_INT_EQ(tt_sh("printf 'web-identity-token\\n' >%s/wit && printf 'other' >%s/badwit",
                       tt_tmpdir(), tt_tmpdir()),
                 0);
    fx_env(&f, "AWS_ROLE_ARN=arn:aws:iam::123456789012:role/jitrca");
    fx_env(&f, "AWS_WEB_IDENTITY_TOKEN_FILE=%s/wit", tt_tmpdir());
    fx_env(&f, "AWS_ENDPOINT_URL_STS=%s/sts/", server_url);
    fx_env(&f, "AWS_EC2_METADATA_DISABLED=true");
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK_OK(get(f.p, &g), &g.err);
    CHECK_STR_CONTAINS(g.akid, "ASIASTS");
    fx_release(&f);
    fx_env(&f, "AWS_ROLE_ARN=arn:aws:iam::123456789012:role/jitrca");
    fx_env(&f, "AWS_WEB_IDENTITY_TOKEN_FILE=%s/badwit", tt_tmpdir());
    fx_env(&f, "AWS_ENDPOINT_URL_STS=%s/sts/", server_url);
    fx_env(&f, "AWS_EC2_METADATA_DISABLED=true");
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK(get(f.p, &g) == -1);
    CHECK_STR_CONTAINS(g.err.detail, "InvalidIdentityToken");
out:
    fx_release(&f);
    return rc;
}

static int test_local_and_none(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct fixture f = { 0 };
    struct got g;
    fx_env(&f, "AWS_ACCESS_KEY_ID=AKIDENV");
    fx_env(&f, "AWS_SECRET_ACCESS_KEY=secret");
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK_OK(get(f.p, &g), &g.err);
    CHECK_STR_EQ(g.akid, "AKIDENV");
    CHECK_STR_EQ(g.source, "environment");
    fx_release(&f);
    CHECK_INT_EQ(
        tt_sh("printf '[prof]\\naws_access_key_id = AKIDFILE\\naws_secret_access_key = s\\n'"
              " >%s/credentials",
              tt_tmpdir()),
        0);
    fx_env(&f, "AWS_SHARED_CREDENTIALS_FILE=%s/credentials", tt_tmpdir());
    fx_env(&f, "AWS_PROFILE=prof");
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK_OK(get(f.p, &g), &g.err);
    CHECK_STR_EQ(g.akid, "AKIDFILE");
    CHECK_STR_CONTAINS(g.source, "profile prof");
    fx_release(&f);
    /* nothing anywhere; IMDS unreachable: every source is named */
    fx_env(&f, "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:1");
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK(get(f.p, &g) == -1);
    CHECK_INT_EQ(g.err.code, ERRC_NOT_FOUND);
    CHECK_STR_CONTAINS(g.err.msg, "no AWS credentials: environment (AWS_ACCESS_KEY_ID unset)");
    CHECK_STR_CONTAINS(g.err.detail, "web identity (not configured)");
    CHECK_STR_CONTAINS(g.err.detail, "container endpoint (not configured)");
    CHECK_STR_CONTAINS(g.err.detail, "EC2 IMDS (cannot connect to http://127.0.0.1:1");
out:
    fx_release(&f);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "imds_refresh", test_imds_refresh }, { "mandatory_window", test_mandatory_window },
        { "imds_v1", test_imds_v1 },           { "container", test_container },
        { "web_identity", test_web_identity }, { "local_and_none", test_local_and_none },
    };
    const char *src = getenv("JITRCA_SOURCE_DIR");
    struct buf port = BUF_INIT, path = BUF_INIT;
    struct err e = ERR_INIT;
    int rc = 1;
    mem_install();
    base = event_base_new();
    buf_addf(&path, "%s/port", tt_tmpdir());
    if (tt_sh("python3 %s/tests/unit/aws/creds_server.py --port-file %s >/dev/null 2>&1 & "
              "echo $! >%s/server.pid",
              src ? src : ".", path.data, tt_tmpdir()) != 0) {
        goto out;
    }
    for (int i = 0; i < 100 && !file_exists(path.data); i++) {
        usleep(50000);
    }
    if (file_read_all(path.data, 64, &port, &e) != 0) {
        fprintf(stderr, "creds_server did not start: %s\n", e.msg);
        goto out;
    }
    snprintf(server_url, sizeof(server_url), "http://127.0.0.1:%s", port.data);
    rc = tt_main(argc, argv, cases, ARRAY_LEN(cases));
out:
    tt_sh("kill $(cat %s/server.pid) 2>/dev/null", tt_tmpdir());
    buf_release(&port);
    buf_release(&path);
    event_base_free(base);
    return rc;
}
