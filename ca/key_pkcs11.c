/*
 * pkcs11: keys. Two routes into the token, each used for what it does best:
 *
 *  - the PKCS#11 C API, called directly on the module (dlopen + C_GetFunctionList), generates key
 *    pairs inside the token (private part CKA_SENSITIVE, never CKA_EXTRACTABLE) and checks, before
 *    any load, that the token exists, the PIN is right and the object is there. That gives exact
 *    errors (wrong PIN = ERRC_DENIED, no such token/object = ERRC_NOT_FOUND) and spends exactly one
 *    login attempt on a wrong PIN;
 *  - OpenSSL 3.0 on Debian 12 has no PKCS#11 provider, so signing goes through the `pkcs11`
 *    ENGINE of libengine-pkcs11-openssl (libp11): ENGINE_load_private_key returns an EVP_PKEY
 *    whose private operations run in the token, usable with EVP_DigestSign / X509_sign.
 *
 * The ENGINE API is deprecated in OpenSSL 3.0; this is the only file that uses it, and the only
 * file where -Wdeprecated-declarations is silenced.
 *
 * One module per process: the engine is shared by all keys (ENGINE_by_id returns the listed
 * instance), and libp11 binds it to one module at ENGINE_init. Loading a key from another module
 * while keys of the first are alive is refused. Key loading is not thread-safe (it happens at
 * start, before worker threads); signing concurrency is the caller's business (ca_key_is_hsm).
 *
 * A process may both have the module initialised by the engine and call C_Initialize here: the
 * second call answers CKR_CRYPTOKI_ALREADY_INITIALIZED, and then this file neither logs out nor
 * finalises, since that would pull the session state from under the engine.
 *
 * URIs (RFC 7512): path attributes token, object, id, type, serial, manufacturer, model; query
 * attributes pin-value, pin-source (file:PATH or PATH), module-path. Values are percent-decoded.
 * The PIN comes from pin-value, else pin-source, else ca_key_opts.secret. A pin-value never
 * appears in messages or in the URI a key reports (ca_key_pkcs11_redact).
 */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

#include <dlfcn.h>
#include <openssl/crypto.h>
#include <openssl/engine.h>
#include <openssl/rand.h>
#include <string.h>
#include <sys/stat.h>

/* p11-kit's copy of the OASIS header (Debian: libp11-kit-dev), reached without pkg-config. */
#include <p11-kit-1/p11-kit/pkcs11.h>

#include "ca/key_int.h"
#include "core/mem.h"
#include "core/util.h"

#ifndef JITRCA_DEFAULT_PKCS11_MODULE
#define JITRCA_DEFAULT_PKCS11_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif

#define P11_ID_MAX  64
#define P11_PIN_MAX 256

struct p11_uri {
    char *token;
    char *object;
    char *serial;
    char *manufacturer;
    char *model;
    char *type;
    uint8_t id[P11_ID_MAX];
    size_t idlen;
    bool has_id;
    char *pin_value;
    char *pin_source;
    char *module_path;
    struct buf shown;   /* the URI without pin-value, for messages */
    struct buf shown_q; /* its query part while parsing */
};

enum p11_field {
    F_TOKEN,
    F_OBJECT,
    F_SERIAL,
    F_MANUFACTURER,
    F_MODEL,
    F_TYPE,
    F_ID,
    F_PIN_VALUE,
    F_PIN_SOURCE,
    F_MODULE_PATH
};

static const struct {
    const char *name;
    enum p11_field field;
    bool query; /* allowed after '?' (query) rather than in the path */
} p11_attrs[] = {
    { "token", F_TOKEN, false },
    { "object", F_OBJECT, false },
    { "serial", F_SERIAL, false },
    { "manufacturer", F_MANUFACTURER, false },
    { "model", F_MODEL, false },
    { "type", F_TYPE, false },
    { "id", F_ID, false },
    { "pin-value", F_PIN_VALUE, true },
    { "pin-source", F_PIN_SOURCE, true },
    { "module-path", F_MODULE_PATH, true },
};

