/*
 * Helpers for numbers, encodings, time and files. File writes that matter are durable: data is
 * fsync'd before the rename that publishes it, and the directory after.
 */
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"

int str_to_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0') {
        return -1;
    }
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

bool str_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

size_t u64_to_dec(char *out, uint64_t v)
{
    size_t n = 1;
    for (uint64_t t = v; t >= 10; t /= 10) {
        n++;
    }
    for (size_t i = n; i > 0; i--) {
        out[i - 1] = (char)('0' + v % 10);
        v /= 10;
    }
    return n;
}

void hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int hex_digit_value(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int hex_decode(const char *hex, uint8_t *out, size_t cap, size_t *outlen)
{
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > cap) {
        return -1;
    }
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_digit_value(hex[2 * i]), lo = hex_digit_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *outlen = n / 2;
    return 0;
}

int pct_decode(struct buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            buf_addch(out, s[i]);
            continue;
        }
        int hi = i + 2 < n ? hex_digit_value((unsigned char)s[i + 1]) : -1;
        int lo = i + 2 < n ? hex_digit_value((unsigned char)s[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            return -1;
        }
        buf_addch(out, (char)(hi << 4 | lo));
        i += 2;
    }
    return 0;
}

void sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    /* SHA-256 of the default provider is always there: only allocation can fail */
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        oom_die(0);
    }
    hex_encode(md, 32, out);
}

bool hex_is_lower(const char *s, size_t len)
{
    if (strlen(s) != len) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void base64_encode(struct buf *out, const uint8_t *in, size_t len)
{
    buf_reserve(out, (len + 2) / 3 * 4);
    char *o = out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = b64chars[v >> 18];
        *o++ = b64chars[(v >> 12) & 63];
        *o++ = b64chars[(v >> 6) & 63];
        *o++ = b64chars[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *o++ = b64chars[v >> 18];
        *o++ = b64chars[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *o++ = b64chars[v >> 18];
        *o++ = b64chars[(v >> 12) & 63];
        *o++ = b64chars[(v >> 6) & 63];
        *o++ = '=';
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
}

/* base64 digit values; B64_SPACE is skipped, B64_PAD is '=', B64_BAD anything else */
#define B64_SPACE 64
#define B64_PAD   65
#define B64_BAD   255
static const uint8_t b64_dec[256] = {
    255, 255, 255, 255, 255, 255, 255, 255, 255,  64,  64, 255, 255,  64, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
     64, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,  62, 255, 255, 255,  63,
     52,  53,  54,  55,  56,  57,  58,  59,  60,  61, 255, 255, 255,  65, 255, 255,
    255,   0,   1,   2,   3,   4,   5,   6,   7,   8,   9,  10,  11,  12,  13,  14,
     15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25, 255, 255, 255, 255, 255,
    255,  26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,  39,  40,
     41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
};

int base64_decode(struct buf *out, const char *in, size_t len)
{
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    size_t start = out->len, chars = 0;
    buf_reserve(out, len / 4 * 3 + 3);
    for (size_t i = 0; i < len; i++) {
        uint8_t v = b64_dec[(unsigned char)in[i]];
        if (v < 64) {
            if (pad) {
                goto bad;
            }
            chars++;
            acc = acc << 6 | v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                out->data[out->len++] = (char)((acc >> bits) & 0xff);
            }
        } else if (v == B64_PAD) {
            chars++;
            pad++;
        } else if (v != B64_SPACE) {
            goto bad;
        }
    }
    if (chars % 4 || pad > 2 || (acc & ((1u << bits) - 1)) != 0) {
        goto bad;
    }
    out->data[out->len] = '\0';
    return 0;
bad:
    out->len = start;
    out->data[out->len] = '\0';
    return -1;
}

size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return len;
}

void json_quote(struct buf *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    buf_reserve(out, len + 2);
    buf_addch(out, '"');
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        size_t j = i;
        while (j < len && p[j] >= 0x20 && p[j] < 0x7f && p[j] != '"' && p[j] != '\\') {
            j++;
        }
        if (j > i) { /* a run that needs no escape: one copy (replies carry whole PEMs) */
            buf_add(out, p + i, j - i);
            i = j;
            continue;
        }
        if (c == '"' || c == '\\') {
            buf_addch(out, '\\');
            buf_addch(out, (char)c);
            i++;
        } else if (c == '\n') {
            buf_addstr(out, "\\n");
            i++;
        } else if (c == '\t') {
            buf_addstr(out, "\\t");
            i++;
        } else if (c == '\r') {
            buf_addstr(out, "\\r");
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            buf_addf(out, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            buf_addch(out, (char)c);
            i++;
        } else {
            size_t n = utf8_seq_len(p + i, len - i);
            if (n == 0) {
                buf_addf(out, "\\u%04x", c); /* not UTF-8: keep the byte visible */
                i++;
            } else {
                buf_add(out, p + i, n);
                i += n;
            }
        }
    }
    buf_addch(out, '"');
}

void time_format_rfc3339_ms(char *out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

void time_format_rfc3339(time_t t, char *out, size_t cap)
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        memset(&tm, 0, sizeof(tm));
        tm.tm_year = 70;
        tm.tm_mday = 1;
    }
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int time_parse_rfc3339(const char *s, time_t *out)
{
    int y, mo, d, h, mi, sec;
    char z = 0, extra = 0;
    if (strlen(s) != 20 ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c%c", &y, &mo, &d, &h, &mi, &sec, &z, &extra) != 7 ||
        z != 'Z') {
        return -1;
    }
    if (y < 1950 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 59 || h < 0 || mi < 0 || sec < 0) {
        return -1;
    }
    struct tm tm = { 0 };
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    struct tm back;
    gmtime_r(&t, &back);
    if (back.tm_mday != d) {
        return -1; /* e.g. February 30th */
    }
    *out = t;
    return 0;
}

int64_t time_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int file_read_all(const char *path, size_t max, struct buf *out, struct err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return err_errno(e, errno == ENOENT ? ERRC_NOT_FOUND : ERRC_INVALID, "cannot open '%s'",
                         path);
    }
    size_t start = out->len;
    for (;;) {
        buf_reserve(out, 65536);
        size_t room = out->cap - out->len - 1;
        ssize_t n = read(fd, out->data + out->len, room);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            err_errno(e, ERRC_INVALID, "cannot read '%s'", path);
            goto fail;
        }
        if (n == 0) {
            break;
        }
        out->len += (size_t)n;
        if (out->len - start > max) {
            err_set(e, ERRC_TOO_LARGE, "'%s' is larger than %zu bytes", path, max);
            goto fail;
        }
    }
    out->data[out->len] = '\0';
    close(fd);
    return 0;
