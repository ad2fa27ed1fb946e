/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A PKCS#11 module for tests that wraps a real one (SoftHSM2) and changes
 * what a real module cannot be made to do on demand: it can make signing
 * slow, pretend its slots are removable hardware, hang in a chosen function,
 * return lengths that do not fit the caller's buffer, fail at the Nth call,
 * lose its token like a pulled card, and it records what happens inside it.
 *
 * It is configured by a file next to it: <path of this .so>.conf, so that
 * copies of it under different names are different backends with their own
 * settings. Keys (one per line, key=value):
 *
 *   target=PATH          the real module to wrap (load a private copy of it, so its state is
 *                        separate from the same module loaded directly)
 *   softhsm2_conf=PATH   SOFTHSM2_CONF for the target's C_Initialize
 *   hardware=1           report slots as removable hardware (CKF_HW_SLOT | CKF_REMOVABLE_DEVICE)
 *   stats=PATH           state written there (whole, renamed into place) whenever it changes:
 *                        in_sign, max_concurrent_sign (C_Sign/C_SignFinal running inside now, most
 *                        at once), in_hang, hangs (calls hanging now, calls that hung so far),
 *                        fails (injected failures so far), bad_lengths (lengths falsified so far),
 *                        open_sessions (sessions open in the target through this module),
 *                        removed_sessions (handles of sessions lost with the token not yet closed),
 *                        present (0/1), calls (every call so far), control_generation (how many
 *                        times the control file was read: it changed that often)
 *   control=PATH         a control file, default <path of this .so>.control. It may hold any of
 *                        the keys below; it is read again at every call when it has changed
 *                        (write it elsewhere and rename it into place), and its settings replace
 *                        those of the .conf file. Every change resets the fail_at counter.
 *
 * Behaviour (in the .conf file or the control file):
 *
 *   sign_delay_ms=N      sleep this long inside C_Sign and C_SignFinal
 *   hang=FN[+FN...]      calls of these functions ("any": all) hang before reaching the target
 *                        until the control file no longer names them, or for hang_ms
 *   hang_ms=N            0 (default): hang until released by the control file
 *   fail_fn=FN[+FN...]   which calls count toward fail_at ("any", the default: every call but
 *                        C_Initialize/C_Finalize/C_GetFunctionList)
 *   fail_at=N            the Nth counted call (from start-up or the last control file change)
 *                        returns fail_rv instead; C_Sign, C_SignFinal, C_Encrypt and C_Decrypt
 *                        still end their operation in the target, as an error must
 *   fail_count=K         ... and so do the K-1 calls after it (default 1)
 *   fail_rv=RV           the return value (C syntax: 0x30 or 48), default CKR_DEVICE_ERROR
 *   badlen=FN[+FN...]    C_Sign, C_SignFinal, C_Encrypt, C_Decrypt: given a buffer, return CKR_OK
 *                        and a length badlen_add bytes longer than that buffer;
 *                        C_GetAttributeValue: the same for every attribute given a buffer
 *   badlen_add=N         default 4096
 *   badlen_query=N       with badlen: a length query (NULL buffer) is answered N
 *   present=0            the token is pulled: C_GetSlotList(TRUE) omits the slots, C_GetSlotInfo
 *                        clears CKF_TOKEN_PRESENT, slot calls give CKR_TOKEN_NOT_PRESENT, and the
 *                        sessions that were open are closed in the target and answer
 *                        CKR_DEVICE_REMOVED (CKR_SESSION_HANDLE_INVALID once closed, or once
 *                        the token is back); present=1 (default) puts it back, logged out.
 *                        This applies to every slot of the target.
 *   token_flags=N        ORed into C_GetTokenInfo's flags (0x10000 CKF_USER_PIN_COUNT_LOW,
 *                        0x20000 CKF_USER_PIN_FINAL_TRY, 0x40000 CKF_USER_PIN_LOCKED)
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "pkcs11.h"

typedef struct Settings {
        unsigned sign_delay_ms;
        char hang[512];
        unsigned hang_ms;
        char fail_fn[512];
        unsigned long fail_at, fail_count;
        CK_RV fail_rv;
        char badlen[512];
        unsigned long badlen_add, badlen_query;
        bool present;
        unsigned long token_flags; /* ORed into C_GetTokenInfo's flags (the token's PIN counters) */
} Settings;

static CK_FUNCTION_LIST *target;
static CK_FUNCTION_LIST wrapped;
static char target_path[4096], softhsm2_conf[4096], stats_path[4096], control_path[4096];
static int hardware;

