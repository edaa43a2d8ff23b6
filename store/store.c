/*
 * Synchronous Redis client on hiredis 0.14.1. Commands are encoded by us as RESP arguments
 * (binary safe, no format-string injection) into one buffer per batch, handed to hiredis in one
 * piece and their replies read in order: one round trip per call however many records it
 * carries. jitrd calls store_serials_reserve(), store_certs_index() and store_buckets_take()
 * once per signing batch, so a batch costs one buffer append per argument and no allocation
 * on the encoding side (struct cmdbuf below).
 */
#include "store/store.h"

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/conf.h"
#include "core/mem.h"
#include "core/util.h"

#define STORE_TIMEOUT_MS 5000
/* per sentinel asked: a sentinel that does not answer soon is skipped for the next */
#define STORE_SENTINEL_TIMEOUT_MS 1000

/* store/bucket.lua without its comments; tests/unit/store checks the two agree. */
const char store_bucket_lua[] =
    "local rate = tonumber(ARGV[1])\n"
    "local burst = tonumber(ARGV[2])\n"
    "local cost = tonumber(ARGV[3])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "local tokens = tonumber(b[1]) or burst\n"
    "local ts = tonumber(b[2]) or now\n"
    "if now > ts then\n"
    "  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)\n"
    "else\n"
    "  now = ts\n"
    "end\n"
    "local allowed, wait = 0, 0\n"
    "if tokens >= cost then\n"
    "  tokens = tokens - cost\n"
    "  allowed = 1\n"
    "else\n"
    "  wait = math.ceil((cost - tokens) * 1000 / rate)\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', now)\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)\n"
    "return {allowed, wait}\n";

/*
 * One batch of commands, encoded as RESP ("*argc\r\n" then "$len\r\n" arg "\r\n" per argument)
 * straight into one buffer: no per-command or per-argument allocation, keys and numbers are
 * written in place. The store keeps one cmdbuf for its whole life, so in the steady state a
 * batch allocates nothing (cmd_batch() rewinds it; cmd_run() gives back a buffer that a very
 * large batch grew beyond CMDBUF_KEEP). A command is cmd_begin(cb, argc) followed by exactly
 * argc cmd_arg*() calls; cmd_run() refuses a batch whose counts disagree (a bug here, but the
 * alternative is a misframed pipeline).
 */
struct cmdbuf {
    struct buf out;
    size_t n;             /* commands in out */
    size_t args_declared; /* sum of the commands' argc */
    size_t args_written;
};

struct store {
    redisContext *rc;
    char display[300];
    struct cmdbuf cb; /* the batch being built; empty between calls */
    char fence[160];  /* store_fence(): batches run only while index:lock holds this */
};

/* ---- index completeness: the guarded reads (see store.h) ---- */

#define INCOMPLETE_LUA                                                                      \
    "if redis.call('EXISTS', KEYS[1]) == 0 then\n"                                          \
    "  return redis.error_reply('" STORE_INDEX_INCOMPLETE " the index is being rebuilt')\n" \
    "end\n"

const char store_index_get_lua[] = INCOMPLETE_LUA "return redis.call('GET', KEYS[2])\n";
const char store_index_hgetall_lua[] = INCOMPLETE_LUA "return redis.call('HGETALL', KEYS[2])\n";
const char store_index_heal_lock_lua[] =
    "if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end\n"
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end\n"
    "return 0\n";

/* KEYS[1] index:ready, KEYS[2] ca:blocked, KEYS[3..] serial:<hex>; ARGV[1] the CA. One
 * character per serial: 1 reserved now, 0 taken already. A CA blocked for compromise reserves
 * nothing (STORE_CA_BLOCKED_ERR): every certificate takes this script, whichever path. */
static const char reserve_lua[] =
    INCOMPLETE_LUA "if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then\n"
                   "  return redis.error_reply('" STORE_CA_BLOCKED_ERR " ' .. ARGV[1])\n"
                   "end\n"
                   "local n = #KEYS - 2\n"
                   /* the common case, every serial new and distinct: one MSETNX (all or
                    * nothing) instead of a SET NX each; unpack's stack limits its size */
                   "if n > 1 and n <= 1000 then\n"
                   "  local a, seen, dup = {}, {}, false\n"
                   "  for i = 3, #KEYS do\n"
                   "    if seen[KEYS[i]] then dup = true break end\n"
                   "    seen[KEYS[i]] = true\n"
                   "    a[#a + 1] = KEYS[i]\n"
                   "    a[#a + 1] = ARGV[1]\n"
                   "  end\n"
                   "  if not dup and redis.call('MSETNX', unpack(a)) == 1 then\n"
                   "    return string.rep('1', n)\n"
                   "  end\n"
                   "end\n"
                   "local r = {}\n"
                   "for i = 3, #KEYS do\n"
                   "  r[i - 2] = redis.call('SET', KEYS[i], ARGV[1], 'NX') and '1' or '0'\n"
                   "end\n"
                   "return table.concat(r)\n";

int store_err_set_index_incomplete(struct err *e)
{
    err_set(e, ERRC_UNAVAILABLE,
            "the index of issued certificates is incomplete (Redis lost its data) and is being "
            "rebuilt from the audit log; try again shortly");
    if (e != NULL) {
        snprintf(e->detail, sizeof(e->detail), "%s", STORE_INDEX_INCOMPLETE);
    }
    return -1;
}

bool store_err_index_incomplete(const struct err *e)
{
    return e != NULL && e->code == ERRC_UNAVAILABLE &&
           strstr(e->detail, STORE_INDEX_INCOMPLETE) != NULL;
}

/* host[:port] or [v6]:port (len bytes at p) into host and *port (left alone when absent). */
static int hostport_parse(const char *p, size_t len, const char *shown, char *host, size_t cap,
                          int *port, struct err *e)
{
    char hp[300];
    if (len == 0 || len >= sizeof(hp)) {
        return err_set(e, ERRC_INVALID, "redis URL '%s': missing host", shown);
    }
    memcpy(hp, p, len);
    hp[len] = '\0';
    char *h = hp, *pt = NULL;
    if (hp[0] == '[') {
        char *end = strchr(hp, ']');
        if (end == NULL) {
            return err_set(e, ERRC_INVALID, "redis URL '%s': unterminated [IPv6] host", shown);
        }
        *end = '\0';
        h = hp + 1;
        if (end[1] == ':') {
            pt = end + 2;
        } else if (end[1] != '\0') {
            return err_set(e, ERRC_INVALID, "redis URL '%s': bad host", shown);
        }
    } else {
        char *c = strchr(hp, ':');
        if (c) {
            *c = '\0';
            pt = c + 1;
        }
    }
    if (*h == '\0' || strlen(h) >= cap) {
        return err_set(e, ERRC_INVALID, "redis URL '%s': bad host", shown);
    }
    memcpy(host, h, strlen(h) + 1);
    if (pt) {
        uint64_t v;
        if (str_to_u64(pt, &v) != 0 || v == 0 || v > 65535) {
            return err_set(e, ERRC_INVALID, "redis URL '%s': bad port '%s'", shown, pt);
        }
        *port = (int)v;
    }
    return 0;
}

/* redis-sentinel://host[:port][,host[:port]...]/master[/db] after its userinfo (p). */
static int sentinel_parse(const char *p, const char *shown, struct store_url *out, struct err *e)
{
    const char *slash = strchr(p, '/');
    if (slash == NULL || slash[1] == '\0' || slash[1] == '/') {
        return err_set(e, ERRC_INVALID,
                       "redis URL '%s': expected redis-sentinel://host:port[,host:port...]/master"
                       "[/db]",
                       shown);
    }
    for (const char *h = p; h < slash;) {
        const char *comma = memchr(h, ',', (size_t)(slash - h));
        const char *end = comma ? comma : slash;
        if (out->nsentinels == STORE_SENTINELS_MAX) {
            return err_set(e, ERRC_INVALID, "redis URL '%s': more than %d sentinels", shown,
                           STORE_SENTINELS_MAX);
        }
        out->sentinel[out->nsentinels].port = 26379;
        if (hostport_parse(h, (size_t)(end - h), shown, out->sentinel[out->nsentinels].host,
                           sizeof(out->sentinel[0].host), &out->sentinel[out->nsentinels].port,
                           e) != 0) {
            return -1;
        }
        out->nsentinels++;
        h = comma ? comma + 1 : slash;
        if (comma && h == slash) {
            return err_set(e, ERRC_INVALID, "redis URL '%s': missing host", shown);
        }
    }
    if (out->nsentinels == 0) {
        return err_set(e, ERRC_INVALID, "redis URL '%s': missing host", shown);
    }
    const char *name = slash + 1;
    const char *dbs = strchr(name, '/');
    size_t len = dbs ? (size_t)(dbs - name) : strlen(name);
    if (len >= sizeof(out->master)) {
        return err_set(e, ERRC_INVALID, "redis URL '%s': master name too long", shown);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= ' ' || c >= 0x7f || c == '?' || c == '#') {
            return err_set(e, ERRC_INVALID, "redis URL '%s': bad master name", shown);
        }
    }
    memcpy(out->master, name, len);
    if (dbs && dbs[1]) {
        uint64_t db;
        if (str_to_u64(dbs + 1, &db) != 0 || db > 1000) {
            return err_set(e, ERRC_INVALID, "redis URL '%s': bad database '%s'", shown, dbs + 1);
        }
        out->db = (int)db;
    }
    return 0;
}

/* The parse proper; messages show the URL as shown (its password redacted). */
static int url_parse(const char *url, const char *shown, struct store_url *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (str_has_prefix(url, "unix://")) {
        const char *p = url + strlen("unix://");
        const char *q = strchr(p, '?');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == 0 || len >= sizeof(out->path) || p[0] != '/') {
            return err_set(e, ERRC_INVALID, "redis URL '%s': expected unix:///absolute/path",
                           shown);
        }
        memcpy(out->path, p, len);
        if (q) {
            uint64_t db;
            if (!str_has_prefix(q, "?db=") || str_to_u64(q + 4, &db) != 0 || db > 1000) {
                return err_set(e, ERRC_INVALID, "redis URL '%s': bad query (only ?db=N)", shown);
            }
            out->db = (int)db;
        }
        return 0;
    }
    bool sentinel = str_has_prefix(url, "redis-sentinel://");
    if (!sentinel && !str_has_prefix(url, "redis://")) {
        return err_set(e, ERRC_INVALID,
                       "redis URL '%s': must start with redis://, redis-sentinel:// or unix://",
                       shown);
    }
    const char *p = strstr(url, "://") + 3;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        size_t len = (size_t)(at - pw);
        if (len >= sizeof(out->password)) {
            return err_set(e, ERRC_INVALID, "redis URL: password too long");
        }
        memcpy(out->password, pw, len);
        p = at + 1;
    }
    if (sentinel) {
        return sentinel_parse(p, shown, out, e);
    }
    const char *slash = strchr(p, '/');
    size_t hostport = slash ? (size_t)(slash - p) : strlen(p);
    if (hostport_parse(p, hostport, shown, out->host, sizeof(out->host), &out->port, e) != 0) {
        return -1;
    }
    if (slash && slash[1]) {
        uint64_t db;
        if (str_to_u64(slash + 1, &db) != 0 || db > 1000) {
            return err_set(e, ERRC_INVALID, "redis URL '%s': bad database '%s'", shown, slash + 1);
        }
        out->db = (int)db;
    }
    return 0;
}

int store_url_parse(const char *url, struct store_url *out, struct err *e)
{
    struct buf shown = BUF_INIT;
    conf_redact(NULL, url, &shown);
    int rc = url_parse(url, buf_cstr(&shown), out, e);
    buf_release(&shown);
    return rc;
}

void store_url_display(const struct store_url *u, char *out, size_t cap)
{
    if (u->master[0]) {
        struct buf b = BUF_INIT;
        buf_addstr(&b, "redis-sentinel://");
        for (size_t i = 0; i < u->nsentinels; i++) {
            const char *h = u->sentinel[i].host;
            buf_addf(&b, strchr(h, ':') ? "%s[%s]:%d" : "%s%s:%d", i ? "," : "", h,
                     u->sentinel[i].port);
        }
        buf_addf(&b, "/%s/%d", u->master, u->db);
        snprintf(out, cap, "%s", buf_cstr(&b));
        buf_release(&b);
    } else if (u->path[0]) {
        snprintf(out, cap, "unix://%s", u->path);
    } else if (strchr(u->host, ':')) {
        snprintf(out, cap, "redis://[%s]:%d/%d", u->host, u->port, u->db);
    } else {
        snprintf(out, cap, "redis://%s:%d/%d", u->host, u->port, u->db);
    }
}

static int store_fail(struct store *s, struct err *e, const char *what)
{
    return err_set(e, ERRC_UNAVAILABLE, "redis at %s: %s: %s", s->display, what,
                   s->rc && s->rc->err ? s->rc->errstr : "unexpected reply");
}

#define CMDBUF_KEEP (1024 * 1024)

/* A string literal as one argument, without a strlen. */
#define CMD_LIT(cb, lit) cmd_arg((cb), "" lit, sizeof(lit) - 1)

