/*
 * Certificate profiles: one JSON object per file (docs/profiles.md), parsed with Jansson and
 * validated completely at load so that issuance never meets a half-valid profile. Every message
 * names the origin (file), the key ("subject.cn_pattern") and the problem; unknown keys are
 * errors at every level, duplicate keys too (JSON_REJECT_DUPLICATES).
 *
 * Patterns are POSIX extended regular expressions matched against the whole value: the loader
 * compiles "^(PATTERN)$", so a profile cannot forget its anchors. A loaded profile is immutable
 * and may be shared by threads (glibc's regexec is thread-safe).
 */
#include "ca/profile.h"

#include <dirent.h>
#include <jansson.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/ca_int.h"
#include "core/mem.h"
#include "core/util.h"

#define PROFILE_FILE_MAX     65536
#define PROFILE_PATTERN_MAX  512
#define PROFILE_DAYS_MAX     36500
#define PROFILE_BACKDATE_MAX 86400
#define PROFILE_SAN_MAX      64
#define PROFILE_SAN_DEFAULT  8
#define PROFILE_URL_MAX      512 /* characters of a URL */
#define PROFILE_URLS_MAX     4   /* URLs of one list */

struct ca_profiles {
    struct ca_profile **v;
    size_t n;
    size_t cap;
};

void cai_profile_allowed_keys(const struct ca_profile *p, char *out, size_t cap)
{
    cai_names_list(cai_key_type_names, p->key_allowed, CA_KEY__COUNT, out, cap);
}

bool cai_profile_has_eku(const struct ca_profile *p, enum cai_eku k)
{
    for (size_t i = 0; i < p->eku_n; i++) {
        if (p->eku[i] == k) {
            return true;
        }
    }
    return false;
}

/* --- loading -------------------------------------------------------------------------------- */

struct loader {
    const char *origin; /* file name for messages */
    struct ca_profile *p;
    struct err *e;
};

static int bad(struct loader *l, const char *key, const char *fmt, ...) ATTR_PRINTF(3, 4);
static int bad(struct loader *l, const char *key, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return err_set(l->e, ERRC_INVALID, "profile %s: %s: %s", l->origin, key, what);
}

#define NAMES_MAX 8 /* CA_KEY__COUNT, CAI_EKU__COUNT and more */

/* v, the value of key: a non-empty array of the names parse knows (what is one of them, known
 * lists them all), none twice. Their indexes in order into idx, their count into *n. */
static int load_names(struct loader *l, const char *key, const json_t *v,
                      int (*parse)(const char *), const char *what, const char *known,
                      int idx[NAMES_MAX], size_t *n)
{
    size_t i;
    const json_t *it;
    *n = 0;
    if (v == NULL || !json_is_array(v) || json_array_size(v) == 0) {
        return bad(l, key, "is required: a non-empty array of %s", known);
    }
    json_array_foreach(v, i, it)
    {
        int t = json_is_string(it) ? parse(json_string_value(it)) : -1;
        if (t < 0) {
            return bad(l, key, "unknown %s '%s' (known: %s)", what,
                       json_is_string(it) ? json_string_value(it) : "(not a string)", known);
        }
        for (size_t k = 0; k < *n; k++) {
            if (idx[k] == t) {
                return bad(l, key, "lists '%s' twice", json_string_value(it));
            }
        }
        BUG_ON(*n >= NAMES_MAX);
        idx[(*n)++] = t;
    }
    return 0;
}

/* Every key of obj must be in names[]. */
static int check_keys(struct loader *l, json_t *obj, const char *where, const char *const *names,
                      size_t n)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < n && !known; i++) {
            known = strcmp(k, names[i]) == 0;
        }
        if (!known) {
            char key[160];
            snprintf(key, sizeof(key), "%s%s%s", where, *where ? "." : "", k);
            return bad(l, key, "unknown key");
        }
    }
    return 0;
}

