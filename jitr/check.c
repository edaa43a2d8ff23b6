/*
 * Will the provisioning template work for our own devices? (jitrd --check-config, jitrctl
 * policy check). A template that needs a parameter our certificates lack, or that turns their
 * subject into a name AWS refuses, would send every such device to the dead letters; this finds
 * out before it runs.
 *
 * The fleet check evaluates the template against one representative certificate per pair of a
 * CA JITR serves and a profile with "jitr": true, built in memory: issued under the CA's name,
 * with the subject every certificate of the profile is sure to have (its required attributes,
 * neutral values, a CN its cn_pattern accepts) and a fresh P-256 key. An attribute the profile
 * only allows is absent, as it may be from a device's certificate. The certificate check does
 * the same for one real certificate.
 */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "ca/authority.h"
#include "ca/profile.h"
#include "core/mem.h"
#include "core/util.h"
#include "jitr/jitr.h"

/* Attributes of a profile that are also JITP parameters, with a neutral value each. */
static const struct {
    const char *attr; /* the profile's spelling */
    int nid;
    const char *param; /* AWS::IoT::Certificate::... */
    const char *value;
} rep_attrs[] = {
    { "C", NID_countryName, "Country", "US" },
    { "ST", NID_stateOrProvinceName, "StateName", "WA" },
    { "L", NID_localityName, NULL, "Seattle" },
    { "O", NID_organizationName, "Organization", "Example" },
    { "OU", NID_organizationalUnitName, "OrganizationalUnit", "Devices" },
    { "serialNumber", NID_serialNumber, "SerialNumber", "SN0001" },
};

/* CNs tried against the profile's cn_pattern, most plausible first. */
static const char *const rep_cns[] = { "device-0001", "device0001", "DEVICE-0001", "device_0001",
                                       "device:0001", "d0001",      "0001",        "D",
                                       "d",           "0" };

/* CNs with a character AWS refuses in names (some also in attribute values): when the
 * profile's cn_pattern accepts one, a template that makes a name of the CN is evaluated with it
 * too, so a profile that lets devices be issued with CNs the template cannot use is found. */
static const char *const probe_cns[] = { "device.0001", "device 0001", "device@0001",
                                         "device/0001", "device#0001", "device=0001",
                                         "device+0001", "device,0001" };

/* The first sample CN the profile's cn_pattern accepts (*cn_ok), else the first sample. */
static const char *rep_cn(const struct ca_profile *p, bool *cn_ok)
{
    for (size_t i = 0; i < ARRAY_LEN(rep_cns); i++) {
        if (ca_profile_cn_ok(p, rep_cns[i])) {
            *cn_ok = true;
            return rep_cns[i];
        }
    }
    *cn_ok = false;
    return rep_cns[0];
}

/* A representative certificate of profile p with that CN under the CA certificate ca (NULL:
 * none). */
static X509 *representative(X509 *ca, const struct ca_profile *p, const char *cn, struct err *e)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    ASN1_INTEGER *sn = NULL;
    BIGNUM *bn = NULL;
    unsigned char rnd[16];
    bool ok = k && x && n && RAND_bytes(rnd, sizeof(rnd)) == 1;
    rnd[0] &= 0x7f;
    rnd[0] |= 0x40;
    ok = ok && (bn = BN_bin2bn(rnd, sizeof(rnd), NULL)) != NULL &&
         (sn = BN_to_ASN1_INTEGER(bn, NULL)) != NULL && X509_set_version(x, 2) == 1 &&
         X509_set_serialNumber(x, sn) == 1;
    for (size_t i = 0; ok && i < ARRAY_LEN(rep_attrs); i++) {
        if (ca_profile_subject_requires(p, rep_attrs[i].attr)) {
            ok = X509_NAME_add_entry_by_NID(n, rep_attrs[i].nid, MBSTRING_UTF8,
                                            (const unsigned char *)rep_attrs[i].value, -1, -1,
                                            0) == 1;
        }
    }
    ok = ok &&
         X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                    -1, 0) == 1 &&
         X509_set_subject_name(x, n) == 1 &&
         X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : n) == 1 &&
         X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL &&
         X509_gmtime_adj(X509_getm_notAfter(x), (long)ca_profile_validity_seconds(p)) != NULL &&
         X509_set_pubkey(x, k) == 1 && X509_sign(x, k, EVP_sha256()) > 0;
    if (!ok) {
        err_openssl(e, ERRC_INTERNAL, "cannot build a representative certificate");
        X509_free(x);
        x = NULL;
    }
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    X509_NAME_free(n);
    EVP_PKEY_free(k);
    return x;
}

