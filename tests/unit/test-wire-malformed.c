/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The ways a frame can be wrong: bad headers, unknown calls, arguments the encoder refuses, requests
 * and replies built by hand that the decoder must refuse, and the arena limit on outputs.
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

/* ---- malformed frames ---- */

static void test_frame_header(void **state)
{
        uint8_t h[4];
        size_t len = 0;

        h[0] = 0x01, h[1] = 0x00, h[2] = 0x00, h[3] = 0x01; /* 16 MiB + 1 */
        assert_int_equal(wire_frame_length(h, &len), -EMSGSIZE);
        h[0] = 0xff;
        assert_int_equal(wire_frame_length(h, &len), -EMSGSIZE);
        h[0] = 0x01, h[3] = 0x00;
        assert_int_equal(wire_frame_length(h, &len), 0);
        assert_int_equal(len, KYSO_WIRE_FRAME_MAX);
        h[0] = 0, h[1] = 0, h[2] = 0, h[3] = 7;
        assert_int_equal(wire_frame_length(h, &len), -EBADMSG);
        h[3] = 8;
        assert_int_equal(wire_frame_length(h, &len), 0);
        assert_int_equal(len, 8);
}

static void test_peek_and_unknown_call(void **state)
{
        static const uint8_t p[] = { 0, 0, 0, 5, 0, 0, 0x10, 0 };
        WireArg args[KYSO_WIRE_ARGS_MAX];
        uint32_t serial = 0, id = 0;
        WireCall call = 0;
        Arena *a = arena_new(1024);

        assert_int_equal(wire_peek(p, sizeof(p), &serial, &id), 0);
        assert_int_equal(serial, 5);
        assert_int_equal(id, 0x1000);
        assert_int_equal(wire_peek(p, 7, &serial, &id), -EBADMSG);
        assert_int_equal(wire_decode_request(p, sizeof(p), a, &serial, &call, args), -EPROTO);
        assert_int_equal(serial, 5);
        assert_int_equal((uint32_t) call, 0x1000);
        assert_int_equal(wire_decode_request(p, 7, a, &serial, &call, args), -EBADMSG);
        arena_free(a);
}

static void test_encode_bad_arguments(void **state)
{
        WireArg args[KYSO_WIRE_ARGS_MAX] = {};
        uint8_t big;
        Buffer b;

        buffer_init(&b, SIZE_MAX);
        assert_int_equal(wire_encode_request(&b, 1, _KYSO_CALL_MAX, args), -EINVAL);
        /* C_Sign without a length pointer */
        assert_int_equal(wire_encode_request(&b, 1, KYSO_CALL_C_Sign, args), -EINVAL);
        /* C_OpenSession without a handle pointer */
        assert_int_equal(wire_encode_request(&b, 1, KYSO_CALL_C_OpenSession, args), -EINVAL);
        /* More data than a frame: refused before it is read. */
        args[1] = (WireArg) { .ptr = &big, .len = KYSO_WIRE_FRAME_MAX };
        assert_int_equal(wire_encode_request(&b, 1, KYSO_CALL_C_DigestUpdate, args), -EMSGSIZE);
        assert_int_equal(b.len, 0);
        assert_true(buffer_ok(&b));
        buffer_done(&b);

        /* A buffer with a small limit: -EMSGSIZE, and the buffer as it was. */
        buffer_init(&b, 20);
        buffer_add_u8(&b, 0x42);
        args[1] = (WireArg) { .ptr = "0123456789", .len = 10 };
        assert_int_equal(wire_encode_request(&b, 1, KYSO_CALL_C_DigestUpdate, args), -EMSGSIZE);
        assert_int_equal(b.len, 1);
        assert_true(buffer_ok(&b));
        buffer_done(&b);

        /* A template too deep, too long, or with a malformed nested value. */
        {
                CK_ATTRIBUTE inner[1] = { { CKA_WRAP_TEMPLATE, NULL, 0 } };
                CK_ATTRIBUTE mid[1] = { { CKA_WRAP_TEMPLATE, inner, sizeof(inner) } };
                CK_ATTRIBUTE top[1] = { { CKA_WRAP_TEMPLATE, mid, sizeof(mid) } };
                CK_ATTRIBUTE odd[1] = { { CKA_WRAP_TEMPLATE, mid, 5 } };
                CK_OBJECT_HANDLE h;

                buffer_init(&b, SIZE_MAX);
                args[1] = (WireArg) { .ptr = top, .len = 1 };
                args[2].ptr = &h;
                assert_int_equal(wire_encode_request(&b, 1, KYSO_CALL_C_CreateObject, args), -EINVAL);
                args[1] = (WireArg) { .ptr = mid, .len = 1 }; /* two levels are fine */
                assert_int_equal(wire_encode_request(&b, 1, KYSO_CALL_C_CreateObject, args), 0);
                buffer_reset(&b);
                args[1] = (WireArg) { .ptr = odd, .len = 1 };
                assert_int_equal(wire_encode_request(&b, 1, KYSO_CALL_C_CreateObject, args), -EINVAL);
                args[1] = (WireArg) { .ptr = top, .len = WIRE_TEMPLATE_COUNT_MAX + 1 };
                assert_int_equal(wire_encode_request(&b, 1, KYSO_CALL_C_CreateObject, args), -EINVAL);
                args[2] = (WireArg) { .ptr = top, .len = 1 };
                assert_int_equal(wire_encode_request(&b, 1, KYSO_CALL_C_GetAttributeValue, args), -EINVAL);
                assert_int_equal(b.len, 0);
                buffer_done(&b);
        }
}

