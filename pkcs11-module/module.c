/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The PKCS#11 entry points of kyso-pkcs11.so. Almost every function is
 * forwarded to kysod: check that the module is initialised, describe the
 * arguments as a WireArg array in the order of the call's wire signature,
 * and make one generic call. Answered here: C_GetInfo, the function lists
 * and interfaces, C_GetFunctionStatus/C_CancelFunction, and the paging of
 * search results (the daemon returns a whole search at once).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "config.h"
#include "log.h"
#include "macro.h"
#include "module.h"
#include "sessions.h"

/* How often a blocking C_WaitForSlotEvent polls a daemon that cannot block. */
#define SLOT_EVENT_POLL_USEC (500U * 1000U)

/* Serialises C_Initialize and C_Finalize; held across the connect, which no other call waits for. */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
/* Guards the pointer only; held for a few instructions. */
static pthread_mutex_t module_lock = PTHREAD_MUTEX_INITIALIZER;
static Client *module_client;
static pthread_once_t module_once = PTHREAD_ONCE_INIT;

DEFINE_TRIVIAL_CLEANUP_FUNC(Client *, client_unref);

static void atfork_prepare(void)
{
        /* Order: module_lock, sessions, client (as everywhere else), so the child inherits consistent state. */
        pthread_mutex_lock(&module_lock);
        sessions_lock_for_fork();
        client_lock_for_fork(module_client);
}

static void atfork_parent(void)
{
        client_unlock_after_fork(module_client);
        sessions_unlock_after_fork();
        pthread_mutex_unlock(&module_lock);
}

static void atfork_child(void)
{
        /* The child is not initialised: it must call C_Initialize and gets its own connection. */
        client_forget_after_fork(TAKE_PTR(module_client));
        sessions_reset_after_fork();
        pthread_mutex_unlock(&module_lock);
        /* A thread of the parent may have been inside C_Initialize. */
        pthread_mutex_init(&init_lock, NULL);
}