/* Starts a batch on the store's cmdbuf (dropping whatever an abandoned batch left). */
static struct cmdbuf *cmd_batch(struct store *s)
{
    buf_reset(&s->cb.out);
    s->cb.n = 0;
    s->cb.args_declared = 0;
    s->cb.args_written = 0;
    return &s->cb;
}

/* buf_reserve() unless the room is there already (the common case once the buffer has grown) */
static inline void cmd_reserve(struct cmdbuf *cb, size_t extra)
{
    if (cb->out.cap - cb->out.len <= extra) {
        buf_reserve(&cb->out, extra);
    }
}

static void cmd_begin(struct cmdbuf *cb, size_t argc)
{
    cmd_reserve(cb, 20 + 3);
    char *w = cb->out.data + cb->out.len;
    *w++ = '*';
    w += u64_to_dec(w, argc);
    *w++ = '\r';
    *w++ = '\n';
    *w = '\0';
    cb->out.len = (size_t)(w - cb->out.data);
    cb->n++;
    cb->args_declared += argc;
}

/* Appends "$len\r\n" with room for the len bytes and their "\r\n"; returns where the bytes
 * go. cmd_arg_close() ends the argument. */
static char *cmd_arg_open(struct cmdbuf *cb, size_t len)
{
    if (len > SIZE_MAX / 2) {
        oom_die(len);
    }
    cmd_reserve(cb, 20 + 5 + len);
    char *w = cb->out.data + cb->out.len;
    *w++ = '$';
    w += u64_to_dec(w, len);
    *w++ = '\r';
    *w++ = '\n';
    return w;
}

static void cmd_arg_close(struct cmdbuf *cb, char *w)
{
    *w++ = '\r';
    *w++ = '\n';
    *w = '\0';
    cb->out.len = (size_t)(w - cb->out.data);
    cb->args_written++;
}

static void cmd_arg(struct cmdbuf *cb, const void *p, size_t len)
{
    char *w = cmd_arg_open(cb, len);
    if (len) {
        memcpy(w, p, len);
    }
    cmd_arg_close(cb, w + len);
}

static void cmd_str(struct cmdbuf *cb, const char *str)
{
    cmd_arg(cb, str, strlen(str));
}

static void cmd_u64(struct cmdbuf *cb, uint64_t v)
{
    char tmp[20];
    cmd_arg(cb, tmp, u64_to_dec(tmp, v));
}

/* STORE_PREFIX kind id suffix as one argument, e.g. "jitrca:" "cert:" "0a1b" "" */
static void cmd_key(struct cmdbuf *cb, const char *kind, const char *id, const char *suffix)
{
    size_t pl = sizeof(STORE_PREFIX) - 1, kl = strlen(kind), il = strlen(id);
    size_t sl = strlen(suffix);
    char *w = cmd_arg_open(cb, pl + kl + il + sl);
    memcpy(w, STORE_PREFIX, pl);
    w += pl;
    memcpy(w, kind, kl);
    w += kl;
    memcpy(w, id, il);
    w += il;
    memcpy(w, suffix, sl);
    cmd_arg_close(cb, w + sl);
}

/*
 * Lean replies. Where only a reply's type matters (SET NX's OK or nil, the acks of the index
 * writes), cmd_run_lean() reads with lean_fns: a top-level status, integer, nil or bulk string
 * is not allocated but answered by a shared reply of that type (type only: no str, no
 * integer); errors (whose text goes into the message), arrays and everything inside arrays are
 * still built by hiredis's own functions, which the reader's privdata points to for the
 * duration of the read (hiredis copies it into every read task). reply_free() tells the two
 * kinds apart; nothing ever writes to the shared replies.
 */
static redisReply lean_string = { .type = REDIS_REPLY_STRING };
static redisReply lean_status = { .type = REDIS_REPLY_STATUS };
static redisReply lean_integer = { .type = REDIS_REPLY_INTEGER };
static redisReply lean_nil = { .type = REDIS_REPLY_NIL };

static bool reply_is_lean(const redisReply *r)
{
    return r == &lean_string || r == &lean_status || r == &lean_integer || r == &lean_nil;
}

static void reply_free(void *r)
{
    if (r != NULL && !reply_is_lean(r)) {
        freeReplyObject(r);
    }
}

static redisReplyObjectFunctions *lean_hiredis(const redisReadTask *t)
{
    return t->privdata;
}

static void *lean_create_string(const redisReadTask *t, char *str, size_t len)
{
    if (t->parent != NULL || t->type == REDIS_REPLY_ERROR) {
        return lean_hiredis(t)->createString(t, str, len);
    }
    return t->type == REDIS_REPLY_STATUS ? &lean_status : &lean_string;
}

static void *lean_create_array(const redisReadTask *t, int elements)
{
    return lean_hiredis(t)->createArray(t, elements);
}

static void *lean_create_integer(const redisReadTask *t, long long v)
{
    return t->parent != NULL ? lean_hiredis(t)->createInteger(t, v) : &lean_integer;
}

static void *lean_create_nil(const redisReadTask *t)
{
    return t->parent != NULL ? lean_hiredis(t)->createNil(t) : &lean_nil;
}

/* Designated: hiredis 1.x inserts createDouble/createBool in this struct (RESP3 only). */
static redisReplyObjectFunctions lean_fns = {
    .createString = lean_create_string,
    .createArray = lean_create_array,
    .createInteger = lean_create_integer,
    .createNil = lean_create_nil,
    .freeObject = reply_free,
};

static void replies_free(redisReply **r, size_t n);

/* One reply of a command sent with redisAppendCommand (NULL: the connection failed). */
static redisReply *reply_next(struct store *s)
{
    void *x = NULL;
    if (redisGetReply(s->rc, &x) != REDIS_OK) {
        return NULL;
    }
    return x;
}

/* The batch as a transaction that runs only while index:lock holds s->fence: WATCH and GET the
 * lock (one round trip), then MULTI, the batch, EXEC (another). The n replies of the batch are
 * the elements of EXEC's array, moved into r. */
static int run_fenced(struct store *s, redisReply **r, size_t *got, struct err *e)
{
    struct cmdbuf *cb = &s->cb;
    redisReply *w = NULL, *g = NULL, *x = NULL;
    bool queued_bad = false;
    int rc = -1;
    if (redisAppendCommand(s->rc, "WATCH %s", STORE_INDEX_LOCK) != REDIS_OK ||
        redisAppendCommand(s->rc, "GET %s", STORE_INDEX_LOCK) != REDIS_OK ||
        (w = reply_next(s)) == NULL || (g = reply_next(s)) == NULL) {
        rc = store_fail(s, e, "cannot check the index lock");
        goto out;
    }
    if (g->type != REDIS_REPLY_STRING || strcmp(g->str, s->fence) != 0) {
        freeReplyObject(w);
        w = NULL;
        if (redisAppendCommand(s->rc, "UNWATCH") != REDIS_OK || (w = reply_next(s)) == NULL) {
            rc = store_fail(s, e, "UNWATCH");
            goto out;
        }
        rc = err_set(e, ERRC_CONFLICT,
                     "lost the index rebuild lock (it expired; another process may be "
                     "rebuilding the index now)");
        goto out;
    }
    freeReplyObject(w);
    w = NULL;
    if (redisAppendCommand(s->rc, "MULTI") != REDIS_OK ||
        redisAppendFormattedCommand(s->rc, cb->out.data, cb->out.len) != REDIS_OK ||
        redisAppendCommand(s->rc, "EXEC") != REDIS_OK) {
        rc = store_fail(s, e, "cannot send");
        goto out;
    }
    for (size_t i = 0; i < cb->n + 1; i++) { /* MULTI's OK, then QUEUED per command */
        redisReply *q = reply_next(s);
        if (q == NULL) {
            rc = store_fail(s, e, "no reply");
            goto out;
        }
        if (q->type == REDIS_REPLY_ERROR && !queued_bad) {
            /* EXEC will discard the transaction (EXECABORT); every reply is read still */
            err_set(e, ERRC_UNAVAILABLE, "redis at %s: %s", s->display, q->str);
            queued_bad = true;
        }
        freeReplyObject(q);
    }
    if ((x = reply_next(s)) == NULL) {
        rc = store_fail(s, e, "no reply to EXEC");
        goto out;
    }
    if (queued_bad) {
        goto out;
    }
    if (x->type == REDIS_REPLY_NIL) {
        rc = err_set(e, ERRC_CONFLICT,
                     "lost the index rebuild lock (it changed hands during a write)");
        goto out;
    }
    if (x->type != REDIS_REPLY_ARRAY || x->elements != cb->n) {
        rc = store_fail(s, e, x->type == REDIS_REPLY_ERROR ? x->str : "bad reply to EXEC");
        goto out;
    }
    for (size_t i = 0; i < cb->n; i++) {
        r[i] = x->element[i];
        x->element[i] = NULL;
    }
    *got = cb->n;
    rc = 0;
out:
    if (w) {
        freeReplyObject(w);
    }
    if (g) {
        freeReplyObject(g);
    }
    if (x) {
        freeReplyObject(x);
    }
    return rc;
}

/* Sends the batch in one write and reads its replies (the caller frees them with
 * replies_free() when out is not NULL); every reply must not be an error. The batch is empty
 * again afterwards, whatever happened. */
static int cmd_run_mode(struct store *s, redisReply ***out, bool lean, struct err *e)
{
    struct cmdbuf *cb = &s->cb;
    redisReader *rd = s->rc->reader;
    redisReplyObjectFunctions *fn = rd->fn;
    void *privdata = rd->privdata;
    size_t n = cb->n;
    redisReply **r = xcalloc(n ? n : 1, sizeof(*r));
    int rc = 0;
    size_t got = 0;
    if (cb->args_declared != cb->args_written) {
        rc = err_set(e, ERRC_INTERNAL,
                     "redis at %s: malformed command batch (%zu arguments declared, %zu written)",
                     s->display, cb->args_declared, cb->args_written);
        goto out;
    }
    if (n && s->fence[0]) {
        rc = run_fenced(s, r, &got, e);
        goto check;
    }
    if (n && redisAppendFormattedCommand(s->rc, cb->out.data, cb->out.len) != REDIS_OK) {
        rc = store_fail(s, e, "cannot send");
        goto out;
    }
    if (lean && fn != NULL) {
        rd->privdata = fn;
        rd->fn = &lean_fns;
    }
    for (; got < n; got++) {
        void *x = NULL;
        if (redisGetReply(s->rc, &x) != REDIS_OK || x == NULL) {
            rc = store_fail(s, e, "no reply");
            break;
        }
        r[got] = x;
    }
    rd->fn = fn;
    rd->privdata = privdata;
check:
    if (rc != 0) {
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (r[i]->type == REDIS_REPLY_ERROR) {
            if (r[i]->str && strncmp(r[i]->str, STORE_INDEX_INCOMPLETE,
                                     sizeof(STORE_INDEX_INCOMPLETE) - 1) == 0) {
                rc = store_err_set_index_incomplete(e);
            } else if (r[i]->str && strncmp(r[i]->str, STORE_CA_BLOCKED_ERR " ",
                                            sizeof(STORE_CA_BLOCKED_ERR)) == 0) {
                rc = err_set(e, ERRC_DENIED,
                             "CA '%.64s' is compromised and signs nothing (jitrctl ca compromise)",
                             r[i]->str + sizeof(STORE_CA_BLOCKED_ERR));
            } else {
                rc = err_set(e, ERRC_UNAVAILABLE, "redis at %s: %s", s->display, r[i]->str);
            }
            break;
        }
    }
out:
    if (rc != 0 || out == NULL) {
        for (size_t i = 0; i < got; i++) {
            reply_free(r[i]);
        }
        xfree(r);
        r = NULL;
    }
    if (out) {
        *out = r;
    }
    cmd_batch(s);
    if (cb->out.cap > CMDBUF_KEEP) {
        buf_release(&cb->out);
    }
    return rc;
}

static int cmd_run(struct store *s, redisReply ***out, struct err *e)
{
    return cmd_run_mode(s, out, false, e);
}

/* cmd_run() for batches whose replies are only looked at for their type (see lean_fns). */
static int cmd_run_lean(struct store *s, redisReply ***out, struct err *e)
{
    return cmd_run_mode(s, out, true, e);
}

static void replies_free(redisReply **r, size_t n)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        reply_free(r[i]);
    }
    xfree(r);
}

/* ---- Sentinel (store.h): hiredis has no Sentinel client; the asynchronous ask is in
 * store/async.c ---- */

int store_sentinel_addr(const char *const *v, const size_t *len, size_t n, char *host, size_t cap,
                        int *port)
{
    uint64_t p;
    char num[16];
    if (n != 2 || len[0] == 0 || len[0] >= cap || memchr(v[0], '\0', len[0]) != NULL ||
        len[1] == 0 || len[1] >= sizeof(num)) {
        return -1;
    }
    memcpy(num, v[1], len[1]);
    num[len[1]] = '\0';
    if (str_to_u64(num, &p) != 0 || p == 0 || p > 65535) {
        return -1;
    }
    memcpy(host, v[0], len[0]);
    host[len[0]] = '\0';
    *port = (int)p;
    return 0;
}

