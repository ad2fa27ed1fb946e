/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "backend.h"
#include "broker-internal.h"
#include "broker.h"
#include "config.h"
#include "custody.h"
#include "handlemap.h"
#include "kysod-config.h"
#include "log.h"
#include "macro.h"
#include "policy.h"
#include "wire.h"

BrokerConfig broker_config;
time_t started_at;
pthread_mutex_t clients_lock = PTHREAD_MUTEX_INITIALIZER;
BrokerClient *clients;

/*
 * State shared by all clients, guarded by state_lock (taken after a slot's login_lock, never before):
 * sessions per uid (uid -> count), the class of each token (slot id -> class index + 1, 0 for none;
 * absent until first needed, dropped on slot events), and the wrong PINs the broker counted per slot
 * (slot id -> count).
 */
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static HandleMap *uid_sessions, *slot_classes, *pin_failures;

static void arena_freep(Arena **a)
{
        arena_free(*a);
}

void broker_setup(const BrokerConfig *config)
{
        broker_config = *config;
        started_at = time(NULL);
        pthread_mutex_lock(&state_lock);
        if (!uid_sessions)
                uid_sessions = handle_map_new();
        if (!slot_classes)
                slot_classes = handle_map_new();
        if (!pin_failures)
                pin_failures = handle_map_new();
        pthread_mutex_unlock(&state_lock);
}

/* A count in one of the shared maps; 0 when absent. Call with state_lock held. */
static uint64_t state_get_locked(HandleMap *m, uint64_t key)
{
        uint64_t v = 0;

        if (m)
                (void) handle_map_get(m, (HandleKey) { .a = key }, &v);
        return v;
}

static int state_set_locked(HandleMap *m, uint64_t key, uint64_t v)
{
        if (!m)
                return -ENOMEM;
        if (v == 0) {
                (void) handle_map_remove(m, (HandleKey) { .a = key }, NULL);
                return 0;
        }
        return handle_map_put(m, (HandleKey) { .a = key }, v);
}

HandleKey key1(uint64_t a)
{
        return (HandleKey) { .a = a };
}

int broker_client_new(Client *conn, BrokerClient **ret)
{
        BrokerClient *bc;

        bc = calloc(1, sizeof(BrokerClient));
        if (!bc)
                return -ENOMEM;
        bc->conn = conn;
        bc->uid = client_uid(conn);
        bc->next_handle = 1;
        client_executable(client_pid(conn), bc->exe, sizeof(bc->exe));
        bc->sessions = handle_map_new();
        bc->objects = handle_map_new();
        bc->objects_rev = handle_map_new();
        bc->logins = handle_map_new();
        if (!bc->sessions || !bc->objects || !bc->objects_rev || !bc->logins) {
                broker_client_free(bc);
                return -ENOMEM;
        }
        pthread_mutex_init(&bc->lock, NULL);

        pthread_mutex_lock(&clients_lock);
        bc->next = clients;
        if (clients)
                clients->prev = bc;
        clients = bc;
        pthread_mutex_unlock(&clients_lock);

        *ret = bc;
        return 0;
}

void broker_client_disconnect(BrokerClient *bc)
{
        if (!bc)
                return;
        pthread_mutex_lock(&clients_lock);
        if (!bc->disconnected) {
                if (bc->prev)
                        bc->prev->next = bc->next;
                else
                        clients = bc->next;
                if (bc->next)
                        bc->next->prev = bc->prev;
                bc->prev = bc->next = NULL;
                bc->disconnected = true;
        }
        pthread_mutex_unlock(&clients_lock);

        pthread_mutex_lock(&bc->lock);
        bc->n_waiters = 0;
        pthread_mutex_unlock(&bc->lock);
}

/* ---- handles ---- */

static CK_ULONG issue_handle_locked(BrokerClient *bc)
{
        return bc->next_handle++;
}

static Session *session_get(BrokerClient *bc, CK_SESSION_HANDLE h)
{
        uint64_t v;
        Session *s = NULL;

        pthread_mutex_lock(&bc->lock);
        if (handle_map_get(bc->sessions, key1(h), &v)) {
                s = (Session *) (uintptr_t) v;
                s->refs++;
        }
        pthread_mutex_unlock(&bc->lock);
        return s;
}

static void session_put(BrokerClient *bc, Session *s)
{
        bool last;

        if (!s)
                return;
        pthread_mutex_lock(&bc->lock);
        last = --s->refs == 0;
        pthread_mutex_unlock(&bc->lock);
        if (last)
                free(s);
}

/*
 * Every session object made through the broker, with the client that made
 * it: (slot id, backend handle) -> BrokerClient. A backend shows session
 * objects to all sessions of its application, and kysod is that one
 * application, so a search finds other clients' session objects too; this
 * tells at once that they are not the searcher's, without asking the
 * backend. Entries go when the object or its session does. A leaf lock.
 */
static pthread_mutex_t session_objects_lock = PTHREAD_MUTEX_INITIALIZER;
static HandleMap *session_objects;

static void session_object_add(const Slot *slot, CK_OBJECT_HANDLE real, const BrokerClient *owner)
{
        pthread_mutex_lock(&session_objects_lock);
        if (!session_objects)
                session_objects = handle_map_new();
        if (session_objects)
                (void) handle_map_put(session_objects, (HandleKey) { .a = slot->id, .b = real }, (uintptr_t) owner);
        pthread_mutex_unlock(&session_objects_lock);
}

