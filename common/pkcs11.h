/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The PKCS#11 definitions kyso builds against: p11-kit's 2.40 header, plus the
 * PKCS#11 3.0 additions it lacks (interfaces, C_LoginUser, C_SessionCancel,
 * the message-based functions and the parameter structures of 3.0
 * mechanisms). Newer p11-kit headers define these themselves; the guard
 * below then keeps theirs.
 */
#pragma once

#include <p11-kit/pkcs11.h>

#ifndef CKF_INTERFACE_FORK_SAFE

#define CKF_INTERFACE_FORK_SAFE                 0x00000001UL

#define CKR_OPERATION_CANCEL_FAILED             0x00000202UL
#ifndef CKR_ACTION_PROHIBITED
#define CKR_ACTION_PROHIBITED                   0x0000001BUL
#endif
#define CKR_TOKEN_RESOURCE_EXCEEDED             0x00000201UL

#define CKF_END_OF_MESSAGE                      0x00000001UL
#define CKF_MESSAGE_ENCRYPT                     0x00000002UL
#define CKF_MESSAGE_DECRYPT                     0x00000004UL
#define CKF_MESSAGE_SIGN                        0x00000008UL
#define CKF_MESSAGE_VERIFY                      0x00000010UL
#define CKF_MULTI_MESSAGE                       0x00000020UL
#define CKF_FIND_OBJECTS                        0x00000040UL

#ifndef CKM_CHACHA20
#define CKM_CHACHA20                            0x00001226UL
#endif
#ifndef CKM_CHACHA20_POLY1305
#define CKM_CHACHA20_POLY1305                   0x00004021UL
#endif
#ifndef CKM_SALSA20_POLY1305
#define CKM_SALSA20_POLY1305                    0x00004022UL
#endif

typedef CK_ULONG CK_GENERATOR_FUNCTION;

typedef struct CK_INTERFACE {
        CK_CHAR *pInterfaceName;
        CK_VOID_PTR pFunctionList;
        CK_FLAGS flags;
} CK_INTERFACE;
typedef CK_INTERFACE *CK_INTERFACE_PTR;
typedef CK_INTERFACE_PTR *CK_INTERFACE_PTR_PTR;

typedef struct CK_EDDSA_PARAMS {
        CK_BBOOL phFlag;
        CK_ULONG ulContextDataLen;
        CK_BYTE_PTR pContextData;
} CK_EDDSA_PARAMS;

typedef struct CK_CCM_PARAMS {
        CK_ULONG ulDataLen;
        CK_BYTE_PTR pNonce;
        CK_ULONG ulNonceLen;
        CK_BYTE_PTR pAAD;
        CK_ULONG ulAADLen;
        CK_ULONG ulMACLen;
} CK_CCM_PARAMS;

typedef struct CK_CHACHA20_PARAMS {
        CK_BYTE_PTR pBlockCounter;
        CK_ULONG blockCounterBits;
        CK_BYTE_PTR pNonce;
        CK_ULONG ulNonceBits;
} CK_CHACHA20_PARAMS;

typedef struct CK_SALSA20_CHACHA20_POLY1305_PARAMS {
        CK_BYTE_PTR pNonce;
        CK_ULONG ulNonceLen;
        CK_BYTE_PTR pAAD;
        CK_ULONG ulAADLen;
} CK_SALSA20_CHACHA20_POLY1305_PARAMS;

typedef struct CK_GCM_MESSAGE_PARAMS {
        CK_BYTE_PTR pIv;
        CK_ULONG ulIvLen;
        CK_ULONG ulIvFixedBits;
        CK_GENERATOR_FUNCTION ivGenerator;
        CK_BYTE_PTR pTag;
        CK_ULONG ulTagBits;
} CK_GCM_MESSAGE_PARAMS;