bool store_reply_not_primary(const char *err_reply)
{
    /* READONLY: a replica refusing a write (also inside a script); MASTERDOWN: a replica that
     * lost its primary and does not serve stale data */
    return err_reply != NULL &&
           (str_has_prefix(err_reply, "READONLY") || str_has_prefix(err_reply, "MASTERDOWN") ||
            strstr(err_reply, "-READONLY") != NULL);
}

/* One sentinel's answer: 0 and the address, or -1 and why in why. */
static int ask_one(const struct store_url *u, size_t i, int timeout_ms, char *host, size_t cap,
                   int *port, char *why, size_t whycap)
{
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    redisContext *c = redisConnectWithTimeout(u->sentinel[i].host, u->sentinel[i].port, tv);
    redisReply *r = NULL;
    int rc = -1;
    const char *av[] = { "SENTINEL", "get-master-addr-by-name", u->master };
    if (c == NULL || c->err) {
        snprintf(why, whycap, "%s", c ? c->errstr : "cannot allocate");
        goto out;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(why, whycap, "cannot set timeout");
        goto out;
    }
    r = redisCommandArgv(c, 3, av, NULL);
    if (r == NULL) {
        snprintf(why, whycap, "%s", c->errstr[0] ? c->errstr : "no reply");
    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, whycap, "%s", r->str);
    } else if (r->type != REDIS_REPLY_ARRAY) {
        snprintf(why, whycap, "does not know master '%s'", u->master);
    } else {
        const char *v[2] = { NULL, NULL };
        size_t len[2] = { 0, 0 };
        for (size_t k = 0; k < r->elements && k < 2; k++) {
            if (r->element[k]->type == REDIS_REPLY_STRING) {
                v[k] = r->element[k]->str;
                len[k] = (size_t)r->element[k]->len;
            }
        }
        if (r->elements == 2 && v[0] && v[1] &&
            store_sentinel_addr(v, len, 2, host, cap, port) == 0) {
            rc = 0;
        } else {
            snprintf(why, whycap, "bad reply to SENTINEL get-master-addr-by-name");
        }
    }
out:
    if (r) {
        freeReplyObject(r);
    }
    if (c) {
        redisFree(c);
    }
    return rc;
}

int store_sentinel_primary(const struct store_url *u, int timeout_ms, char *host, size_t cap,
                           int *port, struct err *e)
{
    char why[200] = "";
    for (size_t i = 0; i < u->nsentinels; i++) {
        if (ask_one(u, i, timeout_ms, host, cap, port, why, sizeof(why)) == 0) {
            return 0;
        }
    }
    return err_set(e, ERRC_UNAVAILABLE,
                   "redis: no sentinel of %zu gave the primary of '%s' (last: %s:%d: %s)",
                   u->nsentinels, u->master, u->sentinel[u->nsentinels - 1].host,
                   u->sentinel[u->nsentinels - 1].port, why);
}

struct store *store_connect(const char *url, struct err *e)
{
    struct store_url u;
    redisReply **r = NULL;
    if (store_url_parse(url, &u, e) != 0) {
        return NULL;
    }
    struct store *s = xcalloc(1, sizeof(*s));
    struct cmdbuf *cb = cmd_batch(s);
    store_url_display(&u, s->display, sizeof(s->display));
    struct timeval tv = { STORE_TIMEOUT_MS / 1000, (STORE_TIMEOUT_MS % 1000) * 1000 };
    if (u.master[0]) {
        /* the primary's address now; messages name the sentinels' URL and that address */
        if (store_sentinel_primary(&u, STORE_SENTINEL_TIMEOUT_MS, u.host, sizeof(u.host), &u.port,
                                   e) != 0) {
            goto fail;
        }
        size_t len = strlen(s->display);
        snprintf(s->display + len, sizeof(s->display) - len, " (primary %s:%d)", u.host, u.port);
    }
    s->rc = u.path[0] ? redisConnectUnixWithTimeout(u.path, tv)
                      : redisConnectWithTimeout(u.host, u.port, tv);
    if (s->rc == NULL || s->rc->err) {
        err_set(e, ERRC_UNAVAILABLE, "redis at %s is unreachable: %s", s->display,
                s->rc ? s->rc->errstr : "cannot allocate");
        goto fail;
    }
    if (redisSetTimeout(s->rc, tv) != REDIS_OK) {
        store_fail(s, e, "cannot set timeout");
        goto fail;
    }
    if (u.password[0]) {
        cmd_begin(cb, 2);
        CMD_LIT(cb, "AUTH");
        cmd_str(cb, u.password);
    }
    if (u.master[0]) {
        cmd_begin(cb, 1);
        CMD_LIT(cb, "ROLE");
    }
    cmd_begin(cb, 2);
    CMD_LIT(cb, "SELECT");
    cmd_u64(cb, (uint64_t)u.db); /* 0..1000 (store_url_parse) */
    if (cmd_run(s, u.master[0] ? &r : NULL, e) != 0) {
        goto fail;
    }
    if (u.master[0]) {
        /* ROLE's reply: AUTH's (when sent) comes first */
        redisReply *role = r[u.password[0] ? 1 : 0];
        if (role->type != REDIS_REPLY_ARRAY || role->elements < 1 ||
            role->element[0]->type != REDIS_REPLY_STRING ||
            strcmp(role->element[0]->str, "master") != 0) {
            err_set(e, ERRC_UNAVAILABLE,
                    "redis at %s: the server the sentinels named is not a primary (a failover "
                    "is in progress)",
                    s->display);
            goto fail;
        }
        replies_free(r, u.password[0] ? 3 : 2);
    }
    OPENSSL_cleanse(u.password, sizeof(u.password));
    return s;
fail:
    replies_free(r, r ? (u.password[0] ? 3 : 2) : 0);
    OPENSSL_cleanse(u.password, sizeof(u.password));
    store_free(s);
    return NULL;
}

void store_free(struct store *s)
{
    if (s == NULL) {
        return;
    }
    if (s->rc) {
        redisFree(s->rc);
    }
    buf_release(&s->cb.out);
    xfree(s);
}

int store_ping(struct store *s, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    cmd_begin(cb, 1);
    CMD_LIT(cb, "PING");
    return cmd_run(s, NULL, e);
}

int store_serials_reserve(struct store *s, const char *ca, const char *const *serial_hex, size_t n,
                          bool *taken, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    if (n == 0) {
        return 0;
    }
    /* one script: the check of index:ready and every SET NX are atomic (store.h) */
    cmd_begin(cb, 6 + n);
    CMD_LIT(cb, "EVAL");
    cmd_arg(cb, reserve_lua, sizeof(reserve_lua) - 1);
    cmd_u64(cb, (uint64_t)n + 2);
    CMD_LIT(cb, STORE_INDEX_READY);
    CMD_LIT(cb, STORE_PREFIX STORE_CA_BLOCKED);
    for (size_t i = 0; i < n; i++) {
        cmd_key(cb, "serial:", serial_hex[i], "");
    }
    cmd_str(cb, ca);
    int rc = cmd_run(s, &r, e);
    if (rc == 0 && (r[0]->type != REDIS_REPLY_STRING || r[0]->len != n)) {
        rc = store_fail(s, e, "bad reply to the serial reservation");
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        taken[i] = r[0]->str[i] != '1';
    }
    replies_free(r, rc == 0 ? 1 : 0);
    return rc;
}

/* KEYS: cert:<old>; ARGV: the new serial. The old record gets superseded_by unless it is
 * missing (the index is incomplete: reindex sets it) or superseded already (the first wins). */
/* A superseded certificate is no longer expiring: it leaves its CA's ca:<ca>:expiry (ARGV[2]:
 * the prefix of that key, ARGV[3]: the old serial). */
static const char supersede_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 2 end\n"
    "if redis.call('HSETNX', KEYS[1], 'superseded_by', ARGV[1]) == 0 then return 1 end\n"
    "local ca = redis.call('HGET', KEYS[1], 'ca')\n"
    "if ca then redis.call('ZREM', ARGV[2] .. ca .. ':expiry', ARGV[3]) end\n"
    "return 0\n";

/* The writes of certs[from..to) that take many members per command: the CA's expiry set and
 * serial set (all of one CA), the fingerprints and the serials' reservations (written again on
 * every path: a certificate in flight while Redis lost its data keeps its serial reserved,
 * docs/redis.md). */
static void index_group(struct cmdbuf *cb, const struct store_cert *certs, size_t from, size_t to)
{
    const char *ca = certs[from].ca;
    size_t nexp = 0, n = to - from;
    time_t *na = xcalloc(n, sizeof(*na));
    bool *exp = xcalloc(n, sizeof(*exp));
    for (size_t i = from; i < to; i++) {
        const struct store_cert *c = &certs[i];
        exp[i - from] =
            strcmp(c->status, "valid") == 0 && time_parse_rfc3339(c->not_after, &na[i - from]) == 0;
        nexp += exp[i - from];
    }
    if (nexp) {
        cmd_begin(cb, 2 + 2 * nexp);
        CMD_LIT(cb, "ZADD");
        cmd_key(cb, "ca:", ca, ":expiry");
        for (size_t i = from; i < to; i++) {
            if (exp[i - from]) {
                cmd_u64(cb, na[i - from] > 0 ? (uint64_t)na[i - from] : 0);
                cmd_str(cb, certs[i].serial);
            }
        }
    }
    cmd_begin(cb, 1 + 2 * n);
    CMD_LIT(cb, "MSET");
    for (size_t i = from; i < to; i++) {
        cmd_key(cb, STORE_KEY_FP, certs[i].fingerprint, "");
        cmd_str(cb, certs[i].serial);
    }
    cmd_begin(cb, 2 + n);
    CMD_LIT(cb, "SADD");
    cmd_key(cb, "ca:", ca, ":serials");
    for (size_t i = from; i < to; i++) {
        cmd_str(cb, certs[i].serial);
    }
    cmd_begin(cb, 1 + 2 * n);
    CMD_LIT(cb, "MSET");
    for (size_t i = from; i < to; i++) {
        cmd_key(cb, "serial:", certs[i].serial, "");
        cmd_str(cb, ca);
    }
    xfree(exp);
    xfree(na);
}

/* The writes per certificate (its hash, its CN's set, a renewal's supersession) in order; the
 * rest once per group of consecutive certificates of one CA (index_group). A renewal ends the
 * group before it: its supersession takes the renewed certificate out of the expiry set, which
 * must have been written first when both are in this batch (a rebuild). */
int store_certs_index(struct store *s, const struct store_cert *certs, size_t n, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    size_t group = 0;
    for (size_t i = 0; i < n; i++) {
        const struct store_cert *c = &certs[i];
        size_t serial_len = strlen(c->serial);
        bool renews = c->renews && c->renews[0];
        if (i > group && (renews || strcmp(c->ca, certs[group].ca) != 0)) {
            index_group(cb, certs, group, i);
            group = i;
        }
        cmd_begin(cb, renews ? 30 : 28);
        CMD_LIT(cb, "HSET");
        cmd_key(cb, STORE_KEY_CERT, c->serial, "");
        CMD_LIT(cb, "serial");
        cmd_arg(cb, c->serial, serial_len);
        CMD_LIT(cb, "fingerprint");
        cmd_str(cb, c->fingerprint);
        CMD_LIT(cb, "subject");
        cmd_str(cb, c->subject);
        CMD_LIT(cb, "cn");
        cmd_str(cb, c->cn);
        CMD_LIT(cb, "profile");
        cmd_str(cb, c->profile);
        CMD_LIT(cb, "ca");
        cmd_str(cb, c->ca);
        CMD_LIT(cb, "requester");
        cmd_str(cb, c->requester);
        CMD_LIT(cb, "not_before");
        cmd_str(cb, c->not_before);
        CMD_LIT(cb, "not_after");
        cmd_str(cb, c->not_after);
        CMD_LIT(cb, "issued_at");
        cmd_str(cb, c->issued_at);
        CMD_LIT(cb, "status");
        cmd_str(cb, c->status);
        CMD_LIT(cb, "der");
        cmd_str(cb, c->der_b64);
        CMD_LIT(cb, "seq");
        cmd_u64(cb, c->seq);
        if (renews) {
            CMD_LIT(cb, "renews");
            cmd_str(cb, c->renews);
            cmd_begin(cb, 7);
            CMD_LIT(cb, "EVAL");
            cmd_arg(cb, supersede_lua, sizeof(supersede_lua) - 1);
            CMD_LIT(cb, "1");
            cmd_key(cb, STORE_KEY_CERT, c->renews, "");
            cmd_arg(cb, c->serial, serial_len);
            CMD_LIT(cb, STORE_PREFIX "ca:");
            cmd_str(cb, c->renews);
        }
        if (c->cn[0]) {
            cmd_begin(cb, 3);
            CMD_LIT(cb, "SADD");
            cmd_key(cb, "cn:", c->cn, "");
            cmd_arg(cb, c->serial, serial_len);
        }
    }
    if (n > group) {
        index_group(cb, certs, group, n);
    }
    return cmd_run_lean(s, NULL, e);
}

/* Whether change a (the node whose log has it, its audit seq, its time in ms) comes after change
 * b: by seq within one node's log, by time between nodes (seqs of two logs are not comparable: a
 * hold on one node and its release through another must both count). The one rule of every
 * script below that orders two changes of a certificate's status (the C twin that orders the
 * records of a rebuild is change_later, issuance/reindex.c). A missing number counts as 0. */
