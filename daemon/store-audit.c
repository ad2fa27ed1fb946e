/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The audit log: a hash chain in the store's database (tables audit and
 * audit_head, schema 2). Part of the store, in a file of its own only for
 * size; the SQL helpers come from store.c through store-internal.h.
 *
 * The hash of record N is SHA-256 over
 *     prev_hash (32 bytes, record N-1's hash; zeros for record 1)
 *     id (8 bytes) || at (8) || uid (4) || pid (4, as uint32), big-endian
 *     event, exe, serial, key_id, key_label, mechanism, result, detail,
 *     each as a 4-byte big-endian length and its bytes.
 * Lengths make the encoding unambiguous ("ab" "c" hashes apart from "a"
 * "bc"). The chain has no key: it shows edits made without recomputing the
 * hashes after them, and the head row shows records cut from the end; it
 * cannot stop someone who can write the file from rewriting the whole chain.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "store-internal.h"
#include "store.h"

#define AUDIT_HASH_SIZE 32
#define AUDIT_TEXTS 8
#define AUDIT_SERIAL_TEXT 2 /* the serial's place among the texts */

DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free);

/* The hashed strings are columns AUDIT_TEXT_COLUMN.. in this order; prev_hash and hash follow them. */
#define AUDIT_COLUMNS                                                                                      \
        "id, at, uid, pid, event, exe, serial, key_id, key_label, mechanism, result, detail, prev_hash, hash"
#define AUDIT_TEXT_COLUMN 4
#define AUDIT_PREV_HASH_COLUMN (AUDIT_TEXT_COLUMN + AUDIT_TEXTS)
#define AUDIT_HASH_COLUMN (AUDIT_PREV_HASH_COLUMN + 1)

/* A record as it is hashed: strings by pointer and length, so that a record being appended (C strings)
 * and one read back (SQLite's bytes, whatever they are) go through the same code. */
typedef struct AuditFields {
        int64_t id;
        int64_t at;
        uint32_t uid;
        int32_t pid;
        const char *text[AUDIT_TEXTS];
        size_t len[AUDIT_TEXTS];
} AuditFields;

static const char *db_name(sqlite3 *db)
{
        const char *path = sqlite3_db_filename(db, "main");

        return path && *path ? path : "the database";
}

static void put_be64(uint8_t *p, uint64_t v)
{
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t) v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
        for (int i = 3; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t) v;
}

static int audit_hash(EVP_MD_CTX *ctx, const uint8_t prev[AUDIT_HASH_SIZE], const AuditFields *f,
                      uint8_t ret[AUDIT_HASH_SIZE])
{
        uint8_t fixed[AUDIT_HASH_SIZE + 8 + 8 + 4 + 4], len[4], out[EVP_MAX_MD_SIZE];
        unsigned n = 0;
        bool ok;

        memcpy(fixed, prev, AUDIT_HASH_SIZE);
        put_be64(fixed + AUDIT_HASH_SIZE, (uint64_t) f->id);
        put_be64(fixed + AUDIT_HASH_SIZE + 8, (uint64_t) f->at);
        put_be32(fixed + AUDIT_HASH_SIZE + 16, f->uid);
        put_be32(fixed + AUDIT_HASH_SIZE + 20, (uint32_t) f->pid);
        ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, fixed, sizeof(fixed)) == 1;
        for (size_t i = 0; ok && i < AUDIT_TEXTS; i++) {
                /* Callers keep lengths within INT_MAX: that is all SQLite stores or binds. */
                put_be32(len, (uint32_t) f->len[i]);
                ok = EVP_DigestUpdate(ctx, len, sizeof(len)) == 1 &&
                     (f->len[i] == 0 || EVP_DigestUpdate(ctx, f->text[i], f->len[i]) == 1);
        }
        if (!ok || EVP_DigestFinal_ex(ctx, out, &n) != 1 || n != AUDIT_HASH_SIZE) {
                log_error("Failed to compute SHA-256 for audit record %" PRId64 ".", f->id);
                return -EIO;
        }
        memcpy(ret, out, AUDIT_HASH_SIZE);
        return 0;
}

/* The fields of a record to append: NULL strings are "", the serial loses the blanks PKCS#11 pads it
 * with (every serial in the store is trimmed, so a filter by serial finds it). */