typedef struct CK_CCM_MESSAGE_PARAMS {
        CK_ULONG ulDataLen;
        CK_BYTE_PTR pNonce;
        CK_ULONG ulNonceLen;
        CK_ULONG ulNonceFixedBits;
        CK_GENERATOR_FUNCTION nonceGenerator;
        CK_BYTE_PTR pMAC;
        CK_ULONG ulMACLen;
} CK_CCM_MESSAGE_PARAMS;

typedef struct CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS {
        CK_BYTE_PTR pNonce;
        CK_ULONG ulNonceLen;
        CK_BYTE_PTR pTag;
} CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS;

typedef CK_RV (*CK_C_GetInterfaceList)(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount);
typedef CK_RV (*CK_C_GetInterface)(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                                   CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags);
typedef CK_RV (*CK_C_LoginUser)(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
                                CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen);
typedef CK_RV (*CK_C_SessionCancel)(CK_SESSION_HANDLE hSession, CK_FLAGS flags);
typedef CK_RV (*CK_C_MessageInit)(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey);
typedef CK_RV (*CK_C_MessageCrypt)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                   CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pIn,
                                   CK_ULONG ulInLen, CK_BYTE_PTR pOut, CK_ULONG_PTR pulOutLen);
typedef CK_RV (*CK_C_MessageCryptBegin)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                        CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen);
typedef CK_RV (*CK_C_MessageCryptNext)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                       CK_BYTE_PTR pIn, CK_ULONG ulInLen, CK_BYTE_PTR pOut, CK_ULONG_PTR pulOutLen,
                                       CK_FLAGS flags);
typedef CK_RV (*CK_C_MessageFinal)(CK_SESSION_HANDLE hSession);
typedef CK_RV (*CK_C_SignMessage)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                  CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                                  CK_ULONG_PTR pulSignatureLen);
typedef CK_RV (*CK_C_MessageSignVerifyBegin)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                             CK_ULONG ulParameterLen);
typedef CK_RV (*CK_C_VerifyMessage)(CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter, CK_ULONG ulParameterLen,
                                    CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                                    CK_ULONG ulSignatureLen);

