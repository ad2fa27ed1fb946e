/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the parts of the broker share: a client's state, its sessions and
 * handles, and the calls (broker.c); login per client (broker-login.c);
 * the key rules around a call (broker-keys.c); the slot list and slot
 * events (broker-slots.c); the checks and records around a call
 * (broker-checks.c: custody, PIN age and quality, the audit log) and the
 * daemon's status (broker-status.c). Not for anything outside the broker.
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
#include "policy.h"
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
/* The key of an entry in a client's maps that one number names: (a, 0). */
HandleKey key1(uint64_t a);
/* The wrong PINs the broker counted on the slot while its token was logged in. */
unsigned pin_failures_get(const Slot *slot);
/* Sets that count (0 forgets it); fails only for want of memory. */
int pin_failures_set(const Slot *slot, unsigned n);
/* The slot's token class is judged anew at its next use (after a slot event). */
void slot_class_forget(CK_SLOT_ID id);
/* May the token's class do this operation ([class:NAME])? Refusals are logged. */
CK_RV check_token_operation(BrokerClient *bc, Slot *slot, TokenOperation op, const char *what);
/* A session of the uid ended: it no longer counts against [limits] sessions_per_uid. */
void uid_session_release(uid_t uid);
/* The client's handles for the session objects a session made go with it. Call with bc->lock held. */
void forget_session_objects_locked(BrokerClient *bc, CK_SESSION_HANDLE session);
/* How many sessions the client has on the slot. Call with bc->lock held. */
size_t client_sessions_on_slot_locked(BrokerClient *bc, const Slot *slot);
/* Closes every session the client has on the slot, which ends its login there. */
CK_RV close_sessions_on_slot(BrokerClient *bc, Slot *slot);

/* ---- broker-login.c ---- */

/* Has this client logged in to the slot's token, and as whom? */
bool client_logged_in(BrokerClient *bc, const Slot *slot, CK_USER_TYPE *ret_user);
/* C_Login and C_LoginUser: the token checks the first client's PIN, the broker a later client's. */
CK_RV broker_login(BrokerClient *bc, Session *s, WireCall call, WireArg *args);
/* Ends the client's login; the token's ends with the last client's. real_session: live, on that token. */
CK_RV broker_logout(BrokerClient *bc, Slot *slot, CK_SESSION_HANDLE real_session);
/* After the logged-in client's C_SetPIN: later clients must present the new PIN. */
void after_set_pin(BrokerClient *bc, Slot *slot, const WireArg *args);

/* ---- broker-keys.c ---- */

/*
 * A template as the backend will see it: the client's, plus what
 * policy_key_template() says kyso adds. Restored by template_restore().
 */
typedef struct TemplateEdit {
        WireArg *arg;
        void *ptr;
        CK_ULONG len;
        CK_ATTRIBUTE *grown;
} TemplateEdit;

/* What a key-making call needs the broker to remember between its check and its result. */
typedef struct KeyCall {
        KeyOrigin origin;
        bool has_source;
        KeyFacts source;
        TemplateEdit edits[2];
} KeyCall;

/* Before a call runs: the key rules on what it makes, changes, wraps or reads. CKR_OK to go on. */
CK_RV before_key_call(BrokerClient *bc, Session *session, WireCall call, WireArg *args, KeyCall *kc);
/* After it ran, or was refused: R1, K1/K2, and the templates back as they came. Always follows the above. */
CK_RV after_key_call(BrokerClient *bc, Session *session, WireCall call, const char *sig, WireArg *args,
                     KeyCall *kc, CK_RV rv);

/* ---- broker-slots.c ---- */

/* C_GetSlotList, after a rescan; a hidden token is not listed as present. */
CK_RV handle_get_slot_list(BrokerClient *bc, WireArg *args);
/* C_WaitForSlotEvent: returns 1 when the call is parked until broker_slot_events() answers it. */
int handle_wait_for_slot_event(BrokerClient *bc, uint32_t serial, WireArg *args, CK_RV *ret_rv);

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
