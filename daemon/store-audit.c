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
 *
 * Records reach the table through a spool file, in batches (see "the spool"
 * below): appending is one write(), and never waits for SQL.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

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

static uint64_t get_be64(const uint8_t *p)
{
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

static uint32_t get_be32(const uint8_t *p)
{
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

#define AUDIT_FIXED_SIZE (8 + 8 + 4 + 4)

/*
 * The one encoding of a record's fields: what is hashed after prev_hash, and what the spool holds. id, at,
 * uid and pid big-endian, then each text as a 4-byte big-endian length and its bytes. Callers keep lengths
 * within INT_MAX: that is all SQLite stores or binds.
 */
typedef void (*AuditEmit)(void *userdata, const void *p, size_t n);

static void audit_encode(const AuditFields *f, AuditEmit emit, void *userdata)
{
        uint8_t fixed[AUDIT_FIXED_SIZE], len[4];

        put_be64(fixed, (uint64_t) f->id);
        put_be64(fixed + 8, (uint64_t) f->at);
        put_be32(fixed + 16, f->uid);
        put_be32(fixed + 20, (uint32_t) f->pid);
        emit(userdata, fixed, sizeof(fixed));
        for (size_t i = 0; i < AUDIT_TEXTS; i++) {
                put_be32(len, (uint32_t) f->len[i]);
                emit(userdata, len, sizeof(len));
                if (f->len[i] > 0)
                        emit(userdata, f->text[i], f->len[i]);
        }
}

static size_t audit_encoded_size(const AuditFields *f)
{
        size_t n = AUDIT_FIXED_SIZE;

        for (size_t i = 0; i < AUDIT_TEXTS; i++)
                n += 4 + f->len[i];
        return n;
}

typedef struct HashSink {
        EVP_MD_CTX *ctx;
        bool ok;
} HashSink;

static void emit_hash(void *userdata, const void *p, size_t n)
{
        HashSink *h = userdata;

        h->ok = h->ok && EVP_DigestUpdate(h->ctx, p, n) == 1;
}

static int audit_hash(EVP_MD_CTX *ctx, const uint8_t prev[AUDIT_HASH_SIZE], const AuditFields *f,
                      uint8_t ret[AUDIT_HASH_SIZE])
{
        HashSink sink = { ctx, EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 };
        uint8_t out[EVP_MAX_MD_SIZE];
        unsigned n = 0;

        emit_hash(&sink, prev, AUDIT_HASH_SIZE);
        audit_encode(f, emit_hash, &sink);
        if (!sink.ok || EVP_DigestFinal_ex(ctx, out, &n) != 1 || n != AUDIT_HASH_SIZE) {
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

/* Inserts one record of the chain (prev is the previous record's hash) with a statement prepared once per
 * transaction. */
static int audit_insert(sqlite3 *db, sqlite3_stmt *ins, const AuditFields *f, const uint8_t prev[AUDIT_HASH_SIZE],
                        const uint8_t hash[AUDIT_HASH_SIZE])
{
        int r, rc = SQLITE_OK;

        bind_int64(ins, 1, f->id, &rc);
        bind_int64(ins, 2, f->at, &rc);
        bind_int64(ins, 3, f->uid, &rc);
        bind_int64(ins, 4, f->pid, &rc);
        for (int i = 0; i < AUDIT_TEXTS; i++)
                bind_text_n(ins, AUDIT_TEXT_COLUMN + 1 + i, f->text[i], f->len[i], &rc);
        bind_hash(ins, AUDIT_PREV_HASH_COLUMN + 1, prev, &rc);
        bind_hash(ins, AUDIT_HASH_COLUMN + 1, hash, &rc);
        r = sql_step_done(db, ins, rc, "append to the audit log");
        (void) sqlite3_reset(ins);
        (void) sqlite3_clear_bindings(ins);
        return r;
}

static int audit_set_head(sqlite3 *db, int64_t id, const uint8_t hash[AUDIT_HASH_SIZE])
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *head = NULL;
        int r, rc = SQLITE_OK;

        r = sql_prepare(db,
                "INSERT INTO audit_head (k, last_id, last_hash) VALUES (1, ?1, ?2) "
                "ON CONFLICT (k) DO UPDATE SET last_id = excluded.last_id, last_hash = excluded.last_hash",
                &head);
        if (r < 0)
                return r;
        bind_int64(head, 1, id, &rc);
        bind_hash(head, 2, hash, &rc);
        return sql_step_done(db, head, rc, "move the audit log's head");
}

/* ---- the spool ----
 *
 * A record is appended with one write() to a file beside the database (kyso.db-audit), which is what a
 * signature waits for: a few microseconds, where a SQLite transaction per record cost 150-200 (BENCHMARKS.md).
 * Each spooled record is
 *     "KYA1", length of the rest (4 bytes big-endian), the encoded fields (audit_encode()), its hash (32)
 * chained like the table's records: the first follows the table's head.
 *
 * store_audit_flush() renames the spool to kyso.db-audit.1 (the pending file) and starts a new one, under
 * audit_lock only for that moment; then, under its caller's serialisation of the Store but not audit_lock,
 * it moves the pending records into the table in one transaction (synchronous=FULL) and removes the file.
 * So appends never wait for SQLite. A crash between the commit and the removal leaves records that are
 * already in the table, which the next flush skips by id. Every record is checked against its hash and its
 * place in the chain as it moves: a file edited or cut in the middle is not imported and stops appends,
 * like a damaged head. An incomplete record at the very end (kysod killed inside the write, which then
 * never returned) is dropped with a warning.
 *
 * A written record survives SIGKILL of kysod and a crash of kysod (it is in the kernel); a power cut may
 * take the last ones, as with synchronous=NORMAL. A full or read-only file system fails the write, and so
 * the signature.
 */
#define SPOOL_MAGIC "KYA1"
#define SPOOL_HEADER_SIZE 8
#define SPOOL_RECORD_MAX (64U * 1024U)

typedef struct BufferSink {
        uint8_t *p;
        size_t n;
} BufferSink;

static void emit_buffer(void *userdata, const void *p, size_t n)
{
        BufferSink *b = userdata;

        memcpy(b->p + b->n, p, n);
        b->n += n;
}

/* Marks the spool damaged at record id: appends stop. Takes audit_lock. */
_printf_(4, 5) static void spool_fail(Store *s, const char *path, int64_t id, const char *format, ...)
{
        va_list ap;

        pthread_mutex_lock(&s->audit_lock);
        s->spool_bad_id = id;
        va_start(ap, format);
        (void) vsnprintf(s->spool_reason, sizeof(s->spool_reason), format, ap);
        va_end(ap);
        log_error("The audit spool %s is damaged (%s): its records stay there and no record is appended until "
                  "a person has looked at it (move it away to start a new one).", path, s->spool_reason);
        pthread_mutex_unlock(&s->audit_lock);
}

/* Reads a whole file into a new buffer: 0 with *ret NULL when it does not exist. */
static int file_read(const char *path, uint8_t **ret, size_t *ret_n)
{
        _cleanup_(freep) uint8_t *buf = NULL;
        _cleanup_(closep) int fd = -1;
        struct stat st;
        size_t n = 0;

        *ret = NULL;
        *ret_n = 0;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT ? 0 : log_error_errno(errno, "Failed to open %s: %m", path);
        if (fstat(fd, &st) < 0)
                return log_error_errno(errno, "Failed to stat %s: %m", path);
        if ((uint64_t) st.st_size > SIZE_MAX / 2)
                return log_error_errno(EFBIG, "%s is too large to read.", path);
        buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return log_oom();
        while (n < (size_t) st.st_size) {
                ssize_t k = pread(fd, buf + n, (size_t) st.st_size - n, (off_t) n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return log_error_errno(errno, "Failed to read %s: %m", path);
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        *ret = TAKE_PTR(buf);
        *ret_n = n;
        return 0;
}

/* One record's body (after the header) as fields pointing into it: 1, or 0 when it is not a record. */
static int spool_parse(const uint8_t *p, size_t n, AuditFields *ret, const uint8_t **ret_hash)
{
        AuditFields f = {};
        size_t off = AUDIT_FIXED_SIZE;

        if (n < AUDIT_FIXED_SIZE + AUDIT_HASH_SIZE)
                return 0;
        n -= AUDIT_HASH_SIZE;
        f.id = (int64_t) get_be64(p);
        f.at = (int64_t) get_be64(p + 8);
        f.uid = get_be32(p + 16);
        f.pid = (int32_t) get_be32(p + 20);
        for (size_t i = 0; i < AUDIT_TEXTS; i++) {
                if (n - off < 4)
                        return 0;
                f.len[i] = get_be32(p + off);
                off += 4;
                if (f.len[i] > n - off)
                        return 0;
                f.text[i] = (const char *) p + off;
                off += f.len[i];
        }
        if (off != n)
                return 0;
        *ret = f;
        *ret_hash = p + n;
        return 1;
}

/* Moves the pending file's records into the table and removes it; 0 when there is none. */
static int import_pending(Store *s)
{
        _cleanup_(tx_rollbackp) sqlite3 *tx = NULL;
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *ins = NULL;
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = NULL;
        _cleanup_(freep) uint8_t *buf = NULL;
        const char *path = s->pending_path;
        uint8_t prev[AUDIT_HASH_SIZE], h[AUDIT_HASH_SIZE];
        int64_t next, first = 0;
        size_t n = 0, off = 0;
        uint64_t moved = 0;
        int r;

        r = file_read(path, &buf, &n);
        if (r < 0 || !buf)
                return r;
        ctx = EVP_MD_CTX_new();
        if (!ctx)
                return log_oom();
        r = tx_begin(s->db);
        if (r < 0)
                return r;
        tx = s->db;
        r = audit_next(s->db, &next, prev);
        if (r < 0) {
                spool_fail(s, path, 1, "the table's head is damaged");
                return r;
        }
        r = sql_prepare(s->db,
                "INSERT INTO audit (" AUDIT_COLUMNS ") "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                &ins);
        if (r < 0)
                return r;

        while (off < n) {
                size_t left = n - off;
                const uint8_t *stored;
                AuditFields f;
                uint32_t len;

                len = left >= SPOOL_HEADER_SIZE ? get_be32(buf + off + 4) : 0;
                if (memcmp(buf + off, SPOOL_MAGIC, left < 4 ? left : 4) != 0 || len > SPOOL_RECORD_MAX) {
                        spool_fail(s, path, next, "no record %" PRId64 " at byte %zu", next, off);
                        return -EBADMSG;
                }
                if (left < SPOOL_HEADER_SIZE || left - SPOOL_HEADER_SIZE < len) {
                        log_warning("Dropped an incomplete record at the end of the audit spool %s: kysod stopped "
                                    "while writing it, so what it was to record was not done.", path);
                        break;
                }
                if (spool_parse(buf + off + SPOOL_HEADER_SIZE, len, &f, &stored) == 0) {
                        spool_fail(s, path, next, "no record %" PRId64 " at byte %zu", next, off);
                        return -EBADMSG;
                }
                off += SPOOL_HEADER_SIZE + len;
                /* Already moved by a flush that stopped before removing the file. */
                if (f.id < next && moved == 0)
                        continue;
                if (f.id != next) {
                        spool_fail(s, path, next, "record %" PRId64 " is missing", next);
                        return -EBADMSG;
                }
                r = audit_hash(ctx, prev, &f, h);
                if (r < 0)
                        return r;
                if (memcmp(h, stored, AUDIT_HASH_SIZE) != 0) {
                        spool_fail(s, path, f.id, "record %" PRId64 " was changed or does not follow record %" PRId64,
                                   f.id, f.id - 1);
                        return -EBADMSG;
                }
                r = audit_insert(s->db, ins, &f, prev, h);
                if (r < 0)
                        return r;
                if (moved++ == 0)
                        first = f.id;
                memcpy(prev, h, AUDIT_HASH_SIZE);
                next++;
        }
        if (moved > 0) {
                r = audit_set_head(s->db, next - 1, prev);
                if (r < 0)
                        return r;
        }
        r = tx_commit(s->db);
        if (r < 0)
                return r;
        /* Committed (and synced): now the file may go. Should this fail, the next flush skips its records. */
        if (unlink(path) < 0 && errno != ENOENT)
                return log_error_errno(errno, "Failed to remove %s: %m", path);
        if (moved > 0)
                log_debug("Moved audit records %" PRId64 "-%" PRId64 " from the spool into %s.", first, next - 1,
                          db_name(s->db));
        return 0;
}

static int spool_open_file(Store *s)
{
        struct stat st;
        int fd;

        fd = open(s->spool_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                int r = -errno;

                (void) close(fd);
                return r;
        }
        if (s->spool_fd >= 0)
                (void) close(s->spool_fd);
        s->spool_fd = fd;
        s->spool_size = (uint64_t) st.st_size;
        s->spool_torn = false;
        return 0;
}

/* Under audit_lock: the spool becomes the pending file and a new one starts. 1 when it did, 0 when the spool
 * is empty or the pending file is still there. */
static int spool_rotate_locked(Store *s)
{
        int r;

        if (s->spool_fd < 0 || s->spool_size == 0 || access(s->pending_path, F_OK) == 0)
                return 0;
        if (s->spool_torn) {
                if (ftruncate(s->spool_fd, (off_t) s->spool_size) < 0)
                        return log_error_errno(errno, "Failed to cut an incomplete record from %s: %m", s->spool_path);
                s->spool_torn = false;
        }
        if (rename(s->spool_path, s->pending_path) < 0)
                return log_error_errno(errno, "Failed to rename %s: %m", s->spool_path);
        r = spool_open_file(s);
        if (r < 0) {
                /* Put it back: the old descriptor still writes to it. */
                (void) rename(s->pending_path, s->spool_path);
                return log_error_errno(r, "Failed to start a new audit spool %s: %m", s->spool_path);
        }
        return 1;
}

/*
 * Under audit_lock, once nothing is spooled or pending: (re)reads the table's head for appends to chain
 * from, unless the spool was found damaged or the head was (a person has to look; asking again every
 * second would only repeat the error). Heals a start that could not read or import, once it can.
 */
static void head_reload_locked(Store *s)
{
        int r;

        if (s->audit_ready || s->head_damaged || s->spool_bad_id != 0 || s->spool_fd < 0 || s->spool_size > 0 ||
            access(s->pending_path, F_OK) == 0)
                return;
        r = audit_next(s->db, &s->audit_next_id, s->audit_prev);
        s->audit_ready = r >= 0;
        s->head_damaged = r == -EIO;
}

int store_audit_flush(Store *s)
{
        int r;

        if (!s)
                return -EINVAL;
        pthread_mutex_lock(&s->audit_lock);
        r = s->spool_bad_id != 0 ? -EBADMSG : 0;
        pthread_mutex_unlock(&s->audit_lock);
        if (r < 0 || s->spool_fd < 0)
                return r;
        /* What an earlier flush left, first: the spool's records follow it. */
        r = import_pending(s);
        if (r < 0)
                return r;
        pthread_mutex_lock(&s->audit_lock);
        r = spool_rotate_locked(s);
        pthread_mutex_unlock(&s->audit_lock);
        if (r > 0)
                r = import_pending(s);
        if (r < 0)
                return r;
        pthread_mutex_lock(&s->audit_lock);
        head_reload_locked(s);
        pthread_mutex_unlock(&s->audit_lock);
        return 0;
}

/*
 * The in-memory head is only right while one Store appends: a second kysod on the same state directory
 * would hand out the same ids and fork the chain. kyso.db-audit.lock is locked for as long as the Store is
 * open; a kysod just killed may still hold it for a moment, hence the wait.
 */
#define SPOOL_LOCK_WAIT_MSEC 3000
#define SPOOL_LOCK_POLL_MSEC 50

static int spool_lock(Store *s, const char *path)
{
        s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
        if (s->lock_fd < 0)
                return -errno;
        for (unsigned waited = 0;; waited += SPOOL_LOCK_POLL_MSEC) {
                if (flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0)
                        return 0;
                if (errno != EWOULDBLOCK && errno != EINTR) {
                        log_warning_errno(errno, "Cannot lock %s (%m); going on without the lock.", path);
                        return 0;
                }
                if (waited >= SPOOL_LOCK_WAIT_MSEC)
                        return log_error_errno(EBUSY, "The audit spool is in use by another process (%s is locked: "
                                               "another kysod with the same state directory?).", path);
                (void) usleep(SPOOL_LOCK_POLL_MSEC * 1000U);
        }
}

int store_audit_spool_open(Store *s, const char *db_path)
{
        _cleanup_(freep) char *lock_path = NULL;
        int r;

        s->spool_fd = -1;
        s->lock_fd = -1;
        s->audit_lock = (pthread_mutex_t) PTHREAD_MUTEX_INITIALIZER;
        if (asprintf(&s->spool_path, "%s-audit", db_path) < 0 || asprintf(&s->pending_path, "%s-audit.1", db_path) < 0 ||
            asprintf(&lock_path, "%s-audit.lock", db_path) < 0)
                return log_oom();
        if (sqlite3_db_readonly(s->db, "main") > 0)
                s->spool_errno = EROFS;
        else {
                r = spool_lock(s, lock_path);
                if (r == -EBUSY)
                        return r; /* not ours: closing the Store must not flush or touch the spool */
                if (r >= 0)
                        r = spool_open_file(s);
                if (r < 0)
                        s->spool_errno = -r;
        }
        if (s->spool_fd < 0) {
                log_warning_errno(s->spool_errno, "Cannot write the audit spool %s (%m): nothing that needs an "
                                  "audit record will be done.", s->spool_path);
                return 0;
        }
        /* What a stopped kysod left behind goes to the table now (nothing appends yet), and the flush reads
         * the head appends start from. A damaged log still opens, for reading. */
        (void) store_audit_flush(s);
        return 0;
}

void store_audit_spool_close(Store *s)
{
        if (s->spool_fd >= 0) {
                (void) store_audit_flush(s);
                (void) close(s->spool_fd);
        }
        if (s->lock_fd >= 0)
                (void) close(s->lock_fd);
        s->spool_fd = s->lock_fd = -1;
        free(s->spool_path);
        free(s->pending_path);
        s->spool_path = s->pending_path = NULL;
        (void) pthread_mutex_destroy(&s->audit_lock);
}

/* Whether the spool was found damaged, and where (for store_audit_verify()). */
static bool spool_damaged(Store *s, int64_t *ret_id, char *reason, size_t size)
{
        bool bad;

        pthread_mutex_lock(&s->audit_lock);
        bad = s->spool_bad_id != 0;
        *ret_id = s->spool_bad_id;
        snprintf(reason, size, "%s", s->spool_reason);
        pthread_mutex_unlock(&s->audit_lock);
        return bad;
}

/*
 * Takes audit_lock only: callable from any thread while other Store functions run. The in-memory head
 * (the table's head and what is spooled after it) names the record's id and link. A record whose write did
 * not complete is cut off again, so that the next one does not follow half a record; until that works
 * nothing is appended.
 */
int store_audit_append(Store *s, AuditRecord *rec)
{
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = NULL;
        _cleanup_(freep) uint8_t *buf = NULL;
        uint8_t hash[AUDIT_HASH_SIZE];
        BufferSink sink;
        AuditFields f;
        size_t size;
        ssize_t k;
        int r;

        if (!s || !rec || isempty(rec->event))
                return -EINVAL;
        r = audit_fields_from_record(rec, &f);
        if (r < 0)
                return r;
        size = audit_encoded_size(&f);
        if (size > SPOOL_RECORD_MAX - AUDIT_HASH_SIZE)
                return -E2BIG;
        ctx = EVP_MD_CTX_new();
        buf = malloc(SPOOL_HEADER_SIZE + size + AUDIT_HASH_SIZE);
        if (!ctx || !buf)
                return log_oom();

        pthread_mutex_lock(&s->audit_lock);
        if (s->spool_fd < 0)
                r = -s->spool_errno;
        else if (s->spool_bad_id != 0 || !s->audit_ready || s->audit_next_id == INT64_MAX)
                r = -EIO;
        else if (s->spool_torn && ftruncate(s->spool_fd, (off_t) s->spool_size) < 0)
                r = log_error_errno(errno, "Failed to cut an incomplete record from %s: %m", s->spool_path);
        else {
                s->spool_torn = false;
                f.id = s->audit_next_id;
                r = audit_hash(ctx, s->audit_prev, &f, hash);
        }
        if (r < 0)
                goto finish;

        memcpy(buf, SPOOL_MAGIC, 4);
        put_be32(buf + 4, (uint32_t) (size + AUDIT_HASH_SIZE));
        sink = (BufferSink) { buf, SPOOL_HEADER_SIZE };
        audit_encode(&f, emit_buffer, &sink);
        emit_buffer(&sink, hash, AUDIT_HASH_SIZE);
        do
                k = write(s->spool_fd, buf, sink.n);
        while (k < 0 && errno == EINTR);
        if (k != (ssize_t) sink.n) {
                r = k < 0 ? -errno : -ENOSPC; /* a short write to a regular file: the disk is full */
                if (k > 0 && ftruncate(s->spool_fd, (off_t) s->spool_size) < 0)
                        s->spool_torn = true;
                errno = -r;
                log_error_errno(r, "Failed to write audit record %" PRId64 " to %s: %m", f.id, s->spool_path);
                goto finish;
        }
        rec->id = f.id;
        memcpy(rec->prev_hash, s->audit_prev, AUDIT_HASH_SIZE);
        memcpy(rec->hash, hash, AUDIT_HASH_SIZE);
        s->spool_size += sink.n;
        s->audit_next_id++;
        memcpy(s->audit_prev, hash, AUDIT_HASH_SIZE);
finish:
        pthread_mutex_unlock(&s->audit_lock);
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
        (void) store_audit_flush(s); /* a failure is logged; the table's records are still worth reading */
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
        (void) store_audit_flush(s);
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
        /* The spooled records first, so that the whole log is checked; a damaged spool is reported below. */
        (void) store_audit_flush(s);

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
        if (v.intact) {
                char why[sizeof(s->spool_reason)];
                int64_t bad;

                if (spool_damaged(s, &bad, why, sizeof(why)))
                        verdict_bad(&v, bad, "the spool %s is damaged: %s", s->spool_path, why);
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
