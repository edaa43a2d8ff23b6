/*
 * Enrollment tokens, failed-redemption limits and claims in Redis (issuance/enroll.h). Every
 * decision that must be atomic (a token taken once, a device id reserved once per claim, the
 * failure bucket) is one script.
 */
#include "issuance/enroll.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"

#define FAIL_WINDOW_MS 600000 /* enroll_fail_limit failures come back per 10 minutes */

bool enroll_device_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > ENROLL_DEVICE_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == ':' || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

static void replies_release(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        xfree(v[i]);
    }
}

/* ---- tokens --------------------------------------------------------------------------------- */

/* KEYS: token; ARGV: device, profile, ca, requester, expires, id */
static const char token_create_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'device', ARGV[1], 'profile', ARGV[2], 'ca', ARGV[3],\n"
    "  'requester', ARGV[4], 'expires', ARGV[5], 'id', ARGV[6])\n"
    "redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[5]))\n"
    "return 1\n";

/* KEYS: token; ARGV: attempt. Redis's clock decides expiry. */
static const char token_take_lua[] =
    "local v = redis.call('HMGET', KEYS[1], 'device', 'profile', 'ca', 'requester', 'expires',\n"
    "  'used')\n"
    "if not v[1] or v[6] then return {0} end\n"
    "local t = redis.call('TIME')\n"
    "if tonumber(t[1]) >= tonumber(v[5]) then return {0} end\n"
    "redis.call('HSET', KEYS[1], 'used', ARGV[1])\n"
    "return {1, v[1], v[2], v[3], v[4], v[5]}\n";

static const char token_give_back_lua[] =
    "if redis.call('HGET', KEYS[1], 'used') == ARGV[1] then redis.call('HDEL', KEYS[1], 'used') "
    "end\n"
    "return 0\n";

static void token_key(char *out, size_t cap, const char *hash)
{
    snprintf(out, cap, "token:%s", hash);
}

static void token_hash(const char *token, struct enroll_token *t)
{
    sha256_hex(token, strlen(token), t->hash);
    snprintf(t->id, sizeof(t->id), "%.16s", t->hash);
}

int enroll_token_create(struct store *st, struct audit_log *log, struct enroll_token *t,
                        char token[ENROLL_TOKEN_LEN + 1], struct err *e)
{
    uint8_t rnd[32];
    struct buf b64 = BUF_INIT;
    char key[80], exp[24], expires[32], *out[1] = { NULL };
    size_t n = 0;
    int rc = -1;
    json_t *rec = NULL;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return err_openssl(e, ERRC_INTERNAL, "cannot draw a token");
    }
    base64_encode(&b64, rnd, sizeof(rnd));
    for (size_t i = 0; i < b64.len; i++) {
        b64.data[i] = b64.data[i] == '+' ? '-' : b64.data[i] == '/' ? '_' : b64.data[i];
    }
    snprintf(token, ENROLL_TOKEN_LEN + 1, "%.*s", ENROLL_TOKEN_LEN, b64.data);
    buf_release_secret(&b64);
    token_hash(token, t);
    token_key(key, sizeof(key), t->hash);
    snprintf(exp, sizeof(exp), "%lld", (long long)t->expires);
    const char *keys[] = { key };
    const char *args[] = { t->device, t->profile, t->ca, t->requester, exp, t->id };
    if (store_eval(st, token_create_lua, keys, 1, args, 6, out, 1, &n, e) != 0) {
        goto out;
    }
    if (n != 1 || out[0] == NULL || strcmp(out[0], "1") != 0) {
        err_set(e, ERRC_INTERNAL, "a token drawn twice");
        goto out;
    }
    time_format_rfc3339((time_t)t->expires, expires, sizeof(expires));
    rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "type", "token_issue", "token", t->id,
                    "device", t->device, "profile", t->profile, "ca", t->ca, "requester",
                    t->requester, "expires", expires);
    if (rec == NULL) {
        err_set(e, ERRC_INVALID, "the token's record cannot be encoded");
    } else if (audit_append(log, &rec, 1, NULL, e) == 0) {
        rc = 0;
    }
    json_decref(rec);
    if (rc != 0) {
        struct err e2 = ERR_INIT;
        const char *del_keys[] = { key };
        char *o2[1] = { NULL };
        size_t n2 = 0;
        if (store_eval(st, "return redis.call('DEL', KEYS[1])", del_keys, 1, NULL, 0, o2, 1, &n2,
                       &e2) != 0) {
            log_warn("token %s: not audited and cannot be removed (it expires): %s", t->id, e2.msg);
        }
        replies_release(o2, n2);
    }
