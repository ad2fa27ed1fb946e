/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kysoctl-bus.h"
#include "kysoctl-util.h"
#include "kysoctl.h"
#include "log.h"
#include "macro.h"

#define SYSTEM_BUS_ADDRESS_DEFAULT "unix:path=/run/dbus/system_bus_socket"

static const char *system_bus_address(void)
{
        const char *e = getenv("DBUS_SYSTEM_BUS_ADDRESS");

        return e && *e ? e : SYSTEM_BUS_ADDRESS_DEFAULT;
}

/* Whether a connection-level failure: the bus itself is unreachable, refused us, or went away. */
static bool bus_unreachable(int r)
{
        r = abs(r);
        return r == ENOENT || r == ECONNREFUSED || r == ENOTCONN || r == ECONNRESET || r == EPIPE ||
               r == EACCES || r == EPERM;
}

static int bus_unreachable_error(int r)
{
        return log_error_errno(r,
                               "Cannot reach the system D-Bus (%m, at %s): is dbus running? "
                               "kysoctl needs it for this command.",
                               system_bus_address());
}

int bus_open(sd_bus **ret)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const char *unique;
        int r;

        r = sd_bus_open_system(&bus);
        /* Waiting for our bus name makes a refused authentication show here, not as a failed call. */
        if (r >= 0)
                r = sd_bus_get_unique_name(bus, &unique);
        if (r < 0)
                return bus_unreachable_error(r);
        *ret = TAKE_PTR(bus);
        return 0;
}

/* The daemon's error text, fit for a terminal (NULL when out of memory). */
static char *bus_error_text(const sd_bus_error *e)
{
        const char *s = e->message && *e->message ? e->message : e->name;
        char *t = text_sanitize(s);
        size_t n;

        if (!t)
                return NULL;
        /* Callers add their own full stop or hint after it. */
        n = strlen(t);
        while (n > 0 && (t[n - 1] == '.' || t[n - 1] == ' '))
                t[--n] = '\0';
        return t;
}

/* The admin group's name as kysod reports it, or a pointer to where it is set. */
static char *admin_group(sd_bus *bus)
{
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(freep) char *group = NULL;

        if (sd_bus_get_property_string(bus, KYSO_BUS_NAME, KYSO_BUS_PATH, KYSO_MANAGER_IFACE, "AdminGroup",
                                       &error, &group) < 0 ||
            !*group)
                return strdup("see admin_group in kysod.conf(5)");
        return text_sanitize(group);
}

int bus_failure(sd_bus *bus, int r, const sd_bus_error *e, Access access, const char *what)
{
        _cleanup_(freep) char *text = NULL;

        /* sd-bus names a local failure "System.Error.E…": no answer came from anyone. */
        if (!sd_bus_error_is_set(e) || strncmp(e->name, "System.Error.", 13) == 0) {
                if (bus_unreachable(r))
                        bus_unreachable_error(r);
                else
                        log_error_errno(r, "%s: the D-Bus call failed: %m", what);
                return EXIT_FAILED;
        }

        text = bus_error_text(e);
        if (!text) {
                log_oom();
                return EXIT_FAILED;
        }

        if (sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER)) {
                log_error("%s: kysod is not on the system bus (%s): is it running, and not started with "
                          "--bus none?",
                          what, KYSO_BUS_NAME);
                return EXIT_FAILED;
        }
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED)) {
                _cleanup_(freep) char *group = NULL;

                if (access == ACCESS_READ) {
                        /* Reading is open to all: a refusal means the bus policy is not kysod's. */
                        log_error("%s: permission denied (%s). This is open to every user: check that "
                                  "kysod's D-Bus policy file is installed.",
                                  what, text);
                        return EXIT_DENIED;
                }
                group = admin_group(bus);
                if (access == ACCESS_ADMIN)
                        log_error("%s: permission denied: this needs root or membership in the admin group "
                                  "(%s). Run kysoctl as root, or ask an administrator to add you to that "
                                  "group.",
                                  what, group ? group : "see kysod.conf(5)");
                else
                        log_error("Permission denied: changing custody needs root or membership in the "
                                  "admin group (%s). Run kysoctl as root, or ask an administrator to add "
                                  "you to that group.",
                                  group ? group : "see kysod.conf(5)");
                return EXIT_DENIED;
        }
        if (sd_bus_error_has_name(e, KYSO_ERROR_NO_SUCH_TOKEN)) {
                /* kysod also says this of a known token without a custody record to change. */
                log_error("%s: %s. Run 'kysoctl tokens' to see the tokens kysod knows and their custody.",
                          what, text);
                return EXIT_NO_TOKEN;
        }
        if (sd_bus_error_has_name(e, KYSO_ERROR_STORE_FAILED)) {
                log_error("%s: %s. Nothing was changed; kysod's log says why (journalctl -u kysod).", what,
                          text);
                return EXIT_FAILED;
        }
        if (sd_bus_error_has_names(e, KYSO_ERROR_CONFLICT, SD_BUS_ERROR_INVALID_ARGS)) {
                log_error("%s: %s.", what, text);
                return EXIT_FAILED;
        }
        if (sd_bus_error_has_names(e, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT)) {
                log_error("%s: kysod did not answer in time (%s). Check 'systemctl status kysod' and its "
                          "log.",
                          what, text);
                return EXIT_FAILED;
        }
        if (sd_bus_error_has_names(e, SD_BUS_ERROR_UNKNOWN_METHOD, SD_BUS_ERROR_UNKNOWN_OBJECT,
                                   SD_BUS_ERROR_UNKNOWN_INTERFACE, SD_BUS_ERROR_UNKNOWN_PROPERTY)) {
                log_error("%s: kysod does not offer this (%s): is it older than kysoctl %s?", what, text,
                          PACKAGE_VERSION);
                return EXIT_FAILED;
        }
        log_error("%s: %s (%s).", what, text, e->name);
        return EXIT_FAILED;
}

int bus_manager_call_new(sd_bus *bus, const char *method, sd_bus_message **ret)
{
        return sd_bus_message_new_method_call(bus, ret, KYSO_BUS_NAME, KYSO_BUS_PATH, KYSO_MANAGER_IFACE,
                                              method);
}

int bus_call(sd_bus *bus, sd_bus_message *m, Access access, const char *what, sd_bus_message **ret)
{
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call(bus, m, 0, &error, ret);
        if (r < 0)
                return bus_failure(bus, r, &error, access, what);
        return 0;
}

int bus_build_failed(int r)
{
        log_error_errno(r, "Failed to build the D-Bus request: %m");
        return EXIT_FAILED;
}

int bus_reply_invalid(int r)
{
        log_error_errno(r, "kysod sent a reply that does not match org.kyso1 (%m): is it of another "
                           "version?");
        return EXIT_FAILED;
}
