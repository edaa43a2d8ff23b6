/*
 * AWS credentials and configuration: the pure parts of the credential chain
 * (docs/aws-client.md "Credentials").
 *
 * Everything here is synchronous and touches no network: the configuration (profile, files,
 * region, endpoints, FIPS and dual-stack), the credentials found in the environment and the
 * shared files, and the plan of a fetch (struct aws_chain): which source gives the base
 * credentials and which roles are assumed with them. The async provider (aws/provider.h) runs the
 * plan's network and process steps and parses what they return with the parsers below. When no
 * source applies, the error names every source looked at:
 *   no AWS credentials: environment (AWS_ACCESS_KEY_ID unset), web identity (not configured),
 *   SSO (profile 'default' has no sso_account_id), shared credentials file ~/.aws/credentials
 *   (not found), credential_process (none), config file ~/.aws/config (not found), container
 *   endpoint (not configured), EC2 IMDS (timeout after 1000 ms ...)
 * err.msg holds 255 bytes, so with long paths the message is cut; err.detail always carries the
 * whole list.
 *
 * Environments are passed explicitly as a NULL-terminated "NAME=value" array (tests build their
 * own); NULL means the process environment. Files are read with a size cap (1 MiB); a file that
 * exists but cannot be parsed is an error, not a skipped source (botocore does the same).
 * Secrets are cleansed when released and never appear in error messages.
 */
#ifndef AWS_CREDS_H
#define AWS_CREDS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "aws/endpoint.h"
#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"

/* Credentials: owned strings. A zeroed struct is empty (aws_creds_init). */
struct aws_creds {
    char *access_key_id;
    char *secret_access_key;
    char *session_token; /* NULL for long-term keys */
    time_t expiration;   /* 0: does not expire */
    char source[160];    /* for logs: "environment", "shared credentials file PATH profile NAME" */
};

void aws_creds_init(struct aws_creds *c);
/* Cleanses and frees; c is left initialised. */
void aws_creds_release(struct aws_creds *c);
/*
 * Replaces c's contents with copies. token may be NULL or "" (none). Rejects (ERRC_INVALID) an
 * empty key or secret and any control character or space in key, secret or token; c is
 * unchanged on failure.
 */
int aws_creds_set(struct aws_creds *c, const char *access_key_id, const char *secret,
                  const char *token, time_t expiration, const char *source, struct err *e) ATTR_WUR;
/* True when the credentials expire before now + margin (never for expiration 0). */
bool aws_creds_expire_within(const struct aws_creds *c, time_t now, time_t margin);

/* Looks NAME up in env ("NAME=value" array, NULL = process environment); NULL when unset. */
const char *aws_env_get(const char *const *env, const char *name);

/*
 * The shared files' INI dialect, as botocore reads it (Python configparser): [section] lines
 * (a trailing "# ..." or "; ..." comment allowed), "key = value" or "key: value" with keys
 * lower-cased and both sides trimmed, full-line comments starting with '#' or ';', indented
 * lines continuing the previous value (AWS's nested "s3 =" blocks). Errors (ERRC_INVALID,
 * "ORIGIN:LINE: problem"): a key before any section, a line that is neither, an unterminated
 * section header, a duplicate section or a duplicate key in one section.
 */
struct aws_ini;
struct aws_ini *aws_ini_parse(const char *text, size_t len, const char *origin,
                              struct err *e) ATTR_WUR;
void aws_ini_free(struct aws_ini *ini);
/* The value of key in [section] (names compared exactly, section inner spaces collapsed). */
const char *aws_ini_get(const struct aws_ini *ini, const char *section, const char *key);
bool aws_ini_has_section(const struct aws_ini *ini, const char *section);

enum aws_file_kind {
    AWS_FILE_CREDENTIALS, /* profile NAME is section [NAME] */
    AWS_FILE_CONFIG,      /* [profile NAME], and [default] (or [profile default]) for default */
};
/* The section that holds profile in a file of that kind, NULL when absent. */
const char *aws_ini_profile_section(const struct aws_ini *ini, enum aws_file_kind kind,
                                    const char *profile);

/*
 * Credentials from the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
 * (legacy AWS_SECURITY_TOKEN), AWS_CREDENTIAL_EXPIRATION (ISO 8601). *found is false, with the
 * reason appended to why, when AWS_ACCESS_KEY_ID is unset or empty. A key without a secret, or
 * a bad expiration, is an error (ERRC_INVALID), as in botocore (no fall-through on partial
 * credentials).
 */
int aws_creds_from_env(const char *const *env, struct aws_creds *out, bool *found, struct buf *why,
                       struct err *e) ATTR_WUR;
