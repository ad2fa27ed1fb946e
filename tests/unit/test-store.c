/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The store against real database files in a temporary directory: schema
 * and migrations, tokens, custody records, handovers, all-or-none imports,
 * Vietnamese text, a newer schema left alone, a read-only file system and a
 * full one (in a private mount namespace, skipped where that is not
 * allowed), and SIGKILL in the middle of writes losing nothing that was
 * reported committed.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "macro.h"
#include "store.h"

#define EXIT_SKIP 77

static char tmpdir[PATH_MAX];

/* A fresh database path in the test's directory, so tests do not see each other's data. */
static const char *db_path(const char *name)
{
        static char path[PATH_MAX];

        assert_true(snprintf(path, sizeof(path), "%s/%s.db", tmpdir, name) < (int) sizeof(path));
        return path;
}

static CustodyRecord record(const char *serial, const char *holder, const char *decision_ref)
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

static size_t history_count(Store *s, const char *serial)
{
        CustodyRecord *h = NULL;
        size_t n = 0;

        assert_int_equal(store_custody_history(s, serial, &h, &n), 0);
        custody_records_free(h, n);
        return n;
}

/* Runs one statement that returns a single integer or text, on a connection of the test's own. */
static int64_t raw_int(const char *path, const char *sql)
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

static void raw_exec(const char *path, const char *sql)
{
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The text of PRAGMA integrity_check, "ok" for a sound file; the caller frees it. */
static char *integrity_check(const char *path)
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

static void *read_file(const char *path, size_t *ret_size)
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

static void test_open_create(void **state)
{
        const char *p = db_path("create");
        char path[PATH_MAX], wal[PATH_MAX + 8];
        Store *s = NULL;
        StoreToken t = {};
        struct stat st;
        mode_t old_umask;

        snprintf(path, sizeof(path), "%s", p);
        snprintf(wal, sizeof(wal), "%s-wal", path);
        assert_true(store_schema_version() >= 1);

        old_umask = umask(0022);
        assert_int_equal(store_open(path, &s), 0);
        umask(old_umask);
        assert_non_null(s);
        assert_int_equal(store_token_seen(s, "T1", "Maker", "Model", "Label", 100), 0);

        /* It says who holds which signing token: nobody else reads it, nor its WAL. */
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(stat(wal, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);

        assert_int_equal(raw_int(path, "PRAGMA user_version"), store_schema_version());
        s = store_close(s);
        assert_null(s);
        assert_null(store_close(NULL));

        /* Reopening migrates nothing and keeps the data; the file stays in WAL mode. */
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(store_token_get(s, "T1", &t), 0);
        assert_string_equal(t.label, "Label");
        store_token_done(&t);
        store_close(s);
        assert_int_equal(raw_int(path, "PRAGMA user_version"), store_schema_version());
        {
                sqlite3 *db = NULL;
                sqlite3_stmt *q = NULL;

                assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
                assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
                assert_int_equal(sqlite3_step(q), SQLITE_ROW);
                assert_string_equal((const char *) sqlite3_column_text(q, 0), "wal");
                sqlite3_finalize(q);
                sqlite3_close(db);
        }

        assert_int_equal(store_open(NULL, &s), -EINVAL);
        assert_int_equal(store_open(path, NULL), -EINVAL);
        s = NULL;
        assert_int_equal(store_open("/nonexistent-dir/kyso.db", &s), -ENOENT);
        assert_null(s);
}

static void test_tokens(void **state)
{
        Store *s = NULL;
        StoreToken t = {}, *all = NULL;
        size_t n = 0;

        assert_int_equal(store_open(db_path("tokens"), &s), 0);
        /* PKCS#11 pads token strings with blanks. */
        assert_int_equal(store_token_seen(s, "ZZ0042    ", "Bkav Corp ", "BkavCA  ", "Old label  ", 100), 0);
        assert_int_equal(store_token_get(s, "ZZ0042", &t), 0);
        assert_string_equal(t.serial, "ZZ0042");
        assert_string_equal(t.manufacturer, "Bkav Corp");
        assert_string_equal(t.model, "BkavCA");
        assert_string_equal(t.label, "Old label");
        assert_int_equal(t.first_seen, 100);
        assert_int_equal(t.last_seen, 100);
        store_token_done(&t);

        assert_int_equal(store_token_seen(s, "ZZ0042", "Bkav Corp", "BkavCA", "New label", 250), 0);
        assert_int_equal(store_token_get(s, "ZZ0042          ", &t), 0);
        assert_int_equal(t.first_seen, 100);
        assert_int_equal(t.last_seen, 250);
        assert_string_equal(t.label, "New label");
        store_token_done(&t);

        /* Missing strings are empty, never NULL. */
        assert_int_equal(store_token_seen(s, "AA0001", NULL, NULL, NULL, 300), 0);
        assert_int_equal(store_tokens(s, &all, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(all[0].serial, "AA0001");
        assert_string_equal(all[0].label, "");
        assert_string_equal(all[1].serial, "ZZ0042");
        store_tokens_free(all, n);

        t.serial = (char *) "untouched";
        assert_int_equal(store_token_get(s, "NOPE", &t), -ENOENT);
        assert_string_equal(t.serial, "untouched");
        t = (StoreToken) {};
        assert_int_equal(store_token_seen(s, NULL, "m", "m", "l", 1), -EINVAL);
        assert_int_equal(store_token_seen(s, "    ", "m", "m", "l", 1), -EINVAL);
        store_close(s);
}

static void test_custody(void **state)
{
        Store *s = NULL;
        CustodyRecord a = record("TOK-B", "nguyenvana", "12/QĐ-UBND"), b, c, cur = {};
        CustodyRecord *h = NULL, *all = NULL;
        int64_t id_a = 0, id_b = 0, id_c = 0;
        size_t n = 0;

        assert_int_equal(store_open(db_path("custody"), &s), 0);
        assert_int_equal(store_custody_current(s, "TOK-B", &cur), -ENOENT);

        a.kind = CUSTODY_KIND_ORGANIZATION;
        a.organization = (char *) "UBND";
        a.created_at = 1; /* taken from the arguments, not from the record */
        a.created_by = (char *) "ignored";
        assert_int_equal(store_custody_add(s, &a, 1000, "admin", &id_a), 0);
        b = a;
        b.holder = (char *) "@vanthu";
        b.valid_until = 1800000000;
        b.pin_change_required = true;
        assert_int_equal(store_custody_add(s, &b, 2000, "uid 0", &id_b), 0);
        assert_true(id_b > id_a);
        c = record("TOK-A", "tranthib", "7/QĐ-UBND");
        c.kind = CUSTODY_KIND_DEVICE;
        assert_int_equal(store_custody_add(s, &c, 3000, "admin", &id_c), 0);

        /* The current record is the newest one. */
        assert_int_equal(store_custody_current(s, "TOK-B", &cur), 0);
        assert_int_equal(cur.id, id_b);
        assert_string_equal(cur.serial, "TOK-B");
        assert_int_equal(cur.kind, CUSTODY_KIND_ORGANIZATION);
        assert_string_equal(cur.holder, "@vanthu");
        assert_string_equal(cur.organization, "UBND");
        assert_string_equal(cur.decision_ref, "12/QĐ-UBND");
        assert_string_equal(cur.decision_date, "2024-03-15");
        assert_null(cur.decision_signer);
        assert_int_equal(cur.valid_from, 1700000000);
        assert_int_equal(cur.valid_until, 1800000000);
        assert_int_equal(cur.state, CUSTODY_STATE_ACTIVE);
        assert_null(cur.state_reason);
        assert_true(cur.pin_change_required);
        assert_int_equal(cur.created_at, 2000);
        assert_string_equal(cur.created_by, "uid 0");
        assert_int_equal(cur.updated_at, 2000);
        assert_string_equal(cur.updated_by, "uid 0");
        custody_record_done(&cur);
        custody_record_done(&cur); /* done twice is harmless */

        assert_int_equal(store_custody_history(s, "TOK-B", &h, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(h[0].id, id_a);
        assert_string_equal(h[0].holder, "nguyenvana");
        assert_int_equal(h[0].created_at, 1000);
        assert_string_equal(h[0].created_by, "admin");
        assert_int_equal(h[1].id, id_b);
        {
                CustodyRecord copy = {};

                assert_int_equal(custody_record_copy(&h[1], &copy), 0);
                assert_ptr_not_equal(copy.holder, h[1].holder);
                assert_string_equal(copy.holder, h[1].holder);
                assert_int_equal(copy.id, h[1].id);
                assert_null(copy.decision_signer);
                custody_record_done(&copy);
        }
        custody_records_free(h, n);

        assert_int_equal(store_custody_all(s, &all, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(all[0].serial, "TOK-A");
        assert_int_equal(all[0].id, id_c);
        assert_int_equal(all[0].kind, CUSTODY_KIND_DEVICE);
        assert_string_equal(all[1].serial, "TOK-B");
        assert_int_equal(all[1].id, id_b);
        custody_records_free(all, n);
        custody_records_free(NULL, 0);

        /* Bad records are refused and add nothing. */
        c = record(NULL, "x", "1/QĐ");
        assert_int_equal(store_custody_add(s, &c, 1, "admin", NULL), -EINVAL);
        c = record("TOK-C", NULL, "1/QĐ");
        assert_int_equal(store_custody_add(s, &c, 1, "admin", NULL), -EINVAL);
        c = record("TOK-C", "x", NULL);
        assert_int_equal(store_custody_add(s, &c, 1, "admin", NULL), -EINVAL);
        c = record("TOK-C", "x", "1/QĐ");
        c.decision_date = (char *) "15/03/2024";
        assert_int_equal(store_custody_add(s, &c, 1, "admin", NULL), -EINVAL);
        c = record("TOK-C", "x", "1/QĐ");
        c.kind = _CUSTODY_KIND_MAX;
        assert_int_equal(store_custody_add(s, &c, 1, "admin", NULL), -EINVAL);
        c.kind = (CustodyKind) -1;
        assert_int_equal(store_custody_add(s, &c, 1, "admin", NULL), -EINVAL);
        c = record("TOK-C", "x", "1/QĐ");
        c.state = _CUSTODY_STATE_MAX;
        assert_int_equal(store_custody_add(s, &c, 1, "admin", NULL), -EINVAL);
        c = record("TOK-C", "x", "1/QĐ");
        c.valid_until = c.valid_from - 1;
        assert_int_equal(store_custody_add(s, &c, 1, "admin", NULL), -EINVAL);
        c = record("TOK-C", "x", "1/QĐ");
        assert_int_equal(store_custody_add(s, &c, 1, NULL, NULL), -EINVAL);
        assert_int_equal(store_custody_add(s, NULL, 1, "admin", NULL), -EINVAL);
        assert_int_equal(history_count(s, "TOK-C"), 0);

        store_close(s);
}

static void test_enum_strings(void **state)
{
        for (int k = 0; k < _CUSTODY_KIND_MAX; k++)
                assert_int_equal(custody_kind_from_string(custody_kind_to_string((CustodyKind) k)), k);
        for (int st = 0; st < _CUSTODY_STATE_MAX; st++)
                assert_int_equal(custody_state_from_string(custody_state_to_string((CustodyState) st)), st);
        assert_string_equal(custody_kind_to_string(CUSTODY_KIND_ORGANIZATION), "organization");
        assert_string_equal(custody_state_to_string(CUSTODY_STATE_RETURNED), "returned");
        assert_null(custody_kind_to_string(_CUSTODY_KIND_MAX));
        assert_null(custody_state_to_string(_CUSTODY_STATE_INVALID));
        assert_int_equal(custody_kind_from_string("Personal"), _CUSTODY_KIND_INVALID);
        assert_int_equal(custody_state_from_string(NULL), _CUSTODY_STATE_INVALID);
}

static void test_set_state_and_pin_change(void **state)
{
        Store *s = NULL;
        CustodyRecord a = record("TOK", "nguyenvana", "1/QĐ"), cur = {}, *h = NULL;
        size_t n;

        assert_int_equal(store_open(db_path("state"), &s), 0);
        assert_int_equal(store_custody_set_state(s, "TOK", CUSTODY_STATE_LOST, "mất", 5, "admin"), -ENOENT);
        assert_int_equal(store_custody_set_pin_change_required(s, "TOK", true, 5, "admin"), -ENOENT);
        assert_int_equal(store_custody_add(s, &a, 10, "admin", NULL), 0);
        assert_int_equal(store_custody_add(s, &a, 20, "admin", NULL), 0);

        assert_int_equal(store_custody_set_state(s, "TOK", CUSTODY_STATE_LOST, "báo mất 3/4", 30, "ktv"), 0);
        assert_int_equal(store_custody_current(s, "TOK", &cur), 0);
        assert_int_equal(cur.state, CUSTODY_STATE_LOST);
        assert_string_equal(cur.state_reason, "báo mất 3/4");
        assert_int_equal(cur.updated_at, 30);
        assert_string_equal(cur.updated_by, "ktv");
        assert_int_equal(cur.created_at, 20);
        custody_record_done(&cur);

        /* Only the current record changes; history stays as it was. */
        assert_int_equal(store_custody_history(s, "TOK", &h, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(h[0].state, CUSTODY_STATE_ACTIVE);
        assert_int_equal(h[0].updated_at, 10);
        custody_records_free(h, n);

        /* A new state without a reason does not keep the old state's reason. */
        assert_int_equal(store_custody_set_state(s, "TOK", CUSTODY_STATE_ACTIVE, NULL, 40, "clerk"), 0);
        assert_int_equal(store_custody_current(s, "TOK", &cur), 0);
        assert_int_equal(cur.state, CUSTODY_STATE_ACTIVE);
        assert_null(cur.state_reason);
        custody_record_done(&cur);

        assert_int_equal(store_custody_set_state(s, "TOK", _CUSTODY_STATE_MAX, NULL, 1, "x"), -EINVAL);
        assert_int_equal(store_custody_set_state(s, "TOK", (CustodyState) -3, NULL, 1, "x"), -EINVAL);
        assert_int_equal(store_custody_set_state(s, NULL, CUSTODY_STATE_LOST, NULL, 1, "x"), -EINVAL);

        assert_int_equal(store_custody_set_pin_change_required(s, "TOK", true, 50, "pin"), 0);
        assert_int_equal(store_custody_current(s, "TOK", &cur), 0);
        assert_true(cur.pin_change_required);
        assert_int_equal(cur.updated_at, 50);
        custody_record_done(&cur);
        assert_int_equal(store_custody_set_pin_change_required(s, "TOK", false, 60, "pin"), 0);
        assert_int_equal(store_custody_current(s, "TOK", &cur), 0);
        assert_false(cur.pin_change_required);
        assert_int_equal(cur.state, CUSTODY_STATE_ACTIVE);
        custody_record_done(&cur);
        assert_int_equal(history_count(s, "TOK"), 2);
        store_close(s);
}

static void test_handover(void **state)
{
        Store *s = NULL;
        CustodyRecord a = record("TOK", "nguyenvana", "1/QĐ"), cur = {};
        Handover *h = NULL;
        int64_t id;
        size_t n;

        assert_int_equal(store_open(db_path("handover"), &s), 0);
        assert_int_equal(store_handover(s, "TOK", "@vanthu", "05/BB-BG", true, 5, "admin"), -ENOENT);
        assert_int_equal(store_handovers(s, "TOK", &h, &n), 0);
        assert_int_equal(n, 0);
        free(h);

        assert_int_equal(store_custody_add(s, &a, 10, "admin", &id), 0);
        assert_int_equal(store_handover(s, "TOK", "@vanthu", "05/BB-BG", true, 20, "admin"), 0);
        assert_int_equal(store_custody_current(s, "TOK", &cur), 0);
        assert_int_equal(cur.id, id); /* the record changes holder; it is not replaced */
        assert_string_equal(cur.holder, "@vanthu");
        assert_true(cur.pin_change_required);
        assert_int_equal(cur.updated_at, 20);
        custody_record_done(&cur);

        assert_int_equal(store_handover(s, "TOK", "tranthib", "06/BB-BG", false, 30, "clerk"), 0);
        assert_int_equal(store_custody_current(s, "TOK", &cur), 0);
        assert_string_equal(cur.holder, "tranthib");
        assert_false(cur.pin_change_required);
        custody_record_done(&cur);

        assert_int_equal(store_handovers(s, "TOK", &h, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(h[0].serial, "TOK");
        assert_string_equal(h[0].from_holder, "nguyenvana");
        assert_string_equal(h[0].to_holder, "@vanthu");
        assert_string_equal(h[0].minutes_ref, "05/BB-BG");
        assert_int_equal(h[0].at, 20);
        assert_string_equal(h[0].recorded_by, "admin");
        assert_string_equal(h[1].from_holder, "@vanthu");
        assert_string_equal(h[1].to_holder, "tranthib");
        assert_true(h[1].id > h[0].id);
        handovers_free(h, n);

        assert_int_equal(store_handover(s, "TOK", NULL, "07", false, 40, "x"), -EINVAL);
        assert_int_equal(store_handover(s, "TOK", "y", NULL, false, 40, "x"), -EINVAL);
        assert_int_equal(store_handover(s, NULL, "y", "07", false, 40, "x"), -EINVAL);
        assert_int_equal(store_handovers(s, "TOK", &h, &n), 0);
        assert_int_equal(n, 2);
        handovers_free(h, n);
        assert_int_equal(history_count(s, "TOK"), 1);
        store_close(s);
}

static void test_import(void **state)
{
        Store *s = NULL;
        CustodyRecord recs[3], *all = NULL;
        size_t n;

        assert_int_equal(store_open(db_path("import"), &s), 0);
        recs[0] = record("IMP-1", "nguyenvana", "1/QĐ");
        recs[1] = record("IMP-2", "tranthib", "2/QĐ");

        /* All or none: a bad second record keeps the good first one out too. */
        recs[1].kind = (CustodyKind) 9;
        assert_int_equal(store_custody_import(s, recs, 2, 100, "import"), -EINVAL);
        recs[1].kind = CUSTODY_KIND_PERSONAL;
        recs[1].holder = NULL;
        assert_int_equal(store_custody_import(s, recs, 2, 100, "import"), -EINVAL);
        assert_int_equal(store_custody_all(s, &all, &n), 0);
        assert_int_equal(n, 0);
        free(all);

        recs[1].holder = (char *) "tranthib";
        assert_int_equal(store_custody_import(s, recs, 2, 100, "import"), 2);
        /* The same file again adds nothing, even with other bookkeeping fields. */
        recs[0].created_by = (char *) "someone";
        recs[0].state_reason = (char *) "re-import";
        assert_int_equal(store_custody_import(s, recs, 2, 200, "import"), 0);
        assert_int_equal(history_count(s, "IMP-1"), 1);

        /* One changed record is added; one token listed twice alike is added once. */
        recs[1].organization = (char *) "Sở Nội vụ";
        recs[2] = recs[1];
        assert_int_equal(store_custody_import(s, recs, 3, 300, "import"), 1);
        assert_int_equal(history_count(s, "IMP-1"), 1);
        assert_int_equal(history_count(s, "IMP-2"), 2);

        /* Every compared field counts. */
        recs[0].decision_signer = (char *) "Nguyễn Văn B";
        assert_int_equal(store_custody_import(s, recs, 1, 400, "import"), 1);
        recs[0].valid_until = 1900000000;
        assert_int_equal(store_custody_import(s, recs, 1, 400, "import"), 1);
        recs[0].pin_change_required = true;
        assert_int_equal(store_custody_import(s, recs, 1, 400, "import"), 1);
        recs[0].state = CUSTODY_STATE_LOCKED;
        assert_int_equal(store_custody_import(s, recs, 1, 400, "import"), 1);
        assert_int_equal(store_custody_import(s, recs, 1, 400, "import"), 0);
        assert_int_equal(history_count(s, "IMP-1"), 5);

        assert_int_equal(store_custody_import(s, NULL, 0, 500, "import"), 0);
        assert_int_equal(store_custody_import(s, NULL, 1, 500, "import"), -EINVAL);
        store_close(s);
}

static void test_utf8_round_trip(void **state)
{
        /* Precomposed and decomposed forms must both come back as the same bytes: nothing normalises. */
        static const char organization[] = "Ủy ban nhân dân tỉnh Thừa Thiên Huế";
        static const char decision[] = "12/QĐ-UBND";
        static const char signer[] = "Nguye\xcc\x82\xcc\x83n Va\xcc\x86n A"; /* NFD */
        static const char reason[] = "Thiết bị bị hỏng; đã lập biên bản";
        static const char minutes[] = "biên bản bàn giao số 05/BB-VP";
        Store *s = NULL;
        CustodyRecord a = record("VN-01", "nguyễnvăna", decision), cur = {};
        StoreToken t = {};
        Handover *h = NULL;
        size_t n;

        a.organization = (char *) organization;
        a.decision_signer = (char *) signer;
        a.state_reason = (char *) reason;
        assert_int_equal(store_open(db_path("utf8"), &s), 0);
        assert_int_equal(store_token_seen(s, "VN-01", "Công ty Bkav", "BkavCA", "Chữ ký số   ", 1), 0);
        assert_int_equal(store_custody_add(s, &a, 1, "văn thư", NULL), 0);
        assert_int_equal(store_handover(s, "VN-01", "@văn-thư", minutes, false, 2, "quản trị"), 0);
        store_close(s);

        assert_int_equal(store_open(db_path("utf8"), &s), 0);
        assert_int_equal(store_token_get(s, "VN-01", &t), 0);
        assert_string_equal(t.manufacturer, "Công ty Bkav");
        assert_string_equal(t.label, "Chữ ký số");
        store_token_done(&t);
        assert_int_equal(store_custody_current(s, "VN-01", &cur), 0);
        assert_memory_equal(cur.organization, organization, sizeof(organization));
        assert_memory_equal(cur.decision_ref, decision, sizeof(decision));
        assert_memory_equal(cur.decision_signer, signer, sizeof(signer));
        assert_memory_equal(cur.state_reason, reason, sizeof(reason));
        assert_string_equal(cur.holder, "@văn-thư");
        assert_string_equal(cur.created_by, "văn thư");
        assert_string_equal(cur.updated_by, "quản trị");
        custody_record_done(&cur);
        assert_int_equal(store_handovers(s, "VN-01", &h, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(h[0].from_holder, "nguyễnvăna");
        assert_memory_equal(h[0].minutes_ref, minutes, sizeof(minutes));
        handovers_free(h, n);
        store_close(s);
}

static void test_newer_schema_refused(void **state)
{
        char path[PATH_MAX], sql[64], wal[PATH_MAX + 8];
        CustodyRecord a = record("NEW", "x", "1/QĐ");
        Store *s = NULL, *sentinel = (Store *) &sentinel;
        void *before, *after;
        size_t before_size, after_size;
        struct stat st;

        snprintf(path, sizeof(path), "%s", db_path("newer"));
        snprintf(wal, sizeof(wal), "%s-wal", path);
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(store_custody_add(s, &a, 1, "admin", NULL), 0);
        store_close(s);
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", store_schema_version() + 1);
        raw_exec(path, sql);
        assert_int_equal(stat(wal, &st), -1); /* the last close checkpointed everything into the file */
        before = read_file(path, &before_size);

        s = sentinel;
        assert_int_equal(store_open(path, &s), -EPROTO);
        assert_ptr_equal(s, sentinel);
        after = read_file(path, &after_size);
        assert_int_equal(after_size, before_size);
        assert_memory_equal(after, before, before_size);
        /* Reading the version may leave an empty WAL behind, never a written one. */
        assert_true(stat(wal, &st) < 0 || st.st_size == 0);
        assert_int_equal(raw_int(path, "PRAGMA user_version"), store_schema_version() + 1);
        free(before);
        free(after);

        /* A newer kysod killed before its last checkpoint leaves the new version in the WAL: the refusal
         * must not run the checkpoint SQLite does when the last connection closes. */
        {
                sqlite3 *db = NULL;
                void *wal_before, *wal_after;
                size_t wal_before_size, wal_after_size;

                assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
                assert_int_equal(sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL), 0);
                assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 1000", NULL, NULL, NULL), 0);
                assert_int_equal(sqlite3_close(db), SQLITE_OK);
                before = read_file(path, &before_size);
                wal_before = read_file(wal, &wal_before_size);
                assert_true(wal_before_size > 0);

                assert_int_equal(store_open(path, &s), -EPROTO);
                after = read_file(path, &after_size);
                wal_after = read_file(wal, &wal_after_size);
                assert_int_equal(after_size, before_size);
                assert_memory_equal(after, before, before_size);
                assert_int_equal(wal_after_size, wal_before_size);
                assert_memory_equal(wal_after, wal_before, wal_before_size);
                free(before);
                free(after);
                free(wal_before);
                free(wal_after);
        }

        /* Nor a version below zero, which no build writes. */
        raw_exec(path, "PRAGMA user_version = -1");
        assert_int_equal(store_open(path, &s), -EPROTO);
        assert_ptr_equal(s, sentinel);
}

#define CHILD_CHECK(expr)                                                                                  \
        do {                                                                                               \
                if (!(expr)) {                                                                             \
                        fprintf(stderr, "%s:%d: check failed in child: %s\n", __FILE__, __LINE__, #expr);   \
                        return EXIT_FAILURE;                                                               \
                }                                                                                          \
        } while (0)

/* Runs f in a child with a private mount namespace, so it can mount file systems nothing else sees and
 * that vanish with it. Skips where namespaces are not allowed (not root, or no CAP_SYS_ADMIN). */
static void run_in_mount_namespace(int (*f)(const char *path), const char *path)
{
        int status;
        pid_t pid;

        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", "none", MS_REC | MS_PRIVATE, NULL) < 0)
                        _exit(EXIT_SKIP);
                _exit(f(path));
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == EXIT_SKIP)
                skip();
        assert_int_equal(WEXITSTATUS(status), 0);
}

static int history_count_child(Store *s, const char *serial, size_t *ret)
{
        CustodyRecord *h = NULL;
        int r;

        r = store_custody_history(s, serial, &h, ret);
        if (r < 0)
                return r;
        custody_records_free(h, *ret);
        return 0;
}

static int bind_read_only(const char *dir)
{
        /* The type is ignored here; "none" rather than NULL keeps valgrind from flagging the call. */
        if (mount(dir, dir, "none", MS_BIND, NULL) < 0 ||
            mount(NULL, dir, "none", MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
                return -errno;
        return 0;
}

/* The state directory read-only with nobody else using the database: opening it cannot work. */
static int read_only_unused(const char *path)
{
        Store *s = NULL;

        if (bind_read_only(tmpdir) < 0)
                return EXIT_SKIP;
        CHILD_CHECK(store_open(path, &s) == -EROFS);
        CHILD_CHECK(s == NULL);
        return EXIT_SUCCESS;
}

/* Read-only while another process has the database open (its WAL index exists): reads work, and every
 * write is refused with -EROFS without changing anything. */
static int read_only_in_use(const char *path)
{
        CustodyRecord a = record("RO", "x", "1/QĐ"), cur = {};
        Store *s = NULL;

        if (bind_read_only(tmpdir) < 0)
                return EXIT_SKIP;
        CHILD_CHECK(store_open(path, &s) == 0);
        CHILD_CHECK(store_custody_current(s, "RO", &cur) == 0);
        CHILD_CHECK(streq(cur.holder, "x"));
        custody_record_done(&cur);
        CHILD_CHECK(store_custody_add(s, &a, 2, "admin", NULL) == -EROFS);
        /* Equal to the current record: nothing to write, so nothing to refuse. */
        CHILD_CHECK(store_custody_import(s, &a, 1, 2, "admin") == 0);
        a.holder = (char *) "y";
        CHILD_CHECK(store_custody_import(s, &a, 1, 2, "admin") == -EROFS);
        CHILD_CHECK(store_token_seen(s, "RO", "m", "m", "l", 2) == -EROFS);
        CHILD_CHECK(store_custody_set_state(s, "RO", CUSTODY_STATE_LOST, NULL, 2, "admin") == -EROFS);
        CHILD_CHECK(store_custody_set_pin_change_required(s, "RO", true, 2, "admin") == -EROFS);
        CHILD_CHECK(store_handover(s, "RO", "z", "1/BB", false, 2, "admin") == -EROFS);
        CHILD_CHECK(store_custody_current(s, "RO", &cur) == 0);
        CHILD_CHECK(streq(cur.holder, "x") && cur.state == CUSTODY_STATE_ACTIVE && !cur.pin_change_required);
        custody_record_done(&cur);
        store_close(s);
        return EXIT_SUCCESS;
}

static void test_read_only(void **state)
{
        char path[PATH_MAX];
        CustodyRecord a = record("RO", "x", "1/QĐ");
        Store *s = NULL, *other = NULL;
        Handover *h = NULL;
        size_t n;

        snprintf(path, sizeof(path), "%s", db_path("readonly"));
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(store_custody_add(s, &a, 1, "admin", NULL), 0);
        store_close(s);

        run_in_mount_namespace(read_only_unused, path);

        assert_int_equal(store_open(path, &other), 0);
        run_in_mount_namespace(read_only_in_use, path);
        assert_int_equal(history_count(other, "RO"), 1);
        assert_int_equal(store_handovers(other, "RO", &h, &n), 0);
        assert_int_equal(n, 0);
        free(h);
        store_close(other);
}

/*
 * A tiny tmpfs fills up: the write that does not fit returns -ENOSPC and
 * leaves no trace, and what committed before is intact. Then a ballast file
 * is removed to make room for a small record but not for the big ones after
 * it: an import of both adds neither, though the small one alone fits.
 */
static int disk_full(const char *dir)
{
        char mnt[PATH_MAX], path[PATH_MAX + 16], ballast[PATH_MAX + 16], *big;
        CustodyRecord a = record("FULL", "x", "1/QĐ"), recs[6];
        Store *s = NULL;
        size_t n, m, size = 16 * 1024;
        int r = 0, fd;

        snprintf(mnt, sizeof(mnt), "%s/small", dir);
        CHILD_CHECK(mkdir(mnt, 0700) == 0);
        if (mount("tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=320k,mode=0700") < 0)
                return EXIT_SKIP;
        snprintf(path, sizeof(path), "%s/kyso.db", mnt);
        snprintf(ballast, sizeof(ballast), "%s/ballast", mnt);
        big = malloc(size);
        CHILD_CHECK(big);
        memset(big, 'x', size - 1);
        big[size - 1] = '\0';
        fd = open(ballast, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        CHILD_CHECK(fd >= 0);
        for (int i = 0; i < 4; i++)
                CHILD_CHECK(write(fd, big, size) == (ssize_t) size);
        close(fd);

        CHILD_CHECK(store_open(path, &s) == 0);
        a.state_reason = big;
        for (n = 0; n < 1000; n++) {
                r = store_custody_add(s, &a, (int64_t) n, "admin", NULL);
                if (r < 0)
                        break;
        }
        CHILD_CHECK(r == -ENOSPC);
        CHILD_CHECK(n > 0);
        CHILD_CHECK(history_count_child(s, "FULL", &m) == 0 && m == n);

        CHILD_CHECK(unlink(ballast) == 0);
        recs[0] = record("FULL", "small", "1/QĐ");
        for (size_t i = 1; i < ELEMENTSOF(recs); i++) {
                recs[i] = a;
                recs[i].holder = (char *) (i % 2 ? "y" : "z");
        }
        CHILD_CHECK(store_custody_import(s, recs, ELEMENTSOF(recs), 1, "admin") == -ENOSPC);
        CHILD_CHECK(history_count_child(s, "FULL", &m) == 0 && m == n);
        CHILD_CHECK(store_custody_import(s, recs, 1, 1, "admin") == 1);
        CHILD_CHECK(history_count_child(s, "FULL", &m) == 0 && m == n + 1);
        store_close(s);
        free(big);
        return EXIT_SUCCESS;
}

static void test_disk_full(void **state)
{
        run_in_mount_namespace(disk_full, tmpdir);
}

typedef struct Report {
        int64_t kind; /* REPORT_* */
        int64_t value;
} Report;

enum { REPORT_CUSTODY, REPORT_HANDOVER, REPORT_SEEN, REPORT_IMPORT };

/* An import in the crash test: records for one serial of its own, with text long enough to span pages, so
 * that a torn commit would show as a batch neither whole nor absent. */
#define BATCH 32

static void batch_serial(char *buf, size_t size, int64_t i)
{
        snprintf(buf, size, "BATCH-%" PRId64, i);
}

/* Writes as fast as it can and reports each write after the store said it committed. Never returns. */
_Noreturn static void crash_child(const char *path, int fd, int64_t base)
{
        CustodyRecord a = record("CRASH", "h0", "1/QĐ"), batch[BATCH];
        Store *s = NULL;
        char holder[32], serial[32], reason[600];

        if (store_open(path, &s) < 0)
                _exit(2);
        memset(reason, 'r', sizeof(reason) - 1);
        reason[sizeof(reason) - 1] = '\0';
        for (int64_t i = base;; i++) {
                Report rep = { .value = i };
                int64_t id = 0;
                int r;

                snprintf(holder, sizeof(holder), "h%" PRId64, i);
                switch (i % 4) {
                case 0:
                        a.holder = holder;
                        r = store_custody_add(s, &a, i, "crash", &id);
                        rep = (Report) { REPORT_CUSTODY, id };
                        break;
                case 1:
                        r = store_handover(s, "CRASH", holder, "BB", i % 2, i, "crash");
                        rep.kind = REPORT_HANDOVER;
                        break;
                case 2:
                        r = store_token_seen(s, "CRASH", "m", "m", holder, i);
                        rep.kind = REPORT_SEEN;
                        break;
                default:
                        batch_serial(serial, sizeof(serial), i);
                        for (size_t k = 0; k < BATCH; k++) {
                                batch[k] = record(serial, k % 2 ? "x" : "y", "1/QĐ");
                                batch[k].state_reason = reason;
                        }
                        r = store_custody_import(s, batch, BATCH, i, "crash");
                        if (r >= 0 && r != BATCH)
                                _exit(5);
                        rep.kind = REPORT_IMPORT;
                        break;
                }
                if (r < 0)
                        _exit(3);
                if (write(fd, &rep, sizeof(rep)) != (ssize_t) sizeof(rep))
                        _exit(4);
        }
}

static uint64_t now_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

static bool has_handover_to(const Handover *h, size_t n, int64_t i)
{
        char holder[32];

        snprintf(holder, sizeof(holder), "h%" PRId64, i);
        for (size_t k = 0; k < n; k++)
                if (streq(h[k].to_holder, holder))
                        return true;
        return false;
}

static bool has_record(const CustodyRecord *h, size_t n, int64_t id)
{
        for (size_t k = 0; k < n; k++)
                if (h[k].id == id)
                        return true;
        return false;
}

/* Every import is whole or absent, and every reported one is there. */
static void check_batches(Store *s, const Report *reports, size_t n_reports, unsigned it)
{
        CustodyRecord *all = NULL;
        char serial[32];
        size_t n_all = 0;

        assert_int_equal(store_custody_all(s, &all, &n_all), 0);
        for (size_t k = 0; k < n_all; k++)
                if (strncmp(all[k].serial, "BATCH-", 6) == 0 && history_count(s, all[k].serial) != BATCH)
                        fail_msg("iteration %u: import %s is torn: %zu of %d records", it, all[k].serial,
                                 history_count(s, all[k].serial), BATCH);
        custody_records_free(all, n_all);
        for (size_t k = 0; k < n_reports; k++) {
                if (reports[k].kind != REPORT_IMPORT)
                        continue;
                batch_serial(serial, sizeof(serial), reports[k].value);
                if (history_count(s, serial) != BATCH)
                        fail_msg("iteration %u: committed import %s is lost", it, serial);
        }
}

/*
 * SIGKILL at a random moment while the child writes: the file passes
 * integrity_check and holds every write the child was told had committed.
 * This catches a write reported before its COMMIT, a transaction left open,
 * and a journal setting that lets a killed writer tear the file. It cannot
 * catch synchronous=NORMAL or OFF: after SIGKILL the kernel still writes
 * out the page cache; only a power cut would show the difference.
 */
static void test_crash_safety(void **state)
{
        const unsigned iterations = 100;
        unsigned seed = (unsigned) time(NULL) ^ (unsigned) getpid();
        char path[PATH_MAX];
        size_t total = 0;

        snprintf(path, sizeof(path), "%s", db_path("crash"));
        print_message("crash seed %u\n", seed);
        for (unsigned it = 0; it < iterations; it++) {
                unsigned wait_usec = 1000 + (unsigned) rand_r(&seed) % 30000;
                Report *reports = NULL;
                size_t n_reports = 0, allocated = 0, filled = 0;
                Report buf[256];
                uint64_t deadline = 0;
                int pipefd[2], status;
                bool killed = false;
                pid_t pid;

                assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
                fflush(NULL);
                pid = fork();
                assert_true(pid >= 0);
                if (pid == 0) {
                        close(pipefd[0]);
                        crash_child(path, pipefd[1], (int64_t) it * 1000000);
                }
                close(pipefd[1]);

                /* Read until the deadline (counted from the first committed write), then kill, then drain:
                 * whatever is in the pipe was committed before the kill. */
                for (;;) {
                        struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
                        int timeout = 10000;
                        ssize_t k;

                        if (deadline > 0 && !killed) {
                                uint64_t t = now_usec();

                                if (t >= deadline) {
                                        assert_int_equal(kill(pid, SIGKILL), 0);
                                        killed = true;
                                } else
                                        timeout = (int) ((deadline - t + 999) / 1000);
                        }
                        if (!killed) {
                                int pr = poll(&p, 1, timeout);

                                assert_true(pr >= 0);
                                if (pr == 0)
                                        continue;
                        }
                        k = read(pipefd[0], (char *) buf + filled, sizeof(buf) - filled);
                        assert_true(k >= 0);
                        if (k == 0)
                                break;
                        filled += (size_t) k;
                        if (n_reports + filled / sizeof(Report) > allocated) {
                                allocated = (n_reports + filled / sizeof(Report)) * 2;
                                reports = realloc(reports, allocated * sizeof(Report));
                                assert_non_null(reports);
                        }
                        memcpy(reports + n_reports, buf, filled / sizeof(Report) * sizeof(Report));
                        n_reports += filled / sizeof(Report);
                        memmove(buf, (char *) buf + filled / sizeof(Report) * sizeof(Report),
                                filled % sizeof(Report));
                        filled %= sizeof(Report);
                        if (deadline == 0 && n_reports > 0)
                                deadline = now_usec() + wait_usec;
                }
                close(pipefd[0]);
                assert_int_equal(waitpid(pid, &status, 0), pid);
                if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
                        fail_msg("iteration %u: the writer died on its own (status 0x%x)", it,
                                 (unsigned) status);

                {
                        _cleanup_(freep) char *ok = integrity_check(path);

                        if (!streq(ok, "ok"))
                                fail_msg("iteration %u (seed above): integrity_check: %s", it, ok);
                }
                {
                        Store *s = NULL;
                        CustodyRecord *h = NULL;
                        Handover *ho = NULL;
                        StoreToken t = {};
                        size_t n_h = 0, n_ho = 0;
                        int64_t seen = INT64_MIN;

                        assert_int_equal(store_open(path, &s), 0);
                        assert_int_equal(store_custody_history(s, "CRASH", &h, &n_h), 0);
                        assert_int_equal(store_handovers(s, "CRASH", &ho, &n_ho), 0);
                        for (size_t k = 0; k < n_reports; k++) {
                                const Report *r = &reports[k];

                                if (r->kind == REPORT_CUSTODY && !has_record(h, n_h, r->value))
                                        fail_msg("iteration %u: committed custody record %" PRId64
                                                 " is lost", it, r->value);
                                if (r->kind == REPORT_HANDOVER && !has_handover_to(ho, n_ho, r->value))
                                        fail_msg("iteration %u: committed handover %" PRId64 " is lost", it,
                                                 r->value);
                                if (r->kind == REPORT_SEEN && r->value > seen)
                                        seen = r->value;
                        }
                        if (seen != INT64_MIN) {
                                assert_int_equal(store_token_get(s, "CRASH", &t), 0);
                                if (t.last_seen < seen)
                                        fail_msg("iteration %u: token seen at %" PRId64
                                                 " is lost (last_seen %" PRId64 ")", it, seen, t.last_seen);
                                store_token_done(&t);
                        }
                        custody_records_free(h, n_h);
                        handovers_free(ho, n_ho);
                        check_batches(s, reports, n_reports, it);
                        store_close(s);
                }
                total += n_reports;
                free(reports);
        }
        print_message("crash: %u kills, %zu committed writes checked\n", iterations, total);
        assert_true(total > 0);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path);
}

static int setup(void **state)
{
        const char *base = getenv("TMPDIR");

        /* Quiet: failures the tests provoke on purpose would fill the log. KYSO_LOG_LEVEL overrides. */
        log_setup("test-store", LOG_CRIT);
        /* Not /tmp, which is often tmpfs, where fsync means nothing. */
        snprintf(tmpdir, sizeof(tmpdir), "%s/test-store.XXXXXX", base ?: "/var/tmp");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
        return nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_open_create),
                cmocka_unit_test(test_tokens),
                cmocka_unit_test(test_custody),
                cmocka_unit_test(test_enum_strings),
                cmocka_unit_test(test_set_state_and_pin_change),
                cmocka_unit_test(test_handover),
                cmocka_unit_test(test_import),
                cmocka_unit_test(test_utf8_round_trip),
                cmocka_unit_test(test_newer_schema_refused),
                cmocka_unit_test(test_read_only),
                cmocka_unit_test(test_disk_full),
                cmocka_unit_test(test_crash_safety),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
