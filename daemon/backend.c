/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dlfcn.h>
#include <errno.h>
#include <p11-kit/p11-kit.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "config.h"
#include "log.h"
#include "macro.h"

static Backend **backends;
static size_t n_backends;

/* The registry of slots; grows, never shrinks. */
static pthread_rwlock_t registry_lock = PTHREAD_RWLOCK_INITIALIZER;
static Slot **slots;
static size_t n_slots;
static SerializeMode serialize_mode;

static const char *basename_of(const char *path)
{
        const char *s = strrchr(path, '/');

        return s ? s + 1 : path;
}

/* PKCS#11 strings are blank-padded fixed arrays: their length without the padding, for "%.*s". */
static int padded_len(const unsigned char *p, size_t n)
{
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\0'))
                n--;
        return (int) n;
}

static void backend_free(Backend *b)
{
        if (!b)
                return;
        if (b->dl)
                dlclose(b->dl);
        free(b->path);
        free(b);
}

/* See Backend.objects_generation. */
static void objects_changed(Backend *b)
{
        atomic_fetch_add(&b->objects_generation, 1);
}

/* Forgets a remembered search (see backend_find_all()). */
static void found_clear(Found *e)
{
        if (e->key)
                explicit_bzero(e->key, e->key_len); /* a template may hold a secret's value */
        free(e->key);
        free(e->handles);
        *e = (Found) { 0 };
}

/* Prefer the 3.0 interface, so the 3.0 functions reach modules that have them. */
static CK_RV backend_get_functions(Backend *b)
{
        CK_C_GetInterface get_interface;
        CK_C_GetFunctionList get_function_list;
        CK_INTERFACE *interface = NULL;
        CK_VERSION v30 = { 3, 0 };

        get_interface = (CK_C_GetInterface) dlsym(b->dl, "C_GetInterface");
        if (get_interface && get_interface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &interface, 0) == CKR_OK &&
            interface && interface->pFunctionList) {
                b->f3 = interface->pFunctionList;
                b->f = interface->pFunctionList; /* the 3.0 list starts with the 2.40 one */
                return CKR_OK;
        }

        get_function_list = (CK_C_GetFunctionList) dlsym(b->dl, "C_GetFunctionList");
        if (!get_function_list)
                return CKR_FUNCTION_NOT_SUPPORTED;
        return get_function_list(&b->f);
}

static int backend_load_one(const char *path, Backend **ret)
{
        CK_C_INITIALIZE_ARGS init_args = { .flags = CKF_OS_LOCKING_OK };
        Backend *b;
        CK_RV rv;

        b = calloc(1, sizeof(Backend));
        if (!b)
                return log_oom();
        b->names_lock = (pthread_mutex_t) PTHREAD_MUTEX_INITIALIZER;
        b->path = strdup(path);
        if (!b->path) {
                backend_free(b);
                return log_oom();
        }

        /* RTLD_LOCAL keeps two modules' symbols apart; RTLD_NOW fails here, not in the middle of a call. */
        b->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!b->dl) {
                log_error("Failed to load PKCS#11 module %s: %s", path, dlerror());
                backend_free(b);
                return -ENOENT;
        }

        rv = backend_get_functions(b);
        if (rv != CKR_OK || !b->f) {
                log_error("PKCS#11 module %s has no usable function list: %s", path, ckr_to_string(rv));
                backend_free(b);
                return -EINVAL;
        }

        rv = b->f->C_Initialize(&init_args);
        if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
                log_error("C_Initialize of PKCS#11 module %s failed: %s", path, ckr_to_string(rv));
                backend_free(b);
                return -EIO;
        }
        b->initialized = rv == CKR_OK;

        rv = b->f->C_GetInfo(&b->info);
        if (rv != CKR_OK)
                log_warning("C_GetInfo of PKCS#11 module %s failed: %s", path, ckr_to_string(rv));

        *ret = b;
        return 0;
}

int backends_load(char *const *paths, size_t n_paths, SerializeMode mode)
{
        serialize_mode = mode;

        for (size_t i = 0; i < n_paths; i++) {
                Backend *b = NULL, **n;

                if (backend_load_one(paths[i], &b) < 0)
                        continue; /* one broken module must not take the others down */

                n = realloc(backends, (n_backends + 1) * sizeof(Backend *));
                if (!n) {
                        backend_free(b);
                        return log_oom();
                }
                backends = n;
                b->index = n_backends;
                backends[n_backends++] = b;
                log_info("Loaded PKCS#11 module %s (%.*s, version %u.%u, PKCS#11 %u.%u%s).", b->path,
                         padded_len(b->info.manufacturerID, sizeof(b->info.manufacturerID)), b->info.manufacturerID,
                         b->info.libraryVersion.major, b->info.libraryVersion.minor,
                         b->info.cryptokiVersion.major, b->info.cryptokiVersion.minor,
                         b->f3 ? ", 3.0 interface" : "");
        }

        if (n_paths > 0 && n_backends == 0)
                return log_error_errno(ENOENT, "None of the configured PKCS#11 modules could be loaded.");
        return 0;
}

