/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the module remembers about each session it opened: the slot (for
 * C_CloseAllSessions), the result of a search (C_FindObjectsInit fetches
 * every handle in one round trip; C_FindObjects pages through them here)
 * and the mechanism of each active message operation (the codec needs it
 * to lay out the per-message parameter). Each entry carries the number of
 * the connection it was opened on; after a reconnect the daemon has
 * forgotten those sessions, and so does this table.
 *
 * Thread-safe; the lock is never held across a round trip.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "pkcs11.h"

typedef enum MessageKind {
        MESSAGE_ENCRYPT,
        MESSAGE_DECRYPT,
        MESSAGE_SIGN,
        MESSAGE_VERIFY,
        _MESSAGE_KIND_MAX,
} MessageKind;

int sessions_add(CK_SESSION_HANDLE handle, CK_SLOT_ID slot, uint64_t generation);
void sessions_remove(CK_SESSION_HANDLE handle);
void sessions_remove_slot(CK_SLOT_ID slot);
void sessions_clear(void);

/* -ENOENT: no such session on this connection; -EBUSY: a search is active. */
int sessions_find_check(CK_SESSION_HANDLE handle, uint64_t generation);
/*
 * Takes ownership of found (count handles) as the session's search result.
 * -EBUSY if a search became active meanwhile (found is freed). A session
 * the table does not know yet (opened before it could be recorded) is added.
 */
int sessions_find_start(CK_SESSION_HANDLE handle, uint64_t generation, CK_OBJECT_HANDLE *found, CK_ULONG count);
/* -ENOENT: unknown session; -ENODATA: no active search. */
int sessions_find_next(CK_SESSION_HANDLE handle, uint64_t generation, CK_OBJECT_HANDLE *ret, CK_ULONG max,
                       CK_ULONG *ret_count);
int sessions_find_final(CK_SESSION_HANDLE handle, uint64_t generation);

void sessions_set_message(CK_SESSION_HANDLE handle, uint64_t generation, MessageKind kind, CK_MECHANISM_TYPE mech);
/* The mechanism of the active message operation, or CK_UNAVAILABLE_INFORMATION. */
CK_MECHANISM_TYPE sessions_get_message(CK_SESSION_HANDLE handle, uint64_t generation, MessageKind kind);

/* pthread_atfork: take the lock before fork, release it in the parent, reset the table in the child. */
void sessions_lock_for_fork(void);
void sessions_unlock_after_fork(void);
void sessions_reset_after_fork(void);
