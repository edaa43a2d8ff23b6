/*
 * The JITR intake (DESIGN.md "HTTP (jitrd)"; AWS-IOT.md §6.1): its own listener, plain HTTP
 * (behind a TLS-terminating load balancer) or TLS, SO_REUSEPORT in every worker.
 *
 *   POST /v1/jitr/events   the registered event: secret header (SHA-256 of the presented value
 *                          compared with every configured secret's with CRYPTO_memcmp, all of
 *                          them, so neither the match nor the length leaks through timing; several
 *                          secrets for rotation) → jitr_event_parse → XADD → 202 only once Redis
 *                          acknowledged; 503 while Redis is unavailable (the HTTP action retries
 *                          5xx); 4xx for everything else and nothing queued.
 *   the same path with x-amz-rules-engine-message-type: DestinationConfirmation (or a
 *   confirmationToken query): the confirmation carries none of the rule's headers, so it needs
 *   no secret; it is answered 200 at once and confirmed with ConfirmTopicRuleDestination (the
 *   token is only ever sent back to AWS).
 *   GET /healthz, GET /metrics (jitr:stats, queue depth, dead letters, the SQS intake's
 *   counters; Prometheus text).
 * jitr_intake_validate and jitr_event_enqueue are the one validation and the one XADD of every
 * intake: this one and the SQS poller (sqs.c). With an SQS queue configured the intake may run
 * without secrets (POST /v1/jitr/events then answers 401) and without a listener (listen "").
 * A reply after the client went away is safe: libevent detaches such requests and frees them at
 * evhttp_send_reply.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr_int.h"
#include "store/store.h"

#define INTAKE_REDIS_TIMEOUT_MS 2000

static void reply_json(struct evhttp_request *req, int status, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    if (b) {
        evbuffer_add(b, body, strlen(body));
    }
    evhttp_send_reply(req, status, status < 300 ? "OK" : "Error", b);
    if (b) {
        evbuffer_free(b);
    }
}

static void reply_error(struct evhttp_request *req, int status, const char *code, const char *msg)
{
    json_t *v = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg);
    char *s = json_dumps(v, JSON_COMPACT);
    reply_json(req, status, s ? s : "{}");
    xfree(s);
    json_decref(v);
}

static void reply_err(struct evhttp_request *req, const struct err *e)
{
    reply_error(req, err_http_status(e->code), err_code_name(e->code), e->msg);
}

/* ---- secrets -------------------------------------------------------------------------------- */

static void secret_add(struct jitr_service *s, const char *v, size_t n)
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
    s->secrets = xrealloc(s->secrets, (s->nsecrets + 1) * sizeof(*s->secrets));
    SHA256((const unsigned char *)v, n, s->secrets[s->nsecrets++]);
}

static int secrets_load(struct jitr_service *s, struct err *e)
{
    const char *env = s->cfg.secrets_env[0] ? getenv(s->cfg.secrets_env) : NULL;
    if (s->cfg.secrets_file[0]) {
        struct buf b = BUF_INIT;
        const char *p;
        if (file_check_private(s->cfg.secrets_file, e) != 0 ||
            file_read_all(s->cfg.secrets_file, 65536, &b, e) != 0) {
            buf_release_secret(&b);
            return err_prefix(e, "jitr secrets file");
        }
        p = buf_cstr(&b);
        while (*p) {
            size_t n = strcspn(p, "\n");
            if (p[0] != '#') {
                secret_add(s, p, n);
            }
            p += n + (p[n] ? 1 : 0);
        }
        buf_release_secret(&b);
    }
    if (env != NULL) {
        const char *p = env;
        while (*p) {
            size_t n = strcspn(p, ",");
            secret_add(s, p, n);
            p += n + (p[n] ? 1 : 0);
        }
    }
    if (s->nsecrets == 0 && s->cfg.sqs_queue_url[0] != '\0') {
        log_info("jitr: no intake secret: POST /v1/jitr/events answers 401; events come "
                 "through SQS");
        return 0;
    }
    if (s->nsecrets == 0) {
        return err_set(e, ERRC_INVALID, "jitr: no intake secret: set %s or secrets_file "
                       "(the topic rule sends it in the %s header)",
                       s->cfg.secrets_env[0] ? s->cfg.secrets_env : "secrets_env",
                       s->cfg.secret_header);
    }
    return 0;
}

