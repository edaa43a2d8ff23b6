/*
 * bench_store: the cost of jitrd's per-batch Redis writes. Times store_serials_reserve() and
 * store_certs_index() of a batch of records (64 by default, the shape of one signing batch)
 * against a real redis-server, and prints wall and client CPU microseconds per record. Client
 * CPU (CLOCK_PROCESS_CPUTIME_ID) is what the writes cost jitrd's signing core; wall time adds
 * the round trip and redis-server's own work.
 *
 * Not a ctest test (timings are not assertions): run it by hand against a throwaway server,
 *   bench_store unix:///tmp/x/redis.sock?db=9 [iterations [batch]]
 * Every reserve uses fresh serials (the SET NX succeeds, as in production); the index writes
 * overwrite one set of records, so the server's memory stays flat however long it runs.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/mem.h"
#include "core/util.h"
#include "store/store.h"

#define MAX_BATCH 256

static int64_t cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) {
        return 0;
    }
    return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

struct timing {
    int64_t wall, cpu;
};

static void report(const char *what, const struct timing *t, uint64_t records)
{
    printf("%-18s %8.3f us/record wall  %8.3f us/record client CPU\n", what,
           (double)t->wall / 1000.0 / (double)records, (double)t->cpu / 1000.0 / (double)records);
}

int main(int argc, char **argv)
{
    struct err e = ERR_INIT;
    struct store *s = NULL;
    uint64_t iters = 2000, batch = 64, warm = 100;
    char serial[MAX_BATCH][48], fp[MAX_BATCH][72], cn[MAX_BATCH][32], subj[MAX_BATCH][64];
    const char *reserve[MAX_BATCH];
    bool taken[MAX_BATCH];
    struct store_cert *certs = NULL;
    struct buf der = BUF_INIT;
    struct timing tr = { 0, 0 }, ti = { 0, 0 };
    int rc = 1;

    mem_install();
    if (argc < 2 || (argc > 2 && str_to_u64(argv[2], &iters) != 0) ||
        (argc > 3 && (str_to_u64(argv[3], &batch) != 0 || batch == 0 || batch > MAX_BATCH))) {
        fprintf(stderr, "usage: %s REDIS_URL [iterations [batch <= %d]]\n", argv[0], MAX_BATCH);
        return 2;
    }
    s = store_connect(argv[1], &e);
    if (s == NULL) {
        fprintf(stderr, "bench_store: %s\n", e.msg);
        return 1;
    }
    { /* the bench's own Redis holds no index: mark it complete so reservations are taken */
        bool locked = false;
        struct store_index_mark m = { "bench", 0, "", 0, "bench_store" };
        if (store_index_lock_take(s, "bench_store", 10000, &locked, NULL, 0, &e) != 0 ||
            (locked && store_index_mark_ready(s, "bench_store", &m, &e) != 0)) {
            fprintf(stderr, "bench_store: %s\n", e.msg);
            store_free(s);
            return 1;
        }
    }
    /* a P-256 device certificate is ~500 bytes of DER, ~700 of base64 */
    for (int i = 0; i < 700; i++) {
        buf_addch(&der, (char)('A' + i % 26));
    }
    certs = xcalloc(batch, sizeof(*certs));
    for (size_t i = 0; i < batch; i++) {
        snprintf(fp[i], sizeof(fp[i]), "%064zx", i + 1);
        snprintf(cn[i], sizeof(cn[i]), "device-%06zu", i);
        snprintf(subj[i], sizeof(subj[i]), "CN=device-%06zu,O=Fleet", i);
        snprintf(serial[i], sizeof(serial[i]), "7f%038zx", i);
        certs[i] = (struct store_cert){ .serial = serial[i], .fingerprint = fp[i],
                                        .subject = subj[i], .cn = cn[i], .profile = "device",
                                        .ca = "bench-ca", .requester = "bench",
                                        .not_before = "2026-01-01T00:00:00Z",
                                        .not_after = "2027-01-01T00:00:00Z",
                                        .issued_at = "2026-01-01T00:00:00Z", .status = "valid",
                                        .der_b64 = der.data, .seq = 1000 + i };
    }
    {
        char fresh[MAX_BATCH][64];
        int64_t run = time_now_ms();
        for (uint64_t it = 0; it < warm + iters; it++) {
            for (size_t i = 0; i < batch; i++) {
                snprintf(fresh[i], sizeof(fresh[i]), "%016" PRIx64 "%08" PRIx64 "%08zx",
                         (uint64_t)run, it, i);
                reserve[i] = fresh[i];
            }
            int64_t w0 = time_mono_ns(), c0 = cpu_ns();
            if (store_serials_reserve(s, "bench-ca", reserve, batch, taken, &e) != 0) {
                fprintf(stderr, "bench_store: reserve: %s\n", e.msg);
                goto out;
            }
            int64_t w1 = time_mono_ns(), c1 = cpu_ns();
            if (store_certs_index(s, certs, batch, &e) != 0) {
                fprintf(stderr, "bench_store: index: %s\n", e.msg);
                goto out;
            }
            int64_t w2 = time_mono_ns(), c2 = cpu_ns();
            for (size_t i = 0; i < batch; i++) {
                if (taken[i]) {
                    fprintf(stderr, "bench_store: fresh serial %s reported taken\n", fresh[i]);
                    goto out;
                }
            }
            if (it >= warm) {
                tr.wall += w1 - w0;
                tr.cpu += c1 - c0;
                ti.wall += w2 - w1;
                ti.cpu += c2 - c1;
            }
        }
    }
    printf("%" PRIu64 " batches of %" PRIu64 " records\n", iters, batch);
    report("serials_reserve", &tr, iters * batch);
    report("certs_index", &ti, iters * batch);
    {
        struct timing both = { tr.wall + ti.wall, tr.cpu + ti.cpu };
        report("both", &both, iters * batch);
    }
    rc = 0;
out:
    xfree(certs);
    buf_release(&der);
    store_free(s);
    return rc;
}
