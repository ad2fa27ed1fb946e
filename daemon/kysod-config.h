/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kysod's configuration: built-in defaults, then /etc/kyso/kysod.conf (INI,
 * optional), then the command line. See kysod.conf(5).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "backend.h"

typedef struct KysodConfig {
        char *socket_path;
        char *state_dir;
        char **backends; /* NULL-terminated */
        size_t n_backends;
        SerializeMode serialize;
        int log_level;
        unsigned workers;
        unsigned max_workers;
        unsigned poll_interval_ms;
        unsigned spin_usec;
} KysodConfig;

void kysod_config_init(KysodConfig *c);
void kysod_config_done(KysodConfig *c);
/* Reads an INI file into c. A missing file is an error only if required. Returns 0 or -errno (logged). */
int kysod_config_load(KysodConfig *c, const char *path, bool required);
int kysod_config_add_backend(KysodConfig *c, const char *path);
int kysod_config_clear_backends(KysodConfig *c);
int kysod_config_set_string(char **p, const char *v);
int parse_log_level(const char *s);
SerializeMode serialize_mode_from_string(const char *s);
