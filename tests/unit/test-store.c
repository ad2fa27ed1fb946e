/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The store against real database files in a temporary directory: schema
 * and migrations (a version-1 file made with the version-1 SQL), tokens,
 * custody records, handovers, all-or-none imports, Vietnamese text, a newer
 * schema left alone, PIN changes, certificates. The audit log is tested in
 * test-store-audit.c, failures of the file system and of the process in
 * test-store-faults.c.
 */
/* Its includes (cmocka, sqlite, store.h, the C library) come with the shared helpers. */
#include "test-store-util.h"

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
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