/* Everything below is guarded by `lock`. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static Settings conf, cur;
static struct stat control_st;
static bool control_seen;
static unsigned long control_generation, fail_counter, n_calls, n_fails, n_bad_lengths, n_hangs;
static int in_hang;
static CK_SESSION_HANDLE *open_set, *removed_set;
static size_t n_open, n_removed, cap_open, cap_removed;

static atomic_int in_sign, max_in_sign;

static void settings_default(Settings *s)
{
        *s = (Settings) { .fail_count = 1, .fail_rv = CKR_DEVICE_ERROR, .badlen_add = 4096, .present = true };
}

static bool apply_setting(Settings *s, const char *key, const char *v)
{
        if (strcmp(key, "sign_delay_ms") == 0)
                s->sign_delay_ms = (unsigned) strtoul(v, NULL, 10);
        else if (strcmp(key, "hang") == 0)
                snprintf(s->hang, sizeof(s->hang), "%s", v);
        else if (strcmp(key, "hang_ms") == 0)
                s->hang_ms = (unsigned) strtoul(v, NULL, 10);
        else if (strcmp(key, "fail_fn") == 0)
                snprintf(s->fail_fn, sizeof(s->fail_fn), "%s", v);
        else if (strcmp(key, "fail_at") == 0)
                s->fail_at = strtoul(v, NULL, 0);
        else if (strcmp(key, "fail_count") == 0)
                s->fail_count = strtoul(v, NULL, 0);
        else if (strcmp(key, "fail_rv") == 0)
                s->fail_rv = strtoul(v, NULL, 0);
        else if (strcmp(key, "badlen") == 0)
                snprintf(s->badlen, sizeof(s->badlen), "%s", v);
        else if (strcmp(key, "badlen_add") == 0)
                s->badlen_add = strtoul(v, NULL, 0);
        else if (strcmp(key, "badlen_query") == 0)
                s->badlen_query = strtoul(v, NULL, 0);
        else if (strcmp(key, "present") == 0)
                s->present = atoi(v) != 0;
        else if (strcmp(key, "token_flags") == 0)
                s->token_flags = strtoul(v, NULL, 0);
        else
                return false;
        return true;
}

/* Calls fn(key, value) for each key=value line of path. Returns false when it cannot be opened. */
static bool read_lines(const char *path, void (*fn)(const char *key, const char *value, void *userdata), void *userdata)
{
        char line[4200];
        FILE *f = fopen(path, "re");

        if (!f)
                return false;
        while (fgets(line, sizeof(line), f)) {
                char *eq = strchr(line, '='), *end = line + strcspn(line, "\r\n");

                *end = '\0';
                if (!eq || line[0] == '#')
                        continue;
                *eq++ = '\0';
                fn(line, eq, userdata);
        }
        fclose(f);
        return true;
}

static void conf_line(const char *key, const char *v, void *userdata)
{
        (void) userdata;
        if (strcmp(key, "target") == 0)
                snprintf(target_path, sizeof(target_path), "%s", v);
        else if (strcmp(key, "softhsm2_conf") == 0)
                snprintf(softhsm2_conf, sizeof(softhsm2_conf), "%s", v);
        else if (strcmp(key, "stats") == 0)
                snprintf(stats_path, sizeof(stats_path), "%s", v);
        else if (strcmp(key, "control") == 0)
                snprintf(control_path, sizeof(control_path), "%s", v);
        else if (strcmp(key, "hardware") == 0)
                hardware = atoi(v);
        else
                (void) apply_setting(&conf, key, v);
}

static void control_line(const char *key, const char *v, void *userdata)
{
        (void) apply_setting(userdata, key, v);
}

static void read_config(void)
{
        Dl_info info;
        char path[4200];

        settings_default(&conf);
        if (!dladdr((void *) read_config, &info) || !info.dli_fname)
                return;
        snprintf(path, sizeof(path), "%s.conf", info.dli_fname);
        snprintf(control_path, sizeof(control_path), "%s.control", info.dli_fname);
        (void) read_lines(path, conf_line, NULL);
        cur = conf;
}

/* Is name in a list like "C_Sign+C_SignFinal" ("any" matches everything)? */
static bool fn_in_list(const char *list, const char *name)
{
        size_t n = strlen(name);

        for (const char *p = list; *p;) {
                size_t len = strcspn(p, "+ :|;");

                if ((len == 3 && strncmp(p, "any", 3) == 0) || (len == n && strncmp(p, name, n) == 0))
                        return true;
                p += len;
                p += strspn(p, "+ :|;");
        }
        return false;
}

