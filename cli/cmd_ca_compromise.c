/*
 * jitrctl ca compromise NAME [--since TIME] [--no-wait] --yes (docs/operations.md, "A compromised
 * CA"): the response to a CA key that is no longer ours alone. Its steps, each audited, each
 * skipped when a run before did it, so that running the same command again (after a crash of
 * jitrctl or jitrd, a failed AWS call, an interrupt) continues and never does a step twice:
 *   1. begin    record ca:<ca>:compromise (step, since, started; audit ca_compromise "begin")
 *   2. block    the CA signs nothing ever again (cli_ca_block: audit ca_compromised, ca.json,
 *               Redis ca:blocked, which every serial reservation checks: jitrd's workers and
 *               jitrctl refuse at once, whatever the path)
 *   3. inactive the CA is INACTIVE in AWS IoT (UpdateCACertificate, audit ca_aws_update)
 *   4. revoke   every certificate of the CA in the index (issued at or after --since) is revoked
 *               with reason keyCompromise in one bulk pass (issuance_revoke_bulk: one key load,
 *               chunks audited and indexed together, one CRL); each index update queues its
 *               revoke job (jobs/revoke.c), which jitrd runs at the configured AWS quota
 *               (audit ca_compromise "revoked")
 *   5. wait     until every job ended, with a progress bar and an ETA (--no-wait: return)
 *   6. done     the report from the jobs' outcomes: REVOKED in AWS, unknown to AWS, failed
 *               (dead letters), other (audit ca_compromise "done", once)
 * The certificates of the response are kept in ca:<ca>:compromise:certs ("<fingerprint>
 * <serial>"), so the report and jitrd's /metrics count the same set.
 * One run at a time writes: steps 1-4 and 6 run under ca:<ca>:compromise:run (SET NX PX, the
 * run's token, renewed as the run moves), so two operators starting the response at once write
 * each step once; the second waits, then continues where the first left off. The wait (step 5)
 * only reads and holds nothing. A run that dies leaves the lock to expire (RUN_LOCK_MS).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "ca/authority.h"
#include "cli/cli.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"
#include "issuance/revoke.h"
#include "store/store.h"

static const char usage[] =
    "usage: jitrctl ca compromise NAME [--since TIME] [--no-wait] --yes\n"
    "The CA's key is no longer trusted. At once, no jitrd and no jitrctl signs with NAME again\n"
    "(requests for it are refused naming the reason) and JITR refuses its certificates; NAME\n"
    "becomes INACTIVE in AWS IoT; every certificate it issued (with --since, issued at or after\n"
    "TIME, RFC 3339) is revoked in the index with reason keyCompromise, which the CRL and OCSP\n"
    "show at once, and REVOKED in AWS IoT by jitrd's job engine at the configured quota. Every\n"
    "step is audited. Running the command again continues an interrupted response and prints\n"
    "its report; nothing is done twice. There is no undo: --yes says so.\n"
    "  --since TIME  only the certificates issued at or after TIME (e.g. 2026-11-30T00:00:00Z)\n"
    "  --no-wait     return once the revocations are queued (run it again to follow them)\n"
    "  --stall-timeout S  give up waiting after S seconds without progress (default 120)\n";

#define CERTS_SUFFIX ":compromise:certs"
#define POLL_MS      500
#define RUN_LOCK_MS  60000 /* a dead run's lock expires this long after it last moved */

struct counts {
    long long total, revoked, unknown, failed, other, pending;
};

static int count(struct store *s, const char *ca, struct counts *c, struct err *e)
{
    struct store_compromise k;
    if (store_compromise_count(s, ca, &k, e) != 0) {
        return -1;
    }
    *c = (struct counts){ (long long)k.total,  (long long)k.revoked, (long long)k.unknown,
                          (long long)k.failed, (long long)k.other,   (long long)k.pending };
    return 0;
}