static void session_object_remove(const Slot *slot, CK_OBJECT_HANDLE real)
{
        pthread_mutex_lock(&session_objects_lock);
        if (session_objects)
                (void) handle_map_remove(session_objects, (HandleKey) { .a = slot->id, .b = real }, NULL);
        pthread_mutex_unlock(&session_objects_lock);
}

/* Whether the object is a session object another client made. */
static bool session_object_of_other(const Slot *slot, CK_OBJECT_HANDLE real, const BrokerClient *bc)
{
        uint64_t owner;
        bool r;

        pthread_mutex_lock(&session_objects_lock);
        r = session_objects && handle_map_get(session_objects, (HandleKey) { .a = slot->id, .b = real }, &owner) &&
            owner != (uintptr_t) bc;
        pthread_mutex_unlock(&session_objects_lock);
        return r;
}

static bool logged_in_locked(BrokerClient *bc, const Slot *slot)
{
        return handle_map_get(bc->logins, key1(slot->id), NULL);
}

static uint64_t login_generation(const Slot *slot)
{
        return __atomic_load_n(&slot->login_generation, __ATOMIC_ACQUIRE);
}

/* A private object needs the client's own login, and the token's login its handle came from. */
static bool object_usable_locked(BrokerClient *bc, const ObjectRef *o)
{
        return !o->is_private || (logged_in_locked(bc, o->slot) && o->login_generation == login_generation(o->slot));
}

/* The backend handle for a client's object handle; an unknown one, or one the client may not use now (a
 * private object while it is not logged in), becomes CK_INVALID_HANDLE, so the backend gives the error it
 * would give for any bad handle. */
static CK_OBJECT_HANDLE object_real(BrokerClient *bc, const Slot *slot, CK_OBJECT_HANDLE h)
{
        CK_OBJECT_HANDLE real = CK_INVALID_HANDLE;
        uint64_t v;

        if (h == CK_INVALID_HANDLE)
                return CK_INVALID_HANDLE;
        pthread_mutex_lock(&bc->lock);
        if (handle_map_get(bc->objects, key1(h), &v)) {
                const ObjectRef *o = (const ObjectRef *) (uintptr_t) v;

                if (o->slot == slot && object_usable_locked(bc, o))
                        real = o->real;
        }
        pthread_mutex_unlock(&bc->lock);
        return real;
}

/* The client's handle for a backend object it already knows, and whether it may see it now. */
static bool object_known_locked(BrokerClient *bc, Slot *slot, CK_OBJECT_HANDLE real, CK_OBJECT_HANDLE *ret,
                                bool *ret_visible)
{
        uint64_t h, v;

        if (!handle_map_get(bc->objects_rev, (HandleKey) { .a = slot->id, .b = real }, &h) ||
            !handle_map_get(bc->objects, key1(h), &v))
                return false;
        *ret = h;
        *ret_visible = object_usable_locked(bc, (const ObjectRef *) (uintptr_t) v);
        return true;
}

static void object_forget_locked(BrokerClient *bc, CK_OBJECT_HANDLE h)
{
        uint64_t v;

        if (handle_map_remove(bc->objects, key1(h), &v)) {
                ObjectRef *o = (ObjectRef *) (uintptr_t) v;

                handle_map_remove(bc->objects_rev, (HandleKey) { .a = o->slot->id, .b = o->real }, NULL);
                if (o->session != 0)
                        session_object_remove(o->slot, o->real);
                free(o);
        }
}

/* session: the client's session that created a session object; 0 for token objects. */
static int object_register_locked(BrokerClient *bc, Slot *slot, CK_OBJECT_HANDLE real, bool is_token,
                                  bool is_private, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE *ret)
{
        HandleKey rk = { .a = slot->id, .b = real };
        ObjectRef *o;
        uint64_t v;
        CK_OBJECT_HANDLE h;

        if (handle_map_get(bc->objects_rev, rk, &v)) {
                uint64_t ov;

                /* The same backend number for a new object (its old owner gone): start afresh. */
                if (handle_map_get(bc->objects, key1(v), &ov) &&
                    object_usable_locked(bc, (const ObjectRef *) (uintptr_t) ov) &&
                    ((const ObjectRef *) (uintptr_t) ov)->session == session) {
                        *ret = v;
                        return 0;
                }
                object_forget_locked(bc, v);
        }
        o = malloc(sizeof(ObjectRef));
        if (!o)
                return -ENOMEM;
        *o = (ObjectRef) {
                .slot = slot,
                .real = real,
                .is_token = is_token,
                .is_private = is_private,
                .session = is_token ? 0 : session,
                .login_generation = login_generation(slot),
        };
        if (o->session != 0)
                session_object_add(slot, real, bc);
        h = issue_handle_locked(bc);
        if (handle_map_put(bc->objects, key1(h), (uintptr_t) o) < 0) {
                free(o);
                return -ENOMEM;
        }
        if (handle_map_put(bc->objects_rev, rk, h) < 0) {
                handle_map_remove(bc->objects, key1(h), NULL);
                free(o);
                return -ENOMEM;
        }
        *ret = h;
        return 0;
}

