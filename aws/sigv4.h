/*
 * AWS Signature Version 4 (header form) for the IoT control plane: a pure, synchronous function
 * from a request description to the headers that sign it. No I/O, no clock: the caller passes
 * the time. Verified byte-exactly against AWS's published SigV4 test suite and against botocore
 * (docs/aws-signing.md).
 *
 * What the caller must know:
 * - path is the path exactly as it goes on the wire (already percent-encoded by the caller, e.g.
 *   with aws_uri_encode()). For every service except S3 the canonical URI is that path,
 *   normalised (dot segments and empty segments removed) and URI-encoded once more, so "%3A" on
 *   the wire is "%253A" in the canonical request (docs/aws-iot.md, "SigV4").
 * - query is the raw query without '?'. Each name and value is percent-decoded and re-encoded
 *   with the RFC 3986 unreserved set; '+' is a literal plus (encoded %2B), never a space.
 * - headers must contain Host and must not contain the headers the signer adds (Authorization,
 *   X-Amz-Date, X-Amz-Security-Token, X-Amz-Content-Sha256). Names are case-insensitive;
 *   repeated names are joined with ',' in input order. Connection-level headers that proxies
 *   rewrite (User-Agent, Expect, Transfer-Encoding, Connection, ...; botocore's list) are
 *   accepted but not signed. Every other header passed is signed, so the transport must send
 *   exactly what it passed here.
 * - The signature covers the payload bytes, or payload_hash when the caller hashed a stream.
 */
#ifndef AWS_SIGV4_H
#define AWS_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "aws/creds.h"
#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"

#define AWS_SIGV4_DEFAULT_SERVICE "iot"

/* A borrowed header; name and value are NUL-terminated. */
struct aws_header {
    const char *name;
    const char *value;
};

enum aws_sigv4_flags {
    /* Use the path as given, without removing dot or empty segments (S3 semantics). */
    AWS_SIGV4_NO_PATH_NORMALIZE = 1 << 0,
    /* Do not URI-encode the path again (S3 semantics: the wire path is the canonical URI). */
    AWS_SIGV4_NO_PATH_ENCODE = 1 << 1,
    /* Add and sign X-Amz-Content-Sha256 (S3 and a few other services want it; IoT does not). */
    AWS_SIGV4_CONTENT_SHA256 = 1 << 2,
};
#define AWS_SIGV4_S3_PATH (AWS_SIGV4_NO_PATH_NORMALIZE | AWS_SIGV4_NO_PATH_ENCODE)

/* Everything borrowed; nothing is kept after aws_sigv4_sign() returns. */
struct aws_sigv4_req {
    const char *method; /* "GET", "POST", ...: an RFC 9110 token, used as given (upper-case it) */
    const char *path;   /* wire path starting with '/'; NULL or "" means "/" */
    const char *query;  /* raw query without '?'; NULL or "" for none */
    const struct aws_header *headers;
    size_t nheaders;
    const uint8_t *payload; /* may be NULL when payload_len is 0 */
    size_t payload_len;
    const char *payload_hash; /* NULL, or 64 lowercase hex digits / "UNSIGNED-PAYLOAD" used
                                 instead of hashing payload */
    const char *region;       /* e.g. "us-east-1" */
    const char *service;      /* NULL means AWS_SIGV4_DEFAULT_SERVICE ("iot") */
    time_t when;              /* signing time, UTC seconds */
    unsigned flags;           /* enum aws_sigv4_flags */
};

#define AWS_SIGV4_MAX_ADD 4

/*
 * The result. add[] holds the headers the transport must add to the request, in this order:
 * X-Amz-Date, X-Amz-Security-Token (when the credentials carry a session token),
 * X-Amz-Content-Sha256 (when asked), Authorization. The pointers in add[] point into this
 * struct and live until aws_sigv4_out_release(). canonical_request and string_to_sign are kept
 * for tests and debugging; the canonical request contains the session token, so never log it.
 */
struct aws_sigv4_out {
    struct aws_header add[AWS_SIGV4_MAX_ADD];
    size_t nadd;
    char amz_date[17];     /* YYYYMMDDTHHMMSSZ */
    char payload_hash[65]; /* or "UNSIGNED-PAYLOAD" */
    char signature[65];
    char *authorization;  /* owned */
    char *security_token; /* owned copy, NULL without a session token */
    char *signed_headers; /* owned, "host;x-amz-date" */
    char *canonical_request;
    char *string_to_sign;
};

void aws_sigv4_out_init(struct aws_sigv4_out *out);
/* Frees and cleanses everything in out; out is left initialised. */
void aws_sigv4_out_release(struct aws_sigv4_out *out);

/*
 * Signs req with creds. On success out (which must be initialised; previous contents are
 * released) holds the result. Fails with ERRC_INVALID, naming the problem, on: missing method,
 * region or Host header; a method or header name that is not a token; control characters, CR or
 * LF in a header value; '?', '#', a control character or a bad percent-escape in the path; a bad
 * percent-escape in the query; a signer-owned header in headers; a malformed payload_hash,
 * region or service; credentials without key or secret; a time outside years 1970..9999.
 * ERRC_INTERNAL when OpenSSL fails. On failure out is left empty.
 */
int aws_sigv4_sign(const struct aws_sigv4_req *req, const struct aws_creds *creds,
                   struct aws_sigv4_out *out, struct err *e) ATTR_WUR;
/* aws_sigv4_sign, then what goes on the wire into wire (room for req->nheaders +
 * AWS_SIGV4_MAX_ADD): req's headers followed by out's; *nwire their count. */
int aws_sigv4_sign_wire(const struct aws_sigv4_req *req, const struct aws_creds *creds,
                        struct aws_sigv4_out *out, struct aws_header *wire, size_t *nwire,
                        struct err *e) ATTR_WUR;

/*
 * Appends the RFC 3986 encoding of len bytes of s to out: A-Z a-z 0-9 - . _ ~ kept, every other
 * byte as %XX with upper-case hex; '/' kept too when keep_slash (for greedy path labels such as
 * ConfirmTopicRuleDestination's {confirmationToken+}). Use it to build wire paths and queries.
 */
void aws_uri_encode(struct buf *out, const char *s, size_t len, bool keep_slash);

#endif