static bool secret_ok(const struct jitr_service *s, const char *v)
{
    uint8_t md[32];
    int match = 0;
    if (v == NULL) {
        return false;
    }
    SHA256((const unsigned char *)v, strlen(v), md);
    for (size_t i = 0; i < s->nsecrets; i++) {
        match |= CRYPTO_memcmp(md, s->secrets[i], sizeof(md)) == 0;
    }
    return match != 0;
}

/* ---- events --------------------------------------------------------------------------------- */

struct pending {
    struct jitr_service *s;
    struct evhttp_request *req;
};

static void on_xadd(void *arg, const struct store_reply *r, const struct err *e)
{
    struct pending *p = arg;
    p->s->intake_busy--;
    if (e != NULL) {
        jitr_stat_incr(p->s, "intake:503", 1);
        log_warn("jitr: intake: event not stored, answering 503: %s", e->msg);
        reply_error(p->req, 503, "unavailable", "the event queue is unavailable; retry");
    } else {
        char body[128];
        snprintf(body, sizeof(body), "{\"queued\":\"%.60s\"}",
                 r->type == STORE_REPLY_STRING ? r->str : "");
        jitr_stat_incr(p->s, "intake:202", 1);
        reply_json(p->req, 202, body);
    }
    xfree(p);
}

static void on_confirmed(void *arg, const struct aws_iot_result *r, const struct err *e)
{
    struct jitr_service *s = arg;
    (void)r;
    if (e != NULL) {
        log_warn("jitr: ConfirmTopicRuleDestination failed: %s", e->msg);
        jitr_stat_incr(s, "confirm:failed", 1);
    } else {
        log_info("jitr: topic rule destination confirmed");
        jitr_stat_incr(s, "confirm:ok", 1);
    }
}

static void handle_confirmation(struct jitr_service *s, struct evhttp_request *req,
                                const uint8_t *body, size_t len)
{
    struct jitr_confirm c;
    struct err e = ERR_INIT;
    json_t *in = NULL;
    if (jitr_confirm_parse(body, len, &c, &e) != 0) {
        jitr_stat_incr(s, "confirm:invalid", 1);
        reply_err(req, &e);
        return;
    }
    in = json_pack("{s:s}", "confirmationToken", c.token);
    if (jitr_aws_call(s, AWS_IOT_CONFIRM_TOPIC_RULE_DESTINATION, in, on_confirmed, s, &e) != 0) {
        json_decref(in);
        log_warn("jitr: cannot confirm destination %s: %s", c.arn, e.msg);
        reply_error(req, 503, "unavailable", "cannot confirm now; retry");
        return;
    }
    json_decref(in);
    log_info("jitr: confirming topic rule destination %s", c.arn);
    reply_json(req, 200, "{\"confirming\":true}");
}

/* The checks every intake applies to an event body (HTTP and SQS alike). */
int jitr_intake_validate(struct jitr_service *s, const uint8_t *body, size_t len,
                         struct jitr_event *ev, struct err *e)
{
    return jitr_event_parse(body, len, jitr_ca_known, s, ev, e);
}

int jitr_event_enqueue(struct jitr_service *s, const struct jitr_event *ev, const char *src,
                       store_reply_cb *cb, void *arg, struct err *e)
{
    char recv[24], ts[24];
    snprintf(recv, sizeof(recv), "%lld", (long long)time_now_ms());
    snprintf(ts, sizeof(ts), "%lld", (long long)ev->timestamp_ms);
    const char *av[] = { "XADD", STORE_PREFIX "jitr:events", "MAXLEN", "~", "1000000", "*",
                         "cert", ev->cert_id, "ca", ev->ca_id, "account", ev->account,
                         "recv", recv, "ts", ts, "src", src };
    if (s->rs == NULL || s->stopping) {
        return err_set(e, ERRC_UNAVAILABLE, "jitr: the event queue is stopping");
    }
    return store_async_cmd(s->rs, (int)ARRAY_LEN(av), av, NULL, INTAKE_REDIS_TIMEOUT_MS, cb, arg,
                           e);
}