static int compile_pattern(struct loader *l, const char *key, json_t *v, char **src, regex_t *re)
{
    if (!json_is_string(v)) {
        return bad(l, key, "must be a string (a POSIX extended regular expression)");
    }
    const char *pat = json_string_value(v);
    size_t plen = json_string_length(v);
    if (plen == 0 || plen > PROFILE_PATTERN_MAX || strlen(pat) != plen) {
        return bad(l, key, "must be a non-empty pattern of at most 512 bytes");
    }
    struct buf anchored = BUF_INIT;
    buf_addf(&anchored, "^(%s)$", pat);
    int rc = regcomp(re, anchored.data, REG_EXTENDED | REG_NOSUB);
    buf_release(&anchored);
    if (rc != 0) {
        char why[128];
        regerror(rc, NULL, why, sizeof(why));
        return bad(l, key, "is not a valid POSIX extended regular expression: %s", why);
    }
    *src = xstrdup(pat);
    return 0;
}

/* An array of known attribute names into set[]. */
static int attr_list(struct loader *l, const char *key, json_t *v, bool set[CAI_ATTR__COUNT])
{
    size_t i;
    json_t *it;
    if (!json_is_array(v)) {
        return bad(l, key, "must be an array of attribute names (CN, O, OU, C, ...)");
    }
    json_array_foreach(v, i, it)
    {
        int a = json_is_string(it) ? cai_attr_parse(json_string_value(it)) : -1;
        if (a < 0) {
            return bad(l, key,
                       "unknown subject attribute '%s' (known: CN, C, ST, L, O, OU, "
                       "serialNumber, emailAddress, DC)",
                       json_is_string(it) ? json_string_value(it) : "(not a string)");
        }
        if (set[a]) {
            return bad(l, key, "lists '%s' twice", cai_attrs[a].name);
        }
        set[a] = true;
    }
    return 0;
}

static int load_subject(struct loader *l, json_t *v)
{
    static const char *const keys[] = { "cn_pattern", "allowed", "required", "forbidden" };
    struct ca_profile *p = l->p;
    bool required[CAI_ATTR__COUNT] = { false };
    if (!json_is_object(v)) {
        return bad(l, "subject", "must be an object");
    }
    if (check_keys(l, v, "subject", keys, ARRAY_LEN(keys)) != 0) {
        return -1;
    }
    json_t *cn = json_object_get(v, "cn_pattern");
    if (cn == NULL) {
        return bad(l, "subject.cn_pattern", "is required");
    }
    if (compile_pattern(l, "subject.cn_pattern", cn, &p->cn_pattern, &p->cn_re) != 0) {
        return -1;
    }
    p->cn_re_ok = true;
    json_t *a = json_object_get(v, "allowed");
    if (a && attr_list(l, "subject.allowed", a, p->attr_allowed) != 0) {
        return -1;
    }
    a = json_object_get(v, "required");
    if (a && attr_list(l, "subject.required", a, required) != 0) {
        return -1;
    }
    a = json_object_get(v, "forbidden");
    if (a && attr_list(l, "subject.forbidden", a, p->attr_forbidden) != 0) {
        return -1;
    }
    if (p->attr_forbidden[CAI_ATTR_CN]) {
        return bad(l, "subject.forbidden", "cannot forbid CN: every certificate has one");
    }
    p->attr_allowed[CAI_ATTR_CN] = true;
    required[CAI_ATTR_CN] = true;
    for (int i = 0; i < CAI_ATTR__COUNT; i++) {
        if (p->attr_allowed[i] && p->attr_forbidden[i]) {
            return bad(l, "subject.forbidden", "'%s' is also in subject.allowed",
                       cai_attrs[i].name);
        }
        if (required[i] && !p->attr_allowed[i]) {
            return bad(l, "subject.required", "'%s' is not in subject.allowed", cai_attrs[i].name);
        }
        p->attr_required[i] = required[i];
    }
    return 0;
}

