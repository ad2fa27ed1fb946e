/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "store-internal.h"
#include "store.h"

/*
 * Migration i takes the schema from version i to i + 1 and sets user_version
 * itself: PRAGMA takes no bound parameters, and a literal keeps every byte of
 * SQL here constant. store_open() checks the result, so a migration that
 * forgets it cannot commit. A released entry is never edited; add one.
 */
static const char *const migrations[] = {
        /* 1: tokens, custody records, handovers. AUTOINCREMENT so that an id is never reused: the
         * current record is the one with the highest id. */
        "CREATE TABLE tokens (\n"
        "        serial TEXT PRIMARY KEY NOT NULL,\n"
        "        manufacturer TEXT NOT NULL,\n"
        "        model TEXT NOT NULL,\n"
        "        label TEXT NOT NULL,\n"
        "        first_seen INTEGER NOT NULL,\n"
        "        last_seen INTEGER NOT NULL\n"
        ");\n"
        "CREATE TABLE custody (\n"
        "        id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "        serial TEXT NOT NULL CHECK (serial <> ''),\n"
        "        kind TEXT NOT NULL CHECK (kind IN ('organization', 'personal', 'device')),\n"
        "        holder TEXT NOT NULL CHECK (holder <> ''),\n"
        "        organization TEXT,\n"
        "        decision_ref TEXT NOT NULL,\n"
        "        decision_date TEXT NOT NULL,\n"
        "        decision_signer TEXT,\n"
        "        valid_from INTEGER NOT NULL,\n"
        "        valid_until INTEGER NOT NULL,\n"
        "        state TEXT NOT NULL CHECK (state IN ('active', 'lost', 'revoked', 'returned', 'locked')),\n"
        "        state_reason TEXT,\n"
        "        pin_change_required INTEGER NOT NULL CHECK (pin_change_required IN (0, 1)),\n"
        "        created_at INTEGER NOT NULL,\n"
        "        created_by TEXT NOT NULL,\n"
        "        updated_at INTEGER NOT NULL,\n"
        "        updated_by TEXT NOT NULL\n"
        ");\n"
        "CREATE INDEX custody_serial_id ON custody (serial, id);\n"
        "CREATE TABLE handovers (\n"
        "        id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "        serial TEXT NOT NULL,\n"
        "        from_holder TEXT NOT NULL,\n"
        "        to_holder TEXT NOT NULL,\n"
        "        minutes_ref TEXT NOT NULL,\n"
        "        at INTEGER NOT NULL,\n"
        "        recorded_by TEXT NOT NULL\n"
        ");\n"
        "CREATE INDEX handovers_serial ON handovers (serial);\n"
        "PRAGMA user_version = 1;\n",

        /* 2: PIN changes, certificates seen on tokens, the audit log (store-audit.c). The audit ids are
         * not AUTOINCREMENT: the store assigns the head's last_id + 1, so that ids are consecutive and a
         * gap is a deleted record. audit_head has at most one row (k = 1). */
        "CREATE TABLE pin_changes (\n"
        "        id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "        serial TEXT NOT NULL CHECK (serial <> ''),\n"
        "        at INTEGER NOT NULL,\n"
        "        uid INTEGER NOT NULL,\n"
        "        how TEXT NOT NULL\n"
        ");\n"
        "CREATE INDEX pin_changes_serial_at ON pin_changes (serial, at);\n"
        "CREATE TABLE certificates (\n"
        "        serial TEXT NOT NULL CHECK (serial <> ''),\n"
        "        key_id TEXT NOT NULL,\n"
        "        label TEXT NOT NULL,\n"
        "        subject TEXT NOT NULL,\n"
        "        issuer TEXT NOT NULL,\n"
        "        not_before INTEGER NOT NULL,\n"
        "        not_after INTEGER NOT NULL\n"
        ");\n"
        "CREATE INDEX certificates_serial ON certificates (serial);\n"
        "CREATE TABLE audit (\n"
        "        id INTEGER PRIMARY KEY,\n"
        "        at INTEGER NOT NULL,\n"
        "        event TEXT NOT NULL,\n"
        "        uid INTEGER NOT NULL,\n"
        "        pid INTEGER NOT NULL,\n"
        "        exe TEXT NOT NULL,\n"
        "        serial TEXT NOT NULL,\n"
        "        key_id TEXT NOT NULL,\n"
        "        key_label TEXT NOT NULL,\n"
        "        mechanism TEXT NOT NULL,\n"
        "        result TEXT NOT NULL,\n"
        "        detail TEXT NOT NULL,\n"
        "        prev_hash BLOB NOT NULL,\n"
        "        hash BLOB NOT NULL\n"
        ");\n"
        "CREATE INDEX audit_serial_at ON audit (serial, at);\n"
        "CREATE INDEX audit_uid_at ON audit (uid, at);\n"
        "CREATE INDEX audit_at ON audit (at);\n"
        "CREATE TABLE audit_head (\n"
        "        k INTEGER PRIMARY KEY CHECK (k = 1),\n"
        "        last_id INTEGER NOT NULL,\n"
        "        last_hash BLOB NOT NULL\n"
        ");\n"
        "PRAGMA user_version = 2;\n",
};

