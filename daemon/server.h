/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The socket side of kysod: accepts connections on the unix socket, reads
 * frames and writes replies, with a pool of worker threads sharing one
 * epoll set. A worker that reads a whole request frame runs it itself
 * (through the broker), so a request costs one wake-up on each side and a
 * slow backend call occupies only that worker; the pool grows while every
 * worker is busy. Sockets are non-blocking: a client that does not read
 * its replies gets its reading paused once its queue is long, so it cannot
 * make the daemon buffer without bound, and it never stalls the others.
 *
 * The identity of a client is what the kernel says at connect
 * (SO_PEERCRED), nothing the client sends.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct Client Client;
typedef struct BrokerClient BrokerClient;

typedef struct ServerConfig {
        int listen_fd;
        unsigned workers;
        unsigned max_workers;
        unsigned spin_usec; /* how long one idle worker polls before sleeping; 0: never */
        unsigned connections_per_uid;
        unsigned requests_per_uid;         /* running at once across a uid's connections */
        size_t buffered_bytes_per_uid;     /* unread replies across a uid's connections */
        unsigned requests_per_client;      /* running at once; reading pauses beyond */
        size_t buffered_bytes_per_client;  /* unread replies; reading pauses beyond */
        unsigned call_timeout_ms;          /* a request running longer is answered CKR_DEVICE_ERROR; 0: never */
} ServerConfig;

int server_start(const ServerConfig *config);
/* Stops accepting, disconnects every client and joins the workers (waiting at most timeout_usec). */
/* Returns how many workers are still stuck in a backend call. */
unsigned server_stop(uint64_t timeout_usec);

void client_ref(Client *c);
void client_unref(Client *c);
/* Queues a whole frame for the client; never blocks. Drops it if the client is gone. */
void client_send(Client *c, const uint8_t *data, size_t len);
/* Disconnects the client, e.g. after a protocol error. */
void client_kill(Client *c);

uid_t client_uid(const Client *c);
gid_t client_gid(const Client *c);
pid_t client_pid(const Client *c);
uint64_t client_id(const Client *c);
BrokerClient *client_broker(const Client *c);

/* Called by the broker while it runs a request: which slot the request is for, and a name for where it
 * lives (the backend module), so a timeout can say which token hangs. */
void server_note_token(unsigned long slot_id, const char *label);

/* Connection count, for status. */
unsigned server_client_count(void);
