/*
 * The audit log: hash-chained JSON lines, group-committed, safe with several writer processes.
 *
 * Line format. A line is the record's members and ours ("prev", "seq", "ts") in sorted key order,
 * compact, exactly as json_dumps(JSON_COMPACT | JSON_SORT_KEYS) writes the merged object, then
 * `,"hash":"<64 hex>"}` and a newline. The hash is SHA-256 of the bytes before `,"hash":"` with
 * `}` appended, so a verifier needs no canonical re-encoding: it hashes the bytes it read.
 *
 * Encoding off the critical path. Callers encode their records before queueing, in parallel:
 * every top-level member becomes `,"key":value`, and the members are cut into four segments by
 * where "prev", "seq" and "ts" sort among them. The leader then only splices its fields between
 * the segments, hashes and copies: no JSON work and no allocation per record while the file is
 * locked (the write buffer is reused across batches).
 *
 * Group commit. Callers enqueue a request that lives on their stack. When no commit is running,
 * the caller that finds its request still pending becomes the leader: it takes the whole queue,
 * drops the mutex, writes every line with one write(2) and one fdatasync, then marks the batch
 * done and wakes everyone; whoever is still pending becomes the next leader. New arrivals queue
 * meanwhile, so under load the fdatasync cost is shared by everything that arrived during the
 * previous one.
 *
 * Several processes. The leader holds an exclusive flock() on the log from reading the tail to
 * the fdatasync and the head file update. The tail (seq, hash, size) is cached; it is re-read
 * only when the file size differs from what our last commit left, i.e. another process wrote
 * or a crash left a partial line. A partial last line (a writer died inside write(2); those
 * records were never acknowledged) is cut back to the last newline before appending. A damaged
 * last line, or a log shorter than its head file, stops the writer: appending would bury the
 * evidence, so an operator has to look (audit verify names the problem).
 *
 * The head file. PATH.head ({"seq":N,"hash":"..."}) is rewritten after each commit, through a
 * descriptor kept open, under the flock (so it never goes backwards), without fsync. It cannot lead
 * the log: it is written only after the log's fdatasync returned, so whatever it names is already
 * on disk. It can lag: after a crash the update may not have reached the disk, leaving an older
 * head (the verifier accepts a head behind the log; it only weakens the detection of end truncation
 * for the last few records) or, after the very first commit, an empty file (treated as absent). An
 * fsync per commit would double the cost of every append to close that window; we accept the lag.
 *   It is updated in place, not by temp file + rename: on ext4 the rename made every commit
 * about twice as slow (measured: ~160 us -> ~350 us per write + fdatasync + head update, since
 * a rename over an existing file makes ext4 flush the new file and journal the directory). The
 * in-place update is still atomic where it matters: the head is a fixed 128-byte record at
 * offset 0 (padded with spaces, which JSON allows), written by one pwrite that never changes the
 * file's size, inside one 512-byte sector, which disks write whole (PostgreSQL relies on the
 * same for pg_control). Readers take a shared flock on the log while reading the head, so they
 * never see a half-done update.
 */
#include "audit/audit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"

#define HASH_HEX        64
#define HASH_KEY        ",\"hash\":\""
#define HASH_KEY_LEN    (sizeof(HASH_KEY) - 1)
#define HASH_SUFFIX_LEN (HASH_KEY_LEN + HASH_HEX + 2) /* ,"hash":"<hex>"} */
#define RECORD_MAX      (1u << 20)                    /* a writer's limit on one line */
#define LINE_MAX_READ   (16u << 20)                   /* a reader's limit on one line */
#define HEAD_SIZE       128                           /* the head file's fixed size */
#define ZERO_HASH       "0000000000000000000000000000000000000000000000000000000000000000"

static const char *const reserved_keys[] = { "seq", "ts", "prev", "hash", "node" };

/* A record's members are cut into NSEG segments by where "node", "prev", "seq" and "ts" sort
 * among them; bounds hold NSEG offsets per record, then the end. */
#define NSEG 5

/* ---- SHA-256 of a line's body ---- */

struct hasher {
    EVP_MD *md;
    EVP_MD_CTX *ctx;
};

static void hasher_release(struct hasher *h)
{
    EVP_MD_CTX_free(h->ctx);
    EVP_MD_free(h->md);
    h->ctx = NULL;
    h->md = NULL;
}

static int hasher_init(struct hasher *h, struct err *e)
{
    h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    h->ctx = EVP_MD_CTX_new();
    if (h->md == NULL || h->ctx == NULL) {
        hasher_release(h);
        return err_openssl(e, ERRC_INTERNAL, "cannot set up SHA-256");
    }
    return 0;
}

/* The hash of a line whose body (everything before `,"hash":"`) is body[0..len): the body with
 * "}" appended, as lowercase hex. */
static int hash_body(struct hasher *h, const char *body, size_t len, char out[HASH_HEX + 1],
                     struct err *e)
{
    uint8_t md[32];
    unsigned mdlen = 0;
    if (EVP_DigestInit_ex(h->ctx, h->md, NULL) != 1 || EVP_DigestUpdate(h->ctx, body, len) != 1 ||
        EVP_DigestUpdate(h->ctx, "}", 1) != 1 || EVP_DigestFinal_ex(h->ctx, md, &mdlen) != 1 ||
        mdlen != sizeof(md)) {
        return err_openssl(e, ERRC_INTERNAL, "SHA-256 failed");
    }
    hex_encode(md, sizeof(md), out);
    return 0;
}

/* ---- small I/O helpers ---- */