/* Builds a request payload by hand: serial 1, call, then what the test writes. */
static void raw_begin(Buffer *b, WireCall call)
{
        buffer_init(b, SIZE_MAX);
        buffer_add_u32(b, 1);
        buffer_add_u32(b, call);
}

static int raw_decode(Buffer *b, size_t arena_limit)
{
        WireArg args[KYSO_WIRE_ARGS_MAX];
        uint32_t serial;
        WireCall call;
        Arena *a = arena_new(arena_limit);
        int r;

        r = wire_decode_request(b->data, b->len, a, &serial, &call, args);
        arena_free(a);
        buffer_done(b);
        return r;
}

static void raw_attr(Buffer *b, CK_ULONG type, uint8_t kind, uint8_t present, uint64_t len)
{
        buffer_add_u64(b, type);
        buffer_add_u8(b, kind);
        buffer_add_u8(b, present);
        buffer_add_u64(b, len);
}

static void test_malformed_requests(void **state)
{
        Buffer b;

        /* C_CreateObject: S a n */
#define CREATE(b) (raw_begin(&(b), KYSO_CALL_C_CreateObject), buffer_add_u64(&(b), 1))

        /* A valid one to start from. */
        CREATE(b);
        buffer_add_u8(&b, 1);
        buffer_add_u32(&b, 1);
        raw_attr(&b, CKA_LABEL, WIRE_ATTR_BYTES, 1, 2);
        buffer_add_bytes(&b, "hi", 2);
        assert_int_equal(raw_decode(&b, 4096), 0);

        /* Count over the limit. */
        CREATE(b);
        buffer_add_u8(&b, 1);
        buffer_add_u32(&b, WIRE_TEMPLATE_COUNT_MAX + 1);
        for (unsigned i = 0; i <= WIRE_TEMPLATE_COUNT_MAX; i++)
                raw_attr(&b, CKA_LABEL, WIRE_ATTR_BYTES, 0, 0);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);

        /* Count larger than the bytes that follow could hold. */
        CREATE(b);
        buffer_add_u8(&b, 1);
        buffer_add_u32(&b, 4000);
        raw_attr(&b, CKA_LABEL, WIRE_ATTR_BYTES, 0, 0);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);

        /* Nesting too deep: a template in a template in a template. */
        CREATE(b);
        buffer_add_u8(&b, 1);
        buffer_add_u32(&b, 1);
        raw_attr(&b, CKA_WRAP_TEMPLATE, WIRE_ATTR_TEMPLATE, 1, 1);
        raw_attr(&b, CKA_WRAP_TEMPLATE, WIRE_ATTR_TEMPLATE, 1, 1);
        raw_attr(&b, CKA_LABEL, WIRE_ATTR_BYTES, 0, 0);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
        /* ... while two levels are fine. */
        CREATE(b);
        buffer_add_u8(&b, 1);
        buffer_add_u32(&b, 1);
        raw_attr(&b, CKA_WRAP_TEMPLATE, WIRE_ATTR_TEMPLATE, 1, 1);
        raw_attr(&b, CKA_LABEL, WIRE_ATTR_BYTES, 0, 0);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), 0);

        /* A template type sent as raw bytes (they would be read as pointers). */
        CREATE(b);
        buffer_add_u8(&b, 1);
        buffer_add_u32(&b, 1);
        raw_attr(&b, CKA_WRAP_TEMPLATE, WIRE_ATTR_BYTES, 1, 24);
        buffer_add_bytes(&b, "0123456789abcdef01234567", 24);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
        /* A bytes type sent as a template. */
        CREATE(b);
        buffer_add_u8(&b, 1);
        buffer_add_u32(&b, 1);
        raw_attr(&b, CKA_LABEL, WIRE_ATTR_TEMPLATE, 1, 1);
        raw_attr(&b, CKA_LABEL, WIRE_ATTR_BYTES, 0, 0);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
        /* An unknown kind, a flag that is not 0 or 1. */
        CREATE(b);
        buffer_add_u8(&b, 1);
        buffer_add_u32(&b, 1);
        raw_attr(&b, CKA_LABEL, 7, 0, 0);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
        CREATE(b);
        buffer_add_u8(&b, 2);
        buffer_add_u32(&b, 0);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
        /* A ULONGS length that would overflow a multiplication. */
        CREATE(b);
        buffer_add_u8(&b, 1);
        buffer_add_u32(&b, 1);
        raw_attr(&b, CKA_ALLOWED_MECHANISMS, WIRE_ATTR_ULONGS, 1, UINT64_MAX / 4);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
        CREATE(b);
        buffer_add_u8(&b, 1);
        buffer_add_u32(&b, 1);
        raw_attr(&b, CKA_ALLOWED_MECHANISMS, WIRE_ATTR_ULONGS, 0, UINT64_MAX / 4);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
        /* Bytes longer than the frame. */
        CREATE(b);
        buffer_add_u8(&b, 1);
        buffer_add_u32(&b, 1);
        raw_attr(&b, CKA_LABEL, WIRE_ATTR_BYTES, 1, UINT64_MAX - 1);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);

        /* The arena limit. */
        CREATE(b);
        buffer_add_u8(&b, 1);
        buffer_add_u32(&b, 1);
        raw_attr(&b, CKA_VALUE, WIRE_ATTR_BYTES, 1, 5000);
        for (int i = 0; i < 5000; i++)
                buffer_add_u8(&b, (uint8_t) i);
        assert_int_equal(raw_decode(&b, 4096), -ENOMEM);