static void module_setup(void)
{
        const char *e = secure_getenv("KYSO_DEBUG");

        /* We live inside other people's programs: silent unless asked. */
        if (e && streq(e, "1"))
                log_setup("kyso-pkcs11", LOG_DEBUG);
        else
                log_set_max_level(-1);
        pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* The client with a reference, or NULL when not initialised. */
static Client *module_get_client(void)
{
        Client *c;

        pthread_mutex_lock(&module_lock);
        c = module_client;
        if (c)
                client_ref(c);
        pthread_mutex_unlock(&module_lock);
        return c;
}

static CK_RV rv_from_errno(int r)
{
        switch (r) {
        case -ESHUTDOWN:
                return CKR_CRYPTOKI_NOT_INITIALIZED;
        case -EINVAL:
                return CKR_ARGUMENTS_BAD;
        case -ENOMEM:
                return CKR_HOST_MEMORY;
        case -EMSGSIZE:
                return CKR_DATA_LEN_RANGE;
        case -EBADMSG:
        case -EPROTO:
                return CKR_DEVICE_ERROR;
        default:
                /* The connection died, or the daemon cannot be reached again. */
                return CKR_DEVICE_REMOVED;
        }
}

/* Output pointers the call needs, and lengths without buffers, are refused here, before any round trip. */
static bool args_valid(const char *signature, const WireArg *args)
{
        for (size_t i = 0; signature[i]; i++) {
                const WireArg *a = &args[i];

                switch (signature[i]) {
                case 'y':
                case 'a':
                case 'A':
                case 'r':
                case 'p':
                        if (!a->ptr && a->len > 0)
                                return false;
                        break;
                case 'U':
                case 'n':
                case 's':
                case 'V':
                case 'I':
                case 'T':
                case 'X':
                case 'M':
                        if (!a->ptr)
                                return false;
                        break;
                case 'o':
                case 'l':
                case 'H':
                        if (!a->len_ptr)
                                return false;
                        break;
                }
        }
        return true;
}

/* Handles the application now holds: the handle base of a reconnect must stay above them. */
static void note_handles(const char *signature, const WireArg *args)
{
        for (size_t i = 0; signature[i]; i++) {
                const WireArg *a = &args[i];

                if (signature[i] == 's' || signature[i] == 'n')
                        client_note_handle(*(const CK_ULONG *) a->ptr);
                else if (signature[i] == 'H') {
                        const CK_OBJECT_HANDLE *h = *(CK_OBJECT_HANDLE *const *) a->ptr;
                        for (CK_ULONG j = 0; h && j < *a->len_ptr; j++)
                                client_note_handle(h[j]);
                }
        }
}

static CK_RV module_call(Client *c, WireCall call, WireArg *args, uint64_t *ret_generation)
{
        const WireCallInfo *info = wire_call_info(call);
        CK_RV rv = CKR_GENERAL_ERROR;
        int r;

        if (!info)
                return CKR_GENERAL_ERROR;
        if (!args_valid(info->signature, args))
                return CKR_ARGUMENTS_BAD;

        r = client_call(c, call, args, &rv, ret_generation);
        if (r < 0) {
                log_debug_errno(r, "%s failed: %m", info->name);
                return rv_from_errno(r);
        }
        if (rv == CKR_OK)
                note_handles(info->signature, args);
        return rv;
}

#define CLIENT_OR_RETURN(c)                                                                                \
        _cleanup_(client_unrefp) Client *c = module_get_client();                                          \
        if (!c)                                                                                            \
                return CKR_CRYPTOKI_NOT_INITIALIZED

/* One WireArg per signature character; see wire.h. */
#define VAL(v) { .value = (CK_ULONG) (v) }
#define BYTES(p, n) { .ptr = (void *) (p), .len = (n) }
#define OUT(p, lenp) { .ptr = (void *) (p), .len_ptr = (lenp) }
#define PTR(p) { .ptr = (void *) (p) }
#define MSGPARAM(p, n, mech) { .ptr = (p), .len = (n), .value = (mech) }

#define CALL_GEN(gen, name, ...)                                                                           \
        ({                                                                                                 \
                WireArg _args_[] = { __VA_ARGS__ };                                                        \
                module_call(c, KYSO_CALL_##name, _args_, (gen));                                           \
        })
#define CALL(name, ...) CALL_GEN(NULL, name, __VA_ARGS__)

/* ---- General purpose ---- */

static CK_RV kyso_C_Initialize(CK_VOID_PTR pInitArgs)
{
        const CK_C_INITIALIZE_ARGS *a = pInitArgs;
        const char *path;
        Client *c;
        int r, n;

        pthread_once(&module_once, module_setup);

        if (a) {
                if (a->pReserved)
                        return CKR_ARGUMENTS_BAD;
                n = !!a->CreateMutex + !!a->DestroyMutex + !!a->LockMutex + !!a->UnlockMutex;
                if (n != 0 && n != 4)
                        return CKR_ARGUMENTS_BAD;
                /* We lock with pthreads; we cannot use only the application's mutexes. */
                if (n == 4 && !(a->flags & CKF_OS_LOCKING_OK))
                        return CKR_CANT_LOCK;
        }

        pthread_mutex_lock(&init_lock);
        pthread_mutex_lock(&module_lock);
        c = module_client;
        pthread_mutex_unlock(&module_lock);
        if (c) {
                pthread_mutex_unlock(&init_lock);
                return CKR_CRYPTOKI_ALREADY_INITIALIZED;
        }

        path = secure_getenv("KYSO_SOCKET");
        if (!path || !*path)
                path = KYSO_SOCKET_DEFAULT;
        r = client_new(path, &c);
        if (r < 0) {
                log_error_errno(r, "Cannot reach kysod at %s: %m", path);
                pthread_mutex_unlock(&init_lock);
                return r == -ENOMEM ? CKR_HOST_MEMORY : CKR_DEVICE_ERROR;
        }

        pthread_mutex_lock(&module_lock);
        module_client = c;
        pthread_mutex_unlock(&module_lock);
        pthread_mutex_unlock(&init_lock);
        return CKR_OK;
}

static CK_RV kyso_C_Finalize(CK_VOID_PTR pReserved)
{
        Client *c;

        pthread_mutex_lock(&init_lock);
        pthread_mutex_lock(&module_lock);
        c = module_client;
        if (c && !pReserved)
                module_client = NULL;
        pthread_mutex_unlock(&module_lock);
        if (!c || pReserved) {
                pthread_mutex_unlock(&init_lock);
                return !c ? CKR_CRYPTOKI_NOT_INITIALIZED : CKR_ARGUMENTS_BAD;
        }

        /* Wakes every thread still waiting on the daemon (C_WaitForSlotEvent among them). */
        client_shutdown(c);
        client_unref(c);
        sessions_clear();
        pthread_mutex_unlock(&init_lock);
        return CKR_OK;
}

static void pad_copy(unsigned char *dst, size_t size, const char *src)
{
        size_t n = strlen(src);

        memset(dst, ' ', size);
        memcpy(dst, src, n < size ? n : size);
}

static CK_RV module_get_info(CK_INFO_PTR pInfo, CK_BYTE major, CK_BYTE minor)
{
        unsigned vmajor = 0, vminor = 0;
        CLIENT_OR_RETURN(c);

        if (!pInfo)
                return CKR_ARGUMENTS_BAD;
        (void) sscanf(PACKAGE_VERSION, "%u.%u", &vmajor, &vminor);
        *pInfo = (CK_INFO) {
                .cryptokiVersion = { major, minor },
                .flags = 0,
                .libraryVersion = { (CK_BYTE) vmajor, (CK_BYTE) vminor },
        };
        pad_copy(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), "kyso");
        pad_copy(pInfo->libraryDescription, sizeof(pInfo->libraryDescription), "kyso PKCS#11 client");
        return CKR_OK;
}

static CK_RV kyso_C_GetInfo(CK_INFO_PTR pInfo)
{
        return module_get_info(pInfo, 2, 40);
}

static CK_RV kyso_C_GetInfo_3_0(CK_INFO_PTR pInfo)
{
        return module_get_info(pInfo, 3, 0);
}

static CK_RV kyso_C_GetFunctionStatus(CK_SESSION_HANDLE hSession)
{
        CLIENT_OR_RETURN(c);
        return CKR_FUNCTION_NOT_PARALLEL;
}

static CK_RV kyso_C_CancelFunction(CK_SESSION_HANDLE hSession)
{
        CLIENT_OR_RETURN(c);
        return CKR_FUNCTION_NOT_PARALLEL;
}

/* ---- Slots and tokens ---- */

static CK_RV kyso_C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_GetSlotList, VAL(tokenPresent), OUT(pSlotList, pulCount));
}

