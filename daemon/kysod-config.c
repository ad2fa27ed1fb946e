/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "config.h"
#include "kysod-config.h"
#include "log.h"
#include "macro.h"

void kysod_config_init(KysodConfig *c)
{
        *c = (KysodConfig) {
                .serialize = SERIALIZE_AUTO,
                .log_level = LOG_INFO,
                .workers = 4,
                .max_workers = 64,
                .poll_interval_ms = 2000,
                .spin_usec = 50,
                .call_timeout_ms = 120000,
                .bus = BUS_SYSTEM,
                /* REGULATION.md Art. 21.3: at least every 6 months. */
                .pin = { .max_age_days = 180, .warn_days = 14, .min_length = 8, .mode = PIN_MODE_WARN },
                .pin_kind = {
                        [0 ... _CUSTODY_KIND_MAX - 1] = { -1, -1, -1, -1 },
                },
                .custody = {
                        .unknown_allowed = false,
                        .handover_requires_pin_change = true,
                },
                .limits = {
                        .connections_per_uid = 64,
                        .sessions_per_uid = 512,
                        .requests_per_client = 64,
                        .requests_per_uid = 128,
                        .buffered_bytes_per_uid = 64U * 1024U * 1024U,
                        .buffered_bytes_per_client = 4U * 1024U * 1024U,
                },
        };
}

int kysod_config_clear_backends(KysodConfig *c)
{
        for (size_t i = 0; i < c->n_backends; i++)
                free(c->backends[i]);
        free(c->backends);
        c->backends = NULL;
        c->n_backends = 0;
        return 0;
}

PinPolicy kysod_config_pin_policy(const KysodConfig *c, int kind)
{
        PinPolicy p = c->pin;

        if (kind >= 0 && kind < _CUSTODY_KIND_MAX) {
                const PinPolicy *o = &c->pin_kind[kind];

                if (o->max_age_days >= 0)
                        p.max_age_days = o->max_age_days;
                if (o->warn_days >= 0)
                        p.warn_days = o->warn_days;
                if (o->min_length >= 0)
                        p.min_length = o->min_length;
                if (o->mode >= 0)
                        p.mode = o->mode;
        }
        return p;
}

void kysod_config_done(KysodConfig *c)
{
        free(c->socket_path);
        free(c->state_dir);
        kysod_config_clear_backends(c);
        for (size_t i = 0; i < c->n_classes; i++) {
                free(c->classes[i].name);
                free(c->classes[i].match_manufacturer);
                free(c->classes[i].match_model);
                free(c->classes[i].match_label);
        }
        free(c->classes);
        c->classes = NULL;
        c->n_classes = 0;
        free(c->custody.admin_group);
        c->custody.admin_group = NULL;
}

int kysod_config_add_backend(KysodConfig *c, const char *path)
{
        char **n = realloc(c->backends, (c->n_backends + 2) * sizeof(char *));

        if (!n)
                return -ENOMEM;
        c->backends = n;
        c->backends[c->n_backends] = strdup(path);
        if (!c->backends[c->n_backends])
                return -ENOMEM;
        c->backends[++c->n_backends] = NULL;
        return 0;
}