/*
 * Credentials (aws_access_key_id, aws_secret_access_key, aws_session_token) of profile in a
 * parsed file. *found is false, with "no profile 'p'" or "profile 'p' has no
 * aws_access_key_id" appended to why, when there are none; half a key pair is an error.
 */
int aws_creds_from_ini(const struct aws_ini *ini, enum aws_file_kind kind, const char *profile,
                       const char *origin, struct aws_creds *out, bool *found, struct buf *why,
                       struct err *e) ATTR_WUR;

/*
 * Response bodies of the network and process sources. All are strict: every needed field present
 * exactly once, of the right type, Expiration in ISO 8601 UTC; bodies over 64 KiB are refused
 * (ERRC_TOO_LARGE). out is replaced only on success; source names the origin for out->source.
 *
 * aws_creds_parse_json: container endpoint and IMDS role credentials,
 *   {"AccessKeyId","SecretAccessKey","Token","Expiration"}; a "Code" member other than
 *   "Success" (IMDS) is an error carrying Code and Message.
 * aws_creds_parse_sts_xml: STS action (AssumeRole or AssumeRoleWithWebIdentity),
 *   ACTIONResponse/ACTIONResult/Credentials/{AccessKeyId,SecretAccessKey,SessionToken,
 *   Expiration}; an ErrorResponse becomes an error (ERRC_DENIED) naming its Code and Message. No
 *   DTDs, CDATA or processing instructions; the five predefined entities and numeric character
 *   references only.
 * aws_creds_parse_process: a credential_process's standard output, {"Version": 1,
 *   "AccessKeyId", "SecretAccessKey", "SessionToken" (optional), "Expiration" (optional: the
 *   credentials do not expire without it)}; credentials that expired already are refused.
 * aws_creds_parse_sso: the SSO portal's GetRoleCredentials reply, {"roleCredentials":
 *   {"accessKeyId", "secretAccessKey", "sessionToken", "expiration" (epoch milliseconds)}}.
 */
int aws_creds_parse_json(const char *body, size_t len, const char *source, struct aws_creds *out,
                         struct err *e) ATTR_WUR;
int aws_creds_parse_sts_xml(const char *body, size_t len, const char *action, const char *source,
                            struct aws_creds *out, struct err *e) ATTR_WUR;
int aws_creds_parse_process(const char *body, size_t len, const char *source, time_t now,
                            struct aws_creds *out, struct err *e) ATTR_WUR;
int aws_creds_parse_sso(const char *body, size_t len, const char *source, struct aws_creds *out,
                        struct err *e) ATTR_WUR;

/*
 * The token `aws sso login` caches, {"accessToken": "...", "expiresAt": "ISO 8601", ...}:
 * *token is a copy (cleanse and free it), *expires its expiry. ERRC_INVALID naming what is
 * missing or malformed.
 */
int aws_sso_token_parse(const char *body, size_t len, const char *origin, char **token,
                        time_t *expires, struct err *e) ATTR_WUR;

/* ISO 8601 UTC: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00|+HH:MM|-HH:MM); -1 when malformed. */
int aws_time_parse_iso8601(const char *s, time_t *out) ATTR_WUR;

/*
 * Region, profile, files, endpoints of this process (docs/aws-client.md):
 *   profile:  the caller's (aws_config_opts), else AWS_PROFILE, else AWS_DEFAULT_PROFILE, else
 *             "default";
 *   files:    AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE, else $HOME/.aws/credentials|config;
 *             a profile's settings are read from both, the credentials file winning (botocore);
 *   region:   region_override, else AWS_REGION, else AWS_DEFAULT_REGION, else the profile's
 *             region (aws_config_load in aws/provider.h then asks EC2 IMDS);
 *   FIPS, dual-stack: AWS_USE_FIPS_ENDPOINT / AWS_USE_DUALSTACK_ENDPOINT, else the profile's
 *             use_fips_endpoint / use_dualstack_endpoint (true or false, else an error);
 *   STS:      AWS_STS_REGIONAL_ENDPOINTS, else sts_regional_endpoints: regional (default) or
 *             legacy (sts.amazonaws.com for the regions that used it);
 *   endpoints: per service, AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL, the service's
 *             endpoint_url in the profile's services section, the profile's endpoint_url (none
 *             of them when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true or the profile's
 *             ignore_configured_endpoint_urls = true), else the service's default endpoint
 *             (aws/endpoint.h) with FIPS and dual-stack; a configured URL wins over FIPS and
 *             dual-stack. endpoint_override, when given, is the IoT endpoint.
 */
