/*
 * Station authorisations, one JSON file (config stations_file), reloaded on SIGHUP:
 *   {"stations": {"NAME": {"cas": [...], "profiles": [...], "rate": 10, "burst": 20,
 *                          "admin": false, "installer": false}}}
 * NAME is the commonName of the station's client certificate. cas defaults to [default_ca] (or
 * "*" when the config names none: the CA jitrd serves by default), profiles to
 * [default_profile]; "*" allows all. rate is issuances per second (0 = no limit), burst the
 * bucket size (default max(rate, 1), at least 1: the most certificates one request may ask for).
 * admin may revoke; installer may ask for enrollment tokens (POST /v1/tokens) for its profiles
 * and CAs. Unknown keys and wrong types are errors naming the key.
 */
#include <jansson.h>
#include <string.h>

#include "core/mem.h"
#include "core/util.h"
#include "daemon/daemon.h"

struct stations {
    struct station *v;
    size_t n;
};

static void station_release(struct station *st)
{
    for (size_t i = 0; i < st->ncas; i++) {
        xfree(st->cas[i]);
    }
    for (size_t i = 0; i < st->nprofiles; i++) {
        xfree(st->profiles[i]);
    }
    xfree(st->cas);
    xfree(st->profiles);
    xfree(st->name);
}

void stations_free(struct stations *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        station_release(&s->v[i]);
    }
    xfree(s->v);
    xfree(s);
}

static int name_list(const char *file, const char *st, const char *key, json_t *v,
                     const char *def, char ***out, size_t *n, struct err *e)
{
    if (v == NULL) {
        *out = xcalloc(1, sizeof(char *));
        (*out)[0] = xstrdup(def);
        *n = 1;
        return 0;
    }
    if (!json_is_array(v)) {
        return err_set(e, ERRC_INVALID, "%s: station '%s': '%s' must be an array of names", file,
                       st, key);
    }
    *n = json_array_size(v);
    *out = xcalloc(*n ? *n : 1, sizeof(char *));
    for (size_t i = 0; i < *n; i++) {
        json_t *x = json_array_get(v, i);
        if (!json_is_string(x) ||
            (strcmp(json_string_value(x), "*") != 0 && !api_name_ok(json_string_value(x)))) {
            return err_set(e, ERRC_INVALID, "%s: station '%s': '%s'[%zu] is not a name or \"*\"",
                           file, st, key, i);
        }
        (*out)[i] = xstrdup(json_string_value(x));
    }
    return 0;
}

static int number(const char *file, const char *st, const char *key, json_t *v, double *out,
                  struct err *e)
{
    if (v == NULL) {
        return 0;
    }
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1e9) {
        return err_set(e, ERRC_INVALID, "%s: station '%s': '%s' must be a number from 0 to 1e9",
                       file, st, key);
    }
    *out = json_number_value(v);
    return 0;
}

