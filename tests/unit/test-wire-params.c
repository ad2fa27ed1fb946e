/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The wire codec's parameter structures: every mechanism parameter kind through C_DeriveKey, and the
 * message parameters (GCM, CCM, ChaCha20-Poly1305, bytes, none) in and out through the message calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "macro.h"
#include "wire.h"

#include "test-wire-util.h"

/* Every mechanism parameter structure, through C_DeriveKey's mechanism. */
static void check_mechanism_trip(CK_MECHANISM *m, WireParam kind)
{
        WireArg cargs[KYSO_WIRE_ARGS_MAX] = {};
        CK_OBJECT_HANDLE h = 0;
        CK_MECHANISM *sm;
        Trip t = {};

        cargs[1].ptr = m;
        cargs[4].ptr = &h;
        trip_request(&t, KYSO_CALL_C_DeriveKey, cargs);
        sm = t.sargs[1].ptr;
        assert_non_null(sm);
        assert_int_equal(sm->mechanism, m->mechanism);
        if (kind == WIRE_PARAM_NONE) {
                assert_null(sm->pParameter);
                assert_int_equal(sm->ulParameterLen, m->ulParameterLen);
        } else {
                assert_non_null(sm->pParameter);
                assert_ptr_not_equal(sm->pParameter, m->pParameter);
                assert_int_equal(sm->ulParameterLen, m->ulParameterLen);
        }
        check_request_truncations(KYSO_CALL_C_DeriveKey, t.req, t.req_len);
        trip_done(&t);
}

static CK_MECHANISM *server_mechanism(CK_MECHANISM *m, Trip *t)
{
        WireArg cargs[KYSO_WIRE_ARGS_MAX] = {};
        CK_OBJECT_HANDLE h = 0;

        cargs[1].ptr = m;
        cargs[4].ptr = &h;
        trip_request(t, KYSO_CALL_C_DeriveKey, cargs);
        return t->sargs[1].ptr;
}