static bool same_file(const char *a, const char *b)
{
        struct stat sa, sb;

        return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int backends_find_registered(char ***ret_paths, size_t *ret_n)
{
        CK_FUNCTION_LIST **modules;
        char **paths = NULL;
        size_t n = 0;

        modules = p11_kit_modules_load(NULL, P11_KIT_MODULE_UNMANAGED);
        if (!modules) {
                log_warning("Could not read the p11-kit module registry: %s", p11_kit_message());
                *ret_paths = NULL;
                *ret_n = 0;
                return 0;
        }

        for (size_t i = 0; modules[i]; i++) {
                _cleanup_(freep) char *filename = p11_kit_module_get_filename(modules[i]);
                _cleanup_(freep) char *name = p11_kit_module_get_name(modules[i]);
                _cleanup_(freep) char *trust = p11_kit_config_option(modules[i], "trust-policy");
                char **np;

                if (!filename)
                        continue;
                /* Brokering ourselves would loop; the trust store module holds no signing tokens. */
                if (streq(basename_of(filename), KYSO_P11_MODULE_NAME) ||
                    same_file(filename, P11_MODULE_PATH "/" KYSO_P11_MODULE_NAME)) {
                        log_debug("Skipping p11-kit module %s: that is kyso itself.", filename);
                        continue;
                }
                if (trust && (streq(trust, "yes") || streq(trust, "true"))) {
                        log_debug("Skipping p11-kit module %s (%s): a trust policy module.", filename,
                                  name ? name : "?");
                        continue;
                }
                np = realloc(paths, (n + 2) * sizeof(char *));
                if (!np)
                        goto oom;
                paths = np;
                paths[n] = strdup(filename);
                if (!paths[n])
                        goto oom;
                paths[++n] = NULL;
        }
        p11_kit_modules_release(modules);
        *ret_paths = paths;
        *ret_n = n;
        return 0;

oom:
        p11_kit_modules_release(modules);
        for (size_t i = 0; i < n; i++)
                free(paths[i]);
        free(paths);
        return log_oom();
}

static void (*slot_event_callback)(void);
static bool watch_stop;

/* Gives up on a backend whose wait keeps failing after this many tries in a row (it has polling). */
#define WAIT_FAILURES_MAX 5

static void *waiter_main(void *userdata)
{
        Backend *b = userdata;
        unsigned failures = 0;
        CK_SLOT_ID real;
        CK_RV rv;

        for (;;) {
                rv = backend_wait_for_slot_event(b, &real);
                if (__atomic_load_n(&watch_stop, __ATOMIC_ACQUIRE) || rv == CKR_CRYPTOKI_NOT_INITIALIZED)
                        break;
                if (rv == CKR_FUNCTION_NOT_SUPPORTED) {
                        log_debug("%s cannot wait for slot events: kysod polls its slots.", backend_name(b));
                        break;
                }
                if (rv != CKR_OK) {
                        if (++failures >= WAIT_FAILURES_MAX) {
                                log_notice("%s keeps failing to wait for slot events (%s): kysod polls its slots.",
                                           backend_name(b), ckr_to_string(rv));
                                break;
                        }
                        sleep(1);
                        continue;
                }
                failures = 0;
                b->blocking_events = true;
                if (slot_event_callback)
                        slot_event_callback();
        }
        return NULL;
}

void backends_watch(void (*on_event)(void))
{
        slot_event_callback = on_event;
        for (size_t i = 0; i < n_backends; i++)
                if (backends[i]->initialized &&
                    pthread_create(&backends[i]->waiter, NULL, waiter_main, backends[i]) == 0)
                        backends[i]->waiter_started = true;
}

void backends_unload(void)
{
        pthread_rwlock_wrlock(&registry_lock);
        for (size_t i = 0; i < n_slots; i++) {
                pthread_mutex_destroy(&slots[i]->call_lock);
                pthread_mutex_destroy(&slots[i]->login_lock);
                for (size_t j = 0; j < FOUND_CACHED; j++)
                        found_clear(&slots[i]->found[j]);
                pthread_mutex_destroy(&slots[i]->found_lock);
                free(slots[i]);
        }
        free(slots);
        slots = NULL;
        n_slots = 0;
        pthread_rwlock_unlock(&registry_lock);

        /* C_Finalize releases a thread waiting in C_WaitForSlotEvent; the module stays loaded until it left. */
        __atomic_store_n(&watch_stop, true, __ATOMIC_RELEASE);
        for (size_t i = 0; i < n_backends; i++)
                if (backends[i]->initialized)
                        (void) backends[i]->f->C_Finalize(NULL);
        for (size_t i = 0; i < n_backends; i++) {
                if (backends[i]->waiter_started)
                        pthread_join(backends[i]->waiter, NULL);
                backend_free(backends[i]);
        }
        free(backends);
        backends = NULL;
        n_backends = 0;
}

size_t backends_count(void)
{
        return n_backends;
}

Backend *backend_get(unsigned index)
{
        return index < n_backends ? backends[index] : NULL;
}

static Slot *find_slot_locked(Backend *b, CK_SLOT_ID real)
{
        for (size_t i = 0; i < n_slots; i++)
                if (slots[i]->backend == b && slots[i]->real == real)
                        return slots[i];
        return NULL;
}

static bool want_serialize(const CK_SLOT_INFO *info)
{
        switch (serialize_mode) {
        case SERIALIZE_ALWAYS:
                return true;
        case SERIALIZE_NEVER:
                return false;
        default:
                return (info->flags & CKF_HW_SLOT) && (info->flags & CKF_REMOVABLE_DEVICE);
        }
}

static Slot *slot_new_locked(Backend *b, CK_SLOT_ID real, const CK_SLOT_INFO *info)
{
        Slot *s, **n;

        s = calloc(1, sizeof(Slot));
        if (!s)
                return NULL;
        n = realloc(slots, (n_slots + 1) * sizeof(Slot *));
        if (!n) {
                free(s);
                return NULL;
        }
        slots = n;
        /* Ids start at 1 and follow discovery order, so they are the same after a restart. */
        s->id = n_slots + 1;
        s->backend = b;
        s->real = real;
        s->info = *info;
        s->serialize = want_serialize(info);
        pthread_mutex_init(&s->call_lock, NULL);
        pthread_mutex_init(&s->login_lock, NULL);
        pthread_mutex_init(&s->found_lock, NULL);
        slots[n_slots++] = s;
        return s;
}

static int add_event(CK_SLOT_ID **events, size_t *n, CK_SLOT_ID id)
{
        CK_SLOT_ID *e = realloc(*events, (*n + 1) * sizeof(CK_SLOT_ID));

        if (!e)
                return -ENOMEM;
        e[(*n)++] = id;
        *events = e;
        return 0;
}

typedef struct SlotSeen {
        CK_SLOT_ID real;
        CK_SLOT_INFO info;
} SlotSeen;

/* Asks a backend for its slots, outside the registry lock: a card reader may take a while to answer. */
static int probe_backend(Backend *b, SlotSeen **ret_seen, size_t *ret_n)
{
        _cleanup_(freep) CK_SLOT_ID *list = NULL;
        SlotSeen *seen;
        CK_ULONG count = 0;
        size_t n = 0;
        CK_RV rv;

        rv = b->f->C_GetSlotList(CK_FALSE, NULL, &count);
        if (rv == CKR_OK && count > 0) {
                if (count > WIRE_LIST_COUNT_MAX)
                        return -E2BIG;
                list = calloc(count, sizeof(CK_SLOT_ID));
                if (!list)
                        return -ENOMEM;
                rv = b->f->C_GetSlotList(CK_FALSE, list, &count);
        }
        if (rv != CKR_OK) {
                log_warning("C_GetSlotList of %s failed: %s", b->path, ckr_to_string(rv));
                return -EIO;
        }

        seen = calloc(count ? count : 1, sizeof(SlotSeen));
        if (!seen)
                return -ENOMEM;
        for (CK_ULONG i = 0; i < count; i++) {
                CK_SLOT_INFO info = {};

                if (b->f->C_GetSlotInfo(list[i], &info) != CKR_OK)
                        continue;
                seen[n++] = (SlotSeen) { .real = list[i], .info = info };
        }
        *ret_seen = seen;
        *ret_n = n;
        return 0;
}

static int apply_scan_locked(Backend *b, const SlotSeen *seen, size_t n_seen, CK_SLOT_ID **events,
                             size_t *n_events)
{
        for (size_t i = 0; i < n_slots; i++)
                if (slots[i]->backend == b)
                        slots[i]->listed = false;

        for (size_t i = 0; i < n_seen; i++) {
                bool present = seen[i].info.flags & CKF_TOKEN_PRESENT;
                Slot *s = find_slot_locked(b, seen[i].real);

                if (!s) {
                        s = slot_new_locked(b, seen[i].real, &seen[i].info);
                        if (!s)
                                return -ENOMEM;
                        s->listed = true;
                        s->token_present = present;
                        log_info("Slot %lu: %.*s (%s, token %s).", s->id,
                                 padded_len(seen[i].info.slotDescription, sizeof(seen[i].info.slotDescription)),
                                 seen[i].info.slotDescription,
                                 basename_of(b->path), present ? "present" : "absent");
                        if (add_event(events, n_events, s->id) < 0)
                                return -ENOMEM;
                        continue;
                }
                s->listed = true;
                s->info = seen[i].info;
                if (s->token_present != present) {
                        s->token_present = present;
                        objects_changed(b);
                        log_info("Slot %lu: token %s.", s->id, present ? "inserted" : "removed");
                        if (add_event(events, n_events, s->id) < 0)
                                return -ENOMEM;
                }
        }

        /* A slot the backend stopped listing (a reader unplugged) has lost its token. */
        for (size_t i = 0; i < n_slots; i++)
                if (slots[i]->backend == b && !slots[i]->listed && slots[i]->token_present) {
                        slots[i]->token_present = false;
                        objects_changed(b);
                        slots[i]->info.flags &= ~CKF_TOKEN_PRESENT;
                        log_info("Slot %lu: gone.", slots[i]->id);
                        if (add_event(events, n_events, slots[i]->id) < 0)
                                return -ENOMEM;
                }
        return 0;
}

int backends_scan(CK_SLOT_ID **ret_events)
{
        static pthread_mutex_t scan_lock = PTHREAD_MUTEX_INITIALIZER;
        CK_SLOT_ID *events = NULL;
        size_t n_events = 0;
        int r = 0;

        /* One scan at a time, so two scans cannot report the same change twice. */
        pthread_mutex_lock(&scan_lock);
        for (size_t i = 0; i < n_backends && r >= 0; i++) {
                _cleanup_(freep) SlotSeen *seen = NULL;
                size_t n_seen = 0;

                if (probe_backend(backends[i], &seen, &n_seen) < 0)
                        continue; /* keep what we knew about this backend */

                pthread_rwlock_wrlock(&registry_lock);
                r = apply_scan_locked(backends[i], seen, n_seen, &events, &n_events);
                pthread_rwlock_unlock(&registry_lock);
        }
        pthread_mutex_unlock(&scan_lock);

        if (r < 0) {
                free(events);
                return r;
        }
        if (ret_events)
                *ret_events = events;
        else
                free(events);
        return (int) n_events;
}

Slot *slot_get(CK_SLOT_ID id)
{
        Slot *s = NULL;

        pthread_rwlock_rdlock(&registry_lock);
        if (id >= 1 && id <= n_slots)
                s = slots[id - 1];
        pthread_rwlock_unlock(&registry_lock);
        return s;
}

int slots_snapshot(Slot ***ret_slots, size_t *ret_n)
{
        Slot **copy = NULL;
        size_t n;

        pthread_rwlock_rdlock(&registry_lock);
        n = n_slots;
        if (n > 0) {
                copy = malloc(n * sizeof(Slot *));
                if (!copy) {
                        pthread_rwlock_unlock(&registry_lock);
                        return -ENOMEM;
                }
                memcpy(copy, slots, n * sizeof(Slot *));
        }
        pthread_rwlock_unlock(&registry_lock);
        *ret_slots = copy;
        *ret_n = n;
        return 0;
}

void slot_call_begin(Slot *s)
{
        if (s && s->serialize)
                pthread_mutex_lock(&s->call_lock);
}

void slot_call_end(Slot *s)
{
        if (s && s->serialize)
                pthread_mutex_unlock(&s->call_lock);
}

#define V(i) (args[i].value)
#define P(i) (args[i].ptr)
#define N(i) (args[i].len)
#define LP(i) (args[i].len_ptr)
#define F3(fn) (b->f3 ? b->f3->fn : NULL)

/* Calls a 3.0-only function, or answers as a 2.x module would. */
#define CALL3(fn, ...) (F3(fn) ? F3(fn)(__VA_ARGS__) : CKR_FUNCTION_NOT_SUPPORTED)

/* The calls after which objects may be new, gone, renamed or shown differently (see Backend). */
static bool call_changes_objects(WireCall call)
{
        switch (call) {
        case KYSO_CALL_C_InitToken:
        case KYSO_CALL_C_CloseSession:
        case KYSO_CALL_C_CloseAllSessions:
        case KYSO_CALL_C_Login:
        case KYSO_CALL_C_LoginUser:
        case KYSO_CALL_C_Logout:
        case KYSO_CALL_C_DestroyObject:
        case KYSO_CALL_C_SetAttributeValue:
        case KYSO_CALL_C_CreateObject:
        case KYSO_CALL_C_CopyObject:
        case KYSO_CALL_C_GenerateKey:
        case KYSO_CALL_C_GenerateKeyPair:
        case KYSO_CALL_C_UnwrapKey:
        case KYSO_CALL_C_DeriveKey:
                return true;
        default:
                return false;
        }
}

static CK_RV invoke(Backend *b, WireCall call, WireArg *args);

CK_RV backend_invoke(Backend *b, WireCall call, WireArg *args)
{
        CK_RV rv = invoke(b, call, args);

        /* After the call: a name read while it ran was read under the old generation, and is dropped. */
        if (call_changes_objects(call))
                objects_changed(b);
        return rv;
}

static CK_RV invoke(Backend *b, WireCall call, WireArg *args)
{
        CK_FUNCTION_LIST *f = b->f;

        switch (call) {
        case KYSO_CALL_C_GetSlotList:
                return f->C_GetSlotList((CK_BBOOL) V(0), P(1), LP(1));
        case KYSO_CALL_C_GetSlotInfo:
                return f->C_GetSlotInfo(V(0), P(1));
        case KYSO_CALL_C_GetTokenInfo:
                return f->C_GetTokenInfo(V(0), P(1));
        case KYSO_CALL_C_GetMechanismList:
                return f->C_GetMechanismList(V(0), P(1), LP(1));
        case KYSO_CALL_C_GetMechanismInfo:
                return f->C_GetMechanismInfo(V(0), V(1), P(2));
        case KYSO_CALL_C_InitToken:
                return f->C_InitToken(V(0), P(1), N(1), P(2));
        case KYSO_CALL_C_InitPIN:
                return f->C_InitPIN(V(0), P(1), N(1));
        case KYSO_CALL_C_SetPIN:
                return f->C_SetPIN(V(0), P(1), N(1), P(2), N(2));
        case KYSO_CALL_C_GetSessionInfo:
                return f->C_GetSessionInfo(V(0), P(1));
        case KYSO_CALL_C_GetOperationState:
                return f->C_GetOperationState(V(0), P(1), LP(1));
        case KYSO_CALL_C_SetOperationState:
                return f->C_SetOperationState(V(0), P(1), N(1), V(2), V(3));
        case KYSO_CALL_C_Login:
                return f->C_Login(V(0), V(1), P(2), N(2));
        case KYSO_CALL_C_Logout:
                return f->C_Logout(V(0));
        case KYSO_CALL_C_CreateObject:
                return f->C_CreateObject(V(0), P(1), N(1), P(2));
        case KYSO_CALL_C_CopyObject:
                return f->C_CopyObject(V(0), V(1), P(2), N(2), P(3));
        case KYSO_CALL_C_DestroyObject:
                return f->C_DestroyObject(V(0), V(1));
        case KYSO_CALL_C_GetObjectSize:
                return f->C_GetObjectSize(V(0), V(1), P(2));
        case KYSO_CALL_C_GetAttributeValue:
                return f->C_GetAttributeValue(V(0), V(1), P(2), N(2));
        case KYSO_CALL_C_SetAttributeValue:
                return f->C_SetAttributeValue(V(0), V(1), P(2), N(2));
        case KYSO_CALL_C_EncryptInit:
                return f->C_EncryptInit(V(0), P(1), V(2));
        case KYSO_CALL_C_Encrypt:
                return f->C_Encrypt(V(0), P(1), N(1), P(2), LP(2));
        case KYSO_CALL_C_EncryptUpdate:
                return f->C_EncryptUpdate(V(0), P(1), N(1), P(2), LP(2));
        case KYSO_CALL_C_EncryptFinal:
                return f->C_EncryptFinal(V(0), P(1), LP(1));
        case KYSO_CALL_C_DecryptInit:
                return f->C_DecryptInit(V(0), P(1), V(2));
        case KYSO_CALL_C_Decrypt:
                return f->C_Decrypt(V(0), P(1), N(1), P(2), LP(2));
        case KYSO_CALL_C_DecryptUpdate:
                return f->C_DecryptUpdate(V(0), P(1), N(1), P(2), LP(2));
        case KYSO_CALL_C_DecryptFinal:
                return f->C_DecryptFinal(V(0), P(1), LP(1));
        case KYSO_CALL_C_DigestInit:
                return f->C_DigestInit(V(0), P(1));
        case KYSO_CALL_C_Digest:
                return f->C_Digest(V(0), P(1), N(1), P(2), LP(2));
        case KYSO_CALL_C_DigestUpdate:
                return f->C_DigestUpdate(V(0), P(1), N(1));
        case KYSO_CALL_C_DigestKey:
                return f->C_DigestKey(V(0), V(1));
        case KYSO_CALL_C_DigestFinal:
                return f->C_DigestFinal(V(0), P(1), LP(1));
        case KYSO_CALL_C_SignInit:
                return f->C_SignInit(V(0), P(1), V(2));
        case KYSO_CALL_C_Sign:
                return f->C_Sign(V(0), P(1), N(1), P(2), LP(2));
        case KYSO_CALL_C_SignUpdate:
                return f->C_SignUpdate(V(0), P(1), N(1));
        case KYSO_CALL_C_SignFinal:
                return f->C_SignFinal(V(0), P(1), LP(1));
        case KYSO_CALL_C_SignRecoverInit:
                return f->C_SignRecoverInit(V(0), P(1), V(2));
        case KYSO_CALL_C_SignRecover:
                return f->C_SignRecover(V(0), P(1), N(1), P(2), LP(2));
        case KYSO_CALL_C_VerifyInit:
                return f->C_VerifyInit(V(0), P(1), V(2));
        case KYSO_CALL_C_Verify:
                return f->C_Verify(V(0), P(1), N(1), P(2), N(2));
        case KYSO_CALL_C_VerifyUpdate:
                return f->C_VerifyUpdate(V(0), P(1), N(1));
        case KYSO_CALL_C_VerifyFinal:
                return f->C_VerifyFinal(V(0), P(1), N(1));
        case KYSO_CALL_C_VerifyRecoverInit:
                return f->C_VerifyRecoverInit(V(0), P(1), V(2));
        case KYSO_CALL_C_VerifyRecover:
                return f->C_VerifyRecover(V(0), P(1), N(1), P(2), LP(2));
        case KYSO_CALL_C_DigestEncryptUpdate:
                return f->C_DigestEncryptUpdate(V(0), P(1), N(1), P(2), LP(2));
        case KYSO_CALL_C_DecryptDigestUpdate:
                return f->C_DecryptDigestUpdate(V(0), P(1), N(1), P(2), LP(2));
        case KYSO_CALL_C_SignEncryptUpdate:
                return f->C_SignEncryptUpdate(V(0), P(1), N(1), P(2), LP(2));
        case KYSO_CALL_C_DecryptVerifyUpdate:
                return f->C_DecryptVerifyUpdate(V(0), P(1), N(1), P(2), LP(2));
        case KYSO_CALL_C_GenerateKey:
                return f->C_GenerateKey(V(0), P(1), P(2), N(2), P(3));
        case KYSO_CALL_C_GenerateKeyPair:
                return f->C_GenerateKeyPair(V(0), P(1), P(2), N(2), P(3), N(3), P(4), P(5));
        case KYSO_CALL_C_WrapKey:
                return f->C_WrapKey(V(0), P(1), V(2), V(3), P(4), LP(4));
        case KYSO_CALL_C_UnwrapKey:
                return f->C_UnwrapKey(V(0), P(1), V(2), P(3), N(3), P(4), N(4), P(5));
        case KYSO_CALL_C_DeriveKey:
                return f->C_DeriveKey(V(0), P(1), V(2), P(3), N(3), P(4));
        case KYSO_CALL_C_SeedRandom:
                return f->C_SeedRandom(V(0), P(1), N(1));
        case KYSO_CALL_C_GenerateRandom:
                return f->C_GenerateRandom(V(0), P(1), N(1));
        case KYSO_CALL_C_LoginUser:
                return CALL3(C_LoginUser, V(0), V(1), P(2), N(2), P(3), N(3));
        case KYSO_CALL_C_SessionCancel:
                return CALL3(C_SessionCancel, V(0), V(1));
        case KYSO_CALL_C_MessageEncryptInit:
                return CALL3(C_MessageEncryptInit, V(0), P(1), V(2));
        case KYSO_CALL_C_EncryptMessage:
                return CALL3(C_EncryptMessage, V(0), P(1), N(1), P(2), N(2), P(3), N(3), P(4), LP(4));
        case KYSO_CALL_C_EncryptMessageBegin:
                return CALL3(C_EncryptMessageBegin, V(0), P(1), N(1), P(2), N(2));
        case KYSO_CALL_C_EncryptMessageNext:
                return CALL3(C_EncryptMessageNext, V(0), P(1), N(1), P(2), N(2), P(3), LP(3), V(4));
        case KYSO_CALL_C_MessageEncryptFinal:
                return CALL3(C_MessageEncryptFinal, V(0));
        case KYSO_CALL_C_MessageDecryptInit:
                return CALL3(C_MessageDecryptInit, V(0), P(1), V(2));
        case KYSO_CALL_C_DecryptMessage:
                return CALL3(C_DecryptMessage, V(0), P(1), N(1), P(2), N(2), P(3), N(3), P(4), LP(4));
        case KYSO_CALL_C_DecryptMessageBegin:
                return CALL3(C_DecryptMessageBegin, V(0), P(1), N(1), P(2), N(2));
        case KYSO_CALL_C_DecryptMessageNext:
                return CALL3(C_DecryptMessageNext, V(0), P(1), N(1), P(2), N(2), P(3), LP(3), V(4));
        case KYSO_CALL_C_MessageDecryptFinal:
                return CALL3(C_MessageDecryptFinal, V(0));
        case KYSO_CALL_C_MessageSignInit:
                return CALL3(C_MessageSignInit, V(0), P(1), V(2));
        case KYSO_CALL_C_SignMessage:
                return CALL3(C_SignMessage, V(0), P(1), N(1), P(2), N(2), P(3), LP(3));
        case KYSO_CALL_C_SignMessageBegin:
                return CALL3(C_SignMessageBegin, V(0), P(1), N(1));
        case KYSO_CALL_C_SignMessageNext:
                return CALL3(C_SignMessageNext, V(0), P(1), N(1), P(2), N(2), P(3), LP(3));
        case KYSO_CALL_C_MessageSignFinal:
                return CALL3(C_MessageSignFinal, V(0));
        case KYSO_CALL_C_MessageVerifyInit:
                return CALL3(C_MessageVerifyInit, V(0), P(1), V(2));
        case KYSO_CALL_C_VerifyMessage:
                return CALL3(C_VerifyMessage, V(0), P(1), N(1), P(2), N(2), P(3), N(3));
        case KYSO_CALL_C_VerifyMessageBegin:
                return CALL3(C_VerifyMessageBegin, V(0), P(1), N(1));
        case KYSO_CALL_C_VerifyMessageNext:
                return CALL3(C_VerifyMessageNext, V(0), P(1), N(1), P(2), N(2), P(3), N(3));
        case KYSO_CALL_C_MessageVerifyFinal:
                return CALL3(C_MessageVerifyFinal, V(0));
        default:
                /* Session and slot management calls go through the typed helpers below. */
                return CKR_FUNCTION_NOT_SUPPORTED;
        }
}

CK_RV backend_get_slot_info(Slot *s, CK_SLOT_INFO *ret)
{
        memset(ret, 0, sizeof(*ret));
        return s->backend->f->C_GetSlotInfo(s->real, ret);
}

CK_RV backend_get_token_info(Slot *s, CK_TOKEN_INFO *ret)
{
        memset(ret, 0, sizeof(*ret));
        return s->backend->f->C_GetTokenInfo(s->real, ret);
}

CK_RV backend_open_session(Slot *s, CK_FLAGS flags, CK_SESSION_HANDLE *ret)
{
        return s->backend->f->C_OpenSession(s->real, flags, NULL, NULL, ret);
}

CK_RV backend_close_session(Slot *s, CK_SESSION_HANDLE h)
{
        CK_RV rv = s->backend->f->C_CloseSession(h);

        objects_changed(s->backend);
        return rv;
}

CK_RV backend_login(Slot *s, CK_SESSION_HANDLE h, CK_USER_TYPE user, const uint8_t *pin, size_t pin_len)
{
        CK_RV rv = s->backend->f->C_Login(h, user, (CK_UTF8CHAR_PTR) pin, pin_len);

        objects_changed(s->backend);
        return rv;
}

CK_RV backend_logout(Slot *s, CK_SESSION_HANDLE h)
{
        CK_RV rv = s->backend->f->C_Logout(h);

        objects_changed(s->backend);
        return rv;
}

CK_RV backend_session_info(Slot *s, CK_SESSION_HANDLE h, CK_SESSION_INFO *ret)
{
        memset(ret, 0, sizeof(*ret));
        return s->backend->f->C_GetSessionInfo(h, ret);
}

CK_RV backend_get_bool_attribute(Slot *s, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
                                 CK_BBOOL *ret)
{
        CK_BBOOL v = CK_FALSE;
        CK_ATTRIBUTE a = { .type = type, .pValue = &v, .ulValueLen = sizeof(v) };
        CK_RV rv;

        rv = s->backend->f->C_GetAttributeValue(h, o, &a, 1);
        if (rv == CKR_OK && a.ulValueLen != sizeof(v))
                rv = CKR_ATTRIBUTE_VALUE_INVALID;
        *ret = v;
        return rv;
}

CK_RV backend_key_names(Slot *s, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, char *id_hex, size_t id_size, char *label,
                        size_t label_size)
{
        uint8_t id[64], text[128];
        CK_ATTRIBUTE a[] = {
                { .type = CKA_ID, .pValue = id, .ulValueLen = sizeof(id) },
                { .type = CKA_LABEL, .pValue = text, .ulValueLen = sizeof(text) },
        };
        CK_RV rv;
        size_t n;

        id_hex[0] = '\0';
        label[0] = '\0';
        rv = s->backend->f->C_GetAttributeValue(h, o, a, ELEMENTSOF(a));
        /* One too long, absent or sensitive still leaves the other (CK_UNAVAILABLE_INFORMATION marks it). */
        if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL && rv != CKR_ATTRIBUTE_TYPE_INVALID &&
            rv != CKR_ATTRIBUTE_SENSITIVE)
                return rv;
        if (a[0].ulValueLen != CK_UNAVAILABLE_INFORMATION && a[0].ulValueLen <= sizeof(id))
                for (size_t i = 0; i < a[0].ulValueLen && 2 * i + 2 < id_size; i++)
                        snprintf(id_hex + 2 * i, 3, "%02x", id[i]);
        if (a[1].ulValueLen != CK_UNAVAILABLE_INFORMATION && a[1].ulValueLen <= sizeof(text)) {
                n = a[1].ulValueLen < label_size ? a[1].ulValueLen : label_size - 1;
                memcpy(label, text, n);
                label[n] = '\0';
                /* A label is UTF-8 text for the log: cut control characters. */
                for (size_t i = 0; i < n; i++)
                        if ((unsigned char) label[i] < 0x20)
                                label[i] = '?';
        }
        return CKR_OK;
}

