/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Mechanism parameters ('m') and PKCS#11 3.0 message parameters ('p'):
 *
 *   server: a request for a call that carries one, the arguments before it fixed and valid, the
 *           fuzzed bytes in its place and the arguments after it fixed and valid again (so the
 *           input is exactly one encoded mechanism or message parameter); the decoded request is
 *           re-encoded (canonical-form check), a backend writes into the message parameter's
 *           buffers (a generated IV, a tag), and the reply is encoded;
 *   client: the reply decoder for a message parameter, with the caller's structure (kind, IV,
 *           nonce, tag lengths) chosen from the input and malloc()ed at exact sizes; a reply it
 *           refuses must leave the caller's memory untouched.
 *
 * Input: u8 selector, FUZZ_CONFIG_SIZE bytes of configuration, then the fuzzed bytes.
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz-args.h"
#include "fuzz-request.h"
#include "wire.h"

static const WireCall mech_server_calls[] = {
        KYSO_CALL_C_EncryptInit,        KYSO_CALL_C_DecryptInit,         KYSO_CALL_C_DigestInit,
        KYSO_CALL_C_SignInit,           KYSO_CALL_C_VerifyInit,          KYSO_CALL_C_SignRecoverInit,
        KYSO_CALL_C_VerifyRecoverInit,  KYSO_CALL_C_GenerateKey,         KYSO_CALL_C_GenerateKeyPair,
        KYSO_CALL_C_WrapKey,            KYSO_CALL_C_UnwrapKey,           KYSO_CALL_C_DeriveKey,
        KYSO_CALL_C_MessageEncryptInit, KYSO_CALL_C_MessageDecryptInit,  KYSO_CALL_C_MessageSignInit,
        KYSO_CALL_C_MessageVerifyInit,  KYSO_CALL_C_EncryptMessage,      KYSO_CALL_C_EncryptMessageBegin,
        KYSO_CALL_C_EncryptMessageNext, KYSO_CALL_C_DecryptMessage,      KYSO_CALL_C_DecryptMessageBegin,
        KYSO_CALL_C_DecryptMessageNext, KYSO_CALL_C_SignMessage,         KYSO_CALL_C_SignMessageBegin,
        KYSO_CALL_C_SignMessageNext,    KYSO_CALL_C_VerifyMessage,       KYSO_CALL_C_VerifyMessageBegin,
        KYSO_CALL_C_VerifyMessageNext,
};

/* Calls whose reply carries only the message parameter, for the client side. */
static const WireCall mech_client_calls[] = {
        KYSO_CALL_C_EncryptMessageBegin,
        KYSO_CALL_C_DecryptMessageBegin,
        KYSO_CALL_C_SignMessageBegin,
        KYSO_CALL_C_VerifyMessageBegin,
};

#define MECH_MODES (ELEMENTSOF(mech_server_calls) + ELEMENTSOF(mech_client_calls))

/* A backend that fills every buffer of the message parameter it was given (IV, nonce, tag). */
static void mech_play_backend(WireArg *arg)
{
        size_t size = wire_param_struct_size(arg->value);

        if (!arg->ptr || size == 0 || arg->len != size)
                return;
        switch (arg->value) {
        case WIRE_PARAM_GCM_MESSAGE: {
                CK_GCM_MESSAGE_PARAMS *p = arg->ptr;

                if (p->pIv && p->ulIvLen <= 64)
                        memset(p->pIv, 'i', p->ulIvLen);
                if (p->pTag && p->ulTagBits <= 512)
                        memset(p->pTag, 't', (p->ulTagBits + 7) / 8);
                break;
        }
        case WIRE_PARAM_CCM_MESSAGE: {
                CK_CCM_MESSAGE_PARAMS *p = arg->ptr;

                if (p->pNonce && p->ulNonceLen <= 64)
                        memset(p->pNonce, 'n', p->ulNonceLen);
                if (p->pMAC && p->ulMACLen <= 64)
                        memset(p->pMAC, 'm', p->ulMACLen);
                break;
        }
        case WIRE_PARAM_CHACHA_POLY_MESSAGE: {
                CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS *p = arg->ptr;

                if (p->pNonce && p->ulNonceLen <= 64)
                        memset(p->pNonce, 'n', p->ulNonceLen);
                if (p->pTag)
                        memset(p->pTag, 't', 16);
                break;
        }
        default:
                break;
        }
        /* A backend may also scribble over the structure itself; the reply is built from the copy. */
        memset(arg->ptr, 0xee, size);
}

static void mech_run_server(WireCall call, const uint8_t *cfg, const uint8_t *tail, size_t tail_size)
{
        WireArg args[KYSO_WIRE_ARGS_MAX];
        const char *sig = wire_call_info(call)->signature;
        size_t at = fuzz_sig_find(call, "mp");
        uint32_t serial;
        WireCall got;
        Arena *arena;
        Buffer req, reply;
        int r;

        buffer_init(&req, KYSO_WIRE_FRAME_MAX);
        fuzz_canned_header(&req, call);
        fuzz_canned_args(&req, call, 0, at);
        buffer_add_bytes(&req, tail, tail_size);
        fuzz_canned_args(&req, call, at + 1, SIZE_MAX);
        if (!buffer_ok(&req))
                goto out_req;

        arena = arena_new(FUZZ_ARENA_LIMIT);
        if (!arena)
                goto out_req;
        r = wire_decode_request(req.data, req.len, arena, &serial, &got, args);
        if (r < 0)
                goto out;
        fuzz_check(got == call && serial == 0x1234);
        fuzz_check_fixpoint(call, args);

        if (sig[at] == 'p')
                mech_play_backend(&args[at]);
        buffer_init(&reply, KYSO_WIRE_HEADER_SIZE + KYSO_WIRE_FRAME_MAX);
        (void) wire_encode_reply(&reply, serial, call, (cfg[0] & 1) ? CKR_OK : CKR_BUFFER_TOO_SMALL, args);
        buffer_done(&reply);
out:
        arena_free(arena);
out_req:
        buffer_done(&req);
}