static void test_mechanism_param_kinds(void **state)
{
        uint8_t iv16[16], data[20], aad[8], nonce[12], ctx[5], counter[4], cnonce[12];
        Trip t = {};
        CK_MECHANISM m, *sm;

        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t) i;
        memset(iv16, 0xa5, sizeof(iv16));
        memset(aad, 0xaa, sizeof(aad));
        memset(nonce, 0x0e, sizeof(nonce));
        memset(ctx, 0xc7, sizeof(ctx));
        memset(counter, 0x01, sizeof(counter));
        memset(cnonce, 0x02, sizeof(cnonce));

        /* NONE */
        m = (CK_MECHANISM) { CKM_RSA_PKCS, NULL, 0 };
        check_mechanism_trip(&m, WIRE_PARAM_NONE);
        m = (CK_MECHANISM) { CKM_EDDSA, NULL, 0 }; /* CK_EDDSA_PARAMS may be absent */
        check_mechanism_trip(&m, WIRE_PARAM_NONE);

        /* BYTES: an IV */
        m = (CK_MECHANISM) { CKM_AES_CBC_PAD, iv16, sizeof(iv16) };
        sm = server_mechanism(&m, &t);
        assert_memory_equal(sm->pParameter, iv16, 16);
        assert_int_equal(sm->ulParameterLen, 16);
        trip_done(&t);
        /* BYTES, empty but present */
        m = (CK_MECHANISM) { CKM_AES_CBC_PAD, iv16, 0 };
        sm = server_mechanism(&m, &t);
        assert_non_null(sm->pParameter);
        assert_int_equal(sm->ulParameterLen, 0);
        trip_done(&t);

        /* ULONG */
        {
                CK_ULONG p = 16; /* CK_MAC_GENERAL_PARAMS */

                m = (CK_MECHANISM) { CKM_SHA256_HMAC_GENERAL, &p, sizeof(p) };
                sm = server_mechanism(&m, &t);
                assert_int_equal(*(CK_ULONG *) sm->pParameter, 16);
                trip_done(&t);
                check_mechanism_trip(&m, WIRE_PARAM_ULONG);
        }
        /* OBJECT_HANDLE */
        {
                CK_OBJECT_HANDLE p = 0x77;

                m = (CK_MECHANISM) { CKM_CONCATENATE_BASE_AND_KEY, &p, sizeof(p) };
                sm = server_mechanism(&m, &t);
                assert_int_equal(*(CK_OBJECT_HANDLE *) sm->pParameter, 0x77);
                trip_done(&t);
        }
        /* PSS (SHA3-224 variant) */
        {
                CK_RSA_PKCS_PSS_PARAMS p = { T_CKM_SHA3_224, 0x6, 28 }, *sp;

                m = (CK_MECHANISM) { T_CKM_SHA3_224_RSA_PKCS_PSS, &p, sizeof(p) };
                sm = server_mechanism(&m, &t);
                sp = sm->pParameter;
                assert_int_equal(sp->hashAlg, T_CKM_SHA3_224);
                assert_int_equal(sp->mgf, 6);
                assert_int_equal(sp->sLen, 28);
                trip_done(&t);
                check_mechanism_trip(&m, WIRE_PARAM_RSA_PKCS_PSS);
        }
        /* OAEP with and without a label */
        {
                CK_RSA_PKCS_OAEP_PARAMS p = { CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, data, 5 }, *sp;

                m = (CK_MECHANISM) { CKM_RSA_PKCS_OAEP, &p, sizeof(p) };
                sm = server_mechanism(&m, &t);
                sp = sm->pParameter;
                assert_int_equal(sp->hashAlg, CKM_SHA256);
                assert_int_equal(sp->source, CKZ_DATA_SPECIFIED);
                assert_int_equal(sp->ulSourceDataLen, 5);
                assert_memory_equal(sp->pSourceData, data, 5);
                assert_ptr_not_equal(sp->pSourceData, data);
                trip_done(&t);
                check_mechanism_trip(&m, WIRE_PARAM_RSA_PKCS_OAEP);
                p.pSourceData = NULL;
                p.ulSourceDataLen = 0;
                sm = server_mechanism(&m, &t);
                sp = sm->pParameter;
                assert_null(sp->pSourceData);
                assert_int_equal(sp->ulSourceDataLen, 0);
                trip_done(&t);
        }
        /* AES_CTR */
        {
                CK_AES_CTR_PARAMS p = { .ulCounterBits = 32 }, *sp;

                memcpy(p.cb, iv16, 16);
                p.cb[15] = 0x01;
                m = (CK_MECHANISM) { CKM_AES_CTR, &p, sizeof(p) };
                sm = server_mechanism(&m, &t);
                sp = sm->pParameter;
                assert_int_equal(sp->ulCounterBits, 32);
                assert_memory_equal(sp->cb, p.cb, 16);
                trip_done(&t);
        }
        /* GCM */
        {
                CK_GCM_PARAMS p = { nonce, 12, 96, aad, 8, 128 }, *sp;

                m = (CK_MECHANISM) { CKM_AES_GCM, &p, sizeof(p) };
                sm = server_mechanism(&m, &t);
                sp = sm->pParameter;
                assert_int_equal(sp->ulIvLen, 12);
                assert_int_equal(sp->ulIvBits, 96);
                assert_memory_equal(sp->pIv, nonce, 12);
                assert_int_equal(sp->ulAADLen, 8);
                assert_memory_equal(sp->pAAD, aad, 8);
                assert_int_equal(sp->ulTagBits, 128);
                trip_done(&t);
                check_mechanism_trip(&m, WIRE_PARAM_GCM);
        }
        /* CCM */
        {
                CK_CCM_PARAMS p = { 100, nonce, 11, aad, 8, 16 }, *sp;

                m = (CK_MECHANISM) { CKM_AES_CCM, &p, sizeof(p) };
                sm = server_mechanism(&m, &t);
                sp = sm->pParameter;
                assert_int_equal(sp->ulDataLen, 100);
                assert_int_equal(sp->ulNonceLen, 11);
                assert_memory_equal(sp->pNonce, nonce, 11);
                assert_memory_equal(sp->pAAD, aad, 8);
                assert_int_equal(sp->ulMACLen, 16);
                trip_done(&t);
        }
        /* ECDH1 */
        {
                CK_ECDH1_DERIVE_PARAMS p = { CKD_SHA256_KDF, 4, aad, 20, data }, *sp;

                m = (CK_MECHANISM) { CKM_ECDH1_DERIVE, &p, sizeof(p) };
                sm = server_mechanism(&m, &t);
                sp = sm->pParameter;
                assert_int_equal(sp->kdf, CKD_SHA256_KDF);
                assert_int_equal(sp->ulSharedDataLen, 4);
                assert_memory_equal(sp->pSharedData, aad, 4);
                assert_int_equal(sp->ulPublicDataLen, 20);
                assert_memory_equal(sp->pPublicData, data, 20);
                trip_done(&t);
                check_mechanism_trip(&m, WIRE_PARAM_ECDH1_DERIVE);
        }
        /* KEY_DERIVATION_STRING */
        {
                CK_KEY_DERIVATION_STRING_DATA p = { data, 16 }, *sp;

                m = (CK_MECHANISM) { CKM_AES_ECB_ENCRYPT_DATA, &p, sizeof(p) };
                sm = server_mechanism(&m, &t);
                sp = sm->pParameter;
                assert_int_equal(sp->ulLen, 16);
                assert_memory_equal(sp->pData, data, 16);
                trip_done(&t);
        }
        /* DES_CBC_ENCRYPT_DATA and AES_CBC_ENCRYPT_DATA */
        {
                CK_DES_CBC_ENCRYPT_DATA_PARAMS p = { .pData = data, .length = 16 }, *sp;
                CK_AES_CBC_ENCRYPT_DATA_PARAMS q = { .pData = data, .length = 16 }, *sq;

                memcpy(p.iv, iv16, 8);
                memcpy(q.iv, iv16, 16);
                m = (CK_MECHANISM) { CKM_DES3_CBC_ENCRYPT_DATA, &p, sizeof(p) };
                sm = server_mechanism(&m, &t);
                sp = sm->pParameter;
                assert_memory_equal(sp->iv, iv16, 8);
                assert_int_equal(sp->length, 16);
                assert_memory_equal(sp->pData, data, 16);
                trip_done(&t);
                m = (CK_MECHANISM) { CKM_AES_CBC_ENCRYPT_DATA, &q, sizeof(q) };
                sm = server_mechanism(&m, &t);
                sq = sm->pParameter;
                assert_memory_equal(sq->iv, iv16, 16);
                assert_int_equal(sq->length, 16);
                assert_memory_equal(sq->pData, data, 16);
                trip_done(&t);
        }
        /* EDDSA */
        {
                CK_EDDSA_PARAMS p = { CK_TRUE, 5, ctx }, *sp;

                m = (CK_MECHANISM) { CKM_EDDSA, &p, sizeof(p) };
                sm = server_mechanism(&m, &t);
                sp = sm->pParameter;
                assert_int_equal(sp->phFlag, CK_TRUE);
                assert_int_equal(sp->ulContextDataLen, 5);
                assert_memory_equal(sp->pContextData, ctx, 5);
                trip_done(&t);
                check_mechanism_trip(&m, WIRE_PARAM_EDDSA);
        }
        /* CHACHA20: lengths from bit counts */
        {
                CK_CHACHA20_PARAMS p = { counter, 32, cnonce, 96 }, *sp;

                m = (CK_MECHANISM) { 0x1226, &p, sizeof(p) };
                sm = server_mechanism(&m, &t);
                sp = sm->pParameter;
                assert_int_equal(sp->blockCounterBits, 32);
                assert_memory_equal(sp->pBlockCounter, counter, 4);
                assert_int_equal(sp->ulNonceBits, 96);
                assert_memory_equal(sp->pNonce, cnonce, 12);
                trip_done(&t);
                check_mechanism_trip(&m, WIRE_PARAM_CHACHA20);
        }
        /* SALSA20_CHACHA20_POLY1305 */
        {
                CK_SALSA20_CHACHA20_POLY1305_PARAMS p = { cnonce, 12, aad, 8 }, *sp;

                m = (CK_MECHANISM) { T_CKM_SALSA20_POLY1305, &p, sizeof(p) };
                sm = server_mechanism(&m, &t);
                sp = sm->pParameter;
                assert_int_equal(sp->ulNonceLen, 12);
                assert_memory_equal(sp->pNonce, cnonce, 12);
                assert_int_equal(sp->ulAADLen, 8);
                assert_memory_equal(sp->pAAD, aad, 8);
                trip_done(&t);
        }
        /* A known mechanism with a wrongly sized parameter travels as bytes, for the backend to refuse. */
        {
                uint8_t odd[7] = { 1, 2, 3, 4, 5, 6, 7 };

                m = (CK_MECHANISM) { CKM_RSA_PKCS_PSS, odd, sizeof(odd) };
                sm = server_mechanism(&m, &t);
                assert_int_equal(sm->ulParameterLen, 7);
                assert_memory_equal(sm->pParameter, odd, 7);
                trip_done(&t);
        }
}

