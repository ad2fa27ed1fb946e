/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's side: a request payload from a hostile client, then a reply built from what it decoded. */
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        WireArg args[KYSO_WIRE_ARGS_MAX];
        uint32_t serial;
        WireCall call;
        Arena *arena;
        Buffer reply;

        if (size > KYSO_WIRE_FRAME_MAX)
                return 0;
        /* The daemon's limit (daemon/broker.c). */
        arena = arena_new(3U * KYSO_WIRE_FRAME_MAX);
        if (!arena)
                return 0;
        if (wire_decode_request(data, size, arena, &serial, &call, args) == 0) {
                buffer_init(&reply, KYSO_WIRE_HEADER_SIZE + KYSO_WIRE_FRAME_MAX);
                (void) wire_encode_reply(&reply, serial, call, CKR_OK, args);
                buffer_reset(&reply);
                (void) wire_encode_reply(&reply, serial, call, CKR_BUFFER_TOO_SMALL, args);
                buffer_done(&reply);
        }
        arena_free(arena);
        return 0;
}
