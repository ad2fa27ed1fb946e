/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "macro.h"

static pthread_mutex_t clock_lock = PTHREAD_MUTEX_INITIALIZER;
static char *test_path;
static struct timespec test_mtime;
static ino_t test_ino;
static int64_t test_now;

/* The time in the file: decimal Unix seconds, optionally followed by a newline. */
static int read_time(const char *path, int64_t *ret)
{
        char buf[64] = "", *end;
        FILE *f = fopen(path, "re");
        long long v;

        if (!f)
                return -errno;
        if (!fgets(buf, sizeof(buf), f)) {
                fclose(f);
                return -EINVAL;
        }
        fclose(f);
        errno = 0;
        v = strtoll(buf, &end, 10);
        if (errno != 0 || end == buf || (*end != '\0' && *end != '\n') || v < 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

int clock_use_file(const char *path)
{
        struct stat st;
        int64_t t;
        int r;

        if (!path)
                return 0;
        r = read_time(path, &t);
        if (r < 0)
                return log_error_errno(r, "--test-clock %s: not a file holding Unix seconds: %m", path);
        if (stat(path, &st) < 0)
                return log_error_errno(errno, "--test-clock %s: %m", path);
        pthread_mutex_lock(&clock_lock);
        free(test_path);
        test_path = strdup(path);
        test_mtime = st.st_mtim;
        test_ino = st.st_ino;
        test_now = t;
        pthread_mutex_unlock(&clock_lock);
        if (!test_path)
                return log_oom();
        log_warning("Using the test clock in %s (now %" PRId64 "): for tests only.", path, t);
        return 0;
}

bool clock_is_test(void)
{
        bool r;

        pthread_mutex_lock(&clock_lock);
        r = test_path != NULL;
        pthread_mutex_unlock(&clock_lock);
        return r;
}

int64_t clock_now(void)
{
        struct stat st;
        int64_t t;

        /* The common case reads nothing but the real clock. */
        if (!__atomic_load_n(&test_path, __ATOMIC_ACQUIRE))
                return (int64_t) time(NULL);

        pthread_mutex_lock(&clock_lock);
        /* Tests write the file elsewhere and rename it into place: a new inode, or at least a new mtime. */
        if (stat(test_path, &st) == 0 &&
            (st.st_ino != test_ino || st.st_mtim.tv_sec != test_mtime.tv_sec ||
             st.st_mtim.tv_nsec != test_mtime.tv_nsec) &&
            read_time(test_path, &t) == 0) {
                test_now = t;
                test_mtime = st.st_mtim;
                test_ino = st.st_ino;
        }
        t = test_now;
        pthread_mutex_unlock(&clock_lock);
        return t;
}