static CK_RV kyso_C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_GetSlotInfo, VAL(slotID), PTR(pInfo));
}

static CK_RV kyso_C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_GetTokenInfo, VAL(slotID), PTR(pInfo));
}

static CK_RV kyso_C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved)
{
        CK_RV rv;
        CLIENT_OR_RETURN(c);

        if (!pSlot || pReserved)
                return CKR_ARGUMENTS_BAD;
        if ((flags & CKF_DONT_BLOCK) || (client_server_flags(c) & KYSO_SERVER_FLAG_BLOCKING_SLOT_EVENTS))
                /* A blocking wait is one long outstanding call; other threads' calls pass it by. */
                return CALL(C_WaitForSlotEvent, VAL(flags), PTR(pSlot));

        /* The daemon cannot block: poll, waking at once on C_Finalize. */
        for (;;) {
                rv = CALL(C_WaitForSlotEvent, VAL(flags | CKF_DONT_BLOCK), PTR(pSlot));
                if (rv != CKR_NO_EVENT)
                        return rv;
                if (client_sleep(c, SLOT_EVENT_POLL_USEC) < 0)
                        return CKR_CRYPTOKI_NOT_INITIALIZED;
        }
}

static CK_RV kyso_C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_GetMechanismList, VAL(slotID), OUT(pMechanismList, pulCount));
}

static CK_RV kyso_C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_GetMechanismInfo, VAL(slotID), VAL(type), PTR(pInfo));
}

static CK_RV kyso_C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pLabel)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_InitToken, VAL(slotID), BYTES(pPin, ulPinLen), PTR(pLabel));
}

static CK_RV kyso_C_InitPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_InitPIN, VAL(hSession), BYTES(pPin, ulPinLen));
}

static CK_RV kyso_C_SetPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen,
                           CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_SetPIN, VAL(hSession), BYTES(pOldPin, ulOldLen), BYTES(pNewPin, ulNewLen));
}

/* ---- Sessions ---- */

static CK_RV kyso_C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
                                CK_SESSION_HANDLE_PTR phSession)
{
        uint64_t gen = 0;
        CK_RV rv;
        CLIENT_OR_RETURN(c);

        if (!phSession)
                return CKR_ARGUMENTS_BAD;
        if (!(flags & CKF_SERIAL_SESSION))
                return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
        /* pApplication and Notify are never called back, which the specification allows. */
        rv = CALL_GEN(&gen, C_OpenSession, VAL(slotID), VAL(flags), PTR(phSession));
        if (rv == CKR_OK && sessions_add(*phSession, slotID, gen) < 0) {
                (void) CALL(C_CloseSession, VAL(*phSession));
                return CKR_HOST_MEMORY;
        }
        return rv;
}

static CK_RV kyso_C_CloseSession(CK_SESSION_HANDLE hSession)
{
        CK_RV rv;
        CLIENT_OR_RETURN(c);

        rv = CALL(C_CloseSession, VAL(hSession));
        /* Whatever the daemon says, the application is done with the handle. */
        sessions_remove(hSession);
        return rv;
}

static CK_RV kyso_C_CloseAllSessions(CK_SLOT_ID slotID)
{
        CK_RV rv;
        CLIENT_OR_RETURN(c);

        rv = CALL(C_CloseAllSessions, VAL(slotID));
        if (rv == CKR_OK)
                sessions_remove_slot(slotID);
        return rv;
}

static CK_RV kyso_C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_GetSessionInfo, VAL(hSession), PTR(pInfo));
}

static CK_RV kyso_C_GetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                                      CK_ULONG_PTR pulOperationStateLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_GetOperationState, VAL(hSession), OUT(pOperationState, pulOperationStateLen));
}

static CK_RV kyso_C_SetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                                      CK_ULONG ulOperationStateLen, CK_OBJECT_HANDLE hEncryptionKey,
                                      CK_OBJECT_HANDLE hAuthenticationKey)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_SetOperationState, VAL(hSession), BYTES(pOperationState, ulOperationStateLen),
                    VAL(hEncryptionKey), VAL(hAuthenticationKey));
}

static CK_RV kyso_C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_Login, VAL(hSession), VAL(userType), BYTES(pPin, ulPinLen));
}

static CK_RV kyso_C_LoginUser(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
                              CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_LoginUser, VAL(hSession), VAL(userType), BYTES(pPin, ulPinLen),
                    BYTES(pUsername, ulUsernameLen));
}

static CK_RV kyso_C_Logout(CK_SESSION_HANDLE hSession)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_Logout, VAL(hSession));
}

static CK_RV kyso_C_SessionCancel(CK_SESSION_HANDLE hSession, CK_FLAGS flags)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_SessionCancel, VAL(hSession), VAL(flags));
}

/* ---- Objects ---- */

static CK_RV kyso_C_CreateObject(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,
                                 CK_OBJECT_HANDLE_PTR phObject)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_CreateObject, VAL(hSession), BYTES(pTemplate, ulCount), PTR(phObject));
}

static CK_RV kyso_C_CopyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,
                               CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewObject)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_CopyObject, VAL(hSession), VAL(hObject), BYTES(pTemplate, ulCount), PTR(phNewObject));
}

