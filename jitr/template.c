/*
 * AWS JITP provisioning templates and IoT policy documents, offline (docs/aws-iot.md, "JITP
 * templates" and "Resource limits").
 *
 * A JITP user's template runs unchanged: the same Parameters (the AWS::IoT::Certificate::*
 * built-ins, read from the certificate's subject), the same Resources (AWS::IoT::Thing,
 * AWS::IoT::Certificate, AWS::IoT::Policy) and intrinsic functions (Ref, Fn::Join, Fn::Sub,
 * Fn::Select, Fn::Split). What jitrca deliberately refuses: a policy that differs per device (a
 * CreatePolicy per device exhausts the 10 TPS CreatePolicy quota and the account's policies;
 * use policy variables instead), Mappings/Fn::FindInMap (fleet-provisioning only).
 *
 * Parse time checks the whole structure by evaluating every expression once with placeholder
 * parameter values, so a template that loads can only fail later for a parameter the
 * certificate lacks (which AWS treats as a provisioning failure too).
 *
 * Policy checks: size counted as AWS does (characters without whitespace), the grammar subset
 * IoT policies use, policy variables AWS documents, and least privilege: no Allow of iot:* (or
 * *) on the resource *.
 */
#include <ctype.h>
#include <strings.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "core/mem.h"
#include "aws/endpoint.h"
#include "ca/issue.h"
#include "core/util.h"
#include "jitr/jitr.h"

#define P_CERT "AWS::IoT::Certificate::"

struct tpl_policy {
    struct jitr_policy pub; /* name, doc, hash point into the members below */
    char *name;
    char *doc;
    char hash[65];
};

struct jitr_template {
    json_t *root;
    char *origin;
    json_t *params; /* borrowed from root: name -> {"Type", "Default"} */
    json_t *thing;  /* the AWS::IoT::Thing resource */
    json_t *cert;   /* AWS::IoT::Certificate, or NULL */
    struct tpl_policy pol[JITR_POLICIES_MAX];
    size_t npol;
    enum jitr_override status_override; /* the certificate's OverrideSettings.Status */
};

/* ---- parameters ----------------------------------------------------------------------------- */

void jitr_params_release(struct jitr_params *p)
{
    for (size_t i = 0; i < p->n; i++) {
        xfree(p->names[i]);
        xfree(p->values[i]);
    }
    xfree(p->names);
    xfree(p->values);
    memset(p, 0, sizeof(*p));
}

void jitr_params_set(struct jitr_params *p, const char *name, const char *value)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->names[i], name) == 0) {
            xfree(p->values[i]);
            p->values[i] = xstrdup(value);
            return;
        }
    }
    p->names = xrealloc(p->names, (p->n + 1) * sizeof(*p->names));
    p->values = xrealloc(p->values, (p->n + 1) * sizeof(*p->values));
    p->names[p->n] = xstrdup(name);
    p->values[p->n] = xstrdup(value);
    p->n++;
}

const char *jitr_params_get(const struct jitr_params *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->names[i], name) == 0) {
            return p->values[i];
        }
    }
    return NULL;
}

void jitr_params_from_cert(X509 *cert, const char *cert_id, struct jitr_params *out)
{
    static const struct {
        int nid;
        const char *name;
    } fields[] = {
        { NID_commonName, P_CERT "CommonName" },
        { NID_serialNumber, P_CERT "SerialNumber" },
        { NID_organizationName, P_CERT "Organization" },
        { NID_organizationalUnitName, P_CERT "OrganizationalUnit" },
        { NID_countryName, P_CERT "Country" },
        { NID_stateOrProvinceName, P_CERT "StateName" },
        { NID_dnQualifier, P_CERT "DistinguishedNameQualifier" },
    };
    const X509_NAME *subj = X509_get_subject_name(cert);
    for (size_t i = 0; i < ARRAY_LEN(fields); i++) {
        int idx = X509_NAME_get_index_by_NID(subj, fields[i].nid, -1);
        const ASN1_STRING *d;
        unsigned char *utf8 = NULL;
        int n;
        if (idx < 0) {
            continue;
        }
        d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
        n = ASN1_STRING_to_UTF8(&utf8, d);
        if (n >= 0 && utf8 != NULL && memchr(utf8, '\0', (size_t)n) == NULL) {
            jitr_params_set(out, fields[i].name, (const char *)utf8);
        }
        OPENSSL_free(utf8);
    }
    jitr_params_set(out, P_CERT "Id", cert_id);
    {
        char hex[131];
        if (ca_serial_hex(X509_get0_serialNumber(cert), hex, sizeof(hex)) == 0) {
            jitr_params_set(out, "jitrca::SerialHex", hex);
        }
    }
}

/* ---- evaluation ----------------------------------------------------------------------------- */

/* Evaluates v to a new string or array-of-strings reference. */
static json_t *eval(const struct jitr_template *t, const json_t *v, const struct jitr_params *p,
                    const char *where, struct err *e);

static const char *param_value(const struct jitr_template *t, const struct jitr_params *p,
                               const char *name, const char *where, struct err *e)
{
    json_t *decl = json_object_get(t->params, name);
    const char *val;
    if (decl == NULL) {
        err_set(e, ERRC_INVALID, "%s: %s: Ref '%s' names no declared parameter", t->origin,
                where, name);
        return NULL;
    }
    val = p ? jitr_params_get(p, name) : "placeholder";
    if (val == NULL) {
        json_t *def = json_object_get(decl, "Default");
        if (json_is_string(def)) {
            return json_string_value(def);
        }
        err_set(e, ERRC_INVALID, "%s: parameter '%s' has no value (the certificate lacks it) "
                "and no Default", t->origin, name);
        return NULL;
    }
    return val;
}

