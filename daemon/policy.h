/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Policy decisions of the broker, as pure functions: facts in, a decision
 * (and a reason for the log) out, no I/O. They are tested as tables
 * (tests/unit/test-policy.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "pkcs11.h"

typedef struct PolicyDecision {
        CK_RV rv;           /* CKR_OK: allowed */
        const char *reason; /* why not, for the log */
} PolicyDecision;

/*
 * May a mechanism parameter go to a backend as the client sent it? A
 * parameter the codec rebuilt as its structure is safe. Raw bytes are safe
 * only for mechanisms whose parameter is a byte string (an IV, a public
 * value): for any other, the bytes could hold pointers the backend would
 * follow inside the daemon.
 *
 * struct_size is the size of the structure the codec knows for the
 * mechanism (0 if none); len is ulParameterLen as it arrived.
 */
PolicyDecision policy_mechanism_parameter(CK_MECHANISM_TYPE mechanism, bool has_parameter, size_t struct_size,
                                          size_t len);