/* Message parameters, in and out, for every kind, through C_EncryptMessage. */
static void message_trip(void *param, CK_ULONG len, CK_MECHANISM_TYPE mech, WireParam kind,
                         void (*backend)(WireArg *arg), void (*check)(void))
{
        WireArg cargs[KYSO_WIRE_ARGS_MAX] = {};
        uint8_t in[10] = "plaintext", out[32];
        CK_ULONG out_len = sizeof(out);
        Trip t = {};
        CK_RV rv;

        cargs[1] = (WireArg) { .value = mech, .ptr = param, .len = len };
        cargs[2] = (WireArg) { .ptr = (void *) "aad", .len = 3 };
        cargs[3] = (WireArg) { .ptr = in, .len = sizeof(in) };
        cargs[4] = (WireArg) { .ptr = out, .len_ptr = &out_len };
        trip_request(&t, KYSO_CALL_C_EncryptMessage, cargs);
        assert_int_equal(t.sargs[1].value, kind);
        if (kind == WIRE_PARAM_NONE)
                assert_null(t.sargs[1].ptr);
        else
                assert_non_null(t.sargs[1].ptr);
        assert_int_equal(t.sargs[1].len, len);
        backend(&t.sargs[1]);
        *t.sargs[4].len_ptr = 0;
        assert_int_equal(trip_reply(&t, CKR_OK, cargs, &rv), 0);
        assert_int_equal(rv, CKR_OK);
        check();
        check_request_truncations(KYSO_CALL_C_EncryptMessage, t.req, t.req_len);
        trip_done(&t);
}

