/*
 * libcurl multi on libevent (curl docs/examples/multi-event.c; docs/style.md, "Asynchronous
 * calls"): the only file that knows both. curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION, one struct event per socket, kept with curl_multi_assign) and when to
 * wake it (CURLMOPT_TIMERFUNCTION, one evtimer). We never call curl from inside those two
 * callbacks: a zero timeout only activates the evtimer, whose handler calls
 * curl_multi_socket_action later (curl's documented recursion trap). After each socket_action we
 * harvest curl_multi_info_read, find the call by CURLOPT_PRIVATE, detach the easy handle and run
 * the user callback; a callback may start new requests. Each request gets a fresh easy handle (no
 * stale POSTFIELDS: docs/aws-iot.md, "Why we sign ourselves"); connections live in the multi
 * handle's cache and are reused. */
#include "aws/transport.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/mem.h"

struct aws_http_call {
    struct aws_transport *t;
    CURL *easy;
    struct curl_slist *hdrs;
    char *body;
    size_t max_body;
    bool too_large;
    long timeout_ms;
    char url[512]; /* for messages, cut */
    struct aws_http_resp resp;
    char errbuf[CURL_ERROR_SIZE];
    aws_http_cb *cb;
    void *arg;
    struct aws_http_call *prev, *next;
};

struct aws_transport {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct aws_http_call *calls;
    uint64_t requests, connects;
};

static void *curl_xmalloc(size_t n)
{
    return xmalloc(n ? n : 1);
}

static void *curl_xrealloc(void *p, size_t n)
{
    return xrealloc(p, n ? n : 1);
}

static void *curl_xcalloc(size_t n, size_t s)
{
    return xcalloc(n ? n : 1, s ? s : 1);
}

static int transport_global_init(struct err *e)
{
    static bool done;
    if (done) {
        return 0;
    }
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, curl_xmalloc, xfree, curl_xrealloc, xstrdup,
                             curl_xcalloc) != CURLE_OK) {
        return err_set(e, ERRC_INTERNAL, "curl_global_init failed");
    }
    done = true;
    return 0;
}

static void call_unlink(struct aws_transport *t, struct aws_http_call *c)
{
    if (c->prev) {
        c->prev->next = c->next;
    } else if (t->calls == c) {
        t->calls = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
}

static void call_free(struct aws_http_call *c)
{
    if (c->easy) {
        curl_easy_cleanup(c->easy);
    }
    curl_slist_free_all(c->hdrs);
    xfree(c->body);
    buf_release(&c->resp.body);
    xfree(c);
}

/* Maps a finished transfer to the callback's error (NULL on success). */
static const struct err *call_result(struct aws_http_call *c, CURLcode res, struct err *e)
{
    const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(res);
    if (res == CURLE_OK) {
        return NULL;
    }
    if (c->too_large) {
        err_set(e, ERRC_TOO_LARGE, "response from %s larger than %zu bytes", c->url, c->max_body);
    } else if (res == CURLE_OPERATION_TIMEDOUT) {
        err_set(e, ERRC_TIMEOUT, "timeout after %ld ms waiting for %s", c->timeout_ms, c->url);
    } else if (res == CURLE_PARTIAL_FILE) {
        err_set(e, ERRC_UNAVAILABLE, "truncated response from %s: %s", c->url, detail);
    } else if (res == CURLE_GOT_NOTHING) {
        err_set(e, ERRC_UNAVAILABLE, "%s closed the connection without a response", c->url);
    } else if (res == CURLE_COULDNT_CONNECT || res == CURLE_COULDNT_RESOLVE_HOST) {
        err_set(e, ERRC_UNAVAILABLE, "cannot connect to %s: %s", c->url, detail);
    } else {
        err_set(e, ERRC_UNAVAILABLE, "request to %s failed: %s", c->url, detail);
    }
    snprintf(e->detail, sizeof(e->detail), "curl %d: %s", (int)res, detail);
    return e;
}

static void transport_harvest(struct aws_transport *t)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(t->multi, &left)) != NULL) {
        struct aws_http_call *c = NULL;
        struct err e = ERR_INIT;
        const struct err *ep;
        long nconn = 0;
        double secs = 0;
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        CURL *easy = msg->easy_handle;
        CURLcode res = msg->data.result; /* msg dies at remove_handle */
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&c);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &c->resp.status);
        curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &nconn);
        curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME, &secs);
        c->resp.seconds = secs;
        t->connects += (uint64_t)(nconn > 0 ? nconn : 0);
        curl_multi_remove_handle(t->multi, easy);
        call_unlink(t, c);
        ep = call_result(c, res, &e);
        c->cb(c->arg, &c->resp, ep);
        call_free(c);
    }
}

