/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The module's side: a reply payload from a hostile or confused daemon. The first byte picks the
 * call, the next FUZZ_CONFIG_SIZE bytes the caller's buffers and capacities; the rest is the reply.
 * A reply the decoder refuses must leave every byte of the caller's memory as it was.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fuzz-args.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        FuzzArgs f;
        WireCall call;
        uint8_t *before;
        CK_RV rv;
        int r;

        if (size < 1 + FUZZ_CONFIG_SIZE || size > KYSO_WIRE_FRAME_MAX)
                return 0;
        call = data[0] % _KYSO_CALL_MAX;
        fuzz_args_build(&f, call, data + 1);
        before = fuzz_args_snapshot(&f);
        r = wire_decode_reply(data + 1 + FUZZ_CONFIG_SIZE, size - 1 - FUZZ_CONFIG_SIZE, call, f.args, &rv);
        if (r < 0 && !fuzz_args_unchanged(&f, before)) {
                fprintf(stderr, "%s: a refused reply changed the caller's memory\n", wire_call_info(call)->name);
                abort();
        }
        free(before);
        fuzz_args_free(&f);
        return 0;
}
