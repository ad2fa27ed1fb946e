/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static const char *log_ident = "kyso";
static int log_max_level = LOG_INFO;
static bool log_prefix_priority = false;

void log_setup(const char *ident, int max_level)
{
        const char *e;

        log_ident = ident;
        log_max_level = max_level;
        /* systemd sets JOURNAL_STREAM when stderr is connected to the journal. */
        log_prefix_priority = getenv("JOURNAL_STREAM") != NULL;
        e = getenv("KYSO_LOG_LEVEL");
        if (e) {
                if (streq(e, "debug"))
                        log_max_level = LOG_DEBUG;
                else if (streq(e, "info"))
                        log_max_level = LOG_INFO;
                else if (streq(e, "notice"))
                        log_max_level = LOG_NOTICE;
                else if (streq(e, "warning"))
                        log_max_level = LOG_WARNING;
                else if (streq(e, "err") || streq(e, "error"))
                        log_max_level = LOG_ERR;
        }
}

void log_set_max_level(int level)
{
        log_max_level = level;
}

int log_get_max_level(void)
{
        return log_max_level;
}

static const char *level_name(int level)
{
        switch (level) {
        case LOG_EMERG:
        case LOG_ALERT:
        case LOG_CRIT:
        case LOG_ERR:
                return "error";
        case LOG_WARNING:
                return "warning";
        case LOG_NOTICE:
                return "notice";
        case LOG_INFO:
                return "info";
        default:
                return "debug";
        }
}

int log_internalv(int level, int error, const char *file, int line, const char *func, const char *format,
                  va_list ap)
{
        char msg[2048];
        int saved_errno = errno;

        error = abs(error);
        /* %m in the format refers to the error we were given, not to whatever errno is now. */
        errno = error;
        vsnprintf(msg, sizeof(msg), format, ap);
        errno = saved_errno;

        if (log_prefix_priority)
                fprintf(stderr, "<%d>%s\n", level, msg);
        else if (log_max_level >= LOG_DEBUG)
                fprintf(stderr, "%s: %s: %s (%s:%d %s)\n", log_ident, level_name(level), msg, file, line, func);
        else
                fprintf(stderr, "%s: %s: %s\n", log_ident, level_name(level), msg);

        return -error;
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...)
{
        va_list ap;
        int r;

        va_start(ap, format);
        r = log_internalv(level, error, file, line, func, format, ap);
        va_end(ap);
        return r;
}
