/*
 * Certificate profiles: declarative JSON (policies/profiles/NAME.json), validated at load with
 * messages naming the file, the key and the problem. A profile says which keys a CSR may carry,
 * how long a certificate lives, what the subject may contain, which SANs may be copied from the
 * CSR and whether JITR may activate its certificates. Extensions are the profile's, never the
 * CSR's. The file format is documented in docs/profiles.md.
 */
#ifndef CA_PROFILE_H
#define CA_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ca/key.h"
#include "core/compat.h"
#include "core/err.h"

struct ca_profile;
struct ca_profiles;

/* Loads one file; the profile's name is the file name without ".json". All load errors are
 * ERRC_INVALID "profile FILE: KEY: problem" (ERRC_NOT_FOUND / ERRC_TOO_LARGE for the file). */
struct ca_profile *ca_profile_load_file(const char *path, struct err *e) ATTR_WUR;
/* Loads a profile from JSON text; origin names it in messages (a path, "<config>", ...). */
struct ca_profile *ca_profile_load_json(const char *name, const char *origin, const char *json,
                                        size_t len, struct err *e) ATTR_WUR;
/* Loads every *.json in dir, sorted by name; fails on the first invalid file (naming it), and with
 * ERRC_NOT_FOUND when dir cannot be opened or holds no profile. */
struct ca_profiles *ca_profiles_load_dir(const char *dir, struct err *e) ATTR_WUR;
void ca_profile_free(struct ca_profile *p);
void ca_profiles_free(struct ca_profiles *ps);

/* Borrowed, valid until ca_profiles_free; NULL when unknown. */
const struct ca_profile *ca_profiles_find(const struct ca_profiles *ps, const char *name);
size_t ca_profiles_count(const struct ca_profiles *ps);
const struct ca_profile *ca_profiles_at(const struct ca_profiles *ps, size_t i);

const char *ca_profile_name(const struct ca_profile *p);
const char *ca_profile_description(const struct ca_profile *p); /* "" when none */
bool ca_profile_allows_key(const struct ca_profile *p, enum ca_key_type t);
bool ca_profile_allows_jitr(const struct ca_profile *p);
/* Subject attributes by their profile spelling ("CN", "C", "serialNumber", ...): every
 * certificate of the profile has it (CN always) / may have it. */
bool ca_profile_subject_requires(const struct ca_profile *p, const char *attr);
bool ca_profile_subject_allows(const struct ca_profile *p, const char *attr);
/* Does cn match the profile's cn_pattern (as a whole)? */
bool ca_profile_cn_ok(const struct ca_profile *p, const char *cn);
int64_t ca_profile_validity_seconds(const struct ca_profile *p);
int64_t ca_profile_backdate_seconds(const struct ca_profile *p);

#endif
