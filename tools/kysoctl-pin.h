/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * "kysoctl pin status" and "kysoctl pin change": a holder's view of their
 * tokens' PINs (age, due date, what the token reports) from kysod's D-Bus
 * objects, and a PIN change through kyso-pkcs11.so, so that kysod sees it,
 * checks it and records when it happened.
 */
#pragma once

#include <getopt.h>

#include "kysoctl.h"

extern const struct option pin_status_options[];
extern const struct option pin_change_options[];

int run_pin_status(const Options *opts, int argc, char **argv);
int run_pin_change(const Options *opts, int argc, char **argv);
