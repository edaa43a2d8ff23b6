/*
 * CSR input for both issuing paths: PEM/DER decoding, a strict DER walk, the RFC 2986 shape, and
 * the checks of what a CSR may ask for.
 *
 * The walk accepts DER only (RFC 2986 requires it): definite minimal lengths, no trailing bytes,
 * no high tag numbers, minimal INTEGERs, DER BOOLEANs, constructed SEQUENCE/SET only. OpenSSL's
 * ASN1_get_object does the TLV work; it accepts indefinite and non-minimal lengths and reports
 * errors in bit 0x80, so cai_der_next() checks all three (docs/performance.md, "The issuing
 * engine and its traps").
 *
 * The subject is never copied: cai_subject_build() walks the signed Name, checks each attribute
 * against the profile (known OIDs only, one value per RDN, string type and characters, UTF-8,
 * RFC 5280 length bounds, CN pattern) and writes a new Name in canonical string types
 * (UTF8String; PrintableString for C and serialNumber; IA5String for emailAddress and DC).
 * Requested extensions: only subjectAltName, and only the types and values the profile allows,
 * rebuilt from the parsed values.
 */
#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <string.h>

#include "ca/ca_int.h"
#include "core/mem.h"
#include "core/util.h"

#define TAG_UTF8        12
#define TAG_PRINTABLE   19
#define TAG_IA5         22
#define DER_DEPTH_MAX   24
#define SUBJECT_RDN_MAX 16

/* --- strict DER ------------------------------------------------------------------------------ */

size_t cai_der_hdr_len(size_t len)
{
    size_t n = 2;
    if (len >= 128) {
        for (size_t v = len; v; v >>= 8) {
            n++;
        }
    }
    return n;
}

size_t cai_der_hdr(uint8_t *out, uint8_t tag, size_t len)
{
    size_t n = cai_der_hdr_len(len);
    out[0] = tag;
    if (len < 128) {
        out[1] = (uint8_t)len;
        return 2;
    }
    out[1] = (uint8_t)(0x80 | (n - 2));
    for (size_t i = n - 1; i >= 2; i--) {
        out[i] = (uint8_t)(len & 0xff);
        len >>= 8;
    }
    return n;
}

void cai_der_add_hdr(struct buf *b, uint8_t tag, size_t len)
{
    uint8_t h[10];
    buf_add(b, h, cai_der_hdr(h, tag, len));
}

void cai_der_add(struct buf *b, uint8_t tag, const void *content, size_t len)
{
    cai_der_add_hdr(b, tag, len);
    buf_add(b, content, len);
}

int cai_der_next(const uint8_t **pp, const uint8_t *end, struct cai_tlv *t)
{
    const uint8_t *start = *pp;
    const unsigned char *p = start;
    long len = 0;
    int tag = 0, cls = 0;
    if (start >= end) {
        return -1;
    }
    int r = ASN1_get_object(&p, &len, &tag, &cls, (long)(end - start));
    if ((r & 0x80) || (r == 0x21) || len < 0 || tag >= 31) {
        ERR_clear_error();
        return -1;
    }
    size_t hl = (size_t)(p - start), clen = (size_t)len;
    if (hl != cai_der_hdr_len(clen) || clen > (size_t)(end - p)) {
        return -1;
    }
    t->tag = tag;
    t->cls = cls;
    t->cons = (r & V_ASN1_CONSTRUCTED) != 0;
    t->start = start;
    t->val = p;
    t->len = clen;
    t->total = hl + clen;
    *pp = p + clen;
    return 0;
}

static int der_check_rec(const uint8_t *p, const uint8_t *end, int depth)
{
    while (p < end) {
        struct cai_tlv t;
        if (cai_der_next(&p, end, &t) != 0) {
            return -1;
        }
        if (t.cls == V_ASN1_UNIVERSAL) {
            bool must_cons = t.tag == V_ASN1_SEQUENCE || t.tag == V_ASN1_SET;
            if (t.cons != must_cons || t.tag == 0) {
                return -1;
            }
            if (t.tag == V_ASN1_INTEGER &&
                (t.len == 0 || (t.len > 1 && ((t.val[0] == 0 && !(t.val[1] & 0x80)) ||
                                              (t.val[0] == 0xff && (t.val[1] & 0x80)))))) {
                return -1;
            }
            if (t.tag == V_ASN1_BOOLEAN && (t.len != 1 || (t.val[0] != 0 && t.val[0] != 0xff))) {
                return -1;
            }
        }
        if (t.cons && (depth >= DER_DEPTH_MAX || der_check_rec(t.val, t.val + t.len, depth + 1))) {
            return -1;
        }
    }
    return 0;
}