/* A script on one key whose reply (one value) is of no interest. */
static int eval1(struct store *s, const char *script, const char *key, const char *const *args,
                 size_t n, struct err *e)
{
    char *out[1] = { NULL };
    size_t got = 0;
    const char *keys[] = { key };
    int rc = store_eval(s, script, keys, 1, args, n, out, 1, &got, e);
    xfree(out[0]);
    return rc;
}

/* HSET ca:<ca>:compromise with n field/value pairs. */
static int rec_set(struct store *s, const char *ca, const char *const *fv, size_t n, struct err *e)
{
    char key[160];
    snprintf(key, sizeof(key), "ca:%s:compromise", ca);
    return eval1(s, "return redis.call('HSET', KEYS[1], unpack(ARGV))", key, fv, n, e);
}

/* The order of the recorded steps. */
static int step_ord(const char *step)
{
    static const char *const order[] = { "begun", "blocked", "inactive", "revoked", "done" };
    for (size_t i = 0; i < ARRAY_LEN(order); i++) {
        if (strcmp(step, order[i]) == 0) {
            return (int)i;
        }
    }
    return 0;
}

int cli_ca_block(const struct conf *c, const char *name, bool *was, struct err *e)
{
    struct ca_authority *a = ca_authority_load(c->data_dir, name, e);
    struct store *s = NULL;
    int rc = -1;
    *was = false;
    if (a == NULL) {
        return -1;
    }
    if (a->status == CA_ST_PENDING) {
        err_set(e, ERRC_CONFLICT, "CA '%s' is pending: it has no certificate to distrust", name);
        goto out;
    }
    *was = ca_authority_compromised(a);
    if (!*was) {
        char at[40];
        json_t *fields = json_pack("{s:s,s:s}", "from", ca_status_name(a->status), "to",
                                   ca_status_name(CA_ST_RETIRED));
        time_format_rfc3339(time(NULL), at, sizeof(at));
        /* audit first: a mark nobody can trace must not happen (and reindex replays it) */
        rc = issuance_audit_ca_op(c, "ca_compromised", name, fields, e);
        json_decref(fields);
        if (rc != 0) {
            goto out;
        }
        rc = -1;
        a->status = CA_ST_RETIRED;
        json_object_set_new(a->meta, "compromised", json_pack("{s:s}", "at", at));
        if (ca_authority_save(c->data_dir, a, e) != 0) {
            goto out;
        }
    }
    if ((s = store_connect(c->redis_url, e)) == NULL || store_ca_block(s, name, NULL, e) != 0) {
        err_prefix(e, "CA '%s' is marked compromised here but not yet in Redis (run this again)",
                   name);
        goto out;
    }
    rc = 0;
out:
    store_free(s);
    ca_authority_free(a);
    return rc;
}

static int audit_step(const struct conf *c, const char *ca, const char *step, json_t *fields,
                      struct err *e)
{
    json_t *f = fields ? fields : json_object();
    json_object_set_new(f, "step", json_string(step));
    int rc = issuance_audit_ca_op(c, "ca_compromise", ca, f, e);
    json_decref(f);
    return rc;
}

/* ---- the steps ------------------------------------------------------------------------------ */

struct run {
    struct cli *cli;
    const struct conf *c;
    const char *ca;
    struct store *s;
    char step[16];
    char since[32]; /* "" for every certificate */
    bool tty;
    int64_t last_print_ms;
    char token[340]; /* this run's lock token: user@host:pid:random */
    bool locked;
    struct err lost; /* the lock was lost during the bulk revocation (its progress renews it) */
};