#define CHANGE_AFTER_LUA                                                                        \
    "local function after(na, sa, ma, nb, sb, mb)\n"                                            \
    "  if (na or '') == (nb or '') then return (tonumber(sa) or 0) > (tonumber(sb) or 0) end\n" \
    "  return (tonumber(ma) or 0) > (tonumber(mb) or 0)\n"                                      \
    "end\n"

/* The job that carries a change of a certificate's status to AWS IoT (jobs/revoke.c, kind
 * "revoke"): added to its stream in the same script as the index change, so that neither goes
 * without the other; not again when the job of that change, or of a later one (CHANGE_AFTER_LUA),
 * is recorded DONE already (a reindex replaying the changes of a certificate AWS heard of). The
 * fields are those of jobs_enqueue_argv (jobs/jobs.h). KEYS[3] the stream; ARGV[5] the job
 * record's key prefix, ARGV[6] now in ms; seq (ARGV[4]) is the change's audit seq, ARGV[8] the
 * node whose log has it, ARGV[9] its time in ms, recorded by the job as change_seq, change_node,
 * change_ms. ARGV[10] "1": no job (the index rebuild queues them at the end,
 * store_status_jobs_settle). The including script starts with CHANGE_AFTER_LUA and declares two
 * locals: stale (true: a DONE record does not count, the rebuild's check below) and queued, set
 * to 1 when it queued. */
#define ENQUEUE_STATUS_JOB_LUA                                                               \
    "local fp = redis.call('HGET', KEYS[1], 'fingerprint')\n"                                \
    "if fp and #fp == 64 and ARGV[10] ~= '1' then\n"                                         \
    "  local r = redis.call('HMGET', ARGV[5] .. fp, 'state', 'change_seq', 'change_node',\n" \
    "                       'change_ms')\n"                                                  \
    "  local later = false\n"                                                                \
    "  if r[1] == 'DONE' and not stale then\n"                                               \
    "    later = ((r[3] or '') == ARGV[8] and tonumber(r[2]) == tonumber(ARGV[4])) or\n"     \
    "            after(r[3], r[2], r[4], ARGV[8], ARGV[4], ARGV[9])\n"                       \
    "  end\n"                                                                                \
    "  if not later then\n"                                                                  \
    "    queued = 1\n"                                                                       \
    "    redis.call('XADD', KEYS[3], 'MAXLEN', '~', '1000000', '*', 'cert', fp, 'serial',\n" \
    "               ARGV[1], 'change_seq', ARGV[4], 'change_node', ARGV[8], 'change_ms',\n"  \
    "               ARGV[9], 'src', ARGV[7], 'enq_ms', ARGV[6])\n"                           \
    "  end\n"                                                                                \
    "end\n"

/* KEYS: cert:<serial>, ca:<ca>:revoked, the revoke jobs' stream, ca:<ca>:expiry; ARGV: serial,
 * revoked_at, reason, seq, the job record prefix, now (ms), "revoke", node, the change's ms. One
 * script so that the check and the update are atomic: the first revocation wins, a replay changes
 * nothing, but a permanent revocation replaces a hold (certificateHold). The latest decision wins:
 * a hold that is not after the certificate's last release (release_node, release_seq,
 * release_ms; CHANGE_AFTER_LUA) is not applied, so a replay of an older hold (a failover's tail,
 * several logs) does not undo the release; a permanent revocation is applied whatever its age
 * (final). A hold records its node and time (revoke_node, revoke_ms) next to revoke_seq, for
 * release_lua's check; a permanent revocation drops them (nothing is compared with it). A
 * revoked certificate is no longer expiring (it leaves ca:<ca>:expiry). Returns 0 revoked now, 1
 * already revoked or a hold older than the last release (nothing changed, no job), 2 unknown
 * serial. */
static const char revoke_lua[] = CHANGE_AFTER_LUA
    "local queued, stale = 0, false\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 2 end\n"
    "local st = redis.call('HMGET', KEYS[1], 'status', 'reason', 'release_seq', 'release_node',\n"
    "                      'release_ms')\n"
    "local hold = ARGV[3] == 'certificateHold'\n"
    "if st[1] == 'revoked' and (st[2] ~= 'certificateHold' or hold) then return 1 end\n"
    "if hold and st[5] and not after(ARGV[8], ARGV[4], ARGV[9], st[4], st[3], st[5]) then\n"
    "  return 1\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'status', 'revoked', 'revoked_at', ARGV[2], 'reason', ARGV[3],\n"
    "           'revoke_seq', ARGV[4])\n"
    "if hold then redis.call('HSET', KEYS[1], 'revoke_node', ARGV[8], 'revoke_ms', ARGV[9])\n"
    "else redis.call('HDEL', KEYS[1], 'revoke_node', 'revoke_ms') end\n"
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])\n"
    "redis.call('ZREM', KEYS[4], ARGV[1])\n" ENQUEUE_STATUS_JOB_LUA "return 0\n";

/* KEYS: cert:<serial>, ca:<ca>:revoked, the revoke jobs' stream, ca:<ca>:expiry; ARGV: serial,
 * "", "", seq, the job record prefix, now (ms), "release", node, the change's ms. Releases a hold:
 * the certificate is valid again and, unless a renewal superseded it, back among its CA's expiring
 * certificates (scored by its not_after, "YYYY-MM-DDTHH:MM:SSZ", as store_certs_index does). The
 * release records its node, seq and time (release_node, release_seq, release_ms: revoke_lua's
 * check). A hold that is after this release (revoke_node, revoke_seq, revoke_ms;
 * CHANGE_AFTER_LUA) is not lifted: the later decision stands (a hold without revoke_ms, indexed
 * before these fields, is lifted as always). A valid certificate keeps the latest release it was
 * told of (a replay may bring a release before the older hold it lifted: that hold then stays
 * off), with no job. Returns 0 released now, 1 not on hold or held later (nothing changed but
 * that note), 2 unknown serial. */
static const char release_lua[] = CHANGE_AFTER_LUA
    "local queued, stale = 0, false\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 2 end\n"
    "local st = redis.call('HMGET', KEYS[1], 'status', 'reason', 'not_after', 'superseded_by',\n"
    "  'revoke_seq', 'revoke_node', 'revoke_ms', 'release_seq', 'release_node', 'release_ms')\n"
    "if st[1] == 'valid' then\n"
    "  if not st[10] or after(ARGV[8], ARGV[4], ARGV[9], st[9], st[8], st[10]) then\n"
    "    redis.call('HSET', KEYS[1], 'release_seq', ARGV[4], 'release_node', ARGV[8],\n"
    "               'release_ms', ARGV[9])\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    "if st[1] ~= 'revoked' or st[2] ~= 'certificateHold' then return 1 end\n"
    "if st[7] and after(st[6], st[5], st[7], ARGV[8], ARGV[4], ARGV[9]) then return 1 end\n"
    "redis.call('HSET', KEYS[1], 'status', 'valid', 'release_seq', ARGV[4], 'release_node',\n"
    "           ARGV[8], 'release_ms', ARGV[9])\n"
    "redis.call('HDEL', KEYS[1], 'revoked_at', 'reason', 'revoke_seq', 'revoke_node',\n"
    "           'revoke_ms')\n"
    "redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "local y, mo, d, h, mi, se = string.match(st[3] or '',\n"
    "  '^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)')\n"
    "if y and not (st[4] and #st[4] > 0) then\n"
    "  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)\n"
    "  if mo <= 2 then y = y - 1 end\n" /* days from the civil date (proleptic Gregorian) */
    "  local era = math.floor(y / 400)\n"
    "  local yoe = y - era * 400\n"
    "  local mp = (mo + 9) % 12\n"
    "  local doy = math.floor((153 * mp + 2) / 5) + d - 1\n"
    "  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy\n"
    "  local days = era * 146097 + doe - 719468\n"
    "  local t = days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(se)\n"
    "  if t < 0 then t = 0 end\n"
    "  redis.call('ZADD', KEYS[4], t, ARGV[1])\n"
    "end\n" ENQUEUE_STATUS_JOB_LUA "return 0\n";

static int status_change(struct store *s, const char *lua, size_t lualen,
                         const struct store_revocation *r, size_t n, const char *src,
                         enum store_revoke_result *res, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **rep = NULL;
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)time_now_ms());
    for (size_t i = 0; i < n; i++) {
        char ms[24];
        snprintf(ms, sizeof(ms), "%lld", (long long)(r[i].ms > 0 ? r[i].ms : time_now_ms()));
        cmd_begin(cb, 17);
        CMD_LIT(cb, "EVAL");
        cmd_arg(cb, lua, lualen);
        CMD_LIT(cb, "4");
        cmd_key(cb, STORE_KEY_CERT, r[i].serial, "");
        cmd_key(cb, "ca:", r[i].ca, ":revoked");
        CMD_LIT(cb, STORE_PREFIX STORE_KEY_REVOKE_JOBS);
        cmd_key(cb, "ca:", r[i].ca, ":expiry");
        cmd_str(cb, r[i].serial);
        cmd_str(cb, r[i].revoked_at ? r[i].revoked_at : "");
        cmd_str(cb, r[i].reason ? r[i].reason : "");
        cmd_u64(cb, r[i].seq);
        CMD_LIT(cb, STORE_PREFIX STORE_KEY_REVOKE_JOB);
        cmd_str(cb, now);
        cmd_str(cb, src);
        cmd_str(cb, r[i].node ? r[i].node : "");
        cmd_str(cb, ms);
        cmd_str(cb, r[i].no_job ? "1" : "0");
    }
    int rc = cmd_run(s, &rep, e);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (rep[i]->type != REDIS_REPLY_INTEGER || rep[i]->integer < 0 || rep[i]->integer > 2) {
            rc = store_fail(s, e, "bad revocation reply");
        } else {
            res[i] = rep[i]->integer == 0   ? STORE_REVOKE_DONE
                     : rep[i]->integer == 1 ? STORE_REVOKE_ALREADY
                                            : STORE_REVOKE_UNKNOWN;
        }
    }
    replies_free(rep, n); /* NULL when the pipeline failed */
    return rc;
}

int store_certs_release(struct store *s, const struct store_revocation *r, size_t n,
                        enum store_revoke_result *res, struct err *e)
{
    return status_change(s, release_lua, sizeof(release_lua) - 1, r, n, "release", res, e);
}

int store_certs_revoke(struct store *s, const struct store_revocation *r, size_t n,
                       enum store_revoke_result *res, struct err *e)
{
    return status_change(s, revoke_lua, sizeof(revoke_lua) - 1, r, n, "revoke", res, e);
}

/* KEYS: cert:<serial>, "" (unused), the revoke jobs' stream; ARGV 1-9 as ENQUEUE_STATUS_JOB_LUA
 * (ARGV[2] "1": queue the change; ARGV[3] "1": restore), then the aws_status record: 11
 * certificateId, 12 outcome, 13 want, 14 reason, 15 ca, 16 aws_before, 17 aws_status, 18-20 the
 * change its job carried (seq, node, ms), 21 its audit seq, 22 its time (ms). The record is
 * written back, as jobs/engine.c leaves a finished one, when the certificateId is the
 * certificate's and Redis has no record of its job, or a DONE one of an earlier change
 * (CHANGE_AFTER_LUA); a record in another state belongs to a job that runs (or will resume) and
 * is left alone. The change is queued unless the record is DONE for it or a later one
 * (ENQUEUE_STATUS_JOB_LUA) and wanted what the index says now (REVOKED, INACTIVE for a hold or a
 * superseded certificate, ACTIVE: jobs/revoke.c's LOOKUP): a record whose job wanted another
 * status than the index's belongs to a decision the index no longer shows. Returns 1 when it
 * queued + 2 when it restored. */
static const char status_settle_lua[] = CHANGE_AFTER_LUA
    "local restored = 0\n"
    "local queued, stale = 0, false\n"
    "if ARGV[3] == '1' then\n"
    "  local id = redis.call('HGET', KEYS[1], 'fingerprint')\n"
    "  if id and id == ARGV[11] then\n"
    "    local rk = ARGV[5] .. id\n"
    "    local h = redis.call('HMGET', rk, 'state', 'change_seq', 'change_node', 'change_ms')\n"
    "    local write = not h[1]\n"
    "    if h[1] == 'DONE' then\n"
    "      write = after(ARGV[19], ARGV[18], ARGV[20], h[3], h[2], h[4])\n"
    "    end\n"
    "    if write then\n"
    "      redis.call('DEL', rk)\n"
    "      redis.call('HSET', rk, 'state', 'DONE', 'serial', ARGV[1], 'outcome', ARGV[12],\n"
    "        'want', ARGV[13], 'reason', ARGV[14], 'ca', ARGV[15], 'aws_before', ARGV[16],\n"
    "        'aws_status', ARGV[17], 'change_seq', ARGV[18], 'change_node', ARGV[19],\n"
    "        'change_ms', ARGV[20], 'audit_seq', ARGV[21], 'updated_ms', ARGV[22],\n"
    "        'error', '', 'restored', 'audit')\n"
    "      restored = 2\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if ARGV[2] == '1' then\n"
    "  local c = redis.call('HMGET', KEYS[1], 'status', 'reason', 'fingerprint')\n"
    "  local want = 'ACTIVE'\n"
    "  if c[1] == 'revoked' then\n"
    "    want = (c[2] == 'certificateHold' or c[2] == 'superseded') and 'INACTIVE' or 'REVOKED'\n"
    "  end\n"
    "  if c[3] then\n"
    "    stale = redis.call('HGET', ARGV[5] .. c[3], 'want') ~= want\n"
    "  end\n" ENQUEUE_STATUS_JOB_LUA "end\n"
    "return queued + restored\n";

