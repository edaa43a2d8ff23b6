/*
 * The JITR intake (docs/jitr.md, "The intake"; docs/contracts.md, "HTTP"; docs/aws-iot.md, "Topic
 * rule HTTP action"): its own listener, plain HTTP (behind a TLS-terminating load balancer) or
 * TLS, SO_REUSEPORT in every worker.
 *
 *   POST /v1/jitr/events   the registered event, one object or a batch (an HTTP rule action
 *                          with batching enabled sends a JSON array of up to 10): secret header
 *                          (SHA-256 of the presented value compared with every configured
 *                          secret's with CRYPTO_memcmp, all of them, so neither the match nor the
 *                          length leaks through timing; several secrets for rotation) →
 *                          jitr_events_parse → every valid event in one EVAL (XADDs) → 202 only
 *                          once Redis acknowledged; 503 while Redis is unavailable (the HTTP
 *                          action retries 5xx); 4xx when nothing in the body can be stored, and
 *                          nothing queued. An event of a batch that can never be valid is logged,
 *                          counted and listed in the 202: it must not make AWS send the good
 *                          ones again.
 *   the same path with x-amz-rules-engine-message-type: DestinationConfirmation (or a
 *   confirmationToken query): the confirmation carries none of the rule's headers, so it needs
 *   no secret; confirm.c decides whether and when to confirm it.
 *   GET /healthz, GET /metrics (jitr:stats, queue depth, dead letters, the SQS intake's
 *   counters; Prometheus text).
 * jitr_intake_parse and jitr_events_enqueue are the one validation and the one way into the
 * stream of every intake: this one and the SQS poller (sqs.c). With an SQS queue configured the
 * intake may run without secrets (POST /v1/jitr/events then answers 401) and without a listener
 * (listen "").
 *
 * HTTP is httpd/ (the server of jitrd's signing API): every refusal, including a malformed
 * request line or header, a body above JITR_BODY_MAX (413 as soon as its Content-Length is read)
 * and an unknown route, is JSON {"error":{"code","message"}}. A reply after the client went away
 * is safe: httpd drops it and frees the request. Requests waiting for Redis (the XADDs,
 * /metrics, a confirmation's checks) are counted in intake_busy (jitr_service_busy); at shutdown
 * the Redis client is freed first, which answers them (503, or metrics with jitr_redis_up 0)
 * before the server goes.
 */
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "httpd/httpd.h"
#include "jitr/jitr_int.h"
#include "store/store.h"

#define INTAKE_REDIS_TIMEOUT_MS 2000
#define INTAKE_TIMEOUT_S        30   /* a request must arrive whole within it; idle keep-alive */
#define INTAKE_MAX_CONNS        4096 /* per worker; the listener pauses above */

/* A fixed JSON body (no escaping needed). */
static void reply_json(struct httpd_req *req, int status, const char *body)
{
    httpd_reply(req, status, "application/json", body, strlen(body));
}

/* ---- secrets -------------------------------------------------------------------------------- */

static void secret_add(struct jitr_secrets *s, const char *v, size_t n)
{
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == ' ' || v[n - 1] == '\t')) {
        n--;
    }
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    if (n == 0) {
        return;
    }
    s->md = xrealloc(s->md, (s->n + 1) * sizeof(*s->md));
    SHA256((const unsigned char *)v, n, s->md[s->n++]);
}

int jitr_secrets_load(const struct conf_jitr *cfg, struct jitr_secrets *out, struct err *e)
{
    const char *env = cfg->secrets_env[0] ? getenv(cfg->secrets_env) : NULL;
    memset(out, 0, sizeof(*out));
    if (cfg->secrets_file[0]) {
        struct buf b = BUF_INIT;
        const char *p;
        if (file_check_private(cfg->secrets_file, e) != 0 ||
            file_read_all(cfg->secrets_file, 65536, &b, e) != 0) {
            buf_release_secret(&b);
            return err_prefix(e, "jitr secrets file");
        }
        p = buf_cstr(&b);
        while (*p) {
            size_t n = strcspn(p, "\n");
            if (p[0] != '#') {
                secret_add(out, p, n);
            }
            p += n + (p[n] ? 1 : 0);
        }
        buf_release_secret(&b);
    }
    if (env != NULL) {
        const char *p = env;
        while (*p) {
            size_t n = strcspn(p, ",");
            secret_add(out, p, n);
            p += n + (p[n] ? 1 : 0);
        }
    }
    if (out->n == 0 && cfg->sqs_queue_url[0] != '\0') {
        log_info("jitr: no intake secret: POST /v1/jitr/events answers 401; events come "
                 "through SQS");
        return 0;
    }
    if (out->n == 0) {
        return err_set(e, ERRC_INVALID, "jitr: no intake secret: set %s or secrets_file "
                       "(the topic rule sends it in the %s header)",
                       cfg->secrets_env[0] ? cfg->secrets_env : "secrets_env",
                       cfg->secret_header);
    }
    return 0;
}