static int pread_full(int fd, char *p, size_t len, off_t off)
{
    while (len) {
        ssize_t n = pread(fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (n == 0) {
            errno = EIO; /* the file shrank under us: someone ignores the lock */
            return -1;
        }
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* Offset of the last '\n' in [0, before), or -1 in *pos when there is none. */
static int find_last_nl(int fd, off_t before, off_t *pos)
{
    char chunk[4096];
    off_t end = before;
    while (end > 0) {
        size_t n = end >= (off_t)sizeof(chunk) ? sizeof(chunk) : (size_t)end;
        off_t start = end - (off_t)n;
        if (pread_full(fd, chunk, n, start) != 0) {
            return -1;
        }
        const char *nl = memrchr(chunk, '\n', n);
        if (nl) {
            *pos = start + (nl - chunk);
            return 0;
        }
        end = start;
    }
    *pos = -1;
    return 0;
}

/* ---- checking one line (shared by the writer's tail read, verify and foreach) ---- */

struct line_rec {
    uint64_t seq;
    char prev[HASH_HEX + 1];
    char hash[HASH_HEX + 1];
    json_t *obj; /* the parsed line, when asked for */
};

/* Checks one complete line (without its newline): a JSON object with our members, the hash
 * member last, and a hash that matches the content. Returns the problem (AUDIT_OK,
 * AUDIT_MALFORMED or AUDIT_EDITED) with why filled, or -1 when hashing itself failed. */
static int line_check(struct hasher *h, const char *line, size_t len, bool keep,
                      struct line_rec *lr, char *why, size_t whycap, struct err *e)
{
    json_error_t jerr;
    json_t *obj = NULL, *v;
    char computed[HASH_HEX + 1];
    int rc = AUDIT_MALFORMED;
    const char *s;

    lr->obj = NULL;
    if (len == 0) {
        snprintf(why, whycap, "malformed (empty line)");
        goto out;
    }
    obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL) {
        snprintf(why, whycap, "malformed (not JSON: %s)", jerr.text);
        goto out;
    }
    if (!json_is_object(obj)) {
        snprintf(why, whycap, "malformed (not a JSON object)");
        goto out;
    }
    v = json_object_get(obj, "seq");
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
        snprintf(why, whycap, "malformed (\"seq\" is missing or not a positive integer)");
        goto out;
    }
    lr->seq = (uint64_t)json_integer_value(v);
    s = json_string_value(json_object_get(obj, "prev"));
    if (s == NULL || !hex_is_lower(s, HASH_HEX)) {
        snprintf(why, whycap, "malformed (\"prev\" is missing or not 64 lowercase hex digits)");
        goto out;
    }
    memcpy(lr->prev, s, HASH_HEX + 1);
    if (!json_is_string(json_object_get(obj, "ts"))) {
        snprintf(why, whycap, "malformed (\"ts\" is missing or not a string)");
        goto out;
    }
    s = json_string_value(json_object_get(obj, "hash"));
    if (s == NULL || !hex_is_lower(s, HASH_HEX)) {
        snprintf(why, whycap, "malformed (\"hash\" is missing or not 64 lowercase hex digits)");
        goto out;
    }
    memcpy(lr->hash, s, HASH_HEX + 1);
    if (len < HASH_SUFFIX_LEN + 1 ||
        memcmp(line + len - HASH_SUFFIX_LEN, HASH_KEY, HASH_KEY_LEN) != 0 ||
        memcmp(line + len - HASH_SUFFIX_LEN + HASH_KEY_LEN, lr->hash, HASH_HEX) != 0 ||
        memcmp(line + len - 2, "\"}", 2) != 0) {
        snprintf(why, whycap, "malformed (\"hash\" is not the last member)");
        goto out;
    }
    if (hash_body(h, line, len - HASH_SUFFIX_LEN, computed, e) != 0) {
        rc = -1;
        goto out;
    }
    if (memcmp(computed, lr->hash, HASH_HEX) != 0) {
        snprintf(why, whycap, "edited (hash does not match its content)");
        rc = AUDIT_EDITED;
        goto out;
    }
    if (keep) {
        lr->obj = obj;
        obj = NULL;
    }
    why[0] = '\0';
    rc = AUDIT_OK;
out:
    json_decref(obj);
    return rc;
}

/* ---- the head file ---- */

/* Reads PATH.head. *present is false when it is missing or empty; -1 when unreadable or not a
 * head (ERRC_INVALID). */
static int head_read(const char *head_path, bool *present, uint64_t *seq, char hash[HASH_HEX + 1],
                     struct err *e)
{
    struct buf b = BUF_INIT;
    struct err ferr = ERR_INIT;
    json_t *obj = NULL;
    json_error_t jerr;
    const char *s;
    int rc = -1;

    *present = false;
    if (file_read_all(head_path, 4096, &b, &ferr) != 0) {
        if (ferr.code == ERRC_NOT_FOUND) {
            rc = 0;
        } else {
            err_copy(e, &ferr);
        }
        goto out;
    }
    if (b.len == 0) {
        rc = 0;
        goto out;
    }
    obj = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &jerr);
    s = json_string_value(json_object_get(obj, "hash"));
    if (!json_is_integer(json_object_get(obj, "seq")) ||
        json_integer_value(json_object_get(obj, "seq")) < 0 || s == NULL ||
        !hex_is_lower(s, HASH_HEX) || json_object_size(obj) != 2) {
        err_set(e, ERRC_INVALID,
                "head file '%s' is malformed (expected {\"seq\":N,\"hash\":\"...\"})", head_path);
        goto out;
    }
    *seq = (uint64_t)json_integer_value(json_object_get(obj, "seq"));
    memcpy(hash, s, HASH_HEX + 1);
    *present = true;
    rc = 0;
out:
    json_decref(obj);
    buf_release(&b);
    return rc;
}

/* ---- the writer ---- */

/* A caller's batch waiting for a commit; it lives on the caller's stack. */
struct audit_req {
    struct audit_req *next;
    const char *enc;      /* the records' members, encoded by the caller */
    const size_t *bounds; /* NSEG*n+1 offsets into enc: the segments of each record, then end */
    size_t n;
    uint64_t first_seq;
    int rc;
    bool done;
    struct err err;
};

struct audit_log {
    char *path;
    char *head_path;
    int fd;
    int head_fd; /* kept open between commits; -1 until the first, or after a failure */

    pthread_mutex_t mu; /* guards the queue, `leader` and stats */
    pthread_cond_t cv;  /* a commit finished */
    struct audit_req *queue, **queue_tail;
    bool leader; /* a commit is running */
    struct audit_stats stats;

    /* Used only by the leader (the thread that set `leader`). */
    bool tail_known;
    uint64_t tail_seq;
    char tail_hash[HASH_HEX + 1];
    off_t tail_size; /* the file size our last commit left */
    uint64_t torn_cut, quarantined; /* since the last stats update (added under mu) */
    struct buf wbuf;
    struct buf scratch;
    struct hasher h;
    char node[AUDIT_NODE_MAX + 1]; /* "" or the "node" member of every line */
};

struct audit_log *audit_open(const char *path, struct err *e)
{
    struct audit_log *log = NULL;
    char *dcopy = xstrdup(path);
    const char *dir = dirname(dcopy);
    struct buf b = BUF_INIT;
    struct stat st;
    bool created = false;
    int fd = -1;

    if (file_mkdirs(dir, 0750, e) != 0) {
        err_prefix(e, "cannot open audit log '%s'", path);
        goto fail;
    }
    fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        created = fd >= 0;
        if (fd < 0 && errno == EEXIST) {
            fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
        }
    }
    if (fd < 0) {
        err_errno(e, ERRC_UNAVAILABLE, "cannot open audit log '%s'", path);
        goto fail;
    }
    if (fstat(fd, &st) != 0) {
        err_errno(e, ERRC_UNAVAILABLE, "cannot stat audit log '%s'", path);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(e, ERRC_INVALID, "audit log '%s' is not a regular file", path);
        goto fail;
    }
    /* the new file's name must survive a crash like its records do */
    if (created && file_fsync_dir(dir, e) != 0) {
        goto fail;
    }
    log = xcalloc(1, sizeof(*log));
    if (hasher_init(&log->h, e) != 0) {
        goto fail;
    }
    log->fd = fd;
    fd = -1;
    log->path = xstrdup(path);
    buf_addf(&b, "%s.head", path);
    log->head_path = buf_detach(&b, NULL);
    log->head_fd = -1;
    pthread_mutex_init(&log->mu, NULL);
    pthread_cond_init(&log->cv, NULL);
    log->queue_tail = &log->queue;
    xfree(dcopy);
    return log;
fail:
    if (fd >= 0) {
        close(fd);
    }
    xfree(log);
    xfree(dcopy);
    return NULL;
}

