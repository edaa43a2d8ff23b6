/*
 * What a running JITR service reads from files, off its loop (jitr_int.h): a loader thread
 * (core/workq.h) reads the CA table every CA_REFRESH_MS (so a CA registered after start is
 * accepted), and on SIGHUP the configuration file, the template, the profiles and the intake
 * secrets; the results are swapped in on the loop. The template and profiles are a generation
 * (struct jitr_gen) that a flow keeps for its run; the CA table is swapped under every
 * generation.
 */
#include <event2/event.h>
#include <string.h>

#include "ca/profile.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/workq.h"
#include "jitr/jitr_int.h"

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
    jitr_policy_release(g);
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
};

static void load_one(struct load_job *j)
{
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