int cai_der_check(const uint8_t *der, size_t len)
{
    const uint8_t *p = der;
    struct cai_tlv t;
    if (cai_der_next(&p, der + len, &t) != 0 || t.total != len) {
        return -1;
    }
    return der_check_rec(der, der + len, 0);
}

/* --- PEM or DER ------------------------------------------------------------------------------ */

static bool is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static const uint8_t *find(const uint8_t *p, const uint8_t *end, const char *s)
{
    size_t n = strlen(s);
    while ((size_t)(end - p) >= n) {
        const uint8_t *q = memchr(p, s[0], (size_t)(end - p) - n + 1);
        if (q == NULL) {
            return NULL;
        }
        if (memcmp(q, s, n) == 0) {
            return q;
        }
        p = q + 1;
    }
    return NULL;
}

int cai_csr_der(const uint8_t *in, size_t len, struct buf *tmp, const uint8_t **der,
                size_t *der_len, struct err *e)
{
    static const char *const labels[] = { "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST" };
    const uint8_t *p = in, *end = in + len;
    if (len > 0 && in[0] == 0x30) {
        *der = in;
        *der_len = len;
        return 0;
    }
    while (p < end && is_space(*p)) {
        p++;
    }
    if ((size_t)(end - p) < 11 || memcmp(p, "-----BEGIN ", 11) != 0) {
        return err_set(e, ERRC_INVALID, "CSR is not valid PEM or DER");
    }
    p += 11;
    for (size_t i = 0; i < ARRAY_LEN(labels); i++) {
        char begin_end[64], end_line[64];
        snprintf(begin_end, sizeof(begin_end), "%s-----", labels[i]);
        size_t bl = strlen(begin_end);
        if ((size_t)(end - p) < bl || memcmp(p, begin_end, bl) != 0) {
            continue;
        }
        const uint8_t *body = p + bl;
        snprintf(end_line, sizeof(end_line), "-----END %s-----", labels[i]);
        const uint8_t *stop = find(body, end, end_line);
        if (stop == NULL) {
            return err_set(e, ERRC_INVALID, "CSR is not valid PEM: no '%s' line", end_line);
        }
        for (const uint8_t *q = stop + strlen(end_line); q < end; q++) {
            if (!is_space(*q)) {
                return err_set(e, ERRC_INVALID, "CSR is not valid PEM: data after the END line");
            }
        }
        buf_reset(tmp);
        if (base64_decode(tmp, (const char *)body, (size_t)(stop - body)) != 0 || tmp->len == 0) {
            return err_set(e, ERRC_INVALID, "CSR is not valid PEM: the base64 body is malformed");
        }
        *der = (const uint8_t *)tmp->data;
        *der_len = tmp->len;
        return 0;
    }
    return err_set(e, ERRC_INVALID, "CSR is not valid PEM: expected BEGIN CERTIFICATE REQUEST");
}

/* --- the CSR walk ---------------------------------------------------------------------------- */

static int not_csr(struct err *e, const char *what)
{
    return err_set(e, ERRC_INVALID, "CSR is not a valid PKCS#10 request: %s", what);
}

