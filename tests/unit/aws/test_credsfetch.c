/*
 * The async credential provider against a local HTTP server (creds_server.py on 127.0.0.1,
 * started by this test): EC2 IMDSv2 (and the IMDSv1 fallback), the container endpoint with a
 * token file (and its retries), STS web identity; refresh before expiry in the background and
 * on demand inside the mandatory window; environment and profile files; the error naming every
 * source when none has credentials.
 */
#include <event2/event.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
    long process_timeout_ms; /* 0: the default */
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
    o.process_timeout_ms = f->process_timeout_ms;
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
    /* expires in 6 s, advisory 4 s: a background refresh at ~2 s (the next at ~4 s, which a
     * loaded machine may reach within the 3 s: Expiration has whole seconds); a new IMDS token for
     * each fetch (more when a slow token request timed out and was retried) */
    run_for_ms(3000);
    CHECK(aws_credp_fetches(f.p) >= 2 && aws_credp_fetches(f.p) <= 3);
    CHECK(server_count("imds_token") - tokens0 >= (long)aws_credp_fetches(f.p));
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
    CHECK_INT_EQ(tt_sh("printf 'web-identity-token\\n' >%s/wit && printf 'other' >%s/badwit && "
                       "printf '[default]\\naws_access_key_id = AKFILE\\n"
                       "aws_secret_access_key = s\\n' >%s/wi-credentials",
                       tt_tmpdir(), tt_tmpdir(), tt_tmpdir()),
                 0);
    /* web identity comes before the shared files (the keys of [default] are not used) */
    fx_env(&f, "AWS_ROLE_ARN=arn:aws:iam::123456789012:role/jitrca");
    fx_env(&f, "AWS_WEB_IDENTITY_TOKEN_FILE=%s/wit", tt_tmpdir());
    fx_env(&f, "AWS_ENDPOINT_URL_STS=%s/sts/", server_url);
    fx_env(&f, "AWS_SHARED_CREDENTIALS_FILE=%s/wi-credentials", tt_tmpdir());
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

/* The server's JSON stats, jq expression expr, equals want. */
static bool server_jq(const char *expr, const char *want)
{
    return tt_sh("test \"$(curl -sf %s/_stats | jq -r '%s')\" = '%s'", server_url, expr, want) == 0;
}

static const char *tmp_file(const char *name, const char *text, mode_t mode)
{
    static char path[512];
    struct err e = ERR_INIT;
    snprintf(path, sizeof(path), "%s/%s", tt_tmpdir(), name);
    if (file_write_atomic(path, text, strlen(text), mode, false, &e) != 0) {
        fprintf(stderr, "write %s: %s\n", path, e.msg);
        exit(1);
    }
    return path;
}

/* Assume-role profiles: AssumeRole signed with the source's keys (the server verifies the
 * signature with botocore), the profile's external_id, session name and duration sent, chained
 * roles each signed with the previous role's credentials, a refusal naming the role. */
