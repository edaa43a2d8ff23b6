/*
 * gencsr: makes many distinct device keys and CSRs fast, for tests, benchmarks and the demo
 * (the openssl CLI costs ~20 ms of start-up per CSR; this makes thousands per second).
 *
 *   gencsr --count N --out DIR|FILE.jsonl [--type ec-p256|ec-p384|rsa-2048|rsa-1024|ec-p192]
 *          [--cn-prefix PREFIX] [--start K] [--keys]
 *
 * DIR: writes PREFIX<i>.csr (and PREFIX<i>.key with --keys, unencrypted: test devices only).
 * FILE.jsonl: one {"id","csr"} line per CSR, the input format of jitrctl sign-batch.
 */
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"

static EVP_PKEY *make_key(const char *type)
{
    if (strcmp(type, "ec-p256") == 0) {
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    }
    if (strcmp(type, "ec-p384") == 0) {
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    }
    if (strcmp(type, "ec-p192") == 0) {
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-192");
    }
    if (strcmp(type, "rsa-2048") == 0) {
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    }
    if (strcmp(type, "rsa-1024") == 0) {
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    }
    return NULL;
}

static int usage(void)
{
    fprintf(stderr, "usage: gencsr --count N --out DIR|FILE.jsonl [--type T] [--cn-prefix P] "
                    "[--start K] [--keys]\n");
    return 2;
}

int main(int argc, char **argv)
{
    uint64_t count = 0, start = 1;
    const char *out = NULL, *type = "ec-p256", *prefix = "device-";
    int keys = 0;
    mem_install();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            if (str_to_u64(argv[++i], &count) != 0) {
                return usage();
            }
        } else if (strcmp(argv[i], "--start") == 0 && i + 1 < argc) {
            if (str_to_u64(argv[++i], &start) != 0) {
                return usage();
            }
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (strcmp(argv[i], "--type") == 0 && i + 1 < argc) {
            type = argv[++i];
        } else if (strcmp(argv[i], "--cn-prefix") == 0 && i + 1 < argc) {
            prefix = argv[++i];
        } else if (strcmp(argv[i], "--keys") == 0) {
            keys = 1;
        } else {
            return usage();
        }
    }
    if (count == 0 || out == NULL) {
        return usage();
    }
    size_t olen = strlen(out);
    int jsonl = olen > 6 && strcmp(out + olen - 6, ".jsonl") == 0;
    FILE *jf = NULL;
    if (jsonl) {
        jf = fopen(out, "w");
        if (jf == NULL) {
            perror(out);
            return 1;
        }
    } else if (mkdir(out, 0755) != 0 && !file_exists(out)) {
        perror(out);
        return 1;
    }
    EVP_PKEY *shared = NULL;
    for (uint64_t n = start; n < start + count; n++) {
        /* RSA keygen is slow: RSA CSRs share one key (each CSR is still distinct) */
        EVP_PKEY *pk = NULL;
        if (strncmp(type, "rsa", 3) == 0) {
            if (shared == NULL) {
                shared = make_key(type);
            }
            pk = shared;
            EVP_PKEY_up_ref(pk);
        } else {
            pk = make_key(type);
        }
        if (pk == NULL) {
            fprintf(stderr, "gencsr: cannot make a %s key\n", type);
            return 1;
        }
        char cn[128];
        snprintf(cn, sizeof(cn), "%s%06llu", prefix, (unsigned long long)n);
        X509_REQ *req = X509_REQ_new();
        X509_NAME *name = X509_REQ_get_subject_name(req);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0);
        X509_REQ_set_pubkey(req, pk);
        if (X509_REQ_sign(req, pk, EVP_sha256()) <= 0) {
            fprintf(stderr, "gencsr: cannot sign the CSR\n");
            return 1;
        }
        BIO *mem = BIO_new(BIO_s_mem());
        PEM_write_bio_X509_REQ(mem, req);
        char *pem = NULL;
        long pemlen = BIO_get_mem_data(mem, &pem);
        if (jsonl) {
            struct buf line = BUF_INIT;
            buf_addstr(&line, "{\"id\":");
            json_quote(&line, cn, strlen(cn));
            buf_addstr(&line, ",\"csr\":");
            json_quote(&line, pem, (size_t)pemlen);
            buf_addstr(&line, "}\n");
            fwrite(line.data, 1, line.len, jf);
            buf_release(&line);
        } else {
            struct buf path = BUF_INIT;
            buf_addf(&path, "%s/%s.csr", out, cn);
            FILE *f = fopen(path.data, "w");
            if (f == NULL || fwrite(pem, 1, (size_t)pemlen, f) != (size_t)pemlen) {
                perror(path.data);
                return 1;
            }
            fclose(f);
            if (keys) {
                buf_reset(&path);
                buf_addf(&path, "%s/%s.key", out, cn);
                f = fopen(path.data, "w");
                if (f == NULL || PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) != 1) {
                    perror(path.data);
                    return 1;
                }
                fclose(f);
            }
            buf_release(&path);
        }
        BIO_free(mem);
        X509_REQ_free(req);
        EVP_PKEY_free(pk);
    }
    EVP_PKEY_free(shared);
    if (jf && fclose(jf) != 0) {
        perror(out);
        return 1;
    }
    return 0;
}
