/*
 * Micro-benchmark of the issuing engine alone: N distinct P-256 CSRs (PEM, made in memory and not
 * timed) through ca_prepare + ca_serial_draw + ca_sign + ca_der_to_pem on one thread, on the fast
 * path and on the ordinary path, against the crypto bound (one ECDSA P-256 verify plus one sign):
 *   bound = 1 / (1/sign_rate + 1/verify_rate)
 * The rates come from `openssl speed -seconds 3 ecdsap256` when given (--sign-rate R
 * --verify-rate R); the program also measures them in-process with EVP_PKEY_sign/verify.
 * Medians of 3 runs. No I/O. Not a ctest test: run by hand, see docs/performance.md, "The
 * issuing engine and its traps".
 * --threads T also runs T threads (one ca_signer each, one shared ca_issuer) and reports the
 * aggregate rate of both paths against T times the one-thread rate.
 *   sign_core [--n N] [--threads T] [--sign-rate R --verify-rate R]
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca/issue.h"
#include "ca/profile.h"
#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"

static const char profile_json[] =
    "{\"key_types\":[\"ec-p256\",\"ec-p384\",\"rsa-2048\"],\"validity_days\":3650,"
    "\"backdate_seconds\":300,\"subject\":{\"cn_pattern\":\"[A-Za-z0-9][A-Za-z0-9_:-]{0,63}\","
    "\"allowed\":[\"CN\",\"O\"]},\"san\":null,\"extended_key_usage\":[\"clientAuth\"],"
    "\"jitr\":true}";

static double now_s(void)
{
    return (double)time_mono_ns() / 1e9;
}

static void fail(const char *what)
{
    fprintf(stderr, "sign_core: %s\n", what);
    exit(1);
}

static X509 *make_ca(EVP_PKEY *key)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    X509V3_CTX v;
    static const struct {
        int nid;
        const char *val;
    } exts[] = { { NID_basic_constraints, "critical,CA:TRUE" },
                 { NID_key_usage, "critical,keyCertSign,cRLSign" },
                 { NID_subject_key_identifier, "hash" } };
    if (x == NULL || n == NULL ||
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)"Bench CA", -1,
                                   -1, 0) != 1 ||
        X509_set_version(x, X509_VERSION_3) != 1 ||
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1 || X509_set_subject_name(x, n) != 1 ||
        X509_set_issuer_name(x, n) != 1 || X509_gmtime_adj(X509_getm_notBefore(x), -60) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 3650) == NULL ||
        X509_set_pubkey(x, key) != 1) {
        fail("CA certificate");
    }
    X509V3_set_ctx(&v, x, x, NULL, NULL, 0);
    for (size_t i = 0; i < ARRAY_LEN(exts); i++) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, exts[i].nid, exts[i].val);
        if (e == NULL || X509_add_ext(x, e, -1) != 1) {
            fail("CA extension");
        }
        X509_EXTENSION_free(e);
    }
    if (X509_sign(x, key, EVP_sha256()) <= 0) {
        fail("CA signature");
    }
    X509_NAME_free(n);
    return x;
}

static void make_csr(size_t i, struct buf *out)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509_REQ *r = X509_REQ_new();
    X509_NAME *n = X509_NAME_new();
    BIO *b = BIO_new(BIO_s_mem());
    char cn[32];
    char *p = NULL;
    snprintf(cn, sizeof(cn), "device-%06zu", i);
    if (k == NULL || r == NULL || n == NULL || b == NULL ||
        X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"Bench", -1, -1,
                                   0) != 1 ||
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) !=
            1 ||
        X509_REQ_set_subject_name(r, n) != 1 || X509_REQ_set_pubkey(r, k) != 1 ||
        X509_REQ_sign(r, k, EVP_sha256()) <= 0 || PEM_write_bio_X509_REQ(b, r) != 1) {
        fail("CSR");
    }
    long len = BIO_get_mem_data(b, &p);
    buf_init(out);
    buf_add(out, p, (size_t)len);
    BIO_free(b);
    X509_NAME_free(n);
    X509_REQ_free(r);
    EVP_PKEY_free(k);
}

/* Seconds for one pass over all CSRs. */
static double run(struct ca_signer *s, struct ca_issuer *is, const struct ca_profile *p,
                  const struct buf *csrs, size_t n, bool expect_fast)
{
    struct buf pem = BUF_INIT;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        struct ca_prepared pr;
        struct ca_issued ci;
        struct err e = ERR_INIT;
        uint8_t sn[CA_SERIAL_MAX];
        size_t sn_len = 0;
        if (ca_prepare(s, is, p, (const uint8_t *)csrs[i].data, csrs[i].len, time(NULL), &pr, &e) !=
                0 ||
            pr.fast_path != expect_fast || ca_serial_draw(s, sn, &sn_len, &e) != 0 ||
            ca_sign(s, is, &pr, sn, sn_len, &ci, &e) != 0) {
            fprintf(stderr, "sign_core: %s\n", e.msg);
            exit(1);
        }
        buf_reset(&pem);
        ca_der_to_pem(&pem, ci.der, ci.der_len);
        ca_issued_release(&ci);
        ca_prepared_release(&pr);
    }
    double t = now_s() - t0;
    buf_release(&pem);
    return t;
}