void jitr_secrets_release(struct jitr_secrets *s)
{
    if (s->md != NULL) {
        OPENSSL_cleanse(s->md, s->n * sizeof(*s->md));
        xfree(s->md);
    }
    memset(s, 0, sizeof(*s));
}

static bool secret_ok(const struct jitr_service *s, const char *v)
{
    uint8_t md[32];
    int match = 0;
    if (v == NULL) {
        return false;
    }
    SHA256((const unsigned char *)v, strlen(v), md);
    for (size_t i = 0; i < s->secrets.n; i++) {
        match |= CRYPTO_memcmp(md, s->secrets.md[i], sizeof(md)) == 0;
    }
    return match != 0;
}

/* ---- events --------------------------------------------------------------------------------- */

/* Every valid event of a body in one round trip: XADDs in one script (atomic; the reply lists
 * the stream ids in order). ARGV per event: the number of its field strings, then them
 * (jitr_event_fields). */
static const char enqueue_lua[] =
    "local ids, i = {}, 1\n"
    "while i <= #ARGV do\n"
    "  local n = tonumber(ARGV[i])\n"
    "  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', '1000000', '*',\n"
    "    unpack(ARGV, i + 1, i + n))\n"
    "  i = i + n + 1\n"
    "end\n"
    "return ids\n";

int jitr_intake_parse(struct jitr_service *s, const uint8_t *body, size_t len,
                      struct jitr_events *out, struct err *e)
{
    return jitr_events_parse(body, len, jitr_ca_known, &s->ctx, out, e);
}

int jitr_events_enqueue(struct jitr_service *s, const struct jitr_event *const *evs, size_t n,
                        const char *src, store_reply_cb *cb, void *arg, struct err *e)
{
    static const char *const counts[] = { "0", "1", "2", "3", "4", "5", "6",
                                          "7", "8", "9", "10", "11", "12" };
    int64_t now = time_now_ms();
    const char **av;
    struct jitr_event *ev;
    struct jitr_fields *fl;
    size_t ac = 0;
    int rc;
    if (s->ctx.rs == NULL || s->ctx.stopping) {
        return err_set(e, ERRC_UNAVAILABLE, "jitr: the event queue is stopping");
    }
    if (n == 0) {
        return err_set(e, ERRC_INVALID, "jitr: no event to queue");
    }
    av = xcalloc(4 + (1 + JITR_FIELDS_MAX) * n, sizeof(*av));
    ev = xcalloc(n, sizeof(*ev));
    fl = xcalloc(n, sizeof(*fl));
    av[ac++] = "EVAL";
    av[ac++] = enqueue_lua;
    av[ac++] = "1";
    av[ac++] = STORE_PREFIX "jitr:events";
    for (size_t i = 0; i < n; i++) {
        ev[i] = *evs[i];
        ev[i].received_ms = now;
        jitr_event_fields(&ev[i], src, &fl[i]);
        av[ac++] = counts[fl[i].n];
        for (size_t k = 0; k < fl[i].n; k++) {
            av[ac++] = fl[i].av[k];
        }
    }
    rc = store_async_cmd(s->ctx.rs, (int)ac, av, NULL, INTAKE_REDIS_TIMEOUT_MS, cb, arg, e);
    xfree(fl);
    xfree(ev);
    xfree(av);
    return rc;
}

/* The reason class of a refused event, for the counters. */
const char *jitr_event_reject_class(enum err_code c)
{
    return c == ERRC_DENIED ? "foreign_ca" : "invalid";
}

struct pending {
    struct jitr_service *s;
    struct httpd_req *req;
    struct jitr_events evs;
};

static void stat_status(struct jitr_service *s, int status)
{
    char f[32];
    snprintf(f, sizeof(f), "intake:%d", status);
    jitr_stat_incr(&s->ctx, f, 1);
}

