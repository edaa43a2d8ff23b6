/*
 * The audit log on real files: format and hash (checked against an independent SHA-256 and
 * json_dumps), every kind of tampering named with its line, crash recovery, refusals, and
 * concurrent writers (forked processes and threads in one process) leaving a gapless chain.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"
#include "tests/harness/tt.h"

#define MAX_LINES 64

/* ---- helpers ---- */

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tt_tmpdir(), name);
}

static bool small_scale(void)
{
    const char *s = getenv("JITRCA_TEST_SCALE");
    return s && strcmp(s, "small") == 0;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static json_t *rec_n(const char *type, long long n)
{
    return json_pack("{s:s, s:I}", "type", type, "n", (json_int_t)n);
}

/* Writes a fresh log of count records {"type":"test","n":i}, one append each. */
static int make_log(const char *path, int count, struct err *e)
{
    struct audit_log *log = NULL;
    int rc = -1;
    unlink(path);
    char head[600];
    snprintf(head, sizeof(head), "%s.head", path);
    unlink(head);
    log = audit_open(path, e);
    if (log == NULL) {
        goto out;
    }
    for (int i = 1; i <= count; i++) {
        json_t *r = rec_n("test", i);
        uint64_t seq = 0;
        int arc = audit_append(log, &r, 1, &seq, e);
        json_decref(r);
        if (arc != 0 || seq != (uint64_t)i) {
            goto out;
        }
    }
    rc = 0;
out:
    audit_close(log);
    return rc;
}

struct lines {
    char *v[MAX_LINES];
    size_t n;
};

static void lines_release(struct lines *l)
{
    for (size_t i = 0; i < l->n; i++) {
        xfree(l->v[i]);
    }
    l->n = 0;
}

static int lines_read(const char *path, struct lines *l)
{
    struct buf b = BUF_INIT;
    struct err e = ERR_INIT;
    lines_release(l);
    if (file_read_all(path, 1 << 24, &b, &e) != 0) {
        return -1;
    }
    for (char *p = b.data, *nl; p && *p && l->n < MAX_LINES; p = nl + 1) {
        nl = strchr(p, '\n');
        if (nl == NULL) {
            break;
        }
        l->v[l->n++] = xstrndup(p, (size_t)(nl - p));
    }
    buf_release(&b);
    return 0;
}

/* Writes the lines back, each with a newline, except that the last one is cut to last_len
 * bytes without newline when last_len >= 0. */
static int lines_write(const char *path, const struct lines *l, long last_len)
{
    struct buf b = BUF_INIT;
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (i + 1 == l->n && last_len >= 0) {
            buf_add(&b, l->v[i], (size_t)last_len);
        } else {
            buf_addstr(&b, l->v[i]);
            buf_addch(&b, '\n');
        }
    }
    size_t w = fwrite(b.data, 1, b.len, f);
    int rc = fclose(f) == 0 && w == b.len ? 0 : -1;
    buf_release(&b);
    return rc;
}

static void lines_delete(struct lines *l, size_t idx)
{
    xfree(l->v[idx]);
    memmove(&l->v[idx], &l->v[idx + 1], (l->n - idx - 1) * sizeof(l->v[0]));
    l->n--;
}

static void lines_insert(struct lines *l, size_t idx, const char *text)
{
    memmove(&l->v[idx + 1], &l->v[idx], (l->n - idx) * sizeof(l->v[0]));
    l->v[idx] = xstrdup(text);
    l->n++;
}

/* Replaces the first `from` in line idx by `to`. */
static void lines_replace(struct lines *l, size_t idx, const char *from, const char *to)
{
    struct buf b = BUF_INIT;
    char *p = strstr(l->v[idx], from);
    BUG_ON(p == NULL);
    buf_add(&b, l->v[idx], (size_t)(p - l->v[idx]));
    buf_addstr(&b, to);
    buf_addstr(&b, p + strlen(from));
    xfree(l->v[idx]);
    l->v[idx] = buf_detach(&b, NULL);
}

/* SHA-256 hex of body + "}", computed independently of the module. */
static void test_hash(const char *body, size_t len, char out[65])
{
    struct buf b = BUF_INIT;
    uint8_t md[32];
    unsigned mdlen = 0;
    buf_add(&b, body, len);
    buf_addch(&b, '}');
    BUG_ON(EVP_Digest(b.data, b.len, md, &mdlen, EVP_sha256(), NULL) != 1);
    hex_encode(md, sizeof(md), out);
    buf_release(&b);
}

/* Recomputes line idx's hash after an edit, as a careful forger would. */
static void lines_rehash(struct lines *l, size_t idx)
{
    char *line = l->v[idx];
    size_t len = strlen(line);
    char h[65];
    test_hash(line, len - 75, h);
    memcpy(line + len - 66, h, 64);
}

/* ---- format ---- */

/* The line as an object without its hash member, when everything before that member is exactly
 * what json_dumps(COMPACT | SORT_KEYS) writes for that object; NULL otherwise. */