bool audit_node_valid(const char *node)
{
    size_t n = node ? strlen(node) : 0;
    if (n == 0 || n > AUDIT_NODE_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = node[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

struct audit_log *audit_open_node(const char *path, const char *node, struct err *e)
{
    if (node != NULL && node[0] != '\0' && !audit_node_valid(node)) {
        err_set(e, ERRC_INVALID, "node id '%s': 1 to %d of A-Z a-z 0-9 . _ -", node,
                AUDIT_NODE_MAX);
        return NULL;
    }
    struct audit_log *log = audit_open(path, e);
    if (log != NULL && node != NULL) {
        snprintf(log->node, sizeof(log->node), "%s", node);
    }
    return log;
}

void audit_close(struct audit_log *log)
{
    if (log == NULL) {
        return;
    }
    BUG_ON(log->leader || log->queue != NULL);
    close(log->fd);
    if (log->head_fd >= 0) {
        close(log->head_fd);
    }
    pthread_mutex_destroy(&log->mu);
    pthread_cond_destroy(&log->cv);
    hasher_release(&log->h);
    buf_release(&log->wbuf);
    buf_release(&log->scratch);
    xfree(log->path);
    xfree(log->head_path);
    xfree(log);
}

static void fsync_count(struct audit_stats *st, int64_t ns)
{
    static const uint64_t bounds_us[AUDIT_FSYNC_NBOUNDS] = AUDIT_FSYNC_BOUNDS_US;
    size_t i = 0;
    while (i < AUDIT_FSYNC_NBOUNDS && (uint64_t)ns > bounds_us[i] * 1000) {
        i++;
    }
    st->fsync_le[i]++;
    st->fsync_ns += (uint64_t)ns;
}

void audit_stats_add(struct audit_stats *a, const struct audit_stats *b)
{
    a->records += b->records;
    a->commits += b->commits;
    a->bytes += b->bytes;
    for (size_t i = 0; i <= AUDIT_FSYNC_NBOUNDS; i++) {
        a->fsync_le[i] += b->fsync_le[i];
    }
    a->fsync_ns += b->fsync_ns;
    a->torn_cut += b->torn_cut;
    a->quarantined += b->quarantined;
    a->failures += b->failures;
}

void audit_get_stats(struct audit_log *log, struct audit_stats *out)
{
    pthread_mutex_lock(&log->mu);
    *out = log->stats;
    pthread_mutex_unlock(&log->mu);
}

static int dump_to_buf(const char *data, size_t size, void *arg)
{
    buf_add(arg, data, size);
    return 0;
}

/* A string as Jansson's dumper writes it (no ASCII or slash escaping, \uXXXX in uppercase for
 * the other control characters), so our lines are byte-identical to json_dumps() of the merged
 * object. Runs that need no escape are copied whole. A byte that does not start valid UTF-8
 * (Jansson refuses such strings) makes it return -1 with out unchanged, or, when lossy, is
 * written as U+FFFD. */
static int add_jstr_mode(struct buf *out, const char *s, size_t len, bool lossy)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t start = out->len;
    buf_reserve(out, len + 2);
    buf_addch(out, '"');
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\') {
            j++;
        }
        if (j > i) {
            buf_add(out, p + i, j - i);
            i = j;
            continue;
        }
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t n = utf8_seq_len(p + i, len - i);
            if (n == 0 && lossy) {
                buf_addstr(out, "\xef\xbf\xbd");
                i++;
                continue;
            }
            if (n == 0) {
                out->len = start;
                out->data[start] = '\0';
                return -1;
            }
            buf_add(out, p + i, n);
            i += n;
            continue;
        }
        switch (c) {
        case '"':
            buf_addstr(out, "\\\"");
            break;
        case '\\':
            buf_addstr(out, "\\\\");
            break;
        case '\b':
            buf_addstr(out, "\\b");
            break;
        case '\f':
            buf_addstr(out, "\\f");
            break;
        case '\n':
            buf_addstr(out, "\\n");
            break;
        case '\r':
            buf_addstr(out, "\\r");
            break;
        case '\t':
            buf_addstr(out, "\\t");
            break;
        default:
            buf_addf(out, "\\u%04X", c);
        }
        i++;
    }
    buf_addch(out, '"');
    return 0;
}

static int add_jstr(struct buf *out, const char *s, size_t len)
{
    return add_jstr_mode(out, s, len, false);
}

struct member {
    const char *key;
    json_t *value;
};

static int member_cmp(const void *a, const void *b)
{
    return strcmp(((const struct member *)a)->key, ((const struct member *)b)->key);
}

/* Which segment a record key goes to: 0 sorts before "node", 1 before "prev", 2 before "seq",
 * 3 before "ts". */
static size_t key_segment(const char *k)
{
    if (strcmp(k, "node") < 0) {
        return 0;
    }
    if (strcmp(k, "prev") < 0) {
        return 1;
    }
    if (strcmp(k, "seq") < 0) {
        return 2;
    }
    return strcmp(k, "ts") < 0 ? 3 : 4;
}

/* Encodes record idx (of n) as `,"key":value` members in sorted key order into out, setting
 * bounds[0..NSEG-1] to where its segments start. */
static int rec_encode(json_t *rec, size_t idx, size_t n, struct buf *out, size_t *bounds,
                      struct err *e)
{
    struct member stack_members[32];
    struct member *m = stack_members;
    size_t count = 0, cap = ARRAY_LEN(stack_members), seg = 0, start = out->len;
    int rc = -1;

    if (!json_is_object(rec)) {
        err_set(e, ERRC_INVALID, "audit record %zu of %zu is not a JSON object", idx + 1, n);
        goto out;
    }
    for (void *it = json_object_iter(rec); it; it = json_object_iter_next(rec, it)) {
        const char *k = json_object_iter_key(it);
        if (strlen(k) != json_object_iter_key_len(it)) {
            err_set(e, ERRC_INVALID, "audit record %zu of %zu has a key with a NUL byte", idx + 1,
                    n);
            goto out;
        }
        for (size_t r = 0; r < ARRAY_LEN(reserved_keys); r++) {
            if (strcmp(k, reserved_keys[r]) == 0) {
                err_set(e, ERRC_INVALID,
                        "audit record %zu of %zu: \"%s\" is reserved (the audit log sets it)",
                        idx + 1, n, k);
                goto out;
            }
        }
        if (count == cap) {
            if (m == stack_members) {
                m = xmemdup(stack_members, sizeof(stack_members));
            }
            m = xgrow(m, sizeof(*m), count + 1, &cap);
        }
        m[count].key = k;
        m[count].value = json_object_iter_value(it);
        count++;
    }
    qsort(m, count, sizeof(*m), member_cmp);
    bounds[0] = out->len;
    for (size_t i = 0; i < count; i++) {
        size_t s = key_segment(m[i].key);
        while (seg < s) {
            bounds[++seg] = out->len;
        }
        buf_addch(out, ',');
        if (add_jstr(out, m[i].key, strlen(m[i].key)) != 0) {
            err_set(e, ERRC_INVALID, "audit record %zu of %zu has a key that is not UTF-8",
                    idx + 1, n);
            goto out;
        }
        buf_addch(out, ':');
        if (json_dump_callback(m[i].value, dump_to_buf, out,
                               JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) != 0) {
            err_set(e, ERRC_INVALID, "audit record %zu of %zu: \"%s\" cannot be encoded", idx + 1,
                    n, m[i].key);
            goto out;
        }
    }
    while (seg < NSEG - 1) {
        bounds[++seg] = out->len;
    }
    if (out->len - start > RECORD_MAX) {
        err_set(e, ERRC_TOO_LARGE, "audit record %zu of %zu is larger than %u bytes", idx + 1, n,
                RECORD_MAX);
        goto out;
    }
    rc = 0;
out:
    if (m != stack_members) {
        xfree(m);
    }
    return rc;
}