static void uri_release(struct p11_uri *u)
{
    xfree(u->token);
    xfree(u->object);
    xfree(u->serial);
    xfree(u->manufacturer);
    xfree(u->model);
    xfree(u->type);
    xfree_secret(u->pin_value);
    xfree(u->pin_source);
    xfree(u->module_path);
    buf_release(&u->shown);
    buf_release(&u->shown_q);
    memset(u, 0, sizeof(*u));
}

static void pct_encode(struct buf *out, const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            buf_addch(out, (char)c);
        } else {
            buf_addch(out, '%');
            buf_addch(out, hex[c >> 4]);
            buf_addch(out, hex[c & 15]);
        }
    }
}

static int uri_attr(struct p11_uri *u, const char *a, size_t alen, bool query, struct err *e)
{
    struct buf val = BUF_INIT;
    const char *eq = memchr(a, '=', alen);
    int rc = -1;
    size_t nlen = eq ? (size_t)(eq - a) : alen;
    size_t i = 0;
    char **dst = NULL;
    if (eq == NULL) {
        err_set(e, ERRC_INVALID, "PKCS#11 URI attribute '%.*s' has no value", (int)alen, a);
        goto out;
    }
    for (; i < ARRAY_LEN(p11_attrs); i++) {
        if (strlen(p11_attrs[i].name) == nlen && memcmp(p11_attrs[i].name, a, nlen) == 0) {
            break;
        }
    }
    if (i == ARRAY_LEN(p11_attrs) || p11_attrs[i].query != query) {
        err_set(e, ERRC_INVALID, "PKCS#11 URI attribute '%.*s' is not supported here", (int)nlen,
                a);
        goto out;
    }
    if (pct_decode(&val, eq + 1, alen - nlen - 1) != 0 || memchr(val.data, '\0', val.len)) {
        err_set(e, ERRC_INVALID, "PKCS#11 URI attribute '%.*s' has a bad %%-escape", (int)nlen, a);
        goto out;
    }
    switch (p11_attrs[i].field) {
    case F_TOKEN:
        dst = &u->token;
        break;
    case F_OBJECT:
        dst = &u->object;
        break;
    case F_SERIAL:
        dst = &u->serial;
        break;
    case F_MANUFACTURER:
        dst = &u->manufacturer;
        break;
    case F_MODEL:
        dst = &u->model;
        break;
    case F_TYPE:
        dst = &u->type;
        break;
    case F_PIN_VALUE:
        dst = &u->pin_value;
        break;
    case F_PIN_SOURCE:
        dst = &u->pin_source;
        break;
    case F_MODULE_PATH:
        dst = &u->module_path;
        break;
    case F_ID:
        if (u->has_id || val.len == 0 || val.len > P11_ID_MAX) {
            err_set(e, ERRC_INVALID, "PKCS#11 URI id must be 1 to %d bytes, given once",
                    P11_ID_MAX);
            goto out;
        }
        memcpy(u->id, val.data, val.len);
        u->idlen = val.len;
        u->has_id = true;
        break;
    }
    if (dst != NULL) {
        if (*dst != NULL) {
            err_set(e, ERRC_INVALID, "PKCS#11 URI attribute '%.*s' is given twice", (int)nlen, a);
            goto out;
        }
        *dst = xstrdup(buf_cstr(&val));
    }
    if (!query) {
        buf_addstr(&u->shown, u->shown.len > 7 ? ";" : "");
        buf_add(&u->shown, a, alen);
    } else if (p11_attrs[i].field != F_PIN_VALUE) {
        buf_addstr(&u->shown_q, u->shown_q.len > 0 ? "&" : "");
        buf_add(&u->shown_q, a, alen);
    }
    rc = 0;
out:
    OPENSSL_cleanse(val.data, val.len);
    buf_release(&val);
    return rc;
}

