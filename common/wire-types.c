/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the wire codec knows about PKCS#11 types, as tables: each call's
 * signature, which return values carry outputs, how each attribute type
 * travels, which parameter structure a mechanism or a message takes, and
 * the field lists of those structures and of the info structures. Nothing
 * here encodes or decodes; wire.c and wire-template.c read these tables.
 */
#include <string.h>

#include "macro.h"
#include "wire-internal.h"
#include "wire.h"

/*
 * Constants PKCS#11 3.0 defines that p11-kit's 2.40 header lacks (values from the OASIS
 * pkcs11t.h, cross-checked with NSS's copy).
 */
#ifndef CKA_PROFILE_ID
#define CKA_PROFILE_ID 0x00000601UL
#endif
#ifndef CKM_SHA3_256_RSA_PKCS_PSS
#define CKM_SHA3_256_RSA_PKCS_PSS 0x00000063UL
#endif
#ifndef CKM_SHA3_384_RSA_PKCS_PSS
#define CKM_SHA3_384_RSA_PKCS_PSS 0x00000064UL
#endif
#ifndef CKM_SHA3_512_RSA_PKCS_PSS
#define CKM_SHA3_512_RSA_PKCS_PSS 0x00000065UL
#endif
#ifndef CKM_SHA3_224_RSA_PKCS_PSS
#define CKM_SHA3_224_RSA_PKCS_PSS 0x00000067UL
#endif
#ifndef CKM_SHA3_256_HMAC_GENERAL
#define CKM_SHA3_256_HMAC_GENERAL 0x000002B2UL
#endif
#ifndef CKM_SHA3_224_HMAC_GENERAL
#define CKM_SHA3_224_HMAC_GENERAL 0x000002B7UL
#endif
#ifndef CKM_SHA3_384_HMAC_GENERAL
#define CKM_SHA3_384_HMAC_GENERAL 0x000002C2UL
#endif
#ifndef CKM_SHA3_512_HMAC_GENERAL
#define CKM_SHA3_512_HMAC_GENERAL 0x000002D2UL
#endif
/*
 * common/pkcs11.h defines CKM_SALSA20_POLY1305 as 0x4020, which is CKM_SALSA20 (whose parameter is a
 * different structure); the 3.0 value is 0x4022. Use our own name so the table is right either way.
 */
#define WIRE_CKM_SALSA20_POLY1305 0x00004022UL

#define POLY1305_TAG_SIZE 16U

static const WireCallInfo calls[_KYSO_CALL_MAX] = {
#define X(n, sig) [KYSO_CALL_##n] = { .name = #n, .signature = sig },
        KYSO_WIRE_CALLS(X)
#undef X
};

const WireCallInfo *wire_call_info(WireCall call)
{
        if (call < 0 || call >= _KYSO_CALL_MAX)
                return NULL;
        return &calls[call];
}

WireCall wire_call_from_name(const char *name)
{
        if (!name)
                return _KYSO_CALL_INVALID;
        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                if (streq(calls[i].name, name))
                        return (WireCall) i;
        return _KYSO_CALL_INVALID;
}

static bool signature_has(const char *sig, const char *chars)
{
        return strpbrk(sig, chars) != NULL;
}

bool wire_rv_has_outputs(WireCall call, CK_RV rv)
{
        const WireCallInfo *info = wire_call_info(call);

        if (!info)
                return false;
        /* A call without outputs has nothing to carry, so even CKR_OK may come as an error reply. */
        if (!signature_has(info->signature, "orAHlUnsVITXMp"))
                return false;
        switch (rv) {
        case CKR_OK:
                return true;
        case CKR_BUFFER_TOO_SMALL:
                return signature_has(info->signature, "olA");
        case CKR_ATTRIBUTE_SENSITIVE:
        case CKR_ATTRIBUTE_TYPE_INVALID:
                return signature_has(info->signature, "A");
        default:
                return false;
        }
}

