/*
 * Prometheus metrics shared by all worker processes: the parent maps one anonymous shared region
 * before forking, every worker adds to it with relaxed atomics, and whichever worker a scrape
 * lands on (SO_REUSEPORT picks one) renders the whole. Counters survive a worker's restart.
 * Fixed sizes: routes x status classes, histograms with fixed buckets, 256 (station, profile)
 * pairs (later pairs are counted under station="other").
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "core/mem.h"
#include "daemon/daemon.h"

static const int statuses[] = { 200, 201, 202, 204, 400, 401, 403, 404, 405, 408,
                                409, 413, 415, 429, 499, 500, 502, 503, 504 };
#define NSTATUS (ARRAY_LEN(statuses) + 1) /* last: any other */
static const double buckets[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                  0.1,    0.25,  0.5,    1,     2.5,  5,     10 };
#define NBUCKETS (ARRAY_LEN(buckets) + 1) /* last: +Inf */
#define NPAIRS   256

struct hist {
    atomic_uint_fast64_t b[NBUCKETS];
    atomic_uint_fast64_t sum_ns;
    atomic_uint_fast64_t count;
};

struct pair {
    atomic_int state; /* 0 free, 1 being written, 2 ready */
    char station[API_NAME_MAX + 1];
    char profile[API_NAME_MAX + 1];
    atomic_uint_fast64_t n;
};

struct shm {
    atomic_uint_fast64_t req[METRICS_ROUTES + 1][NSTATUS];
    struct hist lat[METRICS_ROUTES + 1];
    struct hist issue;
    struct pair pairs[NPAIRS];
    atomic_uint_fast64_t other_issued;
    atomic_uint_fast64_t audit_records[METRICS_WORKERS];
    atomic_uint_fast64_t audit_commits[METRICS_WORKERS];
    atomic_uint_fast64_t audit_fsync_le[METRICS_WORKERS][AUDIT_FSYNC_NBOUNDS + 1];
    atomic_uint_fast64_t audit_fsync_ns[METRICS_WORKERS];
    atomic_uint_fast64_t restarts;
    atomic_int index_complete; /* -1 not known yet, 0, 1 */
    atomic_int redis_up;       /* -1 not known yet, 0, 1 */
    atomic_int index_rebuilding;
    atomic_uint_fast64_t index_records;
    atomic_uint_fast64_t index_rebuilds_ok, index_rebuilds_failed;
    atomic_int audit_problem; /* enum audit_problem; AUDIT_OK when intact */
    atomic_uint_fast64_t audit_problem_line;
    atomic_bool audit_problem_walk;
    atomic_uint_fast64_t audit_quarantine_files;
    atomic_uint_fast64_t audit_torn_cut[METRICS_WORKERS];
    atomic_uint_fast64_t audit_quarantined[METRICS_WORKERS];
    atomic_uint_fast64_t audit_failures[METRICS_WORKERS];
    atomic_uint_fast64_t refused[REFUSED__COUNT];
    /* expiry (daemon/expiry.c): written by one thread of worker 0, read by any worker under
     * the seqlock exp_seq (seq_write_begin and the rest below) */
    atomic_uint_fast64_t exp_seq;
    size_t exp_n;
    int64_t exp_at;
    struct metrics_expiry exp[METRICS_CAS];
    /* compromise responses (daemon/expiry.c), written and read as exp above */
    atomic_uint_fast64_t cmp_seq;
    size_t cmp_n;
    struct metrics_compromise cmp[METRICS_CAS];
};

static struct shm *M;