/* Counts (and logs, never the body) every refused event of a body. */
static void note_refused(struct jitr_service *s, const struct jitr_events *evs, const char *src)
{
    for (size_t i = 0; i < evs->n; i++) {
        char f[64];
        if (evs->err[i].code == ERRC_OK) {
            continue;
        }
        snprintf(f, sizeof(f), "events:%s:rejected:%s", src,
                 jitr_event_reject_class(evs->err[i].code));
        jitr_stat_incr(&s->ctx, f, 1);
        if (evs->batch) {
            log_info("jitr: intake refused event %zu of %zu of a batch: %s", i + 1, evs->n,
                     evs->err[i].msg);
        } else {
            log_info("jitr: intake refused an event: %s", evs->err[i].msg);
        }
    }
}

static void on_enqueued(void *arg, const struct store_reply *r, const struct err *e)
{
    struct pending *p = arg;
    struct jitr_service *s = p->s;
    json_t *queued, *rejected;
    size_t k = 0;
    s->intake_busy--;
    if (e != NULL || r->type != STORE_REPLY_ARRAY || r->n != p->evs.nvalid) {
        stat_status(s, 503);
        log_warn("jitr: intake: %zu event(s) not stored, answering 503: %s", p->evs.nvalid,
                 e ? e->msg : "unexpected reply to the XADD script");
        httpd_reply_error(p->req, 503, "unavailable", "the event queue is unavailable; retry");
        xfree(p);
        return;
    }
    stat_status(s, 202);
    jitr_stat_incr(&s->ctx, "events:http:queued", (long long)p->evs.nvalid);
    if (!p->evs.batch) {
        httpd_reply_json(p->req, 202, json_pack("{s:s}", "queued", r->elem[0].str ? r->elem[0].str
                                                                                   : ""));
        xfree(p);
        return;
    }
    queued = json_array();
    rejected = json_array();
    for (size_t i = 0; i < p->evs.n; i++) {
        const struct err *ee = &p->evs.err[i];
        if (ee->code == ERRC_OK) {
            const struct store_reply *id = &r->elem[k++];
            json_array_append_new(queued, json_string(id->str ? id->str : ""));
        } else {
            json_array_append_new(rejected,
                                  json_pack("{s:I,s:{s:s,s:s}}", "index", (json_int_t)i, "error",
                                            "code", err_code_name(ee->code), "message", ee->msg));
        }
    }
    httpd_reply_json(p->req, 202, json_pack("{s:o,s:o}", "queued", queued, "rejected", rejected));
    xfree(p);
}

/* Nothing in the body can be stored: the single event's own error, or for a batch the first
 * element's reason (400 if any element is malformed, 403 when they all name foreign CAs). */
static void reply_none_valid(struct jitr_service *s, struct httpd_req *req,
                             const struct jitr_events *evs)
{
    struct err e = ERR_INIT;
    enum err_code code = ERRC_DENIED;
    if (!evs->batch) {
        stat_status(s, err_http_status(evs->err[0].code));
        httpd_reply_err(req, &evs->err[0]);
        return;
    }
    for (size_t i = 0; i < evs->n; i++) {
        if (evs->err[i].code != ERRC_DENIED) {
            code = ERRC_INVALID;
        }
    }
    err_set(&e, code, "no valid event in the batch of %zu: event 1: %s", evs->n, evs->err[0].msg);
    stat_status(s, err_http_status(code));
    httpd_reply_err(req, &e);
}