/* The schema's CHECK constraints list the same strings. */
static const char *const custody_kind_table[_CUSTODY_KIND_MAX] = {
        [CUSTODY_KIND_ORGANIZATION] = "organization",
        [CUSTODY_KIND_PERSONAL] = "personal",
        [CUSTODY_KIND_DEVICE] = "device",
};

static const char *const custody_state_table[_CUSTODY_STATE_MAX] = {
        [CUSTODY_STATE_ACTIVE] = "active",
        [CUSTODY_STATE_LOST] = "lost",
        [CUSTODY_STATE_REVOKED] = "revoked",
        [CUSTODY_STATE_RETURNED] = "returned",
        [CUSTODY_STATE_LOCKED] = "locked",
};

const char *custody_kind_to_string(CustodyKind k)
{
        return k >= 0 && k < _CUSTODY_KIND_MAX ? custody_kind_table[k] : NULL;
}

CustodyKind custody_kind_from_string(const char *s)
{
        for (int i = 0; s && i < _CUSTODY_KIND_MAX; i++)
                if (streq(s, custody_kind_table[i]))
                        return (CustodyKind) i;
        return _CUSTODY_KIND_INVALID;
}

const char *custody_state_to_string(CustodyState s)
{
        return s >= 0 && s < _CUSTODY_STATE_MAX ? custody_state_table[s] : NULL;
}

CustodyState custody_state_from_string(const char *s)
{
        for (int i = 0; s && i < _CUSTODY_STATE_MAX; i++)
                if (streq(s, custody_state_table[i]))
                        return (CustodyState) i;
        return _CUSTODY_STATE_INVALID;
}

int store_schema_version(void)
{
        return (int) ELEMENTSOF(migrations);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3 *, sqlite3_close);

/* The one place SQLite's result codes become errno values. */
static int errno_from_sqlite(int rc)
{
        switch (rc & 0xff) {
        case SQLITE_READONLY:
        case SQLITE_CANTOPEN:
                return -EROFS;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

/* Called where the failure happened, while sqlite3_errmsg() still describes it; the callers only pass the
 * error up. */
int sql_error(sqlite3 *db, int rc, const char *what)
{
        const char *path = sqlite3_db_filename(db, "main");

        log_error("Failed to %s in %s: %s", what, path && *path ? path : "the database", sqlite3_errmsg(db));
        return errno_from_sqlite(rc);
}

int sql_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **ret)
{
        int rc = sqlite3_prepare_v2(db, sql, -1, ret, NULL);

        return rc == SQLITE_OK ? 0 : sql_error(db, rc, "prepare a statement");
}

int sql_exec(sqlite3 *db, const char *sql, const char *what)
{
        int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

        return rc == SQLITE_OK ? 0 : sql_error(db, rc, what);
}

/* Runs a statement that returns no rows; rc is what its binds left (see bind_text_n()). */
int sql_step_done(sqlite3 *db, sqlite3_stmt *st, int rc, const char *what)
{
        if (rc != SQLITE_OK)
                return sql_error(db, rc, "bind a parameter");
        rc = sqlite3_step(st);
        return rc == SQLITE_DONE ? 0 : sql_error(db, rc, what);
}

/*
 * Binds keep the first failure in *rc, so a statement's binds are checked
 * once (p11-kit's sticky buffer flag). Strings are bound SQLITE_STATIC: every
 * statement is finalized before the function that bound it returns.
 */
void bind_text_n(sqlite3_stmt *st, int i, const char *s, size_t n, int *rc)
{
        if (*rc != SQLITE_OK)
                return;
        if (!s)
                *rc = sqlite3_bind_null(st, i);
        else if (n > INT_MAX)
                *rc = SQLITE_TOOBIG;
        else
                *rc = sqlite3_bind_text(st, i, s, (int) n, SQLITE_STATIC);
}

void bind_text(sqlite3_stmt *st, int i, const char *s, int *rc)
{
        bind_text_n(st, i, s, s ? strlen(s) : 0, rc);
}

/* PKCS#11 pads token strings with blanks; a serial with blanks around it is the same serial. */
const char *trim_blanks(const char *s, size_t *ret_n)
{
        size_t n;

        if (!s)
                s = "";
        s += strspn(s, " ");
        for (n = strlen(s); n > 0 && s[n - 1] == ' '; n--)
                ;
        *ret_n = n;
        return s;
}

void bind_trimmed(sqlite3_stmt *st, int i, const char *s, int *rc)
{
        size_t n;

        s = trim_blanks(s, &n);
        bind_text_n(st, i, s, n, rc);
}

void bind_int64(sqlite3_stmt *st, int i, int64_t v, int *rc)
{
        if (*rc == SQLITE_OK)
                *rc = sqlite3_bind_int64(st, i, v);
}

void tx_rollbackp(sqlite3 **db)
{
        /* A no-op after COMMIT; after a failed COMMIT the transaction may still be open. */
        if (*db && !sqlite3_get_autocommit(*db))
                (void) sqlite3_exec(*db, "ROLLBACK", NULL, NULL, NULL);
}

/* IMMEDIATE takes the write lock at once, so a transaction that read the current record cannot later
 * find that another connection changed it. */
int tx_begin(sqlite3 *db)
{
        return sql_exec(db, "BEGIN IMMEDIATE", "begin a transaction");
}

int tx_commit(sqlite3 *db)
{
        return sql_exec(db, "COMMIT", "commit a transaction");
}

static bool streq_ptr(const char *a, const char *b)
{
        return a && b ? streq(a, b) : a == b;
}

static int strdup_or_null(const char *s, char **ret)
{
        char *p = NULL;

        if (s) {
                p = strdup(s);
                if (!p)
                        return -ENOMEM;
        }
        *ret = p;
        return 0;
}

/* NULL for SQL NULL. The bytes are copied as stored: SQLite does not touch the UTF-8 it was given. */
int column_text(sqlite3_stmt *st, int i, char **ret)
{
        const unsigned char *t;
        size_t n;
        char *p;

        if (sqlite3_column_type(st, i) == SQLITE_NULL) {
                *ret = NULL;
                return 0;
        }
        t = sqlite3_column_text(st, i);
        if (!t)
                return -ENOMEM;
        n = (size_t) sqlite3_column_bytes(st, i);
        p = malloc(n + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p, t, n);
        p[n] = '\0';
        *ret = p;
        return 0;
}

/* Creates a new database 0600 whatever the umask: it says who holds which signing token. SQLite gives
 * the -wal and -shm files the mode of the database file. */
static int create_private(const char *path)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);

        if (fd < 0)
                return errno == EEXIST ? 0 : -errno;
        (void) close(fd);
        return 1;
}