fail:
    out->len = start;
    if (out->data) {
        out->data[out->len] = '\0';
    }
    close(fd);
    return -1;
}

int file_fsync_dir(const char *dir, struct err *e)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return err_errno(e, ERRC_INTERNAL, "cannot open directory '%s'", dir);
    }
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) {
        return err_errno(e, ERRC_INTERNAL, "cannot fsync directory '%s'", dir);
    }
    return 0;
}

int file_write_full(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode, bool excl,
                      struct err *e)
{
    struct buf tmp = BUF_INIT;
    char *dcopy = xstrdup(path);
    const char *dir = dirname(dcopy);
    int fd = -1, rc = -1;
    if (excl && file_exists(path)) {
        err_set(e, ERRC_CONFLICT, "'%s' already exists", path);
        goto out;
    }
    buf_addf(&tmp, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        err_errno(e, ERRC_INTERNAL, "cannot create '%s'", tmp.data);
        goto out;
    }
    if (fchmod(fd, mode) != 0 || file_write_full(fd, data, len) != 0 || fsync(fd) != 0) {
        err_errno(e, ERRC_INTERNAL, "cannot write '%s'", tmp.data);
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        err_errno(e, ERRC_INTERNAL, "cannot write '%s'", tmp.data);
        goto out;
    }
    fd = -1;
    if (excl) {
        /* link() fails if the target exists: no window where two writers both win */
        if (link(tmp.data, path) != 0) {
            err_errno(e, errno == EEXIST ? ERRC_CONFLICT : ERRC_INTERNAL, "cannot create '%s'",
                      path);
            goto out;
        }
        unlink(tmp.data);
    } else if (rename(tmp.data, path) != 0) {
        err_errno(e, ERRC_INTERNAL, "cannot rename to '%s'", path);
        goto out;
    }
    if (file_fsync_dir(dir, e) != 0) {
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
    }
    if (rc != 0 && tmp.data) {
        unlink(tmp.data);
    }
    buf_release(&tmp);
    xfree(dcopy);
    return rc;
}

int file_mkdirs(const char *path, mode_t mode, struct err *e)
{
    char *p = xstrdup(path);
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char saved = *s;
            *s = '\0';
            if (mkdir(p, mode) != 0 && errno != EEXIST) {
                rc = err_errno(e, ERRC_INTERNAL, "cannot create directory '%s'", p);
                break;
            }
            *s = saved;
            if (saved == '\0') {
                break;
            }
        }
    }
    xfree(p);
    return rc;
}

bool file_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

int file_check_private(const char *path, struct err *e)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        return err_errno(e, errno == ENOENT ? ERRC_NOT_FOUND : ERRC_INVALID, "cannot stat '%s'",
                         path);
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        return err_set(e, ERRC_DENIED,
                       "key file '%s' is accessible by group or others (mode %03o); run chmod 600",
                       path, (unsigned)(st.st_mode & 0777));
    }
    return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int file_remove_tree(const char *path, struct err *e)
{
    if (!file_exists(path)) {
        return 0;
    }
    if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        return err_errno(e, ERRC_INTERNAL, "cannot remove '%s'", path);
    }
    return 0;
}
