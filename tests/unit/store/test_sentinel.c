/*
 * The Redis clients through Redis Sentinel, against real sentinels: a primary, a replica and
 * three redis-sentinel started by tests/harness/sentinel-fixture.sh (JITRCA_TEST_SENTINEL_DIR
 * names its directory; with-sentinel.sh runs this test under it). Both clients find the primary,
 * skip a sentinel that is down, refuse a server that is no primary (a fake sentinel naming the
 * replica), and reach the new primary after the primary is SIGKILLed.
 */
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/util.h"
#include "store/async.h"
#include "store/store.h"
#include "tests/harness/tt.h"

static char g_url[600];
static char g_dir[1024];
static int g_replica_port;
static char g_sentinels[200]; /* "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3" */

static int env_load(void)
{
    const char *d = getenv("JITRCA_TEST_SENTINEL_DIR");
    char path[1100], line[600];
    FILE *f = NULL;
    if (d == NULL) {
        return -1;
    }
    if (strlen(d) >= sizeof(g_dir) - 8) {
        return -1;
    }
    snprintf(g_dir, sizeof(g_dir), "%s", d);
    snprintf(path, sizeof(path), "%s/env", d);
    if ((f = fopen(path, "r")) == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (str_has_prefix(line, "SENTINEL_URL=")) {
            snprintf(g_url, sizeof(g_url), "%s", line + strlen("SENTINEL_URL="));
        } else if (str_has_prefix(line, "REPLICA_PORT=")) {
            g_replica_port = atoi(line + strlen("REPLICA_PORT="));
        }
    }
    fclose(f);
    const char *h = g_url + strlen("redis-sentinel://");
    const char *slash = strchr(h, '/');
    if (slash == NULL || (size_t)(slash - h) >= sizeof(g_sentinels)) {
        return -1;
    }
    memcpy(g_sentinels, h, (size_t)(slash - h));
    return 0;
}

static int test_url_parse(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct store_url u;
    char d[600];
    CHECK_OK(store_url_parse("redis-sentinel://:pw@10.0.0.1:26380,[::1],s3:1/mymaster/4", &u, &e),
             &e);
    CHECK_STR_EQ(u.master, "mymaster");
    CHECK_INT_EQ(u.db, 4);
    CHECK_STR_EQ(u.password, "pw");
    CHECK_INT_EQ(u.nsentinels, 3);
    CHECK_STR_EQ(u.sentinel[0].host, "10.0.0.1");
    CHECK_INT_EQ(u.sentinel[0].port, 26380);
    CHECK_STR_EQ(u.sentinel[1].host, "::1");
    CHECK_INT_EQ(u.sentinel[1].port, 26379);
    CHECK_INT_EQ(u.sentinel[2].port, 1);
    store_url_display(&u, d, sizeof(d));
    CHECK_STR_EQ(d, "redis-sentinel://10.0.0.1:26380,[::1]:26379,s3:1/mymaster/4");
    CHECK(strstr(d, "pw") == NULL);
    CHECK_OK(store_url_parse("redis-sentinel://h/m", &u, &e), &e);
    CHECK_INT_EQ(u.db, 0);
    CHECK_INT_EQ(u.nsentinels, 1);
    static const char *const bad[] = {
        "redis-sentinel://h1:26379",            /* no master */
        "redis-sentinel://h1:26379/",           /* empty master */
        "redis-sentinel:///m",                  /* no sentinel */
        "redis-sentinel://h1,/m",               /* empty sentinel */
        "redis-sentinel://h1,,h2/m",            /* empty sentinel */
        "redis-sentinel://h1:0/m",              /* bad port */
        "redis-sentinel://h1:x/m",              /* bad port */
        "redis-sentinel://h1/m/x",              /* bad db */
        "redis-sentinel://h1/m/1001",           /* db out of range */
        "redis-sentinel://h1/m x",              /* space in the name */
        "redis-sentinel://[::1/m",              /* unterminated */
        "redis-sentinel://a,b,c,d,e,f,g,h,i/m", /* more than 8 */
        "sentinel://h1/m",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        if (store_url_parse(bad[i], &u, &e) == 0) {
            TT_FAIL("accepted '%s'", bad[i]);
        }
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        err_clear(&e);
    }
    /* the password never shows in a message */
    CHECK(store_url_parse("redis-sentinel://:s3cret@h1:0/m", &u, &e) != 0);
    CHECK(strstr(e.msg, "s3cret") == NULL);
    err_clear(&e);
out:
    return rc;
}

