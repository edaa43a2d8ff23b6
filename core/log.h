/*
 * The operational log: one JSON object per line on stderr, {"ts","level","msg"} plus the request
 * id when one is set. The level is checked before formatting. This is not the audit log (audit/).
 */
#ifndef CORE_LOG_H
#define CORE_LOG_H

#include "core/compat.h"

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

extern enum log_level log_threshold;

void log_set_level(enum log_level lvl);
/* "error", "warn", "info", "debug"; -1 when unknown */
int log_level_parse(const char *name);
/* The request id put on every line of this thread until cleared (NULL clears). */
void log_set_request_id(const char *id);
void log_emit(enum log_level lvl, const char *fmt, ...) ATTR_PRINTF(2, 3);

#define log_at(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) <= log_threshold) {                                                              \
            log_emit((lvl), __VA_ARGS__);                                                          \
        }                                                                                          \
    } while (0)
#define log_error(...) log_at(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_at(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_at(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