static void handle_event(struct jitr_service *s, struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const uint8_t *body = len ? evbuffer_pullup(in, (ev_ssize_t)len) : (const uint8_t *)"";
    const char *mt = evhttp_find_header(h, "x-amz-rules-engine-message-type");
    const char *uri = evhttp_request_get_uri(req);
    struct jitr_event ev;
    struct err e = ERR_INIT;
    struct pending *p;
    if ((mt != NULL && strcmp(mt, "DestinationConfirmation") == 0) ||
        (uri != NULL && strstr(uri, "confirmationToken=") != NULL)) {
        handle_confirmation(s, req, body, len);
        return;
    }
    if (!secret_ok(s, evhttp_find_header(h, s->cfg.secret_header))) {
        jitr_stat_incr(s, "intake:401", 1);
        reply_error(req, 401, "denied",
                    s->nsecrets == 0 ? "the HTTP event intake is off (no secret configured)"
                    : evhttp_find_header(h, s->cfg.secret_header) ? "wrong secret"
                                                                  : "missing secret header");
        return;
    }
    if (jitr_intake_validate(s, body, len, &ev, &e) != 0) {
        char f[32];
        snprintf(f, sizeof(f), "intake:%d", err_http_status(e.code));
        jitr_stat_incr(s, f, 1);
        log_info("jitr: intake refused an event: %s", e.msg);
        reply_err(req, &e);
        return;
    }
    p = xcalloc(1, sizeof(*p));
    p->s = s;
    p->req = req;
    if (jitr_event_enqueue(s, &ev, "http", on_xadd, p, &e) != 0) {
        xfree(p);
        jitr_stat_incr(s, "intake:503", 1);
        reply_error(req, 503, "unavailable", "the event queue is unavailable; retry");
        return;
    }
    s->intake_busy++;
}

/* ---- metrics -------------------------------------------------------------------------------- */

struct metrics_req {
    struct jitr_service *s;
    struct evhttp_request *req;
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
    } else if (str_has_prefix(field, "aws_retries:")) {
        buf_addf(b, "jitr_aws_retries_total{api=\"%s\"} %s\n", c1 + 1, value);
    } else if (str_has_prefix(field, "intake:")) {
        buf_addf(b, "jitr_intake_requests_total{status=\"%s\"} %s\n", c1 + 1, value);
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
    if (m->step == 0) {
        const char *av[] = { "HGETALL", STORE_PREFIX "jitr:stats" };
        rc = store_async_cmd(m->s->rs, 2, av, NULL, INTAKE_REDIS_TIMEOUT_MS, on_metrics_reply, m,
                             &e);
    } else if (m->step == 1) {
        const char *av[] = { "XINFO", "GROUPS", STORE_PREFIX "jitr:events" };
        rc = store_async_cmd(m->s->rs, 3, av, NULL, INTAKE_REDIS_TIMEOUT_MS, on_metrics_reply, m,
                             &e);
    } else if (m->step == 2) {
        const char *av[] = { "XLEN", STORE_PREFIX "jitr:dlq" };
        rc = store_async_cmd(m->s->rs, 2, av, NULL, INTAKE_REDIS_TIMEOUT_MS, on_metrics_reply, m,
                             &e);
    }
    if (rc == 0) {
        return;
    }
    if (m->step < 3) {
        buf_addf(&m->out, "jitr_redis_up 0\n");
    }
    buf_addf(&m->out, "jitr_flows_in_flight{worker=\"%zu\"} %zu\n", m->s->slot, m->s->nflows);
    {
        struct evbuffer *b = evbuffer_new();
        evhttp_add_header(evhttp_request_get_output_headers(m->req), "Content-Type",
                          "text/plain; version=0.0.4");
        evbuffer_add(b, m->out.data, m->out.len);
        evhttp_send_reply(m->req, 200, "OK", b);
        evbuffer_free(b);
    }
    m->s->intake_busy--;
    buf_release(&m->out);
    xfree(m);
}

/* ---- routing and the listener --------------------------------------------------------------- */