WireAttrKind wire_attribute_kind(CK_ATTRIBUTE_TYPE type)
{
        switch (type) {
        case CKA_CLASS:
        case CKA_CERTIFICATE_TYPE:
        case CKA_CERTIFICATE_CATEGORY:
        case CKA_JAVA_MIDP_SECURITY_DOMAIN:
        case CKA_NAME_HASH_ALGORITHM:
        case CKA_KEY_TYPE:
        case CKA_KEY_GEN_MECHANISM:
        case CKA_MODULUS_BITS:
        case CKA_PRIME_BITS:
        case CKA_SUB_PRIME_BITS:
        case CKA_VALUE_BITS:
        case CKA_VALUE_LEN:
        case CKA_HW_FEATURE_TYPE:
        case CKA_PIXEL_X:
        case CKA_PIXEL_Y:
        case CKA_RESOLUTION:
        case CKA_CHAR_ROWS:
        case CKA_CHAR_COLUMNS:
        case CKA_BITS_PER_PIXEL:
        case CKA_MECHANISM_TYPE:
        case CKA_OTP_FORMAT:
        case CKA_OTP_LENGTH:
        case CKA_OTP_TIME_INTERVAL:
        case CKA_OTP_CHALLENGE_REQUIREMENT:
        case CKA_OTP_TIME_REQUIREMENT:
        case CKA_OTP_COUNTER_REQUIREMENT:
        case CKA_OTP_PIN_REQUIREMENT:
        case CKA_PROFILE_ID:
        case CKA_ALLOWED_MECHANISMS:
                return WIRE_ATTR_ULONGS;
        case CKA_WRAP_TEMPLATE:
        case CKA_UNWRAP_TEMPLATE:
        case CKA_DERIVE_TEMPLATE:
                return WIRE_ATTR_TEMPLATE;
        default:
                return WIRE_ATTR_BYTES;
        }
}

WireParam wire_mechanism_param(CK_MECHANISM_TYPE mechanism)
{
        switch (mechanism) {
        case CKM_RSA_PKCS_PSS:
        case CKM_SHA1_RSA_PKCS_PSS:
        case CKM_SHA224_RSA_PKCS_PSS:
        case CKM_SHA256_RSA_PKCS_PSS:
        case CKM_SHA384_RSA_PKCS_PSS:
        case CKM_SHA512_RSA_PKCS_PSS:
        case CKM_SHA3_224_RSA_PKCS_PSS:
        case CKM_SHA3_256_RSA_PKCS_PSS:
        case CKM_SHA3_384_RSA_PKCS_PSS:
        case CKM_SHA3_512_RSA_PKCS_PSS:
                return WIRE_PARAM_RSA_PKCS_PSS;
        case CKM_RSA_PKCS_OAEP:
                return WIRE_PARAM_RSA_PKCS_OAEP;
        case CKM_AES_CTR:
                return WIRE_PARAM_AES_CTR;
        case CKM_AES_GCM:
                return WIRE_PARAM_GCM;
        case CKM_AES_CCM:
                return WIRE_PARAM_CCM;
        case CKM_ECDH1_DERIVE:
        case CKM_ECDH1_COFACTOR_DERIVE:
                return WIRE_PARAM_ECDH1_DERIVE;
        case CKM_DES_ECB_ENCRYPT_DATA:
        case CKM_DES3_ECB_ENCRYPT_DATA:
        case CKM_AES_ECB_ENCRYPT_DATA:
        case CKM_CONCATENATE_BASE_AND_DATA:
        case CKM_CONCATENATE_DATA_AND_BASE:
        case CKM_XOR_BASE_AND_DATA:
                return WIRE_PARAM_KEY_DERIVATION_STRING;
        case CKM_DES_CBC_ENCRYPT_DATA:
        case CKM_DES3_CBC_ENCRYPT_DATA:
                return WIRE_PARAM_DES_CBC_ENCRYPT_DATA;
        case CKM_AES_CBC_ENCRYPT_DATA:
                return WIRE_PARAM_AES_CBC_ENCRYPT_DATA;
        case CKM_MD5_HMAC_GENERAL:
        case CKM_SHA_1_HMAC_GENERAL:
        case CKM_SHA224_HMAC_GENERAL:
        case CKM_SHA256_HMAC_GENERAL:
        case CKM_SHA384_HMAC_GENERAL:
        case CKM_SHA512_HMAC_GENERAL:
        case CKM_SHA3_224_HMAC_GENERAL:
        case CKM_SHA3_256_HMAC_GENERAL:
        case CKM_SHA3_384_HMAC_GENERAL:
        case CKM_SHA3_512_HMAC_GENERAL:
        case CKM_AES_MAC_GENERAL:
        case CKM_AES_CMAC_GENERAL:
        case CKM_DES3_MAC_GENERAL:
        case CKM_DES3_CMAC_GENERAL:
        case CKM_EXTRACT_KEY_FROM_KEY:
                return WIRE_PARAM_ULONG;
        case CKM_CONCATENATE_BASE_AND_KEY:
                return WIRE_PARAM_OBJECT_HANDLE;
        case CKM_EDDSA:
                return WIRE_PARAM_EDDSA;
        case CKM_CHACHA20:
                return WIRE_PARAM_CHACHA20;
        case CKM_CHACHA20_POLY1305:
        case WIRE_CKM_SALSA20_POLY1305:
                return WIRE_PARAM_SALSA20_CHACHA20_POLY1305;
        default:
                return WIRE_PARAM_BYTES;
        }
}

