/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the parts of the broker share: a client's state and its sessions
 * (broker.c), the checks and records around a call (broker-checks.c:
 * custody, PIN age and quality, the audit log) and the daemon's status
 * (broker-status.c). Not for anything outside the broker.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "backend.h"
#include "broker.h"
#include "custody.h"
#include "handlemap.h"
#include "wire.h"

/* Decoded arguments of one request: output buffers sized by the client, each capped by the frame size. */
#define REQUEST_ARENA_MAX (3U * KYSO_WIRE_FRAME_MAX)
#define CLIENT_WAITERS_MAX 16U
#define CLIENT_EVENTS_MAX 256U

typedef struct Session {
        CK_SESSION_HANDLE handle; /* the client's */
        CK_SESSION_HANDLE real;   /* the backend's */
        Slot *slot;
        unsigned refs; /* guarded by the client's lock */
        /* The last custody decision that allowed this session: good while the registry's generation is
         * custody_gen and the clock is before custody_until (atomics: calls on one session may overlap). */
        uint64_t custody_gen;
        int64_t custody_until;
        /* The key and mechanism of the operations in progress, for the audit record at their end. */
        CK_OBJECT_HANDLE sign_key, decrypt_key;
        CK_MECHANISM_TYPE sign_mech, decrypt_mech;
} Session;

/*
 * An object a client has a handle for. is_token and is_private decide who may
 * see it: a session object (not a token object) is visible only to the client
 * that created it, and a private object only to a client that has itself
 * logged in to the token.
 */
typedef struct ObjectRef {
        Slot *slot;
        CK_OBJECT_HANDLE real;
        bool is_token;
        bool is_private;
        /*
         * Backend handles do not outlive what they depend on, and a backend may
         * reuse the number for another object (OpenSC's handles are pointers):
         * a session object dies with the session that made it (session), a
         * private object's handle with the token's login (login_generation).
         */
        CK_SESSION_HANDLE session;
        uint64_t login_generation;
} ObjectRef;

struct BrokerClient {
        Client *conn;
        uid_t uid; /* taken at connect: the sessions it holds count against this uid */
        char exe[256]; /* its executable at connect, for the audit log ("" if unknown) */
        pthread_mutex_t lock;
        bool hello_done;
        bool disconnected;
        CK_ULONG next_handle;
        HandleMap *sessions;    /* (handle, 0) -> Session * */
        HandleMap *objects;     /* (handle, 0) -> ObjectRef * */
        HandleMap *objects_rev; /* (slot id, real handle) -> handle */
        HandleMap *logins;      /* (slot id, 0) -> CK_USER_TYPE this client logged in as */
        CK_SLOT_ID events[CLIENT_EVENTS_MAX];
        size_t n_events;
        uint32_t waiters[CLIENT_WAITERS_MAX]; /* serials of parked blocking C_WaitForSlotEvent calls */
        size_t n_waiters;
        BrokerClient *prev, *next;
};

/* broker.c's shared state: the configuration, the start time, the list of clients (clients_lock). */
extern BrokerConfig broker_config;
extern time_t started_at;
extern pthread_mutex_t clients_lock;
extern BrokerClient *clients;

/* Logs (and audits) a refusal with who asked and what for. */
void broker_refuse(BrokerClient *bc, const Slot *slot, const char *what, const char *why);
bool client_logged_in(BrokerClient *bc, const Slot *slot, CK_USER_TYPE *ret_user);

/* ---- broker-checks.c ---- */

/* The client's executable (or [comm]) for the audit log. */
void client_executable(pid_t pid, char *buf, size_t size);
/* May the client use the slot's token? Refusals are logged and told to the bus. */
CK_RV custody_allows(BrokerClient *bc, Slot *slot, const char *operation, CustodyVerdict *ret);
void session_custody_remember(Session *s, const CustodyVerdict *v);
/* The custody check on every call in a session (free while nothing changed). */
CK_RV session_custody(BrokerClient *bc, Session *s, WireCall call);
/* Tells custody what is in the slot now, with the token's certificates. */
void custody_note_slot(Slot *slot);
/* [policy] refused_tokens = hidden: is the slot's token absent for this client? */
bool token_hidden(BrokerClient *bc, const Slot *slot);
/* The audit record of an operation on the slot's token; a failure means its result must not go out. */
int audit_operation(BrokerClient *bc, Slot *slot, const char *event, CK_SESSION_HANDLE real_session,
                    CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE mech, CK_RV rv, const char *detail);
CK_RV pin_age_allows(BrokerClient *bc, Slot *slot, WireCall call);
CK_RV pin_quality_allows(BrokerClient *bc, Slot *slot, WireCall call, const WireArg *new_pin,
                         const WireArg *old_pin);
/* After a signature, decryption or unwrap: its audit record, or no result (see broker-checks.c). */
CK_RV audit_result(BrokerClient *bc, Session *session, WireCall call, WireArg *args, CK_RV rv);

/* ---- broker-status.c ---- */

/* DAEMON_STATUS: the daemon, its backends, slots and clients as JSON. */
CK_RV broker_status(BrokerClient *bc, WireArg *args);
