/*
 * What a running JITR service reads from files, off its loop (jitr_int.h): a loader thread
 * (core/workq.h) reads the CA table every CA_REFRESH_MS (so a CA registered after start is
 * accepted), and on SIGHUP the configuration file, the template, the profiles and the intake
 * secrets; the results are swapped in on the loop. The template and profiles are a generation
 * (struct jitr_gen) that a flow keeps for its run; the CA table is swapped under every
 * generation. The templates register jobs carry (jitrctl aws register-batch --template) are
 * read from Redis and parsed by the same thread, and kept by their SHA-256.
 */
#include <event2/event.h>
#include <string.h>

#include "ca/profile.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "core/workq.h"
#include "jitr/jitr_int.h"
#include "store/store.h"

#define CA_REFRESH_MS 10000

/* ---- generations, the CA table ------------------------------------------------------------ */

struct jitr_gen *jitr_gen_ref(struct jitr_gen *g)
{
    g->refs++;
    return g;
}

void jitr_gen_unref(struct jitr_service *s, struct jitr_gen *g)
{
    if (g == NULL || --g->refs > 0) {
        return;
    }
    for (struct jitr_gen **p = &s->gens; *p != NULL; p = &(*p)->next) {
        if (*p == g) {
            *p = g->next;
            break;
        }
    }
    jitr_policy_release(&g->ps);
    jitr_template_free(g->tpl);
    ca_profiles_free(g->profiles);
    xfree(g);
}

/* Makes tpl and profiles (taken) the current generation: new flow runs use it, the runs in
 * flight keep theirs. */
void jitr_gen_install(struct jitr_service *s, struct jitr_template *tpl,
                      struct ca_profiles *profiles)
{
    struct jitr_gen *g = xcalloc(1, sizeof(*g));
    g->refs = 1;
    g->tpl = tpl;
    g->profiles = profiles;
    g->env = s->env;
    g->env.tpl = tpl;
    g->env.profiles = profiles;
    g->next = s->gens;
    s->gens = g;
    jitr_gen_unref(s, s->gen);
    s->gen = g;
}

/* Makes tab (a new reference) the service's table. Flows look the table up only inside one step
 * (EVALUATE keeps a copy of the CA's name), so it may change under flows in flight, whatever
 * their generation; the reconciler holds the table its round walks. */
void jitr_cas_swap(struct jitr_service *s, struct jitr_catab *tab)
{
    jitr_catab_unref(s->ctx.cas);
    s->ctx.cas = tab;
    s->env.cas = tab ? tab->cas : NULL;
    s->env.ncas = tab ? tab->n : 0;
    for (struct jitr_gen *g = s->gens; g != NULL; g = g->next) {
        g->env.cas = s->env.cas;
        g->env.ncas = s->env.ncas;
    }
}

/* ---- the loader: files read off the loop ------------------------------------------------- */

/* A CA table refresh, or (reload) SIGHUP's: the configuration file again, the template, the
 * profiles, the intake secrets, and the CA table. */
struct load_job {
    struct workq_job job;
    struct jitr_service *s;
    bool reload, secrets_wanted;
    char *config_path;
    const char *data_dir; /* the service's: never changes */
    /* results, set by the thread */
    struct err err;
    struct conf *conf;
    struct jitr_template *tpl;
    struct ca_profiles *profiles;
    struct jitr_secrets secrets;
    struct jitr_catab *cas;
    struct err cas_err;
    struct jitr_tplc *tplc; /* a register-batch template to parse (its text below), or NULL */
    char *tpl_text;
    size_t tpl_len;
};

static void tplc_parsed(struct jitr_service *s, struct load_job *j, bool ran);

/* A register-batch template: its bytes must hash to the name they were stored under (written
 * once by jitrctl; anything else is not the template the operator checked). Its PolicyDocuments
 * are named by their SHA-256: jitr.policy_name names jitrd's own template's policy only. */
