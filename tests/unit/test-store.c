/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The store against real database files in a temporary directory: schema
 * and migrations (a version-1 file made with the version-1 SQL), tokens,
 * custody records, handovers, all-or-none imports, Vietnamese text, a newer
 * schema left alone, PIN changes, certificates, the audit log's hash chain
 * and the tampering it must show, a read-only file system and a full one (in
 * a private mount namespace, skipped where that is not allowed), and SIGKILL
 * in the middle of writes losing nothing that was reported committed.
 */
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

/* ---- schema 2: migration from version 1 ---- */

/* The schema a version-1 kysod wrote (migration 1 as released), kept here verbatim so that this test goes
 * on building real version-1 files however store.c changes. */
static const char v1_schema[] =
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
        "PRAGMA user_version = 1;\n";

/* A version-1 file as a version-1 kysod left it: WAL mode, a token, a token's custody history (record 2
 * deleted by hand, so AUTOINCREMENT's memory matters), a handover. */
static void make_v1_database(const char *path, const char *extra_sql)
{
        raw_exec(path, "PRAGMA journal_mode = WAL");
        raw_exec(path, v1_schema);
        raw_exec(path,
                "INSERT INTO tokens VALUES ('V1-TOK', 'Bkav Corp', 'BkavCA', 'Chữ ký số', 100, 200);"
                "INSERT INTO custody VALUES (1, 'V1-TOK', 'personal', 'nguyenvana', NULL, '1/QĐ', "
                "'2024-01-02', NULL, 1700000000, 0, 'active', NULL, 0, 10, 'admin', 10, 'admin');"
                "INSERT INTO custody VALUES (2, 'V1-TOK', 'personal', 'x', NULL, '1/QĐ', "
                "'2024-01-02', NULL, 1700000000, 0, 'active', NULL, 0, 15, 'admin', 15, 'admin');"
                "INSERT INTO custody VALUES (3, 'V1-TOK', 'organization', '@vanthu', 'UBND', '2/QĐ', "
                "'2024-02-03', 'Trần B', 1700000000, 1800000000, 'locked', 'khoá', 1, 20, 'admin', 30, "
                "'clerk');"
                "DELETE FROM custody WHERE id = 3;"
                "INSERT INTO custody VALUES (3, 'V1-TOK', 'organization', '@vanthu', 'UBND', '2/QĐ', "
                "'2024-02-03', 'Trần B', 1700000000, 1800000000, 'locked', 'khoá', 1, 20, 'admin', 30, "
                "'clerk');"
                "INSERT INTO custody VALUES (4, 'V1-TOK', 'personal', 'gone', NULL, '3/QĐ', "
                "'2024-03-04', NULL, 1700000000, 0, 'active', NULL, 0, 40, 'admin', 40, 'admin');"
                "DELETE FROM custody WHERE id IN (2, 4);"
                "INSERT INTO handovers VALUES (1, 'V1-TOK', 'nguyenvana', '@vanthu', '05/BB', 20, "
                "'admin');");
        if (extra_sql)
                raw_exec(path, extra_sql);
        assert_int_equal(raw_int(path, "PRAGMA user_version"), 1);
}

