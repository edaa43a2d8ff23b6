/*
 * Credentials and configuration, the parts that need no network (docs/aws-iot.md, "Credential
 * sources").
 *
 * Semantics follow botocore, the reference our cross-checks use:
 *   - shared files are read like Python's configparser in botocore's configloader (full-line
 *     comments, ':' or '=' delimiters, lower-cased keys, indented continuation lines, duplicate
 *     sections or keys are errors); [profile NAME] in config, [NAME] in credentials;
 *   - the chain order is environment, shared credentials file, config file, web identity,
 *     container endpoint, IMDS; half a key pair in any local source is an error, not a reason to
 *     fall through (PartialCredentialsError);
 *   - the container endpoint over plain http is allowed only to loopback and the ECS/EKS link-
 *     local addresses (current botocore's list).
 * Deliberately not supported: assume-role profiles (role_arn + source_profile), SSO,
 * credential_process; a profile that uses them is reported in the "tried" list.
 *
 * The STS reply is XML. Rather than a general parser we accept a strict subset: one root, start
 * and end tags that must match, attributes skipped, comments; DTDs, CDATA and processing
 * instructions after the prolog are errors (no entity expansion attacks), and only the five
 * predefined entities and character references are decoded.
 */
#include "aws/creds.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/util.h"

#define FILE_MAX  (1u << 20)
#define BODY_MAX  (64u * 1024)
#define XML_DEPTH 16
#define ECS_BASE  "http://169.254.170.2"
#define IMDS_V4   "http://169.254.169.254"
#define IMDS_V6   "http://[fd00:ec2::254]"

static void xfree_cleanse(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        xfree(s);
    }
}

static void buf_release_cleanse(struct buf *b)
{
    if (b->data != NULL) {
        OPENSSL_cleanse(b->data, b->cap);
    }
    buf_release(b);
}

static void set_str(char **dst, const char *src)
{
    xfree(*dst);
    *dst = src != NULL ? xstrdup(src) : NULL;
}

/* ---- struct aws_creds ---------------------------------------------------------------------- */

void aws_creds_init(struct aws_creds *c)
{
    memset(c, 0, sizeof(*c));
}

void aws_creds_release(struct aws_creds *c)
{
    xfree_cleanse(c->access_key_id);
    xfree_cleanse(c->secret_access_key);
    xfree_cleanse(c->session_token);
    aws_creds_init(c);
}

/* Keys, secrets and tokens are base64-ish ASCII; spaces and controls mean a broken source. */
static bool cred_chars_ok(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 0x20 || ch == 0x7f) {
            return false;
        }
    }
    return true;
}

int aws_creds_set(struct aws_creds *c, const char *access_key_id, const char *secret,
                  const char *token, time_t expiration, const char *source, struct err *e)
{
    if (access_key_id == NULL || access_key_id[0] == '\0') {
        return err_set(e, ERRC_INVALID, "%s: empty access key id", source);
    }
    if (secret == NULL || secret[0] == '\0') {
        return err_set(e, ERRC_INVALID, "%s: empty secret access key", source);
    }
    if (!cred_chars_ok(access_key_id) || strchr(access_key_id, '/') != NULL ||
        strchr(access_key_id, ',') != NULL) {
        return err_set(e, ERRC_INVALID,
                       "%s: access key id contains a space, control character, "
                       "'/' or ','",
                       source);
    }
    if (!cred_chars_ok(secret)) {
        return err_set(e, ERRC_INVALID,
                       "%s: secret access key contains a space or control "
                       "character",
                       source);
    }
    if (token != NULL && !cred_chars_ok(token)) {
        return err_set(e, ERRC_INVALID, "%s: session token contains a space or control character",
                       source);
    }
    aws_creds_release(c);
    c->access_key_id = xstrdup(access_key_id);
    c->secret_access_key = xstrdup(secret);
    c->session_token = token != NULL && token[0] != '\0' ? xstrdup(token) : NULL;
    c->expiration = expiration;
    snprintf(c->source, sizeof(c->source), "%s", source);
    return 0;
}

bool aws_creds_expire_within(const struct aws_creds *c, time_t now, time_t margin)
{
    return c->expiration != 0 && c->expiration - margin <= now;
}

const char *aws_env_get(const char *const *env, const char *name)
{
    const char *const *p = env != NULL ? env : (const char *const *)environ;
    size_t n = strlen(name);
    for (; p != NULL && *p != NULL; p++) {
        if (strncmp(*p, name, n) == 0 && (*p)[n] == '=') {
            return *p + n + 1;
        }
    }
    return NULL;
}

/* Set and non-empty. */
static const char *env_val(const char *const *env, const char *name)
{
    const char *v = aws_env_get(env, name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static bool env_true(const char *const *env, const char *name)
{
    const char *v = env_val(env, name);
    return v != NULL && strcasecmp(v, "true") == 0;
}

/* ---- INI ------------------------------------------------------------------------------------ */

struct ini_kv {
    char *key;
    struct buf value;
};

struct ini_section {
    char *name;
    struct ini_kv *kv;
    size_t n, cap;
};

struct aws_ini {
    struct ini_section *secs;
    size_t n, cap;
};

void aws_ini_free(struct aws_ini *ini)
{
    if (ini == NULL) {
        return;
    }
    for (size_t i = 0; i < ini->n; i++) {
        for (size_t k = 0; k < ini->secs[i].n; k++) {
            xfree(ini->secs[i].kv[k].key);
            buf_release_cleanse(&ini->secs[i].kv[k].value);
        }
        xfree(ini->secs[i].kv);
        xfree(ini->secs[i].name);
    }
    xfree(ini->secs);
    xfree(ini);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_space((*s)[*n - 1])) {
        (*n)--;
    }
}

static struct ini_section *ini_find(const struct aws_ini *ini, const char *name)
{
    for (size_t i = 0; i < ini->n; i++) {
        if (strcmp(ini->secs[i].name, name) == 0) {
            return &ini->secs[i];
        }
    }
    return NULL;
}

static struct ini_kv *ini_find_kv(const struct ini_section *s, const char *key)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->kv[i].key, key) == 0) {
            return &s->kv[i];
        }
    }
    return NULL;
}

/* Section header "[ name ]" with optional trailing comment; name trimmed, inner runs of
 * whitespace collapsed ("profile   dev" is "profile dev", as botocore splits it). */