static int test_assume_role(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct fixture f = { 0 };
    struct got g;
    char cred[512], conf[512];
    snprintf(cred, sizeof(cred), "%s",
             tmp_file("ar-credentials",
                      "[base]\naws_access_key_id = AKIDSTATIC\n"
                      "aws_secret_access_key = static-secret\n",
                      0600));
    snprintf(conf, sizeof(conf), "%s",
             tmp_file("ar-config",
                      "[profile a]\nrole_arn = arn:aws:iam::111122223333:role/a\n"
                      "source_profile = base\nexternal_id = ext-9\nrole_session_name = sess-a\n"
                      "duration_seconds = 900\n"
                      "[profile b]\nrole_arn = arn:aws:iam::111122223333:role/b\n"
                      "source_profile = a\n"
                      "[profile denied]\nrole_arn = arn:aws:iam::111122223333:role/deny\n"
                      "source_profile = base\n",
                      0600));
#define AR_ENV(profile)                                     \
    fx_env(&f, "AWS_SHARED_CREDENTIALS_FILE=%s", cred);     \
    fx_env(&f, "AWS_CONFIG_FILE=%s", conf);                 \
    fx_env(&f, "AWS_PROFILE=%s", profile);                  \
    fx_env(&f, "AWS_ENDPOINT_URL_STS=%s/sts/", server_url); \
    fx_env(&f, "AWS_EC2_METADATA_DISABLED=true")
    AR_ENV("a");
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK_OK(get(f.p, &g), &g.err);
    CHECK_STR_CONTAINS(g.akid, "ASIAROLE");
    CHECK_STR_EQ(g.source, "role arn:aws:iam::111122223333:role/a (profile a)");
    CHECK(server_jq(".assume[-1].signed_by", "AKIDSTATIC"));
    CHECK(server_jq(".assume[-1].role", "arn:aws:iam::111122223333:role/a"));
    CHECK(server_jq(".assume[-1].session", "sess-a"));
    CHECK(server_jq(".assume[-1].external_id", "ext-9"));
    CHECK(server_jq(".assume[-1].duration", "900"));
    fx_release(&f);
    /* chained: a with the static keys, then b with a's credentials */
    AR_ENV("b");
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK_OK(get(f.p, &g), &g.err);
    CHECK_STR_EQ(g.source, "role arn:aws:iam::111122223333:role/b (profile b)");
    CHECK(server_jq(".assume[-2].signed_by", "AKIDSTATIC"));
    CHECK(server_jq(".assume[-1].signed_by | startswith(\"ASIAROLE\")", "true"));
    CHECK(server_jq(".assume[-1].role", "arn:aws:iam::111122223333:role/b"));
    CHECK(server_jq(".assume[-1].session | startswith(\"jitrca-\")", "true"));
    CHECK(server_jq(".assume[-1].external_id", "null"));
    fx_release(&f);
    /* refused by STS: the error names the role and STS's answer */
    CHECK_INT_EQ(server_mode("{\"deny_roles\": [\"arn:aws:iam::111122223333:role/deny\"]}"), 0);
    AR_ENV("denied");
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK(get(f.p, &g) == -1);
    CHECK_INT_EQ(g.err.code, ERRC_DENIED);
    CHECK_STR_CONTAINS(g.err.msg, "assuming role arn:aws:iam::111122223333:role/deny (profile "
                                  "'denied'): STS AssumeRole: AccessDenied: not authorized");
    CHECK_STR_CONTAINS(g.err.msg, "(HTTP 403)");
#undef AR_ENV
out:
    server_mode("{\"deny_roles\": []}");
    fx_release(&f);
    return rc;
}

static int ticks;
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    ticks++;
}

/* credential_process: run off the loop (a 100 ms timer keeps ticking while the command sleeps),
 * arguments split as the shell would, the environment passed, Expiration honoured; a failing
 * command's standard error in the error; a command that hangs is killed at the timeout. */
static int test_process(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct fixture f = { 0 };
    struct got g;
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = { 0, 100000 };
    char conf[512], script[512];
    snprintf(script, sizeof(script), "%s",
             tmp_file("creds.sh",
                      "#!/bin/sh\n"
                      "case \"$1\" in\n"
                      "ok) sleep 1; printf '{\"Version\": 1, \"AccessKeyId\": \"ASIAPROC%s%s\", "
                      "\"SecretAccessKey\": \"s\", \"SessionToken\": \"t\", \"Expiration\": "
                      "\"%s\"}' \"$2\" \"$JITRCA_MARK\" "
                      "\"$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)\" ;;\n"
                      "fail) echo 'the token expired:' >&2; echo ' run login' >&2; exit 3 ;;\n"
                      "hang) sleep 30 ;;\n"
                      "v2) echo '{\"Version\": 2}' ;;\n"
                      "esac\n",
                      0700));
    snprintf(conf, sizeof(conf), "%s",
             tmp_file("proc-config",
                      "[profile ok]\ncredential_process = 'CREDS' ok \"X;1\"\n"
                      "[profile fail]\ncredential_process = CREDS fail\n"
                      "[profile hang]\ncredential_process = CREDS hang\n"
                      "[profile v2]\ncredential_process = CREDS v2\n"
                      "[profile missing]\ncredential_process = /nonexistent/creds\n",
                      0600));
    CHECK_INT_EQ(tt_sh("sed -i 's|CREDS|%s|' %s", script, conf), 0);
    CHECK(tick != NULL && event_add(tick, &tv) == 0);
#define PROC_ENV(profile)                   \
    fx_env(&f, "AWS_CONFIG_FILE=%s", conf); \
    fx_env(&f, "AWS_PROFILE=%s", profile);  \
    fx_env(&f, "JITRCA_MARK=M7");           \
    fx_env(&f, "PATH=/usr/bin:/bin");       \
    fx_env(&f, "AWS_EC2_METADATA_DISABLED=true")
    PROC_ENV("ok");
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    ticks = 0;
    CHECK_OK(get(f.p, &g), &g.err);
    CHECK_STR_EQ(g.akid, "ASIAPROCX;1M7"); /* a quoted argument (no shell), the environment */
    CHECK(ticks >= 5);                     /* the loop ran while the command slept 1 s */
    CHECK_STR_EQ(g.source, "credential_process of profile 'ok'");
    CHECK_OK(get(f.p, &g), &g.err); /* cached: it expires in an hour */
    CHECK_INT_EQ(aws_credp_fetches(f.p), 1);
    fx_release(&f);
    static const struct {
        const char *profile, *want;
        enum err_code code;
    } bad[] = {
        { "fail", "exited with status 3: the token expired: run login", ERRC_UNAVAILABLE },
        { "hang", "still running after 500 ms (killed)", ERRC_TIMEOUT },
        { "v2", "\"Version\" must be 1", ERRC_INVALID },
        { "missing", "cannot run '/nonexistent/creds'", ERRC_UNAVAILABLE },
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        PROC_ENV(bad[i].profile);
        f.process_timeout_ms = 500;
        CHECK_OK(fx_start(&f, 0, 0, &e), &e);
        CHECK(get(f.p, &g) == -1);
        CHECK_INT_EQ(g.err.code, bad[i].code);
        CHECK_STR_CONTAINS(g.err.msg, "AWS credentials from credential_process of profile");
        CHECK_STR_CONTAINS(g.err.msg, bad[i].want);
        fx_release(&f);
    }
#undef PROC_ENV
out:
    event_free(tick);
    fx_release(&f);
    return rc;
}

