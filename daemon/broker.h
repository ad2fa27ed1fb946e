/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The broker: the PKCS#11 state of each client and the translation of its
 * calls onto the backends. Session and object handles a client sees are
 * issued here, per client, and mean nothing to another client. Login is
 * per client: the first client's PIN is checked by the token, every later
 * client's against what that login proved, and the token stays logged in
 * while any client is. A client's sessions close and its login ends when
 * it disconnects; nothing of it outlives it.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"
#include "pkcs11.h"
#include "server.h"

typedef struct BrokerConfig {
        const char *socket_path;
        const char *state_dir;
        const struct TokenClass *classes; /* kysod.conf [class:NAME] sections, first match applies */
        size_t n_classes;
        unsigned sessions_per_uid;
} BrokerConfig;

void broker_setup(const BrokerConfig *config);

int broker_client_new(Client *conn, BrokerClient **ret);
/* The connection ended: drop parked calls. The client's sessions close when it is freed. */
void broker_client_disconnect(BrokerClient *bc);
/* Closes the client's sessions and ends its logins. Accepts NULL. */
void broker_client_free(BrokerClient *bc);

/*
 * Runs one request frame payload and appends the reply frame to reply (or
 * nothing, when the reply comes later, as for a blocking
 * C_WaitForSlotEvent). Returns 0, or -errno for a request that breaks the
 * protocol: the caller then drops the connection.
 */
int broker_handle(BrokerClient *bc, const uint8_t *payload, size_t len, Buffer *reply);

/* Slots had events (tokens inserted or removed, slots added): tell clients, wake waiters. */
void broker_slot_events(const CK_SLOT_ID *ids, size_t n);

/* Rescans the backends and hands the events on. */
void broker_rescan(void);
/* A token's custody changed: close the sessions of clients that may no longer use it. */
void broker_custody_changed(CK_SLOT_ID slot);