static int audit_fields_from_record(const AuditRecord *rec, AuditFields *ret)
{
        const char *const texts[AUDIT_TEXTS] = {
                rec->event, rec->exe, rec->serial, rec->key_id,
                rec->key_label, rec->mechanism, rec->result, rec->detail,
        };
        AuditFields f = {
                .at = rec->at,
                .uid = rec->uid,
                .pid = rec->pid,
        };

        for (size_t i = 0; i < AUDIT_TEXTS; i++) {
                if (i == AUDIT_SERIAL_TEXT)
                        f.text[i] = trim_blanks(texts[i], &f.len[i]);
                else {
                        f.text[i] = texts[i] ?: "";
                        f.len[i] = strlen(f.text[i]);
                }
                if (f.len[i] > INT_MAX)
                        return -EINVAL;
        }
        *ret = f;
        return 0;
}

static int column_hash(sqlite3_stmt *st, int i, uint8_t ret[AUDIT_HASH_SIZE])
{
        const void *p;

        if (sqlite3_column_type(st, i) != SQLITE_BLOB || sqlite3_column_bytes(st, i) != AUDIT_HASH_SIZE)
                return 0;
        p = sqlite3_column_blob(st, i);
        if (!p)
                return -ENOMEM;
        memcpy(ret, p, AUDIT_HASH_SIZE);
        return 1;
}

/* Whether column i holds exactly the hash h. */
static int column_hash_is(sqlite3_stmt *st, int i, const uint8_t h[AUDIT_HASH_SIZE])
{
        uint8_t stored[AUDIT_HASH_SIZE];
        int r = column_hash(st, i, stored);

        if (r <= 0)
                return r;
        return memcmp(stored, h, AUDIT_HASH_SIZE) == 0;
}

/*
 * The fields of the current row, for verification: 1 when every column has the type and range append
 * writes (anything else was written by someone else), 0 when not, -ENOMEM. The strings point into the
 * statement until its next step.
 */
static int audit_fields_from_row(sqlite3_stmt *st, AuditFields *ret)
{
        AuditFields f = {};
        int64_t uid, pid;

        for (int i = 0; i < AUDIT_TEXT_COLUMN; i++)
                if (sqlite3_column_type(st, i) != SQLITE_INTEGER)
                        return 0;
        f.id = sqlite3_column_int64(st, 0);
        f.at = sqlite3_column_int64(st, 1);
        uid = sqlite3_column_int64(st, 2);
        pid = sqlite3_column_int64(st, 3);
        if (uid < 0 || uid > UINT32_MAX || pid < INT32_MIN || pid > INT32_MAX)
                return 0;
        f.uid = (uint32_t) uid;
        f.pid = (int32_t) pid;
        for (int i = 0; i < AUDIT_TEXTS; i++) {
                int c = AUDIT_TEXT_COLUMN + i;

                if (sqlite3_column_type(st, c) != SQLITE_TEXT)
                        return 0;
                /* text before bytes, as SQLite asks, so the length is of the text returned. */
                f.text[i] = (const char *) sqlite3_column_text(st, c);
                f.len[i] = (size_t) sqlite3_column_bytes(st, c);
                if (!f.text[i]) {
                        if (f.len[i] > 0)
                                return -ENOMEM;
                        f.text[i] = "";
                }
        }
        *ret = f;
        return 1;
}

typedef struct AuditHead {
        bool exists;
        bool sound; /* last_id an integer >= 1, last_hash 32 bytes */
        int64_t last_id;
        uint8_t last_hash[AUDIT_HASH_SIZE];
} AuditHead;

static int audit_head_read(sqlite3 *db, AuditHead *ret)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        AuditHead h = {};
        int r, rc;

        r = sql_prepare(db, "SELECT last_id, last_hash FROM audit_head WHERE k = 1", &st);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                h.exists = true;
                h.last_id = sqlite3_column_int64(st, 0);
                r = column_hash(st, 1, h.last_hash);
                if (r < 0)
                        return r;
                h.sound = r > 0 && sqlite3_column_type(st, 0) == SQLITE_INTEGER && h.last_id >= 1;
        } else if (rc != SQLITE_DONE)
                return sql_error(db, rc, "read the audit log's head");
        *ret = h;
        return 0;
}