WireParam wire_message_param(CK_MECHANISM_TYPE mechanism)
{
        switch (mechanism) {
        case CKM_AES_GCM:
                return WIRE_PARAM_GCM_MESSAGE;
        case CKM_AES_CCM:
                return WIRE_PARAM_CCM_MESSAGE;
        case CKM_CHACHA20_POLY1305:
        case WIRE_CKM_SALSA20_POLY1305:
                return WIRE_PARAM_CHACHA_POLY_MESSAGE;
        default:
                return WIRE_PARAM_BYTES;
        }
}

#define F_UL(s, m) { FIELD_ULONG, offsetof(s, m), 0 }
#define F_BOOL(s, m) { FIELD_BBOOL, offsetof(s, m), 0 }
#define F_FIX(s, m) { FIELD_FIXED, offsetof(s, m), sizeof(((s *) 0)->m) }
#define F_PLEN(s, m, l) { FIELD_PTR_LEN, offsetof(s, m), offsetof(s, l) }
#define F_PBITS(s, m, b) { FIELD_PTR_BITS, offsetof(s, m), offsetof(s, b) }
#define F_PSIZE(s, m, n) { FIELD_PTR_SIZE, offsetof(s, m), n }
#define LAYOUT(s, ...)                                                                                     \
        {                                                                                                  \
                .size = sizeof(s), .n_fields = ELEMENTSOF(((Field[]) { __VA_ARGS__ })),                    \
                .fields = { __VA_ARGS__ },                                                                 \
        }