static json_t *line_jansson(const char *line)
{
    json_error_t jerr;
    size_t len = strlen(line);
    json_t *obj = json_loads(line, 0, &jerr);
    char *dump = NULL;
    bool same;
    if (obj == NULL) {
        return NULL;
    }
    json_object_del(obj, "hash");
    dump = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    /* the line ends with ,"hash":"<64 hex>"} : 75 bytes against the dump's closing } */
    same = dump != NULL && len > 75 && strlen(dump) == len - 74 &&
           strncmp(dump, line, len - 75) == 0;
    free(dump);
    if (!same) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static int test_append_and_format(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct audit_report rep;
    struct lines l = { { NULL }, 0 };
    struct buf head = BUF_INIT;
    char path[256], headpath[600], h[65], prev[65], want[200];
    json_t *recs[3] = { rec_n("a", 1), rec_n("b", 2), rec_n("c", 3) };
    json_t *obj = NULL;
    uint64_t seq = 99;
    struct stat st;

    memset(prev, '0', 64);
    prev[64] = '\0';
    path_in(path, sizeof(path), "fmt/sub/audit.log");
    snprintf(headpath, sizeof(headpath), "%s.head", path);
    log = audit_open(path, &e);
    CHECK(log != NULL);
    CHECK_INT_EQ(stat(path, &st), 0);
    CHECK_INT_EQ(st.st_mode & 0777, 0640);
    CHECK_INT_EQ(file_size(path), 0);
    CHECK_OK(audit_verify(path, true, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_OK);
    CHECK_INT_EQ(rep.records, 0);
    CHECK_STR_EQ(rep.message, "");

    CHECK_OK(audit_append(log, recs, 1, &seq, &e), &e);
    CHECK_INT_EQ(seq, 1);
    CHECK_OK(audit_append(log, recs, 3, &seq, &e), &e);
    CHECK_INT_EQ(seq, 2);
    CHECK_OK(audit_append(log, recs, 0, &seq, &e), &e);
    CHECK_INT_EQ(seq, 0);
    CHECK_INT_EQ(json_object_size(recs[0]), 2); /* borrowed, not modified */

    CHECK_INT_EQ(lines_read(path, &l), 0);
    CHECK_INT_EQ(l.n, 4);
    for (size_t i = 0; i < l.n; i++) {
        const char *line = l.v[i];
        size_t len = strlen(line);
        json_error_t jerr;
        json_decref(obj);
        obj = json_loads(line, 0, &jerr);
        CHECK(obj != NULL);
        CHECK_INT_EQ(json_integer_value(json_object_get(obj, "seq")), i + 1);
        CHECK_STR_EQ(json_string_value(json_object_get(obj, "prev")), prev);
        const char *ts = json_string_value(json_object_get(obj, "ts"));
        CHECK(ts != NULL && strlen(ts) == 24 && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z');
        /* the hash member is last and covers the bytes before it plus "}" */
        CHECK(len > 75 && strncmp(line + len - 75, ",\"hash\":\"", 9) == 0);
        test_hash(line, len - 75, h);
        CHECK_STR_EQ(json_string_value(json_object_get(obj, "hash")), h);
        /* those bytes are exactly json_dumps(compact, sorted) of the object without its hash */
        json_decref(obj);
        obj = line_jansson(line);
        CHECK(obj != NULL);
        memcpy(prev, h, sizeof(prev));
    }
    CHECK_STR_CONTAINS(l.v[0], "{\"n\":1,\"prev\":\"0000");
    CHECK_STR_CONTAINS(l.v[3], "\"type\":\"c\",\"hash\":\"");

    CHECK_OK(file_read_all(headpath, 4096, &head, &e), &e);
    /* a fixed 128-byte record, padded with spaces */
    snprintf(want, sizeof(want), "{\"seq\":4,\"hash\":\"%s\"}", prev);
    CHECK_INT_EQ(head.len, 128);
    CHECK(strncmp(head.data, want, strlen(want)) == 0);
    CHECK_INT_EQ(strspn(head.data + strlen(want), " "), 127 - strlen(want));
    CHECK_INT_EQ(head.data[127], '\n');

    CHECK_OK(audit_verify(path, true, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_OK);
    CHECK_INT_EQ(rep.records, 4);
out:
    for (size_t i = 0; i < ARRAY_LEN(recs); i++) {
        json_decref(recs[i]);
    }
    json_decref(obj);
    lines_release(&l);
    buf_release(&head);
    audit_close(log);
    return rc;
}

/* Keys that sort around "prev", "seq" and "ts", escapes, nested objects: the line must still be
 * json_dumps() of the merged object, byte for byte. */
static int test_encoding_matches_jansson(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct lines l = { { NULL }, 0 };
    char path[256];
    json_t *rec = NULL, *obj = NULL, *empty = json_object();
    uint64_t seq = 0;

    rec =
        json_pack("{s:s, s:i, s:s, s:s, s:i, s:b, s:n, s:f, s:{s:i, s:[i, f, n, b, s]}, s:s}",
                  "type", "issue", "AAA", 1, "pr", "x", "serial", "0a1b", "sep", 2, "tt", 1, "zeta",
                  "t", 2.5, "nested", "b", 1, "a", 1, 0.1, 0, "x/y\u2028", "prevx", "\"q\"\\");
    CHECK(rec != NULL);
    json_object_set_new(rec, "key\"with\\escapes\n\x01\x1f", json_string("ctl\x01"));
    json_object_set_new(rec, "\xc3\xbcn\xc3\xaf", json_integer(-5));
    json_object_set_new(rec, "s", json_string("between prev and seq"));
    json_object_set_new(rec, "sz", json_string("between seq and ts"));
    for (int i = 0; i < 40; i++) { /* more members than the encoder keeps on its stack */
        char k[16];
        snprintf(k, sizeof(k), "k%02d", i);
        json_object_set_new(rec, k, json_integer(i));
    }
    path_in(path, sizeof(path), "enc.log");
    log = audit_open(path, &e);
    CHECK(log != NULL);
    CHECK_OK(audit_append(log, &rec, 1, &seq, &e), &e);
    CHECK_OK(audit_append(log, &empty, 1, &seq, &e), &e);
    CHECK_INT_EQ(seq, 2);
    CHECK_INT_EQ(lines_read(path, &l), 0);
    CHECK_INT_EQ(l.n, 2);
    for (size_t i = 0; i < l.n; i++) {
        json_decref(obj);
        obj = line_jansson(l.v[i]);
        CHECK(obj != NULL);
    }
    CHECK_STR_CONTAINS(l.v[1], "{\"prev\":\"");
    CHECK_INT_EQ(json_object_size(rec), 54);
out:
    json_decref(rec);
    json_decref(obj);
    json_decref(empty);
    lines_release(&l);
    audit_close(log);
    return rc;
}

/* Records built with audit_batch_* are the lines Jansson's encoder would write: each line
 * minus its hash equals json_dumps(COMPACT | SORT_KEYS) of itself, and carries the values given. */
static int test_batch_builder(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct audit_batch b = AUDIT_BATCH_INIT;
    struct lines l = { { NULL }, 0 };
    char path[256];
    json_t *obj = NULL;
    char *blob = NULL;
    uint64_t seq = 0;
    off_t before = 0;
    static const char tricky[] = "q\"b\\s/\x01\x1f\b\f\n\r\t\x7f \xc3\xbc \xe2\x80\xa8 "
                                 "\xf0\x9f\x94\x91 end";

    path_in(path, sizeof(path), "builder.log");
    log = audit_open(path, &e);
    CHECK(log != NULL);
    /* keys in every segment: before "prev", between "prev" and "seq", "seq" and "ts", after */
    audit_batch_begin(&b);
    audit_batch_str(&b, "a", tricky);
    audit_batch_str(&b, "n", "");
    audit_batch_str(&b, "pr", "");
    audit_batch_str(&b, "r", "x");
    audit_batch_str(&b, "sz", "y");
    audit_batch_str(&b, "type", "t");
    audit_batch_end(&b);
    audit_batch_begin(&b); /* an empty record */
    audit_batch_end(&b);
    audit_batch_begin(&b); /* only after "ts" */
    audit_batch_str(&b, "zz", tricky);
    audit_batch_end(&b);
    CHECK_OK(audit_append_batch(log, &b, &seq, &e), &e);
    CHECK_INT_EQ(seq, 1);
    audit_batch_reset(&b);
    CHECK_OK(audit_append_batch(log, &b, &seq, &e), &e); /* nothing */
    CHECK_INT_EQ(seq, 0);
    audit_batch_begin(&b);
    audit_batch_str(&b, "type", "again");
    audit_batch_end(&b);
    CHECK_OK(audit_append_batch(log, &b, &seq, &e), &e);
    CHECK_INT_EQ(seq, 4);

    CHECK_INT_EQ(lines_read(path, &l), 0);
    CHECK_INT_EQ(l.n, 4);
    for (size_t i = 0; i < l.n; i++) {
        json_decref(obj);
        obj = line_jansson(l.v[i]);
        CHECK(obj != NULL);
        if (i == 0) {
            CHECK_STR_EQ(json_string_value(json_object_get(obj, "a")), tricky);
            CHECK_STR_EQ(json_string_value(json_object_get(obj, "n")), "");
            CHECK_STR_EQ(json_string_value(json_object_get(obj, "sz")), "y");
            CHECK_INT_EQ(json_object_size(obj), 9);
        } else if (i == 1) {
            CHECK_INT_EQ(json_object_size(obj), 3);
        } else if (i == 2) {
            CHECK_STR_EQ(json_string_value(json_object_get(obj, "zz")), tricky);
        } else {
            CHECK_STR_EQ(json_string_value(json_object_get(obj, "type")), "again");
        }
    }

    /* a value that is not UTF-8: the whole batch is refused, nothing written */
    before = file_size(path);
    audit_batch_reset(&b);
    audit_batch_begin(&b);
    audit_batch_str(&b, "type", "fine");
    audit_batch_end(&b);
    audit_batch_begin(&b);
    audit_batch_str(&b, "subject", "CN=\xc3(");
    audit_batch_str(&b, "type", "x");
    audit_batch_end(&b);
    err_clear(&e);
    CHECK_INT_EQ(audit_append_batch(log, &b, &seq, &e), -1);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_EQ(e.msg, "audit record 2 of 2: \"subject\" is not UTF-8");
    CHECK_INT_EQ(file_size(path), before);

    blob = xmalloc((1u << 20) + 1);
    memset(blob, 'x', 1u << 20);
    blob[1u << 20] = '\0';
    audit_batch_reset(&b);
    audit_batch_begin(&b);
    audit_batch_str(&b, "blob", blob);
    audit_batch_end(&b);
    err_clear(&e);
    CHECK_INT_EQ(audit_append_batch(log, &b, &seq, &e), -1);
    CHECK_INT_EQ(e.code, ERRC_TOO_LARGE);
    CHECK_STR_EQ(e.msg, "audit record 1 of 1 is larger than 1048576 bytes");
    CHECK_INT_EQ(file_size(path), before);

    audit_batch_reset(&b); /* reusable after a refusal */
    audit_batch_begin(&b);
    audit_batch_text(&b, "reason", "CN 'x\xc3(\xff' refused"); /* lossy: recorded, not refused */
    audit_batch_str(&b, "type", "after");
    audit_batch_end(&b);
    CHECK_OK(audit_append_batch(log, &b, &seq, &e), &e);
    CHECK_INT_EQ(seq, 5);
    lines_release(&l);
    CHECK_INT_EQ(lines_read(path, &l), 0);
    CHECK_INT_EQ(l.n, 5);
    json_decref(obj);
    obj = line_jansson(l.v[4]);
    CHECK(obj != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(obj, "reason")),
                 "CN 'x\xef\xbf\xbd(\xef\xbf\xbd' refused");
out:
    xfree(blob);
    json_decref(obj);
    lines_release(&l);
    audit_batch_release(&b);
    audit_close(log);
    return rc;
}

/* ---- bad input ---- */

static int test_bad_records_refused(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    char path[256], want[200];
    static const char *const reserved[] = { "seq", "ts", "prev", "hash" };
    json_t *good = rec_n("ok", 1), *bad = NULL, *big = NULL;
    json_t *batch[2];
    uint64_t seq = 77;
    struct audit_stats st;
    char *blob = NULL;

    path_in(path, sizeof(path), "bad.log");
    log = audit_open(path, &e);
    CHECK(log != NULL);
    for (size_t i = 0; i < ARRAY_LEN(reserved); i++) {
        json_decref(bad);
        bad = rec_n("bad", 2);
        json_object_set_new(bad, reserved[i], json_integer(5));
        batch[0] = good;
        batch[1] = bad;
        err_clear(&e);
        CHECK_INT_EQ(audit_append(log, batch, 2, &seq, &e), -1);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        snprintf(want, sizeof(want),
                 "audit record 2 of 2: \"%s\" is reserved (the audit log sets it)", reserved[i]);
        CHECK_STR_EQ(e.msg, want);
        CHECK_INT_EQ(file_size(path), 0); /* the good record of the batch was not written */
    }
    json_decref(bad);
    bad = json_string("not an object");
    err_clear(&e);
    CHECK_INT_EQ(audit_append(log, &bad, 1, &seq, &e), -1);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_EQ(e.msg, "audit record 1 of 1 is not a JSON object");

    json_decref(bad);
    bad = json_object();
    json_object_setn_new(bad, "a\0b", 3, json_true());
    err_clear(&e);
    CHECK_INT_EQ(audit_append(log, &bad, 1, &seq, &e), -1);
    CHECK_STR_EQ(e.msg, "audit record 1 of 1 has a key with a NUL byte");

    blob = xmalloc((1u << 20) + 1);
    memset(blob, 'x', 1u << 20);
    blob[1u << 20] = '\0';
    big = json_pack("{s:s}", "blob", blob);
    err_clear(&e);
    CHECK_INT_EQ(audit_append(log, &big, 1, &seq, &e), -1);
    CHECK_INT_EQ(e.code, ERRC_TOO_LARGE);
    CHECK_STR_EQ(e.msg, "audit record 1 of 1 is larger than 1048576 bytes");

    CHECK_INT_EQ(file_size(path), 0);
    CHECK_INT_EQ(seq, 77);
    audit_get_stats(log, &st);
    CHECK_INT_EQ(st.commits, 0);
    CHECK_OK(audit_append(log, &good, 1, &seq, &e), &e); /* the log still works */
    CHECK_INT_EQ(seq, 1);
out:
    json_decref(good);
    json_decref(bad);
    json_decref(big);
    xfree(blob);
    audit_close(log);
    return rc;
}

static int test_open_errors(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct audit_report rep;
    char path[256], file[200];

    path_in(file, sizeof(file), "plainfile");
    CHECK_INT_EQ(tt_sh("echo x > '%s'", file), 0);
    snprintf(path, sizeof(path), "%s/audit.log", file);
    log = audit_open(path, &e);
    CHECK(log == NULL);
    CHECK_STR_CONTAINS(e.msg, "cannot open audit log '");
    CHECK_STR_CONTAINS(e.msg, "Not a directory");

    path_in(path, sizeof(path), "adir");
    CHECK_INT_EQ(mkdir(path, 0700), 0);
    err_clear(&e);
    log = audit_open(path, &e);
    CHECK(log == NULL);
    CHECK_STR_CONTAINS(e.msg, "cannot open audit log '");
    CHECK_STR_CONTAINS(e.msg, "Is a directory");

    path_in(path, sizeof(path), "missing.log");
    err_clear(&e);
    CHECK_INT_EQ(audit_verify(path, true, &rep, &e), -1);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
    CHECK_STR_CONTAINS(e.msg, "cannot open audit log '");
    CHECK(!file_exists(path));
out:
    audit_close(log);
    return rc;
}

/* ---- tampering ---- */

enum mut_kind {
    M_EDIT,      /* change a value in line a */
    M_REHASH,    /* change a value in line a and fix its hash */
    M_DELETE,    /* delete lines a..b */
    M_SWAP,      /* swap lines a and b */
    M_DUP,       /* repeat line a after itself */
    M_CUT_MID,   /* cut the last line in the middle */
    M_CUT_END,   /* remove the last a lines */
    M_GARBAGE,   /* insert text as line a */
    M_HASHNAME,  /* rename the hash member of line a */
    M_HEAD_HASH, /* rewrite the head file with another hash */
    M_HEAD_BAD,  /* a head file that is not a head */
};

struct tamper_case {
    const char *name;
    enum mut_kind kind;
    size_t a, b;
    const char *text;
    enum audit_problem problem;
    uint64_t line;
    const char *message; /* exact, or a prefix when prefix is set */
    bool prefix;
    const char *foreach_msg; /* what audit_foreach says, after "audit log 'PATH': " */
};

static const struct tamper_case tamper_cases[] = {
    { "edit a field", M_EDIT, 7, 0, NULL, AUDIT_EDITED, 7,
      "line 7: edited (hash does not match its content)", false,
      "line 7: edited (hash does not match its content)" },
    { "edit and rehash", M_REHASH, 7, 0, NULL, AUDIT_EDITED, 8,
      "line 8: chain broken (prev does not match the hash of line 7, which was rewritten)", false,
      "line 8: chain broken (prev does not match the hash of line 7, which was rewritten)" },
    { "edit the first line and rehash", M_REHASH, 1, 0, NULL, AUDIT_EDITED, 2,
      "line 2: chain broken (prev does not match the hash of line 1, which was rewritten)", false,
      NULL },
    { "delete a line", M_DELETE, 10, 10, NULL, AUDIT_REMOVED, 10,
      "line 10: 1 record missing before seq 11", false, "line 10: 1 record missing before seq 11" },
    { "delete two lines", M_DELETE, 17, 18, NULL, AUDIT_REMOVED, 17,
      "line 17: 2 records missing before seq 19", false, NULL },
    { "delete the first line", M_DELETE, 1, 1, NULL, AUDIT_REMOVED, 1,
      "line 1: 1 record missing before seq 2", false, NULL },
    { "swap two lines", M_SWAP, 5, 6, NULL, AUDIT_REORDERED, 6,
      "line 6: out of order (seq 5 after 6)", false, "line 5: 1 record missing before seq 6" },
    { "move a line back", M_SWAP, 16, 18, NULL, AUDIT_REORDERED, 17,
      "line 17: out of order (seq 17 after 18)", false, NULL },
    { "duplicate a line", M_DUP, 4, 0, NULL, AUDIT_REORDERED, 5, "line 5: duplicate (seq 4 again)",
      false, NULL },
    { "truncate mid-line", M_CUT_MID, 0, 0, NULL, AUDIT_TRUNCATED, 20,
      "line 20: truncated (incomplete last line)", false, NULL },
    { "truncate whole lines", M_CUT_END, 2, 0, NULL, AUDIT_TRUNCATED, 19,
      "log ends at seq 18 but the head file records seq 20: lines were removed from the end", false,
      NULL },
    { "garbage line", M_GARBAGE, 3, 0, "hello", AUDIT_MALFORMED, 3,
      "line 3: malformed (not JSON: ", true, "line 3: malformed (not JSON: " },
    { "empty line", M_GARBAGE, 3, 0, "", AUDIT_MALFORMED, 3, "line 3: malformed (empty line)",
      false, NULL },
    { "not an object", M_GARBAGE, 3, 0, "[1,2]", AUDIT_MALFORMED, 3,
      "line 3: malformed (not a JSON object)", false, NULL },
    { "no seq", M_GARBAGE, 3, 0, "{\"a\":1}", AUDIT_MALFORMED, 3,
      "line 3: malformed (\"seq\" is missing or not a positive integer)", false, NULL },
    { "hash renamed", M_HASHNAME, 4, 0, NULL, AUDIT_MALFORMED, 4,
      "line 4: malformed (\"hash\" is missing or not 64 lowercase hex digits)", false, NULL },
    { "head hash rewritten", M_HEAD_HASH, 0, 0, NULL, AUDIT_EDITED, 20,
      "line 20: the head file records another hash for seq 20 (the log was rewritten)", false,
      NULL },
    { "head file garbage", M_HEAD_BAD, 0, 0, NULL, AUDIT_MALFORMED, 0, "head file '", true, NULL },
};

static int apply_mutation(const struct tamper_case *tc, const char *path, struct lines *l)
{
    char headpath[600], *tmp;
    snprintf(headpath, sizeof(headpath), "%s.head", path);
    switch (tc->kind) {
    case M_EDIT:
    case M_REHASH: {
        char from[32], to[32];
        snprintf(from, sizeof(from), "\"n\":%zu,", tc->a);
        snprintf(to, sizeof(to), "\"n\":%zu0,", tc->a);
        lines_replace(l, tc->a - 1, from, to);
        if (tc->kind == M_REHASH) {
            lines_rehash(l, tc->a - 1);
        }
        break;
    }
    case M_DELETE:
        for (size_t i = tc->a; i <= tc->b; i++) {
            lines_delete(l, tc->a - 1);
        }
        break;
    case M_SWAP:
        tmp = l->v[tc->a - 1];
        l->v[tc->a - 1] = l->v[tc->b - 1];
        l->v[tc->b - 1] = tmp;
        break;
    case M_DUP:
        lines_insert(l, tc->a, l->v[tc->a - 1]);
        break;
    case M_CUT_MID:
        return lines_write(path, l, (long)strlen(l->v[l->n - 1]) / 2);
    case M_CUT_END:
        for (size_t i = 0; i < tc->a; i++) {
            lines_delete(l, l->n - 1);
        }
        break;
    case M_GARBAGE:
        lines_insert(l, tc->a - 1, tc->text);
        break;
    case M_HASHNAME:
        lines_replace(l, tc->a - 1, ",\"hash\":", ",\"hasx\":");
        break;
    case M_HEAD_HASH: {
        char h[65];
        memset(h, 'a', 64);
        h[64] = '\0';
        if (tt_sh("printf '{\"seq\":20,\"hash\":\"%s\"}' > '%s'", h, headpath) != 0) {
            return -1;
        }
        break;
    }
    case M_HEAD_BAD:
        if (tt_sh("printf 'oops' > '%s'", headpath) != 0) {
            return -1;
        }
        break;
    }
    return lines_write(path, l, -1);
}

static int count_fn(void *arg, json_t *rec, uint64_t line)
{
    (void)rec;
    (void)line;
    ++*(uint64_t *)arg;
    return 0;
}

static int test_tampering(void)
{
    uint64_t count = 0;
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_report rep;
    struct lines l = { { NULL }, 0 };
    char path[256], want[1024];
    const struct tamper_case *tc = NULL;

    memset(&rep, 0, sizeof(rep));
    path_in(path, sizeof(path), "tamper.log");
    for (size_t i = 0; i < ARRAY_LEN(tamper_cases); i++) {
        tc = &tamper_cases[i];
        fprintf(stderr, "   case: %s\n", tc->name);
        lines_release(&l);
        CHECK_OK(make_log(path, 20, &e), &e);
        CHECK_INT_EQ(lines_read(path, &l), 0);
        CHECK_INT_EQ(l.n, 20);
        CHECK_INT_EQ(apply_mutation(tc, path, &l), 0);
        CHECK_OK(audit_verify(path, true, &rep, &e), &e);
        CHECK_INT_EQ(rep.problem, tc->problem);
        CHECK_INT_EQ(rep.line, tc->line);
        if (tc->prefix) {
            CHECK(strncmp(rep.message, tc->message, strlen(tc->message)) == 0);
        } else {
            CHECK_STR_EQ(rep.message, tc->message);
        }
        if (tc->foreach_msg) {
            err_clear(&e);
            CHECK_INT_EQ(audit_foreach(path, NULL, NULL, &e), -1);
            CHECK_INT_EQ(e.code, ERRC_INVALID);
            snprintf(want, sizeof(want), "audit log '%s': %s", path, tc->foreach_msg);
            if (tc->prefix) {
                CHECK(strncmp(e.msg, want, strlen(want)) == 0);
            } else {
                CHECK_STR_EQ(e.msg, want);
            }
        }
    }
    tc = NULL;
    /* replay skips a crash's incomplete last line: those records were never acknowledged */
    CHECK_OK(make_log(path, 20, &e), &e);
    CHECK_INT_EQ(lines_read(path, &l), 0);
    CHECK_INT_EQ(lines_write(path, &l, 40), 0);
    CHECK_OK(audit_foreach(path, count_fn, &count, &e), &e);
    CHECK_INT_EQ(count, 19);
    /* without the head file check, whole-line truncation at the end is invisible */
    CHECK_OK(make_log(path, 20, &e), &e);
    CHECK_INT_EQ(lines_read(path, &l), 0);
    lines_delete(&l, 19);
    CHECK_INT_EQ(lines_write(path, &l, -1), 0);
    CHECK_OK(audit_verify(path, false, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_OK);
    CHECK_INT_EQ(rep.records, 19);
out:
    if (rc && tc) {
        fprintf(stderr, "   in case '%s': got problem %d line %" PRIu64 " \"%s\"\n", tc->name,
                (int)rep.problem, rep.line, rep.message);
    }
    lines_release(&l);
    return rc;
}

/* A writer refuses to chain onto a damaged end or a log shorter than its head file. */
static int test_writer_refuses_damaged_tail(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct lines l = { { NULL }, 0 };
    char path[256], want[1024];
    json_t *r = rec_n("after", 1);
    uint64_t seq = 0;
    off_t size;

    path_in(path, sizeof(path), "refuse.log");
    CHECK_OK(make_log(path, 5, &e), &e);
    CHECK_INT_EQ(lines_read(path, &l), 0);
    lines_replace(&l, 4, "\"n\":5", "\"n\":6");
    CHECK_INT_EQ(lines_write(path, &l, -1), 0);
    size = file_size(path);
    log = audit_open(path, &e);
    CHECK(log != NULL);
    CHECK_INT_EQ(audit_append(log, &r, 1, &seq, &e), -1);
    CHECK_INT_EQ(e.code, ERRC_INTERNAL);
    snprintf(want, sizeof(want),
             "audit log '%s' ends with a damaged record (edited (hash does not match its "
             "content)); refusing to append until it is repaired (see audit verify)",
             path);
    CHECK_STR_EQ(e.msg, want);
    CHECK_INT_EQ(file_size(path), size);
    audit_close(log);
    log = NULL;

    CHECK_OK(make_log(path, 5, &e), &e);
    CHECK_INT_EQ(lines_read(path, &l), 0);
    lines_delete(&l, 4);
    CHECK_INT_EQ(lines_write(path, &l, -1), 0);
    size = file_size(path);
    log = audit_open(path, &e);
    CHECK(log != NULL);
    err_clear(&e);
    CHECK_INT_EQ(audit_append(log, &r, 1, &seq, &e), -1);
    CHECK_INT_EQ(e.code, ERRC_INTERNAL);
    snprintf(want, sizeof(want),
             "audit log '%s' ends at seq 4 but its head file records seq 5: lines were removed "
             "from the end; refusing to append until it is repaired (see audit verify)",
             path);
    CHECK_STR_EQ(e.msg, want);
    CHECK_INT_EQ(file_size(path), size);
out:
    json_decref(r);
    lines_release(&l);
    audit_close(log);
    return rc;
}

/* ---- crash recovery ---- */

static int test_crash_recovery(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct audit_report rep;
    struct lines l = { { NULL }, 0 }, full = { { NULL }, 0 };
    char path[256], path2[256];
    json_t *r = rec_n("after", 1);
    uint64_t seq = 0;

    /* a writer died mid-line while our handle had the tail cached */
    path_in(path, sizeof(path), "crash.log");
    log = audit_open(path, &e);
    CHECK(log != NULL);
    for (int i = 0; i < 5; i++) {
        CHECK_OK(audit_append(log, &r, 1, &seq, &e), &e);
    }
    CHECK_INT_EQ(tt_sh("printf '{\"n\":6,\"prev\":\"12' >> '%s'", path), 0);
    CHECK_OK(audit_verify(path, true, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_TRUNCATED);
    CHECK_STR_EQ(rep.message, "line 6: truncated (incomplete last line)");
    CHECK_OK(audit_append(log, &r, 1, &seq, &e), &e);
    CHECK_INT_EQ(seq, 6);
    CHECK_OK(audit_verify(path, true, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_OK);
    CHECK_INT_EQ(rep.records, 6);
    audit_close(log);
    log = NULL;

    /* a batch died after one full line and half of the next: a fresh writer continues */
    CHECK_INT_EQ(lines_read(path, &full), 0);
    CHECK_INT_EQ(full.n, 6);
    path_in(path2, sizeof(path2), "crash2.log");
    for (size_t i = 0; i < 6; i++) {
        l.v[l.n++] = xstrdup(full.v[i]);
    }
    CHECK_INT_EQ(lines_write(path2, &l, 30), 0);
    log = audit_open(path2, &e);
    CHECK(log != NULL);
    CHECK_OK(audit_append(log, &r, 1, &seq, &e), &e);
    CHECK_INT_EQ(seq, 6);
    CHECK_OK(audit_verify(path2, false, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_OK);
    CHECK_INT_EQ(rep.records, 6);
    lines_release(&l);
    CHECK_INT_EQ(lines_read(path2, &l), 0);
    CHECK_STR_EQ(l.v[4], full.v[4]);
    CHECK(strstr(l.v[5], "\"seq\":6,") != NULL);
out:
    json_decref(r);
    lines_release(&l);
    lines_release(&full);
    audit_close(log);
    return rc;
}

/* Writes PATH.head as a writer does: {"seq":N,"hash":"..."} padded to 128 bytes. */
static int head_write_as(const char *path, uint64_t seq, const char *hash)
{
    char head[600], text[129];
    snprintf(head, sizeof(head), "%s.head", path);
    int n = snprintf(text, sizeof(text), "{\"seq\":%" PRIu64 ",\"hash\":\"%s\"}", seq, hash);
    memset(text + n, ' ', 127 - (size_t)n);
    text[127] = '\n';
    text[128] = '\0';
    FILE *f = fopen(head, "w");
    if (f == NULL) {
        return -1;
    }
    size_t w = fwrite(text, 1, 128, f);
    return fclose(f) == 0 && w == 128 ? 0 : -1;
}

static void hash_of(const char *line, char out[65])
{
    const char *h = strstr(line, "\"hash\":\"");
    snprintf(out, 65, "%.64s", h ? h + 8 : "");
}

/* A torn last line is cut only when it lies beyond every acknowledged record (the head file's
 * seq): after the head's record, or after a lagging head (a power loss); the health check calls
 * such a log fine (the next append cuts it), and the cut is counted. */
static int test_torn_unacknowledged_cut(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct audit_report rep;
    struct audit_stats st;
    struct lines l = { { NULL }, 0 };
    char path[256], h3[65];
    char **q = NULL;
    size_t nq = 0;
    json_t *r = rec_n("after", 1);
    uint64_t seq = 0;

    path_in(path, sizeof(path), "torn-unacked.log");
    CHECK_OK(make_log(path, 5, &e), &e);
    CHECK_INT_EQ(tt_sh("printf '{\"n\":6,\"prev\":\"12' >> '%s'", path), 0);
    CHECK_OK(audit_tail_check(path, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_OK);
    log = audit_open(path, &e);
    CHECK(log != NULL);
    CHECK_OK(audit_append(log, &r, 1, &seq, &e), &e);
    CHECK_INT_EQ(seq, 6);
    audit_get_stats(log, &st);
    CHECK_INT_EQ(st.torn_cut, 1);
    CHECK_INT_EQ(st.quarantined, 0);
    audit_close(log);
    log = NULL;
    CHECK_OK(audit_verify(path, true, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_OK);
    CHECK_INT_EQ(rep.records, 6);

    /* the head lags (its update did not reach the disk before a power loss): records 4 and 5
     * are complete, fdatasync'd, and the torn line after them is still beyond the head */
    CHECK_OK(make_log(path, 5, &e), &e);
    CHECK_INT_EQ(lines_read(path, &l), 0);
    hash_of(l.v[2], h3);
    CHECK_INT_EQ(head_write_as(path, 3, h3), 0);
    CHECK_INT_EQ(tt_sh("printf '{\"n\":6' >> '%s'", path), 0);
    log = audit_open(path, &e);
    CHECK(log != NULL);
    CHECK_OK(audit_append(log, &r, 1, &seq, &e), &e);
    CHECK_INT_EQ(seq, 6);
    CHECK_OK(audit_quarantine_list(path, &q, &nq, &e), &e);
    CHECK_INT_EQ(nq, 0);
out:
    for (size_t i = 0; i < nq; i++) {
        xfree(q[i]);
    }
    xfree(q);
    json_decref(r);
    lines_release(&l);
    audit_close(log);
    return rc;
}

/* Bytes cut off an acknowledged record are never deleted: the writer moves them to a quarantine
 * file next to the log (named with the time), counts it, and refuses to append, as it does on
 * every later attempt (without a second quarantine); the health check and verify say so. */
static int test_torn_acknowledged_quarantined(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct audit_report rep;
    struct audit_stats st;
    struct lines l = { { NULL }, 0 };
    struct buf qdata = BUF_INIT;
    char path[256];
    char **q = NULL;
    size_t nq = 0;
    json_t *r = rec_n("after", 1);
    uint64_t seq = 0;
    off_t size;

    path_in(path, sizeof(path), "torn-acked.log");
    CHECK_INT_EQ(tt_sh("rm -f '%s'.quarantine.*", path), 0);
    CHECK_OK(make_log(path, 5, &e), &e);
    CHECK_INT_EQ(lines_read(path, &l), 0);
    size = file_size(path);
    CHECK_INT_EQ(truncate(path, size - 40), 0); /* record 5 (acknowledged) loses 40 bytes */
    CHECK_OK(audit_tail_check(path, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_TRUNCATED);
    CHECK_STR_CONTAINS(rep.message, "an acknowledged record was cut");
    CHECK(strstr(rep.message, path) == NULL);
    log = audit_open(path, &e);
    CHECK(log != NULL);
    CHECK_INT_EQ(audit_append(log, &r, 1, &seq, &e), -1);
    CHECK_INT_EQ(e.code, ERRC_INTERNAL);
    CHECK_STR_CONTAINS(e.msg, "an acknowledged record was cut");
    CHECK_STR_CONTAINS(e.msg, ".quarantine.");
    CHECK_OK(audit_quarantine_list(path, &q, &nq, &e), &e);
    CHECK_INT_EQ(nq, 1);
    /* the quarantine holds exactly the bytes that were left of record 5 */
    CHECK_OK(file_read_all(q[0], 1 << 20, &qdata, &e), &e);
    CHECK_INT_EQ(qdata.len, strlen(l.v[4]) + 1 - 40);
    CHECK(memcmp(qdata.data, l.v[4], qdata.len) == 0);
    CHECK_INT_EQ(file_size(path), size - (off_t)strlen(l.v[4]) - 1);
    /* refused again, nothing more moved */
    err_clear(&e);
    CHECK_INT_EQ(audit_append(log, &r, 1, &seq, &e), -1);
    CHECK_STR_CONTAINS(e.msg, "ends at seq 4 but its head file records seq 5");
    audit_get_stats(log, &st);
    CHECK_INT_EQ(st.quarantined, 1);
    CHECK_INT_EQ(st.torn_cut, 0);
    for (size_t i = 0; i < nq; i++) {
        xfree(q[i]);
    }
    xfree(q);
    q = NULL;
    CHECK_OK(audit_quarantine_list(path, &q, &nq, &e), &e);
    CHECK_INT_EQ(nq, 1);
    CHECK_OK(audit_verify(path, true, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_TRUNCATED);
    CHECK_OK(audit_tail_check(path, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_TRUNCATED);
    CHECK_STR_CONTAINS(rep.message, "lines were removed from the end");
    /* a damaged last record (an edit): refused in place, nothing moved */
    audit_close(log);
    log = NULL;
    CHECK_OK(make_log(path, 5, &e), &e);
    CHECK_INT_EQ(tt_sh("sed -i '5s/\"n\":5/\"n\":7/' '%s'", path), 0);
    size = file_size(path);
    CHECK_OK(audit_tail_check(path, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_EDITED);
    log = audit_open(path, &e);
    CHECK(log != NULL);
    CHECK_INT_EQ(audit_append(log, &r, 1, &seq, &e), -1);
    CHECK_INT_EQ(file_size(path), size);
    for (size_t i = 0; i < nq; i++) {
        xfree(q[i]);
    }
    xfree(q);
    q = NULL;
    CHECK_OK(audit_quarantine_list(path, &q, &nq, &e), &e);
    CHECK_INT_EQ(nq, 1);
out:
    for (size_t i = 0; q && i < nq; i++) {
        xfree(q[i]);
    }
    xfree(q);
    buf_release(&qdata);
    json_decref(r);
    lines_release(&l);
    audit_close(log);
    return rc;
}

/* ---- replay ---- */

struct visit {
    uint64_t count;
    uint64_t stop_at;
    bool order_ok;
};

static int visit_fn(void *arg, json_t *rec, uint64_t line)
{
    struct visit *v = arg;
    v->count++;
    if ((uint64_t)json_integer_value(json_object_get(rec, "seq")) != line ||
        (uint64_t)json_integer_value(json_object_get(rec, "n")) != line ||
        json_object_get(rec, "hash") == NULL) {
        v->order_ok = false;
    }
    return v->count == v->stop_at ? 7 : 0;
}

static int test_foreach(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct visit v = { 0, 0, true };
    char path[256];

    path_in(path, sizeof(path), "replay.log");
    CHECK_OK(make_log(path, 12, &e), &e);
    CHECK_OK(audit_foreach(path, visit_fn, &v, &e), &e);
    CHECK_INT_EQ(v.count, 12);
    CHECK(v.order_ok);
    v.count = 0;
    v.stop_at = 3;
    CHECK_INT_EQ(audit_foreach(path, visit_fn, &v, &e), 7);
    CHECK_INT_EQ(v.count, 3);
    path_in(path, sizeof(path), "replay-missing.log");
    CHECK_INT_EQ(audit_foreach(path, visit_fn, &v, &e), -1);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
out:
    return rc;
}

/* audit_find_last: the newest record of a type and member value above a seq, looking back from
 * the end; the last record; a torn last line skipped; a missing log; a line that is too long. */
static int test_find_last(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    char path[256];
    uint64_t seq = 99;
    bool found = true;
    json_t *recs[6];
    int fd = -1;
    path_in(path, sizeof(path), "find.log");
    unlink(path);
    CHECK_OK(audit_find_last(path, NULL, NULL, NULL, 0, &seq, &found, &e), &e); /* missing */
    CHECK(!found);
    CHECK_INT_EQ(seq, 0);
    log = audit_open(path, &e);
    CHECK(log != NULL);
    for (int i = 0; i < 6; i++) { /* a b a b a c, certificate ids x y x y z x */
        recs[i] = json_pack("{s:s, s:s}", "type", i == 5 ? "c" : i % 2 ? "b" : "a",
                            "certificate_id", i == 4 ? "z" : i % 2 ? "y" : "x");
    }
    CHECK_OK(audit_append(log, recs, 6, NULL, &e), &e);
    for (int i = 0; i < 6; i++) {
        json_decref(recs[i]);
    }
    CHECK_OK(audit_find_last(path, NULL, NULL, NULL, 0, &seq, &found, &e), &e);
    CHECK(found);
    CHECK_INT_EQ(seq, 6);
    CHECK_OK(audit_find_last(path, "a", "certificate_id", "x", 0, &seq, &found, &e), &e);
    CHECK(found);
    CHECK_INT_EQ(seq, 3);
    CHECK_OK(audit_find_last(path, "a", "certificate_id", "x", 3, &seq, &found, &e), &e);
    CHECK(!found); /* stops at seq 3 */
    CHECK_INT_EQ(seq, 0);
    CHECK_OK(audit_find_last(path, "b", "certificate_id", "x", 0, &seq, &found, &e), &e);
    CHECK(!found);
    CHECK_OK(audit_find_last(path, "a", "certificate_id", "z", 0, &seq, &found, &e), &e);
    CHECK(found);
    CHECK_INT_EQ(seq, 5);
    CHECK(audit_find_last(path, "a", NULL, NULL, 0, &seq, &found, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    err_clear(&e);
    /* a writer in the middle of its line: not a record yet */
    fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    CHECK(write(fd, "{\"certificate_id\":\"z\",\"seq\":7,\"type\":\"a\"", 40) == 40);
    CHECK_OK(audit_find_last(path, "a", "certificate_id", "z", 0, &seq, &found, &e), &e);
    CHECK(found);
    CHECK_INT_EQ(seq, 5);
    /* more than a window without a newline before the end: refused, not read forever */
    {
        char *junk = xmalloc(3u << 20);
        memset(junk, 'x', 3u << 20);
        CHECK(write(fd, "\n", 1) == 1);
        CHECK(write(fd, junk, 3u << 20) == (ssize_t)(3u << 20));
        CHECK(write(fd, "\n", 1) == 1);
        xfree(junk);
    }
    CHECK(audit_find_last(path, "a", "certificate_id", "z", 0, &seq, &found, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INTERNAL);
    CHECK(!found);
out:
    if (fd >= 0) {
        close(fd);
    }
    audit_close(log);
    return rc;
}

/* ---- durability and concurrency ---- */

static int test_one_fsync_per_commit(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct audit_stats st;
    char path[256];
    json_t *recs[5] = { rec_n("a", 1), rec_n("a", 2), rec_n("a", 3), rec_n("a", 4), rec_n("a", 5) };
    uint64_t seq;

    path_in(path, sizeof(path), "fsync.log");
    log = audit_open(path, &e);
    CHECK(log != NULL);
    for (int i = 0; i < 10; i++) {
        CHECK_OK(audit_append(log, recs, 1, &seq, &e), &e);
    }
    audit_get_stats(log, &st);
    CHECK_INT_EQ(st.records, 10);
    CHECK_INT_EQ(st.commits, 10); /* each single-threaded append is its own write + fdatasync */
    CHECK_INT_EQ(st.bytes, file_size(path));
    {
        /* every fdatasync is in the latency histogram */
        uint64_t n = 0;
        for (size_t i = 0; i <= AUDIT_FSYNC_NBOUNDS; i++) {
            n += st.fsync_le[i];
        }
        CHECK_INT_EQ(n, 10);
        CHECK(st.fsync_ns > 0);
        struct audit_stats sum = { 0 };
        audit_stats_add(&sum, &st);
        audit_stats_add(&sum, &st);
        CHECK_INT_EQ(sum.commits, 20);
        CHECK_INT_EQ(sum.fsync_ns, 2 * st.fsync_ns);
    }
    CHECK_OK(audit_append(log, recs, 5, &seq, &e), &e);
    CHECK_INT_EQ(seq, 11);
    audit_get_stats(log, &st);
    CHECK_INT_EQ(st.records, 15);
    CHECK_INT_EQ(st.commits, 11);
out:
    for (size_t i = 0; i < ARRAY_LEN(recs); i++) {
        json_decref(recs[i]);
    }
    audit_close(log);
    return rc;
}

struct worker {
    pthread_t tid;
    struct audit_log *log;
    int who;
    int count;
    int rc;
    struct err e;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->rc = 0;
    for (int i = 0; i < w->count && w->rc == 0; i++) {
        json_t *r = json_pack("{s:s, s:i, s:i}", "type", "thread", "who", w->who, "i", i);
        uint64_t seq;
        w->rc = audit_append(w->log, &r, 1, &seq, &w->e);
        json_decref(r);
    }
    return NULL;
}

static int run_threads(struct audit_log *log, int nthreads, int per_thread, int who_base)
{
    struct worker w[8];
    int rc = 0;
    BUG_ON(nthreads > 8);
    for (int t = 0; t < nthreads; t++) {
        memset(&w[t], 0, sizeof(w[t]));
        w[t].log = log;
        w[t].who = who_base + t;
        w[t].count = per_thread;
        if (pthread_create(&w[t].tid, NULL, worker_main, &w[t]) != 0) {
            return -1;
        }
    }
    for (int t = 0; t < nthreads; t++) {
        pthread_join(w[t].tid, NULL);
        if (w[t].rc != 0) {
            fprintf(stderr, "  thread %d: %s\n", t, w[t].e.msg);
            rc = -1;
        }
    }
    return rc;
}

struct tally {
    int who_max;
    int per_who;
    unsigned char *seen; /* who * per_who + i */
    uint64_t count;
    bool dup;
};

static int tally_fn(void *arg, json_t *rec, uint64_t line)
{
    struct tally *t = arg;
    int who = (int)json_integer_value(json_object_get(rec, "who"));
    int i = (int)json_integer_value(json_object_get(rec, "i"));
    (void)line;
    if (who < 0 || who >= t->who_max || i < 0 || i >= t->per_who) {
        t->dup = true;
        return 0;
    }
    if (t->seen[who * t->per_who + i]++) {
        t->dup = true;
    }
    t->count++;
    return 0;
}

static int child_writer(const char *path, int who, int count)
{
    struct err e = ERR_INIT;
    struct audit_log *log = audit_open(path, &e);
    if (log == NULL) {
        fprintf(stderr, "child %d: %s\n", who, e.msg);
        return 1;
    }
    int rc = run_threads(log, 2, count / 2, who * 2) == 0 ? 0 : 1;
    audit_close(log);
    return rc;
}

/* 4 processes with 2 threads each and 8 threads in this process, all on one file. */
static int test_concurrent_writers(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct audit_report rep;
    struct audit_stats st;
    char path[256];
    pid_t pids[4] = { 0, 0, 0, 0 };
    int per = small_scale() ? 40 : 200; /* records per writer thread */
    struct tally t = { 16, per, NULL, 0, false };
    uint64_t total = 8 * (uint64_t)per + 8 * (uint64_t)per;

    t.seen = xcalloc(16 * (size_t)per, 1);
    path_in(path, sizeof(path), "concurrent.log");
    for (int p = 0; p < 4; p++) {
        pids[p] = fork();
        CHECK(pids[p] >= 0);
        if (pids[p] == 0) {
            _exit(child_writer(path, p, 2 * per)); /* who = 2p, 2p+1 */
        }
    }
    log = audit_open(path, &e);
    CHECK(log != NULL);
    CHECK_INT_EQ(run_threads(log, 8, per, 8), 0); /* who = 8..15 */
    for (int p = 0; p < 4; p++) {
        int status = 0;
        CHECK_INT_EQ(waitpid(pids[p], &status, 0), pids[p]);
        pids[p] = 0;
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    audit_get_stats(log, &st);
    fprintf(stderr, "   this process: %" PRIu64 " records in %" PRIu64 " commits\n", st.records,
            st.commits);
    CHECK_INT_EQ(st.records, 8 * per);
    CHECK(st.commits <= st.records);

    CHECK_OK(audit_verify(path, true, &rep, &e), &e);
    CHECK_STR_EQ(rep.message, "");
    CHECK_INT_EQ(rep.records, total);
    /* foreach checks seqs 1..total with no gap or repeat; the tally finds each record once */
    CHECK_OK(audit_foreach(path, tally_fn, &t, &e), &e);
    CHECK_INT_EQ(t.count, total);
    CHECK(!t.dup);
out:
    for (int p = 0; p < 4; p++) {
        if (pids[p] > 0) {
            waitpid(pids[p], NULL, 0);
        }
    }
    xfree(t.seen);
    audit_close(log);
    return rc;
}

/* Under contention one fdatasync carries several records. */
static int test_group_commit(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct audit_report rep;
    struct audit_stats st;
    char path[256];
    int per = small_scale() ? 50 : 250;

    path_in(path, sizeof(path), "group.log");
    log = audit_open(path, &e);
    CHECK(log != NULL);
    CHECK_INT_EQ(run_threads(log, 8, per, 0), 0);
    audit_get_stats(log, &st);
    fprintf(stderr, "   8 threads: %" PRIu64 " records, %" PRIu64 " commits (%.2f fsyncs/record)\n",
            st.records, st.commits, (double)st.commits / (double)st.records);
    CHECK_INT_EQ(st.records, 8 * per);
    CHECK(st.commits < st.records);
    CHECK_OK(audit_verify(path, true, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_OK);
    CHECK_INT_EQ(rep.records, 8 * per);
out:
    audit_close(log);
    return rc;
}

/* A node's log: every line carries "node" where it sorts (records of either encoder, keys on both
 * sides of it), the line is still json_dumps() of the merged object, the chain verifies, and a
 * record may not set "node" itself; bad names are refused. */
static int test_node(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct audit_log *log = NULL;
    struct audit_batch b = AUDIT_BATCH_INIT;
    struct audit_report rep;
    struct lines l = { { NULL }, 0 };
    char path[256];
    json_t *obj = NULL;
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s}", "a", "1", "nz", "2", "o", "3", "type", "t");
    json_t *bad = json_pack("{s:s,s:s}", "node", "x", "type", "t");
    uint64_t seq = 0;

    path_in(path, sizeof(path), "node.log");
    static const char *const names[] = { "", "a b", "x/y", "n\u00e9",
                                         "0123456789012345678901234567890123456789012345678901234"
                                         "5678901234" }; /* 65 */
    CHECK(!audit_node_valid(names[0])); /* "" opens a log without nodes */
    for (size_t i = 1; i < ARRAY_LEN(names); i++) {
        CHECK(!audit_node_valid(names[i]));
        CHECK(audit_open_node(path, names[i], &e) == NULL);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        err_clear(&e);
    }
    CHECK(audit_node_valid("ca-node_1.eu"));
    log = audit_open_node(path, "ca-node_1.eu", &e);
    CHECK(log != NULL);
    CHECK_OK(audit_append(log, &rec, 1, &seq, &e), &e);
    audit_batch_begin(&b);
    audit_batch_str(&b, "mm", "before");
    audit_batch_str(&b, "nn", "after");
    audit_batch_str(&b, "type", "u");
    audit_batch_end(&b);
    audit_batch_begin(&b); /* only after "ts" */
    audit_batch_str(&b, "zz", "z");
    audit_batch_end(&b);
    CHECK_OK(audit_append_batch(log, &b, &seq, &e), &e);
    CHECK_INT_EQ(seq, 2);
    CHECK(audit_append(log, &bad, 1, &seq, &e) != 0);
    CHECK_INT_EQ(e.code, ERRC_INVALID);
    CHECK_STR_CONTAINS(e.msg, "\"node\" is reserved");
    err_clear(&e);
    CHECK_INT_EQ(lines_read(path, &l), 0);
    CHECK_INT_EQ(l.n, 3);
    for (size_t i = 0; i < l.n; i++) {
        json_decref(obj);
        obj = line_jansson(l.v[i]);
        CHECK(obj != NULL);
        CHECK_STR_EQ(json_string_value(json_object_get(obj, "node")), "ca-node_1.eu");
    }
    CHECK_STR_CONTAINS(l.v[0],
                       "{\"a\":\"1\",\"node\":\"ca-node_1.eu\",\"nz\":\"2\",\"o\":\"3\",\"prev\"");
    CHECK_STR_CONTAINS(l.v[1], "{\"mm\":\"before\",\"nn\":\"after\",\"node\":");
    CHECK_STR_CONTAINS(l.v[2], "{\"node\":\"ca-node_1.eu\",\"prev\":");
    CHECK_OK(audit_verify(path, true, &rep, &e), &e);
    CHECK_INT_EQ(rep.problem, AUDIT_OK);
    CHECK_INT_EQ(rep.records, 3);
out:
    json_decref(obj);
    json_decref(rec);
    json_decref(bad);
    lines_release(&l);
    audit_batch_release(&b);
    audit_close(log);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "append_and_format", test_append_and_format },
        { "encoding_matches_jansson", test_encoding_matches_jansson },
        { "batch_builder", test_batch_builder },
        { "bad_records_refused", test_bad_records_refused },
        { "open_errors", test_open_errors },
        { "tampering", test_tampering },
        { "writer_refuses_damaged_tail", test_writer_refuses_damaged_tail },
        { "crash_recovery", test_crash_recovery },
        { "torn_unacknowledged_cut", test_torn_unacknowledged_cut },
        { "torn_acknowledged_quarantined", test_torn_acknowledged_quarantined },
        { "foreach", test_foreach },
        { "find_last", test_find_last },
        { "one_fsync_per_commit", test_one_fsync_per_commit },
        { "concurrent_writers", test_concurrent_writers },
        { "group_commit", test_group_commit },
        { "node", test_node },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