/*
 * Gives the client a handle for an object the backend found for it, if the
 * client may see it: not another client's session object (every session
 * object a client made is already known to it, so an unknown one belongs
 * to someone else), not a private object unless the client has logged in.
 * Returns 1 with *ret set, 0 to hide the object, or a negative errno.
 */
static int object_admit(BrokerClient *bc, Session *s, CK_OBJECT_HANDLE real, CK_OBJECT_HANDLE *ret)
{
        bool visible, is_token, is_private;
        CK_RV rv;
        int r;

        pthread_mutex_lock(&bc->lock);
        r = object_known_locked(bc, s->slot, real, ret, &visible);
        pthread_mutex_unlock(&bc->lock);
        if (r)
                return visible;
        if (session_object_of_other(s->slot, real, bc))
                return 0;

        slot_call_begin(s->slot);
        rv = backend_object_visibility(s->slot, s->real, real, &is_token, &is_private);
        slot_call_end(s->slot);
        if (rv != CKR_OK || !is_token)
                return 0;

        pthread_mutex_lock(&bc->lock);
        if (is_private && !logged_in_locked(bc, s->slot))
                r = 0;
        else
                r = object_register_locked(bc, s->slot, real, is_token, is_private, 0, ret) < 0 ? -ENOMEM : 1;
        pthread_mutex_unlock(&bc->lock);
        return r;
}

/* Logs a refusal with who asked and what for. The audit store will take these records too. */
void broker_refuse(BrokerClient *bc, const Slot *slot, const char *what, const char *why)
{
        char serial[33] = "", detail[256];

        if (slot)
                custody_slot_serial(slot->id, serial);
        snprintf(detail, sizeof(detail), "%s: %s", what, why);
        (void) audit_log(&(AuditEntry) {
                .event = "refused",
                .uid = bc->uid,
                .pid = client_pid(bc->conn),
                .exe = bc->exe,
                .serial = serial,
                .result = "refused",
                .detail = detail,
        });
        log_notice("Refused %s on slot %lu to pid %d (uid %u): %s.", what, slot ? slot->id : 0UL,
                   (int) client_pid(bc->conn), (unsigned) client_uid(bc->conn), why);
}

static void object_forget(BrokerClient *bc, CK_OBJECT_HANDLE h)
{
        pthread_mutex_lock(&bc->lock);
        object_forget_locked(bc, h);
        pthread_mutex_unlock(&bc->lock);
}

/* The session objects a session made are gone with it; so are the client's handles for them. */
void forget_session_objects_locked(BrokerClient *bc, CK_SESSION_HANDLE session)
{
        size_t state = 0, n = 0;
        CK_OBJECT_HANDLE *dead;
        HandleKey k;
        uint64_t v;

        dead = calloc(handle_map_size(bc->objects) + 1, sizeof(CK_OBJECT_HANDLE));
        if (!dead)
                return; /* the handles stay; object_usable_locked() still guards private ones */
        while (handle_map_next(bc->objects, &state, &k, &v))
                if (((const ObjectRef *) (uintptr_t) v)->session == session)
                        dead[n++] = k.a;
        for (size_t i = 0; i < n; i++)
                object_forget_locked(bc, dead[i]);
        free(dead);
}

/*
 * Checks a mechanism before a backend sees it (see policy_mechanism_parameter()),
 * and gives a parameter that names a key the backend's handle for it.
 */
static CK_RV map_mechanism(BrokerClient *bc, const Slot *slot, CK_MECHANISM *m)
{
        PolicyDecision d;
        WireParam kind;

        if (!m)
                return CKR_OK;
        kind = wire_mechanism_param(m->mechanism);
        d = policy_mechanism_parameter(m->mechanism, m->pParameter != NULL, wire_param_struct_size(kind),
                                       m->ulParameterLen);
        if (d.rv != CKR_OK) {
                broker_refuse(bc, slot, "a mechanism parameter", d.reason);
                return d.rv;
        }
        if (kind == WIRE_PARAM_OBJECT_HANDLE && m->pParameter) {
                CK_OBJECT_HANDLE *h = m->pParameter;

                *h = object_real(bc, slot, *h);
        }
        return CKR_OK;
}

/* A 3.0 message parameter goes on only as a structure the codec rebuilt, never as raw bytes. */
static CK_RV check_message_parameter(BrokerClient *bc, const Slot *slot, const WireArg *arg)
{
        if (!arg->ptr || arg->value != WIRE_PARAM_BYTES)
                return CKR_OK;
        broker_refuse(bc, slot, "a message parameter", "raw bytes could be read as pointers");
        return CKR_MECHANISM_PARAM_INVALID;
}

/* ---- token classes ---- */

