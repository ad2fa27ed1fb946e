/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the store tests (test-store*.c) share: a temporary directory per run with a fresh database path
 * per test, a custody record, and direct SQLite access to read, change and check a file behind the
 * store's back.
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "log.h"
#include "macro.h"
#include "store.h"

static char tmpdir[PATH_MAX];

/* A fresh database path in the test's directory, so tests do not see each other's data. */
static inline const char *db_path(const char *name)
{
        static char path[PATH_MAX];

        assert_true(snprintf(path, sizeof(path), "%s/%s.db", tmpdir, name) < (int) sizeof(path));
        return path;
}

static inline CustodyRecord record(const char *serial, const char *holder, const char *decision_ref)
{
        return (CustodyRecord) {
                .serial = (char *) serial,
                .kind = CUSTODY_KIND_PERSONAL,
                .holder = (char *) holder,
                .decision_ref = (char *) decision_ref,
                .decision_date = (char *) "2024-03-15",
                .valid_from = 1700000000,
                .state = CUSTODY_STATE_ACTIVE,
        };
}

static inline size_t history_count(Store *s, const char *serial)
{
        CustodyRecord *h = NULL;
        size_t n = 0;

        assert_int_equal(store_custody_history(s, serial, &h, &n), 0);
        custody_records_free(h, n);
        return n;
}

/* Runs one statement that returns a single integer or text, on a connection of the test's own. */
static inline int64_t raw_int(const char *path, const char *sql)
{
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int64_t v;

        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static inline void raw_exec(const char *path, const char *sql)
{
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The text of PRAGMA integrity_check, "ok" for a sound file; the caller frees it. */
static inline char *integrity_check(const char *path)
{
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        char *result;

        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        /* A torn file may fail before the check runs: that is its answer too. */
        if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_ROW)
                result = strdup(sqlite3_errmsg(db));
        else
                result = strdup((const char *) sqlite3_column_text(st, 0));
        assert_non_null(result);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return result;
}

static inline void *read_file(const char *path, size_t *ret_size)
{
        FILE *f = fopen(path, "re");
        struct stat st;
        void *p;

        assert_non_null(f);
        assert_int_equal(fstat(fileno(f), &st), 0);
        p = malloc((size_t) st.st_size + 1);
        assert_non_null(p);
        assert_int_equal(fread(p, 1, (size_t) st.st_size, f), (size_t) st.st_size);
        fclose(f);
        *ret_size = (size_t) st.st_size;
        return p;
}

static inline int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path);
}

static inline int setup(void **state)
{
        const char *base = getenv("TMPDIR");

        /* Quiet: failures the tests provoke on purpose would fill the log. KYSO_LOG_LEVEL overrides. */
        log_setup("test-store", LOG_CRIT);
        /* Not /tmp, which is often tmpfs, where fsync means nothing. */
        snprintf(tmpdir, sizeof(tmpdir), "%s/test-store.XXXXXX", base ?: "/var/tmp");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static inline int teardown(void **state)
{
        return nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