struct aws_config {
    char *profile;
    char *credentials_file; /* NULL when HOME is unset and no override */
    char *config_file;
    struct aws_ini *credentials; /* parsed, NULL when the file does not exist */
    struct aws_ini *config;
    char *region;
    char region_source[200]; /* "AWS_REGION", "config file PATH profile NAME", "EC2 IMDS" */
    char *endpoint;          /* IoT: scheme://host[:port][/path], no trailing '/' */
    char endpoint_source[160];
    bool use_fips, use_dualstack, sts_legacy;
    char *configured[AWS_SVC__COUNT]; /* configured endpoint URLs, NULL: the default */
    char configured_source[AWS_SVC__COUNT][96];
    bool region_missing;   /* aws_config_resolve failed only because no source names a region */
    bool profile_explicit; /* chosen by the caller: the environment's credentials step aside */
};

/* What the caller decides (each NULL or "" when not): the profile, as `aws --profile` does (it
 * wins over AWS_PROFILE, and credentials and web identity in the environment are not used), the
 * region, the IoT endpoint. */
struct aws_config_opts {
    const char *profile;
    const char *region;
    const char *endpoint;
};

void aws_config_init(struct aws_config *cfg);
void aws_config_release(struct aws_config *cfg);
/*
 * Fills cfg. Fails with ERRC_INVALID when a file exists but is malformed or unreadable, when the
 * region is missing ("no AWS region: ..." naming what was looked at; cfg->region_missing is then
 * set) or is not [a-z0-9-], when a setting has a bad value, when a configured endpoint is not an
 * http(s) URL without query, fragment, userinfo or whitespace, or when the profile names a
 * services section that does not exist.
 */
int aws_config_resolve_opts(struct aws_config *cfg, const char *const *env,
                            const struct aws_config_opts *o, struct err *e) ATTR_WUR;
/* aws_config_resolve_opts with no profile chosen. */
int aws_config_resolve(struct aws_config *cfg, const char *const *env, const char *region_override,
                       const char *endpoint_override, struct err *e) ATTR_WUR;
/* The value of key for profile, from the credentials file, else the config file; NULL when
 * absent. */
const char *aws_config_get(const struct aws_config *cfg, const char *profile, const char *key);
bool aws_config_has_profile(const struct aws_config *cfg, const char *profile);
/*
 * The endpoint of service s in region (NULL: cfg->region): the configured URL, else the default
 * (FIPS / dual-stack as configured). *url is owned; signing_region is the SigV4 region.
 */
int aws_config_endpoint(const struct aws_config *cfg, enum aws_service s, const char *region,
                        char **url, char *signing_region, size_t cap, struct err *e) ATTR_WUR;
/* The EC2 instance metadata endpoint: AWS_EC2_METADATA_SERVICE_ENDPOINT, else by
 * AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE (IPv4 169.254.169.254, IPv6 fd00:ec2::254); *out NULL
 * when AWS_EC2_METADATA_DISABLED=true. */
int aws_imds_endpoint(const char *const *env, char **out, struct err *e) ATTR_WUR;

/*
 * The credential chain, in botocore's order (docs/aws-client.md has the table):
 *   1. environment                    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...
 *   2. assume role                    the profile's role_arn with source_profile or
 *                                     credential_source (Environment, Ec2InstanceMetadata,
 *                                     EcsContainer); source profiles may chain
 *   3. web identity                   AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, or the
 *                                     profile's web_identity_token_file + role_arn
 *   4. SSO                            the profile's sso_account_id/sso_role_name with an
 *                                     sso_session (or legacy sso_start_url/sso_region)
 *   5. shared credentials file        the profile's keys
 *   6. credential_process             the profile's command
 *   7. config file                    the profile's keys
 *   8. container endpoint             ECS/EKS (AWS_CONTAINER_CREDENTIALS_*)
 *   9. EC2 IMDS                       the instance role
 * The first source that is configured decides: if it fails, the fetch fails with its reason
 * (no silent fall-back to another identity), except IMDS, the last resort, whose failure is
 * reported as "no AWS credentials" naming every source. A source profile (source_profile) is
 * resolved with 3 (its own keys only), 4, 5, 6, 7.
 *
 * aws_chain_start() plans a fetch: ch->creds hold the base credentials when a local source gave
 * them (ch->next == AWS_CREDS_READY), else ch->next names the base source to fetch:
 *   AWS_CREDS_FETCH_WEB_IDENTITY  read web_identity_token_file, POST AssumeRoleWithWebIdentity
 *                                 (unsigned) with role_arn/role_session_name, parse with
 *                                 aws_creds_parse_sts_xml();
 *   AWS_CREDS_FETCH_SSO           read sso.cache_file (aws_sso_token_parse), GET the portal's
 *                                 GetRoleCredentials, parse with aws_creds_parse_sso();
 *   AWS_CREDS_FETCH_PROCESS       run process, parse its output with aws_creds_parse_process();
 *   AWS_CREDS_FETCH_CONTAINER     GET container_url with Authorization: container_auth_token
 *                                 (or the contents of container_auth_token_file) when set,
 *                                 parse with aws_creds_parse_json();
 *   AWS_CREDS_FETCH_IMDS          IMDSv2 token, role name, role credentials from imds_endpoint,
 *                                 parse with aws_creds_parse_json();
 * and reports the outcome with aws_chain_fetched() or aws_chain_failed(). Then each of
 * roles[0..nroles) is assumed in order (STS AssumeRole signed with the credentials so far), the
 * last giving the credentials handed out.
 */
