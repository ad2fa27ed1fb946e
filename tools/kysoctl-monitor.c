/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kysoctl monitor: prints kysod's D-Bus signals as they arrive, one line
 * each, human or JSON (one object a line, for scripts: jq and friends read
 * them as a stream). Runs until SIGINT or SIGTERM (exit 0); a bus that
 * goes away ends it with status 1. kysod leaving and coming back is no
 * matter: the matches follow the name org.kyso1.
 */
#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kysoctl-bus.h"
#include "kysoctl-monitor.h"
#include "kysoctl-util.h"
#include "log.h"
#include "macro.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
        stop = 1;
}

/* The arguments of a signal as "name: value" pairs, by its D-Bus signature; only the types kysod sends. */
static int read_args(sd_bus_message *m, json_object *o, char *line, size_t size)
{
        static const struct {
                const char *member;
                const char *names[6];
        } layouts[] = {
                { "TokenInserted", { "token", "serial", "label" } },
                { "TokenRemoved", { "token", "serial" } },
                { "AccessDenied", { "token", "serial", "uid", "pid", "operation", "reason" } },
                { "PinExpiring", { "token", "serial", "due_at" } },
                { "PinExpired", { "token", "serial", "due_at" } },
                { "PinLocked", { "token", "serial" } },
                { "UsbDeviceAdded", { "vendor", "product", "name", "serial", "path" } },
                { "UsbDeviceRemoved", { "vendor", "product", "name", "serial", "path" } },
        };
        const char *member = sd_bus_message_get_member(m), *const *names = NULL;
        size_t k = 0;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(layouts); i++)
                if (streq(layouts[i].member, member))
                        names = layouts[i].names;
        if (!names)
                return 0; /* a signal of a newer kysod: its name is enough */

        for (size_t i = 0; i < 6 && names[i]; i++) {
                char type;
                const char *contents, *s;
                char v[160];

                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r <= 0)
                        return r;
                switch (type) {
                case 's':
                case 'o':
                        r = sd_bus_message_read_basic(m, type, &s);
                        if (r < 0)
                                return r;
                        if (type == 'o')
                                continue; /* the object path says nothing the serial does not */
                        snprintf(v, sizeof(v), "%s", s);
                        json_object_object_add(o, names[i], json_object_new_string(s));
                        break;
                case 'u': {
                        uint32_t u;

                        r = sd_bus_message_read_basic(m, 'u', &u);
                        if (r < 0)
                                return r;
                        snprintf(v, sizeof(v), "%u", u);
                        json_object_object_add(o, names[i], json_object_new_int64(u));
                        break;
                }
                case 'q': {
                        uint16_t q;

                        r = sd_bus_message_read_basic(m, 'q', &q);
                        if (r < 0)
                                return r;
                        snprintf(v, sizeof(v), "%04x", q);
                        json_object_object_add(o, names[i], json_object_new_string(v));
                        break;
                }
                case 'x': {
                        int64_t x;
                        char t[64];

                        r = sd_bus_message_read_basic(m, 'x', &x);
                        if (r < 0)
                                return r;
                        format_time_utc(x, t, sizeof(t));
                        snprintf(v, sizeof(v), "%s", x ? t : "-");
                        json_object_object_add(o, names[i], x ? json_object_new_string(t) : NULL);
                        break;
                }
                default:
                        return 0;
                }
                if (k < size)
                        k += (size_t) snprintf(line + k, size - k, " %s=%s", names[i], v);
        }
        return 0;
}

static int on_signal_message(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        const Options *opts = userdata;
        json_object *o = json_object_new_object();
        char line[1024] = "", t[64];
        const char *member = sd_bus_message_get_member(m);

        format_time_utc((int64_t) time(NULL), t, sizeof(t));
        json_object_object_add(o, "time", json_object_new_string(t));
        json_object_object_add(o, "event", json_object_new_string(member ?: "?"));
        if (streq(member ?: "", "PropertiesChanged")) {
                const char *path = sd_bus_message_get_path(m);

                json_object_object_add(o, "object", json_object_new_string(path ?: ""));
                snprintf(line, sizeof(line), " object=%s", path ?: "");
        } else
                (void) read_args(m, o, line, sizeof(line));
        if (opts->json)
                printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        else
                printf("%s %s%s\n", t, member ?: "?", line);
        fflush(stdout);
        json_object_put(o);
        return 0;
}

int run_monitor(const Options *opts, int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        struct sigaction sa = { .sa_handler = on_signal };
        int r;

        if (argc > 1) {
                log_error("'monitor' takes no arguments; see 'kysoctl monitor --help'.");
                return EXIT_USAGE;
        }
        r = bus_open(&bus);
        if (r < 0)
                return EXIT_FAILED;
        /* Every signal kysod sends: the manager's events and the tokens' property changes. */
        r = sd_bus_match_signal(bus, NULL, KYSO_BUS_NAME, NULL, KYSO_MANAGER_IFACE, NULL, on_signal_message,
                                (void *) opts);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, KYSO_BUS_NAME, NULL, "org.freedesktop.DBus.Properties",
                                        "PropertiesChanged", on_signal_message, (void *) opts);
        if (r < 0) {
                log_error_errno(r, "Cannot listen to kysod's signals: %m");
                return EXIT_FAILED;
        }
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        if (!opts->json)
                fprintf(stderr, "Listening to kysod's events (Ctrl-C to stop)...\n");

        while (!stop) {
                r = sd_bus_process(bus, NULL);
                if (r < 0) {
                        log_error_errno(r, "Lost the connection to the bus: %m");
                        return EXIT_FAILED;
                }
                if (r > 0)
                        continue;
                r = sd_bus_wait(bus, UINT64_MAX);
                if (r < 0 && r != -EINTR) {
                        log_error_errno(r, "Lost the connection to the bus: %m");
                        return EXIT_FAILED;
                }
        }
        return EXIT_OK;
}