#undef CREATE

        /* C_SignInit: S m O. A struct kind that does not belong to the mechanism. */
        raw_begin(&b, KYSO_CALL_C_SignInit);
        buffer_add_u64(&b, 1);
        buffer_add_u8(&b, 1);
        buffer_add_u64(&b, CKM_RSA_PKCS);
        buffer_add_u8(&b, WIRE_PARAM_ULONG);
        buffer_add_u64(&b, 5);
        buffer_add_u64(&b, 2);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
        /* Raw bytes the size of the mechanism's structure. */
        raw_begin(&b, KYSO_CALL_C_SignInit);
        buffer_add_u64(&b, 1);
        buffer_add_u8(&b, 1);
        buffer_add_u64(&b, CKM_RSA_PKCS_OAEP);
        buffer_add_u8(&b, WIRE_PARAM_BYTES);
        buffer_add_u64(&b, sizeof(CK_RSA_PKCS_OAEP_PARAMS));
        for (size_t i = 0; i < sizeof(CK_RSA_PKCS_OAEP_PARAMS); i++)
                buffer_add_u8(&b, 0x41);
        buffer_add_u64(&b, 2);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
        /* A message-only kind in a mechanism, and an unknown kind. */
        raw_begin(&b, KYSO_CALL_C_SignInit);
        buffer_add_u64(&b, 1);
        buffer_add_u8(&b, 1);
        buffer_add_u64(&b, CKM_AES_GCM);
        buffer_add_u8(&b, WIRE_PARAM_GCM_MESSAGE);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
        raw_begin(&b, KYSO_CALL_C_SignInit);
        buffer_add_u64(&b, 1);
        buffer_add_u8(&b, 1);
        buffer_add_u64(&b, CKM_AES_GCM);
        buffer_add_u8(&b, _WIRE_PARAM_MAX);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
        /* CHACHA20 with a nonce length that disagrees with its bit count. */
        raw_begin(&b, KYSO_CALL_C_SignInit);
        buffer_add_u64(&b, 1);
        buffer_add_u8(&b, 1);
        buffer_add_u64(&b, 0x1226);
        buffer_add_u8(&b, WIRE_PARAM_CHACHA20);
        buffer_add_u64(&b, 32);
        buffer_add_u8(&b, 1);
        buffer_add_u64(&b, 8); /* 32 bits are 4 bytes */
        buffer_add_bytes(&b, "01234567", 8);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);

        /* C_GetAttributeValue: S O A. A nested request too deep, a count over the limit. */
        raw_begin(&b, KYSO_CALL_C_GetAttributeValue);
        buffer_add_u64(&b, 1);
        buffer_add_u64(&b, 2);
        buffer_add_u32(&b, 1);
        raw_attr(&b, CKA_WRAP_TEMPLATE, WIRE_ATTR_TEMPLATE, 1, 1);
        raw_attr(&b, CKA_WRAP_TEMPLATE, WIRE_ATTR_TEMPLATE, 1, 1);
        raw_attr(&b, CKA_LABEL, WIRE_ATTR_BYTES, 1, 1);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
        raw_begin(&b, KYSO_CALL_C_GetAttributeValue);
        buffer_add_u64(&b, 1);
        buffer_add_u64(&b, 2);
        buffer_add_u32(&b, WIRE_TEMPLATE_COUNT_MAX + 1);
        for (unsigned i = 0; i <= WIRE_TEMPLATE_COUNT_MAX; i++)
                raw_attr(&b, CKA_LABEL, WIRE_ATTR_BYTES, 0, 0);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
        /* A ULONGS type asked for as bytes. */
        raw_begin(&b, KYSO_CALL_C_GetAttributeValue);
        buffer_add_u64(&b, 1);
        buffer_add_u64(&b, 2);
        buffer_add_u32(&b, 1);
        raw_attr(&b, CKA_CLASS, WIRE_ATTR_BYTES, 1, 8);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
        /* Huge capacities are capped, so they cost the arena a frame, not 2^64. */
        raw_begin(&b, KYSO_CALL_C_GetAttributeValue);
        buffer_add_u64(&b, 1);
        buffer_add_u64(&b, 2);
        buffer_add_u32(&b, 1);
        raw_attr(&b, CKA_ALLOWED_MECHANISMS, WIRE_ATTR_ULONGS, 1, UINT64_MAX);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), 0);
        raw_begin(&b, KYSO_CALL_C_GetAttributeValue);
        buffer_add_u64(&b, 1);
        buffer_add_u64(&b, 2);
        buffer_add_u32(&b, 1);
        raw_attr(&b, CKA_VALUE, WIRE_ATTR_BYTES, 1, UINT64_MAX);
        assert_int_equal(raw_decode(&b, KYSO_WIRE_FRAME_MAX / 2), -ENOMEM);

        /* C_GenerateRandom: S r, more than a reply can carry. */
        raw_begin(&b, KYSO_CALL_C_GenerateRandom);
        buffer_add_u64(&b, 1);
        buffer_add_u64(&b, KYSO_WIRE_FRAME_MAX);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);

        /* C_GetSlotList: b l, a bool that is 2. */
        raw_begin(&b, KYSO_CALL_C_GetSlotList);
        buffer_add_u8(&b, 2);
        buffer_add_u8(&b, 1);
        buffer_add_u64(&b, 0);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);

        /* C_EncryptMessageBegin: S p y, with an unknown message kind and a mechanism kind. */
        raw_begin(&b, KYSO_CALL_C_EncryptMessageBegin);
        buffer_add_u64(&b, 1);
        buffer_add_u8(&b, WIRE_PARAM_GCM);
        assert_int_equal(raw_decode(&b, ARENA_LIMIT), -EBADMSG);
}