static json_t *eval_sub(const struct jitr_template *t, const json_t *arg,
                        const struct jitr_params *p, const char *where, struct err *e)
{
    const json_t *str = arg, *vars = NULL;
    struct buf out = BUF_INIT;
    const char *s;
    json_t *res = NULL;
    if (json_is_array(arg)) {
        if (json_array_size(arg) != 2 || !json_is_object(json_array_get(arg, 1))) {
            err_set(e, ERRC_INVALID, "%s: %s: Fn::Sub takes a string or [string, {vars}]",
                    t->origin, where);
            return NULL;
        }
        str = json_array_get(arg, 0);
        vars = json_array_get(arg, 1);
    }
    if (!json_is_string(str)) {
        err_set(e, ERRC_INVALID, "%s: %s: Fn::Sub needs a string", t->origin, where);
        return NULL;
    }
    s = json_string_value(str);
    while (*s) {
        const char *end;
        char name[256];
        size_t n;
        if (s[0] != '$' || s[1] != '{') {
            buf_addch(&out, *s++);
            continue;
        }
        if (s[2] == '!') { /* ${!Literal} stays "${Literal}" */
            end = strchr(s, '}');
            if (end == NULL) {
                break;
            }
            buf_addstr(&out, "${");
            buf_add(&out, s + 3, (size_t)(end - s - 3));
            buf_addch(&out, '}');
            s = end + 1;
            continue;
        }
        end = strchr(s, '}');
        n = end ? (size_t)(end - s - 2) : 0;
        if (end == NULL || n == 0 || n >= sizeof(name)) {
            err_set(e, ERRC_INVALID, "%s: %s: Fn::Sub has an unterminated or empty ${}",
                    t->origin, where);
            goto out;
        }
        memcpy(name, s + 2, n);
        name[n] = '\0';
        if (vars != NULL && json_object_get(vars, name) != NULL) {
            json_t *v = eval(t, json_object_get(vars, name), p, where, e);
            if (v == NULL) {
                goto out;
            }
            if (!json_is_string(v)) {
                json_decref(v);
                err_set(e, ERRC_INVALID, "%s: %s: Fn::Sub variable '%s' is not a string",
                        t->origin, where, name);
                goto out;
            }
            buf_addstr(&out, json_string_value(v));
            json_decref(v);
        } else {
            const char *val = param_value(t, p, name, where, e);
            if (val == NULL) {
                goto out;
            }
            buf_addstr(&out, val);
        }
        s = end + 1;
    }
    res = json_string(buf_cstr(&out));
out:
    buf_release(&out);
    return res;
}

static json_t *eval(const struct jitr_template *t, const json_t *v, const struct jitr_params *p,
                    const char *where, struct err *e)
{
    const char *fn;
    json_t *arg;
    if (json_is_string(v)) {
        return json_string(json_string_value(v));
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        size_t i;
        json_t *item;
        json_array_foreach (v, i, item) {
            json_t *x = eval(t, item, p, where, e);
            if (x == NULL || !json_is_string(x)) {
                if (x != NULL) {
                    err_set(e, ERRC_INVALID, "%s: %s: list items must be strings", t->origin,
                            where);
                }
                json_decref(x);
                json_decref(out);
                return NULL;
            }
            json_array_append_new(out, x);
        }
        return out;
    }
    if (!json_is_object(v) || json_object_size(v) != 1) {
        err_set(e, ERRC_INVALID, "%s: %s: expected a string, a list or one intrinsic function",
                t->origin, where);
        return NULL;
    }
    fn = json_object_iter_key(json_object_iter((json_t *)(uintptr_t)v));
    arg = json_object_get(v, fn);
    if (strcmp(fn, "Ref") == 0) {
        const char *val;
        if (!json_is_string(arg)) {
            err_set(e, ERRC_INVALID, "%s: %s: Ref takes a parameter name", t->origin, where);
            return NULL;
        }
        val = param_value(t, p, json_string_value(arg), where, e);
        return val ? json_string(val) : NULL;
    }
    if (strcmp(fn, "Fn::Join") == 0) {
        json_t *list, *out;
        struct buf b = BUF_INIT;
        size_t i;
        json_t *item;
        if (!json_is_array(arg) || json_array_size(arg) != 2 ||
            !json_is_string(json_array_get(arg, 0))) {
            err_set(e, ERRC_INVALID, "%s: %s: Fn::Join takes [delimiter, [values]]", t->origin,
                    where);
            return NULL;
        }
        list = eval(t, json_array_get(arg, 1), p, where, e);
        if (list == NULL) {
            return NULL;
        }
        if (!json_is_array(list)) {
            json_decref(list);
            err_set(e, ERRC_INVALID, "%s: %s: Fn::Join needs a list", t->origin, where);
            return NULL;
        }
        json_array_foreach (list, i, item) {
            if (i > 0) {
                buf_addstr(&b, json_string_value(json_array_get(arg, 0)));
            }
            buf_addstr(&b, json_string_value(item));
        }
        out = json_string(buf_cstr(&b));
        buf_release(&b);
        json_decref(list);
        return out;
    }
    if (strcmp(fn, "Fn::Sub") == 0) {
        return eval_sub(t, arg, p, where, e);
    }
    if (strcmp(fn, "Fn::Split") == 0) {
        json_t *src, *out;
        const char *d, *s;
        if (!json_is_array(arg) || json_array_size(arg) != 2 ||
            !json_is_string(json_array_get(arg, 0)) ||
            json_string_length(json_array_get(arg, 0)) == 0) {
            err_set(e, ERRC_INVALID, "%s: %s: Fn::Split takes [delimiter, string]", t->origin,
                    where);
            return NULL;
        }
        src = eval(t, json_array_get(arg, 1), p, where, e);
        if (src == NULL) {
            return NULL;
        }
        if (!json_is_string(src)) {
            json_decref(src);
            err_set(e, ERRC_INVALID, "%s: %s: Fn::Split needs a string", t->origin, where);
            return NULL;
        }
        d = json_string_value(json_array_get(arg, 0));
        s = json_string_value(src);
        out = json_array();
        for (;;) {
            const char *hit = strstr(s, d);
            if (hit == NULL) {
                json_array_append_new(out, json_string(s));
                break;
            }
            json_array_append_new(out, json_stringn(s, (size_t)(hit - s)));
            s = hit + strlen(d);
        }
        json_decref(src);
        return out;
    }
    if (strcmp(fn, "Fn::Select") == 0) {
        json_t *list, *out;
        json_int_t idx = -1;
        json_t *ix;
        if (!json_is_array(arg) || json_array_size(arg) != 2) {
            err_set(e, ERRC_INVALID, "%s: %s: Fn::Select takes [index, list]", t->origin, where);
            return NULL;
        }
        ix = json_array_get(arg, 0);
        if (json_is_integer(ix)) {
            idx = json_integer_value(ix);
        } else if (json_is_string(ix)) {
            uint64_t u;
            if (str_to_u64(json_string_value(ix), &u) == 0 && u < 1000000) {
                idx = (json_int_t)u;
            }
        }
        if (idx < 0) {
            err_set(e, ERRC_INVALID, "%s: %s: Fn::Select index must be a non-negative integer",
                    t->origin, where);
            return NULL;
        }
        list = eval(t, json_array_get(arg, 1), p, where, e);
        if (list == NULL) {
            return NULL;
        }
        if (!json_is_array(list)) {
            json_decref(list);
            err_set(e, ERRC_INVALID, "%s: %s: Fn::Select needs a list", t->origin, where);
            return NULL;
        }
        if ((size_t)idx >= json_array_size(list)) {
            /* placeholder values split into fewer items: only a real certificate can tell */
            json_decref(list);
            if (p == NULL) {
                return json_string("placeholder");
            }
            err_set(e, ERRC_INVALID, "%s: %s: Fn::Select index %lld is past the list's end",
                    t->origin, where, (long long)idx);
            return NULL;
        }
        out = json_incref(json_array_get(list, (size_t)idx));
        json_decref(list);
        return out;
    }
    err_set(e, ERRC_INVALID, "%s: %s: unsupported function '%s' (Ref, Fn::Join, Fn::Sub, "
            "Fn::Select, Fn::Split)", t->origin, where, fn);
    return NULL;
}

