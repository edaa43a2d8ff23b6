/*
 * SigV4 header signing (AWS General Reference, "Create a signed AWS API request";
 * docs/aws-iot.md, "SigV4"). We sign ourselves because Debian 12's libcurl 7.88.1
 * CURLOPT_AWS_SIGV4 neither sorts nor re-encodes the query, does not encode the path, and signs
 * headers it then does not send (docs/aws-iot.md, "Why we sign ourselves"); see
 * docs/aws-signing.md.
 *
 * The canonical request is built exactly as botocore's SigV4Auth builds it, the reference the
 * AWS test suite and our cross-check run against:
 *   - URI: botocore's remove_dot_segments (RFC 3986 §5.2.4 plus collapsing empty segments; a
 *     trailing '/' survives only if a segment does), then quote(path, safe='/~'). Both steps are
 *     skipped for S3 (flags), whose canonical URI is the wire path.
 *   - query: split on '&' (empty parts dropped), name/value split at the first '=', each
 *     percent-decoded and re-encoded with the unreserved set, sorted by name then value.
 *     botocore does not re-encode (its serializer already did); re-encoding makes raw input such
 *     as "a:b" or "%3a" canonical, and is the identity on botocore's output.
 *   - headers: lower-cased names, values trimmed with runs of SP/HTAB collapsed, repeated names
 *     joined with ',' in input order, sorted by name; botocore's unsigned list skipped.
 * Strictness is on purpose: CR/LF in values and signer-owned headers in the input are errors,
 * so the transport cannot send something other than what was signed (curl's #11664 class).
 */
#include "aws/sigv4.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/util.h"

#define SHA256_LEN 32

/* Hop-by-hop and proxy-rewritten headers botocore never signs (auth.py
 * SIGNED_HEADERS_BLACKLIST); keep in sync with docs/aws-signing.md. */
static const char *const unsigned_headers[] = {
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amzn-trace-id",
};

/* Headers the signer writes itself; a caller copy would be sent twice or disagree. */
static const char *const signer_headers[] = {
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
};

struct qparam {
    char *name; /* encoded, NUL-terminated */
    char *value;
};

struct chdr {
    char *name; /* lower-case, owned */
    struct buf value;
};

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 9110 §5.6.2 tchar */
static bool is_tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_token(const char *s)
{
    if (s == NULL || *s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (!is_tchar((unsigned char)*s)) {
            return false;
        }
    }
    return true;
}

/* Credential-scope components: they sit between '/' in the scope, so [a-z0-9-] only. */
static bool is_scope_part(const char *s)
{
    size_t n = 0;
    if (s == NULL) {
        return false;
    }
    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return n > 0 && n <= 64;
}

void aws_uri_encode(struct buf *out, const char *s, size_t len, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    buf_reserve(out, len);
    out->data[out->len] = '\0';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            buf_addch(out, (char)c);
        } else {
            char esc[3] = { '%', hex[c >> 4], hex[c & 15] };
            buf_add(out, esc, sizeof(esc));
        }
    }
}

/* botocore utils.remove_dot_segments(), which also drops empty segments. */
static void normalize_path(const char *path, size_t len, struct buf *out)
{
    struct seg {
        const char *p;
        size_t n;
    } *segs = NULL;
    size_t nsegs = 0, cap = 0;
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && path[j] != '/') {
            j++;
        }
        size_t n = j - i;
        if (n == 2 && path[i] == '.' && path[i + 1] == '.') {
            if (nsegs > 0) {
                nsegs--;
            }
        } else if (n > 0 && !(n == 1 && path[i] == '.')) {
            segs = xgrow(segs, sizeof(*segs), nsegs + 1, &cap);
            segs[nsegs].p = path + i;
            segs[nsegs].n = n;
            nsegs++;
        }
        i = j + 1;
    }
    buf_addch(out, '/');
    for (size_t k = 0; k < nsegs; k++) {
        if (k > 0) {
            buf_addch(out, '/');
        }
        buf_add(out, segs[k].p, segs[k].n);
    }
    if (nsegs > 0 && path[len - 1] == '/') {
        buf_addch(out, '/');
    }
    xfree(segs);
}