/* The caller's message parameter for a *MessageBegin call, from the configuration. */
static void mech_client_param(const uint8_t *cfg, FuzzTrack *t, WireArg *arg)
{
        uint8_t n = cfg[1] % 40, m = cfg[2];

        switch (cfg[0] % 6) {
        case 0:
                arg->value = cfg[3] & 1 ? CKM_AES_GCM : CKM_VENDOR_DEFINED;
                arg->ptr = NULL;
                arg->len = m;
                break;
        case 1: /* raw bytes, possibly the size of a known structure for a mechanism kyso knows */
                arg->value = cfg[3] & 1 ? CKM_AES_GCM : CKM_VENDOR_DEFINED;
                arg->len = (cfg[3] & 2) ? sizeof(CK_GCM_MESSAGE_PARAMS) : n;
                arg->ptr = fuzz_track_alloc(t, arg->len);
                break;
        case 2: {
                CK_GCM_MESSAGE_PARAMS *p = fuzz_track_alloc(t, sizeof(*p));

                memset(p, 0, sizeof(*p));
                p->ulIvLen = n;
                p->pIv = (cfg[3] & 1) ? NULL : fuzz_track_alloc(t, n);
                p->ulIvFixedBits = cfg[4];
                p->ivGenerator = cfg[5] % 4;
                p->ulTagBits = m;
                p->pTag = (cfg[3] & 2) ? NULL : fuzz_track_alloc(t, (p->ulTagBits + 7) / 8);
                arg->value = CKM_AES_GCM;
                arg->ptr = p;
                arg->len = sizeof(*p);
                break;
        }
        case 3: {
                CK_CCM_MESSAGE_PARAMS *p = fuzz_track_alloc(t, sizeof(*p));

                memset(p, 0, sizeof(*p));
                p->ulDataLen = cfg[4];
                p->ulNonceLen = n;
                p->pNonce = (cfg[3] & 1) ? NULL : fuzz_track_alloc(t, n);
                p->ulNonceFixedBits = cfg[5];
                p->nonceGenerator = cfg[6] % 4;
                p->ulMACLen = m % 17;
                p->pMAC = (cfg[3] & 2) ? NULL : fuzz_track_alloc(t, p->ulMACLen);
                arg->value = CKM_AES_CCM;
                arg->ptr = p;
                arg->len = sizeof(*p);
                break;
        }
        case 4: {
                CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS *p = fuzz_track_alloc(t, sizeof(*p));

                memset(p, 0, sizeof(*p));
                p->ulNonceLen = n;
                p->pNonce = (cfg[3] & 1) ? NULL : fuzz_track_alloc(t, n);
                p->pTag = (cfg[3] & 2) ? NULL : fuzz_track_alloc(t, 16);
                arg->value = CKM_CHACHA20_POLY1305;
                arg->ptr = p;
                arg->len = sizeof(*p);
                break;
        }
        default: /* a structure of the wrong size for its mechanism travels as bytes */
                arg->value = CKM_AES_CCM;
                arg->len = sizeof(CK_GCM_MESSAGE_PARAMS) + (m % 3);
                arg->ptr = fuzz_track_alloc(t, arg->len);
                break;
        }
}

static void mech_run_client(WireCall call, const uint8_t *cfg, const uint8_t *tail, size_t tail_size)
{
        WireArg args[KYSO_WIRE_ARGS_MAX] = { 0 };
        const char *sig = wire_call_info(call)->signature;
        FuzzTrack t = { .n = 0 };
        CK_RV rv;
        Buffer reply;
        int r;

        args[0].value = 1;
        for (size_t i = 1; sig[i]; i++)
                if (sig[i] == 'p')
                        mech_client_param(cfg, &t, &args[i]);
                else if (sig[i] == 'y') {
                        args[i].len = 3;
                        args[i].ptr = fuzz_track_alloc(&t, 3);
                }

        buffer_init(&reply, KYSO_WIRE_FRAME_MAX);
        buffer_add_u32(&reply, 7);
        buffer_add_u32(&reply, call);
        buffer_add_u64(&reply, CKR_OK);
        buffer_add_u8(&reply, 1);
        buffer_add_bytes(&reply, tail, tail_size);
        if (buffer_ok(&reply)) {
                fuzz_track_snapshot(&t);
                r = wire_decode_reply(reply.data, reply.len, call, args, &rv);
                if (r < 0)
                        fuzz_check(fuzz_track_unchanged(&t));
        }
        buffer_done(&reply);
        fuzz_track_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const uint8_t *cfg;
        size_t mode;

        if (size < 1 + FUZZ_CONFIG_SIZE || size > KYSO_WIRE_FRAME_MAX / 2)
                return 0;
        mode = data[0] % MECH_MODES;
        cfg = data + 1;
        data += 1 + FUZZ_CONFIG_SIZE;
        size -= 1 + FUZZ_CONFIG_SIZE;
        if (mode < ELEMENTSOF(mech_server_calls))
                mech_run_server(mech_server_calls[mode], cfg, data, size);
        else
                mech_run_client(mech_client_calls[mode - ELEMENTSOF(mech_server_calls)], cfg, data, size);
        return 0;
}
