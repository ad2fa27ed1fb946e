/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Backends: the real PKCS#11 modules kysod loads (SoftHSM2, OpenSC, vendor
 * modules), and the slots they offer, merged into one slot list with
 * kyso's own slot ids. This is the only place that calls into a backend
 * module: the broker asks for a call by its wire id with native arguments
 * (backend_invoke) or through the few typed helpers below. Output
 * structures are zeroed before a backend sees them (SoftHSM2 ORs flags
 * into what it is given).
 *
 * Calls to a removable hardware token are serialised per slot (two
 * programs driving one ePass2003 at once is a known way to break it);
 * software tokens run in parallel. Slots are never freed while the daemon
 * runs, so a Slot pointer stays valid and a slot id keeps its meaning.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pkcs11.h"
#include "wire.h"

typedef enum SerializeMode {
        SERIALIZE_AUTO,
        SERIALIZE_ALWAYS,
        SERIALIZE_NEVER,
        _SERIALIZE_MAX,
        _SERIALIZE_INVALID = -EINVAL,
} SerializeMode;

/* Room for a key's CKA_ID in hex or its CKA_LABEL, as audit records and certificates give them. */
#define KEY_NAME_SIZE 129

/* A key's names as an audit record gives them, remembered per module (backend_key_names_cached()). */
#define KEY_NAMES_CACHED 16
typedef struct KeyNames {
        CK_OBJECT_HANDLE handle; /* CK_INVALID_HANDLE: an empty entry */
        uint64_t generation;     /* the module's objects_generation when they were read */
        char id_hex[KEY_NAME_SIZE];
        char label[KEY_NAME_SIZE];
} KeyNames;

typedef struct Backend {
        unsigned index;
        char *path;
        void *dl;
        CK_FUNCTION_LIST *f;
        CK_FUNCTION_LIST_3_0 *f3; /* NULL when the module offers only 2.x */
        CK_INFO info;
        bool blocking_events;     /* C_WaitForSlotEvent(0) works */
        bool initialized;
        pthread_t waiter;         /* blocks in C_WaitForSlotEvent(0), see backends_watch() */
        bool waiter_started;

        /*
         * Bumped after every call that can make or destroy an object, change its attributes, change which
         * objects a search shows or let the module give a handle to another object: closing sessions (their
         * session objects go), logging in or out (private objects show or hide; a module may renumber them),
         * the calls that make objects (C_CreateObject, C_CopyObject, C_GenerateKey, C_GenerateKeyPair,
         * C_UnwrapKey, C_DeriveKey), C_DestroyObject, C_SetAttributeValue, C_InitToken, and a token leaving
         * or arriving. Object handles belong to the module, not to a slot or session.
         */
        _Atomic uint64_t objects_generation;
        pthread_mutex_t names_lock;
        KeyNames names[KEY_NAMES_CACHED];
        unsigned names_next;
} Backend;

/* A search's answer, remembered per slot (see backend_find_all()). */
#define FOUND_CACHED 8
typedef struct Found {
        uint64_t generation; /* the module's objects_generation before the search ran */
        uint64_t stamp_usec; /* CLOCK_MONOTONIC when it ran */
        uint8_t *key;        /* the template, as found_key() writes it; NULL: an empty entry */
        size_t key_len;
        CK_OBJECT_HANDLE *handles;
        size_t n;
} Found;

typedef struct Slot {
        CK_SLOT_ID id; /* what clients see */
        Backend *backend;
        CK_SLOT_ID real;
        bool serialize;
        pthread_mutex_t call_lock; /* held around backend calls when serialize */

        /* What the last scan saw; guarded by the registry lock. */
        bool listed;
        bool token_present;
        CK_SLOT_INFO info;

        /* Shared login state of the token, owned by the broker (broker-login.c); guarded by login_lock. */
        pthread_mutex_t login_lock;
        CK_USER_TYPE login_user;
        unsigned login_count;     /* clients logged in */
        bool pin_known;
        uint8_t pin_salt[16];
        uint8_t pin_hash[32];
        uint64_t login_generation; /* bumped whenever the real login state ends */

        pthread_mutex_t found_lock;
        Found found[FOUND_CACHED];
        unsigned found_next;
} Slot;

int backends_load(char *const *paths, size_t n_paths, SerializeMode serialize);
/* The modules registered with p11-kit, minus kyso's own and trust-policy modules. */
int backends_find_registered(char ***ret_paths, size_t *ret_n);
void backends_unload(void);
size_t backends_count(void);
Backend *backend_get(unsigned index);

