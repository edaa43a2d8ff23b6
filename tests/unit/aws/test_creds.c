/*
 * aws/creds.c: environment, shared files (INI), region and endpoint resolution, the chain's
 * source selection and "tried" message, and the network bodies (container/IMDS JSON, STS XML),
 * each with its malformed inputs. Files are real files in a private temporary directory.
 */
#include <stdlib.h>

#include "aws/aws.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/mem.h"
#include "core/util.h"
#include "tests/harness/tt.h"

static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    struct err e = ERR_INIT;
    snprintf(path, sizeof(path), "%s/%s", tt_tmpdir(), name);
    if (file_write_atomic(path, text, strlen(text), 0600, false, &e) != 0) {
        fprintf(stderr, "write %s: %s\n", path, e.msg);
        exit(1);
    }
    return path;
}

static int test_creds_set(void)
{
    int rc = 0;
    struct aws_creds c;
    struct err e = ERR_INIT;
    aws_creds_init(&c);
    CHECK_OK(aws_creds_set(&c, "AKID", "secret", "", 0, "unit", &e), &e);
    CHECK(c.session_token == NULL);
    CHECK_STR_EQ(c.source, "unit");
    CHECK(!aws_creds_expire_within(&c, 2000000000, 600));
    CHECK_OK(aws_creds_set(&c, "AKID", "secret", "tok", 1000, "unit", &e), &e);
    CHECK(aws_creds_expire_within(&c, 500, 600));
    CHECK(!aws_creds_expire_within(&c, 300, 600));
    CHECK_INT_EQ(aws_creds_set(&c, "", "s", NULL, 0, "src", &e), -1);
    CHECK_STR_EQ(e.msg, "src: empty access key id");
    err_clear(&e);
    CHECK_INT_EQ(aws_creds_set(&c, "AK", NULL, NULL, 0, "src", &e), -1);
    CHECK_STR_EQ(e.msg, "src: empty secret access key");
    err_clear(&e);
    CHECK_INT_EQ(aws_creds_set(&c, "AK/1", "s", NULL, 0, "src", &e), -1);
    CHECK_STR_CONTAINS(e.msg, "access key id contains");
    err_clear(&e);
    CHECK_INT_EQ(aws_creds_set(&c, "AK", "s x", NULL, 0, "src", &e), -1);
    CHECK_STR_CONTAINS(e.msg, "secret access key contains");
    err_clear(&e);
    CHECK_INT_EQ(aws_creds_set(&c, "AK", "s", "t\n", 0, "src", &e), -1);
    CHECK_STR_CONTAINS(e.msg, "session token contains");
    /* failures leave the previous credentials in place */
    CHECK_STR_EQ(c.access_key_id, "AKID");
    CHECK_STR_EQ(c.session_token, "tok");
out:
    aws_creds_release(&c);
    return rc;
}