static int lock_file(int fd, int how)
{
    while (flock(fd, how) != 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* What the next append finds at the log's end (tail_inspect). */
enum tail_verdict {
    TAIL_OK,           /* empty, or a valid last record at or beyond the head file's seq */
    TAIL_TORN_UNACKED, /* a partial last line beyond every acknowledged record: cut it */
    TAIL_TORN_ACKED,   /* a partial last line that may hold acknowledged records: move it aside */
    TAIL_DAMAGED,      /* a damaged last record, or fewer records than the head file says */
};

struct tail_info {
    enum tail_verdict verdict;
    off_t cut_at; /* the start of the partial last line (the size without it) */
    uint64_t seq; /* the last complete record */
    char hash[HASH_HEX + 1];
    char why[300]; /* TORN_ACKED, DAMAGED: what, without the path */
};

/*
 * Reads the end of the log (size bytes) and its head file and says what an append may do.
 *
 * A partial last line (no newline at the end) is the torn write of a writer that stopped inside
 * write(2), or bytes cut off an acknowledged record. The head file tells them apart: a writer
 * updates it after the fdatasync and before any caller is told the records are durable, so
 * every acknowledged record has a seq at or below the head file's (a head that lags after a
 * power loss lags behind records that are complete on disk, fdatasync'd). Hence the partial line
 * is an unacknowledged write exactly when the complete line before it is a valid record whose
 * seq is above the head file's, or equal with the same hash, or when there is no head file (no
 * commit ever finished). Anything else holds acknowledged bytes: never cut, moved aside.
 */
static int tail_inspect(struct hasher *h, int fd, const char *head_path, off_t size,
                        struct buf *scratch, struct tail_info *ti, struct err *e)
{
    struct line_rec lr;
    char why[200], head_hash[HASH_HEX + 1];
    uint64_t head_seq = 0;
    bool head_present = false, torn = false, valid = true;
    struct err herr = ERR_INIT;
    off_t nl, end = size;

    memset(ti, 0, sizeof(*ti));
    if (size > 0) {
        char last;
        if (pread_full(fd, &last, 1, size - 1) != 0) {
            return err_errno(e, ERRC_UNAVAILABLE, "cannot read the audit log");
        }
        if (last != '\n') {
            if (find_last_nl(fd, size, &nl) != 0) {
                return err_errno(e, ERRC_UNAVAILABLE, "cannot read the audit log");
            }
            torn = true;
            end = nl + 1;
        }
    }
    ti->cut_at = end;
    ti->seq = 0;
    memcpy(ti->hash, ZERO_HASH, HASH_HEX + 1);
    if (end > 0) {
        if (find_last_nl(fd, end - 1, &nl) != 0) {
            return err_errno(e, ERRC_UNAVAILABLE, "cannot read the audit log");
        }
        size_t len = (size_t)(end - 1 - (nl + 1));
        if (len > LINE_MAX_READ) {
            valid = false;
            snprintf(ti->why, sizeof(ti->why), "ends with a line longer than %u bytes",
                     LINE_MAX_READ);
        } else {
            buf_reset(scratch);
            buf_reserve(scratch, len);
            if (pread_full(fd, scratch->data, len, nl + 1) != 0) {
                return err_errno(e, ERRC_UNAVAILABLE, "cannot read the audit log");
            }
            int prob = line_check(h, scratch->data, len, false, &lr, why, sizeof(why), e);
            if (prob < 0) {
                return -1;
            }
            if (prob != AUDIT_OK) {
                valid = false;
                snprintf(ti->why, sizeof(ti->why), "ends with a damaged record (%s)", why);
            } else {
                ti->seq = lr.seq;
                memcpy(ti->hash, lr.hash, HASH_HEX + 1);
            }
        }
    }
    if (head_read(head_path, &head_present, &head_seq, head_hash, &herr) != 0) {
        log_warn("audit log: ignoring its head file: %s", herr.msg);
        head_present = false;
    }
    if (torn) {
        bool beyond = valid && (!head_present || ti->seq > head_seq ||
                                (ti->seq == head_seq && strcmp(ti->hash, head_hash) == 0));
        ti->verdict = beyond ? TAIL_TORN_UNACKED : TAIL_TORN_ACKED;
        if (!beyond) {
            snprintf(ti->why, sizeof(ti->why),
                     "ends with a partial line of %lld bytes after %s seq %" PRIu64
                     " while its head file records seq %" PRIu64 ": an acknowledged record was cut",
                     (long long)(size - end), valid ? "record" : "a damaged record at", ti->seq,
                     head_seq);
        }
        return 0;
    }
    if (!valid) {
        ti->verdict = TAIL_DAMAGED;
        return 0;
    }
    if (head_present && head_seq > ti->seq) {
        ti->verdict = TAIL_DAMAGED;
        snprintf(ti->why, sizeof(ti->why),
                 "ends at seq %" PRIu64 " but its head file records seq %" PRIu64
                 ": lines were removed from the end",
                 ti->seq, head_seq);
        return 0;
    }
    ti->verdict = TAIL_OK;
    return 0;
}

/* Copies [from, to) of the log to a new PATH.quarantine.<UTC time>[.N] (mode 0640), durably,
 * and names it in out. */
static int quarantine_write(struct audit_log *log, off_t from, off_t to, struct buf *out,
                            struct err *e)
{
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    struct buf data = BUF_INIT;
    int fd = -1, rc = -1;
    size_t len = (size_t)(to - from);
    if (gmtime_r(&now, &tm) == NULL || strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) == 0) {
        snprintf(stamp, sizeof(stamp), "%lld", (long long)now);
    }
    buf_reserve(&data, len);
    if (pread_full(log->fd, data.data, len, from) != 0) {
        err_errno(e, ERRC_UNAVAILABLE, "cannot read audit log '%s'", log->path);
        goto out;
    }
    for (int i = 0; fd < 0 && i < 100; i++) {
        buf_reset(out);
        buf_addf(out, "%s.quarantine.%s", log->path, stamp);
        if (i > 0) {
            buf_addf(out, ".%d", i);
        }
        fd = open(out->data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0 && errno != EEXIST) {
            break;
        }
    }
    if (fd < 0) {
        err_errno(e, ERRC_UNAVAILABLE, "cannot create the quarantine file '%s'", out->data);
        goto out;
    }
    if (file_write_full(fd, data.data, len) != 0 || fsync(fd) != 0) {
        err_errno(e, ERRC_UNAVAILABLE, "cannot write the quarantine file '%s'", out->data);
        goto out;
    }
    {
        char *dcopy = xstrdup(log->path);
        int drc = file_fsync_dir(dirname(dcopy), e);
        xfree(dcopy);
        if (drc != 0) {
            goto out;
        }
    }
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
    }
    buf_release(&data);
    return rc;
}

/* Reads the tail under the flock (tail_inspect): cuts a torn unacknowledged write, moves the
 * torn end of acknowledged records aside to a quarantine file, refuses a damaged end, and
 * caches seq, hash and size. */
static int tail_load(struct audit_log *log, off_t size, struct err *e)
{
    struct tail_info ti;
    struct buf qname = BUF_INIT;

    log->tail_known = false;
    if (tail_inspect(&log->h, log->fd, log->head_path, size, &log->scratch, &ti, e) != 0) {
        return err_prefix(e, "audit log '%s'", log->path);
    }
    switch (ti.verdict) {
    case TAIL_OK:
        break;
    case TAIL_TORN_UNACKED:
        log_warn("audit log '%s': cutting an incomplete last line of %lld bytes after seq %" PRIu64
                 " (a writer stopped in the middle of a write; its records were never "
                 "acknowledged)",
                 log->path, (long long)(size - ti.cut_at), ti.seq);
        if (ftruncate(log->fd, ti.cut_at) != 0) {
            return err_errno(e, ERRC_UNAVAILABLE,
                             "cannot cut the incomplete last line of audit log '%s'", log->path);
        }
        log->torn_cut++;
        size = ti.cut_at;
        break;
    case TAIL_TORN_ACKED:
        if (quarantine_write(log, ti.cut_at, size, &qname, e) != 0) {
            buf_release(&qname);
            return -1;
        }
        if (ftruncate(log->fd, ti.cut_at) != 0) {
            err_errno(e, ERRC_UNAVAILABLE, "cannot move the torn end of audit log '%s' aside",
                      log->path);
            buf_release(&qname);
            return -1;
        }
        log->quarantined++;
        log_error("audit log '%s' %s; its %lld bytes were moved to '%s' (nothing deleted); "
                  "appends are refused until an operator repairs the log (jitrctl audit verify)",
                  log->path, ti.why, (long long)(size - ti.cut_at), qname.data);
        err_set(e, ERRC_INTERNAL,
                "audit log '%s' %s (moved aside to '%s'); refusing to append until it is "
                "repaired (see audit verify)",
                log->path, ti.why, qname.data);
        buf_release(&qname);
        return -1;
    case TAIL_DAMAGED:
        return err_set(e, ERRC_INTERNAL,
                       "audit log '%s' %s; refusing to append until it is repaired (see audit "
                       "verify)",
                       log->path, ti.why);
    }
    log->tail_seq = ti.seq;
    memcpy(log->tail_hash, ti.hash, HASH_HEX + 1);
    log->tail_size = size;
    log->tail_known = true;
    return 0;
}