/* Builds a reply payload by hand for a call: serial, id, rv, outputs-present. */
static void raw_reply(Buffer *b, WireCall call, CK_RV rv, bool present)
{
        buffer_init(b, SIZE_MAX);
        buffer_add_u32(b, 1);
        buffer_add_u32(b, call);
        buffer_add_u64(b, rv);
        buffer_add_u8(b, present);
}

static void test_malformed_replies(void **state)
{
        WireArg args[KYSO_WIRE_ARGS_MAX] = {};
        uint8_t sig[8];
        CK_ULONG sig_len = sizeof(sig);
        CK_RV rv = 0;
        Buffer b;

        memset(sig, 0xcc, sizeof(sig));
        args[2] = (WireArg) { .ptr = sig, .len_ptr = &sig_len };

        /* Valid: 8 bytes into 8. */
        raw_reply(&b, KYSO_CALL_C_Sign, CKR_OK, true);
        buffer_add_u64(&b, 8);
        buffer_add_u8(&b, 1);
        buffer_add_bytes(&b, "abcdefgh", 8);
        assert_int_equal(wire_decode_reply(b.data, b.len, KYSO_CALL_C_Sign, args, &rv), 0);
        assert_memory_equal(sig, "abcdefgh", 8);
        buffer_done(&b);

        /* More than the capacity the request offered. */
        sig_len = 8;
        memset(sig, 0xcc, sizeof(sig));
        raw_reply(&b, KYSO_CALL_C_Sign, CKR_OK, true);
        buffer_add_u64(&b, 9);
        buffer_add_u8(&b, 1);
        buffer_add_bytes(&b, "abcdefghi", 9);
        assert_int_equal(wire_decode_reply(b.data, b.len, KYSO_CALL_C_Sign, args, &rv), -EBADMSG);
        assert_int_equal(sig[0], 0xcc);
        assert_int_equal(sig_len, 8);
        buffer_done(&b);

        /* Data for a length query. */
        args[2] = (WireArg) { .ptr = NULL, .len_ptr = &sig_len };
        raw_reply(&b, KYSO_CALL_C_Sign, CKR_OK, true);
        buffer_add_u64(&b, 1);
        buffer_add_u8(&b, 1);
        buffer_add_u8(&b, 'x');
        assert_int_equal(wire_decode_reply(b.data, b.len, KYSO_CALL_C_Sign, args, &rv), -EBADMSG);
        buffer_done(&b);
        args[2] = (WireArg) { .ptr = sig, .len_ptr = &sig_len };

        /* Outputs-present that contradicts the rv, both ways. */
        raw_reply(&b, KYSO_CALL_C_Sign, CKR_KEY_HANDLE_INVALID, true);
        buffer_add_u64(&b, 0);
        buffer_add_u8(&b, 0);
        assert_int_equal(wire_decode_reply(b.data, b.len, KYSO_CALL_C_Sign, args, &rv), -EBADMSG);
        buffer_done(&b);
        raw_reply(&b, KYSO_CALL_C_Sign, CKR_OK, false);
        assert_int_equal(wire_decode_reply(b.data, b.len, KYSO_CALL_C_Sign, args, &rv), -EBADMSG);
        buffer_done(&b);
        raw_reply(&b, KYSO_CALL_C_Sign, CKR_OK, 2);
        assert_int_equal(wire_decode_reply(b.data, b.len, KYSO_CALL_C_Sign, args, &rv), -EBADMSG);
        buffer_done(&b);

        /* 'l' over the capacity. */
        {
                CK_ULONG list[2] = {}, n = 2;

                memset(args, 0, sizeof(args));
                args[1] = (WireArg) { .ptr = list, .len_ptr = &n };
                raw_reply(&b, KYSO_CALL_C_GetSlotList, CKR_OK, true);
                buffer_add_u64(&b, 3);
                buffer_add_u8(&b, 1);
                buffer_add_u64(&b, 1);
                buffer_add_u64(&b, 2);
                buffer_add_u64(&b, 3);
                assert_int_equal(wire_decode_reply(b.data, b.len, KYSO_CALL_C_GetSlotList, args, &rv), -EBADMSG);
                assert_int_equal(list[0], 0);
                assert_int_equal(n, 2);
                buffer_done(&b);
        }
        /* 'H' over the limit. */
        {
                CK_OBJECT_HANDLE *h = NULL;
                CK_ULONG n = 0;

                memset(args, 0, sizeof(args));
                args[2] = (WireArg) { .ptr = &h, .len_ptr = &n };
                raw_reply(&b, KYSO_CALL_C_FindObjectsInit, CKR_OK, true);
                buffer_add_u32(&b, WIRE_LIST_COUNT_MAX + 1);
                for (unsigned i = 0; i <= WIRE_LIST_COUNT_MAX; i++)
                        buffer_add_u64(&b, i);
                assert_int_equal(wire_decode_reply(b.data, b.len, KYSO_CALL_C_FindObjectsInit, args, &rv),
                                 -EBADMSG);
                assert_null(h);
                buffer_done(&b);
                /* A count the bytes cannot hold. */
                raw_reply(&b, KYSO_CALL_C_FindObjectsInit, CKR_OK, true);
                buffer_add_u32(&b, 1000);
                buffer_add_u64(&b, 1);
                assert_int_equal(wire_decode_reply(b.data, b.len, KYSO_CALL_C_FindObjectsInit, args, &rv),
                                 -EBADMSG);
                assert_null(h);
                buffer_done(&b);
        }
        /* 'A': a value larger than the attribute's buffer; a nested template larger than offered. */
        {
                uint8_t label[4] = { 1, 1, 1, 1 };
                CK_ULONG v[1] = {};
                CK_ATTRIBUTE nested[1] = { { 0, v, sizeof(v) } };
                CK_ATTRIBUTE tmpl[2] = { { CKA_LABEL, label, sizeof(label) },
                                         { CKA_WRAP_TEMPLATE, nested, sizeof(nested) } };

                memset(args, 0, sizeof(args));
                args[2] = (WireArg) { .ptr = tmpl, .len = 2 };
                raw_reply(&b, KYSO_CALL_C_GetAttributeValue, CKR_OK, true);
                buffer_add_u8(&b, WIRE_ATTR_BYTES);
                buffer_add_u64(&b, 5);
                buffer_add_u8(&b, 1);
                buffer_add_bytes(&b, "ABCDE", 5);
                buffer_add_u8(&b, WIRE_ATTR_TEMPLATE);
                buffer_add_u64(&b, 0);
                buffer_add_u8(&b, 1);
                assert_int_equal(wire_decode_reply(b.data, b.len, KYSO_CALL_C_GetAttributeValue, args, &rv),
                                 -EBADMSG);
                assert_int_equal(label[0], 1);
                assert_int_equal(tmpl[0].ulValueLen, 4);
                buffer_done(&b);

                raw_reply(&b, KYSO_CALL_C_GetAttributeValue, CKR_OK, true);
                buffer_add_u8(&b, WIRE_ATTR_BYTES);
                buffer_add_u64(&b, 4);
                buffer_add_u8(&b, 1);
                buffer_add_bytes(&b, "ABCD", 4);
                buffer_add_u8(&b, WIRE_ATTR_TEMPLATE);
                buffer_add_u64(&b, 2); /* two nested attributes into room for one */
                buffer_add_u8(&b, 1);
                for (int i = 0; i < 2; i++) {
                        buffer_add_u64(&b, CKA_CLASS);
                        buffer_add_u8(&b, WIRE_ATTR_ULONGS);
                        buffer_add_u64(&b, 1);
                        buffer_add_u8(&b, 1);
                        buffer_add_u64(&b, CKO_DATA);
                }
                assert_int_equal(wire_decode_reply(b.data, b.len, KYSO_CALL_C_GetAttributeValue, args, &rv),
                                 -EBADMSG);
                assert_int_equal(label[0], 1);
                buffer_done(&b);

                /* The same with one nested attribute is fine, and the nested type arrives. */
                raw_reply(&b, KYSO_CALL_C_GetAttributeValue, CKR_OK, true);
                buffer_add_u8(&b, WIRE_ATTR_BYTES);
                buffer_add_u64(&b, 4);
                buffer_add_u8(&b, 1);
                buffer_add_bytes(&b, "ABCD", 4);
                buffer_add_u8(&b, WIRE_ATTR_TEMPLATE);
                buffer_add_u64(&b, 1);
                buffer_add_u8(&b, 1);
                buffer_add_u64(&b, CKA_CLASS);
                buffer_add_u8(&b, WIRE_ATTR_ULONGS);
                buffer_add_u64(&b, 1);
                buffer_add_u8(&b, 1);
                buffer_add_u64(&b, CKO_DATA);
                assert_int_equal(wire_decode_reply(b.data, b.len, KYSO_CALL_C_GetAttributeValue, args, &rv), 0);
                assert_memory_equal(label, "ABCD", 4);
                assert_int_equal(nested[0].type, CKA_CLASS);
                assert_int_equal(v[0], CKO_DATA);
                buffer_done(&b);
        }
        /* A reply for another call id. */
        raw_reply(&b, KYSO_CALL_C_Verify, CKR_OK, false);
        assert_int_equal(wire_decode_reply(b.data, b.len, KYSO_CALL_C_Sign, args, &rv), -EBADMSG);
        buffer_done(&b);
}