int cai_csr_walk(const uint8_t *der, size_t len, struct cai_csr *c, struct err *e)
{
    struct cai_tlv outer, cri, ver, subj, spki, attrs, alg, sig;
    const uint8_t *p = der, *end = der + len;
    if (cai_der_check(der, len) != 0) {
        return err_set(e, ERRC_INVALID,
                       "CSR is not valid DER (malformed, non-minimal or indefinite lengths, or "
                       "trailing bytes)");
    }
    if (cai_der_next(&p, end, &outer) != 0 || outer.tag != V_ASN1_SEQUENCE) {
        return not_csr(e, "not a SEQUENCE");
    }
    p = outer.val;
    end = outer.val + outer.len;
    if (cai_der_next(&p, end, &cri) != 0 || cri.tag != V_ASN1_SEQUENCE ||
        cri.cls != V_ASN1_UNIVERSAL) {
        return not_csr(e, "no CertificationRequestInfo");
    }
    if (cai_der_next(&p, end, &alg) != 0 || alg.tag != V_ASN1_SEQUENCE ||
        alg.cls != V_ASN1_UNIVERSAL) {
        return not_csr(e, "no signature algorithm");
    }
    if (cai_der_next(&p, end, &sig) != 0 || sig.tag != V_ASN1_BIT_STRING ||
        sig.cls != V_ASN1_UNIVERSAL || p != end) {
        return not_csr(e, "no signature BIT STRING, or extra fields");
    }
    if (sig.len < 2 || sig.val[0] != 0) {
        return not_csr(e, "the signature is not a whole number of bytes");
    }
    p = cri.val;
    end = cri.val + cri.len;
    if (cai_der_next(&p, end, &ver) != 0 || ver.tag != V_ASN1_INTEGER ||
        ver.cls != V_ASN1_UNIVERSAL) {
        return not_csr(e, "no version");
    }
    if (ver.len != 1 || ver.val[0] != 0) {
        return not_csr(e, "the version is not v1 (0)");
    }
    if (cai_der_next(&p, end, &subj) != 0 || subj.tag != V_ASN1_SEQUENCE ||
        subj.cls != V_ASN1_UNIVERSAL) {
        return not_csr(e, "no subject Name");
    }
    if (cai_der_next(&p, end, &spki) != 0 || spki.tag != V_ASN1_SEQUENCE ||
        spki.cls != V_ASN1_UNIVERSAL) {
        return not_csr(e, "no SubjectPublicKeyInfo");
    }
    if (cai_der_next(&p, end, &attrs) != 0 || attrs.tag != 0 ||
        attrs.cls != V_ASN1_CONTEXT_SPECIFIC || !attrs.cons || p != end) {
        return not_csr(e, "no [0] attributes, or extra fields");
    }
    c->cri = cri.start;
    c->cri_len = cri.total;
    c->subject = subj.start;
    c->subject_len = subj.total;
    c->spki = spki.start;
    c->spki_len = spki.total;
    c->attrs = attrs.start;
    c->attrs_len = attrs.total;
    c->sigalg = alg.start;
    c->sigalg_len = alg.total;
    c->sig = sig.val + 1;
    c->sig_len = sig.len - 1;
    return 0;
}

bool cai_csr_is_fast(const struct cai_csr *c)
{
    /* SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING 00 04 X Y } */
    static const uint8_t p256[CAI_P256_POINT_OFF + 1] = {
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
        0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    };
    static const uint8_t ecdsa_sha256[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                            0x48, 0xce, 0x3d, 0x04, 0x03, 0x02 };
    return c->spki_len == CAI_P256_SPKI_LEN && memcmp(c->spki, p256, sizeof(p256)) == 0 &&
           c->attrs_len == 2 && c->sigalg_len == sizeof(ecdsa_sha256) &&
           memcmp(c->sigalg, ecdsa_sha256, sizeof(ecdsa_sha256)) == 0;
}

/* --- the subject ----------------------------------------------------------------------------- */

/* Number of characters of valid UTF-8 without control characters, or -1. */
static long utf8_chars(const uint8_t *s, size_t len)
{
    long n = 0;
    for (size_t i = 0; i < len; n++) {
        uint32_t c = s[i];
        size_t k;
        uint32_t min;
        if (c < 0x80) {
            k = 0;
            min = 0;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1;
            c &= 0x1f;
            min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2;
            c &= 0x0f;
            min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3;
            c &= 0x07;
            min = 0x10000;
        } else {
            return -1;
        }
        if (k > len - i - 1) {
            return -1;
        }
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) {
                return -1;
            }
            c = (c << 6) | (s[i + j] & 0x3fu);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff) || c < 0x20 ||
            (c >= 0x7f && c <= 0x9f)) {
            return -1;
        }
        i += k + 1;
    }
    return n;
}

static bool printable_ok(const uint8_t *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr(" '()+,-./:=?", c) != NULL;
        if (!ok || c == 0) {
            return false;
        }
    }
    return true;
}

struct rdn {
    int attr;
    const uint8_t *val;
    size_t len;
};