static void set_add(CK_SESSION_HANDLE **set, size_t *n, size_t *cap, CK_SESSION_HANDLE h)
{
        if (*n == *cap) {
                size_t c = *cap ? *cap * 2 : 16;
                CK_SESSION_HANDLE *p = realloc(*set, c * sizeof(CK_SESSION_HANDLE));

                if (!p)
                        return;
                *set = p;
                *cap = c;
        }
        (*set)[(*n)++] = h;
}

static bool set_remove(CK_SESSION_HANDLE *set, size_t *n, CK_SESSION_HANDLE h)
{
        for (size_t i = 0; i < *n; i++)
                if (set[i] == h) {
                        set[i] = set[--*n];
                        return true;
                }
        return false;
}

static bool set_has(const CK_SESSION_HANDLE *set, size_t n, CK_SESSION_HANDLE h)
{
        for (size_t i = 0; i < n; i++)
                if (set[i] == h)
                        return true;
        return false;
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0)
                ;
}

static void write_stats_locked(void)
{
        static pthread_mutex_t file_lock = PTHREAD_MUTEX_INITIALIZER;
        char tmp[4200];
        FILE *f;

        if (!stats_path[0])
                return;
        /* Written whole and renamed, so a reader never sees half a file. */
        pthread_mutex_lock(&file_lock);
        snprintf(tmp, sizeof(tmp), "%s.tmp", stats_path);
        f = fopen(tmp, "we");
        if (f) {
                fprintf(f,
                        "in_sign=%d\nmax_concurrent_sign=%d\nin_hang=%d\nhangs=%lu\nfails=%lu\nbad_lengths=%lu\n"
                        "open_sessions=%zu\nremoved_sessions=%zu\npresent=%d\ncalls=%lu\ncontrol_generation=%lu\n",
                        atomic_load(&in_sign), atomic_load(&max_in_sign), in_hang, n_hangs, n_fails, n_bad_lengths,
                        n_open, n_removed, cur.present ? 1 : 0, n_calls, control_generation);
                fclose(f);
                rename(tmp, stats_path);
        }
        pthread_mutex_unlock(&file_lock);
}

static void write_stats(void)
{
        pthread_mutex_lock(&lock);
        write_stats_locked();
        pthread_mutex_unlock(&lock);
}

/* The token was pulled: its sessions are gone in the target, and their handles answer CKR_DEVICE_REMOVED. */
static void remove_token_locked(void)
{
        CK_SLOT_ID slots[64];
        CK_ULONG n = 64;

        for (size_t i = 0; i < n_open; i++)
                set_add(&removed_set, &n_removed, &cap_removed, open_set[i]);
        n_open = 0;
        if (target->C_GetSlotList(CK_FALSE, slots, &n) == CKR_OK)
                for (CK_ULONG i = 0; i < n; i++)
                        (void) target->C_CloseAllSessions(slots[i]);
}

/* Reads the control file again when it changed. */
static void refresh_locked(void)
{
        struct stat st;
        bool was_present = cur.present;
        Settings s;

        if (stat(control_path, &st) < 0) {
                if (!control_seen)
                        return;
                control_seen = false;
                s = conf;
        } else {
                if (control_seen && st.st_ino == control_st.st_ino && st.st_size == control_st.st_size &&
                    st.st_mtim.tv_sec == control_st.st_mtim.tv_sec && st.st_mtim.tv_nsec == control_st.st_mtim.tv_nsec)
                        return;
                control_seen = true;
                control_st = st;
                s = conf;
                if (!read_lines(control_path, control_line, &s))
                        s = conf;
        }
        cur = s;
        control_generation++;
        fail_counter = 0;
        if (was_present && !cur.present)
                remove_token_locked();
        write_stats_locked();
}

typedef enum Kind {
        KIND_NONE,
        KIND_SLOT,    /* first argument is a slot: needs the token */
        KIND_SESSION, /* first argument is a session */
} Kind;

/* Counts a call toward fail_at; true (and *ret_rv) when this one must fail. */
static bool fail_check_locked(const char *name, CK_RV *ret_rv)
{
        if (!cur.fail_at || !(cur.fail_fn[0] ? fn_in_list(cur.fail_fn, name) : true))
                return false;
        fail_counter++;
        if (fail_counter < cur.fail_at || fail_counter >= cur.fail_at + cur.fail_count)
                return false;
        n_fails++;
        *ret_rv = cur.fail_rv;
        write_stats_locked();
        return true;
}

static bool fail_check(const char *name, CK_RV *ret_rv)
{
        bool r;

        pthread_mutex_lock(&lock);
        r = fail_check_locked(name, ret_rv);
        pthread_mutex_unlock(&lock);
        return r;
}