int audit_tail_check(const char *path, struct audit_report *rep, struct err *e)
{
    struct hasher h;
    struct buf head_path = BUF_INIT, scratch = BUF_INIT;
    struct tail_info ti;
    struct stat st;
    int fd = -1, rc = -1;
    memset(rep, 0, sizeof(*rep));
    if (hasher_init(&h, e) != 0) {
        return -1;
    }
    buf_addf(&head_path, "%s.head", path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT) {
        err_errno(e, ERRC_UNAVAILABLE, "cannot open audit log '%s'", path);
        goto out;
    }
    if (fd >= 0 && lock_file(fd, LOCK_SH) != 0) {
        err_errno(e, ERRC_UNAVAILABLE, "cannot lock audit log '%s'", path);
        goto out;
    }
    if (fd >= 0 && fstat(fd, &st) != 0) {
        err_errno(e, ERRC_UNAVAILABLE, "cannot stat audit log '%s'", path);
        goto out;
    }
    if (tail_inspect(&h, fd, head_path.data, fd >= 0 ? st.st_size : 0, &scratch, &ti, e) != 0) {
        err_prefix(e, "audit log '%s'", path);
        goto out;
    }
    if (ti.verdict == TAIL_TORN_ACKED || ti.verdict == TAIL_DAMAGED) {
        rep->problem = ti.verdict == TAIL_DAMAGED && strstr(ti.why, "removed from the end")
                           ? AUDIT_TRUNCATED
                       : ti.verdict == TAIL_TORN_ACKED ? AUDIT_TRUNCATED
                                                       : AUDIT_EDITED;
        snprintf(rep->message, sizeof(rep->message), "the audit log %.200s", ti.why);
    }
    rep->records = ti.seq;
    rc = 0;
out:
    if (fd >= 0) {
        close(fd); /* drops the shared lock */
    }
    hasher_release(&h);
    buf_release(&head_path);
    buf_release(&scratch);
    return rc;
}

int audit_quarantine_list(const char *path, char ***names, size_t *n, struct err *e)
{
    char *dcopy = xstrdup(path), *bcopy = xstrdup(path);
    const char *dir = dirname(dcopy), *base = basename(bcopy);
    struct buf prefix = BUF_INIT;
    DIR *d = opendir(dir);
    struct dirent *de;
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = -1;
    *names = NULL;
    *n = 0;
    if (d == NULL) {
        if (errno == ENOENT) {
            rc = 0;
        } else {
            err_errno(e, ERRC_UNAVAILABLE, "cannot list '%s'", dir);
        }
        goto out;
    }
    buf_addf(&prefix, "%s.quarantine.", base);
    while ((de = readdir(d)) != NULL) {
        if (str_has_prefix(de->d_name, prefix.data)) {
            struct buf full = BUF_INIT;
            buf_addf(&full, "%s/%s", dir, de->d_name);
            v = xgrow(v, sizeof(char *), cnt + 1, &cap);
            v[cnt++] = buf_detach(&full, NULL);
        }
    }
    closedir(d);
    if (cnt > 1) {
        qsort(v, cnt, sizeof(char *), cmp_cstr);
    }
    *names = v;
    *n = cnt;
    rc = 0;
out:
    buf_release(&prefix);
    xfree(dcopy);
    xfree(bcopy);
    return rc;
}

/* Rewrites PATH.head in place; see the top of the file for why there is neither a rename nor an
 * fsync. Failure is logged, not returned: the records are durable already and the head file is
 * only a tripwire. */
