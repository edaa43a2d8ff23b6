/*
 * Replies built in a signing thread (daemon/job.h): JSON bodies and errors, what a client may
 * learn of an audit log failure, and the audit records of refused requests.
 */
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/job.h"

void job_json(struct job *j, int status, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(v);
    j->status = status;
    snprintf(j->ctype, sizeof(j->ctype), "application/json");
    buf_reset(&j->body);
    if (s == NULL) {
        j->status = 500;
        buf_addstr(&j->body, "{\"error\":{\"code\":\"internal\",\"message\":\"cannot encode\"}}");
    } else {
        buf_addstr(&j->body, s);
    }
    buf_addch(&j->body, '\n');
    xfree(s);
}

static json_t *error_obj(const struct err *e)
{
    enum err_code c = e->code == ERRC_OK ? ERRC_INTERNAL : e->code;
    json_t *v = json_pack("{s:s,s:s}", "code", err_code_name(c), "message", e->msg);
    return v ? v : json_pack("{s:s,s:s}", "code", err_code_name(c), "message", "(unprintable)");
}

/* Seconds a client should wait before retrying a request refused with 503 (a dependency is down
 * or the index is being rebuilt): the Retry-After of every 503 of a job. */
#define UNAVAILABLE_RETRY_AFTER "2"

static const char *const audit_problem_names[] = {
    [AUDIT_OK] = "intact",           [AUDIT_EDITED] = "edited",
    [AUDIT_REMOVED] = "removed",     [AUDIT_REORDERED] = "reordered",
    [AUDIT_TRUNCATED] = "truncated", [AUDIT_MALFORMED] = "malformed",
};

int audit_damaged_err(struct err *e, bool any_part)
{
    enum audit_problem p;
    uint64_t line;
    bool walk;
    if (!metrics_audit_damaged(&p, &line, &walk) || (!walk && !any_part)) {
        return 0;
    }
    return err_set(e, ERRC_UNAVAILABLE,
                   "the audit log is damaged (line %llu: %s): signing is suspended until an "
                   "operator repairs it",
                   (unsigned long long)line,
                   (unsigned)p < ARRAY_LEN(audit_problem_names) ? audit_problem_names[p] : "?");
}

/* jitrd's log has the whole message: audit.c wrote it there. */
void audit_err_for_client(const struct snap *s, struct err *e)
{
    if (strstr(e->msg, conf_audit_path(s->conf)) == NULL) {
        return;
    }
    bool damaged = e->code == ERRC_INTERNAL;
    err_clear(e);
    err_set(e, ERRC_UNAVAILABLE, "%s",
            damaged ? "the audit log is damaged: signing is suspended until an operator repairs "
                      "it; nothing was issued"
                    : "the audit log cannot be written (disk full or I/O error); nothing was "
                      "issued");
}

void job_error(struct job *j, const struct err *orig)
{
    struct err safe = *orig, *e = &safe;
    audit_err_for_client(j->snap, e);
    enum err_code c = e->code == ERRC_OK ? ERRC_INTERNAL : e->code;
    if (c == ERRC_UNAVAILABLE && !j->retry_after[0]) {
        snprintf(j->retry_after, sizeof(j->retry_after), "%s", UNAVAILABLE_RETRY_AFTER);
    }
    if (store_err_index_incomplete(e)) {
        metrics_index_complete(0); /* before the next check of daemon/heal.c */
    }
    job_json(j, err_http_status(c), json_pack("{s:o}", "error", error_obj(e)));
}

void audit_deny(const struct job *j, const char *route, const struct err *why)
{
    const struct snap *s = j->snap;
    struct audit_log *log = NULL;
    for (size_t i = 0; i < s->ncas && log == NULL; i++) {
        log = s->cas[i].ctx ? s->cas[i].ctx->audit : NULL;
    }
    if (log == NULL) {
        log_warn("refusal not audited (no CA audit log open): %s", why->msg);
        return;
    }
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "type", "deny", "requester", j->requester,
                            "route", route, "request_id", j->request_id, "code",
                            err_code_name(why->code), "reason", why->msg);
    struct err e = ERR_INIT;
    if (rec == NULL || audit_append(log, &rec, 1, NULL, &e) != 0) {
        log_error("cannot audit a refusal: %s", e.msg[0] ? e.msg : "cannot encode");
    }
    json_decref(rec);
}
