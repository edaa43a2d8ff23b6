/*
 * AWS credentials and configuration: the pure parts of the credential chain (docs/aws-iot.md,
 * "Credential sources").
 *
 * Local sources are resolved synchronously: environment, shared credentials file, config file.
 * Network sources (STS web identity, container endpoint, EC2 IMDSv2) are fetched later by the
 * async transport; this module tells it which source comes next and with which inputs
 * (struct aws_chain), and parses the bodies it gets back (aws_creds_parse_json,
 * aws_creds_parse_sts_xml). When the last source fails, the error names every source tried:
 *   no AWS credentials: environment (AWS_ACCESS_KEY_ID unset), shared credentials file
 *   ~/.aws/credentials (not found), config file ~/.aws/config (not found), web identity (not
 *   configured), container endpoint (not configured), EC2 IMDS (timeout after 1 s)
 * err.msg holds 255 bytes, so with long override paths the message is cut; err.detail always
 * carries the whole list.
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
 * Response bodies of the network sources. Both are strict: every needed field present exactly
 * once, of the right type, Expiration in ISO 8601 UTC; bodies over 64 KiB are refused
 * (ERRC_TOO_LARGE). out is replaced only on success; source names the origin for out->source.
 *
 * aws_creds_parse_json: container endpoint and IMDS role credentials,
 *   {"AccessKeyId","SecretAccessKey","Token","Expiration"}; a "Code" member other than
 *   "Success" (IMDS) is an error carrying Code and Message.
 * aws_creds_parse_sts_xml: STS AssumeRoleWithWebIdentity,
 *   AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/Credentials/
 *   {AccessKeyId,SecretAccessKey,SessionToken,Expiration}; an ErrorResponse becomes an error
 *   naming its Code and Message. No DTDs, CDATA or processing instructions; the five predefined
 *   entities and numeric character references only.
 */
int aws_creds_parse_json(const char *body, size_t len, const char *source, struct aws_creds *out,
                         struct err *e) ATTR_WUR;
int aws_creds_parse_sts_xml(const char *body, size_t len, const char *source, struct aws_creds *out,
                            struct err *e) ATTR_WUR;

/* ISO 8601 UTC: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00|+HH:MM|-HH:MM); -1 when malformed. */
int aws_time_parse_iso8601(const char *s, time_t *out) ATTR_WUR;

/*
 * Region, profile, files and endpoint of this process (docs/aws-iot.md, "Control plane" and
 * "Credential sources").
 *   profile: AWS_PROFILE, else AWS_DEFAULT_PROFILE, else "default";
 *   files:   AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE, else $HOME/.aws/credentials|config;
 *   region:  region_override, else AWS_REGION, else AWS_DEFAULT_REGION, else the profile's
 *            region in the config file;
 *   endpoint: endpoint_override, else AWS_ENDPOINT_URL_IOT, else AWS_ENDPOINT_URL (both
 *            ignored when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true), else
 *            https://iot.REGION.amazonaws.com (.amazonaws.com.cn for cn-* regions).
 */
struct aws_config {
    char *profile;
    char *credentials_file; /* NULL when HOME is unset and no override */
    char *config_file;
    struct aws_ini *credentials; /* parsed, NULL when the file does not exist */
    struct aws_ini *config;
    char *region;
    char region_source[160]; /* "AWS_REGION", "config file PATH profile NAME", ... */
    char *endpoint;          /* scheme://host[:port][/path], no trailing '/' */
};

void aws_config_init(struct aws_config *cfg);
void aws_config_release(struct aws_config *cfg);
/*
 * Fills cfg. Fails with ERRC_INVALID when a file exists but is malformed or unreadable, when the
 * region is missing ("no AWS region: ..." naming what was looked at) or is not [a-z0-9-], or
 * when an endpoint is not an http(s) URL without query, fragment, userinfo or whitespace.
 */
int aws_config_resolve(struct aws_config *cfg, const char *const *env, const char *region_override,
                       const char *endpoint_override, struct err *e) ATTR_WUR;

/*
 * The credential chain. aws_chain_start() runs the local sources (environment, shared
 * credentials file, config file) and, when none has credentials, selects the first configured
 * network source. The caller then loops on ch->next:
 *   AWS_CREDS_READY               ch->creds are usable;
 *   AWS_CREDS_FETCH_WEB_IDENTITY  read web_identity_token_file, POST AssumeRoleWithWebIdentity
 *                                 (unsigned) with role_arn/role_session_name, parse the reply
 *                                 with aws_creds_parse_sts_xml();
 *   AWS_CREDS_FETCH_CONTAINER     GET container_url with Authorization: container_auth_token
 *                                 (or the contents of container_auth_token_file) when set,
 *                                 parse with aws_creds_parse_json();
 *   AWS_CREDS_FETCH_IMDS          IMDSv2 token, role name, role credentials from imds_endpoint,
 *                                 parse with aws_creds_parse_json();
 * and reports each outcome with aws_chain_fetched() or aws_chain_failed().
 */
enum aws_creds_next {
    AWS_CREDS_READY,
    AWS_CREDS_FETCH_WEB_IDENTITY,
    AWS_CREDS_FETCH_CONTAINER,
    AWS_CREDS_FETCH_IMDS,
};

struct aws_chain {
    enum aws_creds_next next;
    struct aws_creds creds;
    char *role_arn; /* web identity inputs; NULL when not configured */
    char *web_identity_token_file;
    char *role_session_name;
    char *container_url; /* validated: https, or http to a loopback/ECS/EKS address */
    char *container_auth_token;
    char *container_auth_token_file;
    char *imds_endpoint; /* NULL when AWS_EC2_METADATA_DISABLED=true */
    struct buf tried;    /* "environment (AWS_ACCESS_KEY_ID unset), ..." */
};

void aws_chain_init(struct aws_chain *ch);
void aws_chain_release(struct aws_chain *ch);
/*
 * cfg from aws_config_resolve() (borrowed). Errors: ERRC_INVALID for partial or malformed
 * credentials in a source, or a misconfigured network source (container URL to a forbidden
 * host, CR/LF in the container token, role ARN without token file); ERRC_NOT_FOUND "no AWS
 * credentials: ..." when no source is left.
 */
int aws_chain_start(struct aws_chain *ch, const struct aws_config *cfg, const char *const *env,
                    struct err *e) ATTR_WUR;
/* The network source ch->next failed for reason: records it and selects the next one, or fails
 * with ERRC_NOT_FOUND naming every source tried. */
int aws_chain_failed(struct aws_chain *ch, const char *reason, struct err *e) ATTR_WUR;
/* The network source ch->next produced creds: takes them (creds is left empty), next = READY. */
void aws_chain_fetched(struct aws_chain *ch, struct aws_creds *creds);
/* "web identity", "container endpoint", "EC2 IMDS": the name used in messages. */
const char *aws_creds_next_name(enum aws_creds_next next);

#endif