int store_status_jobs_settle(struct store *s, const struct store_status_job *v, size_t n,
                             size_t *queued, size_t *restored, struct err *e)
{
    struct cmdbuf *cb;
    redisReply **rep = NULL;
    char now[24];
    int rc;
    *queued = *restored = 0;
    if (n == 0) {
        return 0;
    }
    cb = cmd_batch(s);
    snprintf(now, sizeof(now), "%lld", (long long)time_now_ms());
    for (size_t i = 0; i < n; i++) {
        const struct store_status_job *j = &v[i];
        char num[5][24];
        snprintf(num[0], sizeof(num[0]), "%lld", (long long)(j->ms > 0 ? j->ms : time_now_ms()));
        snprintf(num[1], sizeof(num[1]), "%llu", (unsigned long long)j->done_seq);
        snprintf(num[2], sizeof(num[2]), "%lld", (long long)j->done_ms);
        snprintf(num[3], sizeof(num[3]), "%llu", (unsigned long long)j->audit_seq);
        snprintf(num[4], sizeof(num[4]), "%lld", (long long)j->audit_ms);
        cmd_begin(cb, 28);
        CMD_LIT(cb, "EVAL");
        cmd_arg(cb, status_settle_lua, sizeof(status_settle_lua) - 1);
        CMD_LIT(cb, "3");
        cmd_key(cb, STORE_KEY_CERT, j->serial, "");
        CMD_LIT(cb, "");
        CMD_LIT(cb, STORE_PREFIX STORE_KEY_REVOKE_JOBS);
        cmd_str(cb, j->serial);
        cmd_str(cb, j->src ? "1" : "0");
        cmd_str(cb, j->done_id ? "1" : "0");
        cmd_u64(cb, j->seq);
        CMD_LIT(cb, STORE_PREFIX STORE_KEY_REVOKE_JOB);
        cmd_str(cb, now);
        cmd_str(cb, j->src ? j->src : "");
        cmd_str(cb, j->node ? j->node : "");
        cmd_str(cb, num[0]);
        CMD_LIT(cb, "0"); /* ARGV[10]: queue (ENQUEUE_STATUS_JOB_LUA's "no job" flag unset) */
        cmd_str(cb, j->done_id ? j->done_id : "");
        cmd_str(cb, j->outcome ? j->outcome : "");
        cmd_str(cb, j->want ? j->want : "");
        cmd_str(cb, j->reason ? j->reason : "");
        cmd_str(cb, j->ca ? j->ca : "");
        cmd_str(cb, j->aws_before ? j->aws_before : "");
        cmd_str(cb, j->aws_status ? j->aws_status : "");
        cmd_str(cb, num[1]);
        cmd_str(cb, j->done_node ? j->done_node : "");
        cmd_str(cb, num[2]);
        cmd_str(cb, num[3]);
        cmd_str(cb, num[4]);
    }
    rc = cmd_run(s, &rep, e);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (rep[i]->type != REDIS_REPLY_INTEGER || rep[i]->integer < 0 || rep[i]->integer > 3) {
            rc = store_fail(s, e, "bad reply to the revoke jobs' settling");
        } else {
            *queued += (size_t)(rep[i]->integer & 1);
            *restored += (size_t)(rep[i]->integer >> 1);
        }
    }
    replies_free(rep, n); /* NULL when the pipeline failed */
    return rc;
}

/* KEYS: the renewal kind's stream, due set; ARGV: now (ms), the record prefix, then 5 per job:
 * certificateId, serial, renews, thing, due (ms). The due set is read once: the keys of its
 * members (JSON arrays, the key second) are the jobs waiting there. Returns how many were
 * queued. */
static const char renewal_requeue_lua[] =
    "local have = {}\n"
    "local cur = '0'\n"
    "repeat\n"
    "  local r = redis.call('ZSCAN', KEYS[2], cur, 'COUNT', 1000)\n"
    "  cur = r[1]\n"
    "  for i = 1, #r[2], 2 do\n"
    "    local ok, f = pcall(cjson.decode, r[2][i])\n"
    "    if ok and type(f) == 'table' and type(f[2]) == 'string' then have[f[2]] = true end\n"
    "  end\n"
    "until cur == '0'\n"
    "local n = 0\n"
    "for i = 3, #ARGV, 5 do\n"
    "  local id = ARGV[i]\n"
    "  if not have[id] and redis.call('EXISTS', ARGV[2] .. id) == 0 then\n"
    "    local f = {'cert', id, 'serial', ARGV[i + 1], 'renews', ARGV[i + 2], 'thing',\n"
    "               ARGV[i + 3], 'src', 'reindex', 'enq_ms', ARGV[1]}\n"
    "    if tonumber(ARGV[i + 4]) > tonumber(ARGV[1]) then\n"
    "      redis.call('ZADD', KEYS[2], ARGV[i + 4], cjson.encode(f))\n"
    "    else\n"
    "      redis.call('XADD', KEYS[1], 'MAXLEN', '~', '1000000', '*', unpack(f))\n"
    "    end\n"
    "    have[id] = true\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

int store_renewal_jobs_requeue(struct store *s, const struct store_renewal_job *v, size_t n,
                               size_t *queued, struct err *e)
{
    struct cmdbuf *cb;
    redisReply **rep = NULL;
    char now[24];
    int rc;
    *queued = 0;
    if (n == 0) {
        return 0;
    }
    cb = cmd_batch(s);
    snprintf(now, sizeof(now), "%lld", (long long)time_now_ms());
    cmd_begin(cb, 7 + 5 * n);
    CMD_LIT(cb, "EVAL");
    cmd_arg(cb, renewal_requeue_lua, sizeof(renewal_requeue_lua) - 1);
    CMD_LIT(cb, "2");
    CMD_LIT(cb, STORE_PREFIX STORE_KEY_RENEWAL_JOBS);
    CMD_LIT(cb, STORE_PREFIX STORE_KEY_RENEWAL_DUE);
    cmd_str(cb, now);
    CMD_LIT(cb, STORE_PREFIX STORE_KEY_RENEWAL_JOB);
    for (size_t i = 0; i < n; i++) {
        char due[24];
        snprintf(due, sizeof(due), "%lld", (long long)v[i].due_ms);
        cmd_str(cb, v[i].cert_id);
        cmd_str(cb, v[i].serial);
        cmd_str(cb, v[i].renews);
        cmd_str(cb, v[i].thing ? v[i].thing : "");
        cmd_str(cb, due);
    }
    rc = cmd_run(s, &rep, e);
    if (rc == 0) {
        if (rep[0]->type != REDIS_REPLY_INTEGER || rep[0]->integer < 0) {
            rc = store_fail(s, e, "bad reply to the renewal requeue");
        } else {
            *queued = (size_t)rep[0]->integer;
        }
    }
    replies_free(rep, 1); /* NULL when the pipeline failed */
    return rc;
}

static int cmp_revoked(const void *a, const void *b)
{
    const struct store_revoked *x = a, *y = b;
    return strcmp(x->serial, y->serial);
}

int store_revoked_list(struct store *s, const char *ca, struct store_revoked **out, size_t *n,
                       struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    struct store_revoked *list = NULL;
    size_t cnt = 0;
    cmd_begin(cb, 5);
    CMD_LIT(cb, "EVAL");
    cmd_arg(cb, store_index_hgetall_lua, sizeof(store_index_hgetall_lua) - 1);
    CMD_LIT(cb, "2");
    CMD_LIT(cb, STORE_INDEX_READY);
    cmd_key(cb, "ca:", ca, ":revoked");
    if (cmd_run(s, &r, e) != 0) {
        return -1;
    }
    if (r[0]->type != REDIS_REPLY_ARRAY || r[0]->elements % 2 != 0) {
        replies_free(r, 1);
        return store_fail(s, e, "bad reply to HGETALL of the revoked serials");
    }
    list = xcalloc(r[0]->elements / 2 + 1, sizeof(*list));
    for (size_t i = 0; i + 1 < r[0]->elements; i += 2) {
        const redisReply *k = r[0]->element[i], *v = r[0]->element[i + 1];
        const char *sp = v->str ? memchr(v->str, ' ', v->len) : NULL;
        if (k->str == NULL || sp == NULL) {
            store_revoked_free(list, cnt);
            replies_free(r, 1);
            return err_set(e, ERRC_INTERNAL,
                           "redis at %s: revoked serial of CA '%s' with a malformed value "
                           "(run 'jitrctl reindex')",
                           s->display, ca);
        }
        list[cnt].serial = xstrndup(k->str, k->len);
        list[cnt].revoked_at = xstrndup(v->str, (size_t)(sp - v->str));
        list[cnt].reason = xstrndup(sp + 1, v->len - (size_t)(sp - v->str) - 1);
        cnt++;
    }
    replies_free(r, 1);
    if (cnt) {
        qsort(list, cnt, sizeof(*list), cmp_revoked);
    }
    *out = list;
    *n = cnt;
    return 0;
}

void store_revoked_free(struct store_revoked *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++) {
        xfree(list[i].serial);
        xfree(list[i].revoked_at);
        xfree(list[i].reason);
    }
    xfree(list);
}

/* KEYS: crl:<ca>:number; ARGV: a value, "next" (max(current + 1, value)) or "raise"
 * (max(current, value)). Returns the stored number. */
static const char crl_number_lua[] =
    "local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
    "local want = tonumber(ARGV[1])\n"
    "local n = cur\n"
    "if ARGV[2] == 'next' then n = cur + 1 end\n"
    "if want > n then n = want end\n"
    "redis.call('SET', KEYS[1], string.format('%d', n))\n"
    "return n\n";

static int crl_number(struct store *s, const char *ca, uint64_t v, const char *mode, uint64_t *out,
                      struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    cmd_begin(cb, 6);
    CMD_LIT(cb, "EVAL");
    cmd_arg(cb, crl_number_lua, sizeof(crl_number_lua) - 1);
    CMD_LIT(cb, "1");
    cmd_key(cb, "crl:", ca, ":number");
    cmd_u64(cb, v);
    cmd_str(cb, mode);
    if (cmd_run(s, &r, e) != 0) {
        return -1;
    }
    if (r[0]->type != REDIS_REPLY_INTEGER || r[0]->integer < 0) {
        replies_free(r, 1);
        return store_fail(s, e, "bad CRL number reply");
    }
    if (out) {
        *out = (uint64_t)r[0]->integer;
    }
    replies_free(r, 1);
    return 0;
}

int store_crl_number_next(struct store *s, const char *ca, uint64_t floor, uint64_t *out,
                          struct err *e)
{
    return crl_number(s, ca, floor, "next", out, e);
}

int store_crl_number_raise(struct store *s, const char *ca, uint64_t n, struct err *e)
{
    return crl_number(s, ca, n, "raise", NULL, e);
}

int store_audit_head_set(struct store *s, uint64_t seq, const char *hash, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    cmd_begin(cb, 6);
    CMD_LIT(cb, "HSET");
    CMD_LIT(cb, STORE_PREFIX "audit:head");
    CMD_LIT(cb, "seq");
    cmd_u64(cb, seq);
    CMD_LIT(cb, "hash");
    cmd_str(cb, hash);
    return cmd_run(s, NULL, e);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends the sorted "field\tvalue" lines of a HGETALL reply. */
static void hash_lines(const redisReply *r, struct buf *out)
{
    size_t n = r->elements / 2;
    char **lines = xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        struct buf l = BUF_INIT;
        buf_add(&l, r->element[2 * i]->str, r->element[2 * i]->len);
        buf_addch(&l, '\t');
        buf_add(&l, r->element[2 * i + 1]->str, r->element[2 * i + 1]->len);
        lines[i] = buf_detach(&l, NULL);
    }
    qsort(lines, n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < n; i++) {
        buf_addstr(out, lines[i]);
        buf_addch(out, '\n');
        xfree(lines[i]);
    }
    xfree(lines);
}

/* EVAL store_index_hgetall_lua on cert:<serial>: the reply, NULL with ERRC_NOT_FOUND when the
 * record is absent. Free with replies_free(r, 1). */
static redisReply **cert_hgetall(struct store *s, const char *serial, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    cmd_begin(cb, 5);
    CMD_LIT(cb, "EVAL");
    cmd_arg(cb, store_index_hgetall_lua, sizeof(store_index_hgetall_lua) - 1);
    CMD_LIT(cb, "2");
    CMD_LIT(cb, STORE_INDEX_READY);
    cmd_key(cb, STORE_KEY_CERT, serial, "");
    if (cmd_run(s, &r, e) != 0) {
        return NULL;
    }
    if (r[0]->type != REDIS_REPLY_ARRAY || r[0]->elements == 0) {
        replies_free(r, 1);
        err_set(e, ERRC_NOT_FOUND, "no certificate with serial %s", serial);
        return NULL;
    }
    return r;
}