/* The certificateId AWS would give cert: the SHA-256 of its DER. */
static int cert_id(X509 *cert, char out[65], struct err *e)
{
    unsigned char *der = NULL;
    int n = i2d_X509(cert, &der);
    if (n <= 0) {
        return err_openssl(e, ERRC_INVALID, "the certificate cannot be encoded");
    }
    sha256_hex(der, (size_t)n, out);
    OPENSSL_free(der);
    return 0;
}

static json_t *plan_json(const struct jitr_template *t, const struct jitr_plan *p)
{
    json_t *o = json_pack("{s:s, s:s}", "thing", p->thing_name, "status",
                          p->activate ? "ACTIVE" : "INACTIVE");
    json_t *g = json_array(), *pol = json_array();
    if (p->thing_type) {
        json_object_set_new(o, "thing_type", json_string(p->thing_type));
    }
    if (p->billing_group) {
        json_object_set_new(o, "billing_group", json_string(p->billing_group));
    }
    json_object_set_new(o, "attributes", p->attributes ? json_copy(p->attributes) : json_object());
    for (size_t i = 0; i < p->ngroups; i++) {
        json_array_append_new(g, json_string(p->groups[i]));
    }
    json_object_set_new(o, "groups", g);
    for (size_t i = 0; i < jitr_template_npolicies(t); i++) {
        json_array_append_new(pol, json_string(jitr_template_policy(t, i)->name));
    }
    json_object_set_new(o, "policies", pol);
    return o;
}

int jitr_template_check_cert(const struct jitr_template *t, X509 *cert, json_t **out, struct err *e)
{
    struct jitr_params params = { 0 };
    struct jitr_plan plan = { 0 };
    char id[65];
    int rc = -1;
    *out = NULL;
    if (cert_id(cert, id, e) != 0) {
        return -1;
    }
    jitr_params_from_cert(cert, id, &params);
    if (jitr_template_eval(t, &params, &plan, e) == 0) {
        *out = plan_json(t, &plan);
        json_object_set_new(*out, "certificate_id", json_string(id));
        rc = 0;
    }
    jitr_plan_release(&plan);
    jitr_params_release(&params);
    return rc;
}

/* The template's message without its origin (the caller names the template once). */
static const char *bare(const struct jitr_template *t, const char *msg)
{
    size_t n = strlen(jitr_template_origin(t));
    return strncmp(msg, jitr_template_origin(t), n) == 0 && strncmp(msg + n, ": ", 2) == 0
               ? msg + n + 2
               : msg;
}

/* What the operator can do about a parameter the profile's certificates may lack. */
static void hint(const struct ca_profile *p, const char *msg, char *out, size_t cap)
{
    out[0] = '\0';
    if (strstr(msg, "'AWS::IoT::Certificate::DistinguishedNameQualifier'") != NULL) {
        snprintf(out, cap, "; no profile can require dnQualifier: give the parameter a Default");
        return;
    }
    for (size_t i = 0; i < ARRAY_LEN(rep_attrs); i++) {
        char q[80];
        if (rep_attrs[i].param == NULL) {
            continue;
        }
        snprintf(q, sizeof(q), "'AWS::IoT::Certificate::%s'", rep_attrs[i].param);
        if (strstr(msg, q) != NULL) {
            snprintf(out, cap, "; profile '%s' %s %s: require it or give the parameter a Default",
                     ca_profile_name(p),
                     ca_profile_subject_allows(p, rep_attrs[i].attr) ? "does not require"
                                                                     : "does not allow",
                     rep_attrs[i].attr);
            return;
        }
    }
}

/* The CAs JITR serves: registered in AWS (any status but compromised: a retired CA's devices
 * still provision); when none is registered yet, the active ones. */