/* The token's class (NULL: none), cached per slot until the slot's next event. */
static const TokenClass *slot_class(Slot *slot)
{
        CK_TOKEN_INFO ti;
        uint64_t v;
        bool cached;
        int i;

        if (broker_config.n_classes == 0)
                return NULL;
        pthread_mutex_lock(&state_lock);
        cached = slot_classes && handle_map_get(slot_classes, (HandleKey) { .a = slot->id }, &v);
        pthread_mutex_unlock(&state_lock);
        if (cached)
                return v > 0 && v <= broker_config.n_classes ? &broker_config.classes[v - 1] : NULL;

        slot_call_begin(slot);
        i = backend_get_token_info(slot, &ti) == CKR_OK
                    ? policy_token_class(broker_config.classes, broker_config.n_classes, &ti)
                    : -2;
        slot_call_end(slot);
        if (i == -2)
                return NULL; /* no token to judge: the call itself will fail */

        pthread_mutex_lock(&state_lock);
        if (slot_classes)
                (void) handle_map_put(slot_classes, (HandleKey) { .a = slot->id }, (uint64_t) (i + 1));
        pthread_mutex_unlock(&state_lock);
        if (i >= 0)
                log_debug("Slot %lu: token of class \"%s\".", slot->id, broker_config.classes[i].name);
        return i >= 0 ? &broker_config.classes[i] : NULL;
}

void slot_class_forget(CK_SLOT_ID id)
{
        pthread_mutex_lock(&state_lock);
        if (slot_classes)
                (void) handle_map_remove(slot_classes, (HandleKey) { .a = id }, NULL);
        pthread_mutex_unlock(&state_lock);
}

CK_RV check_token_operation(BrokerClient *bc, Slot *slot, TokenOperation op, const char *what)
{
        const TokenClass *c = slot_class(slot);
        PolicyDecision d = policy_token_operation(c, op);

        if (d.rv != CKR_OK) {
                char buf[128];

                snprintf(buf, sizeof(buf), "%s (class \"%s\")", what, c ? c->name : "");
                broker_refuse(bc, slot, buf, d.reason);
        }
        return d.rv;
}

/* ---- wrong PINs the broker counted, per slot ---- */

unsigned pin_failures_get(const Slot *slot)
{
        uint64_t n;

        pthread_mutex_lock(&state_lock);
        n = state_get_locked(pin_failures, slot->id);
        pthread_mutex_unlock(&state_lock);
        return n > UINT_MAX ? UINT_MAX : (unsigned) n;
}

int pin_failures_set(const Slot *slot, unsigned n)
{
        int r;

        pthread_mutex_lock(&state_lock);
        r = state_set_locked(pin_failures, slot->id, n);
        pthread_mutex_unlock(&state_lock);
        return r;
}

/* ---- sessions ---- */

/* Counts a new session against the client's uid ([limits] sessions_per_uid, across all its clients). */
static CK_RV uid_session_reserve(BrokerClient *bc, const Slot *slot)
{
        PolicyDecision d;
        uint64_t n;

        pthread_mutex_lock(&state_lock);
        n = state_get_locked(uid_sessions, bc->uid);
        d = policy_session_open(n > UINT_MAX ? UINT_MAX : (unsigned) n, broker_config.sessions_per_uid);
        if (d.rv == CKR_OK && state_set_locked(uid_sessions, bc->uid, n + 1) < 0)
                d.rv = CKR_HOST_MEMORY;
        pthread_mutex_unlock(&state_lock);
        if (d.reason)
                broker_refuse(bc, slot, "C_OpenSession", d.reason);
        return d.rv;
}

void uid_session_release(uid_t uid)
{
        uint64_t n;

        pthread_mutex_lock(&state_lock);
        n = state_get_locked(uid_sessions, uid);
        if (n > 0)
                (void) state_set_locked(uid_sessions, uid, n - 1);
        pthread_mutex_unlock(&state_lock);
}

size_t client_sessions_on_slot_locked(BrokerClient *bc, const Slot *slot)
{
        size_t state = 0, n = 0;
        uint64_t v;

        while (handle_map_next(bc->sessions, &state, NULL, &v))
                if (((Session *) (uintptr_t) v)->slot == slot)
                        n++;
        return n;
}

/* Closes one of the client's sessions; its last session on a token ends its login there, as PKCS#11 says. */
static CK_RV session_close(BrokerClient *bc, Session *s)
{
        bool last;
        CK_RV rv;

        pthread_mutex_lock(&bc->lock);
        if (!handle_map_remove(bc->sessions, key1(s->handle), NULL)) {
                pthread_mutex_unlock(&bc->lock);
                return CKR_SESSION_HANDLE_INVALID; /* another thread closed it first */
        }
        last = client_sessions_on_slot_locked(bc, s->slot) == 0;
        forget_session_objects_locked(bc, s->handle);
        pthread_mutex_unlock(&bc->lock);
        uid_session_release(bc->uid);

        if (last && client_logged_in(bc, s->slot, NULL))
                (void) broker_logout(bc, s->slot, s->real);

        slot_call_begin(s->slot);
        rv = backend_close_session(s->slot, s->real);
        slot_call_end(s->slot);
        session_put(bc, s); /* the map's reference */
        return rv;
}

