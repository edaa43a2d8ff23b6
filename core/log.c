#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/util.h"

enum log_level log_threshold = LOG_LVL_INFO;
static _Thread_local char log_reqid[64];

static const char *const log_names[] = { "error", "warn", "info", "debug" };

void log_set_level(enum log_level lvl)
{
    log_threshold = lvl;
}

int log_level_parse(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(log_names); i++) {
        if (strcmp(name, log_names[i]) == 0) {
            return (int)i;
        }
    }
    return -1;
}

void log_set_request_id(const char *id)
{
    if (id == NULL) {
        log_reqid[0] = '\0';
    } else {
        snprintf(log_reqid, sizeof(log_reqid), "%s", id);
    }
}

void log_emit(enum log_level lvl, const char *fmt, ...)
{
    struct buf msg = BUF_INIT, line = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vaddf(&msg, fmt, ap);
    va_end(ap);
    char ts[40];
    time_format_rfc3339_ms(ts, sizeof(ts));
    buf_addf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"pid\":%ld,", ts, log_names[lvl],
             (long)getpid());
    if (log_reqid[0]) {
        buf_addstr(&line, "\"req\":");
        json_quote(&line, log_reqid, strlen(log_reqid));
        buf_addch(&line, ',');
    }
    buf_addstr(&line, "\"msg\":");
    json_quote(&line, buf_cstr(&msg), msg.len);
    buf_addstr(&line, "}\n");
    /* one write per line so lines from several processes do not interleave */
    ssize_t ATTR_UNUSED n = write(STDERR_FILENO, line.data, line.len);
    buf_release(&msg);
    buf_release(&line);
}