static int load_san(struct loader *l, json_t *v)
{
    static const char *const keys[] = { "dns", "uri", "email", "ip", "max" };
    struct ca_profile *p = l->p;
    if (json_is_null(v)) {
        return 0;
    }
    if (!json_is_object(v)) {
        return bad(l, "san", "must be null (no SANs) or an object of patterns");
    }
    if (check_keys(l, v, "san", keys, ARRAY_LEN(keys)) != 0) {
        return -1;
    }
    bool any = false;
    for (int i = 0; i < CAI_SAN__COUNT; i++) {
        json_t *pat = json_object_get(v, cai_san_names[i]);
        if (pat == NULL) {
            continue;
        }
        char key[32];
        snprintf(key, sizeof(key), "san.%s", cai_san_names[i]);
        if (compile_pattern(l, key, pat, &p->san_pattern[i], &p->san_re[i]) != 0) {
            return -1;
        }
        p->san_allowed[i] = true;
        any = true;
    }
    if (!any) {
        return bad(l, "san",
                   "allows no type: use null for no SANs, or give dns, uri, email or "
                   "ip patterns");
    }
    p->san_max = PROFILE_SAN_DEFAULT;
    json_t *max = json_object_get(v, "max");
    if (max) {
        if (!json_is_integer(max) || json_integer_value(max) < 1 ||
            json_integer_value(max) > PROFILE_SAN_MAX) {
            return bad(l, "san.max", "must be an integer from 1 to 64");
        }
        p->san_max = (size_t)json_integer_value(max);
    }
    return 0;
}

/* A URL a relying party fetches without TLS (RFC 5280 §4.2.1.13, §4.2.2.1; RFC 5019 §5): http://
 * HOST[:PORT][/PATH], 1..PROFILE_URL_MAX characters of RFC 3986 (no spaces, quotes, controls,
 * fragments or user information). */
static bool url_ok(const char *u, const char **why)
{
    size_t n = strlen(u), host;
    if (strncmp(u, "http://", 7) != 0) {
        *why = "must start with http:// (relying parties fetch these without TLS)";
        return false;
    }
    if (n > PROFILE_URL_MAX) {
        *why = "is longer than 512 characters";
        return false;
    }
    host = strcspn(u + 7, "/?:");
    if (host == 0) {
        *why = "has no host";
        return false;
    }
    for (size_t i = 7; i < n; i++) {
        char c = u[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr("-._~/?:[]!$&'()*+,;=%", c) != NULL;
        if (!ok || (c == '%' && (i + 2 >= n || !strchr("0123456789abcdefABCDEF", u[i + 1]) ||
                                 !strchr("0123456789abcdefABCDEF", u[i + 2])))) {
            *why = "has a character a URL may not have (spaces, quotes, '#', '@', controls, a "
                   "malformed %-escape)";
            return false;
        }
    }
    return true;
}

/* An array of 1..PROFILE_URLS_MAX URLs into names (GENERAL_NAMEs of type URI). */
static int url_list(struct loader *l, const char *key, json_t *v, GENERAL_NAMES *names)
{
    size_t i;
    json_t *it;
    if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > PROFILE_URLS_MAX) {
        return bad(l, key, "must be an array of 1 to 4 http:// URLs");
    }
    json_array_foreach(v, i, it)
    {
        const char *u = json_string_value(it), *why = NULL;
        GENERAL_NAME *gn;
        ASN1_IA5STRING *s;
        if (u == NULL) {
            return bad(l, key, "must be an array of 1 to 4 http:// URLs");
        }
        if (!url_ok(u, &why)) {
            return bad(l, key, "'%s' %s", u, why);
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(json_string_value(json_array_get(v, k)), u) == 0) {
                return bad(l, key, "lists '%s' twice", u);
            }
        }
        if ((gn = GENERAL_NAME_new()) == NULL || (s = ASN1_IA5STRING_new()) == NULL ||
            ASN1_STRING_set(s, u, (int)strlen(u)) != 1) {
            GENERAL_NAME_free(gn);
            BUG_ON(1); /* out of memory */
        }
        GENERAL_NAME_set0_value(gn, GEN_URI, s);
        if (sk_GENERAL_NAME_push(names, gn) <= 0) {
            GENERAL_NAME_free(gn);
            BUG_ON(1);
        }
    }
    return 0;
}

/* Appends the DER of the non-critical Extension nid of value to the profile's url_exts. */
static void url_ext_add(struct ca_profile *p, int nid, void *value)
{
    X509_EXTENSION *x = X509V3_EXT_i2d(nid, 0, value);
    unsigned char *der = NULL;
    int len = x ? i2d_X509_EXTENSION(x, &der) : -1;
    BUG_ON(len <= 0);
    p->url_exts = xrealloc(p->url_exts, p->url_exts_len + (size_t)len);
    memcpy(p->url_exts + p->url_exts_len, der, (size_t)len);
    p->url_exts_len += (size_t)len;
    OPENSSL_free(der);
    X509_EXTENSION_free(x);
}