void backend_key_names_cached(Slot *s, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, char id_hex[static KEY_NAME_SIZE],
                              char label[static KEY_NAME_SIZE])
{
        Backend *b = s->backend;
        uint64_t gen = atomic_load(&b->objects_generation);
        KeyNames *e;

        pthread_mutex_lock(&b->names_lock);
        for (size_t i = 0; i < KEY_NAMES_CACHED; i++) {
                e = &b->names[i];
                if (e->handle == o && e->generation == gen && o != CK_INVALID_HANDLE) {
                        memcpy(id_hex, e->id_hex, sizeof(e->id_hex));
                        memcpy(label, e->label, sizeof(e->label));
                        pthread_mutex_unlock(&b->names_lock);
                        return;
                }
        }
        pthread_mutex_unlock(&b->names_lock);

        slot_call_begin(s);
        if (backend_key_names(s, h, o, id_hex, KEY_NAME_SIZE, label, KEY_NAME_SIZE) != CKR_OK) {
                slot_call_end(s);
                return; /* not remembered: the next record asks again */
        }
        slot_call_end(s);

        pthread_mutex_lock(&b->names_lock);
        e = &b->names[b->names_next++ % KEY_NAMES_CACHED];
        e->handle = o;
        e->generation = gen; /* read before the call: a change during it makes the entry stale at once */
        memcpy(e->id_hex, id_hex, sizeof(e->id_hex));
        memcpy(e->label, label, sizeof(e->label));
        pthread_mutex_unlock(&b->names_lock);
}