static int audit_has_records(sqlite3 *db, bool *ret)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc;

        r = sql_prepare(db, "SELECT EXISTS (SELECT 1 FROM audit)", &st);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return sql_error(db, rc, "read the audit log");
        *ret = sqlite3_column_int(st, 0) != 0;
        return 0;
}

static void bind_hash(sqlite3_stmt *st, int i, const uint8_t h[AUDIT_HASH_SIZE], int *rc)
{
        if (*rc == SQLITE_OK)
                *rc = sqlite3_bind_blob(st, i, h, AUDIT_HASH_SIZE, SQLITE_STATIC);
}

/*
 * Where the next record goes: after the head, or first when there is no head and no record. A head that
 * is not one append wrote, or records without a head, are a damaged log: appending would hide the
 * damage behind a fresh link, so the caller gets -EIO and a person has to look.
 */
static int audit_next(sqlite3 *db, int64_t *ret_id, uint8_t ret_prev[AUDIT_HASH_SIZE])
{
        AuditHead h;
        bool any = false;
        int r;

        r = audit_head_read(db, &h);
        if (r < 0)
                return r;
        if (h.exists) {
                if (!h.sound || h.last_id == INT64_MAX) {
                        log_error("The audit log's head in %s is damaged; not appending to it.",
                                  db_name(db));
                        return -EIO;
                }
                *ret_id = h.last_id + 1;
                memcpy(ret_prev, h.last_hash, AUDIT_HASH_SIZE);
                return 0;
        }
        r = audit_has_records(db, &any);
        if (r < 0)
                return r;
        if (any) {
                log_error("The audit log in %s has records but no head; not appending to it.", db_name(db));
                return -EIO;
        }
        *ret_id = 1;
        memset(ret_prev, 0, AUDIT_HASH_SIZE);
        return 0;
}

static int audit_append(Store *s, AuditRecord *rec)
{
        _cleanup_(tx_rollbackp) sqlite3 *tx = NULL;
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *ins = NULL, *head = NULL;
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = NULL;
        uint8_t prev[AUDIT_HASH_SIZE], hash[AUDIT_HASH_SIZE];
        AuditFields f;
        int r, rc = SQLITE_OK;

        if (!s || !rec || isempty(rec->event))
                return -EINVAL;
        r = audit_fields_from_record(rec, &f);
        if (r < 0)
                return r;
        ctx = EVP_MD_CTX_new();
        if (!ctx)
                return log_oom();

        r = tx_begin(s->db);
        if (r < 0)
                return r;
        tx = s->db;
        r = audit_next(s->db, &f.id, prev);
        if (r < 0)
                return r;
        r = audit_hash(ctx, prev, &f, hash);
        if (r < 0)
                return r;

        r = sql_prepare(s->db,
                "INSERT INTO audit (" AUDIT_COLUMNS ") "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                &ins);
        if (r < 0)
                return r;
        bind_int64(ins, 1, f.id, &rc);
        bind_int64(ins, 2, f.at, &rc);
        bind_int64(ins, 3, f.uid, &rc);
        bind_int64(ins, 4, f.pid, &rc);
        for (int i = 0; i < AUDIT_TEXTS; i++)
                bind_text_n(ins, AUDIT_TEXT_COLUMN + 1 + i, f.text[i], f.len[i], &rc);
        bind_hash(ins, AUDIT_PREV_HASH_COLUMN + 1, prev, &rc);
        bind_hash(ins, AUDIT_HASH_COLUMN + 1, hash, &rc);
        r = sql_step_done(s->db, ins, rc, "append to the audit log");
        if (r < 0)
                return r;

        r = sql_prepare(s->db,
                "INSERT INTO audit_head (k, last_id, last_hash) VALUES (1, ?1, ?2) "
                "ON CONFLICT (k) DO UPDATE SET last_id = excluded.last_id, last_hash = excluded.last_hash",
                &head);
        if (r < 0)
                return r;
        bind_int64(head, 1, f.id, &rc);
        bind_hash(head, 2, hash, &rc);
        r = sql_step_done(s->db, head, rc, "move the audit log's head");
        if (r < 0)
                return r;
        r = tx_commit(s->db);
        if (r < 0)
                return r;

        rec->id = f.id;
        memcpy(rec->prev_hash, prev, AUDIT_HASH_SIZE);
        memcpy(rec->hash, hash, AUDIT_HASH_SIZE);
        return 0;
}