/* POST /v1/jitr/events (and /v1/jitr/events/). */
static void on_event(struct httpd_req *req, void *arg)
{
    struct jitr_service *s = arg;
    size_t len = 0;
    const uint8_t *body = httpd_req_body(req, &len);
    const char *mt = httpd_req_header(req, "x-amz-rules-engine-message-type");
    const char *secret = httpd_req_header(req, s->cfg.secret_header);
    const struct jitr_event *valid[JITR_BATCH_MAX];
    struct err e = ERR_INIT;
    struct pending *p;
    size_t nv = 0;
    if ((mt != NULL && strcmp(mt, "DestinationConfirmation") == 0) ||
        httpd_req_query(req, "confirmationToken") != NULL) {
        jitr_confirm_post(s, req, body, len);
        return;
    }
    if (!secret_ok(s, secret)) {
        stat_status(s, 401);
        httpd_reply_error(req, 401, "denied",
                          s->secrets.n == 0 ? "the HTTP event intake is off (no secret configured)"
                          : secret != NULL ? "wrong secret"
                                           : "missing secret header");
        return;
    }
    p = xcalloc(1, sizeof(*p));
    p->s = s;
    p->req = req;
    if (jitr_intake_parse(s, body, len, &p->evs, &e) != 0) {
        stat_status(s, err_http_status(e.code));
        log_info("jitr: intake refused a body: %s", e.msg);
        httpd_reply_err(req, &e);
        xfree(p);
        return;
    }
    note_refused(s, &p->evs, "http");
    if (p->evs.nvalid == 0) {
        reply_none_valid(s, req, &p->evs);
        xfree(p);
        return;
    }
    for (size_t i = 0; i < p->evs.n; i++) {
        if (p->evs.err[i].code == ERRC_OK) {
            valid[nv++] = &p->evs.ev[i];
        }
    }
    if (jitr_events_enqueue(s, valid, nv, "http", on_enqueued, p, &e) != 0) {
        xfree(p);
        stat_status(s, 503);
        httpd_reply_error(req, 503, "unavailable", "the event queue is unavailable; retry");
        return;
    }
    s->intake_busy++;
}

/* ---- metrics -------------------------------------------------------------------------------- */

struct metrics_req {
    struct jitr_service *s;
    struct httpd_req *req;
    struct buf out;
    int step;
};

static void metrics_next(struct metrics_req *m);

static void metric_line(struct buf *b, const char *field, const char *value)
{
    char name[160];
    const char *c1 = strchr(field, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (str_has_prefix(field, "outcome:")) {
        buf_addf(b, "jitr_outcomes_total{outcome=\"%s\"} %s\n", c1 + 1, value);
    } else if (str_has_prefix(field, "aws:") && c2) {
        buf_addf(b, "jitr_aws_calls_total{api=\"%.*s\",result=\"%s\"} %s\n",
                 (int)(c2 - c1 - 1), c1 + 1, c2 + 1, value);
    } else if (str_has_prefix(field, "aws_pace_ms:")) {
        buf_addf(b, "jitr_aws_pacing_ms_total{api=\"%s\"} %s\n", c1 + 1, value);
    } else if (str_has_prefix(field, "aws_retries:")) {
        buf_addf(b, "jitr_aws_retries_total{api=\"%s\"} %s\n", c1 + 1, value);
    } else if (str_has_prefix(field, "intake:")) {
        buf_addf(b, "jitr_intake_requests_total{status=\"%s\"} %s\n", c1 + 1, value);
    } else if (str_has_prefix(field, "events:") && c2 && str_has_prefix(c2 + 1, "rejected:")) {
        buf_addf(b, "jitr_intake_events_rejected_total{src=\"%.*s\",reason=\"%s\"} %s\n",
                 (int)(c2 - c1 - 1), c1 + 1, c2 + 10, value);
    } else if (str_has_prefix(field, "events:") && c2 && strcmp(c2 + 1, "queued") == 0) {
        buf_addf(b, "jitr_intake_events_queued_total{src=\"%.*s\"} %s\n", (int)(c2 - c1 - 1),
                 c1 + 1, value);
    } else if (str_has_prefix(field, "confirm:")) {
        buf_addf(b, "jitr_destination_confirmations_total{result=\"%s\"} %s\n", c1 + 1, value);
    } else if (str_has_prefix(field, "sqs:rejected:")) {
        buf_addf(b, "jitr_sqs_messages_rejected_total{reason=\"%s\"} %s\n", field + 13, value);
    } else if (strcmp(field, "sqs:receive_errors") == 0 ||
               strcmp(field, "sqs:delete_errors") == 0) {
        buf_addf(b, "jitr_sqs_%s_total %s\n", c1 + 1, value);
    } else if (str_has_prefix(field, "sqs:")) {
        buf_addf(b, "jitr_sqs_messages_%s_total %s\n", c1 + 1, value);
    } else if (str_has_prefix(field, "lat_le:")) {
        buf_addf(b, "jitr_first_event_to_active_ms_bucket{le=\"%s\"} %s\n", c1 + 1, value);
    } else if (strcmp(field, "lat_count") == 0) {
        buf_addf(b, "jitr_first_event_to_active_ms_count %s\n", value);
    } else if (strcmp(field, "lat_sum_ms") == 0) {
        buf_addf(b, "jitr_first_event_to_active_ms_sum %s\n", value);
    } else {
        size_t i;
        snprintf(name, sizeof(name), "jitr_%s", field);
        for (i = 0; name[i]; i++) {
            if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9'))) {
                name[i] = '_';
            }
        }
        buf_addf(b, "%s_total %s\n", name, value);
    }
}

