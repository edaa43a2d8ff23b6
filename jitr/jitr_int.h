/*
 * Internal to jitr/: the service whose parts are service.c (the consumer and the flows' io),
 * intake.c, sqs.c, confirm.c, policy.c and reconcile.c; service.c starts and stops the others,
 * which share only what jitr/ctx.h offers. Everything here is touched on the worker's loop only.
 */
#ifndef JITR_JITR_INT_H
#define JITR_JITR_INT_H

#include <openssl/ssl.h>

#include "core/conf.h"
#include "jitr/ctx.h"
#include "jitr/jitr.h"

#ifndef JITRCA_JITR_TEMPLATE
#define JITRCA_JITR_TEMPLATE "/usr/share/jitrca/templates/default.json"
#endif

struct event;
struct hrun;
struct jobs_engine;
struct jobs_renewal_host;
struct httpd;
struct httpd_req;
struct audit_log;
struct jitr_pol;
struct jitr_sqs;
struct jitr_auditq;
struct jitr_confirmer;
struct workq;

/* The cross-key rules of conf's "jitr" section (core/conf.c checked each key's type and range);
 * errors name the file and jitr.KEY. */
int jitr_cfg_check(const struct conf *conf, struct err *e) ATTR_WUR;

enum jitr_pol_state { JITR_POL_UNKNOWN, JITR_POL_ENSURING, JITR_POL_READY };

/* The accepted intake secrets: SHA-256 of each. */
struct jitr_secrets {
    uint8_t (*md)[32];
    size_t n;
};

/* A template's policies and their state in AWS (policy.c), made on first use. */
struct jitr_polset {
    struct jitr_pol *pols;
    size_t npols;
};

/* What SIGHUP replaces for the flows: the template (with its policies' state in AWS) and the
 * profiles. A flow keeps the generation it started with until its next run; the service keeps
 * every generation a flow still uses. */
struct jitr_gen {
    unsigned refs; /* the service's (while current) and each flow's */
    struct jitr_template *tpl;
    struct ca_profiles *profiles;
    struct jitr_env env;   /* the flows' context: tpl, profiles, the current CA table, ... */
    struct jitr_polset ps; /* the template's policies (policy.c) */
    struct jitr_gen *next; /* the service's list */
};

struct jitr_tplc;
struct jitr_tpl_wait;

struct jitr_service {
    struct jitr_ctx ctx; /* base, Redis, AWS, the CA table, stopping */
    struct conf_jitr cfg; /* a copy of conf's jitr section */
    size_t slot;
    char consumer[96];
    char *data_dir;
    int64_t redis_timeout_ms;
    struct store_async *rblock; /* XREADGROUP BLOCK */
    struct audit_log *audit;
    struct jitr_auditq *auditq; /* the flows' appends, off the loop */
    struct jitr_env env;   /* what every generation's env starts from (no template) */
    struct jitr_gen *gen;  /* the current generation (one reference) */
    struct jitr_gen *gens; /* every generation still used, the current one included */
    struct jitr_tplc *tplc; /* register-batch templates by SHA-256 (loader.c), bounded */
    struct jitr_io io;
    struct workq *loader;  /* files read off the loop: the CA table, SIGHUP's reload */
    struct event *loader_wake;
    bool cas_loading, reloading, reload_again;
    char *config_path; /* SIGHUP's (NULL: $JITRCA_CONFIG) */
    /* the job engine (jobs/): JITR's flows and every other kind */
    struct jobs_engine *jobs;
    struct jobs_renewal_host *renewal; /* the renewal kind's revocations (jobs/renewal.h) */
    struct hrun *runs; /* JITR jobs running a flow */
    struct event *ca_refresh;
    bool draining; /* SIGTERM: no new events taken (intake closed, no reads, no polls) */
    /* reconciler */
    struct event *reconcile;
    bool reconciling;
    struct jitr_catab *rec_tab; /* the table this round walks (a reference) */
    size_t rec_ca;              /* its index in rec_tab */
    size_t rec_seen, rec_queued; /* certificates of that CA listed, queued */
    /* intake */
    struct httpd *http;     /* NULL without jitr.listen */
    SSL_CTX *ssl;           /* NULL: plain HTTP */
    struct jitr_secrets secrets;
    size_t intake_busy; /* requests waiting for Redis (XADD, /metrics) */
    /* SQS intake (sqs.c); NULL without jitr.sqs_queue_url */
    struct jitr_sqs *sqs;
    /* destination confirmations (confirm.c) */
    struct jitr_confirmer *confirm;
};

