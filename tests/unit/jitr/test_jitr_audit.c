/*
 * jitr/service.c's audit writer against a real audit log: appends run on its thread while the
 * loop keeps running (the log's flock, held here, stands for a slow disk), records queued
 * together share one append, the replay look-up finds an earlier attempt's record (across read
 * windows, past a writer's partial line) and only above its bound, the mark, and shutdown.
 */
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr_int.h"
#include "tests/harness/tt.h"

#define CERT_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

struct done {
    struct event_base *base;
    int want;       /* completions awaited */
    int n;          /* completions seen */
    int ticks;      /* loop timer ticks */
    int ticks_done; /* ticks when the last completion ran */
    int release_at; /* tick that releases the lock (0: none) */
    int lockfd;
    uint64_t seq[32];
    bool found[32];
    struct err err[32];
};

static void on_appended(void *arg, uint64_t seq, bool found, const struct err *e)
{
    struct done *d = arg;
    int i = d->n++;
    if (i < 32) {
        d->seq[i] = seq;
        d->found[i] = found;
        err_clear(&d->err[i]);
        if (e != NULL) {
            err_copy(&d->err[i], e);
        }
    }
    d->ticks_done = d->ticks;
    if (d->n >= d->want) {
        event_base_loopbreak(d->base);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct done *d = arg;
    (void)fd;
    (void)what;
    d->ticks++;
    if (d->release_at > 0 && d->ticks == d->release_at && d->lockfd >= 0) {
        flock(d->lockfd, LOCK_UN);
    }
    if (d->ticks > 1000) { /* 10 s: give up */
        event_base_loopbreak(d->base);
    }
}

/* Runs the loop with a 10 ms timer until d->want completions have run. */
static void loop_until_done(struct done *d)
{
    struct timeval tv = { 0, 10000 };
    struct event *t = event_new(d->base, -1, EV_PERSIST, on_tick, d);
    event_add(t, &tv);
    event_base_dispatch(d->base);
    event_free(t);
}

static int count_cb(void *arg, json_t *rec, uint64_t line)
{
    (void)rec;
    (void)line;
    (*(size_t *)arg)++;
    return 0;
}

static size_t records_in(const char *path)
{
    size_t n = 0;
    struct err e = ERR_INIT;
    if (audit_foreach(path, count_cb, &n, &e) != 0) {
        return (size_t)-1;
    }
    return n;
}

static void log_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tt_tmpdir(), name);
    unlink(out);
}

static json_t *rec_of(const char *type, const char *cert)
{
    return json_pack("{s:s, s:s, s:s}", "type", type, "certificate_id", cert, "thing", "dev-1");
}

/* The append waits for the log's lock (a slow disk) on the writer's thread; the loop's timer
 * keeps firing meanwhile, and the completion comes only after the record is durable. */