static void head_write(struct audit_log *log)
{
    char text[HEAD_SIZE + 1];
    struct err e = ERR_INIT;
    struct stat st;
    int n = snprintf(text, sizeof(text), "{\"seq\":%" PRIu64 ",\"hash\":\"%s\"}", log->tail_seq,
                     log->tail_hash);
    BUG_ON(n < 0 || n >= HEAD_SIZE);
    memset(text + n, ' ', HEAD_SIZE - 1 - (size_t)n);
    text[HEAD_SIZE - 1] = '\n';
    if (log->head_fd < 0) {
        log->head_fd = open(log->head_path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (log->head_fd < 0) {
            err_errno(&e, ERRC_UNAVAILABLE, "cannot open '%s'", log->head_path);
        } else if (fstat(log->head_fd, &st) == 0 && st.st_size != HEAD_SIZE &&
                   ftruncate(log->head_fd, HEAD_SIZE) != 0) {
            err_errno(&e, ERRC_UNAVAILABLE, "cannot write '%s'", log->head_path);
        }
    }
    if (e.code == ERRC_OK && pwrite(log->head_fd, text, HEAD_SIZE, 0) != HEAD_SIZE) {
        err_errno(&e, ERRC_UNAVAILABLE, "cannot write '%s'", log->head_path);
    }
    if (e.code != ERRC_OK && log->head_fd >= 0) { /* opened again by the next commit */
        close(log->head_fd);
        log->head_fd = -1;
    }
    if (e.code != ERRC_OK) {
        log_warn("audit log '%s': head file not updated: %s", log->path, e.msg);
    }
}

/* Appends record i of r as line seq to the write buffer; prev is the previous hash on entry and
 * this line's hash on return. */
static int line_build(struct audit_log *log, const struct audit_req *r, size_t i, uint64_t seq,
                      const char *ts, char prev[HASH_HEX + 1], struct err *e)
{
    struct buf *w = &log->wbuf;
    const size_t *b = r->bounds + NSEG * i;
    size_t start = w->len;

    /* every segment and each of our members starts with ','; the line's first one drops it */
    buf_addch(w, '{');
    buf_add(w, r->enc + b[0], b[1] - b[0]);
    if (log->node[0]) {
        buf_addstr(w, ",\"node\":\"");
        buf_addstr(w, log->node); /* [A-Za-z0-9._-]: nothing to escape */
        buf_addch(w, '"');
    }
    buf_add(w, r->enc + b[1], b[2] - b[1]);
    buf_addstr(w, ",\"prev\":\"");
    buf_add(w, prev, HASH_HEX);
    buf_addch(w, '"');
    buf_add(w, r->enc + b[2], b[3] - b[2]);
    buf_addf(w, ",\"seq\":%" PRIu64, seq);
    buf_add(w, r->enc + b[3], b[4] - b[3]);
    buf_addstr(w, ",\"ts\":\"");
    buf_addstr(w, ts);
    buf_addch(w, '"');
    buf_add(w, r->enc + b[4], b[5] - b[4]);
    /* drop the first member's ',' (there is always one: "prev") */
    memmove(w->data + start + 1, w->data + start + 2, w->len - start - 2);
    w->len--;
    w->data[w->len] = '\0';
    if (hash_body(&log->h, w->data + start, w->len - start, prev, e) != 0) {
        return -1;
    }
    buf_addstr(w, HASH_KEY);
    buf_add(w, prev, HASH_HEX);
    buf_addstr(w, "\"}\n");
    return 0;
}

/* The leader's work: one write and one fdatasync for the whole batch, under the flock. Sets rc
 * (and err) of every request; returns the number of records committed. */
static size_t commit_batch(struct audit_log *log, struct audit_req *batch, int64_t *fsync_ns)
{
    struct err e = ERR_INIT;
    struct stat st;
    bool locked = false, written = false;
    off_t start_size = 0;
    uint64_t seq;
    char prev[HASH_HEX + 1], ts[40];
    size_t need = 0, records = 0;
    int64_t t0;

    *fsync_ns = -1;
    if (lock_file(log->fd, LOCK_EX) != 0) {
        err_errno(&e, ERRC_UNAVAILABLE, "cannot lock audit log '%s'", log->path);
        goto fail;
    }
    locked = true;
    if (fstat(log->fd, &st) != 0) {
        err_errno(&e, ERRC_UNAVAILABLE, "cannot stat audit log '%s'", log->path);
        goto fail;
    }
    /* another process wrote, or a crash left a partial line: our cached tail is stale */
    if (!log->tail_known || st.st_size != log->tail_size) {
        if (tail_load(log, st.st_size, &e) != 0) {
            goto fail;
        }
    }
    start_size = log->tail_size;
    seq = log->tail_seq;
    memcpy(prev, log->tail_hash, sizeof(prev));
    time_format_rfc3339_ms(ts, sizeof(ts));
    for (struct audit_req *r = batch; r; r = r->next) {
        need +=
            r->bounds[NSEG * r->n] + r->n * (HASH_SUFFIX_LEN + HASH_HEX + 80 + AUDIT_NODE_MAX + 12);
    }
    buf_reset(&log->wbuf);
    buf_reserve(&log->wbuf, need);
    for (struct audit_req *r = batch; r; r = r->next) {
        r->first_seq = seq + 1;
        for (size_t i = 0; i < r->n; i++) {
            if (line_build(log, r, i, ++seq, ts, prev, &e) != 0) {
                goto fail;
            }
        }
        records += r->n;
    }
    written = true;
    if (file_write_full(log->fd, log->wbuf.data, log->wbuf.len) != 0) {
        err_errno(&e, ERRC_UNAVAILABLE, "cannot write audit log '%s'", log->path);
        goto fail;
    }
    t0 = time_mono_ns();
    if (fdatasync(log->fd) != 0) {
        err_errno(&e, ERRC_UNAVAILABLE, "cannot fsync audit log '%s'", log->path);
        goto fail;
    }
    *fsync_ns = time_mono_ns() - t0;
    log->tail_seq = seq;
    memcpy(log->tail_hash, prev, sizeof(prev));
    log->tail_size = start_size + (off_t)log->wbuf.len;
    head_write(log);
    flock(log->fd, LOCK_UN);
    for (struct audit_req *r = batch; r; r = r->next) {
        r->rc = 0;
    }
    return records;
fail:
    log_error("%s", e.msg);
    if (written && ftruncate(log->fd, start_size) != 0) {
        log_error("audit log '%s': cannot remove the records of a failed commit", log->path);
    }
    if (locked) {
        flock(log->fd, LOCK_UN);
    }
    log->tail_known = false;
    for (struct audit_req *r = batch; r; r = r->next) {
        r->rc = -1;
        err_copy(&r->err, &e);
    }
    return 0;
}

/* Queues the encoded records and waits for their commit, leading it when no commit runs. */
static int append_enc(struct audit_log *log, const char *enc, const size_t *bounds, size_t n,
                      uint64_t *first_seq, struct err *e)
{
    struct audit_req req;

    if (n == 0) {
        if (first_seq) {
            *first_seq = 0;
        }
        return 0;
    }
    memset(&req, 0, sizeof(req));
    req.enc = enc;
    req.bounds = bounds;
    req.n = n;

    pthread_mutex_lock(&log->mu);
    *log->queue_tail = &req;
    log->queue_tail = &req.next;
    while (!req.done) {
        if (log->leader) {
            pthread_cond_wait(&log->cv, &log->mu);
            continue;
        }
        log->leader = true;
        struct audit_req *batch = log->queue;
        log->queue = NULL;
        log->queue_tail = &log->queue;
        pthread_mutex_unlock(&log->mu);

        int64_t fsync_ns;
        size_t done = commit_batch(log, batch, &fsync_ns);

        pthread_mutex_lock(&log->mu);
        for (struct audit_req *r = batch, *next; r; r = next) {
            next = r->next;
            r->done = true;
        }
        log->stats.torn_cut += log->torn_cut;
        log->stats.quarantined += log->quarantined;
        log->torn_cut = log->quarantined = 0;
        log->stats.failures += done ? 0 : 1; /* a batch is never empty */
        log->stats.commits += done ? 1 : 0;
        log->stats.records += done;
        log->stats.bytes += done ? log->wbuf.len : 0;
        if (fsync_ns >= 0) {
            fsync_count(&log->stats, fsync_ns);
        }
        log->leader = false;
        pthread_cond_broadcast(&log->cv);
    }
    pthread_mutex_unlock(&log->mu);
    if (req.rc != 0) {
        err_copy(e, &req.err);
        return -1;
    }
    if (first_seq) {
        *first_seq = req.first_seq;
    }
    return 0;
}

int audit_append(struct audit_log *log, json_t *const *recs, size_t n, uint64_t *first_seq,
                 struct err *e)
{
    struct buf enc = BUF_INIT;
    size_t inline_bounds[NSEG + 1];
    size_t *bounds = n <= 1 ? inline_bounds : xcalloc(NSEG * n + 1, sizeof(*bounds));
    int rc = -1;

    buf_reserve(&enc, 256 * n);
    for (size_t i = 0; i < n; i++) {
        if (rec_encode(recs[i], i, n, &enc, bounds + NSEG * i, e) != 0) {
            goto out;
        }
    }
    bounds[NSEG * n] = enc.len;
    rc = append_enc(log, enc.data, bounds, n, first_seq, e);
out:
    if (bounds != inline_bounds) {
        xfree(bounds);
    }
    buf_release(&enc);
    return rc;
}

/* ---- records built without Jansson ---- */

void audit_batch_begin(struct audit_batch *b)
{
    b->bounds = xgrow(b->bounds, sizeof(*b->bounds), NSEG * (b->n + 1) + 1, &b->cap);
    b->bounds[NSEG * b->n] = b->enc.len;
    b->seg = 0;
    b->last_key = NULL;
}

static void batch_key(struct audit_batch *b, const char *key)
{
    BUG_ON(b->last_key && strcmp(b->last_key, key) >= 0);
    for (size_t r = 0; r < ARRAY_LEN(reserved_keys); r++) {
        BUG_ON(strcmp(key, reserved_keys[r]) == 0);
    }
    b->last_key = key;
    size_t s = key_segment(key);
    while (b->seg < s) {
        b->bounds[NSEG * b->n + ++b->seg] = b->enc.len;
    }
    buf_addch(&b->enc, ',');
    BUG_ON(add_jstr(&b->enc, key, strlen(key)) != 0);
    buf_addch(&b->enc, ':');
}

void audit_batch_str(struct audit_batch *b, const char *key, const char *value)
{
    batch_key(b, key);
    if (add_jstr(&b->enc, value, strlen(value)) != 0) {
        if (b->bad_code == ERRC_OK) {
            b->bad_code = ERRC_INVALID;
            b->bad_rec = b->n;
            b->bad_key = key;
        }
        buf_addstr(&b->enc, "\"\"");
    }
}

void audit_batch_text(struct audit_batch *b, const char *key, const char *value)
{
    batch_key(b, key);
    add_jstr_mode(&b->enc, value, strlen(value), true);
}

void audit_batch_end(struct audit_batch *b)
{
    while (b->seg < NSEG - 1) {
        b->bounds[NSEG * b->n + ++b->seg] = b->enc.len;
    }
    if (b->enc.len - b->bounds[NSEG * b->n] > RECORD_MAX && b->bad_code == ERRC_OK) {
        b->bad_code = ERRC_TOO_LARGE;
        b->bad_rec = b->n;
    }
    b->n++;
    b->bounds[NSEG * b->n] = b->enc.len;
}

void audit_batch_reset(struct audit_batch *b)
{
    buf_reset(&b->enc);
    b->n = 0;
    b->seg = 0;
    b->last_key = NULL;
    b->bad_code = ERRC_OK;
}

void audit_batch_release(struct audit_batch *b)
{
    buf_release(&b->enc);
    xfree(b->bounds);
    memset(b, 0, sizeof(*b));
}

int audit_append_batch(struct audit_log *log, const struct audit_batch *b, uint64_t *first_seq,
                       struct err *e)
{
    if (b->bad_code == ERRC_TOO_LARGE) {
        return err_set(e, ERRC_TOO_LARGE, "audit record %zu of %zu is larger than %u bytes",
                       b->bad_rec + 1, b->n, RECORD_MAX);
    }
    if (b->bad_code != ERRC_OK) {
        return err_set(e, ERRC_INVALID, "audit record %zu of %zu: \"%s\" is not UTF-8",
                       b->bad_rec + 1, b->n, b->bad_key);
    }
    return append_enc(log, b->enc.data, b->bounds, b->n, first_seq, e);
}

/* ---- reading: verify and foreach ---- */

struct reader {
    int fd;
    struct buf b;
    size_t pos;
    bool eof;
};

enum {
    RD_END,
    RD_LINE,
    RD_TOO_LONG
};

/* The next line (without its newline) in *line, *len; *complete is false for a last line that
 * has no newline. Returns RD_* or -1 on a read error. */
static int reader_next(struct reader *r, const char **line, size_t *len, bool *complete,
                       struct err *e)
{
    size_t scanned = 0;
    for (;;) {
        char *start = r->b.data + r->pos;
        size_t avail = r->b.len - r->pos;
        char *nl = avail > scanned ? memchr(start + scanned, '\n', avail - scanned) : NULL;
        if (nl) {
            *line = start;
            *len = (size_t)(nl - start);
            *complete = true;
            r->pos += *len + 1;
            return RD_LINE;
        }
        scanned = avail;
        if (r->eof) {
            if (avail == 0) {
                return RD_END;
            }
            *line = start;
            *len = avail;
            *complete = false;
            r->pos = r->b.len;
            return RD_LINE;
        }
        if (avail > LINE_MAX_READ) {
            return RD_TOO_LONG;
        }
        if (r->pos > 0) {
            memmove(r->b.data, start, avail);
            r->b.len = avail;
            r->pos = 0;
        }
        buf_reserve(&r->b, 65536);
        ssize_t n = read(r->fd, r->b.data + r->b.len, r->b.cap - r->b.len - 1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return err_errno(e, ERRC_UNAVAILABLE, "cannot read audit log");
        }
        if (n == 0) {
            r->eof = true;
        }
        r->b.len += (size_t)n;
        r->b.data[r->b.len] = '\0';
    }
}

struct walk {
    const char *path;
    struct hasher h;
    bool strict; /* foreach: a seq jump is a problem at once */
    uint64_t lines;
    uint64_t last_seq;
    char last_hash[HASH_HEX + 1];
    /* a forward jump waits for its verdict: a later line may show it was a reordering */
    uint64_t gap_line, gap_seq, gap_missing;
    bool head_present;
    uint64_t head_seq;
    char head_hash[HASH_HEX + 1];
    struct audit_report *rep;
};

static void report(struct walk *w, enum audit_problem p, uint64_t line, const char *fmt, ...)
    ATTR_PRINTF(4, 5);

static void report(struct walk *w, enum audit_problem p, uint64_t line, const char *fmt, ...)
{
    va_list ap;
    w->rep->problem = p;
    w->rep->line = line;
    va_start(ap, fmt);
    vsnprintf(w->rep->message, sizeof(w->rep->message), fmt, ap);
    va_end(ap);
}

static void report_gap(struct walk *w)
{
    report(w, AUDIT_REMOVED, w->gap_line,
           "line %" PRIu64 ": %" PRIu64 " record%s missing before seq %" PRIu64, w->gap_line,
           w->gap_missing, w->gap_missing == 1 ? "" : "s", w->gap_seq);
}

/* Checks a line's place in the chain; false when it is a problem (reported). */
static bool walk_link(struct walk *w, const struct line_rec *lr, uint64_t line)
{
    if (lr->seq <= w->last_seq) {
        if (lr->seq == w->last_seq) {
            report(w, AUDIT_REORDERED, line, "line %" PRIu64 ": duplicate (seq %" PRIu64 " again)",
                   line, lr->seq);
        } else {
            report(w, AUDIT_REORDERED, line,
                   "line %" PRIu64 ": out of order (seq %" PRIu64 " after %" PRIu64 ")", line,
                   lr->seq, w->last_seq);
        }
        return false;
    }
    if (lr->seq > w->last_seq + 1) {
        if (w->gap_line == 0) {
            w->gap_line = line;
            w->gap_seq = lr->seq;
            w->gap_missing = lr->seq - w->last_seq - 1;
        }
        if (w->strict) {
            report_gap(w);
            return false;
        }
    } else if (memcmp(lr->prev, w->last_hash, HASH_HEX) != 0) {
        if (w->gap_line) {
            report_gap(w);
        } else if (line == 1) {
            report(w, AUDIT_EDITED, line,
                   "line 1: chain broken (the first record's prev is not zero)");
        } else {
            report(w, AUDIT_EDITED, line,
                   "line %" PRIu64 ": chain broken (prev does not match the hash of line %" PRIu64
                   ", which was rewritten)",
                   line, line - 1);
        }
        return false;
    }
    if (w->head_present && lr->seq == w->head_seq &&
        memcmp(lr->hash, w->head_hash, HASH_HEX) != 0) {
        report(w, AUDIT_EDITED, line,
               "line %" PRIu64 ": the head file records another hash for seq %" PRIu64
               " (the log was rewritten)",
               line, lr->seq);
        return false;
    }
    w->last_seq = lr->seq;
    memcpy(w->last_hash, lr->hash, HASH_HEX + 1);
    return true;
}

/* Walks the file at fd. Returns -1 on errors, 0 when the walk ended (w->rep says how), or fn's
 * non-zero value in *fn_rc. */
static int walk_file(int fd, struct walk *w, audit_record_fn *fn, void *arg, int *fn_rc,
                     struct err *e)
{
    struct reader rd = { fd, BUF_INIT, 0, false };
    struct line_rec lr;
    char why[200];
    const char *line = NULL;
    size_t len = 0;
    bool complete;
    int rc = -1;

    memcpy(w->last_hash, ZERO_HASH, HASH_HEX + 1);
    *fn_rc = 0;
    for (;;) {
        int r = reader_next(&rd, &line, &len, &complete, e);
        if (r < 0) {
            goto out;
        }
        if (r == RD_END) {
            break;
        }
        uint64_t ln = w->lines + 1;
        if (r == RD_TOO_LONG) {
            report(w, AUDIT_MALFORMED, ln, "line %" PRIu64 ": malformed (longer than %u bytes)", ln,
                   LINE_MAX_READ);
            break;
        }
        if (!complete && w->strict) {
            /* replay: a crash's leftover, never acknowledged, cut by the next writer */
            log_warn("audit log '%s': ignoring an incomplete last line %" PRIu64 " (%zu bytes) "
                     "left by a writer that stopped mid-write",
                     w->path, ln, len);
            break;
        }
        if (!complete) {
            report(w, AUDIT_TRUNCATED, ln, "line %" PRIu64 ": truncated (incomplete last line)",
                   ln);
            break;
        }
        int prob = line_check(&w->h, line, len, fn != NULL, &lr, why, sizeof(why), e);
        if (prob < 0) {
            goto out;
        }
        if (prob != AUDIT_OK) {
            report(w, (enum audit_problem)prob, ln, "line %" PRIu64 ": %s", ln, why);
            break;
        }
        if (!walk_link(w, &lr, ln)) {
            json_decref(lr.obj);
            break;
        }
        w->lines = ln;
        w->rep->records++;
        if (fn) {
            *fn_rc = fn(arg, lr.obj, ln);
            json_decref(lr.obj);
            if (*fn_rc != 0) {
                rc = 0;
                goto out;
            }
        }
    }
    /* an unexplained jump comes before whatever was found after it */
    if (w->gap_line && (w->rep->problem == AUDIT_OK || w->rep->line > w->gap_line) &&
        w->rep->problem != AUDIT_REORDERED) {
        report_gap(w);
    }
    if (w->rep->problem == AUDIT_OK && w->head_present && w->head_seq > w->last_seq) {
        report(w, AUDIT_TRUNCATED, w->lines + 1,
               "log ends at seq %" PRIu64 " but the head file records seq %" PRIu64
               ": lines were removed from the end",
               w->last_seq, w->head_seq);
    }
    rc = 0;
out:
    buf_release(&rd.b);
    return rc;
}

static int open_for_reading(const char *path, struct err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return err_errno(e, errno == ENOENT ? ERRC_NOT_FOUND : ERRC_UNAVAILABLE,
                         "cannot open audit log '%s'", path);
    }
    return fd;
}

