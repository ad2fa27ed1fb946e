/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the store's source files share and nothing else sees: the Store
 * itself and the helpers that run SQL (daemon/store.c defines them). The
 * audit log lives in daemon/store-audit.c only to keep each file readable;
 * it is still the store, and these helpers are the only way either file
 * talks to SQLite: prepared statements with bound parameters, errors logged
 * once where they happen and passed up as -errno.
 */
#pragma once

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "store.h"

struct Store {
        sqlite3 *db;

        /*
         * The audit log's spool and in-memory head (store-audit.c). audit_lock guards the fields after it:
         * store_audit_append() takes only that lock, so appends go on while the Store's caller runs
         * anything else, a flush's SQL included.
         */
        char *spool_path;     /* kyso.db-audit: appends go here */
        char *pending_path;   /* kyso.db-audit.1: what a flush took from the spool, until it is in the table */
        int lock_fd;          /* kyso.db-audit.lock, flock()ed while the Store is open */
        pthread_mutex_t audit_lock;
        int spool_fd;         /* -1 when it could not be opened: spool_errno says why */
        int spool_errno;
        bool spool_torn;      /* a failed write left part of a record: cut it before the next */
        uint64_t spool_size;  /* bytes in the spool */
        int64_t spool_bad_id; /* the spool is damaged from this record on (0: it is not) */
        char spool_reason[160];
        bool audit_ready;     /* the head below was read and is sound */
        bool head_damaged;    /* the table's head was found damaged: not read again */
        int64_t audit_next_id;
        uint8_t audit_prev[32];
};

/* Opens the spool beside the database at db_path, and moves what it holds into the table; only a failure to
 * allocate is an error (a spool that cannot be written refuses appends). */
int store_audit_spool_open(Store *s, const char *db_path);
/* Flushes and closes the spool. */
void store_audit_spool_close(Store *s);

DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3_stmt *, sqlite3_finalize);

/* Logs SQLite's message for what failed and returns the errno for rc. */
int sql_error(sqlite3 *db, int rc, const char *what);
int sql_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **ret);
int sql_exec(sqlite3 *db, const char *sql, const char *what);
/* Runs a statement that returns no rows; rc is what its binds left. */
int sql_step_done(sqlite3 *db, sqlite3_stmt *st, int rc, const char *what);

/* Binds keep the first failure in *rc, so a statement's binds are checked once. Strings are bound
 * SQLITE_STATIC: the statement must be finalized before the strings go. NULL binds SQL NULL. */
void bind_text_n(sqlite3_stmt *st, int i, const char *s, size_t n, int *rc);
void bind_text(sqlite3_stmt *st, int i, const char *s, int *rc);
/* A token string without the blanks PKCS#11 pads it with; NULL binds "". */
void bind_trimmed(sqlite3_stmt *st, int i, const char *s, int *rc);
void bind_int64(sqlite3_stmt *st, int i, int64_t v, int *rc);
/* s (NULL: "") without leading and trailing blanks: the returned pointer is into s, *ret_n its length. */
const char *trim_blanks(const char *s, size_t *ret_n);

/* BEGIN IMMEDIATE: the write lock at once. */
int tx_begin(sqlite3 *db);
int tx_commit(sqlite3 *db);
/* For _cleanup_: rolls back if a transaction is still open (a no-op after COMMIT). */
void tx_rollbackp(sqlite3 **db);

/* A copy of column i, NULL for SQL NULL. */
int column_text(sqlite3_stmt *st, int i, char **ret);

/* How to turn a row into an element of an array of some struct. */
typedef struct RowType {
        size_t size;
        int (*from_row)(sqlite3_stmt *st, void *ret);
        void (*done)(void *p);
} RowType;

/* Steps st to the end, every row into a new array; on failure nothing is returned. */
int query_collect(sqlite3 *db, sqlite3_stmt *st, const RowType *t, void **ret, size_t *ret_n);

#define DEFINE_ARRAY_FREE(name, type, done)                                                               \
        void name(type *a, size_t n)                                                                       \
        {                                                                                                  \
                for (size_t i = 0; a && i < n; i++)                                                        \
                        done(&a[i]);                                                                       \
                free(a);                                                                                   \
        }

static inline bool isempty(const char *s)
{
        return !s || !*s;
}

static inline bool isblank_str(const char *s)
{
        return !s || s[strspn(s, " ")] == '\0';
}