static uint8_t msg_iv[12], msg_tag[16], msg_mac[8], msg_bytes[5];

static void gcm_backend(WireArg *arg)
{
        CK_GCM_MESSAGE_PARAMS *p = arg->ptr;

        assert_int_equal(p->ulIvLen, 12);
        assert_int_equal(p->ivGenerator, T_CKG_GENERATE);
        assert_int_equal(p->ulTagBits, 96);
        memset(p->pIv, 0x61, p->ulIvLen);
        memset(p->pTag, 0x62, 12);
}

static void gcm_check(void)
{
        for (int i = 0; i < 12; i++) {
                assert_int_equal(msg_iv[i], 0x61);
                assert_int_equal(msg_tag[i], 0x62);
        }
        assert_int_equal(msg_tag[12], 0); /* a 96-bit tag is 12 bytes: nothing beyond */
}

static void ccm_backend(WireArg *arg)
{
        CK_CCM_MESSAGE_PARAMS *p = arg->ptr;

        assert_int_equal(p->ulDataLen, 10);
        assert_int_equal(p->ulNonceLen, 12);
        assert_int_equal(p->ulNonceFixedBits, 8);
        assert_int_equal(p->nonceGenerator, T_CKG_GENERATE_RANDOM);
        assert_int_equal(p->ulMACLen, 8);
        memset(p->pNonce, 0x71, 12);
        memset(p->pMAC, 0x72, 8);
}

static void ccm_check(void)
{
        for (int i = 0; i < 12; i++)
                assert_int_equal(msg_iv[i], 0x71);
        for (int i = 0; i < 8; i++)
                assert_int_equal(msg_mac[i], 0x72);
}