static int test_env(void)
{
    int rc = 0;
    struct aws_creds c;
    struct err e = ERR_INIT;
    struct buf why = BUF_INIT;
    bool found = true;
    const char *full[] = { "AWS_ACCESS_KEY_ID=AKIAENV", "AWS_SECRET_ACCESS_KEY=sek",
                           "AWS_SESSION_TOKEN=tok",
                           "AWS_CREDENTIAL_EXPIRATION=2026-01-01T00:00:00Z", NULL };
    const char *legacy[] = { "AWS_ACCESS_KEY_ID=AK", "AWS_SECRET_ACCESS_KEY=s",
                             "AWS_SECURITY_TOKEN=old", NULL };
    const char *none[] = { "HOME=/nowhere", "AWS_ACCESS_KEY_ID=", NULL };
    const char *half[] = { "AWS_ACCESS_KEY_ID=AK", NULL };
    const char *other_half[] = { "AWS_SECRET_ACCESS_KEY=s", NULL };
    const char *bad_exp[] = { "AWS_ACCESS_KEY_ID=AK", "AWS_SECRET_ACCESS_KEY=s",
                              "AWS_CREDENTIAL_EXPIRATION=tomorrow", NULL };
    aws_creds_init(&c);
    CHECK_OK(aws_creds_from_env(full, &c, &found, &why, &e), &e);
    CHECK(found);
    CHECK_STR_EQ(c.access_key_id, "AKIAENV");
    CHECK_STR_EQ(c.secret_access_key, "sek");
    CHECK_STR_EQ(c.session_token, "tok");
    CHECK_INT_EQ(c.expiration, 1767225600);
    CHECK_STR_EQ(c.source, "environment");
    CHECK_OK(aws_creds_from_env(legacy, &c, &found, &why, &e), &e);
    CHECK_STR_EQ(c.session_token, "old");
    aws_creds_release(&c);
    CHECK_OK(aws_creds_from_env(none, &c, &found, &why, &e), &e);
    CHECK(!found);
    CHECK_STR_EQ(buf_cstr(&why), "AWS_ACCESS_KEY_ID unset");
    CHECK(c.access_key_id == NULL);
    CHECK_INT_EQ(aws_creds_from_env(half, &c, &found, &why, &e), -1);
    CHECK_STR_EQ(e.msg, "environment: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
    CHECK(!found && c.access_key_id == NULL);
    err_clear(&e);
    CHECK_INT_EQ(aws_creds_from_env(other_half, &c, &found, &why, &e), -1);
    CHECK_STR_EQ(e.msg, "environment: AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
    err_clear(&e);
    CHECK_INT_EQ(aws_creds_from_env(bad_exp, &c, &found, &why, &e), -1);
    CHECK_STR_CONTAINS(e.msg, "AWS_CREDENTIAL_EXPIRATION 'tomorrow' is not an ISO 8601");
    CHECK(c.access_key_id == NULL);
    /* NULL env reads the process environment */
    setenv("JITRCA_TEST_ENV_PROBE", "x1", 1);
    CHECK_STR_EQ(aws_env_get(NULL, "JITRCA_TEST_ENV_PROBE"), "x1");
    CHECK(aws_env_get(full, "AWS_ACCESS_KEY") == NULL);
out:
    aws_creds_release(&c);
    buf_release(&why);
    return rc;
}

static int test_ini_parse(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_ini *ini = NULL;
    const char *text = "# leading comment\n"
                       "; another\n"
                       "[default]\n"
                       "aws_access_key_id = AKIADEFAULT\n"
                       "AWS_Secret_Access_Key=  sek  \r\n"
                       "cont = first\n"
                       "\tsecond line\n"
                       "region: eu-west-1\n"
                       "\n"
                       "[profile   dev]   # trailing comment\n"
                       "s3 =\n"
                       "    max_concurrent_requests = 10\n"
                       "    addressing_style = path\n"
                       "empty =\n"
                       "url = https://x/?a=b\n";
    ini = aws_ini_parse(text, strlen(text), "cfg", &e);
    CHECK(ini != NULL);
    CHECK_STR_EQ(aws_ini_get(ini, "default", "aws_access_key_id"), "AKIADEFAULT");
    CHECK_STR_EQ(aws_ini_get(ini, "default", "aws_secret_access_key"), "sek");
    CHECK_STR_EQ(aws_ini_get(ini, "default", "region"), "eu-west-1");
    CHECK_STR_EQ(aws_ini_get(ini, "default", "cont"), "first\nsecond line");
    CHECK(aws_ini_has_section(ini, "profile dev"));
    CHECK_STR_EQ(aws_ini_get(ini, "profile dev", "s3"),
                 "\nmax_concurrent_requests = 10\naddressing_style = path");
    CHECK_STR_EQ(aws_ini_get(ini, "profile dev", "empty"), "");
    CHECK_STR_EQ(aws_ini_get(ini, "profile dev", "url"), "https://x/?a=b");
    CHECK(aws_ini_get(ini, "profile dev", "region") == NULL);
    CHECK(aws_ini_get(ini, "nosuch", "region") == NULL);
    CHECK_STR_EQ(aws_ini_profile_section(ini, AWS_FILE_CONFIG, "dev"), "profile dev");
    CHECK_STR_EQ(aws_ini_profile_section(ini, AWS_FILE_CONFIG, "default"), "default");
    CHECK(aws_ini_profile_section(ini, AWS_FILE_CREDENTIALS, "dev") == NULL);
    CHECK_STR_EQ(aws_ini_profile_section(ini, AWS_FILE_CREDENTIALS, "default"), "default");
    aws_ini_free(ini);
    ini = NULL;

    static const struct {
        const char *text;
        const char *want;
    } bad[] = {
        { "region = x\n[default]\n", "f:1: key outside any [section]" },
        { "[default]\njust words\n", "f:2: expected 'key = value' or '[section]'" },
        { "[default\nregion=x\n", "f:1: section header without ']'" },
        { "[a]\n[b]\n[a]\n", "f:3: duplicate section [a]" },
        { "[profile  a]\n[profile a]\n", "f:2: duplicate section [profile a]" },
        { "[a]\nk=1\nK = 2\n", "f:3: duplicate key 'k' in [a]" },
        { "[a] junk\n", "f:1: text after section header" },
        { "[ ]\n", "f:1: empty section name" },
        { "[a]\n = v\n", "f:2: empty key" },
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err_clear(&e);
        ini = aws_ini_parse(bad[i].text, strlen(bad[i].text), "f", &e);
        CHECK(ini == NULL);
        CHECK_STR_EQ(e.msg, bad[i].want);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
    }
    err_clear(&e);
    ini = aws_ini_parse("[a]\nk=\0v\n", 8, "f", &e);
    CHECK(ini == NULL);
    CHECK_STR_EQ(e.msg, "f: NUL byte in file");
out:
    aws_ini_free(ini);
    return rc;
}

static int test_creds_from_ini(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_ini *cred = NULL, *cfg = NULL;
    struct aws_creds c;
    struct buf why = BUF_INIT;
    bool found = false;
    const char *ctext = "[default]\naws_access_key_id=AKD\naws_secret_access_key=SKD\n"
                        "[dev]\naws_access_key_id = AKDEV\naws_secret_access_key = SKDEV\n"
                        "aws_session_token = TDEV\n"
                        "[profile dev2]\naws_access_key_id=X\naws_secret_access_key=Y\n"
                        "[half]\naws_access_key_id=AK\n"
                        "[otherhalf]\naws_secret_access_key=SK\n"
                        "[inline]\naws_access_key_id=AK # comment\naws_secret_access_key=SK\n";
    const char *gtext = "[default]\naws_access_key_id=AKCFGD\naws_secret_access_key=SKCFGD\n"
                        "[profile default]\naws_access_key_id=AKPD\naws_secret_access_key=SKPD\n"
                        "[profile proc]\ncredential_process = /bin/get-creds\n"
                        "[profile role]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = dev\n"
                        "[profile sso]\nsso_session = x\n"
                        "[profile nokeys]\nregion = us-east-1\n";
    aws_creds_init(&c);
    cred = aws_ini_parse(ctext, strlen(ctext), "creds", &e);
    cfg = aws_ini_parse(gtext, strlen(gtext), "config", &e);
    CHECK(cred != NULL && cfg != NULL);

    CHECK_OK(aws_creds_from_ini(cred, AWS_FILE_CREDENTIALS, "dev", "credentials file F", &c, &found,
                                &why, &e),
             &e);
    CHECK(found);
    CHECK_STR_EQ(c.access_key_id, "AKDEV");
    CHECK_STR_EQ(c.session_token, "TDEV");
    CHECK_STR_EQ(c.source, "credentials file F profile dev");
    /* [profile dev2] in the credentials file is the profile "profile dev2" */
    CHECK_OK(aws_creds_from_ini(cred, AWS_FILE_CREDENTIALS, "dev2", "F", &c, &found, &why, &e), &e);
    CHECK(!found);
    CHECK_STR_EQ(buf_cstr(&why), "no profile 'dev2'");
    /* [profile default] wins over [default] in the config file */
    CHECK_OK(aws_creds_from_ini(cfg, AWS_FILE_CONFIG, "default", "G", &c, &found, &why, &e), &e);
    CHECK(found);
    CHECK_STR_EQ(c.access_key_id, "AKPD");
    static const struct {
        const char *profile, *why;
    } none[] = {
        { "proc", "profile 'proc' has no aws_access_key_id" },
        { "role", "profile 'role' has no aws_access_key_id" },
        { "sso", "profile 'sso' has no aws_access_key_id" },
        { "nokeys", "profile 'nokeys' has no aws_access_key_id" },
    };
    for (size_t i = 0; i < ARRAY_LEN(none); i++) {
        buf_reset(&why);
        CHECK_OK(
            aws_creds_from_ini(cfg, AWS_FILE_CONFIG, none[i].profile, "G", &c, &found, &why, &e),
            &e);
        CHECK(!found);
        CHECK_STR_EQ(buf_cstr(&why), none[i].why);
    }
    aws_creds_release(&c);
    CHECK_INT_EQ(aws_creds_from_ini(cred, AWS_FILE_CREDENTIALS, "half", "F", &c, &found, &why, &e),
                 -1);
    CHECK_STR_EQ(e.msg, "F: profile 'half' has aws_access_key_id but no aws_secret_access_key");
    CHECK(!found && c.access_key_id == NULL);
    err_clear(&e);
    CHECK_INT_EQ(
        aws_creds_from_ini(cred, AWS_FILE_CREDENTIALS, "otherhalf", "F", &c, &found, &why, &e), -1);
    CHECK_STR_EQ(e.msg, "F: profile 'otherhalf' has aws_secret_access_key but no "
                        "aws_access_key_id");
    err_clear(&e);
    /* configparser has no inline comments: the comment is part of the value, which is refused */
    CHECK_INT_EQ(
        aws_creds_from_ini(cred, AWS_FILE_CREDENTIALS, "inline", "F", &c, &found, &why, &e), -1);
    CHECK_STR_CONTAINS(e.msg, "F profile inline: access key id contains a space");
    CHECK(c.access_key_id == NULL);
out:
    aws_ini_free(cred);
    aws_ini_free(cfg);
    aws_creds_release(&c);
    buf_release(&why);
    return rc;
}

static int test_config_resolve(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_config cfg;
    struct buf home = BUF_INIT, cfile = BUF_INIT, env1 = BUF_INIT, env2 = BUF_INIT;
    const char *env[8];
    aws_config_init(&cfg);
    buf_addf(&home, "%s/home", tt_tmpdir());
    CHECK_OK(file_mkdirs(home.data, 0700, &e), &e);
    buf_addf(&cfile, "%s/.aws", home.data);
    CHECK_OK(file_mkdirs(cfile.data, 0700, &e), &e);
    buf_reset(&cfile);
    buf_addf(&cfile, "%s/.aws/config", home.data);
    {
        const char *t = "[default]\nregion = eu-central-1\n[profile dev]\nregion=us-west-2\n";
        CHECK_OK(file_write_atomic(cfile.data, t, strlen(t), 0600, false, &e), &e);
    }
    buf_addf(&env1, "HOME=%s", home.data);

    /* defaults from HOME; region from the config file */
    env[0] = env1.data;
    env[1] = NULL;
    CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
    CHECK_STR_EQ(cfg.profile, "default");
    CHECK_STR_EQ(cfg.config_file, cfile.data);
    CHECK(cfg.credentials == NULL && cfg.config != NULL);
    CHECK_STR_EQ(cfg.region, "eu-central-1");
    CHECK_STR_CONTAINS(cfg.region_source, "config file ");
    CHECK_STR_EQ(cfg.endpoint, "https://iot.eu-central-1.amazonaws.com");

    /* AWS_PROFILE, AWS_DEFAULT_REGION, AWS_REGION in increasing precedence */
    env[1] = "AWS_PROFILE=dev";
    env[2] = NULL;
    CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
    CHECK_STR_EQ(cfg.region, "us-west-2");
    env[2] = "AWS_DEFAULT_REGION=ap-south-1";
    env[3] = NULL;
    CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
    CHECK_STR_EQ(cfg.region, "ap-south-1");
    CHECK_STR_EQ(cfg.region_source, "AWS_DEFAULT_REGION");
    env[3] = "AWS_REGION=cn-north-1";
    env[4] = NULL;
    CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
    CHECK_STR_EQ(cfg.region, "cn-north-1");
    CHECK_STR_EQ(cfg.endpoint, "https://iot.cn-north-1.amazonaws.com.cn");
    CHECK_OK(aws_config_resolve(&cfg, env, "sa-east-1", NULL, &e), &e);
    CHECK_STR_EQ(cfg.region, "sa-east-1");
    CHECK_STR_EQ(cfg.region_source, "configuration");

    /* endpoints: override > AWS_ENDPOINT_URL_IOT > AWS_ENDPOINT_URL; trailing '/' dropped */
    env[4] = "AWS_ENDPOINT_URL=http://127.0.0.1:9000/";
    env[5] = NULL;
    CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
    CHECK_STR_EQ(cfg.endpoint, "http://127.0.0.1:9000");
    env[5] = "AWS_ENDPOINT_URL_IOT=http://[::1]:9001";
    env[6] = NULL;
    CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
    CHECK_STR_EQ(cfg.endpoint, "http://[::1]:9001");
    CHECK_OK(aws_config_resolve(&cfg, env, NULL, "https://iot-fips.us-east-1.amazonaws.com", &e),
             &e);
    CHECK_STR_EQ(cfg.endpoint, "https://iot-fips.us-east-1.amazonaws.com");
    env[6] = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=TRUE";
    env[7] = NULL;
    CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
    CHECK_STR_EQ(cfg.endpoint, "https://iot.cn-north-1.amazonaws.com.cn");

    /* errors: each leaves cfg empty */
    static const struct {
        const char *var;
        const char *want;
    } bad[] = {
        { "AWS_ENDPOINT_URL_IOT=ftp://x", "AWS_ENDPOINT_URL_IOT: endpoint must start with" },
        { "AWS_ENDPOINT_URL_IOT=https://u:p@host", "AWS_ENDPOINT_URL_IOT: endpoint contains '@'" },
        { "AWS_ENDPOINT_URL_IOT=https://h/?q", "endpoint contains '?'" },
        { "AWS_ENDPOINT_URL_IOT=https://h x", "endpoint contains 'a space" },
        { "AWS_ENDPOINT_URL_IOT=https://", "AWS_ENDPOINT_URL_IOT: endpoint has no host" },
        { "AWS_REGION=US-EAST-1", "region 'US-EAST-1' from AWS_REGION is not [a-z0-9-]" },
        { "AWS_PROFILE=ghost", "profile 'ghost' (AWS_PROFILE) is in neither" },
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        const char *benv[] = { env1.data, bad[i].var, NULL };
        err_clear(&e);
        CHECK_INT_EQ(aws_config_resolve(&cfg, benv, NULL, NULL, &e), -1);
        CHECK_STR_CONTAINS(e.msg, bad[i].want);
        CHECK(cfg.region == NULL && cfg.endpoint == NULL && cfg.config == NULL);
    }
    {
        const char *nohome[] = { "AWS_CONFIG_FILE=/nonexistent/config", NULL };
        err_clear(&e);
        CHECK_INT_EQ(aws_config_resolve(&cfg, nohome, NULL, NULL, &e), -1);
        CHECK_STR_EQ(e.msg, "no AWS region: AWS_REGION and AWS_DEFAULT_REGION unset, no region "
                            "for profile 'default' in /nonexistent/config");
        CHECK(cfg.credentials_file == NULL);
    }
    {
        buf_addf(&env2, "AWS_SHARED_CREDENTIALS_FILE=%s",
                 write_file("broken", "[default]\naws_access_key_id\n"));
        const char *broken[] = { env1.data, env2.data, NULL };
        err_clear(&e);
        CHECK_INT_EQ(aws_config_resolve(&cfg, broken, NULL, NULL, &e), -1);
        CHECK_STR_CONTAINS(e.msg, "/broken:2: expected 'key = value' or '[section]'");
    }
out:
    aws_config_release(&cfg);
    buf_release(&home);
    buf_release(&cfile);
    buf_release(&env1);
    buf_release(&env2);
    return rc;
}

/* Resolves config and starts the chain for env. */
static int chain_for(const char *const *env, struct aws_config *cfg, struct aws_chain *ch,
                     struct err *e)
{
    if (aws_config_resolve(cfg, env, NULL, NULL, e) != 0) {
        return -1;
    }
    return aws_chain_start(ch, cfg, env, e);
}

static int test_chain(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_config cfg;
    struct aws_chain ch;
    struct aws_creds got;
    struct buf cred = BUF_INIT, conf = BUF_INIT, home = BUF_INIT;
    aws_config_init(&cfg);
    aws_chain_init(&ch);
    aws_creds_init(&got);
    buf_addf(&home, "HOME=%s/nohome", tt_tmpdir());
    buf_addf(&cred, "AWS_SHARED_CREDENTIALS_FILE=%s",
             write_file("credentials", "[default]\naws_access_key_id=AKFILE\n"
                                       "aws_secret_access_key=SKFILE\n"
                                       "[proc]\nregion=eu-west-1\n"));
    buf_addf(&conf, "AWS_CONFIG_FILE=%s",
             write_file("config", "[default]\nregion=us-east-1\n[profile cfgonly]\n"
                                  "aws_access_key_id=AKCFG\naws_secret_access_key=SKCFG\n"
                                  "[profile proc]\ncredential_process = /bin/echo '{}'\n"
                                  "aws_access_key_id=AKPROCCFG\naws_secret_access_key=S\n"));

    /* environment first */
    {
        const char *env[] = { home.data,
                              cred.data,
                              conf.data,
                              "AWS_ACCESS_KEY_ID=AKENV",
                              "AWS_SECRET_ACCESS_KEY=SKENV",
                              "AWS_WEB_IDENTITY_TOKEN_FILE=/t",
                              "AWS_ROLE_ARN=arn:aws:iam::1:role/r",
                              NULL };
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_READY);
        CHECK_STR_EQ(ch.creds.access_key_id, "AKENV");
        CHECK_INT_EQ(ch.nroles, 0);
    }
    /* web identity (environment) wins over the shared files */
    {
        const char *env[] = { home.data,
                              cred.data,
                              conf.data,
                              "AWS_WEB_IDENTITY_TOKEN_FILE=/t",
                              "AWS_ROLE_ARN=arn:aws:iam::1:role/r",
                              NULL };
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_FETCH_WEB_IDENTITY);
        CHECK(ch.creds.access_key_id == NULL);
        CHECK_STR_CONTAINS(ch.base, "web identity");
    }
    /* then the credentials file */
    {
        const char *env[] = { home.data, cred.data, conf.data, NULL };
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_READY);
        CHECK_STR_EQ(ch.creds.access_key_id, "AKFILE");
        CHECK_STR_CONTAINS(ch.creds.source, "shared credentials file ");
    }
    /* credential_process before the config file's keys */
    {
        const char *env[] = { home.data, cred.data, conf.data, "AWS_PROFILE=proc", NULL };
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_FETCH_PROCESS);
        CHECK_STR_EQ(ch.process, "/bin/echo '{}'");
        CHECK_STR_EQ(ch.base, "credential_process of profile 'proc'");
        CHECK_STR_EQ(cfg.region, "eu-west-1"); /* a setting in the credentials file counts */
    }
    /* then the config file */
    {
        const char *env[] = {
            home.data, cred.data, conf.data, "AWS_PROFILE=cfgonly", "AWS_REGION=us-east-1", NULL
        };
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_READY);
        CHECK_STR_EQ(ch.creds.access_key_id, "AKCFG");
        CHECK_STR_CONTAINS(ch.creds.source, "config file ");
    }
    /* nothing anywhere: the message names every source */
    {
        const char *env[] = { home.data, "AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true",
                              NULL };
        err_clear(&e);
        CHECK_INT_EQ(chain_for(env, &cfg, &ch, &e), -1);
        CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
        CHECK_STR_EQ(e.detail, "no AWS credentials: environment (AWS_ACCESS_KEY_ID unset), web "
                               "identity (not configured), SSO (no sso_account_id or "
                               "sso_role_name), shared credentials file ~/.aws/credentials (not "
                               "found), credential_process (none), config file ~/.aws/config (not "
                               "found), container endpoint (not configured), EC2 IMDS (disabled)");
        CHECK(strncmp(e.msg, e.detail, sizeof(e.msg) - 1) == 0);
        CHECK(ch.creds.access_key_id == NULL);
    }
    /* a configured source that fails ends the fetch: no fall-back to another identity */
    {
        const char *env[] = { home.data,
                              "AWS_REGION=us-east-1",
                              "AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/token",
                              "AWS_ROLE_ARN=arn:aws:iam::123456789012:role/jitrca",
                              "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/abc",
                              "AWS_CONTAINER_AUTHORIZATION_TOKEN=Bearer x",
                              NULL };
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_FETCH_WEB_IDENTITY);
        CHECK_STR_EQ(ch.web_identity_token_file, "/var/run/secrets/token");
        CHECK_STR_EQ(ch.role_arn, "arn:aws:iam::123456789012:role/jitrca");
        CHECK(ch.role_session_name == NULL);
        CHECK(ch.container_url == NULL && ch.imds_endpoint == NULL);
        err_clear(&e);
        CHECK_INT_EQ(aws_chain_failed(&ch, ERRC_DENIED, "InvalidIdentityToken", &e), -1);
        CHECK_INT_EQ(e.code, ERRC_DENIED);
        CHECK_STR_EQ(e.msg, "AWS credentials from web identity (role arn:aws:iam::123456789012:"
                            "role/jitrca): InvalidIdentityToken");
        CHECK_INT_EQ(ch.next, AWS_CREDS_READY);
    }
    /* the container when nothing before it applies */
    {
        const char *env[] = { home.data, "AWS_REGION=us-east-1",
                              "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/abc",
                              "AWS_CONTAINER_AUTHORIZATION_TOKEN=Bearer x", NULL };
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_FETCH_CONTAINER);
        CHECK_STR_EQ(ch.container_url, "http://169.254.170.2/v2/credentials/abc");
        CHECK_STR_EQ(ch.container_auth_token, "Bearer x");
        CHECK(ch.imds_endpoint == NULL);
    }
    /* IMDS, the last resort: its failure is "no AWS credentials" naming every source */
    {
        const char *env[] = { home.data, "AWS_REGION=us-east-1", NULL };
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_FETCH_IMDS);
        CHECK_STR_EQ(ch.imds_endpoint, "http://169.254.169.254");
        CHECK(ch.last_resort);
        err_clear(&e);
        CHECK_INT_EQ(aws_chain_failed(&ch, ERRC_TIMEOUT, "timeout after 1 s", &e), -1);
        CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
        CHECK_STR_CONTAINS(e.detail, "container endpoint (not configured), EC2 IMDS (timeout "
                                     "after 1 s)");
    }
    /* a fetched result becomes the chain's credentials */
    {
        const char *env[] = { home.data, "AWS_REGION=us-east-1",
                              "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:51679/creds",
                              "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/var/run/token", NULL };
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_FETCH_CONTAINER);
        CHECK_STR_EQ(ch.container_url, "http://127.0.0.1:51679/creds");
        CHECK_STR_EQ(ch.container_auth_token_file, "/var/run/token");
        CHECK_OK(aws_creds_set(&got, "ASIA1", "s", "t", 1767225600, "container endpoint", &e), &e);
        aws_chain_fetched(&ch, &got);
        CHECK_INT_EQ(ch.next, AWS_CREDS_READY);
        CHECK_STR_EQ(ch.creds.access_key_id, "ASIA1");
        CHECK(got.access_key_id == NULL);
    }
    /* IPv6 IMDS; web identity from the profile */
    {
        const char *env[] = { home.data, conf.data, "AWS_PROFILE=wi",
                              "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6", NULL };
        const char *wi = write_file("config-wi", "[profile wi]\nregion = eu-west-1\n"
                                                 "web_identity_token_file = /t\n"
                                                 "role_arn = arn:aws:iam::1:role/r\n"
                                                 "role_session_name = s1\n"
                                                 "[profile v6]\nregion = eu-west-1\n");
        buf_reset(&conf);
        buf_addf(&conf, "AWS_CONFIG_FILE=%s", wi);
        env[1] = conf.data;
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_FETCH_WEB_IDENTITY);
        CHECK_STR_EQ(ch.role_session_name, "s1");
        CHECK_INT_EQ(ch.nroles, 0); /* role_arn with a token file is web identity's */
        env[2] = "AWS_PROFILE=v6";
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_STR_EQ(ch.imds_endpoint, "http://[fd00:ec2::254]");
    }
    /* misconfigured sources are errors, not skipped sources */
    static const struct {
        const char *a, *b, *want;
    } bad[] = {
        { "AWS_WEB_IDENTITY_TOKEN_FILE=/t", "X=1", "a token file is configured but no role ARN" },
        { "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://evil.example.com/creds", "X=1",
          "plain http is allowed only to loopback" },
        { "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1.evil.com/", "X=1",
          "plain http is allowed only to loopback" },
        { "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=v2/creds", "X=1", "must start with '/'" },
        { "AWS_CONTAINER_CREDENTIALS_FULL_URI=https://creds.example.com/x",
          "AWS_CONTAINER_AUTHORIZATION_TOKEN=a\r\nX-Evil: 1", "contains CR or LF" },
        { "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv5", "X=1", "must be IPv4 or IPv6" },
        { "AWS_EC2_METADATA_SERVICE_ENDPOINT=169.254.169.254", "X=1",
          "AWS_EC2_METADATA_SERVICE_ENDPOINT: endpoint must start with" },
        { "AWS_ACCESS_KEY_ID=AK", "X=1", "AWS_SECRET_ACCESS_KEY is not" },
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        const char *env[] = { home.data, "AWS_REGION=us-east-1", bad[i].a, bad[i].b, NULL };
        err_clear(&e);
        CHECK_INT_EQ(chain_for(env, &cfg, &ch, &e), -1);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, bad[i].want);
        CHECK(ch.creds.access_key_id == NULL && ch.next == AWS_CREDS_READY);
    }
    /* https container endpoints may go anywhere */
    {
        const char *env[] = { home.data, "AWS_REGION=us-east-1",
                              "AWS_CONTAINER_CREDENTIALS_FULL_URI=https://creds.example.com/x",
                              NULL };
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_FETCH_CONTAINER);
    }