/*
 * Looks for new slots and for tokens that came or went. Returns the ids of
 * slots that had an event in *ret_events (caller frees), their count as the
 * return value, or -errno.
 */
int backends_scan(CK_SLOT_ID **ret_events);

Slot *slot_get(CK_SLOT_ID id);
/* A snapshot of the slot list (pointers stay valid); caller frees the array. */
int slots_snapshot(Slot ***ret_slots, size_t *ret_n);

void slot_call_begin(Slot *s);
void slot_call_end(Slot *s);

/* Runs one PKCS#11 call on the backend with the arguments as the wire decoder left them (already mapped). */
CK_RV backend_invoke(Backend *b, WireCall call, WireArg *args);

CK_RV backend_get_slot_info(Slot *s, CK_SLOT_INFO *ret);
CK_RV backend_get_token_info(Slot *s, CK_TOKEN_INFO *ret);
CK_RV backend_open_session(Slot *s, CK_FLAGS flags, CK_SESSION_HANDLE *ret);
CK_RV backend_close_session(Slot *s, CK_SESSION_HANDLE h);
CK_RV backend_login(Slot *s, CK_SESSION_HANDLE h, CK_USER_TYPE user, const uint8_t *pin, size_t pin_len);
CK_RV backend_logout(Slot *s, CK_SESSION_HANDLE h);
CK_RV backend_session_info(Slot *s, CK_SESSION_HANDLE h, CK_SESSION_INFO *ret);
CK_RV backend_get_bool_attribute(Slot *s, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
                                 CK_BBOOL *ret);
/* CKA_TOKEN and CKA_PRIVATE of an object: what decides which clients may see it. */
CK_RV backend_object_visibility(Slot *s, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, bool *ret_token, bool *ret_private);
/*
 * A key's CKA_ID (as lower-case hex) and CKA_LABEL, for the audit log: each "" when absent, cut to fit.
 * Needs no login for public attributes; a private key's are public too.
 */
CK_RV backend_key_names(Slot *s, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, char *id_hex, size_t id_size, char *label,
                        size_t label_size);
/*
 * backend_key_names() remembered: a signature's audit record names its key without asking the module each
 * time (SoftHSM2 decrypts a private key's attributes for every read: 60-70 us per signature here). An entry
 * holds while objects_generation is what it was when it was read.
 */
void backend_key_names_cached(Slot *s, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, char id_hex[static KEY_NAME_SIZE],
                              char label[static KEY_NAME_SIZE]);
/* A certificate object's value and names, as backend_certificates() reads them. */
typedef struct BackendCertificate {
        uint8_t *der;
        size_t der_len;
        char id_hex[KEY_NAME_SIZE];
        char label[KEY_NAME_SIZE];
} BackendCertificate;

/*
 * Reads the public certificate objects of the slot's token (at most 64, each at most 64 KiB) in a session
 * of its own. *ret is malloc()ed; free with backend_certificates_free().
 */
CK_RV backend_certificates(Slot *s, BackendCertificate **ret, size_t *ret_n);
void backend_certificates_free(BackendCertificate *c, size_t n);

CK_RV backend_destroy_object(Slot *s, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o);
/*
 * Runs a whole search; *ret_handles is malloc()ed. The answer is remembered for the slot: the same template
 * within a second (FOUND_CACHE_USEC), while the module's objects_generation is unchanged, gets it again without a call
 * to the module (a module serves every client's searches from one set of objects: SoftHSM2 compares each
 * object it holds, decrypting private ones, under its own locks). Only kysod changes the objects of the
 * tokens it owns, and each such change bumps the generation; the age limit bounds what a change made
 * around kysod (a tool writing a software token's files) can hide. What a client may see of the answer is
 * the broker's business, as before.
 */
CK_RV backend_find_all(Slot *s, CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, CK_ULONG count,
                       CK_OBJECT_HANDLE **ret_handles, size_t *ret_n);
/*
 * For each backend that can block in C_WaitForSlotEvent(0), a thread that waits there and calls
 * on_event() at each event; the others (SoftHSM2, most software tokens) are left to polling. The threads
 * end in backends_unload(), whose C_Finalize releases them.
 */
void backends_watch(void (*on_event)(void));

/* Blocks in the backend until a slot event (only for backends with blocking_events). */
CK_RV backend_wait_for_slot_event(Backend *b, CK_SLOT_ID *ret_real);

/* The module's file name, for messages. */
const char *backend_name(const Backend *b);
const char *ckr_to_string(CK_RV rv);