static void chacha_backend(WireArg *arg)
{
        CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS *p = arg->ptr;

        assert_int_equal(p->ulNonceLen, 12);
        assert_int_equal(p->pNonce[0], 0x03);
        memset(p->pTag, 0x81, 16);
}

static void chacha_check(void)
{
        for (int i = 0; i < 16; i++)
                assert_int_equal(msg_tag[i], 0x81);
        assert_int_equal(msg_iv[0], 0x03);
}

static void bytes_backend(WireArg *arg)
{
        assert_memory_equal(arg->ptr, "abcde", 5);
        memcpy(arg->ptr, "ABCDE", 5);
}

static void bytes_check(void)
{
        assert_memory_equal(msg_bytes, "ABCDE", 5);
}

static void none_backend(WireArg *arg)
{
        assert_null(arg->ptr);
}

static void none_check(void)
{
}

static void test_message_params(void **state)
{
        CK_GCM_MESSAGE_PARAMS gcm = { msg_iv, 12, 0, T_CKG_GENERATE, msg_tag, 96 };
        CK_CCM_MESSAGE_PARAMS ccm = { 10, msg_iv, 12, 8, T_CKG_GENERATE_RANDOM, msg_mac, 8 };
        CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS chacha = { msg_iv, 12, msg_tag };

        memset(msg_tag, 0, sizeof(msg_tag));
        message_trip(&gcm, sizeof(gcm), CKM_AES_GCM, WIRE_PARAM_GCM_MESSAGE, gcm_backend, gcm_check);
        message_trip(&ccm, sizeof(ccm), CKM_AES_CCM, WIRE_PARAM_CCM_MESSAGE, ccm_backend, ccm_check);
        memset(msg_iv, 0x03, sizeof(msg_iv));
        message_trip(&chacha, sizeof(chacha), 0x4021, WIRE_PARAM_CHACHA_POLY_MESSAGE, chacha_backend,
                     chacha_check);
        memcpy(msg_bytes, "abcde", 5);
        message_trip(msg_bytes, 5, CKM_VENDOR_DEFINED, WIRE_PARAM_BYTES, bytes_backend, bytes_check);
        message_trip(NULL, 0, CKM_AES_GCM, WIRE_PARAM_NONE, none_backend, none_check);
        /* A known mechanism but the wrong size: bytes. */
        memcpy(msg_bytes, "abcde", 5);
        message_trip(msg_bytes, 5, CKM_AES_GCM, WIRE_PARAM_BYTES, bytes_backend, bytes_check);
}

/* A reply whose message parameter buffers have other lengths than the request's is refused. */
static void test_message_param_reply_mismatch(void **state)
{
        uint8_t iv[12] = {}, tag[16] = {}, iv2[16] = {};
        CK_GCM_MESSAGE_PARAMS gcm = { iv, 12, 0, T_CKG_GENERATE, tag, 128 };
        CK_GCM_MESSAGE_PARAMS gcm2 = { iv2, 16, 0, T_CKG_GENERATE, tag, 128 };
        WireArg cargs[KYSO_WIRE_ARGS_MAX] = {}, cargs2[KYSO_WIRE_ARGS_MAX] = {};
        Trip t = {};
        CK_RV rv;

        cargs[1] = (WireArg) { .value = CKM_AES_GCM, .ptr = &gcm2, .len = sizeof(gcm2) };
        trip_request(&t, KYSO_CALL_C_SignMessageBegin, cargs);
        memset(iv2, 0xee, sizeof(iv2));
        cargs2[1] = (WireArg) { .value = CKM_AES_GCM, .ptr = &gcm, .len = sizeof(gcm) };
        /* The reply carries a 16-byte IV; this caller's IV holds 12. */
        assert_int_equal(trip_reply(&t, CKR_OK, cargs2, &rv), -EBADMSG);
        for (size_t i = 0; i < sizeof(iv); i++)
                assert_int_equal(iv[i], 0);
        trip_done(&t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_mechanism_param_kinds),
                cmocka_unit_test(test_message_params),
                cmocka_unit_test(test_message_param_reply_mismatch),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
