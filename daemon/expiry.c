/*
 * Expiry, seen before it hurts (docs/operations.md, "Expiry"): worker 0 submits a count every
 * expiry_check_interval seconds to a signing thread, which, for every CA of the snapshot, the
 * station CA and every other CA of the store with a certificate (its days left for every CA),
 * reads how many valid certificates expire within 7, 30 and 90 days and how many are past their
 * notAfter (store_expiry_count: one pipelined ZCOUNT per bound on ca:<ca>:expiry, never a scan
 * of the index) and hands the gauges to the shared metrics; and logs a warning for each CA
 * certificate jitrd uses that expires within 90 days, once a day across every worker and jitrd
 * of this Redis (store_once). While the index is incomplete nothing is counted (the last counts
 * stay). Every COMPROMISE_CHECK_SECONDS it also counts the compromise responses (jitrctl ca
 * compromise): one script per CA over its response's certificates and their revoke jobs.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/job.h"

#define CA_WARN_DAYS 90

/* Whole days from now to cert's notAfter (negative once expired). */
static int64_t days_left(X509 *cert, time_t now)
{
    int days = 0, secs = 0;
    ASN1_TIME *t = ASN1_TIME_set(NULL, now);
    if (t == NULL || ASN1_TIME_diff(&days, &secs, t, X509_get0_notAfter(cert)) != 1) {
        days = 0;
    }
    ASN1_TIME_free(t);
    return days;
}

/* One CA: its gauges into m, and the daily warning (when warn). -1 when Redis failed (e set). */
static int count_ca(struct store *st, const char *name, X509 *cert, time_t now, bool warn,
                    struct metrics_expiry *m, struct err *e)
{
    int64_t upto[1 + METRICS_EXPIRY_BUCKETS];
    uint64_t n[1 + METRICS_EXPIRY_BUCKETS];
    memset(m, 0, sizeof(*m));
    snprintf(m->ca, sizeof(m->ca), "%s", name);
    m->days_left = days_left(cert, now);
    upto[0] = (int64_t)now;
    for (size_t b = 0; b < METRICS_EXPIRY_BUCKETS; b++) {
        upto[1 + b] = (int64_t)now + (int64_t)metrics_expiry_days[b] * 86400;
    }
    if (store_expiry_count(st, name, upto, ARRAY_LEN(upto), n, e) != 0) {
        return -1;
    }
    m->expired = n[0];
    for (size_t b = 0; b < METRICS_EXPIRY_BUCKETS; b++) {
        m->within[b] = n[1 + b] - n[0];
    }
    if (warn && m->days_left < CA_WARN_DAYS) {
        char key[API_NAME_MAX + 32], na[32];
        bool first = false;
        struct tm tm;
        snprintf(key, sizeof(key), "ca-expiry-warning:%s", name);
        if (store_once(st, key, 86400, &first, e) != 0) {
            return -1;
        }
        if (first && ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1) {
            strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", &tm);
            log_warn("CA '%s' %s %lld days (notAfter %s); %llu of its valid certificates "
                     "expire within 90 days: plan its successor (docs/operations.md, \"Expiry\")",
                     name, m->days_left < 0 ? "expired, for" : "expires in",
                     (long long)(m->days_left < 0 ? -m->days_left : m->days_left), na,
                     (unsigned long long)(m->within[METRICS_EXPIRY_BUCKETS - 1] + m->expired));
        }
    }
    return 0;
}

/* Every other CA of the store with a certificate (roots, retired CAs, the ones no station
 * names), so that each CA's days left are in the metrics. */
static int other_cas(struct job *j, struct store *st, time_t now, struct metrics_expiry *v,
                     size_t *n, struct err *e)
{
    char **names = NULL;
    size_t k = 0;
    int rc = 0;
    if (ca_authority_list(j->snap->conf->data_dir, &names, &k, e) != 0) {
        return -1;
    }
    for (size_t i = 0; i < k; i++) {
        bool seen = false;
        for (size_t m = 0; m < *n && !seen; m++) {
            seen = strcmp(v[m].ca, names[i]) == 0;
        }
        if (!seen && rc == 0 && *n < METRICS_CAS) {
            struct err ignore = ERR_INIT;
            struct ca_authority *a = ca_authority_load(j->snap->conf->data_dir, names[i], &ignore);
            if (a && a->cert && count_ca(st, names[i], a->cert, now, false, &v[*n], e) == 0) {
                (*n)++;
            } else if (a && a->cert) {
                rc = -1;
            }
            ca_authority_free(a);
        }
        xfree(names[i]);
    }
    xfree(names);
    return rc;
}

static void expiry_run(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    struct metrics_expiry v[METRICS_CAS];
    size_t n = 0;
    bool ready = false;
    time_t now = time(NULL);
    struct store *st = ts_store(ts, j->snap, &e);
    if (st == NULL || store_index_ready(st, &ready, &e) != 0) {
        goto fail;
    }
    if (!ready) {
        log_debug("expiry count skipped: the index is incomplete");
        return;
    }
    for (size_t i = 0; i < j->snap->ncas && n < METRICS_CAS; i++) {
        const struct snap_ca *c = &j->snap->cas[i];
        if (c->auth->cert && count_ca(st, c->name, c->auth->cert, now, true, &v[n++], &e) != 0) {
            goto fail;
        }
    }
    if (j->snap->station_ca && n < METRICS_CAS &&
        snap_find_ca(j->snap, j->snap->conf->station_ca) == NULL &&
        count_ca(st, j->snap->conf->station_ca, j->snap->station_ca, now, true, &v[n++], &e) != 0) {
        goto fail;
    }
    if (other_cas(j, st, now, v, &n, &e) != 0) {
        goto fail;
    }
    metrics_expiry_set(v, n, (int64_t)now);
    return;
fail:
    ts_after_error(ts, &e);
    log_warn("expiry count failed: %s", e.msg);
}

/* The compromise responses' progress (jitrctl ca compromise) into the shared metrics. */
static void compromise_run(struct job *j, struct tstate *ts)
{
    struct err e = ERR_INIT;
    struct metrics_compromise v[METRICS_CAS];
    char **names = NULL;
    size_t n = 0, k = 0;
    struct store *st = ts_store(ts, j->snap, &e);
    if (st == NULL || store_compromises(st, &names, &n, &e) != 0) {
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        struct store_compromise c;
        if (k < METRICS_CAS && e.code == ERRC_OK &&
            store_compromise_count(st, names[i], &c, &e) == 0) {
            v[k] = (struct metrics_compromise){ .done = strcmp(c.step, "done") == 0,
                                                .total = c.total,
                                                .revoked = c.revoked,
                                                .unknown = c.unknown,
                                                .failed = c.failed,
                                                .other = c.other,
                                                .pending = c.pending };
            snprintf(v[k].ca, sizeof(v[k].ca), "%s", names[i]);
            k++;
        }
        xfree(names[i]);
    }
    xfree(names);
    if (e.code != ERRC_OK) {
        goto fail;
    }
    metrics_compromise_set(v, k);
    return;
fail:
    ts_after_error(ts, &e);
    log_debug("compromise count failed: %s", e.msg);
}

void api_compromise_schedule(struct api *a)
{
    job_submit(a, job_new(a, NULL, J_COMPROMISE, compromise_run));
}

void api_expiry_schedule(struct api *a)
{
    job_submit(a, job_new(a, NULL, J_EXPIRY, expiry_run));
}