static int read_user_version(sqlite3 *db, int *ret)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc;

        r = sql_prepare(db, "PRAGMA user_version", &st);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return sql_error(db, rc, "read the schema version");
        *ret = sqlite3_column_int(st, 0);
        return 0;
}

static int refuse_version(const char *path, int version)
{
        log_error("Database %s has schema version %d, but this kysod knows only versions up to %d; "
                  "refusing to use it.",
                  path, version, store_schema_version());
        return -EPROTO;
}

static int set_wal(sqlite3 *db, const char *path)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        const char *mode;
        int r, rc;

        r = sql_prepare(db, "PRAGMA journal_mode = WAL", &st);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return sql_error(db, rc, "switch to WAL journal mode");
        /* The pragma answers with the mode it ended in rather than failing. */
        mode = (const char *) sqlite3_column_text(st, 0);
        if (!mode || !streq(mode, "wal")) {
                log_error("Database %s cannot use WAL journal mode (it is in mode %s).", path, mode ?: "?");
                return -EIO;
        }
        return 0;
}

static int migrate(sqlite3 *db, const char *path)
{
        for (;;) {
                _cleanup_(tx_rollbackp) sqlite3 *tx = NULL;
                int r, version, after;

                r = tx_begin(db);
                if (r < 0)
                        return r;
                tx = db;
                /* Read again under the write lock: another process may have migrated meanwhile. */
                r = read_user_version(db, &version);
                if (r < 0)
                        return r;
                if (version < 0 || version > store_schema_version())
                        return refuse_version(path, version);
                if (version == store_schema_version())
                        return tx_commit(db);
                r = sql_exec(db, migrations[version], "migrate the database schema");
                if (r < 0)
                        return r;
                r = read_user_version(db, &after);
                if (r < 0)
                        return r;
                if (after != version + 1) {
                        log_error("Migration %d of %s left schema version %d.", version + 1, path, after);
                        return -EIO;
                }
                r = tx_commit(db);
                if (r < 0)
                        return r;
                log_debug("Migrated %s to schema version %d.", path, after);
        }
}

int store_open(const char *path, Store **ret)
{
        _cleanup_(sqlite3_closep) sqlite3 *db = NULL;
        Store *s;
        int r, rc, version;

        if (isempty(path) || !ret)
                return -EINVAL;

        r = create_private(path);
        if (r < 0)
                return log_error_errno(r, "Failed to create database %s: %m", path);

        /* NOMUTEX: the header's contract is one thread at a time, and kysod serialises with its own lock. */
        rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
        if (rc != SQLITE_OK) {
                if (!db)
                        return log_oom();
                log_error("Failed to open database %s: %s", path, sqlite3_errmsg(db));
                return errno_from_sqlite(rc);
        }
        (void) sqlite3_busy_timeout(db, 5000);

        /* Until the version is known to be ours nothing may write the file, not even the checkpoint SQLite
         * runs when the last connection to a WAL database closes. */
        (void) sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
        r = read_user_version(db, &version);
        if (r < 0)
                return r;
        if (version < 0 || version > store_schema_version())
                return refuse_version(path, version);
        (void) sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, NULL);

        r = sql_exec(db, "PRAGMA foreign_keys = ON", "enable foreign keys");
        if (r < 0)
                return r;
        r = set_wal(db, path);
        if (r < 0)
                return r;
        /* In WAL mode FULL syncs the WAL at every commit: a function that returned 0 survives power loss. */
        r = sql_exec(db, "PRAGMA synchronous = FULL", "set synchronous mode");
        if (r < 0)
                return r;
        /* Only when needed: a current database on a read-only file system still opens for reading. */
        if (version < store_schema_version()) {
                r = migrate(db, path);
                if (r < 0)
                        return r;
        }
        if (sqlite3_db_readonly(db, "main") > 0)
                log_warning("Database %s is read-only: custody records can be read but not changed.", path);

        s = calloc(1, sizeof(Store));
        if (!s)
                return log_oom();
        s->db = TAKE_PTR(db);
        r = store_audit_spool_open(s, path);
        if (r < 0) {
                store_close(s);
                return r;
        }
        *ret = s;
        return 0;
}