static void say(const struct run *r, const char *fmt, ...) ATTR_PRINTF(2, 3);
static void say(const struct run *r, const char *fmt, ...)
{
    va_list ap;
    if (r->cli->json) {
        return;
    }
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* ---- the run lock ----------------------------------------------------------------------- */

static void lock_key(const struct run *r, char *key, size_t cap)
{
    snprintf(key, cap, "ca:%s:compromise:run", r->ca);
}

/* Takes the run lock, waiting for another run that holds it (saying so once). */
static int run_lock(struct run *r, struct err *e)
{
    static const char take[] =
        "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return '' end\n"
        "return redis.call('GET', KEYS[1]) or '?'\n"; /* never '' when not ours */
    char key[160], ttl[24];
    bool said = false;
    lock_key(r, key, sizeof(key));
    snprintf(ttl, sizeof(ttl), "%d", RUN_LOCK_MS);
    for (;;) {
        const char *keys[] = { key }, *args[] = { r->token, ttl };
        char *out[1] = { NULL };
        size_t got = 0;
        if (store_eval(r->s, take, keys, 1, args, 2, out, 1, &got, e) != 0) {
            return -1;
        }
        bool mine = got == 1 && out[0] != NULL && out[0][0] == '\0';
        if (!mine && !said) {
            say(r,
                "the compromise response of CA '%s' is running in another jitrctl (%s): waiting "
                "for it, then continuing where it left off (a run that died frees it within %d s)",
                r->ca, got == 1 && out[0] ? out[0] : "?", RUN_LOCK_MS / 1000);
            said = true;
        }
        xfree(out[0]);
        if (mine) {
            r->locked = true;
            return 0;
        }
        struct timespec ts = { 0, 200 * 1000000L };
        nanosleep(&ts, NULL);
    }
}

/* Extends the run lock; ERRC_CONFLICT when it is no longer ours (it expired: another run may
 * have taken over, so this one writes nothing more). */
static int run_renew(struct run *r, struct err *e)
{
    static const char renew[] = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
                                "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                "return 1\n";
    char key[160], ttl[24];
    char *out[1] = { NULL };
    size_t got = 0;
    lock_key(r, key, sizeof(key));
    snprintf(ttl, sizeof(ttl), "%d", RUN_LOCK_MS);
    const char *keys[] = { key }, *args[] = { r->token, ttl };
    if (store_eval(r->s, renew, keys, 1, args, 2, out, 1, &got, e) != 0) {
        return -1;
    }
    bool mine = got == 1 && out[0] != NULL && strcmp(out[0], "1") == 0;
    xfree(out[0]);
    if (!mine) {
        r->locked = false;
        return err_set(e, ERRC_CONFLICT,
                       "this run lost the lock of CA '%s''s compromise response (it stalled "
                       "for over %d s, or Redis lost it): stopped; run this again to continue",
                       r->ca, RUN_LOCK_MS / 1000);
    }
    return 0;
}

/* Frees the run lock when it is still ours (errors ignored: it expires anyway). */
static void run_unlock(struct run *r)
{
    static const char release[] = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
                                  "return redis.call('DEL', KEYS[1])\n";
    char key[160];
    char *out[1] = { NULL };
    size_t got = 0;
    struct err ignored = { 0 };
    if (!r->locked) {
        return;
    }
    lock_key(r, key, sizeof(key));
    const char *keys[] = { key }, *args[] = { r->token };
    if (store_eval(r->s, release, keys, 1, args, 1, out, 1, &got, &ignored) == 0) {
        xfree(out[0]);
    }
    r->locked = false;
}

static int step_begin(struct run *r, const char *since_arg, struct err *e)
{
    static const char *const f[] = { "step", "since", "started" };
    char *v[3] = { NULL, NULL, NULL };
    char key[160];
    int rc = -1;
    snprintf(key, sizeof(key), STORE_PREFIX "ca:%s:compromise", r->ca);
    if (store_hmget(r->s, key, f, 3, v, e) != 0) {
        return -1;
    }
    if (v[0] != NULL) {
        snprintf(r->step, sizeof(r->step), "%s", v[0]);
        if (since_arg && strcmp(since_arg, v[1] ? v[1] : "") != 0) {
            err_set(e, ERRC_CONFLICT,
                    "the compromise response of CA '%s' began at %s with --since '%s': run it "
                    "again without --since (or with the same)",
                    r->ca, v[2] ? v[2] : "?", v[1] ? v[1] : "");
            goto out;
        }
        snprintf(r->since, sizeof(r->since), "%s", v[1] ? v[1] : "");
        say(r, "compromise response of CA '%s' (begun %s%s%s): resuming at step '%s'", r->ca,
            v[2] ? v[2] : "?", r->since[0] ? ", since " : "", r->since, r->step);
        rc = 0;
        goto out;
    }
    {
        char now[32];
        time_format_rfc3339(time(NULL), now, sizeof(now));
        snprintf(r->since, sizeof(r->since), "%s", since_arg ? since_arg : "");
        const char *fv[] = { "step", "begun", "since", r->since, "started", now };
        if (audit_step(r->c, r->ca, "begin", json_pack("{s:s}", "since", r->since), e) != 0 ||
            rec_set(r->s, r->ca, fv, 6, e) != 0) {
            goto out;
        }
        const char *args[] = { r->ca };
        if (eval1(r->s, "return redis.call('SADD', KEYS[1], ARGV[1])", STORE_CA_COMPROMISES, args,
                  1, e) != 0) {
            goto out;
        }
        snprintf(r->step, sizeof(r->step), "begun");
        say(r, "compromise response of CA '%s' begun%s%s", r->ca, r->since[0] ? ", since " : "",
            r->since);
    }
    rc = 0;
out:
    for (size_t i = 0; i < 3; i++) {
        xfree(v[i]);
    }
    return rc;
}

static int step_block(struct run *r, struct err *e)
{
    bool was = false;
    const char *fv[] = { "step", "blocked" };
    /* always: cheap, and Redis may have lost ca:blocked since (a rebuild restores it too) */
    if (cli_ca_block(r->c, r->ca, &was, e) != 0) {
        return -1;
    }
    if (step_ord(r->step) < 1) {
        if (rec_set(r->s, r->ca, fv, 2, e) != 0) {
            return -1;
        }
        snprintf(r->step, sizeof(r->step), "blocked");
    }
    say(r, "1/4 blocked: CA '%s' signs nothing more (every jitrd refuses it at once)%s", r->ca,
        was ? "; it was marked compromised already" : "");
    return 0;
}

static int step_inactive(struct run *r, struct err *e)
{
    struct ca_authority *a = ca_authority_load(r->c->data_dir, r->ca, e);
    json_t *list, *v;
    size_t i, active = 0;
    int rc = -1;
    const char *fv[] = { "step", "inactive" };
    if (a == NULL) {
        return -1;
    }
    list = json_object_get(a->meta, "aws");
    json_array_foreach(list, i, v)
    {
        const char *st = json_string_value(json_object_get(v, "status"));
        active += st == NULL || strcmp(st, "INACTIVE") != 0;
    }
    if (json_array_size(list) == 0) {
        say(r, "2/4 AWS IoT: CA '%s' is not registered there: nothing to deactivate", r->ca);
    } else if (active == 0) {
        say(r, "2/4 AWS IoT: CA '%s' is INACTIVE already", r->ca);
    } else if (cli_ca_aws_update(r->cli, r->c, a, "INACTIVE", NULL, e) != 0) {
        err_prefix(e, "the CA is blocked, but not yet INACTIVE in AWS IoT (run this again)");
        goto out;
    } else {
        say(r, "2/4 AWS IoT: CA '%s' is INACTIVE", r->ca);
    }
    rc = rec_set(r->s, r->ca, fv, 2, e);
    snprintf(r->step, sizeof(r->step), "inactive");
out:
    ca_authority_free(a);
    return rc;
}

static void bulk_progress(void *arg, size_t done, size_t n)
{
    struct run *r = arg;
    if (r->locked && run_renew(r, &r->lost) != 0) {
        fprintf(stderr, "jitrctl: %s\n", r->lost.msg);
    }
    if (!r->cli->json) {
        fprintf(stderr, "%srevoking in the index: %zu/%zu%s", r->tty ? "\r" : "", done, n,
                r->tty && done < n ? "" : "\n");
        fflush(stderr);
    }
}

/* SADD of members[0..n) to ca:<ca>:compromise:certs, ISSUANCE_BULK_CHUNK at a time. */
static int certs_add(struct run *r, char **members, size_t n, struct err *e)
{
    char key[160];
    snprintf(key, sizeof(key), "ca:%s" CERTS_SUFFIX, r->ca);
    for (size_t i = 0; i < n; i += ISSUANCE_BULK_CHUNK) {
        size_t k = n - i < ISSUANCE_BULK_CHUNK ? n - i : ISSUANCE_BULK_CHUNK;
        if (eval1(r->s, "return redis.call('SADD', KEYS[1], unpack(ARGV))", key,
                  (const char *const *)members + i, k, e) != 0) {
            return -1;
        }
    }
    return 0;
}

/* The certificates of the response: every serial of the CA (issued at or after since), each
 * added to the response's set before anything is revoked, so no crash loses one. */
static int targets(struct run *r, char ***out, size_t *nout, struct err *e)
{
    static const char *const f[] = { "fingerprint", "issued_at" };
    char **serials = NULL, **v = NULL, **members = NULL;
    size_t n = 0, k = 0;
    time_t since = 0;
    int rc = -1;
    *out = NULL;
    *nout = 0;
    if (r->since[0] && time_parse_rfc3339(r->since, &since) != 0) {
        return err_set(e, ERRC_INVALID, "bad since '%s'", r->since);
    }
    if (store_ca_serials(r->s, r->ca, &serials, &n, e) != 0) {
        return -1;
    }
    v = xcalloc(n * 2 + 1, sizeof(char *));
    members = xcalloc(n + 1, sizeof(char *));
    if (store_certs_fields(r->s, (const char *const *)serials, n, f, 2, v, e) != 0) {
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        time_t t = 0;
        const char *fp = v[2 * i], *at = v[2 * i + 1];
        bool take = fp != NULL && strlen(fp) == 64;
        if (take && r->since[0]) {
            take = at != NULL && time_parse_rfc3339(at, &t) == 0 && t >= since;
        }
        if (!take) {
            xfree(serials[i]);
            serials[i] = NULL;
            continue;
        }
        struct buf m = BUF_INIT;
        buf_addf(&m, "%s %s", fp, serials[i]);
        members[k] = buf_detach(&m, NULL);
        serials[k++] = serials[i];
        if (k - 1 != i) {
            serials[i] = NULL;
        }
    }
    if (certs_add(r, members, k, e) != 0) {
        goto out;
    }
    rc = 0;
out:
    for (size_t i = 0; i < n * 2; i++) {
        xfree(v[i]);
    }
    xfree(v);
    for (size_t i = 0; i < k; i++) {
        xfree(members[i]);
    }
    xfree(members);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++) {
            xfree(serials[i]);
        }
        xfree(serials);
        return -1;
    }
    *out = serials;
    *nout = k;
    return 0;
}