out:
    aws_chain_release(&ch);
    aws_config_release(&cfg);
    aws_creds_release(&got);
    buf_release(&cred);
    buf_release(&conf);
    buf_release(&home);
    return rc;
}

/* Assume-role profiles: the plan's base and roles, and every configuration error. */
static int test_chain_roles(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_config cfg;
    struct aws_chain ch;
    struct buf cred = BUF_INIT, conf = BUF_INIT, home = BUF_INIT, prof = BUF_INIT;
    aws_config_init(&cfg);
    aws_chain_init(&ch);
    buf_addf(&home, "HOME=%s/nohome", tt_tmpdir());
    buf_addf(&cred, "AWS_SHARED_CREDENTIALS_FILE=%s",
             write_file("credentials-roles", "[base]\naws_access_key_id=AKBASE\n"
                                             "aws_secret_access_key=SKBASE\n"
                                             "[self]\naws_access_key_id=AKSELF\n"
                                             "aws_secret_access_key=SKSELF\n"));
    buf_addf(&conf, "AWS_CONFIG_FILE=%s",
             write_file("config-roles",
                        "[default]\nregion=us-east-1\n"
                        "[profile a]\nrole_arn=arn:aws:iam::1:role/a\nsource_profile=base\n"
                        "external_id=ext-1\nrole_session_name=sess.a\nduration_seconds=1800\n"
                        "[profile b]\nrole_arn=arn:aws:iam::2:role/b\nsource_profile=a\n"
                        "[profile env]\nrole_arn=arn:aws:iam::3:role/e\n"
                        "credential_source=Environment\n"
                        "[profile imds]\nrole_arn=arn:aws:iam::3:role/i\n"
                        "credential_source=Ec2InstanceMetadata\n"
                        "[profile ecs]\nrole_arn=arn:aws:iam::3:role/c\n"
                        "credential_source=EcsContainer\n"
                        "[profile self]\nrole_arn=arn:aws:iam::4:role/s\nsource_profile=self\n"
                        "[profile procsrc]\nrole_arn=arn:aws:iam::5:role/p\n"
                        "source_profile=proc\n"
                        "[profile proc]\ncredential_process=/usr/bin/true\n"
                        "[profile keyed]\nrole_arn=arn:aws:iam::6:role/k\nsource_profile=base\n"
                        "aws_access_key_id=AKKEYED\naws_secret_access_key=SKKEYED\n"
                        "[profile viakeyed]\nrole_arn=arn:aws:iam::7:role/v\n"
                        "source_profile=keyed\n"
                        "[profile loop1]\nrole_arn=arn:aws:iam::8:role/l1\nsource_profile=loop2\n"
                        "[profile loop2]\nrole_arn=arn:aws:iam::8:role/l2\nsource_profile=loop1\n"
                        "[profile selfloop]\nrole_arn=arn:aws:iam::8:role/x\n"
                        "source_profile=selfloop\n"
                        "[profile both]\nrole_arn=arn:aws:iam::9:role/x\nsource_profile=base\n"
                        "credential_source=Environment\n"
                        "[profile neither]\nrole_arn=arn:aws:iam::9:role/x\n"
                        "[profile ghost]\nrole_arn=arn:aws:iam::9:role/x\nsource_profile=nope\n"
                        "[profile badcs]\nrole_arn=arn:aws:iam::9:role/x\n"
                        "credential_source=Environmentt\n"
                        "[profile mfa]\nrole_arn=arn:aws:iam::9:role/x\nsource_profile=base\n"
                        "mfa_serial=arn:aws:iam::9:mfa/u\n"
                        "[profile dur]\nrole_arn=arn:aws:iam::9:role/x\nsource_profile=base\n"
                        "duration_seconds=60\n"
                        "[profile sess]\nrole_arn=arn:aws:iam::9:role/x\nsource_profile=base\n"
                        "role_session_name=has space\n"
                        "[profile empty]\nregion=us-east-1\n"
                        "[profile nocreds]\nrole_arn=arn:aws:iam::9:role/x\n"
                        "source_profile=empty\n"));
#define PROFILE_ENV(p, ...)                                                                  \
    buf_reset(&prof);                                                                        \
    buf_addf(&prof, "AWS_PROFILE=%s", p);                                                    \
    const char *env[] = {                                                                    \
        home.data, cred.data, conf.data, prof.data, "AWS_REGION=us-east-1", __VA_ARGS__ NULL \
    }

    /* a role with a static source profile: keys from the credentials file, one AssumeRole */
    {
        PROFILE_ENV("a", );
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_READY);
        CHECK_STR_EQ(ch.creds.access_key_id, "AKBASE");
        CHECK_INT_EQ(ch.nroles, 1);
        CHECK_STR_EQ(ch.roles[0].role_arn, "arn:aws:iam::1:role/a");
        CHECK_STR_EQ(ch.roles[0].external_id, "ext-1");
        CHECK_STR_EQ(ch.roles[0].session_name, "sess.a");
        CHECK_INT_EQ(ch.roles[0].duration_s, 1800);
        CHECK_STR_EQ(ch.roles[0].profile, "a");
    }
    /* chained: b's source is a, a's is base: base's keys, then a's role, then b's */
    {
        PROFILE_ENV("b", );
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_STR_EQ(ch.creds.access_key_id, "AKBASE");
        CHECK_INT_EQ(ch.nroles, 2);
        CHECK_STR_EQ(ch.roles[0].role_arn, "arn:aws:iam::1:role/a");
        CHECK_STR_EQ(ch.roles[1].role_arn, "arn:aws:iam::2:role/b");
        CHECK(ch.roles[1].external_id == NULL && ch.roles[1].session_name == NULL &&
              ch.roles[1].duration_s == 0);
    }
    /* the environment as credential_source, and the role wins over the environment's web
     * identity (assume role comes first in the chain) */
    {
        PROFILE_ENV("env", "AWS_ACCESS_KEY_ID=AKENV", "AWS_SECRET_ACCESS_KEY=SKENV", );
        /* environment keys are source 1 of the default chain: they win outright */
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.nroles, 0);
    }
    {
        PROFILE_ENV("env", );
        err_clear(&e);
        CHECK_INT_EQ(chain_for(env, &cfg, &ch, &e), -1);
        CHECK_STR_CONTAINS(e.msg, "profile 'env': credential_source Environment, but "
                                  "AWS_ACCESS_KEY_ID unset");
    }
    {
        PROFILE_ENV("imds", "AWS_WEB_IDENTITY_TOKEN_FILE=/t", "AWS_ROLE_ARN=arn:aws:iam::1:role/w",
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9", );
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_FETCH_IMDS);
        CHECK_STR_EQ(ch.imds_endpoint, "http://127.0.0.1:9");
        CHECK(!ch.last_resort);
        CHECK_INT_EQ(ch.nroles, 1);
        CHECK_STR_EQ(ch.roles[0].role_arn, "arn:aws:iam::3:role/i");
        err_clear(&e);
        CHECK_INT_EQ(aws_chain_failed(&ch, ERRC_TIMEOUT, "timeout", &e), -1);
        CHECK_INT_EQ(e.code, ERRC_TIMEOUT);
        CHECK_STR_EQ(e.msg, "AWS credentials from EC2 IMDS (credential_source of profile "
                            "'imds'): timeout");
    }
    {
        PROFILE_ENV("ecs", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/x", );
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_FETCH_CONTAINER);
        CHECK_INT_EQ(ch.nroles, 1);
    }
    /* a profile may be its own source when it has keys */
    {
        PROFILE_ENV("self", );
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_STR_EQ(ch.creds.access_key_id, "AKSELF");
        CHECK_INT_EQ(ch.nroles, 1);
        CHECK_STR_EQ(ch.roles[0].role_arn, "arn:aws:iam::4:role/s");
    }
    /* a source profile with credential_process */
    {
        PROFILE_ENV("procsrc", );
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_FETCH_PROCESS);
        CHECK_STR_EQ(ch.process, "/usr/bin/true");
        CHECK_INT_EQ(ch.nroles, 1);
    }
    /* a source profile with keys ends the chain even when it names a role itself */
    {
        PROFILE_ENV("viakeyed", );
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_STR_EQ(ch.creds.access_key_id, "AKKEYED");
        CHECK_INT_EQ(ch.nroles, 1);
        CHECK_STR_EQ(ch.roles[0].role_arn, "arn:aws:iam::7:role/v");
    }
    static const struct {
        const char *profile, *want;
    } bad[] = {
        { "loop1", "source_profile loop: loop1 -> loop2 -> loop1" },
        { "selfloop", "source_profile loop: selfloop -> selfloop" },
        { "both", "profile 'both' has both source_profile and credential_source" },
        { "neither", "profile 'neither' has role_arn but neither source_profile nor "
                     "credential_source" },
        { "ghost", "profile 'ghost': source_profile 'nope' does not exist" },
        { "badcs", "credential_source 'Environmentt' is not Environment, Ec2InstanceMetadata or "
                   "EcsContainer" },
        { "mfa", "profile 'mfa' needs an MFA code (mfa_serial)" },
        { "dur", "profile 'dur': duration_seconds must be 900 to 43200, not '60'" },
        { "sess", "profile 'sess': role_session_name must be 2 to 64 of" },
        { "nocreds", "profile 'nocreds': source_profile 'empty' has no credentials" },
        { "ecs", "credential_source EcsContainer, but AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" },
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        PROFILE_ENV(bad[i].profile, );
        err_clear(&e);
        CHECK_INT_EQ(chain_for(env, &cfg, &ch, &e), -1);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, bad[i].want);
        CHECK(ch.creds.access_key_id == NULL && ch.next == AWS_CREDS_READY);
    }
    {
        PROFILE_ENV("imds", "AWS_EC2_METADATA_DISABLED=true", );
        err_clear(&e);
        CHECK_INT_EQ(chain_for(env, &cfg, &ch, &e), -1);
        CHECK_STR_CONTAINS(e.msg, "credential_source Ec2InstanceMetadata, but "
                                  "AWS_EC2_METADATA_DISABLED=true");
    }