static char *eval_str(const struct jitr_template *t, const json_t *v, const struct jitr_params *p,
                      const char *where, struct err *e)
{
    json_t *x = eval(t, v, p, where, e);
    char *s = NULL;
    if (x == NULL) {
        return NULL;
    }
    if (!json_is_string(x)) {
        err_set(e, ERRC_INVALID, "%s: %s must be a string", t->origin, where);
    } else {
        s = xstrdup(json_string_value(x));
    }
    json_decref(x);
    return s;
}

/* The AWS IoT model's constraints (botocore's iot service model): ThingName, ThingTypeName,
 * ThingGroupName and BillingGroupName 1..128 of [a-zA-Z0-9:_-]; AttributeName 1..128 of
 * [a-zA-Z0-9_.,@/:#-]; AttributeValue 0..800 of [a-zA-Z0-9_.,@/:#=\[\]-]; PolicyName 1..128
 * of [\w+=,.@-] (\w is [a-zA-Z0-9_]). */
static const struct {
    size_t min, max;
    const char *extra; /* allowed besides ASCII letters and digits */
    const char *rule;  /* for messages */
} name_rules[] = {
    [JITR_NAME_THING] = { 1, 128, ":_-", "1..128 of [a-zA-Z0-9:_-]" },
    [JITR_NAME_THING_TYPE] = { 1, 128, ":_-", "1..128 of [a-zA-Z0-9:_-]" },
    [JITR_NAME_THING_GROUP] = { 1, 128, ":_-", "1..128 of [a-zA-Z0-9:_-]" },
    [JITR_NAME_BILLING_GROUP] = { 1, 128, ":_-", "1..128 of [a-zA-Z0-9:_-]" },
    [JITR_NAME_ATTR] = { 1, 128, "_.,@/:#-", "1..128 of [a-zA-Z0-9_.,@/:#-]" },
    [JITR_NAME_ATTR_VALUE] = { 0, 800, "_.,@/:#=[]-", "0..800 of [a-zA-Z0-9_.,@/:#=[]-]" },
    [JITR_NAME_POLICY] = { 1, 128, "_+=,.@-", "1..128 of [a-zA-Z0-9_+=,.@-]" },
};

bool jitr_name_ok(enum jitr_name_kind k, const char *s)
{
    size_t n = strlen(s);
    if ((unsigned)k >= ARRAY_LEN(name_rules) || n < name_rules[k].min || n > name_rules[k].max) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(name_rules[k].extra, c) != NULL)) {
            return false;
        }
    }
    return true;
}

const char *jitr_name_rule(enum jitr_name_kind k)
{
    return (unsigned)k < ARRAY_LEN(name_rules) ? name_rules[k].rule : "?";
}

bool jitr_thing_name_ok(const char *s)
{
    return jitr_name_ok(JITR_NAME_THING, s);
}

void jitr_plan_release(struct jitr_plan *p)
{
    xfree(p->thing_name);
    xfree(p->thing_type);
    xfree(p->billing_group);
    json_decref(p->attributes);
    for (size_t i = 0; i < p->ngroups; i++) {
        xfree(p->groups[i]);
    }
    xfree(p->groups);
    memset(p, 0, sizeof(*p));
}

/* OverrideSettings.<prop> of a resource; the documentation also spells the thing's properties
 * ATTRIBUTE_PAYLOAD, THING_TYPE_NAME and THING_GROUPS. merge_ok: MERGE is allowed. */