static void oid_text(const struct cai_tlv *t, char *out, size_t cap)
{
    const unsigned char *p = t->start;
    ASN1_OBJECT *o = d2i_ASN1_OBJECT(NULL, &p, (long)t->total);
    if (o == NULL || OBJ_obj2txt(out, (int)cap, o, 1) <= 0) {
        snprintf(out, cap, "(unparsable OID)");
    }
    ASN1_OBJECT_free(o);
    ERR_clear_error();
}

static void text_add(char *out, size_t cap, size_t *off, const char *name, const uint8_t *v,
                     size_t len)
{
    char tmp[600];
    size_t n = 0;
    for (size_t i = 0; i < len && n + 3 < sizeof(tmp); i++) {
        uint8_t c = v[i];
        if (strchr(",+\"\\<>;", c) || ((c == '#' || c == ' ') && i == 0) ||
            (c == ' ' && i == len - 1)) {
            tmp[n++] = '\\';
        }
        tmp[n++] = (char)c;
    }
    tmp[n] = '\0';
    int w = snprintf(out + *off, cap - *off, "%s%s=%s", *off ? "," : "", name, tmp);
    if (w > 0) {
        *off += (size_t)w;
        if (*off >= cap) {
            *off = cap - 1;
        }
    }
}

static int subject_value(const struct ca_profile *p, int a, const struct cai_tlv *v, struct err *e)
{
    const struct cai_attr_info *ai = &cai_attrs[a];
    long chars;
    if (v->cls != V_ASN1_UNIVERSAL ||
        (v->tag != TAG_UTF8 && v->tag != TAG_PRINTABLE && v->tag != TAG_IA5)) {
        return err_set(e, ERRC_INVALID,
                       "subject attribute %s uses an unsupported string type "
                       "(UTF8String, PrintableString or IA5String)",
                       ai->name);
    }
    if (v->tag == TAG_PRINTABLE && !printable_ok(v->val, v->len)) {
        return err_set(e, ERRC_INVALID,
                       "subject attribute %s is a PrintableString with "
                       "characters outside its set",
                       ai->name);
    }
    chars = utf8_chars(v->val, v->len);
    if (chars < 0 || (v->tag == TAG_IA5 && (size_t)chars != v->len)) {
        return err_set(e, ERRC_INVALID,
                       "subject attribute %s is not valid %s or contains "
                       "control characters",
                       ai->name, v->tag == TAG_IA5 ? "ASCII" : "UTF-8");
    }
    if (chars == 0 || chars > ai->max_chars) {
        return err_set(e, ERRC_DENIED,
                       "subject attribute %s must have 1 to %u characters "
                       "(profile '%s')",
                       ai->name, (unsigned)ai->max_chars, p->name);
    }
    if (ai->out_tag == TAG_PRINTABLE && !printable_ok(v->val, v->len)) {
        return err_set(e, ERRC_DENIED,
                       "subject attribute %s may only contain PrintableString "
                       "characters (A-Z a-z 0-9 space '()+,-./:=?)",
                       ai->name);
    }
    if (ai->out_tag == TAG_IA5 && (size_t)chars != v->len) {
        return err_set(e, ERRC_DENIED, "subject attribute %s must be ASCII", ai->name);
    }
    if (a == CAI_ATTR_C && !(v->val[0] >= 'A' && v->val[0] <= 'Z' && v->len == 2 &&
                             v->val[1] >= 'A' && v->val[1] <= 'Z')) {
        return err_set(e, ERRC_DENIED,
                       "subject attribute C must be a two-letter country code "
                       "(ISO 3166, upper case)");
    }
    return 0;
}