/*
 * An audit record is committed to the WAL without an fsync (synchronous=NORMAL): it is written through
 * the kernel, so a crash or SIGKILL of kysod never loses it and a full or read-only disk still fails the
 * append (and so the signature), but a power cut may take the last records with it. An fsync per
 * signature would cost a millisecond or more each (BENCHMARKS.md); custody changes, rare, keep FULL.
 */
int store_audit_append(Store *s, AuditRecord *rec)
{
        int r;

        if (!s || !rec)
                return -EINVAL;
        r = sql_exec(s->db, "PRAGMA synchronous = NORMAL", "relax synchronous writes for the audit log");
        if (r < 0)
                return r;
        r = audit_append(s, rec);
        (void) sql_exec(s->db, "PRAGMA synchronous = FULL", "restore synchronous writes");
        return r;
}

/* ---- reading ---- */

/* For a reader, not a verifier: a damaged hash column reads as zeros rather than hiding the record. */
static int audit_from_row(sqlite3_stmt *st, void *ret)
{
        _cleanup_(audit_record_done) AuditRecord a = {};
        char **const texts[AUDIT_TEXTS] = {
                &a.event, &a.exe, &a.serial, &a.key_id, &a.key_label, &a.mechanism, &a.result, &a.detail,
        };
        int r;

        a.id = sqlite3_column_int64(st, 0);
        a.at = sqlite3_column_int64(st, 1);
        a.uid = (uint32_t) sqlite3_column_int64(st, 2);
        a.pid = (int32_t) sqlite3_column_int64(st, 3);
        for (int i = 0; i < AUDIT_TEXTS; i++) {
                r = column_text(st, AUDIT_TEXT_COLUMN + i, texts[i]);
                if (r < 0)
                        return r;
                /* The header promises strings, never NULL; the schema says NOT NULL, unless edited. */
                if (!*texts[i]) {
                        *texts[i] = strdup("");
                        if (!*texts[i])
                                return -ENOMEM;
                }
        }
        if ((r = column_hash(st, AUDIT_PREV_HASH_COLUMN, a.prev_hash)) < 0 ||
            (r = column_hash(st, AUDIT_HASH_COLUMN, a.hash)) < 0)
                return r;
        *(AuditRecord *) ret = a;
        a = (AuditRecord) {};
        return 0;
}

static void audit_done_v(void *p)
{
        audit_record_done(p);
}

static const RowType audit_rows = { sizeof(AuditRecord), audit_from_row, audit_done_v };

/* Appends to a statement being built from constant pieces. The buffers below are sized for all of them;
 * should one not fit, *ok turns false and the caller refuses, rather than run a statement that lost a
 * condition. */
static void sql_append(char *buf, size_t size, const char *piece, bool *ok)
{
        size_t n = strlen(buf), m = strlen(piece);

        if (!*ok || n + m >= size) {
                *ok = false;
                return;
        }
        memcpy(buf + n, piece, m + 1);
}