static int override_parse(const struct jitr_template *t, const json_t *res, const char *what,
                          const char *prop, const char *alias, bool merge_ok,
                          enum jitr_override *out, struct err *e)
{
    json_t *ovr = json_object_get(res, "OverrideSettings");
    json_t *o = json_object_get(ovr, prop);
    const char *s;
    *out = JITR_OVR_DO_NOTHING;
    if (o == NULL && alias != NULL) {
        o = json_object_get(ovr, alias);
    }
    if (o == NULL) {
        return 0;
    }
    s = json_is_string(o) ? json_string_value(o) : "";
    if (strcmp(s, "DO_NOTHING") == 0) {
        *out = JITR_OVR_DO_NOTHING;
    } else if (strcmp(s, "REPLACE") == 0) {
        *out = JITR_OVR_REPLACE;
    } else if (strcmp(s, "MERGE") == 0 && merge_ok) {
        *out = JITR_OVR_MERGE;
    } else if (strcmp(s, "FAIL") == 0) {
        *out = JITR_OVR_FAIL;
    } else {
        return err_set(e, ERRC_INVALID, "%s: %s OverrideSettings.%s must be DO_NOTHING, "
                       "REPLACE%s or FAIL", t->origin, what, prop, merge_ok ? ", MERGE" : "");
    }
    return 0;
}

/* OverrideSettings may only name the properties AWS documents. */
static int override_keys(const struct jitr_template *t, const json_t *res, const char *what,
                         const char *const *keys, size_t n, struct err *e)
{
    json_t *ovr = json_object_get(res, "OverrideSettings");
    const char *k;
    json_t *v;
    if (ovr == NULL) {
        return 0;
    }
    if (!json_is_object(ovr)) {
        return err_set(e, ERRC_INVALID, "%s: %s OverrideSettings must be an object", t->origin,
                       what);
    }
    json_object_foreach (ovr, k, v) {
        size_t i = 0;
        while (i < n && strcmp(keys[i], k) != 0) {
            i++;
        }
        if (i == n) {
            return err_set(e, ERRC_INVALID, "%s: %s OverrideSettings.%.64s is not a setting AWS "
                           "knows", t->origin, what, k);
        }
    }
    return 0;
}

/* A name the template evaluated: checked against the model (p NULL: placeholder values, only
 * real parameters can tell). */
static int name_check(const struct jitr_template *t, const struct jitr_params *p,
                      enum jitr_name_kind k, const char *what, const char *v, struct err *e)
{
    if (p != NULL && !jitr_name_ok(k, v)) {
        return err_set(e, ERRC_INVALID, "%s: %s '%.128s' is not %s", t->origin, what, v,
                       jitr_name_rule(k));
    }
    return 0;
}

/* p NULL: structural check with placeholder values. */
static int plan_build(const struct jitr_template *t, const struct jitr_params *p,
                      struct jitr_plan *out, struct err *e)
{
    json_t *props = json_object_get(t->thing, "Properties");
    json_t *v;
    memset(out, 0, sizeof(*out));
    out->activate = true;
    out->status_override = t->status_override;
    v = json_object_get(props, "ThingName");
    if (v == NULL) {
        err_set(e, ERRC_INVALID, "%s: the AWS::IoT::Thing resource needs Properties.ThingName",
                t->origin);
        goto fail;
    }
    out->thing_name = eval_str(t, v, p, "ThingName", e);
    if (out->thing_name == NULL ||
        name_check(t, p, JITR_NAME_THING, "thing name", out->thing_name, e) != 0) {
        goto fail;
    }
    if ((v = json_object_get(props, "ThingTypeName")) != NULL &&
        ((out->thing_type = eval_str(t, v, p, "ThingTypeName", e)) == NULL ||
         name_check(t, p, JITR_NAME_THING_TYPE, "thing type", out->thing_type, e) != 0)) {
        goto fail;
    }
    if ((v = json_object_get(props, "BillingGroup")) != NULL &&
        ((out->billing_group = eval_str(t, v, p, "BillingGroup", e)) == NULL ||
         name_check(t, p, JITR_NAME_BILLING_GROUP, "billing group", out->billing_group, e) !=
             0)) {
        goto fail;
    }
    if ((v = json_object_get(props, "AttributePayload")) != NULL) {
        const char *k;
        json_t *av;
        if (!json_is_object(v)) {
            err_set(e, ERRC_INVALID, "%s: AttributePayload must be an object", t->origin);
            goto fail;
        }
        out->attributes = json_object();
        json_object_foreach (v, k, av) {
            char where[200];
            char *s;
            snprintf(where, sizeof(where), "AttributePayload.%.128s", k);
            if (!jitr_name_ok(JITR_NAME_ATTR, k)) {
                err_set(e, ERRC_INVALID, "%s: attribute name '%.128s' is not %s", t->origin, k,
                        jitr_name_rule(JITR_NAME_ATTR));
                goto fail;
            }
            s = eval_str(t, av, p, where, e);
            if (s == NULL) {
                goto fail;
            }
            if (p != NULL && !jitr_name_ok(JITR_NAME_ATTR_VALUE, s)) {
                err_set(e, ERRC_INVALID, "%s: attribute '%.64s' value '%.64s' is not %s",
                        t->origin, k, s, jitr_name_rule(JITR_NAME_ATTR_VALUE));
                xfree(s);
                goto fail;
            }
            json_object_set_new(out->attributes, k, json_string(s));
            xfree(s);
        }
    }
    if ((v = json_object_get(props, "ThingGroups")) != NULL) {
        json_t *list = eval(t, v, p, "ThingGroups", e);
        size_t i;
        json_t *g;
        if (list == NULL) {
            goto fail;
        }
        if (!json_is_array(list)) {
            json_decref(list);
            err_set(e, ERRC_INVALID, "%s: ThingGroups must be a list", t->origin);
            goto fail;
        }
        out->groups = xcalloc(json_array_size(list) + 1, sizeof(*out->groups));
        json_array_foreach (list, i, g) {
            const char *name = json_string_value(g);
            bool dup = false;
            if (name_check(t, p, JITR_NAME_THING_GROUP, "thing group", name, e) != 0) {
                json_decref(list);
                goto fail;
            }
            for (size_t k = 0; k < out->ngroups; k++) {
                dup = dup || strcmp(out->groups[k], name) == 0;
            }
            if (!dup) {
                out->groups[out->ngroups++] = xstrdup(name);
            }
        }
        json_decref(list);
    }
    {
        static const char *const keys[] = { "AttributePayload", "ThingTypeName", "ThingGroups",
                                            "ATTRIBUTE_PAYLOAD", "THING_TYPE_NAME",
                                            "THING_GROUPS" };
        if (override_keys(t, t->thing, "thing", keys, ARRAY_LEN(keys), e) != 0 ||
            override_parse(t, t->thing, "thing", "AttributePayload", "ATTRIBUTE_PAYLOAD", true,
                           &out->thing_override, e) != 0 ||
            override_parse(t, t->thing, "thing", "ThingTypeName", "THING_TYPE_NAME", false,
                           &out->type_override, e) != 0 ||
            override_parse(t, t->thing, "thing", "ThingGroups", "THING_GROUPS", true,
                           &out->groups_override, e) != 0) {
            goto fail;
        }
    }
    if (t->cert != NULL) {
        json_t *st = json_object_get(json_object_get(t->cert, "Properties"), "Status");
        if (st != NULL) {
            char *s = eval_str(t, st, p, "Certificate.Status", e);
            if (s == NULL) {
                goto fail;
            }
            /* the documentation writes ACTIVE and, in one example, Active */
            if (strcasecmp(s, "INACTIVE") == 0) {
                out->activate = false;
            } else if (strcasecmp(s, "ACTIVE") != 0 && (p != NULL || strcmp(s, "placeholder"))) {
                err_set(e, ERRC_INVALID, "%s: certificate Status must be ACTIVE or INACTIVE, not "
                        "'%.32s'", t->origin, s);
                xfree(s);
                goto fail;
            }
            xfree(s);
        }
    }
    return 0;
fail:
    jitr_plan_release(out);
    return -1;
}