Store *store_close(Store *s)
{
        if (!s)
                return NULL;
        store_audit_spool_close(s);
        /* Every statement is finalized where it was prepared, so close cannot be refused for one. */
        (void) sqlite3_close(s->db);
        free(s);
        return NULL;
}

/* ---- reading rows ---- */

#define TOKEN_COLUMNS "serial, manufacturer, model, label, first_seen, last_seen"

static int token_from_row(sqlite3_stmt *st, void *ret)
{
        _cleanup_(store_token_done) StoreToken t = {};
        int r;

        if ((r = column_text(st, 0, &t.serial)) < 0 || (r = column_text(st, 1, &t.manufacturer)) < 0 ||
            (r = column_text(st, 2, &t.model)) < 0 || (r = column_text(st, 3, &t.label)) < 0)
                return r;
        t.first_seen = sqlite3_column_int64(st, 4);
        t.last_seen = sqlite3_column_int64(st, 5);
        *(StoreToken *) ret = t;
        t = (StoreToken) {};
        return 0;
}

#define CUSTODY_COLUMNS                                                                                    \
        "id, serial, kind, holder, organization, decision_ref, decision_date, decision_signer, "          \
        "valid_from, valid_until, state, state_reason, pin_change_required, created_at, created_by, "    \
        "updated_at, updated_by"

static int custody_from_row(sqlite3_stmt *st, void *ret)
{
        _cleanup_(custody_record_done) CustodyRecord c = {};
        _cleanup_(freep) char *kind = NULL, *state = NULL;
        int r;

        c.id = sqlite3_column_int64(st, 0);
        if ((r = column_text(st, 1, &c.serial)) < 0 || (r = column_text(st, 2, &kind)) < 0 ||
            (r = column_text(st, 3, &c.holder)) < 0 || (r = column_text(st, 4, &c.organization)) < 0 ||
            (r = column_text(st, 5, &c.decision_ref)) < 0 ||
            (r = column_text(st, 6, &c.decision_date)) < 0 ||
            (r = column_text(st, 7, &c.decision_signer)) < 0 || (r = column_text(st, 10, &state)) < 0 ||
            (r = column_text(st, 11, &c.state_reason)) < 0 || (r = column_text(st, 14, &c.created_by)) < 0 ||
            (r = column_text(st, 16, &c.updated_by)) < 0)
                return r;
        /* The CHECK constraints make these impossible unless someone edited the file by hand. */
        c.kind = custody_kind_from_string(kind);
        c.state = custody_state_from_string(state);
        if (c.kind < 0 || c.state < 0) {
                log_error("Custody record %" PRId64 " has an unknown kind or state (%s, %s).", c.id,
                          kind ?: "NULL", state ?: "NULL");
                return -EIO;
        }
        c.valid_from = sqlite3_column_int64(st, 8);
        c.valid_until = sqlite3_column_int64(st, 9);
        c.pin_change_required = sqlite3_column_int(st, 12) != 0;
        c.created_at = sqlite3_column_int64(st, 13);
        c.updated_at = sqlite3_column_int64(st, 15);
        *(CustodyRecord *) ret = c;
        c = (CustodyRecord) {};
        return 0;
}

#define HANDOVER_COLUMNS "id, serial, from_holder, to_holder, minutes_ref, at, recorded_by"

static int handover_from_row(sqlite3_stmt *st, void *ret)
{
        _cleanup_(handover_done) Handover h = {};
        int r;

        h.id = sqlite3_column_int64(st, 0);
        if ((r = column_text(st, 1, &h.serial)) < 0 || (r = column_text(st, 2, &h.from_holder)) < 0 ||
            (r = column_text(st, 3, &h.to_holder)) < 0 || (r = column_text(st, 4, &h.minutes_ref)) < 0 ||
            (r = column_text(st, 6, &h.recorded_by)) < 0)
                return r;
        h.at = sqlite3_column_int64(st, 5);
        *(Handover *) ret = h;
        h = (Handover) {};
        return 0;
}

static void token_done_v(void *p)
{
        store_token_done(p);
}

static void custody_done_v(void *p)
{
        custody_record_done(p);
}

static void handover_done_v(void *p)
{
        handover_done(p);
}

static const RowType token_rows = { sizeof(StoreToken), token_from_row, token_done_v };
static const RowType custody_rows = { sizeof(CustodyRecord), custody_from_row, custody_done_v };
static const RowType handover_rows = { sizeof(Handover), handover_from_row, handover_done_v };

/* Prepares a SELECT whose only parameter, if it has one, is the serial at ?1. */
static int query_prepare(Store *s, const char *sql, const char *serial, sqlite3_stmt **ret)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc = SQLITE_OK;

        r = sql_prepare(s->db, sql, &st);
        if (r < 0)
                return r;
        if (serial)
                bind_trimmed(st, 1, serial, &rc);
        if (rc != SQLITE_OK)
                return sql_error(s->db, rc, "bind a parameter");
        *ret = TAKE_PTR(st);
        return 0;
}

