/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What kysoctl's D-Bus commands share: the names of org.kyso1 (see
 * data/org.kyso1.xml), the connection to the system bus, and the one place
 * that turns a failed call into a message a user can act on and an exit
 * status. These functions log; a command returns what they return.
 */
#pragma once

#include <systemd/sd-bus.h>

#define KYSO_BUS_NAME "org.kyso1"
#define KYSO_BUS_PATH "/org/kyso1"
#define KYSO_MANAGER_IFACE "org.kyso1.Manager"
#define KYSO_TOKEN_IFACE "org.kyso1.Token"
#define KYSO_ERROR_NO_SUCH_TOKEN "org.kyso1.Error.NoSuchToken"
#define KYSO_ERROR_CONFLICT "org.kyso1.Error.Conflict"
#define KYSO_ERROR_STORE_FAILED "org.kyso1.Error.StoreFailed"

/* What a call was for: a refusal of a read and of a change have different causes. */
typedef enum Access {
        ACCESS_READ,   /* open to every user: a refusal means a broken bus policy */
        ACCESS_CHANGE, /* a custody change: root or the admin group */
        ACCESS_ADMIN,  /* reading what only root or the admin group may see (audit checks, reports) */
} Access;

/* Connects to the system bus; logs "Cannot reach the system D-Bus ..." and returns -errno on failure. */
int bus_open(sd_bus **ret);

/*
 * Logs a failed call once, as "<what>: <why>. <what to do>", and returns the exit status:
 * EXIT_DENIED for AccessDenied, EXIT_NO_TOKEN for NoSuchToken, else EXIT_FAILED. what says
 * what was attempted ("Cannot revoke token 1234"); r is the call's -errno, e its error.
 */
int bus_failure(sd_bus *bus, int r, const sd_bus_error *e, Access access, const char *what);

/* A new call of method on org.kyso1.Manager at /org/kyso1. */
int bus_manager_call_new(sd_bus *bus, const char *method, sd_bus_message **ret);

/* Sends m with the default timeout: 0 and the reply (if ret), or bus_failure()'s exit status. */
int bus_call(sd_bus *bus, sd_bus_message *m, Access access, const char *what, sd_bus_message **ret);

/* Log and return EXIT_FAILED: a request that could not be built, a reply of the wrong shape. */
int bus_build_failed(int r);
int bus_reply_invalid(int r);