#define CERTIFICATES_MAX 64U
#define CERTIFICATE_SIZE_MAX (64U * 1024U)

void backend_certificates_free(BackendCertificate *c, size_t n)
{
        for (size_t i = 0; c && i < n; i++)
                free(c[i].der);
        free(c);
}

CK_RV backend_certificates(Slot *s, BackendCertificate **ret, size_t *ret_n)
{
        CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
        CK_ATTRIBUTE tmpl = { .type = CKA_CLASS, .pValue = &cls, .ulValueLen = sizeof(cls) };
        _cleanup_(freep) CK_OBJECT_HANDLE *found = NULL;
        BackendCertificate *certs;
        CK_SESSION_HANDLE h;
        size_t n = 0, kept = 0;
        CK_RV rv;

        rv = backend_open_session(s, CKF_SERIAL_SESSION, &h);
        if (rv != CKR_OK)
                return rv;
        rv = backend_find_all(s, h, &tmpl, 1, &found, &n);
        if (rv != CKR_OK) {
                (void) backend_close_session(s, h);
                return rv;
        }
        if (n > CERTIFICATES_MAX)
                n = CERTIFICATES_MAX;
        certs = calloc(n ? n : 1, sizeof(BackendCertificate));
        if (!certs) {
                (void) backend_close_session(s, h);
                return CKR_HOST_MEMORY;
        }
        for (size_t i = 0; i < n; i++) {
                CK_ATTRIBUTE a = { .type = CKA_VALUE };
                BackendCertificate *c = &certs[kept];

                /* A certificate whose value cannot be read, or is too big, is left out, not an error. */
                if (s->backend->f->C_GetAttributeValue(h, found[i], &a, 1) != CKR_OK || a.ulValueLen == 0 ||
                    a.ulValueLen > CERTIFICATE_SIZE_MAX)
                        continue;
                c->der = malloc(a.ulValueLen);
                if (!c->der)
                        continue;
                a.pValue = c->der;
                if (s->backend->f->C_GetAttributeValue(h, found[i], &a, 1) != CKR_OK ||
                    a.ulValueLen > CERTIFICATE_SIZE_MAX) {
                        free(c->der);
                        c->der = NULL;
                        continue;
                }
                c->der_len = a.ulValueLen;
                (void) backend_key_names(s, h, found[i], c->id_hex, sizeof(c->id_hex), c->label, sizeof(c->label));
                kept++;
        }
        (void) backend_close_session(s, h);
        *ret = certs;
        *ret_n = kept;
        return CKR_OK;
}