static void parse_tpl(struct load_job *j, const char *sha)
{
    char got[65], origin[96];
    sha256_hex(j->tpl_text, j->tpl_len, got);
    if (strcmp(got, sha) != 0) {
        err_set(&j->err, ERRC_NOT_FOUND,
                "template %s in Redis (jitr:tpl:%.16s...) holds other bytes (SHA-256 %.16s...)",
                sha, sha, got);
        return;
    }
    snprintf(origin, sizeof(origin), "template %.64s", sha);
    j->tpl = jitr_template_parse(j->tpl_text, j->tpl_len, origin, NULL, &j->err);
    if (j->tpl == NULL && j->err.code != ERRC_OK) {
        j->err.code = ERRC_NOT_FOUND; /* it never parses: no retry helps */
    }
}

static void load_one(struct load_job *j)
{
    if (j->tplc != NULL) {
        parse_tpl(j, jitr_tplc_sha(j->tplc));
        return;
    }
    if (j->reload) {
        j->conf = conf_load(j->config_path, &j->err);
        if (j->conf != NULL && jitr_cfg_check(j->conf, &j->err) == 0 &&
            (j->tpl = jitr_template_load(j->conf->jitr.template, j->conf->jitr.policy_name,
                                         &j->err)) != NULL &&
            (j->profiles = ca_profiles_load_dir(j->conf->profiles_dir, &j->err)) != NULL &&
            j->secrets_wanted && jitr_secrets_load(&j->conf->jitr, &j->secrets, &j->err) != 0) {
            jitr_secrets_release(&j->secrets);
        }
    }
    j->cas = jitr_catab_load(j->data_dir, &j->cas_err);
}

static void loader_run(struct workq_job **v, size_t n, void *tls, void *arg)
{
    (void)tls;
    (void)arg;
    for (size_t i = 0; i < n; i++) {
        load_one((struct load_job *)(void *)v[i]);
    }
}

static void load_job_free(struct load_job *j)
{
    conf_free(j->conf);
    jitr_template_free(j->tpl);
    ca_profiles_free(j->profiles);
    jitr_secrets_release(&j->secrets);
    jitr_catab_unref(j->cas);
    xfree(j->config_path);
    xfree(j->tpl_text);
    xfree(j);
}

static void load_start(struct jitr_service *s, bool reload);

/* A string of the running jitr section replaced by the reloaded one's. */
static void cfg_set(char **slot, const char *v)
{
    xfree(*slot);
    *slot = xstrdup(v);
}

static void reload_done(struct jitr_service *s, struct load_job *j)
{
    s->reloading = false;
    if (j->err.code != ERRC_OK) {
        log_error("jitr: reload failed, keeping the running template, profiles and intake "
                  "secrets: %s", j->err.msg);
    } else {
        const struct conf_jitr *c = &j->conf->jitr;
        jitr_gen_install(s, j->tpl, j->profiles);
        j->tpl = NULL;
        j->profiles = NULL;
        if (j->secrets_wanted) {
            jitr_secrets_release(&s->secrets);
            s->secrets = j->secrets;
            memset(&j->secrets, 0, sizeof(j->secrets));
        }
        cfg_set(&s->cfg.template, c->template);
        cfg_set(&s->cfg.policy_name, c->policy_name);
        cfg_set(&s->cfg.secrets_file, c->secrets_file);
        cfg_set(&s->cfg.secrets_env, c->secrets_env);
        log_info("jitr: reloaded: template %s (%zu policies)%s", s->cfg.template,
                 jitr_template_npolicies(s->gen->tpl),
                 !j->secrets_wanted ? "" : s->secrets.n ? ", intake secrets" : ", no secret");
    }
    if (s->reload_again) {
        s->reload_again = false;
        load_start(s, true);
    }
}