struct worker {
    struct ca_issuer *is;
    const struct ca_profile *p;
    const struct buf *csrs;
    size_t n;
    bool fast;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct ca_signer *s = ca_signer_new();
    ca_signer_set_fast_path(s, w->fast);
    run(s, w->is, w->p, w->csrs, w->n, w->fast);
    ca_signer_free(s);
    return NULL;
}

/* Certificates per second with t threads each issuing n. */
static double run_threads(struct ca_issuer *is, const struct ca_profile *p, const struct buf *csrs,
                          size_t n, bool fast, int t)
{
    pthread_t th[64];
    struct worker w = { is, p, csrs, n, fast };
    double t0 = now_s();
    for (int i = 0; i < t; i++) {
        if (pthread_create(&th[i], NULL, worker_main, &w) != 0) {
            fail("pthread_create");
        }
    }
    for (int i = 0; i < t; i++) {
        pthread_join(th[i], NULL);
    }
    return (double)n * t / (now_s() - t0);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median3(double v[3])
{
    qsort(v, 3, sizeof(double), cmp_d);
    return v[1];
}

/* In-process ECDSA P-256 sign and verify rates on a 32-byte digest, 1 s each. */
static void crypto_rates(double *sign_rate, double *verify_rate)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    EVP_PKEY_CTX *sc = EVP_PKEY_CTX_new(k, NULL), *vc = EVP_PKEY_CTX_new(k, NULL);
    uint8_t md[32] = { 1, 2, 3 }, sig[80];
    size_t sl = sizeof(sig);
    long ns = 0, nv = 0;
    if (EVP_PKEY_sign_init(sc) != 1 || EVP_PKEY_verify_init(vc) != 1 ||
        EVP_PKEY_sign(sc, sig, &sl, md, sizeof(md)) != 1) {
        fail("crypto setup");
    }
    double t0 = now_s(), t;
    while ((t = now_s() - t0) < 1.0) {
        for (int i = 0; i < 100; i++, ns++) {
            sl = sizeof(sig);
            if (EVP_PKEY_sign(sc, sig, &sl, md, sizeof(md)) != 1) {
                fail("sign");
            }
        }
    }
    *sign_rate = (double)ns / t;
    t0 = now_s();
    while ((t = now_s() - t0) < 1.0) {
        for (int i = 0; i < 100; i++, nv++) {
            if (EVP_PKEY_verify(vc, sig, sl, md, sizeof(md)) != 1) {
                fail("verify");
            }
        }
    }
    *verify_rate = (double)nv / t;
    EVP_PKEY_CTX_free(sc);
    EVP_PKEY_CTX_free(vc);
    EVP_PKEY_free(k);
}