static CK_RV handle_open_session(BrokerClient *bc, WireArg *args)
{
        Slot *slot = slot_get(args[0].value);
        CK_SESSION_HANDLE real = CK_INVALID_HANDLE;
        CustodyVerdict verdict;
        Session *s;
        CK_RV rv;

        if (!slot)
                return CKR_SLOT_ID_INVALID;
        rv = custody_allows(bc, slot, "C_OpenSession", &verdict);
        if (rv != CKR_OK)
                return custody_hides_refused() ? CKR_TOKEN_NOT_PRESENT : rv;
        rv = uid_session_reserve(bc, slot);
        if (rv != CKR_OK)
                return rv;

        slot_call_begin(slot);
        rv = backend_open_session(slot, args[1].value, &real);
        slot_call_end(slot);
        if (rv != CKR_OK) {
                uid_session_release(bc->uid);
                return rv;
        }

        s = calloc(1, sizeof(Session));
        if (!s) {
                (void) backend_close_session(slot, real);
                uid_session_release(bc->uid);
                return CKR_HOST_MEMORY;
        }
        s->real = real;
        s->slot = slot;
        s->refs = 1;
        session_custody_remember(s, &verdict);

        pthread_mutex_lock(&bc->lock);
        s->handle = issue_handle_locked(bc);
        if (handle_map_put(bc->sessions, key1(s->handle), (uintptr_t) s) < 0)
                rv = CKR_HOST_MEMORY;
        pthread_mutex_unlock(&bc->lock);
        if (rv != CKR_OK) {
                (void) backend_close_session(slot, real);
                uid_session_release(bc->uid);
                free(s);
                return rv;
        }
        args[2].value = s->handle;
        return CKR_OK;
}

/* Closes every session the client has on the slot. */
CK_RV close_sessions_on_slot(BrokerClient *bc, Slot *slot)
{
        CK_SESSION_HANDLE *handles;
        size_t n = 0, state = 0;
        uint64_t v;

        pthread_mutex_lock(&bc->lock);
        handles = calloc(handle_map_size(bc->sessions) + 1, sizeof(CK_SESSION_HANDLE));
        if (handles)
                while (handle_map_next(bc->sessions, &state, NULL, &v))
                        if (((Session *) (uintptr_t) v)->slot == slot)
                                handles[n++] = ((Session *) (uintptr_t) v)->handle;
        pthread_mutex_unlock(&bc->lock);
        if (!handles)
                return CKR_HOST_MEMORY;

        for (size_t i = 0; i < n; i++) {
                Session *s = session_get(bc, handles[i]);

                if (s) {
                        (void) session_close(bc, s);
                        session_put(bc, s);
                }
        }
        free(handles);
        return CKR_OK;
}

static CK_RV handle_close_all_sessions(BrokerClient *bc, WireArg *args)
{
        Slot *slot = slot_get(args[0].value);

        if (!slot)
                return CKR_SLOT_ID_INVALID;
        /* Only this client's sessions: another application's are none of its business. */
        return close_sessions_on_slot(bc, slot);
}

void broker_client_free(BrokerClient *bc)
{
        size_t state = 0;
        uint64_t v;

        if (!bc)
                return;
        broker_client_disconnect(bc);

        for (;;) {
                Session *s = NULL;

                pthread_mutex_lock(&bc->lock);
                state = 0;
                if (handle_map_next(bc->sessions, &state, NULL, &v)) {
                        s = (Session *) (uintptr_t) v;
                        s->refs++;
                }
                pthread_mutex_unlock(&bc->lock);
                if (!s)
                        break;
                (void) session_close(bc, s);
                session_put(bc, s);
        }

        state = 0;
        while (handle_map_next(bc->objects, &state, NULL, &v)) {
                ObjectRef *o = (ObjectRef *) (uintptr_t) v;

                if (o->session != 0)
                        session_object_remove(o->slot, o->real);
                free(o);
        }
        handle_map_free(bc->sessions);
        handle_map_free(bc->objects);
        handle_map_free(bc->objects_rev);
        handle_map_free(bc->logins);
        pthread_mutex_destroy(&bc->lock);
        free(bc);
}

/* ---- calls ---- */

/* Session info as this client may see it: a client that has not logged in has a public session. */
static void fix_session_info(BrokerClient *bc, Slot *slot, CK_SESSION_INFO *si)
{
        si->slotID = slot->id;
        if (client_logged_in(bc, slot, NULL))
                return;
        switch (si->state) {
        case CKS_RO_USER_FUNCTIONS:
                si->state = CKS_RO_PUBLIC_SESSION;
                break;
        case CKS_RW_USER_FUNCTIONS:
        case CKS_RW_SO_FUNCTIONS:
                si->state = CKS_RW_PUBLIC_SESSION;
                break;
        default:
                break;
        }
}

/* CKA_PRIVATE (and, on some tokens, CKA_TOKEN) can change: keep what decides visibility current. */
static void after_set_attributes(BrokerClient *bc, Session *s, CK_OBJECT_HANDLE real, const CK_ATTRIBUTE *t,
                                 CK_ULONG n)
{
        bool is_token, is_private, relevant = false;
        uint64_t h, v;

        for (CK_ULONG i = 0; i < n; i++)
                relevant = relevant || t[i].type == CKA_PRIVATE || t[i].type == CKA_TOKEN;
        if (!relevant)
                return;
        slot_call_begin(s->slot);
        if (backend_object_visibility(s->slot, s->real, real, &is_token, &is_private) != CKR_OK)
                is_private = true; /* when in doubt, keep it from clients that have not logged in */
        slot_call_end(s->slot);

        pthread_mutex_lock(&bc->lock);
        if (handle_map_get(bc->objects_rev, (HandleKey) { .a = s->slot->id, .b = real }, &h) &&
            handle_map_get(bc->objects, key1(h), &v)) {
                ObjectRef *o = (ObjectRef *) (uintptr_t) v;

                o->is_token = is_token;
                o->is_private = is_private;
        }
        pthread_mutex_unlock(&bc->lock);
}