static void transport_on_socket(evutil_socket_t fd, short what, void *arg)
{
    struct aws_transport *t = arg;
    int running = 0;
    int flags =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(t->multi, fd, flags, &running);
    transport_harvest(t);
}

static void transport_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct aws_transport *t = arg;
    int running = 0;
    (void)fd;
    (void)what;
    curl_multi_socket_action(t->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    transport_harvest(t);
}

/* CURLMOPT_SOCKETFUNCTION: (re)arm or drop the socket's event; never calls curl back. */
static int transport_sockfn(CURL *easy, curl_socket_t s, int what, void *userp, void *sockp)
{
    struct aws_transport *t = userp;
    struct event *ev = sockp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (ev) {
            event_free(ev);
            curl_multi_assign(t->multi, s, NULL);
        }
        return 0;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                         ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    if (ev) {
        event_free(ev);
    }
    ev = event_new(t->base, s, kind, transport_on_socket, t);
    if (ev == NULL) {
        oom_die(event_get_struct_event_size());
    }
    event_add(ev, NULL);
    curl_multi_assign(t->multi, s, ev);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 disarms; 0 fires on the next loop turn, not here. */
static int transport_timerfn(CURLM *multi, long timeout_ms, void *userp)
{
    struct aws_transport *t = userp;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(t->timer);
    } else {
        struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
        evtimer_add(t->timer, &tv);
    }
    return 0;
}

struct aws_transport *aws_transport_new(struct event_base *base, struct err *e)
{
    struct aws_transport *t = NULL;
    if (transport_global_init(e) != 0) {
        return NULL;
    }
    t = xcalloc(1, sizeof(*t));
    t->base = base;
    t->multi = curl_multi_init();
    if ((t->timer = evtimer_new(base, transport_on_timer, t)) == NULL) {
        oom_die(event_get_struct_event_size());
    }
    if (t->multi == NULL) {
        aws_transport_free(t);
        err_set(e, ERRC_INTERNAL, "cannot create the curl multi handle");
        return NULL;
    }
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETFUNCTION, transport_sockfn);
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETDATA, t);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERFUNCTION, transport_timerfn);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERDATA, t);
    curl_multi_setopt(t->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 64L);
    curl_multi_setopt(t->multi, CURLMOPT_MAXCONNECTS, 64L);
    return t;
}

void aws_transport_free(struct aws_transport *t)
{
    if (t == NULL) {
        return;
    }
    while (t->calls) {
        struct aws_http_call *c = t->calls;
        struct err e = ERR_INIT;
        call_unlink(t, c);
        curl_multi_remove_handle(t->multi, c->easy);
        err_set(&e, ERRC_CANCELED, "request to %s canceled", c->url);
        c->cb(c->arg, &c->resp, &e);
        call_free(c);
    }
    if (t->multi) {
        curl_multi_cleanup(t->multi); /* closes cached connections through sockfn */
    }
    if (t->timer) {
        event_free(t->timer);
    }
    xfree(t);
}

struct event_base *aws_transport_base(const struct aws_transport *t)
{
    return t->base;
}

void aws_transport_stats(const struct aws_transport *t, uint64_t *requests, uint64_t *connects)
{
    *requests = t->requests;
    *connects = t->connects;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct aws_http_call *c = arg;
    size_t len = size * n;
    if (c->resp.body.len + len > c->max_body) {
        c->too_large = true;
        return 0; /* aborts the transfer */
    }
    buf_add(&c->resp.body, data, len);
    return len;
}