static int ini_section_line(struct aws_ini *ini, const char *s, size_t n, const char *origin,
                            size_t lineno, struct ini_section **cur, struct err *e)
{
    const char *close = NULL;
    struct buf name = BUF_INIT;
    for (size_t i = n; i > 1; i--) {
        if (s[i - 1] == ']') {
            close = s + i - 1;
            break;
        }
    }
    if (close == NULL) {
        return err_set(e, ERRC_INVALID, "%s:%zu: section header without ']'", origin, lineno);
    }
    const char *rest = close + 1;
    size_t rn = n - (size_t)(rest - s);
    trim(&rest, &rn);
    if (rn > 0 && rest[0] != '#' && rest[0] != ';') {
        return err_set(e, ERRC_INVALID, "%s:%zu: text after section header", origin, lineno);
    }
    const char *p = s + 1;
    size_t pn = (size_t)(close - p);
    trim(&p, &pn);
    for (size_t i = 0; i < pn; i++) {
        if (is_space(p[i])) {
            if (!is_space(p[i - 1])) {
                buf_addch(&name, ' ');
            }
        } else {
            buf_addch(&name, p[i]);
        }
    }
    if (name.len == 0) {
        buf_release(&name);
        return err_set(e, ERRC_INVALID, "%s:%zu: empty section name", origin, lineno);
    }
    if (ini_find(ini, name.data) != NULL) {
        err_set(e, ERRC_INVALID, "%s:%zu: duplicate section [%s]", origin, lineno, name.data);
        buf_release(&name);
        return -1;
    }
    ini->secs = xgrow(ini->secs, sizeof(*ini->secs), ini->n + 1, &ini->cap);
    *cur = &ini->secs[ini->n++];
    memset(*cur, 0, sizeof(**cur));
    (*cur)->name = buf_detach(&name, NULL);
    return 0;
}

struct aws_ini *aws_ini_parse(const char *text, size_t len, const char *origin, struct err *e)
{
    struct aws_ini *ini = xcalloc(1, sizeof(*ini));
    struct ini_section *cur = NULL;
    struct ini_kv *last = NULL;
    size_t pos = 0, lineno = 0;
    if (memchr(text, '\0', len) != NULL) {
        err_set(e, ERRC_INVALID, "%s: NUL byte in file", origin);
        goto fail;
    }
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - line) : len - pos;
        const char *s = line;
        size_t sn = n;
        pos += n + 1;
        lineno++;
        trim(&s, &sn);
        if (sn == 0 || s[0] == '#' || s[0] == ';') {
            continue;
        }
        if (is_space(line[0]) && last != NULL) {
            buf_addch(&last->value, '\n');
            buf_add(&last->value, s, sn);
            continue;
        }
        last = NULL;
        if (s[0] == '[') {
            if (ini_section_line(ini, s, sn, origin, lineno, &cur, e) != 0) {
                goto fail;
            }
            continue;
        }
        const char *eq = NULL;
        for (size_t i = 0; i < sn; i++) {
            if (s[i] == '=' || s[i] == ':') {
                eq = s + i;
                break;
            }
        }
        if (eq == NULL) {
            err_set(e, ERRC_INVALID, "%s:%zu: expected 'key = value' or '[section]'", origin,
                    lineno);
            goto fail;
        }
        if (cur == NULL) {
            err_set(e, ERRC_INVALID, "%s:%zu: key outside any [section]", origin, lineno);
            goto fail;
        }
        const char *k = s, *v = eq + 1;
        size_t kn = (size_t)(eq - s), vn = sn - kn - 1;
        trim(&k, &kn);
        trim(&v, &vn);
        if (kn == 0) {
            err_set(e, ERRC_INVALID, "%s:%zu: empty key", origin, lineno);
            goto fail;
        }
        char *key = xstrndup(k, kn);
        for (char *c = key; *c != '\0'; c++) {
            if (*c >= 'A' && *c <= 'Z') {
                *c = (char)(*c - 'A' + 'a');
            }
        }
        if (ini_find_kv(cur, key) != NULL) {
            err_set(e, ERRC_INVALID, "%s:%zu: duplicate key '%s' in [%s]", origin, lineno, key,
                    cur->name);
            xfree(key);
            goto fail;
        }
        cur->kv = xgrow(cur->kv, sizeof(*cur->kv), cur->n + 1, &cur->cap);
        last = &cur->kv[cur->n++];
        last->key = key;
        buf_init(&last->value);
        buf_add(&last->value, v, vn);
    }
    return ini;
fail:
    aws_ini_free(ini);
    return NULL;
}

const char *aws_ini_get(const struct aws_ini *ini, const char *section, const char *key)
{
    const struct ini_section *s = ini != NULL ? ini_find(ini, section) : NULL;
    const struct ini_kv *kv = s != NULL ? ini_find_kv(s, key) : NULL;
    return kv == NULL ? NULL : kv->value.data != NULL ? kv->value.data : "";
}

bool aws_ini_has_section(const struct aws_ini *ini, const char *section)
{
    return ini != NULL && ini_find(ini, section) != NULL;
}

const char *aws_ini_profile_section(const struct aws_ini *ini, enum aws_file_kind kind,
                                    const char *profile)
{
    const struct ini_section *s = NULL;
    struct buf name = BUF_INIT;
    if (ini == NULL) {
        return NULL;
    }
    if (kind == AWS_FILE_CREDENTIALS) {
        s = ini_find(ini, profile);
    } else {
        /* [profile default] wins over [default] (the SDKs' shared-config rule). */
        buf_addf(&name, "profile %s", profile);
        s = ini_find(ini, name.data);
        if (s == NULL && strcmp(profile, "default") == 0) {
            s = ini_find(ini, "default");
        }
        buf_release(&name);
    }
    return s != NULL ? s->name : NULL;
}

/* ---- local sources ------------------------------------------------------------------------ */