out:
    replies_release(out, n);
    if (rc != 0) {
        OPENSSL_cleanse(token, ENROLL_TOKEN_LEN + 1);
    }
    return rc;
}

int enroll_token_take(struct store *st, const char *token, const char *attempt,
                      struct enroll_token *t, struct err *e)
{
    char key[80], *out[6] = { NULL };
    size_t n = 0;
    int rc = 0;
    memset(t, 0, sizeof(*t));
    if (strlen(token) != ENROLL_TOKEN_LEN) {
        return 0; /* no token of ours: not worth a round trip */
    }
    token_hash(token, t);
    token_key(key, sizeof(key), t->hash);
    const char *keys[] = { key };
    const char *args[] = { attempt };
    if (store_eval(st, token_take_lua, keys, 1, args, 1, out, 6, &n, e) != 0) {
        return -1;
    }
    if (n == 6 && out[0] && strcmp(out[0], "1") == 0 && out[1] && out[2] && out[3] && out[4] &&
        out[5]) {
        snprintf(t->device, sizeof(t->device), "%s", out[1]);
        snprintf(t->profile, sizeof(t->profile), "%s", out[2]);
        snprintf(t->ca, sizeof(t->ca), "%s", out[3]);
        snprintf(t->requester, sizeof(t->requester), "%s", out[4]);
        t->expires = strtoll(out[5], NULL, 10);
        rc = 1;
    }
    replies_release(out, n);
    return rc;
}

int enroll_token_give_back(struct store *st, const struct enroll_token *t, const char *attempt,
                           struct err *e)
{
    char key[80], *out[1] = { NULL };
    size_t n = 0;
    token_key(key, sizeof(key), t->hash);
    const char *keys[] = { key };
    const char *args[] = { attempt };
    int rc = store_eval(st, token_give_back_lua, keys, 1, args, 1, out, 1, &n, e);
    replies_release(out, n);
    return rc;
}

/* ---- failed redemptions ---------------------------------------------------------------------- */

/* KEYS: bucket, block; ARGV: limit, window_ms. One failure taken from the bucket (full: limit);
 * when less than one is left the address is blocked until one is back. */
static const char fail_count_lua[] =
    "local limit = tonumber(ARGV[1])\n"
    "local per_ms = limit / tonumber(ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "local tokens = tonumber(b[1]) or limit\n"
    "local ts = tonumber(b[2]) or now\n"
    "if now > ts then tokens = math.min(limit, tokens + (now - ts) * per_ms) end\n"
    "tokens = tokens - 1\n"
    "redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', now)\n"
    "redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 1000)\n"
    "if tokens < 1 then\n"
    "  local wait = math.ceil((1 - tokens) / per_ms)\n"
    "  redis.call('SET', KEYS[2], '1', 'PX', wait)\n"
    "  return wait\n"
    "end\n"
    "return 0\n";

int enroll_fail_blocked(struct store *st, const char *addr, int64_t *retry_ms, struct err *e)
{
    char key[128], *out[1] = { NULL };
    size_t n = 0;
    snprintf(key, sizeof(key), "enroll:block:%s", addr);
    const char *keys[] = { key };
    *retry_ms = 0;
    if (store_eval(st, "return redis.call('PTTL', KEYS[1])", keys, 1, NULL, 0, out, 1, &n, e) !=
        0) {
        return -1;
    }
    if (n == 1 && out[0]) {
        long long v = strtoll(out[0], NULL, 10);
        *retry_ms = v > 0 ? (int64_t)v : 0;
    }
    replies_release(out, n);
    return 0;
}

