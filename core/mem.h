/*
 * The xmalloc family: allocation never fails, it aborts through one oom_die(). This deletes a
 * class of untested paths; every untrusted size is capped by its caller before it gets here.
 * mem_install() routes OpenSSL's and Jansson's allocations through the same family.
 */
#ifndef CORE_MEM_H
#define CORE_MEM_H

#include <stddef.h>

#include "core/compat.h"

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);
/* Grows an array to hold at least `need` items of `size` bytes; *cap is updated. */
void *xgrow(void *p, size_t size, size_t need, size_t *cap);
void xfree(void *p);
/* Overwrites a NUL-terminated secret (OPENSSL_cleanse) and frees it; NULL is fine. The string
 * counterpart of buf_release_secret. */
void xfree_secret(char *s);
ATTR_NORETURN void oom_die(size_t n);

/* Installs the family into OpenSSL and Jansson; call once at program start. */
void mem_install(void);

#endif