int cai_subject_build(const struct ca_profile *p, const uint8_t *name, size_t len,
                      struct cai_subject *out, struct err *e)
{
    struct rdn rdns[SUBJECT_RDN_MAX];
    size_t n = 0, body = 0, off = 0;
    bool seen[CAI_ATTR__COUNT] = { false };
    struct cai_tlv seq, set, atv, oid, val;
    const uint8_t *p0 = name, *end = name + len, *q, *qe;
    out->cn[0] = '\0';
    out->text[0] = '\0';
    if (cai_der_next(&p0, end, &seq) != 0 || seq.tag != V_ASN1_SEQUENCE || p0 != end) {
        return err_set(e, ERRC_INVALID, "CSR subject is not a Name");
    }
    for (p0 = seq.val, end = seq.val + seq.len; p0 < end;) {
        if (cai_der_next(&p0, end, &set) != 0 || set.tag != V_ASN1_SET ||
            set.cls != V_ASN1_UNIVERSAL) {
            return err_set(e, ERRC_INVALID, "CSR subject is not a Name (RDN is not a SET)");
        }
        q = set.val;
        qe = set.val + set.len;
        if (cai_der_next(&q, qe, &atv) != 0 || atv.tag != V_ASN1_SEQUENCE || q != qe) {
            return err_set(e, ERRC_DENIED,
                           "CSR subject has an empty or multi-valued RDN; one "
                           "attribute per RDN is accepted");
        }
        q = atv.val;
        qe = atv.val + atv.len;
        if (cai_der_next(&q, qe, &oid) != 0 || oid.tag != V_ASN1_OBJECT ||
            oid.cls != V_ASN1_UNIVERSAL || cai_der_next(&q, qe, &val) != 0 || q != qe) {
            return err_set(e, ERRC_INVALID, "CSR subject has a malformed attribute");
        }
        int a = -1;
        for (int i = 0; i < CAI_ATTR__COUNT && a < 0; i++) {
            if (oid.len == cai_attrs[i].oid_len &&
                memcmp(oid.val, cai_attrs[i].oid, oid.len) == 0) {
                a = i;
            }
        }
        if (a < 0) {
            char txt[96];
            oid_text(&oid, txt, sizeof(txt));
            return err_set(e, ERRC_DENIED, "subject attribute %s is not allowed by profile '%s'",
                           txt, p->name);
        }
        if (p->attr_forbidden[a]) {
            return err_set(e, ERRC_DENIED, "subject attribute %s is forbidden by profile '%s'",
                           cai_attrs[a].name, p->name);
        }
        if (!p->attr_allowed[a]) {
            return err_set(e, ERRC_DENIED, "subject attribute %s is not allowed by profile '%s'",
                           cai_attrs[a].name, p->name);
        }
        if (seen[a] && !cai_attrs[a].repeatable) {
            return err_set(e, ERRC_DENIED, "subject attribute %s appears more than once",
                           cai_attrs[a].name);
        }
        if (n == SUBJECT_RDN_MAX) {
            return err_set(e, ERRC_DENIED, "CSR subject has more than %d attributes",
                           SUBJECT_RDN_MAX);
        }
        if (subject_value(p, a, &val, e) != 0) {
            return -1;
        }
        seen[a] = true;
        rdns[n++] = (struct rdn){ a, val.val, val.len };
    }
    for (int i = 0; i < CAI_ATTR__COUNT; i++) {
        if (p->attr_required[i] && !seen[i]) {
            return err_set(e, ERRC_DENIED, "subject attribute %s is required by profile '%s'",
                           cai_attrs[i].name, p->name);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (rdns[i].attr == CAI_ATTR_CN) {
            memcpy(out->cn, rdns[i].val, rdns[i].len); /* <= 64 chars, <= 256 bytes */
            out->cn[rdns[i].len] = '\0';
        }
    }
    if (regexec(&p->cn_re, out->cn, 0, NULL, 0) != 0) {
        return err_set(e, ERRC_DENIED, "CN '%s' does not match the pattern '%s' of profile '%s'",
                       out->cn, p->cn_pattern, p->name);
    }

    /* The new Name: SEQUENCE OF SET { SEQUENCE { OID, string } }, the CSR's order. */
    for (size_t i = 0; i < n; i++) {
        const struct cai_attr_info *ai = &cai_attrs[rdns[i].attr];
        size_t atv_c = 2 + ai->oid_len + cai_der_hdr_len(rdns[i].len) + rdns[i].len;
        size_t set_c = cai_der_hdr_len(atv_c) + atv_c;
        body += cai_der_hdr_len(set_c) + set_c;
    }
    buf_reset(&out->der);
    cai_der_add_hdr(&out->der, 0x30, body);
    for (size_t i = 0; i < n; i++) {
        const struct cai_attr_info *ai = &cai_attrs[rdns[i].attr];
        size_t atv_c = 2 + ai->oid_len + cai_der_hdr_len(rdns[i].len) + rdns[i].len;
        cai_der_add_hdr(&out->der, 0x31, cai_der_hdr_len(atv_c) + atv_c);
        cai_der_add_hdr(&out->der, 0x30, atv_c);
        cai_der_add(&out->der, 0x06, ai->oid, ai->oid_len);
        cai_der_add(&out->der, ai->out_tag, rdns[i].val, rdns[i].len);
    }
    for (size_t i = n; i > 0; i--) {
        text_add(out->text, sizeof(out->text), &off, cai_attrs[rdns[i - 1].attr].name,
                 rdns[i - 1].val, rdns[i - 1].len);
    }
    return 0;
}

/* --- keys ------------------------------------------------------------------------------------ */

int cai_key_denied(const struct ca_profile *p, const char *keyname, struct err *e)
{
    char allowed[128];
    cai_profile_allowed_keys(p, allowed, sizeof(allowed));
    return err_set(e, ERRC_DENIED, "CSR key %s is not allowed by profile '%s' (allowed: %s)",
                   keyname, p->name, allowed);
}

int cai_key_check(const struct ca_profile *p, EVP_PKEY *pk, enum ca_key_type *out, struct err *e)
{
    static const struct {
        const char *group;
        const char *name;
        int type;
    } curves[] = {
        { "prime256v1", "ec-p256", CA_KEY_EC_P256 },
        { "secp384r1", "ec-p384", CA_KEY_EC_P384 },
        { "secp521r1", "ec-p521", -1 },
        { "prime192v1", "ec-p192", -1 },
        { "secp224r1", "ec-p224", -1 },
    };
    char name[96], grp[64];
    int type = -1;
    size_t glen = 0;
    int id = EVP_PKEY_get_base_id(pk);
    if (id == EVP_PKEY_EC) {
        char enc[32];
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_EC_ENCODING, enc, sizeof(enc),
                                           NULL) == 1 &&
            strcmp(enc, OSSL_PKEY_EC_ENCODING_GROUP) != 0) {
            ERR_clear_error();
            return err_set(e, ERRC_DENIED,
                           "CSR key uses explicit EC parameters; only named "
                           "curves are accepted");
        }
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, grp, sizeof(grp),
                                           &glen) != 1) {
            ERR_clear_error();
            snprintf(grp, sizeof(grp), "unknown-curve");
        }
        snprintf(name, sizeof(name), "ec-%s", grp);
        for (size_t i = 0; i < ARRAY_LEN(curves); i++) {
            if (strcmp(grp, curves[i].group) == 0) {
                snprintf(name, sizeof(name), "%s", curves[i].name);
                type = curves[i].type;
            }
        }
    } else if (id == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(pk);
        BIGNUM *ex = NULL;
        snprintf(name, sizeof(name), "rsa-%d", bits);
        type = bits == 2048   ? CA_KEY_RSA_2048
               : bits == 3072 ? CA_KEY_RSA_3072
               : bits == 4096 ? CA_KEY_RSA_4096
                              : -1;
        if (type >= 0) {
            /* CA/B BR 6.1.6: odd exponent, at least 2^16 + 1. */
            if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &ex) != 1 || !BN_is_odd(ex) ||
                BN_num_bits(ex) < 17) {
                BN_free(ex);
                ERR_clear_error();
                return err_set(e, ERRC_DENIED,
                               "CSR key %s has an unacceptable public exponent "
                               "(must be odd and at least 65537)",
                               name);
            }
            BN_free(ex);
        }
    } else {
        const char *sn = OBJ_nid2sn(id);
        snprintf(name, sizeof(name), "%s", id != NID_undef && sn ? sn : "unknown");
        for (char *c = name; *c; c++) {
            if (*c >= 'A' && *c <= 'Z') {
                *c = (char)(*c - 'A' + 'a');
            }
        }
    }
    if (type < 0 || !p->key_allowed[type]) {
        return cai_key_denied(p, name, e);
    }
    *out = (enum ca_key_type)type;
    return 0;
}

