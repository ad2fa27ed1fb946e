/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kysod's configuration: built-in defaults, then /etc/kyso/kysod.conf (INI,
 * optional), then the command line. See kysod.conf(5).
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "backend.h"
#include "policy.h"

/*
 * A class of tokens, chosen by what C_GetTokenInfo says (shell patterns on the
 * blank-trimmed manufacturer, model and label; a pattern left unset matches
 * anything), and the operations the regulation reserves for the CA that kyso
 * refuses on it. The first class in the file that matches applies.
 */
typedef struct TokenClass {
        char *name;
        char *match_manufacturer;
        char *match_model;
        char *match_label;
        bool deny_init_token;
        bool deny_init_pin;
        bool deny_so_login;
        bool deny_key_generation;
} TokenClass;

/* What one local user (uid) may hold in the daemon at once. */
typedef struct Limits {
        unsigned connections_per_uid;
        unsigned sessions_per_uid;
        unsigned requests_per_client;  /* running at once; reading pauses beyond */
        unsigned requests_per_uid;     /* the same across all connections of a uid */
        size_t buffered_bytes_per_uid;
        size_t buffered_bytes_per_client; /* replies not yet read; reading pauses beyond */
} Limits;

typedef enum BusMode {
        BUS_SYSTEM,  /* the system bus (DBUS_SYSTEM_BUS_ADDRESS overrides its address) */
        BUS_SESSION, /* the caller's session bus, for development */
        BUS_NONE,    /* no D-Bus: PKCS#11 only */
        _BUS_MODE_MAX,
        _BUS_MODE_INVALID = -EINVAL,
} BusMode;

/* kysod.conf [policy]: custody. */
typedef struct CustodyConfig {
        bool unknown_allowed;             /* unknown_tokens = allow */
        char *admin_group;                /* NULL: the default, kyso-admin */
        bool handover_requires_pin_change;
        bool hide_refused;                /* refused_tokens = hidden */
} CustodyConfig;

/* kysod.conf [pin] (and [pin:KIND] overrides): PIN age and quality. */
typedef struct PinPolicy {
        int max_age_days; /* -1: unset (in an override: take [pin]'s) */
        int warn_days;
        int min_length;
        int mode;         /* a PinMode, or -1 */
} PinPolicy;

typedef struct KysodConfig {
        char *socket_path;
        char *state_dir;
        char **backends; /* NULL-terminated */
        size_t n_backends;
        SerializeMode serialize;
        unsigned call_timeout_ms;
        int log_level;
        unsigned workers;
        unsigned max_workers;
        unsigned poll_interval_ms;
        unsigned spin_usec;
        Limits limits;
        TokenClass *classes;
        size_t n_classes;
        BusMode bus;
        CustodyConfig custody;
        PinPolicy pin;                          /* [pin], every field set */
        PinPolicy pin_kind[_CUSTODY_KIND_MAX];  /* [pin:organization] ... */
} KysodConfig;

void kysod_config_init(KysodConfig *c);
void kysod_config_done(KysodConfig *c);
/* Reads an INI file into c. A missing file is an error only if required. Returns 0 or -errno (logged). */
int kysod_config_load(KysodConfig *c, const char *path, bool required);
/* The same from an open stream; name is for messages. */
int kysod_config_load_file(KysodConfig *c, FILE *f, const char *name);
int kysod_config_add_backend(KysodConfig *c, const char *path);
int kysod_config_clear_backends(KysodConfig *c);
int kysod_config_set_string(char **p, const char *v);
int parse_log_level(const char *s);
SerializeMode serialize_mode_from_string(const char *s);
BusMode bus_mode_from_string(const char *s);
/* The PIN policy for tokens of a kind (a CustodyKind, or -1 for a token without a record). */
PinPolicy kysod_config_pin_policy(const KysodConfig *c, int kind);

#define KYSO_ADMIN_GROUP_DEFAULT "kyso-admin"