const ParamLayout wire_layouts[_WIRE_PARAM_MAX] = {
        [WIRE_PARAM_ULONG] = { .size = sizeof(CK_ULONG), .n_fields = 1, .fields = { { FIELD_ULONG, 0, 0 } } },
        [WIRE_PARAM_OBJECT_HANDLE] = { .size = sizeof(CK_OBJECT_HANDLE), .n_fields = 1,
                                       .fields = { { FIELD_ULONG, 0, 0 } } },
        [WIRE_PARAM_RSA_PKCS_PSS] = LAYOUT(CK_RSA_PKCS_PSS_PARAMS, F_UL(CK_RSA_PKCS_PSS_PARAMS, hashAlg),
                                           F_UL(CK_RSA_PKCS_PSS_PARAMS, mgf), F_UL(CK_RSA_PKCS_PSS_PARAMS, sLen)),
        [WIRE_PARAM_RSA_PKCS_OAEP] = LAYOUT(CK_RSA_PKCS_OAEP_PARAMS, F_UL(CK_RSA_PKCS_OAEP_PARAMS, hashAlg),
                                            F_UL(CK_RSA_PKCS_OAEP_PARAMS, mgf),
                                            F_UL(CK_RSA_PKCS_OAEP_PARAMS, source),
                                            F_PLEN(CK_RSA_PKCS_OAEP_PARAMS, pSourceData, ulSourceDataLen)),
        [WIRE_PARAM_AES_CTR] = LAYOUT(CK_AES_CTR_PARAMS, F_UL(CK_AES_CTR_PARAMS, ulCounterBits),
                                      F_FIX(CK_AES_CTR_PARAMS, cb)),
        [WIRE_PARAM_GCM] = LAYOUT(CK_GCM_PARAMS, F_PLEN(CK_GCM_PARAMS, pIv, ulIvLen), F_UL(CK_GCM_PARAMS, ulIvBits),
                                  F_PLEN(CK_GCM_PARAMS, pAAD, ulAADLen), F_UL(CK_GCM_PARAMS, ulTagBits)),
        [WIRE_PARAM_CCM] = LAYOUT(CK_CCM_PARAMS, F_UL(CK_CCM_PARAMS, ulDataLen),
                                  F_PLEN(CK_CCM_PARAMS, pNonce, ulNonceLen), F_PLEN(CK_CCM_PARAMS, pAAD, ulAADLen),
                                  F_UL(CK_CCM_PARAMS, ulMACLen)),
        [WIRE_PARAM_ECDH1_DERIVE] = LAYOUT(CK_ECDH1_DERIVE_PARAMS, F_UL(CK_ECDH1_DERIVE_PARAMS, kdf),
                                           F_PLEN(CK_ECDH1_DERIVE_PARAMS, pSharedData, ulSharedDataLen),
                                           F_PLEN(CK_ECDH1_DERIVE_PARAMS, pPublicData, ulPublicDataLen)),
        [WIRE_PARAM_KEY_DERIVATION_STRING] = LAYOUT(CK_KEY_DERIVATION_STRING_DATA,
                                                    F_PLEN(CK_KEY_DERIVATION_STRING_DATA, pData, ulLen)),
        [WIRE_PARAM_DES_CBC_ENCRYPT_DATA] = LAYOUT(CK_DES_CBC_ENCRYPT_DATA_PARAMS,
                                                   F_FIX(CK_DES_CBC_ENCRYPT_DATA_PARAMS, iv),
                                                   F_PLEN(CK_DES_CBC_ENCRYPT_DATA_PARAMS, pData, length)),
        [WIRE_PARAM_AES_CBC_ENCRYPT_DATA] = LAYOUT(CK_AES_CBC_ENCRYPT_DATA_PARAMS,
                                                   F_FIX(CK_AES_CBC_ENCRYPT_DATA_PARAMS, iv),
                                                   F_PLEN(CK_AES_CBC_ENCRYPT_DATA_PARAMS, pData, length)),
        [WIRE_PARAM_EDDSA] = LAYOUT(CK_EDDSA_PARAMS, F_BOOL(CK_EDDSA_PARAMS, phFlag),
                                    F_PLEN(CK_EDDSA_PARAMS, pContextData, ulContextDataLen)),
        [WIRE_PARAM_CHACHA20] = LAYOUT(CK_CHACHA20_PARAMS, F_UL(CK_CHACHA20_PARAMS, blockCounterBits),
                                       F_PBITS(CK_CHACHA20_PARAMS, pBlockCounter, blockCounterBits),
                                       F_UL(CK_CHACHA20_PARAMS, ulNonceBits),
                                       F_PBITS(CK_CHACHA20_PARAMS, pNonce, ulNonceBits)),
        [WIRE_PARAM_SALSA20_CHACHA20_POLY1305] = LAYOUT(
                CK_SALSA20_CHACHA20_POLY1305_PARAMS,
                F_PLEN(CK_SALSA20_CHACHA20_POLY1305_PARAMS, pNonce, ulNonceLen),
                F_PLEN(CK_SALSA20_CHACHA20_POLY1305_PARAMS, pAAD, ulAADLen)),
        [WIRE_PARAM_GCM_MESSAGE] = LAYOUT(CK_GCM_MESSAGE_PARAMS, F_PLEN(CK_GCM_MESSAGE_PARAMS, pIv, ulIvLen),
                                          F_UL(CK_GCM_MESSAGE_PARAMS, ulIvFixedBits),
                                          F_UL(CK_GCM_MESSAGE_PARAMS, ivGenerator),
                                          F_UL(CK_GCM_MESSAGE_PARAMS, ulTagBits),
                                          F_PBITS(CK_GCM_MESSAGE_PARAMS, pTag, ulTagBits)),
        [WIRE_PARAM_CCM_MESSAGE] = LAYOUT(CK_CCM_MESSAGE_PARAMS, F_UL(CK_CCM_MESSAGE_PARAMS, ulDataLen),
                                          F_PLEN(CK_CCM_MESSAGE_PARAMS, pNonce, ulNonceLen),
                                          F_UL(CK_CCM_MESSAGE_PARAMS, ulNonceFixedBits),
                                          F_UL(CK_CCM_MESSAGE_PARAMS, nonceGenerator),
                                          F_PLEN(CK_CCM_MESSAGE_PARAMS, pMAC, ulMACLen)),
        [WIRE_PARAM_CHACHA_POLY_MESSAGE] = LAYOUT(
                CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS,
                F_PLEN(CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS, pNonce, ulNonceLen),
                F_PSIZE(CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS, pTag, POLY1305_TAG_SIZE)),
};