int store_cert_get(struct store *s, const char *serial, struct buf *fields, struct err *e)
{
    redisReply **r = cert_hgetall(s, serial, e);
    if (r == NULL) {
        return -1;
    }
    hash_lines(r[0], fields);
    replies_free(r, 1);
    return 0;
}

int store_cert_read(struct store *s, const char *serial, struct store_cert_rec *out, struct err *e)
{
    redisReply **r = cert_hgetall(s, serial, e);
    if (r == NULL) {
        return -1;
    }
    size_t n = r[0]->elements;
    const char **kv = xcalloc(n, sizeof(*kv));
    size_t *len = xcalloc(n, sizeof(*len));
    for (size_t i = 0; i < n; i++) {
        const redisReply *el = r[0]->element[i];
        kv[i] = el->type == REDIS_REPLY_STRING ? el->str : "";
        len[i] = el->type == REDIS_REPLY_STRING ? el->len : 0;
    }
    store_cert_rec_parse(out, kv, len, n);
    xfree(kv);
    xfree(len);
    replies_free(r, 1);
    return 0;
}

int store_serial_by_fingerprint(struct store *s, const char *fp, struct buf *serial, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    cmd_begin(cb, 5);
    CMD_LIT(cb, "EVAL");
    cmd_arg(cb, store_index_get_lua, sizeof(store_index_get_lua) - 1);
    CMD_LIT(cb, "2");
    CMD_LIT(cb, STORE_INDEX_READY);
    cmd_key(cb, STORE_KEY_FP, fp, "");
    int rc = cmd_run(s, &r, e);
    if (rc == 0) {
        if (r[0]->type != REDIS_REPLY_STRING) {
            rc = err_set(e, ERRC_NOT_FOUND, "no certificate with fingerprint %s", fp);
        } else {
            buf_add(serial, r[0]->str, r[0]->len);
        }
        replies_free(r, 1);
    }
    return rc;
}

int store_certs_exist(struct store *s, const char *const *serials, size_t n, bool *exists,
                      struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    if (n == 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        cmd_begin(cb, 2);
        CMD_LIT(cb, "EXISTS");
        cmd_key(cb, STORE_KEY_CERT, serials[i], "");
    }
    if (cmd_run(s, &r, e) != 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        exists[i] = r[i]->type == REDIS_REPLY_INTEGER && r[i]->integer == 1;
    }
    replies_free(r, n);
    return 0;
}

int store_index_ready(struct store *s, bool *ready, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    cmd_begin(cb, 2);
    CMD_LIT(cb, "EXISTS");
    CMD_LIT(cb, STORE_INDEX_READY);
    if (cmd_run(s, &r, e) != 0) {
        return -1;
    }
    *ready = r[0]->type == REDIS_REPLY_INTEGER && r[0]->integer == 1;
    replies_free(r, 1);
    return 0;
}

int store_index_lock_take(struct store *s, const char *token, int64_t ttl_ms, bool *taken,
                          char *holder, size_t cap, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    cmd_begin(cb, 6);
    CMD_LIT(cb, "SET");
    CMD_LIT(cb, STORE_INDEX_LOCK);
    cmd_str(cb, token);
    CMD_LIT(cb, "NX");
    CMD_LIT(cb, "PX");
    cmd_u64(cb, (uint64_t)(ttl_ms > 0 ? ttl_ms : 1));
    cmd_begin(cb, 2);
    CMD_LIT(cb, "GET");
    CMD_LIT(cb, STORE_INDEX_LOCK);
    if (cmd_run(s, &r, e) != 0) {
        return -1;
    }
    *taken = r[0]->type == REDIS_REPLY_STATUS;
    if (holder && cap) {
        snprintf(holder, cap, "%s", r[1]->type == REDIS_REPLY_STRING ? r[1]->str : "");
    }
    replies_free(r, 2);
    return 0;
}

/* KEYS[1] index:lock; ARGV[1] token, ARGV[2] ttl ms. 1 when ours (and extended), else 0. */
static const char lock_renew_lua[] = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
                                     "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                     "return 1\n";
static const char lock_release_lua[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "return 1\n";
/* KEYS[1] index:lock, KEYS[2] index:ready; ARGV[1] token, then field/value pairs. */
static const char mark_ready_lua[] = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
                                     "redis.call('DEL', KEYS[2])\n"
                                     "redis.call('HSET', KEYS[2], unpack(ARGV, 2))\n"
                                     "redis.call('DEL', KEYS[1])\n"
                                     "return 1\n";

/* Runs a lock script (the store's fence does not apply: the scripts check the token
 * themselves); *mine says what it answered. */
static int lock_script(struct store *s, const char *lua, size_t lua_len, const char *token,
                       const char *const *args, size_t nargs, bool two_keys, bool *mine,
                       struct err *e)
{
    char fence[sizeof(s->fence)];
    struct cmdbuf *cb;
    redisReply **r = NULL;
    int rc;
    memcpy(fence, s->fence, sizeof(fence));
    s->fence[0] = '\0';
    cb = cmd_batch(s);
    cmd_begin(cb, (two_keys ? 6u : 5u) + nargs);
    CMD_LIT(cb, "EVAL");
    cmd_arg(cb, lua, lua_len);
    cmd_str(cb, two_keys ? "2" : "1");
    CMD_LIT(cb, STORE_INDEX_LOCK);
    if (two_keys) {
        CMD_LIT(cb, STORE_INDEX_READY);
    }
    cmd_str(cb, token);
    for (size_t i = 0; i < nargs; i++) {
        cmd_str(cb, args[i]);
    }
    rc = cmd_run(s, &r, e);
    memcpy(s->fence, fence, sizeof(fence));
    if (rc != 0) {
        return -1;
    }
    *mine = r[0]->type == REDIS_REPLY_INTEGER && r[0]->integer == 1;
    replies_free(r, 1);
    return 0;
}

int store_index_lock_renew(struct store *s, const char *token, int64_t ttl_ms, struct err *e)
{
    char ttl[24];
    const char *args[] = { ttl };
    bool mine = false;
    snprintf(ttl, sizeof(ttl), "%lld", (long long)(ttl_ms > 0 ? ttl_ms : 1));
    if (lock_script(s, lock_renew_lua, sizeof(lock_renew_lua) - 1, token, args, 1, false, &mine,
                    e) != 0) {
        return -1;
    }
    if (!mine) {
        return err_set(e, ERRC_CONFLICT,
                       "lost the index rebuild lock (it expired; another process may be "
                       "rebuilding the index now)");
    }
    return 0;
}

int store_index_lock_release(struct store *s, const char *token, struct err *e)
{
    bool mine = false;
    return lock_script(s, lock_release_lua, sizeof(lock_release_lua) - 1, token, NULL, 0, false,
                       &mine, e);
}

int store_index_mark_ready(struct store *s, const char *token, const struct store_index_mark *m,
                           struct err *e)
{
    char seq[24], records[24], at[40];
    bool mine = false;
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)m->seq);
    snprintf(records, sizeof(records), "%llu", (unsigned long long)m->records);
    time_format_rfc3339_ms(at, sizeof(at));
    const char *args[] = { "gen",     m->gen,  "seq", seq, "hash", m->hash ? m->hash : "",
                           "records", records, "at",  at,  "by",   m->by ? m->by : token };
    if (lock_script(s, mark_ready_lua, sizeof(mark_ready_lua) - 1, token, args, ARRAY_LEN(args),
                    true, &mine, e) != 0) {
        return -1;
    }
    if (!mine) {
        return err_set(e, ERRC_CONFLICT,
                       "lost the index rebuild lock before the end (another process rebuilds "
                       "the index; this rebuild is not marked complete)");
    }
    return 0;
}

int store_index_mark_clear(struct store *s, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    cmd_begin(cb, 2);
    CMD_LIT(cb, "DEL");
    CMD_LIT(cb, STORE_INDEX_READY);
    return cmd_run(s, NULL, e);
}

int store_index_mark_get(struct store *s, struct buf *fields, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    int rc;
    cmd_begin(cb, 2);
    CMD_LIT(cb, "HGETALL");
    CMD_LIT(cb, STORE_INDEX_READY);
    if ((rc = cmd_run(s, &r, e)) != 0) {
        return -1;
    }
    if (r[0]->type != REDIS_REPLY_ARRAY || r[0]->elements == 0) {
        rc = err_set(e, ERRC_NOT_FOUND, "the index is not marked complete");
    } else {
        hash_lines(r[0], fields);
    }
    replies_free(r, 1);
    return rc;
}

void store_fence(struct store *s, const char *token)
{
    snprintf(s->fence, sizeof(s->fence), "%s", token ? token : "");
}

static const char *const index_patterns[] = {
    STORE_PREFIX "cert:*",       STORE_PREFIX "fp:*",         STORE_PREFIX "cn:*",
    STORE_PREFIX "ca:*:serials", STORE_PREFIX "ca:*:revoked", STORE_PREFIX "ca:*:expiry",
    STORE_PREFIX "audit:head",
};

/* Collects every key matching the index patterns (SCAN), sorted. */
static int index_keys(struct store *s, char ***keys, size_t *nkeys, struct err *e)
{
    size_t n = 0, cap = 0;
    char **k = NULL;
    for (size_t p = 0; p < ARRAY_LEN(index_patterns); p++) {
        char cursor[32] = "0";
        do {
            struct cmdbuf *cb = cmd_batch(s);
            redisReply **r = NULL;
            cmd_begin(cb, 6);
            CMD_LIT(cb, "SCAN");
            cmd_str(cb, cursor);
            CMD_LIT(cb, "MATCH");
            cmd_str(cb, index_patterns[p]);
            CMD_LIT(cb, "COUNT");
            CMD_LIT(cb, "1000");
            if (cmd_run(s, &r, e) != 0) {
                for (size_t i = 0; i < n; i++) {
                    xfree(k[i]);
                }
                xfree(k);
                return -1;
            }
            redisReply *a = r[0];
            if (a->type != REDIS_REPLY_ARRAY || a->elements != 2) {
                replies_free(r, 1);
                return store_fail(s, e, "bad SCAN reply");
            }
            snprintf(cursor, sizeof(cursor), "%s", a->element[0]->str);
            for (size_t i = 0; i < a->element[1]->elements; i++) {
                k = xgrow(k, sizeof(char *), n + 1, &cap);
                k[n++] = xstrndup(a->element[1]->element[i]->str, a->element[1]->element[i]->len);
            }
            replies_free(r, 1);
        } while (strcmp(cursor, "0") != 0);
    }
    if (n) {
        qsort(k, n, sizeof(char *), cmp_str);
    }
    *keys = k;
    *nkeys = n;
    return 0;
}

static void keys_free(char **k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        xfree(k[i]);
    }
    xfree(k);
}

int store_index_clear(struct store *s, uint64_t *removed, struct err *e)
{
    char **k = NULL;
    size_t n = 0;
    if (index_keys(s, &k, &n, e) != 0) {
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i += 512) {
        struct cmdbuf *cb = cmd_batch(s);
        size_t m = n - i < 512 ? n - i : 512;
        cmd_begin(cb, m + 1);
        CMD_LIT(cb, "UNLINK");
        for (size_t j = 0; j < m; j++) {
            cmd_str(cb, k[i + j]);
        }
        rc = cmd_run(s, NULL, e);
    }
    if (removed) {
        *removed = n;
    }
    keys_free(k, n);
    return rc;
}