/* Parses "pkcs11:path?query". */
static int uri_parse(const char *uri, struct p11_uri *u, struct err *e)
{
    memset(u, 0, sizeof(*u));
    if (!str_has_prefix(uri, "pkcs11:")) {
        return err_set(e, ERRC_INVALID, "'%s' is not a pkcs11: URI", uri);
    }
    buf_addstr(&u->shown, "pkcs11:");
    const char *p = uri + 7;
    const char *q = strchr(p, '?');
    size_t plen = q ? (size_t)(q - p) : strlen(p);
    for (int part = 0; part < 2; part++) {
        const char *s = part == 0 ? p : (q ? q + 1 : NULL);
        size_t len = part == 0 ? plen : (q ? strlen(q + 1) : 0);
        char sep = part == 0 ? ';' : '&';
        while (s != NULL && len > 0) {
            const char *end = memchr(s, sep, len);
            size_t alen = end ? (size_t)(end - s) : len;
            if (alen > 0 && uri_attr(u, s, alen, part == 1, e) != 0) {
                uri_release(u);
                return -1;
            }
            s += alen + (end ? 1 : 0);
            len -= alen + (end ? 1 : 0);
        }
    }
    if (u->shown_q.len > 0) {
        buf_addch(&u->shown, '?');
        buf_add(&u->shown, u->shown_q.data, u->shown_q.len);
    }
    if (u->type != NULL && strcmp(u->type, "private") != 0) {
        err_set(e, ERRC_INVALID, "PKCS#11 URI '%s': type must be 'private'", u->shown.data);
        uri_release(u);
        return -1;
    }
    if (u->token == NULL) {
        err_set(e, ERRC_INVALID, "PKCS#11 URI '%s' names no token (token=...)", u->shown.data);
        uri_release(u);
        return -1;
    }
    if (u->object == NULL && !u->has_id) {
        err_set(e, ERRC_INVALID, "PKCS#11 URI '%s' names no key (object=... or id=...)",
                u->shown.data);
        uri_release(u);
        return -1;
    }
    return 0;
}

void ca_key_pkcs11_redact(const char *uri, struct buf *out)
{
    struct p11_uri u;
    struct err e = ERR_INIT;
    if (uri_parse(uri, &u, &e) != 0) {
        buf_addstr(out, "pkcs11:(invalid)");
        return;
    }
    buf_addstr(out, u.shown.data);
    uri_release(&u);
}