#undef PROFILE_ENV
out:
    aws_chain_release(&ch);
    aws_config_release(&cfg);
    buf_release(&cred);
    buf_release(&conf);
    buf_release(&home);
    buf_release(&prof);
    return rc;
}

/* SSO profiles: sso_session and legacy, the token cache's name, the missing settings. */
static int test_chain_sso(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_config cfg;
    struct aws_chain ch;
    struct buf conf = BUF_INIT, home = BUF_INIT, want = BUF_INIT;
    aws_config_init(&cfg);
    aws_chain_init(&ch);
    buf_addf(&home, "HOME=%s/ssohome", tt_tmpdir());
    buf_addf(
        &conf, "AWS_CONFIG_FILE=%s",
        write_file(
            "config-sso",
            "[default]\nregion=us-east-1\n"
            "[profile dev]\nregion=us-east-1\nsso_session = my-sso\nsso_account_id = 111122223333\n"
            "sso_role_name = Admin\n"
            "[sso-session my-sso]\nsso_start_url = https://my.awsapps.com/start\n"
            "sso_region = eu-west-1\nsso_registration_scopes = sso:account:access\n"
            "[profile legacy]\nsso_start_url = https://old.awsapps.com/start\n"
            "sso_region = us-east-2\nsso_account_id = 444455556666\n"
            "sso_role_name = Read\n"
            "[profile nosession]\nsso_session = none\nsso_account_id = 1\n"
            "sso_role_name = R\n"
            "[profile half]\nsso_account_id = 1\n"
            "[profile clash]\nsso_session = my-sso\nsso_account_id = 1\n"
            "sso_role_name = R\nsso_region = us-west-2\n"));
    {
        const char *env[] = { home.data, conf.data, "AWS_PROFILE=dev", "AWS_REGION=us-east-1",
                              NULL };
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_FETCH_SSO);
        CHECK_STR_EQ(ch.sso.session, "my-sso");
        CHECK_STR_EQ(ch.sso.region, "eu-west-1");
        CHECK_STR_EQ(ch.sso.account_id, "111122223333");
        CHECK_STR_EQ(ch.sso.role_name, "Admin");
        /* sha1("my-sso"), as `aws sso login` names the file */
        buf_addf(&want, "%s/ssohome/.aws/sso/cache/0ad374308c5a4e22f723adf10145eafad7c4031c.json",
                 tt_tmpdir());
        CHECK_INT_EQ(tt_sh("test \"$(printf %%s my-sso | sha1sum | cut -c1-40)\" = "
                           "0ad374308c5a4e22f723adf10145eafad7c4031c"),
                     0);
        CHECK_STR_EQ(ch.sso.cache_file, want.data);
    }
    {
        const char *env[] = { home.data, conf.data, "AWS_PROFILE=legacy", "AWS_REGION=us-east-1",
                              NULL };
        CHECK_OK(chain_for(env, &cfg, &ch, &e), &e);
        CHECK_INT_EQ(ch.next, AWS_CREDS_FETCH_SSO);
        CHECK(ch.sso.session == NULL);
        CHECK_STR_EQ(ch.sso.start_url, "https://old.awsapps.com/start");
        CHECK_STR_EQ(ch.sso.region, "us-east-2");
    }
    static const struct {
        const char *profile, *want;
    } bad[] = {
        { "AWS_PROFILE=nosession", "names sso_session 'none', which" },
        { "AWS_PROFILE=half", "profile 'half' is set up for SSO but lacks sso_role_name, "
                              "sso_start_url, sso_region" },
        { "AWS_PROFILE=clash", "profile 'clash': sso_region differs from its sso_session's" },
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        const char *env[] = { home.data, conf.data, bad[i].profile, "AWS_REGION=us-east-1", NULL };
        err_clear(&e);
        CHECK_INT_EQ(chain_for(env, &cfg, &ch, &e), -1);
        CHECK_STR_CONTAINS(e.msg, bad[i].want);
    }