static int step_revoke(struct run *r, struct err *e)
{
    struct issuance_revoker *rv = NULL;
    char **serials = NULL;
    size_t n = 0;
    char who[300], num[3][24];
    int rc = -1;
    int64_t t0 = time_now_ms();
    struct issuance_bulk b = { 0 };
    issuance_cli_requester(who, sizeof(who));
    if (targets(r, &serials, &n, e) != 0) {
        return -1;
    }
    if ((rv = issuance_revoker_new(r->c, NULL, r->cli->passphrase_file, e)) == NULL) {
        goto out;
    }
    b.ca = r->ca;
    b.serials = (const char *const *)serials;
    b.n = n;
    b.reason = CA_CRL_KEY_COMPROMISE;
    b.requester = who;
    b.progress = bulk_progress;
    b.arg = r;
    if (issuance_revoke_bulk(rv, r->s, &b, e) != 0) {
        err_prefix(e, "%zu revoked, the rest not yet (run this again)", b.revoked);
        goto out;
    }
    if (r->lost.code != ERRC_OK) {
        *e = r->lost;
        goto out;
    }
    {
        double s = (double)(time_now_ms() - t0) / 1000.0;
        snprintf(num[0], sizeof(num[0]), "%zu", b.revoked);
        snprintf(num[1], sizeof(num[1]), "%zu", b.already);
        snprintf(num[2], sizeof(num[2]), "%zu", n);
        const char *fv[] = { "step",    "revoked", "revoked", num[0],
                             "already", num[1],    "total",   num[2] };
        json_t *f = json_pack("{s:I,s:I,s:I,s:I,s:I}", "total", (json_int_t)n, "revoked",
                              (json_int_t)b.revoked, "already", (json_int_t)b.already, "unknown",
                              (json_int_t)b.unknown, "crl_number", (json_int_t)b.crl_number);
        if (audit_step(r->c, r->ca, "revoked", f, e) != 0 || rec_set(r->s, r->ca, fv, 8, e) != 0) {
            goto out;
        }
        say(r,
            "3/4 index: %zu certificates revoked (keyCompromise), %zu revoked before, in %.2f s "
            "(%.0f/s); CRL %s",
            b.revoked, b.already, s, s > 0 ? (double)b.revoked / s : 0.0,
            b.crl_written ? "regenerated" : "NOT regenerated (jitrctl crl --refresh)");
        if (!b.crl_written) {
            fprintf(stderr, "jitrctl: warning: CRL of CA '%s': %s\n", r->ca, b.crl_err.msg);
        }
    }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++) {
        xfree(serials[i]);
    }
    xfree(serials);
    issuance_revoker_free(rv);
    return rc;
}