static bool badlen_for(const char *name, unsigned long *ret_add, unsigned long *ret_query)
{
        bool r;

        pthread_mutex_lock(&lock);
        refresh_locked();
        r = cur.badlen[0] && fn_in_list(cur.badlen, name);
        *ret_add = cur.badlen_add;
        *ret_query = cur.badlen_query;
        if (r) {
                n_bad_lengths++;
                write_stats_locked();
        }
        pthread_mutex_unlock(&lock);
        return r;
}

/*
 * Before every call: hang if told to, then answer for a pulled token, then
 * inject a failure. Returns true when *ret_rv is the answer (the target is
 * not called). With defer_fail, the caller runs fail_check() itself.
 */
static bool enter_full(const char *name, Kind kind, CK_ULONG id, bool defer_fail, CK_RV *ret_rv)
{
        bool r = false;

        pthread_mutex_lock(&lock);
        n_calls++;
        refresh_locked();
        if (cur.hang[0] && fn_in_list(cur.hang, name)) {
                struct timespec t0, t;
                unsigned limit = cur.hang_ms;

                in_hang++;
                n_hangs++;
                write_stats_locked();
                clock_gettime(CLOCK_MONOTONIC, &t0);
                for (;;) {
                        pthread_mutex_unlock(&lock);
                        sleep_ms(10);
                        pthread_mutex_lock(&lock);
                        refresh_locked();
                        clock_gettime(CLOCK_MONOTONIC, &t);
                        if (!(cur.hang[0] && fn_in_list(cur.hang, name)))
                                break;
                        if (limit && (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >= limit)
                                break;
                }
                in_hang--;
                write_stats_locked();
        }

        if (kind == KIND_SLOT && !cur.present) {
                *ret_rv = CKR_TOKEN_NOT_PRESENT;
                r = true;
        } else if (kind == KIND_SESSION && set_has(removed_set, n_removed, id)) {
                *ret_rv = cur.present ? CKR_SESSION_HANDLE_INVALID : CKR_DEVICE_REMOVED;
                r = true;
        } else if (!defer_fail)
                r = fail_check_locked(name, ret_rv);
        pthread_mutex_unlock(&lock);
        return r;
}

#define enter(name, kind, id, rv) enter_full(name, kind, id, false, rv)

/* The session sets die with the module's state, so nothing is left when the daemon unloads it. */
static CK_RV mock_C_Finalize(CK_VOID_PTR reserved)
{
        CK_RV rv = target->C_Finalize(reserved);

        pthread_mutex_lock(&lock);
        free(open_set);
        free(removed_set);
        open_set = removed_set = NULL;
        n_open = n_removed = cap_open = cap_removed = 0;
        pthread_mutex_unlock(&lock);
        return rv;
}

static CK_RV mock_C_Initialize(CK_VOID_PTR args)
{
        char *saved = NULL;
        CK_RV rv;

        if (softhsm2_conf[0]) {
                const char *old = getenv("SOFTHSM2_CONF");

                saved = old ? strdup(old) : NULL;
                setenv("SOFTHSM2_CONF", softhsm2_conf, 1);
        }
        rv = target->C_Initialize(args);
        if (softhsm2_conf[0]) {
                if (saved)
                        setenv("SOFTHSM2_CONF", saved, 1);
                else
                        unsetenv("SOFTHSM2_CONF");
                free(saved);
        }
        write_stats();
        return rv;
}

static CK_RV mock_C_GetInfo(CK_INFO_PTR info)
{
        CK_RV rv;

        if (enter("C_GetInfo", KIND_NONE, 0, &rv))
                return rv;
        return target->C_GetInfo(info);
}

static CK_RV mock_C_GetSlotList(CK_BBOOL token_present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
        bool present;
        CK_RV rv;

        if (enter("C_GetSlotList", KIND_NONE, 0, &rv))
                return rv;
        pthread_mutex_lock(&lock);
        present = cur.present;
        pthread_mutex_unlock(&lock);
        if (token_present && !present) {
                if (!count)
                        return CKR_ARGUMENTS_BAD;
                *count = 0;
                return CKR_OK;
        }
        return target->C_GetSlotList(token_present, list, count);
}

static CK_RV mock_C_GetSlotInfo(CK_SLOT_ID id, CK_SLOT_INFO_PTR info)
{
        bool present;
        CK_RV rv;

        if (enter("C_GetSlotInfo", KIND_NONE, 0, &rv))
                return rv;
        rv = target->C_GetSlotInfo(id, info);
        pthread_mutex_lock(&lock);
        present = cur.present;
        pthread_mutex_unlock(&lock);
        if (rv == CKR_OK && hardware)
                info->flags |= CKF_HW_SLOT | CKF_REMOVABLE_DEVICE;
        if (rv == CKR_OK && !present)
                info->flags &= ~(CK_FLAGS) CKF_TOKEN_PRESENT;
        return rv;
}

static CK_RV mock_C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved)
{
        CK_RV rv;

        if (enter("C_WaitForSlotEvent", KIND_NONE, 0, &rv))
                return rv;
        return target->C_WaitForSlotEvent(flags, slot, reserved);
}

