/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kysoctl's custody commands: they talk to kysod over the system D-Bus
 * (org.kyso1, see data/org.kyso1.xml), not over the PKCS#11 socket. Reading
 * is open to every user; changes need root or kysod's admin group, which
 * kysod checks. Each run_ function is a command of kysoctl.c's table and
 * returns an exit status; the _options tables list the command's own options
 * for main()'s parser.
 */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "kysoctl-util.h"
#include "kysoctl.h"

extern const struct option custody_assign_options[];
extern const struct option custody_handover_options[];
extern const struct option custody_reason_options[]; /* report-lost, revoke, return */
extern const struct option custody_export_options[];
#define CUSTODY_EXPORT_SHORTOPTS "o:"

/*
 * Checks of what a user typed, shared with the other commands: 0, or an exit status (logged,
 * naming the option). check_text: valid UTF-8 (and not empty unless may_be_empty).
 * check_time: a TIME as parse_time() takes it.
 */
int check_text(const char *option, const char *value, bool may_be_empty);
int check_time(const char *option, const char *value, TimeBound bound, int64_t *ret);

int run_tokens(const Options *opts, int argc, char **argv);
int run_token(const Options *opts, int argc, char **argv);
int run_assign(const Options *opts, int argc, char **argv);
int run_handover(const Options *opts, int argc, char **argv);
int run_report_lost(const Options *opts, int argc, char **argv);
int run_revoke(const Options *opts, int argc, char **argv);
int run_return(const Options *opts, int argc, char **argv);
int run_export(const Options *opts, int argc, char **argv);
int run_import(const Options *opts, int argc, char **argv);

/*
 * For "kysoctl status": prints a short custody summary when org.kyso1 answers on the system
 * bus and is the kysod with process id daemon_pid (the one the socket reached); otherwise
 * prints nothing and reports nothing, since the socket's status stands on its own.
 */
void custody_print_summary(int64_t daemon_pid);