static int station_parse(const char *file, const char *name, json_t *o, const char *default_ca,
                         const char *default_profile, struct station *st, struct err *e)
{
    const char *key;
    json_t *v;
    st->name = xstrdup(name);
    st->rate = 50;
    st->burst = -1;
    if (!api_name_ok(name)) {
        return err_set(e, ERRC_INVALID, "%s: '%.64s' is not a valid station name", file, name);
    }
    if (!json_is_object(o)) {
        return err_set(e, ERRC_INVALID, "%s: station '%s' must be an object", file, name);
    }
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, "cas") != 0 && strcmp(key, "profiles") != 0 &&
            strcmp(key, "rate") != 0 && strcmp(key, "burst") != 0 && strcmp(key, "admin") != 0 &&
            strcmp(key, "installer") != 0) {
            return err_set(e, ERRC_INVALID, "%s: station '%s': unknown key '%.64s'", file, name,
                           key);
        }
    }
    if (name_list(file, name, "cas", json_object_get(o, "cas"), *default_ca ? default_ca : "*",
                  &st->cas, &st->ncas, e) != 0 ||
        name_list(file, name, "profiles", json_object_get(o, "profiles"), default_profile,
                  &st->profiles, &st->nprofiles, e) != 0 ||
        number(file, name, "rate", json_object_get(o, "rate"), &st->rate, e) != 0 ||
        number(file, name, "burst", json_object_get(o, "burst"), &st->burst, e) != 0) {
        return -1;
    }
    v = json_object_get(o, "admin");
    if (v && !json_is_boolean(v)) {
        return err_set(e, ERRC_INVALID, "%s: station '%s': 'admin' must be true or false", file,
                       name);
    }
    st->admin = v && json_is_true(v);
    v = json_object_get(o, "installer");
    if (v && !json_is_boolean(v)) {
        return err_set(e, ERRC_INVALID, "%s: station '%s': 'installer' must be true or false",
                       file, name);
    }
    st->installer = v && json_is_true(v);
    if (st->burst < 0) {
        st->burst = st->rate > 1 ? st->rate : 1;
    }
    if (st->rate > 0 && st->burst < 1) {
        return err_set(e, ERRC_INVALID,
                       "%s: station '%s': 'burst' must be at least 1 (one certificate) when "
                       "'rate' is not 0",
                       file, name);
    }
    return 0;
}

struct stations *stations_load(const char *path, const char *default_ca,
                               const char *default_profile, struct err *e)
{
    struct stations *s = xcalloc(1, sizeof(*s));
    json_t *root = NULL;
    json_error_t jerr;
    const char *key;
    json_t *v;
    json_t *sts;
    if (path == NULL || *path == '\0') {
        return s;
    }
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (!file_exists(path)) {
            err_set(e, ERRC_NOT_FOUND, "stations file '%s' not found", path);
        } else {
            err_set(e, ERRC_INVALID, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        }
        goto fail;
    }
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "stations") != 0) {
            err_set(e, ERRC_INVALID, "%s: unknown key '%.64s'", path, key);
            goto fail;
        }
    }
    sts = json_object_get(root, "stations");
    if (!json_is_object(sts)) {
        err_set(e, ERRC_INVALID, "%s: 'stations' must be an object of station names", path);
        goto fail;
    }
    s->v = xcalloc(json_object_size(sts) + 1, sizeof(*s->v));
    json_object_foreach(sts, key, v)
    {
        if (station_parse(path, key, v, default_ca, default_profile, &s->v[s->n++], e) != 0) {
            goto fail;
        }
    }
    json_decref(root);
    return s;
fail:
    json_decref(root);
    stations_free(s);
    return NULL;
}

const struct station *stations_find(const struct stations *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->v[i].name, name) == 0) {
            return &s->v[i];
        }
    }
    return NULL;
}

size_t stations_count(const struct stations *s)
{
    return s->n;
}

static bool listed(char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], "*") == 0 || strcmp(list[i], name) == 0) {
            return true;
        }
    }
    return false;
}

bool station_may_use_ca(const struct station *st, const char *ca)
{
    return listed(st->cas, st->ncas, ca);
}

bool station_may_use_profile(const struct station *st, const char *profile)
{
    return listed(st->profiles, st->nprofiles, profile);
}

void stations_ca_names(const struct stations *s, char ***names, size_t *n)
{
    for (size_t i = 0; i < s->n; i++) {
        for (size_t j = 0; j < s->v[i].ncas; j++) {
            const char *ca = s->v[i].cas[j];
            bool seen = strcmp(ca, "*") == 0;
            for (size_t k = 0; k < *n && !seen; k++) {
                seen = strcmp((*names)[k], ca) == 0;
            }
            if (!seen) {
                *names = xrealloc(*names, (*n + 1) * sizeof(char *));
                (*names)[(*n)++] = xstrdup(ca);
            }
        }
    }
}