/* ---- the asynchronous client, one command at a time ---- */

struct box {
    bool done;
    struct err err;
    char str[256];
    long long integer;
};

static void on_reply(void *arg, const struct store_reply *r, const struct err *e)
{
    struct box *b = arg;
    b->done = true;
    if (e) {
        b->err = *e;
    } else if (r->type == STORE_REPLY_STRING) {
        snprintf(b->str, sizeof(b->str), "%.*s", (int)r->len, r->str);
    } else if (r->type == STORE_REPLY_INTEGER) {
        b->integer = r->integer;
    }
}

/* Runs one command on s to completion; 0 on success (the reply in b), -1 with b->err. */
static int acmd(struct event_base *base, struct store_async *s, struct box *b, int argc,
                const char *const *argv)
{
    memset(b, 0, sizeof(*b));
    if (store_async_cmd(s, argc, argv, NULL, 3000, on_reply, b, &b->err) != 0) {
        return -1;
    }
    while (!b->done) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    return b->err.code == ERRC_OK ? 0 : -1;
}

static int test_primary_found(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct store *s = NULL;
    struct event_base *base = NULL;
    struct store_async *as = NULL;
    struct box b;
    char url[700];
    bool first = false;
    const char *get[] = { "GET", STORE_PREFIX "once:sentinel-test" };
    struct box many[20];
    char val[20][8];
    if (env_load() != 0) {
        return TT_SKIP;
    }
    /* synchronous: found, usable, db selected */
    snprintf(url, sizeof(url), "%s/3", g_url);
    s = store_connect(url, &e);
    CHECK(s != NULL);
    CHECK_OK(store_once(s, "sentinel-test", 60, &first, &e), &e);
    CHECK(first);
    /* asynchronous: the same database, the key written above is there */
    base = event_base_new();
    as = store_async_new(base, url, &e);
    CHECK(as != NULL);
    CHECK_OK(acmd(base, as, &b, 2, get), &b.err);
    CHECK(b.str[0] != '\0');
    /* several commands sent before the primary is known are sent in order */
    memset(many, 0, sizeof(many));
    store_async_free(as);
    as = store_async_new(base, url, &e);
    CHECK(as != NULL);
    for (int i = 0; i < 20; i++) {
        snprintf(val[i], sizeof(val[i]), "%d", i);
        const char *av[] = { "RPUSH", STORE_PREFIX "sentinel-order", val[i] };
        CHECK_OK(store_async_cmd(as, 3, av, NULL, 3000, on_reply, &many[i], &e), &e);
    }
    for (int i = 0; i < 20; i++) {
        while (!many[i].done) {
            event_base_loop(base, EVLOOP_ONCE);
        }
        CHECK_OK(many[i].err.code == ERRC_OK ? 0 : -1, &many[i].err);
        CHECK_INT_EQ(many[i].integer, i + 1);
    }
    /* a first sentinel that is down is skipped (port 1: privileged, nobody listens) */
    snprintf(url, sizeof(url), "redis-sentinel://127.0.0.1:1,%s/jitrca/3", g_sentinels);
    store_free(s);
    s = store_connect(url, &e);
    CHECK(s != NULL);
    CHECK_OK(store_ping(s, &e), &e);
    store_async_free(as);
    as = store_async_new(base, url, &e);
    CHECK(as != NULL);
    CHECK_OK(acmd(base, as, &b, 2, get), &b.err);
    CHECK(b.str[0] != '\0');
out:
    store_free(s);
    store_async_free(as);
    if (base) {
        event_base_free(base);
    }
    return rc;
}