int jitr_template_eval(const struct jitr_template *t, const struct jitr_params *p,
                       struct jitr_plan *out, struct err *e)
{
    return plan_build(t, p, out, e);
}

void jitr_template_free(struct jitr_template *t)
{
    if (t == NULL) {
        return;
    }
    json_decref(t->root);
    xfree(t->origin);
    for (size_t i = 0; i < t->npol; i++) {
        xfree(t->pol[i].name);
        xfree(t->pol[i].doc);
    }
    xfree(t);
}

/* Adds a policy (name, doc: "" for an existing one); the same policy twice is attached once. */
static int policy_add(struct jitr_template *t, const char *name, const char *doc, bool versioned,
                      struct err *e)
{
    struct tpl_policy *p;
    for (size_t i = 0; i < t->npol; i++) {
        if (strcmp(t->pol[i].name, name) == 0) {
            if (strcmp(t->pol[i].doc, doc) != 0) {
                return err_set(e, ERRC_INVALID, "%s: two policies named '%.128s' with different "
                               "documents", t->origin, name);
            }
            return 0;
        }
    }
    if (t->npol == JITR_POLICIES_MAX) {
        return err_set(e, ERRC_INVALID, "%s: more than %d policies (AWS attaches at most %d to a "
                       "certificate)", t->origin, JITR_POLICIES_MAX, JITR_POLICIES_MAX);
    }
    p = &t->pol[t->npol++];
    p->name = xstrdup(name);
    p->doc = xstrdup(doc);
    sha256_hex(doc, strlen(doc), p->hash);
    p->pub = (struct jitr_policy){ p->name, p->doc, p->hash, versioned };
    return 0;
}

/* One AWS::IoT::Policy resource (key k): PolicyName (an existing policy: *name_out) or
 * PolicyDocument (a string or an object, a policy of ours: *doc_out, its text). */
static int policy_parse(struct jitr_template *t, const char *k, const json_t *res,
                        char **name_out, char **doc_out, struct err *e)
{
    json_t *pp = json_object_get(res, "Properties");
    json_t *pn = json_object_get(pp, "PolicyName"), *pd = json_object_get(pp, "PolicyDocument");
    *doc_out = *name_out = NULL;
    if (json_object_get(res, "OverrideSettings") != NULL) {
        return err_set(e, ERRC_INVALID, "%s: policy '%.64s': OverrideSettings are not available "
                       "for policies", t->origin, k);
    }
    if ((pn == NULL) == (pd == NULL)) {
        return err_set(e, ERRC_INVALID, "%s: policy '%.64s' needs PolicyName (an existing "
                       "policy) or PolicyDocument, not both", t->origin, k);
    }
    if (pn != NULL) {
        if (!json_is_string(pn) || !jitr_name_ok(JITR_NAME_POLICY, json_string_value(pn))) {
            return err_set(e, ERRC_INVALID, "%s: policy '%.64s': PolicyName must be a constant "
                           "name of %s (a policy shared by every device)", t->origin, k,
                           jitr_name_rule(JITR_NAME_POLICY));
        }
        *name_out = xstrdup(json_string_value(pn));
        return 0;
    }
    if (json_is_object(pd) && json_object_size(pd) == 1 &&
        (json_object_get(pd, "Ref") != NULL ||
         str_has_prefix(json_object_iter_key(json_object_iter((json_t *)(uintptr_t)pd)),
                        "Fn::"))) {
        pd = NULL; /* a function: a document per device */
    }
    if (json_is_string(pd)) {
        *doc_out = xstrdup(json_string_value(pd));
    } else if (json_is_object(pd)) {
        *doc_out = json_dumps(pd, JSON_COMPACT);
    }
    if (*doc_out == NULL) {
        return err_set(e, ERRC_INVALID, "%s: policy '%.64s': PolicyDocument must be a constant "
                       "string or object: a per-device policy costs a CreatePolicy per device; "
                       "use policy variables such as ${iot:Connection.Thing.ThingName}",
                       t->origin, k);
    }
    if (jitr_policy_check(*doc_out, strlen(*doc_out), e) != 0) {
        xfree(*doc_out);
        *doc_out = NULL;
        return err_prefix(e, "%s: policy '%.64s': PolicyDocument", t->origin, k);
    }
    return 0;
}