static CK_RV kyso_C_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DestroyObject, VAL(hSession), VAL(hObject));
}

static CK_RV kyso_C_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_GetObjectSize, VAL(hSession), VAL(hObject), PTR(pulSize));
}

static CK_RV kyso_C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                                      CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_GetAttributeValue, VAL(hSession), VAL(hObject), BYTES(pTemplate, ulCount));
}

static CK_RV kyso_C_SetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                                      CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_SetAttributeValue, VAL(hSession), VAL(hObject), BYTES(pTemplate, ulCount));
}

static CK_RV kyso_C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
        CK_OBJECT_HANDLE *found = NULL;
        CK_ULONG n_found = 0;
        uint64_t gen;
        CK_RV rv;
        CLIENT_OR_RETURN(c);

        if (sessions_find_check(hSession, client_generation(c)) == -EBUSY)
                return CKR_OPERATION_ACTIVE;

        rv = CALL_GEN(&gen, C_FindObjectsInit, VAL(hSession), BYTES(pTemplate, ulCount), OUT(&found, &n_found));
        if (rv != CKR_OK) {
                free(found);
                return rv;
        }
        switch (sessions_find_start(hSession, gen, found, n_found)) {
        case 0:
                return CKR_OK;
        case -EBUSY:
                return CKR_OPERATION_ACTIVE;
        default:
                return CKR_HOST_MEMORY;
        }
}

static CK_RV find_rv(int r)
{
        return r == -ENOENT ? CKR_SESSION_HANDLE_INVALID : r == -ENODATA ? CKR_OPERATION_NOT_INITIALIZED : CKR_OK;
}

static CK_RV kyso_C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount,
                                CK_ULONG_PTR pulObjectCount)
{
        CLIENT_OR_RETURN(c);

        if (!phObject || !pulObjectCount)
                return CKR_ARGUMENTS_BAD;
        return find_rv(sessions_find_next(hSession, client_generation(c), phObject, ulMaxObjectCount, pulObjectCount));
}

static CK_RV kyso_C_FindObjectsFinal(CK_SESSION_HANDLE hSession)
{
        CLIENT_OR_RETURN(c);
        return find_rv(sessions_find_final(hSession, client_generation(c)));
}

/* ---- Encryption, decryption, digests, signatures ---- */

static CK_RV kyso_C_EncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_EncryptInit, VAL(hSession), PTR(pMechanism), VAL(hKey));
}

static CK_RV kyso_C_Encrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                            CK_BYTE_PTR pEncryptedData, CK_ULONG_PTR pulEncryptedDataLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_Encrypt, VAL(hSession), BYTES(pData, ulDataLen), OUT(pEncryptedData, pulEncryptedDataLen));
}

static CK_RV kyso_C_EncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,
                                  CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_EncryptUpdate, VAL(hSession), BYTES(pPart, ulPartLen), OUT(pEncryptedPart, pulEncryptedPartLen));
}

static CK_RV kyso_C_EncryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastEncryptedPart,
                                 CK_ULONG_PTR pulLastEncryptedPartLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_EncryptFinal, VAL(hSession), OUT(pLastEncryptedPart, pulLastEncryptedPartLen));
}

static CK_RV kyso_C_DecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DecryptInit, VAL(hSession), PTR(pMechanism), VAL(hKey));
}

static CK_RV kyso_C_Decrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedData, CK_ULONG ulEncryptedDataLen,
                            CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_Decrypt, VAL(hSession), BYTES(pEncryptedData, ulEncryptedDataLen), OUT(pData, pulDataLen));
}

static CK_RV kyso_C_DecryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen,
                                  CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DecryptUpdate, VAL(hSession), BYTES(pEncryptedPart, ulEncryptedPartLen), OUT(pPart, pulPartLen));
}

static CK_RV kyso_C_DecryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastPart, CK_ULONG_PTR pulLastPartLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DecryptFinal, VAL(hSession), OUT(pLastPart, pulLastPartLen));
}

static CK_RV kyso_C_DigestInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DigestInit, VAL(hSession), PTR(pMechanism));
}

static CK_RV kyso_C_Digest(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pDigest,
                           CK_ULONG_PTR pulDigestLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_Digest, VAL(hSession), BYTES(pData, ulDataLen), OUT(pDigest, pulDigestLen));
}

static CK_RV kyso_C_DigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DigestUpdate, VAL(hSession), BYTES(pPart, ulPartLen));
}

static CK_RV kyso_C_DigestKey(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DigestKey, VAL(hSession), VAL(hKey));
}

static CK_RV kyso_C_DigestFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DigestFinal, VAL(hSession), OUT(pDigest, pulDigestLen));
}

static CK_RV kyso_C_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_SignInit, VAL(hSession), PTR(pMechanism), VAL(hKey));
}

static CK_RV kyso_C_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                         CK_ULONG_PTR pulSignatureLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_Sign, VAL(hSession), BYTES(pData, ulDataLen), OUT(pSignature, pulSignatureLen));
}

static CK_RV kyso_C_SignUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_SignUpdate, VAL(hSession), BYTES(pPart, ulPartLen));
}

static CK_RV kyso_C_SignFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_SignFinal, VAL(hSession), OUT(pSignature, pulSignatureLen));
}

static CK_RV kyso_C_SignRecoverInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_SignRecoverInit, VAL(hSession), PTR(pMechanism), VAL(hKey));
}