static int test_no_primary(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct event_base *base = NULL;
    struct store_async *as = NULL;
    struct box b;
    char url[700];
    const char *ping[] = { "PING" };
    if (env_load() != 0) {
        return TT_SKIP;
    }
    base = event_base_new();
    /* a master the sentinels do not know */
    snprintf(url, sizeof(url), "redis-sentinel://%s/nosuchmaster", g_sentinels);
    CHECK(store_connect(url, &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_UNAVAILABLE);
    CHECK_STR_CONTAINS(e.msg, "nosuchmaster");
    err_clear(&e);
    as = store_async_new(base, url, &e);
    CHECK(as != NULL);
    CHECK(acmd(base, as, &b, 1, ping) != 0);
    CHECK_INT_EQ(b.err.code, ERRC_UNAVAILABLE);
    CHECK_STR_CONTAINS(b.err.msg, "no sentinel gave the primary of 'nosuchmaster'");
    store_async_free(as);
    as = NULL;
    /* no sentinel reachable at all */
    CHECK(store_connect("redis-sentinel://127.0.0.1:1/jitrca", &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_UNAVAILABLE);
    err_clear(&e);
    as = store_async_new(base, "redis-sentinel://127.0.0.1:1/jitrca", &e);
    CHECK(as != NULL);
    CHECK(acmd(base, as, &b, 1, ping) != 0);
    CHECK_INT_EQ(b.err.code, ERRC_UNAVAILABLE);
    /* a wrong password: the primary refuses, nothing is sent */
    store_async_free(as);
    as = NULL;
    snprintf(url, sizeof(url), "redis-sentinel://:wrong@%s/jitrca", g_sentinels);
    CHECK(store_connect(url, &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_UNAVAILABLE);
    CHECK(strstr(e.msg, "wrong") == NULL);
    err_clear(&e);
    as = store_async_new(base, url, &e);
    CHECK(as != NULL);
    CHECK(acmd(base, as, &b, 1, ping) != 0);
    CHECK_INT_EQ(b.err.code, ERRC_UNAVAILABLE);
    CHECK(strstr(b.err.msg, "wrong") == NULL);
out:
    store_async_free(as);
    if (base) {
        event_base_free(base);
    }
    return rc;
}

/* A sentinel that names the replica as the primary: what a client sees from a sentinel that has
 * not noticed a failover yet. Answers every connection until the socket is shut down. */
struct fake {
    int fd;
    int port;
    int answer_port;
    pthread_t th;
};

static void *fake_run(void *arg)
{
    struct fake *f = arg;
    for (;;) {
        int c = accept(f->fd, NULL, NULL);
        char in[512], out[128];
        if (c < 0) {
            return NULL;
        }
        if (read(c, in, sizeof(in)) > 0) {
            char port[16];
            int n = snprintf(port, sizeof(port), "%d", f->answer_port);
            int len = snprintf(out, sizeof(out), "*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%s\r\n", n, port);
            if (write(c, out, (size_t)len) < 0) {
                /* the client went away */
            }
        }
        close(c);
    }
}

static int fake_start(struct fake *f, int answer_port)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->answer_port = answer_port;
    if ((f->fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
        bind(f->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(f->fd, 8) != 0 ||
        getsockname(f->fd, (struct sockaddr *)&a, &alen) != 0) {
        return -1;
    }
    f->port = ntohs(a.sin_port);
    return pthread_create(&f->th, NULL, fake_run, f) == 0 ? 0 : -1;
}

static void fake_stop(struct fake *f)
{
    shutdown(f->fd, SHUT_RDWR);
    pthread_join(f->th, NULL);
    close(f->fd);
}

static int test_not_primary(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct fake f;
    struct event_base *base = NULL;
    struct store_async *as = NULL;
    struct box b;
    char url[700];
    bool started = false;
    const char *set[] = { "SET", STORE_PREFIX "sentinel-replica", "x" };
    if (env_load() != 0) {
        return TT_SKIP;
    }
    CHECK(fake_start(&f, g_replica_port) == 0);
    started = true;
    snprintf(url, sizeof(url), "redis-sentinel://127.0.0.1:%d/jitrca", f.port);
    CHECK(store_connect(url, &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_UNAVAILABLE);
    CHECK_STR_CONTAINS(e.msg, "not a primary");
    err_clear(&e);
    base = event_base_new();
    as = store_async_new(base, url, &e);
    CHECK(as != NULL);
    CHECK(acmd(base, as, &b, 3, set) != 0);
    CHECK_INT_EQ(b.err.code, ERRC_UNAVAILABLE);
    CHECK_STR_CONTAINS(b.err.msg, "not a primary");
out:
    store_async_free(as);
    if (base) {
        event_base_free(base);
    }
    if (started) {
        fake_stop(&f);
    }
    return rc;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Last: the primary is SIGKILLed; the clients made before reach the replica once it is promoted. */
static int test_failover(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct store *s = NULL;
    struct event_base *base = NULL;
    struct store_async *as = NULL;
    struct box b;
    int64_t t0, first_fail = 0, back = 0;
    int fails = 0;
    bool first = false;
    const char *wait[] = { "WAIT", "1", "2000" };
    const char *get[] = { "GET", STORE_PREFIX "sentinel-before" };
    const char *set[] = { "SET", STORE_PREFIX "sentinel-before", "kept" };
    if (env_load() != 0) {
        return TT_SKIP;
    }
    base = event_base_new();
    as = store_async_new(base, g_url, &e);
    CHECK(as != NULL);
    CHECK_OK(acmd(base, as, &b, 3, set), &b.err);
    CHECK_OK(acmd(base, as, &b, 3, wait), &b.err);
    CHECK_INT_EQ(b.integer, 1); /* the replica has it */
    CHECK(tt_sh("bash %s/tests/harness/sentinel-fixture.sh kill-primary %s >/dev/null",
                getenv("JITRCA_SOURCE_DIR"), g_dir) == 0);
    /* one INCR every 50 ms on the same client until it works again */
    t0 = now_ms();
    while (now_ms() - t0 < 30000) {
        const char *incr[] = { "INCR", STORE_PREFIX "sentinel-after" };
        if (acmd(base, as, &b, 2, incr) == 0) {
            if (fails > 0) {
                back = now_ms();
                break;
            }
        } else {
            CHECK_INT_EQ(b.err.code == ERRC_TIMEOUT ? ERRC_UNAVAILABLE : b.err.code,
                         ERRC_UNAVAILABLE);
            if (fails++ == 0) {
                first_fail = now_ms();
            }
        }
        struct timeval tv = { 0, 50 * 1000 };
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    CHECK(back > 0);
    fprintf(stderr, "  failover: %d failed commands, back after %lld ms\n", fails,
            (long long)(back - first_fail));
    CHECK(back - first_fail < 15000);
    CHECK_OK(acmd(base, as, &b, 2, get), &b.err);
    CHECK_STR_EQ(b.str, "kept");
    /* a new synchronous client goes to the new primary, which is the old replica */
    s = store_connect(g_url, &e);
    CHECK(s != NULL);
    CHECK_OK(store_ping(s, &e), &e);
    CHECK_OK(store_once(s, "sentinel-after-failover", 60, &first, &e), &e);
    CHECK(first);
out:
    store_free(s);
    store_async_free(as);
    if (base) {
        event_base_free(base);
    }
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "url_parse", test_url_parse },   { "primary_found", test_primary_found },
        { "no_primary", test_no_primary }, { "not_primary", test_not_primary },
        { "failover", test_failover },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