/* The first row into ret: -ENOENT when there is none. */
static int query_one(Store *s, const char *sql, const char *serial, const RowType *t, void *ret)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc;

        r = query_prepare(s, sql, serial, &st);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return sql_error(s->db, rc, "read a row");
        return t->from_row(st, ret);
}

int query_collect(sqlite3 *db, sqlite3_stmt *st, const RowType *t, void **ret, size_t *ret_n)
{
        uint8_t *a = NULL;
        size_t n = 0, allocated = 0;
        int r, rc;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (n == allocated) {
                        size_t m = allocated ? allocated * 2 : 8, bytes;
                        uint8_t *b = NULL;

                        if (!size_mul_overflow(m, t->size, &bytes))
                                b = realloc(a, bytes);
                        if (!b) {
                                r = -ENOMEM;
                                goto fail;
                        }
                        a = b;
                        allocated = m;
                }
                r = t->from_row(st, a + n * t->size);
                if (r < 0)
                        goto fail;
                n++;
        }
        if (rc != SQLITE_DONE) {
                r = sql_error(db, rc, "read rows");
                goto fail;
        }
        *ret = a;
        *ret_n = n;
        return 0;
fail:
        for (size_t i = 0; i < n; i++)
                t->done(a + i * t->size);
        free(a);
        return r;
}

/* Every row into a new array. */
static int query_all(Store *s, const char *sql, const char *serial, const RowType *t, void **ret,
                     size_t *ret_n)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r;

        r = query_prepare(s, sql, serial, &st);
        if (r < 0)
                return r;
        return query_collect(s->db, st, t, ret, ret_n);
}

/* ---- tokens ---- */

int store_token_seen(Store *s, const char *serial, const char *manufacturer, const char *model,
                     const char *label, int64_t now)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc = SQLITE_OK;

        if (!s || isblank_str(serial))
                return -EINVAL;
        r = sql_prepare(s->db,
                "INSERT INTO tokens (serial, manufacturer, model, label, first_seen, last_seen) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?5) "
                "ON CONFLICT (serial) DO UPDATE SET manufacturer = excluded.manufacturer, "
                "model = excluded.model, label = excluded.label, last_seen = excluded.last_seen",
                &st);
        if (r < 0)
                return r;
        bind_trimmed(st, 1, serial, &rc);
        bind_trimmed(st, 2, manufacturer, &rc);
        bind_trimmed(st, 3, model, &rc);
        bind_trimmed(st, 4, label, &rc);
        bind_int64(st, 5, now, &rc);
        return sql_step_done(s->db, st, rc, "record a token");
}

int store_token_get(Store *s, const char *serial, StoreToken *ret)
{
        if (!s || isblank_str(serial) || !ret)
                return -EINVAL;
        return query_one(s, "SELECT " TOKEN_COLUMNS " FROM tokens WHERE serial = ?1", serial, &token_rows,
                         ret);
}

int store_tokens(Store *s, StoreToken **ret, size_t *ret_n)
{
        void *a;
        int r;

        if (!s || !ret || !ret_n)
                return -EINVAL;
        r = query_all(s, "SELECT " TOKEN_COLUMNS " FROM tokens ORDER BY serial", NULL, &token_rows, &a,
                      ret_n);
        if (r < 0)
                return r;
        *ret = a;
        return 0;
}

/* ---- custody ---- */

static bool decision_date_valid(const char *d)
{
        static const char shape[] = "dddd-dd-dd";
        int month, day;

        if (!d || strlen(d) != strlen(shape))
                return false;
        for (size_t i = 0; shape[i]; i++)
                if (shape[i] == 'd' ? !(d[i] >= '0' && d[i] <= '9') : d[i] != shape[i])
                        return false;
        month = (d[5] - '0') * 10 + (d[6] - '0');
        day = (d[8] - '0') * 10 + (d[9] - '0');
        return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}

static bool custody_record_valid(const CustodyRecord *c)
{
        return c && !isblank_str(c->serial) && custody_kind_to_string(c->kind) && !isempty(c->holder) &&
               !isempty(c->decision_ref) && decision_date_valid(c->decision_date) &&
               custody_state_to_string(c->state) && (c->valid_until == 0 || c->valid_until >= c->valid_from);
}

static int custody_current(Store *s, const char *serial, CustodyRecord *ret)
{
        return query_one(s,
                "SELECT " CUSTODY_COLUMNS " FROM custody WHERE serial = ?1 ORDER BY id DESC LIMIT 1", serial,
                &custody_rows, ret);
}

int store_custody_current(Store *s, const char *serial, CustodyRecord *ret)
{
        if (!s || isblank_str(serial) || !ret)
                return -EINVAL;
        return custody_current(s, serial, ret);
}

int store_custody_all(Store *s, CustodyRecord **ret, size_t *ret_n)
{
        void *a;
        int r;

        if (!s || !ret || !ret_n)
                return -EINVAL;
        r = query_all(s,
                "SELECT " CUSTODY_COLUMNS " FROM custody "
                "WHERE id IN (SELECT max(id) FROM custody GROUP BY serial) ORDER BY serial",
                NULL, &custody_rows, &a, ret_n);
        if (r < 0)
                return r;
        *ret = a;
        return 0;
}