static int test_loop_not_blocked(void)
{
    int rc = 0;
    char path[512];
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct jitr_auditq *q = NULL;
    struct done d;
    json_t *rec = rec_of("jitr_activate", CERT_C);
    struct audit_report rep;
    memset(&d, 0, sizeof(d));
    d.lockfd = -1;
    d.base = event_base_new();
    log_path(path, sizeof(path), "slow.log");
    log = audit_open(path, &e);
    CHECK(log != NULL);
    q = jitr_auditq_new(d.base, log, path, &e);
    CHECK(q != NULL);
    CHECK_INT_EQ(jitr_auditq_mark(q), 0);
    d.lockfd = open(path, O_RDWR | O_CLOEXEC);
    CHECK(d.lockfd >= 0);
    CHECK_INT_EQ(flock(d.lockfd, LOCK_EX), 0);
    d.want = 1;
    d.release_at = 30; /* 300 ms */
    CHECK_OK(jitr_auditq_append(q, rec, false, 0, on_appended, &d, &e), &e);
    CHECK_INT_EQ(jitr_auditq_busy(q), 1);
    CHECK_INT_EQ(d.n, 0); /* never from inside the call */
    loop_until_done(&d);
    CHECK_INT_EQ(d.n, 1);
    CHECK_INT_EQ(d.err[0].code, ERRC_OK);
    CHECK_INT_EQ(d.seq[0], 1);
    CHECK(!d.found[0]);
    /* 30 ticks ran while the append was blocked, the completion came after the release */
    CHECK(d.ticks_done >= 30);
    CHECK_INT_EQ(jitr_auditq_busy(q), 0);
    CHECK_INT_EQ(jitr_auditq_mark(q), 1);
    CHECK_INT_EQ(records_in(path), 1);
    CHECK_OK(audit_verify(path, true, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_OK);
out:
    if (d.lockfd >= 0) {
        close(d.lockfd);
    }
    json_decref(rec);
    jitr_auditq_free(q);
    audit_close(log);
    event_base_free(d.base);
    return rc;
}

/* Records queued while an append is in progress go into the next one together. */
static int test_grouped(void)
{
    int rc = 0;
    char path[512];
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct jitr_auditq *q = NULL;
    struct done d;
    memset(&d, 0, sizeof(d));
    d.base = event_base_new();
    log_path(path, sizeof(path), "group.log");
    log = audit_open(path, &e);
    q = log ? jitr_auditq_new(d.base, log, path, &e) : NULL;
    CHECK(q != NULL);
    d.lockfd = open(path, O_RDWR | O_CLOEXEC);
    CHECK(d.lockfd >= 0);
    CHECK_INT_EQ(flock(d.lockfd, LOCK_EX), 0);
    d.want = 10;
    d.release_at = 10;
    for (int i = 0; i < 10; i++) {
        char cert[65];
        json_t *rec;
        snprintf(cert, sizeof(cert), "%064d", i);
        rec = rec_of("jitr_activate", cert);
        CHECK_OK(jitr_auditq_append(q, rec, false, 0, on_appended, &d, &e), &e);
        json_decref(rec);
    }
    loop_until_done(&d);
    CHECK_INT_EQ(d.n, 10);
    for (int i = 0; i < 10; i++) {
        CHECK_INT_EQ(d.err[i].code, ERRC_OK);
        CHECK_INT_EQ(d.seq[i], (uint64_t)i + 1); /* in the order queued */
    }
    /* the first one alone (taken at once, then blocked), the nine others together */
    CHECK(jitr_auditq_commits(q) <= 2);
    CHECK_INT_EQ(records_in(path), 10);
out:
    if (d.lockfd >= 0) {
        close(d.lockfd);
    }
    jitr_auditq_free(q);
    audit_close(log);
    event_base_free(d.base);
    return rc;
}

/* One append through the writer, run to its completion. */
static int append_one(struct jitr_auditq *q, struct done *d, const char *type, const char *cert,
                      bool check, uint64_t after)
{
    struct err e = ERR_INIT;
    json_t *rec = rec_of(type, cert);
    int rc = jitr_auditq_append(q, rec, check, after, on_appended, d, &e);
    json_decref(rec);
    if (rc != 0) {
        return -1;
    }
    d->want = d->n + 1;
    loop_until_done(d);
    return d->n == d->want ? d->n - 1 : -1;
}

/* The replay look-up: an earlier attempt's record is found (nothing appended), only above the
 * bound, only of the same type and certificate, across read windows, past a partial line. */
static int test_check(void)
{
    int rc = 0;
    char path[512];
    struct err e = ERR_INIT;
    struct audit_log *log = NULL, *other = NULL;
    struct jitr_auditq *q = NULL, *q2 = NULL;
    struct done d;
    json_t **many = NULL;
    size_t nmany = 5000;
    char pad[501];
    const char partial[] = "{\"certificate_id\":\"" CERT_C "\",\"seq\":9";
    int i, fd = -1;
    memset(&d, 0, sizeof(d));
    d.lockfd = -1;
    d.base = event_base_new();
    log_path(path, sizeof(path), "check.log");
    log = audit_open(path, &e);
    other = audit_open(path, &e); /* another writer of the same log */
    q = (log && other) ? jitr_auditq_new(d.base, log, path, &e) : NULL;
    CHECK(q != NULL);
    i = append_one(q, &d, "jitr_activate", CERT_C, false, 0);
    CHECK(i >= 0);
    CHECK_INT_EQ(d.seq[i], 1);
    /* 5000 records of others after it: more than one 2 MiB read window */
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    many = xcalloc(nmany, sizeof(*many));
    for (size_t k = 0; k < nmany; k++) {
        many[k] =
            json_pack("{s:s, s:s, s:s}", "type", "issue", "certificate_id", CERT_C, "pad", pad);
    }
    CHECK_OK(audit_append(other, many, nmany, NULL, &e), &e);
    /* found: its seq, nothing appended */
    i = append_one(q, &d, "jitr_activate", CERT_C, true, 0);
    CHECK(i >= 0);
    CHECK_INT_EQ(d.err[i].code, ERRC_OK);
    CHECK(d.found[i]);
    CHECK_INT_EQ(d.seq[i], 1);
    CHECK_INT_EQ(records_in(path), nmany + 1);
    /* at or below the bound: not this attempt's, appended */
    i = append_one(q, &d, "jitr_activate", CERT_C, true, 1);
    CHECK(i >= 0);
    CHECK(!d.found[i]);
    CHECK_INT_EQ(d.seq[i], nmany + 2);
    /* another type is another record */
    i = append_one(q, &d, "jitr_reject", CERT_C, true, 0);
    CHECK(i >= 0);
    CHECK(!d.found[i]);
    CHECK_INT_EQ(d.seq[i], nmany + 3);
    CHECK_INT_EQ(records_in(path), nmany + 3);
    /* a writer in the middle of a line: the look-up starts at the last complete one */
    fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    CHECK(fd >= 0);
    CHECK_INT_EQ(write(fd, partial, strlen(partial)), (ssize_t)strlen(partial));
    close(fd);
    i = append_one(q, &d, "jitr_activate", CERT_C, true, 0);
    CHECK(i >= 0);
    CHECK(d.found[i]);
    CHECK_INT_EQ(d.seq[i], nmany + 2); /* the newest */
    /* ... even when that partial line is longer than a read window */
    {
        char *junk = xmalloc(3u << 20);
        memset(junk, 'x', 3u << 20);
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        CHECK(fd >= 0);
        CHECK_INT_EQ(write(fd, junk, 3u << 20), (ssize_t)(3u << 20));
        close(fd);
        xfree(junk);
    }
    i = append_one(q, &d, "jitr_activate", CERT_C, true, 0);
    CHECK(i >= 0);
    CHECK(d.found[i]);
    CHECK_INT_EQ(d.seq[i], nmany + 2);
    /* a new writer's mark is the log's last seq */
    q2 = jitr_auditq_new(d.base, log, path, &e);
    CHECK(q2 != NULL);
    CHECK_INT_EQ(jitr_auditq_mark(q2), nmany + 3);
    CHECK_INT_EQ(jitr_auditq_mark(q), nmany + 3);
    /* a log that does not exist yet holds nothing */
    jitr_auditq_free(q2);
    q2 = jitr_auditq_new(d.base, log, "/nonexistent/jitr-audit.log", &e);
    CHECK(q2 != NULL);
    CHECK_INT_EQ(jitr_auditq_mark(q2), 0);
out:
    for (size_t k = 0; many && k < nmany; k++) {
        json_decref(many[k]);
    }
    xfree(many);
    jitr_auditq_free(q);
    jitr_auditq_free(q2);
    audit_close(log);
    audit_close(other);
    event_base_free(d.base);
    return rc;
}

static void *release_later(void *arg)
{
    struct done *d = arg;
    usleep(200000);
    flock(d->lockfd, LOCK_UN);
    return NULL;
}

/* Shutdown: the append in progress completes, the queued one is cancelled; every callback runs
 * once, from jitr_auditq_free; no append starts afterwards. */
static int test_free_cancels(void)
{
    int rc = 0;
    char path[512];
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct jitr_auditq *q = NULL;
    struct done d;
    pthread_t th;
    bool joined = true;
    json_t *rec = rec_of("jitr_activate", CERT_C);
    memset(&d, 0, sizeof(d));
    memset(&th, 0, sizeof(th));
    d.base = event_base_new();
    log_path(path, sizeof(path), "free.log");
    log = audit_open(path, &e);
    q = log ? jitr_auditq_new(d.base, log, path, &e) : NULL;
    CHECK(q != NULL);
    d.lockfd = open(path, O_RDWR | O_CLOEXEC);
    CHECK(d.lockfd >= 0);
    CHECK_INT_EQ(flock(d.lockfd, LOCK_EX), 0);
    CHECK_OK(jitr_auditq_append(q, rec, false, 0, on_appended, &d, &e), &e);
    usleep(50000); /* the thread took it and waits for the lock */
    CHECK_OK(jitr_auditq_append(q, rec, false, 0, on_appended, &d, &e), &e);
    CHECK_INT_EQ(pthread_create(&th, NULL, release_later, &d), 0);
    joined = false;
    jitr_auditq_free(q);
    q = NULL;
    pthread_join(th, NULL);
    joined = true;
    CHECK_INT_EQ(d.n, 2);
    CHECK_INT_EQ(d.err[0].code, ERRC_OK);
    CHECK_INT_EQ(d.seq[0], 1);
    CHECK_INT_EQ(d.err[1].code, ERRC_CANCELED);
    CHECK_STR_CONTAINS(d.err[1].msg, "cancelled");
    CHECK_INT_EQ(records_in(path), 1);
out:
    if (!joined) {
        pthread_join(th, NULL);
    }
    if (d.lockfd > 0) {
        close(d.lockfd);
    }
    json_decref(rec);
    jitr_auditq_free(q);
    audit_close(log);
    event_base_free(d.base);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "loop_not_blocked", test_loop_not_blocked },
        { "grouped", test_grouped },
        { "check", test_check },
        { "free_cancels", test_free_cancels },
    };
    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "libevent without thread support\n");
        return 1;
    }
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