int enroll_fail_count(struct store *st, const char *addr, int64_t limit, struct err *e)
{
    char k1[128], k2[128], lim[24], win[24], *out[1] = { NULL };
    size_t n = 0;
    snprintf(k1, sizeof(k1), "enroll:fail:%s", addr);
    snprintf(k2, sizeof(k2), "enroll:block:%s", addr);
    snprintf(lim, sizeof(lim), "%lld", (long long)(limit > 0 ? limit : 1));
    snprintf(win, sizeof(win), "%d", FAIL_WINDOW_MS);
    const char *keys[] = { k1, k2 };
    const char *args[] = { lim, win };
    int rc = store_eval(st, fail_count_lua, keys, 2, args, 2, out, 1, &n, e);
    replies_release(out, n);
    return rc;
}

/* ---- claims --------------------------------------------------------------------------------- */

/* KEYS: claim, allow; ARGV: serial, ca, profile, hook, allowlist, expires, devices... */
static const char claim_create_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'serial', ARGV[1], 'ca', ARGV[2], 'profile', ARGV[3],\n"
    "  'hook', ARGV[4], 'allowlist', ARGV[5], 'expires', ARGV[6])\n"
    "redis.call('DEL', KEYS[2])\n"
    "for i = 7, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end\n"
    "return 1\n";

/* KEYS: allow, used; ARGV: device, allowlist (1/0), check_only (1/0) */
static const char claim_reserve_lua[] =
    "if ARGV[2] == '1' and redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 1 end\n"
    "if ARGV[3] == '1' then\n"
    "  if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 2 end\n"
    "  return 0\n"
    "end\n"
    "if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 2 end\n"
    "return 0\n";

int enroll_claim_create(struct store *st, struct audit_log *log, const struct enroll_claim *c,
                        const char *const *devices, size_t n, const char *requester, struct err *e)
{
    char k1[96], k2[104], exp[24], expires[32], *out[1] = { NULL };
    size_t no = 0, nrec = 0;
    int rc = -1;
    json_t **recs = NULL;
    const char **args = xcalloc(6 + n, sizeof(char *));
    snprintf(k1, sizeof(k1), "claim:%s", c->name);
    snprintf(k2, sizeof(k2), "claim:%s:allow", c->name);
    snprintf(exp, sizeof(exp), "%lld", (long long)c->expires);
    args[0] = c->serial;
    args[1] = c->ca;
    args[2] = c->profile;
    args[3] = c->hook;
    args[4] = c->allowlist ? "1" : "0";
    args[5] = exp;
    for (size_t i = 0; i < n; i++) {
        args[6 + i] = devices[i];
    }
    const char *keys[] = { k1, k2 };
    if (store_eval(st, claim_create_lua, keys, 2, args, 6 + n, out, 1, &no, e) != 0) {
        goto out;
    }
    if (no != 1 || out[0] == NULL || strcmp(out[0], "1") != 0) {
        err_set(e, ERRC_CONFLICT, "a claim named '%s' exists already", c->name);
        goto out;
    }
    time_format_rfc3339((time_t)c->expires, expires, sizeof(expires));
    /* the claim, then its allowlist in claim_allow records of ENROLL_ALLOW_CHUNK ids (a record
     * stays far below the log's line limit), in one append: a rebuild finds all or none */
    nrec = 1 + (n + ENROLL_ALLOW_CHUNK - 1) / ENROLL_ALLOW_CHUNK;
    recs = xcalloc(nrec, sizeof(*recs));
    recs[0] = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:I,s:s,s:s}", "type", "claim_issue", "claim",
                        c->name, "serial", c->serial, "ca", c->ca, "profile", c->profile, "hook",
                        c->hook, "allowlist", c->allowlist, "devices", (json_int_t)n, "expires",
                        expires, "requester", requester);
    for (size_t i = 0, k = 1; i < n; i += ENROLL_ALLOW_CHUNK, k++) {
        json_t *ids = json_array();
        for (size_t j = i; j < n && j < i + ENROLL_ALLOW_CHUNK; j++) {
            json_array_append_new(ids, json_string(devices[j]));
        }
        recs[k] =
            json_pack("{s:s,s:s,s:o}", "type", "claim_allow", "claim", c->name, "devices", ids);
    }
    for (size_t k = 0; k < nrec; k++) {
        if (recs[k] == NULL) {
            err_set(e, ERRC_INVALID, "the claim's record cannot be encoded");
            goto out;
        }
    }
    if (audit_append(log, recs, nrec, NULL, e) == 0) {
        rc = 0;
    }