/* --- requested extensions -------------------------------------------------------------------- */

static const char *san_type_name(int type)
{
    switch (type) {
    case GEN_OTHERNAME:
        return "otherName";
    case GEN_X400:
        return "x400Address";
    case GEN_DIRNAME:
        return "directoryName";
    case GEN_EDIPARTY:
        return "ediPartyName";
    case GEN_RID:
        return "registeredID";
    default:
        return "unknown";
    }
}

static int check_one_san(const struct ca_profile *p, const GENERAL_NAME *g, GENERAL_NAMES *out,
                         struct err *e)
{
    char text[300], allowed[64];
    int t;
    const ASN1_STRING *s = NULL;
    switch (g->type) {
    case GEN_DNS:
        t = CAI_SAN_DNS;
        s = g->d.dNSName;
        break;
    case GEN_URI:
        t = CAI_SAN_URI;
        s = g->d.uniformResourceIdentifier;
        break;
    case GEN_EMAIL:
        t = CAI_SAN_EMAIL;
        s = g->d.rfc822Name;
        break;
    case GEN_IPADD:
        t = CAI_SAN_IP;
        s = g->d.iPAddress;
        break;
    default:
        cai_names_list(cai_san_names, p->san_allowed, CAI_SAN__COUNT, allowed, sizeof(allowed));
        return err_set(e, ERRC_DENIED,
                       "CSR requests a subjectAltName of type %s; profile '%s' "
                       "allows %s",
                       san_type_name(g->type), p->name, allowed);
    }
    const uint8_t *d = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);
    if (t == CAI_SAN_IP) {
        if ((len != 4 && len != 16) ||
            inet_ntop(len == 4 ? AF_INET : AF_INET6, d, text, sizeof(text)) == NULL) {
            return err_set(e, ERRC_INVALID,
                           "CSR subjectAltName ip is not an IPv4 or IPv6 "
                           "address");
        }
    } else {
        if (len < 1 || len > 255) {
            return err_set(e, ERRC_INVALID,
                           "CSR subjectAltName %s is empty or longer than 255 "
                           "bytes",
                           cai_san_names[t]);
        }
        for (int i = 0; i < len; i++) {
            if (d[i] < 0x21 || d[i] > 0x7e) {
                return err_set(e, ERRC_INVALID,
                               "CSR subjectAltName %s contains a character "
                               "that is not printable ASCII",
                               cai_san_names[t]);
            }
        }
        memcpy(text, d, (size_t)len);
        text[len] = '\0';
    }
    if (!p->san_allowed[t]) {
        cai_names_list(cai_san_names, p->san_allowed, CAI_SAN__COUNT, allowed, sizeof(allowed));
        return err_set(e, ERRC_DENIED,
                       "CSR requests a subjectAltName of type %s; profile '%s' "
                       "allows %s",
                       cai_san_names[t], p->name, allowed);
    }
    if (regexec(&p->san_re[t], text, 0, NULL, 0) != 0) {
        return err_set(e, ERRC_DENIED,
                       "subjectAltName %s '%s' does not match the pattern '%s' "
                       "of profile '%s'",
                       cai_san_names[t], text, p->san_pattern[t], p->name);
    }
    ASN1_STRING *copy = t == CAI_SAN_IP ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
    GENERAL_NAME *ng = GENERAL_NAME_new();
    if (copy == NULL || ng == NULL || ASN1_STRING_set(copy, d, len) != 1) {
        ASN1_STRING_free(copy);
        GENERAL_NAME_free(ng);
        return err_openssl(e, ERRC_INTERNAL, "cannot copy a subjectAltName");
    }
    GENERAL_NAME_set0_value(ng, g->type, copy);
    if (sk_GENERAL_NAME_push(out, ng) <= 0) {
        GENERAL_NAME_free(ng);
        return err_openssl(e, ERRC_INTERNAL, "cannot copy a subjectAltName");
    }
    return 0;
}