size_t wire_param_struct_size(WireParam kind)
{
        if (kind <= WIRE_PARAM_BYTES || kind >= _WIRE_PARAM_MAX)
                return 0;
        return wire_layouts[kind].size;
}

/* The output structures of the 'V', 'I', 'T', 'X' and 'M' characters, as field lists too. */
static const ParamLayout info_layout = LAYOUT(CK_INFO, F_FIX(CK_INFO, cryptokiVersion), F_FIX(CK_INFO, manufacturerID),
                                              F_UL(CK_INFO, flags), F_FIX(CK_INFO, libraryDescription),
                                              F_FIX(CK_INFO, libraryVersion));
static const ParamLayout slot_info_layout = LAYOUT(CK_SLOT_INFO, F_FIX(CK_SLOT_INFO, slotDescription),
                                                   F_FIX(CK_SLOT_INFO, manufacturerID), F_UL(CK_SLOT_INFO, flags),
                                                   F_FIX(CK_SLOT_INFO, hardwareVersion),
                                                   F_FIX(CK_SLOT_INFO, firmwareVersion));
static const ParamLayout token_info_layout = LAYOUT(
        CK_TOKEN_INFO, F_FIX(CK_TOKEN_INFO, label), F_FIX(CK_TOKEN_INFO, manufacturerID), F_FIX(CK_TOKEN_INFO, model),
        F_FIX(CK_TOKEN_INFO, serialNumber), F_UL(CK_TOKEN_INFO, flags), F_UL(CK_TOKEN_INFO, ulMaxSessionCount),
        F_UL(CK_TOKEN_INFO, ulSessionCount), F_UL(CK_TOKEN_INFO, ulMaxRwSessionCount),
        F_UL(CK_TOKEN_INFO, ulRwSessionCount), F_UL(CK_TOKEN_INFO, ulMaxPinLen), F_UL(CK_TOKEN_INFO, ulMinPinLen),
        F_UL(CK_TOKEN_INFO, ulTotalPublicMemory), F_UL(CK_TOKEN_INFO, ulFreePublicMemory),
        F_UL(CK_TOKEN_INFO, ulTotalPrivateMemory), F_UL(CK_TOKEN_INFO, ulFreePrivateMemory),
        F_FIX(CK_TOKEN_INFO, hardwareVersion), F_FIX(CK_TOKEN_INFO, firmwareVersion), F_FIX(CK_TOKEN_INFO, utcTime));
static const ParamLayout session_info_layout = LAYOUT(CK_SESSION_INFO, F_UL(CK_SESSION_INFO, slotID),
                                                      F_UL(CK_SESSION_INFO, state), F_UL(CK_SESSION_INFO, flags),
                                                      F_UL(CK_SESSION_INFO, ulDeviceError));
static const ParamLayout mechanism_info_layout = LAYOUT(CK_MECHANISM_INFO, F_UL(CK_MECHANISM_INFO, ulMinKeySize),
                                                        F_UL(CK_MECHANISM_INFO, ulMaxKeySize),
                                                        F_UL(CK_MECHANISM_INFO, flags));

const ParamLayout *wire_output_layout(char c)
{
        switch (c) {
        case 'V':
                return &info_layout;
        case 'I':
                return &slot_info_layout;
        case 'T':
                return &token_info_layout;
        case 'X':
                return &session_info_layout;
        case 'M':
                return &mechanism_info_layout;
        default:
                return NULL;
        }
}