CK_RV backend_object_visibility(Slot *s, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, bool *ret_token, bool *ret_private)
{
        CK_BBOOL token = CK_TRUE, priv = CK_FALSE;
        CK_ATTRIBUTE a[] = {
                { .type = CKA_TOKEN, .pValue = &token, .ulValueLen = sizeof(token) },
                { .type = CKA_PRIVATE, .pValue = &priv, .ulValueLen = sizeof(priv) },
        };
        CK_RV rv;

        rv = s->backend->f->C_GetAttributeValue(h, o, a, ELEMENTSOF(a));
        /* An object without these attributes is a public token object, as the specification's defaults say;
         * anything else wrong means the object cannot be judged, and so is not shown. */
        if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID)
                return rv;
        *ret_token = a[0].ulValueLen == sizeof(token) ? token != CK_FALSE : true;
        *ret_private = a[1].ulValueLen == sizeof(priv) ? priv != CK_FALSE : false;
        return CKR_OK;
}

CK_RV backend_destroy_object(Slot *s, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
        CK_RV rv = s->backend->f->C_DestroyObject(h, o);

        objects_changed(s->backend);
        return rv;
}

/* Templates longer than this as found_key() writes them, and answers with more objects, are not remembered. */
#define FOUND_KEY_MAX 1024U
#define FOUND_CACHE_USEC (1000U * 1000U)
#define FOUND_HANDLES_MAX 1024U

