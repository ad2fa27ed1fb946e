/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the wire codec tests (test-wire*.c) share: encoding a request or reply and decoding it as the
 * other end would, refusing every truncation of a payload, and a focused round trip (Trip) of one call.
 */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "macro.h"
#include "wire.h"

#define ARENA_LIMIT (64U * 1024U * 1024U)
#define T_CKM_SALSA20_POLY1305 0x00004022UL
#define T_CKM_SHA3_224_RSA_PKCS_PSS 0x00000067UL
#define T_CKM_SHA3_256_HMAC_GENERAL 0x000002B2UL
#define T_CKA_PROFILE_ID 0x00000601UL
#define T_CKM_SHA3_224 0x000002B5UL
#define T_CKG_GENERATE 0x1UL
#define T_CKG_GENERATE_COUNTER 0x2UL
#define T_CKG_GENERATE_RANDOM 0x3UL

/* ---- helpers ---- */

/* The payload of the frame in b (its header checked and stripped), as a malloc()ed copy; frees b. */
static inline uint8_t *frame_payload(Buffer *b, size_t *ret_len)
{
        size_t len;
        uint8_t *p;

        assert_int_equal(wire_frame_length(b->data, &len), 0);
        assert_int_equal(len + KYSO_WIRE_HEADER_SIZE, b->len);
        p = malloc(len + 1);
        assert_non_null(p);
        memcpy(p, b->data + KYSO_WIRE_HEADER_SIZE, len);
        buffer_done(b);
        *ret_len = len;
        return p;
}

/* Encodes a request, or a reply, and returns its payload as frame_payload() does. */
static inline uint8_t *encode_request(WireCall call, const WireArg *args, size_t *ret_len)
{
        Buffer b;

        buffer_init(&b, SIZE_MAX);
        assert_int_equal(wire_encode_request(&b, 0x1234, call, args), 0);
        return frame_payload(&b, ret_len);
}

static inline uint8_t *encode_reply(WireCall call, CK_RV rv, const WireArg *args, size_t *ret_len)
{
        Buffer b;

        buffer_init(&b, SIZE_MAX);
        assert_int_equal(wire_encode_reply(&b, 0x1234, call, rv, args), 0);
        return frame_payload(&b, ret_len);
}

static inline int decode_request(const uint8_t *p, size_t len, Arena **arena, WireCall expect, WireArg *sargs)
{
        uint32_t serial = 0;
        WireCall call = _KYSO_CALL_INVALID;
        int r;

        *arena = arena_new(ARENA_LIMIT);
        assert_non_null(*arena);
        r = wire_decode_request(p, len, *arena, &serial, &call, sargs);
        if (r >= 0) {
                assert_int_equal(serial, 0x1234);
                assert_int_equal(call, expect);
        }
        return r;
}

/* Every shorter prefix of a valid payload, and the payload with a byte more, must be refused. */
static inline void check_request_truncations(WireCall call, const uint8_t *p, size_t len)
{
        uint8_t *longer = malloc(len + 1);
        WireArg sargs[KYSO_WIRE_ARGS_MAX];
        Arena *arena;

        for (size_t n = 0; n < len; n++) {
                uint8_t *copy = malloc(n ? n : 1); /* exact size, so ASan sees over-reads */

                memcpy(copy, p, n);
                assert_int_not_equal(decode_request(copy, n, &arena, call, sargs), 0);
                arena_free(arena);
                free(copy);
        }
        memcpy(longer, p, len);
        longer[len] = 0;
        assert_int_equal(decode_request(longer, len + 1, &arena, call, sargs), -EBADMSG);
        arena_free(arena);
        free(longer);
}

/* ---- focused round trips ---- */

typedef struct Trip {
        WireCall call;
        WireArg sargs[KYSO_WIRE_ARGS_MAX];
        Arena *arena;
        uint8_t *req;
        size_t req_len;
} Trip;

static inline void trip_request(Trip *t, WireCall call, const WireArg *cargs)
{
        t->call = call;
        t->req = encode_request(call, cargs, &t->req_len);
        assert_int_equal(decode_request(t->req, t->req_len, &t->arena, call, t->sargs), 0);
}

static inline int trip_reply(Trip *t, CK_RV rv, WireArg *cargs, CK_RV *ret_rv)
{
        uint8_t *rep;
        size_t len;
        int r;

        rep = encode_reply(t->call, rv, t->sargs, &len);
        r = wire_decode_reply(rep, len, t->call, cargs, ret_rv);
        free(rep);
        return r;
}

static inline void trip_done(Trip *t)
{
        arena_free(t->arena);
        free(t->req);
}