int store_custody_history(Store *s, const char *serial, CustodyRecord **ret, size_t *ret_n)
{
        void *a;
        int r;

        if (!s || isblank_str(serial) || !ret || !ret_n)
                return -EINVAL;
        r = query_all(s, "SELECT " CUSTODY_COLUMNS " FROM custody WHERE serial = ?1 ORDER BY id", serial,
                &custody_rows, &a, ret_n);
        if (r < 0)
                return r;
        *ret = a;
        return 0;
}

static int custody_insert(Store *s, const CustodyRecord *c, int64_t now, const char *by, int64_t *ret_id)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc = SQLITE_OK;

        r = sql_prepare(s->db,
                "INSERT INTO custody (serial, kind, holder, organization, decision_ref, decision_date, "
                "decision_signer, valid_from, valid_until, state, state_reason, pin_change_required, "
                "created_at, created_by, updated_at, updated_by) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?13, ?14)",
                &st);
        if (r < 0)
                return r;
        bind_trimmed(st, 1, c->serial, &rc);
        bind_text(st, 2, custody_kind_to_string(c->kind), &rc);
        bind_text(st, 3, c->holder, &rc);
        bind_text(st, 4, c->organization, &rc);
        bind_text(st, 5, c->decision_ref, &rc);
        bind_text(st, 6, c->decision_date, &rc);
        bind_text(st, 7, c->decision_signer, &rc);
        bind_int64(st, 8, c->valid_from, &rc);
        bind_int64(st, 9, c->valid_until, &rc);
        bind_text(st, 10, custody_state_to_string(c->state), &rc);
        bind_text(st, 11, c->state_reason, &rc);
        bind_int64(st, 12, c->pin_change_required, &rc);
        bind_int64(st, 13, now, &rc);
        bind_text(st, 14, by, &rc);
        r = sql_step_done(s->db, st, rc, "add a custody record");
        if (r < 0)
                return r;
        if (ret_id)
                *ret_id = sqlite3_last_insert_rowid(s->db);
        return 0;
}

int store_custody_add(Store *s, const CustodyRecord *rec, int64_t now, const char *by, int64_t *ret_id)
{
        if (!s || !custody_record_valid(rec) || isempty(by))
                return -EINVAL;
        /* One statement: its own transaction. */
        return custody_insert(s, rec, now, by, ret_id);
}

/* Runs an UPDATE of the current record of the serial bound at ?1: -ENOENT when the token has none. */
static int update_current(Store *s, sqlite3_stmt *st, int rc, const char *what)
{
        int r = sql_step_done(s->db, st, rc, what);

        if (r < 0)
                return r;
        return sqlite3_changes(s->db) > 0 ? 0 : -ENOENT;
}

int store_custody_set_state(Store *s, const char *serial, CustodyState state, const char *reason,
                            int64_t now, const char *by)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc = SQLITE_OK;

        if (!s || isblank_str(serial) || !custody_state_to_string(state) || isempty(by))
                return -EINVAL;
        /* A reason belongs to the state it explains: a new state without one clears the old one. */
        r = sql_prepare(s->db,
                "UPDATE custody SET state = ?2, state_reason = ?3, updated_at = ?4, updated_by = ?5 "
                "WHERE id = (SELECT max(id) FROM custody WHERE serial = ?1)",
                &st);
        if (r < 0)
                return r;
        bind_trimmed(st, 1, serial, &rc);
        bind_text(st, 2, custody_state_to_string(state), &rc);
        bind_text(st, 3, reason, &rc);
        bind_int64(st, 4, now, &rc);
        bind_text(st, 5, by, &rc);
        return update_current(s, st, rc, "change a custody state");
}

int store_custody_set_pin_change_required(Store *s, const char *serial, bool required, int64_t now,
                                          const char *by)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc = SQLITE_OK;

        if (!s || isblank_str(serial) || isempty(by))
                return -EINVAL;
        r = sql_prepare(s->db,
                "UPDATE custody SET pin_change_required = ?2, updated_at = ?3, updated_by = ?4 "
                "WHERE id = (SELECT max(id) FROM custody WHERE serial = ?1)",
                &st);
        if (r < 0)
                return r;
        bind_trimmed(st, 1, serial, &rc);
        bind_int64(st, 2, required, &rc);
        bind_int64(st, 3, now, &rc);
        bind_text(st, 4, by, &rc);
        return update_current(s, st, rc, "change pin_change_required");
}

