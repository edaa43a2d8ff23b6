/*
 * Request bodies to CSRs: pure, no I/O, so tests/fuzz/fuzz_http.c drives it directly. Sizes are
 * capped before anything is allocated (the body by httpd's max_body, a CSR by CA_CSR_MAX, the
 * JSON depth by api_json_depth_check before Jansson sees it). JSON comes through Jansson with
 * JSON_REJECT_DUPLICATES; unknown keys are refused so a typo ("profil") is not silently ignored.
 */
#include <ctype.h>
#include <jansson.h>
#include <string.h>

#include "ca/issue.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/daemon.h"

void api_media_type(const char *ctype, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    if (ctype == NULL || cap == 0) {
        return;
    }
    while (*ctype == ' ' || *ctype == '\t') {
        ctype++;
    }
    for (; *ctype && *ctype != ';' && *ctype != ' ' && *ctype != '\t'; ctype++) {
        if (n + 1 >= cap) {
            out[0] = '\0';
            return;
        }
        out[n++] = (char)tolower((unsigned char)*ctype);
    }
    out[n] = '\0';
}

bool api_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > API_NAME_MAX || !isalnum((unsigned char)s[0])) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-') {
            return false;
        }
    }
    return true;
}

int api_json_depth_check(const uint8_t *body, size_t len, int max, struct err *e)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = body[i];
        if (in_str) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = false;
            }
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max) {
                return err_set(e, ERRC_INVALID, "JSON nested deeper than %d levels", max);
            }
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return 0;
}

void api_csr_req_release(struct api_csr_req *r)
{
    buf_release(&r->csr);
}

static bool looks_like_base64(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        if (!(isalnum(c) || c == '+' || c == '/' || c == '=' || c == '\r' || c == '\n' ||
              c == ' ' || c == '\t')) {
            return false;
        }
    }
    return len > 0;
}

/* A CSR given as text: PEM as is, else base64 of DER. */
static int csr_from_text(const char *s, size_t len, struct buf *out, struct err *e)
{
    if (len > CA_CSR_MAX * 2) {
        return err_set(e, ERRC_TOO_LARGE, "the CSR is larger than %d bytes", CA_CSR_MAX);
    }
    if (memmem(s, len, "-----BEGIN", 10) != NULL) {
        buf_add(out, s, len);
        return 0;
    }
    if (!looks_like_base64((const uint8_t *)s, len) || base64_decode(out, s, len) != 0 ||
        out->len == 0) {
        buf_reset(out);
        return err_set(e, ERRC_INVALID, "csr is neither PEM nor base64 of a DER CSR");
    }
    return 0;
}

static int name_field(json_t *v, const char *key, char *out, struct err *e)
{
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (!json_is_string(v)) {
        return err_set(e, ERRC_INVALID, "'%s' must be a string", key);
    }
    if (strlen(json_string_value(v)) != json_string_length(v) ||
        !api_name_ok(json_string_value(v))) {
        return err_set(e, ERRC_INVALID, "'%s' is not a valid name", key);
    }
    snprintf(out, API_NAME_MAX + 1, "%s", json_string_value(v));
    return 0;
}

int api_renews_parse(const char *v, size_t len, char *out, struct err *e)
{
    out[0] = '\0';
    if (len == 0 || (len > 40 && len != 64) || strlen(v) != len) {
        return err_set(e, ERRC_INVALID,
                       "'renews' must be the serial (1 to 40 hex digits) or the certificateId "
                       "(64 hex digits) of the certificate this one renews");
    }
    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        if (c >= 'A' && c <= 'F') {
            c = (char)(c - 'A' + 'a');
        }
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            out[0] = '\0';
            return err_set(e, ERRC_INVALID, "'renews' must be hex digits");
        }
        out[i] = c;
    }
    out[len] = '\0';
    return 0;
}

/* One {"csr","profile","ca","renews"[,"id"]} object into out. */
static int csr_object(json_t *o, bool with_id, struct api_csr_req *out, struct err *e)
{
    const char *key;
    json_t *v;
    if (!json_is_object(o)) {
        return err_set(e, ERRC_INVALID, "a request must be a JSON object");
    }
    if (with_id && (v = json_object_get(o, "id")) != NULL) {
        if (!json_is_string(v) || json_string_length(v) > API_NAME_MAX * 2 ||
            strlen(json_string_value(v)) != json_string_length(v)) {
            return err_set(e, ERRC_INVALID, "'id' must be a string of at most %d bytes",
                           API_NAME_MAX * 2);
        }
        snprintf(out->id, sizeof(out->id), "%s", json_string_value(v));
    }
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, "csr") != 0 && strcmp(key, "profile") != 0 && strcmp(key, "ca") != 0 &&
            strcmp(key, "renews") != 0 && !(with_id && strcmp(key, "id") == 0)) {
            return err_set(e, ERRC_INVALID, "unknown key '%.64s'", key);
        }
    }
    v = json_object_get(o, "csr");
    if (!json_is_string(v) || json_string_length(v) == 0) {
        return err_set(e, ERRC_INVALID, "'csr' is required and must be a string");
    }
    if (name_field(json_object_get(o, "profile"), "profile", out->profile, e) != 0 ||
        name_field(json_object_get(o, "ca"), "ca", out->ca, e) != 0) {
        return -1;
    }
    json_t *rn = json_object_get(o, "renews");
    if (rn != NULL && !json_is_null(rn)) {
        if (!json_is_string(rn)) {
            return err_set(e, ERRC_INVALID, "'renews' must be a string");
        }
        if (api_renews_parse(json_string_value(rn), json_string_length(rn), out->renews, e) != 0) {
            return -1;
        }
    }
    return csr_from_text(json_string_value(v), json_string_length(v), &out->csr, e);
}

