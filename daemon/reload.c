/*
 * SIGHUP, and the retries of a degraded snapshot: a new snapshot is built in a signing thread
 * (snap_build reads the configuration, stations, CAs and TLS files) and swapped in on the loop;
 * requests in flight keep the snapshot they started with. A failed build keeps the running one.
 * A reload asked for while one runs is run once more after it.
 */
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "daemon/job.h"

static void reload_run(struct job *j, struct tstate *ts)
{
    (void)ts;
    j->new_snap = snap_build(j->api->config_path, j->api->gen + 1, &j->err);
}

/* On the loop: swaps the new snapshot in, or logs why it failed and keeps the current one. */
static void reload_done(struct job *j)
{
    struct api *a = j->api;
    struct snap *fresh = j->new_snap;
    j->new_snap = NULL; /* a's now, or NULL */
    a->reloading = false;
    a->last_reload_ms = time_now_ms();
    if (fresh == NULL) {
        log_error("reload failed, keeping the running configuration: %s", j->err.msg);
    } else {
        if (fresh->al->gen >= a->al->gen) {
            api_aliases_switch(a, aliases_ref(fresh->al));
        }
        snap_audit_totals(a->snap, &a->audit_base);
        snap_unref(a->snap);
        a->snap = fresh;
        a->gen = fresh->gen;
        log_set_level((enum log_level)log_level_parse(fresh->conf->log_level));
        log_info("configuration reloaded (generation %llu, %zu stations, %zu CAs%s)",
                 (unsigned long long)fresh->gen, stations_count(fresh->stations), fresh->ncas,
                 fresh->degraded ? ", degraded" : "");
    }
    if (a->reload_again) {
        a->reload_again = false;
        api_reload_start(a);
    }
}

void api_reload_start(struct api *a)
{
    if (a->reloading) {
        a->reload_again = true;
        return;
    }
    a->reloading = true;
    struct job *j = job_new(a, NULL, J_RELOAD, reload_run);
    j->finish = reload_done;
    job_submit(a, j);
}