static CK_RV kyso_C_SignRecover(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                                CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_SignRecover, VAL(hSession), BYTES(pData, ulDataLen), OUT(pSignature, pulSignatureLen));
}

static CK_RV kyso_C_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_VerifyInit, VAL(hSession), PTR(pMechanism), VAL(hKey));
}

static CK_RV kyso_C_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                           CK_ULONG ulSignatureLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_Verify, VAL(hSession), BYTES(pData, ulDataLen), BYTES(pSignature, ulSignatureLen));
}

static CK_RV kyso_C_VerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_VerifyUpdate, VAL(hSession), BYTES(pPart, ulPartLen));
}

static CK_RV kyso_C_VerifyFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_VerifyFinal, VAL(hSession), BYTES(pSignature, ulSignatureLen));
}

static CK_RV kyso_C_VerifyRecoverInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_VerifyRecoverInit, VAL(hSession), PTR(pMechanism), VAL(hKey));
}

static CK_RV kyso_C_VerifyRecover(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen,
                                  CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_VerifyRecover, VAL(hSession), BYTES(pSignature, ulSignatureLen), OUT(pData, pulDataLen));
}

static CK_RV kyso_C_DigestEncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,
                                        CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DigestEncryptUpdate, VAL(hSession), BYTES(pPart, ulPartLen),
                    OUT(pEncryptedPart, pulEncryptedPartLen));
}

static CK_RV kyso_C_DecryptDigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
                                        CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DecryptDigestUpdate, VAL(hSession), BYTES(pEncryptedPart, ulEncryptedPartLen),
                    OUT(pPart, pulPartLen));
}

static CK_RV kyso_C_SignEncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,
                                      CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_SignEncryptUpdate, VAL(hSession), BYTES(pPart, ulPartLen),
                    OUT(pEncryptedPart, pulEncryptedPartLen));
}

static CK_RV kyso_C_DecryptVerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
                                        CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DecryptVerifyUpdate, VAL(hSession), BYTES(pEncryptedPart, ulEncryptedPartLen),
                    OUT(pPart, pulPartLen));
}

/* ---- Keys and random numbers ---- */

static CK_RV kyso_C_GenerateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate,
                                CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_GenerateKey, VAL(hSession), PTR(pMechanism), BYTES(pTemplate, ulCount), PTR(phKey));
}

static CK_RV kyso_C_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                    CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount,
                                    CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount,
                                    CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_GenerateKeyPair, VAL(hSession), PTR(pMechanism),
                    BYTES(pPublicKeyTemplate, ulPublicKeyAttributeCount),
                    BYTES(pPrivateKeyTemplate, ulPrivateKeyAttributeCount), PTR(phPublicKey), PTR(phPrivateKey));
}

static CK_RV kyso_C_WrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hWrappingKey,
                            CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_WrapKey, VAL(hSession), PTR(pMechanism), VAL(hWrappingKey), VAL(hKey),
                    OUT(pWrappedKey, pulWrappedKeyLen));
}

static CK_RV kyso_C_UnwrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                              CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen,
                              CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_UnwrapKey, VAL(hSession), PTR(pMechanism), VAL(hUnwrappingKey),
                    BYTES(pWrappedKey, ulWrappedKeyLen), BYTES(pTemplate, ulAttributeCount), PTR(phKey));
}

static CK_RV kyso_C_DeriveKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hBaseKey,
                              CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DeriveKey, VAL(hSession), PTR(pMechanism), VAL(hBaseKey), BYTES(pTemplate, ulAttributeCount),
                    PTR(phKey));
}

static CK_RV kyso_C_SeedRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_SeedRandom, VAL(hSession), BYTES(pSeed, ulSeedLen));
}

static CK_RV kyso_C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR RandomData, CK_ULONG ulRandomLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_GenerateRandom, VAL(hSession), BYTES(RandomData, ulRandomLen));
}

/* ---- Message-based functions (3.0) ---- */

/* Records the mechanism so the per-message parameters of this operation travel in its layout. */
static CK_RV message_init(Client *c, WireCall call, MessageKind kind, CK_SESSION_HANDLE hSession,
                          CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
        WireArg args[] = { VAL(hSession), PTR(pMechanism), VAL(hKey) };
        uint64_t gen = 0;
        CK_RV rv;

        rv = module_call(c, call, args, &gen);
        if (rv == CKR_OK)
                sessions_set_message(hSession, gen, kind,
                                     pMechanism ? pMechanism->mechanism : CK_UNAVAILABLE_INFORMATION);
        return rv;
}

static CK_RV message_final(Client *c, WireCall call, MessageKind kind, CK_SESSION_HANDLE hSession)
{
        WireArg args[] = { VAL(hSession) };
        uint64_t gen = 0;
        CK_RV rv;

        rv = module_call(c, call, args, &gen);
        if (rv == CKR_OK)
                sessions_set_message(hSession, gen, kind, CK_UNAVAILABLE_INFORMATION);
        return rv;
}

#define MECH(kind) sessions_get_message(hSession, client_generation(c), (kind))

static CK_RV kyso_C_MessageEncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
        CLIENT_OR_RETURN(c);
        return message_init(c, KYSO_CALL_C_MessageEncryptInit, MESSAGE_ENCRYPT, hSession, pMechanism, hKey);
}