/* crl_distribution_points: one DistributionPoint whose fullName lists the URLs (places of the
 * same CRL); authority_info_access: {"ca_issuers": [...], "ocsp": [...]}. */
static int load_urls(struct loader *l, json_t *root)
{
    static const char *const keys[] = { "ca_issuers", "ocsp" };
    json_t *v;
    int rc = 0;
    if ((v = json_object_get(root, "crl_distribution_points")) != NULL) {
        CRL_DIST_POINTS *cdp = sk_DIST_POINT_new_null();
        DIST_POINT *dp = DIST_POINT_new();
        BUG_ON(cdp == NULL || dp == NULL || (dp->distpoint = DIST_POINT_NAME_new()) == NULL ||
               (dp->distpoint->name.fullname = GENERAL_NAMES_new()) == NULL ||
               sk_DIST_POINT_push(cdp, dp) <= 0);
        dp->distpoint->type = 0;
        rc = url_list(l, "crl_distribution_points", v, dp->distpoint->name.fullname);
        if (rc == 0) {
            url_ext_add(l->p, NID_crl_distribution_points, cdp);
        }
        CRL_DIST_POINTS_free(cdp);
        if (rc != 0) {
            return -1;
        }
    }
    if ((v = json_object_get(root, "authority_info_access")) != NULL) {
        AUTHORITY_INFO_ACCESS *aia = sk_ACCESS_DESCRIPTION_new_null();
        static const struct {
            const char *key, *where;
            int nid;
        } kinds[] = { { "ca_issuers", "authority_info_access.ca_issuers", NID_ad_ca_issuers },
                      { "ocsp", "authority_info_access.ocsp", NID_ad_OCSP } };
        BUG_ON(aia == NULL);
        if (!json_is_object(v) || json_object_size(v) == 0) {
            rc = bad(l, "authority_info_access", "must be an object with ca_issuers and/or ocsp");
        } else {
            rc = check_keys(l, v, "authority_info_access", keys, ARRAY_LEN(keys));
        }
        for (size_t k = 0; rc == 0 && k < ARRAY_LEN(kinds); k++) {
            json_t *list = json_object_get(v, kinds[k].key);
            GENERAL_NAMES *names = list ? GENERAL_NAMES_new() : NULL;
            if (list == NULL) {
                continue;
            }
            BUG_ON(names == NULL);
            rc = url_list(l, kinds[k].where, list, names);
            for (int i = 0; rc == 0 && i < sk_GENERAL_NAME_num(names); i++) {
                ACCESS_DESCRIPTION *ad = ACCESS_DESCRIPTION_new();
                BUG_ON(ad == NULL);
                ad->method = OBJ_nid2obj(kinds[k].nid);
                GENERAL_NAME_free(ad->location);
                ad->location = GENERAL_NAME_dup(sk_GENERAL_NAME_value(names, i));
                BUG_ON(ad->location == NULL || sk_ACCESS_DESCRIPTION_push(aia, ad) <= 0);
            }
            GENERAL_NAMES_free(names);
        }
        if (rc == 0) {
            url_ext_add(l->p, NID_info_access, aia);
        }
        AUTHORITY_INFO_ACCESS_free(aia);
    }
    return rc;
}