static int canonical_uri(const char *path, unsigned flags, struct buf *out, struct err *e)
{
    struct buf norm = BUF_INIT;
    size_t len;
    if (path == NULL || *path == '\0') {
        path = "/";
    }
    len = strlen(path);
    if (path[0] != '/') {
        return err_set(e, ERRC_INVALID, "request path must start with '/'");
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c < 0x20 || c == 0x7f) {
            return err_set(e, ERRC_INVALID, "request path: control character at offset %zu", i);
        }
        if (c == '?' || c == '#') {
            return err_set(e, ERRC_INVALID,
                           "request path: '%c' at offset %zu (pass the query "
                           "separately)",
                           c, i);
        }
        if (c == '%' && (i + 2 >= len || hex_digit_value((unsigned char)path[i + 1]) < 0 ||
                         hex_digit_value((unsigned char)path[i + 2]) < 0)) {
            return err_set(e, ERRC_INVALID, "request path: bad percent-escape at offset %zu", i);
        }
    }
    if (flags & AWS_SIGV4_NO_PATH_NORMALIZE) {
        buf_add(&norm, path, len);
    } else {
        normalize_path(path, len, &norm);
    }
    if (flags & AWS_SIGV4_NO_PATH_ENCODE) {
        buf_add(out, norm.data, norm.len);
    } else {
        aws_uri_encode(out, norm.data, norm.len, true);
    }
    buf_release(&norm);
    return 0;
}

static int qparam_cmp(const void *a, const void *b)
{
    const struct qparam *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : strcmp(x->value, y->value);
}

static int canonical_query(const char *query, struct buf *out, struct err *e)
{
    struct qparam *ps = NULL;
    size_t np = 0, cap = 0;
    struct buf raw = BUF_INIT, enc = BUF_INIT;
    int rc = -1;
    const char *p = query != NULL ? query : "";
    while (*p != '\0') {
        const char *amp = strchr(p, '&');
        size_t n = amp != NULL ? (size_t)(amp - p) : strlen(p);
        if (n > 0) {
            const char *eq = memchr(p, '=', n);
            size_t kn = eq != NULL ? (size_t)(eq - p) : n;
            ps = xgrow(ps, sizeof(*ps), np + 1, &cap);
            ps[np].name = ps[np].value = NULL;
            np++;
            for (int part = 0; part < 2; part++) {
                const char *s = part == 0 ? p : (eq != NULL ? eq + 1 : "");
                size_t sn = part == 0 ? kn : (eq != NULL ? n - kn - 1 : 0);
                buf_reset(&raw);
                buf_reset(&enc);
                if (pct_decode(&raw, s, sn) != 0) {
                    err_set(e, ERRC_INVALID, "query string: bad percent-escape");
                    goto out;
                }
                aws_uri_encode(&enc, raw.data != NULL ? raw.data : "", raw.len, false);
                if (part == 0) {
                    ps[np - 1].name = xstrdup(buf_cstr(&enc));
                } else {
                    ps[np - 1].value = xstrdup(buf_cstr(&enc));
                }
            }
        }
        p += n;
        if (*p == '&') {
            p++;
        }
    }
    if (np > 1) {
        qsort(ps, np, sizeof(*ps), qparam_cmp);
    }
    for (size_t i = 0; i < np; i++) {
        buf_addf(out, "%s%s=%s", i > 0 ? "&" : "", ps[i].name, ps[i].value);
    }
    rc = 0;
out:
    for (size_t i = 0; i < np; i++) {
        xfree(ps[i].name);
        xfree(ps[i].value);
    }
    xfree(ps);
    buf_release(&raw);
    buf_release(&enc);
    return rc;
}

