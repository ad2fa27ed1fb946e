/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's side: a request payload from a hostile client, then a reply built from what it decoded. */
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define OUTPUT_MAX 64U

/*
 * Plays a backend that writes short outputs: real ones are short, and a reply of a whole frame per
 * input would slow the search a hundredfold without reaching any more code.
 */
static void play_backend(WireCall call, WireArg *args)
{
        const char *sig = wire_call_info(call)->signature;

        for (size_t i = 0; sig[i]; i++)
                if ((sig[i] == 'o' || sig[i] == 'l') && args[i].len > OUTPUT_MAX)
                        args[i].len = OUTPUT_MAX;
                else if (sig[i] == 'A')
                        for (CK_ULONG j = 0; j < args[i].len; j++) {
                                CK_ATTRIBUTE *at = (CK_ATTRIBUTE *) args[i].ptr + j;

                                if (wire_attribute_kind(at->type) != WIRE_ATTR_TEMPLATE && at->ulValueLen > OUTPUT_MAX)
                                        at->ulValueLen = OUTPUT_MAX;
                        }
}

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
        /*
         * Smaller than the daemon's limit (3 frames): the code paths are the same, and a search that
         * zeroes and wipes 16 MiB capacities at every step runs fifty times slower.
         */
        arena = arena_new(4U * 1024U * 1024U);
        if (!arena)
                return 0;
        if (wire_decode_request(data, size, arena, &serial, &call, args) == 0) {
                play_backend(call, args);
                buffer_init(&reply, KYSO_WIRE_HEADER_SIZE + KYSO_WIRE_FRAME_MAX);
                (void) wire_encode_reply(&reply, serial, call, CKR_OK, args);
                buffer_reset(&reply);
                (void) wire_encode_reply(&reply, serial, call, CKR_BUFFER_TOO_SMALL, args);
                buffer_done(&reply);
        }
        arena_free(arena);
        return 0;
}