/* The 3.0 function list: the 2.40 list followed by the 24 functions 3.0 added, in the specification's order. */
typedef struct CK_FUNCTION_LIST_3_0 {
        CK_VERSION version;
        CK_C_Initialize C_Initialize;
        CK_C_Finalize C_Finalize;
        CK_C_GetInfo C_GetInfo;
        CK_C_GetFunctionList C_GetFunctionList;
        CK_C_GetSlotList C_GetSlotList;
        CK_C_GetSlotInfo C_GetSlotInfo;
        CK_C_GetTokenInfo C_GetTokenInfo;
        CK_C_GetMechanismList C_GetMechanismList;
        CK_C_GetMechanismInfo C_GetMechanismInfo;
        CK_C_InitToken C_InitToken;
        CK_C_InitPIN C_InitPIN;
        CK_C_SetPIN C_SetPIN;
        CK_C_OpenSession C_OpenSession;
        CK_C_CloseSession C_CloseSession;
        CK_C_CloseAllSessions C_CloseAllSessions;
        CK_C_GetSessionInfo C_GetSessionInfo;
        CK_C_GetOperationState C_GetOperationState;
        CK_C_SetOperationState C_SetOperationState;
        CK_C_Login C_Login;
        CK_C_Logout C_Logout;
        CK_C_CreateObject C_CreateObject;
        CK_C_CopyObject C_CopyObject;
        CK_C_DestroyObject C_DestroyObject;
        CK_C_GetObjectSize C_GetObjectSize;
        CK_C_GetAttributeValue C_GetAttributeValue;
        CK_C_SetAttributeValue C_SetAttributeValue;
        CK_C_FindObjectsInit C_FindObjectsInit;
        CK_C_FindObjects C_FindObjects;
        CK_C_FindObjectsFinal C_FindObjectsFinal;
        CK_C_EncryptInit C_EncryptInit;
        CK_C_Encrypt C_Encrypt;
        CK_C_EncryptUpdate C_EncryptUpdate;
        CK_C_EncryptFinal C_EncryptFinal;
        CK_C_DecryptInit C_DecryptInit;
        CK_C_Decrypt C_Decrypt;
        CK_C_DecryptUpdate C_DecryptUpdate;
        CK_C_DecryptFinal C_DecryptFinal;
        CK_C_DigestInit C_DigestInit;
        CK_C_Digest C_Digest;
        CK_C_DigestUpdate C_DigestUpdate;
        CK_C_DigestKey C_DigestKey;
        CK_C_DigestFinal C_DigestFinal;
        CK_C_SignInit C_SignInit;
        CK_C_Sign C_Sign;
        CK_C_SignUpdate C_SignUpdate;
        CK_C_SignFinal C_SignFinal;
        CK_C_SignRecoverInit C_SignRecoverInit;
        CK_C_SignRecover C_SignRecover;
        CK_C_VerifyInit C_VerifyInit;
        CK_C_Verify C_Verify;
        CK_C_VerifyUpdate C_VerifyUpdate;
        CK_C_VerifyFinal C_VerifyFinal;
        CK_C_VerifyRecoverInit C_VerifyRecoverInit;
        CK_C_VerifyRecover C_VerifyRecover;
        CK_C_DigestEncryptUpdate C_DigestEncryptUpdate;
        CK_C_DecryptDigestUpdate C_DecryptDigestUpdate;
        CK_C_SignEncryptUpdate C_SignEncryptUpdate;
        CK_C_DecryptVerifyUpdate C_DecryptVerifyUpdate;
        CK_C_GenerateKey C_GenerateKey;
        CK_C_GenerateKeyPair C_GenerateKeyPair;
        CK_C_WrapKey C_WrapKey;
        CK_C_UnwrapKey C_UnwrapKey;
        CK_C_DeriveKey C_DeriveKey;
        CK_C_SeedRandom C_SeedRandom;
        CK_C_GenerateRandom C_GenerateRandom;
        CK_C_GetFunctionStatus C_GetFunctionStatus;
        CK_C_CancelFunction C_CancelFunction;
        CK_C_WaitForSlotEvent C_WaitForSlotEvent;
        CK_C_GetInterfaceList C_GetInterfaceList;
        CK_C_GetInterface C_GetInterface;
        CK_C_LoginUser C_LoginUser;
        CK_C_SessionCancel C_SessionCancel;
        CK_C_MessageInit C_MessageEncryptInit;
        CK_C_MessageCrypt C_EncryptMessage;
        CK_C_MessageCryptBegin C_EncryptMessageBegin;
        CK_C_MessageCryptNext C_EncryptMessageNext;
        CK_C_MessageFinal C_MessageEncryptFinal;
        CK_C_MessageInit C_MessageDecryptInit;
        CK_C_MessageCrypt C_DecryptMessage;
        CK_C_MessageCryptBegin C_DecryptMessageBegin;
        CK_C_MessageCryptNext C_DecryptMessageNext;
        CK_C_MessageFinal C_MessageDecryptFinal;
        CK_C_MessageInit C_MessageSignInit;
        CK_C_SignMessage C_SignMessage;
        CK_C_MessageSignVerifyBegin C_SignMessageBegin;
        CK_C_SignMessage C_SignMessageNext;
        CK_C_MessageFinal C_MessageSignFinal;
        CK_C_MessageInit C_MessageVerifyInit;
        CK_C_VerifyMessage C_VerifyMessage;
        CK_C_MessageSignVerifyBegin C_VerifyMessageBegin;
        CK_C_VerifyMessage C_VerifyMessageNext;
        CK_C_MessageFinal C_MessageVerifyFinal;
} CK_FUNCTION_LIST_3_0;
typedef CK_FUNCTION_LIST_3_0 *CK_FUNCTION_LIST_3_0_PTR;

#endif /* CKF_INTERFACE_FORK_SAFE */