static bool in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(name, list[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Appends value trimmed, with runs of SP/HTAB collapsed to one SP ("Trimall"). */
static void add_trimall(struct buf *out, const char *v)
{
    bool pending_space = false, any = false;
    for (; *v != '\0'; v++) {
        if (*v == ' ' || *v == '\t') {
            pending_space = any;
            continue;
        }
        if (pending_space) {
            buf_addch(out, ' ');
            pending_space = false;
        }
        buf_addch(out, *v);
        any = true;
    }
}

static int chdr_cmp(const void *a, const void *b)
{
    const struct chdr *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static struct chdr *chdr_find_or_add(struct chdr **hs, size_t *nh, size_t *cap, const char *lname,
                                     bool *added)
{
    for (size_t i = 0; i < *nh; i++) {
        if (strcmp((*hs)[i].name, lname) == 0) {
            *added = false;
            return &(*hs)[i];
        }
    }
    *hs = xgrow(*hs, sizeof(**hs), *nh + 1, cap);
    (*hs)[*nh].name = xstrdup(lname);
    buf_init(&(*hs)[*nh].value);
    *added = true;
    return &(*hs)[(*nh)++];
}

static int check_header_value(const char *name, const char *v, struct err *e)
{
    for (const char *p = v; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return err_set(e, ERRC_INVALID, "header '%s': control character in value", name);
        }
    }
    return 0;
}

/* Collects the headers to sign into *hs (sorted), adding the signer's own. */
static int collect_headers(const struct aws_sigv4_req *req, const char *amz_date, const char *token,
                           const char *content_sha256, struct chdr **hs, size_t *nh, struct err *e)
{
    size_t cap = 0;
    int nhost = 0;
    char lname[128];
    bool added;
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *name = req->headers[i].name, *value = req->headers[i].value;
        size_t n;
        if (!is_token(name)) {
            return err_set(e, ERRC_INVALID, "header %zu: name is empty or not a token", i);
        }
        n = strlen(name);
        if (n >= sizeof(lname)) {
            return err_set(e, ERRC_INVALID, "header %zu: name longer than %zu bytes", i,
                           sizeof(lname) - 1);
        }
        for (size_t k = 0; k <= n; k++) {
            char c = name[k];
            lname[k] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
        }
        if (value == NULL) {
            return err_set(e, ERRC_INVALID, "header '%s': no value", name);
        }
        if (check_header_value(name, value, e) != 0) {
            return -1;
        }
        if (in_list(lname, signer_headers, ARRAY_LEN(signer_headers))) {
            return err_set(e, ERRC_INVALID,
                           "header '%s' is added by the signer; remove it from "
                           "the request headers",
                           name);
        }
        if (in_list(lname, unsigned_headers, ARRAY_LEN(unsigned_headers))) {
            continue;
        }
        if (strcmp(lname, "host") == 0) {
            nhost++;
        }
        struct chdr *h = chdr_find_or_add(hs, nh, &cap, lname, &added);
        if (!added) {
            buf_addch(&h->value, ',');
        }
        add_trimall(&h->value, value);
    }
    if (nhost == 0) {
        return err_set(e, ERRC_INVALID, "no Host header to sign");
    }
    if (nhost > 1) {
        return err_set(e, ERRC_INVALID, "more than one Host header");
    }
    struct chdr *h = chdr_find_or_add(hs, nh, &cap, "x-amz-date", &added);
    buf_addstr(&h->value, amz_date);
    if (token != NULL) {
        h = chdr_find_or_add(hs, nh, &cap, "x-amz-security-token", &added);
        buf_addstr(&h->value, token);
    }
    if (content_sha256 != NULL) {
        h = chdr_find_or_add(hs, nh, &cap, "x-amz-content-sha256", &added);
        buf_addstr(&h->value, content_sha256);
    }
    qsort(*hs, *nh, sizeof(**hs), chdr_cmp);
    return 0;
}

static int hmac_sha256(EVP_MAC *mac, const uint8_t *key, size_t klen, const void *msg, size_t mlen,
                       uint8_t out[SHA256_LEN], struct err *e)
{
    static char digest[] = "SHA256";
    OSSL_PARAM params[2];
    EVP_MAC_CTX *ctx = NULL;
    size_t outl = 0;
    int rc = -1;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    if ((ctx = EVP_MAC_CTX_new(mac)) == NULL) {
        err_openssl(e, ERRC_INTERNAL, "HMAC-SHA256: EVP_MAC_CTX_new failed");
        goto out;
    }
    if (EVP_MAC_init(ctx, key, klen, params) != 1 || EVP_MAC_update(ctx, msg, mlen) != 1 ||
        EVP_MAC_final(ctx, out, &outl, SHA256_LEN) != 1 || outl != SHA256_LEN) {
        err_openssl(e, ERRC_INTERNAL, "HMAC-SHA256 failed");
        goto out;
    }
    rc = 0;
out:
    EVP_MAC_CTX_free(ctx);
    return rc;
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request"),
 * then the signature over string_to_sign. Every intermediate key is cleansed. */
static int compute_signature(const char *secret, const char *date8, const char *region,
                             const char *service, const char *sts, char sig_hex[65], struct err *e)
{
    EVP_MAC *mac = NULL;
    size_t slen = strlen(secret);
    uint8_t *k0 = xmalloc(slen + 4);
    uint8_t k[SHA256_LEN], sig[SHA256_LEN];
    const char *steps[4] = { date8, region, service, "aws4_request" };
    int rc = -1;
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, slen);
    if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL) {
        err_openssl(e, ERRC_INTERNAL, "EVP_MAC_fetch(HMAC) failed");
        goto out;
    }
    if (hmac_sha256(mac, k0, slen + 4, steps[0], strlen(steps[0]), k, e) != 0) {
        goto out;
    }
    for (size_t i = 1; i < ARRAY_LEN(steps); i++) {
        if (hmac_sha256(mac, k, sizeof(k), steps[i], strlen(steps[i]), k, e) != 0) {
            goto out;
        }
    }
    if (hmac_sha256(mac, k, sizeof(k), sts, strlen(sts), sig, e) != 0) {
        goto out;
    }
    hex_encode(sig, sizeof(sig), sig_hex);
    rc = 0;
out:
    OPENSSL_cleanse(k0, slen + 4);
    OPENSSL_cleanse(k, sizeof(k));
    xfree(k0);
    EVP_MAC_free(mac);
    return rc;
}