int metrics_init(struct err *e)
{
    void *p =
        mmap(NULL, sizeof(struct shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return err_errno(e, ERRC_INTERNAL, "cannot map the shared metrics");
    }
    memset(p, 0, sizeof(struct shm));
    M = p;
    atomic_store(&M->index_complete, -1);
    atomic_store(&M->redis_up, -1);
    return 0;
}

static void hist_add(struct hist *h, int64_t ns)
{
    double s = (double)ns / 1e9;
    size_t i = 0;
    while (i < ARRAY_LEN(buckets) && s > buckets[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&h->b[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint_fast64_t)(ns > 0 ? ns : 0), memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

void metrics_request(int route, int status, int64_t ns)
{
    if (M == NULL) {
        return;
    }
    size_t r = route >= 0 && route < METRICS_ROUTES ? (size_t)route : METRICS_ROUTES;
    size_t s = ARRAY_LEN(statuses);
    for (size_t i = 0; i < ARRAY_LEN(statuses); i++) {
        if (statuses[i] == status) {
            s = i;
            break;
        }
    }
    atomic_fetch_add_explicit(&M->req[r][s], 1, memory_order_relaxed);
    hist_add(&M->lat[r], ns);
}

void metrics_issue_latency(int64_t ns)
{
    if (M) {
        hist_add(&M->issue, ns);
    }
}

void metrics_issued(const char *station, const char *profile, uint64_t n)
{
    if (M == NULL || n == 0) {
        return;
    }
    for (size_t i = 0; i < NPAIRS; i++) {
        struct pair *p = &M->pairs[i];
        int st = atomic_load(&p->state);
        if (st == 0) {
            int expect = 0;
            if (atomic_compare_exchange_strong(&p->state, &expect, 1)) {
                snprintf(p->station, sizeof(p->station), "%s", station);
                snprintf(p->profile, sizeof(p->profile), "%s", profile);
                atomic_store(&p->state, 2);
                atomic_fetch_add(&p->n, n);
                return;
            }
            st = expect;
        }
        while (st == 1) {
            st = atomic_load(&p->state);
        }
        if (strcmp(p->station, station) == 0 && strcmp(p->profile, profile) == 0) {
            atomic_fetch_add(&p->n, n);
            return;
        }
    }
    atomic_fetch_add(&M->other_issued, n);
}

void metrics_audit(size_t worker, const struct audit_stats *st)
{
    if (M && worker < METRICS_WORKERS) {
        atomic_store(&M->audit_records[worker], st->records);
        atomic_store(&M->audit_commits[worker], st->commits);
        for (size_t i = 0; i <= AUDIT_FSYNC_NBOUNDS; i++) {
            atomic_store(&M->audit_fsync_le[worker][i], st->fsync_le[i]);
        }
        atomic_store(&M->audit_fsync_ns[worker], st->fsync_ns);
        atomic_store(&M->audit_torn_cut[worker], st->torn_cut);
        atomic_store(&M->audit_quarantined[worker], st->quarantined);
        atomic_store(&M->audit_failures[worker], st->failures);
    }
}

void metrics_refused(enum refusal_reason why)
{
    if (M && why < REFUSED__COUNT) {
        atomic_fetch_add_explicit(&M->refused[why], 1, memory_order_relaxed);
    }
}

void metrics_worker_restart(void)
{
    if (M) {
        atomic_fetch_add(&M->restarts, 1);
    }
}

void metrics_index_complete(int complete)
{
    if (M) {
        atomic_store(&M->index_complete, complete);
    }
}

void metrics_redis_up(int up)
{
    if (M) {
        atomic_store(&M->redis_up, up);
    }
}

void metrics_index_rebuilding(void)
{
    if (M) {
        atomic_fetch_add(&M->index_rebuilding, 1);
        atomic_store(&M->index_records, 0);
        atomic_store(&M->index_complete, 0);
    }
}

void metrics_index_progress(uint64_t records)
{
    if (M) {
        atomic_store(&M->index_records, records);
    }
}

void metrics_index_rebuilt(bool ok, uint64_t records)
{
    if (M) {
        atomic_fetch_sub(&M->index_rebuilding, 1);
        atomic_store(&M->index_records, records);
        atomic_fetch_add(ok ? &M->index_rebuilds_ok : &M->index_rebuilds_failed, 1);
    }
}

uint64_t metrics_index_records(void)
{
    return M ? atomic_load(&M->index_records) : 0;
}

void metrics_audit_health(enum audit_problem problem, uint64_t line, bool walk, size_t quarantined)
{
    if (M) {
        atomic_store(&M->audit_problem_walk, walk);
        atomic_store(&M->audit_problem_line, line);
        atomic_store(&M->audit_quarantine_files, quarantined);
        atomic_store(&M->audit_problem, (int)problem);
    }
}

bool metrics_audit_damaged(enum audit_problem *problem, uint64_t *line, bool *walk)
{
    int p = M ? atomic_load(&M->audit_problem) : AUDIT_OK;
    if (walk) {
        *walk = M ? atomic_load(&M->audit_problem_walk) : false;
    }
    if (problem) {
        *problem = (enum audit_problem)p;
    }
    if (line) {
        *line = M ? atomic_load(&M->audit_problem_line) : 0;
    }
    return p != AUDIT_OK;
}

static void audit_health_render(struct buf *out)
{
    uint64_t cut = 0, moved = 0, failed = 0;
    for (size_t w = 0; w < METRICS_WORKERS; w++) {
        cut += atomic_load(&M->audit_torn_cut[w]);
        moved += atomic_load(&M->audit_quarantined[w]);
        failed += atomic_load(&M->audit_failures[w]);
    }
    buf_addf(out,
             "# HELP jitrd_audit_commit_failures_total Audit commits that failed (disk full, I/O "
             "error, a damaged log): nothing of them was handed out.\n"
             "# TYPE jitrd_audit_commit_failures_total counter\n"
             "jitrd_audit_commit_failures_total %llu\n",
             (unsigned long long)failed);
    buf_addf(out,
             "# HELP jitrd_audit_damaged Whether the audit log is damaged (signing answers 503 "
             "until it is repaired).\n"
             "# TYPE jitrd_audit_damaged gauge\njitrd_audit_damaged %d\n"
             "# HELP jitrd_audit_quarantine_files Quarantine files next to the audit log (torn "
             "ends of acknowledged records moved aside).\n"
             "# TYPE jitrd_audit_quarantine_files gauge\njitrd_audit_quarantine_files %llu\n"
             "# HELP jitrd_audit_torn_tails_cut_total Torn unacknowledged writes cut off the "
             "end of the audit log by the running workers.\n"
             "# TYPE jitrd_audit_torn_tails_cut_total counter\n"
             "jitrd_audit_torn_tails_cut_total %llu\n"
             "# HELP jitrd_audit_quarantined_total Torn ends of acknowledged records moved to a "
             "quarantine file by the running workers.\n"
             "# TYPE jitrd_audit_quarantined_total counter\njitrd_audit_quarantined_total %llu\n",
             atomic_load(&M->audit_problem) != AUDIT_OK ? 1 : 0,
             (unsigned long long)atomic_load(&M->audit_quarantine_files), (unsigned long long)cut,
             (unsigned long long)moved);
}

const int metrics_expiry_days[METRICS_EXPIRY_BUCKETS] = { 7, 30, 90 };

/* A seqlock over the shared pages: one writer (a thread of worker 0) and readers in any worker.
 * The count is odd while the writer copies; a reader copies, then keeps its copy only when the
 * count was even and did not change meanwhile (else the next scrape has the figures). */
static void seq_write_begin(atomic_uint_fast64_t *seq)
{
    atomic_fetch_add_explicit(seq, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void seq_write_end(atomic_uint_fast64_t *seq)
{
    atomic_fetch_add_explicit(seq, 1, memory_order_release);
}

static uint64_t seq_read_begin(atomic_uint_fast64_t *seq)
{
    return atomic_load_explicit(seq, memory_order_acquire);
}

static bool seq_read_ok(atomic_uint_fast64_t *seq, uint64_t begin)
{
    atomic_thread_fence(memory_order_acquire);
    return (begin & 1) == 0 && atomic_load_explicit(seq, memory_order_relaxed) == begin;
}

void metrics_expiry_set(const struct metrics_expiry *v, size_t n, int64_t at)
{
    if (M == NULL) {
        return;
    }
    n = n < METRICS_CAS ? n : METRICS_CAS;
    seq_write_begin(&M->exp_seq);
    memcpy(M->exp, v, n * sizeof(*v));
    M->exp_n = n;
    M->exp_at = at;
    seq_write_end(&M->exp_seq);
}

static void expiry_render(struct buf *out)
{
    struct metrics_expiry v[METRICS_CAS];
    uint64_t seq = seq_read_begin(&M->exp_seq);
    size_t n = M->exp_n < METRICS_CAS ? M->exp_n : METRICS_CAS;
    int64_t at = M->exp_at;
    memcpy(v, M->exp, n * sizeof(v[0]));
    if (!seq_read_ok(&M->exp_seq, seq) || at == 0) {
        return; /* being written, or never: the next scrape has it */
    }
    buf_addstr(out, "# HELP jitrd_certificates_expiring Valid certificates of a CA (not revoked, "
                    "not superseded) whose notAfter is within the next N days (cumulative).\n"
                    "# TYPE jitrd_certificates_expiring gauge\n");
    for (size_t i = 0; i < n; i++) {
        for (size_t b = 0; b < METRICS_EXPIRY_BUCKETS; b++) {
            buf_addf(out, "jitrd_certificates_expiring{ca=\"%s\",within_days=\"%d\"} %llu\n",
                     v[i].ca, metrics_expiry_days[b], (unsigned long long)v[i].within[b]);
        }
    }
    buf_addstr(out, "# HELP jitrd_certificates_expired Certificates of a CA that are still valid "
                    "in the index (not revoked, not superseded) but past their notAfter.\n"
                    "# TYPE jitrd_certificates_expired gauge\n");
    for (size_t i = 0; i < n; i++) {
        buf_addf(out, "jitrd_certificates_expired{ca=\"%s\"} %llu\n", v[i].ca,
                 (unsigned long long)v[i].expired);
    }
    buf_addstr(out, "# HELP jitrd_ca_days_left Whole days until a CA certificate's notAfter "
                    "(negative once expired).\n"
                    "# TYPE jitrd_ca_days_left gauge\n");
    for (size_t i = 0; i < n; i++) {
        buf_addf(out, "jitrd_ca_days_left{ca=\"%s\"} %lld\n", v[i].ca, (long long)v[i].days_left);
    }
    buf_addstr(out, "# HELP jitrd_cas_expiring CA certificates jitrd uses whose notAfter is "
                    "within the next N days (cumulative).\n"
                    "# TYPE jitrd_cas_expiring gauge\n");
    for (size_t b = 0; b < METRICS_EXPIRY_BUCKETS; b++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            k += v[i].days_left < metrics_expiry_days[b];
        }
        buf_addf(out, "jitrd_cas_expiring{within_days=\"%d\"} %zu\n", metrics_expiry_days[b], k);
    }
    buf_addf(out,
             "# HELP jitrd_expiry_updated_timestamp_seconds When the expiry gauges were last "
             "counted.\n"
             "# TYPE jitrd_expiry_updated_timestamp_seconds gauge\n"
             "jitrd_expiry_updated_timestamp_seconds %lld\n",
             (long long)at);
}

void metrics_compromise_set(const struct metrics_compromise *v, size_t n)
{
    if (M == NULL) {
        return;
    }
    n = n < METRICS_CAS ? n : METRICS_CAS;
    seq_write_begin(&M->cmp_seq);
    memcpy(M->cmp, v, n * sizeof(*v));
    M->cmp_n = n;
    seq_write_end(&M->cmp_seq);
}

static void compromise_render(struct buf *out)
{
    struct metrics_compromise v[METRICS_CAS];
    uint64_t seq = seq_read_begin(&M->cmp_seq);
    size_t n = M->cmp_n < METRICS_CAS ? M->cmp_n : METRICS_CAS;
    memcpy(v, M->cmp, n * sizeof(v[0]));
    if (!seq_read_ok(&M->cmp_seq, seq) || n == 0) {
        return; /* being written, or none: the next scrape has it */
    }
    buf_addstr(out, "# HELP jitrd_ca_compromise_certificates Certificates of a CA's compromise "
                    "response (jitrctl ca compromise) by their revocation in AWS IoT: revoked, "
                    "unknown to AWS, failed (dead letters), other, pending.\n"
                    "# TYPE jitrd_ca_compromise_certificates gauge\n");
    for (size_t i = 0; i < n; i++) {
        const uint64_t c[] = { v[i].revoked, v[i].unknown, v[i].failed, v[i].other, v[i].pending };
        static const char *const names[] = { "revoked", "unknown", "failed", "other", "pending" };
        for (size_t k = 0; k < ARRAY_LEN(c); k++) {
            buf_addf(out, "jitrd_ca_compromise_certificates{ca=\"%s\",outcome=\"%s\"} %llu\n",
                     v[i].ca, names[k], (unsigned long long)c[k]);
        }
    }
    buf_addstr(out, "# HELP jitrd_ca_compromise_total Certificates a CA's compromise response "
                    "revokes.\n"
                    "# TYPE jitrd_ca_compromise_total gauge\n");
    for (size_t i = 0; i < n; i++) {
        buf_addf(out, "jitrd_ca_compromise_total{ca=\"%s\"} %llu\n", v[i].ca,
                 (unsigned long long)v[i].total);
    }
    buf_addstr(out, "# HELP jitrd_ca_compromise_done 1 once a CA's compromise response has "
                    "reported (every revocation ended), else 0.\n"
                    "# TYPE jitrd_ca_compromise_done gauge\n");
    for (size_t i = 0; i < n; i++) {
        buf_addf(out, "jitrd_ca_compromise_done{ca=\"%s\"} %d\n", v[i].ca, v[i].done ? 1 : 0);
    }
}

static void index_render(struct buf *out)
{
    int complete = atomic_load(&M->index_complete);
    int up = atomic_load(&M->redis_up);
    if (up >= 0) {
        buf_addf(out,
                 "# HELP jitrd_redis_up Whether Redis answered the last index check (once a "
                 "second).\n# TYPE jitrd_redis_up gauge\njitrd_redis_up %d\n",
                 up);
    }
    if (complete >= 0) {
        buf_addf(out,
                 "# HELP jitrd_index_complete Whether Redis's index of issued certificates is "
                 "complete (0 after a Redis loss, until it is rebuilt from the audit log).\n"
                 "# TYPE jitrd_index_complete gauge\njitrd_index_complete %d\n",
                 complete);
    }
    buf_addf(out,
             "# HELP jitrd_index_rebuilding Index rebuilds running in this jitrd.\n"
             "# TYPE jitrd_index_rebuilding gauge\njitrd_index_rebuilding %d\n"
             "# HELP jitrd_index_rebuild_records Audit records replayed by the running or last "
             "index rebuild.\n"
             "# TYPE jitrd_index_rebuild_records gauge\njitrd_index_rebuild_records %llu\n"
             "# HELP jitrd_index_rebuilds_total Index rebuilds from the audit log by result.\n"
             "# TYPE jitrd_index_rebuilds_total counter\n"
             "jitrd_index_rebuilds_total{result=\"ok\"} %llu\n"
             "jitrd_index_rebuilds_total{result=\"failed\"} %llu\n",
             atomic_load(&M->index_rebuilding), (unsigned long long)atomic_load(&M->index_records),
             (unsigned long long)atomic_load(&M->index_rebuilds_ok),
             (unsigned long long)atomic_load(&M->index_rebuilds_failed));
}

static void hist_render(struct buf *out, const char *name, const char *labels, const struct hist *h)
{
    uint64_t cum = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        cum += atomic_load_explicit(&h->b[i], memory_order_relaxed);
        if (i < ARRAY_LEN(buckets)) {
            buf_addf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, *labels ? "," : "",
                     buckets[i], (unsigned long long)cum);
        } else {
            buf_addf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, *labels ? "," : "",
                     (unsigned long long)cum);
        }
    }
    buf_addf(out, "%s_sum{%s} %.6f\n", name, labels, (double)atomic_load(&h->sum_ns) / 1e9);
    buf_addf(out, "%s_count{%s} %llu\n", name, labels, (unsigned long long)atomic_load(&h->count));
}

void metrics_render(struct buf *out, const char *const *route_names, size_t nroutes)
{
    char labels[128];
    if (M == NULL) {
        return;
    }
    buf_addstr(out, "# HELP jitrd_http_requests_total HTTP requests by route and status.\n"
                    "# TYPE jitrd_http_requests_total counter\n");
    for (size_t r = 0; r <= METRICS_ROUTES; r++) {
        const char *rn = r < nroutes ? route_names[r] : r == METRICS_ROUTES ? "none" : NULL;
        if (rn == NULL) {
            continue;
        }
        for (size_t s = 0; s < NSTATUS; s++) {
            uint64_t v = atomic_load(&M->req[r][s]);
            if (v == 0) {
                continue;
            }
            if (s < ARRAY_LEN(statuses)) {
                buf_addf(out, "jitrd_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", rn,
                         statuses[s], (unsigned long long)v);
            } else {
                buf_addf(out, "jitrd_http_requests_total{route=\"%s\",status=\"other\"} %llu\n", rn,
                         (unsigned long long)v);
            }
        }
    }
    buf_addstr(out, "# HELP jitrd_http_request_duration_seconds Time from dispatch to reply.\n"
                    "# TYPE jitrd_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r <= METRICS_ROUTES; r++) {
        const char *rn = r < nroutes ? route_names[r] : r == METRICS_ROUTES ? "none" : NULL;
        if (rn == NULL || atomic_load(&M->lat[r].count) == 0) {
            continue;
        }
        snprintf(labels, sizeof(labels), "route=\"%s\"", rn);
        hist_render(out, "jitrd_http_request_duration_seconds", labels, &M->lat[r]);
    }
    buf_addstr(out, "# HELP jitrd_issuance_duration_seconds One issuance run: serial "
                    "reservation, signing, durable audit, index.\n"
                    "# TYPE jitrd_issuance_duration_seconds histogram\n");
    hist_render(out, "jitrd_issuance_duration_seconds", "", &M->issue);
    buf_addstr(out, "# HELP jitrd_certificates_issued_total Certificates issued by station and "
                    "profile.\n# TYPE jitrd_certificates_issued_total counter\n");
    for (size_t i = 0; i < NPAIRS; i++) {
        if (atomic_load(&M->pairs[i].state) != 2) {
            continue;
        }
        buf_addf(out, "jitrd_certificates_issued_total{station=\"%s\",profile=\"%s\"} %llu\n",
                 M->pairs[i].station, M->pairs[i].profile,
                 (unsigned long long)atomic_load(&M->pairs[i].n));
    }
    if (atomic_load(&M->other_issued)) {
        buf_addf(out, "jitrd_certificates_issued_total{station=\"other\",profile=\"other\"} %llu\n",
                 (unsigned long long)atomic_load(&M->other_issued));
    }
    uint64_t rec = 0, com = 0;
    for (size_t w = 0; w < METRICS_WORKERS; w++) {
        rec += atomic_load(&M->audit_records[w]);
        com += atomic_load(&M->audit_commits[w]);
    }
    buf_addf(out,
             "# HELP jitrd_audit_records_total Audit records written by the running workers.\n"
             "# TYPE jitrd_audit_records_total counter\njitrd_audit_records_total %llu\n"
             "# HELP jitrd_audit_commits_total Audit group commits (write + fdatasync).\n"
             "# TYPE jitrd_audit_commits_total counter\njitrd_audit_commits_total %llu\n",
             (unsigned long long)rec, (unsigned long long)com);
    {
        static const uint64_t bounds_us[AUDIT_FSYNC_NBOUNDS] = AUDIT_FSYNC_BOUNDS_US;
        uint64_t cum = 0, ns = 0;
        buf_addstr(out, "# HELP jitrd_audit_fsync_duration_seconds fdatasync of an audit group "
                        "commit (the durability wait of every issuance).\n"
                        "# TYPE jitrd_audit_fsync_duration_seconds histogram\n");
        for (size_t i = 0; i <= AUDIT_FSYNC_NBOUNDS; i++) {
            for (size_t w = 0; w < METRICS_WORKERS; w++) {
                cum += atomic_load(&M->audit_fsync_le[w][i]);
            }
            if (i < AUDIT_FSYNC_NBOUNDS) {
                buf_addf(out, "jitrd_audit_fsync_duration_seconds_bucket{le=\"%g\"} %llu\n",
                         (double)bounds_us[i] / 1e6, (unsigned long long)cum);
            } else {
                buf_addf(out, "jitrd_audit_fsync_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                         (unsigned long long)cum);
            }
        }
        for (size_t w = 0; w < METRICS_WORKERS; w++) {
            ns += atomic_load(&M->audit_fsync_ns[w]);
        }
        buf_addf(out,
                 "jitrd_audit_fsync_duration_seconds_sum %.6f\n"
                 "jitrd_audit_fsync_duration_seconds_count %llu\n",
                 (double)ns / 1e9, (unsigned long long)cum);
    }
    buf_addstr(out, "# HELP jitrd_refused_requests_total Requests refused before anyone was "
                    "authenticated (no or bad client certificate, foreign issuer, malformed or "
                    "too slow HTTP), by reason; not audited one by one (deny_summary records).\n"
                    "# TYPE jitrd_refused_requests_total counter\n");
    for (size_t i = 0; i < REFUSED__COUNT; i++) {
        buf_addf(out, "jitrd_refused_requests_total{reason=\"%s\"} %llu\n",
                 refusal_reason_name((enum refusal_reason)i),
                 (unsigned long long)atomic_load(&M->refused[i]));
    }
    buf_addf(out,
             "# HELP jitrd_worker_restarts_total Workers replaced after dying.\n"
             "# TYPE jitrd_worker_restarts_total counter\njitrd_worker_restarts_total %llu\n",
             (unsigned long long)atomic_load(&M->restarts));
    index_render(out);
    audit_health_render(out);
    expiry_render(out);
    compromise_render(out);
}
