/*
 * Small helpers with full error checking: numbers from strings, hex, base64, time, JSON string
 * quoting, and files (size-capped reads, atomic durable writes, permission checks).
 */
#ifndef CORE_UTIL_H
#define CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"

/* Whole-string unsigned parse in base 10; rejects signs, spaces, overflow and empty input. */
int str_to_u64(const char *s, uint64_t *out) ATTR_WUR;
bool str_has_prefix(const char *s, const char *prefix);

/* v in decimal at out (at most 20 bytes, no NUL); returns the number of digits. For hot paths
 * that would otherwise call printf for one number. */
size_t u64_to_dec(char *out, uint64_t v);

/* Lowercase hex of len bytes into out (2*len+1 bytes). */
void hex_encode(const uint8_t *in, size_t len, char *out);
/* Hex (either case) to bytes; -1 on odd length, bad digit or more than cap bytes. */
int hex_decode(const char *hex, uint8_t *out, size_t cap, size_t *outlen) ATTR_WUR;
bool hex_is_lower(const char *s, size_t len);
/* The value of one hex digit (either case), -1 for anything else. */
int hex_digit_value(int c);
/* Percent-decodes [s, s+n) onto out (RFC 3986 §2.1: %XX, either case; '+' stays '+'); -1 on a
 * '%' not followed by two hex digits (out then holds a prefix). */
int pct_decode(struct buf *out, const char *s, size_t n) ATTR_WUR;

/* The lowercase hex SHA-256 of len bytes at data (64 digits and a NUL). */
void sha256_hex(const void *data, size_t len, char out[65]);

void base64_encode(struct buf *out, const uint8_t *in, size_t len);
/* Strict-ish base64 decode (whitespace ignored, padding required); -1 on invalid input. */
int base64_decode(struct buf *out, const char *in, size_t len) ATTR_WUR;

/* Length of the valid UTF-8 sequence at s (at most n >= 1 bytes; the shortest form, no
 * surrogates, at most U+10FFFF), 0 if invalid. */
size_t utf8_seq_len(const unsigned char *s, size_t n);

/* JSON string literal with quotes; control characters and non-ASCII bytes escaped as \u00XX
 * only when they are not valid UTF-8. */
void json_quote(struct buf *out, const char *s, size_t len);

/* "2026-11-26T05:31:37.123Z" */
void time_format_rfc3339_ms(char *out, size_t cap);
/* "2026-11-26T05:31:37Z" for t */
void time_format_rfc3339(time_t t, char *out, size_t cap);
/* Parses "YYYY-MM-DDTHH:MM:SSZ"; -1 when malformed. */
int time_parse_rfc3339(const char *s, time_t *out) ATTR_WUR;
int64_t time_now_ms(void);
int64_t time_mono_ns(void);

/* Reads a whole file, refusing more than max bytes. */
int file_read_all(const char *path, size_t max, struct buf *out, struct err *e) ATTR_WUR;
/* Writes a file atomically and durably: temp file in the same directory with `mode`, write,
 * fsync, rename, fsync of the directory. Fails with ERRC_CONFLICT if excl and path exists. */
int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode, bool excl,
                      struct err *e) ATTR_WUR;
/* mkdir -p with mode for created components. */
int file_mkdirs(const char *path, mode_t mode, struct err *e) ATTR_WUR;
int file_fsync_dir(const char *dir, struct err *e) ATTR_WUR;
/* write(2) until everything is written, retrying EINTR; -1 with errno set. */
int file_write_full(int fd, const void *data, size_t len) ATTR_WUR;
bool file_exists(const char *path);
/* rm -rf path (no symlink is followed). */
int file_remove_tree(const char *path, struct err *e) ATTR_WUR;
/* Fails with ERRC_DENIED when the file is readable or writable by group or others. */
int file_check_private(const char *path, struct err *e) ATTR_WUR;

#endif