/* SSO: the token `aws sso login` cached, GetRoleCredentials with it; an expired token or one
 * the portal refuses gives an error telling to run aws sso login. */
static int test_sso(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct fixture f = { 0 };
    struct got g;
    char conf[512], cache[512], body[512], when[32];
    long calls;
    snprintf(conf, sizeof(conf), "%s",
             tmp_file("sso-config",
                      "[profile dev]\nsso_session = my-sso\nsso_account_id = 111122223333\n"
                      "sso_role_name = Admin\n"
                      "[sso-session my-sso]\nsso_start_url = https://my.awsapps.com/start\n"
                      "sso_region = us-east-1\n",
                      0600));
    snprintf(cache, sizeof(cache), "%s/home/.aws/sso/cache", tt_tmpdir());
    CHECK_OK(file_mkdirs(cache, 0700, &e), &e);
    snprintf(cache, sizeof(cache),
             "%s/home/.aws/sso/cache/0ad374308c5a4e22f723adf10145eafad7c4031c.json", tt_tmpdir());
#define SSO_ENV()                                      \
    fx_env(&f, "AWS_CONFIG_FILE=%s", conf);            \
    fx_env(&f, "AWS_PROFILE=dev");                     \
    fx_env(&f, "AWS_ENDPOINT_URL_SSO=%s", server_url); \
    fx_env(&f, "AWS_EC2_METADATA_DISABLED=true")
#define SSO_CACHE(token, offset)                                                            \
    time_format_rfc3339(time(NULL) + (offset), when, sizeof(when));                         \
    snprintf(body, sizeof(body),                                                            \
             "{\"startUrl\": \"https://my.awsapps.com/start\", \"region\": \"us-east-1\", " \
             "\"accessToken\": \"%s\", \"expiresAt\": \"%s\"}",                             \
             token, when);                                                                  \
    CHECK_OK(file_write_atomic(cache, body, strlen(body), 0600, false, &e), &e)
    SSO_CACHE("sso-token-ok", 3600);
    SSO_ENV();
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK_OK(get(f.p, &g), &g.err);
    CHECK_STR_CONTAINS(g.akid, "ASIASSO");
    CHECK_STR_EQ(g.source, "SSO (profile dev, account 111122223333, role Admin)");
    fx_release(&f);
    /* expired: no call to the portal, the error says what to do */
    calls = server_count("sso");
    SSO_CACHE("sso-token-ok", -60);
    SSO_ENV();
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK(get(f.p, &g) == -1);
    CHECK_INT_EQ(g.err.code, ERRC_DENIED);
    CHECK_STR_CONTAINS(g.err.msg, "expired at");
    CHECK_STR_CONTAINS(g.err.msg, "run `aws sso login --sso-session my-sso`");
    CHECK_INT_EQ(server_count("sso"), calls);
    fx_release(&f);
    /* refused by the portal (revoked, signed out elsewhere) */
    SSO_CACHE("revoked-token", 3600);
    SSO_ENV();
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK(get(f.p, &g) == -1);
    CHECK_INT_EQ(g.err.code, ERRC_DENIED);
    CHECK_STR_CONTAINS(g.err.msg, "the SSO portal refused the token (HTTP 401 "
                                  "UnauthorizedException): run `aws sso login --sso-session "
                                  "my-sso`");
    fx_release(&f);
    /* never logged in */
    CHECK_INT_EQ(unlink(cache), 0);
    SSO_ENV();
    CHECK_OK(fx_start(&f, 0, 0, &e), &e);
    CHECK(get(f.p, &g) == -1);
    CHECK_STR_CONTAINS(g.err.msg, "no SSO token cached: run `aws sso login --sso-session "
                                  "my-sso`");
#undef SSO_ENV
#undef SSO_CACHE
out:
    fx_release(&f);
    return rc;
}