static int check_payload_hash(const char *h, struct err *e)
{
    if (strcmp(h, "UNSIGNED-PAYLOAD") == 0) {
        return 0;
    }
    if (strlen(h) != 64 || !hex_is_lower(h, 64)) {
        return err_set(e, ERRC_INVALID,
                       "payload hash must be 64 lower-case hex digits or "
                       "UNSIGNED-PAYLOAD");
    }
    return 0;
}

void aws_sigv4_out_init(struct aws_sigv4_out *out)
{
    memset(out, 0, sizeof(*out));
}

void aws_sigv4_out_release(struct aws_sigv4_out *out)
{
    xfree(out->authorization);
    xfree_secret(out->security_token);
    xfree(out->signed_headers);
    xfree_secret(out->canonical_request);
    xfree(out->string_to_sign);
    aws_sigv4_out_init(out);
}

int aws_sigv4_sign(const struct aws_sigv4_req *req, const struct aws_creds *creds,
                   struct aws_sigv4_out *out, struct err *e)
{
    struct chdr *hs = NULL;
    size_t nh = 0;
    struct buf creq = BUF_INIT, sts = BUF_INIT, sh = BUF_INIT, auth = BUF_INIT;
    const char *service = req->service != NULL ? req->service : AWS_SIGV4_DEFAULT_SERVICE;
    const char *token = NULL;
    char date8[9], creq_hash[65];
    struct tm tm;
    int rc = -1;