static void on_request(struct evhttp_request *req, void *arg)
{
    struct jitr_service *s = arg;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (path == NULL) {
        reply_error(req, 400, "invalid", "bad request line");
        return;
    }
    if (strcmp(path, "/v1/jitr/events") == 0 || strcmp(path, "/v1/jitr/events/") == 0) {
        if (cmd != EVHTTP_REQ_POST) {
            reply_error(req, 405, "invalid", "use POST");
            return;
        }
        handle_event(s, req);
    } else if (strcmp(path, "/healthz") == 0) {
        reply_json(req, 200, "{\"status\":\"ok\"}");
    } else if (strcmp(path, "/metrics") == 0) {
        struct metrics_req *m = xcalloc(1, sizeof(*m));
        m->s = s;
        m->req = req;
        s->intake_busy++;
        metrics_next(m);
    } else {
        reply_error(req, 404, "not_found", "no such route");
    }
}

static struct bufferevent *tls_bevcb(struct event_base *base, void *arg)
{
    struct jitr_service *s = arg;
    SSL *ssl = SSL_new(s->ssl);
    if (ssl == NULL) {
        ERR_clear_error();
        return NULL;
    }
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

static int listen_socket(const char *addr, int *fd_out, struct err *e)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    struct addrinfo hints, *res = NULL;
    int fd = -1, one = 1, rc;
    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host) || colon[1] == '\0') {
        return err_set(e, ERRC_INVALID, "jitr: listen '%s' is not HOST:PORT", addr);
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res);
    if (rc != 0) {
        return err_set(e, ERRC_INVALID, "jitr: listen '%s': %s", addr, gai_strerror(rc));
    }
    fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0 ||
        evutil_make_socket_nonblocking(fd) != 0) {
        err_errno(e, ERRC_UNAVAILABLE, "jitr: cannot listen on %s", addr);
        if (fd >= 0) {
            close(fd);
        }
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    *fd_out = fd;
    return 0;
}

int jitr_intake_start(struct jitr_service *s, struct err *e)
{
    s->listen_fd = -1;
    if (s->cfg.listen[0] == '\0') {
        return 0; /* no HTTP intake (and no /metrics): SQS only */
    }
    if (secrets_load(s, e) != 0) {
        return -1;
    }
    if (s->cfg.tls_cert_file[0]) {
        s->ssl = SSL_CTX_new(TLS_server_method());
        if (s->ssl == NULL ||
            SSL_CTX_set_min_proto_version(s->ssl, TLS1_2_VERSION) != 1 ||
            SSL_CTX_use_certificate_chain_file(s->ssl, s->cfg.tls_cert_file) != 1 ||
            SSL_CTX_use_PrivateKey_file(s->ssl, s->cfg.tls_key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(s->ssl) != 1) {
            return err_openssl(e, ERRC_INVALID, "jitr: TLS certificate %s or key %s unusable",
                               s->cfg.tls_cert_file, s->cfg.tls_key_file);
        }
    }
    if (listen_socket(s->cfg.listen, &s->listen_fd, e) != 0) {
        return -1;
    }
    s->http = evhttp_new(s->base);
    if (s->http == NULL) {
        return err_set(e, ERRC_INTERNAL, "jitr: cannot create the HTTP server");
    }
    evhttp_set_max_body_size(s->http, JITR_EVENT_MAX);
    evhttp_set_max_headers_size(s->http, 16384);
    evhttp_set_timeout(s->http, 30);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_gencb(s->http, on_request, s);
    if (s->ssl) {
        evhttp_set_bevcb(s->http, tls_bevcb, s);
    }
    if (evhttp_accept_socket_with_handle(s->http, s->listen_fd) == NULL) {
        return err_set(e, ERRC_INTERNAL, "jitr: cannot accept on %s", s->cfg.listen);
    }
    s->listen_fd = -1; /* the listener owns it now */
    return 0;
}

void jitr_intake_stop(struct jitr_service *s)
{
    if (s->http) {
        evhttp_free(s->http);
        s->http = NULL;
    }
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        s->listen_fd = -1;
    }
    SSL_CTX_free(s->ssl);
    s->ssl = NULL;
    if (s->secrets) {
        OPENSSL_cleanse(s->secrets, s->nsecrets * sizeof(*s->secrets));
        xfree(s->secrets);
        s->secrets = NULL;
    }
}