/* A reply with a value larger than what the caller's buffer holds, found by the server's own encoder. */
static void test_arena_limit_for_outputs(void **state)
{
        WireArg cargs[KYSO_WIRE_ARGS_MAX] = {}, sargs[KYSO_WIRE_ARGS_MAX];
        uint8_t *req;
        size_t len;
        CK_ULONG n = KYSO_WIRE_FRAME_MAX;
        uint32_t serial;
        WireCall call;
        Arena *a;

        cargs[1] = (WireArg) { .ptr = "x", .len = 1 };
        cargs[2] = (WireArg) { .ptr = &n, .len_ptr = &n };
        req = encode_request(KYSO_CALL_C_Sign, cargs, &len);
        a = arena_new(1024 * 1024);
        assert_int_equal(wire_decode_request(req, len, a, &serial, &call, sargs), -ENOMEM);
        /* Serial and call are known, so the server can answer CKR_HOST_MEMORY. */
        assert_int_equal(serial, 0x1234);
        assert_int_equal(call, KYSO_CALL_C_Sign);
        arena_free(a);
        free(req);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_frame_header),
                cmocka_unit_test(test_peek_and_unknown_call),
                cmocka_unit_test(test_encode_bad_arguments),
                cmocka_unit_test(test_malformed_requests),
                cmocka_unit_test(test_malformed_replies),
                cmocka_unit_test(test_arena_limit_for_outputs),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