static int load_object(struct loader *l, json_t *root)
{
    static const char *const keys[] = {
        "description",          "key_types", "validity_days",
        "backdate_seconds",     "subject",   "san",
        "extended_key_usage",   "jitr",      "crl_distribution_points",
        "authority_info_access", "beyond_ca"
    };
    struct ca_profile *p = l->p;
    int idx[NAMES_MAX];
    size_t n = 0;
    json_t *v;
    if (!json_is_object(root)) {
        return bad(l, "(top level)", "must be a JSON object");
    }
    if (check_keys(l, root, "", keys, ARRAY_LEN(keys)) != 0) {
        return -1;
    }
    if ((v = json_object_get(root, "description")) != NULL) {
        if (!json_is_string(v)) {
            return bad(l, "description", "must be a string");
        }
        p->description = xstrdup(json_string_value(v));
    }

    v = json_object_get(root, "key_types");
    if (load_names(l, "key_types", v, cai_key_type_parse, "key type",
                   "ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096", idx, &n) != 0) {
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        p->key_allowed[idx[k]] = true;
    }

    v = json_object_get(root, "validity_days");
    if (v == NULL || !json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > PROFILE_DAYS_MAX) {
        return bad(l, "validity_days", "is required: an integer from 1 to 36500");
    }
    p->validity_s = (int64_t)json_integer_value(v) * 86400;

    p->backdate_s = 300;
    if ((v = json_object_get(root, "backdate_seconds")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > PROFILE_BACKDATE_MAX) {
            return bad(l, "backdate_seconds", "must be an integer from 0 to 86400");
        }
        p->backdate_s = (int64_t)json_integer_value(v);
    }

    v = json_object_get(root, "subject");
    if (v == NULL) {
        return bad(l, "subject", "is required (at least cn_pattern)");
    }
    if (load_subject(l, v) != 0) {
        return -1;
    }
    if ((v = json_object_get(root, "san")) != NULL && load_san(l, v) != 0) {
        return -1;
    }

    v = json_object_get(root, "extended_key_usage");
    if (load_names(l, "extended_key_usage", v, cai_eku_parse, "usage", "clientAuth, serverAuth",
                   idx, &n) != 0) {
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        BUG_ON(p->eku_n >= CAI_EKU_MAX);
        p->eku[p->eku_n++] = (uint8_t)idx[k];
    }

    if ((v = json_object_get(root, "jitr")) != NULL) {
        if (!json_is_boolean(v)) {
            return bad(l, "jitr", "must be true or false");
        }
        p->jitr = json_is_true(v);
    }
    if ((v = json_object_get(root, "beyond_ca")) != NULL) {
        const char *b = json_string_value(v);
        if (b == NULL || (strcmp(b, "clamp") != 0 && strcmp(b, "refuse") != 0)) {
            return bad(l, "beyond_ca", "must be \"clamp\" or \"refuse\"");
        }
        p->refuse_beyond_ca = strcmp(b, "refuse") == 0;
    }
    return load_urls(l, root);
}

static bool name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 64) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) {
            return false;
        }
    }
    return true;
}

struct ca_profile *ca_profile_load_json(const char *name, const char *origin, const char *json,
                                        size_t len, struct err *e)
{
    struct loader l = { origin, NULL, e };
    json_error_t je;
    json_t *root = NULL;
    if (!name_ok(name)) {
        err_set(e, ERRC_INVALID,
                "profile %s: the name '%s' is not [A-Za-z0-9][A-Za-z0-9._-]*, "
                "at most 64 characters",
                origin, name);
        return NULL;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        err_set(e, ERRC_INVALID, "profile %s: not valid JSON at line %d column %d: %s", origin,
                je.line, je.column, je.text);
        return NULL;
    }
    l.p = xcalloc(1, sizeof(*l.p));
    l.p->name = xstrdup(name);
    if (load_object(&l, root) != 0) {
        ca_profile_free(l.p);
        l.p = NULL;
    }
    json_decref(root);
    return l.p;
}

struct ca_profile *ca_profile_load_file(const char *path, struct err *e)
{
    struct buf text = BUF_INIT;
    struct ca_profile *p = NULL;
    char name[80];
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t blen = strlen(base);
    if (blen <= 5 || strcmp(base + blen - 5, ".json") != 0 || blen - 5 >= sizeof(name)) {
        err_set(e, ERRC_INVALID, "profile %s: the file name must be NAME.json", path);
        return NULL;
    }
    memcpy(name, base, blen - 5);
    name[blen - 5] = '\0';
    if (file_read_all(path, PROFILE_FILE_MAX, &text, e) != 0) {
        err_prefix(e, "profile %s", path);
        goto out;
    }
    p = ca_profile_load_json(name, path, text.data ? text.data : "", text.len, e);
out:
    buf_release(&text);
    return p;
}