struct jitr_template *jitr_template_parse(const char *text, size_t len, const char *origin,
                                          const char *policy_name, struct err *e)
{
    struct jitr_template *t = xcalloc(1, sizeof(*t));
    json_error_t je;
    json_t *res, *r;
    const char *k;
    struct jitr_plan plan;
    struct {
        char *text; /* the document, or the existing policy's name */
        bool is_doc;
    } pols[JITR_POLICIES_MAX] = { { NULL, false } };
    size_t ndocs = 0, npolres = 0;
    t->origin = xstrdup(origin ? origin : "template");
    if (len > 10240) {
        err_set(e, ERRC_INVALID, "%s: %zu bytes; AWS allows a templateBody of at most 10240",
                t->origin, len);
        goto fail;
    }
    t->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (t->root == NULL) {
        err_set(e, ERRC_INVALID, "%s: not JSON: %s (line %d, column %d)", t->origin, je.text,
                je.line, je.column);
        goto fail;
    }
    if (!json_is_object(t->root)) {
        err_set(e, ERRC_INVALID, "%s: a template is a JSON object", t->origin);
        goto fail;
    }
    json_object_foreach (t->root, k, r) {
        if (strcmp(k, "Parameters") != 0 && strcmp(k, "Resources") != 0) {
            err_set(e, ERRC_INVALID, "%s: unsupported top-level key '%.64s' (Parameters, "
                    "Resources)", t->origin, k);
            goto fail;
        }
    }
    t->params = json_object_get(t->root, "Parameters");
    if (t->params == NULL) {
        json_object_set_new(t->root, "Parameters", json_object());
        t->params = json_object_get(t->root, "Parameters");
    }
    if (!json_is_object(t->params)) {
        err_set(e, ERRC_INVALID, "%s: Parameters must be an object", t->origin);
        goto fail;
    }
    json_object_foreach (t->params, k, r) {
        json_t *ty = json_object_get(r, "Type");
        if (!json_is_object(r) || !json_is_string(ty) ||
            strcmp(json_string_value(ty), "String") != 0) {
            err_set(e, ERRC_INVALID, "%s: parameter '%.128s' needs \"Type\": \"String\"",
                    t->origin, k);
            goto fail;
        }
        if (json_object_get(r, "Default") && !json_is_string(json_object_get(r, "Default"))) {
            err_set(e, ERRC_INVALID, "%s: parameter '%.128s': Default must be a string",
                    t->origin, k);
            goto fail;
        }
    }
    res = json_object_get(t->root, "Resources");
    if (!json_is_object(res) || json_object_size(res) == 0) {
        err_set(e, ERRC_INVALID, "%s: Resources must be a non-empty object", t->origin);
        goto fail;
    }
    json_object_foreach (res, k, r) {
        json_t *ty = json_object_get(r, "Type");
        const char *type = json_is_string(ty) ? json_string_value(ty) : "";
        json_t **slot;
        if (!json_is_object(r) || !json_is_object(json_object_get(r, "Properties"))) {
            err_set(e, ERRC_INVALID, "%s: resource '%.64s' needs Type and Properties", t->origin,
                    k);
            goto fail;
        }
        if (strcmp(type, "AWS::IoT::Policy") == 0) {
            char *name = NULL, *doc = NULL;
            if (npolres == JITR_POLICIES_MAX) {
                err_set(e, ERRC_INVALID, "%s: more than %d policies (AWS attaches at most %d to "
                        "a certificate)", t->origin, JITR_POLICIES_MAX, JITR_POLICIES_MAX);
                goto fail;
            }
            if (policy_parse(t, k, r, &name, &doc, e) != 0) {
                goto fail;
            }
            pols[npolres].text = doc ? doc : name;
            pols[npolres++].is_doc = doc != NULL;
            ndocs += doc != NULL;
            continue;
        }
        if (strcmp(type, "AWS::IoT::Thing") == 0) {
            slot = &t->thing;
        } else if (strcmp(type, "AWS::IoT::Certificate") == 0) {
            slot = &t->cert;
        } else {
            err_set(e, ERRC_INVALID, "%s: resource '%.64s' has unsupported Type '%.64s' "
                    "(AWS::IoT::Thing, AWS::IoT::Certificate, AWS::IoT::Policy)", t->origin, k,
                    type);
            goto fail;
        }
        if (*slot != NULL) {
            err_set(e, ERRC_INVALID, "%s: more than one %s resource", t->origin, type);
            goto fail;
        }
        *slot = r;
    }
    if (t->thing == NULL) {
        err_set(e, ERRC_INVALID, "%s: an AWS::IoT::Thing resource is required", t->origin);
        goto fail;
    }
    if (npolres == 0) {
        err_set(e, ERRC_INVALID, "%s: an AWS::IoT::Policy resource is required (a certificate "
                "without a policy cannot connect)", t->origin);
        goto fail;
    }
    /* a document without a name is named by its hash (editing the template makes a new policy;
     * devices provisioned before keep theirs); jitr.policy_name names the one document instead,
     * and editing it then adds a version that every device attached to it gets */
    if (policy_name != NULL && policy_name[0] != '\0' && ndocs > 0) {
        if (ndocs != 1) {
            err_set(e, ERRC_INVALID, "%s: jitr.policy_name names the template's one "
                    "PolicyDocument, and it has %zu", t->origin, ndocs);
            goto fail;
        }
        if (!jitr_name_ok(JITR_NAME_POLICY, policy_name)) {
            err_set(e, ERRC_INVALID, "%s: policy name '%.128s' is not %s", t->origin,
                    policy_name, jitr_name_rule(JITR_NAME_POLICY));
            goto fail;
        }
    }
    for (size_t i = 0; i < npolres; i++) {
        char name[65];
        int prc;
        if (!pols[i].is_doc) {
            prc = policy_add(t, pols[i].text, "", false, e);
        } else if (policy_name != NULL && policy_name[0] != '\0') {
            prc = policy_add(t, policy_name, pols[i].text, true, e);
        } else {
            sha256_hex(pols[i].text, strlen(pols[i].text), name);
            prc = policy_add(t, name, pols[i].text, false, e);
        }
        if (prc != 0) {
            goto fail;
        }
    }
    if (t->cert != NULL) {
        json_t *cp = json_object_get(t->cert, "Properties");
        json_t *cid = json_object_get(cp, "CertificateId");
        static const char *const keys[] = { "Status" };
        if (json_object_get(cp, "CertificateSigningRequest")) {
            err_set(e, ERRC_INVALID, "%s: CertificateSigningRequest is fleet provisioning, not "
                    "JITP: use CertificateId", t->origin);
            goto fail;
        }
        if (cid != NULL) {
            char *s = eval_str(t, cid, NULL, "CertificateId", e);
            if (s == NULL) {
                goto fail;
            }
            xfree(s);
        }
        if (override_keys(t, t->cert, "certificate", keys, 1, e) != 0 ||
            override_parse(t, t->cert, "certificate", "Status", NULL, false, &t->status_override,
                           e) != 0) {
            goto fail;
        }
    }
    if (plan_build(t, NULL, &plan, e) != 0) {
        goto fail;
    }
    jitr_plan_release(&plan);
    for (size_t i = 0; i < npolres; i++) {
        xfree(pols[i].text);
    }
    return t;
fail:
    for (size_t i = 0; i < npolres; i++) {
        xfree(pols[i].text);
    }
    jitr_template_free(t);
    return NULL;
}