int store_index_dump(struct store *s, struct buf *out, struct err *e)
{
    char **k = NULL;
    size_t n = 0;
    if (index_keys(s, &k, &n, e) != 0) {
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct cmdbuf *cb = cmd_batch(s);
        redisReply **r = NULL;
        cmd_begin(cb, 2);
        CMD_LIT(cb, "TYPE");
        cmd_str(cb, k[i]);
        rc = cmd_run(s, &r, e);
        if (rc != 0) {
            break;
        }
        char t[16];
        snprintf(t, sizeof(t), "%s", r[0]->str ? r[0]->str : "");
        replies_free(r, 1);
        bool zset = strcmp(t, "zset") == 0;
        cmd_begin(cb, zset ? 5 : 2);
        cmd_str(cb, strcmp(t, "hash") == 0  ? "HGETALL"
                    : strcmp(t, "set") == 0 ? "SMEMBERS"
                    : zset                  ? "ZRANGE"
                                            : "GET");
        cmd_str(cb, k[i]);
        if (zset) {
            CMD_LIT(cb, "0");
            CMD_LIT(cb, "-1");
            CMD_LIT(cb, "WITHSCORES");
        }
        rc = cmd_run(s, &r, e);
        if (rc != 0) {
            break;
        }
        buf_addf(out, "%s %s\n", t, k[i]);
        if (strcmp(t, "hash") == 0) {
            hash_lines(r[0], out);
        } else if (zset && r[0]->type == REDIS_REPLY_ARRAY) {
            /* "member score" lines, sorted */
            size_t np = r[0]->elements / 2;
            char **m = xcalloc(np ? np : 1, sizeof(char *));
            for (size_t j = 0; j < np; j++) {
                struct buf line = BUF_INIT;
                buf_addf(&line, "%.*s %.*s", (int)r[0]->element[2 * j]->len,
                         r[0]->element[2 * j]->str, (int)r[0]->element[2 * j + 1]->len,
                         r[0]->element[2 * j + 1]->str);
                m[j] = buf_detach(&line, NULL);
            }
            qsort(m, np, sizeof(char *), cmp_str);
            for (size_t j = 0; j < np; j++) {
                buf_addf(out, "\t%s\n", m[j]);
                xfree(m[j]);
            }
            xfree(m);
        } else if (r[0]->type == REDIS_REPLY_ARRAY) {
            char **m = xcalloc(r[0]->elements ? r[0]->elements : 1, sizeof(char *));
            for (size_t j = 0; j < r[0]->elements; j++) {
                m[j] = xstrndup(r[0]->element[j]->str, r[0]->element[j]->len);
            }
            qsort(m, r[0]->elements, sizeof(char *), cmp_str);
            for (size_t j = 0; j < r[0]->elements; j++) {
                buf_addf(out, "\t%s\n", m[j]);
                xfree(m[j]);
            }
            xfree(m);
        } else if (r[0]->type == REDIS_REPLY_STRING) {
            buf_addf(out, "\t%.*s\n", (int)r[0]->len, r[0]->str);
        }
        replies_free(r, 1);
    }
    keys_free(k, n);
    return rc;
}

int store_buckets_take(struct store *s, struct store_bucket_req *v, size_t n, struct err *e)
{
    struct cmdbuf *cb = NULL;
    redisReply **rep = NULL;
    int rc;
    if (n == 0) {
        return 0;
    }
    /* all checked before anything is encoded: a refused batch sends nothing */
    for (size_t i = 0; i < n; i++) {
        if (!(v[i].rate > 0) || !(v[i].burst >= v[i].cost) || !(v[i].cost > 0)) {
            return err_set(e, ERRC_INVALID,
                           "bucket '%s': rate and cost must be positive and "
                           "burst at least the cost",
                           v[i].name);
        }
    }
    cb = cmd_batch(s);
    for (size_t i = 0; i < n; i++) {
        char r[32], b[32], c[32];
        snprintf(r, sizeof(r), "%.6f", v[i].rate);
        snprintf(b, sizeof(b), "%.6f", v[i].burst);
        snprintf(c, sizeof(c), "%.6f", v[i].cost);
        cmd_begin(cb, 7);
        CMD_LIT(cb, "EVAL");
        cmd_arg(cb, store_bucket_lua, sizeof(store_bucket_lua) - 1);
        CMD_LIT(cb, "1");
        cmd_key(cb, "bucket:", v[i].name, "");
        cmd_str(cb, r);
        cmd_str(cb, b);
        cmd_str(cb, c);
    }
    /* one round trip for the whole batch */
    rc = cmd_run(s, &rep, e);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        redisReply *x = rep[i];
        if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
            x->element[0]->type != REDIS_REPLY_INTEGER ||
            x->element[1]->type != REDIS_REPLY_INTEGER) {
            rc = store_fail(s, e, "bad token-bucket reply");
        } else {
            v[i].allowed = x->element[0]->integer == 1;
            v[i].wait_ms = (int64_t)x->element[1]->integer;
        }
    }
    if (rep) {
        replies_free(rep, n);
    }
    return rc;
}

/* KEYS: renewing:<serial>, reenroll:<lineage>; ARGV: limit, window_ms, ttl_ms, attempt.
 * Returns {0, 0} (counted and claimed), {1, ms the claim still holds} or {2, ms until the
 * oldest attempt of the window leaves it}. */
static const char reenroll_begin_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local win = tonumber(ARGV[2])\n"
    "if redis.call('EXISTS', KEYS[1]) == 1 then return {1, redis.call('PTTL', KEYS[1])} end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - win)\n"
    "if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then\n"
    "  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')\n"
    "  return {2, tonumber(first[2]) + win - now}\n"
    "end\n"
    "redis.call('ZADD', KEYS[2], now, ARGV[4])\n"
    "redis.call('PEXPIRE', KEYS[2], win)\n"
    "redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[3])\n"
    "return {0, 0}\n";

/* KEYS: renewing:<serial>, reenroll:<lineage>; ARGV: attempt, refund (1/0). */
static const char reenroll_end_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
    "if ARGV[2] == '1' then redis.call('ZREM', KEYS[2], ARGV[1]) end\n"
    "return 0\n";

int store_reenroll_begin(struct store *s, const char *serial, const char *lineage,
                         const char *attempt_id, int64_t limit, int64_t window_ms, int64_t ttl_ms,
                         enum store_reenroll_result *res, int64_t *retry_ms, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    if (limit < 1 || window_ms < 1 || ttl_ms < 1) {
        return err_set(e, ERRC_INVALID, "re-enrollment limit, window and claim must be positive");
    }
    cmd_begin(cb, 9);
    CMD_LIT(cb, "EVAL");
    cmd_arg(cb, reenroll_begin_lua, sizeof(reenroll_begin_lua) - 1);
    CMD_LIT(cb, "2");
    cmd_key(cb, "renewing:", serial, "");
    cmd_key(cb, "reenroll:", lineage, "");
    cmd_u64(cb, (uint64_t)limit);
    cmd_u64(cb, (uint64_t)window_ms);
    cmd_u64(cb, (uint64_t)ttl_ms);
    cmd_str(cb, attempt_id);
    if (cmd_run(s, &r, e) != 0) {
        return -1;
    }
    const redisReply *x = r[0];
    int rc = 0;
    if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
        x->element[0]->type != REDIS_REPLY_INTEGER || x->element[1]->type != REDIS_REPLY_INTEGER ||
        x->element[0]->integer < 0 || x->element[0]->integer > 2) {
        rc = store_fail(s, e, "bad re-enrollment reply");
    } else {
        *res = x->element[0]->integer == 0   ? STORE_REENROLL_OK
               : x->element[0]->integer == 1 ? STORE_REENROLL_BUSY
                                             : STORE_REENROLL_LIMIT;
        *retry_ms = x->element[1]->integer > 0 ? (int64_t)x->element[1]->integer : 0;
    }
    replies_free(r, 1);
    return rc;
}

int store_reenroll_end(struct store *s, const char *serial, const char *lineage,
                       const char *attempt_id, bool refund, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    cmd_begin(cb, 7);
    CMD_LIT(cb, "EVAL");
    cmd_arg(cb, reenroll_end_lua, sizeof(reenroll_end_lua) - 1);
    CMD_LIT(cb, "2");
    cmd_key(cb, "renewing:", serial, "");
    cmd_key(cb, "reenroll:", lineage, "");
    cmd_str(cb, attempt_id);
    if (refund) {
        CMD_LIT(cb, "1");
    } else {
        CMD_LIT(cb, "0");
    }
    return cmd_run(s, NULL, e);
}

int store_bucket_take(struct store *s, const char *name, double rate, double burst, double cost,
                      bool *allowed, int64_t *wait_ms, struct err *e)
{
    struct store_bucket_req r = { .name = name, .rate = rate, .burst = burst, .cost = cost };
    if (store_buckets_take(s, &r, 1, e) != 0) {
        return -1;
    }
    *allowed = r.allowed;
    *wait_ms = r.wait_ms;
    return 0;
}

/* ---- expiry ------------------------------------------------------------------------------- */

int store_expiry_count(struct store *s, const char *ca, const int64_t *upto, size_t n,
                       uint64_t *counts, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    int rc;
    for (size_t i = 0; i < n; i++) {
        char hi[24];
        snprintf(hi, sizeof(hi), "%lld", (long long)upto[i]);
        cmd_begin(cb, 4);
        CMD_LIT(cb, "ZCOUNT");
        cmd_key(cb, "ca:", ca, ":expiry");
        CMD_LIT(cb, "-inf");
        cmd_str(cb, hi);
    }
    rc = cmd_run(s, &r, e);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (r[i]->type != REDIS_REPLY_INTEGER || r[i]->integer < 0) {
            rc = store_fail(s, e, "bad reply to ZCOUNT");
        } else {
            counts[i] = (uint64_t)r[i]->integer;
        }
    }
    replies_free(r, n);
    return rc;
}

int store_expiry_range(struct store *s, const char *ca, int64_t from, int64_t to,
                       struct store_expiring **out, size_t *n, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    char lo[24], hi[24];
    *out = NULL;
    *n = 0;
    snprintf(lo, sizeof(lo), "%lld", (long long)from);
    snprintf(hi, sizeof(hi), "%lld", (long long)to);
    cmd_begin(cb, 5);
    CMD_LIT(cb, "ZRANGEBYSCORE");
    cmd_key(cb, "ca:", ca, ":expiry");
    cmd_str(cb, lo);
    cmd_str(cb, hi);
    CMD_LIT(cb, "WITHSCORES");
    if (cmd_run(s, &r, e) != 0) {
        return -1;
    }
    if (r[0]->type != REDIS_REPLY_ARRAY || r[0]->elements % 2 != 0) {
        replies_free(r, 1);
        return store_fail(s, e, "bad reply to ZRANGEBYSCORE");
    }
    *n = r[0]->elements / 2;
    *out = xcalloc(*n ? *n : 1, sizeof(**out));
    for (size_t i = 0; i < *n; i++) {
        (*out)[i].serial = xstrndup(r[0]->element[2 * i]->str, r[0]->element[2 * i]->len);
        (*out)[i].not_after = (int64_t)strtod(r[0]->element[2 * i + 1]->str, NULL);
    }
    replies_free(r, 1);
    return 0;
}

void store_expiring_free(struct store_expiring *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        xfree(v[i].serial);
    }
    xfree(v);
}

int store_once(struct store *s, const char *name, int64_t ttl_s, bool *first, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    cmd_begin(cb, 6);
    CMD_LIT(cb, "SET");
    cmd_key(cb, "once:", name, "");
    CMD_LIT(cb, "1");
    CMD_LIT(cb, "NX");
    CMD_LIT(cb, "EX");
    cmd_u64(cb, ttl_s > 0 ? (uint64_t)ttl_s : 1);
    if (cmd_run(s, &r, e) != 0) {
        return -1;
    }
    *first = r[0]->type == REDIS_REPLY_STATUS;
    replies_free(r, 1);
    return 0;
}

int store_hmget(struct store *s, const char *key, const char *const *fields, size_t n,
                char **values, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    cmd_begin(cb, n + 2);
    CMD_LIT(cb, "HMGET");
    cmd_str(cb, key);
    for (size_t i = 0; i < n; i++) {
        cmd_str(cb, fields[i]);
    }
    if (cmd_run(s, &r, e) != 0) {
        return -1;
    }
    if (r[0]->type != REDIS_REPLY_ARRAY || r[0]->elements != n) {
        replies_free(r, 1);
        return store_fail(s, e, "bad reply to HMGET");
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *v = r[0]->element[i];
        values[i] = v->type == REDIS_REPLY_STRING ? xstrndup(v->str, v->len) : NULL;
    }
    replies_free(r, 1);
    return 0;
}

/* ---- issuing aliases ------------------------------------------------------------------------- */

int store_alias_set(struct store *s, const char *alias, const char *ca, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    cmd_begin(cb, 4);
    CMD_LIT(cb, "HSET");
    CMD_LIT(cb, STORE_PREFIX STORE_ALIASES);
    cmd_str(cb, alias);
    cmd_str(cb, ca);
    cmd_begin(cb, 3);
    CMD_LIT(cb, "HDEL");
    CMD_LIT(cb, STORE_PREFIX STORE_ALIASES_NEXT);
    cmd_str(cb, alias);
    return cmd_run(s, NULL, e) == 0 ? store_alias_touch(s, alias, e) : -1;
}

int store_alias_prepare(struct store *s, const char *alias, const char *ca, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    cmd_begin(cb, 4);
    CMD_LIT(cb, "HSET");
    CMD_LIT(cb, STORE_PREFIX STORE_ALIASES_NEXT);
    cmd_str(cb, alias);
    cmd_str(cb, ca);
    return cmd_run(s, NULL, e) == 0 ? store_alias_touch(s, alias, e) : -1;
}

int store_alias_touch(struct store *s, const char *alias, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    cmd_begin(cb, 2);
    CMD_LIT(cb, "INCR");
    CMD_LIT(cb, STORE_PREFIX STORE_ALIASES_GEN);
    cmd_begin(cb, 3);
    CMD_LIT(cb, "PUBLISH");
    CMD_LIT(cb, STORE_PREFIX STORE_ALIASES);
    cmd_str(cb, alias);
    return cmd_run(s, NULL, e);
}