/* The template as bytes to compare: each attribute's type, length and value. 0 when it is not to be remembered. */
static size_t found_key(const CK_ATTRIBUTE *tmpl, CK_ULONG count, uint8_t key[static FOUND_KEY_MAX])
{
        size_t len = 0;

        for (CK_ULONG i = 0; i < count; i++) {
                CK_ULONG head[2] = { tmpl[i].type, tmpl[i].ulValueLen };

                if ((tmpl[i].ulValueLen > 0 && !tmpl[i].pValue) || tmpl[i].ulValueLen > FOUND_KEY_MAX ||
                    len + sizeof(head) + tmpl[i].ulValueLen > FOUND_KEY_MAX)
                        return 0;
                memcpy(key + len, head, sizeof(head));
                len += sizeof(head);
                if (tmpl[i].ulValueLen > 0)
                        memcpy(key + len, tmpl[i].pValue, tmpl[i].ulValueLen);
                len += tmpl[i].ulValueLen;
        }
        if (len == 0) {
                /* The empty template (every object) is a key too, shorter than any other. */
                memset(key, 0, sizeof(CK_ULONG));
                len = sizeof(CK_ULONG);
        }
        return len;
}

static bool found_lookup(Slot *s, const uint8_t *key, size_t key_len, CK_OBJECT_HANDLE **ret_handles, size_t *ret_n)
{
        uint64_t gen = atomic_load(&s->backend->objects_generation), now = monotonic_usec();
        bool hit = false;

        pthread_mutex_lock(&s->found_lock);
        for (size_t i = 0; i < FOUND_CACHED && !hit; i++) {
                Found *e = &s->found[i];

                if (!e->key || e->generation != gen || now - e->stamp_usec >= FOUND_CACHE_USEC ||
                    e->key_len != key_len || memcmp(e->key, key, key_len) != 0)
                        continue;
                *ret_handles = malloc((e->n ? e->n : 1) * sizeof(CK_OBJECT_HANDLE));
                if (!*ret_handles)
                        break;
                memcpy(*ret_handles, e->handles, e->n * sizeof(CK_OBJECT_HANDLE));
                *ret_n = e->n;
                hit = true;
        }
        pthread_mutex_unlock(&s->found_lock);
        return hit;
}

