/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kyso wire protocol: how PKCS#11 calls travel between kyso-pkcs11.so
 * (the client) and kysod (the server) over a unix stream socket.
 *
 * One table, KYSO_WIRE_CALLS, declares every call with a signature string.
 * Each character of a signature stands for one logical argument of the
 * PKCS#11 function (some take two or three C parameters, e.g. a pointer and
 * a length) and says what travels in the request and in the reply. The
 * client encodes a request from the caller's native arguments and decodes
 * the reply straight into the caller's buffers; the server decodes a
 * request into native values allocated in an Arena, calls the backend with
 * them, and encodes the reply from the same values. Both sides describe
 * the arguments of one call with an array of WireArg, one per signature
 * character. This file does no I/O and keeps no global state.
 *
 * Framing: every frame is a 4-byte big-endian payload length followed by
 * the payload. A length above KYSO_WIRE_FRAME_MAX is a protocol error and
 * is refused before anything is allocated.
 *
 *   request payload: u32 serial, u32 call id, then the request part of each argument
 *   reply payload:   u32 serial, u32 call id, u64 CK_RV, u8 outputs-present,
 *                    then (if outputs-present) the reply part of each argument
 *
 * The serial is chosen by the client and echoed by the server, so several
 * threads of one client may have calls outstanding on one connection and
 * replies may come back in any order. Outputs are present when
 * wire_rv_has_outputs() says so; otherwise the caller's outputs are left
 * untouched. All integers are big-endian; every CK_ULONG travels as u64 and
 * CK_UNAVAILABLE_INFORMATION (~0 in the sender's width) as UINT64_MAX, so
 * a 32-bit client works with a 64-bit daemon. A decoded request or reply
 * must consume the payload exactly: trailing bytes are an error.
 *
 * The first exchange on a connection is KYSO_CALL_HELLO; the server
 * refuses anything else first.
 *
 * Signature characters, with the C parameters each stands for, what the
 * request and the reply carry, and how WireArg holds it:
 *
 *   u  CK_ULONG                  req: u64                       value
 *   S  CK_SESSION_HANDLE         req: u64                       value (the server maps it)
 *   O  CK_OBJECT_HANDLE          req: u64                       value (the server maps it)
 *   L  CK_SLOT_ID                req: u64                       value (the server maps it)
 *   b  CK_BBOOL                  req: u8                        value
 *   y  CK_BYTE_PTR, CK_ULONG     req: u8 present, u64 len, bytes (if present)
 *                                                               ptr (NULL if absent), len
 *   z  CK_UTF8CHAR_PTR [32]      req: u8 present, 32 bytes (if present)
 *                                                               ptr (NULL if absent)
 *   a  CK_ATTRIBUTE_PTR, CK_ULONG  req: template (below)        ptr (CK_ATTRIBUTE *), len = count
 *   m  CK_MECHANISM_PTR          req: mechanism (below)         ptr (CK_MECHANISM *, NULL if absent)
 *   p  CK_VOID_PTR, CK_ULONG     message parameter, in and out (below)
 *                                                               ptr, len, value = mechanism that
 *                                                               selects the layout (set by caller);
 *                                                               server: value = the WireParam kind
 *                                                               that arrived (check it against the
 *                                                               session's mechanism)
 *   o  CK_BYTE_PTR, CK_ULONG_PTR output bytes with PKCS#11 length semantics
 *                                req: u8 query (ptr == NULL), u64 capacity (*len_ptr)
 *                                rep: u64 length, u8 has-data, bytes (if has-data)
 *                                                               ptr, len_ptr; the server's decoder
 *                                                               sets len = capacity, len_ptr = &len,
 *                                                               value = capacity (the reply encoder
 *                                                               refuses a length above it); ptr is
 *                                                               NULL for a query. A capacity above
 *                                                               KYSO_WIRE_FRAME_MAX is served with
 *                                                               KYSO_WIRE_FRAME_MAX (a longer output
 *                                                               could not travel anyway)
 *                                has-data is set when ptr != NULL and rv == CKR_OK. The client
 *                                stores the length in *len_ptr when outputs are present and copies
 *                                the bytes only if they fit the capacity it sent (else: error).
 *   r  CK_BYTE_PTR, CK_ULONG     fixed-size output (C_GenerateRandom)
 *                                req: u64 len   rep: len bytes  ptr, len
 *   A  CK_ATTRIBUTE_PTR, CK_ULONG  C_GetAttributeValue template, in and out (below)
 *                                                               ptr, len = count
 *   H  CK_OBJECT_HANDLE_PTR *, CK_ULONG_PTR   all handles a search found
 *                                req: nothing   rep: u32 count, count x u64
 *                                                               client: ptr is CK_OBJECT_HANDLE **,
 *                                                               decoder malloc()s the array (caller
 *                                                               frees), count to *len_ptr;
 *                                                               server: ptr = CK_OBJECT_HANDLE array,
 *                                                               len = count (filled by the server)
 *   l  CK_ULONG_PTR, CK_ULONG_PTR  list of CK_ULONG with length semantics (slot and mechanism lists)
 *                                req: u8 query, u64 capacity    rep: u64 count, u8 has-data, values
 *                                                               ptr, len_ptr (as for 'o'; the server
 *                                                               caps the capacity at
 *                                                               WIRE_LIST_COUNT_MAX values)
 *   U  CK_ULONG_PTR              rep: u64                       ptr (server: ptr = &value)
 *   n  CK_OBJECT_HANDLE_PTR      rep: u64 (a new object)        ptr (server: ptr = &value)
 *   s  CK_SESSION_HANDLE_PTR     rep: u64 (a new session)       ptr (server: ptr = &value)
 *   V  CK_INFO_PTR               rep: CK_INFO                   ptr (server: zeroed in the arena)
 *   I  CK_SLOT_INFO_PTR          rep: CK_SLOT_INFO              ptr
 *   T  CK_TOKEN_INFO_PTR         rep: CK_TOKEN_INFO             ptr
 *   X  CK_SESSION_INFO_PTR       rep: CK_SESSION_INFO           ptr
 *   M  CK_MECHANISM_INFO_PTR     rep: CK_MECHANISM_INFO         ptr
 *
 * Structures travel field by field in declaration order: CK_VERSION as two
 * u8, fixed character arrays as their bytes, CK_ULONG/CK_FLAGS as u64.
 *
 * Attribute templates ('a'): u8 present, u32 count, then per attribute:
 * u64 type, u8 kind, u8 value-present, u64 length in units of the kind,
 * then the value. Kinds: WIRE_ATTR_BYTES (unit: byte; raw bytes),
 * WIRE_ATTR_ULONGS (unit: one CK_ULONG; each a u64; used for attribute
 * types wire_attribute_kind() names, when the native length is a multiple
 * of sizeof(CK_ULONG)), WIRE_ATTR_TEMPLATE (unit: one CK_ATTRIBUTE; a
 * nested template without its own count, at most WIRE_TEMPLATE_DEPTH_MAX
 * levels). The decoder converts back to native lengths.
 *
 * C_GetAttributeValue templates ('A'): request: u32 count, then per
 * attribute: u64 type, u8 kind, u8 has-buffer (pValue != NULL), u64
 * capacity in units of the kind, and for a TEMPLATE kind with a buffer the
 * nested request of `capacity` attributes. The server allocates a buffer of
 * that capacity for each (capped at KYSO_WIRE_FRAME_MAX bytes), in an array
 * of 2 * count CK_ATTRIBUTE whose second half records what was allocated:
 * the daemon must pass ptr and len on unchanged. Reply (outputs are present
 * for CKR_OK, CKR_ATTRIBUTE_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID and
 * CKR_BUFFER_TOO_SMALL): per attribute u8 kind, u64 length in units
 * (UINT64_MAX for CK_UNAVAILABLE_INFORMATION), u8 has-value, the value; a
 * nested template's value is `length` entries of the same form, each
 * preceded by its u64 type (the backend fills the types in). The client
 * writes ulValueLen (and nested types) and, where it has a buffer and the
 * value fits, the value.
 *
 * Mechanisms ('m'): u8 present, u64 mechanism type, u8 parameter kind,
 * then the parameter by kind (WireParam): NONE u64 ulParameterLen; BYTES
 * u64 length, bytes; a structure field by field. A parameter travels as its
 * structure when wire_mechanism_param() knows the mechanism and
 * ulParameterLen matches that structure; otherwise as raw bytes, which
 * keeps mechanisms kyso does not know usable between same-ABI peers.
 * Pointer fields travel as u8 present, u64 len, bytes, after any bit count
 * their length derives from (CK_CHACHA20_PARAMS, the GCM message tag). The
 * server rebuilds the native structure in the arena, and refuses raw bytes
 * of exactly a known structure's size for that mechanism (the backend
 * would follow pointers the client chose).
 *
 * Message parameters ('p', PKCS#11 3.0 message functions): u8 kind (a
 * WireParam: GCM_MESSAGE, CCM_MESSAGE, CHACHA_POLY_MESSAGE or BYTES/NONE),
 * then the structure with the contents of every buffer it points to. They
 * are in/out (a generated IV or nonce, a tag): the reply carries the
 * same structure again after the call, and the client copies the buffers
 * back into the caller's, which have the lengths it sent.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buffer.h"
#include "pkcs11.h"

#define KYSO_WIRE_MAGIC 0x4b59534fU /* "KYSO" */
#define KYSO_WIRE_VERSION 1U
#define KYSO_WIRE_FRAME_MAX (16U * 1024U * 1024U) /* payload bytes, both directions */
#define KYSO_WIRE_HEADER_SIZE 4U
#define KYSO_WIRE_ARGS_MAX 8
#define WIRE_TEMPLATE_DEPTH_MAX 2 /* a template inside a template, no deeper */
#define WIRE_TEMPLATE_COUNT_MAX 4096U
#define WIRE_LIST_COUNT_MAX 65536U

/* X(name, signature). Order is the protocol: ids are the positions in this table. */
#define KYSO_WIRE_CALLS(X)                                                                                 \
        X(HELLO, "uuuUU")            /* magic, version, handle base; -> version, server flags */           \
        X(DAEMON_STATUS, "o")        /* -> JSON text describing the daemon, for kysoctl */                \
        X(C_GetSlotList, "bl")                                                                             \
        X(C_GetSlotInfo, "LI")                                                                             \
        X(C_GetTokenInfo, "LT")                                                                            \
        X(C_WaitForSlotEvent, "uU")  /* flags; -> slot (pReserved stays in the client) */                 \
        X(C_GetMechanismList, "Ll")                                                                        \
        X(C_GetMechanismInfo, "LuM")                                                                       \
        X(C_InitToken, "Lyz")                                                                              \
        X(C_InitPIN, "Sy")                                                                                 \
        X(C_SetPIN, "Syy")                                                                                 \
        X(C_OpenSession, "Lus")      /* pApplication and Notify stay in the client */                      \
        X(C_CloseSession, "S")                                                                             \
        X(C_CloseAllSessions, "L")                                                                         \
        X(C_GetSessionInfo, "SX")                                                                          \
        X(C_GetOperationState, "So")                                                                       \
        X(C_SetOperationState, "SyOO")                                                                     \
        X(C_Login, "Suy")                                                                                  \
        X(C_Logout, "S")                                                                                   \
        X(C_CreateObject, "San")                                                                           \
        X(C_CopyObject, "SOan")                                                                            \
        X(C_DestroyObject, "SO")                                                                           \
        X(C_GetObjectSize, "SOU")                                                                          \
        X(C_GetAttributeValue, "SOA")                                                                      \
        X(C_SetAttributeValue, "SOa")                                                                      \
        X(C_FindObjectsInit, "SaH")  /* the whole search in one round trip; the client pages locally */   \
        X(C_EncryptInit, "SmO")                                                                            \
        X(C_Encrypt, "Syo")                                                                                \
        X(C_EncryptUpdate, "Syo")                                                                          \
        X(C_EncryptFinal, "So")                                                                            \
        X(C_DecryptInit, "SmO")                                                                            \
        X(C_Decrypt, "Syo")                                                                                \
        X(C_DecryptUpdate, "Syo")                                                                          \
        X(C_DecryptFinal, "So")                                                                            \
        X(C_DigestInit, "Sm")                                                                              \
        X(C_Digest, "Syo")                                                                                 \
        X(C_DigestUpdate, "Sy")                                                                            \
        X(C_DigestKey, "SO")                                                                               \
        X(C_DigestFinal, "So")                                                                             \
        X(C_SignInit, "SmO")                                                                               \
        X(C_Sign, "Syo")                                                                                   \
        X(C_SignUpdate, "Sy")                                                                              \
        X(C_SignFinal, "So")                                                                               \
        X(C_SignRecoverInit, "SmO")                                                                        \
        X(C_SignRecover, "Syo")                                                                            \
        X(C_VerifyInit, "SmO")                                                                             \
        X(C_Verify, "Syy")                                                                                 \
        X(C_VerifyUpdate, "Sy")                                                                            \
        X(C_VerifyFinal, "Sy")                                                                             \
        X(C_VerifyRecoverInit, "SmO")                                                                      \
        X(C_VerifyRecover, "Syo")                                                                          \
        X(C_DigestEncryptUpdate, "Syo")                                                                    \
        X(C_DecryptDigestUpdate, "Syo")                                                                    \
        X(C_SignEncryptUpdate, "Syo")                                                                      \
        X(C_DecryptVerifyUpdate, "Syo")                                                                    \
        X(C_GenerateKey, "Sman")                                                                           \
        X(C_GenerateKeyPair, "Smaann")                                                                     \
        X(C_WrapKey, "SmOOo")                                                                              \
        X(C_UnwrapKey, "SmOyan")                                                                           \
        X(C_DeriveKey, "SmOan")                                                                            \
        X(C_SeedRandom, "Sy")                                                                              \
        X(C_GenerateRandom, "Sr")                                                                          \
        X(C_LoginUser, "Suyy")                                                                             \
        X(C_SessionCancel, "Su")                                                                           \
        X(C_MessageEncryptInit, "SmO")                                                                     \
        X(C_EncryptMessage, "Spyyo")                                                                       \
        X(C_EncryptMessageBegin, "Spy")                                                                    \
        X(C_EncryptMessageNext, "Spyou")                                                                   \
        X(C_MessageEncryptFinal, "S")                                                                      \
        X(C_MessageDecryptInit, "SmO")                                                                     \
        X(C_DecryptMessage, "Spyyo")                                                                       \
        X(C_DecryptMessageBegin, "Spy")                                                                    \
        X(C_DecryptMessageNext, "Spyou")                                                                   \
        X(C_MessageDecryptFinal, "S")                                                                      \
        X(C_MessageSignInit, "SmO")                                                                        \
        X(C_SignMessage, "Spyo")                                                                           \
        X(C_SignMessageBegin, "Sp")                                                                        \
        X(C_SignMessageNext, "Spyo")                                                                       \
        X(C_MessageSignFinal, "S")                                                                         \
        X(C_MessageVerifyInit, "SmO")                                                                      \
        X(C_VerifyMessage, "Spyy")                                                                         \
        X(C_VerifyMessageBegin, "Sp")                                                                      \
        X(C_VerifyMessageNext, "Spyy")                                                                     \
        X(C_MessageVerifyFinal, "S")

typedef enum WireCall {
#define X(name, sig) KYSO_CALL_##name,
        KYSO_WIRE_CALLS(X)
#undef X
        _KYSO_CALL_MAX,
        _KYSO_CALL_INVALID = -EINVAL,
} WireCall;

/* Flags the server returns from HELLO. */
#define KYSO_SERVER_FLAG_BLOCKING_SLOT_EVENTS 0x1U

typedef enum WireAttrKind {
        WIRE_ATTR_BYTES,
        WIRE_ATTR_ULONGS,
        WIRE_ATTR_TEMPLATE,
        _WIRE_ATTR_MAX,
        _WIRE_ATTR_INVALID = -EINVAL,
} WireAttrKind;

typedef enum WireParam {
        WIRE_PARAM_NONE,                  /* pParameter NULL; ulParameterLen travels as u64 */
        WIRE_PARAM_BYTES,                 /* raw bytes */
        WIRE_PARAM_ULONG,                 /* one CK_ULONG (e.g. CK_MAC_GENERAL_PARAMS) */
        WIRE_PARAM_OBJECT_HANDLE,         /* one CK_OBJECT_HANDLE the server maps (CONCATENATE_BASE_AND_KEY) */
        WIRE_PARAM_RSA_PKCS_PSS,
        WIRE_PARAM_RSA_PKCS_OAEP,
        WIRE_PARAM_AES_CTR,
        WIRE_PARAM_GCM,
        WIRE_PARAM_CCM,
        WIRE_PARAM_ECDH1_DERIVE,
        WIRE_PARAM_KEY_DERIVATION_STRING, /* CK_KEY_DERIVATION_STRING_DATA */
        WIRE_PARAM_DES_CBC_ENCRYPT_DATA,
        WIRE_PARAM_AES_CBC_ENCRYPT_DATA,
        WIRE_PARAM_EDDSA,
        WIRE_PARAM_CHACHA20,
        WIRE_PARAM_SALSA20_CHACHA20_POLY1305,
        WIRE_PARAM_GCM_MESSAGE,           /* 'p' only */
        WIRE_PARAM_CCM_MESSAGE,           /* 'p' only */
        WIRE_PARAM_CHACHA_POLY_MESSAGE,   /* 'p' only: CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS */
        _WIRE_PARAM_MAX,
        _WIRE_PARAM_INVALID = -EINVAL,
} WireParam;

/* One logical argument of a call; which fields matter depends on its signature character (above). */
typedef struct WireArg {
        CK_ULONG value;
        void *ptr;
        CK_ULONG len;
        CK_ULONG *len_ptr;
} WireArg;

typedef struct WireCallInfo {
        const char *name;      /* "C_Sign" */
        const char *signature; /* "Syo" */
} WireCallInfo;

/* NULL for an id outside the table. */
const WireCallInfo *wire_call_info(WireCall call);
WireCall wire_call_from_name(const char *name);

/* Whether a reply with this return value carries outputs (see above). */
bool wire_rv_has_outputs(WireCall call, CK_RV rv);

/* How an attribute type's value travels; WIRE_ATTR_BYTES for anything not known to be otherwise. */
WireAttrKind wire_attribute_kind(CK_ATTRIBUTE_TYPE type);
/* The structure a mechanism's parameter is; WIRE_PARAM_BYTES if not known. */
WireParam wire_mechanism_param(CK_MECHANISM_TYPE mechanism);
/* The native size of a parameter structure; 0 for WIRE_PARAM_NONE and WIRE_PARAM_BYTES. */
size_t wire_param_struct_size(WireParam kind);
/* The layout of a 3.0 message parameter for a mechanism; WIRE_PARAM_BYTES if not known. */
WireParam wire_message_param(CK_MECHANISM_TYPE mechanism);

/*
 * Reads the 4-byte header of a frame: the payload length, or -EMSGSIZE if
 * it exceeds KYSO_WIRE_FRAME_MAX, or -EBADMSG if it is shorter than the
 * smallest payload (8 bytes).
 */
int wire_frame_length(const uint8_t header[KYSO_WIRE_HEADER_SIZE], size_t *ret_len);

/* Serial and call id of a payload, without decoding the rest. -EBADMSG if too short. */
int wire_peek(const uint8_t *payload, size_t size, uint32_t *ret_serial, uint32_t *ret_call);

/*
 * Client side. Appends a whole frame (header included) to out. args has one
 * entry per signature character, pointing at the caller's memory. Returns 0,
 * -EINVAL for an unknown call or a malformed argument (e.g. a NULL count
 * pointer where the signature needs one), -EMSGSIZE if the frame would exceed
 * KYSO_WIRE_FRAME_MAX, -ENOMEM.
 */
int wire_encode_request(Buffer *out, uint32_t serial, WireCall call, const WireArg *args);

/*
 * Client side. Decodes a reply payload for the call whose arguments are args
 * (the same array the request was encoded from): stores the CK_RV, and when
 * outputs are present writes them into the caller's memory those args point
 * at. Returns 0, or -EBADMSG for a malformed reply, one for another call,
 * trailing bytes, or output that does not fit what the request offered.
 */
int wire_decode_reply(const uint8_t *payload, size_t size, WireCall call, WireArg *args, CK_RV *ret_rv);

/*
 * Server side. Decodes a request payload: the serial, the call, and its
 * arguments as native values allocated in arena (output buffers sized by
 * the capacities the client sent, zeroed output structures, len_ptr and
 * output ptr pointing inside args as described above), except input byte
 * strings (kind 'y': data to sign, a PIN), which point into payload itself:
 * payload must stay allocated, and unchanged, while args are used, and is
 * the caller's to wipe when it may have carried a secret. Returns 0, -EBADMSG
 * for a malformed payload (truncated, trailing bytes, bad kind, counts over
 * the limits), -EPROTO for an unknown call id (ret_serial and ret_call are
 * still set), -ENOMEM when the arena limit is reached.
 */
int wire_decode_request(const uint8_t *payload, size_t size, Arena *arena, uint32_t *ret_serial, WireCall *ret_call,
                        WireArg *args);

/* Server side. Appends a whole reply frame for a request decoded by wire_decode_request(). */
int wire_encode_reply(Buffer *out, uint32_t serial, WireCall call, CK_RV rv, const WireArg *args);

/* Appends an error reply that carries no outputs (e.g. for a call the server refused before running it). */
int wire_encode_error_reply(Buffer *out, uint32_t serial, WireCall call, CK_RV rv);