out:
    aws_chain_release(&ch);
    aws_config_release(&cfg);
    buf_release(&conf);
    buf_release(&home);
    buf_release(&want);
    return rc;
}

static int test_iso8601(void)
{
    int rc = 0;
    time_t t = 0;
    static const struct {
        const char *s;
        long long want; /* -1: must be rejected */
    } v[] = {
        { "2026-01-01T00:00:00Z", 1767225600 },
        { "2026-01-01T00:00:00.123456Z", 1767225600 },
        { "2026-01-01T01:00:00+01:00", 1767225600 },
        { "2025-12-31T23:00:00-01:00", 1767225600 },
        { "2026-01-01T00:00:00+00:00", 1767225600 },
        { "2026-01-01T00:00:00", -1 },
        { "2026-01-01 00:00:00Z", -1 },
        { "2026-02-30T00:00:00Z", -1 },
        { "2026-01-01T00:00:00.Z", -1 },
        { "2026-01-01T00:00:00+0100", -1 },
        { "2026-01-01T00:00:00+24:00", -1 },
        { "2026-01-01T00:00:00Zjunk", -1 },
        { "+026-01-01T00:00:00Z", -1 },
        { "", -1 },
    };
    for (size_t i = 0; i < ARRAY_LEN(v); i++) {
        int r = aws_time_parse_iso8601(v[i].s, &t);
        if (v[i].want < 0) {
            if (r != -1) {
                TT_FAIL("accepted '%s'", v[i].s);
            }
        } else {
            CHECK_INT_EQ(r, 0);
            CHECK_INT_EQ(t, v[i].want);
        }
    }
out:
    return rc;
}