static void found_store(Slot *s, const uint8_t *key, size_t key_len, uint64_t gen, uint64_t stamp,
                        const CK_OBJECT_HANDLE *handles, size_t n)
{
        _cleanup_(freep) uint8_t *k = NULL;
        _cleanup_(freep) CK_OBJECT_HANDLE *h = NULL;
        Found *e;

        if (n > FOUND_HANDLES_MAX)
                return;
        k = malloc(key_len);
        h = malloc((n ? n : 1) * sizeof(CK_OBJECT_HANDLE));
        if (!k || !h)
                return; /* only not remembered */
        memcpy(k, key, key_len);
        memcpy(h, handles, n * sizeof(CK_OBJECT_HANDLE));

        pthread_mutex_lock(&s->found_lock);
        e = &s->found[s->found_next++ % FOUND_CACHED];
        found_clear(e);
        *e = (Found) { .generation = gen, .stamp_usec = stamp, .key = TAKE_PTR(k), .key_len = key_len,
                       .handles = TAKE_PTR(h), .n = n };
        pthread_mutex_unlock(&s->found_lock);
}

static CK_RV find_all(Slot *s, CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, CK_ULONG count,
                      CK_OBJECT_HANDLE **ret_handles, size_t *ret_n);

CK_RV backend_find_all(Slot *s, CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, CK_ULONG count,
                       CK_OBJECT_HANDLE **ret_handles, size_t *ret_n)
{
        uint8_t key[FOUND_KEY_MAX];
        size_t key_len = found_key(tmpl, count, key);
        uint64_t gen, stamp;
        CK_RV rv;

        if (key_len > 0 && found_lookup(s, key, key_len, ret_handles, ret_n))
                return CKR_OK;

        /* Read before the search: a change while it runs makes its answer stale at once. */
        gen = atomic_load(&s->backend->objects_generation);
        stamp = monotonic_usec();
        rv = find_all(s, h, tmpl, count, ret_handles, ret_n);
        if (rv == CKR_OK && key_len > 0)
                found_store(s, key, key_len, gen, stamp, *ret_handles, *ret_n);
        explicit_bzero(key, key_len);
        return rv;
}