/* Jobs running in this worker (every kind). */
size_t jitr_service_jobs(const struct jitr_service *s);

/* loader.c: the current generation and CA table, the loader thread (started last but the
 * intakes, stopped first) and its 10 s CA refresh. */
struct jitr_gen *jitr_gen_ref(struct jitr_gen *g);
/* A generation nobody uses any more is freed (its policies' state with it). */
void jitr_gen_unref(struct jitr_service *s, struct jitr_gen *g);
/* Makes tpl and profiles (taken) the current generation: new flow runs use it. */
void jitr_gen_install(struct jitr_service *s, struct jitr_template *tpl,
                      struct ca_profiles *profiles);
/* Makes tab (a new reference; NULL at the end) the CA table of the service and of every
 * generation. */
void jitr_cas_swap(struct jitr_service *s, struct jitr_catab *tab);
int jitr_loader_start(struct jitr_service *s, struct err *e) ATTR_WUR;

/* loader.c: the templates of jitrctl aws register-batch --template, which a register job's flow
 * names by the SHA-256 of their bytes (jitr:tpl:<sha256>, docs/redis.md): read from Redis and
 * parsed off the loop once, then kept (at most JITR_TPLC_MAX that no flow uses) with their
 * policies' state in AWS. */
#define JITR_TPLC_MAX 8
/* The template of sha (64 lowercase hex): 0 with *out ready (a reference: jitr_tpl_unref);
 * 1 while it loads: cb runs once, later, on the loop, unless cancelled (*wait), with the
 * template (a reference) or its failure: ERRC_NOT_FOUND when Redis has no such template or its
 * bytes do not hash to sha or do not parse (a dead letter, never the default template
 * instead), another code for a transient one (Redis down, stopping); -1: e says why now. */
typedef void jitr_tpl_cb(void *arg, struct jitr_tplc *c, const struct err *e);
int jitr_tpl_get(struct jitr_service *s, const char *sha, jitr_tpl_cb *cb, void *arg,
                 struct jitr_tplc **out, struct jitr_tpl_wait **wait, struct err *e) ATTR_WUR;
/* A waiter whose flow went (its cb never runs). */
void jitr_tpl_cancel(struct jitr_service *s, struct jitr_tpl_wait *w);
const struct jitr_template *jitr_tplc_template(const struct jitr_tplc *c);
const char *jitr_tplc_sha(const struct jitr_tplc *c);
/* 64 lowercase hex digits. */
bool jitr_tpl_sha_ok(const char *sha);
void jitr_tpl_unref(struct jitr_service *s, struct jitr_tplc *c);
/* The policy state of the template t, a generation's or a cached one's; NULL when unknown. */
struct jitr_polset *jitr_polset_of(struct jitr_service *s, const struct jitr_template *t);
/* At the end: every cached template's policy waiters cancelled (release) / freed (free). */
void jitr_tpl_release_all(struct jitr_service *s);
void jitr_tpl_free_all(struct jitr_service *s);
/* The load in progress completes, unused; the queued ones are dropped. */
void jitr_loader_stop(struct jitr_service *s);

/* policy.c: io->policy_ready (the policies of the generation whose template is t); release
 * cancels a generation's waiters and frees its policies' state. */
int jitr_policy_ready(void *ctx, const struct jitr_template *t, size_t idx, store_done_cb *cb,
                      void *arg, struct err *e);
void jitr_policy_release(struct jitr_polset *ps);