static void on_metrics_reply(void *arg, const struct store_reply *r, const struct err *e)
{
    struct metrics_req *m = arg;
    if (e != NULL) {
        buf_addf(&m->out, "# redis unavailable: %s\njitr_redis_up 0\n", e->msg);
        m->step = 99;
    } else if (m->step == 0) {
        buf_addstr(&m->out, "jitr_redis_up 1\n");
        for (size_t i = 0; r->type == STORE_REPLY_ARRAY && i + 1 < r->n; i += 2) {
            metric_line(&m->out, r->elem[i].str, r->elem[i + 1].str);
        }
    } else if (m->step == 1) {
        /* XINFO GROUPS: [[name, jitr, consumers, n, pending, n, last-delivered-id, id,
         * entries-read, n, lag, n], ...] */
        long long pending = 0, lag = 0;
        for (size_t g = 0; r->type == STORE_REPLY_ARRAY && g < r->n; g++) {
            const struct store_reply *gr = &r->elem[g];
            for (size_t i = 0; gr->type == STORE_REPLY_ARRAY && i + 1 < gr->n; i += 2) {
                if (gr->elem[i].type != STORE_REPLY_STRING) {
                    continue;
                }
                if (strcmp(gr->elem[i].str, "pending") == 0) {
                    pending = gr->elem[i + 1].integer;
                } else if (strcmp(gr->elem[i].str, "lag") == 0 &&
                           gr->elem[i + 1].type == STORE_REPLY_INTEGER) {
                    lag = gr->elem[i + 1].integer;
                }
            }
        }
        buf_addf(&m->out, "jitr_queue_pending %lld\njitr_queue_lag %lld\njitr_queue_depth %lld\n",
                 pending, lag, pending + lag);
    } else if (m->step == 2) {
        buf_addf(&m->out, "jitr_dlq_depth %lld\n", r->integer);
    }
    m->step++;
    metrics_next(m);
}

static void metrics_next(struct metrics_req *m)
{
    struct err e = ERR_INIT;
    int rc = -1;
    /* not while shutting down: the Redis client is going (a request pipelined behind one that
     * its cancellation answered) */
    bool redis = !m->s->ctx.stopping && m->s->ctx.rs != NULL;
    if (redis && m->step == 0) {
        const char *av[] = { "HGETALL", STORE_PREFIX "jitr:stats" };
        rc = store_async_cmd(m->s->ctx.rs, 2, av, NULL, INTAKE_REDIS_TIMEOUT_MS,
                             on_metrics_reply, m, &e);
    } else if (redis && m->step == 1) {
        const char *av[] = { "XINFO", "GROUPS", STORE_PREFIX "jitr:events" };
        rc = store_async_cmd(m->s->ctx.rs, 3, av, NULL, INTAKE_REDIS_TIMEOUT_MS,
                             on_metrics_reply, m, &e);
    } else if (redis && m->step == 2) {
        const char *av[] = { "XLEN", STORE_PREFIX "jitr:dlq" };
        rc = store_async_cmd(m->s->ctx.rs, 2, av, NULL, INTAKE_REDIS_TIMEOUT_MS,
                             on_metrics_reply, m, &e);
    }
    if (rc == 0) {
        return;
    }
    if (m->step < 3) {
        buf_addf(&m->out, "jitr_redis_up 0\n");
    }
    buf_addf(&m->out, "jitr_flows_in_flight{worker=\"%zu\"} %zu\n", m->s->slot,
             jitr_service_jobs(m->s));
    httpd_reply(m->req, 200, "text/plain; version=0.0.4", m->out.data, m->out.len);
    m->s->intake_busy--;
    buf_release(&m->out);
    xfree(m);
}

/* ---- routing and the listener --------------------------------------------------------------- */