/* The PIN into pin (cleansed by the caller): URI pin-value, pin-source file, or o->secret. */
static int get_pin(const struct p11_uri *u, const struct ca_key_opts *o, struct buf *pin,
                   struct err *e)
{
    if (u->pin_value != NULL) {
        buf_addstr(pin, u->pin_value);
    } else if (u->pin_source != NULL) {
        const char *path =
            str_has_prefix(u->pin_source, "file:") ? u->pin_source + 5 : u->pin_source;
        struct stat st;
        if (stat(path, &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
            return err_set(e, ERRC_DENIED,
                           "PIN file '%s' is accessible by group or others; run chmod 600", path);
        }
        if (file_read_all(path, P11_PIN_MAX, pin, e) != 0) {
            return err_prefix(e, "PIN source of '%s'", u->shown.data);
        }
        while (pin->len > 0 &&
               (pin->data[pin->len - 1] == '\n' || pin->data[pin->len - 1] == '\r')) {
            pin->data[--pin->len] = '\0';
        }
    } else if (o != NULL && o->secret != NULL) {
        buf_addstr(pin, o->secret);
    }
    if (pin->len == 0) {
        return err_set(e, ERRC_INVALID, "no PIN given for key '%s'", u->shown.data);
    }
    if (pin->len > P11_PIN_MAX) {
        return err_set(e, ERRC_INVALID, "PIN for key '%s' is too long", u->shown.data);
    }
    return 0;
}

static const char *module_of(const struct p11_uri *u, const struct ca_key_opts *o)
{
    if (u->module_path != NULL) {
        return u->module_path;
    }
    if (o != NULL && o->pkcs11_module != NULL) {
        return o->pkcs11_module;
    }
    return JITRCA_DEFAULT_PKCS11_MODULE;
}

/* ---- the C API ---- */

struct p11 {
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    bool finalize;
    bool logout;
    bool has_session;
    CK_SESSION_HANDLE s;
};

static int ckr_fail(struct err *e, enum err_code code, CK_RV rv, const char *call, const char *uri)
{
    err_set(e, code, "PKCS#11 %s failed for '%s' (CKR 0x%lx)", call, uri, (unsigned long)rv);
    return -1;
}

static void p11_close(struct p11 *p)
{
    if (p->f != NULL) {
        if (p->logout) {
            p->f->C_Logout(p->s);
        }
        if (p->has_session) {
            p->f->C_CloseSession(p->s);
        }
        if (p->finalize) {
            p->f->C_Finalize(NULL);
        }
    }
    if (p->dl != NULL) {
        dlclose(p->dl);
    }
    memset(p, 0, sizeof(*p));
}

static bool label_eq(const CK_UTF8CHAR *field, size_t flen, const char *want)
{
    size_t n = flen;
    while (n > 0 && field[n - 1] == ' ') {
        n--;
    }
    return strlen(want) == n && memcmp(field, want, n) == 0;
}

/*
 * Login is per application and token in PKCS#11: once the engine (or an earlier call here) has
 * logged a token in, C_Login answers CKR_USER_ALREADY_LOGGED_IN whatever the PIN. To still refuse
 * a wrong PIN, the SHA-256 of each PIN that logged a token in is remembered (token serial +
 * label), and a later call on an already logged-in token must present the same PIN.
 */
#define PIN_SEEN_MAX 16

static struct {
    char token[64 + 2];
    unsigned char pin_hash[32];
} pin_seen[PIN_SEEN_MAX];

static void pin_token_id(const CK_TOKEN_INFO *ti, char out[64 + 2])
{
    memcpy(out, ti->serialNumber, sizeof(ti->serialNumber));
    memcpy(out + sizeof(ti->serialNumber), ti->label, sizeof(ti->label));
    out[sizeof(ti->serialNumber) + sizeof(ti->label)] = '\0';
}

static int pin_hash(const char *pin, unsigned char out[32])
{
    unsigned int n = 0;
    return EVP_Digest(pin, strlen(pin), out, &n, EVP_sha256(), NULL) == 1 && n == 32 ? 0 : -1;
}

/* 1: the token was logged in with this PIN; 0: with another; -1: unknown. */
static int pin_check(const char *tok, const char *pin)
{
    unsigned char h[32];
    if (pin_hash(pin, h) != 0) {
        return -1;
    }
    for (size_t i = 0; i < PIN_SEEN_MAX; i++) {
        if (strcmp(pin_seen[i].token, tok) == 0) {
            return CRYPTO_memcmp(pin_seen[i].pin_hash, h, sizeof(h)) == 0 ? 1 : 0;
        }
    }
    return -1;
}

static void pin_remember(const char *tok, const char *pin)
{
    size_t slot = PIN_SEEN_MAX;
    for (size_t i = 0; i < PIN_SEEN_MAX; i++) {
        if (strcmp(pin_seen[i].token, tok) == 0 ||
            (slot == PIN_SEEN_MAX && !pin_seen[i].token[0])) {
            slot = i;
            if (pin_seen[i].token[0]) {
                break;
            }
        }
    }
    if (slot < PIN_SEEN_MAX && pin_hash(pin, pin_seen[slot].pin_hash) == 0) {
        memcpy(pin_seen[slot].token, tok, sizeof(pin_seen[slot].token));
    }
}

/* Loads the module, finds the token, opens a session and logs in. */
static int p11_open(struct p11 *p, const char *module, const struct p11_uri *u, const char *pin,
                    bool rw, struct err *e)
{
    CK_C_GetFunctionList gfl = NULL;
    CK_SLOT_ID *slots = NULL;
    CK_ULONG nslots = 0;
    CK_RV rv;
    int rc = -1;
    bool found = false;
    CK_SLOT_ID slot = 0;
    CK_C_INITIALIZE_ARGS args;
    CK_FLAGS fl = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
    void *sym = NULL;
    char tokid[64 + 2];

    memset(p, 0, sizeof(*p));
    memset(&args, 0, sizeof(args));
    if ((p->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL)) == NULL) {
        err_set(e, ERRC_UNAVAILABLE, "cannot load PKCS#11 module '%s'", module);
        snprintf(e->detail, sizeof(e->detail), "%s", dlerror());
        goto out;
    }
    if ((sym = dlsym(p->dl, "C_GetFunctionList")) == NULL) {
        err_set(e, ERRC_UNAVAILABLE, "'%s' is not a PKCS#11 module", module);
        goto out;
    }
    memcpy(&gfl, &sym, sizeof(gfl));
    if ((rv = gfl(&p->f)) != CKR_OK || p->f == NULL) {
        p->f = NULL;
        ckr_fail(e, ERRC_UNAVAILABLE, rv, "C_GetFunctionList", module);
        goto out;
    }
    args.flags = CKF_OS_LOCKING_OK;
    rv = p->f->C_Initialize(&args);
    if (rv == CKR_OK) {
        p->finalize = true;
    } else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        ckr_fail(e, ERRC_UNAVAILABLE, rv, "C_Initialize", module);
        goto out;
    }
    if ((rv = p->f->C_GetSlotList(CK_TRUE, NULL, &nslots)) != CKR_OK) {
        ckr_fail(e, ERRC_UNAVAILABLE, rv, "C_GetSlotList", u->shown.data);
        goto out;
    }
    slots = xcalloc(nslots + 1, sizeof(*slots));
    if ((rv = p->f->C_GetSlotList(CK_TRUE, slots, &nslots)) != CKR_OK) {
        ckr_fail(e, ERRC_UNAVAILABLE, rv, "C_GetSlotList", u->shown.data);
        goto out;
    }
    for (CK_ULONG i = 0; i < nslots && !found; i++) {
        CK_TOKEN_INFO ti;
        if (p->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK) {
            continue;
        }
        if (label_eq(ti.label, sizeof(ti.label), u->token) &&
            (u->serial == NULL || label_eq(ti.serialNumber, sizeof(ti.serialNumber), u->serial)) &&
            (u->model == NULL || label_eq(ti.model, sizeof(ti.model), u->model)) &&
            (u->manufacturer == NULL ||
             label_eq(ti.manufacturerID, sizeof(ti.manufacturerID), u->manufacturer))) {
            found = true;
            slot = slots[i];
            pin_token_id(&ti, tokid);
        }
    }
    if (!found) {
        err_set(e, ERRC_NOT_FOUND, "no PKCS#11 token '%s' in module '%s'", u->token, module);
        goto out;
    }
    if ((rv = p->f->C_OpenSession(slot, fl, NULL, NULL, &p->s)) != CKR_OK) {
        ckr_fail(e, ERRC_UNAVAILABLE, rv, "C_OpenSession", u->shown.data);
        goto out;
    }
    p->has_session = true;
    rv = p->f->C_Login(p->s, CKU_USER, (CK_UTF8CHAR_PTR)(uintptr_t)pin, (CK_ULONG)strlen(pin));
    if (rv == CKR_USER_ALREADY_LOGGED_IN && pin_check(tokid, pin) == 0) {
        err_set(e, ERRC_DENIED, "wrong PIN for key '%s'", u->shown.data);
        goto out;
    }
    if (rv == CKR_OK) {
        p->logout = true;
        pin_remember(tokid, pin);
    } else if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE) {
        err_set(e, ERRC_DENIED, "wrong PIN for key '%s'", u->shown.data);
        goto out;
    } else if (rv == CKR_PIN_LOCKED) {
        err_set(e, ERRC_DENIED, "the PIN of token '%s' is locked", u->token);
        goto out;
    } else if (rv != CKR_USER_ALREADY_LOGGED_IN) {
        ckr_fail(e, ERRC_DENIED, rv, "C_Login", u->shown.data);
        goto out;
    }
    rc = 0;