static CK_RV kyso_C_EncryptMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                   CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pPlaintext,
                                   CK_ULONG ulPlaintextLen, CK_BYTE_PTR pCiphertext, CK_ULONG_PTR pulCiphertextLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_EncryptMessage, VAL(hSession), MSGPARAM(pParameter, ulParameterLen, MECH(MESSAGE_ENCRYPT)),
                    BYTES(pAssociatedData, ulAssociatedDataLen), BYTES(pPlaintext, ulPlaintextLen),
                    OUT(pCiphertext, pulCiphertextLen));
}

static CK_RV kyso_C_EncryptMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                        CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_EncryptMessageBegin, VAL(hSession),
                    MSGPARAM(pParameter, ulParameterLen, MECH(MESSAGE_ENCRYPT)),
                    BYTES(pAssociatedData, ulAssociatedDataLen));
}

static CK_RV kyso_C_EncryptMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                       CK_BYTE_PTR pPlaintextPart, CK_ULONG ulPlaintextPartLen,
                                       CK_BYTE_PTR pCiphertextPart, CK_ULONG_PTR pulCiphertextPartLen, CK_FLAGS flags)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_EncryptMessageNext, VAL(hSession), MSGPARAM(pParameter, ulParameterLen, MECH(MESSAGE_ENCRYPT)),
                    BYTES(pPlaintextPart, ulPlaintextPartLen), OUT(pCiphertextPart, pulCiphertextPartLen), VAL(flags));
}

static CK_RV kyso_C_MessageEncryptFinal(CK_SESSION_HANDLE hSession)
{
        CLIENT_OR_RETURN(c);
        return message_final(c, KYSO_CALL_C_MessageEncryptFinal, MESSAGE_ENCRYPT, hSession);
}

static CK_RV kyso_C_MessageDecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
        CLIENT_OR_RETURN(c);
        return message_init(c, KYSO_CALL_C_MessageDecryptInit, MESSAGE_DECRYPT, hSession, pMechanism, hKey);
}

static CK_RV kyso_C_DecryptMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                   CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pCiphertext,
                                   CK_ULONG ulCiphertextLen, CK_BYTE_PTR pPlaintext, CK_ULONG_PTR pulPlaintextLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DecryptMessage, VAL(hSession), MSGPARAM(pParameter, ulParameterLen, MECH(MESSAGE_DECRYPT)),
                    BYTES(pAssociatedData, ulAssociatedDataLen), BYTES(pCiphertext, ulCiphertextLen),
                    OUT(pPlaintext, pulPlaintextLen));
}

static CK_RV kyso_C_DecryptMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                        CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DecryptMessageBegin, VAL(hSession),
                    MSGPARAM(pParameter, ulParameterLen, MECH(MESSAGE_DECRYPT)),
                    BYTES(pAssociatedData, ulAssociatedDataLen));
}

static CK_RV kyso_C_DecryptMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                       CK_BYTE_PTR pCiphertextPart, CK_ULONG ulCiphertextPartLen,
                                       CK_BYTE_PTR pPlaintextPart, CK_ULONG_PTR pulPlaintextPartLen, CK_FLAGS flags)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_DecryptMessageNext, VAL(hSession), MSGPARAM(pParameter, ulParameterLen, MECH(MESSAGE_DECRYPT)),
                    BYTES(pCiphertextPart, ulCiphertextPartLen), OUT(pPlaintextPart, pulPlaintextPartLen), VAL(flags));
}

static CK_RV kyso_C_MessageDecryptFinal(CK_SESSION_HANDLE hSession)
{
        CLIENT_OR_RETURN(c);
        return message_final(c, KYSO_CALL_C_MessageDecryptFinal, MESSAGE_DECRYPT, hSession);
}

static CK_RV kyso_C_MessageSignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
        CLIENT_OR_RETURN(c);
        return message_init(c, KYSO_CALL_C_MessageSignInit, MESSAGE_SIGN, hSession, pMechanism, hKey);
}

static CK_RV kyso_C_SignMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                                CK_ULONG_PTR pulSignatureLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_SignMessage, VAL(hSession), MSGPARAM(pParameter, ulParameterLen, MECH(MESSAGE_SIGN)),
                    BYTES(pData, ulDataLen), OUT(pSignature, pulSignatureLen));
}

static CK_RV kyso_C_SignMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_SignMessageBegin, VAL(hSession), MSGPARAM(pParameter, ulParameterLen, MECH(MESSAGE_SIGN)));
}

static CK_RV kyso_C_SignMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                    CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                                    CK_ULONG_PTR pulSignatureLen)
{
        CLIENT_OR_RETURN(c);
        /*
         * A NULL pulSignatureLen means "not the last part", but the wire's
         * 'o' always carries a length, so the daemon would take every part
         * for the last. Refuse rather than sign the wrong thing.
         */
        if (!pulSignatureLen)
                return CKR_FUNCTION_NOT_SUPPORTED;
        return CALL(C_SignMessageNext, VAL(hSession), MSGPARAM(pParameter, ulParameterLen, MECH(MESSAGE_SIGN)),
                    BYTES(pData, ulDataLen), OUT(pSignature, pulSignatureLen));
}