/* auditq.c: the audit writer. A thread (core/workq.h) appends the records queued on the loop
 * (everything queued together goes into one audit_append: one write, one fdatasync) and posts
 * each completion back to base's loop (libevent with evthread_use_pthreads before base was
 * made).
 * log is borrowed and must outlive the writer; path is its file, read for the look-ups of
 * io->audit's check (jitr.h). new reads the log's last durable seq (the first mark). */
struct jitr_auditq *jitr_auditq_new(struct event_base *base, struct audit_log *log,
                                    const char *path, struct err *e) ATTR_WUR;
/* io->audit: -1 (ERRC_CANCELED) once stopping; else cb runs exactly once, later, on the loop. */
int jitr_auditq_append(struct jitr_auditq *q, json_t *rec, bool check, uint64_t after,
                       jitr_audit_cb *cb, void *arg, struct err *e) ATTR_WUR;
/* io->audit_mark: the highest seq this writer knows to be in the log. */
uint64_t jitr_auditq_mark(const struct jitr_auditq *q);
/* Appends queued and not yet completed. */
size_t jitr_auditq_busy(const struct jitr_auditq *q);
/* Batches the thread took so far (one audit_append each, several records each under load). */
uint64_t jitr_auditq_commits(struct jitr_auditq *q);
/* Waits for the append in progress, cancels the queued ones (cb with ERRC_CANCELED), runs every
 * completion on the calling thread (the loop's), frees. */
void jitr_auditq_free(struct jitr_auditq *q);

/* intake.c */
/* The secrets of cfg (jitr.secrets_file, jitr.secrets_env): none is an error unless events come
 * through SQS. No loop: any thread. */
int jitr_secrets_load(const struct conf_jitr *cfg, struct jitr_secrets *out,
                      struct err *e) ATTR_WUR;
void jitr_secrets_release(struct jitr_secrets *s);
int jitr_intake_start(struct jitr_service *s, struct err *e) ATTR_WUR;
void jitr_intake_stop(struct jitr_service *s);
/* The validation every intake applies (HTTP and SQS): jitr_events_parse with our CA table. */
int jitr_intake_parse(struct jitr_service *s, const uint8_t *body, size_t len,
                      struct jitr_events *out, struct err *e) ATTR_WUR;
/* The one way validated events enter the stream: one EVAL whose XADDs add an entry per event to
 * jitr:events (jitr_event_fields, received now, src = "http" | "sqs"), n >= 1. cb as
 * store_async_cmd: e == NULL once Redis acknowledged them all, r an array of the n stream ids. */
int jitr_events_enqueue(struct jitr_service *s, const struct jitr_event *const *evs, size_t n,
                        const char *src, store_reply_cb *cb, void *arg, struct err *e) ATTR_WUR;
/* "foreign_ca" for ERRC_DENIED, else "invalid": the reason label of a refused event. */
const char *jitr_event_reject_class(enum err_code c);

/* confirm.c: the topic rule destination's confirmation (docs/jitr.md "Destination
 * confirmation"). start reads jitr.destination_arns and what AWS clients for other regions
 * need from conf; post handles a confirmation POST (req is answered, now or after Redis);
 * stop cancels retries and frees the other regions' clients: after the Redis client and the
 * main AWS client are gone (their callbacks have run). */
int jitr_confirm_start(struct jitr_service *s, const struct conf *conf, struct err *e) ATTR_WUR;
void jitr_confirm_post(struct jitr_service *s, struct httpd_req *req, const uint8_t *body,
                       size_t len);
void jitr_confirm_stop(struct jitr_service *s);

/* sqs.c: the SQS long-poll intake of this worker (docs/jitr.md "SQS intake"). start with no
 * queue URL configured does nothing; stop aborts a pending long poll (messages received but not
 * yet enqueued reappear after the queue's visibility timeout). */
int jitr_sqs_start(struct jitr_service *s, struct err *e) ATTR_WUR;
void jitr_sqs_stop(struct jitr_service *s);

/* reconcile.c */
int jitr_reconciler_start(struct jitr_service *s, struct err *e) ATTR_WUR;
void jitr_reconciler_stop(struct jitr_service *s);

#endif