/*
 * Objects a call created get handles for this client. A client that has not
 * logged in may not make private objects just because another client's login
 * lets the token accept them: such objects are destroyed again and the call
 * is refused as the token would refuse it.
 */
static CK_RV register_created(BrokerClient *bc, Session *session, WireCall call, const char *sig, WireArg *args)
{
        Slot *slot = session->slot;
        bool is_token[2] = {}, is_private[2] = {}, refuse = false;
        size_t idx[2], n = 0;
        CK_RV rv = CKR_OK;

        for (size_t i = 0; sig[i] && n < ELEMENTSOF(idx); i++)
                if (sig[i] == 'n')
                        idx[n++] = i;

        slot_call_begin(slot);
        for (size_t k = 0; k < n; k++) {
                rv = backend_object_visibility(slot, session->real, args[idx[k]].value, &is_token[k], &is_private[k]);
                if (rv != CKR_OK)
                        break;
                refuse = refuse || (is_private[k] && !client_logged_in(bc, slot, NULL));
        }
        if (rv != CKR_OK || refuse)
                for (size_t k = 0; k < n; k++)
                        (void) backend_destroy_object(slot, session->real, args[idx[k]].value);
        slot_call_end(slot);
        if (rv != CKR_OK)
                return rv;
        if (refuse) {
                broker_refuse(bc, slot, wire_call_info(call)->name,
                              "it would create a private object without the caller having logged in");
                return CKR_USER_NOT_LOGGED_IN;
        }

        pthread_mutex_lock(&bc->lock);
        for (size_t k = 0; k < n && rv == CKR_OK; k++)
                if (object_register_locked(bc, slot, args[idx[k]].value, is_token[k], is_private[k], session->handle,
                                           &args[idx[k]].value) < 0)
                        rv = CKR_HOST_MEMORY;
        pthread_mutex_unlock(&bc->lock);
        return rv;
}

/*
 * Every call whose arguments only need mapping: the client's session, slot
 * and object handles become the backend's, the call runs, and new objects
 * get handles for this client.
 */