static size_t fleet_cas(const char *data_dir, struct ca_authority **cas, size_t cap)
{
    char **names = NULL;
    size_t n = 0, k = 0;
    struct err ignore = ERR_INIT;
    if (data_dir == NULL || ca_authority_list(data_dir, &names, &n, &ignore) != 0) {
        return 0;
    }
    for (int pass = 0; pass < 2 && k == 0; pass++) {
        for (size_t i = 0; i < n && k < cap; i++) {
            struct ca_authority *a = ca_authority_load(data_dir, names[i], &ignore);
            json_t *aws = a ? json_object_get(a->meta, "aws") : NULL;
            bool registered = json_is_array(aws) && json_array_size(aws) > 0;
            if (a != NULL && a->cert != NULL && !ca_authority_compromised(a) &&
                (pass == 0 ? registered : a->status == CA_ST_ACTIVE)) {
                cas[k++] = a;
            } else {
                ca_authority_free(a);
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        xfree(names[i]);
    }
    xfree(names);
    return k;
}

int jitr_template_check_fleet(const struct jitr_template *t, const char *data_dir,
                              const struct ca_profiles *profiles, json_t *report, struct err *e)
{
    struct ca_authority *cas[64];
    size_t ncas = fleet_cas(data_dir, cas, ARRAY_LEN(cas)), nprof = 0;
    int rc = 0;
    for (size_t pi = 0; pi < ca_profiles_count(profiles); pi++) {
        const struct ca_profile *p = ca_profiles_at(profiles, pi);
        if (!ca_profile_allows_jitr(p)) {
            continue;
        }
        nprof++;
        for (size_t ci = 0; ci < (ncas ? ncas : 1); ci++) {
            const char *caname = ncas ? cas[ci]->name : "(none)";
            X509 *ca = ncas ? cas[ci]->cert : NULL;
            struct err pe = ERR_INIT;
            bool cn_ok;
            const char *cn = rep_cn(p, &cn_ok);
            char subj[256], h[160];
            json_t *plan = NULL, *row;
            X509 *x = representative(ca, p, cn, &pe);
            if (x == NULL) {
                err_copy(e, &pe);
                rc = -1;
                goto out;
            }
            X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
            row = json_pack("{s:s, s:s, s:s, s:b}", "ca", caname, "profile", ca_profile_name(p),
                            "subject", subj, "cn_matches_profile", cn_ok);
            h[0] = '\0';
            if (jitr_template_check_cert(t, x, &plan, &pe) == 0) {
                /* the CNs the profile accepts that AWS refuses in a name */
                for (size_t k = 0; k < ARRAY_LEN(probe_cns) && pe.code == ERRC_OK; k++) {
                    json_t *pp = NULL;
                    X509 *y;
                    if (!ca_profile_cn_ok(p, probe_cns[k])) {
                        continue;
                    }
                    if ((y = representative(ca, p, probe_cns[k], &pe)) == NULL) {
                        X509_free(x);
                        json_decref(row);
                        json_decref(plan);
                        err_copy(e, &pe);
                        rc = -1;
                        goto out;
                    }
                    if (jitr_template_check_cert(t, y, &pp, &pe) != 0) {
                        snprintf(h, sizeof(h), "; the profile's cn_pattern accepts '%s': "
                                 "narrow it", probe_cns[k]);
                    }
                    json_decref(pp);
                    X509_free(y);
                }
            }
            if (pe.code == ERRC_OK) {
                json_object_set_new(row, "ok", json_true());
                json_object_set_new(row, "plan", plan);
            } else {
                json_decref(plan);
                if (h[0] == '\0') {
                    hint(p, pe.msg, h, sizeof(h));
                }
                json_object_set_new(row, "ok", json_false());
                json_object_set_new(row, "error", json_string(pe.msg));
                if (rc == 0) {
                    err_set(e, ERRC_INVALID, "%s: for CA '%s', profile '%s': %s%s",
                            jitr_template_origin(t), caname, ca_profile_name(p), bare(t, pe.msg),
                            h);
                    rc = -1;
                }
            }
            if (report != NULL) {
                json_array_append(report, row);
            }
            json_decref(row);
            X509_free(x);
        }
    }
    if (nprof == 0 && rc == 0) {
        rc = err_set(e, ERRC_NOT_FOUND,
                     "%s: no profile allows JITR (\"jitr\": true): the "
                     "template cannot be checked",
                     jitr_template_origin(t));
    }
out:
    for (size_t i = 0; i < ncas; i++) {
        ca_authority_free(cas[i]);
    }
    return rc;
}
