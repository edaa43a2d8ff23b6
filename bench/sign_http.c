/*
 * Load client for jitrd: many keep-alive mutual-TLS connections on loopback, each posting PEM
 * CSRs to /v1/sign one after the other (one thread per connection, blocking sockets; OpenSSL and
 * plain sockets, no HTTP library). Prints certificates per second and the p50/p99 latency.
 *   bench_sign_http --port P --cert F --key F --cacert F --csrs FILE.jsonl --conns N --seconds S
 * FILE.jsonl is gencsr's JSON-lines output ({"id","csr"}); the CSRs are reused round-robin.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"

struct shared {
    SSL_CTX *ctx;
    int port;
    char **reqs; /* complete HTTP requests */
    size_t *req_len;
    size_t nreqs;
    size_t batch; /* CSRs per request: 1 posts to /v1/sign, more to /v1/sign/batch */
    int64_t deadline_ns;
    atomic_uint_fast64_t ok, bad;
};

struct conn {
    struct shared *sh;
    size_t first;
    int64_t *lat;
    size_t nlat, cap;
};

static int read_response(SSL *ssl, struct buf *in, int *status)
{
    buf_reset(in);
    for (;;) {
        char *hdr_end = in->len ? strstr(in->data, "\r\n\r\n") : NULL;
        if (hdr_end) {
            const char *cl = strcasestr(in->data, "\r\nContent-Length:");
            uint64_t n = 0;
            if (cl == NULL || cl > hdr_end) {
                return -1;
            }
            char num[24] = "";
            sscanf(cl + 17, " %20[0-9]", num);
            if (str_to_u64(num, &n) != 0) {
                return -1;
            }
            size_t want = (size_t)(hdr_end - in->data) + 4 + (size_t)n;
            while (in->len < want) {
                char chunk[16384];
                int r = SSL_read(ssl, chunk, sizeof(chunk));
                if (r <= 0) {
                    return -1;
                }
                buf_add(in, chunk, (size_t)r);
            }
            *status = (int)strtol(in->data + 9, NULL, 10);
            return 0;
        }
        char chunk[16384];
        int r = SSL_read(ssl, chunk, sizeof(chunk));
        if (r <= 0) {
            return -1;
        }
        buf_add(in, chunk, (size_t)r);
    }
}

static void *conn_thread(void *arg)
{
    struct conn *c = arg;
    struct shared *sh = c->sh;
    struct sockaddr_in sa;
    struct buf in = BUF_INIT;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    SSL *ssl = NULL;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)sh->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("connect");
        goto out;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ssl = SSL_new(sh->ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1) {
        ERR_print_errors_fp(stderr);
        goto out;
    }
    for (size_t i = c->first; time_mono_ns() < sh->deadline_ns; i++) {
        size_t k = i % sh->nreqs;
        int status = 0;
        int64_t t0 = time_mono_ns();
        if (SSL_write(ssl, sh->reqs[k], (int)sh->req_len[k]) <= 0 ||
            read_response(ssl, &in, &status) != 0) {
            fprintf(stderr, "connection failed\n");
            break;
        }
        size_t issued = status == 201 ? 1 : 0;
        if (sh->batch > 1 && status == 200) {
            for (const char *p = strstr(in.data, "\"certificateId\""); p;
                 p = strstr(p + 1, "\"certificateId\"")) {
                issued++;
            }
        }
        if (issued < sh->batch) {
            atomic_fetch_add(&sh->bad, sh->batch - issued);
            if (atomic_load(&sh->bad) < 3) {
                fprintf(stderr, "status %d: %.300s\n", status, in.data);
            }
        }
        if (issued == 0) {
            continue;
        }
        atomic_fetch_add(&sh->ok, issued);
        c->lat = xgrow(c->lat, sizeof(int64_t), c->nlat + 1, &c->cap);
        c->lat[c->nlat++] = time_mono_ns() - t0;
    }