static void test_migrate_from_v1(void **state)
{
        char path[PATH_MAX];
        Store *s = NULL;
        StoreToken t = {};
        CustodyRecord cur = {}, *h = NULL, add = record("V1-TOK", "tranthib", "9/QĐ");
        Handover *ho = NULL;
        AuditRecord a = { .at = 50, .event = (char *) "login", .result = (char *) "CKR_OK" };
        AuditVerdict v;
        int64_t id = 0, at = 0;
        size_t n = 0;

        snprintf(path, sizeof(path), "%s", db_path("v1"));
        make_v1_database(path, NULL);
        assert_int_equal(store_schema_version(), 2);

        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(raw_int(path, "PRAGMA user_version"), 2);
        assert_int_equal(raw_int(path,
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                "('pin_changes', 'certificates', 'audit', 'audit_head')"), 4);
        assert_int_equal(raw_int(path,
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                "('pin_changes_serial_at', 'certificates_serial', 'audit_serial_at', 'audit_uid_at', "
                "'audit_at')"), 5);

        /* Every version-1 row is still there, unchanged. */
        assert_int_equal(store_token_get(s, "V1-TOK", &t), 0);
        assert_string_equal(t.manufacturer, "Bkav Corp");
        assert_string_equal(t.label, "Chữ ký số");
        assert_int_equal(t.first_seen, 100);
        assert_int_equal(t.last_seen, 200);
        store_token_done(&t);
        assert_int_equal(store_custody_history(s, "V1-TOK", &h, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(h[0].id, 1);
        assert_string_equal(h[0].holder, "nguyenvana");
        assert_int_equal(h[1].id, 3);
        assert_int_equal(h[1].kind, CUSTODY_KIND_ORGANIZATION);
        assert_string_equal(h[1].holder, "@vanthu");
        assert_string_equal(h[1].organization, "UBND");
        assert_string_equal(h[1].decision_signer, "Trần B");
        assert_int_equal(h[1].valid_until, 1800000000);
        assert_int_equal(h[1].state, CUSTODY_STATE_LOCKED);
        assert_string_equal(h[1].state_reason, "khoá");
        assert_true(h[1].pin_change_required);
        assert_int_equal(h[1].updated_at, 30);
        assert_string_equal(h[1].updated_by, "clerk");
        custody_records_free(h, n);
        assert_int_equal(store_handovers(s, "V1-TOK", &ho, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(ho[0].to_holder, "@vanthu");
        handovers_free(ho, n);

        /* AUTOINCREMENT's memory came along: a deleted id is not handed out again, and the new record is
         * the current one. */
        assert_int_equal(store_custody_add(s, &add, 60, "admin", &id), 0);
        assert_int_equal(id, 5);
        assert_int_equal(store_custody_current(s, "V1-TOK", &cur), 0);
        assert_string_equal(cur.holder, "tranthib");
        custody_record_done(&cur);

        /* The new tables work, and start empty. */
        assert_int_equal(store_audit_verify(s, &v), 0);
        assert_true(v.intact);
        assert_int_equal(v.checked, 0);
        assert_int_equal(store_pin_last_change(s, "V1-TOK", &at), -ENOENT);
        assert_int_equal(store_pin_changed(s, "V1-TOK", 70, 1000, "C_SetPIN"), 0);
        assert_int_equal(store_audit_append(s, &a), 0);
        assert_int_equal(a.id, 1);
        store_close(s);

        /* Opening again migrates nothing. */
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(store_pin_last_change(s, "V1-TOK", &at), 0);
        assert_int_equal(at, 70);
        assert_int_equal(store_audit_verify(s, &v), 0);
        assert_true(v.intact);
        assert_int_equal(v.checked, 1);
        store_close(s);
        assert_int_equal(raw_int(path, "PRAGMA user_version"), 2);
        {
                _cleanup_(freep) char *ok = integrity_check(path);

                assert_string_equal(ok, "ok");
        }
}

/* Migration 2 runs in one transaction: if any statement of it fails, none of it stays, and the file is a
 * version-1 file with its data, as before. */
static void test_migrate_from_v1_fails_whole(void **state)
{
        char path[PATH_MAX];
        Store *s = NULL;

        snprintf(path, sizeof(path), "%s", db_path("v1-conflict"));
        /* A table in the way of the last CREATE TABLE of migration 2. */
        make_v1_database(path, "CREATE TABLE audit_head (x)");
        assert_int_equal(store_open(path, &s), -EIO);
        assert_null(s);
        assert_int_equal(raw_int(path, "PRAGMA user_version"), 1);
        assert_int_equal(raw_int(path,
                "SELECT count(*) FROM sqlite_master WHERE name IN ('pin_changes', 'certificates', 'audit')"),
                0);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM custody"), 2);

        /* Out of the way, the same file migrates. */
        raw_exec(path, "DROP TABLE audit_head");
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(raw_int(path, "PRAGMA user_version"), 2);
        assert_int_equal(history_count(s, "V1-TOK"), 2);
        store_close(s);
}

/* ---- PIN changes ---- */

static void test_pin_changes(void **state)
{
        Store *s = NULL;
        int64_t at = -7;

        assert_int_equal(store_open(db_path("pin"), &s), 0);
        assert_int_equal(store_pin_last_change(s, "PIN-A", &at), -ENOENT);
        assert_int_equal(at, -7); /* untouched */

        assert_int_equal(store_pin_changed(s, "PIN-A   ", 100, 1000, "C_InitPIN"), 0);
        assert_int_equal(store_pin_last_change(s, "PIN-A", &at), 0);
        assert_int_equal(at, 100);
        assert_int_equal(store_pin_changed(s, "PIN-A", 300, 1000, "C_SetPIN"), 0);
        /* Recorded later with an earlier time (a clock set back): the PIN is not older than 300. */
        assert_int_equal(store_pin_changed(s, "PIN-A", 200, 0, "C_SetPIN"), 0);
        assert_int_equal(store_pin_last_change(s, "  PIN-A", &at), 0);
        assert_int_equal(at, 300);
        assert_int_equal(store_pin_changed(s, "PIN-B", 400, 1001, "C_SetPIN"), 0);
        assert_int_equal(store_pin_last_change(s, "PIN-A", &at), 0);
        assert_int_equal(at, 300);
        assert_int_equal(store_pin_last_change(s, "PIN-B", &at), 0);
        assert_int_equal(at, 400);
        assert_int_equal(raw_int(db_path("pin"), "SELECT count(*) FROM pin_changes WHERE serial = 'PIN-A'"),
                         3);
        assert_int_equal(raw_int(db_path("pin"), "SELECT uid FROM pin_changes WHERE at = 400"), 1001);

        assert_int_equal(store_pin_changed(s, NULL, 1, 0, "C_SetPIN"), -EINVAL);
        assert_int_equal(store_pin_changed(s, "   ", 1, 0, "C_SetPIN"), -EINVAL);
        assert_int_equal(store_pin_changed(s, "PIN-C", 1, 0, NULL), -EINVAL);
        assert_int_equal(store_pin_changed(s, "PIN-C", 1, 0, ""), -EINVAL);
        assert_int_equal(store_pin_last_change(s, "PIN-C", &at), -ENOENT);
        assert_int_equal(store_pin_last_change(s, "PIN-A", NULL), -EINVAL);
        assert_int_equal(store_pin_last_change(NULL, "PIN-A", &at), -EINVAL);
        store_close(s);
}

/* ---- certificates ---- */

static void test_certificates(void **state)
{
        Store *s = NULL;
        StoreCertificate c[2] = {
                {
                        .serial = (char *) "ignored",
                        .key_id = (char *) "0a1b2c",
                        .label = (char *) "Chữ ký số",
                        .subject = (char *) "CN=Nguyễn Văn A,O=UBND,C=VN",
                        .issuer = (char *) "CN=Bkav CA,O=Bkav Corporation,C=VN",
                        .not_before = 1700000000,
                        .not_after = 1800000000,
                },
                { .subject = (char *) "CN=second", .not_before = -5, .not_after = INT64_MAX },
        };
        StoreCertificate *got = NULL;
        size_t n = 99;

        assert_int_equal(store_open(db_path("certs"), &s), 0);
        assert_int_equal(store_certificates(s, "CERT-A", &got, &n), 0);
        assert_int_equal(n, 0);
        free(got);

        assert_int_equal(store_certificates_set(s, "CERT-A  ", c, 2), 0);
        assert_int_equal(store_certificates_set(s, "CERT-B", c, 1), 0);
        assert_int_equal(store_certificates(s, "CERT-A", &got, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(got[0].serial, "CERT-A"); /* the argument's, trimmed */
        assert_string_equal(got[0].key_id, "0a1b2c");
        assert_string_equal(got[0].label, "Chữ ký số");
        assert_string_equal(got[0].subject, "CN=Nguyễn Văn A,O=UBND,C=VN");
        assert_string_equal(got[0].issuer, "CN=Bkav CA,O=Bkav Corporation,C=VN");
        assert_int_equal(got[0].not_before, 1700000000);
        assert_int_equal(got[0].not_after, 1800000000);
        /* Missing strings come back empty, never NULL. */
        assert_string_equal(got[1].serial, "CERT-A");
        assert_string_equal(got[1].key_id, "");
        assert_string_equal(got[1].label, "");
        assert_string_equal(got[1].subject, "CN=second");
        assert_string_equal(got[1].issuer, "");
        assert_true(got[1].not_before == -5);
        assert_true(got[1].not_after == INT64_MAX);
        store_certificates_free(got, n);

        /* Replaced, not added to; another token's stay. */
        c[1].key_id = (char *) "ff";
        assert_int_equal(store_certificates_set(s, "CERT-A", &c[1], 1), 0);
        assert_int_equal(store_certificates(s, "CERT-A", &got, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(got[0].key_id, "ff");
        store_certificates_free(got, n);
        assert_int_equal(store_certificates_set(s, "CERT-A", NULL, 0), 0);
        assert_int_equal(store_certificates(s, "CERT-A", &got, &n), 0);
        assert_int_equal(n, 0);
        store_certificates_free(got, n);
        assert_int_equal(store_certificates(s, "CERT-B", &got, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(got[0].subject, "CN=Nguyễn Văn A,O=UBND,C=VN");
        store_certificates_free(got, n);

        assert_int_equal(store_certificates_set(s, "CERT-B", NULL, 1), -EINVAL);
        assert_int_equal(store_certificates_set(s, " ", c, 1), -EINVAL);
        assert_int_equal(store_certificates(s, NULL, &got, &n), -EINVAL);
        assert_int_equal(raw_int(db_path("certs"), "SELECT count(*) FROM certificates"), 1);
        store_certificate_done(NULL);
        store_certificates_free(NULL, 0);
        store_close(s);
}

/* ---- the audit log ---- */

static void put_be(uint8_t *buf, size_t *n, uint64_t v, int bytes)
{
        for (int i = bytes - 1; i >= 0; i--)
                buf[(*n)++] = (uint8_t) (v >> (8 * i));
}

/* The chain's formula written out again, independently of the store: a change to either shows here. */
static void expected_hash(const uint8_t prev[32], int64_t id, const AuditRecord *r, uint8_t out[32])
{
        const char *texts[] = {
                r->event, r->exe, r->serial, r->key_id, r->key_label, r->mechanism, r->result, r->detail,
        };
        uint8_t buf[8192];
        unsigned len = 0;
        size_t n = 0;

        memcpy(buf, prev, 32);
        n = 32;
        put_be(buf, &n, (uint64_t) id, 8);
        put_be(buf, &n, (uint64_t) r->at, 8);
        put_be(buf, &n, r->uid, 4);
        put_be(buf, &n, (uint32_t) r->pid, 4);
        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                const char *t = texts[i] ?: "";
                size_t l = strlen(t);

                assert_true(n + 4 + l <= sizeof(buf));
                put_be(buf, &n, l, 4);
                memcpy(buf + n, t, l);
                n += l;
        }
        assert_int_equal(EVP_Digest(buf, n, out, &len, EVP_sha256(), NULL), 1);
        assert_int_equal(len, 32);
}

/* The i-th record of the logs below (i from 1). */
static AuditRecord audit_sample(int i, char *detail, size_t size)
{
        static const char *const events[] = { "login", "sign", "sign", "logout" };

        snprintf(detail, size, "bản ghi %d", i);
        return (AuditRecord) {
                .at = 1000 + 10 * i,
                .event = (char *) events[i % 4],
                .uid = 1000 + (uint32_t) (i % 3),
                .pid = 4000 + i,
                .exe = (char *) "/usr/bin/libreoffice",
                .serial = (char *) (i % 2 ? "TOK-A" : "TOK-B"),
                .key_id = (char *) "0a1b",
                .key_label = (char *) "Khóa ký",
                .mechanism = (char *) (i % 4 == 1 || i % 4 == 2 ? "CKM_SHA256_RSA_PKCS" : ""),
                .result = (char *) (i % 5 == 0 ? "CKR_PIN_INCORRECT" : "CKR_OK"),
                .detail = detail,
        };
}

static void audit_fill(Store *s, int from, int to)
{
        char detail[64];

        for (int i = from; i <= to; i++) {
                AuditRecord a = audit_sample(i, detail, sizeof(detail));

                assert_int_equal(store_audit_append(s, &a), 0);
                assert_int_equal(a.id, i);
        }
}

static AuditVerdict verify(const char *path)
{
        AuditVerdict v;
        Store *s = NULL;

        memset(&v, 0xaa, sizeof(v));
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(store_audit_verify(s, &v), 0);
        store_close(s);
        return v;
}

#define assert_intact(v)                                                                                   \
        do {                                                                                               \
                AuditVerdict _v = (v);                                                                     \
                if (!_v.intact)                                                                            \
                        fail_msg("not intact: record %" PRId64 ": %s", _v.first_bad_id, _v.reason);       \
                assert_int_equal(_v.first_bad_id, 0);                                                      \
        } while (0)

static void test_audit_append(void **state)
{
        char detail[64], path[PATH_MAX];
        AuditRecord a, b, *got = NULL;
        uint8_t zero[32] = {}, h[32];
        Store *s = NULL;
        size_t n;

        snprintf(path, sizeof(path), "%s", db_path("audit-append"));
        assert_int_equal(store_open(path, &s), 0);

        a = audit_sample(1, detail, sizeof(detail));
        assert_int_equal(store_audit_append(s, &a), 0);
        assert_int_equal(a.id, 1);
        assert_memory_equal(a.prev_hash, zero, 32);
        expected_hash(zero, 1, &a, h);
        assert_memory_equal(a.hash, h, 32);

        /* Only event is required; NULL strings are stored as "", the serial without its padding. */
        b = (AuditRecord) { .at = -3, .event = (char *) "custody", .uid = UINT32_MAX, .pid = -1,
                            .serial = (char *) "  TOK-A  " };
        assert_int_equal(store_audit_append(s, &b), 0);
        assert_int_equal(b.id, 2);
        assert_memory_equal(b.prev_hash, a.hash, 32);
        b.serial = (char *) "TOK-A";
        expected_hash(a.hash, 2, &b, h);
        assert_memory_equal(b.hash, h, 32);

        assert_int_equal(store_audit_query(s, NULL, &got, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(got[0].id, 1);
        assert_int_equal(got[0].at, 1010);
        assert_string_equal(got[0].event, "sign");
        assert_int_equal(got[0].uid, 1001);
        assert_int_equal(got[0].pid, 4001);
        assert_string_equal(got[0].exe, "/usr/bin/libreoffice");
        assert_string_equal(got[0].serial, "TOK-A");
        assert_string_equal(got[0].key_id, "0a1b");
        assert_string_equal(got[0].key_label, "Khóa ký");
        assert_string_equal(got[0].mechanism, "CKM_SHA256_RSA_PKCS");
        assert_string_equal(got[0].result, "CKR_OK");
        assert_string_equal(got[0].detail, "bản ghi 1");
        assert_memory_equal(got[0].prev_hash, zero, 32);
        assert_memory_equal(got[0].hash, a.hash, 32);
        assert_int_equal(got[1].at, -3);
        assert_int_equal(got[1].uid, UINT32_MAX);
        assert_int_equal(got[1].pid, -1);
        assert_string_equal(got[1].serial, "TOK-A");
        assert_string_equal(got[1].exe, "");
        assert_string_equal(got[1].key_id, "");
        assert_string_equal(got[1].key_label, "");
        assert_string_equal(got[1].mechanism, "");
        assert_string_equal(got[1].result, "");
        assert_string_equal(got[1].detail, "");
        assert_memory_equal(got[1].prev_hash, a.hash, 32);
        assert_memory_equal(got[1].hash, b.hash, 32);
        audit_records_free(got, n);

        /* Refused, and nothing is written or filled in. */
        b = (AuditRecord) { .id = 77, .event = (char *) "" };
        assert_int_equal(store_audit_append(s, &b), -EINVAL);
        b.event = NULL;
        assert_int_equal(store_audit_append(s, &b), -EINVAL);
        assert_int_equal(b.id, 77);
        assert_int_equal(store_audit_append(s, NULL), -EINVAL);
        assert_int_equal(store_audit_append(NULL, &a), -EINVAL);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM audit"), 2);
        assert_int_equal(raw_int(path, "SELECT last_id FROM audit_head"), 2);
        audit_record_done(NULL);
        audit_records_free(NULL, 0);
        store_close(s);
}

static void assert_ids(const AuditRecord *a, size_t n, const int64_t *ids, size_t n_ids)
{
        if (n != n_ids)
                fail_msg("%zu records, expected %zu", n, n_ids);
        for (size_t i = 0; i < n; i++)
                if (a[i].id != ids[i])
                        fail_msg("record %zu is %" PRId64 ", expected %" PRId64, i, a[i].id, ids[i]);
}

#define QUERY(s, uid_, expect, ...)                                                                        \
        do {                                                                                               \
                const AuditFilter _f = { .uid = (uid_), __VA_ARGS__ };                                      \
                const int64_t _ids[] = expect;                                                             \
                AuditRecord *_a = NULL;                                                                    \
                size_t _n = 0;                                                                             \
                assert_int_equal(store_audit_query((s), &_f, &_a, &_n), 0);                                \
                assert_ids(_a, _n, _ids, ELEMENTSOF(_ids) - 1);                                            \
                audit_records_free(_a, _n);                                                                \
        } while (0)
/* The id lists end in a 0 that is not an id, so that an empty answer can be written NONE. */
#define IDS(...) { __VA_ARGS__, 0 }
#define NONE { 0 }

static void test_audit_query(void **state)
{
        Store *s = NULL;
        AuditFilter f = { .uid = -2 };
        AuditRecord *got = NULL;
        uint64_t count = 99;
        size_t n;

        assert_int_equal(store_open(db_path("audit-query"), &s), 0);
        QUERY(s, -1, NONE, .since = 0); /* nothing yet */
        /* Records 1..12: at = 1000 + 10 i; event login (i%4 0), sign (1, 2), logout (3); uid 1000 + i%3;
         * serial TOK-A for odd i; result CKR_PIN_INCORRECT for i%5 == 0. */
        audit_fill(s, 1, 12);

        QUERY(s, -1, IDS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12), .since = 0);
        QUERY(s, -1, IDS(3, 4, 5), .since = 1030, .until = 1060);
        QUERY(s, -1, IDS(10, 11, 12), .since = 1100);
        QUERY(s, -1, IDS(1, 2), .until = 1030);
        QUERY(s, -1, IDS(1, 3, 5, 7, 9, 11), .serial = "TOK-A");
        QUERY(s, -1, IDS(1, 3, 5, 7, 9, 11), .serial = "TOK-A    ");
        QUERY(s, 1002, IDS(2, 5, 8, 11), .since = 0);
        QUERY(s, -1, IDS(1, 2, 5, 6, 9, 10), .event = "sign");
        QUERY(s, -1, IDS(5, 9), .event = "sign", .serial = "TOK-A", .since = 1020, .until = 1100);
        QUERY(s, 1002, IDS(5, 11), .serial = "TOK-A");
        QUERY(s, -1, NONE, .serial = "TOK-C");
        QUERY(s, -1, NONE, .event = "decrypt");
        QUERY(s, 0, NONE, .since = 0);
        /* The newest `limit`, oldest first. */
        QUERY(s, -1, IDS(10, 11, 12), .limit = 3);
        QUERY(s, -1, IDS(12), .limit = 1);
        QUERY(s, -1, IDS(9, 10), .event = "sign", .limit = 2);
        QUERY(s, -1, IDS(7, 9), .serial = "TOK-A", .until = 1110, .limit = 2);
        QUERY(s, -1, IDS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12), .limit = 100);
        QUERY(s, -1, IDS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12), .limit = SIZE_MAX);

        got = (AuditRecord *) &f;
        n = 42;
        assert_int_equal(store_audit_query(s, &f, &got, &n), -EINVAL);
        f.uid = (int64_t) UINT32_MAX + 1;
        assert_int_equal(store_audit_query(s, &f, &got, &n), -EINVAL);
        assert_ptr_equal(got, &f);
        assert_int_equal(n, 42);
        f.uid = UINT32_MAX;
        assert_int_equal(store_audit_query(s, &f, &got, &n), 0);
        assert_int_equal(n, 0);
        free(got);

        /* Successful signatures of TOK-B: i = 2, 6 (10 failed); of TOK-A: 1 and 9 (5 failed). */
        assert_int_equal(store_audit_count(s, "TOK-B", "sign", 0, 0, &count), 0);
        assert_int_equal(count, 2);
        assert_int_equal(store_audit_count(s, "TOK-A", "sign", 0, 0, &count), 0);
        assert_int_equal(count, 2);
        /* [since, until): since counts, until does not. */
        assert_int_equal(store_audit_count(s, "TOK-A", "sign", 1010, 1090, &count), 0);
        assert_int_equal(count, 1);
        assert_int_equal(store_audit_count(s, "TOK-A", "sign", 1011, 1090, &count), 0);
        assert_int_equal(count, 0);
        assert_int_equal(store_audit_count(s, "TOK-A", "sign", 1011, 1091, &count), 0);
        assert_int_equal(count, 1);
        assert_int_equal(store_audit_count(s, "TOK-A  ", "sign", 1090, 0, &count), 0);
        assert_int_equal(count, 1);
        assert_int_equal(store_audit_count(s, "TOK-A", "sign", 0, 1090, &count), 0);
        assert_int_equal(count, 1);
        assert_int_equal(store_audit_count(s, "TOK-A", "sign", 0, INT64_MIN, &count), 0);
        assert_int_equal(count, 0);
        assert_int_equal(store_audit_count(s, "TOK-B", "login", 0, 0, &count), 0);
        assert_int_equal(count, 3);
        assert_int_equal(store_audit_count(s, "TOK-B", "logout", 0, 0, &count), 0);
        assert_int_equal(count, 0);
        count = 7;
        assert_int_equal(store_audit_count(s, NULL, "sign", 0, 0, &count), -EINVAL);
        assert_int_equal(store_audit_count(s, "TOK-A", "", 0, 0, &count), -EINVAL);
        assert_int_equal(count, 7);
        store_close(s);
}

static void test_audit_verify_intact(void **state)
{
        char path[PATH_MAX];
        AuditVerdict v;
        Store *s = NULL;

        snprintf(path, sizeof(path), "%s", db_path("audit-intact"));
        assert_int_equal(store_open(path, &s), 0);
        /* No records and no head: nothing was ever logged, and that is intact. */
        memset(&v, 0xaa, sizeof(v));
        assert_int_equal(store_audit_verify(s, &v), 0);
        assert_intact(v);
        assert_int_equal(v.checked, 0);
        assert_string_equal(v.reason, "");

        audit_fill(s, 1, 1);
        assert_int_equal(store_audit_verify(s, &v), 0);
        assert_intact(v);
        assert_int_equal(v.checked, 1);

        audit_fill(s, 2, 1000);
        assert_int_equal(store_audit_verify(s, &v), 0);
        assert_intact(v);
        assert_int_equal(v.checked, 1000);
        store_close(s);

        /* Closed and opened again, and the head agrees. */
        v = verify(path);
        assert_intact(v);
        assert_int_equal(v.checked, 1000);
        assert_int_equal(raw_int(path, "SELECT last_id FROM audit_head WHERE k = 1"), 1000);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM audit_head"), 1);
        assert_int_equal(store_audit_verify(NULL, &v), -EINVAL);
}

/* A fresh log of n records, tampered with by sql on a connection of its own, then verified. */
static AuditVerdict tampered(const char *name, int n, const char *sql)
{
        char path[PATH_MAX];
        Store *s = NULL;

        snprintf(path, sizeof(path), "%s", db_path(name));
        assert_int_equal(store_open(path, &s), 0);
        audit_fill(s, 1, n);
        store_close(s);
        assert_intact(verify(path));
        raw_exec(path, sql);
        return verify(path);
}

#define assert_broken(v, id, why)                                                                          \
        do {                                                                                               \
                AuditVerdict _v = (v);                                                                     \
                if (_v.intact)                                                                             \
                        fail_msg("tampering not caught (expected record %d: %s)", (int) (id), why);        \
                if (_v.first_bad_id != (id) || !streq(_v.reason, why))                                     \
                        fail_msg("caught at record %" PRId64 " (%s), expected %d (%s)", _v.first_bad_id,   \
                                 _v.reason, (int) (id), why);                                              \
        } while (0)

/* (a) One field of a middle record changed: every field is covered by the hash, and the type counts too. */
static void test_audit_tamper_update(void **state)
{
        static const char *const edits[] = {
                "at = at + 1",
                "uid = uid + 1",
                "pid = pid + 1",
                "event = 'logout'",
                "exe = '/tmp/evil'",
                "serial = 'TOK-Z'",
                "key_id = '0a1c'",
                "key_label = 'Khoa ky'",
                "mechanism = 'CKM_RSA_PKCS'",
                "result = 'CKR_OK'", /* record 5 failed: now it looks as if it worked */
                "detail = detail || ' '",
                "detail = CAST(detail AS BLOB)",
                "uid = uid + 4294967296",
                "hash = zeroblob(32)",
        };
        char name[32], sql[128];

        for (size_t i = 0; i < ELEMENTSOF(edits); i++) {
                snprintf(name, sizeof(name), "tamper-a%zu", i);
                snprintf(sql, sizeof(sql), "UPDATE audit SET %s WHERE id = 5", edits[i]);
                assert_broken(tampered(name, 10, sql), 5, "record 5 was changed");
        }
        /* The link itself. */
        assert_broken(tampered("tamper-a-prev", 10,
                               "UPDATE audit SET prev_hash = zeroblob(32) WHERE id = 5"),
                      5, "record 5 does not follow record 4");
        assert_broken(tampered("tamper-a-first", 10, "UPDATE audit SET detail = 'x' WHERE id = 1"), 1,
                      "record 1 was changed");
        assert_broken(tampered("tamper-a-last", 10, "UPDATE audit SET detail = 'x' WHERE id = 10"), 10,
                      "record 10 was changed");
}

/* (b) A middle record deleted: the gap. */
static void test_audit_tamper_delete(void **state)
{
        assert_broken(tampered("tamper-b", 10, "DELETE FROM audit WHERE id = 5"), 5, "record 5 is missing");
        assert_broken(tampered("tamper-b-range", 10, "DELETE FROM audit WHERE id BETWEEN 3 AND 6"), 3,
                      "record 3 is missing");
        assert_broken(tampered("tamper-b-first", 10, "DELETE FROM audit WHERE id = 1"), 1,
                      "record 1 is missing");
}

/* (c) Records cut from the end leave a whole chain: only the head shows it. */
static void test_audit_tamper_truncate(void **state)
{
        assert_broken(tampered("tamper-c", 10, "DELETE FROM audit WHERE id = 10"), 10,
                      "records after 9 were deleted");
        assert_broken(tampered("tamper-c-3", 10, "DELETE FROM audit WHERE id >= 8"), 8,
                      "records after 7 were deleted");
        assert_broken(tampered("tamper-c-all", 10, "DELETE FROM audit"), 1, "every record was deleted");
        /* And the head: removed, moved back (as if the last records had been added behind its back), or
         * pointing at the right record with the wrong hash. */
        assert_broken(tampered("tamper-c-nohead", 10, "DELETE FROM audit_head"), 1, "the head is missing");
        assert_broken(tampered("tamper-c-back", 10, "UPDATE audit_head SET last_id = 8, last_hash = "
                                                    "(SELECT hash FROM audit WHERE id = 8)"),
                      9, "the head does not match: it names record 8, the last is 10");
        assert_broken(tampered("tamper-c-hash", 10, "UPDATE audit_head SET last_hash = zeroblob(32)"), 10,
                      "the head does not match record 10");
        assert_broken(tampered("tamper-c-bad", 10, "UPDATE audit_head SET last_hash = x'00'"), 10,
                      "the head is damaged");
        /* Both cut and head moved back with them: the one thing a keyless chain cannot see. */
        assert_intact(tampered("tamper-c-both", 10,
                               "DELETE FROM audit WHERE id > 8; UPDATE audit_head SET last_id = 8, "
                               "last_hash = (SELECT hash FROM audit WHERE id = 8)"));
}

/* (d) Records reordered: contents swapped under the same ids, or ids swapped. */
static void test_audit_tamper_reorder(void **state)
{
        static const char cols[] = "at, event, uid, pid, exe, serial, key_id, key_label, mechanism, result, "
                                   "detail, prev_hash, hash";
        char sql[1024];

        snprintf(sql, sizeof(sql),
                 "CREATE TEMP TABLE t AS SELECT * FROM audit WHERE id IN (4, 6);"
                 "UPDATE audit SET (%s) = (SELECT %s FROM t WHERE t.id = 10 - audit.id) WHERE id IN (4, 6);",
                 cols, cols);
        assert_broken(tampered("tamper-d", 10, sql), 4, "record 4 does not follow record 3");
        assert_broken(tampered("tamper-d-ids", 10,
                               "UPDATE audit SET id = -4 WHERE id = 4; UPDATE audit SET id = 4 WHERE id = 6;"
                               "UPDATE audit SET id = 6 WHERE id = -4"),
                      4, "record 4 does not follow record 3");
        /* Neighbours, the last two (where the head still names id 10), and a record moved to id 0. */
        assert_broken(tampered("tamper-d-next", 10,
                               "UPDATE audit SET id = -4 WHERE id = 4; UPDATE audit SET id = 4 WHERE id = 5;"
                               "UPDATE audit SET id = 5 WHERE id = -4"),
                      4, "record 4 does not follow record 3");
        assert_broken(tampered("tamper-d-end", 10,
                               "UPDATE audit SET id = -9 WHERE id = 9; "
                               "UPDATE audit SET id = 9 WHERE id = 10;"
                               "UPDATE audit SET id = 10 WHERE id = -9"),
                      9, "record 9 does not follow record 8");
        assert_broken(tampered("tamper-d-zero", 10, "UPDATE audit SET id = 0 WHERE id = 1"), 1,
                      "record 0 is out of sequence");
}

/* (e) A record changed and its own hash recomputed with the published formula: the next record's link
 * still names the old hash. */
static void test_audit_tamper_rehash(void **state)
{
        char path[PATH_MAX];
        AuditRecord *a = NULL;
        Store *s = NULL;
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        uint8_t h[32];
        size_t n = 0;

        snprintf(path, sizeof(path), "%s", db_path("tamper-e"));
        assert_int_equal(store_open(path, &s), 0);
        audit_fill(s, 1, 10);
        assert_int_equal(store_audit_query(s, NULL, &a, &n), 0);
        store_close(s);
        assert_int_equal(n, 10);

        /* Record 5 failed (CKR_PIN_INCORRECT); make it a success, with a hash that fits. */
        free(a[4].result);
        a[4].result = strdup("CKR_OK");
        assert_non_null(a[4].result);
        expected_hash(a[3].hash, 5, &a[4], h);
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "UPDATE audit SET result = ?1, hash = ?2 WHERE id = 5", -1,
                                            &st, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_bind_text(st, 1, a[4].result, -1, SQLITE_STATIC), SQLITE_OK);
        assert_int_equal(sqlite3_bind_blob(st, 2, h, 32, SQLITE_STATIC), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        assert_int_equal(sqlite3_changes(db), 1);
        sqlite3_finalize(st);
        assert_int_equal(sqlite3_close(db), SQLITE_OK);
        audit_records_free(a, n);

        /* Record 5 checks out by itself; 6 does not follow it. */
        assert_broken(verify(path), 6, "record 6 does not follow record 5");
}

/* A damaged log is not appended to: a fresh link would hide the damage. */
static void test_audit_damaged_head_refuses_append(void **state)
{
        char path[PATH_MAX], detail[64];
        AuditRecord a = audit_sample(1, detail, sizeof(detail));
        Store *s = NULL;

        snprintf(path, sizeof(path), "%s", db_path("audit-nohead"));
        assert_int_equal(store_open(path, &s), 0);
        audit_fill(s, 1, 3);
        store_close(s);
        raw_exec(path, "DELETE FROM audit_head");
        assert_int_equal(store_open(path, &s), 0);
        a.id = 99;
        assert_int_equal(store_audit_append(s, &a), -EIO);
        assert_int_equal(a.id, 99);
        store_close(s);
        raw_exec(path, "INSERT INTO audit_head VALUES (1, 3, x'0102')");
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(store_audit_append(s, &a), -EIO);
        store_close(s);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM audit"), 3);

        /* Records deleted in the middle do not stop the log: the next record follows the head, and the
         * gap stays visible. */
        snprintf(path, sizeof(path), "%s", db_path("audit-gap"));
        assert_int_equal(store_open(path, &s), 0);
        audit_fill(s, 1, 3);
        store_close(s);
        raw_exec(path, "DELETE FROM audit WHERE id = 2");
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(store_audit_append(s, &a), 0);
        assert_int_equal(a.id, 4);
        store_close(s);
        assert_broken(verify(path), 2, "record 2 is missing");
}

/* ---- the audit spool ---- */

static const char *spool_of(const char *path)
{
        static char buf[PATH_MAX + 8];

        snprintf(buf, sizeof(buf), "%s-audit", path);
        return buf;
}

static const char *pending_of(const char *path)
{
        static char buf[PATH_MAX + 8];

        snprintf(buf, sizeof(buf), "%s-audit.1", path);
        return buf;
}

static off_t file_size(const char *path)
{
        struct stat st;

        assert_int_equal(stat(path, &st), 0);
        return st.st_size;
}

static void write_file(const char *path, const void *p, size_t n, int flags)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC | flags);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, p, n), (ssize_t) n);
        assert_int_equal(close(fd), 0);
}

/* A spooled record's size: its 8-byte header ("KYA1", length of the rest) and the rest. */
static size_t spool_record_size(const uint8_t *p)
{
        return 8 + ((size_t) p[4] << 24 | (size_t) p[5] << 16 | (size_t) p[6] << 8 | p[7]);
}

/* Records from..to appended by a process that then dies without closing the store, as kysod under SIGKILL:
 * they are in the spool only. */
static void audit_fill_and_die(const char *path, int from, int to)
{
        int status;
        pid_t pid;

        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                Store *s = NULL;
                char detail[64];

                if (store_open(path, &s) < 0)
                        _exit(2);
                for (int i = from; i <= to; i++) {
                        AuditRecord a = audit_sample(i, detail, sizeof(detail));

                        if (store_audit_append(s, &a) < 0 || a.id != i)
                                _exit(3);
                }
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

/* An append is one write to the spool; a flush moves the records into the table and empties the spool. */
static void test_audit_spool(void **state)
{
        char path[PATH_MAX];
        AuditVerdict v;
        Store *s = NULL;

        snprintf(path, sizeof(path), "%s", db_path("spool"));
        assert_int_equal(store_open(path, &s), 0);
        audit_fill(s, 1, 3);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM audit"), 0);
        assert_true(file_size(spool_of(path)) > 0);
        assert_int_equal(store_audit_flush(s), 0);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM audit"), 3);
        assert_int_equal(raw_int(path, "SELECT last_id FROM audit_head"), 3);
        assert_int_equal(file_size(spool_of(path)), 0);
        assert_int_equal(store_audit_flush(s), 0);
        /* Readers see spooled records without being asked to flush. */
        audit_fill(s, 4, 5);
        assert_int_equal(store_audit_verify(s, &v), 0);
        assert_intact(v);
        assert_int_equal(v.checked, 5);
        assert_int_equal(store_audit_flush(NULL), -EINVAL);
        store_close(s);

        /* Killed with records only in the spool: the next open moves them into the table. */
        audit_fill_and_die(path, 6, 9);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM audit"), 5);
        v = verify(path);
        assert_intact(v);
        assert_int_equal(v.checked, 9);
        assert_int_equal(file_size(spool_of(path)), 0);

        /* Appends never run SQL: the table waits for a flush, however many there are. */
        assert_int_equal(store_open(path, &s), 0);
        audit_fill(s, 10, 1100);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM audit"), 9);
        store_close(s);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM audit"), 1100);
        assert_int_equal(access(pending_of(path), F_OK), -1);
}

/* Every APPEND_STEP records the appender waits for one more flush, so flushes surely fall between appends. */
#define APPEND_STEP 300

typedef struct Appender {
        Store *s;
        int from, to;
        int failed;
        _Atomic unsigned flushes; /* counted by the flushing thread */
} Appender;

static void *appender_main(void *userdata)
{
        Appender *a = userdata;
        char detail[64];

        for (int i = a->from; i <= a->to; i++) {
                AuditRecord r = audit_sample(i, detail, sizeof(detail));

                if (store_audit_append(a->s, &r) < 0 || r.id != i)
                        a->failed = i;
                if (i % APPEND_STEP == 0)
                        while (atomic_load(&a->flushes) < (unsigned) (i / APPEND_STEP))
                                sched_yield();
        }
        return NULL;
}

/* Appends go on in another thread while flushes move records into the table: none lost, none twice, the
 * chain whole. (kysod appends from its workers while its loop flushes.) */
static void test_audit_spool_concurrent(void **state)
{
        char path[PATH_MAX];
        Appender a = { .from = 1, .to = 3000 };
        pthread_t t;
        AuditVerdict v;

        snprintf(path, sizeof(path), "%s", db_path("spool-concurrent"));
        assert_int_equal(store_open(path, &a.s), 0);
        assert_int_equal(pthread_create(&t, NULL, appender_main, &a), 0);
        while (raw_int(path, "SELECT count(*) FROM audit") < 3000) {
                assert_int_equal(store_audit_flush(a.s), 0);
                atomic_fetch_add(&a.flushes, 1);
        }
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(a.failed, 0);
        assert_true(atomic_load(&a.flushes) >= 3000 / APPEND_STEP);
        assert_int_equal(store_audit_verify(a.s, &v), 0);
        assert_intact(v);
        assert_int_equal(v.checked, 3000);
        store_close(a.s);
}

/* A start that could not move the leftovers into the table refuses appends (their ids would be unknown);
 * the first flush that can, lets them go on. Here the pending file is a directory until it is not. */
static void test_audit_spool_heals(void **state)
{
        char path[PATH_MAX], detail[64];
        AuditRecord a = audit_sample(1, detail, sizeof(detail));
        Store *s = NULL;

        snprintf(path, sizeof(path), "%s", db_path("spool-heals"));
        assert_int_equal(mkdir(pending_of(path), 0700), 0);
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(store_audit_append(s, &a), -EIO);
        assert_true(store_audit_flush(s) < 0);
        assert_int_equal(rmdir(pending_of(path)), 0);
        assert_int_equal(store_audit_flush(s), 0);
        assert_int_equal(store_audit_append(s, &a), 0);
        assert_int_equal(a.id, 1);
        store_close(s);
        assert_intact(verify(path));
}

/* One Store appends to a spool at a time: a second one (another kysod on the same state directory) would
 * fork the chain, so it is refused after a short wait. */
static void test_audit_spool_locked(void **state)
{
        char path[PATH_MAX];
        Store *s = NULL, *sentinel = (Store *) &sentinel, *t = sentinel;
        int fd;

        snprintf(path, sizeof(path), "%s", db_path("spool-locked"));
        assert_int_equal(store_open(path, &s), 0);
        audit_fill(s, 1, 2);
        /* flock() locks belong to the open file: another open in this process conflicts too. */
        assert_int_equal(store_open(path, &t), -EBUSY);
        assert_ptr_equal(t, sentinel);
        store_close(s);
        assert_int_equal(store_open(path, &t), 0);
        audit_fill(t, 3, 3);
        store_close(t);

        {
                char lock[PATH_MAX + 16];

                snprintf(lock, sizeof(lock), "%s-audit.lock", path);
                fd = open(lock, O_RDWR | O_CLOEXEC);
        }
        assert_true(fd >= 0);
        assert_int_equal(flock(fd, LOCK_EX), 0);
        t = sentinel;
        assert_int_equal(store_open(path, &t), -EBUSY);
        assert_ptr_equal(t, sentinel);
        close(fd);
        assert_intact(verify(path));
}

/* What a crash can leave in the spool: half a record at the end, or records already moved into the table
 * (killed between the commit and emptying the file). Neither loses or doubles a record. */
static void test_audit_spool_crash_leftovers(void **state)
{
        static const uint8_t half[] = { 'K', 'Y', 'A', '1', 0, 0, 0, 0x60, 0, 0, 0, 0, 0, 0, 0, 9 };
        char path[PATH_MAX];
        _cleanup_(freep) void *copy = NULL;
        size_t n = 0;
        AuditVerdict v;
        Store *s = NULL;

        snprintf(path, sizeof(path), "%s", db_path("spool-crash"));
        audit_fill_and_die(path, 1, 4);
        write_file(spool_of(path), half, sizeof(half), O_APPEND);
        v = verify(path);
        assert_intact(v);
        assert_int_equal(v.checked, 4);
        assert_int_equal(file_size(spool_of(path)), 0);

        /* Half a header only. */
        audit_fill_and_die(path, 5, 6);
        write_file(spool_of(path), half, 3, O_APPEND);
        assert_int_equal(store_open(path, &s), 0);
        audit_fill(s, 7, 7);
        store_close(s);

        audit_fill_and_die(path, 8, 10);
        copy = read_file(spool_of(path), &n);
        assert_true(n > 0);
        assert_int_equal(store_open(path, &s), 0); /* moves 8-10 */
        store_close(s);
        write_file(spool_of(path), copy, n, O_TRUNC);
        assert_int_equal(store_open(path, &s), 0);
        audit_fill(s, 11, 12);
        assert_int_equal(store_audit_verify(s, &v), 0);
        assert_intact(v);
        assert_int_equal(v.checked, 12);
        store_close(s);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM audit"), 12);

        /* The same records left as the pending file (killed between the commit and its removal), with
         * newer records in the spool behind them. */
        {
                int fd = open(pending_of(path), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

                assert_true(fd >= 0);
                close(fd);
        }
        write_file(pending_of(path), copy, n, O_TRUNC);
        audit_fill_and_die(path, 13, 14);
        v = verify(path);
        assert_intact(v);
        assert_int_equal(v.checked, 14);
        assert_int_equal(access(pending_of(path), F_OK), -1);
}

/* A spool edited, or with a record cut from the middle, is not moved into the table and stops appends; it
 * stays as it was for a person to look at, and verification names the record. */
static void test_audit_spool_tampered(void **state)
{
        char path[PATH_MAX], detail[64];
        AuditRecord a = audit_sample(20, detail, sizeof(detail));
        _cleanup_(freep) uint8_t *buf = NULL;
        uint8_t *p;
        size_t n = 0, rec = 0;
        AuditVerdict v;
        Store *s = NULL;

        snprintf(path, sizeof(path), "%s", db_path("spool-edit"));
        audit_fill_and_die(path, 1, 2);
        assert_intact(verify(path));
        audit_fill_and_die(path, 3, 5);
        buf = read_file(spool_of(path), &n);
        /* Record 4's text "bản ghi 4" becomes "bản ghi 7". */
        p = memmem(buf, n, "ghi 4", 5);
        assert_non_null(p);
        p[4] = '7';
        write_file(spool_of(path), buf, n, O_TRUNC);
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(store_audit_verify(s, &v), 0);
        assert_false(v.intact);
        assert_int_equal(v.first_bad_id, 4);
        assert_non_null(strstr(v.reason, "spool"));
        assert_non_null(strstr(v.reason, "record 4 was changed"));
        assert_int_equal(store_audit_append(s, &a), -EIO);
        assert_int_equal(store_audit_flush(s), -EBADMSG);
        store_close(s);
        /* A flush is all or nothing: not even record 3 moved, and the records are kept as they were (in the
         * pending file the flush renamed the spool to). */
        assert_int_equal(raw_int(path, "SELECT count(*) FROM audit"), 2);
        assert_int_equal((size_t) file_size(pending_of(path)), n);

        /* Record 4 cut out whole: 5 does not follow 3. */
        snprintf(path, sizeof(path), "%s", db_path("spool-cut"));
        audit_fill_and_die(path, 1, 5);
        free(buf);
        buf = read_file(spool_of(path), &n);
        for (int i = 1; i < 4; i++) /* to the start of record 4 */
                rec += spool_record_size(buf + rec);
        {
                size_t len4 = spool_record_size(buf + rec);

                memmove(buf + rec, buf + rec + len4, n - rec - len4);
                write_file(spool_of(path), buf, n - len4, O_TRUNC);
        }
        v = verify(path);
        assert_false(v.intact);
        assert_int_equal(v.first_bad_id, 4);
        assert_non_null(strstr(v.reason, "record 4 is missing"));
        assert_int_equal(raw_int(path, "SELECT count(*) FROM audit"), 0);
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
        AuditRecord ar = { .id = 99, .event = (char *) "sign", .result = (char *) "CKR_OK" };
        StoreCertificate cert = { .subject = (char *) "CN=x" };
        AuditVerdict v;
        Store *s = NULL;
        int64_t at = 0;

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
        /* Nothing may be done that cannot be logged: the append fails, and says so. */
        CHILD_CHECK(store_audit_append(s, &ar) == -EROFS);
        CHILD_CHECK(ar.id == 99);
        CHILD_CHECK(store_pin_changed(s, "RO", 2, 0, "C_SetPIN") == -EROFS);
        CHILD_CHECK(store_certificates_set(s, "RO", &cert, 1) == -EROFS);
        /* The log still reads and verifies. */
        CHILD_CHECK(store_audit_verify(s, &v) == 0 && v.intact && v.checked == 1);
        CHILD_CHECK(store_pin_last_change(s, "RO", &at) == 0 && at == 1);
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
        AuditRecord ar = { .event = (char *) "custody" };
        Store *s = NULL, *other = NULL;
        Handover *h = NULL;
        size_t n;

        snprintf(path, sizeof(path), "%s", db_path("readonly"));
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(store_custody_add(s, &a, 1, "admin", NULL), 0);
        assert_int_equal(store_audit_append(s, &ar), 0);
        assert_int_equal(store_pin_changed(s, "RO", 1, 0, "C_InitPIN"), 0);
        store_close(s);

        run_in_mount_namespace(read_only_unused, path);

        assert_int_equal(store_open(path, &other), 0);
        run_in_mount_namespace(read_only_in_use, path);
        assert_int_equal(history_count(other, "RO"), 1);
        assert_int_equal(store_handovers(other, "RO", &h, &n), 0);
        assert_int_equal(n, 0);
        free(h);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM audit"), 1);
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

        /* The audit log fills the rest: the append that does not fit leaves neither record nor head
         * behind, so the chain stays whole and holds exactly the appends that returned 0. */
        {
                AuditRecord ar = { .event = (char *) "sign", .detail = big };
                AuditVerdict v;
                uint64_t appended = 0;

                for (int64_t i = 0; i < 1000; i++) {
                        ar.at = i;
                        r = store_audit_append(s, &ar);
                        if (r < 0)
                                break;
                        CHILD_CHECK(ar.id == (int64_t) appended + 1);
                        appended++;
                }
                CHILD_CHECK(r == -ENOSPC);
                CHILD_CHECK(store_audit_verify(s, &v) == 0 && v.intact && v.checked == appended);
        }
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
        int64_t at; /* REPORT_AUDIT: the record's time, value its id */
} Report;

enum { REPORT_CUSTODY, REPORT_HANDOVER, REPORT_SEEN, REPORT_IMPORT, REPORT_AUDIT };

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
                switch (i % 5) {
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
                case 4: {
                        AuditRecord ar = { .at = i, .event = (char *) "sign", .serial = (char *) "CRASH",
                                           .result = (char *) "CKR_OK", .detail = reason };

                        r = store_audit_append(s, &ar);
                        rep = (Report) { REPORT_AUDIT, ar.id, i };
                        break;
                }
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

/* The log is whole (ids consecutive, every link and the head right) and holds every acknowledged record. */
static void check_audit(Store *s, const Report *reports, size_t n_reports, unsigned it)
{
        AuditRecord *a = NULL;
        AuditVerdict v;
        size_t n = 0;

        assert_int_equal(store_audit_verify(s, &v), 0);
        if (!v.intact)
                fail_msg("iteration %u: the audit log is broken at record %" PRId64 ": %s", it,
                         v.first_bad_id, v.reason);
        assert_int_equal(store_audit_query(s, NULL, &a, &n), 0);
        assert_int_equal(v.checked, n);
        for (size_t k = 0; k < n_reports; k++) {
                const Report *r = &reports[k];

                if (r->kind != REPORT_AUDIT)
                        continue;
                /* Verified consecutive from 1, so record id is at index id - 1. */
                if (r->value < 1 || (uint64_t) r->value > n || a[r->value - 1].at != r->at)
                        fail_msg("iteration %u: acknowledged audit record %" PRId64 " is lost", it,
                                 r->value);
        }
        audit_records_free(a, n);
}

/*
 * SIGKILL at a random moment while the child writes: the file passes
 * integrity_check and holds every write the child was told had committed,
 * and the audit log verifies.
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
                                uint64_t t = monotonic_usec();

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
                                deadline = monotonic_usec() + wait_usec;
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
                        check_audit(s, reports, n_reports, it);
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
                cmocka_unit_test(test_migrate_from_v1),
                cmocka_unit_test(test_migrate_from_v1_fails_whole),
                cmocka_unit_test(test_pin_changes),
                cmocka_unit_test(test_certificates),
                cmocka_unit_test(test_audit_append),
                cmocka_unit_test(test_audit_query),
                cmocka_unit_test(test_audit_verify_intact),
                cmocka_unit_test(test_audit_tamper_update),
                cmocka_unit_test(test_audit_tamper_delete),
                cmocka_unit_test(test_audit_tamper_truncate),
                cmocka_unit_test(test_audit_tamper_reorder),
                cmocka_unit_test(test_audit_tamper_rehash),
                cmocka_unit_test(test_audit_damaged_head_refuses_append),
                cmocka_unit_test(test_audit_spool),
                cmocka_unit_test(test_audit_spool_crash_leftovers),
                cmocka_unit_test(test_audit_spool_heals),
                cmocka_unit_test(test_audit_spool_locked),
                cmocka_unit_test(test_audit_spool_concurrent),
                cmocka_unit_test(test_audit_spool_tampered),
                cmocka_unit_test(test_read_only),
                cmocka_unit_test(test_disk_full),
                cmocka_unit_test(test_crash_safety),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
