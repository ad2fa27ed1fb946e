/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What every kysoctl command file shares: the exit statuses (documented in
 * kysoctl(1), scripts rely on them) and the parsed command line a command
 * runs with. main() in kysoctl.c parses all options, kysoctl's own and the
 * command's, so that both may stand anywhere after the command; a command
 * only interprets the values of its own options, in the order given.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1,   /* the daemon is unreachable, or the request was refused or failed */
        EXIT_USAGE = 2,    /* bad command, option or argument */
        EXIT_DENIED = 3,   /* the caller may not do this (D-Bus AccessDenied) */
        EXIT_NO_TOKEN = 4, /* kysod knows no token with that serial */
};

/* One of the command's own options as given on the command line. */
typedef struct CommandOption {
        int id;          /* its val in the command's struct option table */
        const char *arg; /* its argument, NULL for a flag */
} CommandOption;

typedef struct Options {
        const char *socket_path;
        bool json;
        const CommandOption *cmd_options; /* the command's own options, in command-line order */
        size_t n_cmd_options;
} Options;