static void bar(struct run *r, const struct counts *k, double rate, bool last)
{
    char b[41];
    long long done = k->total - k->pending;
    size_t fill = k->total ? (size_t)(done * 40 / k->total) : 40;
    int64_t now = time_now_ms();
    if (r->cli->json || (!r->tty && !last && now - r->last_print_ms < 2000)) {
        return;
    }
    r->last_print_ms = now;
    for (size_t i = 0; i < 40; i++) {
        b[i] = i < fill ? '#' : '.';
    }
    b[40] = '\0';
    fprintf(stderr, "%s[%s] %lld/%lld in AWS IoT (%.1f/s", r->tty ? "\r" : "", b, done, k->total,
            rate);
    if (k->pending > 0 && rate > 0) {
        fprintf(stderr, ", ETA %.0f s", (double)k->pending / rate);
    }
    fprintf(stderr, ")%s", r->tty && !last ? "  " : "\n");
    fflush(stderr);
}

static int step_wait(struct run *r, int stall_s, struct counts *k, struct err *e)
{
    int64_t t0 = time_now_ms(), moved = t0;
    long long first = -1, last = -1;
    for (;;) {
        if (count(r->s, r->ca, k, e) != 0) {
            return -1;
        }
        long long done = k->total - k->pending;
        int64_t now = time_now_ms();
        if (first < 0) {
            first = done;
        }
        if (done != last) {
            moved = now;
            last = done;
        }
        double rate = now > t0 ? (double)(done - first) * 1000.0 / (double)(now - t0) : 0;
        bar(r, k, rate, k->pending == 0);
        if (k->pending == 0) {
            return 0;
        }
        if (now - moved > (int64_t)stall_s * 1000) {
            if (r->tty && !r->cli->json) {
                fputc('\n', stderr);
            }
            return err_set(e, ERRC_UNAVAILABLE,
                           "no revocation reached AWS IoT for %d s (%lld of %lld waiting): is "
                           "jitrd running with jitr.enabled? The jobs stay queued; run this again "
                           "to follow them ('jitrctl jobs status')",
                           stall_s, k->pending, k->total);
        }
        struct timespec ts = { 0, POLL_MS * 1000000L };
        nanosleep(&ts, NULL);
    }
}

