/*
 * Requests nobody authenticated: a TLS client without a certificate (or with one that does not
 * verify, or from a CA the route does not take), and requests the HTTP server refuses before any
 * route sees them (malformed, too large, too slow). They cost the loop's work and nothing more:
 * no job, no audit record with its own fdatasync each (a stranger could otherwise fill the disk
 * and the fsync queue). Each is
 *   - counted at once in the shared metrics (jitrd_refused_requests_total{reason});
 *   - logged at most twice per interval: the first of an interval as it happens, then a summary;
 *   - summarised in the audit log by one {"type":"deny_summary"} record per worker and
 *     deny_summary_interval when there was any: counts by reason, the interval, and the first
 *     few client addresses (appended by a signing thread; the last one on SIGTERM).
 * Refusals of an authenticated station (not authorised, revoked, rate limited...) are audited one
 * by one as before (auth.c, sign.c, reenroll.c, crl.c).
 *
 * The state is per worker process and touched on its loop only.
 */
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/api.h"
#include "issuance/issuance.h"

#define SAMPLES 4

static const char *const reason_names[REFUSED__COUNT] = {
    [REFUSED_NO_CERTIFICATE] = "no_certificate",
    [REFUSED_BAD_CERTIFICATE] = "bad_certificate",
    [REFUSED_FOREIGN_ISSUER] = "foreign_issuer",
    [REFUSED_NOT_A_STATION_NAME] = "not_a_station_name",
    [REFUSED_MALFORMED] = "malformed",
    [REFUSED_TOO_LARGE] = "too_large",
    [REFUSED_TIMEOUT] = "request_timeout",
};

const char *refusal_reason_name(enum refusal_reason why)
{
    return why < REFUSED__COUNT ? reason_names[why] : "other";
}

/* The refusals of the current interval. */
static struct {
    uint64_t counts[REFUSED__COUNT];
    uint64_t total;
    char samples[SAMPLES][64];
    size_t nsamples;
    int64_t since_ms; /* start of the interval (the first refusal after a summary) */
} cur;

static void note(enum refusal_reason why, const char *peer)
{
    metrics_refused(why);
    if (cur.total == 0) {
        cur.since_ms = time_now_ms();
        log_warn("refused a request nobody authenticated (%s, from %s); such refusals are "
                 "counted in /metrics and summarised in the audit log (deny_summary)",
                 refusal_reason_name(why), *peer ? peer : "?");
    }
    cur.counts[why]++;
    cur.total++;
    if (*peer == '\0' || cur.nsamples == SAMPLES) {
        return;
    }
    for (size_t i = 0; i < cur.nsamples; i++) {
        if (strcmp(cur.samples[i], peer) == 0) {
            return;
        }
    }
    snprintf(cur.samples[cur.nsamples++], sizeof(cur.samples[0]), "%s", peer);
}

void refusal_reply(struct api *a, struct httpd_req *r, enum refusal_reason why, const char *message)
{
    char peer[64];
    (void)a;
    httpd_req_peer(r, peer, sizeof(peer));
    note(why, peer);
    httpd_reply_error(r, 403, "denied", message);
}

void refusal_http(void *arg, int status, const char *code, const char *peer)
{
    (void)arg;
    (void)code;
    note(status == 408                    ? REFUSED_TIMEOUT
         : status == 413 || status == 431 ? REFUSED_TOO_LARGE
                                          : REFUSED_MALFORMED,
         peer);
}

/* ---- the deny_summary record, appended in a signing thread ----------------------------------- */

struct summary_job {
    struct pool_job pj;
    struct api *api;
    struct snap *snap;
    json_t *rec;
};

static void summary_run(struct pool_job *pj, void *tls)
{
    struct summary_job *j = (struct summary_job *)pj;
    struct audit_log *log = NULL;
    struct err e = ERR_INIT;
    (void)tls;
    for (size_t i = 0; i < j->snap->ncas && log == NULL; i++) {
        log = j->snap->cas[i].ctx ? j->snap->cas[i].ctx->audit : NULL;
    }
    if (log == NULL) {
        log_warn("deny_summary not audited (no CA audit log open)");
    } else if (audit_append(log, &j->rec, 1, NULL, &e) != 0) {
        log_error("cannot audit the deny_summary: %s", e.msg);
    }
}

static void summary_done(struct pool_job *pj)
{
    struct summary_job *j = (struct summary_job *)pj;
    j->api->jobs--;
    json_decref(j->rec);
    snap_unref(j->snap);
    xfree(j);
}

void refusal_tick(struct api *a, bool final)
{
    int64_t now = time_now_ms();
    int64_t interval_ms = a->snap->conf->deny_summary_interval * 1000;
    char since[32], until[32];
    struct buf line = BUF_INIT;
    if (cur.total == 0 || (!final && now - cur.since_ms < interval_ms)) {
        return;
    }
    json_t *counts = json_object();
    json_t *samples = json_array();
    for (size_t i = 0; i < REFUSED__COUNT; i++) {
        if (cur.counts[i]) {
            json_object_set_new(counts, reason_names[i], json_integer((json_int_t)cur.counts[i]));
            buf_addf(&line, " %s=%llu", reason_names[i], (unsigned long long)cur.counts[i]);
        }
    }
    for (size_t i = 0; i < cur.nsamples; i++) {
        json_array_append_new(samples, json_string(cur.samples[i]));
    }
    time_format_rfc3339((time_t)(cur.since_ms / 1000), since, sizeof(since));
    time_format_rfc3339((time_t)(now / 1000), until, sizeof(until));
    log_warn("refused %llu requests nobody authenticated from %s to %s:%s",
             (unsigned long long)cur.total, since, until, buf_cstr(&line));
    struct summary_job *j = xcalloc(1, sizeof(*j));
    j->pj.run = summary_run;
    j->pj.done = summary_done;
    j->api = a;
    j->snap = snap_ref(a->snap);
    j->rec = json_pack("{s:s,s:o,s:I,s:o,s:s,s:s,s:I}", "type", "deny_summary", "counts", counts,
                       "total", (json_int_t)cur.total, "samples", samples, "since", since, "until",
                       until, "worker", (json_int_t)a->slot);
    buf_release(&line);
    memset(&cur, 0, sizeof(cur));
    if (j->rec == NULL) {
        log_error("cannot encode the deny_summary record");
        snap_unref(j->snap);
        xfree(j);
        return;
    }
    a->jobs++;
    pool_submit(a->pool, &j->pj);
}
