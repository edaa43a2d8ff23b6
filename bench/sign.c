/*
 * bench/sign: issuance throughput in-process, through the real issuance path (CSR checks,
 * serial reserved in Redis, signature, durable audit with group commit, Redis index), on T
 * threads. Prints certs/s and the ratio to the crypto bound given on the command line (measured
 * by bench/sign.sh with `openssl speed` in the same run). With --no-io it times the engine alone
 * (ca_prepare + ca_sign), the part the bound speaks of. It also prints, per certificate, the
 * issuing threads' time on a CPU, runnable (waiting for a CPU: the machine's other load) and
 * blocked (Redis round trips, the audit's fdatasync), and the process's CPU time.
 *
 *   sign --threads T --count N --batch B --bound CERTS_PER_S [--no-io]
 * The data dir and Redis come from the environment (JITRCA_DATA_DIR, JITRCA_REDIS_URL) and the
 * CA passphrase from JITRCA_KEY_PASSPHRASE, as for jitrctl.
 */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "issuance/reindex.h"
#include "store/store.h"

struct csr {
    uint8_t *der;
    size_t len;
};

/* A thread's time from /proc/thread-self/schedstat: on a CPU, and waiting for one (runnable). */
struct sched_ns {
    int64_t wall, cpu, runq;
};

static void sched_now(struct sched_ns *t)
{
    unsigned long long cpu = 0, runq = 0;
    FILE *f = fopen("/proc/thread-self/schedstat", "r");
    if (f == NULL || fscanf(f, "%llu %llu", &cpu, &runq) != 2) {
        cpu = runq = 0;
    }
    if (f) {
        fclose(f);
    }
    t->wall = time_mono_ns();
    t->cpu = (int64_t)cpu;
    t->runq = (int64_t)runq;
}

struct run {
    struct issuance_ctx *ctx;
    struct csr *csrs;
    size_t n, batch;
    atomic_size_t next;
    atomic_size_t issued;
    bool no_io;
    const struct ca_profile *profile;
    atomic_int failed;
    /* the threads' sums: wall, on a CPU, runnable but waiting for one (the rest of the wall
     * time they were blocked: Redis round trips, the audit's fdatasync) */
    _Atomic int64_t wall_ns, cpu_ns, runq_ns;
};

static void sched_add(struct run *r, const struct sched_ns *t0)
{
    struct sched_ns t1;
    sched_now(&t1);
    atomic_fetch_add(&r->wall_ns, t1.wall - t0->wall);
    atomic_fetch_add(&r->cpu_ns, t1.cpu - t0->cpu);
    atomic_fetch_add(&r->runq_ns, t1.runq - t0->runq);
}

static double tv_us(const struct timeval *tv)
{
    return (double)tv->tv_sec * 1e6 + (double)tv->tv_usec;
}

static void make_csrs(struct csr *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        X509_REQ *req = X509_REQ_new();
        char cn[64];
        snprintf(cn, sizeof(cn), "bench-%08zu", i);
        X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
                                   (const unsigned char *)cn, -1, -1, 0);
        X509_REQ_set_pubkey(req, pk);
        X509_REQ_sign(req, pk, EVP_sha256());
        unsigned char *der = NULL;
        int len = i2d_X509_REQ(req, &der);
        out[i].der = xmemdup(der, (size_t)len);
        out[i].len = (size_t)len;
        OPENSSL_free(der);
        X509_REQ_free(req);
        EVP_PKEY_free(pk);
    }
}

static void *engine_thread(void *arg)
{
    struct run *r = arg;
    struct ca_signer *s = ca_signer_new();
    struct sched_ns t0;
    sched_now(&t0);
    for (;;) {
        size_t i = atomic_fetch_add(&r->next, 1);
        if (i >= r->n) {
            break;
        }
        struct err e = ERR_INIT;
        struct ca_prepared pr;
        struct ca_issued out;
        uint8_t serial[CA_SERIAL_MAX];
        size_t slen = 0;
        if (ca_prepare(s, r->ctx->issuer, r->profile, r->csrs[i].der, r->csrs[i].len, time(NULL),
                       &pr, &e) != 0 ||
            ca_serial_draw(s, serial, &slen, &e) != 0) {
            fprintf(stderr, "bench: %s\n", e.msg);
            atomic_store(&r->failed, 1);
            break;
        }
        if (ca_sign(s, r->ctx->issuer, &pr, serial, slen, &out, &e) != 0) {
            fprintf(stderr, "bench: %s\n", e.msg);
            atomic_store(&r->failed, 1);
        } else {
            ca_issued_release(&out);
            atomic_fetch_add(&r->issued, 1);
        }
        ca_prepared_release(&pr);
    }
    sched_add(r, &t0);
    ca_signer_free(s);
    return NULL;
}