static CK_RV mock_C_OpenSession(CK_SLOT_ID id, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR ret)
{
        CK_RV rv;

        if (enter("C_OpenSession", KIND_SLOT, id, &rv))
                return rv;
        rv = target->C_OpenSession(id, flags, app, notify, ret);
        if (rv == CKR_OK && ret) {
                pthread_mutex_lock(&lock);
                /* The target may give a number again: it is this new session now. */
                set_remove(removed_set, &n_removed, *ret);
                set_add(&open_set, &n_open, &cap_open, *ret);
                write_stats_locked();
                pthread_mutex_unlock(&lock);
        }
        return rv;
}

static CK_RV mock_C_CloseSession(CK_SESSION_HANDLE h)
{
        CK_RV rv;

        pthread_mutex_lock(&lock);
        refresh_locked();
        /* A session lost with the token: closing it releases the handle (the target closed it already). */
        if (set_remove(removed_set, &n_removed, h)) {
                n_calls++;
                write_stats_locked();
                pthread_mutex_unlock(&lock);
                return CKR_OK;
        }
        pthread_mutex_unlock(&lock);
        if (enter("C_CloseSession", KIND_SESSION, h, &rv))
                return rv;
        rv = target->C_CloseSession(h);
        if (rv == CKR_OK) {
                pthread_mutex_lock(&lock);
                set_remove(open_set, &n_open, h);
                write_stats_locked();
                pthread_mutex_unlock(&lock);
        }
        return rv;
}

static CK_RV mock_C_CloseAllSessions(CK_SLOT_ID id)
{
        CK_RV rv;

        pthread_mutex_lock(&lock);
        refresh_locked();
        if (!cur.present) {
                n_removed = 0;
                n_calls++;
                write_stats_locked();
                pthread_mutex_unlock(&lock);
                return CKR_OK;
        }
        pthread_mutex_unlock(&lock);
        if (enter("C_CloseAllSessions", KIND_SLOT, id, &rv))
                return rv;
        rv = target->C_CloseAllSessions(id);
        if (rv == CKR_OK) {
                /* Approximate: the mock serves one token, the others of SoftHSM2 are empty. */
                pthread_mutex_lock(&lock);
                n_open = 0;
                n_removed = 0;
                write_stats_locked();
                pthread_mutex_unlock(&lock);
        }
        return rv;
}

