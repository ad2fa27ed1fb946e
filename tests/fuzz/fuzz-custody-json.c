/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The custody registry import (Manager.Import, kysoctl import): the input is the document, as any local
 * admin's program may send it over D-Bus. Whatever it holds, the parser returns either records that pass
 * the same validation an admin's Assign gets, or an error with a message; and records it accepts survive
 * an export and a second parse unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "custody-json.h"
#include "fuzz-request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        CustodyRecord *recs = NULL, *again = NULL;
        size_t n = 0, n2 = 0;
        char *error = NULL, *text = NULL;
        int r;

        if (size > 256 * 1024)
                return 0;
        r = custody_json_parse((const char *) data, size, &recs, &n, &error);
        if (r < 0) {
                fuzz_check(r == -EINVAL || r == -ENOMEM);
                fuzz_check(r == -ENOMEM || error != NULL);
                fuzz_check(!recs);
                free(error);
                return 0;
        }
        fuzz_check(!error);
        for (size_t i = 0; i < n; i++)
                fuzz_check(custody_record_invalid(&recs[i]) == NULL);

        /* What was accepted goes out and comes back the same. */
        if (custody_json_export(recs, n, 0, &text) == 0) {
                fuzz_check(custody_json_parse(text, strlen(text), &again, &n2, NULL) == 0);
                fuzz_check(n2 == n);
                for (size_t i = 0; i < n && i < n2; i++) {
                        fuzz_check(strcmp(recs[i].serial, again[i].serial) == 0);
                        fuzz_check(strcmp(recs[i].holder, again[i].holder) == 0);
                        fuzz_check(recs[i].kind == again[i].kind && recs[i].state == again[i].state);
                        fuzz_check(recs[i].valid_from == again[i].valid_from);
                        fuzz_check(recs[i].valid_until == again[i].valid_until);
                }
                custody_records_free(again, n2);
                free(text);
        }
        custody_records_free(recs, n);
        return 0;
}