int aws_creds_from_env(const char *const *env, struct aws_creds *out, bool *found, struct buf *why,
                       struct err *e)
{
    const char *ak = env_val(env, "AWS_ACCESS_KEY_ID");
    const char *sk = env_val(env, "AWS_SECRET_ACCESS_KEY");
    const char *tok = env_val(env, "AWS_SESSION_TOKEN");
    const char *exp = env_val(env, "AWS_CREDENTIAL_EXPIRATION");
    time_t t = 0;
    *found = false;
    if (tok == NULL) {
        tok = env_val(env, "AWS_SECURITY_TOKEN");
    }
    if (ak == NULL) {
        buf_addstr(why, sk != NULL ? "AWS_ACCESS_KEY_ID unset but AWS_SECRET_ACCESS_KEY set"
                                   : "AWS_ACCESS_KEY_ID unset");
        if (sk != NULL) {
            return err_set(e, ERRC_INVALID,
                           "environment: AWS_SECRET_ACCESS_KEY is set but "
                           "AWS_ACCESS_KEY_ID is not");
        }
        return 0;
    }
    if (sk == NULL) {
        return err_set(e, ERRC_INVALID,
                       "environment: AWS_ACCESS_KEY_ID is set but "
                       "AWS_SECRET_ACCESS_KEY is not");
    }
    if (exp != NULL && aws_time_parse_iso8601(exp, &t) != 0) {
        return err_set(e, ERRC_INVALID,
                       "environment: AWS_CREDENTIAL_EXPIRATION '%.40s' is not "
                       "an ISO 8601 UTC time",
                       exp);
    }
    if (aws_creds_set(out, ak, sk, tok, t, "environment", e) != 0) {
        return -1;
    }
    *found = true;
    return 0;
}

int aws_creds_from_ini(const struct aws_ini *ini, enum aws_file_kind kind, const char *profile,
                       const char *origin, struct aws_creds *out, bool *found, struct buf *why,
                       struct err *e)
{
    const char *sec = aws_ini_profile_section(ini, kind, profile);
    const char *ak, *sk, *tok;
    char source[160];
    *found = false;
    if (sec == NULL) {
        buf_addf(why, "no profile '%s'", profile);
        return 0;
    }
    ak = aws_ini_get(ini, sec, "aws_access_key_id");
    sk = aws_ini_get(ini, sec, "aws_secret_access_key");
    tok = aws_ini_get(ini, sec, "aws_session_token");
    if (tok == NULL || tok[0] == '\0') {
        tok = aws_ini_get(ini, sec, "aws_security_token");
    }
    if ((ak == NULL || ak[0] == '\0') && (sk == NULL || sk[0] == '\0')) {
        if (aws_ini_get(ini, sec, "credential_process") != NULL) {
            buf_addf(why, "profile '%s' uses credential_process, not supported", profile);
        } else if (aws_ini_get(ini, sec, "source_profile") != NULL ||
                   aws_ini_get(ini, sec, "credential_source") != NULL) {
            buf_addf(why, "profile '%s' assumes a role, not supported", profile);
        } else if (aws_ini_get(ini, sec, "sso_session") != NULL ||
                   aws_ini_get(ini, sec, "sso_start_url") != NULL) {
            buf_addf(why, "profile '%s' uses SSO, not supported", profile);
        } else {
            buf_addf(why, "profile '%s' has no aws_access_key_id", profile);
        }
        return 0;
    }
    if (ak == NULL || ak[0] == '\0') {
        return err_set(e, ERRC_INVALID,
                       "%s: profile '%s' has aws_secret_access_key but no "
                       "aws_access_key_id",
                       origin, profile);
    }
    if (sk == NULL || sk[0] == '\0') {
        return err_set(e, ERRC_INVALID,
                       "%s: profile '%s' has aws_access_key_id but no "
                       "aws_secret_access_key",
                       origin, profile);
    }
    snprintf(source, sizeof(source), "%s profile %s", origin, profile);
    if (aws_creds_set(out, ak, sk, tok, 0, source, e) != 0) {
        return -1;
    }
    *found = true;
    return 0;
}

/* ---- time ---------------------------------------------------------------------------------- */

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