    aws_sigv4_out_release(out);
    if (!is_token(req->method)) {
        return err_set(e, ERRC_INVALID, "request method is empty or not a token");
    }
    if (!is_scope_part(req->region)) {
        return err_set(e, ERRC_INVALID, "region must be 1-64 characters of [a-z0-9-]");
    }
    if (!is_scope_part(service)) {
        return err_set(e, ERRC_INVALID, "service must be 1-64 characters of [a-z0-9-]");
    }
    if (creds == NULL || creds->access_key_id == NULL || creds->access_key_id[0] == '\0' ||
        creds->secret_access_key == NULL || creds->secret_access_key[0] == '\0') {
        return err_set(e, ERRC_INVALID, "credentials without access key id or secret key");
    }
    if (strchr(creds->access_key_id, '/') != NULL || strchr(creds->access_key_id, ' ') != NULL ||
        strchr(creds->access_key_id, ',') != NULL) {
        return err_set(e, ERRC_INVALID, "access key id contains '/', ',' or a space");
    }
    if (creds->session_token != NULL && creds->session_token[0] != '\0') {
        token = creds->session_token;
        if (check_header_value("X-Amz-Security-Token", token, e) != 0) {
            return -1;
        }
    }
    if (req->payload == NULL && req->payload_len > 0 && req->payload_hash == NULL) {
        return err_set(e, ERRC_INVALID, "payload length %zu without payload bytes",
                       req->payload_len);
    }
    if (gmtime_r(&req->when, &tm) == NULL || tm.tm_year < 70 || tm.tm_year > 9999 - 1900) {
        return err_set(e, ERRC_INVALID, "signing time out of range");
    }
    if (strftime(out->amz_date, sizeof(out->amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16) {
        return err_set(e, ERRC_INTERNAL, "formatting X-Amz-Date failed");
    }
    memcpy(date8, out->amz_date, 8);
    date8[8] = '\0';

    if (req->payload_hash != NULL) {
        if (check_payload_hash(req->payload_hash, e) != 0) {
            goto out;
        }
        snprintf(out->payload_hash, sizeof(out->payload_hash), "%s", req->payload_hash);
    } else {
        sha256_hex(req->payload != NULL ? (const void *)req->payload : "", req->payload_len,
                   out->payload_hash);
    }

    /* Canonical request: METHOD \n URI \n QUERY \n HEADERS \n SIGNED \n PAYLOAD-HASH */
    buf_addstr(&creq, req->method);
    buf_addch(&creq, '\n');
    if (canonical_uri(req->path, req->flags, &creq, e) != 0) {
        goto out;
    }
    buf_addch(&creq, '\n');
    if (canonical_query(req->query, &creq, e) != 0) {
        goto out;
    }
    buf_addch(&creq, '\n');
    if (collect_headers(req, out->amz_date, token,
                        (req->flags & AWS_SIGV4_CONTENT_SHA256) ? out->payload_hash : NULL, &hs,
                        &nh, e) != 0) {
        goto out;
    }
    for (size_t i = 0; i < nh; i++) {
        buf_addf(&creq, "%s:%s\n", hs[i].name, buf_cstr(&hs[i].value));
        buf_addf(&sh, "%s%s", i > 0 ? ";" : "", hs[i].name);
    }
    buf_addf(&creq, "\n%s\n%s", buf_cstr(&sh), out->payload_hash);

    sha256_hex(creq.data, creq.len, creq_hash);
    buf_addf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", out->amz_date, date8,
             req->region, service, creq_hash);
    if (compute_signature(creds->secret_access_key, date8, req->region, service, sts.data,
                          out->signature, e) != 0) {
        goto out;
    }
    buf_addf(&auth,
             "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, "
             "Signature=%s",
             creds->access_key_id, date8, req->region, service, buf_cstr(&sh), out->signature);

    out->authorization = buf_detach(&auth, NULL);
    out->signed_headers = buf_detach(&sh, NULL);
    out->canonical_request = buf_detach(&creq, NULL);
    out->string_to_sign = buf_detach(&sts, NULL);
    out->add[out->nadd++] = (struct aws_header){ "X-Amz-Date", out->amz_date };
    if (token != NULL) {
        out->security_token = xstrdup(token);
        out->add[out->nadd++] = (struct aws_header){ "X-Amz-Security-Token", out->security_token };
    }
    if (req->flags & AWS_SIGV4_CONTENT_SHA256) {
        out->add[out->nadd++] = (struct aws_header){ "X-Amz-Content-Sha256", out->payload_hash };
    }
    out->add[out->nadd++] = (struct aws_header){ "Authorization", out->authorization };
    rc = 0;
out:
    for (size_t i = 0; i < nh; i++) {
        xfree(hs[i].name);
        buf_release_secret(&hs[i].value);
    }
    xfree(hs);
    buf_release_secret(&creq);
    buf_release(&sts);
    buf_release(&sh);
    buf_release(&auth);
    if (rc != 0) {
        aws_sigv4_out_release(out);
    }
    return rc;
}

int aws_sigv4_sign_wire(const struct aws_sigv4_req *req, const struct aws_creds *creds,
                        struct aws_sigv4_out *out, struct aws_header *wire, size_t *nwire,
                        struct err *e)
{
    size_t n = 0;
    if (aws_sigv4_sign(req, creds, out, e) != 0) {
        return -1;
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        wire[n++] = req->headers[i];
    }
    for (size_t i = 0; i < out->nadd; i++) {
        wire[n++] = out->add[i];
    }
    *nwire = n;
    return 0;
}