static int test_parse_json(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_creds c;
    struct buf big = BUF_INIT;
    const char *ecs = "{\"AccessKeyId\":\"ASIAECS\",\"SecretAccessKey\":\"sk/+=\","
                      "\"Token\":\"tok==\",\"Expiration\":\"2026-01-01T00:00:00Z\","
                      "\"RoleArn\":\"arn:aws:iam::1:role/r\"}";
    const char *imds = "{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2025-12-31T18:00:00Z\","
                       "\n  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"ASIAIMDS\",\n"
                       "  \"SecretAccessKey\" : \"s\",\n  \"Token\" : \"t\",\n"
                       "  \"Expiration\" : \"2026-01-01T06:00:00Z\"\n}";
    aws_creds_init(&c);
    CHECK_OK(aws_creds_parse_json(ecs, strlen(ecs), "container endpoint", &c, &e), &e);
    CHECK_STR_EQ(c.access_key_id, "ASIAECS");
    CHECK_STR_EQ(c.secret_access_key, "sk/+=");
    CHECK_STR_EQ(c.session_token, "tok==");
    CHECK_INT_EQ(c.expiration, 1767225600);
    CHECK_STR_EQ(c.source, "container endpoint");
    CHECK_OK(aws_creds_parse_json(imds, strlen(imds), "EC2 IMDS", &c, &e), &e);
    CHECK_STR_EQ(c.access_key_id, "ASIAIMDS");
    CHECK_INT_EQ(c.expiration, 1767225600 + 6 * 3600);

    static const struct {
        const char *body;
        enum err_code code;
        const char *want;
    } bad[] = {
        { "{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"Message\":\"no role\"}", ERRC_DENIED,
          "src: Code AssumeRoleUnauthorizedAccess: no role" },
        { "{\"Code\":7}", ERRC_DENIED, "src: Code (not a string): (no message)" },
        { "{\"SecretAccessKey\":\"s\",\"Token\":\"t\",\"Expiration\":\"2026-01-01T00:00:00Z\"}",
          ERRC_INVALID, "src: reply has no AccessKeyId" },
        { "{\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"s\",\"Expiration\":\"2026-01-01T00:00:00Z\"}",
          ERRC_INVALID, "src: reply has no Token" },
        { "{\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"s\",\"Token\":\"t\"}", ERRC_INVALID,
          "src: reply has no Expiration" },
        { "{\"AccessKeyId\":5,\"SecretAccessKey\":\"s\",\"Token\":\"t\",\"Expiration\":\"x\"}",
          ERRC_INVALID, "src: AccessKeyId is not a non-empty string" },
        { "{\"AccessKeyId\":\"\",\"SecretAccessKey\":\"s\",\"Token\":\"t\",\"Expiration\":\"x\"}",
          ERRC_INVALID, "src: AccessKeyId is not a non-empty string" },
        { "{\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"s\",\"Token\":\"t\",\"Expiration\":"
          "\"soon\"}",
          ERRC_INVALID, "src: Expiration 'soon' is not an ISO 8601 UTC time" },
        { "{\"AccessKeyId\":\"a\",\"AccessKeyId\":\"b\"}", ERRC_INVALID, "src: reply is not JSON" },
        { "[1,2]", ERRC_INVALID, "src: reply is not a JSON object" },
        { "<html>", ERRC_INVALID, "src: reply is not JSON" },
        { "", ERRC_INVALID, "src: reply is not JSON" },
        { "{\"AccessKeyId\":\"a b\",\"SecretAccessKey\":\"s\",\"Token\":\"t\",\"Expiration\":"
          "\"2026-01-01T00:00:00Z\"}",
          ERRC_INVALID, "src: access key id contains a space" },
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        aws_creds_release(&c);
        err_clear(&e);
        CHECK_INT_EQ(aws_creds_parse_json(bad[i].body, strlen(bad[i].body), "src", &c, &e), -1);
        CHECK_INT_EQ(e.code, bad[i].code);
        CHECK_STR_CONTAINS(e.msg, bad[i].want);
        CHECK(c.access_key_id == NULL);
    }
    buf_addch(&big, '"');
    for (int i = 0; i < 70000; i++) {
        buf_addch(&big, 'a');
    }
    buf_addch(&big, '"');
    err_clear(&e);
    CHECK_INT_EQ(aws_creds_parse_json(big.data, big.len, "src", &c, &e), -1);
    CHECK_INT_EQ(e.code, ERRC_TOO_LARGE);
    CHECK_STR_EQ(e.msg, "src: reply larger than 65536 bytes");
out:
    aws_creds_release(&c);
    buf_release(&big);
    return rc;
}

#define STS_HEAD                                                                                   \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"                                                 \
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"    \
    "  <AssumeRoleWithWebIdentityResult>\n"                                                        \
    "    <SubjectFromWebIdentityToken>system:serviceaccount:ns:sa</SubjectFromWebIdentityToken>\n" \
    "    <AssumedRoleUser>\n      <Arn>arn:aws:sts::1:assumed-role/r/s</Arn>\n"                    \
    "      <AssumedRoleId>AROA:s</AssumedRoleId>\n    </AssumedRoleUser>\n"
#define STS_CREDS(ak, sk, tok, exp)                                \
    "    <Credentials>\n      <AccessKeyId>" ak "</AccessKeyId>\n" \
    "      <SecretAccessKey>" sk "</SecretAccessKey>\n"            \
    "      <SessionToken>" tok "</SessionToken>\n"                 \
    "      <Expiration>" exp "</Expiration>\n    </Credentials>\n"