static json_t *json_body(const uint8_t *body, size_t len, int max_depth, struct err *e)
{
    json_error_t jerr;
    if (api_json_depth_check(body, len, max_depth, e) != 0) {
        return NULL;
    }
    json_t *root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        err_set(e, ERRC_INVALID, "the body is not valid JSON: %s at line %d column %d", jerr.text,
                jerr.line, jerr.column);
    }
    return root;
}

int api_parse_sign(const char *media, const uint8_t *body, size_t len, int max_depth,
                   struct api_csr_req *out, bool *bad_type, struct err *e)
{
    *bad_type = false;
    if (strcmp(media, "application/json") == 0) {
        json_t *root = json_body(body, len, max_depth, e);
        if (root == NULL) {
            return -1;
        }
        int rc = csr_object(root, false, out, e);
        json_decref(root);
        return rc;
    }
    if (strcmp(media, "application/pkcs10") == 0) {
        if (len > 0 && body[0] == 0x30) {
            buf_add(&out->csr, body, len);
            return 0;
        }
        return csr_from_text((const char *)body, len, &out->csr, e);
    }
    if (strcmp(media, "application/x-pem-file") == 0 || strcmp(media, "application/pem") == 0 ||
        strcmp(media, "text/plain") == 0) {
        if (memmem(body, len, "-----BEGIN", 10) == NULL) {
            return err_set(e, ERRC_INVALID, "the body is not a PEM CSR");
        }
        buf_add(&out->csr, body, len);
        return 0;
    }
    *bad_type = true;
    return err_set(e, ERRC_INVALID,
                   "unsupported content type '%s': use application/pkcs10 (DER), "
                   "application/x-pem-file (PEM) or application/json",
                   *media ? media : "(none)");
}

int api_parse_batch(const uint8_t *body, size_t len, int max_depth, size_t max_items,
                    struct api_csr_req **items, size_t *n, struct err *e)
{
    const char *key;
    json_t *v;
    json_t *reqs;
    json_t *root = json_body(body, len, max_depth, e);
    *items = NULL;
    *n = 0;
    if (root == NULL) {
        return -1;
    }
    if (!json_is_object(root)) {
        err_set(e, ERRC_INVALID, "the body must be a JSON object {\"requests\":[...]}");
        goto fail;
    }
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "requests") != 0) {
            err_set(e, ERRC_INVALID, "unknown key '%.64s'", key);
            goto fail;
        }
    }
    reqs = json_object_get(root, "requests");
    if (!json_is_array(reqs) || json_array_size(reqs) == 0) {
        err_set(e, ERRC_INVALID, "'requests' must be a non-empty array");
        goto fail;
    }
    if (json_array_size(reqs) > max_items) {
        err_set(e, ERRC_TOO_LARGE, "a batch holds at most %zu requests, not %zu", max_items,
                json_array_size(reqs));
        goto fail;
    }
    *n = json_array_size(reqs);
    *items = xcalloc(*n, sizeof(**items));
    for (size_t i = 0; i < *n; i++) {
        if (csr_object(json_array_get(reqs, i), true, &(*items)[i], &(*items)[i].err) != 0) {
            buf_release(&(*items)[i].csr);
        }
    }
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    return -1;
}

void api_batch_free(struct api_csr_req *items, size_t n)
{
    for (size_t i = 0; items && i < n; i++) {
        api_csr_req_release(&items[i]);
    }
    xfree(items);
}

int api_parse_est_csr(const char *media, const uint8_t *body, size_t len, struct buf *der,
                      bool *bad_type, struct err *e)
{
    *bad_type = false;
    if (strcmp(media, "application/pkcs10") != 0) {
        *bad_type = true;
        return err_set(e, ERRC_INVALID,
                       "unsupported content type '%s': EST takes application/pkcs10 (base64)",
                       *media ? media : "(none)");
    }
    if (len > CA_CSR_MAX * 2) {
        return err_set(e, ERRC_TOO_LARGE, "the CSR is larger than %d bytes", CA_CSR_MAX);
    }
    if (!looks_like_base64(body, len) || base64_decode(der, (const char *)body, len) != 0 ||
        der->len == 0) {
        buf_reset(der);
        return err_set(e, ERRC_INVALID, "the body is not base64 of a DER PKCS#10 request");
    }
    return 0;
}
