/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Custody: who may use which token (REGULATION.md Art. 4, 6-8). This keeps
 * the registry in memory for the broker's checks (every token kysod has
 * seen or holds a record for, with its current custody record and, while
 * it is present, its slot), records tokens as they come and go, and carries
 * out an admin's changes in one order: the store first (nothing changes if
 * it cannot be written), then memory, then the broker closes the sessions
 * the change forbids, then the bus tells everyone.
 *
 * Decisions are policy_custody()'s; this file gathers the facts (which
 * record, is the caller the holder or in the holding group, what time it
 * is). Every change of the registry bumps a generation number, so the
 * broker can keep a decision for an open session and look again only when
 * something changed or the decision's window ends.
 *
 * Thread-safe: the broker's workers check and report slot events, the bus
 * (main thread) reads and changes.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "hotplug.h"
#include "kysod-config.h"
#include "pkcs11.h"
#include "policy.h"
#include "store.h"

/* SIGHUP: [policy] and [pin] from a configuration read again; decisions change at once. */
void custody_reconfigure(const KysodConfig *config);
/* Loads the registry from the state database (state_open() first); db_path names it in messages. */
int custody_init(const char *db_path, const KysodConfig *config);
void custody_done(void);

/* Now, in Unix seconds: clock_now(), the clock every custody decision uses. */
int64_t custody_now(void);

/* A token is in slot (info from C_GetTokenInfo), or the slot's token left. */
void custody_token_present(CK_SLOT_ID slot, const CK_TOKEN_INFO *info);
void custody_token_absent(CK_SLOT_ID slot);

typedef struct CustodyVerdict {
        PolicyDecision decision;
        int64_t recheck_at;  /* when time alone may change it */
        uint64_t generation; /* of the registry it was made from */
        char serial[33];     /* the token's serial, "" when the slot has no known token */
} CustodyVerdict;

uint64_t custody_generation(void);
/* May uid use the token in slot now? */
CustodyVerdict custody_check(uid_t uid, CK_SLOT_ID slot);
/* Tells the bus (AccessDenied) and the log that a client was refused. */
void custody_report_denied(const CustodyVerdict *v, uid_t uid, pid_t pid, const char *exe, CK_SLOT_ID slot,
                           const char *operation);

/* ---- changes by an admin (the bus checks who may ask) ----
 * Return 0 or -errno: -ENOENT no such token or record, -EBUSY the change does not fit the token's state,
 * -EINVAL a bad argument, -EROFS/-ENOSPC/-EIO the store failed (nothing changed). *ret_error (may be NULL)
 * gets a malloc()ed message for the caller on failure.
 */
int custody_assign(const CustodyRecord *rec, uid_t by, char **ret_error);
/* pin_change_required: 1, 0, or -1 for the configured default. */
int custody_handover(const char *serial, const char *to, const char *minutes, int pin_change_required, uid_t by,
                     char **ret_error);
int custody_change_state(const char *serial, CustodyOp op, const char *reason, uid_t by, char **ret_error);
int custody_export(char **ret_json);
int custody_import(const char *json, uid_t by, unsigned *ret_added, char **ret_error);

/* ---- reading, for the bus ---- */

typedef struct TokenView {
        StoreToken token; /* strings "" when never seen */
        bool present;
        CK_SLOT_ID slot;
        bool has_record;
        CustodyRecord record;
        Handover *handovers; /* with_extras only */
        size_t n_handovers;
        StoreCertificate *certificates; /* with_extras only */
        size_t n_certificates;
        int64_t pin_changed_at; /* 0: never seen */
        char usb_device[USB_DEVICE_DESCRIPTION_MAX]; /* usb_device_describe() of the device it came in, "" if not known */
        PinVerdict pin;
        PinPolicy pin_policy;
} TokenView;

/* Serials of every known token, sorted. */
int custody_serials(char ***ret, size_t *ret_n);
/* with_extras: also the handovers and certificates, from the database. */
int custody_view(const char *serial, bool with_extras, TokenView *ret);
void token_view_done(TokenView *v);
bool custody_unknown_allowed(void);
/* [policy] refused_tokens = hidden: a client sees no token it may not use. */
bool custody_hides_refused(void);
const char *custody_admin_group(void);

/* ---- PINs (REGULATION.md Art. 21.3) ---- */

/* kysod.conf [pin]: what applies to tokens without a record and to kinds without overrides. */
PinPolicy custody_pin_default(void);
/* The PIN policy for the token in slot (its kind's, or [pin]'s). */
PinPolicy custody_pin_policy(CK_SLOT_ID slot);
/* The PIN's state for the token in slot; serial (33 bytes, may be NULL) gets the token's serial. */
PinVerdict custody_pin_check(CK_SLOT_ID slot, char *serial);
/* What C_GetTokenInfo said of the token's PIN counters (count low, final try, locked). */
void custody_pin_flags(CK_SLOT_ID slot, CK_FLAGS flags);
/* A C_SetPIN or C_InitPIN through kysod succeeded: recorded; a handover's demand is met. */
void custody_pin_changed(CK_SLOT_ID slot, uid_t uid, const char *how);
/* Looks at every token's PIN: signals PinExpiring, PinExpired and PinLocked when a token enters that state. */
void custody_pin_sweep(void);
/* The serial of the token in slot into serial (33 bytes); "" when none is known there. */
void custody_slot_serial(CK_SLOT_ID slot, char *serial);
/* The certificates on the token in slot, as it was read when it arrived (replaces what was known). */
void custody_certificates(CK_SLOT_ID slot, const StoreCertificate *certs, size_t n);

/* ---- the account database ---- */

/* Is uid root or a member of the admin group? */
bool custody_uid_is_admin(uid_t uid);
/* Is uid the holder: the user of that name, or a member of the group "@name"? */
bool custody_uid_holds(uid_t uid, const char *holder);
/* "name" for a uid, or "uid N"; malloc()ed, NULL on OOM. */
char *custody_user_name(uid_t uid);