#define STS_TAIL                                                                              \
    "    <Audience>sts.amazonaws.com</Audience>\n  </AssumeRoleWithWebIdentityResult>\n"      \
    "  <ResponseMetadata>\n    <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>\n" \
    "  </ResponseMetadata>\n</AssumeRoleWithWebIdentityResponse>\n"

static int test_parse_sts_xml(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_creds c;
    const char *good =
        STS_HEAD STS_CREDS("ASIASTS", "wJal/K7+x=", "FwoG&amp;Zm&#x39;&#57;&lt;&gt;&quot;&apos;",
                           "2026-01-01T00:00:00Z") "<!-- a comment -->" STS_TAIL;
    aws_creds_init(&c);
    CHECK_OK(aws_creds_parse_sts_xml(good, strlen(good), "AssumeRoleWithWebIdentity",
                                     "web identity", &c, &e),
             &e);
    CHECK_STR_EQ(c.access_key_id, "ASIASTS");
    CHECK_STR_EQ(c.secret_access_key, "wJal/K7+x=");
    CHECK_STR_EQ(c.session_token, "FwoG&Zm99<>\"'");
    CHECK_INT_EQ(c.expiration, 1767225600);
    CHECK_STR_EQ(c.source, "web identity");

    static const struct {
        const char *body;
        enum err_code code;
        const char *want;
    } bad[] = {
        { "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>"
          "<Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Token expired</Message>"
          "</Error><RequestId>x</RequestId></ErrorResponse>",
          ERRC_DENIED, "sts: InvalidIdentityToken: Token expired" },
        { STS_HEAD STS_CREDS("A", "S", "", "2026-01-01T00:00:00Z") STS_TAIL, ERRC_INVALID,
          "sts: reply has no SessionToken" },
        { STS_HEAD STS_TAIL, ERRC_INVALID, "sts: reply has no AccessKeyId" },
        { STS_HEAD STS_CREDS("A", "S", "T", "2026-01-01") STS_TAIL, ERRC_INVALID,
          "sts: Expiration '2026-01-01' is not an ISO 8601 UTC time" },
        { STS_HEAD STS_CREDS("A", "S", "T", "2026-01-01T00:00:00Z")
              STS_CREDS("B", "S", "T", "2026-01-01T00:00:00Z") STS_TAIL,
          ERRC_INVALID, "sts: duplicate AccessKeyId" },
        { "<!DOCTYPE x [<!ENTITY a \"b\">]>" STS_HEAD, ERRC_INVALID,
          "sts: DTD, CDATA or processing instruction in XML" },
        { STS_HEAD STS_CREDS("<![CDATA[A]]>", "S", "T", "2026-01-01T00:00:00Z") STS_TAIL,
          ERRC_INVALID, "sts: DTD, CDATA or processing instruction in XML" },
        { STS_HEAD STS_CREDS("A", "S", "T&ent;", "2026-01-01T00:00:00Z") STS_TAIL, ERRC_INVALID,
          "sts: bad entity or character reference" },
        { STS_HEAD STS_CREDS("A", "S", "T&#0;", "2026-01-01T00:00:00Z") STS_TAIL, ERRC_INVALID,
          "sts: bad entity or character reference" },
        { STS_HEAD STS_CREDS("A", "S", "T&amp", "2026-01-01T00:00:00Z") STS_TAIL, ERRC_INVALID,
          "sts: bad entity or character reference" },
        { STS_HEAD STS_CREDS("A<b>x</b>", "S", "T", "2026-01-01T00:00:00Z") STS_TAIL, ERRC_INVALID,
          "sts: element inside AccessKeyId" },
        { "<AssumeRoleWithWebIdentityResponse><A></B></AssumeRoleWithWebIdentityResponse>",
          ERRC_INVALID, "sts: mismatched XML end tag" },
        { STS_HEAD, ERRC_INVALID, "sts: truncated XML" },
        { "<Other/>", ERRC_INVALID, "sts: unexpected XML root element <Other>" },
        { "junk" STS_HEAD, ERRC_INVALID, "sts: text outside the root element" },
        { STS_HEAD STS_CREDS("A", "S", "T", "2026-01-01T00:00:00Z") STS_TAIL "<ErrorResponse/>",
          ERRC_INVALID, "sts: more than one XML root element" },
        { "<AssumeRoleWithWebIdentityResponse a=\"<\">", ERRC_INVALID, "sts: malformed XML tag" },
        { "<AssumeRoleWithWebIdentityResponse>< x/>", ERRC_INVALID, "sts: malformed XML tag" },
        { "<?xml version=\"1.0\"", ERRC_INVALID, "sts: unterminated XML declaration" },
        { "<AssumeRoleWithWebIdentityResponse><!-- x", ERRC_INVALID,
          "sts: unterminated XML comment" },
        { "<AssumeRoleWithWebIdentityResponse><?pi x?>", ERRC_INVALID,
          "sts: DTD, CDATA or processing instruction in XML" },
        { "", ERRC_INVALID, "sts: truncated XML" },
        { "<a><b><c><d><e><f><g><h><i><j><k><l><m><n><o><p><q>", ERRC_INVALID,
          "sts: unexpected XML root element <a>" },
        { "<AssumeRoleWithWebIdentityResponse><b><c><d><e><f><g><h><i><j><k><l><m><n><o><p><q>",
          ERRC_INVALID, "sts: XML nested deeper than 16" },
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        aws_creds_release(&c);
        err_clear(&e);
        CHECK_INT_EQ(aws_creds_parse_sts_xml(bad[i].body, strlen(bad[i].body),
                                             "AssumeRoleWithWebIdentity", "sts", &c, &e),
                     -1);
        CHECK_INT_EQ(e.code, bad[i].code);
        CHECK_STR_EQ(e.msg, bad[i].want);
        CHECK(c.access_key_id == NULL);
    }
    err_clear(&e);
    CHECK_INT_EQ(aws_creds_parse_sts_xml("<a>\0</a>", 8, "AssumeRole", "sts", &c, &e), -1);
    CHECK_STR_EQ(e.msg, "sts: NUL byte in XML");
    /* AssumeRole's reply; a web identity reply is not one */
    {
        const char *ar = "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
                         "<AssumeRoleResult><AssumedRoleUser><Arn>arn:aws:sts::1:assumed-role/r/s"
                         "</Arn></AssumedRoleUser><Credentials><AccessKeyId>ASIAAR</AccessKeyId>"
                         "<SecretAccessKey>sk</SecretAccessKey><SessionToken>tok</SessionToken>"
                         "<Expiration>2026-01-01T01:00:00Z</Expiration></Credentials>"
                         "</AssumeRoleResult></AssumeRoleResponse>";
        aws_creds_release(&c);
        CHECK_OK(aws_creds_parse_sts_xml(ar, strlen(ar), "AssumeRole", "role", &c, &e), &e);
        CHECK_STR_EQ(c.access_key_id, "ASIAAR");
        CHECK_INT_EQ(c.expiration, 1767229200);
        aws_creds_release(&c);
        err_clear(&e);
        CHECK_INT_EQ(aws_creds_parse_sts_xml(good, strlen(good), "AssumeRole", "sts", &c, &e), -1);
        CHECK_STR_EQ(e.msg, "sts: unexpected XML root element <AssumeRoleWithWebIdentityResponse>");
    }
out:
    aws_creds_release(&c);
    return rc;
}