struct jitr_template *jitr_template_load(const char *path, const char *policy_name,
                                         struct err *e)
{
    struct buf b = BUF_INIT;
    struct jitr_template *t = NULL;
    if (file_read_all(path, 65536, &b, e) == 0) {
        t = jitr_template_parse(b.data, b.len, path, policy_name, e);
    }
    buf_release(&b);
    return t;
}

size_t jitr_template_npolicies(const struct jitr_template *t)
{
    return t->npol;
}

const struct jitr_policy *jitr_template_policy(const struct jitr_template *t, size_t i)
{
    return i < t->npol ? &t->pol[i].pub : NULL;
}

const char *jitr_template_origin(const struct jitr_template *t)
{
    return t->origin;
}

enum jitr_override jitr_template_status_override(const struct jitr_template *t)
{
    return t->status_override;
}

/* ---- policies ------------------------------------------------------------------------------- */

size_t jitr_policy_size(const char *doc, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isspace((unsigned char)doc[i])) {
            n++;
        }
    }
    return n;
}

/* Policy variables AWS IoT documents (iot-policy-variables, thing-policy-variables). */
static bool variable_ok(const char *v, size_t n)
{
    static const char *const exact[] = {
        "iot:ClientId", "iot:Domain", "iot:Connection.Thing.ThingName",
        "iot:Connection.Thing.ThingTypeName", "iot:Connection.Thing.IsAttached",
        "aws:SourceIp", "iot:LastWillTopic",
    };
    static const char *const prefix[] = {
        "iot:Connection.Thing.Attributes[", "iot:Certificate.Subject.",
        "iot:Certificate.Issuer.", "iot:Certificate.SubjectAltName.",
        "iot:Certificate.Validity.", "iot:Certificate.SerialNumber",
        "iot:Certificate.IssuerAltName.", "iot:Certificate.Fingerprint", "iot:ClientCertificate.",
    };
    for (size_t i = 0; i < ARRAY_LEN(exact); i++) {
        if (strlen(exact[i]) == n && memcmp(exact[i], v, n) == 0) {
            return true;
        }
    }
    for (size_t i = 0; i < ARRAY_LEN(prefix); i++) {
        if (n > strlen(prefix[i]) - 1 && memcmp(prefix[i], v, strlen(prefix[i])) == 0) {
            return true;
        }
    }
    return false;
}

static int check_vars(const char *s, struct err *e)
{
    const char *p = s;
    while ((p = strstr(p, "${")) != NULL) {
        const char *end = strchr(p, '}');
        if (end == NULL) {
            return err_set(e, ERRC_INVALID, "policy: unterminated variable in '%.100s'", s);
        }
        if (!variable_ok(p + 2, (size_t)(end - p - 2))) {
            return err_set(e, ERRC_INVALID, "policy: unknown policy variable '%.*s'",
                           (int)(end - p + 1 > 100 ? 100 : end - p + 1), p);
        }
        p = end + 1;
    }
    return 0;
}

/* list: a string or an array of strings; fn checks each. */
static int each_string(const json_t *v, const char *what, size_t idx,
                       int (*fn)(const char *s, const char *what, size_t idx, struct err *e),
                       struct err *e)
{
    if (json_is_string(v)) {
        return fn(json_string_value(v), what, idx, e);
    }
    if (json_is_array(v) && json_array_size(v) > 0) {
        size_t i;
        json_t *x;
        json_array_foreach (v, i, x) {
            if (!json_is_string(x)) {
                return err_set(e, ERRC_INVALID, "policy: Statement[%zu].%s items must be "
                               "strings", idx, what);
            }
            if (fn(json_string_value(x), what, idx, e) != 0) {
                return -1;
            }
        }
        return 0;
    }
    return err_set(e, ERRC_INVALID, "policy: Statement[%zu].%s must be a string or a non-empty "
                   "list of strings", idx, what);
}

static int action_ok(const char *s, const char *what, size_t idx, struct err *e)
{
    (void)what;
    if (strcmp(s, "*") != 0 && !str_has_prefix(s, "iot:")) {
        return err_set(e, ERRC_INVALID, "policy: Statement[%zu]: action '%.64s' is not an iot: "
                       "action", idx, s);
    }
    return 0;
}