static CK_RV find_all(Slot *s, CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, CK_ULONG count,
                      CK_OBJECT_HANDLE **ret_handles, size_t *ret_n)
{
        CK_FUNCTION_LIST *f = s->backend->f;
        CK_OBJECT_HANDLE *handles = NULL;
        size_t n = 0, alloc = 0;
        CK_RV rv, rv2;

        rv = f->C_FindObjectsInit(h, tmpl, count);
        if (rv != CKR_OK)
                return rv;

        for (;;) {
                CK_ULONG got = 0;

                if (n + 256 > alloc) {
                        CK_OBJECT_HANDLE *nh;

                        if (alloc >= WIRE_LIST_COUNT_MAX) {
                                /* More objects than one answer may carry: return what fits. */
                                break;
                        }
                        alloc = alloc ? alloc * 2 : 256;
                        nh = realloc(handles, alloc * sizeof(CK_OBJECT_HANDLE));
                        if (!nh) {
                                rv = CKR_HOST_MEMORY;
                                break;
                        }
                        handles = nh;
                }
                rv = f->C_FindObjects(h, handles + n, 256, &got);
                if (rv != CKR_OK || got == 0)
                        break;
                if (got > 256) {
                        rv = CKR_GENERAL_ERROR; /* a backend that writes more than it was given room for */
                        break;
                }
                n += got;
        }

        rv2 = f->C_FindObjectsFinal(h);
        if (rv == CKR_OK)
                rv = rv2;
        if (rv != CKR_OK) {
                free(handles);
                return rv;
        }
        *ret_handles = handles;
        *ret_n = n;
        return CKR_OK;
}

CK_RV backend_wait_for_slot_event(Backend *b, CK_SLOT_ID *ret_real)
{
        return b->f->C_WaitForSlotEvent(0, ret_real, NULL);
}

const char *backend_name(const Backend *b)
{
        return basename_of(b->path);
}

const char *ckr_to_string(CK_RV rv)
{
        switch (rv) {
#define R(x)                                                                                               \
        case x:                                                                                            \
                return #x;
                R(CKR_OK)
                R(CKR_CANCEL)
                R(CKR_HOST_MEMORY)
                R(CKR_SLOT_ID_INVALID)
                R(CKR_GENERAL_ERROR)
                R(CKR_FUNCTION_FAILED)
                R(CKR_ARGUMENTS_BAD)
                R(CKR_NO_EVENT)
                R(CKR_CANT_LOCK)
                R(CKR_ATTRIBUTE_READ_ONLY)
                R(CKR_ATTRIBUTE_SENSITIVE)
                R(CKR_ATTRIBUTE_TYPE_INVALID)
                R(CKR_ATTRIBUTE_VALUE_INVALID)
                R(CKR_DATA_INVALID)
                R(CKR_DATA_LEN_RANGE)
                R(CKR_DEVICE_ERROR)
                R(CKR_DEVICE_MEMORY)
                R(CKR_DEVICE_REMOVED)
                R(CKR_ENCRYPTED_DATA_INVALID)
                R(CKR_ENCRYPTED_DATA_LEN_RANGE)
                R(CKR_FUNCTION_CANCELED)
                R(CKR_FUNCTION_NOT_PARALLEL)
                R(CKR_FUNCTION_NOT_SUPPORTED)
                R(CKR_KEY_HANDLE_INVALID)
                R(CKR_KEY_SIZE_RANGE)
                R(CKR_KEY_TYPE_INCONSISTENT)
                R(CKR_KEY_FUNCTION_NOT_PERMITTED)
                R(CKR_KEY_NOT_WRAPPABLE)
                R(CKR_KEY_UNEXTRACTABLE)
                R(CKR_MECHANISM_INVALID)
                R(CKR_MECHANISM_PARAM_INVALID)
                R(CKR_OBJECT_HANDLE_INVALID)
                R(CKR_OPERATION_ACTIVE)
                R(CKR_OPERATION_NOT_INITIALIZED)
                R(CKR_PIN_INCORRECT)
                R(CKR_PIN_INVALID)
                R(CKR_PIN_LEN_RANGE)
                R(CKR_PIN_EXPIRED)
                R(CKR_PIN_LOCKED)
                R(CKR_SESSION_CLOSED)
                R(CKR_SESSION_COUNT)
                R(CKR_SESSION_HANDLE_INVALID)
                R(CKR_SESSION_PARALLEL_NOT_SUPPORTED)
                R(CKR_SESSION_READ_ONLY)
                R(CKR_SESSION_EXISTS)
                R(CKR_SESSION_READ_ONLY_EXISTS)
                R(CKR_SESSION_READ_WRITE_SO_EXISTS)
                R(CKR_SIGNATURE_INVALID)
                R(CKR_SIGNATURE_LEN_RANGE)
                R(CKR_TEMPLATE_INCOMPLETE)
                R(CKR_TEMPLATE_INCONSISTENT)
                R(CKR_TOKEN_NOT_PRESENT)
                R(CKR_TOKEN_NOT_RECOGNIZED)
                R(CKR_TOKEN_WRITE_PROTECTED)
                R(CKR_USER_ALREADY_LOGGED_IN)
                R(CKR_USER_NOT_LOGGED_IN)
                R(CKR_USER_PIN_NOT_INITIALIZED)
                R(CKR_USER_TYPE_INVALID)
                R(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
                R(CKR_USER_TOO_MANY_TYPES)
                R(CKR_BUFFER_TOO_SMALL)
                R(CKR_RANDOM_NO_RNG)
                R(CKR_CRYPTOKI_NOT_INITIALIZED)
                R(CKR_CRYPTOKI_ALREADY_INITIALIZED)
                R(CKR_FUNCTION_REJECTED)
#undef R
        default:
                return "CKR_(unknown)";
        }
}
