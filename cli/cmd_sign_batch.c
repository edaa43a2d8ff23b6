/*
 * jitrctl sign-batch: signs many CSRs offline on every core, for stations without a network
 * path to jitrd (or a 100k-device production run prepared in advance).
 *
 * Input: a directory of *.csr files (PEM or DER; the id is the file name without .csr) or a
 * JSON-lines file of {"id": ..., "csr": "<PEM>", "profile": optional}. Output: for a directory,
 * OUT/ID.crt per signed CSR; for a file, one JSON line per input line, in input order:
 * {"id","serial","certificateId","certificate"} or {"id","error":{"code","message"}}.
 *
 * Threads take chunks of CHUNK CSRs from a shared counter, each with its own signer and Redis
 * connection, and run the ordinary issuance path (audited durably, indexed) on the chunk; the
 * main thread writes chunks out in order as they complete and draws the progress bar. A bad CSR
 * is reported and does not stop the batch; a failure of Redis or of the audit log does.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "issuance/issuance.h"

#define CHUNK     256
#define BATCH_MAX_INPUT ((size_t)4 << 30)

static const char batch_usage[] =
    "usage: jitrctl sign-batch --in FILE|DIR --out FILE|DIR [--profile P] [--ca NAME]\n"
    "                          [--threads N] [--quiet]\n"
    "\n"
    "  --in DIR      every *.csr file of DIR (PEM or DER); --out must then be a directory and\n"
    "                receives ID.crt for each signed CSR\n"
    "  --in FILE     JSON lines {\"id\":..,\"csr\":\"PEM\",\"profile\":..}; --out FILE receives one\n"
    "                JSON line per input line, in order, with the certificate or the error\n"
    "  --profile P   profile for CSRs that name none (default: default_profile)\n"
    "  --threads N   signing threads (default: sign_threads of the config, 0 = one per core)\n"
    "  --quiet       no progress bar\n"
    "Exit status: 0 when every CSR was signed, 2 when some were rejected (each is reported),\n"
    "another non-zero status when the batch could not run or stopped.\n";

struct job {
    char *id;
    struct buf csr;
    char *profile;
    char *error_in; /* the input line itself was bad */
};

struct batch {
    struct job *jobs;
    size_t njobs;
    struct issuance_item *items;
    const struct issuance_ctx *ctx;
    const char *default_profile;
    char requester[300];
    size_t nchunks;
    atomic_size_t next;
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool *done;
    size_t finished_items;
    struct err fail; /* the systemic failure that stopped the batch */
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int load_dir(const char *dir, struct batch *b, struct err *e)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = -1;
    if (d == NULL) {
        return err_errno(e, ERRC_INVALID, "cannot open directory '%s'", dir);
    }
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len > 4 && strcmp(de->d_name + len - 4, ".csr") == 0) {
            names = xgrow(names, sizeof(char *), n + 1, &cap);
            names[n++] = xstrdup(de->d_name);
        }
    }
    closedir(d);
    if (n) {
        qsort(names, n, sizeof(char *), cmp_str);
    }
    b->jobs = xcalloc(n ? n : 1, sizeof(struct job));
    for (size_t i = 0; i < n; i++) {
        struct job *j = &b->jobs[i];
        struct buf path = BUF_INIT;
        struct err fe = ERR_INIT;
        buf_addf(&path, "%s/%s", dir, names[i]);
        j->id = xstrndup(names[i], strlen(names[i]) - 4);
        if (file_read_all(path.data, CA_CSR_MAX * 4, &j->csr, &fe) != 0) {
            j->error_in = xstrdup(fe.msg);
        }
        buf_release(&path);
        b->njobs++;
    }
    rc = 0;
    for (size_t i = 0; i < n; i++) {
        xfree(names[i]);
    }
    xfree(names);
    if (n == 0) {
        rc = err_set(e, ERRC_INVALID, "no *.csr file in '%s'", dir);
    }
    return rc;
}