/* On the loop: a load's results swapped in. */
static void load_done(struct workq_job *wj, bool ran)
{
    struct load_job *j = (struct load_job *)(void *)wj;
    struct jitr_service *s = j->s;
    if (j->tplc != NULL) {
        tplc_parsed(s, j, ran && !s->ctx.stopping);
        load_job_free(j);
        return;
    }
    if (!ran || s->ctx.stopping) {
        load_job_free(j);
        return;
    }
    if (j->cas != NULL) {
        jitr_cas_swap(s, j->cas);
        j->cas = NULL;
    } else {
        log_warn("jitr: CA store: %s", j->cas_err.msg);
    }
    if (j->reload) {
        reload_done(s, j);
    } else {
        s->cas_loading = false;
    }
    load_job_free(j);
}

static void load_start(struct jitr_service *s, bool reload)
{
    struct load_job *j = xcalloc(1, sizeof(*j));
    struct err e = ERR_INIT;
    j->job.done = load_done;
    j->s = s;
    j->reload = reload;
    j->secrets_wanted = reload && s->http != NULL;
    j->config_path = s->config_path ? xstrdup(s->config_path) : NULL;
    j->data_dir = s->data_dir;
    if (workq_submit(s->loader, &j->job, &e) != 0) {
        log_warn("jitr: %s", e.msg);
        load_job_free(j);
        return;
    }
    if (reload) {
        s->reloading = true;
    } else {
        s->cas_loading = true;
    }
}

static void on_ca_refresh(evutil_socket_t fd, short what, void *arg)
{
    struct jitr_service *s = arg;
    (void)fd;
    (void)what;
    /* a CA registered meanwhile is seen within CA_REFRESH_MS even under a load that never lets
     * the worker go idle; read off the loop (a directory, JSON, PEM, hashing) */
    if (!s->cas_loading && !s->reloading && !s->ctx.stopping) {
        load_start(s, false);
    }
}

void jitr_service_reload(struct jitr_service *s, const char *config_path)
{
    if (s == NULL || s->ctx.stopping) {
        return;
    }
    xfree(s->config_path);
    s->config_path = config_path ? xstrdup(config_path) : NULL;
    if (s->reloading) {
        s->reload_again = true; /* the file may have changed after it was read */
        return;
    }
    log_info("jitr: reloading the template, profiles, intake secrets and CA table");
    load_start(s, true);
}

int jitr_loader_start(struct jitr_service *s, struct err *e)
{
    struct workq_opts o = { 0 };
    struct timeval refresh = { CA_REFRESH_MS / 1000, 0 };
    o.threads = 1;
    o.cancel_on_free = true;
    o.take_max = 1;
    o.run = loader_run;
    o.name = "jitr loader";
    s->loader = workq_new(&o, e);
    if (s->loader == NULL) {
        return -1;
    }
    s->loader_wake = event_new(s->ctx.base, workq_fd(s->loader), EV_READ | EV_PERSIST,
                               workq_event_cb, s->loader);
    s->ca_refresh = event_new(s->ctx.base, -1, EV_PERSIST, on_ca_refresh, s);
    if (s->loader_wake == NULL || event_add(s->loader_wake, NULL) != 0 || s->ca_refresh == NULL ||
        event_add(s->ca_refresh, &refresh) != 0) {
        return err_set(e, ERRC_INTERNAL, "jitr: cannot create the loader's events");
    }
    return 0;
}

void jitr_loader_stop(struct jitr_service *s)
{
    if (s->ca_refresh) {
        event_free(s->ca_refresh);
        s->ca_refresh = NULL;
    }
    if (s->loader_wake) {
        event_free(s->loader_wake);
        s->loader_wake = NULL;
    }
    workq_free(s->loader); /* the load in progress completes, unused */
    s->loader = NULL;
}

/* ---- register-batch templates by SHA-256 ------------------------------------------------ */

struct jitr_tpl_wait {
    jitr_tpl_cb *cb;
    void *arg;
    struct jitr_tpl_wait *next;
};

