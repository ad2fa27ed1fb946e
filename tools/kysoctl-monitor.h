/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kysoctl monitor: kysod's events as they happen. */
#pragma once

#include "kysoctl.h"

int run_monitor(const Options *opts, int argc, char **argv);