/* The recorded step again, under the lock: another run may have finished the response while
 * this one waited. */
static int step_reread(struct run *r, struct err *e)
{
    static const char *const f[] = { "step" };
    char *v[1] = { NULL };
    char key[160];
    snprintf(key, sizeof(key), STORE_PREFIX "ca:%s:compromise", r->ca);
    if (store_hmget(r->s, key, f, 1, v, e) != 0) {
        return -1;
    }
    if (v[0] != NULL) {
        snprintf(r->step, sizeof(r->step), "%s", v[0]);
    }
    xfree(v[0]);
    return 0;
}

static int step_done(struct run *r, const struct counts *k, struct err *e)
{
    if (strcmp(r->step, "done") != 0) {
        char v[4][24];
        snprintf(v[0], sizeof(v[0]), "%lld", k->revoked);
        snprintf(v[1], sizeof(v[1]), "%lld", k->unknown);
        snprintf(v[2], sizeof(v[2]), "%lld", k->failed);
        snprintf(v[3], sizeof(v[3]), "%lld", k->other);
        const char *fv[] = { "step", "done",   "aws_revoked", v[0],    "aws_unknown",
                             v[1],   "failed", v[2],          "other", v[3] };
        json_t *f = json_pack("{s:I,s:I,s:I,s:I,s:I}", "total", (json_int_t)k->total, "aws_revoked",
                              (json_int_t)k->revoked, "aws_unknown", (json_int_t)k->unknown,
                              "failed", (json_int_t)k->failed, "other", (json_int_t)k->other);
        if (audit_step(r->c, r->ca, "done", f, e) != 0 || rec_set(r->s, r->ca, fv, 10, e) != 0) {
            return -1;
        }
        snprintf(r->step, sizeof(r->step), "done");
    }
    return 0;
}