static void *issue_thread(void *arg)
{
    struct run *r = arg;
    struct err e = ERR_INIT;
    struct issuance_worker *w = issuance_worker_new(r->ctx, &e);
    struct issuance_item *items = xcalloc(r->batch, sizeof(*items));
    struct sched_ns t0;
    sched_now(&t0);
    if (w == NULL) {
        fprintf(stderr, "bench: %s\n", e.msg);
        atomic_store(&r->failed, 1);
    }
    while (w) {
        size_t from = atomic_fetch_add(&r->next, r->batch);
        if (from >= r->n) {
            break;
        }
        size_t m = from + r->batch <= r->n ? r->batch : r->n - from;
        for (size_t k = 0; k < m; k++) {
            items[k] = (struct issuance_item){ .csr = r->csrs[from + k].der,
                                               .csr_len = r->csrs[from + k].len,
                                               .requester = "bench" };
        }
        if (issuance_run(w, items, m, &e) != 0) {
            fprintf(stderr, "bench: %s\n", e.msg);
            atomic_store(&r->failed, 1);
            break;
        }
        for (size_t k = 0; k < m; k++) {
            if (items[k].issued) {
                atomic_fetch_add(&r->issued, 1);
            }
            issuance_item_release(&items[k]);
        }
    }
    sched_add(r, &t0);
    xfree(items);
    issuance_worker_free(w);
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t threads = 1, count = 20000, batch = 64;
    double bound = 0;
    bool no_io = false;
    struct err e = ERR_INIT;
    mem_install();
    for (int i = 1; i < argc; i++) {
        uint64_t v = 0;
        if (strcmp(argv[i], "--no-io") == 0) {
            no_io = true;
        } else if (i + 1 < argc && strcmp(argv[i], "--bound") == 0) {
            bound = strtod(argv[++i], NULL);
        } else if (i + 1 < argc && str_to_u64(argv[i + 1], &v) == 0 && v > 0) {
            if (strcmp(argv[i], "--threads") == 0) {
                threads = v;
            } else if (strcmp(argv[i], "--count") == 0) {
                count = v;
            } else if (strcmp(argv[i], "--batch") == 0) {
                batch = v;
            } else {
                fprintf(stderr, "bench: unknown option %s\n", argv[i]);
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "usage: sign --threads T --count N --batch B --bound X [--no-io]\n");
            return 2;
        }
    }
    struct conf *c = conf_load(NULL, &e);
    struct issuance_ctx *ctx = c ? issuance_ctx_open(c, NULL, NULL, &e) : NULL;
    if (ctx == NULL) {
        fprintf(stderr, "bench: %s\n", e.msg);
        return 1;
    }
    if (!no_io) { /* reservations need a complete index (a fresh Redis: an empty one) */
        struct store *st = store_connect(c->redis_url, &e);
        if (st == NULL || issuance_index_ensure(c, st, 60000, NULL, NULL, &e) != 0) {
            fprintf(stderr, "bench: %s\n", e.msg);
            store_free(st);
            return 1;
        }
        store_free(st);
    }
    struct run r = { .ctx = ctx, .n = (size_t)count, .batch = (size_t)batch, .no_io = no_io };
    r.profile = ca_profiles_find(ctx->profiles, c->default_profile);
    r.csrs = xcalloc(r.n, sizeof(struct csr));
    make_csrs(r.csrs, r.n);
    pthread_t *tids = xcalloc((size_t)threads, sizeof(pthread_t));
    struct rusage ru0;
    getrusage(RUSAGE_SELF, &ru0);
    int64_t t0 = time_mono_ns();
    for (uint64_t t = 0; t < threads; t++) {
        pthread_create(&tids[t], NULL, no_io ? engine_thread : issue_thread, &r);
    }
    for (uint64_t t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
    }
    double secs = (double)(time_mono_ns() - t0) / 1e9;
    double rate = (double)atomic_load(&r.issued) / secs;
    printf("%-28s threads=%llu certs=%zu  %8.0f certs/s  %6.1f us/cert  bound %8.0f/s  "
           "ratio %.2f\n",
           no_io ? "engine only (no I/O)" : "issuance (redis+durable audit)",
           (unsigned long long)threads, atomic_load(&r.issued), rate,
           1e6 * secs * (double)threads /
               (double)(atomic_load(&r.issued) ? atomic_load(&r.issued) : 1),
           bound, bound > 0 ? rate / bound : 0.0);
    {
        double k = 1e3 * (double)(atomic_load(&r.issued) ? atomic_load(&r.issued) : 1);
        int64_t wall = atomic_load(&r.wall_ns), cpu = atomic_load(&r.cpu_ns),
                runq = atomic_load(&r.runq_ns);
        struct rusage ru1;
        getrusage(RUSAGE_SELF, &ru1);
        printf("  per certificate: signing threads on a CPU %.1f us, runnable %.1f us, blocked "
               "%.1f us; the process's CPU %.1f us\n",
               (double)cpu / k, (double)runq / k, (double)(wall - cpu - runq) / k,
               (tv_us(&ru1.ru_utime) + tv_us(&ru1.ru_stime) - tv_us(&ru0.ru_utime) -
                tv_us(&ru0.ru_stime)) *
                   1e3 / k);
    }
    for (size_t i = 0; i < r.n; i++) {
        xfree(r.csrs[i].der);
    }
    xfree(r.csrs);
    xfree(tids);
    issuance_ctx_free(ctx);
    conf_free(c);
    return atomic_load(&r.failed) ? 1 : 0;
}