out:
    for (size_t k = 0; recs && k < nrec; k++) {
        json_decref(recs[k]);
    }
    xfree(recs);
    replies_release(out, no);
    xfree(args);
    return rc;
}

/* KEYS: claim (may be ""), allow, used; ARGV: serial, ca, profile, hook, allowlist, expires, then
 * "allow"/"used" and their ids */
static const char claim_restore_lua[] =
    "if ARGV[1] ~= '' then\n"
    "  redis.call('HSET', KEYS[1], 'serial', ARGV[1], 'ca', ARGV[2], 'profile', ARGV[3],\n"
    "    'hook', ARGV[4], 'allowlist', ARGV[5], 'expires', ARGV[6])\n"
    "end\n"
    "local set = nil\n"
    "for i = 7, #ARGV do\n"
    "  if ARGV[i] == '\\1allow' then set = KEYS[2]\n"
    "  elseif ARGV[i] == '\\1used' then set = KEYS[3]\n"
    "  elseif set then redis.call('SADD', set, ARGV[i]) end\n"
    "end\n"
    "return 1\n";

static int claim_restore_part(struct store *st, const char *name, json_t *cl, json_t *allow,
                              size_t ai, json_t *used, size_t ui, bool head, struct err *e)
{
    char k1[96], k2[104], k3[104], exp[24], *out[1] = { NULL };
    const char **args = xcalloc(6 + 2 + 2 * ENROLL_ALLOW_CHUNK, sizeof(*args));
    size_t na = 0, no = 0;
    int rc;
    json_t *v;
    snprintf(k1, sizeof(k1), "claim:%s", name);
    snprintf(k2, sizeof(k2), "claim:%s:allow", name);
    snprintf(k3, sizeof(k3), "claim:%s:used", name);
    snprintf(exp, sizeof(exp), "%lld", (long long)json_integer_value(json_object_get(cl, "exp")));
    bool have = head && json_is_string(json_object_get(cl, "serial"));
    args[na++] = have ? json_string_value(json_object_get(cl, "serial")) : "";
    args[na++] = have ? json_string_value(json_object_get(cl, "ca")) : "";
    args[na++] = have ? json_string_value(json_object_get(cl, "profile")) : "";
    args[na++] = have ? json_string_value(json_object_get(cl, "hook")) : "";
    args[na++] = have && json_is_true(json_object_get(cl, "allowlist")) ? "1" : "0";
    args[na++] = exp;
    args[na++] = "\1allow";
    for (size_t i = ai; i < json_array_size(allow) && i < ai + ENROLL_ALLOW_CHUNK; i++) {
        v = json_array_get(allow, i);
        args[na++] = json_string_value(v);
    }
    args[na++] = "\1used";
    for (size_t i = ui; i < json_array_size(used) && i < ui + ENROLL_ALLOW_CHUNK; i++) {
        v = json_array_get(used, i);
        args[na++] = json_string_value(v);
    }
    const char *keys[] = { k1, k2, k3 };
    rc = store_eval(st, claim_restore_lua, keys, 3, args, na, out, 1, &no, e);
    replies_release(out, no);
    xfree(args);
    return rc;
}