out:
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    if (fd >= 0) {
        close(fd);
    }
    buf_release(&in);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL, *cacert = NULL, *csrs = NULL;
    long conns = 16, seconds = 10, batch = 1;
    struct shared sh;
    memset(&sh, 0, sizeof(sh));
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0) {
            sh.port = (int)strtol(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--cert") == 0) {
            cert = argv[i + 1];
        } else if (strcmp(argv[i], "--key") == 0) {
            key = argv[i + 1];
        } else if (strcmp(argv[i], "--cacert") == 0) {
            cacert = argv[i + 1];
        } else if (strcmp(argv[i], "--csrs") == 0) {
            csrs = argv[i + 1];
        } else if (strcmp(argv[i], "--conns") == 0) {
            conns = strtol(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--seconds") == 0) {
            seconds = strtol(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--batch") == 0) {
            batch = strtol(argv[i + 1], NULL, 10);
        }
    }
    if (!sh.port || !cert || !key || !cacert || !csrs || conns < 1 || seconds < 1 || batch < 1 ||
        batch > 1000) {
        fprintf(stderr, "usage: bench_sign_http --port P --cert F --key F --cacert F "
                        "--csrs FILE.jsonl [--conns N] [--seconds S] [--batch K]\n");
        return 2;
    }
    sh.batch = (size_t)batch;
    sh.ctx = SSL_CTX_new(TLS_client_method());
    if (SSL_CTX_use_certificate_chain_file(sh.ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(sh.ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(sh.ctx, cacert, NULL) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_verify(sh.ctx, SSL_VERIFY_PEER, NULL);
    FILE *f = fopen(csrs, "r");
    char line[8192];
    char **pems = NULL;
    size_t npems = 0;
    while (f && fgets(line, sizeof(line), f)) {
        json_t *o = json_loads(line, 0, NULL);
        const char *pem = o ? json_string_value(json_object_get(o, "csr")) : NULL;
        if (pem) {
            pems = xrealloc(pems, (npems + 1) * sizeof(char *));
            pems[npems++] = xstrdup(pem);
        }
        json_decref(o);
    }
    if (f) {
        fclose(f);
    }
    /* one request per CSR (PEM body), or per run of BATCH CSRs (JSON body) */
    for (size_t i = 0; i + sh.batch <= npems; i += sh.batch) {
        struct buf body = BUF_INIT, r = BUF_INIT;
        if (sh.batch == 1) {
            buf_addf(&r,
                     "POST /v1/sign HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     "application/x-pem-file\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(pems[i]), pems[i]);
        } else {
            json_t *items = json_array();
            for (size_t k = i; k < i + sh.batch; k++) {
                json_array_append_new(items, json_pack("{s:s}", "csr", pems[k]));
            }
            json_t *doc = json_pack("{s:o}", "requests", items);
            char *js = json_dumps(doc, JSON_COMPACT);
            buf_addstr(&body, js);
            free(js);
            json_decref(doc);
            buf_addf(&r,
                     "POST /v1/sign/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     "application/json\r\nContent-Length: %zu\r\n\r\n",
                     body.len);
            buf_add(&r, body.data, body.len);
        }
        sh.reqs = xrealloc(sh.reqs, (sh.nreqs + 1) * sizeof(char *));
        sh.req_len = xrealloc(sh.req_len, (sh.nreqs + 1) * sizeof(size_t));
        sh.req_len[sh.nreqs] = r.len;
        sh.reqs[sh.nreqs++] = buf_detach(&r, NULL);
        buf_release(&body);
    }
    for (size_t i = 0; i < npems; i++) {
        xfree(pems[i]);
    }
    xfree(pems);
    if (sh.nreqs == 0) {
        fprintf(stderr, "no CSRs in %s\n", csrs);
        return 1;
    }
    pthread_t *th = xcalloc((size_t)conns, sizeof(pthread_t));
    struct conn *cs = xcalloc((size_t)conns, sizeof(struct conn));
    int64_t t0 = time_mono_ns();
    sh.deadline_ns = t0 + (int64_t)seconds * 1000000000LL;
    for (long i = 0; i < conns; i++) {
        cs[i].sh = &sh;
        cs[i].first = (size_t)i * 7;
        pthread_create(&th[i], NULL, conn_thread, &cs[i]);
    }
    size_t total = 0;
    for (long i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        total += cs[i].nlat;
    }
    double wall = (double)(time_mono_ns() - t0) / 1e9;
    int64_t *all = xcalloc(total ? total : 1, sizeof(int64_t));
    size_t k = 0;
    for (long i = 0; i < conns; i++) {
        memcpy(all + k, cs[i].lat, cs[i].nlat * sizeof(int64_t));
        k += cs[i].nlat;
        xfree(cs[i].lat);
    }
    qsort(all, total, sizeof(int64_t), cmp_i64);
    double rate = (double)atomic_load(&sh.ok) / wall;
    printf("%.0f certs/s over %ld connections, %.1f s, %llu issued, %llu failed, p50 %.2f ms, "
           "p99 %.2f ms\n",
           rate, conns, wall, (unsigned long long)atomic_load(&sh.ok),
           (unsigned long long)atomic_load(&sh.bad),
           total ? (double)all[total / 2] / 1e6 : 0.0,
           total ? (double)all[total * 99 / 100] / 1e6 : 0.0);
    xfree(all);
    xfree(th);
    xfree(cs);
    for (size_t i = 0; i < sh.nreqs; i++) {
        xfree(sh.reqs[i]);
    }
    xfree(sh.reqs);
    xfree(sh.req_len);
    SSL_CTX_free(sh.ctx);
    return atomic_load(&sh.bad) ? 1 : 0;
}