int parse_log_level(const char *s)
{
        static const struct {
                const char *name;
                int level;
        } table[] = {
                { "debug", LOG_DEBUG },     { "info", LOG_INFO }, { "notice", LOG_NOTICE },
                { "warning", LOG_WARNING }, { "error", LOG_ERR }, { "err", LOG_ERR },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (streq(s, table[i].name))
                        return table[i].level;
        return -EINVAL;
}

SerializeMode serialize_mode_from_string(const char *s)
{
        if (streq(s, "auto"))
                return SERIALIZE_AUTO;
        if (streq(s, "always"))
                return SERIALIZE_ALWAYS;
        if (streq(s, "never"))
                return SERIALIZE_NEVER;
        return _SERIALIZE_INVALID;
}

BusMode bus_mode_from_string(const char *s)
{
        if (streq(s, "system"))
                return BUS_SYSTEM;
        if (streq(s, "session"))
                return BUS_SESSION;
        if (streq(s, "none"))
                return BUS_NONE;
        return _BUS_MODE_INVALID;
}

static int parse_boolean(const char *s, bool *ret)
{
        if (streq(s, "yes") || streq(s, "true") || streq(s, "1") || streq(s, "on")) {
                *ret = true;
                return 0;
        }
        if (streq(s, "no") || streq(s, "false") || streq(s, "0") || streq(s, "off")) {
                *ret = false;
                return 0;
        }
        return -EINVAL;
}

/* A group name as groupadd(8) takes it. */
static bool group_name_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > 32 || !(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
                return false;
        return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == n;
}

static int parse_allow_deny(const char *s, bool *ret_deny)
{
        if (streq(s, "allow") || streq(s, "yes") || streq(s, "true")) {
                *ret_deny = false;
                return 0;
        }
        if (streq(s, "deny") || streq(s, "no") || streq(s, "false")) {
                *ret_deny = true;
                return 0;
        }
        return -EINVAL;
}

/* "[class:NAME]": the class named NAME, created at its first line. */
static TokenClass *class_for_section(KysodConfig *c, const char *section)
{
        const char *name = section + strlen("class:");
        TokenClass *n;

        for (size_t i = 0; i < c->n_classes; i++)
                if (streq(c->classes[i].name, name))
                        return &c->classes[i];
        if (name[0] == '\0' || c->n_classes >= 64)
                return NULL;
        n = realloc(c->classes, (c->n_classes + 1) * sizeof(TokenClass));
        if (!n)
                return NULL;
        c->classes = n;
        c->classes[c->n_classes] = (TokenClass) { .name = strdup(name) };
        if (!c->classes[c->n_classes].name)
                return NULL;
        return &c->classes[c->n_classes++];
}

static int parse_unsigned(const char *s, unsigned min, unsigned max, unsigned *ret)
{
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

int kysod_config_set_string(char **p, const char *v)
{
        char *n = strdup(v);

        if (!n)
                return -ENOMEM;
        free(*p);
        *p = n;
        return 0;
}

typedef struct ParseState {
        KysodConfig *config;
        const char *path;
        int error;
        bool backends_seen;
} ParseState;

static int handle_entry(void *userdata, const char *section, const char *name, const char *value)
{
        ParseState *st = userdata;
        KysodConfig *c = st->config;
        int r = 0;

        if (streq(section, "daemon")) {
                if (streq(name, "socket"))
                        r = value[0] == '/' ? kysod_config_set_string(&c->socket_path, value) : -EINVAL;
                else if (streq(name, "state_dir"))
                        r = value[0] == '/' ? kysod_config_set_string(&c->state_dir, value) : -EINVAL;
                else if (streq(name, "log_level")) {
                        r = parse_log_level(value);
                        if (r >= 0) {
                                c->log_level = r;
                                r = 0;
                        }
                } else if (streq(name, "workers"))
                        r = parse_unsigned(value, 1, 1024, &c->workers);
                else if (streq(name, "max_workers"))
                        r = parse_unsigned(value, 1, 1024, &c->max_workers);
                else if (streq(name, "poll_interval_ms"))
                        r = parse_unsigned(value, 100, 3600000, &c->poll_interval_ms);
                else if (streq(name, "spin_usec"))
                        r = parse_unsigned(value, 0, 10000, &c->spin_usec);
                else if (streq(name, "bus")) {
                        BusMode m = bus_mode_from_string(value);

                        if (m < 0)
                                r = -EINVAL;
                        else
                                c->bus = m;
                } else
                        goto unknown;
        } else if (streq(section, "policy")) {
                bool deny;

                if (streq(name, "unknown_tokens")) {
                        r = streq(value, "allow") || streq(value, "deny") ? parse_allow_deny(value, &deny) : -EINVAL;
                        if (r >= 0)
                                c->custody.unknown_allowed = !deny;
                } else if (streq(name, "admin_group"))
                        r = group_name_valid(value) ? kysod_config_set_string(&c->custody.admin_group, value)
                                                    : -EINVAL;
                else if (streq(name, "handover_requires_pin_change"))
                        r = parse_boolean(value, &c->custody.handover_requires_pin_change);
                else if (streq(name, "refused_tokens")) {
                        if (streq(value, "listed") || streq(value, "hidden"))
                                c->custody.hide_refused = streq(value, "hidden");
                        else
                                r = -EINVAL;
                }
                else
                        goto unknown;
        } else if (streq(section, "backends")) {
                if (streq(name, "module")) {
                        /* The file's list replaces the built-in one, not appends to it. */
                        if (!st->backends_seen) {
                                kysod_config_clear_backends(c);
                                st->backends_seen = true;
                        }
                        r = value[0] == '/' ? kysod_config_add_backend(c, value) : -EINVAL;
                } else if (streq(name, "call_timeout_ms"))
                        r = parse_unsigned(value, 0, 86400000, &c->call_timeout_ms);
                else if (streq(name, "serialize")) {
                        SerializeMode m = serialize_mode_from_string(value);

                        if (m < 0)
                                r = -EINVAL;
                        else
                                c->serialize = m;
                } else
                        goto unknown;
        } else if (streq(section, "limits")) {
                unsigned v;

                if (streq(name, "connections_per_uid"))
                        r = parse_unsigned(value, 1, 100000, &c->limits.connections_per_uid);
                else if (streq(name, "sessions_per_uid"))
                        r = parse_unsigned(value, 1, 1000000, &c->limits.sessions_per_uid);
                else if (streq(name, "requests_per_client"))
                        r = parse_unsigned(value, 1, 4096, &c->limits.requests_per_client);
                else if (streq(name, "requests_per_uid"))
                        r = parse_unsigned(value, 1, 65536, &c->limits.requests_per_uid);
                else if (streq(name, "buffered_kib_per_uid")) {
                        r = parse_unsigned(value, 64, 16 * 1024 * 1024, &v);
                        if (r >= 0)
                                c->limits.buffered_bytes_per_uid = (size_t) v * 1024U;
                }
                else if (streq(name, "buffered_kib_per_client")) {
                        r = parse_unsigned(value, 64, 1024 * 1024, &v);
                        if (r >= 0)
                                c->limits.buffered_bytes_per_client = (size_t) v * 1024U;
                } else
                        goto unknown;
        } else if (streq(section, "pin") || strncmp(section, "pin:", 4) == 0) {
                PinPolicy *p = &c->pin;
                unsigned v;

                if (section[3] == ':') {
                        CustodyKind k = custody_kind_from_string(section + 4);

                        if (k < 0) {
                                log_error("%s: [%s]: no such token kind (organization, personal or device).",
                                          st->path, section);
                                st->error = -EINVAL;
                                return 1;
                        }
                        p = &c->pin_kind[k];
                }
                if (streq(name, "max_age_days")) {
                        r = parse_unsigned(value, 1, 3650, &v);
                        p->max_age_days = (int) v;
                } else if (streq(name, "warn_days")) {
                        r = parse_unsigned(value, 0, 365, &v);
                        p->warn_days = (int) v;
                } else if (streq(name, "min_length")) {
                        r = parse_unsigned(value, 4, 64, &v);
                        p->min_length = (int) v;
                } else if (streq(name, "mode")) {
                        p->mode = pin_mode_from_string(value);
                        r = p->mode < 0 ? -EINVAL : 0;
                } else
                        goto unknown;
        } else if (strncmp(section, "class:", 6) == 0) {
                TokenClass *t = class_for_section(c, section);

                if (!t)
                        r = -EINVAL;
                else if (streq(name, "manufacturer"))
                        r = kysod_config_set_string(&t->match_manufacturer, value);
                else if (streq(name, "model"))
                        r = kysod_config_set_string(&t->match_model, value);
                else if (streq(name, "label"))
                        r = kysod_config_set_string(&t->match_label, value);
                else if (streq(name, "init_token"))
                        r = parse_allow_deny(value, &t->deny_init_token);
                else if (streq(name, "init_pin"))
                        r = parse_allow_deny(value, &t->deny_init_pin);
                else if (streq(name, "so_login"))
                        r = parse_allow_deny(value, &t->deny_so_login);
                else if (streq(name, "key_generation"))
                        r = parse_allow_deny(value, &t->deny_key_generation);
                else
                        goto unknown;
        } else
                goto unknown;

        if (r < 0) {
                log_error("%s: invalid value for [%s] %s: \"%s\"", st->path, section, name, value);
                st->error = r;
                return 1; /* keep reading: report every bad line at once */
        }
        return 1;

unknown:
        /* A newer configuration file on an older daemon should not stop it. */
        log_warning("%s: unknown setting [%s] %s, ignoring.", st->path, section, name);
        return 1;
}

int kysod_config_load_file(KysodConfig *c, FILE *f, const char *name)
{
        ParseState st = { .config = c, .path = name };
        int r;

        r = ini_parse_file(f, handle_entry, &st);
        if (r > 0)
                return log_error_errno(EINVAL, "%s:%d: syntax error.", name, r);
        if (r < 0)
                return log_error_errno(EIO, "Failed to read configuration file %s.", name);
        return st.error;
}

int kysod_config_load(KysodConfig *c, const char *path, bool required)
{
        FILE *f;
        int r;

        f = fopen(path, "re");
        if (!f) {
                if (errno == ENOENT && !required)
                        return 0;
                return log_error_errno(errno, "Failed to open configuration file %s: %m", path);
        }
        r = kysod_config_load_file(c, f, path);
        fclose(f);
        return r;
}