int main(int argc, char **argv)
{
    size_t n = 2000;
    int threads = 0;
    double speed_sign = 0, speed_verify = 0, own_sign, own_verify;
    struct err e = ERR_INIT;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--n") == 0) {
            n = strtoul(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--threads") == 0) {
            threads = (int)strtol(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--sign-rate") == 0) {
            speed_sign = strtod(argv[i + 1], NULL);
        } else if (strcmp(argv[i], "--verify-rate") == 0) {
            speed_verify = strtod(argv[i + 1], NULL);
        } else {
            fail("usage: sign_core [--n N] [--threads T] [--sign-rate R --verify-rate R]");
        }
    }
    if (n == 0) {
        fail("--n must be positive");
    }
    EVP_PKEY *cakey = EVP_EC_gen("P-256");
    X509 *cacert = make_ca(cakey);
    struct ca_issuer *is = ca_issuer_new(cacert, cakey, false, &e);
    struct ca_profile *p =
        ca_profile_load_json("bench", "bench", profile_json, strlen(profile_json), &e);
    struct ca_signer *fast = ca_signer_new(), *slow = ca_signer_new();
    struct buf *csrs = xcalloc(n, sizeof(*csrs));
    double tf[3], ts[3];
    if (is == NULL || p == NULL) {
        fail(e.msg);
    }
    ca_signer_set_fast_path(slow, false);
    for (size_t i = 0; i < n; i++) {
        make_csr(i, &csrs[i]);
    }
    run(fast, is, p, csrs, n < 200 ? n : 200, true); /* warm up */
    run(slow, is, p, csrs, n < 50 ? n : 50, false);
    for (int r = 0; r < 3; r++) {
        tf[r] = run(fast, is, p, csrs, n, true);
        ts[r] = run(slow, is, p, csrs, n, false);
    }
    crypto_rates(&own_sign, &own_verify);
    double fast_us = median3(tf) * 1e6 / (double)n, slow_us = median3(ts) * 1e6 / (double)n;
    double own_bound = 1.0 / (1.0 / own_sign + 1.0 / own_verify);
    printf("P-256 CSR (PEM) -> P-256/SHA-256 certificate (DER + PEM), 1 thread, %zu distinct "
           "CSRs, median of 3\n",
           n);
    printf("in-process ECDSA P-256: sign %.0f/s, verify %.0f/s -> bound %.0f certs/s (%.1f us)\n",
           own_sign, own_verify, own_bound, 1e6 / own_bound);
    double bound = own_bound;
    if (speed_sign > 0 && speed_verify > 0) {
        bound = 1.0 / (1.0 / speed_sign + 1.0 / speed_verify);
        printf("openssl speed:          sign %.0f/s, verify %.0f/s -> bound %.0f certs/s "
               "(%.1f us)\n",
               speed_sign, speed_verify, bound, 1e6 / bound);
    }
    printf("fast path: %7.1f us/cert %8.0f certs/s  %.2f of the bound\n", fast_us, 1e6 / fast_us,
           1e6 / fast_us / bound);
    printf("slow path: %7.1f us/cert %8.0f certs/s  %.2f of the bound\n", slow_us, 1e6 / slow_us,
           1e6 / slow_us / bound);
    if (threads > 1 && threads <= 64) {
        double f = run_threads(is, p, csrs, n, true, threads);
        double sl = run_threads(is, p, csrs, n / 4 ? n / 4 : 1, false, threads);
        printf("%d threads: fast path %8.0f certs/s (%.2fx one thread), slow path %8.0f certs/s "
               "(%.2fx)\n",
               threads, f, f * fast_us / 1e6, sl, sl * slow_us / 1e6);
    }
    for (size_t i = 0; i < n; i++) {
        buf_release(&csrs[i]);
    }
    xfree(csrs);
    ca_signer_free(fast);
    ca_signer_free(slow);
    ca_profile_free(p);
    ca_issuer_free(is);
    X509_free(cacert);
    EVP_PKEY_free(cakey);
    return 0;
}