int audit_verify(const char *path, bool check_head, struct audit_report *report_out, struct err *e)
{
    struct walk w;
    struct buf head_path = BUF_INIT;
    struct err herr = ERR_INIT;
    bool head_bad = false;
    int fd = -1, fn_rc, rc = -1;

    memset(&w, 0, sizeof(w));
    memset(report_out, 0, sizeof(*report_out));
    w.rep = report_out;
    w.path = path;
    fd = open_for_reading(path, e);
    if (fd < 0) {
        goto out;
    }
    if (check_head) {
        /* writers update the head under an exclusive lock: read it under a shared one, and
         * before the log, so the log read next is at least as long as the head says */
        if (lock_file(fd, LOCK_SH) != 0) {
            err_errno(e, ERRC_UNAVAILABLE, "cannot lock audit log '%s'", path);
            goto out;
        }
        buf_addf(&head_path, "%s.head", path);
        if (head_read(head_path.data, &w.head_present, &w.head_seq, w.head_hash, &herr) != 0) {
            head_bad = true;
        }
        flock(fd, LOCK_UN);
    }
    if (hasher_init(&w.h, e) != 0 || walk_file(fd, &w, NULL, NULL, &fn_rc, e) != 0) {
        goto out;
    }
    if (head_bad && report_out->problem == AUDIT_OK) {
        report(&w, AUDIT_MALFORMED, 0, "%s", herr.msg);
    }
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
    }
    hasher_release(&w.h);
    buf_release(&head_path);
    return rc;
}