static CK_RV kyso_C_MessageSignFinal(CK_SESSION_HANDLE hSession)
{
        CLIENT_OR_RETURN(c);
        return message_final(c, KYSO_CALL_C_MessageSignFinal, MESSAGE_SIGN, hSession);
}

static CK_RV kyso_C_MessageVerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
        CLIENT_OR_RETURN(c);
        return message_init(c, KYSO_CALL_C_MessageVerifyInit, MESSAGE_VERIFY, hSession, pMechanism, hKey);
}

static CK_RV kyso_C_VerifyMessage(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                  CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                                  CK_ULONG ulSignatureLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_VerifyMessage, VAL(hSession), MSGPARAM(pParameter, ulParameterLen, MECH(MESSAGE_VERIFY)),
                    BYTES(pData, ulDataLen), BYTES(pSignature, ulSignatureLen));
}

static CK_RV kyso_C_VerifyMessageBegin(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_VerifyMessageBegin, VAL(hSession), MSGPARAM(pParameter, ulParameterLen, MECH(MESSAGE_VERIFY)));
}

static CK_RV kyso_C_VerifyMessageNext(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                      CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                                      CK_ULONG ulSignatureLen)
{
        CLIENT_OR_RETURN(c);
        return CALL(C_VerifyMessageNext, VAL(hSession), MSGPARAM(pParameter, ulParameterLen, MECH(MESSAGE_VERIFY)),
                    BYTES(pData, ulDataLen), BYTES(pSignature, ulSignatureLen));
}

static CK_RV kyso_C_MessageVerifyFinal(CK_SESSION_HANDLE hSession)
{
        CLIENT_OR_RETURN(c);
        return message_final(c, KYSO_CALL_C_MessageVerifyFinal, MESSAGE_VERIFY, hSession);
}

/* ---- Function lists and interfaces ---- */

static CK_RV kyso_C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount);
static CK_RV kyso_C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                                 CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags);

#define FUNCTIONS_2_40                                                                                     \
        .C_Initialize = kyso_C_Initialize, .C_Finalize = kyso_C_Finalize, .C_GetFunctionList = C_GetFunctionList, \
        .C_GetSlotList = kyso_C_GetSlotList, .C_GetSlotInfo = kyso_C_GetSlotInfo,                          \
        .C_GetTokenInfo = kyso_C_GetTokenInfo, .C_GetMechanismList = kyso_C_GetMechanismList,              \
        .C_GetMechanismInfo = kyso_C_GetMechanismInfo, .C_InitToken = kyso_C_InitToken,                    \
        .C_InitPIN = kyso_C_InitPIN, .C_SetPIN = kyso_C_SetPIN, .C_OpenSession = kyso_C_OpenSession,       \
        .C_CloseSession = kyso_C_CloseSession, .C_CloseAllSessions = kyso_C_CloseAllSessions,              \
        .C_GetSessionInfo = kyso_C_GetSessionInfo, .C_GetOperationState = kyso_C_GetOperationState,        \
        .C_SetOperationState = kyso_C_SetOperationState, .C_Login = kyso_C_Login, .C_Logout = kyso_C_Logout, \
        .C_CreateObject = kyso_C_CreateObject, .C_CopyObject = kyso_C_CopyObject,                          \
        .C_DestroyObject = kyso_C_DestroyObject, .C_GetObjectSize = kyso_C_GetObjectSize,                  \
        .C_GetAttributeValue = kyso_C_GetAttributeValue, .C_SetAttributeValue = kyso_C_SetAttributeValue,  \
        .C_FindObjectsInit = kyso_C_FindObjectsInit, .C_FindObjects = kyso_C_FindObjects,                  \
        .C_FindObjectsFinal = kyso_C_FindObjectsFinal, .C_EncryptInit = kyso_C_EncryptInit,                \
        .C_Encrypt = kyso_C_Encrypt, .C_EncryptUpdate = kyso_C_EncryptUpdate,                              \
        .C_EncryptFinal = kyso_C_EncryptFinal, .C_DecryptInit = kyso_C_DecryptInit,                        \
        .C_Decrypt = kyso_C_Decrypt, .C_DecryptUpdate = kyso_C_DecryptUpdate,                              \
        .C_DecryptFinal = kyso_C_DecryptFinal, .C_DigestInit = kyso_C_DigestInit, .C_Digest = kyso_C_Digest, \
        .C_DigestUpdate = kyso_C_DigestUpdate, .C_DigestKey = kyso_C_DigestKey,                            \
        .C_DigestFinal = kyso_C_DigestFinal, .C_SignInit = kyso_C_SignInit, .C_Sign = kyso_C_Sign,         \
        .C_SignUpdate = kyso_C_SignUpdate, .C_SignFinal = kyso_C_SignFinal,                                \
        .C_SignRecoverInit = kyso_C_SignRecoverInit, .C_SignRecover = kyso_C_SignRecover,                  \
        .C_VerifyInit = kyso_C_VerifyInit, .C_Verify = kyso_C_Verify, .C_VerifyUpdate = kyso_C_VerifyUpdate, \
        .C_VerifyFinal = kyso_C_VerifyFinal, .C_VerifyRecoverInit = kyso_C_VerifyRecoverInit,              \
        .C_VerifyRecover = kyso_C_VerifyRecover, .C_DigestEncryptUpdate = kyso_C_DigestEncryptUpdate,      \
        .C_DecryptDigestUpdate = kyso_C_DecryptDigestUpdate, .C_SignEncryptUpdate = kyso_C_SignEncryptUpdate, \
        .C_DecryptVerifyUpdate = kyso_C_DecryptVerifyUpdate, .C_GenerateKey = kyso_C_GenerateKey,          \
        .C_GenerateKeyPair = kyso_C_GenerateKeyPair, .C_WrapKey = kyso_C_WrapKey,                          \
        .C_UnwrapKey = kyso_C_UnwrapKey, .C_DeriveKey = kyso_C_DeriveKey, .C_SeedRandom = kyso_C_SeedRandom, \
        .C_GenerateRandom = kyso_C_GenerateRandom, .C_GetFunctionStatus = kyso_C_GetFunctionStatus,        \
        .C_CancelFunction = kyso_C_CancelFunction, .C_WaitForSlotEvent = kyso_C_WaitForSlotEvent