int store_handover(Store *s, const char *serial, const char *to_holder, const char *minutes_ref,
                   bool pin_change_required, int64_t now, const char *by)
{
        _cleanup_(tx_rollbackp) sqlite3 *tx = NULL;
        _cleanup_(custody_record_done) CustodyRecord cur = {};
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *ins = NULL, *upd = NULL;
        int r, rc = SQLITE_OK;

        if (!s || isblank_str(serial) || isempty(to_holder) || isempty(minutes_ref) || isempty(by))
                return -EINVAL;

        r = tx_begin(s->db);
        if (r < 0)
                return r;
        tx = s->db;
        r = custody_current(s, serial, &cur);
        if (r < 0)
                return r;

        r = sql_prepare(s->db,
                "INSERT INTO handovers (serial, from_holder, to_holder, minutes_ref, at, recorded_by) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                &ins);
        if (r < 0)
                return r;
        bind_text(ins, 1, cur.serial, &rc);
        bind_text(ins, 2, cur.holder, &rc);
        bind_text(ins, 3, to_holder, &rc);
        bind_text(ins, 4, minutes_ref, &rc);
        bind_int64(ins, 5, now, &rc);
        bind_text(ins, 6, by, &rc);
        r = sql_step_done(s->db, ins, rc, "record a handover");
        if (r < 0)
                return r;

        r = sql_prepare(s->db,
                "UPDATE custody SET holder = ?2, pin_change_required = ?3, updated_at = ?4, updated_by = ?5 "
                "WHERE id = ?1",
                &upd);
        if (r < 0)
                return r;
        bind_int64(upd, 1, cur.id, &rc);
        bind_text(upd, 2, to_holder, &rc);
        bind_int64(upd, 3, pin_change_required, &rc);
        bind_int64(upd, 4, now, &rc);
        bind_text(upd, 5, by, &rc);
        r = sql_step_done(s->db, upd, rc, "change the holder");
        if (r < 0)
                return r;
        return tx_commit(s->db);
}

int store_handovers(Store *s, const char *serial, Handover **ret, size_t *ret_n)
{
        void *a;
        int r;

        if (!s || isblank_str(serial) || !ret || !ret_n)
                return -EINVAL;
        r = query_all(s, "SELECT " HANDOVER_COLUMNS " FROM handovers WHERE serial = ?1 ORDER BY id", serial,
                &handover_rows, &a, ret_n);
        if (r < 0)
                return r;
        *ret = a;
        return 0;
}

/* The fields an import sets; created_*, updated_* and state_reason say how a record got there, not what it
 * is, so a re-import of the same file adds nothing. */
static bool custody_same(const CustodyRecord *a, const CustodyRecord *b)
{
        return a->kind == b->kind && streq(a->holder, b->holder) &&
               streq_ptr(a->organization, b->organization) && streq(a->decision_ref, b->decision_ref) &&
               streq(a->decision_date, b->decision_date) &&
               streq_ptr(a->decision_signer, b->decision_signer) && a->valid_from == b->valid_from &&
               a->valid_until == b->valid_until && a->state == b->state &&
               a->pin_change_required == b->pin_change_required;
}

int store_custody_import(Store *s, const CustodyRecord *recs, size_t n, int64_t now, const char *by)
{
        _cleanup_(tx_rollbackp) sqlite3 *tx = NULL;
        int r, added = 0;

        if (!s || (!recs && n > 0) || n > INT_MAX || isempty(by))
                return -EINVAL;
        /* Refuse a bad file before touching the database. */
        for (size_t i = 0; i < n; i++)
                if (!custody_record_valid(&recs[i]))
                        return -EINVAL;

        r = tx_begin(s->db);
        if (r < 0)
                return r;
        tx = s->db;
        for (size_t i = 0; i < n; i++) {
                _cleanup_(custody_record_done) CustodyRecord cur = {};

                /* The current record may be one this import just added: a file listing a token twice adds
                 * the second only if it differs. */
                r = custody_current(s, recs[i].serial, &cur);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (r >= 0 && custody_same(&recs[i], &cur))
                        continue;
                r = custody_insert(s, &recs[i], now, by, NULL);
                if (r < 0)
                        return r;
                added++;
        }
        r = tx_commit(s->db);
        if (r < 0)
                return r;
        return added;
}

/* ---- PIN changes ---- */

int store_pin_changed(Store *s, const char *serial, int64_t at, uint32_t uid, const char *how)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc = SQLITE_OK;

        if (!s || isblank_str(serial) || isempty(how))
                return -EINVAL;
        r = sql_prepare(s->db, "INSERT INTO pin_changes (serial, at, uid, how) VALUES (?1, ?2, ?3, ?4)",
                        &st);
        if (r < 0)
                return r;
        bind_trimmed(st, 1, serial, &rc);
        bind_int64(st, 2, at, &rc);
        bind_int64(st, 3, uid, &rc);
        bind_text(st, 4, how, &rc);
        return sql_step_done(s->db, st, rc, "record a PIN change");
}

int store_pin_last_change(Store *s, const char *serial, int64_t *ret_at)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc;

        if (!s || isblank_str(serial) || !ret_at)
                return -EINVAL;
        /* The latest time, not the latest row: the (serial, at) index answers it, and a change recorded
         * while the clock was behind does not make the PIN look older than it is. */
        r = query_prepare(s, "SELECT at FROM pin_changes WHERE serial = ?1 ORDER BY at DESC LIMIT 1", serial,
                          &st);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return sql_error(s->db, rc, "read the last PIN change");
        *ret_at = sqlite3_column_int64(st, 0);
        return 0;
}

/* ---- certificates ---- */

#define CERTIFICATE_COLUMNS "serial, key_id, label, subject, issuer, not_before, not_after"

static int certificate_from_row(sqlite3_stmt *st, void *ret)
{
        _cleanup_(store_certificate_done) StoreCertificate c = {};
        int r;

        if ((r = column_text(st, 0, &c.serial)) < 0 || (r = column_text(st, 1, &c.key_id)) < 0 ||
            (r = column_text(st, 2, &c.label)) < 0 || (r = column_text(st, 3, &c.subject)) < 0 ||
            (r = column_text(st, 4, &c.issuer)) < 0)
                return r;
        c.not_before = sqlite3_column_int64(st, 5);
        c.not_after = sqlite3_column_int64(st, 6);
        *(StoreCertificate *) ret = c;
        c = (StoreCertificate) {};
        return 0;
}

