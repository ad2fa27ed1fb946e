/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kysod.conf: the input is the file. A file the parser accepts must leave a configuration that
 * keeps the promises the daemon relies on (absolute paths, values within their ranges, a
 * NULL-terminated backend list, named classes); one it refuses must still be freed cleanly.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "fuzz-request.h"
#include "kysod-config.h"
#include "log.h"

static void check_config(const KysodConfig *c)
{
        fuzz_check(!c->socket_path || c->socket_path[0] == '/');
        fuzz_check(!c->state_dir || c->state_dir[0] == '/');
        fuzz_check(c->n_backends == 0 || c->backends);
        for (size_t i = 0; i < c->n_backends; i++)
                fuzz_check(c->backends[i] && c->backends[i][0] == '/');
        fuzz_check(!c->backends || !c->backends[c->n_backends]);
        fuzz_check(c->serialize >= 0);
        fuzz_check(c->workers >= 1 && c->workers <= 1024);
        fuzz_check(c->max_workers >= 1 && c->max_workers <= 1024);
        fuzz_check(c->poll_interval_ms >= 100 && c->poll_interval_ms <= 3600000);
        fuzz_check(c->spin_usec <= 10000);
        fuzz_check(c->call_timeout_ms <= 86400000);
        fuzz_check(c->limits.connections_per_uid >= 1);
        fuzz_check(c->limits.sessions_per_uid >= 1);
        fuzz_check(c->limits.requests_per_client >= 1 && c->limits.requests_per_client <= 4096);
        fuzz_check(c->limits.buffered_bytes_per_client >= 64U * 1024U);
        fuzz_check(c->n_classes <= 64);
        for (size_t i = 0; i < c->n_classes; i++) {
                fuzz_check(c->classes[i].name && c->classes[i].name[0] != '\0');
                for (size_t j = 0; j < i; j++)
                        fuzz_check(strcmp(c->classes[i].name, c->classes[j].name) != 0);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        KysodConfig c;
        char *copy;
        FILE *f;
        int r;

        if (size > 64 * 1024)
                return 0;
        /* Every line of a bad file is logged; a fuzzer writing them would mostly measure stderr. */
        log_set_max_level(LOG_EMERG);
        /* fmemopen() refuses a zero-size buffer; a copy keeps the input const and exact-sized. */
        copy = malloc(size ? size : 1);
        if (!copy)
                return 0;
        if (size)
                memcpy(copy, data, size);
        else
                copy[0] = '\n'; /* as empty as a file can be for fmemopen() */
        f = fmemopen(copy, size ? size : 1, "r");
        if (!f) {
                free(copy);
                return 0;
        }

        kysod_config_init(&c);
        /* A built-in backend first, as the daemon has one: the file's list replaces it. */
        fuzz_check(kysod_config_add_backend(&c, "/usr/lib/builtin.so") == 0);
        r = kysod_config_load_file(&c, f, "fuzz.conf");
        if (r == 0)
                check_config(&c);
        kysod_config_done(&c);
        fclose(f);
        free(copy);
        return 0;
}