#define SLOT_CALL(name, params, args)                          \
        static CK_RV mock_##name params                        \
        {                                                      \
                CK_RV rv;                                      \
                if (enter(#name, KIND_SLOT, id, &rv))          \
                        return rv;                             \
                return target->name args;                      \
        }

#define SESSION_CALL(name, params, args)                       \
        static CK_RV mock_##name params                        \
        {                                                      \
                CK_RV rv;                                      \
                if (enter(#name, KIND_SESSION, h, &rv))        \
                        return rv;                             \
                return target->name args;                      \
        }

typedef CK_SESSION_HANDLE H;
typedef CK_OBJECT_HANDLE O;
typedef CK_BYTE_PTR B;
typedef CK_ULONG U;
typedef CK_ULONG_PTR UP;
typedef CK_MECHANISM_PTR M;
typedef CK_ATTRIBUTE_PTR A;

/* As the target says, with token_flags added: a token reporting low, final or no PIN tries. */
static CK_RV mock_C_GetTokenInfo(CK_SLOT_ID id, CK_TOKEN_INFO_PTR i)
{
        unsigned long flags;
        CK_RV rv;

        if (enter("C_GetTokenInfo", KIND_SLOT, id, &rv))
                return rv;
        rv = target->C_GetTokenInfo(id, i);
        pthread_mutex_lock(&lock);
        flags = cur.token_flags;
        pthread_mutex_unlock(&lock);
        if (rv == CKR_OK && i)
                i->flags |= flags;
        return rv;
}
SLOT_CALL(C_GetMechanismList, (CK_SLOT_ID id, CK_MECHANISM_TYPE_PTR l, UP n), (id, l, n))
SLOT_CALL(C_GetMechanismInfo, (CK_SLOT_ID id, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO_PTR i), (id, t, i))
SLOT_CALL(C_InitToken, (CK_SLOT_ID id, B pin, U n, B label), (id, pin, n, label))
SESSION_CALL(C_InitPIN, (H h, B pin, U n), (h, pin, n))
SESSION_CALL(C_SetPIN, (H h, B o, U on, B n, U nn), (h, o, on, n, nn))
SESSION_CALL(C_GetSessionInfo, (H h, CK_SESSION_INFO_PTR i), (h, i))
SESSION_CALL(C_GetOperationState, (H h, B s, UP n), (h, s, n))
SESSION_CALL(C_SetOperationState, (H h, B s, U n, O e, O a), (h, s, n, e, a))
SESSION_CALL(C_Login, (H h, CK_USER_TYPE u, B pin, U n), (h, u, pin, n))
SESSION_CALL(C_Logout, (H h), (h))
SESSION_CALL(C_CreateObject, (H h, A t, U n, O *o), (h, t, n, o))
SESSION_CALL(C_CopyObject, (H h, O o, A t, U n, O *r), (h, o, t, n, r))
SESSION_CALL(C_DestroyObject, (H h, O o), (h, o))
SESSION_CALL(C_GetObjectSize, (H h, O o, UP n), (h, o, n))
SESSION_CALL(C_SetAttributeValue, (H h, O o, A t, U n), (h, o, t, n))
SESSION_CALL(C_FindObjectsInit, (H h, A t, U n), (h, t, n))
SESSION_CALL(C_FindObjects, (H h, O *o, U max, UP n), (h, o, max, n))
SESSION_CALL(C_FindObjectsFinal, (H h), (h))
SESSION_CALL(C_EncryptInit, (H h, M m, O k), (h, m, k))
SESSION_CALL(C_EncryptUpdate, (H h, B p, U n, B o, UP on), (h, p, n, o, on))
SESSION_CALL(C_EncryptFinal, (H h, B o, UP on), (h, o, on))
SESSION_CALL(C_DecryptInit, (H h, M m, O k), (h, m, k))
SESSION_CALL(C_DecryptUpdate, (H h, B p, U n, B o, UP on), (h, p, n, o, on))
SESSION_CALL(C_DecryptFinal, (H h, B o, UP on), (h, o, on))
SESSION_CALL(C_DigestInit, (H h, M m), (h, m))
SESSION_CALL(C_Digest, (H h, B p, U n, B o, UP on), (h, p, n, o, on))
SESSION_CALL(C_DigestUpdate, (H h, B p, U n), (h, p, n))
SESSION_CALL(C_DigestKey, (H h, O k), (h, k))
SESSION_CALL(C_DigestFinal, (H h, B o, UP on), (h, o, on))
SESSION_CALL(C_SignInit, (H h, M m, O k), (h, m, k))
SESSION_CALL(C_SignUpdate, (H h, B p, U n), (h, p, n))
SESSION_CALL(C_SignRecoverInit, (H h, M m, O k), (h, m, k))
SESSION_CALL(C_SignRecover, (H h, B p, U n, B o, UP on), (h, p, n, o, on))
SESSION_CALL(C_VerifyInit, (H h, M m, O k), (h, m, k))
SESSION_CALL(C_Verify, (H h, B p, U n, B s, U sn), (h, p, n, s, sn))
SESSION_CALL(C_VerifyUpdate, (H h, B p, U n), (h, p, n))
SESSION_CALL(C_VerifyFinal, (H h, B s, U sn), (h, s, sn))
SESSION_CALL(C_VerifyRecoverInit, (H h, M m, O k), (h, m, k))
SESSION_CALL(C_VerifyRecover, (H h, B p, U n, B o, UP on), (h, p, n, o, on))
SESSION_CALL(C_DigestEncryptUpdate, (H h, B p, U n, B o, UP on), (h, p, n, o, on))
SESSION_CALL(C_DecryptDigestUpdate, (H h, B p, U n, B o, UP on), (h, p, n, o, on))
SESSION_CALL(C_SignEncryptUpdate, (H h, B p, U n, B o, UP on), (h, p, n, o, on))
SESSION_CALL(C_DecryptVerifyUpdate, (H h, B p, U n, B o, UP on), (h, p, n, o, on))
SESSION_CALL(C_GenerateKey, (H h, M m, A t, U n, O *k), (h, m, t, n, k))
SESSION_CALL(C_GenerateKeyPair, (H h, M m, A pt, U pn, A kt, U kn, O *pub, O *priv), (h, m, pt, pn, kt, kn, pub, priv))
SESSION_CALL(C_WrapKey, (H h, M m, O w, O k, B o, UP on), (h, m, w, k, o, on))
SESSION_CALL(C_UnwrapKey, (H h, M m, O u, B w, U wn, A t, U n, O *k), (h, m, u, w, wn, t, n, k))
SESSION_CALL(C_DeriveKey, (H h, M m, O b, A t, U n, O *k), (h, m, b, t, n, k))
SESSION_CALL(C_SeedRandom, (H h, B s, U n), (h, s, n))
SESSION_CALL(C_GenerateRandom, (H h, B r, U n), (h, r, n))
SESSION_CALL(C_GetFunctionStatus, (H h), (h))
SESSION_CALL(C_CancelFunction, (H h), (h))

static CK_RV mock_C_GetAttributeValue(H h, O o, A t, U n)
{
        CK_ULONG caps[64];
        unsigned long add, query;
        bool bad;
        CK_RV rv;

        if (enter("C_GetAttributeValue", KIND_SESSION, h, &rv))
                return rv;
        bad = badlen_for("C_GetAttributeValue", &add, &query) && t && n <= 64;
        for (CK_ULONG i = 0; bad && i < n; i++)
                caps[i] = t[i].ulValueLen;
        rv = target->C_GetAttributeValue(h, o, t, n);
        for (CK_ULONG i = 0; bad && i < n; i++) {
                if (t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION)
                        continue;
                if (t[i].pValue)
                        t[i].ulValueLen = caps[i] + add;
                else if (query)
                        t[i].ulValueLen = query;
        }
        if (bad && rv == CKR_BUFFER_TOO_SMALL)
                rv = CKR_OK;
        return rv;
}

/*
 * C_Sign, C_SignFinal, C_Encrypt, C_Decrypt: single calls that end their
 * operation. An injected failure still ends it in the target (as a real
 * error does), and bad lengths are told about a finished, successful call.
 */
static CK_RV finishing_call(const char *name, CK_RV (*call)(void *ctx, B out, UP out_len), void *ctx, B out, UP out_len)
{
        unsigned long add, query;
        CK_ULONG cap = out_len ? *out_len : 0;
        CK_RV rv, frv;

        if (enter_full(name, KIND_SESSION, *(H *) ctx, true, &rv))
                return rv;
        if (fail_check(name, &frv)) {
                CK_ULONG n = 16384;
                CK_BYTE *scratch = malloc(n);

                (void) call(ctx, scratch, scratch ? &n : &(CK_ULONG) { 0 });
                free(scratch);
                return frv;
        }
        rv = call(ctx, out, out_len);
        if (rv == CKR_OK && out_len && badlen_for(name, &add, &query)) {
                if (out)
                        *out_len = cap + add;
                else if (query)
                        *out_len = query;
        }
        return rv;
}

typedef struct Ctx {
        H h;
        B in;
        U in_len;
} Ctx;

static CK_RV call_sign(void *p, B out, UP out_len)
{
        Ctx *c = p;
        CK_RV rv;
        int now = atomic_fetch_add(&in_sign, 1) + 1, max = atomic_load(&max_in_sign);
        unsigned delay;

        while (now > max && !atomic_compare_exchange_weak(&max_in_sign, &max, now))
                ;
        pthread_mutex_lock(&lock);
        delay = cur.sign_delay_ms;
        write_stats_locked();
        pthread_mutex_unlock(&lock);
        if (delay)
                sleep_ms(delay);
        rv = target->C_Sign(c->h, c->in, c->in_len, out, out_len);
        atomic_fetch_sub(&in_sign, 1);
        write_stats();
        return rv;
}

static CK_RV call_sign_final(void *p, B out, UP out_len)
{
        Ctx *c = p;
        CK_RV rv;
        int now = atomic_fetch_add(&in_sign, 1) + 1, max = atomic_load(&max_in_sign);
        unsigned delay;

        while (now > max && !atomic_compare_exchange_weak(&max_in_sign, &max, now))
                ;
        pthread_mutex_lock(&lock);
        delay = cur.sign_delay_ms;
        write_stats_locked();
        pthread_mutex_unlock(&lock);
        if (delay)
                sleep_ms(delay);
        rv = target->C_SignFinal(c->h, out, out_len);
        atomic_fetch_sub(&in_sign, 1);
        write_stats();
        return rv;
}

static CK_RV call_encrypt(void *p, B out, UP out_len)
{
        Ctx *c = p;

        return target->C_Encrypt(c->h, c->in, c->in_len, out, out_len);
}

static CK_RV call_decrypt(void *p, B out, UP out_len)
{
        Ctx *c = p;

        return target->C_Decrypt(c->h, c->in, c->in_len, out, out_len);
}

static CK_RV mock_C_Sign(H h, B data, U len, B sig, UP sig_len)
{
        return finishing_call("C_Sign", call_sign, &(Ctx) { h, data, len }, sig, sig_len);
}

static CK_RV mock_C_SignFinal(H h, B sig, UP sig_len)
{
        return finishing_call("C_SignFinal", call_sign_final, &(Ctx) { h, NULL, 0 }, sig, sig_len);
}

static CK_RV mock_C_Encrypt(H h, B data, U len, B out, UP out_len)
{
        return finishing_call("C_Encrypt", call_encrypt, &(Ctx) { h, data, len }, out, out_len);
}

static CK_RV mock_C_Decrypt(H h, B data, U len, B out, UP out_len)
{
        return finishing_call("C_Decrypt", call_decrypt, &(Ctx) { h, data, len }, out, out_len);
}

static CK_RV mock_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret);

static CK_RV load_target(void)
{
        CK_C_GetFunctionList get;
        void *dl;

        if (target)
                return CKR_OK;
        read_config();
        if (!target_path[0])
                snprintf(target_path, sizeof(target_path), "%s", "/usr/lib/softhsm/libsofthsm2.so");
        dl = dlopen(target_path, RTLD_NOW | RTLD_LOCAL);
        if (!dl)
                return CKR_GENERAL_ERROR;
        get = (CK_C_GetFunctionList) dlsym(dl, "C_GetFunctionList");
        if (!get || get(&target) != CKR_OK)
                return CKR_GENERAL_ERROR;

        wrapped = *target;
#define W(name) wrapped.name = mock_##name
        W(C_Initialize);
        W(C_Finalize);
        W(C_GetFunctionList);
        W(C_GetInfo);
        W(C_GetSlotList);
        W(C_GetSlotInfo);
        W(C_GetTokenInfo);
        W(C_WaitForSlotEvent);
        W(C_GetMechanismList);
        W(C_GetMechanismInfo);
        W(C_InitToken);
        W(C_InitPIN);
        W(C_SetPIN);
        W(C_OpenSession);
        W(C_CloseSession);
        W(C_CloseAllSessions);
        W(C_GetSessionInfo);
        W(C_GetOperationState);
        W(C_SetOperationState);
        W(C_Login);
        W(C_Logout);
        W(C_CreateObject);
        W(C_CopyObject);
        W(C_DestroyObject);
        W(C_GetObjectSize);
        W(C_GetAttributeValue);
        W(C_SetAttributeValue);
        W(C_FindObjectsInit);
        W(C_FindObjects);
        W(C_FindObjectsFinal);
        W(C_EncryptInit);
        W(C_Encrypt);
        W(C_EncryptUpdate);
        W(C_EncryptFinal);
        W(C_DecryptInit);
        W(C_Decrypt);
        W(C_DecryptUpdate);
        W(C_DecryptFinal);
        W(C_DigestInit);
        W(C_Digest);
        W(C_DigestUpdate);
        W(C_DigestKey);
        W(C_DigestFinal);
        W(C_SignInit);
        W(C_Sign);
        W(C_SignUpdate);
        W(C_SignFinal);
        W(C_SignRecoverInit);
        W(C_SignRecover);
        W(C_VerifyInit);
        W(C_Verify);
        W(C_VerifyUpdate);
        W(C_VerifyFinal);
        W(C_VerifyRecoverInit);
        W(C_VerifyRecover);
        W(C_DigestEncryptUpdate);
        W(C_DecryptDigestUpdate);
        W(C_SignEncryptUpdate);
        W(C_DecryptVerifyUpdate);
        W(C_GenerateKey);
        W(C_GenerateKeyPair);
        W(C_WrapKey);
        W(C_UnwrapKey);
        W(C_DeriveKey);
        W(C_SeedRandom);
        W(C_GenerateRandom);
        W(C_GetFunctionStatus);
        W(C_CancelFunction);
#undef W
        return CKR_OK;
}

static CK_RV mock_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret)
{
        static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
        CK_RV rv;

        if (!ret)
                return CKR_ARGUMENTS_BAD;
        pthread_mutex_lock(&load_lock);
        rv = load_target();
        pthread_mutex_unlock(&load_lock);
        if (rv == CKR_OK)
                *ret = &wrapped;
        return rv;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret);

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret)
{
        return mock_C_GetFunctionList(ret);
}