static int load_jsonl(const char *file, struct batch *b, struct err *e)
{
    struct buf all = BUF_INIT;
    size_t cap = 0, lineno = 0;
    if (file_read_all(file, BATCH_MAX_INPUT, &all, e) != 0) {
        return -1;
    }
    for (char *line = all.data; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        lineno++;
        if (len == 0 || (len == 1 && line[0] == '\r')) {
            line = nl ? nl + 1 : NULL;
            continue;
        }
        b->jobs = xgrow(b->jobs, sizeof(struct job), b->njobs + 1, &cap);
        struct job *j = &b->jobs[b->njobs++];
        memset(j, 0, sizeof(*j));
        json_error_t jerr;
        json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
        const char *id = o ? json_string_value(json_object_get(o, "id")) : NULL;
        const char *csr = o ? json_string_value(json_object_get(o, "csr")) : NULL;
        json_t *prof = o ? json_object_get(o, "profile") : NULL;
        char idbuf[32];
        snprintf(idbuf, sizeof(idbuf), "line-%zu", lineno);
        j->id = xstrdup(id ? id : idbuf);
        struct buf msg = BUF_INIT;
        if (o == NULL) {
            buf_addf(&msg, "line %zu is not JSON: %s", lineno, jerr.text);
        } else if (!json_is_object(o)) {
            buf_addf(&msg, "line %zu is not a JSON object", lineno);
        } else if (id == NULL) {
            buf_addf(&msg, "line %zu has no string \"id\"", lineno);
        } else if (csr == NULL) {
            buf_addf(&msg, "line %zu has no string \"csr\"", lineno);
        } else if (prof && !json_is_string(prof)) {
            buf_addf(&msg, "line %zu: \"profile\" must be a string", lineno);
        } else {
            const char *k;
            json_t *v;
            json_object_foreach(o, k, v)
            {
                if (strcmp(k, "id") && strcmp(k, "csr") && strcmp(k, "profile") && !msg.len) {
                    buf_addf(&msg, "line %zu: unknown key \"%s\"", lineno, k);
                }
            }
        }
        if (msg.len) {
            j->error_in = buf_detach(&msg, NULL);
        } else {
            buf_addstr(&j->csr, csr);
            j->profile = prof ? xstrdup(json_string_value(prof)) : NULL;
        }
        buf_release(&msg);
        json_decref(o);
        line = nl ? nl + 1 : NULL;
    }
    buf_release(&all);
    if (b->njobs == 0) {
        return err_set(e, ERRC_INVALID, "'%s' holds no CSR", file);
    }
    return 0;
}

