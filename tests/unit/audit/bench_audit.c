/*
 * bench_audit [RECORDS] [DIR]: durable appends per second with 1 thread and with 8 threads, each
 * call appending one record (the shape of the signing path), and fdatasyncs per record. The log
 * lives in DIR (default $TMPDIR or /tmp) and is removed afterwards. Not a test: it only prints.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/mem.h"
#include "core/util.h"

struct worker {
    pthread_t tid;
    struct audit_log *log;
    int who;
    uint64_t count;
    int rc;
    struct err e;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (uint64_t i = 0; i < w->count && w->rc == 0; i++) {
        /* about the size of an issuance record */
        json_t *r = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I}", "type", "cert.issued", "serial",
                              "5f3c0a9b7e21d4c8a6b0f1e2d3c4b5a6", "subject",
                              "CN=device-000123,O=Example Fleet", "profile", "device", "who",
                              w->who, "i", (json_int_t)i);
        uint64_t seq;
        w->rc = audit_append(w->log, &r, 1, &seq, &w->e);
        json_decref(r);
    }
    return NULL;
}

static int run(const char *path, int nthreads, uint64_t records)
{
    struct worker w[8];
    struct err e = ERR_INIT;
    struct audit_stats st;
    struct audit_log *log = audit_open(path, &e);
    int rc = 0;
    if (log == NULL) {
        fprintf(stderr, "bench_audit: %s\n", e.msg);
        return -1;
    }
    int64_t t0 = time_mono_ns();
    for (int t = 0; t < nthreads; t++) {
        memset(&w[t], 0, sizeof(w[t]));
        w[t].log = log;
        w[t].who = t;
        w[t].count = records / (uint64_t)nthreads;
        if (pthread_create(&w[t].tid, NULL, worker_main, &w[t]) != 0) {
            fprintf(stderr, "bench_audit: cannot start a thread\n");
            exit(1);
        }
    }
    for (int t = 0; t < nthreads; t++) {
        pthread_join(w[t].tid, NULL);
        if (w[t].rc != 0) {
            fprintf(stderr, "bench_audit: %s\n", w[t].e.msg);
            rc = -1;
        }
    }
    double secs = (double)(time_mono_ns() - t0) / 1e9;
    audit_get_stats(log, &st);
    printf("%d thread%s: %8.0f records/s  %" PRIu64 " records  %" PRIu64
           " fdatasyncs  %.3f fsyncs/record  %.1f records/commit  %.0f bytes/record\n",
           nthreads, nthreads == 1 ? " " : "s", (double)st.records / secs, st.records, st.commits,
           (double)st.commits / (double)st.records, (double)st.records / (double)st.commits,
           (double)st.bytes / (double)st.records);
    audit_close(log);
    return rc;
}

int main(int argc, char **argv)
{
    uint64_t records = 4000;
    const char *base = getenv("TMPDIR");
    char dir[512], path[600], head[700];
    int rc = 0;

    mem_install();
    if (argc > 1 && (str_to_u64(argv[1], &records) != 0 || records < 8)) {
        fprintf(stderr, "usage: bench_audit [RECORDS >= 8] [DIR]\n");
        return 2;
    }
    snprintf(dir, sizeof(dir), "%s/bench-audit-XXXXXX", argc > 2 ? argv[2] : base ? base : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/audit.log", dir);
    snprintf(head, sizeof(head), "%s.head", path);
    printf("audit log in %s, %" PRIu64 " records per run\n", dir, records);
    for (int i = 0; i < 2 && rc == 0; i++) {
        rc = run(path, i == 0 ? 1 : 8, records);
        unlink(path);
        unlink(head);
    }
    rmdir(dir);
    return rc == 0 ? 0 : 1;
}
