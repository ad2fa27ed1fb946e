/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The audit log (REGULATION.md Art. 16.9, 17.5, 22.2): every login, signature,
 * decryption, unwrap, PIN change, custody change and refusal, with who (uid,
 * pid, executable), which token and key, which mechanism and the result.
 * Never a PIN. Each record goes into the hash chain of the state database
 * (store.h) and, when kysod runs under systemd, to the journal with a
 * MESSAGE_ID per event and KYSO_* fields (kysod(8) lists them), so that a
 * fleet collects them with standard tools.
 *
 * A record that cannot be written is an error the caller acts on: signing,
 * decrypting and unwrapping are refused rather than done unrecorded.
 */
#pragma once

#include <sys/types.h>

#include "pkcs11.h"
#include "store.h"

typedef struct AuditEntry {
        const char *event; /* see audit_event_message_id() for the events */
        uid_t uid;
        pid_t pid;
        const char *exe;
        const char *serial;
        const char *key_id;
        const char *key_label;
        const char *mechanism;
        const char *result;
        const char *detail;
} AuditEntry;

/* Records e (NULL strings as ""). 0, or -errno (logged) when the database could not take it. */
int audit_log(const AuditEntry *e);

/* The journal's MESSAGE_ID for an event ("sign", ...), or NULL for one it does not know. */
const char *audit_event_message_id(const char *event);

/* "CKM_SHA256_RSA_PKCS", or the number in hex (in buf) for a mechanism without a name here. */
const char *audit_mechanism_name(CK_MECHANISM_TYPE m, char *buf, size_t size);

/* The records the filter selects, as the JSON array Manager.GetAudit returns. */
int audit_query_json(const AuditFilter *f, char **ret);
int audit_verify(AuditVerdict *ret);
/* Moves the records waiting in the spool into the database (store_audit_flush()); kysod's loop calls it
 * every AUDIT_FLUSH_USEC so that the table is never far behind. */
#define AUDIT_FLUSH_USEC (1000U * 1000U)
int audit_flush(void);
