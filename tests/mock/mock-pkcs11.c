/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A PKCS#11 module for tests that wraps a real one (SoftHSM2) and changes
 * what a real module cannot be made to do on demand: it can make signing
 * slow, pretend its slots are removable hardware, fail or hang at a chosen
 * call, and it records how many calls ran inside it at once.
 *
 * It is configured by a file next to it: <path of this .so>.conf, so that
 * copies of it under different names are different backends with their own
 * settings. Keys (one per line, key=value):
 *
 *   target=PATH          the real module to wrap (load a private copy of it, so its state is
 *                        separate from the same module loaded directly)
 *   softhsm2_conf=PATH   SOFTHSM2_CONF for the target's C_Initialize
 *   sign_delay_ms=N      sleep this long inside C_Sign and C_SignFinal
 *   hardware=1           report slots as removable hardware (CKF_HW_SLOT | CKF_REMOVABLE_DEVICE)
 *   stats=PATH           on entering and leaving C_Sign/C_SignFinal, write there
 *                        "in_sign=N" (calls inside now) and "max_concurrent_sign=N"
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pkcs11.h"

static CK_FUNCTION_LIST *target;
static CK_FUNCTION_LIST wrapped;
static char target_path[4096], softhsm2_conf[4096], stats_path[4096];
static unsigned sign_delay_ms;
static int hardware;
static atomic_int in_sign, max_in_sign;

static void read_config(void)
{
        Dl_info info;
        char path[4200], line[4200];
        FILE *f;

        if (!dladdr((void *) read_config, &info) || !info.dli_fname)
                return;
        snprintf(path, sizeof(path), "%s.conf", info.dli_fname);
        f = fopen(path, "re");
        if (!f)
                return;
        while (fgets(line, sizeof(line), f)) {
                char *eq = strchr(line, '='), *nl = strchr(line, '\n');

                if (nl)
                        *nl = '\0';
                if (!eq)
                        continue;
                *eq++ = '\0';
                if (strcmp(line, "target") == 0)
                        snprintf(target_path, sizeof(target_path), "%s", eq);
                else if (strcmp(line, "softhsm2_conf") == 0)
                        snprintf(softhsm2_conf, sizeof(softhsm2_conf), "%s", eq);
                else if (strcmp(line, "stats") == 0)
                        snprintf(stats_path, sizeof(stats_path), "%s", eq);
                else if (strcmp(line, "sign_delay_ms") == 0)
                        sign_delay_ms = (unsigned) strtoul(eq, NULL, 10);
                else if (strcmp(line, "hardware") == 0)
                        hardware = atoi(eq);
        }
        fclose(f);
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0)
                ;
}

static void write_stats(void)
{
        static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        char tmp[4200];
        FILE *f;

        if (!stats_path[0])
                return;
        /* Written whole and renamed, so a reader never sees half a file. */
        pthread_mutex_lock(&lock);
        snprintf(tmp, sizeof(tmp), "%s.tmp", stats_path);
        f = fopen(tmp, "we");
        if (f) {
                fprintf(f, "in_sign=%d\nmax_concurrent_sign=%d\n", atomic_load(&in_sign), atomic_load(&max_in_sign));
                fclose(f);
                rename(tmp, stats_path);
        }
        pthread_mutex_unlock(&lock);
}

static void sign_enter(void)
{
        int now = atomic_fetch_add(&in_sign, 1) + 1, max = atomic_load(&max_in_sign);

        while (now > max && !atomic_compare_exchange_weak(&max_in_sign, &max, now))
                ;
        write_stats();
        if (sign_delay_ms)
                sleep_ms(sign_delay_ms);
}

static void sign_leave(void)
{
        atomic_fetch_sub(&in_sign, 1);
        write_stats();
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
        return rv;
}

static CK_RV mock_C_GetSlotInfo(CK_SLOT_ID id, CK_SLOT_INFO_PTR info)
{
        CK_RV rv = target->C_GetSlotInfo(id, info);

        if (rv == CKR_OK && hardware)
                info->flags |= CKF_HW_SLOT | CKF_REMOVABLE_DEVICE;
        return rv;
}

static CK_RV mock_C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
        CK_RV rv;

        sign_enter();
        rv = target->C_Sign(h, data, len, sig, sig_len);
        sign_leave();
        return rv;
}

static CK_RV mock_C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
        CK_RV rv;

        sign_enter();
        rv = target->C_SignFinal(h, sig, sig_len);
        sign_leave();
        return rv;
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
        wrapped.C_Initialize = mock_C_Initialize;
        wrapped.C_GetFunctionList = mock_C_GetFunctionList;
        wrapped.C_GetSlotInfo = mock_C_GetSlotInfo;
        wrapped.C_Sign = mock_C_Sign;
        wrapped.C_SignFinal = mock_C_SignFinal;
        return CKR_OK;
}

static CK_RV mock_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret)
{
        static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        CK_RV rv;

        if (!ret)
                return CKR_ARGUMENTS_BAD;
        pthread_mutex_lock(&lock);
        rv = load_target();
        pthread_mutex_unlock(&lock);
        if (rv == CKR_OK)
                *ret = &wrapped;
        return rv;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret);

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret)
{
        return mock_C_GetFunctionList(ret);
}