out:
    xfree(slots);
    if (rc != 0) {
        p11_close(p);
    }
    return rc;
}

/* Number of objects (of any class) matching the template, capped at 2. */
static int p11_count(struct p11 *p, CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_ULONG *count,
                     const char *uri, struct err *e)
{
    CK_OBJECT_HANDLE h[2];
    CK_RV rv = p->f->C_FindObjectsInit(p->s, tmpl, n);
    if (rv != CKR_OK) {
        return ckr_fail(e, ERRC_INTERNAL, rv, "C_FindObjectsInit", uri);
    }
    rv = p->f->C_FindObjects(p->s, h, 2, count);
    p->f->C_FindObjectsFinal(p->s);
    if (rv != CKR_OK) {
        return ckr_fail(e, ERRC_INTERNAL, rv, "C_FindObjects", uri);
    }
    return 0;
}

static const CK_BYTE oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const CK_BYTE oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
static const CK_BYTE rsa_f4[] = { 0x01, 0x00, 0x01 };

#define ATTR(type, ptr, len)                              \
    {                                                     \
        (type), (void *)(uintptr_t)(ptr), (CK_ULONG)(len) \
    }

/* Checks that neither the label nor the id is taken, then generates the pair. */
static int generate_pair(struct p11 *p, enum ca_key_type t, struct p11_uri *u, struct err *e)
{
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_CLASS privclass = CKO_PRIVATE_KEY;
    CK_ULONG count = 0;
    CK_ATTRIBUTE by_label[] = { ATTR(CKA_LABEL, u->object, strlen(u->object)) };
    CK_ATTRIBUTE by_id[] = { ATTR(CKA_ID, u->id, u->idlen),
                             ATTR(CKA_CLASS, &privclass, sizeof(privclass)) };
    bool ec = t == CA_KEY_EC_P256 || t == CA_KEY_EC_P384;
    CK_ULONG bits = t == CA_KEY_RSA_2048 ? 2048 : t == CA_KEY_RSA_3072 ? 3072 : 4096;
    CK_MECHANISM mech = { ec ? CKM_EC_KEY_PAIR_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
    CK_OBJECT_HANDLE hpub = 0, hpriv = 0;
    CK_RV rv;

    if (p11_count(p, by_label, ARRAY_LEN(by_label), &count, u->shown.data, e) != 0) {
        return -1;
    }
    if (count > 0) {
        return err_set(e, ERRC_CONFLICT, "token '%s' already has an object labelled '%s'", u->token,
                       u->object);
    }
    if (u->has_id) {
        if (p11_count(p, by_id, ARRAY_LEN(by_id), &count, u->shown.data, e) != 0) {
            return -1;
        }
        if (count > 0) {
            return err_set(e, ERRC_CONFLICT, "token '%s' already has a private key with this id",
                           u->token);
        }
    } else {
        /* libp11 pairs keys by CKA_ID: always give one */
        u->idlen = 16;
        if (RAND_bytes(u->id, (int)u->idlen) != 1) {
            return err_openssl(e, ERRC_INTERNAL, "RAND_bytes");
        }
    }
    CK_ATTRIBUTE pub[] = {
        ATTR(CKA_TOKEN, &yes, sizeof(yes)),
        ATTR(CKA_PRIVATE, &no, sizeof(no)),
        ATTR(CKA_VERIFY, &yes, sizeof(yes)),
        ATTR(CKA_LABEL, u->object, strlen(u->object)),
        ATTR(CKA_ID, u->id, u->idlen),
        ec ? (CK_ATTRIBUTE)ATTR(CKA_EC_PARAMS, t == CA_KEY_EC_P256 ? oid_p256 : oid_p384,
                                t == CA_KEY_EC_P256 ? sizeof(oid_p256) : sizeof(oid_p384))
           : (CK_ATTRIBUTE)ATTR(CKA_MODULUS_BITS, &bits, sizeof(bits)),
        ATTR(CKA_PUBLIC_EXPONENT, rsa_f4, sizeof(rsa_f4)), /* RSA only: dropped for EC */
    };
    CK_ATTRIBUTE priv[] = {
        ATTR(CKA_TOKEN, &yes, sizeof(yes)),     ATTR(CKA_PRIVATE, &yes, sizeof(yes)),
        ATTR(CKA_SENSITIVE, &yes, sizeof(yes)), ATTR(CKA_EXTRACTABLE, &no, sizeof(no)),
        ATTR(CKA_SIGN, &yes, sizeof(yes)),      ATTR(CKA_LABEL, u->object, strlen(u->object)),
        ATTR(CKA_ID, u->id, u->idlen),
    };
    CK_ULONG npub = ec ? ARRAY_LEN(pub) - 1 : ARRAY_LEN(pub);
    rv = p->f->C_GenerateKeyPair(p->s, &mech, pub, npub, priv, ARRAY_LEN(priv), &hpub, &hpriv);
    if (rv != CKR_OK) {
        return ckr_fail(e, ERRC_INTERNAL, rv, "C_GenerateKeyPair", u->shown.data);
    }
    return 0;
}

int ca_key_pkcs11_generate(enum ca_key_type t, const char *uri, const struct ca_key_opts *o,
                           struct err *e)
{
    struct p11_uri u;
    struct p11 p;
    struct buf pin = BUF_INIT;
    int rc = -1;

    memset(&p, 0, sizeof(p));
    if ((unsigned)t >= CA_KEY__COUNT) {
        return err_set(e, ERRC_INVALID, "unknown key type %d", (int)t);
    }
    if (uri_parse(uri, &u, e) != 0) {
        return -1;
    }
    if (u.object == NULL) {
        err_set(e, ERRC_INVALID, "PKCS#11 URI '%s' needs object= to label a new key", u.shown.data);
        goto out;
    }
    if (get_pin(&u, o, &pin, e) != 0 ||
        p11_open(&p, module_of(&u, o), &u, pin.data, true, e) != 0 ||
        generate_pair(&p, t, &u, e) != 0) {
        goto out;
    }
    rc = 0;
out:
    p11_close(&p);
    OPENSSL_cleanse(pin.data, pin.len);
    buf_release(&pin);
    uri_release(&u);
    return rc;
}

/* ---- the engine ---- */

static unsigned engine_users;
static char *engine_module;

static int engine_error(struct err *e, const char *what, const char *uri)
{
    return err_openssl(e, ERRC_UNAVAILABLE, "pkcs11 engine: %s for '%s'", what, uri);
}

EVP_PKEY *ca_key_pkcs11_load(const char *uri, const struct ca_key_opts *o, void **engine,
                             struct err *e)
{
    struct p11_uri u;
    struct p11 p;
    struct buf pin = BUF_INIT, euri = BUF_INIT;
    ENGINE *eng = NULL;
    EVP_PKEY *pk = NULL;
    bool inited = false;
    CK_OBJECT_CLASS privclass = CKO_PRIVATE_KEY;
    CK_ULONG count = 0, n = 1;
    CK_ATTRIBUTE tmpl[3] = { ATTR(CKA_CLASS, &privclass, sizeof(privclass)) };
    const char *module = NULL;

    memset(&p, 0, sizeof(p));
    *engine = NULL;
    if (uri_parse(uri, &u, e) != 0) {
        return NULL;
    }
    module = module_of(&u, o);
    if (get_pin(&u, o, &pin, e) != 0 || p11_open(&p, module, &u, pin.data, false, e) != 0) {
        goto out;
    }
    if (u.object != NULL) {
        tmpl[n++] = (CK_ATTRIBUTE)ATTR(CKA_LABEL, u.object, strlen(u.object));
    }
    if (u.has_id) {
        tmpl[n++] = (CK_ATTRIBUTE)ATTR(CKA_ID, u.id, u.idlen);
    }
    if (p11_count(&p, tmpl, n, &count, u.shown.data, e) != 0) {
        goto out;
    }
    p11_close(&p);
    if (count == 0) {
        err_set(e, ERRC_NOT_FOUND, "no private key '%s' in token '%s'",
                u.object ? u.object : "(by id)", u.token);
        goto out;
    }
    if (count > 1) {
        err_set(e, ERRC_INVALID, "key '%s' matches several private keys in token '%s'",
                u.shown.data, u.token);
        goto out;
    }
    if (engine_users > 0 && strcmp(engine_module, module) != 0) {
        err_set(e, ERRC_INVALID,
                "PKCS#11 module '%s' requested while keys of '%s' are loaded (one per process)",
                module, engine_module);
        goto out;
    }

    /* The engine gets a URI without PIN or module: those go through its controls. */
    buf_addstr(&euri, "pkcs11:token=");
    pct_encode(&euri, (const uint8_t *)u.token, strlen(u.token));
    if (u.object != NULL) {
        buf_addstr(&euri, ";object=");
        pct_encode(&euri, (const uint8_t *)u.object, strlen(u.object));
    }
    if (u.has_id) {
        buf_addstr(&euri, ";id=");
        for (size_t i = 0; i < u.idlen; i++) {
            buf_addf(&euri, "%%%02x", u.id[i]);
        }
    }
    buf_addstr(&euri, ";type=private");

    if ((eng = ENGINE_by_id("pkcs11")) == NULL) {
        engine_error(e, "not available (install libengine-pkcs11-openssl)", u.shown.data);
        goto out;
    }
    if (engine_users == 0 && ENGINE_ctrl_cmd_string(eng, "MODULE_PATH", module, 0) != 1) {
        engine_error(e, "MODULE_PATH refused", u.shown.data);
        goto out;
    }
    if (ENGINE_init(eng) != 1) {
        engine_error(e, "cannot initialise", u.shown.data);
        goto out;
    }
    inited = true;
    if (ENGINE_ctrl_cmd_string(eng, "PIN", pin.data, 0) != 1) {
        engine_error(e, "PIN refused", u.shown.data);
        goto out;
    }
    if ((pk = ENGINE_load_private_key(eng, euri.data, NULL, NULL)) == NULL) {
        engine_error(e, "cannot load the key", u.shown.data);
        goto out;
    }
    ERR_clear_error(); /* libp11 leaves notes on the queue even on success */
    if (engine_users++ == 0) {
        xfree(engine_module);
        engine_module = xstrdup(module);
    }
    *engine = eng;
    inited = false;
out:
    if (inited) {
        ENGINE_finish(eng);
    }
    ENGINE_free(eng); /* the structural reference; the functional one stays with the key */
    p11_close(&p);
    OPENSSL_cleanse(pin.data, pin.len);
    buf_release(&pin);
    buf_release(&euri);
    uri_release(&u);
    return pk;
}

void ca_key_pkcs11_release(void *engine)
{
    if (engine == NULL) {
        return;
    }
    ENGINE_finish(engine);
    BUG_ON(engine_users == 0);
    if (--engine_users == 0) {
        xfree(engine_module);
        engine_module = NULL;
    }
}