/* GET on the events path: the rule only ever POSTs. */
static void on_event_get(struct httpd_req *req, void *arg)
{
    (void)arg;
    httpd_req_add_header(req, "Allow", "POST");
    httpd_reply_error(req, 405, "invalid", "use POST");
}

static void on_healthz(struct httpd_req *req, void *arg)
{
    (void)arg;
    reply_json(req, 200, "{\"status\":\"ok\"}");
}

static void on_metrics(struct httpd_req *req, void *arg)
{
    struct jitr_service *s = arg;
    struct metrics_req *m = xcalloc(1, sizeof(*m));
    m->s = s;
    m->req = req;
    s->intake_busy++;
    metrics_next(m);
}

static const struct httpd_route intake_routes[] = {
    { "POST", "/v1/jitr/events", 0, "jitr_events", on_event },
    { "POST", "/v1/jitr/events/", 0, "jitr_events", on_event },
    { "GET", "/v1/jitr/events", 0, "jitr_events", on_event_get },
    { "GET", "/v1/jitr/events/", 0, "jitr_events", on_event_get },
    { "GET", "/healthz", 0, "healthz", on_healthz },
    { "GET", "/metrics", 0, "metrics", on_metrics },
};

static SSL_CTX *intake_ssl(void *arg)
{
    struct jitr_service *s = arg;
    return s->ssl; /* NULL: plain HTTP */
}

/* jitr.listen as httpd takes it: HOST:PORT with HOST resolved to a numeric address (a name, or
 * an empty HOST for every address, are accepted as before). */
static int listen_numeric(const char *addr, char *out, size_t outsz, struct err *e)
{
    char host[256], num[INET6_ADDRSTRLEN];
    const char *colon = strrchr(addr, ':');
    struct addrinfo hints, *res = NULL;
    int rc;
    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host) || colon[1] == '\0') {
        return err_set(e, ERRC_INVALID, "jitr: listen '%s' is not HOST:PORT", addr);
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    if (host[0] == '[' && colon > addr + 1 && colon[-1] == ']') {
        size_t hl = strlen(host);
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res);
    if (rc != 0) {
        return err_set(e, ERRC_INVALID, "jitr: listen '%s': %s", addr, gai_strerror(rc));
    }
    rc = getnameinfo(res->ai_addr, res->ai_addrlen, num, sizeof(num), NULL, 0, NI_NUMERICHOST);
    if (rc == 0) {
        snprintf(out, outsz, res->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", num, colon + 1);
    }
    freeaddrinfo(res);
    if (rc != 0) {
        return err_set(e, ERRC_INVALID, "jitr: listen '%s': %s", addr, gai_strerror(rc));
    }
    return 0;
}

int jitr_intake_start(struct jitr_service *s, struct err *e)
{
    char addr[300];
    struct httpd_opts o;
    if (s->cfg.listen[0] == '\0') {
        return 0; /* no HTTP intake (and no /metrics): SQS only */
    }
    if (jitr_secrets_load(&s->cfg, &s->secrets, e) != 0) {
        return -1;
    }
    if (s->cfg.tls_cert_file[0]) {
        /* no client certificates: the rule authenticates with the secret header */
        s->ssl = httpd_tls_ctx_new(s->cfg.tls_cert_file, s->cfg.tls_key_file, NULL, e);
        if (s->ssl == NULL) {
            return err_prefix(e, "jitr");
        }
    }
    if (listen_numeric(s->cfg.listen, addr, sizeof(addr), e) != 0) {
        return -1;
    }
    memset(&o, 0, sizeof(o));
    o.listen = addr;
    o.max_body = JITR_BODY_MAX;
    o.request_timeout = INTAKE_TIMEOUT_S;
    o.idle_timeout = INTAKE_TIMEOUT_S;
    o.max_conns = INTAKE_MAX_CONNS;
    o.routes = intake_routes;
    o.nroutes = ARRAY_LEN(intake_routes);
    o.ssl_ctx = intake_ssl;
    o.arg = s;
    s->http = httpd_new(s->ctx.base, &o, e);
    if (s->http == NULL) {
        return err_prefix(e, "jitr intake");
    }
    return 0;
}

void jitr_intake_stop(struct jitr_service *s)
{
    httpd_free(s->http); /* every request was answered: the Redis client went first */
    s->http = NULL;
    SSL_CTX_free(s->ssl);
    s->ssl = NULL;
    jitr_secrets_release(&s->secrets);
}