static int check_sans(const struct ca_profile *p, const GENERAL_NAMES *in, GENERAL_NAMES **out,
                      struct err *e)
{
    int n = sk_GENERAL_NAME_num(in);
    bool any = false;
    for (int i = 0; i < CAI_SAN__COUNT; i++) {
        any = any || p->san_allowed[i];
    }
    if (!any) {
        return err_set(e, ERRC_DENIED, "CSR requests subjectAltName but profile '%s' allows none",
                       p->name);
    }
    if (n <= 0) {
        return err_set(e, ERRC_INVALID, "CSR requests an empty subjectAltName");
    }
    if ((size_t)n > p->san_max) {
        return err_set(e, ERRC_DENIED,
                       "CSR requests %d subjectAltNames; profile '%s' allows at "
                       "most %zu",
                       n, p->name, p->san_max);
    }
    *out = sk_GENERAL_NAME_new_null();
    if (*out == NULL) {
        return err_openssl(e, ERRC_INTERNAL, "sk_GENERAL_NAME_new_null");
    }
    for (int i = 0; i < n; i++) {
        if (check_one_san(p, sk_GENERAL_NAME_value(in, i), *out, e) != 0) {
            GENERAL_NAMES_free(*out);
            *out = NULL;
            return -1;
        }
    }
    return 0;
}

