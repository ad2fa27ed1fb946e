/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <limits.h>
#include <string.h>

#include "macro.h"
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

/* u32 serial, u32 call, u64 rv, u8 outputs-present */
#define REPLY_HEADER_SIZE 17U
/* The smallest attribute entry in a request (u64 type, u8 kind, u8 flag, u64 length): bounds counts early. */
#define ATTR_ENTRY_MIN 18U
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

/*
 * Parameter structures, described as field lists so that one loop per direction handles them
 * all. A pointer field travels as u8 present, u64 length, bytes; its length comes from another
 * field (a byte count, or a bit count encoded before it) or is fixed by the mechanism.
 */
typedef enum FieldType {
        FIELD_ULONG,
        FIELD_BBOOL,
        FIELD_FIXED,    /* aux = size of an inline byte array */
        FIELD_PTR_LEN,  /* aux = offset of the CK_ULONG byte count */
        FIELD_PTR_BITS, /* aux = offset of the CK_ULONG bit count, an earlier FIELD_ULONG */
        FIELD_PTR_SIZE, /* aux = fixed byte count */
} FieldType;

typedef struct Field {
        uint8_t type;
        uint16_t off;
        uint16_t aux;
} Field;

#define PARAM_FIELDS_MAX 18 /* CK_TOKEN_INFO has the most */

typedef struct ParamLayout {
        size_t size;
        unsigned n_fields;
        Field fields[PARAM_FIELDS_MAX];
} ParamLayout;

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