int store_audit_query(Store *s, const AuditFilter *f, AuditRecord **ret, size_t *ret_n)
{
        static const AuditFilter all = { .uid = -1 };
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        /* Every condition is a constant with a named parameter: the SQL is picked, never written from
         * input, and the indexes on (serial, at), (uid, at) and (at) stay usable, which "?1 IS NULL OR"
         * would defeat. */
        static const char *const conds[] = {
                "at >= :since", "at < :until", "serial = :serial", "uid = :uid", "event = :event",
        };
        char where[256] = "", sql[512] = "";
        bool ok = true;
        int64_t limit;
        void *a;
        int r, rc = SQLITE_OK, idx;

        if (!s || !ret || !ret_n)
                return -EINVAL;
        if (!f)
                f = &all;
        if (f->uid < -1 || f->uid > UINT32_MAX)
                return -EINVAL;
        limit = f->limit == 0 || f->limit > (uint64_t) INT64_MAX ? -1 : (int64_t) f->limit;

        {
                const bool used[ELEMENTSOF(conds)] = {
                        f->since != 0, f->until != 0, f->serial != NULL, f->uid != -1, f->event != NULL,
                };

                for (size_t i = 0; i < ELEMENTSOF(conds); i++)
                        if (used[i]) {
                                sql_append(where, sizeof(where), *where ? " AND " : " WHERE ", &ok);
                                sql_append(where, sizeof(where), conds[i], &ok);
                        }
        }
        /* The newest `limit`, returned oldest first like the rest. */
        if (limit < 0) {
                sql_append(sql, sizeof(sql), "SELECT " AUDIT_COLUMNS " FROM audit", &ok);
                sql_append(sql, sizeof(sql), where, &ok);
                sql_append(sql, sizeof(sql), " ORDER BY id", &ok);
        } else {
                sql_append(sql, sizeof(sql), "SELECT * FROM (SELECT " AUDIT_COLUMNS " FROM audit", &ok);
                sql_append(sql, sizeof(sql), where, &ok);
                sql_append(sql, sizeof(sql), " ORDER BY id DESC LIMIT :limit) ORDER BY id", &ok);
        }
        if (!ok) {
                log_error("An audit query does not fit its buffer.");
                return -EIO;
        }

        r = sql_prepare(s->db, sql, &st);
        if (r < 0)
                return r;
        if ((idx = sqlite3_bind_parameter_index(st, ":since")) > 0)
                bind_int64(st, idx, f->since, &rc);
        if ((idx = sqlite3_bind_parameter_index(st, ":until")) > 0)
                bind_int64(st, idx, f->until, &rc);
        if ((idx = sqlite3_bind_parameter_index(st, ":serial")) > 0)
                bind_trimmed(st, idx, f->serial, &rc);
        if ((idx = sqlite3_bind_parameter_index(st, ":uid")) > 0)
                bind_int64(st, idx, f->uid, &rc);
        if ((idx = sqlite3_bind_parameter_index(st, ":event")) > 0)
                bind_text(st, idx, f->event, &rc);
        if ((idx = sqlite3_bind_parameter_index(st, ":limit")) > 0)
                bind_int64(st, idx, limit, &rc);
        if (rc != SQLITE_OK)
                return sql_error(s->db, rc, "bind a parameter");
        r = query_collect(s->db, st, &audit_rows, &a, ret_n);
        if (r < 0)
                return r;
        *ret = a;
        return 0;
}

int store_audit_count(Store *s, const char *serial, const char *event, int64_t since, int64_t until,
                      uint64_t *ret_count)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc = SQLITE_OK;

        if (!s || isblank_str(serial) || isempty(event) || !ret_count)
                return -EINVAL;
        if (until == INT64_MIN) { /* nothing is before the first instant */
                *ret_count = 0;
                return 0;
        }
        /* [since, until) as a closed range, so one statement serves open and closed ends alike and the
         * (serial, at) index bounds the scan. */
        r = sql_prepare(s->db,
                "SELECT count(*) FROM audit WHERE serial = ?1 AND at BETWEEN ?2 AND ?3 AND event = ?4 "
                "AND result = 'CKR_OK'",
                &st);
        if (r < 0)
                return r;
        bind_trimmed(st, 1, serial, &rc);
        bind_int64(st, 2, since == 0 ? INT64_MIN : since, &rc);
        bind_int64(st, 3, until == 0 ? INT64_MAX : until - 1, &rc);
        bind_text(st, 4, event, &rc);
        if (rc != SQLITE_OK)
                return sql_error(s->db, rc, "bind a parameter");
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return sql_error(s->db, rc, "count audit records");
        *ret_count = (uint64_t) sqlite3_column_int64(st, 0);
        return 0;
}

/* ---- verification ---- */

_printf_(3, 4) static void verdict_bad(AuditVerdict *v, int64_t id, const char *format, ...)
{
        va_list ap;

        v->intact = false;
        v->first_bad_id = id;
        va_start(ap, format);
        (void) vsnprintf(v->reason, sizeof(v->reason), format, ap);
        va_end(ap);
}