static int alias_hash(struct store *s, const char *key, char ***names, char ***cas, size_t *n,
                      uint64_t *gen, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    *names = *cas = NULL;
    *n = 0;
    *gen = 0;
    cmd_begin(cb, 2);
    CMD_LIT(cb, "GET");
    CMD_LIT(cb, STORE_PREFIX STORE_ALIASES_GEN);
    cmd_begin(cb, 2);
    CMD_LIT(cb, "HGETALL");
    cmd_str(cb, key);
    if (cmd_run(s, &r, e) != 0) {
        return -1;
    }
    if (r[1]->type != REDIS_REPLY_ARRAY || r[1]->elements % 2 != 0) {
        replies_free(r, 2);
        return store_fail(s, e, "bad reply to HGETALL");
    }
    if (r[0]->type == REDIS_REPLY_STRING && str_to_u64(r[0]->str, gen) != 0) {
        *gen = 0;
    }
    size_t m = r[1]->elements / 2;
    *names = xcalloc(m ? m : 1, sizeof(char *));
    *cas = xcalloc(m ? m : 1, sizeof(char *));
    for (size_t i = 0; i < m; i++) {
        const redisReply *k = r[1]->element[2 * i], *v = r[1]->element[2 * i + 1];
        (*names)[i] = xstrndup(k->str ? k->str : "", k->str ? k->len : 0);
        (*cas)[i] = xstrndup(v->str ? v->str : "", v->str ? v->len : 0);
    }
    *n = m;
    replies_free(r, 2);
    return 0;
}

int store_alias_all(struct store *s, char ***names, char ***cas, size_t *n, uint64_t *gen,
                    struct err *e)
{
    return alias_hash(s, STORE_PREFIX STORE_ALIASES, names, cas, n, gen, e);
}

int store_alias_next(struct store *s, char ***names, char ***cas, size_t *n, uint64_t *gen,
                     struct err *e)
{
    return alias_hash(s, STORE_PREFIX STORE_ALIASES_NEXT, names, cas, n, gen, e);
}

int store_alias_seen(struct store *s, uint64_t *min, size_t *n, struct err *e)
{
    char cursor[32] = "0";
    *min = UINT64_MAX;
    *n = 0;
    do {
        struct cmdbuf *cb = cmd_batch(s);
        redisReply **r = NULL, **v = NULL;
        cmd_begin(cb, 6);
        CMD_LIT(cb, "SCAN");
        cmd_str(cb, cursor);
        CMD_LIT(cb, "MATCH");
        CMD_LIT(cb, STORE_PREFIX STORE_ALIASES_SEEN "*");
        CMD_LIT(cb, "COUNT");
        CMD_LIT(cb, "1000");
        if (cmd_run(s, &r, e) != 0) {
            return -1;
        }
        redisReply *a = r[0];
        if (a->type != REDIS_REPLY_ARRAY || a->elements != 2 ||
            a->element[1]->type != REDIS_REPLY_ARRAY) {
            replies_free(r, 1);
            return store_fail(s, e, "bad SCAN reply");
        }
        snprintf(cursor, sizeof(cursor), "%s", a->element[0]->str ? a->element[0]->str : "0");
        size_t k = a->element[1]->elements;
        if (k > 0) {
            cmd_begin(cb, k + 1);
            CMD_LIT(cb, "MGET");
            for (size_t i = 0; i < k; i++) {
                cmd_arg(cb, a->element[1]->element[i]->str, a->element[1]->element[i]->len);
            }
        }
        replies_free(r, 1);
        if (k > 0) {
            if (cmd_run(s, &v, e) != 0) {
                return -1;
            }
            for (size_t i = 0; v[0]->type == REDIS_REPLY_ARRAY && i < v[0]->elements; i++) {
                uint64_t g = 0;
                const redisReply *x = v[0]->element[i];
                if (x->type == REDIS_REPLY_STRING && str_to_u64(x->str, &g) == 0) {
                    *min = g < *min ? g : *min;
                    (*n)++;
                }
            }
            replies_free(v, 1);
        }
    } while (strcmp(cursor, "0") != 0);
    if (*n == 0) {
        *min = 0;
    }
    return 0;
}

int store_ca_serials(struct store *s, const char *ca, char ***serials, size_t *n, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    *serials = NULL;
    *n = 0;
    cmd_begin(cb, 2);
    CMD_LIT(cb, "SMEMBERS");
    cmd_key(cb, "ca:", ca, ":serials");
    if (cmd_run(s, &r, e) != 0) {
        return -1;
    }
    if (r[0]->type != REDIS_REPLY_ARRAY) {
        replies_free(r, 1);
        return store_fail(s, e, "bad reply to SMEMBERS");
    }
    *serials = xcalloc(r[0]->elements ? r[0]->elements : 1, sizeof(char *));
    for (size_t i = 0; i < r[0]->elements; i++) {
        const redisReply *x = r[0]->element[i];
        (*serials)[(*n)++] = xstrndup(x->str ? x->str : "", x->str ? x->len : 0);
    }
    replies_free(r, 1);
    return 0;
}

void store_alias_free(char **names, char **cas, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        xfree(names[i]);
        xfree(cas[i]);
    }
    xfree(names);
    xfree(cas);
}

/* Flattens a reply (a string, an integer, nil or an array of them, nested) into out. */
static int eval_flatten(const redisReply *x, char **out, size_t cap, size_t *n)
{
    if (x->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < x->elements; i++) {
            if (eval_flatten(x->element[i], out, cap, n) != 0) {
                return -1;
            }
        }
        return 0;
    }
    if (*n == cap) {
        return -1;
    }
    if (x->type == REDIS_REPLY_STRING || x->type == REDIS_REPLY_STATUS) {
        out[(*n)++] = xstrndup(x->str, x->len);
    } else if (x->type == REDIS_REPLY_INTEGER) {
        char tmp[24];
        snprintf(tmp, sizeof(tmp), "%lld", (long long)x->integer);
        out[(*n)++] = xstrdup(tmp);
    } else if (x->type == REDIS_REPLY_NIL) {
        out[(*n)++] = NULL;
    } else {
        return -1;
    }
    return 0;
}

int store_eval(struct store *s, const char *script, const char *const *keys, size_t nkeys,
               const char *const *args, size_t nargs, char **out, size_t cap, size_t *n,
               struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    *n = 0;
    cmd_begin(cb, 3 + nkeys + nargs);
    CMD_LIT(cb, "EVAL");
    cmd_str(cb, script);
    cmd_u64(cb, nkeys);
    for (size_t i = 0; i < nkeys; i++) {
        cmd_key(cb, keys[i], "", "");
    }
    for (size_t i = 0; i < nargs; i++) {
        cmd_str(cb, args[i]);
    }
    if (cmd_run(s, &r, e) != 0) {
        return -1;
    }
    int rc = 0;
    if (eval_flatten(r[0], out, cap, n) != 0) {
        for (size_t i = 0; i < *n; i++) {
            xfree(out[i]);
        }
        *n = 0;
        rc = store_fail(s, e, "unexpected reply to a script");
    }
    replies_free(r, 1);
    return rc;
}

/* ---- CA compromise ------------------------------------------------------------------------- */

int store_ca_block(struct store *s, const char *ca, bool *added, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    cmd_begin(cb, 3);
    CMD_LIT(cb, "SADD");
    CMD_LIT(cb, STORE_PREFIX STORE_CA_BLOCKED);
    cmd_str(cb, ca);
    int rc = cmd_run(s, &r, e);
    if (rc == 0 && r[0]->type != REDIS_REPLY_INTEGER) {
        rc = store_fail(s, e, "bad reply to SADD");
    }
    if (rc == 0 && added) {
        *added = r[0]->integer == 1;
    }
    replies_free(r, rc == 0 ? 1 : 0);
    return rc;
}

int store_ca_blocked(struct store *s, const char *ca, bool *blocked, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    cmd_begin(cb, 3);
    CMD_LIT(cb, "SISMEMBER");
    CMD_LIT(cb, STORE_PREFIX STORE_CA_BLOCKED);
    cmd_str(cb, ca);
    int rc = cmd_run(s, &r, e);
    if (rc == 0 && r[0]->type != REDIS_REPLY_INTEGER) {
        rc = store_fail(s, e, "bad reply to SISMEMBER");
    }
    if (rc == 0) {
        *blocked = r[0]->integer == 1;
    }
    replies_free(r, rc == 0 ? 1 : 0);
    return rc;
}

int store_certs_fields(struct store *s, const char *const *serials, size_t n,
                       const char *const *fields, size_t nf, char **values, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    memset(values, 0, n * nf * sizeof(char *));
    if (n == 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        cmd_begin(cb, 2 + nf);
        CMD_LIT(cb, "HMGET");
        cmd_key(cb, STORE_KEY_CERT, serials[i], "");
        for (size_t j = 0; j < nf; j++) {
            cmd_str(cb, fields[j]);
        }
    }
    if (cmd_run(s, &r, e) != 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (r[i]->type != REDIS_REPLY_ARRAY || r[i]->elements != nf) {
            continue;
        }
        for (size_t j = 0; j < nf; j++) {
            redisReply *v = r[i]->element[j];
            if (v->type == REDIS_REPLY_STRING) {
                values[i * nf + j] = xstrndup(v->str, v->len);
            }
        }
    }
    replies_free(r, n);
    return 0;
}

/* KEYS[1] ca:<ca>:compromise:certs, KEYS[2] ca:<ca>:compromise; ARGV[1] the cert: prefix,
 * ARGV[2] the revoke job record prefix. Once the response is done, its recorded counts; before,
 * each certificate by its revoke job's record, which counts once it is of this revocation
 * (change_seq at least the certificate's revoke_seq). */
static const char compromise_count_lua[] =
    "local st = redis.call('HMGET', KEYS[2], 'step', 'total', 'aws_revoked', 'aws_unknown',\n"
    "                      'failed', 'other')\n"
    "if st[1] == 'done' then\n"
    "  return {st[1], st[2] or '0', st[3] or '0', st[4] or '0', st[5] or '0', st[6] or '0', '0'}\n"
    "end\n"
    "local m = redis.call('SMEMBERS', KEYS[1])\n"
    "local rev, unk, dead, other, pend = 0, 0, 0, 0, 0\n"
    "for _, v in ipairs(m) do\n"
    "  local fp, serial = string.match(v, '^(%x+) (%x+)$')\n"
    "  if fp then\n"
    "    local seq = tonumber(redis.call('HGET', ARGV[1] .. serial, 'revoke_seq')) or 0\n"
    "    local j = redis.call('HMGET', ARGV[2] .. fp, 'state', 'outcome', 'aws_status',\n"
    "                         'change_seq')\n"
    "    local ours = (tonumber(j[4]) or -1) >= seq\n"
    "    if ours and j[1] == 'DEAD' then dead = dead + 1\n"
    "    elseif ours and j[1] == 'DONE' then\n"
    "      if j[2] == 'unknown' then unk = unk + 1\n"
    "      elseif j[3] == 'REVOKED' then rev = rev + 1\n"
    "      else other = other + 1 end\n"
    "    else pend = pend + 1 end\n"
    "  end\n"
    "end\n"
    "return {st[1] or '', tostring(#m), tostring(rev), tostring(unk), tostring(dead),\n"
    "        tostring(other), tostring(pend)}\n";

int store_compromise_count(struct store *s, const char *ca, struct store_compromise *out,
                           struct err *e)
{
    char k1[160], k2[160];
    char *v[7] = { NULL };
    size_t n = 0;
    uint64_t *dst[6] = { &out->total,  &out->revoked, &out->unknown,
                         &out->failed, &out->other,   &out->pending };
    int rc = 0;
    memset(out, 0, sizeof(*out));
    snprintf(k1, sizeof(k1), "ca:%s:compromise:certs", ca);
    snprintf(k2, sizeof(k2), "ca:%s:compromise", ca);
    const char *keys[] = { k1, k2 };
    const char *args[] = { STORE_PREFIX STORE_KEY_CERT, STORE_PREFIX STORE_KEY_REVOKE_JOB };
    if (store_eval(s, compromise_count_lua, keys, 2, args, 2, v, 7, &n, e) != 0) {
        return -1;
    }
    if (n != 7) {
        rc = store_fail(s, e, "bad reply to the compromise count");
    }
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && i == 0) {
            snprintf(out->step, sizeof(out->step), "%s", v[0] ? v[0] : "");
        } else if (rc == 0 && (v[i] == NULL || str_to_u64(v[i], dst[i - 1]) != 0)) {
            rc = store_fail(s, e, "bad count in the compromise count");
        }
        xfree(v[i]);
    }
    return rc;
}

int store_compromises(struct store *s, char ***names, size_t *n, struct err *e)
{
    struct cmdbuf *cb = cmd_batch(s);
    redisReply **r = NULL;
    *names = NULL;
    *n = 0;
    cmd_begin(cb, 2);
    CMD_LIT(cb, "SMEMBERS");
    CMD_LIT(cb, STORE_PREFIX STORE_CA_COMPROMISES);
    if (cmd_run(s, &r, e) != 0) {
        return -1;
    }
    if (r[0]->type == REDIS_REPLY_ARRAY && r[0]->elements > 0) {
        *names = xcalloc(r[0]->elements, sizeof(char *));
        for (size_t i = 0; i < r[0]->elements; i++) {
            if (r[0]->element[i]->type == REDIS_REPLY_STRING) {
                (*names)[(*n)++] = xstrndup(r[0]->element[i]->str, r[0]->element[i]->len);
            }
        }
    }
    replies_free(r, 1);
    return 0;
}