static void header_value(char *dst, size_t cap, const char *v, size_t len)
{
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' ')) {
        len--;
    }
    snprintf(dst, cap, "%.*s", (int)(len < cap ? len : cap - 1), v);
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct aws_http_call *c = arg;
    size_t len = size * n;
    static const struct {
        const char *name;
        size_t off, cap;
    } want[] = {
        { "x-amzn-errortype:", offsetof(struct aws_http_resp, error_type), 256 },
        { "x-amzn-requestid:", offsetof(struct aws_http_resp, request_id), 128 },
        { "x-amz-request-id:", offsetof(struct aws_http_resp, request_id), 128 },
        { "content-type:", offsetof(struct aws_http_resp, content_type), 128 },
    };
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* a new response (after 100 Continue or a redirect): forget the previous headers */
        c->resp.error_type[0] = c->resp.request_id[0] = c->resp.content_type[0] = '\0';
        c->resp.date = 0;
        return len;
    }
    if (len > 5 && strncasecmp(data, "date:", 5) == 0) {
        char date[64];
        header_value(date, sizeof(date), data + 5, len - 5);
        time_t t = curl_getdate(date, NULL);
        c->resp.date = t > 0 ? (int64_t)t : 0;
        return len;
    }
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        size_t nl = strlen(want[i].name);
        if (len > nl && strncasecmp(data, want[i].name, nl) == 0) {
            header_value((char *)&c->resp + want[i].off, want[i].cap, data + nl, len - nl);
        }
    }
    return len;
}

int aws_http_send(struct aws_transport *t, const struct aws_http_req *req, aws_http_cb *cb,
                  void *arg, struct err *e)
{
    struct aws_http_call *c = NULL;
    struct buf line = BUF_INIT;
    if (req->method == NULL || req->url == NULL || cb == NULL) {
        return err_set(e, ERRC_INVALID, "HTTP request without method, URL or callback");
    }
    c = xcalloc(1, sizeof(*c));
    c->t = t;
    c->cb = cb;
    c->arg = arg;
    c->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : 30000;
    c->max_body = req->max_body > 0 ? req->max_body : (size_t)1 << 20;
    snprintf(c->url, sizeof(c->url), "%s", req->url);
    char *q = strchr(c->url, '?');
    if (q) {
        *q = '\0'; /* messages name the resource, not the query */
    }
    c->easy = curl_easy_init();
    if (c->easy == NULL) {
        xfree(c);
        return err_set(e, ERRC_INTERNAL, "curl_easy_init failed");
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        buf_reset(&line);
        buf_addf(&line, "%s: %s", req->headers[i].name, req->headers[i].value);
        c->hdrs = curl_slist_append(c->hdrs, line.data);
    }
    /* curl's own additions that we do not want: Expect (a 1 s stall on large bodies) and the
     * form Content-Type it would add to an empty POSTFIELDS. Neither is signed. */
    c->hdrs = curl_slist_append(c->hdrs, "Expect:");
    if (req->body == NULL || req->body_len == 0) {
        c->hdrs = curl_slist_append(c->hdrs, "Content-Type:");
    }
    buf_release_secret(&line);
    if (c->hdrs == NULL) {
        oom_die(0);
    }
    CURL *h = c->easy;
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_PRIVATE, c);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     req->connect_timeout_ms > 0 ? req->connect_timeout_ms
                                                 : (c->timeout_ms < 10000 ? c->timeout_ms : 10000));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "jitrca/" JITRCA_VERSION);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, NULL);
    if (req->body != NULL && req->body_len > 0) {
        c->body = xmemdup(req->body, req->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body);
    } else if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "DELETE") != 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "POST") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
    } else if (strcmp(req->method, "GET") == 0 && c->body != NULL) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "GET");
    }
    if (curl_multi_add_handle(t->multi, h) != CURLM_OK) {
        call_free(c);
        return err_set(e, ERRC_INTERNAL, "curl_multi_add_handle failed");
    }
    t->requests++;
    c->next = t->calls;
    if (t->calls) {
        t->calls->prev = c;
    }
    t->calls = c;
    return 0;
}
