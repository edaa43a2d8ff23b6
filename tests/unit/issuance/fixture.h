/*
 * What the issuance tests share: a data directory with one CA, a configuration pointing at it
 * and at a Redis database of the test's own (emptied, its index marked complete), and CSRs.
 */
#ifndef TESTS_UNIT_ISSUANCE_FIXTURE_H
#define TESTS_UNIT_ISSUANCE_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/conf.h"
#include "core/err.h"
#include "store/store.h"

struct fixture {
    char dir[512];
    struct conf *conf;
    struct store *store;
};

/* CA "root" (EC P-256) in TMP/name, Redis database db; TT_SKIP without a test Redis, -1 on a
 * failure (e says why), 0 when set up. */
int fixture_open(struct fixture *f, const char *name, int db, struct err *e);
void fixture_close(struct fixture *f);
/* A P-256 CSR (DER) for commonName cn, appended to out. */
void fixture_csr(const char *cn, struct buf *out);
/* How many times needle occurs in the audit log (one per record for a "type" field). */
size_t fixture_audit_count(const struct fixture *f, const char *needle);

#endif