struct jitr_tplc {
    struct jitr_service *s;
    char sha[65];
    struct jitr_template *tpl; /* NULL while loading */
    struct jitr_polset ps;     /* its policies' state in AWS (policy.c) */
    unsigned refs;             /* flows running with it (and tplc_answer while it answers) */
    bool loading;              /* the Redis GET or the parse is under way */
    struct jitr_tpl_wait *waiters;
    uint64_t used; /* when last handed out: the least recently used goes first */
    struct jitr_tplc *next;
};

static uint64_t tplc_clock;

const char *jitr_tplc_sha(const struct jitr_tplc *c)
{
    return c->sha;
}

bool jitr_tpl_sha_ok(const char *sha)
{
    size_t n = 0;
    for (; sha[n] != '\0'; n++) {
        if (!((sha[n] >= '0' && sha[n] <= '9') || (sha[n] >= 'a' && sha[n] <= 'f'))) {
            return false;
        }
    }
    return n == 64;
}

const struct jitr_template *jitr_tplc_template(const struct jitr_tplc *c)
{
    return c->tpl;
}

static void tplc_free(struct jitr_tplc *c)
{
    jitr_policy_release(&c->ps);
    jitr_template_free(c->tpl);
    xfree(c);
}

static void tplc_unlink(struct jitr_service *s, struct jitr_tplc *c)
{
    for (struct jitr_tplc **p = &s->tplc; *p != NULL; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            return;
        }
    }
}

/* Above JITR_TPLC_MAX entries, the least recently used ones no flow uses go. */
static void tplc_trim(struct jitr_service *s)
{
    for (;;) {
        size_t n = 0;
        struct jitr_tplc *old = NULL;
        for (struct jitr_tplc *c = s->tplc; c != NULL; c = c->next) {
            n++;
            if (c->refs == 0 && !c->loading && (old == NULL || c->used < old->used)) {
                old = c;
            }
        }
        if (n <= JITR_TPLC_MAX || old == NULL) {
            return;
        }
        tplc_unlink(s, old);
        tplc_free(old);
    }
}

/* Every waiter answered: with the template (a reference each) or with e. A failed entry goes
 * (a later flow asks Redis again: a rebuild may have restored the template meanwhile). */
static void tplc_answer(struct jitr_service *s, struct jitr_tplc *c, const struct err *e)
{
    struct jitr_tpl_wait *w = c->waiters;
    c->waiters = NULL;
    c->loading = false;
    if (e != NULL) {
        tplc_unlink(s, c);
    }
    c->refs++; /* held while the callbacks run: a flow may end (and unref) at once */
    while (w != NULL) {
        struct jitr_tpl_wait *next = w->next;
        if (e == NULL) {
            c->refs++;
            c->used = ++tplc_clock;
        }
        w->cb(w->arg, e == NULL ? c : NULL, e);
        xfree(w);
        w = next;
    }
    if (e != NULL) {
        tplc_free(c); /* nobody took a reference */
        return;
    }
    jitr_tpl_unref(s, c);
}

static void tplc_parsed(struct jitr_service *s, struct load_job *j, bool ran)
{
    struct jitr_tplc *c = j->tplc;
    struct err e = ERR_INIT;
    if (!ran) {
        err_set(&e, ERRC_CANCELED, "jitr: stopping");
        tplc_answer(s, c, &e);
        return;
    }
    if (j->tpl == NULL) {
        log_error("jitr: %s", j->err.msg);
        tplc_answer(s, c, &j->err);
        return;
    }
    c->tpl = j->tpl;
    j->tpl = NULL;
    log_info("jitr: register-batch template %.16s... loaded (%zu policies)", c->sha,
             jitr_template_npolicies(c->tpl));
    tplc_answer(s, c, NULL);
}