static void certificate_done_v(void *p)
{
        store_certificate_done(p);
}

static const RowType certificate_rows = {
        sizeof(StoreCertificate), certificate_from_row, certificate_done_v
};

/* The token is the one named by the serial argument; each certificate's own serial field is not read. */
int store_certificates_set(Store *s, const char *serial, const StoreCertificate *certs, size_t n)
{
        _cleanup_(tx_rollbackp) sqlite3 *tx = NULL;
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *del = NULL, *ins = NULL;
        int r, rc = SQLITE_OK;

        if (!s || isblank_str(serial) || (!certs && n > 0))
                return -EINVAL;

        r = tx_begin(s->db);
        if (r < 0)
                return r;
        tx = s->db;
        r = sql_prepare(s->db, "DELETE FROM certificates WHERE serial = ?1", &del);
        if (r < 0)
                return r;
        bind_trimmed(del, 1, serial, &rc);
        r = sql_step_done(s->db, del, rc, "forget a token's certificates");
        if (r < 0)
                return r;

        r = sql_prepare(s->db,
                "INSERT INTO certificates (" CERTIFICATE_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &ins);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                const StoreCertificate *c = &certs[i];

                rc = sqlite3_reset(ins);
                /* Missing strings are stored empty, as the tokens' are: a reader never meets NULL. */
                bind_trimmed(ins, 1, serial, &rc);
                bind_text(ins, 2, c->key_id ?: "", &rc);
                bind_text(ins, 3, c->label ?: "", &rc);
                bind_text(ins, 4, c->subject ?: "", &rc);
                bind_text(ins, 5, c->issuer ?: "", &rc);
                bind_int64(ins, 6, c->not_before, &rc);
                bind_int64(ins, 7, c->not_after, &rc);
                r = sql_step_done(s->db, ins, rc, "record a certificate");
                if (r < 0)
                        return r;
        }
        return tx_commit(s->db);
}

int store_certificates(Store *s, const char *serial, StoreCertificate **ret, size_t *ret_n)
{
        void *a;
        int r;

        if (!s || isblank_str(serial) || !ret || !ret_n)
                return -EINVAL;
        /* In the order they were given, which is the order the token listed them. */
        r = query_all(s, "SELECT " CERTIFICATE_COLUMNS " FROM certificates WHERE serial = ?1 ORDER BY rowid",
                      serial, &certificate_rows, &a, ret_n);
        if (r < 0)
                return r;
        *ret = a;
        return 0;
}

/* ---- memory ---- */

void store_token_done(StoreToken *t)
{
        if (!t)
                return;
        free(t->serial);
        free(t->manufacturer);
        free(t->model);
        free(t->label);
        *t = (StoreToken) {};
}

void custody_record_done(CustodyRecord *r)
{
        if (!r)
                return;
        free(r->serial);
        free(r->holder);
        free(r->organization);
        free(r->decision_ref);
        free(r->decision_date);
        free(r->decision_signer);
        free(r->state_reason);
        free(r->created_by);
        free(r->updated_by);
        *r = (CustodyRecord) {};
}

void handover_done(Handover *h)
{
        if (!h)
                return;
        free(h->serial);
        free(h->from_holder);
        free(h->to_holder);
        free(h->minutes_ref);
        free(h->recorded_by);
        *h = (Handover) {};
}

void store_certificate_done(StoreCertificate *c)
{
        if (!c)
                return;
        free(c->serial);
        free(c->key_id);
        free(c->label);
        free(c->subject);
        free(c->issuer);
        *c = (StoreCertificate) {};
}

DEFINE_ARRAY_FREE(store_tokens_free, StoreToken, store_token_done)
DEFINE_ARRAY_FREE(custody_records_free, CustodyRecord, custody_record_done)
DEFINE_ARRAY_FREE(handovers_free, Handover, handover_done)
DEFINE_ARRAY_FREE(store_certificates_free, StoreCertificate, store_certificate_done)

int custody_record_copy(const CustodyRecord *src, CustodyRecord *ret)
{
        _cleanup_(custody_record_done) CustodyRecord c = {};

        if (!src || !ret)
                return -EINVAL;
        c = *src;
        /* Clear the borrowed pointers first, so a failure below frees only what was copied. */
        c.serial = c.holder = c.organization = c.decision_ref = c.decision_date = c.decision_signer = NULL;
        c.state_reason = c.created_by = c.updated_by = NULL;
        if (strdup_or_null(src->serial, &c.serial) < 0 || strdup_or_null(src->holder, &c.holder) < 0 ||
            strdup_or_null(src->organization, &c.organization) < 0 ||
            strdup_or_null(src->decision_ref, &c.decision_ref) < 0 ||
            strdup_or_null(src->decision_date, &c.decision_date) < 0 ||
            strdup_or_null(src->decision_signer, &c.decision_signer) < 0 ||
            strdup_or_null(src->state_reason, &c.state_reason) < 0 ||
            strdup_or_null(src->created_by, &c.created_by) < 0 ||
            strdup_or_null(src->updated_by, &c.updated_by) < 0)
                return -ENOMEM;
        *ret = c;
        c = (CustodyRecord) {};
        return 0;
}
