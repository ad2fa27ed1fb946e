/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The store's audit log against real database files: appends and queries,
 * the hash chain and the tampering it must show, and the spool appends go
 * through (crash leftovers, healing, locking, concurrent flushes, tampering).
 */
/* Its includes (cmocka, sqlite, store.h, the C library) come with the shared helpers. */
#include "test-store-util.h"

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

int main(void)
{
        const struct CMUnitTest tests[] = {
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
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