static void on_tpl_read(void *arg, const struct store_reply *r, const struct err *e)
{
    struct jitr_tplc *c = arg;
    struct jitr_service *s = c->s;
    struct err fe = ERR_INIT;
    struct load_job *j;
    if (e != NULL) {
        tplc_answer(s, c, e);
        return;
    }
    if (r->type != STORE_REPLY_STRING || r->len == 0) {
        err_set(&fe, ERRC_NOT_FOUND,
                "template %s is not in Redis (jitr:tpl:): not provisioned with another; "
                "jitrctl aws register-batch --template writes it again",
                c->sha);
        log_error("jitr: %s", fe.msg);
        tplc_answer(s, c, &fe);
        return;
    }
    if (s->ctx.stopping || s->loader == NULL) {
        err_set(&fe, ERRC_CANCELED, "jitr: stopping");
        tplc_answer(s, c, &fe);
        return;
    }
    j = xcalloc(1, sizeof(*j));
    j->job.done = load_done;
    j->s = s;
    j->tplc = c;
    j->tpl_text = xstrndup(r->str, r->len);
    j->tpl_len = r->len;
    if (workq_submit(s->loader, &j->job, &fe) != 0) {
        load_job_free(j);
        tplc_answer(s, c, &fe);
    }
}

int jitr_tpl_get(struct jitr_service *s, const char *sha, jitr_tpl_cb *cb, void *arg,
                 struct jitr_tplc **out, struct jitr_tpl_wait **wait, struct err *e)
{
    struct jitr_tplc *c = s->tplc;
    struct jitr_tpl_wait *w;
    *out = NULL;
    *wait = NULL;
    while (c != NULL && strcmp(c->sha, sha) != 0) {
        c = c->next;
    }
    if (c != NULL && !c->loading) {
        c->refs++;
        c->used = ++tplc_clock;
        *out = c;
        return 0;
    }
    if (c == NULL) {
        char key[200];
        if (s->ctx.stopping || s->loader == NULL) {
            return err_set(e, ERRC_CANCELED, "jitr: stopping");
        }
        c = xcalloc(1, sizeof(*c));
        c->s = s;
        snprintf(c->sha, sizeof(c->sha), "%s", sha);
        c->loading = true;
        snprintf(key, sizeof(key), STORE_PREFIX "jitr:tpl:%s", c->sha);
        const char *av[] = { "GET", key };
        int rc =
            store_async_cmd(s->ctx.rs, 2, av, NULL, (int)s->redis_timeout_ms, on_tpl_read, c, e);
        if (rc != 0) {
            xfree(c);
            return -1;
        }
        c->next = s->tplc;
        s->tplc = c;
    }
    w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    w->next = c->waiters;
    c->waiters = w;
    *wait = w;
    return 1;
}

void jitr_tpl_cancel(struct jitr_service *s, struct jitr_tpl_wait *w)
{
    for (struct jitr_tplc *c = s->tplc; c != NULL; c = c->next) {
        for (struct jitr_tpl_wait **p = &c->waiters; *p != NULL; p = &(*p)->next) {
            if (*p == w) {
                *p = w->next;
                xfree(w);
                return;
            }
        }
    }
    BUG_ON(true);
}

void jitr_tpl_unref(struct jitr_service *s, struct jitr_tplc *c)
{
    if (c == NULL) {
        return;
    }
    BUG_ON(c->refs == 0);
    c->refs--;
    tplc_trim(s);
}

struct jitr_polset *jitr_polset_of(struct jitr_service *s, const struct jitr_template *t)
{
    for (struct jitr_gen *g = s->gens; g != NULL; g = g->next) {
        if (g->tpl == t) {
            return &g->ps;
        }
    }
    for (struct jitr_tplc *c = s->tplc; c != NULL; c = c->next) {
        if (c->tpl == t && t != NULL) {
            return &c->ps;
        }
    }
    return NULL;
}

void jitr_tpl_release_all(struct jitr_service *s)
{
    for (struct jitr_tplc *c = s->tplc; c != NULL; c = c->next) {
        jitr_policy_release(&c->ps);
    }
}

void jitr_tpl_free_all(struct jitr_service *s)
{
    while (s->tplc != NULL) {
        struct jitr_tplc *c = s->tplc;
        BUG_ON(c->refs != 0 || c->waiters != NULL);
        s->tplc = c->next;
        tplc_free(c);
    }
}
