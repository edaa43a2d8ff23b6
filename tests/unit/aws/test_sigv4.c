/*
 * SigV4: AWS's published test suite (every case, byte-exact .creq/.sts/.authz), the IoT vectors
 * of docs/aws-iot.md ("SigV4 test vectors"), the canonicalisation rules one by one, and every
 * rejected input.
 *
 * The suite directory is $JITRCA_SHARED_DIR/aws-sigv4-testsuite when JITRCA_SHARED_DIR is set,
 * else $JITRCA_SIGV4_SUITE (CMake points it at tests/data/aws/sigv4-testsuite). A missing
 * directory or a case count other than SUITE_CASES fails the test.
 */
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "aws/aws.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/mem.h"
#include "core/util.h"
#include "tests/harness/tt.h"

#define SUITE_CASES 34
#define MAX_HDRS    32

static const char *const ak = "AKIDEXAMPLE";
static const char *const sk = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/* A request parsed from a suite .req file; everything owned. */
struct raw_req {
    char *method, *path, *query;
    char *names[MAX_HDRS], *values[MAX_HDRS];
    struct aws_header hdrs[MAX_HDRS];
    size_t n;
    char *amz_date;
    char *token;
    struct buf body;
};

static void raw_req_release(struct raw_req *r)
{
    xfree(r->method);
    xfree(r->path);
    xfree(r->query);
    for (size_t i = 0; i < r->n; i++) {
        xfree(r->names[i]);
        xfree(r->values[i]);
    }
    xfree(r->amz_date);
    xfree(r->token);
    buf_release(&r->body);
    memset(r, 0, sizeof(*r));
}

/*
 * "METHOD TARGET HTTP/1.1" (TARGET may hold spaces: normalize-path/get-space), "Name:value"
 * lines, obs-fold continuation lines (get-header-value-multiline, unfolded to one SP per RFC 9112
 * §5.2), an empty line, the body. X-Amz-Date and X-Amz-Security-Token are taken out: the signer
 * adds them itself.
 */
static int raw_req_parse(const char *text, size_t len, struct raw_req *r)
{
    size_t pos = 0, ln = 0;
    memset(r, 0, sizeof(*r));
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl != NULL ? (size_t)(nl - text) : len;
        const char *line = text + pos;
        size_t n = end - pos;
        pos = end + 1;
        if (ln++ == 0) {
            const char *sp1 = memchr(line, ' ', n), *sp2 = line + n;
            while (sp2 > line && sp2[-1] != ' ') {
                sp2--;
            }
            if (sp1 == NULL || sp2 - 1 <= sp1) {
                return -1;
            }
            r->method = xstrndup(line, (size_t)(sp1 - line));
            char *target = xstrndup(sp1 + 1, (size_t)(sp2 - 1 - (sp1 + 1)));
            char *q = strchr(target, '?');
            if (q != NULL) {
                r->query = xstrdup(q + 1);
                *q = '\0';
            }
            r->path = target;
            continue;
        }
        if (n == 0) {
            if (pos < len) {
                buf_add(&r->body, text + pos, len - pos);
            }
            break;
        }
        if (line[0] == ' ' || line[0] == '\t') {
            if (r->n == 0) {
                return -1;
            }
            struct buf v = BUF_INIT;
            buf_addstr(&v, r->values[r->n - 1]);
            buf_addch(&v, ' ');
            buf_add(&v, line, n);
            xfree(r->values[r->n - 1]);
            r->values[r->n - 1] = buf_detach(&v, NULL);
            continue;
        }
        const char *colon = memchr(line, ':', n);
        if (colon == NULL || r->n == MAX_HDRS) {
            return -1;
        }
        r->names[r->n] = xstrndup(line, (size_t)(colon - line));
        r->values[r->n] = xstrndup(colon + 1, n - (size_t)(colon - line) - 1);
        r->n++;
    }
    for (size_t i = 0; i < r->n;) {
        char **dst = NULL;
        if (strcasecmp(r->names[i], "X-Amz-Date") == 0) {
            dst = &r->amz_date;
        } else if (strcasecmp(r->names[i], "X-Amz-Security-Token") == 0) {
            dst = &r->token;
        }
        if (dst == NULL) {
            r->hdrs[i] = (struct aws_header){ r->names[i], r->values[i] };
            i++;
            continue;
        }
        xfree(*dst);
        *dst = r->values[i];
        xfree(r->names[i]);
        memmove(&r->names[i], &r->names[i + 1], (r->n - i - 1) * sizeof(char *));
        memmove(&r->values[i], &r->values[i + 1], (r->n - i - 1) * sizeof(char *));
        r->n--;
    }
    return r->method != NULL && r->amz_date != NULL ? 0 : -1;
}