static CK_RV handle_generic(BrokerClient *bc, WireCall call, WireArg *args)
{
        const char *sig = wire_call_info(call)->signature;
        Session *session = NULL;
        Slot *slot = NULL;
        KeyCall kc;
        CK_RV rv = CKR_OK;

        for (size_t i = 0; sig[i]; i++)
                switch (sig[i]) {
                case 'S':
                        session = session_get(bc, args[i].value);
                        if (!session)
                                return CKR_SESSION_HANDLE_INVALID;
                        slot = session->slot;
                        args[i].value = session->real;
                        break;
                case 'L':
                        slot = slot_get(args[i].value);
                        if (!slot)
                                return CKR_SLOT_ID_INVALID;
                        args[i].value = slot->real;
                        break;
                case 'O':
                        args[i].value = object_real(bc, slot, args[i].value);
                        break;
                case 'm':
                        rv = map_mechanism(bc, slot, args[i].ptr);
                        break;
                case 'p':
                        rv = check_message_parameter(bc, slot, &args[i]);
                        break;
                default:
                        break;
                }
        if (!slot) {
                session_put(bc, session);
                return CKR_GENERAL_ERROR; /* a table entry without a session or slot: a bug */
        }
        server_note_token(slot->id, backend_name(slot->backend));
        if (rv == CKR_OK && session)
                rv = session_custody(bc, session, call);
        if (rv != CKR_OK) {
                session_put(bc, session);
                return rv;
        }

        /* A hidden token is absent for this client: no token information to read. */
        if (call == KYSO_CALL_C_GetTokenInfo && token_hidden(bc, slot)) {
                session_put(bc, session);
                return CKR_TOKEN_NOT_PRESENT;
        }

        switch (call) {
        case KYSO_CALL_C_InitToken:
                /* Wiping a token is using it: only its holder may. */
                rv = custody_allows(bc, slot, "C_InitToken", NULL);
                if (rv == CKR_OK)
                        rv = check_token_operation(bc, slot, TOKEN_OP_INIT_TOKEN, "C_InitToken");
                break;
        case KYSO_CALL_C_InitPIN:
                rv = check_token_operation(bc, slot, TOKEN_OP_INIT_PIN, "C_InitPIN");
                break;
        case KYSO_CALL_C_SetPIN:
                rv = pin_quality_allows(bc, slot, call, &args[2], &args[1]);
                break;
        case KYSO_CALL_C_GenerateKey:
        case KYSO_CALL_C_GenerateKeyPair:
                rv = check_token_operation(bc, slot, TOKEN_OP_KEY_GENERATION, wire_call_info(call)->name);
                break;
        default:
                break;
        }
        if (rv != CKR_OK) {
                session_put(bc, session);
                return rv;
        }

        if (call == KYSO_CALL_C_InitPIN) {
                CK_USER_TYPE user;

                /* The token would take another client's SO login for this one's. */
                if (!client_logged_in(bc, slot, &user) || user != CKU_SO) {
                        broker_refuse(bc, slot, "C_InitPIN", "the caller has not logged in as security officer");
                        session_put(bc, session);
                        return CKR_USER_NOT_LOGGED_IN;
                }
                rv = pin_quality_allows(bc, slot, call, &args[1], NULL);
                if (rv != CKR_OK) {
                        session_put(bc, session);
                        return rv;
                }
        }

        rv = before_key_call(bc, session, call, args, &kc);
        if (rv != CKR_OK) {
                (void) after_key_call(bc, session, call, sig, args, &kc, rv);
                session_put(bc, session);
                return rv;
        }

        slot_call_begin(slot);
        rv = backend_invoke(slot->backend, call, args);
        slot_call_end(slot);

        rv = after_key_call(bc, session, call, sig, args, &kc, rv);
        if (session)
                rv = audit_result(bc, session, call, args, rv);
        if (rv == CKR_OK && strchr(sig, 'n'))
                rv = register_created(bc, session, call, sig, args);

        /* PIN changes are recorded whatever their result; a changed user PIN starts its age anew. */
        if (call == KYSO_CALL_C_SetPIN || call == KYSO_CALL_C_InitPIN) {
                CK_USER_TYPE user = CKU_USER;
                bool so = call == KYSO_CALL_C_SetPIN && client_logged_in(bc, slot, &user) && user == CKU_SO;

                (void) audit_operation(bc, slot, call == KYSO_CALL_C_SetPIN ? "pin-change" : "pin-init", session->real,
                                       CK_INVALID_HANDLE, CK_UNAVAILABLE_INFORMATION, rv,
                                       so ? "the security officer's PIN" : "the user PIN");
                if (rv == CKR_OK && !so)
                        custody_pin_changed(slot->id, bc->uid, wire_call_info(call)->name);
        }

        if (rv == CKR_OK)
                switch (call) {
                case KYSO_CALL_C_GetSessionInfo:
                        fix_session_info(bc, slot, args[1].ptr);
                        break;
                case KYSO_CALL_C_GetSlotInfo:
                        if (token_hidden(bc, slot))
                                ((CK_SLOT_INFO *) args[1].ptr)->flags &= ~CKF_TOKEN_PRESENT;
                        break;
                case KYSO_CALL_C_GetTokenInfo: {
                        CK_TOKEN_INFO *ti = args[1].ptr;

                        custody_pin_flags(slot->id, ti->flags);
                        ti->flags = policy_pin_flags(ti->flags, pin_failures_get(slot));
                        if (custody_pin_check(slot->id, NULL).to_be_changed)
                                ti->flags |= CKF_USER_PIN_TO_BE_CHANGED;
                        break;
                }
                case KYSO_CALL_C_SignInit:
                        __atomic_store_n(&session->sign_key, args[2].value, __ATOMIC_RELAXED);
                        __atomic_store_n(&session->sign_mech, ((CK_MECHANISM *) args[1].ptr)->mechanism,
                                         __ATOMIC_RELAXED);
                        break;
                case KYSO_CALL_C_DecryptInit:
                        __atomic_store_n(&session->decrypt_key, args[2].value, __ATOMIC_RELAXED);
                        __atomic_store_n(&session->decrypt_mech, ((CK_MECHANISM *) args[1].ptr)->mechanism,
                                         __ATOMIC_RELAXED);
                        break;
                case KYSO_CALL_C_SetPIN:
                        after_set_pin(bc, slot, args);
                        break;
                case KYSO_CALL_C_SetAttributeValue:
                        after_set_attributes(bc, session, args[1].value, args[2].ptr, args[2].len);
                        break;
                case KYSO_CALL_C_InitToken:
                        broker_rescan();
                        custody_note_slot(slot); /* a new label, no slot event */
                        break;
                default:
                        break;
                }

        session_put(bc, session);
        return rv;
}

static CK_RV handle_find_objects(BrokerClient *bc, WireArg *args, Arena *arena)
{
        _cleanup_(freep) CK_OBJECT_HANDLE *found = NULL;
        CK_OBJECT_HANDLE *out;
        size_t n = 0, kept = 0;
        Session *s;
        CK_RV rv;

        s = session_get(bc, args[0].value);
        if (!s)
                return CKR_SESSION_HANDLE_INVALID;
        server_note_token(s->slot->id, backend_name(s->slot->backend));
        rv = session_custody(bc, s, KYSO_CALL_C_FindObjectsInit);
        if (rv != CKR_OK)
                goto out;

        slot_call_begin(s->slot);
        rv = backend_find_all(s->slot, s->real, args[1].ptr, args[1].len, &found, &n);
        slot_call_end(s->slot);
        if (rv != CKR_OK)
                goto out;

        out = arena_alloc_array(arena, n ? n : 1, sizeof(CK_OBJECT_HANDLE));
        if (!out) {
                rv = CKR_HOST_MEMORY;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                int r = object_admit(bc, s, found[i], &out[kept]);

                if (r < 0) {
                        rv = CKR_HOST_MEMORY;
                        goto out;
                }
                kept += r;
        }
        n = kept;
        args[2].ptr = out;
        args[2].len = n;
out:
        session_put(bc, s);
        return rv;
}