static const CK_FUNCTION_LIST function_list_2_40 = {
        .version = { 2, 40 },
        .C_GetInfo = kyso_C_GetInfo,
        FUNCTIONS_2_40,
};

static const CK_FUNCTION_LIST_3_0 function_list_3_0 = {
        .version = { 3, 0 },
        .C_GetInfo = kyso_C_GetInfo_3_0,
        FUNCTIONS_2_40,
        .C_GetInterfaceList = kyso_C_GetInterfaceList,
        .C_GetInterface = kyso_C_GetInterface,
        .C_LoginUser = kyso_C_LoginUser,
        .C_SessionCancel = kyso_C_SessionCancel,
        .C_MessageEncryptInit = kyso_C_MessageEncryptInit,
        .C_EncryptMessage = kyso_C_EncryptMessage,
        .C_EncryptMessageBegin = kyso_C_EncryptMessageBegin,
        .C_EncryptMessageNext = kyso_C_EncryptMessageNext,
        .C_MessageEncryptFinal = kyso_C_MessageEncryptFinal,
        .C_MessageDecryptInit = kyso_C_MessageDecryptInit,
        .C_DecryptMessage = kyso_C_DecryptMessage,
        .C_DecryptMessageBegin = kyso_C_DecryptMessageBegin,
        .C_DecryptMessageNext = kyso_C_DecryptMessageNext,
        .C_MessageDecryptFinal = kyso_C_MessageDecryptFinal,
        .C_MessageSignInit = kyso_C_MessageSignInit,
        .C_SignMessage = kyso_C_SignMessage,
        .C_SignMessageBegin = kyso_C_SignMessageBegin,
        .C_SignMessageNext = kyso_C_SignMessageNext,
        .C_MessageSignFinal = kyso_C_MessageSignFinal,
        .C_MessageVerifyInit = kyso_C_MessageVerifyInit,
        .C_VerifyMessage = kyso_C_VerifyMessage,
        .C_VerifyMessageBegin = kyso_C_VerifyMessageBegin,
        .C_VerifyMessageNext = kyso_C_VerifyMessageNext,
        .C_MessageVerifyFinal = kyso_C_MessageVerifyFinal,
};

static CK_CHAR interface_name[] = "PKCS 11";

/* Preferred first: C_GetInterface without a version picks 3.0. */
static CK_INTERFACE interfaces[] = {
        { interface_name, (CK_VOID_PTR) &function_list_3_0, 0 },
        { interface_name, (CK_VOID_PTR) &function_list_2_40, 0 },
};

_public_ CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
        if (!ppFunctionList)
                return CKR_ARGUMENTS_BAD;
        *ppFunctionList = (CK_FUNCTION_LIST_PTR) &function_list_2_40;
        return CKR_OK;
}

static CK_RV kyso_C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount)
{
        if (!pulCount)
                return CKR_ARGUMENTS_BAD;
        if (!pInterfacesList) {
                *pulCount = ELEMENTSOF(interfaces);
                return CKR_OK;
        }
        if (*pulCount < ELEMENTSOF(interfaces)) {
                *pulCount = ELEMENTSOF(interfaces);
                return CKR_BUFFER_TOO_SMALL;
        }
        memcpy(pInterfacesList, interfaces, sizeof(interfaces));
        *pulCount = ELEMENTSOF(interfaces);
        return CKR_OK;
}

static CK_RV kyso_C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                                 CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags)
{
        if (!ppInterface)
                return CKR_ARGUMENTS_BAD;

        for (size_t i = 0; i < ELEMENTSOF(interfaces); i++) {
                const CK_VERSION *v = interfaces[i].pFunctionList;

                if (pInterfaceName && !streq((const char *) pInterfaceName, (const char *) interfaces[i].pInterfaceName))
                        continue;
                if (pVersion && (pVersion->major != v->major || pVersion->minor != v->minor))
                        continue;
                if ((interfaces[i].flags & flags) != flags)
                        continue;
                *ppInterface = &interfaces[i];
                return CKR_OK;
        }
        return CKR_ARGUMENTS_BAD;
}

_public_ CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount)
{
        return kyso_C_GetInterfaceList(pInterfacesList, pulCount);
}

_public_ CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion, CK_INTERFACE_PTR_PTR ppInterface,
                     CK_FLAGS flags)
{
        return kyso_C_GetInterface(pInterfaceName, pVersion, ppInterface, flags);
}