static void report(struct run *r, const struct counts *k, bool waited)
{
    if (r->cli->json) {
        cli_print_json(json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "ca", r->ca, "since",
                                 r->since, "step", r->step, "total", (json_int_t)k->total,
                                 "aws_revoked", (json_int_t)k->revoked, "aws_unknown",
                                 (json_int_t)k->unknown, "failed", (json_int_t)k->failed, "other",
                                 (json_int_t)k->other, "pending", (json_int_t)k->pending));
        return;
    }
    printf("%s: CA '%s', %lld certificates\n", waited ? "4/4 report" : "report", r->ca, k->total);
    printf("  REVOKED in AWS IoT   %lld\n", k->revoked);
    printf("  unknown to AWS IoT   %lld\n", k->unknown);
    printf("  failed               %lld%s\n", k->failed,
           k->failed ? " (jitrctl jobs dlq list --kind revoke; retry, then run this again)" : "");
    if (k->other) {
        printf("  other                %lld (revoked before, another status in AWS IoT)\n",
               k->other);
    }
    if (k->pending) {
        printf("  waiting              %lld\n", k->pending);
    }
}

int cmd_ca_compromise(struct cli *cli, int argc, char **argv, struct err *e)
{
    enum { O_YES = 1, O_SINCE, O_NOWAIT, O_STALL };
    static const struct option own[] = {
        { "yes", no_argument, NULL, O_YES },
        { "since", required_argument, NULL, O_SINCE },
        { "no-wait", no_argument, NULL, O_NOWAIT },
        { "stall-timeout", required_argument, NULL, O_STALL },
        { NULL, 0, NULL, 0 },
    };
    struct run r = { 0 };
    struct counts k = { 0 };
    const char *since = NULL;
    char since_norm[32];
    bool yes = false, wait = true;
    int optidx = 0, ch, rc = -1, stall = 120;
    while ((ch = cli_getopt(cli, argc, argv, own, &optidx, e)) != -1) {
        uint64_t v = 0;
        switch (ch) {
        case 'h':
            return cli_usage(usage);
        case O_YES:
            yes = true;
            break;
        case O_SINCE:
            since = optarg;
            break;
        case O_NOWAIT:
            wait = false;
            break;
        case O_STALL:
            if (str_to_u64(optarg, &v) != 0 || v == 0 || v > 86400) {
                return err_set(e, ERRC_INVALID, "--stall-timeout: 1 to 86400 seconds, not '%s'",
                               optarg);
            }
            stall = (int)v;
            break;
        default:
            return -1;
        }
    }
    if (optidx != argc - 1) {
        return err_set(e, ERRC_INVALID, "ca compromise takes one NAME (jitrctl ca compromise -h)");
    }
    r.ca = argv[optidx];
    if (since) {
        time_t t;
        if (time_parse_rfc3339(since, &t) != 0) {
            return err_set(e, ERRC_INVALID,
                           "--since '%s' is not an RFC 3339 time (e.g. 2026-11-30T00:00:00Z)",
                           since);
        }
        time_format_rfc3339(t, since_norm, sizeof(since_norm));
        since = since_norm;
    }
    if (!yes) {
        return err_set(e, ERRC_INVALID,
                       "ca compromise %s cannot be undone: the CA never signs again, becomes "
                       "INACTIVE in AWS IoT and every certificate it issued%s is revoked; add "
                       "--yes",
                       r.ca, since ? " since then" : "");
    }
    r.cli = cli;
    r.tty = isatty(STDERR_FILENO) == 1;
    if ((r.c = cli_conf(cli, e)) == NULL) {
        return -1;
    }
    if (ca_name_check(r.ca, e) != 0) {
        return -1;
    }
    if (!issuance_ca_exists(r.c, r.ca)) {
        return err_set(e, ERRC_NOT_FOUND, "CA '%s' not found", r.ca);
    }
    if (strcmp(r.ca, r.c->station_ca) == 0) {
        return err_set(e, ERRC_CONFLICT,
                       "CA '%s' is the station CA: it issues no device certificate; replace the "
                       "stations' credentials instead",
                       r.ca);
    }
    if (cli_index_ensure(cli, e) != 0 || (r.s = store_connect(r.c->redis_url, e)) == NULL) {
        return -1;
    }
    {
        char who[300];
        uint8_t rnd[8];
        char hex[17];
        issuance_cli_requester(who, sizeof(who));
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            return err_set(e, ERRC_INTERNAL, "no randomness for the run's lock token");
        }
        hex_encode(rnd, sizeof(rnd), hex);
        snprintf(r.token, sizeof(r.token), "%s:%ld:%s", who + 4, (long)getpid(), hex);
    }
    if (run_lock(&r, e) != 0 || step_begin(&r, since, e) != 0 || step_block(&r, e) != 0) {
        goto out;
    }
    if (step_ord(r.step) < 2 && (run_renew(&r, e) != 0 || step_inactive(&r, e) != 0)) {
        goto out;
    }
    if (step_ord(r.step) < 3) {
        if (run_renew(&r, e) != 0 || step_revoke(&r, e) != 0) {
            goto out;
        }
        snprintf(r.step, sizeof(r.step), "revoked");
    }
    run_unlock(&r);
    if (!wait) {
        if (count(r.s, r.ca, &k, e) != 0) {
            goto out;
        }
        report(&r, &k, false);
        if (!cli->json) {
            printf("the revocations are queued; run 'jitrctl ca compromise %s --yes' again to "
                   "follow them\n",
                   r.ca);
        }
        rc = 0;
        goto out;
    }
    if (step_wait(&r, stall, &k, e) != 0 || run_lock(&r, e) != 0 || step_reread(&r, e) != 0 ||
        step_done(&r, &k, e) != 0) {
        goto out;
    }
    run_unlock(&r);
    report(&r, &k, true);
    rc = 0;
out:
    run_unlock(&r);
    store_free(r.s);
    return rc;
}