/* Against the head, once every record has checked out: last is the last record's id (0: none), h its
 * hash. The head is what shows records cut from the end, which leave the chain itself whole. */
static void verify_head(const AuditHead *head, int64_t last, const uint8_t h[AUDIT_HASH_SIZE],
                        AuditVerdict *v)
{
        if (!head->exists) {
                if (last > 0)
                        verdict_bad(v, 1, "the head is missing");
        } else if (!head->sound)
                verdict_bad(v, last > 0 ? last : 1, "the head is damaged");
        else if (head->last_id > last) {
                if (last == 0)
                        verdict_bad(v, 1, "every record was deleted");
                else
                        verdict_bad(v, last + 1, "records after %" PRId64 " were deleted", last);
        } else if (head->last_id < last)
                verdict_bad(v, head->last_id + 1, "the head does not match: it names record %" PRId64
                            ", the last is %" PRId64, head->last_id, last);
        else if (memcmp(head->last_hash, h, AUDIT_HASH_SIZE) != 0)
                verdict_bad(v, last, "the head does not match record %" PRId64, last);
}

int store_audit_verify(Store *s, AuditVerdict *ret)
{
        _cleanup_(tx_rollbackp) sqlite3 *tx = NULL;
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = NULL;
        uint8_t prev[AUDIT_HASH_SIZE] = {}, h[AUDIT_HASH_SIZE];
        AuditVerdict v = { .intact = true };
        AuditHead head;
        int64_t expected = 1;
        int r, rc;

        if (!s || !ret)
                return -EINVAL;
        ctx = EVP_MD_CTX_new();
        if (!ctx)
                return log_oom();

        /* One read transaction: the records and the head from the same snapshot, while appends go on. A
         * deferred BEGIN takes no write lock and works on a read-only database. */
        r = sql_exec(s->db, "BEGIN", "begin a read transaction");
        if (r < 0)
                return r;
        tx = s->db;
        r = sql_prepare(s->db, "SELECT " AUDIT_COLUMNS " FROM audit ORDER BY id", &st);
        if (r < 0)
                return r;
        /* Record by record, not into memory: the log only grows. */
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                int64_t id = sqlite3_column_int64(st, 0);
                AuditFields f;

                v.checked++;
                if (id != expected) {
                        if (id > expected)
                                verdict_bad(&v, expected, "record %" PRId64 " is missing", expected);
                        else /* only the first row can be below what is expected: an id below 1 */
                                verdict_bad(&v, expected, "record %" PRId64 " is out of sequence", id);
                        break;
                }
                r = column_hash_is(st, AUDIT_PREV_HASH_COLUMN, prev);
                if (r < 0)
                        return log_oom();
                if (r == 0) {
                        if (id == 1)
                                verdict_bad(&v, id, "record 1 does not begin the chain");
                        else
                                verdict_bad(&v, id, "record %" PRId64 " does not follow record %" PRId64, id,
                                            id - 1);
                        break;
                }
                r = audit_fields_from_row(st, &f);
                if (r < 0)
                        return log_oom();
                if (r > 0) {
                        r = audit_hash(ctx, prev, &f, h);
                        if (r < 0)
                                return r;
                        r = column_hash_is(st, AUDIT_HASH_COLUMN, h);
                        if (r < 0)
                                return log_oom();
                }
                if (r == 0) {
                        verdict_bad(&v, id, "record %" PRId64 " was changed", id);
                        break;
                }
                memcpy(prev, h, AUDIT_HASH_SIZE);
                expected++;
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                return sql_error(s->db, rc, "read the audit log");

        if (v.intact) {
                r = audit_head_read(s->db, &head);
                if (r < 0)
                        return r;
                verify_head(&head, expected - 1, prev, &v);
        }
        *ret = v;
        return 0;
}

/* ---- memory ---- */

void audit_record_done(AuditRecord *r)
{
        if (!r)
                return;
        free(r->event);
        free(r->exe);
        free(r->serial);
        free(r->key_id);
        free(r->key_label);
        free(r->mechanism);
        free(r->result);
        free(r->detail);
        *r = (AuditRecord) {};
}

DEFINE_ARRAY_FREE(audit_records_free, AuditRecord, audit_record_done)