enum aws_creds_next {
    AWS_CREDS_READY,
    AWS_CREDS_FETCH_WEB_IDENTITY,
    AWS_CREDS_FETCH_SSO,
    AWS_CREDS_FETCH_PROCESS,
    AWS_CREDS_FETCH_CONTAINER,
    AWS_CREDS_FETCH_IMDS,
};

/* One AssumeRole of a plan. */
struct aws_role_step {
    char *profile; /* the profile that names the role */
    char *role_arn;
    char *session_name; /* NULL: jitrca-EPOCHSECONDS */
    char *external_id;  /* NULL: none */
    long duration_s;    /* 0: STS's default (one hour) */
};

/* An SSO profile, resolved. */
struct aws_sso {
    char *profile;
    char *session; /* the sso_session's name; NULL for a legacy sso_start_url profile */
    char *start_url;
    char *region; /* sso_region: where the portal is */
    char *account_id;
    char *role_name;
    char *cache_file; /* $HOME/.aws/sso/cache/SHA1(session name or start URL).json */
};

struct aws_chain {
    enum aws_creds_next next;
    struct aws_creds creds;
    char base[200];   /* the base source, for messages: "web identity", "SSO (profile 'dev')" */
    bool last_resort; /* the base is the chain's closing IMDS try */
    char *role_arn;   /* web identity inputs; NULL when not configured */
    char *web_identity_token_file;
    char *role_session_name;
    struct aws_sso sso;  /* SSO inputs; sso.profile NULL when not configured */
    char *process;       /* credential_process command line */
    char *container_url; /* validated: https, or http to a loopback/ECS/EKS address */
    char *container_auth_token;
    char *container_auth_token_file;
    char *imds_endpoint; /* NULL when AWS_EC2_METADATA_DISABLED=true */
    struct aws_role_step *roles;
    size_t nroles;
    struct buf tried; /* "environment (AWS_ACCESS_KEY_ID unset), ..." */
};

void aws_chain_init(struct aws_chain *ch);
void aws_chain_release(struct aws_chain *ch);
/*
 * Plans a fetch (above). cfg from aws_config_resolve() (borrowed). Errors: ERRC_INVALID for
 * partial or malformed credentials in a source and for a misconfigured source (container URL to
 * a forbidden host, CR/LF in the container token, role ARN without token file, a role profile
 * with both or neither of source_profile and credential_source, an unknown credential_source, a
 * source_profile that does not exist, has no credentials or loops back, mfa_serial (a daemon
 * cannot prompt), a bad duration_seconds, an SSO profile missing a setting); ERRC_NOT_FOUND
 * "no AWS credentials: ..." when no source applies.
 */
int aws_chain_start(struct aws_chain *ch, const struct aws_config *cfg, const char *const *env,
                    struct err *e) ATTR_WUR;
/* The base source ch->next failed for reason: the fetch fails (ch->next = READY, returns -1):
 * with ERRC_NOT_FOUND "no AWS credentials: ..." naming every source when it was the last resort,
 * else with code and "AWS credentials from BASE: reason". */
int aws_chain_failed(struct aws_chain *ch, enum err_code code, const char *reason,
                     struct err *e) ATTR_WUR;
/* The base source produced creds: takes them (creds is left empty), next = READY. */
void aws_chain_fetched(struct aws_chain *ch, struct aws_creds *creds);
/* "web identity", "SSO", "credential_process", "container endpoint", "EC2 IMDS". */
const char *aws_creds_next_name(enum aws_creds_next next);

/* Splits a command line as POSIX sh would without expanding anything (Python's shlex.split,
 * which botocore uses for credential_process): whitespace separates words, '...' is literal,
 * "..." keeps \" \\ \$ \` and \newline escapes, \ outside quotes escapes the next character.
 * *argv is a NULL-terminated owned array (aws_argv_free). ERRC_INVALID for an unterminated
 * quote or no word at all. */
int aws_argv_split(const char *cmd, char ***argv, struct err *e) ATTR_WUR;
void aws_argv_free(char **argv);

#endif
