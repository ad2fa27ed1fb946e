/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The store: kysod's state in one SQLite database (default
 * /var/lib/kyso/kyso.db). It holds the tokens the daemon has seen, the
 * custody records (who holds which token, by which written decision, in
 * which state) and the handovers between holders; later the PIN-change
 * dates and the audit chain. store.c and store-audit.c (the audit chain) are the only files that run
 * SQL.
 *
 * The database is in WAL mode with synchronous=FULL: a function that
 * returned 0 has committed, and neither SIGKILL of kysod nor a crash of the
 * machine loses it or leaves the file unusable. Audit appends alone go to a
 * spool file beside it first (store_audit_append()): SIGKILL loses none, a
 * power cut may lose the last few. The schema carries a
 * version (PRAGMA user_version) and a list of migrations run in order, each
 * in its own transaction. A database of a newer schema than this build knows
 * is refused, never modified.
 *
 * A Store is used by one thread at a time: kysod serialises calls with its
 * own lock (the store's callers are the broker's custody checks, which read
 * the registry from memory, and the bus, which writes rarely). The one
 * exception is store_audit_append(), which takes a lock of its own and runs
 * beside anything else.
 *
 * Functions return 0 (or a count) on success and -errno on failure:
 * -ENOENT for a missing token or record, -EEXIST for a conflict, -EINVAL for
 * bad arguments, -EIO (logged with SQLite's message) when the database
 * fails, -EROFS when it cannot be written. ret_ parameters are left
 * untouched on failure. Times are Unix seconds (int64_t).
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Store Store;

typedef enum CustodyKind {
        CUSTODY_KIND_ORGANIZATION, /* an organisation's token, held by its records clerk */
        CUSTODY_KIND_PERSONAL,     /* a person's own token, only for that person */
        CUSTODY_KIND_DEVICE,       /* a token bound to a machine or service */
        _CUSTODY_KIND_MAX,
        _CUSTODY_KIND_INVALID = -EINVAL,
} CustodyKind;

typedef enum CustodyState {
        CUSTODY_STATE_ACTIVE,
        CUSTODY_STATE_LOST,
        CUSTODY_STATE_REVOKED,
        CUSTODY_STATE_RETURNED,
        CUSTODY_STATE_LOCKED,
        _CUSTODY_STATE_MAX,
        _CUSTODY_STATE_INVALID = -EINVAL,
} CustodyState;

/* "organization", "personal", "device"; NULL for an invalid value. */
const char *custody_kind_to_string(CustodyKind k);
CustodyKind custody_kind_from_string(const char *s);
/* "active", "lost", "revoked", "returned", "locked". */
const char *custody_state_to_string(CustodyState s);
CustodyState custody_state_from_string(const char *s);

/* A token the daemon has seen in a slot. Strings are blank-trimmed, never NULL. */
typedef struct StoreToken {
        char *serial;
        char *manufacturer;
        char *model;
        char *label;
        int64_t first_seen;
        int64_t last_seen;
} StoreToken;

/*
 * A custody record. A token's current record is the newest one for its
 * serial; older ones are its history. The holder is a local user name
 * ("nguyenvana") or a group name after '@' ("@vanthu").
 * Optional strings are NULL when unset.
 */
typedef struct CustodyRecord {
        int64_t id;
        char *serial;
        CustodyKind kind;
        char *holder;
        char *organization;    /* optional */
        char *decision_ref;    /* "12/QĐ-UBND" */
        char *decision_date;   /* "YYYY-MM-DD" */
        char *decision_signer; /* optional */
        int64_t valid_from;
        int64_t valid_until; /* 0: no end */
        CustodyState state;
        char *state_reason;  /* optional: why the state last changed */
        bool pin_change_required;
        int64_t created_at;
        char *created_by; /* who recorded it: a user name, or "uid N" */
        int64_t updated_at;
        char *updated_by;
} CustodyRecord;

/* A recorded transfer of a token from one holder to another. */
typedef struct Handover {
        int64_t id;
        char *serial;
        char *from_holder;
        char *to_holder;
        char *minutes_ref; /* the handover minutes ("biên bản bàn giao") */
        int64_t at;
        char *recorded_by;
} Handover;

/* Opens (creating if needed) and migrates the database at path. */
int store_open(const char *path, Store **ret);
/* Accepts NULL; returns NULL. */
Store *store_close(Store *s);
/* The schema version this build writes. */
int store_schema_version(void);

/* Inserts or updates a token seen now: first_seen is kept, the rest replaced. */
int store_token_seen(Store *s, const char *serial, const char *manufacturer, const char *model, const char *label,
                     int64_t now);
int store_token_get(Store *s, const char *serial, StoreToken *ret);
/* Every token seen, ordered by serial. */
int store_tokens(Store *s, StoreToken **ret, size_t *ret_n);

/* The current record of a token: -ENOENT when it never had one. */
int store_custody_current(Store *s, const char *serial, CustodyRecord *ret);
/* The current record of every token that has one, ordered by serial. */
int store_custody_all(Store *s, CustodyRecord **ret, size_t *ret_n);
/* Every record of a token, oldest first. */
int store_custody_history(Store *s, const char *serial, CustodyRecord **ret, size_t *ret_n);
/*
 * Adds rec as the token's new current record (rec->id, created_at/by and
 * updated_at/by are taken from the arguments, not from rec). Whether a new
 * record may replace the current one is the caller's decision.
 */
int store_custody_add(Store *s, const CustodyRecord *rec, int64_t now, const char *by, int64_t *ret_id);
/* Changes the state of the token's current record. -ENOENT without one. */
int store_custody_set_state(Store *s, const char *serial, CustodyState state, const char *reason, int64_t now,
                            const char *by);
/* Sets or clears pin_change_required on the current record (the PIN work clears it after a change). */
int store_custody_set_pin_change_required(Store *s, const char *serial, bool required, int64_t now, const char *by);
/*
 * In one transaction: records a handover from the current holder to
 * to_holder and makes to_holder the holder of the current record, with
 * pin_change_required as given. -ENOENT without a current record.
 */
int store_handover(Store *s, const char *serial, const char *to_holder, const char *minutes_ref,
                   bool pin_change_required, int64_t now, const char *by);
/* The handovers of a token, oldest first. */
int store_handovers(Store *s, const char *serial, Handover **ret, size_t *ret_n);
/*
 * Adds n records in one transaction: all or none. A record equal in every
 * field the caller sets (kind, holder, organization, decision, validity,
 * state, pin_change_required) to the token's current record is skipped.
 * Returns how many were added.
 */
int store_custody_import(Store *s, const CustodyRecord *recs, size_t n, int64_t now, const char *by);

void store_token_done(StoreToken *t);
void custody_record_done(CustodyRecord *r);
void handover_done(Handover *h);
/* Free an array returned above (each element's _done, then the array). Accept NULL. */
void store_tokens_free(StoreToken *a, size_t n);
void custody_records_free(CustodyRecord *a, size_t n);
void handovers_free(Handover *a, size_t n);
/* A deep copy; -ENOMEM. */
int custody_record_copy(const CustodyRecord *src, CustodyRecord *ret);

/* ---- PIN changes (schema 2) ----
 *
 * Every successful C_SetPIN / C_InitPIN that passed through kysod: the PIN's age is counted from the last
 * one. Never the PIN itself.
 */
int store_pin_changed(Store *s, const char *serial, int64_t at, uint32_t uid, const char *how);
/* The time of the token's last recorded PIN change: -ENOENT when there is none. */
int store_pin_last_change(Store *s, const char *serial, int64_t *ret_at);

/* ---- certificates seen on tokens (schema 2) ---- */

typedef struct StoreCertificate {
        char *serial;  /* the token's */
        char *key_id;  /* CKA_ID in lower-case hex, "" when none */
        char *label;   /* CKA_LABEL */
        char *subject; /* RFC 2253 text, UTF-8 */
        char *issuer;
        int64_t not_before;
        int64_t not_after;
} StoreCertificate;

/* Replaces what is known of the token's certificates with certs (n may be 0), in one transaction. */
int store_certificates_set(Store *s, const char *serial, const StoreCertificate *certs, size_t n);
int store_certificates(Store *s, const char *serial, StoreCertificate **ret, size_t *ret_n);
void store_certificate_done(StoreCertificate *c);
void store_certificates_free(StoreCertificate *a, size_t n);

/* ---- the audit log (schema 2) ----
 *
 * Records form a hash chain: hash = SHA-256(prev_hash || the record's fields, each length-prefixed, id
 * and at as 8 bytes big-endian), prev_hash of the first record being 32 zero bytes. A separate head row
 * holds the id and hash of the last record, updated in the same transaction, so that deleting records
 * at the end is caught too. Ids are consecutive from 1; a gap is a deleted record.
 *
 * Strings are never NULL in a stored record ("" when there is nothing to say). Never a PIN.
 */
typedef struct AuditRecord {
        int64_t id;        /* set by store_audit_append() */
        int64_t at;
        char *event;       /* "login", "logout", "sign", "decrypt", "unwrap", "pin-change", "pin-init",
                              "custody", "handover", "refused", ... */
        uint32_t uid;
        int32_t pid;
        char *exe;         /* the client's executable, "" when unknown */
        char *serial;      /* the token's, "" when none */
        char *key_id;      /* hex of CKA_ID, "" when no key */
        char *key_label;
        char *mechanism;   /* "CKM_SHA256_RSA_PKCS", "" when none */
        char *result;      /* "CKR_OK", "CKR_PIN_INCORRECT", "refused", ... */
        char *detail;      /* free text: a reason, a custody change */
        uint8_t prev_hash[32]; /* set by store_audit_append() */
        uint8_t hash[32];      /* set by store_audit_append() */
} AuditRecord;

/*
 * Appends a record (rec->id, prev_hash and hash are filled in): written to the spool beside the database
 * (kyso.db-audit) with one write(), so that it survives SIGKILL of kysod, and moved into the table by
 * store_audit_flush(). The one Store function that takes a lock of its own and may run beside any other:
 * appends never wait for SQL. Any failure (-EROFS, -ENOSPC, -EIO, ...) means nothing was written: the
 * caller must not do what it was about to record. A damaged head or spool refuses with -EIO.
 */
int store_audit_append(Store *s, AuditRecord *rec);
/*
 * Moves the spooled records into the table in one transaction (synchronous=FULL), checking each against
 * its hash and its place in the chain: the spool is renamed to kyso.db-audit.1 and a new one started (the
 * only moment appends wait), then the renamed file is imported and removed. Readers below call it first;
 * kysod also calls it on a timer, and store_open() and store_close() do. -EBADMSG when the spool is
 * damaged (it is left as it is, and store_audit_verify() says where).
 */
int store_audit_flush(Store *s);

typedef struct AuditFilter {
        int64_t since;      /* 0: from the start */
        int64_t until;      /* 0: to the end; else at < until */
        const char *serial; /* NULL: any */
        int64_t uid;        /* -1: any */
        const char *event;  /* NULL: any */
        size_t limit;       /* 0: no limit; else the newest `limit` records */
} AuditFilter;

/* Records matching the filter, oldest first. */
int store_audit_query(Store *s, const AuditFilter *f, AuditRecord **ret, size_t *ret_n);
/* How many records of the event with the result "CKR_OK" the token has in [since, until) (0: open). */
int store_audit_count(Store *s, const char *serial, const char *event, int64_t since, int64_t until,
                      uint64_t *ret_count);

typedef struct AuditVerdict {
        bool intact;
        uint64_t checked;     /* records read */
        int64_t first_bad_id; /* 0 when intact; else the first record whose link is broken (or the id where
                                 one is missing) */
        char reason[160];     /* what is wrong, for a person */
} AuditVerdict;

/* Walks the whole chain. Returns 0 with the verdict (intact or not), or -errno when it could not read. */
int store_audit_verify(Store *s, AuditVerdict *ret);

void audit_record_done(AuditRecord *r);
void audit_records_free(AuditRecord *a, size_t n);
