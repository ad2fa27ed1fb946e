/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Logging. The daemon logs to stderr, which systemd hands to the journal:
 * when JOURNAL_STREAM says so, lines carry the "<N>" syslog priority prefix
 * the journal understands; otherwise they read "kysod: error: ...". The
 * module logs only when KYSO_DEBUG is set, because it lives inside other
 * people's programs. Helpers do not log; the boundary that decides what to
 * do about an error logs it once.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

#include "macro.h"

void log_setup(const char *ident, int max_level);
void log_set_max_level(int level);
int log_get_max_level(void);

/* Returns -abs(error) so callers can "return log_error_errno(r, ...)"; %m prints strerror(error). */
int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...)
        _printf_(6, 7);
int log_internalv(int level, int error, const char *file, int line, const char *func, const char *format,
                  va_list ap) _printf_(6, 0);

#define log_full_errno(level, error, ...)                                                                  \
        ({                                                                                                 \
                int _l_ = (level), _e_ = (error);                                                          \
                _l_ <= log_get_max_level() ? log_internal(_l_, _e_, __FILE__, __LINE__, __func__, __VA_ARGS__) \
                                           : -abs(_e_);                                                    \
        })

#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)
#define log_oom() log_error_errno(ENOMEM, "Out of memory.")