static CK_RV handle_session_call(BrokerClient *bc, WireCall call, WireArg *args)
{
        Session *s = session_get(bc, args[0].value);
        CK_RV rv;

        if (!s)
                return CKR_SESSION_HANDLE_INVALID;
        server_note_token(s->slot->id, backend_name(s->slot->backend));

        switch (call) {
        case KYSO_CALL_C_CloseSession:
                rv = session_close(bc, s);
                break;
        case KYSO_CALL_C_Login:
        case KYSO_CALL_C_LoginUser:
                args[0].value = s->real;
                rv = session_custody(bc, s, call);
                if (rv == CKR_OK && args[1].value == CKU_USER)
                        rv = pin_age_allows(bc, s->slot, call);
                if (rv == CKR_OK)
                        rv = broker_login(bc, s, call, args);
                (void) audit_operation(bc, s->slot, "login", s->real, CK_INVALID_HANDLE, CK_UNAVAILABLE_INFORMATION, rv,
                                       args[1].value == CKU_SO                  ? "security officer"
                                       : args[1].value == CKU_CONTEXT_SPECIFIC ? "context specific"
                                                                                : "user");
                break;
        case KYSO_CALL_C_Logout:
                rv = broker_logout(bc, s->slot, s->real);
                (void) audit_operation(bc, s->slot, "logout", s->real, CK_INVALID_HANDLE, CK_UNAVAILABLE_INFORMATION, rv,
                                       NULL);
                break;
        default:
                rv = CKR_FUNCTION_NOT_SUPPORTED;
                break;
        }
        session_put(bc, s);
        return rv;
}

/* ---- the entry point ---- */

int broker_handle(BrokerClient *bc, const uint8_t *payload, size_t len, Buffer *reply)
{
        _cleanup_(arena_freep) Arena *arena = NULL;
        WireArg args[KYSO_WIRE_ARGS_MAX] = {};
        uint32_t serial = 0;
        WireCall call = _KYSO_CALL_INVALID;
        CK_RV rv;
        int r;

        arena = arena_new(REQUEST_ARENA_MAX);
        if (!arena)
                return -ENOMEM;

        r = wire_decode_request(payload, len, arena, &serial, &call, args);
        if (r == -ENOMEM)
                /* Too big to serve, but well-formed: an error, not a reason to disconnect. */
                return wire_encode_error_reply(reply, serial, call, CKR_HOST_MEMORY);
        if (r < 0)
                return r;

        if (!bc->hello_done && call != KYSO_CALL_HELLO)
                return -EPROTO;

        switch (call) {
        case KYSO_CALL_HELLO:
                if (bc->hello_done || args[0].value != KYSO_WIRE_MAGIC)
                        return -EPROTO;
                if (args[1].value != KYSO_WIRE_VERSION) {
                        log_warning("Client pid %d speaks protocol version %lu, not %u.", (int) client_pid(bc->conn),
                                    args[1].value, KYSO_WIRE_VERSION);
                        rv = CKR_FUNCTION_NOT_SUPPORTED;
                        break;
                }
                pthread_mutex_lock(&bc->lock);
                bc->hello_done = true;
                bc->next_handle = args[2].value > 0 ? args[2].value : 1;
                pthread_mutex_unlock(&bc->lock);
                args[3].value = KYSO_WIRE_VERSION;
                args[4].value = KYSO_SERVER_FLAG_BLOCKING_SLOT_EVENTS;
                rv = CKR_OK;
                break;
        case KYSO_CALL_DAEMON_STATUS:
                rv = broker_status(bc, args);
                break;
        case KYSO_CALL_C_GetSlotList:
                rv = handle_get_slot_list(bc, args);
                break;
        case KYSO_CALL_C_WaitForSlotEvent:
                if (handle_wait_for_slot_event(bc, serial, args, &rv) > 0)
                        return 0; /* answered by broker_slot_events() */
                break;
        case KYSO_CALL_C_OpenSession:
                rv = handle_open_session(bc, args);
                break;
        case KYSO_CALL_C_CloseAllSessions:
                rv = handle_close_all_sessions(bc, args);
                break;
        case KYSO_CALL_C_CloseSession:
        case KYSO_CALL_C_Login:
        case KYSO_CALL_C_LoginUser:
        case KYSO_CALL_C_Logout:
                rv = handle_session_call(bc, call, args);
                break;
        case KYSO_CALL_C_FindObjectsInit:
                rv = handle_find_objects(bc, args, arena);
                break;
        case KYSO_CALL_C_DestroyObject: {
                CK_OBJECT_HANDLE h = args[1].value;

                rv = handle_generic(bc, call, args);
                if (rv == CKR_OK)
                        object_forget(bc, h);
                break;
        }
        default:
                rv = handle_generic(bc, call, args);
                break;
        }

        r = wire_encode_reply(reply, serial, call, rv, args);
        if (r < 0) {
                /* The backend's answer cannot be sent as it is (it claims more output than it was given
                 * room for): the backend misbehaved, not the client, who gets an error and stays. */
                log_warning_errno(r, "%s: the backend's reply cannot be encoded, answering CKR_DEVICE_ERROR: %m",
                                  wire_call_info(call)->name);
                r = wire_encode_error_reply(reply, serial, call, CKR_DEVICE_ERROR);
        }
        return r;
}