/* credential_process output, the SSO portal's reply and token cache, command lines. */
static int test_parse_process_sso(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_creds c;
    char *tok = NULL, **argv = NULL;
    time_t exp = 0;
    const time_t now = 1767225600; /* 2026-01-01T00:00:00Z */
    aws_creds_init(&c);
    {
        const char *ok = "{\"Version\": 1, \"AccessKeyId\": \"ASIAPROC\", \"SecretAccessKey\": "
                         "\"s\", \"SessionToken\": \"t\", \"Expiration\": "
                         "\"2026-01-01T01:00:00Z\"}";
        CHECK_OK(aws_creds_parse_process(ok, strlen(ok), "proc", now, &c, &e), &e);
        CHECK_STR_EQ(c.access_key_id, "ASIAPROC");
        CHECK_STR_EQ(c.session_token, "t");
        CHECK_INT_EQ(c.expiration, now + 3600);
        const char *long_term = "{\"Version\": 1, \"AccessKeyId\": \"AKIAP\", "
                                "\"SecretAccessKey\": \"s\"}";
        CHECK_OK(aws_creds_parse_process(long_term, strlen(long_term), "proc", now, &c, &e), &e);
        CHECK(c.session_token == NULL && c.expiration == 0);
    }
    static const struct {
        const char *body, *want;
    } badp[] = {
        { "{\"Version\": 2, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"s\"}",
          "proc: \"Version\" must be 1" },
        { "{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"s\"}", "proc: \"Version\" must be 1" },
        { "{\"Version\": \"1\", \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"s\"}",
          "proc: \"Version\" must be 1" },
        { "{\"Version\": 1, \"SecretAccessKey\": \"s\"}", "proc: reply has no AccessKeyId" },
        { "{\"Version\": 1, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"s\", \"Expiration\": "
          "\"2025-12-31T23:00:00Z\"}",
          "proc: the credentials expired at 2025-12-31T23:00:00Z" },
        { "{\"Version\": 1, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"s\", \"Expiration\": "
          "\"tomorrow\"}",
          "proc: Expiration 'tomorrow' is not an ISO 8601 UTC time" },
        { "not json", "proc: not JSON" },
        { "[1]", "proc: not a JSON object" },
        { "{\"Version\": 1, \"AccessKeyId\": \"A B\", \"SecretAccessKey\": \"s\"}",
          "access key id contains a space" },
    };
    for (size_t i = 0; i < ARRAY_LEN(badp); i++) {
        aws_creds_release(&c);
        err_clear(&e);
        CHECK_INT_EQ(
            aws_creds_parse_process(badp[i].body, strlen(badp[i].body), "proc", now, &c, &e), -1);
        CHECK_STR_CONTAINS(e.msg, badp[i].want);
        CHECK(c.access_key_id == NULL);
    }
    {
        const char *ok =
            "{\"roleCredentials\": {\"accessKeyId\": \"ASIASSO\", \"secretAccessKey\": "
            "\"s\", \"sessionToken\": \"t\", \"expiration\": 1767229200000}}";
        CHECK_OK(aws_creds_parse_sso(ok, strlen(ok), "sso", &c, &e), &e);
        CHECK_STR_EQ(c.access_key_id, "ASIASSO");
        CHECK_INT_EQ(c.expiration, now + 3600);
        aws_creds_release(&c);
        const char *bad1 = "{\"roleCredentials\": {\"accessKeyId\": \"A\", \"secretAccessKey\": "
                           "\"s\", \"sessionToken\": \"t\", \"expiration\": \"soon\"}}";
        err_clear(&e);
        CHECK_INT_EQ(aws_creds_parse_sso(bad1, strlen(bad1), "sso", &c, &e), -1);
        CHECK_STR_CONTAINS(e.msg, "expiration is not a positive number of milliseconds");
        const char *bad2 = "{\"message\": \"no\"}";
        err_clear(&e);
        CHECK_INT_EQ(aws_creds_parse_sso(bad2, strlen(bad2), "sso", &c, &e), -1);
        CHECK_STR_CONTAINS(e.msg, "reply has no roleCredentials object");
    }
    {
        const char *cache = "{\"startUrl\": \"https://x.awsapps.com/start\", \"region\": "
                            "\"eu-west-1\", \"accessToken\": \"aoa-tok\", \"expiresAt\": "
                            "\"2026-01-01T08:00:00Z\", \"refreshToken\": \"r\"}";
        CHECK_OK(aws_sso_token_parse(cache, strlen(cache), "cache", &tok, &exp, &e), &e);
        CHECK_STR_EQ(tok, "aoa-tok");
        CHECK_INT_EQ(exp, now + 8 * 3600);
        xfree(tok);
        tok = NULL;
        const char *nox = "{\"accessToken\": \"aoa\"}";
        err_clear(&e);
        CHECK_INT_EQ(aws_sso_token_parse(nox, strlen(nox), "cache", &tok, &exp, &e), -1);
        CHECK_STR_CONTAINS(e.msg, "cache: reply has no expiresAt");
        CHECK(tok == NULL);
        const char *ctl = "{\"accessToken\": \"a\\nb\", \"expiresAt\": \"2026-01-01T08:00:00Z\"}";
        err_clear(&e);
        CHECK_INT_EQ(aws_sso_token_parse(ctl, strlen(ctl), "cache", &tok, &exp, &e), -1);
        CHECK_STR_CONTAINS(e.msg, "accessToken contains a space or control character");
    }
    /* command lines as shlex.split reads them */
    {
        CHECK_OK(aws_argv_split("  /opt/bin/creds --profile 'my prof' \"a \\\"q\\\" $x\" b\\ c"
                                " ''  d'e'\"f\"",
                                &argv, &e),
                 &e);
        CHECK_STR_EQ(argv[0], "/opt/bin/creds");
        CHECK_STR_EQ(argv[1], "--profile");
        CHECK_STR_EQ(argv[2], "my prof");
        CHECK_STR_EQ(argv[3], "a \"q\" $x");
        CHECK_STR_EQ(argv[4], "b c");
        CHECK_STR_EQ(argv[5], "");
        CHECK_STR_EQ(argv[6], "def");
        CHECK(argv[7] == NULL);
        aws_argv_free(argv);
        argv = NULL;
        static const struct {
            const char *cmd, *want;
        } bada[] = { { "a 'b", "unterminated quote" },
                     { "a \"b", "unterminated quote" },
                     { "   ", "credential_process is empty" },
                     { "a \\", "ends with a backslash" } };
        for (size_t i = 0; i < ARRAY_LEN(bada); i++) {
            err_clear(&e);
            CHECK_INT_EQ(aws_argv_split(bada[i].cmd, &argv, &e), -1);
            CHECK_STR_CONTAINS(e.msg, bada[i].want);
            CHECK(argv == NULL);
        }
    }
out:
    aws_argv_free(argv);
    xfree(tok);
    aws_creds_release(&c);
    return rc;
}

/* A profile chosen by the caller wins over AWS_PROFILE and over the environment's keys. */
static int test_explicit_profile(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_config cfg;
    struct aws_chain ch;
    struct buf conf = BUF_INIT;
    struct aws_config_opts o = { "envsrc", NULL, NULL };
    aws_config_init(&cfg);
    aws_chain_init(&ch);
    buf_addf(&conf, "AWS_CONFIG_FILE=%s",
             write_file("config-explicit", "[profile envsrc]\nregion = eu-west-1\n"
                                           "role_arn = arn:aws:iam::1:role/e\n"
                                           "credential_source = Environment\n"
                                           "[profile other]\nregion = us-west-2\n"));
    const char *env[] = { "HOME=/nonexistent",
                          conf.data,
                          "AWS_PROFILE=other",
                          "AWS_ACCESS_KEY_ID=AKENV",
                          "AWS_SECRET_ACCESS_KEY=SKENV",
                          "AWS_WEB_IDENTITY_TOKEN_FILE=/t",
                          "AWS_ROLE_ARN=arn:aws:iam::1:role/w",
                          NULL };
    CHECK_OK(aws_config_resolve_opts(&cfg, env, &o, &e), &e);
    CHECK_STR_EQ(cfg.profile, "envsrc");
    CHECK_STR_EQ(cfg.region, "eu-west-1");
    CHECK(cfg.profile_explicit);
    CHECK_OK(aws_chain_start(&ch, &cfg, env, &e), &e);
    CHECK_INT_EQ(ch.next, AWS_CREDS_READY);
    CHECK_STR_EQ(ch.creds.access_key_id, "AKENV"); /* the role's source */
    CHECK_INT_EQ(ch.nroles, 1);
    CHECK_STR_EQ(ch.roles[0].role_arn, "arn:aws:iam::1:role/e");
    /* without it, AWS_PROFILE's profile and the environment's keys as before */
    CHECK_OK(aws_config_resolve(&cfg, env, NULL, NULL, &e), &e);
    CHECK_STR_EQ(cfg.profile, "other");
    CHECK_OK(aws_chain_start(&ch, &cfg, env, &e), &e);
    CHECK_INT_EQ(ch.nroles, 0);
    /* an explicit profile that does not exist */
    o.profile = "ghost";
    err_clear(&e);
    CHECK_INT_EQ(aws_config_resolve_opts(&cfg, env, &o, &e), -1);
    CHECK_STR_CONTAINS(e.msg, "profile 'ghost' (configured) is in neither");
out:
    aws_chain_release(&ch);
    aws_config_release(&cfg);
    buf_release(&conf);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "creds_set", test_creds_set },
        { "env", test_env },
        { "ini_parse", test_ini_parse },
        { "creds_from_ini", test_creds_from_ini },
        { "config_resolve", test_config_resolve },
        { "chain", test_chain },
        { "chain_roles", test_chain_roles },
        { "chain_sso", test_chain_sso },
        { "iso8601", test_iso8601 },
        { "parse_json", test_parse_json },
        { "parse_sts_xml", test_parse_sts_xml },
        { "parse_process_sso", test_parse_process_sso },
        { "explicit_profile", test_explicit_profile },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