static int check_extensions(const struct ca_profile *p, X509_REQ *req, GENERAL_NAMES **sans,
                            struct err *e)
{
    int rc = -1;
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    GENERAL_NAMES *gens = NULL;
    BASIC_CONSTRAINTS *bc = NULL;
    if (exts == NULL) {
        err_openssl(e, ERRC_INVALID, "CSR extension request is malformed");
        goto out;
    }
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *x = sk_X509_EXTENSION_value(exts, i);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(x));
        if (nid == NID_subject_alt_name) {
            if (*sans != NULL) {
                err_set(e, ERRC_INVALID, "CSR requests subjectAltName twice");
                goto out;
            }
            if ((gens = X509V3_EXT_d2i(x)) == NULL) {
                err_openssl(e, ERRC_INVALID, "CSR subjectAltName is malformed");
                goto out;
            }
            if (check_sans(p, gens, sans, e) != 0) {
                goto out;
            }
            GENERAL_NAMES_free(gens);
            gens = NULL;
            continue;
        }
        if (nid == NID_basic_constraints && (bc = X509V3_EXT_d2i(x)) != NULL && bc->ca) {
            err_set(e, ERRC_DENIED,
                    "CSR requests basicConstraints CA:TRUE; profile '%s' issues "
                    "end-entity certificates only",
                    p->name);
            goto out;
        }
        char oid[96];
        if (OBJ_obj2txt(oid, sizeof(oid), X509_EXTENSION_get_object(x), 0) <= 0) {
            snprintf(oid, sizeof(oid), "(unparsable OID)");
        }
        err_set(e, ERRC_DENIED,
                "CSR requests the extension %s; only subjectAltName may be "
                "requested (profile '%s' sets the others)",
                oid, p->name);
        goto out;
    }
    rc = 0;
out:
    if (rc != 0) {
        GENERAL_NAMES_free(*sans);
        *sans = NULL;
    }
    ERR_clear_error();
    BASIC_CONSTRAINTS_free(bc);
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return rc;
}

int cai_req_check_attrs(const struct ca_profile *p, X509_REQ *req, GENERAL_NAMES **sans,
                        struct err *e)
{
    static const int sig_ok[] = { NID_ecdsa_with_SHA256,       NID_ecdsa_with_SHA384,
                                  NID_ecdsa_with_SHA512,       NID_sha256WithRSAEncryption,
                                  NID_sha384WithRSAEncryption, NID_sha512WithRSAEncryption };
    int signid = X509_REQ_get_signature_nid(req);
    bool ok = false, ext_seen = false;
    *sans = NULL;
    for (size_t i = 0; i < ARRAY_LEN(sig_ok); i++) {
        ok = ok || signid == sig_ok[i];
    }
    if (!ok) {
        const char *sn = OBJ_nid2ln(signid);
        return err_set(e, ERRC_DENIED,
                       "CSR signature algorithm %s is not accepted (ECDSA or "
                       "RSA PKCS#1 v1.5 with SHA-256, SHA-384 or SHA-512)",
                       signid != NID_undef && sn ? sn : "(unknown)");
    }
    for (int i = 0; i < X509_REQ_get_attr_count(req); i++) {
        ASN1_OBJECT *o = X509_ATTRIBUTE_get0_object(X509_REQ_get_attr(req, i));
        if (OBJ_obj2nid(o) != NID_ext_req) {
            char oid[96];
            if (OBJ_obj2txt(oid, sizeof(oid), o, 0) <= 0) {
                snprintf(oid, sizeof(oid), "(unparsable OID)");
            }
            return err_set(e, ERRC_DENIED,
                           "CSR attribute %s is not accepted (only an extension "
                           "request for subjectAltName)",
                           oid);
        }
        if (ext_seen) {
            return err_set(e, ERRC_INVALID, "CSR has two extension requests");
        }
        ext_seen = true;
    }
    return ext_seen ? check_extensions(p, req, sans, e) : 0;
}
