/*
 * Credentials and configuration, the parts that need no network (aws/creds.h; what AWS does:
 * docs/aws-iot.md, "Credential sources").
 *
 * Semantics follow botocore, the reference our cross-checks use:
 *   - shared files are read like Python's configparser in botocore's configloader (full-line
 *     comments, ':' or '=' delimiters, lower-cased keys, indented continuation lines, duplicate
 *     sections or keys are errors); [profile NAME] in config, [NAME] in credentials; a profile's
 *     settings are the union of both files, the credentials file winning;
 *   - the chain order is botocore's create_credential_resolver: environment, assume role, web
 *     identity, SSO, shared credentials file, credential_process, config file, container,
 *     IMDS; half a key pair in any local source is an error, not a reason to fall through
 *     (PartialCredentialsError); a configured source that fails is an error too;
 *   - assume-role profiles: role_arn with exactly one of source_profile / credential_source; a
 *     source profile with its own keys ends the chain (even when it names a role too), a profile
 *     may name itself as source when it has keys, any other repeat is a loop;
 *   - the container endpoint over plain http is allowed only to loopback and the ECS/EKS link-
 *     local addresses (current botocore's list).
 * Not supported: mfa_serial (a daemon cannot prompt for a code; the error says so) and the
 * refresh of an SSO token (`aws sso login` renews it; an expired one is an error saying so).
 *
 * The STS reply is XML. Rather than a general parser we accept a strict subset: one root, start
 * and end tags that must match, attributes skipped, comments; DTDs, CDATA and processing
 * instructions after the prolog are errors (no entity expansion attacks), and only the five
 * predefined entities and character references are decoded.
 */
#include "aws/creds.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
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
    xfree_secret(c->access_key_id);
    xfree_secret(c->secret_access_key);
    xfree_secret(c->session_token);
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
            buf_release_secret(&ini->secs[i].kv[k].value);
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
        buf_addf(why, "profile '%s' has no aws_access_key_id", profile);
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