void ca_profile_free(struct ca_profile *p)
{
    if (p == NULL) {
        return;
    }
    if (p->cn_re_ok) {
        regfree(&p->cn_re);
    }
    for (int i = 0; i < CAI_SAN__COUNT; i++) {
        if (p->san_pattern[i]) {
            regfree(&p->san_re[i]);
            xfree(p->san_pattern[i]);
        }
    }
    xfree(p->url_exts);
    xfree(p->cn_pattern);
    xfree(p->description);
    xfree(p->name);
    xfree(p);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

struct ca_profiles *ca_profiles_load_dir(const char *dir, struct err *e)
{
    struct ca_profiles *ps = xcalloc(1, sizeof(*ps));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *d = opendir(dir);
    if (d == NULL) {
        err_errno(e, ERRC_NOT_FOUND, "cannot open the profile directory '%s'", dir);
        goto fail;
    }
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len <= 5 || strcmp(de->d_name + len - 5, ".json") != 0) {
            continue;
        }
        names = xgrow(names, sizeof(*names), n + 1, &cap);
        names[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (n == 0) {
        err_set(e, ERRC_NOT_FOUND, "no profile (*.json) in '%s'", dir);
        goto fail;
    }
    qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; i < n; i++) {
        struct buf path = BUF_INIT;
        buf_addf(&path, "%s/%s", dir, names[i]);
        struct ca_profile *p = ca_profile_load_file(path.data, e);
        buf_release(&path);
        if (p == NULL) {
            goto fail;
        }
        ps->v = xgrow(ps->v, sizeof(*ps->v), ps->n + 1, &ps->cap);
        ps->v[ps->n++] = p;
    }
    for (size_t i = 0; i < n; i++) {
        xfree(names[i]);
    }
    xfree(names);
    return ps;
fail:
    for (size_t i = 0; i < n; i++) {
        xfree(names[i]);
    }
    xfree(names);
    ca_profiles_free(ps);
    return NULL;
}

void ca_profiles_free(struct ca_profiles *ps)
{
    if (ps == NULL) {
        return;
    }
    for (size_t i = 0; i < ps->n; i++) {
        ca_profile_free(ps->v[i]);
    }
    xfree(ps->v);
    xfree(ps);
}

const struct ca_profile *ca_profiles_find(const struct ca_profiles *ps, const char *name)
{
    for (size_t i = 0; ps && name && i < ps->n; i++) {
        if (strcmp(ps->v[i]->name, name) == 0) {
            return ps->v[i];
        }
    }
    return NULL;
}

size_t ca_profiles_count(const struct ca_profiles *ps)
{
    return ps ? ps->n : 0;
}

const struct ca_profile *ca_profiles_at(const struct ca_profiles *ps, size_t i)
{
    return ps && i < ps->n ? ps->v[i] : NULL;
}

const char *ca_profile_name(const struct ca_profile *p)
{
    return p->name;
}

const char *ca_profile_description(const struct ca_profile *p)
{
    return p->description ? p->description : "";
}

bool ca_profile_allows_key(const struct ca_profile *p, enum ca_key_type t)
{
    return (unsigned)t < CA_KEY__COUNT && p->key_allowed[t];
}

bool ca_profile_allows_jitr(const struct ca_profile *p)
{
    return p->jitr;
}

bool ca_profile_subject_requires(const struct ca_profile *p, const char *attr)
{
    int i = cai_attr_parse(attr);
    return i >= 0 && (i == CAI_ATTR_CN || p->attr_required[i]);
}

bool ca_profile_subject_allows(const struct ca_profile *p, const char *attr)
{
    int i = cai_attr_parse(attr);
    return i >= 0 && (i == CAI_ATTR_CN || p->attr_allowed[i]);
}

bool ca_profile_cn_ok(const struct ca_profile *p, const char *cn)
{
    return p->cn_re_ok && regexec(&p->cn_re, cn, 0, NULL, 0) == 0;
}

int64_t ca_profile_validity_seconds(const struct ca_profile *p)
{
    return p->validity_s;
}

int64_t ca_profile_backdate_seconds(const struct ca_profile *p)
{
    return p->backdate_s;
}