static int num(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int aws_time_parse_iso8601(const char *s, time_t *out)
{
    char base[21];
    time_t t;
    long off = 0;
    size_t n = strlen(s), i = 19;
    if (n < 20 || s[10] != 'T') {
        return -1;
    }
    memcpy(base, s, 19);
    base[19] = 'Z';
    base[20] = '\0';
    if (!digits(s, 4) || !digits(s + 5, 2) || !digits(s + 8, 2) || !digits(s + 11, 2) ||
        !digits(s + 14, 2) || !digits(s + 17, 2) || time_parse_rfc3339(base, &t) != 0) {
        return -1;
    }
    if (s[i] == '.') {
        size_t j = i + 1;
        while (j < n && s[j] >= '0' && s[j] <= '9') {
            j++;
        }
        if (j == i + 1) {
            return -1;
        }
        i = j;
    }
    if (i + 1 == n && s[i] == 'Z') {
        *out = t;
        return 0;
    }
    if (i + 6 == n && (s[i] == '+' || s[i] == '-') && digits(s + i + 1, 2) && s[i + 3] == ':' &&
        digits(s + i + 4, 2)) {
        int hh = num(s + i + 1, 2), mm = num(s + i + 4, 2);
        if (hh > 23 || mm > 59) {
            return -1;
        }
        off = (long)hh * 3600 + mm * 60;
        *out = s[i] == '+' ? t - off : t + off;
        return 0;
    }
    return -1;
}

/* ---- JSON bodies --------------------------------------------------------------------------- */

/* *out is set on every path (NULL on failure): err_set's -1 is in another translation unit, so
 * the optimiser cannot see that callers only read *out after a 0. */
static int json_field(json_t *o, const char *source, const char *name, const char **out,
                      struct err *e)
{
    json_t *v = json_object_get(o, name);
    *out = NULL;
    if (v == NULL) {
        err_set(e, ERRC_INVALID, "%s: reply has no %s", source, name);
        return -1;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        err_set(e, ERRC_INVALID, "%s: %s is not a non-empty string", source, name);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

int aws_creds_parse_json(const char *body, size_t len, const char *source, struct aws_creds *out,
                         struct err *e)
{
    json_error_t jerr;
    json_t *root = NULL, *code;
    const char *ak, *sk, *tok, *exp;
    time_t t;
    int rc = -1;
    if (len > BODY_MAX) {
        return err_set(e, ERRC_TOO_LARGE, "%s: reply larger than %u bytes", source, BODY_MAX);
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return err_set(e, ERRC_INVALID, "%s: reply is not JSON (line %d: %s)", source, jerr.line,
                       jerr.text);
    }
    if (!json_is_object(root)) {
        err_set(e, ERRC_INVALID, "%s: reply is not a JSON object", source);
        goto out;
    }
    code = json_object_get(root, "Code");
    if (code != NULL && (!json_is_string(code) || strcmp(json_string_value(code), "Success"))) {
        json_t *msg = json_object_get(root, "Message");
        err_set(e, ERRC_DENIED, "%s: Code %.64s: %.120s", source,
                json_is_string(code) ? json_string_value(code) : "(not a string)",
                json_is_string(msg) ? json_string_value(msg) : "(no message)");
        goto out;
    }
    if (json_field(root, source, "AccessKeyId", &ak, e) != 0 ||
        json_field(root, source, "SecretAccessKey", &sk, e) != 0 ||
        json_field(root, source, "Token", &tok, e) != 0 ||
        json_field(root, source, "Expiration", &exp, e) != 0) {
        goto out;
    }
    if (aws_time_parse_iso8601(exp, &t) != 0) {
        err_set(e, ERRC_INVALID, "%s: Expiration '%.40s' is not an ISO 8601 UTC time", source, exp);
        goto out;
    }
    rc = aws_creds_set(out, ak, sk, tok, t, source, e);
out:
    json_decref(root);
    return rc;
}

/* ---- STS XML ------------------------------------------------------------------------------- */

enum sts_field {
    F_AK,
    F_SK,
    F_TOKEN,
    F_EXP,
    F_ERR_CODE,
    F_ERR_MSG,
    F__COUNT
};

/* Where each field lives, from the root; checklist: F__COUNT entries. */
#define STS_CREDS_PATH \
    "AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/Credentials/"
static const char *const sts_paths[F__COUNT] = {
    STS_CREDS_PATH "AccessKeyId", STS_CREDS_PATH "SecretAccessKey", STS_CREDS_PATH "SessionToken",
    STS_CREDS_PATH "Expiration",  "ErrorResponse/Error/Code",       "ErrorResponse/Error/Message",
};

static bool xml_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == ':';
}

static void utf8_put(struct buf *b, unsigned long cp)
{
    if (cp < 0x80) {
        buf_addch(b, (char)cp);
    } else if (cp < 0x800) {
        buf_addch(b, (char)(0xc0 | (cp >> 6)));
        buf_addch(b, (char)(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        buf_addch(b, (char)(0xe0 | (cp >> 12)));
        buf_addch(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
        buf_addch(b, (char)(0x80 | (cp & 0x3f)));
    } else {
        buf_addch(b, (char)(0xf0 | (cp >> 18)));
        buf_addch(b, (char)(0x80 | ((cp >> 12) & 0x3f)));
        buf_addch(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
        buf_addch(b, (char)(0x80 | (cp & 0x3f)));
    }
}

/* Appends text [s, s+n) with entities decoded. */
static int xml_text(const char *s, size_t n, struct buf *out)
{
    static const struct {
        const char *name;
        char c;
    } ents[] = {
        { "lt;", '<' }, { "gt;", '>' }, { "amp;", '&' }, { "quot;", '"' }, { "apos;", '\'' }
    };
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '&') {
            buf_addch(out, s[i]);
            continue;
        }
        const char *semi = memchr(s + i, ';', n - i);
        size_t en = semi != NULL ? (size_t)(semi - (s + i)) + 1 : 0;
        bool ok = false;
        if (en > 3 && s[i + 1] == '#') {
            bool hex = s[i + 2] == 'x';
            unsigned long cp = 0;
            size_t k = i + (hex ? 3 : 2);
            ok = k < i + en - 1;
            for (; ok && k < i + en - 1; k++) {
                char c = s[k];
                int d = (c >= '0' && c <= '9')          ? c - '0'
                        : hex && (c >= 'a' && c <= 'f') ? c - 'a' + 10
                        : hex && (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                                        : -1;
                if (d < 0 || cp > 0x10ffff) {
                    ok = false;
                    break;
                }
                cp = cp * (hex ? 16u : 10u) + (unsigned long)d;
            }
            if (ok && (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) {
                ok = false;
            }
            if (ok) {
                utf8_put(out, cp);
            }
        } else {
            for (size_t k = 0; k < ARRAY_LEN(ents) && !ok; k++) {
                size_t ln = strlen(ents[k].name);
                if (en == ln + 1 && memcmp(s + i + 1, ents[k].name, ln) == 0) {
                    buf_addch(out, ents[k].c);
                    ok = true;
                }
            }
        }
        if (!ok) {
            return -1;
        }
        i += en - 1;
    }
    return 0;
}

/* Skips attributes up to '>' or "/>"; returns the index after '>' or 0 when malformed. */
static size_t xml_skip_attrs(const char *s, size_t n, size_t i, bool *self_closing)
{
    *self_closing = false;
    while (i < n) {
        char c = s[i];
        if (c == '>') {
            return i + 1;
        }
        if (c == '/' && i + 1 < n && s[i + 1] == '>') {
            *self_closing = true;
            return i + 2;
        }
        if (c == '"' || c == '\'') {
            const char *q = memchr(s + i + 1, c, n - i - 1);
            if (q == NULL || memchr(s + i + 1, '<', (size_t)(q - (s + i + 1))) != NULL) {
                return 0;
            }
            i = (size_t)(q - s) + 1;
            continue;
        }
        if (c == '<') {
            return 0;
        }
        i++;
    }
    return 0;
}

struct xml_state {
    struct buf path; /* "A/B/C" of the open elements */
    size_t ends[XML_DEPTH];
    size_t depth;
    bool root_done;
    struct buf text;
    struct buf fields[F__COUNT];
    bool seen[F__COUNT];
};

static int xml_walk(const char *s, size_t n, const char *source, struct xml_state *x, struct err *e)
{
    size_t i = 0;
    if (n >= 5 && memcmp(s, "<?xml", 5) == 0) {
        const char *end = NULL;
        for (size_t k = 5; k + 1 < n; k++) {
            if (s[k] == '?' && s[k + 1] == '>') {
                end = s + k;
                break;
            }
        }
        if (end == NULL) {
            return err_set(e, ERRC_INVALID, "%s: unterminated XML declaration", source);
        }
        i = (size_t)(end - s) + 2;
    }
    while (i < n) {
        if (s[i] != '<') {
            const char *lt = memchr(s + i, '<', n - i);
            size_t tn = lt != NULL ? (size_t)(lt - (s + i)) : n - i;
            if (x->depth == 0) {
                for (size_t k = 0; k < tn; k++) {
                    if (!is_space(s[i + k]) && s[i + k] != '\n') {
                        return err_set(e, ERRC_INVALID, "%s: text outside the root element",
                                       source);
                    }
                }
            } else if (xml_text(s + i, tn, &x->text) != 0) {
                return err_set(e, ERRC_INVALID, "%s: bad entity or character reference", source);
            }
            i += tn;
            continue;
        }
        if (n - i >= 4 && memcmp(s + i, "<!--", 4) == 0) {
            size_t k = i + 4;
            while (k + 2 < n && memcmp(s + k, "-->", 3) != 0) {
                k++;
            }
            if (k + 2 >= n) {
                return err_set(e, ERRC_INVALID, "%s: unterminated XML comment", source);
            }
            i = k + 3;
            continue;
        }
        if (i + 1 < n && (s[i + 1] == '!' || s[i + 1] == '?')) {
            return err_set(e, ERRC_INVALID, "%s: DTD, CDATA or processing instruction in XML",
                           source);
        }
        bool closing = i + 1 < n && s[i + 1] == '/';
        size_t ns = i + (closing ? 2 : 1), ne = ns;
        while (ne < n && xml_name_char(s[ne])) {
            ne++;
        }
        if (ne == ns) {
            return err_set(e, ERRC_INVALID, "%s: malformed XML tag", source);
        }
        if (closing) {
            size_t start = x->depth > 0 ? (x->depth > 1 ? x->ends[x->depth - 2] + 1 : 0) : 0;
            while (ne < n && (is_space(s[ne]) || s[ne] == '\n')) {
                ne++;
            }
            size_t nlen = 0;
            while (ns + nlen < n && xml_name_char(s[ns + nlen])) {
                nlen++;
            }
            if (x->depth == 0 || ne >= n || s[ne] != '>' || x->path.len - start != nlen ||
                memcmp(x->path.data + start, s + ns, nlen) != 0) {
                return err_set(e, ERRC_INVALID, "%s: mismatched XML end tag", source);
            }
            for (int f = 0; f < F__COUNT; f++) {
                if (strcmp(x->path.data, sts_paths[f]) != 0) {
                    continue;
                }
                if (x->seen[f]) {
                    return err_set(e, ERRC_INVALID, "%s: duplicate %s", source,
                                   strrchr(sts_paths[f], '/') + 1);
                }
                x->seen[f] = true;
                buf_add(&x->fields[f], x->text.data != NULL ? x->text.data : "", x->text.len);
            }
            if (x->text.data != NULL) {
                OPENSSL_cleanse(x->text.data, x->text.cap);
            }
            buf_reset(&x->text);
            x->depth--;
            x->path.len = x->depth > 0 ? x->ends[x->depth - 1] : 0;
            if (x->path.data != NULL) {
                x->path.data[x->path.len] = '\0';
            }
            if (x->depth == 0) {
                x->root_done = true;
            }
            i = ne + 1;
            continue;
        }
        if (x->root_done) {
            return err_set(e, ERRC_INVALID, "%s: more than one XML root element", source);
        }
        if (x->depth == XML_DEPTH) {
            return err_set(e, ERRC_INVALID, "%s: XML nested deeper than %d", source, XML_DEPTH);
        }
        bool self_closing;
        size_t after = xml_skip_attrs(s, n, ne, &self_closing);
        if (after == 0 ||
            (ne < n && !is_space(s[ne]) && s[ne] != '\n' && s[ne] != '>' && s[ne] != '/')) {
            return err_set(e, ERRC_INVALID, "%s: malformed XML tag", source);
        }
        if (x->depth == 0) {
            bool known = (ne - ns == strlen("AssumeRoleWithWebIdentityResponse") &&
                          memcmp(s + ns, "AssumeRoleWithWebIdentityResponse", ne - ns) == 0) ||
                         (ne - ns == strlen("ErrorResponse") &&
                          memcmp(s + ns, "ErrorResponse", ne - ns) == 0);
            if (!known) {
                return err_set(e, ERRC_INVALID, "%s: unexpected XML root element <%.*s>", source,
                               (int)(ne - ns > 64 ? 64 : ne - ns), s + ns);
            }
        }
        for (int f = 0; f < F__COUNT && x->path.data != NULL; f++) {
            if (strcmp(x->path.data, sts_paths[f]) == 0) {
                return err_set(e, ERRC_INVALID, "%s: element inside %s", source,
                               strrchr(sts_paths[f], '/') + 1);
            }
        }
        buf_reset(&x->text);
        if (!self_closing) {
            if (x->depth > 0) {
                buf_addch(&x->path, '/');
            }
            buf_add(&x->path, s + ns, ne - ns);
            x->ends[x->depth++] = x->path.len;
        } else if (x->depth == 0) {
            x->root_done = true;
        }
        i = after;
    }
    if (x->depth != 0 || !x->root_done) {
        return err_set(e, ERRC_INVALID, "%s: truncated XML", source);
    }
    return 0;
}

int aws_creds_parse_sts_xml(const char *body, size_t len, const char *source, struct aws_creds *out,
                            struct err *e)
{
    struct xml_state x;
    time_t t;
    int rc = -1;
    if (len > BODY_MAX) {
        return err_set(e, ERRC_TOO_LARGE, "%s: reply larger than %u bytes", source, BODY_MAX);
    }
    memset(&x, 0, sizeof(x));
    if (memchr(body, '\0', len) != NULL) {
        err_set(e, ERRC_INVALID, "%s: NUL byte in XML", source);
        goto out;
    }
    if (xml_walk(body, len, source, &x, e) != 0) {
        goto out;
    }
    if (x.seen[F_ERR_CODE]) {
        err_set(e, ERRC_DENIED, "%s: %.64s: %.120s", source, buf_cstr(&x.fields[F_ERR_CODE]),
                x.seen[F_ERR_MSG] ? buf_cstr(&x.fields[F_ERR_MSG]) : "(no message)");
        goto out;
    }
    for (int f = F_AK; f <= F_EXP; f++) {
        if (!x.seen[f] || x.fields[f].len == 0) {
            err_set(e, ERRC_INVALID, "%s: reply has no %s", source, strrchr(sts_paths[f], '/') + 1);
            goto out;
        }
    }
    if (aws_time_parse_iso8601(x.fields[F_EXP].data, &t) != 0) {
        err_set(e, ERRC_INVALID, "%s: Expiration '%.40s' is not an ISO 8601 UTC time", source,
                x.fields[F_EXP].data);
        goto out;
    }
    rc = aws_creds_set(out, x.fields[F_AK].data, x.fields[F_SK].data, x.fields[F_TOKEN].data, t,
                       source, e);
out:
    buf_release(&x.path);
    buf_release_cleanse(&x.text);
    for (int f = 0; f < F__COUNT; f++) {
        buf_release_cleanse(&x.fields[f]);
    }
    return rc;
}

/* ---- configuration ------------------------------------------------------------------------- */

void aws_config_init(struct aws_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
}

void aws_config_release(struct aws_config *cfg)
{
    xfree(cfg->profile);
    xfree(cfg->credentials_file);
    xfree(cfg->config_file);
    aws_ini_free(cfg->credentials);
    aws_ini_free(cfg->config);
    xfree(cfg->region);
    xfree(cfg->endpoint);
    aws_config_init(cfg);
}

/* override (with "~/" expanded), else $HOME/.aws/NAME; NULL without HOME. */
static char *file_path(const char *const *env, const char *var, const char *name)
{
    const char *v = env_val(env, var), *home = env_val(env, "HOME");
    struct buf b = BUF_INIT;
    if (v != NULL && v[0] == '~' && v[1] == '/' && home != NULL) {
        buf_addf(&b, "%s%s", home, v + 1);
    } else if (v != NULL) {
        buf_addstr(&b, v);
    } else if (home != NULL) {
        buf_addf(&b, "%s/.aws/%s", home, name);
    } else {
        return NULL;
    }
    return buf_detach(&b, NULL);
}

/* Reads and parses path; *ini stays NULL when the file does not exist. */
static int load_ini(const char *path, struct aws_ini **ini, struct err *e)
{
    struct buf b = BUF_INIT;
    struct err fe = ERR_INIT;
    int rc = -1;
    *ini = NULL;
    if (path == NULL) {
        return 0;
    }
    if (file_read_all(path, FILE_MAX, &b, &fe) != 0) {
        if (fe.code == ERRC_NOT_FOUND) {
            rc = 0;
        } else {
            err_copy(e, &fe);
        }
        goto out;
    }
    *ini = aws_ini_parse(b.data != NULL ? b.data : "", b.len, path, e);
    rc = *ini != NULL ? 0 : -1;
out:
    buf_release_cleanse(&b);
    return rc;
}

static bool region_ok(const char *r)
{
    size_t n = 0;
    for (; r[n] != '\0'; n++) {
        char c = r[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return n > 0 && n <= 64;
}

/* http(s)://host[:port][/path]: no userinfo, query, fragment, spaces or controls. */
static int endpoint_check(const char *url, const char *what, struct err *e)
{
    const char *host;
    if (strncmp(url, "https://", 8) == 0) {
        host = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        host = url + 7;
    } else {
        return err_set(e, ERRC_INVALID, "%s: endpoint must start with https:// or http://", what);
    }
    if (*host == '\0' || *host == '/' || *host == ':') {
        return err_set(e, ERRC_INVALID, "%s: endpoint has no host", what);
    }
    for (const char *p = url; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#' || c == '@' || c == '\\') {
            return err_set(e, ERRC_INVALID, "%s: endpoint contains '%s'", what,
                           c == '?'    ? "?"
                           : c == '#'  ? "#"
                           : c == '@'  ? "@"
                           : c == '\\' ? "\\"
                                       : "a space, control or non-ASCII byte");
        }
    }
    return 0;
}

static char *url_trimmed(const char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/') {
        n--;
    }
    return xstrndup(url, n);
}

int aws_config_resolve(struct aws_config *cfg, const char *const *env, const char *region_override,
                       const char *endpoint_override, struct err *e)
{
    const char *profile_env = env_val(env, "AWS_PROFILE");
    const char *sec, *r = NULL, *ep = NULL, *ep_what = NULL;
    if (profile_env == NULL) {
        profile_env = env_val(env, "AWS_DEFAULT_PROFILE");
    }
    aws_config_release(cfg);
    cfg->profile = xstrdup(profile_env != NULL ? profile_env : "default");
    cfg->credentials_file = file_path(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    cfg->config_file = file_path(env, "AWS_CONFIG_FILE", "config");
    if (load_ini(cfg->credentials_file, &cfg->credentials, e) != 0 ||
        load_ini(cfg->config_file, &cfg->config, e) != 0) {
        goto fail;
    }
    sec = aws_ini_profile_section(cfg->config, AWS_FILE_CONFIG, cfg->profile);
    if (profile_env != NULL && sec == NULL &&
        aws_ini_profile_section(cfg->credentials, AWS_FILE_CREDENTIALS, cfg->profile) == NULL) {
        err_set(e, ERRC_INVALID, "profile '%s' (AWS_PROFILE) is in neither %s nor %s", cfg->profile,
                cfg->credentials_file ? cfg->credentials_file : "(no HOME)",
                cfg->config_file ? cfg->config_file : "(no HOME)");
        goto fail;
    }

    if (region_override != NULL && region_override[0] != '\0') {
        r = region_override;
        snprintf(cfg->region_source, sizeof(cfg->region_source), "configuration");
    } else if ((r = env_val(env, "AWS_REGION")) != NULL) {
        snprintf(cfg->region_source, sizeof(cfg->region_source), "AWS_REGION");
    } else if ((r = env_val(env, "AWS_DEFAULT_REGION")) != NULL) {
        snprintf(cfg->region_source, sizeof(cfg->region_source), "AWS_DEFAULT_REGION");
    } else if (sec != NULL && (r = aws_ini_get(cfg->config, sec, "region")) != NULL &&
               r[0] != '\0') {
        snprintf(cfg->region_source, sizeof(cfg->region_source), "config file %s profile %s",
                 cfg->config_file, cfg->profile);
    } else {
        err_set(e, ERRC_INVALID,
                "no AWS region: AWS_REGION and AWS_DEFAULT_REGION unset, no "
                "region for profile '%s' in %s",
                cfg->profile,
                cfg->config_file != NULL ? cfg->config_file : "a config file (HOME unset)");
        goto fail;
    }
    if (!region_ok(r)) {
        err_set(e, ERRC_INVALID, "region '%.64s' from %s is not [a-z0-9-]", r, cfg->region_source);
        goto fail;
    }
    cfg->region = xstrdup(r);

    if (endpoint_override != NULL && endpoint_override[0] != '\0') {
        ep = endpoint_override;
        ep_what = "configured endpoint";
    } else if (!env_true(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")) {
        if ((ep = env_val(env, "AWS_ENDPOINT_URL_IOT")) != NULL) {
            ep_what = "AWS_ENDPOINT_URL_IOT";
        } else if ((ep = env_val(env, "AWS_ENDPOINT_URL")) != NULL) {
            ep_what = "AWS_ENDPOINT_URL";
        }
    }
    if (ep != NULL) {
        if (endpoint_check(ep, ep_what, e) != 0) {
            goto fail;
        }
        cfg->endpoint = url_trimmed(ep);
    } else {
        struct buf b = BUF_INIT;
        buf_addf(&b, "https://iot.%s.amazonaws.com%s", cfg->region,
                 strncmp(cfg->region, "cn-", 3) == 0 ? ".cn" : "");
        cfg->endpoint = buf_detach(&b, NULL);
    }
    return 0;
fail:
    aws_config_release(cfg);
    return -1;
}

/* ---- the chain ----------------------------------------------------------------------------- */

const char *aws_creds_next_name(enum aws_creds_next next)
{
    switch (next) {
    case AWS_CREDS_READY:
        return "credentials";
    case AWS_CREDS_FETCH_WEB_IDENTITY:
        return "web identity";
    case AWS_CREDS_FETCH_CONTAINER:
        return "container endpoint";
    case AWS_CREDS_FETCH_IMDS:
        return "EC2 IMDS";
    }
    return "?";
}

void aws_chain_init(struct aws_chain *ch)
{
    memset(ch, 0, sizeof(*ch));
    aws_creds_init(&ch->creds);
}

void aws_chain_release(struct aws_chain *ch)
{
    aws_creds_release(&ch->creds);
    xfree(ch->role_arn);
    xfree(ch->web_identity_token_file);
    xfree(ch->role_session_name);
    xfree(ch->container_url);
    xfree_cleanse(ch->container_auth_token);
    xfree(ch->container_auth_token_file);
    xfree(ch->imds_endpoint);
    buf_release(&ch->tried);
    aws_chain_init(ch);
}

static void tried_add(struct aws_chain *ch, const char *name, const char *reason)
{
    buf_addf(&ch->tried, "%s%s (%s)", ch->tried.len > 0 ? ", " : "", name, reason);
}

/* Loopback and the ECS/EKS credential addresses may be reached over plain http. */
static bool container_host_ok(const char *url)
{
    static const char *const allowed[] = { "localhost", "169.254.170.2", "169.254.170.23",
                                           "[fd00:ec2::23]", "[::1]" };
    const char *h = url + strlen("http://");
    size_t n;
    if (h[0] == '[') {
        const char *close = strchr(h, ']');
        n = close != NULL ? (size_t)(close - h) + 1 : 0;
    } else {
        n = strcspn(h, ":/");
    }
    if (n == 0 || (h[n] != '\0' && h[n] != ':' && h[n] != '/')) {
        return false;
    }
    for (size_t i = 0; i < ARRAY_LEN(allowed); i++) {
        if (strlen(allowed[i]) == n && strncasecmp(h, allowed[i], n) == 0) {
            return true;
        }
    }
    if (n >= 4 && strncmp(h, "127.", 4) == 0) {
        for (size_t i = 4; i < n; i++) {
            if (!((h[i] >= '0' && h[i] <= '9') || h[i] == '.')) {
                return false;
            }
        }
        return true;
    }
    return false;
}

/* Reads the network sources' settings from env and the profile. */
static int chain_network_config(struct aws_chain *ch, const struct aws_config *cfg,
                                const char *const *env, struct err *e)
{
    const char *sec = aws_ini_profile_section(cfg->config, AWS_FILE_CONFIG, cfg->profile);
    const char *tf = env_val(env, "AWS_WEB_IDENTITY_TOKEN_FILE");
    const char *arn = env_val(env, "AWS_ROLE_ARN");
    const char *sn = env_val(env, "AWS_ROLE_SESSION_NAME");
    const char *rel = env_val(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = env_val(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *tok = env_val(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
    const char *tokf = env_val(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *imds = env_val(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
    const char *mode = env_val(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");

    /* Web identity: environment first, then the profile (botocore's order). */
    if (tf == NULL && sec != NULL) {
        tf = aws_ini_get(cfg->config, sec, "web_identity_token_file");
        arn = aws_ini_get(cfg->config, sec, "role_arn");
        sn = aws_ini_get(cfg->config, sec, "role_session_name");
    }
    if (tf != NULL && tf[0] != '\0') {
        if (arn == NULL || arn[0] == '\0') {
            return err_set(e, ERRC_INVALID,
                           "web identity: a token file is configured but no "
                           "role ARN (AWS_ROLE_ARN or role_arn)");
        }
        set_str(&ch->web_identity_token_file, tf);
        set_str(&ch->role_arn, arn);
        set_str(&ch->role_session_name, sn != NULL && sn[0] != '\0' ? sn : NULL);
    }

    if (rel != NULL) {
        struct buf b = BUF_INIT;
        if (rel[0] != '/') {
            return err_set(e, ERRC_INVALID,
                           "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must start "
                           "with '/'");
        }
        buf_addf(&b, "%s%s", ECS_BASE, rel);
        if (endpoint_check(b.data, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", e) != 0) {
            buf_release(&b);
            return -1;
        }
        ch->container_url = buf_detach(&b, NULL);
    } else if (full != NULL) {
        if (endpoint_check(full, "AWS_CONTAINER_CREDENTIALS_FULL_URI", e) != 0) {
            return -1;
        }
        if (strncmp(full, "https://", 8) != 0 && !container_host_ok(full)) {
            return err_set(e, ERRC_INVALID,
                           "AWS_CONTAINER_CREDENTIALS_FULL_URI: plain http is "
                           "allowed only to loopback, 169.254.170.2, 169.254.170.23 or "
                           "fd00:ec2::23");
        }
        ch->container_url = xstrdup(full);
    }
    if (ch->container_url != NULL) {
        if (tokf != NULL) {
            set_str(&ch->container_auth_token_file, tokf);
        } else if (tok != NULL) {
            if (strpbrk(tok, "\r\n") != NULL) {
                return err_set(e, ERRC_INVALID,
                               "AWS_CONTAINER_AUTHORIZATION_TOKEN contains CR "
                               "or LF");
            }
            ch->container_auth_token = xstrdup(tok);
        }
    }

    if (!env_true(env, "AWS_EC2_METADATA_DISABLED")) {
        if (imds != NULL) {
            if (endpoint_check(imds, "AWS_EC2_METADATA_SERVICE_ENDPOINT", e) != 0) {
                return -1;
            }
            ch->imds_endpoint = url_trimmed(imds);
        } else if (mode != NULL && strcasecmp(mode, "IPv6") == 0) {
            ch->imds_endpoint = xstrdup(IMDS_V6);
        } else if (mode == NULL || strcasecmp(mode, "IPv4") == 0) {
            ch->imds_endpoint = xstrdup(IMDS_V4);
        } else {
            return err_set(e, ERRC_INVALID,
                           "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE must be IPv4 "
                           "or IPv6");
        }
    }
    return 0;
}

static bool source_configured(const struct aws_chain *ch, enum aws_creds_next s)
{
    switch (s) {
    case AWS_CREDS_READY:
        return false;
    case AWS_CREDS_FETCH_WEB_IDENTITY:
        return ch->web_identity_token_file != NULL;
    case AWS_CREDS_FETCH_CONTAINER:
        return ch->container_url != NULL;
    case AWS_CREDS_FETCH_IMDS:
        return ch->imds_endpoint != NULL;
    }
    return false;
}

static const char *unconfigured_reason(enum aws_creds_next s)
{
    switch (s) {
    case AWS_CREDS_FETCH_WEB_IDENTITY:
        return "not configured";
    case AWS_CREDS_FETCH_CONTAINER:
        return "not configured";
    case AWS_CREDS_FETCH_IMDS:
        return "disabled";
    case AWS_CREDS_READY:
        break;
    }
    return "not configured";
}

static int chain_nothing_left(struct aws_chain *ch, struct err *e)
{
    bool first = e->code == ERRC_OK;
    err_set(e, ERRC_NOT_FOUND, "no AWS credentials: %s", buf_cstr(&ch->tried));
    if (first) {
        snprintf(e->detail, sizeof(e->detail), "no AWS credentials: %s", buf_cstr(&ch->tried));
    }
    return -1;
}

/* Selects the first configured network source at or after s. */
static int chain_select_from(struct aws_chain *ch, enum aws_creds_next s, struct err *e)
{
    static const enum aws_creds_next order[] = { AWS_CREDS_FETCH_WEB_IDENTITY,
                                                 AWS_CREDS_FETCH_CONTAINER, AWS_CREDS_FETCH_IMDS };
    bool started = false;
    for (size_t i = 0; i < ARRAY_LEN(order); i++) {
        started = started || order[i] == s;
        if (!started) {
            continue;
        }
        if (source_configured(ch, order[i])) {
            ch->next = order[i];
            return 0;
        }
        tried_add(ch, aws_creds_next_name(order[i]), unconfigured_reason(order[i]));
    }
    ch->next = AWS_CREDS_READY;
    return chain_nothing_left(ch, e);
}

/* "~/.aws/credentials" when it is the default under HOME, else the path. */
static void file_label(const char *const *env, const char *path, const char *name, struct buf *out)
{
    const char *home = env_val(env, "HOME");
    struct buf def = BUF_INIT;
    if (home != NULL) {
        buf_addf(&def, "%s/.aws/%s", home, name);
    }
    if (path == NULL) {
        buf_addf(out, "~/.aws/%s", name);
    } else if (def.data != NULL && strcmp(def.data, path) == 0) {
        buf_addf(out, "~/.aws/%s", name);
    } else {
        buf_addstr(out, path);
    }
    buf_release(&def);
}

static int chain_try_file(struct aws_chain *ch, const struct aws_config *cfg,
                          const char *const *env, enum aws_file_kind kind, bool *found,
                          struct err *e)
{
    const struct aws_ini *ini = kind == AWS_FILE_CREDENTIALS ? cfg->credentials : cfg->config;
    const char *path = kind == AWS_FILE_CREDENTIALS ? cfg->credentials_file : cfg->config_file;
    const char *what = kind == AWS_FILE_CREDENTIALS ? "shared credentials file" : "config file";
    struct buf label = BUF_INIT, why = BUF_INIT, origin = BUF_INIT;
    int rc = 0;
    *found = false;
    file_label(env, path, kind == AWS_FILE_CREDENTIALS ? "credentials" : "config", &label);
    buf_addf(&origin, "%s %s", what, path != NULL ? path : label.data);
    if (path == NULL) {
        buf_addstr(&why, "HOME unset");
    } else if (ini == NULL) {
        buf_addstr(&why, "not found");
    } else {
        rc = aws_creds_from_ini(ini, kind, cfg->profile, origin.data, &ch->creds, found, &why, e);
    }
    if (rc == 0 && !*found) {
        buf_addf(&label, " (%s)", why.data);
        buf_addf(&ch->tried, "%s%s %s", ch->tried.len > 0 ? ", " : "", what, label.data);
    }
    buf_release(&label);
    buf_release(&why);
    buf_release(&origin);
    return rc;
}

int aws_chain_start(struct aws_chain *ch, const struct aws_config *cfg, const char *const *env,
                    struct err *e)
{
    struct buf why = BUF_INIT;
    bool found = false;
    aws_chain_release(ch);
    if (aws_creds_from_env(env, &ch->creds, &found, &why, e) != 0) {
        goto fail;
    }
    if (!found) {
        tried_add(ch, "environment", why.data);
        if (chain_try_file(ch, cfg, env, AWS_FILE_CREDENTIALS, &found, e) != 0) {
            goto fail;
        }
    }
    if (!found && chain_try_file(ch, cfg, env, AWS_FILE_CONFIG, &found, e) != 0) {
        goto fail;
    }
    buf_release(&why);
    if (found) {
        ch->next = AWS_CREDS_READY;
        return 0;
    }
    if (chain_network_config(ch, cfg, env, e) != 0 ||
        chain_select_from(ch, AWS_CREDS_FETCH_WEB_IDENTITY, e) != 0) {
        goto fail_tried;
    }
    return 0;
fail:
    buf_release(&why);
fail_tried:
    aws_creds_release(&ch->creds);
    ch->next = AWS_CREDS_READY;
    return -1;
}

int aws_chain_failed(struct aws_chain *ch, const char *reason, struct err *e)
{
    enum aws_creds_next cur = ch->next;
    BUG_ON(cur == AWS_CREDS_READY);
    tried_add(ch, aws_creds_next_name(cur), reason);
    if (cur == AWS_CREDS_FETCH_IMDS) {
        ch->next = AWS_CREDS_READY;
        return chain_nothing_left(ch, e);
    }
    return chain_select_from(
        ch, cur == AWS_CREDS_FETCH_WEB_IDENTITY ? AWS_CREDS_FETCH_CONTAINER : AWS_CREDS_FETCH_IMDS,
        e);
}

void aws_chain_fetched(struct aws_chain *ch, struct aws_creds *creds)
{
    aws_creds_release(&ch->creds);
    ch->creds = *creds;
    aws_creds_init(creds);
    ch->next = AWS_CREDS_READY;
}
