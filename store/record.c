/*
 * The index's formats as its readers see them, without Redis: the keys of the families other
 * modules address themselves (cert:, fp:) and the typed issuance record (store.h, "Index
 * records"). store.c reads the hash; this file gives it a shape.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/util.h"
#include "store/store.h"

static bool key_build(char *out, size_t cap, const char *family, const char *id)
{
    int n = snprintf(out, cap, STORE_PREFIX "%s%s", family, id);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0) {
            out[0] = '\0';
        }
        return false;
    }
    return true;
}

bool store_key_cert(char *out, size_t cap, const char *serial)
{
    return key_build(out, cap, STORE_KEY_CERT, serial);
}

bool store_key_fp(char *out, size_t cap, const char *fingerprint)
{
    return key_build(out, cap, STORE_KEY_FP, fingerprint);
}

/* The string fields every reader knows, by name, and where they go. */
static const struct {
    const char *name;
    size_t off;
} rec_fields[] = {
    { "ca", offsetof(struct store_cert_rec, ca) },
    { "cn", offsetof(struct store_cert_rec, cn) },
    { "der", offsetof(struct store_cert_rec, der_b64) },
    { "fingerprint", offsetof(struct store_cert_rec, fingerprint) },
    { "issued_at", offsetof(struct store_cert_rec, issued_at) },
    { "not_after", offsetof(struct store_cert_rec, not_after) },
    { "not_before", offsetof(struct store_cert_rec, not_before) },
    { "profile", offsetof(struct store_cert_rec, profile) },
    { "reason", offsetof(struct store_cert_rec, reason) },
    { "renews", offsetof(struct store_cert_rec, renews) },
    { "requester", offsetof(struct store_cert_rec, requester) },
    { "revoked_at", offsetof(struct store_cert_rec, revoked_at) },
    { "serial", offsetof(struct store_cert_rec, serial) },
    { "status", offsetof(struct store_cert_rec, status) },
    { "subject", offsetof(struct store_cert_rec, subject) },
    { "superseded_by", offsetof(struct store_cert_rec, superseded_by) },
};

static int cmp_field(const void *a, const void *b)
{
    return strcmp(((const struct store_field *)a)->name, ((const struct store_field *)b)->name);
}

static uint64_t u64_or_zero(const char *s)
{
    uint64_t v = 0;
    return s != NULL && str_to_u64(s, &v) == 0 ? v : 0;
}

void store_cert_rec_parse(struct store_cert_rec *out, const char *const *kv, const size_t *kvlen,
                          size_t n)
{
    size_t total = 0, npairs = n / 2;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < 2 * npairs; i++) {
        total += kvlen[i] + 1;
    }
    out->mem_ = xmalloc(total ? total : 1);
    out->fields = xcalloc(npairs ? npairs : 1, sizeof(*out->fields));
    char *w = out->mem_;
    for (size_t i = 0; i < npairs; i++) {
        struct store_field *f = &out->fields[out->nfields++];
        memcpy(w, kv[2 * i], kvlen[2 * i]);
        w[kvlen[2 * i]] = '\0';
        f->name = w;
        w += kvlen[2 * i] + 1;
        memcpy(w, kv[2 * i + 1], kvlen[2 * i + 1]);
        w[kvlen[2 * i + 1]] = '\0';
        f->value = w;
        f->len = kvlen[2 * i + 1];
        w += kvlen[2 * i + 1] + 1;
    }
    qsort(out->fields, out->nfields, sizeof(*out->fields), cmp_field);
    for (size_t k = 0; k < ARRAY_LEN(rec_fields); k++) {
        const char *v = store_cert_rec_field(out, rec_fields[k].name);
        *(const char **)((char *)out + rec_fields[k].off) = v ? v : "";
    }
    out->seq = u64_or_zero(store_cert_rec_field(out, "seq"));
    out->revoke_seq = u64_or_zero(store_cert_rec_field(out, "revoke_seq"));
}

const char *store_cert_rec_field(const struct store_cert_rec *r, const char *name)
{
    struct store_field key = { .name = name };
    const struct store_field *f =
        r->nfields ? bsearch(&key, r->fields, r->nfields, sizeof(key), cmp_field) : NULL;
    return f ? f->value : NULL;
}

bool store_cert_rec_valid(const struct store_cert_rec *r)
{
    return strcmp(r->status, "valid") == 0;
}

void store_cert_rec_release(struct store_cert_rec *r)
{
    xfree(r->fields);
    xfree(r->mem_);
    memset(r, 0, sizeof(*r));
}