int enroll_claims_restore(struct store *st, json_t *claims, struct err *e)
{
    const char *name;
    json_t *cl;
    json_object_foreach(claims, name, cl)
    {
        json_t *allow = json_object_get(cl, "allow"), *used = json_object_get(cl, "used");
        size_t ai = 0, ui = 0;
        bool head = true;
        do {
            if (claim_restore_part(st, name, cl, allow, ai, used, ui, head, e) != 0) {
                return err_prefix(e, "claim '%s'", name);
            }
            head = false;
            ai += ENROLL_ALLOW_CHUNK;
            ui += ENROLL_ALLOW_CHUNK;
        } while (ai < json_array_size(allow) || ui < json_array_size(used));
    }
    return 0;
}

int enroll_claim_get(struct store *st, const char *name, struct enroll_claim *c, struct err *e)
{
    static const char *const fields[] = {
        "serial", "ca", "profile", "hook", "allowlist", "expires"
    };
    char key[96];
    char *v[6] = { NULL };
    int rc = 0;
    memset(c, 0, sizeof(*c));
    snprintf(key, sizeof(key), STORE_PREFIX "claim:%s", name);
    if (store_hmget(st, key, fields, 6, v, e) != 0) {
        return -1;
    }
    if (v[0] == NULL || v[1] == NULL || v[2] == NULL || v[5] == NULL) {
        rc = err_set(e, ERRC_NOT_FOUND, "no claim named '%s'", name);
    } else {
        snprintf(c->name, sizeof(c->name), "%s", name);
        snprintf(c->serial, sizeof(c->serial), "%s", v[0]);
        snprintf(c->ca, sizeof(c->ca), "%s", v[1]);
        snprintf(c->profile, sizeof(c->profile), "%s", v[2]);
        snprintf(c->hook, sizeof(c->hook), "%s", v[3] ? v[3] : "");
        c->allowlist = v[4] && strcmp(v[4], "1") == 0;
        c->expires = strtoll(v[5], NULL, 10);
    }
    for (size_t i = 0; i < 6; i++) {
        xfree(v[i]);
    }
    return rc;
}

int enroll_claim_reserve(struct store *st, const struct enroll_claim *c, const char *device,
                         bool check_only, int *res, struct err *e)
{
    char k1[104], k2[104], *out[1] = { NULL };
    size_t n = 0;
    snprintf(k1, sizeof(k1), "claim:%s:allow", c->name);
    snprintf(k2, sizeof(k2), "claim:%s:used", c->name);
    const char *keys[] = { k1, k2 };
    const char *args[] = { device, c->allowlist ? "1" : "0", check_only ? "1" : "0" };
    if (store_eval(st, claim_reserve_lua, keys, 2, args, 3, out, 1, &n, e) != 0) {
        return -1;
    }
    *res = n == 1 && out[0] ? atoi(out[0]) : 2;
    replies_release(out, n);
    return 0;
}

int enroll_claim_release(struct store *st, const struct enroll_claim *c, const char *device,
                         struct err *e)
{
    char k[104], *out[1] = { NULL };
    size_t n = 0;
    snprintf(k, sizeof(k), "claim:%s:used", c->name);
    const char *keys[] = { k };
    const char *args[] = { device };
    int rc = store_eval(st, "return redis.call('SREM', KEYS[1], ARGV[1])", keys, 1, args, 1, out, 1,
                        &n, e);
    replies_release(out, n);
    return rc;
}

int enroll_claim_used(struct store *st, const char *name, int64_t *count, struct err *e)
{
    char k[104], *out[1] = { NULL };
    size_t n = 0;
    snprintf(k, sizeof(k), "claim:%s:used", name);
    const char *keys[] = { k };
    if (store_eval(st, "return redis.call('SCARD', KEYS[1])", keys, 1, NULL, 0, out, 1, &n, e) !=
        0) {
        return -1;
    }
    *count = n == 1 && out[0] ? strtoll(out[0], NULL, 10) : 0;
    replies_release(out, n);
    return 0;
}