/* A JSON object from a source's body: NULL with *e set when it is not one. */
static json_t *json_object_body(const char *body, size_t len, const char *source, struct err *e)
{
    json_error_t jerr;
    json_t *root;
    if (len > BODY_MAX) {
        err_set(e, ERRC_TOO_LARGE, "%s: reply larger than %u bytes", source, BODY_MAX);
        return NULL;
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        err_set(e, ERRC_INVALID, "%s: not JSON (line %d: %s)", source, jerr.line, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        err_set(e, ERRC_INVALID, "%s: not a JSON object", source);
        json_decref(root);
        return NULL;
    }
    return root;
}

int aws_creds_parse_process(const char *body, size_t len, const char *source, time_t now,
                            struct aws_creds *out, struct err *e)
{
    json_t *root = json_object_body(body, len, source, e), *v, *tok_v, *exp_v;
    const char *ak, *sk, *tok = NULL;
    time_t t = 0;
    int rc = -1;
    if (root == NULL) {
        return -1;
    }
    v = json_object_get(root, "Version");
    if (!json_is_integer(v) || json_integer_value(v) != 1) {
        err_set(e, ERRC_INVALID, "%s: \"Version\" must be 1", source);
        goto out;
    }
    if (json_field(root, source, "AccessKeyId", &ak, e) != 0 ||
        json_field(root, source, "SecretAccessKey", &sk, e) != 0) {
        goto out;
    }
    tok_v = json_object_get(root, "SessionToken");
    if (tok_v != NULL && !json_is_null(tok_v) &&
        json_field(root, source, "SessionToken", &tok, e) != 0) {
        goto out;
    }
    exp_v = json_object_get(root, "Expiration");
    if (exp_v != NULL && !json_is_null(exp_v)) {
        const char *exp;
        if (json_field(root, source, "Expiration", &exp, e) != 0) {
            goto out;
        }
        if (aws_time_parse_iso8601(exp, &t) != 0) {
            err_set(e, ERRC_INVALID, "%s: Expiration '%.40s' is not an ISO 8601 UTC time", source,
                    exp);
            goto out;
        }
        if (t <= now) {
            err_set(e, ERRC_INVALID, "%s: the credentials expired at %.40s", source, exp);
            goto out;
        }
    }
    rc = aws_creds_set(out, ak, sk, tok, t, source, e);
out:
    json_decref(root);
    return rc;
}

int aws_creds_parse_sso(const char *body, size_t len, const char *source, struct aws_creds *out,
                        struct err *e)
{
    json_t *root = json_object_body(body, len, source, e), *rc_v, *exp;
    const char *ak, *sk, *tok;
    int rc = -1;
    if (root == NULL) {
        return -1;
    }
    rc_v = json_object_get(root, "roleCredentials");
    if (!json_is_object(rc_v)) {
        err_set(e, ERRC_INVALID, "%s: reply has no roleCredentials object", source);
        goto out;
    }
    if (json_field(rc_v, source, "accessKeyId", &ak, e) != 0 ||
        json_field(rc_v, source, "secretAccessKey", &sk, e) != 0 ||
        json_field(rc_v, source, "sessionToken", &tok, e) != 0) {
        goto out;
    }
    exp = json_object_get(rc_v, "expiration");
    if (!json_is_integer(exp) || json_integer_value(exp) <= 0) {
        err_set(e, ERRC_INVALID, "%s: expiration is not a positive number of milliseconds", source);
        goto out;
    }
    rc = aws_creds_set(out, ak, sk, tok, (time_t)(json_integer_value(exp) / 1000), source, e);
out:
    json_decref(root);
    return rc;
}

int aws_sso_token_parse(const char *body, size_t len, const char *origin, char **token,
                        time_t *expires, struct err *e)
{
    json_t *root = json_object_body(body, len, origin, e);
    const char *tok, *exp;
    int rc = -1;
    *token = NULL;
    if (root == NULL) {
        return -1;
    }
    if (json_field(root, origin, "accessToken", &tok, e) != 0 ||
        json_field(root, origin, "expiresAt", &exp, e) != 0) {
        goto out;
    }
    if (aws_time_parse_iso8601(exp, expires) != 0) {
        err_set(e, ERRC_INVALID, "%s: expiresAt '%.40s' is not an ISO 8601 UTC time", origin, exp);
        goto out;
    }
    if (!cred_chars_ok(tok)) {
        err_set(e, ERRC_INVALID, "%s: accessToken contains a space or control character", origin);
        goto out;
    }
    *token = xstrdup(tok);
    rc = 0;
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

/* Where each field lives below ACTIONResponse/ACTIONResult/Credentials/ (the first four) or
 * from the root; checklist: F__COUNT entries. */
static const char *const sts_fields[F__COUNT] = {
    "AccessKeyId", "SecretAccessKey",          "SessionToken",
    "Expiration",  "ErrorResponse/Error/Code", "ErrorResponse/Error/Message",
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
                int d = hex ? hex_digit_value(c) : (c >= '0' && c <= '9') ? c - '0' : -1;
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
    char paths[F__COUNT][160]; /* where each field lives, from the root */
    char root[64];             /* ACTIONResponse */
    struct buf path;           /* "A/B/C" of the open elements */
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
                if (strcmp(x->path.data, x->paths[f]) != 0) {
                    continue;
                }
                if (x->seen[f]) {
                    return err_set(e, ERRC_INVALID, "%s: duplicate %s", source,
                                   strrchr(x->paths[f], '/') + 1);
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
            bool known = (ne - ns == strlen(x->root) && memcmp(s + ns, x->root, ne - ns) == 0) ||
                         (ne - ns == strlen("ErrorResponse") &&
                          memcmp(s + ns, "ErrorResponse", ne - ns) == 0);
            if (!known) {
                return err_set(e, ERRC_INVALID, "%s: unexpected XML root element <%.*s>", source,
                               (int)(ne - ns > 64 ? 64 : ne - ns), s + ns);
            }
        }
        for (int f = 0; f < F__COUNT && x->path.data != NULL; f++) {
            if (strcmp(x->path.data, x->paths[f]) == 0) {
                return err_set(e, ERRC_INVALID, "%s: element inside %s", source,
                               strrchr(x->paths[f], '/') + 1);
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

int aws_creds_parse_sts_xml(const char *body, size_t len, const char *action, const char *source,
                            struct aws_creds *out, struct err *e)
{
    struct xml_state x;
    time_t t;
    int rc = -1;
    if (len > BODY_MAX) {
        return err_set(e, ERRC_TOO_LARGE, "%s: reply larger than %u bytes", source, BODY_MAX);
    }
    if (strlen(action) > 40) {
        return err_set(e, ERRC_INVALID, "%s: STS action name too long", source);
    }
    memset(&x, 0, sizeof(x));
    snprintf(x.root, sizeof(x.root), "%sResponse", action);
    for (int f = 0; f < F__COUNT; f++) {
        if (f <= F_EXP) {
            snprintf(x.paths[f], sizeof(x.paths[f]), "%sResponse/%sResult/Credentials/%s", action,
                     action, sts_fields[f]);
        } else {
            snprintf(x.paths[f], sizeof(x.paths[f]), "%s", sts_fields[f]);
        }
    }
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
            err_set(e, ERRC_INVALID, "%s: reply has no %s", source, sts_fields[f]);
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
    buf_release_secret(&x.text);
    for (int f = 0; f < F__COUNT; f++) {
        buf_release_secret(&x.fields[f]);
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
    for (size_t i = 0; i < ARRAY_LEN(cfg->configured); i++) {
        xfree(cfg->configured[i]);
    }
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
    buf_release_secret(&b);
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
    return n > 0 && n <= 63;
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

const char *aws_config_get(const struct aws_config *cfg, const char *profile, const char *key)
{
    const char *sec = aws_ini_profile_section(cfg->credentials, AWS_FILE_CREDENTIALS, profile);
    const char *v = sec != NULL ? aws_ini_get(cfg->credentials, sec, key) : NULL;
    if (v == NULL) {
        sec = aws_ini_profile_section(cfg->config, AWS_FILE_CONFIG, profile);
        v = sec != NULL ? aws_ini_get(cfg->config, sec, key) : NULL;
    }
    return v;
}

bool aws_config_has_profile(const struct aws_config *cfg, const char *profile)
{
    return aws_ini_profile_section(cfg->credentials, AWS_FILE_CREDENTIALS, profile) != NULL ||
           aws_ini_profile_section(cfg->config, AWS_FILE_CONFIG, profile) != NULL;
}

/* A boolean setting: true/false in any case; anything else is an error naming where it came
 * from (botocore would read a typo as false and, say, silently not use FIPS). */
static int setting_bool(const char *v, const char *what, bool *out, struct err *e)
{
    if (strcasecmp(v, "true") == 0) {
        *out = true;
    } else if (strcasecmp(v, "false") == 0) {
        *out = false;
    } else {
        return err_set(e, ERRC_INVALID, "%s must be true or false, not '%.40s'", what, v);
    }
    return 0;
}

/* The value of a setting: environment variable env_name, else key of the profile. */
static const char *setting(const struct aws_config *cfg, const char *const *env,
                           const char *env_name, const char *key, struct buf *what)
{
    const char *v = env_name != NULL ? env_val(env, env_name) : NULL;
    buf_reset(what);
    if (v != NULL) {
        buf_addstr(what, env_name);
        return v;
    }
    v = aws_config_get(cfg, cfg->profile, key);
    if (v != NULL && v[0] != '\0') {
        buf_addf(what, "%s of profile '%s'", key, cfg->profile);
        return v;
    }
    return NULL;
}

static int setting_flag(const struct aws_config *cfg, const char *const *env, const char *env_name,
                        const char *key, bool *out, struct err *e)
{
    struct buf what = BUF_INIT;
    const char *v = setting(cfg, env, env_name, key, &what);
    int rc = 0;
    *out = false;
    if (v != NULL) {
        rc = setting_bool(v, what.data, out, e);
    }
    buf_release(&what);
    return rc;
}

/* The value of sub-key key in a nested block ("\nendpoint_url = URL\nfoo = bar"). */
static char *nested_get(const char *block, const char *key)
{
    const char *p = block;
    while (p != NULL && *p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (eq != NULL) {
            const char *k = p, *v = eq + 1;
            size_t kn = (size_t)(eq - p), vn = n - kn - 1;
            trim(&k, &kn);
            trim(&v, &vn);
            if (kn == strlen(key) && strncasecmp(k, key, kn) == 0) {
                return xstrndup(v, vn);
            }
        }
        p = nl != NULL ? nl + 1 : NULL;
    }
    return NULL;
}

/* Configured endpoint URLs, in the SDKs' order: AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL,
 * the service's entry in the profile's services section, the profile's endpoint_url. */
static int configured_endpoints(struct aws_config *cfg, const char *const *env, struct err *e)
{
    const char *services = aws_config_get(cfg, cfg->profile, "services");
    const char *global = aws_config_get(cfg, cfg->profile, "endpoint_url");
    struct buf sec = BUF_INIT, what = BUF_INIT;
    int rc = -1;
    if (services != NULL && services[0] != '\0') {
        buf_addf(&sec, "services %s", services);
        if (!aws_ini_has_section(cfg->config, sec.data)) {
            err_set(e, ERRC_INVALID, "profile '%s' names services '%.64s', which %s lacks",
                    cfg->profile, services, cfg->config_file ? cfg->config_file : "config");
            goto out;
        }
    }
    for (int s = 0; s < AWS_SVC__COUNT; s++) {
        const char *v = env_val(env, aws_service_endpoint_env((enum aws_service)s));
        char *nested = NULL;
        buf_reset(&what);
        if (v != NULL) {
            buf_addstr(&what, aws_service_endpoint_env((enum aws_service)s));
        } else if ((v = env_val(env, "AWS_ENDPOINT_URL")) != NULL) {
            buf_addstr(&what, "AWS_ENDPOINT_URL");
        } else if (sec.len > 0 &&
                   (v = aws_ini_get(cfg->config, sec.data,
                                    aws_service_config_key((enum aws_service)s))) != NULL &&
                   (nested = nested_get(v, "endpoint_url")) != NULL && nested[0] != '\0') {
            v = nested;
            buf_addf(&what, "[%s] %s endpoint_url", sec.data,
                     aws_service_config_key((enum aws_service)s));
        } else if (global != NULL && global[0] != '\0') {
            v = global;
            buf_addf(&what, "endpoint_url of profile '%s'", cfg->profile);
        } else {
            v = NULL;
        }
        if (v != NULL && endpoint_check(v, what.data, e) != 0) {
            xfree(nested);
            goto out;
        }
        if (v != NULL) {
            cfg->configured[s] = url_trimmed(v);
            snprintf(cfg->configured_source[s], sizeof(cfg->configured_source[s]), "%s", what.data);
        }
        xfree(nested);
    }
    rc = 0;
out:
    buf_release(&sec);
    buf_release(&what);
    return rc;
}

int aws_config_endpoint(const struct aws_config *cfg, enum aws_service s, const char *region,
                        char **url, char *signing_region, size_t cap, struct err *e)
{
    struct aws_endpoint_want w = { region != NULL ? region : cfg->region, cfg->use_fips,
                                   cfg->use_dualstack, cfg->sts_legacy };
    *url = NULL;
    if ((unsigned)s >= AWS_SVC__COUNT) {
        return err_set(e, ERRC_INVALID, "unknown AWS service");
    }
    if (cfg->configured[s] != NULL) {
        /* an explicit endpoint wins over FIPS and dual-stack, as in the SDKs */
        *url = xstrdup(cfg->configured[s]);
        snprintf(signing_region, cap, "%s", w.region ? w.region : "");
        return 0;
    }
    return aws_endpoint_default(s, &w, url, signing_region, cap, e);
}

int aws_config_resolve(struct aws_config *cfg, const char *const *env, const char *region_override,
                       const char *endpoint_override, struct err *e)
{
    struct aws_config_opts o = { NULL, region_override, endpoint_override };
    return aws_config_resolve_opts(cfg, env, &o, e);
}

int aws_config_resolve_opts(struct aws_config *cfg, const char *const *env,
                            const struct aws_config_opts *o, struct err *e)
{
    const char *profile_env = env_val(env, "AWS_PROFILE");
    const char *region_override = o->region, *endpoint_override = o->endpoint;
    const char *r = NULL, *sts = NULL, *profile_what = "AWS_PROFILE";
    struct buf what = BUF_INIT;
    bool ignore = false, explicit_profile = o->profile != NULL && o->profile[0] != '\0';
    char signing[64];
    if (explicit_profile) {
        profile_env = o->profile;
        profile_what = "configured";
    } else if (profile_env == NULL) {
        profile_env = env_val(env, "AWS_DEFAULT_PROFILE");
        profile_what = "AWS_DEFAULT_PROFILE";
    }
    aws_config_release(cfg);
    cfg->profile = xstrdup(profile_env != NULL ? profile_env : "default");
    cfg->profile_explicit = explicit_profile;
    cfg->credentials_file = file_path(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    cfg->config_file = file_path(env, "AWS_CONFIG_FILE", "config");
    if (load_ini(cfg->credentials_file, &cfg->credentials, e) != 0 ||
        load_ini(cfg->config_file, &cfg->config, e) != 0) {
        goto fail;
    }
    if (profile_env != NULL && !aws_config_has_profile(cfg, cfg->profile)) {
        err_set(e, ERRC_INVALID, "profile '%s' (%s) is in neither %s nor %s", cfg->profile,
                profile_what, cfg->credentials_file ? cfg->credentials_file : "(no HOME)",
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
    } else if ((r = aws_config_get(cfg, cfg->profile, "region")) != NULL && r[0] != '\0') {
        const char *cs =
            aws_ini_profile_section(cfg->credentials, AWS_FILE_CREDENTIALS, cfg->profile);
        bool in_creds = cs != NULL && aws_ini_get(cfg->credentials, cs, "region") != NULL;
        snprintf(cfg->region_source, sizeof(cfg->region_source), "%s %s profile %s",
                 in_creds ? "shared credentials file" : "config file",
                 in_creds ? cfg->credentials_file : cfg->config_file, cfg->profile);
    } else {
        err_set(e, ERRC_INVALID,
                "no AWS region: AWS_REGION and AWS_DEFAULT_REGION unset, no "
                "region for profile '%s' in %s",
                cfg->profile,
                cfg->config_file != NULL ? cfg->config_file : "a config file (HOME unset)");
        aws_config_release(cfg);
        cfg->region_missing = true;
        buf_release(&what);
        return -1;
    }
    if (!region_ok(r)) {
        err_set(e, ERRC_INVALID, "region '%.64s' from %s is not [a-z0-9-]", r, cfg->region_source);
        goto fail;
    }
    cfg->region = xstrdup(r);

    if (setting_flag(cfg, env, "AWS_USE_FIPS_ENDPOINT", "use_fips_endpoint", &cfg->use_fips, e) !=
            0 ||
        setting_flag(cfg, env, "AWS_USE_DUALSTACK_ENDPOINT", "use_dualstack_endpoint",
                     &cfg->use_dualstack, e) != 0) {
        goto fail;
    }
    sts = setting(cfg, env, "AWS_STS_REGIONAL_ENDPOINTS", "sts_regional_endpoints", &what);
    if (sts != NULL && strcasecmp(sts, "legacy") != 0 && strcasecmp(sts, "regional") != 0) {
        err_set(e, ERRC_INVALID, "%s must be regional or legacy, not '%.40s'", what.data, sts);
        goto fail;
    }
    cfg->sts_legacy = sts != NULL && strcasecmp(sts, "legacy") == 0;
    if (env_val(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") != NULL) {
        ignore = env_true(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
    } else if (setting_flag(cfg, env, NULL, "ignore_configured_endpoint_urls", &ignore, e) != 0) {
        goto fail;
    }
    if (!ignore && configured_endpoints(cfg, env, e) != 0) {
        goto fail;
    }

    if (endpoint_override != NULL && endpoint_override[0] != '\0') {
        if (endpoint_check(endpoint_override, "configured endpoint", e) != 0) {
            goto fail;
        }
        cfg->endpoint = url_trimmed(endpoint_override);
        snprintf(cfg->endpoint_source, sizeof(cfg->endpoint_source), "configured endpoint");
    } else if (aws_config_endpoint(cfg, AWS_SVC_IOT, NULL, &cfg->endpoint, signing, sizeof(signing),
                                   e) != 0) {
        goto fail;
    } else {
        snprintf(cfg->endpoint_source, sizeof(cfg->endpoint_source), "%s",
                 cfg->configured[AWS_SVC_IOT]          ? cfg->configured_source[AWS_SVC_IOT]
                 : cfg->use_fips && cfg->use_dualstack ? "FIPS dual-stack endpoint"
                 : cfg->use_fips                       ? "FIPS endpoint"
                 : cfg->use_dualstack                  ? "dual-stack endpoint"
                                                       : "default endpoint");
    }
    buf_release(&what);
    return 0;
fail:
    buf_release(&what);
    aws_config_release(cfg);
    return -1;
}

int aws_imds_endpoint(const char *const *env, char **out, struct err *e)
{
    const char *imds = env_val(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
    const char *mode = env_val(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
    *out = NULL;
    if (env_true(env, "AWS_EC2_METADATA_DISABLED")) {
        return 0;
    }
    if (imds != NULL) {
        if (endpoint_check(imds, "AWS_EC2_METADATA_SERVICE_ENDPOINT", e) != 0) {
            return -1;
        }
        *out = url_trimmed(imds);
    } else if (mode != NULL && strcasecmp(mode, "IPv6") == 0) {
        *out = xstrdup(IMDS_V6);
    } else if (mode == NULL || strcasecmp(mode, "IPv4") == 0) {
        *out = xstrdup(IMDS_V4);
    } else {
        return err_set(e, ERRC_INVALID,
                       "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE must be IPv4 or "
                       "IPv6");
    }
    return 0;
}

/* ---- the chain ----------------------------------------------------------------------------- */

const char *aws_creds_next_name(enum aws_creds_next next)
{
    switch (next) {
    case AWS_CREDS_READY:
        return "credentials";
    case AWS_CREDS_FETCH_WEB_IDENTITY:
        return "web identity";
    case AWS_CREDS_FETCH_SSO:
        return "SSO";
    case AWS_CREDS_FETCH_PROCESS:
        return "credential_process";
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

static void sso_release(struct aws_sso *s)
{
    xfree(s->profile);
    xfree(s->session);
    xfree(s->start_url);
    xfree(s->region);
    xfree(s->account_id);
    xfree(s->role_name);
    xfree(s->cache_file);
    memset(s, 0, sizeof(*s));
}

void aws_chain_release(struct aws_chain *ch)
{
    aws_creds_release(&ch->creds);
    xfree(ch->role_arn);
    xfree(ch->web_identity_token_file);
    xfree(ch->role_session_name);
    sso_release(&ch->sso);
    xfree(ch->process);
    xfree(ch->container_url);
    xfree_secret(ch->container_auth_token);
    xfree(ch->container_auth_token_file);
    xfree(ch->imds_endpoint);
    for (size_t i = 0; i < ch->nroles; i++) {
        xfree(ch->roles[i].profile);
        xfree(ch->roles[i].role_arn);
        xfree(ch->roles[i].session_name);
        xfree(ch->roles[i].external_id);
    }
    xfree(ch->roles);
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

/* The container endpoint from the environment; ch->container_url stays NULL when unset. */
static int container_config(struct aws_chain *ch, const char *const *env, struct err *e)
{
    const char *rel = env_val(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = env_val(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *tok = env_val(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
    const char *tokf = env_val(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    if (rel != NULL) {
        struct buf b = BUF_INIT;
        if (rel[0] != '/') {
            return err_set(e, ERRC_INVALID,
                           "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must start with '/'");
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
                               "AWS_CONTAINER_AUTHORIZATION_TOKEN contains CR or LF");
            }
            ch->container_auth_token = xstrdup(tok);
        }
    }
    return 0;
}

static void base_set(struct aws_chain *ch, enum aws_creds_next next, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void base_set(struct aws_chain *ch, enum aws_creds_next next, const char *fmt, ...)
{
    va_list ap;
    ch->next = next;
    va_start(ap, fmt);
    vsnprintf(ch->base, sizeof(ch->base), fmt, ap);
    va_end(ap);
}

static bool has_value(const char *v)
{
    return v != NULL && v[0] != '\0';
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

/* Static keys of profile in one of the shared files. */
static int chain_try_file(struct aws_chain *ch, const struct aws_config *cfg,
                          const char *const *env, enum aws_file_kind kind, const char *profile,
                          bool *found, struct err *e)
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
        rc = aws_creds_from_ini(ini, kind, profile, origin.data, &ch->creds, found, &why, e);
    }
    if (rc == 0 && !*found) {
        buf_addf(&label, " (%s)", why.data);
        buf_addf(&ch->tried, "%s%s %s", ch->tried.len > 0 ? ", " : "", what, label.data);
    } else if (rc == 0) {
        ch->next = AWS_CREDS_READY;
        snprintf(ch->base, sizeof(ch->base), "%s", origin.data);
    }
    buf_release(&label);
    buf_release(&why);
    buf_release(&origin);
    return rc;
}

/* SSO settings of profile (the profile's own, completed by its sso_session's). */
static int sso_config(struct aws_chain *ch, const struct aws_config *cfg, const char *const *env,
                      const char *profile, bool *found, struct err *e)
{
    static const char *const keys[] = { "sso_start_url", "sso_region" };
    const char *account = aws_config_get(cfg, profile, "sso_account_id");
    const char *role = aws_config_get(cfg, profile, "sso_role_name");
    const char *session = aws_config_get(cfg, profile, "sso_session");
    const char *home = env_val(env, "HOME");
    const char *vals[2];
    struct buf sec = BUF_INIT, missing = BUF_INIT, path = BUF_INIT;
    uint8_t md[20];
    char hex[41];
    int rc = -1;
    *found = false;
    if (account == NULL && role == NULL) {
        tried_add(ch, "SSO", "no sso_account_id or sso_role_name");
        return 0;
    }
    if (has_value(session)) {
        buf_addf(&sec, "sso-session %s", session);
        if (!aws_ini_has_section(cfg->config, sec.data)) {
            err_set(e, ERRC_INVALID, "profile '%s' names sso_session '%.64s', which %s lacks",
                    profile, session, cfg->config_file ? cfg->config_file : "the config file");
            goto out;
        }
    }
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        const char *own = aws_config_get(cfg, profile, keys[i]);
        const char *ses = sec.len > 0 ? aws_ini_get(cfg->config, sec.data, keys[i]) : NULL;
        if (has_value(own) && has_value(ses) && strcmp(own, ses) != 0) {
            err_set(e, ERRC_INVALID, "profile '%s': %s differs from its sso_session's", profile,
                    keys[i]);
            goto out;
        }
        vals[i] = has_value(ses) ? ses : own;
    }
    if (!has_value(account)) {
        buf_addstr(&missing, ", sso_account_id");
    }
    if (!has_value(role)) {
        buf_addstr(&missing, ", sso_role_name");
    }
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        if (!has_value(vals[i])) {
            buf_addf(&missing, ", %s", keys[i]);
        }
    }
    if (missing.len > 0) {
        err_set(e, ERRC_INVALID, "profile '%s' is set up for SSO but lacks %s", profile,
                missing.data + 2);
        goto out;
    }
    if (!region_ok(vals[1])) {
        err_set(e, ERRC_INVALID, "profile '%s': sso_region '%.64s' is not [a-z0-9-]", profile,
                vals[1]);
        goto out;
    }
    if (home == NULL) {
        err_set(e, ERRC_INVALID,
                "profile '%s' uses SSO, whose token cache is under $HOME/.aws/"
                "sso/cache, and HOME is unset",
                profile);
        goto out;
    }
    {
        /* the cache key `aws sso login` uses: SHA-1 of the session name (or the start URL) */
        const char *key = has_value(session) ? session : vals[0];
        unsigned mdlen = 0;
        if (EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20) {
            err_set(e, ERRC_INTERNAL, "SHA-1 failed");
            goto out;
        }
        hex_encode(md, sizeof(md), hex);
    }
    buf_addf(&path, "%s/.aws/sso/cache/%s.json", home, hex);
    ch->sso.profile = xstrdup(profile);
    ch->sso.session = has_value(session) ? xstrdup(session) : NULL;
    ch->sso.start_url = xstrdup(vals[0]);
    ch->sso.region = xstrdup(vals[1]);
    ch->sso.account_id = xstrdup(account);
    ch->sso.role_name = xstrdup(role);
    ch->sso.cache_file = buf_detach(&path, NULL);
    base_set(ch, AWS_CREDS_FETCH_SSO, "SSO (profile '%s', %s %s)", profile,
             has_value(session) ? "sso_session" : "start URL",
             has_value(session) ? session : vals[0]);
    *found = true;
    rc = 0;
out:
    buf_release(&sec);
    buf_release(&missing);
    buf_release(&path);
    return rc;
}

/* Web identity from the environment (when allowed) or the profile. */
static int web_identity_config(struct aws_chain *ch, const struct aws_config *cfg,
                               const char *const *env, const char *profile, bool use_env,
                               bool *found, struct err *e)
{
    const char *tf = use_env ? env_val(env, "AWS_WEB_IDENTITY_TOKEN_FILE") : NULL;
    const char *arn = use_env ? env_val(env, "AWS_ROLE_ARN") : NULL;
    const char *sn = use_env ? env_val(env, "AWS_ROLE_SESSION_NAME") : NULL;
    const char *where = "AWS_ROLE_ARN";
    *found = false;
    if (tf == NULL) {
        tf = aws_config_get(cfg, profile, "web_identity_token_file");
        arn = aws_config_get(cfg, profile, "role_arn");
        sn = aws_config_get(cfg, profile, "role_session_name");
        where = "role_arn";
    }
    if (!has_value(tf)) {
        tried_add(ch, "web identity", "not configured");
        return 0;
    }
    if (!has_value(arn)) {
        return err_set(e, ERRC_INVALID,
                       "web identity: a token file is configured but no role "
                       "ARN (%s)",
                       where);
    }
    set_str(&ch->web_identity_token_file, tf);
    set_str(&ch->role_arn, arn);
    set_str(&ch->role_session_name, has_value(sn) ? sn : NULL);
    base_set(ch, AWS_CREDS_FETCH_WEB_IDENTITY, "web identity (role %.120s)", arn);
    *found = true;
    return 0;
}

/* The profile providers: web identity, SSO, credentials file, credential_process, config
 * file. */
static int profile_sources(struct aws_chain *ch, const struct aws_config *cfg,
                           const char *const *env, const char *profile, bool use_env, bool *found,
                           struct err *e)
{
    const char *proc;
    if (web_identity_config(ch, cfg, env, profile, use_env, found, e) != 0) {
        return -1;
    }
    if (!*found && sso_config(ch, cfg, env, profile, found, e) != 0) {
        return -1;
    }
    if (!*found && chain_try_file(ch, cfg, env, AWS_FILE_CREDENTIALS, profile, found, e) != 0) {
        return -1;
    }
    if (*found) {
        return 0;
    }
    proc = aws_config_get(cfg, profile, "credential_process");
    if (has_value(proc)) {
        set_str(&ch->process, proc);
        base_set(ch, AWS_CREDS_FETCH_PROCESS, "credential_process of profile '%s'", profile);
        *found = true;
        return 0;
    }
    tried_add(ch, "credential_process", "none");
    return chain_try_file(ch, cfg, env, AWS_FILE_CONFIG, profile, found, e);
}

static bool profile_has_keys(const struct aws_config *cfg, const char *profile)
{
    return aws_config_get(cfg, profile, "aws_access_key_id") != NULL ||
           aws_config_get(cfg, profile, "aws_secret_access_key") != NULL;
}

static bool is_role_profile(const struct aws_config *cfg, const char *profile)
{
    return aws_config_get(cfg, profile, "role_arn") != NULL &&
           aws_config_get(cfg, profile, "web_identity_token_file") == NULL;
}

#define ROLE_DEPTH 16

static int plan_role(struct aws_chain *ch, const struct aws_config *cfg, const char *const *env,
                     const char *profile, const char **visited, size_t nvisited, struct err *e);

/* The base of role profile's chain: its credential_source or its source_profile. */
static int plan_role_source(struct aws_chain *ch, const struct aws_config *cfg,
                            const char *const *env, const char *profile, const char **visited,
                            size_t nvisited, struct err *e)
{
    const char *src = aws_config_get(cfg, profile, "source_profile");
    const char *cs = aws_config_get(cfg, profile, "credential_source");
    bool found = false;
    if (has_value(src) && has_value(cs)) {
        return err_set(e, ERRC_INVALID,
                       "profile '%s' has both source_profile and "
                       "credential_source",
                       profile);
    }
    if (has_value(cs)) {
        if (strcmp(cs, "Environment") == 0) {
            struct buf why = BUF_INIT;
            int rc = aws_creds_from_env(env, &ch->creds, &found, &why, e);
            if (rc == 0 && !found) {
                err_set(e, ERRC_INVALID, "profile '%s': credential_source Environment, but %s",
                        profile, why.data);
                rc = -1;
            }
            buf_release(&why);
            if (rc == 0) {
                base_set(ch, AWS_CREDS_READY, "environment (credential_source of profile '%s')",
                         profile);
            }
            return rc;
        }
        if (strcmp(cs, "Ec2InstanceMetadata") == 0) {
            if (aws_imds_endpoint(env, &ch->imds_endpoint, e) != 0) {
                return -1;
            }
            if (ch->imds_endpoint == NULL) {
                return err_set(e, ERRC_INVALID,
                               "profile '%s': credential_source "
                               "Ec2InstanceMetadata, but AWS_EC2_METADATA_"
                               "DISABLED=true",
                               profile);
            }
            base_set(ch, AWS_CREDS_FETCH_IMDS, "EC2 IMDS (credential_source of profile '%s')",
                     profile);
            return 0;
        }
        if (strcmp(cs, "EcsContainer") == 0) {
            if (container_config(ch, env, e) != 0) {
                return -1;
            }
            if (ch->container_url == NULL) {
                return err_set(e, ERRC_INVALID,
                               "profile '%s': credential_source EcsContainer, "
                               "but AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and "
                               "_FULL_URI are unset",
                               profile);
            }
            base_set(ch, AWS_CREDS_FETCH_CONTAINER,
                     "container endpoint (credential_source of "
                     "profile '%s')",
                     profile);
            return 0;
        }
        return err_set(e, ERRC_INVALID,
                       "profile '%s': credential_source '%.40s' is not "
                       "Environment, Ec2InstanceMetadata or EcsContainer",
                       profile, cs);
    }
    if (!has_value(src)) {
        return err_set(e, ERRC_INVALID,
                       "profile '%s' has role_arn but neither source_profile nor "
                       "credential_source",
                       profile);
    }
    if (!aws_config_has_profile(cfg, src)) {
        return err_set(e, ERRC_INVALID, "profile '%s': source_profile '%.64s' does not exist",
                       profile, src);
    }
    for (size_t i = 0; i < nvisited; i++) {
        if (strcmp(visited[i], src) != 0) {
            continue;
        }
        /* a profile may name itself when it has keys of its own (botocore allows it) */
        if (strcmp(src, profile) != 0 || !profile_has_keys(cfg, src)) {
            struct buf loop = BUF_INIT;
            for (size_t k = 0; k < nvisited; k++) {
                buf_addf(&loop, "%s -> ", visited[k]);
            }
            buf_addstr(&loop, src);
            err_set(e, ERRC_INVALID, "source_profile loop: %.200s", loop.data);
            buf_release(&loop);
            return -1;
        }
    }
    if (nvisited >= ROLE_DEPTH) {
        return err_set(e, ERRC_INVALID, "more than %d chained source profiles", ROLE_DEPTH);
    }
    visited[nvisited++] = src;
    if (profile_has_keys(cfg, src) || !is_role_profile(cfg, src)) {
        size_t tried = ch->tried.len;
        if (profile_sources(ch, cfg, env, src, false, &found, e) != 0) {
            return -1;
        }
        if (!found) {
            err_set(e, ERRC_INVALID,
                    "profile '%s': source_profile '%s' has no credentials (%.150s)", profile, src,
                    buf_cstr(&ch->tried) + tried);
            return -1;
        }
        return 0;
    }
    return plan_role(ch, cfg, env, src, visited, nvisited, e);
}

/* Plans role profile: its source (recursively), then its AssumeRole. */
static int plan_role(struct aws_chain *ch, const struct aws_config *cfg, const char *const *env,
                     const char *profile, const char **visited, size_t nvisited, struct err *e)
{
    const char *arn = aws_config_get(cfg, profile, "role_arn");
    const char *sn = aws_config_get(cfg, profile, "role_session_name");
    const char *ext = aws_config_get(cfg, profile, "external_id");
    const char *dur = aws_config_get(cfg, profile, "duration_seconds");
    uint64_t d = 0;
    struct aws_role_step *r;
    if (!has_value(arn)) {
        return err_set(e, ERRC_INVALID, "profile '%s': role_arn is empty", profile);
    }
    if (aws_config_get(cfg, profile, "mfa_serial") != NULL) {
        return err_set(e, ERRC_INVALID,
                       "profile '%s' needs an MFA code (mfa_serial), which "
                       "jitrca cannot prompt for: use a role without MFA",
                       profile);
    }
    if (has_value(dur) && (str_to_u64(dur, &d) != 0 || d < 900 || d > 43200)) {
        return err_set(e, ERRC_INVALID,
                       "profile '%s': duration_seconds must be 900 to 43200, "
                       "not '%.20s'",
                       profile, dur);
    }
    if (has_value(sn)) {
        size_t n = strlen(sn);
        bool ok = n >= 2 && n <= 64;
        for (size_t i = 0; ok && i < n; i++) {
            char c = sn[i];
            ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 strchr("_+=,.@-", c) != NULL;
        }
        if (!ok) {
            return err_set(e, ERRC_INVALID,
                           "profile '%s': role_session_name must be 2 to 64 of "
                           "A-Z a-z 0-9 _+=,.@-",
                           profile);
        }
    }
    if (plan_role_source(ch, cfg, env, profile, visited, nvisited, e) != 0) {
        return -1;
    }
    ch->roles = xrealloc(ch->roles, (ch->nroles + 1) * sizeof(*ch->roles));
    r = &ch->roles[ch->nroles++];
    memset(r, 0, sizeof(*r));
    r->profile = xstrdup(profile);
    r->role_arn = xstrdup(arn);
    r->session_name = has_value(sn) ? xstrdup(sn) : NULL;
    r->external_id = has_value(ext) ? xstrdup(ext) : NULL;
    r->duration_s = (long)d;
    return 0;
}

int aws_chain_start(struct aws_chain *ch, const struct aws_config *cfg, const char *const *env,
                    struct err *e)
{
    struct buf why = BUF_INIT;
    bool found = false;
    aws_chain_release(ch);
    /* 1. environment, unless the profile was chosen explicitly (as with `aws --profile`) */
    if (cfg->profile_explicit) {
        buf_addf(&why, "not used: profile '%s' configured", cfg->profile);
    } else if (aws_creds_from_env(env, &ch->creds, &found, &why, e) != 0) {
        goto fail;
    }
    if (found) {
        base_set(ch, AWS_CREDS_READY, "environment");
        buf_release(&why);
        return 0;
    }
    tried_add(ch, "environment", why.data);
    buf_release(&why);
    /* 2. assume role */
    if (is_role_profile(cfg, cfg->profile)) {
        const char *visited[ROLE_DEPTH + 1] = { cfg->profile };
        if (plan_role(ch, cfg, env, cfg->profile, visited, 1, e) != 0) {
            goto fail;
        }
        return 0;
    }
    /* 3-7. web identity, SSO, credentials file, credential_process, config file */
    if (profile_sources(ch, cfg, env, cfg->profile, !cfg->profile_explicit, &found, e) != 0) {
        goto fail;
    }
    if (found) {
        return 0;
    }
    /* 8. container */
    if (container_config(ch, env, e) != 0) {
        goto fail;
    }
    if (ch->container_url != NULL) {
        base_set(ch, AWS_CREDS_FETCH_CONTAINER, "container endpoint");
        return 0;
    }
    tried_add(ch, "container endpoint", "not configured");
    /* 9. IMDS */
    if (aws_imds_endpoint(env, &ch->imds_endpoint, e) != 0) {
        goto fail;
    }
    if (ch->imds_endpoint != NULL) {
        base_set(ch, AWS_CREDS_FETCH_IMDS, "EC2 IMDS");
        ch->last_resort = true;
        return 0;
    }
    tried_add(ch, "EC2 IMDS", "disabled");
    err_set(e, ERRC_NOT_FOUND, "no AWS credentials: %s", buf_cstr(&ch->tried));
    snprintf(e->detail, sizeof(e->detail), "no AWS credentials: %s", buf_cstr(&ch->tried));
fail:
    aws_creds_release(&ch->creds);
    ch->next = AWS_CREDS_READY;
    return -1;
}

int aws_chain_failed(struct aws_chain *ch, enum err_code code, const char *reason, struct err *e)
{
    BUG_ON(ch->next == AWS_CREDS_READY);
    if (ch->last_resort) {
        tried_add(ch, aws_creds_next_name(ch->next), reason);
        err_set(e, ERRC_NOT_FOUND, "no AWS credentials: %s", buf_cstr(&ch->tried));
        snprintf(e->detail, sizeof(e->detail), "no AWS credentials: %s", buf_cstr(&ch->tried));
    } else {
        err_set(e, code != ERRC_OK ? code : ERRC_UNAVAILABLE, "AWS credentials from %s: %s",
                ch->base, reason);
        snprintf(e->detail, sizeof(e->detail), "AWS credentials from %s: %s (not used: %s)",
                 ch->base, reason, ch->tried.len > 0 ? ch->tried.data : "-");
    }
    ch->next = AWS_CREDS_READY;
    return -1;
}

void aws_chain_fetched(struct aws_chain *ch, struct aws_creds *creds)
{
    aws_creds_release(&ch->creds);
    ch->creds = *creds;
    aws_creds_init(creds);
    ch->next = AWS_CREDS_READY;
}

/* ---- command lines ------------------------------------------------------------------------- */

void aws_argv_free(char **argv)
{
    for (size_t i = 0; argv != NULL && argv[i] != NULL; i++) {
        xfree(argv[i]);
    }
    xfree(argv);
}

int aws_argv_split(const char *cmd, char ***argv, struct err *e)
{
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct buf w = BUF_INIT;
    bool in_word = false;
    const char *p = cmd;
    *argv = NULL;
    for (;;) {
        char c = *p;
        if (c == '\0' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (in_word) {
                v = xgrow(v, sizeof(*v), n + 2, &cap);
                v[n++] = buf_detach(&w, NULL);
                v[n] = NULL;
                in_word = false;
            }
            if (c == '\0') {
                break;
            }
            p++;
            continue;
        }
        in_word = true;
        if (c == '\'') {
            const char *q = strchr(p + 1, '\'');
            if (q == NULL) {
                goto unterminated;
            }
            buf_add(&w, p + 1, (size_t)(q - p - 1));
            p = q + 1;
        } else if (c == '"') {
            p++;
            while (*p != '"') {
                if (*p == '\0') {
                    goto unterminated;
                }
                if (*p == '\\' && (p[1] == '"' || p[1] == '\\' || p[1] == '$' || p[1] == '`')) {
                    buf_addch(&w, p[1]);
                    p += 2;
                } else if (*p == '\\' && p[1] == '\n') {
                    p += 2;
                } else {
                    buf_addch(&w, *p++);
                }
            }
            p++;
        } else if (c == '\\') {
            if (p[1] == '\0') {
                buf_release(&w);
                aws_argv_free(v);
                return err_set(e, ERRC_INVALID, "credential_process ends with a backslash");
            }
            if (p[1] != '\n') {
                buf_addch(&w, p[1]);
            }
            p += 2;
        } else {
            buf_addch(&w, c);
            p++;
        }
    }
    if (n == 0) {
        aws_argv_free(v);
        return err_set(e, ERRC_INVALID, "credential_process is empty");
    }
    *argv = v;
    return 0;
unterminated:
    buf_release(&w);
    aws_argv_free(v);
    return err_set(e, ERRC_INVALID, "credential_process has an unterminated quote");
}
