/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The module's connection to kysod. One Client exists per C_Initialize; it
 * owns at most one live connection at a time and replaces a dead one by
 * itself on the next call (connect, HELLO with a handle base above every
 * handle the application has seen, so the daemon's new handles never alias
 * old ones).
 *
 * Many application threads call at once over the one connection: every
 * request carries a serial, whole frames are written under a write lock,
 * and replies are routed by serial to the thread waiting for them. No
 * thread is created: whichever waiting thread holds the "reader" role reads
 * frames and hands each to its owner, then passes the role on when its own
 * reply has arrived (leader/follower). A long outstanding call (a blocking
 * C_WaitForSlotEvent) is just another waiter and blocks nobody else.
 *
 * Errors are -errno: -ECONNRESET the connection died under the call (or the
 * daemon cannot be reached again), -EBADMSG the daemon sent something
 * malformed (the connection is dropped), -ESHUTDOWN the client was shut
 * down (C_Finalize) while the call waited, -EINVAL/-EMSGSIZE/-ENOMEM from
 * encoding the request.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "pkcs11.h"
#include "wire.h"

typedef struct Client Client;

/* How long connect + HELLO may take before the daemon counts as unreachable. */
#define CLIENT_HELLO_TIMEOUT_MSEC 3000

/*
 * Connects to the daemon at path and does the HELLO. Returns 0, or -errno
 * (-ENOENT/-ECONNREFUSED: nobody listens; -ETIMEDOUT: no HELLO reply;
 * -EPROTO: the daemon refused the HELLO or speaks another version).
 */
int client_new(const char *path, Client **ret);

void client_ref(Client *c);
/* Frees the client when the last reference goes. Accepts NULL; returns NULL. */
Client *client_unref(Client *c);

/*
 * Makes every call waiting on c return -ESHUTDOWN (and every later one) and
 * closes the connection. Used by C_Finalize; the memory stays until the
 * last reference goes.
 */
void client_shutdown(Client *c);

/*
 * In a child after fork(): closes the inherited socket without shutdown()
 * (which would cut the parent's connection too) and frees c without
 * touching locks that threads of the parent may have held. Accepts NULL.
 */
void client_forget_after_fork(Client *c);

/* pthread_atfork helpers: take c's lock before fork, release it in the parent. */
void client_lock_for_fork(Client *c);
void client_unlock_after_fork(Client *c);

/*
 * Runs one call: reconnects if needed, sends the request, waits for the
 * reply and decodes it into args. ret_rv is the daemon's answer; outputs
 * are written only when the reply carries them. ret_generation (may be
 * NULL) receives the number of the connection the call ran on.
 */
int client_call(Client *c, WireCall call, WireArg *args, CK_RV *ret_rv, uint64_t *ret_generation);

/* The number of the live connection (unique in the process), 0 while there is none. */
uint64_t client_generation(Client *c);

/* Flags the daemon announced in the HELLO of the current connection. */
uint32_t client_server_flags(Client *c);

/* Waits usec, or less if c is shut down (then -ESHUTDOWN). */
int client_sleep(Client *c, uint64_t usec);

/*
 * Records a session or object handle given to the application. Process
 * wide, kept across C_Finalize and fork: the HELLO handle base is one more
 * than the largest handle ever recorded.
 */
void client_note_handle(CK_ULONG handle);
uint64_t client_handle_base(void);