/* The region from EC2 IMDS when nothing else names one, and the error naming every place. */
static int test_imds_region(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_config cfg;
    struct aws_config_opts o = { NULL, NULL, NULL };
    struct buf ep = BUF_INIT, home = BUF_INIT;
    aws_config_init(&cfg);
    buf_addf(&ep, "AWS_EC2_METADATA_SERVICE_ENDPOINT=%s", server_url);
    buf_addf(&home, "HOME=%s/home", tt_tmpdir());
    {
        const char *env[] = { home.data, ep.data, NULL };
        CHECK_INT_EQ(server_mode("{\"imds_region\": \"ap-southeast-2\"}"), 0);
        CHECK_OK(aws_config_load(&cfg, env, &o, &e), &e);
        CHECK_STR_EQ(cfg.region, "ap-southeast-2");
        CHECK_STR_CONTAINS(cfg.region_source, "EC2 IMDS (http://127.0.0.1:");
        CHECK_STR_EQ(cfg.endpoint, "https://iot.ap-southeast-2.amazonaws.com");
    }
    {
        /* a region configured anywhere: IMDS is not asked */
        long before = server_count("imds_region");
        const char *env[] = { home.data, ep.data, "AWS_DEFAULT_REGION=eu-north-1", NULL };
        CHECK_OK(aws_config_load(&cfg, env, &o, &e), &e);
        CHECK_STR_EQ(cfg.region, "eu-north-1");
        CHECK_INT_EQ(server_count("imds_region"), before);
    }
    {
        const char *env[] = { home.data, "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:1",
                              NULL };
        err_clear(&e);
        CHECK_INT_EQ(aws_config_load(&cfg, env, &o, &e), -1);
        CHECK_STR_CONTAINS(e.msg, "no AWS region: AWS_REGION and AWS_DEFAULT_REGION unset, no "
                                  "region for profile 'default' in ");
        CHECK_STR_CONTAINS(e.msg, ", EC2 IMDS at http://127.0.0.1:1 (cannot connect");
        CHECK(cfg.region == NULL);
    }
    {
        const char *env[] = { home.data, "AWS_EC2_METADATA_DISABLED=true", NULL };
        err_clear(&e);
        CHECK_INT_EQ(aws_config_load(&cfg, env, &o, &e), -1);
        CHECK_STR_CONTAINS(e.msg, ", EC2 IMDS (AWS_EC2_METADATA_DISABLED=true)");
    }
    {
        const char *env[] = { home.data, ep.data, NULL };
        CHECK_INT_EQ(server_mode("{\"imds_region\": \"Not A Region\"}"), 0);
        err_clear(&e);
        CHECK_INT_EQ(aws_config_load(&cfg, env, &o, &e), -1);
        CHECK_STR_CONTAINS(e.msg, "is not [a-z0-9-]");
    }
out:
    server_mode("{\"imds_region\": \"eu-central-1\"}");
    aws_config_release(&cfg);
    buf_release(&ep);
    buf_release(&home);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "imds_refresh", test_imds_refresh },
        { "mandatory_window", test_mandatory_window },
        { "imds_v1", test_imds_v1 },
        { "container", test_container },
        { "web_identity", test_web_identity },
        { "local_and_none", test_local_and_none },
        { "assume_role", test_assume_role },
        { "process", test_process },
        { "sso", test_sso },
        { "imds_region", test_imds_region },
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