static void *batch_thread(void *arg)
{
    struct batch *b = arg;
    struct err e = ERR_INIT;
    struct issuance_worker *w = issuance_worker_new(b->ctx, &e);
    for (;;) {
        size_t c = atomic_fetch_add(&b->next, 1);
        if (c >= b->nchunks || atomic_load(&b->stop)) {
            break;
        }
        size_t from = c * CHUNK, to = from + CHUNK < b->njobs ? from + CHUNK : b->njobs;
        /* items whose input line was bad are not sent to the issuer */
        struct issuance_item *run = xcalloc(to - from, sizeof(*run));
        size_t *map = xcalloc(to - from, sizeof(size_t));
        size_t m = 0;
        for (size_t i = from; i < to; i++) {
            struct job *j = &b->jobs[i];
            if (j->error_in) {
                err_set(&b->items[i].err, ERRC_INVALID, "%s", j->error_in);
                continue;
            }
            run[m] = (struct issuance_item){ .csr = (const uint8_t *)j->csr.data,
                                             .csr_len = j->csr.len,
                                             .profile = j->profile ? j->profile
                                                                   : b->default_profile,
                                             .requester = b->requester };
            map[m++] = i;
        }
        int rc = w == NULL ? -1 : issuance_run(w, run, m, &e);
        pthread_mutex_lock(&b->mu);
        if (rc != 0) {
            if (b->fail.code == ERRC_OK) {
                err_copy(&b->fail, &e);
            }
            atomic_store(&b->stop, true);
        } else {
            for (size_t k = 0; k < m; k++) {
                b->items[map[k]] = run[k];
            }
        }
        b->done[c] = true;
        b->finished_items += to - from;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        xfree(run);
        xfree(map);
        if (rc != 0) {
            break;
        }
    }
    issuance_worker_free(w);
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

static void progress(size_t done, size_t total, int64_t t0)
{
    double s = (double)(time_mono_ns() - t0) / 1e9;
    int width = 40, fill = total ? (int)((double)width * (double)done / (double)total) : width;
    fprintf(stderr, "\r[%.*s%*s] %zu/%zu  %.0f/s ", fill,
            "########################################", width - fill, "", done, total,
            s > 0 ? (double)done / s : 0.0);
    fflush(stderr);
}

struct writer {
    bool to_dir;
    const char *out;
    FILE *f;
    size_t signed_n, rejected;
    size_t clamped; /* signed with the CA's notAfter, before the profile's validity */
    char clamped_to[24];
};

static int write_item(struct writer *wr, const struct job *j, struct issuance_item *it,
                      struct err *e)
{
    struct buf pem = BUF_INIT;
    int rc = 0;
    if (it->issued) {
        ca_der_to_pem(&pem, it->cert.der, it->cert.der_len);
        wr->signed_n++;
        if (it->validity_clamped) {
            wr->clamped++;
            snprintf(wr->clamped_to, sizeof(wr->clamped_to), "%s", it->not_after);
        }
    } else {
        wr->rejected++;
        fprintf(stderr, "%s%s: rejected: %s\n", isatty(STDERR_FILENO) ? "\r" : "", j->id,
                it->err.msg);
    }
    if (wr->to_dir) {
        if (it->issued) {
            struct buf path = BUF_INIT;
            buf_addf(&path, "%s/%s.crt", wr->out, j->id);
            FILE *f = fopen(path.data, "w");
            if (f == NULL || fwrite(pem.data, 1, pem.len, f) != pem.len) {
                rc = err_errno(e, ERRC_INTERNAL, "cannot write '%s'", path.data);
            }
            if (f && fclose(f) != 0 && rc == 0) {
                rc = err_errno(e, ERRC_INTERNAL, "cannot write '%s'", path.data);
            }
            buf_release(&path);
        }
    } else {
        json_t *o = it->issued ? json_pack("{s:s,s:s,s:s,s:s}", "id", j->id, "serial",
                                           it->cert.serial_hex, "certificateId",
                                           it->cert.fingerprint, "certificate", pem.data)
                               : json_pack("{s:s,s:{s:s,s:s}}", "id", j->id, "error", "code",
                                           err_code_name(it->err.code), "message", it->err.msg);
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (fputs(s, wr->f) < 0 || fputc('\n', wr->f) < 0) {
            rc = err_errno(e, ERRC_INTERNAL, "cannot write '%s'", wr->out);
        }
        xfree(s);
        json_decref(o);
    }
    buf_release(&pem);
    return rc;
}

int cmd_sign_batch(struct cli *cli, int argc, char **argv, struct err *e)
{
    enum { O_IN = 1, O_OUT, O_PROFILE, O_CA, O_THREADS, O_QUIET };
    static const struct option opts[] = {
        { "in", required_argument, NULL, O_IN },
        { "out", required_argument, NULL, O_OUT },
        { "profile", required_argument, NULL, O_PROFILE },
        { "ca", required_argument, NULL, O_CA },
        { "threads", required_argument, NULL, O_THREADS },
        { "quiet", no_argument, NULL, O_QUIET },
        { NULL, 0, NULL, 0 },
    };
    const char *in = NULL, *out = NULL, *profile = NULL, *ca = NULL;
    uint64_t threads = 0;
    bool quiet = false, threads_set = false, show;
    struct batch *b = xcalloc(1, sizeof(*b));
    struct issuance_ctx *ctx = NULL;
    struct writer wr = { 0 };
    pthread_t *tids = NULL;
    size_t started = 0, written_chunks = 0;
    const struct conf *c;
    struct stat st;
    int rc = -1, optidx = 0, ch;
    int64_t t0;
    double secs;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    while ((ch = cli_getopt(cli, argc, argv, opts, &optidx, e)) != -1) {
        switch (ch) {
        case 'h':
            rc = cli_usage(batch_usage);
            goto out;
        case O_IN:
            in = optarg;
            break;
        case O_OUT:
            out = optarg;
            break;
        case O_PROFILE:
            profile = optarg;
            break;
        case O_CA:
            ca = optarg;
            break;
        case O_THREADS:
            if (str_to_u64(optarg, &threads) != 0 || threads == 0 || threads > 1024) {
                err_set(e, ERRC_INVALID, "--threads must be 1 to 1024, not '%s'", optarg);
                goto out;
            }
            threads_set = true;
            break;
        case O_QUIET:
            quiet = true;
            break;
        default:
            goto out;
        }
    }
    if (in == NULL || out == NULL || optidx != argc) {
        err_set(e, ERRC_INVALID, "usage: jitrctl sign-batch --in FILE|DIR --out FILE|DIR");
        goto out;
    }
    if ((c = cli_conf(cli, e)) == NULL || cli_index_ensure(cli, e) != 0) {
        goto out;
    }
    if (stat(in, &st) != 0) {
        err_errno(e, ERRC_INVALID, "cannot read '%s'", in);
        goto out;
    }
    wr.to_dir = S_ISDIR(st.st_mode);
    wr.out = out;
    if ((wr.to_dir ? load_dir(in, b, e) : load_jsonl(in, b, e)) != 0) {
        goto out;
    }
    if (wr.to_dir) {
        if (file_mkdirs(out, 0755, e) != 0) {
            goto out;
        }
    } else if ((wr.f = fopen(out, "w")) == NULL) {
        err_errno(e, ERRC_INVALID, "cannot create '%s'", out);
        goto out;
    }
    ctx = issuance_ctx_open(c, ca, cli->passphrase_file, e);
    if (ctx == NULL) {
        goto out;
    }
    if (!threads_set) {
        threads = c->sign_threads ? (uint64_t)c->sign_threads
                                  : (uint64_t)sysconf(_SC_NPROCESSORS_ONLN);
    }
    b->ctx = ctx;
    b->default_profile = profile;
    issuance_cli_requester(b->requester, sizeof(b->requester));
    b->items = xcalloc(b->njobs, sizeof(*b->items));
    b->nchunks = (b->njobs + CHUNK - 1) / CHUNK;
    b->done = xcalloc(b->nchunks, sizeof(bool));
    if (threads > b->nchunks) {
        threads = b->nchunks;
    }
    tids = xcalloc((size_t)threads, sizeof(pthread_t));
    show = !quiet && isatty(STDERR_FILENO);
    t0 = time_mono_ns();
    for (; started < threads; started++) {
        if (pthread_create(&tids[started], NULL, batch_thread, b) != 0) {
            err_set(e, ERRC_INTERNAL, "cannot start a signing thread");
            atomic_store(&b->stop, true);
            break;
        }
    }
    /* write chunks in order as they complete */
    pthread_mutex_lock(&b->mu);
    while (written_chunks < b->nchunks && started > 0) {
        while (!b->done[written_chunks] && !(atomic_load(&b->stop) && b->fail.code)) {
            if (show) {
                size_t fin = b->finished_items;
                pthread_mutex_unlock(&b->mu);
                progress(fin, b->njobs, t0);
                pthread_mutex_lock(&b->mu);
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        }
        if (!b->done[written_chunks] || b->fail.code) {
            break;
        }
        pthread_mutex_unlock(&b->mu);
        size_t from = written_chunks * CHUNK;
        size_t to = from + CHUNK < b->njobs ? from + CHUNK : b->njobs;
        for (size_t i = from; i < to && e->code == ERRC_OK; i++) {
            if (write_item(&wr, &b->jobs[i], &b->items[i], e) != 0) {
                atomic_store(&b->stop, true);
            }
        }
        pthread_mutex_lock(&b->mu);
        written_chunks++;
        if (e->code != ERRC_OK) {
            break;
        }
    }
    pthread_mutex_unlock(&b->mu);
    for (size_t i = 0; i < started; i++) {
        pthread_join(tids[i], NULL);
    }
    if (show) {
        progress(wr.signed_n + wr.rejected, b->njobs, t0);
        fputc('\n', stderr);
    }
    if (wr.f && fclose(wr.f) != 0 && e->code == ERRC_OK) {
        err_errno(e, ERRC_INTERNAL, "cannot write '%s'", out);
    }
    wr.f = NULL;
    secs = (double)(time_mono_ns() - t0) / 1e9;
    if (b->fail.code != ERRC_OK) {
        err_copy(e, &b->fail);
    }
    if (e->code != ERRC_OK) {
        err_prefix(e, "batch stopped after %zu signed, %zu rejected, %zu not processed",
                   wr.signed_n, wr.rejected, b->njobs - wr.signed_n - wr.rejected);
        goto out;
    }
    if (cli->json) {
        cli_print_json(json_pack("{s:I,s:I,s:I,s:f,s:f}", "total", (json_int_t)b->njobs,
                                 "signed", (json_int_t)wr.signed_n, "rejected",
                                 (json_int_t)wr.rejected, "seconds", secs, "certs_per_second",
                                 secs > 0 ? (double)wr.signed_n / secs : 0.0));
    } else {
        fprintf(stderr, "signed %zu of %zu CSRs (%zu rejected) in %.2f s, %.0f certs/s, %llu threads\n",
                wr.signed_n, b->njobs, wr.rejected, secs,
                secs > 0 ? (double)wr.signed_n / secs : 0.0, (unsigned long long)threads);
    }
    if (wr.clamped) {
        fprintf(stderr,
                "jitrctl: warning: %zu certificates end at %s, when the CA's certificate does, "
                "before their profile's validity\n",
                wr.clamped, wr.clamped_to);
    }
    if (wr.rejected) {
        err_set(e, ERRC_INVALID, "%zu of %zu CSRs were rejected", wr.rejected, b->njobs);
        goto out;
    }
    rc = 0;
out:
    if (wr.f) {
        fclose(wr.f);
    }
    for (size_t i = 0; i < b->njobs; i++) {
        if (b->items) {
            issuance_item_release(&b->items[i]);
        }
        xfree(b->jobs[i].id);
        xfree(b->jobs[i].profile);
        xfree(b->jobs[i].error_in);
        buf_release(&b->jobs[i].csr);
    }
    xfree(b->jobs);
    xfree(b->items);
    xfree(b->done);
    xfree(tids);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    xfree(b);
    issuance_ctx_free(ctx);
    return rc;
}