static int parse_amz_date(const char *s, time_t *out)
{
    struct tm tm = { 0 };
    char z = 0;
    if (strlen(s) != 16 ||
        sscanf(s, "%4d%2d%2dT%2d%2d%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &z) != 7 ||
        z != 'Z') {
        return -1;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = timegm(&tm);
    return 0;
}

/* botocore's test reads the token from the .creq (get-vanilla-with-session-token's .req has
 * none); NULL when the canonical request does not sign one. */
static char *token_from_creq(const char *creq)
{
    const char *p = strstr(creq, "\nx-amz-security-token:");
    if (p == NULL) {
        return NULL;
    }
    p += strlen("\nx-amz-security-token:");
    return xstrndup(p, strcspn(p, "\n"));
}

static const char *suite_dir(struct buf *path)
{
    const char *shared = getenv("JITRCA_SHARED_DIR");
    const char *own = getenv("JITRCA_SIGV4_SUITE");
    buf_reset(path);
    if (shared != NULL && shared[0] != '\0') {
        buf_addf(path, "%s/aws-sigv4-testsuite", shared);
    } else if (own != NULL && own[0] != '\0') {
        buf_addstr(path, own);
    } else {
        return NULL;
    }
    return path->data;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Case directories: D with D/basename(D).req, one level of grouping (normalize-path/...). */
static void find_cases(const char *root, const char *rel, char ***cases, size_t *n, size_t *cap)
{
    struct buf dirpath = BUF_INIT, sub = BUF_INIT, req = BUF_INIT;
    buf_addf(&dirpath, "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(dirpath.data);
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        struct stat st;
        if (de->d_name[0] == '.') {
            continue;
        }
        buf_reset(&sub);
        buf_addf(&sub, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
        buf_reset(&req);
        buf_addf(&req, "%s/%s", root, sub.data);
        if (stat(req.data, &st) != 0 || !S_ISDIR(st.st_mode)) {
            continue;
        }
        buf_addf(&req, "/%s.req", de->d_name);
        if (file_exists(req.data)) {
            *cases = xgrow(*cases, sizeof(**cases), *n + 1, cap);
            (*cases)[(*n)++] = xstrdup(sub.data);
        } else if (rel[0] == '\0') {
            find_cases(root, sub.data, cases, n, cap);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    buf_release(&dirpath);
    buf_release(&sub);
    buf_release(&req);
}

static int read_case_file(const char *root, const char *c, const char *ext, struct buf *out)
{
    struct buf p = BUF_INIT;
    struct err e = ERR_INIT;
    const char *base = strrchr(c, '/');
    base = base != NULL ? base + 1 : c;
    buf_reset(out);
    buf_addf(&p, "%s/%s/%s.%s", root, c, base, ext);
    int rc = file_read_all(p.data, 1 << 20, out, &e);
    if (rc != 0) {
        fprintf(stderr, "  %s\n", e.msg);
    }
    buf_release(&p);
    return rc;
}

static int run_case(const char *root, const char *c)
{
    int rc = 0;
    struct buf req = BUF_INIT, creq = BUF_INIT, sts = BUF_INIT, authz = BUF_INIT;
    struct raw_req r;
    struct aws_creds cr;
    struct aws_sigv4_out out;
    struct err e = ERR_INIT;
    time_t when = 0;
    char *token = NULL;
    struct aws_sigv4_req sr;
    memset(&sr, 0, sizeof(sr));
    memset(&r, 0, sizeof(r));
    aws_creds_init(&cr);
    aws_sigv4_out_init(&out);
    CHECK(read_case_file(root, c, "req", &req) == 0);
    CHECK(read_case_file(root, c, "creq", &creq) == 0);
    CHECK(read_case_file(root, c, "sts", &sts) == 0);
    CHECK(read_case_file(root, c, "authz", &authz) == 0);
    CHECK(raw_req_parse(req.data, req.len, &r) == 0);
    CHECK(parse_amz_date(r.amz_date, &when) == 0);
    token = token_from_creq(creq.data);
    if (r.token != NULL) {
        CHECK_STR_EQ(r.token, token);
    }
    CHECK_OK(aws_creds_set(&cr, ak, sk, token, 0, "test suite", &e), &e);
    sr = (struct aws_sigv4_req){
        .method = r.method,
        .path = r.path,
        .query = r.query,
        .headers = r.hdrs,
        .nheaders = r.n,
        .payload = (const uint8_t *)r.body.data,
        .payload_len = r.body.len,
        .region = "us-east-1",
        .service = "service",
        .when = when,
    };
    CHECK_OK(aws_sigv4_sign(&sr, &cr, &out, &e), &e);
    CHECK_STR_EQ(out.amz_date, r.amz_date);
    CHECK_STR_EQ(out.canonical_request, creq.data);
    CHECK_STR_EQ(out.string_to_sign, sts.data);
    CHECK_STR_EQ(out.authorization, authz.data);
    printf("ok %s\n", c);
out:
    if (rc != 0) {
        fprintf(stderr, "  case %s\n", c);
    }
    xfree(token);
    raw_req_release(&r);
    aws_creds_release(&cr);
    aws_sigv4_out_release(&out);
    buf_release(&req);
    buf_release(&creq);
    buf_release(&sts);
    buf_release(&authz);
    return rc;
}

static int test_aws_suite(void)
{
    int rc = 0;
    struct buf dir = BUF_INIT;
    char **cases = NULL;
    size_t n = 0, cap = 0;
    struct stat st;
    const char *root = suite_dir(&dir);
    if (root == NULL) {
        TT_FAIL("neither JITRCA_SHARED_DIR nor JITRCA_SIGV4_SUITE is set");
    }
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        TT_FAIL("SigV4 test suite directory '%s' is missing", root);
    }
    find_cases(root, "", &cases, &n, &cap);
    qsort(cases, n, sizeof(*cases), cmp_str);
    CHECK_INT_EQ(n, SUITE_CASES);
    for (size_t i = 0; i < n; i++) {
        if (run_case(root, cases[i]) != 0) {
            rc = 1;
        }
    }
out:
    for (size_t i = 0; i < n; i++) {
        xfree(cases[i]);
    }
    xfree(cases);
    buf_release(&dir);
    return rc;
}

/* Signs with the credentials of docs/aws-iot.md, "SigV4 test vectors", at 2026-01-01T00:00:00Z. */
static int sign_iot(const char *method, const char *path, const char *query,
                    const struct aws_header *h, size_t nh, const char *body, const char *token,
                    const char *service, unsigned flags, struct aws_sigv4_out *out, struct err *e)
{
    struct aws_creds cr;
    int rc;
    aws_creds_init(&cr);
    if (aws_creds_set(&cr, ak, sk, token, 0, "test", e) != 0) {
        return -1;
    }
    struct aws_sigv4_req r = {
        .method = method,
        .path = path,
        .query = query,
        .headers = h,
        .nheaders = nh,
        .payload = (const uint8_t *)body,
        .payload_len = body != NULL ? strlen(body) : 0,
        .region = "us-east-1",
        .service = service,
        .when = 1767225600, /* 2026-01-01T00:00:00Z */
        .flags = flags,
    };
    rc = aws_sigv4_sign(&r, &cr, out, e);
    aws_creds_release(&cr);
    return rc;
}

static const struct aws_header iot_host = { "Host", "iot.us-east-1.amazonaws.com" };

static int test_iot_vectors(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_sigv4_out out;
    const struct aws_header post_h[] = { iot_host, { "Content-Type", "application/json" } };
    aws_sigv4_out_init(&out);

    CHECK_OK(sign_iot("POST", "/things/dev-001", NULL, post_h, 2, "{}", NULL, NULL, 0, &out, &e),
             &e);
    CHECK_STR_EQ(out.payload_hash,
                 "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    CHECK_STR_EQ(out.signed_headers, "content-type;host;x-amz-date");
    CHECK_STR_EQ(out.signature, "1d42a6a69715b5bac085b84834cfd7c1fce937a2dc9c46f1a78173ed067cfb3c");
    CHECK_STR_CONTAINS(out.authorization, "Credential=AKIDEXAMPLE/20260101/us-east-1/iot/");
    CHECK_INT_EQ(out.nadd, 2);
    CHECK_STR_EQ(out.add[0].name, "X-Amz-Date");
    CHECK_STR_EQ(out.add[0].value, "20260101T000000Z");
    CHECK_STR_EQ(out.add[1].name, "Authorization");

    CHECK_OK(
        sign_iot("POST", "/things/dev-001", "", post_h, 2, "{}", NULL, "execute-api", 0, &out, &e),
        &e);
    CHECK_STR_EQ(out.signature, "a3bf6d67e12b4f7f4e5615d5afc38113d35255193854fe116e117b6a3ced9492");

    CHECK_OK(
        sign_iot(
            "PUT", "/certificates/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "newStatus=ACTIVE", &iot_host, 1, NULL, "FQoGZXIvYXdzEXAMPLETOKEN", "iot", 0, &out, &e),
        &e);
    CHECK_STR_EQ(out.signed_headers, "host;x-amz-date;x-amz-security-token");
    CHECK_STR_EQ(out.signature, "954422c4be9e17394147ff904865433930ab2f275a1511a7d992e448778dc1ad");
    CHECK_INT_EQ(out.nadd, 3);
    CHECK_STR_EQ(out.add[1].name, "X-Amz-Security-Token");
    CHECK_STR_EQ(out.add[1].value, "FQoGZXIvYXdzEXAMPLETOKEN");

    CHECK_OK(sign_iot("GET",
                      "/destinations/arn%3Aaws%3Aiot%3Aus-east-1%3A123456789012%3Aruledestination/"
                      "http/abc",
                      NULL, &iot_host, 1, NULL, NULL, NULL, 0, &out, &e),
             &e);
    CHECK_STR_CONTAINS(out.canonical_request,
                       "GET\n/destinations/arn%253Aaws%253Aiot%253Aus-east-1%253A123456789012"
                       "%253Aruledestination/http/abc\n");
    CHECK_STR_EQ(out.signature, "004ec7ed2b868d06ef87ff888fc4248937a1b0ff296b46d7c4d6cb8e17715703");
out:
    aws_sigv4_out_release(&out);
    return rc;
}

/* The canonical request's lines: [1] URI, [2] query, then the headers. */
static char *creq_line(const char *creq, int idx)
{
    const char *p = creq;
    for (int i = 0; i < idx && p != NULL; i++) {
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    return p != NULL ? xstrndup(p, strcspn(p, "\n")) : xstrdup("(none)");
}

static int test_canonical_uri(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_sigv4_out out;
    char *line = NULL;
    static const struct {
        const char *path;
        unsigned flags;
        const char *want;
    } v[] = {
        { "/things/dev%3A1", 0, "/things/dev%253A1" },
        { "/things/dev:1", 0, "/things/dev%3A1" },
        { "/confirmdestination/a/b%3Ac", 0, "/confirmdestination/a/b%253Ac" },
        { "//a/./b/../c//", 0, "/a/c/" },
        { "/a/..", 0, "/" },
        { "/a/.", 0, "/a" },
        { "/..", 0, "/" },
        { "", 0, "/" },
        { NULL, 0, "/" },
        { "/~user/x y", 0, "/~user/x%20y" },
        { "//a/./b/../c//", AWS_SIGV4_S3_PATH, "//a/./b/../c//" },
        { "/dev%3A1", AWS_SIGV4_NO_PATH_ENCODE, "/dev%3A1" },
        { "//a//", AWS_SIGV4_NO_PATH_NORMALIZE, "//a//" },
        { "/a b", AWS_SIGV4_NO_PATH_NORMALIZE, "/a%20b" },
    };
    aws_sigv4_out_init(&out);
    for (size_t i = 0; i < ARRAY_LEN(v); i++) {
        CHECK_OK(
            sign_iot("GET", v[i].path, NULL, &iot_host, 1, NULL, NULL, NULL, v[i].flags, &out, &e),
            &e);
        xfree(line);
        line = creq_line(out.canonical_request, 1);
        CHECK_STR_EQ(line, v[i].want);
    }
out:
    xfree(line);
    aws_sigv4_out_release(&out);
    return rc;
}

static int test_canonical_query(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_sigv4_out out;
    char *line = NULL;
    static const struct {
        const char *q;
        const char *want;
    } v[] = {
        { "setAsActive=true&allowAutoRegistration=true",
          "allowAutoRegistration=true&setAsActive=true" },
        { "b=2&a=1&a=0&c&&d=%3a", "a=0&a=1&b=2&c=&d=%3A" },
        { "endpointType=iot:Data-ATS", "endpointType=iot%3AData-ATS" },
        { "endpointType=iot%3AData-ATS", "endpointType=iot%3AData-ATS" },
        { "m=a+b c/d", "m=a%2Bb%20c%2Fd" },
        { "a-b=1&a=2", "a=2&a-b=1" },
        { "k=v=w", "k=v%3Dw" },
        { "=x", "=x" },
        { "", "" },
        { "&&", "" },
        { "z=%00", "z=%00" },
        { "u=%E1%88%b4&-._~=", "-._~=&u=%E1%88%B4" },
    };
    aws_sigv4_out_init(&out);
    for (size_t i = 0; i < ARRAY_LEN(v); i++) {
        CHECK_OK(sign_iot("GET", "/", v[i].q, &iot_host, 1, NULL, NULL, NULL, 0, &out, &e), &e);
        xfree(line);
        line = creq_line(out.canonical_request, 2);
        CHECK_STR_EQ(line, v[i].want);
    }
out:
    xfree(line);
    aws_sigv4_out_release(&out);
    return rc;
}

static int test_canonical_headers(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct aws_sigv4_out out;
    const struct aws_header h[] = {
        { "X-B", "  two   words\there " },
        iot_host,
        { "x-a", "1" },
        { "User-Agent", "jitrca/0.1" },
        { "X-A", " 2 " },
        { "Expect", "100-continue" },
        { "x-empty", "" },
        { "x-amzn-principal", "arn:aws:iot:us-east-1:123456789012:cert/abc" },
    };
    struct aws_creds cr;
    struct aws_sigv4_req r;
    aws_creds_init(&cr);
    aws_sigv4_out_init(&out);
    CHECK_OK(sign_iot("PUT", "/things/t/principals", NULL, h, ARRAY_LEN(h), NULL, NULL, NULL, 0,
                      &out, &e),
             &e);
    CHECK_STR_EQ(out.signed_headers, "host;x-a;x-amz-date;x-amzn-principal;x-b;x-empty");
    CHECK_STR_CONTAINS(out.canonical_request,
                       "\nhost:iot.us-east-1.amazonaws.com\nx-a:1,2\nx-amz-date:20260101T000000Z\n"
                       "x-amzn-principal:arn:aws:iot:us-east-1:123456789012:cert/abc\n"
                       "x-b:two words here\nx-empty:\n\n");

    /* X-Amz-Content-Sha256 on request, with a precomputed hash */
    CHECK_OK(aws_creds_set(&cr, ak, sk, NULL, 0, "test", &e), &e);
    r = (struct aws_sigv4_req){
        .method = "PUT",
        .path = "/bucket/key",
        .headers = &iot_host,
        .nheaders = 1,
        .payload_hash = "UNSIGNED-PAYLOAD",
        .region = "eu-west-1",
        .service = "s3",
        .when = 1767225600,
        .flags = AWS_SIGV4_S3_PATH | AWS_SIGV4_CONTENT_SHA256,
    };
    CHECK_OK(aws_sigv4_sign(&r, &cr, &out, &e), &e);
    CHECK_STR_EQ(out.signed_headers, "host;x-amz-content-sha256;x-amz-date");
    CHECK_INT_EQ(out.nadd, 3);
    CHECK_STR_EQ(out.add[1].name, "X-Amz-Content-Sha256");
    CHECK_STR_EQ(out.add[1].value, "UNSIGNED-PAYLOAD");
    CHECK_STR_CONTAINS(out.canonical_request, "\nUNSIGNED-PAYLOAD");
    CHECK_STR_CONTAINS(out.authorization, "/eu-west-1/s3/aws4_request");

    /* what goes on the wire: the request's headers, then the signer's */
    {
        struct aws_header wire[1 + AWS_SIGV4_MAX_ADD];
        size_t nw = 0;
        CHECK_OK(aws_sigv4_sign_wire(&r, &cr, &out, wire, &nw, &e), &e);
        CHECK_INT_EQ(nw, 4);
        CHECK_STR_EQ(wire[0].name, iot_host.name);
        CHECK_STR_EQ(wire[1].name, "X-Amz-Date");
        CHECK_STR_EQ(wire[2].name, "X-Amz-Content-Sha256");
        CHECK_STR_EQ(wire[3].name, "Authorization");
        CHECK(wire[3].value == out.add[2].value);
        r.region = "";
        err_clear(&e);
        CHECK_INT_EQ(aws_sigv4_sign_wire(&r, &cr, &out, wire, &nw, &e), -1);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
    }
out:
    aws_creds_release(&cr);
    aws_sigv4_out_release(&out);
    return rc;
}

static int test_uri_encode(void)
{
    int rc = 0;
    struct buf b = BUF_INIT;
    aws_uri_encode(&b, "dev:1 a/b+c~d.e_f-g\xe1\x88\xb4", 22, false);
    CHECK_STR_EQ(buf_cstr(&b), "dev%3A1%20a%2Fb%2Bc~d.e_f-g%E1%88%B4");
    buf_reset(&b);
    aws_uri_encode(&b, "a/b:c", 5, true);
    CHECK_STR_EQ(buf_cstr(&b), "a/b%3Ac");
    buf_reset(&b);
    aws_uri_encode(&b, "p+a=b,c@d.e", 11, false);
    CHECK_STR_EQ(buf_cstr(&b), "p%2Ba%3Db%2Cc%40d.e");
out:
    buf_release(&b);
    return rc;
}

/* Every rejected input: the message names the problem and nothing is produced. */
static int test_rejects(void)
{
    int rc = 0;
    struct aws_sigv4_out out;
    struct aws_creds cr, bad;
    const struct aws_header two_hosts[] = { iot_host, { "host", "x" } };
    const struct aws_header date_h[] = { iot_host, { "x-amz-date", "20260101T000000Z" } };
    const struct aws_header auth_h[] = { iot_host, { "Authorization", "x" } };
    const struct aws_header tok_h[] = { iot_host, { "X-Amz-Security-Token", "x" } };
    const struct aws_header sha_h[] = { iot_host, { "X-Amz-Content-SHA256", "x" } };
    const struct aws_header crlf_h[] = { iot_host, { "x-a", "a\r\nx-b: evil" } };
    const struct aws_header lf_h[] = { iot_host, { "x-a", "a\nb" } };
    const struct aws_header name_h[] = { iot_host, { "x a", "1" } };
    const struct aws_header empty_h[] = { iot_host, { "", "1" } };
    const struct aws_header nullv_h[] = { iot_host, { "x-a", NULL } };
    const struct aws_header no_host[] = { { "x-a", "1" } };
    static const struct {
        const char *method, *path, *query, *region, *service, *hash;
        int hdr; /* index into the header sets below */
        const char *want;
    } v[] = {
        { "GET", "/", NULL, "us-east-1", NULL, NULL, 1, "no Host header" },
        { "GET", "/", NULL, "us-east-1", NULL, NULL, 2, "more than one Host header" },
        { "GET", "/", NULL, "us-east-1", NULL, NULL, 3, "'x-amz-date' is added by the signer" },
        { "GET", "/", NULL, "us-east-1", NULL, NULL, 4, "'Authorization' is added by the signer" },
        { "GET", "/", NULL, "us-east-1", NULL, NULL, 5,
          "'X-Amz-Security-Token' is added by the signer" },
        { "GET", "/", NULL, "us-east-1", NULL, NULL, 6,
          "'X-Amz-Content-SHA256' is added by the signer" },
        { "GET", "/", NULL, "us-east-1", NULL, NULL, 7, "header 'x-a': control character" },
        { "GET", "/", NULL, "us-east-1", NULL, NULL, 8, "header 'x-a': control character" },
        { "GET", "/", NULL, "us-east-1", NULL, NULL, 9, "header 1: name is empty or not a token" },
        { "GET", "/", NULL, "us-east-1", NULL, NULL, 10, "header 1: name is empty or not a token" },
        { "GET", "/", NULL, "us-east-1", NULL, NULL, 11, "header 'x-a': no value" },
        { "", "/", NULL, "us-east-1", NULL, NULL, 0, "method is empty or not a token" },
        { "GE T", "/", NULL, "us-east-1", NULL, NULL, 0, "method is empty or not a token" },
        { "GET", "things", NULL, "us-east-1", NULL, NULL, 0, "must start with '/'" },
        { "GET", "/a?b=1", NULL, "us-east-1", NULL, NULL, 0, "'?' at offset 2" },
        { "GET", "/a#f", NULL, "us-east-1", NULL, NULL, 0, "'#' at offset 2" },
        { "GET", "/a\tb", NULL, "us-east-1", NULL, NULL, 0, "control character at offset 2" },
        { "GET", "/a%4", NULL, "us-east-1", NULL, NULL, 0, "bad percent-escape at offset 2" },
        { "GET", "/a%zz", NULL, "us-east-1", NULL, NULL, 0, "bad percent-escape at offset 2" },
        { "GET", "/", "a=%4", "us-east-1", NULL, NULL, 0, "query string: bad percent-escape" },
        { "GET", "/", "a%g1=1", "us-east-1", NULL, NULL, 0, "query string: bad percent-escape" },
        { "GET", "/", NULL, "", NULL, NULL, 0, "region must be" },
        { "GET", "/", NULL, NULL, NULL, NULL, 0, "region must be" },
        { "GET", "/", NULL, "us/east", NULL, NULL, 0, "region must be" },
        { "GET", "/", NULL, "US-EAST-1", NULL, NULL, 0, "region must be" },
        { "GET", "/", NULL, "us-east-1", "io t", NULL, 0, "service must be" },
        { "GET", "/", NULL, "us-east-1", NULL, "abc", 0, "payload hash must be" },
        { "GET", "/", NULL, "us-east-1", NULL,
          "44136FA355B3678A1146AD16F7E8649E94FB4FC21FE77E8310C060F61CAAFF8A", 0,
          "payload hash must be" },
    };
    const struct aws_header *sets[] = { &iot_host, no_host, two_hosts, date_h, auth_h,  tok_h,
                                        sha_h,     crlf_h,  lf_h,      name_h, empty_h, nullv_h };
    const size_t nsets[] = { 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2 };
    struct err e = ERR_INIT;
    struct aws_sigv4_req ok = {
        .method = "GET",
        .headers = &iot_host,
        .nheaders = 1,
        .region = "us-east-1",
        .when = 1767225600,
    };
    aws_sigv4_out_init(&out);
    aws_creds_init(&cr);
    aws_creds_init(&bad);
    CHECK_OK(aws_creds_set(&cr, ak, sk, NULL, 0, "test", &e), &e);
    for (size_t i = 0; i < ARRAY_LEN(v); i++) {
        struct aws_sigv4_req r = {
            .method = v[i].method,
            .path = v[i].path,
            .query = v[i].query,
            .headers = sets[v[i].hdr],
            .nheaders = nsets[v[i].hdr],
            .payload_hash = v[i].hash,
            .region = v[i].region,
            .service = v[i].service,
            .when = 1767225600,
        };
        err_clear(&e);
        CHECK_INT_EQ(aws_sigv4_sign(&r, &cr, &out, &e), -1);
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, v[i].want);
        CHECK(out.authorization == NULL && out.canonical_request == NULL && out.nadd == 0);
    }

    err_clear(&e);
    CHECK_INT_EQ(aws_sigv4_sign(&ok, &bad, &out, &e), -1);
    CHECK_STR_CONTAINS(e.msg, "credentials without access key id or secret key");
    err_clear(&e);
    CHECK_INT_EQ(aws_sigv4_sign(&ok, NULL, &out, &e), -1);
    CHECK_STR_CONTAINS(e.msg, "credentials without access key id or secret key");
    /* A struct filled by hand bypasses aws_creds_set's checks; the signer checks again. */
    bad.access_key_id = xstrdup("AKID/X");
    bad.secret_access_key = xstrdup("s");
    err_clear(&e);
    CHECK_INT_EQ(aws_sigv4_sign(&ok, &bad, &out, &e), -1);
    CHECK_STR_CONTAINS(e.msg, "access key id contains");
    xfree(bad.access_key_id);
    bad.access_key_id = xstrdup("AKID");
    bad.session_token = xstrdup("tok\r\nX-Evil: 1");
    err_clear(&e);
    CHECK_INT_EQ(aws_sigv4_sign(&ok, &bad, &out, &e), -1);
    CHECK_STR_CONTAINS(e.msg, "'X-Amz-Security-Token': control character");

    ok.payload_len = 3;
    err_clear(&e);
    CHECK_INT_EQ(aws_sigv4_sign(&ok, &cr, &out, &e), -1);
    CHECK_STR_CONTAINS(e.msg, "payload length 3 without payload bytes");
    ok.payload_len = 0;
    ok.when = (time_t)-86400;
    err_clear(&e);
    CHECK_INT_EQ(aws_sigv4_sign(&ok, &cr, &out, &e), -1);
    CHECK_STR_CONTAINS(e.msg, "signing time out of range");
    CHECK(out.authorization == NULL && out.nadd == 0);

    /* A failure after a success leaves nothing of the earlier result behind. */
    ok.when = 1767225600;
    CHECK_OK(aws_sigv4_sign(&ok, &cr, &out, &e), &e);
    CHECK(out.authorization != NULL);
    ok.region = "";
    err_clear(&e);
    CHECK_INT_EQ(aws_sigv4_sign(&ok, &cr, &out, &e), -1);
    CHECK(out.authorization == NULL && out.nadd == 0 && out.signature[0] == '\0');
out:
    aws_sigv4_out_release(&out);
    aws_creds_release(&cr);
    aws_creds_release(&bad);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "aws_suite", test_aws_suite },
        { "iot_vectors", test_iot_vectors },
        { "canonical_uri", test_canonical_uri },
        { "canonical_query", test_canonical_query },
        { "canonical_headers", test_canonical_headers },
        { "uri_encode", test_uri_encode },
        { "rejects", test_rejects },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