/* The length of "arn:PARTITION:iot:" at the start of s, for a partition AWS has (aws, aws-cn,
 * aws-us-gov, ...: aws/endpoint.h); 0 otherwise. */
static size_t iot_arn_prefix(const char *s)
{
    char part[32];
    const char *p = s + 4, *colon;
    if (!str_has_prefix(s, "arn:") || (colon = strchr(p, ':')) == NULL ||
        (size_t)(colon - p) >= sizeof part) {
        return 0;
    }
    memcpy(part, p, (size_t)(colon - p));
    part[colon - p] = '\0';
    return aws_partition_known(part) && str_has_prefix(colon, ":iot:") ?
           (size_t)(colon + 5 - s) : 0;
}

static int resource_ok(const char *s, const char *what, size_t idx, struct err *e)
{
    (void)what;
    if (strcmp(s, "*") != 0 && iot_arn_prefix(s) == 0 && !str_has_prefix(s, "arn:${")) {
        return err_set(e, ERRC_INVALID, "policy: Statement[%zu]: resource '%.100s' is not * or "
                       "an AWS IoT ARN (arn:PARTITION:iot:...)", idx, s);
    }
    return check_vars(s, e);
}

/* "*", or an IoT ARN of any partition that names every resource ("arn:aws-cn:iot:*:*:*") */
static bool resource_is_wild(const char *s)
{
    size_t n = iot_arn_prefix(s);
    return strcmp(s, "*") == 0 || (n > 0 && (strcmp(s + n, "*") == 0 ||
                                             strcmp(s + n, "*:*:*") == 0));
}

static bool any_resource_wild(const json_t *v)
{
    size_t i;
    json_t *x;
    if (json_is_string(v)) {
        return resource_is_wild(json_string_value(v));
    }
    json_array_foreach (v, i, x) {
        if (any_resource_wild(x)) {
            return true;
        }
    }
    return false;
}

static bool list_has(const json_t *v, const char *const *any, size_t n)
{
    size_t i;
    json_t *x;
    if (json_is_string(v)) {
        for (size_t k = 0; k < n; k++) {
            if (strcmp(json_string_value(v), any[k]) == 0) {
                return true;
            }
        }
        return false;
    }
    json_array_foreach (v, i, x) {
        if (list_has(x, any, n)) {
            return true;
        }
    }
    return false;
}

int jitr_policy_check(const char *doc, size_t len, struct err *e)
{
    json_error_t je;
    json_t *root = NULL, *st, *ver;
    size_t size = jitr_policy_size(doc, len);
    int rc = -1;
    if (size > JITR_POLICY_MAX) {
        return err_set(e, ERRC_INVALID, "policy: %zu characters without whitespace; AWS allows "
                       "%d", size, JITR_POLICY_MAX);
    }
    root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        return err_set(e, ERRC_INVALID, "policy: not JSON: %s (line %d, column %d)", je.text,
                       je.line, je.column);
    }
    if (!json_is_object(root)) {
        err_set(e, ERRC_INVALID, "policy: must be a JSON object");
        goto out;
    }
    ver = json_object_get(root, "Version");
    if (!json_is_string(ver) || strcmp(json_string_value(ver), "2012-10-17") != 0) {
        err_set(e, ERRC_INVALID, "policy: Version must be \"2012-10-17\"");
        goto out;
    }
    st = json_object_get(root, "Statement");
    if (json_is_object(st)) {
        json_t *a = json_array();
        json_array_append(a, st);
        json_object_set_new(root, "Statement", a);
        st = a;
    }
    if (!json_is_array(st) || json_array_size(st) == 0) {
        err_set(e, ERRC_INVALID, "policy: Statement must be a non-empty list");
        goto out;
    }
    {
        size_t i;
        json_t *s;
        json_array_foreach (st, i, s) {
            json_t *eff, *act, *resv;
            const char *k;
            json_t *x;
            static const char *const wild_act[] = { "*", "iot:*" };
            if (!json_is_object(s)) {
                err_set(e, ERRC_INVALID, "policy: Statement[%zu] must be an object", i);
                goto out;
            }
            json_object_foreach (s, k, x) {
                if (strcmp(k, "Effect") != 0 && strcmp(k, "Action") != 0 &&
                    strcmp(k, "Resource") != 0 && strcmp(k, "Condition") != 0 &&
                    strcmp(k, "Sid") != 0) {
                    err_set(e, ERRC_INVALID, "policy: Statement[%zu]: unsupported key '%.32s' "
                            "(Effect, Action, Resource, Condition, Sid)", i, k);
                    goto out;
                }
            }
            eff = json_object_get(s, "Effect");
            if (!json_is_string(eff) || (strcmp(json_string_value(eff), "Allow") != 0 &&
                                         strcmp(json_string_value(eff), "Deny") != 0)) {
                err_set(e, ERRC_INVALID, "policy: Statement[%zu].Effect must be Allow or Deny", i);
                goto out;
            }
            act = json_object_get(s, "Action");
            resv = json_object_get(s, "Resource");
            if (act == NULL || resv == NULL) {
                err_set(e, ERRC_INVALID, "policy: Statement[%zu] needs Action and Resource", i);
                goto out;
            }
            if (each_string(act, "Action", i, action_ok, e) != 0 ||
                each_string(resv, "Resource", i, resource_ok, e) != 0) {
                goto out;
            }
            if (strcmp(json_string_value(eff), "Allow") == 0 && list_has(act, wild_act, 2) &&
                any_resource_wild(resv)) {
                err_set(e, ERRC_INVALID, "policy: Statement[%zu] allows iot:* on * (AWS audit "
                        "IOT_POLICY_OVERLY_PERMISSIVE_CHECK); name the actions and the "
                        "device's own resources", i);
                goto out;
            }
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}
