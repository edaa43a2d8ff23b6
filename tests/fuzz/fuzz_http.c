/*
 * libFuzzer target: jitrd's request parsing (daemon/parse.c). The first byte picks what the rest
 * of the input is fed to: a Content-Type value through api_media_type, a /v1/sign body under each
 * media type, a /v1/sign/batch JSON body, an EST base64 body, the JSON depth check. The oracle:
 * a success yields a CSR within the size caps (and batch items that are either usable or carry
 * an error with a message); a failure carries a code and a message; nothing leaks (ASan).
 */
#include <stdlib.h>
#include <string.h>

#include "ca/issue.h"
#include "core/mem.h"
#include "daemon/daemon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const media[] = { "application/json", "application/pkcs10",
                                     "application/x-pem-file", "text/plain", "text/html", "" };

static void check_err(int rc, const struct err *e)
{
    if (rc != 0 && (e->code == ERRC_OK || e->msg[0] == '\0')) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct err e = ERR_INIT;
    if (size == 0) {
        return 0;
    }
    uint8_t mode = data[0];
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    switch (mode % 5) {
    case 0: {
        char *s = xstrndup((const char *)body, len);
        char out[64];
        api_media_type(s, out, sizeof(out));
        if (strlen(out) >= sizeof(out)) {
            abort();
        }
        xfree(s);
        break;
    }
    case 1: {
        struct api_csr_req r;
        bool bad = false;
        memset(&r, 0, sizeof(r));
        int rc = api_parse_sign(media[(mode / 5) % ARRAY_LEN(media)], body, len, 8, &r, &bad, &e);
        check_err(rc, &e);
        if (rc == 0 && (r.csr.len == 0 || r.csr.len > (size_t)CA_CSR_MAX * 2 + len)) {
            abort();
        }
        api_csr_req_release(&r);
        break;
    }
    case 2: {
        struct api_csr_req *items = NULL;
        size_t n = 0;
        int rc = api_parse_batch(body, len, 8, 16, &items, &n, &e);
        check_err(rc, &e);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            if (items[i].err.code == ERRC_OK ? items[i].csr.len == 0 : items[i].err.msg[0] == 0) {
                abort();
            }
        }
        api_batch_free(items, n);
        break;
    }
    case 3: {
        struct buf der = BUF_INIT;
        bool bad = false;
        int rc = api_parse_est_csr((mode / 5) % 2 ? "application/pkcs10" : "application/json", body,
                                   len, &der, &bad, &e);
        check_err(rc, &e);
        if (rc == 0 && der.len == 0) {
            abort();
        }
        buf_release(&der);
        break;
    }
    default: {
        int rc = api_json_depth_check(body, len, 1 + (mode / 5) % 16, &e);
        check_err(rc, &e);
        break;
    }
    }
    return 0;
}