static const ParamLayout layouts[_WIRE_PARAM_MAX] = {
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

static bool param_is_struct(WireParam kind)
{
        return kind > WIRE_PARAM_BYTES && kind < _WIRE_PARAM_MAX;
}

static bool param_is_message(WireParam kind)
{
        return kind == WIRE_PARAM_GCM_MESSAGE || kind == WIRE_PARAM_CCM_MESSAGE ||
               kind == WIRE_PARAM_CHACHA_POLY_MESSAGE;
}

/* The output structures of the 'V', 'I', 'T', 'X' and 'M' characters, as field lists too. */
size_t wire_param_struct_size(WireParam kind)
{
        if (kind <= WIRE_PARAM_BYTES || kind >= _WIRE_PARAM_MAX)
                return 0;
        return layouts[kind].size;
}

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

static const ParamLayout *output_layout(char c)
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

/* ---- integers ---- */

static uint64_t ulong_to_u64(CK_ULONG v)
{
        return v == CK_UNAVAILABLE_INFORMATION ? UINT64_MAX : (uint64_t) v;
}

static int u64_to_ulong(uint64_t v, CK_ULONG *ret)
{
        if (v == UINT64_MAX) {
                *ret = CK_UNAVAILABLE_INFORMATION;
                return 0;
        }
        if (v > ULONG_MAX)
                return -EBADMSG;
        *ret = (CK_ULONG) v;
        return 0;
}

static uint64_t bits_to_bytes(CK_ULONG bits)
{
        return bits / 8 + (bits % 8 != 0);
}

static size_t attr_unit(WireAttrKind kind)
{
        switch (kind) {
        case WIRE_ATTR_ULONGS:
                return sizeof(CK_ULONG);
        case WIRE_ATTR_TEMPLATE:
                return sizeof(CK_ATTRIBUTE);
        default:
                return 1;
        }
}

/* Fields are reached through memcpy: the caller's structures need not be aligned for us. */
static CK_ULONG field_ulong(const void *s, size_t off)
{
        CK_ULONG v;

        memcpy(&v, (const uint8_t *) s + off, sizeof(v));
        return v;
}

static void field_set_ulong(void *s, size_t off, CK_ULONG v)
{
        memcpy((uint8_t *) s + off, &v, sizeof(v));
}

static void *field_ptr(const void *s, size_t off)
{
        void *p;

        memcpy(&p, (const uint8_t *) s + off, sizeof(p));
        return p;
}

static void field_set_ptr(void *s, size_t off, void *p)
{
        memcpy((uint8_t *) s + off, &p, sizeof(p));
}

static uint64_t field_ptr_len(const void *s, const Field *f)
{
        switch (f->type) {
        case FIELD_PTR_LEN:
                return ulong_to_u64(field_ulong(s, f->aux));
        case FIELD_PTR_BITS:
                return bits_to_bytes(field_ulong(s, f->aux));
        default:
                return f->aux;
        }
}

static CK_ULONG ulong_at(const void *array, size_t i)
{
        return field_ulong(array, i * sizeof(CK_ULONG));
}

static void set_ulong_at(void *array, size_t i, CK_ULONG v)
{
        field_set_ulong(array, i * sizeof(CK_ULONG), v);
}

/* ---- writing ---- */

/*
 * Encoding state: w->r keeps the first error, so encoders append without checking each step. The
 * frame size is checked before each append, so an absurd length from a caller fails before any
 * byte of it is read or any memory is allocated for it.
 */
typedef struct Writer {
        Buffer *b;
        size_t start; /* offset of this frame's header in b */
        int r;
        bool failed_before; /* the caller handed us a failed buffer: leave it as it is */
} Writer;

static bool w_room(Writer *w, uint64_t n)
{
        size_t used;

        if (w->r < 0)
                return false;
        if (!buffer_ok(w->b)) {
                w->r = -ENOMEM;
                return false;
        }
        used = w->b->len - w->start;
        if (n > KYSO_WIRE_HEADER_SIZE + KYSO_WIRE_FRAME_MAX - used || n > w->b->limit - w->b->len) {
                w->r = -EMSGSIZE;
                return false;
        }
        return true;
}

static void w_u8(Writer *w, uint8_t v)
{
        if (w_room(w, 1))
                buffer_add_u8(w->b, v);
}

static void w_u32(Writer *w, uint32_t v)
{
        if (w_room(w, 4))
                buffer_add_u32(w->b, v);
}

static void w_u64(Writer *w, uint64_t v)
{
        if (w_room(w, 8))
                buffer_add_u64(w->b, v);
}

static void w_ulong(Writer *w, CK_ULONG v)
{
        w_u64(w, ulong_to_u64(v));
}

static void w_bytes(Writer *w, const void *p, uint64_t n)
{
        if (n > 0 && w_room(w, n))
                buffer_add_bytes(w->b, p, n);
}

static void w_begin(Writer *w, Buffer *b)
{
        *w = (Writer) { .b = b, .start = b->len };
        if (!buffer_ok(b)) {
                w->r = -ENOMEM;
                w->failed_before = true;
        }
        w_u32(w, 0);
}

/* Fills in the header, or on failure leaves the buffer exactly as it was before w_begin(). */
static int w_end(Writer *w, int r)
{
        Buffer *b = w->b;

        if (r >= 0)
                r = w->r;
        if (r >= 0 && !buffer_ok(b))
                r = -ENOMEM;
        if (r < 0) {
                if (!w->failed_before) {
                        secure_zero(b->data + w->start, b->len - w->start);
                        b->len = w->start;
                        b->failed = false;
                }
                return r;
        }
        buffer_set_u32(b, w->start, (uint32_t) (b->len - w->start - KYSO_WIRE_HEADER_SIZE));
        return 0;
}

/* ---- reading ---- */

static int rd_u8(Reader *r, uint8_t *ret)
{
        return reader_u8(r, ret) ? 0 : -EBADMSG;
}

static int rd_bool(Reader *r, bool *ret)
{
        uint8_t v;

        if (!reader_u8(r, &v) || v > 1)
                return -EBADMSG;
        *ret = v;
        return 0;
}

static int rd_u32(Reader *r, uint32_t *ret)
{
        return reader_u32(r, ret) ? 0 : -EBADMSG;
}

static int rd_u64(Reader *r, uint64_t *ret)
{
        return reader_u64(r, ret) ? 0 : -EBADMSG;
}

static int rd_ulong(Reader *r, CK_ULONG *ret)
{
        uint64_t v;

        if (!reader_u64(r, &v))
                return -EBADMSG;
        return u64_to_ulong(v, ret);
}

static int rd_bytes(Reader *r, uint64_t n, const uint8_t **ret)
{
        if (n > SIZE_MAX)
                return -EBADMSG;
        return reader_bytes(r, (size_t) n, ret) ? 0 : -EBADMSG;
}

/* ---- structures ---- */

static void put_fields(Writer *w, const ParamLayout *l, const void *s)
{
        for (unsigned i = 0; i < l->n_fields; i++) {
                const Field *f = &l->fields[i];
                const void *p;
                uint64_t n;

                switch (f->type) {
                case FIELD_ULONG:
                        w_ulong(w, field_ulong(s, f->off));
                        break;
                case FIELD_BBOOL:
                        w_u8(w, ((const uint8_t *) s)[f->off] ? CK_TRUE : CK_FALSE);
                        break;
                case FIELD_FIXED:
                        w_bytes(w, (const uint8_t *) s + f->off, f->aux);
                        break;
                default:
                        p = field_ptr(s, f->off);
                        n = field_ptr_len(s, f);
                        w_u8(w, p != NULL);
                        w_u64(w, n);
                        if (p)
                                w_bytes(w, p, n);
                        break;
                }
        }
}

/* Server side: rebuilds a structure in the arena, pointers to copies of the buffers. */
static int get_fields(Reader *r, Arena *a, const ParamLayout *l, void *s)
{
        int k;

        for (unsigned i = 0; i < l->n_fields; i++) {
                const Field *f = &l->fields[i];
                const uint8_t *p;
                CK_ULONG v;
                uint64_t n;
                bool present;
                void *d;

                switch (f->type) {
                case FIELD_ULONG:
                        k = rd_ulong(r, &v);
                        if (k < 0)
                                return k;
                        field_set_ulong(s, f->off, v);
                        break;
                case FIELD_BBOOL:
                        k = rd_bool(r, &present);
                        if (k < 0)
                                return k;
                        ((uint8_t *) s)[f->off] = present ? CK_TRUE : CK_FALSE;
                        break;
                case FIELD_FIXED:
                        k = rd_bytes(r, f->aux, &p);
                        if (k < 0)
                                return k;
                        memcpy((uint8_t *) s + f->off, p, f->aux);
                        break;
                default:
                        k = rd_bool(r, &present);
                        if (k < 0)
                                return k;
                        k = rd_u64(r, &n);
                        if (k < 0)
                                return k;
                        if (f->type == FIELD_PTR_LEN) {
                                k = u64_to_ulong(n, &v);
                                if (k < 0)
                                        return k;
                                field_set_ulong(s, f->aux, v);
                        } else if (n != field_ptr_len(s, f))
                                /* The length is implied by a bit count or the mechanism; a different one is a lie. */
                                return -EBADMSG;
                        d = NULL;
                        if (present) {
                                k = rd_bytes(r, n, &p);
                                if (k < 0)
                                        return k;
                                d = arena_memdup(a, p, n);
                                if (!d)
                                        return -ENOMEM;
                        }
                        field_set_ptr(s, f->off, d);
                        break;
                }
        }
        return 0;
}

/*
 * Client side, reply of an in/out structure: the buffers come back with the lengths they were
 * sent with and are copied into the caller's; the scalars are the caller's inputs and are not
 * written back.
 */
static int get_fields_back(Reader *r, const ParamLayout *l, const void *s, bool apply)
{
        int k;

        for (unsigned i = 0; i < l->n_fields; i++) {
                const Field *f = &l->fields[i];
                const uint8_t *p;
                uint64_t n, v;
                bool present;
                void *d;

                switch (f->type) {
                case FIELD_ULONG:
                        k = rd_u64(r, &v);
                        break;
                case FIELD_BBOOL:
                        k = rd_bool(r, &present);
                        break;
                case FIELD_FIXED:
                        k = rd_bytes(r, f->aux, &p);
                        break;
                default:
                        d = field_ptr(s, f->off);
                        k = rd_bool(r, &present);
                        if (k < 0)
                                return k;
                        k = rd_u64(r, &n);
                        if (k < 0)
                                return k;
                        if (present != (d != NULL) || n != field_ptr_len(s, f))
                                return -EBADMSG;
                        if (present) {
                                k = rd_bytes(r, n, &p);
                                if (k < 0)
                                        return k;
                                if (apply && n > 0)
                                        memcpy(d, p, n);
                        }
                        break;
                }
                if (k < 0)
                        return k;
        }
        return 0;
}

/* Client side, an output structure ('V', 'I', 'T', 'X', 'M'): every field is written. */
static int get_fields_out(Reader *r, const ParamLayout *l, void *s, bool apply)
{
        int k;

        for (unsigned i = 0; i < l->n_fields; i++) {
                const Field *f = &l->fields[i];
                const uint8_t *p;
                CK_ULONG v;

                if (f->type == FIELD_ULONG) {
                        k = rd_ulong(r, &v);
                        if (k < 0)
                                return k;
                        if (apply)
                                field_set_ulong(s, f->off, v);
                } else {
                        /* Output layouts hold only integers and character arrays. */
                        k = rd_bytes(r, f->aux, &p);
                        if (k < 0)
                                return k;
                        if (apply)
                                memcpy((uint8_t *) s + f->off, p, f->aux);
                }
        }
        return 0;
}

/* ---- mechanisms ('m') ---- */

static WireParam mechanism_kind(const CK_MECHANISM *m)
{
        WireParam kind;

        if (!m->pParameter)
                return WIRE_PARAM_NONE;
        kind = wire_mechanism_param(m->mechanism);
        if (param_is_struct(kind) && m->ulParameterLen == layouts[kind].size)
                return kind;
        return WIRE_PARAM_BYTES;
}

static void put_mechanism(Writer *w, const CK_MECHANISM *m)
{
        WireParam kind;

        w_u8(w, m != NULL);
        if (!m)
                return;
        kind = mechanism_kind(m);
        w_ulong(w, m->mechanism);
        w_u8(w, kind);
        switch (kind) {
        case WIRE_PARAM_NONE:
                w_ulong(w, m->ulParameterLen);
                break;
        case WIRE_PARAM_BYTES:
                w_u64(w, m->ulParameterLen);
                w_bytes(w, m->pParameter, m->ulParameterLen);
                break;
        default:
                put_fields(w, &layouts[kind], m->pParameter);
                break;
        }
}

static int get_mechanism(Reader *r, Arena *a, CK_MECHANISM **ret)
{
        WireParam expected;
        CK_MECHANISM *m;
        const uint8_t *p;
        bool present;
        uint8_t kind;
        uint64_t n;
        int k;

        k = rd_bool(r, &present);
        if (k < 0)
                return k;
        if (!present) {
                *ret = NULL;
                return 0;
        }
        m = arena_alloc(a, sizeof(CK_MECHANISM));
        if (!m)
                return -ENOMEM;
        k = rd_ulong(r, &m->mechanism);
        if (k < 0)
                return k;
        k = rd_u8(r, &kind);
        if (k < 0)
                return k;
        expected = wire_mechanism_param(m->mechanism);

        switch (kind) {
        case WIRE_PARAM_NONE:
                k = rd_ulong(r, &m->ulParameterLen);
                if (k < 0)
                        return k;
                break;
        case WIRE_PARAM_BYTES:
                k = rd_u64(r, &n);
                if (k < 0)
                        return k;
                /*
                 * Raw bytes the size of the structure the backend expects would be taken for that
                 * structure, pointers included: the backend would follow pointers a client chose.
                 */
                if (param_is_struct(expected) && n == layouts[expected].size)
                        return -EBADMSG;
                k = rd_bytes(r, n, &p);
                if (k < 0)
                        return k;
                m->pParameter = arena_memdup(a, p, n);
                if (!m->pParameter)
                        return -ENOMEM;
                m->ulParameterLen = n;
                break;
        default:
                if (kind != expected)
                        return -EBADMSG;
                m->pParameter = arena_alloc(a, layouts[kind].size);
                if (!m->pParameter)
                        return -ENOMEM;
                m->ulParameterLen = layouts[kind].size;
                k = get_fields(r, a, &layouts[kind], m->pParameter);
                if (k < 0)
                        return k;
                break;
        }
        *ret = m;
        return 0;
}

/* ---- message parameters ('p') ---- */

static WireParam message_kind(const WireArg *arg)
{
        WireParam kind;

        if (!arg->ptr)
                return WIRE_PARAM_NONE;
        kind = wire_message_param(arg->value);
        if (param_is_message(kind) && arg->len == layouts[kind].size)
                return kind;
        return WIRE_PARAM_BYTES;
}

/* Writes kind and contents; shared by the client's request and the server's reply. */
static void put_message_param(Writer *w, WireParam kind, const void *ptr, CK_ULONG len)
{
        w_u8(w, kind);
        switch (kind) {
        case WIRE_PARAM_NONE:
                w_ulong(w, len);
                break;
        case WIRE_PARAM_BYTES:
                w_u64(w, len);
                w_bytes(w, ptr, len);
                break;
        default:
                put_fields(w, &layouts[kind], ptr);
                break;
        }
}

static int get_message_param(Reader *r, Arena *a, WireArg *arg)
{
        const uint8_t *p;
        uint8_t kind;
        uint64_t n;
        int k;

        k = rd_u8(r, &kind);
        if (k < 0)
                return k;
        arg->value = kind;
        switch (kind) {
        case WIRE_PARAM_NONE:
                return rd_ulong(r, &arg->len);
        case WIRE_PARAM_BYTES:
                k = rd_u64(r, &n);
                if (k < 0)
                        return k;
                k = rd_bytes(r, n, &p);
                if (k < 0)
                        return k;
                arg->ptr = arena_memdup(a, p, n);
                if (!arg->ptr)
                        return -ENOMEM;
                arg->len = n;
                return 0;
        case WIRE_PARAM_GCM_MESSAGE:
        case WIRE_PARAM_CCM_MESSAGE:
        case WIRE_PARAM_CHACHA_POLY_MESSAGE:
                /* Two copies: the backend gets the first; the reply is built from the untouched second. */
                arg->ptr = arena_alloc_array(a, 2, layouts[kind].size);
                if (!arg->ptr)
                        return -ENOMEM;
                arg->len = layouts[kind].size;
                k = get_fields(r, a, &layouts[kind], arg->ptr);
                if (k < 0)
                        return k;
                memcpy((uint8_t *) arg->ptr + arg->len, arg->ptr, arg->len);
                return 0;
        default:
                return -EBADMSG;
        }
}

static int put_message_param_reply(Writer *w, const WireArg *arg)
{
        WireParam kind = arg->value;

        if (param_is_message(kind)) {
                if (!arg->ptr || arg->len != layouts[kind].size)
                        return -EINVAL;
                put_message_param(w, kind, (const uint8_t *) arg->ptr + arg->len, arg->len);
        } else if (kind == WIRE_PARAM_NONE || kind == WIRE_PARAM_BYTES) {
                if ((kind == WIRE_PARAM_BYTES) != (arg->ptr != NULL))
                        return -EINVAL;
                put_message_param(w, kind, arg->ptr, arg->len);
        } else
                return -EINVAL;
        return 0;
}

static int get_message_param_reply(Reader *r, const WireArg *arg, bool apply)
{
        WireParam kind = message_kind(arg);
        const uint8_t *p;
        uint8_t got;
        uint64_t n;
        int k;

        k = rd_u8(r, &got);
        if (k < 0)
                return k;
        if (got != kind)
                return -EBADMSG;
        switch (kind) {
        case WIRE_PARAM_NONE:
                return rd_u64(r, &n);
        case WIRE_PARAM_BYTES:
                k = rd_u64(r, &n);
                if (k < 0)
                        return k;
                if (n != arg->len)
                        return -EBADMSG;
                k = rd_bytes(r, n, &p);
                if (k < 0)
                        return k;
                if (apply && n > 0)
                        memcpy(arg->ptr, p, n);
                return 0;
        default:
                return get_fields_back(r, &layouts[kind], arg->ptr, apply);
        }
}

/* ---- attribute templates ('a') ---- */

static bool attr_kind_acceptable(CK_ATTRIBUTE_TYPE type, uint8_t kind)
{
        WireAttrKind expected = wire_attribute_kind(type);

        /* A ULONGS attribute whose length is no multiple of CK_ULONG travels as bytes. */
        return kind == expected || (expected == WIRE_ATTR_ULONGS && kind == WIRE_ATTR_BYTES);
}

static int put_template_entries(Writer *w, const CK_ATTRIBUTE *attrs, CK_ULONG count, unsigned depth)
{
        for (CK_ULONG i = 0; i < count; i++) {
                const CK_ATTRIBUTE *at = &attrs[i];
                WireAttrKind kind = wire_attribute_kind(at->type);
                size_t unit;
                int k;

                if (kind == WIRE_ATTR_ULONGS && at->ulValueLen % sizeof(CK_ULONG) != 0)
                        kind = WIRE_ATTR_BYTES;
                unit = attr_unit(kind);
                if (at->pValue) {
                        if (at->ulValueLen > KYSO_WIRE_FRAME_MAX)
                                return -EMSGSIZE;
                        /* Raw bytes of a CK_ATTRIBUTE array would carry our pointers to the daemon. */
                        if (kind == WIRE_ATTR_TEMPLATE &&
                            (at->ulValueLen % unit != 0 || depth >= WIRE_TEMPLATE_DEPTH_MAX ||
                             at->ulValueLen / unit > WIRE_TEMPLATE_COUNT_MAX))
                                return -EINVAL;
                }

                w_ulong(w, at->type);
                w_u8(w, kind);
                w_u8(w, at->pValue != NULL);
                w_u64(w, at->ulValueLen == CK_UNAVAILABLE_INFORMATION ? UINT64_MAX : at->ulValueLen / unit);
                if (!at->pValue)
                        continue;
                switch (kind) {
                case WIRE_ATTR_BYTES:
                        w_bytes(w, at->pValue, at->ulValueLen);
                        break;
                case WIRE_ATTR_ULONGS:
                        for (CK_ULONG j = 0; j < at->ulValueLen / unit; j++)
                                w_ulong(w, ulong_at(at->pValue, j));
                        break;
                default:
                        k = put_template_entries(w, at->pValue, at->ulValueLen / unit, depth + 1);
                        if (k < 0)
                                return k;
                        break;
                }
                if (w->r < 0)
                        return w->r;
        }
        return 0;
}

static int put_template(Writer *w, const WireArg *arg)
{
        if (arg->len > WIRE_TEMPLATE_COUNT_MAX)
                return -EINVAL;
        w_u8(w, arg->ptr != NULL);
        w_u32(w, arg->len);
        if (!arg->ptr)
                return 0;
        return put_template_entries(w, arg->ptr, arg->len, 1);
}

static int get_template_entries(Reader *r, Arena *a, CK_ATTRIBUTE *attrs, size_t count, unsigned depth)
{
        int k;

        for (size_t i = 0; i < count; i++) {
                CK_ATTRIBUTE *at = &attrs[i];
                const uint8_t *p;
                bool present;
                uint8_t kind;
                uint64_t n;
                size_t unit;

                k = rd_ulong(r, &at->type);
                if (k < 0)
                        return k;
                k = rd_u8(r, &kind);
                if (k < 0)
                        return k;
                if (!attr_kind_acceptable(at->type, kind))
                        return -EBADMSG;
                k = rd_bool(r, &present);
                if (k < 0)
                        return k;
                k = rd_u64(r, &n);
                if (k < 0)
                        return k;
                unit = attr_unit(kind);

                if (!present) {
                        at->pValue = NULL;
                        if (n == UINT64_MAX)
                                at->ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        else if (n > ULONG_MAX / unit)
                                return -EBADMSG;
                        else
                                at->ulValueLen = n * unit;
                        continue;
                }

                switch (kind) {
                case WIRE_ATTR_BYTES:
                        k = rd_bytes(r, n, &p);
                        if (k < 0)
                                return k;
                        at->pValue = arena_memdup(a, p, n);
                        if (!at->pValue)
                                return -ENOMEM;
                        break;
                case WIRE_ATTR_ULONGS:
                        /* Each value takes 8 bytes of the frame: that bounds n before allocating. */
                        if (n > reader_remaining(r) / 8)
                                return -EBADMSG;
                        at->pValue = arena_alloc_array(a, n, sizeof(CK_ULONG));
                        if (!at->pValue)
                                return -ENOMEM;
                        for (size_t j = 0; j < n; j++) {
                                CK_ULONG v;

                                k = rd_ulong(r, &v);
                                if (k < 0)
                                        return k;
                                set_ulong_at(at->pValue, j, v);
                        }
                        break;
                default:
                        if (depth >= WIRE_TEMPLATE_DEPTH_MAX || n > WIRE_TEMPLATE_COUNT_MAX ||
                            n > reader_remaining(r) / ATTR_ENTRY_MIN)
                                return -EBADMSG;
                        at->pValue = arena_alloc_array(a, n, sizeof(CK_ATTRIBUTE));
                        if (!at->pValue)
                                return -ENOMEM;
                        k = get_template_entries(r, a, at->pValue, n, depth + 1);
                        if (k < 0)
                                return k;
                        break;
                }
                at->ulValueLen = n * unit;
        }
        return 0;
}

static int get_template(Reader *r, Arena *a, WireArg *arg)
{
        bool present;
        uint32_t count;
        int k;

        k = rd_bool(r, &present);
        if (k < 0)
                return k;
        k = rd_u32(r, &count);
        if (k < 0)
                return k;
        if (count > WIRE_TEMPLATE_COUNT_MAX)
                return -EBADMSG;
        arg->len = count;
        if (!present)
                return 0;
        if (count > reader_remaining(r) / ATTR_ENTRY_MIN)
                return -EBADMSG;
        arg->ptr = arena_alloc_array(a, count, sizeof(CK_ATTRIBUTE));
        if (!arg->ptr)
                return -ENOMEM;
        return get_template_entries(r, a, arg->ptr, count, 1);
}

/* ---- C_GetAttributeValue templates ('A') ---- */

static int put_get_entries(Writer *w, const CK_ATTRIBUTE *attrs, CK_ULONG count, unsigned depth)
{
        for (CK_ULONG i = 0; i < count; i++) {
                const CK_ATTRIBUTE *at = &attrs[i];
                WireAttrKind kind = wire_attribute_kind(at->type);
                size_t unit = attr_unit(kind);
                int k;

                if (kind == WIRE_ATTR_TEMPLATE && at->pValue &&
                    (depth >= WIRE_TEMPLATE_DEPTH_MAX || at->ulValueLen / unit > WIRE_TEMPLATE_COUNT_MAX))
                        return -EINVAL;
                w_ulong(w, at->type);
                w_u8(w, kind);
                w_u8(w, at->pValue != NULL);
                /* Whole units only: the value comes back no larger than this, so it fits. */
                w_u64(w, at->ulValueLen / unit);
                if (kind == WIRE_ATTR_TEMPLATE && at->pValue) {
                        k = put_get_entries(w, at->pValue, at->ulValueLen / unit, depth + 1);
                        if (k < 0)
                                return k;
                }
                if (w->r < 0)
                        return w->r;
        }
        return 0;
}

/*
 * Server side. attrs has room for 2 * count entries: the second half keeps the buffers as
 * allocated (pointer, capacity, requested type), so the reply never trusts what the backend did
 * to the first half beyond the lengths and nested types it reports.
 */
static int get_get_entries(Reader *r, Arena *a, CK_ATTRIBUTE *attrs, size_t count, unsigned depth)
{
        int k;

        for (size_t i = 0; i < count; i++) {
                CK_ATTRIBUTE *at = &attrs[i];
                bool has_buffer;
                uint8_t kind;
                uint64_t cap;

                k = rd_ulong(r, &at->type);
                if (k < 0)
                        return k;
                k = rd_u8(r, &kind);
                if (k < 0)
                        return k;
                if (kind != wire_attribute_kind(at->type))
                        return -EBADMSG;
                k = rd_bool(r, &has_buffer);
                if (k < 0)
                        return k;
                k = rd_u64(r, &cap);
                if (k < 0)
                        return k;

                at->pValue = NULL;
                at->ulValueLen = 0;
                if (!has_buffer)
                        continue;

                /*
                 * A value larger than a frame could not come back anyway, so a larger capacity
                 * (a client with a generous buffer) is served with a frame's worth.
                 */
                switch (kind) {
                case WIRE_ATTR_BYTES:
                        if (cap > KYSO_WIRE_FRAME_MAX)
                                cap = KYSO_WIRE_FRAME_MAX;
                        at->pValue = arena_alloc(a, cap);
                        break;
                case WIRE_ATTR_ULONGS:
                        if (cap > KYSO_WIRE_FRAME_MAX / sizeof(CK_ULONG))
                                cap = KYSO_WIRE_FRAME_MAX / sizeof(CK_ULONG);
                        at->pValue = arena_alloc_array(a, cap, sizeof(CK_ULONG));
                        break;
                default:
                        if (depth >= WIRE_TEMPLATE_DEPTH_MAX || cap > WIRE_TEMPLATE_COUNT_MAX ||
                            cap > reader_remaining(r) / ATTR_ENTRY_MIN)
                                return -EBADMSG;
                        at->pValue = arena_alloc_array(a, 2 * cap, sizeof(CK_ATTRIBUTE));
                        if (!at->pValue)
                                return -ENOMEM;
                        k = get_get_entries(r, a, at->pValue, cap, depth + 1);
                        if (k < 0)
                                return k;
                        break;
                }
                if (!at->pValue)
                        return -ENOMEM;
                at->ulValueLen = cap * attr_unit(kind);
        }
        if (count > 0)
                memcpy(attrs + count, attrs, count * sizeof(CK_ATTRIBUTE));
        return 0;
}

static int get_get_template(Reader *r, Arena *a, WireArg *arg)
{
        uint32_t count;
        int k;

        k = rd_u32(r, &count);
        if (k < 0)
                return k;
        if (count > WIRE_TEMPLATE_COUNT_MAX || count > reader_remaining(r) / ATTR_ENTRY_MIN)
                return -EBADMSG;
        arg->ptr = arena_alloc_array(a, 2 * (size_t) count, sizeof(CK_ATTRIBUTE));
        if (!arg->ptr)
                return -ENOMEM;
        arg->len = count;
        return get_get_entries(r, a, arg->ptr, count, 1);
}

static int put_get_reply_entries(Writer *w, const CK_ATTRIBUTE *attrs, const CK_ATTRIBUTE *shadow, size_t count,
                                 unsigned depth)
{
        for (size_t i = 0; i < count; i++) {
                const CK_ATTRIBUTE *at = &attrs[i], *sh = &shadow[i];
                /* Top level: the type asked for. Nested: the type the backend filled in. */
                CK_ATTRIBUTE_TYPE type = depth > 1 ? at->type : sh->type;
                WireAttrKind kind = wire_attribute_kind(type), allocated = wire_attribute_kind(sh->type);
                CK_ULONG len = at->ulValueLen;
                bool has_value;
                size_t unit;
                int k;

                if (depth > 1)
                        w_ulong(w, type);
                if (len == CK_UNAVAILABLE_INFORMATION) {
                        w_u8(w, kind);
                        w_u64(w, UINT64_MAX);
                        w_u8(w, false);
                        continue;
                }
                if (kind == WIRE_ATTR_ULONGS && len % sizeof(CK_ULONG) != 0)
                        kind = WIRE_ATTR_BYTES;
                unit = attr_unit(kind);
                if (kind == WIRE_ATTR_TEMPLATE && len % unit != 0)
                        return -EINVAL;

                /*
                 * A value goes back only from a buffer we allocated, within its size, and a template
                 * only from a buffer allocated as one (else arena pointers would leak as bytes, or
                 * bytes be read as pointers).
                 */
                /* A length past the buffer the backend was given is a backend bug: passing it on would
                 * send the client reading past its own buffer. */
                if (sh->pValue && len > sh->ulValueLen)
                        return -EINVAL;
                has_value = sh->pValue && (kind == WIRE_ATTR_TEMPLATE) == (allocated == WIRE_ATTR_TEMPLATE);
                w_u8(w, kind);
                w_u64(w, len / unit);
                w_u8(w, has_value);
                if (!has_value)
                        continue;
                switch (kind) {
                case WIRE_ATTR_BYTES:
                        w_bytes(w, sh->pValue, len);
                        break;
                case WIRE_ATTR_ULONGS:
                        for (size_t j = 0; j < len / unit; j++)
                                w_ulong(w, ulong_at(sh->pValue, j));
                        break;
                default:
                        k = put_get_reply_entries(w, sh->pValue,
                                                  (const CK_ATTRIBUTE *) sh->pValue + sh->ulValueLen / unit,
                                                  len / unit, depth + 1);
                        if (k < 0)
                                return k;
                        break;
                }
                if (w->r < 0)
                        return w->r;
        }
        return 0;
}

/* Client side: writes nothing past the lengths the caller's attributes offered. */
static int get_get_reply_entries(Reader *r, CK_ATTRIBUTE *attrs, size_t count, unsigned depth, bool apply)
{
        int k;

        for (size_t i = 0; i < count; i++) {
                CK_ATTRIBUTE *at = &attrs[i];
                CK_ATTRIBUTE_TYPE type = at->type;
                CK_ULONG native;
                bool has_value;
                uint8_t kind;
                uint64_t n;
                size_t unit;

                if (depth > 1) {
                        k = rd_ulong(r, &type);
                        if (k < 0)
                                return k;
                }
                k = rd_u8(r, &kind);
                if (k < 0)
                        return k;
                if (!attr_kind_acceptable(type, kind))
                        return -EBADMSG;
                k = rd_u64(r, &n);
                if (k < 0)
                        return k;
                k = rd_bool(r, &has_value);
                if (k < 0)
                        return k;
                unit = attr_unit(kind);

                if (n == UINT64_MAX) {
                        if (has_value)
                                return -EBADMSG;
                        native = CK_UNAVAILABLE_INFORMATION;
                } else if (n > ULONG_MAX / unit)
                        return -EBADMSG;
                else
                        native = n * unit;

                /* Where the caller offered a buffer, a real length past it must not reach the caller
                 * (it would read past its buffer): the token answers CK_UNAVAILABLE_INFORMATION then. */
                if (!has_value && at->pValue && native != CK_UNAVAILABLE_INFORMATION && native > at->ulValueLen)
                        return -EBADMSG;
                if (has_value) {
                        const uint8_t *p;

                        if (!at->pValue || native > at->ulValueLen)
                                return -EBADMSG;
                        switch (kind) {
                        case WIRE_ATTR_BYTES:
                                k = rd_bytes(r, n, &p);
                                if (k < 0)
                                        return k;
                                if (apply && n > 0)
                                        memcpy(at->pValue, p, n);
                                break;
                        case WIRE_ATTR_ULONGS:
                                for (size_t j = 0; j < n; j++) {
                                        CK_ULONG v;

                                        k = rd_ulong(r, &v);
                                        if (k < 0)
                                                return k;
                                        if (apply)
                                                set_ulong_at(at->pValue, j, v);
                                }
                                break;
                        default:
                                if (depth >= WIRE_TEMPLATE_DEPTH_MAX || n > WIRE_TEMPLATE_COUNT_MAX)
                                        return -EBADMSG;
                                k = get_get_reply_entries(r, at->pValue, n, depth + 1, apply);
                                if (k < 0)
                                        return k;
                                break;
                        }
                }
                if (apply) {
                        at->type = type;
                        at->ulValueLen = native;
                }
        }
        return 0;
}

/* ---- one function per signature character and direction ---- */

static int encode_request_arg(Writer *w, char c, const WireArg *arg)
{
        switch (c) {
        case 'u':
        case 'S':
        case 'O':
        case 'L':
                w_ulong(w, arg->value);
                return 0;
        case 'b':
                w_u8(w, arg->value != CK_FALSE ? CK_TRUE : CK_FALSE);
                return 0;
        case 'y':
                w_u8(w, arg->ptr != NULL);
                w_ulong(w, arg->len);
                if (arg->ptr)
                        w_bytes(w, arg->ptr, arg->len);
                return 0;
        case 'z':
                w_u8(w, arg->ptr != NULL);
                if (arg->ptr)
                        w_bytes(w, arg->ptr, 32);
                return 0;
        case 'a':
                return put_template(w, arg);
        case 'm':
                put_mechanism(w, arg->ptr);
                return 0;
        case 'p':
                put_message_param(w, message_kind(arg), arg->ptr, arg->len);
                return 0;
        case 'o':
        case 'l':
                if (!arg->len_ptr)
                        return -EINVAL;
                w_u8(w, arg->ptr == NULL);
                w_ulong(w, *arg->len_ptr);
                return 0;
        case 'r':
                if ((!arg->ptr && arg->len > 0) || arg->len > KYSO_WIRE_FRAME_MAX - REPLY_HEADER_SIZE)
                        return arg->ptr ? -EMSGSIZE : -EINVAL;
                w_ulong(w, arg->len);
                return 0;
        case 'A':
                if ((!arg->ptr && arg->len > 0) || arg->len > WIRE_TEMPLATE_COUNT_MAX)
                        return -EINVAL;
                w_u32(w, arg->len);
                return put_get_entries(w, arg->ptr, arg->len, 1);
        case 'H':
                return arg->ptr && arg->len_ptr ? 0 : -EINVAL;
        case 'U':
        case 'n':
        case 's':
        case 'V':
        case 'I':
        case 'T':
        case 'X':
        case 'M':
                return arg->ptr ? 0 : -EINVAL;
        default:
                return -EINVAL;
        }
}

static int decode_request_arg(Reader *r, Arena *a, char c, WireArg *arg)
{
        const ParamLayout *l;
        const uint8_t *p;
        uint64_t n;
        bool flag = false;
        int k;

        switch (c) {
        case 'u':
        case 'S':
        case 'O':
        case 'L':
                return rd_ulong(r, &arg->value);
        case 'b':
                k = rd_bool(r, &flag);
                arg->value = flag ? CK_TRUE : CK_FALSE;
                return k;
        case 'y':
                k = rd_bool(r, &flag);
                if (k < 0)
                        return k;
                k = rd_ulong(r, &arg->len);
                if (k < 0 || !flag)
                        return k;
                k = rd_bytes(r, arg->len, &p);
                if (k < 0)
                        return k;
                /* Input bytes are used where they are (a signature's megabyte is not copied again): the
                 * payload outlives the arguments, see wire_decode_request(). */
                arg->ptr = (uint8_t *) p;
                return 0;
        case 'z':
                k = rd_bool(r, &flag);
                if (k < 0 || !flag)
                        return k;
                k = rd_bytes(r, 32, &p);
                if (k < 0)
                        return k;
                arg->ptr = arena_memdup(a, p, 32);
                return arg->ptr ? 0 : -ENOMEM;
        case 'a':
                return get_template(r, a, arg);
        case 'm':
                return get_mechanism(r, a, (CK_MECHANISM **) &arg->ptr);
        case 'p':
                return get_message_param(r, a, arg);
        case 'o':
        case 'l':
                k = rd_bool(r, &flag);
                if (k < 0)
                        return k;
                k = rd_u64(r, &n);
                if (k < 0)
                        return k;
                arg->len_ptr = &arg->len;
                if (flag) /* a length query: the backend sees NULL */
                        return 0;
                /*
                 * Capacities are capped at what one reply can carry, so a client's generous buffer
                 * costs at most a frame. value keeps the capacity for the reply encoder.
                 */
                if (c == 'o') {
                        if (n > KYSO_WIRE_FRAME_MAX)
                                n = KYSO_WIRE_FRAME_MAX;
                        arg->ptr = arena_alloc(a, n);
                } else {
                        if (n > WIRE_LIST_COUNT_MAX)
                                n = WIRE_LIST_COUNT_MAX;
                        arg->ptr = arena_alloc_array(a, n, sizeof(CK_ULONG));
                }
                if (!arg->ptr)
                        return -ENOMEM;
                arg->value = arg->len = n;
                return 0;
        case 'r':
                k = rd_u64(r, &n);
                if (k < 0)
                        return k;
                if (n > KYSO_WIRE_FRAME_MAX - REPLY_HEADER_SIZE)
                        return -EBADMSG;
                arg->ptr = arena_alloc(a, n);
                arg->len = n;
                return arg->ptr ? 0 : -ENOMEM;
        case 'A':
                return get_get_template(r, a, arg);
        case 'H':
                return 0;
        case 'U':
        case 'n':
        case 's':
                arg->ptr = &arg->value;
                return 0;
        default:
                l = output_layout(c);
                if (!l)
                        return -EINVAL;
                /* Zeroed: some backends (SoftHSM2) OR flags into what they are given. */
                arg->ptr = arena_alloc(a, l->size);
                return arg->ptr ? 0 : -ENOMEM;
        }
}

static int encode_reply_arg(Writer *w, char c, const WireArg *arg, CK_RV rv)
{
        const ParamLayout *l;
        CK_ULONG n;
        bool has;

        switch (c) {
        case 'o':
        case 'l':
                n = arg->len_ptr ? *arg->len_ptr : arg->len;
                has = arg->ptr && rv == CKR_OK;
                /* More than the buffer we allocated: the backend is lying; do not read past it. */
                if (has && n > arg->value)
                        return -EINVAL;
                w_ulong(w, n);
                w_u8(w, has);
                if (!has)
                        return 0;
                if (c == 'o')
                        w_bytes(w, arg->ptr, n);
                else
                        for (CK_ULONG i = 0; i < n; i++)
                                w_ulong(w, ulong_at(arg->ptr, i));
                return 0;
        case 'r':
                w_bytes(w, arg->ptr, arg->len);
                return 0;
        case 'A':
                return put_get_reply_entries(w, arg->ptr, (const CK_ATTRIBUTE *) arg->ptr + arg->len, arg->len, 1);
        case 'H':
                if (arg->len > WIRE_LIST_COUNT_MAX || (!arg->ptr && arg->len > 0))
                        return -EINVAL;
                w_u32(w, arg->len);
                for (CK_ULONG i = 0; i < arg->len; i++)
                        w_ulong(w, ulong_at(arg->ptr, i));
                return 0;
        case 'U':
        case 'n':
        case 's':
                w_ulong(w, arg->value);
                return 0;
        case 'p':
                return put_message_param_reply(w, arg);
        default:
                l = output_layout(c);
                if (!l)
                        return 0; /* an input-only character */
                if (!arg->ptr)
                        return -EINVAL;
                put_fields(w, l, arg->ptr);
                return 0;
        }
}

static int decode_reply_arg(Reader *r, char c, WireArg *arg, CK_RV rv, bool apply)
{
        const ParamLayout *l;
        const uint8_t *p;
        CK_ULONG n, v;
        uint32_t count;
        bool has;
        int k;

        switch (c) {
        case 'o':
        case 'l':
                k = rd_ulong(r, &n);
                if (k < 0)
                        return k;
                k = rd_bool(r, &has);
                if (k < 0)
                        return k;
                if (has != (arg->ptr && rv == CKR_OK))
                        return -EBADMSG;
                if (has) {
                        if (n > *arg->len_ptr || (c == 'l' && n > WIRE_LIST_COUNT_MAX))
                                return -EBADMSG;
                        if (c == 'o') {
                                k = rd_bytes(r, n, &p);
                                if (k < 0)
                                        return k;
                                if (apply && n > 0)
                                        memcpy(arg->ptr, p, n);
                        } else
                                for (CK_ULONG i = 0; i < n; i++) {
                                        k = rd_ulong(r, &v);
                                        if (k < 0)
                                                return k;
                                        if (apply)
                                                set_ulong_at(arg->ptr, i, v);
                                }
                }
                if (apply)
                        *arg->len_ptr = n;
                return 0;
        case 'r':
                k = rd_bytes(r, arg->len, &p);
                if (k < 0)
                        return k;
                if (apply && arg->len > 0)
                        memcpy(arg->ptr, p, arg->len);
                return 0;
        case 'A':
                return get_get_reply_entries(r, arg->ptr, arg->len, 1, apply);
        case 'H': {
                _cleanup_(freep) CK_OBJECT_HANDLE *handles = NULL;

                k = rd_u32(r, &count);
                if (k < 0)
                        return k;
                if (count > WIRE_LIST_COUNT_MAX || count > reader_remaining(r) / 8)
                        return -EBADMSG;
                if (apply && count > 0) {
                        handles = calloc(count, sizeof(CK_OBJECT_HANDLE));
                        if (!handles)
                                return -ENOMEM;
                }
                for (uint32_t i = 0; i < count; i++) {
                        k = rd_ulong(r, &v);
                        if (k < 0)
                                return k;
                        if (handles)
                                handles[i] = v;
                }
                if (apply) {
                        *(CK_OBJECT_HANDLE **) arg->ptr = TAKE_PTR(handles);
                        *arg->len_ptr = count;
                }
                return 0;
        }
        case 'U':
        case 'n':
        case 's':
                k = rd_ulong(r, &v);
                if (k < 0)
                        return k;
                if (apply)
                        *(CK_ULONG *) arg->ptr = v;
                return 0;
        case 'p':
                return get_message_param_reply(r, arg, apply);
        default:
                l = output_layout(c);
                if (!l)
                        return 0;
                return get_fields_out(r, l, arg->ptr, apply);
        }
}

/* ---- frames ---- */

int wire_frame_length(const uint8_t header[KYSO_WIRE_HEADER_SIZE], size_t *ret_len)
{
        uint32_t len = (uint32_t) header[0] << 24 | (uint32_t) header[1] << 16 | (uint32_t) header[2] << 8 |
                       header[3];

        if (len > KYSO_WIRE_FRAME_MAX)
                return -EMSGSIZE;
        if (len < 8)
                return -EBADMSG;
        *ret_len = len;
        return 0;
}

int wire_peek(const uint8_t *payload, size_t size, uint32_t *ret_serial, uint32_t *ret_call)
{
        Reader r;
        uint32_t serial, call;

        reader_init(&r, payload, size);
        if (!reader_u32(&r, &serial) || !reader_u32(&r, &call))
                return -EBADMSG;
        if (ret_serial)
                *ret_serial = serial;
        if (ret_call)
                *ret_call = call;
        return 0;
}

int wire_encode_request(Buffer *out, uint32_t serial, WireCall call, const WireArg *args)
{
        const WireCallInfo *info = wire_call_info(call);
        Writer w;
        int r = 0;

        if (!info || !out || (!args && info->signature[0]))
                return -EINVAL;
        w_begin(&w, out);
        w_u32(&w, serial);
        w_u32(&w, (uint32_t) call);
        for (size_t i = 0; info->signature[i] && r >= 0; i++)
                r = encode_request_arg(&w, info->signature[i], &args[i]);
        return w_end(&w, r);
}

static int decode_reply_args(const Reader *start, const char *sig, WireArg *args, CK_RV rv, bool apply)
{
        Reader r = *start;
        int k;

        for (size_t i = 0; sig[i]; i++) {
                k = decode_reply_arg(&r, sig[i], &args[i], rv, apply);
                if (k < 0)
                        return k;
        }
        return reader_at_end(&r) ? 0 : -EBADMSG;
}

int wire_decode_reply(const uint8_t *payload, size_t size, WireCall call, WireArg *args, CK_RV *ret_rv)
{
        const WireCallInfo *info = wire_call_info(call);
        uint32_t serial, id;
        bool present;
        uint64_t rv64;
        CK_RV rv;
        Reader r;
        int k;

        if (!info || (!args && info->signature[0]))
                return -EINVAL;
        reader_init(&r, payload, size);
        if (rd_u32(&r, &serial) < 0 || rd_u32(&r, &id) < 0 || id != (uint32_t) call || rd_u64(&r, &rv64) < 0 ||
            u64_to_ulong(rv64, &rv) < 0 || rd_bool(&r, &present) < 0)
                return -EBADMSG;
        if (present != wire_rv_has_outputs(call, rv))
                return -EBADMSG;
        if (present) {
                /* Check everything first, so a bad reply leaves the caller's memory untouched. */
                k = decode_reply_args(&r, info->signature, args, rv, false);
                if (k < 0)
                        return k;
                k = decode_reply_args(&r, info->signature, args, rv, true);
                if (k < 0)
                        return k;
        } else if (!reader_at_end(&r))
                return -EBADMSG;
        if (ret_rv)
                *ret_rv = rv;
        return 0;
}

int wire_decode_request(const uint8_t *payload, size_t size, Arena *arena, uint32_t *ret_serial, WireCall *ret_call,
                        WireArg *args)
{
        const WireCallInfo *info;
        uint32_t serial, id;
        Reader r;
        int k;

        if (!arena || !args)
                return -EINVAL;
        reader_init(&r, payload, size);
        if (rd_u32(&r, &serial) < 0 || rd_u32(&r, &id) < 0)
                return -EBADMSG;
        if (ret_serial)
                *ret_serial = serial;
        if (ret_call)
                *ret_call = (WireCall) id;
        info = wire_call_info((WireCall) id);
        if (id >= _KYSO_CALL_MAX || !info)
                return -EPROTO;

        memset(args, 0, sizeof(WireArg) * KYSO_WIRE_ARGS_MAX);
        for (size_t i = 0; info->signature[i]; i++) {
                k = decode_request_arg(&r, arena, info->signature[i], &args[i]);
                if (k < 0)
                        return k;
        }
        return reader_at_end(&r) ? 0 : -EBADMSG;
}

int wire_encode_reply(Buffer *out, uint32_t serial, WireCall call, CK_RV rv, const WireArg *args)
{
        const WireCallInfo *info = wire_call_info(call);
        bool present;
        Writer w;
        int r = 0;

        if (!info || !out || (!args && info->signature[0]))
                return -EINVAL;
        present = wire_rv_has_outputs(call, rv);
        w_begin(&w, out);
        w_u32(&w, serial);
        w_u32(&w, (uint32_t) call);
        w_ulong(&w, rv);
        w_u8(&w, present);
        for (size_t i = 0; present && info->signature[i] && r >= 0; i++)
                r = encode_reply_arg(&w, info->signature[i], &args[i], rv);
        return w_end(&w, r);
}

int wire_encode_error_reply(Buffer *out, uint32_t serial, WireCall call, CK_RV rv)
{
        Writer w;

        /* A reply that should carry outputs but does not would leave the caller reading garbage. */
        if (!out || wire_rv_has_outputs(call, rv))
                return -EINVAL;
        w_begin(&w, out);
        w_u32(&w, serial);
        w_u32(&w, (uint32_t) call);
        w_ulong(&w, rv);
        w_u8(&w, false);
        return w_end(&w, 0);
}