int audit_foreach(const char *path, audit_record_fn *fn, void *arg, struct err *e)
{
    struct walk w;
    struct audit_report rep;
    int fd = -1, fn_rc = 0, rc = -1;

    memset(&w, 0, sizeof(w));
    memset(&rep, 0, sizeof(rep));
    w.rep = &rep;
    w.path = path;
    w.strict = true;
    fd = open_for_reading(path, e);
    if (fd < 0) {
        goto out;
    }
    if (hasher_init(&w.h, e) != 0 || walk_file(fd, &w, fn, arg, &fn_rc, e) != 0) {
        goto out;
    }
    if (fn_rc != 0) {
        rc = fn_rc;
        goto out;
    }
    if (rep.problem != AUDIT_OK) {
        err_set(e, ERRC_INVALID, "audit log '%s': %s", path, rep.message);
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
    }
    hasher_release(&w.h);
    return rc;
}

/* ---- looking back from the end (audit_find_last) ---- */

#define FIND_WINDOW (2u << 20) /* bytes read at a time; a line is at most 1 MiB */

/* One line seen looking back: 1 = the record sought, 2 = at or below after (stop), 0 = go on. */
static int find_line(const char *line, size_t len, const char *type, const char *key,
                     const char *value, uint64_t after, uint64_t *seq)
{
    json_t *o = json_loadb(line, len, 0, NULL);
    json_t *s = json_object_get(o, "seq");
    const char *t = json_string_value(json_object_get(o, "type"));
    const char *v = key ? json_string_value(json_object_get(o, key)) : NULL;
    int rc = 0;
    if (!json_is_integer(s) || json_integer_value(s) < 0) {
        log_warn("audit: a line that is not a record (skipped looking for a record)");
    } else if ((uint64_t)json_integer_value(s) <= after) {
        rc = 2;
    } else if (type == NULL ||
               (t != NULL && strcmp(t, type) == 0 && v != NULL && strcmp(v, value) == 0)) {
        *seq = (uint64_t)json_integer_value(s);
        rc = 1;
    }
    json_decref(o);
    return rc;
}

/* The line found at `at` is still there with no commit running. */
static bool line_durable(int fd, const char *line, size_t len, off_t at)
{
    char *again = xmalloc(len);
    bool same = false;
    if (lock_file(fd, LOCK_SH) == 0) {
        same = pread_full(fd, again, len, at) == 0 && memcmp(again, line, len) == 0;
        flock(fd, LOCK_UN);
    }
    xfree(again);
    return same;
}

int audit_find_last(const char *path, const char *type, const char *key, const char *value,
                    uint64_t after, uint64_t *seq, bool *found, struct err *e)
{
    int fd, rc = -1;
    char *win = NULL;
    struct stat st;
    off_t end;
    bool tail = true;
    *seq = 0;
    *found = false;
    if (type != NULL && (key == NULL || value == NULL)) {
        return err_set(e, ERRC_INVALID, "audit: a look-back by type needs a key and a value");
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? 0
                               : err_errno(e, ERRC_UNAVAILABLE, "cannot open audit log '%s'", path);
    }
    if (fstat(fd, &st) != 0) {
        err_errno(e, ERRC_UNAVAILABLE, "cannot stat audit log '%s'", path);
        goto out;
    }
    win = xmalloc(FIND_WINDOW);
    end = st.st_size;
    while (end > 0) {
        off_t wstart = end > (off_t)FIND_WINDOW ? end - (off_t)FIND_WINDOW : 0;
        size_t len = (size_t)(end - wstart), p = len;
        if (pread_full(fd, win, len, wstart) != 0) {
            err_errno(e, ERRC_UNAVAILABLE, "cannot read audit log '%s'", path);
            goto out;
        }
        if (tail) { /* a writer may be in the middle of its line: from the last newline */
            while (p > 0 && win[p - 1] != '\n') {
                p--;
            }
            if (p == 0) { /* no newline in this window: look further back */
                end = wstart;
                continue;
            }
            tail = false;
        }
        while (p > 0) {
            size_t nl = p - 1, b = nl;
            int r;
            while (b > 0 && win[b - 1] != '\n') {
                b--;
            }
            if (b == 0 && wstart > 0) {
                break; /* starts before the window */
            }
            r = find_line(win + b, nl - b, type, key, value, after, seq);
            if (r == 1) {
                *found = line_durable(fd, win + b, nl - b + 1, wstart + (off_t)b);
                rc = 0;
                goto out;
            }
            if (r == 2) {
                rc = 0;
                goto out;
            }
            p = b;
        }
        if (p == len && wstart > 0) {
            err_set(e, ERRC_INTERNAL, "audit log '%s': a line longer than %u bytes before offset "
                    "%lld", path, FIND_WINDOW, (long long)end);
            goto out;
        }
        end = wstart + (off_t)p;
    }
    rc = 0;
out:
    if (rc != 0 || !*found) {
        *seq = 0;
    }
    xfree(win);
    close(fd);
    return rc;
}
