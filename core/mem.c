/*
 * The only file that calls malloc/realloc/free directly.
 */
#include "core/mem.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void oom_die(size_t n)
{
    fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        oom_die(n);
    }
    return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (p == NULL) {
        oom_die(nmemb * size);
    }
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        oom_die(n);
    }
    return q;
}

char *xstrdup(const char *s)
{
    return xmemdup(s, strlen(s) + 1);
}

char *xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void *xmemdup(const void *p, size_t n)
{
    void *q = xmalloc(n);
    if (n) {
        memcpy(q, p, n);
    }
    return q;
}

void *xgrow(void *p, size_t size, size_t need, size_t *cap)
{
    if (need <= *cap) {
        return p;
    }
    size_t ncap = *cap ? *cap : 8;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            oom_die(SIZE_MAX);
        }
        ncap *= 2;
    }
    if (ncap > SIZE_MAX / size) {
        oom_die(SIZE_MAX);
    }
    *cap = ncap;
    return xrealloc(p, ncap * size);
}

void xfree(void *p)
{
    free(p);
}

void xfree_secret(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        xfree(s);
    }
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return xmalloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return xrealloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

void mem_install(void)
{
    /* Fails only once OpenSSL has already allocated; then its own malloc stays in use. */
    (void)CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free);
    json_set_alloc_funcs(xmalloc, free);
}
